-- luacheck: std +ngx_lua
-- The handlers of benchmark 4's nginx (loaded inside nginx, on LuaJIT): a plain location, and an
-- upload through wxmedia.ngx (the slow transfers, each a request of its own, as in a real server).
local cjson = require "cjson.safe"
local wxngx = require "wxmedia.ngx"

local ngx = ngx
local _M = {}

local config, client

-- init_by_lua: the client (with or without a thread pool, as the benchmark says).
function _M.init(json)
  config = assert(cjson.decode(json))
  client = assert(wxngx.new(config.client))
end

-- The plain location whose latency is measured.
function _M.ping()
  ngx.say("pong")
end

local function upload()
  local dict = ngx.shared.bench
  dict:incr("inflight", 1, 0)
  local ok, res, err = pcall(client.upload, client, "image", config.path)
  dict:incr("inflight", -1, 0)
  if ok and res then dict:incr("done", 1, 0) else
    dict:incr("failed", 1, 0)
    ngx.log(ngx.ERR, "bench upload failed: ", tostring(ok and err or res))
  end
end

-- One upload now, in the request (token fetched, thread VMs' sessions made): the warm-up.
function _M.warm()
  upload()
  ngx.say(cjson.encode({ done = ngx.shared.bench:get("done"), failed = ngx.shared.bench:get("failed") }))
end

-- One upload of the configured file, answered when it is over.
function _M.upload()
  upload()
  ngx.say("done")
end

function _M.state()
  local dict = ngx.shared.bench
  ngx.say(cjson.encode({ inflight = dict:get("inflight") or 0, done = dict:get("done") or 0,
    failed = dict:get("failed") or 0 }))
end

return _M
