-- Benchmark 5: the emulator alone, with wrk (a C load generator that costs almost nothing per
-- request) straight at it, to show how much of benchmarks 1 and 2 is the server's own time.
-- Per repetition, side by side with the reference it is compared with:
--   * 64 KB uploads, one connection (sequential, as benchmark 1): the emulator's rate / the C loop's
--     rate. Above 1 the server answers faster than the fastest client asks; its inverse is the
--     share of each C-loop upload spent in the server and the loopback.
--   * 64 KB uploads, two connections: the emulator's capacity on this machine / the C loop's rate.
--   * 10 MB get and 10 MB upload, one connection: the curl command's time / the emulator's time per
--     request with wrk (above 1: curl takes longer than the server needs; about 1: the transfer
--     itself, server and loopback, is the whole cost for any client).
local lib = require "lib"

local M = {}

local function wrk(args, url, env)
  local out = lib.must(("%s wrk %s %s 2>&1"):format(env or "", args, lib.q(url)), "wrk")
  local rate = tonumber(out:match("Requests/sec:%s+([%d.]+)"))
  if not rate or rate <= 0 then error("wrk measured nothing: " .. lib.redact(out), 0) end
  if out:find("Non%-2xx") then error("wrk got errors: " .. lib.redact(out), 0) end
  return rate
end

local function curl_time(args)
  local out = lib.must("curl -s -S -f -w '\\n%{time_total}\\n' " .. args, "curl")
  return lib.number_of(out, "curl")
end

function M.run(ctx)
  local emu, inputs = ctx.emulator, ctx.inputs
  local seconds = math.floor(lib.env_number("BENCH_WRK_SECONDS", 2))
  local n = math.floor(lib.env_number("BENCH_UPLOADS", 1000))
  local script = lib.q(lib.root .. "/bench/wrk_upload.lua")
  local v = { up1 = {}, up2 = {}, get = {}, upload = {} }
  local abs = { up1 = {}, get = {}, upload = {} }
  for rep = 1, lib.REPS do
    emu:reset()
    local tok = emu:token()
    local url = emu:upload_url(tok, "image")
    local env64 = "WRK_FILE=" .. lib.q(inputs.jpeg64k)
    local cloop = n / lib.measure(("%s %s %s %d photo.jpg"):format(lib.q(ctx.c_loop), lib.q(url),
      lib.q(inputs.jpeg64k), n), "c_loop")
    local one = wrk(("-t1 -c1 -d%ds -s %s"):format(seconds, script), url, env64)
    emu:reset()
    tok = emu:token()
    url = emu:upload_url(tok, "image")
    local two = wrk(("-t2 -c2 -d%ds -s %s"):format(seconds, script), url, env64)
    v.up1[rep], v.up2[rep], abs.up1[rep] = one / cloop, two / cloop, one

    -- 10 MB: a get of a stored image, and an upload of the video
    emu:reset()
    tok = emu:token()
    local id = emu:upload_with_curl(tok, "image", inputs.jpeg_large, "photo.jpg")
    local get_url = emu:get_url(tok, id)
    local curl_get = curl_time("-o /dev/null " .. lib.q(get_url))
    local wrk_get = 1 / wrk("-t1 -c1 -d1s", get_url)
    local up_url = emu:upload_url(tok, "video")
    local video_part = lib.q("media=@" .. inputs.mp4_large .. ";filename=video.mp4")
    local curl_up = curl_time(("-o /dev/null -F %s %s"):format(video_part, lib.q(up_url)))
    local wrk_up = 1 / wrk("-t1 -c1 -d1s -s " .. script, up_url,
      "WRK_FILE=" .. lib.q(inputs.mp4_large) .. " WRK_FILENAME=video.mp4")
    v.get[rep], v.upload[rep] = curl_get / wrk_get, curl_up / wrk_up
    abs.get[rep], abs.upload[rep] = wrk_get, wrk_up
    lib.log("5. rep %d/%d 64 KB uploads: emulator %.0f/s (2 conns %.0f/s), C loop %.0f/s; 10 MB get %.1f ms"
      .. " (curl %.1f ms), upload %.1f ms (curl %.1f ms)", rep, lib.REPS, one, two, cloop, wrk_get * 1000,
      curl_get * 1000, wrk_up * 1000, curl_up * 1000)
  end
  emu:reset()
  local mb = ("%g MB"):format(inputs.large_bytes / 1e6)
  lib.row({ bench = "5", what = "emulator alone, 64 KB uploads, 1 connection", ref = "C loop",
    unit = "x throughput",
    values = v.up1, abs = ("%.0f/s"):format(lib.stats(abs.up1).median), goal = "> 1",
    pass = lib.stats(v.up1).median > 1,
    note = ("so the server and loopback take %.0f%% of each C-loop upload (1 / median)")
      :format(100 / lib.stats(v.up1).median) })
  lib.row({ bench = "5", what = "emulator alone, 64 KB uploads, 2 connections", ref = "C loop",
    unit = "x throughput",
    values = v.up2, goal = "> 1", pass = lib.stats(v.up2).median > 1 })
  lib.row({ bench = "5", what = "emulator alone, " .. mb .. " get", ref = "curl command",
    unit = "curl time / emu",
    values = v.get, abs = ("%.1f ms"):format(lib.stats(abs.get).median * 1000),
    note = "about 1: the transfer is the kernel's (loopback, sendfile), the same whoever asks" })
  lib.row({ bench = "5", what = "emulator alone, " .. mb .. " upload", ref = "curl command",
    unit = "curl time / emu",
    values = v.upload, abs = ("%.1f ms"):format(lib.stats(abs.upload).median * 1000) })
end

return M
