-- The big load run of issue 8 (not part of `make test`; spec/load_spec.lua is its small version):
-- 10,000 upload+get pairs through one client, then 8 processes at once (10,000 / 8 each), against
-- the emulator with 1% of requests faulted. Every success must come back byte-identical, every
-- failure must have a kind, and RSS at the end must be within 1 MB of RSS after the first 100.
--   lua5.4 bench/load.lua [pairs] [processes]          (from the repo root, after `make`)
-- Prints one line per run and exits non-zero when a promise broke.
-- Measured 2026-11-28 (shared 2-core machine, emulator with 2 workers, retries = 0):
--   Lua 5.4, one client: 9826 ok, 174 failed with a kind, 0 broken, RSS +156 kB after 100, 373 pairs/s
--   Lua 5.4, 8 processes: 9787 ok, 213 failed with a kind, 0 broken, largest RSS growth +12 kB, 414 pairs/s
--   LuaJIT, one client: 9826 ok, 174 failed, 0 broken, RSS +264 kB, 332 pairs/s
--   LuaJIT, 8 processes: 9787 ok, 213 failed, 0 broken, largest RSS growth +152 kB, 393 pairs/s
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local lua = os.getenv("WXMEDIA_LUA") or "lua5.4"
package.cpath = "build/" .. (lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local helper = require "helper"
local wxmedia = require "wxmedia"
local store = require "wxmedia.store"
local core = require "wxmedia.core"

local KINDS = { input = true, api = true, token = true, http = true, connect = true, timeout = true,
  tls = true, transfer = true, io = true, aborted = true }
local FILES = { { "image", "image.jpg" }, { "image", "image.png" }, { "image", "image.gif" },
  { "voice", "voice.amr" }, { "voice", "voice.mp3" } }
local FAULTS = { "status", "errcode", "reset_response", "truncate" }

local function rss_kb()
  local status = helper.read("/proc/self/status") or ""
  return tonumber(status:match("VmRSS:%s*(%d+)"))
end

-- One worker: n pairs through one client; returns a result line (key=value ...).
local function worker(base_url, n, dir, seed)
  local c = assert(wxmedia.new{ appid = helper.APPID, secret = helper.SECRET, base_url = base_url,
    retries = 0, timeout = 30, token_store = store.memory(), sleep = function() end })
  local bytes = {}
  for i, f in ipairs(FILES) do bytes[i] = helper.read(helper.fixture(f[2])) end
  local state = seed
  local ok, failed, bad, warm = 0, 0, 0, nil
  local dest = dir .. "/out." .. seed
  local t0 = core.now()
  for k = 1, n do
    -- 1% of the requests faulted: one fault per 50 pairs (2 requests each)
    state = state * 16807 % 2147483647
    if state % 50 == 0 then
      helper.curl(("-d '{\"route\":\"%s\",\"kind\":\"%s\"}' %s"):format(state % 2 == 0 and "upload" or "get",
        FAULTS[state % #FAULTS + 1], helper.shell_quote(base_url .. "/__emulator/fault")))
    end
    local i = k % #FILES + 1
    local res, err, details = c:upload(FILES[i][1], helper.fixture(FILES[i][2]))
    if res then res, err, details = c:get(res.media_id, dest) end
    if res then
      if helper.read(dest) == bytes[i] then ok = ok + 1 else bad = bad + 1 end
    else
      failed = failed + 1
      if not (details and KINDS[details.kind] and type(err) == "string") then bad = bad + 1 end
    end
    if k == 100 then collectgarbage(); warm = rss_kb() end
  end
  collectgarbage()
  return ("pairs=%d ok=%d failed=%d bad=%d rss_warm=%d rss_end=%d seconds=%.1f"):format(n, ok, failed, bad,
    warm or 0, rss_kb(), core.now() - t0)
end

local function parse(line)
  local r = {}
  for k, v in line:gmatch("([%w_]+)=([%d%.]+)") do r[k] = tonumber(v) end
  return r
end

local function report(label, r)
  local grew = r.rss_end - r.rss_warm
  print(("%s: %d pairs, %d ok, %d failed (each with a kind), %d broken; RSS %d kB after 100, %d kB at the "
    .. "end (%+d kB); %.1f s, %.0f pairs/s"):format(label, r.pairs, r.ok, r.failed, r.bad, r.rss_warm,
    r.rss_end, grew, r.seconds, r.pairs / r.seconds))
  return r.bad == 0 and grew <= 1024 and r.ok + r.failed == r.pairs
end

-- a child: lua bench/load.lua --child BASE_URL N DIR SEED
if arg[1] == "--child" then
  print(worker(arg[2], tonumber(arg[3]), arg[4], tonumber(arg[5])))
  os.exit(0)
end

local pairs_n, procs = tonumber(arg[1]) or 10000, tonumber(arg[2]) or 8
local emu = helper.start_emulator({ workers = 2 })
local dir = helper.tmpdir()
local good = true
local ok, err = pcall(function()
  good = report("one client", parse(worker(emu.base_url, pairs_n, dir, 4242))) and good
  emu:reset()
  -- the processes at once, through popen: each prints its line at the end
  local children = {}
  local t0 = core.now()
  for p = 1, procs do
    children[p] = assert(io.popen(("%s bench/load.lua --child %s %d %s %d"):format(lua,
      helper.shell_quote(emu.base_url), math.floor(pairs_n / procs), helper.shell_quote(dir), 1000 + p)))
  end
  local total = { pairs = 0, ok = 0, failed = 0, bad = 0 }
  local worst = -math.huge
  for p = 1, procs do
    local r = parse(children[p]:read("a"))
    children[p]:close()
    for k in pairs(total) do total[k] = total[k] + (r[k] or 0) end
    worst = math.max(worst, (r.rss_end or 0) - (r.rss_warm or 0))
    good = good and r.bad == 0 and r.ok + r.failed == r.pairs
  end
  local seconds = core.now() - t0
  print(("%d processes: %d pairs, %d ok, %d failed (each with a kind), %d broken; largest RSS growth after "
    .. "100 pairs %+d kB; %.1f s, %.0f pairs/s"):format(procs, total.pairs, total.ok, total.failed, total.bad,
    worst, seconds, total.pairs / seconds))
  good = good and worst <= 1024
end)
emu:stop()
helper.rmtree(dir)
if not ok then error(err) end
os.exit(good and 0 or 1)
