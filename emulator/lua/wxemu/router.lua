-- Every request outside /__emulator/: picks the WeChat route, applies a queued fault, runs the
-- handler. A Lua error answers WeChat's "system error" and is logged (redacted) in logs/emulator.log.
local faults = require "wxemu.faults"
local token_api = require "wxemu.token_api"
local media = require "wxemu.media"
local wx = require "wxemu.wx"
local send = require "wxemu.send"
local message = require "wxemu.message"
local redact = require "wxemu.redact"

local ngx = ngx

local _M = {}

local ROUTES = {
  ["/cgi-bin/token"] = { "token", token_api.token },
  ["/cgi-bin/stable_token"] = { "stable_token", token_api.stable_token },
  ["/cgi-bin/media/upload"] = { "upload", media.upload },
  ["/cgi-bin/media/get"] = { "get", media.get },
  ["/cgi-bin/media/get/jssdk"] = { "jssdk", media.jssdk },
  ["/cgi-bin/message/custom/send"] = { "custom_send", message.custom_send },
}

local HTML = {
  [204] = "204 No Content", [412] = "412 Precondition Failed",
  [429] = "429 Too Many Requests", [500] = "500 Internal Server Error", [502] = "502 Bad Gateway",
  [503] = "503 Service Temporarily Unavailable", [504] = "504 Gateway Time-out",
}

-- A gateway's answer: the status, and nginx's HTML page for it or an empty body.
local function gateway(status, html)
  local body = html and ("<html>\r\n<head><title>" .. HTML[status]
    .. "</title></head>\r\n<body>\r\n<center><h1>" .. HTML[status]
    .. "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n") or ""
  return send.reply(status, { ["Content-Type"] = "text/html" }, body)
end

-- Reads a part of the request body (when there is one), then drops the connection.
local function reset_request()
  local len = tonumber(ngx.var.content_length or "") or 0
  if len > 0 then
    local sock = ngx.req.socket()
    if sock then
      sock:settimeout(5000)
      sock:receive(math.max(1, math.min(65536, math.floor(len / 2))))
    end
  end
  return send.abort()
end

-- Applies the fault of this request; returns only when the handler is to run.
local function apply(fault)
  local kind = fault.kind
  if kind == "status" then
    return gateway(fault.status, fault.body == "html")
  elseif kind == "errcode" then
    return wx.fail(fault.errcode, fault.errmsg)
  elseif kind == "delay" then
    ngx.sleep(fault.seconds)
  elseif kind == "reset_request" then
    return reset_request()
  elseif kind == "octet_json" then
    -- a CDN (or a gateway) passing on WeChat's error as if it were a file, without its name
    ngx.ctx.errcode = fault.errcode
    return send.reply(200, { ["Content-Type"] = "application/octet-stream" },
      wx.error_body(fault.errcode, fault.errmsg))
  elseif kind == "bom_json" then
    -- the body that wxemu.send puts under the handler's headers (a file's type and name)
    fault.json = wx.error_body(fault.errcode, fault.errmsg)
  end
  -- the kinds of faults.ON_ANSWER reshape the answer (wxemu.send)
end

local function dispatch()
  local ctx = ngx.ctx
  local uri = ngx.var.uri
  local route = ROUTES[uri]
  local name, handler, video_id
  if route then
    name, handler = route[1], route[2]
  else
    video_id = uri:match("^/cdn/video/([%w_%-]+)%.mp4$")
    if video_id then name = "video" end
  end
  ctx.route = name or "other"
  -- WeChat's gateway wants a body's length up front: a chunked body (no Content-Length) gets 412
  -- before anything else looks at the request
  if ngx.var.http_transfer_encoding and not ngx.var.content_length then return gateway(412, true) end
  if not name then return wx.fail(40066) end
  local fault = faults.take(name)
  if fault then
    ctx.fault = fault
    apply(fault)
  end
  if video_id then return media.video(video_id) end
  return handler()
end

function _M.handle()
  local ok, err = pcall(dispatch)
  if not ok then
    redact.log_error(err)
    if not ngx.headers_sent then
      ngx.ctx.fault = nil
      return wx.fail(-1)
    end
    return send.abort()
  end
end

return _M
