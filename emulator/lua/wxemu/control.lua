-- The control API under /__emulator/: JSON in, JSON out; 200 on success, 400 {"error": ...} on a
-- bad request. Lets tests reset state, change the config, queue faults, read the request log and
-- move the clock.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local faults = require "wxemu.faults"
local tokens = require "wxemu.tokens"
local media = require "wxemu.media"
local reqlog = require "wxemu.reqlog"

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

local function ok(tbl)
  return reply(200, config.encode(tbl))
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

local METHODS = { ping = "GET", log = "GET" }

function _M.handle()
  local name = ngx.var.uri:match("^/__emulator/([%w_]+)/?$")
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
