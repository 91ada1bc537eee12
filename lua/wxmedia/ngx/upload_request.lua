-- client:upload_request(type [, opts]): the current request's body uploaded as `type`, and the request
-- answered with JSON: 200 and upload's result, or the failure as send_error answers it.
--
-- The body is the file itself (curl --data-binary @photo.jpg), as nginx read it: in memory, or in
-- its temp file when larger than client_body_buffer_size. Messages call it "the request body": the
-- temp file's path (/var/lib/nginx/body/0000000016) means nothing to an HTTP client and tells it
-- about the server, so it is never named. A multipart/form-data body (curl -F) is refused with 415
-- and what to send instead: nginx has no multipart parser, Debian has no lua-resty-upload, and we do
-- not write one by hand. The body goes to the worker thread in memory (a file handle cannot cross
-- into one): at most client_max_body_size, and never more than the type's limit, which is checked
-- on the temp file's size before it is read.
local errors = require "wxmedia.errors"
local reply = require "wxmedia.ngx.reply"

local ngx = ngx
local error, io_open, pcall, tostring, type = error, io.open, pcall, tostring, type

local _M = {}

_M.NAME = "the request body"

_M.MULTIPART = "cannot upload " .. _M.NAME .. ": it is a multipart/form-data form (curl -F); send the "
  .. "file itself as the request body: curl --data-binary @photo.jpg URL"

local function is_multipart(content_type)
  return type(content_type) == "string" and content_type:lower():find("^%s*multipart/") ~= nil
end

-- The body as an upload source, and the handle to close after; or nil, message, details.
local function body_source()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return { data = data, name = _M.NAME } end
  local path = ngx.req.get_body_file()
  if not path then return { data = "", name = _M.NAME } end
  local f, err = io_open(path, "rb")
  if not f then
    -- the path and the system's words stay in the error log
    ngx.log(ngx.ERR, "wxmedia: cannot open nginx's temp file of the request body: ", tostring(err))
    return errors.fail("io", "cannot upload " .. _M.NAME .. ": nginx's temp file of it cannot be read")
  end
  return { file = f, name = _M.NAME }, f
end

-- upload_request(client, type, opts): client is a wxmedia.ngx client. Returns upload's result, or
-- nil, message, details after answering the failure.
function _M.upload_request(client, mtype, opts)
  if is_multipart(ngx.var.content_type) then
    local details = { kind = "input" }
    reply.send_error(_M.MULTIPART, details, 415)
    return nil, _M.MULTIPART, details
  end
  local file, msg, details = body_source()
  if not file then
    reply.send_error(msg, details)
    return nil, msg, details
  end
  local handle = msg
  local ok, res, err, rdetails = pcall(client.upload, client, mtype, file, opts)
  if handle then handle:close() end
  if not ok then error(res, 0) end
  if not res then
    reply.send_error(err, rdetails)
    return nil, err, rdetails
  end
  reply.send_json(200, res)
  return res
end

return _M
