-- The fault suite: every fault the emulator can make, on every operation (upload, get, a video's
-- get, the token fetch), RUNS times each with seeded random counts, delays and rates. Each run:
-- no crash, no hang past the timeouts, the right kind (or success after retries when the fault is
-- retryable and fewer faults than attempts), the emulator saw exactly the attempts reported, no
-- temp file left, an existing destination byte-identical with its mtime, and the next call works.
-- Replay a run with WXMEDIA_FAULT_SEED=<the seed printed>. Then disk faults, and retry discipline
-- around tokens. #once: this is the C core and the Lua policy on loopback, the same code on both
-- interpreters (core_faults_spec and retry_spec run on both), and LuaJIT would double its minute.
local helper = require "helper"
local wxmedia = require "wxmedia"
local store = require "wxmedia.store"
local core = require "wxmedia.core"

local RUNS = 20
local RETRIES = 2
local TIMEOUT = 0.25        -- seconds, the whole transfer (libcurl's CURLOPT_TIMEOUT_MS)

-- A tiny Park-Miller generator: the same numbers on Lua 5.4 and LuaJIT, and untouched by the
-- client's own math.random (its backoff jitter), so that a seed replays the same faults.
local seed = tonumber(os.getenv("WXMEDIA_FAULT_SEED") or "") or (os.time() % 2147483646 + 1)
local state = seed
local function rand(lo, hi)
  state = state * 16807 % 2147483647
  return lo + state % (hi - lo + 1)
end
local function pick(list) return list[rand(1, #list)] end

describe("fault suite #once", function()
  local emu, dir, store_dir
  local messages = {}   -- every failure message, searched for secrets at the end
  -- what every run is counted for (the README's reliability section gives these figures)
  local tally = { runs = 0, failed = 0, destinations_changed = 0, files_left = 0, locks_left = 0,
    secrets_in_messages = 0 }

  setup(function()
    print(("\nfaults_spec: WXMEDIA_FAULT_SEED=%d (set it to replay these runs)"):format(seed))
    emu = helper.start_emulator()
    dir = helper.tmpdir()
    store_dir = helper.tmpdir()
  end)
  teardown(function()
    print(("\nfaults_spec: %d runs under faults (%d failed as expected): %d destinations changed, %d files "
      .. "left, %d locks left, %d secrets or tokens in messages"):format(tally.runs, tally.failed,
      tally.destinations_changed, tally.files_left, tally.locks_left, tally.secrets_in_messages))
    if emu then emu:stop() end
    helper.rmtree(dir)
    helper.rmtree(store_dir)
  end)

  -- The token lock files of the file store that are still held (flock: another open of the file,
  -- even in this process, cannot take it while a lock object holds it).
  local function held_locks()
    local n = 0
    for _, name in ipairs(helper.ls(store_dir)) do
      if name:match("%.lock$") then
        local l = core.lock(store_dir .. "/" .. name, 0)
        if l then l:unlock() else n = n + 1 end
      end
    end
    return n
  end

  -- each client its own file store (a reset emulator forgets every token), whose locks are counted
  local clients = 0
  local function client(extra)
    clients = clients + 1
    local opts = {
      appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url, retries = RETRIES,
      timeout = TIMEOUT, connect_timeout = 2,
      token_store = store.file(("%s/tokens-%d.json"):format(store_dir, clients)),
      sleep = function() end,          -- backoff never waits
    }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(wxmedia.new(opts))
  end

  -- The operations: prepare() makes what the call needs; call() runs it with per-call opts.
  local OPS = {
    upload = { route = "upload", fixture = "image.jpg",
      call = function(c, _, opts) return c:upload("image", helper.fixture("image.jpg"), opts) end },
    get = { route = "get", fixture = "image.jpg", media = "image",
      call = function(c, p, opts) return c:get(p.media_id, p.dest, opts) end },
    video = { route = "video", fixture = "video.mp4", media = "video",
      call = function(c, p, opts) return c:get(p.media_id, p.dest, opts) end },
    token = { route = "stable_token",
      call = function(c, _, opts) return c:token(opts and opts.force) end },
  }

  -- A clean emulator, the client's token (unless the token fetch is under test), the medium to get,
  -- and an existing destination that a failure must leave alone.
  local function prepare(op, c, opname)
    emu:reset()
    local p = { dest = dir .. "/dest.bin" }
    if opname ~= "token" then assert(c:token()) end
    if op.media then
      p.media_id = assert(c:upload(op.media, helper.fixture(op.fixture))).media_id
    end
    helper.write(p.dest, "previous content")
    p.mtime = helper.mtime(p.dest)
    return p
  end

  -- Waits until the emulator has logged `n` attempts on `route`, and returns the route's entries.
  -- A delayed request is logged when it ends, after the client gave up on it.
  local attempts_seen
  local function settled(route, n)
    local entries
    for _ = 1, 100 do
      entries = emu:requests(route)
      if attempts_seen(entries) >= n then break end
      os.execute("sleep 0.05")
    end
    return entries
  end

  -- The attempts the emulator saw: its entries, less libcurl's own re-sends. libcurl re-sends a
  -- request once, on a new connection, when a reused keep-alive connection is dropped before any
  -- answer (reset_request on the 2nd+ request of a connection); that is not a retry of ours.
  function attempts_seen(entries)
    local n = 0
    for _, e in ipairs(entries) do
      if not (e.fault == "reset_request" and e.connection_requests > 1) then n = n + 1 end
    end
    return n
  end

  -- A fault with seeded random parameters; returns the spec and whether a retry can pass it.
  local function random_fault(kind)
    local f = { kind = kind, count = rand(1, RETRIES + 1) }
    if kind == "status" then
      f.status = pick { 429, 500, 502, 503, 504 }
      f.body = pick { "empty", "html" }
    elseif kind == "errcode" then
      f.errcode = pick { -1, 45011, 45009 }      -- busy and per-minute pass later; the daily quota not
    elseif kind == "delay" then
      f.seconds = rand(0, 100) / 200            -- 0 to 0.5 s against a 0.25 s timeout
    elseif kind == "drip" then
      f.rate = rand(20, 400) * 25              -- 500 B/s to 10 KB/s: some finish in time, some not
    end
    return f
  end

  local KINDS = { "status", "errcode", "delay", "drip", "reset_request", "reset_response", "truncate" }

  -- The kind a failure must have under fault f on operation op, and whether a retry may pass it.
  local function expected(opname, f)
    if f.kind == "status" then return "http", true end
    if f.kind == "errcode" then
      -- a CDN's JSON is "not the video", whatever it says; WeChat's codes are its own
      if opname == "video" then return "api", false end
      if f.errcode == 45009 then return opname == "token" and "token" or "api", false end
      return "api", true
    end
    if f.kind == "delay" or f.kind == "drip" then return "timeout", true end
    return "transfer", true
  end

  local function check_run(opname, op, f)
    local retried = 0
    -- the short timeout only where the fault is a matter of time; elsewhere a loaded machine must
    -- not turn a slow answer into a timeout the run did not ask for
    local timed = f.kind == "delay" or f.kind == "drip"
    local timeout = timed and TIMEOUT or 10
    local c = client({ on_retry = function() retried = retried + 1 end, timeout = timeout })
    local p = prepare(op, c, opname)
    emu:fault({ route = op.route, kind = f.kind, count = f.count, status = f.status, body = f.body,
      errcode = f.errcode, seconds = f.seconds, rate = f.rate })
    local t0 = core.now()
    local res, err, details = op.call(c, p)
    local elapsed = core.now() - t0
    -- counted before the asserts below, so the tally is what happened, not what was hoped
    tally.runs = tally.runs + 1
    if not res then
      tally.failed = tally.failed + 1
      if op.media and (helper.read(p.dest) ~= "previous content" or helper.mtime(p.dest) ~= p.mtime) then
        tally.destinations_changed = tally.destinations_changed + 1
      end
      if err:find(helper.SECRET, 1, true) or helper.holds_token(err) then
        tally.secrets_in_messages = tally.secrets_in_messages + 1
      end
    end
    if #helper.ls(dir) ~= 1 then tally.files_left = tally.files_left + 1 end
    tally.locks_left = tally.locks_left + held_locks()
    local attempts = retried + 1
    local what = ("%s under %s (count %d, seed %d)"):format(opname, f.kind, f.count, seed)
    -- no hang: every attempt ends by its timeout (plus a generous margin for a loaded machine)
    assert.is_true(elapsed < (RETRIES + 1) * (timeout + 2), what .. ": took " .. elapsed .. " s")
    local kind, retryable = expected(opname, f)
    if res then
      -- passed: after retries the fault allowed, never with more faults than attempts
      assert.is_true(retryable, what .. ": a non-retryable fault passed")
      assert.is_true(attempts <= RETRIES + 1)
      if f.kind == "reset_request" then
        assert.is_true(attempts <= f.count + 1, what)   -- libcurl's own re-send may eat a fault
      elseif f.kind ~= "delay" and f.kind ~= "drip" then
        assert.equal(f.count + 1, attempts, what)
      end
      if op.media then
        assert.equal(helper.read(helper.fixture(op.fixture)), helper.read(p.dest), what)
      end
    else
      messages[#messages + 1] = err
      assert.equal(kind, details.kind, what .. ": " .. tostring(err))
      assert.equal(attempts, details.attempts, what)
      if retryable then
        if f.kind ~= "delay" and f.kind ~= "drip" then assert.equal(RETRIES + 1, attempts, what) end
      else
        assert.equal(1, attempts, what)
      end
      if op.media then
        assert.equal("previous content", helper.read(p.dest), what)
        assert.equal(p.mtime, helper.mtime(p.dest), what)
      end
    end
    -- the emulator saw exactly the attempts the client reports
    assert.equal(attempts, attempts_seen(settled(op.route, attempts)), what)
    assert.same({ "dest.bin" }, helper.ls(dir), what .. ": a temp file was left")
    -- what is left of the fault's queue is cleared; then the same client works again
    emu:fault({ clear = true })
    local again, aerr = op.call(c, p, op.route == "stable_token" and { force = true } or nil)
    assert.is_truthy(again, what .. ": the call after the fault failed: " .. tostring(aerr))
    if op.media then assert.equal(helper.read(helper.fixture(op.fixture)), helper.read(p.dest)) end
  end

  for _, opname in ipairs { "upload", "get", "video", "token" } do
    for _, fkind in ipairs(KINDS) do
      it(("%s under %s, %d seeded runs"):format(opname, fkind, RUNS), function()
        for _ = 1, RUNS do check_run(opname, OPS[opname], random_fault(fkind)) end
      end)
    end
  end

  it("all runs together: no destination changed, no file or lock left, no secret in a message", function()
    assert.equal(4 * #KINDS * RUNS, tally.runs)
    assert.same({ 0, 0, 0, 0 }, { tally.destinations_changed, tally.files_left, tally.locks_left,
      tally.secrets_in_messages })
  end)

  describe("disk faults on get", function()
    local c, media_id, mnt
    before_each(function()
      emu:reset()
      c = client({ timeout = 20 })
      media_id = assert(c:upload("image", helper.fixture("image.jpg"))).media_id
      mnt = dir .. "/mnt"
      helper.sh("mkdir -p " .. helper.shell_quote(mnt))
    end)
    after_each(function()
      local m = helper.shell_quote(mnt)
      helper.sh("umount " .. m .. " 2>/dev/null; chattr -R -i " .. m .. " 2>/dev/null")
    end)

    local function untouched_after_failure(folder, kind)
      local dest = folder .. "/dest.jpg"
      local before, mtime = helper.read(dest), helper.mtime(dest)
      local names = helper.ls(folder)
      local res, err, details = c:get(media_id, dest)
      assert.is_nil(res)
      messages[#messages + 1] = err
      assert.equal(kind, details.kind, err)
      assert.equal(1, details.attempts)             -- the disk does not heal by waiting
      assert.equal(before, helper.read(dest))
      assert.equal(mtime, helper.mtime(dest))
      assert.same(names, helper.ls(folder))
    end

    -- Root ignores permissions: a read-only bind mount, else the immutable attribute; anyone else
    -- is stopped by the folder's mode.
    it("destination folder read-only", function()
      helper.write(mnt .. "/dest.jpg", "previous content")
      local m = helper.shell_quote(mnt)
      local _, ok
      if helper.is_root() then
        _, ok = helper.sh("mount --bind " .. m .. " " .. m .. " 2>/dev/null && mount -o remount,bind,ro "
          .. m .. " " .. m .. " 2>/dev/null")
        if not ok then
          helper.sh("umount " .. m .. " 2>/dev/null")
          _, ok = helper.sh("chattr +i " .. m .. " 2>/dev/null")
        end
      else
        _, ok = helper.sh("chmod a-w " .. m)
      end
      assert.is_true(ok, "neither a read-only bind mount, chattr +i nor chmod is permitted here")
      untouched_after_failure(mnt, "io")
      helper.sh("chmod u+w " .. m)
    end)

    -- A 64 KiB tmpfs filled up but for a few bytes (mounting one needs root).
    it("disk full", function()
      if not helper.is_root() then
        pending("a full disk is a 64 KiB tmpfs, which only root may mount")
        return
      end
      local m = helper.shell_quote(mnt)
      local _, ok = helper.sh("mount -t tmpfs -o size=64k tmpfs " .. m .. " 2>/dev/null")
      assert.is_true(ok, "mount -t tmpfs is not permitted here")
      helper.write(mnt .. "/dest.jpg", "previous content")
      helper.sh("dd if=/dev/zero of=" .. m .. "/filler bs=1k count=100 2>/dev/null")
      untouched_after_failure(mnt, "io")
    end)

    it("destination is a directory", function()
      local dest = dir .. "/a-directory"
      helper.sh("mkdir -p " .. helper.shell_quote(dest))
      local res, err, details = c:get(media_id, dest)
      assert.is_nil(res)
      assert.equal("input", details.kind, err)   -- refused before any request: the caller's path
      assert.same({}, helper.ls(dest))
    end)
  end)

  describe("retry discipline around tokens", function()
    before_each(function() emu:reset() end)

    it("a permanent fault: exactly 1 + retries requests", function()
      for _, retries in ipairs { 0, 1, 4 } do
        emu:reset()
        local c = client({ retries = retries, timeout = 20 })
        assert(c:token())
        emu:fault{ route = "upload", kind = "status", status = 503, count = 100 }
        local _, _, details = c:upload("image", helper.fixture("image.jpg"))
        assert.equal(1 + retries, details.attempts)
        assert.equal(1 + retries, #emu:requests("upload"))
        emu:fault{ clear = true }
      end
    end)

    it("one token request per rejected token", function()
      for _, code in ipairs { 40001, 40014, 42001 } do
        emu:reset()
        local c = client({ timeout = 20 })
        assert(c:token())
        emu:fault{ route = "upload", kind = "errcode", errcode = code, count = 1 }
        assert(c:upload("image", helper.fixture("image.jpg")))
        assert.equal(2, #emu:requests("stable_token"))     -- the first, and one for the rejection
        assert.equal(2, #emu:requests("upload"))
      end
    end)

    -- 120 uploads over two minutes, every one refused with 40001, on the emulator's clock and the
    -- client's injected now, both moving 1 s per call: one token request at first, then at most one
    -- per 30 s of refusals (stable: a force_refresh, never refused by WeChat's 30 s rule with 45009).
    for _, api in ipairs({ "stable", "classic" }) do
      it(api .. ": a storm of 40001 costs at most one token request per 30 s", function()
        local route = api == "stable" and "stable_token" or "token"
        local t = 1e9
        local c = client({ timeout = 20, retries = 0, token_api = api, now = function() return t end })
        local forced, fetched = {}, 0
        local fetch = c.tokens.fetch
        c.tokens.fetch = function(self, force)
          fetched = fetched + 1
          if force then forced[#forced + 1] = t end
          return fetch(self, force)
        end
        emu:fault{ route = "upload", kind = "errcode", errcode = 40001, count = 300 }
        local calls = 120
        for _ = 1, calls do
          local _, err, details = c:upload("image", helper.fixture("image.jpg"))
          assert.equal("token", details.kind, err)
          messages[#messages + 1] = err
          t = t + 1
          emu:clock(1)
        end
        emu:fault{ clear = true }
        print(("\nfaults_spec: %s 40001 storm: %d refused calls in %d s, %d token requests, %d force_refresh")
          :format(api, calls, calls, fetched, #forced))
        if api == "stable" then
          assert.is_true(#forced >= 1 and #forced <= calls / 30 + 1, "force_refresh: " .. #forced)
          for i = 2, #forced do assert.is_true(forced[i] - forced[i - 1] >= 30) end
        end
        local requests = emu:requests(route)
        assert.equal(fetched, #requests)
        assert.is_true(#requests <= calls / 30 + 2, "token requests: " .. #requests)
        for _, e in ipairs(requests) do assert.are_not.equal(45009, e.errcode) end
        assert.is_true(#emu:requests("upload") <= 2 * calls)   -- each call: the upload, one replay at most
      end)
    end
  end)

  it("no failure message holds a token or the secret", function()
    assert.is_true(#messages > 0)
    for _, m in ipairs(messages) do
      assert.is_nil(m:find(helper.SECRET, 1, true), m)
      assert.is_false(helper.holds_token(m), m)
    end
  end)
end)
