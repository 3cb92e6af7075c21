# test_audit.py: audit records of writes, none of rollbacks, filters, tampering, checkpoints.
import base64
import datetime
import json
import os
import re
import shutil
import tempfile
import time
import unittest

from ztnode import (NodeTest, edit_db, lua_manifest, lua_route, lua_tree_with, run, scrape,
                    wait_for)

# A stored value: one batch's records, under its first record's sequence number (8 bytes,
# big-endian) and 0x02; each record len u32 | hash[32] | prev[32] | body, the body
# 0x02 | seq u64 | time u64 | status u16 | seven (varint length, bytes) fields.
R_HASH, R_BODY = 4, 68
NOTICE = {"title": "Road works", "body": "Closed on Monday."}


# Each read of the records is recorded too, after it (GB/T 22239 审计管理): the tests leave
# those records out unless they ask for them.
READ = "read audit records"


def all_records(node, query="", reads=False):
    st, _, d = node.json("GET", "/audit?limit=1000" + query)
    if st != 200:
        raise AssertionError("GET /audit answered %d %r" % (st, d))
    if d["next"] is not None:
        raise AssertionError("more than 1000 audit records: the test expects fewer")
    return [r for r in d["items"] if reads or r["action"] != READ]


def verify_cli(node):
    return run(["audit", "-c", node.conf, "verify"])


class Records(NodeTest):
    @classmethod
    def setUpClass(cls):
        n = cls.shared_node(roles=("auditor", "notice_editor"), env={"ZT_TEST_CLOCK": "1"})
        cls.admin_id = n.json("GET", "/auth/me")[2]["id"]

    def test_a_write_makes_a_record(self):
        n = self.shared
        st, h, d = n.json("POST", "/notices", NOTICE)
        self.assertEqual(st, 201, d)
        rid = h["x-request-id"]
        st, h2, b = n.request("POST", "/hello/counter", source="127.0.0.9")
        self.assertEqual(st, 200, b)
        rid2 = h2["x-request-id"]
        by_rid = {r.get("request_id"): r for r in all_records(n)}
        r = by_rid[rid]
        self.assertEqual(r["actor"], self.admin_id)
        self.assertEqual(r["actor_login"], "admin")
        self.assertEqual(r["plugin"], "notice")
        self.assertEqual(r["action"], "POST /notices")
        self.assertEqual(r["object"], "/notices")
        self.assertEqual(r["client"], "127.0.0.1")
        self.assertEqual(r["status"], 201)
        self.assertTrue(re.fullmatch(r"[0-9a-f]{64}", r["hash"]), r)
        r2 = by_rid[rid2]
        self.assertEqual((r2["plugin"], r2["action"], r2["client"]),
                         ("hello", "POST /hello/counter", "127.0.0.9"))
        self.assertGreater(r2["seq"], r["seq"])
        # reads leave nothing
        before = len(all_records(n))
        for path in ("/notices", "/hello/counter", "/auth/me", "/audit/verify"):
            self.assertEqual(n.request("GET", path)[0], 200, path)
        self.assertEqual(len(all_records(n)), before)

    def test_refused_sign_ins_are_recorded(self):
        # A failed sign-in changes nothing, yet it is a security event: it has a record.
        n = self.shared
        bad = {"login": "admin", "password": "not-the-password-1"}
        st, h, b = n.request("POST", "/auth/login", bad, auth=False, source="127.0.0.7")
        self.assertEqual(st, 401, b)
        rid = h["x-request-id"]
        # Its batch commits within limits.commit_wait (the answer did not wait for it).
        by_rid = wait_for(
            "the refused sign-in's record",
            lambda: (lambda d: d if rid in d else None)(
                {r.get("request_id"): r for r in all_records(n)}
            ),
        )
        r = by_rid[rid]
        self.assertEqual((r["action"], r["object"], r["status"], r["client"]),
                         ("sign-in failed", "admin", 401, "127.0.0.7"))
        self.assertEqual(r["actor"], "anonymous")
        st, _, v = n.json("GET", "/audit/verify")
        self.assertEqual((st, v["ok"]), (200, True), v)

    def test_a_rolled_back_request_leaves_no_record(self):
        n = self.shared
        before = all_records(n)
        failed = []
        for method, path, body, want in (
            ("POST", "/notices", {"title": ""}, 422),  # the handler refused its input
            ("POST", "/notices", "not json", 400),
            ("DELETE", "/notices/01NOSUCHNOTICE0000000000000", None, 404),
            ("PATCH", "/admin/users/nosuchuser", {"name": "x"}, 404),
            ("POST", "/admin/departments", {"code": "bad code!", "name": "x"}, 422),
        ):
            st, h, b = n.request(method, path, body,
                                 {"Content-Type": "application/json"} if body else None)
            self.assertEqual(st, want, (path, b))
            failed.append(h["x-request-id"])
        after = all_records(n)
        self.assertEqual([r["seq"] for r in after], [r["seq"] for r in before])
        self.assertFalse({r.get("request_id") for r in after} & set(failed))
        # and the chain is whole
        st, _, v = n.json("GET", "/audit/verify")
        self.assertEqual((st, v["ok"], v["records"]), (200, True, len(all_records(n, reads=True))),
                         v)

    def test_filters_and_pages(self):
        n = self.shared
        editor = n.new_user("editor2", roles=("notice_editor",))
        editor_id = n.json("GET", "/auth/me", headers=editor, auth=False)[2]["id"]
        # three phases, 100 s apart on the node's clock (far less than the idle timeout), so
        # that a time range can pick the second one exactly
        t1 = n.set_clock(100_000)["now"]
        mine = []
        for i in range(3):
            st, h, _ = n.json("POST", "/notices", dict(NOTICE, title="admin %d" % i))
            self.assertEqual(st, 201)
            mine.append(h["x-request-id"])
        t2 = n.set_clock(200_000)["now"]
        theirs = []
        for i in range(2):
            st, h, _ = n.request("POST", "/notices", dict(NOTICE, title="editor %d" % i),
                                 editor, auth=False)
            self.assertEqual(st, 201)
            theirs.append(h["x-request-id"])
        t3 = n.set_clock(300_000)["now"]
        for _ in range(2):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # pipelined: their records share a stored value, which the pages below cut through
        with n.rawconn() as c:
            rs = c.exchange(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\n"
                            b"Content-Length: 0\r\n\r\n" * 5, 5)
        self.assertEqual([r.status for r in rs], [200] * 5, rs)
        every = [r["seq"] for r in all_records(n, reads=True)]
        self.assertEqual(every, list(range(1, len(every) + 1)))
        full = [r for r in all_records(n) if r["seq"] <= every[-1]]
        seqs = [r["seq"] for r in full]
        self.assertEqual(seqs, sorted(seqs))

        def query(q):
            return [r["seq"] for r in all_records(n, q)]

        def expect(pred):
            return [r["seq"] for r in full if pred(r)]

        got = all_records(n, "&actor=" + editor_id)
        self.assertEqual([r.get("request_id") for r in got][-2:], theirs)
        self.assertEqual([r["seq"] for r in got], expect(lambda r: r["actor"] == editor_id))
        self.assertTrue(set(mine).isdisjoint(r.get("request_id") for r in got))
        self.assertEqual(query("&plugin=hello"), expect(lambda r: r["plugin"] == "hello"))
        self.assertGreaterEqual(len(query("&plugin=hello")), 2)
        self.assertEqual(query("&plugin=notice&actor=" + self.admin_id),
                         expect(lambda r: r["plugin"] == "notice" and r["actor"] == self.admin_id))
        self.assertEqual(query("&object=/hello/counter"),
                         expect(lambda r: r["object"] == "/hello/counter"))
        self.assertEqual(query("&actor=nobody-at-all"), [])
        # a time range: from is inclusive, to exclusive
        phase2 = all_records(n, "&from=%d&to=%d" % (t2, t3))
        self.assertEqual([r["seq"] for r in phase2], expect(lambda r: t2 <= r["time"] < t3))
        self.assertEqual([r.get("request_id") for r in phase2 if r["actor"] == editor_id], theirs)
        self.assertTrue(set(mine).isdisjoint(r.get("request_id") for r in phase2))
        self.assertTrue(all(r["plugin"] != "hello" for r in phase2))
        got = all_records(n, "&from=%d" % t1)
        self.assertTrue(set(mine) <= {r.get("request_id") for r in got})
        self.assertEqual(query("&to=%d" % t1), expect(lambda r: r["time"] < t1))
        self.assertEqual(query("&from=%d" % (full[-1]["time"] + 1)), [])
        # after and limit
        for mid in (seqs[len(seqs) // 2], seqs[-3], seqs[-1]):
            self.assertEqual(query("&after=%d" % mid), [s for s in seqs if s > mid])
        # pages of 2, following next, give the whole log once, in order
        paged, after, pages = [], None, 0
        while True:
            q = "/audit?limit=2" + ("&after=%s" % after if after is not None else "")
            st, _, d = n.json("GET", q)
            self.assertEqual(st, 200, d)
            self.assertLessEqual(len(d["items"]), 2)
            paged += [r["seq"] for r in d["items"] if r["action"] != READ]
            pages += 1  # each page is a record: 2 read, 1 more
            self.assertLess(pages, 4 * len(every) + 2, "pagination does not end")
            if d["next"] is None:
                break
            after = d["next"]
        self.assertEqual(paged, seqs)
        # each read was recorded, with what it asked and how many it showed
        reads = [r for r in all_records(n, "&after=%d" % every[-1], reads=True)
                 if r["action"] == READ and r["actor"] == self.admin_id]
        self.assertEqual([r["object"] for r in reads if r["object"].endswith("limit=2")],
                         ["2 records for limit=2"])  # the first page
        self.assertEqual(reads[0]["plugin"], "core")
        # pages of a filtered query
        st, _, d = n.json("GET", "/audit?limit=1&plugin=hello")
        self.assertEqual(len(d["items"]), 1)
        st, _, d2 = n.json("GET", "/audit?limit=1000&plugin=hello&after=" + d["next"])
        self.assertEqual([d["items"][0]["seq"]] + [r["seq"] for r in d2["items"]],
                         expect(lambda r: r["plugin"] == "hello"))
        for bad in ("limit=0", "limit=-1", "limit=abc", "limit=1001", "after=abc", "after=-1",
                    "after=1.5", "after=", "after=99999999999999999999", "from=yesterday",
                    "from=-5", "to=1e999", "to=nan"):
            with self.subTest(query=bad):
                st, h, b = n.request("GET", "/audit?" + bad)
                self.assertProblem(st, h, b, 400)
                self.assertIn(bad.split("=")[0], json.loads(b)["detail"])

    def test_verify_reports_a_whole_chain(self):
        n = self.shared
        st, _, v = n.json("GET", "/audit/verify")
        self.assertEqual(st, 200)
        self.assertTrue(v["ok"], v)
        self.assertIsNone(v["first_bad"])
        full = all_records(n, reads=True)  # as the log was when it was verified
        self.assertEqual(v["records"], len(full))
        self.assertEqual(v["head"], full[-1]["hash"])


# A plugin whose handlers write and then fail: the write and the audit record go together.
WRITER_INIT = "".join(
    [
        'local kv = zt.db.open("kv")\n',
        lua_route("PUT", "/writer/:k", "kv:put(req.params.k, req.body)\nreturn 204", role="user"),
        lua_route(
            "PUT", "/writer/:k/refused",
            'kv:put(req.params.k, req.body)\nzt.problem(409, "conflict", "refused after writing")',
            role="user",
        ),
        lua_route("PUT", "/writer/:k/raises", 'kv:put(req.params.k, req.body)\nerror("boom")',
                  role="user"),
        lua_route(
            "GET", "/writer/:k",
            'local v = kv:get(req.params.k)\n'
            'if v == nil then zt.problem(404, "not-found", "no such key") end\n'
            "return 200, { value = v }",
        ),
    ]
)



class CodeRecord(NodeTest):
    """可信验证 as far as software goes: the node records the digests of what it runs, and
    each start that runs other code (an upgrade, a plugin changed, taken out or added, the
    config edited) leaves one audit record saying what changed."""

    def code_changes(self, n):
        st, _, d = n.json("GET", "/audit?object=code&limit=100")
        self.assertEqual(st, 200, d)
        return [r["action"] for r in d["items"]]

    def test_what_runs_is_recorded_and_changes_are_audited(self):
        root = tempfile.mkdtemp(prefix="zt-code-")
        self.addCleanup(shutil.rmtree, root, True)
        init = lua_route("GET", "/stamp", "return 200, { v = 1 }")
        lua_dir = lua_tree_with(os.path.join(root, "lua"), {"stamp": (lua_manifest(), init)})
        n = self.node(plugins=("hello", "stamp"), lua_dir=lua_dir, roles=("auditor",))
        st, _, code = n.json("GET", "/admin/code")
        self.assertEqual(st, 200, code)
        names = {x["name"]: x for x in code["items"]}
        for name in ("core", "config", "plugin hello", "plugin stamp", "workflows", "lua library"):
            self.assertIn(name, names)
            self.assertRegex(names[name]["digest"], r"^[0-9a-f]{64}$")
        first = self.code_changes(n)
        self.assertEqual(len(first), 1, first)
        self.assertRegex(first[0], r"^code changed: core new [0-9a-f]{8}; config new ")
        self.assertIn("plugin stamp new " + names["plugin stamp"]["digest"][:8], first[0])
        st, h, b = n.request("GET", "/admin/code", headers=n.new_user("nobody"), auth=False)
        self.assertProblem(st, h, b, 403)
        # the same code again: nothing to record
        n.stop()
        n.start()
        self.assertEqual(len(self.code_changes(n)), 1)
        # a Lua file changed behind the node's back, and a plugin taken out of the config
        n.stop()
        with open(os.path.join(lua_dir, "plugins", "stamp", "init.lua"), "a") as f:
            f.write("-- one more line\n")
        n._conf_text = n._conf_text.replace('plugins = { "hello", "stamp" }', 'plugins = { "stamp" }')
        n._write_conf()
        n.start()
        changes = self.code_changes(n)
        self.assertEqual(len(changes), 2, changes)
        last = changes[-1]  # in order: the newest last
        old = names["plugin stamp"]["digest"][:8]
        self.assertRegex(last, r"plugin stamp %s → [0-9a-f]{8}" % old)
        self.assertIn("config " + names["config"]["digest"][:8] + " → ", last)
        self.assertIn("plugin hello removed", last)
        self.assertNotIn("core", last)
        self.assertIn("code: ", n.log())
        now = {x["name"]: x for x in n.json("GET", "/admin/code")[2]["items"]}
        self.assertNotIn("plugin hello", now)
        self.assertNotEqual(now["plugin stamp"]["digest"], names["plugin stamp"]["digest"])
        self.assertGreater(now["plugin stamp"]["since"], names["plugin stamp"]["since"])
        # what plugins load from the rest of lua_dir (alert rules, shared modules) runs too
        n.stop()
        os.makedirs(os.path.join(lua_dir, "sensor"), exist_ok=True)
        with open(os.path.join(lua_dir, "sensor", "rules.lua"), "a") as f:
            f.write("-- an alert rule silenced\n")
        n.start()
        changes = self.code_changes(n)
        self.assertEqual(len(changes), 3, changes)
        self.assertRegex(changes[-1], r"^code changed: lua library %s → [0-9a-f]{8}$"
                         % now["lua library"]["digest"][:8])

class RollbackAfterWriting(NodeTest):
    def test_a_failed_handler_leaves_neither_its_write_nor_a_record(self):
        lua_dir = lua_tree_with(
            os.path.join(self.tmpdir(), "lua"), {"writer": (lua_manifest(), WRITER_INIT)}
        )
        n = self.node(plugins=("writer",), lua_dir=lua_dir, roles=("auditor",))
        st, h, b = n.request("PUT", "/writer/kept", "v1")
        self.assertEqual(st, 204, b)
        kept = h["x-request-id"]
        before = all_records(n)
        for path, want in (("/writer/gone1/refused", 409), ("/writer/gone2/raises", 500)):
            st, h, b = n.request("PUT", path, "v2")
            self.assertEqual(st, want, b)
            self.assertEqual(n.request("GET", path.rsplit("/", 1)[0])[0], 404, path)
        self.assertEqual(n.request("GET", "/writer/kept")[0], 200)
        after = all_records(n)
        self.assertEqual([r["seq"] for r in after], [r["seq"] for r in before])
        self.assertEqual(after[-1]["request_id"], kept)
        self.assertEqual(after[-1]["plugin"], "writer")

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="zt-e2e-lua-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


class Checkpoints(NodeTest):
    def test_checkpoints_can_be_checked_outside_the_node(self):
        try:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            self.fail("python3-cryptography is missing: run scripts/setup")
        n = self.node(roles=("auditor",), options="audit = { checkpoint_every = 3 }")
        st, _, d = n.json("GET", "/audit/checkpoints")
        self.assertEqual(st, 200, d)
        before = d["items"]
        for _ in range(10):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        st, _, d = n.json("GET", "/audit/checkpoints?limit=1000")
        self.assertEqual(st, 200, d)
        self.assertIsNone(d["next"])
        self.assertGreaterEqual(len(d["items"]) - len(before), 3, d)
        key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(d["node_key"] + "="))
        records = {r["seq"]: r for r in all_records(n, reads=True)}
        seqs = [c["seq"] for c in d["items"]]
        self.assertEqual(seqs, sorted(set(seqs)))
        for cp in d["items"]:
            msg = d["signed"].replace("<seq>", str(cp["seq"])).replace("<hash, hex>", cp["hash"])
            msg = msg.replace("<time>", str(cp["time"])).replace("<prev>", str(cp["prev"]))
            msg = msg.replace("<every>", str(cp["every"])).encode()
            sig = base64.urlsafe_b64decode(cp["signature"] + "==")
            key.verify(sig, msg)  # raises if the node did not sign exactly this
            self.assertEqual(records[cp["seq"]]["hash"], cp["hash"], cp)
            with self.assertRaises(InvalidSignature):  # and the check can fail
                key.verify(sig, msg.replace(cp["hash"].encode(), b"0" * 64))
        # pages
        st, _, p1 = n.json("GET", "/audit/checkpoints?limit=2")
        st, _, p2 = n.json("GET", "/audit/checkpoints?limit=1000&after=" + p1["next"])
        # (the read of the records above may have made one more)
        self.assertEqual([c["seq"] for c in p1["items"] + p2["items"]][:len(seqs)], seqs)
        for bad in ("limit=0", "after=x"):
            st, h, b = n.request("GET", "/audit/checkpoints?" + bad)
            self.assertProblem(st, h, b, 400)

    def test_a_checkpoint_that_cannot_be_signed_costs_no_change(self):
        n = self.node(roles=("auditor",), options="audit = { checkpoint_every = 3 }")
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        self.assertEqual(n.stop(), 0)
        # damage the node's sealed signing key: signing now fails
        def damage(txn, db):
            key = bytearray(txn.get(b"node_key"))
            key[-5] ^= 0xFF
            txn.put(b"node_key", bytes(key))

        edit_db(self, n, "_core/meta", damage)
        n.start()
        counts = [n.json("POST", "/hello/counter")[2]["count"] for _ in range(6)]
        self.assertEqual(counts, list(range(counts[0], counts[0] + 6)))  # every write kept
        self.assertIn("cannot sign a checkpoint", n.log())
        st, _, v = n.json("GET", "/audit/verify")
        self.assertEqual(st, 200, v)
        last = n.json("GET", "/audit?limit=1000")[2]["items"][-1]["seq"]
        self.assertEqual(v["records"], last)
        # monitoring sees it: failures counted, the signed head stays behind the log's
        m = scrape(n)
        self.assertGreaterEqual(m.get("zt_audit_checkpoint_failures_total"), 2)
        self.assertEqual(m.get("zt_audit_head_seq"), last + 1)  # and the record of that read
        self.assertLess(m.get("zt_audit_checkpoint_seq"), last - 3)

    def test_checkpoint_every_5(self):
        n = self.node(roles=("auditor",), options="audit = { checkpoint_every = 5 }")
        st, _, v0 = n.json("GET", "/audit/verify")
        self.assertEqual(st, 200)
        commits = scrape(n).get("zt_lmdb_commits_total")
        for _ in range(12):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # each write is a batch of its own, and a checkpoint is written in the batch whose
        # records it signs: no commit of its own
        self.assertEqual(scrape(n).get("zt_lmdb_commits_total") - commits, 12)
        st, _, v = n.json("GET", "/audit/verify")
        self.assertTrue(v["ok"], v)
        self.assertGreaterEqual(v["checkpoints"], 2)
        m = scrape(n)  # the signed head follows the log's within checkpoint_every
        head, signed = m.get("zt_audit_head_seq"), m.get("zt_audit_checkpoint_seq")
        self.assertEqual(head, n.json("GET", "/audit?limit=1000")[2]["items"][-1]["seq"])
        self.assertTrue(head - 5 <= signed <= head, (head, signed))
        self.assertEqual(m.types.get("zt_audit_checkpoint_failures_total"), "counter")
        self.assertEqual(m.get("zt_audit_checkpoint_failures_total"), 0)
        self.assertGreaterEqual(v["checkpoints"] - v0["checkpoints"], 2, (v0, v))
        r = verify_cli(n)  # also while the node runs
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("%d records" % (v["records"] + 1), r.stdout)  # the read's record since


def split_records(val):
    """The records of one stored value, each as bytes."""
    out, off = [], 0
    while off < len(val):
        n = 4 + int.from_bytes(val[off:off + 4], "big")
        out.append(val[off:off + n])
        off += n
    return out


class Archives(NodeTest):
    """Retention: the oldest records go to an archive file, checked, then leave the log; the
    log then begins after them and still verifies, while the node serves."""

    def write(self, n, count, pipelined=0):
        for _ in range(count):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        if pipelined:  # a batch of several records: one stored value
            wire = b"".join(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n"
                            for _ in range(pipelined))
            with n.rawconn() as c:
                self.assertEqual([r.status for r in c.exchange(wire, pipelined)], [200] * pipelined)

    def verify(self, n):
        st, _, v = n.json("GET", "/audit/verify")
        self.assertEqual(st, 200, v)
        self.assertTrue(v["ok"], v)
        r = verify_cli(n)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return v, r.stdout

    def test_recent_records_are_kept(self):
        # audit.retain (default 180 days): prune archives old records; it does not remove
        # recent ones, whoever runs it (an administrator wiping the records of what they
        # just did), and verify cannot be made to say OK over a log emptied that way
        n = self.node(roles=("auditor",))
        self.write(n, 4)
        before = all_records(n)
        head = before[-1]["seq"]
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "audit-1.jsonl")
        r = run(["audit", "-c", n.conf, "export", str(head), path])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["audit", "-c", n.conf, "prune", path])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"are kept for audit.retain \(180 days\) after they were "
                                   r"made: the last of them may be pruned from 20\d\d-\d\d-\d\d "
                                   r"\d\d:\d\d UTC")
        self.assertEqual(all_records(n)[:len(before)], before)  # nothing removed
        v, _ = self.verify(n)
        self.assertEqual(v["pruned_through"], 0)
        # a county that keeps them shorter says so, and is warned at each start
        self.assertEqual(n.stop(), 0)
        with open(n.conf, "a") as f:
            f.write("audit = { retain = 30 * 24 * 3600 }\n")
        n.start()
        self.assertRegex(n.log(), r"zhengtong.conf:\d+: audit.retain is 30 days: audit prune may "
                                  r"remove records younger than the six months")
        r = run(["audit", "-c", n.conf, "prune", path])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("are kept for audit.retain (30 days)", r.stderr)
        for bad, why in (("-1", "audit.retain must be 0, or between 0.001 and"),
                         ('"180d"', "audit.retain must be a number (seconds)")):
            with self.subTest(retain=bad):
                with open(n.conf) as f:
                    text = f.read()
                with open(n.conf, "w") as f:
                    f.write(text.replace("retain = 30 * 24 * 3600", "retain = " + bad))
                r = run(["check", "-c", n.conf])
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(why, r.stderr)
                with open(n.conf, "w") as f:
                    f.write(text)

    def test_export_check_prune_and_go_on(self):
        n = self.node(roles=("auditor",), options="audit = { retain = 0 }")
        self.write(n, 6, pipelined=6)
        head = all_records(n)[-1]["seq"]
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        first = os.path.join(tmp, "audit-1.jsonl")
        r = run(["audit", "-c", n.conf, "export", str(head - 3), first])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"records 1\.\.(\d+) \((\d+)\)", r.stdout)
        self.assertTrue(m, r.stdout)
        through = int(m.group(1))
        self.assertLessEqual(through, head - 3)  # whole batches, never past what was asked
        self.assertGreater(through, 0)
        self.assertFalse(os.path.exists(first + ".partial"))
        # taking a copy of the records is itself recorded, by whom and to where
        exp = all_records(n)[-1]
        self.assertEqual((exp["action"], exp["object"], exp["plugin"]),
                         ("audit export", "records 1..%d to %s" % (through, os.path.realpath(first)),
                          "core"))
        self.assertTrue(exp["actor"].startswith("cli:"), exp)
        # an archive is checked on its own, with no config or data folder
        r = run(["audit", "check", first], cwd=tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        # a log's first record is signed at once; the next checkpoint (export signs the
        # head) is past the archive's end: what comes after record 1 is named
        st, _, cps = n.json("GET", "/audit/checkpoints")
        self.assertIn("archive OK", r.stdout)
        self.assertIn("signed by node key %s (compare: GET /audit/checkpoints, node_key) through "
                      "record 1" % cps["node_key"], r.stdout)
        self.assertIn("records 2..%d come after its last signed checkpoint" % through, r.stdout)
        # and read: its records as GET /audit showed them while they were in the log
        logged = [x for x in all_records(n) if x["seq"] <= through]
        r = run(["audit", "show", first], cwd=tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        shown = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(shown, logged)
        # never over an archive
        r = run(["audit", "-c", n.conf, "export", str(head), first])
        self.assertEqual(r.returncode, 1)
        self.assertIn("never overwritten", r.stderr)
        # a changed record, a cut file: refused, naming the line; the log keeps everything
        with open(first) as f:
            lines = f.read().splitlines(True)
        bad = os.path.join(tmp, "bad.jsonl")
        rec = json.loads(lines[1])
        raw = bytearray(base64.urlsafe_b64decode(rec["value"] + "=="))
        raw[-1] ^= 1
        rec["value"] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        for name, text, why in (
            ("changed", lines[0] + json.dumps(rec) + "\n" + "".join(lines[2:]),
             ":2: the record's content does not match its hash"),
            ("cut", "".join(lines[:-1]), "cut short"),
            ("not an archive", "hello\n", ":1: not a JSON object"),
        ):
            with self.subTest(name):
                with open(bad, "w") as f:
                    f.write(text)
                r = run(["audit", "check", bad])
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(why, r.stderr)
                r = run(["audit", "show", bad])  # nothing shown of an archive that fails
                self.assertEqual((r.returncode, r.stdout), (1, ""))
                self.assertIn(why, r.stderr)
                r = run(["audit", "-c", n.conf, "prune", bad])
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertEqual(all_records(n)[0]["seq"], 1)
        # the real one: the records leave the log, which begins after them and verifies
        r = run(["audit", "-c", n.conf, "prune", first])
        self.assertEqual(r.returncode, 0, r.stderr)
        v, out = self.verify(n)
        self.assertEqual(v["pruned_through"], through)
        self.assertIn("records 1..%d are in archives" % through, out)
        recs = all_records(n)
        self.assertEqual(recs[0]["seq"], through + 1)
        pr = recs[-1]
        self.assertEqual((pr["action"], pr["plugin"]), ("audit prune", "core"))
        self.assertTrue(pr["actor"].startswith("cli:"), pr)
        self.assertIn("records 1..%d" % through, pr["object"])
        # the same archive again: its records are gone already (not "export again")
        r = run(["audit", "-c", n.conf, "prune", first])
        self.assertEqual(r.returncode, 1)
        self.assertIn("the records of %s (1..%d) are already pruned: the log here begins after "
                      "record %d" % (first, through, through), r.stderr)
        self.assertNotIn("export again", r.stderr)
        # the node goes on, across a restart; the next archive follows the first
        self.write(n, 3)
        self.assertEqual(n.stop(), 0)
        n.start()
        self.write(n, 2)
        self.verify(n)
        second = os.path.join(tmp, "audit-2.jsonl")
        r = run(["audit", "-c", n.conf, "export", str(head + 2), second])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("records %d..%d" % (through + 1, head + 2), r.stdout)
        with open(second) as f:
            hdr = json.loads(f.readline())
        self.assertEqual(hdr["after_seq"], through)
        # it chains to the first: it begins with the hash the first ended with
        self.assertEqual(hdr["after_hash"], json.loads(lines[-1])["end"]["last_hash"])
        r = run(["audit", "-c", n.conf, "prune", second])
        self.assertEqual(r.returncode, 0, r.stderr)
        v, _ = self.verify(n)
        self.assertEqual(v["pruned_through"], head + 2)
        # an archive older than the last one pruned: as much already pruned
        r = run(["audit", "-c", n.conf, "prune", first])
        self.assertEqual(r.returncode, 1)
        self.assertIn("(1..%d) are already pruned: the log here begins after record %d"
                      % (through, head + 2), r.stderr)
        # nothing older to export
        r = run(["audit", "-c", n.conf, "export", "1", os.path.join(tmp, "none.jsonl")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("nothing to export through record 1", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(tmp, "none.jsonl.partial")))


class ArchiveSignatures(NodeTest):
    """What `audit check` says a signature vouches for: the records up to the last signed
    checkpoint; never the node key a file's first line merely names."""

    def archive_of(self, n, through):
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "a.jsonl")
        r = run(["audit", "-c", n.conf, "export", str(through), path])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(path) as f:
            lines = [json.loads(x) for x in f]
        return path, lines

    def test_no_checkpoint_no_claim(self):
        # checkpoints only by count, and never reached: the archive holds none
        n = self.node(roles=("auditor",), options="audit = { checkpoint_every = 100000, checkpoint_interval = 0 }")
        for _ in range(3):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # export signs the head first, and a log's first record is signed at once: an
        # archive that stops short of the head holds only that checkpoint; a file without
        # it (as anyone may write one) holds none
        head = all_records(n)[-1]["seq"] - 1
        path, lines = self.archive_of(n, head)
        self.assertEqual([x["checkpoint"]["seq"] for x in lines if "checkpoint" in x], [1])
        lines = [x for x in lines if "checkpoint" not in x]
        with open(path, "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
        key = n.json("GET", "/audit/checkpoints")[2]["node_key"]
        self.assertEqual(lines[0]["node_key"], key)  # the real key, as a forger would write it
        r = run(["audit", "check", path])
        self.assertEqual(r.returncode, 0, r.stderr)  # intact: not broken
        self.assertNotIn("signed by", r.stdout)
        self.assertNotIn("archive OK", r.stdout)
        self.assertIn("archive UNSIGNED %s: records 1..%d" % (path, head), r.stdout)
        self.assertIn("nothing in it is authenticated", r.stdout)
        # a first line that names another key is as good to it: it is only a claim
        lines[0]["node_key"] = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
        with open(path, "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
        r = run(["audit", "check", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("signed by", r.stdout)
        self.assertIn("nothing in it is authenticated", r.stdout)

    def test_records_after_the_last_checkpoint_are_named(self):
        n = self.node(roles=("auditor",), options="audit = { checkpoint_every = 5, checkpoint_interval = 0 }")
        for _ in range(8):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        cps = [c["seq"] for c in n.json("GET", "/audit/checkpoints?limit=1000")[2]["items"]]
        if cps[-1] == all_records(n)[-1]["seq"]:  # one record past it (4 short of the next)
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # each write is a batch of its own: export stops at any record; one just past a
        # checkpoint leaves a tail that no checkpoint in the file covers
        head = cps[-1] + 1
        path, lines = self.archive_of(n, head)
        signed = max(x["checkpoint"]["seq"] for x in lines if "checkpoint" in x)
        self.assertEqual((signed, lines[-1]["end"]["last_seq"]), (cps[-1], head))
        r = run(["audit", "check", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("archive OK", r.stdout)
        key = n.json("GET", "/audit/checkpoints")[2]["node_key"]
        self.assertIn("signed by node key %s (compare: GET /audit/checkpoints, node_key) through "
                      "record %d" % (key, signed), r.stdout)
        self.assertIn("records %d..%d come after its last signed checkpoint (record %d): no "
                      "signature in it covers them" % (signed + 1, head, signed), r.stdout)
        self.assertIn("A signed checkpoint after record %d vouches for those records" % head,
                      r.stdout)
        # an archive that ends at a checkpoint has no such tail
        path, lines = self.archive_of(n, signed)
        self.assertEqual(lines[-1]["end"]["last_seq"], signed)
        r = run(["audit", "check", path])
        self.assertIn("through record %d" % signed, r.stdout)
        self.assertNotIn("no signature", r.stdout)
        self.assertNotIn("vouches", r.stdout)


class ArchivesByDate(NodeTest):
    def test_export_what_is_older_than_a_day(self):
        # records made on 1 and 3 March 2030 (Beijing time), by the test clock
        n = self.node(env={"ZT_TEST_CLOCK": "1"}, roles=("auditor",), auth={"password_max_age": 0})
        bj = datetime.timezone(datetime.timedelta(hours=8))
        for day in (1, 3):
            at = datetime.datetime(2030, 3, day, 10, 0, tzinfo=bj).timestamp() * 1000
            n.set_clock(int(at - time.time() * 1000))
            n.sign_in(roles=("auditor",))  # years on: the session of the start has ended
            for _ in range(2):
                self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cut = datetime.datetime(2030, 3, 2, tzinfo=bj).timestamp() * 1000
        path = os.path.join(tmp, "before-2030-03-02.jsonl")
        r = run(["audit", "-c", n.conf, "export", "2030-03-02", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        last = int(re.search(r"records 1\.\.(\d+)", r.stdout).group(1))
        recs = {x["seq"]: x for x in all_records(n)}
        self.assertLess(recs[last]["time"], cut)  # all it holds is older than the day
        self.assertGreaterEqual(recs[last + 1]["time"], cut)  # and the next one is not
        for bad in ("2030-02-30", "2030-3-02", "yesterday"):
            r = run(["audit", "-c", n.conf, "export", bad, os.path.join(tmp, "x.jsonl")])
            self.assertEqual(r.returncode, 2, bad)  # a usage error, before anything opens
            self.assertIn("neither a record's sequence number nor a date", r.stderr)
        r = run(["audit", "-c", n.conf, "export", "1999-12-31", os.path.join(tmp, "none.jsonl")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("nothing to export from before that time", r.stderr)


class Tampering(NodeTest):
    """Stop the node, change its LMDB file behind its back, and ask both verifiers."""

    WRITES = 10
    PIPELINED = 8

    def setUp(self):
        super().setUp()
        n = self.node(roles=("auditor",))
        for _ in range(self.WRITES):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # pipelined writes share a batch, so their records share a stored value
        wire = b"".join(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n"
                        for _ in range(self.PIPELINED))
        with n.rawconn() as c:
            rs = c.exchange(wire, self.PIPELINED)
        self.assertEqual([r.status for r in rs], [200] * self.PIPELINED, rs)
        self.records = all_records(n)
        self.assertGreaterEqual(len(self.records), self.WRITES + self.PIPELINED)
        r = verify_cli(n)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # whole before tampering
        self.assertEqual(n.stop(), 0)
        self.n = n
        self.values = self.read_values()
        self.assertTrue(any(len(recs) > 1 for recs in self.values.values()),
                        "no two records in one stored value: %r"
                        % [len(r) for r in self.values.values()])

    def tamper(self, dbname, change):
        edit_db(self, self.n, dbname, lambda txn, db: change(txn))

    def key(self, seq):
        return seq.to_bytes(8, "big")

    def read_values(self):
        """The audit log as stored: {key: [record bytes, ...]}."""
        values = {}

        def read(txn):
            for key, val in txn.cursor():
                self.assertEqual(len(key), 9, key)
                values[bytes(key)] = split_records(bytes(val))

        self.tamper("_core/audit", read)
        return values

    def where(self, seq):
        """The key of the value that holds record seq, and its index there."""
        for key, recs in self.values.items():
            first = int.from_bytes(key[:8], "big")
            if first <= seq < first + len(recs):
                return key, seq - first
        self.fail("no record %d" % seq)

    def rewrite(self, changes):
        """changes: {key: [record bytes]} ([]: the value goes)."""
        def put(txn):
            for key, recs in changes.items():
                if recs:
                    txn.put(key, b"".join(recs))
                else:
                    self.assertTrue(txn.delete(key))

        self.tamper("_core/audit", put)

    def change_record(self, seq, fn):
        key, i = self.where(seq)
        recs = list(self.values[key])
        recs[i] = fn(bytearray(recs[i]))
        self.rewrite({key: recs})

    def assertBrokenAt(self, seq, reason_words=()):
        r = verify_cli(self.n)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        m = re.search(r"BROKEN at record (\d+)", r.stdout)
        self.assertTrue(m, r.stdout)
        self.assertEqual(int(m.group(1)), seq, r.stdout)
        self.n.start()
        st, _, v = self.n.json("GET", "/audit/verify")
        self.assertEqual(st, 200, v)
        self.assertFalse(v["ok"], v)
        self.assertEqual(v["first_bad"], seq, v)
        for w in reason_words:
            self.assertIn(w, v["reason"])
        return v

    def victim(self):
        """A record in the middle of a value of several records."""
        key = next(k for k, recs in self.values.items() if len(recs) >= 3)
        return int.from_bytes(key[:8], "big") + 1

    def alone(self):
        """A record stored alone, not the first of the log."""
        key = [k for k, recs in self.values.items() if len(recs) == 1][self.WRITES // 2]
        return int.from_bytes(key[:8], "big")

    def test_flipped_byte(self):
        k = self.victim()

        def flip(v):
            v[R_BODY + v[R_BODY:].index(b"POST /hello") + 2] ^= 0x01  # inside the action
            return bytes(v)

        self.change_record(k, flip)
        self.assertBrokenAt(k, ["hash"])

    def test_flipped_byte_of_the_stored_hash(self):
        k = self.alone()

        def flip(v):
            v[R_HASH + 5] ^= 0x80
            return bytes(v)

        self.change_record(k, flip)
        self.assertBrokenAt(k)

    def test_deleted_record(self):
        k = self.victim()
        key, i = self.where(k)
        self.rewrite({key: self.values[key][:i] + self.values[key][i + 1:]})
        self.assertBrokenAt(k, ["missing"])

    def test_pages_go_on_past_a_deleted_record(self):
        # after= the record before a gap inside a value: the records after the gap in that
        # value are listed, not skipped with the rest of the value
        k = self.victim()
        key, i = self.where(k)
        self.rewrite({key: self.values[key][:i] + self.values[key][i + 1:]})
        self.n.start()
        want = [r["seq"] for r in self.records if r["seq"] > k]
        got = [r["seq"] for r in all_records(self.n, "&after=%d" % (k - 1))]
        self.assertEqual(got[:len(want)], want)
        # a page that ends before the gap leads to the record after it
        st, _, d = self.n.json("GET", "/audit?limit=1&after=%d" % (k - 2))
        self.assertEqual((st, [r["seq"] for r in d["items"]]), (200, [k - 1]), d)
        st, _, d = self.n.json("GET", "/audit?limit=1&after=%s" % d["next"])
        self.assertEqual((st, [r["seq"] for r in d["items"]]), (200, [k + 1]), d)

    def test_pages_end_where_stored_seqs_go_back(self):
        # records stored out of order (k+1, k, k-1): a page that ends on the lower seq must
        # not lead back to the same page; every page moves on and the listing ends
        k = self.victim()
        key, i = self.where(k)
        recs = list(self.values[key])
        recs[i - 1], recs[i + 1] = recs[i + 1], recs[i - 1]
        self.rewrite({key: recs})
        self.n.start()
        after, pages, seen = k - 2, 0, []
        while after is not None:
            st, _, d = self.n.json("GET", "/audit?limit=2&after=%s" % after)
            self.assertEqual(st, 200, d)
            seen += [r["seq"] for r in d["items"] if r["action"] != READ]
            if d["next"] is not None:
                self.assertGreater(int(d["next"]), int(after), d)
            after = d["next"]
            pages += 1
            self.assertLess(pages, len(self.records) + 2, "pagination does not end: %r" % seen)
        self.assertEqual(seen[:2], [k + 1, k])
        self.assertEqual(seen[-1], self.records[-1]["seq"])

    def test_deleted_value(self):
        k = self.alone()
        self.rewrite({self.where(k)[0]: []})
        self.assertBrokenAt(k, ["missing"])

    def test_swapped_records(self):
        k = self.victim()
        key, i = self.where(k)
        recs = list(self.values[key])
        recs[i - 1], recs[i + 1] = recs[i + 1], recs[i - 1]
        self.rewrite({key: recs})
        self.assertBrokenAt(k - 1)

    def all_checkpoints(self):
        cps = {}

        def read(txn):
            for key, val in txn.cursor():
                cps[int.from_bytes(key, "big")] = json.loads(val)

        self.tamper("_core/audit_checkpoints", read)
        self.assertTrue(cps, "no checkpoint after a graceful stop")
        return cps

    def last_checkpoint(self):
        cps = self.all_checkpoints()
        last = max(cps)
        return last, cps[last]

    def test_checkpoint_time_out_of_range(self):
        last, cp = self.last_checkpoint()
        for bad in (1e300, -1, 0.5):
            with self.subTest(time=bad):
                cp["time"] = bad
                self.tamper("_core/audit_checkpoints",
                            lambda txn: txn.put(self.key(last), json.dumps(cp).encode()))
                self.assertBrokenAt(last, ["damaged"])
                self.assertEqual(self.n.stop(), 0)
                last, cp = self.last_checkpoint()  # the stop signed the head again

    def test_forged_checkpoint(self):
        # the shutdown signed the head: forge that checkpoint's signature
        last, cp = self.last_checkpoint()
        sig = bytearray(base64.urlsafe_b64decode(cp["signature"] + "=="))
        sig[10] ^= 0x01
        cp["signature"] = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
        self.tamper("_core/audit_checkpoints",
                    lambda txn: txn.put(self.key(last), json.dumps(cp).encode()))
        self.assertBrokenAt(last, ["signature"])

    def test_node_key_removed(self):
        # without the node's key no checkpoint can be checked: that is no "OK"
        first = min(self.all_checkpoints())
        edit_db(self, self.n, "_core/meta", lambda txn, db: self.assertTrue(txn.delete(b"node_key")))
        r = verify_cli(self.n)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("BROKEN at record %d: the node key is missing" % first, r.stdout)
        self.assertBrokenAt(first)  # a node started on it has another key: still broken

    def test_node_key_replaced_and_checkpoints_signed_again(self):
        # someone who can write the store but has no master key puts a key pair of their
        # own where the node keeps its sealed key (the public key is read from its bytes
        # 1..32), and signs every checkpoint again, as after rewriting the log
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        forger = Ed25519PrivateKey.generate()
        pk = forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        cps = self.all_checkpoints()
        edit_db(self, self.n, "_core/meta",
                lambda txn, db: txn.put(b"node_key", b"\x01" + pk + os.urandom(24 + 48)))

        def resign(txn):
            for seq, cp in cps.items():
                msg = "zhengtong-audit-checkpoint-v1\n%d\n%s\n%d" % (seq, cp["hash"], cp["time"])
                sig = forger.sign(msg.encode())
                cp["signature"] = base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
                txn.put(self.key(seq), json.dumps(cp).encode())

        self.tamper("_core/audit_checkpoints", resign)
        first = min(cps)
        r = verify_cli(self.n)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("BROKEN at record %d: the node key is not one this master key sealed"
                      % first, r.stdout)
        self.assertBrokenAt(first, ["not one this master key sealed"])
        st, _, d = self.n.json("GET", "/audit/checkpoints")
        self.assertEqual(st, 200, d)
        self.assertIsNone(d["node_key"], d)  # the forger's key is not shown as the node's


class Deletions(NodeTest):
    """Records or checkpoints removed behind a stopped node's back, the rest left as they
    were: the start of the log, the checkpoints. The node signs every 5 records here."""

    EVERY = 5

    def setUp(self):
        super().setUp()
        self.n = self.node(roles=("auditor",), options="audit = { checkpoint_every = %d, "
                           "checkpoint_interval = 0, retain = 0 }" % self.EVERY)
        for _ in range(30):
            self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        self.head = all_records(self.n, reads=True)[-1]["seq"] + 1  # and that read's record
        self.assertEqual(self.n.stop(), 0)

    def checkpoints(self):
        cps = {}

        def read(txn, db):
            for key, val in txn.cursor():
                cps[int.from_bytes(key, "big")] = json.loads(val)

        edit_db(self, self.n, "_core/audit_checkpoints", read)
        return cps

    def delete_checkpoints(self, seqs):
        def delete(txn, db):
            for seq in seqs:
                self.assertTrue(txn.delete(seq.to_bytes(8, "big")))

        edit_db(self, self.n, "_core/audit_checkpoints", delete)

    def assertBroken(self, seq, words):
        r = verify_cli(self.n)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("BROKEN at record %d: %s" % (seq, words), r.stdout)
        self.n.start()  # a node started on it signs on, and the gap stays
        self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        st, _, v = self.n.json("GET", "/audit/verify")
        self.assertEqual(st, 200, v)
        self.assertEqual((v["ok"], v["first_bad"]), (False, seq), v)
        self.assertIn(words, v["reason"])

    def assertWhole(self):
        r = verify_cli(self.n)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("audit log OK", r.stdout)
        return r.stdout

    def test_checkpoints_are_signed_every_n_records_and_name_the_one_before(self):
        cps = self.checkpoints()
        seqs = sorted(cps)
        self.assertEqual(seqs[0], 1)  # a log's first record at once
        for before, seq in zip(seqs, seqs[1:]):
            self.assertEqual(cps[seq]["prev"], before)
            self.assertLessEqual(seq - before, self.EVERY)
            self.assertEqual(cps[seq]["every"], self.EVERY)
        self.assertEqual(seqs[-1], self.head)  # the stop signed the head
        self.assertWhole()

    def test_every_checkpoint_deleted(self):
        self.delete_checkpoints(self.checkpoints())
        self.assertBroken(1, "checkpoints missing after record 0")

    def test_a_checkpoint_deleted_in_the_middle(self):
        seqs = sorted(self.checkpoints())
        self.delete_checkpoints([seqs[3]])
        self.assertBroken(seqs[2] + 1, "checkpoints missing after record %d" % seqs[2])

    def test_the_first_checkpoints_deleted(self):
        seqs = sorted(self.checkpoints())
        self.delete_checkpoints(seqs[:2])
        self.assertBroken(1, "checkpoints missing after record 0")

    def test_the_last_checkpoints_deleted(self):
        seqs = sorted(self.checkpoints())
        self.delete_checkpoints(seqs[-3:])
        self.assertBroken(seqs[-4] + 1, "checkpoints missing after record %d" % seqs[-4])

    def test_an_unsigned_tail_is_whole(self):
        # a crash leaves the records after the last checkpoint unsigned: fewer than it allows
        self.n.start()
        for _ in range(3):
            self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        head = all_records(self.n, reads=True)[-1]["seq"] + 1  # and that read's record
        self.n.kill9()
        last = max(self.checkpoints())
        self.assertLess(last, head)
        self.assertIn("%d records" % head, self.assertWhole())

    def test_checkpoint_every_changed(self):
        # larger: the first checkpoint after the change still comes EVERY records on
        text = self.n._conf_text
        self.n._conf_text = text.replace("checkpoint_every = 5", "checkpoint_every = 50")
        self.n._write_conf()
        self.n.start()
        for _ in range(20):
            self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        self.n.kill9()
        self.assertWhole()
        cps = self.checkpoints()
        self.assertEqual(cps[max(cps)]["every"], 50)
        # smaller, before the node started again: the tail was written under 50
        self.n.start()
        for _ in range(20):
            self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        self.n.kill9()
        self.assertGreater(all_records_stopped(self) - max(self.checkpoints()), self.EVERY)
        self.n._conf_text = text
        self.n._write_conf()
        self.assertWhole()
        self.n.start()
        for _ in range(10):
            self.assertEqual(self.n.request("POST", "/hello/counter")[0], 200)
        self.n.kill9()
        self.assertWhole()

    def anchor(self, seq, value):
        edit_db(self, self.n, "_core/audit_anchor", lambda txn, db: txn.put(b"a", value))

    def test_the_start_of_the_log_deleted(self):
        # the oldest values and their checkpoints go, and the beginning is moved past them
        # as a pruning would: the log holds no record of a pruning, the node signed nothing
        cut = 12
        gone = {}

        def delete(txn, db):
            for key, val in list(txn.cursor()):
                recs = split_records(bytes(val))
                first = int.from_bytes(key[:8], "big")
                if first + len(recs) - 1 <= cut:
                    gone[first + len(recs) - 1] = recs[-1][R_HASH:R_HASH + 32]
                    self.assertTrue(txn.delete(key))

        edit_db(self, self.n, "_core/audit", delete)
        last = max(gone)
        self.delete_checkpoints([s for s in self.checkpoints() if s <= last])
        for value in (last.to_bytes(8, "big") + gone[last],  # as it was stored before
                      last.to_bytes(8, "big") + gone[last] + bytes(64)):
            with self.subTest(len=len(value)):
                self.anchor(last, value)
                r = verify_cli(self.n)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("BROKEN at record %d: the log begins after record %d, but the node "
                              "did not sign that beginning" % (last + 1, last), r.stdout)
        self.assertBroken(last + 1, "the log begins after record %d, but the node did not sign "
                                    "that beginning" % last)

    def test_pruned_records_put_back(self):
        # pruned as it should be, then the records put back and the beginning removed: the
        # chain is whole from record 1, but the log's own record of the pruning says the
        # log begins elsewhere
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "a.jsonl")
        r = run(["audit", "-c", self.n.conf, "export", "12", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["audit", "-c", self.n.conf, "prune", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.assertWhole()
        through = int(re.search(r"records 1\.\.(\d+) are in archives", out).group(1))
        with open(path) as f:
            lines = [json.loads(x) for x in f]
        values = [(base64.urlsafe_b64decode(x["key"] + "=="),
                   base64.urlsafe_b64decode(x["value"] + "==")) for x in lines if "key" in x]

        def put_back(txn, open_db):
            log = open_db("_core/audit")
            for k, v in values:
                txn.put(k, v, db=log)
            self.assertTrue(txn.delete(b"a", db=open_db("_core/audit_anchor")))

        edit_db(self, self.n, None, put_back)
        self.assertBroken(1, "the log begins after record 0, but its last audit prune record "
                             "does not end there")
        self.assertGreater(through, 0)


def all_records_stopped(test):
    """The last sequence number in a stopped node's log."""
    heads = []

    def head(txn, db):
        c = txn.cursor()
        if c.last():
            recs = split_records(bytes(c.value()))
            heads.append(int.from_bytes(c.key()[:8], "big") + len(recs) - 1)

    edit_db(test, test.n, "_core/audit", head)
    return heads[0]


if __name__ == "__main__":
    unittest.main()
