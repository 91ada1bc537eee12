-- Customer-service messages: POST /cgi-bin/message/custom/send, which an account may use to write to
-- a user within 48 hours of the user's last message, a few messages each time (wxemu.users keeps
-- the window and the count). What it sends lands in the user's log of what they received.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local tokens = require "wxemu.tokens"
local media = require "wxemu.media"
local users = require "wxemu.users"
local wx = require "wxemu.wx"

local ngx = ngx
local type, ipairs, tonumber = type, ipairs, tonumber

local _M = {}

-- The fields of each message type the emulator plays, as the JSON body names them; the same names
-- describe a passive reply in the user's log (wxemu.callback).
_M.FIELDS = {
  text = { "content" },
  image = { "media_id" },
  voice = { "media_id" },
  video = { "media_id", "thumb_media_id", "title", "description" },
  music = { "title", "description", "musicurl", "hqmusicurl", "thumb_media_id" },
}

-- The type of media each message type's media_id must be.
local MEDIA_TYPE = { image = "image", voice = "voice", video = "video" }

local MAX_BODY = 65536

-- Nil when `media_id` names a live medium of `appid` of one of `types`, else 40007.
local function check_media(appid, media_id, types)
  local meta = media.live(media_id, appid)
  if not meta or not types[meta.type] then return 40007 end
end

local THUMB = { thumb = true, image = true }

-- The errcode for a message object (the JSON's member named by its msgtype), or nil when it is good.
local function check_payload(appid, msgtype, payload)
  if type(payload) ~= "table" then return 47001 end
  for _, name in ipairs(_M.FIELDS[msgtype]) do
    if payload[name] ~= nil and type(payload[name]) ~= "string" then return 47001 end
  end
  if msgtype == "text" then
    if not payload.content or payload.content == "" then return 44004 end
  elseif msgtype == "music" then
    return check_media(appid, payload.thumb_media_id, THUMB)
  else
    local bad = check_media(appid, payload.media_id, { [MEDIA_TYPE[msgtype]] = true })
    if bad then return bad end
    if msgtype == "video" and payload.thumb_media_id and payload.thumb_media_id ~= "" then
      return check_media(appid, payload.thumb_media_id, THUMB)
    end
  end
end

-- The request's JSON object, or nil and WeChat's errcode.
local function read_json()
  local len = tonumber(ngx.var.content_length or "")
  if not len or len == 0 then return nil, 44002 end
  if len > MAX_BODY then return nil, 47001 end
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "")
  -- an object; a list is no message
  if type(body) ~= "table" or body[1] ~= nil then return nil, 47001 end
  return body
end

-- POST /cgi-bin/message/custom/send?access_token=  {"touser","msgtype",<msgtype>: {...}}
function _M.custom_send()
  local appid, code = tokens.check(media.arg(ngx.req.get_uri_args(100).access_token))
  if not appid then return wx.fail(code) end
  if ngx.req.get_method() ~= "POST" then return wx.fail(43002) end
  local body, bad = read_json()
  if not body then return wx.fail(bad) end
  local openid, msgtype = body.touser, body.msgtype
  if type(openid) ~= "string" or not users.get(appid, openid) then return wx.fail(40003) end
  if type(msgtype) ~= "string" or not _M.FIELDS[msgtype] then return wx.fail(40008) end
  bad = check_payload(appid, msgtype, body[msgtype])
  if bad then return wx.fail(bad) end
  local cfg = config.get()
  local now = clock.now()
  bad = users.take_custom(appid, openid, now, cfg.custom_window, cfg.custom_limit)
  if bad then return wx.fail(bad) end
  local kept = {}
  for _, name in ipairs(_M.FIELDS[msgtype]) do kept[name] = body[msgtype][name] end
  users.receive(appid, openid, { via = "custom", msgtype = msgtype, [msgtype] = kept, time = now })
  return wx.ok('{"errcode":0,"errmsg":"ok"}')
end

return _M
