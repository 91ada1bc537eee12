-- Failures as data: the one table of error kinds, WeChat's errcodes (what they mean, whether a retry
-- can help), and the `nil, message, details` triple every call returns. Every message goes through
-- wxmedia.redact on its way out.
local error, pairs, setmetatable, tonumber, tostring, type =
  error, pairs, setmetatable, tonumber, tostring, type
local sort = table.sort
local format = string.format
local math_floor = math.floor
local math_type = math.type  -- nil before Lua 5.3
local redact = require "wxmedia.redact"

local _M = {}

-- Every kind a call can report: what happened, and whether a later attempt may pass by default
-- (an api or http failure's own retryable flag depends on its errcode or status); nginx = true for
-- the kinds only wxmedia.ngx reports (the command line never meets them). The README's
-- table of kinds is this one (spec/errors_spec.lua compares them, and greps the code for a kind
-- that is not here).
local KINDS = {
  input     = { retryable = false, meaning = "the caller's input: an unknown type, a missing, empty, too "
    .. "large or wrong-format file, a bad destination, a bad media_id" },
  config    = { retryable = false, meaning = "the installation or configuration: the C core cannot be "
    .. "loaded, no token source, a bad base_url" },
  api       = { retryable = false, meaning = "WeChat answered an errcode (see the table below)" },
  token     = { retryable = false, meaning = "no valid access_token can be had: bad appid or secret, IP not "
    .. "whitelisted, a given token refused" },
  http      = { retryable = false, meaning = "a non-200 HTTP answer (a gateway's 5xx or 429 is retried)" },
  connect   = { retryable = true, meaning = "the server cannot be reached" },
  timeout   = { retryable = true, meaning = "the transfer took too long, or stalled below the low-speed "
    .. "limit" },
  tls       = { retryable = false, meaning = "a certificate or TLS failure" },
  transfer  = { retryable = true, meaning = "the connection broke, or the answer was cut short or over "
    .. "the cap" },
  io        = { retryable = false, meaning = "a local file cannot be written: the destination's folder, a "
    .. "full disk, a store file" },
  blocked   = { retryable = false, meaning = "a URL from a server points to an address the client does not "
    .. "reach (loopback, private, link-local)" },
  aborted   = { retryable = false, meaning = "the progress function returned false" },
  client_closed = { retryable = false, nginx = true, meaning = "nginx: the HTTP client of the request went "
    .. "away" },
  -- not retried: another attempt would wait for a slot again, holding the request; the caller's
  -- caller comes back after Retry-After instead
  busy      = { retryable = false, nginx = true, meaning = "nginx: no worker thread was free within "
    .. "slot_wait (answer 503 with Retry-After)" },
}
_M.KINDS = setmetatable({}, { __index = KINDS, __newindex = function() error("read-only table", 2) end })

-- The kind names, sorted, for messages and the documentation.
function _M.kind_names()
  local names = {}
  for name in pairs(KINDS) do names[#names + 1] = name end
  sort(names)
  return names
end

-- One entry per errcode we act on. retry: try again after a wait; token: the access_token was
-- refused, refresh it and replay once; kind defaults to "api". Compare errcode, never errmsg:
-- WeChat appends changing "hint:" and "rid:" suffixes.
local CODES = {
  [-1]    = { meaning = "WeChat is busy", retry = true },
  [45011] = { meaning = "the per-minute API quota is reached", retry = true },
  [40001] = { meaning = "the access_token is invalid or not the latest", token = true },
  [40014] = { meaning = "the access_token is invalid", token = true },
  [42001] = { meaning = "the access_token expired", token = true },
  [41001] = { meaning = "the access_token is missing", token = true },
  [40002] = { meaning = "the grant_type is invalid", kind = "token" },
  [40013] = { meaning = "the appid is invalid", kind = "token" },
  [40125] = { meaning = "the appsecret is invalid", kind = "token" },
  [40164] = { meaning = "this machine's IP is not in the account's IP whitelist", kind = "token" },
  [61004] = { meaning = "this machine's IP is not in the account's IP whitelist", kind = "token" },
  [40243] = { meaning = "the appsecret is frozen", kind = "token" },
  [40004] = { meaning = "the media type is invalid" },
  [40005] = { meaning = "the file type is invalid (WeChat judges it by the filename extension)" },
  [40006] = { meaning = "the file is too large for this media type" },
  [40007] = { meaning = "the media_id is invalid (unknown, expired after 3 days, or another account's)" },
  [40009] = { meaning = "the image is too large or not a valid image" },
  [40010] = { meaning = "the voice file is too large" },
  [40011] = { meaning = "the video file is too large" },
  [40012] = { meaning = "the thumb is too large" },
  [41005] = { meaning = "the media data is missing" },
  [41006] = { meaning = "the media_id is missing" },
  [44001] = { meaning = "the media data is empty" },
  [45001] = { meaning = "the media is too large" },
  [45009] = { meaning = "the daily API quota is used up" },
  [45007] = { meaning = "the voice is longer than 60 seconds" },
  [40003] = { meaning = "the openid is invalid (not a user of this account)" },
  [40008] = { meaning = "the message type is invalid" },
  [44002] = { meaning = "the request body is empty" },
  [44004] = { meaning = "the text is empty" },
  [45015] = { meaning = "the user has not written to the account in the last 48 hours (or unsubscribed): "
    .. "reply to their next message instead" },
  [45047] = { meaning = "the account has sent this user as many messages as WeChat allows until they "
    .. "write again" },
  [47001] = { meaning = "the request body is not in the format WeChat expects" },
  [48001] = { meaning = "the account is not authorised for this API" },
  [50001] = { meaning = "the account is not authorised for this API" },
  [50002] = { meaning = "the account is restricted" },
}

-- The codes that mean "this access_token was refused" (41001 only counts when a token source exists,
-- which the token module decides).
function _M.is_token_errcode(code)
  local c = CODES[code]
  return c ~= nil and c.token == true
end

-- Returns nil, message, details: the failure triple. fields fill details (errcode, errmsg, status,
-- retryable...). An unknown kind is a bug of ours: it raises.
function _M.fail(kind, message, fields)
  local k = KINDS[kind]
  if not k then error("wxmedia: unknown error kind '" .. tostring(kind) .. "'", 2) end
  local details = { kind = kind, retryable = k.retryable, attempts = 0 }
  if fields then
    for name, v in pairs(fields) do details[name] = v end
  end
  details.errmsg = redact.text(details.errmsg)
  return nil, redact.text(message), details
end

function _M.input(message)
  return _M.fail("input", message)
end

-- The caller's IP as WeChat saw it, from a 40164 errmsg ("invalid ip 1.2.3.4 ipv6 ..., not in whitelist").
local function whitelist_ip(errmsg)
  local ip = type(errmsg) == "string" and errmsg:match("invalid ip ([^%s,]+)")
  return ip
end

-- An errcode as a server sent it, as an integer: JSON numbers decode as floats on Lua 5.3+ (40001.0
-- would print as such), and a server may send "40001". nil for anything else (NaN, inf, 1.5, {},
-- and numbers no errcode reaches: beyond 32 bits, which a float cannot hold as an integer anyway).
local ERRCODE_MAX = 2 ^ 31
function _M.errcode(v)
  if type(v) == "string" and v:match("^%s*%-?%d+%s*$") then v = tonumber(v) end
  if type(v) ~= "number" or v ~= v or v >= ERRCODE_MAX or v <= -ERRCODE_MAX or v ~= math_floor(v) then
    return nil
  end
  if math_type and math_type(v) == "float" then return math_floor(v) end
  return v
end

-- A WeChat errcode answer. what names the call ("upload", "get", "stable_token"...).
function _M.api(what, code, errmsg, status)
  local entry = CODES[code] or { meaning = "WeChat refused the request" }
  local kind = entry.kind or (entry.token and "token") or "api"
  local message
  if code == 45009 then
    message = format("%s: the daily API quota is used up (errcode 45009); it resets at midnight Beijing time "
      .. "or through cgi-bin/clear_quota", what)
  elseif code == 40164 or code == 61004 then
    message = format("%s: the IP %s is not in the account's IP whitelist (errcode %d); add it on the "
      .. "Official Account Platform", what, whitelist_ip(errmsg) or "of this machine", code)
  else
    message = format("%s: %s (errcode %s)", what, entry.meaning, tostring(code))
  end
  if type(errmsg) == "string" and errmsg ~= "" then
    message = message .. ": " .. errmsg
  end
  return _M.fail(kind, message, {
    errcode = code, errmsg = errmsg, status = status, retryable = entry.retry == true,
  })
end

-- An HTTP answer that is not WeChat's 200 + JSON: 5xx and 429 may pass, the rest will not.
function _M.http(what, status, errcode, errmsg)
  local retryable = status == 429 or (status >= 500 and status <= 599)
  return _M.fail("http", format("%s: WeChat answered HTTP %d", what, status), {
    status = status, errcode = _M.errcode(errcode), errmsg = errmsg, retryable = retryable,
  })
end

-- Read-only view of the table, for callers that print or test it.
_M.codes = setmetatable({}, { __index = CODES, __newindex = function() error("read-only table", 2) end })

return _M
