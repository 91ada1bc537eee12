-- The wxmedia command line: argument parsing, credentials, output and exit status.
-- bin/wxmedia only calls main(); everything else lives here so that it can be tested in-process.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local cjson = require "cjson"

local ipairs, pairs, pcall, require, setmetatable, tonumber, tostring, type =
      ipairs, pairs, pcall, require, setmetatable, tonumber, tostring, type
local io, math, os, string = io, math, os, string

local _M = { _VERSION = "0.1.0" }

-- Exit status, one per class of failure, so that scripts can tell "fix your input" from
-- "WeChat said no" from "try again later".
_M.EXIT = { ok = 0, other = 1, input = 2, wechat = 3, network = 4, interrupted = 130 }

local EXIT_BY_KIND = {
  input = _M.EXIT.input, io = _M.EXIT.input,
  api = _M.EXIT.wechat, token = _M.EXIT.wechat,
  http = _M.EXIT.network, connect = _M.EXIT.network, timeout = _M.EXIT.network,
  tls = _M.EXIT.network, transfer = _M.EXIT.network,
  -- our progress function raises only when Ctrl-C interrupts it (lua.c's SIGINT hook)
  aborted = _M.EXIT.interrupted,
}

function _M.exit_status(kind)
  return EXIT_BY_KIND[kind] or _M.EXIT.other
end

-- Transfers smaller than this finish before a bar would be worth drawing.
_M.PROGRESS_MIN = 1024 * 1024

_M.HELP = [[
NAME
    wxmedia - upload and download WeChat temporary media

SYNOPSIS
    wxmedia [OPTIONS] upload TYPE FILE...
    wxmedia [OPTIONS] get MEDIA_ID [-o FILE]
    wxmedia [OPTIONS] token
    wxmedia --help | --version

DESCRIPTION
    wxmedia talks to the WeChat Official Account temporary media API
    (cgi-bin/media/upload and cgi-bin/media/get). It fetches and caches
    the access_token itself, retries what is worth retrying, and checks
    every file before sending it.

    upload TYPE FILE...
        Uploads each FILE as TYPE: image (JPEG, PNG, GIF), voice (AMR,
        MP3), video (MP4) or thumb (JPEG). The format is read from the
        file's content, not its name. With one FILE, prints its media_id;
        with several, prints "MEDIA_ID  FILE" for each, in order. Every
        FILE is tried even when an earlier one fails.

    upload --reuse TYPE FILE...
        The same, but a file whose content was uploaded before, and whose
        media_id has at least 6 more hours to live, is not sent again:
        its recorded media_id is printed. Each media_id is followed by
        "reused" or "uploaded" ("MEDIA_ID  reused  FILE" with several
        FILEs). The records, and the access_token, are kept in the
        --store file.

    get MEDIA_ID
        Downloads a medium (a video through the URL WeChat answers with)
        and prints the name of the file written. Without -o the name is
        the one WeChat gives, reduced to a plain file name in the current
        folder, or MEDIA_ID with an extension for the content type; an
        existing file of that name is never overwritten. A MEDIA_ID may
        begin with '-'.

    token
        Prints the access_token. This is the only command that ever
        prints a token; errors and other output never contain one.

    Media stay on WeChat's servers for 3 days.

OPTIONS
    --appid APPID        the account's AppID (instead of WECHAT_APPID)
    --secret-file FILE   read the AppSecret from the first line of FILE
                         (instead of WECHAT_APPSECRET; there is no option
                         taking the secret itself, as other users of the
                         machine can read command lines)
    --base-url URL       the API's address (default
                         https://api.weixin.qq.com)
    --token-api API      stable (the default: every process shares one
                         token) or classic (cgi-bin/token)
    --retries N          retries after a network failure, HTTP 5xx/429 or
                         a busy server (default 3)
    --timeout SECONDS    give up on a transfer after this long
    -o, --output FILE    get: write to FILE (replacing it); - for stdout
    --json               print one JSON object per line, for scripts; a
                         failed item gives {"file" or "media_id", "error":
                         {"message", "kind", "errcode"}}
    --reuse              upload: reuse media_ids recorded in the store
    --store FILE         keep access_tokens (and --reuse records) in FILE,
                         shared by every run (default with --reuse:
                         $XDG_CACHE_HOME/wxmedia/store.json, else
                         ~/.cache/wxmedia/store.json, in a folder made
                         private); without it nothing is written to disk
    --no-progress        never draw a progress bar (one is drawn on
                         stderr for transfers over 1 MB when both stdout
                         and stderr are terminals)
    -h, --help           print this text
    --version            print the version

ENVIRONMENT
    WECHAT_APPID, WECHAT_APPSECRET
        the account's credentials; the command fetches tokens itself
    WECHAT_ACCESS_TOKEN
        a token got elsewhere, used when no AppID and AppSecret are
        given; it is never refreshed
    WXMEDIA_BASE_URL
        the API's address, as --base-url
    XDG_CACHE_HOME, HOME
        where --reuse keeps its store when --store is not given

EXIT STATUS
    0   success
    1   any other failure
    2   bad input: a usage error, no credentials, a file that cannot be
        read, written or sent as TYPE
    3   WeChat refused: an errcode from the API, or bad credentials
    4   network failure: no connection, timeout, TLS, an interrupted
        transfer, an HTTP error status
    130 interrupted (Ctrl-C); a partial download is never left behind
    With several FILEs, the status is that of the first failure.

EXAMPLES
    export WECHAT_APPID=wx1234567890abcdef
    read -rs WECHAT_APPSECRET && export WECHAT_APPSECRET
    id=$(wxmedia upload image photo.jpg)
    wxmedia get "$id" -o copy.jpg
    wxmedia get "$id" -o - | identify -
    wxmedia --json upload voice a.amr b.mp3 | jq -r .media_id
    read -r id how < <(wxmedia upload --reuse image welcome.jpg)
    curl "https://api.weixin.qq.com/cgi-bin/...?access_token=$(wxmedia token)"
]]

-- Options that take a value, by every name they answer to.
local VALUE_OPTIONS = {
  ["--appid"] = "appid", ["--secret-file"] = "secret_file", ["--base-url"] = "base_url",
  ["--token-api"] = "token_api", ["--retries"] = "retries", ["--timeout"] = "timeout",
  ["--output"] = "output", ["-o"] = "output", ["--store"] = "store",
}
local FLAG_OPTIONS = {
  ["--json"] = "json", ["--no-progress"] = "no_progress", ["--reuse"] = "reuse",
  ["--help"] = "help", ["-h"] = "help", ["--version"] = "version",
}
local COMMANDS = { upload = true, get = true, token = true }

-- Parses argv (options may come before or after the command; "--" ends them).
-- Returns { command =, args = {...}, <option> = value } or nil, message.
function _M.parse(argv)
  local opts, words = { args = {} }, {}
  local i, only_words = 1, false
  while argv[i] ~= nil do
    local a = argv[i]
    if only_words or a == "-" or a:sub(1, 1) ~= "-" then
      words[#words + 1] = a
    elseif a == "--" then
      only_words = true
    else
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      if VALUE_OPTIONS[name] then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "option " .. name .. " needs a value" end
        end
        opts[VALUE_OPTIONS[name]] = value
      elseif FLAG_OPTIONS[name] and value == nil then
        opts[FLAG_OPTIONS[name]] = true
      elseif FLAG_OPTIONS[name] then
        return nil, "option " .. name .. " takes no value"
      elseif a:match("^%-[%w_%-]+$") and #a >= 32 then
        -- a media_id (64 characters of [A-Za-z0-9_-]) may begin with '-': `get "$id"` must work
        words[#words + 1] = a
      else
        return nil, "unknown option " .. name
      end
    end
    i = i + 1
  end
  if opts.help or opts.version then return opts end

  opts.command = words[1]
  for k = 2, #words do opts.args[#opts.args + 1] = words[k] end
  if not opts.command then return nil, "no command given" end
  if not COMMANDS[opts.command] then return nil, "unknown command " .. opts.command end

  local n = #opts.args
  if opts.command == "upload" and n < 2 then return nil, "upload needs a TYPE and at least one FILE" end
  if opts.command == "get" and n ~= 1 then return nil, "get needs exactly one MEDIA_ID" end
  if opts.command == "token" and n ~= 0 then return nil, "token takes no arguments" end
  if opts.output and opts.command ~= "get" then return nil, "option -o is for get only" end
  if opts.reuse and opts.command ~= "upload" then return nil, "option --reuse is for upload only" end
  if opts.store == "" then return nil, "option --store needs a file name" end
  if opts.output == "" then return nil, "option -o needs a file name" end
  if opts.output == "-" and opts.json then return nil, "-o - writes the medium to stdout: no --json" end

  if opts.retries then
    local r = tonumber(opts.retries)
    if not r or r < 0 or r ~= math.floor(r) then return nil, "--retries needs a whole number >= 0" end
    opts.retries = r
  end
  if opts.timeout then
    local t = tonumber(opts.timeout)
    if not t or t <= 0 then return nil, "--timeout needs a number of seconds > 0" end
    opts.timeout = t
  end
  if opts.token_api and opts.token_api ~= "stable" and opts.token_api ~= "classic" then
    return nil, "--token-api is stable or classic"
  end
  return opts
end

-- Removes every credential from a text before it is printed: token and secret parameters in URLs,
-- and the literal secret values this process knows.
function _M.redact(text, secrets)
  text = tostring(text)
  text = text:gsub("([%?&]?access_token=)[^&%s\"']+", "%1***")
  text = text:gsub("([%?&]?secret=)[^&%s\"']+", "%1***")
  text = text:gsub("(\"access_token\"%s*:%s*\")[^\"]*", "%1***")
  text = text:gsub("(\"secret\"%s*:%s*\")[^\"]*", "%1***")
  for _, s in pairs(secrets or {}) do
    if type(s) == "string" and #s >= 8 then
      local from = 1
      while true do
        local a, b = text:find(s, from, true)
        if not a then break end
        text = text:sub(1, a - 1) .. "***" .. text:sub(b + 1)
        from = a + 3
      end
    end
  end
  return text
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

-- Credentials: flags before environment; an AppID with its secret before a ready-made token.
-- Returns the options for wxmedia.new, or nil, message.
function _M.credentials(opts, getenv)
  local function env(name)
    local v = getenv(name)
    if v == "" then return nil end
    return v
  end
  local appid = opts.appid or env("WECHAT_APPID")
  local secret, err
  if opts.secret_file then
    secret, err = read_secret_file(opts.secret_file)
    if not secret then return nil, err end
  else
    secret = env("WECHAT_APPSECRET")
  end
  local token = env("WECHAT_ACCESS_TOKEN")
  local conf = { base_url = opts.base_url or env("WXMEDIA_BASE_URL"),
                 retries = opts.retries, timeout = opts.timeout, token_api = opts.token_api }
  if appid and secret then
    conf.appid, conf.secret = appid, secret
  elseif token and not opts.secret_file then
    conf.access_token, conf.appid = token, appid -- the appid, when known, keys --reuse records
  elseif appid then
    return nil, "no AppSecret for " .. appid .. ": set WECHAT_APPSECRET or use --secret-file"
  elseif secret then
    return nil, "no AppID: set WECHAT_APPID or use --appid"
  else
    return nil, "no credentials: set WECHAT_APPID and WECHAT_APPSECRET, or WECHAT_ACCESS_TOKEN"
  end
  return conf
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

-- "photo_2_.jpg" from "../../x/photo (2).jpg": the last path component, each run of bytes other
-- than letters, digits, '.', '_' and '-' made one '_', no leading '.' or '-' (no hidden files, no
-- "..", nothing that reads as an option). The server chooses this name: it never chooses the folder.
function _M.safe_filename(name)
  if type(name) ~= "string" then return nil end
  name = name:match("[^/\\]*$"):gsub("[^A-Za-z0-9._-]+", "_"):gsub("^[.-]+", "")
  if name == "" or #name > 200 or not name:find("[A-Za-z0-9]") then return nil end
  return name
end

local EXT_BY_CONTENT_TYPE = {
  ["image/jpeg"] = "jpg", ["image/jpg"] = "jpg", ["image/png"] = "png", ["image/gif"] = "gif",
  ["audio/amr"] = "amr", ["audio/mpeg"] = "mp3", ["audio/mp3"] = "mp3", ["voice/speex"] = "speex",
  ["video/mp4"] = "mp4", ["video/mpeg4"] = "mp4",
}

-- The name `get` writes to when no -o is given.
function _M.default_output(media_id, got)
  local name = _M.safe_filename(got.filename)
  if name then return name end
  local ctype = (got.content_type or ""):lower():match("^[^;%s]+")
  local ext = EXT_BY_CONTENT_TYPE[ctype] or (got.video_url and "mp4") or "bin"
  return (_M.safe_filename(media_id) or "media") .. "." .. ext
end

local function human_size(n)
  if n >= 1024 * 1024 then return string.format("%.1f MB", n / (1024 * 1024)) end
  return string.format("%d kB", math.floor(n / 1024))
end

-- One line of the progress bar (no terminal codes but the leading \r).
function _M.progress_line(label, now, total)
  local width = 30
  local frac = total > 0 and math.min(now / total, 1) or 0
  local fill = math.floor(frac * width)
  if #label > 24 then label = "..." .. label:sub(-21) end
  return string.format("\r%-24s [%s%s] %3d%%  %s / %s", label, string.rep("#", fill),
    string.rep(".", width - fill), math.floor(frac * 100), human_size(now), human_size(total))
end

local function is_terminal(fd)
  local ok = os.execute("test -t " .. fd)
  return ok == true or ok == 0
end

-- A progress reporter: ui.progress is given to wxmedia.new once; ui:start(label) before each
-- transfer and ui:finish() after it. Draws nothing unless enabled (a terminal) and the transfer
-- is big enough; redraws only when the percentage moves.
local function progress_ui(stderr, enabled)
  local ui = { label = "", drawn = false, last = -1 }
  function ui.start(label) ui.label, ui.drawn, ui.last = label, false, -1 end
  function ui.finish()
    if ui.drawn then stderr:write("\n") end
    ui.drawn = false
  end
  function ui.progress(dltotal, dlnow, ultotal, ulnow)
    local total, now = dltotal or 0, dlnow or 0
    -- an upload's answer is a few bytes of JSON: while sending, the upload is the transfer
    if (ultotal or 0) > total then total, now = ultotal, ulnow or 0 end
    if total < _M.PROGRESS_MIN or not enabled() then return end
    local pct = math.floor(now * 100 / total)
    if pct == ui.last then return end
    ui.last, ui.drawn = pct, true
    stderr:write(_M.progress_line(ui.label, now, total))
    stderr:flush()
  end
  return ui
end

local function default_sys()
  return { getenv = os.getenv, stdout = io.stdout, stderr = io.stderr, is_terminal = is_terminal }
end

-- The session of one run: output, errors and the client, in one place.
local Run = {}
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
  message = _M.redact(message, self.secrets)
  -- name the file or media_id, unless the message already does
  local prefix = (what and not message:find(what, 1, true)) and (what .. ": ") or ""
  self.stderr:write("wxmedia: ", prefix, message, "\n")
  if self.opts.json and json_fields then
    json_fields.error = { message = message, kind = details.kind, errcode = details.errcode }
    self.stdout:write(cjson.encode(json_fields), "\n")
  end
  return _M.exit_status(details.kind)
end

function Run:client()
  local conf, err = _M.credentials(self.opts, self.getenv)
  if not conf then return nil, err end
  self.secrets = { conf.secret, conf.access_token }
  local ui = progress_ui(self.stderr, function()
    if self.tty == nil then
      self.tty = not self.opts.no_progress and self.is_terminal(1) and self.is_terminal(2)
    end
    return self.tty
  end)
  self.ui = ui
  conf.progress = ui.progress
  conf.on_retry = function(attempt, message, _, delay)
    self.stderr:write(string.format("wxmedia: %s; retry %d in %.1f s\n",
      _M.redact(message, self.secrets), attempt, delay or 0))
  end
  local wxmedia = require "wxmedia"
  local store, serr = _M.store_path(self.opts, self.getenv)
  if serr then return nil, serr end
  -- tokens and --reuse records in one file: successive runs share a token and their uploads
  if store then conf.token_store = wxmedia.store.file(store) end
  return wxmedia.new(conf)
end

function Run:upload()
  local mtype, files = self.opts.args[1], {}
  for k = 2, #self.opts.args do files[#files + 1] = self.opts.args[k] end
  local status = _M.EXIT.ok
  for _, file in ipairs(files) do
    self.ui.start(file)
    local res, err, details
    if self.opts.reuse then
      res, err, details = self.client:media_id(mtype, file)
    else
      res, err, details = self.client:upload(mtype, file)
    end
    self.ui.finish()
    if res then
      local id = res.media_id or res.thumb_media_id
      local line = id
      if self.opts.reuse then line = line .. "  " .. (res.reused and "reused" or "uploaded") end
      if #files > 1 then line = line .. "  " .. file end
      self:say({ file = file, type = res.type or mtype, media_id = id,
                 thumb_media_id = res.thumb_media_id, created_at = res.created_at,
                 reused = res.reused, expires_at = res.expires_at }, line)
    else
      local code = self:fail(file, err, details, { file = file, type = mtype })
      if status == _M.EXIT.ok then status = code end
      if code == _M.EXIT.interrupted then break end
    end
  end
  return status
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- -o -: the bytes go to stdout, for pipes. They pass through a private temp file first, so that an
-- error, or JSON in place of the medium, never reaches stdout half-written.
function Run:get_to_stdout(media_id)
  local tmpfile = os.tmpname()
  self.ui.start(media_id)
  local got, err, details = self.client:get(media_id, tmpfile)
  self.ui.finish()
  local f
  if got then
    f, err = io.open(tmpfile, "rb")
    details = { kind = "io" }
  end
  if not f then
    os.remove(tmpfile)
    return self:fail(media_id, err, details)
  end
  while true do
    local chunk = f:read(65536)
    if not chunk then break end
    self.stdout:write(chunk)
  end
  f:close()
  os.remove(tmpfile)
  self.stdout:flush()
  return _M.EXIT.ok
end

function Run:get()
  local media_id, output = self.opts.args[1], self.opts.output
  if output == "-" then return self:get_to_stdout(media_id) end
  -- Without -o the name is known only once WeChat answers: download beside it, then rename.
  local target = output or string.format(".wxmedia-%s-%d.part",
    _M.safe_filename(media_id) or "media", math.random(1e9))
  self.ui.start(media_id)
  local got, err, details = self.client:get(media_id, target)
  self.ui.finish()
  if not got then
    if not output then os.remove(target) end
    return self:fail(media_id, err, details, { media_id = media_id })
  end
  if not output then
    output = _M.default_output(media_id, got)
    local moved, merr
    if exists(output) then
      merr = output .. " already exists; not overwriting it (choose another name with -o)"
    else
      moved, merr = os.rename(target, output)
    end
    if not moved then
      os.remove(target)
      return self:fail(media_id, merr, { kind = "io" }, { media_id = media_id })
    end
  end
  self:say({ media_id = media_id, path = output, size = got.size, content_type = got.content_type,
             filename = got.filename, video_url = got.video_url }, output)
  return _M.EXIT.ok
end

function Run:token()
  local token, err, details = self.client:token()
  if not token then return self:fail(nil, err, details, {}) end
  self:say({ access_token = token }, token)
  return _M.EXIT.ok
end

local function run(argv, sys)
  local opts, perr = _M.parse(argv)
  if not opts then
    sys.stderr:write("wxmedia: ", perr, "\nTry 'wxmedia --help' for more information.\n")
    return _M.EXIT.input
  end
  if opts.help then sys.stdout:write(_M.HELP) return _M.EXIT.ok end
  if opts.version then sys.stdout:write("wxmedia ", _M._VERSION, "\n") return _M.EXIT.ok end

  local self = setmetatable({ opts = opts, stdout = sys.stdout, stderr = sys.stderr,
    getenv = sys.getenv, is_terminal = sys.is_terminal, secrets = {} }, Run)
  local client, cerr, details = self:client()
  if not client then
    -- bad credentials or options are input; anything else here (no C core) is a broken install
    local kind = (details == nil or details.kind == "input") and "input" or "install"
    return self:fail(nil, cerr, { kind = kind })
  end
  self.client = client
  return self[opts.command](self)
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
  s.stderr:write("wxmedia: internal error: ", _M.redact(status), "\n")
  return _M.EXIT.other
end

return _M
