-- A store over OpenResty's lua_shared_dicts, shared by all the workers of one nginx: get, set,
-- delete, and lock, a single-flight lock across workers (dict:add succeeds for one caller only;
-- the entry expires after lock_exptime, so a holder that died cannot block the others for good).
-- Waiters poll with ngx.sleep, which yields to the event loop.
local phase = require "wxmedia.ngx.phase"

local ngx = ngx
local error, setmetatable, tostring, type = error, setmetatable, tostring, type
local format = string.format
local min, random = math.min, math.random

local _M = {}
local mt = { __index = _M }

local function dict_of(value, what, level)
  if type(value) == "string" then
    local dict = ngx.shared[value]
    if not dict then error(format("bad %s (no lua_shared_dict named '%s')", what, value), level + 1) end
    return dict
  end
  if type(value) == "table" and type(value.add) == "function" then return value end
  error(format("bad %s (a lua_shared_dict name expected, got %s)", what, type(value)), level + 1)
end

-- syntax: store = shared_dict.new(dict [, { lock_dict =, lock_exptime = 30, lock_timeout = 10 }])
-- dict and lock_dict: a lua_shared_dict's name, or ngx.shared.NAME.
function _M.new(dict, opts)
  opts = opts or {}
  local values = dict_of(dict, "shared_dict", 3)
  return setmetatable({
    dict = values,
    locks = opts.lock_dict ~= nil and dict_of(opts.lock_dict, "lock_dict", 3) or values,
    lock_exptime = opts.lock_exptime or 30,
    lock_timeout = opts.lock_timeout or 10,
  }, mt)
end

function _M.get(self, key)
  local v = self.dict:get(key)
  if type(v) ~= "string" or v == "" then return nil end
  return v
end

function _M.set(self, key, value, ttl)
  if ttl ~= nil and ttl <= 0 then
    self.dict:delete(key)
    return true
  end
  local ok, err = self.dict:set(key, value, ttl or 0)
  if not ok then return nil, "shared dict: " .. tostring(err) end
  return true
end

function _M.delete(self, key)
  self.dict:delete(key)
  return true
end

local Lock = {}
Lock.__index = Lock

function Lock.unlock(self)
  if self.released then return true end
  self.released = true
  -- delete only our own entry: if ours expired, another worker may hold the lock now
  if self.dict:get(self.key) == self.owner then self.dict:delete(self.key) end
  return true
end

local lock_seq = 0

function _M.lock(self, key, timeout)
  phase.check("a store lock", 2)
  lock_seq = lock_seq + 1
  local owner = ngx.worker.pid() .. ":" .. lock_seq .. ":" .. random(1e9)
  local name = "lock:" .. key
  local deadline = ngx.now() + (timeout or self.lock_timeout)
  local step = 0.002
  while true do
    local ok, err = self.locks:add(name, owner, self.lock_exptime)
    if ok then return setmetatable({ dict = self.locks, key = name, owner = owner }, Lock) end
    if err ~= "exists" then return nil, "lock failed: " .. tostring(err) end
    if ngx.now() >= deadline then return nil, "timeout" end
    ngx.sleep(step)
    step = min(step * 2, 0.05)
  end
end

return _M
