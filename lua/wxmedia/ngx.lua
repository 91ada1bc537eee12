-- wxmedia inside OpenResty / nginx's Lua module: the same client as `wxmedia.new`, wired so that
--   * every transfer (token, upload, get, video fetch) runs in an nginx thread pool
--     (wxmedia/ngx/backend.lua, wxmedia/ngx/thread.lua), never on the worker's event loop;
--   * the access_token and media_id records live in a lua_shared_dict (wxmedia/store/shared_dict.lua),
--     so all workers use one token, and a single-flight lock in a dict makes one worker fetch it
--     while the others wait on the lock, not on WeChat;
--   * waits between retries use ngx.sleep, the clock is ngx.now.
-- Plus client:serve(media_id) to answer a request with a media file (wxmedia/ngx/serve.lua).
--
-- Only this module and wxmedia/ngx/ touch `ngx`; `require "wxmedia"` stays plain Lua.
local backend_mod = require "wxmedia.ngx.backend"
local phase = require "wxmedia.ngx.phase"
local serve = require "wxmedia.ngx.serve"
local store = require "wxmedia.store"
local client_mod = require "wxmedia.client"

local ngx = ngx
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type

local _M = {}
local mt = { __index = _M }

-- The options this adapter takes beside wxmedia.new's, and their types.
local OPTIONS = {
  thread_pool = "string", max_threads = "number", shared_dict = "any", lock_dict = "any",
  lock_exptime = "number", tmpdir = "string",
}

-- nginx's default lua_worker_thread_vm_pool_size: more transfers than this at once in one worker
-- fail with "no available Lua vm".
local DEFAULT_MAX_THREADS = 10

-- syntax: store = wxmedia.ngx.shared_store(shared_dict [, { lock_dict =, lock_exptime =, lock_timeout = }])
-- The store that `new` builds from its shared_dict option, for code that wants to share it.
function _M.shared_store(dict, opts)
  return store.shared_dict(dict, opts)
end

-- wxmedia.ngx.new(opts): wxmedia.new's options, plus (see the README)
--   thread_pool, max_threads, shared_dict, lock_dict, lock_exptime, tmpdir.
-- returns the client or nil, message, details.
function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  if opts.max_threads ~= nil and (type(opts.max_threads) ~= "number" or opts.max_threads < 1) then
    error("bad option 'max_threads' to 'new' (a number >= 1 expected)", 2)
  end
  local o = {}
  for k, v in pairs(opts) do
    if OPTIONS[k] == nil then o[k] = v end     -- lock_timeout stays: the token code passes it to store:lock
  end
  local backend
  if o.transport == nil then
    if opts.thread_pool then
      backend = backend_mod.threads(opts.thread_pool, opts.max_threads or DEFAULT_MAX_THREADS)
    else
      backend = backend_mod.blocking()
    end
    o.transport = backend
  end
  if opts.shared_dict ~= nil then
    o.token_store = store.shared_dict(opts.shared_dict, opts)
  end
  o.sleep = o.sleep or ngx.sleep
  o.now = o.now or ngx.now
  o.on_warning = o.on_warning or function(message) ngx.log(ngx.WARN, "wxmedia: ", message) end

  local client, err, details = client_mod.new(o, OPTIONS)
  if not client then return nil, err, details end
  -- the backend sends the client's session options (checked by its transport) to the threads
  if backend then backend.session_opts = client.transport:options() end
  return setmetatable({ client = client, tmpdir = opts.tmpdir or "/tmp" }, mt)
end

-- The client's methods, in a phase that can yield.
local function method(name)
  return function(self, ...)
    phase.check(name, 2)
    local c = self.client
    return c[name](c, ...)
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

-- client:check(type, path [, opts]) and client:forget(media_id) touch no network.
function _M.check(self, ...) return self.client:check(...) end
function _M.forget(self, ...) return self.client:forget(...) end

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
