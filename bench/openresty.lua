-- Benchmark 4: OpenResty. An nginx (Debian's, with its Lua module) runs wxmedia.ngx on
-- BENCH_NGX_WORKERS worker(s).
-- a. Latency: each repetition queues an emulator fault that holds BENCH_SLOW uploads for
--    BENCH_SLOW_SECONDS each, sends that many upload requests (curl processes in the background),
--    and meanwhile bench/probe.lua measures the latency of a plain location on the same worker(s).
--      threads:  wxmedia.ngx.new{ thread_pool = "wxmedia" }: the transfers run in nginx's thread pool
--      blocking: wxmedia.ngx.new{} (no thread pool): libcurl runs on the event loop, which stops
--    The figure is the probe's 99th percentile; the blocking run is the contrast (what threads avoid).
-- b. Throughput: wrk at concurrency 1, 8 and 32 on an upload location (64 KiB JPEG through the
--    adapter, 8 threads per worker), then wrk at the same concurrency straight at the emulator with
--    the same file: uploads/s through the adapter over the emulator's own, p50 and p99 of both.
-- c. Reload: BENCH_RELOAD_N uploads held 2 s by the emulator, then `kill -HUP` to the master while
--    all are in flight (2 workers, so half of them wait for a thread slot): answered vs dropped.
--    The contrast: the same through a location calling a bare ngx.run_worker_thread (what the
--    adapter did before it kept the old worker alive).
local lib = require "lib"
local cjson = require "cjson"

local M = {}

-- Benchmark 4's nginx: its handlers (bench/ngx_bench.lua) on opts.workers workers, opts.threads
-- threads; opts.path and opts.client go to ngx_bench.init.
local function start_nginx(opts)
  local settings = cjson.encode({ path = opts.path, client = opts.client })
  return lib.start_nginx({
    workers = opts.workers, threads = opts.threads,
    http = {
      "lua_shared_dict bench 1m;",
      -- the reload contrast's bare calls, as many as the requests in flight (the adapter's stay at 8)
      "lua_worker_thread_vm_pool_size 64;",
      "init_by_lua_block { require('ngx_bench').init([==[" .. settings .. "]==]) }",
    },
    server = {
      "location = /ping  { content_by_lua_block { require('ngx_bench').ping() } }",
      "location = /warm  { content_by_lua_block { require('ngx_bench').warm() } }",
      "location = /upload { content_by_lua_block { require('ngx_bench').upload() } }",
      "location = /state { content_by_lua_block { require('ngx_bench').state() } }",
      "location = /bare  { content_by_lua_block { require('ngx_bench').bare() } }",
    },
  })
end

local function state(ngx)
  return cjson.decode(ngx:get("/state"))
end

-- n upload requests at once, each a background curl whose pid file lets bench/run's trap stop it.
local function start_uploads(ngx, n, max_time)
  local dir = lib.mkdir(ngx.prefix .. "/slow")
  local cmds = {}
  for i = 1, n do
    cmds[i] = ("(curl -s -o /dev/null --max-time %d %s >/dev/null 2>&1 & echo $! > %s)"):format(max_time,
      lib.q(ngx.base_url .. "/upload"), lib.q(dir .. "/curl-" .. i .. ".pid"))
  end
  lib.must(table.concat(cmds, "; "), "starting the slow uploads")
end

local function one_mode(ctx, mode, slow, seconds, workers)
  local emu = ctx.emulator
  local client = { appid = lib.APPID, secret = lib.SECRET, base_url = emu.base_url, retries = 0,
    shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks", timeout = seconds * slow + 60,
    max_threads = slow, vm_pool_size = 64 }
  if mode == "threads" then client.thread_pool = "wxmedia" end
  emu:reset()
  local ngx = start_nginx({ workers = workers, threads = slow, path = ctx.inputs.jpeg64k, client = client })
  local ok, p99s, maxes_or_nil = pcall(function()
    local warm = cjson.decode(ngx:get("/warm"))
    assert(warm.done == 1, "the warm-up upload through nginx failed: see " .. ngx.prefix .. "/error.log")
    local p99, p50, maxes, expected = {}, {}, {}, 1
    -- the probe's window: while the uploads hold the server (all at once in threads, one after the
    -- other when they block the worker)
    local window = mode == "threads" and seconds or seconds * slow
    for rep = 1, lib.REPS do
      emu:fault({ route = "upload", kind = "delay", seconds = seconds, count = slow })
      start_uploads(ngx, slow, seconds * slow + 60)
      expected = expected + slow
      lib.sleep(0.1)
      local out = lib.must(("%s %s %g 2>&1"):format(lib.lua_cmd("probe.lua"), lib.q(ngx.base_url .. "/ping"),
        window - 0.2), "probe")
      local count, med, p, max = out:match("(%d+) ([%d.]+) ([%d.]+) ([%d.]+)%s*$")
      assert(count, "the probe printed no figures: " .. out)
      p99[rep], p50[rep], maxes[rep] = tonumber(p), tonumber(med), tonumber(max)
      -- wait until every slow upload is over (when they block, /state itself waits for the worker)
      local deadline = lib.now() + seconds * slow + 60
      local st
      repeat
        st = state(ngx)
        if st.done + st.failed >= expected then break end
        lib.sleep(0.1)
      until lib.now() > deadline
      assert(st.failed == 0, st.failed .. " slow uploads failed: see " .. ngx.prefix .. "/error.log")
      assert(st.done == expected, "the slow uploads did not finish")
      lib.log("4. rep %d/%d %-8s p50 %.2f ms, p99 %.2f ms, max %.2f ms over %s requests", rep, lib.REPS, mode,
        p50[rep], p99[rep], maxes[rep], count)
    end
    return p99, maxes
  end)
  ngx:stop()
  if not ok then error(p99s, 0) end
  return p99s, maxes_or_nil
end

-- wrk's report: requests/s, p50 and p99 in ms; raises on errors (non-2xx, socket errors).
local function wrk(args, url, env)
  local out = lib.must(("%s wrk --latency %s %s 2>&1"):format(env or "", args, lib.q(url)), "wrk")
  local rate = tonumber(out:match("Requests/sec:%s+([%d.]+)"))
  if not rate or rate <= 0 then error("wrk measured nothing: " .. lib.redact(out), 0) end
  if out:find("Non%-2xx") or out:find("Socket errors") then
    error("wrk got errors: " .. lib.redact(out), 0)
  end
  local function ms(pct)
    local v, unit = out:match("\n%s+" .. pct .. "%%%s+([%d.]+)(%a+)")
    local scale = { us = 0.001, ms = 1, s = 1000, m = 60000 }
    assert(v and scale[unit], "no " .. pct .. "% latency in wrk's report")
    return tonumber(v) * scale[unit]
  end
  return rate, ms(50), ms(99)
end

local CONCURRENCY = { 1, 8, 32 }

local function throughput(ctx, workers)
  local emu, seconds = ctx.emulator, math.floor(lib.env_number("BENCH_WRK_SECONDS", 2))
  emu:reset()
  local client = { appid = lib.APPID, secret = lib.SECRET, base_url = emu.base_url, retries = 0,
    thread_pool = "wxmedia", max_threads = 8, shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" }
  local ngx = start_nginx({ workers = workers, threads = 8, path = ctx.inputs.jpeg64k, client = client })
  local script = lib.q(lib.root .. "/bench/wrk_upload.lua")
  local v = {}
  for _, c in ipairs(CONCURRENCY) do
    v[c] = { ratio = {}, rate = {}, p50 = {}, p99 = {}, e50 = {}, e99 = {} }
  end
  local ok, err = pcall(function()
    for rep = 1, lib.REPS do
      for _, c in ipairs(CONCURRENCY) do
        local args = ("-t1 -c%d -d%ds"):format(c, seconds)
        -- the emulator keeps every upload: empty it before each run (its tokens too, so warm again)
        emu:reset()
        ngx:get("/warm")
        local rate, p50, p99 = wrk(args, ngx.base_url .. "/upload")
        emu:reset()
        local erate, e50, e99 = wrk(args .. " -s " .. script, emu:upload_url(emu:token(), "image"),
          "WRK_FILE=" .. lib.q(ctx.inputs.jpeg64k))
        local t = v[c]
        t.ratio[rep], t.rate[rep], t.p50[rep], t.p99[rep], t.e50[rep], t.e99[rep] = rate / erate, rate, p50,
          p99, e50, e99
        lib.log("4b. rep %d/%d c=%d: adapter %.0f/s (p50 %.2f ms, p99 %.2f ms), emulator %.0f/s "
          .. "(p50 %.2f ms, p99 %.2f ms)", rep, lib.REPS, c, rate, p50, p99, erate, e50, e99)
      end
    end
  end)
  ngx:stop()
  emu:reset()
  if not ok then error(err, 0) end
  for _, c in ipairs(CONCURRENCY) do
    local t = v[c]
    local med = function(x) return lib.stats(x).median end
    lib.row({ bench = "4", what = ("adapter 64 KB uploads, concurrency %d"):format(c),
      ref = "emulator direct", unit = "x throughput", values = t.ratio, abs = ("%.0f/s"):format(med(t.rate)),
      note = ("p50 / p99: adapter %.2f / %.2f ms, emulator direct %.2f / %.2f ms (medians); %d worker(s), "
        .. "8 threads each"):format(med(t.p50), med(t.p99), med(t.e50), med(t.e99), workers) })
  end
end

-- n requests at once, each a background curl writing its HTTP status and exit status; returns a
-- function that waits for all of them and returns how many were answered 200.
local function batch(ngx, path, n, name)
  local dir = lib.mkdir(ngx.prefix .. "/" .. name)
  local cmds = {}
  for i = 1, n do
    local f = lib.q(dir .. "/" .. i)
    cmds[i] = ("(curl -s -o /dev/null -w '%%{http_code}' --max-time 120 %s > %s.code; echo $? > %s.rc) "
      .. ">/dev/null 2>&1 & echo $! > %s.pid"):format(lib.q(ngx.base_url .. path), f, f, f)
  end
  lib.must(table.concat(cmds, "; "), "starting a batch")
  return function()
    local deadline = lib.now() + 150
    local answered, done
    repeat
      answered, done = 0, 0
      for i = 1, n do
        if lib.read(dir .. "/" .. i .. ".rc") then done = done + 1 end
        if (lib.read(dir .. "/" .. i .. ".code") or "") == "200" then answered = answered + 1 end
      end
      if done == n then break end
      lib.sleep(0.1)
    until lib.now() > deadline
    assert(done == n, "a batch's curls did not end")
    return answered
  end
end

-- The [alert] lines of an nginx's error log so far.
local function alerts(ngx)
  return select(2, (lib.read(ngx.prefix .. "/error.log") or ""):gsub("%[alert%]", ""))
end

-- Waits until the master has only its new workers left (the old ones have exited).
local function old_workers_gone(ngx, workers)
  local deadline = lib.now() + 60
  repeat
    local out = lib.sh("pgrep -P " .. ngx.pid .. " | wc -l")
    if tonumber(out) == workers then return end
    lib.sleep(0.1)
  until lib.now() > deadline
  error("the old nginx workers did not exit", 0)
end

-- One reload under load: n requests to path (batch name), HUP once all are in flight; returns the
-- number answered, and the [alert] lines the reload added to the error log.
local function reload_once(ngx, path, n, name)
  local before = alerts(ngx)
  local wait = batch(ngx, path .. (path:find("?", 1, true) and "&" or "?") .. "batch=" .. name, n, name)
  local deadline = lib.now() + 30
  repeat
    local st = cjson.decode(ngx:get("/state?batch=" .. name))
    if st.batch >= n then break end
    lib.sleep(0.05)
  until lib.now() > deadline
  lib.sleep(0.5)
  lib.must("kill -HUP " .. ngx.pid, "reload")
  local answered = wait()
  old_workers_gone(ngx, 2)
  return answered, alerts(ngx) - before
end

local function reload(ctx)
  local emu = ctx.emulator
  local n = math.floor(lib.env_number("BENCH_RELOAD_N", 32))
  emu:reset()
  local client = { appid = lib.APPID, secret = lib.SECRET, base_url = emu.base_url, retries = 0,
    thread_pool = "wxmedia", max_threads = 8, slot_wait = 30, shared_dict = "wxmedia_tokens",
    lock_dict = "wxmedia_locks" }
  local ngx = start_nginx({ workers = 2, threads = 8, path = ctx.inputs.jpeg64k, client = client })
  local adapter, bare, adapter_alerts, bare_alerts = {}, {}, 0, 0
  local ok, err = pcall(function()
    ngx:get("/warm")
    for rep = 1, lib.REPS do
      emu:fault({ route = "upload", kind = "delay", seconds = 2, count = n })
      local a1, a2
      adapter[rep], a1 = reload_once(ngx, "/upload", n, "a" .. rep)
      bare[rep], a2 = reload_once(ngx, "/bare?seconds=2", n, "b" .. rep)
      adapter_alerts, bare_alerts = adapter_alerts + a1, bare_alerts + a2
      lib.log("4c. rep %d/%d: %d in flight at each reload; answered: adapter %d (%d alerts), bare "
        .. "run_worker_thread %d (%d alerts)", rep, lib.REPS, n, adapter[rep], a1, bare[rep], a2)
    end
  end)
  ngx:stop()
  emu:reset()
  if not ok then error(err, 0) end
  lib.row({ bench = "4", what = ("reload (HUP) with %d uploads in flight: answered"):format(n), ref = "-",
    unit = "requests", values = adapter, goal = ("%d (0 dropped)"):format(n),
    pass = lib.stats(adapter).min == n,
    note = ("2 workers x 8 threads, uploads held 2 s by the emulator (half wait for a slot); [alert] lines "
      .. "in the error log: %d over these reloads, %d over the contrast's"):format(adapter_alerts,
      bare_alerts) })
  lib.row({ bench = "4", what = ("contrast: bare ngx.run_worker_thread, %d in flight"):format(n), ref = "-",
    unit = "requests", values = bare,
    note = "a location waiting 2 s on a bare ngx.run_worker_thread (no timer of its own): the old worker "
      .. "exits" })
end

function M.run(ctx)
  local slow = math.floor(lib.env_number("BENCH_SLOW", 8))
  local seconds = math.floor(lib.env_number("BENCH_SLOW_SECONDS", 2))
  local workers = math.floor(lib.env_number("BENCH_NGX_WORKERS", 1))
  local threads, threads_max = one_mode(ctx, "threads", slow, seconds, workers)
  local blocking, blocking_max = one_mode(ctx, "blocking", slow, seconds, workers)
  local what = ("plain location, %d x %d s uploads"):format(slow, seconds)
  lib.row({ bench = "4", what = what .. " in thread_pool: p99", ref = "-", unit = "ms", values = threads,
    goal = "< 10 ms", pass = lib.stats(threads).median < 10,
    note = ("%d nginx worker(s); one keep-alive connection probing /ping while the uploads wait on the "
      .. "emulator")
      :format(workers) })
  lib.row({ bench = "4", what = what .. " in thread_pool: max", ref = "-", unit = "ms",
    values = threads_max })
  lib.row({ bench = "4", what = what .. " blocking: p99", ref = "-", unit = "ms", values = blocking })
  lib.row({ bench = "4", what = what .. " blocking: max", ref = "-", unit = "ms", values = blocking_max })
  local ratio = {}
  for rep = 1, lib.REPS do ratio[rep] = blocking[rep] / threads[rep] end
  lib.row({ bench = "4", what = "blocking p99 / thread_pool p99", ref = "thread_pool", unit = "x latency",
    values = ratio })
  throughput(ctx, workers)
  reload(ctx)
end

return M
