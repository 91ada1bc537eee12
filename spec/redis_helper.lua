-- A real redis-server for the specs (Debian's): on 127.0.0.1, a free port, no persistence, in a
-- temp folder below WXMEDIA_TEST_TMP with its pid file there, so that spec/run's cleanup stops one a
-- crashed spec left running. And the client, redis-lua (Debian's lua-redis, over lua-socket):
-- Debian installs its redis.lua for Lua 5.1-5.3 only; the file runs on 5.4 unchanged, so on 5.4
-- /usr/share/lua/5.3 goes at the end of the path (LuaJIT finds the 5.1 one on its own path).
local helper = require "helper"

local redis_helper = {}

-- The line a Lua program runs first to find redis-lua (the specs' child processes too).
redis_helper.PATH_LINE = 'if _VERSION == "Lua 5.4" then package.path = package.path .. '
  .. '";/usr/share/lua/5.3/?.lua" end'
if _VERSION == "Lua 5.4" then package.path = package.path .. ";/usr/share/lua/5.3/?.lua" end

local Server = {}
Server.__index = Server

-- Running, and not a zombie.
local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- The pid of the redis-server answering on port, or nil.
local function answering(port)
  local out = helper.sh(("redis-cli -h 127.0.0.1 -p %d info server 2>/dev/null"):format(port))
  return out:match("process_id:(%d+)")
end

-- Starts redis-server on port, in the background; true when it is ours that answers.
local function launch(self)
  local out = helper.sh(("cd %s && { redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
    .. "--dir %s --pidfile %s/redis.pid --daemonize no >>%s/redis.log 2>&1 & echo $!; }")
    :format(helper.shell_quote(self.dir), self.port, helper.shell_quote(self.dir),
      helper.shell_quote(self.dir), helper.shell_quote(self.dir)))
  local pid = out:match("%d+")
  if not pid then return false end
  -- our own record too: redis writes its pid file only once it runs
  helper.write(self.dir .. "/server.pid", pid .. "\n")
  for _ = 1, 250 do
    if not alive(pid) then return false end   -- the port was taken
    if answering(self.port) == pid then
      self.pid = pid
      return true
    end
    os.execute("sleep 0.02")
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  return false
end

-- Starts a redis-server on a free loopback port. Returns an object with port, url, pid,
-- :stop(), :start() (again, on the same port: a restart), :pause(ms) (a Redis that accepts
-- connections and commands and answers none for ms), :connect() (a redis-lua client).
function redis_helper.start()
  local dir = helper.tmpdir()
  assert(dir ~= "" and dir:match("wxmedia%-"), "no temp folder for redis-server")
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local self = setmetatable({ dir = dir }, Server)
  for _ = 1, 20 do
    self.port = math.random(20000, 60999)
    if launch(self) then
      self.url = "redis://127.0.0.1:" .. self.port
      return self
    end
  end
  helper.rmtree(dir)
  error("redis-server did not start: " .. tostring(helper.read(dir .. "/redis.log")))
end

-- Starts it again on its port (after stop).
function Server:start()
  for _ = 1, 50 do
    if launch(self) then return self end
    os.execute("sleep 0.1")
  end
  error("redis-server did not start again on port " .. self.port .. ": "
    .. tostring(helper.read(self.dir .. "/redis.log")))
end

-- Stops it (TERM, then KILL after 5 s) and waits until it is gone; keeps its folder for a restart.
function Server:stop()
  local pid = self.pid
  if not pid then return end
  self.pid = nil
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 250 do
    if not alive(pid) then break end
    os.execute("sleep 0.02")
  end
  if alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null; sleep 0.1") end
  os.remove(self.dir .. "/server.pid")
end

-- Stops it for good and removes its folder.
function Server:shutdown()
  self:stop()
  helper.rmtree(self.dir)
end

-- The shell command that makes it answer no client for ms milliseconds (CLIENT PAUSE: the server
-- still accepts connections and reads commands, and a TERM still stops it at once, so a spec that
-- dies meanwhile leaves nothing stuck; the pause ends by itself).
function Server:pause_command(ms)
  return ("redis-cli -h 127.0.0.1 -p %d client pause %d all >/dev/null"):format(self.port, ms)
end

function Server:pause(ms)
  assert(os.execute(self:pause_command(ms)))
end

-- A redis-lua client to this server (for checks behind the store's back).
function Server:connect(timeout)
  return require("redis").connect({ host = "127.0.0.1", port = self.port, timeout = timeout or 5 })
end

-- Lua source that makes a child process find wxmedia (the work tree) and redis-lua.
function redis_helper.preamble()
  return ("package.path = %q .. \"/lua/?.lua;\" .. %q .. \"/lua/?/init.lua;\" .. package.path\n%s\n")
    :format(helper.root, helper.root, redis_helper.PATH_LINE)
end

-- The shell command that runs a Lua file as a child with the build's core.
function redis_helper.child(script)
  local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
  return ("env LUA_CPATH=%s %s %s"):format(helper.shell_quote(cpath), helper.lua, helper.shell_quote(script))
end

return redis_helper
