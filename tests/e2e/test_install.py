# test_install.py: `cmake --install` into a scratch prefix, then what county IT does with
# it: the config template, the systemd units and system user (checked by systemd's own
# tools), the installed node serving from the installed tree, and the nightly backup
# script (rotation; a backup that a node starts from).
import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

from ztnode import HOST, env, free_port, wait_for

UNITS = ("zhengtong.service", "zhengtong-standby.service", "zhengtong-backup.service",
         "zhengtong-backup.timer")


def sh(args, timeout=60, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, **kw)


class Installed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="zt-e2e-install-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.prefix = os.path.join(cls.root, "usr")
        r = sh(["cmake", "--install", env("ZT_BUILD"), "--prefix", cls.prefix], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.bin = os.path.join(cls.prefix, "bin", "zhengtong")
        cls.backup = os.path.join(cls.prefix, "bin", "zhengtong-backup")
        cls.units = os.path.join(cls.prefix, "lib", "systemd", "system")

    def path(self, *parts):
        return os.path.join(self.prefix, *parts)

    def test_layout(self):
        for p, executable in (
            (("bin", "zhengtong"), True),
            (("bin", "zhengtong-backup"), True),
            (("include", "zhengtong", "zt.h"), False),
            (("share", "zhengtong", "zhengtong.conf"), False),
            (("share", "zhengtong", "lua", "plugins", "approval", "init.lua"), False),
            (("share", "zhengtong", "web", "index.html"), False),
            (("share", "doc", "zhengtong", "README.md"), False),
            (("share", "doc", "zhengtong", "lua-api.md"), False),
            (("share", "doc", "zhengtong", "examples", "zhengtong.conf"), False),
            (("lib", "sysusers.d", "zhengtong.conf"), False),
        ):
            with self.subTest(path=p):
                full = self.path(*p)
                self.assertTrue(os.path.isfile(full), full)
                self.assertEqual(os.access(full, os.X_OK), executable, full)
        plugins = os.listdir(self.path("lib", "zhengtong", "plugins"))
        self.assertEqual(sorted(plugins), ["hello.so", "sensor.so", "workflow.so"])
        # what is written at install time names the prefix given to `cmake --install`
        for f in [os.path.join(self.units, u) for u in UNITS] + [
            self.path("share", "zhengtong", "zhengtong.conf"),
            self.backup,
        ]:
            with open(f) as fh:
                text = fh.read()
            self.assertNotRegex(text, r"@[A-Z_]+@", f)
        with open(os.path.join(self.units, "zhengtong.service")) as fh:
            self.assertIn("ExecStart=%s serve -c /etc/zhengtong/zhengtong.conf" % self.bin, fh.read())
        with open(os.path.join(self.units, "zhengtong-standby.service")) as fh:
            standby = fh.read()
        self.assertIn("ExecStart=%s standby -c /etc/zhengtong/zhengtong.conf ${PRIMARY}" % self.bin,
                      standby)
        self.assertIn("Conflicts=zhengtong.service", standby)

    def test_a_plugin_is_built_outside_the_tree_with_pkg_config(self):
        """README, "Writing a plugin": the documented command, against the installed zt.h."""
        pc = dict(os.environ, PKG_CONFIG_PATH=self.path("lib", "pkgconfig"))
        r = sh(["pkg-config", "--variable=plugindir", "zhengtong"], env=pc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), self.path("lib", "zhengtong", "plugins"))
        abi, minor = re.search(r"plugin ABI (\d+)\.(\d+)", sh([self.bin, "version"]).stdout).groups()
        for var, want in (("abi", abi), ("abi_minor", minor)):
            r = sh(["pkg-config", "--variable=" + var, "zhengtong"], env=pc)
            self.assertEqual(r.stdout.strip(), want)
        work = tempfile.mkdtemp(prefix="p", dir=self.root)
        src = os.path.join(work, "hello.c")
        shutil.copy(os.path.join(env("ZT_SRC"), "plugins", "hello", "hello.c"), src)
        cflags = sh(["pkg-config", "--cflags", "zhengtong"], env=pc).stdout.split()
        r = sh(["cc", "-shared", "-fPIC"] + cflags + ["-o", os.path.join(work, "hello.so"), src])
        self.assertEqual(r.returncode, 0, r.stderr)
        conf = os.path.join(work, "plugin.conf")
        with open(conf, "w") as f:
            f.write('plugins = { "hello" }\nplugin_dir = "%s"\ndata_dir = "%s"\n'
                    % (work, os.path.join(work, "data")))
        r = sh([self.bin, "check", "-c", conf])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 plugins", r.stdout)
        # built against a later zt.h: its next minor, with a function this node lacks, which
        # the plugin calls. The node says so, not dlopen's "undefined symbol".
        so = os.path.join(work, "hello.so")
        later = os.path.join(work, "later")
        os.mkdir(later)
        with open(os.path.join(self.path("include", "zhengtong", "zt.h"))) as f:
            zt_h = f.read()
        bumped = re.sub(r"(?m)^#define ZT_ABI_MINOR +%s$" % minor,
                        "#define ZT_ABI_MINOR %d" % (int(minor) + 1), zt_h)
        self.assertNotEqual(bumped, zt_h)
        with open(os.path.join(later, "zt.h"), "w") as f:
            f.write(bumped.replace("#endif /* ZT_H */", "int zt_from_a_later_release(void);\n#endif"))
        with open(src, "a") as f:
            f.write("\nint hello_uses_it(void) { return zt_from_a_later_release(); }\n")
        r = sh(["cc", "-shared", "-fPIC", "-I" + later] + cflags + ["-o", so, src])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = sh([self.bin, "check", "-c", conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("plugin 'hello' (%s) was built for zhengtong plugin ABI %s.%d; this node has "
                      "%s.%s: upgrade the node" % (so, abi, int(minor) + 1, abi, minor), r.stderr)
        self.assertNotIn("undefined symbol", r.stderr)
        # against this node's zt.h, with a function no zt.h declares: dlopen's words, and why
        with open(src, "a") as f:
            f.write("int zt_from_a_later_release(void);\n")
        r = sh(["cc", "-shared", "-fPIC"] + cflags + ["-o", so, src])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = sh([self.bin, "check", "-c", conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("undefined symbol: zt_from_a_later_release (it was built for plugin ABI "
                      "%s.%s, all of which this node (%s.%s) has: zt.h declares no such function)"
                      % (abi, minor, abi, minor), r.stderr)

    def test_systemd_accepts_the_units_and_the_user(self):
        r = sh(["systemd-analyze", "verify"] + [os.path.join(self.units, u) for u in UNITS])
        # warnings (an unknown key, a bad value) go to stderr with exit 0: none allowed
        self.assertEqual((r.returncode, r.stderr.strip()), (0, ""), r.stdout)
        alt = os.path.join(self.root, "sysroot")
        os.makedirs(os.path.join(alt, "etc"), exist_ok=True)
        r = sh(["systemd-sysusers", "--dry-run", "--root", alt,
                self.path("lib", "sysusers.d", "zhengtong.conf")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Creating user 'zhengtong'", r.stderr + r.stdout)

    def conf(self, workdir, data_dir, port):
        """The installed template, as county IT edits it (the lines marked SET), with the
        state folders moved into the test's folder."""
        with open(self.path("share", "zhengtong", "zhengtong.conf")) as fh:
            text = fh.read()
        keys = os.path.join(workdir, "keys", "master.key")
        text = text.replace('"/var/lib/zhengtong/data"', json.dumps(data_dir))
        text = text.replace('"/var/lib/zhengtong/keys/master.key"', json.dumps(keys))
        text = text.replace('"127.0.0.1:8080"', '"%s:%d"' % (HOST, port))
        text = re.sub(r'node_name = "county"', 'node_name = "install-test"', text)
        text = re.sub(r'region_code = "000000"', 'region_code = "341122"', text)
        path = os.path.join(workdir, "zhengtong-%d.conf" % port)
        with open(path, "w") as fh:
            fh.write(text)
        return path

    def serve(self, conf, port, workdir):
        out = open(os.path.join(workdir, "stdout-%d.txt" % port), "w+")
        err = open(os.path.join(workdir, "log-%d.txt" % port), "w+")
        p = subprocess.Popen([self.bin, "serve", "-c", conf], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err, cwd=workdir)

        def stop():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
            out.close()
            err.close()

        self.addCleanup(stop)
        def up():
            if p.poll() is not None:
                err.seek(0)
                self.fail("the installed node exited %d: %s" % (p.returncode, err.read()))
            return self.get(port, "/healthz")[0] == 200

        wait_for("the installed node to answer", up)
        return p, out, stop

    def get(self, port, path, method="GET", body=None, token=None):
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            hdrs.update(self.via_nginx)
            if token:
                hdrs["Authorization"] = "Bearer " + token
            c.request(method, path, body=None if body is None else json.dumps(body), headers=hdrs)
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, data
        except OSError:
            return 0, b""

    # The installed node sits behind nginx (trusted_proxies), which says it took each
    # request over HTTPS (auth.https_only): as it would, the test sends the header.
    via_nginx = {"X-Forwarded-Proto": "https"}

    def test_installed_node_serves_and_its_backups_restore(self):
        work = tempfile.mkdtemp(prefix="w", dir=self.root)
        port = free_port()
        conf = self.conf(work, os.path.join(work, "data"), port)
        r = sh([self.bin, "check", "-c", conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK: node install-test, 3 plugins", r.stdout)

        p, out, stop = self.serve(conf, port, work)
        st, body = self.get(port, "/healthz")
        plugins = {x["name"]: x["state"] for x in json.loads(body)["plugins"]}
        self.assertEqual(plugins, {"notice": "running", "workflow": "running", "approval": "running"})
        st, body = self.get(port, "/")  # the landing page, from the installed web folder
        self.assertEqual(st, 200)
        self.assertIn(b"<html", body.lower())
        st, body = self.get(port, "/approval/items")  # a Lua plugin from the installed lua folder
        self.assertEqual(st, 200, body)
        # the first start's admin signs in and sets a password: changes (and audit records)
        out.seek(0)
        pw = re.search(r"one-time password\s+(\S+)", out.read()).group(1)
        self.via_nginx = {}  # a client that reached it without HTTPS: no credential is taken
        st, body = self.get(port, "/auth/login", "POST", {"login": "admin", "password": pw})
        self.assertEqual((st, json.loads(body)["type"]), (403, "/problems/https-required"), body)
        self.via_nginx = {"X-Forwarded-Proto": "https"}
        st, body = self.get(port, "/auth/login", "POST", {"login": "admin", "password": pw})
        self.assertEqual(st, 200, body)
        token = json.loads(body)["token"]
        st, body = self.get(port, "/auth/password", "POST",
                            {"old_password": pw, "new_password": "Installed-Kq7z-1"}, token)
        self.assertIn(st, (200, 204), body)

        # the backup script, while the node serves: keeps the newest KEEP
        backups = os.path.join(work, "backups")
        made = []
        for i in range(3):
            if i:
                time.sleep(1.05)  # one backup a second at most: the name is the UTC time
            r = sh([self.backup, conf, backups, "2"], env=dict(os.environ, ZHENGTONG=self.bin))
            self.assertEqual(r.returncode, 0, r.stderr)
            made.append(re.search(r"zhengtong-backup: (\S+)\n", r.stdout).group(1))
        kept = sorted(x for x in os.listdir(backups) if not x.startswith("."))
        self.assertEqual([os.path.join(backups, k) for k in kept], made[1:], kept)
        self.assertTrue(os.path.isfile(os.path.join(made[-1], "data.mdb")))
        for bad in ("0", "x", ""):
            r = sh([self.backup, conf, backups, bad])
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("KEEP", r.stderr)

        stop()
        # restore: a node started on the newest backup (and the same key) has the accounts
        # and an audit log that verifies
        port2 = free_port()
        conf2 = self.conf(work, made[-1], port2)
        r = sh([self.bin, "audit", "-c", conf2, "verify"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("audit log OK", r.stdout)
        self.serve(conf2, port2, work)
        st, body = self.get(port2, "/auth/login", "POST",
                            {"login": "admin", "password": "Installed-Kq7z-1"})
        self.assertEqual(st, 200, body)


if __name__ == "__main__":
    unittest.main()
