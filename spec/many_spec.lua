-- client:upload_many and client:get_many against the emulator: results in input order, partial
-- failures, a token WeChat refuses in the middle of a batch replaced once for all, faults on some
-- transfers, progress per item and for the batch, transfers really at once (the emulator's log shows
-- several connections), and an error raised in a batch stopping it with nothing left behind.
local helper = require "helper"
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"

describe("upload_many and get_many", function()
  local emu, dir

  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    dir = helper.tmpdir()
  end)
  after_each(function() helper.rmtree(dir) end)

  local function client(opts)
    opts = opts or {}
    opts.appid, opts.secret, opts.base_url = helper.APPID, helper.SECRET, emu.base_url
    opts.token_store = opts.token_store or wxmedia.store.memory()
    opts.sleep = opts.sleep or function() end
    return assert(wxmedia.new(opts))
  end

  -- Distinct connections (worker and connection number) of a route's requests.
  local function connections(route)
    local seen, n = {}, 0
    for _, e in ipairs(emu:requests(route)) do
      local c = e.worker .. ":" .. e.connection
      if not seen[c] then seen[c], n = true, n + 1 end
    end
    return n
  end

  local FILES = { { "image", "image.jpg" }, { "image", "image.png" }, { "image", "image.gif" },
    { "thumb", "thumb.jpg" }, { "voice", "voice.amr" }, { "voice", "voice.mp3" } }

  local function list_of(files)
    local list = {}
    for i, f in ipairs(files) do list[i] = { f[1], helper.fixture(f[2]) } end
    return list
  end

  it("uploads each item, in input order, with the failures where they were", function()
    local c = client()
    local list = list_of(FILES)
    table.insert(list, 3, { "image", dir .. "/missing.jpg" })
    table.insert(list, 5, { "video", helper.fixture("image.jpg") })
    local results, failed = c:upload_many(list)
    assert.equal(#list, #results)
    assert.equal(2, failed)
    assert.is_nil(results[3][1])
    assert.equal("input", results[3][3].kind)
    assert.matches("missing%.jpg", results[3][2])
    assert.is_nil(results[5][1])
    assert.equal("input", results[5][3].kind)
    -- each media_id is its own file's: got back in the same order, byte for byte
    local gets, sources = {}, {}
    for i, r in ipairs(results) do
      if r[1] then
        assert.equal(list[i][1], r[1].type)
        gets[#gets + 1] = { r[1].media_id, dir .. "/got" .. i }
        sources[#sources + 1] = list[i][2]
      end
    end
    local got, gfailed = c:get_many(gets)
    assert.equal(0, gfailed)
    for k, r in ipairs(got) do
      assert.equal(gets[k][2], r[1].path)
      assert.equal(helper.read(sources[k]), helper.read(gets[k][2]), sources[k])
    end
  end)

  it("takes the keyed form and client:check's tables", function()
    local c = client()
    local file = assert(c:check("image", helper.fixture("image.png")))
    local results, failed = c:upload_many({ { type = "image", path = helper.fixture("image.jpg") },
      { "image", file } })
    assert.equal(0, failed)
    assert.equal("image", results[2][1].type)
  end)

  -- The bytes WeChat keeps for each successful item, read back through get_many.
  local function stored(c, results)
    local gets, back = {}, {}
    for i, r in ipairs(results) do
      if r[1] then gets[#gets + 1] = { r[1].media_id, dir .. "/back" .. i } end
    end
    local got, failed = c:get_many(gets)
    assert.equal(0, failed)
    for k, r in ipairs(got) do back[tonumber(r[1].path:match("(%d+)$"))] = helper.read(gets[k][2]) end
    return back
  end

  it("takes every form upload takes: a path, bytes, a seekable handle, a reader, check's tables", function()
    local c = client()
    local jpg, png, gif = helper.read(helper.fixture("image.jpg")), helper.read(helper.fixture("image.png")),
      helper.read(helper.fixture("image.gif"))
    local handle = assert(io.open(helper.fixture("image.gif"), "rb"))
    local pos = 1
    local function reader(n)                  -- one-shot: it cannot go back
      local chunk = png:sub(pos, pos + n - 1)
      pos = pos + #chunk
      return chunk
    end
    local checked_data = assert(c:check("image", { data = jpg, filename = "checked.jpg" }))
    local list = {
      { "image", helper.fixture("image.png") },
      { "image", { data = jpg .. "", filename = "chart.jpg" } },
      { "image", { file = handle } },
      { "image", { data = "" } },                                     -- fails alone: empty
      { "image", { file = reader, size = #png, filename = "once.png" } },
      { "thumb", { data = png, filename = "wrong.png" } },            -- fails alone: thumb takes JPEG
      { "image", checked_data },
      { type = "image", path = { data = gif } },
    }
    local results, failed = c:upload_many(list, { concurrency = 3 })
    handle:close()
    assert.equal(#list, #results)
    assert.equal(2, failed)
    assert.equal("input", results[4][3].kind)
    assert.equal("cannot upload the data: it is empty", results[4][2])
    assert.equal("input", results[6][3].kind)
    assert.equal("cannot upload the data 'wrong.png' as thumb: it is a PNG file; thumb takes JPEG",
      results[6][2])
    assert.equal(6, #emu:requests("upload"))          -- nothing was sent for the bad ones
    local back = stored(c, results)
    assert.same({ [1] = png, [2] = jpg, [3] = gif, [5] = png, [7] = jpg, [8] = gif }, back)
    local names = {}
    for _, e in ipairs(emu:requests("upload")) do names[#names + 1] = e.filename end
    table.sort(names)
    assert.same({ "chart.jpg", "checked.jpg", "image.png", "media.gif", "media.gif", "once.png" }, names)
  end)

  it("raises for an item whose table upload would refuse, naming the item", function()
    local c = client()
    assert.has_error(function() c:upload_many({ { "image", { data = "x", fielname = "a.jpg" } } }) end,
      "bad argument #1 to 'upload_many' (item 1: unknown field 'fielname'; did you mean 'filename'?)")
    assert.has_error(function() c:upload_many({ { "image", helper.fixture("image.jpg") },
      { "image", { file = function() end } } }) end,
      "bad argument #1 to 'upload_many' (item 2: field 'size' expected: a reader declares its length)")
    local f = assert(io.open(helper.fixture("image.jpg"), "rb"))
    assert.has_error(function() c:upload_many({ { "image", { file = f } }, { "image", { file = f } } }) end,
      "bad argument #1 to 'upload_many' (item 2: the file handle of item 1 again: a handle has one position)")
    f:close()
    assert.equal(0, #emu:requests())
  end)

  it("runs concurrency transfers at once, each on its own connection", function()
    local list = {}
    for i = 1, 12 do list[i] = { "image", helper.fixture("image.jpg") } end
    local results, failed = client():upload_many(list, { concurrency = 4 })
    assert.equal(0, failed)
    assert.equal(12, #results)
    local n = connections("upload")
    assert.is_true(n >= 2 and n <= 4, n .. " connections")
    emu:reset()
    assert.equal(0, select(2, client():upload_many(list, { concurrency = 1 })))
    assert.equal(1, connections("upload"))
  end)

  it("a token refused in the middle of a batch is replaced once; every item it failed replays", function()
    local c = client()
    -- paths, bytes and seekable handles: a replay sends each whole again
    local png, gif = helper.read(helper.fixture("image.png")), helper.read(helper.fixture("image.gif"))
    local list, handles, want = {}, {}, {}
    for i = 1, 12 do
      local form = i % 3
      if form == 0 then
        list[i], want[i] = { "image", helper.fixture("image.jpg") }, helper.read(helper.fixture("image.jpg"))
      elseif form == 1 then
        list[i], want[i] = { "image", { data = png, filename = "p" .. i .. ".png" } }, png
      else
        handles[#handles + 1] = assert(io.open(helper.fixture("image.gif"), "rb"))
        list[i], want[i] = { "image", { file = handles[#handles] } }, gif
      end
    end
    local done = 0
    -- after the third item, the token expires on the server's clock (the client's clock still finds
    -- it fresh): every upload sent with it from then on is refused with 42001
    local results, failed = c:upload_many(list, { concurrency = 4, on_item = function()
      done = done + 1
      if done == 3 then emu:clock(7201) end
    end })
    for _, f in ipairs(handles) do f:close() end
    assert.equal(0, failed)
    for _, r in ipairs(results) do assert.is_string(r[1].media_id) end
    local refused = 0
    for _, e in ipairs(emu:requests("upload")) do
      if e.errcode == 42001 then refused = refused + 1 end
    end
    assert.is_true(refused >= 1, "no upload was refused")
    assert.equal(12 + refused, #emu:requests("upload"))
    -- the first token, then one refresh for every refusal
    assert.equal(2, #emu:requests("stable_token"))
    assert.same(want, stored(c, results))
  end)

  it("a token that expired before the batch: its first uploads, refused at once, cost one refresh", function()
    local c = client()
    assert(c:token())
    emu:clock(7201)     -- on the server's clock only: the client still finds its token fresh
    local list = {}
    for i = 1, 8 do list[i] = { "image", helper.fixture("image.jpg") } end
    local results, failed = c:upload_many(list, { concurrency = 4 })
    assert.equal(0, failed)
    assert.equal(8, #results)
    local refused = 0
    for _, e in ipairs(emu:requests("upload")) do
      if e.errcode == 42001 then refused = refused + 1 end
    end
    assert.equal(4, refused)        -- the four that started together
    assert.equal(12, #emu:requests("upload"))
    assert.equal(2, #emu:requests("stable_token"))
  end)

  it("an item refused again on the fresh token fails as upload would; the others go on", function()
    local c = client({ retries = 0 })
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001, count = 2 })
    local results, failed = c:upload_many({ { "image", helper.fixture("image.jpg") } }, { concurrency = 1 })
    assert.equal(1, failed)
    assert.equal("token", results[1][3].kind)
    assert.equal(40001, results[1][3].errcode)
    assert.equal(2, #emu:requests("stable_token"))
  end)

  it("faults on some transfers: those fail, or pass on a retry; the others are not touched", function()
    local list = {}
    for i = 1, 8 do list[i] = { "image", helper.fixture("image.jpg") } end
    emu:fault({ route = "upload", kind = "status", status = 503, count = 2 })
    local results, failed = client({ retries = 0 }):upload_many(list)
    assert.equal(2, failed)
    local kinds = {}
    for _, r in ipairs(results) do
      if not r[1] then kinds[#kinds + 1] = r[3].kind .. ":" .. r[3].status .. ":" .. r[3].attempts end
    end
    assert.same({ "http:503:1", "http:503:1" }, kinds)

    emu:reset()
    emu:fault({ route = "upload", kind = "status", status = 503, count = 2 })
    emu:fault({ route = "upload", kind = "errcode", errcode = -1 })    -- WeChat busy: retried too
    local retried = {}
    local function on_retry(n, msg, details, wait, i)
      retried[#retried + 1] = { n = n, i = i, kind = details.kind, wait = wait, msg = msg }
    end
    failed = select(2, client({ retries = 2 }):upload_many(list, { on_retry = on_retry }))
    assert.equal(0, failed)
    assert.equal(3, #retried)
    local items = {}
    for _, r in ipairs(retried) do
      assert.equal(1, r.n)
      assert.is_true(r.kind == "http" or r.kind == "api", r.kind)
      items[r.i] = true
    end
    local n = 0
    for _ in pairs(items) do n = n + 1 end
    assert.equal(3, n)      -- three items retried, once each
    assert.equal(11, #emu:requests("upload"))
  end)

  it("reports progress per item and for the batch", function()
    local list = list_of(FILES)
    local item_max, items_done, last = {}, {}, nil
    local sizes = 0
    for _, it in ipairs(list) do sizes = sizes + #helper.read(it[2]) end
    local results, failed = client():upload_many(list, {
      item_progress = function(i, _, _, ultotal, ulnow)
        assert.is_true(i >= 1 and i <= #list)
        if ultotal > 0 then item_max[i] = math.max(item_max[i] or 0, ulnow) end
      end,
      batch_progress = function(done, total, bytes) last = { done, total, bytes } end,
      on_item = function(i, res) items_done[#items_done + 1] = i; assert.is_table(res) end,
    })
    assert.equal(0, failed)
    assert.equal(#list, #results)
    for i = 1, #list do assert.is_true(item_max[i] > #helper.read(list[i][2]), "item " .. i) end
    table.sort(items_done)
    assert.same({ 1, 2, 3, 4, 5, 6 }, items_done)
    assert.equal(#list, last[1])
    assert.equal(#list, last[2])
    assert.is_true(last[3] > sizes)     -- the forms' bytes: the files and their multipart framing
  end)

  it("gets each item into its path, in input order; a failed one leaves its destination as it was", function()
    local c = client({ retries = 0 })
    local up = c:upload_many(list_of(FILES))
    local vid = assert(c:upload("video", helper.fixture("video.mp4")))
    local kept = helper.write(dir .. "/kept.jpg", "previous content")
    local mtime = helper.mtime(kept)
    local list = { { up[1][1].media_id, kept }, { "unknown_media_id", dir .. "/2.jpg" },
      { up[2][1].media_id, dir .. "/3.png" }, { vid.media_id, dir .. "/4.mp4" }, { "", dir .. "/5" },
      { media_id = up[3][1].media_id, path = dir .. "/6.gif" } }
    emu:fault({ route = "get", kind = "truncate" })     -- the first get: item 1's, one at a time
    local results, failed = c:get_many(list, { concurrency = 1 })
    assert.equal(3, failed)
    assert.equal("transfer", results[1][3].kind)
    assert.equal("previous content", helper.read(kept))
    assert.equal(mtime, helper.mtime(kept))
    assert.equal("api", results[2][3].kind)
    assert.equal(40007, results[2][3].errcode)
    assert.equal(helper.read(helper.fixture("image.png")), helper.read(dir .. "/3.png"))
    assert.equal(helper.read(helper.fixture("video.mp4")), helper.read(dir .. "/4.mp4"))
    assert.is_string(results[4][1].video_url)
    assert.equal("input", results[5][3].kind)
    assert.equal(dir .. "/6.gif", results[6][1].path)
    assert.equal(helper.read(helper.fixture("image.gif")), helper.read(dir .. "/6.gif"))
    assert.same({ "3.png", "4.mp4", "6.gif", "kept.jpg" }, helper.ls(dir))
  end)

  it("an error raised in a batch stops it: raised again, no temp file left, the client works", function()
    local c = client()
    local up = c:upload_many(list_of(FILES))
    emu:fault({ route = "get", kind = "drip", rate = 100, count = 3 })
    local list = {}
    for i = 1, 4 do list[i] = { up[i][1].media_id, dir .. "/" .. i } end
    local ok, err = pcall(c.get_many, c, list, { concurrency = 4, item_progress = function(i, _, dlnow)
      if i == 4 and dlnow > 0 then error("stop here") end
    end })
    assert.is_false(ok)
    assert.matches("stop here", err)
    assert.same({}, helper.ls(dir))
    local results, failed = c:get_many({ { up[1][1].media_id, dir .. "/again" } })
    assert.equal(0, failed)
    assert.equal(dir .. "/again", results[1][1].path)
  end)

  it("raises on misuse, before anything is sent", function()
    local c = client()
    assert.has_error(function() c:upload_many("image") end,
      "bad argument #1 to 'upload_many' (table expected, got string)")
    assert.has_error(function() c:upload_many({ { "image", helper.fixture("image.jpg") }, "x" }) end,
      "bad argument #1 to 'upload_many' (item 2: { type, file } expected)")
    assert.has_error(function() c:get_many({ { "id" } }) end,
      "bad argument #1 to 'get_many' (item 1: { media_id, path } expected)")
    assert.has_error(function() c:upload_many({}, { concurrency = 0 }) end)
    assert.has_error(function() c:upload_many({}, { concurency = 2 }) end,
      "bad option 'concurency' to 'upload_many' (unknown option; did you mean 'concurrency'?)")
    assert.has_error(function() c:upload_many({}, { progress = print }) end)
    assert.equal(0, #emu:requests())
    assert.same({ {}, 0 }, { c:upload_many({}) })
  end)

  it("over a transport without a multi, the items run one after the other", function()
    local session = core.session({ base_url = emu.base_url })
    local backend = {}
    for _, method in ipairs({ "upload", "get", "fetch", "request" }) do
      backend[method] = function(_, ...) return session[method](session, ...) end
    end
    local c = client({ transport = backend })
    local list = list_of(FILES)
    local results, failed = c:upload_many(list, { concurrency = 3 })
    assert.equal(0, failed)
    assert.equal(#list, #results)
    assert.equal(1, connections("upload"))
    session:close()
  end)
end)
