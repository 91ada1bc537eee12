-- WeChat's answers: JSON bodies with WeChat's content type, and its errors with their real errmsg
-- texts (HTTP 200, {"errcode":N,"errmsg":"..."}), optionally with the " hint: [..] rid: .." suffix.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local rand = require "wxemu.rand"
local send = require "wxemu.send"

local ngx = ngx
local math_floor = math.floor

local _M = {}

_M.ERRMSG = {
  [-1] = "system error",
  [40001] = "invalid credential, access_token is invalid or not latest",
  [40002] = "invalid grant_type",
  [40003] = "invalid openid",
  [40004] = "invalid media type",
  [40005] = "invalid file type",
  [40006] = "invalid media size",
  [40007] = "invalid media_id",
  [40008] = "invalid message type",
  [40009] = "invalid image size",
  [40010] = "invalid voice size",
  [40011] = "invalid video size",
  [40012] = "invalid thumb size",
  [40013] = "invalid appid",
  [40014] = "invalid access_token",
  [40066] = "invalid url",
  [40125] = "invalid appsecret",
  [40164] = "invalid ip, not in whitelist",
  [41001] = "access_token missing",
  [41002] = "appid missing",
  [41004] = "appsecret missing",
  [41005] = "media data missing",
  [41006] = "media_id missing",
  [42001] = "access_token expired",
  [43002] = "require POST method",
  [44001] = "empty media data",
  [44002] = "empty post data",
  [44004] = "empty content",
  [45001] = "media size out of limit",
  [45007] = "playtime out of limit",
  [45009] = "reach max api daily quota limit",
  [45011] = "api minute-quota reach limit  mustslower  retry next minute",
  [45015] = "response out of time limit or subscription is canceled",
  [45047] = "out of response count limit",
  [47001] = "data format error",
  [48001] = "api unauthorized",
  [50001] = "api unauthorized",
  [50002] = "user limited",
  [61004] = "access clientip is not registered",
}

function _M.content_type()
  return config.get().legacy_text_plain and "text/plain" or "application/json; encoding=utf-8"
end

-- WeChat's suffix: an opaque hint and a request id whose first group is the unix time in hex.
local function suffix()
  return (" hint: [%s] rid: %08x-%s-%s"):format(rand.alnum(14), math_floor(clock.now()),
    rand.hex32(), rand.hex32())
end

function _M.errmsg(code, msg)
  msg = msg or _M.ERRMSG[code] or "system error"
  if config.get().hint_suffix then msg = msg .. suffix() end
  return msg
end

-- WeChat's error JSON text.
function _M.error_body(code, msg)
  return '{"errcode":' .. code .. ',"errmsg":' .. cjson.encode(_M.errmsg(code, msg)) .. "}"
end

-- Answers a WeChat error and ends the request.
function _M.fail(code, msg)
  ngx.ctx.errcode = code
  return send.reply(200, { ["Content-Type"] = _M.content_type() }, _M.error_body(code, msg))
end

-- Answers a success body (already JSON text) and ends the request.
function _M.ok(json_text, content_type)
  ngx.ctx.errcode = 0
  return send.reply(200, { ["Content-Type"] = content_type or _M.content_type() }, json_text)
end

return _M
