-- `make bench` (through bench/run): runs the benchmarks of issue 7 and prints one table. Every
-- figure is a ratio to (or a difference from) a reference measured in the same run, shown as
-- min / median / max over BENCH_REPS (>= 5) repetitions. Progress goes to stderr; the table to
-- stdout and, with the raw values, to bench/out/results.{txt,json}.
--
-- BENCH_ONLY=1,2,3,4,5,6,7 picks benchmarks (default all). See bench/run for the other knobs.
local lib = require "lib"
local cjson = require "cjson"

local BENCHES = {
  { id = "1", module = "uploads", title = "many small uploads" },
  { id = "2", module = "large", title = "large files" },
  { id = "3", module = "layer", title = "the Lua layer's cost" },
  { id = "4", module = "openresty", title = "OpenResty: event loop latency" },
  { id = "5", module = "emulator", title = "the emulator alone" },
  { id = "6", module = "stores", title = "stores: memory, file, Redis" },
  { id = "7", module = "callback", title = "the callback's answer time (WeChat waits 5 s)" },
}

local only = {}
for id in (os.getenv("BENCH_ONLY") or "1,2,3,4,5,6,7"):gmatch("%d") do only[id] = true end

local function fmt(x)
  if x == nil then return "-" end
  local a = math.abs(x)
  if a >= 100 then return ("%.0f"):format(x) end
  if a >= 10 then return ("%.1f"):format(x) end
  return ("%.2f"):format(x)
end

local function pad(s, n)
  s = tostring(s)
  if utf8.len(s) and utf8.len(s) < n then return s .. (" "):rep(n - utf8.len(s)) end
  return s
end

local function table_text(rows)
  local cols = { { "#", 2 }, { "measure", 48 }, { "reference", 20 }, { "unit", 13 }, { "min", 7 },
    { "median", 7 }, { "max", 7 }, { "abs. median", 12 }, { "goal", 22 }, { "", 5 } }
  local lines = {}
  local head = {}
  for i, c in ipairs(cols) do head[i] = pad(c[1], c[2]) end
  lines[1] = table.concat(head, " ")
  lines[2] = ("-"):rep(#lines[1])
  for _, r in ipairs(rows) do
    local s = r.stats or {}
    local verdict = r.pass == true and "ok" or r.pass == false and "MISS" or ""
    local cells = { r.bench, r.what, r.ref, r.unit, fmt(s.min), fmt(s.median), fmt(s.max), r.abs or "",
      r.goal or "", verdict }
    for i, c in ipairs(cols) do cells[i] = pad(cells[i], c[2]) end
    lines[#lines + 1] = table.concat(cells, " "):gsub("%s+$", "")
    if r.note then lines[#lines + 1] = ("   %s"):format(r.note) end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function machine()
  local cpu = lib.sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", ""):gsub("%s+$", "")
  local cores = lib.sh("nproc"):gsub("%s+$", "")
  local mem = lib.sh("awk '/MemTotal/ { printf \"%.0f GiB\", $2 / 1048576 }' /proc/meminfo")
  local os_name = lib.sh(". /etc/os-release && echo \"$PRETTY_NAME\""):gsub("%s+$", "")
  local kernel = lib.sh("uname -r"):gsub("%s+$", "")
  local load = lib.sh("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", "")
  local curl = lib.sh("curl --version | head -1 | cut -d' ' -f1-2"):gsub("%s+$", "")
  local node = lib.sh("node --version 2>/dev/null"):gsub("%s+$", "")
  local nginx = lib.sh("nginx -v 2>&1"):gsub("%s+$", ""):gsub("^nginx version: ", "")
  return ("%s, %s cores, %s; %s, kernel %s; load average at start %s; %s, node %s, %s, lua 5.4, "
    .. "LuaJIT in nginx")
    :format(cpu, cores, mem, os_name, kernel, load, curl, node, nginx)
end

local started = lib.now()
lib.mkdir(lib.out)
local ctx = {
  inputs = require("inputs").make(),
  c_loop = assert(os.getenv("WXMEDIA_BENCH_CLOOP"), "bench/run compiles c_loop"),
  c_multi = assert(os.getenv("WXMEDIA_BENCH_CMULTI"), "bench/run compiles c_multi"),
  machine = machine(),
}
lib.log("machine: %s", ctx.machine)
lib.log("repetitions: %d", lib.REPS)
ctx.emulator = lib.start_emulator({ workers = math.floor(lib.env_number("BENCH_EMULATOR_WORKERS", 1)) })

local failed = {}
for _, b in ipairs(BENCHES) do
  if only[b.id] then
    lib.log("%s. %s", b.id, b.title)
    local t0 = lib.now()
    local ok, err = pcall(require(b.module).run, ctx)
    if not ok then
      failed[#failed + 1] = b.id .. ". " .. b.title .. ": " .. lib.redact(err)
      lib.log("%s. FAILED: %s", b.id, lib.redact(err))
    end
    lib.log("%s. done in %.0f s", b.id, lib.now() - t0)
  end
end
ctx.emulator:stop()

local text = ("wxmedia benchmarks, %d repetitions, %.0f s\nmachine: %s\n\n"):format(lib.REPS,
  lib.now() - started, ctx.machine) .. table_text(lib.rows)
for _, f in ipairs(failed) do text = text .. "FAILED " .. f .. "\n" end
io.stdout:write("\n", text)
lib.mkdir(lib.out)
lib.write(lib.out .. "/results.txt", text)
lib.write(lib.out .. "/results.json", cjson.encode({ machine = ctx.machine, reps = lib.REPS, rows = lib.rows,
  failed = failed }))
os.exit(#failed == 0 and 0 or 1)
