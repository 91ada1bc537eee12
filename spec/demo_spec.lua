-- `make demo` (examples/demo.lua): the README's first command must work and clean up after itself.
local helper = require "helper"

local q = helper.shell_quote

describe("make demo", function()
  local tmp

  setup(function() tmp = helper.tmpdir() end)
  teardown(function() helper.rmtree(tmp) end)

  -- Runs the demo with its temp folder inside ours; returns output, exit status.
  local function demo(lua_init)
    local cmd = "cd " .. q(helper.root) .. " && env TMPDIR=" .. q(tmp) .. " " .. q(helper.lua)
      .. (lua_init and (" -e " .. q(lua_init)) or "") .. " examples/demo.lua 2>&1; echo \"exit:$?\""
    local out = helper.sh(cmd)
    local body, code = out:match("^(.*)exit:(%d+)\n$")
    return body, tonumber(code)
  end

  local function nothing_left()
    assert.same({}, helper.ls(tmp))
    local ps = helper.sh("ps -eo args")
    assert.is_nil(ps:find(tmp, 1, true), "a process of the demo is still running")
  end

  it("round-trips every sample byte for byte, prints the table, stops the emulator", function()
    local out, code = demo()
    assert.equal(0, code, out)
    assert.matches("type%s+file%s+media_id%s+size%s+up ms%s+down ms%s+result", out)
    for _, name in ipairs { "image.jpg", "image.png", "image.gif", "thumb.jpg", "voice.amr", "voice.mp3",
                            "video.mp4" } do
      -- type, file, shortened media_id, size, up ms, down ms, ok
      local row = "\n" .. name:match("^%a+") .. "%s+" .. name:gsub("%.", "%%.")
        .. "%s+%S+%.%.%.%S+%s+[%d.]+ k?B%s+%d+%s+%d+%s+ok"
      assert.matches(row, out)
    end
    assert.matches("7 of 7 samples came back byte for byte", out)
    nothing_left()
  end)

  it("exits 1 and still stops the emulator when something fails", function()
    local out, code = demo('package.preload["wxmedia"] = function() error("broken on purpose") end')
    assert.equal(1, code, out)
    assert.matches("broken on purpose", out)
    nothing_left()
  end)
end)
