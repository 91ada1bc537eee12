-- The only door to the C core (wxmedia.core): loading it, the facts it owns (its version, WeChat's
-- base URL, the session options), and transports: objects that move one exchange's bytes and
-- answer its result, or nil, message, details.
--
-- A transport runs over a backend with the methods of a core session (upload, get, fetch, request,
-- each answering a result or nil, message, kind): by default a session of the core, made on first
-- use so that creating a client costs no handle; in nginx, the adapter's worker-thread backend; in
-- tests, any object of that shape. Whatever the backend, its failures become nil, message, details
-- here, once, through wxmedia.errors (which passes every message through the one redaction).
local pairs, pcall, require, select, setmetatable, tostring, type =
  pairs, pcall, require, select, setmetatable, tostring, type
local format = string.format
local unpack = table.unpack or unpack -- luacheck: ignore 143
local errors = require "wxmedia.errors"

local _M = {}

local core, core_error

-- The C core, or nil and a message saying why it cannot be loaded.
function _M.core()
  if core == nil and core_error == nil then
    local ok, c = pcall(require, "wxmedia.core")
    if ok then core = c else core_error = tostring(c) end
  end
  return core, core_error
end

-- The failure of a call that needs the core when it cannot be loaded: kind config.
function _M.unavailable(what)
  local _, why = _M.core()
  return errors.fail("config", format("%s: the C module wxmedia.core cannot be loaded (build it with "
    .. "`make`, or install wxmedia with LuaRocks or `make install`): %s", what, tostring(why)))
end

local function from_core(name)
  local c = _M.core()
  return c and c[name]
end

-- The core's own facts, or nil when it cannot be loaded.
function _M.version() return from_core("_VERSION") end
function _M.default_base_url() return from_core("DEFAULT_BASE_URL") end
-- The most transfers a multi runs at once (the core's cap), or nil when it cannot be loaded.
function _M.multi_max() return from_core("MULTI_MAX") end

-- { option name = Lua type name }: the options of a session, as the core checks them.
function _M.session_options()
  return from_core("SESSION_OPTIONS") or {}
end

-- { option name = default }: the defaults of a session's number options (0: none), as the core
-- applies them.
function _M.session_defaults()
  return from_core("SESSION_DEFAULTS") or {}
end

-- The core's clock: sleep(seconds) and the wall clock in seconds, or nil when it cannot be loaded.
function _M.clock()
  local c = _M.core()
  if not c then return nil end
  return c.sleep, c.time
end

-- A failure answer of the core (or of a backend of its shape) as nil, message, details.
local function failed(message, kind)
  return errors.fail(kind or "transfer", message)
end

-- Helpers of the core that are not transfers: the same conversion.
local function helper(name)
  return function(...)
    local c = _M.core()
    if not c then return _M.unavailable(name) end
    local res, msg, kind = c[name](...)
    if res == nil then return failed(msg, kind) end
    return res
  end
end
_M.stat = helper("stat")
_M.lstat = helper("lstat")
_M.write_private = helper("write_private")
_M.sha256_file = helper("sha256_file")
_M.sha256 = helper("sha256")     -- hex SHA-256 of a string (OpenSSL)
_M.sha1 = helper("sha1")         -- hex SHA-1 of a string (WeChat's callback signature)
_M.lock = helper("lock")
-- For a program (the command line), never for a library: SIGTERM, SIGHUP and SIGPIPE remove the
-- core's temp files, then kill the process as before (src/temp.c).
_M.remove_temp_files_on_signals = helper("remove_temp_files_on_signals")

local Transport = {}
Transport.__index = Transport

-- opts: { session = { the session options, as wxmedia.config checked them }, backend = an object
-- of a session's shape (optional) }. Only the core's own options are kept for the session.
function _M.new(opts)
  local session_opts = {}
  local known = _M.session_options()
  for name, value in pairs(opts.session or {}) do
    if known[name] then session_opts[name] = value end
  end
  return setmetatable({ session_opts = session_opts, backend = opts.backend, given = opts.backend ~= nil },
    Transport)
end

-- The options a session of this transport is made with (the nginx adapter hands them to its threads).
function Transport.options(self)
  return self.session_opts
end

-- Can an upload's body be a reader (a function)? Not when the backend runs each call in another Lua
-- VM (nginx's worker threads, which say so with plain_data_only), where only plain data crosses.
function Transport.takes_readers(self)
  local b = self.backend
  return not (type(b) == "table" and b.plain_data_only == true)
end

-- The backend, made on first use: a session of the core.
local function backend(self)
  local b = self.backend
  if b then return b end
  local c = _M.core()
  if not c then return nil end
  b = c.session(self.session_opts)
  self.backend = b
  return b
end

local function call(self, what, method, ...)
  local b = backend(self)
  if not b then return _M.unavailable(what) end
  local res, msg, kind = b[method](b, ...)
  if res == nil then return failed(msg, kind) end
  return res
end

-- upload(access_token, type, path, opts) -> { status, content_type, body } | nil, message, details
function Transport.upload(self, ...) return call(self, "upload", "upload", ...) end
-- get(access_token, media_id, path, opts) -> file result or body result | nil, message, details
function Transport.get(self, ...) return call(self, "get", "get", ...) end
-- fetch(url, path, opts) -> the same, for a URL a server gave (the video CDN)
function Transport.fetch(self, ...) return call(self, "fetch", "fetch", ...) end
-- request(method, path, opts) -> body result | nil, message, details (the token endpoints)
function Transport.request(self, ...) return call(self, "request", "request", ...) end

-- {====== many transfers at once ======
-- A runner that wxmedia.many drives: start up to n transfers (upload, get, fetch, with a session's
-- arguments), each answering a ticket, or nil, message, details before any request; then
-- wait([timeout]) -> ticket, result | ticket, nil, message, details when one ended, nothing when none
-- is running or the timeout passed first; cancel() stops the running ones.

local Multi = {}
Multi.__index = Multi

local function started(ticket, msg, kind)
  if ticket == nil then return failed(msg, kind) end
  return ticket
end

local function ended(ticket, res, msg, kind)
  if ticket == nil then return nil end
  if res == nil then return ticket, failed(msg, kind) end
  return ticket, res
end

function Multi.upload(self, ...) return started(self.m:upload(...)) end
function Multi.get(self, ...) return started(self.m:get(...)) end
function Multi.fetch(self, ...) return started(self.m:fetch(...)) end
function Multi.wait(self, timeout) return ended(self.m:wait(timeout)) end
function Multi.cancel(self) self.m:cancel() end

-- Over a backend without a multi (the nginx adapter's threads, a test's object): the transfers run
-- one after the other, each inside the wait that reports it.
local Serial = {}
Serial.__index = Serial

local function queue(self, method, ...)
  self.tickets = self.tickets + 1
  self.last = self.last + 1
  self.calls[self.last] = { self.tickets, method, n = select("#", ...), ... }
  return self.tickets
end

function Serial.upload(self, ...) return queue(self, "upload", ...) end
function Serial.get(self, ...) return queue(self, "get", ...) end
function Serial.fetch(self, ...) return queue(self, "fetch", ...) end

function Serial.wait(self)
  local job = self.calls[self.first]
  if not job then return nil end
  self.calls[self.first], self.first = nil, self.first + 1
  local b = self.backend
  return ended(job[1], b[job[2]](b, unpack(job, 3, job.n + 2)))
end

function Serial.cancel(self)
  self.calls, self.first, self.last = {}, 1, 0
end

-- multi(n) -> a runner of n transfers at once, or nil, message, details (kind config) when the core
-- cannot be loaded. The core's multi (n connections on one thread) is kept for the next batch of the
-- same size, so that its connections stay open.
function Transport.multi(self, n)
  local b = self.backend
  if self.given then
    if type(b.multi) == "function" then return setmetatable({ m = b:multi(n) }, Multi) end
    return setmetatable({ backend = b, calls = {}, first = 1, last = 0, tickets = 0 }, Serial)
  end
  local kept = self.multi_kept
  if kept and kept.n == n then return kept end
  local c = _M.core()
  if not c then return _M.unavailable("a batch of transfers") end
  if kept then kept.m:close() end
  kept = setmetatable({ m = c.multi(n, self.session_opts), n = n }, Multi)
  self.multi_kept = kept
  return kept
end

-- }======

-- Closes the backend's session and the kept multi, if there are.
function Transport.close(self)
  local b = self.backend
  if b and type(b.close) == "function" then b:close() end
  if self.multi_kept then
    self.multi_kept.m:close()
    self.multi_kept = nil
  end
end

return _M
