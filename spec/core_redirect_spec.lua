-- fetch follows a CDN's redirects, and checks every hop against private addresses (src/transfer.c:
-- each connection's address, before its socket exists). On the test machine every server is on
-- loopback, a private address that the first hop alone would already be refused for: so the fetches
-- run in a network namespace of their own (spec/fixtures/redirect/netns.lua, under `unshare -rn`),
-- where loopback also carries a public address to start from and the private targets, each with an
-- nginx listening that counts what reaches it ("no connection" is counted, not assumed).
local cjson = require "cjson"
local helper = require "helper"

local q = helper.shell_quote

describe("wxmedia.core fetch and a redirect to a private address", function()
  local results

  setup(function()
    if not select(2, helper.sh("unshare -rn true 2>/dev/null")) then return end
    local build = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
    local path = helper.root .. "/spec/?.lua;" .. helper.root .. "/lua/?.lua;;"
    local out = helper.sh(("LUA_PATH=%s LUA_CPATH=%s unshare -rn %s %s 2>&1"):format(q(path), q(build),
      helper.lua, q(helper.root .. "/spec/fixtures/redirect/netns.lua")))
    local decoded = cjson.decode(out:match("{.*}%s*$") or "null")
    assert(type(decoded) == "table", "the namespace's fetches failed: " .. out)
    results = decoded.cases
  end)

  local function result(name)
    if not results then
      pending("no network namespace here (unshare -rn failed): cannot start from a public address")
    end
    return assert(results[name], name)
  end

  local function blocked(name, address)
    local r = result(name)
    assert.is_false(r.ok, name .. " was fetched")
    assert.equal("blocked", r.kind, r.err)
    assert.equal("the URL redirects to a private address (" .. address .. "); fetch needs allow_private"
      .. " for it", r.err)
    assert.equal("previous content", r.dest)
    assert.is_true(r.dest_mtime_same)
    assert.same({ "dest" }, r.listing)           -- no temp file beside it
    assert.same({ private = 0, metadata = 0 }, r.target_requests)
  end

  it("refuses a redirect to a private address: kind blocked, nothing sent to it, destination untouched",
    function()
    blocked("to_private", "10.255.255.1")
  end)

  it("refuses a redirect to the metadata address", function()
    blocked("to_metadata", "169.254.169.254")
  end)

  it("refuses a private address at the second redirect too", function()
    blocked("via_public", "10.255.255.1")
  end)

  it("refuses it in a multi as in a session", function()
    blocked("multi_to_private", "10.255.255.1")
  end)

  it("while a redirect to a public address is followed (the start was allowed)", function()
    local r = result("to_public")
    assert.is_true(r.ok, r.err)
    assert.is_true(r.file)
    assert.equal("FILE FROM 198.51.100.7", r.dest)
    assert.same({ "dest" }, r.listing)
  end)

  it("and the private target answers when allow_private is set (what the guard stood in front of)", function()
    local r = result("to_private_allowed")
    assert.is_true(r.ok, r.err)
    assert.equal("FILE FROM 10.255.255.1", r.dest)
    assert.same({ private = 1, metadata = 0 }, r.target_requests)
  end)
end)
