-- The emulator's log of handler errors, redacted by the project's one redaction (lua/wxmedia/redact.lua,
-- on the emulator's lua_package_path): access_token and secret values as URL parameters or JSON
-- members, and the literal value of every token and secret this worker was shown or issued
-- (remember), wherever it appears in a message.
local redact = require "wxmedia.redact"

local state = ngx.shared.wxemu_state

local _M = {}

-- Adds a token or secret a request carries or receives to what this worker's log lines never show.
-- The ring keeps the latest values (redact.MAX_REMEMBERED), so those of the request being logged
-- are always in it.
_M.remember = redact.remember

-- Appends a handler error to logs/emulator.log (nginx's error log stays at "crit": its lines carry
-- the request line, and with it the access_token).
function _M.log_error(err)
  local dir = (state:get("storage") or ""):gsub("/storage$", "")
  local f = io.open(dir .. "/logs/emulator.log", "a")
  if not f then return end
  f:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), redact.value(err), "\n")
  f:close()
end

return _M
