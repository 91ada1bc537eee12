-- UTF-8 as RFC 3629 defines it: the one decoder. The command line's JSON output escapes with it,
-- passive replies check their values with it. Strict on purpose: an overlong form (C0 80 for NUL), a
-- surrogate (ED A0 80) or a code point above U+10FFFF is not UTF-8, and XML parsers (expat, WeChat's)
-- refuse a document holding one.
-- Plain Lua 5.1 syntax: the command line loads it too.
local byte = string.byte

local _M = {}

-- syntax: cp, after = utf8.decode(s, i)
-- The code point of the well-formed character that starts at byte i of s, and the index of the byte
-- after it; nil when byte i starts none (a stray continuation byte, a character cut short, a lead
-- byte no character has) or there is no byte i.
function _M.decode(s, i)
  local b = byte(s, i)
  if b == nil then return nil end
  if b < 0x80 then return b, i + 1 end
  local len, cp, min
  if b >= 0xC2 and b <= 0xDF then len, cp, min = 2, b - 0xC0, 0x80
  elseif b >= 0xE0 and b <= 0xEF then len, cp, min = 3, b - 0xE0, 0x800
  elseif b >= 0xF0 and b <= 0xF4 then len, cp, min = 4, b - 0xF0, 0x10000
  else return nil end
  for k = i + 1, i + len - 1 do
    local c = byte(s, k)
    if c == nil or c < 0x80 or c > 0xBF then return nil end
    cp = cp * 64 + (c - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return cp, i + len
end

return _M
