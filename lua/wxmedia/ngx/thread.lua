-- What the worker-thread VMs of ngx.run_worker_thread run: one call of a C core session per task.
--
-- Such a VM is a plain LuaJIT state with package.path/cpath copied from the worker; it has no ngx.log,
-- no ngx.sleep, no cosockets. It is pooled and reused, so module-level state lives per VM: we keep
-- one core session per distinct set of session options there, and its libcurl handle keeps its
-- connections alive from one call to the next. A VM serves one task at a time, so a session is
-- never used by two threads at once.
--
-- wxmedia.ngx calls watched(): the same call under a watch that stops it at its deadline, or when
-- the request's HTTP client went away.
--
-- The same function also serves the blocking backend inside the worker itself (wxmedia.ngx without
-- a thread pool), so both paths return exactly the same values: the core's own, which the worker's
-- wxmedia.transport turns into nil, message, details.
local transport = require "wxmedia.transport"

local pairs, ipairs, type, tostring, pcall, error, select, rawget =
  pairs, ipairs, type, tostring, pcall, error, select, rawget
local sort, concat = table.sort, table.concat
local format = string.format
local max = math.max
local unpack = table.unpack or unpack -- luacheck: ignore 143

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

-- The deadline of one transfer of `bytes` bytes, in seconds: base + bytes / rate. The README gives
-- the formula; wxmedia.ngx gives base and rate (its options deadline_base and deadline_rate).
function _M.deadline(base, rate, bytes)
  return base + bytes / rate
end

-- Where each method takes its options table (the last argument).
local OPTS_AT = { upload = 4, get = 4, fetch = 3, request = 3 }

-- The transfer's watch, polled by the core about ten times a second through its progress function
-- (a function made here, in the VM that runs the transfer: none can cross from the request's VM).
-- It stops the transfer when the deadline is past, or when the request's ngx.on_abort handler set
-- the flag watch.key in the lua_shared_dict watch.dict: shared memory is the one thing a thread VM
-- and the worker both see. bytes: the larger of the file's size (upload) and what each direction
-- announced or moved so far (a download's size is known once its headers are in).
local function watcher(watch, now, size, inner)
  local w = { started = now() }
  local shared = rawget(_G, "ngx") and rawget(_G, "ngx").shared
  local flags = watch.dict and watch.key and shared and shared[watch.dict]
  local base, rate, key = watch.deadline_base, watch.deadline_rate, watch.key
  w.progress = function(dltotal, dlnow, ultotal, ulnow)
    -- the caller's own progress function: only the blocking backend (same VM) can pass one
    if inner and inner(dltotal, dlnow, ultotal, ulnow) == false then return false end
    if flags and flags:get(key) then
      w.stopped = "client"
      return false
    end
    local bytes = max(size, dltotal, dlnow, ultotal, ulnow)
    if now() - w.started > _M.deadline(base, rate, bytes) then
      w.stopped, w.bytes = "deadline", bytes
      return false
    end
    return true
  end
  return w
end

-- watched(session_opts, watch, method, ...) -> call()'s returns, plus a fifth value when the watch
-- stopped the call: "deadline" (kind timeout), "client" (kind client_closed) or "queued" (kind busy).
-- watch: { deadline_base =, deadline_rate = (both required), dict =, key = (the abort flag),
--          queued_at =, max_queue = (core.now() when the task was posted, and how long it may wait
--          in nginx's own queue of the thread pool before it runs) }.
function _M.watched(session_opts, watch, method, ...)
  if type(watch) ~= "table" or type(watch.deadline_base) ~= "number" or type(watch.deadline_rate) ~= "number"
      or watch.deadline_rate <= 0 then
    return false, "bad argument #2 to 'watched' (a watch with deadline_base and deadline_rate expected)"
  end
  local core = transport.core()
  local at = OPTS_AT[method]
  if not core or not at then return _M.call(session_opts, method, ...) end
  local now = core.now
  -- more tasks were posted than the pool has threads: this one waited in nginx's queue, outside the
  -- slot wait; it fails as fast as a task that found no slot would have
  if watch.queued_at and watch.max_queue then
    local waited = now() - watch.queued_at
    if waited > watch.max_queue then
      return true, nil, format("the task waited %.1f s in nginx's queue for a thread: the thread_pool has "
        .. "fewer threads than max_threads (make them equal)", waited), "busy", "queued"
    end
  end
  local n = select("#", ...)
  local args = { ... }
  if n < at then n = at end
  local given = args[at]
  -- not a table: the core says why
  if given ~= nil and type(given) ~= "table" then return _M.call(session_opts, method, ...) end
  local opts = {}
  for k, v in pairs(given or opts) do opts[k] = v end
  args[at] = opts
  local inner = type(opts.progress) == "function" and opts.progress or nil
  local w = watcher(watch, now, type(opts.size) == "number" and opts.size or 0, inner)
  opts.progress = w.progress
  local called, res, msg, kind = _M.call(session_opts, method, unpack(args, 1, n))
  if not (called and res == nil and kind == "aborted" and w.stopped) then
    return called, res, msg, kind
  end
  if w.stopped == "client" then
    return true, nil, "the HTTP client went away, so the transfer was stopped", "client_closed", "client"
  end
  return true, nil, format("the transfer took longer than its deadline of %.0f s (%g s + %.0f bytes at %.0f"
    .. " bytes/s)", _M.deadline(watch.deadline_base, watch.deadline_rate, w.bytes), watch.deadline_base,
    w.bytes, watch.deadline_rate), "timeout", "deadline"
end

return _M
