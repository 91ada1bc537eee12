-- wxmedia.ngx.callback in a real nginx (always LuaJIT, hence #once), with the emulator playing
-- WeChat's side: a user writes, the emulator posts the signed message to the callback and records
-- what the user saw. The passive reply when the media_id is ready within the budget; "success" in
-- time and a customer-service message when the upload is slower; WeChat's retries of a MsgId never
-- upload again.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cjson = require "cjson.safe"
local lom = require "lxp.lom"

local q = helper.shell_quote
local TOKEN = "Tok3nForSpecs"

describe("wxmedia.ngx.callback in nginx #once", function()
  local emu, ngx, tmp

  local function start(extra)
    local conf = {
      fixtures = helper.root .. "/spec/fixtures/media", token = TOKEN, budgets = { 1, 2, 4 }, slow = 2,
      client = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        thread_pool = "wxmedia", max_threads = 8, shared_dict = "wxmedia_tokens", lock_dict = "wxmedia_locks",
        retries = 1, backoff = { base = 0.01, max = 0.02 } },
    }
    for k, v in pairs(extra or {}) do conf[k] = v end
    return nginx_helper.start({
      workers = 4,
      package_path = helper.root .. "/spec/?.lua;",
      http = "  lua_shared_dict callbacks 1m;\n"
        .. "  lua_check_client_abort on;\n"
        .. "  init_by_lua_block { require('ngx_callback_app').init([==[" .. assert(cjson.encode(conf))
        .. "]==]) }\n",
      server = [[
        location = /cb { content_by_lua_block { require("ngx_callback_app").callback() } }
        location = /tries { content_by_lua_block { require("ngx_callback_app").tries() } }
        location = /reset { content_by_lua_block { require("ngx_callback_app").reset() } }
      ]],
    })
  end

  setup(function()
    tmp = helper.tmpdir()
    emu = helper.start_emulator()
    ngx = start()
  end)

  teardown(function()
    if ngx then ngx:stop() end
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function()
    emu:reset()
    assert.equal(200, (ngx:curl("/reset")))
  end)

  -- The emulator posts the account's messages to /cb?budget=N, signed with TOKEN.
  local function callback_to(budget, extra)
    local cfg = extra or {}
    cfg.callbacks = { [helper.APPID] = { url = ngx.base_url .. "/cb?budget=" .. budget, token = TOKEN } }
    emu:config(cfg)
  end

  local function uploads() return #emu:requests("upload") end

  -- hex SHA-1 by the sha1sum command: signatures computed apart from the code under test
  local function sha1_hex(text)
    local file = helper.write(tmp .. "/to-hash", text)
    return (helper.sh("sha1sum " .. q(file)):match("^(%x+)"))
  end

  local function signed(query, token)
    local ts, nonce = tostring(os.time()), tostring(math.random(1e8, 2e9))
    local parts = { token or TOKEN, ts, nonce }
    table.sort(parts)
    return "/cb?budget=4&signature=" .. sha1_hex(table.concat(parts)) .. "&timestamp=" .. ts
      .. "&nonce=" .. nonce .. (query or "")
  end

  -- Replays a request the emulator made (WeChat's retry of it), straight to nginx.
  local function replay(rec)
    local path = rec.request.uri
    local status, body = ngx:curl(path, "-X POST -H 'Content-Type: text/xml' --data-binary "
      .. q(rec.request.body))
    return status, body
  end

  -- How many requests the callback answered as retries so far (its handler logs how it answered).
  local function retries_answered()
    return select(2, ngx:error_log():gsub("callback answered: retry", ""))
  end

  local function fields(xml)
    local tree = assert(lom.parse(xml))
    local out = {}
    for _, el in ipairs(tree) do
      if type(el) == "table" then
        out[el.tag] = type(el[1]) == "table" and { [el[1].tag] = el[1][1] } or table.concat(el)
      end
    end
    return out
  end

  local function wait_for(what, fn, seconds)
    for _ = 1, (seconds or 20) * 10 do
      local v = fn()
      if v then return v end
      helper.sh("sleep 0.1")
    end
    error("timed out waiting for " .. what)
  end

  -- The bytes WeChat keeps for media_id.
  local function medium(media_id)
    local _, body = helper.curl(q(emu.base_url .. "/cgi-bin/media/get?access_token=" .. emu:token()
      .. "&media_id=" .. media_id))
    return body
  end

  describe("checks the requests it answers", function()
    it("answers the server check's echostr, and 403 to a bad signature without reading on", function()
      local status, body = ngx:curl(signed("&echostr=4071698312546357"))
      assert.equal(200, status)
      assert.equal("4071698312546357", body)
      status, body = ngx:curl(signed("&echostr=x", "An0therToken"))
      assert.equal(403, status)
      assert.matches("signature does not match", body)
      assert.equal(403, (ngx:curl("/cb?echostr=x")))
      assert.equal(400, (ngx:curl(signed())))
      -- a message with a bad signature starts nothing
      status = ngx:curl(signed("", "An0therToken"), "--data-binary '<xml><ToUserName>a</ToUserName>"
        .. "<FromUserName>b</FromUserName><MsgType>text</MsgType><Content>image</Content></xml>'")
      assert.equal(403, status)
      assert.equal(405, (ngx:curl(signed(), "-X PUT --data-binary x")))
      -- signed, but not a message
      status, body = ngx:curl(signed(), "--data-binary '<!DOCTYPE xml [<!ENTITY a \"b\">]><xml>&a;</xml>'")
      assert.equal(400, status)
      assert.matches("^cannot read the message: ", body)
      assert.equal(400, (ngx:curl(signed(), "--data-binary ''")))
      -- safe mode: only the encrypted message
      local aes = signed("&encrypt_type=aes&msg_signature=0")
      status, body = ngx:curl(aes, "--data-binary '<xml><ToUserName>gh_1</ToUserName><Encrypt>c2VjcmV0"
        .. "</Encrypt></xml>'")
      assert.equal(400, status)
      assert.equal("cannot read the message: it is encrypted (the callback's safe mode), which wxmedia "
        .. "does not support: set the callback URL to plain mode in WeChat's console\n", body)
      -- compatible mode posts the plain fields too: served as plain
      status, body = ngx:curl(aes, "--data-binary '<xml><ToUserName>a</ToUserName><FromUserName>b"
        .. "</FromUserName><MsgType>text</MsgType><Content>none</Content><MsgId>7</MsgId>"
        .. "<Encrypt>c2VjcmV0</Encrypt></xml>'")
      assert.equal(200, status)
      assert.equal("success", body)
      assert.equal(0, uploads())
    end)

    it("refuses options it cannot work with, naming them", function()
      local other = start({ tries = {
        { budget = 5 }, { budget = 0 }, { token = "ab" }, { token = "no spaces here" },
        { dedup_dict = "nope" },
        { dedup_dict = "none" }, { client = "none" }, { on_message = "x" }, { budgt = 3 },
      } })
      finally(function() other:stop() end)
      local _, body = other:curl("/tries")
      local tries = cjson.decode(body)
      local expected = {
        "bad option 'budget' to 'callback' (seconds above 0 and below WeChat's 5 expected)",
        "bad option 'budget' to 'callback' (seconds above 0 and below WeChat's 5 expected)",
        "bad option 'token' to 'callback' (the token of the callback URL in WeChat's console expected: "
          .. "3 to 32 letters or digits, got 2 characters)",
        "bad option 'token' to 'callback' (the token of the callback URL in WeChat's console expected: "
          .. "3 to 32 letters or digits, got 14 characters)",
        "bad option 'dedup_dict' to 'callback' (no lua_shared_dict named 'nope')",
        "bad option 'dedup_dict' to 'callback' (no lua_shared_dict named 'none')",
        "bad option 'client' to 'callback' (a wxmedia.ngx client expected)",
        "bad option 'on_message' to 'callback' (function expected, got string)",
        "bad option 'budgt' to 'callback' (unknown option; did you mean 'budget'?)",
      }
      for i, e in ipairs(expected) do assert.matches(e, tries[i], 1, true) end
    end)
  end)

  describe("a user writes", function()
    it("gets the image as the passive reply when the upload ends within the budget, uploaded once", function()
      callback_to(4)
      local rec = emu:user_message { msg_type = "text", content = "image", wait = true }
      assert.equal("reply", rec.outcome, rec.reason)
      assert.equal(1, #rec.attempts)
      assert.equal("image", rec.reply.fields.MsgType)
      local media_id = rec.reply.fields.Image.MediaId
      local received = emu:received(rec.openid)
      assert.equal(1, #received)
      assert.equal("passive", received[1].via)
      assert.same({ media_id = media_id }, received[1].image)
      assert.equal(helper.read(helper.fixture("image.jpg")), medium(media_id))
      assert.equal(1, uploads())
      -- the next message with that reply reuses the media_id
      local again = emu:user_message { openid = rec.openid, msg_type = "text", content = "image",
        wait = true }
      assert.equal("reply", again.outcome)
      assert.equal(media_id, again.reply.fields.Image.MediaId)
      assert.equal(1, uploads())
      -- bytes made in memory and a voice go the same way
      local data = emu:user_message { msg_type = "text", content = "data", wait = true }
      assert.equal(helper.read(helper.fixture("image.png")), medium(data.reply.fields.Image.MediaId))
      assert.equal("chart.png", emu:requests("upload")[2].filename)
      local voice = emu:user_message { msg_type = "text", content = "voice", wait = true }
      assert.equal("voice", voice.reply.fields.MsgType)
      assert.equal("passive", emu:received(voice.openid)[1].via)
      assert.equal(0, #emu:requests("custom_send"))
    end)

    it("answers WeChat's retry of a message as the first time, without a second upload", function()
      callback_to(4)
      local rec = emu:user_message { msg_type = "text", content = "image", wait = true }
      assert.equal("reply", rec.outcome)
      local before = retries_answered()
      for _ = 1, 3 do
        local status, body = replay(rec)
        assert.equal(200, status)
        assert.equal(rec.reply.body, body)
      end
      assert.equal(1, uploads())
      -- answered from the state of the first attempt: on_message did not run again
      assert.equal(before + 3, retries_answered())
      -- an event has no MsgId: its retries are told apart by the user and CreateTime
      local event = emu:user_message { msg_type = "event", event = "subscribe", wait = true }
      assert.equal("welcome, subscribe", event.reply.fields.Content)
      local status, body = replay(event)
      assert.equal(200, status)
      assert.equal(event.reply.body, body)
      assert.equal(before + 4, retries_answered())
      -- another message is answered anew
      local text = emu:user_message { msg_type = "text", content = "hello", wait = true }
      assert.equal("you said: hello", fields(text.reply.body).Content)
    end)

    it("answers on WeChat's retry a message whose first attempt's worker died, as a first attempt", function()
      callback_to(4)
      local rec = emu:user_message { msg_type = "text", content = "die once", wait = true }
      assert.equal("reply", rec.outcome, rec.reason)
      assert.equal(2, #rec.attempts)
      assert.equal("connection failed", rec.attempts[1].result)
      assert.equal("back again", fields(rec.reply.body).Content)
      assert.matches("died before it answered a message from " .. rec.openid, ngx:error_log(), 1, true)
      -- WeChat's next retry: the answer recorded, not a second take-over
      local status, body = replay(rec)
      assert.equal(200, status)
      assert.equal(rec.reply.body, body)
    end)

    it("gets \"success\" in time and the image as a customer-service message when the upload is slower",
      function()
      callback_to(1)
      emu:fault { route = "upload", kind = "delay", seconds = 3 }
      local rec = emu:user_message { msg_type = "text", content = "data", wait = true }
      -- WeChat's one attempt was answered in time, with no passive reply
      assert.equal("none", rec.outcome, rec.reason)
      assert.equal(1, #rec.attempts)
      assert.equal("answered", rec.attempts[1].result)
      local received = wait_for("the customer-service message", function()
        local r = emu:received(rec.openid)
        return #r > 0 and r
      end)
      assert.equal(1, #received)
      assert.equal("custom", received[1].via)
      assert.equal("image", received[1].msgtype)
      assert.equal(helper.read(helper.fixture("image.png")), medium(received[1].image.media_id))
      -- a retry of that message now: "success" again, nothing uploaded or sent again
      local before = retries_answered()
      local status, body = replay(rec)
      assert.equal(200, status)
      assert.equal("success", body)
      assert.equal(before + 1, retries_answered())
      helper.sh("sleep 1")
      assert.equal(1, uploads())
      assert.equal(1, #emu:requests("custom_send"))
      assert.equal(1, #emu:received(rec.openid))
    end)

    it("never uploads again for WeChat's retries that come while the upload runs", function()
      -- WeChat gives up on each attempt after 1 s: its 3 attempts all come while the first waits
      callback_to(2, { callback_timeout = 1 })
      emu:fault { route = "upload", kind = "delay", seconds = 4 }
      local rec = emu:user_message { msg_type = "text", content = "image", wait = true }
      assert.equal(3, #rec.attempts)
      local received = wait_for("the customer-service message", function()
        for _, r in ipairs(emu:received(rec.openid)) do
          if r.via == "custom" then return r end
        end
      end)
      assert.equal("image", received.msgtype)
      helper.sh("sleep 1")
      assert.equal(1, uploads())
      assert.equal(1, #emu:requests("custom_send"))
    end)

    it("sends a text reply by the customer-service API when on_message itself takes longer than the budget",
      function()
      callback_to(1)
      local rec = emu:user_message { msg_type = "text", content = "slow text", wait = true }
      assert.equal("none", rec.outcome)
      local received = wait_for("the customer-service message", function()
        local r = emu:received(rec.openid)
        return #r > 0 and r
      end)
      assert.same({ content = "sorry for the wait" }, received[1].text)
      assert.equal("custom", received[1].via)
    end)

    it("answers success for no reply and for a reply that cannot be sent, and says why in the error log",
      function()
      callback_to(4)
      local asks = { "none", "typo", "raise", "bell", "latin1 title", "media_id " .. ("A"):rep(64) }
      for _, ask in ipairs(asks) do
        local rec = emu:user_message { msg_type = "text", content = ask, wait = true }
        if ask:match("^media_id") then
          -- a media_id of on_message's own goes as it is: WeChat (the emulator) refuses to show it
          assert.equal("invalid", rec.outcome, ask)
        else
          assert.equal("none", rec.outcome, ask)
          assert.same({}, emu:received(rec.openid))
        end
      end
      assert.equal(0, uploads())
      local log = ngx:error_log()
      assert.matches("on_message's reply: a video message has no field 'titel'", log, 1, true)
      assert.matches("on_message raised: .*the handler broke", log)
      -- a value XML cannot carry: refused before any upload, where WeChat would get XML it rejects
      -- and show the user "this account cannot serve"
      assert.matches("on_message's reply: cannot build the text reply: content has a control character "
        .. "(U+0007) at byte 5", log, 1, true)
      assert.matches("on_message's reply: cannot build the video reply: title is not UTF-8 at byte 4", log, 1,
        true)
    end)
  end)
end)
