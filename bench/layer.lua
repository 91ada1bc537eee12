-- Benchmark 3: what the Lua layer costs over the C core.
--   * Wall time: one process alternates blocks of `session:upload` (the C core alone, given the
--     token) and `client:upload` (format check, cached token, JSON decoding, retry policy), each on
--     its own warm connection; the figure is client time / core time - 1, per repetition.
--   * Instructions per call, from callgrind (they do not depend on the machine's load): each of the
--     C loop, the core and the client runs twice under valgrind with a different number of calls;
--     the difference of the totals over the difference of the calls is the cost of one call in the
--     calling process. The client's extra instructions are split by the object they ran in.
local lib = require "lib"

local M = {}

-- callgrind_annotate's per-function self counts: { ["file:function [object]"] = Ir }.
local function annotate(file)
  local out = lib.must("callgrind_annotate --inclusive=no --threshold=100 " .. lib.q(file) .. " 2>/dev/null",
    "callgrind_annotate")
  local counts, total = {}, nil
  for line in out:gmatch("[^\n]+") do
    local n, name = line:match("^%s*([%d,]+) %b()%s+(.+)$")
    if n then
      n = tonumber((n:gsub(",", "")))
      if name:find("PROGRAM TOTALS", 1, true) then total = n else counts[name] = (counts[name] or 0) + n end
    end
  end
  return counts, assert(total, "callgrind_annotate printed no total")
end

local function object_of(name)
  local obj = name:match("%[([^%]]+)%]%s*$") or "?"
  return obj:match("([^/]+)$")
end

-- Runs `cmd_for(n)` under callgrind for two values of n; returns instructions per call, and the per
-- object split of one call.
local function per_call(label, cmd_for, n1, n2)
  local files = {}
  for i, n in ipairs({ n1, n2 }) do
    files[i] = ("%s/callgrind.%s.%d.out"):format(lib.out, label, n)
    local valgrind = "valgrind --tool=callgrind --callgrind-out-file=" .. lib.q(files[i])
    lib.must(cmd_for(n, valgrind) .. " >/dev/null 2>&1", "callgrind " .. label)
    -- the profile keeps the command line, and the C loop's carries the token: redact it
    lib.write(files[i], lib.redact(lib.read(files[i])))
  end
  local c1, t1 = annotate(files[1])
  local c2, t2 = annotate(files[2])
  local objects = {}
  for name, v in pairs(c2) do
    local o = object_of(name)
    objects[o] = (objects[o] or 0) + (v - (c1[name] or 0)) / (n2 - n1)
  end
  for name, v in pairs(c1) do
    if not c2[name] then
      local o = object_of(name)
      objects[o] = (objects[o] or 0) - v / (n2 - n1)
    end
  end
  return (t2 - t1) / (n2 - n1), objects
end

function M.run(ctx)
  local emu, input = ctx.emulator, ctx.inputs.jpeg64k
  local calls = math.floor(lib.env_number("BENCH_LAYER_CALLS", 1000))

  -- wall time, alternating blocks in one process; a repetition's figure is the median of its
  -- block pairs' ratios, so that a burst of load from elsewhere that hits one block does not count
  local block = math.floor(lib.env_number("BENCH_LAYER_BLOCK", 20))
  local per_kind = math.max(block, calls // 2)
  local overhead, core_ms = {}, {}
  for rep = 1, lib.REPS do
    emu:reset()
    local out = lib.must(("%s alternate %s %s %d %d 2>&1"):format(lib.lua_cmd("layer_child.lua"),
      lib.q(emu.base_url), lib.q(input), per_kind, block), "layer_child")
    local ratios, cores = {}, {}
    for t_core, t_client in out:gmatch("([%d.]+) ([%d.]+)") do
      ratios[#ratios + 1] = tonumber(t_client) / tonumber(t_core)
      cores[#cores + 1] = tonumber(t_core) / block
    end
    assert(#ratios > 0, "layer_child printed nothing: " .. lib.redact(out))
    overhead[rep] = (lib.stats(ratios).median - 1) * 100
    core_ms[rep] = lib.stats(cores).median * 1000
    lib.log("3. rep %d/%d core %.3f ms/call, client %+.1f%% (median of %d block pairs)", rep, lib.REPS,
      core_ms[rep], overhead[rep], #ratios)
  end
  lib.row({ bench = "3", what = "client:upload over core session:upload, wall", ref = "core alone",
    unit = "% overhead",
    values = overhead, goal = "< 5%", pass = lib.stats(overhead).median < 5,
    abs = ("%.2f ms"):format(lib.stats(core_ms).median),
    note = ("%d calls of each per repetition, alternating blocks of %d; abs. = the core's time per call")
      :format(per_kind, block) .. ", the median of the pairs' ratios" })

  -- instructions per call (callgrind): deterministic up to a few hundred instructions, whatever the
  -- load, so measured once (each run costs seconds under valgrind)
  local extra = math.floor(lib.env_number("BENCH_CALLGRIND_CALLS", 40))
  local n1, n2 = 10, 10 + extra
  emu:reset()
  local tok = emu:token()
  local cloop_ir = per_call("c_loop", function(n, valgrind)
    -- the filename the core and the client send (the file's own name: it has the jpg extension)
    return ("%s %s %s %s %d %s"):format(valgrind, lib.q(ctx.c_loop),
      lib.q(emu:upload_url(tok, "image")), lib.q(input), n, lib.q(input:match("[^/]+$")))
  end, n1, n2)
  local function child(which)
    return function(n, valgrind)
      return ("%s only %s %s %s %d"):format(lib.lua_cmd("layer_child.lua", valgrind), which,
        lib.q(emu.base_url), lib.q(input), n)
    end
  end
  local core_ir, core_objects = per_call("core", child("core"), n1, n2)
  local client_ir, client_objects = per_call("client", child("client"), n1, n2)
  local split = {}
  for o, v in pairs(client_objects) do
    local d = v - (core_objects[o] or 0)
    if math.abs(d) >= 500 then split[#split + 1] = { o, d } end
  end
  table.sort(split, function(a, b) return a[2] > b[2] end)
  local parts = {}
  for i = 1, math.min(6, #split) do parts[i] = ("%s %+.0fk"):format(split[i][1], split[i][2] / 1000) end
  local function ir_row(what, v, goal, note)
    local r = { bench = "3", what = what, ref = "C loop", unit = "x instructions", values = { v / cloop_ir },
      abs = ("%.0fk/call"):format(v / 1000), note = note }
    if goal then
      r.goal = ("<= %.2f"):format(goal)
      r.pass = v / cloop_ir <= goal
    end
    lib.row(r)
  end
  ir_row("C loop upload, instructions per call (callgrind)", cloop_ir)
  ir_row("core session:upload, instructions per call", core_ir, 1.10)
  ir_row("client:upload, instructions per call", client_ir, 1.25,
    ("client - core = %.0fk instructions per call: %s"):format((client_ir - core_ir) / 1000,
      table.concat(parts, ", ")))
  -- minor page faults per call (GNU time's %R, two runs, as above): a heap that glibc trims after
  -- the Lua layer's garbage is collected and that grows again for the next transfer's buffers
  local function faults(which, env)
    local f = {}
    for i, n in ipairs({ 20, 220 }) do
      local file = lib.tmp .. "/faults.txt"
      lib.must(("/usr/bin/time -f %%R -o %s %s >/dev/null 2>&1"):format(lib.q(file),
        child(which)(n, env)), "page faults " .. which)
      f[i] = lib.number_of(lib.read(file) or "", "page faults")
    end
    return (f[2] - f[1]) / 200
  end
  local pf_core, pf_client = faults("core", ""), faults("client", "")
  local pf_notrim = faults("client", "env " .. require("uploads").NO_TRIM)
  lib.row({ bench = "3", what = "client:upload, minor page faults per call", ref = "core",
    unit = "faults/call",
    values = { pf_client }, abs = ("core %.1f"):format(pf_core),
    note = ("with glibc's heap trim off (GLIBC_TUNABLES=glibc.malloc.trim_threshold=64 MiB): %.1f per call")
      :format(pf_notrim) })
  lib.log("3. callgrind: c_loop %.0f, core %.0f, client %.0f instructions per upload", cloop_ir, core_ir,
    client_ir)
end

return M
