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

-- Answers the current request (before its headers are sent) with a JSON document.
function _M.send_json(status, doc)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Disposition"] = nil
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(cjson.encode(doc))
end

-- Answers the current request (before its headers are sent) with the failure; status, when given,
-- in place of the one status_for chooses (a 415 for a body of the wrong kind).
function _M.send_error(message, details, status)
  details = details or {}
  status = status or _M.status_for(details)
  if status == 499 then
    ngx.status = status
    return
  end
  if details.retry_after then ngx.header["Retry-After"] = details.retry_after end
  _M.send_json(status, { error = message, kind = details.kind, errcode = details.errcode })
end

return _M
