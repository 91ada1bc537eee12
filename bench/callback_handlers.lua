-- luacheck: std +ngx_lua
-- The handlers of benchmark 7's nginx (loaded inside nginx, on LuaJIT): an account's callback that
-- replies to each message with an image whose upload the emulator delays, written two ways:
--   /callback  wxmedia.ngx.callback (budget 4 s): the passive reply when the media_id is ready in
--              time, else "success" and a customer-service message;
--   /inline    what a handler does without it: verify, parse, media_id, reply, all in the request,
--              so it answers when the upload is over, however long that takes.
-- Each message's image is the same 64 KiB JPEG with the message's MsgId appended (still a JPEG to
-- WeChat's sniffing), so that every message uploads: no reuse hides the upload's time.
local cjson = require "cjson.safe"
local reply = require "wxmedia.reply"
local wxngx = require "wxmedia.ngx"

local ngx = ngx
local _M = {}

local config, client, callback, jpeg

local function image_of(msg)
  return { data = jpeg .. "\0" .. tostring(msg.MsgId), filename = "reply.jpg" }
end

-- init_by_lua: the client and the callback.
function _M.init(json)
  config = assert(cjson.decode(json))
  local f = assert(io.open(config.path, "rb"))
  jpeg = f:read("*a")
  f:close()
  client = assert(wxngx.new(config.client))
  callback = wxngx.callback({ token = config.token, client = client, dedup_dict = "messages",
    on_message = function(msg)
      local image = image_of(msg)
      return { type = "image", data = image.data, filename = image.filename }
    end })
end

function _M.callback()
  callback:handle()
end

function _M.inline()
  local args = ngx.req.get_uri_args()
  if not reply.verify(config.token, args.signature, args.timestamp, args.nonce) then return ngx.exit(403) end
  ngx.req.read_body()
  local msg = assert(reply.parse(ngx.req.get_body_data() or ""))
  local res, err = client:media_id("image", image_of(msg))
  if not res then
    ngx.log(ngx.ERR, "inline reply: ", err)
    return ngx.print(reply.NONE)
  end
  ngx.header["Content-Type"] = "text/xml"
  ngx.print(reply.image(msg, res.media_id))
end

-- The token fetched before the clock starts.
function _M.warm()
  assert(client:token())
  ngx.say("ok")
end

return _M
