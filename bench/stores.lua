-- Benchmark 6: what a shared store costs. Token lookups and media_id record lookups per second
-- through the Redis store (redis-lua over LuaSocket, a redis-server on loopback) and the file store,
-- next to the memory store, in one process (bench/stores_child.lua alternates blocks of each); and
-- what each adds to an upload against the emulator: client:upload (one token lookup) and a media_id
-- that uploads a new content (lock, record read, upload, two record writes, unlock).
-- Each repetition is one child process per kind of call; its figure is the median of its rounds'
-- ratios (a round: one block through each store).
local lib = require "lib"

local M = {}

local KINDS = { "memory", "file", "redis" }
local NAMES = { memory = "memory store", file = "file store", redis = "Redis store" }

-- A redis-server on a free loopback port, below the server temp folder (bench/run stops it by its
-- pid file on every path), with nothing persisted.
local function start_redis()
  local dir = lib.mkdir(lib.server_tmp .. "/redis")
  math.randomseed(os.time())
  for _ = 1, 20 do
    local port = math.random(20000, 60999)
    local pid = lib.sh(("cd %s && { redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
      .. "--dir %s --daemonize no >>redis.log 2>&1 & echo $!; }"):format(lib.q(dir), port, lib.q(dir)))
      :match("%d+")
    lib.write(dir .. "/redis.pid", pid .. "\n")
    for _ = 1, 250 do
      local info = lib.sh(("redis-cli -h 127.0.0.1 -p %d info server 2>/dev/null"):format(port))
      if info:match("process_id:(%d+)") == pid then
        return { port = port, pid = pid, dir = dir }
      end
      if not lib.read("/proc/" .. pid .. "/stat") then break end   -- the port was taken
      lib.sleep(0.02)
    end
    lib.sh("kill " .. pid .. " 2>/dev/null")
  end
  error("redis-server did not start: " .. tostring(lib.read(dir .. "/redis.log")), 0)
end

local function stop_redis(r)
  lib.sh("kill " .. r.pid .. " 2>/dev/null")
  os.remove(r.dir .. "/redis.pid")
end

-- One child run: { memory = {seconds per block...}, file = {...}, redis = {...} } in round order.
local function run_child(ctx, redis, mode, files, n, block, rep)
  local store_dir = lib.mkdir(("%s/stores/%s-%d"):format(lib.tmp, mode, rep))
  local out = lib.must(("%s %s %s %d %s %s %d %d 2>&1"):format(lib.lua_cmd("stores_child.lua"), mode,
    lib.q(ctx.emulator.base_url), redis.port, lib.q(store_dir), lib.q(files), n, block),
    "stores_child " .. mode)
  local times = { memory = {}, file = {}, redis = {} }
  for kind, s in out:gmatch("(%a+) ([%d.]+)") do
    if times[kind] then times[kind][#times[kind] + 1] = tonumber(s) end
  end
  assert(#times.memory > 0 and #times.memory == #times.redis, "stores_child printed: " .. lib.redact(out))
  return times
end

-- The median over rounds of f(memory seconds, that store's seconds).
local function per_round(times, kind, f)
  local v = {}
  for i, t in ipairs(times.memory) do v[i] = f(t, times[kind][i]) end
  return lib.stats(v).median
end

function M.run(ctx)
  local calls = math.floor(lib.env_number("BENCH_STORE_CALLS", 4000))
  local uploads = math.floor(lib.env_number("BENCH_STORE_UPLOADS", 300))
  local files = lib.mkdir(lib.tmp .. "/stores-inputs")
  local inputs = require "inputs"
  inputs.jpeg(files .. "/warm.jpg", 64 * 1024)
  -- new contents for media_id: every file differs in size, hence in content; one set per store, so
  -- that no store finds a hash another one computed (they are kept per path)
  for _, kind in ipairs(KINDS) do
    for i = 1, uploads do inputs.jpeg(("%s/%s-%d.jpg"):format(files, kind, i), 4096 + i) end
  end
  local redis = start_redis()
  local ok, err = pcall(function()
    local lookups = {
      { mode = "token", what = "token lookups", n = calls, block = 200, call = "client:token()" },
      { mode = "reuse", what = "reuse lookups", n = calls, block = 200,
        call = "client:media_id of a recorded file (nothing sent)" },
    }
    for _, l in ipairs(lookups) do
      local ratio, rate = { file = {}, redis = {} }, { memory = {}, file = {}, redis = {} }
      for rep = 1, lib.REPS do
        ctx.emulator:reset()
        local times = run_child(ctx, redis, l.mode, files, l.n, l.block, rep)
        for _, kind in ipairs(KINDS) do
          rate[kind][rep] = l.block / lib.stats(times[kind]).median
          if kind ~= "memory" then
            ratio[kind][rep] = per_round(times, kind, function(m, t) return m / t end)
          end
        end
      end
      lib.row({ bench = "6", what = l.what .. ", memory store", ref = "memory store", unit = "x rate",
        values = { 1 }, abs = ("%.0f/s"):format(lib.stats(rate.memory).median),
        note = ("%s: %d through each store per repetition, alternating blocks of %d"):format(l.call, l.n,
          l.block) })
      for _, kind in ipairs({ "file", "redis" }) do
        lib.row({ bench = "6", what = l.what .. ", " .. NAMES[kind], ref = "memory store", unit = "x rate",
          values = ratio[kind], abs = ("%.0f/s"):format(lib.stats(rate[kind]).median) })
      end
    end

    local sends = {
      { mode = "upload", what = "client:upload 64 KiB", block = 20 },
      { mode = "media_id", what = "media_id, a new 4 KiB content", block = 20 },
    }
    for _, s in ipairs(sends) do
      local added, ms = { file = {}, redis = {} }, { memory = {}, file = {}, redis = {} }
      for rep = 1, lib.REPS do
        ctx.emulator:reset()
        local times = run_child(ctx, redis, s.mode, files, uploads, s.block, rep)
        for _, kind in ipairs(KINDS) do
          ms[kind][rep] = lib.stats(times[kind]).median / s.block * 1000
          if kind ~= "memory" then
            added[kind][rep] = per_round(times, kind, function(m, t) return (t - m) / s.block * 1000 end)
          end
        end
      end
      for _, kind in ipairs({ "file", "redis" }) do
        lib.row({ bench = "6", what = s.what .. ", " .. NAMES[kind], ref = "memory store",
          unit = "ms added/call", values = added[kind],
          abs = ("%.3f ms"):format(lib.stats(ms[kind]).median),
          note = kind == "file" and ("%d calls through each store per repetition, alternating blocks of "
            .. "%d; memory store: %.3f ms per call"):format(uploads, s.block, lib.stats(ms.memory).median)
            or nil })
      end
    end
  end)
  stop_redis(redis)
  if not ok then error(err, 0) end
end

return M
