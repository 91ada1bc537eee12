-- wxmedia.config: one list of options, one reader of the environment, one precedence (option >
-- environment > default), and every entry point (wxmedia.new, the module-level client, the
-- command line; wxmedia.ngx in spec/ngx_spec.lua) reading the same variables the same way.
local helper = require "helper"
local config = require "wxmedia.config"
local wxmedia = require "wxmedia"

local q = helper.shell_quote

local function env_of(vars)
  return function(name) return vars[name] end
end

describe("wxmedia.config", function()
  describe("resolve", function()
    it("takes each setting from the option, else the environment, else the default", function()
      local o = assert(config.resolve({ appid = "wxopt", secret = "s-opt" },
        env_of({ WECHAT_APPID = "wxenv", WECHAT_APPSECRET = "s-env",
          WXMEDIA_BASE_URL = "http://127.0.0.1:9" })))
      assert.equal("wxopt", o.appid)
      assert.equal("s-opt", o.secret)
      assert.equal("http://127.0.0.1:9", o.base_url)
      assert.equal("stable", o.token_mode)
      o = assert(config.resolve({ appid = "wxopt", secret = "s", base_url = "https://proxy.example/" },
        env_of({ WXMEDIA_BASE_URL = "http://127.0.0.1:9" })))
      assert.equal("https://proxy.example/", o.base_url)
      o = assert(config.resolve({ access_token = "t" }, env_of({})))
      assert.equal("https://api.weixin.qq.com", o.base_url)
    end)

    it("takes the token source of the options before the environment's", function()
      local vars = env_of({ WECHAT_APPID = "wxenv", WECHAT_APPSECRET = "s-env",
        WECHAT_ACCESS_TOKEN = "t-env" })
      local o = assert(config.resolve({ access_token = "t-opt" }, vars))
      assert.equal("static", o.token_mode)
      assert.equal("t-opt", o.access_token)
      assert.equal("access_token", o.token_origin)
      assert.equal("wxenv", o.appid)    -- keys the media_id records
      o = assert(config.resolve({ token_provider = function() end }, vars))
      assert.equal("provider", o.token_mode)
      o = assert(config.resolve({}, vars))
      assert.equal("stable", o.token_mode)
      assert.equal("s-env", o.secret)
      o = assert(config.resolve({}, env_of({ WECHAT_ACCESS_TOKEN = "t-env", WECHAT_APPID = "wxenv" })))
      assert.equal("static", o.token_mode)
      assert.equal("WECHAT_ACCESS_TOKEN", o.token_origin)
      assert.equal("wxenv", o.appid)
    end)

    it("says what is missing, kind config, and names the option at fault (details.option)", function()
      local _, msg, details = config.resolve({}, env_of({}))
      assert.equal("config", details.kind)
      assert.matches("WECHAT_APPID", msg, 1, true)
      assert.equal("appid", details.option)
      _, msg, details = config.resolve({}, env_of({ WECHAT_APPID = "wx1" }))
      assert.matches("no AppSecret for wx1", msg, 1, true)
      assert.equal("secret", details.option)
      _, msg, details = config.resolve({ secret = "s" }, env_of({}))
      assert.matches("no AppID", msg, 1, true)
      assert.equal("appid", details.option)
      _, msg, details = config.resolve({ access_token = "t", token_api = "fancy" }, env_of({}))
      assert.matches('token_api must be "stable" or "classic"', msg, 1, true)
      assert.equal("token_api", details.option)
      _, msg, details = config.resolve({ access_token = "t", base_url = "api.weixin.qq.com" }, env_of({}))
      assert.matches("has no scheme", msg, 1, true)
      assert.equal("base_url", details.option)
    end)

    it("refuses a base URL without a scheme, and plain http to another machine", function()
      local _, msg, details = config.resolve({ access_token = "t", base_url = "api.weixin.qq.com" },
        env_of({}))
      assert.equal("config", details.kind)
      assert.matches("has no scheme: write https://api.weixin.qq.com", msg, 1, true)
      _, msg = config.resolve({ access_token = "t", base_url = "http://api.weixin.qq.com" }, env_of({}))
      assert.matches("in clear", msg, 1, true)
      _, msg = config.resolve({ access_token = "t", base_url = "ftp://x" }, env_of({}))
      assert.matches("not http(s)", msg, 1, true)
      for _, ok in ipairs({ "http://127.0.0.1:8080", "http://localhost/", "http://[::1]:1", "http://10.1.2.3",
          "http://192.168.0.9:80", "http://172.20.0.1", "https://anything.example" }) do
        assert(config.resolve({ access_token = "t", base_url = ok }, env_of({})), ok)
      end
      assert(config.resolve({ access_token = "t", base_url = "http://wechat.internal", allow_http = true },
        env_of({})))
    end)
  end)

  describe("options", function()
    it("an unknown option raises, with the closest known name", function()
      assert.has_error(function() wxmedia.new({ access_token = "t", timout = 5 }) end,
        "bad option 'timout' to 'new' (unknown option; did you mean 'timeout'?)")
      assert.has_error(function() wxmedia.new({ access_token = "t", frobnicate = true }) end,
        "bad option 'frobnicate' to 'new' (unknown option)")
      assert.has_error(function() wxmedia.new({ access_token = "t", retries = "3" }) end,
        "bad option 'retries' to 'new' (number expected, got string)")
      local c = assert(wxmedia.new({ access_token = "t", base_url = "http://127.0.0.1:1" }))
      assert.has_error(function() c:upload("image", "x.jpg", { retry = 1 }) end,
        "bad option 'retry' to 'upload' (unknown option; did you mean 'retries'?)")
      assert.has_error(function() c:get("id", "x.jpg", { jsdk = true }) end,
        "bad option 'jsdk' to 'get' (unknown option; did you mean 'jssdk'?)")
    end)

    it("the session options are the C core's own list", function()
      local core = require "wxmedia.core"
      local all = config.options()
      for name, t in pairs(core.SESSION_OPTIONS) do assert.equal(t, all[name], name) end
      assert.is_nil(all.nosuch)
    end)

    it("README's table of options gives the defaults the C core applies", function()
      -- rows "| `a`, `b` | default_a, default_b | meaning |" of the table under "Other options"
      local readme = assert(helper.read(helper.root .. "/README.md"))
      local table_text = assert(readme:match("\nOther options %(all optional%):\n(.-)\n\n"))
      local stated = {}
      for names, defaults in table_text:gmatch("\n| (`[^|]-) | ([^|]-) |") do
        local values = {}
        for v in (defaults .. ","):gmatch("%s*([^,]-)%s*,") do values[#values + 1] = v end
        local i = 0
        for name in names:gmatch("`([%w_]+)`") do
          i = i + 1
          stated[name] = values[i]
        end
      end
      local defaults = require("wxmedia.transport").session_defaults()
      assert.is_number(defaults.low_speed_limit)
      for name, value in pairs(defaults) do
        assert.equal(value == 0 and "none" or ("%g"):format(value), stated[name], name)
      end
    end)
  end)

  describe("every entry point reads the same environment", function()
    local emu, dir
    setup(function()
      emu = helper.start_emulator()
      dir = helper.tmpdir()
    end)
    teardown(function()
      if emu then emu:stop() end
      helper.rmtree(dir)
    end)
    before_each(function() emu:reset() end)

    local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
    local path = helper.root .. "/lua/?.lua;;"

    -- Runs a command with only these variables (and PATH and the module paths).
    local function run(cmd, vars)
      local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
        "LUA_PATH=" .. q(path), "LUA_CPATH=" .. q(cpath) }
      for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. q(v) end
      return helper.sh("cd " .. q(dir) .. " && " .. table.concat(parts, " ") .. " " .. cmd .. " 2>&1")
    end

    local function lua(code, vars)
      local script = helper.write(dir .. "/child-" .. math.random(1e9) .. ".lua", code)
      return run(q(helper.lua) .. " " .. q(script), vars)
    end

    -- WECHAT_APPID with WECHAT_ACCESS_TOKEN: the token is used as it is, the appid keys the
    -- records, so media_id reuses the first upload; WXMEDIA_BASE_URL points at the emulator.
    local entry_points = {
      ["the module-level client"] = function(vars, file)
        return lua(([[
          local wxmedia = require "wxmedia"
          local a = assert(wxmedia.media_id("image", %q))
          local b = assert(wxmedia.media_id("image", %q))
          io.write(tostring(a.reused), " ", tostring(b.reused))
        ]]):format(file, file), vars)
      end,
      ["wxmedia.new"] = function(vars, file)
        return lua(([[
          local c = assert(require("wxmedia").new({}))
          local a = assert(c:media_id("image", %q))
          local b = assert(c:media_id("image", %q))
          io.write(tostring(a.reused), " ", tostring(b.reused))
        ]]):format(file, file), vars)
      end,
      ["the command line"] = function(vars, file)
        local cmd = q(helper.lua) .. " " .. q(helper.root .. "/bin/wxmedia") .. " upload --reuse --store "
          .. q(dir .. "/store-" .. math.random(1e9) .. ".json") .. " image " .. q(file)
        local a = run(cmd, vars)
        local b = run(cmd, vars)
        return (a:match("  (%a+)\n$") == "reused" and "true" or "false") .. " "
          .. (b:match("  (%a+)\n$") == "reused" and "true" or "false")
      end,
    }
    for name, call in pairs(entry_points) do
      it(name, function()
        local vars = { WECHAT_APPID = helper.APPID, WECHAT_ACCESS_TOKEN = emu:token(),
          WXMEDIA_BASE_URL = emu.base_url }
        local out = call(vars, helper.fixture("image.gif"))
        assert.equal("false true", out)
        assert.equal(1, #emu:requests("upload"))
        assert.equal(0, #emu:requests("stable_token"))
      end)
    end
  end)
end)
