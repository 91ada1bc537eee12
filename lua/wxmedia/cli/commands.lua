-- The command line's commands: upload, get, send, token. Each is a function of the run (wxmedia.cli's
-- Run: its options, its client, say and fail) and returns the exit status.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local media = require "wxmedia.media"
local output = require "wxmedia.cli.output"
local transport = require "wxmedia.transport"

local io, ipairs, math, os, string, tostring, type = io, ipairs, math, os, string, tostring, type

local _M = {}

-- What the messages call "-".
local STDIN = "standard input"

-- "photo_2_.jpg" from "../../x/photo (2).jpg": the last path component, each run of bytes other
-- than letters, digits, '.', '_' and '-' made one '_', no leading '.' or '-' (no hidden files, no
-- "..", nothing that reads as an option). The server chooses this name: it never chooses the folder.
function _M.safe_filename(name)
  if type(name) ~= "string" then return nil end
  name = name:match("[^/\\]*$"):gsub("[^A-Za-z0-9._-]+", "_"):gsub("^[.-]+", "")
  if name == "" or #name > 200 or not name:find("[A-Za-z0-9]") then return nil end
  return name
end

-- The name `get` writes to when no -o is given, from what the server answered (on_file's info, or
-- get's result): its file name, else the media_id with the content type's extension.
function _M.default_output(media_id, got)
  local name = _M.safe_filename(got.filename)
  if name then return name end
  local ext = media.extension_for(got.content_type) or (got.video_url and "mp4") or "bin"
  return (_M.safe_filename(media_id) or "media") .. "." .. ext
end

-- upload's "-": standard input read to its end into a private temp file (WeChat answers 412 to a
-- chunked body: the upload needs the length), at most the type's limit. Returns its path, or nil,
-- message, details.
local function stdin_file(run, mtype)
  local function failed(message, kind)
    return nil, "cannot upload " .. STDIN .. ": " .. message, { kind = kind }
  end
  if run.is_terminal(0) then return failed("it is a terminal; pipe or redirect the file into it", "input") end
  local sp, serr = run:spool()
  if not sp then return failed(serr, "io") end
  local path = sp:path("stdin")
  local f, err = io.open(path, "wb")
  if not f then return failed(err, "io") end
  local limit, size = media.DEFAULT_LIMITS[mtype], 0
  while true do
    local chunk, rerr = run.stdin:read(65536)
    if not chunk then
      if rerr then
        f:close()
        return failed("cannot read it: " .. tostring(rerr), "input")
      end
      break
    end
    size = size + #chunk
    if size > limit then
      f:close()
      -- not read further: an endless stream must not fill the disk
      return failed(string.format("it is over %s, the limit for %s", media.size_text(limit), mtype), "input")
    end
    local ok, werr = f:write(chunk)
    if not ok then
      f:close()
      return failed("cannot write its temp file: " .. tostring(werr), "io")
    end
  end
  local ok, cerr = f:close()
  if not ok then return failed("cannot write its temp file: " .. tostring(cerr), "io") end
  return path
end

local function upload_one(run, mtype, file)
  local path = file
  if file == "-" then
    local err, details
    path, err, details = stdin_file(run, mtype)
    if not path then return nil, err, details end
  end
  run.bar.start(file == "-" and STDIN or file)
  local res, err, details
  if run.opts.reuse then
    res, err, details = run.client:media_id(mtype, path)
  else
    res, err, details = run.client:upload(mtype, path)
  end
  run.bar.finish()
  if not res and file == "-" then
    -- the temp file's path means nothing to the person who piped the bytes in
    err = err:gsub(path:gsub("%p", "%%%0"), STDIN)
  end
  return res, err, details
end

-- Several files (none of them standard input) without --reuse go up --parallel at once (by
-- default upload_many's concurrency), through upload_many; the lines still come in the order of
-- the files.

local function upload_all(run, mtype, files)
  local list = {}
  for i, file in ipairs(files) do list[i] = { mtype, file } end
  local results = run.client:upload_many(list, { concurrency = run.opts.parallel })
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
  local stdin = false
  for _, file in ipairs(files) do stdin = stdin or file == "-" end
  local batch = not run.opts.reuse and not stdin and (#files > 1 or run.opts.parallel)
    and upload_all(run, mtype, files)
  for _, file in ipairs(files) do
    local res, err, details
    if batch then
      res, err, details = batch()
    else
      res, err, details = upload_one(run, mtype, file)
    end
    if res then
      local id = res.media_id or res.thumb_media_id
      local line = output.printable(id)
      if run.opts.reuse then line = line .. "  " .. (res.reused and "reused" or "uploaded") end
      if #files > 1 then line = line .. "  " .. file end
      run:say({ file = file, type = res.type or mtype, media_id = id,
                thumb_media_id = res.thumb_media_id, created_at = res.created_at,
                reused = res.reused, expires_at = res.expires_at }, line)
    else
      local code = run:failure("upload", file == "-" and STDIN or file, err, details,
        { file = file, type = mtype })
      if status == run.EXIT.ok then status = code end
      if code == run.EXIT.interrupted then break end
    end
  end
  return status
end

-- -o -: the bytes go to stdout, for pipes. They pass through a private temp folder first, so that
-- an error, or JSON in place of the medium, never reaches stdout half-written; the file is unlinked
-- as soon as it is open, so that from then on only this process holds it.
local function get_to_stdout(run, media_id)
  if run.is_terminal(1) then
    return run:failure("get", media_id, "standard output is a terminal; redirect it to a file or a pipe, "
      .. "or use -o FILE", { kind = "input" })
  end
  local sp, serr = run:spool()
  if not sp then return run:failure("get", media_id, serr, { kind = "io" }) end
  local path = sp:path("medium")
  run.bar.start(media_id)
  local got, err, details = run.client:get(media_id, path, { no_replace = true })
  run.bar.finish()
  if not got then return run:failure("get", media_id, err, details) end
  local f, oerr = io.open(path, "rb")
  os.remove(path)
  if not f then
    return run:failure("get", media_id, "cannot read its temp file: " .. tostring(oerr), { kind = "io" })
  end
  while true do
    local chunk = f:read(65536)
    if not chunk then break end
    run.out.write(chunk)
  end
  f:close()
  return run.EXIT.ok
end

-- Without -o: the name comes from WeChat's answer, chosen by on_file before a byte of the body is
-- written; an existing name (a file, even one we cannot read, a link, a FIFO...) is refused there,
-- before the download, and no_replace makes the final rename refuse one that appeared meanwhile.
local function get_named_by_server(run, media_id)
  local function on_file(info)
    local name = _M.default_output(media_id, info)
    if transport.lstat(name) then
      return nil, name .. " already exists; not replacing it (choose another name with -o)"
    end
    return name
  end
  -- never written: on_file names the file before anything is
  local placeholder = string.format(".wxmedia-%s-%d.part", _M.safe_filename(media_id) or "media",
    math.random(1e9))
  return run.client:get(media_id, placeholder, { no_replace = true, on_file = on_file })
end

function _M.get(run)
  local media_id, out = run.opts.args[1], run.opts.output
  if out == "-" then return get_to_stdout(run, media_id) end
  run.bar.start(media_id)
  local got, err, details
  if out then
    got, err, details = run.client:get(media_id, out)
  else
    got, err, details = get_named_by_server(run, media_id)
  end
  run.bar.finish()
  if not got then return run:failure("get", media_id, err, details, { media_id = media_id }) end
  run:say({ media_id = media_id, path = got.path, size = got.size, content_type = got.content_type,
            filename = got.filename, video_url = got.video_url }, got.path)
  return run.EXIT.ok
end

-- send OPENID TYPE FILE|TEXT: a customer-service message. A medium is uploaded first (its recorded
-- media_id reused with --reuse), as upload does; the media_id is printed as upload prints it, even
-- when the message then fails: with --reuse, trying again uploads nothing.
function _M.send(run)
  local openid, mtype, what = run.opts.args[1], run.opts.args[2], run.opts.args[3]
  local message = { type = mtype }
  local res
  if mtype == "text" then
    message.content = what
  else
    local err, details
    res, err, details = upload_one(run, mtype, what)
    if not res then
      return run:failure("upload", what == "-" and STDIN or what, err, details,
        { openid = openid, type = mtype, file = what })
    end
    message.media_id = res.media_id
  end
  local line = res and output.printable(res.media_id)
  if line and run.opts.reuse then line = line .. "  " .. (res.reused and "reused" or "uploaded") end
  local sent, err, details = run.client:send(openid, message)
  if not sent then
    if line and not run.opts.json then run.out.write(line, "\n") end
    return run:failure("send a message to", openid, err, details,
      { openid = openid, type = mtype, file = res and what or nil, media_id = res and res.media_id })
  end
  if run.opts.json then
    run:say({ openid = openid, type = mtype, file = res and what or nil, media_id = res and res.media_id,
      reused = res and res.reused, sent = true })
  elseif line then
    run:say(nil, line)
  end
  return run.EXIT.ok
end

function _M.token(run)
  local token, err, details = run.client:token()
  if not token then return run:failure(nil, nil, err, details, {}) end
  run:say({ access_token = token }, token)
  return run.EXIT.ok
end

return _M
