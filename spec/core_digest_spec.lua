-- wxmedia.core hashes from OpenSSL's libcrypto: sha256 and sha1 of bytes (NUL bytes included),
-- sha256_file in constant memory; each checked against the standard vectors and the coreutils.
local helper = require "helper"
local core = require "wxmedia.core"

local q = helper.shell_quote

describe("wxmedia.core digests", function()
  local dir

  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmtree(dir) end)

  -- sha256sum / sha1sum of these exact bytes
  local function coreutils(tool, bytes)
    local path = helper.write(dir .. "/bytes", bytes)
    return (helper.sh(tool .. " " .. q(path)):match("^(%x+)"))
  end

  it("know the standard test vectors (FIPS 180-4)", function()
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", core.sha1(""))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", core.sha1("abc"))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      core.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
  end)

  it("hash every byte of a string, NUL bytes and high bytes included", function()
    local samples = { "\0", "a\0b", ("\0"):rep(1000), "\255\254\0\1",
      helper.read(helper.fixture("image.png")) }
    for _, bytes in ipairs(samples) do
      assert.equal(coreutils("sha256sum", bytes), core.sha256(bytes))
      assert.equal(coreutils("sha1sum", bytes), core.sha1(bytes))
    end
    assert.are_not.equal(core.sha256("a\0b"), core.sha256("a"))
    assert.are_not.equal(core.sha1("a\0b"), core.sha1("a"))
  end)

  it("hash a 10 MB string as sha256sum does, and agree with sha256_file", function()
    local bytes = ("\1\2\3wxmedia\0"):rep(1024 * 1024):sub(1, 10 * 1024 * 1024)
    local path = helper.write(dir .. "/big", bytes)
    local expected = (helper.sh("sha256sum " .. q(path)):match("^(%x+)"))
    assert.equal(expected, core.sha256(bytes))
    assert.equal(expected, core.sha256_file(path))
  end)

  it("give WeChat's callback signature: the SHA-1 of token, timestamp and nonce sorted", function()
    local parts = { "wxtoken", "1700000000", "123456789" }
    table.sort(parts)
    local expected = coreutils("sha1sum", table.concat(parts))
    assert.equal(expected, core.sha1("1234567891700000000wxtoken"))
    assert.matches("^%x+$", expected)
    assert.equal(40, #expected)
  end)

  it("raise for what is not a string, as Lua's own functions do", function()
    assert.has_error(function() core.sha256() end,
      "bad argument #1 to 'sha256' (string expected, got no value)")
    assert.has_error(function() core.sha1({}) end, "bad argument #1 to 'sha1' (string expected, got table)")
  end)

  it("sha256_file reads a file that is larger than its buffer, and refuses a NUL in the path", function()
    local bytes = ("0123456789abcdef"):rep(4097)           -- past the 16 KiB read buffer
    local path = helper.write(dir .. "/f", bytes)
    assert.equal(core.sha256(bytes), core.sha256_file(path))
    local h, err, kind = core.sha256_file(path .. "\0.jpg")
    assert.is_nil(h)
    assert.equal("input", kind)
    assert.equal("the path holds a NUL byte", err)
  end)
end)
