-- The two token endpoints: argument checks in WeChat's order (appid, secret, grant_type), the
-- optional IP whitelist, then the token rules of wxemu.tokens.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local tokens = require "wxemu.tokens"
local wx = require "wxemu.wx"
local media = require "wxemu.media"
local redact = require "wxemu.redact"

local ngx = ngx
local arg = media.arg

local _M = {}

local function whitelisted(cfg)
  if not cfg.whitelist then return true end
  local ip = ngx.var.remote_addr
  for _, allowed in ipairs(cfg.whitelist) do
    if allowed == ip then return true end
  end
  local v6 = ip:find(":", 1, true) and ip or "::ffff:" .. ip
  return false, ("invalid ip %s ipv6 %s, not in whitelist"):format(ip, v6)
end

-- Returns nil when the credentials pass, else the errcode and errmsg to answer.
local function credentials(appid, secret, grant_type)
  local cfg = config.get()
  local expected = type(appid) == "string" and config.app_secret(cfg, appid)
  if not expected then return 40013 end
  redact.remember(expected)
  if secret ~= expected then return 40125 end
  if grant_type ~= "client_credential" then return 40002 end
  local ok, msg = whitelisted(cfg)
  if not ok then return 40164, msg end
end

local function answer(token, expires_in)
  return wx.ok(('{"access_token":"%s","expires_in":%d}'):format(token, expires_in))
end

-- GET /cgi-bin/token?grant_type=client_credential&appid=&secret=
function _M.token()
  local args = ngx.req.get_uri_args(100)
  local appid = arg(args.appid)
  local code, msg = credentials(appid, arg(args.secret), arg(args.grant_type))
  if code then return wx.fail(code, msg) end
  return answer(tokens.classic(appid))
end

-- POST /cgi-bin/stable_token {"grant_type":..,"appid":..,"secret":..,"force_refresh":false}
function _M.stable_token()
  if ngx.req.get_method() ~= "POST" then return wx.fail(43002) end
  local len = tonumber(ngx.var.content_length or "")
  if not len or len == 0 then return wx.fail(44002) end
  if len > 65536 then return wx.fail(47001) end
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "")
  if type(body) ~= "table" then return wx.fail(47001) end
  local code, msg = credentials(body.appid, body.secret, body.grant_type)
  if code then return wx.fail(code, msg) end
  local force = body.force_refresh
  if force ~= nil and type(force) ~= "boolean" then return wx.fail(47001) end
  local token, expires_in = tokens.stable(body.appid, force == true)
  if not token then return wx.fail(expires_in) end
  return answer(token, expires_in)
end

return _M
