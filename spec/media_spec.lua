-- wxmedia.media: formats from leading bytes, the filename sent, and the checks made before upload.
local helper = require "helper"
local media = require "wxmedia.media"

describe("wxmedia.media", function()
  local dir
  setup(function() dir = helper.tmpdir() end)
  teardown(function() helper.rmtree(dir) end)

  describe("sniff", function()
    it("recognises each fixture by its content", function()
      local expect = {
        ["image.jpg"] = "jpeg", ["thumb.jpg"] = "jpeg", ["image.png"] = "png", ["image.gif"] = "gif",
        ["voice.amr"] = "amr", ["voice.mp3"] = "mp3", ["video.mp4"] = "mp4",
      }
      for name, fmt in pairs(expect) do
        assert.are.equal(fmt, media.sniff(helper.read(helper.fixture(name)):sub(1, 16)), name)
      end
    end)

    it("recognises an mp3 without an id3 tag by its frame sync", function()
      assert.are.equal("mp3", media.sniff("\255\251\144\100" .. ("\0"):rep(12)))   -- MPEG-1 layer III
      assert.are.equal("mp3", media.sniff("\255\243\144\100"))                     -- MPEG-2 layer III
    end)

    it("refuses what is none of the accepted formats", function()
      assert.is_nil(media.sniff("hello world, plain text"))
      assert.is_nil(media.sniff("\255\225\0\0"))          -- reserved layer bits
      assert.is_nil(media.sniff("\255\233\0\0"))          -- reserved version bits
      assert.is_nil(media.sniff("RIFF\0\0\0\0WAVEfmt "))
      assert.is_nil(media.sniff(""))
    end)
  end)

  describe("filename", function()
    it("keeps an ascii basename that has the format's extension", function()
      assert.are.equal("photo.jpg", media.filename("/a/b/photo.jpg", "jpeg"))
      assert.are.equal("Photo 1.JPEG", media.filename("Photo 1.JPEG", "jpeg"))
      assert.are.equal("v.mp4", media.filename("dir/v.mp4", "mp4"))
    end)

    it("sends media.<ext> for a wrong or missing extension or a non-ascii name", function()
      assert.are.equal("media.png", media.filename("/x/picture.jpg", "png"))
      assert.are.equal("media.jpg", media.filename("/x/upload", "jpeg"))
      assert.are.equal("media.jpg", media.filename("/x/照片.jpg", "jpeg"))
      assert.are.equal("media.mp3", media.filename('/x/a"b.mp3', "mp3"))
      assert.are.equal("media.amr", media.filename("/x/voice.amr.bak", "amr"))
    end)

    it("takes the last component of a path, trailing slashes ignored", function()
      assert.are.equal("c.jpg", media.basename("/a/b/c.jpg"))
      assert.are.equal("c.jpg", media.basename("c.jpg"))
      assert.are.equal("b", media.basename("a/b//"))
      assert.are.equal("", media.basename("/"))
      assert.are.equal("", media.basename(""))
      assert.are.equal("x.png", media.basename(("d/"):rep(5000) .. "x.png"))
    end)
  end)

  describe("check", function()
    local function check_fails(mtype, path, pattern, opts)
      local res, msg, details = media.check(mtype, path, opts)
      assert.is_nil(res)
      assert.are.equal("input", details.kind)
      assert.is_false(details.retryable)
      assert.matches(pattern, msg)
      return msg
    end

    it("describes an accepted file", function()
      local info = assert(media.check("voice", helper.fixture("voice.mp3")))
      assert.are.same({ path = helper.fixture("voice.mp3"), type = "voice", format = "mp3", size = 4511,
        filename = "voice.mp3", content_type = "audio/mpeg" }, info)
      info = assert(media.check("image", helper.fixture("image.gif")))
      assert.are.equal("gif", info.format)
    end)

    it("names the right extension when the file's own is wrong", function()
      local path = helper.write(dir .. "/disguised.gif", helper.read(helper.fixture("image.png")))
      assert.are.equal("media.png", assert(media.check("image", path)).filename)
    end)

    it("refuses an unknown type", function()
      check_fails("picture", helper.fixture("image.jpg"), "unknown media type 'picture'")
    end)

    it("refuses a missing path, a directory and an empty file", function()
      check_fails("image", dir .. "/nope.jpg", "cannot upload .*nope.jpg")
      check_fails("image", dir, "is a directory")
      check_fails("image", helper.write(dir .. "/empty.jpg", ""), "is empty")
    end)

    it("refuses a file over the type's limit, default or given", function()
      local jpeg = helper.read(helper.fixture("image.jpg"))
      local big = helper.write(dir .. "/big.jpg", jpeg .. ("\0"):rep(64 * 1024))
      check_fails("thumb", big, "the limit for thumb is 64 KB %(65536 bytes%)")
      assert.truthy(media.check("image", big))
      check_fails("image", helper.fixture("image.jpg"),
        "1.9 KB %(1980 bytes%); the limit for image is 1000 bytes", { limits = { image = 1000 } })
    end)

    it("refuses a format the type does not accept, judged by content not name", function()
      check_fails("thumb", helper.fixture("image.png"), "is a PNG file; thumb takes JPEG")
      check_fails("voice", helper.fixture("video.mp4"), "voice takes AMR or MP3")
      local fake = helper.write(dir .. "/fake.jpg", "this is text, not a jpeg")
      check_fails("image", fake, "not a format WeChat accepts; image takes JPEG, PNG or GIF")
    end)

    it("uses the stat function it is given", function()
      local msg = check_fails("image", helper.fixture("image.jpg"), "is not a regular file",
        { stat = function() return { type = "other", size = 1 } end })
      assert.matches("image.jpg", msg)
    end)
  end)
end)
