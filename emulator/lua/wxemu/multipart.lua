-- A small, strict, streaming multipart/form-data reader on the request socket: part headers are read
-- line by line with a size cap, part bodies in chunks, so no body is ever held whole in memory.
local ngx = ngx
local string_lower, string_match, string_find = string.lower, string.match, string.find

local _M = {}
local mt = { __index = _M }

local MAX_HEADER_LINE = 8192
local MAX_HEADERS = 16384
local MAX_PREAMBLE = 65536
local TIMEOUT = 10000   -- ms without a byte from the client

-- The boundary of a multipart/form-data Content-Type, or nil.
function _M.boundary(content_type)
  if type(content_type) ~= "string" then return nil end
  local ct = string_lower(content_type)
  if not string_find(ct, "^%s*multipart/form%-data%s*;") then return nil end
  local pos = string_find(ct, ";%s*boundary=")
  if not pos then return nil end
  -- take the value from the original text: boundaries are case-sensitive
  local rest = content_type:sub(pos):match("^;%s*[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=(.*)$")
  local b = rest:match('^"([^"]*)"') or rest:match("^([^;%s]*)")
  if not b or #b < 1 or #b > 200 then return nil end
  return b
end

-- Reads the request body as multipart with `boundary`; returns the reader, or nil, message.
function _M.new(boundary)
  local sock, err = ngx.req.socket()
  if not sock then return nil, "no body: " .. tostring(err) end
  sock:settimeout(TIMEOUT)
  return setmetatable({
    sock = sock,
    to_delimiter = sock:receiveuntil("\r\n--" .. boundary),
    to_eol = sock:receiveuntil("\r\n"),
    boundary = boundary,
    started = false,
    done = false,
  }, mt)
end

-- Reads up to a pattern through `iter`, at most `max` bytes; returns the text or nil, message.
local function read_upto(iter, max, what)
  local parts, n = {}, 0
  while true do
    local data, err = iter(4096)
    if err then return nil, what .. ": " .. err end
    if not data then return table.concat(parts) end
    n = n + #data
    if n > max then return nil, what .. " too long" end
    parts[#parts + 1] = data
  end
end

-- After a delimiter: "--" ends the body, otherwise the rest of the line (transport padding) is skipped.
function _M.after_delimiter(self)
  local two, err = self.sock:receive(2)
  if not two then return nil, "body ends inside a delimiter: " .. err end
  if two == "--" then
    self.done = true
    return true
  end
  if two ~= "\r\n" then
    local rest, rerr = read_upto(self.to_eol, 256, "delimiter line")
    if not rest then return nil, rerr end
    if not string_match(two .. rest, "^[ \t]*$") then return nil, "junk after a delimiter" end
  end
  return true
end

local function param(value, name)
  -- quoted first (it may hold ';'), then a bare token; name= must not match inside filename=
  local v = string_match(value, ";%s*" .. name .. '%s*=%s*"([^"]*)"')
  if v then return v end
  return string_match(value, ";%s*" .. name .. "%s*=%s*([^;%s\"]+)")
end

-- The next part's headers: { name=, filename=, filename_star=bool, content_type= }, or false at
-- the end of the body, or nil, message.
function _M.next_part(self)
  if self.done then return false end
  if not self.started then
    -- the first delimiter may be the very first line (no CRLF before it)
    self.started = true
    local first = self.sock:receiveuntil("--" .. self.boundary)
    local _, err = read_upto(first, MAX_PREAMBLE, "preamble")
    if err then return nil, err end
    local ok, derr = self:after_delimiter()
    if not ok then return nil, derr end
    if self.done then return false end
  end
  local part, total = {}, 0
  while true do
    local line, err = read_upto(self.to_eol, MAX_HEADER_LINE, "part header")
    if not line then return nil, err end
    if line == "" then break end
    total = total + #line
    if total > MAX_HEADERS then return nil, "part headers too long" end
    local name, value = string_match(line, "^([^:%s]+)%s*:%s*(.*)$")
    if not name then return nil, "bad part header line" end
    name = string_lower(name)
    if name == "content-disposition" then
      if not string_find(string_lower(value), "^form%-data") then return nil, "part is not form-data" end
      local v = ";" .. value:gsub("^[^;]*", "")
      part.name = param(v, "name")
      part.filename = param(v, "filename")
      part.filename_star = string_find(v, ";%s*filename%*%s*=") ~= nil
    elseif name == "content-type" then
      part.content_type = value
    end
  end
  if not part.name then return nil, "part without a name" end
  return part
end

-- The next chunk of the current part's body (at most `size` bytes), or false at the part's end
-- (then the reader is past the delimiter), or nil, message.
function _M.read(self, size)
  while true do
    local data, err = self.to_delimiter(size)
    if err then return nil, "body ends inside a part: " .. err end
    if not data then
      local ok, derr = self:after_delimiter()
      if not ok then return nil, derr end
      return false
    end
    if #data > 0 then return data end
  end
end

-- Reads and drops the rest of the current part, keeping at most `keep` bytes of it; returns them.
function _M.collect(self, keep)
  local parts, n = {}, 0
  while true do
    local data, err = self:read(65536)
    if data == nil then return nil, err end
    if data == false then return table.concat(parts) end
    if n < keep then
      parts[#parts + 1] = data:sub(1, keep - n)
      n = n + #data
    end
  end
end

return _M
