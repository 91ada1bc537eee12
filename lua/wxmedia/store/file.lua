-- A store in one JSON file, shared by the processes of one machine: readers see either the old or
-- the new file (every write goes to a temp file renamed over it), writers take turns on a lock file,
-- and lock(key) gives a cross-process lock per key so that only one process fetches a token while
-- the others wait and then read it.
-- Tokens are secrets: keep the file in a folder only the service's user can read.
local io_open, os_remove, os_rename, pairs, setmetatable, tostring, type =
  io.open, os.remove, os.rename, pairs, setmetatable, tostring, type
local cjson = require("cjson.safe").new()
local transport = require "wxmedia.transport"

local _M = {}
local mt = { __index = _M }

local DEFAULT_LOCK_TIMEOUT = 10

-- The wall clock of the C core (os.time counts whole seconds only).
local function wall_clock()
  local _, time = transport.clock()
  return (time or os.time)()
end

-- path: the JSON file (its folder must exist). opts: { now = function() -> wall seconds,
-- lock_timeout = seconds a writer waits for its turn (default 10) }.
function _M.new(path, opts)
  if type(path) ~= "string" or path == "" then
    error("bad argument #1 to 'file' (string expected, got " .. type(path) .. ")", 2)
  end
  opts = opts or {}
  return setmetatable({
    path = path,
    now = opts.now or wall_clock,
    lock_timeout = opts.lock_timeout or DEFAULT_LOCK_TIMEOUT,
  }, mt)
end

-- All entries, { key = { value =, expires_at = } }; a missing or damaged file reads as empty.
local function load(self)
  local f = io_open(self.path, "rb")
  if not f then return {} end
  local text = f:read("*a")  -- "*a": plain Lua 5.1 knows no "a"
  f:close()
  local data = text and cjson.decode(text)
  if type(data) ~= "table" then return {} end
  return data
end

local function save(self, data)
  local tmp = self.path .. ".tmp"
  local f, err = io_open(tmp, "wb")
  if not f then return nil, "file store: cannot write: " .. tostring(err) end
  local text = cjson.encode(data)
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os_remove(tmp)
    return nil, "file store: cannot write: " .. tostring(werr or cerr)
  end
  local rok, rerr = os_rename(tmp, self.path)
  if not rok then
    os_remove(tmp)
    return nil, "file store: cannot replace the file: " .. tostring(rerr)
  end
  return true
end

local function alive(self, e)
  return type(e) == "table" and type(e.value) == "string"
    and (type(e.expires_at) ~= "number" or e.expires_at > self.now())
end

-- Read, change, write back, with the writers' lock held.
local function update(self, change)
  local lock, lerr = transport.lock(self.path .. ".lock", self.lock_timeout)
  if not lock then return nil, "file store: " .. tostring(lerr) end
  local data = load(self)
  for k, e in pairs(data) do
    if not alive(self, e) then data[k] = nil end
  end
  change(data)
  local ok, err = save(self, data)
  lock:unlock()
  return ok, err
end

function _M.get(self, key)
  local e = load(self)[key]
  if alive(self, e) then return e.value end
  return nil
end

function _M.set(self, key, value, ttl)
  local expires_at = (type(ttl) == "number" and ttl > 0) and self.now() + ttl or nil
  return update(self, function(data) data[key] = { value = value, expires_at = expires_at } end)
end

function _M.delete(self, key)
  return update(self, function(data) data[key] = nil end)
end

-- One lock file per key, next to the store (a key's characters reduced to a safe set).
function _M.lock(self, key, timeout)
  local name = tostring(key):gsub("[^%w%._%-]", "_")
  return transport.lock(self.path .. "." .. name .. ".lock", timeout or self.lock_timeout)
end

return _M
