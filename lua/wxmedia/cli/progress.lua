-- The command line's progress bar on stderr: drawn only on a terminal, only for transfers big
-- enough to be worth watching; like curl's, it shows the speed and the time left. Redrawn when the
-- percentage moves, and at least once a second while it does not (the speed changes).
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local math, string, table = math, string, table

local _M = {}

-- Transfers smaller than this finish before a bar would be worth drawing.
_M.MIN_SIZE = 1024 * 1024
-- The speed is that of the last seconds, not of the whole transfer: a stall shows at once.
_M.WINDOW = 5

local function human_size(n)
  if n >= 1024 * 1024 then return string.format("%.1f MB", n / (1024 * 1024)) end
  return string.format("%d kB", math.floor(n / 1024))
end

-- "1:05" or "2:03:07"; "--:--" when unknown (no speed yet).
local function clock_time(seconds)
  if not seconds or seconds ~= seconds or seconds < 0 or seconds > 99 * 3600 then return "--:--" end
  local s = math.floor(seconds + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s % 3600 / 60)
  if h > 0 then return string.format("%d:%02d:%02d", h, m, s % 60) end
  return string.format("%d:%02d", m, s % 60)
end

-- One line of the bar (no terminal codes but the leading \r), under 80 columns. speed: bytes per
-- second, or nil while unknown.
function _M.line(label, now, total, speed)
  local width = 12
  local frac = total > 0 and math.min(now / total, 1) or 0
  local fill = math.floor(frac * width)
  if #label > 16 then label = "..." .. label:sub(-13) end
  local left
  if now >= total then left = 0
  elseif speed and speed > 0 then left = (total - now) / speed end
  return string.format("\r%-16s [%s%s] %3d%%  %s / %s  %s/s  %s left", label, string.rep("#", fill),
    string.rep(".", width - fill), math.floor(frac * 100), human_size(now), human_size(total),
    speed and human_size(speed) or "-- kB", clock_time(left))
end

-- A reporter: bar.progress is given to wxmedia.new once; bar.start(label) before each transfer and
-- bar.finish() after it. enabled() says whether to draw (a terminal, no --no-progress); clock()
-- gives seconds (for the speed).
function _M.new(stderr, enabled, clock)
  local bar = { label = "", drawn = false, last = -1, drawn_at = nil, samples = {} }
  function bar.start(label)
    -- the start is the first sample: a transfer that reports only its end still has a speed
    bar.label, bar.drawn, bar.last, bar.drawn_at, bar.samples = label, false, -1, nil, { { clock(), 0 } }
  end
  function bar.finish()
    if bar.drawn then stderr:write("\n") end
    bar.drawn = false
  end
  -- the bytes per second over the last WINDOW seconds, or nil until two samples tell
  local function speed(t, now)
    local samples = bar.samples
    local last = samples[#samples]
    -- libcurl calls back at every chunk: two samples a second are enough
    if not last or t - last[1] >= 0.5 then samples[#samples + 1] = { t, now } end
    while #samples > 1 and t - samples[1][1] > _M.WINDOW do table.remove(samples, 1) end
    local first = samples[1]
    if t - first[1] <= 0 then return nil end
    return (now - first[2]) / (t - first[1])
  end
  function bar.progress(dltotal, dlnow, ultotal, ulnow)
    local total, now = dltotal or 0, dlnow or 0
    -- an upload's answer is a few bytes of JSON: while sending, the upload is the transfer
    if (ultotal or 0) > total then total, now = ultotal, ulnow or 0 end
    if total < _M.MIN_SIZE or not enabled() then return end
    local t = clock()
    local bps = speed(t, now)
    local pct = math.floor(now * 100 / total)
    if pct == bar.last and bar.drawn_at and t - bar.drawn_at < 1 then return end
    bar.last, bar.drawn, bar.drawn_at = pct, true, t
    stderr:write(_M.line(bar.label, now, total, bps))
    stderr:flush()
  end
  return bar
end

return _M
