-- luacheck: globals wrk response
-- wrk script (run inside wrk, LuaJIT): POSTs the file named by WRK_FILE as multipart/form-data with
-- one part "media", the request benchmark 1 and 2 make, and fails loudly on any answer without a
-- media_id. Benchmark 5 uses it to load the emulator with nothing but wrk in front of it.
local f = assert(io.open(os.getenv("WRK_FILE"), "rb"))
local data = f:read("*a")
f:close()
local name = os.getenv("WRK_FILENAME") or "photo.jpg"
local boundary = "------------------------wxmediabench0123456789"

wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="media"; filename="' .. name .. '"\r\n'
  .. "Content-Type: application/octet-stream\r\n\r\n"
  .. data .. "\r\n--" .. boundary .. "--\r\n"

function response(status, _, body)
  if status ~= 200 or not body:find('"media_id"', 1, true) then
    error("upload refused: HTTP " .. status .. " " .. body:sub(1, 200))
  end
end
