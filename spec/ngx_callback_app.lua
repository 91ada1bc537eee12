-- luacheck: std +ngx_lua
-- The handlers of the nginx that spec/ngx_callback_spec.lua starts (loaded inside nginx, on LuaJIT):
-- an account's callback through wxmedia.ngx.callback, one per budget (?budget=N picks it), whose
-- on_message replies what the user's text asks for.
local cjson = require "cjson.safe"
local wxngx = require "wxmedia.ngx"

local ngx = ngx
local _M = {}

local config, client
local callbacks = {}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- What the user's text asks for (the spec's words), as on_message's reply.
local function wanted(msg)
  local ask = msg.Content or ""
  if msg.MsgType == "event" then
    return { type = "text", content = "welcome, " .. msg.Event }
  elseif ask == "image" then
    return { type = "image", path = config.fixtures .. "/image.jpg" }
  elseif ask == "data" then
    return { type = "image", data = read(config.fixtures .. "/image.png"), filename = "chart.png" }
  elseif ask == "voice" then
    return { type = "voice", path = config.fixtures .. "/voice.amr" }
  elseif ask:match("^media_id ") then
    return { type = "image", media_id = ask:match("^media_id (.*)$") }
  elseif ask == "none" then
    return nil
  elseif ask == "typo" then
    return { type = "video", path = config.fixtures .. "/video.mp4", titel = "x" }
  elseif ask == "bell" then
    return { type = "text", content = "ding\7" }
  elseif ask == "latin1 title" then
    return { type = "video", path = config.fixtures .. "/video.mp4", title = "caf\233" }
  elseif ask == "raise" then
    error("the handler broke")
  elseif ask == "die once" then
    -- a worker crash in the middle of the work: the first time only (the dict survives the worker)
    if ngx.shared.callbacks:add("died", true) then os.execute("kill -9 " .. ngx.worker.pid()) end
    return { type = "text", content = "back again" }
  elseif ask == "slow text" then
    ngx.sleep(config.slow)
    return { type = "text", content = "sorry for the wait" }
  end
  return { type = "text", content = "you said: " .. ask }
end

-- init_by_lua: the client, and a callback per budget.
function _M.init(json)
  config = assert(cjson.decode(json))
  client = assert(wxngx.new(config.client))
  for _, budget in ipairs(config.budgets) do
    callbacks[tostring(budget)] = wxngx.callback({ token = config.token, client = client, budget = budget,
      dedup_dict = "callbacks", on_message = wanted })
  end
  -- options the spec expects callback to refuse: the errors raised
  local tries = {}
  for i, opts in ipairs(config.tries or {}) do
    local o = { client = client, on_message = wanted, dedup_dict = "callbacks", token = config.token }
    for k, v in pairs(opts) do o[k] = v end
    if o.client == "none" then o.client = nil end
    local ok, err = pcall(wxngx.callback, o)
    tries[i] = ok and "ok" or tostring(err)
  end
  ngx.shared.test:set("tries", cjson.encode(tries))
end

-- The callback's location: how it answered goes to the error log (info), for the spec.
function _M.callback()
  local cb = callbacks[ngx.var.arg_budget or "4"]
  local how, err = cb:handle()
  ngx.log(ngx.INFO, "callback answered: ", tostring(how), " ", tostring(err))
end

-- Forgets tokens, media_id records and messages: the emulator forgets its own before each test.
function _M.reset()
  for _, name in ipairs({ "wxmedia_tokens", "wxmedia_locks", "callbacks" }) do
    ngx.shared[name]:flush_all()
  end
  ngx.say("ok")
end

function _M.tries()
  ngx.say(ngx.shared.test:get("tries"))
end

return _M
