-- The client: one account (or one token), one transport, and the policy around each call:
-- checks before upload, the access_token, one replay after WeChat refuses a token, and retries.
-- The bytes move in the transport (by default a session of the C core: one per client, so
-- consecutive calls reuse the connection).
local error, pairs, pcall, require, setmetatable, tostring, type =
  error, pairs, pcall, require, setmetatable, tostring, type
local format = string.format
local cjson = require("cjson.safe").new()
local errors = require "wxmedia.errors"
local media = require "wxmedia.media"
local retry = require "wxmedia.retry"
local token = require "wxmedia.token"
local store_mod = require "wxmedia.store"
local reuse = require "wxmedia.reuse"

local _M = {}
local mt = { __index = _M }

_M.DEFAULT_BASE_URL = token.DEFAULT_BASE_URL

-- The C core, or nil and why it cannot load (a custom transport then does without it).
local core_loaded, core, core_error
local function load_core()
  if core_loaded == nil then
    core_loaded, core = pcall(require, "wxmedia.core")
    if not core_loaded then core, core_error = nil, tostring(core) end
  end
  return core, core_error
end
_M.load_core = load_core   -- for reuse.lua, which gets the client

-- Raises like Lua's own argument checks: "bad argument #2 to 'upload' (string expected, got nil)".
function _M.check_arg(n, fname, value, expected, level)
  local t = type(value)
  if t == expected or (expected == "table?" and (value == nil or t == "table")) then return end
  error(format("bad argument #%d to '%s' (%s expected, got %s)", n, fname,
    expected == "table?" and "table" or expected, value == nil and "no value" or t), (level or 2) + 1)
end
local check_arg = _M.check_arg

local OPTION_TYPES = {
  appid = "string", secret = "string", access_token = "string", token_provider = "function",
  base_url = "string", token_api = "string", retries = "number", backoff = "table", timeout = "number",
  connect_timeout = "number", low_speed_limit = "number", low_speed_time = "number", cainfo = "string",
  capath = "string", verify = "boolean", proxy = "string", user_agent = "string", progress = "function",
  on_retry = "function", limits = "table", sleep = "function", now = "function", lock_timeout = "number",
  reuse_margin = "number", fsync = "boolean",
}

-- opts: see the README. Returns the client, or nil, message, details (kind "input") when the
-- options do not name a token source.
function _M.new(opts)
  check_arg(1, "new", opts, "table")
  for name, expected in pairs(OPTION_TYPES) do
    if opts[name] ~= nil and type(opts[name]) ~= expected then
      error(format("bad option '%s' to 'new' (%s expected, got %s)", name, expected, type(opts[name])), 2)
    end
  end
  reuse.check_margin(opts.reuse_margin, "new", 2)
  local mode
  if opts.access_token then
    mode = "static"
  elseif opts.token_provider then
    mode = "provider"
  elseif opts.appid and opts.secret then
    mode = opts.token_api or "stable"
    if mode ~= "stable" and mode ~= "classic" then
      return errors.input(format("new: token_api must be \"stable\" or \"classic\", not \"%s\"", mode))
    end
  else
    return errors.input("new: no access_token source: give appid and secret, access_token, or token_provider")
  end
  -- The options the calls read later; the secret and tokens stay out of the client's fields, so
  -- that printing or serialising a client shows none.
  local kept = {}
  for k, v in pairs(opts) do
    if k ~= "secret" and k ~= "access_token" and k ~= "token_provider" then kept[k] = v end
  end
  local self = setmetatable({
    opts = kept,
    transport = opts.transport,
    sleep = opts.sleep,
    now = opts.now,
  }, mt)
  if not self.sleep or not self.now then
    local c, why = load_core()
    if not c then
      return errors.fail("io", "new: the C core wxmedia.core cannot be loaded, and no sleep/now was given: "
        .. why)
    end
    self.sleep = self.sleep or c.sleep
    self.now = self.now or c.time
  end
  -- The transport is made on first use; tokens reach it through this indirection.
  local client = self
  local lazy = {
    request = function(_, ...)
      local t, msg, details = client:_transport()
      if not t then return nil, msg, details and details.kind end
      return t:request(...)
    end,
  }
  self.tokens = token.new({
    mode = mode, appid = opts.appid, secret = opts.secret, access_token = opts.access_token,
    provider = opts.token_provider, store = opts.token_store, now = self.now, transport = lazy,
    lock_timeout = opts.lock_timeout, base_url = opts.base_url,
  })
  -- For extensions that keep their own records beside the tokens (media_id reuse): the same store.
  self.appid = opts.appid
  self.store = self.tokens.store or store_mod.wrap(opts.token_store or token.default_store())
  -- media_id records (wxmedia.reuse): the media_store option, else beside the tokens
  self.media_store = reuse.store_for(opts, self.store)
  return self
end

-- The transport: given, or a core session built from the client's options on first use.
-- Returns it, or nil, message, details.
function _M._transport(self)
  if self.transport then return self.transport end
  local c, why = load_core()
  if not c then return errors.fail("io", "the C core wxmedia.core cannot be loaded: " .. why) end
  local o = self.opts
  local s, err = c.session({
    base_url = o.base_url or _M.DEFAULT_BASE_URL, timeout = o.timeout, connect_timeout = o.connect_timeout,
    low_speed_limit = o.low_speed_limit, low_speed_time = o.low_speed_time, cainfo = o.cainfo,
    capath = o.capath, proxy = o.proxy, user_agent = o.user_agent, verify = o.verify, fsync = o.fsync,
  })
  if not s then return errors.fail("input", "cannot create a session: " .. tostring(err)) end
  self.transport = s
  return s
end

-- Options of one call: the call's own, else the client's. Also the options media.check takes.
local function build_policy(self, opts)
  local o = self.opts
  local function pick(name)
    if opts and opts[name] ~= nil then return opts[name] end
    return o[name]
  end
  local c = load_core()
  local p = {
    retries = pick("retries"), backoff = pick("backoff"), on_retry = pick("on_retry"),
    sleep = (opts and opts.sleep) or self.sleep, progress = pick("progress"), limits = pick("limits"),
    jssdk = opts and opts.jssdk,
  }
  p.check = { limits = p.limits, stat = c and c.stat }
  return p
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
-- exchange(self, tok, a, b, c, d): the call's values are passed along rather than captured in
-- closures, so that a call makes no closures (garbage at every upload otherwise).
local function with_token(self, what, exchange, a, b, c, d)
  local tok, msg, details = self.tokens:get()
  if not tok then return nil, msg, details end
  local res
  res, msg, details = exchange(self, tok, a, b, c, d)
  if res or not (details and errors.is_token_errcode(details.errcode)) then
    -- WeChat took the token (it answered the call, or refused it for another reason)
    if res or (details and details.errcode) then self.tokens:worked(tok) end
    return res, msg, details
  end
  local ok, rmsg, rdetails = self.tokens:rejected(tok, details.errcode, what)
  if not ok then return nil, rmsg, rdetails end
  tok, msg, details = self.tokens:get()
  if not tok then return nil, msg, details end
  res, msg, details = exchange(self, tok, a, b, c, d)
  if res or not (details and errors.is_token_errcode(details.errcode)) then
    if res or (details and details.errcode) then self.tokens:worked(tok) end
    return res, msg, details
  end
  return token.refused(self.tokens, what, details.errcode)
end

-- WeChat's answer to a JSON call: the decoded table, or nil, message, details.
local function decode_answer(what, res)
  local doc = cjson.decode(res.body or "")
  local code = type(doc) == "table" and doc.errcode or nil
  if res.status ~= 200 then
    return errors.http(what, res.status, code, type(doc) == "table" and doc.errmsg or nil)
  end
  if type(doc) ~= "table" then
    return errors.fail("api", what .. ": wechat's answer is not json", { status = res.status })
  end
  if code and code ~= 0 then return errors.api(what, code, doc.errmsg, res.status) end
  return doc
end

local function upload_result(mtype, doc)
  local id = doc.media_id or doc.thumb_media_id
  if type(id) ~= "string" or id == "" then
    return errors.fail("api", "upload: wechat's answer holds no media_id", { status = 200 })
  end
  local res = { type = doc.type or mtype, media_id = id, created_at = doc.created_at }
  if mtype == "thumb" then res.thumb_media_id = doc.thumb_media_id or id end
  return res
end

-- retry.run's attempt for every call: (attempt number, then what it passes along) -> with_token.
local function attempt_with_token(_, self, what, exchange, a, b, c, d)
  return with_token(self, what, exchange, a, b, c, d)
end

-- One upload with one token.
local function upload_exchange(self, tok, mtype, path, send)
  local t, terr, tdetails = self:_transport()
  if not t then return nil, terr, tdetails end
  local res, err, kind = t:upload(tok, mtype, path, send)
  if not res then return errors.transport("upload", err, kind) end
  local doc, m, d = decode_answer("upload", res)
  if not doc then return nil, m, d end
  return upload_result(mtype, doc)
end

-- syntax: res, err, details = client:upload(type, path [, opts])
function _M.upload(self, mtype, path, opts)
  check_arg(1, "upload", mtype, "string")
  check_arg(2, "upload", path, "string")
  check_arg(3, "upload", opts, "table?")
  local p = policy(self, opts)
  local info, msg, details = media.check(mtype, path, p.check)
  if not info then return nil, msg, details end
  local send = { filename = info.filename, content_type = info.content_type, progress = p.progress }
  return retry.run(p, attempt_with_token, self, "upload", upload_exchange, mtype, path, send)
end

-- A video's get answers {"video_url": ...}: download that URL (a CDN, no token) into path.
local function follow_video(self, url, path, p)
  local res, err, kind = self.transport:fetch(url, path, { progress = p.progress })
  if not res then return errors.transport("get video_url", err, kind) end
  if not res.file then
    if res.status ~= 200 then return errors.http("get video_url", res.status) end
    return errors.fail("api", "get video_url: the server answered text, not the video",
      { status = res.status })
  end
  return { path = res.path or path, size = res.size, content_type = res.content_type,
    filename = res.filename, video_url = url }
end

-- syntax: res, err, details = client:get(media_id, path [, opts])   opts.jssdk: HD voice (speex)
function _M.get(self, media_id, path, opts)
  check_arg(1, "get", media_id, "string")
  check_arg(2, "get", path, "string")
  check_arg(3, "get", opts, "table?")
  if media_id == "" then return errors.input("get: media_id is empty") end
  if path == "" then return errors.input("get: path is empty") end
  local res, err, details = self:_get(media_id, path, opts)
  -- WeChat no longer knows this media_id: a record of it must not hand it out again
  if not res and details and details.errcode == 40007 then reuse.forget(self, media_id) end
  return res, err, details
end

-- One get with one token.
local function get_exchange(self, tok, media_id, path, args, p)
  local t, terr, tdetails = self:_transport()
  if not t then return nil, terr, tdetails end
  local res, err, kind = t:get(tok, media_id, path, args)
  if not res then return errors.transport("get", err, kind) end
  if res.file then
    return { path = res.path or path, size = res.size, content_type = res.content_type,
      filename = res.filename }
  end
  local doc, m, d = decode_answer("get", res)
  if not doc then return nil, m, d end
  if type(doc.video_url) == "string" and doc.video_url ~= "" then
    return follow_video(self, doc.video_url, path, p)
  end
  return errors.fail("api", "get: wechat answered json without the file", { status = res.status })
end

function _M._get(self, media_id, path, opts)
  local p = policy(self, opts)
  local args = { jssdk = p.jssdk or nil, progress = p.progress }
  return retry.run(p, attempt_with_token, self, "get", get_exchange, media_id, path, args, p)
end

-- syntax: res, err, details = client:media_id(type, path [, opts])
-- A media_id for the file's content, valid at least reuse_margin more seconds (default 6 h):
-- the recorded one while its upload is younger than 3 days minus the margin, else a new upload.
-- res is upload's table plus reused = true|false and expires_at. opts: upload's, reuse_margin,
-- lock_timeout (seconds to wait for another process uploading the same content).
function _M.media_id(self, mtype, path, opts)
  check_arg(1, "media_id", mtype, "string")
  check_arg(2, "media_id", path, "string")
  check_arg(3, "media_id", opts, "table?")
  if opts then reuse.check_margin(opts.reuse_margin, "media_id", 2) end
  return reuse.media_id(self, mtype, path, opts)
end

-- syntax: forgotten = client:forget(media_id)
-- Drops the record holding media_id (say, WeChat refused it in a message): the next media_id call
-- for that content uploads again. Returns true when a record was known.
function _M.forget(self, media_id)
  check_arg(1, "forget", media_id, "string")
  return reuse.forget(self, media_id)
end

-- syntax: tok, err, details = client:token([force])
function _M.token(self, force)
  local p = policy(self, nil)
  return retry.run(p, function() return self.tokens:get(force == true) end)
end

return _M
