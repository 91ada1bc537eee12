-- WeChat's side of an account's callback: a user's message is posted, signed, as XML to the URL the
-- account configured; with no answer within the deadline (5 s) WeChat posts the same message again,
-- 3 attempts in all; the answer is a passive reply the user sees, or "success" (or nothing) for no
-- reply, and anything else makes WeChat show the user its notice that the account cannot serve.
--
-- The HTTP client is nginx's own proxy module, reached through a subrequest to the internal location
-- /__emulator/callback_proxy (see the nginx.conf of wxmedia-emulator): its upstream's balancer
-- (balance below) picks the callback's address and sets the deadline as the connect, send and read
-- timeouts of each attempt. Each delivery is kept in a shared dict, attempt by attempt, for the
-- control API.
local cjson = require "cjson.safe"
local balancer = require "ngx.balancer"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local media = require "wxemu.media"
local sign = require "wxemu.sign"
local users = require "wxemu.users"
local xml = require "wxemu.xml"

local ngx = ngx
local dict = ngx.shared.wxemu_users
local state = ngx.shared.wxemu_state
local type, pairs, tostring, tonumber = type, pairs, tostring, tonumber
local math_floor, math_random = math.floor, math.random

local _M = {}

-- What WeChat shows the user when the account's server did not answer, or answered what WeChat
-- cannot show ("This account cannot serve at the moment, please try again later").
_M.NOTICE = "该公众号暂时无法提供服务，请稍后再试"

-- A passive reply's XML element for each message type, and its fields under the names of the
-- customer-service JSON (wxemu.message.FIELDS), so the user's log has one shape for both.
local REPLY = {
  text = { Content = "content" },
  image = { element = "Image", MediaId = "media_id" },
  voice = { element = "Voice", MediaId = "media_id" },
  video = { element = "Video", MediaId = "media_id", Title = "title", Description = "description" },
  music = { element = "Music", Title = "title", Description = "description", MusicUrl = "musicurl",
    HQMusicUrl = "hqmusicurl", ThumbMediaId = "thumb_media_id" },
}

-- The medium a reply's media field must name, by message type and field.
local REPLY_MEDIA = {
  image = { media_id = { image = true } },
  voice = { media_id = { voice = true } },
  video = { media_id = { video = true } },
  music = { thumb_media_id = { thumb = true, image = true } },
}

local function generation()
  return state:get("generation") or 0
end

-- Called by reset: deliveries under way stop recording (their records are gone).
function _M.forget()
  state:incr("generation", 1, 0)
end

-- A MsgId: a decimal number, unique for the life of the emulator (reset does not restart it).
local function new_msg_id()
  return ("%d%06d"):format(state:get("started_at") or 0, state:incr("msg_seq", 1, 0) % 1000000)
end

local function save(rec)
  if rec.generation ~= generation() then return end
  local ok, err = dict:safe_set("d:" .. rec.msg_id, cjson.encode(rec))
  if not ok then error("cannot record the delivery: " .. tostring(err)) end
end

-- The record of the delivery of message `msg_id`, or nil.
function _M.get(msg_id)
  return cjson.decode(dict:get("d:" .. tostring(msg_id)) or "")
end

-- The XML fields of a user's message (WeChat's order), by msg_type.
local function message_fields(original_id, openid, now, msg, msg_id)
  local fields = {
    { "ToUserName", original_id }, { "FromUserName", openid }, { "CreateTime", now, "plain" },
    { "MsgType", msg.msg_type },
  }
  local t = msg.msg_type
  if t == "text" then
    fields[#fields + 1] = { "Content", msg.content }
  elseif t == "image" then
    fields[#fields + 1] = { "MediaId", msg.media_id }
  elseif t == "voice" then
    fields[#fields + 1] = { "MediaId", msg.media_id }
    fields[#fields + 1] = { "Format", msg.format }
  elseif t == "event" then
    fields[#fields + 1] = { "Event", msg.event }
  end
  -- events carry no MsgId (WeChat's advice: tell their retries apart by FromUserName + CreateTime)
  if t ~= "event" then fields[#fields + 1] = { "MsgId", msg_id, "plain" } end
  return fields
end

-- A user of `appid` writes: msg = { openid, msg_type = text|image|voice|event, content, media_id,
-- format (voice), event = subscribe|unsubscribe }, already checked by the control API. Records it in
-- wxemu.users (the 48-hour window starts again) and returns the delivery record, not yet delivered.
function _M.user_writes(appid, msg)
  local cfg = config.get()
  local now = math_floor(clock.now())
  if msg.msg_type == "event" and msg.event == "unsubscribe" then
    users.unsubscribed(appid, msg.openid)
  else
    users.wrote(appid, msg.openid, clock.now())
  end
  local msg_id = new_msg_id()
  local rec = {
    msg_id = msg_id, appid = appid, openid = msg.openid, msg_type = msg.msg_type, event = msg.event,
    create_time = now, state = "pending", attempts = {}, generation = generation(),
  }
  local target = config.callback(cfg, appid)
  if not target then
    rec.state, rec.outcome = "done", "no_callback"
  else
    local timestamp = tostring(now)
    local nonce = tostring(math_random(100000000, 2147483647))
    local query = "signature=" .. sign.signature(target.token, timestamp, nonce) .. "&timestamp=" .. timestamp
      .. "&nonce=" .. nonce .. "&openid=" .. msg.openid
    rec.request = {
      uri = target.path .. (target.path:find("?", 1, true) and "&" or "?") .. query,
      body = xml.build(message_fields(config.original_id(cfg, appid), msg.openid, now, msg, msg_id)),
    }
  end
  save(rec)
  return rec
end

-- balancer_by_lua of the callback upstream: the address and deadline the subrequest carries.
function _M.balance()
  local ctx = ngx.ctx
  local ok, err = balancer.set_current_peer(ctx.addr, ctx.port)
  if not ok then return ngx.log(ngx.CRIT, "wxmedia emulator: callback address: ", err) end
  ok, err = balancer.set_timeouts(ctx.timeout, ctx.timeout, ctx.timeout)
  if not ok then ngx.log(ngx.CRIT, "wxmedia emulator: callback timeouts: ", err) end
end

-- header_filter of the proxy location: whether the callback's server sent a header at all (nginx's
-- own 502 and 504 pages have none from it).
function _M.header_filter()
  local t = ngx.var.upstream_header_time
  ngx.ctx.answered = t ~= nil and tonumber(t) ~= nil
end

-- One attempt: returns the attempt's record, and the body when the server answered in time.
local function attempt(rec, target, timeout)
  local sub = { addr = target.addr, port = target.port, timeout = timeout }
  ngx.update_time()
  local at, started = clock.now(), ngx.now()
  local res = ngx.location.capture("/__emulator/callback_proxy", {
    method = ngx.HTTP_POST, body = rec.request.body, ctx = sub,
    vars = { wxemu_cb_uri = rec.request.uri, wxemu_cb_host = target.host },
  })
  ngx.update_time()
  local a = { at = at, duration = ngx.now() - started }
  if not sub.answered then
    a.result = res.status == 504 and "timeout" or "connection failed"
  else
    a.status = res.status
    if a.duration > timeout then
      -- a slow body: WeChat has hung up by then
      a.result = "timeout"
    elseif res.truncated then
      a.result = "broken answer"
    elseif res.status ~= 200 then
      a.result = "HTTP " .. res.status
    else
      a.result = "answered"
      return a, res.body or ""
    end
  end
  return a
end

-- Why a passive reply cannot be shown, or nil when it can; fills `reply.message` (the reply in the
-- customer-service JSON's shape) on the way.
local function reply_problem(rec, reply, cfg)
  local f = reply.fields
  if f.ToUserName ~= rec.openid then return "ToUserName is not the user's openid" end
  if f.FromUserName ~= config.original_id(cfg, rec.appid) then return "FromUserName is not the account" end
  if type(f.CreateTime) ~= "string" or not f.CreateTime:find("^%d+$") then return "no CreateTime" end
  local msgtype = f.MsgType
  local shape = type(msgtype) == "string" and REPLY[msgtype]
  if not shape then return "MsgType " .. tostring(msgtype) .. " is not one the emulator plays" end
  local source = shape.element and f[shape.element] or f
  if type(source) ~= "table" then return "no " .. tostring(shape.element) .. " element" end
  local out = {}
  for tag, name in pairs(shape) do
    if tag ~= "element" then
      if type(source[tag]) == "table" then return tag .. " holds elements" end
      out[name] = source[tag]
    end
  end
  if msgtype == "text" and (out.content or "") == "" then return "an empty Content" end
  for name, types in pairs(REPLY_MEDIA[msgtype] or {}) do
    local meta = media.live(out[name], rec.appid)
    if not meta or not types[meta.type] then return name .. " is not a live medium of the account" end
  end
  reply.message = { via = "passive", msgtype = msgtype, [msgtype] = out, msg_id = rec.msg_id }
end

-- The outcome of a delivery whose server answered `body`.
local function judge(rec, body, cfg)
  local trimmed = body:match("^%s*(.-)%s*$")
  if trimmed == "" or trimmed == "success" then return "none" end
  local fields, err = xml.parse(body)
  rec.reply = { body = body:sub(1, xml.MAX_REPLY), fields = fields }
  if not fields then return "invalid", err end
  local problem = reply_problem(rec, rec.reply, cfg)
  if problem then return "invalid", problem end
  return "reply"
end

-- Posts the message of `rec` to the account's callback, attempt after attempt, and records what
-- came of it; what the user saw goes to their log (wxemu.users). Runs in a request's context
-- (ngx.location.capture needs one): the control call's, before or after it answered.
function _M.deliver(rec)
  if rec.state == "done" then return rec end
  local cfg = config.get()
  local target = config.callback(cfg, rec.appid)
  local body, last
  for _ = 1, cfg.callback_attempts do
    if not target then break end
    local a
    a, body = attempt(rec, target, cfg.callback_timeout)
    rec.attempts[#rec.attempts + 1] = a
    last = a.result
    save(rec)
    if body then break end
  end
  if body then
    rec.outcome, rec.reason = judge(rec, body, cfg)
  else
    rec.outcome = "failed"
    rec.reason = last and ("%d attempts, the last: %s"):format(#rec.attempts, last)
      or "the callback was removed"
  end
  rec.state = "done"
  -- a user who stopped following the account sees nothing of it
  if rec.generation == generation() and rec.event ~= "unsubscribe" then
    if rec.outcome == "reply" then
      local entry = rec.reply.message
      entry.time = clock.now()
      users.receive(rec.appid, rec.openid, entry)
    elseif rec.outcome == "failed" or rec.outcome == "invalid" then
      users.receive(rec.appid, rec.openid, { via = "wechat", text = _M.NOTICE, msg_id = rec.msg_id,
        time = clock.now() })
    end
  end
  if rec.reply then rec.reply.message = nil end
  save(rec)
  return rec
end

return _M
