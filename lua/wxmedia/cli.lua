-- The wxmedia command line: one run of the command, from argv to the exit status. The parts live
-- in wxmedia/cli/: args (parsing), help (the manual), progress (the bar), output (stdout checked,
-- text from servers made printable), spool (a private temp folder that never outlives the run),
-- commands (upload, get, send, token). bin/wxmedia only calls main(), so everything can be tested
-- in-process.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local args = require "wxmedia.cli.args"
local commands = require "wxmedia.cli.commands"
local help = require "wxmedia.cli.help"
local output = require "wxmedia.cli.output"
local progress = require "wxmedia.cli.progress"
local spool = require "wxmedia.cli.spool"
local config = require "wxmedia.config"
local redact = require "wxmedia.redact"
local transport = require "wxmedia.transport"

local ipairs, pairs, pcall, require, setmetatable, tostring =
      ipairs, pairs, pcall, require, setmetatable, tostring
local io, math, os, string = io, math, os, string

local _M = {}

-- Exit status, one per class of failure, so that scripts can tell "fix your input" from "WeChat
-- said no" from "try again later" from "the medium came but could not be written here". 5 is ours,
-- not curl's 23: our statuses are classes (curl numbers each error), and a script must tell a full
-- disk or a dead pipe (free space, fix the reader; the command line was right) from bad input (2).
_M.EXIT = { ok = 0, other = 1, input = 2, wechat = 3, network = 4, output = 5, interrupted = 130 }

local EXIT_BY_KIND = {
  input = _M.EXIT.input, config = _M.EXIT.input,
  io = _M.EXIT.output,
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
  if not f then
    -- io.open says "<path>: No such file or directory"
    local why = tostring(err)
    if why:sub(1, #path + 2) == path .. ": " then why = why:sub(#path + 3) end
    return nil, "cannot read the secret file " .. path .. ": " .. why:sub(1, 1):lower() .. why:sub(2)
  end
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

local function wall_clock()
  local _, time = transport.clock()
  return time and time() or os.time()
end

local function default_sys()
  return { getenv = os.getenv, stdin = io.stdin, stdout = io.stdout, stderr = io.stderr,
    is_terminal = is_terminal, clock = wall_clock,
    -- a program's choice, never a library's: the core's temp files go with SIGTERM, SIGHUP, SIGPIPE
    on_signals = transport.remove_temp_files_on_signals }
end

-- One run: its options, output, errors, client and temp folders.
local Run = { EXIT = _M.EXIT }
Run.__index = Run

-- A line on stderr: "wxmedia: ...", in printable ASCII whatever a server put in it.
function Run:note(text)
  self.stderr:write("wxmedia: ", output.printable(redact.text(tostring(text))), "\n")
end

-- A result on stdout: the JSON object with --json, else the line.
function Run:say(obj, text)
  if self.opts.json then
    self.out.write(output.json(obj), "\n")
  else
    self.out.write(text, "\n")
  end
end

-- A subject as a message names it: a long one (a media_id of megabytes given by mistake) is cut.
local SUBJECT_MAX = 80
local function subject_text(subject)
  if #subject <= SUBJECT_MAX then return subject end
  return subject:sub(1, 64) .. "... (" .. #subject .. " characters)"
end

-- Prints a failure about subject (a file, a media_id; nil for the run itself) to stderr, and with
-- --json the object json_fields to stdout; returns its exit status. A message that does not already
-- say what could not be done ("cannot <verb> ...") nor quote the subject gets "cannot <verb>
-- <subject>" in front.
function Run:failure(verb, subject, message, details, json_fields)
  details = details or {}
  message = redact.text(tostring(message))
  local lead = subject and ("cannot " .. verb .. " ")
  if lead and message:sub(1, #lead) ~= lead and not message:find("'" .. subject .. "'", 1, true) then
    message = lead .. subject_text(subject) .. ": " .. message
  end
  self:note(message)
  if self.opts.json and json_fields then
    json_fields.error = { message = message, kind = details.kind, errcode = details.errcode }
    self.out.write(output.json(json_fields), "\n")
  end
  return _M.exit_status(details.kind)
end

-- A private temp folder, removed at the end of the run however it ends (wxmedia.cli.spool).
function Run:spool()
  local s, err = spool.new()
  if s then self.spools[#self.spools + 1] = s end
  return s, err
end

-- Where the command line takes the option a config failure names (details.option).
local OPTION_HINTS = { appid = " (or use --appid and --secret-file)", secret = " (or use --secret-file)",
  allow_http = " (or use --allow-http)" }

-- The client's failure in the command line's terms: where a bad base URL came from, how to give a
-- missing credential.
local function client_problem(opts, err, details)
  local option = details.kind == "config" and details.option
  if option == "base_url" then
    return err .. (opts.base_url and " (given with --base-url)" or (" (from " .. config.ENV.base_url .. ")"))
  end
  return err .. (OPTION_HINTS[option] or "")
end

-- The client of this run: the options on the command line, the rest from the environment
-- (wxmedia.config reads it, as for every client).
function Run:make_client()
  local opts = self.opts
  local conf = { appid = opts.appid, base_url = opts.base_url, allow_http = opts.allow_http,
    retries = opts.retries, timeout = opts.timeout, token_api = opts.token_api }
  if opts.secret_file then
    local secret, err = read_secret_file(opts.secret_file)
    if not secret then return nil, err, { kind = "input" } end
    conf.secret = secret
  end
  local bar = progress.new(self.stderr, function()
    if self.tty == nil then
      -- stdout a terminal too (its output is not captured), unless it is the medium (-o -)
      self.tty = not opts.no_progress and self.is_terminal(2) and (opts.output == "-" or self.is_terminal(1))
    end
    return self.tty
  end, self.clock)
  self.bar = bar
  conf.progress = bar.progress
  conf.on_retry = function(attempt, message, _, delay)
    self:note(string.format("%s; retry %d in %.1f s", message, attempt, delay or 0))
  end
  -- on stderr, never stdout: --json output stays one object per line
  conf.on_warning = function(message) self:note("warning: " .. tostring(message)) end
  local store, serr = _M.store_path(opts, self.getenv)
  if serr then return nil, serr, { kind = "input" } end
  local wxmedia = require "wxmedia"
  -- tokens and --reuse records in one file: successive runs share a token and their uploads
  if store then conf.token_store = wxmedia.store.file(store) end
  local client, err, details = wxmedia.new(conf)
  if not client then return nil, client_problem(opts, err, details), details end
  return client
end

local function usage(self, message, command)
  self:note(message)
  self.stderr:write("Try 'wxmedia ", command and ("help " .. command) or "--help",
    "' for more information.\n")
  return _M.EXIT.input
end

local function run(self, argv)
  local opts, perr, about = args.parse(argv)
  if not opts then
    self.opts = {}
    return usage(self, perr, about)
  end
  self.opts = opts
  if opts.help then
    self.out.write(opts.topic and help.topic(opts.topic) or help.text)
    return _M.EXIT.ok
  end
  if opts.version then
    self.out.write("wxmedia ", transport.version() or "(the C module cannot be loaded)", "\n")
    return _M.EXIT.ok
  end
  if self.on_signals then self.on_signals() end
  local client, cerr, details = self:make_client()
  if not client then return self:failure(nil, nil, cerr, details) end
  self.client = client
  return commands[opts.command](self)
end

-- Runs the command; returns the exit status. sys (for tests) may replace getenv, stdin, stdout,
-- stderr, is_terminal(fd), clock() and on_signals() (false: no signal handlers).
function _M.main(argv, sys)
  local s = default_sys()
  for k, v in pairs(sys or {}) do s[k] = v end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local self = setmetatable({ opts = {}, stdin = s.stdin, stdout = s.stdout, stderr = s.stderr,
    out = output.stdout(s.stdout), getenv = s.getenv, is_terminal = s.is_terminal, clock = s.clock,
    on_signals = s.on_signals, spools = {} }, Run)
  local ok, status = pcall(run, self, argv or {})
  for _, sp in ipairs(self.spools) do sp:close() end
  if ok then return status end
  if output.is_output_error(status) then
    if self.bar then self.bar.finish() end
    self:note(status.message)
    return _M.EXIT.output
  end
  if tostring(status):match("interrupted!$") then -- Ctrl-C outside a transfer
    self:note("interrupted")
    return _M.EXIT.interrupted
  end
  self:note("internal error: " .. redact.value(status))
  return _M.EXIT.other
end

return _M
