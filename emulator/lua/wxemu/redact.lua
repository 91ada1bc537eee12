-- Keeps access_tokens and secrets out of everything the emulator writes.
local state = ngx.shared.wxemu_state

local _M = {}

function _M.text(s)
  s = tostring(s)
  s = s:gsub("(access_token[\"']?%s*[=:]%s*[\"']?)[^&\"'%s,}]+", "%1REDACTED")
  s = s:gsub("(secret[\"']?%s*[=:]%s*[\"']?)[^&\"'%s,}]+", "%1REDACTED")
  s = s:gsub("%d+_[%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-][%w_%-]+", "REDACTED")
  return s
end

-- Appends a handler error to logs/emulator.log (nginx's error log stays at "crit": its lines carry
-- the request line, and with it the access_token).
function _M.log_error(err)
  local dir = (state:get("storage") or ""):gsub("/storage$", "")
  local f = io.open(dir .. "/logs/emulator.log", "a")
  if not f then return end
  f:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), _M.text(err), "\n")
  f:close()
end

return _M
