-- Nobody let in: https with certificate verification by default (a local self-signed TLS server is
-- refused, and accepted with cainfo); the server's filename never chooses where a file is written;
-- every response body that is not a file is capped; media_id and type are URL-escaped; and no
-- access_token or secret in any message, CLI output or emulator log. (spec/run also searches all
-- that the whole suite printed for the emulator's secrets and tokens.)
-- luacheck: no max line length
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local wxmedia = require "wxmedia"
local store = require "wxmedia.store"
local core = require "wxmedia.core"

local q = helper.shell_quote
local TOKEN = "86_SECURITY_TOKEN_" .. string.rep("Z", 40)   -- the static token of the plain server

describe("security", function()
  local server, dir, tls_port, cert
  local messages = {}

  -- the hostile server (plain http) and a well-behaved one over TLS, in one nginx
  setup(function()
    dir = helper.tmpdir()
    cert = dir .. "/cert.pem"
    local _, ok = helper.sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
      .. "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>&1"):format(q(dir .. "/key.pem"), q(cert)))
    assert(ok, "openssl could not make a certificate")
    local handler = helper.root .. "/spec/fixtures/security/server.lua"
    local last
    for _ = 1, 10 do        -- the TLS port is ours to pick: retried when taken
      tls_port = math.random(20000, 60999)
      local started, s = pcall(nginx_helper.start, {
        workers = 1, thread_pool = false,
        server = ("location / { content_by_lua_file %s; }"):format(handler),
        http = ([[
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / { content_by_lua_file %s; }
  }]]):format(tls_port, cert, dir .. "/key.pem", handler),
      })
      if started then server = s break end
      last = s
    end
    assert(server, "nginx did not start: " .. tostring(last))
  end)
  teardown(function()
    if server then server:stop() end
    helper.rmtree(dir)
  end)

  local function plain_client(extra)
    local opts = { access_token = TOKEN, base_url = server.base_url, retries = 0, timeout = 20 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(wxmedia.new(opts))
  end

  local function failure(res, err, details, kind)
    assert.is_nil(res)
    messages[#messages + 1] = err
    assert.equal(kind, details.kind, err)
    return err
  end

  describe("https", function()
    local tls_url
    before_each(function() tls_url = "https://127.0.0.1:" .. tls_port end)

    local function tls_client(extra)
      local opts = { appid = helper.APPID, secret = helper.SECRET, base_url = tls_url, retries = 0,
        timeout = 20, token_store = store.memory() }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return assert(wxmedia.new(opts))
    end

    it("is WeChat's default base_url", function()
      assert.equal("https://api.weixin.qq.com", require("wxmedia.transport").default_base_url())
      assert.equal("https://api.weixin.qq.com", require("wxmedia.core").DEFAULT_BASE_URL)
    end)

    it("refuses a self-signed certificate by default: kind tls, nothing written", function()
      local c = tls_client()
      local tres, terr, tdetails = c:token()
      local err = failure(tres, terr, tdetails, "tls")
      assert.matches("^cannot get an access_token for " .. helper.APPID .. ": .*certificate", err)
      local c2 = assert(wxmedia.new{ access_token = TOKEN, base_url = tls_url, retries = 0 })
      local dest = dir .. "/tls-refused.jpg"
      local res, gerr, details = c2:get("any", dest)
      failure(res, gerr, details, "tls")
      assert.is_nil(helper.read(dest))
    end)

    it("accepts it when cainfo names the certificate", function()
      local c = tls_client({ cainfo = cert })
      assert.matches("^86_tls", assert(c:token()))
      local dest = dir .. "/tls.jpg"
      assert(c:get("any", dest))
      assert.equal("TLSDATA", helper.read(dest))
    end)

    it("the core session verifies by default too", function()
      local s = core.session{ base_url = tls_url, timeout = 20 }
      local res, err, kind = s:request("GET", "/cgi-bin/x")
      assert.is_nil(res)
      assert.equal("tls", kind, err)
      s:close()
    end)
  end)

  describe("the server's filename never chooses the path", function()
    for _, case in ipairs { "traversal", "absolute", "nul", "star" } do
      it(case, function()
        local sub = dir .. "/" .. case .. "/a/b"
        helper.sh("mkdir -p " .. q(sub))
        local before_root = helper.ls(dir .. "/" .. case)
        local dest = sub .. "/chosen.jpg"
        local res = assert(plain_client():get(case, dest))
        assert.equal(dest, res.path)
        assert.equal("FILEDATA", helper.read(dest))
        assert.same({ "chosen.jpg" }, helper.ls(sub))
        assert.same(before_root, helper.ls(dir .. "/" .. case))
        assert.same({ "b" }, helper.ls(dir .. "/" .. case .. "/a"))
        assert.is_nil(helper.read("/tmp/wxmedia-security-absolute.jpg"))
        assert.is_nil(helper.read(dir .. "/escaped.jpg"))
        assert.is_nil(helper.read(dir .. "/" .. case .. "/evil.jpg"))
        -- the name is only reported, and never with a NUL inside
        if res.filename then assert.is_nil(res.filename:find("\0", 1, true)) end
      end)
    end
  end)

  describe("bodies that are not a file are capped", function()
    it("get: JSON over the cap fails, kind transfer, destination untouched", function()
      for _, case in ipairs { "bigjson", "bigbrace", "bightml" } do
        local dest = helper.write(dir .. "/capped.jpg", "previous")
        local mtime = helper.mtime(dest)
        local res, err, details = plain_client():get(case, dest)
        failure(res, err, details, "transfer")
        assert.matches("over the cap", err)
        assert.equal("previous", helper.read(dest))
        assert.equal(mtime, helper.mtime(dest))
      end
    end)

    it("upload: an answer over the cap fails", function()
      local s = core.session{ base_url = server.base_url, timeout = 20 }
      local res, err, kind = s:upload(TOKEN, "bigjson", helper.fixture("image.jpg"),
        { filename = "image.jpg", content_type = "image/jpeg" })
      assert.is_nil(res)
      assert.equal("transfer", kind, err)
      s:close()
    end)

    it("token: an answer over the cap fails", function()
      local c = assert(wxmedia.new{ appid = helper.APPID, secret = helper.SECRET, base_url = server.base_url,
        retries = 0, token_store = store.memory() })
      local res, err, details = c:token()
      failure(res, err, details, "transfer")
    end)
  end)

  describe("query values are URL-escaped", function()
    local NASTY = { "a&b=c", "x#frag", "100%25", "two words", "\230\150\135\228\187\182", "a+b/c?d" }

    it("media_id: the server decodes exactly what was given", function()
      for _, id in ipairs(NASTY) do
        local res, err, details = plain_client():get(id, dir .. "/never.jpg")
        failure(res, err, details, "api")
        assert.equal(40007, details.errcode)
        assert.equal(id, details.errmsg)
      end
      assert.is_nil(helper.read(dir .. "/never.jpg"))
    end)

    it("type: the server decodes exactly what was given", function()
      local s = core.session{ base_url = server.base_url, timeout = 20 }
      for _, t in ipairs(NASTY) do
        local res = assert(s:upload(TOKEN, t, helper.fixture("image.jpg"),
          { filename = "image.jpg", content_type = "image/jpeg" }))
        assert.equal(t, require("cjson").decode(res.body).type)
      end
      s:close()
    end)
  end)

  describe("no token or secret anywhere", function()
    local emu
    setup(function() emu = helper.start_emulator() end)
    teardown(function() if emu then emu:stop() end end)

    local function clean(text, what)
      assert.is_nil(text:find(helper.SECRET, 1, true), what .. " holds the secret")
      assert.is_nil(text:find(TOKEN, 1, true), what .. " holds a token")
      assert.is_nil(text:find("86_[%w_-]+"), what .. " holds a token: " .. (text:match("86_[%w_-]+") or ""))
    end

    it("in failure messages, CLI output and the emulator's logs", function()
      local c = assert(wxmedia.new{ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        retries = 1, token_store = store.memory(), sleep = function() end })
      local tok = assert(c:token())
      -- failures of every kind, each with a live token in its URL
      for _, kind in ipairs { "status", "errcode", "reset_response", "truncate" } do
        emu:fault{ route = "get", kind = kind, count = 2 }
        local res, err, details = c:get("unknown_media", dir .. "/x.jpg")
        failure(res, err, details, details and details.kind)
        emu:fault{ route = "upload", kind = kind, count = 2 }
        res, err, details = c:upload("image", helper.fixture("image.jpg"))
        failure(res, err, details, details and details.kind)
      end
      emu:fault{ route = "stable_token", kind = "errcode", errcode = 40125, count = 1 }
      local res, err, details = assert(wxmedia.new{ appid = helper.APPID, secret = helper.SECRET,
        base_url = emu.base_url, retries = 0, token_store = store.memory() }):token()
      failure(res, err, details, "token")
      -- the command line, with the secret in its environment, failing and succeeding
      local env = ("env WECHAT_APPID=%s WECHAT_APPSECRET=%s WXMEDIA_BASE_URL=%s LUA_PATH=%s LUA_CPATH=%s")
        :format(helper.APPID, helper.SECRET, q(emu.base_url), q(helper.root .. "/lua/?.lua;" .. helper.root
        .. "/lua/?/init.lua;;"), q(helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4")
        .. "/?.so;;"))
      local bin = helper.lua .. " " .. q(helper.root .. "/bin/wxmedia")
      local out = helper.sh(env .. " " .. bin .. " upload image " .. q(helper.fixture("image.jpg")) .. " 2>&1")
      local id = out:match("^(%S+)")
      out = out .. helper.sh(env .. " " .. bin .. " get " .. q(id) .. " -o " .. q(dir .. "/cli.jpg") .. " 2>&1")
      emu:fault{ route = "get", kind = "status", count = 10 }
      out = out .. helper.sh(env .. " " .. bin .. " --retries 1 get " .. q(id) .. " -o " .. q(dir .. "/cli.jpg")
        .. " 2>&1")
      out = out .. helper.sh(env .. " " .. bin .. " --json get no_such_id -o " .. q(dir .. "/cli2.jpg") .. " 2>&1")
      assert.matches("503", out)
      clean(out, "the command's output")
      for _, m in ipairs(messages) do clean(m, "a message") end
      -- the emulator's request log and every file under its logs/
      clean(require("cjson").encode(emu:log()), "the emulator's request log")
      for _, name in ipairs(helper.ls(emu.dir .. "/logs")) do
        clean(helper.read(emu.dir .. "/logs/" .. name) or "", "the emulator's " .. name)
      end
      assert.is_truthy(tok)
    end)
  end)
end)
