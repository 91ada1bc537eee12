-- The wxmedia command as users run it, for the cli_*_spec files: a child process in a clean
-- environment (PATH, the module paths, TMPDIR and what the spec gives), its stdout, stderr and exit
-- status; or started in the background, for signals.
local helper = require "helper"

local q = helper.shell_quote
local cli = {}

-- absolute, since the command runs in other folders
cli.root = helper.sh("cd " .. q(helper.root) .. " && pwd"):gsub("\n$", "")
cli.build = helper.lua:match("luajit") and "build/luajit" or "build/lua5.4"

function cli.fixture(name) return cli.root .. "/spec/fixtures/media/" .. name end

-- The environment of a run against the emulator: its first account and address, plus `more`.
function cli.creds(emu, more)
  local env = { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET,
    WXMEDIA_BASE_URL = emu.base_url }
  for k, v in pairs(more or {}) do env[k] = v end
  return env
end

-- "env -i ... lua bin/wxmedia ARGS", quoted for sh.
function cli.command(args, env)
  local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
    "LUA_PATH=" .. q(cli.root .. "/lua/?.lua;" .. cli.root .. "/lua/?/init.lua;;"),
    "LUA_CPATH=" .. q(cli.root .. "/" .. cli.build .. "/?.so;;") }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = q(helper.lua)
  parts[#parts + 1] = q(cli.root .. "/bin/wxmedia")
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  return table.concat(parts, " ")
end

-- Runs the command in cwd (default: tmp). opts: stdin (a shell redirection or pipeline prefix,
-- default "</dev/null"), stdout (a redirection such as ">/dev/full"; default: captured).
-- Returns { out = stdout, err = stderr, code = exit status }.
function cli.run(tmp, args, env, cwd, opts)
  opts = opts or {}
  local errfile = tmp .. "/stderr-" .. tostring(math.random(1e9)) .. ".txt"
  local cmd = cli.command(args, env) .. " 2>" .. q(errfile) .. " " .. (opts.stdout or "")
  if opts.pipe_in then
    cmd = opts.pipe_in .. " | " .. cmd
  else
    cmd = cmd .. " " .. (opts.stdin or "</dev/null")
  end
  if opts.pipe_out then
    -- the command's status, not that of the pipeline's last command
    cmd = "{ " .. cmd .. "; echo \"exit:$?\" >" .. q(errfile .. ".rc") .. "; } | " .. opts.pipe_out
  end
  local out = helper.sh("cd " .. q(cwd or tmp) .. " && " .. cmd .. "; echo \"exit:$?\"")
  local body, code = out:match("^(.*)exit:(%d+)\n$")
  if opts.pipe_out then code = (helper.read(errfile .. ".rc") or ""):match("%d+") end
  local err = helper.read(errfile) or ""
  os.remove(errfile)
  os.remove(errfile .. ".rc")
  return { out = body, err = err, code = tonumber(code) }
end

-- Waits (polling, generous) until check() is true; raises naming what when it never is.
function cli.wait_for(what, check)
  for _ = 1, 600 do
    if check() then return end
    os.execute("sleep 0.05")
  end
  error("gave up waiting for " .. what)
end

-- Starts the command in the background, its stdin and stdout redirected as `redirect` says (default
-- ">/dev/null </dev/null"). Returns { pid =, rc() = exit status or nil while running, err() = its
-- stderr, kill(signal), wait() }.
function cli.start(tmp, args, env, cwd, redirect)
  local state = tmp .. "/bg-" .. tostring(math.random(1e9))
  os.execute("cd " .. q(cwd or tmp) .. " && (" .. cli.command(args, env) .. " "
    .. (redirect or ">/dev/null </dev/null") .. " 2>" .. q(state .. ".err") .. " & echo $! >"
    .. q(state .. ".pid")
    .. "; wait $!; echo $? >" .. q(state .. ".rc") .. ") >/dev/null 2>&1 &")
  local bg = {}
  cli.wait_for("the command to start", function()
    bg.pid = (helper.read(state .. ".pid") or ""):match("%d+")
    return bg.pid ~= nil
  end)
  function bg.rc() return tonumber((helper.read(state .. ".rc") or ""):match("%d+")) end
  function bg.err() return helper.read(state .. ".err") or "" end
  function bg.kill(signal) os.execute("kill -" .. signal .. " " .. bg.pid .. " 2>/dev/null") end
  -- waits for its end (killed after the wait if it never comes); returns the exit status
  function bg.wait()
    local ok = pcall(cli.wait_for, "the command to end", bg.rc)
    if not ok then bg.kill("KILL") end
    assert(ok, "the command did not end")
    return bg.rc()
  end
  return bg
end

return cli
