-- access_token sources: "stable" (cgi-bin/stable_token, the default: every process and server of
-- an account gets the same token without kicking the others out), "classic" (cgi-bin/token: each
-- call issues a new one), "static" (a token the caller gives) and "provider" (a function of the
-- caller's). The first two cache their token in a store with an absolute expiry, refresh it 300 s
-- early (inside WeChat's 5-minute overlap, so a refresh elsewhere is harmless) and fetch under the
-- store's lock, so that one caller fetches while the others wait and then read. The last two are
-- read-only: a token WeChat refuses is reported, never refreshed.
-- Every token and secret a source holds is handed to wxmedia.redact, so no message shows it.
local pcall, setmetatable, tonumber, tostring, type = pcall, setmetatable, tonumber, tostring, type
local format = string.format
local cjson = require("cjson.safe").new()
local answer = require "wxmedia.answer"
local config = require "wxmedia.config"
local errors = require "wxmedia.errors"
local redact = require "wxmedia.redact"
local store_mod = require "wxmedia.store"
local transport_mod = require "wxmedia.transport"

local _M = {}
local mt = { __index = _M }

_M.EARLY = 300          -- refresh this many seconds before expiry
-- a refused token is replaced at most once per 30 s (stable: WeChat's own force_refresh rule)
_M.REFRESH_INTERVAL = 30
_M.LOCK_TIMEOUT = 10

-- One process-wide memory store, so that every client of one account in a process shares a token.
local default_store

function _M.default_store()
  if not default_store then default_store = store_mod.memory() end
  return default_store
end

-- The name of an account in store keys: its appid, plus the server's address when it is not
-- WeChat's own ("wx123@127.0.0.1:8080"). An emulator or a proxy issues its own tokens and
-- media_ids, and the default memory store is shared by the whole process, so two clients of one
-- appid against two servers must not read each other's records.
function _M.account(appid, base_url)
  local base = type(base_url) == "string" and base_url:gsub("/+$", "") or nil
  if not base or base == "" or base == transport_mod.default_base_url() then return appid end
  return appid .. "@" .. (base:gsub("^%a[%w+.-]*://", ""))
end

-- The store key of an account's token; never holds the secret.
function _M.key(token_api, appid, base_url)
  return "wxmedia:token:" .. token_api .. ":" .. _M.account(appid, base_url)
end

-- When a token that lives expires_in seconds from now is replaced: EARLY seconds before its end,
-- or half way through a short-lived one.
local function refresh_at(now, expires_in)
  local early = expires_in > 2 * _M.EARLY and _M.EARLY or expires_in / 2
  return now + expires_in - early
end

-- opts: { mode = "stable"|"classic"|"static"|"provider", appid =, secret =, access_token =,
--   origin = where a static token came from (for messages), provider = function() -> token,
--   expires_in, store = (a store as store.wrap makes it), transport = (a wxmedia.transport),
--   now = function() -> wall seconds,
--   lock_timeout =, base_url = (part of the store key) }.
function _M.new(opts)
  local mode = opts.mode
  local self = setmetatable({
    mode = mode, appid = opts.appid, now = opts.now, transport = opts.transport,
    lock_timeout = opts.lock_timeout or _M.LOCK_TIMEOUT, origin = opts.origin,
    -- the source of an access_token, so that a refused one can be replaced
    refreshable = mode == "stable" or mode == "classic",
  }, mt)
  -- Kept out of the object's fields, so that printing or serialising a source shows no secret.
  local secret, static_token = opts.secret, opts.access_token
  redact.remember(secret)
  redact.remember(static_token)
  self.credentials = function() return secret end
  self.static = function() return static_token end
  self.provider = opts.provider
  if self.refreshable then
    self.store = opts.store
    self.key = _M.key(mode, self.appid, opts.base_url)
  end
  return self
end

local function decode_record(text)
  local rec = type(text) == "string" and cjson.decode(text)
  if type(rec) == "table" and type(rec.access_token) == "string" and type(rec.expires_at) == "number" then
    return rec
  end
  return nil
end

-- The store's record, decoded. The last decoded record is kept with the text it came from, so a
-- call that finds the same text (nearly every one) costs a string compare instead of a JSON decode.
-- Safe: a record is never changed in place (save() writes a new text, and nothing writes into a
-- decoded record), so the same text means the same record; when another process or client writes
-- the store, its text differs and is decoded again. Kept outside the source's fields (weak keys: it
-- goes with the source), so that printing or serialising a source still shows no token.
local last_read = setmetatable({}, { __mode = "k" })

function _M.read(self)
  local text = self.store:get(self.key)
  local last = last_read[self]
  if last and text ~= nil and text == last.text then return last.record end
  local rec = decode_record(text)
  if rec then redact.remember(rec.access_token) end
  last_read[self] = { text = text, record = rec }
  return rec
end

-- A record is used until refresh_at (300 s before expiry; half its life for a short-lived token).
local function fresh(self, rec)
  if not rec then return false end
  return self.now() < (rec.refresh_at or rec.expires_at - _M.EARLY)
end

-- The account as messages name it.
local function who(self)
  return self.appid or "the account"
end

-- One request to WeChat's token endpoint; returns a record { access_token, expires_at, refresh_at }.
function _M.fetch(self, force_refresh)
  local what = "cannot get an access_token for " .. who(self)
  local res, msg, details
  if self.mode == "stable" then
    res, msg, details = self.transport:request("POST", "/cgi-bin/stable_token", {
      body = cjson.encode({ grant_type = "client_credential", appid = self.appid,
        secret = self.credentials(), force_refresh = force_refresh == true }),
      content_type = "application/json",
    })
  else
    res, msg, details = self.transport:request("GET", "/cgi-bin/token", {
      query = { grant_type = "client_credential", appid = self.appid, secret = self.credentials() },
    })
  end
  if not res then return nil, what .. ": " .. msg, details end
  local doc, m, d = answer.decode(what, res)
  if not doc then
    -- whatever a token endpoint refuses is a token problem, unless waiting can cure it
    if d.kind == "api" and not d.retryable then d.kind = "token" end
    return nil, m, d
  end
  local got, terr, tdetails = answer.token(what, doc)
  if not got then return nil, terr, tdetails end
  redact.remember(got.access_token)
  local now = self.now()
  return { access_token = got.access_token, expires_at = now + got.expires_in,
    refresh_at = refresh_at(now, got.expires_in) }
end

local function save(self, rec)
  local ttl = rec.expires_at - self.now()
  if ttl > 0 then self.store:set(self.key, cjson.encode(rec), ttl) end
end

local function from_provider(self, force)
  if not force and self.cached and self.now() < self.cached.refresh_at then
    return self.cached.access_token
  end
  local ok, tok, expires_in = pcall(self.provider)
  if not ok or type(tok) ~= "string" or tok == "" then
    if not ok then return errors.fail("token", "token_provider failed: " .. tostring(tok)) end
    return errors.fail("token", "token_provider returned no token"
      .. (expires_in ~= nil and " (" .. tostring(expires_in) .. ")" or ""))
  end
  redact.remember(tok)
  expires_in = tonumber(expires_in)
  if expires_in and expires_in > 0 and expires_in <= answer.MAX_EXPIRES_IN then
    self.cached = { access_token = tok, refresh_at = refresh_at(self.now(), expires_in) }
  else
    self.cached = nil
  end
  return tok
end

-- Under the lock: the record another caller stored meanwhile, else a new one fetched and stored.
local function fetch_unless_fresh(self, force)
  local rec = self:read()
  if not force and fresh(self, rec) then return rec.access_token end
  local new, msg, details = self:fetch(false)
  if not new then return nil, msg, details end
  save(self, new)
  return new.access_token
end

-- The access_token to use: cached while fresh, else fetched once (under the store's lock) and stored.
-- force: skip the cache and ask the source again (stable: without force_refresh, which is kept for
-- tokens WeChat refused).
function _M.get(self, force)
  if self.mode == "static" then return self.static() end
  if self.mode == "provider" then return from_provider(self, force) end
  if not force then
    local rec = self:read()
    if fresh(self, rec) then return rec.access_token end
  end
  return store_mod.locked(self.store, self.key .. ":lock", self.lock_timeout, fetch_unless_fresh, self, force)
end

-- The failure of a call whose token WeChat refused, when no new one can be had.
function _M.refused(self, what, code)
  local message
  if self.mode == "static" and self.origin and self.origin ~= "access_token" then
    message = format("%s: WeChat refused the access_token in %s (errcode %s): it expired or was "
      .. "replaced; set a current one, or set %s and %s so that wxmedia fetches and refreshes tokens "
      .. "itself", what, self.origin, tostring(code), config.ENV.appid, config.ENV.secret)
  elseif self.mode == "static" then
    message = format("%s: WeChat refused the access_token given to wxmedia (errcode %s): it expired or "
      .. "was replaced; give a current one, or appid and secret so that wxmedia fetches and refreshes "
      .. "tokens itself", what, tostring(code))
  elseif self.mode == "provider" then
    message = format("%s: WeChat refused the access_token from token_provider (errcode %s)", what,
      tostring(code))
  else
    message = format("%s: WeChat refused a freshly fetched access_token (errcode %s); it is not "
      .. "refreshed again", what, tostring(code))
  end
  return errors.fail("token", message, { errcode = code })
end

-- WeChat took `tok` for a call. Kept (in the store, once per token and process) so that when it
-- is refused later, whichever process sees that may replace it at once: it was invalidated, not
-- born bad.
function _M.worked(self, tok)
  if not self.refreshable or self.last_worked == tok then return end
  self.last_worked = tok
  self.store:set(self.key .. ":worked", tok, _M.REFRESH_INTERVAL + 2 * _M.EARLY)
end

-- Under the lock: replaces the refused token (see rejected).
local function replace(self, failed, code, what)
  local rec = self:read()
  if rec and rec.access_token ~= failed and fresh(self, rec) then return true end
  local now = self.now()
  local marker = self.key .. ":refreshed"
  -- the time is the value, so that a store that ignores ttls still keeps the rule
  local last = tonumber(self.store:get(marker)) or self.last_refresh
  local recent = last ~= nil and now - last < _M.REFRESH_INTERVAL
  if recent and not (self.last_worked == failed or self.store:get(self.key .. ":worked") == failed) then
    return errors.fail("token", format("%s: WeChat refused the access_token (errcode %s); the one before "
      .. "was replaced less than %d s ago and this one never worked, so it is not replaced again sooner",
      what, tostring(code), _M.REFRESH_INTERVAL), { errcode = code })
  end
  if not recent then
    self.last_refresh = now
    self.store:set(marker, tostring(now), _M.REFRESH_INTERVAL)
  end
  -- within the 30 s a stable token cannot be force-refreshed: a plain fetch still finds a token
  -- that another process force-refreshed meanwhile
  local new, msg, details = self:fetch(self.mode == "stable" and not recent)
  if new and new.access_token == failed then
    return errors.fail("token", format("%s: WeChat refused the stable access_token (errcode %s), which was "
      .. "force-refreshed less than %d s ago", what, tostring(code), _M.REFRESH_INTERVAL), { errcode = code })
  end
  if new then
    save(self, new)
  elseif rec then
    self.store:delete(self.key)  -- the next call fetches anew rather than send a refused token
  end
  if not new then return nil, msg, details end
  return true
end

-- WeChat refused `failed` (errcode 40001, 40014, 42001 or 41001). Makes a fresh token available
-- for one replay: returns true, or nil, message, details (kind "token" for read-only sources).
-- The store's token is replaced only if it is still the one that failed: another process may have
-- replaced it already, and that newer token must survive. A token that never worked is replaced at
-- most once per REFRESH_INTERVAL for the whole store: a storm of refusals (WeChat refusing every
-- token, servers fighting over classic tokens) then costs one token request per 30 s, not one per
-- call, and cannot burn the daily quota; a token that worked, then was invalidated, is replaced at
-- once. For the stable token the refresh is a force_refresh (WeChat allows one per 30 s).
function _M.rejected(self, failed, code, what)
  what = what or "token"
  if not self.refreshable then
    self.cached = nil  -- a provider may have a new token by the next call
    return self:refused(what, code)
  end
  return store_mod.locked(self.store, self.key .. ":lock", self.lock_timeout,
    replace, self, failed, code, what)
end

return _M
