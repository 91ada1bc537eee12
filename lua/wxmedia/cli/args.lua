-- The command line's words: options (before or after the command; "--" ends them), the command
-- and its arguments, checked before anything runs. A mistake is reported once, with the closest
-- known word when there is one ("did you mean"), before any file is read or request sent.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local config = require "wxmedia.config"
local media = require "wxmedia.media"
local message = require "wxmedia.message"

local pairs, table, tonumber = pairs, table, tonumber
local format = string.format

local _M = {}

-- Options that take a value, by every name they answer to.
local VALUE_OPTIONS = {
  ["--appid"] = "appid", ["--secret-file"] = "secret_file", ["--base-url"] = "base_url",
  ["--token-api"] = "token_api", ["--retries"] = "retries", ["--timeout"] = "timeout",
  ["--output"] = "output", ["-o"] = "output", ["--store"] = "store", ["--parallel"] = "parallel",
}
local FLAG_OPTIONS = {
  ["--json"] = "json", ["--no-progress"] = "no_progress", ["--reuse"] = "reuse",
  ["--allow-http"] = "allow_http",
  ["--help"] = "help", ["-h"] = "help", ["--version"] = "version",
}
_M.COMMANDS = { "upload", "get", "send", "token", "help" }

-- The message types `send` takes: text, and those whose medium is a file (music needs URLs and a
-- thumb's media_id: it is sent from Lua).
_M.SEND_TYPES = { "image", "text", "video", "voice" }

local function sorted_keys(t)
  local names = {}
  for name in pairs(t) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- The long names, for "did you mean".
local OPTION_NAMES = {}
for _, t in pairs({ VALUE_OPTIONS, FLAG_OPTIONS }) do
  for n in pairs(t) do
    if n:sub(1, 2) == "--" then OPTION_NAMES[#OPTION_NAMES + 1] = n end
  end
end
table.sort(OPTION_NAMES)

-- "'x'", or "'x'; did you mean 'y'?" when a known name is close.
local function named(word, known)
  local hint = config.suggest(word, known)
  return format("'%s'", word) .. (hint and format("; did you mean '%s'?", hint) or "")
end

local function is_command(word)
  for _, c in pairs(_M.COMMANDS) do
    if c == word then return true end
  end
  return false
end

-- "image, thumb, video or voice"
local function one_of(names)
  return table.concat(names, ", ", 1, #names - 1) .. " or " .. names[#names]
end

local function type_list()
  return one_of(sorted_keys(media.types))
end

-- Reads the options out of argv: opts and the other words, or nil, message.
local function split(argv)
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
          if value == nil then return nil, format("option '%s' needs a value", name) end
        end
        opts[VALUE_OPTIONS[name]] = value
      elseif FLAG_OPTIONS[name] and value == nil then
        opts[FLAG_OPTIONS[name]] = true
      elseif FLAG_OPTIONS[name] then
        return nil, format("option '%s' takes no value", name)
      elseif a:match("^%-[%w_%-]+$") and #a >= 32 then
        -- a media_id (64 characters of [A-Za-z0-9_-]) may begin with '-': `get "$id"` must work
        words[#words + 1] = a
      else
        return nil, "unknown option " .. named(name, OPTION_NAMES)
      end
    end
    i = i + 1
  end
  return opts, words
end

local function check_send(opts)
  local args = opts.args
  if #args ~= 3 then
    return format("send needs an OPENID, a TYPE and a FILE (or the TEXT of a text message), not %d words",
      #args)
  end
  local openid, mtype = args[1], args[2]
  if not message.is_openid(openid) then
    return format("'%s' is not an openid (letters, digits, '-' and '_')", openid)
  end
  local known = false
  for _, t in pairs(_M.SEND_TYPES) do
    if t == mtype then known = true end
  end
  if not known then
    return format("unknown message type %s (%s)", named(mtype, _M.SEND_TYPES), one_of(_M.SEND_TYPES))
  end
  if args[3] == "" then return mtype == "text" and "the TEXT is empty" or "the FILE name is empty" end
  return nil
end

-- The checks of each command's arguments: nil, or a message.
local function check_words(opts)
  local n, command = #opts.args, opts.command
  if command == "upload" then
    if n < 2 then return "upload needs a TYPE and at least one FILE" end
    local mtype = opts.args[1]
    if not media.types[mtype] then
      return format("unknown media type %s (%s)", named(mtype, sorted_keys(media.types)), type_list())
    end
    local stdin = 0
    for k = 2, n do
      if opts.args[k] == "-" then stdin = stdin + 1 end
    end
    if stdin > 1 then return "standard input ('-') can be read only once" end
  elseif command == "get" then
    if n ~= 1 then return format("get needs one MEDIA_ID, not %d", n) end
    if opts.args[1] == "" then return "the MEDIA_ID is empty" end
  elseif command == "send" then
    return check_send(opts)
  elseif command == "token" and n ~= 0 then
    return "token takes no arguments"
  end
  return nil
end

-- A whole number written in decimal digits only ("1e400", "0x10", "1.0" and "-1" are not), or nil.
local function whole(text)
  if type(text) ~= "string" or not text:find("^%d+$") or #text > 15 then return nil end
  return tonumber(text)
end

local function check_options(opts)
  if opts.output and opts.command ~= "get" then return "option '-o' is for get only" end
  if opts.reuse and opts.command ~= "upload" and opts.command ~= "send" then
    return "option '--reuse' is for upload and send only"
  end
  if opts.parallel and opts.command ~= "upload" then return "option '--parallel' is for upload only" end
  if opts.parallel and opts.reuse then return "option '--parallel' does not go with '--reuse'" end
  if opts.store == "" then return "option '--store' needs a file name" end
  if opts.output == "" then return "option '-o' needs a file name" end
  if opts.output == "-" and opts.json then
    return "'-o -' writes the medium to standard output: it cannot be used with --json"
  end
  if opts.retries then
    local r = whole(opts.retries)
    if not r then
      return format("option '--retries' needs a whole number >= 0, not '%s'", opts.retries)
    end
    opts.retries = r
  end
  if opts.parallel then
    local p, max = whole(opts.parallel), require("wxmedia.transport").multi_max() or 64
    if not p or p < 1 or p > max then
      return format("option '--parallel' needs a whole number from 1 to %d, not '%s'", max, opts.parallel)
    end
    opts.parallel = p
  end
  if opts.timeout then
    local t = tonumber(opts.timeout)
    if not t or t <= 0 or t ~= t then
      return format("option '--timeout' needs a number of seconds > 0, not '%s'", opts.timeout)
    end
    opts.timeout = t
  end
  if opts.token_api and opts.token_api ~= "stable" and opts.token_api ~= "classic" then
    return format("option '--token-api' is stable or classic, not %s",
      named(opts.token_api, { "classic", "stable" }))
  end
  return nil
end

-- Parses argv. Returns { command =, args = {...}, <option> = value } (help = true with topic = a
-- command for `wxmedia help upload` or `wxmedia upload --help`), or nil, message, the command the
-- mistake is about (for "Try 'wxmedia help upload'").
function _M.parse(argv)
  local opts, words = split(argv)
  if not opts then return nil, words end
  local command = words[1]
  if command == "help" then
    opts.help, command = true, words[2]
    if words[3] then return nil, "help takes one COMMAND" end
  end
  if opts.help then
    if command ~= nil and not is_command(command) then
      return nil, "no help for " .. named(command, _M.COMMANDS)
    end
    opts.topic = command ~= "help" and command or nil
    return opts
  end
  if opts.version then return opts end

  if not command then return nil, "no command given: upload, get, send or token" end
  if not is_command(command) then return nil, "unknown command " .. named(command, _M.COMMANDS) end
  opts.command = command
  for k = 2, #words do opts.args[#opts.args + 1] = words[k] end
  local problem = check_words(opts) or check_options(opts)
  if problem then return nil, problem, command end
  return opts
end

return _M
