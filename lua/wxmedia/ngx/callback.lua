-- wxmedia.ngx.callback: an account's callback URL in nginx, answering WeChat in time.
--
-- WeChat posts a user's message to the callback and waits 5 seconds for the answer; with none, it
-- posts the same message again (same MsgId), 3 attempts in all, then shows the user "this account
-- cannot serve". A reply with a medium needs a media_id, and an upload can take longer than that.
-- So, for each message:
--   * on_message(msg) says what to reply; the media_id comes from client:media_id (recorded, so that
--     later messages and WeChat's retries reuse it; uploaded in the worker thread pool otherwise);
--   * that work runs in an ngx.timer, and the request waits for it at most `budget` seconds from its
--     start (default 4, a second short of WeChat's 5 for the network and a loaded worker);
--   * ready in time: the answer is the passive reply's XML;
--   * not ready: the answer is "success" (no passive reply) at the budget, and the timer sends the same
--     reply as a customer-service message (client:send) once its media_id is ready;
--   * WeChat's retries of a message get the answer the first attempt gave, from a lua_shared_dict (a
--     retry may reach any worker), and never start the work again: the state is "pending:<pid of
--     the worker doing it>" while the first attempt waits, then the reply's XML, "deferred" or
--     "none"; unless that worker died (a crash, an OOM kill) before it settled the state: then one
--     retry takes the message over and answers it as a first attempt.
--
-- Why a timer, and not ngx.eof() then carrying on in the request: after ngx.eof() the request still
-- owns WeChat's connection until the upload ends, and with `lua_check_client_abort on` (which the
-- README's nginx.conf sets) WeChat closing that connection after reading "success" marks the request
-- aborted, and wxmedia then stops the request's transfers (wxmedia/ngx/abort.lua): the very upload
-- the customer-service message waits for. A timer has no client to lose, and the request ends as soon
-- as it has answered. The cost: on_message runs in the timer, where ngx.var and ngx.req are gone (it
-- gets the parsed message, which holds what WeChat sent).
--
-- Plain mode only: safe mode (AES, the Encrypt element, msg_signature) is not supported.
local config = require "wxmedia.config"
local message_mod = require "wxmedia.message"
local reply = require "wxmedia.reply"
local transport = require "wxmedia.transport"

local ngx = ngx
local error, io_open, pairs, pcall, select, setmetatable, tostring, type =
  error, io.open, pairs, pcall, select, setmetatable, tostring, type
local format = string.format
local max = math.max

local _M = {}
local mt = { __index = _M }

-- WeChat waits this long for an answer; a budget must leave room for the network.
_M.WECHAT_DEADLINE = 5
_M.DEFAULT_BUDGET = 4

-- A message's state lives this long: WeChat's 3 attempts span 15 s from the first post.
local STATE_TTL = 120
local PENDING, DEFERRED, NONE, REPLY = "pending:", "deferred", "none", "reply:"
-- how often a retry that finds the first attempt still waiting looks again
local POLL = 0.05
local SAFE_MODE = "it is encrypted (the callback's safe mode), which wxmedia does not support: set the "
  .. "callback URL to plain mode in WeChat's console"

local OPTIONS = { token = true, client = true, on_message = true, budget = true, dedup_dict = true }

-- The reply's fields that say where its medium comes from, beside a customer-service message's own.
local SOURCES = { path = true, data = true, filename = true }
-- Types whose medium may come from a file (the rest take their media_ids as they are).
local UPLOADS = { image = true, voice = true, video = true }
-- Stands for the media_id still to come when the rest of a reply is checked (see checked_reply).
local PENDING_ID = ("0"):rep(64)

local function bad(name, why)
  error(format("bad option '%s' to 'callback' (%s)", name, why), 3)
end

local function dict_of(value)
  if type(value) == "string" then
    local dict = ngx.shared[value]
    if not dict then bad("dedup_dict", format("no lua_shared_dict named '%s'", value)) end
    return dict
  end
  for _, dict in pairs(ngx.shared) do
    if dict == value then return dict end
  end
  bad("dedup_dict", "a lua_shared_dict name or ngx.shared.NAME expected: WeChat's retries of a message may "
    .. "reach any worker, and must get the first attempt's answer")
end

-- syntax: cb = wxmedia.ngx.callback{ token =, client =, on_message = [, budget = 4] , dedup_dict = }
-- Made once (init_by_lua, or a module), used by cb:handle() in the callback's location.
function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'callback' (table expected, got " .. type(opts) .. ")", 2)
  end
  for name in pairs(opts) do
    if not OPTIONS[name] then
      local names = {}
      for k in pairs(OPTIONS) do names[#names + 1] = k end
      local hint = type(name) == "string" and config.suggest(name, names)
      bad(tostring(name), "unknown option" .. (hint and ("; did you mean '" .. hint .. "'?") or ""))
    end
  end
  local token = opts.token
  if type(token) ~= "string" or not token:match("^%w+$") or #token < 3 or #token > 32 then
    bad("token", "the token of the callback URL in WeChat's console expected: 3 to 32 letters or digits, "
      .. "got " .. (type(token) == "string" and format("%d characters", #token) or type(token)))
  end
  local client = opts.client
  if type(client) ~= "table" or type(client.media_id) ~= "function" or type(client.send) ~= "function" then
    bad("client", "a wxmedia.ngx client expected")
  end
  if type(opts.on_message) ~= "function" then
    bad("on_message", "function expected, got " .. type(opts.on_message))
  end
  local budget = opts.budget
  if budget == nil then budget = _M.DEFAULT_BUDGET end
  if type(budget) ~= "number" or budget ~= budget or budget <= 0 or budget >= _M.WECHAT_DEADLINE then
    bad("budget", format("seconds above 0 and below WeChat's %d expected", _M.WECHAT_DEADLINE))
  end
  return setmetatable({ token = token, client = client, on_message = opts.on_message, budget = budget,
    dict = dict_of(opts.dedup_dict) }, mt)
end

-- {====== the work, in a timer ======

-- "a video message has no field 'titel'" from message.body's "bad argument #2 to 'x' (...)".
local function reason(err)
  err = tostring(err)
  return err:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or err
end

-- The passive reply's XML for a message ready to send, or nil, why (a value XML cannot carry:
-- checked_reply finds that out before the upload; a media_id WeChat gives is letters and digits).
local function passive(msg, message)
  local t = message.type
  if t == "text" then return reply.text(msg, message.content) end
  if t == "video" then return reply.video(msg, message.media_id, message.title, message.description) end
  if t == "music" then return reply.music(msg, message) end
  return reply[t](msg, message.media_id)
end

-- The customer-service message a reply of on_message stands for (its media_id still to come when
-- it names a file or bytes), and that medium's source for media_id; or nil, why. The rest of the
-- reply is checked before anything is uploaded, by the owners of those rules: message.body, and the
-- passive reply's builder (a value XML cannot carry, such as a control character or bytes that are
-- not UTF-8, is refused whether the reply goes passive or late).
local function checked_reply(wanted, msg)
  local openid = msg.FromUserName
  if type(wanted) ~= "table" then return nil, "on_message returned a " .. type(wanted) .. ", not a table" end
  local message, source = {}, nil
  for k, v in pairs(wanted) do
    if not SOURCES[k] then message[k] = v end
  end
  local given = (wanted.media_id ~= nil and 1 or 0) + (wanted.path ~= nil and 1 or 0)
    + (wanted.data ~= nil and 1 or 0)
  if UPLOADS[wanted.type] and given ~= 1 then
    return nil, format("a%s %s reply needs one of media_id, path or data, not %d",
      wanted.type == "image" and "n" or "", wanted.type, given)
  end
  if wanted.path ~= nil or wanted.data ~= nil then
    if not UPLOADS[wanted.type] then
      return nil, format("a %s reply takes no path or data", tostring(wanted.type))
    end
    if wanted.path ~= nil and type(wanted.path) ~= "string" then return nil, "path: string expected" end
    if wanted.data ~= nil and type(wanted.data) ~= "string" then return nil, "data: string expected" end
    if wanted.filename ~= nil and wanted.data == nil then return nil, "filename goes with data" end
    source = wanted.path or { data = wanted.data, filename = wanted.filename }
    message.media_id = PENDING_ID
  elseif wanted.filename ~= nil then
    return nil, "filename goes with data"
  end
  local ok, err = pcall(message_mod.body, openid, message, "on_message")
  if not ok then return nil, "on_message's reply: " .. reason(err) end
  local xml, xerr = passive(msg, message)
  if not xml then return nil, "on_message's reply: " .. xerr end
  if source then message.media_id = nil end
  return message, source
end

-- on_message, then the media_id: the message to send, or false for no reply, or nil, why (and
-- whether its media_id was ours: a 40007 then drops the record).
local function prepare(self, msg)
  local ok, wanted = pcall(self.on_message, msg)
  if not ok then return nil, "on_message raised: " .. tostring(wanted) end
  if wanted == nil then return false end
  local message, source = checked_reply(wanted, msg)
  if not message then return nil, source end
  if source then
    local res, err = self.client:media_id(message.type, source)
    if not res then return nil, err end
    message.media_id = res.media_id
    return message, nil, true
  end
  return message
end

local function log_failure(msg, what, err)
  ngx.log(ngx.ERR, "wxmedia: callback: ", what, " to ", tostring(msg.FromUserName), ": ", tostring(err))
end

-- The message's state for its retries (no key: the dict was full, the message goes unprotected).
local function record(self, key, state)
  if key then self.dict:set(key, state, STATE_TTL) end
end

-- Runs in the timer: prepares the reply, then hands it to the request still waiting within its
-- budget, or else sends it as a customer-service message. job.state goes from "waiting" to "ready"
-- (job.xml), "none" or "late"; the timer and the request each read and set it without yielding in
-- between, so exactly one of them decides, and the one that decides records the state for WeChat's
-- retries. The timer decides "late" itself once the budget is past: the request may be gone (WeChat
-- hung up first, and with lua_check_client_abort nginx ended it) and then never would.
local function run(premature, self, msg, job)
  local message, err, ours
  if premature then
    err = "nginx is shutting down"
  else
    message, err, ours = prepare(self, msg)
  end
  if message == nil then log_failure(msg, "no reply", err) end
  if job.state == "waiting" and ngx.now() < job.deadline then
    if message then
      job.state, job.xml = "ready", passive(msg, message)
      record(self, job.key, REPLY .. job.xml)
    else
      job.state = "none"
      record(self, job.key, NONE)
    end
    job.sema:post(1)
    return
  end
  if job.state == "waiting" then
    job.state = "late"
    record(self, job.key, message and DEFERRED or NONE)
  end
  if not message then return end
  local sent, serr, details = self.client:send(msg.FromUserName, message)
  if not sent then
    log_failure(msg, "cannot send the reply as a customer-service message", serr)
    -- WeChat no longer knows the medium we recorded: the next message uploads it again
    if ours and type(details) == "table" and details.errcode == 40007 then
      self.client:forget(message.media_id)
    end
  end
end

local function work(premature, self, msg, job)
  local ok, err = pcall(run, premature, self, msg, job)
  if not ok then
    log_failure(msg, "no reply", err)
    if job.state == "waiting" then
      job.state = "none"
      record(self, job.key, NONE)
      job.sema:post(1)
    end
  end
end

-- }======

-- {====== the request ======

local function answer(status, content_type, body)
  ngx.status = status
  ngx.header["Content-Type"] = content_type
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

local function answer_xml(xml) answer(200, "text/xml; charset=utf-8", xml) end
local function answer_none() answer(200, "text/plain", reply.NONE) end

local function refuse(status, message)
  answer(status, "text/plain", message .. "\n")
  return nil, message
end

-- The body WeChat posted (nginx may have kept it in memory or in a temp file), at most a message's
-- size plus one byte; or nil.
local function body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local path = ngx.req.get_body_file()
  local f = path and io_open(path, "rb")
  if not f then return nil end
  data = f:read(reply.MAX_MESSAGE + 1)
  f:close()
  return data
end

local function text(v)
  return type(v) == "string" and v or ""
end

-- The key of a message and its retries: its MsgId, or for an event (which has none) the user and
-- CreateTime, as WeChat advises; hashed, so that a key is short whatever the message holds.
local function key_of(msg)
  local id = type(msg.MsgId) == "string" and ("id\0" .. msg.MsgId)
    or ("event\0" .. text(msg.FromUserName) .. "\0" .. text(msg.CreateTime) .. "\0" .. text(msg.Event))
  local sum = transport.sha1(text(msg.ToUserName) .. "\0" .. id)
  if not sum then return nil end
  return "wxmedia:callback:" .. sum
end

-- The first attempt: the work in a timer, and the answer it gives within the budget.
local function answer_first(self, msg, key, deadline)
  local job = { state = "waiting", sema = require("ngx.semaphore").new(0), key = key, deadline = deadline }
  local ok, err = ngx.timer.at(0, work, self, msg, job)
  if not ok then
    log_failure(msg, "no reply", "cannot start a timer: " .. tostring(err))
    record(self, key, NONE)
    answer_none()
    return "none"
  end
  job.sema:wait(max(0, deadline - ngx.now()))
  local state = job.state
  if state == "ready" then
    answer_xml(job.xml)
    return "reply"
  end
  if state == "waiting" then
    job.state = "late"
    record(self, key, DEFERRED)
  end
  answer_none()
  return state == "none" and "none" or "deferred"
end

-- The state of a message being worked on by this worker.
local function pending()
  return PENDING .. ngx.worker.pid()
end

-- The worker a pending state names, or nil for a settled state.
local function owner_of(state)
  return type(state) == "string" and state:match("^" .. PENDING .. "(%d+)$") or nil
end

-- A process's state letter and parent pid, from /proc (Linux); nil when it cannot be read.
local function proc_stat(pid)
  local f = io_open("/proc/" .. pid .. "/stat", "rb")
  if not f then return nil end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a) (%d+)")
end

-- This worker's master (its parent), read once per worker; false without /proc.
local master_pid

-- Has worker `pid` of this nginx died? Only when /proc says so: it is gone, a zombie, or another
-- master's child (its pid reused). Without /proc nothing is known, and nothing is taken over.
local function worker_died(pid)
  if pid == tostring(ngx.worker.pid()) then return false end
  if master_pid == nil then master_pid = select(2, proc_stat("self")) or false end
  local master = master_pid
  if not master then return false end
  local state, parent = proc_stat(pid)
  return state == nil or state == "Z" or state == "X" or parent ~= master
end

-- The answer of a retry: what the first attempt answered, waiting for it until deadline while it
-- is still pending. A first attempt whose worker died is taken over by one retry (the others wait
-- for that one); a first attempt that never settles otherwise leaves "success".
local function answer_retry(self, msg, key, deadline)
  local state = self.dict:get(key)
  while true do
    local owner = owner_of(state)
    if not owner then break end
    if worker_died(owner) and self.dict:add(key .. ":taken:" .. owner, true, STATE_TTL) then
      ngx.log(ngx.WARN, "wxmedia: callback: worker ", owner, " died before it answered a message from ",
        tostring(msg.FromUserName), ": answering WeChat's retry as the first attempt")
      record(self, key, pending())
      return answer_first(self, msg, key, deadline)
    end
    if ngx.now() >= deadline then break end
    ngx.sleep(POLL)
    state = self.dict:get(key)
  end
  if type(state) == "string" and state:sub(1, #REPLY) == REPLY then
    answer_xml(state:sub(#REPLY + 1))
    return "retry"
  end
  answer_none()
  return "retry"
end

-- syntax: how, err = cb:handle()   (content phase)
-- Answers the request WeChat made to the callback URL. how: "echo" (the server check's GET),
-- "reply" (the passive reply), "deferred" ("success", the reply to follow as a customer-service
-- message), "none" ("success": no reply, or it failed: see the error log) or "retry" (a retry,
-- answered as the first attempt was; a retry that took over a dead worker's message answers as a
-- first attempt); or nil, why, for a request that is not WeChat's: 403 (a bad
-- signature), 400 (no echostr, a body that is not a message), 405.
function _M.handle(self)
  if ngx.get_phase() ~= "content" then
    error("wxmedia: the callback answers the request, so it runs in the content phase, not "
      .. tostring(ngx.get_phase()), 2)
  end
  local deadline = ngx.req.start_time() + self.budget
  local args = ngx.req.get_uri_args()
  if not reply.verify(self.token, args.signature, args.timestamp, args.nonce) then
    return refuse(403, "the signature does not match the callback's token")
  end
  local method = ngx.req.get_method()
  if method == "GET" then
    if type(args.echostr) ~= "string" then return refuse(400, "no echostr to answer") end
    answer(200, "text/plain", args.echostr)
    return "echo"
  end
  if method ~= "POST" then
    ngx.header["Allow"] = "GET, POST"
    return refuse(405, "WeChat posts messages and checks the URL with GET")
  end
  local posted = body() or ""
  local msg, err = reply.parse(posted)
  if not msg then
    -- safe mode (compatible mode, which posts the plain fields beside Encrypt, is served as plain):
    -- every message will fail the same way until the console is changed
    if args.encrypt_type == "aes" or posted:find("<Encrypt>", 1, true) then
      err = SAFE_MODE
      ngx.log(ngx.ERR, "wxmedia: callback: ", SAFE_MODE)
    end
    return refuse(400, "cannot read the message: " .. err)
  end
  local key = key_of(msg)
  if key then
    local ok, aerr = self.dict:add(key, pending(), STATE_TTL)
    if not ok and aerr == "exists" then return answer_retry(self, msg, key, deadline) end
    if not ok then
      -- a full dict: this message goes on, without protection against its retries
      ngx.log(ngx.WARN, "wxmedia: callback: cannot record the message in dedup_dict: ", tostring(aerr))
      key = nil
    end
  end
  return answer_first(self, msg, key, deadline)
end

-- }======

return _M
