-- access_token handling against the emulator: caching, one fetch for many calls, the refresh and
-- single replay after each token errcode, stable vs classic, force_refresh rules, read-only sources.
local helper = require "helper"
local wxmedia = require "wxmedia"

local messages = {}   -- every message this file sees; the last test checks none holds a secret
local function note(...)
  local msg = select(2, ...)
  if msg then messages[#messages + 1] = msg end
  return ...
end

describe("wxmedia tokens", function()
  local emu, clock
  local image = helper.fixture("image.jpg")

  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    clock = 1e9
  end)

  local function client(opts)
    opts = opts or {}
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), sleep = function() end, now = function() return clock end }
    for k, v in pairs(opts) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  it("fetches one stable token for 100 calls", function()
    local c = client()
    for _ = 1, 100 do assert(note(c:upload("image", image))) end
    assert.are.equal(1, #emu:requests("stable_token"))
    assert.are.equal(0, #emu:requests("token"))
    assert.are.equal(100, #emu:requests("upload"))
  end)

  it("uses the classic endpoint when asked", function()
    local c = client({ token_api = "classic" })
    for _ = 1, 3 do assert(note(c:upload("image", image))) end
    assert.are.equal(1, #emu:requests("token"))
    assert.are.equal(0, #emu:requests("stable_token"))
  end)

  it("refreshes 300 s before expiry, not before", function()
    local c = client()
    local t1 = assert(note(c:token()))
    clock = clock + 7200 - 301
    assert.are.equal(t1, note(c:token()))
    assert.are.equal(1, #emu:requests("stable_token"))
    clock = clock + 2
    assert(note(c:token()))
    assert.are.equal(2, #emu:requests("stable_token"))
  end)

  for _, api in ipairs({ "stable", "classic" }) do
    for _, code in ipairs({ 40001, 40014, 42001, 41001 }) do
      it(("%s: on errcode %d refreshes once and replays the upload once"):format(api, code), function()
        local c = client({ token_api = api })
        local before = assert(note(c:token()))
        emu:fault({ route = "upload", kind = "errcode", errcode = code })
        local res = assert(note(c:upload("image", image)))
        assert.are.equal(64, #res.media_id)
        local route = api == "stable" and "stable_token" or "token"
        assert.are.equal(2, #emu:requests(route))         -- the first fetch and exactly one refresh
        assert.are.equal(2, #emu:requests("upload"))
        local after = assert(note(c:token()))
        assert.are_not.equal(before, after)
        assert.are.equal(2, #emu:requests(route))         -- the fresh token is cached
      end)
    end
  end

  it("replays a get after a refused token, and writes the file once", function()
    local c = client()
    local res = assert(note(c:upload("image", helper.fixture("image.png"))))
    emu:fault({ route = "get", kind = "errcode", errcode = 42001 })
    local dir = helper.tmpdir()
    local got = assert(note(c:get(res.media_id, dir .. "/copy.png")))
    assert.are.equal(helper.read(helper.fixture("image.png")), helper.read(got.path))
    assert.are.same({ "copy.png" }, helper.ls(dir))
    assert.are.equal(2, #emu:requests("get"))
    assert.are.equal(2, #emu:requests("stable_token"))
    helper.rmtree(dir)
  end)

  it("stable: the refresh force-refreshes, so the refused token is dead at wechat too", function()
    local c = client()
    local old = assert(note(c:token()))
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
    assert(note(c:upload("image", image)))
    local _, body = emu:upload_with_curl(old, "image", image)
    assert.are.equal(40001, body.errcode)
  end)

  for _, api in ipairs({ "stable", "classic" }) do
    local route = api == "stable" and "stable_token" or "token"

    it(api .. ": a token that never worked is replaced at most once per 30 s", function()
      local c = client({ token_api = api })
      assert(note(c:token()))
      -- the upload and its replay refused: the first token and its replacement never worked
      emu:fault({ route = "upload", kind = "errcode", errcode = 40001, count = 2 })
      assert.is_nil(note(c:upload("image", image)))
      assert.are.equal(2, #emu:requests(route))
      clock = clock + 10
      emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
      local res, msg, details = note(c:upload("image", image))
      assert.is_nil(res)
      assert.are.equal("token", details.kind)
      assert.are.equal(40001, details.errcode)
      assert.matches("less than 30 s ago", msg)
      assert.are.equal(3, #emu:requests("upload"))
      assert.are.equal(2, #emu:requests(route))   -- no token request within the 30 s
      clock = clock + 30
      emu:clock(31)                               -- wechat's own 30 s, on its clock
      emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
      assert(note(c:upload("image", image)))
      assert.are.equal(3, #emu:requests(route))   -- replaced once the 30 s are over
    end)

    it(api .. ": a token that worked, then is refused within the 30 s, is asked for again", function()
      local c = client({ token_api = api })
      assert(note(c:upload("image", image)))
      emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
      assert(note(c:upload("image", image)))
      clock = clock + 10
      emu:clock(10)
      emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
      local res, msg, details = note(c:upload("image", image))
      assert.are.equal(3, #emu:requests(route))   -- the first, and one request per refusal
      if api == "classic" then
        assert.is_table(res)                      -- a new classic token, and the replay
        assert.are.equal(5, #emu:requests("upload"))
      else
        -- wechat still hands out the stable token it refused, and forces no refresh within 30 s
        assert.is_nil(res)
        assert.are.equal("token", details.kind)
        assert.matches("force%-refreshed less than 30 s ago", msg)
      end
    end)
  end

  it("never loops: a token refused again after the refresh ends the call", function()
    local c = client()
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001, count = 5 })
    local res, msg, details = note(c:upload("image", image))
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.are.equal(40001, details.errcode)
    assert.matches("freshly fetched access_token", msg)
    assert.are.equal(2, #emu:requests("upload"))
  end)

  it("drops the stored token only if it is still the one that failed", function()
    local c = client()
    local current = assert(note(c:token()))
    local n = #emu:requests("stable_token")
    assert.is_true(c.tokens:rejected("an-older-token", 40001))
    assert.are.equal(n, #emu:requests("stable_token"))
    assert.are.equal(current, c.tokens:read().access_token)
  end)

  it("reads a record another writer puts in the shared store at the next call", function()
    local store = wxmedia.store.memory({ now = function() return clock end })
    local c = client({ token_store = store })
    local first = assert(note(c:token()))
    assert.are.equal(first, note(c:token()))
    -- another process refreshed the token: a new text under the same key
    store:set(c.tokens.key, require("cjson").encode({ access_token = "86_written_elsewhere",
      expires_at = clock + 7200, refresh_at = clock + 6900 }), 7200)
    assert.are.equal("86_written_elsewhere", note(c:token()))
    assert.are.equal(1, #emu:requests("stable_token"))
    store:delete(c.tokens.key)
    local fetched = assert(note(c:token()))
    assert.are_not.equal("86_written_elsewhere", fetched)
    assert.are.equal(2, #emu:requests("stable_token"))
  end)

  it("a static token that wechat refuses gives kind token, once", function()
    local c = assert(wxmedia.new({ access_token = "86_not_a_live_token", base_url = emu.base_url,
      sleep = function() end }))
    local res, msg, details = note(c:upload("image", image))
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.matches("the access_token given to wxmedia", msg)
    assert.is_nil(msg:find("86_not_a_live_token", 1, true))
    assert.are.equal(1, #emu:requests("upload"))
    assert.are.equal(0, #emu:requests("stable_token") + #emu:requests("token"))
  end)

  it("a provider's token is used, cached for its life, and reported when refused", function()
    local live = emu:token()
    local calls = 0
    local c = assert(wxmedia.new({ base_url = emu.base_url, sleep = function() end,
      now = function() return clock end,
      token_provider = function() calls = calls + 1; return live, 7200 end }))
    assert(note(c:upload("image", image)))
    assert(note(c:upload("image", image)))
    assert.are.equal(1, calls)
    emu:fault({ route = "upload", kind = "errcode", errcode = 42001 })
    local res, msg, details = note(c:upload("image", image))
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.matches("token_provider", msg)
    assert(note(c:upload("image", image)))
    assert.are.equal(2, calls)                           -- asked again after the refusal
  end)

  it("a provider that fails gives kind token", function()
    local c = assert(wxmedia.new({ base_url = emu.base_url, sleep = function() end,
      token_provider = function() error("vault unreachable") end }))
    local res, msg, details = note(c:upload("image", image))
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.matches("vault unreachable", msg)
    assert.are.equal(0, #emu:requests("upload"))
  end)

  it("a wrong secret gives kind token with errcode 40125, asked once", function()
    local c = client({ secret = "ffffffffffffffffffffffffffffffff" })
    local res, msg, details = note(c:upload("image", image))
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.are.equal(40125, details.errcode)
    assert.is_false(details.retryable)
    assert.is_nil(msg:find("ffffffffffffffff", 1, true))
    assert.are.equal(1, #emu:requests("stable_token"))
    assert.are.equal(0, #emu:requests("upload"))
  end)

  it("40164 names the ip whitelist and the ip wechat saw, and is not retried", function()
    emu:config({ whitelist = { "10.1.2.3" } })
    local c = client()
    local res, msg, details = note(c:token())
    emu:config({ whitelist = false })
    assert.is_nil(res)
    assert.are.equal(40164, details.errcode)
    assert.are.equal("token", details.kind)
    assert.matches("whitelist", msg)
    assert.matches("127%.0%.0%.1", msg)
    assert.are.equal(1, #emu:requests("stable_token"))
  end)

  it("retries a busy token endpoint", function()
    local c = client()
    emu:fault({ route = "stable_token", kind = "status", status = 503 })
    assert(note(c:upload("image", image)))
    assert.are.equal(2, #emu:requests("stable_token"))
  end)

  it("gives two clients of one appid against two servers their own tokens in the shared default store",
    function()
      -- no token_store: both use the process-wide memory store, as most programs do
      local other = helper.start_emulator()
      finally(function() other:stop() end)
      local function new(base_url)
        return assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = base_url }))
      end
      local ca, cb = new(emu.base_url), new(other.base_url)
      local ta, tb = assert(note(ca:token())), assert(note(cb:token()))
      assert.are_not.equal(ta, tb)
      assert(note(ca:upload("image", image)))
      assert(note(cb:upload("image", image)))
      for _, e in ipairs({ emu, other }) do
        assert.are.equal(1, #e:requests("stable_token"))
        local ups = e:requests("upload")
        assert.are.equal(1, #ups)                          -- no refused token, no replay
        assert.are.equal(200, ups[1].status)
      end
      local key = wxmedia.token_source.key
      assert.are.equal("wxmedia:token:stable:wx1", key("stable", "wx1", "https://api.weixin.qq.com/"))
      assert.are.equal("wxmedia:token:classic:wx1@127.0.0.1:8080",
        key("classic", "wx1", "http://127.0.0.1:8080/"))
    end)

  it("never puts a token or the secret in a message", function()
    assert.is_true(#messages > 5)
    local tokens = {}
    for _, e in ipairs(emu:log()) do
      for _, v in pairs(e) do
        if type(v) == "string" and #v > 40 then tokens[#tokens + 1] = v end
      end
    end
    local c = client()
    tokens[#tokens + 1] = assert(c:token())
    for _, m in ipairs(messages) do
      assert.is_nil(m:find(helper.SECRET, 1, true), m)
      assert.is_false(helper.holds_token(m), m)
      for _, t in ipairs(tokens) do assert.is_nil(m:find(t, 1, true), m) end
    end
  end)
end)
