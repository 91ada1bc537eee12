-- Temporary media: upload (streamed from the multipart body into the storage folder), get, the HD
-- voice (jssdk) variant, and the CDN-like target of a video's video_url. Metadata lives in a shared
-- dict, bytes in files named by media_id, so every worker serves the same media.
local cjson = require "cjson.safe"
local config = require "wxemu.config"
local clock = require "wxemu.clock"
local rand = require "wxemu.rand"
local tokens = require "wxemu.tokens"
local multipart = require "wxemu.multipart"
local wx = require "wxemu.wx"
local send = require "wxemu.send"
local faults = require "wxemu.faults"

local ngx = ngx
local dict = ngx.shared.wxemu_media
local state = ngx.shared.wxemu_state
local type, math_floor, io_open, os_remove, os_rename = type, math.floor, io.open, os.remove, os.rename
local string_byte, string_sub, string_lower = string.byte, string.sub, string.lower

local _M = {}

local EXTENSIONS = {
  image = { jpg = true, jpeg = true, png = true, gif = true },
  voice = { amr = true, mp3 = true },
  video = { mp4 = true },
  thumb = { jpg = true, jpeg = true },
}

local FORMATS = {
  jpeg = { content_type = "image/jpeg", ext = "jpg" },
  png = { content_type = "image/png", ext = "png" },
  gif = { content_type = "image/gif", ext = "gif" },
  amr = { content_type = "audio/amr", ext = "amr" },
  mp3 = { content_type = "audio/mpeg", ext = "mp3" },
  mp4 = { content_type = "video/mp4", ext = "mp4" },
}
local FORMAT_OF_EXT = {
  jpg = "jpeg", jpeg = "jpeg", png = "png", gif = "gif", amr = "amr", mp3 = "mp3", mp4 = "mp4",
}

-- The format of the leading bytes, falling back to the one the extension names.
local function sniff(head, ext)
  if head:find("^\255\216\255") then return "jpeg" end
  if head:find("^\137PNG\r\n\26\n") then return "png" end
  if head:find("^GIF8[79]a") then return "gif" end
  if head:find("^#!AMR") then return "amr" end
  if head:find("^ID3") then return "mp3" end
  local b1, b2 = string_byte(head, 1, 2)
  if b1 == 255 and b2 and b2 >= 224 then return "mp3" end
  if string_sub(head, 5, 8) == "ftyp" then return "mp4" end
  return FORMAT_OF_EXT[ext] or "jpeg"
end

-- One value of a query (or form) argument: the first when repeated, nil when absent or valueless.
local function arg(v)
  if type(v) == "table" then v = v[1] end
  if type(v) ~= "string" then return nil end
  return v
end
_M.arg = arg

local function storage()
  return state:get("storage")
end

local function path_of(media_id)
  return storage() .. "/" .. media_id
end

local function authorised()
  local args = ngx.req.get_uri_args(100)
  local appid, code = tokens.check(arg(args.access_token))
  if not appid then return nil, code, args end
  return appid, nil, args
end

-- Streams the `media` part into `file`; returns its size and first bytes, or nil, message. Stops
-- reading once past `limit` (the size then says so): a huge body is never stored.
local function stream_part(reader, file, limit)
  local size, head = 0, nil
  while true do
    local chunk, err = reader:read(65536)
    if chunk == nil then return nil, err end
    if chunk == false then break end
    if not head then head = string_sub(chunk, 1, 16) end
    size = size + #chunk
    if size > limit then break end
    local ok, werr = file:write(chunk)
    if not ok then error("cannot write media: " .. tostring(werr)) end
  end
  return size, head or ""
end

local function extension(filename)
  return string_lower(filename:match("%.([^./\\]+)$") or "")
end

-- POST /cgi-bin/media/upload?access_token=&type=  (type may also be a form field)
function _M.upload()
  local ctx = ngx.ctx
  local appid, code, args = authorised()
  if not appid then return wx.fail(code) end
  local cfg = config.get()
  local mtype = arg(args.type)
  if mtype and not EXTENSIONS[mtype] then return wx.fail(40004) end

  -- without a readable multipart body the type can only come from the query
  local no_body = mtype and 41005 or 40004
  local boundary = multipart.boundary(ngx.var.content_type)
  if not boundary then return wx.fail(no_body) end
  local reader = multipart.new(boundary)
  if not reader then return wx.fail(no_body) end
  -- whatever the answer, the unread rest of the body is dropped after it (wxemu.send)
  ctx.unread_body = reader

  local media_id = rand.id(64)
  local tmp = path_of(media_id) .. ".part"
  local media, form_type, broken, over
  while true do
    local part, err = reader:next_part()
    if part == nil then broken = err break end
    if part == false then break end
    if part.name == "media" and part.filename and not media then
      ctx.filename = part.filename
      local file = assert(io_open(tmp, "wb"))
      local limit = cfg.limits[mtype or form_type] or config.max_limit(cfg)
      local size, head = stream_part(reader, file, limit)
      file:close()
      if not size then broken = head break end
      media = { filename = part.filename, size = size, head = head }
      if size > limit then over = true break end
    elseif part.name == "type" and not form_type then
      local value, cerr = reader:collect(64)
      if not value then broken = cerr break end
      form_type = value
    else
      local ok, cerr = reader:collect(0)
      if not ok then broken = cerr break end
    end
  end

  local function refuse(errcode)
    os_remove(tmp)
    return wx.fail(errcode)
  end
  mtype = mtype or form_type
  if not EXTENSIONS[mtype] then return refuse(40004) end
  ctx.type = mtype
  if not media or (broken and not over) then return refuse(41005) end
  if media.size == 0 then return refuse(44001) end
  local ext = extension(media.filename)
  if not EXTENSIONS[mtype][ext] then return refuse(40005) end
  if over or media.size > cfg.limits[mtype] then return refuse(40006) end

  local created = math_floor(clock.now())
  local meta = cjson.encode {
    appid = appid, type = mtype, format = sniff(media.head, ext), size = media.size, created_at = created,
  }
  -- kept media_ttl real seconds: by then the emulator clock has passed it too
  local keep = cfg.media_ttl + 60
  while true do
    local ok, err = dict:safe_add(media_id, meta, keep)
    if ok then break end
    -- out of memory: evict the least recently used media; otherwise a clash of 64 random characters
    if err == "no memory" and dict:add(media_id, meta, keep) then break end
    local other = rand.id(64)
    assert(os_rename(tmp, path_of(other) .. ".part"))
    media_id, tmp = other, path_of(other) .. ".part"
  end
  assert(os_rename(tmp, path_of(media_id)))
  ctx.media_id = media_id
  local id_key = mtype == "thumb" and "thumb_media_id" or "media_id"
  local extra = (mtype == "thumb" and cfg.thumb_media_id) and ('"media_id":"' .. media_id .. '",') or ""
  return wx.ok(('{"type":"%s","%s":"%s",%s"created_at":%d,"item":[]}'):format(
    mtype, id_key, media_id, extra, created))
end

-- The metadata of a media that `appid` (nil: anyone) may still fetch, or nil.
local function live_media(media_id, appid)
  if type(media_id) ~= "string" or #media_id ~= 64 or media_id:find("[^%w_%-]") then return nil end
  local meta = cjson.decode(dict:get(media_id) or "")
  if not meta then return nil end
  if appid and meta.appid ~= appid then return nil end
  if clock.now() - meta.created_at >= config.get().media_ttl then return nil end
  return meta
end
_M.live = live_media

local function read_file(media_id)
  local f = io_open(path_of(media_id), "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

-- Hands the stored file to nginx's static module (sendfile: no copy through Lua) with these headers,
-- unless a fault must shape the answer; the log entry travels in a variable, as ngx.ctx does not.
local function send_file(media_id, headers)
  local ctx = ngx.ctx
  -- nginx's static module answers only GET and HEAD
  if (ctx.fault and faults.ON_ANSWER[ctx.fault.kind]) or ngx.req.get_method() ~= "GET" then
    local data = read_file(media_id)
    if not data then return nil end
    return send.reply(200, headers, data)
  end
  local f = io_open(path_of(media_id), "rb")
  if not f then return nil end
  f:close()
  ngx.var.wxemu_headers = cjson.encode(headers)
  ngx.var.wxemu_ctx = cjson.encode {
    route = ctx.route, errcode = ctx.errcode, media_id = ctx.media_id, type = ctx.type,
    fault = ctx.fault and ctx.fault.kind,
  }
  return ngx.exec("/__storage/" .. media_id)
end

-- header_filter of the /__storage/ location: WeChat's headers instead of the static module's.
function _M.storage_headers()
  local headers = cjson.decode(ngx.var.wxemu_headers or "")
  if not headers then return end
  ngx.header["Last-Modified"] = nil
  ngx.header["Accept-Ranges"] = nil
  for k, v in pairs(headers) do ngx.header[k] = v end
end

local function get_media_id(args)
  local media_id = arg(args.media_id)
  if not media_id and ngx.req.get_method() == "POST" then
    -- tolerated: media_id in a small form or JSON body
    local len = tonumber(ngx.var.content_length or 0) or 0
    if len > 0 and len <= 65536 then
      ngx.req.read_body()
      local body = ngx.req.get_body_data() or ""
      local json = cjson.decode(body)
      media_id = type(json) == "table" and arg(json.media_id) or arg(ngx.req.get_post_args(100).media_id)
    end
  end
  return media_id
end

local function serve_get(hd_voice)
  local ctx = ngx.ctx
  local appid, code, args = authorised()
  if not appid then return wx.fail(code) end
  local media_id = get_media_id(args)
  if not media_id or media_id == "" then return wx.fail(41006) end
  local meta = live_media(media_id, appid)
  if not meta or (hd_voice and meta.type ~= "voice") then return wx.fail(40007) end
  ctx.media_id, ctx.type = media_id, meta.type
  if meta.type == "video" and not hd_voice then
    local host = ngx.var.http_host
    if not host or host:find("[^%w%.%-:%[%]]") then
      host = ngx.var.server_addr .. ":" .. ngx.var.server_port
    end
    -- by hand: cjson would escape every "/"
    return wx.ok('{"video_url":"http://' .. host .. "/cdn/video/" .. media_id .. '.mp4"}', "text/plain")
  end
  local fmt = FORMATS[meta.format]
  local ctype, ext = fmt.content_type, fmt.ext
  if hd_voice then ctype, ext = "voice/speex", "speex" end
  ctx.errcode = 0
  send_file(media_id, {
    ["Content-Type"] = ctype,
    ["Content-disposition"] = 'attachment; filename="' .. media_id .. "." .. ext .. '"',
    ["Cache-Control"] = "no-cache, must-revalidate",
  })
  -- the file is gone (a reset raced us)
  return wx.fail(40007)
end

-- GET (or POST) /cgi-bin/media/get?access_token=&media_id=
function _M.get() return serve_get(false) end

-- GET /cgi-bin/media/get/jssdk?access_token=&media_id=  (voice only, labelled speex)
function _M.jssdk() return serve_get(true) end

-- GET /cdn/video/<media_id>.mp4: the video_url target, no token, served like a CDN.
function _M.video(media_id)
  local meta = live_media(media_id, nil)
  if meta and meta.type == "video" then
    ngx.ctx.media_id = media_id
    send_file(media_id, { ["Content-Type"] = "video/mp4", ["Cache-Control"] = "max-age=259200" })
  end
  ngx.ctx.media_id = nil
  return send.reply(404, { ["Content-Type"] = "text/html" },
    "<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>\n")
end

-- Deletes all metadata and empties the storage folder, whatever the dict still knows: a full dict
-- evicts records, and their files would stay forever (9 GB after 400k uploads). Raises on failure.
function _M.clear()
  dict:flush_all()
  local dir = storage()
  -- a shell command, as Lua cannot list a folder (and Debian's nginx Lua module has no ngx.pipe);
  -- it blocks this worker for the time it takes, which only a reset pays
  local status = os.execute("find '" .. (dir:gsub("'", "'\\''")) .. "' -mindepth 1 -delete")
  if status ~= 0 and status ~= true then error("cannot empty " .. dir, 0) end
end

return _M
