# test_luatest.py: `zhengtong test`, the Lua plugins' test runner, on the real binary.
import glob
import os
import re
import shutil
import tempfile
import unittest

from ztnode import env, lua_manifest, lua_str, run, write_lua_plugin, zt_src

# init.lua of every plugin here: the runner must never run it.
NO_INIT = 'error("init.lua must not run under zhengtong test")\n'

# Lines of a test file, so that a test can name the line a failure must point at.
PASSING = """\
local kv = zt.db.open("kv")
local util = require "{name}.util"

test("adds", function(t)
  t.eq(util.add(2, 3), 5)
  t.eq({{ a = {{ 1, 2 }}, b = "x" }}, {{ b = "x", a = {{ 1, 2 }} }})
end)

test("catches a problem", function(t)
  local p = t.problem(function() zt.problem(409, "taken", "already there") end, 409, "taken")
  t.eq(p.detail, "already there")
  t.error(function() error("it broke here") end, "broke")
end)

test("skips", function(t)
  t.skip("not on this node")
end)
"""

FAILING = """\
test("one is two", function(t)
  local got = 1
  t.eq(got, 2)
end)

test("runs after a failure", function(t)
  t.ok(true)
end)

test("deep difference", function(t)
  t.eq({ items = { { code = "A" } } }, { items = { { code = "B" } } }, "the catalogue")
end)

test("no error where one is expected", function(t)
  t.error(function() end)
end)

test("wrong problem", function(t)
  t.problem(function() zt.problem(404, "not-found", "gone") end, 403, "forbidden")
end)

test("uncaught problem", function(t)
  zt.problem(422, "invalid", "no code")
end)
"""


def line_of(text, needle):
    """The 1-based line of the first line of text containing needle."""
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError("%r not in the text" % needle)


class Runner(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="zt-e2e-luatest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.lua = os.path.join(self.dir, "lua")
        # the zt library (if any) without the shipped plugins: each test writes its own
        src = os.path.join(zt_src(), "lua")
        shutil.copytree(src, self.lua, ignore=shutil.ignore_patterns("plugins"))
        # TMPDIR of our own, to see that the scratch folders are removed
        self.tmp = os.path.join(self.dir, "tmp")
        os.mkdir(self.tmp)

    def plugin(self, name, tests=None, manifest=None, modules=None):
        """A Lua plugin whose init.lua fails; tests: {file: text} in tests/ (None: no folder)."""
        d = write_lua_plugin(self.lua, name, manifest or lua_manifest(), NO_INIT)
        for mod, text in (modules or {}).items():
            with open(os.path.join(d, mod + ".lua"), "w") as f:
                f.write(text)
        if tests is not None:
            os.makedirs(os.path.join(d, "tests"), exist_ok=True)
            for file, text in tests.items():
                with open(os.path.join(d, "tests", file), "w") as f:
                    f.write(text)
        return d

    def conf(self, plugins, extra=(), plugin_dir=None):
        lines = [
            'node_name = "luatest"',
            'region_code = "330100"',
            'listen = { "127.0.0.1:1" }',  # never listened on: test does not serve
            "data_dir = %s" % lua_str(os.path.join(self.dir, "data")),
            "map_size = 16777216",
            'log_level = "warn"',
            "lua_dir = %s" % lua_str(self.lua),
            "plugins = { %s }" % ", ".join(lua_str(p) for p in plugins),
        ]
        if plugin_dir:
            lines.append("plugin_dir = %s" % lua_str(plugin_dir))
        path = os.path.join(self.dir, "zhengtong.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines + list(extra)) + "\n")
        return path

    def run_tests(self, conf, *names):
        r = run(["test", "-c", conf] + list(names), env=dict(os.environ, TMPDIR=self.tmp), timeout=120)
        self.assertEqual(os.listdir(self.tmp), [], "scratch folders left behind")
        return r

    def results(self, out):
        """{test name: "ok" | "not ok" | "skip"} from the TAP-like lines."""
        res = {}
        for ln in out.splitlines():
            m = re.match(r"^(ok|not ok) (\d+) - [^:]+: (.*?)( # SKIP .*)?$", ln)
            if m:
                res[m.group(3)] = "skip" if m.group(4) else m.group(1)
        return res

    def assertSummary(self, out, total, passed, failed, skipped=0):
        want = "# %d %s, %d passed, %d failed" % (total, "test" if total == 1 else "tests",
                                                   passed, failed)
        if skipped:
            want += ", %d skipped" % skipped
        self.assertIn("\n" + want + "\n", "\n" + out, out)
        self.assertIn("1..%d\n" % total, out)


class Passing(Runner):
    def test_all_pass_exit_0(self):
        self.plugin("calc", {"a.lua": PASSING.format(name="calc")},
                    modules={"util": "return { add = function(a, b) return a + b end }\n"})
        r = self.run_tests(self.conf(["calc"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.results(r.stdout),
                         {"adds": "ok", "catches a problem": "ok", "skips": "skip"})
        self.assertIn("ok 1 - calc/a.lua: adds\n", r.stdout)
        self.assertIn("ok 3 - calc/a.lua: skips # SKIP not on this node\n", r.stdout)
        self.assertSummary(r.stdout, 3, 2, 0, 1)
        self.assertNotIn("init.lua must not run", r.stdout + r.stderr)

    def test_ctx_and_helpers_in_a_subfolder(self):
        text = """\
local fx = require "ctx.tests.lib.fixtures"
test("ctx is the work", function(t, ctx)
  t.eq(fx.answer, 42)
  t.eq(ctx.method, "TEST")
  t.eq(ctx.path, "ctx/a.lua")
  t.eq(zt.auth.caller(ctx).kind, "system")
  zt.audit.note(ctx, "test", "x")
  zt.emit("ctx.done", { a = 1 })
  t.ok(zt.timer.after(1000, "ctx.later"))
  t.ok(zt.seal.json(ctx, "root", { a = 1 }).signature)
end)
"""
        d = self.plugin("ctx", {"a.lua": text})
        os.makedirs(os.path.join(d, "tests", "lib"))
        with open(os.path.join(d, "tests", "lib", "fixtures.lua"), "w") as f:
            f.write("return { answer = 42 }\n")
        r = self.run_tests(self.conf(["ctx"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertSummary(r.stdout, 1, 1, 0)  # the helper is not run as a test file

    def test_files_run_in_name_order_and_numbers_continue(self):
        body = 'test("%s", function(t) t.ok(true) end)\n'
        self.plugin("order", {"b.lua": body % "second", "a.lua": body % "first",
                              "c.lua": body % "third", "notes.txt": "not a test file"})
        r = self.run_tests(self.conf(["order"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("ok")]
        self.assertEqual(lines, ["ok 1 - order/a.lua: first", "ok 2 - order/b.lua: second",
                                 "ok 3 - order/c.lua: third"])


class Failing(Runner):
    def test_failures_exit_1_with_file_and_line(self):
        self.plugin("bad", {"f.lua": FAILING})
        r = self.run_tests(self.conf(["bad"]))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.results(r.stdout), {
            "one is two": "not ok", "runs after a failure": "ok", "deep difference": "not ok",
            "no error where one is expected": "not ok", "wrong problem": "not ok",
            "uncaught problem": "not ok"})
        out = r.stdout
        self.assertIn("not ok 1 - bad/f.lua: one is two\n#   bad/tests/f.lua:%d: expected 2, got 1\n"
                      % line_of(FAILING, "t.eq(got, 2)"), out)
        n = line_of(FAILING, 'code = "A"')
        self.assertIn('#   bad/tests/f.lua:%d: the catalogue: expected {items = {{code = "B"}}}, '
                      'got {items = {{code = "A"}}}\n' % n, out)
        self.assertIn('#   (first difference at .items[1].code: expected "B", got "A")\n', out)
        self.assertIn("#   bad/tests/f.lua:%d: expected an error, got none\n"
                      % line_of(FAILING, "t.error(function() end)"), out)
        self.assertIn("#   bad/tests/f.lua:%d: expected zt.problem 403 forbidden, got zt.problem "
                      "404 not-found: gone\n" % line_of(FAILING, "403"), out)
        self.assertIn("#   bad/tests/f.lua:%d: uncaught zt.problem 422 invalid: no code\n"
                      % line_of(FAILING, 'zt.problem(422'), out)
        self.assertSummary(out, 6, 1, 5)

    def test_syntax_error_names_the_file_and_line_and_the_other_files_run(self):
        broken = 'test("a", function(t)\n  t.ok(true)\nend)\nlocal x = = 1\n'
        self.plugin("syn", {"a.lua": broken, "b.lua": 'test("fine", function(t) t.ok(1) end)\n'})
        r = self.run_tests(self.conf(["syn"]))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("not ok 1 - syn/a.lua: the file did not load\n#   syn/tests/a.lua:4:", r.stdout)
        self.assertIn("ok 2 - syn/b.lua: fine\n", r.stdout)
        self.assertSummary(r.stdout, 2, 1, 1)

    def test_error_at_the_top_level_of_a_file(self):
        self.plugin("top", {"a.lua": "\n\nlocal x = nil .. 'y'\n"})
        r = self.run_tests(self.conf(["top"]))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("#   top/tests/a.lua:3: attempt to concatenate", r.stdout)

    def test_mistakes_caught_at_the_top_level_still_stop_the_file(self):
        """As at a start: a config error or a route refused, caught with pcall by the file or
        by a module it requires, is the file not loading (it ran its tests before)."""
        opts = {"n": {"type": "integer", "default": 5, "description": "1 to 5"}}
        check = ('local n = zt.config.n\n'
                 'if n > 5 then pcall(zt.config_error, "n", "must be 1 to 5, not " .. n) end\n'
                 'return { n = n }\n')
        tests = 'local s = require "careless.settings"\ntest("runs", function(t) t.ok(s) end)\n'
        route = ('local ok = pcall(zt.route, "GET", "no-slash", function() end)\n'
                 'test("runs", function(t) t.ok(true) end)\n')
        self.plugin("careless", {"a.lua": tests, "b.lua": route},
                    manifest=lua_manifest(options=opts), modules={"settings": check})
        conf = self.conf(["careless"], extra=["careless = { n = 7 }"])
        with open(conf) as f:
            line = len(f.read().splitlines())
        r = self.run_tests(conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("not ok 1 - careless/a.lua: the file did not load\n"
                      "#   %s:%d: careless.n: must be 1 to 5, not 7\n" % (conf, line), r.stdout)
        self.assertIn("not ok 2 - careless/b.lua: the file did not load\n"
                      "#   careless/tests/b.lua: careless/tests/b.lua:1: zt.route GET no-slash", r.stdout)
        self.assertSummary(r.stdout, 2, 0, 2)
        # with a good value the same files load (the route's file still does not)
        r = self.run_tests(self.conf(["careless"], extra=["careless = { n = 5 }"]))
        self.assertIn("ok 1 - careless/a.lua: runs\n", r.stdout)
        self.assertSummary(r.stdout, 2, 1, 1)


class Isolation(Runner):
    def test_a_put_in_one_test_is_not_seen_in_the_next(self):
        text = """\
local kv = zt.db.open("kv")
test("writes", function(t)
  kv:put("k", { n = 1 })
  t.eq(kv:get("k"), { n = 1 })
end)
test("does not see it", function(t)
  t.eq(kv:get("k"), nil)
  kv:put("k", { n = 2 })
end)
test("nor this one", function(t)
  local keys = {}
  for k in kv:iter() do keys[#keys + 1] = k end
  t.eq(keys, {})
end)
"""
        self.plugin("iso", {"a.lua": text, "b.lua": 'local kv = zt.db.open("kv")\n'
                            'test("another file", function(t) t.eq(kv:get("k"), nil) end)\n'})
        r = self.run_tests(self.conf(["iso"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertSummary(r.stdout, 4, 4, 0)

    def test_a_failed_test_keeps_nothing_either(self):
        text = """\
local kv = zt.db.open("kv")
test("writes then fails", function(t)
  kv:put("k", "v")
  error("after the write")
end)
test("sees nothing", function(t)
  t.eq(kv:get("k"), nil)
end)
"""
        self.plugin("iso2", {"a.lua": text})
        r = self.run_tests(self.conf(["iso2"]))
        self.assertEqual(self.results(r.stdout), {"writes then fails": "not ok", "sees nothing": "ok"},
                         r.stdout)
        self.assertIn("#   iso2/tests/a.lua:4: after the write\n", r.stdout)

    def test_each_file_gets_a_fresh_state(self):
        a = 'shared = "from a"\ntest("sets", function(t) t.eq(shared, "from a") end)\n'
        b = 'test("does not see a\'s global", function(t) t.eq(shared, nil) end)\n'
        self.plugin("fresh", {"a.lua": a, "b.lua": b})
        r = self.run_tests(self.conf(["fresh"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertSummary(r.stdout, 2, 2, 0)


class Sandbox(Runner):
    def test_the_plugin_sandbox(self):
        marker = os.path.join(self.dir, "written-by-a-test")
        text = """\
test("no io, no os.execute, no loadfile", function(t)
  t.eq(type(io), "nil")
  t.eq(type(os.execute), "nil")
  t.eq(type(loadfile), "nil")
  t.eq(type(debug), "nil")
  t.eq(type(os.time), "function")
end)
test("require stays inside lua/", function(t)
  t.error(function() require "../../../etc/passwd" end, "no such module")
end)
test("io.open is not there", function(t)
  io.open(%s, "w"):write("x")
end)
""" % lua_str(marker)
        self.plugin("box", {"a.lua": text})
        r = self.run_tests(self.conf(["box"]))
        self.assertEqual(self.results(r.stdout), {
            "no io, no os.execute, no loadfile": "ok", "require stays inside lua/": "ok",
            "io.open is not there": "not ok"}, r.stdout + r.stderr)
        self.assertIn("global 'io'", r.stdout)
        self.assertFalse(os.path.exists(marker))

    def test_budget_exceeded_fails_that_test_only(self):
        text = """\
test("loops", function(t)
  local n = 0
  while true do n = n + 1 end
end)
test("loops inside pcall", function(t)
  pcall(function() while true do end end)
  t.ok(false, "never reached")
end)
test("runs with a fresh budget", function(t)
  local n = 0
  for i = 1, 20000 do n = n + i end
  t.eq(n, 200010000)
end)
"""
        self.plugin("spin", {"a.lua": text})
        conf = self.conf(["spin"], extra=["lua = { instructions = 200000 }"])
        r = self.run_tests(conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.results(r.stdout), {"loops": "not ok", "loops inside pcall": "not ok",
                                                  "runs with a fresh budget": "ok"})
        self.assertIn("#   spin/tests/a.lua:3: instruction budget exceeded\n", r.stdout)
        self.assertNotIn("never reached", r.stdout)

    def test_memory_cap_fails_that_test_only(self):
        text = """\
test("hoards", function(t)
  local keep = {}
  for i = 1, 1e9 do keep[i] = string.rep("x", 4096) .. i end
end)
test("then works", function(t)
  t.eq(#string.rep("y", 1000), 1000)
end)
"""
        self.plugin("hoard", {"a.lua": text})
        conf = self.conf(["hoard"], extra=["lua = { memory = 8388608, instructions = 100000000 }"])
        r = self.run_tests(conf)
        self.assertEqual(self.results(r.stdout), {"hoards": "not ok", "then works": "ok"},
                         r.stdout + r.stderr)
        self.assertIn("not enough memory", r.stdout)


class Config(Runner):
    TEXT = """\
test("greeting", function(t)
  t.eq(zt.config.greeting, "你好，测试")
  t.eq(zt.config.size, 7)
end)
"""
    MANIFEST = lua_manifest(options={
        "greeting": {"type": "string", "default": "hello", "description": "d"},
        "size": {"type": "integer", "default": 3, "description": "d"}})

    def test_the_plugins_options_reach_zt_config(self):
        self.plugin("opts", {"a.lua": self.TEXT}, manifest=self.MANIFEST)
        r = self.run_tests(self.conf(["opts"], extra=['opts = { greeting = "你好，测试", size = 7 }']))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # and the same test fails when the config says otherwise: it reads the config
        r = self.run_tests(self.conf(["opts"], extra=['opts = { size = 7 }']))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('expected "你好，测试", got "hello"', r.stdout)

    def test_requires_a_c_plugin_whose_service_the_tests_call(self):
        text = """\
test("the C plugin is there", function(t)
  local r = zt.call("svccredit.check", { code = "A1" })
  t.eq(r.found, false)
end)
"""
        self.plugin("needy", {"a.lua": text}, manifest=lua_manifest(requires=["svccredit"]))
        plugins = os.path.join(env("ZT_BUILD"), "tests", "plugins")
        r = self.run_tests(self.conf(["svccredit", "needy"], plugin_dir=plugins))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertSummary(r.stdout, 1, 1, 0)

    def test_a_file_provides_a_stand_in_service(self):
        text = """\
zt.provide("credit.check", function(args) return { blacklisted = args.code == "BAD" } end)
test("calls the stand-in", function(t)
  t.eq(zt.call("credit.check", { code = "BAD" }), { blacklisted = true })
end)
"""
        # two files provide the same service: each runs on a node of its own
        self.plugin("stand", {"a.lua": text, "b.lua": text},
                    manifest='return { version = "1.0.0", wants = { "credit.check" } }\n')
        r = self.run_tests(self.conf(["stand"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertSummary(r.stdout, 2, 2, 0)


class Selection(Runner):
    def test_default_is_every_lua_plugin_with_tests(self):
        ok = 'test("t", function(t) t.ok(true) end)\n'
        self.plugin("one", {"a.lua": ok})
        self.plugin("notests")
        self.plugin("two", {"a.lua": ok})
        r = self.run_tests(self.conf(["two", "notests", "one"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok 1 - two/a.lua: t\nok 2 - one/a.lua: t\n", r.stdout)
        # named: only those
        r = self.run_tests(self.conf(["two", "notests", "one"]), "one")
        self.assertIn("ok 1 - one/a.lua: t\n", r.stdout)
        self.assertSummary(r.stdout, 1, 1, 0)

    def test_unknown_names_are_usage_errors(self):
        self.plugin("one", {"a.lua": 'test("t", function(t) t.ok(true) end)\n'})
        self.plugin("notests")
        conf = self.conf(["one", "notests"])
        r = self.run_tests(conf, "nosuch")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("'nosuch' is not a Lua plugin of %s (its Lua plugins: one notests)" % conf,
                      r.stderr)
        self.assertNotIn("ok", r.stdout)
        r = self.run_tests(conf, "notests")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("plugin 'notests' has no tests", r.stderr)
        # a C plugin of the config is not a Lua plugin
        plugins = os.path.join(env("ZT_BUILD"), "tests", "plugins")
        r = self.run_tests(self.conf(["svccredit", "one"], plugin_dir=plugins), "svccredit")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("'svccredit' is not a Lua plugin", r.stderr)

    def test_a_config_that_does_not_start_is_exit_1(self):
        r = self.run_tests(self.conf(["absent"]))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("unknown plugin 'absent'", r.stderr)

    def test_scratch_folders_are_in_tmpdir_and_removed(self):
        # run_tests checks $TMPDIR is empty afterwards; here, that it was used at all
        self.plugin("one", {"a.lua": 'test("t", function(t) t.ok(true) end)\n'})
        missing = os.path.join(self.dir, "no-such-tmp")
        r = run(["test", "-c", self.conf(["one"])], env=dict(os.environ, TMPDIR=missing))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("mkdtemp", r.stderr)


class Shipped(unittest.TestCase):
    def test_the_notice_plugin_has_tests_that_pass(self):
        self.assertTrue(glob.glob(os.path.join(zt_src(), "lua", "plugins", "notice", "tests", "*.lua")))
        tmp = tempfile.mkdtemp(prefix="zt-e2e-luatest-tmp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        r = run(["test", "-c", os.path.join(zt_src(), "conf", "zhengtong.conf"), "notice"],
                env=dict(os.environ, TMPDIR=tmp), timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"# (\d+) tests?, \1 passed, 0 failed")
        self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
    unittest.main()
