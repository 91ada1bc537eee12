-- Benchmark 2: large files. Each repetition runs, for every tool (wxmedia, the curl command, node
-- wechat-api, python requests; for the get also the curl command followed by an fsync of the file,
-- the reference of wxmedia's durable get), one upload of a 10 MB MP4 (type video) and one get of a
-- 10 MB JPEG,
-- and the same with 100 KB files, each in its own process under GNU time:
--   * wall time of the 10 MB transfer, measured inside the process (curl's own %{time_total}), as a
--     ratio to the curl command's in the same repetition (the median of BENCH_LARGE_RUNS runs);
--   * peak RSS of the 10 MB run minus that of the 100 KB run: what the file's size costs in memory.
-- The get of a 10 MB image is one media/get answered with the bytes (a video's get answers a
-- video_url instead, a second request that the curl command line cannot follow by itself).
local lib = require "lib"

local M = {}

local KIB_PER_MIB = 1024

local function tools(emu, c)
  local function curl_time(args)
    return "curl -s -S -f -w '\\n%{time_total}\\n' " .. args
  end
  return {
    { key = "wxmedia", name = "wxmedia client",
      upload = function(path) return ("%s upload %s video %s"):format(lib.lua_cmd("wx_client.lua"),
        lib.q(emu.base_url), lib.q(path)) end,
      get = function(id, out) return ("%s get %s %s %s"):format(lib.lua_cmd("wx_client.lua"),
        lib.q(emu.base_url), lib.q(id), lib.q(out)) end },
    { key = "wx_nofsync", name = "wxmedia core, fsync = false",
      get = function(id, out) return ("%s get_nofsync %s %s %s"):format(lib.lua_cmd("wx_client.lua"),
        lib.q(emu.base_url), lib.q(id), lib.q(out)) end },
    { key = "curl_fsync", name = "curl, then fsync of the file",
      get = function(id, out)
        return ("%s %s %s"):format(lib.q(lib.root .. "/bench/curl_fsync.sh"), lib.q(out),
          lib.q(emu:get_url(c.token, id)))
      end },
    { key = "curl", name = "curl command",
      upload = function(path) return curl_time(("-o /dev/null -F %s %s"):format(
        lib.q("media=@" .. path .. ";filename=video.mp4"), lib.q(emu:upload_url(c.token, "video")))) end,
      get = function(id, out)
        return curl_time(("-o %s %s"):format(lib.q(out), lib.q(emu:get_url(c.token, id))))
      end },
    { key = "node", name = "node wechat-api",
      upload = function(path) return ("%s upload %s video %s"):format(lib.node_cmd("peer_node.js"),
        lib.q(emu.base_url), lib.q(path)) end,
      get = function(id, out) return ("%s get %s %s %s"):format(lib.node_cmd("peer_node.js"),
        lib.q(emu.base_url), lib.q(id), lib.q(out)) end },
    { key = "python", name = "python requests",
      upload = function(path) return ("%s upload %s video %s"):format(lib.python_cmd("peer_python.py"),
        lib.q(emu.base_url), lib.q(path)) end,
      get = function(id, out) return ("%s get %s %s %s"):format(lib.python_cmd("peer_python.py"),
        lib.q(emu.base_url), lib.q(id), lib.q(out)) end },
  }
end

local function check_download(path, size, what)
  local out = lib.sh("stat -c %s " .. lib.q(path))
  if tonumber(out) ~= size then error(what .. ": the downloaded file has " .. out:gsub("%s+$", "")
    .. " bytes, not " .. size, 0) end
  os.remove(path)
end

function M.run(ctx)
  local emu, inputs = ctx.emulator, ctx.inputs
  local dl = lib.mkdir(lib.tmp .. "/downloads")
  local c = {}
  local list = tools(emu, c)
  -- time[op][tool][rep] (large only), rss[op][tool][size][rep]
  local time, rss = { upload = {}, get = {} }, { upload = {}, get = {} }
  for _, t in ipairs(list) do
    for _, op in ipairs({ "upload", "get" }) do
      time[op][t.key] = {}
      rss[op][t.key] = { small = {}, large = {} }
    end
  end
  local sizes = { small = inputs.small_bytes, large = inputs.large_bytes }
  local runs = math.max(1, math.floor(lib.env_number("BENCH_LARGE_RUNS", 5)))
  for rep = 1, lib.REPS do
    emu:reset()
    c.token = emu:token()
    local ids = {
      small = emu:upload_with_curl(c.token, "image", inputs.jpeg_small, "photo.jpg"),
      large = emu:upload_with_curl(c.token, "image", inputs.jpeg_large, "photo.jpg"),
    }
    local videos = { small = inputs.mp4_small, large = inputs.mp4_large }
    -- the 10 MB transfers run `runs` times (a few tens of ms each: one is noise), interleaved so
    -- that a burst of load from elsewhere hits every tool alike; the 100 KB ones (for the peak RSS
    -- reference) and the peak RSS of the 10 MB ones come from the first round
    local times = {}
    for run = 1, runs do
      for i = 0, #list - 1 do
        local t = list[(i + rep + run - 2) % #list + 1]
        for _, op in ipairs({ "upload", "get" }) do
          if t[op] then
            for _, size in ipairs(run == 1 and { "small", "large" } or { "large" }) do
              local out = dl .. "/" .. t.key .. "-" .. size .. ".jpg"
              local cmd = op == "upload" and t.upload(videos[size]) or t.get(ids[size], out)
              local secs, kib = lib.measure_rss(cmd, t.name .. " " .. op)
              if op == "get" then check_download(out, sizes[size], t.name .. " get") end
              if run == 1 then rss[op][t.key][size][rep] = kib end
              if size == "large" then
                local key = op .. " " .. t.key
                times[key] = times[key] or {}
                times[key][run] = secs
              end
            end
          end
        end
      end
    end
    for _, t in ipairs(list) do
      for _, op in ipairs({ "upload", "get" }) do
        if t[op] then
          time[op][t.key][rep] = lib.stats(times[op .. " " .. t.key]).median
          local growth = (rss[op][t.key].large[rep] - rss[op][t.key].small[rep]) / KIB_PER_MIB
          lib.log("2. rep %d/%d %-28s %-6s %6.1f ms; peak rss growth %6.2f MiB", rep, lib.REPS, t.name, op,
            time[op][t.key][rep] * 1000, growth)
        end
      end
    end
  end

  local mb = ("%g MB"):format(inputs.large_bytes / 1e6)
  local names = {}
  for _, t in ipairs(list) do names[t.key] = t.name end
  -- what each row is measured against: the curl command; a get that flushes the file to disk (the
  -- client's default) against curl followed by an fsync of its file
  local function ref_of(op, key)
    if op == "get" and key == "wxmedia" then return "curl_fsync" end
    return "curl"
  end
  for _, op in ipairs({ "upload", "get" }) do
    for _, t in ipairs(list) do
      if t.key ~= "curl" and t[op] then
        local ref_key = ref_of(op, t.key)
        local ref = time[op][ref_key]
        local v = {}
        for rep = 1, lib.REPS do v[rep] = time[op][t.key][rep] / ref[rep] end
        local r = { bench = "2", what = ("%s %s, wall time"):format(t.name, mb .. " " .. op),
          ref = ref_key == "curl" and "curl command" or "curl + fsync", unit = "x time", values = v,
          abs = ("%.0f ms"):format(lib.stats(time[op][t.key]).median * 1000) }
        if t.key == "wxmedia" then
          r.goal = "<= 1.10"
          r.pass = lib.stats(v).median <= 1.10
          r.note = ("%s: %.0f ms (median)"):format(names[ref_key], lib.stats(ref).median * 1000)
        elseif t.key == "wx_nofsync" then
          r.note = "the option fsync = false: no flush before the rename, as the curl command"
        end
        lib.row(r)
      end
    end
    for _, t in ipairs(list) do
      -- the fsync-less get and curl + fsync show a time; their memory is the client's and curl's
      if t[op] and t.key ~= "wx_nofsync" and t.key ~= "curl_fsync" then
        M.rss_row(rss[op][t.key], t, op, mb, inputs)
      end
    end
  end
end

function M.rss_row(by_size, t, op, mb, inputs)
  local v = {}
  for rep = 1, lib.REPS do v[rep] = (by_size.large[rep] - by_size.small[rep]) / KIB_PER_MIB end
  local r = { bench = "2", what = ("%s %s, peak RSS growth"):format(t.name, mb .. " " .. op),
    ref = ("%g KB %s"):format(inputs.small_bytes / 1000, op), unit = "MiB", values = v,
    abs = ("%.1f MiB"):format(lib.stats(by_size.large).median / KIB_PER_MIB) }
  if t.key == "wxmedia" then
    r.goal = "< 2 MiB"
    r.pass = lib.stats(v).max < 2
  end
  lib.row(r)
end

return M
