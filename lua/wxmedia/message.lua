-- Customer-service messages (cgi-bin/message/custom/send): a message to a user who wrote to the
-- account in the last 48 hours, by their openid. The shapes of the messages and the checks of a
-- message before anything is sent live here; client:send sends them with the token and retry rules
-- of every call.
local error, pairs, tostring, type = error, pairs, tostring, type
local concat, sort = table.concat, table.sort
local format = string.format
local cjson = require("cjson.safe").new()
local answer = require "wxmedia.answer"

local _M = {}

_M.PATH = "/cgi-bin/message/custom/send"

-- Per type: the fields a message takes (required ones true), and how each is named in WeChat's JSON.
local TYPES = {
  text  = { fields = { content = true }, names = { content = "content" } },
  image = { fields = { media_id = true }, names = { media_id = "media_id" } },
  voice = { fields = { media_id = true }, names = { media_id = "media_id" } },
  video = { fields = { media_id = true, thumb_media_id = false, title = false, description = false },
    names = { media_id = "media_id", thumb_media_id = "thumb_media_id", title = "title",
      description = "description" } },
  music = { fields = { thumb_media_id = true, title = false, description = false, music_url = false,
      hq_music_url = false },
    names = { thumb_media_id = "thumb_media_id", title = "title", description = "description",
      music_url = "musicurl", hq_music_url = "hqmusicurl" } },
}

-- Is s an openid as WeChat makes them (letters, digits, '-' and '_'; 28 characters today)?
function _M.is_openid(s)
  return type(s) == "string" and #s <= 128 and s:match("^[%w_%-]+$") ~= nil
end

local function type_list()
  return concat(_M.types, ", ")
end

-- The request body for `message` to `openid`; raises (at the caller's caller) for a message that
-- cannot be valid: an unknown type, a missing or misspelt field, a media_id that is not one.
function _M.body(openid, message, fname, level)
  level = (level or 1) + 1
  if not _M.is_openid(openid) then
    error(format("bad argument #1 to '%s' (an openid expected, got %s)", fname,
      type(openid) == "string" and ("'" .. openid .. "'") or type(openid)), level)
  end
  if type(message) ~= "table" then
    error(format("bad argument #2 to '%s' (table expected, got %s)", fname, type(message)), level)
  end
  local t = TYPES[message.type]
  if not t then
    error(format("bad argument #2 to '%s' (type must be one of %s, got %s)", fname, type_list(),
      tostring(message.type)), level)
  end
  local part = {}
  for name, value in pairs(message) do
    if name ~= "type" then
      if t.fields[name] == nil then
        error(format("bad argument #2 to '%s' (a %s message has no field '%s')", fname, message.type,
          tostring(name)), level)
      end
      if type(value) ~= "string" then
        error(format("bad argument #2 to '%s' (field '%s': string expected, got %s)", fname, name,
          type(value)), level)
      end
      if name:match("media_id$") and not answer.is_id(value) then
        error(format("bad argument #2 to '%s' (field '%s' is not a media_id)", fname, name), level)
      end
      part[t.names[name]] = value
    end
  end
  for name, required in pairs(t.fields) do
    if required and message[name] == nil then
      error(format("bad argument #2 to '%s' (a %s message needs %s)", fname, message.type, name), level)
    end
  end
  return (cjson.encode({ touser = openid, msgtype = message.type, [message.type] = part }))
end

-- The message types, sorted.
_M.types = {}
for name in pairs(TYPES) do _M.types[#_M.types + 1] = name end
sort(_M.types)

return _M
