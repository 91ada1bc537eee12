-- The command line's own messages, as a person reads them once: each input and the exact lines it
-- prints on stderr. A usage error is one line (with "did you mean" when a known word is close) and a
-- pointer to the help, before any file is read or request sent; the first words say what failed.
-- luacheck: no max line length
local helper = require "helper"
local cli = require "cli_helper"

local TRY = "Try 'wxmedia --help' for more information.\n"
local MULTI_MAX = require("wxmedia.core").MULTI_MAX
local PARALLEL = "wxmedia: option '--parallel' needs a whole number from 1 to " .. MULTI_MAX .. ", "
local function try(command) return "Try 'wxmedia help " .. command .. "' for more information.\n" end

describe("wxmedia command messages", function()
  local emu, tmp, creds

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
    creds = cli.creds(emu, { TMPDIR = tmp })
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)
  before_each(function() emu:reset() end)

  -- { argv, exit status, the exact stderr }
  local USAGE = {
    { {}, 2, "wxmedia: no command given: upload, get, send or token\n" .. TRY },
    { { "frobnicate" }, 2, "wxmedia: unknown command 'frobnicate'\n" .. TRY },
    { { "uplaod", "image", "a.jpg" }, 2, "wxmedia: unknown command 'uplaod'; did you mean 'upload'?\n" .. TRY },
    { { "--jsno", "token" }, 2, "wxmedia: unknown option '--jsno'; did you mean '--json'?\n" .. TRY },
    { { "--bogus", "token" }, 2, "wxmedia: unknown option '--bogus'\n" .. TRY },
    { { "--json=yes", "token" }, 2, "wxmedia: option '--json' takes no value\n" .. TRY },
    { { "token", "--appid" }, 2, "wxmedia: option '--appid' needs a value\n" .. TRY },
    -- the type is checked once, whatever the number of files
    { { "upload", "imgae", "a.jpg", "b.jpg", "c.jpg" }, 2,
      "wxmedia: unknown media type 'imgae'; did you mean 'image'? (image, thumb, video or voice)\n" .. try("upload") },
    { { "upload", "sticker", "a.jpg", "b.jpg" }, 2,
      "wxmedia: unknown media type 'sticker' (image, thumb, video or voice)\n" .. try("upload") },
    { { "upload", "image" }, 2, "wxmedia: upload needs a TYPE and at least one FILE\n" .. try("upload") },
    { { "upload", "image", "-", "-" }, 2, "wxmedia: standard input ('-') can be read only once\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "-o", "x" }, 2, "wxmedia: option '-o' is for get only\n" .. try("upload") },
    -- --parallel: uploads only, without --reuse (which goes one file at a time), 1 to the core's MULTI_MAX
    { { "upload", "image", "a.jpg", "b.jpg", "--parallel", "2", "--reuse" }, 2,
      "wxmedia: option '--parallel' does not go with '--reuse'\n" .. try("upload") },
    { { "get", "ID", "--parallel", "2" }, 2, "wxmedia: option '--parallel' is for upload only\n" .. try("get") },
    { { "send", "oOPENID", "image", "a.jpg", "--parallel", "2" }, 2,
      "wxmedia: option '--parallel' is for upload only\n" .. try("send") },
    { { "upload", "image", "a.jpg", "--parallel" }, 2, "wxmedia: option '--parallel' needs a value\n" .. TRY },
    { { "upload", "image", "a.jpg", "--parallel", "0" }, 2, PARALLEL .. "not '0'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel", tostring(MULTI_MAX + 1) }, 2,
      PARALLEL .. "not '" .. (MULTI_MAX + 1) .. "'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel", "1.5" }, 2, PARALLEL .. "not '1.5'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel", "-1" }, 2, PARALLEL .. "not '-1'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel", "1e400" }, 2, PARALLEL .. "not '1e400'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel", "0x10" }, 2, PARALLEL .. "not '0x10'\n" .. try("upload") },
    { { "upload", "image", "a.jpg", "--parallel=" }, 2, PARALLEL .. "not ''\n" .. try("upload") },
    { { "get" }, 2, "wxmedia: get needs one MEDIA_ID, not 0\n" .. try("get") },
    { { "get", "a", "b" }, 2, "wxmedia: get needs one MEDIA_ID, not 2\n" .. try("get") },
    { { "get", "--reuse", "x" }, 2, "wxmedia: option '--reuse' is for upload and send only\n" .. try("get") },
    { { "get", "ID", "-o", "-", "--json" }, 2,
      "wxmedia: '-o -' writes the medium to standard output: it cannot be used with --json\n" .. try("get") },
    { { "token", "extra" }, 2, "wxmedia: token takes no arguments\n" .. try("token") },
    { { "--retries", "1e400", "token" }, 2, "wxmedia: option '--retries' needs a whole number >= 0, not '1e400'\n"
      .. try("token") },
    { { "--retries", "x", "token" }, 2, "wxmedia: option '--retries' needs a whole number >= 0, not 'x'\n"
      .. try("token") },
    { { "--timeout", "0", "token" }, 2, "wxmedia: option '--timeout' needs a number of seconds > 0, not '0'\n"
      .. try("token") },
    { { "--token-api", "stabel", "token" }, 2,
      "wxmedia: option '--token-api' is stable or classic, not 'stabel'; did you mean 'stable'?\n" .. try("token") },
    { { "help", "uplod" }, 2, "wxmedia: no help for 'uplod'; did you mean 'upload'?\n" .. TRY },
  }

  it("reports each usage error once, in one line, and sends nothing", function()
    for _, case in ipairs(USAGE) do
      local r = cli.run(tmp, case[1], creds)
      local what = "wxmedia " .. table.concat(case[1], " ")
      assert.equal(case[3], r.err, what)
      assert.equal(case[2], r.code, what)
      assert.equal("", r.out, what)
    end
    assert.same({}, emu:requests())
  end)

  it("names what failed once, and cuts a long media_id it names", function()
    local env = { WECHAT_ACCESS_TOKEN = "t", WXMEDIA_BASE_URL = emu.base_url }
    local r = cli.run(tmp, { "get", ("x"):rep(600), "-o", tmp .. "/out" }, env)
    assert.equal(2, r.code)
    assert.equal("wxmedia: cannot get a medium: the media_id is 600 characters long; WeChat's are 64\n", r.err)
    env.TMPDIR = tmp .. "/no-such-folder"
    r = cli.run(tmp, { "get", ("x"):rep(100), "-o", "-" }, env)
    assert.equal(5, r.code)
    local head = "wxmedia: cannot get " .. ("x"):rep(64) .. "... (100 characters): cannot make a temp folder: "
    assert.equal(head, r.err:sub(1, #head))
    assert.same({}, emu:requests())
  end)

  it("says how to give a missing credential on the command line, before any request (exit 2)", function()
    local r = cli.run(tmp, { "token" }, { WXMEDIA_BASE_URL = emu.base_url })
    assert.equal(2, r.code)
    assert.equal("wxmedia: no access_token source: give appid and secret (or set WECHAT_APPID and "
      .. "WECHAT_APPSECRET), access_token (or set WECHAT_ACCESS_TOKEN), or token_provider"
      .. " (or use --appid and --secret-file)\n", r.err)
    r = cli.run(tmp, { "--appid", helper.APPID, "token" }, { WXMEDIA_BASE_URL = emu.base_url })
    assert.equal(2, r.code)
    assert.equal("wxmedia: no AppSecret for " .. helper.APPID .. ": give secret, or set WECHAT_APPSECRET"
      .. " (or use --secret-file)\n", r.err)
    assert.same({}, emu:requests())
  end)

  it("refuses plain http to another machine unless --allow-http, and says so", function()
    -- curl resolves *.localhost to loopback itself; wxmedia takes the name for another machine's
    local url = emu.base_url:gsub("127%.0%.0%.1", "wxmedia-test.localhost")
    assert.matches("^http://wxmedia%-test%.localhost:%d+$", url)
    local r = cli.run(tmp, { "--base-url", url, "token" }, creds)
    assert.equal(2, r.code)
    assert.equal("wxmedia: the base URL '" .. url .. "' is plain http to another machine, which would send the "
      .. "secret and the access_token in clear; use https, or allow_http = true (or use --allow-http)\n", r.err)
    assert.same({}, emu:requests())
    r = cli.run(tmp, { "--allow-http", "--base-url", url, "token" }, creds)
    assert.equal(0, r.code, r.err)
    assert.equal(1, #emu:requests("stable_token"))
  end)

  it("says where a bad base URL came from, in one line, before any request (exit 2)", function()
    local r = cli.run(tmp, { "--base-url", "api.weixin.qq.com", "token" }, creds)
    assert.equal(2, r.code)
    assert.equal("wxmedia: the base URL 'api.weixin.qq.com' has no scheme: write https://api.weixin.qq.com"
      .. " (given with --base-url)\n", r.err)
    local env = { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET,
      WXMEDIA_BASE_URL = "api.weixin.qq.com" }
    r = cli.run(tmp, { "upload", "image", cli.fixture("image.jpg") }, env)
    assert.equal(2, r.code)
    assert.equal("wxmedia: the base URL 'api.weixin.qq.com' has no scheme: write https://api.weixin.qq.com"
      .. " (from WXMEDIA_BASE_URL)\n", r.err)
    assert.same({}, emu:requests())
  end)

  it("names the secret file it cannot read", function()
    local r = cli.run(tmp, { "--appid", helper.APPID, "--secret-file", tmp .. "/none", "token" },
      { WXMEDIA_BASE_URL = emu.base_url })
    assert.equal(2, r.code)
    assert.equal("wxmedia: cannot read the secret file " .. tmp .. "/none: no such file or directory\n", r.err)
  end)

  it("refuses to write a medium to a terminal with -o - (exit 2), before any request", function()
    -- `script` gives the command a terminal for stdout
    local out = helper.sh("script -qec " .. helper.shell_quote(cli.command({ "get", "SOME_ID", "-o", "-" }, creds)
      .. "; echo exit:$?") .. " /dev/null </dev/null")
    assert.truthy(out:find("wxmedia: cannot get SOME_ID: standard output is a terminal; redirect it to a file "
      .. "or a pipe, or use -o FILE", 1, true), out)
    assert.truthy(out:find("exit:2", 1, true), out)
    assert.same({}, emu:requests())
  end)

  describe("help", function()
    it("'wxmedia help' is 'wxmedia --help'", function()
      local full = cli.run(tmp, { "--help" }, {})
      local h = cli.run(tmp, { "help" }, {})
      assert.equal(0, h.code)
      assert.equal(full.out, h.out)
      assert.equal("", h.err)
      assert.matches("\nEXIT STATUS\n", h.out)
    end)

    it("'wxmedia help upload' and 'wxmedia upload --help' give upload's part", function()
      local h = cli.run(tmp, { "help", "upload" }, {})
      assert.equal(0, h.code)
      assert.equal(h.out, cli.run(tmp, { "upload", "--help" }, {}).out)
      assert.truthy(h.out:find("wxmedia [OPTIONS] upload TYPE FILE...\n", 1, true), h.out)
      assert.truthy(h.out:find("\n    upload --reuse TYPE FILE...\n", 1, true), h.out)
      assert.is_nil(h.out:find("get MEDIA_ID", 1, true), h.out)
      local g = cli.run(tmp, { "help", "get" }, {})
      assert.truthy(g.out:find("\n    get MEDIA_ID -o -\n", 1, true), g.out)
      assert.is_nil(g.out:find("upload TYPE", 1, true), g.out)
      local t = cli.run(tmp, { "help", "token" }, {})
      assert.equal("    wxmedia [OPTIONS] token\n\n    token\n", t.out:sub(1, 39))
    end)
  end)
end)
