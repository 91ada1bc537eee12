-- Failures as data: WeChat's errcodes (what they mean, whether a retry can help), the
-- `nil, message, details` triple every call returns, and the redaction of secrets in any text.
local ipairs, pairs, setmetatable, tostring, type = ipairs, pairs, setmetatable, tostring, type
local format = string.format
local math_floor, math_type = math.floor, math.type  -- math.type: nil before Lua 5.3

local _M = {}

-- Failures of the world that a later attempt may not meet again.
local RETRYABLE_KINDS = { connect = true, timeout = true, transfer = true }

-- One entry per errcode we act on. retry: try again after a wait; token: the access_token was
-- refused, refresh it and replay once; kind defaults to "api". Compare errcode, never errmsg:
-- WeChat appends changing "hint:" and "rid:" suffixes.
local CODES = {
  [-1]    = { meaning = "wechat is busy", retry = true },
  [45011] = { meaning = "the per-minute api quota is reached", retry = true },
  [40001] = { meaning = "the access_token is invalid or not the latest", token = true },
  [40014] = { meaning = "the access_token is invalid", token = true },
  [42001] = { meaning = "the access_token expired", token = true },
  [41001] = { meaning = "the access_token is missing", token = true },
  [40002] = { meaning = "the grant_type is invalid", kind = "token" },
  [40013] = { meaning = "the appid is invalid", kind = "token" },
  [40125] = { meaning = "the appsecret is invalid", kind = "token" },
  [40164] = { meaning = "this machine's ip is not in the account's ip whitelist", kind = "token" },
  [61004] = { meaning = "this machine's ip is not in the account's ip whitelist", kind = "token" },
  [40243] = { meaning = "the appsecret is frozen", kind = "token" },
  [40004] = { meaning = "the media type is invalid" },
  [40005] = { meaning = "the file type is invalid (wechat judges it by the filename extension)" },
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
  [45009] = { meaning = "the daily api quota is used up" },
  [45007] = { meaning = "the voice is longer than 60 seconds" },
  [48001] = { meaning = "the account is not authorised for this api" },
  [50001] = { meaning = "the account is not authorised for this api" },
  [50002] = { meaning = "the account is restricted" },
}

-- The codes that mean "this access_token was refused" (41001 only counts when a token source exists,
-- which the token module decides).
function _M.is_token_errcode(code)
  local c = CODES[code]
  return c ~= nil and c.token == true
end

-- Removes the value of every access_token and secret from a text: in URLs and forms (name=value)
-- and in JSON ("name": "value").
function _M.redact(text)
  if type(text) ~= "string" then return text end
  for _, name in ipairs({ "access_token", "secret" }) do
    text = text:gsub("(" .. name .. "=)[^&%s\"']+", "%1***")
    text = text:gsub("(\"" .. name .. "\"%s*:%s*\")[^\"]*", "%1***")
  end
  return text
end

-- Returns nil, message, details: the failure triple. fields fill details (errcode, errmsg, status...).
function _M.fail(kind, message, fields)
  local details = { kind = kind, retryable = RETRYABLE_KINDS[kind] == true, attempts = 0 }
  if fields then
    for k, v in pairs(fields) do details[k] = v end
  end
  details.errmsg = _M.redact(details.errmsg)
  return nil, _M.redact(message), details
end

function _M.input(message)
  return _M.fail("input", message)
end

-- A failure of the C core (transport): message and kind as it gave them.
function _M.transport(what, message, kind)
  return _M.fail(kind or "transfer", what .. ": " .. tostring(message))
end

-- The caller's IP as WeChat saw it, from a 40164 errmsg ("invalid ip 1.2.3.4 ipv6 ..., not in whitelist").
local function whitelist_ip(errmsg)
  local ip = type(errmsg) == "string" and errmsg:match("invalid ip ([^%s,]+)")
  return ip
end

-- JSON numbers decode as floats on Lua 5.3+: 40001.0 would print as such.
function _M.integer(n)
  if math_type and math_type(n) == "float" and n == math_floor(n) then return math_floor(n) end
  return n
end

-- A WeChat errcode answer. what names the call ("upload", "get", "stable_token"...).
function _M.api(what, code, errmsg, status)
  code = _M.integer(code)
  local entry = CODES[code] or { meaning = "wechat refused the request" }
  local kind = entry.kind or (entry.token and "token") or "api"
  local message
  if code == 45009 then
    message = format("%s: the daily api quota is used up (errcode 45009); it resets at midnight beijing time "
      .. "or through cgi-bin/clear_quota", what)
  elseif code == 40164 or code == 61004 then
    message = format("%s: the ip %s is not in the account's ip whitelist (errcode %d); add it on the "
      .. "official account platform", what, whitelist_ip(errmsg) or "of this machine", code)
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
  return _M.fail("http", format("%s: wechat answered http %d", what, status), {
    status = status, errcode = _M.integer(errcode), errmsg = errmsg, retryable = retryable,
  })
end

-- Read-only view of the table, for callers that print or test it.
_M.codes = setmetatable({}, { __index = CODES, __newindex = function() error("read-only table", 2) end })

return _M
