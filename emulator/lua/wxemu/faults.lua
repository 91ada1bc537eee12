-- Faults queued through the control API for the next N requests of a route: one queue entry per
-- request in a shared dict list, so every worker pops from the same queue.
local cjson = require "cjson.safe"

local faults = ngx.shared.wxemu_faults
local type, tostring, math_floor = type, tostring, math.floor

local _M = {}

_M.ROUTES = {
  token = true, stable_token = true, upload = true, get = true, jssdk = true, video = true,
  custom_send = true,
}

local KINDS = {
  status = true, errcode = true, delay = true, drip = true,
  reset_request = true, reset_response = true, truncate = true,
  empty = true, partial = true, whitespace = true, bom_json = true, octet_json = true,
}

-- The kinds that reshape the answer the handler makes (wxemu.send), so a stored file is sent through
-- Lua rather than by nginx for them (wxemu.media).
_M.ON_ANSWER = {
  drip = true, reset_response = true, truncate = true,
  empty = true, partial = true, whitespace = true, bom_json = true,
}

local STATUSES = { [204] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

local function number_in(v, lo, hi)
  return type(v) == "number" and v >= lo and v <= hi
end

-- The errcode and errmsg options of the kinds that answer WeChat's error JSON; nil, message if bad.
local function errcode_options(f, spec)
  f.errcode = spec.errcode == nil and -1 or spec.errcode
  if not number_in(f.errcode, -1e9, 1e9) or f.errcode ~= math_floor(f.errcode) then
    return nil, "errcode must be a whole number"
  end
  if spec.errmsg ~= nil and type(spec.errmsg) ~= "string" then return nil, "errmsg must be a string" end
  f.errmsg = spec.errmsg
  return f
end

-- Checks a fault spec from the control API; returns the normalised spec and its count, or nil, message.
function _M.check(spec)
  if type(spec) ~= "table" then return nil, "fault must be a JSON object" end
  local route, kind = spec.route, spec.kind
  if route ~= "*" and not _M.ROUTES[route] then
    return nil, "unknown route " .. tostring(route)
      .. " (token, stable_token, upload, get, jssdk, video, custom_send or *)"
  end
  if not KINDS[kind] then return nil, "unknown kind " .. tostring(kind) end
  local count = spec.count == nil and 1 or spec.count
  if not number_in(count, 1, 100000) or count ~= math_floor(count) then
    return nil, "count must be a whole number from 1 to 100000"
  end
  local f = { kind = kind }
  if kind == "status" then
    f.status = spec.status == nil and 503 or spec.status
    if not STATUSES[f.status] then return nil, "status must be 204, 429, 500, 502, 503 or 504" end
    f.body = spec.body == nil and "empty" or spec.body
    if f.body ~= "empty" and f.body ~= "html" then return nil, 'body must be "empty" or "html"' end
    if f.status == 204 and f.body ~= "empty" then return nil, 'a 204 has no body: body must be "empty"' end
  elseif kind == "errcode" or kind == "bom_json" or kind == "octet_json" then
    local ok, err = errcode_options(f, spec)
    if not ok then return nil, err end
  elseif kind == "delay" then
    f.seconds = spec.seconds == nil and 2 or spec.seconds
    if not number_in(f.seconds, 0, 300) then return nil, "seconds must be a number from 0 to 300" end
  elseif kind == "drip" then
    f.rate = spec.rate == nil and 1024 or spec.rate
    if not number_in(f.rate, 1, 1e10) then return nil, "rate must be a number of bytes per second >= 1" end
  end
  return f, count, route
end

function _M.queue(route, f, count)
  local text = cjson.encode(f)
  for _ = 1, count do
    local ok, err = faults:rpush(route, text)
    if not ok then return nil, "cannot queue the fault: " .. tostring(err) end
  end
  return faults:llen(route)
end

-- The fault for this request of `route`, if one is queued (the route's own queue first, then "*").
function _M.take(route)
  local text = faults:lpop(route)
  if not text and faults:llen("*") > 0 then text = faults:lpop("*") end
  return text and cjson.decode(text)
end

function _M.clear()
  faults:flush_all()
end

return _M
