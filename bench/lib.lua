-- What the benchmarks share: shell commands, the run's temp folders, the emulator, tokens, the
-- statistics (min/median/max) and the result rows that bench/main.lua prints as one table.
-- Everything a benchmark starts is recorded under the run's folder (pid files, emulator dirs), so
-- bench/run's EXIT trap can stop it whatever happens.
local cjson = require "cjson.safe"

local lib = {}

lib.APPID, lib.SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"

lib.root = assert(os.getenv("WXMEDIA_ROOT"), "run me through bench/run")
-- the client side's files (inputs, downloads): a real disk, as a user's would be
lib.tmp = assert(os.getenv("WXMEDIA_BENCH_TMP"), "run me through bench/run")
-- the emulator's folder: memory, so that its storage never competes with the clients for the disk
lib.server_tmp = os.getenv("WXMEDIA_BENCH_SERVER_TMP") or lib.tmp
lib.out = lib.root .. "/bench/out"

function lib.env_number(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v == nil then return default end
  return v
end

lib.REPS = math.max(5, math.floor(lib.env_number("BENCH_REPS", 5)))

function lib.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its stdout and whether it exited 0.
function lib.sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

-- Runs a command that must succeed; its stderr goes to the terminal.
function lib.must(cmd, what)
  local out, ok = lib.sh(cmd)
  if not ok then error((what or "command") .. " failed: " .. lib.redact(out), 0) end
  return out
end

-- No access_token or secret ever reaches the terminal or a file we keep.
function lib.redact(s)
  return (tostring(s):gsub("(access_token=)[^&%s\"']+", "%1…"):gsub("(secret=)[^&%s\"']+", "%1…"))
end

function lib.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local d = f:read("a")
  f:close()
  return d
end

function lib.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function lib.mkdir(path)
  lib.must("mkdir -p " .. lib.q(path), "mkdir")
  return path
end

function lib.now()
  return require("wxmedia.core").now()
end

function lib.sleep(seconds)
  require("wxmedia.core").sleep(seconds)
end

function lib.log(fmt, ...)
  io.stderr:write(("bench: " .. fmt .. "\n"):format(...))
end

-- Statistics -------------------------------------------------------------------------------------

function lib.stats(values)
  local v = {}
  for i, x in ipairs(values) do v[i] = x end
  table.sort(v)
  local n = #v
  if n == 0 then return nil end
  local median = n % 2 == 1 and v[(n + 1) / 2] or (v[n / 2] + v[n / 2 + 1]) / 2
  return { min = v[1], median = median, max = v[n], n = n }
end

-- The run's rows: { bench, what, ref, unit, values = {...}, goal = "…", pass = bool|nil, note }
lib.rows = {}

function lib.row(r)
  r.stats = lib.stats(r.values)
  lib.rows[#lib.rows + 1] = r
  return r
end

-- The emulator ------------------------------------------------------------------------------------

local Emulator = {}
Emulator.__index = Emulator

local emulator_seq = 0

-- Starts an emulator in a new folder below the server temp folder (bench/run stops it by that
-- folder on exit). opts: workers.
function lib.start_emulator(opts)
  opts = opts or {}
  emulator_seq = emulator_seq + 1
  local dir = lib.server_tmp .. "/emulator-" .. emulator_seq
  local cmd = lib.q(lib.root .. "/emulator/wxmedia-emulator") .. " start --json --dir " .. lib.q(dir)
  if opts.workers then cmd = cmd .. " --workers " .. opts.workers end
  local out = lib.must(cmd .. " 2>&1", "starting the emulator")
  local info = cjson.decode(out:match("{.*}") or "")
  assert(info and info.base_url, "the emulator did not start: " .. out)
  return setmetatable({ base_url = info.base_url, dir = dir }, Emulator)
end

function Emulator:stop()
  lib.sh(lib.q(lib.root .. "/emulator/wxmedia-emulator") .. " stop --dir " .. lib.q(self.dir) .. " 2>&1")
end

function Emulator:control(path, body)
  local out = lib.must(("curl -s -S -f -X POST -H 'Content-Type: application/json' --data-binary %s %s")
    :format(lib.q(cjson.encode(body or {})), lib.q(self.base_url .. "/__emulator/" .. path)),
    "control " .. path)
  return cjson.decode(out)
end

-- Forgets tokens and media (the stored files too), so a run starts from an empty server.
function Emulator:reset() return self:control("reset", {}) end
function Emulator:fault(spec) return self:control("fault", spec) end

-- A classic token, straight from the emulator (for the references and the peers that take one).
function Emulator:token()
  local url = self.base_url .. "/cgi-bin/token?grant_type=client_credential&appid=" .. lib.APPID
    .. "&secret=" .. lib.SECRET
  local out = lib.must("curl -s -S -f " .. lib.q(url), "token")
  local doc = cjson.decode(out)
  assert(doc and doc.access_token, "no token from the emulator")
  return doc.access_token
end

function Emulator:upload_url(token, mtype)
  return self.base_url .. "/cgi-bin/media/upload?access_token=" .. token .. "&type=" .. mtype
end

function Emulator:get_url(token, media_id)
  return self.base_url .. "/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. media_id
end

-- Uploads with the curl command, for a media_id that does not depend on the code measured.
function Emulator:upload_with_curl(token, mtype, path, filename)
  local out = lib.must(("curl -s -S -f -F %s %s"):format(lib.q("media=@" .. path .. ";filename=" .. filename),
    lib.q(self:upload_url(token, mtype))), "upload with curl")
  local doc = cjson.decode(out)
  assert(doc and doc.media_id, "the emulator refused the bench's input " .. path .. ": " .. lib.redact(out))
  return doc.media_id
end

-- nginx (Debian's, with its Lua module), for the OpenResty benchmarks -------------------------------

local MODULES = "/usr/lib/nginx/modules"

-- The whole nginx.conf: o = { workers, threads (thread_pool wxmedia), http = { lines }, server =
-- { lines } }, with wxmedia's dicts (wxmedia_tokens, wxmedia_locks), the work tree's Lua files
-- and bench/ on the module path, the run's private copy of the core.
local function nginx_conf(prefix, port, o)
  local root = lib.root
  local lines = {
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    -- as root, nginx would run its workers as nobody, who may not read the bench's folders
    lib.sh("id -u"):match("^0%s*$") and "user root;" or "",
    "daemon on;",
    "master_process on;",
    "worker_processes " .. o.workers .. ";",
    "pid " .. prefix .. "/nginx.pid;",
    "error_log " .. prefix .. "/error.log warn;",
    "thread_pool wxmedia threads=" .. o.threads .. ";",
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
    ('  lua_package_path "%s/bench/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;/usr/share/lua/5.1/?.lua;'
      .. '/usr/share/lua/5.1/?/init.lua;;";'):format(root, root, root),
    ('  lua_package_cpath "%s/lib/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";'):format(lib.tmp),
  }
  for _, l in ipairs(o.http or {}) do lines[#lines + 1] = "  " .. l end
  lines[#lines + 1] = "  server {"
  lines[#lines + 1] = "    listen 127.0.0.1:" .. port .. ";"
  for _, l in ipairs(o.server or {}) do lines[#lines + 1] = "    " .. l end
  lines[#lines + 1] = "  }"
  lines[#lines + 1] = "}"
  lines[#lines + 1] = ""
  return table.concat(lines, "\n")
end

local Nginx = {}
Nginx.__index = Nginx

local nginx_seq = 0

-- Starts nginx (see nginx_conf for o) on a free port (random in 20000-60999, retried when taken);
-- bench/run's trap stops it by its pid file if this run dies first.
function lib.start_nginx(o)
  nginx_seq = nginx_seq + 1
  local prefix = lib.mkdir(lib.tmp .. "/nginx-" .. nginx_seq)
  lib.mkdir(prefix .. "/logs")
  math.randomseed(os.time() + nginx_seq)
  local last
  for _ = 1, 20 do
    local port = math.random(20000, 60999)
    lib.write(prefix .. "/nginx.conf", nginx_conf(prefix, port, o))
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

function Nginx:stop()
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    local stat = lib.read("/proc/" .. self.pid .. "/stat")
    if not stat or stat:match("^%d+ %b() (%a)") == "Z" then return end
    lib.sleep(0.05)
  end
  os.execute("pkill -KILL -P " .. self.pid .. " 2>/dev/null; kill -KILL " .. self.pid .. " 2>/dev/null")
end

-- Child processes -------------------------------------------------------------------------------

-- The environment and interpreter for a Lua child that loads wxmedia from the work tree (and the
-- core from the run's private copy); `prefix` goes before the interpreter (e.g. valgrind).
function lib.lua_cmd(script, prefix)
  return ("env LUA_PATH=%s LUA_CPATH=%s %s lua5.4 %s"):format(
    lib.q(lib.root .. "/lua/?.lua;" .. lib.root .. "/lua/?/init.lua;" .. lib.root .. "/bench/?.lua;;"),
    lib.q(lib.tmp .. "/lib/lua5.4/?.so;;"), prefix or "", lib.q(lib.root .. "/bench/" .. script))
end

function lib.node_cmd(script)
  return "node " .. lib.q(lib.root .. "/bench/" .. script)
end

-- Debian's python3 (with Debian's python3-requests), not whatever python3 comes first on PATH.
function lib.python_cmd(script)
  return "/usr/bin/python3 " .. lib.q(lib.root .. "/bench/" .. script)
end

-- The last line of a child's output that is a number: what the child measured.
function lib.number_of(out, what)
  local last
  for line in out:gmatch("[^\n]+") do
    local n = tonumber(line)
    if n then last = n end
  end
  if not last then error(what .. " printed no figure: " .. lib.redact(out), 0) end
  return last
end

-- Runs a child that prints its own measurement; returns that number.
function lib.measure(cmd, what)
  local out, ok = lib.sh(cmd .. " 2>&1")
  if not ok then error(what .. " failed: " .. lib.redact(out), 0) end
  return lib.number_of(out, what)
end

-- Runs a child that prints its own measurement, under GNU time: returns that number and the child's
-- peak RSS in KiB (%M, the kernel's ru_maxrss of the child).
function lib.measure_rss(cmd, what)
  local file = lib.tmp .. "/rss.txt"
  local out, ok = lib.sh(("/usr/bin/time -f %%M -o %s %s 2>&1"):format(lib.q(file), cmd))
  if not ok then error(what .. " failed: " .. lib.redact(out), 0) end
  return lib.number_of(out, what), lib.number_of(lib.read(file) or "", what .. " (peak rss)")
end

return lib
