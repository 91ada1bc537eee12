-- Stores: where tokens and media_id records live. Every store has one shape:
--   store:get(key) -> string or nil
--   store:set(key, value, ttl_seconds)         value is a string; ttl may be nil (no expiry)
--   store:delete(key)
--   store:lock(key, timeout_seconds) -> lock with :unlock(), or nil, message   (optional)
-- memory() is the default (one process), file() is shared by the processes of one machine,
-- shared_dict() by the workers of one nginx, redis() by every machine that reaches one Redis; wrap()
-- adapts any object with get and set (a memcached client, ...) to the shape. The implementations
-- live in wxmedia/store/.
local error, pcall, require, select, tostring, type = error, pcall, require, select, tostring, type
local unpack = table.unpack or unpack -- luacheck: ignore 143

local _M = {}

function _M.memory(opts)
  return require("wxmedia.store.memory").new(opts)
end

function _M.file(path, opts)
  return require("wxmedia.store.file").new(path, opts)
end

-- OpenResty only: a store over lua_shared_dicts (see wxmedia.ngx).
function _M.shared_dict(dict, opts)
  return require("wxmedia.store.shared_dict").new(dict, opts)
end

-- A store in Redis over a redis-lua or lua-resty-redis client, or a function that connects one.
function _M.redis(conn, opts)
  return require("wxmedia.store.redis").new(conn, opts)
end

-- Adapts any object with get(key) and set(key, value, ttl) methods to the shape, and makes it safe
-- to lean on: a method that raises or answers nil, message (a Redis that is down, a store file that
-- cannot be written) is reported to warn(message) and reads as "no value" / "not written" / "no
-- lock", so the call goes on without the cache. Non-string answers (Redis clients' ngx.null, false)
-- read as "no value"; without delete, a key is overwritten with an empty value that expires at once;
-- without lock, callers go without one. what names the option in messages ("option 'token_store'
-- to 'new'"); warn defaults to ignoring.
function _M.wrap(obj, what, level, warn)
  what = what or "store"
  if (type(obj) ~= "table" and type(obj) ~= "userdata") or type(obj.get) ~= "function"
    or type(obj.set) ~= "function" then
    error("bad " .. what .. " (a store with get and set methods expected, got " .. type(obj) .. ")",
      (level or 2) + 1)
  end
  warn = warn or function() end
  local function call(method, ...)
    local ok, res, err = pcall(obj[method], obj, ...)
    if not ok then
      warn("the store's " .. method .. " failed: " .. tostring(res))
      return nil
    end
    -- a second answer is a message: why it failed, or what it had to do (a damaged file kept aside)
    if err ~= nil then warn(tostring(err)) end
    return res
  end
  local adapter = {}
  function adapter.get(_, key)
    local v = call("get", key)
    if type(v) ~= "string" or v == "" then return nil end
    return v
  end
  function adapter.set(_, key, value, ttl)
    return call("set", key, value, ttl)
  end
  function adapter.delete(_, key)
    if type(obj.delete) == "function" then return call("delete", key) end
    return call("set", key, "", 1)
  end
  if type(obj.lock) == "function" then
    function adapter.lock(_, key, timeout)
      local ok, l, err, details = pcall(obj.lock, obj, key, timeout)
      if not ok then
        warn("the store's lock failed: " .. tostring(l))
        return nil
      end
      if not l then
        -- a store that says why (the file store: kind "io" for a lock file it cannot open) did not wait
        if type(details) == "table" and details.kind ~= nil and details.kind ~= "timeout" then
          warn("the store's lock failed: " .. tostring(err) .. ": going on without it")
        else
          warn("the lock " .. key .. " was not had within " .. tostring(timeout) .. " s (" .. tostring(err)
            .. "): going on without it")
        end
      end
      return l
    end
  end
  return adapter
end

local function pack(...) return { n = select("#", ...), ... } end

-- Runs fn(...) holding the store's lock on key, and releases it on every path, a raised error
-- included (then raised again). A store without a lock, or a lock not had within timeout (a
-- stuck holder), runs fn without one: the callers' sections are safe to run twice, at the cost of
-- one extra request.
function _M.locked(store, key, timeout, fn, ...)
  local l = store.lock and store:lock(key, timeout)
  local res = pack(pcall(fn, ...))
  if l then l:unlock() end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

return _M
