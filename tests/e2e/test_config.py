# test_config.py: `zhengtong check` and `serve` on good and bad configs (file:line reasons).
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from ztnode import (
    HOST,
    free_port,
    lua_manifest,
    lua_route,
    lua_str,
    run,
    write_lua_plugin,
    zt_bin,
    zt_src,
)


class ConfTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="zt-e2e-conf-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.port = free_port()

    def base(self, plugins=("hello", "notice"), lua_dir=None):
        """Config lines that are valid on their own (one assignment per line)."""
        lines = [
            'node_name = "conf-test"',
            'region_code = "330100"',
            'listen = { "%s:%d" }' % (HOST, self.port),
            "data_dir = %s" % lua_str(os.path.join(self.dir, "data")),
            "map_size = 16777216",
            'log_level = "info"',
        ]
        if lua_dir:
            lines.append("lua_dir = %s" % lua_str(lua_dir))
        lines.append("plugins = { %s }" % ", ".join(lua_str(p) for p in plugins))
        return lines

    def write(self, lines, name="zhengtong.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def check(self, lines):
        path = self.write(lines)
        return path, run(["check", "-c", path])

    def assertRejected(self, lines, line_no, *words):
        """check exits 1; stderr has "<path>:<line_no>:" and each of words."""
        path, r = self.check(lines)
        self.assertEqual(r.returncode, 1, "stdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
        self.assertIn("%s:%d:" % (path, line_no), r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        return r

    def lua_dir_with(self, *plugins):
        """A lua_dir holding the zt library and the given (name, manifest, init) plugins."""
        d = os.path.join(self.dir, "lua")
        src = os.path.join(zt_src(), "lua")
        if os.path.isdir(src):
            shutil.copytree(src, d, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("plugins"))
        for name, manifest, init in plugins:
            write_lua_plugin(d, name, manifest, init)
        return d


class Good(ConfTest):
    def test_base_config_passes(self):
        path, r = self.check(self.base())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_check_does_not_serve(self):
        path, r = self.check(self.base())
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(OSError):
            socket.create_connection((HOST, self.port), timeout=1).close()

    def test_check_leaves_nothing_behind(self):
        # check starts the plugins against a scratch store in $TMPDIR: it must remove all
        # of it (it may hold a freshly made master key). A folder of our own, so that
        # other tests running check at the same time do not count.
        tmp = tempfile.mkdtemp(prefix="zt-e2e-tmpdir-")
        self.addCleanup(shutil.rmtree, tmp, True)

        def scratch():
            return set(glob.glob(os.path.join(tmp, "*")))

        before = scratch()
        path = self.write(self.base())
        r = run(["check", "-c", path], env=dict(os.environ, TMPDIR=tmp))
        self.assertEqual(r.returncode, 0, r.stderr)
        left = sorted(scratch() - before)
        self.assertEqual(left, [], "left behind: %s" % [(d, os.listdir(d)) for d in left if os.path.isdir(d)])
        # and it is $TMPDIR that check uses: one that does not exist stops it
        r = run(["check", "-c", path], env=dict(os.environ, TMPDIR=os.path.join(tmp, "absent")))
        self.assertEqual(r.returncode, 1)
        self.assertIn("mkdtemp", r.stderr)

    def test_shipped_configs_pass(self):
        src = zt_src()
        confs = sorted(glob.glob(os.path.join(src, "conf", "*.conf")))
        examples = sorted(glob.glob(os.path.join(src, "conf", "examples", "*.conf")))
        self.assertTrue(confs, "no conf/*.conf")
        self.assertGreaterEqual(len(examples), 2, "conf/examples/ needs two county configs")
        # Check copies laid out like the source tree (so relative paths resolve the same
        # way) and so that nothing is written into the source tree.
        for name in ("lua", "web", "plugins"):
            if os.path.exists(os.path.join(src, name)):
                os.symlink(os.path.join(src, name), os.path.join(self.dir, name))
        for conf in confs + examples:
            rel = os.path.relpath(conf, src)
            with self.subTest(conf=rel):
                dest = os.path.join(self.dir, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy(conf, dest)
                r = run(["check", "-c", dest])
                self.assertEqual(r.returncode, 0, "%s:\n%s" % (rel, r.stderr))

    def test_example_configs_differ_in_plugins(self):
        examples = sorted(glob.glob(os.path.join(zt_src(), "conf", "examples", "*.conf")))
        sets = set()
        for conf in examples:
            with open(conf) as f:
                text = f.read()
            self.assertIn("plugins", text)
            sets.add(text[text.index("plugins") :].split("}")[0])
        self.assertGreaterEqual(len(sets), 2, "the example counties have the same plugin list")


class Bad(ConfTest):
    def test_unknown_key_with_suggestion(self):
        lines = self.base()
        lines.insert(3, 'node_nmae = "typo"')
        r = self.assertRejected(lines, 4, "node_nmae")
        self.assertIn("node_name", r.stderr.replace("node_nmae", ""))

    def test_unknown_key_without_likeness(self):
        lines = self.base()
        lines.append("completely_unrelated_setting = 1")
        self.assertRejected(lines, len(lines), "completely_unrelated_setting")

    def test_wrong_type(self):
        lines = self.base()
        lines[4] = 'map_size = "big"'
        self.assertRejected(lines, 5, "map_size")

    def test_wrong_type_in_limits(self):
        lines = self.base()
        lines.insert(2, 'limits = { header_bytes = "lots" }')
        self.assertRejected(lines, 3, "header_bytes")

    def test_unknown_limit(self):
        lines = self.base()
        lines.insert(2, "limits = { header_bites = 100 }")
        self.assertRejected(lines, 3, "header_bites")

    def test_bad_log_level(self):
        lines = self.base()
        lines[5] = 'log_level = "chatty"'
        self.assertRejected(lines, 6, "log_level")

    def test_listen_not_a_list_of_addresses(self):
        lines = self.base()
        lines[2] = "listen = 8080"
        self.assertRejected(lines, 3, "listen")

    def test_listen_addresses_that_overlap(self):
        # each would pass a check for exact duplicates, then stop serve with "address
        # already in use" from its own first socket
        p = self.port
        cases = [
            (["0.0.0.0:%d" % p, "127.0.0.1:%d" % p], "'0.0.0.0:%d' covers '127.0.0.1:%d'" % (p, p)),
            (["127.0.0.1:%d" % p, "0.0.0.0:%d" % p], "'0.0.0.0:%d' covers '127.0.0.1:%d'" % (p, p)),
            (["[::1]:%d" % p, "[::]:%d" % p], "'[::]:%d' covers '[::1]:%d'" % (p, p)),
            (["[::]:%d" % p, "[0::0]:%d" % p], "'[::]:%d' and '[0::0]:%d' are the same IPv6" % (p, p)),
            (["127.0.0.1:8080", "127.0.0.1:08080"], "are the same IPv4 address and port"),
        ]
        for addrs, why in cases:
            with self.subTest(addrs):
                lines = self.base()
                lines[2] = "listen = { %s }" % ", ".join(lua_str(a) for a in addrs)
                self.assertRejected(lines, 3, why, "keep one")
                r = run(["serve", "-c", self.write(lines)], timeout=20)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("%s:3: listen: " % os.path.join(self.dir, "zhengtong.conf"), r.stderr)
                self.assertNotIn("in use", r.stderr)
        # other addresses, or the other family (IPv6 listeners are IPv6-only), at one port
        for addrs in (["127.0.0.1:%d" % p, "127.0.0.2:%d" % p], ["0.0.0.0:%d" % p, "[::]:%d" % p],
                      ["127.0.0.1:%d" % p, "0.0.0.0:%d" % (p + 1)]):
            with self.subTest(addrs):
                lines = self.base()
                lines[2] = "listen = { %s }" % ", ".join(lua_str(a) for a in addrs)
                path, r = self.check(lines)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_the_bus_and_a_listener_at_one_port(self):
        # serve said only "listen ...: address already in use", from the bus's own socket
        p = self.port
        # (nng binds [::] dual-stack: it takes the IPv4 addresses of its port too)
        for listen, pub in (("127.0.0.1:%d" % p, "tcp://127.0.0.1:%d" % p),
                            ("127.0.0.1:%d" % p, "tcp://0.0.0.0:%d" % p),
                            ("127.0.0.1:%d" % p, "tcp://[::]:%d" % p)):
            with self.subTest(pub=pub):
                lines = self.base()
                lines[2] = "listen = { %s }" % lua_str(listen)
                lines.append("bus = { publish = %s }" % lua_str(pub))
                self.assertRejected(lines, len(lines), "bus.publish: '%s' and listen '%s' are at the same port"
                                    % (pub, listen), "another port")
                r = run(["serve", "-c", self.write(lines)], timeout=20)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertNotIn("in use", r.stderr)
        lines = self.base()
        lines[2] = "listen = { %s }" % lua_str("127.0.0.1:%d" % p)
        lines.append("bus = { publish = %s }" % lua_str("tcp://127.0.0.1:%d" % (p + 1)))
        self.assertEqual(self.check(lines)[1].returncode, 0)

    def test_data_dir_and_web_dir_are_checked_against_the_disk(self):
        # what serve would stumble on, each reported by check (and serve) at its line
        afile = os.path.join(self.dir, "a-file")
        with open(afile, "w") as f:
            f.write("not a folder\n")
        missing = os.path.join(self.dir, "no-such-folder")
        cases = [
            ("data_dir", afile, "data_dir %s is not a folder" % afile),
            ("data_dir", os.path.join(afile, "data"),
             "cannot be made: %s is a file, not a folder" % afile),
            ("data_dir", os.path.join(afile, "x", "data"),
             "cannot be made: %s is a file, not a folder" % afile),
            ("web_dir", missing, "web_dir %s does not exist (web_dir = false serves no web pages)"
             % missing),
            ("web_dir", afile, "web_dir %s is not a folder" % afile),
        ]
        for key, value, why in cases:
            with self.subTest(key=key, value=value):
                lines = self.base()
                if key == "data_dir":
                    lines[3] = "data_dir = %s" % lua_str(value)
                else:
                    lines.insert(3, "web_dir = %s" % lua_str(value))
                self.assertRejected(lines, 4, why)
                r = run(["serve", "-c", self.write(lines)], timeout=20)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("%s:4: %s " % (os.path.join(self.dir, "zhengtong.conf"), key), r.stderr)
                self.assertIn(why, r.stderr)
        # a data_dir not made yet (also in folders not made yet: systemd makes
        # /var/lib/zhengtong when the service first starts, after the install's check)
        for data in (os.path.join(self.dir, "data"), os.path.join(missing, "data")):
            with self.subTest(data=data):
                lines = self.base()
                lines[3] = "data_dir = %s" % lua_str(data)
                lines.insert(3, "web_dir = false")
                path, r = self.check(lines)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("data_dir %s does not exist yet: the first start makes it" % data,
                              r.stdout)
                self.assertFalse(os.path.exists(data))  # check made nothing

    def test_commands_on_a_data_dir_that_is_a_file(self):
        afile = os.path.join(self.dir, "a-file")
        with open(afile, "w") as f:
            f.write("not a folder\n")
        lines = self.base()
        lines[3] = "data_dir = %s" % lua_str(afile)
        path = self.write(lines)
        for args in (["admin", "-c", path, "user", "list"], ["audit", "-c", path, "verify"],
                     ["backup", "-c", path, os.path.join(self.dir, "backup")]):
            with self.subTest(args[0]):
                r = run(args)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("%s:4: data_dir %s is not a folder" % (path, afile), r.stderr)
                self.assertNotIn("holds no data", r.stderr)
                self.assertNotIn("creates it", r.stderr)

    def test_map_size_beyond_what_the_machine_can_map(self):
        # inside the type's bound, but more address space than x86-64 (2^47) or any
        # machine gives: refused at its line before anything is made, by check and serve
        lines = self.base()
        lines[4] = "map_size = 2^50"
        r = self.assertRejected(lines, 5, "map_size 1125899906842624 bytes is more address space "
                                "than this machine can map (here at most about 2^")
        self.assertNotIn("zhengtong-check-", r.stderr)  # not the scratch folder's name
        r = run(["serve", "-c", self.write(lines)], timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:5: map_size" % os.path.join(self.dir, "zhengtong.conf"), r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data")))  # no empty data.mdb
        # what it says it can map, it can
        most = int(r.stderr.split("here at most about 2^")[1].split(" ")[0])
        lines[4] = "map_size = 2^%d" % most
        path, r = self.check(lines)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_byte_order_mark_is_not_lua(self):
        # Notepad saves a UTF-8 file with one (the config has Chinese comments)
        lines = ["-- 县级节点配置"] + self.base()
        path = self.write(lines)
        with open(path, "rb") as f:
            text = f.read()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbf" + text)
        r = run(["check", "-c", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        # and the lines are still counted from the first
        with open(path, "ab") as f:
            f.write(b"nod_name = 1\n")
        r = run(["check", "-c", path])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d: unknown key 'nod_name'" % (path, len(lines) + 1), r.stderr)

    def test_unknown_plugin(self):
        lines = self.base(plugins=("hello", "no_such_plugin"))
        self.assertRejected(lines, len(lines), "no_such_plugin")

    def test_missing_dependency(self):
        lua_dir = self.lua_dir_with(
            (
                "needy",
                lua_manifest(requires=["absent_helper"]),
                lua_route("GET", "/needy", "return 200, { ok = true }"),
            )
        )
        lines = self.base(plugins=("needy",), lua_dir=lua_dir)
        self.assertRejected(lines, len(lines), "needy", "absent_helper")

    def test_dependency_present_is_fine(self):
        lua_dir = self.lua_dir_with(
            ("needy", lua_manifest(requires=["helper"]),
             lua_route("GET", "/needy", "return 200, { ok = true }")),
            ("helper", lua_manifest(), lua_route("GET", "/helper", "return 200, { ok = true }")),
        )
        # listed before its dependency: the core orders them
        path, r = self.check(self.base(plugins=("needy", "helper"), lua_dir=lua_dir))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_dependency_cycle(self):
        lua_dir = self.lua_dir_with(
            ("ping", lua_manifest(requires=["pong"]), ""),
            ("pong", lua_manifest(requires=["ping"]), ""),
        )
        path, r = self.check(self.base(plugins=("ping", "pong"), lua_dir=lua_dir))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("ping", r.stderr)
        self.assertIn("pong", r.stderr)

    def test_unknown_plugin_option(self):
        lines = self.base()
        lines.append("notice = { page_sise = 20 }")
        self.assertRejected(lines, len(lines), "page_sise")

    def test_wrong_type_of_plugin_option(self):
        lines = self.base()
        lines.append('notice = { page_size = "twenty" }')
        self.assertRejected(lines, len(lines), "page_size")

    def test_a_plugin_says_what_is_wrong_with_its_option_at_its_line(self):
        """Ranges and files the option types cannot say: the plugins check them in init and
        the message names the config's line (zt_option_fail, zt.config_error)."""
        for plugins, table, word in (
            (("hello", "notice"), "notice = {\n  max_body = 100,\n  page_size = -5,\n}",
             "notice.page_size: must be 1 to 100, not -5"),
            (("workflow", "approval"), "approval = {\n  draft_days = -1 }",
             "approval.draft_days: must be 1 to 3650, not -1"),
            (("workflow",), 'workflow = {\n holidays = { "2027-01-01", "2027-13-01" } }',
             'workflow.holidays: item 2, "2027-13-01", is not a date that exists'),
            (("workflow",), "workflow = { utc_offset_minutes = 9999 }",
             "workflow.utc_offset_minutes: 9999 is not a time zone"),
            (("sensor",), 'sensor = {\n  rules = "sensor/rulez.lua" }',
             "sensor.rules: cannot read"),
        ):
            with self.subTest(word=word):
                lines = self.base(plugins=plugins)
                lines += table.split("\n")
                # the line of the option itself (its table's last line holds it here)
                self.assertRejected(lines, len(lines) - (1 if table.endswith("\n}") else 0), word)

    def test_a_key_twice_in_a_table_or_set_after_it(self):
        lines = self.base()
        lines += ["limits = {", "  idle_timeout = 5, -- idle_timeout = 7 (a comment)",
                  "  header_timeout = 3,", "  idle_timeout = 6,", "}"]
        self.assertRejected(lines, len(lines) - 1, "'idle_timeout' is set twice (first at line %d)"
                            % (len(lines) - 3))
        lines = self.base()
        lines += ['notice = { page_size = 10, page_size = 20 }']
        self.assertRejected(lines, len(lines), "'page_size' is set twice")
        # what is inside a string or a comment, long ones too, is not a key
        for table in ('hello = { greeting = [[a = 1, greeting = x]] }',
                      'hello = { greeting = [==[\n greeting = 2\n]==] }',
                      'hello = {\n --[[ greeting = 1\n greeting = 2 ]]\n greeting = "x = 1, greeting = y" }'):
            with self.subTest(table=table):
                lines = self.base()
                lines += table.split("\n")
                path, r = self.check(lines)
                self.assertEqual(r.returncode, 0, r.stderr)
        lines = self.base()
        lines += ["limits = { idle_timeout = 5 }", "limits.idle_timeout = 6"]
        self.assertRejected(lines, len(lines), "'limits' is a table (set at line %d)"
                            % (len(lines) - 1))

    def test_syntax_error(self):
        lines = self.base()
        lines.insert(3, 'region_code = "330100')  # unfinished string
        self.assertRejected(lines, 4)

    def test_syntax_error_later_line(self):
        lines = self.base()
        lines.append("limits = { header_bytes = 1024,, }")
        self.assertRejected(lines, len(lines))

    def test_config_cannot_run_code(self):
        lines = self.base()
        lines.insert(1, 'os.execute("touch %s")' % os.path.join(self.dir, "pwned"))
        path, r = self.check(lines)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:2:" % path, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "pwned")))

    def test_routes_claimed_twice(self):
        lua_dir = self.lua_dir_with(
            ("first", lua_manifest(), lua_route("GET", "/same/:x", "return 200, {}")),
            ("second", lua_manifest(), lua_route("GET", "/same/:y", "return 200, {}")),
        )
        path, r = self.check(self.base(plugins=("first", "second"), lua_dir=lua_dir))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("first", r.stderr)
        self.assertIn("second", r.stderr)

    def test_failing_lua_init_names_the_plugin(self):
        lua_dir = self.lua_dir_with(
            ("broken", lua_manifest(), 'error("init went wrong on purpose")\n'),
        )
        path, r = self.check(self.base(plugins=("broken",), lua_dir=lua_dir))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("broken", r.stderr)
        self.assertIn("init went wrong on purpose", r.stderr)

    def test_mistakes_caught_in_init_still_stop_the_start(self):
        """A config error or a route refused stops the start even when init.lua catches it
        with pcall, and the start's error says where it was raised."""
        opts = {"n": {"type": "integer", "default": 5, "description": "a number"}}
        for init, line_no, words in (
            ('local x = 1\nlocal ok = pcall(zt.config_error, "n", "caught on purpose")\n',
             None, ("careless.n: caught on purpose",)),
            ('local x = 1\nlocal ok = pcall(zt.route, "GET", "no-slash", function() end)\n',
             2, ("zt.route GET no-slash", "must start with '/'")),
            ('local ok = pcall(zt.route, "GET", "/x", { role = "Bad Role" }, function() end)\n',
             1, ("role 'Bad Role'",)),
            # the route's options and its handler too: a route that was meant and is not there
            ('\nlocal ok = pcall(zt.route, "GET", "/x", { rolle = "user" }, function() end)\n',
             2, ("zt.route GET /x: unknown option 'rolle'",)),
            ('local ok = pcall(zt.route, "PUT", "/x", { body_limit = 0 }, function() end)\n',
             1, ("body_limit must be an integer >= 1",)),
            ('local ok = pcall(zt.route, "GET", "/x", { role = 7 }, function() end)\n',
             1, ("role must be a string",)),
            ('local ok = pcall(zt.route, "GET", "/x", {}, "not a function")\n',
             1, ("the handler must be a function, not string",)),
        ):
            with self.subTest(init=init):
                lua_dir = self.lua_dir_with(("careless", lua_manifest(options=opts), init))
                lines = self.base(plugins=("careless",), lua_dir=lua_dir)
                lines.append("careless = { n = 7 }")
                path, r = self.check(lines)
                self.assertEqual(r.returncode, 1, "stdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
                self.assertNotIn("OK", r.stdout)
                where = "%s:%d:" % (path, len(lines)) if line_no is None else \
                    "careless/init.lua:%d: " % line_no
                self.assertIn(where, r.stderr)
                for w in words:
                    self.assertIn(w, r.stderr)

    def test_missing_config_file(self):
        r = run(["check", "-c", os.path.join(self.dir, "absent.conf")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("absent.conf", r.stderr)

    def test_serve_with_bad_config_exits_before_listening(self):
        lines = self.base()
        lines.append('notice = { page_size = "twenty" }')
        path = self.write(lines)
        p = subprocess.Popen(
            [zt_bin(), "serve", "-c", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("serve kept running with a bad config")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("%s:%d:" % (path, len(lines)), err)
        with self.assertRaises(OSError):
            socket.create_connection((HOST, self.port), timeout=1).close()

    def test_serve_with_port_in_use_fails(self):
        s = socket.socket()
        s.bind((HOST, self.port))
        s.listen(1)
        self.addCleanup(s.close)
        path = self.write(self.base())
        p = subprocess.run(
            [zt_bin(), "serve", "-c", path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
        )
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(str(self.port), p.stderr)


class Commands(unittest.TestCase):
    def test_unknown_command(self):
        r = run(["frobnicate"])
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip())

    def test_c_without_a_file(self):
        for cmd in (["admin", "-c"], ["check", "-c"], ["audit", "verify", "-c"]):
            with self.subTest(cmd):
                r = run(cmd)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith("zhengtong: -c needs a FILE (the config)\n"),
                                r.stderr)
                self.assertNotIn("unexpected argument", r.stderr)


if __name__ == "__main__":
    unittest.main()
