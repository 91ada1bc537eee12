-- Where in nginx a transfer may run: ngx.run_worker_thread and ngx.sleep need a phase that can
-- yield (the documented three, and timers). Anywhere else a call raises, naming the phase.
local error, format, tostring = error, string.format, tostring
local ngx = ngx

local _M = {}

local YIELDABLE = { rewrite = true, access = true, content = true, timer = true }

function _M.check(what, level)
  local phase = ngx.get_phase()
  if YIELDABLE[phase] then return end
  local hint = ""
  if phase == "init" or phase == "init_worker" then
    hint = " (create the client there, but run transfers from a request or from ngx.timer.at(0, ...))"
  end
  error(format("wxmedia: %s cannot run in the %s phase: transfers need rewrite, access, content or a timer%s",
    what, tostring(phase), hint), level + 1)
end

return _M
