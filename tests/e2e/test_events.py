# test_events.py: the event bus: delivery of committed work only, order, retries, restarts.
import os
import unittest

from ztnode import NodeTest, env, scrape, wait_for

ZT_EINVAL, ZT_EEXIST, ZT_EREADONLY, ZT_ETOOBIG, ZT_ESTATE = -3, -5, -6, -8, -12


def plugin_dir():
    return os.path.join(env("ZT_BUILD"), "tests", "plugins")


def evnode(test, **kw):
    kw.setdefault("roles", ("auditor",))
    return test.node(plugins=("evtest",), plugin_dir=plugin_dir(), **kw)


def emit(node, topic, payload=None, **extra):
    body = dict(topic=topic, **extra)
    if payload is not None:
        body["payload"] = payload
    st, h, d = node.json("POST", "/evtest/emit", body)
    return st, h, d


def seen(node, sub, prefix=""):
    st, _, d = node.json("GET", "/evtest/seen?sub=" + sub)
    if st != 200:
        raise AssertionError("GET /evtest/seen answered %d %r" % (st, d))
    return [r for r in d["items"] if r["topic"].startswith(prefix)]


def seen_topic(node, sub, topic):
    """Wait until sub has received topic; everything sub received with topic's prefix."""
    return wait_for(
        "%s to receive %s" % (sub, topic),
        lambda: [r for r in seen(node, sub) if r["topic"] == topic] and seen(node, sub),
    )


def sub_metric(node, name, pattern):
    return scrape(node).get(name, plugin="evtest", pattern=pattern)


class Delivery(NodeTest):
    @classmethod
    def setUpClass(cls):
        from ztnode import Node

        cls.shared = Node(plugins=("evtest",), plugin_dir=plugin_dir(), roles=("auditor",))
        cls.addClassCleanup(cls.shared.close)

    def test_only_committed_work_is_delivered(self):
        n = self.shared
        self.assertEqual(emit(n, "evtest.commit.one", {"n": 1})[0], 201)
        st, _, d = n.json("POST", "/evtest/emit-fail", {"topic": "evtest.commit.two"})
        self.assertEqual(st, 400, d)
        self.assertEqual(emit(n, "evtest.commit.three", {"n": 3})[0], 201)
        seen_topic(n, "all", "evtest.commit.three")
        got = [r["topic"] for r in seen(n, "all", "evtest.commit.")]
        self.assertEqual(got, ["evtest.commit.one", "evtest.commit.three"])

    def test_order_per_topic_and_once_each(self):
        n = self.shared
        st, _, d = emit(n, "evtest.order", count=40)
        self.assertEqual(st, 201, d)
        for _ in range(3):  # more requests, each its own transaction
            self.assertEqual(emit(n, "evtest.order", count=10)[0], 201)
        got = wait_for("70 events", lambda: len(seen(n, "all", "evtest.order")) >= 70 and
                       seen(n, "all", "evtest.order"))
        self.assertEqual(len(got), 70)
        self.assertEqual([r["payload"]["i"] for r in got],
                         list(range(40)) + list(range(10)) * 3)
        seqs = [r["seq"] for r in got]
        self.assertEqual(seqs, sorted(set(seqs)), "delivered out of order or twice")

    def test_what_a_handler_sees(self):
        n = self.shared
        payload = {"a": [1, "x", None], "b": "雨"}
        st, h, _ = emit(n, "evtest.fields", payload)
        self.assertEqual(st, 201)
        r = [x for x in seen_topic(n, "all", "evtest.fields") if x["topic"] == "evtest.fields"]
        self.assertEqual(len(r), 1)
        r = r[0]
        self.assertEqual(r["payload"], payload)
        self.assertEqual(r["source"], "evtest")
        self.assertEqual(r["request_id"], h["x-request-id"])
        self.assertEqual(r["attempt"], 1)
        self.assertEqual(r["method"], "EVENT")
        self.assertTrue(r["path_is_topic"], r)
        self.assertTrue(r["body_is_payload"], r)
        self.assertTrue(r["no_header"], r)
        self.assertEqual(r["client"], "internal")
        self.assertEqual((r["caller_kind"], r["caller_login"]), ("system", "system:evtest"))
        self.assertEqual((r["respond_rc"], r["problem_rc"]), (ZT_ESTATE, ZT_ESTATE))
        self.assertGreater(r["time"], 1.6e12)

    def test_null_payload(self):
        n = self.shared
        self.assertEqual(emit(n, "evtest.nothing")[0], 201)
        r = [x for x in seen_topic(n, "all", "evtest.nothing") if x["topic"] == "evtest.nothing"]
        self.assertIsNone(r[0]["payload"])
        self.assertTrue(r[0]["body_is_payload"], r)

    def test_wildcards(self):
        n = self.shared
        for t in ("evtest.w1.done", "evtest.w1.x.done", "evtest", "evtest.w2.done", "evtest.w3"):
            self.assertEqual(emit(n, t)[0], 201, t)
        star = seen_topic(n, "star", "evtest.w2.done")
        self.assertEqual([r["topic"] for r in star if r["topic"].startswith("evtest.w")],
                         ["evtest.w1.done", "evtest.w2.done"])
        every = seen_topic(n, "all", "evtest.w3")
        self.assertEqual(
            [r["topic"] for r in every if r["topic"].startswith("evtest.w") or r["topic"] == "evtest"],
            ["evtest.w1.done", "evtest.w1.x.done", "evtest.w2.done", "evtest.w3"],
        )

    def test_private_topics(self):
        n = self.shared
        self.assertEqual(emit(n, "_evtest.secret", {"s": 1})[0], 201)
        got = seen_topic(n, "own", "_evtest.secret")
        self.assertEqual([r["payload"] for r in got if r["topic"] == "_evtest.secret"], [{"s": 1}])
        st, _, d = emit(n, "_other.secret")
        self.assertEqual((st, d["rc"]), (400, ZT_EINVAL))
        st, _, d = n.json("GET", "/evtest/checks")
        self.assertEqual(d["other_private"], ZT_EINVAL)

    def test_subscribe_errors(self):
        n = self.shared
        st, _, d = n.json("GET", "/evtest/checks")
        self.assertEqual(st, 200)
        self.assertEqual(d["duplicate"], ZT_EEXIST)
        for k in ("double_star_inside", "empty_word", "bad_char", "partial_star"):
            self.assertEqual(d[k], ZT_EINVAL, k)
        st, _, d = n.json("POST", "/evtest/late-on", {})
        self.assertEqual(d["rc"], ZT_ESTATE)

    def test_emit_errors(self):
        n = self.shared
        st, _, d = n.json("GET", "/evtest/emit-get")
        self.assertEqual((st, d["rc"]), (200, ZT_EREADONLY))
        for bad in ("evtest..x", "evtest.a b", "", ".evtest", "evtest.", "e" * 129, "evtest.*"):
            st, _, d = emit(n, bad)
            self.assertEqual((st, d["rc"]), (400, ZT_EINVAL), bad)
        st, _, d = n.json("POST", "/evtest/big", {})
        self.assertEqual(d["rc"], ZT_ETOOBIG)
        self.assertEqual(emit(n, "e" * 128)[0], 201)  # the longest topic
        self.assertEqual(emit(n, "evtest.errors.end")[0], 201)
        topics = [r["topic"] for r in seen_topic(n, "all", "evtest.errors.end")]
        self.assertNotIn("evtest.from-get", topics)
        self.assertNotIn("evtest.big", topics)

    def test_a_handler_can_emit(self):
        n = self.shared
        st, h, _ = emit(n, "evtest.chain.start", {"k": 7})
        self.assertEqual(st, 201)
        r = [x for x in seen_topic(n, "star", "evtest.chain.done") if x["topic"] == "evtest.chain.done"]
        self.assertEqual(len(r), 1)
        self.assertEqual((r[0]["payload"], r[0]["source"]), ({"k": 7}, "evtest"))
        self.assertNotEqual(r[0]["request_id"], h["x-request-id"])  # the delivery's own id
        self.assertEqual(len(r[0]["request_id"]), 26)

    def test_subscriber_changes_are_audited(self):
        n = self.shared
        self.assertEqual(emit(n, "evtest.audited", {"x": 1})[0], 201)
        rec = [x for x in seen_topic(n, "all", "evtest.audited") if x["topic"] == "evtest.audited"]
        self.assertEqual(len(rec), 1)

        def records():
            st, _, d = n.json("GET", "/audit?actor=system&limit=1000")
            self.assertEqual(st, 200, d)
            return [r for r in d["items"] if r.get("object") == "evtest.audited"]

        got = wait_for("the audit record", records)
        self.assertEqual(len(got), 1, got)  # one subscriber wrote: "all"
        r = got[0]
        self.assertEqual((r["actor"], r["actor_login"]), ("system", "system:evtest"))
        self.assertEqual((r["plugin"], r["action"], r["client"]),
                         ("evtest", "EVENT evtest.audited", "internal"))
        self.assertEqual(len(r["request_id"]), 26)
        st, _, v = n.json("GET", "/audit/verify")
        self.assertTrue(v["ok"], v)

    def test_a_failing_subscriber_is_retried_and_blocks_nobody(self):
        n = self.shared
        pat = "evtest.flaky"
        fails0 = sub_metric(n, "zt_bus_failures_total", pat)
        self.assertEqual(n.json("POST", "/evtest/flaky", {"fail": 2})[0], 200)
        self.assertEqual(emit(n, "evtest.flaky", {"try": 1})[0], 201)
        self.assertEqual(emit(n, "evtest.after-flaky")[0], 201)
        # While it waits: /metrics shows the failure, the backoff and the lag.
        wait_for("a failure in /metrics", lambda: (
            lambda m: m.get("zt_bus_failures_total", plugin="evtest", pattern=pat) > fails0 and
            m.get("zt_bus_retry_seconds", plugin="evtest", pattern=pat) >= 1 and
            m.get("zt_bus_subscriber_lag", plugin="evtest", pattern=pat) >= 1)(scrape(n)))
        got = wait_for("the flaky subscriber to succeed",
                       lambda: [r for r in seen(n, "flaky") if r["payload"] == {"try": 1}])
        self.assertEqual(len(got), 1, got)  # what the failed attempts wrote was rolled back
        self.assertEqual(got[0]["attempt"], 3)
        after = [r for r in seen_topic(n, "all", "evtest.after-flaky")
                 if r["topic"] == "evtest.after-flaky"]
        self.assertLess(after[0]["order"], got[0]["order"], "the failing subscriber held up another")
        m = scrape(n)
        self.assertEqual(m.get("zt_bus_failures_total", plugin="evtest", pattern=pat), fails0 + 2)
        self.assertEqual(m.get("zt_bus_retry_seconds", plugin="evtest", pattern=pat), 0)
        self.assertGreaterEqual(m.get("zt_bus_head_seq"), got[0]["seq"])

    def test_metrics_names(self):
        m = scrape(self.shared)
        for name in ("zt_bus_subscriber_lag", "zt_bus_deliveries_total", "zt_bus_failures_total",
                     "zt_bus_retry_seconds"):
            self.assertEqual(len(m.samples.get(name, [])), 4, name)  # every subscriber
        self.assertEqual(m.types["zt_bus_deliveries_total"], "counter")
        self.assertEqual(m.types["zt_bus_head_seq"], "gauge")
        # the transport carried events to the deliverer (not only the sweep's reads)
        self.assertGreater(m.get("zt_bus_transport_events_total"), 0)
        self.assertLessEqual(m.get("zt_bus_transport_events_total"), m.get("zt_bus_head_seq"))


class Restarts(NodeTest):
    def pending(self, n, tag):
        """Emit an event that the flaky subscriber keeps failing: pending in the outbox."""
        self.assertEqual(n.json("POST", "/evtest/flaky", {"fail": 1000})[0], 200)
        self.assertEqual(emit(n, "evtest.flaky", {"tag": tag})[0], 201)
        wait_for("the first failure", lambda: sub_metric(n, "zt_bus_failures_total",
                                                          "evtest.flaky") >= 1)
        self.assertEqual(seen(n, "flaky"), [])

    def delivered_once(self, n, tag):
        got = wait_for("delivery after the restart", lambda: seen(n, "flaky"))
        self.assertEqual([r["payload"] for r in got], [{"tag": tag}])
        self.assertEqual(got[0]["attempt"], 1)  # this process's first attempt

    def test_kill9_with_a_pending_event(self):
        n = evnode(self)
        self.pending(n, "k9")
        n.kill9()
        n.start()
        self.delivered_once(n, "k9")

    def test_sigterm_with_a_pending_event(self):
        n = evnode(self)
        self.pending(n, "term")
        self.assertEqual(n.stop(), 0)
        n.start()
        self.delivered_once(n, "term")

    def test_an_administrator_skips_the_event_a_subscriber_fails_on_for_good(self):
        n = evnode(self)
        self.pending(n, "poison")
        self.assertEqual(emit(n, "evtest.flaky", {"tag": "next"})[0], 201)
        st, _, bus = n.json("GET", "/admin/bus")
        self.assertEqual(st, 200, bus)
        sub = [x for x in bus["subscribers"] if x["subscriber"] == "evtest evtest.flaky"][0]
        failing = sub["failing"]
        self.assertEqual(failing["topic"], "evtest.flaky")
        self.assertGreaterEqual(failing["attempts"], 1)
        self.assertTrue([x for x in bus["subscribers"] if x["failing"] is None])
        # only the event it fails on, named: not a later one, not another subscriber's
        for body, want in (({"subscriber": "evtest evtest.flaky", "seq": failing["seq"] + 1}, 409),
                           ({"subscriber": "evtest evtest.*", "seq": failing["seq"]}, 404),
                           ({"subscriber": "evtest evtest.flaky"}, 422)):
            st, h, b = n.request("POST", "/admin/bus/skip", body)
            self.assertProblem(st, h, b, want)
        self.assertEqual(n.json("POST", "/evtest/flaky", {"fail": 0})[0], 200)
        st, _, b = n.request("POST", "/admin/bus/skip",
                             {"subscriber": "evtest evtest.flaky", "seq": failing["seq"]})
        self.assertEqual(st, 204, b)
        got = wait_for("the next event", lambda: seen(n, "flaky"))
        self.assertEqual([r["payload"] for r in got], [{"tag": "next"}])
        st, _, log = n.json("GET", "/audit?plugin=core&limit=1000")
        self.assertIn("skip event", [r["action"] for r in log["items"]])
        # and it stays skipped across a restart
        n.stop()
        n.start()
        self.assertEqual([r["payload"] for r in seen(n, "flaky")], [{"tag": "next"}])

    def test_a_new_subscriber_starts_at_the_newest_event(self):
        n = evnode(self, options="evtest = { late = false }")
        self.assertEqual(emit(n, "evtest.late.before")[0], 201)
        seen_topic(n, "all", "evtest.late.before")
        self.assertEqual(n.stop(), 0)
        n._conf_text = n._conf_text.replace("late = false", "late = true")
        n._write_conf()
        n.start()
        self.assertEqual(emit(n, "evtest.late.after")[0], 201)
        got = seen_topic(n, "late", "evtest.late.after")
        self.assertEqual([r["topic"] for r in got], ["evtest.late.after"])
        # and its position survives a restart: nothing is delivered twice
        self.assertEqual(emit(n, "evtest.late.third")[0], 201)
        n.kill9()
        n.start()
        self.assertEqual(emit(n, "evtest.late.fourth")[0], 201)
        got = seen_topic(n, "late", "evtest.late.fourth")
        self.assertEqual([r["topic"] for r in got],
                         ["evtest.late.after", "evtest.late.third", "evtest.late.fourth"])


if __name__ == "__main__":
    unittest.main()
