-- Benchmark 1: many small uploads. N sequential 64 KB JPEG uploads by each contender, every
-- repetition running all of them one after the other against one emulator (reset before each, so
-- every contender finds the same empty server). The figure is each contender's throughput as a
-- ratio to the plain C loop's in the same repetition (its time / the contender's time).
local lib = require "lib"

local M = {}

-- glibc's malloc gives the top of the heap back to the kernel (brk) once more than trim_threshold
-- (128 KiB by default) of it is free; 64 MiB means never, in these runs.
local NO_TRIM = "GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864"
M.NO_TRIM = NO_TRIM

local function contenders(emu, input, n, n_curl, c_loop)
  local function url(tok) return emu:upload_url(tok, "image") end
  return {
    { key = "c_loop", name = "C loop, one libcurl handle", run = function()
      return lib.measure(("%s %s %s %d photo.jpg"):format(lib.q(c_loop), lib.q(url(emu:token())),
        lib.q(input), n), "c_loop")
    end },
    { key = "wxmedia", name = "wxmedia client (wxmedia.new)", run = function()
      return lib.measure(("%s loop %s image %s %d"):format(lib.lua_cmd("wx_client.lua"), lib.q(emu.base_url),
        lib.q(input), n), "wxmedia client")
    end },
    { key = "wxmedia_notrim", name = "wxmedia client, heap trim off", run = function()
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
end

function M.run(ctx)
  local n = math.floor(lib.env_number("BENCH_UPLOADS", 1000))
  -- one process per file: every file costs the same whatever their number, so fewer files give the
  -- same rate (1000 would take minutes of process start-ups per repetition)
  local n_curl = math.floor(lib.env_number("BENCH_CURL_UPLOADS", math.min(n, 200)))
  local emu = ctx.emulator
  local list = contenders(emu, ctx.inputs.jpeg64k, n, n_curl, ctx.c_loop)
  local times, rates = {}, {}
  for _, c in ipairs(list) do
    c.count = c.count or n
    times[c.key], rates[c.key] = {}, {}
  end
  for rep = 1, lib.REPS do
    -- rotate the order, so that no contender always runs first (or last) in a repetition
    for i = 0, #list - 1 do
      local c = list[(i + rep - 1) % #list + 1]
      emu:reset()
      local t = c.run()
      times[c.key][rep], rates[c.key][rep] = t, c.count / t
      lib.log("1. rep %d/%d %-38s %7.3f s for %d (%.0f uploads/s)", rep, lib.REPS, c.name, t, c.count,
        c.count / t)
    end
  end
  local ref = rates.c_loop
  local function ratios(key)
    local r = {}
    for rep = 1, lib.REPS do r[rep] = rates[key][rep] / ref[rep] end
    return r
  end
  local ref_stats = lib.stats(times.c_loop)
  local wx = lib.stats(ratios("wxmedia"))
  local best_peer, best_peer_name = 0, nil
  for _, c in ipairs(list) do
    if c.key ~= "c_loop" and not c.key:find("^wxmedia") then
      local s = lib.stats(ratios(c.key))
      if s.median > best_peer then best_peer, best_peer_name = s.median, c.name end
    end
  end
  for _, c in ipairs(list) do
    local r = { bench = "1", what = c.name, ref = "C loop", unit = "x throughput", values = ratios(c.key),
      abs = ("%.0f/s"):format(lib.stats(rates[c.key]).median) }
    if c.key == "c_loop" then
      r.note = ("%d uploads of 64 KiB in %.3f s (median)"):format(n, ref_stats.median)
    elseif c.key == "wxmedia" then
      r.goal = ">= 0.90, > every peer"
      r.pass = wx.median >= 0.9 and wx.median > best_peer
      r.note = ("best peer: %s, %.2f"):format(best_peer_name, best_peer)
    elseif c.key == "curl_f" then
      r.note = ("%d files per repetition (BENCH_CURL_UPLOADS): a process per file costs the same for any "
        .. "count"):format(n_curl)
    end
    lib.row(r)
  end
end

return M
