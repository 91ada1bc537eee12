-- wxmedia.errors: one table of error kinds. Every kind the code can produce (Lua and C) is in it,
-- the README documents exactly these, and an unknown kind is refused where it is made.
local helper = require "helper"
local errors = require "wxmedia.errors"

local function read_all(cmd)
  local out = helper.sh(cmd)
  return out
end

describe("wxmedia.errors kinds", function()
  local root = helper.root

  it("holds every kind the code can produce", function()
    local found = {}
    local function add(kind, where) found[kind] = found[kind] or where end
    local lua_files = read_all("find " .. helper.shell_quote(root .. "/lua") .. " -name '*.lua'")
    for file in lua_files:gmatch("[^\n]+") do
      local text = helper.read(file)
      for kind in text:gmatch('fail%(%s*"([%w_]+)"') do add(kind, file) end
      for kind in text:gmatch('kind%s*=%s*"([%w_]+)"') do add(kind, file) end
      for kind in text:gmatch('kind%s*==%s*"([%w_]+)"') do add(kind, file) end
      -- a backend's failure: return nil, message, "kind"
      for kind in text:gmatch('return nil,[^\n]-,%s*"([%w_]+)"%s*\n') do add(kind, file) end
    end
    local c_files = read_all("ls " .. helper.shell_quote(root .. "/src") .. "/*.c")
    for file in c_files:gmatch("[^\n]+") do
      local text = helper.read(file)
      for kind in text:gmatch('wxm_fail%(L,%s*"([%w_]+)"') do add(kind, file) end
      for kind in text:gmatch('return%s+"([%w_]+)";') do add(kind, file) end
    end
    assert.is_not_nil(next(found))
    for kind, where in pairs(found) do
      assert.is_table(rawget(getmetatable(errors.KINDS).__index, kind),
        ("kind '%s' (made in %s) is not in wxmedia.errors' table"):format(kind, where))
    end
    -- and the command line has an exit status for each
    local cli = require "wxmedia.cli"
    for _, kind in ipairs(errors.kind_names()) do
      if not errors.KINDS[kind].nginx then assert.are_not.equal(1, cli.exit_status(kind), kind) end
    end
  end)

  it("are the README's, row for row", function()
    local readme = helper.read(root .. "/README.md")
    local section = readme:match("\n### Error kinds\n(.-)\n#")
    assert.is_string(section, "no '### Error kinds' section in README.md")
    local documented = {}
    for kind in section:gmatch("\n| `([%w_]+)` |") do documented[#documented + 1] = kind end
    table.sort(documented)
    assert.same(errors.kind_names(), documented)
  end)

  it("refuses a kind that is not in the table", function()
    assert.has_error(function() errors.fail("install", "x") end, "wxmedia: unknown error kind 'install'")
    local _, _, details = errors.fail("timeout", "slow")
    assert.is_true(details.retryable)
    _, _, details = errors.fail("tls", "bad certificate")
    assert.is_false(details.retryable)
  end)

  it("reads an errcode as a server may send it", function()
    assert.equal(40001, errors.errcode(40001))
    assert.equal(40001, errors.errcode(40001.0))
    assert.equal(40001, errors.errcode("40001"))
    assert.equal(-1, errors.errcode("-1"))
    -- (a string of 60 digits was found by fuzz/answer_fuzz.c: it read as a float errcode)
    local bads = { 1.5, 0 / 0, math.huge, -math.huge, "4x", {}, true, 2 ^ 31, string.rep("3", 60) }
    for _, bad in ipairs(bads) do
      assert.is_nil(errors.errcode(bad), tostring(bad))
    end
  end)
end)
