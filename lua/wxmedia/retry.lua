-- Retry policy: which failures may pass on a later attempt, and exponential backoff with full
-- jitter between attempts (every waiting client picks a random point of the window, so a crowd
-- that failed together does not come back together).
local math_min, math_random, type = math.min, math.random, type

local _M = {}

_M.DEFAULT_RETRIES = 3
_M.DEFAULT_BACKOFF = { base = 0.2, max = 5 }

-- The window after the n-th failed attempt is min(max, base * 2^(n-1)); the wait is uniform in it.
function _M.delay(attempt, backoff, random)
  backoff = backoff or _M.DEFAULT_BACKOFF
  local base = backoff.base or _M.DEFAULT_BACKOFF.base
  local max = backoff.max or _M.DEFAULT_BACKOFF.max
  local window = math_min(max, base * 2 ^ (attempt - 1))
  return window * (random or math_random)()
end

-- After the n-th attempt failed with these details: the seconds to wait before the next one, or nil
-- when the failure is final (not retryable, or `retries` retries were made). Sets details.attempts.
-- The one rule for a single call (run) and for the items of a batch (wxmedia.many).
function _M.after_failure(policy, n, details)
  if type(details) ~= "table" then return nil end
  details.attempts = n
  if not details.retryable or n > (policy.retries or _M.DEFAULT_RETRIES) then return nil end
  return _M.delay(n, policy.backoff, policy.random)
end

-- Calls attempt() until it succeeds, fails for good, or `retries` retries were made.
-- policy: { retries =, backoff =, sleep = function(s), on_retry = function(attempt, msg, details, delay),
-- random = function() -> [0,1) }. attempt() returns a result, or nil, message, details (details.retryable).
-- The final failure's details.attempts says how many attempts were made. Arguments after attempt
-- are passed to it after n, so that a caller needs no closure per call.
function _M.run(policy, attempt, ...)
  local n = 0
  while true do
    n = n + 1
    local res, message, details = attempt(n, ...)
    if res ~= nil then return res end
    local wait = _M.after_failure(policy, n, details)
    if not wait then return nil, message, details end
    if policy.on_retry then policy.on_retry(n, message, details, wait) end
    if policy.sleep then policy.sleep(wait) end
  end
end

return _M
