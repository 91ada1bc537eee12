-- The users of each account, as WeChat knows them: whether they follow the account, when they last
-- wrote (which opens the 48-hour window for customer-service messages), how many such messages they
-- got since, and what they received (customer-service messages, passive replies, WeChat's own notice
-- when the account failed to answer). In a shared dict, so every worker sees the same users.
local cjson = require "cjson.safe"

local dict = ngx.shared.wxemu_users
local tostring = tostring

local _M = {}

local function key(prefix, appid, openid)
  return prefix .. appid .. ":" .. openid
end

-- The user's record { subscribed, last_message_at }, or nil for an openid the account never saw.
function _M.get(appid, openid)
  return cjson.decode(dict:get(key("u:", appid, openid)) or "")
end

local function put(appid, openid, rec)
  -- safe_set: a full dict answers an error rather than forgetting other users
  local ok, err = dict:safe_set(key("u:", appid, openid), cjson.encode(rec))
  if not ok then error("cannot record the user: " .. tostring(err)) end
end

-- The user wrote (or followed the account) at `now`: the 48-hour window starts again, and with it
-- the count of customer-service messages.
function _M.wrote(appid, openid, now)
  put(appid, openid, { subscribed = true, last_message_at = now })
  dict:set(key("n:", appid, openid), 0)
end

-- The user stopped following the account: WeChat answers 45015 to messages sent to them.
function _M.unsubscribed(appid, openid)
  local rec = _M.get(appid, openid) or {}
  rec.subscribed = false
  put(appid, openid, rec)
end

-- Takes one customer-service message to the user at `now`: nil when it may be sent (it is then
-- counted), else WeChat's errcode: 40003 (unknown openid), 45015 (outside the window, or
-- unsubscribed), 45047 (over `limit` since the user last wrote).
function _M.take_custom(appid, openid, now, window, limit)
  local rec = _M.get(appid, openid)
  if not rec then return 40003 end
  if not rec.subscribed or not rec.last_message_at or now - rec.last_message_at >= window then
    return 45015
  end
  local n = dict:incr(key("n:", appid, openid), 1, 0)
  if n > limit then
    dict:incr(key("n:", appid, openid), -1)
    return 45047
  end
end

-- Customer-service messages counted since the user last wrote.
function _M.custom_count(appid, openid)
  return dict:get(key("n:", appid, openid)) or 0
end

-- Appends `entry` (a table) to what the user received (numbered entries, as in wxemu.reqlog, so a
-- reader never disturbs a writer).
function _M.receive(appid, openid, entry)
  local n = dict:incr(key("rn:", appid, openid), 1, 0)
  local ok, err = dict:safe_set(key("r:", appid, openid) .. ":" .. n, cjson.encode(entry))
  if not ok then error("cannot record what the user received: " .. tostring(err)) end
end

-- What the user received, oldest first (a list of tables).
function _M.received(appid, openid)
  local out = {}
  local prefix = key("r:", appid, openid) .. ":"
  for i = 1, dict:get(key("rn:", appid, openid)) or 0 do
    out[#out + 1] = cjson.decode(dict:get(prefix .. i) or "")
  end
  return out
end

function _M.clear()
  dict:flush_all()
end

return _M
