-- A store in one JSON file, shared by the processes of one machine: readers see either the old or
-- the new file (every write goes to a new private temp file renamed over it), writers take turns on
-- a lock file, and lock(key) gives a cross-process lock per key so that only one process fetches a
-- token while the others wait and then read it.
-- Tokens are secrets: the file and its lock files are created 0600, never through a symbolic link
-- (a link planted at the store's path, its temp or lock files is refused, not followed). A damaged
-- file is kept aside as <path>.corrupt, not silently replaced. Failures are answered as nil, message
-- (the client passes them to on_warning and goes on without the cache); a write that had to do
-- something worth knowing answers true, message.
local io_open, os_rename, pairs, setmetatable, tostring, type =
  io.open, os.rename, pairs, setmetatable, tostring, type
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

-- nil when the store's path may be read and written, else why not.
local function unusable(self)
  local st = transport.lstat(self.path)
  if not st then return nil end               -- not there yet: the first write makes it
  if st.type == "symlink" then
    return "the store file " .. self.path .. " is a symbolic link: tokens are not read or written through it"
  elseif st.type == "directory" then
    return "the store file " .. self.path .. " is a directory"
  elseif st.type ~= "file" then
    return "the store file " .. self.path .. " is not a regular file"
  end
  return nil
end

-- All entries, { key = { value =, expires_at = } }, or nil, why; damaged = true when the file holds
-- something that is not the store's JSON.
local function load(self)
  local problem = unusable(self)
  if problem then return nil, problem end
  local f = io_open(self.path, "rb")
  if not f then return {} end
  local text = f:read("*a")  -- "*a": plain Lua 5.1 knows no "a"
  f:close()
  if not text or text == "" then return {} end
  local data = cjson.decode(text)
  if type(data) ~= "table" then return {}, nil, true end
  return data
end

local function alive(self, e)
  return type(e) == "table" and type(e.value) == "string"
    and (type(e.expires_at) ~= "number" or e.expires_at > self.now())
end

-- Read, change, write back, with the writers' lock held. A damaged file is moved aside first.
local function update(self, change)
  local lock, lerr = transport.lock(self.path .. ".lock", self.lock_timeout)
  if not lock then return nil, "the store file's lock: " .. tostring(lerr) end
  local data, problem, damaged = load(self)
  local warning
  if damaged then
    local aside = self.path .. ".corrupt"
    if os_rename(self.path, aside) then
      warning = "the store file " .. self.path .. " was damaged: kept aside as " .. aside
    end
  end
  local ok, err = nil, problem
  if data then
    for k, e in pairs(data) do
      if not alive(self, e) then data[k] = nil end
    end
    change(data)
    ok, err = transport.write_private(self.path, cjson.encode(data))
  end
  lock:unlock()
  if ok then return true, warning end
  return nil, err
end

function _M.get(self, key)
  local data, problem, damaged = load(self)
  if not data then return nil, problem end
  if damaged then
    return nil, "the store file " .. self.path .. " is damaged: it is kept aside at the next write"
  end
  local e = data[key]
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
