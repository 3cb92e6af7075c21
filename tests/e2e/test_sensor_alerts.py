# test_sensor_alerts.py: the sensor plugin's alert rules (Lua): hysteresis, rate, offline, check.
import os
import shutil
import tempfile
import time
import unittest

from test_sensor import SECOND, Sensor, rfc3339
from test_sensor_inputs import wait_for
from ztnode import NodeTest, lua_tree_with

RULES = r'''
return {
  { name = "level-high", property = "water level", level = "warning",
    threshold = { above = 5.0, clear = 4.5 } },
  { name = "level-low", property = "water level", level = "notice",
    threshold = { below = 1.0 } },
  { name = "slope-rate", property = "displacement", level = "critical",
    rate = { above = 5, clear = 2, window = 3600, per = 3600 } },   -- mm per hour
  { name = "silent", property = "displacement", level = "warning",
    offline = { intervals = 3 } },
  { name = "custom", stream = %(custom)d,
    check = function(o) if o.value == "alarm" then return "critical" end end },
}
'''

# A subscriber to sensor.alert that keeps what it receives, to be read back.
WATCH_MANIFEST = 'return { version = "1.0.0", description = "sensor.alert watcher" }\n'
WATCH_INIT = r'''
local seen = zt.db.open("seen")
zt.on("sensor.alert", function(ev)
  seen:put(string.format("%016d", ev.seq), ev.payload)
end)
zt.route("GET", "/watch", { role = "public" }, function(req)
  local out = zt.json.array()
  for _, v in seen:iter() do out[#out + 1] = v end
  return 200, out
end)
'''


class AlertsTest(NodeTest):
    def start(self, custom_stream=6, options="", rules=None):
        d = tempfile.mkdtemp(prefix="zt-rules-")
        self.addCleanup(shutil.rmtree, d, True)
        lua_tree_with(d, {"watch": (WATCH_MANIFEST, WATCH_INIT)})
        os.makedirs(os.path.join(d, "sensor"), exist_ok=True)
        with open(os.path.join(d, "sensor", "rules.lua"), "w") as f:
            f.write(rules if rules is not None else RULES % {"custom": custom_stream})
        n = self.node(plugins=("sensor", "watch"), lua_dir=d, options="sensor = { check_every = 1, %s }" % options,
                      roles=("sensor_admin",), env={"ZT_TEST_CLOCK": "1"})
        return n, Sensor(n)

    def alerts(self, n, **q):
        qs = "&".join("%s=%s" % kv for kv in q.items())
        st, _, d = n.json("GET", "/sensor/alerts?" + qs)
        self.assertEqual(st, 200, d)
        return d["items"]

    def watched(self, n):
        st, _, d = n.json("GET", "/watch", auth=False)
        self.assertEqual(st, 200, d)
        return d

    def write(self, n, key, body):
        st, _, b = n.request("POST", "/api/v2/write?bucket=b&precision=s", body,
                             {"Authorization": "Token " + key}, auth=False)
        self.assertEqual(st, 204, b)

    def test_threshold_hysteresis_rate_and_custom(self):
        n, s = self.start()
        dev, key = s.device("gauge")
        tid = s.thing("Bridge gauge", 28.1, 118.9)
        level = s.stream(tid, "water", "level", devices=[dev], observed_property="water level")
        slope = s.stream(tid, "slope", "mm", devices=[dev], observed_property="displacement")
        for i in range(3):
            s.stream(tid, "pad", "f%d" % i)  # custom rule's stream is id 6
        custom = s.stream(tid, "state", "text", devices=[dev])
        self.assertEqual(custom, 6)
        t0 = 1700000000
        # 4.0 → 5.5 opens; 4.8 (between clear and limit) keeps it open; 5.9 does not open a
        # second one; 4.4 closes it; 5.1 opens a new one
        seq = [4.0, 5.5, 4.8, 5.9, 4.4, 5.1]
        self.write(n, key, "".join("water level=%s %d\n" % (v, t0 + 60 * i) for i, v in enumerate(seq)))
        high = [a for a in self.alerts(n) if a["rule"] == "level-high"]
        self.assertEqual(len(high), 2, high)
        newer, older = high
        self.assertEqual((older["start"], older["end"], older["value"], older["level"]),
                         (rfc3339((t0 + 60) * SECOND), rfc3339((t0 + 240) * SECOND), 5.5, "warning"))
        self.assertEqual((newer["start"], newer["end"]), (rfc3339((t0 + 300) * SECOND), None))
        self.assertEqual(newer["location"], {"lat": 28.1, "lon": 118.9})
        self.assertEqual(newer["thing"], tid)
        self.assertEqual([a["id"] for a in self.alerts(n, state="open")
                          if a["rule"] == "level-high"], [newer["id"]])
        # below-threshold rule without hysteresis
        self.write(n, key, "water level=0.5 %d\nwater level=1.2 %d\n" % (t0 + 400, t0 + 460))
        low = [a for a in self.alerts(n) if a["rule"] == "level-low"]
        self.assertEqual([(a["start"], a["end"]) for a in low],
                         [(rfc3339((t0 + 400) * SECOND), rfc3339((t0 + 460) * SECOND))])
        # displacement: 1 mm per hour for two hours, then 6 mm in 10 minutes
        pts = [(t0 + 600 * i, 10 + i / 6) for i in range(13)]
        self.write(n, key, "".join("slope mm=%r %d\n" % (v, t) for t, v in pts))
        self.assertEqual([a for a in self.alerts(n) if a["rule"] == "slope-rate"], [])
        t1, v1 = pts[-1]
        self.write(n, key, "slope mm=%r %d\n" % (v1 + 6, t1 + 600))
        rate = [a for a in self.alerts(n) if a["rule"] == "slope-rate"]
        self.assertEqual(len(rate), 1, rate)
        self.assertEqual(rate[0]["level"], "critical")
        # the rate over the hour before: (v1 + 1.5 - v(t1+600-3600)) / 1 h, computed here
        base = dict(pts)[t1 + 600 - 3600]
        self.assertAlmostEqual(rate[0]["rate"], (v1 + 6 - base) / 1.0, places=6)
        # a custom check in Lua
        self.write(n, key, 'state text="ok" %d\nstate text="alarm" %d\n' % (t0, t0 + 1))
        c = [a for a in self.alerts(n) if a["rule"] == "custom"]
        self.assertEqual([(a["level"], a["value"]) for a in c], [("critical", "alarm")])
        # acknowledging
        st, _, d = n.json("POST", "/sensor/alerts/%s/ack" % c[0]["id"], {})
        self.assertEqual((st, d["acked"], d["acked_by"]), (200, True, "admin"))
        st, _, d = n.json("POST", "/sensor/alerts/%s/ack" % c[0]["id"], {})
        self.assertEqual(st, 409)
        st, _, _ = n.request("POST", "/sensor/alerts/%s/ack" % c[0]["id"], {}, {"Authorization": "Bearer " + key}, auth=False)
        self.assertEqual(st, 403)
        # every opening and closing went out on the bus, with the location
        want = sorted((a["id"], "open") for a in self.alerts(n)) + sorted(
            (a["id"], "closed") for a in self.alerts(n) if a["end"])
        got = wait_for("the events", lambda: len(self.watched(n)) >= len(want) and self.watched(n))
        self.assertEqual(sorted((e["id"], e["state"]) for e in got), sorted(want))
        self.assertTrue(all(e["location"] == {"lat": 28.1, "lon": 118.9} for e in got))

    def test_offline_after_n_intervals_and_back(self):
        n, s = self.start()
        dev, key = s.device("slope")
        tid = s.thing("Slope 9", 29.0, 119.0)
        sid = s.stream(tid, "slope", "mm", devices=[dev], observed_property="displacement",
                       expected_interval=600)
        self.write(n, key, "slope mm=1 %d\n" % int(time.time()))
        time.sleep(2.5)  # a few checks: within 3 intervals nothing happens
        self.assertEqual([a for a in self.alerts(n) if a["rule"] == "silent"], [])
        n.set_clock(31 * 60 * 1000)  # 31 minutes later: more than 3 × 10 minutes of silence
        n.sign_in()  # the session went idle meanwhile
        got = wait_for("the offline alert", lambda: [a for a in self.alerts(n) if a["rule"] == "silent"])
        self.assertEqual(len(got), 1)
        self.assertIsNone(got[0]["end"])
        self.assertGreater(got[0]["measure"], 30 * 60)
        time.sleep(2.5)  # still one, not one per check
        self.assertEqual(len([a for a in self.alerts(n) if a["rule"] == "silent"]), 1)
        # data again: the alert ends
        self.write(n, key, "slope mm=1.1 %d\n" % (int(time.time()) + 31 * 60))
        a = [a for a in self.alerts(n) if a["rule"] == "silent"][0]
        self.assertIsNotNone(a["end"])

    def test_silence_is_judged_by_when_points_arrive_not_by_their_dates(self):
        # A device whose clock is far ahead (accepted here: the margin is as wide as it
        # goes) sends one point dated 2099, then nothing. It is silent from when that point
        # arrived, by the node's clock; that time is on disk, so a restart does not reset it.
        n, s = self.start(options="future_margin = 9223372036")
        dev, key = s.device("ahead")
        sid = s.stream(s.thing("Slope 12", 29.1, 119.1), "slope", "mm", devices=[dev],
                       observed_property="displacement", expected_interval=600)
        n.set_clock(-40 * 60 * 1000)  # the point arrives 40 minutes before the restart below
        st, _, d = n.request("POST", "/sensor/observations",
                             {"observations": [{"stream": sid, "time": "2099-01-01T00:00:00Z", "value": 1}]},
                             {"Authorization": "Bearer " + key}, auth=False)
        self.assertEqual(st, 200, d)
        n.restart()  # the clock is the real one again: 40 minutes, more than 3 × 10, later
        n.sign_in()
        got = wait_for("the offline alert", lambda: [a for a in self.alerts(n) if a["rule"] == "silent"])
        self.assertEqual([(a["stream"], a["end"]) for a in got], [(sid, None)])
        self.assertGreaterEqual(got[0]["measure"], 40 * 60)
        # it speaks again: the alert ends
        self.write(n, key, "slope mm=2 %d\n" % int(time.time()))
        self.assertIsNotNone([a for a in self.alerts(n) if a["rule"] == "silent"][0]["end"])

    def test_every_rule_of_a_stream_applies_however_many(self):
        # 20 thresholds on one property (a county's warning ladder): each opens its alert,
        # not only the first 16
        rules = "return {\n%s}\n" % "".join(
            '  { name = "step-%02d", property = "displacement", threshold = { above = %d } },\n' % (i, i)
            for i in range(1, 21))
        n, s = self.start(rules=rules)
        dev, key = s.device("ladder")
        sid = s.stream(s.thing(), "slope", "mm", devices=[dev], observed_property="displacement")
        self.write(n, key, "slope mm=18.5 1700000000\n")
        got = sorted(a["rule"] for a in self.alerts(n, stream=sid))
        self.assertEqual(got, ["step-%02d" % i for i in range(1, 19)])

    def test_deleting_a_stream_closes_its_open_alerts_saying_why(self):
        # a station taken down while in alarm: its alerts end (and go out on the bus, so a
        # grid case opened from one hears of it), instead of staying open for good
        n, s = self.start(custom_stream=1)
        dev, key = s.device("gone")
        tid = s.thing("River 4", 28.0, 119.0)
        level = s.stream(tid, "water", "level", devices=[dev], observed_property="water level")
        other = s.stream(tid, "water2", "level", devices=[dev], observed_property="water level")
        self.assertEqual(level, 1)  # the custom rule's stream
        self.write(n, key, 'water level=5.5 1700000000\nwater level="alarm" 1700000060\nwater2 level=5.5 1700000060\n')
        opened = self.alerts(n, stream=level, state="open")
        self.assertEqual(sorted(a["rule"] for a in opened), ["custom", "level-high"])
        st, _, _ = n.request("DELETE", "/sensor/streams/%d" % level)
        self.assertEqual(st, 204)
        got = self.alerts(n, stream=level)
        self.assertEqual(sorted((a["rule"], a["reason"]) for a in got),
                         [("custom", "datastream deleted"), ("level-high", "datastream deleted")])
        self.assertTrue(all(a["end"] for a in got))
        self.assertEqual(self.alerts(n, stream=level, state="open"), [])
        # the other stream's alert is untouched
        self.assertEqual([(a["rule"], a["end"]) for a in self.alerts(n, stream=other)], [("level-high", None)])
        closed = wait_for("the closings", lambda: [e for e in self.watched(n) if e["state"] == "closed"][1:] and
                          [e for e in self.watched(n) if e["state"] == "closed"])
        self.assertEqual(sorted((e["id"], e["reason"]) for e in closed),
                         sorted((a["id"], "datastream deleted") for a in got))


if __name__ == "__main__":
    unittest.main()
