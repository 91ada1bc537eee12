-- The one redaction of secrets in text: every message the library returns (the C core's included,
-- which passes through wxmedia.transport), every line the command line prints and every line the
-- emulator logs goes through redact.text. Two rules, one marker:
--   * the value of an access_token or a secret, as a URL or form parameter (`access_token=VALUE`,
--     `appsecret=VALUE`, any case) or as a JSON member (`"access_token": "VALUE"`);
--   * the literal value of every token and secret this process was given or fetched
--     (redact.remember), wherever it appears: a server that echoes a token in its errmsg must not
--     make us print it.
-- Plain Lua 5.1 syntax and no other module: the emulator's nginx (LuaJIT) loads this file too.
local ipairs, type, tostring = ipairs, type, tostring
local find, gsub, sub, upper, lower = string.find, string.gsub, string.sub, string.upper, string.lower

local _M = {}

_M.MARKER = "REDACTED"

-- Values shorter than this are not remembered: replacing every "abc" in a message would only
-- garble it, and no token or secret is that short.
_M.MIN_LENGTH = 8
-- The most recent values are kept; a long-running process fetches a token every ~2 hours.
_M.MAX_REMEMBERED = 64

-- "[aA][cC]..." : Lua patterns have no case-insensitive flag.
local function any_case(word)
  return (gsub(word, "%a", function(c) return "[" .. lower(c) .. upper(c) .. "]" end))
end

local PATTERNS = {}
for _, name in ipairs({ "access_token", "secret" }) do
  local n = any_case(name)
  -- name=value in a URL, a query or a form: the value ends at a separator, a quote or a blank
  PATTERNS[#PATTERNS + 1] = { "([%w_]*" .. n .. "=)[^&#%s\"'<>)]+", "%1" .. _M.MARKER }
  -- "name": "value" in JSON
  PATTERNS[#PATTERNS + 1] = { "(\"[%w_]*" .. n .. "\"%s*:%s*\")[^\"]*", "%1" .. _M.MARKER }
end

local remembered, count, oldest = {}, 0, 1   -- a ring of values, oldest first

-- Adds a value (a token, a secret) to those removed from every text from now on.
function _M.remember(value)
  if type(value) ~= "string" or #value < _M.MIN_LENGTH then return end
  for i = 1, count do
    if remembered[i] == value then return end
  end
  if count < _M.MAX_REMEMBERED then
    count = count + 1
    remembered[count] = value
  else
    remembered[oldest] = value
    oldest = oldest % _M.MAX_REMEMBERED + 1
  end
end

local function remove_literal(text, value)
  local from = 1
  while true do
    local a, b = find(text, value, from, true)
    if not a then return text end
    text = sub(text, 1, a - 1) .. _M.MARKER .. sub(text, b + 1)
    from = a + #_M.MARKER
  end
end

-- The text with every secret replaced by the marker; a non-string is returned as it is.
function _M.text(text)
  if type(text) ~= "string" then return text end
  for i = 1, count do
    text = remove_literal(text, remembered[i])
  end
  for i = 1, #PATTERNS do
    text = gsub(text, PATTERNS[i][1], PATTERNS[i][2])
  end
  return text
end

-- For printing any value (an error object may be a table): tostring, then redacted.
function _M.value(v)
  return _M.text(tostring(v))
end

return _M
