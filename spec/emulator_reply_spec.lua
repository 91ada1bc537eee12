-- The emulator playing WeChat's side of replies, driven with curl only: customer-service messages
-- (cgi-bin/message/custom/send) with the 48-hour window and the per-message limit, and users who
-- write to an account's callback (a tiny nginx server here), signed, with WeChat's deadline and
-- retries, and what each user received.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cjson = require "cjson.safe"
local lom = require "lxp.lom"

local q = helper.shell_quote
local APPID, APPID2 = helper.APPID, helper.APPID2
local JSON_TYPE = "application/json; encoding=utf-8"
local TOKEN = "Tok3nForSpecs"
local NOTICE = "该公众号暂时无法提供服务，请稍后再试"

-- The account's callback, run by an nginx of its own (spec/nginx_helper.lua): logs each request (a
-- JSON line: path, headers, body) before anything else, then acts on its path: /text (a text reply
-- quoting the message), /image/MEDIA_ID (an image reply), /slow/SECONDS (waits, then "success"),
-- /status/N, /junk (not XML), /dtd (a reply with entities), /wrongto (a reply to someone else),
-- anything else "success". It reads
-- the message with lua-expat, as an account's server would.
local SERVER = [==[
local cjson = require "cjson"
local lom = require "lxp.lom"

local function cdata(v)
  return "<![CDATA[" .. (v:gsub("]]>", "]]]]><![CDATA[>")) .. "]]>"
end

local function field(msg, name)
  for _, el in ipairs(msg) do
    if type(el) == "table" and el.tag == name then return table.concat(el) end
  end
end

local function reply(msg, to, kind, inner)
  return "<xml><ToUserName>" .. cdata(to) .. "</ToUserName><FromUserName>" .. cdata(field(msg, "ToUserName"))
    .. "</FromUserName><CreateTime>" .. ngx.time() .. "</CreateTime><MsgType>" .. cdata(kind) .. "</MsgType>"
    .. inner .. "</xml>"
end

ngx.req.read_body()
local body = ngx.req.get_body_data() or ""
local log = assert(io.open(ngx.var.callback_log, "a"))
log:write(cjson.encode { path = ngx.var.request_uri, headers = ngx.req.get_headers(), body = body }, "\n")
log:close()
local mode, arg = ngx.var.uri:match("^/(%w+)/?(.*)$")
local status, out = 200, "success"
if mode == "slow" then
  ngx.sleep(tonumber(arg))   -- the emulator hangs up at its deadline meanwhile
elseif mode == "status" then
  status = tonumber(arg)
elseif mode == "junk" then
  out = "<p>not a reply"
elseif mode == "dtd" then
  -- entities that expand (the start of a "billion laughs")
  local msg = assert(lom.parse(body))
  out = '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    .. reply(msg, field(msg, "FromUserName"), "text", "<Content>&b;&b;&b;</Content>")
elseif mode == "text" or mode == "wrongto" then
  local msg = assert(lom.parse(body))
  local to = mode == "text" and field(msg, "FromUserName") or "oSomeoneElse0000000000000000"
  out = reply(msg, to, "text", "<Content>" .. cdata("got: " .. (field(msg, "Content") or "")) .. "</Content>")
elseif mode == "image" then
  local msg = assert(lom.parse(body))
  local inner = "<Image><MediaId>" .. cdata(arg) .. "</MediaId></Image>"
  out = reply(msg, field(msg, "FromUserName"), "image", inner)
end
ngx.status = status
ngx.header["Content-Type"] = "text/xml"
ngx.header["Content-Length"] = #out
ngx.print(out)
]==]

local emu, tmp, server, server_url

-- The requests the callback server got, oldest first.
local function callback_requests()
  local out = {}
  for line in (helper.read(tmp .. "/callback.log") or ""):gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(line)
  end
  return out
end

local function set_callback(path, extra)
  local cfg = extra or {}
  cfg.callbacks = { [APPID] = { url = server_url .. path, token = TOKEN } }
  return emu:config(cfg)
end

local function query_of(path)
  local args = {}
  for k, v in (path:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do args[k] = v end
  return args
end

-- hex SHA-1 by the sha1sum command, for signatures computed apart from the emulator
local function sha1_hex(text)
  local file = helper.write(tmp .. "/to-hash", text)
  return (helper.sh("sha1sum " .. q(file)):match("^(%x+)"))
end

-- The elements of a message's XML, by Lua's expat binding: { Name = text }.
local function xml_fields(text)
  local tree = assert(lom.parse(text))
  assert.are.equal("xml", tree.tag)
  local fields = {}
  for _, el in ipairs(tree) do
    if type(el) == "table" then fields[el.tag] = table.concat(el) end
  end
  return fields
end

local function send(token, body)
  local status, text, ctype = helper.curl("-X POST --data-binary " .. q(body) .. " "
    .. q(emu.base_url .. "/cgi-bin/message/custom/send?access_token=" .. token))
  return { status = status, json = cjson.decode(text or ""), body = text, content_type = ctype }
end

local function send_json(token, tbl)
  return send(token, assert(cjson.encode(tbl)))
end

local function assert_errcode(res, code)
  assert.are.equal(200, res.status)
  assert.are.equal(JSON_TYPE, res.content_type)
  assert.are.equal(code, res.json and res.json.errcode, res.body)
end

local function assert_sent(res)
  assert.are.equal(200, res.status)
  assert.are.equal('{"errcode":0,"errmsg":"ok"}', res.body)
end

local function upload(token, mtype, fixture)
  local status, res = emu:upload_with_curl(token, mtype, helper.fixture(fixture))
  assert.are.equal(200, status)
  return assert(res.media_id or res.thumb_media_id, cjson.encode(res))
end

local function image_to(openid, media_id)
  return { touser = openid, msgtype = "image", image = { media_id = media_id } }
end

local function text_to(openid, content)
  return { touser = openid, msgtype = "text", text = { content = content } }
end

describe("emulator replies #once", function()
  setup(function()
    tmp = helper.tmpdir()
    emu = helper.start_emulator()
    local script = helper.write(tmp .. "/callback.lua", SERVER)
    server = nginx_helper.start { workers = 1, thread_pool = false, server = ([[
      location / {
        set $callback_log %s;
        content_by_lua_file %s;
      }]]):format(tmp .. "/callback.log", script) }
    server_url = server.base_url
  end)

  teardown(function()
    if server then server:stop() end
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function()
    emu:reset()
    helper.write(tmp .. "/callback.log", "")
  end)

  describe("cgi-bin/message/custom/send", function()
    local token, openid
    before_each(function()
      token = emu:token()
      openid = emu:user_message { msg_type = "text", content = "hello" }.openid
    end)

    it("delivers each message type to a user who wrote, and the user's log has them", function()
      local image, voice = upload(token, "image", "image.png"), upload(token, "voice", "voice.amr")
      local video, thumb = upload(token, "video", "video.mp4"), upload(token, "thumb", "thumb.jpg")
      local messages = {
        text_to(openid, "a ]]> b <c> & d"),
        image_to(openid, image),
        { touser = openid, msgtype = "voice", voice = { media_id = voice } },
        { touser = openid, msgtype = "video",
          video = { media_id = video, thumb_media_id = thumb, title = "T", description = "D" } },
        { touser = openid, msgtype = "music", music = { title = "M", description = "D",
          musicurl = "http://example.com/a.mp3", hqmusicurl = "http://example.com/hq.mp3",
          thumb_media_id = thumb } },
      }
      for _, m in ipairs(messages) do assert_sent(send_json(token, m)) end
      local received = emu:received(openid)
      assert.are.equal(#messages, #received)
      for i, m in ipairs(messages) do
        assert.are.equal("custom", received[i].via)
        assert.are.equal(m.msgtype, received[i].msgtype)
        assert.same(m[m.msgtype], received[i][m.msgtype])
        assert.is_number(received[i].time)
      end
      assert.are.equal(5, emu:user(openid).custom_sent)
      assert.are.equal(#messages, #emu:requests("custom_send"))
    end)

    it("checks the token first, then method, body, user, type and media, in that order", function()
      local image = upload(token, "image", "image.png")
      local good = assert(cjson.encode(image_to(openid, image)))
      local path = "/cgi-bin/message/custom/send"
      local _, no_token = helper.curl("--data-binary " .. q(good) .. " " .. q(emu.base_url .. path))
      assert.are.equal(41001, cjson.decode(no_token).errcode)
      assert_errcode(send("not%20a%20token", good), 40014)
      assert_errcode(send("86_unknownTOKENunknownTOKENunknownTOKEN", good), 40001)
      local status, got = helper.curl(q(emu.base_url .. path .. "?access_token=" .. token))
      assert.are.equal(200, status)
      assert.are.equal(43002, cjson.decode(got).errcode)
      assert_errcode(send(token, ""), 44002)
      assert_errcode(send(token, "{not json"), 47001)
      assert_errcode(send(token, "[1,2]"), 47001)
      -- an openid the account never saw, one another account's user has, none at all
      assert_errcode(send_json(token, image_to("oNeverWroteNeverWrote0000000", image)), 40003)
      local other = emu:user_message { appid = APPID2, msg_type = "text", content = "hi" }.openid
      assert_errcode(send_json(token, image_to(other, image)), 40003)
      assert_errcode(send_json(token, { msgtype = "image", image = { media_id = image } }), 40003)
      -- a type the emulator does not play, or none; the type's object missing or not one
      assert_errcode(send_json(token, { touser = openid, msgtype = "news", news = {} }), 40008)
      assert_errcode(send_json(token, { touser = openid, image = { media_id = image } }), 40008)
      assert_errcode(send_json(token, { touser = openid, msgtype = "image" }), 47001)
      assert_errcode(send_json(token, { touser = openid, msgtype = "image", image = image }), 47001)
      assert_errcode(send_json(token, { touser = openid, msgtype = "text", text = { content = 5 } }), 47001)
      assert_errcode(send_json(token, text_to(openid, "")), 44004)
      assert.same({}, emu:received(openid))
      assert.are.equal(0, emu:user(openid).custom_sent)
      assert_sent(send(token, good))
    end)

    it("answers 40007 for a media_id unknown, another account's, of another type or expired", function()
      local image, voice = upload(token, "image", "image.png"), upload(token, "voice", "voice.amr")
      local video, thumb = upload(token, "video", "video.mp4"), upload(token, "thumb", "thumb.jpg")
      local theirs = upload(emu:token(APPID2, helper.SECRET2), "image", "image.png")
      assert_errcode(send_json(token, image_to(openid, ("A"):rep(64))), 40007)
      assert_errcode(send_json(token, image_to(openid, "")), 40007)
      assert_errcode(send_json(token, image_to(openid, theirs)), 40007)
      assert_errcode(send_json(token, image_to(openid, voice)), 40007)
      assert_errcode(send_json(token, { touser = openid, msgtype = "voice", voice = { media_id = image } }),
        40007)
      -- the thumb of a video (when given) and of a music message (always)
      assert_errcode(send_json(token, { touser = openid, msgtype = "video",
        video = { media_id = video, thumb_media_id = voice } }), 40007)
      assert_errcode(send_json(token, { touser = openid, msgtype = "music",
        music = { musicurl = "http://example.com/a.mp3", hqmusicurl = "http://example.com/a.mp3" } }), 40007)
      assert.same({}, emu:received(openid))
      assert_sent(send_json(token, { touser = openid, msgtype = "music",
        music = { thumb_media_id = thumb } }))
      -- media live 3 days: a user who wrote just now still gets 40007 for an expired one
      emu:clock(259200)
      token = emu:token()
      emu:user_message { openid = openid, msg_type = "text", content = "still here" }
      assert_errcode(send_json(token, image_to(openid, image)), 40007)
      assert_sent(send_json(token, image_to(openid, upload(token, "image", "image.png"))))
    end)

    it("answers 45015 once 48 hours have passed since the user last wrote, until they write again", function()
      emu:clock(48 * 3600 - 60)
      token = emu:token()
      local image = upload(token, "image", "image.png")
      assert_sent(send_json(token, image_to(openid, image)))
      emu:clock(60)
      assert_errcode(send_json(token, image_to(openid, image)), 45015)
      assert.are.equal(1, #emu:received(openid))
      emu:user_message { openid = openid, msg_type = "text", content = "back" }
      assert_sent(send_json(token, image_to(openid, image)))
      -- a user who stops following the account is out of reach too
      emu:user_message { openid = openid, msg_type = "event", event = "unsubscribe" }
      assert.is_false(emu:user(openid).subscribed)
      assert_errcode(send_json(token, image_to(openid, image)), 45015)
      emu:user_message { openid = openid, msg_type = "event", event = "subscribe" }
      assert_sent(send_json(token, image_to(openid, image)))
    end)

    it("answers 45047 to the sixth message since the user last wrote; writing again starts over", function()
      for i = 1, 5 do assert_sent(send_json(token, text_to(openid, "n" .. i))) end
      local res = send_json(token, text_to(openid, "n6"))
      assert_errcode(res, 45047)
      assert.are.equal("out of response count limit", res.json.errmsg)
      assert.are.equal(5, #emu:received(openid))
      assert.are.equal(5, emu:user(openid).custom_sent)
      emu:user_message { openid = openid, msg_type = "text", content = "more please" }
      assert.are.equal(0, emu:user(openid).custom_sent)
      assert_sent(send_json(token, text_to(openid, "n6")))
      assert.are.equal("n6", emu:received(openid)[6].text.content)
      -- the limit is data
      emu:config { custom_limit = 1 }
      assert_errcode(send_json(token, text_to(openid, "n7")), 45047)
    end)

    it("uses WeChat's errmsg texts, with the hint suffix when configured, and takes faults", function()
      local res = send_json(token, text_to("oNeverWroteNeverWrote0000000", "x"))
      assert.are.equal('{"errcode":40003,"errmsg":"invalid openid"}', res.body)
      emu:clock(48 * 3600)
      token = emu:token()
      assert.are.equal("response out of time limit or subscription is canceled",
        send_json(token, text_to(openid, "x")).json.errmsg)
      emu:config { hint_suffix = true }
      assert.matches(
        "^response out of time limit or subscription is canceled hint: %[%w+%] rid: %x+%-%x+%-%x+$",
        send_json(token, text_to(openid, "x")).json.errmsg)
      emu:fault { route = "custom_send", kind = "errcode", errcode = -1 }
      assert_errcode(send_json(token, text_to(openid, "x")), -1)
      local log = emu:requests("custom_send")
      assert.are.equal(4, #log)
      assert.are.equal("errcode", log[4].fault)
      assert.are.equal(45015, log[3].errcode)
    end)

    it("forgets users and what they received on reset", function()
      assert_sent(send_json(token, text_to(openid, "x")))
      emu:reset()
      local status, res = emu:control("GET", "user?openid=" .. openid)
      assert.are.equal(400, status)
      assert.matches("no user", res.error)
      assert_errcode(send_json(emu:token(), text_to(openid, "x")), 40003)
    end)
  end)

  describe("a user writes to the account's callback", function()
    it("posts signed XML as WeChat does and records the passive reply the user saw", function()
      set_callback("/text")
      local rec = emu:user_message { openid = "oUserWithText000000000000000", msg_type = "text",
        content = "hi ]]> <there> & co", wait = true }
      assert.are.equal("done", rec.state)
      assert.are.equal("reply", rec.outcome)
      local got = callback_requests()
      assert.are.equal(1, #got)
      -- the query: signature = hex SHA-1 of token, timestamp and nonce, sorted and joined
      local args = query_of(got[1].path)
      assert.matches("^/text%?", got[1].path)
      assert.matches("^%d+$", args.timestamp)
      assert.matches("^%d+$", args.nonce)
      assert.are.equal("oUserWithText000000000000000", args.openid)
      local parts = { TOKEN, args.timestamp, args.nonce }
      table.sort(parts)
      assert.are.equal(sha1_hex(table.concat(parts)), args.signature)
      assert.are.equal("text/xml", got[1].headers["content-type"])
      assert.are.equal(tostring(#got[1].body), got[1].headers["content-length"])
      -- the body: WeChat's elements, the account's original ID (gh_ and the start of SHA-1(appid))
      local msg = xml_fields(got[1].body)
      assert.are.equal("gh_" .. sha1_hex(APPID):sub(1, 12), msg.ToUserName)
      assert.are.equal("oUserWithText000000000000000", msg.FromUserName)
      assert.are.equal(args.timestamp, msg.CreateTime)
      assert.are.equal("text", msg.MsgType)
      assert.are.equal("hi ]]> <there> & co", msg.Content)
      assert.are.equal(rec.msg_id, msg.MsgId)
      assert.matches("^%d+$", msg.MsgId)
      -- the reply, parsed, and what the user saw
      assert.are.equal("got: hi ]]> <there> & co", rec.reply.fields.Content)
      assert.are.equal(1, #rec.attempts)
      assert.are.equal("answered", rec.attempts[1].result)
      assert.are.equal(200, rec.attempts[1].status)
      assert.is_number(rec.attempts[1].duration)
      local received = emu:received("oUserWithText000000000000000")
      assert.are.equal(1, #received)
      assert.are.equal("passive", received[1].via)
      assert.are.equal(rec.msg_id, received[1].msg_id)
      assert.same({ content = "got: hi ]]> <there> & co" }, received[1].text)
      -- each message has its own MsgId; the record stays readable
      local again = emu:user_message { openid = "oUserWithText000000000000000", msg_type = "text",
        content = "again", wait = true }
      assert.are_not.equal(rec.msg_id, again.msg_id)
      assert.same(rec, emu:delivery(rec.msg_id))
    end)

    it("sends images and voices with their MediaId, and a reply can be an image of the account", function()
      local token = emu:token()
      local photo, voice = upload(token, "image", "image.png"), upload(token, "voice", "voice.amr")
      local answer = upload(token, "image", "image.jpg")
      set_callback("/image/" .. answer)
      local rec = emu:user_message { msg_type = "image", media_id = photo, wait = true }
      local msg = xml_fields(callback_requests()[1].body)
      assert.are.equal("image", msg.MsgType)
      assert.are.equal(photo, msg.MediaId)
      assert.are.equal("reply", rec.outcome)
      assert.same({ { via = "passive", msgtype = "image", image = { media_id = answer }, msg_id = rec.msg_id,
        time = emu:received(rec.openid)[1].time } }, emu:received(rec.openid))
      emu:user_message { openid = rec.openid, msg_type = "voice", media_id = voice, wait = true }
      msg = xml_fields(callback_requests()[2].body)
      assert.are.equal("voice", msg.MsgType)
      assert.are.equal(voice, msg.MediaId)
      assert.are.equal("amr", msg.Format)
      -- a subscribe event: no MsgId (WeChat's events have none)
      emu:user_message { msg_type = "event", event = "subscribe", wait = true }
      msg = xml_fields(callback_requests()[3].body)
      assert.are.equal("event", msg.MsgType)
      assert.are.equal("subscribe", msg.Event)
      assert.is_nil(msg.MsgId)
    end)

    it("posts the same message 3 times to a callback missing the deadline, then shows the notice", function()
      set_callback("/slow/3", { callback_timeout = 1 })
      local rec = emu:user_message { msg_type = "text", content = "anyone?", wait = true }
      assert.are.equal("failed", rec.outcome)
      assert.are.equal(3, #rec.attempts)
      for _, a in ipairs(rec.attempts) do
        assert.are.equal("timeout", a.result)
        assert.is_nil(a.status)
      end
      local got = callback_requests()
      assert.are.equal(3, #got)
      for i = 2, 3 do
        assert.are.equal(got[1].body, got[i].body)
        assert.are.equal(got[1].path, got[i].path)
      end
      assert.are.equal(rec.msg_id, xml_fields(got[1].body).MsgId)
      local received = emu:received(rec.openid)
      assert.same({ { via = "wechat", text = NOTICE, msg_id = rec.msg_id, time = received[1].time } },
        received)
      -- the number of attempts is data
      helper.write(tmp .. "/callback.log", "")
      set_callback("/slow/3", { callback_timeout = 1, callback_attempts = 2 })
      assert.are.equal(2, #emu:user_message { msg_type = "text", content = "x", wait = true }.attempts)
      assert.are.equal(2, #callback_requests())
    end)

    it("answers at once and delivers afterwards; the record shows the delivery under way", function()
      set_callback("/slow/1")
      local rec = emu:user_message { msg_type = "text", content = "later" }
      assert.are.equal("pending", rec.state)
      assert.same({}, rec.attempts)
      assert.is_nil(rec.outcome)
      local done = emu:wait_delivery(rec.msg_id)
      assert.are.equal("none", done.outcome)
      assert.are.equal(1, #done.attempts)
      assert.are.equal(1, #callback_requests())
      assert.same({}, emu:received(rec.openid))
      -- a customer-service message then reaches the user who wrote
      local token = emu:token()
      assert_sent(send_json(token, text_to(rec.openid, "here it is")))
      assert.are.equal("here it is", emu:received(rec.openid)[1].text.content)
    end)

    it("forgets a delivery under way on reset: it records nothing afterwards", function()
      set_callback("/slow/1")
      local rec = emu:user_message { msg_type = "text", content = "x" }
      assert.are.equal("pending", rec.state)
      emu:reset()
      -- the callback answers 1 s after the post; by 3 s the delivery has ended
      for _ = 1, 60 do
        if #callback_requests() > 0 then break end
        helper.sh("sleep 0.05")
      end
      assert.are.equal(1, #callback_requests())
      helper.sh("sleep 3")
      assert.are.equal(400, (emu:control("GET", "delivery?msg_id=" .. rec.msg_id)))
      assert.are.equal(400, (emu:control("GET", "user?openid=" .. rec.openid)))
    end)

    it("takes success or an empty body as no reply, and shows the notice for what it cannot show", function()
      local cases = {
        { "/success", "none" },
        { "/status/200", "none" },   -- "success" again, under a path of its own
        { "/junk", "invalid", "^not XML" },
        { "/dtd", "invalid", "^not XML" },
        { "/wrongto", "invalid", "ToUserName" },
        { "/image/" .. ("A"):rep(64), "invalid", "media_id" },
        { "/status/500", "failed", "HTTP 500" },
      }
      for _, c in ipairs(cases) do
        set_callback(c[1])
        local rec = emu:user_message { msg_type = "text", content = "x", wait = true }
        assert.are.equal(c[2], rec.outcome, c[1])
        if c[3] then assert.is_truthy(rec.reason:find(c[3]), c[1] .. ": " .. rec.reason) end
        local received = emu:received(rec.openid)
        if c[2] == "none" then
          assert.same({}, received)
        else
          assert.are.equal(NOTICE, received[1].text, c[1])
        end
      end
      -- nothing listens: every attempt fails to connect
      emu:config { callbacks = { [APPID] = { url = "http://127.0.0.1:1/cb", token = TOKEN } } }
      local rec = emu:user_message { msg_type = "text", content = "x", wait = true }
      assert.are.equal("failed", rec.outcome)
      assert.are.equal(3, #rec.attempts)
      assert.are.equal("connection failed", rec.attempts[3].result)
      -- no callback configured: the message is only recorded
      emu:config { callbacks = { [APPID] = cjson.null } }
      assert.are.equal("no_callback", emu:user_message { msg_type = "text", content = "x" }.outcome)
    end)

    it("refuses bad user messages and callback settings with 400", function()
      local token = emu:token()
      local voice = upload(token, "voice", "voice.amr")
      for _, bad in ipairs {
        { msg_type = "text" },
        { msg_type = "text", content = "" },
        { msg_type = "text", content = "a\0b" },
        { msg_type = "text", content = "bell\7" },
        { msg_type = "text", content = "x", appid = "wx0000000000000000" },
        { msg_type = "text", content = "x", openid = "o x" },
        { msg_type = "text", content = "x", wait = "yes" },
        { msg_type = "image", media_id = voice },
        { msg_type = "image", media_id = ("A"):rep(64) },
        { msg_type = "voice", media_id = upload(emu:token(APPID2, helper.SECRET2), "voice", "voice.amr") },
        { msg_type = "event", event = "CLICK" },
        { msg_type = "location" },
      } do
        local status, res = emu:control("POST", "user/message", bad)
        assert.are.equal(400, status, cjson.encode(bad))
        assert.is_string(res.error)
      end
      for _, bad in ipairs {
        { callbacks = { [APPID] = { url = "http://localhost:8080/cb", token = TOKEN } } },
        { callbacks = { [APPID] = { url = "https://127.0.0.1/cb", token = TOKEN } } },
        { callbacks = { [APPID] = { url = "http://127.0.0.1:99999/cb", token = TOKEN } } },
        { callbacks = { [APPID] = { url = server_url .. "/cb", token = "ab" } } },
        { callbacks = { [APPID] = { url = server_url .. "/cb", token = "no spaces" } } },
        { callbacks = { wx0000000000000000 = { url = server_url .. "/cb", token = TOKEN } } },
        { callback_timeout = 0 }, { callback_attempts = 11 }, { custom_limit = 0 }, { custom_window = -1 },
      } do
        local status, res = emu:control("POST", "config", bad)
        assert.are.equal(400, status, cjson.encode(bad))
        assert.is_string(res.error)
      end
      -- an openid is made up when none is given: WeChat's shape
      assert.matches("^o[%w_%-]+$", emu:user_message { msg_type = "text", content = "x" }.openid)
      assert.are.equal(28, #emu:user_message { msg_type = "text", content = "x" }.openid)
    end)

    it("takes the account's original ID from the config, and a callback URL with a query", function()
      emu:config { apps = { { appid = APPID, secret = helper.SECRET, original_id = "gh_specspecspec" } } }
      set_callback("/text?from=spec")
      local rec = emu:user_message { msg_type = "text", content = "x", wait = true }
      assert.are.equal("reply", rec.outcome)
      local got = callback_requests()[1]
      assert.matches("^/text%?from=spec&signature=%x+&timestamp=%d+&nonce=%d+&openid=", got.path)
      assert.are.equal("gh_specspecspec", xml_fields(got.body).ToUserName)
    end)
  end)
end)
