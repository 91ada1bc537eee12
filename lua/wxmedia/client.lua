-- The client: one account (or one token), one transport, and the policy around each call: checks
-- before upload, the access_token, one replay after WeChat refuses a token, and retries. It does
-- no I/O of its own: the bytes move in the transport (wxmedia.transport), the token comes from its
-- source (wxmedia.token), media_id records from wxmedia.reuse.
local error, ipairs, pairs, setmetatable, tostring, type = error, ipairs, pairs, setmetatable, tostring, type
local format = string.format
local answer = require "wxmedia.answer"
local config = require "wxmedia.config"
local errors = require "wxmedia.errors"
local many = require "wxmedia.many"
local media = require "wxmedia.media"
local message_mod = require "wxmedia.message"
local retry = require "wxmedia.retry"
local reuse = require "wxmedia.reuse"
local source = require "wxmedia.source"
local store_mod = require "wxmedia.store"
local token = require "wxmedia.token"
local transport = require "wxmedia.transport"
local warn_mod = require "wxmedia.warn"

local _M = {}
local mt = { __index = _M }

-- Raises like Lua's own argument checks: "bad argument #2 to 'upload' (string expected, got nil)".
function _M.check_arg(n, fname, value, expected, level)
  local t = type(value)
  if t == expected or (expected == "table?" and (value == nil or t == "table")) then return end
  error(format("bad argument #%d to '%s' (%s expected, got %s)", n, fname,
    expected == "table?" and "table" or expected, value == nil and "no value" or t), (level or 2) + 1)
end
local check_arg = _M.check_arg

-- The options a call may take, by method (the client's own options of the same names are the
-- defaults). Anything else raises: a misspelt option must not be ignored silently.
local CALL_OPTIONS = {
  upload = { retries = "number", backoff = "table", on_retry = "function", progress = "function",
    limits = "table", sleep = "function" },
  get = { retries = "number", backoff = "table", on_retry = "function", progress = "function",
    sleep = "function", jssdk = "boolean", on_file = "function", no_replace = "boolean" },
  media_id = { retries = "number", backoff = "table", on_retry = "function", progress = "function",
    limits = "table", sleep = "function", reuse_margin = "number", lock_timeout = "number" },
}
CALL_OPTIONS.check = { limits = "table" }
CALL_OPTIONS.send = { retries = "number", backoff = "table", on_retry = "function", sleep = "function" }
-- the batches (wxmedia.many): a call's options but progress, which is per item or for the batch
CALL_OPTIONS.upload_many = { retries = "number", backoff = "table", on_retry = "function", limits = "table",
  sleep = "function", concurrency = "number", item_progress = "function", batch_progress = "function",
  on_item = "function" }
CALL_OPTIONS.get_many = { retries = "number", backoff = "table", on_retry = "function", sleep = "function",
  jssdk = "boolean", concurrency = "number", item_progress = "function", batch_progress = "function",
  on_item = "function" }

local function check_call_options(fname, opts)
  if opts == nil then return end
  config.check_against(opts, CALL_OPTIONS[fname], fname, 3)
  media.check_limits(opts.limits, fname, 3)
end

-- A caller's clock, checked at every reading: a time that is not a number would break every
-- comparison of expiries far from where it came from.
local function checked_clock(now)
  return function()
    local t = now()
    if type(t) ~= "number" or t ~= t then
      error(format("bad option 'now' to 'new' (a function returning seconds expected; it returned %s)",
        tostring(t)), 2)
    end
    return t
  end
end

-- The options each call reads from the client (the rest went to the transport, the token source
-- and the records when the client was made).
local POLICY = { "retries", "backoff", "on_retry", "progress", "limits" }

-- opts: see the README. Returns the client, or nil, message, details (kind config) when no token
-- source is named, the base URL is unusable or the C core is needed and cannot be loaded.
-- extra: { name = type } of options an adapter takes beside wxmedia.new's (wxmedia.ngx).
function _M.new(opts, extra)
  check_arg(1, "new", opts, "table")
  config.check(opts, "new", 2, extra)
  reuse.check_margin(opts.reuse_margin, "new", 2)
  media.check_limits(opts.limits, "new", 2)
  local o, err, details = config.resolve(opts)
  if not o then return nil, err, details end

  local sleep, now = o.sleep, o.now and checked_clock(o.now)
  if not sleep or not now then
    local core_sleep, core_time = transport.clock()
    if not core_sleep then return transport.unavailable("new") end
    sleep, now = sleep or core_sleep, now or core_time
  end
  local session = {}
  for name in pairs(transport.session_options()) do session[name] = o[name] end

  local kept = {}
  for _, name in ipairs(POLICY) do kept[name] = o[name] end
  -- a video_url to a private address is followed only when allowed, by default only against a
  -- local server (the emulator)
  local allow_private = o.allow_private_urls
  if allow_private == nil then allow_private = o.base_url ~= nil and config.local_url(o.base_url) end
  local self = setmetatable({
    opts = kept, sleep = sleep, now = now, appid = o.appid,
    transport = transport.new({ session = session, backend = o.transport }),
    allow_private_urls = allow_private,
  }, mt)
  -- asked once: the backend is the client's for its life
  self.takes_readers = self.transport:takes_readers()
  -- the stores: a store that fails is reported to on_warning (once a minute), and the call goes on
  local warn = warn_mod.new(o.on_warning, now)
  local token_store = store_mod.wrap(o.token_store or token.default_store(), "option 'token_store' to 'new'",
    3, warn)
  self.tokens = token.new({
    mode = o.token_mode, appid = o.appid, secret = o.secret, access_token = o.access_token,
    origin = o.token_origin, provider = o.token_provider, store = token_store, now = now,
    transport = self.transport, lock_timeout = o.lock_timeout, base_url = o.base_url,
  })
  -- media_id records: the media_store option, else beside the tokens
  if o.appid then
    local records_store = o.media_store
      and store_mod.wrap(o.media_store, "option 'media_store' to 'new'", 3, warn) or token_store
    self.records = reuse.new({ store = records_store, account = token.account(o.appid, o.base_url),
      now = now, margin = o.reuse_margin, lock_timeout = o.lock_timeout })
  end
  return self
end

-- Options of one call: the call's own, else the client's.
local function build_policy(self, opts)
  local o = self.opts
  local function pick(name)
    if opts and opts[name] ~= nil then return opts[name] end
    return o[name]
  end
  return {
    retries = pick("retries"), backoff = pick("backoff"), on_retry = pick("on_retry"),
    sleep = (opts and opts.sleep) or self.sleep, progress = pick("progress"), limits = pick("limits"),
    jssdk = opts and opts.jssdk, check = { limits = pick("limits"), stat = transport.stat },
  }
end

-- A call without options runs with the client's: that policy is built once, on the first such call
-- (most calls pass none, and building it is garbage for the collector at every call). Safe to keep:
-- self.opts is the client's own copy, which nothing changes after new, and neither retry.run nor
-- media.check writes into the tables they are given.
local function policy(self, opts)
  if opts then return build_policy(self, opts) end
  local p = self.default_policy
  if not p then
    p = build_policy(self, nil)
    self.default_policy = p
  end
  return p
end

-- Runs one exchange with a token; when WeChat refuses that token, gets a fresh one and replays
-- once (the transport re-reads the file from its start). Never more: a second refusal is final.
-- exchange(self, tok, what, a, b, c, d): what names the call in messages; the call's values are
-- passed along rather than captured in closures, so that a call makes no closures (garbage at
-- every upload otherwise).
local function with_token(self, what, exchange, a, b, c, d)
  local tok, msg, details = self.tokens:get()
  if not tok then return nil, msg, details end
  local res
  res, msg, details = exchange(self, tok, what, a, b, c, d)
  if res or not (details and errors.is_token_errcode(details.errcode)) then
    -- WeChat took the token (it answered the call, or refused it for another reason)
    if res or (details and details.errcode) then self.tokens:worked(tok) end
    return res, msg, details
  end
  local ok, rmsg, rdetails = self.tokens:rejected(tok, details.errcode, what)
  if not ok then return nil, rmsg, rdetails end
  -- a reader already read cannot be sent again: the next call has the new token
  if not source.replayable(a) then return nil, msg, details end
  tok, msg, details = self.tokens:get()
  if not tok then return nil, msg, details end
  res, msg, details = exchange(self, tok, what, a, b, c, d)
  if res or not (details and errors.is_token_errcode(details.errcode)) then
    if res or (details and details.errcode) then self.tokens:worked(tok) end
    return res, msg, details
  end
  return self.tokens:refused(what, details.errcode)
end

-- retry.run's attempt for every call: (attempt number, then what it passes along) -> with_token.
local function attempt_with_token(_, self, what, exchange, a, b, c, d)
  return with_token(self, what, exchange, a, b, c, d)
end

-- nil, "<what>: <message>", details: a failure of a layer below, named in the call's terms.
local function within(what, res, msg, details)
  if res ~= nil then return res end
  return nil, what .. ": " .. msg, details
end

-- One upload of a checked source with one token.
local function send_once(self, tok, what, file, body, send)
  local res, msg, details = self.transport:upload(tok, file.type, body, send)
  if not res then return within(what, nil, msg, details) end
  local doc, m, d = answer.decode(what, res)
  if not doc then return nil, m, d end
  return answer.upload(file.type, doc)
end

local function upload_exchange(self, tok, what, file, send)
  local body, msg, details = source.body(file)
  if not body then return nil, msg, details end
  local res
  res, msg, details = send_once(self, tok, what, file, body, send)
  if res then return res end
  return source.failed(file, msg, details)
end

-- syntax: file, err, details = client:check(type, file [, opts])
-- The checks upload makes before it sends anything (opts.limits), without sending. file: a path,
-- { data = bytes, filename = }, or { file = a file handle or reader, size =, filename = } (see
-- wxmedia.source). Returns { type, format, size, filename, content_type, path and mtime (a path),
-- data or file (the others) }, or nil, message, details (kind input). Pass it to upload: for a reader
-- it holds the first bytes check read.
function _M.check(self, mtype, file, opts)
  check_arg(1, "check", mtype, "string")
  source.check_arg(2, "check", file, 2)
  check_arg(3, "check", opts, "table?")
  check_call_options("check", opts)
  local limits = opts and opts.limits or self.opts.limits
  return source.check(mtype, file, { limits = limits, stat = transport.stat })
end

-- syntax: res, err, details = client:upload(type, file [, opts])
-- file: as check's, or the table client:check returned for this type (then it is not checked again).
function _M.upload(self, mtype, file, opts)
  -- the checks of every call, asked only when they fail (each is a call less per upload)
  if type(mtype) ~= "string" then check_arg(1, "upload", mtype, "string") end
  source.check_arg(2, "upload", file, 2)
  if opts ~= nil then
    check_arg(3, "upload", opts, "table?")
    check_call_options("upload", opts)
  end
  local p = policy(self, opts)
  -- a backend in another Lua VM takes no reader: a file handle's or a reader's bytes are read into
  -- memory, once (at most the type's limit, which check enforced), as media_id reads them
  local ready, send, details = source.ready(mtype, file, p.check, not self.takes_readers and "all" or nil,
    p.progress)
  if not ready then return nil, send, details end
  file = ready
  return retry.run(p, attempt_with_token, self, "cannot upload " .. source.name(file), upload_exchange,
    file, send)
end

-- A video's get answers {"video_url": ...}: download that URL (a CDN, no token) into path. The
-- caller's on_file sees the URL too (info.video_url): the CDN may not name the file.
local function follow_video(self, what, url, path, p, args)
  local on_file = args.on_file
  local res, err, details = self.transport:fetch(url, path,
    { progress = p.progress, allow_private = self.allow_private_urls or nil, no_replace = args.no_replace,
      on_file = on_file and function(info)
        info.video_url = url
        return on_file(info)
      end })
  if not res then return within(what, nil, err, details) end
  if not res.file then
    if res.status ~= 200 then return errors.http(what .. ": its video_url", res.status) end
    return errors.fail("api", what .. ": its video_url answered text, not the video", { status = res.status })
  end
  return { path = res.path or path, size = res.size, content_type = res.content_type,
    filename = res.filename, video_url = url }
end

-- One get with one token.
local function get_exchange(self, tok, what, media_id, path, args, p)
  local res, err, details = self.transport:get(tok, media_id, path, args)
  if not res then return within(what, nil, err, details) end
  if res.file then
    return { path = res.path or path, size = res.size, content_type = res.content_type,
      filename = res.filename }
  end
  local doc, m, d = answer.decode(what, res)
  if not doc then return nil, m, d end
  local url = answer.video_url(doc)
  if url then return follow_video(self, what, url, path, p, args) end
  return errors.fail("api", what .. ": WeChat answered JSON without the file", { status = res.status })
end

-- The checks of get's arguments, before any request: true, or nil, message, details (kind input).
local function get_checks(media_id, path)
  if media_id == "" then return errors.input("cannot get a medium: the media_id is empty") end
  if #media_id > answer.MAX_ID then
    return errors.input(format("cannot get a medium: the media_id is %d characters long; WeChat's are 64",
      #media_id))
  end
  if path == "" then return errors.input("cannot get " .. media_id .. ": the destination path is empty") end
  return true
end

-- syntax: res, err, details = client:get(media_id, path [, opts])   opts.jssdk: HD voice (speex);
-- opts.no_replace: an existing file at the destination is never replaced (the check and the rename
-- are one step in the core); opts.on_file(info): asked before the first byte is written, with
-- { status, content_type, filename, size, video_url }; may return another path to write, or nil
-- and a message to stop (kind input). res.path is the path written.
function _M.get(self, media_id, path, opts)
  check_arg(1, "get", media_id, "string")
  check_arg(2, "get", path, "string")
  check_arg(3, "get", opts, "table?")
  check_call_options("get", opts)
  local checked, why, bad = get_checks(media_id, path)
  if not checked then return nil, why, bad end
  local p = policy(self, opts)
  local args = { jssdk = p.jssdk or nil, progress = p.progress, on_file = opts and opts.on_file,
    no_replace = opts and opts.no_replace or nil }
  local res, err, details = retry.run(p, attempt_with_token, self, "cannot get " .. media_id, get_exchange,
    media_id, path, args, p)
  -- WeChat no longer knows this media_id: a record of it must not hand it out again
  if not res and details and details.errcode == 40007 and self.records then self.records:forget(media_id) end
  return res, err, details
end

-- syntax: res, err, details = client:media_id(type, file [, opts])   (file: as upload's)
-- A media_id for the file's content, valid at least reuse_margin more seconds (default 6 h):
-- the recorded one while its upload is younger than 3 days minus the margin, else a new upload.
-- res is upload's table plus reused = true|false and expires_at. opts: upload's, reuse_margin,
-- lock_timeout (seconds to wait for another process uploading the same content).
function _M.media_id(self, mtype, file, opts)
  check_arg(1, "media_id", mtype, "string")
  source.check_arg(2, "media_id", file, 2)
  check_arg(3, "media_id", opts, "table?")
  check_call_options("media_id", opts)
  if opts then reuse.check_margin(opts.reuse_margin, "media_id", 2) end
  if not self.records then return reuse.no_account() end
  return reuse.media_id(self, self.records, mtype, file, opts)
end

-- syntax: forgotten = client:forget(media_id)
-- Drops the record holding media_id (say, WeChat refused it in a message): the next media_id call
-- for that content uploads again. Returns true when a record was known.
function _M.forget(self, media_id)
  check_arg(1, "forget", media_id, "string")
  return self.records ~= nil and self.records:forget(media_id)
end

-- One customer-service message with one token. A failure after the request may have reached WeChat
-- (the connection broke, or the answer was late) is not retried: WeChat may have delivered it, and
-- the user would get it twice.
local function send_exchange(self, tok, what, body)
  local res, err, details = self.transport:request("POST", message_mod.PATH, {
    query = { access_token = tok }, body = body, content_type = "application/json" })
  if not res then
    if details.kind == "transfer" or details.kind == "timeout" then details.retryable = false end
    return within(what, nil, err, details)
  end
  local doc, m, d = answer.decode(what, res)
  if not doc then return nil, m, d end
  return true
end

-- syntax: ok, err, details = client:send(openid, message [, opts])
-- A customer-service message to a user who wrote to the account in the last 48 hours: message is
-- { type = "text", content = }, { type = "image" | "voice", media_id = }, { type = "video",
-- media_id =, thumb_media_id =, title =, description = } or { type = "music", thumb_media_id =,
-- title =, description =, music_url =, hq_music_url = }. opts: retries, backoff, on_retry, sleep.
function _M.send(self, openid, message, opts)
  local body = message_mod.body(openid, message, "send", 2)
  check_arg(3, "send", opts, "table?")
  check_call_options("send", opts)
  return retry.run(policy(self, opts), attempt_with_token, self, "cannot send a message to " .. openid,
    send_exchange, body)
end

-- syntax: tok, err, details = client:token([force])
function _M.token(self, force)
  local p = policy(self, nil)
  return retry.run(p, function() return self.tokens:get(force == true) end)
end

-- {====== many at once (wxmedia.many) ======

-- The list's items: raises for one that is not a table of the right shape (misuse, like a bad argument).
-- any_table: the second value may be any table (upload_many's sources, checked after), else a string
-- or a table with a string path.
local function list_items(fname, list, shape, first_type, any_table)
  local items = {}
  for i = 1, #list do
    local it = list[i]
    local a, b = type(it) == "table" and (it[1] or it[first_type]), type(it) == "table" and (it[2] or it.path)
    local file = type(b) == "table" and (any_table or type(b.path) == "string")
    if type(a) ~= "string" or (type(b) ~= "string" and not file) then
      error(format("bad argument #1 to '%s' (item %d: %s expected)", fname, i, shape), 3)
    end
    items[i] = { i = i, [first_type] = a, path = b }
  end
  return items
end

local function check_concurrency(fname, opts)
  local n = opts and opts.concurrency
  local max = transport.multi_max() or 64
  if n ~= nil and (n ~= n or n < 1 or n > max or n % 1 ~= 0) then
    error(format("bad option 'concurrency' to '%s' (a whole number from 1 to %d expected)", fname, max), 3)
  end
end

-- syntax: results, failed = client:upload_many(list [, opts])
-- list: { { type, file }, ... } (or { type =, path = file }); file: any form upload takes (a path,
-- { data = }, a file handle or a reader, client:check's table). Each item is checked, sent and retried
-- as upload does, opts.concurrency (default 4) at once; results[i] is { res, err, details } for
-- list[i]; failed counts the items that failed.
function _M.upload_many(self, list, opts)
  check_arg(1, "upload_many", list, "table")
  check_arg(2, "upload_many", opts, "table?")
  check_call_options("upload_many", opts)
  check_concurrency("upload_many", opts)
  local items = list_items("upload_many", list, "{ type, file }", "type", true)
  local handles = {}
  for _, item in ipairs(items) do
    local file, i = item.path, item.i
    local why = source.problem(file)
    -- two items reading one handle at once would each send the other's bytes
    local f = not why and source.handle(file)
    if f and handles[f] then
      why = format("the file handle of item %d again: a handle has one position", handles[f])
    end
    if why then error(format("bad argument #1 to 'upload_many' (item %d: %s)", i, why), 2) end
    if f then handles[f] = i end
    item.source, item.path = file, nil
  end
  return many.run(self, "upload", items, opts, policy(self, opts))
end

-- syntax: results, failed = client:get_many(list [, opts])
-- list: { { media_id, path }, ... } (or { media_id =, path = }); as get does for each, opts.concurrency
-- at once; results as upload_many's.
function _M.get_many(self, list, opts)
  check_arg(1, "get_many", list, "table")
  check_arg(2, "get_many", opts, "table?")
  check_call_options("get_many", opts)
  check_concurrency("get_many", opts)
  local items = list_items("get_many", list, "{ media_id, path }", "media_id")
  for _, item in ipairs(items) do
    if type(item.path) ~= "string" then error(format("bad argument #1 to 'get_many' (item %d: "
      .. "{ media_id, path } expected)", item.i), 2) end
    local ok, msg, details = get_checks(item.media_id, item.path)
    if ok then item.what = "cannot get " .. item.media_id else item.rejected = { msg, details } end
  end
  return many.run(self, "get", items, opts, policy(self, opts))
end

-- }======

return _M
