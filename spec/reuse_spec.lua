-- media_id reuse against the emulator, whose clock moves forward in step with the client's: one
-- upload per content and account for 3 days minus the margin, a new one after it or when the file
-- changes, one upload between two processes sharing a file store, records dropped by forget and by a
-- 40007, nothing recorded for a failed upload.
local helper = require "helper"
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"

local DAY = 24 * 3600
local LIFE, MARGIN = 3 * DAY, 6 * 3600

describe("wxmedia media_id reuse", function()
  local emu, dir, clock, seq
  local jpg, png = helper.fixture("image.jpg"), helper.fixture("image.png")

  setup(function()
    emu = helper.start_emulator()
    dir = helper.tmpdir()
    seq = 0
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)
  before_each(function()
    emu:reset()
    clock = os.time()
  end)

  -- Moves both clocks: WeChat's (tokens and media age there) and the client's.
  local function advance(seconds)
    clock = clock + seconds
    emu:clock(seconds)
  end

  local function client(opts)
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), sleep = function() end, now = function() return clock end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  -- A copy of a fixture under a new name, so that no test meets another's records or hashes.
  local function copy(fixture)
    seq = seq + 1
    return helper.write(("%s/f%d.%s"):format(dir, seq, fixture:match("%.(%w+)$")), helper.read(fixture))
  end

  local function uploads() return #emu:requests("upload") end

  local function media_keys(store)
    local keys = {}
    for k in pairs(store.data) do
      if k:find("^wxmedia:media") then keys[#keys + 1] = k end
    end
    table.sort(keys)
    return keys
  end

  it("uploads once for two calls within the window, and the media_id works", function()
    local c, file = client(), copy(jpg)
    local first = assert(c:media_id("image", file))
    assert.is_false(first.reused)
    assert.are.equal("image", first.type)
    assert.are.equal(64, #first.media_id)
    assert.is_number(first.created_at)
    assert.are.equal(clock + LIFE, first.expires_at)
    advance(LIFE - MARGIN - 1)                     -- the last second the record is handed out
    local second = assert(c:media_id("image", file))
    assert.is_true(second.reused)
    assert.are.equal(first.media_id, second.media_id)
    assert.are.equal(first.created_at, second.created_at)
    assert.are.equal(1, uploads())
    assert(c:get(second.media_id, dir .. "/back.jpg"))   -- still alive at wechat
    assert.are.equal(helper.read(jpg), helper.read(dir .. "/back.jpg"))
  end)

  it("uploads again once the record is 3 days minus the margin old", function()
    local c, file = client(), copy(jpg)
    local first = assert(c:media_id("image", file))
    advance(LIFE - MARGIN)
    local second = assert(c:media_id("image", file))
    assert.is_false(second.reused)
    assert.are_not.equal(first.media_id, second.media_id)
    assert.are.equal(2, uploads())
    local third = assert(c:media_id("image", file))   -- the renewed record is reused in turn
    assert.is_true(third.reused)
    assert.are.equal(second.media_id, third.media_id)
    assert.are.equal(2, uploads())
  end)

  it("takes reuse_margin from the client and from the call", function()
    local file = copy(jpg)
    local c = client({ reuse_margin = 0 })
    local first = assert(c:media_id("image", file))
    advance(LIFE - 1)
    assert.is_true(assert(c:media_id("image", file)).reused)
    local renewed = assert(c:media_id("image", file, { reuse_margin = 3600 }))
    assert.is_false(renewed.reused)
    assert.are_not.equal(first.media_id, renewed.media_id)
    assert.are.equal(2, uploads())
    assert.has_error(function() c:media_id("image", file, { reuse_margin = LIFE }) end,
      "bad option 'reuse_margin' to 'media_id' (seconds from 0 to 259199 expected)")
    assert.has_error(function() client({ reuse_margin = -1 }) end)
  end)

  it("uploads a changed file again, and reuses by content whatever the path", function()
    local c, file = client(), copy(jpg)
    local a = assert(c:media_id("image", file))
    helper.write(file, helper.read(png))
    local b = assert(c:media_id("image", file))
    assert.is_false(b.reused)
    assert.are_not.equal(a.media_id, b.media_id)
    assert.are.equal(2, uploads())
    helper.write(file, helper.read(jpg))            -- back to the first content: its record holds
    local again = assert(c:media_id("image", file))
    assert.is_true(again.reused)
    assert.are.equal(a.media_id, again.media_id)
    local elsewhere = assert(c:media_id("image", copy(png)))
    assert.is_true(elsewhere.reused)
    assert.are.equal(b.media_id, elsewhere.media_id)
    assert.are.equal(2, uploads())
  end)

  -- A reader over a string in chunks of 100 bytes.
  local function reader(bytes)
    local pos = 1
    return function()
      local piece = bytes:sub(pos, pos + 99)
      pos = pos + #piece
      return piece ~= "" and piece or nil
    end
  end

  it("reuses by content whatever the form: a path, bytes, a file handle, a reader", function()
    local store = wxmedia.store.memory()
    local c = client({ token_store = store })
    local bytes = helper.read(jpg)
    local first = assert(c:media_id("image", { data = bytes, filename = "chart.jpg" }))
    assert.is_false(first.reused)
    assert.is_true(assert(c:media_id("image", { data = bytes })).reused)
    assert.is_true(assert(c:media_id("image", copy(jpg))).reused)
    local f = assert(io.open(jpg, "rb"))
    local by_handle = assert(c:media_id("image", { file = f }))
    f:close()
    local by_reader = assert(c:media_id("image", { file = reader(bytes), size = #bytes }))
    for _, res in ipairs { by_handle, by_reader } do
      assert.is_true(res.reused)
      assert.are.equal(first.media_id, res.media_id)
    end
    assert.are.equal(1, uploads())
    assert.are.equal("chart.jpg", emu:requests("upload")[1].filename)
    -- keyed by the SHA-256 of the bytes, the same as the file's
    local account = helper.APPID .. "@" .. emu.base_url:gsub("^http://", "")
    assert.is_string(store:get("wxmedia:media:" .. account .. ":image:" .. core.sha256(bytes)))
    assert.are.equal(core.sha256_file(jpg), core.sha256(bytes))
  end)

  it("records the hash of the very bytes a reader gave, and sends those bytes", function()
    local store = wxmedia.store.memory()
    local c = client({ token_store = store })
    local bytes = helper.read(png)
    local res = assert(c:media_id("image", { file = reader(bytes), size = #bytes }))
    assert.is_false(res.reused)
    assert(c:get(res.media_id, dir .. "/from-reader.png"))
    assert.are.equal(bytes, helper.read(dir .. "/from-reader.png"))
    local account = helper.APPID .. "@" .. emu.base_url:gsub("^http://", "")
    local key = "wxmedia:media:" .. account .. ":image:" .. core.sha256(bytes)
    local rec = require("cjson").decode(store:get(key))
    assert.are.equal(res.media_id, rec.media_id)
    assert.are.equal(core.sha256(bytes), rec.sha256)
    assert.are.equal(#bytes, rec.size)
  end)

  it("sends and records nothing for a reader that ends early or gives more than its size", function()
    local store = wxmedia.store.memory()
    local c = client({ token_store = store })
    local bytes = helper.read(jpg)
    local res, msg, details = c:media_id("image", { file = reader(bytes:sub(1, 500)), size = #bytes,
      filename = "cut.jpg" })
    assert.is_nil(res)
    assert.are.equal("input", details.kind)
    assert.are.equal("cannot upload cut.jpg: the reader 'cut.jpg' ended after 500 of its 1980 bytes", msg)
    res, msg, details = c:media_id("image", { file = reader(bytes .. "x"), size = #bytes })
    assert.is_nil(res)
    assert.are.equal("input", details.kind)
    assert.are.equal("cannot upload the reader: the reader gave more than its 1980 bytes", msg)
    assert.are.equal(0, uploads())
    assert.are.same({}, media_keys(store))
  end)

  it("hashes an unchanged file once, and again when its mtime moves", function()
    local c, file = client(), copy(jpg)
    local hashing = spy.on(core, "sha256_file")
    assert(c:media_id("image", file))
    assert(c:media_id("image", file))
    assert(c:media_id("image", file))
    assert.spy(hashing).was.called(1)
    helper.sh("touch -d '2001-02-03 04:05:06' " .. helper.shell_quote(file))
    assert.is_true(assert(c:media_id("image", file)).reused)   -- same bytes: still the record
    assert.spy(hashing).was.called(2)
    hashing:revert()
    assert.are.equal(1, uploads())
  end)

  it("keeps records per type and per account", function()
    local store = wxmedia.store.memory()
    local c = client({ token_store = store })
    local c2 = client({ token_store = store, appid = helper.APPID2, secret = helper.SECRET2 })
    local file = copy(jpg)
    local image = assert(c:media_id("image", file))
    local thumb = assert(c:media_id("thumb", file))
    local other = assert(c2:media_id("image", file))
    assert.is_false(thumb.reused)
    assert.is_false(other.reused)
    assert.are.equal(thumb.media_id, thumb.thumb_media_id)
    assert.are.equal(3, uploads())
    assert.is_true(assert(c:media_id("thumb", file)).reused)
    assert.are.equal(image.media_id, assert(c:media_id("image", file)).media_id)
    assert.are.equal(3, uploads())
  end)

  it("stores a record with the ttl of the medium's remaining life, in media_store when given", function()
    local data, ttls = {}, {}
    local media_store = {
      get = function(_, k) return data[k] end,
      set = function(_, k, v, ttl) data[k], ttls[k] = v, ttl; return true end,
    }
    local tokens = wxmedia.store.memory()
    local c = client({ token_store = tokens, media_store = media_store })
    local res = assert(c:media_id("image", copy(jpg)))
    local sha = core.sha256_file(jpg)
    local account = helper.APPID .. "@" .. emu.base_url:gsub("^http://", "")
    local key = "wxmedia:media:" .. account .. ":image:" .. sha
    assert.are.equal(LIFE, ttls[key])
    assert.are.equal(key, data["wxmedia:media_id:" .. account .. ":" .. res.media_id])
    assert.are.same({}, media_keys(tokens))
    assert.has_error(function() client({ media_store = 42 }) end,
      "bad option 'media_store' to 'new' (a store with get and set methods expected, got number)")
  end)

  it("lets two processes sharing a file store upload once between them", function()
    local file = copy(jpg)
    local script = helper.write(dir .. "/child.lua", ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      local wxmedia = require "wxmedia"
      local c = assert(wxmedia.new({ appid = %q, secret = %q, base_url = %q,
        token_store = wxmedia.store.file(%q) }))
      local res = assert(c:media_id("image", %q))
      io.write(res.media_id, " ", tostring(res.reused), "\n")
    ]]):format(helper.root, helper.APPID, helper.SECRET, emu.base_url, dir .. "/shared.json", file))
    local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
    local one = ("LUA_CPATH=%s %s %s"):format(helper.shell_quote(cpath .. ";;"), helper.lua,
      helper.shell_quote(script))
    -- the upload takes a second at wechat, so the second process arrives while the first uploads
    emu:fault({ route = "upload", kind = "delay", seconds = 1, count = 2 })
    local out = helper.sh("(" .. one .. " & " .. one .. " & wait) 2>&1")
    local ids, reused = {}, {}
    for id, r in out:gmatch("(%S+) (%a+)\n") do
      ids[#ids + 1] = id
      reused[#reused + 1] = r
    end
    table.sort(reused)
    assert.are.equal(2, #ids, out)
    assert.are.equal(ids[1], ids[2])
    assert.are.same({ "false", "true" }, reused)
    assert.are.equal(1, uploads())
    assert.are.equal(1, #emu:requests("stable_token"))
  end)

  it("uploads a forgotten media_id again", function()
    local c, file = client(), copy(jpg)
    local first = assert(c:media_id("image", file))
    assert.is_true(c:forget(first.media_id))
    assert.is_false(c:forget(first.media_id))     -- nothing left to drop
    local second = assert(c:media_id("image", file))
    assert.is_false(second.reused)
    assert.are_not.equal(first.media_id, second.media_id)
    assert.are.equal(2, uploads())
    assert.is_false(c:forget(first.media_id))     -- the old id no longer drops the new record
    assert.is_true(assert(c:media_id("image", file)).reused)
  end)

  it("drops the record of a media_id that get finds gone (40007), and uploads again", function()
    local store = wxmedia.store.memory()
    local c, file = client({ token_store = store }), copy(jpg)
    local first = assert(c:media_id("image", file))
    assert.are.equal(2, #media_keys(store))
    emu:fault({ route = "get", kind = "errcode", errcode = 40007 })
    local got, _, details = c:get(first.media_id, dir .. "/gone.jpg")
    assert.is_nil(got)
    assert.are.equal(40007, details.errcode)
    assert.are.same({}, media_keys(store))
    local second = assert(c:media_id("image", file))
    assert.is_false(second.reused)
    assert.are_not.equal(first.media_id, second.media_id)
    assert.are.equal(2, uploads())
  end)

  it("records nothing for a failed upload", function()
    local store = wxmedia.store.memory()
    local c, file = client({ token_store = store }), copy(jpg)
    emu:fault({ route = "upload", kind = "errcode", errcode = 45009 })
    local res, msg, details = c:media_id("image", file)
    assert.is_nil(res)
    assert.matches("daily API quota", msg)
    assert.are.equal(45009, details.errcode)
    assert.are.same({}, media_keys(store))
    local after = assert(c:media_id("image", file))
    assert.is_false(after.reused)
    assert.are.equal(2, uploads())
  end)

  it("checks the file as upload does, sending nothing for a bad one", function()
    local c = client()
    local res, msg, details = c:media_id("voice", copy(jpg))
    assert.is_nil(res)
    assert.are.equal("input", details.kind)
    assert.matches("voice takes AMR or MP3", msg)
    assert.is_nil((c:media_id("image", dir .. "/missing.jpg")))
    assert.are.equal(0, uploads())
    assert.has_error(function() c:media_id("image") end,
      "bad argument #2 to 'media_id' (string or table expected, got no value)")
  end)

  it("needs an appid to key records by", function()
    local c = assert(wxmedia.new({ access_token = emu:token(), base_url = emu.base_url,
      sleep = function() end }))
    local res, msg, details = c:media_id("image", copy(jpg))
    assert.is_nil(res)
    assert.are.equal("config", details.kind)
    assert.matches("needs the account's appid", msg)
    assert.are.equal("appid", details.option)
    assert.are.equal(0, uploads())
    local with_appid = assert(wxmedia.new({ appid = helper.APPID, access_token = emu:token(),
      base_url = emu.base_url, sleep = function() end }))
    assert.is_false(assert(with_appid:media_id("image", copy(jpg))).reused)
  end)

  it("module level: wxmedia.media_id and wxmedia.forget use the configured client", function()
    assert(wxmedia.configure({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), now = function() return clock end }))
    local file = copy(jpg)
    local first = assert(wxmedia.media_id("image", file))
    assert.is_true(assert(wxmedia.media_id("image", file)).reused)
    assert.is_true(wxmedia.forget(first.media_id))
    assert.is_false(assert(wxmedia.media_id("image", file)).reused)
    assert.are.equal(2, uploads())
  end)
end)
