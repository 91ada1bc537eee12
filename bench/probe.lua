-- Benchmark 4's latency probe: GETs a URL again and again on one keep-alive connection for a given
-- number of seconds and prints "count p50 p99 max" (milliseconds) of the requests' latencies. A
-- request still waiting when the time is up is waited for and counted: a stalled server shows.
--   probe.lua URL SECONDS
local core = require "wxmedia.core"

local url, seconds = arg[1], assert(tonumber(arg[2]))
local session = assert(core.session({ timeout = 120 }))
local now = core.now
local ms = {}
local stop = now() + seconds
while now() < stop do
  local t0 = now()
  local res, err = session:request("GET", url)
  if not res or res.status ~= 200 then
    io.stderr:write("probe: ", tostring(err or res.status), "\n")
    os.exit(1)
  end
  ms[#ms + 1] = (now() - t0) * 1000
end
table.sort(ms)
local function pct(p) return ms[math.max(1, math.ceil(#ms * p / 100))] end
print(("%d %.3f %.3f %.3f"):format(#ms, pct(50), pct(99), ms[#ms]))
