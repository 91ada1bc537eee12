-- wxmedia.core against hostile answers and hostile paths (issue 13): what a server sends that must
-- not become the file, destinations that are not regular files, NUL bytes, private addresses for
-- fetch, a file that changes while it is uploaded. A plain nginx plays the server; it counts the
-- requests it gets, so that "nothing was requested" is checked, not assumed.
-- luacheck: no max line length (the nginx config below holds long lines)
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local core = require "wxmedia.core"

local q = helper.shell_quote
local BOM = "\239\187\191"
local CD = [[add_header Content-Disposition 'attachment; filename="x.gif"';]]

-- media/get?media_id=<case> is rewritten to /case/<case>; /cdn/* is what fetch reads.
local SERVER = [[
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    log_by_lua_block { if ngx.var.uri ~= "/count" then ngx.shared.test:incr("requests", 1, 0) end }
    location = /count {
      content_by_lua_block {
        local d = ngx.shared.test
        ngx.print((d:get("requests") or 0), " ", (d:get("complete") or 0), " ", (d:get("chunked") or 0))
      }
    }
    location = /cgi-bin/media/get { rewrite ^ /case/$arg_media_id last; }
    location = /case/file { default_type image/gif; ]] .. CD .. [[ return 200 "GIFDATA"; }
    location = /case/empty { default_type image/gif; ]] .. CD .. [[ return 200 ""; }
    location = /case/blank { default_type image/gif; ]] .. CD .. [[ return 200 " \r\n\t "; }
    location = /case/bom { default_type image/gif; ]] .. CD .. [[ return 200 "]] .. BOM .. [[{\"errcode\":40007,\"errmsg\":\"invalid media_id\"}"; }
    location = /case/bomblank { default_type image/gif; ]] .. CD .. [[ return 200 "]] .. BOM .. [[ \n {\"errcode\":40007}"; }
    location = /case/bomonly { default_type image/gif; ]] .. CD .. [[ return 200 "]] .. BOM .. [["; }
    location = /case/nocontent { default_type image/gif; ]] .. CD .. [[ return 204; }
    location = /case/partial { default_type image/gif; ]] .. CD .. [[ add_header Content-Range "bytes 0-6/100"; return 206 "GIFDATA"; }
    location = /cdn/file { default_type video/mp4; return 200 "MP4DATA"; }
    location = /cdn/octetjson { default_type application/octet-stream; return 200 '{"errcode":-1,"errmsg":"system error"}'; }
    location = /cdn/empty { default_type application/octet-stream; return 200 ""; }
    location = /cdn/blank { default_type application/octet-stream; return 200 "  \n "; }
    location = /cdn/bom { default_type application/octet-stream; return 200 "]] .. BOM .. [[{\"errcode\":-1}"; }
    location = /cdn/nocontent { return 204; }
    location = /cdn/partial { default_type video/mp4; add_header Content-Range "bytes 0-6/100"; return 206 "MP4PART"; }
    location = /cgi-bin/media/upload {
      content_by_lua_block {
        -- type=slow: the body waits in the socket buffers for a while (the client stalls)
        if ngx.var.arg_type == "slow" then ngx.sleep(1.5) end
        if ngx.var.http_transfer_encoding then ngx.shared.test:incr("chunked", 1, 0) end
        ngx.req.read_body()           -- a client that gives up midway ends the request here
        local n = #(ngx.req.get_body_data() or "")
        local file = ngx.req.get_body_file()
        if file then
          local f = io.open(file, "rb")
          n = f:seek("end")
          f:close()
        end
        if n == tonumber(ngx.var.content_length) then ngx.shared.test:incr("complete", 1, 0) end
        ngx.header.content_type = "application/json"
        ngx.print('{"type":"image","media_id":"stored"}')
      }
    }
]]

describe("wxmedia.core against hostile answers and paths", function()
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

  -- requests the server got, uploads that arrived whole, chunked uploads
  local function counts()
    local _, body = server:curl("/count")
    local r, c, k = body:match("^(%d+) (%d+) (%d+)$")
    return { requests = tonumber(r), complete = tonumber(c), chunked = tonumber(k) }
  end

  local function existing(name)
    local path = helper.write(dir .. "/" .. (name or "dest"), "previous content")
    return path, helper.mtime(path)
  end

  local function assert_untouched(path, mtime, listing)
    assert.equal("previous content", helper.read(path))
    assert.equal(mtime, helper.mtime(path))
    assert.same(listing or { (path:match("[^/]+$")) }, helper.ls(dir))    -- no temp file beside it
  end

  local function file_type(path)
    return (helper.sh("stat -c %F " .. q(path)):gsub("%s+$", ""))
  end

  local function mode(path)
    return (helper.sh("stat -c %a " .. q(path)):gsub("%s+$", ""))
  end

  describe("only a 200 with a body that is not an error document is the file", function()
    for _, case in ipairs {
      { "get", "empty", 200, "" },
      { "get", "blank", 200, " \r\n\t " },
      { "get", "bom", 200, BOM .. '{"errcode":40007,"errmsg":"invalid media_id"}' },
      { "get", "bomblank", 200, BOM .. ' \n {"errcode":40007}' },
      { "get", "bomonly", 200, BOM },
      { "get", "nocontent", 204, "" },
      { "get", "partial", 206, "GIFDATA" },
      { "fetch", "octetjson", 200, '{"errcode":-1,"errmsg":"system error"}' },
      { "fetch", "empty", 200, "" },
      { "fetch", "blank", 200, "  \n " },
      { "fetch", "bom", 200, BOM .. '{"errcode":-1}' },
      { "fetch", "nocontent", 204, "" },
      { "fetch", "partial", 206, "MP4PART" },
    } do
      local how, name, status, body = case[1], case[2], case[3], case[4]
      it(how .. " " .. name .. ": HTTP " .. status .. " comes back in memory, the destination stays", function()
        local dest, mtime = existing()
        local r
        if how == "get" then r = assert(s:get("t", name, dest))
        else r = assert(s:fetch(server.base_url .. "/cdn/" .. name, dest, { allow_private = true })) end
        assert.is_nil(r.file)
        assert.is_nil(r.path)
        assert.equal(status, r.status)
        assert.equal(body, r.body)
        assert_untouched(dest, mtime)
      end)
    end

    it("while a 200 with a body is the file, for get and fetch", function()
      local dest = dir .. "/dest"
      assert.is_true(assert(s:get("t", "file", dest)).file)
      assert.equal("GIFDATA", helper.read(dest))
      assert.is_true(assert(s:fetch(server.base_url .. "/cdn/file", dest, { allow_private = true })).file)
      assert.equal("MP4DATA", helper.read(dest))
    end)
  end)

  describe("a destination that is not a regular file", function()
    -- each refused with input before any request, and left as it was
    local function refused(path, message)
      local before = counts().requests
      local listing = helper.ls(dir)
      local r, err, kind = s:get("t", "file", path)
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(message, err)
      assert.equal(before, counts().requests)
      assert.same(listing, helper.ls(dir))
    end

    it("a directory, or a symlink to one", function()
      helper.sh("mkdir " .. q(dir .. "/sub") .. " && ln -s sub " .. q(dir .. "/link"))
      refused(dir .. "/sub", dir .. "/sub is a directory")
      refused(dir .. "/link", dir .. "/link is a directory")
      assert.equal("directory", file_type(dir .. "/sub"))
      assert.equal("symbolic link", file_type(dir .. "/link"))
    end)

    it("a socket", function()
      local sock = dir .. "/sock"
      helper.sh("python3 -c " .. q("import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])") .. " " .. q(sock))
      assert.equal("socket", file_type(sock))
      refused(sock, sock .. " is a socket")
      assert.equal("socket", file_type(sock))
    end)

    it("a block device (made with mknod, when allowed)", function()
      local dev = dir .. "/blk"
      local _, ok = helper.sh("mknod " .. q(dev) .. " b 7 0 2>/dev/null")
      if not ok then return end      -- not root: no device of our own to offer
      refused(dev, dev .. " is a block device")
      assert.equal("block special file", file_type(dev))
    end)

    it("a dangling symlink", function()
      local link = dir .. "/dangling"
      helper.sh("ln -s " .. q(dir .. "/nowhere") .. " " .. q(link))
      refused(link, link .. " is a symbolic link to nothing")
      assert.equal("symbolic link", file_type(link))
      assert.is_nil(helper.read(dir .. "/nowhere"))
    end)

    it("an empty path", function()
      local r, err, kind = s:get("t", "file", "")
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the destination path is empty", err)
    end)

    it("a FIFO is written in place, as curl -o does, and stays a FIFO", function()
      local fifo, out = dir .. "/fifo", dir .. "/out"
      helper.sh("mkfifo " .. q(fifo) .. " && (timeout 20 cat " .. q(fifo) .. " > " .. q(out) .. " &) </dev/null >/dev/null 2>&1")
      local r, err
      for _ = 1, 100 do    -- until the reader has the FIFO open
        r, err = s:get("t", "file", fifo)
        if r or not err:find("no process is reading", 1, true) then break end
        os.execute("sleep 0.1")
      end
      assert(r, err)
      assert.is_true(r.file)
      assert.equal(fifo, r.path)
      assert.equal(7, r.size)
      for _ = 1, 100 do
        if helper.read(out) == "GIFDATA" then break end
        os.execute("sleep 0.1")
      end
      assert.equal("GIFDATA", helper.read(out))
      assert.equal("fifo", file_type(fifo))
      assert.same({ "fifo", "out" }, helper.ls(dir))
    end)

    it("a FIFO nobody reads: an io error at once, not a hang", function()
      local fifo = dir .. "/fifo"
      helper.sh("mkfifo " .. q(fifo))
      local r, err, kind = s:get("t", "file", fifo)
      assert.is_nil(r)
      assert.equal("io", kind)
      assert.equal("cannot write " .. fifo .. ": no process is reading that FIFO", err)
      assert.equal("fifo", file_type(fifo))
      assert.same({ "fifo" }, helper.ls(dir))
    end)

    it("an error document never goes into a FIFO (it is not even opened)", function()
      local fifo = dir .. "/fifo"
      helper.sh("mkfifo " .. q(fifo))
      local r = assert(s:get("t", "bom", fifo))       -- no reader: opening it would have failed
      assert.is_nil(r.file)
      assert.equal(200, r.status)
      assert.equal("fifo", file_type(fifo))
    end)

    it("a character device is written in place (one made with mknod, when allowed)", function()
      local dev = dir .. "/null"
      local _, ok = helper.sh("mknod " .. q(dev) .. " c 1 3 2>/dev/null")
      if not ok then dev = "/dev/null" end
      local r = assert(s:get("t", "file", dev))
      assert.is_true(r.file)
      assert.equal(dev, r.path)
      assert.equal("character special file", file_type(dev))
      if ok then assert.same({ "null" }, helper.ls(dir)) end
    end)

    it("a symlink to a regular file: the target is replaced, the link stays", function()
      helper.sh("mkdir " .. q(dir .. "/real"))
      local target = helper.write(dir .. "/real/x.gif", "previous content")
      helper.sh("ln -s real/x.gif " .. q(dir .. "/link"))
      local r = assert(s:get("t", "file", dir .. "/link"))
      assert.is_true(r.file)
      assert.equal(dir .. "/link", r.path)
      assert.equal("symbolic link", file_type(dir .. "/link"))
      assert.equal("real/x.gif", (helper.sh("readlink " .. q(dir .. "/link")):gsub("%s+$", "")))
      assert.equal("GIFDATA", helper.read(target))
      assert.same({ "link", "real" }, helper.ls(dir))
      assert.same({ "x.gif" }, helper.ls(dir .. "/real"))    -- the temp file was beside the target
    end)
  end)

  describe("file modes", function()
    it("a replaced file keeps its permission bits, never setuid or setgid", function()
      local dest = existing()
      helper.sh("chmod 6750 " .. q(dest))
      assert.equal("6750", mode(dest))
      assert(s:get("t", "file", dest))
      assert.equal("750", mode(dest))
      helper.sh("chmod 0600 " .. q(dest))
      assert(s:get("t", "file", dest))
      assert.equal("600", mode(dest))
    end)

    it("a new file gets 0666 less the umask", function()
      local build = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
      for _, case in ipairs { { "077", "600" }, { "027", "640" }, { "002", "664" } } do
        local dest = dir .. "/new-" .. case[1]
        local code = ('package.cpath = %q .. ";" .. package.cpath; local core = require "wxmedia.core"; '
          .. 'local s = core.session{ base_url = %q }; assert(s:get("t", "file", %q))'):format(build, server.base_url, dest)
        local out, ok = helper.sh("umask " .. case[1] .. " && " .. helper.lua .. " -e " .. q(code) .. " 2>&1")
        assert.is_true(ok, out)
        assert.equal(case[2], mode(dest), "umask " .. case[1])
      end
    end)
  end)

  describe("no_replace", function()
    it("refuses an existing file before any request, and writes a new one", function()
      local dest, mtime = existing()
      local before = counts().requests
      local r, err, kind = s:get("t", "file", dest, { no_replace = true })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(dest .. " already exists", err)
      assert.equal(before, counts().requests)
      assert_untouched(dest, mtime)
      r = assert(s:get("t", "file", dir .. "/new", { no_replace = true }))
      assert.is_true(r.file)
      assert.equal("GIFDATA", helper.read(dir .. "/new"))
    end)

    it("never replaces a file that appears while the body is coming", function()
      local dest = dir .. "/dest"
      local r, err, kind = s:get("t", "file", dest, { no_replace = true, on_file = function()
        helper.write(dest, "previous content")       -- another process, in the meantime
      end })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(dest .. " already exists", err)
      assert.equal("previous content", helper.read(dest))
      assert.same({ "dest" }, helper.ls(dir))
    end)
  end)

  describe("on_file", function()
    it("is told status, type, the server's filename and the size, before anything is written", function()
      local dest = dir .. "/dest"
      local seen, listing
      local r = assert(s:get("t", "file", dest, { on_file = function(info)
        seen, listing = info, helper.ls(dir)
      end }))
      assert.is_true(r.file)
      assert.same({ status = 200, content_type = "image/gif", filename = "x.gif", size = 7 }, seen)
      assert.same({}, listing)
      assert.equal("GIFDATA", helper.read(dest))
    end)

    it("may name another destination (the temp file goes beside that one)", function()
      local dest, mtime = existing()
      helper.sh("mkdir " .. q(dir .. "/other"))
      local chosen = dir .. "/other/x.gif"
      local r = assert(s:get("t", "file", dest, { on_file = function(info) return dir .. "/other/" .. info.filename end }))
      assert.equal(chosen, r.path)
      assert.equal("GIFDATA", helper.read(chosen))
      assert_untouched(dest, mtime, { "dest", "other" })
      assert.same({ "x.gif" }, helper.ls(dir .. "/other"))
    end)

    it("a destination it names follows the same rules", function()
      local dest, mtime = existing()
      local r, err, kind = s:get("t", "file", dest, { on_file = function() return dir end })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(dir .. " is a directory", err)
      assert_untouched(dest, mtime)
      r, err, kind = s:get("t", "file", dest, { on_file = function() return dest .. "\0.gif" end })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the path on_file returned holds a NUL byte", err)
      assert_untouched(dest, mtime)
    end)

    it("may refuse with nil, message: the transfer stops, nothing is written", function()
      local dest, mtime = existing()
      local r, err, kind = s:get("t", "file", dest, { on_file = function() return nil, "x.gif already exists" end })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("x.gif already exists", err)
      assert_untouched(dest, mtime)
    end)

    it("an error it raises is raised again, after cleanup", function()
      local dest, mtime = existing()
      local ok, e = pcall(s.get, s, "t", "file", dest, { on_file = function() error("no room", 0) end })
      assert.is_false(ok)
      assert.equal("no room", e)
      assert_untouched(dest, mtime)
      assert(s:get("t", "file", dest))     -- the session works on
    end)

    it("is not called for an answer that is not a file", function()
      local called = false
      for _, id in ipairs { "bom", "empty", "nocontent", "partial" } do
        assert(s:get("t", id, dir .. "/dest", { on_file = function() called = true end }))
      end
      assert.is_false(called)
    end)
  end)

  describe("a NUL byte", function()
    it("in a destination path is refused before any request; the shorter path is untouched", function()
      local precious, mtime = existing("precious.txt")
      local before = counts().requests
      local r, err, kind = s:get("t", "file", precious .. "\0.jpg")
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the destination path holds a NUL byte", err)
      assert.equal(before, counts().requests)
      assert_untouched(precious, mtime)
    end)

    it("in an upload's path is refused before any request", function()
      local img = helper.write(dir .. "/img.jpg", "JPEG")
      local before = counts().requests
      local r, err, kind = s:upload("t", "image", img .. "\0x")
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the file path holds a NUL byte", err)
      assert.equal(before, counts().requests)
    end)

    it("in any other string a call takes", function()
      local img = helper.write(dir .. "/img.jpg", "JPEG")
      local dest = dir .. "/dest"
      local before = counts().requests
      for _, case in ipairs {
        { "the access_token holds a NUL byte", function() return s:get("t\0x", "file", dest) end },
        { "the media_id holds a NUL byte", function() return s:get("t", "file\0x", dest) end },
        { "the URL holds a NUL byte", function() return s:fetch(server.base_url .. "/cdn/file\0x", dest) end },
        { "the destination path holds a NUL byte", function() return s:fetch(server.base_url .. "/cdn/file", dest .. "\0") end },
        { "the access_token holds a NUL byte", function() return s:upload("t\0", "image", img) end },
        { "the media type holds a NUL byte", function() return s:upload("t", "image\0x", img) end },
        { "the filename holds a NUL byte", function() return s:upload("t", "image", img, { filename = "a\0.jpg" }) end },
        { "the content_type holds a NUL byte", function() return s:upload("t", "image", img, { content_type = "image/jpeg\0" }) end },
        { "the request path holds a NUL byte", function() return s:request("GET", "/cgi-bin/token\0x") end },
        { "the query parameter secret holds a NUL byte", function() return s:request("GET", "/x", { query = { secret = "a\0b" } }) end },
        { "a query parameter's name holds a NUL byte", function() return s:request("GET", "/x", { query = { ["a\0b"] = "c" } }) end },
        { "the content_type holds a NUL byte", function() return s:request("POST", "/x", { body = "{}", content_type = "a\0b" }) end },
        { "the path holds a NUL byte", function() return core.stat(img .. "\0x") end },
        { "the path holds a NUL byte", function() return core.lstat(img .. "\0x") end },
        { "the path holds a NUL byte", function() return core.sha256_file(img .. "\0x") end },
        { "the path holds a NUL byte", function() return core.write_private(img .. "\0x", "data") end },
        { "the path holds a NUL byte", function() return core.lock(img .. "\0x", 0) end },
      } do
        local r, err, kind = case[2]()
        assert.is_nil(r)
        assert.equal("input", kind)
        assert.equal(case[1], err)
      end
      assert.equal(before, counts().requests)
      assert.same({ "img.jpg" }, helper.ls(dir))
      assert.equal("JPEG", helper.read(img))
    end)

    it("in a session option raises (it is the program's configuration)", function()
      assert.has_error(function() core.session{ base_url = "http://127.0.0.1\0.evil" } end,
        "bad argument #1 to 'session' (field 'base_url' holds a NUL byte)")
      assert.has_error(function() core.session{ cainfo = "/etc/ssl\0x" } end,
        "bad argument #1 to 'session' (field 'cainfo' holds a NUL byte)")
    end)
  end)

  describe("fetch and private addresses", function()
    local function blocked(url, address)
      local dest = dir .. "/dest"
      local r, err, kind = s:fetch(url, dest)
      assert.is_nil(r, url)
      assert.equal("blocked", kind, err)
      if address then
        assert.equal("the URL points to a private address (" .. address .. "); fetch needs allow_private for it", err)
      end
      assert.same({}, helper.ls(dir))
      return err
    end

    it("refuses loopback, private, shared, link-local, unspecified, multicast and unique-local addresses", function()
      for _, case in ipairs {
        { "127.0.0.1", "127.0.0.1" }, { "127.8.9.10", "127.8.9.10" }, { "10.1.2.3", "10.1.2.3" },
        { "172.16.0.1", "172.16.0.1" }, { "172.31.255.254", "172.31.255.254" },
        { "192.168.1.1", "192.168.1.1" }, { "100.64.0.1", "100.64.0.1" },
        { "169.254.169.254", "169.254.169.254" }, { "0.0.0.0", "0.0.0.0" }, { "224.0.0.1", "224.0.0.1" },
        { "[::1]", "::1" }, { "[fe80::1]", "fe80::1" }, { "[fc00::1]", "fc00::1" }, { "[fd12:3456::1]", "fd12:3456::1" },
        { "[::ffff:127.0.0.1]", "::ffff:127.0.0.1" }, { "[::ffff:10.0.0.1]", "::ffff:10.0.0.1" },
        { "[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe" }, { "[ff02::1]", "ff02::1" },
      } do
        blocked("http://" .. case[1] .. ":9/video.mp4", case[2])
        blocked("https://" .. case[1] .. ":9/video.mp4", case[2])
      end
    end)

    it("refuses a name that resolves to loopback", function()
      local err = blocked("http://localhost:" .. server.port .. "/cdn/file")
      assert.truthy(err:find("(127.0.0.1)", 1, true) or err:find("(::1)", 1, true), err)
    end)

    it("refuses the session's open connection to a private address too (no bypass through reuse)", function()
      assert(s:get("t", "file", dir .. "/first"))     -- the base URL: allowed; the connection stays open
      helper.sh("rm " .. q(dir .. "/first"))
      local before = counts().requests
      blocked(server.base_url .. "/cdn/file", "127.0.0.1")
      assert.equal(before, counts().requests)
      -- and the session goes on to the base URL as before
      assert(s:get("t", "file", dir .. "/again"))
    end)

    it("fetches from a private address with allow_private = true", function()
      local r = assert(s:fetch(server.base_url .. "/cdn/file", dir .. "/dest", { allow_private = true }))
      assert.is_true(r.file)
      assert.equal("MP4DATA", helper.read(dir .. "/dest"))
    end)

    it("no message holds the URL or its query", function()
      for _, url in ipairs {
        "http://127.0.0.1:1/v.mp4?access_token=SECRETVALUE",          -- connect
        "http://[::1/v.mp4?access_token=SECRETVALUE",                 -- malformed
        "gopher://127.0.0.1:1/v.mp4?access_token=SECRETVALUE",        -- not http(s)
      } do
        local r, err = s:fetch(url, dir .. "/dest", { allow_private = true })
        assert.is_nil(r)
        assert.is_nil(err:find("SECRETVALUE", 1, true), err)
        assert.is_nil(err:find("v.mp4", 1, true), err)
      end
      local r, err = s:fetch("http://10.0.0.1/v.mp4?access_token=SECRETVALUE", dir .. "/dest")
      assert.is_nil(r)
      assert.is_nil(err:find("SECRETVALUE", 1, true), err)
    end)

    it("only over http and https", function()
      local r, err, kind = s:fetch("file:///etc/passwd", dir .. "/dest", { allow_private = true })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.matches("not supported", err)
      assert.same({}, helper.ls(dir))
    end)
  end)

  describe("an upload sends exactly the file it checked", function()
    local BIG = 24 * 1024 * 1024     -- more than loopback's socket buffers hold while the server waits

    local function big_file()
      local path = dir .. "/big.jpg"
      helper.sh("head -c " .. BIG .. " /dev/zero > " .. q(path))
      return path
    end

    -- Uploads with type "slow" and changes the file (by `change`) at the first progress call in the
    -- middle of the body; returns the result and the counts before and after.
    local function upload_changing(path, change)
      local before = counts()
      local changed = false
      local r, err, kind = s:upload("t", "slow", path, { progress = function(_, _, ultotal, ulnow)
        if not changed and ultotal > 0 and ulnow > 0 and ulnow < ultotal then
          changed = true
          change()
        end
      end })
      assert.is_true(changed, "the progress function never saw the middle of the upload")
      return r, err, kind, before, counts()
    end

    it("a file that shrinks while it is sent fails (input), and the server never gets a whole body", function()
      local path = big_file()
      local r, err, kind, before, after = upload_changing(path, function()
        helper.sh("truncate -s 1000 " .. q(path))
      end)
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(path .. " changed while it was being uploaded: it ended before its " .. BIG .. " bytes", err)
      assert.equal(before.complete, after.complete)
    end)

    it("a file that grows while it is sent fails (input), and the server never gets a whole body", function()
      local path = big_file()
      local r, err, kind, before, after = upload_changing(path, function()
        helper.sh("printf more >> " .. q(path))
      end)
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(path .. " changed while it was being uploaded: it grew past its " .. BIG .. " bytes", err)
      assert.equal(before.complete, after.complete)
    end)

    it("an unchanged file arrives whole, with its length declared (never chunked)", function()
      local path = big_file()
      local before = counts()
      local r = assert(s:upload("t", "slow", path))
      assert.equal(200, r.status)
      local after = counts()
      assert.equal(before.complete + 1, after.complete)
      assert.equal(before.chunked, after.chunked)
    end)

    it("with size = N, a file of another size fails before anything is sent", function()
      local path = helper.write(dir .. "/img.jpg", "JPEGDATA")
      local before = counts().requests
      local r, err, kind = s:upload("t", "image", path, { size = 5 })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(path .. " changed after it was checked: 5 bytes then, 8 now", err)
      assert.equal(before, counts().requests)
      assert(s:upload("t", "image", path, { size = 8 }))
    end)

    it("a FIFO is refused at once, without waiting for a writer", function()
      local fifo = dir .. "/fifo.jpg"
      helper.sh("mkfifo " .. q(fifo))
      local build = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
      local code = ('package.cpath = %q .. ";" .. package.cpath; local core = require "wxmedia.core"; '
        .. 'local _, err = core.session{ base_url = %q }:upload("t", "image", %q); print(err)'):format(build, server.base_url, fifo)
      local out = helper.sh("timeout 20 " .. helper.lua .. " -e " .. q(code) .. " 2>&1")
      assert.equal(fifo .. " is not a regular file\n", out)
    end)
  end)
end)
