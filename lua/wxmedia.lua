-- wxmedia: upload and download WeChat Official Account temporary media.
--   local wxmedia = require "wxmedia"
--   local res, err, details = wxmedia.upload("image", "photo.jpg")
--   local got, err, details = wxmedia.get(res.media_id, "copy.jpg")
-- The module-level functions use one client, built on first use from wxmedia.configure{...} or from
-- the environment (WECHAT_APPID + WECHAT_APPSECRET, or WECHAT_ACCESS_TOKEN; WXMEDIA_BASE_URL).
-- wxmedia.new{...} makes independent clients. Nothing here touches ngx: the OpenResty adapter is
-- wxmedia.ngx.
local os_getenv, pairs = os.getenv, pairs
local client = require "wxmedia.client"
local errors = require "wxmedia.errors"

local _M = { _VERSION = "0.1.0" }

_M.store = require "wxmedia.store"
_M.media = require "wxmedia.media"
_M.errors = errors
_M.token_source = require "wxmedia.token"
_M.reuse = require "wxmedia.reuse"

local config        -- the options of configure(), or nil
local default       -- the module-level client, once built

-- syntax: client, err, details = wxmedia.new(opts)
function _M.new(opts)
  client.check_arg(1, "new", opts, "table", 2)
  return client.new(opts)
end

-- Options from the environment; nil when it names no token source.
local function from_env()
  local appid, secret = os_getenv("WECHAT_APPID"), os_getenv("WECHAT_APPSECRET")
  local tok = os_getenv("WECHAT_ACCESS_TOKEN")
  local opts
  if appid and appid ~= "" and secret and secret ~= "" then
    opts = { appid = appid, secret = secret }
  elseif tok and tok ~= "" then
    opts = { access_token = tok }
  else
    return nil
  end
  return opts
end

local function with_env_base_url(opts)
  local base = os_getenv("WXMEDIA_BASE_URL")
  if opts.base_url == nil and base and base ~= "" then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.base_url = base
    return copy
  end
  return opts
end

-- syntax: ok, err, details = wxmedia.configure(opts)   (the options of wxmedia.new)
-- Replaces the module-level client; the environment is no longer read.
function _M.configure(opts)
  client.check_arg(1, "configure", opts, "table", 2)
  local c, err, details = client.new(with_env_base_url(opts))
  if not c then return nil, err, details end
  config, default = opts, c
  return true
end

local function module_client()
  if default then return default end
  local opts = config or from_env()
  if not opts then
    return errors.input("wxmedia is not configured: call wxmedia.configure{...} or set WECHAT_APPID and "
      .. "WECHAT_APPSECRET (or WECHAT_ACCESS_TOKEN)")
  end
  local c, err, details = client.new(with_env_base_url(opts))
  if not c then return nil, err, details end
  default = c
  return c
end

-- The module-level form of a client method taking (string, string [, table]): the same checks,
-- raised at the caller, then the module-level client's method.
local function module_method(name)
  return function(a, path, opts)
    client.check_arg(1, name, a, "string", 2)
    client.check_arg(2, name, path, "string", 2)
    client.check_arg(3, name, opts, "table?", 2)
    local c, err, details = module_client()
    if not c then return nil, err, details end
    return c[name](c, a, path, opts)
  end
end

-- syntax: res, err, details = wxmedia.upload(type, path [, opts])
_M.upload = module_method("upload")

-- syntax: res, err, details = wxmedia.get(media_id, path [, opts])
_M.get = module_method("get")

-- syntax: res, err, details = wxmedia.media_id(type, path [, opts])
-- Reuses the media_id of an earlier upload of the same content while it has more than
-- opts.reuse_margin (default 6 h) of WeChat's 3 days left; else uploads. res.reused says which.
_M.media_id = module_method("media_id")

-- syntax: forgotten = wxmedia.forget(media_id)
function _M.forget(media_id)
  client.check_arg(1, "forget", media_id, "string", 2)
  local c = module_client()
  if not c then return false end
  return c:forget(media_id)
end

-- syntax: tok, err, details = wxmedia.token([force])
function _M.token(force)
  local c, err, details = module_client()
  if not c then return nil, err, details end
  return c:token(force)
end

return _M
