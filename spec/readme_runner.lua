-- Runs README.md's examples (the units spec/readme_blocks.lua plans) as a reader would, each in a
-- folder of its own below WXMEDIA_TEST_TMP, against the spec's emulator. What an example gets is
-- written down once, here, and the README's "Development" section tells readers the same:
--   * a work folder that looks like a clone of the repository (its top-level entries, linked), plus
--     the sample files below (copies of spec/fixtures/media): the example runs there;
--   * the environment, and nothing else from the caller's: the variables below, PATH with the
--     `wxmedia` command (bin/wxmedia on the run's interpreter and the build tree), HOME and TMPDIR
--     inside the folder, LUA_PATH and LUA_CPATH of the build tree; stdin holds the account's secret
--     and a newline (for `read -rs WECHAT_APPSECRET`);
--   * two substitutions in the code: the emulator's address as the README writes it stands for the
--     running emulator, and the absolute paths of an example's own files (a module nginx loads, a
--     store, a picture) are taken inside the folder.
-- A run that fails raises with the example's place in the README and what it printed, with the
-- emulator's secrets and tokens removed (spec/run fails a suite that prints one).
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cjson = require "cjson.safe"

local q = helper.shell_quote

local runner = {}

-- absolute: the examples run in other folders, and nginx resolves relative paths against its prefix
local root = (helper.sh("cd " .. q(helper.root) .. " && pwd"):gsub("\n$", ""))
runner.root = root

-- The sample files the examples name -> the fixture each is a copy of.
runner.SAMPLES = {
  ["photo.jpg"] = "image.jpg",
  ["welcome.jpg"] = "thumb.jpg",
  ["a.amr"] = "voice.amr",
  ["b.mp3"] = "voice.mp3",
}

-- The emulator's address as the README writes it (what `make emulator` printed once).
runner.EXAMPLE_BASE_URL = "http://127.0.0.1:41213"

-- Folders of an example's own files: an absolute path below one of them is taken inside the run's
-- folder (so is the folder of a `file PATH` block).
runner.OWN_PATHS = { "/etc/nginx/", "/srv/", "/var/lib/" }

-- The variables every example gets: the emulator's first account and its address.
runner.VARIABLES = { "WECHAT_APPID", "WECHAT_APPSECRET", "WXMEDIA_BASE_URL" }

-- The variables an example gets only when its code names them: a WECHAT_ACCESS_TOKEN in every run
-- would take the place of the secret (the README's precedence), and REDIS_URL needs a redis-server.
-- WXMEDIA_CALLBACK_TOKEN is the token of the emulator's callbacks; WXMEDIA_OPENID a user who has just
-- written to the account (so that customer-service messages may be sent to them).
runner.ON_DEMAND = { "WECHAT_ACCESS_TOKEN", "REDIS_URL", "WXMEDIA_CALLBACK_TOKEN", "WXMEDIA_OPENID" }

runner.CALLBACK_TOKEN = "ReadmeCallbackToken1"

-- Each variable's value, made by a function of the Run.
local MAKE = {
  WECHAT_APPID = function() return helper.APPID end,
  WECHAT_APPSECRET = function() return helper.SECRET end,
  WXMEDIA_BASE_URL = function(run) return run.emu.base_url end,
  -- a token of the first account, from the emulator
  WECHAT_ACCESS_TOKEN = function(run) return run.emu:token() end,
  WXMEDIA_CALLBACK_TOKEN = function() return runner.CALLBACK_TOKEN end,
  -- a user who wrote "hi" to the first account just now
  WXMEDIA_OPENID = function(run)
    return run.emu:user_message({ appid = helper.APPID, msg_type = "text", content = "hi" }).openid
  end,
  -- a redis-server of the runner's own (one for all the examples)
  REDIS_URL = function(run)
    run.redis = run.redis or require("redis_helper").start()
    return run.redis.url
  end,
}

-- Where `make install LUA_VERSION=jit` puts wxmedia (an nginx.conf's module paths) -> the build tree.
local INSTALLED = {
  ["/usr/local/share/lua/5.1/"] = root .. "/lua/",
  ["/usr/local/lib/lua/5.1/"] = root .. "/build/luajit/",
}

-- seconds an example may take (a hung one is killed, and fails)
local TIMEOUT = 180

local function plain(s) return (s:gsub("%p", "%%%0")) end

-- The code without its comments (roughly: enough to see which names it uses).
local function code_only(code, lang)
  local lines = {}
  for line in code:gmatch("[^\n]*") do
    if lang == "lua" then
      line = line:gsub("%-%-.*", "")
    else
      line = line:gsub("^%s*#.*", ""):gsub("(%s)#.*", "%1")
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end
runner.code_only = code_only

-- What the spec may print of an example's output: no secret of the emulator's accounts, no token.
function runner.shown(text)
  text = tostring(text or "")
  for _, secret in ipairs({ helper.SECRET, helper.SECRET2 }) do
    text = text:gsub(plain(secret), "REDACTED")
  end
  -- the emulator's tokens: "86_" and 130 more (not the 86_ of x86_64)
  return (text:gsub("%f[%w_]86_" .. ("[%w_%-]"):rep(20) .. "[%w_%-]*", "86_REDACTED"))
end

-- The last lines of a text, for a failure message.
local function tail(text, n)
  local lines = {}
  for line in tostring(text or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

local function where(unit)
  return ("README.md line %d (under \"%s\")"):format(unit.line, unit.heading)
end

-- Raises with the example's place, what failed and what it printed.
local function fail(unit, what, res)
  local parts = { where(unit) .. ": " .. runner.shown(what) }
  if res then
    parts[#parts + 1] = "exit status: " .. tostring(res.code)
    parts[#parts + 1] = "stdout:\n" .. tail(runner.shown(res.out), 30)
    parts[#parts + 1] = "stderr:\n" .. tail(runner.shown(res.err), 30)
  end
  error(table.concat(parts, "\n"), 0)
end

-- Whether running the unit on another interpreter tests anything more: Lua code, and shell code
-- that runs the wxmedia command (an nginx runs its own LuaJIT; make, curl and the emulator do not
-- change with the spec's interpreter).
function runner.uses_interpreter(unit)
  if unit.run == "lua" then return true end
  if unit.run ~= "sh" then return false end
  return ("\n" .. code_only(unit.code, "sh")):find("[^%w_/.%-]wxmedia%s") ~= nil
end

local Run = {}
Run.__index = Run

-- ctx: { emu = the spec's emulator }.
function runner.new(ctx)
  return setmetatable({ emu = ctx.emu }, Run)
end

-- Stops what the runner started (a redis-server).
function Run:close()
  if self.redis then self.redis:shutdown() end
  self.redis = nil
end

-- A fresh folder for one example: work/ (the clone and the samples, where it runs), home/, tmp/,
-- path/wxmedia (the command), fs/ (its own absolute paths).
local function new_folder()
  local dir = helper.tmpdir()
  local work = dir .. "/work"
  local cmds = { "mkdir " .. q(work) .. " " .. q(dir .. "/home") .. " " .. q(dir .. "/tmp") .. " "
    .. q(dir .. "/path") .. " " .. q(dir .. "/fs") }
  for _, name in ipairs(helper.ls(root)) do
    -- not the repository's history, nor a developer's running emulator
    if name ~= ".git" and name ~= ".emulator" and not runner.SAMPLES[name] then
      cmds[#cmds + 1] = "ln -s " .. q(root .. "/" .. name) .. " " .. q(work .. "/" .. name)
    end
  end
  for name, fixture in pairs(runner.SAMPLES) do
    cmds[#cmds + 1] = "cp " .. q(helper.fixture(fixture)) .. " " .. q(work .. "/" .. name)
  end
  local out, ok = helper.sh(table.concat(cmds, " && ") .. " 2>&1")
  assert(ok, "cannot prepare the example's folder: " .. out)
  helper.write(dir .. "/path/wxmedia", ("#!/bin/sh\nexec %s %s \"$@\"\n"):format(q(helper.lua),
    q(root .. "/bin/wxmedia")))
  assert(os.execute("chmod 0755 " .. q(dir .. "/path/wxmedia")))
  return { dir = dir, work = work, fs = dir .. "/fs" }
end

-- The code as it runs in folder f: the emulator's address, and the example's own absolute paths
-- inside f.fs (each path's folder made; a sample file's name placed there as a copy of it).
function Run:adapt(code, f, own)
  code = code:gsub(plain(runner.EXAMPLE_BASE_URL), function() return self.emu.base_url end)
  code = "\n" .. code
  for _, prefix in ipairs(own) do
    code = code:gsub("([^%w_./%-])(" .. plain(prefix) .. ")", function(before, p)
      return before .. f.fs .. p
    end)
  end
  code = code:sub(2)
  for path in code:gmatch(plain(f.fs) .. "[^%s\"'`;,)]*") do
    local folder, name = path:match("^(.*)/([^/]*)$")
    assert(os.execute("mkdir -p " .. q(folder)))
    if runner.SAMPLES[name] then
      assert(os.execute("cp " .. q(helper.fixture(runner.SAMPLES[name])) .. " " .. q(path)))
    end
  end
  return code
end

-- The folders of the unit's own files: the fixed ones and those of its `file PATH` blocks.
local function own_paths(unit)
  local own = {}
  for i, p in ipairs(runner.OWN_PATHS) do own[i] = p end
  for _, file in ipairs(unit.files) do own[#own + 1] = file.path:match("^(.*/)") end
  return own
end

-- The unit's code and files adapted to folder f (files written in place); returns the code.
function Run:prepare(unit, f)
  local own = own_paths(unit)
  for _, file in ipairs(unit.files) do
    local path = f.fs .. file.path
    assert(os.execute("mkdir -p " .. q(path:match("^(.*)/"))))
    helper.write(path, self:adapt(file.block.code, f, own))
  end
  return self:adapt(unit.code, f, own)
end

-- The environment of an example (only these variables; nothing of the caller's).
function Run:env(unit, f)
  local build = helper.lua:match("luajit") and "luajit" or "lua5.4"
  local env = {
    PATH = f.dir .. "/path:" .. (os.getenv("PATH") or "/usr/bin:/bin"),
    HOME = f.dir .. "/home",
    TMPDIR = f.dir .. "/tmp",
    LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
    LUA_CPATH = root .. "/build/" .. build .. "/?.so;;",
  }
  for _, name in ipairs(runner.VARIABLES) do env[name] = MAKE[name](self) end
  local names = ""
  for _, b in ipairs(unit.blocks) do names = names .. code_only(b.code, b.lang) end
  for _, name in ipairs(runner.ON_DEMAND) do
    if names:find(name, 1, true) then env[name] = MAKE[name](self) end
  end
  return env
end

-- Runs argv in f.work with env (and nothing else), stdin the secret; returns { out, err, code }.
local function run(f, env, argv)
  local parts = { "env", "-i" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = "timeout -k 5 " .. TIMEOUT
  for _, a in ipairs(argv) do parts[#parts + 1] = q(a) end
  local stdin = helper.write(f.dir .. "/stdin", env.WECHAT_APPSECRET .. "\n")
  local out = helper.sh("cd " .. q(f.work) .. " && " .. table.concat(parts, " ") .. " <" .. q(stdin)
    .. " 2>" .. q(f.dir .. "/stderr") .. "; echo \"exit:$?\"")
  local body, code = out:match("^(.*)exit:(%d+)\n$")
  return { out = body or out, err = helper.read(f.dir .. "/stderr") or "", code = tonumber(code) }
end

-- A JSON object with a non-zero errcode (WeChat's) or an error (the emulator's control API), or nil.
local function error_answer(text)
  local obj = text:match("^%s*{") and cjson.decode(text)
  if type(obj) ~= "table" then return nil end
  if (type(obj.errcode) == "number" and obj.errcode ~= 0) or obj.error ~= nil then return text end
end

-- The lines of an example's output, and the files it wrote in its folder, that are error answers:
-- an example that printed or saved one did not work, whatever its exit status.
local function error_answers(f, res, before)
  local found = {}
  for line in res.out:gmatch("[^\n]+") do
    if error_answer(line) then found[#found + 1] = "printed " .. line end
  end
  for _, name in ipairs(helper.ls(f.work)) do
    local data = not before[name] and helper.read(f.work .. "/" .. name)
    if data and #data < 65536 and error_answer(data) then
      found[#found + 1] = "saved " .. name .. ": " .. data
    end
  end
  return found
end

local function set_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

-- Checks the exit status, stderr (where a failure goes, and a warning: a store that failed, which
-- the call survives) and the error answers.
local function check(unit, f, res, before)
  if res.code ~= 0 then fail(unit, "the example failed", res) end
  if res.err ~= "" then fail(unit, "the example wrote to stderr", res) end
  local errors = error_answers(f, res, before)
  if #errors > 0 then fail(unit, "the example got an error answer:\n" .. table.concat(errors, "\n"), res) end
end

-- `print(x) --> text` in Lua code says that the line printed is text ("…" standing for anything):
-- each such line must be among what the example printed.
local function expectations(code)
  local found = {}
  for expected in code:gmatch("print%b()%s*%-%->%s*([^\n]-)%s*\n") do found[#found + 1] = expected end
  return found
end

local function printed(out, expected)
  local pattern = "^" .. plain(expected):gsub("…", ".-") .. "$"
  for line in out:gmatch("[^\n]+") do
    if line:find(pattern) then return true end
  end
  return false
end

-- The functions the code defines and never calls (the code calls nothing else by that name).
function runner.uncalled_functions(code)
  local body = code_only(code, "lua")
  local found = {}
  local function consider(name)
    local _, uses = body:gsub("%f[%w_]" .. name .. "%f[^%w_]", "")
    if uses == 1 then found[#found + 1] = name end
  end
  for name in body:gmatch("function%s+([%a_][%w_]*)%s*%(") do consider(name) end
  for name in body:gmatch("local%s+([%a_][%w_]*)%s*=%s*function%s*%(") do consider(name) end
  return found
end

-- Runs a Lua unit with the run's interpreter. drivers: { NAME = Lua code appended when the example
-- defines the function NAME and never calls it (the code that calls it, with what a caller gives) }.
-- Returns { out, err, code }.
function Run:lua(unit, drivers)
  local f = new_folder()
  local ok, res = pcall(function()
    local code = self:prepare(unit, f)
    for _, name in ipairs(runner.uncalled_functions(code)) do
      local driver = drivers[name]
      if not driver then
        fail(unit, "the example defines " .. name .. " and never calls it: give spec/readme_spec.lua "
          .. "a driver that calls it")
      end
      code = code .. "\n-- the driver of spec/readme_spec.lua\n" .. driver
    end
    helper.write(f.work .. "/example.lua", code)
    local before = set_of(helper.ls(f.work))
    local r = run(f, self:env(unit, f), { helper.lua, "example.lua" })
    check(unit, f, r, before)
    for _, expected in ipairs(expectations(unit.code)) do
      if not printed(r.out, expected) then fail(unit, "the example did not print: " .. expected, r) end
    end
    return r
  end)
  helper.rmtree(f.dir)
  if not ok then error(res, 0) end
  return res
end

-- Runs a shell unit with bash (errexit, nounset, pipefail); stops an emulator it left running in its
-- folder. Returns { out, err, code }.
function Run:sh(unit)
  local f = new_folder()
  local ok, res = pcall(function()
    helper.write(f.work .. "/example.sh", self:prepare(unit, f))
    local before = set_of(helper.ls(f.work))
    local r = run(f, self:env(unit, f), { "bash", "-euo", "pipefail", "example.sh" })
    check(unit, f, r, before)
    return r
  end)
  if helper.read(f.work .. "/.emulator/nginx.pid") then
    helper.sh(q(root .. "/emulator/wxmedia-emulator") .. " stop --dir " .. q(f.work .. "/.emulator")
      .. " 2>&1")
  end
  helper.rmtree(f.dir)
  if not ok then error(res, 0) end
  return res
end

-- The nginx.conf of an nginx unit, adapted only where it must be to run here: the listen port, the
-- prefix paths (pid, logs, temp files, and as root `user root`), the module paths (the build tree
-- where `make install` would put wxmedia; the example's own files inside its folder), and an `env`
-- line for each variable the example gets that the conf does not keep yet.
local function nginx_conf(code, prefix, port, env)
  local conf = code:gsub("(%f[%w]listen%s+)[^;]+;", "%1127.0.0.1:" .. port .. ";")
  for from, to in pairs(INSTALLED) do
    conf = conf:gsub(plain(from), function() return to end)
  end
  local main = { nginx_helper.private_main(prefix) }
  for _, list in ipairs({ runner.VARIABLES, runner.ON_DEMAND }) do
    for _, name in ipairs(list) do
      if env[name] and not conf:find("\nenv%s+" .. name .. "[%s;=]") then
        main[#main + 1] = "env " .. name .. ";"
      end
    end
  end
  local text = table.concat(main, "\n") .. "\n"
  -- after the load_module lines, which must come first
  local last = 0
  for stop in conf:gmatch("load_module[^\n]*\n()") do last = stop end
  conf = conf:sub(1, last - 1) .. text .. conf:sub(last)
  return (conf:gsub("(\nhttp%s*{[^\n]*\n)", function(open)
    return open .. nginx_helper.private_http(prefix) .. "\n"
  end, 1))
end

-- Starts a real nginx with an nginx unit (its conf adapted as above, its files in place), against the
-- emulator. Returns the nginx (nginx_helper's object: base_url, :curl, :error_log, :stop) and the
-- work folder with the samples; stop it with Run:stop_nginx.
function Run:nginx(unit)
  local f = new_folder()
  local ok, res = pcall(function()
    local code = self:prepare(unit, f)
    local ports = {}
    for p in code_only(code, "nginx"):gmatch("%f[%w]listen%s+([^;]+);") do ports[p] = true end
    local n = 0
    for _ in pairs(ports) do n = n + 1 end
    if n ~= 1 then fail(unit, "the spec runs an nginx.conf that listens on one port, not " .. n) end
    local env = self:env(unit, f)
    local started, ngx = pcall(nginx_helper.start, {
      env = env,
      conf = function(prefix, port) return nginx_conf(code, prefix, port, env) end,
    })
    if not started then fail(unit, "nginx did not start: " .. tostring(ngx)) end
    ngx.folder = f
    return ngx
  end)
  if not ok then
    helper.rmtree(f.dir)
    error(res, 0)
  end
  return res
end

function Run.stop_nginx(_, ngx)
  ngx:stop()
  helper.rmtree(ngx.folder.dir)
end

return runner
