-- A small, strict, streaming multipart/form-data reader. The body comes from the request socket, read
-- in pieces of at most 64 KB, into a window the reader scans with plain string.find for the delimiter,
-- so no part is ever held whole in memory. A body without Content-Length never gets here (a chunked
-- one is answered 412 by wxemu.router, as WeChat's gateway does).
local ngx = ngx
local string_lower, string_match = string.lower, string.match
local string_find, string_sub = string.find, string.sub
local math_min, tonumber, type, setmetatable = math.min, tonumber, type, setmetatable

local _M = {}
local mt = { __index = _M }

local PIECE = 65536
local MAX_HEADER_LINE = 8192
local MAX_HEADERS = 16384
local MAX_PREAMBLE = 65536
local TIMEOUT = 10000   -- ms without a byte from the client

-- The boundary of a multipart/form-data Content-Type, or nil.
function _M.boundary(content_type)
  if type(content_type) ~= "string" then return nil end
  if not string_find(string_lower(content_type), "^%s*multipart/form%-data%s*;") then return nil end
  -- the value from the original text: boundaries are case-sensitive
  local rest = string_match(content_type, ";%s*[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]%s*=(.*)$")
  if not rest then return nil end
  local b = string_match(rest, '^"([^"]*)"') or string_match(rest, "^([^;%s]*)")
  if not b or #b < 1 or #b > 200 then return nil end
  return b
end

-- The source: function(n) returning 1..n bytes, or nil, "eof" at the end, or nil, message.
local function socket_source(sock, length)
  local remaining = length
  return function(n)
    if remaining <= 0 then return nil, "eof" end
    local want = math_min(n, remaining)
    local data, err = sock:receive(want)
    if not data then return nil, err end
    remaining = remaining - want
    return data
  end
end

-- A reader of the request body as multipart with `boundary`, or nil, message when there is no body.
function _M.new(boundary)
  local length = tonumber(ngx.var.content_length or "")
  if not length or length == 0 then return nil, "no body" end
  local sock, err = ngx.req.socket()
  if not sock then return nil, "no body: " .. tostring(err) end
  sock:settimeout(TIMEOUT)
  return setmetatable({
    source = socket_source(sock, length),
    -- a CRLF in front makes the first delimiter look like every other one
    buf = "\r\n",
    pos = 1,
    eof = false,
    delimiter = "\r\n--" .. boundary,
    started = false,
    done = false,
  }, mt)
end

-- Appends the next piece of the source to the window; false at the end, or nil, message.
local function fill(self)
  if self.eof then return false end
  local data, err = self.source(PIECE)
  if not data then
    if err == "eof" then
      self.eof = true
      return false
    end
    return nil, "cannot read the body: " .. tostring(err)
  end
  self.buf = string_sub(self.buf, self.pos) .. data
  self.pos = 1
  return true
end

-- The next line (without its CRLF), at most `max` bytes; or nil, message.
local function line(self, max)
  while true do
    local s = string_find(self.buf, "\r\n", self.pos, true)
    if s then
      if s - self.pos > max then return nil, "line too long" end
      local text = string_sub(self.buf, self.pos, s - 1)
      self.pos = s + 2
      return text
    end
    if #self.buf - self.pos > max then return nil, "line too long" end
    local ok, err = fill(self)
    if not ok then return nil, err or "body ends inside a line" end
  end
end

-- After a delimiter: "--" ends the body, otherwise the rest of its line must be blank.
local function after_delimiter(self)
  while #self.buf - self.pos + 1 < 2 do
    local ok, err = fill(self)
    if not ok then return nil, err or "body ends inside a delimiter" end
  end
  if string_sub(self.buf, self.pos, self.pos + 1) == "--" then
    self.done = true
    return true
  end
  local rest, err = line(self, 256)
  if not rest then return nil, err end
  if not string_find(rest, "^[ \t]*$") then return nil, "junk after a delimiter" end
  return true
end

-- The next piece (at most `max` bytes) of the current part's body, or false at its end (the reader
-- is then past the delimiter), or nil, message.
function _M.read(self, max)
  local delimiter = self.delimiter
  while true do
    local buf, pos = self.buf, self.pos
    local s = string_find(buf, delimiter, pos, true)
    if s == pos then
      self.pos = pos + #delimiter
      local ok, err = after_delimiter(self)
      if not ok then return nil, err end
      return false
    end
    -- without a delimiter in sight, all but its length - 1 last bytes are part data
    local safe = s and s - 1 or #buf - #delimiter + 1
    if safe >= pos then
      local stop = math_min(safe, pos + max - 1)
      self.pos = stop + 1
      return string_sub(buf, pos, stop)
    end
    local ok, err = fill(self)
    if not ok then return nil, err or "body ends inside a part" end
  end
end

local function param(value, name)
  -- quoted first (it may hold ';'), then a bare token; ";%s*name" cannot match inside "filename"
  local v = string_match(value, ";%s*" .. name .. '%s*=%s*"([^"]*)"')
  if v then return v end
  return string_match(value, ";%s*" .. name .. "%s*=%s*([^;%s\"]+)")
end

-- The next part's headers: { name=, filename=, filename_star=bool, content_type= }, or false at
-- the end of the body, or nil, message.
function _M.next_part(self)
  if self.done then return false end
  if not self.started then
    self.started = true
    local skipped = 0
    while true do
      local piece, err = self:read(PIECE)
      if piece == nil then return nil, err end
      if piece == false then break end
      skipped = skipped + #piece
      if skipped > MAX_PREAMBLE then return nil, "preamble too long" end
    end
    if self.done then return false end
  end
  local part, total = {}, 0
  while true do
    local text, err = line(self, MAX_HEADER_LINE)
    if not text then return nil, "part header: " .. err end
    if text == "" then break end
    total = total + #text
    if total > MAX_HEADERS then return nil, "part headers too long" end
    local name, value = string_match(text, "^([^:%s]+)%s*:%s*(.*)$")
    if not name then return nil, "bad part header line" end
    name = string_lower(name)
    if name == "content-disposition" then
      if not string_find(string_lower(value), "^form%-data") then return nil, "part is not form-data" end
      local params = ";" .. string_match(value, "^[^;]*(.*)$")
      part.name = param(params, "name")
      part.filename = param(params, "filename")
      part.filename_star = string_find(params, ";%s*filename%*%s*=") ~= nil
    elseif name == "content-type" then
      part.content_type = value
    end
  end
  if not part.name then return nil, "part without a name" end
  return part
end

-- Reads and drops what is left of the body. nginx does not know how much of it the request socket
-- read: an answer given early (a refused upload) would otherwise leave the rest on a keep-alive
-- connection, to be parsed as the next request. False when more than `cap` bytes are left or the
-- client stalls (then the connection must be closed).
function _M.drain(self, cap)
  local dropped = 0
  while true do
    local data, err = self.source(PIECE)
    if not data then return err == "eof" end
    dropped = dropped + #data
    if dropped > cap then return false end
  end
end

-- Reads the rest of the current part, keeping at most `keep` bytes of it; returns them.
function _M.collect(self, keep)
  local parts, n = {}, 0
  while true do
    local data, err = self:read(PIECE)
    if data == nil then return nil, err end
    if data == false then return table.concat(parts) end
    if n < keep then
      parts[#parts + 1] = string_sub(data, 1, keep - n)
      n = n + #data
    end
  end
end

return _M
