-- luacheck: std +ngx_lua
-- The handlers of the nginx that spec/ngx_spec.lua starts (loaded inside nginx, on LuaJIT).
-- Every answer is JSON, so the spec can compare results and errors with plain Lua's.
local cjson = require "cjson.safe"
local wxngx = require "wxmedia.ngx"

local ngx = ngx
local _M = {}

local config
local clients = {}

-- init_by_lua: the spec's settings, and the clients (creating one makes no transfer; a transfer
-- must be refused).
function _M.init(json)
  config = assert(cjson.decode(json))
  for name, opts in pairs(config.clients) do
    clients[name] = assert(wxngx.new(opts))
  end
  -- option sets the spec expects new to take or refuse: "ok", or the error raised
  local tries = {}
  for i, opts in ipairs(config.tries or {}) do
    local ok, err = pcall(wxngx.new, opts)
    tries[i] = ok and "ok" or tostring(err)
  end
  ngx.shared.test:set("tries", cjson.encode(tries))
  local client = clients.main or clients.dead
  local ok, err = pcall(client.upload, client, "image", "/nonexistent.jpg")
  if not ok then ngx.shared.test:set("init_error", tostring(err)) end
end

-- init_worker_by_lua: a transfer here must be refused with a clear error, not attempted.
function _M.init_worker()
  local client = clients.main or clients.dead
  local ok, err = pcall(client.upload, client, "image", "/nonexistent.jpg")
  if not ok then ngx.shared.test:set("init_worker_error", tostring(err)) end
end

local function client()
  return clients[ngx.var.arg_client or "main"]
end

-- A busy failure is answered as a handler should: 503 with Retry-After.
local function answer(tbl)
  if tbl.details and tbl.details.kind == "busy" then
    ngx.status = 503
    ngx.header["Retry-After"] = tbl.details.retry_after
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(tbl))
end

-- POST the media file as the raw body (client_body_in_file_only puts it in a file for us).
function _M.upload()
  ngx.req.read_body()
  local path = ngx.req.get_body_file() or ngx.var.arg_path
  local test = ngx.shared.test
  test:incr("uploading", 1, 0)
  -- a file, not the dict: the spec can see it even while a blocking upload holds the worker
  local marker = io.open(config.tmpdir .. "/upload-started", "w")
  if marker then marker:close() end
  local ok, res, err, details = pcall(client().upload, client(), ngx.var.arg_type or "image", path)
  test:incr("uploading", -1, 0)
  if not ok then return answer({ raised = tostring(res), pid = ngx.worker.pid() }) end
  if not res and ngx.var.arg_send_error then return client():send_error(err, details) end
  answer({ res = res, err = err, details = details, pid = ngx.worker.pid() })
end

-- The file at arg path uploaded in the form arg form: "data" (bytes in memory), "handle" (an open
-- Lua file handle) or "reader" (a function with the size); with arg check=1, through client:check's
-- table. A handle and a reader cannot cross into a worker thread themselves.
function _M.upload_form()
  local c, mtype, form = client(), ngx.var.arg_type or "image", ngx.var.arg_form
  if form == "transport" then
    -- below the client: a reader handed to the thread backend itself
    local ok, err = pcall(c.client.transport.upload, c.client.transport, "token", mtype,
      { reader = function() end, size = 3 }, {})
    return answer({ raised = not ok and tostring(err) or nil })
  end
  local f = assert(io.open(ngx.var.arg_path, "rb"))
  local file
  if form == "data" then
    file = { data = f:read("*a"), filename = "in-memory.jpg" }
  elseif form == "handle" then
    file = { file = f, filename = "handle.jpg" }
  else
    local size = f:seek("end")
    f:seek("set")
    file = { file = function(n) return f:read(n) end, size = size, filename = "reader.jpg" }
  end
  local ok, res, err, details = true, nil, nil, nil
  if ngx.var.arg_check == "1" then
    res, err, details = c:check(mtype, file)
    file = res
  end
  if file then ok, res, err, details = pcall(c.upload, c, mtype, file) end
  f:close()
  if not ok then return answer({ raised = tostring(res) }) end
  answer({ res = res, err = err, details = details })
end

-- Starts an upload in a timer (no request around it); /timer_result shows how it ended.
function _M.timer()
  local c, mtype, path = client(), ngx.var.arg_type or "image", ngx.var.arg_path
  assert(ngx.timer.at(0, function()
    local res, err = c:upload(mtype, path)
    ngx.shared.test:set("timer_result", cjson.encode({ res = res, err = err }))
  end))
  answer({ started = true })
end

function _M.timer_result()
  answer({ result = cjson.decode(ngx.shared.test:get("timer_result") or "null") })
end

-- arg exit_after=S: a light thread ends the request with ngx.exit after S seconds, whatever the
-- transfer is doing (which kills the request's coroutine in the middle of the call).
-- arg own_abort: the handler registers its own ngx.on_abort before the transfer, which calls
-- wxmedia.ngx.client_aborted() ("call") or not ("silent"); the result's kind is then counted in the
-- test dict (the client that went away never reads the answer), see /kinds.
function _M.get()
  local exit_after = tonumber(ngx.var.arg_exit_after)
  if exit_after then
    ngx.thread.spawn(function()
      ngx.sleep(exit_after)
      ngx.exit(204)
    end)
  end
  local own_abort = ngx.var.arg_own_abort
  if own_abort then
    assert(ngx.on_abort(function()
      if own_abort == "call" then wxngx.client_aborted() end
    end))
  end
  local path = config.tmpdir .. "/got-" .. ngx.worker.pid() .. "-" .. ngx.now()
  local res, err, details = client():get(ngx.var.arg_media_id, path)
  if own_abort then ngx.shared.test:incr("kind:" .. (details and details.kind or "none"), 1, 0) end
  if res then res.path = nil end
  local data
  local f = io.open(path, "rb")
  if f then
    data = f:read("*a")
    f:close()
    os.remove(path)
  end
  answer({ res = res, err = err, details = details, size = data and #data })
end

-- A media_id for a file on disk (arg path), uploaded once for all workers.
function _M.reuse()
  local res, err, details = client():media_id(ngx.var.arg_type or "image", ngx.var.arg_path)
  answer({ res = res, err = err, details = details, pid = ngx.worker.pid() })
end

function _M.serve()
  local ok, err = client():serve(ngx.var.arg_media_id, { attachment = ngx.var.arg_attachment == "1" })
  if not ok then ngx.log(ngx.INFO, "serve failed: ", err) end
end

-- A plain location: who answered, and whether an upload was in flight on this worker's node.
function _M.ping()
  answer({ pid = ngx.worker.pid(), uploading = ngx.shared.test:get("uploading") or 0 })
end

-- A holder that dies: its lock must still be exclusive while it lives, then expire; its late
-- unlock must not free the next holder's lock.
function _M.locktest()
  local store = wxngx.shared_store("wxmedia_tokens", { lock_dict = "wxmedia_locks", lock_exptime = 0.5 })
  local dead = assert(store:lock("k", 1))
  local busy, busy_err = store:lock("k", 0.1)
  local next_holder, next_err = store:lock("k", 5)
  dead:unlock()
  local still_busy, still_err = store:lock("k", 0.1)
  if next_holder then next_holder:unlock() end
  answer({ busy = busy ~= nil, busy_err = busy_err, next_holder = next_holder ~= nil, next_err = next_err,
    still_busy = still_busy ~= nil, still_err = still_err })
end

-- The locks in the lock dict: none once no call is running (its other keys are wxmedia's counters).
function _M.locks()
  local locks = {}
  for _, key in ipairs(ngx.shared.wxmedia_locks:get_keys(0)) do
    if key:find("^lock:") then locks[#locks + 1] = key end
  end
  answer({ keys = locks })
end

function _M.state()
  answer({ init_error = ngx.shared.test:get("init_error"),
    init_worker_error = ngx.shared.test:get("init_worker_error"),
    tries = cjson.decode(ngx.shared.test:get("tries") or "null") })
end

-- The kinds of the results /get?own_abort= counted: { [kind] = n }.
function _M.kinds()
  local kinds = {}
  for _, key in ipairs(ngx.shared.test:get_keys(0)) do
    local kind = key:match("^kind:(.*)$")
    if kind then kinds[kind] = ngx.shared.test:get(key) end
  end
  answer({ kinds = kinds })
end

-- The counters, as an operator's status location shows them (?format=json, else text).
function _M.status()
  ngx.header["Content-Type"] = ngx.var.arg_format == "json" and "application/json" or "text/plain"
  ngx.print(client():status(ngx.var.arg_format))
end

return _M
