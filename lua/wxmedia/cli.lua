-- The wxmedia command line: one run of the command, from argv to the exit status. The parts live
-- in wxmedia/cli/: args (parsing), help (the manual), progress (the bar), commands (upload, get,
-- token). bin/wxmedia only calls main(), so everything can be tested in-process.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local cjson = require "cjson"
local args = require "wxmedia.cli.args"
local commands = require "wxmedia.cli.commands"
local progress = require "wxmedia.cli.progress"
local config = require "wxmedia.config"
local redact = require "wxmedia.redact"
local transport = require "wxmedia.transport"

local pairs, pcall, require, setmetatable, tostring =
      pairs, pcall, require, setmetatable, tostring
local io, math, os, string = io, math, os, string

local _M = {}

-- Exit status, one per class of failure, so that scripts can tell "fix your input" from
-- "WeChat said no" from "try again later".
_M.EXIT = { ok = 0, other = 1, input = 2, wechat = 3, network = 4, interrupted = 130 }

local EXIT_BY_KIND = {
  input = _M.EXIT.input, io = _M.EXIT.input, config = _M.EXIT.input,
  api = _M.EXIT.wechat, token = _M.EXIT.wechat, blocked = _M.EXIT.wechat,
  http = _M.EXIT.network, connect = _M.EXIT.network, timeout = _M.EXIT.network,
  tls = _M.EXIT.network, transfer = _M.EXIT.network,
  -- our progress function raises only when Ctrl-C interrupts it (lua.c's SIGINT hook)
  aborted = _M.EXIT.interrupted,
}

function _M.exit_status(kind)
  return EXIT_BY_KIND[kind] or _M.EXIT.other
end

local function read_secret_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read the secret file: " .. tostring(err) end
  local line = f:read("*l")
  f:close()
  line = line and line:gsub("%s+$", ""):gsub("^%s+", "")
  if not line or line == "" then return nil, "the secret file " .. path .. " is empty" end
  return line
end

-- The store file: --store, else (for --reuse) ${XDG_CACHE_HOME:-$HOME/.cache}/wxmedia/store.json,
-- its folder made private (it holds the access_token). Returns the path, nil (no store), or
-- nil, message.
function _M.store_path(opts, getenv)
  if opts.store then return opts.store end
  if not opts.reuse then return nil end
  local cache = getenv("XDG_CACHE_HOME")
  if not cache or cache == "" then
    local home = getenv("HOME")
    if not home or home == "" then
      return nil, "no folder for the --reuse records: set HOME or use --store"
    end
    cache = home .. "/.cache"
  end
  local dir = cache .. "/wxmedia"
  local ok = os.execute("mkdir -p -m 0700 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  if not (ok == true or ok == 0) then return nil, "cannot make the folder " .. dir end
  return dir .. "/store.json"
end

local function is_terminal(fd)
  local ok = os.execute("test -t " .. fd)
  return ok == true or ok == 0
end

local function default_sys()
  return { getenv = os.getenv, stdout = io.stdout, stderr = io.stderr, is_terminal = is_terminal }
end

-- One run: its options, output, errors and client.
local Run = { EXIT = _M.EXIT }
Run.__index = Run

function Run:say(obj, text)
  if self.opts.json then
    self.stdout:write(cjson.encode(obj), "\n")
  else
    self.stdout:write(text, "\n")
  end
  self.stdout:flush()
end

-- Prints a failure (stderr always; stdout too in --json mode) and returns its exit status.
function Run:fail(what, message, details, json_fields)
  details = details or {}
  message = redact.text(tostring(message))
  -- name the file or media_id, unless the message already does
  local prefix = (what and not message:find(what, 1, true)) and (what .. ": ") or ""
  self.stderr:write("wxmedia: ", prefix, message, "\n")
  if self.opts.json and json_fields then
    json_fields.error = { message = message, kind = details.kind, errcode = details.errcode }
    self.stdout:write(cjson.encode(json_fields), "\n")
  end
  return _M.exit_status(details.kind)
end

-- The client of this run: the options on the command line, the rest from the environment
-- (wxmedia.config reads it, as for every client).
function Run:make_client()
  local opts = self.opts
  local conf = { appid = opts.appid, base_url = opts.base_url, retries = opts.retries,
    timeout = opts.timeout, token_api = opts.token_api }
  if opts.secret_file then
    local secret, err = read_secret_file(opts.secret_file)
    if not secret then return nil, err, { kind = "input" } end
    conf.secret = secret
  end
  local bar = progress.new(self.stderr, function()
    if self.tty == nil then
      self.tty = not opts.no_progress and self.is_terminal(1) and self.is_terminal(2)
    end
    return self.tty
  end)
  self.bar = bar
  conf.progress = bar.progress
  conf.on_retry = function(attempt, message, _, delay)
    self.stderr:write(string.format("wxmedia: %s; retry %d in %.1f s\n", redact.text(message), attempt,
      delay or 0))
  end
  local store, serr = _M.store_path(opts, self.getenv)
  if serr then return nil, serr, { kind = "input" } end
  local wxmedia = require "wxmedia"
  -- tokens and --reuse records in one file: successive runs share a token and their uploads
  if store then conf.token_store = wxmedia.store.file(store) end
  local client, err, details = wxmedia.new(conf)
  if not client and details.kind == "config" and err:find(config.ENV.appid, 1, true) then
    err = err .. " (or use --appid and --secret-file)"
  end
  return client, err, details
end

local function run(argv, sys)
  local opts, perr = args.parse(argv)
  if not opts then
    sys.stderr:write("wxmedia: ", perr, "\nTry 'wxmedia --help' for more information.\n")
    return _M.EXIT.input
  end
  if opts.help then sys.stdout:write(require("wxmedia.cli.help")) return _M.EXIT.ok end
  if opts.version then
    sys.stdout:write("wxmedia ", transport.version() or "(the C module cannot be loaded)", "\n")
    return _M.EXIT.ok
  end

  local self = setmetatable({ opts = opts, stdout = sys.stdout, stderr = sys.stderr,
    getenv = sys.getenv, is_terminal = sys.is_terminal }, Run)
  local client, cerr, details = self:make_client()
  if not client then return self:fail(nil, cerr, details) end
  self.client = client
  return commands[opts.command](self)
end

-- Runs the command; returns the exit status. sys (for tests) may replace getenv, stdout, stderr
-- and is_terminal(fd).
function _M.main(argv, sys)
  local s = default_sys()
  for k, v in pairs(sys or {}) do s[k] = v end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local ok, status = pcall(run, argv or {}, s)
  if ok then return status end
  if tostring(status):match("interrupted!$") then -- Ctrl-C outside a transfer
    s.stderr:write("wxmedia: interrupted\n")
    return _M.EXIT.interrupted
  end
  s.stderr:write("wxmedia: internal error: ", redact.value(status), "\n")
  return _M.EXIT.other
end

return _M
