-- wxmedia.core's multi: many transfers at once on one thread. Each transfer keeps a session's rules
-- (its checks before any request, the temp file renamed into place, an untouched destination after
-- a failure, the error a callback raises raised again), the transfers really overlap (several
-- connections in the emulator's log), and cancel, close and the collector leave nothing behind.
local helper = require "helper"
local core = require "wxmedia.core"
local cjson = require "cjson.safe"

describe("wxmedia.core multi", function()
  local emu, token, dir, image_id

  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    token = emu:token()
    dir = helper.tmpdir()
    local _, res = emu:upload_with_curl(token, "image", helper.fixture("image.jpg"))
    image_id = assert(res.media_id)
  end)
  after_each(function() helper.rmtree(dir) end)

  local function multi(n, opts)
    opts = opts or {}
    opts.base_url = emu.base_url
    return core.multi(n, opts)
  end

  local SEND = { filename = "image.jpg", content_type = "image/jpeg" }

  -- The distinct connections of the uploads after the first (before_each's, by curl).
  local function upload_connections()
    local seen, n = {}, 0
    for k, e in ipairs(emu:requests("upload")) do
      local c = e.worker .. ":" .. e.connection
      if k > 1 and not seen[c] then seen[c], n = true, n + 1 end
    end
    return n
  end

  -- Waits for every running transfer: { [ticket] = { res, msg, kind } }.
  local function wait_all(m)
    local out = {}
    while m:running() > 0 do
      local ticket, res, msg, kind = m:wait()
      assert.is_number(ticket)
      out[ticket] = { res, msg, kind }
    end
    return out
  end

  it("runs n transfers at once on n connections and returns each one's result with its ticket", function()
    local m = multi(4)
    assert.matches("^wxmedia%.multi %(", tostring(m))
    local tickets = {}
    for i = 1, 4 do
      tickets[i] = assert(m:upload(token, "image", helper.fixture("image.jpg"), SEND))
    end
    assert.equal(4, m:running())
    local results = wait_all(m)
    for i = 1, 4 do
      local res = results[tickets[i]][1]
      assert.equal(200, res.status)
      assert.matches('"media_id"', res.body)
    end
    assert.is_true(upload_connections() > 1, "the uploads went out on one connection")
    assert.is_nil(m:wait())           -- nothing running: nothing to report
    m:close()
    assert.equal("wxmedia.multi (closed)", tostring(m))
  end)

  it("takes a session's upload bodies: bytes in memory and readers, each kept alive across waits", function()
    local jpg = helper.read(helper.fixture("image.jpg"))
    local png = helper.read(helper.fixture("image.png"))      -- holds NUL bytes
    -- a reader over a string in chunks of `size` bytes, which collects garbage at every call: a chunk
    -- the core still reads from after a wait must be kept alive by the multi, not by this stack
    local function reader(bytes, size)
      local pos = 1
      return function()
        collectgarbage()
        local chunk = bytes:sub(pos, pos + size - 1)
        pos = pos + #chunk
        return chunk ~= "" and chunk or nil
      end
    end
    local m = multi(4)
    local sent = { { { data = jpg .. "" }, jpg }, { { reader = reader(png, 100), size = #png }, png },
      { { reader = reader(jpg, 50000), size = #jpg }, jpg }, { { data = png }, png } }
    local tickets = {}
    for i, case in ipairs(sent) do
      tickets[i] = assert(m:upload(token, "image", case[1], { filename = "m" .. i .. ".jpg" }))
    end
    sent[1][1].data = nil                 -- the multi holds the bytes it sends, not the caller
    collectgarbage()
    local results = wait_all(m)
    for i, case in ipairs(sent) do
      local res = assert(results[tickets[i]][1], results[tickets[i]][2])
      local id = assert(cjson.decode(res.body).media_id, res.body)
      local dest = dir .. "/back" .. i
      local t = m:get(token, id, dest)
      assert.equal(t, (m:wait()))
      assert.equal(case[2], helper.read(dest), "item " .. i)
    end
    -- a reader that gives 1.5 MB in one string: libcurl takes it 64 KB or so at a time, over many
    -- short waits (each returns when its time is up); only the multi holds that string between them
    local function padded() return jpg .. ("\0wxmedia"):rep(200000) end
    local once = true
    local big = m:upload(token, "image", { size = #padded(), reader = function()
      if not once then return nil end
      once = false
      return padded()
    end }, { filename = "big.jpg" })
    for _ = 1, 3 do assert.is_number(m:upload(token, "image", { data = png }, SEND)) end
    local big_res
    while m:running() > 0 do
      local ticket, res, msg = m:wait(0.001)
      if ticket == big then big_res = assert(res, msg) end
      collectgarbage()
      local junk = {}
      for i = 1, 2000 do junk[i] = ("%d overwrites freed memory %d"):format(i, i):rep(40) end
      assert.equal(2000, #junk)
    end
    local id = assert(cjson.decode(big_res.body).media_id, big_res.body)
    m:get(token, id, dir .. "/big")
    m:wait()
    assert.is_true(helper.read(dir .. "/big") == padded(), "the big reader's bytes came back changed")
    -- a reader's failure is its transfer's own, as from a session
    local short = m:upload(token, "image", { reader = reader(jpg:sub(1, 10), 4), size = #jpg }, SEND)
    local good = m:upload(token, "image", { data = jpg }, SEND)
    results = wait_all(m)
    assert.equal("input", results[short][3])
    assert.equal("the reader ended after 10 of its " .. #jpg .. " bytes", results[short][2])
    assert.equal(200, results[good][1].status)
    m:close()
  end)

  it("keeps its connections for the next transfers", function()
    local m = multi(2)
    for _ = 1, 3 do
      m:upload(token, "image", helper.fixture("image.jpg"), SEND)
      m:upload(token, "image", helper.fixture("image.jpg"), SEND)
      wait_all(m)
    end
    local n = upload_connections()
    assert.is_true(n <= 2, n .. " connections for 2 at a time")
    m:close()
  end)

  it("refuses a transfer the session would refuse, before any request, without using a slot", function()
    local m = multi(1)
    local t, msg, kind = m:upload(token, "image", dir .. "/missing.jpg", SEND)
    assert.is_nil(t)
    assert.equal("input", kind)
    assert.matches("cannot open", msg)
    t, msg, kind = m:upload(token, "image", "a\0b.jpg", SEND)
    assert.is_nil(t)
    assert.equal("input", kind, msg)
    t, msg, kind = m:get(token, image_id, dir)
    assert.is_nil(t)
    assert.equal("input", kind, msg)
    assert.equal(0, m:running())
    assert.equal(1, #emu:requests("upload") + #emu:requests("get"))   -- before_each's
    -- the one slot is still free
    assert.is_number(m:upload(token, "image", helper.fixture("image.jpg"), SEND))
    wait_all(m)
    m:close()
  end)

  it("raises on misuse: a full multi, bad arguments, a closed one", function()
    assert.has_error(function() core.multi(0) end)
    assert.has_error(function() core.multi(core.MULTI_MAX + 1) end)
    assert.has_error(function() core.multi(2, { timout = 1 }) end,
      "bad argument #2 to 'multi' (unknown option 'timout')")
    local m = multi(1)
    assert.has_error(function() m:upload(nil, "image", "x") end)
    m:upload(token, "image", helper.fixture("image.jpg"), SEND)
    assert.has_error(function() m:upload(token, "image", helper.fixture("image.jpg"), SEND) end,
      "attempt to add a transfer to a full wxmedia.multi (1 at once)")
    wait_all(m)
    m:close()
    m:close()
    assert.has_error(function() m:wait() end, "attempt to use a closed wxmedia.multi")
  end)

  it("downloads into temp files renamed into place; a failed one leaves its destination as it was", function()
    local m = multi(3)
    local good = dir .. "/good.jpg"
    local kept = helper.write(dir .. "/kept.jpg", "previous content")
    local mtime = helper.mtime(kept)
    emu:fault({ route = "get", kind = "truncate" })     -- the first get
    local first = m:get(token, image_id, kept)
    local second = m:get(token, image_id, good)
    local results = wait_all(m)
    assert.is_nil(results[first][1])
    assert.equal("transfer", results[first][3], results[first][2])
    assert.equal("previous content", helper.read(kept))
    assert.equal(mtime, helper.mtime(kept))
    local res = results[second][1]
    assert.is_true(res.file)
    assert.equal(good, res.path)
    assert.equal(helper.read(helper.fixture("image.jpg")), helper.read(good))
    assert.same({ "good.jpg", "kept.jpg" }, helper.ls(dir))
    -- WeChat's error for an unknown media_id comes back in memory, as from a session
    local t = m:get(token, "unknown_media_id", dir .. "/none.jpg")
    local ticket, body = m:wait()
    assert.equal(t, ticket)
    assert.is_nil(body.file)
    assert.matches("40007", body.body)
    m:close()
  end)

  it("a fetch to a private address is blocked unless allowed", function()
    local m = multi(2)
    local url = emu.base_url .. "/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. image_id
    local blocked = m:fetch(url, dir .. "/a.jpg")
    local allowed = m:fetch(url, dir .. "/b.jpg", { allow_private = true })
    local results = wait_all(m)
    assert.equal("blocked", results[blocked][3])
    assert.is_true(results[allowed][1].file)
    m:close()
  end)

  it("wait(timeout) returns nothing when no transfer ended in time, and the transfer goes on", function()
    local m = multi(1)
    emu:fault({ route = "upload", kind = "delay", seconds = 1 })
    local t = m:upload(token, "image", helper.fixture("image.jpg"), SEND)
    assert.is_nil(m:wait(0.05))
    assert.equal(1, m:running())
    local ticket, res = m:wait()
    assert.equal(t, ticket)
    assert.equal(200, res.status)
    m:close()
  end)

  it("runs each transfer's progress function; false stops that transfer only", function()
    local m = multi(2)
    local seen = 0
    local stopped = m:upload(token, "image", helper.fixture("image.jpg"),
      { filename = "image.jpg", progress = function() return false end })
    local going = m:upload(token, "image", helper.fixture("image.jpg"),
      { filename = "image.jpg", progress = function(_, _, ultotal, ulnow)
        if ultotal > 0 and ulnow == ultotal then seen = seen + 1 end
      end })
    local results = wait_all(m)
    assert.equal("aborted", results[stopped][3])
    assert.equal(200, results[going][1].status)
    assert.is_true(seen >= 1)
    m:close()
  end)

  it("raises a progress function's error again, after its cleanup; cancel stops the rest", function()
    local m = multi(2)
    emu:fault({ route = "get", kind = "drip", rate = 100 })
    local slow = dir .. "/slow.jpg"
    m:get(token, image_id, slow)
    m:get(token, image_id, dir .. "/raises.jpg", { progress = function(_, dlnow)
      if dlnow > 0 then error({ mine = true }) end
    end })
    local ok, err = pcall(function() while true do m:wait() end end)
    assert.is_false(ok)
    assert.same({ mine = true }, err)
    assert.equal(1, m:running())      -- the slow one goes on
    m:cancel()
    assert.equal(0, m:running())
    assert.same({}, helper.ls(dir))   -- no temp file left, no destination made
    -- still usable
    local t = m:upload(token, "image", helper.fixture("image.jpg"), SEND)
    local ticket, res = m:wait()
    assert.equal(t, ticket)
    assert.equal(200, res.status)
    m:close()
  end)

  it("a progress function that calls its own multi raises inside the transfer, which stops", function()
    local m = multi(1)
    local t = m:upload(token, "image", helper.fixture("image.jpg"),
      { filename = "image.jpg", progress = function() m:running(); m:wait() end })
    local ok, err = pcall(m.wait, m)
    assert.is_false(ok)
    assert.matches("attempt to use a busy wxmedia.multi", tostring(err))
    assert.is_number(t)
    assert.equal(0, m:running())
    m:close()
  end)

  it("a multi dropped with transfers running is collected: nothing left behind", function()
    emu:fault({ route = "get", kind = "drip", rate = 100, count = 2 })
    do
      local m = multi(2)
      m:get(token, image_id, dir .. "/one.jpg")
      m:get(token, image_id, dir .. "/two.jpg")
      m:wait(0.3)
    end
    collectgarbage()
    collectgarbage()
    assert.same({}, helper.ls(dir))
  end)
end)
