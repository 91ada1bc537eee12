-- wxmedia.core: the module, the session object's lifetime and misuse, request(), connection reuse,
-- connect and TLS failures, and the garbage collector releasing sessions and callbacks.
local helper = require "helper"
local core = require "wxmedia.core"

describe("wxmedia.core session", function()
  local emu

  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:reset() end)

  local function session(opts)
    opts = opts or {}
    opts.base_url = opts.base_url or emu.base_url
    return core.session(opts)
  end

  describe("module", function()
    it("names itself and the libcurl it runs on", function()
      assert.matches("^%d+%.%d+%.%d+$", core._VERSION)
      assert.matches("^libcurl/%d+%.%d+", core.curl_version)
    end)

    it("exports its default base URL and the session options with their types", function()
      assert.equal("https://api.weixin.qq.com", core.DEFAULT_BASE_URL)
      assert.same({
        base_url = "string", timeout = "number", connect_timeout = "number",
        low_speed_limit = "number", low_speed_time = "number", cainfo = "string", capath = "string",
        proxy = "string", user_agent = "string", verify = "boolean", fsync = "boolean",
      }, core.SESSION_OPTIONS)
      -- the same list is what session() accepts, each with its type
      for name, t in pairs(core.SESSION_OPTIONS) do
        local wrong = t == "string" and 1 or "x"
        assert.has_error(function() core.session{ [name] = wrong } end,
          ("bad argument #1 to 'session' (field '%s': %s expected, got %s)"):format(name, t, type(wrong)))
      end
    end)

    it("sets no globals", function()
      assert.is_nil(rawget(_G, "wxmedia"))
      assert.is_nil(rawget(_G, "core"))
    end)
  end)

  describe("lifetime", function()
    it("shows its state in tostring and closes idempotently", function()
      local s = session()
      assert.matches("^wxmedia%.session %(0x%x+%)$", tostring(s))
      s:close()
      assert.equal("wxmedia.session (closed)", tostring(s))
      s:close()
      assert.equal("wxmedia.session (closed)", tostring(s))
    end)

    it("raises on any method of a closed session", function()
      local s = session()
      s:close()
      local token = "t"
      for _, call in ipairs {
        function() return s:upload(token, "image", helper.fixture("image.jpg")) end,
        function() return s:get(token, "id", "/tmp/x") end,
        function() return s:fetch(emu.base_url .. "/x", "/tmp/x") end,
        function() return s:request("GET", "/cgi-bin/token") end,
      } do
        assert.has_error(call, "attempt to use a closed wxmedia.session")
      end
    end)

    if _VERSION == "Lua 5.4" then
      it("closes at the end of a to-be-closed variable (5.4)", function()
        local chunk = assert(load([[
          local core, base = ...
          local kept
          do
            local s <close> = core.session{ base_url = base }
            kept = s
          end
          return tostring(kept)
        ]]))
        assert.equal("wxmedia.session (closed)", chunk(core, emu.base_url))
      end)
    end

    it("is released by the garbage collector, with the progress function it was given", function()
      local weak = setmetatable({}, { __mode = "v" })
      local token = emu:token()
      local dir = helper.tmpdir()
      local _, res = emu:upload_with_curl(token, "image", helper.fixture("image.jpg"))
      local function use()
        local calls = 0
        local s = session()
        local progress = function() calls = calls + 1 end
        local r = assert(s:get(token, res.media_id, dir .. "/a.jpg", { progress = progress }))
        assert.is_true(r.file)
        assert.is_true(calls > 0)
        weak.session, weak.progress = s, progress
      end
      use()
      for _ = 1, 4 do collectgarbage("collect") end
      assert.is_nil(weak.session)
      assert.is_nil(weak.progress)
      helper.rmtree(dir)
    end)

    it("gives back its sockets when collected", function()
      -- this process's open file descriptors (read in-process: /proc/self would be ls's own)
      local pid = assert(helper.read("/proc/self/stat")):match("^(%d+)")
      local function open_fds() return #helper.ls("/proc/" .. pid .. "/fd") end
      local function use_some()
        for _ = 1, 20 do
          local s = session()
          assert(s:request("GET", "/cgi-bin/token"))
        end
      end
      collectgarbage("collect")
      local before = open_fds()
      use_some()
      for _ = 1, 4 do collectgarbage("collect") end
      local after = open_fds()
      assert.is_true(after <= before, ("open fds before %d, after %d"):format(before, after))
    end)
  end)

  describe("misuse raises in Lua's own words", function()
    local s
    before_each(function() s = session() end)
    after_each(function() s:close() end)

    it("for wrong argument types", function()
      assert.has_error(function() s:upload("t", nil, "x") end,
        "bad argument #2 to 'upload' (string expected, got nil)")
      assert.has_error(function() s:get("t", {}, "x") end,
        "bad argument #2 to 'get' (string expected, got table)")
      assert.has_error(function() s:fetch(nil, "x") end,
        "bad argument #1 to 'fetch' (string expected, got nil)")
      assert.has_error(function() s:get("t", "id", "x", "opts") end,
        "bad argument #4 to 'get' (table expected, got string)")
      assert.has_error(function() core.session("x") end,
        "bad argument #1 to 'session' (table expected, got string)")
      assert.has_error(function() core.stat() end,
        "bad argument #1 to 'stat' (string expected, got no value)")
    end)

    it("for a bad method, an unknown option or an option of the wrong type", function()
      assert.has_error(function() s:request("PUT", "/x") end,
        "bad argument #1 to 'request' (invalid option 'PUT')")
      assert.has_error(function() core.session{ timeout = "5" } end,
        "bad argument #1 to 'session' (field 'timeout': number expected, got string)")
      assert.has_error(function() core.session{ verfy = false } end,
        "bad argument #1 to 'session' (unknown option 'verfy')")
      assert.has_error(function() s:get("t", "id", "x", { progress = true }) end,
        "bad argument #4 to 'get' (field 'progress': function expected, got boolean)")
      assert.has_error(function() s:request("GET", "/x", { query = { a = true } }) end)
      assert.has_error(function() s:request("GET", "/x", { body = "{}" }) end)
    end)

    it("for a method called on something else", function()
      assert.has_error(function() s.get({}, "t", "id", "x") end)
    end)
  end)

  describe("request", function()
    it("GETs with an escaped query and returns status, content type and body", function()
      local s = session()
      local r = assert(s:request("GET", "/cgi-bin/token", { query = {
        grant_type = "client_credential", appid = helper.APPID, secret = helper.SECRET } }))
      assert.equal(200, r.status)
      assert.matches("json", r.content_type)
      assert.matches('"access_token":"[^"]+"', r.body)
      -- a value that needs escaping arrives intact: a wrong secret is refused, not mangled into a crash
      r = assert(s:request("GET", emu.base_url .. "/cgi-bin/token", { query = {
        grant_type = "client_credential", appid = helper.APPID, secret = "a&b=c d/é" } }))
      assert.matches('"errcode":40125', r.body)
      s:close()
    end)

    it("POSTs a JSON body (stable_token)", function()
      local s = session()
      local body = ('{"grant_type":"client_credential","appid":"%s","secret":"%s"}')
        :format(helper.APPID, helper.SECRET)
      local r = assert(s:request("POST", "/cgi-bin/stable_token", { body = body }))
      assert.equal(200, r.status)
      assert.matches('"expires_in":%d+', r.body)
      s:close()
    end)

    it("returns any HTTP status as data", function()
      emu:fault{ route = "token", kind = "status", status = 502, body = "html" }
      local s = session()
      local r = assert(s:request("GET", "/cgi-bin/token"))
      assert.equal(502, r.status)
      assert.matches("<html>", r.body)
      s:close()
    end)

    it("caps the body it keeps in memory", function()
      local s = session()
      local r, err, kind = s:request("GET", "/cgi-bin/token", { max_body = 10, query = {
        grant_type = "client_credential", appid = helper.APPID, secret = helper.SECRET } })
      assert.is_nil(r)
      assert.equal("transfer", kind)
      assert.matches("over the cap of 10 bytes", err)
      -- the session still works after that
      assert.equal(200, assert(s:request("GET", "/cgi-bin/token")).status)
      s:close()
    end)
  end)

  it("reuses one connection for consecutive calls", function()
    local token = emu:token()
    local dir = helper.tmpdir()
    local s = session()
    for i = 1, 3 do
      local r = assert(s:upload(token, "image", helper.fixture("image.jpg")))
      local id = assert(r.body:match('"media_id":"([^"]+)"'))
      assert(s:get(token, id, dir .. "/" .. i .. ".jpg"))
      assert(s:request("GET", "/cgi-bin/token", { query = { grant_type = "client_credential",
        appid = helper.APPID, secret = helper.SECRET } }))
    end
    s:close()
    local log = emu:log()
    assert.equal("token", log[1].route)     -- emu:token(), by the curl command
    table.remove(log, 1)
    local seen, connections = {}, 0
    for _, e in ipairs(log) do
      if not seen[e.connection] then connections = connections + 1 end
      seen[e.connection] = true
    end
    assert.equal(9, #log)
    assert.equal(1, connections)
    helper.rmtree(dir)
  end)

  describe("failures that are not HTTP responses", function()
    it("connect: a closed port", function()
      local s = core.session{ base_url = "http://127.0.0.1:1", connect_timeout = 5 }
      local r, err, kind = s:request("GET", "/cgi-bin/token")
      assert.is_nil(r)
      assert.equal("connect", kind)
      assert.matches("^failed to connect to 127%.0%.0%.1 port 1 .*: couldn't connect to server$", err)
      s:close()
    end)

    it("tls: https to a plain HTTP port says so", function()
      local s = core.session{ base_url = emu.base_url:gsub("^http:", "https:") }
      local r, err, kind = s:request("GET", "/cgi-bin/token")
      assert.is_nil(r)
      assert.equal("tls", kind)
      local hostport = emu.base_url:match("^http://([^/]+)")
      assert.equal("the server at " .. hostport .. " does not speak TLS (is the URL http://?)", err)
      s:close()
    end)

    it("input: a URL that is not http or https", function()
      local s = session()
      local r, err, kind = s:fetch("ftp://127.0.0.1/x", helper.tmpdir() .. "/x")
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal('protocol "ftp" not supported or disabled in libcurl', err)
      s:close()
    end)
  end)
end)
