-- WeChat's message XML: the messages the emulator posts to an account's callback (written here: one
-- flat element per field, text in CDATA), and the passive replies it gets back (read by expat through
-- lua-expat's lxp.lom, with lxp.threat's limits: no DTD, a small document, shallow nesting).
local lom = require "lxp.lom"

local type, ipairs, pcall, tostring = type, ipairs, pcall, tostring
local table_concat = table.concat

local _M = {}

_M.MAX_REPLY = 65536

-- A CDATA section holding `value`; a "]]>" inside is split across two sections.
local function cdata(value)
  return "<![CDATA[" .. (value:gsub("]]>", "]]]]><![CDATA[>")) .. "]]>"
end

-- The XML of a message: `fields` is a list of { name, value [, "plain"] }; plain values (numbers:
-- CreateTime, MsgId) go without CDATA, as in WeChat's own messages.
function _M.build(fields)
  local out = { "<xml>" }
  for _, f in ipairs(fields) do
    local name, value = f[1], tostring(f[2])
    out[#out + 1] = "<" .. name .. ">" .. (f[3] == "plain" and value or cdata(value)) .. "</" .. name .. ">"
  end
  out[#out + 1] = "</xml>"
  return table_concat(out)
end

-- lxp.threat fills in its defaults into the table it is given: a new one per parse.
local function limits()
  return {
    depth = 4, allowDTD = false, document = _M.MAX_REPLY, buffer = _M.MAX_REPLY,
    maxChildren = 64, maxAttributes = 8, comment = 1024, text = 32768, PIData = 256,
  }
end

-- The text of an element that holds only text (CDATA included), or nil when it holds elements.
local function text_of(element)
  local parts = {}
  for _, child in ipairs(element) do
    if type(child) == "table" then return nil end
    parts[#parts + 1] = child
  end
  return table_concat(parts)
end

-- Text between elements may only be blank.
local function blank(node)
  return type(node) == "string" and not node:find("%S")
end

-- The children of `element` as { Name = text or { Name = text } }, two levels deep, or nil, message.
local function fields_of(element, deeper)
  local fields = {}
  for _, child in ipairs(element) do
    if type(child) == "table" then
      if fields[child.tag] ~= nil then return nil, "repeated element " .. child.tag end
      local value = text_of(child)
      if value == nil then
        if not deeper then return nil, "element " .. child.tag .. " nested too deep" end
        local err
        value, err = fields_of(child, false)
        if not value then return nil, err end
      end
      fields[child.tag] = value
    elseif not blank(child) then
      return nil, "text beside the elements of " .. element.tag
    end
  end
  return fields
end

-- A passive reply's fields: { ToUserName = "…", MsgType = "…", Image = { MediaId = "…" }, … }, or
-- nil, message when the body is not such an XML document.
function _M.parse(text)
  if #text > _M.MAX_REPLY then return nil, "over " .. _M.MAX_REPLY .. " bytes" end
  local ok, tree, err = pcall(lom.parse, text, { threat = limits() })
  if not ok then return nil, tostring(tree) end
  if not tree then return nil, "not XML: " .. tostring(err) end
  if tree.tag ~= "xml" then return nil, "the root element is " .. tostring(tree.tag) .. ", not xml" end
  return fields_of(tree, true)
end

return _M
