-- client:get's options that reach the core's download: on_file (the destination chosen from what
-- the server answers, before a byte is written) and no_replace (an existing file is never replaced),
-- for media/get and for a video's CDN URL. The command line's `get` without -o is built on them.
local helper = require "helper"
local wxmedia = require "wxmedia"

describe("client:get options", function()
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

  local function client()
    return assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), sleep = function() end }))
  end

  local function fresh_dir()
    local d = dir .. "/d" .. tostring(math.random(1e9))
    assert(os.execute("mkdir " .. helper.shell_quote(d)))
    return d
  end

  it("asks on_file before writing and writes where it says", function()
    local c = client()
    local id = assert(c:upload("image", helper.fixture("image.png"))).media_id
    local d = fresh_dir()
    local seen
    local got = assert(c:get(id, d .. "/placeholder", { on_file = function(info)
      seen = info
      -- nothing is written yet: not even a temp file
      assert.same({}, helper.ls(d))
      return d .. "/chosen.png"
    end }))
    assert.equal(d .. "/chosen.png", got.path)
    assert.same({ "chosen.png" }, helper.ls(d))
    assert.equal(helper.read(helper.fixture("image.png")), helper.read(d .. "/chosen.png"))
    assert.equal(200, seen.status)
    assert.matches("^image/png", seen.content_type)
    assert.is_string(seen.filename)
  end)

  it("stops with kind input, before any byte, when on_file answers nil and a message", function()
    local c = client()
    local id = assert(c:upload("image", helper.fixture("image.jpg"))).media_id
    local d = fresh_dir()
    local res, err, details = c:get(id, d .. "/x.jpg", { on_file = function() return nil, "not wanted" end })
    assert.is_nil(res)
    assert.equal("input", details.kind)
    assert.matches("not wanted", err, 1, true)
    assert.same({}, helper.ls(d))
  end)

  it("never replaces an existing file with no_replace, even one it cannot read", function()
    local c = client()
    local id = assert(c:upload("image", helper.fixture("image.jpg"))).media_id
    local d = fresh_dir()
    local mine = helper.write(d .. "/mine.jpg", "mine")
    os.execute("chmod 000 " .. helper.shell_quote(mine))
    local res, _, details = c:get(id, mine, { no_replace = true })
    assert.is_nil(res)
    assert.equal("input", details.kind)
    os.execute("chmod 600 " .. helper.shell_quote(mine))
    assert.equal("mine", helper.read(mine))
    -- the same through on_file's choice
    res, _, details = c:get(id, d .. "/new.jpg", { no_replace = true, on_file = function() return mine end })
    assert.is_nil(res)
    assert.equal("input", details.kind)
    assert.equal("mine", helper.read(mine))
    assert.same({ "mine.jpg" }, helper.ls(d))
    -- and a new name is written
    assert(c:get(id, d .. "/new.jpg", { no_replace = true }))
    assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(d .. "/new.jpg"))
  end)

  it("passes both to a video's CDN download, with the video_url in on_file's info", function()
    local c = client()
    local id = assert(c:upload("video", helper.fixture("video.mp4"))).media_id
    local d = fresh_dir()
    local seen
    local got = assert(c:get(id, d .. "/placeholder", { no_replace = true, on_file = function(info)
      seen = info
      return d .. "/clip.mp4"
    end }))
    assert.equal(d .. "/clip.mp4", got.path)
    assert.matches("^http", seen.video_url)
    assert.equal(got.video_url, seen.video_url)
    assert.equal(helper.read(helper.fixture("video.mp4")), helper.read(d .. "/clip.mp4"))
    local res, _, details = c:get(id, d .. "/other.mp4", { no_replace = true,
      on_file = function() return d .. "/clip.mp4" end })
    assert.is_nil(res)
    assert.equal("input", details.kind)
    assert.same({ "clip.mp4" }, helper.ls(d))
  end)

  it("raises for options of the wrong type", function()
    local c = client()
    assert.has_error(function() c:get("id", "x", { on_file = "x" }) end)
    assert.has_error(function() c:get("id", "x", { no_replace = 1 }) end)
  end)
end)
