-- What the command line writes. Standard output is checked at every write and flush: a full disk, a
-- closed pipe whose SIGPIPE is ignored, a device that refuses are failures (exit status 5), not a
-- quiet exit 0 with the medium or the media_id lost. Text that came from a server (a media_id, a
-- file name, an errmsg) reaches the terminal only as printable ASCII, and --json output only as
-- pure ASCII JSON: a server never gets a terminal escape sequence through us.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local cjson = require "cjson"

local error, getmetatable, setmetatable, tostring, type = error, getmetatable, setmetatable, tostring, type
local byte, format, gsub, lower = string.byte, string.format, string.gsub, string.lower
local concat = table.concat
local floor = math.floor

local _M = {}

-- The error value an output failure raises, so that main() tells it from a bug.
local OutputError = {}
OutputError.__index = OutputError
OutputError.__tostring = function(e) return e.message end

function _M.is_output_error(e)
  return type(e) == "table" and getmetatable(e) == OutputError
end

-- "cannot write to standard output: no space left on device"
local function raise(err)
  local why = lower(tostring(err or "write error"):sub(1, 1)) .. tostring(err or "write error"):sub(2)
  error(setmetatable({ message = "cannot write to standard output: " .. why }, OutputError), 0)
end

-- stdout(file) -> a writer whose write(...) writes and flushes, and raises an output error when
-- either fails. Flushing at every write costs nothing here (a few lines, or 64 KB chunks) and finds
-- the error while we can still report it: stdio's own flush at exit reports nothing.
function _M.stdout(file)
  local w = {}
  function w.write(...)
    local ok, err = file:write(...)
    if ok then ok, err = file:flush() end
    if not ok then raise(err) end
  end
  return w
end

-- "\x1B[31m" for ESC [ 3 1 m: every byte outside printable ASCII, escaped as \xHH. For one-line
-- messages and the plain-text output.
function _M.printable(s)
  return (gsub(tostring(s), "[^ -~]", function(c) return format("\\x%02X", byte(c)) end))
end

-- \uXXXX for a code point (a surrogate pair above U+FFFF).
local function u_escape(cp)
  if cp < 0x10000 then return format("\\u%04x", cp) end
  cp = cp - 0x10000
  return format("\\u%04x\\u%04x", 0xD800 + floor(cp / 0x400), 0xDC00 + cp % 0x400)
end

-- One run of bytes >= 0x80 (a lead byte and what follows it) as \u escapes: each well-formed UTF-8
-- character as its code point, each other byte as U+FFFD.
local function escape_utf8(run)
  local out, i, n = {}, 1, #run
  while i <= n do
    local b = byte(run, i)
    local len, cp, min = 0, nil, 0
    if b >= 0xC2 and b <= 0xDF then len, cp, min = 2, b - 0xC0, 0x80
    elseif b >= 0xE0 and b <= 0xEF then len, cp, min = 3, b - 0xE0, 0x800
    elseif b >= 0xF0 and b <= 0xF4 then len, cp, min = 4, b - 0xF0, 0x10000 end
    local ok = len > 0 and i + len - 1 <= n
    if ok then
      for k = i + 1, i + len - 1 do
        local c = byte(run, k)
        if c < 0x80 or c > 0xBF then ok = false break end
        cp = cp * 64 + (c - 0x80)
      end
    end
    if ok and (cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF)) then ok = false end
    if ok then
      out[#out + 1] = u_escape(cp)
      i = i + len
    else
      out[#out + 1] = "\\ufffd"
      i = i + 1
    end
  end
  return concat(out)
end

-- cjson.encode, then every byte >= 0x80 as a \u escape: cjson escapes the C0 controls and DEL but
-- passes C1 controls (U+009B is a CSI to some terminals) and bytes that are not UTF-8 raw, which
-- would also make the line invalid JSON. The values are unchanged for well-formed UTF-8.
function _M.json(obj)
  return (gsub(cjson.encode(obj), "[\128-\255]+", escape_utf8))
end

return _M
