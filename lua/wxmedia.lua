-- wxmedia: upload and download WeChat Official Account temporary media.
--   local wxmedia = require "wxmedia"
--   local res, err, details = wxmedia.upload("image", "photo.jpg")
--   local got, err, details = wxmedia.get(res.media_id, "copy.jpg")
-- The module-level functions use one client, built on first use from wxmedia.configure{...} and
-- the environment (wxmedia.config reads it: WECHAT_APPID, WECHAT_APPSECRET, WECHAT_ACCESS_TOKEN,
-- WXMEDIA_BASE_URL). wxmedia.new{...} makes independent clients, reading the environment the same
-- way for what its options leave out. Nothing here touches ngx: the OpenResty adapter is wxmedia.ngx.
local client = require "wxmedia.client"
local config = require "wxmedia.config"
local errors = require "wxmedia.errors"
local source = require "wxmedia.source"
local transport = require "wxmedia.transport"

local _M = {
  -- the C core's version (nil when it cannot be loaded: every call then says why)
  _VERSION = transport.version(),
  store = require "wxmedia.store",
  media = require "wxmedia.media",
  errors = errors,
  token_source = require "wxmedia.token",
  reuse = require "wxmedia.reuse",
  reply = require "wxmedia.reply",
}

local config_opts   -- the options of configure(), or nil
local default       -- the module-level client, once built

-- syntax: client, err, details = wxmedia.new(opts)
function _M.new(opts)
  client.check_arg(1, "new", opts, "table", 2)
  return client.new(opts)
end

-- syntax: ok, err, details = wxmedia.configure(opts)   (the options of wxmedia.new)
-- Replaces the module-level client.
function _M.configure(opts)
  client.check_arg(1, "configure", opts, "table", 2)
  local c, err, details = client.new(opts)
  if not c then return nil, err, details end
  config_opts, default = opts, c
  return true
end

local function module_client()
  if default then return default end
  local c, err, details = client.new(config_opts or {})
  if not c then
    if details.kind == "config" and not config_opts then
      return errors.fail("config", "wxmedia is not configured: call wxmedia.configure{...} or set "
        .. config.ENV.appid .. " and " .. config.ENV.secret .. " (or " .. config.ENV.access_token .. "): "
        .. err, { option = details.option })
    end
    return nil, err, details
  end
  default = c
  return c
end

-- The module-level form of a client method taking (string, string or upload source [, table]): the
-- same checks, raised at the caller, then the module-level client's method.
local function module_method(name, takes_source)
  return function(a, path, opts)
    client.check_arg(1, name, a, "string", 2)
    if takes_source then
      source.check_arg(2, name, path, 2)
    else
      client.check_arg(2, name, path, "string", 2)
    end
    client.check_arg(3, name, opts, "table?", 2)
    local c, err, details = module_client()
    if not c then return nil, err, details end
    return c[name](c, a, path, opts)
  end
end

-- syntax: res, err, details = wxmedia.upload(type, file [, opts])
-- file: a path, { data = bytes, filename = }, or { file = a file handle or reader, size =, filename = }
_M.upload = module_method("upload", true)

-- syntax: res, err, details = wxmedia.get(media_id, path [, opts])
_M.get = module_method("get")

-- syntax: res, err, details = wxmedia.media_id(type, file [, opts])
-- Reuses the media_id of an earlier upload of the same content while it has more than
-- opts.reuse_margin (default 6 h) of WeChat's 3 days left; else uploads. res.reused says which.
_M.media_id = module_method("media_id", true)

-- syntax: file, err, details = wxmedia.check(type, file [, opts])
_M.check = module_method("check", true)

-- syntax: ok, err, details = wxmedia.send(openid, message [, opts])
function _M.send(openid, message, opts)
  local c, err, details = module_client()
  if not c then return nil, err, details end
  return c:send(openid, message, opts)
end

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
