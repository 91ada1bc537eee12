-- Passive replies: what an account answers to the message WeChat posts to its callback URL (plain
-- mode). parse() reads the incoming XML with a real XML parser (expat, through lua-expat's lxp.lom,
-- with lxp.threat's limits: no DTD, a small document, shallow nesting); image(), voice(), video(),
-- music() and text() build the reply, To and From swapped, every value in CDATA (a "]]>" inside a
-- value split across two sections); verify() checks the signature WeChat puts on the URL.
-- (The emulator reads and writes the same XML with its own code, on purpose: a test oracle that
-- shared this module would agree with its bugs.)
local error, ipairs, pcall, tostring, type = error, ipairs, pcall, tostring, type
local concat, sort = table.concat, table.sort
local format = string.format
local errors = require "wxmedia.errors"
local transport = require "wxmedia.transport"

local _M = {}

-- A message WeChat posts is a few hundred bytes; anything far larger is not one.
_M.MAX_MESSAGE = 65536

local function threat_limits()   -- a new table per parse: lxp.threat fills in its defaults
  return { depth = 4, allowDTD = false, document = _M.MAX_MESSAGE, buffer = _M.MAX_MESSAGE,
    maxChildren = 64, maxAttributes = 8, comment = 1024, text = 32768, PIData = 256 }
end

local function text_of(element)
  local parts = {}
  for _, child in ipairs(element) do
    if type(child) == "table" then return nil end
    parts[#parts + 1] = child
  end
  return concat(parts)
end

-- The children of an element as { Name = text, or Name = { ... } for an element holding elements
-- (an event's ScanCodeInfo, a reply's Image), at most `depth` levels; or nil, why.
local function fields_of(element, depth)
  local fields = {}
  for _, child in ipairs(element) do
    if type(child) == "table" then
      local value = text_of(child)
      if value == nil then
        if depth <= 1 then return nil, "nests " .. child.tag .. " too deep" end
        local err
        value, err = fields_of(child, depth - 1)
        if not value then return nil, err end
      end
      if fields[child.tag] ~= nil then return nil, "repeats " .. child.tag end
      fields[child.tag] = value
    elseif child:find("%S") then
      return nil, "has text outside its elements"
    end
  end
  return fields
end

-- syntax: msg, err, details = reply.parse(xml)
-- The message as a table of its elements' texts ({ ToUserName =, FromUserName =, CreateTime =,
-- MsgType =, Content =, MediaId =, MsgId =, Event =, ... }; an element holding elements, such as a
-- reply's Image, as a table of its own), or nil, message, details (kind input) when the body is not
-- WeChat's message XML.
function _M.parse(xml)
  if type(xml) ~= "string" then
    error("bad argument #1 to 'parse' (string expected, got " .. type(xml) .. ")", 2)
  end
  if #xml > _M.MAX_MESSAGE then
    return errors.input(format("the message is %d bytes, more than a WeChat message", #xml))
  end
  local ok, lom = pcall(require, "lxp.lom")
  if not ok then
    return errors.fail("config", "reading WeChat's messages needs lua-expat (Debian: lua-expat): "
      .. tostring(lom))
  end
  local pok, tree, perr = pcall(lom.parse, xml, { threat = threat_limits() })
  if not pok or type(tree) ~= "table" then
    return errors.input("the message is not XML: " .. tostring(pok and perr or tree))
  end
  if tree.tag ~= "xml" then return errors.input("the message's root element is not <xml>") end
  local msg, err = fields_of(tree, 2)
  if not msg then return errors.input("the message " .. err) end
  if not msg.ToUserName or not msg.FromUserName or not msg.MsgType then
    return errors.input("the message lacks ToUserName, FromUserName or MsgType")
  end
  return msg
end

local function cdata(value)
  return "<![CDATA[" .. (tostring(value):gsub("]]>", "]]]]><![CDATA[>")) .. "]]>"
end

local function element(name, value)
  return "<" .. name .. ">" .. cdata(value) .. "</" .. name .. ">"
end

local function check_msg(msg, fname)
  if type(msg) ~= "table" or type(msg.ToUserName) ~= "string" or type(msg.FromUserName) ~= "string" then
    error(format("bad argument #1 to '%s' (the parsed message expected: ToUserName and FromUserName)",
      fname), 3)
  end
end

local function check_string(n, fname, value, optional)
  if (optional and value == nil) or type(value) == "string" then return end
  error(format("bad argument #%d to '%s' (string expected, got %s)", n, fname, type(value)), 3)
end

-- The reply to msg: To and From swapped, its type, then its own elements (already XML).
local function build(msg, now, msgtype, body)
  return concat({ "<xml>", element("ToUserName", msg.FromUserName), element("FromUserName", msg.ToUserName),
    "<CreateTime>", format("%d", now or os.time()), "</CreateTime>", element("MsgType", msgtype), body,
    "</xml>" })
end

-- Each builder takes the parsed message, the reply's values, and optionally `now` (seconds) last.

-- syntax: xml = reply.text(msg, content [, now])
function _M.text(msg, content, now)
  check_msg(msg, "text")
  check_string(2, "text", content)
  return build(msg, now, "text", element("Content", content))
end

local function media_reply(name, tag)
  return function(msg, media_id, now)
    check_msg(msg, name)
    check_string(2, name, media_id)
    return build(msg, now, name, "<" .. tag .. ">" .. element("MediaId", media_id) .. "</" .. tag .. ">")
  end
end

-- syntax: xml = reply.image(msg, media_id [, now]), reply.voice(msg, media_id [, now])
_M.image = media_reply("image", "Image")
_M.voice = media_reply("voice", "Voice")

-- syntax: xml = reply.video(msg, media_id [, title [, description [, now]]])
function _M.video(msg, media_id, title, description, now)
  check_msg(msg, "video")
  check_string(2, "video", media_id)
  check_string(3, "video", title, true)
  check_string(4, "video", description, true)
  local parts = { "<Video>", element("MediaId", media_id) }
  if title then parts[#parts + 1] = element("Title", title) end
  if description then parts[#parts + 1] = element("Description", description) end
  parts[#parts + 1] = "</Video>"
  return build(msg, now, "video", concat(parts))
end

-- syntax: xml = reply.music(msg, { title =, description =, music_url =, hq_music_url =,
--   thumb_media_id = } [, now])     thumb_media_id is required by WeChat
function _M.music(msg, music, now)
  check_msg(msg, "music")
  if type(music) ~= "table" or type(music.thumb_media_id) ~= "string" then
    error("bad argument #2 to 'music' (a table with thumb_media_id expected)", 2)
  end
  local parts = { "<Music>" }
  for _, f in ipairs({ { "Title", music.title }, { "Description", music.description },
      { "MusicUrl", music.music_url }, { "HQMusicUrl", music.hq_music_url } }) do
    if f[2] ~= nil then parts[#parts + 1] = element(f[1], f[2]) end
  end
  parts[#parts + 1] = element("ThumbMediaId", music.thumb_media_id)
  parts[#parts + 1] = "</Music>"
  return build(msg, now, "music", concat(parts))
end

-- WeChat's "I have no reply" answer.
_M.NONE = "success"

-- syntax: ok = reply.verify(token, signature, timestamp, nonce)
-- True when signature is the hex SHA-1 of token, timestamp and nonce, sorted and concatenated
-- (WeChat's signature on the callback URL, for the server check and every message). Compared in
-- time that does not depend on where the strings differ.
function _M.verify(token, signature, timestamp, nonce)
  if type(token) ~= "string" or token == "" then
    error("bad argument #1 to 'verify' (the callback token expected)", 2)
  end
  if type(signature) ~= "string" or type(timestamp) ~= "string" or type(nonce) ~= "string" then
    return false
  end
  local parts = { token, timestamp, nonce }
  sort(parts)
  local expected, err = transport.sha1(concat(parts))
  if not expected then error("wxmedia.reply: " .. tostring(err), 2) end
  signature = signature:lower()
  if #signature ~= #expected then return false end
  local diff = 0
  for i = 1, #expected do
    if signature:byte(i) ~= expected:byte(i) then diff = diff + 1 end
  end
  return diff == 0
end

return _M
