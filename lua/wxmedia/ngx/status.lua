-- The counters of wxmedia.ngx, for operators: how many transfers are in a worker thread now, and
-- since nginx started how many ran, waited for a thread slot, were refused one (HTTP 503), waited
-- in nginx's own queue, were stopped at their deadline or because their HTTP client went away, and
-- how many token fetches and retries there were. They live in a lua_shared_dict, so one status
-- answer covers every worker (and the old workers of a reload); without a dict, each worker counts
-- its own. Clients that share a dict (or a worker) share the counters.
--
-- client:status() shows them like nginx's stub_status: a line, then names over numbers.
--   Threads busy: 3 of 16
--   transfers waits refused queued deadlines aborts token_fetches retries
--    1234 12 2 0 1 3 4 7
local cjson = require "cjson.safe"

local concat, format = table.concat, string.format
local ipairs, setmetatable, tonumber = ipairs, setmetatable, tonumber

local _M = {}
local mt = { __index = _M }

-- The counters, in the order they are shown. "busy" goes up and down: the transfers in a thread now.
_M.COUNTERS = { "transfers", "waits", "refused", "queued", "deadlines", "aborts", "token_fetches", "retries" }

local PREFIX = "wxmedia:"

-- Without a dict: the worker's own counters, one set for all its clients (module state is per
-- worker), with a shared dict's incr and get.
local values = {}
local worker_counters = {
  incr = function(_, key, n, init)
    values[key] = (values[key] or init) + n
    return values[key]
  end,
  get = function(_, key) return values[key] end,
}

-- dict: a lua_shared_dict (ngx.shared.NAME), or nil to count in this worker only.
-- capacity: the number of threads all workers may use at once (max_threads x workers).
function _M.new(dict, capacity)
  return setmetatable({ dict = dict or worker_counters, capacity = capacity }, mt)
end

function _M.incr(self, name, n)
  -- a full dict refuses a new key: a counter is not worth a failure of the call it counts
  self.dict:incr(PREFIX .. name, n or 1, 0)
end

-- { busy =, capacity =, transfers =, ... }
function _M.read(self)
  local t = { busy = tonumber(self.dict:get(PREFIX .. "busy")) or 0, capacity = self.capacity }
  for _, name in ipairs(_M.COUNTERS) do t[name] = tonumber(self.dict:get(PREFIX .. name)) or 0 end
  return t
end

-- format: "text" (default, like stub_status), "json", or "table".
function _M.report(self, fmt)
  local t = self:read()
  if fmt == "table" then return t end
  if fmt == "json" then
    local doc = { threads_busy = t.busy, threads_max = t.capacity }
    for _, name in ipairs(_M.COUNTERS) do doc[name] = t[name] end
    return cjson.encode(doc)
  end
  local numbers = {}
  for i, name in ipairs(_M.COUNTERS) do numbers[i] = format("%d", t[name]) end
  return format("Threads busy: %d of %d\n%s\n %s\n", t.busy, t.capacity, concat(_M.COUNTERS, " "),
    concat(numbers, " "))
end

return _M
