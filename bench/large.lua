-- Benchmark 2: large files. Each repetition runs, for every tool (wxmedia, the curl command, node
-- wechat-api, python requests), one upload of a 10 MB MP4 (type video) and one get of a 10 MB JPEG,
-- and the same with 100 KB files, each in its own process under GNU time:
--   * wall time of the 10 MB transfer, measured inside the process (curl's own %{time_total}), as a
--     ratio to the curl command's in the same repetition;
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
  for rep = 1, lib.REPS do
    emu:reset()
    c.token = emu:token()
    local ids = {
      small = emu:upload_with_curl(c.token, "image", inputs.jpeg_small, "photo.jpg"),
      large = emu:upload_with_curl(c.token, "image", inputs.jpeg_large, "photo.jpg"),
    }
    local videos = { small = inputs.mp4_small, large = inputs.mp4_large }
    for i = 0, #list - 1 do
      local t = list[(i + rep - 1) % #list + 1]
      for _, size in ipairs({ "small", "large" }) do
        local secs, kib = lib.measure_rss(t.upload(videos[size]), t.name .. " upload")
        rss.upload[t.key][size][rep] = kib
        if size == "large" then time.upload[t.key][rep] = secs end
        local out = dl .. "/" .. t.key .. "-" .. size .. ".jpg"
        secs, kib = lib.measure_rss(t.get(ids[size], out), t.name .. " get")
        check_download(out, sizes[size], t.name .. " get")
        rss.get[t.key][size][rep] = kib
        if size == "large" then time.get[t.key][rep] = secs end
      end
      lib.log("2. rep %d/%d %-16s upload %.3f s, get %.3f s; peak rss growth upload %.2f MiB, get %.2f MiB",
        rep, lib.REPS, t.name, time.upload[t.key][rep], time.get[t.key][rep],
        (rss.upload[t.key].large[rep] - rss.upload[t.key].small[rep]) / KIB_PER_MIB,
        (rss.get[t.key].large[rep] - rss.get[t.key].small[rep]) / KIB_PER_MIB)
    end
  end

  local mb = ("%g MB"):format(inputs.large_bytes / 1e6)
  for _, op in ipairs({ "upload", "get" }) do
    local ref = time[op].curl
    for _, t in ipairs(list) do
      if t.key ~= "curl" then
        local v = {}
        for rep = 1, lib.REPS do v[rep] = time[op][t.key][rep] / ref[rep] end
        local r = { bench = "2", what = ("%s %s, wall time"):format(t.name, mb .. " " .. op),
          ref = "curl command",
          unit = "x time", values = v, abs = ("%.0f ms"):format(lib.stats(time[op][t.key]).median * 1000) }
        if t.key == "wxmedia" then
          r.goal = "<= 1.10"
          r.pass = lib.stats(v).median <= 1.10
          r.note = ("curl: %.0f ms (median)"):format(lib.stats(ref).median * 1000)
        end
        lib.row(r)
      end
    end
    for _, t in ipairs(list) do
      local v = {}
      local by_size = rss[op][t.key]
      for rep = 1, lib.REPS do v[rep] = (by_size.large[rep] - by_size.small[rep]) / KIB_PER_MIB end
      local r = { bench = "2", what = ("%s %s, peak RSS growth"):format(t.name, mb .. " " .. op),
        ref = ("%g KB %s"):format(inputs.small_bytes / 1000, op), unit = "MiB", values = v,
        abs = ("%.1f MiB"):format(lib.stats(rss[op][t.key].large).median / KIB_PER_MIB) }
      if t.key == "wxmedia" then
        r.goal = "< 2 MiB"
        r.pass = lib.stats(v).max < 2
      end
      lib.row(r)
    end
  end
end

return M
