-- A private temp folder for one run of the command (`get -o -` spools the medium there before it
-- goes to stdout, `upload TYPE -` spools stdin there: WeChat answers HTTP 412 to a chunked body,
-- so an upload needs its length). It must not outlive the run, whatever ends the run.
--
-- The folder is made by mktemp -d under $TMPDIR (mode 0700). A guardian removes it: a shell that
-- reads a pipe whose write end only this process holds (popen's end is close-on-exec), ignoring
-- SIGINT, SIGTERM, SIGHUP and SIGPIPE, which a terminal or a `kill` of the process group sends to
-- it too. When the run ends, by close(), by an exit or by any signal (SIGKILL included, which no
-- handler sees), the pipe closes, the guardian reads EOF, removes the folder and exits. close()
-- waits for it (pclose), so the folder is gone when the command returns.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local io, os, setmetatable, tostring = io, os, setmetatable, tostring

local _M = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local GUARDIAN = "trap '' INT TERM HUP PIPE; cat >/dev/null; rm -rf -- \"$1\""

local Spool = {}
Spool.__index = Spool

-- A new spool, or nil and a message.
function _M.new()
  local p = io.popen("LC_ALL=C mktemp -d \"${TMPDIR:-/tmp}/wxmedia-XXXXXX\" 2>&1", "r")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  -- (the status of a pipe's close is not reported by Lua 5.1 and LuaJIT: the output tells)
  local dir = out:match("^([^\n]+)\n$")
  if not dir or dir:find("^mktemp:") then
    return nil, "cannot make a temp folder: " .. (out:gsub("%s+$", ""):gsub("^mktemp: ", ""))
  end
  local guard = io.popen("exec sh -c " .. quote(GUARDIAN) .. " wxmedia-spool " .. quote(dir)
    .. " >/dev/null 2>&1", "w")
  if not guard then
    os.remove(dir)
    return nil, "cannot make a temp folder: cannot start sh"
  end
  return setmetatable({ dir = dir, guard = guard }, Spool)
end

-- The path of a file in the folder.
function Spool.path(self, name)
  return self.dir .. "/" .. name
end

-- Removes the folder and what it holds, now; idempotent.
function Spool.close(self)
  local guard = self.guard
  if not guard then return end
  self.guard = nil
  guard:close()
end

return _M
