-- Passive replies: what an account answers to the message WeChat posts to its callback URL (plain
-- mode). parse() reads the incoming XML with a real XML parser (expat, through lua-expat's lxp.lom,
-- with lxp.threat's limits: no DTD, a small document, shallow nesting); image(), voice(), video(),
-- music() and text() build the reply, To and From swapped, every value in CDATA (a "]]>" inside a
-- value split across two sections) after one check that it is XML text (no control character,
-- well-formed UTF-8); verify() checks the signature WeChat puts on the URL.
-- (The emulator reads and writes the same XML with its own code, on purpose: a test oracle that
-- shared this module would agree with its bugs.)
local error, ipairs, pcall, tostring, type = error, ipairs, pcall, tostring, type
local concat, sort = table.concat, table.sort
local byte, find, format = string.byte, string.find, string.format
local errors = require "wxmedia.errors"
local transport = require "wxmedia.transport"
local utf8 = require "wxmedia.utf8"

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
  return "<![CDATA[" .. (value:gsub("]]>", "]]]]><![CDATA[>")) .. "]]>"
end

-- Where value stops being XML 1.0 text (its Char production: tab, newline, carriage return,
-- U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF, in well-formed UTF-8): the byte and what is
-- there; nil when it is all text. One such byte makes the whole reply XML that expat, and WeChat,
-- refuse: the user would see "this account cannot serve" instead of the reply. (A carriage return
-- is text, but an XML reader turns it into a newline, as it does in any document.)
local function not_xml_text(value)
  local at = find(value, "[^\t\n\r\32-\127]")   -- plain printable ASCII: nothing to decode
  while at do
    local b = byte(value, at)
    if b < 0x80 then
      return at, format("has a control character (U+%04X) at byte %d, which XML cannot carry", b, at)
    end
    local cp, after = utf8.decode(value, at)
    if not cp then return at, format("is not UTF-8 at byte %d", at) end
    if cp == 0xFFFE or cp == 0xFFFF then
      return at, format("has U+%04X at byte %d, which XML cannot carry", cp, at)
    end
    at = find(value, "[^\t\n\r\32-\127]", after)
  end
  return nil
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

local function element(v)
  return "<" .. v[1] .. ">" .. cdata(v[3]) .. "</" .. v[1] .. ">"
end

-- The reply to msg: To and From swapped, its type, then its own values ({ element, the caller's
-- name for it, value or nil }, in order) inside the element `wrap` when given; or nil, message, details
-- (kind input; field, position) when a value is not XML text: every value is checked here, once.
local function build(msg, now, msgtype, wrap, values)
  local head = { { "ToUserName", "msg.FromUserName", msg.FromUserName },
    { "FromUserName", "msg.ToUserName", msg.ToUserName } }
  for _, list in ipairs({ head, values }) do
    for _, v in ipairs(list) do
      local at, problem = not_xml_text(v[3] or "")
      if at then
        return errors.fail("input", format("cannot build the %s reply: %s %s", msgtype, v[2], problem),
          { field = v[2], position = at })
      end
    end
  end
  local parts = { "<xml>", element(head[1]), element(head[2]), "<CreateTime>", format("%d", now or os.time()),
    "</CreateTime>", element({ "MsgType", "type", msgtype }), wrap and ("<" .. wrap .. ">") or "" }
  for _, v in ipairs(values) do
    if v[3] ~= nil then parts[#parts + 1] = element(v) end
  end
  parts[#parts + 1] = wrap and ("</" .. wrap .. ">") or ""
  parts[#parts + 1] = "</xml>"
  return concat(parts)
end

-- Each builder takes the parsed message, the reply's values, and optionally `now` (seconds) last;
-- it returns the XML, or nil, message, details (kind input) for a value XML cannot carry: a control
-- character, bytes that are not UTF-8 (user data, such as a title typed in another encoding).

-- syntax: xml, err, details = reply.text(msg, content [, now])
function _M.text(msg, content, now)
  check_msg(msg, "text")
  check_string(2, "text", content)
  return build(msg, now, "text", nil, { { "Content", "content", content } })
end

local function media_reply(name, tag)
  return function(msg, media_id, now)
    check_msg(msg, name)
    check_string(2, name, media_id)
    return build(msg, now, name, tag, { { "MediaId", "media_id", media_id } })
  end
end

-- syntax: xml, err, details = reply.image(msg, media_id [, now]), reply.voice(msg, media_id [, now])
_M.image = media_reply("image", "Image")
_M.voice = media_reply("voice", "Voice")

-- syntax: xml, err, details = reply.video(msg, media_id [, title [, description [, now]]])
function _M.video(msg, media_id, title, description, now)
  check_msg(msg, "video")
  check_string(2, "video", media_id)
  check_string(3, "video", title, true)
  check_string(4, "video", description, true)
  return build(msg, now, "video", "Video", { { "MediaId", "media_id", media_id },
    { "Title", "title", title }, { "Description", "description", description } })
end

local MUSIC_FIELDS = { "title", "description", "music_url", "hq_music_url" }

-- syntax: xml, err, details = reply.music(msg, { title =, description =, music_url =, hq_music_url =,
--   thumb_media_id = } [, now])     thumb_media_id is required by WeChat
function _M.music(msg, music, now)
  check_msg(msg, "music")
  if type(music) ~= "table" or type(music.thumb_media_id) ~= "string" then
    error("bad argument #2 to 'music' (a table with thumb_media_id expected)", 2)
  end
  for _, name in ipairs(MUSIC_FIELDS) do
    if music[name] ~= nil and type(music[name]) ~= "string" then
      error(format("bad argument #2 to 'music' (field '%s': string expected, got %s)", name,
        type(music[name])), 2)
    end
  end
  return build(msg, now, "music", "Music", { { "Title", "title", music.title },
    { "Description", "description", music.description },
    { "MusicUrl", "music_url", music.music_url },
    { "HQMusicUrl", "hq_music_url", music.hq_music_url },
    { "ThumbMediaId", "thumb_media_id", music.thumb_media_id } })
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
