# test_http.py: HTTP/1.1 behaviour of the real server: keep-alive, pipelining, limits, errors.
import json
import os
import socket
import time
import unittest

from ztnode import NodeTest, parse_responses


def req(method, path, headers=(), body=b"", close=False):
    """One request as bytes, with Host, the given headers and Content-Length when a body
    is given (headers may already say how the body is framed)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: e2e"]
    names = set()
    for h in headers:
        lines.append(h)
        names.add(h.split(":")[0].strip().lower())
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    if method == "POST" and not body and not names & {"content-length", "transfer-encoding"}:
        lines.append("Content-Length: 0")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*parts):
    out = b""
    for p in parts:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


class Basics(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node()

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        with self.shared.rawconn() as c:
            for i in range(5):
                c.send(req("GET", "/hello/ka%d" % i))
                r = c.response()
                self.assertEqual(r.status, 200, r)
                self.assertIn(b"ka%d" % i, r.body)
                self.assertNotEqual(r.headers.get("connection", "").lower(), "close")
            # still the same socket, still open: one more works
            c.send(req("GET", "/healthz"))
            self.assertEqual(c.response().status, 200)

    def test_connection_close_and_http10(self):
        with self.shared.rawconn() as c:
            c.send(req("GET", "/hello/bye", close=True))
            r = c.response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers.get("connection", "").lower(), "close")
            self.assertTrue(c.closed_by_peer(timeout=5))
        with self.shared.rawconn() as c:
            c.send(b"GET /hello/old HTTP/1.0\r\n\r\n")
            data = c.read_until_close(timeout=5)
        rs = parse_responses(data)
        self.assertEqual(len(rs), 1, data)
        self.assertEqual(rs[0].status, 200)
        self.assertIn(b"old", rs[0].body)
        with self.shared.rawconn() as c:
            c.send(b"GET /hello/ka10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.response()
            self.assertEqual(r.status, 200)
            c.send(b"GET /hello/again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            self.assertIn(b"again", c.response().body)

    def test_pipelined_requests_answered_in_order(self):
        st, _, body = self.shared.request("GET", "/hello/counter")
        self.assertEqual(st, 200, body)
        reqs = []
        kinds = []
        for i in range(10):
            if i % 3 == 1:  # writes among the reads: they wait for the batch commit
                reqs.append(req("POST", "/hello/counter"))
                kinds.append(("post", None))
            else:
                reqs.append(req("GET", "/hello/pipe%d" % i, close=(i == 9)))
                kinds.append(("get", "pipe%d" % i))
        with self.shared.rawconn() as c:
            c.send(b"".join(reqs))  # one send: all ten in the server's buffer at once
            data = c.read_until_close()
        rs = parse_responses(data)
        self.assertEqual(len(rs), 10, data[:2000])
        counts = []
        for (kind, name), r in zip(kinds, rs):
            self.assertEqual(r.status, 200, r)
            if kind == "get":
                self.assertIn(name.encode(), r.body)
            else:
                counts.append(r.json()["count"])
        # each POST saw the previous one's increment, in request order
        self.assertEqual(counts, list(range(counts[0], counts[0] + len(counts))))
        ids = [r.headers.get("x-request-id") for r in rs]
        self.assertEqual(len(set(ids)), 10, ids)

    def test_more_pipelined_requests_than_a_connection_queues(self):
        # A connection queues 64 requests, then stops reading until answers have gone out:
        # ten times that, in one send, with writes among them, all come back in order.
        n = 640
        reqs = [req("POST", "/hello/counter") if i % 50 == 7 else req("GET", "/hello/deep%d" % i)
                for i in range(n)]
        reqs.append(req("GET", "/hello/last", close=True))
        with self.shared.rawconn() as c:
            c.send(b"".join(reqs))
            rs = parse_responses(c.read_until_close())
        self.assertEqual(len(rs), n + 1)
        self.assertEqual({r.status for r in rs}, {200})
        for i, r in enumerate(rs[:n]):
            if i % 50 != 7:
                self.assertIn(b"deep%d" % i, r.body)
        counts = [r.json()["count"] for i, r in enumerate(rs[:n]) if i % 50 == 7]
        self.assertEqual(counts, list(range(counts[0], counts[0] + len(counts))))
        self.assertIn(b"last", rs[n].body)

    def test_pipelined_read_after_write_sees_the_write(self):
        with self.shared.rawconn() as c:
            c.send(req("POST", "/hello/counter") + req("GET", "/hello/counter", close=True))
            rs = parse_responses(c.read_until_close())
        self.assertEqual([r.status for r in rs], [200, 200], rs)
        self.assertEqual(rs[1].json()["count"], rs[0].json()["count"])

    def test_head_has_no_body_and_the_same_length(self):
        with self.shared.rawconn() as c:
            c.send(req("GET", "/hello"))
            g = c.response()
            c.send(req("HEAD", "/hello"))
            h = c.response(head=True)
            # if HEAD had sent a body, it would be read as the start of this response
            c.send(req("GET", "/healthz"))
            after = c.response()
        self.assertEqual(g.status, 200)
        self.assertEqual(h.status, 200)
        self.assertTrue(g.body)
        self.assertEqual(h.headers.get("content-length"), str(len(g.body)))
        self.assertEqual(h.headers.get("content-type"), g.headers.get("content-type"))
        self.assertEqual(after.status, 200, after)

    def test_chunked_request_body(self):
        doc = json.dumps({"title": "分块 chunked title", "body": "x" * 300}).encode()
        # cut inside a UTF-8 character and inside a string
        parts = [doc[:3], doc[3:13], doc[13:100], doc[100:]]
        with self.shared.rawconn() as c:
            c.send(
                req(
                    "POST",
                    "/notices",
                    ["Content-Type: application/json", "Transfer-Encoding: chunked"],
                    chunked(*parts),
                )
            )
            r = c.response()
        self.assertEqual(r.status, 201, r)
        created = r.json()
        st, _, got = self.shared.json("GET", "/notices/%s" % created["id"])
        self.assertEqual(st, 200, got)
        self.assertEqual(got["title"], "分块 chunked title")
        self.assertEqual(got["body"], "x" * 300)

    def test_chunked_with_extensions_and_trailer(self):
        with self.shared.rawconn() as c:
            body = json.dumps({"title": "t", "body": "b"}).encode()
            wire = b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(body), body)
            c.send(
                req("POST", "/notices", ["Content-Type: application/json", "Transfer-Encoding: chunked"], wire)
            )
            r = c.response()
            self.assertEqual(r.status, 201, r)
            c.send(req("GET", "/healthz"))  # the connection is still in step
            self.assertEqual(c.response().status, 200)

    def test_expect_100_continue(self):
        body = json.dumps({"title": "expect", "body": "continue"}).encode()
        with self.shared.rawconn() as c:
            c.send(
                (
                    "POST /notices HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
                    "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
                ).encode()
            )
            interim = c.response()
            self.assertEqual(interim.status, 100, interim)
            self.assertEqual(interim.body, b"")
            c.send(body)
            final = c.response()
        self.assertEqual(final.status, 201, final)
        self.assertEqual(final.json()["title"], "expect")

    def test_expect_100_continue_refused_when_too_big(self):
        with self.shared.rawconn() as c:
            c.send(
                b"POST /notices HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: 104857600\r\n\r\n"
            )
            r = c.response()
        # the final answer comes at once, without asking for the 100 MiB
        self.assertEqual(r.status, 413, r)

    def test_unknown_path_is_404_problem(self):
        st, h, b = self.shared.request("GET", "/no/such/thing")
        p = self.assertProblem(st, h, b, 404, "not-found")
        self.assertIn("x-request-id", h)
        self.assertEqual(p["request_id"], h["x-request-id"])

    def test_wrong_method_is_405_with_allow(self):
        st, h, b = self.shared.request("DELETE", "/hello")
        self.assertProblem(st, h, b, 405)
        self.assertIn("allow", h)
        allowed = [m.strip() for m in h["allow"].split(",")]
        self.assertIn("GET", allowed)
        self.assertNotIn("DELETE", allowed)
        st, h, b = self.shared.request("PUT", "/hello/counter", body=b"{}")
        self.assertProblem(st, h, b, 405)
        allowed = [m.strip() for m in h["allow"].split(",")]
        self.assertIn("GET", allowed)
        self.assertIn("POST", allowed)

    def test_every_response_has_a_unique_request_id(self):
        seen = set()
        for method, path in [
            ("GET", "/hello"),
            ("GET", "/healthz"),
            ("GET", "/no/such"),
            ("DELETE", "/hello"),
            ("GET", "/metrics"),
            ("GET", "/api"),
        ] * 3:
            st, h, _ = self.shared.request(method, path, keep=True)
            rid = h.get("x-request-id")
            self.assertTrue(rid, (method, path, st, h))
            self.assertNotIn(rid, seen)
            seen.add(rid)
        # errors found before routing (a bad request) carry one too
        data = self.shared.raw(b"NOT A REQUEST\r\n\r\n")
        rs = parse_responses(data)
        self.assertTrue(rs, data)
        self.assertTrue(rs[0].headers.get("x-request-id"), rs[0])
        self.assertNotIn(rs[0].headers["x-request-id"], seen)

    def test_malformed_requests_get_400_and_close(self):
        bad = [
            b"GARBAGE\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /hello XTTP/1.1\r\nHost: e2e\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nHost e2e\r\n\r\n",  # header without a colon
            b"GET /hello HTTP/1.1\r\nHost: e2e\r\nBad Name: x\r\n\r\n",
            b"\x00\x01\x02\x03\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nHost: e2e\r\nContent-Length: abc\r\n\r\n",
        ]
        for wire in bad:
            with self.subTest(wire=wire):
                with self.shared.rawconn() as c:
                    # a valid request after the bad one must not be answered
                    c.send(wire + req("GET", "/hello"))
                    data = c.read_until_close()
                rs = parse_responses(data)
                self.assertEqual(len(rs), 1, data[:1000])
                self.assertProblem(rs[0].status, rs[0].headers, rs[0].body, 400)
        # and the server still serves
        self.assertEqual(self.shared.request("GET", "/hello")[0], 200)


class Smuggling(NodeTest):
    """Request shapes that two servers could frame differently are refused outright."""

    @classmethod
    def setUpClass(cls):
        cls.shared_node()

    def counter(self):
        st, _, b = self.shared.request("GET", "/hello/counter")
        self.assertEqual(st, 200, b)
        return json.loads(b)["count"]

    def refused(self, wire, statuses=(400,)):
        before = self.counter()
        with self.shared.rawconn() as c:
            c.send(wire)
            data = c.read_until_close()
        rs = parse_responses(data)
        self.assertEqual(len(rs), 1, data[:1000])
        self.assertIn(rs[0].status, statuses, rs[0])
        self.assertTrue(rs[0].headers.get("content-type", "").startswith("application/problem+json"))
        # nothing of it ran
        self.assertEqual(self.counter(), before)

    def test_content_length_and_transfer_encoding(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            + req("POST", "/hello/counter")
        )

    def test_transfer_encoding_before_content_length(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n0\r\n\r\n"
            + req("POST", "/hello/counter")
        )

    def test_two_different_content_lengths(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5\r\n"
            b"Content-Length: 6\r\n\r\nabcdef"
            + req("POST", "/hello/counter")
        )

    def test_lines_must_end_with_crlf_and_headers_not_fold(self):
        post = b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\n"
        for wire in (
            post + b"X-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",  # obs-fold
            post + b"X-A: 1\r\n\tfolded\r\nContent-Length: 0\r\n\r\n",
            post + b"X-A: a\rb\r\nContent-Length: 0\r\n\r\n",  # a CR not before LF
            post + b"Content-Length: 0\r\r\n\r\n",
            # chunk data not followed by CRLF
            post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        ):
            with self.subTest(wire=wire):
                self.refused(wire + req("POST", "/hello/counter"))

    def test_line_endings_checked_across_reads(self):
        # the same checks when each byte arrives on its own
        wire = (b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nX-A: 1\r\n \r\n"
                b"Content-Length: 0\r\n\r\n")
        before = self.counter()
        with self.shared.rawconn() as c:
            for i in range(len(wire)):
                c.send(wire[i:i + 1])
            data = c.read_until_close()
        rs = parse_responses(data)
        self.assertEqual([r.status for r in rs], [400], data[:500])
        self.assertEqual(self.counter(), before)
        with self.shared.rawconn() as c:  # and a good one, byte by byte, is served
            good = req("GET", "/hello")
            for i in range(len(good)):
                c.send(good[i:i + 1])
            self.assertEqual(c.response().status, 200)

    def test_bad_chunk_size(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nabc\r\n0\r\n\r\n"
        )

    def test_overflowing_chunk_size(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"fffffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
            statuses=(400, 413),
        )

    def test_gzip_chunked_transfer_encoding(self):
        self.refused(
            b"POST /hello/counter HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"0\r\n\r\n",
            statuses=(400, 501),
        )


def rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


class Limits(NodeTest):
    def test_answers_a_client_does_not_read_are_not_all_held(self):
        # 40 clients each pipeline 64 requests for a 17 KB answer and read none of them:
        # the node made and held every answer (~1 MB a connection, ~45 MB here; 64 of 455 KB
        # sensor series, 29 MB a connection); now it reads no further request of a
        # connection holding more than 256 KB of unsent answers
        n = self.node(plugins=("hello",))
        st, _, b = n.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertGreater(len(b), 12000)
        before = rss_anon_kb(n.proc.pid)
        socks = []
        try:
            for _ in range(40):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", n.port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: e2e\r\n\r\n" * 64)
                socks.append(s)
            # until the node has answered what it will, and serves others meanwhile
            for _ in range(40):
                self.assertEqual(n.request("GET", "/hello")[0], 200)
            grown = rss_anon_kb(n.proc.pid) - before
            # (under the sanitizers memory is not the program's: freed blocks stay in
            # quarantine, so only the answers below are checked there)
            if "ASAN_OPTIONS" not in os.environ:
                self.assertLess(grown, 25 * 1024, "the node holds %d KB for 40 clients" % grown)
            # a client that reads gets every answer, in order
            s = socks[0]
            s.settimeout(10)
            data = b""
            while data.count(b"HTTP/1.1 200") < 64:
                chunk = s.recv(1 << 20)
                self.assertTrue(chunk, "closed after %d answers" % data.count(b"HTTP/1.1 200"))
                data += chunk
        finally:
            for s in socks:
                s.close()

    def test_header_bytes_over_the_limit_is_431(self):
        n = self.node(limits={"header_bytes": 4096})
        ok = n.raw(req("GET", "/hello", ["X-Pad: " + "a" * 2000], close=True))
        self.assertEqual(parse_responses(ok)[0].status, 200, ok[:300])
        with n.rawconn() as c:
            c.send(req("GET", "/hello", ["X-Pad: " + "a" * 6000]))
            r = c.response()
            self.assertProblem(r.status, r.headers, r.body, 431)
            self.assertTrue(c.closed_by_peer())
        # many small headers count too
        with n.rawconn() as c:
            c.send(req("GET", "/hello", ["X-H%d: %s" % (i, "b" * 40) for i in range(200)]))
            self.assertEqual(c.response().status, 431)
        self.assertEqual(n.request("GET", "/hello")[0], 200)

    def test_default_header_limit_is_16k(self):
        n = self.node()
        with n.rawconn() as c:
            c.send(req("GET", "/hello", ["X-Pad: " + "a" * 12000]))
            self.assertEqual(c.response().status, 200)
            c.send(req("GET", "/hello", ["X-Pad: " + "a" * 17000]))
            self.assertEqual(c.response().status, 431)

    def counter(self, n):
        st, _, b = n.request("GET", "/hello/counter")
        self.assertEqual(st, 200, b)
        return json.loads(b)["count"]

    def test_body_over_the_limit_is_413(self):
        n = self.node(limits={"body_bytes": 1024})
        # POST /hello/counter takes the server's limit (its route sets none)
        st, h, b = n.request("POST", "/hello/counter", b"u" * 1000)
        self.assertEqual(st, 200, b)
        self.assertEqual(self.counter(n), 1)
        over = b"o" * 2000
        # announced by Content-Length: refused without reading it
        with n.rawconn() as c:
            c.send(req("POST", "/hello/counter", [], over))
            r = c.response()
        self.assertProblem(r.status, r.headers, r.body, 413)
        # found while reading chunks
        with n.rawconn() as c:
            parts = [over[i : i + 200] for i in range(0, len(over), 200)]
            c.send(req("POST", "/hello/counter", ["Transfer-Encoding: chunked"], chunked(*parts)))
            r = c.response()
        self.assertProblem(r.status, r.headers, r.body, 413)
        # neither ran
        self.assertEqual(self.counter(n), 1)
        # exactly the limit is fine
        self.assertEqual(n.request("POST", "/hello/counter", b"e" * 1024)[0], 200)

    def test_route_body_limit(self):
        # POST /notices sets its own limit (well under the server's default 1 MiB)
        n = self.node()
        st, _, api = n.json("GET", "/api")
        limit = [r for r in api["routes"] if (r["method"], r["path"]) == ("POST", "/notices")][0][
            "body_limit"
        ]
        self.assertLess(limit, 1048576)
        doc = json.dumps({"title": "too long", "body": "z" * limit}).encode()
        self.assertGreater(len(doc), limit)
        with n.rawconn() as c:
            # the head alone: the announced length is enough to refuse it
            c.send(req("POST", "/notices", ["Content-Type: application/json",
                                            "Content-Length: %d" % len(doc)]))
            r = c.response()
        self.assertProblem(r.status, r.headers, r.body, 413)
        st, _, page = n.json("GET", "/notices")
        self.assertEqual(page["items"], [])

    def test_header_read_timeout_is_408_and_close(self):
        n = self.node(limits={"header_timeout": 1})
        with n.rawconn() as c:
            c.send(b"GET /hello HTTP/1.1\r\nHost: e2e\r\nX-Half: ")
            data = c.read_until_close(timeout=8)
        rs = parse_responses(data)
        self.assertEqual(len(rs), 1, data)
        self.assertProblem(rs[0].status, rs[0].headers, rs[0].body, 408)
        self.assertEqual(n.request("GET", "/hello")[0], 200)

    def test_slow_but_steady_headers_still_time_out(self):
        # the limit is on the whole head, not between bytes (slowloris)
        n = self.node(limits={"header_timeout": 1})
        with n.rawconn() as c:
            c.send(b"GET /hello HTTP/1.1\r\n")
            closed = False
            for i in range(40):  # a header line every 0.2 s: 8 s in all at most
                try:
                    c.send(b"X-Slow-%d: a\r\n" % i)
                    c._fill(time.monotonic() + 0.2)
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
                if c.eof:
                    closed = True
                    break
        self.assertTrue(closed, "a head sent slowly was never cut off")
        if c.buf:
            self.assertTrue(c.buf.startswith(b"HTTP/1.1 408"), c.buf[:200])

    def test_idle_keep_alive_connection_is_closed(self):
        n = self.node(limits={"idle_timeout": 1})
        with n.rawconn() as c:
            c.send(req("GET", "/hello"))
            self.assertEqual(c.response().status, 200)
            self.assertTrue(c.closed_by_peer(timeout=8), "kept open past idle_timeout")

    def test_max_connections(self):
        n = self.node(limits={"max_connections": 2})

        def served_conn():
            # the node may not have seen the close of an earlier connection yet (the
            # start-up's): then this one is refused, and another try comes a moment later
            for _ in range(100):
                c = n.rawconn()
                try:
                    c.send(req("GET", "/hello"))
                    if c.response().status == 200:
                        return c
                except (OSError, EOFError):
                    pass
                c.close()
                time.sleep(0.02)
            self.fail("no connection served")

        a = served_conn()
        b = served_conn()
        try:
            with n.rawconn() as third:
                try:
                    third.send(req("GET", "/hello"))
                    data = third.read_until_close(timeout=5)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                rs = parse_responses(data)
                if rs:  # answered, then closed: must be a 503 problem
                    self.assertProblem(rs[0].status, rs[0].headers, rs[0].body, 503)
                    self.assertEqual(len(rs), 1)
            # the two accepted ones still work
            for c in (a, b):
                c.send(req("GET", "/healthz"))
                self.assertEqual(c.response().status, 200)
        finally:
            a.close()
            b.close()
        # with the slots free again, new connections are served
        ok = False
        for _ in range(50):
            try:
                st = n.request("GET", "/hello")[0]
            except OSError:
                st = None
            if st == 200:
                ok = True
                break
            time.sleep(0.05)
        self.assertTrue(ok, "no connection served after the others closed")


if __name__ == "__main__":
    unittest.main()
