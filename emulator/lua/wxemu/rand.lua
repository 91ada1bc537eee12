-- Random identifiers in WeChat's alphabet ([A-Za-z0-9_-]) and its hint format.
local math_random, string_char, unpack = math.random, string.char, unpack

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
local ALNUM = 62
local bytes = {}
for i = 1, #ALPHABET do bytes[i] = ALPHABET:byte(i) end

local _M = {}

local function pick(n, width)
  local out = {}
  for i = 1, n do out[i] = bytes[math_random(width)] end
  return string_char(unpack(out))
end

-- n characters of [A-Za-z0-9_-] (media_id, access_token)
function _M.id(n) return pick(n, #bytes) end

-- n characters of [A-Za-z0-9]
function _M.alnum(n) return pick(n, ALNUM) end

function _M.hex32()
  return ("%08x"):format(math_random(0, 0x7fffffff) * 2 + math_random(0, 1))
end


return _M
