-- client:serve(media_id): answers the current request (content phase) with a media file. The file
-- is downloaded in a worker thread to a temp file, sent with its Content-Type and Content-Length in
-- 64 KiB chunks, then removed. When the download fails, the answer is a small JSON error, never a
-- file (wxmedia/ngx/reply.lua: 404 for a media_id WeChat does not know, 503 when no thread was free,
-- 502 for anything upstream...).
local errors = require "wxmedia.errors"
local reply = require "wxmedia.ngx.reply"

local ngx = ngx
local error, pairs, pcall, tostring = error, pairs, pcall, tostring
local format = string.format
local random = math.random
local open, remove = io.open, os.remove

local _M = {}

local CHUNK = 65536
local serve_seq = 0

local function temp_path(dir)
  serve_seq = serve_seq + 1
  return format("%s/wxmedia-serve-%d-%d-%d", dir, ngx.worker.pid(), serve_seq, random(1e9))
end

-- Streams the downloaded file. Reading a file that was just written comes from the page cache,
-- so the reads are short; ngx.flush(true) yields until each chunk is sent, so memory stays at one
-- chunk per request whatever the file size.
local function send_file(got, opts)
  local f, err = open(got.path, "rb")
  if not f then return errors.fail("io", "cannot open the downloaded file: " .. tostring(err)) end
  local size = f:seek("end")
  f:seek("set")
  ngx.status = 200
  ngx.header["Content-Type"] = got.content_type or "application/octet-stream"
  ngx.header["Content-Length"] = size
  if opts.attachment then
    local name = (opts.filename or got.filename or "media"):gsub("[^%w%._%-]", "_")
    ngx.header["Content-Disposition"] = 'attachment; filename="' .. name .. '"'
  end
  if ngx.req.get_method() == "HEAD" then
    f:close()
    return ngx.send_headers()
  end
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    local ok, perr = ngx.print(chunk)
    if ok then ok, perr = ngx.flush(true) end
    if not ok then
      f:close()
      return errors.fail("client_closed", "the HTTP client went away while the file was sent: "
        .. tostring(perr))
    end
  end
  f:close()
  return true
end

-- serve(client, media_id, opts, tmpdir): client is a wxmedia.ngx client; opts: those of get, plus
-- attachment = true (Content-Disposition), filename, tmpdir. Returns true, or nil, message, details
-- (already answered; for the caller's log).
function _M.serve(client, media_id, opts, tmpdir)
  opts = opts or {}
  local get_opts
  for k, v in pairs(opts) do
    if k ~= "attachment" and k ~= "filename" and k ~= "tmpdir" then
      get_opts = get_opts or {}
      get_opts[k] = v
    end
  end
  local path = temp_path(opts.tmpdir or tmpdir)
  local ok, got, msg, details = pcall(client.get, client, media_id, path, get_opts)
  if not ok then
    remove(path)
    error(got, 0)
  end
  local sent, serr, sdetails
  if got then
    ok, sent, serr, sdetails = pcall(send_file, got, opts)
  end
  remove(path)
  if not ok then error(sent, 0) end
  if not got then
    reply.send_error(msg, details)
    return nil, msg, details
  end
  if not sent then
    if not ngx.headers_sent then reply.send_error(serr, sdetails) end
    return nil, serr, sdetails
  end
  return true
end

return _M
