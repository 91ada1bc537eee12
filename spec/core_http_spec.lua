-- wxmedia.core against a plain nginx that answers what the emulator never does: unusual
-- Content-Disposition forms, a binary-labelled body that is really JSON, CDN redirects and errors,
-- and an echo of what request() sends. The "file or JSON" rules are checked case by case.
-- luacheck: no max line length (the nginx config below holds a long header)
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local core = require "wxmedia.core"

-- media/get?media_id=<case> is rewritten to /case/<case>
local SERVER = [[
    location = /cgi-bin/media/get { rewrite ^ /case/$arg_media_id last; }
    location = /case/star {
      default_type image/jpeg;
      add_header Content-disposition "attachment; filename=\"fallback.jpg\"; filename*=UTF-8''%E7%85%A7%E7%89%87%20a.jpg";
      return 200 "JPEGDATA-star";
    }
    location = /case/quoted {
      default_type image/png;
      add_header Content-Disposition "attachment; filename=\"a \\\"q\\\" b.png\"";
      return 200 "PNGDATA-quoted";
    }
    location = /case/token {
      default_type image/gif;
      add_header CONTENT-DISPOSITION "attachment;filename=plain.gif";
      return 200 "GIFDATA";
    }
    location = /case/brace {
      default_type image/jpeg;
      add_header Content-disposition 'attachment; filename="x.jpg"';
      return 200 ' {"errcode":40007,"errmsg":"invalid media_id"}';
    }
    location = /case/nocd {
      default_type image/jpeg;
      return 200 "JPEG-without-disposition";
    }
    location = /case/texty {
      default_type text/plain;
      add_header Content-disposition 'attachment; filename="x.jpg"';
      return 200 "not a file";
    }
    location = /case/redirect { return 302 /case/token; }
    location = /cdn/file { default_type application/octet-stream; return 200 "CDN-BYTES"; }
    location = /cdn/json { default_type application/json; return 200 '{"errcode":-1}'; }
    location = /cdn/moved { return 302 /cdn/file; }
    location = /cdn/missing { return 404; }
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        ngx.header["Content-Type"] = "text/plain"
        ngx.print(ngx.req.get_method(), "\n", ngx.var.http_content_type or "-", "\n",
          ngx.var.http_user_agent or "-", "\n", ngx.var.args or "", "\n", ngx.req.get_body_data() or "")
      }
    }
]]

describe("wxmedia.core against plain HTTP", function()
  local server, s, dir

  setup(function()
    server = nginx_helper.start{ workers = 1, thread_pool = false, server = SERVER }
  end)
  teardown(function() if server then server:stop() end end)
  before_each(function()
    s = core.session{ base_url = server.base_url }
    dir = helper.tmpdir()
  end)
  after_each(function()
    s:close()
    helper.rmtree(dir)
  end)

  local function existing()
    local path = helper.write(dir .. "/dest", "previous content")
    return path, helper.mtime(path)
  end

  local function assert_untouched(path, mtime)
    assert.equal("previous content", helper.read(path))
    assert.equal(mtime, helper.mtime(path))
    assert.same({ "dest" }, helper.ls(dir))
  end

  describe("media/get reports the server's file name", function()
    for _, case in ipairs {
      { "star", "照片 a.jpg", "JPEGDATA-star" },       -- filename*= wins, percent-decoded
      { "quoted", 'a "q" b.png', "PNGDATA-quoted" },   -- quoted-string with escapes
      { "token", "plain.gif", "GIFDATA" },             -- bare token, any header-name case
    } do
      it(case[1], function()
        local dest = dir .. "/dest"
        local r = assert(s:get("t", case[1], dest))
        assert.is_true(r.file)
        assert.equal(case[2], r.filename)
        assert.equal(case[3], helper.read(dest))
        assert.equal(#case[3], r.size)
        assert.same({ "dest" }, helper.ls(dir))      -- the name never chose where to write
      end)
    end
  end)

  describe("media/get is not a file", function()
    for _, case in ipairs {
      { "brace", 200, '{"errcode":40007' },   -- labelled image/jpeg with an attachment, but JSON
      { "nocd", 200, "JPEG-without-disposition" },
      { "texty", 200, "not a file" },
      { "redirect", 302, nil },               -- not followed for WeChat's API
    } do
      it(case[1], function()
        local dest, mtime = existing()
        local r = assert(s:get("t", case[1], dest))
        assert.is_nil(r.file)
        assert.equal(case[2], r.status)
        if case[3] then assert.truthy(r.body:find(case[3], 1, true)) end
        assert_untouched(dest, mtime)
      end)
    end

    it("unless a '{' body is larger than the cap: then it is the file", function()
      local dest = dir .. "/dest"
      local r = assert(s:get("t", "brace", dest, { max_body = 8 }))
      assert.is_true(r.file)
      assert.equal(' {"errcode":40007,"errmsg":"invalid media_id"}', helper.read(dest))
    end)
  end)

  describe("fetch (a CDN)", function()
    local LOOPBACK = { allow_private = true }     -- this server is on 127.0.0.1

    it("takes a binary body without Content-Disposition as the file", function()
      local dest = dir .. "/dest"
      local r = assert(s:fetch(server.base_url .. "/cdn/file", dest, LOOPBACK))
      assert.is_true(r.file)
      assert.is_nil(r.filename)
      assert.equal("CDN-BYTES", helper.read(dest))
    end)

    it("follows a redirect", function()
      local dest = dir .. "/dest"
      local r = assert(s:fetch(server.base_url .. "/cdn/moved", dest, LOOPBACK))
      assert.is_true(r.file)
      assert.equal(200, r.status)
      assert.equal("CDN-BYTES", helper.read(dest))
    end)

    it("returns JSON and error statuses as data, leaving the destination alone", function()
      local dest, mtime = existing()
      local r = assert(s:fetch(server.base_url .. "/cdn/json", dest, LOOPBACK))
      assert.equal('{"errcode":-1}', r.body)
      r = assert(s:fetch(server.base_url .. "/cdn/missing", dest, LOOPBACK))
      assert.equal(404, r.status)
      assert.is_nil(r.file)
      assert_untouched(dest, mtime)
    end)
  end)

  describe("request sends", function()
    local function echo(method, opts, session)
      local r = assert((session or s):request(method, "/echo", opts))
      assert.equal(200, r.status)
      local m, ctype, ua, args, body = r.body:match("^(%u+)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$")
      return { method = m, content_type = ctype, user_agent = ua, args = args, body = body }
    end

    it("a GET with each query value escaped", function()
      local e = echo("GET", { query = { q = "a b&c=d/é", n = 5 } })
      assert.equal("GET", e.method)
      local parts = {}
      for kv in e.args:gmatch("[^&]+") do parts[#parts + 1] = kv end
      table.sort(parts)
      assert.same({ "n=5", "q=a%20b%26c%3Dd%2F%C3%A9" }, parts)
      assert.equal("", e.body)
    end)

    it("a POST with a JSON body by default, or the given type", function()
      local e = echo("POST", { body = '{"a":1}' })
      assert.equal("POST", e.method)
      assert.equal("application/json", e.content_type)
      assert.equal('{"a":1}', e.body)
      e = echo("POST", { body = "a=1", content_type = "application/x-www-form-urlencoded" })
      assert.equal("application/x-www-form-urlencoded", e.content_type)
      assert.equal("a=1", e.body)
      -- binary bodies go whole
      e = echo("POST", { body = "a\0b", content_type = "application/octet-stream" })
      assert.equal("a\0b", e.body)
    end)

    it("a GET after a POST on the same session", function()
      assert.equal("POST", echo("POST", { body = "{}" }).method)
      local e = echo("GET")
      assert.equal("GET", e.method)
      assert.equal("-", e.content_type)
    end)

    it("a user agent naming wxmedia and libcurl, or the one given", function()
      local ua = echo("GET").user_agent
      assert.equal("wxmedia/" .. core._VERSION .. " (libcurl/" .. core.curl_version:match("^libcurl/([%d.]+)") .. ")", ua)
      local mine = core.session{ base_url = server.base_url, user_agent = "mine/1.0" }
      assert.equal("mine/1.0", echo("GET", nil, mine).user_agent)
      mine:close()
    end)
  end)
end)
