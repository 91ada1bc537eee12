-- A store in Redis, shared by every process and machine that reaches one Redis: tokens, the
-- refresh rule's markers and media_id records, each with Redis's own expiry (SET ... EX), and a lock
-- across machines: SET NX PX with a random owner value, released by a compare-and-delete script
-- (EVAL), so that a lock that outlived its PX and was taken by another holder is never released by
-- the old one. It runs over a client object of either shape users have:
--   redis-lua (plain Lua over LuaSocket): a method raises on a broken connection and on an error
--     reply ("redis error: ..."); a missing key is nil, SET's OK is true.
--   lua-resty-redis (OpenResty cosockets): a method answers nil, err on a broken connection and
--     false, err on an error reply; a missing key is ngx.null, SET's OK is "OK".
-- Redis down or slow: every command is bounded by the store's timeout (set on the client's socket).
-- A connection that failed is closed, never used again (a late reply would answer the next command),
-- and the store stays down for retry_interval seconds, answering at once without touching the
-- network; then it connects again through the caller's connect function. Meanwhile it keeps what
-- this process reads and writes in memory, so that a process asks WeChat for a token once per
-- outage, not at every call; get, set and delete answer with a message then, which the client
-- passes to on_warning (once a minute per message) while the call goes on.
local error, ipairs, pairs, pcall, rawget, require, setmetatable, tostring, type =
  error, ipairs, pairs, pcall, rawget, require, setmetatable, tostring, type
local ceil, huge, min = math.ceil, math.huge, math.min
local format = string.format
local config = require "wxmedia.config"
local memory = require "wxmedia.store.memory"
local transport = require "wxmedia.transport"

local _M = {}
local mt = { __index = _M }

-- The options and their defaults (seconds).
local DEFAULTS = { prefix = "", timeout = 1, retry_interval = 10, lock_timeout = 10, lock_ttl = 30 }
local OPTIONS = { prefix = "string", timeout = "number", retry_interval = "number",
  lock_timeout = "number", lock_ttl = "number", release = "function", now = "function", sleep = "function" }
-- Values kept in this process's memory while Redis is down; beyond, the memory starts again.
local MAX_KEPT = 1024

-- Deletes the key only while it holds the caller's owner value: the lock's release.
local RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
  .. "else return 0 end"

local function bad(name, expected, got, level)
  error(format("bad option '%s' to 'redis' (%s expected, got %s)", name, expected, got), level + 1)
end

local function check_options(opts, level)
  local names = {}
  for name in pairs(OPTIONS) do names[#names + 1] = name end
  for name, value in pairs(opts) do
    local expected = OPTIONS[name]
    if not expected then
      local hint = type(name) == "string" and config.suggest(name, names)
      error(format("bad option '%s' to 'redis' (unknown option%s)", tostring(name),
        hint and ("; did you mean '" .. hint .. "'?") or ""), level + 1)
    end
    if type(value) ~= expected then bad(name, expected, type(value), level) end
    if expected == "number" and not (value > 0 and value < huge) then
      bad(name, "a positive number", tostring(value), level)
    end
  end
end

-- The client's methods the store calls: a missing one would look like a broken connection forever.
local function missing_method(conn)
  for _, m in ipairs({ "get", "set", "del", "eval" }) do
    if type(conn[m]) ~= "function" then return m end
  end
  return nil
end

-- The clock: the caller's, else OpenResty's (ngx.sleep yields to the event loop instead of blocking
-- the worker), else the C core's.
local function clock(opts)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.sleep) == "function" and type(ngx.now) == "function" then
    return opts.now or ngx.now, opts.sleep or ngx.sleep
  end
  local core_sleep, core_time = transport.clock()
  return opts.now or core_time or os.time, opts.sleep or core_sleep
end

-- A message from a client, without the "file:line:" that error() puts before it.
local function cleaned(message)
  message = tostring(message):gsub("^[^\n:]+%.lua:%d+: ", "")
  if #message > 200 then message = message:sub(1, 200) .. "..." end
  return message
end

-- Bounds every command of conn by the store's timeout, on the client's own socket.
local function bound(conn, seconds)
  local network = conn.network
  if type(network) == "table" and network.socket then            -- redis-lua: a LuaSocket
    network.socket:settimeout(seconds, "b")
    network.socket:settimeout(seconds, "t")
  elseif type(conn.set_timeouts) == "function" then              -- lua-resty-redis: milliseconds
    local ms = ceil(seconds * 1000)
    conn:set_timeouts(ms, ms, ms)
  elseif type(conn.set_timeout) == "function" then
    conn:set_timeout(ceil(seconds * 1000))
  end
end

local function close(conn)
  local network = conn.network
  if type(network) == "table" and network.socket then
    pcall(network.socket.close, network.socket)
  elseif type(conn.close) == "function" then
    pcall(conn.close, conn)
  end
end

-- Takes conn as the store's connection: Redis is reachable again, and the memory of the outage goes.
local function adopt(self, conn)
  bound(conn, self.timeout)
  self.conn, self.fallback, self.kept, self.retry_at, self.down = conn, nil, 0, nil, nil
end

-- syntax: store = redis.new(conn [, opts])
-- conn: a connected client (redis-lua or lua-resty-redis), or a function that returns one (or nil,
-- message): then the store connects when first used, and again after a failure. opts: prefix (of
-- every key), timeout (of each command), retry_interval (after a failure, before connecting again),
-- lock_timeout (lock's default wait), lock_ttl (a lock's PX expiry), release (function(conn), called
-- after each operation: the store then connects through conn for every operation; OpenResty: put
-- the connection back in the cosocket pool), now, sleep.
function _M.new(conn, opts)
  local t = type(conn)
  if t ~= "function" and t ~= "table" and t ~= "userdata" then
    error("bad argument #1 to 'redis' (a Redis client or a function that connects one expected, got "
      .. t .. ")", 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'redis' (table expected, got " .. type(opts) .. ")", 3)
  end
  opts = opts or {}
  check_options(opts, 3)
  if t ~= "function" then
    local m = missing_method(conn)
    if m then
      error("bad argument #1 to 'redis' (a Redis client expected: it has no " .. m .. " method)", 3)
    end
    if opts.release then
      error("bad option 'release' to 'redis' (it needs a function that connects, not a connection)", 3)
    end
  end
  local now, sleep = clock(opts)
  local self = setmetatable({
    connect = t == "function" and conn or nil, release = opts.release, now = now, sleep = sleep,
    kept = 0,
  }, mt)
  for name, default in pairs(DEFAULTS) do
    if opts[name] ~= nil then self[name] = opts[name] else self[name] = default end
  end
  if t ~= "function" then adopt(self, conn) end
  return self
end

-- Redis cannot be used: the connection goes (closed: its late replies must never answer a later
-- command), and the store answers `why` at once until retry_interval has passed.
local function broken(self, conn, why)
  if conn then close(conn) end
  if conn == self.conn then self.conn = nil end
  if self.connect then
    self.down = format("the Redis store is unavailable (%s)", why)
    self.retry_at = self.now() + self.retry_interval
  else
    self.down = format("the Redis store is unavailable (%s), for good: it was given a connection, not a "
      .. "function to connect again", why)
  end
  return nil, self.down
end

-- A connection to run one command on, or nil, why.
local function acquire(self)
  if self.conn then return self.conn end
  if not self.connect or (self.retry_at and self.now() < self.retry_at) then return nil, self.down end
  local ok, conn, err = pcall(self.connect)
  if not ok or not conn then
    return broken(self, nil, cleaned(ok and (err or "the connect function returned nothing") or conn))
  end
  local m = type(conn) == "table" and missing_method(conn) or nil
  if type(conn) ~= "table" or m then
    close(conn)
    return broken(self, nil, "the connect function returned no Redis client"
      .. (m and " (no " .. m .. " method)" or ""))
  end
  adopt(self, conn)
  if self.release then self.conn = nil end  -- one connection per operation: never shared by two
  return conn
end

-- After an operation: the caller's release (OpenResty: back to the cosocket pool), which must not
-- fail the operation; a connection it could not take back is closed.
local function done(self, conn)
  if self.release and not pcall(self.release, conn) then close(conn) end
end

-- Runs one command: its answer (nil for a missing key), or nil, message, down (true when Redis
-- cannot be reached, as opposed to an error reply on a working connection).
local function command(self, name, ...)
  local conn, why = acquire(self)
  if not conn then return nil, why, true end
  local ok, res, err = pcall(conn[name], conn, ...)
  if not ok then
    local message = cleaned(res)
    -- redis-lua's error reply: the connection is still in step with the server
    if message:find("redis error: ", 1, true) then
      done(self, conn)
      return nil, "the Redis store's " .. name .. " failed: " .. message:gsub("^redis error: ", "")
    end
    local _, down = broken(self, conn, message)
    return nil, down, true
  end
  if res == false and err ~= nil then              -- lua-resty-redis's error reply
    done(self, conn)
    return nil, "the Redis store's " .. name .. " failed: " .. cleaned(err)
  end
  if res == nil and err ~= nil then                -- lua-resty-redis: the connection failed
    local _, down = broken(self, conn, cleaned(err))
    return nil, down, true
  end
  done(self, conn)
  return res
end

-- While Redis is down: this process's own memory, so that its calls go on with what it had.
local MEANWHILE = ": this process goes on with its own copy meanwhile"

local function fallback(self)
  local m = self.fallback
  if not m or self.kept >= MAX_KEPT then
    m = memory.new({ now = self.now })
    self.fallback, self.kept = m, 0
  end
  return m
end

local function checked_key(key, fname)
  if type(key) ~= "string" then
    error(format("bad argument #1 to '%s' (string expected, got %s)", fname, type(key)), 3)
  end
  return key
end

function _M.get(self, key)
  local res, err, down = command(self, "get", self.prefix .. checked_key(key, "get"))
  if down then return fallback(self):get(key), err .. MEANWHILE end
  if err then return nil, err end
  if type(res) ~= "string" then return nil end    -- nil, or lua-resty-redis's ngx.null
  return res
end

-- ttl: seconds (rounded up to whole seconds: SET ... EX), nil for no expiry; 0 or less deletes.
function _M.set(self, key, value, ttl)
  checked_key(key, "set")
  if type(value) ~= "string" then
    error("bad argument #2 to 'set' (string expected, got " .. type(value) .. ")", 2)
  end
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl or ttl == huge) then
    error("bad argument #3 to 'set' (seconds expected, got " .. tostring(ttl) .. ")", 2)
  end
  if ttl ~= nil and ttl <= 0 then return self:delete(key) end
  local res, err, down
  if ttl then
    res, err, down = command(self, "set", self.prefix .. key, value, "EX", format("%d", ceil(ttl)))
  else
    res, err, down = command(self, "set", self.prefix .. key, value)
  end
  if down then
    fallback(self):set(key, value, ttl)
    self.kept = self.kept + 1
    return true, err .. MEANWHILE
  end
  if err then return nil, err end
  return res ~= nil
end

function _M.delete(self, key)
  local _, err, down = command(self, "del", self.prefix .. checked_key(key, "delete"))
  if down then
    fallback(self):delete(key)
    return true, err .. MEANWHILE
  end
  if err then return nil, err end
  return true
end

local Lock = {}
Lock.__index = Lock

-- Releases the lock if it is still this holder's; true, or false when it had expired meanwhile
-- (another holder's lock is left alone), or nil, message. Never raises.
function Lock.unlock(self)
  if self.released then return true end
  self.released = true
  local res, err = command(self.store, "eval", RELEASE, 1, self.key, self.owner)
  if err then return nil, err end
  return res == 1
end

-- 16 random bytes in hex: a holder's value, unique across processes and machines (Lua 5.1's and
-- LuaJIT's math.random start alike in every process).
local function random_hex()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes ~= 16 then
    bytes = tostring({}) .. tostring(os.clock()) .. tostring(os.time()) .. tostring(math.random())
  end
  return (bytes:gsub(".", function(c) return format("%02x", c:byte()) end))
end

-- syntax: lock, err = store:lock(key [, timeout])
-- Waits up to timeout seconds (default lock_timeout) for the lock on key; the lock expires after
-- lock_ttl seconds if its holder never releases it (a process killed in the section). Answers an
-- object with unlock(), or nil, "timeout", or nil, message when Redis cannot be used.
function _M.lock(self, key, timeout)
  checked_key(key, "lock")
  if timeout ~= nil and type(timeout) ~= "number" then
    error("bad argument #2 to 'lock' (number expected, got " .. type(timeout) .. ")", 2)
  end
  timeout = timeout or self.lock_timeout
  self.owner_base = self.owner_base or random_hex()
  self.owner_seq = (self.owner_seq or 0) + 1
  local owner = self.owner_base .. ":" .. self.owner_seq
  local name = self.prefix .. "lock:" .. key
  local px = format("%d", ceil(self.lock_ttl * 1000))
  local deadline = self.now() + timeout
  local step = 0.002
  while true do
    local res, err = command(self, "set", name, owner, "NX", "PX", px)
    if err then return nil, err end
    if res == true or res == "OK" then
      return setmetatable({ store = self, key = name, owner = owner }, Lock)
    end
    local left = deadline - self.now()
    if left <= 0 or not self.sleep then return nil, "timeout" end
    self.sleep(min(step, left))
    step = min(step * 2, 0.05)
  end
end

return _M
