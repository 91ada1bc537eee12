-- media_id records: WeChat keeps a temporary medium 3 days, and a media_id may be sent again and
-- again within them. A record remembers the upload of one content (by its SHA-256) for one
-- account and type, so that the next call for the same bytes reuses the media_id instead of
-- uploading again, until the medium nears its end (3 days minus a margin); then the file is
-- uploaded anew. Records live in a store (memory, file, OpenResty shared dict, any get/set
-- object), so every process and worker sharing the store shares the uploads.
--   key  wxmedia:media:<account>:<type>:<sha256>   -> JSON record, ttl = the medium's remaining life
--   key  wxmedia:media_id:<account>:<media_id>     -> the record's key (for forget and a 40007)
-- <account> is the appid, plus the server's address when it is not WeChat's (see token.account).
-- media_id() works through the client's public methods (check, upload): the file is checked once.
-- Bytes in memory are hashed as they are; a reader or file handle is first read whole into memory
-- (at most the type's limit), so that the hash recorded is the hash of the very bytes sent.
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type
local format = string.format
local cjson = require("cjson.safe").new()
local config = require "wxmedia.config"
local errors = require "wxmedia.errors"
local source = require "wxmedia.source"
local store_mod = require "wxmedia.store"
local transport = require "wxmedia.transport"

local _M = {}

_M.LIFETIME = 3 * 24 * 3600      -- WeChat's life of a temporary medium
_M.DEFAULT_MARGIN = 6 * 3600     -- a media_id handed out stays valid at least this long
_M.LOCK_TIMEOUT = 60             -- waiting for another process's upload; beyond it we upload too
_M.HASH_CACHE_MAX = 256

-- Raises, at the caller's caller, for a reuse_margin that is not 0 to LIFETIME - 1 seconds.
function _M.check_margin(margin, fname, level)
  if margin == nil then return end
  if type(margin) ~= "number" or margin ~= margin or margin < 0 or margin >= _M.LIFETIME then
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

local Records = {}
Records.__index = Records

-- opts: { store =, account = (see token.account), now = function() -> wall seconds,
--   margin = (default DEFAULT_MARGIN), lock_timeout = (default LOCK_TIMEOUT) }.
function _M.new(opts)
  return setmetatable({ store = opts.store, account = opts.account, now = opts.now,
    margin = opts.margin or _M.DEFAULT_MARGIN, lock_timeout = opts.lock_timeout or _M.LOCK_TIMEOUT }, Records)
end

-- Hashes by path, size and mtime, so that an unchanged file is read once per process. A file
-- rewritten within the same nanosecond tick at the same size would be missed: that is the
-- trade-off every size+mtime check makes (make, rsync).
local hashes, hash_count = {}, 0

-- The SHA-256 of a checked file (client:check's table), or nil, message, details.
local function content_hash(file)
  if file.data then return transport.sha256(file.data) end
  local k = format("%d:%.9f:%s", file.size, file.mtime or 0, file.path)
  local h = hashes[k]
  if h then return h end
  local sum, err, details = transport.sha256_file(file.path)
  if not sum then return nil, format("cannot read %s: %s", file.path, tostring(err)), details end
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

-- The record of this content while it has more than margin seconds of life left, else nil.
function Records.find(self, mtype, sha256, margin)
  local rec = read(self.store, _M.record_key(self.account, mtype, sha256))
  if rec and self.now() < rec.expires_at - (margin or self.margin) then return rec end
  return nil
end

-- Records an upload made at `started` (before its request: WeChat's own 3 days start later).
function Records.save(self, mtype, sha256, res, size, started)
  local key = _M.record_key(self.account, mtype, sha256)
  local old = read(self.store, key)
  local rec = { type = res.type, media_id = res.media_id, thumb_media_id = res.thumb_media_id,
    created_at = res.created_at, sha256 = sha256, size = size,
    uploaded_at = started, expires_at = started + _M.LIFETIME }
  local ttl = rec.expires_at - self.now()
  if ttl <= 0 then return rec end
  -- A store that cannot write costs the next call an upload; this call has its media_id.
  self.store:set(key, cjson.encode(rec), ttl)
  self.store:set(_M.id_key(self.account, rec.media_id), key, ttl)
  if old and old.media_id ~= rec.media_id then self.store:delete(_M.id_key(self.account, old.media_id)) end
  return rec
end

-- Drops the record that holds media_id (WeChat refused it, or the caller knows it is gone), so
-- the next call for that content uploads again. Returns true when a record was known, else false.
-- Without the lock: if another process renews the record meanwhile, the worst is one more upload.
function Records.forget(self, media_id)
  if media_id == "" then return false end
  local idk = _M.id_key(self.account, media_id)
  local key = self.store:get(idk)
  if type(key) ~= "string" then return false end
  local rec = read(self.store, key)
  -- only if it still holds this media_id: a newer upload's record must survive
  if rec and rec.media_id == media_id then self.store:delete(key) end
  self.store:delete(idk)
  return true
end

-- The result a caller gets: upload's table, plus reused and expires_at (the client's clock).
local function result(rec, reused)
  return { type = rec.type, media_id = rec.media_id, thumb_media_id = rec.thumb_media_id,
    created_at = rec.created_at, expires_at = rec.expires_at, reused = reused }
end

-- Under the content's lock: another process's fresh upload, else ours.
local function upload_once(client, records, file, sha256, margin, opts)
  local rec = records:find(file.type, sha256, margin)
  if rec then return result(rec, true) end
  local started = records.now()
  local res, err, details = client:upload(file.type, file, opts)
  if not res then return nil, err, details end
  -- Changed while it was being sent: what went up is not what was hashed, so record nothing.
  local after = file.path and transport.stat(file.path)
  if not file.path or (after and after.size == file.size and after.mtime == file.mtime) then
    return result(records:save(file.type, sha256, res, file.size, started), false)
  end
  res.reused = false
  return res
end

-- upload's options among media_id's (the others are reuse's own).
local function upload_options(opts)
  local o
  for k, v in pairs(opts) do
    if k ~= "reuse_margin" and k ~= "lock_timeout" then
      o = o or {}
      o[k] = v
    end
  end
  return o
end

-- syntax: res, err, details = reuse.media_id(client, records, type, file [, opts])
-- file: what client:upload takes. opts: upload's options, plus reuse_margin and lock_timeout (else
-- the records' own).
function _M.media_id(client, records, mtype, file, opts)
  opts = opts or {}
  -- upload's checks first: a file that cannot be sent is neither hashed nor recorded
  local msg, details
  if not source.checked(file, mtype) then
    file, msg, details = client:check(mtype, file, opts.limits and { limits = opts.limits })
    if not file then return nil, msg, details end
  end
  file, msg, details = source.spool(file)
  if not file then return nil, msg, details end
  local sha256, herr, hdetails = content_hash(file)
  if not sha256 then return nil, herr, hdetails end
  local margin = opts.reuse_margin or records.margin
  local rec = records:find(mtype, sha256, margin)
  if rec then return result(rec, true) end
  -- Single-flight: one process uploads while the others wait, then read its record. A lock that
  -- cannot be had in time (a stuck holder) costs one extra upload, not the caller's call.
  return store_mod.locked(records.store, lock_key(records.account, mtype, sha256),
    opts.lock_timeout or records.lock_timeout, upload_once, client, records, file, sha256, margin,
    upload_options(opts))
end

-- The failure of media_id for a client that has no appid to key records by.
function _M.no_account()
  return errors.fail("config", "media_id: reusing media_ids needs the account's appid; give appid to "
    .. "wxmedia.new (or set " .. config.ENV.appid .. ") with access_token or token_provider",
    { option = "appid" })
end

return _M
