-- What moves the bytes of a wxmedia.ngx client: an object of a core session's shape (upload, get,
-- fetch, request) for wxmedia.transport, whose calls run
--   * in an nginx thread pool through ngx.run_worker_thread (wxmedia.ngx.thread in a thread VM),
--     never on the worker's event loop, where a libcurl call would stall every request; or
--   * without a thread pool, on the event loop itself: it works, but blocks the worker.
-- The session options are the transport's (checked by the client): set in backend.session_opts
-- once the client is made.
local abort = require "wxmedia.ngx.abort"
local phase = require "wxmedia.ngx.phase"
local transport = require "wxmedia.transport"

local ngx = ngx
-- (lua-nginx-module 0.10.21+; luacheck's ngx_lua std predates it)
local run_worker_thread = ngx.run_worker_thread -- luacheck: ignore 143
local error, ipairs, pairs, pcall, require, select, tostring, type =
  error, ipairs, pairs, pcall, require, select, tostring, type
local format = string.format
local max = math.max
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
-- `max_threads` transfers into the pool and queues the others on a semaphore: a burst waits. But a
-- wait for a slot is short (slot_wait): when every slot stays taken (slow transfers), the call fails
-- fast with kind busy, which no retry repeats and the HTTP answer says with 503 and Retry-After. One
-- semaphore per pool name and worker (module state is per worker).
local semaphores = {}

local semaphore

local function new_semaphore(n)
  semaphore = semaphore or require "ngx.semaphore"
  return assert(semaphore.new(n or 0))
end

local function slots(pool, size)
  local sema = semaphores[pool]
  if not sema then
    sema = new_semaphore(size)
    semaphores[pool] = sema
  end
  return sema
end

local CLIENT_GONE = "the HTTP client went away before the transfer started"

-- A task posted to the pool normally starts within microseconds; one that waited longer than
-- slot_wait (and at least this, for a machine under load) was queued by nginx for lack of a thread.
local QUEUE_GRACE = 1

-- The counter each way a watched call can be stopped adds to.
local STOPPED = { deadline = "deadlines", client = "aborts", queued = "queued" }

local warned_queue = false

-- One call in the thread pool, once a slot is held: returns the thread's values (called, res, msg,
-- kind, stopped), or raises what ngx.run_worker_thread raised.
local function run_in_thread(self, o, method, watch, args, n)
  local ok, called, res, msg, kind, stopped = run_worker_thread(o.pool, THREAD_MODULE, "watched",
    self.session_opts, watch, method, unpack(args, 1, n))
  if not ok then
    if called == "no available Lua vm" then
      return true, nil, format("no Lua VM free for thread pool %s: lua_worker_thread_vm_pool_size is below "
        .. "max_threads (%d)", o.pool, o.max_threads), "busy", "queued"
    end
    -- "thread pool ... not found", a request abort: not WeChat's answer
    return true, nil, "the worker thread failed: " .. tostring(called), "transfer"
  end
  return called, res, msg, kind, stopped
end

-- Who holds a thread slot: a timer, not the request. A request's coroutine can be killed while it
-- waits for the thread (ngx.exit from one of its light threads, or from its own ngx.on_abort
-- handler), and nothing after that wait then runs: a slot the request held would stay taken for the
-- life of the worker, and after max_threads such requests every transfer of the worker would fail
-- as busy. A timer (ngx.timer.at) does not die with a request: it runs the call in the thread pool
-- and frees the slot when the thread returns, request or no request, then hands the result to the
-- request, which waits for it on a semaphore.
--
-- That wait also keeps an old worker until the result is delivered. A worker told to shut down (a
-- graceful reload, `nginx -s quit`) closes its listening sockets and idle connections, then exits as
-- soon as no timer it must wait for is left in its event loop (nginx's ngx_event_no_timers_left:
-- only "cancelable" timers may remain). A request waiting on a semaphore has such a timer; one
-- waiting on ngx.run_worker_thread has none, since the thread's result comes back through the
-- thread pool's notification: the worker exited at once, found the client's connection still open
-- ("[alert] open socket #N left in connection") and dropped the answer, losing a media_id WeChat had
-- already given.
local RESULT_WAIT = 3600

-- The timer: job = { self, o, method, watch, args, n, slots, done }. It runs even when premature
-- (the worker is shutting down): the request waiting for it is what the worker waits for.
local function run_job(_, job)
  local results = { pcall(run_in_thread, job.self, job.o, job.method, job.watch, job.args, job.n) }
  local status, stopped = job.o.status, results[1] and results[6]
  status:incr("busy", -1)
  job.slots:post(1)
  if stopped then
    status:incr(STOPPED[stopped])
    if stopped == "queued" and not warned_queue then
      warned_queue = true
      ngx.log(ngx.WARN, "wxmedia: ", results[4])
    end
  end
  job.results = results
  job.done:post(1)
end

-- An upload body with a reader would reach the thread without it (plain() drops functions), and the
-- core would raise about a body it cannot read: say what happened instead.
local function refuse_reader(_, _, body)
  if type(body) == "table" and body.reader ~= nil then
    error("wxmedia.ngx: an upload's reader cannot cross into a worker thread (only plain data does): "
      .. "upload through the client, which reads it into memory first, or pass { data = bytes }", 3)
  end
end

-- A backend running each call in the thread pool o.pool, at most o.max_threads at once per worker.
-- o: { pool, max_threads, slot_wait, deadline_base, deadline_rate, status (wxmedia.ngx.status),
--      flags (a lua_shared_dict for the abort flags, or nil), flags_name (its name) }
function _M.threads(o)
  -- the client reads a file handle or a reader into memory before it calls us (transport.takes_readers)
  local backend = { plain_data_only = true }
  for _, method in ipairs(TRANSFERS) do
    backend[method] = function(self, ...)
      phase.check(method, 2)
      if method == "upload" then refuse_reader(...) end
      local request = abort.request()
      if request and request.closed then return nil, CLIENT_GONE, "client_closed" end
      local args, n = plain_args(...)
      local status = o.status
      local sema = slots(o.pool, o.max_threads)
      if sema:count() <= 0 then status:incr("waits") end
      local got_slot = sema:wait(o.slot_wait)
      if not got_slot then
        status:incr("refused")
        return nil, format("no worker thread of pool %s was free within %g s (%d per worker, all busy)",
          o.pool, o.slot_wait, o.max_threads), "busy"
      end
      if request and request.closed then
        sema:post(1)
        return nil, CLIENT_GONE, "client_closed"
      end
      local core = transport.core()
      local watch = { deadline_base = o.deadline_base, deadline_rate = o.deadline_rate,
        max_queue = max(o.slot_wait, QUEUE_GRACE), queued_at = core and core.now(),
        dict = request and o.flags_name, key = request and request.key }
      if request then abort.started(request, o.flags) end
      status:incr("busy")
      local job = { self = self, o = o, method = method, watch = watch, args = args, n = n, slots = sema,
        done = new_semaphore() }
      local timer, terr = ngx.timer.at(0, run_job, job)
      if not timer then
        status:incr("busy", -1)
        sema:post(1)
        if request then abort.finished(request) end
        return nil, "cannot start the transfer: " .. tostring(terr), "busy"
      end
      status:incr("transfers")
      if method == "request" then status:incr("token_fetches") end
      local waited, werr = job.done:wait(RESULT_WAIT)
      while not waited and werr == "timeout" do waited, werr = job.done:wait(RESULT_WAIT) end
      if not waited then error("wxmedia.ngx: cannot wait for the transfer: " .. tostring(werr), 0) end
      if request then abort.finished(request) end
      local done, called, res, msg, kind = unpack(job.results, 1, 5)
      if not done then error(called, 0) end
      return finish(called, res, msg, kind)
    end
  end
  return backend
end

-- Without a thread pool the core runs on the event loop: say it once per worker (module state is
-- per worker).
local warned = false

-- o: { deadline_base, deadline_rate, status }: the deadline applies here too (the flags cannot: the
-- event loop, which would run ngx.on_abort, waits for the call).
function _M.blocking(o)
  local backend = {}
  local watch = { deadline_base = o.deadline_base, deadline_rate = o.deadline_rate }
  for _, method in ipairs(TRANSFERS) do
    backend[method] = function(self, ...)
      phase.check(method, 2)
      if not warned then
        warned = true
        ngx.log(ngx.WARN, "wxmedia: no thread_pool given, transfers are blocking this nginx worker's",
          " event loop; add `thread_pool NAME threads=N;` to nginx.conf and thread_pool = \"NAME\"")
      end
      o.status:incr("transfers")
      if method == "request" then o.status:incr("token_fetches") end
      local called, res, msg, kind, stopped = require(THREAD_MODULE).watched(self.session_opts, watch,
        method, ...)
      if stopped then o.status:incr(STOPPED[stopped]) end
      return finish(called, res, msg, kind)
    end
  end
  return backend
end

return _M
