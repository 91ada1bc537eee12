-- Warnings: what goes wrong without failing a call (a store that cannot be read or written, a lock
-- not had in time), for the client's on_warning. The call goes on (a token straight from WeChat, an
-- upload instead of a reuse); the warning says what the cache is missing. Each distinct message is
-- given at most once a minute, so that a store that is down does not flood a log.
local pcall, tostring = pcall, tostring
local redact = require "wxmedia.redact"

local _M = {}

_M.INTERVAL = 60
local MAX_KEPT = 256     -- distinct messages remembered; beyond, the memory starts again

-- The default on_warning of plain Lua: a line on stderr.
function _M.stderr(message)
  io.stderr:write("wxmedia: warning: ", message, "\n")
end

-- A warn(message) function for on_warning (default: stderr) on the clock now().
function _M.new(on_warning, now)
  on_warning = on_warning or _M.stderr
  local last, count = {}, 0
  return function(message)
    message = redact.text(tostring(message))
    local t = now()
    local prev = last[message]
    if prev and t - prev < _M.INTERVAL then return end
    if not prev then
      count = count + 1
      if count > MAX_KEPT then last, count = {}, 1 end
    end
    last[message] = t
    -- a warning must never fail the call it comes from
    pcall(on_warning, message)
  end
end

return _M
