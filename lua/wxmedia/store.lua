-- Key-value stores for tokens (and, later, media_id records). The interface every store offers:
--   store:get(key) -> string or nil
--   store:set(key, value, ttl_seconds)        value is a string; ttl may be nil (no expiry)
--   store:delete(key)
--   store:lock(key, timeout_seconds) -> lock with :unlock(), or nil, err    (optional)
-- memory() is the default (one process); file() is shared by the processes of one machine;
-- wrap() adapts any object with get/set (a Redis or memcached client, OpenResty's shared dict).
local setmetatable, type = setmetatable, type

local _M = {}

local Memory = {}
Memory.__index = Memory

-- opts: { now = function() -> seconds } (defaults to os.time; expiry only needs whole seconds).
function _M.memory(opts)
  return setmetatable({ data = {}, now = (opts and opts.now) or os.time }, Memory)
end

function Memory:get(key)
  local e = self.data[key]
  if not e then return nil end
  if e.expires_at and self.now() >= e.expires_at then
    self.data[key] = nil
    return nil
  end
  return e.value
end

function Memory:set(key, value, ttl)
  self.data[key] = { value = value, expires_at = ttl and ttl > 0 and self.now() + ttl or nil }
  return true
end

function Memory:delete(key)
  self.data[key] = nil
  return true
end

-- Plain Lua runs one thing at a time in a process, so there is nothing to wait for.
local NO_LOCK = { unlock = function() return true end }
function Memory.lock()
  return NO_LOCK
end

-- Adapts any object with get(key) and set(key, value, ttl) methods. Non-string answers (Redis
-- clients' ngx.null, false) read as "no value"; without delete, a key is overwritten with an empty
-- value that expires at once; without lock, callers go without one.
function _M.wrap(obj)
  if type(obj) ~= "table" and type(obj) ~= "userdata" then
    error("bad token_store (a table with get and set methods expected, got " .. type(obj) .. ")", 3)
  end
  if type(obj.get) ~= "function" or type(obj.set) ~= "function" then
    error("bad token_store (a table with get and set methods expected)", 3)
  end
  local adapter = {}
  function adapter.get(_, key)
    local v = obj:get(key)
    if type(v) ~= "string" or v == "" then return nil end
    return v
  end
  function adapter.set(_, key, value, ttl)
    return obj:set(key, value, ttl)
  end
  function adapter.delete(_, key)
    if type(obj.delete) == "function" then return obj:delete(key) end
    return obj:set(key, "", 1)
  end
  if type(obj.lock) == "function" then
    function adapter.lock(_, key, timeout) return obj:lock(key, timeout) end
  end
  return adapter
end

-- The file store lives in its own module (it needs the C core's lock); loaded on first use.
function _M.file(path, opts)
  return require("wxmedia.filestore").new(path, opts)
end

return _M
