-- luacheck: std +ngx_lua
-- The handlers of benchmark 4's nginx (loaded inside nginx, on LuaJIT): a plain location, an upload
-- through wxmedia.ngx (each a request of its own, as in a real server), and the reload contrast.
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

-- A request of the reload benchmark's batch ?batch=K is counted in flight while it runs.
local function batch_incr(n)
  local batch = ngx.var.arg_batch
  if batch then ngx.shared.bench:incr("inflight:" .. batch, n, 0) end
end

local function upload()
  local dict = ngx.shared.bench
  dict:incr("inflight", 1, 0)
  batch_incr(1)
  local ok, res, err, details = pcall(client.upload, client, "image", config.path)
  dict:incr("inflight", -1, 0)
  batch_incr(-1)
  if ok and res then dict:incr("done", 1, 0) else
    dict:incr("failed", 1, 0)
    ngx.log(ngx.ERR, "bench upload failed: ", tostring(ok and err or res))
  end
  return ok and res, ok and err or res, ok and details or { kind = "transfer" }
end

-- One upload now, in the request (token fetched, thread VMs' sessions made): the warm-up.
function _M.warm()
  upload()
  ngx.say(cjson.encode({ done = ngx.shared.bench:get("done"), failed = ngx.shared.bench:get("failed") }))
end

-- One upload of the configured file, answered when it is over: its media_id, or the failure as
-- wxmedia.ngx answers it (502, 503...), which wrk counts as an error.
function _M.upload()
  local res, err, details = upload()
  if not res then return client:send_error(err, details) end
  ngx.say(res.media_id)
end

-- The contrast of the reload benchmark: a request waiting on a bare ngx.run_worker_thread call
-- (what wxmedia.ngx did before it kept the worker alive), ?seconds long.
function _M.bare()
  batch_incr(1)
  local ok, err = ngx.run_worker_thread("wxmedia", "ngx_bench_thread", "sleep", tonumber(ngx.var.arg_seconds))
  batch_incr(-1)
  if not ok then
    ngx.status = 500
    ngx.say("failed: ", tostring(err))
    return
  end
  ngx.say("done")
end

function _M.state()
  local dict = ngx.shared.bench
  local batch = ngx.var.arg_batch
  ngx.say(cjson.encode({ inflight = dict:get("inflight") or 0, done = dict:get("done") or 0,
    failed = dict:get("failed") or 0, batch = batch and (dict:get("inflight:" .. batch) or 0) or nil }))
end

return _M
