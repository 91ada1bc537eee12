-- Start-up: the master builds the start config (nginx refuses to start on a bad one) and empties the
-- shared state; every worker seeds its random generator differently.
local config = require "wxemu.config"

local _M = {}

function _M.init(opts)
  local ok, cfg = pcall(config.build_start, opts.preset, opts.config_file)
  if not ok then
    -- at "emerg" so it shows in the error log the start script reports (its level is "crit")
    ngx.log(ngx.EMERG, "wxmedia emulator: ", cfg)
    error(cfg, 0)
  end
  local state = ngx.shared.wxemu_state
  for _, name in ipairs { "wxemu_state", "wxemu_tokens", "wxemu_media", "wxemu_faults", "wxemu_log" } do
    ngx.shared[name]:flush_all()
  end
  state:set("start_config", config.encode(cfg))
  state:set("storage", opts.storage)
  state:set("clock_offset", 0)
  config.store(cfg)
end

function _M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid() * 7919)
end

return _M
