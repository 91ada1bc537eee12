-- Installing: `luarocks make` into a private tree (Lua 5.4, and 5.1 when installed) and
-- `make install PREFIX=...`, each followed by require "wxmedia" and a real upload with the installed
-- command. Both build in a copy of the work tree: luarocks make leaves objects in its source folder.
local helper = require "helper"

local q = helper.shell_quote
local root = helper.sh("cd " .. q(helper.root) .. " && pwd"):gsub("\n$", "")
local CURL = "CURL_INCDIR=/usr/include/x86_64-linux-gnu CURL_LIBDIR=/usr/lib/x86_64-linux-gnu"

local function has(cmd)
  local _, ok = helper.sh("command -v " .. q(cmd) .. " >/dev/null 2>&1")
  return ok
end

-- The rockspec, loaded the way LuaRocks loads it: a chunk setting globals in an environment of its own.
local function load_rockspec()
  local text = assert(helper.read(root .. "/rockspec/wxmedia-scm-1.rockspec"))
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(text))
    setfenv(chunk, env)
  else
    chunk = assert(load(text, "rockspec", "t", env))
  end
  chunk()
  return env
end

describe("installing #once", function()
  local tmp, src, emu

  -- Runs a command with a clean environment (PATH and what `env` gives), in tmp; returns output, ok.
  local function run(cmd, env)
    local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin") }
    for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
    return helper.sh("cd " .. q(tmp) .. " && " .. table.concat(parts, " ") .. " " .. cmd .. " 2>&1")
  end

  -- The installed command uploads a sample and gets it back: modules, core and cjson all load.
  local function round_trip(cmd, env)
    env = env or {}
    env.WECHAT_APPID, env.WECHAT_APPSECRET, env.WXMEDIA_BASE_URL = helper.APPID, helper.SECRET, emu.base_url
    local out, ok = run(cmd .. " upload image " .. q(root .. "/spec/fixtures/media/image.jpg"), env)
    assert.is_true(ok, out)
    local id = assert(out:match("^([%w_%-]+)\n$"), out)
    local copy = tmp .. "/copy-" .. tostring(math.random(1e9)) .. ".jpg"
    out, ok = run(cmd .. " get " .. q(id) .. " -o " .. q(copy), env)
    assert.is_true(ok, out)
    assert.equal(helper.read(root .. "/spec/fixtures/media/image.jpg"), helper.read(copy))

    -- the file store (tokens and --reuse records) on this interpreter
    local store = tmp .. "/store-" .. tostring(math.random(1e9)) .. ".json"
    local reuse = cmd .. " upload --reuse --store " .. q(store) .. " image "
      .. q(root .. "/spec/fixtures/media/image.jpg")
    out, ok = run(reuse, env)
    assert.is_true(ok, out)
    assert.matches("  uploaded\n$", out)
    out, ok = run(reuse, env)
    assert.is_true(ok, out)
    assert.matches("  reused\n$", out)
  end

  setup(function()
    tmp = helper.tmpdir()
    src = tmp .. "/src"
    emu = helper.start_emulator()
    -- what the two installs read, from the work tree as it is (committed or not), without builds
    local out, ok = helper.sh("mkdir " .. q(src) .. " && tar -C " .. q(root)
      .. " -cf - Makefile bin lua rockspec src | tar -C " .. q(src) .. " -xf - 2>&1")
    assert(ok, out)
  end)

  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  it("the rockspec lists every C source and every Lua module of the tree", function()
    local spec = load_rockspec()
    assert.equal("wxmedia", spec.package)
    assert.same({ "lua >= 5.1", "lua-cjson", "luaexpat" }, spec.dependencies)
    assert.equal("curl/curl.h", spec.external_dependencies.CURL.header)
    assert.equal("openssl/evp.h", spec.external_dependencies.OPENSSL.header)
    assert.same({ "curl", "crypto" }, spec.build.modules["wxmedia.core"].libraries)
    assert.same({ wxmedia = "bin/wxmedia" }, spec.build.install.bin)
    local modules = spec.build.modules

    local sources = {}
    for _, f in ipairs(helper.ls(root .. "/src")) do
      if f:match("%.c$") then sources[#sources + 1] = "src/" .. f end
    end
    local listed = {}
    for _, f in ipairs(modules["wxmedia.core"].sources) do listed[#listed + 1] = f end
    table.sort(listed)
    assert.same(sources, listed)

    local expected = { wxmedia = "lua/wxmedia.lua", ["wxmedia.core"] = modules["wxmedia.core"] }
    local files = helper.sh("cd " .. q(root .. "/lua") .. " && find wxmedia -name '*.lua'")
    for f in files:gmatch("[^\n]+") do
      expected[f:gsub("%.lua$", ""):gsub("/", ".")] = "lua/" .. f
    end
    assert.same(expected, modules)
  end)

  local versions = { { lua = "lua5.4", abi = "5.4" }, { lua = "lua5.1", abi = "5.1" } }
  for _, v in ipairs(versions) do
    it("luarocks make installs a working module and command for " .. v.lua .. " (when installed)", function()
      if not has(v.lua) then return end
      local tree = tmp .. "/tree" .. v.abi
      local out, ok = helper.sh("cd " .. q(src) .. " && luarocks --lua-version=" .. v.abi
        .. " make --deps-mode=none --tree=" .. q(tree) .. " rockspec/wxmedia-scm-1.rockspec " .. CURL
        .. " 2>&1")
      assert(ok, out)

      -- what `luarocks path --tree` would set; ";;" keeps the system's cjson
      local share = tree .. "/share/lua/" .. v.abi
      local paths = {
        LUA_PATH = share .. "/?.lua;" .. share .. "/?/init.lua;;",
        LUA_CPATH = tree .. "/lib/lua/" .. v.abi .. "/?.so;;",
      }
      out, ok = run(v.lua .. " -e " .. q('local w = require "wxmedia"; local c = require "wxmedia.core"; '
        .. 'assert(type(w.upload) == "function" and type(w.new) == "function" and type(c) == "table"); '
        .. 'print("ok")'), paths)
      assert.is_true(ok, out)
      assert.equal("ok\n", out)

      out, ok = run(q(tree .. "/bin/wxmedia") .. " --help", paths)
      assert.is_true(ok, out)
      assert.matches("SYNOPSIS", out)
      -- the installed command also finds its tree by itself
      round_trip(q(tree .. "/bin/wxmedia"))
    end)
  end

  it("make install PREFIX=... installs a command that runs with no LUA_PATH", function()
    local prefix = tmp .. "/prefix"
    local out, ok = helper.sh("cd " .. q(src) .. " && make --no-print-directory install PREFIX=" .. q(prefix)
      .. " >/dev/null 2>&1 || make install PREFIX=" .. q(prefix) .. " 2>&1")
    assert(ok, out)
    local cmd = q(prefix .. "/bin/wxmedia")
    out, ok = run(cmd .. " --help")
    assert.is_true(ok, out)
    assert.matches("EXIT STATUS", out)
    round_trip(cmd)

    out, ok = run("lua5.4 -e " .. q('print(require("wxmedia").new ~= nil)'), {
      LUA_PATH = prefix .. "/share/lua/5.4/?.lua;;", LUA_CPATH = prefix .. "/lib/lua/5.4/?.so;;" })
    assert.is_true(ok, out)
    assert.equal("true\n", out)
  end)
end)
