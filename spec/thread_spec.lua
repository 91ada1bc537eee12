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
