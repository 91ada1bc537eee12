-- What benchmark 4's contrast location runs in a worker thread: a bare blocking call of a given
-- length (the C core's sleep), as any module called through ngx.run_worker_thread would block.
local core = require "wxmedia.core"

return {
  sleep = function(seconds)
    core.sleep(seconds)
    return true
  end,
}
