# test_store.py: durability across kill -9, group commit, and hot backup.
import http.client
import json
import os
import pwd
import select
import shutil
import tempfile
import threading
import time
import unittest

from ztnode import HOST, IO_TIMEOUT, NodeTest, edit_db, lua_manifest, lua_tree_with, run, scrape

WRITERS = 4  # client connections writing at once (so that batches hold several writes)
TARGET_ACKS = 300  # kill -9 once this many writes were acknowledged
MAX_WAIT = 30.0  # give up waiting for TARGET_ACKS after this long


class Writer(threading.Thread):
    """Sends one write after another on a kept-alive connection until the server dies.
    Counts acknowledged writes and remembers what each acknowledgement said; `pending`
    is 1 while a request is sent (or being sent) and not yet answered."""

    def __init__(self, node, make_request, stop):
        super().__init__(daemon=True)
        self.port = node.port
        self.headers = dict(node.auth, **{"Content-Type": "application/json"})
        self.make_request = make_request  # i -> (method, path, body)
        self.stop_ev = stop
        self.acked = []  # (request, parsed response) of each 2xx answer
        self.pending = 0
        self.failures = []  # non-2xx answers: a bug, reported by the test
        self.lock = threading.Lock()

    def run(self):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=IO_TIMEOUT)
        i = 0
        try:
            while not self.stop_ev.is_set():
                method, path, body = self.make_request(i)
                i += 1
                with self.lock:
                    self.pending = 1
                conn.request(method, path, body=body, headers=self.headers)
                r = conn.getresponse()
                data = r.read()
                with self.lock:
                    if 200 <= r.status < 300:
                        self.acked.append((body, json.loads(data) if data else None))
                    else:
                        self.failures.append((r.status, data[:300]))
                    self.pending = 0
        except (OSError, http.client.HTTPException):
            pass  # the server was killed: whatever was pending stays pending
        finally:
            conn.close()


def stream_then_kill9(testcase, node, make_request):
    stop = threading.Event()
    ws = [Writer(node, make_request, stop) for _ in range(WRITERS)]
    for w in ws:
        w.start()
    deadline = time.monotonic() + MAX_WAIT
    while time.monotonic() < deadline:
        if sum(len(w.acked) for w in ws) >= TARGET_ACKS:
            break
        if not any(w.is_alive() for w in ws):
            break
        time.sleep(0.005)
    node.kill9()  # mid-stream: the writers are still sending
    stop.set()
    for w in ws:
        w.join(10)
        testcase.assertFalse(w.is_alive(), "a writer hangs after the server died")
    failures = [f for w in ws for f in w.failures]
    testcase.assertEqual(failures, [], "writes answered with errors")
    acked = [a for w in ws for a in w.acked]
    pending = sum(w.pending for w in ws)
    testcase.assertGreater(len(acked), 0, "no write was acknowledged; log:\n" + node.log()[-3000:])
    return acked, pending


class Durability(NodeTest):
    def test_counter_survives_kill9(self):
        n = self.node(plugins=("hello",))
        acked, pending = stream_then_kill9(self, n, lambda i: ("POST", "/hello/counter", None))
        counts = [r["count"] for _, r in acked]
        self.assertEqual(len(counts), len(set(counts)), "two writes acknowledged the same count")
        n.start()
        st, _, d = n.json("GET", "/hello/counter")
        self.assertEqual(st, 200, d)
        # every acknowledged increment is there; at most the unanswered ones on top
        self.assertGreaterEqual(d["count"], len(acked))
        self.assertGreaterEqual(d["count"], max(counts))
        self.assertLessEqual(d["count"], len(acked) + pending)
        # and the node goes on counting from there
        st, _, d2 = n.json("POST", "/hello/counter")
        self.assertEqual(d2["count"], d["count"] + 1)

    def test_notices_survive_kill9(self):
        n = self.node(plugins=("hello", "notice"))

        def make(i):
            t = "durable %d %s" % (i, threading.current_thread().name)
            return "POST", "/notices", json.dumps({"title": t, "body": "body of " + t}).encode()

        acked, pending = stream_then_kill9(self, n, make)
        n.start()
        for sent, resp in acked:
            doc = json.loads(sent)
            st, _, got = n.json("GET", "/notices/" + resp["id"])
            self.assertEqual(st, 200, (resp, got))
            self.assertEqual(got["title"], doc["title"])
            self.assertEqual(got["body"], doc["body"])
        # the list holds the acknowledged ones, at most the pending ones more, and
        # nothing half-written
        listed = []
        nxt = None
        for _ in range(1000):
            st, _, page = n.json("GET", "/notices?limit=100" + ("&before=" + nxt if nxt else ""))
            self.assertEqual(st, 200, page)
            listed += page["items"]
            nxt = page.get("next")
            if not nxt:
                break
        ids = [x["id"] for x in listed]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue({r["id"] for _, r in acked} <= set(ids))
        self.assertLessEqual(len(listed), len(acked) + pending)
        for x in listed:
            self.assertTrue(x["title"].startswith("durable "), x)
            st, _, full = n.json("GET", "/notices/" + x["id"])
            self.assertEqual(full["body"], "body of " + x["title"], full)

    def test_restart_after_graceful_stop_keeps_data(self):
        n = self.node(plugins=("hello",))
        for _ in range(5):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        self.assertEqual(n.stop(), 0)
        n.start()
        st, _, d = n.json("GET", "/hello/counter")
        self.assertEqual(d["count"], 5)


class DataFormat(NodeTest):
    def test_a_folder_of_a_newer_format_is_refused_and_left_alone(self):
        n = self.node(plugins=("hello",))
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        self.assertEqual(n.stop(), 0)
        version = run(["version"]).stdout.split()[1]
        seen = {}

        def read(txn, db):
            seen.update({k: txn.get(k) for k in (b"format", b"version")})

        edit_db(self, n, "_core/store", read)
        self.assertEqual(seen, {b"format": b"1", b"version": version.encode()})

        # as if a newer zhengtong (format 2, version 9.0.0) had opened it since
        def newer(txn, db):
            txn.put(b"format", b"2")
            txn.put(b"version", b"9.0.0")

        edit_db(self, n, "_core/store", newer)
        want = ("holds data in format 2, last opened by zhengtong 9.0.0; this is zhengtong %s, "
                "which reads format 1 at most" % version)
        r = run(["serve", "-c", n.conf], cwd=n.dir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(want, r.stderr)
        r = run(["admin", "-c", n.conf, "user", "list"], cwd=n.dir)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn(want, r.stderr)
        seen.clear()
        edit_db(self, n, "_core/store", read)  # the refusals wrote nothing
        self.assertEqual(seen, {b"format": b"2", b"version": b"9.0.0"})

        # back to what this version wrote (a backup restored): it serves, and its data is there
        def ours(txn, db):
            txn.put(b"format", b"1")
            txn.put(b"version", b"0.0.9")

        edit_db(self, n, "_core/store", ours)
        n.start()
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], 1)
        self.assertEqual(n.stop(), 0)
        seen.clear()
        edit_db(self, n, "_core/store", read)  # and it noted its own version
        self.assertEqual(seen, {b"format": b"1", b"version": version.encode()})



VAULT = """
local cases = zt.db.open("cases"%s)
zt.route("PUT", "/vault/:id", { role = "user" }, function(req)
  cases:put(req.params.id, req:json())
  return 204
end)
zt.route("GET", "/vault/:id", { role = "user" }, function(req)
  local v = cases:get(req.params.id)
  if v == nil then zt.problem(404, "not-found", "no case " .. req.params.id) end
  return 200, v
end)
zt.route("GET", "/vault", { role = "user" }, function(req)
  local ids = {}
  local ok, err = pcall(function()
    for id in cases:iter{} do ids[#ids + 1] = id end
  end)
  return 200, { ids = ids, error = not ok and tostring(err) or nil }
end)
"""


class SealedDatabases(NodeTest):
    """数据完整性 of business data: a plugin's database opened sealed keeps a keyed seal
    with every value; what is changed, added or moved behind the node's back is not read."""

    def vault(self, sealed):
        lua_dir = lua_tree_with(os.path.join(self.root, "lua"),
                                {"vault": (lua_manifest(), VAULT % (", { sealed = true }" if sealed else ""))})
        return lua_dir

    def test_what_is_changed_outside_is_not_read(self):
        self.root = tempfile.mkdtemp(prefix="zt-sealed-")
        self.addCleanup(shutil.rmtree, self.root, True)
        # written unsealed first: a plugin's older version
        n = self.node(plugins=("vault",), lua_dir=self.vault(False), roles=("auditor",))
        for i, who in enumerate(("张三", "李四", "王五")):
            self.assertEqual(n.request("PUT", "/vault/c%d" % i, {"name": who, "amount": i})[0], 204)
        for i in range(300):  # pages enough that sealing them all moves records between pages
            self.assertEqual(n.request("PUT", "/vault/d%03d" % i, {"n": i, "pad": "x" * (i % 97)},
                                       keep=True)[0], 204)
        n.stop()
        # the new version opens it sealed: what it holds is sealed once, as it stands
        shutil.rmtree(os.path.join(self.root, "lua"))
        self.vault(True)
        n.start()
        self.assertIn("storage: database vault/cases is sealed from now on: its 303 record(s) were sealed",
                      n.log())
        # and the audit log says so: whoever removed the mark to have changed records sealed
        # leaves this record
        st, _, log = n.json("GET", "/audit?object=vault/cases")
        self.assertEqual([r["action"] for r in log["items"]], ["seal database vault/cases: 303"])
        self.assertEqual(n.json("GET", "/vault/c1")[2], {"name": "李四", "amount": 1})
        ids = n.json("GET", "/vault")[2]
        self.assertEqual(ids["ids"], ["c0", "c1", "c2"] + ["d%03d" % i for i in range(300)], ids)
        self.assertEqual(n.json("GET", "/vault/d250")[2], {"n": 250, "pad": "x" * (250 % 97)})
        self.assertEqual(n.request("PUT", "/vault/c3", {"name": "赵六", "amount": 3})[0], 204)
        n.stop()
        raw = {}
        edit_db(self, n, "vault/cases", lambda txn, db: raw.update(txn.cursor(db=db)))
        self.assertEqual(len(raw), 304)
        self.assertTrue(all(v[:-16].startswith(b"j{") and v[:-16].endswith(b"}") for v in raw.values()))

        def tamper(txn, db):
            v = bytearray(txn.get(b"c1", db=db))
            v[v.index("李".encode())] ^= 1  # one byte of the name
            txn.put(b"c1", bytes(v), db=db)
            txn.put(b"c9", txn.get(b"c2", db=db), db=db)  # a record copied under another key
            txn.put(b"c0", txn.get(b"c0", db=db)[:-16], db=db)  # its seal cut off
        edit_db(self, n, "vault/cases", tamper)
        n.start()
        for key in ("c1", "c9", "c0"):
            with self.subTest(key=key):
                st, h, b = n.request("GET", "/vault/" + key)
                self.assertEqual(st, 500, b)  # not read: the handler fails, nothing is served
        self.assertEqual(n.json("GET", "/vault/c2")[2], {"name": "王五", "amount": 2})  # the rest hold
        self.assertEqual(n.json("GET", "/vault/c3")[2], {"name": "赵六", "amount": 3})
        listing = n.json("GET", "/vault")[2]
        self.assertIn("error", listing)  # a scan stops at the first that fails
        self.assertIn("storage: the record c1 of vault/cases fails its seal", n.log())  # once a minute
        self.assertGreaterEqual(scrape(n).get("zt_store_seals_failed_total"), 3)
        # rewritten by the node, a record holds again
        self.assertEqual(n.request("PUT", "/vault/c1", {"name": "李四", "amount": 1})[0], 204)
        self.assertEqual(n.json("GET", "/vault/c1")[2]["name"], "李四")
        n.stop()
        # and a sealed database is never opened plain again (its values carry seals)
        shutil.rmtree(os.path.join(self.root, "lua"))
        self.vault(False)
        with self.assertRaises(AssertionError) as cm:
            n.start()
        self.assertIn("open it with zt.db.open('cases', { sealed = true })", str(cm.exception) + n.log())

class GroupCommit(NodeTest):
    def test_concurrent_writes_share_commits(self):
        n = self.node(plugins=("hello",))
        m0 = scrape(n)
        name = "zt_lmdb_commits_total"
        self.assertIn(name, m0.names())
        before = m0.total(name)
        conns, per_conn = 10, 5
        writes = conns * per_conn
        post = b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n"
        wire = post * per_conn
        cs = [n.rawconn() for _ in range(conns)]
        try:
            # everything but the last byte first, then the last bytes together: the
            # server gets the writes of all connections at about the same time
            for c in cs:
                c.send(wire[:-1])
            for c in cs:
                c.send(wire[-1:])
            counts = []
            for c in cs:
                for _ in range(per_conn):
                    r = c.response()
                    self.assertEqual(r.status, 200, r)
                    counts.append(r.json()["count"])
        finally:
            for c in cs:
                c.close()
        self.assertEqual(sorted(counts), list(range(1, writes + 1)))
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], writes)
        used = scrape(n).total(name) - before
        self.assertGreaterEqual(used, 1)
        self.assertLess(used, writes / 2, "%s grew by %d for %d writes" % (name, used, writes))


class CommitWait(NodeTest):
    """A batch may wait (limits.commit_wait) for the writers of the batches before it;
    its answers wait with it, and nobody else's do."""

    POST = b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n"
    GET = b"GET /hello/counter HTTP/1.1\r\nHost: e2e\r\n\r\n"

    def write(self, c):
        c.send(self.POST)
        r = c.response()
        self.assertEqual(r.status, 200, r)
        return r.json()["count"]

    def test_a_batch_waits_for_its_writers_and_nobody_else_waits_for_it(self):
        # one second: every step below falls inside one wait
        n = self.node(plugins=("hello",), limits={"commit_wait": 1})
        a, b, c = n.rawconn(), n.rawconn(), n.rawconn()
        try:
            self.assertEqual(self.write(a), 1)
            self.assertEqual(self.write(b), 2)  # two writers in the last two batches
            waits = scrape(n).total("zt_batch_waits_total")
            a.send(self.POST)  # its batch now waits for a second writer
            c.send(self.GET)  # another client's read: answered at once, from what is committed
            r = c.response()
            self.assertEqual((r.status, r.json()["count"]), (200, 2), r)
            ready, _, _ = select.select([a.sock], [], [], 0.2)
            self.assertEqual(ready, [], "a's answer went out before its batch was committed")
            a.send(self.GET)  # a read behind a write on the same connection sees it
            b.send(self.POST)  # the second writer: the batch commits
            ra, ra_get, rb = a.response(), a.response(), b.response()
            self.assertEqual([ra.status, ra_get.status, rb.status], [200, 200, 200])
            self.assertEqual(sorted([ra.json()["count"], rb.json()["count"]]), [3, 4])
            self.assertGreaterEqual(ra_get.json()["count"], ra.json()["count"])
        finally:
            for x in (a, b, c):
                x.close()
        self.assertGreater(scrape(n).total("zt_batch_waits_total"), waits)
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], 4)

    def test_no_wait_when_commit_wait_is_zero(self):
        n = self.node(plugins=("hello",), limits={"commit_wait": 0})
        a, b = n.rawconn(), n.rawconn()
        try:
            for i in range(3):
                self.assertEqual(self.write(a), 2 * i + 1)
                self.assertEqual(self.write(b), 2 * i + 2)
        finally:
            a.close()
            b.close()
        self.assertEqual(scrape(n).total("zt_batch_waits_total"), 0)


class StorageFull(NodeTest):
    def test_a_full_map_refuses_writes_with_507_and_loses_nothing(self):
        n = self.node(plugins=("hello", "notice"), map_size=1 << 20,
                      roles=("notice_editor", "auditor"))
        body = "公告" * 3000  # 18000 bytes of UTF-8
        acked = []
        for i in range(200):
            st, h, b = n.request("POST", "/notices", {"title": "n%d" % i, "body": body})
            if st != 201:
                break
            acked.append(json.loads(b)["id"])
        else:
            self.fail("1 MiB never filled")
        self.assertProblem(st, h, b, 507, "storage-full")
        self.assertGreater(len(acked), 3)
        # the node goes on serving: reads, and writes that fit
        self.assertEqual(n.request("GET", "/hello")[0], 200)
        before = n.json("GET", "/hello/counter")[2]["count"]
        st, _, b = n.request("POST", "/hello/counter")
        self.assertIn(st, (200, 507), b)
        after = before + 1 if st == 200 else before

        def check():
            for nid in acked:  # every acknowledged notice is there, whole
                st, _, d = n.json("GET", "/notices/" + nid)
                self.assertEqual((st, d["title"], d["body"]), (200, d["title"], body), nid)
            self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], after)
            st, _, v = n.json("GET", "/audit/verify")
            self.assertEqual((st, v.get("ok")), (200, True), v)

        check()
        n.restart()
        check()


class Backup(NodeTest):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="zt-e2e-backup-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_hot_backup_while_serving(self):
        n = self.node(plugins=("hello", "notice"))
        for _ in range(7):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        ids = []
        for i in range(5):
            st, _, d = n.json("POST", "/notices", {"title": "backed up %d" % i, "body": "b%d" % i})
            self.assertEqual(st, 201, d)
            ids.append(d["id"])
        # keep writing while the backup runs
        stop = threading.Event()
        w = Writer(n, lambda i: ("POST", "/hello/counter", None), stop)
        w.start()
        dest = os.path.join(self.tmp, "dest")
        try:
            r = run(["backup", "-c", n.conf, dest], timeout=60)
        finally:
            stop.set()
            w.join(10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(n.running(), "the server stopped during the backup")
        self.assertEqual(n.request("GET", "/hello/counter")[0], 200)
        self.assertTrue(os.listdir(dest))
        # the county's personal data: private to the node's user, whatever the umask
        self.assertEqual(os.stat(os.path.join(dest, "data.mdb")).st_mode & 0o777, 0o600)
        total = 7 + len(w.acked)
        # a backup inside the data folder would go down with it
        inside = os.path.join(n.data_dir, "backups")
        r2 = run(["backup", "-c", n.conf, inside], timeout=60)
        self.assertEqual(r2.returncode, 1, r2.stdout)
        self.assertIn("inside data_dir", r2.stderr)
        self.assertFalse(os.path.exists(inside))
        # who took the copy of every record, and where to, is in the audit log (a refused
        # backup made no copy, and no record)
        aud = n.new_user("aud1", roles=("auditor",))
        st, _, recs = n.json("GET", "/audit?plugin=core&limit=1000", None, aud, auth=False)
        self.assertEqual(st, 200, recs)
        backups = [r for r in recs["items"] if r["action"] == "backup"]
        self.assertEqual([(r["object"], r["actor"]) for r in backups],
                         [("to " + os.path.realpath(dest), "cli:" + pwd.getpwuid(os.getuid()).pw_name)])
        # a node on a copy of the backup has the data as of some moment of the backup
        copy = os.path.join(self.tmp, "copy")
        shutil.copytree(dest, copy)
        m = self.node(plugins=("hello", "notice"), data_dir=copy, start=False)
        mkey = os.path.join(m.dir, "keys", "master.key")
        # without its master key the copy is refused, not given a new key
        with self.assertRaises(AssertionError) as cm:
            m.start()
        self.assertIn("is missing, but data_dir", str(cm.exception))
        self.assertFalse(os.path.exists(mkey), "a new key was made for old data")
        # with another key too: the data was sealed under the first
        os.makedirs(os.path.dirname(mkey), mode=0o700, exist_ok=True)
        with open(os.open(mkey, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(os.urandom(32))
        with self.assertRaises(AssertionError) as cm:
            m.start()
        self.assertIn("is not the master key", str(cm.exception))
        # restored as the README says: the data and its key file
        shutil.copyfile(os.path.join(n.dir, "keys", "master.key"), mkey)
        m.start()
        st, _, d = m.json("GET", "/hello/counter")
        self.assertEqual(st, 200)
        self.assertGreaterEqual(d["count"], 7)
        self.assertLessEqual(d["count"], total + w.pending)
        for i, nid in enumerate(ids):
            st, _, got = m.json("GET", "/notices/" + nid)
            self.assertEqual(st, 200, got)
            self.assertEqual(got["title"], "backed up %d" % i)
        # the copy is its own: writing to it leaves the original alone
        st, _, d2 = m.json("POST", "/hello/counter")
        self.assertEqual(d2["count"], d["count"] + 1)
        st, _, orig = n.json("GET", "/hello/counter")
        self.assertEqual(orig["count"], total)

    def test_backup_is_compacted(self):
        n = self.node(plugins=("hello", "notice"))
        body = "x" * 2000
        wire = b""
        for i in range(300):
            doc = json.dumps({"title": "bulk %d" % i, "body": body}).encode()
            wire += b"POST /notices HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(doc), doc)
        with n.rawconn(timeout=30) as c:
            rs = c.exchange(wire, 300)
        self.assertEqual([r.status for r in rs], [201] * 300)
        made = [r.json()["id"] for r in rs[:300]]
        wire = b"".join(b"DELETE /notices/%s HTTP/1.1\r\nHost: e2e\r\n\r\n" % i.encode() for i in made)
        with n.rawconn(timeout=30) as c:
            rs = c.exchange(wire, 300)
        self.assertEqual([r.status for r in rs], [204] * 300)
        src_size = os.path.getsize(os.path.join(n.data_dir, "data.mdb"))
        dest = os.path.join(self.tmp, "dest")
        r = run(["backup", "-c", n.conf, dest], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        dst_size = os.path.getsize(os.path.join(dest, "data.mdb"))
        self.assertLess(dst_size, src_size / 2, (dst_size, src_size))

    def test_backup_refuses_a_folder_with_data(self):
        n = self.node(plugins=("hello",))
        dest = os.path.join(self.tmp, "full")
        os.makedirs(dest)
        with open(os.path.join(dest, "data.mdb"), "wb") as f:
            f.write(b"precious")
        r = run(["backup", "-c", n.conf, dest], timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip())
        with open(os.path.join(dest, "data.mdb"), "rb") as f:
            self.assertEqual(f.read(), b"precious")


class CheckKey(NodeTest):
    """`check` before a start (the README's upgrade and restore steps): it finds a key file
    that is not the data's master key, as serve would, instead of saying OK."""

    def test_check_opens_the_master_key_as_serve_does(self):
        n = self.node(plugins=("hello",))
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        self.assertEqual(n.stop(), 0)
        mkey = os.path.join(n.dir, "keys", "master.key")
        with open(mkey, "rb") as f:
            right = f.read()
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK: node", r.stdout)
        # a backup copied in without its key: check says what serve will say
        os.unlink(mkey)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertNotIn("OK", r.stdout)
        self.assertIn("key file %s is missing, but data_dir %s holds data" % (mkey, n.data_dir),
                      r.stderr)
        self.assertFalse(os.path.exists(mkey), "check made a key file")
        with self.assertRaises(AssertionError) as cm:
            n.start()
        self.assertIn("is missing, but data_dir", str(cm.exception))
        # with another key
        with open(os.open(mkey, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(os.urandom(32))
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("key file %s is not the master key data_dir %s was made with"
                      % (mkey, n.data_dir), r.stderr)
        # its own key again: OK, and the node starts
        with open(mkey, "wb") as f:
            f.write(right)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        n.start()
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)

    def test_check_of_a_new_node_makes_no_key(self):
        n = self.node(plugins=("hello",), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(n.dir, "keys", "master.key")))
        self.assertFalse(os.path.exists(n.data_dir))


if __name__ == "__main__":
    unittest.main()
