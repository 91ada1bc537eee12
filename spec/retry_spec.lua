-- wxmedia.retry and wxmedia.errors: which failures are retried, the backoff, and the messages.
local retry = require "wxmedia.retry"
local errors = require "wxmedia.errors"

describe("wxmedia.retry", function()
  describe("delay", function()
    it("doubles the window up to max, and jitters over all of it", function()
      local b = { base = 0.5, max = 3 }
      local top = function() return 0.999999 end
      assert.near(0.5, retry.delay(1, b, top), 1e-5)
      assert.near(1.0, retry.delay(2, b, top), 1e-5)
      assert.near(2.0, retry.delay(3, b, top), 1e-5)
      assert.near(3.0, retry.delay(4, b, top), 1e-5)
      assert.near(3.0, retry.delay(10, b, top), 1e-5)
      assert.are.equal(0, retry.delay(3, b, function() return 0 end))
      assert.near(0.25, retry.delay(1, b, function() return 0.5 end), 1e-9)
    end)

    it("defaults to base 0.2 and max 5", function()
      for n = 1, 12 do
        local d = retry.delay(n)
        assert.is_true(d >= 0 and d <= math.min(5, 0.2 * 2 ^ (n - 1)))
      end
    end)
  end)

  describe("run", function()
    local function failing(kind, fields)
      local calls = 0
      return function()
        calls = calls + 1
        return errors.fail(kind, "failure " .. calls, fields)
      end, function() return calls end
    end

    it("retries a retryable failure up to the limit and reports the attempts", function()
      local fn, calls = failing("connect")
      local waits, seen = {}, {}
      local res, msg, details = retry.run({
        retries = 2, sleep = function(s) waits[#waits + 1] = s end,
        on_retry = function(attempt, m, d, delay) seen[#seen + 1] = { attempt, m, d.kind, delay } end,
      }, fn)
      assert.is_nil(res)
      assert.are.equal("failure 3", msg)
      assert.are.equal(3, details.attempts)
      assert.are.equal(3, calls())
      assert.are.equal(2, #waits)
      assert.are.same({ 1, "failure 1", "connect", waits[1] }, seen[1])
      assert.are.same({ 2, "failure 2", "connect", waits[2] }, seen[2])
    end)

    it("never retries what cannot pass", function()
      local fn, calls = failing("input")
      local slept = false
      local _, _, details = retry.run({ retries = 5, sleep = function() slept = true end }, fn)
      assert.are.equal(1, calls())
      assert.are.equal(1, details.attempts)
      assert.is_false(slept)
    end)

    it("returns the first success", function()
      local n = 0
      local res = retry.run({ retries = 3, sleep = function() end }, function()
        n = n + 1
        if n < 3 then return errors.fail("timeout", "slow") end
        return { ok = n }
      end)
      assert.are.same({ ok = 3 }, res)
    end)

    it("with retries = 0 makes one attempt", function()
      local fn, calls = failing("transfer")
      retry.run({ retries = 0, sleep = function() error("must not wait") end }, fn)
      assert.are.equal(1, calls())
    end)
  end)
end)

describe("wxmedia.errors", function()
  it("classifies errcodes", function()
    local function d(code) return select(3, errors.api("upload", code, "x")) end
    for _, code in ipairs({ -1, 45011 }) do
      assert.is_true(d(code).retryable, code)
      assert.are.equal("api", d(code).kind)
    end
    for _, code in ipairs({ 40004, 40005, 40006, 40007, 41005, 41006, 44001, 45009, 48001 }) do
      assert.is_false(d(code).retryable, code)
      assert.are.equal("api", d(code).kind)
    end
    for _, code in ipairs({ 40013, 40125, 40164 }) do
      assert.is_false(d(code).retryable, code)
      assert.are.equal("token", d(code).kind)
    end
    for _, code in ipairs({ 40001, 40014, 42001, 41001 }) do
      assert.is_true(errors.is_token_errcode(code))
    end
    assert.is_false(errors.is_token_errcode(40007))
    assert.are.equal(40005, d(40005).errcode)
  end)

  it("says the daily quota for 45009 and names the whitelist and ip for 40164", function()
    local _, msg = errors.api("upload", 45009, "reach max api daily quota limit rid: 1-2-3")
    assert.matches("daily API quota", msg)
    _, msg = errors.api("stable_token", 40164,
      "invalid ip 118.190.42.90 ipv6 ::ffff:118.190.42.90, not in whitelist rid: 60196b9b-1-2")
    assert.matches("IP 118%.190%.42%.90 is not in the account's IP whitelist", msg)
  end)

  it("classifies http statuses", function()
    assert.is_true(select(3, errors.http("get", 503)).retryable)
    assert.is_true(select(3, errors.http("get", 429)).retryable)
    assert.is_false(select(3, errors.http("get", 404)).retryable)
    assert.are.equal("http", select(3, errors.http("get", 500)).kind)
  end)
end)
