# test_server.py: built-in endpoints (/healthz, /metrics, /api), logs, graceful shutdown.
import json
import os
import signal
import socket
import time
import unittest

from ztnode import ADMIN_PASSWORD, HOST, NodeTest, parse_responses, run, scrape, wait_for


def plugin_states(health):
    """plugin name -> state, from GET /healthz's {"plugins": [{"name", "state"}, ...]}."""
    return {p["name"]: p["state"] for p in health["plugins"]}


def routes_of(api):
    """The routes from GET /api's {"routes": [...]}."""
    return api["routes"]


def log_text(rec):
    return json.dumps(rec, ensure_ascii=False).lower()


class Endpoints(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("hello", "notice"))

    def test_healthz(self):
        st, h, d = self.shared.json("GET", "/healthz")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/json"))
        states = plugin_states(d)
        self.assertEqual(set(states), {"hello", "notice"})
        for name, state in states.items():
            self.assertEqual(state, "running", (name, d))

    def test_metrics_format(self):
        st, h, b = self.shared.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"), h)
        m = scrape(self.shared)
        for name in ("zt_http_requests_total", "zt_http_request_duration_seconds"):
            self.assertIn(name, m.types, sorted(m.types))
        self.assertEqual(m.types["zt_http_requests_total"], "counter")
        self.assertEqual(m.types["zt_http_request_duration_seconds"], "histogram")
        self.assertTrue(any(n.startswith("zt_lmdb_") for n in m.names()), sorted(m.names()))
        self.assertIn("zt_lua_memory_bytes", m.names())
        free, size = m.get("zt_data_fs_free_bytes"), m.get("zt_data_fs_size_bytes")
        self.assertTrue(0 < free <= size, (free, size))
        # every sample belongs to a declared family
        for name in m.names():
            family = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[: -len(suffix)] in m.types:
                    family = name[: -len(suffix)]
            self.assertIn(family, m.types, "sample %s without # TYPE" % name)

    def test_request_counters_increase(self):
        m0 = scrape(self.shared)
        for i in range(3):
            self.assertEqual(self.shared.request("GET", "/hello/metric%d" % i)[0], 200)
        self.assertEqual(self.shared.request("GET", "/nowhere/at/all")[0], 404)
        m1 = scrape(self.shared)

        def by_route(m, status):
            out = {}
            for labels, v in m.samples.get("zt_http_requests_total", []):
                if labels.get("status") == status:
                    key = (labels.get("method"), labels.get("route"))
                    out[key] = out.get(key, 0) + v
            return out

        a, b = by_route(m0, "200"), by_route(m1, "200")
        grew = {r: b[r] - a.get(r, 0) for r in b if b[r] != a.get(r, 0)}
        # the scrape itself counts for GET /metrics; nothing else ran
        self.assertEqual(grew.pop(("GET", "/metrics"), 0), 1)
        self.assertEqual(grew, {("GET", "/hello/:name"): 3})
        self.assertEqual(
            m1.total("zt_http_requests_total", status="404")
            - m0.total("zt_http_requests_total", status="404"),
            1,
        )
        # routes are labelled by pattern, not by the path asked for
        self.assertFalse(any("metric0" in r for _, r in b), list(b))

    def test_latency_histogram(self):
        for _ in range(4):
            self.shared.request("GET", "/hello")
        m = scrape(self.shared)
        buckets = m.samples.get("zt_http_request_duration_seconds_bucket", [])
        self.assertTrue(buckets)
        # one series at least: cumulative buckets ending with +Inf == _count
        series = {}
        for labels, v in buckets:
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(key, []).append((float(labels["le"]), v))
        counts = {
            tuple(sorted(l.items())): v
            for l, v in m.samples.get("zt_http_request_duration_seconds_count", [])
        }
        sums = {
            tuple(sorted(l.items())): v
            for l, v in m.samples.get("zt_http_request_duration_seconds_sum", [])
        }
        total = 0
        for key, bs in series.items():
            bs.sort()
            self.assertGreaterEqual(len(bs), 5, "too few buckets")
            self.assertEqual(bs[-1][0], float("inf"))
            values = [v for _, v in bs]
            self.assertEqual(values, sorted(values), "buckets are not cumulative")
            self.assertEqual(bs[-1][1], counts[key])
            self.assertGreaterEqual(sums[key], 0)
            total += counts[key]
        self.assertGreaterEqual(total, 4)

    def test_lua_memory_per_plugin(self):
        m = scrape(self.shared)
        self.assertGreater(m.get("zt_lua_memory_bytes", plugin="notice"), 0)

    def test_lmdb_commits_counted(self):
        m0 = scrape(self.shared)
        self.assertEqual(m0.types.get("zt_lmdb_commits_total"), "counter")
        self.assertEqual(self.shared.request("POST", "/hello/counter")[0], 200)
        m1 = scrape(self.shared)
        self.assertGreater(m1.get("zt_lmdb_commits_total"), m0.get("zt_lmdb_commits_total"))
        self.assertEqual(m1.get("zt_lmdb_commit_errors_total"), 0)
        self.assertGreater(m1.get("zt_lmdb_used_bytes"), 0)

    def test_api_lists_routes_with_plugins_and_roles(self):
        st, h, d = self.shared.json("GET", "/api")
        self.assertEqual(st, 200)
        routes = routes_of(d)
        table = {}
        for r in routes:
            self.assertTrue({"method", "path", "plugin", "role"} <= set(r), r)
            table[(r["method"], r["path"])] = r
        want = {
            ("GET", "/hello"): "hello",
            ("GET", "/hello/:name"): "hello",
            ("GET", "/hello/counter"): "hello",
            ("POST", "/hello/counter"): "hello",
            ("GET", "/notices"): "notice",
            ("GET", "/notices/:id"): "notice",
            ("POST", "/notices"): "notice",
            ("DELETE", "/notices/:id"): "notice",
        }
        for key, plugin in want.items():
            self.assertIn(key, table, sorted(table))
            self.assertEqual(table[key]["plugin"], plugin)
            self.assertTrue(isinstance(table[key]["role"], str) and table[key]["role"])
        self.assertEqual(table[("GET", "/hello")]["role"], "public")
        self.assertEqual(len(table), len(routes), "a route listed twice")


class Logs(NodeTest):
    def test_logs_are_json_lines(self):
        n = self.node(plugins=("hello",), log_level="debug")
        n.request("GET", "/hello")
        n.request("GET", "/missing")
        self.assertEqual(n.stop(), 0)
        lines = [ln for ln in n.log().splitlines() if ln.strip()]
        self.assertTrue(lines)
        for ln in lines:
            rec = json.loads(ln)
            self.assertIsInstance(rec, dict)
            self.assertIn("time", rec)
            self.assertIn(rec.get("level"), ("debug", "info", "warn", "error"), rec)

    def test_first_start_password_is_not_logged(self):
        n = self.node(plugins=("hello",))
        pw = n.first_start_password()
        self.assertTrue(pw, "no one-time password on stdout")
        self.assertNotIn(pw, n.log())

    def test_log_level_filters(self):
        n = self.node(plugins=("hello",), log_level="error")
        n.request("GET", "/hello")
        n.request("GET", "/missing")
        self.assertEqual(n.stop(), 0)
        levels = {r.get("level") for r in n.log_records()}
        self.assertLessEqual(levels, {"error"}, n.log())


class BrokenHandlers(NodeTest):
    """A C handler that answers and then fails has its writes dropped: the client must
    not be told they were made."""

    @classmethod
    def setUpClass(cls):
        cls.shared_node(
            plugins=("misbehave",),
            plugin_dir=os.path.join(os.environ["ZT_BUILD"], "tests", "plugins"),
            sign_in=False,
        )

    def test_an_answer_then_an_error_is_a_500(self):
        n = self.shared
        failed = (("/misbehave/error", "input/output error"), ("/misbehave/twice", "wrong time"))
        for path, why in failed:
            st, h, b = n.request("POST", path, {})
            self.assertProblem(st, h, b, 500, "internal-error")
            self.assertEqual(n.json("GET", "/misbehave/written")[2], False, path)
            said = "handler of POST %s answered 201, then failed" % path
            self.assertTrue(
                [r for r in n.log_records() if said in r.get("msg", "") and why in r["msg"]],
                n.log(),
            )

    def test_zt_work_without_zt_async_waits_for_its_done(self):
        n = self.shared
        for _ in range(3):  # the node crashed on a request freed before its done ran
            st, _, b = n.request("GET", "/misbehave/work-ok")
            self.assertEqual((st, b), (200, b"done"))
            st, h, b = n.request("GET", "/misbehave/work-einval")
            self.assertProblem(st, h, b, 500, "internal-error")
        said = "handler of GET /misbehave/work-ok called zt_work() but returned 0 (ZT_OK)"
        self.assertTrue([r for r in n.log_records() if said in r.get("msg", "")], n.log())

    def test_a_service_can_neither_wait_for_work_nor_answer_the_client(self):
        for service in ("work", "answer"):
            st, _, d = self.shared.json("GET", "/misbehave/call/" + service)
            self.assertEqual((st, d), (200, {"rc": -12}), service)  # ZT_ESTATE

    def test_a_refusal_then_an_error_stands(self):
        st, h, b = self.shared.request("POST", "/misbehave/refuse", {})
        self.assertProblem(st, h, b, 409, "conflict")


class Shutdown(NodeTest):
    def stopped_in_log(self, n):
        return any("stop" in log_text(r) for r in n.log_records())

    def test_sigterm_finishes_writes_queued_behind_work_in_flight(self):
        # A sign-in hashes its password off the loop (Argon2id, made slow here): the writes
        # pipelined behind it are received and wait for it when the signal comes.
        n = self.node(plugins=("hello",), auth={"password_ops": 4, "password_memory": 64 << 20})
        login = json.dumps({"login": "admin", "password": ADMIN_PASSWORD}).encode()
        writes = 10
        wire = (
            b"POST /auth/login HTTP/1.1\r\nHost: anon\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(login), login)
        )
        wire += b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n" * writes
        idle = scrape(n).get("zt_http_requests_in_flight")
        with n.rawconn(timeout=30) as c:
            c.send(wire)
            deadline = time.monotonic() + 10
            busy = idle
            while busy <= idle and time.monotonic() < deadline:
                busy = scrape(n).get("zt_http_requests_in_flight")
            self.assertGreater(busy, idle, "the sign-in was never seen in flight")
            n.send_signal(signal.SIGTERM)
            data = c.read_until_close(timeout=20)
        rc = n.wait()
        self.assertEqual(rc, 0, n.log())
        rs = parse_responses(data)
        self.assertTrue(rs and rs[0].status == 200 and rs[0].json()["token"], data[:500])
        counts = [r.json()["count"] for r in rs[1:]]
        self.assertEqual(counts, list(range(1, len(counts) + 1)))
        n.start()
        # what was answered is on disk, and nothing else ran
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], len(counts))
        # and the writes the node had received were all finished, not dropped
        self.assertEqual(len(counts), writes, "%d of %d received writes answered" % (len(counts), writes))

    def test_sigterm_with_writes_racing_it(self):
        # Writes sent just as the signal goes: the node may take them or not, but what it
        # answers is on disk, and what is on disk was answered.
        n = self.node(plugins=("hello",))
        writes = 20
        wire = b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n" * writes
        cs = [n.rawconn() for _ in range(3)]
        try:
            for c in cs:
                c.send(wire)
            n.send_signal(signal.SIGTERM)
            rs = []
            for c in cs:
                rs += parse_responses(c.read_until_close(timeout=15))
        finally:
            for c in cs:
                c.close()
        self.assertEqual(n.wait(), 0, n.log())
        self.assertTrue(all(r.status == 200 for r in rs), rs)
        counts = sorted(r.json()["count"] for r in rs)
        self.assertEqual(counts, list(range(1, len(rs) + 1)))
        n.start()
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], len(rs))

    def test_sigterm_waits_for_a_request_in_flight_and_stops_accepting(self):
        n = self.node(plugins=("hello", "notice"))
        doc = json.dumps({"title": "in flight", "body": "sent across a SIGTERM"}).encode()
        head = (
            "POST /notices HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % len(doc)
        ).encode()
        with n.rawconn() as c:
            c.send(req_healthz())
            self.assertEqual(c.response().status, 200)  # the connection is established
            c.send(head + doc[:10])
            time.sleep(0.3)  # let the server read the head (no assertion on time)
            n.send_signal(signal.SIGTERM)
            # no new connections once stopping
            refused = False
            for _ in range(50):
                try:
                    s = socket.create_connection((HOST, n.port), timeout=1)
                except OSError:
                    refused = True
                    break
                s.close()
                time.sleep(0.02)
            self.assertTrue(refused, "still accepting connections after SIGTERM")
            self.assertTrue(n.running(), "exited with a request in flight")
            c.send(doc[10:])
            r = c.response()
            self.assertEqual(r.status, 201, r)
            nid = r.json()["id"]
            self.assertTrue(c.closed_by_peer(timeout=10))
        self.assertEqual(n.wait(), 0, n.log())
        n.start()
        st, _, got = n.json("GET", "/notices/" + nid)
        self.assertEqual(st, 200)
        self.assertEqual(got["title"], "in flight")

    def test_shutdown_is_bounded(self):
        n = self.node(plugins=("hello",), limits={"shutdown_timeout": 1})
        c = n.rawconn()
        try:
            c.send(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 100\r\n\r\nabc")
            time.sleep(0.3)
            n.send_signal(signal.SIGTERM)
            rc = n.wait(timeout=15)  # the client never finishes: the node must not wait forever
        finally:
            c.close()
        self.assertEqual(rc, 0, n.log())
        n.start()
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], 0)

    def test_a_request_whose_headers_are_still_arriving_does_not_hold_the_stop(self):
        # nothing of it has run: it is dropped at once, not waited for until header_timeout
        # (60 s here) or shutdown_timeout (30 s); one whose body is arriving is finished
        n = self.node(plugins=("hello",), limits={"header_timeout": 60, "shutdown_timeout": 30})
        slow, body = n.rawconn(timeout=10), n.rawconn(timeout=10)
        try:
            slow.send(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nX-Slow: ")
            body.send(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 2\r\n\r\n{")
            time.sleep(0.3)  # let the server read both (no assertion on time)
            n.send_signal(signal.SIGTERM)
            self.assertTrue(slow.closed_by_peer(timeout=5))
            self.assertTrue(n.running(), "exited with a request body in flight")
            body.send(b"}")
            self.assertEqual(body.response().status, 200)
            rc = n.wait(timeout=10)
        finally:
            slow.close()
            body.close()
        self.assertEqual(rc, 0, n.log())
        self.assertIn("1 connections still sending a request's headers closed", n.log())
        n.start()
        self.assertEqual(n.json("GET", "/hello/counter")[2]["count"], 1)

    def test_the_stop_counts_requests_still_receiving_their_body(self):
        n = self.node(plugins=("hello",))
        with n.rawconn(timeout=10) as c:
            c.send(b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 2\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            # the node has read the headers: it asks for the body
            self.assertEqual(c.response().status, 100)
            n.send_signal(signal.SIGTERM)
            wait_for("the stop's log line", lambda: "SIGTERM: " in n.log())
            self.assertIn("SIGTERM: no new connections; finishing 1 requests in flight, 1 of them "
                          "still receiving their body", n.log())
            c.send(b"{}")
            self.assertEqual(c.response().status, 200)
        self.assertEqual(n.wait(), 0, n.log())

    def test_idle_connections_do_not_delay_shutdown(self):
        n = self.node(plugins=("hello",))
        cs = [n.rawconn() for _ in range(3)]
        try:
            for c in cs:
                c.send(req_healthz())
                self.assertEqual(c.response().status, 200)
            self.assertEqual(n.stop(), 0)
            for c in cs:
                self.assertTrue(c.closed_by_peer(timeout=2))
        finally:
            for c in cs:
                c.close()

    def test_sighup_is_no_stop_and_no_reload(self):
        # its default action ended the node at once: no graceful stop, and an exit by a
        # signal that systemd's Restart=on-failure does not restart
        n = self.node(plugins=("hello",))
        self.assertEqual(n.json("POST", "/hello/counter")[2]["count"], 1)
        n.send_signal(signal.SIGHUP)
        wait_for("the SIGHUP log line", lambda: "SIGHUP" in n.log() or not n.running())
        self.assertTrue(n.running(), n.log())
        rec = [r for r in n.log_records() if "SIGHUP" in r.get("msg", "")]
        self.assertEqual(len(rec), 1, n.log())
        self.assertEqual(rec[0]["level"], "warn")
        self.assertIn("keeps running with the config it started with", rec[0]["msg"])
        self.assertIn("no reload", rec[0]["msg"])
        self.assertIn("restart", rec[0]["msg"])
        self.assertEqual(n.json("POST", "/hello/counter")[2]["count"], 2)  # it serves on
        self.assertEqual(n.stop(), 0, n.log())  # and still stops gracefully

    def test_sigint(self):
        n = self.node(plugins=("hello",))
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        self.assertEqual(n.stop(signal.SIGINT), 0, n.log())
        self.assertTrue(self.stopped_in_log(n), n.log())


class OneNodePerFolderAndPort(NodeTest):
    def test_second_node_on_the_same_data_or_port_does_not_start(self):
        n = self.node(plugins=("hello",))
        self.assertEqual(n.request("POST", "/hello/counter")[0], 200)
        # the same config again: the data folder is taken, whoever serves the port
        r = run(["serve", "-c", n.conf], timeout=20, cwd=n.dir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("is in use by another zhengtong serve (process %d)" % n.proc.pid, r.stderr)
        # another data folder on the same address: the port is taken (no second listener
        # sharing it, as SO_REUSEPORT allowed)
        other = os.path.join(n.dir, "other.conf")
        with open(n.conf) as f:
            text = f.read().replace(n.data_dir, os.path.join(n.dir, "other-data"))
        with open(other, "w") as f:
            f.write(text)
        r = run(["serve", "-c", other], timeout=20, cwd=n.dir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("address already in use", r.stderr)
        # the first node served on, alone: every request reaches it, its counter moves by one
        for want in (2, 3, 4):
            st, _, d = n.json("POST", "/hello/counter")
            self.assertEqual((st, d["count"]), (200, want))
        # the claim ends with the process, also a killed one
        n.kill9()
        n.start()
        self.assertEqual(n.json("POST", "/hello/counter")[2]["count"], 5)


def req_healthz():
    return b"GET /healthz HTTP/1.1\r\nHost: e2e\r\n\r\n"


class Version(unittest.TestCase):
    def test_version(self):
        r = run(["version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^zhengtong \d+\.\d+\.\d+ \(plugin ABI \d+\.\d+\)$")
        # the benchmark build without the audit log (ZT_BENCH_NO_AUDIT) says so; this is not it
        self.assertNotIn("NOT audited", r.stdout)


if __name__ == "__main__":
    unittest.main()
