-- How a failed call is answered over HTTP: a small JSON body, never a file, with the status that
-- says whose fault it is. client:serve answers its failures this way, and client:send_error lets a
-- handler answer the failures of upload, get or media_id the same way.
--   404  WeChat does not know the media_id (40007)
--   400  the request cannot be valid (41006, kind input)
--   500  the server's own files or configuration (kind io, config)
--   503  no worker thread was free in time (kind busy), with Retry-After
--   499  the HTTP client went away (kind client_closed): nothing is sent, the status is for the log
--   502  anything else upstream: WeChat's errors, HTTP 5xx, timeouts, connection failures, tokens
local cjson = require "cjson.safe"

local ngx = ngx

local _M = {}

function _M.status_for(details)
  details = details or {}
  if details.kind == "busy" then return 503 end
  if details.kind == "client_closed" then return 499 end
  if details.errcode == 40007 then return 404 end
  if details.errcode == 41006 or details.kind == "input" then return 400 end
  if details.kind == "io" or details.kind == "config" then return 500 end
  return 502
end

-- Answers the current request (before its headers are sent) with the failure.
function _M.send_error(message, details)
  details = details or {}
  local status = _M.status_for(details)
  ngx.status = status
  if status == 499 then return end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Disposition"] = nil
  ngx.header["Cache-Control"] = "no-store"
  if details.retry_after then ngx.header["Retry-After"] = details.retry_after end
  ngx.print(cjson.encode({ error = message, kind = details.kind, errcode = details.errcode }))
end

return _M
