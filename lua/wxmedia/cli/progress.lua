-- The command line's progress bar on stderr: drawn only on a terminal, only for transfers big
-- enough to be worth watching, redrawn only when the percentage moves.
local math, string = math, string

local _M = {}

-- Transfers smaller than this finish before a bar would be worth drawing.
_M.MIN_SIZE = 1024 * 1024

local function human_size(n)
  if n >= 1024 * 1024 then return string.format("%.1f MB", n / (1024 * 1024)) end
  return string.format("%d kB", math.floor(n / 1024))
end

-- One line of the bar (no terminal codes but the leading \r).
function _M.line(label, now, total)
  local width = 30
  local frac = total > 0 and math.min(now / total, 1) or 0
  local fill = math.floor(frac * width)
  if #label > 24 then label = "..." .. label:sub(-21) end
  return string.format("\r%-24s [%s%s] %3d%%  %s / %s", label, string.rep("#", fill),
    string.rep(".", width - fill), math.floor(frac * 100), human_size(now), human_size(total))
end

-- A reporter: bar.progress is given to wxmedia.new once; bar.start(label) before each transfer and
-- bar.finish() after it. enabled() says whether to draw (a terminal, no --no-progress).
function _M.new(stderr, enabled)
  local bar = { label = "", drawn = false, last = -1 }
  function bar.start(label) bar.label, bar.drawn, bar.last = label, false, -1 end
  function bar.finish()
    if bar.drawn then stderr:write("\n") end
    bar.drawn = false
  end
  function bar.progress(dltotal, dlnow, ultotal, ulnow)
    local total, now = dltotal or 0, dlnow or 0
    -- an upload's answer is a few bytes of JSON: while sending, the upload is the transfer
    if (ultotal or 0) > total then total, now = ultotal, ulnow or 0 end
    if total < _M.MIN_SIZE or not enabled() then return end
    local pct = math.floor(now * 100 / total)
    if pct == bar.last then return end
    bar.last, bar.drawn = pct, true
    stderr:write(_M.line(bar.label, now, total))
    stderr:flush()
  end
  return bar
end

return _M
