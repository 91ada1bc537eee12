-- The emulator clock: real time plus an offset the control API moves forward, so token and media
-- expiry and quotas can be tested without waiting.
local state = ngx.shared.wxemu_state
local ngx_now = ngx.now

local _M = {}

function _M.now()
  return ngx_now() + (state:get("clock_offset") or 0)
end

function _M.advance(seconds)
  return state:incr("clock_offset", seconds, 0)
end

return _M
