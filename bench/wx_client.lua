-- The wxmedia contender: one process, one client (`wxmedia.new`), measured from inside so that the
-- interpreter's start-up is not counted (the peers are measured the same way). Prints seconds.
--
--   wx_client.lua loop BASE_URL TYPE PATH N      N sequential uploads after a warm-up upload
--                                                (token cached, connection open)
--   wx_client.lua many BASE_URL TYPE PATH N C    N uploads through one upload_many, C at once, after a
--                                                warm-up batch of C (token cached, connections open)
--   wx_client.lua upload BASE_URL TYPE PATH      one upload, token fetched before the clock starts
--   wx_client.lua get BASE_URL MEDIA_ID OUT      one get into OUT, token fetched before the clock
--   wx_client.lua get_nofsync BASE_URL MEDIA_ID OUT   the same get through a core session made with
--                                                fsync = false (the file is not flushed to the disk
--                                                before its rename), to show what the fsync costs
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"

local APPID, SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"

local mode, base_url = arg[1], arg[2]

local function client()
  return assert(wxmedia.new({ appid = APPID, secret = SECRET, base_url = base_url, retries = 0 }))
end

local function check(res, err)
  if not res then
    io.stderr:write("wx_client: ", tostring(err), "\n")
    os.exit(1)
  end
  return res
end

if mode == "loop" then
  local mtype, path, n = arg[3], arg[4], assert(tonumber(arg[5]))
  local c = client()
  check(c:upload(mtype, path))
  local t0 = core.now()
  for _ = 1, n do check(c:upload(mtype, path)) end
  print(("%.6f"):format(core.now() - t0))
elseif mode == "many" then
  local mtype, path, n, conc = arg[3], arg[4], assert(tonumber(arg[5])), assert(tonumber(arg[6]))
  local c = client()
  local function batch(k)
    local list = {}
    for i = 1, k do list[i] = { mtype, path } end
    local results, failed = c:upload_many(list, { concurrency = conc })
    if failed ~= 0 then
      for _, r in ipairs(results) do if not r[1] then check(nil, r[2]) end end
    end
  end
  batch(conc)
  local t0 = core.now()
  batch(n)
  print(("%.6f"):format(core.now() - t0))
elseif mode == "upload" then
  local mtype, path = arg[3], arg[4]
  local c = client()
  check(c:token())
  local t0 = core.now()
  check(c:upload(mtype, path))
  print(("%.6f"):format(core.now() - t0))
elseif mode == "get" then
  local media_id, out = arg[3], arg[4]
  local c = client()
  check(c:token())
  local t0 = core.now()
  check(c:get(media_id, out))
  print(("%.6f"):format(core.now() - t0))
elseif mode == "get_nofsync" then
  local media_id, out = arg[3], arg[4]
  local tok = check(client():token())
  local session = check(core.session({ base_url = base_url, fsync = false }))
  check(session:request("GET", "/__emulator/ping"))
  local t0 = core.now()
  local res, err = session:get(tok, media_id, out)
  if not res or not res.file then check(nil, err or "not a file") end
  print(("%.6f"):format(core.now() - t0))
else
  io.stderr:write("usage: wx_client.lua loop|upload|get|get_nofsync BASE_URL ...\n")
  os.exit(2)
end
