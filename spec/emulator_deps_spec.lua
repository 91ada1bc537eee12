-- .ci/deps, which `make test`, `make demo` and `make bench` run first: silent when every package is
-- there (as root: no apt-get; as another user: no advice to follow), and one apt-get line otherwise.
local helper = require "helper"

local q = helper.shell_quote
local DEPS = helper.root .. "/.ci/deps"

local function is_root()
  return (helper.sh("id -u")):match("^0%s*$") ~= nil
end

-- Runs a shell script as nobody when we are root (else as ourselves), fed on stdin (our temp folders
-- are not readable by nobody); returns stdout+stderr, ok.
local function as_other_user(script)
  local user = is_root() and "setpriv --reuid=65534 --regid=65534 --clear-groups " or ""
  return helper.sh("cd / && " .. user .. "sh < " .. q(script) .. " 2>&1")
end

describe("ci deps #once", function()
  local tmp
  setup(function() tmp = helper.tmpdir() end)
  teardown(function() helper.rmtree(tmp) end)

  it("says nothing and succeeds when every package is installed, as root and as another user", function()
    -- the suite runs after .ci/deps installed everything: a name dpkg never lists as installed
    -- (a virtual package) would make it print its apt-get advice here, or run apt-get as root
    local out, ok = helper.sh(q(DEPS) .. " 2>&1 </dev/null")
    assert.are.equal("", out)
    assert.is_true(ok)
    out, ok = as_other_user(DEPS)
    assert.are.equal("", out)
    assert.is_true(ok)
  end)

  it("names what is missing in one apt-get line when it cannot install it", function()
    local text = helper.read(DEPS):gsub('PACKAGES="', 'PACKAGES="wxmedia-no-such-pkg ', 1)
    local out, ok = as_other_user(helper.write(tmp .. "/deps", text))
    assert.is_false(ok)
    assert.are.equal("wxmedia needs Debian packages that are not installed; run, as root:\n"
      .. "  apt-get update && apt-get install -y --no-install-recommends wxmedia-no-such-pkg\n", out)
  end)
end)
