# test_sensor.py: the sensor plugin over real HTTP: registry, line protocol, JSON, queries.
import gzip
import json
import math
import random
import threading
import time
import unittest
import urllib.parse

from ztnode import NodeTest

SECOND = 10**9
OPTIONS = 'sensor = { ignore_tags = { "host" }, retention_every = 0 }'


def token(key):
    return {"Authorization": "Token " + key}


class Sensor:
    """Helpers over one node signed in as a sensor administrator."""

    def __init__(self, node):
        self.n = node

    def thing(self, name="station", lat=30.25, lon=120.1):
        st, _, d = self.n.json("POST", "/sensor/things", {"name": name, "location": {"lat": lat, "lon": lon}})
        assert st == 201, (st, d)
        return d["id"]

    def stream(self, thing, measurement, field, tags=None, devices=(), **extra):
        body = dict(thing=thing, name=measurement + "." + field, measurement=measurement, field=field,
                    tags=tags or {}, devices=list(devices), **extra)
        st, _, d = self.n.json("POST", "/sensor/streams", body)
        assert st == 201, (st, d)
        return d["id"]

    def device(self, name):
        st, _, d = self.n.json("POST", "/admin/keys", {"name": name, "plugin": "sensor", "role": "sensor_device"})
        assert st == 201, (st, d)
        return d["id"], d["key"]

    def write_v2(self, key, body, precision=None, headers=None, bucket="b"):
        q = {"org": "o", "bucket": bucket}
        if precision:
            q["precision"] = precision
        h = dict(token(key))
        h.update(headers or {})
        return self.n.request("POST", "/api/v2/write?" + urllib.parse.urlencode(q), body, h, auth=False)

    def obs(self, sid, **q):
        q.setdefault("limit", 10000)
        st, _, d = self.n.json("GET", "/sensor/streams/%d/observations?%s" % (sid, urllib.parse.urlencode(q)))
        assert st == 200, (st, d)
        return d

    def values(self, sid):
        return [(o["time"], o["value"]) for o in self.obs(sid)["observations"]]


def parse_time(text):
    """ns since 1970 of the node's RFC 3339 UTC text, computed here."""
    import calendar
    head, _, frac = text.rstrip("Z").partition(".")
    s = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return s * SECOND + int((frac + "000000000")[:9])


def rfc3339(ns):
    """RFC 3339 as the node writes it (no trailing zeros in the fraction), computed here."""
    s, frac = divmod(ns, SECOND)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    if frac:
        text += ("." + "%09d" % frac).rstrip("0")
    return text + "Z"


class RegistryTest(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("sensor",), options=OPTIONS, roles=("sensor_admin",))
        cls.s = Sensor(cls.shared)

    def test_things_and_streams(self):
        n, s = self.shared, self.s
        tid = s.thing("Landslide station 3", 29.5, 119.7)
        st, _, t = n.json("GET", "/sensor/things/" + tid)
        self.assertEqual((st, t["name"], t["location"]), (200, "Landslide station 3", {"lat": 29.5, "lon": 119.7}))
        sid = s.stream(tid, "displacement", "mm", {"point": "P1"}, unit="mm", expected_interval=60,
                       observed_property="slope displacement")
        st, _, d = n.json("GET", "/sensor/streams/%d" % sid)
        self.assertEqual(st, 200)
        self.assertEqual((d["unit"], d["expected_interval"], d["tags"], d["thing"]), ("mm", 60, {"point": "P1"}, tid))
        # the same series twice is refused
        st, _, d = n.json("POST", "/sensor/streams", {"thing": tid, "name": "x", "measurement": "displacement",
                                                      "field": "mm", "tags": {"point": "P1"}})
        self.assertEqual(st, 409, d)
        # an ignored tag cannot be part of a series
        st, _, d = n.json("POST", "/sensor/streams", {"thing": tid, "name": "x", "measurement": "m",
                                                      "field": "f", "tags": {"host": "a"}})
        self.assertEqual(st, 422, d)
        st, _, d = n.json("PATCH", "/sensor/streams/%d" % sid, {"unit": "cm", "retention_days": 30})
        self.assertEqual((st, d["unit"], d["retention_days"]), (200, "cm", 30))
        st, _, d = n.json("PATCH", "/sensor/streams/%d" % sid, {"field": "other"})
        self.assertEqual(st, 422, d)
        # a thing with streams is not deleted
        st, _, d = n.json("DELETE", "/sensor/things/" + tid)
        self.assertEqual(st, 409, d)
        st, _, d = n.json("GET", "/sensor/streams?thing=" + tid)
        self.assertEqual([x["id"] for x in d["items"]], [sid])

    def test_list_pages(self):
        n, s = self.shared, self.s
        tid = s.thing("paged")
        ids = [s.stream(tid, "paged", "f%d" % i) for i in range(5)]
        got, after = [], None
        while True:
            q = "?thing=%s&limit=2" % tid + ("&after=" + after if after else "")
            st, _, d = n.json("GET", "/sensor/streams" + q)
            self.assertEqual(st, 200, d)
            self.assertLessEqual(len(d["items"]), 2)
            got += [x["id"] for x in d["items"]]
            after = d["next"]
            if after is None:
                break
        self.assertEqual(got, ids)

    def test_only_the_administrator_manages(self):
        n, s = self.shared, self.s
        _, key = s.device("not-an-admin")
        st, _, _ = n.request("POST", "/sensor/things", {"name": "x"}, {"Authorization": "Bearer " + key}, auth=False)
        self.assertEqual(st, 403)
        st, _, _ = n.request("POST", "/sensor/things", {"name": "x"}, auth=False)
        self.assertEqual(st, 401)


class IngestTest(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("sensor",), options=OPTIONS, roles=("sensor_admin",))
        cls.s = Sensor(cls.shared)
        cls.tid = cls.s.thing()

    def setUp(self):
        super().setUp()
        self.dev, self.key = self.s.device("gauge-%d" % random.randrange(10**9))

    def test_v2_types_escapes_and_precision(self):
        s = self.s
        m = "weather station"  # a measurement with a space, escaped on the wire
        ids = {f: s.stream(self.tid, m, f, {"loc": "north,east"}, devices=[self.dev]) for f in ("temp", "count", "big", "note", "ok")}
        body = ('weather\\ station,loc=north\\,east,host=box1 temp=21.5,count=-3i,big=18446744073709551615u,'
                'note="say \\"hi\\"",ok=T 1700000000\n'
                "# a comment\n\n"
                "weather\\ station,host=box2,loc=north\\,east temp=-0.25 1700000001\n")
        st, h, b = s.write_v2(self.key, body, precision="s")
        self.assertEqual(st, 204, b)
        self.assertEqual(s.values(ids["temp"]), [(rfc3339(1700000000 * SECOND), 21.5), (rfc3339(1700000001 * SECOND), -0.25)])
        self.assertEqual(s.values(ids["count"]), [(rfc3339(1700000000 * SECOND), -3)])
        self.assertEqual(s.values(ids["big"]), [(rfc3339(1700000000 * SECOND), 18446744073709551615)])
        self.assertEqual(s.values(ids["note"]), [(rfc3339(1700000000 * SECOND), 'say "hi"')])
        self.assertEqual(s.values(ids["ok"]), [(rfc3339(1700000000 * SECOND), True)])
        for prec, mult in (("ns", 1), ("us", 1000), ("ms", 10**6)):
            sid = s.stream(self.tid, "prec_" + prec, "v", devices=[self.dev])
            st, _, b = s.write_v2(self.key, "prec_%s v=1 1700000000123" % prec, precision=prec)
            self.assertEqual(st, 204, b)
            self.assertEqual(s.values(sid), [(rfc3339(1700000000123 * mult), 1)])

    def test_no_timestamp_takes_the_node_time(self):
        s = self.s
        sid = s.stream(self.tid, "now", "v", devices=[self.dev])
        before = time.time_ns()
        st, _, b = s.write_v2(self.key, "now v=1")
        after = time.time_ns()
        self.assertEqual(st, 204, b)
        st, _, d = self.shared.json("GET", "/sensor/streams/%d/latest" % sid)
        obs = s.obs(sid, format="json")["observations"]
        self.assertEqual(len(obs), 1)
        self.assertEqual(d["value"], 1)
        t = obs[0]["time"]
        # the node's clock is ms: the time is within the request, to the millisecond
        self.assertTrue(before // 10**6 * 10**6 <= parse_time(t) <= after, (before, t, after))

    def test_v1_write_and_gzip(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "rain", "mm", {"gauge": "g1"}, devices=[self.dev])
        lines = "".join("rain,gauge=g1 mm=%d.5 %d\n" % (i, 1600000000 + i) for i in range(500))
        st, _, b = n.request("POST", "/write?db=county&precision=s", gzip.compress(lines.encode()),
                             dict(token(self.key), **{"Content-Encoding": "gzip"}), auth=False)
        self.assertEqual(st, 204, b)
        vals = s.values(sid)
        self.assertEqual(len(vals), 500)
        self.assertEqual(vals[7], (rfc3339((1600000000 + 7) * SECOND), 7.5))
        # v1 errors are {"error": ...}
        st, _, b = n.request("POST", "/write?db=county", "rain,gauge=g1 mm=", token(self.key), auth=False)
        self.assertEqual(st, 400)
        d = json.loads(b)
        self.assertIn("line 1", d["error"])
        # a database is required, a bad gzip body is refused
        st, _, b = n.request("POST", "/write", "rain,gauge=g1 mm=1", token(self.key), auth=False)
        self.assertEqual(st, 400, b)
        st, _, b = s.write_v2(self.key, b"\x1f\x8b not really gzip", headers={"Content-Encoding": "gzip"})
        self.assertEqual(st, 400, b)
        self.assertEqual(json.loads(b)["code"], "invalid")
        self.assertEqual(len(s.values(sid)), 500)

    def test_gzip_bomb_is_refused(self):
        # 200 MB of zeros is a small body; the node stops inflating at max_inflated
        bomb = gzip.compress(b"0" * (200 << 20), 9)
        self.assertLess(len(bomb), 1 << 20)
        st, _, b = self.s.write_v2(self.key, bomb, headers={"Content-Encoding": "gzip"})
        self.assertEqual(st, 413, b)
        self.assertEqual(json.loads(b)["code"], "request too large")

    def test_bad_line_rejects_the_whole_batch(self):
        s = self.s
        sid = s.stream(self.tid, "level", "m", devices=[self.dev])
        body = "level m=1 1\nlevel m=2 2\nlevel m=two 3\nlevel m=4 4\n"
        st, h, b = s.write_v2(self.key, body)
        self.assertEqual(st, 400, b)
        self.assertTrue(h["content-type"].startswith("application/json"))
        d = json.loads(b)
        self.assertEqual(d["code"], "invalid")
        self.assertEqual(d["line"], 3)
        self.assertIn("line 3", d["message"])
        self.assertIn("level m=two 3", d["message"])
        self.assertEqual(s.values(sid), [])
        # and the same batch, corrected, goes in whole
        st, _, b = s.write_v2(self.key, body.replace("two", "3"))
        self.assertEqual(st, 204, b)
        self.assertEqual([v for _, v in s.values(sid)], [1, 2, 3, 4])

    def test_bad_precision_and_missing_bucket(self):
        st, _, b = self.s.write_v2(self.key, "m v=1", precision="days")
        self.assertEqual((st, json.loads(b)["code"]), (400, "invalid"))
        # the message lists every unit taken, InfluxDB 1.x's n, u, m and h too
        self.assertEqual(json.loads(b)["message"], "invalid precision 'days': ns (or n), us (or u, µ), ms, s, m or h")
        sid = self.s.stream(self.tid, "units1", "v", devices=[self.dev])
        for i, (prec, mult) in enumerate((("n", 1), ("u", 1000), ("m", 60 * SECOND), ("h", 3600 * SECOND))):
            st, _, b = self.shared.request("POST", "/write?db=x&precision=" + prec, "units1 v=%d %d" % (i, i + 1),
                                           token(self.key), auth=False)
            self.assertEqual(st, 204, b)
            self.assertEqual(self.s.values(sid)[-1], (rfc3339((i + 1) * mult), i))
        st, _, b = self.s.write_v2(self.key, "m v=1", bucket="")
        self.assertEqual(st, 400, b)

    def test_devices_write_only_their_streams(self):
        s = self.s
        other_dev, other_key = s.device("other")
        mine = s.stream(self.tid, "own", "v", devices=[self.dev])
        theirs = s.stream(self.tid, "theirs", "v", devices=[other_dev])
        st, _, b = s.write_v2(self.key, "own v=1 1\ntheirs v=2 2\n")
        self.assertEqual(st, 403, b)
        d = json.loads(b)
        self.assertEqual((d["code"], d["line"]), ("forbidden", 2))
        self.assertEqual(s.values(mine), [])  # nothing of the batch
        st, _, b = s.write_v2(other_key, "theirs v=2 2")
        self.assertEqual(st, 204, b)
        # JSON batches too
        st, _, b = self.shared.request("POST", "/sensor/observations",
                                       {"observations": [{"stream": mine, "time_ns": 5, "value": 1},
                                                         {"stream": theirs, "time_ns": 5, "value": 1}]},
                                       {"Authorization": "Bearer " + self.key}, auth=False)
        self.assertEqual(st, 403, b)
        self.assertEqual(s.values(mine), [])
        # Bearer works for line protocol as well as Token
        st, _, b = self.shared.request("POST", "/api/v2/write?bucket=b", "own v=7 7",
                                       {"Authorization": "Bearer " + self.key}, auth=False)
        self.assertEqual(st, 204, b)
        self.assertEqual(s.values(mine), [(rfc3339(7), 7)])
        # InfluxDB 1.x clients send Basic with the key as the password (any user name)
        import base64
        basic = "Basic " + base64.b64encode(("telegraf:" + self.key).encode()).decode()
        st, _, b = self.shared.request("POST", "/write?db=x", "own v=8 8", {"Authorization": basic}, auth=False)
        self.assertEqual(st, 204, b)
        self.assertEqual(s.values(mine)[-1], (rfc3339(8), 8))
        for bad in ("Basic " + base64.b64encode(b"telegraf:not-a-key").decode(), "Basic %%%"):
            st, _, b = self.shared.request("POST", "/write?db=x", "own v=9 9", {"Authorization": bad}, auth=False)
            self.assertEqual(st, 401, b)
        # a key of another plugin, a session token in the Token scheme: refused
        st, _, b = self.shared.request("POST", "/api/v2/write?bucket=b", "own v=7 7",
                                       {"Authorization": "Token " + self.shared.auth["Authorization"][7:]}, auth=False)
        self.assertEqual(st, 401, b)

    def test_the_device_role_on_an_account_writes_no_stream_it_is_not_listed_on(self):
        # sensor_device writes the streams that list it; only sensor_admin (and the
        # node's own MQTT and nng inputs) write any: a staff account given the device
        # role is held to the lists like a key
        s, n = self.s, self.shared
        theirs = s.stream(self.tid, "listed", "v", devices=[self.dev])
        h = n.new_user("field-%d" % random.randrange(10**9), ("sensor_device",), "root")
        st, _, b = n.request("POST", "/sensor/observations",
                             {"observations": [{"stream": theirs, "time_ns": 5, "value": 1}]}, h, auth=False)
        self.assertEqual(st, 403, b)
        st, _, b = n.request("POST", "/api/v2/write?bucket=b", "listed v=2 2", h, auth=False)
        self.assertEqual(st, 403, b)
        self.assertEqual(s.values(theirs), [])
        st, _, b = s.write_v2(self.key, "listed v=3 3")  # its device still writes it
        self.assertEqual(st, 204, b)
        st, _, b = n.request("POST", "/api/v2/write?bucket=b", "listed v=4 4")  # so does the admin
        self.assertEqual(st, 204, b)
        self.assertEqual([v for _, v in s.values(theirs)], [3, 4])

    def test_unknown_series_is_refused(self):
        st, _, b = self.s.write_v2(self.key, "nobody,defined=this v=1 1")
        self.assertEqual(st, 422, b)
        d = json.loads(b)
        self.assertEqual((d["code"], d["line"]), ("unprocessable entity", 1))
        self.assertIn("nobody,defined=this v", d["message"])

    def test_a_name_holding_a_series_key_separator_names_no_other_series(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "sep", "f", {"b": "c"}, devices=[self.dev])
        # measurement "sep<1F>b<1E>c" without tags is not the series sep,b=c
        st, _, b = s.write_v2(self.key, "sep\x1fb\x1ec f=1 1\n")
        self.assertEqual(st, 400, b)
        d = json.loads(b)
        self.assertEqual(d["line"], 1)
        self.assertIn("0x1D to 0x1F", d["message"])
        st, hd, body = n.request("POST", "/sensor/observations",
                                 {"observations": [{"measurement": "sep\x1fb\x1ec", "field": "f", "value": 1}]},
                                 {"Authorization": "Bearer " + self.key}, auth=False)
        self.assertIn("0x1D to 0x1F", self.assertProblem(st, hd, body, 400)["detail"])
        self.assertEqual(s.values(sid), [])
        st, _, b = s.write_v2(self.key, "sep,b=c f=2 1\n")
        self.assertEqual(st, 204, b)
        self.assertEqual(s.values(sid), [("1970-01-01T00:00:00.000000001Z", 2)])

    def test_json_batch(self):
        s, n = self.s, self.shared
        a = s.stream(self.tid, "js", "a", {"k": "1"}, devices=[self.dev])
        b_ = s.stream(self.tid, "js", "b", devices=[self.dev])
        obs = [{"stream": a, "time": "2024-05-01T08:00:00+08:00", "value": 1.25},
               {"measurement": "js", "tags": {"k": "1", "host": "x"}, "field": "a", "time": 1714521601000, "value": 2},
               {"stream": b_, "time_ns": "1714521600000000001", "value": "open"},
               {"stream": b_, "time_ns": 1714521600000000000, "value": False}]
        st, _, d = n.json("POST", "/sensor/observations", {"observations": obs}, {"Authorization": "Bearer " + self.key}, auth=False)
        self.assertEqual((st, d), (200, {"written": 4}))
        self.assertEqual(s.values(a), [("2024-05-01T00:00:00Z", 1.25), ("2024-05-01T00:00:01Z", 2)])
        self.assertEqual(s.values(b_), [("2024-05-01T00:00:00Z", False), ("2024-05-01T00:00:00.000000001Z", "open")])
        # a bad one anywhere: a problem naming it, nothing written
        obs = [{"stream": a, "time_ns": 1, "value": 1}, {"stream": a, "time": "yesterday", "value": 1}]
        st, h, body = n.request("POST", "/sensor/observations", obs, {"Authorization": "Bearer " + self.key}, auth=False)
        p = self.assertProblem(st, h, body, 400)
        self.assertIn("observation 2", p["detail"])
        self.assertEqual(len(s.values(a)), 2)

    def test_json_times_in_other_units_are_refused_not_wrapped(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "units", "v", devices=[self.dev])
        h = {"Authorization": "Bearer " + self.key}
        # microseconds, or nanoseconds, sent as "time" (milliseconds) would overflow the
        # ns: refused, saying what the number is not, instead of stored in another century
        for bad in ({"time": 1714521600000000}, {"time": 1714521600000000000}, {"time": -1e16},
                    {"time_ns": 1e19}, {"time_ns": -1e30}, {"time_ns": 1.5}):
            obs = [dict(stream=sid, value=1, **bad)]
            st, hd, body = n.request("POST", "/sensor/observations", {"observations": obs}, h, auth=False)
            p = self.assertProblem(st, hd, body, 400)
            self.assertIn("observation 1: time", p["detail"])
            if "time" in bad:
                self.assertIn("time_ns", p["detail"])
        self.assertEqual(s.values(sid), [])
        # the far end of the range is a time (the upper end too: FutureTest, as it is past
        # future_margin); a fraction of a ms is kept, to the ns
        obs = [{"stream": sid, "time": -9223372036853, "value": 2},
               {"stream": sid, "time": 1714521600000.5, "value": 3},
               {"stream": sid, "time": -1.25, "value": 4},
               {"stream": sid, "time_ns": -9223372036854775808, "value": 5}]
        st, _, d = n.json("POST", "/sensor/observations", {"observations": obs}, h, auth=False)
        self.assertEqual((st, d), (200, {"written": 4}))
        got = [(parse_time(t), v) for t, v in s.values(sid)]
        self.assertEqual(sorted(got, key=lambda x: x[1]),
                         [(-9223372036853 * 10**6, 2),
                          (1714521600000 * 10**6 + 500000, 3), (-1250000, 4), (-2**63, 5)])

    def test_a_stream_id_with_a_fraction_and_days_a_month_lacks_are_refused(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "ids", "v", devices=[self.dev])
        h = {"Authorization": "Bearer " + self.key}

        def post(obs):
            return n.request("POST", "/sensor/observations", {"observations": obs}, h, auth=False)

        # stream 1.5 is not stream 1
        st, hd, body = post([{"stream": sid + 0.5, "time_ns": 1, "value": 1}])
        p = self.assertProblem(st, hd, body, 422)
        self.assertIn("no datastream %g" % (sid + 0.5), p["detail"])
        # 02-30 and 04-31 are no dates (not 03-01 and 05-01); 02-29 is one in a leap year
        for bad in ("2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T12:00:00+08:00",
                    "1900-02-29T00:00:00Z"):
            st, hd, body = post([{"stream": sid, "time": bad, "value": 1}])
            p = self.assertProblem(st, hd, body, 400)
            self.assertIn("observation 1: time", p["detail"])
        # a number past int64 is refused, not taken as its nearest end
        st, hd, body = post([{"stream": sid, "time_ns": "99999999999999999999", "value": 1}])
        self.assertProblem(st, hd, body, 400)
        self.assertEqual(s.values(sid), [])
        st, _, d = n.json("POST", "/sensor/observations",
                          {"observations": [{"stream": sid, "time": "2024-02-29T23:59:59Z", "value": 2},
                                            {"stream": sid, "time": "2000-02-29T00:00:00Z", "value": 3}]},
                          h, auth=False)
        self.assertEqual((st, d), (200, {"written": 2}))
        self.assertEqual(s.values(sid), [("2000-02-29T00:00:00Z", 3), ("2024-02-29T23:59:59Z", 2)])
        # the same for the times of a query
        for q in ("start=2024-02-30T00:00:00Z", "end=99999999999999999999", "cursor=-99999999999999999999"):
            st, hd, body = n.request("GET", "/sensor/streams/%d/observations?%s" % (sid, q))
            self.assertProblem(st, hd, body, 400)

    def test_a_point_dated_ahead_of_the_node_clock_is_refused(self):
        # a device whose clock is set ahead: its points would be the stream's latest until
        # their date; past future_margin (300 s by default) the batch is refused, saying so
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "ahead", "v", devices=[self.dev])
        h = {"Authorization": "Bearer " + self.key}
        now = time.time_ns()
        st, hd, body = n.request("POST", "/sensor/observations",
                                 {"observations": [{"stream": sid, "time_ns": now, "value": 1},
                                                   {"stream": sid, "time": "2099-01-01T00:00:00Z", "value": 2}]},
                                 h, auth=False)
        p = self.assertProblem(st, hd, body, 400)
        self.assertIn("observation 2: time 2099-01-01T00:00:00Z is more than 300 s ahead", p["detail"])
        self.assertIn("future_margin", p["detail"])
        st, _, b = s.write_v2(self.key, "ahead v=1 %d\nahead v=2 %d\n" % (now // SECOND, now // SECOND + 3600),
                              precision="s")
        self.assertEqual(st, 400, b)
        d = json.loads(b)
        self.assertEqual((d["code"], d["line"]), ("invalid", 2))
        self.assertIn("line 2: time %s is more than 300 s ahead" % rfc3339((now // SECOND + 3600) * SECOND),
                      d["message"])
        self.assertEqual(s.values(sid), [])
        # within the margin (clocks a little apart) is fine
        st, _, b = s.write_v2(self.key, "ahead v=3 %d\n" % (now // SECOND + 60), precision="s")
        self.assertEqual(st, 204, b)
        self.assertEqual(s.values(sid), [(rfc3339((now // SECOND + 60) * SECOND), 3)])

    def test_query_parameters_parse_whole_or_are_refused(self):
        # ?limit=10abc was read as 10 and ?stream=abc as stream 0: every number of a query
        # is all digits and in its range, or a 400 that says which and why
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "qp", "v", devices=[self.dev])
        self.assertEqual(s.write_v2(self.key, "qp v=1 1\nqp v=2 2\n")[0], 204)
        obs, agg = "/sensor/streams/%d/observations" % sid, "/sensor/streams/%d/aggregate?every=1s" % sid
        cases = [("/sensor/things?limit=10abc", "limit"), ("/sensor/streams?limit=1e2", "limit"),
                 ("/sensor/streams?limit=%2B5", "limit"), ("/sensor/streams?limit=%205", "limit"),
                 ("/sensor/streams?limit=", "limit"), ("/sensor/streams?limit=0", "limit"),
                 ("/sensor/streams?after=3x", "after"),
                 (obs + "?limit=10abc", "limit"), (obs + "?limit=99999999999999999999", "limit"),
                 (obs + "?start=5s", "start"), (obs + "?cursor=%2B5", "cursor"), (obs + "?format=xml", "format"),
                 (agg.replace("1s", "%205m"), "every"), (agg.replace("1s", "5mx"), "every"),
                 (agg + "&fn=", "fn"), (agg + "&format=CSV", "format"),
                 ("/sensor/alerts?stream=abc", "stream"), ("/sensor/alerts?stream=%d.5" % sid, "stream"),
                 ("/sensor/alerts?limit=10abc", "limit"), ("/sensor/alerts?before=abc", "before"),
                 ("/sensor/alerts?state=opened", "state")]
        for path, name in cases:
            with self.subTest(path):
                st, hd, body = n.request("GET", path)
                p = self.assertProblem(st, hd, body, 400, "invalid-query")
                self.assertTrue(p["detail"].startswith(name + ":"), p)
        st, hd, body = n.request("POST", "/sensor/retention?max=10abc", {})
        self.assertIn("max: a whole number from 1 to 1000000, not '10abc'",
                      self.assertProblem(st, hd, body, 400, "invalid-query")["detail"])
        # whole ones work as before
        self.assertEqual(len(s.obs(sid, limit=1, format="json")["observations"]), 1)
        st, _, d = n.json("GET", "/sensor/alerts?stream=%d&limit=5" % sid)
        self.assertEqual((st, d["items"]), (200, []))
        st, _, d = n.json("GET", "/sensor/streams/%d/observations?start=-5&end=2" % sid)
        self.assertEqual((st, len(d["observations"])), (200, 1))
        st, _, _ = n.request("GET", "/sensor/streams/%d/latest" % sid)
        self.assertEqual(st, 200)
        st, _, _ = n.request("GET", "/sensor/streams/%%2B%d/latest" % sid)  # "+3" names no stream
        self.assertEqual(st, 404)

    def test_last_write_wins_and_out_of_order(self):
        s = self.s
        sid = s.stream(self.tid, "dup", "v", devices=[self.dev])
        self.assertEqual(s.write_v2(self.key, "dup v=3 30\ndup v=1 10\ndup v=2 20\ndup v=9 10\n")[0], 204)
        self.assertEqual(s.write_v2(self.key, "dup v=5 20\n")[0], 204)
        self.assertEqual(s.values(sid), [(rfc3339(10), 9), (rfc3339(20), 5), (rfc3339(30), 3)])
        st, _, d = self.shared.json("GET", "/sensor/streams/%d/latest" % sid)
        self.assertEqual((d["time"], d["value"]), (rfc3339(30), 3))

    def test_range_paging_and_csv(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "page", "v", devices=[self.dev])
        pts = [(1000 + 7 * i, random.randrange(-1000, 1000)) for i in range(53)]
        self.assertEqual(s.write_v2(self.key, "".join("page v=%di %d\n" % (v, t) for t, v in pts))[0], 204)
        got, cursor = [], None
        while True:
            q = {"limit": 10, "start": 1000 + 7 * 3, "end": 1000 + 7 * 50}
            if cursor:
                q["cursor"] = cursor
            d = s.obs(sid, **q)
            got += [(o["time"], o["value"]) for o in d["observations"]]
            cursor = d["next"]
            if not cursor:
                break
        self.assertEqual(got, [(rfc3339(t), v) for t, v in pts[3:50]])
        st, h, b = n.request("GET", "/sensor/streams/%d/observations?format=csv&limit=5" % sid)
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/csv"))
        rows = b.decode().splitlines()
        self.assertEqual(rows[0], "time,value")
        self.assertEqual(rows[1:], ["%s,%d" % (rfc3339(t), v) for t, v in pts[:5]])
        self.assertEqual(h["x-next-cursor"], str(pts[5][0]))
        st, h, b = n.request("GET", "/sensor/streams/%d/observations?limit=1" % sid, headers={"Accept": "text/csv"})
        self.assertEqual(b.decode().splitlines()[1], "%s,%d" % (rfc3339(pts[0][0]), pts[0][1]))
        st, _, _ = n.request("GET", "/sensor/streams/999999/observations")
        self.assertEqual(st, 404)

    def test_aggregates_match_an_independent_computation(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "agg", "v", devices=[self.dev])
        rnd = random.Random(7)
        base = 1700000000 * SECOND
        pts = sorted({base + rnd.randrange(0, 3600 * SECOND): rnd.uniform(-50, 50) for _ in range(2000)}.items())
        body = "".join("agg v=%r %d\n" % (v, t) for t, v in pts)
        self.assertEqual(s.write_v2(self.key, body)[0], 204)
        every = 300 * SECOND
        start, end = base + 100 * SECOND, base + 3000 * SECOND
        want = {}
        for t, v in pts:
            if start <= t < end:
                want.setdefault(t - t % every, []).append(v)
        st, _, d = n.json("GET", "/sensor/streams/%d/aggregate?every=5m&start=%d&end=%s" % (sid, start, urllib.parse.quote(rfc3339(end))))
        self.assertEqual(st, 200, d)
        self.assertEqual([w["time"] for w in d["windows"]], [rfc3339(w) for w in sorted(want)])
        for w in d["windows"]:
            vals = want[[k for k in want if rfc3339(k) == w["time"]][0]]
            self.assertEqual(w["count"], len(vals))
            self.assertEqual((w["min"], w["max"], w["first"], w["last"]), (min(vals), max(vals), vals[0], vals[-1]))
            self.assertTrue(math.isclose(w["mean"], math.fsum(vals) / len(vals), rel_tol=1e-12, abs_tol=1e-12))
        st, h, b = n.request("GET", "/sensor/streams/%d/aggregate?every=1h&fn=count,max&format=csv" % sid)
        rows = b.decode().splitlines()
        self.assertEqual(rows[0], "time,count,max")
        hours = {}
        for t, v in pts:
            hours.setdefault(t - t % (3600 * SECOND), []).append(v)
        self.assertEqual(rows[1:], ["%s,%d,%s" % (rfc3339(k), len(v), repr(max(v))) for k, v in sorted(hours.items())])
        st, _, _ = n.request("GET", "/sensor/streams/%d/aggregate?every=0" % sid)
        self.assertEqual(st, 400)
        st, _, _ = n.request("GET", "/sensor/streams/%d/aggregate?every=1m&fn=median" % sid)
        self.assertEqual(st, 400)

    def test_latest_of_every_stream(self):
        s, n = self.s, self.shared
        tid = s.thing("latest")
        a = s.stream(tid, "lt", "a", devices=[self.dev])
        b_ = s.stream(tid, "lt", "b", devices=[self.dev])
        self.assertEqual(s.write_v2(self.key, "lt a=1,b=2 5\nlt a=3 6\n")[0], 204)
        st, _, d = n.json("GET", "/sensor/latest?thing=" + tid)
        self.assertEqual(d["items"], [{"stream": a, "time": rfc3339(6), "value": 3},
                                      {"stream": b_, "time": rfc3339(5), "value": 2}])

    def test_retention(self):
        s, n = self.s, self.shared
        sid = s.stream(self.tid, "ret", "v", devices=[self.dev], retention_days=2)
        now = time.time_ns()
        old = [now - (3 + i) * 86400 * SECOND for i in range(5)]
        fresh = [now - 86400 * SECOND, now - SECOND]
        # points already past their retention are trimmed by the batch that brings them
        body = "".join("ret v=%d %d\n" % (i, t) for i, t in enumerate(old + fresh))
        self.assertEqual(s.write_v2(self.key, body)[0], 204)
        self.assertEqual([v for _, v in s.values(sid)], [5, 6])
        # a stream whose retention is shortened later is trimmed by the retention pass
        st, _, d = n.json("PATCH", "/sensor/streams/%d" % sid, {"retention_days": 0})
        self.assertEqual(s.write_v2(self.key, "ret v=9 %d\n" % old[0])[0], 204)
        self.assertEqual(len(s.values(sid)), 3)
        st, _, d = n.json("PATCH", "/sensor/streams/%d" % sid, {"retention_days": 2})
        st, _, d = n.json("POST", "/sensor/retention?max=1000", {})
        self.assertEqual(st, 200, d)
        self.assertGreaterEqual(d["deleted"], 1)
        self.assertEqual([v for _, v in s.values(sid)], [5, 6])


class AutoCreateTest(NodeTest):
    def test_unknown_series_become_streams_of_their_device(self):
        n = self.node(plugins=("sensor",), options="sensor = { auto_create = true }", roles=("sensor_admin",))
        s = Sensor(n)
        dev, key = s.device("agent")
        other_dev, other_key = s.device("agent2")
        st, _, b = s.write_v2(key, "air,site=east pm25=35i,no2=12.5 1\n")
        self.assertEqual(st, 204, b)
        st, _, d = n.json("GET", "/sensor/streams")
        made = {x["field"]: x for x in d["items"]}
        self.assertEqual(set(made), {"pm25", "no2"})
        self.assertEqual(made["pm25"]["tags"], {"site": "east"})
        self.assertEqual(made["pm25"]["devices"], [dev])
        self.assertEqual(s.values(made["no2"]["id"]), [(rfc3339(1), 12.5)])
        # the streams are the first device's: another device cannot write them
        st, _, b = s.write_v2(other_key, "air,site=east pm25=1i 2\n")
        self.assertEqual(st, 403, b)

    def test_a_tag_key_given_twice_is_refused(self):
        # slope,site=A,site=B: which site? InfluxDB refuses the line; so does the node,
        # instead of a series with two site tags (and a stream record with "site" twice)
        n = self.node(plugins=("sensor",), options="sensor = { auto_create = true }", roles=("sensor_admin",))
        s = Sensor(n)
        _, key = s.device("twice")
        st, _, b = s.write_v2(key, "slope,site=A disp=1 1\nslope,site=A,site=B disp=1 2\n")
        self.assertEqual(st, 400, b)
        d = json.loads(b)
        self.assertEqual((d["code"], d["line"]), ("invalid", 2))
        self.assertIn("error parsing line 2", d["message"])
        self.assertIn("duplicate tag key 'site'", d["message"])
        st, _, b = n.request("POST", "/write?db=x", "slope,site=A,point=1,site=A disp=1 2\n", token(key), auth=False)
        self.assertEqual(st, 400, b)
        self.assertIn("duplicate tag key 'site'", json.loads(b)["error"])
        st, _, d = n.json("GET", "/sensor/streams")
        self.assertEqual(d["items"], [])  # none made (line 1's neither: the batch is refused whole)
        # (a JSON body with a key twice is refused by the node; the gateways' JSON is
        # test_sensor_inputs.GatewayJsonTest)


class FutureTest(NodeTest):
    def test_the_margin_is_an_option(self):
        # a county that keeps forecasts sets it wide: up to the end of the time range
        n = self.node(plugins=("sensor",), options="sensor = { future_margin = 9223372036 }",
                      roles=("sensor_admin",))
        s = Sensor(n)
        dev, key = s.device("forecast")
        sid = s.stream(s.thing(), "forecast", "v", devices=[dev])
        obs = [{"stream": sid, "time": 9223372036853, "value": 1},
               {"stream": sid, "time_ns": str(2**63 - 1), "value": 2}]
        st, _, d = n.json("POST", "/sensor/observations", {"observations": obs},
                          {"Authorization": "Bearer " + key}, auth=False)
        self.assertEqual((st, d), (200, {"written": 2}))
        self.assertEqual([(parse_time(t), v) for t, v in s.values(sid)], [(9223372036853 * 10**6, 1)])
        st, _, d = n.json("GET", "/sensor/streams/%d/latest" % sid)  # ranges end before 2^63 - 1
        self.assertEqual((parse_time(d["time"]), d["value"]), (2**63 - 1, 2))

    def test_a_bad_margin_or_precision_stops_the_start(self):
        from ztnode import run
        for opt, want in (("future_margin = -1", "future_margin: seconds, 0 to 9223372036, not -1"),
                          ("future_margin = 9223372037", "future_margin: seconds, 0 to 9223372036, not 9223372037"),
                          ('precision = "d"', 'precision: ns (or n), us (or u, µ), ms, s, m or h, not "d"')):
            with self.subTest(opt):
                n = self.node(plugins=("sensor",), options="sensor = {\n  %s }\n" % opt, start=False)
                line = n._conf_text.splitlines().index("  %s }" % opt) + 1
                r = run(["check", "-c", n.conf], cwd=n.dir, timeout=20)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("%s:%d: sensor.%s" % (n.conf, line, want), r.stderr)


class CrashTest(NodeTest):
    def test_every_acknowledged_point_survives_kill_9(self):
        n = self.node(plugins=("sensor",), options=OPTIONS, roles=("sensor_admin",))
        s = Sensor(n)
        dev, key = s.device("crash")
        sid = s.stream(s.thing(), "crash", "v", devices=[dev])
        acked, stop = [], threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                body = "".join("crash v=%di %d\n" % (i * 200 + j, i * 200 + j) for j in range(200))
                try:
                    st, _, _ = s.write_v2(key, body)
                except OSError:
                    return
                if st == 204:
                    acked.append(i)
                i += 1

        threads = [threading.Thread(target=writer) for _ in range(1)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        n.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        self.assertGreaterEqual(len(acked), 20)
        n.start()
        n.sign_in()
        have = set()
        cursor = None
        while True:
            q = {"limit": 10000}
            if cursor:
                q["cursor"] = cursor
            d = s.obs(sid, **q)
            have |= {o["value"] for o in d["observations"]}
            cursor = d["next"]
            if not cursor:
                break
        for i in acked:
            missing = [i * 200 + j for j in range(200) if i * 200 + j not in have]
            self.assertEqual(missing, [], "batch %d was acknowledged" % i)
        # batches are whole: a batch is there entirely or not at all
        self.assertEqual(len(have) % 200, 0)


class RetentionRoundTest(NodeTest):
    def test_a_pass_resumes_where_the_last_stopped(self):
        """A pass that stops short goes on from that stream next time: a first stream that keeps
        a backlog does not starve the later ones (each pass used to start at the first)."""
        n = self.node(plugins=("sensor",), options=OPTIONS, roles=("sensor_admin",))
        s = Sensor(n)
        dev, key = s.device("round")
        tid = s.thing()
        now = time.time_ns()
        ids = {m: s.stream(tid, m, "v", devices=[dev], retention_days=0) for m in ("a", "b", "c")}

        def old_points(m, count):
            # written while the stream keeps everything, then its retention shortened
            st, _, d = n.json("PATCH", "/sensor/streams/%d" % ids[m], {"retention_days": 0})
            self.assertEqual(st, 200, d)
            body = "".join("%s v=%d %d\n" % (m, i, now - (3 * 86400 + i) * SECOND) for i in range(count))
            self.assertEqual(s.write_v2(key, body)[0], 204)
            st, _, d = n.json("PATCH", "/sensor/streams/%d" % ids[m], {"retention_days": 2})
            self.assertEqual(st, 200, d)

        for m, count in (("a", 10), ("b", 15), ("c", 5)):
            old_points(m, count)
        for _ in range(3):
            st, _, d = n.json("POST", "/sensor/retention?max=10", {})
            self.assertEqual((st, d["deleted"]), (200, 10), d)
            old_points("a", 10)  # the first stream falls behind again
        self.assertEqual(s.values(ids["b"]), [])
        self.assertEqual(s.values(ids["c"]), [])


if __name__ == "__main__":
    unittest.main()
