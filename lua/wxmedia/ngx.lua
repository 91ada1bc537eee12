-- wxmedia inside OpenResty / nginx's Lua module: the same client as `wxmedia.new`, wired so that
--   * every transfer (token, upload, get, video fetch) runs in an nginx thread pool through
--     ngx.run_worker_thread, never on the worker's event loop (a libcurl call there would stall
--     every request the worker serves);
--   * the access_token lives in a lua_shared_dict, so all workers use one token, and a single-flight
--     lock in a dict makes one worker fetch it while the others wait on the lock, not on WeChat;
--   * waits between retries use ngx.sleep, the clock is ngx.now.
-- Plus client:serve(media_id) to answer a request with a media file.
--
-- Only this module touches `ngx`; `require "wxmedia"` stays plain Lua.
local wxmedia = require "wxmedia"
local cjson = require "cjson.safe"

local ngx = ngx
local type, pairs, tostring, error, pcall, setmetatable = type, pairs, tostring, error, pcall, setmetatable
local select, next, ipairs = select, next, ipairs
local min, random = math.min, math.random
local open, remove = io.open, os.remove
local running = coroutine.running
local format = string.format

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local THREAD_MODULE = "wxmedia.thread"
local TRANSFERS = { "upload", "get", "fetch", "request" }

-- The options of `new` that configure the C core's session (the ones wxmedia.client gives it);
-- they cross into the worker thread.
local SESSION_KEYS = { "base_url", "timeout", "connect_timeout", "low_speed_limit", "low_speed_time",
  "cainfo", "capath", "proxy", "user_agent", "verify", "fsync" }
local DEFAULT_BASE_URL = "https://api.weixin.qq.com"

-- ngx.run_worker_thread and ngx.sleep need a phase that can yield: the documented three, and timers.
local YIELDABLE = { rewrite = true, access = true, content = true, timer = true }

local function check_phase(what, level)
  local phase = ngx.get_phase()
  if YIELDABLE[phase] then return end
  local hint = ""
  if phase == "init" or phase == "init_worker" then
    hint = " (create the client there, but run transfers from a request or from ngx.timer.at(0, ...))"
  end
  error(format("wxmedia: %s cannot run in the %s phase: transfers need rewrite, access, content or a timer%s",
    what, tostring(phase), hint), level + 1)
end

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

local unpack = table.unpack or unpack -- luacheck: ignore 143

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

local function thread_transport(pool, session_opts, max_threads)
  local transport = {}
  for _, method in ipairs(TRANSFERS) do
    transport[method] = function(_, ...)
      check_phase(method, 2)
      local args, n = plain_args(...)
      local sema = slots(pool, max_threads)
      local got_slot, werr = sema:wait(SLOT_WAIT)
      if not got_slot then
        return nil, format("worker thread: no free slot in thread pool %s for %d s (%s)", pool, SLOT_WAIT,
          tostring(werr)), "timeout"
      end
      local pok, ok, called, res, msg, kind = pcall(ngx.run_worker_thread, pool, THREAD_MODULE, "call",
        session_opts, method, unpack(args, 1, n))
      sema:post(1)
      if not pok then error(ok, 0) end
      if not ok then
        -- "thread pool ... not found", a request abort: not WeChat's answer
        return nil, "worker thread failed: " .. tostring(called), "transfer"
      end
      return finish(called, res, msg, kind)
    end
  end
  return transport
end

-- Without a thread pool the core runs on the event loop. It works, but every request of this worker
-- waits meanwhile, so say it once per worker (module state is per worker).
local warned = false

local function blocking_transport(session_opts)
  local transport = {}
  for _, method in ipairs(TRANSFERS) do
    transport[method] = function(_, ...)
      check_phase(method, 2)
      if not warned then
        warned = true
        ngx.log(ngx.WARN, "wxmedia: no thread_pool given, transfers are blocking this nginx worker's",
          " event loop; add `thread_pool NAME threads=N;` to nginx.conf and thread_pool = \"NAME\"")
      end
      return finish(require(THREAD_MODULE).call(session_opts, method, ...))
    end
  end
  return transport
end

-- Locks held by the coroutine (request or light thread) that took them, so that a call that raises
-- still releases them (the store's own users release them on every normal path).
local held = setmetatable({}, { __mode = "k" })

local Lock = {}
Lock.__index = Lock

function Lock:unlock()
  if self.released then return true end
  self.released = true
  -- delete only our own entry: if ours expired, another worker may hold the lock now
  if self.dict:get(self.key) == self.owner then self.dict:delete(self.key) end
  local mine = held[self.co]
  if mine then mine[self] = nil end
  return true
end

local function release_held(co)
  local mine = held[co]
  if not mine then return end
  for lock in pairs(mine) do lock:unlock() end
  if next(mine) == nil then held[co] = nil end
end

-- A token store over lua_shared_dicts: store:get/set/delete/lock as wxmedia's token code expects.
local DictStore = {}
DictStore.__index = DictStore

function DictStore:get(key)
  local v = self.dict:get(key)
  if type(v) ~= "string" or v == "" then return nil end
  return v
end

function DictStore:set(key, value, ttl)
  if ttl ~= nil and ttl <= 0 then
    self.dict:delete(key)
    return true
  end
  local ok, err = self.dict:set(key, value, ttl or 0)
  if not ok then return nil, "shared dict: " .. tostring(err) end
  return true
end

function DictStore:delete(key)
  self.dict:delete(key)
  return true
end

local lock_seq = 0

-- Single flight across workers: dict:add succeeds for one caller only; the entry expires after
-- lock_exptime so a holder that died (worker crash, killed request) cannot block the others for good.
-- Waiters poll with ngx.sleep, which yields to the event loop.
function DictStore:lock(key, timeout)
  check_phase("a token lock", 2)
  lock_seq = lock_seq + 1
  local owner = ngx.worker.pid() .. ":" .. lock_seq .. ":" .. random(1e9)
  local name = "lock:" .. key
  local deadline = ngx.now() + (timeout or self.lock_timeout)
  local step = 0.002
  while true do
    local ok, err = self.locks:add(name, owner, self.lock_exptime)
    if ok then
      local co = running()
      local lock = setmetatable({ dict = self.locks, key = name, owner = owner, co = co }, Lock)
      held[co] = held[co] or {}
      held[co][lock] = true
      return lock
    end
    if err ~= "exists" then return nil, "lock failed: " .. tostring(err) end
    if ngx.now() >= deadline then return nil, "timeout" end
    ngx.sleep(step)
    step = min(step * 2, 0.05)
  end
end

local function shared_dict(value, what, level)
  if type(value) == "string" then
    local dict = ngx.shared[value]
    if not dict then error(format("bad %s (no lua_shared_dict named '%s')", what, value), level + 1) end
    return dict
  end
  if type(value) == "table" and type(value.add) == "function" then return value end
  error(format("bad %s (a lua_shared_dict name expected, got %s)", what, type(value)), level + 1)
end

-- syntax: store = wxmedia.ngx.shared_store(shared_dict [, { lock_dict =, lock_exptime =, lock_timeout = }])
-- The token store that `new` builds from its shared_dict option, for code that wants to share it.
function _M.shared_store(dict, opts)
  opts = opts or {}
  local tokens = shared_dict(dict, "shared_dict", 3)
  return setmetatable({
    dict = tokens,
    locks = opts.lock_dict ~= nil and shared_dict(opts.lock_dict, "lock_dict", 3) or tokens,
    lock_exptime = opts.lock_exptime or 30,
    lock_timeout = opts.lock_timeout or 10,
  }, DictStore)
end

-- wxmedia.ngx.new(opts): wxmedia.new's options, plus
--   thread_pool   name of an nginx `thread_pool` (transfers run there; without it they block)
--   max_threads   transfers of one worker in the pool at once, the others wait (default 10, nginx's
--                 default lua_worker_thread_vm_pool_size; never more than that directive)
--   shared_dict   lua_shared_dict (name or ngx.shared.X) holding the tokens, shared by all workers
--   lock_dict     lua_shared_dict for the single-flight lock (default: shared_dict)
--   lock_exptime  seconds a lock lives if its holder never releases it (default 30)
--   lock_timeout  seconds a waiter waits for the lock (wxmedia's option; the store's default 10)
--   tmpdir        folder for serve()'s temp files (default /tmp)
-- returns the client or nil, message, details.
function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  if opts.thread_pool ~= nil and type(opts.thread_pool) ~= "string" then
    error("bad thread_pool (string expected, got " .. type(opts.thread_pool) .. ")", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  -- lock_timeout stays: wxmedia's token code passes it to store:lock
  o.thread_pool, o.max_threads, o.shared_dict, o.lock_dict, o.lock_exptime, o.tmpdir =
    nil, nil, nil, nil, nil, nil

  local session_opts = {}
  for _, k in ipairs(SESSION_KEYS) do session_opts[k] = plain(opts[k], 0) end
  session_opts.base_url = session_opts.base_url or DEFAULT_BASE_URL

  if opts.max_threads ~= nil and (type(opts.max_threads) ~= "number" or opts.max_threads < 1) then
    error("bad max_threads (a number >= 1 expected)", 2)
  end
  if o.transport == nil then
    if opts.thread_pool then
      o.transport = thread_transport(opts.thread_pool, session_opts, opts.max_threads or 10)
    else
      o.transport = blocking_transport(session_opts)
    end
  end
  if opts.shared_dict ~= nil then
    o.token_store = _M.shared_store(opts.shared_dict, opts)
  end
  o.sleep = o.sleep or ngx.sleep
  o.now = o.now or ngx.now

  local client, err, details = wxmedia.new(o)
  if not client then return nil, err, details end
  return setmetatable({ client = client, tmpdir = opts.tmpdir or "/tmp" }, mt)
end

-- Runs one method of the wrapped client; whatever happens, the calling coroutine ends up holding
-- no lock.
local function delegate(self, method, ...)
  local co = running()
  local ok, res, msg, details = pcall(self.client[method], self.client, ...)
  release_held(co)
  if not ok then error(res, 0) end
  return res, msg, details
end

-- client:upload(type, path [, opts]) -> { type =, media_id =, created_at = } | nil, message, details
function _M.upload(self, ...)
  check_phase("upload", 2)
  return delegate(self, "upload", ...)
end

-- client:get(media_id, path [, opts]) -> { path =, size =, content_type =, filename = }
--   | nil, message, details
function _M.get(self, ...)
  check_phase("get", 2)
  return delegate(self, "get", ...)
end

-- client:token([force]) -> access_token | nil, message, details (for callers of other WeChat APIs)
function _M.token(self, ...)
  check_phase("token", 2)
  return delegate(self, "token", ...)
end

-- client:media_id(type, path [, opts]) -> upload's result + reused | nil, message, details
-- (one upload per content for all workers when the records live in a shared dict; hashing a file
-- the first time runs on the event loop, about 5 ms per MB)
function _M.media_id(self, ...)
  check_phase("media_id", 2)
  return delegate(self, "media_id", ...)
end

-- client:forget(media_id) -> true when a record was dropped (touches the store only)
function _M.forget(self, ...)
  return delegate(self, "forget", ...)
end

local serve_seq = 0

local function temp_path(dir)
  serve_seq = serve_seq + 1
  return format("%s/wxmedia-serve-%d-%d-%d", dir, ngx.worker.pid(), serve_seq, random(1e9))
end

-- WeChat's answer becomes an HTTP error with a small JSON body, never a file: 404 for a media_id
-- WeChat does not know (40007), 400 for a request that cannot be valid, 502 for anything upstream.
local function status_for(details)
  details = details or {}
  if details.errcode == 40007 then return 404 end
  if details.errcode == 41006 or details.kind == "input" then return 400 end
  if details.kind == "io" then return 500 end
  return 502
end

local function send_error(status, message, details)
  details = details or {}
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Disposition"] = nil
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(cjson.encode({ error = message, kind = details.kind, errcode = details.errcode }))
end

local CHUNK = 65536

-- Streams the downloaded file. Reading a file that was just written comes from the page cache,
-- so the reads are short; ngx.flush(true) yields until each chunk is sent, so memory stays at one
-- chunk per request whatever the file size.
local function send_file(got, opts)
  local f, err = open(got.path, "rb")
  if not f then return nil, "cannot open the downloaded file: " .. tostring(err), { kind = "io" } end
  local size = f:seek("end")
  f:seek("set")
  ngx.status = 200
  ngx.header["Content-Type"] = got.content_type or "application/octet-stream"
  ngx.header["Content-Length"] = size
  if opts.attachment then
    local name = (opts.filename or got.filename or "media"):gsub("[^%w%._%-]", "_")
    ngx.header["Content-Disposition"] = 'attachment; filename="' .. name .. '"'
  end
  if ngx.req.get_method() == "HEAD" then
    f:close()
    return ngx.send_headers()
  end
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    local ok, perr = ngx.print(chunk)
    if ok then ok, perr = ngx.flush(true) end
    if not ok then
      f:close()
      return nil, "sending the file failed: " .. tostring(perr), { kind = "aborted" }
    end
  end
  f:close()
  return true
end

-- client:serve(media_id [, opts]) answers the current request (content phase) with the media file:
-- downloads it in the worker thread to a temp file, sends it with its Content-Type and
-- Content-Length, removes the temp file. On failure it answers a JSON error (404/400/502) itself.
-- opts: those of get, plus attachment = true (Content-Disposition), filename, tmpdir.
-- returns true, or nil, message, details (already answered; for the caller's log).
function _M.serve(self, media_id, opts)
  if type(media_id) ~= "string" then
    error("bad argument #1 to 'serve' (string expected, got " .. type(media_id) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'serve' (table expected, got " .. type(opts) .. ")", 2)
  end
  if ngx.get_phase() ~= "content" then
    error("wxmedia: serve answers the request, so it runs in the content phase, not "
      .. tostring(ngx.get_phase()), 2)
  end
  opts = opts or {}
  local get_opts = {}
  for k, v in pairs(opts) do get_opts[k] = v end
  get_opts.attachment, get_opts.filename, get_opts.tmpdir = nil, nil, nil

  local path = temp_path(opts.tmpdir or self.tmpdir)
  local ok, got, msg, details = pcall(delegate, self, "get", media_id, path, get_opts)
  local sent, serr, sdetails
  if not ok then
    remove(path)
    error(got, 0)
  end
  if got then
    ok, sent, serr, sdetails = pcall(send_file, got, opts)
  end
  remove(path)
  if not ok then error(sent, 0) end
  if not got then
    send_error(status_for(details), msg, details)
    return nil, msg, details
  end
  if not sent then
    if not ngx.headers_sent then send_error(status_for(sdetails), serr, sdetails) end
    return nil, serr, sdetails
  end
  return true
end

return _M
