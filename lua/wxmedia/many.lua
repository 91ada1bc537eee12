-- Many transfers at once: client:upload_many and client:get_many. The transport's multi moves the
-- bytes of up to `concurrency` transfers at once on one thread (the C core's multi: a connection
-- each); this file holds the policy around them, the same as for one call (wxmedia.client): each
-- item's checks, the access_token and one replay after WeChat refuses it, retries with backoff
-- (wxmedia.retry's rule). It does no I/O of its own.
--
-- What a batch adds to a loop of single calls: a token WeChat refuses is replaced once for the whole
-- batch (every item sent with it is replayed on the new one), and an item waiting for its retry does
-- not hold the others up: its connection goes to the next item.
local error, ipairs, pcall, setmetatable = error, ipairs, pcall, setmetatable
local huge, remove = math.huge, table.remove
local answer = require "wxmedia.answer"
local errors = require "wxmedia.errors"
local retry = require "wxmedia.retry"
local source = require "wxmedia.source"

local _M = {}

_M.DEFAULT_CONCURRENCY = 4

local Batch = {}
Batch.__index = Batch

-- {====== the clock ======
-- Waits for a retry are kept on the batch's own clock: the client's (which a test may stop), moved
-- on by every wait the batch makes (an injected sleep that does not sleep still moves it).

local function now(b)
  local t = b.wall()
  if t > b.t then b.t = t end
  return b.t
end

local function waited(b, seconds)
  b.t = now(b) + seconds
end

-- }======

-- {====== the queues ======

local function push_ready(b, item, first)
  if first then
    b.head = b.head - 1
    b.ready[b.head] = item
  else
    b.tail = b.tail + 1
    b.ready[b.tail] = item
  end
end

-- The next item to start: a ready one, else one whose retry is due.
local function next_item(b)
  if b.head <= b.tail then
    local item = b.ready[b.head]
    b.ready[b.head], b.head = nil, b.head + 1
    return item
  end
  local waiting = b.waiting
  if #waiting == 0 then return nil end
  local t = now(b)
  for k, item in ipairs(waiting) do
    if item.at <= t then
      remove(waiting, k)
      return item
    end
  end
  return nil
end

-- Seconds until the first retry is due, or nil when none waits.
local function next_due(b)
  local first
  for _, item in ipairs(b.waiting) do
    if not first or item.at < first then first = item.at end
  end
  if not first then return nil end
  local d = first - now(b)
  return d > 0 and d or 0
end

-- }======

-- {====== an item's end ======

local function settle(b, item, res, msg, details)
  b.results[item.i] = { res, msg, details }
  item.file, item.send = nil, nil     -- bytes spooled for it go to the collector
  b.done = b.done + 1
  if not res then
    b.failed = b.failed + 1
    -- WeChat no longer knows this media_id: a record of it must not hand it out again
    if details and details.errcode == 40007 and b.client.records and item.media_id then
      b.client.records:forget(item.media_id)
    end
  end
  if b.on_item then b.on_item(item.i, res, msg, details) end
  if b.batch_progress then b.batch_progress(b.done, b.total, b.bytes) end
end

-- The item's attempt failed: a later attempt (wxmedia.retry's rule), or its end.
local function attempt_failed(b, item, _, msg, details)
  local wait = retry.after_failure(b.policy, item.attempt, details)
  if not wait then return settle(b, item, nil, msg, details) end
  local on_retry = b.policy.on_retry
  if on_retry then on_retry(item.attempt, msg, details, wait, item.i) end
  item.at = now(b) + wait
  b.waiting[#b.waiting + 1] = item
end

-- A token WeChat refused is replaced once per batch: the items sent with it after that replay on
-- the new one without asking again.
local function refresh(b, tok, code, what)
  if b.refreshed[tok] then return true end
  local ok, msg, details = b.client.tokens:rejected(tok, code, what)
  if ok then b.refreshed[tok] = true end
  return ok, msg, details
end

-- An exchange with a token failed: replayed once on a fresh token when WeChat refused the token,
-- else the attempt failed (wxmedia.client's with_token, for one item of many).
local function exchange_failed(b, item, _, msg, details)
  local tokens = b.client.tokens
  local code = details and details.errcode
  if not errors.is_token_errcode(code) then
    if code then tokens:worked(item.tok) end
    return attempt_failed(b, item, nil, msg, details)
  end
  if item.replayed then return attempt_failed(b, item, tokens:refused(item.what, code)) end
  local ok, rmsg, rdetails = refresh(b, item.tok, code, item.what)
  if not ok then return attempt_failed(b, item, nil, rmsg, rdetails) end
  item.replayed, item.replay = true, true
  push_ready(b, item, true)
end

local function within(what, msg, details)
  return nil, what .. ": " .. msg, details
end

local function file_result(res, path)
  return { path = res.path or path, size = res.size, content_type = res.content_type,
    filename = res.filename }
end

-- What the transport answered for an upload item.
local function upload_ended(b, item, res, msg, details)
  if not res then return exchange_failed(b, item, within(item.what, msg, details)) end
  local doc, m, d = answer.decode(item.what, res)
  if not doc then return exchange_failed(b, item, nil, m, d) end
  local r, e, dd = answer.upload(item.file.type, doc)
  if not r then return exchange_failed(b, item, nil, e, dd) end
  b.client.tokens:worked(item.tok)
  return settle(b, item, r)
end

-- What the transport answered for a get item: the file, JSON with a video's URL (then fetched on
-- the same slot), or a failure.
local function get_ended(b, item, res, msg, details)
  local what = item.what
  if item.url then   -- the video's CDN download, no token
    if not res then return attempt_failed(b, item, within(what, msg, details)) end
    if not res.file then
      if res.status ~= 200 then
        return attempt_failed(b, item, errors.http(what .. ": its video_url", res.status))
      end
      return attempt_failed(b, item, errors.fail("api",
        what .. ": its video_url answered text, not the video", { status = res.status }))
    end
    local r = file_result(res, item.path)
    r.video_url = item.url
    return settle(b, item, r)
  end
  if not res then return exchange_failed(b, item, within(what, msg, details)) end
  if res.file then
    b.client.tokens:worked(item.tok)
    return settle(b, item, file_result(res, item.path))
  end
  local doc, m, d = answer.decode(what, res)
  if not doc then return exchange_failed(b, item, nil, m, d) end
  local url = answer.video_url(doc)
  if not url then
    return exchange_failed(b, item, errors.fail("api", what .. ": WeChat answered JSON without the file",
      { status = res.status }))
  end
  b.client.tokens:worked(item.tok)
  item.url, item.replay = url, true
  push_ready(b, item, true)
end

-- }======

-- {====== an item's start ======

-- The transfer's progress function: the item's and the batch's, or nil when the caller gave neither.
local function progress_of(b, item)
  local item_progress, batch_progress = b.item_progress, b.batch_progress
  if not item_progress and not batch_progress then return nil end
  local i, up = item.i, b.op == "upload"
  return function(dltotal, dlnow, ultotal, ulnow)
    local moved = up and ulnow or dlnow
    b.bytes, item.moved = b.bytes + (moved - item.moved), moved
    local r
    if item_progress then r = item_progress(i, dltotal, dlnow, ultotal, ulnow) end
    if batch_progress then batch_progress(b.done, b.total, b.bytes) end
    return r
  end
end

local function start_transfer(b, item, ticket, msg, details)
  if not ticket then return attempt_failed(b, item, within(item.what, msg, details)) end
  b.inflight[ticket] = item
  b.running = b.running + 1
end

local STARTS = {}

-- An item's source, checked at its start (upload's checks, wxmedia.source), made ready to be sent
-- at every attempt. A one-shot source (a reader, a pipe) is read into memory here, at most the type's
-- limit, which check enforced: a batch replays every item a refused token failed and retries each on
-- its own, which a stream read once could not do (it would fail where a path goes through), and a
-- slow reader would hold up every transfer of the wait it runs in. A seekable handle is read again
-- from its position at each attempt, unless the backend takes no reader (as upload does).
-- Returns true, or nil, message, details (kind input).
local function prepare_upload(b, item)
  local file, send, details = source.ready(item.type, item.source, b.policy.check,
    b.client.takes_readers and "once" or "all", progress_of(b, item))
  if not file then return nil, send, details end
  item.file, item.send, item.what = file, send, "cannot upload " .. source.name(file)
  return true
end

function STARTS.upload(b, item)
  if not item.send then
    local ok, msg, details = prepare_upload(b, item)
    if not ok then return settle(b, item, nil, msg, details) end
  end
  local tok, msg, details = b.client.tokens:get()
  if not tok then return attempt_failed(b, item, nil, msg, details) end
  item.tok = tok
  local file = item.file
  local body
  body, msg, details = source.body(file)      -- a path, { data = }, or a handle's reader from its start
  if not body then return attempt_failed(b, item, nil, msg, details) end
  return start_transfer(b, item, b.multi:upload(tok, file.type, body, item.send))
end

function STARTS.get(b, item)
  if item.rejected then return settle(b, item, nil, item.rejected[1], item.rejected[2]) end
  if item.url then
    return start_transfer(b, item, b.multi:fetch(item.url, item.path, item.fetch_args))
  end
  local tok, msg, details = b.client.tokens:get()
  if not tok then return attempt_failed(b, item, nil, msg, details) end
  item.tok = tok
  return start_transfer(b, item, b.multi:get(tok, item.media_id, item.path, item.args))
end

local function start(b, item)
  if item.replay then
    item.replay = nil
  else
    item.attempt, item.replayed, item.url, item.moved = item.attempt + 1, false, nil, 0
  end
  return STARTS[b.op](b, item)
end

-- }======

local function run(b)
  while b.done < b.total do
    while b.running < b.concurrency do
      local item = next_item(b)
      if not item then break end
      start(b, item)
    end
    if b.done >= b.total then break end
    local due = next_due(b)
    if b.running > 0 then
      local ticket, res, msg, details = b.multi:wait(due)
      if ticket then
        local item = b.inflight[ticket]
        b.inflight[ticket], b.running = nil, b.running - 1
        if b.op == "upload" then upload_ended(b, item, res, msg, details)
        else get_ended(b, item, res, msg, details) end
      elseif due then
        waited(b, due)
      end
    elseif due then
      b.sleep(due)
      waited(b, due)
    else
      error("wxmedia.many: items left with nothing to run (a bug)")
    end
  end
end

-- op: "upload" or "get"; items: { i, type, source } (source: what upload takes, its shape checked) or
-- { i, media_id, path }, checked by the client.
-- opts: the call's options; policy: the client's policy for them (wxmedia.client).
-- Returns results (in input order, { res, err, details } each) and the count of failures, or
-- nil, message, details when the batch cannot run at all (the core cannot be loaded).
function _M.run(client, op, items, opts, policy)
  local total = #items
  local results = {}
  if total == 0 then return results, 0 end
  local concurrency = opts and opts.concurrency or _M.DEFAULT_CONCURRENCY
  local multi, err, details = client.transport:multi(concurrency)
  if not multi then return nil, err, details end
  local b = setmetatable({
    client = client, op = op, total = total, results = results, done = 0, failed = 0,
    multi = multi, inflight = {}, running = 0, concurrency = concurrency,
    ready = {}, head = 1, tail = 0, waiting = {}, refreshed = {}, bytes = 0,
    policy = policy, sleep = policy.sleep or client.sleep, wall = client.now, t = -huge,
    item_progress = opts and opts.item_progress, batch_progress = opts and opts.batch_progress,
    on_item = opts and opts.on_item,
  }, Batch)
  for _, item in ipairs(items) do
    item.attempt = 0
    push_ready(b, item)
  end
  if op == "get" then
    local fetch_args = { allow_private = client.allow_private_urls or nil }
    for _, item in ipairs(items) do
      local progress = progress_of(b, item)
      item.args = { jssdk = policy.jssdk or nil, progress = progress }
      item.fetch_args = progress and { allow_private = fetch_args.allow_private, progress = progress }
        or fetch_args
    end
  end
  -- an error raised in the batch (a progress function's, an interrupt) stops every transfer
  -- still running (their temp files removed), then goes on up
  local ok, raised = pcall(run, b)
  if not ok then
    multi:cancel()
    error(raised, 0)
  end
  return results, b.failed
end

return _M
