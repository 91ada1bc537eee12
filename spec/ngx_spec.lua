-- wxmedia.ngx inside a real nginx (Debian's nginx + its Lua module, always LuaJIT, hence #once):
-- transfers off the event loop, one token for all workers, serve-by-id, and results that match
-- plain Lua's. Each test starts its own nginx (fresh shared dicts) against one emulator.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cjson = require "cjson.safe"
local wxmedia = require "wxmedia"

local shell_quote = helper.shell_quote
local BAD_SECRET = string.rep("0", 32)

local LOCATIONS = [[
    location = /ping   { content_by_lua_block { require("ngx_app").ping() } }
    location = /state  { content_by_lua_block { require("ngx_app").state() } }
    location = /locks  { content_by_lua_block { require("ngx_app").locks() } }
    location = /kinds  { content_by_lua_block { require("ngx_app").kinds() } }
    location = /locktest { content_by_lua_block { require("ngx_app").locktest() } }
    location = /timer { content_by_lua_block { require("ngx_app").timer() } }
    location = /timer_result { content_by_lua_block { require("ngx_app").timer_result() } }
    location = /get    { content_by_lua_block { require("ngx_app").get() } }
    location = /serve  { content_by_lua_block { require("ngx_app").serve() } }
    location = /reuse  { content_by_lua_block { require("ngx_app").reuse() } }
    location = /upload_form { content_by_lua_block { require("ngx_app").upload_form() } }
    location = /status { content_by_lua_block { require("ngx_app").status() } }
    location = /upload {
      client_body_in_file_only clean;
      client_max_body_size 20m;
      content_by_lua_block { require("ngx_app").upload() }
    }
]]

describe("wxmedia.ngx in nginx #once", function()
  local emu

  setup(function()
    emu = helper.start_emulator()
  end)

  teardown(function()
    if emu then emu:stop() end
  end)

  before_each(function()
    emu:reset()
  end)

  -- Starts nginx with the clients named in opts.clients (wxmedia.ngx.new options, as JSON; base_url,
  -- appid and secret default to the emulator's). Returns the nginx object, with .tmp (a folder the
  -- handlers write into) and :stop() that also removes it.
  local function start_nginx(opts)
    local tmp = helper.tmpdir()
    local clients = {}
    for name, o in pairs(opts.clients) do
      -- from_env: only the client's own options; the account and base URL come from opts.env
      local c = o.from_env and {} or { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        retries = 1, backoff = { base = 0.01, max = 0.02 }, tmpdir = tmp }
      for k, v in pairs(o) do if k ~= "from_env" then c[k] = v end end
      clients[name] = c
    end
    local conf = assert(cjson.encode({ tmpdir = tmp, clients = clients, tries = opts.tries }))
    local ngx = nginx_helper.start({
      workers = opts.workers or 4,
      reuseport = true,
      main = opts.main,
      env = opts.env,
      package_path = helper.root .. "/spec/?.lua;",
      http = (opts.http or "") .. "\n"
        .. "  init_by_lua_block { require('ngx_app').init([==[" .. conf .. "]==]) }\n"
        .. "  init_worker_by_lua_block { require('ngx_app').init_worker() }\n",
      server = LOCATIONS,
    })
    ngx.tmp = tmp
    local stop = ngx.stop
    function ngx.stop(self)
      stop(self)
      helper.rmtree(tmp)
    end
    return ngx
  end

  local function json(status, body)
    return status, cjson.decode(body or "")
  end

  local function upload_via(ngx, fixture, query)
    return json(ngx:curl("/upload?" .. (query or "type=image"),
      "--data-binary " .. shell_quote("@" .. helper.fixture(fixture))))
  end

  -- How many of the answers carry a media_id.
  local function uploaded(answers)
    local n = 0
    for _, a in ipairs(answers) do
      if a.res and a.res.media_id then n = n + 1 end
    end
    return n
  end

  local function wait_for(what, fn, seconds)
    for _ = 1, (seconds or 15) * 20 do
      if fn() then return true end
      os.execute("sleep 0.05")
    end
    error("timed out waiting for " .. what)
  end

  -- n uploads of image.jpg, `parallel` at a time, each by its own curl process; returns the answers.
  local function concurrent_uploads(ngx, n, parallel)
    local dir = ngx.tmp .. "/answers"
    assert(os.execute("mkdir -p " .. shell_quote(dir)))
    local cmd = ("seq 1 %d | xargs -P %d -I{} curl -s -o %s --data-binary %s %s"):format(n, parallel,
      shell_quote(dir .. "/{}.json"), shell_quote("@" .. helper.fixture("image.jpg")),
      shell_quote(ngx.base_url .. "/upload?type=image"))
    local _, ok = helper.sh(cmd)
    assert(ok, "curl failed")
    local answers = {}
    for i = 1, n do
      answers[i] = cjson.decode(helper.read(dir .. "/" .. i .. ".json") or "") or {}
    end
    return answers
  end

  it("creates clients in init, and refuses transfers in init and init_worker with a clear error", function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia" } } })
    finally(function() ngx:stop() end)
    local status, state = json(ngx:curl("/state"))
    assert.equal(200, status)
    assert.matches("upload cannot run in the init phase", state.init_error, 1, true)
    assert.matches("upload cannot run in the init_worker phase", state.init_worker_error, 1, true)
    assert.equal(0, #emu:requests())
  end)

  it("uploads from a timer (ngx.timer.at), where init_worker work belongs", function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia" } } })
    finally(function() ngx:stop() end)
    local status = ngx:curl("/timer?type=image&path=" .. helper.fixture("image.jpg"))
    assert.equal(200, status)
    local result
    wait_for("the timer's upload", function()
      local _, t = json(ngx:curl("/timer_result"))
      result = t and t.result
      return type(result) == "table"   -- cjson.null until the timer is done
    end)
    assert.is_nil(result.err)
    assert.is_string(result.res.media_id)
  end)

  it("(a) answers a plain location on the same worker while an upload waits 2 s on WeChat", function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia" } } })
    finally(function() ngx:stop() end)
    emu:fault({ route = "upload", kind = "delay", seconds = 2 })
    local out = ngx.tmp .. "/slow.json"
    os.execute(("(curl -s -o %s --data-binary %s %s; touch %s) >/dev/null 2>&1 &"):format(shell_quote(out),
      shell_quote("@" .. helper.fixture("image.jpg")), shell_quote(ngx.base_url .. "/upload?type=image"),
      shell_quote(out .. ".done")))
    wait_for("the upload to start", function() return helper.read(ngx.tmp .. "/upload-started") end)

    -- one curl, 50 requests: each prints its answer and its own total time
    local urls = {}
    for i = 1, 50 do urls[i] = shell_quote(ngx.base_url .. "/ping") end
    local text = helper.sh("curl -s -w '%{time_total}\\n' " .. table.concat(urls, " "))
    local answered = 0
    for body, seconds in text:gmatch("([^\n]+)\n([%d%.]+)\n") do
      local ping = cjson.decode(body)
      answered = answered + 1
      assert.equal(1, ping.uploading, "the upload was no longer in flight")
      assert.is_true(tonumber(seconds) < 0.05, "a ping took " .. seconds .. " s")
    end
    assert.equal(50, answered)

    wait_for("the upload to finish", function() return helper.read(out .. ".done") end)
    local res = cjson.decode(helper.read(out)).res
    assert.is_string(res and res.media_id)
    assert.equal(1, #emu:requests("upload"))
  end)

  it("without a thread pool still works, blocks its worker, and warns once per worker", function()
    local ngx = start_nginx({ workers = 1, clients = { main = {} } })
    finally(function() ngx:stop() end)
    emu:fault({ route = "upload", kind = "delay", seconds = 2 })
    local out = ngx.tmp .. "/slow.json"
    os.execute(("(curl -s -o %s --data-binary %s %s; touch %s) >/dev/null 2>&1 &"):format(shell_quote(out),
      shell_quote("@" .. helper.fixture("image.jpg")), shell_quote(ngx.base_url .. "/upload?type=image"),
      shell_quote(out .. ".done")))
    wait_for("the upload to start", function() return helper.read(ngx.tmp .. "/upload-started") end)
    -- the worker is inside libcurl: this ping is only answered once the upload is over
    local status, ping = json(ngx:curl("/ping"))
    assert.equal(200, status)
    assert.equal(0, ping.uploading)
    wait_for("the upload to finish", function() return helper.read(out .. ".done") end)
    assert.is_string(cjson.decode(helper.read(out)).res.media_id)

    local _, again = upload_via(ngx, "image.png")
    assert.is_string(again.res.media_id)
    local _, warnings = ngx:error_log():gsub("transfers are blocking this nginx worker's event loop", "")
    assert.equal(1, warnings)
    assert.matches("[warn]", ngx:error_log(), 1, true)
  end)

  it("(b) 200 concurrent uploads across 4 workers make one token request", function()
    local ngx = start_nginx({ workers = 4, clients = { main = {
      thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    -- WeChat takes a second to answer the token request: the uploads arriving meanwhile must wait
    -- for that one answer, not ask again
    emu:fault({ route = "stable_token", kind = "delay", seconds = 1 })
    local answers = concurrent_uploads(ngx, 200, 50)
    local ok, pids, npids = 0, {}, 0
    for _, a in ipairs(answers) do
      if a.res and a.res.media_id then ok = ok + 1 end
      if a.pid and not pids[a.pid] then pids[a.pid], npids = true, npids + 1 end
    end
    assert.equal(200, ok)
    assert.is_true(npids > 1, "all uploads landed on one worker")
    local log = ngx:error_log()
    assert.is_nil(log:find(helper.SECRET, 1, true), "the secret is in the error log")
    assert.is_false(helper.holds_token(log), "an access_token is in the error log")
    assert.equal(1, #emu:requests("stable_token"))
    local uploads, connections, nconn = emu:requests("upload"), {}, 0
    assert.equal(200, #uploads)
    for _, e in ipairs(uploads) do
      if not connections[e.connection] then connections[e.connection], nconn = true, nconn + 1 end
    end
    -- each thread VM keeps its session, so its connection to WeChat: far fewer than one per upload
    assert.is_true(nconn <= 100, nconn .. " connections for 200 uploads")
  end)

  it("uploads from memory, a file handle and a reader through the worker threads, bytes intact", function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia" } } })
    finally(function() ngx:stop() end)
    local jpg = helper.read(helper.fixture("image.jpg"))
    local token = emu:token()
    for _, form in ipairs({ "data", "handle", "reader", "handle&check=1", "reader&check=1" }) do
      local status, doc = json(ngx:curl("/upload_form?form=" .. form .. "&path="
        .. helper.fixture("image.jpg")))
      assert.equal(200, status)
      assert.is_nil(doc.raised, form)
      assert.is_string(doc.res and doc.res.media_id, form .. ": " .. tostring(doc.err))
      local _, body = helper.curl(shell_quote(emu.base_url .. "/cgi-bin/media/get?access_token=" .. token
        .. "&media_id=" .. doc.res.media_id))
      assert.equal(jpg, body, form)
    end
    local names = {}
    for i, e in ipairs(emu:requests("upload")) do names[i] = e.filename end
    assert.same({ "in-memory.jpg", "handle.jpg", "reader.jpg", "handle.jpg", "reader.jpg" }, names)
    -- a bad one is refused in the request with the form's name, as in plain Lua
    local _, doc = json(ngx:curl("/upload_form?type=thumb&form=reader&path=" .. helper.fixture("image.png")))
    assert.equal("cannot upload the reader 'reader.jpg' as thumb: it is a PNG file; thumb takes JPEG",
      doc.err)
    assert.equal(5, #emu:requests("upload"))
    -- a reader handed to the thread backend directly is refused with the reason
    _, doc = json(ngx:curl("/upload_form?form=transport"))
    assert.matches("an upload's reader cannot cross into a worker thread (only plain data does)",
      doc.raised, 1, true)
    assert.equal(5, #emu:requests("upload"))
  end)

  it("uploads a file once for all workers with media_id, the records in the shared dict", function()
    local ngx = start_nginx({ workers = 4, clients = { main = {
      thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    -- the upload takes a second at WeChat: the requests arriving meanwhile must wait for its record
    emu:fault({ route = "upload", kind = "delay", seconds = 1 })
    local dir = ngx.tmp .. "/reuse"
    assert(os.execute("mkdir -p " .. shell_quote(dir)))
    local cmd = ("seq 1 40 | xargs -P 20 -I{} curl -s -o %s %s"):format(shell_quote(dir .. "/{}.json"),
      shell_quote(ngx.base_url .. "/reuse?type=image&path=" .. helper.fixture("image.jpg")))
    assert(select(2, helper.sh(cmd)), "curl failed")
    local ids, reused, pids, npids = {}, 0, {}, 0
    for i = 1, 40 do
      local a = cjson.decode(helper.read(dir .. "/" .. i .. ".json") or "") or {}
      assert.is_table(a.res, "answer " .. i .. ": " .. tostring(a.err))
      ids[a.res.media_id] = true
      if a.res.reused then reused = reused + 1 end
      if not pids[a.pid] then pids[a.pid], npids = true, npids + 1 end
    end
    assert.equal(1, #emu:requests("upload"))
    assert.equal(39, reused)
    assert.same({ [next(ids)] = true }, ids)
    assert.is_true(npids > 1, "all requests landed on one worker")
  end)

  it("reads the account, a token and the base URL from the environment, as every entry point does", function()
    local token = emu:token()
    local ngx = start_nginx({ workers = 2,
      main = "env WECHAT_APPID; env WECHAT_ACCESS_TOKEN; env WXMEDIA_BASE_URL;",
      env = { WECHAT_APPID = helper.APPID, WECHAT_ACCESS_TOKEN = token, WXMEDIA_BASE_URL = emu.base_url },
      clients = { main = { from_env = true, thread_pool = "wxmedia", shared_dict = "wxmedia_tokens" } } })
    finally(function() ngx:stop() end)
    local url = "/reuse?type=image&path=" .. helper.fixture("image.png")
    local _, first = json(ngx:curl(url))
    local _, second = json(ngx:curl(url))
    assert.is_table(first.res, tostring(first.err))
    assert.is_false(first.res.reused)
    assert.is_true(second.res.reused)
    assert.equal(first.res.media_id, second.res.media_id)
    assert.equal(1, #emu:requests("upload"))
    assert.equal(0, #emu:requests("stable_token"))
    assert.equal(1, #emu:requests("token"))    -- this spec's own, for WECHAT_ACCESS_TOKEN
  end)

  it("(c) a token WeChat rejects is refreshed once for all workers", function()
    local ngx = start_nginx({ workers = 4, clients = { main = {
      thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local _, first = upload_via(ngx, "image.jpg")
    assert.is_string(first.res.media_id)
    assert.equal(1, #emu:requests("stable_token"))

    -- the token every worker holds expires at WeChat (the emulator's clock jumps 2 h): every upload
    -- in flight is refused with it, and still only one worker asks for a new one
    emu:clock(7200)
    emu:fault({ route = "stable_token", kind = "delay", seconds = 1 })
    local answers = concurrent_uploads(ngx, 60, 30)
    local ok = uploaded(answers)
    assert.equal(60, ok)
    assert.equal(2, #emu:requests("stable_token"))

  end)

  it("(c) an upload refused with 40001 refreshes once, and the uploads in flight replay on it", function()
    local ngx = start_nginx({ workers = 4, clients = { main = {
      thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local _, first = upload_via(ngx, "image.jpg")
    assert.is_string(first.res.media_id)
    -- the refresh is a force_refresh, which revokes the old token at once: every upload still
    -- carrying it is refused too, and must use the new one instead of fetching again
    emu:fault({ route = "upload", kind = "errcode", errcode = 40001, count = 1 })
    emu:fault({ route = "stable_token", kind = "delay", seconds = 1 })
    local answers = concurrent_uploads(ngx, 40, 20)
    local ok = uploaded(answers)
    assert.equal(40, ok)
    assert.equal(2, #emu:requests("stable_token"))
  end)

  it("the token lock is exclusive, expires when its holder dies, and is released after a failure", function()
    local ngx = start_nginx({ workers = 2, clients = {
      dead = { thread_pool = "wxmedia", base_url = "http://127.0.0.1:1", retries = 0,
        shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local status, t = json(ngx:curl("/locktest"))
    assert.equal(200, status)
    assert.same({ busy = false, busy_err = "timeout", next_holder = true, still_busy = false,
      still_err = "timeout" }, t)

    local _, up = upload_via(ngx, "image.jpg", "client=dead&type=image")
    assert.equal("connect", up.details.kind)
    local _, locks = json(ngx:curl("/locks"))
    assert.same({}, locks.keys)
  end)

  -- n requests at once, each a background curl writing its answer (i.json), its HTTP status and
  -- headers (i.head) and curl's exit status (i.rc, written last); returns their folder.
  local function background(ngx, n, path, curl_args)
    local dir = helper.tmpdir()
    local cmds = {}
    for i = 1, n do
      local f = shell_quote(dir .. "/" .. i)
      cmds[i] = ("(curl -s -D %s.head -o %s.json %s %s; echo $? > %s.rc.tmp; mv %s.rc.tmp %s.rc) "
        .. ">/dev/null 2>&1 &"):format(f, f, curl_args or "", shell_quote(ngx.base_url .. path), f, f, f)
    end
    os.execute(table.concat(cmds, " "))
    return dir
  end

  -- The answers of background(): { rc =, status =, headers =, doc = }, once every curl is done.
  local function answers_of(dir, n, seconds)
    wait_for(n .. " answers", function()
      for i = 1, n do
        if not helper.read(dir .. "/" .. i .. ".rc") then return false end
      end
      return true
    end, seconds or 60)
    local all = {}
    for i = 1, n do
      local head = helper.read(dir .. "/" .. i .. ".head") or ""
      local headers = {}
      for k, v in head:gmatch("([%w%-]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
      all[i] = { rc = tonumber(helper.read(dir .. "/" .. i .. ".rc")), headers = headers,
        status = tonumber(head:match("^HTTP/%S+ (%d+)")),
        doc = cjson.decode(helper.read(dir .. "/" .. i .. ".json") or "") or {} }
    end
    helper.rmtree(dir)
    return all
  end

  local function alive(pid)
    local stat = helper.read("/proc/" .. pid .. "/stat")
    return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
  end

  -- The cause (see wxmedia/ngx/backend.lua): a worker that shuts down gracefully exits as soon as
  -- no timer it must wait for is left, and a request waiting on ngx.run_worker_thread has none.
  for _, signal in ipairs({ "HUP", "QUIT" }) do
    it("answers every upload waiting on a worker thread through a graceful " .. signal
      .. ", with no alert", function()
      local ngx = start_nginx({ workers = 2, clients = { main = { thread_pool = "wxmedia" } } })
      finally(function() ngx:stop() end)
      local _, first = upload_via(ngx, "image.png")    -- the token, fetched before the load
      assert.is_string(first.res.media_id)
      local n = 8
      emu:fault({ route = "upload", kind = "delay", seconds = 3, count = n })
      local dir = background(ngx, n, "/upload?type=image&path=" .. helper.fixture("image.jpg"), "-X POST")
      wait_for(n .. " uploads in flight", function()
        local _, ping = json(ngx:curl("/ping"))
        return ping and ping.uploading == n
      end)
      os.execute("sleep 1")
      assert(os.execute("kill -" .. signal .. " " .. ngx.pid))
      local answers = answers_of(dir, n)
      local ok = 0
      for _, a in ipairs(answers) do
        if a.rc == 0 and a.status == 200 and a.doc.res and a.doc.res.media_id then ok = ok + 1 end
      end
      assert.equal(n, ok)
      assert.equal(n + 1, #emu:requests("upload"))
      if signal == "QUIT" then
        wait_for("the master to exit", function() return not alive(ngx.pid) end)
      else
        wait_for("the old workers to exit", function()
          local _, exits = ngx:error_log():gsub("%] %d+#%d+: exit\n", "")
          return exits >= 2
        end)
      end
      local log = ngx:error_log()
      assert.matches("gracefully shutting down", log, 1, true)
      assert.is_nil(log:find("[alert]", 1, true), "an alert in the error log:\n" .. log)
    end)
  end

  -- The counters of the client named in the query (main by default), from its status location.
  local function counters(ngx, query)
    local status, doc = json(ngx:curl("/status?format=json" .. (query or "")))
    assert.equal(200, status)
    return doc
  end

  -- A JPEG of about 100 KB (the fixture and random trailing bytes), uploaded with curl: its media_id.
  local function big_media(dir)
    local path = helper.write(dir .. "/big.jpg", helper.read(helper.fixture("image.jpg"))
      .. helper.sh("head -c 100000 /dev/urandom"))
    local status, res = emu:upload_with_curl(emu:token(), "image", path)
    assert.equal(200, status)
    return res.media_id
  end

  -- POST an upload of image.jpg (query: "type=image" by default); returns status, headers, answer.
  local function post_upload(ngx, query)
    local dir = helper.tmpdir()
    local url = ngx.base_url .. "/upload?" .. (query or "type=image") .. "&path="
      .. helper.fixture("image.jpg")
    helper.sh(("curl -s -D %s -o %s -X POST %s"):format(shell_quote(dir .. "/h"), shell_quote(dir .. "/b"),
      shell_quote(url)))
    local head, body = helper.read(dir .. "/h") or "", helper.read(dir .. "/b") or ""
    helper.rmtree(dir)
    local headers = {}
    for k, v in head:gmatch("([%w%-]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
    return tonumber(head:match("^HTTP/%S+ (%d+)")), headers, cjson.decode(body) or {}
  end

  it("16 dripping downloads: each stops at its deadline, those without a thread fail fast as busy "
    .. "(503, Retry-After, not retried), and an upload still gets through", function()
    local ngx = start_nginx({ workers = 1, clients = {
      main = { thread_pool = "wxmedia", max_threads = 8, slot_wait = 1, retries = 3 },
      -- 100 KB at 2 KiB/s: 50 s, above the low-speed limit; the deadline is 5 s + 100 KB / 64 KiB/s
      drip = { thread_pool = "wxmedia", max_threads = 8, slot_wait = 1, retries = 0, deadline_base = 5 },
    } })
    finally(function() ngx:stop() end)
    local id = big_media(ngx.tmp)
    emu:fault({ route = "get", kind = "drip", rate = 2048, count = 16 })
    local dir = background(ngx, 16, "/get?client=drip&media_id=" .. id)
    wait_for("8 transfers in the threads", function() return counters(ngx).threads_busy == 8 end)

    -- meanwhile, an upload: 503 with Retry-After while the drips hold every thread, then through
    local status, headers, doc
    local refused = 0
    for _ = 1, 60 do
      status, headers, doc = post_upload(ngx)
      if status ~= 503 then break end
      refused = refused + 1
      assert.equal("busy", doc.details.kind)
      assert.equal(1, doc.details.attempts)      -- retries = 3, and no retry
      assert.is_false(doc.details.retryable)
      assert.equal(doc.details.retry_after, tonumber(headers["retry-after"]))
      os.execute("sleep " .. doc.details.retry_after)
    end
    assert.equal(200, status)
    assert.is_string(doc.res and doc.res.media_id, tostring(doc.err))
    assert.is_true(refused >= 1, "the upload found a free thread while the drips ran")

    local deadline, busy = 0, 0
    for _, a in ipairs(answers_of(dir, 16)) do
      local kind = a.doc.details and a.doc.details.kind
      if kind == "timeout" and a.doc.err:find("took longer than its deadline", 1, true) then
        deadline = deadline + 1
      elseif kind == "busy" and a.status == 503 and a.headers["retry-after"] then
        busy = busy + 1
      else
        error("an answer neither stopped at its deadline nor busy: " .. cjson.encode(a.doc))

      end
    end
    assert.equal(8, deadline)
    assert.equal(8, busy)
    -- a busy transfer never reached WeChat (the emulator logs a drip once it sees the client gone)
    wait_for("the emulator to log the 8 gets", function() return #emu:requests("get") >= 8 end)
    assert.equal(8, #emu:requests("get"))
    local c = counters(ngx)
    assert.equal(0, c.threads_busy)
    assert.equal(8, c.deadlines)
    assert.equal(8 + refused, c.refused)
  end)

  it("stops the transfers whose HTTP clients went away (lua_check_client_abort on), freeing the threads",
    function()
    local ngx = start_nginx({ workers = 1, http = "  lua_check_client_abort on;", clients = {
      main = { thread_pool = "wxmedia", max_threads = 8, slot_wait = 1, retries = 0, deadline_base = 300,
        shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local id = big_media(ngx.tmp)
    emu:fault({ route = "get", kind = "drip", rate = 2048, count = 8 })
    -- each client gives up after 2 s of a download that would take 50 s
    local answers = answers_of(background(ngx, 8, "/get?media_id=" .. id, "--max-time 2"), 8)
    for _, a in ipairs(answers) do assert.equal(28, a.rc) end   -- curl's "timed out"
    wait_for("the 8 transfers to stop", function()
      local c = counters(ngx)
      return c.threads_busy == 0 and c.aborts == 8
    end, 20)
    -- every thread is free: an upload goes through at once
    local status, _, doc = post_upload(ngx)
    assert.equal(200, status)
    assert.is_string(doc.res.media_id)
    local _, locks = json(ngx:curl("/locks"))
    assert.same({}, locks.keys)
    assert.is_nil(ngx:error_log():find("[alert]", 1, true))
  end)

  it("stops them too when the handler registered its own ngx.on_abort and calls wxmedia.ngx.client_aborted() "
    .. "from it; without that call they run on to their deadlines", function()
    local ngx = start_nginx({ workers = 1, http = "  lua_check_client_abort on;", clients = {
      -- 100 KB at 2 KiB/s would take 50 s: far within the deadline of `main`, and over that of `short`
      -- (the abort flags live in lock_dict: a thread VM sees no request, but shared memory it does)
      main = { thread_pool = "wxmedia", max_threads = 8, slot_wait = 1, retries = 0, deadline_base = 300,
        shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" },
      short = { thread_pool = "wxmedia", max_threads = 8, slot_wait = 1, retries = 0, deadline_base = 3,
        shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local id = big_media(ngx.tmp)
    local function kinds() return select(2, json(ngx:curl("/kinds"))).kinds end

    emu:fault({ route = "get", kind = "drip", rate = 2048, count = 4 })
    local answers = answers_of(background(ngx, 4, "/get?own_abort=call&media_id=" .. id, "--max-time 2"), 4)
    for _, a in ipairs(answers) do assert.equal(28, a.rc) end   -- curl's "timed out"
    wait_for("the 4 transfers to stop", function()
      local c = counters(ngx)
      return c.threads_busy == 0 and c.aborts == 4
    end, 20)
    wait_for("the 4 handlers to count their results", function() return (kinds().client_closed or 0) == 4 end)
    assert.same({ client_closed = 4 }, kinds())
    assert.equal(0, counters(ngx).deadlines)

    -- the same handler without the call: nothing tells wxmedia the clients left
    emu:fault({ route = "get", kind = "drip", rate = 2048, count = 2 })
    answers = answers_of(background(ngx, 2, "/get?client=short&own_abort=silent&media_id=" .. id,
      "--max-time 1"), 2)
    for _, a in ipairs(answers) do assert.equal(28, a.rc) end
    wait_for("the 2 transfers to reach their deadlines", function()
      local c = counters(ngx)      -- both clients count in lock_dict
      return c.threads_busy == 0 and c.deadlines == 2
    end, 30)
    wait_for("the 2 handlers to count their results", function() return (kinds().timeout or 0) == 2 end)
    assert.same({ client_closed = 4, timeout = 2 }, kinds())
    assert.equal(4, counters(ngx).aborts)           -- none more
    assert.is_nil(ngx:error_log():find("[alert]", 1, true))
  end)

  it("frees the thread slot of a request ended by ngx.exit in the middle of a transfer", function()
    -- one slot; 100 KB at 2 KiB/s would take 50 s, the deadline stops it after 1 s + 100 KB / 64 KiB/s
    local ngx = start_nginx({ workers = 1, clients = {
      main = { thread_pool = "wxmedia", max_threads = 1, slot_wait = 1, retries = 0, deadline_base = 1 } } })
    finally(function() ngx:stop() end)
    local id = big_media(ngx.tmp)
    emu:fault({ route = "get", kind = "drip", rate = 2048, count = 1 })
    local status = ngx:curl("/get?exit_after=0.3&media_id=" .. id)
    assert.equal(204, status)
    -- the task in the thread runs on to its deadline; then its slot is free again
    assert.equal(1, counters(ngx).threads_busy)
    wait_for("the slot to be freed", function() return counters(ngx).threads_busy == 0 end, 10)
    local _, doc = json(ngx:curl("/get?media_id=" .. id))
    assert.equal(#helper.read(helper.fixture("image.jpg")) + 100000, doc.size, cjson.encode(doc))
    assert.equal(1, counters(ngx).deadlines)
    assert.is_nil(ngx:error_log():find("[alert]", 1, true))
  end)

  it("answers every upload in flight across a graceful reload (HUP), half of them waiting for a slot",
    function()
    local ngx = start_nginx({ workers = 2, clients = { main = { thread_pool = "wxmedia", max_threads = 4,
      slot_wait = 30, retries = 0, shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    local _, first = upload_via(ngx, "image.png")    -- the token, fetched before the load
    assert.is_string(first.res.media_id)
    emu:fault({ route = "upload", kind = "delay", seconds = 2, count = 16 })
    local dir = background(ngx, 16, "/upload?type=image&path=" .. helper.fixture("image.jpg"), "-X POST")
    wait_for("16 uploads in flight", function()
      local c = counters(ngx)
      return c.threads_busy + c.waits >= 16
    end)
    os.execute("sleep 0.3; kill -HUP " .. ngx.pid)
    local ok = 0
    for _, a in ipairs(answers_of(dir, 16)) do
      if a.status == 200 and a.doc.res and a.doc.res.media_id then ok = ok + 1 end
    end
    assert.equal(16, ok)
    assert.is_nil(ngx:error_log():find("[alert]", 1, true))
  end)

  it("fails fast as busy the tasks that wait in nginx's own queue (a pool smaller than max_threads)",
    function()
    -- the helper's pool has 8 threads
    local ngx = start_nginx({ workers = 1, clients = {
      main = { thread_pool = "wxmedia", max_threads = 10, slot_wait = 1, retries = 0 } } })
    finally(function() ngx:stop() end)
    local _, first = upload_via(ngx, "image.png")    -- the token, fetched before the load
    assert.is_string(first.res.media_id)
    emu:fault({ route = "upload", kind = "delay", seconds = 3, count = 10 })
    local ok, busy = 0, 0
    local dir = background(ngx, 10, "/upload?type=image&path=" .. helper.fixture("image.jpg"), "-X POST")
    for _, a in ipairs(answers_of(dir, 10)) do
      if a.doc.res and a.doc.res.media_id then ok = ok + 1 end
      if a.status == 503 and a.doc.err:find("in nginx's queue for a thread", 1, true) then busy = busy + 1 end
    end
    assert.equal(8, ok)
    assert.equal(2, busy)
    assert.equal(1 + 8, #emu:requests("upload"))
    assert.equal(2, counters(ngx).queued)
    assert.matches("%[warn%].-wxmedia: the task waited [%d.]+ s in nginx's queue for a thread: the "
      .. "thread_pool has fewer threads than max_threads %(make them equal%)", ngx:error_log())
  end)

  it("counts for operators in a shared dict, across workers, shown like stub_status", function()
    local ngx = start_nginx({ workers = 2, clients = { main = { thread_pool = "wxmedia", max_threads = 8,
      retries = 1, shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks" } } })
    finally(function() ngx:stop() end)
    emu:fault({ route = "upload", kind = "status", status = 503 })    -- one retry
    for _ = 1, 3 do assert.is_string(select(2, upload_via(ngx, "image.jpg")).res.media_id) end
    local status, text, ctype = ngx:curl("/status")
    assert.equal(200, status)
    assert.matches("^text/plain", ctype)
    local busy, max, names, numbers = text:match("^Threads busy: (%d+) of (%d+)\n([%a_ ]+)\n ([%d ]+)\n$")
    assert.is_string(names, text)
    assert.equal("0", busy)
    assert.equal("16", max)     -- max_threads x 2 workers
    assert.equal("transfers waits refused queued deadlines aborts token_fetches retries", names)
    local values = {}
    for v in numbers:gmatch("%d+") do values[#values + 1] = tonumber(v) end
    -- one token fetch, three uploads and one of them again
    assert.same({ 5, 0, 0, 0, 0, 0, 1, 1 }, values)
    assert.same({ threads_busy = 0, threads_max = 16, transfers = 5, waits = 0, refused = 0, queued = 0,
      deadlines = 0, aborts = 0, token_fetches = 1, retries = 1 }, counters(ngx))
  end)

  it("refuses a max_threads nginx cannot give, and clients of one pool that disagree on it", function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia", max_threads = 8 } },
      tries = {
        { access_token = "x", thread_pool = "big", max_threads = 12 },
        { access_token = "x", thread_pool = "big", max_threads = 12, vm_pool_size = 16 },
        { access_token = "x", thread_pool = "wxmedia", max_threads = 4 },
        { access_token = "x", thread_pool = "other" },
        { access_token = "x", thread_pool = "other2", slot_wait = -1 },
        { access_token = "x", thread_pool = "other3", status_dict = "nope" },
      } })
    finally(function() ngx:stop() end)
    local _, state = json(ngx:curl("/state"))
    local tries = state.tries
    assert.matches("bad option 'max_threads' to 'new' (12 is above lua_worker_thread_vm_pool_size, 10 by "
      .. "default", tries[1], 1, true)
    assert.equal("ok", tries[2])
    assert.matches("thread pool wxmedia has max_threads = 8 from another client", tries[3], 1, true)
    assert.equal("ok", tries[4])
    assert.matches("bad option 'slot_wait' to 'new' (a number >= 0 expected)", tries[5], 1, true)
    assert.matches("bad option 'status_dict' to 'new' (no lua_shared_dict named 'nope')", tries[6], 1, true)
  end)

  it("answers a failure with client:send_error: JSON and the status, 503 with Retry-After when busy",
    function()
    local ngx = start_nginx({ workers = 1, clients = { main = { thread_pool = "wxmedia", max_threads = 1,
      slot_wait = 0, retries = 0 } } })
    finally(function() ngx:stop() end)
    local status, _, doc = post_upload(ngx, "send_error=1&type=nothing")
    assert.equal(400, status)
    assert.equal("input", doc.kind)
    assert.matches("unknown media type 'nothing'", doc.error, 1, true)
    assert.is_nil(doc.errcode)
    emu:fault({ route = "stable_token", kind = "delay", seconds = 2 })
    local dir = background(ngx, 1, "/upload?type=image&path=" .. helper.fixture("image.jpg"), "-X POST")
    wait_for("the upload to take the thread", function() return counters(ngx).threads_busy == 1 end)
    local headers
    status, headers, doc = post_upload(ngx, "send_error=1&type=image")
    assert.equal(503, status)
    assert.equal("1", headers["retry-after"])
    assert.equal("busy", doc.kind)
    assert.matches("no worker thread of pool wxmedia was free within 0 s", doc.error, 1, true)
    assert.is_string(answers_of(dir, 1)[1].doc.res.media_id)
  end)

  describe("(d) gives through the worker thread what plain Lua gives", function()
    local ngx, plain, dead

    before_each(function()
      ngx = start_nginx({ workers = 2, clients = {
        main = { thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", retries = 0 },
        -- nothing listens on port 1: a connect failure (another account, so no token is cached)
        dead = { thread_pool = "wxmedia", base_url = "http://127.0.0.1:1", retries = 0,
          appid = helper.APPID2, secret = helper.SECRET2 },
        retry = { thread_pool = "wxmedia", shared_dict = "wxmedia_tokens", retries = 1 },
        refused = { thread_pool = "wxmedia", retries = 0, secret = BAD_SECRET },
      } })
      -- own stores: the emulator forgets its tokens before each test
      plain = assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        retries = 0, token_store = wxmedia.store.memory() }))
      dead = assert(wxmedia.new({ appid = helper.APPID2, secret = helper.SECRET2,
        base_url = "http://127.0.0.1:1", retries = 0, token_store = wxmedia.store.memory() }))
    end)

    after_each(function()
      if ngx then ngx:stop() end
    end)

    -- the same value as it looks after a trip through JSON, as nginx's answers do
    local function as_json(v)
      return cjson.decode(cjson.encode(v))
    end

    -- a curl message may name the milliseconds it waited
    local function steady(msg)
      return type(msg) == "string" and msg:gsub("%d+ ms", "N ms") or msg
    end

    it("a successful upload and get", function()
      local res = assert(plain:upload("image", helper.fixture("image.png")))
      local _, through = json(ngx:curl("/upload?type=image&path=" .. helper.fixture("image.png"), "-X POST"))
      assert.is_table(through.res)
      local function shape(r)
        local s = {}
        for k, v in pairs(r) do s[k] = type(v) end
        return s
      end
      assert.same(shape(as_json(res)), shape(through.res))
      assert.equal("image", through.res.type)

      local path = helper.tmpdir() .. "/copy"
      local got = assert(plain:get(through.res.media_id, path))
      helper.rmtree(path:match("^(.*)/"))
      got.path = nil
      local _, via = json(ngx:curl("/get?media_id=" .. through.res.media_id))
      assert.same(as_json(got), via.res)
      assert.equal(#helper.read(helper.fixture("image.png")), via.size)
    end)

    it("an unknown media_id (errcode 40007)", function()
      local path = helper.tmpdir() .. "/none"
      local res, err, details = plain:get("no-such-media", path)
      helper.rmtree(path:match("^(.*)/"))
      assert.is_nil(res)
      local _, via = json(ngx:curl("/get?media_id=no-such-media"))
      assert.is_nil(via.res)
      assert.equal(err, via.err)
      assert.same(as_json(details), via.details)
      assert.equal(40007, via.details.errcode)
    end)

    it("a file that is not media (no request sent)", function()
      local file = helper.fixture("README.md")
      local _, err, details = plain:upload("image", file)
      local _, via = json(ngx:curl("/upload?type=image&path=" .. file, "-X POST"))
      assert.equal("input", via.details.kind)
      assert.equal(err, via.err)
      assert.same(as_json(details), via.details)
    end)

    it("a secret WeChat refuses", function()
      local refused = assert(wxmedia.new({ appid = helper.APPID, secret = BAD_SECRET, base_url = emu.base_url,
        retries = 0, token_store = wxmedia.store.memory() }))
      local _, err, details = refused:upload("image", helper.fixture("image.jpg"))
      local _, via = json(ngx:curl("/upload?client=refused&type=image&path=" .. helper.fixture("image.jpg"),
        "-X POST"))
      assert.equal("token", via.details.kind)
      assert.equal(err, via.err)
      assert.same(as_json(details), via.details)
    end)

    it("a 503 that one retry cures (the wait is an ngx.sleep in nginx)", function()
      local retrying = assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET,
        base_url = emu.base_url, retries = 1, backoff = { base = 0.01, max = 0.02 },
        token_store = wxmedia.store.memory() }))
      emu:fault({ route = "upload", kind = "status", status = 503 })
      local res = retrying:upload("image", helper.fixture("image.gif"))
      assert.is_string(res and res.media_id)
      emu:fault({ route = "upload", kind = "status", status = 503 })
      local _, via = json(ngx:curl("/upload?client=retry&type=image&path=" .. helper.fixture("image.gif"),
        "-X POST"))
      assert.is_string(via.res and via.res.media_id)
      local statuses = {}
      for i, e in ipairs(emu:requests("upload")) do statuses[i] = e.status end
      assert.same({ 503, 200, 503, 200 }, statuses)
    end)

    it("a connect failure", function()
      local _, err, details = dead:upload("image", helper.fixture("image.jpg"))
      local _, via = json(ngx:curl("/upload?client=dead&type=image&path=" .. helper.fixture("image.jpg"),
        "-X POST"))
      assert.equal("connect", via.details.kind)
      assert.equal(steady(err), steady(via.err))
      details = as_json(details)
      details.message, via.details.message = steady(details.message), steady(via.details.message)
      assert.same(details, via.details)
    end)
  end)

  describe("(e) serve-by-id", function()
    local ngx, token

    setup(function()
      ngx = start_nginx({ workers = 2, clients = { main = { thread_pool = "wxmedia",
        shared_dict = "wxmedia_tokens" } } })
    end)

    teardown(function()
      if ngx then ngx:stop() end
    end)

    before_each(function()
      token = emu:token()
    end)

    -- GET /serve: status, headers (lower-case names), body
    local function serve(media_id, query)
      local dir = helper.tmpdir()
      helper.sh(("curl -s -D %s -o %s %s"):format(shell_quote(dir .. "/h"), shell_quote(dir .. "/b"),
        shell_quote(ngx.base_url .. "/serve?media_id=" .. media_id .. (query or ""))))
      local head, body = helper.read(dir .. "/h") or "", helper.read(dir .. "/b") or ""
      helper.rmtree(dir)
      local headers = {}
      for k, v in head:gmatch("([%w%-]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
      return tonumber(head:match("^HTTP/%S+ (%d+)")), headers, body
    end

    local function media_id_of(mtype, fixture)
      local path = fixture:find("/", 1, true) and fixture or helper.fixture(fixture)
      local status, res = emu:upload_with_curl(token, mtype, path)
      assert.equal(200, status)
      return res.media_id or res.thumb_media_id
    end

    for _, case in ipairs({
      { "image", "image.jpg", "image/jpeg" },
      { "image", "image.png", "image/png" },
      { "voice", "voice.mp3", "audio/mpeg" },
    }) do
      it("sends " .. case[2] .. " byte for byte with its Content-Type and Content-Length", function()
        local status, headers, body = serve(media_id_of(case[1], case[2]))
        local want = helper.read(helper.fixture(case[2]))
        assert.equal(200, status)
        assert.equal(case[3], headers["content-type"])
        assert.equal(tostring(#want), headers["content-length"])
        assert.is_true(body == want, "the bytes differ")
      end)
    end

    it("names the file in Content-Disposition with attachment = true", function()
      local id = media_id_of("image", "image.gif")
      local status, headers = serve(id, "&attachment=1")
      assert.equal(200, status)
      assert.equal('attachment; filename="' .. id .. '.gif"', headers["content-disposition"])
      status, headers = serve(id)
      assert.equal(200, status)
      assert.is_nil(headers["content-disposition"])
    end)

    it("streams a file of several chunks intact", function()
      -- a JPEG with 300 KB of trailing bytes: still a JPEG, and nearly five 64 KiB chunks
      local dir = helper.tmpdir()
      local big = helper.write(dir .. "/big.jpg", helper.read(helper.fixture("image.jpg"))
        .. helper.sh("head -c 300000 /dev/urandom"))
      local status, headers, body = serve(media_id_of("image", big))
      local want = helper.read(big)
      helper.rmtree(dir)
      assert.equal(200, status)
      assert.equal(tostring(#want), headers["content-length"])
      assert.is_true(body == want, "the bytes differ")
    end)

    it("follows a video's video_url and sends the video", function()
      local status, headers, body = serve(media_id_of("video", "video.mp4"))
      assert.equal(200, status)
      assert.equal("video/mp4", headers["content-type"])
      assert.is_true(body == helper.read(helper.fixture("video.mp4")), "the bytes differ")
    end)

    it("answers an unknown media_id with 404 and a JSON error, not a file", function()
      local status, headers, body = serve("no-such-media")
      assert.equal(404, status)
      assert.matches("^application/json", headers["content-type"])
      local doc = cjson.decode(body)
      assert.equal(40007, doc.errcode)
      assert.equal("api", doc.kind)
      assert.matches("media_id", doc.error)
    end)

    it("answers WeChat's failure with 502 and a JSON error", function()
      local id = media_id_of("image", "image.jpg")
      emu:fault({ route = "get", kind = "status", status = 503, count = 10 })
      local status, headers, body = serve(id)
      assert.equal(502, status)
      assert.matches("^application/json", headers["content-type"])
      assert.equal("http", cjson.decode(body).kind)
    end)

    it("leaves no temp file behind", function()
      serve(media_id_of("image", "image.gif"))
      serve("no-such-media")
      for _, name in ipairs(helper.ls(ngx.tmp)) do
        assert.is_nil(name:match("^wxmedia%-serve%-"), "left behind: " .. name)
      end
    end)
  end)
end)
