-- media_id records: WeChat keeps a temporary medium 3 days, and a media_id may be sent again and
-- again within them. A record remembers the upload of one content (by its SHA-256) for one
-- account and type, so that the next call for the same bytes reuses the media_id instead of
-- uploading again, until the medium nears its end (3 days minus a margin); then the file is
-- uploaded anew. Records live in a store (memory, file, OpenResty shared dict, any get/set
-- table), so every process and worker sharing the store shares the uploads.
--   key  wxmedia:media:<account>:<type>:<sha256>   -> JSON record, ttl = the medium's remaining life
--   key  wxmedia:media_id:<account>:<media_id>     -> the record's key (for forget and a 40007)
-- <account> is the appid, plus the server's address when it is not WeChat's (see token.account).
local error, pcall, require, tostring, type = error, pcall, require, tostring, type
local format = string.format
local cjson = require("cjson.safe").new()
local errors = require "wxmedia.errors"
local media = require "wxmedia.media"
local store_mod = require "wxmedia.store"
local token = require "wxmedia.token"

local _M = {}

_M.LIFETIME = 3 * 24 * 3600      -- WeChat's life of a temporary medium
_M.DEFAULT_MARGIN = 6 * 3600     -- a media_id handed out stays valid at least this long
_M.LOCK_TIMEOUT = 60             -- waiting for another process's upload; beyond it we upload too
_M.HASH_CACHE_MAX = 256

-- The store for a client's records: its media_store option (checked here, so that the message
-- names the option), else the token store.
function _M.store_for(opts, token_store)
  local s = opts.media_store
  if s == nil then return token_store end
  if (type(s) ~= "table" and type(s) ~= "userdata") or type(s.get) ~= "function"
    or type(s.set) ~= "function" then
    error("bad option 'media_store' to 'new' (a store with get and set methods expected)", 3)
  end
  return store_mod.wrap(s)
end

function _M.check_margin(margin, fname, level)
  if margin == nil then return end
  if type(margin) ~= "number" or margin < 0 or margin >= _M.LIFETIME then
    error(format("bad option 'reuse_margin' to '%s' (seconds from 0 to %d expected)", fname,
      _M.LIFETIME - 1), level + 1)
  end
end

function _M.record_key(account, mtype, sha256)
  return "wxmedia:media:" .. account .. ":" .. mtype .. ":" .. sha256
end

function _M.id_key(account, media_id)
  return "wxmedia:media_id:" .. account .. ":" .. media_id
end

-- Uploads of one content are single-flight under this lock. Keys share a lock by the first two
-- hex digits of the hash: a file store makes one lock file per name, and this bounds them to 256
-- per account and type while keeping two different files from waiting on each other most of the time.
local function lock_key(account, mtype, sha256)
  return "wxmedia:media:" .. account .. ":" .. mtype .. ":" .. sha256:sub(1, 2) .. ":lock"
end

-- The account of a client's records, or nil when it has no appid (a bare access_token names none).
local function account_of(client)
  if type(client.appid) ~= "string" or client.appid == "" then return nil end
  return token.account(client.appid, client.opts.base_url)
end

-- Hashes by path, size and mtime, so that an unchanged file is read once per process. A file
-- rewritten within the same nanosecond tick at the same size would be missed: that is the
-- trade-off every size+mtime check makes (make, rsync).
local hashes, hash_count = {}, 0

local function content_hash(c, path, st)
  local k = format("%d:%.9f:%s", st.size, st.mtime, path)
  local h = hashes[k]
  if h then return h end
  local sum, err = c.sha256_file(path)
  if not sum then return errors.input(format("media_id: cannot read '%s': %s", path, tostring(err))) end
  if hash_count >= _M.HASH_CACHE_MAX then hashes, hash_count = {}, 0 end
  hashes[k], hash_count = sum, hash_count + 1
  return sum
end

local function read(store, key)
  local text = store:get(key)
  local rec = type(text) == "string" and cjson.decode(text)
  if type(rec) == "table" and type(rec.media_id) == "string" and type(rec.expires_at) == "number" then
    return rec
  end
  return nil
end

-- The result a caller gets: upload's table, plus reused and expires_at (the client's clock).
local function result(rec, reused)
  return { type = rec.type, media_id = rec.media_id, thumb_media_id = rec.thumb_media_id,
    created_at = rec.created_at, expires_at = rec.expires_at, reused = reused }
end

local function save(client, store, account, key, old, res, sha256, size, started)
  local now = client.now()
  local rec = { type = res.type, media_id = res.media_id, thumb_media_id = res.thumb_media_id,
    created_at = res.created_at, sha256 = sha256, size = size,
    -- counted from before the request: WeChat's own 3 days start later, never earlier
    uploaded_at = started, expires_at = started + _M.LIFETIME }
  local ttl = rec.expires_at - now
  if ttl <= 0 then return rec end
  -- A store that cannot write costs the next call an upload; this call has its media_id.
  store:set(key, cjson.encode(rec), ttl)
  store:set(_M.id_key(account, rec.media_id), key, ttl)
  if old and old.media_id ~= rec.media_id then store:delete(_M.id_key(account, old.media_id)) end
  return rec
end

-- syntax: res, err, details = reuse.media_id(client, type, path [, opts])
-- opts: upload's options, plus reuse_margin (seconds; the client's, else 6 h) and lock_timeout.
function _M.media_id(client, mtype, path, opts)
  opts = opts or {}
  local margin = opts.reuse_margin
  if margin == nil then margin = client.opts.reuse_margin end
  if margin == nil then margin = _M.DEFAULT_MARGIN end
  local account = account_of(client)
  if not account then
    return errors.input("media_id: reusing media_ids needs the account's appid; give appid to "
      .. "wxmedia.new with access_token or token_provider")
  end
  local c, why = client.load_core()
  if not c then return errors.fail("io", "media_id: the C core wxmedia.core cannot be loaded: " .. why) end
  -- upload's checks first: a file that cannot be sent is neither hashed nor recorded
  local limits = opts.limits or client.opts.limits
  -- (its stat is the core's, so the answer carries the size and mtime the hash cache keys on)
  local st, msg, details = media.check(mtype, path, { limits = limits, stat = c.stat })
  if not st then return nil, msg, details end
  local sha256, herr, hdetails = content_hash(c, path, st)
  if not sha256 then return nil, herr, hdetails end

  local store = client.media_store
  local key = _M.record_key(account, mtype, sha256)
  -- the key names the type, so a record found is this type's (whatever WeChat called it)
  local function usable(rec)
    return rec ~= nil and client.now() < rec.expires_at - margin
  end
  local rec = read(store, key)
  if usable(rec) then return result(rec, true) end

  -- Single-flight: one process uploads while the others wait, then read its record. A lock that
  -- cannot be had in time (a stuck holder) costs one extra upload, not the caller's call.
  local l
  if store.lock then
    l = store:lock(lock_key(account, mtype, sha256), opts.lock_timeout or client.opts.lock_timeout
      or _M.LOCK_TIMEOUT)
  end
  local function unlock() if l then l:unlock() end end
  rec = read(store, key)
  if usable(rec) then
    unlock()
    return result(rec, true)
  end
  local started = client.now()
  local ok, res, err, edetails = pcall(client.upload, client, mtype, path, opts)
  if not ok then
    unlock()
    error(res, 0)
  end
  if not res then
    unlock()
    return nil, err, edetails
  end
  -- Changed while it was being sent: what went up is not what was hashed, so record nothing.
  local after = c.stat(path)
  if after and after.size == st.size and after.mtime == st.mtime then
    res = result(save(client, store, account, key, rec, res, sha256, st.size, started), false)
  else
    res.reused = false
  end
  unlock()
  return res
end

-- syntax: forgotten = reuse.forget(client, media_id)
-- Drops the record that holds media_id (WeChat refused it, or the caller knows it is gone), so
-- the next call for that content uploads again. Returns true when a record was known, else false.
-- Without the lock: if another process renews the record meanwhile, the worst is one more upload.
function _M.forget(client, media_id)
  local account = account_of(client)
  if not account or media_id == "" then return false end
  local store = client.media_store
  local idk = _M.id_key(account, media_id)
  local key = store:get(idk)
  if type(key) ~= "string" then return false end
  local rec = read(store, key)
  -- only if it still holds this media_id: a newer upload's record must survive
  if rec and rec.media_id == media_id then store:delete(key) end
  store:delete(idk)
  return true
end

return _M
