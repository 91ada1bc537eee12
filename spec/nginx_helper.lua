-- Starts Debian's nginx with its Lua module for the OpenResty specs: a private prefix below
-- WXMEDIA_TEST_TMP, a free loopback port, daemon with a pid file (so spec/run can stop a leftover),
-- and the repo's lua/ and build/luajit/ on the module paths. Never touches a system nginx.
local helper = require "helper"

local nginx_helper = {}

local MODULES = "/usr/lib/nginx/modules"

local Nginx = {}
Nginx.__index = Nginx

local function running_as_root()
  local out = helper.sh("id -u")
  return out:match("^0%s*$") ~= nil
end
nginx_helper.running_as_root = running_as_root

-- The main-context directives that keep an nginx inside its prefix (Debian's nginx has /run and
-- /var/log compiled in): its pid file and error log there, and as root workers that can enter it.
function nginx_helper.private_main(prefix, log_level)
  return table.concat({
    -- as root, nginx would run its workers as nobody, who cannot enter the private temp prefix
    running_as_root() and "user root;" or "",
    "pid " .. prefix .. "/nginx.pid;",
    "error_log " .. prefix .. "/error.log " .. (log_level or "info") .. ";",
  }, "\n")
end

-- The same in the http context: no access log, the temp files (request bodies...) in the prefix.
function nginx_helper.private_http(prefix)
  return table.concat({
    "  access_log off;",
    "  client_body_temp_path " .. prefix .. "/body;",
    "  proxy_temp_path " .. prefix .. "/proxy;",
    "  fastcgi_temp_path " .. prefix .. "/fastcgi;",
    "  uwsgi_temp_path " .. prefix .. "/uwsgi;",
    "  scgi_temp_path " .. prefix .. "/scgi;",
  }, "\n")
end

-- The listen lines: on 127.0.0.1, or on each address of `addresses` (all on the same port).
local function listen(addresses, port, reuseport)
  local lines = {}
  for i, address in ipairs(addresses or { "127.0.0.1" }) do
    lines[i] = "    listen " .. address .. ":" .. port .. (reuseport and " reuseport" or "") .. ";"
  end
  return table.concat(lines, "\n")
end

-- The whole nginx.conf. opts.http is put inside http{} before the server, opts.server inside server{}.
local function render(prefix, port, opts)
  -- nginx resolves relative paths against its prefix, so the repo root must be absolute
  local root = (helper.sh("realpath " .. helper.shell_quote(helper.root)):gsub("%s+$", ""))
  local lines = {
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    nginx_helper.private_main(prefix, opts.log_level),
    "daemon on;",
    "master_process on;",
    "worker_processes " .. (opts.workers or 4) .. ";",
    opts.thread_pool == false and "" or "thread_pool wxmedia threads=8;",
    opts.main or "",
    "events { worker_connections 1024; }",
    "http {",
    nginx_helper.private_http(prefix),
    "  lua_shared_dict wxmedia_tokens 1m;",
    "  lua_shared_dict wxmedia_locks 1m;",
    "  lua_shared_dict test 1m;",
    ('  lua_package_path "%s%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;%s/?/init.lua;;";')
      :format(opts.package_path or "", root, root, "/usr/share/lua/5.1", "/usr/share/lua/5.1"),
    ('  lua_package_cpath "%s/build/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";'):format(root),
    opts.http or "",
    "  server {",
    listen(opts.listen, port, opts.reuseport),
    opts.server or "",
    "  }",
    "}",
    "",
  }
  return table.concat(lines, "\n")
end

-- Running, and not a zombie waiting for its reaper (the master's parent is init, which may be slow).
local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Starts nginx; opts: { workers = 4, main = "...", http = "...", server = "...",
-- thread_pool = true|false, reuseport = bool, log_level = "info", package_path = "extra/?.lua;",
-- listen = { addresses } (default { "127.0.0.1", which base_url names }; others only in a network
-- namespace of the spec's own, see core_redirect_spec.lua),
-- env = { NAME = value } (the environment nginx starts with; `env NAME;` in main keeps one for
-- the workers), conf = function(prefix, port) -> the whole nginx.conf (instead of the one made from
-- the options above: it must write its pid to prefix/nginx.pid and its error log to prefix/error.log) }.
-- Returns an object with base_url, port, prefix, pid, :stop(), :curl(path, args), :error_log().
function nginx_helper.start(opts)
  opts = opts or {}
  local prefix = helper.tmpdir()
  assert(prefix ~= "" and prefix:match("wxmedia%-"), "no temp folder for nginx")
  helper.sh("mkdir -p " .. helper.shell_quote(prefix .. "/logs"))
  local conf = prefix .. "/nginx.conf"
  local last
  -- A random port in 20000-32767, retried when taken (like the emulator): nginx binds in the master
  -- before it daemonizes, so "nginx exited 0" means the port is ours and accepting. Below Linux's
  -- ephemeral range (32768-60999), where every outgoing connection of the machine takes its local
  -- port. The exit status is echoed: LuaJIT's popen():close() does not give it.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  for _ = 1, 20 do
    local port = math.random(20000, 32767)
    helper.write(conf, opts.conf and opts.conf(prefix, port) or render(prefix, port, opts))
    helper.write(prefix .. "/error.log", "")
    local env = {}
    for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. helper.shell_quote(v) end
    local out = helper.sh(("env %s nginx -p %s -c %s 2>&1; echo \"nginx exited $?\""):format(
      table.concat(env, " "), helper.shell_quote(prefix .. "/"), helper.shell_quote(conf)))
    out = out .. (helper.read(prefix .. "/error.log") or "")
    if out:find("nginx exited 0", 1, true) then
      -- the parent nginx returns once the master has forked, maybe before the master wrote its pid
      local pid
      for _ = 1, 250 do
        pid = helper.read(prefix .. "/nginx.pid")
        pid = pid and pid:match("%d+")
        if pid then break end
        os.execute("sleep 0.02")
      end
      assert(pid, "nginx started but wrote no pid file within 5 s")
      return setmetatable({ prefix = prefix, pid = pid, port = port,
        base_url = "http://127.0.0.1:" .. port }, Nginx)
    end
    last = out
    if not out:find("Address already in use", 1, true) then break end
  end
  helper.rmtree(prefix)
  error("nginx did not start: " .. tostring(last))
end

-- The error log so far, to look for warnings.
function Nginx:error_log()
  return helper.read(self.prefix .. "/error.log") or ""
end

-- Stops the master by pid (TERM: a fast shutdown, the tests are over) and waits until it is gone;
-- then removes the prefix.
function Nginx:stop(keep)
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  for _ = 1, 200 do
    if not alive(self.pid) then break end
    os.execute("sleep 0.05")
  end
  if alive(self.pid) then
    -- a killed master leaves its workers behind: kill its children first, by parent pid
    os.execute("pkill -KILL -P " .. self.pid .. " 2>/dev/null; kill -KILL " .. self.pid .. " 2>/dev/null")
    os.execute("sleep 0.2")
  end
  if not keep then helper.rmtree(self.prefix) end
end

-- curl against this nginx: returns status, body, content_type (as helper.curl).
function Nginx:curl(path, args)
  return helper.curl((args or "") .. " " .. helper.shell_quote(self.base_url .. path))
end

return nginx_helper
