-- Start-up: the master builds the start config (nginx refuses to start on a bad one: the error raised
-- here is logged by the init_by_lua block of the generated nginx.conf) and empties the shared state;
-- every worker seeds its random generator differently.
local config = require "wxemu.config"

local _M = {}

function _M.init(opts)
  local cfg = config.build_start(opts.preset, opts.config_file)
  local state = ngx.shared.wxemu_state
  for _, name in ipairs { "wxemu_state", "wxemu_tokens", "wxemu_media", "wxemu_faults", "wxemu_log",
      "wxemu_users" } do
    ngx.shared[name]:flush_all()
  end
  state:set("start_config", config.encode(cfg))
  state:set("storage", opts.storage)
  state:set("clock_offset", 0)
  -- the first digits of every MsgId (wxemu.callback)
  state:set("started_at", math.floor(ngx.now()))
  config.store(cfg)
  -- every module loaded here, once, before the workers fork: one that does not load stops the start
  -- with its message, instead of failing each request later
  require "wxemu.router"
  require "wxemu.control"
end

function _M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid() * 7919)
end

return _M
