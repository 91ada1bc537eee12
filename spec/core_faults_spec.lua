-- wxmedia.core under the emulator's faults: each maps to the right result or kind, and after every
-- failed download the destination is byte-identical, with the same mtime, and no temp file is left.
local helper = require "helper"
local core = require "wxmedia.core"

describe("wxmedia.core faults", function()
  local emu, token, dir, image_id, video_url
  local messages, tokens = {}, {}   -- every failure message and token, checked at the end

  setup(function()
    emu = helper.start_emulator()
  end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    token = emu:token()
    tokens[#tokens + 1] = token
    dir = helper.tmpdir()
    local _, res = emu:upload_with_curl(token, "image", helper.fixture("image.jpg"))
    image_id = assert(res.media_id)
    _, res = emu:upload_with_curl(token, "video", helper.fixture("video.mp4"))
    local _, body = helper.curl(helper.shell_quote(emu.base_url .. "/cgi-bin/media/get?access_token="
      .. token .. "&media_id=" .. res.media_id))
    video_url = assert(require("cjson").decode(body).video_url)
  end)
  after_each(function() helper.rmtree(dir) end)

  local function session(opts)
    opts = opts or {}
    opts.base_url = emu.base_url
    return core.session(opts)
  end

  local function existing()
    local path = helper.write(dir .. "/dest.jpg", "previous content")
    return path, helper.mtime(path)
  end

  local function assert_untouched(path, mtime)
    assert.equal("previous content", helper.read(path))
    assert.equal(mtime, helper.mtime(path))
    assert.same({ "dest.jpg" }, helper.ls(dir))
  end

  -- Runs call(session, dest) under fault f; expects nil, message, kind and an untouched destination.
  local function expect_failure(f, kind, call, opts)
    emu:fault(f)
    local s = session(opts)
    local dest, mtime = existing()
    local r, err, k = call(s, dest)
    assert.is_nil(r, "expected a failure, got a result")
    assert.equal(kind, k, err)
    assert.equal("string", type(err))
    -- the detail in the caller's terms: no "kind: " prefix, lowercase start, no final period
    assert.is_nil(err:match("^%a+: "), err)
    assert.is_nil(err:match("^%u%l"), err)
    assert.is_nil(err:match("%.$"), err)
    messages[#messages + 1] = err
    assert_untouched(dest, mtime)
    -- the session survives the failure: the next call works and writes the file
    local ok = assert(s:get(token, image_id, dest))
    assert.is_true(ok.file)
    assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(dest))
    s:close()
    return err
  end

  local function get(s, dest) return s:get(token, image_id, dest) end
  -- the emulator's CDN is on loopback: a private address, that fetch refuses unless allowed
  local function fetch(s, dest) return s:fetch(video_url, dest, { allow_private = true }) end
  local function upload(s) return s:upload(token, "image", helper.fixture("image.jpg")) end

  describe("an HTTP status is data, and never written to the destination", function()
    for _, body in ipairs { "empty", "html" } do
      it("503 with an " .. body .. " body", function()
        emu:fault{ route = "get", kind = "status", status = 503, body = body }
        local s = session()
        local dest, mtime = existing()
        local r = assert(s:get(token, image_id, dest))
        assert.equal(503, r.status)
        assert.is_nil(r.file)
        if body == "html" then assert.matches("<html>", r.body) else assert.equal("", r.body) end
        assert_untouched(dest, mtime)
        s:close()
      end)
    end

    it("429 from the CDN", function()
      emu:fault{ route = "video", kind = "status", status = 429 }
      local s = session()
      local dest, mtime = existing()
      local r = assert(s:fetch(video_url, dest, { allow_private = true }))
      assert.equal(429, r.status)
      assert_untouched(dest, mtime)
      s:close()
    end)

    it("500 on upload", function()
      emu:fault{ route = "upload", kind = "status", status = 500 }
      local s = session()
      local r = assert(s:upload(token, "image", helper.fixture("image.jpg")))
      assert.equal(500, r.status)
      s:close()
    end)
  end)

  it("an errcode is data: its JSON comes back, the destination stays", function()
    emu:fault{ route = "get", kind = "errcode", errcode = -1 }
    local s = session()
    local dest, mtime = existing()
    local r = assert(s:get(token, image_id, dest))
    assert.equal(200, r.status)
    assert.equal(-1, require("cjson").decode(r.body).errcode)
    assert_untouched(dest, mtime)
    s:close()
  end)

  describe("timeout", function()
    it("a delay longer than the session's timeout (get)", function()
      expect_failure({ route = "get", kind = "delay", seconds = 3 }, "timeout", get, { timeout = 0.5 })
    end)

    it("a delay longer than the session's timeout (upload)", function()
      expect_failure({ route = "upload", kind = "delay", seconds = 3 }, "timeout", upload, { timeout = 0.5 })
    end)

    it("a drip under the default low-speed limit (1 KiB/s; only its time shortened here)", function()
      expect_failure({ route = "get", kind = "drip", rate = 200 }, "timeout", get, { low_speed_time = 1 })
    end)

    it("a slow drip under the low-speed limit", function()
      expect_failure({ route = "get", kind = "drip", rate = 200 }, "timeout", get,
        { low_speed_limit = 100000, low_speed_time = 1 })
    end)
  end)

  describe("transfer", function()
    it("a reset in the middle of the request body (upload)", function()
      expect_failure({ route = "upload", kind = "reset_request" }, "transfer", upload)
    end)

    it("a reset before any answer (get)", function()
      expect_failure({ route = "get", kind = "reset_request" }, "transfer", get)
    end)

    it("a reset in the middle of the file", function()
      expect_failure({ route = "get", kind = "reset_response" }, "transfer", get)
    end)

    it("a file cut short of its Content-Length", function()
      local err = expect_failure({ route = "get", kind = "truncate" }, "transfer", get)
      assert.matches("bytes remaining", err)
    end)

    it("a CDN file cut short", function()
      expect_failure({ route = "video", kind = "truncate" }, "transfer", fetch)
    end)

    it("a CDN reset mid-body", function()
      expect_failure({ route = "video", kind = "reset_response" }, "transfer", fetch)
    end)
  end)

  it("a slow drip above the limits completes, whole", function()
    emu:fault{ route = "get", kind = "drip", rate = 20000 }
    local s = session{ low_speed_limit = 100, low_speed_time = 5 }
    local dest = existing()
    local r = assert(s:get(token, image_id, dest))
    assert.is_true(r.file)
    assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(dest))
    s:close()
  end)

  it("no failure message holds the token or the secret", function()
    assert.is_true(#messages > 0)
    for _, m in ipairs(messages) do
      for _, t in ipairs(tokens) do assert.is_nil(m:find(t, 1, true), m) end
      assert.is_nil(m:find(helper.SECRET, 1, true), m)
    end
  end)
end)
