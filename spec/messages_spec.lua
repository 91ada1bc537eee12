-- The messages a person reads once and acts on (issue 14): the first words say what failed in the
-- user's terms (the file, the media_id, the account), the kind stays in details, sizes read as
-- KB/MB with the exact figure, proper names are spelled right, and each says what to do. One row
-- per message, against the emulator; the command line's own are in cli_spec.lua.
local helper = require "helper"
-- luacheck: no max line length
local wxmedia = require "wxmedia"

describe("messages", function()
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

  local function client(extra)
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url, retries = 0,
      token_store = wxmedia.store.memory(), sleep = function() end }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  local jpg = helper.fixture("image.jpg")

  -- A call made in a child process with only these environment variables: its triple, as the
  -- child saw it (message and kind).
  local function child(env, code)
    local script = helper.write(dir .. "/child.lua", ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      local res, msg, details = (function() %s end)()
      io.write(tostring(res), "\n", tostring(msg), "\n", tostring(details and details.kind))
    ]]):format(helper.root, code))
    local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
    local vars = { "LUA_CPATH=" .. helper.shell_quote(cpath) }
    for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. helper.shell_quote(v) end
    local out = helper.sh("env -i PATH=\"$PATH\" " .. table.concat(vars, " ") .. " " .. helper.lua .. " "
      .. helper.shell_quote(script) .. " 2>&1")
    local res, msg, kind = out:match("^(.-)\n(.-)\n(.-)$")
    assert(res == "nil", out)
    return nil, msg, { kind = kind }
  end
  local ID = string.rep("x", 64)

  -- { what, function() return a call's triple end, expected message (exact, or a pattern with ~) }
  local rows = {
    { "a missing file", function() return client():upload("image", "/nonexistent/x.jpg") end,
      "cannot upload /nonexistent/x.jpg: no such file or directory" },
    { "a directory", function() return client():upload("image", "/tmp") end,
      "cannot upload /tmp: it is a directory, not a file" },
    { "an empty file", function() return client():upload("image", helper.write(dir .. "/e.jpg", "")) end,
      "cannot upload DIR/e.jpg: the file is empty" },
    { "a file over the limit", function()
        return client({ limits = { image = 1024 } }):upload("image", jpg) end,
      "cannot upload JPG: the file is 1.9 KB (1980 bytes); the limit for image is 1 KB (1024 bytes)" },
    { "a format the type does not take", function() return client():upload("thumb", helper.fixture("image.png")) end,
      "cannot upload PNG as thumb: it is a PNG file; thumb takes JPEG" },
    { "a type that is not one", function() return client():upload("images", jpg) end,
      "cannot upload JPG: unknown media type 'images' (did you mean 'image'?); use image, thumb, video or voice" },
    { "a media_id WeChat does not know", function() return client():get(ID, dir .. "/x.jpg") end,
      "cannot get " .. ID .. ": the media_id is invalid (unknown, expired after 3 days, or another account's) "
      .. "(errcode 40007): invalid media_id" },
    { "a refused static token from the environment", function()
        return child({ WECHAT_ACCESS_TOKEN = "bogus_token_0123456789", WXMEDIA_BASE_URL = emu.base_url },
          ("return require('wxmedia').upload('image', %q)"):format(jpg)) end,
      "~^cannot upload JPG: WeChat refused the access_token in WECHAT_ACCESS_TOKEN %(errcode 40001%): "
      .. "it expired or was replaced; set a current one, or set WECHAT_APPID and WECHAT_APPSECRET" },
    { "a refused static token given as an option", function()
        return assert(wxmedia.new({ access_token = "bogus_token_0123456789", base_url = emu.base_url }))
          :upload("image", jpg) end,
      "~^cannot upload JPG: WeChat refused the access_token given to wxmedia %(errcode 40001%): it expired" },
    { "the daily quota", function()
        emu:fault({ route = "upload", kind = "errcode", errcode = 45009 })
        return client():upload("image", jpg) end,
      "~^cannot upload JPG: the daily API quota is used up %(errcode 45009%); it resets at midnight Beijing time" },
    { "a wrong secret", function() return client({ secret = string.rep("0", 32) }):token() end,
      "~^cannot get an access_token for " .. helper.APPID .. ": the appsecret is invalid %(errcode 40125%)" },
    { "a server that cannot be reached", function()
        return client({ base_url = "http://127.0.0.1:1" }):token() end,
      "~^cannot get an access_token for " .. helper.APPID .. ": failed to connect to 127%.0%.0%.1 port 1" },
    { "https to a plain-http port", function()
        return client({ base_url = emu.base_url:gsub("^http:", "https:") }):token() end,
      "~^cannot get an access_token for " .. helper.APPID .. ": the server at 127%.0%.0%.1:%d+ does not speak "
      .. "TLS %(is the URL http://%?%)" },
    { "a base URL without its scheme", function()
        return wxmedia.new({ access_token = "t", base_url = "api.weixin.qq.com" }) end,
      "the base URL 'api.weixin.qq.com' has no scheme: write https://api.weixin.qq.com" },
    { "no credentials at all", function() return wxmedia.new({ base_url = emu.base_url }) end,
      "no access_token source: give appid and secret (or set WECHAT_APPID and WECHAT_APPSECRET), "
      .. "access_token (or set WECHAT_ACCESS_TOKEN), or token_provider" },
  }

  for _, row in ipairs(rows) do
    it(row[1], function()
      local expected = row[3]
      local pattern = expected:sub(1, 1) == "~"
      local function literal(s) return pattern and s:gsub("%p", "%%%0") or s end
      expected = expected:gsub("DIR", function() return literal(dir) end)
        :gsub("JPG", function() return literal(jpg) end)
        :gsub("PNG as", function() return literal(helper.fixture("image.png")) .. " as" end)
      local res, msg, details = row[2]()
      assert.is_nil(res)
      assert.is_table(details)
      assert.is_nil(msg:find("^%a+: %a+: "), "a kind prefix: " .. msg)
      if expected:sub(1, 1) == "~" then
        assert.matches(expected:sub(2), msg)
      else
        assert.equal(expected, msg)
      end
    end)
  end
end)
