-- The small load run (bench/load.lua is the big one): 300 upload+get pairs through one client
-- against the emulator with 1% of requests faulted. Every success comes back byte-identical, every
-- failure has a kind, and memory stays flat: RSS at the end within 1 MB of RSS after the first 100.
local helper = require "helper"
local wxmedia = require "wxmedia"
local store = require "wxmedia.store"

local PAIRS, WARMUP = 300, 100
local KINDS = { input = true, api = true, token = true, http = true, connect = true, timeout = true,
  tls = true, transfer = true, io = true, aborted = true }

local function rss_kb()
  local status = helper.read("/proc/self/status") or ""
  return tonumber(status:match("VmRSS:%s*(%d+)"))
end

describe("load, small", function()
  local emu, dir
  setup(function()
    emu = helper.start_emulator()
    dir = helper.tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)

  it(PAIRS .. " upload+get pairs, 1% faults: byte-identical, kinds, flat RSS", function()
    local c = assert(wxmedia.new{ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      retries = 0, timeout = 10, token_store = store.memory(), sleep = function() end })
    local files = { "image.jpg", "image.png", "image.gif", "voice.amr", "voice.mp3" }
    local types = { "image", "image", "image", "voice", "voice" }
    local bytes = {}
    for i, f in ipairs(files) do bytes[i] = helper.read(helper.fixture(f)) end
    -- 1% of the 2 x PAIRS requests, of every fault kind the client meets quickly
    local faults = { "status", "errcode", "reset_response", "truncate" }
    local state = 12345
    local ok_pairs, failures, rss_after_warmup = 0, 0, nil
    for n = 1, PAIRS do
      state = state * 16807 % 2147483647
      if state % 50 == 0 then
        emu:fault{ route = state % 2 == 0 and "upload" or "get", kind = faults[state % #faults + 1] }
      end
      local i = n % #files + 1
      local dest = dir .. "/out"
      local res, err, details = c:upload(types[i], helper.fixture(files[i]))
      if res then res, err, details = c:get(res.media_id, dest) end
      if res then
        assert.equal(bytes[i], helper.read(dest))
        ok_pairs = ok_pairs + 1
      else
        assert.is_true(KINDS[details.kind] == true, tostring(err))
        assert.is_string(err)
        failures = failures + 1
      end
      if n == WARMUP then
        collectgarbage()
        rss_after_warmup = rss_kb()
      end
    end
    collectgarbage()
    local rss_end = rss_kb()
    print(("\nload_spec: %d pairs, %d ok, %d failed, RSS %d kB after %d, %d kB at the end")
      :format(PAIRS, ok_pairs, failures, rss_after_warmup, WARMUP, rss_end))
    assert.equal(PAIRS, ok_pairs + failures)
    assert.is_true(ok_pairs >= PAIRS * 0.9)
    local grew = rss_end - rss_after_warmup
    assert.is_true(grew <= 1024, "RSS grew by " .. grew .. " kB")
    assert.same({ "out" }, helper.ls(dir))
  end)
end)
