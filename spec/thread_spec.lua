-- wxmedia.thread, the function nginx's worker threads run, called directly (it is plain Lua over the
-- C core): the core's own returns, one kept session per option set, misuse reported as data.
local helper = require "helper"
local core = require "wxmedia.core"
local thread = require "wxmedia.ngx.thread"

describe("wxmedia.ngx.thread", function()
  local emu, opts

  setup(function()
    emu = helper.start_emulator()
    opts = { base_url = emu.base_url, timeout = 10 }
  end)

  teardown(function()
    if emu then emu:stop() end
  end)

  before_each(function()
    emu:reset()
  end)

  local function token_request()
    return "POST", "/cgi-bin/stable_token", {
      body = '{"grant_type":"client_credential","appid":"' .. helper.APPID .. '","secret":"'
        .. helper.SECRET .. '"}',
      content_type = "application/json",
    }
  end

  it("returns what the core session returns", function()
    local called, res, msg, kind = thread.call(opts, "request", token_request())
    assert.is_true(called)
    assert.is_nil(msg)
    assert.is_nil(kind)
    local direct = assert(core.session(opts):request(token_request()))
    assert.equal(direct.status, res.status)
    assert.equal(direct.body, res.body)   -- the stable token is the same for both
    assert.equal(direct.content_type, res.content_type)
  end)

  it("keeps one session per option set, so the connection is reused", function()
    for _ = 1, 3 do assert.is_true((thread.call(opts, "request", token_request()))) end
    local other = { base_url = emu.base_url, timeout = 9 }
    assert.is_true((thread.call(other, "request", token_request())))
    local conns = {}
    for i, e in ipairs(emu:requests("stable_token")) do conns[i] = e.connection end
    assert.equal(4, #conns)
    assert.equal(conns[1], conns[2])
    assert.equal(conns[1], conns[3])
    assert.are_not.equal(conns[1], conns[4])
  end)

  it("returns a failure of the world as nil, message, kind", function()
    local dead = { base_url = "http://127.0.0.1:1" }
    local called, res, msg, kind = thread.call(dead, "request", token_request())
    assert.is_true(called)
    assert.is_nil(res)
    assert.is_string(msg)
    assert.equal("connect", kind)
  end)

  describe("watched", function()
    local dir

    before_each(function() dir = helper.tmpdir() end)
    after_each(function() helper.rmtree(dir) end)

    -- a JPEG of about 100 KB (the fixture and random trailing bytes), uploaded: its media_id
    local function big_media(token)
      local path = helper.write(dir .. "/big.jpg", helper.read(helper.fixture("image.jpg"))
        .. helper.sh("head -c 100000 /dev/urandom"))
      local status, res = emu:upload_with_curl(token, "image", path)
      assert.equal(200, status)
      return res.media_id
    end

    local WATCH = { deadline_base = 0.5, deadline_rate = 65536 }

    it("stops a transfer at its deadline: base + bytes / rate", function()
      local token = emu:token()
      local id = big_media(token)
      -- 100 KB at 2 KiB/s would take 50 s, above the low-speed limit all the while
      emu:fault({ route = "get", kind = "drip", rate = 2048 })
      local dest = dir .. "/got.jpg"
      local called, res, msg, kind, stopped = thread.watched(opts, WATCH, "get", token, id, dest)
      assert.is_true(called)
      assert.is_nil(res)
      assert.equal("timeout", kind)
      assert.equal("deadline", stopped)
      -- 0.5 s + 101980 bytes at 65536 bytes/s: 2 s
      assert.matches("took longer than its deadline of 2 s %(0%.5 s %+ %d+ bytes at 65536 bytes/s%)", msg)
      assert.is_nil(helper.read(dest))
      assert.same({ "big.jpg" }, helper.ls(dir))
    end)

    it("passes a transfer within its deadline, and calls the caller's progress function", function()
      local token = emu:token()
      local id = big_media(token)
      local calls = 0
      local progress = function() calls = calls + 1 end
      local get_opts = { progress = progress }
      local called, res, msg = thread.watched(opts, WATCH, "get", token, id, dir .. "/got.jpg", get_opts)
      assert.is_true(called)
      assert.is_table(res, msg)
      assert.equal(res.size, #helper.read(dir .. "/got.jpg"))
      assert.is_true(calls > 0)
      -- the caller's table is not changed
      assert.same({ progress = progress }, get_opts)
    end)

    it("fails fast a task that waited in nginx's own queue longer than max_queue", function()
      local watch = { deadline_base = 30, deadline_rate = 65536, max_queue = 1, queued_at = core.now() - 5 }
      local called, res, msg, kind, stopped = thread.watched(opts, watch, "request", token_request())
      assert.is_true(called)
      assert.is_nil(res)
      assert.equal("busy", kind)
      assert.equal("queued", stopped)
      assert.matches("waited 5.%d s in nginx's queue for a thread", msg)
      assert.equal(0, #emu:requests())
    end)

    it("reports a watch without its deadline as misuse", function()
      local called, msg = thread.watched(opts, {}, "request", token_request())
      assert.is_false(called)
      assert.matches("bad argument #2 to 'watched'", msg, 1, true)
    end)
  end)

  it("reports misuse as false and the error's message, without raising", function()
    local called, msg = thread.call(opts, "upload", nil, "image", "/x.jpg")
    assert.is_false(called)
    assert.matches("bad argument", msg, 1, true)
    called, msg = thread.call(opts, "close")
    assert.is_false(called)
    assert.matches("unknown transfer method", msg, 1, true)
    called, msg = thread.call(nil, "request")
    assert.is_false(called)
    assert.matches("table expected", msg, 1, true)
    assert.equal(0, #emu:requests())
  end)
end)
