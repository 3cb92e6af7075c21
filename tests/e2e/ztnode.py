# ztnode.py: end-to-end test harness: runs the real zhengtong binary on a free port.
"""A Node is one `zhengtong serve` process with its own config file and data folder
in a temporary directory, reachable over real sockets.

Environment (set by ctest, see tests/CMakeLists.txt):
  ZT_BIN    the daemon
  ZT_SRC    the source tree (conf/, lua/, web/)
  ZT_BUILD  the build tree

Everything here is short on timeouts so that a broken server fails a test instead of
hanging CI, and everything is cleaned up (process killed, folder removed) even when a
test fails.
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until GET /healthz must answer
STOP_TIMEOUT = 15.0  # seconds until the process must exit after SIGTERM
IO_TIMEOUT = 5.0  # seconds for one HTTP exchange
ADMIN_PASSWORD = "Kq8-vLx3-mPz9-Tw"  # what sign_in() sets for the account 'admin'

_live = set()  # Nodes not yet closed, killed at interpreter exit whatever happens


def _kill_all():
    for n in list(_live):
        n.close()


atexit.register(_kill_all)


def env(name):
    v = os.environ.get(name)
    if not v:
        raise AssertionError("%s is not set: run the e2e tests through ctest" % name)
    return v


def zt_bin():
    return env("ZT_BIN")


def zt_src():
    return env("ZT_SRC")


def free_port():
    """A TCP port nobody listens on right now (bind port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(what, fn, timeout=15.0):
    """Poll fn until it returns a true value; that value. Fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("waited %gs for %s" % (timeout, what))
        time.sleep(0.05)


def wait_listening(what, port, timeout=15.0):
    """Wait until something accepts TCP connections at HOST:port (a broker, a collector)."""

    def up():
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return True
        except OSError:
            return False

    wait_for(what, up, timeout)


# GB 32100-2015, computed here independently of the product: the tests and benchmarks
# that need valid unified social credit codes share this one copy.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_check(first17):
    """GB 32100-2015: the check character of a unified social credit code."""
    s = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_WEIGHTS))
    return CREDIT_ALPHABET[(31 - s % 31) % 31]


def credit_code(first17):
    """first17 with its check character: a valid unified social credit code."""
    return first17 + credit_check(first17)


def run(args, timeout=30, **kw):
    """Run the zhengtong binary with args; a CompletedProcess with text stdout/stderr."""
    return subprocess.run(
        [zt_bin()] + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        **kw
    )


def lua_str(s):
    """A Lua string literal."""
    out = ['"']
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32:
            out.append("\\%03d" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def lua_value(v):
    """A Python value (str, bool, int, float, list, dict) written as Lua."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return lua_str(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, lua_value(x)) for k, x in v.items()) + " }"
    raise TypeError("no Lua form for %r" % (v,))


def write_lua_plugin(lua_dir, name, manifest, init):
    """Write lua_dir/plugins/<name>/{manifest.lua,init.lua}."""
    d = os.path.join(lua_dir, "plugins", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "manifest.lua"), "w") as f:
        f.write(manifest)
    with open(os.path.join(d, "init.lua"), "w") as f:
        f.write(init)
    return d


def copy_lua_tree(dest):
    """Copy $ZT_SRC/lua (the zt library and the shipped plugins) into dest."""
    shutil.copytree(os.path.join(zt_src(), "lua"), dest, dirs_exist_ok=True)
    return dest


def lua_tree_with(dest, plugins):
    """A lua_dir at dest: a copy of $ZT_SRC/lua plus plugins {name: (manifest, init)}."""
    copy_lua_tree(dest)
    for name, (manifest, init) in plugins.items():
        write_lua_plugin(dest, name, manifest, init)
    return dest


class Response:
    def __init__(self, status, reason, headers, body, raw_headers):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-cased name -> value (last one wins)
        self.raw_headers = raw_headers  # [(name as sent, value)] in order
        self.body = body

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.raw_headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


class IncompleteResponse(Exception):
    pass


def parse_response(buf, head=False):
    """Parse one HTTP/1.1 response from the start of buf (bytes).

    Returns (Response, rest) or raises IncompleteResponse if buf does not hold all of it.
    A response without Content-Length or chunked coding extends to the end of buf
    (callers pass the whole stream once the server closed).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise IncompleteResponse()
    head_text = buf[:end].decode("latin-1")
    rest = buf[end + 4 :]
    lines = head_text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError("bad status line %r" % lines[0])
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    raw = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        raw.append((k.strip(), v.strip()))
    hdrs = {k.lower(): v for k, v in raw}
    if head or 100 <= status < 200 or status in (204, 304):
        return Response(status, reason, hdrs, b"", raw), rest
    te = hdrs.get("transfer-encoding", "").lower()
    if "chunked" in te:
        body = b""
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                raise IncompleteResponse()
            size = int(rest[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                # trailers end with an empty line
                tend = rest.find(b"\r\n", pos)
                while tend >= 0 and tend != pos:
                    pos = tend + 2
                    tend = rest.find(b"\r\n", pos)
                if tend < 0:
                    raise IncompleteResponse()
                return Response(status, reason, hdrs, body, raw), rest[tend + 2 :]
            if len(rest) < pos + size + 2:
                raise IncompleteResponse()
            body += rest[pos : pos + size]
            pos += size + 2
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        if len(rest) < n:
            raise IncompleteResponse()
        return Response(status, reason, hdrs, rest[:n], raw), rest[n:]
    return Response(status, reason, hdrs, rest, raw), b""


def parse_responses(buf, heads=None):
    """Every complete response in buf, in order. heads: for each response, whether it
    answers a HEAD request (so has no body)."""
    out = []
    while buf:
        head = bool(heads and len(out) < len(heads) and heads[len(out)])
        try:
            r, buf = parse_response(buf, head)
        except IncompleteResponse:
            break
        out.append(r)
    return out


AUTH_HOST = b"Host: e2e\r\n"


class RawConn:
    """A plain socket to the node, for what http.client will not send.

    Every request line block that holds exactly "Host: e2e\\r\\n" gets the node's
    Authorization header added after it (so raw writes are signed in); use another Host
    to send a request without a token."""

    def __init__(self, port, timeout=IO_TIMEOUT, auth_line=b""):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.auth_line = auth_line

    def _signed(self, data):
        if self.auth_line:
            data = data.replace(AUTH_HOST, AUTH_HOST + self.auth_line)
        return data

    def send(self, data):
        self.sock.sendall(self._signed(data))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no more data within the time allowed")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return chunk

    def response(self, timeout=IO_TIMEOUT, head=False):
        """Read one response. Raises socket.timeout, or EOFError if the server closed
        before a complete response arrived."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r, self.buf = parse_response(self.buf, head)
                # A response without a length is complete only at EOF.
                if (
                    not head
                    and "content-length" not in r.headers
                    and "chunked" not in r.headers.get("transfer-encoding", "").lower()
                    and not (100 <= r.status < 200 or r.status in (204, 304))
                    and not self.eof
                ):
                    raise IncompleteResponse()
                return r
            except IncompleteResponse:
                if self.eof:
                    raise EOFError("connection closed; unparsed bytes: %r" % self.buf[:300])
                self._fill(deadline)

    def read_until_close(self, timeout=IO_TIMEOUT):
        """Read until the server closes; returns everything unread. Raises socket.timeout
        if it does not close within timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout=IO_TIMEOUT):
        """True if the server closes the connection (after any bytes) within timeout."""
        try:
            self.read_until_close(timeout)
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def exchange(self, wire, count, timeout=30.0, heads=None):
        """Send wire (many pipelined requests) from another thread while reading here,
        so that neither side blocks on full socket buffers; returns `count` responses."""
        err = []

        wire = self._signed(wire)

        def send():
            try:
                self.sock.sendall(wire)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        out = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < count:
                head = bool(heads and heads[len(out)])
                out.append(self.response(max(0.01, deadline - time.monotonic()), head))
        finally:
            t.join(5)
        if err and len(out) < count:
            raise err[0]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def threads_of(pid):
    """Each thread of a process: its name, the kernel function it sleeps in and the system
    call it is in (for a process that does not stop: where it waits)."""
    lines = []
    try:
        tids = sorted(os.listdir("/proc/%d/task" % pid), key=int)
    except OSError as e:
        return "(cannot read: %s)" % e
    for tid in tids:
        info = []
        for name in ("comm", "wchan", "syscall"):
            try:
                with open("/proc/%d/task/%s/%s" % (pid, tid, name)) as f:
                    info.append(f.read().strip().split(" ")[0])
            except OSError:
                info.append("?")
        lines.append("  %s %s: in %s, syscall %s" % (tid, *info))
    return "\n".join(lines)


class PortTaken(Exception):
    pass


class Node:
    """One zhengtong server in a temporary folder.

    plugins  names for `plugins = {...}` (default: hello and notice)
    options  extra config text appended verbatim (per-plugin option tables, ...)
    lua_dir, web_dir, plugin_dir  override the build's defaults when given
    data_dir  default: "data" inside the node's temporary folder
    limits   dict for `limits = {...}`; lua: dict for `lua = {...}`
    auth     dict for `auth = {...}` (default: the cheapest password hashing, for speed)
    sign_in  after the first start, sign in as the first-start admin, set a password,
             grant `roles`, and send that token with every request() (see sign_in())
    port     default: a free port (picked again if another process takes it first)
    env      extra environment variables for the process (e.g. {"ZT_TEST_CLOCK": "1"})
    """

    def __init__(
        self,
        plugins=("hello", "notice"),
        options="",
        lua_dir=None,
        web_dir=None,
        limits=None,
        lua=None,
        plugin_dir=None,
        log_level="info",
        start=True,
        port=None,
        data_dir=None,
        auth=None,
        sign_in=True,
        roles=("notice_editor",),
        env=None,
        map_size=64 << 20,
    ):
        self.dir = tempfile.mkdtemp(prefix="zt-e2e-")
        _live.add(self)
        self.proc = None
        self._conn = None
        self.auth = {}  # headers request() adds: the admin's bearer token once signed in
        self._admin_pw = None
        self._sign_in = sign_in
        self._roles = tuple(roles)
        self._env = dict(os.environ, **(env or {})) if env else None
        self._own_port = port is None
        self.port = port or free_port()
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "zhengtong.conf")
        self.log_path = os.path.join(self.dir, "zhengtong.log")  # stderr: the JSON log
        self.out_path = os.path.join(self.dir, "stdout.txt")
        self._logf = self._outf = None
        lines = [
            'node_name = "e2e-test"',
            'region_code = "330100"',
            "listen = { @LISTEN@ }",  # filled in by _write_conf
            "data_dir = %s" % lua_str(self.data_dir),
            "map_size = %d" % map_size,
            "log_level = %s" % lua_str(log_level),
        ]
        if plugin_dir:
            lines.append("plugin_dir = %s" % lua_str(plugin_dir))
        if lua_dir:
            lines.append("lua_dir = %s" % lua_str(lua_dir))
        if web_dir:
            lines.append("web_dir = %s" % lua_str(web_dir))
        if limits:
            lines.append("limits = %s" % lua_value(limits))
        if lua:
            lines.append("lua = %s" % lua_value(lua))
        if auth is None:
            auth = {"password_ops": 1, "password_memory": 8192}
        if auth:
            lines.append("auth = %s" % lua_value(auth))
        lines.append("plugins = %s" % lua_value(list(plugins)))
        self._conf_text = "\n".join(lines) + "\n" + options + "\n"
        self._write_conf()
        try:
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    def _write_conf(self):
        with open(self.conf, "w") as f:
            f.write(self._conf_text.replace("@LISTEN@", lua_str("%s:%d" % (HOST, self.port))))

    # ---- process ---------------------------------------------------------------

    def start(self):
        """Start the process and wait until GET /healthz answers 200. A port picked here
        that another process took in the meantime is replaced, a few times at most."""
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if not self._own_port or attempt == 2:
                    raise AssertionError("port %d is taken; log:\n%s" % (self.port, self.log()))
                self.port = free_port()
                self._write_conf()

    def _start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if self._logf:
            self._logf.close()
            self._outf.close()
        self._logf = open(self.log_path, "ab")
        self._outf = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            [zt_bin(), "serve", "-c", self.conf],
            stdin=subprocess.DEVNULL,
            stdout=self._outf,
            stderr=self._logf,
            cwd=self.dir,
            env=self._env,
        )
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                if "address already in use" in self.log().lower():
                    raise PortTaken()
                raise AssertionError(
                    "zhengtong exited with %d before serving; log:\n%s" % (rc, self.log())
                )
            c = http.client.HTTPConnection(HOST, self.port, timeout=1)
            try:
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    if self._sign_in and not self.auth:
                        self.sign_in(self._roles)
                    return
                last = "GET /healthz answered %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
                c.close()
            time.sleep(0.02)
        self.kill9()
        raise AssertionError(
            "zhengtong did not answer GET /healthz within %gs (%s); log:\n%s"
            % (START_TIMEOUT, last, self.log())
        )

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """Wait for the process to exit; its exit code. Kills it and fails on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = threads_of(self.proc.pid)  # before the kill: where each thread waits
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                "zhengtong did not exit within %gs; its threads:\n%s\nlog:\n%s"
                % (timeout, where, self.log())
            )

    def stop(self, sig=signal.SIGTERM):
        """Graceful stop: the signal, then its exit code (wait at most STOP_TIMEOUT)."""
        self.drop_conn()
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        return self.wait()

    def kill9(self):
        self.drop_conn()
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """Stop (gracefully if still running) and start again on the same data."""
        if self.running():
            self.stop()
        self.start()

    def close(self):
        """Kill the process if alive and remove the folder. Safe to call twice."""
        self.drop_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._logf:
            self._logf.close()
            self._outf.close()
            self._logf = self._outf = None
        shutil.rmtree(self.dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def log(self):
        """What the node wrote on stderr (its JSON log)."""
        return self._read(self.log_path)

    def stdout(self):
        return self._read(self.out_path)

    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_records(self):
        """The log as parsed JSON objects (lines that are not JSON are skipped)."""
        out = []
        for ln in self.log().splitlines():
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
        return out

    # ---- HTTP ------------------------------------------------------------------

    def connection(self, timeout=IO_TIMEOUT, source=None):
        """source: the local address to connect from (any of 127.0.0.0/8 reaches the node
        on Linux), so that a test can show the node several clients."""
        src = (source, 0) if source else None
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout, source_address=src)

    def drop_conn(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method,
        path,
        body=None,
        headers=None,
        keep=False,
        timeout=IO_TIMEOUT,
        auth=True,
        source=None,
    ):
        """One request; (status, headers with lower-cased names, body bytes).

        keep=True reuses one kept-alive connection across calls. auth=False leaves out the
        token that sign_in() set. source: the client address to connect from (not with
        keep)."""
        assert not (keep and source), "a kept-alive connection has one source"
        headers = dict(headers or {})
        if auth:
            for k, v in self.auth.items():
                if k.lower() not in (h.lower() for h in headers):
                    headers[k] = v
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if keep:
            if self._conn is None:
                self._conn = self.connection(timeout)
            c = self._conn
        else:
            c = self.connection(timeout, source)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            return r.status, hdrs, data
        except BaseException:
            if keep:
                self.drop_conn()
            raise
        finally:
            if not keep:
                c.close()

    def json(self, method, path, body=None, headers=None, keep=False, auth=True, source=None):
        """(status, headers, parsed JSON body or None when the body is empty)."""
        st, h, b = self.request(method, path, body, headers, keep, auth=auth, source=source)
        return st, h, (json.loads(b.decode("utf-8")) if b else None)

    # ---- identity ----------------------------------------------------------------

    def first_start_password(self):
        """The one-time password of 'admin' that the first start printed (on stdout)."""
        m = re.search(r"one-time password\s*\n\s*(\S+)", self.stdout())
        return m.group(1) if m else None

    def sign_in(self, roles=()):
        """Sign in as 'admin' (replacing the first start's one-time password by
        ADMIN_PASSWORD), give the account `roles` besides admin, and make request() send
        its bearer token. Returns the headers."""
        pw = self._admin_pw or self.first_start_password() or ADMIN_PASSWORD
        st, _, d = self.json("POST", "/auth/login", {"login": "admin", "password": pw}, auth=False)
        if st != 200:
            raise AssertionError("admin sign-in failed: %d %r; log:\n%s" % (st, d, self.log()))
        token = {"Authorization": "Bearer " + d["token"]}
        if d["user"].get("must_change_password"):
            st, _, b = self.request(
                "POST",
                "/auth/password",
                {"old_password": pw, "new_password": ADMIN_PASSWORD},
                token,
                auth=False,
            )
            if st != 204:
                raise AssertionError("admin password change failed: %d %r" % (st, b))
        self._admin_pw = ADMIN_PASSWORD
        have = list(d["user"].get("roles") or [])
        want = have + [r for r in roles if r not in have]
        if want != have:
            self.ensure_roles(want, token)
            st, _, b = self.request(
                "PATCH", "/admin/users/" + d["user"]["id"], {"roles": want}, token, auth=False
            )
            if st != 200:
                raise AssertionError("granting %r failed: %d %r" % (roles, st, b))
        self.auth = token
        return token

    def ensure_roles(self, roles, token=None):
        """Make each of `roles` that this node does not know a custom role (POST
        /admin/roles): accounts are given only known roles, and tests give roles of
        plugins the node may not run."""
        st, _, d = self.json("GET", "/admin/roles", headers=token, auth=token is None)
        if st != 200:
            raise AssertionError("GET /admin/roles failed: %d %r" % (st, d))
        known = {r["name"] for r in d["roles"] if r["from"]}
        for r in roles:
            if r not in known:
                st, _, b = self.json("POST", "/admin/roles",
                                     {"name": r, "description": "a test's role"},
                                     headers=token, auth=token is None)
                if st != 201:
                    raise AssertionError("adding the role %r failed: %d %r" % (r, st, b))

    def new_user(self, login, roles=(), department="root", clearance=None):
        """Create a staff account (as the signed-in admin) with roles (and a clearance, a
        security label), sign it in and set its password (ADMIN_PASSWORD); the headers that
        carry its token."""
        self.ensure_roles(roles)
        body = {"login": login, "name": login, "department": department, "roles": list(roles)}
        if clearance:
            body["clearance"] = clearance
        st, _, d = self.json("POST", "/admin/users", body)
        if st != 201:
            raise AssertionError("creating user %s failed: %d %r" % (login, st, d))
        otp = d["one_time_password"]
        st, _, d = self.json("POST", "/auth/login", {"login": login, "password": otp}, auth=False)
        if st != 200:
            raise AssertionError("sign-in of %s failed: %d %r" % (login, st, d))
        h = {"Authorization": "Bearer " + d["token"]}
        st, _, b = self.request(
            "POST", "/auth/password", {"old_password": otp, "new_password": ADMIN_PASSWORD},
            h, auth=False,
        )
        if st != 204:
            raise AssertionError("password change of %s failed: %d %r" % (login, st, b))
        return h

    def login(self, login, password, source=None):
        """POST /auth/login without any token: (status, headers, parsed body)."""
        return self.json(
            "POST", "/auth/login", {"login": login, "password": password}, auth=False,
            source=source,
        )

    def set_clock(self, offset_ms):
        """Move the node's clock to real time + offset_ms (needs env ZT_TEST_CLOCK=1)."""
        st, _, d = self.json("POST", "/_test/clock", {"offset_ms": offset_ms}, auth=False)
        if st != 200:
            raise AssertionError("POST /_test/clock answered %d %r (ZT_TEST_CLOCK set?)" % (st, d))
        return d

    def admin_cli(self, *args, timeout=30):
        """`zhengtong admin -c CONF args...` on this node's data (it may be running)."""
        return run(["admin", "-c", self.conf] + list(args), timeout=timeout)

    def auth_line(self):
        """The Authorization header line for raw requests ("" before sign_in)."""
        return "".join("%s: %s\r\n" % kv for kv in self.auth.items())

    def raw(self, data, read_timeout=2.0):
        """Send bytes on a new connection; everything read until the server closes or
        read_timeout passes without it closing."""
        with self.rawconn() as c:
            c.send(data)
            deadline = time.monotonic() + read_timeout
            while not c.eof:
                try:
                    c._fill(deadline)
                except socket.timeout:
                    break
                except OSError:
                    break
            return c.buf

    def rawconn(self, timeout=IO_TIMEOUT, auth=True):
        """A raw connection; with auth, requests with "Host: e2e" carry the token."""
        return RawConn(self.port, timeout, self.auth_line().encode() if auth else b"")


class NodeTest(unittest.TestCase):
    """Base class: self.node(...) starts a node that is always cleaned up, and whose log
    is printed when the test fails."""

    maxDiff = 4000
    shared = None  # a class-wide Node, from shared_node()

    @classmethod
    def shared_node(cls, **kw):
        """A node for every test of the class (start it in setUpClass)."""
        cls.shared = Node(**kw)
        cls.addClassCleanup(cls.shared.close)
        return cls.shared

    def setUp(self):
        if self.shared is not None:
            self.addCleanup(self._dump_log_on_failure, self.shared)

    def node(self, **kw):
        n = Node(**kw)
        self.addCleanup(n.close)
        self.addCleanup(self._dump_log_on_failure, n)
        return n

    def _dump_log_on_failure(self, n):
        # Called before n.close (cleanups run last-in first-out).
        outcome = getattr(self, "_outcome", None)
        failed = False
        if outcome is not None:
            res = getattr(outcome, "result", None)
            errs = getattr(res, "errors", []) + getattr(res, "failures", [])
            failed = any(t is self for t, _ in errs) or not getattr(outcome, "success", True)
        if failed:
            tail = n.log()[-6000:]
            print("\n---- zhengtong log (%s) ----\n%s" % (self.id(), tail))

    def assertConfigError(self, options, pattern):
        """`zhengtong check` refuses a config with these options: the message (a regex)
        at the config's file and line."""
        n = self.node(start=False, options=options)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"zhengtong.conf:\d+: " + pattern)

    def assertProblem(self, status, headers, body, want_status, slug=None):
        """An RFC 9457 problem: content type, fields, status, request id, stable type."""
        self.assertEqual(status, want_status, body[:500])
        self.assertTrue(
            headers.get("content-type", "").startswith("application/problem+json"),
            "content-type %r" % headers.get("content-type"),
        )
        p = json.loads(body.decode("utf-8"))
        self.assertIsInstance(p, dict)
        self.assertEqual(p.get("status"), want_status, p)
        self.assertTrue(str(p.get("type", "")).startswith("/problems/"), p)
        if slug is not None:
            self.assertEqual(p["type"], "/problems/" + slug, p)
        self.assertTrue(isinstance(p.get("title"), str) and p["title"], p)
        self.assertTrue(isinstance(p.get("detail"), str) and p["detail"], p)
        self.assertTrue(p.get("request_id"), p)
        if "x-request-id" in headers:
            self.assertEqual(p["request_id"], headers["x-request-id"])
        return p


# ---- Lua test plugins ------------------------------------------------------------
# The manifest and init formats live here only, so that a change of the Lua plugin
# contract is fixed in one place.


def lua_manifest(requires=(), options=None, version="1.0.0", description="e2e test plugin"):
    """manifest.lua text: it returns a table. options: {name: {type=, default=, description=}}."""
    t = {"version": version, "description": description}
    if requires:
        t["requires"] = list(requires)
    if options:
        t["options"] = options
    return "return " + lua_value(t) + "\n"


def lua_route(method, path, body, role="public", **opts):
    """An init.lua statement declaring a route whose handler is `function(req) body end`
    (the handler returns status, body, headers)."""
    o = dict(role=role, **opts)
    return "zt.route(%s, %s, %s, function(req)\n%s\nend)\n" % (
        lua_str(method),
        lua_str(path),
        lua_value(o),
        body,
    )


# ---- Prometheus text format ------------------------------------------------------

_SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


class Metrics:
    """Samples of one scrape: name -> list of (labels dict, float); and # TYPE lines."""

    def __init__(self, text):
        self.samples = {}
        self.types = {}
        self.helps = {}
        for ln in text.splitlines():
            if not ln.strip():
                continue
            if ln.startswith("#"):
                parts = ln.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE.match(ln)
            if not m:
                raise ValueError("not a Prometheus sample line: %r" % ln)
            labels = {}
            if m.group(3):
                rest = m.group(3)
                pos = 0
                while pos < len(rest):
                    lm = _LABEL.match(rest, pos)
                    if not lm:
                        raise ValueError("bad labels in %r" % ln)
                    labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), lm.group(2))
                    pos = lm.end()
            v = m.group(4)
            value = float("inf") if v == "+Inf" else float("-inf") if v == "-Inf" else float(v)
            self.samples.setdefault(m.group(1), []).append((labels, value))

    def get(self, name, **labels):
        """The value of the one sample of name whose labels include labels (0 if none)."""
        found = [v for l, v in self.samples.get(name, []) if all(l.get(k) == x for k, x in labels.items())]
        if len(found) > 1:
            raise AssertionError("%d samples of %s match %r" % (len(found), name, labels))
        return found[0] if found else 0.0

    def total(self, name, **labels):
        return sum(v for l, v in self.samples.get(name, []) if all(l.get(k) == x for k, x in labels.items()))

    def names(self):
        return set(self.samples)


def edit_db(test, node, dbname, change):
    """Open a stopped node's LMDB file behind its back (python3-lmdb) and call
    change(txn, db) in one write transaction on its database dbname ("_core/audit"...);
    with dbname None, change(txn, open) where open(name) gives any database."""
    try:
        import lmdb  # python3-lmdb (scripts/setup installs it)
    except ImportError:
        test.fail("python3-lmdb is missing: run scripts/setup")
    env = lmdb.open(node.data_dir, max_dbs=256, lock=False, map_size=64 << 20)
    try:
        if dbname is None:
            with env.begin(write=True) as txn:
                change(txn, lambda name: env.open_db(name.encode(), txn=txn, create=False))
        else:
            db = env.open_db(dbname.encode(), create=False)
            with env.begin(write=True, db=db) as txn:
                change(txn, db)
    finally:
        env.close()


def scrape(node):
    st, h, b = node.request("GET", "/metrics")
    if st != 200:
        raise AssertionError("GET /metrics answered %d: %r" % (st, b[:300]))
    return Metrics(b.decode("utf-8"))
