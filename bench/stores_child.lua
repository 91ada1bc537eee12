-- Benchmark 6's process: one client per store (memory, file, Redis), each warmed up (a token in its
-- store, a connection open, a media_id record), then the same call through each in alternating
-- blocks, the order rotating from block to block, so that a change of load hits all three alike.
--
--   stores_child.lua MODE BASE_URL REDIS_PORT STORE_DIR FILES_DIR N BLOCK
--     MODE token:    client:token() (a token lookup in the store)
--          reuse:    client:media_id of a recorded file (a record lookup; nothing is sent)
--          upload:   client:upload (one token lookup per upload, against the emulator)
--   FILES_DIR/warm.jpg is the file of token, reuse and upload (a 64 KiB JPEG, as in benchmark 1)
--          media_id: client:media_id of a new content (lock, record read, upload, two record
--                    writes, unlock): FILES_DIR/<store>-<i>.jpg, made by bench/stores.lua
--   Prints one line "store seconds" per block.
-- Debian installs redis-lua for Lua 5.1-5.3 only; its file runs on 5.4 unchanged.
if _VERSION == "Lua 5.4" then package.path = package.path .. ";/usr/share/lua/5.3/?.lua" end
local wxmedia = require "wxmedia"
local core = require "wxmedia.core"
local redis = require "redis"

local APPID, SECRET = "wx1234567890abcdef", "0123456789abcdef0123456789abcdef"
local KINDS = { "memory", "file", "redis" }

local mode, base_url, port, store_dir, files_dir = arg[1], arg[2], assert(tonumber(arg[3])), arg[4], arg[5]
local n, block = assert(tonumber(arg[6])), assert(tonumber(arg[7]))
local fixture = files_dir .. "/warm.jpg"

local function check(res, err)
  if not res then
    io.stderr:write("stores_child: ", tostring(err), "\n")
    os.exit(1)
  end
  return res
end

local function store_of(kind)
  if kind == "memory" then return wxmedia.store.memory() end
  if kind == "file" then return wxmedia.store.file(store_dir .. "/store.json") end
  return wxmedia.store.redis(function()
    return redis.connect({ host = "127.0.0.1", port = port, timeout = 1 })
  end, { prefix = "bench:" .. store_dir:match("[^/]+$") .. ":" })   -- a fresh set of keys per run
end

local clients, next_file = {}, {}
for _, kind in ipairs(KINDS) do
  local c = check(wxmedia.new({ appid = APPID, secret = SECRET, base_url = base_url, retries = 0,
    token_store = store_of(kind), on_warning = function(m) check(nil, kind .. " store: " .. m) end }))
  check(c:upload("image", fixture))
  check(c:media_id("image", fixture))
  clients[kind], next_file[kind] = c, 0
end

local CALLS = {
  token = function(c) check(c:token()) end,
  reuse = function(c)
    local res = check(c:media_id("image", fixture))
    if not res.reused then check(nil, "a recorded file was uploaded again") end
  end,
  upload = function(c) check(c:upload("image", fixture)) end,
  media_id = function(c, kind)
    next_file[kind] = next_file[kind] + 1
    local res = check(c:media_id("image", ("%s/%s-%d.jpg"):format(files_dir, kind, next_file[kind])))
    if res.reused then check(nil, "a new content was reused") end
  end,
}
local call = assert(CALLS[mode], "unknown mode")

local now = core.now
local out = {}
for b = 1, math.max(1, n // block) do
  for j = 0, #KINDS - 1 do
    local kind = KINDS[(b + j) % #KINDS + 1]
    local c = clients[kind]
    local t0 = now()
    for _ = 1, block do call(c, kind) end
    out[#out + 1] = ("%s %.6f"):format(kind, now() - t0)
  end
end
print(table.concat(out, "\n"))
