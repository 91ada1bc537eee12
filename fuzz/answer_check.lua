-- What fuzz/answer_fuzz.c checks for every input: WeChat's answer (a status picked by the
-- selector byte, and a body) read by lua/wxmedia/answer.lua never raises, and every result keeps
-- its promises. A failed assert is a crash of the fuzz target.
local answer = require "wxmedia.answer"
local errors = require "wxmedia.errors"

local function is_failure(res, msg, details)
  return res == nil and type(msg) == "string" and type(details) == "table"
    and rawget(getmetatable(errors.KINDS).__index, details.kind) ~= nil
end

local function finite(n)
  return type(n) == "number" and n == n and n ~= math.huge and n ~= -math.huge
end

return function(selector, body)
  local status = selector % 4 == 0 and 503 or 200
  local doc, msg, details = answer.decode("fuzz", { status = status, body = body })
  if doc == nil then
    assert(is_failure(doc, msg, details), "decode: not a failure triple")
    assert(details.errcode == nil or math.type(details.errcode) == "integer",
      "decode: errcode not an integer")
    return
  end
  assert(status == 200 and type(doc) == "table", "decode: a success from a non-200 or a non-object")

  local up, umsg, udetails = answer.upload(selector % 2 == 0 and "thumb" or "image", doc)
  if up then
    assert(answer.is_id(up.media_id), "upload: a media_id that is not one")
    assert(up.created_at == nil or finite(up.created_at), "upload: created_at not finite")
    assert(up.thumb_media_id == nil or answer.is_id(up.thumb_media_id), "upload: a bad thumb_media_id")
  else
    assert(is_failure(up, umsg, udetails) and udetails.kind == "api", "upload: not an api failure")
  end

  local tok, tmsg, tdetails = answer.token("fuzz", doc)
  if tok then
    assert(answer.is_id(tok.access_token), "token: an access_token that is not a token")
    assert(finite(tok.expires_in) and tok.expires_in >= 1 and tok.expires_in <= answer.MAX_EXPIRES_IN,
      "token: a life out of range")
  else
    assert(is_failure(tok, tmsg, tdetails) and tdetails.kind == "api", "token: not an api failure")
  end

  local url = answer.video_url(doc)
  assert(url == nil or (url:match("^[hH][tT][tT][pP][sS]?://") and not url:find("%s")),
    "video_url: not http(s)")
end
