#!/usr/bin/env python3
# sensor.py: the sensor plugin's benchmark against InfluxDB 1.6: ingest, range scan, aggregates.
"""Run by bench/sensor (which builds a Release daemon first). Writes its section of
bench/RESULTS.md, between the sensor markers, and leaves the rest of the file alone.

Both servers are pinned to CPU 0 (bench.Server), the clients to CPU 1, and get the same
line-protocol batches of 5,000 points (SERIES series × 5,000/SERIES timestamps each,
timestamps increasing batch after batch) over CONNS keep-alive connections; a batch
counts when its 204 came back (both fsync before answering: zhengtong's group commit,
InfluxDB's WAL with wal-fsync-delay 0).
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import bench as B  # noqa: E402  (the suite's Server, pinned to CPU 0, and request)
import benchlib  # noqa: E402
from bench import HOST, free_port  # noqa: E402
SECOND = 10**9
TIMEOUT = 120  # seconds for one query: a whole series is read in one answer


def server(name, argv, port, workdir, ready):
    """A bench.Server in a folder of its own, started and answering GET ready with 200."""
    d = os.path.join(workdir, name)
    os.makedirs(d)
    srv = B.Server(name, argv, port, d).start()
    srv.wait_ready(ready, timeout=30)
    return srv


def make_batches(nbatches, series, base):
    per = 5000 // series
    out = []
    for b in range(nbatches):
        lines = []
        for j in range(per):
            t = base + (b * per + j) * SECOND
            for s in range(series):
                lines.append("bench,id=s%d v=%d.%d %d\n" % (s, (b * per + j) % 1000, s, t))
        out.append("".join(lines).encode())
    return out


def ingest(port, path, headers, batches, conns):
    """POST every batch over conns keep-alive connections; (seconds, points)."""
    lock = threading.Lock()
    queue = list(range(len(batches)))
    errors = []

    def worker():
        c = http.client.HTTPConnection(HOST, port, timeout=120)
        while True:
            with lock:
                if not queue or errors:
                    break
                i = queue.pop(0)
            c.request("POST", path, body=batches[i], headers=headers)
            r = c.getresponse()
            data = r.read()
            if r.status != 204:
                errors.append((r.status, data[:300]))
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit("%s answered %r" % (path, errors[0]))
    return dt, 5000 * len(batches)


def zhengtong(build, workdir, nng_url):
    port = free_port()
    conf = os.path.join(workdir, "zhengtong.conf")
    with open(conf, "w") as f:
        f.write('node_name = "bench"\nregion_code = "330100"\n'
                'listen = { "%s:%d" }\ndata_dir = "%s"\nmap_size = %d\nlog_level = "warn"\n'
                'plugin_dir = "%s"\nplugins = { "sensor" }\n'
                'sensor = { auto_create = true, nng_listen = "%s", check_every = 3600 }\n'
                % (HOST, port, os.path.join(workdir, "data"), 16 << 30,
                   os.path.join(build, "plugins"), nng_url))
    zt = os.path.join(build, "zhengtong")
    p = server("zhengtong", [zt, "serve", "-c", conf], port, workdir, "/healthz")
    out = subprocess.run([zt, "admin", "-c", conf, "key", "add", "bench", "sensor", "sensor_device"],
                         capture_output=True, text=True, check=True).stdout
    key = out.strip().splitlines()[-1].strip()
    return p, port, key


def influxd(workdir):
    port, rpc = free_port(), free_port()
    conf = os.path.join(workdir, "influxdb.conf")
    d = os.path.join(workdir, "influx")
    with open(conf, "w") as f:
        f.write('reporting-disabled = true\nbind-address = "%s:%d"\n'
                '[meta]\n  dir = "%s/meta"\n'
                '[data]\n  dir = "%s/data"\n  wal-dir = "%s/wal"\n  wal-fsync-delay = "0s"\n'
                '  query-log-enabled = false\n'
                '[http]\n  bind-address = "%s:%d"\n  log-enabled = false\n'
                '[monitor]\n  store-enabled = false\n'
                '[continuous_queries]\n  enabled = false\n'
                % (HOST, rpc, d, d, d, HOST, port))
    # env(1) execs influxd in the same process: Server has no environment of its own
    p = server("influxd", ["env", "GOMAXPROCS=1", "influxd", "-config", conf], port, workdir,
               "/query?q=SHOW+DATABASES")
    st, _, b = B.request(port, "POST", "/query?" + urllib.parse.urlencode({"q": "CREATE DATABASE bench"}),
                         timeout=TIMEOUT)
    if st != 200:
        raise SystemExit("influxd CREATE DATABASE: %d %r" % (st, b))
    return p, port


def timed(fn, rounds):
    """Median seconds of fn() over rounds."""
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def zt_queries(port, key, series, start, end):
    h = {"Authorization": "Token " + key}
    st, _, b = B.request(port, "GET", "/sensor/streams?limit=1000", timeout=TIMEOUT, headers=h)
    ids = [s["id"] for s in json.loads(b)["items"] if s["measurement"] == "bench"]
    assert len(ids) == series, ids

    def scan():
        n = 0
        for sid in ids:
            cursor = None
            while True:
                q = "limit=10000" + ("&cursor=" + cursor if cursor else "")
                st, _, b = B.request(port, "GET", "/sensor/streams/%d/observations?%s" % (sid, q),
                                     timeout=TIMEOUT, headers=h)
                d = json.loads(b)
                n += len(d["observations"])
                cursor = d["next"]
                if not cursor:
                    break
        return n

    def agg():
        n = 0
        for sid in ids:
            st, _, b = B.request(port, "GET", "/sensor/streams/%d/aggregate?every=1m&fn=mean&start=%d&end=%d"
                                 % (sid, start, end), timeout=TIMEOUT, headers=h)
            n += len(json.loads(b)["windows"])
        return n

    return scan, agg


def influx_queries(port, series, start, end):
    def q(text):
        st, _, b = B.request(port, "GET", "/query?" + urllib.parse.urlencode({"db": "bench", "q": text}),
                             timeout=TIMEOUT)
        if st != 200:
            raise SystemExit("influx %s: %d %r" % (text, st, b[:300]))
        return json.loads(b)

    def scan():
        n = 0
        for s in range(series):
            d = q("SELECT v FROM bench WHERE id='s%d'" % s)
            n += len(d["results"][0]["series"][0]["values"])
        return n

    def agg():
        n = 0
        for s in range(series):
            d = q("SELECT mean(v) FROM bench WHERE id='s%d' AND time >= %d AND time < %d GROUP BY time(1m)"
                  % (s, start, end))
            n += len(d["results"][0]["series"][0]["values"])
        return n

    return scan, agg


def nng_ingest(build, url, batches, workdir, port, key):
    files = []
    for i, b in enumerate(batches):
        p = os.path.join(workdir, "nng%05d" % i)
        with open(p, "wb") as f:
            f.write(b)
        files.append(p)
    sender = os.path.join(build, "tests", "sensor_nng_send")
    h = {"Authorization": "Token " + key}
    t0 = time.perf_counter()
    p = subprocess.Popen(["taskset", "-c", "1", sender, url] + files)
    try:
        while True:
            st, _, b = B.request(port, "GET", "/sensor/inputs", timeout=TIMEOUT, headers=h)
            d = json.loads(b)["nng"]
            if d["points"] >= 5000 * len(batches):
                break
            if time.perf_counter() - t0 > 600 or (p.poll() not in (None, 0)):
                raise SystemExit("nng: only %r" % d)
            time.sleep(0.005)
        dt = time.perf_counter() - t0
    finally:
        p.wait()
    return dt, 5000 * len(batches)



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--batches", type=int, default=200, help="batches of 5,000 points over HTTP")
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if not shutil.which("influxd"):
        raise SystemExit("influxd is missing: scripts/setup --bench installs Debian's influxdb")
    workdir = tempfile.mkdtemp(prefix="zt-bench-sensor-")
    base = (int(time.time()) - 30 * 86400) * SECOND
    base -= base % (60 * SECOND)
    batches = make_batches(a.batches, a.series, base)
    span = a.batches * (5000 // a.series) * SECOND
    nng_batches = make_batches(a.batches, a.series, base + span)
    start, end = base, base + span
    res = {}
    procs = []
    try:
        nng_url = "tcp://%s:%d" % (HOST, free_port())
        zt, zport, key = zhengtong(a.build, workdir, nng_url)
        procs.append(zt)
        print("zhengtong: ingest over HTTP", flush=True)
        c0 = zt.cpu_seconds()
        dt, n = ingest(zport, "/api/v2/write?org=o&bucket=b&precision=ns",
                       {"Authorization": "Token " + key}, batches, a.conns)
        res["zt_http"] = (n / dt, n / max(zt.cpu_seconds() - c0, 1e-9))
        scan, agg = zt_queries(zport, key, a.series, start, end)
        print("zhengtong: queries", flush=True)
        npts = scan()
        assert npts == n, (npts, n)
        res["zt_scan"] = n / timed(scan, a.rounds)
        nwin = agg()
        res["zt_agg"] = n / timed(agg, a.rounds)
        res["zt_windows"] = nwin
        print("zhengtong: ingest over nng", flush=True)
        c0 = zt.cpu_seconds()
        dt, n2 = nng_ingest(a.build, nng_url, nng_batches, workdir, zport, key)
        res["zt_nng"] = (n2 / dt, n2 / max(zt.cpu_seconds() - c0, 1e-9))
        zt.stop()
        procs.remove(zt)

        ix, iport = influxd(workdir)
        procs.append(ix)
        print("influxd: ingest", flush=True)
        c0 = ix.cpu_seconds()
        dt, n = ingest(iport, "/write?db=bench&precision=ns", {}, batches, a.conns)
        res["ix_http"] = (n / dt, n / max(ix.cpu_seconds() - c0, 1e-9))
        scan, agg = influx_queries(iport, a.series, start, end)
        print("influxd: queries", flush=True)
        npts = scan()
        assert npts == n, (npts, n)
        res["ix_scan"] = n / timed(scan, a.rounds)
        iwin = agg()
        assert iwin >= nwin, (iwin, nwin)  # InfluxDB also lists empty windows at the ends
        res["ix_agg"] = n / timed(agg, a.rounds)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    r = res
    ratio = lambda a_, b_: a_ / b_
    rows = [
        ("Ingest, line protocol over HTTP (points/s acknowledged)", r["zt_http"][0], r["ix_http"][0], 1.3),
        ("Range scan (points/s returned as JSON)", r["zt_scan"], r["ix_scan"], None),
        ("mean() per minute (points/s aggregated)", r["zt_agg"], r["ix_agg"], 2.0),
    ]
    lines = ["## Sensor ingestion vs InfluxDB 1.6", "",
             "Written by `bench/sensor` (%s UTC, commit `%s`). %d batches of 5,000 points (%d series × %d "
             "timestamps each) over %d keep-alive connections; both servers pinned to CPU 0 (InfluxDB with "
             "GOMAXPROCS=1), clients on CPU 1; fsync before each answer on both sides. Queries: every "
             "series read whole (zhengtong pages of 10,000), then `mean` per 1-minute window over the "
             "whole range, median of %d rounds." % (
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime()), benchlib.git_commit(), a.batches, a.series,
                 5000 // a.series, a.conns, a.rounds), "",
             "| benchmark | zhengtong | InfluxDB 1.6 | ratio | target | |", "| --- | --- | --- | --- | --- | --- |"]
    for name, z, i, target in rows:
        rr = ratio(z, i)
        verdict = "" if target is None else ("**PASS**" if rr >= target else "**FAIL**")
        lines.append("| %s | %s | %s | %.2f× | %s | %s |" % (name, fmt(z), fmt(i), rr,
                                                            "≥ %.1f×" % target if target else "", verdict))
    lines += ["",
              "| zhengtong alone | result | target | |", "| --- | --- | --- | --- |",
              "| Ingest over HTTP per CPU-second of the server (one core) | %s | ≥ 1,000,000 | %s |" % (
                  fmt(r["zt_http"][1]), "**PASS**" if r["zt_http"][1] >= 1e6 else "**FAIL**"),
              "| Ingest over nng (points/s committed) | %s | | |" % fmt(r["zt_nng"][0]),
              "| Ingest over nng per CPU-second of the server | %s | ≥ 1,000,000 | %s |" % (
                  fmt(r["zt_nng"][1]), "**PASS**" if r["zt_nng"][1] >= 1e6 else "**FAIL**"),
              "| Points scanned per second (aggregate) | %s | ≥ 10,000,000 | %s |" % (
                  fmt(r["zt_agg"]), "**PASS**" if r["zt_agg"] >= 1e7 else "**FAIL**"),
              "| InfluxDB ingest per CPU-second of influxd | %s | | |" % fmt(r["ix_http"][1]),
              "", NOTE]
    text = "\n".join(lines)
    print(text)
    benchlib.write_section("sensor", text)


NOTE = ("Per CPU-second: points over the server's user + system CPU time during the run (all its "
        "threads), i.e. what one core sustains. nng: one message of 5,000 points is one job and, "
        "when messages come one per loop iteration, one commit each (HTTP batches share commits); "
        "it is not acknowledged to the sender, and counts once /sensor/inputs says it is "
        "committed. Scans read LMDB through zt_cursor_seek, one call per point.")


def fmt(x):
    return "{:,.0f}".format(x)


if __name__ == "__main__":
    try:
        main()
    except B.BenchError as e:  # a server that did not start: its log, as before
        raise SystemExit(str(e))
