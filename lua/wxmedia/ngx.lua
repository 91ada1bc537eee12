-- wxmedia inside OpenResty / nginx's Lua module: the same client as `wxmedia.new`, wired so that
--   * every transfer (token, upload, get, video fetch) runs in an nginx thread pool
--     (wxmedia/ngx/backend.lua, wxmedia/ngx/thread.lua), never on the worker's event loop;
--   * the access_token and media_id records live in a lua_shared_dict (wxmedia/store/shared_dict.lua),
--     so all workers use one token, and a single-flight lock in a dict makes one worker fetch it
--     while the others wait on the lock, not on WeChat;
--   * waits between retries use ngx.sleep, the clock is ngx.now;
--   * the thread pool is protected: at most max_threads transfers per worker, a short wait for a slot
--     that fails as busy (HTTP 503, Retry-After), a deadline per transfer scaled to its size, and the
--     transfers of a request whose client went away stopped (wxmedia/ngx/abort.lua);
--   * a graceful reload or quit waits for the transfers in flight (wxmedia/ngx/backend.lua says why
--     it did not).
-- Plus client:serve(media_id) to answer a request with a media file (wxmedia/ngx/serve.lua),
-- client:upload_request(type) to upload the request's body and answer with JSON
-- (wxmedia/ngx/upload_request.lua), wxmedia.ngx.callback{} for an account's callback URL
-- (wxmedia/ngx/callback.lua),
-- client:send_error(err, details) to answer a failure the same way (wxmedia/ngx/reply.lua), and
-- client:status() for operators (wxmedia/ngx/status.lua).
--
-- Only this module and wxmedia/ngx/ touch `ngx`; `require "wxmedia"` stays plain Lua.
local abort = require "wxmedia.ngx.abort"
local backend_mod = require "wxmedia.ngx.backend"
local callback = require "wxmedia.ngx.callback"
local phase = require "wxmedia.ngx.phase"
local reply = require "wxmedia.ngx.reply"
local serve = require "wxmedia.ngx.serve"
local status_mod = require "wxmedia.ngx.status"
local upload_request = require "wxmedia.ngx.upload_request"
local store = require "wxmedia.store"
local client_mod = require "wxmedia.client"

local ngx = ngx
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type
local ceil, floor, max, format = math.ceil, math.floor, math.max, string.format

local _M = {}
local mt = { __index = _M }

-- The options this adapter takes beside wxmedia.new's, and their types.
local OPTIONS = {
  thread_pool = "string", max_threads = "number", vm_pool_size = "number", slot_wait = "number",
  deadline_base = "number", deadline_rate = "number", shared_dict = "any", lock_dict = "any",
  status_dict = "any", lock_exptime = "number", tmpdir = "string",
}

-- The defaults that protect the thread pool (the README says why each is what it is).
local DEFAULTS = {
  -- nginx's default lua_worker_thread_vm_pool_size: more transfers than this at once in one worker
  -- fail with "no available Lua vm". nginx tells Lua neither this nor a thread_pool's threads=N,
  -- so max_threads defaults to it, and cannot go above it unless vm_pool_size says the directive
  -- was raised.
  vm_pool_size = 10,
  -- seconds a transfer waits for a thread slot before it fails as busy (HTTP 503)
  slot_wait = 2,
  -- a transfer's deadline: deadline_base seconds + its bytes / deadline_rate (bytes per second)
  deadline_base = 30,
  deadline_rate = 65536,
}

-- The max_threads of each thread pool, as the first client using it set it (module state: the
-- same in the master, where clients are made, and in every worker it forks).
local pool_threads = {}

local function number_option(opts, name, min, integer)
  local v = opts[name]
  if v == nil then return DEFAULTS[name] end
  if type(v) ~= "number" or v ~= v or v < min or (integer and v ~= floor(v)) then
    error(format("bad option '%s' to 'new' (a%s number >= %g expected)", name, integer and " whole" or "",
      min), 3)
  end
  return v
end

-- The thread settings of opts: max_threads, vm_pool_size, slot_wait, deadline_base, deadline_rate.
local function thread_settings(opts)
  local o = {
    vm_pool_size = number_option(opts, "vm_pool_size", 1, true),
    slot_wait = number_option(opts, "slot_wait", 0),
    deadline_base = number_option(opts, "deadline_base", 0),
    deadline_rate = number_option(opts, "deadline_rate", 1),
  }
  if opts.max_threads ~= nil then
    o.max_threads = number_option(opts, "max_threads", 1, true)
  else
    o.max_threads = o.vm_pool_size
  end
  if o.max_threads > o.vm_pool_size then
    error(format("bad option 'max_threads' to 'new' (%d is above lua_worker_thread_vm_pool_size, %d%s: "
      .. "the transfers above it would fail with \"no available Lua vm\"; raise the directive and give "
      .. "vm_pool_size the same number)", o.max_threads, o.vm_pool_size,
      opts.vm_pool_size and "" or " by default"), 3)
  end
  local pool = opts.thread_pool
  if pool and pool_threads[pool] and pool_threads[pool] ~= o.max_threads then
    error(format("bad option 'max_threads' to 'new' (thread pool %s has max_threads = %d from another "
      .. "client; clients of one pool share its slots)", pool, pool_threads[pool]), 3)
  end
  return o
end

-- A lua_shared_dict given by name or as ngx.shared.NAME: the dict and its name (a thread VM finds
-- the dict by its name), or nil.
local function dict_and_name(option, value)
  if value == nil then return nil end
  if type(value) == "string" then
    local dict = ngx.shared[value]
    if not dict then
      error(format("bad option '%s' to 'new' (no lua_shared_dict named '%s')", option, value), 4)
    end
    return dict, value
  end
  for name, dict in pairs(ngx.shared) do
    if dict == value then return dict, name end
  end
  error(format("bad option '%s' to 'new' (a lua_shared_dict name or ngx.shared.NAME expected)", option), 4)
end

-- The retries counter sees every retry: the client's on_retry, and a call's own (counting()).
local function counting_on_retry(status, on_retry)
  return function(...)
    status:incr("retries")
    if on_retry then return on_retry(...) end
  end
end

-- syntax: store = wxmedia.ngx.shared_store(shared_dict [, { lock_dict =, lock_exptime =, lock_timeout = }])
-- The store that `new` builds from its shared_dict option, for code that wants to share it.
function _M.shared_store(dict, opts)
  return store.shared_dict(dict, opts)
end

-- syntax: cb = wxmedia.ngx.callback{ token =, client =, on_message =, dedup_dict = [, budget = 4] }
-- An account's callback URL: cb:handle() in its location answers WeChat within the budget, with the
-- passive reply when its media_id is ready by then, else "success" and a customer-service message
-- later (see wxmedia/ngx/callback.lua).
_M.callback = callback.new

-- syntax: wxmedia.ngx.client_aborted()
-- From a request's own ngx.on_abort handler: stops the request's transfers (see wxmedia/ngx/abort.lua).
_M.client_aborted = abort.client_aborted

-- wxmedia.ngx.new(opts): wxmedia.new's options, plus (see the README) thread_pool, max_threads,
--   vm_pool_size, slot_wait, deadline_base, deadline_rate, shared_dict, lock_dict, status_dict,
--   lock_exptime, tmpdir.
-- returns the client or nil, message, details.
function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local settings = thread_settings(opts)
  -- the counters and the abort flags: small keys that tokens and records must never evict
  local dict_option = opts.status_dict ~= nil and "status_dict" or opts.lock_dict ~= nil and "lock_dict"
    or "shared_dict"
  local flags, flags_name = dict_and_name(dict_option, opts[dict_option])
  settings.status = status_mod.new(flags, settings.max_threads * ngx.worker.count())
  settings.flags, settings.flags_name, settings.pool = flags, flags_name, opts.thread_pool
  local o = {}
  for k, v in pairs(opts) do
    if OPTIONS[k] == nil then o[k] = v end     -- lock_timeout stays: the token code passes it to store:lock
  end
  local backend
  if o.transport == nil then
    if opts.thread_pool then
      backend = backend_mod.threads(settings)
    else
      backend = backend_mod.blocking(settings)
    end
    o.transport = backend
  end
  if opts.shared_dict ~= nil then
    o.token_store = store.shared_dict(opts.shared_dict, opts)
  end
  o.sleep = o.sleep or ngx.sleep
  o.now = o.now or ngx.now
  o.on_warning = o.on_warning or function(message) ngx.log(ngx.WARN, "wxmedia: ", message) end
  -- (an on_retry that is not a function is left for wxmedia.new to refuse in its own words)
  if o.on_retry == nil or type(o.on_retry) == "function" then
    o.on_retry = counting_on_retry(settings.status, o.on_retry)
  end

  local client, err, details = client_mod.new(o, OPTIONS)
  if not client then return nil, err, details end
  -- the backend sends the client's session options (checked by its transport) to the threads
  if backend then backend.session_opts = client.transport:options() end
  if opts.thread_pool then pool_threads[opts.thread_pool] = settings.max_threads end
  return setmetatable({ client = client, tmpdir = opts.tmpdir or "/tmp", status_counters = settings.status,
    retry_after = max(1, ceil(settings.slot_wait)) }, mt)
end

-- A call's own on_retry, wrapped so the retries counter sees it (opts copied, never changed).
local function counting(self, opts)
  if type(opts) ~= "table" or type(opts.on_retry) ~= "function" then return opts end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  copy.on_retry = counting_on_retry(self.status_counters, opts.on_retry)
  return copy
end

-- A busy failure says when to come back: details.retry_after (seconds), for Retry-After.
local function answered(self, res, err, details)
  if res == nil and type(details) == "table" and details.kind == "busy" then
    details.retry_after = self.retry_after
  end
  return res, err, details
end

-- The client's methods, in a phase that can yield. opts is the third argument of every method
-- that takes one.
local function method(name)
  return function(self, a, b, opts)
    phase.check(name, 2)
    local c = self.client
    return answered(self, c[name](c, a, b, counting(self, opts)))
  end
end

-- client:upload(type, path [, opts]) -> { type =, media_id =, created_at = } | nil, message, details
_M.upload = method("upload")
-- client:get(media_id, path [, opts]) -> { path =, size =, content_type =, filename = }
--   | nil, message, details
_M.get = method("get")
-- client:token([force]) -> access_token | nil, message, details (for callers of other WeChat APIs)
_M.token = method("token")
-- client:media_id(type, path [, opts]) -> upload's result + reused | nil, message, details
-- (one upload per content for all workers when the records live in a shared dict; hashing a file
-- the first time runs on the event loop, about 5 ms per MB)
_M.media_id = method("media_id")

-- client:send(openid, message [, opts]) -> true | nil, message, details (a customer-service message)
_M.send = method("send")

-- client:check(type, path [, opts]) and client:forget(media_id) touch no network.
function _M.check(self, ...) return self.client:check(...) end
function _M.forget(self, ...) return self.client:forget(...) end

-- syntax: text = client:status([format])
-- The counters (wxmedia/ngx/status.lua), as text like stub_status (format "text", the default),
-- as JSON ("json") or as a table ("table"). Any phase: it reads a shared dict.
local FORMATS = { text = true, json = true, table = true }

function _M.status(self, fmt)
  if fmt ~= nil and not FORMATS[fmt] then
    error("bad argument #1 to 'status' (\"text\", \"json\" or \"table\" expected, got " .. tostring(fmt)
      .. ")", 2)
  end
  return self.status_counters:report(fmt)
end

-- syntax: client:send_error(err, details)
-- Answers the current request with a failure of upload, get or media_id as serve does: JSON
-- {"error":…,"kind":…,"errcode":…} with 400, 404, 500, 502, or 503 and Retry-After (kind busy).
function _M.send_error(_, err, details)
  if ngx.headers_sent then
    error("wxmedia: send_error answers the request, whose headers were already sent", 2)
  end
  reply.send_error(err, details)
end

-- The current request answers with JSON: it must be the content phase, before any header is sent.
local function answering(fname)
  if ngx.get_phase() ~= "content" then
    error("wxmedia: " .. fname .. " answers the request, so it runs in the content phase, not "
      .. tostring(ngx.get_phase()), 3)
  end
  if ngx.headers_sent then
    error("wxmedia: " .. fname .. " answers the request, whose headers were already sent", 3)
  end
end

-- syntax: res, err, details = client:upload_request(type [, opts])   (content phase)
-- Uploads the request's body (the file itself, as curl --data-binary sends it) and answers the
-- request: 200 with upload's result as JSON, 415 for a multipart form, else as send_error does.
function _M.upload_request(self, mtype, opts)
  if type(mtype) ~= "string" then
    error("bad argument #1 to 'upload_request' (string expected, got " .. type(mtype) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'upload_request' (table expected, got " .. type(opts) .. ")", 2)
  end
  answering("upload_request")
  return upload_request.upload_request(self, mtype, opts)
end

-- client:serve(media_id [, opts]) answers the current request (content phase) with the media file.
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
  return serve.serve(self, media_id, opts, self.tmpdir)
end

return _M
