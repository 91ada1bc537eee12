-- The fenced code blocks of a Markdown text (README.md), in order, with the heading each sits under,
-- and how each is to be run: by its language, or by a marker the README puts on the line before the
-- block, an HTML comment that readers do not see:
--
--   <!-- readme_spec: output -->              shows output, a grammar ("syntax: ...") or a listing;
--   <!-- readme_spec: output: WHAT -->          the same, saying what it shows
--   <!-- readme_spec: skip: REASON -->         code that is not run, and why (the spec lists them)
--   <!-- readme_spec: with previous -->        continues the previous runnable block (same language):
--                                              both run as one program
--   <!-- readme_spec: file PATH -->            is the file PATH that the previous runnable block uses
--                                              (the Lua module an nginx.conf requires): written there
--                                              in the run's folder before that block runs
--
-- Without a marker, ```lua runs as a Lua program, ```sh (bash, shell) as a bash script and ```nginx
-- as an nginx.conf in a real nginx; any other block (untyped, json, ...) needs a marker.
-- Pure functions over text: no I/O, so the rules themselves are specified with small texts.
local _M = {}

-- The language of a fence's info string -> the kind of run it gets without a marker.
_M.RUNNERS = { lua = "lua", sh = "sh", bash = "sh", shell = "sh", nginx = "nginx" }

local MARKER = "^%s*<!%-%-%s*readme_spec:%s*(.-)%s*%-%->%s*$"

-- The rule a marker's text states, or nil and why it is not one.
local function parse_marker(text)
  if text == "output" then return { rule = "output" } end
  local what = text:match("^output:%s*(.+)$")
  if what then return { rule = "output", reason = what } end
  local reason = text:match("^skip:%s*(.+)$")
  if reason then return { rule = "skip", reason = reason } end
  if text == "with previous" then return { rule = "with previous" } end
  local path = text:match("^file%s+(/%S+)$")
  if path then return { rule = "file", path = path } end
  return nil, "unknown readme_spec marker '" .. text .. "' (output, output: WHAT, skip: REASON, "
    .. "with previous, file /ABSOLUTE/PATH)"
end

-- Every fenced block of text: { lang = "lua" or "" (untyped), code, heading, line (of the opening
-- fence), marker = { rule =, reason =, path = } or nil }, and a list of problems (a marker that is
-- not one, or is not followed by a block, an unclosed fence).
function _M.extract(text)
  local blocks, problems = {}, {}
  local heading, pending, fence, current = "(top)", nil, nil, nil
  local n = 0
  for line in (text:gsub("\r\n", "\n") .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do
    n = n + 1
    if fence then
      local close = line:match("^ ? ? ?(`+)%s*$")
      if close and #close >= #fence then
        blocks[#blocks + 1] = current
        fence, current = nil, nil
      else
        current.lines[#current.lines + 1] = line
      end
    else
      local ticks, info = line:match("^ ? ? ?(```+)%s*([^`]*)$")
      local marker_text = line:match(MARKER)
      if ticks then
        local lang = (info:match("^(%S*)") or ""):lower()
        current = { lang = lang, heading = heading, line = n, lines = {},
          marker = pending and pending.marker }
        pending, fence = nil, ticks
      elseif marker_text then
        if pending then
          problems[#problems + 1] = ("line %d: the marker of line %d is followed by another marker")
            :format(n, pending.line)
        end
        local marker, err = parse_marker(marker_text)
        if not marker then
          problems[#problems + 1] = ("line %d: %s"):format(n, err)
        else
          pending = { marker = marker, line = n }
        end
      elseif line:find("%S") then
        if pending then
          problems[#problems + 1] = ("line %d: the marker of line %d is not right before a block")
            :format(n, pending.line)
          pending = nil
        end
        local h = line:match("^#+%s+(.-)%s*#*%s*$")
        if h then heading = h end
      end
    end
  end
  if fence then
    problems[#problems + 1] = ("line %d: the block opened here is never closed"):format(current.line)
  end
  if pending then
    problems[#problems + 1] = ("line %d: the marker is followed by no block"):format(pending.line)
  end
  for _, b in ipairs(blocks) do
    b.code = table.concat(b.lines, "\n") .. "\n"
    b.lines = nil
  end
  return blocks, problems
end

-- What the blocks make: a list of units in README order, each one of
--   { run = "lua"|"sh"|"nginx", blocks = { the block, and those `with previous` }, code = joined,
--     files = { { path =, block = } ... }, heading =, line = }
--   { skip = REASON, blocks = { block }, heading, line }
--   { output = true, blocks = { block }, heading, line }
-- and the problems (a block with no rule, a join with nothing to join).
function _M.plan(blocks)
  local units, problems = {}, {}
  local last_run   -- the unit the next `with previous` or `file` block belongs to
  local function where(b)
    return ("line %d (%s, under \"%s\")"):format(b.line, b.lang == "" and "untyped" or b.lang, b.heading)
  end
  for _, b in ipairs(blocks) do
    local m = b.marker
    local rule = m and m.rule
    if rule == "output" then
      units[#units + 1] = { output = true, reason = m.reason, blocks = { b }, heading = b.heading,
        line = b.line }
    elseif rule == "skip" then
      units[#units + 1] = { skip = m.reason, blocks = { b }, heading = b.heading, line = b.line }
    elseif rule == "with previous" then
      if not last_run then
        problems[#problems + 1] = where(b) .. ": 'with previous' but no runnable block before it"
      elseif _M.RUNNERS[b.lang] ~= last_run.run then
        problems[#problems + 1] = where(b) .. ": 'with previous' joins a " .. last_run.run .. " block"
      else
        last_run.blocks[#last_run.blocks + 1] = b
        last_run.code = last_run.code .. b.code
      end
    elseif rule == "file" then
      if not last_run then
        problems[#problems + 1] = where(b) .. ": 'file " .. m.path .. "' but no runnable block before it"
      else
        last_run.files[#last_run.files + 1] = { path = m.path, block = b }
        last_run.blocks[#last_run.blocks + 1] = b
      end
    elseif _M.RUNNERS[b.lang] then
      last_run = { run = _M.RUNNERS[b.lang], blocks = { b }, code = b.code, files = {}, heading = b.heading,
        line = b.line }
      units[#units + 1] = last_run
    else
      problems[#problems + 1] = where(b) .. ": no run rule for this block: give it a readme_spec marker "
        .. "(output, skip: REASON, with previous, file PATH)"
    end
  end
  return units, problems
end

return _M
