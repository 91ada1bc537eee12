-- The request log of the control API: one JSON entry per WeChat-route request, in completion order,
-- without any access_token or secret (only route, sizes, codes and the part's filename). A request that
-- began before the last clear is not logged when it ends: it belongs to the log that was cleared.
local cjson = require "cjson.safe"
local clock = require "wxemu.clock"

local ngx = ngx
local dict = ngx.shared.wxemu_log
local tonumber, tostring = tonumber, tostring

local _M = {}

function _M.record()
  local ctx = ngx.ctx
  if not ctx.route then
    -- after an internal redirect (a file sent by nginx) ngx.ctx is new: the entry came in a variable
    ctx = cjson.decode(ngx.var.wxemu_ctx or "") or ctx
    if ctx.fault then ctx.fault = { kind = ctx.fault } end
  end
  local route = ctx.route
  if not route or ngx.req.start_time() < (dict:get("cleared_at") or 0) then return end
  local var = ngx.var
  local entry = {
    route = route,
    method = ngx.req.get_method(),
    status = ngx.status,
    errcode = ctx.errcode,
    bytes_in = tonumber(var.request_length),
    bytes_out = tonumber(var.bytes_sent),
    -- nginx numbers connections per worker: (worker, connection) names one
    worker = ngx.worker.pid(),
    connection = tonumber(var.connection),
    connection_requests = tonumber(var.connection_requests),
    filename = ctx.filename,
    type = ctx.type,
    media_id = ctx.media_id,
    fault = ctx.fault and ctx.fault.kind,
    time = clock.now(),
  }
  local n = dict:incr("n", 1, 0)
  -- set, not safe_set: when the dict is full the oldest entries make room
  dict:set(tostring(n), cjson.encode(entry))
end

-- The log as a JSON array text.
function _M.json()
  local n = dict:get("n") or 0
  local out = {}
  for i = 1, n do
    local e = dict:get(tostring(i))
    if e then out[#out + 1] = e end
  end
  return "[" .. table.concat(out, ",") .. "]"
end

function _M.clear()
  dict:flush_all()
  ngx.update_time()
  dict:set("cleared_at", ngx.now())
end

return _M
