-- The control API under /__emulator/: JSON in, JSON out; 200 on success, 400 {"error": ...} on a
-- bad request. Lets tests reset state, change the config, queue faults, read the request log, move
-- the clock, and play an account's users: one writes (wxemu.callback delivers it), and what each
-- received can be read.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local faults = require "wxemu.faults"
local tokens = require "wxemu.tokens"
local media = require "wxemu.media"
local reqlog = require "wxemu.reqlog"
local users = require "wxemu.users"
local callback = require "wxemu.callback"
local rand = require "wxemu.rand"
local redact = require "wxemu.redact"

local ngx = ngx
local state = ngx.shared.wxemu_state

local _M = {}

local function reply(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(text)
  return ngx.exit(ngx.OK)
end

local function bad(msg)
  return reply(400, cjson.encode { error = msg })
end

-- Debian's lua-cjson encodes an empty table as an object: the lists these answers hold go as lists.
local LISTS = { "attempts", "received" }

local function json(tbl)
  local text = config.encode(tbl)
  for _, name in ipairs(LISTS) do text = text:gsub('"' .. name .. '":{}', '"' .. name .. '":[]') end
  return text
end

local function ok(tbl)
  return reply(200, json(tbl))
end

-- The request's JSON object ({} for an empty body), or nil after answering 400.
local function body()
  ngx.req.read_body()
  local text = ngx.req.get_body_data()
  if not text then
    if ngx.req.get_body_file() then return nil, bad("body too large") end
    return {}
  end
  if text:find("^%s*$") then return {} end
  local obj, err = cjson.decode(text)
  if type(obj) ~= "table" then
    return nil, bad("body must be a JSON object" .. (err and ": " .. err or ""))
  end
  return obj
end

local handlers = {}

function handlers.ping()
  return ok { ok = true }
end

function handlers.reset()
  local _, sent = body()
  if sent then return end
  tokens.clear()
  local cleared, err = pcall(media.clear)
  if not cleared then return reply(500, cjson.encode { error = err }) end
  reqlog.clear()
  faults.clear()
  callback.forget()
  users.clear()
  state:set("clock_offset", 0)
  config.store(cjson.decode(state:get("start_config")))
  return ok { ok = true }
end

function handlers.config()
  if ngx.req.get_method() == "GET" then return ok(config.get()) end
  local patch, sent = body()
  if sent then return end
  local merged, err = config.merge(config.get(), patch)
  if not merged then return bad(err) end
  config.store(merged)
  return ok(merged)
end

function handlers.fault()
  local spec, sent = body()
  if sent then return end
  -- {"clear": true} drops every queued fault (and nothing else, unlike reset)
  if type(spec) == "table" and spec.clear == true then
    faults.clear()
    return ok { queued = 0 }
  end
  local f, count, route = faults.check(spec)
  if not f then return bad(count) end
  local queued, err = faults.queue(route, f, count)
  if not queued then return bad(err) end
  return ok { queued = queued }
end

function handlers.log()
  return reply(200, reqlog.json())
end

function handlers.clock()
  if ngx.req.get_method() == "GET" then
    return ok { offset = state:get("clock_offset") or 0, now = clock.now() }
  end
  local req, sent = body()
  if sent then return end
  local advance = req.advance == nil and 0 or req.advance
  if type(advance) ~= "number" or advance < 0 or advance > 1e9 then
    return bad("advance must be a number of seconds >= 0")
  end
  return ok { offset = clock.advance(advance), now = clock.now() }
end

-- XML 1.0 allows no other control characters: WeChat's messages cannot hold them.
local function xml_text(v)
  return type(v) == "string" and v ~= "" and #v <= 65536 and not v:find("[%z\1-\8\11\12\14-\31]")
end

-- The appid a control call names (the first app by default), or nil, message.
local function appid_of(v)
  local cfg = config.get()
  if v == nil then return cfg.apps[1].appid end
  if type(v) ~= "string" or not config.app_secret(cfg, v) then
    return nil, "no app has the appid " .. tostring(v)
  end
  return v
end

local function openid_ok(v)
  return type(v) == "string" and #v >= 6 and #v <= 64 and not v:find("[^%w_%-]")
end

local MEDIA_MESSAGES = { image = true, voice = true }
local EVENTS = { subscribe = true, unsubscribe = true }

-- Checks the body of user/message; returns appid, msg (wxemu.callback.user_writes) or nil, message.
local function user_message(req)
  local appid, err = appid_of(req.appid)
  if not appid then return nil, err end
  local msg = { openid = req.openid, msg_type = req.msg_type }
  if msg.openid == nil then
    -- WeChat's openids: 28 characters, an "o" first
    msg.openid = "o" .. rand.id(27)
  elseif not openid_ok(msg.openid) then
    return nil, "openid must be 6 to 64 characters of [A-Za-z0-9_-]"
  end
  local t = msg.msg_type
  if t == "text" then
    if not xml_text(req.content) then return nil, "a text message needs a content (XML text, up to 64 KB)" end
    msg.content = req.content
  elseif MEDIA_MESSAGES[t] then
    local meta = media.live(req.media_id, appid)
    if not meta or meta.type ~= t then
      return nil, "an " .. t .. " message needs the media_id of a live " .. t .. " of the account"
    end
    msg.media_id, msg.format = req.media_id, meta.format
  elseif t == "event" then
    if not EVENTS[req.event] then return nil, "event must be subscribe or unsubscribe" end
    msg.event = req.event
  else
    return nil, "msg_type must be text, image, voice or event"
  end
  if req.wait ~= nil and type(req.wait) ~= "boolean" then return nil, "wait must be a boolean" end
  return appid, msg
end

-- A delivery record as the control API shows it (a copy, without what only the emulator needs).
local function shown(rec)
  local copy = {}
  for k, v in pairs(rec) do copy[k] = v end
  copy.generation = nil
  return copy
end

-- POST user/message: a user writes to the account. Answers the delivery record at once and then
-- delivers (the connection closes: see the nginx.conf location), or with "wait": true delivers first.
handlers["user/message"] = function()
  local req, sent = body()
  if sent then return end
  local appid, msg = user_message(req)
  if not appid then return bad(msg) end
  local rec = callback.user_writes(appid, msg)
  if req.wait then return ok(shown(callback.deliver(rec))) end
  if rec.state == "done" then return ok(shown(rec)) end
  local text = json(shown(rec))
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  ngx.eof()
  local delivered, err = pcall(callback.deliver, rec)
  if not delivered then redact.log_error(err) end
  return ngx.exit(ngx.OK)
end

-- GET user?openid=&appid=: what the emulator knows of a user, and what they received.
handlers.user = function()
  local args = ngx.req.get_uri_args(10)
  local appid, err = appid_of(media.arg(args.appid))
  if not appid then return bad(err) end
  local openid = media.arg(args.openid)
  local rec = openid_ok(openid) and users.get(appid, openid)
  if not rec then return bad("no user " .. tostring(openid) .. " of " .. appid) end
  local cfg = config.get()
  return ok {
    appid = appid, openid = openid, subscribed = rec.subscribed, last_message_at = rec.last_message_at,
    window_ends_at = rec.last_message_at and rec.last_message_at + cfg.custom_window,
    custom_sent = users.custom_count(appid, openid),
    received = users.received(appid, openid),
  }
end

-- GET delivery?msg_id=: how a message went to the account's callback.
handlers.delivery = function()
  local rec = callback.get(media.arg(ngx.req.get_uri_args(10).msg_id))
  if not rec then return bad("no delivery of that msg_id") end
  return ok(shown(rec))
end

local METHODS = { ping = "GET", log = "GET", user = "GET", delivery = "GET" }

function _M.handle()
  local name = ngx.var.uri:match("^/__emulator/([%w_]+/?[%w_]*)$")
  if name then name = name:gsub("/$", "") end
  local handler = name and handlers[name]
  if not handler then return bad("unknown control call " .. ngx.var.uri) end
  local method = ngx.req.get_method()
  if METHODS[name] and method ~= METHODS[name] and method ~= "HEAD" then
    return bad(name .. " wants " .. METHODS[name])
  end
  local readable = method == "GET" and (name == "config" or name == "clock")
  if not METHODS[name] and method ~= "POST" and not readable then
    return bad(name .. " wants POST")
  end
  return handler()
end

return _M
