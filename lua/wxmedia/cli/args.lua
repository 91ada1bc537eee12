-- The command line's words: options (before or after the command; "--" ends them), the command
-- and its arguments, checked before anything runs.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local math, tonumber = math, tonumber

local _M = {}

-- Options that take a value, by every name they answer to.
local VALUE_OPTIONS = {
  ["--appid"] = "appid", ["--secret-file"] = "secret_file", ["--base-url"] = "base_url",
  ["--token-api"] = "token_api", ["--retries"] = "retries", ["--timeout"] = "timeout",
  ["--output"] = "output", ["-o"] = "output", ["--store"] = "store", ["--parallel"] = "parallel",
}
local FLAG_OPTIONS = {
  ["--json"] = "json", ["--no-progress"] = "no_progress", ["--reuse"] = "reuse",
  ["--help"] = "help", ["-h"] = "help", ["--version"] = "version",
}
local COMMANDS = { upload = true, get = true, token = true }

-- Parses argv. Returns { command =, args = {...}, <option> = value } or nil, message.
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
  if opts.parallel and opts.command ~= "upload" then return nil, "option --parallel is for upload only" end
  if opts.parallel and opts.reuse then return nil, "option --parallel does not go with --reuse" end
  if opts.store == "" then return nil, "option --store needs a file name" end
  if opts.output == "" then return nil, "option -o needs a file name" end
  if opts.output == "-" and opts.json then return nil, "-o - writes the medium to stdout: no --json" end

  if opts.retries then
    local r = tonumber(opts.retries)
    if not r or r < 0 or r ~= math.floor(r) then return nil, "--retries needs a whole number >= 0" end
    opts.retries = r
  end
  if opts.parallel then
    local p, max = tonumber(opts.parallel), require("wxmedia.transport").multi_max() or 64
    if not p or p < 1 or p > max or p ~= math.floor(p) then
      return nil, "--parallel needs a whole number from 1 to " .. max
    end
    opts.parallel = p
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

return _M
