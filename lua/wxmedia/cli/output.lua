-- What the command line writes. Standard output is checked at every write and flush: a full disk, a
-- closed pipe whose SIGPIPE is ignored, a device that refuses are failures (exit status 5), not a
-- quiet exit 0 with the medium or the media_id lost. Text that came from a server (a media_id, a
-- file name, an errmsg) reaches the terminal only as printable ASCII, and --json output only as
-- pure ASCII JSON: a server never gets a terminal escape sequence through us.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local cjson = require "cjson"
local decode = require("wxmedia.utf8").decode

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
    local cp, after = decode(run, i)
    if cp then
      out[#out + 1] = u_escape(cp)
      i = after
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
