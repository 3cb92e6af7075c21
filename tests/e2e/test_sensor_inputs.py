# test_sensor_inputs.py: the sensor plugin's MQTT input (a real mosquitto) and nng pull socket.
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from test_sensor import SECOND, Sensor, rfc3339
from ztnode import (HOST, NodeTest, env, free_port, lua_manifest, lua_tree_with, run, wait_for,
                    wait_listening)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


class Broker:
    """A mosquitto of its own on a free port."""

    def __init__(self, port=None):
        self.dir = tempfile.mkdtemp(prefix="zt-mqtt-")
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d %s\nallow_anonymous true\npersistence false\n" % (self.port, HOST))
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=self.log, stderr=self.log)
        wait_listening("mosquitto to listen", self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def publish(self, topic, payload, retain=False):
        subprocess.run([MOSQUITTO_PUB, "-h", HOST, "-p", str(self.port), "-q", "1", "-t", topic, "-m", payload]
                       + (["-r"] if retain else []), check=True, timeout=10)


@unittest.skipUnless(os.path.exists(MOSQUITTO) and MOSQUITTO_PUB, "mosquitto and mosquitto-clients are needed")
class InputsTest(NodeTest):
    def setUp(self):
        super().setUp()
        self.broker = Broker()
        self.addCleanup(self.broker.close)
        self.nng = "tcp://%s:%d" % (HOST, free_port())
        opts = ('sensor = { mqtt_host = "%s", mqtt_port = %d, mqtt_topics = { "sensors/#", "other/+/x" }, '
                'precision = "s", nng_listen = "%s" }' % (HOST, self.broker.port, self.nng))
        self.n = self.node(plugins=("sensor",), options=opts, roles=("sensor_admin",))
        self.s = Sensor(self.n)
        self.tid = self.s.thing("river gauge")

    def inputs(self):
        st, _, d = self.n.json("GET", "/sensor/inputs")
        self.assertEqual(st, 200, d)
        return d

    def test_mqtt_line_protocol_and_json_with_reconnect(self):
        s = self.s
        level = s.stream(self.tid, "water", "level", {"site": "bridge"})
        rain = s.stream(self.tid, "rain", "mm")
        wait_for("the MQTT connection", lambda: self.inputs()["mqtt"]["connected"])
        self.broker.publish("sensors/bridge", "water,site=bridge level=2.5 1700000000\nwater,site=bridge level=2.75 1700000060")
        self.broker.publish("other/7/x", '{"observations": [{"stream": %d, "time": 1700000000000, "value": 0.5}]}' % rain)
        # refused (bad line, unknown stream): logged and counted, the others go in
        self.broker.publish("sensors/bad", "water,site=bridge level=oops 1")
        self.broker.publish("sensors/unknown", "nosuch v=1 1")
        self.broker.publish("not/subscribed", "water,site=bridge level=99 1700000120")
        wait_for("4 messages", lambda: self.inputs()["mqtt"]["messages"] >= 4)
        want = [(rfc3339(1700000000 * SECOND), 2.5), (rfc3339(1700000060 * SECOND), 2.75)]
        wait_for("the level", lambda: s.values(level) == want)
        wait_for("the rain", lambda: s.values(rain) == [(rfc3339(1700000000 * SECOND), 0.5)])
        self.assertEqual(self.inputs()["mqtt"]["refused"], 2)
        self.assertIn("mqtt message refused", self.n.log())
        # the broker goes away and comes back: the node reconnects and subscribes again
        connects = self.inputs()["mqtt"]["connects"]
        self.broker.stop()
        wait_for("the loss to be seen", lambda: not self.inputs()["mqtt"]["connected"])
        self.broker.start()
        wait_for("a reconnect", lambda: self.inputs()["mqtt"]["connects"] > connects, timeout=40)
        self.broker.publish("sensors/bridge", "water,site=bridge level=3 1700000180")
        wait_for("the point after the reconnect", lambda: len(s.values(level)) == 3)
        # the not-subscribed topic never came in
        self.assertNotIn(99, [v for _, v in s.values(level)])

    def test_a_retained_message_is_taken_once_not_again_at_every_subscribe(self):
        s = self.s
        level = s.stream(self.tid, "water", "level")
        wait_for("the MQTT connection", lambda: self.inputs()["mqtt"]["connected"])
        # a gauge that publishes retained, without a timestamp: the node takes it live
        self.broker.publish("sensors/gauge", "water level=4.25", retain=True)
        wait_for("the live reading", lambda: len(s.values(level)) == 1)
        # the node starts again and subscribes: the broker replays the retained message,
        # an old reading, which must not be recorded again at the node's time. The replay
        # comes before what is published after the subscribe, and is handled in order.
        self.n.restart()
        wait_for("the MQTT connection", lambda: self.inputs()["mqtt"]["connected"])
        # dated after the first (a minute ahead: within future_margin)
        self.broker.publish("sensors/gauge", "water level=4.5 %d" % (time.time() + 60))
        wait_for("the next live reading", lambda: 4.5 in [v for _, v in s.values(level)])
        self.assertEqual([v for _, v in s.values(level)], [4.25, 4.5])
        self.assertEqual(self.inputs()["mqtt"]["retained"], 1)
        self.assertEqual(self.inputs()["mqtt"]["points"], 1)

    def test_nng_gateway_batches(self):
        s = self.s
        ids = [s.stream(self.tid, "gw", "v%d" % i) for i in range(3)]
        d = tempfile.mkdtemp(prefix="zt-nng-")
        self.addCleanup(shutil.rmtree, d, True)
        files = []
        for b in range(5):
            p = os.path.join(d, "batch%d" % b)
            with open(p, "w") as f:
                for j in range(1000):
                    t = 1700000000 + b * 1000 + j
                    f.write("gw v0=%di,v1=%d.5,v2=%s %d\n" % (t, j, "true" if j % 2 else "false", t))
            files.append(p)
        p = os.path.join(d, "json")
        with open(p, "w") as f:
            f.write('[{"stream": %d, "time_ns": "5", "value": -1}]' % ids[0])
        files.append(p)
        sender = os.path.join(env("ZT_BUILD"), "tests", "sensor_nng_send")
        subprocess.run([sender, self.nng] + files, check=True, timeout=30)
        wait_for("6 batches", lambda: self.inputs()["nng"]["messages"] >= 6)
        wait_for("all points", lambda: self.inputs()["nng"]["points"] == 15001)
        v0 = s.obs(ids[0])["observations"]
        self.assertEqual(len(v0), 5001)
        self.assertEqual(v0[0]["value"], -1)
        self.assertEqual(v0[1]["value"], 1700000000)
        v2 = s.obs(ids[2], limit=3)["observations"]
        self.assertEqual([o["value"] for o in v2], [False, True, False])
        self.assertEqual(self.inputs()["nng"]["refused"], 0)
        # a message with a bad line is refused whole: its good first line is not kept
        p = os.path.join(d, "bad")
        with open(p, "w") as f:
            f.write("gw v0=1i 1\ngw v0=oops 2\n")
        subprocess.run([sender, self.nng, p], check=True, timeout=30)
        wait_for("the refusal", lambda: self.inputs()["nng"]["refused"] == 1)
        self.assertEqual(len(s.obs(ids[0])["observations"]), 5001)
        self.assertIn("nng message refused", self.n.log())


class GatewayJsonTest(NodeTest):
    def test_a_tag_key_twice_in_a_gateway_json_message_is_refused(self):
        # gateways' JSON is not an HTTP body (which the node refuses with a key twice): the
        # plugin refuses the observation itself, instead of making (auto_create) a stream
        # whose series has two "site" tags and whose record has the key twice
        addr = "tcp://%s:%d" % (HOST, free_port())
        n = self.node(plugins=("sensor",), options='sensor = { auto_create = true, nng_listen = "%s" }' % addr,
                      roles=("sensor_admin",))
        d = tempfile.mkdtemp(prefix="zt-nng-")
        self.addCleanup(shutil.rmtree, d, True)
        files = []
        for name, tags in (("twice", '{"site": "A", "site": "B"}'), ("once", '{"site": "A"}')):
            files.append(os.path.join(d, name))
            with open(files[-1], "w") as f:
                f.write('[{"measurement": "slope", "tags": %s, "field": "disp", "time_ns": 1, "value": 1}]' % tags)
        subprocess.run([os.path.join(env("ZT_BUILD"), "tests", "sensor_nng_send"), addr] + files,
                       check=True, timeout=30)

        def inputs():
            st, _, d = n.json("GET", "/sensor/inputs")
            return d["nng"]

        wait_for("both messages", lambda: inputs()["messages"] >= 2)
        self.assertEqual((inputs()["refused"], inputs()["points"]), (1, 1))
        self.assertIn("observation 1: duplicate tag key 'site'", n.log())
        st, _, d = n.json("GET", "/sensor/streams")
        self.assertEqual([(x["measurement"], x["tags"]) for x in d["items"]], [("slope", {"site": "A"})])


@unittest.skipUnless(os.path.exists(MOSQUITTO) and MOSQUITTO_PUB, "mosquitto and mosquitto-clients are needed")
class CheckBesideTheLiveNode(NodeTest):
    """The upgrade steps run `check` (and a county may run `test`) with the config of the node
    that serves meanwhile: they must neither take its nng address nor its MQTT session."""

    def test_check_and_test_leave_the_live_inputs_alone(self):
        broker = Broker()
        self.addCleanup(broker.close)
        lua = lua_tree_with(os.path.join(tempfile.mkdtemp(prefix="zt-lua-"), "lua"),
                            {"probe": (lua_manifest(), "-- serves nothing\n")})
        self.addCleanup(shutil.rmtree, os.path.dirname(lua), True)
        tests = os.path.join(lua, "plugins", "probe", "tests")
        os.makedirs(tests)
        with open(os.path.join(tests, "a.lua"), "w") as f:
            f.write('test("runs", function(t) t.ok(true) end)\n')
        nng = "tcp://%s:%d" % (HOST, free_port())
        opts = 'sensor = { mqtt_host = "%s", mqtt_port = %d, nng_listen = "%s" }' % (
            HOST, broker.port, nng)
        n = self.node(plugins=("sensor", "probe"), options=opts, lua_dir=lua, roles=("sensor_admin",))

        def inputs():
            st, _, d = n.json("GET", "/sensor/inputs")
            self.assertEqual(st, 200, d)
            return d

        def broker_log():
            with open(os.path.join(broker.dir, "log"), errors="replace") as f:
                return f.read()

        wait_for("the MQTT connection", lambda: inputs()["mqtt"]["connected"])
        before = broker_log().count("New connection from")
        r = run(["check", "-c", n.conf], cwd=n.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(": OK: node e2e-test", r.stdout)
        r = run(["test", "-c", n.conf], cwd=n.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok 1 - probe/a.lua: runs", r.stdout)
        # A publisher connects after them: the broker accepts connections in the order
        # they came, so once it is answered the broker has seen any that check or test made.
        broker.publish("sensors/x", "gw v=1 1")
        log = broker_log()
        self.assertEqual(log.count("New connection from"), before + 1, log)  # the publisher's
        self.assertNotIn("already connected", log)
        self.assertEqual(inputs()["mqtt"]["connects"], 1)
        self.assertTrue(inputs()["mqtt"]["connected"])

    def test_check_refuses_input_addresses_it_does_not_listen_at(self):
        cases = [
            ('mqtt_host = "%s", mqtt_port = 99999' % HOST, "sensor.mqtt_port: 1 to 65535, not 99999"),
            ('mqtt_host = "%s", mqtt_port = 0' % HOST, "sensor.mqtt_port: 1 to 65535, not 0"),
            ('nng_listen = "tcp://%s:99999"' % HOST, "sensor.nng_listen: cannot listen at tcp://%s:99999" % HOST),
            ('nng_listen = "tpc://%s:7770"' % HOST, "sensor.nng_listen: cannot listen at tpc://"),
        ]
        for opt, want in cases:
            with self.subTest(opt):
                n = self.node(plugins=("sensor",), options="sensor = {\n  %s }\n" % opt, start=False)
                line = n._conf_text.splitlines().index("  %s }" % opt) + 1
                for cmd in ("check", "serve"):
                    r = run([cmd, "-c", n.conf], cwd=n.dir, timeout=20)
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                    self.assertIn("%s:%d: %s" % (n.conf, line, want), r.stderr)


class GatewayAtTheNodesPort(NodeTest):
    """nng_listen at a port the node listens on itself: check passed it, and serve failed
    only at the bind with "address already in use", as if another program held it."""

    def test_check_and_serve_name_the_option_and_the_node_setting(self):
        p = free_port()
        pub = "tcp://%s:%d" % (HOST, free_port())
        cases = [
            ("tcp://%s:%d" % (HOST, p), "listen '%s:%d'" % (HOST, p)),
            ("tcp://0.0.0.0:%d" % p, "listen '%s:%d'" % (HOST, p)),  # every address
            ("tcp://:%d" % p, "listen '%s:%d'" % (HOST, p)),  # nng's every address
            ("tcp://[::]:%d" % p, "listen '%s:%d'" % (HOST, p)),  # dual-stack: IPv4 too
            ("ws://%s:%d/gw" % (HOST, p), "listen '%s:%d'" % (HOST, p)),
            (pub, "bus.publish '%s'" % pub),
        ]
        for url, what in cases:
            with self.subTest(url):
                n = self.node(plugins=("sensor",), start=False, port=p,
                              options='bus = { publish = "%s" }\nsensor = {\n  nng_listen = "%s" }\n'
                              % (pub, url))
                line = n._conf_text.splitlines().index('  nng_listen = "%s" }' % url) + 1
                want = ("%s:%d: sensor.nng_listen: '%s' and %s are at the same port: the node "
                        "would take it twice; give sensor.nng_listen another port" % (n.conf, line, url, what))
                for cmd in ("check", "serve"):
                    r = run([cmd, "-c", n.conf], cwd=n.dir, timeout=20)
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                    self.assertIn(want, r.stderr)
                    self.assertNotIn("in use", r.stderr)
        # another port, or another address at the port (IPv6-only [::1] beside an IPv4 listener)
        for url in ("tcp://%s:%d" % (HOST, free_port()), "tcp://[::1]:%d" % p):
            with self.subTest(url):
                n = self.node(plugins=("sensor",), start=False, port=p,
                              options='sensor = { nng_listen = "%s" }' % url)
                r = run(["check", "-c", n.conf], cwd=n.dir, timeout=20)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
