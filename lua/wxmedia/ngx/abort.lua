-- Stopping the transfers of a request whose HTTP client went away.
--
-- With `lua_check_client_abort on`, nginx calls a request's ngx.on_abort handler when its client
-- closes the connection. The transfer runs meanwhile in a thread VM, which cannot see the request's
-- Lua state; what both see is a lua_shared_dict. So the handler sets a flag there, keyed per request,
-- and the transfer's progress function in the thread (wxmedia/ngx/thread.lua) polls it about ten
-- times a second and stops the transfer (kind client_closed). The flag is set only while a transfer
-- of the request runs, and removed when the last one ends; a transfer the request starts after its
-- client left is refused before it takes a thread.
--
-- The first transfer of a request registers the handler. Only one ngx.on_abort handler is allowed per
-- request: a request that registered its own must call wxmedia.ngx.client_aborted() from it.
local ngx = ngx
local pairs, pcall, tostring = pairs, pcall, tostring

local _M = {}

local CTX_KEY = "wxmedia.abort"
-- a flag outlives a worker that dies with it set: it expires
local FLAG_TTL = 3600
local seq = 0
local noted = false

-- Marks the request's transfers as stopped: running ones through their flags, later ones at start.
local function mark(state)
  state.closed = true
  if state.running > 0 then
    for dict in pairs(state.dicts) do dict:set(state.key, true, FLAG_TTL) end
  end
end

local function new_state(ctx)
  seq = seq + 1
  local state = { key = "wxmedia:abort:" .. ngx.worker.pid() .. ":" .. seq, running = 0, dicts = {} }
  ctx[CTX_KEY] = state
  return state
end

-- The state of the current request: { key =, closed =, running =, dicts = }; nil in a timer (no
-- client). The first call registers the ngx.on_abort handler.
function _M.request()
  if ngx.get_phase() == "timer" then return nil end
  local ctx = ngx.ctx
  local state = ctx[CTX_KEY]
  if state then return state end
  state = new_state(ctx)
  local called, ok, err = pcall(ngx.on_abort, function() mark(state) end)
  if not called then ok, err = nil, ok end
  if not ok and err ~= "duplicate call" and not noted then
    noted = true
    ngx.log(ngx.NOTICE, "wxmedia: a transfer whose HTTP client went away runs on to its deadline (",
      tostring(err), "); set `lua_check_client_abort on;` to stop it")
  end
  return state
end

-- A transfer of the request starts, watched through dict (or through nothing when dict is nil).
function _M.started(state, dict)
  state.running = state.running + 1
  if dict then state.dicts[dict] = true end
end

function _M.finished(state)
  state.running = state.running - 1
  if state.running == 0 and state.closed then
    for dict in pairs(state.dicts) do dict:delete(state.key) end
  end
end

-- syntax: wxmedia.ngx.client_aborted()
-- For a request whose own ngx.on_abort handler is registered before its first transfer: call this
-- from that handler, so that wxmedia stops the request's transfers too.
function _M.client_aborted()
  local ctx = ngx.ctx
  mark(ctx[CTX_KEY] or new_state(ctx))
end

return _M
