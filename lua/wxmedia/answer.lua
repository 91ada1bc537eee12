-- WeChat's JSON answers, read as hostile input: whatever a server sends (not JSON, JSON that is not
-- an object, errcodes as strings or floats, null, NaN, 1e400, a 5 MB media_id), a call gets a
-- result or nil, message, details, never a raised error. fuzz/answer_fuzz.c drives these functions
-- with arbitrary bytes.
local tonumber, type = tonumber, type
local byte, find, format, sub = string.byte, string.find, string.format, string.sub
local math_huge = math.huge
local cjson = require("cjson.safe").new()
local errors = require "wxmedia.errors"

local _M = {}

local BOM = "\239\187\191"    -- UTF-8's byte order mark, which some servers put before JSON

-- A media_id is 64 characters of [A-Za-z0-9_-] today; WeChat documents no limit, so allow some room
-- but not megabytes (nothing longer is ever stored, printed or sent back).
_M.MAX_ID = 512
-- access_token lifetimes WeChat may give: 7200 s, or what remains of it (stable_token).
_M.MAX_EXPIRES_IN = 86400

-- Ranges, not %w: the same characters in any locale, and half the instructions (%w calls isalnum for
-- every character: 7.7k instructions for a media_id of 64, at every upload).
local function is_id(v)
  return type(v) == "string" and #v > 0 and #v <= _M.MAX_ID and find(v, "^[A-Za-z0-9_%-]+$") ~= nil
end
_M.is_id = is_id

-- The body as a JSON object, or nil. A UTF-8 BOM and blanks before it are tolerated.
local function object(body)
  if type(body) ~= "string" then return nil end
  if byte(body, 1) == 239 and sub(body, 1, 3) == BOM then body = sub(body, 4) end
  local doc = cjson.decode(body)
  if type(doc) ~= "table" then return nil end
  return doc
end

-- res: { status =, body = } as the transport answers a call kept in memory. what names the call.
-- Returns the decoded object when it is WeChat's success, else nil, message, details.
function _M.decode(what, res)
  local doc = object(res.body)
  local code = doc and errors.errcode(doc.errcode)
  local errmsg = doc and type(doc.errmsg) == "string" and doc.errmsg or nil
  if res.status ~= 200 then return errors.http(what, res.status, code, errmsg) end
  if not doc then
    return errors.fail("api", what .. ": WeChat's answer is not a JSON object", { status = res.status })
  end
  if doc.errcode ~= nil and not code and doc.errcode ~= cjson.null then
    return errors.fail("api", what .. ": WeChat's answer holds an errcode that is not a number",
      { status = res.status })
  end
  if code and code ~= 0 then return errors.api(what, code, errmsg, res.status) end
  return doc
end

-- An upload's result from its answer: { type, media_id, created_at [, thumb_media_id] }.
function _M.upload(mtype, doc)
  local id = doc.media_id
  if id == nil or id == cjson.null then id = doc.thumb_media_id end
  if not is_id(id) then
    return errors.fail("api", "upload: WeChat's answer holds no usable media_id", { status = 200 })
  end
  local created_at = tonumber(doc.created_at)
  if created_at and (created_at ~= created_at or created_at == math_huge or created_at == -math_huge) then
    created_at = nil
  end
  local res = { type = mtype, media_id = id, created_at = created_at }
  if mtype == "thumb" then
    res.thumb_media_id = is_id(doc.thumb_media_id) and doc.thumb_media_id or id
  end
  return res
end

-- A token answer as { access_token =, expires_in = (seconds, 1 to MAX_EXPIRES_IN) }, or nil, message,
-- details.
function _M.token(what, doc)
  local tok = doc.access_token
  if type(tok) ~= "string" or tok == "" or #tok > _M.MAX_ID or not tok:match("^[%w_%-]+$") then
    return errors.fail("api", what .. ": WeChat's answer holds no usable access_token", { status = 200 })
  end
  local expires_in = tonumber(doc.expires_in)
  if not expires_in or expires_in ~= expires_in or expires_in < 1 or expires_in > _M.MAX_EXPIRES_IN then
    return errors.fail("api", format("%s: WeChat's answer gives the access_token a life of %s seconds, "
      .. "not 1 to %d", what, type(doc.expires_in) == "number" and format("%.17g", doc.expires_in)
      or "no number of", _M.MAX_EXPIRES_IN), { status = 200 })
  end
  return { access_token = tok, expires_in = expires_in }
end

-- The video_url of a get's JSON answer, or nil.
function _M.video_url(doc)
  local url = doc.video_url
  if type(url) == "string" and url:match("^[hH][tT][tT][pP][sS]?://[^%s]+$") and #url <= 8192 then
    return url
  end
  return nil
end

return _M
