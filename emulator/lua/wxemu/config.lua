-- The emulator's configuration: defaults, the 2014 preset, validation and merging of a JSON config,
-- and the running config shared by all workers (kept JSON-encoded in a shared dict, cached per
-- worker by a version number so a request pays one dict read for it).
local cjson = require "cjson.safe"

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

local checks = {
  apps = function(v)
    if type(v) ~= "table" or #v == 0 then return "apps must be a non-empty list" end
    for _, app in ipairs(v) do
      if type(app) ~= "table" or type(app.appid) ~= "string" or app.appid == ""
          or type(app.secret) ~= "string" or app.secret == "" then
        return "each app needs a string appid and secret"
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
}

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
    elseif k == "whitelist" then
      out.whitelist = (v ~= false and v ~= cjson.null) and v or nil
    elseif k ~= "preset" then
      out[k] = v
    end
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
  for _, app in ipairs(cfg.apps) do
    if app.appid == appid then return app.secret end
  end
end

function _M.max_limit(cfg)
  local max = 0
  for _, n in pairs(cfg.limits) do
    if n > max then max = n end
  end
  return max
end

return _M
