-- What the worker-thread VMs of ngx.run_worker_thread run: one call of a C core session per task.
--
-- Such a VM is a plain LuaJIT state with package.path/cpath copied from the worker; it has no ngx.log,
-- no ngx.sleep, no cosockets. It is pooled and reused, so module-level state lives per VM: we keep
-- one core session per distinct set of session options there, and its libcurl handle keeps its
-- connections alive from one call to the next. A VM serves one task at a time, so a session is
-- never used by two threads at once.
--
-- The same function also serves the blocking backend inside the worker itself (wxmedia.ngx without
-- a thread pool), so both paths return exactly the same values: the core's own, which the worker's
-- wxmedia.transport turns into nil, message, details.
local transport = require "wxmedia.transport"

local pairs, ipairs, type, tostring, pcall, error = pairs, ipairs, type, tostring, pcall, error
local sort, concat = table.sort, table.concat

local _M = {}

local METHODS = { upload = true, get = true, fetch = true, request = true }

-- Distinct option sets are few (one per client configuration); the cap only guards against a
-- caller that builds a new set per request.
local MAX_SESSIONS = 8
local sessions, count = {}, 0

-- A stable key for a flat table of plain values: keys sorted, each value tagged with its type.
local function key_of(opts)
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = opts[k]
    parts[i] = k .. "=" .. type(v):sub(1, 1) .. ":" .. tostring(v)
  end
  return concat(parts, "\0")
end

local function session_for(opts)
  local key = key_of(opts)
  local s = sessions[key]
  if not s then
    if count >= MAX_SESSIONS then
      for k, old in pairs(sessions) do
        old:close()
        sessions[k] = nil
      end
      count = 0
    end
    local core, why = transport.core()
    if not core then
      error("the C module wxmedia.core cannot be loaded in a worker thread: " .. tostring(why), 0)
    end
    s = core.session(opts)
    sessions[key], count = s, count + 1
  end
  return s
end

-- call(session_opts, method, ...) -> true, <the core method's returns> | false, error_message
-- A misuse inside the core (a raised error) comes back as false + its message, so the caller can
-- raise it again in the request, exactly as the core would have raised in plain Lua.
function _M.call(session_opts, method, ...)
  if type(session_opts) ~= "table" then
    return false, "bad argument #1 to 'call' (table expected, got " .. type(session_opts) .. ")"
  end
  if not METHODS[method] then
    return false, "bad argument #2 to 'call' (unknown transfer method '" .. tostring(method) .. "')"
  end
  local ok, s = pcall(session_for, session_opts)
  if not ok then
    return false, tostring(s)
  end
  local res, msg, kind
  ok, res, msg, kind = pcall(s[method], s, ...)
  if not ok then
    return false, tostring(res)
  end
  -- plain data only crosses back: core results are flat tables, strings and numbers
  return true, res, msg, kind
end

return _M
