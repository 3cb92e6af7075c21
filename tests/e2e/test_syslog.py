# test_syslog.py: the audit log sent on to a log collector (audit.syslog), a real rsyslogd.
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from ztnode import HOST, NodeTest, free_port, run, scrape, wait_for, wait_listening

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
LOCAL3 = 19  # RFC 5424 facility numbers
AUTHPRIV = 10
FIELDS = ("pri", "time", "host", "app", "procid", "msgid", "sd", "msg")


class Pki:
    """A county CA and the certificates it signs (openssl's command line), in a folder."""

    def __init__(self, folder, name="County CA"):
        self.dir = folder
        self.ca = self.path("ca.pem")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.path("ca.key"), "-out", self.ca, "-days", "30",
                  "-subj", "/CN=" + name)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, *args):
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=30)

    def issue(self, name, cn, san=None):
        """A certificate for cn (and subjectAltName san) and its key: their paths."""
        key, csr, cert = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".pem")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % (san or "DNS:" + cn))
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.path("ca.key"),
                  "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", ext)
        return cert, key


class Collector:
    """An rsyslogd of its own on a free port: RFC 5424 over TCP (imtcp, octet counting as
    RFC 6587 frames it), each message it parsed written as one line of its fields. With
    tls, RFC 5425 (rsyslog's ossl driver) with a certificate for "localhost" from its own
    CA (self.pki), and, if clients is true, only clients with a certificate of that CA."""

    def __init__(self, tls=False, clients=False):
        self.dir = tempfile.mkdtemp(prefix="zt-syslog-")
        self.port = free_port()
        self.out = os.path.join(self.dir, "received.log")
        self.proc = None
        self.tls, self.clients = tls, clients
        if tls:
            self.pki = Pki(self.dir)
            self.cert, self.key = self.pki.issue("collector", "localhost")
        self.start()

    def start(self):
        conf = os.path.join(self.dir, "rsyslog.conf")
        tls = ""
        if self.tls:
            tls = ('DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="%s" '
                   'DefaultNetstreamDriverCertFile="%s" DefaultNetstreamDriverKeyFile="%s"'
                   % (self.pki.ca, self.cert, self.key))
        with open(conf, "w") as f:
            f.write('global(workDirectory="%s" %s)\n'
                    'module(load="imtcp"%s)\n'
                    'input(type="imtcp" address="%s" port="%d" ruleset="zt")\n'
                    'template(name="fields" type="list") {\n'
                    '  property(name="pri") constant(value="\\t")\n'
                    '  property(name="timereported" dateFormat="rfc3339") constant(value="\\t")\n'
                    '  property(name="hostname") constant(value="\\t")\n'
                    '  property(name="app-name") constant(value="\\t")\n'
                    '  property(name="procid") constant(value="\\t")\n'
                    '  property(name="msgid") constant(value="\\t")\n'
                    '  property(name="structured-data") constant(value="\\t")\n'
                    '  property(name="msg") constant(value="\\n")\n'
                    '}\n'
                    'ruleset(name="zt") { action(type="omfile" file="%s" template="fields") }\n'
                    % (self.dir, tls,
                       ' StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.Authmode="%s"'
                       % ("x509/certvalid" if self.clients else "anon") if self.tls else "",
                       HOST, self.port, self.out))
        self.log = open(os.path.join(self.dir, "rsyslogd.txt"), "ab")
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(self.dir, "pid")],
                                     stdout=self.log, stderr=self.log)
        wait_listening("rsyslogd to listen", self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self):
        """What it received: each message's fields, in the order it got them."""
        try:
            with open(self.out, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        return [dict(zip(FIELDS, line.split("\t", len(FIELDS) - 1))) for line in lines]

    def records(self):
        return [json.loads(m["msg"]) for m in self.messages()]


def all_records(node):
    st, _, d = node.json("GET", "/audit?limit=1000")
    assert st == 200 and d["next"] is None, d
    return d["items"]


def rfc3339(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


@unittest.skipUnless(os.path.exists(RSYSLOGD), "rsyslog is needed")
class Syslog(NodeTest):
    def setUp(self):
        super().setUp()
        self.c = Collector()
        self.addCleanup(self.c.close)

    def node_to_collector(self, facility=None, port=None):
        opts = 'audit = { syslog = "tcp://localhost:%d"%s }' % (
            port or self.c.port, ', syslog_facility = "%s"' % facility if facility else "")
        return self.node(options=opts, roles=("auditor",))

    def write(self, n, count):
        for _ in range(count):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)

    def collector_gone(self, n):
        """Stop the collector, and write until the node has seen it go."""
        self.c.stop()
        wait_for("the node to see the collector gone",
                 lambda: (self.write(n, 1), scrape(n).get("zt_audit_syslog_connected"))[1] == 0)

    def wait_all(self, n, what="the collector to hold every record"):
        """Wait until the collector holds every record of the log (the read of them, itself
        recorded after, too); the records' seqs."""
        want = {r["seq"] for r in all_records(n)}
        want.add(max(want) + 1)
        wait_for(what, lambda: want <= {r["seq"] for r in self.c.records()}, timeout=30)
        return want

    def assertNoGap(self):
        """The collector holds the log from its first record on, none missing."""
        seqs = {r["seq"] for r in self.c.records()}
        self.assertEqual(seqs, set(range(1, max(seqs) + 1)))

    def test_every_record_reaches_the_collector_as_rfc5424(self):
        n = self.node_to_collector(facility="local3")
        self.write(n, 5)
        # a refusal of a signed-in caller is a record too, sent as a warning
        h = n.new_user("li.ming")
        st, _, _ = n.request("GET", "/admin/users", headers=h, auth=False)
        self.assertEqual(st, 403)
        self.wait_all(n)
        records = all_records(n)
        got = {m["msg"] and json.loads(m["msg"])["seq"]: m for m in self.c.messages()}
        # the whole log, from its first record (the first start that sends sends it all)
        self.assertEqual(records[0]["seq"], 1)
        for r in records:
            m = got[r["seq"]]
            self.assertEqual(json.loads(m["msg"]), r)  # the record as GET /audit shows it
            severity = 4 if r.get("status", 0) >= 400 else 5
            self.assertEqual(int(m["pri"]), LOCAL3 * 8 + severity, (m, r))
            self.assertEqual((m["time"], m["host"], m["app"], m["msgid"], m["sd"]),
                             (rfc3339(r["time"]), "e2e-test", "zhengtong", "audit", "-"))
            self.assertEqual(int(m["procid"]), n.proc.pid)
        self.assertIn(4, {int(m["pri"]) % 8 for m in self.c.messages()})  # a refusal among them
        # in the log's order, each once (nothing broke the connection)
        seqs = [r["seq"] for r in self.c.records()]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(scrape(n).get("zt_audit_syslog_connected"), 1)
        wait_for("the collector's acknowledgement",
                 lambda: scrape(n).get("zt_audit_syslog_lag_records") == 0)
        self.assertEqual(scrape(n).get("zt_audit_syslog_confirmed_seq"), records[-1]["seq"] + 1)

    def test_nothing_is_lost_while_the_collector_is_down(self):
        n = self.node_to_collector()
        self.write(n, 3)
        self.wait_all(n)
        self.collector_gone(n)
        self.write(n, 20)
        lag = scrape(n).get("zt_audit_syslog_lag_records")
        self.assertGreaterEqual(lag, 20)
        self.assertRegex(n.log(), r"audit.syslog: localhost: .*; the records from #\d+ on are kept "
                                  r"and sent once it answers")
        self.c.start()  # the same port, the same file
        self.wait_all(n, "the records written while it was down")
        self.assertNoGap()
        self.assertEqual(int(self.c.messages()[0]["pri"]), AUTHPRIV * 8 + 5)  # the default
        wait_for("no lag", lambda: scrape(n).get("zt_audit_syslog_lag_records") == 0)
        self.assertGreaterEqual(scrape(n).get("zt_audit_syslog_failures_total"), 1)

    def test_a_restart_goes_on_from_what_the_collector_acknowledged(self):
        n = self.node_to_collector()
        self.write(n, 4)
        self.wait_all(n)
        wait_for("the acknowledgement", lambda: scrape(n).get("zt_audit_syslog_lag_records") == 0)
        before = len(self.c.records())
        self.assertEqual(n.stop(), 0)
        # records appended while the node is stopped (the offline admin command)
        r = run(["admin", "-c", n.conf, "dept", "add", "edu", "Education Bureau"])
        self.assertEqual(r.returncode, 0, r.stderr)
        n.start()
        self.write(n, 2)
        self.wait_all(n)
        after = self.c.records()[before:]
        # what it had acknowledged is not sent again; what came after is, offline records too
        self.assertGreater(after[0]["seq"], self.c.records()[before - 1]["seq"])
        self.assertNoGap()
        self.assertIn(("admin dept add", "edu"), [(r["action"], r["object"]) for r in after])

    def test_prune_keeps_what_the_collector_has_not(self):
        n = self.node_to_collector()
        self.write(n, 3)
        self.wait_all(n)
        self.collector_gone(n)
        self.write(n, 3)
        head = all_records(n)[-1]["seq"]
        self.assertEqual(n.stop(), 0)
        with open(n.conf) as f:
            text = f.read()
        with open(n.conf, "w") as f:  # a county that may prune any record
            f.write(text.replace("audit = { ", "audit = { retain = 0, "))
        n.start()
        tmp = tempfile.mkdtemp(prefix="zt-e2e-archive-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "audit.jsonl")
        r = run(["audit", "-c", n.conf, "export", str(head), path])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["audit", "-c", n.conf, "prune", path])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"the records of .* \(1\.\.%d\) have not all reached the log "
                                   r"collector \(audit.syslog\), which acknowledged the records "
                                   r"up to \d+: they are kept until it has them" % head)
        self.assertEqual(all_records(n)[0]["seq"], 1)  # nothing pruned
        self.c.start()
        self.wait_all(n)
        wait_for("the acknowledgement", lambda: scrape(n).get("zt_audit_syslog_lag_records") == 0)
        r = None

        def pruned():
            nonlocal r
            r = run(["audit", "-c", n.conf, "prune", path])
            return r.returncode == 0

        try:
            wait_for("the position kept", pruned)
        except AssertionError:
            raise AssertionError(r.stderr)
        self.assertGreater(all_records(n)[0]["seq"], head)


@unittest.skipUnless(os.path.exists(RSYSLOGD) and os.path.exists(OPENSSL), "rsyslog and openssl")
class OverTls(NodeTest):
    """tls:// (RFC 5425): the collector proves who it is with a certificate of the county's
    CA for the name the node reaches it by; the node, when asked, with its own."""

    def collector(self, **kw):
        c = Collector(tls=True, **kw)
        self.addCleanup(c.close)
        return c

    def node_to(self, c, host="localhost", ca=None, client=None):
        opts = 'audit = { syslog = "tls://%s:%d", syslog_ca = "%s"' % (host, c.port, ca or c.pki.ca)
        if client:
            opts += ', syslog_cert = "%s", syslog_key = "%s"' % client
        return self.node(options=opts + " }", roles=("auditor",))

    def write(self, n, count):
        for _ in range(count):
            self.assertEqual(n.request("POST", "/hello/counter")[0], 200)

    def test_records_go_over_tls_to_a_collector_that_checks_the_node_too(self):
        c = self.collector(clients=True)
        n = self.node_to(c, client=c.pki.issue("node", "e2e-test"))
        self.write(n, 4)
        want = {r["seq"] for r in all_records(n)}
        wait_for("the records over TLS", lambda: want <= {r["seq"] for r in c.records()},
                 timeout=30)
        self.assertEqual(c.records()[0]["seq"], 1)
        wait_for("the acknowledgement", lambda: scrape(n).get("zt_audit_syslog_lag_records") == 0)
        self.assertEqual(scrape(n).get("zt_audit_syslog_connected"), 1)
        self.assertEqual(n.stop(), 0)  # the session and its context freed (the ASan build)

    def refused(self, n, c, why):
        """Nothing reaches c, nothing is confirmed, and the node's log says why."""
        self.write(n, 3)
        wait_for("the refusal in the log", lambda: re.search(why, n.log()))
        self.write(n, 1)
        m = scrape(n)
        self.assertEqual(m.get("zt_audit_syslog_confirmed_seq"), 0)
        self.assertGreaterEqual(m.get("zt_audit_syslog_lag_records"), 4)
        self.assertEqual(c.records(), [])
        self.assertEqual(n.stop(), 0)

    def test_a_collector_the_county_ca_did_not_vouch_for_is_refused(self):
        c = self.collector()
        other = Pki(tempfile.mkdtemp(prefix="zt-e2e-pki-"), "Someone Else's CA")
        self.addCleanup(shutil.rmtree, other.dir, True)
        n = self.node_to(c, ca=other.ca)
        # (the collector sends the chain up to its CA, or only its own certificate)
        self.refused(n, c, "its certificate is not accepted: (self-signed certificate in "
                           "certificate chain|unable to get local issuer certificate)")

    def test_a_collector_reached_by_another_name_is_refused(self):
        c = self.collector()  # its certificate is for localhost
        n = self.node_to(c, host=HOST)
        self.refused(n, c, "its certificate is not accepted: IP address mismatch")

    def test_a_collector_that_wants_a_certificate_gets_none_and_nothing_is_counted(self):
        c = self.collector(clients=True)
        n = self.node_to(c)
        self.write(n, 3)
        wait_for("a refused connection", lambda: scrape(n).get("zt_audit_syslog_failures_total") >= 2,
                 timeout=30)
        self.assertEqual(scrape(n).get("zt_audit_syslog_confirmed_seq"), 0)
        self.assertEqual(c.records(), [])

    def test_bad_files_stop_the_start(self):
        c = self.collector()
        n = self.node(start=False)
        cert, key = c.pki.issue("node", "e2e-test")
        other_cert, _ = c.pki.issue("other", "other")
        open_key = c.pki.path("open.key")  # the node's key, readable by anyone
        shutil.copy(key, open_key)
        os.chmod(open_key, 0o644)
        with open(n.conf) as f:
            text = f.read()
        for opts, why in (
                ('syslog_ca = "/nonexistent/ca.pem"',
                 "audit.syslog: cannot read the CA certificates that vouch for the collector from "
                 "/nonexistent/ca.pem"),
                ('syslog_ca = "%s", syslog_cert = "%s", syslog_key = "%s"' % (c.pki.ca, c.pki.ca, key),
                 "audit.syslog: the private key is not the certificate's: " + key),
                ('syslog_ca = "%s", syslog_cert = "%s", syslog_key = "%s"' % (c.pki.ca, other_cert, key),
                 "audit.syslog: the private key is not the certificate's: " + key),
                ('syslog_ca = "%s", syslog_cert = "%s", syslog_key = "%s"' % (c.pki.ca, cert, open_key),
                 "audit.syslog: the node's private key may be read by group or others: %s "
                 "(mode 0644): run `chmod 600 %s`" % (open_key, open_key))):
            with self.subTest(opts=opts):
                with open(n.conf, "w") as f:
                    f.write(text + '\naudit = { syslog = "tls://localhost:%d", %s }\n' % (c.port, opts))
                for cmd in ("check", "serve"):  # check reads them as the start does
                    r = run([cmd, "-c", n.conf], timeout=30)
                    self.assertEqual(r.returncode, 1, r.stdout)
                    self.assertRegex(r.stderr, r"zhengtong.conf:\d+: ")
                    self.assertIn(why, r.stderr)
        self.assertTrue(os.path.exists(cert))


class Config(NodeTest):
    def test_bad_addresses_and_facilities_are_config_errors(self):
        n = self.node(start=False)
        for value, why in (
                ('syslog = "udp://10.0.0.5:514"', "only tcp:// (syslog over UDP loses records"),
                ('syslog = "10.0.0.5:514"', "it must begin with tcp:// or tls://"),
                ('syslog = "tcp://10.0.0.5:514", syslog_ca = "ca.pem"',
                 "audit.syslog_ca, syslog_cert and syslog_key are for audit.syslog = "
                 "\"tls://host:port\", not tcp://"),
                ('syslog_ca = "ca.pem"', "are for audit.syslog = \"tls://host:port\", which is "
                                         "not set"),
                ('syslog = "tls://10.0.0.5:6514", syslog_cert = "node.pem"',
                 "audit.syslog_cert and audit.syslog_key go together"),
                ('syslog = "tcp://10.0.0.5"', "it has no :port"),
                ('syslog = "tcp://10.0.0.5:0"', "the port must be a number from 1 to 65535"),
                ('syslog = "tcp://[::1:601"', "an IPv6 address is written [address]:port"),
                ('syslog = "tcp://[zz]:601"', "the host is not a numeric IPv6 address"),
                ('syslog = "tcp://log server:601"', "the host must be a name"),
                ('syslog = 601', "audit.syslog must be a string"),
                ('syslog_facility = "local9"', "audit.syslog_facility: 'local9' is not a syslog "
                                               "facility")):
            with self.subTest(value=value):
                with open(n.conf) as f:
                    text = f.read().split("\naudit = ")[0]
                with open(n.conf, "w") as f:
                    f.write(text + "\naudit = { %s }\n" % value)
                r = run(["check", "-c", n.conf])
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertRegex(r.stderr, r"zhengtong.conf:\d+: ")
                self.assertIn(why, r.stderr)
        with open(n.conf, "w") as f:
            f.write(text + '\naudit = { syslog = "tcp://[::1]:601", syslog_facility = "local7" }\n')
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
