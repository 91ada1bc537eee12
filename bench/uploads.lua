-- Benchmark 1: many small uploads. N 64 KB JPEG uploads by each contender, every repetition running
-- all of them one after the other against one emulator (reset before each, so every contender finds
-- the same empty server). The figure is each contender's throughput as a ratio to the plain C loop's
-- in the same repetition (its time / the contender's time). Two of them upload C at a time, for
-- each C of BENCH_CONCURRENCY: the C multi loop (libcurl's multi interface, nothing else) and
-- upload_many.
-- The fast contenders (C and wxmedia) run BENCH_UPLOAD_BLOCKS blocks of N per repetition, in rotated
-- order, and a repetition's figure is the median of its blocks: 1000 uploads take a tenth of a second
-- here, and one burst of load from elsewhere would otherwise make a repetition.
local lib = require "lib"

local M = {}

-- glibc's malloc gives the top of the heap back to the kernel (brk) once more than trim_threshold
-- (128 KiB by default) of it is free; 64 MiB means never, in these runs.
local NO_TRIM = "GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864"
M.NO_TRIM = NO_TRIM

-- The C multi loop and upload_many at each concurrency (BENCH_CONCURRENCY, a list).
local function concurrent(emu, input, n, c_multi, conc, url)
  local list = {}
  for _, k in ipairs(conc) do
    list[#list + 1] = { key = "c_multi_" .. k, name = ("C multi loop, %d handles"):format(k), fast = true,
      run = function()
        return lib.measure(("%s %s %s %d %d %s"):format(lib.q(c_multi), lib.q(url(emu:token())),
          lib.q(input), n, k, lib.q(input:match("[^/]+$"))), "c_multi")
      end }
    list[#list + 1] = { key = "many_" .. k, name = ("wxmedia upload_many, concurrency %d"):format(k),
      many = k, fast = true, run = function()
        return lib.measure(("%s many %s image %s %d %d"):format(lib.lua_cmd("wx_client.lua"),
          lib.q(emu.base_url), lib.q(input), n, k), "wxmedia upload_many")
      end }
  end
  return list
end

local function contenders(emu, input, n, n_curl, c_loop, c_multi, conc)
  local function url(tok) return emu:upload_url(tok, "image") end
  local list = {
    -- the C loops send the filename wxmedia sends (the file's own: it has the jpg extension)
    { key = "c_loop", name = "C loop, one libcurl handle", fast = true, run = function()
      return lib.measure(("%s %s %s %d %s"):format(lib.q(c_loop), lib.q(url(emu:token())),
        lib.q(input), n, lib.q(input:match("[^/]+$"))), "c_loop")
    end },
    { key = "wxmedia", name = "wxmedia client (wxmedia.new)", fast = true, run = function()
      return lib.measure(("%s loop %s image %s %d"):format(lib.lua_cmd("wx_client.lua"), lib.q(emu.base_url),
        lib.q(input), n), "wxmedia client")
    end },
    { key = "wxmedia_notrim", name = "wxmedia client, heap trim off", fast = true, run = function()
      -- the same client with glibc's heap trimming pushed out of reach: shows what the page faults
      -- of a heap that shrinks and grows again at every upload cost (see BENCHMARKS.md)
      return lib.measure(("env %s %s loop %s image %s %d"):format(NO_TRIM, lib.lua_cmd("wx_client.lua"),
        lib.q(emu.base_url), lib.q(input), n), "wxmedia client, heap trim off")
    end },
    { key = "curl_f", name = "curl -F, one process per file", count = n_curl, run = function()
      return lib.measure(("%s %s %s %d photo.jpg"):format(lib.q(lib.root .. "/bench/curl_loop.sh"),
        lib.q(url(emu:token())), lib.q(input), n_curl), "curl loop")
    end },
    { key = "node", name = "node wechat-api (defaults)", run = function()
      return lib.measure(("%s loop %s image %s %d"):format(lib.node_cmd("peer_node.js"), lib.q(emu.base_url),
        lib.q(input), n), "node wechat-api")
    end },
    { key = "node_ka", name = "node wechat-api (keep-alive agent)", run = function()
      return lib.measure(("%s loop %s image %s %d keepalive"):format(lib.node_cmd("peer_node.js"),
        lib.q(emu.base_url), lib.q(input), n), "node wechat-api keep-alive")
    end },
    { key = "python", name = "python requests.Session", run = function()
      return lib.measure(("%s loop %s image %s %d"):format(lib.python_cmd("peer_python.py"),
        lib.q(emu.base_url), lib.q(input), n), "python requests")
    end },
  }
  for k, c in ipairs(concurrent(emu, input, n, c_multi, conc, url)) do table.insert(list, 1 + k, c) end
  return list
end

function M.run(ctx)
  local n = math.floor(lib.env_number("BENCH_UPLOADS", 1000))
  -- one process per file: every file costs the same whatever their number, so fewer files give the
  -- same rate (1000 would take minutes of process start-ups per repetition)
  local n_curl = math.floor(lib.env_number("BENCH_CURL_UPLOADS", math.min(n, 200)))
  local conc = {}
  for k in (os.getenv("BENCH_CONCURRENCY") or "4,8"):gmatch("%d+") do conc[#conc + 1] = tonumber(k) end
  local blocks = math.max(1, math.floor(lib.env_number("BENCH_UPLOAD_BLOCKS", 5)))
  local emu = ctx.emulator
  local list = contenders(emu, ctx.inputs.jpeg64k, n, n_curl, ctx.c_loop, ctx.c_multi, conc)
  local times, rates = {}, {}
  for _, c in ipairs(list) do
    c.count = c.count or n
    times[c.key], rates[c.key] = {}, {}
  end
  for rep = 1, lib.REPS do
    local block_times = {}
    for b = 1, blocks do
      -- rotate the order, so that no contender always runs first (or last)
      for i = 0, #list - 1 do
        local c = list[(i + rep + b - 2) % #list + 1]
        if b == 1 or c.fast then
          emu:reset()
          local t = c.run()
          block_times[c.key] = block_times[c.key] or {}
          block_times[c.key][b] = t
        end
      end
    end
    for _, c in ipairs(list) do
      local t = lib.stats(block_times[c.key]).median
      times[c.key][rep], rates[c.key][rep] = t, c.count / t
      lib.log("1. rep %d/%d %-38s %7.3f s for %d (%.0f uploads/s, median of %d)", rep, lib.REPS, c.name, t,
        c.count, c.count / t, #block_times[c.key])
    end
  end
  local function ratios(key, ref_key)
    local r = {}
    for rep = 1, lib.REPS do r[rep] = rates[key][rep] / rates[ref_key or "c_loop"][rep] end
    return r
  end
  local ref_stats = lib.stats(times.c_loop)
  local wx = lib.stats(ratios("wxmedia"))
  local best_peer, best_peer_name = 0, nil
  for _, c in ipairs(list) do
    if not c.fast and c.key ~= "c_loop" then
      local s = lib.stats(ratios(c.key))
      if s.median > best_peer then best_peer, best_peer_name = s.median, c.name end
    end
  end
  local function spread(v)
    local s = lib.stats(v)
    return ("spread %+.0f%%/%+.0f%% around the median"):format((s.min / s.median - 1) * 100,
      (s.max / s.median - 1) * 100)
  end
  for _, c in ipairs(list) do
    local values = ratios(c.key)
    local r = { bench = "1", what = c.name, ref = "C loop", unit = "x throughput", values = values,
      abs = ("%.0f/s"):format(lib.stats(rates[c.key]).median) }
    if c.key == "c_loop" then
      r.note = ("%d uploads of 64 KiB in %.3f s (median); fast rows: the median of %d blocks per repetition")
        :format(n, ref_stats.median, blocks)
    elseif c.key == "wxmedia" then
      r.goal = ">= 0.90, > every peer"
      r.pass = wx.median >= 0.9 and wx.median > best_peer
      r.note = ("best peer: %s, %.2f; %s"):format(best_peer_name, best_peer, spread(values))
    elseif c.many then
      r.goal = ">= 1.60"
      r.pass = lib.stats(values).median >= 1.6
      r.note = spread(values)
    elseif c.key == "curl_f" then
      r.note = ("%d files per repetition (BENCH_CURL_UPLOADS): a process per file costs the same for any "
        .. "count"):format(n_curl)
    end
    lib.row(r)
    if c.many then
      local v = ratios(c.key, "c_multi_" .. c.many)
      lib.row({ bench = "1", what = c.name, ref = "C multi loop", unit = "x throughput", values = v,
        goal = ">= 0.90", pass = lib.stats(v).median >= 0.9, note = spread(v) })
    end
  end
end

return M
