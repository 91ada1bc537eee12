-- wxmedia.core: uploads and downloads against the emulator. Every media type goes up and comes back
-- byte-identical; "file or JSON" is decided right; progress and abort; odd file names; input errors.
local helper = require "helper"
local core = require "wxmedia.core"

describe("wxmedia.core media", function()
  local emu, s, token, dir

  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    token = emu:token()
    s = core.session{ base_url = emu.base_url }
    dir = helper.tmpdir()
  end)
  after_each(function()
    s:close()
    helper.rmtree(dir)
  end)

  local function decode(body) return require("cjson").decode(body) end

  local function upload(mtype, path, opts)
    local r, err, kind = s:upload(token, mtype, path, opts)
    assert(r, err)
    assert.is_nil(kind)
    assert.equal(200, r.status)
    local res = decode(r.body)
    assert.is_nil(res.errcode, r.body)
    return res.media_id or res.thumb_media_id, res
  end

  -- A destination that already holds something, to prove a failure leaves it exactly as it was.
  local function existing(name)
    local path = helper.write(dir .. "/" .. name, "previous content")
    return path, helper.mtime(path)
  end

  local function assert_untouched(path, mtime)
    assert.equal("previous content", helper.read(path))
    assert.equal(mtime, helper.mtime(path))
    assert.same({ (path:match("[^/]+$")) }, helper.ls(dir))    -- no temp file left beside it
  end

  describe("each media type goes up and comes back byte-identical", function()
    for _, case in ipairs {
      { "image", "image.jpg", "image/jpeg" }, { "image", "image.png", "image/png" },
      { "image", "image.gif", "image/gif" }, { "thumb", "thumb.jpg", "image/jpeg" },
      { "voice", "voice.amr", "audio/amr" }, { "voice", "voice.mp3", "audio/mpeg" },
    } do
      local mtype, name, ctype = case[1], case[2], case[3]
      it(mtype .. " " .. name, function()
        local id, res = upload(mtype, helper.fixture(name))
        assert.equal(mtype, res.type)
        assert.matches("^[%w_%-]+$", id)
        local dest = dir .. "/" .. name
        local r, err = s:get(token, id, dest)
        assert(r, err)
        assert.is_true(r.file)
        assert.equal(200, r.status)
        assert.equal(ctype, r.content_type)
        assert.equal(dest, r.path)
        assert.equal(#helper.read(helper.fixture(name)), r.size)
        assert.equal(id .. "." .. name:match("%.(%w+)$"), r.filename)
        assert.is_nil(r.body)
        assert.equal(helper.read(helper.fixture(name)), helper.read(dest))
        assert.same({ name }, helper.ls(dir))
      end)
    end

    it("video: media/get answers JSON with video_url, and fetch downloads the bytes", function()
      local id = upload("video", helper.fixture("video.mp4"))
      local dest, mtime = existing("video.mp4")
      local r = assert(s:get(token, id, dest))
      assert.is_nil(r.file)
      assert.equal(200, r.status)
      local url = assert(decode(r.body).video_url)
      assert_untouched(dest, mtime)
      local f = assert(s:fetch(url, dest, { allow_private = true }))     -- the emulator is on loopback
      assert.is_true(f.file)
      assert.equal("video/mp4", f.content_type)
      assert.is_nil(f.filename)          -- a CDN sends no Content-Disposition
      assert.equal(helper.read(helper.fixture("video.mp4")), helper.read(dest))
      assert.same({ "video.mp4" }, helper.ls(dir))
    end)

    it("voice through media/get/jssdk", function()
      local id = upload("voice", helper.fixture("voice.amr"))
      local r = assert(s:get(token, id, dir .. "/v.speex", { jssdk = true }))
      assert.is_true(r.file)
      assert.equal("voice/speex", r.content_type)
      assert.equal(id .. ".speex", r.filename)
      assert.equal(helper.read(helper.fixture("voice.amr")), helper.read(dir .. "/v.speex"))
    end)

    it("replaces an existing destination whole (also without fsync)", function()
      local id = upload("image", helper.fixture("image.png"))
      local dest = existing("out.png")
      local quick = core.session{ base_url = emu.base_url, fsync = false }
      assert(quick:get(token, id, dest))
      quick:close()
      assert.equal(helper.read(helper.fixture("image.png")), helper.read(dest))
      assert.same({ "out.png" }, helper.ls(dir))
    end)
  end)

  it("sends the filename and part type it is given", function()
    upload("image", helper.fixture("image.jpg"), { filename = "photo.jpg", content_type = "image/jpeg" })
    local e = emu:requests("upload")[1]
    assert.equal("photo.jpg", e.filename)
  end)

  describe("file names with spaces, quotes and non-ASCII", function()
    local name = "my \"holiday\" 照片 it's.jpg"

    it("upload from such a path, download to such a path", function()
      local src = helper.write(dir .. "/" .. name, helper.read(helper.fixture("image.jpg")))
      local id = upload("image", src)
      local dest = dir .. "/back " .. name
      local r = assert(s:get(token, id, dest))
      assert.equal(dest, r.path)
      assert.equal(helper.read(src), helper.read(dest))
      assert.same({ "back " .. name, name }, helper.ls(dir))
    end)
  end)

  describe("the error JSON is never written to the destination", function()
    it("40007 for an unknown media_id", function()
      local dest, mtime = existing("x.jpg")
      local r = assert(s:get(token, "no-such-media-id", dest))
      assert.equal(200, r.status)
      assert.is_nil(r.file)
      assert.equal(40007, decode(r.body).errcode)
      assert_untouched(dest, mtime)
    end)

    it("nor is any body when there is no destination yet", function()
      local r = assert(s:get(token, "no-such-media-id", dir .. "/new.jpg"))
      assert.equal(40007, decode(r.body).errcode)
      assert.same({}, helper.ls(dir))
    end)

    it("a JSON body over the cap is an error, not a file", function()
      local dest, mtime = existing("x.jpg")
      local r, err, kind = s:get(token, "no-such-media-id", dest, { max_body = 8 })
      assert.is_nil(r)
      assert.equal("transfer", kind)
      assert.matches("over the cap", err)
      assert_untouched(dest, mtime)
    end)
  end)

  describe("progress", function()
    it("is called with the totals, the last call showing the whole transfer", function()
      local calls = {}
      local function progress(dltotal, dlnow, ultotal, ulnow)
        calls[#calls + 1] = { dltotal, dlnow, ultotal, ulnow }
      end
      local size = #helper.read(helper.fixture("voice.mp3"))
      local id = upload("voice", helper.fixture("voice.mp3"), { progress = progress })
      assert.is_true(#calls >= 1)
      local last = calls[#calls]
      assert.is_true(last[3] > size and last[4] == last[3])    -- the whole form went up
      calls = {}
      assert(s:get(token, id, dir .. "/v.mp3", { progress = progress }))
      last = calls[#calls]
      assert.same({ size, size }, { last[1], last[2] })
    end)

    it("aborts the transfer when it returns false, leaving the destination alone", function()
      local id = upload("image", helper.fixture("image.jpg"))
      local dest, mtime = existing("x.jpg")
      local r, err, kind = s:get(token, id, dest, { progress = function() return false end })
      assert.is_nil(r)
      assert.equal("aborted", kind)
      assert.equal("the transfer was stopped by the progress function", err)
      assert_untouched(dest, mtime)
      r, err, kind = s:upload(token, "image", helper.fixture("image.jpg"),
        { progress = function() return false end })
      assert.is_nil(r)
      assert.equal("aborted", kind)
      assert.equal("the transfer was stopped by the progress function", err)
      -- the session works on
      assert(s:get(token, id, dest))
      assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(dest))
    end)

    it("aborts on an error raised inside it, cleans up, and raises that very error", function()
      local id = upload("image", helper.fixture("image.jpg"))
      local dest, mtime = existing("x.jpg")
      local boom = setmetatable({}, { __tostring = function() return "boom" end })
      local ok, e = pcall(s.get, s, token, id, dest, { progress = function() error(boom) end })
      assert.is_false(ok)
      assert.equal(boom, e)                 -- the same object, as Lua's own error() would give
      assert_untouched(dest, mtime)
      ok, e = pcall(s.upload, s, token, "image", helper.fixture("image.jpg"),
        { progress = function() error("a string", 0) end })
      assert.is_false(ok)
      assert.equal("a string", e)
      -- the session works on
      assert(s:get(token, id, dest))
      assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(dest))
    end)

    it("cannot use or close its own session (the transfer aborts; the session works on)", function()
      local id = upload("image", helper.fixture("image.jpg"))
      local dest, mtime = existing("x.jpg")
      for _, misuse in ipairs {
        function() s:request("GET", "/cgi-bin/token") end,
        function() s:close() end,
      } do
        local ok, e = pcall(s.get, s, token, id, dest, { progress = misuse })
        assert.is_false(ok)
        assert.matches("busy wxmedia%.session", e)
        assert_untouched(dest, mtime)
      end
      assert(s:get(token, id, dest))
      assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(dest))
    end)

    it("runs in the coroutine that made the call", function()
      local id = upload("image", helper.fixture("image.jpg"))
      local seen = {}
      local function fetch_in_coroutine()
        local co = coroutine.running()
        assert(s:get(token, id, dir .. "/c.jpg", { progress = function()
          seen[#seen + 1] = coroutine.running() == co
        end }))
        return co
      end
      local co = coroutine.create(fetch_in_coroutine)
      assert.is_true((coroutine.resume(co)))
      assert.is_true(#seen > 0)
      for _, same in ipairs(seen) do assert.is_true(same) end
    end)

    it("runs at most about ten times a second", function()
      local id = upload("image", helper.fixture("image.jpg"))
      emu:fault{ route = "get", kind = "drip", rate = 1500 }     -- about 1.3 s for 1980 bytes
      local calls = 0
      local t0 = core.now()
      assert(s:get(token, id, dir .. "/x.jpg", { progress = function() calls = calls + 1 end }))
      local elapsed = core.now() - t0
      assert.is_true(calls >= 2)
      assert.is_true(calls <= math.ceil(elapsed * 10) + 3, ("%d calls in %.2f s"):format(calls, elapsed))
    end)
  end)

  describe("input errors come back before any request", function()
    it("a missing file", function()
      local r, err, kind = s:upload(token, "image", dir .. "/missing.jpg")
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("cannot open " .. dir .. "/missing.jpg: no such file or directory", err)
    end)

    it("a directory", function()
      local r, err, kind = s:upload(token, "image", dir)
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(dir .. " is a directory", err)
      assert.same({}, emu:requests("upload"))
    end)

    it("a download into a directory, or into a folder that does not exist", function()
      local id = upload("image", helper.fixture("image.jpg"))
      local r, err, kind = s:get(token, id, dir)
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal(dir .. " is a directory", err)
      r, err, kind = s:get(token, id, dir .. "/missing/x.jpg")
      assert.is_nil(r)
      assert.equal("io", kind)
      assert.equal("cannot write " .. dir .. "/missing/x.jpg: no such file or directory", err)
      assert.same({}, emu:requests("get"))       -- found before any request
      assert.same({}, helper.ls(dir))
    end)
  end)
end)
