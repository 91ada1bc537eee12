-- The emulator's configuration: defaults, the 2014 preset, validation and merging of a JSON config,
-- and the running config shared by all workers (kept JSON-encoded in a shared dict, cached per
-- worker by a version number so a request pays one dict read for it).
local cjson = require "cjson.safe"
local sign = require "wxemu.sign"

local state = ngx.shared.wxemu_state
local type, pairs, ipairs, tostring, math_floor = type, pairs, ipairs, tostring, math.floor

local _M = {}

_M.TYPES = { "image", "voice", "video", "thumb" }

local function defaults()
  return {
    apps = {
      { appid = "wx1234567890abcdef", secret = "0123456789abcdef0123456789abcdef" },
      { appid = "wxfedcba0987654321", secret = "fedcba9876543210fedcba9876543210" },
    },
    token_lifetime = 7200,
    limits = { image = 10485760, voice = 2097152, video = 10485760, thumb = 65536 },
    legacy_text_plain = false,
    hint_suffix = false,
    thumb_media_id = false,
    whitelist = nil,
    media_ttl = 259200,
    callbacks = {},
    callback_timeout = 5,
    callback_attempts = 3,
    custom_window = 172800,
    custom_limit = 5,
  }
end

-- The 2014 article's limits (http://file.api.weixin.qq.com days).
local PRESETS = {
  ["2014"] = { limits = { image = 131072, voice = 262144, video = 1048576, thumb = 65536 } },
}

local function is_count(v)
  return type(v) == "number" and v >= 1 and v == math_floor(v) and v < 2 ^ 53
end

local function is_positive(v)
  return type(v) == "number" and v > 0 and v < 2 ^ 53
end

local function boolean(v, name)
  if type(v) ~= "boolean" then return name .. " must be a boolean" end
end

-- A callback URL: http://, an IP address (nginx's balancer connects to addresses, not names), an
-- optional port, a path and an optional query. Returns { addr, port, host, path } or nil.
function _M.parse_url(url)
  if type(url) ~= "string" or #url > 2048 or url:find("[%s%c#]") then return nil end
  local addr, rest = url:match("^http://(%d+%.%d+%.%d+%.%d+)(.*)$")
  local host = addr
  if not addr then
    addr, rest = url:match("^http://%[([%x:%.]+)%](.*)$")
    host = addr and "[" .. addr .. "]"
  end
  if not addr then return nil end
  local port, path = rest:match("^:(%d+)(.*)$")
  if port then
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil end
    host = host .. ":" .. port
  else
    port, path = 80, rest
  end
  if path == "" then path = "/" end
  if path:sub(1, 1) ~= "/" then return nil end
  return { addr = addr, port = port, host = host, path = path }
end

-- WeChat's rule for the token of a callback: 3 to 32 letters or digits.
local function check_callback(appid, cb)
  if type(appid) ~= "string" then return "callbacks must map appids to {\"url\", \"token\"}" end
  if cb == cjson.null or cb == false then return end
  if type(cb) ~= "table" or not _M.parse_url(cb.url) then
    return "callbacks." .. appid .. ".url must be http://IP[:PORT]/path (an IP address, not a name)"
  end
  if type(cb.token) ~= "string" or not cb.token:find("^%w+$") or #cb.token < 3 or #cb.token > 32 then
    return "callbacks." .. appid .. ".token must be 3 to 32 letters or digits"
  end
end

local checks = {
  apps = function(v)
    if type(v) ~= "table" or #v == 0 then return "apps must be a non-empty list" end
    for _, app in ipairs(v) do
      if type(app) ~= "table" or type(app.appid) ~= "string" or app.appid == ""
          or type(app.secret) ~= "string" or app.secret == "" then
        return "each app needs a string appid and secret"
      end
      local id = app.original_id
      if id ~= nil and (type(id) ~= "string" or not id:find("^[%w_]+$")) then
        return "an app's original_id must be letters, digits and _ (gh_…)"
      end
    end
  end,
  token_lifetime = function(v)
    if not is_count(v) then return "token_lifetime must be a whole number > 0" end
  end,
  media_ttl = function(v) if not is_positive(v) then return "media_ttl must be a number > 0" end end,
  limits = function(v)
    if type(v) ~= "table" then return "limits must be an object" end
    for k, n in pairs(v) do
      if type(k) ~= "string" or not ({ image = 1, voice = 1, video = 1, thumb = 1 })[k] then
        return "unknown media type in limits: " .. tostring(k)
      end
      if not is_count(n) then return "limits." .. k .. " must be a whole number > 0" end
    end
  end,
  legacy_text_plain = function(v) return boolean(v, "legacy_text_plain") end,
  hint_suffix = function(v) return boolean(v, "hint_suffix") end,
  thumb_media_id = function(v) return boolean(v, "thumb_media_id") end,
  whitelist = function(v)
    if v == false or v == cjson.null then return end
    if type(v) ~= "table" then return "whitelist must be a list of IP addresses, or null" end
    for _, ip in ipairs(v) do
      if type(ip) ~= "string" then return "whitelist must be a list of IP addresses, or null" end
    end
  end,
  preset = function(v) if not PRESETS[tostring(v)] then return "unknown preset " .. tostring(v) end end,
  callbacks = function(v)
    if type(v) ~= "table" then return "callbacks must be an object {appid: {\"url\", \"token\"}}" end
    for appid, cb in pairs(v) do
      local err = check_callback(appid, cb)
      if err then return err end
    end
  end,
  callback_timeout = function(v)
    if not is_positive(v) or v > 300 then return "callback_timeout must be seconds, over 0 and up to 300" end
  end,
  callback_attempts = function(v)
    if not is_count(v) or v > 10 then return "callback_attempts must be a whole number from 1 to 10" end
  end,
  custom_window = function(v) if not is_positive(v) then return "custom_window must be a number > 0" end end,
  custom_limit = function(v) if not is_count(v) then return "custom_limit must be a whole number > 0" end end,
}

local function app_of(cfg, appid)
  for _, app in ipairs(cfg.apps) do
    if app.appid == appid then return app end
  end
end

-- Returns a new config: `patch` (decoded JSON) merged over `base`; limits merge key by key.
-- Returns nil, message on a bad key or value.
function _M.merge(base, patch)
  if type(patch) ~= "table" then return nil, "config must be a JSON object" end
  for k, v in pairs(patch) do
    if not checks[k] then return nil, "unknown config key " .. tostring(k) end
    local err = checks[k](v)
    if err then return nil, err end
  end
  local out = cjson.decode(cjson.encode(base))
  if patch.preset then
    for k, n in pairs(PRESETS[tostring(patch.preset)].limits) do out.limits[k] = n end
  end
  for k, v in pairs(patch) do
    if k == "limits" then
      for t, n in pairs(v) do out.limits[t] = n end
    elseif k == "callbacks" then
      -- appid by appid; null (or false) removes an account's callback
      for appid, cb in pairs(v) do
        out.callbacks[appid] = (cb ~= cjson.null and cb ~= false) and cb or nil
      end
    elseif k == "whitelist" then
      out.whitelist = (v ~= false and v ~= cjson.null) and v or nil
    elseif k ~= "preset" then
      out[k] = v
    end
  end
  for appid in pairs(out.callbacks) do
    if not app_of(out, appid) then return nil, "callbacks: no app has the appid " .. appid end
  end
  return out
end

-- The start config: defaults, then the preset, then the config file. Raises: nginx then refuses to start.
function _M.build_start(preset, config_file)
  local cfg = defaults()
  if preset and preset ~= "" then
    cfg = assert(_M.merge(cfg, { preset = preset }))
  end
  if config_file and config_file ~= "" then
    local f = assert(io.open(config_file, "rb"))
    local text = f:read("*a")
    f:close()
    local patch, err = cjson.decode(text)
    if patch == nil then error("config " .. config_file .. ": " .. tostring(err), 0) end
    local merged, merr = _M.merge(cfg, patch)
    if not merged then error("config " .. config_file .. ": " .. merr, 0) end
    cfg = merged
  end
  return cfg
end

-- Debian's lua-cjson has no empty_array: the one list that may be empty is the whitelist.
function _M.encode(cfg)
  local text = cjson.encode(cfg)
  return (text:gsub('"whitelist":{}', '"whitelist":[]'))
end

function _M.store(cfg)
  state:set("config", _M.encode(cfg))
  state:incr("config_version", 1, 0)
end

local cached, cached_version

-- The running config (a table shared by this worker's requests: do not modify it).
function _M.get()
  local v = state:get("config_version")
  if v ~= cached_version then
    cached = cjson.decode(state:get("config"))
    cached_version = v
  end
  return cached
end

function _M.app_secret(cfg, appid)
  local app = app_of(cfg, appid)
  return app and app.secret
end

-- The account's original ID (gh_…), the ToUserName of the messages its users send: the app's
-- original_id, else gh_ and 12 hex digits of the SHA-1 of its appid (stable, so specs can predict it).
function _M.original_id(cfg, appid)
  local app = app_of(cfg, appid)
  if not app then return nil end
  if app.original_id then return app.original_id end
  return "gh_" .. sign.sha1_hex(appid):sub(1, 12)
end

-- The account's callback: { addr, port, host, path, token }, or nil when it has none.
function _M.callback(cfg, appid)
  local cb = cfg.callbacks[appid]
  local target = cb and _M.parse_url(cb.url)
  if not target then return nil end
  target.token = cb.token
  return target
end

function _M.max_limit(cfg)
  local max = 0
  for _, n in pairs(cfg.limits) do
    if n > max then max = n end
  end
  return max
end

return _M
