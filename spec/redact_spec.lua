-- wxmedia.redact, the one redaction: parameter and JSON values of access_token and secret (any
-- case, any prefix such as appsecret), and the literal values the process was given or fetched.
local redact = require "wxmedia.redact"
local errors = require "wxmedia.errors"

describe("wxmedia.redact", function()
  it("removes access_token and secret values in urls, forms and json, whatever their case", function()
    local r = redact.text("GET /cgi-bin/token?appid=wx1&secret=S3CR3T&x=1 ACCESS_TOKEN=TOK123 "
      .. '{"appsecret": "S3CR3T", "access_token":"TOK123"} component_access_token=TOK456#frag')
    assert.is_nil(r:find("S3CR3T", 1, true))
    assert.is_nil(r:find("TOK123", 1, true))
    assert.is_nil(r:find("TOK456", 1, true))
    assert.matches("appid=wx1", r, 1, true)
    assert.matches("secret=REDACTED&x=1", r, 1, true)
    assert.matches('"appsecret": "REDACTED"', r, 1, true)
    assert.matches("#frag", r, 1, true)
  end)

  it("removes a remembered value wherever it appears, not only after a name", function()
    local token = "86_echoed-by-a-hostile-server-" .. tostring(math.random(1e9))
    assert.matches(token, redact.text("errmsg: bad token " .. token), 1, true)
    redact.remember(token)
    assert.equal("errmsg: bad token REDACTED, REDACTED",
      redact.text("errmsg: bad token " .. token .. ", " .. token))
    -- short values would garble every message: never remembered
    redact.remember("abc")
    assert.equal("abc", redact.text("abc"))
  end)

  it("keeps a bounded number of values, the most recent ones", function()
    local first = "first-value-" .. tostring(math.random(1e9))
    redact.remember(first)
    for i = 1, redact.MAX_REMEMBERED do redact.remember(("later-value-%04d"):format(i)) end
    assert.equal(first, redact.text(first))
    assert.equal("REDACTED", redact.text(("later-value-%04d"):format(redact.MAX_REMEMBERED)))
  end)

  it("is applied to every failure's message and errmsg", function()
    local _, msg, details = errors.fail("api", "url ?access_token=TOK123", { errmsg = "secret=S3CR3T" })
    assert.is_nil(msg:find("TOK123", 1, true))
    assert.is_nil(details.errmsg:find("S3CR3T", 1, true))
  end)

  it("leaves values that are not strings alone, and prints any value redacted", function()
    assert.equal(42, redact.text(42))
    local object = setmetatable({}, { __tostring = function() return "token=x access_token=TOK" end })
    assert.equal("token=x access_token=REDACTED", redact.value(object))
  end)
end)
