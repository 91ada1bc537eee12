-- `make demo`: the whole round trip on this machine, with no WeChat account.
-- Starts the local WeChat emulator, uploads each sample in spec/fixtures/media with the wxmedia API,
-- downloads each back (a video through the video_url WeChat answers with), checks that the bytes are
-- identical, prints a table, and stops the emulator whatever happened. Exits 1 if anything failed.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
local build = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath

local cjson = require "cjson.safe"

-- The emulator's built-in account: not a secret, it exists only in the emulator.
local APPID, SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"
local SAMPLES = { "image.jpg", "image.png", "image.gif", "thumb.jpg", "voice.amr", "voice.mp3", "video.mp4" }

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok == true or ok == 0
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

-- Wall-clock milliseconds: the C core's monotonic clock when it has one, else whole seconds.
local now do
  local ok, core = pcall(require, "wxmedia.core")
  if ok and type(core) == "table" and type(core.now) == "function" then
    now = function() return core.now() * 1000 end
  else
    now = function() return os.time() * 1000 end
  end
end

local function size_text(n)
  if n >= 1024 * 1024 then return ("%.1f MB"):format(n / 1048576) end
  if n >= 1024 then return ("%.1f kB"):format(n / 1024) end
  return n .. " B"
end

local function short_id(id)
  if not id then return "-" end
  if #id <= 14 then return id end
  return id:sub(1, 8) .. "..." .. id:sub(-4)
end

local emulator = root .. "/emulator/wxmedia-emulator"

local function start_emulator(dir)
  local out, ok = sh(quote(emulator) .. " start --json --dir " .. quote(dir) .. " 2>&1")
  local info = ok and cjson.decode(out:match("{.*}") or "")
  if not (info and info.base_url) then error("the emulator did not start: " .. out, 0) end
  return info.base_url
end

local function stop_emulator(dir)
  sh(quote(emulator) .. " stop --dir " .. quote(dir) .. " 2>&1")
end

-- One sample: upload, download, compare. Returns a row for the table.
local function round_trip(wxmedia, dir, name)
  local mtype = name:match("^(%a+)")
  local path = root .. "/spec/fixtures/media/" .. name
  local row = { type = mtype, file = name, size = #(read(path) or "") }

  local t0 = now()
  local res, err = wxmedia.upload(mtype, path)
  row.up = now() - t0
  if not res then row.result = "upload failed: " .. tostring(err) return row end
  row.media_id = res.media_id or res.thumb_media_id

  local copy = dir .. "/copy-" .. name
  t0 = now()
  local got, gerr = wxmedia.get(row.media_id, copy)
  row.down = now() - t0
  if not got then row.result = "download failed: " .. tostring(gerr) return row end

  if read(copy) ~= read(path) then
    row.result = ("bytes differ (%d sent, %d back)"):format(row.size, #(read(copy) or ""))
  else
    row.ok, row.result = true, got.video_url and "ok (via video_url)" or "ok"
  end
  return row
end

local function print_table(rows)
  local fmt = "%-6s %-10s %-15s %9s %7s %8s  %s\n"
  io.write(fmt:format("type", "file", "media_id", "size", "up ms", "down ms", "result"))
  for _, r in ipairs(rows) do
    local function ms(v) return v and ("%.0f"):format(v) or "-" end
    io.write(fmt:format(r.type, r.file, short_id(r.media_id), size_text(r.size), ms(r.up), ms(r.down),
      r.result))
  end
end

local function main(dir)
  local base_url = start_emulator(dir)
  io.write("emulator: ", base_url, "\n\n")
  local wxmedia = require "wxmedia"
  wxmedia.configure{ base_url = base_url, appid = APPID, secret = SECRET }
  local rows, failed = {}, 0
  for _, name in ipairs(SAMPLES) do
    local row = round_trip(wxmedia, dir, name)
    if not row.ok then failed = failed + 1 end
    rows[#rows + 1] = row
  end
  print_table(rows)
  io.write("\n", #rows - failed, " of ", #rows, " samples came back byte for byte\n")
  return failed == 0
end

local dir = (sh("mktemp -d " .. quote((os.getenv("TMPDIR") or "/tmp") .. "/wxmedia-demo-XXXXXX")))
  :gsub("%s+$", "")
assert(dir ~= "", "mktemp failed")
local ok, passed = xpcall(function() return main(dir) end, debug.traceback)
stop_emulator(dir)
os.execute("rm -rf " .. quote(dir))
if not ok then io.stderr:write("demo failed: ", tostring(passed), "\n") end
os.exit(ok and passed and 0 or 1)
