-- Writes every response of a WeChat route, so the faults that act on the answer (faults.ON_ANSWER:
-- drip, reset_response, truncate, empty, partial, whitespace, bom_json) apply to all of them alike.
local ngx = ngx
local string_sub, string_rep = string.sub, string.rep
local math_floor, math_max, math_min = math.floor, math.max, math.min

local _M = {}

local DRAIN_CAP = 256 * 1024 * 1024

-- Drops the connection without a proper end: nginx closes the socket (444 is nginx's "close now";
-- with request data still unread the kernel answers with a reset).
function _M.abort()
  return ngx.exit(444)
end

local function drip(body, rate)
  -- ten slices a second, each flushed before the pause
  local step = math_max(1, math_floor(rate / 10))
  local pos = 1
  while pos <= #body do
    local piece = string_sub(body, pos, pos + step - 1)
    pos = pos + #piece
    ngx.print(piece)
    local ok = ngx.flush(true)
    if not ok then return end
    if pos <= #body then ngx.sleep(#piece / rate) end
  end
end

-- Ends a request whose answer is out: drops the unread rest of an upload's body first, or closes
-- the connection when that is too much.
local function finish()
  local reader = ngx.ctx.unread_body
  if reader then
    ngx.ctx.unread_body = nil
    ngx.flush(true)
    if not reader:drain(DRAIN_CAP) then return _M.abort() end
  end
  return ngx.exit(ngx.OK)
end

local BOM = "\239\187\191"

-- n blanks (at least one): spaces, tabs and line ends.
local function blanks(n)
  n = math_max(1, n)
  return string_sub(string_rep(" \t\r\n", math_floor(n / 4) + 1), 1, n)
end

-- The faults that replace the answer's body under its own headers; partial also makes it a 206.
local RESHAPE = {
  empty = function() return "" end,
  whitespace = function(body) return blanks(#body) end,
  bom_json = function(_, fault) return BOM .. fault.json end,
  partial = function(body)
    local total = #body
    local part = string_sub(body, 1, total > 0 and math_max(1, math_floor(total / 2)) or 0)
    ngx.header["Content-Range"] = total > 0 and ("bytes 0-%d/%d"):format(#part - 1, total) or "bytes */0"
    return part, 206
  end,
}

-- Sends status, headers (a table) and body (a string), honouring the request's fault.
function _M.reply(status, headers, body)
  local fault = ngx.ctx.fault
  local kind = fault and fault.kind
  for k, v in pairs(headers) do ngx.header[k] = v end
  if RESHAPE[kind] then
    local new_status
    body, new_status = RESHAPE[kind](body, fault)
    status = new_status or status
  end
  ngx.status = status
  ngx.header["Content-Length"] = #body
  if kind == "drip" then
    drip(body, fault.rate)
    return finish()
  elseif kind == "reset_response" or kind == "truncate" then
    -- reset_response: headers and a part of the body, then the connection drops mid-body;
    -- truncate: all but the last few bytes of the body, then the connection closes.
    local keep = kind == "truncate" and math_max(0, #body - math_max(1, math_min(16, math_floor(#body / 4))))
      or math_floor(#body / 2)
    ngx.send_headers()
    if keep > 0 then ngx.print(string_sub(body, 1, keep)) end
    ngx.flush(true)
    return _M.abort()
  end
  ngx.print(body)
  return finish()
end

return _M
