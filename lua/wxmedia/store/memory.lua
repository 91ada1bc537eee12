-- The memory store: one process's keys, with their expiry. The default store of tokens and
-- media_id records; plain Lua runs one thing at a time in a process, so its lock never waits.
local setmetatable = setmetatable

local _M = {}
local mt = { __index = _M }

-- opts: { now = function() -> seconds } (defaults to os.time; expiry only needs whole seconds).
function _M.new(opts)
  return setmetatable({ data = {}, now = (opts and opts.now) or os.time }, mt)
end

function _M.get(self, key)
  local e = self.data[key]
  if not e then return nil end
  if e.expires_at and self.now() >= e.expires_at then
    self.data[key] = nil
    return nil
  end
  return e.value
end

function _M.set(self, key, value, ttl)
  self.data[key] = { value = value, expires_at = ttl and ttl > 0 and self.now() + ttl or nil }
  return true
end

function _M.delete(self, key)
  self.data[key] = nil
  return true
end

local NO_LOCK = { unlock = function() return true end }

function _M.lock()
  return NO_LOCK
end

return _M
