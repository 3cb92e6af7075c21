# test_replication.py: real-time replication to a standby (异地实时备份), on real binaries:
# a primary with replication on, a standby seeded from its backup, restarts, promotion.
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import lmdb

from ztnode import (NodeTest, credit_code, free_port, lua_route, lua_tree_with, run, scrape,
                    wait_for, zt_bin)

AUTH = {"password_ops": 1, "password_memory": 8192}
PDF = {"Content-Type": "application/pdf"}
CODE = credit_code("91330122MA2A00001")
# the credit service the approval plugin asks (the real plugin is another issue)
CREDIT = ('return { version = "0.0.1", description = "stand-in credit checks" }\n',
          'zt.provide("credit.check", function(args) return { blacklisted = false } end)\n')
DEPTS = [("scjg", "市场监督管理局"), ("scjg-sp", "食品安全科"), ("wjw", "卫生健康委员会"),
         ("zjj", "住房和城乡建设局"), ("gajj", "公安交警大队"), ("zhzf", "综合行政执法局")]
LOG_DBS = (b"_core/replog", b"_core/repl")  # the change log itself: each node's own


def dump(data_dir):
    """Every record of every database but the change log's, and the batch the data is at,
    read in one LMDB read transaction (beside a running node: LMDB is multi-process)."""
    env = lmdb.open(data_dir, readonly=True, max_dbs=128, subdir=True, create=False)
    try:
        out = {}
        with env.begin() as txn:
            names = [k for k, _ in txn.cursor()]
            for name in names:
                db = env.open_db(name, txn=txn, create=False)
                if name in LOG_DBS:
                    if name == b"_core/repl":
                        log = txn.get(b"log", db=db)
                        head = int.from_bytes(log[16:24], "big") if log else None
                    continue
                out[name] = list(txn.cursor(db=db))
        return head, out
    finally:
        env.close()


class SlowLink:
    """A TCP relay from a port of its own to the primary's replication port that carries at
    most `rate` bytes a second each way: a narrow line to the other site."""

    def __init__(self, target_port, rate):
        self.target, self.rate = target_port, rate
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(src, dst), daemon=True).start()

    def pump(self, src, dst):
        chunk = max(1, self.rate // 20)
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()


class Standby:
    """`zhengtong standby` on a data folder seeded from a backup of primary."""

    def __init__(self, test, primary, backup, key_file=None, url=None, env=None):
        self.node = test.node(plugins=primary.plugins, lua_dir=primary.lua_dir, auth=AUTH,
                              data_dir=None, start=False, sign_in=False)
        self.env = dict(os.environ, **env) if env else None
        shutil.copytree(backup, self.node.data_dir)
        os.chmod(self.node.data_dir, 0o700)
        key = os.path.join(self.node.dir, "keys", "master.key")
        os.makedirs(os.path.dirname(key), mode=0o700)
        shutil.copyfile(key_file or os.path.join(primary.dir, "keys", "master.key"), key)
        os.chmod(key, 0o600)
        self.url = url or primary.repl_url
        self.log_path = os.path.join(self.node.dir, "standby.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([zt_bin(), "standby", "-c", self.node.conf, self.url],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=self.env)
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=15)
        self.logf.close()
        return rc

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def status(self):
        r = run(["standby", "-c", self.node.conf, "status"])
        with open(os.path.join(self.node.data_dir, "standby.json")) as f:
            return r, json.load(f)


class Replication(NodeTest):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="zt-e2e-repl-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def primary(self, plugins=("hello", "notice"), keep=None, lua_dir=None):
        port = free_port()
        url = "tcp://127.0.0.1:%d" % port
        opts = "replication = { listen = %s%s }\n" % (
            json.dumps(url), ", keep = %d" % keep if keep else "")
        roles = ("notice_editor",) + (("approval_admin",) if "approval" in plugins else ())
        n = self.node(plugins=plugins, options=opts, lua_dir=lua_dir, auth=AUTH, roles=roles)
        n.plugins, n.lua_dir, n.repl_url = plugins, lua_dir, url
        return n

    def backup(self, n, name="seed"):
        dest = os.path.join(self.tmp, name)
        r = run(["backup", "-c", n.conf, dest], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return dest

    def assert_same_data(self, primary, standby):
        """Wait until the standby has applied the primary's last batch, then compare every
        record of every database (the primary may commit meanwhile: then again)."""
        def same():
            h1, d1 = dump(standby.node.data_dir)
            h2, d2 = dump(primary.data_dir)
            return (h1, d1, d2) if h1 == h2 else None
        head, got, want = wait_for("the standby to catch up", same, timeout=20)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            self.assertEqual(got[name], want[name], name)
        return head

    def approval_writes(self, n, count):
        """Applications of the food licence driven to submitted: drafts, materials (sealed
        records), workflow instances, their tasks, events and timers."""
        body = {"kind": "enterprise", "login": "haoweidao", "name": "城关镇好味道餐饮有限公司",
                "password": "Applicant-password-1", "credit_code": CODE}
        if not getattr(n, "ent", None):
            for code, name in DEPTS:
                st, _, d = n.json("POST", "/admin/departments",
                                  {"code": code, "name": name, "parent": "root"})
                self.assertEqual(st, 201, d)
            st, _, d = n.json("POST", "/auth/register", body, auth=False)
            self.assertEqual(st, 201, d)
        st, _, d = n.login("haoweidao", "Applicant-password-1")
        self.assertEqual(st, 200, d)
        n.ent = {"Authorization": "Bearer " + d["token"]}
        st, _, item = n.json("GET", "/approval/items/FOOD-LICENCE", auth=False)
        self.assertEqual(st, 200, item)
        numbers = []
        for i in range(count):
            form = {"business_name": "好味道餐馆 %d" % i, "address": "城关镇人民路 %d 号" % i,
                    "categories": "热食类食品制售", "area_m2": 86.5}
            st, _, app = n.json("POST", "/approval/applications",
                                {"item": "FOOD-LICENCE", "form": form, "credit_code": CODE},
                                n.ent, auth=False)
            self.assertEqual(st, 201, app)
            for m in item["materials"]:
                if m["required"]:
                    st, _, b = n.request("PUT", "/approval/applications/%s/materials/%s"
                                         % (app["number"], m["name"]),
                                         b"%PDF-1.7 " + m["name"].encode(), dict(n.ent, **PDF),
                                         auth=False)
                    self.assertEqual(st, 200, b)
            st, _, d = n.json("POST", "/approval/applications/%s/submit" % app["number"],
                              None, n.ent, auth=False)
            self.assertEqual(st, 200, d)
            numbers.append(app["number"])
        return numbers

    def test_a_standby_follows_survives_a_restart_and_is_promoted(self):
        lua = lua_tree_with(os.path.join(self.tmp, "lua"), {"credit": CREDIT})
        p = self.primary(plugins=("hello", "notice", "workflow", "approval", "credit"), lua_dir=lua)
        for _ in range(5):
            self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        first = self.approval_writes(p, 2)
        sb = Standby(self, p, self.backup(p)).start()
        # writes while it follows: counters, notices, approvals (sealed databases, workflow
        # instances, events, timers), and deletes
        ids = []
        for i in range(20):
            self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
            st, _, d = p.json("POST", "/notices", {"title": "通知 %d" % i, "body": "正文 %d" % i})
            self.assertEqual(st, 201, d)
            ids.append(d["id"])
        for nid in ids[:5]:
            self.assertEqual(p.request("DELETE", "/notices/" + nid)[0], 204)
        more = self.approval_writes(p, 2)
        self.assert_same_data(p, sb)
        r, status = sb.status()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("following", r.stdout)
        self.assertEqual(status["behind"], 0)
        self.assertIn("zt_replication_head_batch", scrape(p).names())
        # the primary restarts mid-stream: the standby reconnects and catches up
        for _ in range(10):
            self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        p.restart()
        for _ in range(10):
            self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        later = self.approval_writes(p, 1)
        head = self.assert_same_data(p, sb)
        self.assertGreater(head, 0)
        # the site is lost: the standby is promoted (stopped, then served)
        st, _, count = p.json("GET", "/hello/counter")
        p.stop()
        self.assertEqual(sb.stop(), 0, sb.log())
        r, status = sb.status()
        self.assertEqual(r.returncode, 1, r.stdout)  # no standby runs any more
        self.assertEqual(status["state"], "stopped")
        m = sb.node
        m.start()
        self.assertIn("promoted", m.log())
        st, _, d = m.json("GET", "/hello/counter", auth=False)
        self.assertEqual((st, d), (200, count))
        for nid in ids[5:]:
            st, _, got = m.json("GET", "/notices/" + nid, auth=False)
            self.assertEqual(st, 200, got)
        self.assertEqual(m.request("GET", "/notices/" + ids[0], auth=False)[0], 404)
        # the applicant signs in on the promoted node and sees every application
        st, _, d = m.login("haoweidao", "Applicant-password-1")
        self.assertEqual(st, 200, d)
        ent = {"Authorization": "Bearer " + d["token"]}
        for number in first + more + later:
            st, _, app = m.json("GET", "/approval/applications/" + number, None, ent, auth=False)
            self.assertEqual(st, 200, app)
            self.assertNotEqual(app["state"], "draft")
        m.stop()
        r = run(["audit", "-c", m.conf, "verify"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("audit log OK", r.stdout)

    def test_a_standby_behind_the_kept_window_is_told_to_reseed(self):
        p = self.primary(keep=65536)
        seed = self.backup(p)
        body = "正文" * 1000
        for i in range(40):  # about 6 kB a batch (the notice and its audit record): > keep
            st, _, d = p.json("POST", "/notices", {"title": "通知 %d" % i, "body": body})
            self.assertEqual(st, 201, d)
        self.assertIn("must be re-seeded", p.log())
        sb = Standby(self, p, seed).start()
        rc = sb.proc.wait(timeout=20)
        sb.logf.close()
        self.assertEqual(rc, 1, sb.log())
        self.assertIn("must be re-seeded", sb.log())
        self.assertIn("is no longer kept", sb.log())
        r, status = sb.status()
        self.assertEqual(r.returncode, 1)
        self.assertEqual(status["state"], "reseed")
        wait_for("the primary to log it", lambda: "standby at 127.0.0.1" in p.log())
        # a new backup seeds it again, and it follows
        sb2 = Standby(self, p, self.backup(p, "seed2")).start()
        self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        self.assert_same_data(p, sb2)
        self.assertEqual(sb2.stop(), 0)

    def test_only_a_holder_of_the_master_key_is_answered(self):
        p = self.primary()
        other = self.primary()  # another county's node: its own key, its own data
        sb = Standby(self, p, self.backup(other), key_file=os.path.join(other.dir, "keys",
                                                                        "master.key")).start()
        wait_for("the primary to refuse it",
                 lambda: "does not open with this node's master key" in p.log())
        self.assertEqual(sb.stop(), 0)
        self.assertNotIn("applied through", sb.log())
        self.assertNotIn("up to date", sb.log())

    def test_a_standby_needs_a_seeded_folder_and_its_key(self):
        p = self.primary()
        plain = self.node(plugins=("hello",), auth=AUTH)  # no replication: no position
        sb = Standby(self, p, self.backup(plain), key_file=os.path.join(plain.dir, "keys",
                                                                        "master.key"))
        r = run(["standby", "-c", sb.node.conf, p.repl_url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds no replication position", r.stderr)
        os.unlink(os.path.join(sb.node.dir, "keys", "master.key"))
        r = run(["standby", "-c", sb.node.conf, p.repl_url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("key file", r.stderr)
        shutil.rmtree(sb.node.data_dir)
        r = run(["standby", "-c", sb.node.conf, p.repl_url])
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds no data: seed it first", r.stderr)
        r = run(["standby", "-c", sb.node.conf, "status"])
        self.assertEqual(r.returncode, 1)
        r = run(["standby", "-c", sb.node.conf])
        self.assertEqual(r.returncode, 2)

    def test_a_standby_takes_no_change_but_its_primarys(self):
        """admin and audit prune (and export, which signs the log's head) on a standby's
        folder are refused, and change nothing; what reads only runs; a backup of it is made
        without its audit record; the standby then still follows."""
        p = self.primary()
        sb = Standby(self, p, self.backup(p)).start()
        self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        self.assert_same_data(p, sb)
        archive = os.path.join(self.tmp, "audit-1.jsonl")
        r = run(["audit", "-c", p.conf, "export", "1", archive])
        self.assertEqual(r.returncode, 0, r.stderr)
        before = dump(sb.node.data_dir)
        conf = sb.node.conf
        refused = [["admin", "-c", conf, "user", "add", "zhangsan", "张三", "root"],
                   ["admin", "-c", conf, "user", "disable", "admin"],
                   ["admin", "-c", conf, "dept", "add", "tax", "税务局"],
                   ["admin", "-c", conf, "key", "add", "station", "hello", "admin"],
                   ["audit", "-c", conf, "prune", archive],
                   ["audit", "-c", conf, "export", "1", os.path.join(self.tmp, "x.jsonl")]]
        for args in refused:
            r = run(args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("data_dir %s is a standby of %s: changes made here would make it "
                          "differ from the primary; make them on the primary, or promote the "
                          "standby (zhengtong serve) first" % (sb.node.data_dir, p.repl_url),
                          r.stderr, args)
            self.assertEqual(r.stdout, "", args)
        self.assertIn("signs the log's head", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.jsonl")))
        for args in (["admin", "-c", conf, "user", "list"], ["admin", "-c", conf, "dept", "list"],
                     ["audit", "-c", conf, "verify"]):
            r = run(args)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("audit log OK", r.stdout)
        copy = os.path.join(self.tmp, "standby-copy")
        r = run(["backup", "-c", conf, copy], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("is a standby of %s: the backup's audit record is not written here"
                      % p.repl_url, r.stdout)
        self.assertTrue(os.path.exists(os.path.join(copy, "data.mdb")))
        self.assertEqual(dump(sb.node.data_dir), before)
        # the primary's next changes still apply
        self.assertEqual(p.request("POST", "/hello/counter")[0], 200)
        st, _, d = p.json("POST", "/admin/departments",
                          {"code": "tax", "name": "税务局", "parent": "root"})
        self.assertEqual(st, 201, d)
        self.assert_same_data(p, sb)
        self.assertEqual(sb.stop(), 0, sb.log())
        self.assertNotIn("cannot apply", sb.log())

    def blob_primary(self):
        """A primary with a plugin that stores request bodies of up to 8 MB."""
        blob = ('return { version = "0.0.1", description = "large values" }\n',
                'local kv = zt.db.open("kv")\n' + lua_route(
                    "PUT", "/blob/:k", "kv:put(req.params.k, req.body)\nreturn 204",
                    role="user", body_limit=8 << 20))
        lua_dir = lua_tree_with(os.path.join(self.tmp, "lua"), {"blob": blob})
        return self.primary(plugins=("hello", "blob"), lua_dir=lua_dir)

    def put_blob(self, n, key, size):
        st, _, b = n.request("PUT", "/blob/" + key, os.urandom(size),
                             {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 204, b)

    def test_a_change_set_larger_than_an_answer_is_sent_whole(self):
        # one batch of 5 MB: more than an answer carries (4 MB), so it goes alone
        n = self.blob_primary()
        seed = self.backup(n)
        self.put_blob(n, "small", 1000)
        self.put_blob(n, "scan", 5 << 20)
        self.put_blob(n, "after", 1000)
        sb = Standby(self, n, seed).start()
        self.addCleanup(sb.stop)
        self.assert_same_data(n, sb)
        self.assertEqual(sb.stop(), 0)

    def test_a_standby_over_a_slow_link_catches_up(self):
        # 3 MB of writes, one of them a single 1.5 MB change set, over a 400 kB/s line: an
        # answer of 4 MB would take 8 s, beyond the standby's wait (2 s here, 20 s in
        # service): it asks for what the line carries in time and, for the change set that
        # is larger alone, waits longer, instead of asking for the same forever
        n = self.blob_primary()
        seed = self.backup(n)
        for i in range(6):
            self.put_blob(n, "b%d" % i, 256 << 10)
        self.put_blob(n, "big", 1536 << 10)
        link = SlowLink(int(n.repl_url.rsplit(":", 1)[1]), 400_000)
        self.addCleanup(link.close)
        sb = Standby(self, n, seed, url="tcp://127.0.0.1:%d" % link.port,
                     env={"ZT_TEST_REPL_RECV_MS": "2000"}).start()
        self.addCleanup(sb.stop)
        try:
            head = wait_for("the standby over the slow link", lambda: (
                lambda h: h if h == dump(n.data_dir)[0] else None)(dump(sb.node.data_dir)[0]),
                timeout=120)
        except AssertionError:
            raise AssertionError("the standby's log:\n" + sb.log()[-4000:])
        self.assertIsNotNone(head)
        self.assert_same_data(n, sb)
        self.assertRegex(sb.log(), r"the link is slow; now asking for at most \d+ KB an answer, "
                                   r"waiting up to [48] s")  # the change set larger alone
        self.assertEqual(sb.stop(), 0)

    def test_replication_at_a_port_the_node_takes_is_refused_at_its_line(self):
        n = self.node(plugins=("hello",), start=False)
        with open(n.conf, "a") as f:
            f.write("replication = {\n  listen = \"tcp://127.0.0.1:%d\" }\n" % n.port)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"zhengtong\.conf:\d+: replication\.listen: .* are at the "
                                   r"same port")


if __name__ == "__main__":
    unittest.main()
