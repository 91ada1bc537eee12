-- What moves the bytes of a wxmedia.ngx client: an object of a core session's shape (upload, get,
-- fetch, request) for wxmedia.transport, whose calls run
--   * in an nginx thread pool through ngx.run_worker_thread (wxmedia.ngx.thread in a thread VM),
--     never on the worker's event loop, where a libcurl call would stall every request; or
--   * without a thread pool, on the event loop itself: it works, but blocks the worker.
-- The session options are the transport's (checked by the client): set in backend.session_opts
-- once the client is made.
local phase = require "wxmedia.ngx.phase"

local ngx = ngx
local error, ipairs, pairs, pcall, require, select, tostring, type =
  error, ipairs, pairs, pcall, require, select, tostring, type
local format = string.format
local unpack = table.unpack or unpack -- luacheck: ignore 143

local _M = {}

local THREAD_MODULE = "wxmedia.ngx.thread"
local TRANSFERS = { "upload", "get", "fetch", "request" }

-- Only plain data crosses into a thread VM (ngx_http_lua_xcopy refuses functions and userdata):
-- options such as a progress callback are dropped, since they could not be called there anyway.
local function plain(v, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or t == "nil" then return v end
  if t ~= "table" or depth > 8 then return nil end
  local copy = {}
  for k, x in pairs(v) do
    if type(k) == "string" or type(k) == "number" then copy[k] = plain(x, depth + 1) end
  end
  return copy
end

local function plain_args(...)
  local n = select("#", ...)
  local args = { ... }
  for i = 1, n do args[i] = plain(args[i], 0) end
  return args, n
end

-- The thread module reports a misuse as (false, message): raise it here, in the request, as the
-- core would have raised it in plain Lua.
local function finish(called, res, msg, kind)
  if not called then error(res, 0) end
  return res, msg, kind
end

-- nginx gives each worker a pool of thread VMs (lua_worker_thread_vm_pool_size, 10 by default); a call
-- made when all are taken fails at once with "no available Lua vm". So each worker lets at most
-- `max_threads` transfers into the pool and queues the others on a semaphore: a burst waits, it does
-- not fail. One semaphore per pool name and worker (module state is per worker).
local semaphores = {}
local SLOT_WAIT = 60

local function slots(pool, size)
  local sema = semaphores[pool]
  if not sema then
    sema = assert(require("ngx.semaphore").new(size))
    semaphores[pool] = sema
  end
  return sema
end

-- Why a graceful reload or `nginx -s quit` dropped the requests waiting on a worker thread:
-- a worker told to shut down closes its listening sockets and idle connections, then exits as soon
-- as no timer it must wait for is left in its event loop (nginx's ngx_event_no_timers_left: only
-- "cancelable" timers may remain). A request sleeping (ngx.sleep) or waiting on a cosocket or a
-- semaphore has such a timer; a request waiting on ngx.run_worker_thread has none, since the
-- thread's result comes back through the thread pool's notification, not through a timer. So the
-- worker exited at once: its exit handlers wait for the running tasks, then it finds the client's
-- connection still open ("[alert] open socket #N left in connection", "aborting") and exits without
-- an answer, losing a media_id WeChat had already given.
-- The fix uses the module's own design: while a call is in a worker thread, a light thread of the
-- same request sleeps (one timer the exit path waits for); it is killed as soon as the call returns,
-- so the old worker answers the request, then exits. Nothing wakes up meanwhile (the sleep is long).
local KEEPER_SLEEP = 3600

local function keep_worker_alive()
  while true do ngx.sleep(KEEPER_SLEEP) end
end

-- A backend running each call in the thread pool `pool`, at most max_threads at once per worker.
function _M.threads(pool, max_threads)
  local backend = {}
  for _, method in ipairs(TRANSFERS) do
    backend[method] = function(self, ...)
      phase.check(method, 2)
      local args, n = plain_args(...)
      local sema = slots(pool, max_threads)
      local got_slot, werr = sema:wait(SLOT_WAIT)
      if not got_slot then
        return nil, format("no free slot in thread pool %s for %d s (%s)", pool, SLOT_WAIT, tostring(werr)),
          "timeout"
      end
      local keeper = ngx.thread.spawn(keep_worker_alive)
      local pok, ok, called, res, msg, kind = pcall(ngx.run_worker_thread, pool, THREAD_MODULE, "call",
        self.session_opts, method, unpack(args, 1, n))
      ngx.thread.kill(keeper)
      sema:post(1)
      if not pok then error(ok, 0) end
      if not ok then
        -- "thread pool ... not found", a request abort: not WeChat's answer
        return nil, "the worker thread failed: " .. tostring(called), "transfer"
      end
      return finish(called, res, msg, kind)
    end
  end
  return backend
end

-- Without a thread pool the core runs on the event loop: say it once per worker (module state is
-- per worker).
local warned = false

function _M.blocking()
  local backend = {}
  for _, method in ipairs(TRANSFERS) do
    backend[method] = function(self, ...)
      phase.check(method, 2)
      if not warned then
        warned = true
        ngx.log(ngx.WARN, "wxmedia: no thread_pool given, transfers are blocking this nginx worker's",
          " event loop; add `thread_pool NAME threads=N;` to nginx.conf and thread_pool = \"NAME\"")
      end
      return finish(require(THREAD_MODULE).call(self.session_opts, method, ...))
    end
  end
  return backend
end

return _M
