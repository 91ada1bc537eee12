-- The command line's commands: upload, get, token. Each is a function of the run (wxmedia.cli's
-- Run: its options, its client, say and fail) and returns the exit status.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local media = require "wxmedia.media"

local io, ipairs, math, os, string, type = io, ipairs, math, os, string, type

local _M = {}

-- "photo_2_.jpg" from "../../x/photo (2).jpg": the last path component, each run of bytes other
-- than letters, digits, '.', '_' and '-' made one '_', no leading '.' or '-' (no hidden files, no
-- "..", nothing that reads as an option). The server chooses this name: it never chooses the folder.
function _M.safe_filename(name)
  if type(name) ~= "string" then return nil end
  name = name:match("[^/\\]*$"):gsub("[^A-Za-z0-9._-]+", "_"):gsub("^[.-]+", "")
  if name == "" or #name > 200 or not name:find("[A-Za-z0-9]") then return nil end
  return name
end

-- The name `get` writes to when no -o is given.
function _M.default_output(media_id, got)
  local name = _M.safe_filename(got.filename)
  if name then return name end
  local ext = media.extension_for(got.content_type) or (got.video_url and "mp4") or "bin"
  return (_M.safe_filename(media_id) or "media") .. "." .. ext
end

-- Several files without --reuse go up --parallel at once (4 by default), through upload_many; the
-- lines still come in the order of the files.
local PARALLEL = 4

local function upload_all(run, mtype, files)
  local list = {}
  for i, file in ipairs(files) do list[i] = { mtype, file } end
  local results = run.client:upload_many(list, { concurrency = run.opts.parallel or PARALLEL })
  local i = 0
  return function()
    i = i + 1
    local r = results[i]
    if r then return r[1], r[2], r[3] end
  end
end

function _M.upload(run)
  local mtype, files = run.opts.args[1], {}
  for k = 2, #run.opts.args do files[#files + 1] = run.opts.args[k] end
  local status = run.EXIT.ok
  local batch = not run.opts.reuse and (#files > 1 or run.opts.parallel) and upload_all(run, mtype, files)
  for _, file in ipairs(files) do
    local res, err, details
    if batch then
      res, err, details = batch()
    else
      run.bar.start(file)
      if run.opts.reuse then
        res, err, details = run.client:media_id(mtype, file)
      else
        res, err, details = run.client:upload(mtype, file)
      end
      run.bar.finish()
    end
    if res then
      local id = res.media_id or res.thumb_media_id
      local line = id
      if run.opts.reuse then line = line .. "  " .. (res.reused and "reused" or "uploaded") end
      if #files > 1 then line = line .. "  " .. file end
      run:say({ file = file, type = res.type or mtype, media_id = id,
                thumb_media_id = res.thumb_media_id, created_at = res.created_at,
                reused = res.reused, expires_at = res.expires_at }, line)
    else
      local code = run:fail(file, err, details, { file = file, type = mtype })
      if status == run.EXIT.ok then status = code end
      if code == run.EXIT.interrupted then break end
    end
  end
  return status
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- -o -: the bytes go to stdout, for pipes. They pass through a private temp file first, so that an
-- error, or JSON in place of the medium, never reaches stdout half-written.
local function get_to_stdout(run, media_id)
  local tmpfile = os.tmpname()
  run.bar.start(media_id)
  local got, err, details = run.client:get(media_id, tmpfile)
  run.bar.finish()
  local f
  if got then
    f, err = io.open(tmpfile, "rb")
    details = { kind = "io" }
  end
  if not f then
    os.remove(tmpfile)
    return run:fail(media_id, err, details)
  end
  while true do
    local chunk = f:read(65536)
    if not chunk then break end
    run.stdout:write(chunk)
  end
  f:close()
  os.remove(tmpfile)
  run.stdout:flush()
  return run.EXIT.ok
end

function _M.get(run)
  local media_id, output = run.opts.args[1], run.opts.output
  if output == "-" then return get_to_stdout(run, media_id) end
  -- Without -o the name is known only once WeChat answers: download beside it, then rename.
  local target = output or string.format(".wxmedia-%s-%d.part",
    _M.safe_filename(media_id) or "media", math.random(1e9))
  run.bar.start(media_id)
  local got, err, details = run.client:get(media_id, target)
  run.bar.finish()
  if not got then
    if not output then os.remove(target) end
    return run:fail(media_id, err, details, { media_id = media_id })
  end
  if not output then
    output = _M.default_output(media_id, got)
    local moved, merr
    if exists(output) then
      merr = output .. " already exists; not overwriting it (choose another name with -o)"
    else
      moved, merr = os.rename(target, output)
    end
    if not moved then
      os.remove(target)
      return run:fail(media_id, merr, { kind = "io" }, { media_id = media_id })
    end
  end
  run:say({ media_id = media_id, path = output, size = got.size, content_type = got.content_type,
            filename = got.filename, video_url = got.video_url }, output)
  return run.EXIT.ok
end

function _M.token(run)
  local token, err, details = run.client:token()
  if not token then return run:fail(nil, err, details, {}) end
  run:say({ access_token = token }, token)
  return run.EXIT.ok
end

return _M
