# test_timers.py: durable timers over the real binary: firing by the movable clock, cancel,
# failed requests, restarts, a burst, and a million pending timers in little memory.
import os
import time
import unittest

from ztnode import NodeTest, env, scrape

TEST_CLOCK = {"ZT_TEST_CLOCK": "1"}
WAIT = 20.0  # seconds at most for a firing to reach the subscriber (never a timing assertion)
HOUR = 3600 * 1000


def test_plugins():
    return os.path.join(env("ZT_BUILD"), "tests", "plugins")


def timers_node(test, **kw):
    return test.node(
        plugins=("timertest", "timerother"),
        plugin_dir=test_plugins(),
        sign_in=False,
        env=TEST_CLOCK,
        **kw
    )


def set_timer(node, **body):
    st, _, d = node.json("POST", "/timertest/set", body)
    if st != 201:
        raise AssertionError("setting a timer answered %d %r" % (st, d))
    return d["id"]


def fired(node):
    st, _, d = node.json("GET", "/timertest/fired")
    assert st == 200, (st, d)
    return d["items"]


def wait_fired(node, count, timeout=WAIT):
    """The subscriber's records once there are at least count (fails after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        items = fired(node)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def pending(node):
    return scrape(node).get("zt_timers_pending")


class Timers(NodeTest):
    def test_moving_the_clock_fires_due_timers_in_order(self):
        n = timers_node(self)
        late = set_timer(n, in_ms=2 * HOUR, payload={"n": 2})
        early = set_timer(n, in_ms=HOUR, payload={"n": 1})
        never = set_timer(n, in_ms=5 * HOUR, payload={"n": 3})
        self.assertEqual(pending(n), 3)
        self.assertEqual(fired(n), [])
        n.set_clock(3 * HOUR)
        items = wait_fired(n, 2)
        self.assertEqual(
            items,
            [
                {"timer": early, "topic": "_timertest.due", "source": "timertest", "payload": {"n": 1}},
                {"timer": late, "topic": "_timertest.due", "source": "timertest", "payload": {"n": 2}},
            ],
        )
        m = scrape(n)
        self.assertEqual(m.get("zt_timers_pending"), 1)
        self.assertEqual(m.get("zt_timers_fired_total"), 2)
        # the next one is the 5-hour timer, 2 hours ahead of the moved clock
        self.assertGreater(m.get("zt_timers_next_due_seconds"), 3600)
        self.assertLessEqual(m.get("zt_timers_next_due_seconds"), 7200)
        # a timer in the past fires at once, without moving the clock
        past = set_timer(n, in_ms=-HOUR, payload=None)
        items = wait_fired(n, 3)
        self.assertEqual(items[2], {"timer": past, "topic": "_timertest.due", "source": "timertest", "payload": None})
        self.assertNotIn(never, [i["timer"] for i in fired(n)])

    def test_firing_is_audited(self):
        n = timers_node(self)
        tid = set_timer(n, in_ms=-1, topic="_timertest.audited")
        wait_fired(n, 1)
        n.sign_in(("auditor",))
        st, _, d = n.json("GET", "/audit?limit=1000&object=" + tid)
        self.assertEqual(st, 200, d)
        recs = d["items"]
        self.assertEqual(len(recs), 1, d)
        self.assertEqual(recs[0]["action"], "TIMER _timertest.audited")
        self.assertEqual(recs[0]["plugin"], "timertest")
        self.assertEqual(recs[0]["actor"], "system")

    def test_cancel(self):
        n = timers_node(self)
        a = set_timer(n, in_ms=HOUR, payload="a")
        b = set_timer(n, in_ms=HOUR, payload="b")
        # another plugin cannot cancel it: to it the timer does not exist
        st, _, d = n.json("POST", "/timerother/cancel", {"id": a})
        self.assertEqual(st, 404, d)
        st, _, _ = n.request("POST", "/timertest/cancel", {"id": a})
        self.assertEqual(st, 204)
        st, _, d = n.json("POST", "/timertest/cancel", {"id": a})
        self.assertEqual(st, 404, d)
        self.assertEqual(pending(n), 1)
        n.set_clock(2 * HOUR)
        items = wait_fired(n, 1)
        self.assertEqual([i["timer"] for i in items], [b])
        # b has fired: nothing left to cancel
        st, _, d = n.json("POST", "/timertest/cancel", {"id": b})
        self.assertEqual(st, 404, d)
        self.assertEqual(pending(n), 0)

    def test_a_failed_request_sets_no_timer(self):
        n = timers_node(self)
        st, _, d = n.json("POST", "/timertest/set", {"in_ms": HOUR, "fail": True})
        self.assertEqual(st, 422, d)
        self.assertEqual(pending(n), 0)
        ok = set_timer(n, in_ms=2 * HOUR)
        n.set_clock(3 * HOUR)
        items = wait_fired(n, 1)
        self.assertEqual([i["timer"] for i in items], [ok])
        self.assertEqual(pending(n), 0)

    def test_refused_topics(self):
        n = timers_node(self)
        for topic in ("_timerother.x", "a..b", "", "has space"):
            st, _, d = n.json("POST", "/timertest/set", {"in_ms": 1, "topic": topic})
            self.assertEqual((st, d["error"]), (422, -3), topic)  # ZT_EINVAL
        self.assertEqual(pending(n), 0)

    def test_due_while_down_fires_once_after_the_start(self):
        n = timers_node(self)
        # with the clock an hour behind, set a timer half an hour ahead of it: once the
        # node restarts with the real clock, it fell due while the node was down
        n.set_clock(-HOUR)
        tid = set_timer(n, in_ms=HOUR // 2, payload={"down": True})
        later = set_timer(n, in_ms=3 * HOUR)
        self.assertEqual(fired(n), [])
        n.stop()
        n.start()
        items = wait_fired(n, 1)
        self.assertEqual(items, [{"timer": tid, "topic": "_timertest.due", "source": "timertest", "payload": {"down": True}}])
        n.restart()
        self.assertEqual(fired(n), items)
        self.assertEqual(pending(n), 1)
        self.assertNotIn(later, [i["timer"] for i in fired(n)])

    def test_a_burst_fires_over_several_passes_in_order(self):
        n = timers_node(self)
        st, _, d = n.json("POST", "/timertest/bulk", {"n": 2500, "in_ms": HOUR, "step_ms": 0})
        self.assertEqual(st, 201, d)
        self.assertEqual(pending(n), 2500)
        n.set_clock(2 * HOUR)
        items = wait_fired(n, 2500, timeout=60)
        self.assertEqual(len(items), 2500)
        # equal due times fire in the order they were set
        self.assertEqual([i["payload"]["i"] for i in items], list(range(2500)))
        self.assertEqual(pending(n), 0)
        self.assertEqual(scrape(n).get("zt_timers_fired_total"), 2500)


# Under the sanitizers (scripts/test --sanitize sets ASAN_OPTIONS) memory is not the
# program's: ASan keeps freed blocks in quarantine and shadows every allocation. There the
# test still sets and fires many timers, fewer of them, and leaves memory to the plain run.
SANITIZED = "ASAN_OPTIONS" in os.environ
MILLION = int(os.environ.get("ZT_TIMERS_MILLION", "200000" if SANITIZED else "1000000"))
CHUNK = 10000


class ManyPending(NodeTest):
    """A million pending timers (ZT_TIMERS_MILLION sets another number) cost their records
    in LMDB, not memory.

    Memory is the process's own (anonymous) resident memory, read from /proc: the resident
    size that /metrics shows also counts pages of the database file that the kernel maps
    around each page LMDB reads (fault-around), page cache that is the records themselves;
    that part is only checked to stay well under the records' size."""

    def check_memory(self, n, m, anon0, rss0, used):
        if SANITIZED:
            return
        self.assertLess(anon_kib(n) - anon0, 20 << 10, "own memory grew (KiB)")
        self.assertLess(m.get("zt_process_resident_memory_bytes") - rss0, used / 4)

    def test_many_pending_timers(self):
        n = timers_node(self, start=False)
        # room for the records: the harness's map is 64 MiB
        n._conf_text = n._conf_text.replace("map_size = %d" % (64 << 20), "map_size = %d" % (2 << 30))
        n._write_conf()
        n.start()
        base = int(n.set_clock(0)["now"]) + 24 * HOUR
        rss0 = scrape(n).get("zt_process_resident_memory_bytes")
        anon0 = anon_kib(n)
        for first in range(0, MILLION, CHUNK):
            st, _, d = n.json(
                "POST",
                "/timertest/bulk",
                {"n": CHUNK, "due_ms": base + first * 1000, "step_ms": 1000, "first": first},
            )
            self.assertEqual(st, 201, d)
        m = scrape(n)
        self.assertEqual(m.get("zt_timers_pending"), MILLION)
        used = m.get("zt_lmdb_used_bytes")
        self.assertGreater(used, MILLION * 100)  # the records are there: over 100 bytes each
        self.check_memory(n, m, anon0, rss0, used)
        # one more, earlier than all of them, set last: it fires first
        early = set_timer(n, due_ms=base - 10000, payload={"i": -1})
        move_clock_to(n, base - 5000)
        items = wait_fired(n, 1)
        self.assertEqual([i["timer"] for i in items], [early])
        # then the first five of the others, in order (one second apart)
        move_clock_to(n, base + 4500)
        items = wait_fired(n, 6)
        self.assertEqual([i["payload"]["i"] for i in items], [-1, 0, 1, 2, 3, 4])
        m = scrape(n)
        self.assertEqual(m.get("zt_timers_pending"), MILLION - 5)
        self.check_memory(n, m, anon0, rss0, used)


def anon_kib(node):
    """The node's anonymous resident memory (KiB): its heap and stacks, not mapped files."""
    with open("/proc/%d/status" % node.proc.pid) as f:
        for ln in f:
            if ln.startswith("RssAnon:"):
                return int(ln.split()[1])
    raise AssertionError("no RssAnon in /proc/%d/status" % node.proc.pid)


def move_clock_to(node, t):
    """Set the node's clock to about t (ms since 1970; off by the time of one request)."""
    real = int(node.set_clock(0)["now"])
    node.set_clock(t - real)


if __name__ == "__main__":
    unittest.main()
