-- What an upload reads: upload, check and media_id take the same four forms:
--   "photo.jpg"                                     a path
--   { data = bytes [, filename = "chart.png"] }     bytes in memory
--   { file = f [, size = N] [, filename = …] }      an open Lua file handle: the bytes from its
--                                                   position to its end (size needed for a pipe)
--   { file = reader, size = N [, filename = …] }    a function(n) giving the next bytes: a string,
--                                                   nil or "" at the end, nil and a message on error
-- The last three take name = what messages call the bytes ("the request body"), when "the data",
-- "the file handle" or "the reader" would not tell the person who reads them where the bytes came from.
-- Whatever the form, the bytes are checked as a file's are (media.judge) and sent with their length,
-- never chunked. A seekable handle is read from the same position at every attempt. A reader (or a
-- pipe) is read once: check keeps the first bytes it read, to send them first, and a failure once
-- the rest began to flow is final (no retry, no replay with a new token). A table check returned
-- is taken for its type without a second check; a table with a string `path` (check's table of a
-- file) is that path.
local error, io_type, pairs, require, setmetatable, tostring, type =
  error, io.type, pairs, require, setmetatable, tostring, type
local format, concat = string.format, table.concat
local errors = require "wxmedia.errors"
local media = require "wxmedia.media"

local _M = {}

local FIELDS = { data = "string", file = "file handle or function", size = "number", filename = "string",
  name = "string" }

-- The tables check returned, by weak key (a checked table lives as long as its caller keeps it):
-- checked[t] = { form = "data"|"seekable"|"once", what = its name in "cannot upload <what>",
--   label = its name in the checks' messages, start = a seekable handle's position,
--   read = a one-shot source's own read, head = what check read of it, consumed = its own reads
--   began, so nothing can be sent again, failure = { message, details } of the attempt that did }.
local checked = setmetatable({}, { __mode = "k" })
-- The caller's tables of one-shot sources that a check already read from.
local read_once = setmetatable({}, { __mode = "k" })

-- A table check made that is not in `checked` is a path's (media.check's own, or the caller's copy
-- of one): it is taken as its path, as upload always took it. No state is made for it (a table less
-- at every upload of a path).

local function bad(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), level + 1)
end

local function field_names()
  local names = {}
  for k in pairs(FIELDS) do names[#names + 1] = k end
  return names
end

local function shape_of(x)
  local io_shape = io_type(x)
  if io_shape == "file" then return "file handle" end
  return io_shape or type(x)
end

-- What is wrong with v as an upload's source (a path, a table check returned, or one of the tables
-- above with fields of the right types), as the text of a bad argument; nil when nothing is.
function _M.problem(v)
  local t = type(v)
  if t == "string" or (t == "table" and (checked[v] or type(v.path) == "string")) then return nil end
  if t ~= "table" then
    return format("string or table expected, got %s", v == nil and "no value" or t)
  end
  for k, x in pairs(v) do
    local expected = FIELDS[k]
    if not expected then
      local hint = type(k) == "string" and require("wxmedia.config").suggest(k, field_names())
      return format("unknown field '%s'%s", tostring(k), hint and ("; did you mean '" .. hint .. "'?") or "")
    end
    local got = k == "file" and shape_of(x) or type(x)
    if not (expected == got or (k == "file" and (got == "file handle" or got == "function"))) then
      return format("field '%s': %s expected, got %s", k, expected, got)
    end
  end
  if v.name == "" then return "field 'name' is empty" end
  if (v.data == nil) == (v.file == nil) then
    return "a table with data = bytes, or with file = a file handle or a reader, expected"
  end
  local size = v.size
  if size ~= nil then
    if v.data ~= nil then return "field 'size' is for a file handle or a reader" end
    if size ~= size or size < 0 or size >= 2 ^ 53 or size % 1 ~= 0 then
      return "field 'size': a whole number of bytes expected"
    end
  elseif type(v.file) == "function" then
    return "field 'size' expected: a reader declares its length"
  elseif v.file and not v.file:seek() then
    return "field 'size' expected: the file handle cannot seek (a pipe?)"
  end
  return nil
end

-- Raises, at the caller's caller, what problem finds in v.
function _M.check_arg(n, fname, v, level)
  if type(v) == "string" then return end     -- a path: the common case, without a call more
  local msg = _M.problem(v)
  if msg then bad(n, fname, msg, (level or 1) + 1) end
end

-- The open file handle a source reads from (one a batch must not share between items: a handle
-- has one position), or nil.
function _M.handle(v)
  local f = type(v) == "table" and v.file
  return io_type(f) == "file" and f or nil
end

-- Reads from read until `want` bytes are had or it ends: the bytes, or nil, message.
local function read_upto(read, want, label)
  local parts, got = {}, 0
  while got < want do
    local chunk, err = read(want - got)
    if chunk == nil and err ~= nil then
      return nil, format("cannot read from %s: %s", label, tostring(err))
    end
    if chunk == nil or chunk == "" then break end
    if type(chunk) ~= "string" then
      error(format("bad reader for 'upload' (string or nil expected, got %s)", type(chunk)), 0)
    end
    parts[#parts + 1] = chunk
    got = got + #chunk
  end
  return concat(parts)
end

local function reader_of(f)
  return function(n) return f:read(n) end
end

local function judged(mtype, v, size, head, limits, state)
  local file, msg, details = media.judge(mtype, state.label, v.filename or "", size, head, limits)
  if not file then return nil, msg, details end
  file.data, file.file = v.data, v.file
  checked[file] = state
  return file
end

-- syntax: file, err, details = source.check(type, v [, opts])   (opts.limits)
-- upload's checks, on any form: media.judge's table (plus path and mtime for a path, data or file
-- for the others), which upload takes without checking again; or nil, message, details (input).
-- A reader's (or a pipe's) first bytes are read here and kept, to be sent first.
function _M.check(mtype, v, opts)
  local st = type(v) == "table" and checked[v]
  if st then
    if v.type == mtype then return v end
    return errors.input(format("cannot upload %s as %s: it was checked as %s", st.label, tostring(mtype),
      v.type))
  end
  if type(v) == "table" and type(v.path) == "string" then v = v.path end
  if type(v) == "string" then return media.check(mtype, v, opts) end
  local limits = opts and opts.limits
  local shape = v.data and "data" or shape_of(v.file) == "file handle" and "file handle" or "reader"
  local state = { what = v.name or v.filename or ("the " .. shape),
    label = v.name or ("the " .. shape .. (v.filename and (" '" .. v.filename .. "'") or "")) }
  if shape == "data" then
    state.form = "data"
    return judged(mtype, v, #v.data, v.data:sub(1, media.SNIFF_BYTES), limits, state)
  end
  local read = v.file
  if shape == "file handle" then
    local f = v.file
    local start = f:seek()
    if start then
      local size = f:seek("end") - start
      f:seek("set", start)
      if v.size and v.size ~= size then
        return errors.input(format("cannot upload %s: it holds %d bytes after its position, not the %d given",
          state.label, size, v.size))
      end
      local ok, msg, details = media.check_size(mtype, state.label, size, limits)
      if not ok then return nil, msg, details end
      local head, err = read_upto(reader_of(f), media.SNIFF_BYTES, state.label)
      f:seek("set", start)
      if not head then return errors.input("cannot upload " .. state.label .. ": " .. err) end
      state.form, state.start = "seekable", start
      return judged(mtype, v, size, head, limits, state)
    end
    read = reader_of(f)
  end
  -- read once: what check reads is kept for the upload
  local ok, msg, details = media.check_size(mtype, state.label, v.size, limits)
  if not ok then return nil, msg, details end
  if read_once[v] then
    return errors.input(format("cannot upload %s: it was read by an earlier check: upload the table that "
      .. "check returned", state.label))
  end
  read_once[v] = true
  local head, err = read_upto(read, media.SNIFF_BYTES, state.label)
  if not head then return errors.input("cannot upload " .. state.label .. ": " .. err) end
  if #head < v.size and #head < media.SNIFF_BYTES then
    return errors.input(format("cannot upload %s: it ended after %d of its %d bytes", state.label, #head,
      v.size))
  end
  state.form, state.read, state.head = "once", read, head
  return judged(mtype, v, v.size, head, limits, state)
end

-- Is v a table check returned for this type (or one of a path, made for it by media.check)?
function _M.checked(v, mtype)
  return type(v) == "table" and v.type == mtype and (checked[v] ~= nil or type(v.path) == "string")
end

-- The name of a checked source in "cannot upload <name>".
function _M.name(file)
  local st = checked[file]
  return st and st.what or file.path
end

-- Can an exchange about v be made again (a replay with a new token)? Not when v is a one-shot
-- source whose own reads began.
function _M.replayable(v)
  local st = type(v) == "table" and checked[v]
  return not (st and st.consumed)
end

-- What the transport's upload takes for a checked source, for one attempt: a path, { data = bytes },
-- or { reader = function(n), size = N } reading from the start; or nil, message, details when a
-- one-shot source cannot be read again.
function _M.body(file)
  local st = checked[file]
  if not st then return file.path end
  if st.form == "data" then return { data = file.data } end
  if st.form == "seekable" then
    local ok, err = file.file:seek("set", st.start)
    if not ok then return errors.input(format("cannot upload %s: %s", st.what, tostring(err))) end
    return { reader = reader_of(file.file), size = file.size }
  end
  if st.consumed then
    if st.failure then return nil, st.failure[1], st.failure[2] end
    return errors.input(format("cannot upload %s: %s was read once and cannot be sent again", st.what,
      st.label))
  end
  local head, read = st.head, st.read
  return { size = file.size, reader = function(n)
    if head then
      local h = head
      head = nil
      return h
    end
    st.consumed = true
    return read(n)
  end }
end

-- A failed attempt. For a one-shot source whose own reads began, the failure is final (not retried,
-- not replayed: the message says so when it would have been) and is kept for a later call.
-- Returns nil, message, details.
function _M.failed(file, msg, details)
  local st = checked[file]
  if st and st.consumed and type(details) == "table" then
    if details.retryable or errors.is_token_errcode(details.errcode) then
      msg = format("%s; %s was read once: it is not sent again", msg, st.label)
    end
    details.retryable = false
    st.failure = { msg, details }
  end
  return nil, msg, details
end

-- Is file a checked one-shot source (a reader, a pipe), which can be read only once?
function _M.once(file)
  local st = checked[file]
  return st ~= nil and st.form == "once"
end

-- syntax: file, send = source.ready(type, v, check_opts, spool, progress)
-- What an upload sends, from any form: v checked (unless it is check's table for the type), read
-- into memory when spool says so ("all": a handle or a reader, for a backend in another Lua VM;
-- "once": a one-shot source only), and the core's options for it. A path's checked table is itself
-- those options (filename, content_type, size): a table less per call; bytes get a table of their
-- own (theirs would carry the bytes twice into an nginx worker thread). Or nil, message, details.
function _M.ready(mtype, v, check_opts, spool, progress)
  local file, msg, details = v
  if not _M.checked(file, mtype) then
    file, msg, details = _M.check(mtype, file, check_opts)
    if not file then return nil, msg, details end
  end
  if spool == "all" or (spool == "once" and _M.once(file)) then
    file, msg, details = _M.spool(file)
    if not file then return nil, msg, details end
  end
  local send = (progress or not file.path) and { filename = file.filename, content_type = file.content_type,
    progress = progress, size = file.size } or file
  return file, send
end

-- A checked one-shot source or seekable handle read whole into memory, as a checked data table (for
-- media_id, which hashes the very bytes it sends); any other checked table as it is. Memory is
-- bounded by the type's limit, which check enforced on the size. Or nil, message, details.
function _M.spool(file)
  local st = checked[file]
  if not st or (st.form ~= "once" and st.form ~= "seekable") then return file end
  local body, msg, details = _M.body(file)
  if not body then return nil, msg, details end
  local what = "cannot upload " .. st.what
  local data, err = read_upto(body.reader, file.size + 1, st.label)
  if not data then return errors.input(what .. ": " .. err) end
  if #data < file.size then
    return errors.input(format("%s: %s ended after %d of its %d bytes", what, st.label, #data, file.size))
  elseif #data > file.size then
    return errors.input(format("%s: %s gave more than its %d bytes", what, st.label, file.size))
  end
  local copy = {}
  for k, x in pairs(file) do copy[k] = x end
  copy.data, copy.file = data, nil
  checked[copy] = { form = "data", what = st.what, label = st.label }
  return copy
end

return _M
