-- Benchmark 3's process: the same upload through the Lua layer (`client:upload`, token cached) and
-- through the C core alone (`session:upload` with that token, the same filename and Content-Type
-- the client sends), each on its own warm keep-alive connection.
--
--   layer_child.lua alternate BASE_URL PATH N BLOCK
--       N calls of each, alternating blocks of BLOCK, so that a change of load hits both alike;
--       prints one line "core_seconds client_seconds" per pair of blocks.
--   layer_child.lua only core|client BASE_URL PATH N
--       N calls of one kind after the warm-up (run under callgrind with two values of N: the
--       difference of the instruction counts over the difference of N is the cost of one call).
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"

local APPID, SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"

local mode = arg[1]

local function check(res, err)
  if not res then
    io.stderr:write("layer_child: ", tostring(err), "\n")
    os.exit(1)
  end
  return res
end

-- The two callers, warmed up: a token in the client's store, a connection open in each session.
local function callers(base_url, path)
  local client = assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = base_url, retries = 0 }))
  check(client:upload("image", path))
  local tok = check(client:token())
  local session = check(core.session({ base_url = base_url }))
  local send = { filename = path:match("[^/]+$"), content_type = "image/jpeg" }
  local function core_call()
    local res, err = session:upload(tok, "image", path, send)
    if not res or res.status ~= 200 then check(nil, err or ("http " .. tostring(res.status))) end
  end
  local function client_call()
    check(client:upload("image", path))
  end
  core_call()
  return core_call, client_call
end

if mode == "alternate" then
  local base_url, path, n, block = arg[2], arg[3], assert(tonumber(arg[4])), assert(tonumber(arg[5]))
  local core_call, client_call = callers(base_url, path)
  local now = core.now
  local pairs_out = {}
  for i = 1, math.max(1, n // block) do
    local t0 = now()
    for _ = 1, block do core_call() end
    local t1 = now()
    for _ = 1, block do client_call() end
    local t2 = now()
    pairs_out[i] = ("%.6f %.6f"):format(t1 - t0, t2 - t1)
  end
  print(table.concat(pairs_out, "\n"))
elseif mode == "only" then
  local which, base_url, path, n = arg[2], arg[3], arg[4], assert(tonumber(arg[5]))
  local core_call, client_call = callers(base_url, path)
  local call = which == "core" and core_call or client_call
  for _ = 1, n do call() end
  print("0")
else
  io.stderr:write("usage: layer_child.lua alternate|only ...\n")
  os.exit(2)
end
