-- Every code example of README.md runs (issue 14): each fenced block, in README order, is run against
-- the emulator (spec/readme_runner.lua says how, and what an example gets), or the README says next
-- to it, in a readme_spec marker, that it is not code or why it is not run (spec/readme_blocks.lua
-- holds the grammar). The blocks are read when this file loads, so a new example is run as soon as
-- it is in the README. What is README-specific lives here: the drivers that call a function an
-- example defines, and the requests made to the example nginx.
-- Lua code and the wxmedia command run on both interpreters; the rest (nginx, make, curl) once.
local helper = require "helper"
local readme_blocks = require "readme_blocks"
local runner = require "readme_runner"
local cjson = require "cjson.safe"

local q = helper.shell_quote

local README = assert(helper.read(helper.root .. "/README.md"), "no README.md")
local extracted, marker_problems = readme_blocks.extract(README)
local units, plan_problems = readme_blocks.plan(extracted)

-- A message as WeChat posts it to the account's callback, parsed (the auto-reply example's msg).
local OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"

-- Lua code appended to an example that defines a function and never calls it: the caller.
local DRIVERS = {
  -- "an auto-reply that sends the same image all week": two messages get the same image's media_id,
  -- in a passive reply to the user who wrote
  reply_welcome = ([==[
local msg = { FromUserName = %q, ToUserName = "gh_70147747d43e", MsgType = "text", Content = "hi" }
local first, again = reply_welcome(msg), reply_welcome(msg)
local id = first:match("<MediaId><!%%[CDATA%%[([%%w_%%-]+)%%]%%]></MediaId>")
assert(id, "no media_id in the reply: " .. first)
assert(first:find("<ToUserName><![CDATA[" .. msg.FromUserName .. "]]></ToUserName>", 1, true), first)
assert(again:find(id, 1, true), "the second reply does not send the first one's media_id: " .. again)
]==]):format(OPENID),
}

-- The requests made to an example nginx, by location (as the README's nginx.conf writes it), in this
-- order: each does what the conf's comments and the OpenResty section say. state carries the
-- media_id of the upload to the download.
local EXERCISES = {
  { location = "= /media", run = function(ngx, state)
    -- upload: curl --data-binary @photo.jpg 'http://localhost:8080/media?type=image'
    local photo = ngx.folder.work .. "/photo.jpg"
    local status, body, ctype = ngx:curl("/media?type=image", "--data-binary " .. q("@" .. photo))
    assert.equal(200, status, runner.shown(body))
    assert.equal("application/json", ctype)
    local res = cjson.decode(body)
    assert.equal("image", res.type)
    assert.matches("^[%w_%-]+$", res.media_id)
    state.media_id, state.photo = res.media_id, photo
    -- a failure is a JSON error naming "the request body", never nginx's temp file: bytes that are
    -- no image are the caller's (400), whether nginx kept them in memory or in its temp file
    for _, data in ipairs({ "'not an image'", q("@" .. helper.write(ngx.folder.work .. "/junk.txt",
        ("not an image\n"):rep(20000))) }) do
      status, body = ngx:curl("/media?type=image", "--data-binary " .. data)
      assert.equal(400, status, runner.shown(body))
      assert.equal("input", cjson.decode(body).kind)
      assert.matches("^cannot upload the request body as image: ", cjson.decode(body).error)
      assert.is_nil(body:find("/", 1, true), body)
    end
    -- a form (curl -F) is refused with what to send instead
    status, body = ngx:curl("/media?type=image", "-F " .. q("media=@" .. photo))
    assert.equal(415, status, runner.shown(body))
    assert.matches("send the file itself as the request body", cjson.decode(body).error, 1, true)
  end },
  { location = "= /wechat", run = function(ngx, _, emu)
    -- the callback URL: the emulator plays WeChat, a user writes, the answer is a passive reply
    emu:config({ callbacks = { [helper.APPID] = { url = ngx.base_url .. "/wechat",
      token = runner.CALLBACK_TOKEN } } })
    local rec = emu:user_message({ msg_type = "event", event = "subscribe", wait = true })
    assert.equal("reply", rec.outcome, rec.reason)
    assert.equal("Welcome! Write 'dot' for a picture.", rec.reply.fields.Content)
    rec = emu:user_message({ openid = rec.openid, msg_type = "text", content = "dot", wait = true })
    assert.equal("reply", rec.outcome, rec.reason)
    assert.equal("image", rec.reply.fields.MsgType)
    rec = emu:user_message({ openid = rec.openid, msg_type = "text", content = "hi", wait = true })
    assert.equal("You said: hi", rec.reply.fields.Content)
    for _, r in ipairs(emu:received(rec.openid)) do assert.equal("passive", r.via) end
    -- a request that WeChat did not sign
    local status = ngx:curl("/wechat?signature=0&timestamp=1&nonce=2&echostr=x")
    assert.equal(403, status)
  end },
  { location = "~ ^/media/([A-Za-z0-9_-]+)$", run = function(ngx, state)
    -- download: GET /media/<media_id> answers with the file itself
    assert.is_string(state.media_id, "no upload before the download")
    local status, body, ctype = ngx:curl("/media/" .. state.media_id)
    assert.equal(200, status)
    assert.equal("image/jpeg", ctype)
    assert.equal(helper.read(state.photo), body)
    -- a media_id WeChat does not know: 404 (serve's table)
    status, body = ngx:curl("/media/unknown_media_id")
    assert.equal(404, status, runner.shown(body))
    assert.equal(40007, cjson.decode(body).errcode)
  end },
  { location = "= /wxmedia_status", run = function(ngx)
    -- counters for operators, like stub_status (?format=json for JSON)
    local status, body = ngx:curl("/wxmedia_status")
    assert.equal(200, status)
    assert.matches("^Threads busy: %d+ of %d+\ntransfers waits refused queued deadlines aborts token_fetches "
      .. "retries\n [%d ]+\n$", body)
    status, body = ngx:curl("/wxmedia_status?format=json")
    assert.equal(200, status)
    local counters = cjson.decode(body)
    assert.is_true(counters.transfers >= 4, body)   -- the token, the upload, the two gets
    assert.equal(1, counters.token_fetches)
  end },
}

-- The locations of an nginx.conf, as written after `location`.
local function locations(code)
  local found = {}
  for loc in runner.code_only(code, "nginx"):gmatch("\n%s*location%s+([^{\n]-)%s*{") do
    found[#found + 1] = loc
  end
  return found
end

-- A test name may not hold '#' (busted reads a tag there).
local function named(unit)
  local name = ("runs the %s example of README.md line %d (%s)"):format(unit.run, unit.line, unit.heading)
  return (name:gsub("#", ""))
end

describe("README.md's examples", function()
  local emu, run

  setup(function()
    emu = helper.start_emulator()
    run = runner.new({ emu = emu })
  end)

  teardown(function()
    if run then run:close() end
    if emu then emu:stop() end
  end)

  before_each(function()
    emu:reset()
  end)

  it("are each run, or marked in the README as output or skipped #once", function()
    local problems = {}
    for _, p in ipairs(marker_problems) do problems[#problems + 1] = p end
    for _, p in ipairs(plan_problems) do problems[#problems + 1] = p end
    assert.same({}, problems)
    local ran = 0
    for _, unit in ipairs(units) do
      if unit.run then ran = ran + 1 end
    end
    assert.is_true(ran >= 10, "only " .. ran .. " examples found to run")
  end)

  it("lists the blocks it does not run, each with its reason #once", function()
    local lines = {}
    for _, unit in ipairs(units) do
      if unit.skip then
        lines[#lines + 1] = ("  README.md line %d (under \"%s\"): %s"):format(unit.line, unit.heading,
          unit.skip)
      end
    end
    print("\nREADME blocks not run (" .. #lines .. "):\n" .. table.concat(lines, "\n"))
    for _, unit in ipairs(units) do
      if unit.skip then assert.matches("%a%a%a", unit.skip) end
    end
  end)

  it("are described in the Development section: the variables, sample files and address they rely on #once",
    function()
      local dev = README:match("\n## Development\n(.-)\n## ") or README:match("\n## Development\n(.*)$")
      assert.is_string(dev, "no Development section")
      local names = { runner.EXAMPLE_BASE_URL }
      for _, list in ipairs({ runner.VARIABLES, runner.ON_DEMAND, runner.OWN_PATHS }) do
        for _, v in ipairs(list) do names[#names + 1] = v end
      end
      for name in pairs(runner.SAMPLES) do names[#names + 1] = name end
      for _, name in ipairs(names) do
        assert.truthy(dev:find("`" .. name, 1, true), "the Development section does not name " .. name)
      end
    end)

  for _, unit in ipairs(units) do
    if unit.run then
      it(named(unit) .. (runner.uses_interpreter(unit) and "" or " #once"), function()
        if unit.run == "lua" then
          run:lua(unit, DRIVERS)
        elseif unit.run == "sh" then
          run:sh(unit)
        else
          local ngx = run:nginx(unit)
          finally(function() run:stop_nginx(ngx) end)
          local state, covered = {}, {}
          for _, exercise in ipairs(EXERCISES) do
            for _, loc in ipairs(locations(unit.code)) do
              if loc == exercise.location then
                exercise.run(ngx, state, run.emu)
                covered[loc] = true
              end
            end
          end
          for _, loc in ipairs(locations(unit.code)) do
            assert.truthy(covered[loc], "spec/readme_spec.lua has no requests for the example's location "
              .. loc)
          end
          local log = ngx:error_log()
          for _, level in ipairs({ "[alert]", "[crit]", "[emerg]", "[error]" }) do
            assert.is_nil(log:find(level, 1, true), "the error log has an " .. level .. " line:\n"
              .. runner.shown(log))
          end
        end
      end)
    end
  end
end)

describe("readme_blocks #once", function()
  local function plan(text)
    local blocks, problems = readme_blocks.extract(text)
    local planned, more = readme_blocks.plan(blocks)
    for _, p in ipairs(more) do problems[#problems + 1] = p end
    return planned, problems
  end

  it("runs lua, sh and nginx blocks, with the heading each sits under (never a comment inside a block)",
    function()
      local planned, problems = plan("# Top\n\n```lua\nprint(1)\n```\n## Shell\n```sh\n# not a heading\n"
        .. "echo hi\n```\n```nginx\nevents {}\n```\n")
      assert.same({}, problems)
      assert.equal(3, #planned)
      assert.same({ "lua", "sh", "nginx" }, { planned[1].run, planned[2].run, planned[3].run })
      assert.same({ "Top", "Shell", "Shell" }, { planned[1].heading, planned[2].heading, planned[3].heading })
      assert.equal("# not a heading\necho hi\n", planned[2].code)
      assert.equal(7, planned[2].line)
    end)

  it("fails a block with no rule and no marker, a marker that is not one, or one left dangling", function()
    local _, problems = plan("```\nkey value\n```\n<!-- readme_spec: run it -->\n```json\n{}\n```\n"
      .. "<!-- readme_spec: output -->\ntext between\n```sh\nexit 0\n```\n<!-- readme_spec: skip: why -->\n")
    assert.equal(5, #problems, table.concat(problems, "\n"))
    local all = table.concat(problems, "\n")
    assert.matches("unknown readme_spec marker 'run it'", all)
    assert.matches("line 9: the marker of line 8 is not right before a block", all)
    assert.matches("line 13: the marker is followed by no block", all)
    assert.matches("line 1 %(untyped.-no run rule", all)
    assert.matches("line 5 %(json.-no run rule", all)
  end)

  it("reads output, skip, with previous and file markers", function()
    local planned, problems = plan("<!-- readme_spec: output -->\n```\nsyntax: x\n```\n"
      .. "<!-- readme_spec: skip: needs a thing -->\n\n```sh\nsudo make install\n```\n"
      .. "```lua\nlocal a = 1\n```\n<!-- readme_spec: with previous -->\n```lua\nprint(a)\n```\n"
      .. "```nginx\nhttp {}\n```\nThe module:\n<!-- readme_spec: file /etc/nginx/lua/m.lua -->\n"
      .. "```lua\nreturn {}\n```\n")
    assert.same({}, problems)
    assert.equal(4, #planned)
    assert.is_true(planned[1].output)
    assert.equal("needs a thing", planned[2].skip)
    assert.equal("local a = 1\nprint(a)\n", planned[3].code)
    assert.equal(2, #planned[3].blocks)
    assert.equal("nginx", planned[4].run)
    assert.equal("/etc/nginx/lua/m.lua", planned[4].files[1].path)
    assert.equal("return {}\n", planned[4].files[1].block.code)
  end)

  it("refuses a join with nothing, or with a block of another language, to join", function()
    local _, problems = plan("<!-- readme_spec: with previous -->\n```lua\nx()\n```\n"
      .. "```sh\necho\n```\n<!-- readme_spec: with previous -->\n```lua\ny()\n```\n")
    assert.equal(2, #problems)
    assert.matches("no runnable block before it", problems[1])
    assert.matches("joins a sh block", problems[2])
  end)
end)

describe("readme_runner #once", function()
  it("finds the functions an example defines and never calls", function()
    assert.same({ "reply" }, runner.uncalled_functions(
      "local function reader() end\nlocal x = { file = reader }\nlocal function reply(msg)\n"
      .. "  -- reply(msg) in a comment is no call\nend\n"))
    assert.same({ "handler" }, runner.uncalled_functions("local handler = function(r) return r end\n"))
  end)

  it("tells the shell code that runs the wxmedia command from the code that does not", function()
    local function sh(code) return { run = "sh", code = code } end
    assert.is_true(runner.uses_interpreter(sh("x=$(wxmedia upload image photo.jpg)\n")))
    assert.is_true(runner.uses_interpreter(sh("cat a | wxmedia upload image -\n")))
    assert.is_false(runner.uses_interpreter(sh("emulator/wxmedia-emulator start\n# wxmedia emulator: up\n")))
    assert.is_false(runner.uses_interpreter({ run = "nginx", code = "" }))
    assert.is_true(runner.uses_interpreter({ run = "lua", code = "" }))
  end)
end)
