-- A client's configuration: the one list of options `wxmedia.new` takes (with the session options
-- the C core owns), the one reader of the environment, and the rules that turn both into the
-- settings of a client. Every entry point (wxmedia.new, the module-level client, the command line,
-- wxmedia.ngx) goes through resolve(), so they all read the same variables the same way:
--   * each setting is the option given, else its environment variable, else its default;
--   * the token source is the first of access_token, token_provider, appid with secret: those given
--     as options first, then those from the environment.
local error, ipairs, pairs, tonumber, tostring, type = error, ipairs, pairs, tonumber, tostring, type
local math_min = math.min
local format, sort = string.format, table.sort
local errors = require "wxmedia.errors"
local transport = require "wxmedia.transport"

local _M = {}

-- The environment variables, by the setting each one gives.
_M.ENV = {
  appid = "WECHAT_APPID",
  secret = "WECHAT_APPSECRET",
  access_token = "WECHAT_ACCESS_TOKEN",
  base_url = "WXMEDIA_BASE_URL",
}

-- The client's own options and their types ("store": a table or userdata with get and set). The
-- session options (base_url, timeout, ...) come from the C core: transport.session_options().
local CLIENT_OPTIONS = {
  appid = "string", secret = "string", access_token = "string", token_provider = "function",
  token_api = "string", token_store = "store", media_store = "store", retries = "number",
  backoff = "table", on_retry = "function", progress = "function", limits = "table",
  sleep = "function", now = "function", lock_timeout = "number", reuse_margin = "number",
  transport = "table", allow_http = "boolean", allow_private_urls = "boolean",
  on_warning = "function",
}

-- { name = type } of every option of wxmedia.new (extra: an adapter's own, such as wxmedia.ngx's).
function _M.options(extra)
  local all = {}
  for name, t in pairs(transport.session_options()) do all[name] = t end
  for name, t in pairs(CLIENT_OPTIONS) do all[name] = t end
  for name, t in pairs(extra or {}) do all[name] = t end
  return all
end

-- The number of single-character edits between two short strings (for "did you mean").
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math_min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The known name closest to `name`, when it is close enough to be a typo (two edits at most, or
-- the start of a longer name: "retry" for "retries").
function _M.suggest(name, names)
  local best, best_d
  for _, known in ipairs(names) do
    local d = distance(name, known)
    if #name >= 4 and known:sub(1, #name - 1) == name:sub(1, -2) then d = math_min(d, 2) end
    if d <= 2 and (not best_d or d < best_d) then best, best_d = known, d end
  end
  return best
end

local function sorted_keys(t)
  local names = {}
  for name in pairs(t) do names[#names + 1] = name end
  sort(names)
  return names
end

local function type_ok(value, expected)
  local t = type(value)
  if expected == "any" then return true end
  if expected == "store" then return t == "table" or t == "userdata" end
  return t == expected
end

-- Raises, at the caller's caller, for an option of opts that is not in known ({ name = type }) or
-- not of its type. Every check of options goes through here (new's and each call's).
function _M.check_against(opts, known, fname, level)
  for name, value in pairs(opts) do
    local expected = known[name]
    if expected == nil then
      local hint = type(name) == "string" and _M.suggest(name, sorted_keys(known))
      error(format("bad option '%s' to '%s' (unknown option%s)", tostring(name), fname,
        hint and ("; did you mean '" .. hint .. "'?") or ""), level + 1)
    elseif not type_ok(value, expected) then
      error(format("bad option '%s' to '%s' (%s expected, got %s)", name, fname,
        expected == "store" and "a store with get and set methods" or expected, type(value)), level + 1)
    end
  end
end

-- Raises, at the caller's caller, for an option of wxmedia.new (and an adapter's extra ones) that
-- is unknown or of the wrong type.
function _M.check(opts, fname, level, extra)
  _M.check_against(opts, _M.options(extra), fname, level + 1)
end

-- Loopback and private hosts: the only ones plain http may reach without allow_http (an emulator
-- or a proxy on this machine or network; anywhere else the token would cross the network in clear).
local function local_host(host)
  host = host:lower():gsub("^%[(.*)%]$", "%1")
  if host == "localhost" or host == "::1" then return true end
  local a, b = host:match("^(%d+)%.(%d+)%.%d+%.%d+$")
  a, b = tonumber(a), tonumber(b)
  return a == 127 or a == 10 or (a == 192 and b == 168) or (a == 172 and b and b >= 16 and b <= 31)
end

-- True for a URL whose host is loopback or private.
function _M.local_url(url)
  local host = type(url) == "string" and url:match("^%a[%w+.-]*://([^/?#]+)")
  return host ~= nil and local_host((host:gsub("^.*@", ""):gsub(":%d*$", "")))
end

-- nil when the base URL is usable, else a message and the option to change.
local function base_url_problem(url, allow_http)
  local scheme, host = url:match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then
    return format("the base URL '%s' has no scheme: write https://%s", url, url:gsub("^/+", ""))
  end
  scheme = scheme:lower()
  host = host:gsub("^.*@", ""):gsub(":%d*$", "")
  if scheme == "https" then return nil end
  if scheme ~= "http" then
    return format("the base URL '%s' is not http(s)", url)
  end
  if not allow_http and not local_host(host) then
    return format("the base URL '%s' is plain http to another machine, which would send the secret and "
      .. "the access_token in clear; use https, or allow_http = true", url), "allow_http"
  end
  return nil
end

-- The settings of a client from its options and the environment (getenv: os.getenv, or a test's).
-- Returns a new table: the options with the settings filled in, plus
--   token_mode   "stable" | "classic" | "static" | "provider"
--   token_origin where a static token came from: "access_token" (the option) or the variable's name
-- or nil, message, details (kind config) when no token source is named or the base URL is unusable.
function _M.resolve(opts, getenv)
  getenv = getenv or os.getenv
  local function env(name)
    local v = getenv(_M.ENV[name])
    if v == "" then return nil end
    return v
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.token_api ~= nil and o.token_api ~= "stable" and o.token_api ~= "classic" then
    return errors.fail("config", format("token_api must be \"stable\" or \"classic\", not \"%s\"",
      tostring(o.token_api)), { option = "token_api" })
  end

  if o.access_token then
    o.token_mode, o.token_origin = "static", "access_token"
  elseif o.token_provider then
    o.token_mode = "provider"
  else
    o.appid = o.appid or env("appid")
    o.secret = o.secret or env("secret")
    if o.appid and o.secret then
      o.token_mode = o.token_api or "stable"
    elseif o.secret then
      return errors.fail("config", format("an AppSecret but no AppID: give appid, or set %s", _M.ENV.appid),
        { option = "appid" })
    elseif env("access_token") then
      o.access_token, o.token_mode, o.token_origin = env("access_token"), "static", _M.ENV.access_token
    elseif o.appid then
      return errors.fail("config", format("no AppSecret for %s: give secret, or set %s", o.appid,
        _M.ENV.secret), { option = "secret" })
    else
      return errors.fail("config", format("no access_token source: give appid and secret (or set %s and %s), "
        .. "access_token (or set %s), or token_provider", _M.ENV.appid, _M.ENV.secret, _M.ENV.access_token),
        { option = "appid" })
    end
  end
  -- the appid keys the records of media_id reuse whatever the token source
  o.appid = o.appid or env("appid")
  o.base_url = o.base_url or env("base_url") or transport.default_base_url()
  if o.base_url then
    local problem, option = base_url_problem(o.base_url, o.allow_http)
    if problem then return errors.fail("config", problem, { option = option or "base_url" }) end
  end
  return o
end

return _M
