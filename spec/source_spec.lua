-- luacheck: no max line length
-- Uploads from memory, from a Lua file handle and from a reader (wxmedia.source) through the
-- client, against the emulator: the same checks as a path (nothing sent for a bad one), the bytes
-- come back identical under an ASCII name with the detected extension, retries and a token replay
-- resend the whole body when it can be read again and never when it cannot, and no form of upload
-- is ever sent chunked (WeChat's gateway, and the emulator, answer 412 to that).
local helper = require "helper"
local wxmedia = require "wxmedia"

local q = helper.shell_quote

describe("wxmedia upload from memory, a file handle or a reader", function()
  local emu, dir
  local jpg = helper.read(helper.fixture("image.jpg"))
  local png = helper.read(helper.fixture("image.png"))

  setup(function()
    emu = helper.start_emulator()
    dir = helper.tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)
  before_each(function() emu:reset() end)

  local function client(opts)
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), sleep = function() end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  -- A reader over a string, in chunks of `chunk` bytes (else what it is asked); counts its calls.
  local function reader(bytes, chunk)
    local pos, calls = 1, 0
    return function(n)
      calls = calls + 1
      local piece = bytes:sub(pos, pos + (chunk or n) - 1)
      pos = pos + #piece
      if piece == "" then return nil end
      return piece
    end, function() return calls end
  end

  -- The medium WeChat keeps for media_id, read back through get.
  local function stored(c, media_id)
    local path = dir .. "/back-" .. media_id:sub(1, 12)
    assert(c:get(media_id, path))
    return helper.read(path)
  end

  local function uploads() return #emu:requests("upload") end

  describe("bytes in memory", function()
    it("go up and come back identical, under their filename", function()
      local c = client()
      local res = assert(c:upload("image", { data = png, filename = "qr.png" }))
      assert.equal("image", res.type)
      assert.equal(64, #res.media_id)
      assert.equal(png, stored(c, res.media_id))
      assert.equal("qr.png", emu:requests("upload")[1].filename)
    end)

    it("are sent under an ASCII name with the detected format's extension", function()
      local c = client()
      for _, case in ipairs {
        { nil, "media.png" }, { "chart.jpg", "media.png" }, { "图表.png", "media.png" },
        { "reports/2024/q1.PNG", "q1.PNG" }, { 'a"b.png', "media.png" },
      } do
        assert(c:upload("image", { data = png, filename = case[1] }))
        local log = emu:requests("upload")
        assert.equal(case[2], log[#log].filename, tostring(case[1]))
      end
    end)

    it("get upload's checks, and nothing is sent for bad ones", function()
      local c = client()
      for _, case in ipairs {
        { "image", { data = "" }, "cannot upload the data: it is empty" },
        { "image", { data = "hello, plain text", filename = "a.txt" },
          "cannot upload the data 'a.txt' as image: it is not a format WeChat accepts; image takes JPEG, PNG or GIF" },
        { "thumb", { data = png }, "cannot upload the data as thumb: it is a PNG file; thumb takes JPEG" },
        { "thumb", { data = jpg .. ("\0"):rep(64 * 1024) },
          "cannot upload the data: it is 65.9 KB (67516 bytes); the limit for thumb is 64 KB (65536 bytes)" },
        { "sticker", { data = png }, "cannot upload the data: unknown media type 'sticker'; use image, thumb, video or voice" },
      } do
        local res, msg, details = c:upload(case[1], case[2])
        assert.is_nil(res)
        assert.equal(case[3], msg)
        assert.equal("input", details.kind)
      end
      assert.equal(0, uploads())
      assert.is_nil((c:upload("image", { data = jpg }, { limits = { image = 100 } })))
      assert.equal(0, uploads())
    end)

    it("are named in messages by their name field, which is never sent as the filename", function()
      local c = client()
      local res, msg = c:upload("image", { data = "plain text", name = "the request body" })
      assert.is_nil(res)
      assert.equal("cannot upload the request body as image: it is not a format WeChat accepts; image takes "
        .. "JPEG, PNG or GIF", msg)
      assert.equal("cannot upload the request body: it is empty",
        select(2, c:upload("image", { data = "", name = "the request body", filename = "x.jpg" })))
      assert.equal(0, uploads())
      assert(c:upload("image", { data = png, name = "the request body" }))
      assert.equal("media.png", emu:requests("upload")[1].filename)
      assert.has_error(function() c:upload("image", { data = png, name = "" }) end,
        "bad argument #2 to 'upload' (field 'name' is empty)")
      assert.has_error(function() c:upload("image", { data = png, name = 5 }) end,
        "bad argument #2 to 'upload' (field 'name': string expected, got number)")
    end)

    it("are resent whole on a retry and on a replay with a new token", function()
      local c = client()
      emu:fault{ route = "upload", kind = "status", status = 503, count = 1 }
      local res = assert(c:upload("image", { data = jpg }))
      assert.equal(2, uploads())
      assert.equal(jpg, stored(c, res.media_id))
      emu:fault{ route = "upload", kind = "errcode", errcode = 40001, count = 1 }
      res = assert(c:upload("image", { data = png }))
      assert.equal(4, uploads())
      assert.equal(png, stored(c, res.media_id))
    end)

    it("work through the module-level wxmedia.upload and wxmedia.check", function()
      assert(wxmedia.configure({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        token_store = wxmedia.store.memory() }))
      local file = assert(wxmedia.check("image", { data = png, filename = "qr.png" }))
      assert.same({ "png", 275, "qr.png", "image/png" },
        { file.format, file.size, file.filename, file.content_type })
      local res = assert(wxmedia.upload("image", file))
      assert.equal(png, stored(client(), res.media_id))
      assert(wxmedia.upload("image", { data = jpg }))
      assert.equal(2, uploads())
    end)
  end)

  describe("a Lua file handle", function()
    it("is sent from its position to its end, and check leaves that position alone", function()
      local path = helper.write(dir .. "/wrapped.bin", "HEADER--" .. jpg)
      local f = assert(io.open(path, "rb"))
      f:seek("set", 8)
      local c = client()
      local file = assert(c:check("image", { file = f, filename = "photo.jpg" }))
      assert.equal(#jpg, file.size)
      assert.equal("photo.jpg", file.filename)
      assert.equal(8, f:seek())
      local res = assert(c:upload("image", file))
      assert.equal(jpg, stored(c, res.media_id))
      -- and directly, with its size given
      f:seek("set", 8)
      res = assert(c:upload("image", { file = f, size = #jpg }))
      f:close()
      assert.equal(jpg, stored(c, res.media_id))
      assert.equal("media.jpg", emu:requests("upload")[2].filename)
    end)

    it("whose size is not the one given fails before anything is sent", function()
      local f = assert(io.open(helper.fixture("image.jpg"), "rb"))
      local res, msg, details = client():upload("image", { file = f, size = 100 })
      f:close()
      assert.is_nil(res)
      assert.equal("input", details.kind)
      assert.equal("cannot upload the file handle: it holds 1980 bytes after its position, not the 100 given", msg)
      assert.equal(0, uploads())
    end)

    it("is read again from its position on a retry", function()
      local f = assert(io.open(helper.fixture("image.png"), "rb"))
      emu:fault{ route = "upload", kind = "status", status = 502, count = 2 }
      local c = client()
      local res = assert(c:upload("image", { file = f }))
      f:close()
      assert.equal(3, uploads())
      assert.equal(png, stored(c, res.media_id))
    end)

    it("can be a pipe, with its size given", function()
      local p = assert(io.popen("cat " .. q(helper.fixture("image.gif")), "r"))
      local gif = helper.read(helper.fixture("image.gif"))
      local c = client()
      local res = assert(c:upload("image", { file = p, size = #gif, filename = "anim.gif" }))
      p:close()
      assert.equal(gif, stored(c, res.media_id))
      p = assert(io.popen("cat " .. q(helper.fixture("image.gif")), "r"))
      assert.has_error(function() c:upload("image", { file = p }) end,
        "bad argument #2 to 'upload' (field 'size' expected: the file handle cannot seek (a pipe?))")
      p:close()
    end)
  end)

  describe("a reader", function()
    it("is sent whole, first the bytes check read, then the rest", function()
      local c = client()
      local read, calls = reader(jpg, 5)
      local file = assert(c:check("image", { file = read, size = #jpg, filename = "r.jpg" }))
      assert.equal("jpeg", file.format)
      local before = calls()
      assert.is_true(before >= 1)
      local res = assert(c:upload("image", file))
      assert.equal(jpg, stored(c, res.media_id))
      assert.is_true(calls() > before)
      -- in one call too, in chunks of any size
      res = assert(c:upload("image", { file = reader(png, 100000), size = #png }))
      assert.equal(png, stored(c, res.media_id))
    end)

    it("that ends early, or gives more than its size, fails (input)", function()
      local c = client()
      local res, msg, details = c:upload("image", { file = reader(jpg:sub(1, 1000)), size = #jpg,
        filename = "short.jpg" })
      assert.is_nil(res)
      assert.equal("input", details.kind)
      assert.equal("cannot upload short.jpg: the reader ended after 1000 of its 1980 bytes", msg)
      res, msg, details = c:upload("image", { file = reader(jpg .. "more"), size = #jpg })
      assert.is_nil(res)
      assert.equal("input", details.kind)
      assert.equal("cannot upload the reader: the reader gave more than its 1980 bytes", msg)
      res, msg = c:upload("image", { file = reader(jpg:sub(1, 10)), size = #jpg })
      assert.is_nil(res)
      assert.equal("cannot upload the reader: it ended after 10 of its 1980 bytes", msg)
      assert.equal(0, #emu:requests("get"))
    end)

    it("is read once: a failure once it flowed is final, and a second check is refused", function()
      local c = client()
      -- the answer breaks after WeChat read the whole body (a retryable failure)
      emu:fault{ route = "upload", kind = "reset_response", count = 1 }
      local res, msg, details = c:upload("image", { file = reader(jpg), size = #jpg, filename = "once.jpg" })
      assert.is_nil(res)
      assert.equal("transfer", details.kind)
      assert.is_false(details.retryable)
      assert.equal(1, details.attempts)
      assert.matches("; the reader 'once.jpg' was read once: it is not sent again$", msg)
      assert.equal(1, uploads())
      -- WeChat refuses the token once the body is in (its clock moved past the token's life): the
      -- token is replaced, the reader is not sent again
      assert(c:token())
      emu:clock(7300)
      emu:fault{ route = "upload", kind = "delay", seconds = 0.3, count = 1 }
      res, msg, details = c:upload("image", { file = reader(jpg), size = #jpg })
      assert.is_nil(res)
      assert.equal(42001, details.errcode)
      assert.matches("was read once: it is not sent again$", msg)
      assert.equal(2, uploads())
      assert(c:upload("image", { file = reader(jpg), size = #jpg }))       -- the next call works
      -- a checked table is sent once; its source table cannot be checked twice
      local src = { file = reader(png), size = #png }
      local file = assert(c:check("image", src))
      assert(c:upload("image", file))
      res, msg, details = c:upload("image", file)
      assert.is_nil(res)
      assert.equal("input", details.kind)
      assert.equal("cannot upload the reader: the reader was read once and cannot be sent again", msg)
      res, msg = c:check("image", src)
      assert.is_nil(res)
      assert.equal("cannot upload the reader: it was read by an earlier check: upload the table that check "
        .. "returned", msg)
    end)

    it("is retried when it failed before its own reads began", function()
      local c = client()
      local read, calls = reader(jpg)
      local file = assert(c:check("image", { file = read, size = #jpg }))
      local checked_calls = calls()
      -- the first attempt cannot connect: nothing of the reader was used but what check read
      local wrong = client({ base_url = "http://127.0.0.1:1", retries = 0 })
      local res, _, details = wrong:upload("image", file)
      assert.is_nil(res)
      assert.equal("connect", details.kind)
      assert.equal(checked_calls, calls())
      res = assert(c:upload("image", file))
      assert.equal(jpg, stored(c, res.media_id))
    end)

    it("returning nil, message is a read failure; raising is raised to the caller", function()
      local c = client()
      local n = 0
      local res, msg, details = c:upload("image", { size = #jpg, file = function()
        n = n + 1
        if n == 1 then return jpg:sub(1, 100) end
        return nil, "device gone"
      end })
      assert.is_nil(res)
      assert.equal("input", details.kind)
      assert.matches("^cannot upload the reader: cannot read from the reader: device gone", msg)
      n = 0
      assert.has_error(function()
        c:upload("image", { size = #jpg, file = function()
          n = n + 1
          if n == 1 then return jpg:sub(1, 100) end
          error("reader broke", 0)
        end })
      end, "reader broke")
    end)
  end)

  it("takes the table check returned for its type only, and a table with a path as that path", function()
    local c = client()
    local file = assert(c:check("image", { data = jpg }))
    assert.are.equal(file, c:check("image", file))
    local res, msg, details = c:upload("thumb", file)
    assert.is_nil(res)
    assert.equal("input", details.kind)
    assert.equal("cannot upload the data as thumb: it was checked as image", msg)
    res = assert(c:upload("image", { path = helper.fixture("image.png") }))
    assert.equal(png, stored(c, res.media_id))
    assert.equal(1, uploads())
  end)

  describe("misuse raises", function()
    for _, case in ipairs {
      { {}, "a table with data = bytes, or with file = a file handle or a reader, expected" },
      { { data = png, file = io.stdin },
        "a table with data = bytes, or with file = a file handle or a reader, expected" },
      { { data = png, fielname = "x.png" }, "unknown field 'fielname'; did you mean 'filename'?" },
      { { data = png, size = 3 }, "field 'size' is for a file handle or a reader" },
      { { data = 42 }, "field 'data': string expected, got number" },
      { { file = "photo.jpg" }, "field 'file': file handle or function expected, got string" },
      { { file = print }, "field 'size' expected: a reader declares its length" },
      { { file = print, size = -1 }, "field 'size': a whole number of bytes expected" },
      { { file = print, size = 2.5 }, "field 'size': a whole number of bytes expected" },
      { 42, "string or table expected, got number" },
    } do
      it(case[2], function()
        local c = client()
        for _, fname in ipairs { "upload", "check", "media_id" } do
          assert.has_error(function() c[fname](c, "image", case[1]) end,
            ("bad argument #2 to '%s' (%s)"):format(fname, case[2]))
        end
      end)
    end

    it("a closed file handle", function()
      local f = assert(io.open(helper.fixture("image.jpg"), "rb"))
      f:close()
      assert.has_error(function() client():upload("image", { file = f }) end,
        "bad argument #2 to 'upload' (field 'file': file handle or function expected, got closed file)")
    end)
  end)

  it("never sends a chunked body, whatever the form (the gateway's 412 never comes)", function()
    local c = client()
    local f = assert(io.open(helper.fixture("image.jpg"), "rb"))
    local p = assert(io.popen("cat " .. q(helper.fixture("image.jpg")), "r"))
    local big = png .. ("\0"):rep(3 * 1024 * 1024)     -- past libcurl's buffers and its 100-continue size
    for _, form in ipairs {
      helper.fixture("image.jpg"),
      { data = jpg },
      { data = big },
      { file = f },
      { file = p, size = #jpg },
      { file = reader(jpg, 7), size = #jpg },
      { file = reader(big, 65536), size = #big },
    } do
      assert(c:upload("image", form))
    end
    f:close()
    p:close()
    local log = emu:requests("upload")
    assert.equal(7, #log)
    for _, e in ipairs(log) do assert.equal(200, e.status) end
    -- what the emulator does to a chunked upload, so that the statuses above mean something
    local tok = assert(c:token())
    local status = helper.curl("-H 'Transfer-Encoding: chunked' -F "
      .. q("media=@" .. helper.fixture("image.jpg")) .. " "
      .. q(emu.base_url .. "/cgi-bin/media/upload?type=image&access_token=" .. tok))
    assert.equal(412, status)
    assert.equal(412, emu:requests("upload")[8].status)
  end)
end)
