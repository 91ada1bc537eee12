-- wxmedia.store.redis against a real redis-server (Debian's), with redis-lua (Debian's lua-redis
-- over lua-socket) as the client: values with Redis's expiry, the lock across processes (exclusive,
-- expiring after a killed holder, released only by its owner), tokens and media_id records shared
-- by separate processes, and Redis stopped, slow, then restarted while a client keeps working.
local helper = require "helper"
local redis_helper = require "redis_helper"
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"
local reuse = require "wxmedia.reuse"
local token = require "wxmedia.token"

describe("wxmedia.store.redis", function()
  local server, emu, admin, dir
  local jpg, png = helper.fixture("image.jpg"), helper.fixture("image.png")

  -- A function that connects a redis-lua client to the spec's server; counts its calls in n.n.
  local function connector(n)
    return function()
      if n then n.n = n.n + 1 end
      return require("redis").connect({ host = "127.0.0.1", port = server.port, timeout = 5 })
    end
  end

  local function client(store, opts)
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url, token_store = store,
      sleep = function() end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  -- A child process's Lua program: the preamble that finds wxmedia and redis-lua, a connect(),
  -- then body; returns the shell command that runs it.
  local function child(name, body)
    local script = helper.write(dir .. "/" .. name .. ".lua", redis_helper.preamble() .. ([[
      local wxmedia = require "wxmedia"
      local function connect()
        return require("redis").connect({ host = "127.0.0.1", port = %d, timeout = 5 })
      end
      local APPID, SECRET = %q, %q
    ]]):format(server.port, helper.APPID, helper.SECRET) .. body)
    return redis_helper.child(script)
  end

  setup(function()
    dir = helper.tmpdir()
    server = redis_helper.start()
    emu = helper.start_emulator()
  end)
  teardown(function()
    if server then server:shutdown() end
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)
  before_each(function()
    if not server.pid then server:start() end   -- a test that failed with Redis stopped
    admin = server:connect()
    admin:flushall()
    emu:reset()
  end)

  it("keeps values with Redis's expiry, under its prefix, byte for byte, and deletes them", function()
    local s = wxmedia.store.redis(connector(), { prefix = "app:" })
    assert.is_nil(s:get("k"))
    assert.is_true(s:set("k", "v", 100))
    assert.are.equal("v", admin:get("app:k"))
    local ttl = admin:ttl("app:k")
    assert.is_true(ttl > 90 and ttl <= 100, tostring(ttl))
    assert.is_true(s:set("short", "x", 0.2))
    assert.are.equal(1, admin:ttl("app:short"))     -- EX counts whole seconds: rounded up
    assert.is_true(s:set("forever", "f"))
    assert.are.equal(-1, admin:ttl("app:forever"))
    local bytes = "a\0b\r\n$3\r\nc\255"
    assert.is_true(s:set("bytes", bytes, 60))
    assert.are.equal(bytes, s:get("bytes"))
    assert.is_nil(wxmedia.store.redis(connector()):get("k"))   -- another prefix, other keys
    assert.is_true(s:set("k", "w", 0))              -- a ttl of 0 or less deletes
    assert.is_nil(admin:get("app:k"))
    assert.is_true(s:delete("forever"))
    assert.is_nil(s:get("forever"))
  end)

  it("raises on misuse: not a client, an unknown or bad option, a value that is not a string", function()
    assert.has_error(function() wxmedia.store.redis(42) end,
      "bad argument #1 to 'redis' (a Redis client or a function that connects one expected, got number)")
    assert.has_error(function() wxmedia.store.redis({ get = function() end }) end,
      "bad argument #1 to 'redis' (a Redis client expected: it has no set method)")
    assert.has_error(function() wxmedia.store.redis(connector(), { timout = 1 }) end,
      "bad option 'timout' to 'redis' (unknown option; did you mean 'timeout'?)")
    assert.has_error(function() wxmedia.store.redis(connector(), { lock_ttl = 0 }) end,
      "bad option 'lock_ttl' to 'redis' (a positive number expected, got 0)")
    assert.has_error(function() wxmedia.store.redis(server:connect(), { release = function() end }) end)
    local s = wxmedia.store.redis(connector())
    assert.has_error(function() s:set("k", 42, 10) end,
      "bad argument #2 to 'set' (string expected, got number)")
    assert.has_error(function() s:set("k", "v", 0 / 0) end)
  end)

  it("answers a Redis error reply with a message, on the same connection", function()
    local n = { n = 0 }
    local s = wxmedia.store.redis(connector(n))
    admin:hset("h", "f", "v")
    local v, err = s:get("h")
    assert.is_nil(v)
    assert.matches("the Redis store's get failed: WRONGTYPE", err, 1, true)
    assert.is_true(s:set("k", "v", 10))
    assert.are.equal("v", s:get("k"))
    assert.are.equal(1, n.n)    -- an error reply is not a broken connection
  end)

  it("locks a key for one holder at a time, with a PX expiry, across connections", function()
    local a = wxmedia.store.redis(connector(), { lock_ttl = 30 })
    local b = wxmedia.store.redis(connector())
    local la = assert(a:lock("k", 1))
    local pttl = admin:pttl("lock:k")
    assert.is_true(pttl > 0 and pttl <= 30000, tostring(pttl))
    local lb, err = b:lock("k", 0.2)
    assert.is_nil(lb)
    assert.are.equal("timeout", err)
    assert.is_true(la:unlock())
    assert.is_nil(admin:get("lock:k"))
    assert(b:lock("k", 1)):unlock()
  end)

  it("never lets a holder whose lock expired release the next holder's lock", function()
    local a = wxmedia.store.redis(connector(), { lock_ttl = 0.2 })
    local b = wxmedia.store.redis(connector())
    local la = assert(a:lock("k", 1))
    local value_a = admin:get("lock:k")
    local lb = assert(b:lock("k", 30))       -- had once A's lock expires (PX), A still in its section
    local value_b = admin:get("lock:k")
    assert.are_not.equal(value_a, value_b)   -- each holder its own random value
    assert.is_false(la:unlock())             -- A's late unlock: no longer its lock
    assert.are.equal(value_b, admin:get("lock:k"))
    assert.is_nil((a:lock("k", 0.1)))        -- B still holds it
    assert.is_true(lb:unlock())
    assert.is_nil(admin:get("lock:k"))
  end)

  it("lets two processes with their own clients fetch one token and upload a file once for both", function()
    local cmd = child("share", ([[
      local c = assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = %q,
        token_store = wxmedia.store.redis(connect) }))
      local res = assert(c:media_id("image", %q))
      assert(c:upload("image", %q))
      io.write(res.media_id, " ", tostring(res.reused), "\n")
    ]]):format(emu.base_url, jpg, jpg))
    local out = helper.sh("(" .. cmd .. " & " .. cmd .. " & wait) 2>&1")
    local ids, reused = {}, {}
    for id, r in out:gmatch("(%S+) (%a+)\n") do
      ids[#ids + 1], reused[#reused + 1] = id, r
    end
    assert.are.equal(2, #ids, out)
    assert.are.equal(ids[1], ids[2])
    table.sort(reused)
    assert.are.same({ "false", "true" }, reused)       -- one uploaded, the other reused its upload
    assert.are.equal(1, #emu:requests("stable_token"))
    assert.are.equal(3, #emu:requests("upload"))       -- the media_id once, and each process's upload
    -- what they shared is in Redis: the token, the marker of a token that worked, the record
    local key = token.key("stable", helper.APPID, emu.base_url)
    local rec = require("cjson").decode(admin:get(key))
    assert.is_true(rec.access_token == admin:get(key .. ":worked"), "the :worked marker is not the token")
    local account = token.account(helper.APPID, emu.base_url)
    local sum = assert(core.sha256_file(jpg))
    assert.matches(ids[1], admin:get(reuse.record_key(account, "image", sum)), 1, true)
  end)

  it("shares the 30 s rule: a client does not replace a token another client replaced", function()
    local a = client(wxmedia.store.redis(connector()))
    local b = client(wxmedia.store.redis(connector()))
    assert(a:token())
    -- the upload and its replay refused: A replaced a token that never worked
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001, count = 2 })
    assert.is_nil(a:upload("image", jpg))
    assert.are.equal(2, #emu:requests("stable_token"))
    assert.is_string(admin:get(token.key("stable", helper.APPID, emu.base_url) .. ":refreshed"))
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001 })
    local res, msg, details = b:upload("image", jpg)
    assert.is_nil(res)
    assert.are.equal("token", details.kind)
    assert.matches("less than 30 s ago", msg)
    assert.are.equal(2, #emu:requests("stable_token"))  -- B kept the rule A's refresh set
  end)

  it("outlives a holder killed in its section: its lock expires, and one process fetches", function()
    local own = helper.start_emulator()   -- its delayed request would end up in the next test's log
    local pid
    finally(function()
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      own:stop()
    end)
    -- A takes the token lock, then hangs in its request to WeChat until it is killed
    own:fault({ route = "stable_token", kind = "delay", seconds = 120 })
    local holder = child("holder", ([[
      local c = assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = %q,
        token_store = wxmedia.store.redis(connect, { lock_ttl = 5 }) }))
      c:token()
    ]]):format(own.base_url))
    pid = helper.sh(holder .. " >/dev/null 2>&1 & echo $!"):match("%d+")
    local lock_key = "lock:" .. token.key("stable", helper.APPID, own.base_url) .. ":lock"
    for _ = 1, 500 do
      if admin:exists(lock_key) then break end
      os.execute("sleep 0.02")
    end
    assert.is_true(admin:exists(lock_key), "the holder never took the lock")
    assert.is_true(admin:pttl(lock_key) > 0)
    os.execute("kill -KILL " .. pid)
    -- two processes need the token now: they wait for the lock's expiry, then one fetches
    local waiter = child("waiter", ([[
      local c = assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = %q, lock_timeout = 60,
        token_store = wxmedia.store.redis(connect) }))
      local tok = assert(c:token())
      io.write(tok:sub(-8), "\n")   -- its end only: a whole token never goes to the output
    ]]):format(own.base_url))
    local out = helper.sh("(" .. waiter .. " & " .. waiter .. " & wait) 2>&1")
    local tails = {}
    for tail in out:gmatch("(%S+)\n") do tails[#tails + 1] = tail end
    assert.are.equal(2, #tails, out)
    assert.are.equal(tails[1], tails[2])
    -- the killed holder's request is still held by the delay: this one is the waiters' only fetch
    assert.are.equal(1, #own:requests("stable_token"))
    assert.is_false(admin:exists(lock_key))
  end)

  it("goes on without Redis when it stops, warning once a minute, and uses it again once back", function()
    local clock = 1000   -- the store's clock: when it tries Redis again
    local connects = { n = 0 }
    local store = wxmedia.store.redis(connector(connects), { now = function() return clock end,
      retry_interval = 30 })
    local given = wxmedia.store.redis(server:connect())   -- a connection, no function to reconnect
    local warnings = {}
    local c = client(store, { on_warning = function(m) warnings[#warnings + 1] = m end })
    assert.is_false(assert(c:media_id("image", jpg)).reused)
    assert(c:upload("image", jpg))
    assert.are.same({}, warnings)

    server:stop()
    for _ = 1, 3 do assert(c:upload("image", jpg)) end
    assert.is_false(assert(c:media_id("image", jpg)).reused)   -- its record is out of reach: uploaded
    local first = assert(c:media_id("image", png))
    local second = assert(c:media_id("image", png))            -- this process's own copy meanwhile
    assert.is_false(first.reused)
    assert.is_true(second.reused)
    assert.are.equal(first.media_id, second.media_id)
    assert.are.equal(2, #emu:requests("stable_token"))   -- one token fetch for the whole outage
    assert.are.equal(1, connects.n)                      -- no connection tried within retry_interval
    assert.is_true(#warnings >= 1)
    assert.matches("the Redis store is unavailable", warnings[1], 1, true)
    local seen = {}
    for _, m in ipairs(warnings) do
      assert.is_nil(seen[m], "the same warning twice within a minute: " .. m)
      seen[m] = true
    end
    local _, err = given:get("k")
    assert.matches("for good", err, 1, true)

    server:start()
    admin = server:connect()
    assert(c:upload("image", jpg))
    assert.are.equal(1, connects.n)                      -- not before retry_interval
    clock = clock + 31
    assert(c:upload("image", jpg))
    assert.are.equal(2, connects.n)
    assert.are.equal(3, #emu:requests("stable_token"))   -- Redis came back empty: fetched, and stored
    assert.is_string(admin:get(token.key("stable", helper.APPID, emu.base_url)))
    local third = assert(c:media_id("image", png))
    assert.is_false(third.reused)                        -- the outage's copy is gone with the outage
    local account = token.account(helper.APPID, emu.base_url)
    assert.is_string(admin:get(reuse.record_key(account, "image", assert(core.sha256_file(png)))))
    assert.is_true(assert(c:media_id("image", png)).reused)
    _, err = given:get("k")
    assert.matches("for good", err, 1, true)
  end)

  it("never takes a late reply for the next command's: a connection that timed out is closed", function()
    local clock = 1000
    local s = wxmedia.store.redis(connector(), { timeout = 0.3, retry_interval = 5,
      now = function() return clock end })
    assert.is_true(s:set("a", "1", 60))
    assert.is_true(s:set("b", "2", 60))
    server:pause(1500)
    local v, err = s:get("a")
    assert.is_nil(v)
    assert.matches("the Redis store is unavailable (connection error: timeout)", err, 1, true)
    assert.are.equal("1", admin:get("a"))     -- answered once the pause is over: so was the store's get
    clock = clock + 5
    assert.are.equal("2", s:get("b"))        -- not "1", the reply to the get that timed out
  end)

  it("bounds a Redis that stops answering by the store's timeout, once per retry_interval", function()
    finally(function() server:stop() end)   -- ends the pause: the next test starts it again
    -- in a child under a watchdog: a store that waited for ever would hang the suite otherwise
    local cmd = child("slow", ([[
      local core = require "wxmedia.core"
      local warnings = {}
      -- the client's own timeout is long: the store's bounds each command
      local function patient()
        return require("redis").connect({ host = "127.0.0.1", port = %d, timeout = 60 })
      end
      local c = assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = %q,
        token_store = wxmedia.store.redis(patient, { timeout = 2, retry_interval = 600 }),
        on_warning = function(m) warnings[#warnings + 1] = m end }))
      assert(c:upload("image", %q))
      os.execute(%q)
      for i = 1, 6 do
        local t0 = core.now()
        if i %% 2 == 0 then assert(c:media_id("image", %q)) else assert(c:upload("image", %q)) end
        io.write(string.format("%%.3f\n", core.now() - t0))
      end
      io.write("warning: ", warnings[1] or "none", "\n")
    ]]):format(server.port, emu.base_url, jpg, server:pause_command(30000), png, jpg))
    local out, ok = helper.sh("timeout 50 " .. cmd .. " 2>&1")
    assert.is_true(ok, out)
    local waited, total, n = 0, 0, 0
    for s in out:gmatch("(%d+%.%d+)\n") do
      local seconds = tonumber(s)
      n, total = n + 1, total + seconds
      if seconds >= 2 then waited = waited + 1 end
      assert.is_true(seconds < 2 + 10, out)   -- one timeout, and a generous margin for a busy machine
    end
    assert.are.equal(6, n, out)
    assert.is_true(waited <= 1, out)          -- the store waits once, then goes on without Redis
    assert.is_true(total < 2 + 20, out)
    assert.matches("the Redis store is unavailable (connection error: timeout)", out, 1, true)
  end)

  -- lua-resty-redis is not in Debian: this adapter over redis-lua answers in its convention (nil,
  -- err for a broken connection; false, err for an error reply; a null for a missing key; "OK"),
  -- to check the store's reading of those answers and its release mode, not lua-resty-redis itself.
  it("reads lua-resty-redis's answers, and connects per operation with release", function()
    local NULL = setmetatable({}, { __tostring = function() return "null" end })
    local function resty_like(conn)
      local o = {}
      for _, name in ipairs({ "get", "set", "del", "eval" }) do
        o[name] = function(_, ...)
          local ok, res = pcall(conn[name], conn, ...)
          if not ok then
            local msg = tostring(res):gsub("^.-:%d+: ", "")
            if msg:find("^redis error: ") then return false, msg:sub(14) end
            return nil, msg:match("connection error: (.*)") or msg
          end
          if res == nil then return NULL end
          if res == true then return "OK" end
          return res
        end
      end
      o.set_timeouts = function(_, _, _, read_ms) conn.network.socket:settimeout(read_ms / 1000) end
      o.close = function() conn.network.socket:close() end
      return o
    end
    local connects, released = { n = 0 }, 0
    local connect = connector(connects)
    local s = wxmedia.store.redis(function() return resty_like(connect()) end,
      { release = function(conn) released = released + 1; conn:close() end })
    assert.is_nil(s:get("k"))
    assert.is_true(s:set("k", "v", 60))
    assert.are.equal("v", s:get("k"))
    admin:hset("h", "f", "v")
    local v, err = s:get("h")
    assert.is_nil(v)
    assert.matches("WRONGTYPE", err, 1, true)
    local l = assert(s:lock("k", 1))
    assert.are.equal("timeout", select(2, s:lock("k", 0.1)))
    assert.is_true(l:unlock())
    assert.are.equal(connects.n, released)   -- every connection went back after its operation
    local failing = wxmedia.store.redis(function() return resty_like(connect()) end,
      { release = function() error("pool full") end })
    assert.is_true(failing:set("k2", "v2", 60))  -- a release that fails costs its connection only
    assert.are.equal("v2", failing:get("k2"))
    server:stop()
    v, err = s:get("k")
    assert.is_nil(v)
    assert.matches("the Redis store is unavailable", err, 1, true)
  end)
end)
