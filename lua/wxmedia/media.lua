-- Media types and formats: what WeChat accepts for each type, the default size limits, the format
-- judged from a file's leading bytes, and the filename to send. WeChat reads the type from the
-- part's filename extension (40005) and refuses RFC 2231 names (41005), so the name we send is plain
-- ASCII and carries the detected format's extension, whatever the file is called on disk.
local error, io_open, ipairs, pairs, tostring, type = error, io.open, ipairs, pairs, tostring, type
local byte, format, concat, sort = string.byte, string.format, table.concat, table.sort
local errors = require "wxmedia.errors"

local _M = {}

local KB, MB = 1024, 1024 * 1024

-- Formats: the name people know, the extension we send, the extensions a file may already carry,
-- the part's Content-Type.
_M.formats = {
  jpeg = { label = "JPEG", ext = "jpg", exts = { jpg = true, jpeg = true }, content_type = "image/jpeg" },
  png  = { label = "PNG", ext = "png", exts = { png = true }, content_type = "image/png" },
  gif  = { label = "GIF", ext = "gif", exts = { gif = true }, content_type = "image/gif" },
  amr  = { label = "AMR", ext = "amr", exts = { amr = true }, content_type = "audio/amr" },
  mp3  = { label = "MP3", ext = "mp3", exts = { mp3 = true }, content_type = "audio/mpeg" },
  mp4  = { label = "MP4", ext = "mp4", exts = { mp4 = true }, content_type = "video/mp4" },
}

-- Types: the formats each accepts (in the order messages list them). Limits are today's documented
-- ones (../shared/wechat-api.md); they are data, overridable per client and per call.
_M.types = {
  image = { formats = { "jpeg", "png", "gif" } },
  voice = { formats = { "amr", "mp3" } },
  video = { formats = { "mp4" } },
  thumb = { formats = { "jpeg" } },
}

-- The extension of a file WeChat sends with this Content-Type (the command line names downloads by
-- it), for the types above and the HD voice of cgi-bin/media/get/jssdk.
local EXT_BY_CONTENT_TYPE = {
  ["image/jpeg"] = "jpg", ["image/jpg"] = "jpg", ["image/png"] = "png", ["image/gif"] = "gif",
  ["audio/amr"] = "amr", ["audio/mpeg"] = "mp3", ["audio/mp3"] = "mp3", ["voice/speex"] = "speex",
  ["video/mp4"] = "mp4", ["video/mpeg4"] = "mp4",
}

-- "jpg" for "image/jpeg; charset=x", or nil for a type we do not know.
function _M.extension_for(content_type)
  if type(content_type) ~= "string" then return nil end
  return EXT_BY_CONTENT_TYPE[content_type:lower():match("^[^;%s]+")]
end

_M.DEFAULT_LIMITS = { image = 10 * MB, voice = 2 * MB, video = 10 * MB, thumb = 64 * KB }

-- Raises, at the caller's caller, for limits that are not { type = bytes > 0 } of known types.
function _M.check_limits(limits, fname, level)
  if limits == nil then return end
  for name, bytes in pairs(limits) do
    if not _M.types[name] then
      error(format("bad option 'limits' to '%s' (unknown media type '%s')", fname, tostring(name)), level + 1)
    end
    if type(bytes) ~= "number" or bytes ~= bytes or bytes <= 0 or bytes == math.huge then
      error(format("bad option 'limits' to '%s' (%s: a number of bytes > 0 expected, got %s)", fname, name,
        type(bytes) == "number" and tostring(bytes) or type(bytes)), level + 1)
    end
  end
end

-- How many leading bytes sniff() needs.
_M.SNIFF_BYTES = 16

local function is_mp3_frame_sync(head)
  local b0, b1 = byte(head, 1, 2)
  if b0 ~= 0xFF or not b1 or b1 < 0xE0 then return false end
  local version = (b1 - b1 % 8) / 8 % 4      -- bits 4-3: 01 is reserved
  local layer = (b1 - b1 % 2) / 2 % 4         -- bits 2-1: 00 is reserved
  return version ~= 1 and layer ~= 0
end

-- The format of a file from its first bytes, or nil when it is none WeChat accepts.
function _M.sniff(head)
  if type(head) ~= "string" then return nil end
  if head:sub(1, 3) == "\255\216\255" then return "jpeg" end
  if head:sub(1, 8) == "\137PNG\r\n\26\n" then return "png" end
  if head:sub(1, 6) == "GIF87a" or head:sub(1, 6) == "GIF89a" then return "gif" end
  if head:sub(1, 6) == "#!AMR\n" or head:sub(1, 9) == "#!AMR-WB\n" then return "amr" end
  if head:sub(5, 8) == "ftyp" then return "mp4" end
  if head:sub(1, 3) == "ID3" or is_mp3_frame_sync(head) then return "mp3" end
  return nil
end

-- The last component of a path, trailing slashes ignored ("a/b/" -> "b", "/" -> ""). Both
-- patterns are anchored: an unanchored one such as "([^/]*)/*$" is tried again at every position
-- of the path, which cost 40k instructions for a path of 45 bytes at every upload.
local SLASH = byte("/")
function _M.basename(path)
  if byte(path, -1) == SLASH then path = path:match("^(.-)/*$") end
  return path:match("^.*/(.*)$") or path
end

-- The filename to send: the file's own name when it is printable ASCII (no quote or backslash) and
-- already ends in one of the format's extensions, else "media.<ext>".
local function filename(path, fmt)
  local f = _M.formats[fmt]
  local name = _M.basename(path)
  local ext = name:match("%.([^.]+)$")
  if ext and f.exts[ext:lower()] and name:match("^[ -~]+$") and not name:find('["\\]') then
    return name
  end
  return "media." .. f.ext
end

-- filename() is a pure function of the path and the format, asked at every upload, mostly for the
-- same paths again and again; its five string patterns cost 12k instructions a call, 5% of an
-- upload (BENCHMARKS.md). So its answers are kept, FILENAMES_MAX at most (then forgotten at once).
local FILENAMES_MAX = 256
local filenames, filenames_count = {}, 0

function _M.filename(path, fmt)
  local known = filenames[fmt]
  local name = known and known[path]
  if name then return name end
  name = filename(path, fmt)
  if filenames_count >= FILENAMES_MAX then filenames, filenames_count = {}, 0 end
  known = filenames[fmt]
  if not known then
    known = {}
    filenames[fmt] = known
  end
  known[path], filenames_count = name, filenames_count + 1
  return name
end

-- Size and kind of a path through plain io, for when no stat function is given (the client passes
-- the C core's). A directory opens on Linux but cannot be read.
local function io_stat(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err, "input" end
  local ok, rerr, code = f:read(0)
  if ok == nil and rerr then
    f:close()
    if code == 21 then return { type = "directory", size = 0 } end
    return nil, rerr, "input"
  end
  local size = f:seek("end")
  f:close()
  return { type = "file", size = size }
end

local function type_names()
  local names = {}
  for name in pairs(_M.types) do names[#names + 1] = name end
  sort(names)
  return names
end

-- "A, B or C".
local function one_of(list)
  if #list == 1 then return list[1] end
  return concat(list, ", ", 1, #list - 1) .. " or " .. list[#list]
end

-- "11 MB (11534340 bytes)": a size as people read it, with the exact figure.
function _M.size_text(n)
  local text
  if n >= MB then
    text = format("%.1f MB", n / MB):gsub("%.0 MB", " MB")
  elseif n >= KB then
    text = format("%.1f KB", n / KB):gsub("%.0 KB", " KB")
  else
    return format("%d bytes", n)
  end
  return format("%s (%d bytes)", text, n)
end

-- The message of a type that is not one: the closest name, and the list.
function _M.unknown_type(mtype)
  local names = type_names()
  local hint = type(mtype) == "string" and require("wxmedia.config").suggest(mtype:lower(), names)
  return format("unknown media type '%s'%s; use %s", tostring(mtype),
    hint and (" (did you mean '" .. hint .. "'?)") or "", one_of(names))
end

-- The first of judge's checks, for a source whose first bytes are not read yet: the type is known
-- and size is within 1 byte and its limit. true, or nil, message, details (kind "input").
function _M.check_size(mtype, label, size, limits)
  if not _M.types[mtype] then
    return errors.input(format("cannot upload %s: %s", label, _M.unknown_type(mtype)))
  end
  if size == 0 then return errors.input(format("cannot upload %s: it is empty", label)) end
  local limit = (limits and limits[mtype]) or _M.DEFAULT_LIMITS[mtype]
  if size > limit then
    return errors.input(format("cannot upload %s: it is %s; the limit for %s is %s", label,
      _M.size_text(size), mtype, _M.size_text(limit)))
  end
  return true
end

-- The checks of every upload, whatever it reads (a file, bytes in memory, a reader): the type is
-- known, there are bytes and no more than the type's limit, and the first ones are of a format the
-- type accepts. label names what is read in messages ("photo.jpg", "the data 'chart.png'").
-- Returns { type, format, size, filename = the name to send (from `name`), content_type }, or nil,
-- message, details (kind "input").
function _M.judge(mtype, label, name, size, head, limits)
  local t = _M.types[mtype]
  local ok, msg, details = _M.check_size(mtype, label, size, limits)
  if not ok then return nil, msg, details end
  local fmt = _M.sniff(head)
  local allowed = false
  for _, fname in ipairs(t.formats) do
    if fname == fmt then allowed = true end
  end
  if not allowed then
    local takes = {}
    for i, fname in ipairs(t.formats) do takes[i] = _M.formats[fname].label end
    return errors.input(format("cannot upload %s as %s: it is %s; %s takes %s", label, mtype,
      fmt and ("a " .. _M.formats[fmt].label .. " file") or "not a format WeChat accepts", mtype,
      one_of(takes)))
  end
  return { type = mtype, format = fmt, size = size, filename = _M.filename(name, fmt),
    content_type = _M.formats[fmt].content_type }
end

-- Checks a file before anything is sent. opts: { limits = {type = bytes}, stat = function(path, n) }.
-- Returns { path, type, format, filename, content_type, size, mtime (when the stat function gives one) }
-- or nil, message, details (kind "input").
function _M.check(mtype, path, opts)
  opts = opts or {}
  if not _M.types[mtype] then
    return errors.input(format("cannot upload %s: %s", path, _M.unknown_type(mtype)))
  end
  -- The C core's stat also returns the first SNIFF_BYTES bytes (head); other stat functions ignore
  -- the second argument, and then the file is read here.
  local st, serr = (opts.stat or io_stat)(path, _M.SNIFF_BYTES)
  if not st then
    -- the core says "cannot access <path>: <why>": the path is named once, here
    local why = tostring(serr)
    local a, b = why:find("cannot access " .. path .. ": ", 1, true)
    if a == 1 then why = why:sub(b + 1) end
    return errors.input(format("cannot upload %s: %s", path, why))
  end
  if st.type == "directory" then
    return errors.input(format("cannot upload %s: it is a directory, not a file", path))
  elseif st.type ~= "file" then
    return errors.input(format("cannot upload %s: it is not a regular file", path))
  end
  if st.size == 0 then return _M.judge(mtype, path, path, 0) end
  local head, oerr = st.head, nil
  if type(head) ~= "string" then
    local f
    f, oerr = io_open(path, "rb")
    head = f and f:read(_M.SNIFF_BYTES)
    if f then f:close() end
  end
  if not head then
    return errors.input(format("cannot upload %s: cannot read it: %s", path, tostring(oerr or "read failed")))
  end
  local file, msg, details = _M.judge(mtype, path, path, st.size, head, opts.limits)
  if not file then return nil, msg, details end
  file.path, file.mtime = path, st.mtime
  return file
end

return _M
