-- wxmedia.core uploads from memory ({ data = bytes }) and from a Lua reader ({ reader = f, size = N }):
-- the bytes come back identical through the emulator, every request declares its Content-Length
-- (never chunked: WeChat's gateway answers 412), a reader that ends early or gives more than it
-- declared fails (input) before the server has a whole body, the reader's errors and misuse.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local core = require "wxmedia.core"
local cjson = require "cjson"

-- What the server saw of each upload: its Content-Length and Transfer-Encoding, the body's length,
-- and how many arrived whole (the body as long as its Content-Length).
local SERVER = [[
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    location = /count {
      content_by_lua_block {
        local d = ngx.shared.test
        ngx.print((d:get("requests") or 0), " ", (d:get("complete") or 0))
      }
    }
    location = /cgi-bin/media/upload {
      content_by_lua_block {
        local d = ngx.shared.test
        d:incr("requests", 1, 0)
        local cl, te = ngx.var.content_length, ngx.var.http_transfer_encoding
        ngx.req.read_body()           -- a client that gives up midway ends the request here
        local n = #(ngx.req.get_body_data() or "")
        local file = ngx.req.get_body_file()
        if file then
          local f = io.open(file, "rb")
          n = f:seek("end")
          f:close()
        end
        if n == tonumber(cl) then d:incr("complete", 1, 0) end
        ngx.header.content_type = "application/json"
        ngx.print(require("cjson").encode({ content_length = tonumber(cl), transfer_encoding = te,
          body = n, media_id = "stored" }))
      }
    }
]]

describe("wxmedia.core upload from memory and from a reader", function()
  local emu, server, token, s, dir
  local jpg = helper.read(helper.fixture("image.jpg"))
  local png = helper.read(helper.fixture("image.png"))       -- holds NUL bytes

  setup(function()
    emu = helper.start_emulator()
    server = nginx_helper.start{ workers = 1, thread_pool = false, server = SERVER }
  end)
  teardown(function()
    if emu then emu:stop() end
    if server then server:stop() end
  end)
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

  -- A reader over a string, giving chunks of the sizes in `sizes` in turn (else what it is asked).
  local function reader_of(bytes, sizes)
    local pos, i = 1, 0
    return function(n)
      assert(math.type == nil or math.type(n) == "integer")
      assert(n > 0)
      i = i + 1
      local take = sizes and sizes[(i - 1) % #sizes + 1] or n
      local chunk = bytes:sub(pos, pos + take - 1)
      pos = pos + #chunk
      return chunk ~= "" and chunk or nil
    end
  end

  -- Uploads to the emulator and gets the medium back: the bytes it stored.
  local function round_trip(source, opts)
    local r, err, kind = s:upload(token, "image", source, opts)
    assert(r, err)
    assert.is_nil(kind)
    assert.equal(200, r.status)
    local id = assert(cjson.decode(r.body).media_id, r.body)
    local dest = dir .. "/back-" .. id:sub(1, 8)
    assert(s:get(token, id, dest))
    return helper.read(dest)
  end

  local function counts()
    local _, body = server:curl("/count")
    local r, c = body:match("^(%d+) (%d+)$")
    return { requests = tonumber(r), complete = tonumber(c) }
  end

  -- An upload to the plain server: its answer (what it saw), or nil, message, kind.
  local function to_server(source, opts)
    local plain = core.session{ base_url = server.base_url }
    local r, err, kind = plain:upload("t", "image", source, opts)
    plain:close()
    if not r then return nil, err, kind end
    return cjson.decode(r.body)
  end

  describe("bytes in memory", function()
    it("go up and come back identical, NUL bytes included, under the filename given", function()
      assert.equal(jpg, round_trip({ data = jpg }, { filename = "chart.jpg" }))
      assert.equal(png, round_trip({ data = png }, { filename = "qr.png", content_type = "image/png" }))
      local log = emu:requests("upload")
      assert.equal("chart.jpg", log[1].filename)
      assert.equal("qr.png", log[2].filename)
      for _, e in ipairs(log) do assert.equal(200, e.status) end     -- never the gateway's 412
    end)

    it("are sent from the string the call was given, even when the caller lets go of it", function()
      local source = { data = jpg .. "" }
      local back = round_trip(source, { filename = "a.jpg", progress = function()
        source.data = nil
        collectgarbage()
      end })
      assert.equal(jpg, back)
    end)

    it("declare their Content-Length and arrive whole", function()
      local big = ("\0\1\2wxmedia"):rep(300000)              -- 3 MB: past libcurl's buffers
      local before = counts()
      local seen = assert(to_server({ data = big }, { filename = "big.jpg" }))
      assert.is_nil(seen.transfer_encoding)
      assert.is_true(seen.content_length > #big)             -- the form around the bytes
      assert.equal(seen.content_length, seen.body)
      assert.equal(before.complete + 1, counts().complete)
    end)

    it("fail before any request when they are not the size the caller checked", function()
      local before = counts().requests
      local r, err, kind = to_server({ data = "JPEGDATA" }, { filename = "a.jpg", size = 5 })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the data changed after it was checked: 5 bytes then, 8 now", err)
      assert.equal(before, counts().requests)
    end)
  end)

  describe("a reader", function()
    it("goes up whole whatever the sizes of its chunks, and comes back identical", function()
      for _, sizes in ipairs { { 1 }, { 7, 1, 300 }, { 1e6 } } do
        assert.equal(jpg, round_trip({ reader = reader_of(jpg, sizes), size = #jpg }, { filename = "r.jpg" }))
      end
      assert.equal(png, round_trip({ reader = reader_of(png), size = #png }, { filename = "r.png" }))
      for _, e in ipairs(emu:requests("upload")) do assert.equal(200, e.status) end
    end)

    it("can be a Lua file handle's read", function()
      local f = assert(io.open(helper.fixture("image.jpg"), "rb"))
      local back = round_trip({ reader = function(n) return f:read(n) end, size = #jpg },
        { filename = "f.jpg" })
      f:close()
      assert.equal(jpg, back)
    end)

    it("declares its Content-Length and arrives whole, with progress showing the totals", function()
      local big = ("wxmedia\0"):rep(400000)                  -- 3.2 MB
      local last
      local before = counts()
      local seen = assert(to_server({ reader = reader_of(big, { 65536, 3 }), size = #big },
        { filename = "big.jpg", progress = function(...) last = { ... } end }))
      assert.is_nil(seen.transfer_encoding)
      assert.equal(seen.content_length, seen.body)
      assert.equal(before.complete + 1, counts().complete)
      assert.equal(seen.content_length, last[3])
      assert.equal(last[3], last[4])
    end)

    it("that ends before its size fails (input), and the server never gets a whole body", function()
      local big = ("x"):rep(3000000)
      local before = counts()
      local r, err, kind = to_server({ reader = reader_of(big:sub(1, 2000000)), size = #big },
        { filename = "short.jpg" })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the reader ended after 2000000 of its 3000000 bytes", err)
      assert.equal(before.complete, counts().complete)
    end)

    it("that gives more than its size fails (input) before its last byte goes out", function()
      -- more in the read that reaches the size, in a later one, or in one read after exactly the size
      for _, sizes in ipairs { { 65536 }, { 3000001 }, { 1000 } } do
        local before = counts()
        local r, err, kind = to_server({ reader = reader_of(("y"):rep(3000001), sizes), size = 3000000 },
          { filename = "long.jpg" })
        assert.is_nil(r)
        assert.equal("input", kind)
        assert.equal("the reader gave more than its 3000000 bytes", err)
        assert.equal(before.complete, counts().complete)
      end
    end)

    it("reports a read error it returns as nil, message (input)", function()
      local calls = 0
      local r, err, kind = to_server({ size = 10, reader = function()
        calls = calls + 1
        if calls == 1 then return "12345" end
        return nil, "disk on fire"
      end }, { filename = "e.jpg" })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("cannot read from the reader: disk on fire", err)
    end)

    it("raises its own error after cleanup, and the session works on", function()
      local boom = setmetatable({}, { __tostring = function() return "boom" end })
      local ok, e = pcall(s.upload, s, token, "image", { size = 10, reader = function() error(boom) end },
        { filename = "b.jpg" })
      assert.is_false(ok)
      assert.equal(boom, e)
      ok, e = pcall(s.upload, s, token, "image", { size = 10, reader = function() return 42 end },
        { filename = "b.jpg" })
      assert.is_false(ok)
      assert.equal("bad reader for 'upload' (string or nil expected, got number)", e)
      assert.equal(jpg, round_trip({ data = jpg }, { filename = "after.jpg" }))
    end)

    it("cannot use its own session (the transfer aborts; the session works on)", function()
      local ok, e = pcall(s.upload, s, token, "image", { size = 10, reader = function()
        s:request("GET", "/cgi-bin/token")
      end }, { filename = "b.jpg" })
      assert.is_false(ok)
      assert.matches("busy wxmedia%.session", e)
      assert.equal(jpg, round_trip({ data = jpg }, { filename = "after.jpg" }))
    end)
  end)

  -- (a method: Lua counts the session out, so the source is argument #3 and opts #4)
  describe("misuse raises", function()
    local FORMS = "bad argument #3 to 'upload' ({ data = string } or { reader = function, size = number } "
      .. "expected)"
    for _, case in ipairs {
      { {}, FORMS },
      { { data = 42 }, "bad argument #3 to 'upload' (field 'data': string expected, got number)" },
      { { data = "x", reader = print }, FORMS },
      { { reader = print }, FORMS },
      { { reader = print, size = -1 }, "bad argument #3 to 'upload' (field 'size' out of range)" },
      { { reader = print, size = 1.5 }, "bad argument #3 to 'upload' (field 'size' out of range)" },
      { { reader = print, size = 0 / 0 }, "bad argument #3 to 'upload' (field 'size' out of range)" },
    } do
      it(case[2], function()
        assert.has_error(function() s:upload(token, "image", case[1], { filename = "a.jpg" }) end, case[2])
      end)
    end

    it("a source that is not a path needs a filename", function()
      assert.has_error(function() s:upload(token, "image", { data = jpg }) end,
        "bad argument #4 to 'upload' (field 'filename' expected for an upload that is not a file)")
      assert.same({}, emu:requests("upload"))
    end)

    it("NUL bytes in the filename are still refused (input)", function()
      local r, err, kind = s:upload(token, "image", { data = jpg }, { filename = "a\0.jpg" })
      assert.is_nil(r)
      assert.equal("input", kind)
      assert.equal("the filename holds a NUL byte", err)
      assert.same({}, emu:requests("upload"))
    end)
  end)
end)
