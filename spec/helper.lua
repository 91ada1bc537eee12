-- Shared by the specs: temp folders, fixtures, and a local WeChat emulator on a free loopback port,
-- driven through its control API with the curl command (so the specs never depend on the code they test).
local cjson = require "cjson.safe"

local helper = {}

-- The emulator's built-in accounts (see "Running the emulator" in README.md).
helper.APPID, helper.SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"
helper.APPID2, helper.SECRET2 = "wxfedcba0987654321", "fedcba9876543210fedcba9876543210"

-- Does text hold an access_token of the emulator ("86_" and 133 more characters; spec/run greps the
-- suite's output with the same shape)? Not a bare "86_": a random media_id holds that now and then.
local TOKEN_SHAPE = "86_" .. ("[%w_%-]"):rep(100)
function helper.holds_token(text)
  return text:find(TOKEN_SHAPE) ~= nil
end

local root = (os.getenv("WXMEDIA_ROOT") or "."):gsub("/$", "")
helper.root = root
helper.lua = os.getenv("WXMEDIA_LUA") or "lua5.4"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.shell_quote = shell_quote

-- Runs a shell command; returns its stdout, and true when it exited 0.
-- (The status is echoed after the output: LuaJIT's popen():close() gives none.)
local STATUS_MARK = "\n__wxmedia_status__"
function helper.sh(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n}; printf '\\n__wxmedia_status__%d' \"$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)" .. STATUS_MARK .. "(%d+)$")
  if not body then return out, false end
  return body, status == "0"
end

-- True when the specs run as root (who ignores file permissions and may mount).
function helper.is_root()
  return (helper.sh("id -u")) == "0\n"
end

local tmp_base = os.getenv("WXMEDIA_TEST_TMP") or os.getenv("TMPDIR") or "/tmp"

function helper.tmpdir()
  local out = helper.sh("mktemp -d " .. shell_quote(tmp_base .. "/wxmedia-spec-XXXXXX"))
  return (out:gsub("%s+$", ""))
end

function helper.rmtree(path)
  if path and path:match("wxmedia%-") then os.execute("rm -rf " .. shell_quote(path)) end
end

function helper.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function helper.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function helper.fixture(name)
  return root .. "/spec/fixtures/media/" .. name
end

-- Names in a folder (no . and ..), sorted, to prove that nothing was left behind.
function helper.ls(dir)
  local out = helper.sh("ls -A " .. shell_quote(dir))
  local names = {}
  for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- mtime in nanoseconds, as text, to compare "untouched" exactly.
function helper.mtime(path)
  local out = helper.sh("stat -c %Y.%y " .. shell_quote(path))
  return (out:gsub("%s+$", ""))
end

-- curl against the emulator: returns status, body, content_type.
function helper.curl(args)
  local out = helper.sh("curl -s -S -o - -w '\\n%{http_code} %{content_type}' " .. args)
  local body, status, ctype = out:match("^(.*)\n(%d+) ?([^\n]*)$")
  return tonumber(status), body, ctype
end

local Emulator = {}
Emulator.__index = Emulator

-- Starts an emulator on a free port. opts: { config = {...} (emulator JSON config), workers = n }.
function helper.start_emulator(opts)
  opts = opts or {}
  local dir = helper.tmpdir()
  local args = { root .. "/emulator/wxmedia-emulator", "start", "--json", "--dir", dir }
  if opts.config then
    local path = helper.write(dir .. "/config.json", assert(cjson.encode(opts.config)))
    args[#args + 1] = "--config"
    args[#args + 1] = path
  end
  if opts.workers then
    args[#args + 1] = "--workers"
    args[#args + 1] = tostring(opts.workers)
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local out, ok = helper.sh(table.concat(quoted, " ") .. " 2>&1")
  local info = cjson.decode(out:match("{.*}") or "")
  assert(ok and info and info.base_url, "emulator did not start: " .. out)
  return setmetatable({ base_url = info.base_url, pid = info.pid, dir = dir }, Emulator)
end

function Emulator:stop()
  if self.stopped then return end
  self.stopped = true
  helper.sh(shell_quote(root .. "/emulator/wxmedia-emulator") .. " stop --dir "
    .. shell_quote(self.dir) .. " 2>&1")
  helper.rmtree(self.dir)
end

-- Calls the control API: returns status and the decoded JSON answer.
function Emulator:control(method, path, body)
  local args = "-X " .. method .. " " .. shell_quote(self.base_url .. "/__emulator/" .. path)
  if body ~= nil then
    args = args .. " -H 'Content-Type: application/json' --data-binary "
      .. shell_quote(assert(cjson.encode(body)))
  end
  local status, text = helper.curl(args)
  return status, cjson.decode(text or "")
end

local function checked(self, method, path, body)
  local status, res = self:control(method, path, body)
  assert(status == 200, ("control %s %s answered %s"):format(method, path, tostring(status)))
  return res
end

function Emulator:reset() return checked(self, "POST", "reset", {}) end
function Emulator:config(cfg) return checked(self, "POST", "config", cfg) end
function Emulator:fault(spec) return checked(self, "POST", "fault", spec) end
function Emulator:clock(seconds) return checked(self, "POST", "clock", { advance = seconds }) end
function Emulator:log() return checked(self, "GET", "log") end

-- A user writes to an account (POST /__emulator/user/message): msg = { appid, openid, msg_type =
-- "text"|"image"|"voice"|"event", content, media_id, event, wait }. Returns the delivery record
-- ({ msg_id, openid, state, outcome, attempts, request, reply, ... }): delivered when wait is true.
function Emulator:user_message(msg) return checked(self, "POST", "user/message", msg) end

-- What the emulator knows of a user: { subscribed, last_message_at, window_ends_at, custom_sent, received }.
function Emulator:user(openid, appid)
  return checked(self, "GET", "user?openid=" .. openid .. (appid and "&appid=" .. appid or ""))
end

-- What a user received, oldest first: { via = "custom"|"passive"|"wechat", msgtype, [msgtype] = {...}, ... }.
function Emulator:received(openid, appid) return self:user(openid, appid).received end

function Emulator:delivery(msg_id) return checked(self, "GET", "delivery?msg_id=" .. msg_id) end

-- Waits until the delivery of msg_id is done (at most `timeout` seconds, 60 by default); returns it.
function Emulator:wait_delivery(msg_id, timeout)
  local deadline = os.time() + (timeout or 60)
  while true do
    local rec = self:delivery(msg_id)
    if rec.state == "done" then return rec end
    assert(os.time() <= deadline, "the delivery of " .. msg_id .. " did not end")
    helper.sh("sleep 0.1")
  end
end

-- Entries of the request log for one route ("token", "stable_token", "upload", "get", ...).
function Emulator:requests(route)
  local found = {}
  for _, e in ipairs(self:log()) do
    if route == nil or e.route == route then found[#found + 1] = e end
  end
  return found
end

-- A fresh classic token for an account, straight from the emulator.
function Emulator:token(appid, secret)
  local status, body = helper.curl(shell_quote(self.base_url
    .. "/cgi-bin/token?grant_type=client_credential&appid=" .. (appid or helper.APPID)
    .. "&secret=" .. (secret or helper.SECRET)))
  local res = cjson.decode(body or "")
  assert(status == 200 and res and res.access_token, "no token from the emulator: " .. tostring(body))
  return res.access_token
end

-- Uploads a file with curl (for specs that need a media_id without the code under test).
function Emulator:upload_with_curl(token, mtype, path, filename)
  local part = "media=@" .. path .. ";filename=" .. (filename or path:match("[^/]+$"))
  local url = self.base_url .. "/cgi-bin/media/upload?access_token=" .. token .. "&type=" .. mtype
  local status, body = helper.curl("-F " .. shell_quote(part) .. " " .. shell_quote(url))
  return status, cjson.decode(body or "") or body
end

return helper
