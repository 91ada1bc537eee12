-- Benchmark 4: OpenResty. An nginx (Debian's, with its Lua module) runs wxmedia.ngx on
-- BENCH_NGX_WORKERS worker(s). Each repetition queues an emulator fault that holds BENCH_SLOW
-- uploads for BENCH_SLOW_SECONDS each, sends that many upload requests (curl processes in the
-- background), and meanwhile bench/probe.lua measures the latency of a plain location on the same
-- worker(s).
--   threads:  wxmedia.ngx.new{ thread_pool = "wxmedia" }: the transfers run in nginx's thread pool
--   blocking: wxmedia.ngx.new{} (no thread pool): libcurl runs on the event loop, which stops
-- The figure is the probe's 99th percentile; the blocking run is the contrast (what threads avoid).
local lib = require "lib"
local cjson = require "cjson"

local M = {}

local MODULES = "/usr/lib/nginx/modules"

local function conf(prefix, port, opts)
  local root = lib.root
  local settings = cjson.encode({ path = opts.path, client = opts.client })
  return table.concat({
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    -- as root, nginx would run its workers as nobody, who may not read the bench's folders
    lib.sh("id -u"):match("^0%s*$") and "user root;" or "",
    "daemon on;",
    "master_process on;",
    "worker_processes " .. opts.workers .. ";",
    "pid " .. prefix .. "/nginx.pid;",
    "error_log " .. prefix .. "/error.log warn;",
    "thread_pool wxmedia threads=" .. opts.threads .. ";",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. prefix .. "/body;",
    "  proxy_temp_path " .. prefix .. "/proxy;",
    "  fastcgi_temp_path " .. prefix .. "/fastcgi;",
    "  uwsgi_temp_path " .. prefix .. "/uwsgi;",
    "  scgi_temp_path " .. prefix .. "/scgi;",
    "  lua_shared_dict wxmedia_tokens 1m;",
    "  lua_shared_dict wxmedia_locks 1m;",
    "  lua_shared_dict bench 1m;",
    ('  lua_package_path "%s/bench/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;/usr/share/lua/5.1/?.lua;'
      .. '/usr/share/lua/5.1/?/init.lua;;";'):format(root, root, root),
    ('  lua_package_cpath "%s/lib/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";'):format(lib.tmp),
    "  init_by_lua_block { require('ngx_bench').init([==[" .. settings .. "]==]) }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location = /ping  { content_by_lua_block { require('ngx_bench').ping() } }",
    "    location = /warm  { content_by_lua_block { require('ngx_bench').warm() } }",
    "    location = /upload { content_by_lua_block { require('ngx_bench').upload() } }",
    "    location = /state { content_by_lua_block { require('ngx_bench').state() } }",
    "  }",
    "}",
    "",
  }, "\n")
end

local Nginx = {}
Nginx.__index = Nginx

local nginx_seq = 0

-- Starts nginx on a free port (random in 20000-60999, retried when taken); bench/run's trap stops it
-- by its pid file if this run dies first.
local function start_nginx(opts)
  nginx_seq = nginx_seq + 1
  local prefix = lib.mkdir(lib.tmp .. "/nginx-" .. nginx_seq)
  lib.mkdir(prefix .. "/logs")
  math.randomseed(os.time() + nginx_seq)
  local last
  for _ = 1, 20 do
    local port = math.random(20000, 60999)
    lib.write(prefix .. "/nginx.conf", conf(prefix, port, opts))
    local out, ok = lib.sh(("nginx -p %s -c %s 2>&1"):format(lib.q(prefix .. "/"),
      lib.q(prefix .. "/nginx.conf")))
    if ok then
      local pid = assert((lib.read(prefix .. "/nginx.pid") or ""):match("%d+"), "nginx wrote no pid file")
      return setmetatable({ prefix = prefix, pid = pid, base_url = "http://127.0.0.1:" .. port }, Nginx)
    end
    last = out
    if not out:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start: " .. tostring(last), 0)
end

function Nginx:get(path)
  return lib.must("curl -s -S -f --max-time 120 " .. lib.q(self.base_url .. path), "nginx " .. path)
end

function Nginx:state()
  return cjson.decode(self:get("/state"))
end

function Nginx:stop()
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    local stat = lib.read("/proc/" .. self.pid .. "/stat")
    if not stat or stat:match("^%d+ %b() (%a)") == "Z" then return end
    lib.sleep(0.05)
  end
  os.execute("pkill -KILL -P " .. self.pid .. " 2>/dev/null; kill -KILL " .. self.pid .. " 2>/dev/null")
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
    shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks", timeout = seconds * slow + 60 }
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
        st = ngx:state()
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
end

return M
