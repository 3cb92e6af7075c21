#!/usr/bin/env python3
"""bench.py: runs Zhengtong against nginx peers with wrk and writes bench/RESULTS.md.

Called by bench/run after the build; standard library only. Every server it starts runs in
its own session and is killed when this script ends, on every path (exit, exception,
SIGINT/SIGTERM/SIGHUP; a SIGKILL of this script reaches the servers through
PR_SET_PDEATHSIG). Nothing is measured before the target has answered one request with a
200 and the expected body, and a run that saw errors or non-2xx answers fails the suite.
"""

import argparse
import ctypes
import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)
import benchlib  # noqa: E402  (the build, the commit, CPU time, RESULTS.md sections)
from benchlib import git_commit  # noqa: E402
HOST = "127.0.0.1"

# Two cores: the server under test on one, wrk (and this script) on the other, so that the
# load generator never steals the server's core. With one core nothing is pinned.
NCPU = os.cpu_count() or 1
SERVER_CPU = 0 if NCPU >= 2 else None
CLIENT_CPU = 1 if NCPU >= 2 else None

NGINX_BODY = '{"greeting":"Hello from nginx"}'
NGINX_LUA_BODY = '{"ok":true}'


class BenchError(Exception):
    """A benchmark could not be run or measured honestly: the suite fails loudly."""


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _server_child():
    # Runs in the child between fork and exec: die with this script, sit on the server core.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if SERVER_CPU is not None:
        os.sched_setaffinity(0, {SERVER_CPU})


def _client_child():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_live = set()
_tmpdirs = []
_state_dir = None  # bench/run's: where it finds what to clean up if this script is killed


def _save_state():
    """Write the live servers' process groups for bench/run's trap, which stops them even
    when a SIGKILL left this script no chance to (the temp folders are inside its folder)."""
    if not _state_dir:
        return
    tmp = os.path.join(_state_dir, "pgids.new")
    with open(tmp, "w") as f:
        f.write("".join("%d\n" % s.proc.pid for s in _live))
    os.replace(tmp, os.path.join(_state_dir, "pgids"))


def mkdtemp(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir=_state_dir)
    _tmpdirs.append(d)
    _save_state()
    return d


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One server process (and its children) in its own session."""

    def __init__(self, name, argv, port, workdir):
        self.name = name
        self.argv = argv
        self.port = port
        self.dir = workdir
        self.log_path = os.path.join(workdir, "server.log")
        self.proc = None

    def start(self):
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_server_child,
            )
        finally:
            logf.close()
        _live.add(self)
        _save_state()
        return self

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def check_alive(self):
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(
                "%s exited with %d; its log ends:\n%s" % (self.name, rc, self.log_tail())
            )

    def wait_ready(self, path, timeout=15.0):
        """Poll until `path` answers 200 (the server is listening and serving)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                st, _, _ = request(self.port, "GET", path, timeout=1)
                if st == 200:
                    return
                last = "GET %s answered %d" % (path, st)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.01)
        raise BenchError(
            "%s did not answer GET %s with 200 within %gs (%s); its log ends:\n%s"
            % (self.name, path, timeout, last, self.log_tail())
        )

    def cpu_seconds(self):
        """User + system CPU time of the server and its children (nginx's worker)."""
        total = 0.0
        for pid in [self.proc.pid] + children(self.proc.pid):
            try:
                total += benchlib.cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                pass  # a child that ended meanwhile
        return total

    def stop(self, timeout=10.0):
        """SIGTERM the session, wait, then SIGKILL whatever is left. The exit code."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # nginx workers, anything left
        except (ProcessLookupError, PermissionError):
            pass
        if rc is None:
            self.proc.wait()
        _live.discard(self)
        _save_state()
        return rc


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def kill_all():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    for s in list(_live):
        try:
            s.stop(timeout=5)
        except Exception as e:  # keep killing the others
            log("could not stop %s: %r" % (s.name, e))
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()
    _save_state()


def _on_signal(signum, frame):
    log("stopped by signal %d: stopping the servers" % signum)
    raise SystemExit(128 + signum)


# ---- HTTP checks -------------------------------------------------------------------


def request(port, method, path, body=None, timeout=5, headers=None):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if body is not None:
            h["Content-Type"] = "application/json"
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        c.close()


def expect(server, method, path, check, body=None, headers=None):
    """One request that must answer 200 and a body that `check` accepts (returns the
    parsed body). Fails loudly otherwise: a benchmark of a wrong answer means nothing."""
    server.check_alive()
    try:
        st, hdrs, data = request(server.port, method, path, body=body, headers=headers)
    except (OSError, http.client.HTTPException) as e:
        raise BenchError("%s: %s %s failed: %r" % (server.name, method, path, e))
    if st != 200:
        raise BenchError(
            "%s: %s %s answered %d, not 200: %s" % (server.name, method, path, st, data[:300])
        )
    try:
        return check(data)
    except Exception as e:
        raise BenchError(
            "%s: %s %s: unexpected body %r (%s)" % (server.name, method, path, data[:300], e)
        )


def body_equals(text):
    def check(data):
        got = data.decode().strip()
        if got != text:
            raise ValueError("expected %r" % text)
        return got

    return check


def json_object(data):
    v = json.loads(data)
    if not isinstance(v, dict):
        raise ValueError("not a JSON object")
    return v


def json_equals(want):
    def check(data):
        v = json.loads(data)
        if v != want:
            raise ValueError("expected %r" % (want,))
        return v

    return check


def number_in(v):
    """The one number a counter answer carries ({"counter": 3}, {"count": 3}, ...)."""
    nums = [x for x in v.values() if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if len(nums) != 1:
        raise ValueError("expected one number in %r" % (v,))
    return nums[0]


def metrics(server):
    """Prometheus samples without labels: name → value."""
    _, _, data = request(server.port, "GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# ---- servers -----------------------------------------------------------------------


def zhengtong_bin(build):
    return os.path.join(build, "zhengtong")


def zt_config(build, workdir, port):
    """A temp config: its own port, data folder and lua folder (the repo's lua/ plus the
    bench plugin), plugins hello (C) and benchlua (Lua), warnings only."""
    lua_dir = os.path.join(workdir, "lua")
    if os.path.isdir(os.path.join(ROOT, "lua")):
        shutil.copytree(os.path.join(ROOT, "lua"), lua_dir)
    shutil.copytree(
        os.path.join(BENCH, "lua", "plugins", "benchlua"),
        os.path.join(lua_dir, "plugins", "benchlua"),
        dirs_exist_ok=True,
    )
    conf = os.path.join(workdir, "zhengtong.conf")

    def s(x):
        return json.dumps(x)  # a JSON string literal is a valid Lua string literal here

    with open(conf, "w") as f:
        f.write(
            "node_name = %s\n" % s("bench")
            + "region_code = %s\n" % s("330100")
            + "listen = { %s }\n" % s("%s:%d" % (HOST, port))
            + "data_dir = %s\n" % s(os.path.join(workdir, "data"))
            + "map_size = %d\n" % (4 << 30)
            + "log_level = %s\n" % s("warn")
            + "plugin_dir = %s\n" % s(os.path.join(build, "plugins"))
            + "lua_dir = %s\n" % s(lua_dir)
            + 'plugins = { "hello", "benchlua" }\n'
        )
    return conf


def start_zhengtong(build, name="zhengtong"):
    workdir = mkdtemp("zt-bench-")
    port = free_port()
    conf = zt_config(build, workdir, port)
    srv = Server(name, [zhengtong_bin(build), "serve", "-c", conf], port, workdir).start()
    srv.wait_ready("/healthz")
    return srv


ADMIN_PASSWORD = "Bench-Kq8-vLx3-1"


def sign_in(srv):
    """Sign in as the first start's 'admin' (its one-time password is on stderr), set a
    password of our own (a one-time password opens only /auth/), and return the bearer
    token: POST /hello/counter needs a signed-in caller."""
    with open(srv.log_path, errors="replace") as f:
        m = re.search(r"one-time password\s*\n\s*(\S+)", f.read())
    if not m:
        raise BenchError("%s printed no one-time password for 'admin'; its log ends:\n%s"
                         % (srv.name, srv.log_tail()))
    pw = m.group(1)
    st, _, data = request(srv.port, "POST", "/auth/login", {"login": "admin", "password": pw},
                          timeout=30)
    if st != 200:
        raise BenchError("%s: POST /auth/login answered %d: %s" % (srv.name, st, data[:300]))
    d = json.loads(data)
    token = d["token"]
    auth = {"Authorization": "Bearer " + token}
    if d.get("user", {}).get("must_change_password"):
        st, _, data = request(srv.port, "POST", "/auth/password",
                              {"old_password": pw, "new_password": ADMIN_PASSWORD},
                              timeout=30, headers=auth)
        if st not in (200, 204):
            raise BenchError("%s: POST /auth/password answered %d: %s" % (srv.name, st, data[:300]))
    return token


def nginx_prefix():
    out = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    m = re.search(r"--prefix=(\S+)", out)
    return m.group(1) if m else "/usr/share/nginx"


def lua_load_modules():
    """load_module lines for ndk and the Lua module, with absolute paths (our -p prefix is a
    temp folder, so the packaged relative paths would not resolve)."""
    prefix = nginx_prefix()
    lines = []
    for conf in ("mod-http-ndk.conf", "mod-http-lua.conf"):
        path = None
        for d in ("/usr/share/nginx/modules-available", "/etc/nginx/modules-enabled"):
            for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if f.endswith(conf):
                    path = os.path.join(d, f)
                    break
            if path:
                break
        if not path:
            raise BenchError("no %s: is libnginx-mod-http-lua installed?" % conf)
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*load_module\s+(\S+?);", line)
                if m:
                    mod = m.group(1)
                    if not os.path.isabs(mod):
                        mod = os.path.join(prefix, mod)
                    lines.append("load_module %s;" % mod)
    return "\n".join(lines)


def start_nginx(lua):
    workdir = mkdtemp("nginx-bench-")
    port = free_port()
    if lua:
        head = lua_load_modules()
        location = (
            "location = /lua { default_type application/json; "
            "content_by_lua_block { ngx.say('%s') } }" % NGINX_LUA_BODY
        )
    else:
        head = ""
        location = "location = /hello { default_type application/json; return 200 '%s'; }" % (
            NGINX_BODY
        )
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            """%(head)s
worker_processes 1;
daemon off;
master_process on;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path %(dir)s/body;
    server {
        listen %(host)s:%(port)d;
        %(location)s
    }
}
"""
            % dict(head=head, dir=workdir, host=HOST, port=port, location=location)
        )
    name = "nginx+lua" if lua else "nginx"
    argv = ["nginx", "-p", workdir, "-c", conf, "-e", os.path.join(workdir, "error.log")]
    srv = Server(name, argv, port, workdir).start()
    srv.wait_ready("/lua" if lua else "/hello")
    return srv


# ---- wrk ---------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not m:
        raise BenchError("wrk: cannot read the latency %r" % text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url, conns, duration, script=None, env=None):
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration, "--latency", "--timeout", "10s"]
    if script:
        argv += ["-s", script]
    argv.append(url)
    if CLIENT_CPU is not None:
        argv = ["taskset", "-c", str(CLIENT_CPU)] + argv
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    p = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, preexec_fn=_client_child,
        env=dict(os.environ, **(env or {})),
    )
    ru1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    out = p.stdout
    if p.returncode != 0:
        raise BenchError("%s failed (%d):\n%s%s" % (" ".join(argv), p.returncode, out, p.stderr))
    r = {"raw": out, "client_cpu": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
         / (t1 - t0)}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise BenchError("wrk printed no Requests/sec:\n" + out)
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        if not m:
            raise BenchError("wrk printed no %s%% latency:\n%s" % (pct, out))
        r["p" + pct] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(int(x) for x in m.groups()) if m else 0
    if r["requests"] == 0:
        raise BenchError("wrk completed no request:\n" + out)
    if r["non2xx"]:
        raise BenchError("%d non-2xx answers from %s:\n%s" % (r["non2xx"], url, out))
    if r["errors"]:
        raise BenchError("socket errors against %s:\n%s" % (url, out))
    return r


class Target:
    """Something wrk hits: a server, a path, a concurrency, maybe a wrk script."""

    def __init__(self, label, server, path, conns, script=None, env=None):
        self.env = env
        self.label = label
        self.server = server
        self.path = path
        self.conns = conns
        self.script = script
        self.runs = []
        self.extra = []  # per-run notes (requests per commit, ...)

    @property
    def url(self):
        return "http://%s:%d%s" % (HOST, self.server.port, self.path)

    def run(self, duration, keep=True):
        self.server.check_alive()
        cpu0, t0 = self.server.cpu_seconds(), time.monotonic()
        r = wrk(self.url, self.conns, duration, self.script, self.env)
        r["cpu"] = (self.server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        self.server.check_alive()
        if keep:
            self.runs.append(r)
        return r

    def median(self, key):
        return statistics.median(r[key] for r in self.runs)


def alternate(targets, rounds, duration, warmup, after_run=None):
    """Warm each target up, then `rounds` rounds that run every target once, in turn, so
    that slow drift on a shared machine hits each side alike."""
    for t in targets:
        log("warm-up %s (%gs)" % (t.label, warmup))
        t.run(warmup, keep=False)
    for i in range(rounds):
        for t in targets if i % 2 == 0 else list(reversed(targets)):
            before = after_run and after_run(t, None)
            r = t.run(duration)
            if after_run:
                after_run(t, before)
            log(
                "round %d/%d %-34s %10.0f req/s  p50 %.3f ms  p99 %.3f ms"
                % (i + 1, rounds, t.label, r["rps"], r["p50"], r["p99"])
            )


# ---- the benchmarks ----------------------------------------------------------------


def paired_ratios(a, b):
    """a/b requests/s of each round: the two runs of a round are back to back, so they
    share whatever else the machine was doing then."""
    return [x["rps"] / y["rps"] for x, y in zip(a.runs, b.runs)]


def bench_pair(name, title, a, b, target, opts, note):
    alternate([a, b], opts.rounds, opts.duration, opts.warmup)
    ratios = paired_ratios(a, b)
    ratio = statistics.median(ratios)
    return dict(
        name=name,
        title=title,
        targets=[a, b],
        ratio=ratio,
        ratios=ratios,
        ratio_text="%.2f×" % ratio,
        target_text="≥ %.1f×" % target,
        passed=ratio >= target,
        note=note,
    )


def bench_writes(zt, token, opts):
    """Group commit (50 connections: many writes per loop iteration share one commit) vs
    one commit per request (one connection: each request alone in its batch)."""
    script = os.path.join(BENCH, "post.lua")
    env = {"ZT_BENCH_TOKEN": token}
    group = Target("zhengtong POST /hello/counter -c%d" % opts.conns, zt, "/hello/counter",
                   opts.conns, script, env)
    single = Target("zhengtong POST /hello/counter -c1", zt, "/hello/counter", 1, script, env)

    def counters(t, before):
        m = metrics(zt)
        now = (m.get("zt_lmdb_commits_total", 0), m.get("zt_lmdb_nested_txns_total", 0),
               m.get("zt_lmdb_used_bytes", 0))
        if before is None:
            return now
        commits = now[0] - before[0]
        writes = now[1] - before[1]
        t.extra.append(writes / commits if commits else float("nan"))
        growth.append((now[2] - before[2], writes))
        return None

    growth = []
    alternate([group, single], opts.rounds, opts.duration, opts.warmup, after_run=counters)
    ratios = paired_ratios(group, single)
    ratio = statistics.median(ratios)
    return dict(
        name="writes",
        title="Durable writes: group commit vs one commit per request",
        targets=[group, single],
        ratio=ratio,
        ratios=ratios,
        ratio_text="%.1f×" % ratio,
        target_text="≥ 20×",
        passed=ratio >= 20,
        note=WRITES_NOTE + growth_note(growth),
        per_commit=True,
    )


def growth_note(growth):
    grew = sum(g for g, _ in growth)
    writes = sum(w for _, w in growth)
    if not writes:
        return ""
    return ("\n\nStorage: `zt_lmdb_used_bytes` grew by %.1f MB over the %d measured writes, "
            "%.0f bytes per write (the counter is rewritten in place; what stays is the audit "
            "record each change appends, and LMDB's copy-on-write pages)."
            % (grew / 1048576, writes, grew / writes))


WRITES_NOTE = """\
Both rows are the same server and the same route (`POST /hello/counter`: one record read,
incremented and written, acknowledged only after its batch is committed and fsynced).
*One commit per request* is measured with a single connection (`wrk -c1`): with one request
in flight there is exactly one write in each batch, so every request pays one LMDB commit
and one fsync of its own (the *writes per commit* column, from `zt_lmdb_nested_txns_total`
and `zt_lmdb_commits_total` in `/metrics`, shows it: 1.0). This is the best a server that commits
every request on its own can do, whatever the number of clients: on one event-loop thread
with a synchronous commit, such a server cannot overlap two fsyncs, so its throughput is
bounded by 1 / (commit time) — which is what `-c1` measures, plus one loopback round trip
per request. With 50 connections the same code shares each commit among the writes that
arrived while its batch was open: those of one loop iteration, or of a few when the batch
waits for as many writers as the two batches before it had (`limits.commit_wait`, at most
1 ms by default; a lone writer never waits, so the `-c1` row does not)."""


# ---- the token check and the audit append ------------------------------------------

AUDIT_FUNCS = ("zt__audit_queue", "zt__audit_flush")
AUTH_TARGET = 0.05  # issue 4: together at most 5 % off the tiny route's throughput


def check_bearer(srv, token):
    """The token must really be a signed-in caller's: on the public GET /hello a bad token is
    ignored, so a measurement "with a token" could silently be an anonymous one. GET /auth/me
    (signed-in only) answers 200 to this token, and so does wrk with bearer.lua for a second
    (an anonymous request there would be a 401, which fails the run)."""
    def is_admin(data):
        v = json_object(data)
        if v.get("login") != "admin":
            raise ValueError("not the signed-in admin")
        return v

    expect(srv, "GET", "/auth/me", is_admin, headers={"Authorization": "Bearer " + token})
    wrk("http://%s:%d/auth/me" % (HOST, srv.port), 1, 1, os.path.join(BENCH, "bearer.lua"),
        {"ZT_BENCH_TOKEN": token})


def auth_costs_section(measured):
    """CALLGRIND.md's section on issue 4's costs, from the runs of this invocation: the token
    check (GET /hello with a token minus without) and one audit append (the inclusive
    instructions of zt__audit_queue + zt__audit_flush per write), each against the tiny
    route. It ends with the numbers as JSON in an HTML comment, which RESULTS.md reads."""
    if "c" not in measured or not ({"auth", "writes"} & measured.keys()):
        return []
    tiny = measured["c"][0]
    costs = dict(commit=git_commit(), tiny_ir=round(tiny))
    L = ["## Cost of the token check and of one audit append (issue 4)", ""]
    L.append("Against the tiny route `GET /hello`: %.0f instructions per request." % tiny)
    L.append("")
    if "auth" in measured:
        tok = measured["auth"][0] - tiny
        costs["token_ir"] = round(tok)
        L.append("- Token check: `GET /hello` with `Authorization: Bearer <token>` of a "
                 "signed-in user took %.0f instructions per request, %+.0f (%+.2f %%) over the "
                 "anonymous one: the header's 70 bytes parsed by http-parser and kept, the "
                 "token tagged with a keyed SipHash that finds its cached session (BLAKE2b and "
                 "LMDB only on a miss; the identity generation that validates it is read from "
                 "LMDB once per loop iteration) and the caller copied into the request." % (measured["auth"][0], tok, 100 * tok / tiny))
        if "pad" in measured:
            own = measured["auth"][0] - measured["pad"][0]
            costs.update(check_ir=round(own), pad_ir=round(measured["pad"][0] - tiny))
            L.append("- Of that, the check itself: %.0f instructions per request (%.2f %% of the "
                     "tiny route) over the same request with a header of the same length that "
                     "is not read (`X-Bench-Pad-1`, %.0f instructions per request, %+.0f: the "
                     "longer request's parsing and keeping)."
                     % (own, 100 * own / tiny, measured["pad"][0], measured["pad"][0] - tiny))
    if "writes" in measured:
        inc = measured["writes"][1]
        missing = [f for f in AUDIT_FUNCS if f not in inc]
        if missing:
            raise BenchError("callgrind saw no %s in the writes run: renamed, inlined or "
                             "stripped?" % ", ".join(missing))
        q, fl = inc["zt__audit_queue"], inc["zt__audit_flush"]
        costs.update(audit_ir=round(q + fl), audit_queue_ir=round(q), audit_flush_ir=round(fl))
        L.append("- Audit append: in the durable-write run, `zt__audit_queue` (per request, "
                 "in `complete()`) took %.0f and `zt__audit_flush` (per batch, in `on_check()`, "
                 "shared by the batch's requests: the nested write transaction, the previous "
                 "hash, one BLAKE2b and one put per record) %.0f instructions per write, "
                 "inclusive: %.0f together, %.2f %% of the tiny route's instructions per request."
                 % (q, fl, q + fl, 100 * (q + fl) / tiny))
    L.append("")
    L.append("bench/RESULTS.md's *token check and audit append* benchmark reads these numbers:")
    L.append("")
    L.append("<!-- auth-costs %s -->" % json.dumps(costs, sort_keys=True))
    L.append("")
    return L


def read_marker(filename, marker):
    """The JSON a run left in bench/<filename> as <!-- marker {...} -->, or None."""
    try:
        with open(os.path.join(BENCH, filename)) as f:
            m = re.search(r"<!-- %s (\{.*?\}) -->" % re.escape(marker), f.read())
    except OSError:
        return None
    return json.loads(m.group(1)) if m else None


def bench_auth(zt, token, opts):
    """Issue 4: the tiny route with a signed-in caller's token vs anonymously (the route is
    public, yet the core resolves a token that is sent), and one audit append in
    instructions against the tiny route's (from CALLGRIND.md: a throughput ratio cannot
    isolate it, writes are fsync-bound)."""
    check_bearer(zt, token)
    # pipelined: the server's core bounds the run (one wrk write per 16 requests); then as
    # the other benchmarks run, where wrk's core is as busy as the server's
    pipe, depth = os.path.join(BENCH, "pipeline.lua"), "16"
    psigned = Target("zhengtong GET /hello with a bearer token, %s pipelined" % depth, zt,
                     "/hello", opts.conns, pipe,
                     {"ZT_BENCH_TOKEN": token, "ZT_BENCH_PIPELINE": depth})
    panon = Target("zhengtong GET /hello anonymous, %s pipelined" % depth, zt, "/hello",
                   opts.conns, pipe, {"ZT_BENCH_PIPELINE": depth})
    ppad = Target("zhengtong GET /hello anonymous with a header as long as the token's, %s "
                  "pipelined" % depth, zt, "/hello", opts.conns, pipe,
                  {"ZT_BENCH_PAD": token, "ZT_BENCH_PIPELINE": depth})
    alternate([psigned, panon, ppad], opts.rounds, opts.duration, opts.warmup)
    signed = Target("zhengtong GET /hello with a bearer token", zt, "/hello", opts.conns,
                    os.path.join(BENCH, "bearer.lua"), {"ZT_BENCH_TOKEN": token})
    anon = Target("zhengtong GET /hello anonymous", zt, "/hello", opts.conns)
    alternate([signed, anon], opts.rounds, opts.duration, opts.warmup)
    check_bearer(zt, token)  # still a live session: every run above resolved it
    ratios = paired_ratios(psigned, panon)
    ratio = statistics.median(ratios)
    token_loss = max(0.0, 1 - ratio)
    check_ratio = statistics.median(paired_ratios(psigned, ppad))
    bytes_ratio = statistics.median(paired_ratios(ppad, panon))
    plain = statistics.median(paired_ratios(signed, anon))
    costs = read_marker("CALLGRIND.md", "auth-costs")  # auth_costs_section's
    L = []
    L.append("All rows are the same node and the same public route; the rows with a token "
             "send the bearer token of the signed-in `admin` (`bench/bearer.lua`, "
             "`bench/pipeline.lua`; `GET /auth/me` answered 200 to it before and after the "
             "rounds), so the core resolves it: the header parsed and kept, the token tagged "
             "with a keyed SipHash that finds its cached session (the identity generation "
             "that validates it is read from LMDB once per loop iteration) and the caller "
             "copied into the request. The third row sends the same bytes under a header "
             "of the same length that the server keeps but does not read (`X-Bench-Pad-1: "
             "Bearer <token>`), which splits the token's cost into the check itself and "
             "the longer request. The first three rows pipeline "
             "%s requests per connection (`bench/pipeline.lua`): wrk then does far less per "
             "request than the server (its CPU column), so the server's core bounds the run "
             "and the token's cost shows in requests/s. In the last two, as in the other "
             "benchmarks, wrk's core is as busy as the server's, which hides most of it: "
             "their ratio is %.3f×." % (depth, plain))
    L.append("")
    L.append("| cost | measured as | share of the tiny route |")
    L.append("| --- | --- | ---: |")
    L.append("| token check | 1 − the pipelined ratio above (%.3f); a ratio above 1 is noise and "
             "counts as 0 | %.2f %% |" % (ratio, 100 * token_loss))
    L.append("| (of which the check itself) | 1 − the first row / the third (%.3f): the same "
             "bytes sent, the token not resolved | (%.2f %%) |"
             % (check_ratio, 100 * max(0.0, 1 - check_ratio)))
    L.append("| (of which the header's bytes) | 1 − the third row / the second (%.3f): a "
             "request 70 bytes longer, whatever the header | (%.2f %%) |"
             % (bytes_ratio, 100 * max(0.0, 1 - bytes_ratio)))
    audit = None
    if costs and "audit_ir" in costs and costs.get("tiny_ir"):
        audit = costs["audit_ir"] / costs["tiny_ir"]
        L.append("| one audit append | `zt__audit_queue` + `zt__audit_flush` inclusive, %d "
                 "instructions per write (%d + %d), / `GET /hello`'s %d per request "
                 "(callgrind) | %.2f %% |"
                 % (costs["audit_ir"], costs["audit_queue_ir"], costs["audit_flush_ir"],
                    costs["tiny_ir"], 100 * audit))
    else:
        L.append("| one audit append | not measured: run `bench/run --callgrind c,auth,writes` "
                 "first (it writes the numbers into CALLGRIND.md) | ? |")
    wcost = read_marker("RESULTS.md", "audit-cost-json")  # bench/audit_cost.py's
    if wcost:
        L.append("| (one audit append, by throughput) | what it takes off durable writes, "
                 "`POST /hello/counter` audited vs a build without the audit log "
                 "(`bench/audit_cost.py`, the section below; commit `%s`): 50 connections "
                 "%.1f %%, one connection %.1f %% | (of the write route) |"
                 % (wcost.get("commit"), 100 * wcost.get("c50_loss", 0),
                    100 * wcost.get("c1_loss", 0)))
    if costs and "token_ir" in costs and costs.get("tiny_ir"):
        L.append("| (token check, by instructions) | the same requests under callgrind: %+d "
                 "instructions per request over %d | (%.2f %%) |"
                 % (costs["token_ir"], costs["tiny_ir"], 100 * costs["token_ir"] / costs["tiny_ir"]))
    if costs and "check_ir" in costs and costs.get("tiny_ir"):
        L.append("| (the check itself, by instructions) | %+d over the same request with the "
                 "padding header (CALLGRIND.md) | (%.2f %%) |"
                 % (costs["check_ir"], 100 * costs["check_ir"] / costs["tiny_ir"]))
    L.append("")
    if audit is None:
        passed = False
        text = "token %.1f %%, audit ?" % (100 * token_loss)
        L.append("Combined: not known without the audit append's instructions: **FAIL**.")
    else:
        combined = token_loss + audit
        passed = combined <= AUTH_TARGET
        text = "%.1f %%" % (100 * combined)
        L.append("Combined estimate, 1 − token ratio + audit instructions / tiny-route "
                 "instructions = %.2f %% + %.2f %% = **%.2f %%**, target ≤ %.0f %%: %s."
                 % (100 * token_loss, 100 * audit, 100 * combined, 100 * AUTH_TARGET, pf(passed)))
        if costs.get("commit") != git_commit():
            L.append("")
            L.append("The instruction counts are from CALLGRIND.md, measured at commit `%s`, "
                     "not this one." % costs.get("commit"))
        if "token_ir" in costs:
            both = max(0, costs["token_ir"]) / costs["tiny_ir"] + audit
            L.append("")
            L.append("By instructions alone (steadier on a shared machine than requests/s): "
                     "%.2f %% together." % (100 * both))
        L.append("")
        L.append("Instruction shares are of user-space instructions only; much of the tiny "
                 "route's time is in the kernel (PROFILE.md), so they overstate what the same "
                 "work would take off its throughput. Where the audit append's instructions "
                 "go is in CALLGRIND.md, the durable-write run (`zt__audit_append`'s callees: "
                 "the record's formatting, `mdb_put`, BLAKE2b).")
    return dict(
        name="auth",
        title="Token check and one audit append vs the tiny route",
        targets=[psigned, panon, ppad, signed, anon],
        ratio=ratio,
        ratios=ratios,
        ratio_text=text,
        target_text="≤ %.0f %%" % (100 * AUTH_TARGET),
        passed=passed,
        ratio_line="Token ratio, first row / second row: **%.3f×** (the median of the "
                   "per-round ratios %s); the ratio of the two medians is %.3f×."
                   % (ratio, ", ".join("%.3f" % x for x in ratios),
                      psigned.median("rps") / panon.median("rps")),
        note="\n".join(L),
    )


def bench_memory_start(build, opts, loaded):
    """One node, started `opts.starts + 1` times on the same config and data folder: time
    from spawn to the first 200 from GET /healthz (polled without sleeping, from the other
    core), then the idle memory. The first start is reported apart: it also creates the LMDB
    environment, the node key and the 'admin' account (an Argon2id hash), once per install;
    the medians are over the restarts that follow."""
    workdir = mkdtemp("zt-start-")
    port = free_port()
    conf = zt_config(build, workdir, port)
    first, times, sts = None, [], []
    for i in range(opts.starts + 1):
        srv = Server("zhengtong (start %d)" % i, [zhengtong_bin(build), "serve", "-c", conf],
                     port, workdir)
        t0 = time.perf_counter()
        srv.start()
        ms = first_healthz(srv, t0)
        time.sleep(0.3)  # idle: after the start, nothing in flight
        st = proc_status(srv.proc.pid)
        rc = srv.stop()
        if rc != 0:
            raise BenchError("%s exited with %s after SIGTERM, not 0; log:\n%s"
                             % (srv.name, rc, srv.log_tail()))
        log("%s: %.1f ms to the first 200, VmRSS %.1f MB" % (
            "first start" if i == 0 else "restart %d/%d" % (i, opts.starts), ms,
            st["VmRSS"] / 1024))
        if i == 0:
            first = dict(ms=ms, st=st)
        else:
            times.append(ms)
            sts.append(st)
    start_ms = statistics.median(times)
    rss_mb = statistics.median(st["VmRSS"] for st in sts) / 1024
    return dict(first=first, times=times, sts=sts, loaded=loaded, start_ms=start_ms,
                rss_mb=rss_mb, start_ok=start_ms <= 100, rss_ok=rss_mb <= 20)


def first_healthz(srv, t0, timeout=10.0):
    req = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        try:
            s = socket.create_connection((HOST, srv.port), timeout=2)
        except ConnectionRefusedError:
            if srv.proc.poll() is not None:
                srv.check_alive()
            continue  # not listening yet: poll again at once
        try:
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            continue
        finally:
            s.close()
        if data.startswith(b"HTTP/1.1 200"):
            return (time.perf_counter() - t0) * 1e3
        time.sleep(0.0005)  # listening but not ready: give it the core
    raise BenchError("%s: no 200 from /healthz within %gs; log:\n%s"
                     % (srv.name, timeout, srv.log_tail()))


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])  # kB
    return out


# ---- the report --------------------------------------------------------------------


def sh(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    return dict(nproc=NCPU, cpu=model, kernel=os.uname().release, mem=mem)


def versions(build):
    zt = sh([zhengtong_bin(build), "version"])
    ngx = sh(["nginx", "-v"]).replace("nginx version: ", "")
    w = sh(["wrk", "-v"]).splitlines()
    w = w[0].split(" Copyright")[0] if w else "?"
    luamod = sh(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-http-lua"])
    btype = "?"
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
            btype = m.group(1) if m else "?"
    except OSError:
        pass
    return dict(zt=zt, build=btype, nginx=ngx, wrk=w, luamod=luamod or "?")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def memory_section(n, mem):
    first, sts = mem["first"], mem["sts"]

    def mb(kb):
        return "%.1f MB" % (kb / 1024)

    def spread(key):
        v = [st[key] for st in sts]
        return "%s | %s | %s" % (mb(statistics.median(v)), mb(min(v)), mb(max(v)))

    def parts(st):
        return "anonymous %s, file-backed %s (the binary, libraries and LMDB pages), shared %s" % (
            mb(st.get("RssAnon", 0)), mb(st.get("RssFile", 0)), mb(st.get("RssShmem", 0)))

    L = ["## %d. Idle memory and start time" % n, ""]
    L.append(
        "One node with plugins `hello` and `benchlua`, started %d times on the same config and "
        "data folder (SIGTERM between starts; each exited 0). Start time: from just before "
        "`Popen` (fork + exec included) to the first `200` from `GET /healthz`, polled on a new "
        "connection in a tight loop from the other core. Memory: `/proc/PID/status` 0.3 s "
        "after that first answer. The first start is not in the medians: it also creates the "
        "LMDB environment, the node key and the `admin` account (one Argon2id hash at the "
        "default cost, 64 MiB), once per install; it took %.1f ms (VmRSS %s, VmHWM %s)."
        % (len(sts) + 1, first["ms"], mb(first["st"]["VmRSS"]), mb(first["st"]["VmHWM"])))
    L.append("")
    L.append("| | median | min | max | target | |")
    L.append("| --- | ---: | ---: | ---: | --- | --- |")
    L.append("| start to first request (restarts) | %.1f ms | %.1f ms | %.1f ms | ≤ 100 ms | %s |"
             % (mem["start_ms"], min(mem["times"]), max(mem["times"]), pf(mem["start_ok"])))
    L.append("| idle VmRSS | %s | ≤ 20 MB | %s |" % (spread("VmRSS"), pf(mem["rss_ok"])))
    L.append("| VmHWM (peak RSS) | %s | | |" % spread("VmHWM"))
    L.append("")
    L.append("Idle VmRSS of the last restart: %s." % parts(sts[-1]))
    if mem.get("loaded"):
        L.append("")
        L.append("For comparison, the node that served every load benchmark above held VmRSS "
                 "%s at their end (VmHWM %s): %s." % (
                     mb(mem["loaded"]["VmRSS"]), mb(mem["loaded"]["VmHWM"]),
                     parts(mem["loaded"])))
    L.append("")
    return L


def fmt_rounds(t):
    return ", ".join("%.0f" % r["rps"] for r in t.runs)


def pf(ok):
    return "**PASS**" if ok else "**FAIL**"


def write_results(path, opts, info, results, mem, started, load0, load1):
    m, v = info["machine"], info["versions"]
    L = []
    L.append("# Zhengtong benchmarks")
    L.append("")
    L.append("Written by `bench/run`%s. Never a timed test: numbers depend on the machine and on"
             % (" --quick (a smoke run: one short round, not a measurement)" if opts.quick else ""))
    L.append("what else it runs.")
    L.append("")
    L.append("| | |")
    L.append("| --- | --- |")
    L.append("| date | %s |" % started)
    L.append("| commit | `%s` |" % info["commit"])
    L.append("| machine | %d cores (`nproc`), %s, %s RAM |" % (m["nproc"], m["cpu"], m["mem"]))
    L.append("| kernel | %s |" % m["kernel"])
    L.append("| zhengtong | %s, CMake build type %s |" % (v["zt"], v["build"]))
    L.append("| nginx | %s, libnginx-mod-http-lua %s (Debian packages) |" % (v["nginx"], v["luamod"]))
    L.append("| wrk | %s |" % v["wrk"])
    L.append("| load average | %s before, %s after |" % (load0, load1))
    L.append("")
    L.append("## Summary")
    L.append("")
    L.append("| benchmark | result | target | |")
    L.append("| --- | --- | --- | --- |")
    for r in results:
        L.append("| %s | %s | %s | %s |" % (r["title"], r["ratio_text"], r["target_text"],
                                            pf(r["passed"])))
    if mem:
        L.append("| Idle memory (VmRSS after start, median) | %.1f MB | ≤ 20 MB | %s |"
                 % (mem["rss_mb"], pf(mem["rss_ok"])))
        L.append("| Start to first request (median) | %.1f ms | ≤ 100 ms | %s |"
                 % (mem["start_ms"], pf(mem["start_ok"])))
    L.append("")
    L.append("## Method")
    L.append("")
    L.append(
        "- One worker each: zhengtong is one process with one event loop; nginx runs "
        "`worker_processes 1` (`access_log off`, `keepalive_requests 1000000000`).")
    if SERVER_CPU is not None:
        L.append("- The server under test is pinned to CPU %d, wrk (and this runner) to CPU %d "
                 "(`taskset`), so the load generator never takes the server's core."
                 % (SERVER_CPU, CLIENT_CPU))
    L.append("- `wrk -t1 -c%d -d%gs --latency` (one connection where the table says -c1), "
             "keep-alive; a %gs warm-up per target first; then %d round%s, each running every "
             "target of the benchmark once, alternating the order, so drift on a shared machine "
             "hits both sides. Requests/s and the latency percentiles are medians over the rounds; "
             "a ratio is the median of the per-round ratios (the two runs of a round are back to "
             "back, so they share whatever else the machine did then)."
             % (opts.conns, opts.duration, opts.warmup, opts.rounds,
                "" if opts.rounds == 1 else "s"))
    L.append("- *Server CPU*, *wrk CPU*: the user + system CPU time of the server (for nginx, "
             "master and worker) and of wrk during a run, over the run's wall time; 100 % is a "
             "whole core. Over loopback each side's kernel also does some of the other's TCP "
             "work. When wrk is near 100 % and the server is not, the client limits the run and "
             "a ratio near 1 says less than it seems.")
    L.append("- Before measuring, each target answered one request with a 200 and the expected "
             "body; a run with any non-2xx answer or socket error fails the suite.")
    L.append("- zhengtong runs from a temp config: its own port and data folder (under /tmp, "
             "ext4 here, so fsync is real), plugins `hello` (C) and `benchlua` "
             "(`bench/lua/plugins/benchlua`), `log_level = \"warn\"`. `GET /hello` answers "
             "JSON that hello builds once at init (it depends only on the config), as nginx's "
             "`return 200` answers a constant; `GET /bench/lua` encodes a Lua table per request.")
    L.append("")
    for i, r in enumerate(results, 1):
        L.append("## %d. %s" % (i, r["title"]))
        L.append("")
        per_commit = r.get("per_commit")
        head = ("| target | requests/s | p50 latency | p99 latency | server CPU | wrk CPU | "
                "rounds (req/s) |")
        sep = "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
        if per_commit:
            head += " writes per commit |"
            sep += " ---: |"
        L.append(head)
        L.append(sep)
        for t in r["targets"]:
            row = "| %s | %.0f | %.3f ms | %.3f ms | %.0f %% | %.0f %% | %s |" % (
                t.label, t.median("rps"), t.median("p50"), t.median("p99"),
                100 * t.median("cpu"), 100 * t.median("client_cpu"), fmt_rounds(t))
            if per_commit:
                row += " %s |" % ", ".join("%.1f" % x for x in t.extra)
            L.append(row)
        L.append("")
        a, b = r["targets"][:2]  # the ratio is of the first two rows
        if r.get("ratio_line"):
            L.append(r["ratio_line"])
        else:
            L.append("Ratio, first row / second row: **%s** (the median of the per-round "
                     "ratios %s), target %s: %s. The ratio of the two medians above is %.2f×."
                     % (r["ratio_text"], ", ".join("%.2f" % x for x in r["ratios"]),
                        r["target_text"], pf(r["passed"]), a.median("rps") / b.median("rps")))
        if r.get("note"):
            L.append("")
            L.append(r["note"])
        L.append("")
    if mem:
        L += memory_section(len(results) + 1, mem)
    L.append("## Notes")
    L.append("")
    L.append("- MB here is 2^20 bytes (VmRSS is in kB).")
    L.append("- The machine is shared (other builds and tests may run at the same time): the "
             "load average row above says how busy it was; alternating the rounds keeps the "
             "ratios fair, absolute numbers move with the load.")
    L.append("- nginx and wrk are Debian's packages; zhengtong is the Release build of this "
             "commit (`build-bench/`).")
    L.append("")
    # Sections that other benchmarks write (<!-- name --> ... <!-- /name -->: the workflow,
    # approval and sensor benches) stay as they were: this run did not measure them.
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        old = ""
    kept = benchlib.kept_sections(old)
    with open(path, "w") as f:
        f.write("\n".join(L + [k + "\n" for k in kept]))


# ---- profiling ---------------------------------------------------------------------


def perf_report(data, sort, limit):
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", sort,
                          "--percent-limit", str(limit)], capture_output=True, text=True)
    if rep.returncode != 0:
        raise BenchError("perf report failed: " + rep.stderr)
    return "\n".join(ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#"))


def profile(build, opts, which):
    """perf record (self time, no call graphs) of the node while wrk runs one route, for
    each route named in `which` → bench/PROFILE.md."""
    if not shutil.which("perf"):
        raise BenchError("perf is not installed (Debian: linux-perf)")
    zt = start_zhengtong(build)
    expect(zt, "GET", "/hello", json_object)
    token = sign_in(zt)
    env = {"ZT_BENCH_TOKEN": token}
    post = os.path.join(BENCH, "post.lua")
    targets = dict(
        c=Target("GET /hello (tiny C route)", zt, "/hello", opts.conns),
        lua=Target("GET /bench/lua (tiny Lua route)", zt, "/bench/lua", opts.conns),
        read=Target("GET /hello/counter (one LMDB read)", zt, "/hello/counter", opts.conns),
        writes=Target("POST /hello/counter, group commit (-c%d)" % opts.conns, zt,
                      "/hello/counter", opts.conns, post, env),
    )
    out = ["# Profiles of the node under wrk", ""]
    out.append("Written by `bench/run --profile %s` on %s, commit `%s`, the Release build. For "
               "each route: `perf record -F 4999 -p PID` (self time, no call graphs) of the node "
               "while `wrk -t1 -c%d -d%ds` ran against it, after a warm-up; the node on CPU %s, "
               "wrk on CPU %s. Then `perf report --no-children --sort dso` and `--sort symbol`."
               % (",".join(which), datetime.datetime.now().astimezone().strftime(
                   "%Y-%m-%d %H:%M %Z"), git_commit(), opts.conns, opts.duration,
                  SERVER_CPU, CLIENT_CPU))
    out.append("")
    for w in which:
        t = targets[w]
        t.run(opts.warmup, keep=False)
        data = os.path.join(mkdtemp("zt-perf-"), "perf.data")
        rec = subprocess.Popen(["perf", "record", "-F", "4999", "-o", data, "-p",
                                str(zt.proc.pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=_client_child)
        time.sleep(0.5)
        r = t.run(opts.duration)
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=60)
        if rec.returncode not in (0, -signal.SIGINT):
            raise BenchError("perf record failed: " + err.decode(errors="replace"))
        out.append("## %s" % t.label)
        out.append("")
        out.append("%.0f requests/s under perf (p50 %.3f ms, p99 %.3f ms)." % (
            r["rps"], r["p50"], r["p99"]))
        out.append("")
        out.append("By object:")
        out.append("")
        out.append("```")
        out.append(perf_report(data, "dso", 0.5))
        out.append("```")
        out.append("")
        out.append("By function (0.4 % and more):")
        out.append("")
        out.append("```")
        out.append(perf_report(data, "symbol,dso", 0.4))
        out.append("```")
        out.append("")
        log("profiled %s" % t.label)
    zt.stop()
    path = os.path.join(BENCH, "PROFILE.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    log("wrote %s" % os.path.relpath(path, ROOT))


def callgrind(build, opts, which):
    """Instructions per request, by function, user space only: the node under valgrind's
    callgrind while wrk runs one route; counters zeroed after a warm-up and dumped after
    the run, so start-up is not in them. → bench/CALLGRIND.md"""
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            raise BenchError("%s is not installed (Debian: valgrind)" % tool)
    # key: (title, path, the wrk script; a script means a signed-in caller)
    routes = dict(
        c=("GET /hello (tiny C route)", "/hello", None),
        auth=("GET /hello with a bearer token (tiny C route, token check)", "/hello",
              "bearer.lua"),
        pad=("GET /hello with a header as long as the token's, not read (the token check's "
             "control)", "/hello", "padded.lua"),
        lua=("GET /bench/lua (tiny Lua route)", "/bench/lua", None),
        read=("GET /hello/counter (one LMDB read)", "/hello/counter", None),
        writes=("POST /hello/counter, group commit (-c%d)" % opts.conns, "/hello/counter",
                "post.lua"),
    )
    measured = {}  # key → (Ir per request, {function: inclusive Ir per request})
    out = ["# Instructions per request (callgrind)", ""]
    out.append("Written by `bench/run --callgrind %s` on %s, commit `%s`, the Release build. For "
               "each route the node runs under `valgrind --tool=callgrind`; after a warm-up its "
               "counters are zeroed (`callgrind_control -z`), `wrk -t1 -c%d -d%ds` runs, and "
               "they are dumped (`callgrind_control -d`). User space only (the kernel's share, "
               "most of the time for the small routes, is in PROFILE.md). Percentages are of "
               "the instructions of the run; Ir/request divides by wrk's request count."
               % (",".join(which), datetime.datetime.now().astimezone().strftime(
                   "%Y-%m-%d %H:%M %Z"), git_commit(), opts.conns, opts.duration))
    out.append("")
    for w in which:
        label, path, script = routes[w]
        workdir = mkdtemp("zt-cg-")
        port = free_port()
        conf = zt_config(build, workdir, port)
        dump = os.path.join(workdir, "callgrind.out")
        srv = Server("zhengtong (callgrind)", ["valgrind", "--tool=callgrind",
                     "--callgrind-out-file=" + dump, zhengtong_bin(build), "serve", "-c", conf],
                     port, workdir).start()
        srv.wait_ready("/healthz", timeout=120)
        env = None
        if script:
            token = sign_in(srv)
            env = {"ZT_BENCH_TOKEN": token}
            script = os.path.join(BENCH, script)
            if w == "auth":
                check_bearer(srv, token)
        url = "http://%s:%d%s" % (HOST, port, path)
        wrk(url, opts.conns, opts.warmup, script, env)
        subprocess.run(["callgrind_control", "-z", str(srv.proc.pid)], check=True,
                       capture_output=True)
        r = wrk(url, opts.conns, opts.duration, script, env)
        subprocess.run(["callgrind_control", "-d", str(srv.proc.pid)], check=True,
                       capture_output=True)
        srv.stop(timeout=60)
        dumps = sorted(f for f in os.listdir(workdir) if f.startswith("callgrind.out."))
        if not dumps:
            raise BenchError("callgrind wrote no dump in " + workdir)
        data = os.path.join(workdir, dumps[0])  # the -d dump; the exit dump comes later
        total = None
        sections = []
        for inclusive in (False, True):
            argv = ["callgrind_annotate", "--threshold=100"]
            if inclusive:
                argv.append("--inclusive=yes")
            rep = subprocess.run(argv + [data], capture_output=True, text=True)
            if rep.returncode != 0:
                raise BenchError("callgrind_annotate failed: " + rep.stderr)
            rows = []
            for line in rep.stdout.splitlines():
                m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", line)
                if not m:
                    continue
                ir = int(m.group(1).replace(",", ""))
                what = m.group(3)
                if what == "PROGRAM TOTALS":
                    total = ir
                    continue
                fn = re.sub(r"^\S*?:", "", what.split(" [")[0], count=1)
                obj = os.path.basename(what.split(" [")[-1].rstrip("]")) if " [" in what else ""
                if fn in ("main", "(below main)", "__libc_start_main@@GLIBC_2.34", "uv_run") or \
                        fn.startswith("0x000000000001ab70"):
                    continue
                rows.append((ir, float(m.group(2)), fn, obj))
            sections.append(rows)
        n = max(r["requests"], 1)
        inclusive = {}
        for ir, _, fn, _ in sections[1]:
            inclusive[fn] = inclusive.get(fn, 0) + ir / n
        measured[w] = ((total or 0) / n, inclusive)
        out.append("## %s" % label)
        out.append("")
        out.append("%d requests under callgrind; %.0f user-space instructions per request."
                   % (r["requests"], (total or 0) / n))
        for title, rows in (("Self", sections[0]), ("Inclusive (with callees)", sections[1])):
            out.append("")
            out.append("%s:" % title)
            out.append("")
            out.append("| Ir/request | % | function | object |")
            out.append("| ---: | ---: | --- | --- |")
            for ir, pct, fn, obj in rows[:25]:
                out.append("| %.0f | %.2f | `%s` | %s |" % (ir / n, pct, fn, obj))
        out.append("")
        log("callgrind: %s done" % label)
    out += auth_costs_section(measured)
    path = os.path.join(BENCH, "CALLGRIND.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    log("wrote %s" % os.path.relpath(path, ROOT))


# ---- main --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds (wrk takes whole seconds)")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--only", default="", help="comma list of: c,lua,auth,read,writes,memory")
    ap.add_argument("--quick", action="store_true", help="one 2 s round: a smoke run")
    ap.add_argument("--profile", nargs="?", const="c", default=None, metavar="ROUTES",
                    help="perf profiles instead of the suite: comma list of c,lua,read,writes "
                    "(default c) → bench/PROFILE.md")
    ap.add_argument("--callgrind", metavar="ROUTES",
                    help="instructions per request under callgrind instead of the suite: comma "
                    "list of c,auth,pad,lua,read,writes → bench/CALLGRIND.md (c with auth and/or "
                    "writes: also the token check's and the audit append's share)")
    ap.add_argument("--out", default=os.path.join(BENCH, "RESULTS.md"))
    ap.add_argument("--state", help=argparse.SUPPRESS)  # bench/run's clean-up folder
    opts = ap.parse_args()
    global _state_dir
    _state_dir = opts.state
    opts.build = os.path.abspath(opts.build)
    if opts.quick:
        opts.rounds, opts.duration, opts.warmup, opts.starts = 1, 2, 1, 3
    everything = {"c", "lua", "auth", "read", "writes", "memory"}
    only = set(x for x in opts.only.split(",") if x) or everything
    unknown = only - everything
    if unknown:
        ap.error("unknown benchmark(s): " + ", ".join(sorted(unknown)))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if CLIENT_CPU is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise BenchError("%s is not installed: run scripts/setup --bench" % tool)
    if not os.access(zhengtong_bin(opts.build), os.X_OK):
        raise BenchError("no daemon at %s: build it first" % zhengtong_bin(opts.build))

    for flag, run, keys in (("profile", profile, ("c", "lua", "read", "writes")),
                            ("callgrind", callgrind, ("c", "auth", "pad", "lua", "read", "writes"))):
        arg = getattr(opts, flag)
        if arg is None:
            continue
        which = [x for x in arg.split(",") if x]
        if not which or set(which) - set(keys):
            ap.error("--%s takes a comma list of %s" % (flag, ", ".join(keys)))
        run(opts.build, opts, which)
        return 0

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load0 = loadavg()
    info = dict(machine=machine(), versions=versions(opts.build), commit=git_commit())
    results = []
    zt = None
    if only & {"c", "lua", "auth", "read", "writes"}:
        zt = start_zhengtong(opts.build)
        expect(zt, "GET", "/hello", json_object)
    # The two routes measured against nginx: (key, title, zhengtong's path and label and
    # expected body, nginx with Lua or not, its path and label and expected body).
    peers = (
        ("c", "Tiny C route vs nginx `return 200`",
         "/hello", "zhengtong GET /hello (C plugin)", json_object,
         False, "/hello", "nginx `return 200` (one worker)", body_equals(NGINX_BODY)),
        ("lua", "Tiny Lua route vs nginx `content_by_lua_block`",
         "/bench/lua", "zhengtong GET /bench/lua (Lua plugin)", json_equals({"ok": True}),
         True, "/lua", "nginx + Lua module `ngx.say` (one worker)",
         body_equals(NGINX_LUA_BODY)),
    )
    for key, title, zpath, zlabel, zcheck, lua, npath, nlabel, ncheck in peers:
        if key not in only:
            continue
        ngx = start_nginx(lua=lua)
        expect(zt, "GET", zpath, zcheck)
        expect(ngx, "GET", npath, ncheck)
        results.append(bench_pair(key, title, Target(zlabel, zt, zpath, opts.conns),
                                  Target(nlabel, ngx, npath, opts.conns), 1.0, opts, None))
        ngx.stop()
    token = sign_in(zt) if only & {"auth", "read", "writes"} else None
    if "auth" in only:
        results.append(bench_auth(zt, token, opts))
    if "read" in only or "writes" in only:
        # The counter record must exist for the read to find it; the write must change it.
        c0 = number_in(expect(zt, "GET", "/hello/counter", json_object))
        expect(zt, "POST", "/hello/counter", json_object, body=b"{}",
               headers={"Authorization": "Bearer " + token})
        c1 = number_in(expect(zt, "GET", "/hello/counter", json_object))
        if c1 == c0:
            raise BenchError("POST /hello/counter did not change GET /hello/counter (%r)" % c1)
    if "read" in only:
        results.append(bench_pair(
            "read", "LMDB read route vs the tiny route",
            Target("zhengtong GET /hello/counter (one LMDB read)", zt, "/hello/counter",
                   opts.conns),
            Target("zhengtong GET /hello (no storage)", zt, "/hello", opts.conns),
            0.9, opts, "Both rows are the same node; the first reads one record in the "
            "request's read transaction (begun on first use, a reset-and-renewed LMDB read "
            "transaction), the second touches no storage."))
    if "writes" in only:
        results.append(bench_writes(zt, token, opts))
    loaded = None
    if zt:
        loaded = proc_status(zt.proc.pid)
        rc = zt.stop()
        if rc != 0:
            raise BenchError("zhengtong exited with %s after SIGTERM, not 0; log:\n%s"
                             % (rc, zt.log_tail()))
    mem = bench_memory_start(opts.build, opts, loaded) if "memory" in only else None
    load1 = loadavg()
    write_results(opts.out, opts, info, results, mem, started, load0, load1)
    log("wrote %s" % os.path.relpath(opts.out, ROOT))
    ok = all(r["passed"] for r in results) and (not mem or (mem["start_ok"] and mem["rss_ok"]))
    for r in results:
        log("%-60s %8s  %s" % (r["title"], r["ratio_text"], "pass" if r["passed"] else "FAIL"))
    if mem:
        log("%-60s %6.1f MB  %s" % ("idle memory", mem["rss_mb"], "pass" if mem["rss_ok"] else "FAIL"))
        log("%-60s %6.1f ms  %s" % ("start to first request", mem["start_ms"],
                                    "pass" if mem["start_ok"] else "FAIL"))
    # Missing a target is a finding, written in RESULTS.md, not a failure of the runner.
    return 0 if ok else 3


if __name__ == "__main__":
    try:
        rc = main()
    except BenchError as e:
        log("FAILED: %s" % e)
        rc = 1
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        kill_all()
    sys.exit(rc)
