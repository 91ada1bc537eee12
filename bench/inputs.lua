-- The benchmarks' inputs, made at run time from the small real fixtures so that nothing big is
-- committed: a JPEG of any size is the fixture with COM (comment) segments inserted after SOI, a
-- valid JPEG every decoder skips through; an MP4 of any size is the fixture with a `free` box
-- appended, a valid MP4 every demuxer skips. Both keep their magic bytes, so the client's format
-- check and the emulator's sniffing see what they would see in a real photo or video.
local lib = require "lib"

local inputs = {}

local function fixture(name)
  return assert(lib.read(lib.root .. "/spec/fixtures/media/" .. name), "missing fixture " .. name)
end

-- Filler that no compressor shrinks (a plain LCG), so no layer can cheat with a run of zeros.
local function filler(n, seed)
  local out, x = {}, seed or 1
  local chunk = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    chunk[#chunk + 1] = x % 256
    if #chunk == 4096 or i == n then
      out[#out + 1] = string.char(table.unpack(chunk))
      chunk = {}
    end
  end
  return table.concat(out)
end

-- One filler block, reused: making 10 MB of LCG bytes in Lua would take seconds.
local BLOCK = 65533
local block

local function bytes(n)
  block = block or filler(BLOCK, 7)
  local parts = {}
  while n > 0 do
    local k = math.min(n, BLOCK)
    parts[#parts + 1] = block:sub(1, k)
    n = n - k
  end
  return table.concat(parts)
end

-- A JPEG of exactly `size` bytes.
function inputs.jpeg(path, size)
  local src = fixture("image.jpg")
  local need = size - #src
  assert(need >= 0, "a jpeg cannot be smaller than the fixture")
  local parts = { src:sub(1, 2) }
  while need > 0 do
    -- a COM segment: FF FE, a 2-byte length that counts itself, then up to 65533 bytes
    local n = math.min(need - 4, BLOCK)
    -- never leave a remainder too small for a segment of its own
    local rest = need - (n + 4)
    if rest > 0 and rest < 4 then n = n - 4 end
    assert(n >= 0, "size not reachable with COM segments")
    parts[#parts + 1] = "\255\254" .. string.pack(">I2", n + 2) .. bytes(n)
    need = need - (n + 4)
  end
  parts[#parts + 1] = src:sub(3)
  local data = table.concat(parts)
  assert(#data == size, "jpeg size")
  return lib.write(path, data)
end

-- An MP4 of exactly `size` bytes.
function inputs.mp4(path, size)
  local src = fixture("video.mp4")
  local n = size - #src
  assert(n >= 8, "an mp4 cannot be that small")
  local data = src .. string.pack(">I4", n) .. "free" .. bytes(n - 8)
  assert(#data == size, "mp4 size")
  return lib.write(path, data)
end

-- The files every benchmark uses, made once per run in the run's temp folder.
function inputs.make()
  local dir = lib.mkdir(lib.tmp .. "/inputs")
  local large = math.floor(lib.env_number("BENCH_LARGE_BYTES", 10 * 1000 * 1000))
  local small = math.floor(lib.env_number("BENCH_SMALL_BYTES", 100 * 1000))
  return {
    jpeg64k = inputs.jpeg(dir .. "/photo-64k.jpg", 64 * 1024),
    jpeg_small = inputs.jpeg(dir .. "/photo-100k.jpg", small),
    jpeg_large = inputs.jpeg(dir .. "/photo-10m.jpg", large),
    mp4_small = inputs.mp4(dir .. "/video-100k.mp4", small),
    mp4_large = inputs.mp4(dir .. "/video-10m.mp4", large),
    large_bytes = large,
    small_bytes = small,
  }
end

return inputs
