-- access_tokens: the classic endpoint (a new token per call, the previous one valid 300 s more), the
-- stable endpoint (one token per appid, rotated in its last 300 s, force_refresh limited), and the
-- check every media call makes. All in one shared dict so every worker sees the same tokens.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local rand = require "wxemu.rand"
local redact = require "wxemu.redact"

local dict = ngx.shared.wxemu_tokens
local ngx = ngx
local math_floor, math_ceil, type = math.floor, math.ceil, type

local _M = {}

local OVERLAP = 300       -- seconds an old token keeps working after a rotation
local FORCE_GAP = 30      -- seconds between two force_refresh
local FORCE_PER_DAY = 20
local MAX_TOKEN_LEN = 512

-- How long (real seconds) a token's record is kept: the emulator clock runs at least as fast as the
-- real one, so the token has expired by then; the hour more keeps answering 42001, not 40001.
local function keep_for(lifetime)
  return lifetime + 3600
end

local function new_token(appid, now, lifetime)
  -- real tokens carry a version prefix ("37_", "75_", "86_"...) and ~130 more characters
  local token = "86_" .. rand.id(133)
  redact.remember(token)
  local rec = cjson.encode { appid = appid, expires_at = now + lifetime, keep = keep_for(lifetime) }
  -- set, not safe_set: when memory runs out, the least recently used (old) tokens make room
  dict:set("t:" .. token, rec, keep_for(lifetime))
  return token
end

-- Makes `token` stop working at `when` (unless it stops earlier anyway).
local function revoke(token, when)
  local text = dict:get("t:" .. token)
  local rec = text and cjson.decode(text)
  if not rec then return end
  if rec.revoked_at == nil or rec.revoked_at > when then
    rec.revoked_at = when
    local ttl = dict:ttl("t:" .. token)
    dict:set("t:" .. token, cjson.encode(rec), ttl and ttl > 0 and ttl or rec.keep or 0)
  end
end

-- A tiny cross-worker lock (shared dict add with a short expiry), around read-modify-write of a key.
local function with_lock(key, fn, ...)
  local lock = "lock:" .. key
  for _ = 1, 2000 do
    if dict:add(lock, true, 1) then break end
    ngx.sleep(0.001)
  end
  local ok, a, b = pcall(fn, ...)
  dict:delete(lock)
  if not ok then error(a, 0) end
  return a, b
end

-- GET /cgi-bin/token: returns token, expires_in.
function _M.classic(appid)
  local cfg = config.get()
  return with_lock("c:" .. appid, function()
    local now = clock.now()
    local token = new_token(appid, now, cfg.token_lifetime)
    local previous = dict:get("c:" .. appid)
    dict:set("c:" .. appid, token)
    if previous then revoke(previous, now + OVERLAP) end
    return token, cfg.token_lifetime
  end)
end

-- The day of the emulator clock in Beijing time, when WeChat's daily quotas start over.
local function quota_day(now)
  return math_floor((now + 8 * 3600) / 86400)
end

-- POST /cgi-bin/stable_token: returns token, expires_in; or nil, errcode.
function _M.stable(appid, force)
  local cfg = config.get()
  return with_lock("s:" .. appid, function()
    local now = clock.now()
    local text = dict:get("s:" .. appid)
    local st = text and cjson.decode(text) or { forced = 0, day = quota_day(now) }
    if st.day ~= quota_day(now) then st.day, st.forced = quota_day(now), 0 end
    local rotate = st.token == nil or now >= st.expires_at - OVERLAP
    if force then
      if (st.last_force and now - st.last_force < FORCE_GAP) or st.forced >= FORCE_PER_DAY then
        return nil, 45009
      end
      st.forced = st.forced + 1
      st.last_force = now
      -- a forced refresh invalidates the previous stable token at once
      if st.token then revoke(st.token, now) end
      rotate = true
    end
    if rotate then
      -- otherwise the previous token simply runs to its own end (at most OVERLAP seconds away)
      st.token = new_token(appid, now, cfg.token_lifetime)
      st.expires_at = now + cfg.token_lifetime
    end
    dict:set("s:" .. appid, cjson.encode(st))
    return st.token, math_ceil(st.expires_at - now)
  end)
end

-- Checks an access_token from a media call: returns its appid, or nil, errcode.
function _M.check(token)
  if type(token) ~= "string" or token == "" then return nil, 41001 end
  if #token > MAX_TOKEN_LEN or token:find("[^%w_%-]") then return nil, 40014 end
  redact.remember(token)
  local text = dict:get("t:" .. token)
  local rec = text and cjson.decode(text)
  if not rec then return nil, 40001 end
  local now = clock.now()
  -- replaced before its natural end: "invalid or not latest"
  if rec.revoked_at and rec.revoked_at < rec.expires_at and now >= rec.revoked_at then return nil, 40001 end
  if now >= rec.expires_at then return nil, 42001 end
  return rec.appid
end

function _M.clear()
  dict:flush_all()
end

return _M
