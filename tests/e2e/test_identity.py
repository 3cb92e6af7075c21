# test_identity.py: access control from GET /api, sign-in, lock-out, sessions, sign-up, keys.
import base64
import hashlib
import hmac
import json
import os
import pwd
import re
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
import uuid

from ztnode import (ADMIN_PASSWORD, CREDIT_ALPHABET, NodeTest, credit_check, credit_code, edit_db, free_port,
                    lua_manifest, lua_route, lua_tree_with, run, scrape, wait_for)

CHEAP = {"password_ops": 1, "password_memory": 8192}  # the cheapest Argon2id libsodium takes
STRONG_PW = "Another-strong-pw-2"
TEST_CLOCK = {"ZT_TEST_CLOCK": "1"}


def bearer(token):
    return {"Authorization": "Bearer " + token}


def answer_as_seen(answer):
    """A sign-in's answer as whoever sent it sees it, but what differs between any two
    answers (the request id, the date): (status, headers, body)."""
    st, hdrs, body = answer
    d = json.loads(body)
    d.pop("request_id", None)
    return st, {k: v for k, v in hdrs.items() if k not in ("x-request-id", "date")}, d


def fill_params(path):
    """A concrete path for a route pattern: each :param becomes a dummy value."""
    return re.sub(r":[A-Za-z_][A-Za-z0-9_]*", "e2e0dummy0value", path)


def create_account(node, login, roles=(), department="root"):
    """POST /admin/users as the node's admin: (account id, one-time password)."""
    st, _, d = node.json(
        "POST",
        "/admin/users",
        {"login": login, "name": login.title(), "department": department, "roles": list(roles)},
    )
    if st != 201:
        raise AssertionError("creating %s: %d %r" % (login, st, d))
    return d["id"], d["one_time_password"]


# ---- the check digits, computed here independently of the product ------------------

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check(first17):
    """GB 11643-1999: the check character of an 18-character citizen ID number."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


PUBLISHED_ID = "11010519491231002X"  # the standard's own example
PUBLISHED_CREDIT = "91350100M000100Y43"


def wrong_check(number, check, alphabet):
    """number with its last character replaced by a wrong check character."""
    good = check(number[:17])
    return number[:17] + next(c for c in alphabet if c != good)


def citizen_ids(count, want_x):
    """Valid ID numbers (distinct birth dates in 1980), with or without an X check."""
    out = []
    day = 0
    while len(out) < count:
        day += 1
        month, dom = 1 + day // 28 % 12, 1 + day % 28
        first = "330106" + "1980%02d%02d" % (month, dom) + "%03d" % (day % 1000)
        c = id_check(first)
        if (c == "X") == want_x:
            out.append(first + c)
    return out


class CheckDigitsOfThisFile(unittest.TestCase):
    """The test's own validators agree with the published examples (else every other
    registration test would prove nothing)."""

    def test_published_examples(self):
        self.assertEqual(id_check(PUBLISHED_ID[:17]), PUBLISHED_ID[17])
        self.assertEqual(credit_check(PUBLISHED_CREDIT[:17]), PUBLISHED_CREDIT[17])


# ---- the authorization matrix ---------------------------------------------------------


class AuthorizationMatrix(NodeTest):
    @classmethod
    def setUpClass(cls):
        n = cls.shared_node(plugins=("hello", "notice"))
        cls.nobody = n.new_user("nobody", roles=())  # a staff account without any role
        st, _, d = n.json("GET", "/api", auth=False)
        assert st == 200, (st, d)
        cls.routes = d["routes"]

    def call(self, route, headers):
        body = b"{}" if route["method"] in ("POST", "PUT", "PATCH") else None
        h = dict(headers)
        if body is not None:
            h["Content-Type"] = "application/json"
        return self.shared.request(
            route["method"], fill_params(route["path"]), body, h, auth=False
        )

    def test_api_lists_every_plugin_and_the_core(self):
        plugins = {r["plugin"] for r in self.routes}
        self.assertTrue({"core", "hello", "notice"} <= plugins, plugins)
        for r in self.routes:
            self.assertTrue(r["role"], r)

    def test_no_token_is_401_on_every_non_public_route(self):
        checked = set()
        bad_headers = [
            {},
            {"Authorization": "Bearer zts_" + "A" * 43},  # well-formed, unknown
            {"Authorization": "Bearer ztk_" + "B" * 43},  # an unknown API key
            {"Authorization": "Basic YWRtaW46YWRtaW4="},
        ]
        for r in self.routes:
            if r["role"] == "public":
                continue
            for h in bad_headers:
                with self.subTest(route="%s %s" % (r["method"], r["path"]), headers=h):
                    st, hdrs, b = self.call(r, h)
                    self.assertProblem(st, hdrs, b, 401, "unauthenticated")
                    self.assertTrue(
                        hdrs.get("www-authenticate", "").startswith("Bearer"), hdrs
                    )
            checked.add((r["plugin"], r["method"], r["path"]))
        # the matrix reaches the core, both plugins, and every kind of role
        self.assertIn(("hello", "POST", "/hello/counter"), checked)
        self.assertIn(("notice", "POST", "/notices"), checked)
        self.assertIn(("notice", "DELETE", "/notices/:id"), checked)
        for core in ("/auth/me", "/admin/users", "/audit", "/seal/sign", "/admin/keys/:id"):
            self.assertTrue(any(p == "core" and path == core for p, _, path in checked), core)

    def test_a_caller_without_the_role_is_403_on_every_role_route(self):
        # the token itself is good: routes open to any signed-in user let it through
        st, _, me = self.shared.json("GET", "/auth/me", headers=self.nobody, auth=False)
        self.assertEqual(st, 200, me)
        self.assertEqual(me["roles"], [])
        checked = []
        for r in self.routes:
            if r["role"] in ("public", "user"):
                continue
            with self.subTest(route="%s %s" % (r["method"], r["path"]), role=r["role"]):
                st, hdrs, b = self.call(r, self.nobody)
                p = self.assertProblem(st, hdrs, b, 403, "forbidden")
                self.assertIn(r["role"], p["detail"])
            checked.append((r["plugin"], r["role"]))
        self.assertIn(("notice", "notice_editor"), checked)
        for role in ("admin", "auditor", "seal_officer"):
            self.assertIn(("core", role), checked)

    def test_the_holder_of_the_role_is_let_through(self):
        # the same routes answer the admin (who holds 'admin') with something else than
        # 401/403: so the 403s above come from the role, not from the route
        for r in self.routes:
            if r["role"] != "admin" or r["method"] != "GET" or ":" in r["path"]:
                continue
            with self.subTest(route=r["path"]):
                st, _, b = self.shared.request("GET", r["path"])
                self.assertEqual(st, 200, b[:300])


# ---- brute force ------------------------------------------------------------------------


class BruteForce(NodeTest):
    """auth.max_failures = 3: the third failure locks for lock_seconds, per account and
    per client address. Each client address is a loopback address of its own."""

    def start(self):
        auth = dict(CHEAP, max_failures=3, lock_seconds=60)
        return self.node(auth=auth, env=TEST_CLOCK)

    def assertLocked(self, st, h, d):
        self.assertEqual(st, 429, d)
        self.assertEqual(d["type"], "/problems/too-many-attempts", d)
        self.assertIn("retry-after", h)
        wait = int(h["retry-after"])
        self.assertTrue(1 <= wait <= 60, wait)

    def test_an_account_locks_after_the_configured_failures(self):
        n = self.start()
        _, otp = create_account(n, "victim")
        for i, src in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4")):
            st, _, d = n.login("victim", "wrong-password-%d" % i, source=src)
            self.assertEqual(st, 401, d)  # not locked before the third failure
            self.assertEqual(d["type"], "/problems/bad-credentials")
        # from a fresh address: the account is locked, even with the right password
        self.assertLocked(*n.login("victim", otp, source="127.0.0.5"))
        self.assertLocked(*n.login("victim", "wrong-again-1", source="127.0.0.5"))
        # that address itself is not locked
        _, otp2 = create_account(n, "bystander")
        st, _, d = n.login("bystander", otp2, source="127.0.0.5")
        self.assertEqual(st, 200, d)
        # the counters are in /metrics
        m = scrape(n)
        self.assertGreaterEqual(m.get("zt_auth_throttle_entries"), 4)  # 1 account, 3 addresses
        self.assertEqual(m.types.get("zt_auth_throttle_evictions_total"), "counter")
        self.assertEqual(m.get("zt_auth_throttle_evictions_total"), 0)
        # someone guessing shows: sign-ins by outcome, the lock, a log line to alert on
        self.assertEqual(m.types.get("zt_auth_sign_ins_total"), "counter")
        self.assertEqual({r: m.get("zt_auth_sign_ins_total", result=r)
                          for r in ("ok", "bad_password", "locked", "bad_code", "refused")},
                         {"ok": 2, "bad_password": 3, "locked": 2, "bad_code": 0, "refused": 0})
        self.assertEqual((m.get("zt_auth_locks_total", scope="account"),
                          m.get("zt_auth_locks_total", scope="address")), (1, 0))
        self.assertEqual(n.log().count("the account 'victim' is locked for 60 s after 3 failed "
                                       "sign-ins (auth.max_failures)"), 1, n.log())
        # past lock_seconds the right password works again
        n.set_clock(61_000)
        st, _, d = n.login("victim", otp, source="127.0.0.5")
        self.assertEqual(st, 200, d)
        self.assertEqual(d["user"]["login"], "victim")

    def test_an_address_locks_after_the_configured_failures(self):
        n = self.start()
        otps = {name: create_account(n, name)[1] for name in ("acc1", "acc2", "acc3", "acc4")}
        attacker = "127.0.0.6"
        for name in ("acc1", "acc2", "no-such-login"):  # one failure per account
            st, _, d = n.login(name, "wrong-password-x", source=attacker)
            self.assertEqual(st, 401, d)
        # the address is locked, for any account and the right password too
        self.assertLocked(*n.login("acc4", otps["acc4"], source=attacker))
        self.assertLocked(*n.login("acc3", otps["acc3"], source=attacker))
        # the accounts themselves are not: from elsewhere they sign in
        for name in ("acc1", "acc4"):
            st, _, d = n.login(name, otps[name], source="127.0.0.7")
            self.assertEqual(st, 200, (name, d))
        m = scrape(n)
        self.assertEqual((m.get("zt_auth_locks_total", scope="account"),
                          m.get("zt_auth_locks_total", scope="address")), (0, 1))
        self.assertIn("the address 127.0.0.6 is locked for 60 s", n.log())

    def test_old_password_guesses_lock_too(self):
        # a stolen session must not guess the password through POST /auth/password
        n = self.start()
        h = n.new_user("holder")
        for i in range(3):
            st, _, d = n.json(
                "POST", "/auth/password",
                {"old_password": "guess-number-%d" % i, "new_password": STRONG_PW}, h,
                auth=False,
            )
            self.assertEqual((st, d["type"]), (403, "/problems/bad-credentials"), d)
        # now the right old password is refused as well, here and at sign-in
        self.assertLocked(*n.json(
            "POST", "/auth/password",
            {"old_password": ADMIN_PASSWORD, "new_password": STRONG_PW}, h, auth=False,
        ))
        self.assertLocked(*n.login("holder", ADMIN_PASSWORD, source="127.0.0.8"))
        n.set_clock(61_000)
        st, _, b = n.request(
            "POST", "/auth/password",
            {"old_password": ADMIN_PASSWORD, "new_password": STRONG_PW}, h, auth=False,
        )
        self.assertEqual(st, 204, b)


    def test_refusals_are_recorded_once_and_a_lock_cannot_fill_the_log(self):
        n = self.node(auth=dict(CHEAP, max_failures=3, lock_seconds=60), env=TEST_CLOCK,
                      roles=("auditor",))
        h = n.new_user("holder")
        for i in range(2):  # a wrong old password: one record each, not two
            st, _, d = n.json("POST", "/auth/password",
                              {"old_password": "guess-%d" % i, "new_password": STRONG_PW}, h, auth=False)
            self.assertEqual(st, 403, d)

        def actions(count, want):
            """The audit log's actions once `count` of them are `want` (a refusal changes
            nothing, so its answer does not wait for its record's commit)."""
            def got():
                st, _, d = n.json("GET", "/audit?limit=1000")
                self.assertEqual(st, 200, d)
                a = [x["action"] for x in d["items"]]
                return a if sum(want in x for x in a) >= count else None
            return wait_for("%d records of %s" % (count, want), got)

        self.assertEqual([a for a in actions(2, "password change") if "password change" in a],
                         ["password change refused"] * 2)
        # locked: anyone may try again and again; 20 records in 10 minutes, then counted
        _, otp = create_account(n, "victim")
        for i in range(3):
            self.assertEqual(n.login("victim", "wrong-%d" % i, source="127.0.0.2")[0], 401)
        for i in range(30):
            self.assertLocked(*n.login("victim", otp, source="127.0.0.%d" % (3 + i % 3)))
        self.assertEqual(actions(20, "sign-in refused: locked").count("sign-in refused: locked"), 20)
        self.assertEqual(scrape(n).get("zt_auth_refusals_unrecorded_total"), 10)
        self.assertIn("the locked sign-in of victim was refused 20 times in 10 minutes", n.log())
        # one address, locked, trying logins that are not: bounded as well
        for name in ("a1", "a2", "a3"):
            self.assertEqual(n.login(name, "wrong", source="127.0.0.9")[0], 401)
        for i in range(25):
            self.assertLocked(*n.login("x%d" % i, "wrong", source="127.0.0.9"))
        self.assertEqual(actions(40, "sign-in refused: locked").count("sign-in refused: locked"), 40)
        self.assertIn("a sign-in from locked address 127.0.0.9 was refused 20 times", n.log())
        st, _, v = n.json("GET", "/audit/verify")
        self.assertTrue(v["ok"], v)

    def test_a_lock_longer_than_the_failure_window_lasts_its_length(self):
        # failures count within 15 minutes; a lock of an hour must still last an hour
        n = self.node(auth=dict(CHEAP, max_failures=3, lock_seconds=3600), env=TEST_CLOCK)
        _, otp = create_account(n, "longlock")
        for i in range(3):
            self.assertEqual(n.login("longlock", "wrong-%d" % i, source="127.0.0.9")[0], 401)
        n.set_clock(20 * 60_000)  # 20 minutes: past the window, well inside the lock
        st, h, d = n.login("longlock", otp, source="127.0.0.10")
        self.assertEqual((st, d["type"]), (429, "/problems/too-many-attempts"), d)
        self.assertTrue(2300 <= int(h["retry-after"]) <= 2400, h["retry-after"])
        n.set_clock(61 * 60_000)
        st, _, d = n.login("longlock", otp, source="127.0.0.10")
        self.assertEqual(st, 200, d)


class RegistrationQuota(NodeTest):
    """auth.registrations_per_hour = 2: each registration costs an Argon2id hash and adds
    an account, so one address gets so many an hour."""

    def test_an_address_registers_so_many_an_hour(self):
        n = self.node(auth=dict(CHEAP, registrations_per_hour=2), env=TEST_CLOCK)

        def reg(login, source="127.0.4.1"):
            return n.request("POST", "/auth/register",
                             {"kind": "citizen", "login": login, "name": "Wang",
                              "password": STRONG_PW}, auth=False, source=source)

        self.assertEqual(reg("wang.one")[0], 201)
        # bad input costs nothing and is not counted
        st, h, b = n.request("POST", "/auth/register", {"kind": "citizen"}, auth=False,
                             source="127.0.4.1")
        self.assertProblem(st, h, b, 422, "invalid-registration")
        # a refused registration that cost a hash counts
        st, h, b = reg("wang.one")
        self.assertProblem(st, h, b, 409, "login-taken")
        # the third is refused before it costs anything
        st, h, b = reg("wang.two")
        self.assertProblem(st, h, b, 429, "too-many-registrations")
        self.assertTrue(3500 <= int(h["retry-after"]) <= 3600, h["retry-after"])
        self.assertEqual(n.login("wang.two", STRONG_PW, source="127.0.4.9")[0], 401)  # none
        # another address is not held back, and the hour passes
        self.assertEqual(reg("wang.three", source="127.0.4.2")[0], 201)
        n.set_clock(3601_000)
        self.assertEqual(reg("wang.two")[0], 201)

    def test_zero_is_no_limit(self):
        n = self.node(auth=dict(CHEAP, registrations_per_hour=0))
        for i in range(25):  # more than the default 20
            st, _, d = register(n, kind="citizen", login="many%d" % i, name="Many")
            self.assertEqual(st, 201, (i, d))


# ---- sessions: expiry and revocation --------------------------------------------------


class Expiry(NodeTest):
    """With the controllable clock: idle_timeout 120 s, session_ttl 300 s. last_seen is
    refreshed at most once a minute, so the steps below are chosen around that."""

    def start(self):
        auth = dict(CHEAP, idle_timeout=120, session_ttl=300)
        n = self.node(auth=auth, env=TEST_CLOCK)
        return n, n.new_user("walker")

    def me(self, n, h):
        return n.request("GET", "/auth/me", headers=h, auth=False)

    def test_idle_session_ends(self):
        n, h = self.start()
        self.assertEqual(self.me(n, h)[0], 200)
        n.set_clock(50_000)  # idle 50 s: fine (and too soon to refresh last_seen)
        self.assertEqual(self.me(n, h)[0], 200)
        n.set_clock(121_000)  # idle 121 s > 120 s
        st, hdrs, b = self.me(n, h)
        p = self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertIn("idle", p["detail"])
        self.assertIn("www-authenticate", hdrs)
        # signing in again gives a working session
        st, _, d = n.login("walker", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        self.assertEqual(self.me(n, bearer(d["token"]))[0], 200)

    def test_active_session_expires_at_its_ttl(self):
        n, h = self.start()
        for offset in (100_000, 200_000):  # never idle for 120 s
            n.set_clock(offset)
            st, _, b = self.me(n, h)
            self.assertEqual(st, 200, b)
        n.set_clock(301_000)  # 301 s after sign-in, only 101 s after the last request
        st, hdrs, b = self.me(n, h)
        p = self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertIn("expired", p["detail"])


    def test_ended_sessions_are_not_kept_and_an_account_holds_a_bounded_number(self):
        # every sign-in stores a session: ended ones (expired, idle) used to stay for good,
        # so anyone who registered could grow the store (and their GET /auth/sessions)
        # without bound by signing in over and over
        n, h = self.start()
        for _ in range(3):
            self.assertEqual(n.login("walker", ADMIN_PASSWORD)[0], 200)
        n.set_clock(301_000)  # all four have ended
        st, _, d = n.login("walker", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        h = bearer(d["token"])
        st, _, lst = n.json("GET", "/auth/sessions", headers=h, auth=False)
        self.assertEqual([s["current"] for s in lst["items"]], [True])
        for hidden in ("mac", "user", "order"):  # the record's seal and its index fields
            self.assertNotIn(hidden, lst["items"][0])
        # live ones: the newest 64 are kept, the oldest end
        first = h
        tokens = [bearer(n.login("walker", ADMIN_PASSWORD)[2]["token"]) for _ in range(64)]
        st, _, lst = n.json("GET", "/auth/sessions", headers=tokens[-1], auth=False)
        self.assertEqual(len(lst["items"]), 64)
        self.assertEqual(self.me(n, first)[0], 401)
        self.assertEqual(self.me(n, tokens[0])[0], 200)

    def test_abandoned_sessions_are_swept(self):
        # the ended sessions of accounts that never sign in again stayed for good: a sweep
        # (every minute; every 100 ms here) removes them, with one audit record
        n = self.node(auth=dict(CHEAP, idle_timeout=120, session_ttl=300),
                      env=dict(TEST_CLOCK, ZT_TEST_SWEEP_MS="100"))
        for i in range(5):
            n.new_user("gone%d" % i)
        live = n.new_user("stays", roles=("auditor",))
        n.set_clock(100_000)
        self.assertEqual(self.me(n, live)[0], 200)  # in use: it lives on
        n.set_clock(200_000)  # the others idle for 200 s > 120 s
        for _ in range(100):
            if "sessions: removed" in n.log():
                break
            time.sleep(0.05)
        self.assertRegex(n.log(), r"sessions: removed \d+ ended sessions")
        self.assertEqual(self.me(n, live)[0], 200)
        self.assertEqual(n.stop(), 0)
        left = {}

        def count(txn, open_db):
            for name in ("_core/sessions", "_core/user_sessions"):
                left[name] = txn.stat(open_db(name))["entries"]

        edit_db(self, n, None, count)
        self.assertEqual(left, {"_core/sessions": 1, "_core/user_sessions": 1})
        n.start()
        st, _, recs = n.json("GET", "/audit?limit=1000", None, live, auth=False)
        self.assertEqual(st, 200, recs)
        self.assertIn(("sweep sessions", "system"),
                      [(r["action"], r["actor"]) for r in recs["items"]])

    def test_a_session_in_use_does_not_go_idle(self):
        # with an idle timeout shorter than a minute, a session used every 20 s lives on
        n = self.node(auth=dict(CHEAP, idle_timeout=30, session_ttl=300), env=TEST_CLOCK)
        h = n.new_user("busy")
        for offset in (20_000, 40_000, 60_000, 80_000):
            n.set_clock(offset)
            st, _, b = self.me(n, h)
            self.assertEqual(st, 200, (offset, b))
        n.set_clock(111_000)  # 31 s after the last request
        st, hdrs, b = self.me(n, h)
        p = self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertIn("idle", p["detail"])


class PasswordAge(NodeTest):
    """auth.password_max_age (GB/T 22239: passwords changed periodically): a staff
    password older than it reaches only /auth/ until changed; citizens are not held to it."""

    def test_an_old_staff_password_must_be_changed_before_anything_else(self):
        n = self.node(auth=dict(CHEAP, password_max_age=200), env=TEST_CLOCK,
                      plugins=("hello", "notice"))
        h = n.new_user("clerk", roles=("notice_editor",))
        st, _, d = register(n, kind="citizen", login="wang.wu", name="Wang Wu",
                            id_number=PUBLISHED_ID)
        self.assertEqual(st, 201, d)
        st, _, d = n.login("wang.wu", STRONG_PW)
        self.assertEqual(st, 200, d)
        citizen = bearer(d["token"])
        self.assertNotIn("password_expires_at", d["user"])  # not for citizens
        st, _, me = n.json("GET", "/auth/me", headers=h, auth=False)
        self.assertEqual(st, 200, me)
        # from the change new_user made, just before
        self.assertAlmostEqual(me["password_expires_at"], time.time() * 1000 + 200_000, delta=30_000)
        notice = {"title": "停水通知", "body": "明天上午停水"}
        self.assertEqual(n.json("POST", "/notices", notice, headers=h, auth=False)[0], 201)

        n.set_clock(201_000)
        st, hdrs, b = n.request("POST", "/notices", notice, headers=h, auth=False)
        p = self.assertProblem(st, hdrs, b, 403, "password-expired")
        self.assertIn("older than 200 seconds (auth.password_max_age)", p["detail"])
        # the admin's too: every staff account
        st, hdrs, b = n.request("GET", "/admin/users")
        self.assertProblem(st, hdrs, b, 403, "password-expired")
        # the account's own routes still answer, the citizen goes on
        self.assertEqual(n.json("GET", "/auth/me", headers=h, auth=False)[0], 200)
        self.assertEqual(n.request("POST", "/hello/counter", headers=citizen, auth=False)[0], 200)
        # the same password again renews nothing
        st, hdrs, b = n.request("POST", "/auth/password",
                                {"old_password": ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD},
                                headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 422, "same-password")
        st, _, b = n.request("POST", "/auth/password",
                             {"old_password": ADMIN_PASSWORD, "new_password": STRONG_PW},
                             headers=h, auth=False)
        self.assertEqual(st, 204, b)
        # the same session works again, and the next expiry is counted from the change
        self.assertEqual(n.json("POST", "/notices", notice, headers=h, auth=False)[0], 201)
        st, _, me = n.json("GET", "/auth/me", headers=h, auth=False)
        self.assertAlmostEqual(me["password_expires_at"],
                               time.time() * 1000 + 201_000 + 200_000, delta=30_000)

    def test_zero_turns_it_off(self):
        n = self.node(auth=dict(CHEAP, password_max_age=0), env=TEST_CLOCK)
        h = n.new_user("veteran", roles=("notice_editor",))
        n.set_clock(20 * 366 * 86400 * 1000)  # twenty years on (the session is long gone)
        st, _, d = n.login("veteran", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        h = bearer(d["token"])
        st, _, me = n.json("GET", "/auth/me", headers=h, auth=False)
        self.assertEqual(st, 200, me)
        self.assertNotIn("password_expires_at", me)
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b"}, headers=h, auth=False)
        self.assertEqual(st, 201, b)


def two_factor(test, n, h):
    """Sign-in codes set up and confirmed for the account whose headers are h: its
    authenticator secret (in POST /auth/totp's answer) and when the code confirmed it."""
    st, _, t = n.json("POST", "/auth/totp", {}, headers=h, auth=False)
    test.assertEqual(st, 201, t)
    now = time.time() * 1000
    st, _, b = n.request("POST", "/auth/totp/confirm", {"code": totp(t["secret"], now)},
                         headers=h, auth=False)
    test.assertEqual(st, 204, b)
    return t, now


def totp(secret_b32, at_ms):
    """RFC 6238 (HMAC-SHA1, 6 digits, 30 s), computed here independently of the node."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at_ms // 30000)), hashlib.sha1).digest()
    off = mac[19] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


class TwoFactor(NodeTest):
    """Sign-in codes from an authenticator app (auth.two_factor_roles)."""

    def setUp(self):
        super().setUp()
        self.n = self.node(auth=dict(CHEAP, two_factor_roles=["auditor"]), env=TEST_CLOCK,
                           roles=("admin",))
        self.offset = 0

    def at(self, offset_ms):
        self.offset = offset_ms
        self.n.set_clock(offset_ms)

    def code(self, secret, steps=0):
        return totp(secret, time.time() * 1000 + self.offset + steps * 30000)

    def enroll(self, h):
        st, _, d = self.n.json("POST", "/auth/totp", {}, headers=h, auth=False)
        self.assertEqual(st, 201, d)
        st, _, b = self.n.request("POST", "/auth/totp/confirm", {"code": self.code(d["secret"])},
                                  headers=h, auth=False)
        self.assertEqual(st, 204, b)
        return d["secret"]

    def test_a_role_that_needs_it_reaches_only_its_account_until_set_up(self):
        n = self.n
        h = n.new_user("inspector", roles=("auditor",))
        st, hdrs, b = n.request("GET", "/audit", headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 403, "two-factor-required")
        self.assertIs(n.json("GET", "/auth/me", headers=h, auth=False)[2]["two_factor"], False)
        st, _, d = n.json("POST", "/auth/totp", {}, headers=h, auth=False)
        self.assertEqual(st, 201, d)
        secret = d["secret"]
        self.assertRegex(secret, r"^[A-Z2-7]{32}$")  # 160 bits
        self.assertEqual(
            d["uri"],
            "otpauth://totp/e2e-test:inspector?secret=%s&issuer=e2e-test&algorithm=SHA1&digits=6"
            "&period=30" % secret,
        )
        # not on until a code from the app confirms it
        self.assertProblem(*n.request("GET", "/audit", headers=h, auth=False), 403,
                           "two-factor-required")
        wrong = "%06d" % ((int(self.code(secret)) + 1) % 1000000)
        st, hdrs, b = n.request("POST", "/auth/totp/confirm", {"code": wrong}, headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 422, "bad-code")
        st, _, b = n.request("POST", "/auth/totp/confirm", {"code": self.code(secret)}, headers=h,
                             auth=False)
        self.assertEqual(st, 204, b)
        # the same session goes on, now that it is set up
        self.assertEqual(n.request("GET", "/audit", headers=h, auth=False)[0], 200)
        self.assertIs(n.json("GET", "/auth/me", headers=h, auth=False)[2]["two_factor"], True)
        st, _, again = n.json("POST", "/auth/totp", {}, headers=h, auth=False)
        self.assertEqual((st, again["type"]), (409, "/problems/two-factor-on"))
        # the audit log has it; the secret is nowhere in the data file in clear
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        st, _, log = n.json("GET", "/audit?object=" + uid, headers=h, auth=False)
        self.assertIn("turn on two-factor sign-in", [r["action"] for r in log["items"]], log)
        n.stop()
        with open(os.path.join(n.data_dir, "data.mdb"), "rb") as f:
            raw = f.read()
        self.assertNotIn(secret.encode(), raw)
        self.assertNotIn(base64.b32decode(secret), raw)

    def test_a_typo_in_two_factor_roles_is_warned_of(self):
        n = self.node(auth=dict(CHEAP, two_factor_roles=["auditr", "auditor", "dept_head"]),
                      roles=("dept_head",))
        log = n.log()
        self.assertIn("auth.two_factor_roles: 'auditr' is not a role of this node", log)
        self.assertNotIn("'auditor' is not a role", log)  # the core's
        # no plugin here declares dept_head; the test node added it once started
        self.assertEqual(log.count("'dept_head' is not a role"), 1)
        n.restart()
        log = n.log()
        self.assertEqual(log.count("'auditr' is not a role"), 2)
        self.assertEqual(log.count("'dept_head' is not a role"), 1)
        # `check` says so before a start, from the roles the core and the plugins declare
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("'auditr' is not a role of this node (no plugin declares it, and check "
                      "cannot see the roles county IT added)", r.stderr)
        self.assertNotIn("'auditor' is not a role", r.stderr)

    def test_an_administrator_who_lost_the_phone_turns_codes_off_offline(self):
        # the only administrator's phone is gone: HTTP needs an administrator signed in with
        # a code; on the node's machine `admin user totp-off` ends it
        n = self.n
        h = n.new_user("chief", roles=("auditor",))
        secret = self.enroll(h)
        r = n.admin_cli("user", "list")
        self.assertIn("(two-factor)", [l for l in r.stdout.splitlines() if " chief " in l][0])
        r = n.admin_cli("user", "totp-off", "chief")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("two-factor sign-in off", r.stdout)
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 401)  # sessions end
        st, _, d = n.login("chief", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)  # no code asked
        self.assertIs(n.json("GET", "/auth/me", headers=bearer(d["token"]), auth=False)[2]["two_factor"],
                      False)
        self.assertNotEqual(n.admin_cli("user", "totp-off", "nobody").returncode, 0)
        del secret

    def test_no_api_key_holds_a_role_that_needs_two_factors(self):
        # an API key is one factor: a key with the auditor role would reach the audit log
        # with no code, for good (no session ends it, no password change)
        n = self.n
        st, hdrs, b = n.request("POST", "/admin/keys", {"name": "k", "plugin": "core", "role": "auditor"})
        p = self.assertProblem(st, hdrs, b, 422, "invalid-key")
        self.assertIn("two_factor_roles", p["detail"])
        r = n.admin_cli("key", "add", "k", "core", "auditor")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("two_factor_roles", r.stderr + r.stdout)
        st, _, lst = n.json("GET", "/admin/keys")
        self.assertEqual(lst["items"], [])
        # other roles still make keys
        st, _, k = n.json("POST", "/admin/keys", {"name": "k", "plugin": "core", "role": "user"})
        self.assertEqual(st, 201, k)

    def test_a_key_made_before_its_role_needed_two_factors_stops_working(self):
        n = self.node(auth=CHEAP, roles=("admin",))
        st, _, k = n.json("POST", "/admin/keys", {"name": "k", "plugin": "core", "role": "auditor"})
        self.assertEqual(st, 201, k)
        h = bearer(k["key"])
        self.assertEqual(n.request("GET", "/audit", headers=h, auth=False)[0], 200)
        n.stop()
        n._conf_text = n._conf_text.replace("auth = {", 'auth = { two_factor_roles = { "auditor" }, ', 1)
        n._write_conf()
        n.start()
        st, hdrs, b = n.request("GET", "/audit", headers=h, auth=False)
        p = self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertIn("two_factor_roles", p["detail"])

    def test_turning_it_on_ends_the_other_sessions(self):
        # sessions signed in with the password alone must not outlive the second factor:
        # whoever had the password keeps no session once its owner turns codes on
        n = self.n
        h = n.new_user("careful")
        st, _, d = n.login("careful", ADMIN_PASSWORD)
        other = bearer(d["token"])
        self.enroll(h)
        self.assertEqual(n.request("GET", "/auth/me", headers=other, auth=False)[0], 401)
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 200)

    def test_sign_in_takes_a_code_once(self):
        n = self.n
        h = n.new_user("inspector", roles=("auditor",))
        secret = self.enroll(h)
        st, hdrs, b = n.request("POST", "/auth/login",
                                {"login": "inspector", "password": ADMIN_PASSWORD}, auth=False)
        p = self.assertProblem(st, hdrs, b, 401, "two-factor-required")
        self.assertIn('"code"', p["detail"])
        self.at(30_000)  # the code the confirmation spent is behind us
        good = {"login": "inspector", "password": ADMIN_PASSWORD, "code": self.code(secret)}
        st, _, d = n.json("POST", "/auth/login", good, auth=False)
        self.assertEqual(st, 200, d)
        self.assertIs(d["user"]["two_factor"], True)
        # the same code again: spent (one seen over a shoulder is no use)
        st, hdrs, b = n.request("POST", "/auth/login", good, auth=False)
        self.assertProblem(st, hdrs, b, 401, "bad-credentials")
        # a phone a step ahead is fine; the password still has to be right
        ahead = dict(good, code=self.code(secret, steps=1))
        self.assertProblem(*n.request("POST", "/auth/login", dict(ahead, password="Wrong-pw-123"),
                                      auth=False), 401, "bad-credentials")
        self.assertEqual(n.request("POST", "/auth/login", ahead, auth=False)[0], 200)
        m = scrape(n)
        self.assertEqual([m.get("zt_auth_sign_ins_total", result=r)
                          for r in ("code_required", "bad_code", "bad_password")], [1, 1, 1])

    def test_wrong_codes_lock_like_wrong_passwords(self):
        n = self.n
        h = n.new_user("inspector", roles=("auditor",))
        secret = self.enroll(h)
        now = int(self.code(secret))
        for i in range(5):  # max_failures 5 (the default)
            body = {"login": "inspector", "password": ADMIN_PASSWORD,
                    "code": "%06d" % ((now + 500 + i) % 1000000)}
            st, _, d = n.json("POST", "/auth/login", body, auth=False, source="127.0.4.%d" % i)
            self.assertIn(st, (401, 429), d)
        st, hdrs, b = n.request("POST", "/auth/login",
                                {"login": "inspector", "password": ADMIN_PASSWORD,
                                 "code": self.code(secret, steps=1)}, auth=False, source="127.0.4.9")
        self.assertProblem(st, hdrs, b, 429, "too-many-attempts")

    def test_turning_it_off_takes_a_code_and_an_admin_can_remove_it(self):
        n = self.n
        h = n.new_user("inspector", roles=("auditor",))
        secret = self.enroll(h)
        self.at(30_000)
        st, hdrs, b = n.request("DELETE", "/auth/totp", {"code": "000000"}, headers=h, auth=False)
        if self.code(secret) != "000000":
            self.assertProblem(st, hdrs, b, 422, "bad-code")
        st, _, b = n.request("DELETE", "/auth/totp", {"code": self.code(secret)}, headers=h,
                             auth=False)
        self.assertEqual(st, 204, b)
        # off: an auditor without it is held at /auth/ again, and signs in with no code
        self.assertProblem(*n.request("GET", "/audit", headers=h, auth=False), 403,
                           "two-factor-required")
        st, _, d = n.login("inspector", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        # set up again; the phone is lost: an administrator removes it and ends the sessions
        self.at(60_000)
        self.enroll(h)
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        st, _, b = n.request("DELETE", "/admin/users/%s/totp" % uid)
        self.assertEqual(st, 204, b)
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 401)
        st, _, d = n.login("inspector", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        self.assertIs(d["user"]["two_factor"], False)
        # a role not listed is not held to it: the admin here never set it up
        self.assertEqual(n.request("GET", "/admin/users")[0], 200)


class Revocation(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node()
        cls.addr = 20  # a fresh loopback address per failing sign-in: no lock-out here

    def fresh_source(self):
        type(self).addr += 1
        return "127.0.1.%d" % type(self).addr

    def sign_in(self, login, password=ADMIN_PASSWORD):
        st, _, d = self.shared.login(login, password)
        self.assertEqual(st, 200, d)
        return bearer(d["token"]), d

    def assertEnded(self, h):
        st, hdrs, b = self.shared.request("GET", "/auth/me", headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 401, "unauthenticated")

    def assertAlive(self, h):
        st, _, b = self.shared.request("GET", "/auth/me", headers=h, auth=False)
        self.assertEqual(st, 200, b)

    def uid(self, h):
        return self.shared.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]

    def test_logout(self):
        h = self.shared.new_user("rv-logout")
        other, _ = self.sign_in("rv-logout")
        st, _, b = self.shared.request("POST", "/auth/logout", headers=h, auth=False)
        self.assertEqual(st, 204, b)
        self.assertEnded(h)
        self.assertAlive(other)  # only this session ended

    def test_end_one_of_your_sessions(self):
        h1 = self.shared.new_user("rv-sessions")
        h2, d2 = self.sign_in("rv-sessions")
        st, _, lst = self.shared.json("GET", "/auth/sessions", headers=h1, auth=False)
        self.assertEqual(st, 200)
        ids = {s["id"]: s for s in lst["items"]}
        self.assertIn(d2["session"], ids)
        self.assertEqual(sum(1 for s in lst["items"] if s["current"]), 1)
        self.assertFalse(ids[d2["session"]]["current"])
        # someone else cannot end it
        h3 = self.shared.new_user("rv-stranger")
        st, _, _ = self.shared.request(
            "DELETE", "/auth/sessions/" + d2["session"], headers=h3, auth=False
        )
        self.assertEqual(st, 404)
        self.assertAlive(h2)
        st, _, b = self.shared.request(
            "DELETE", "/auth/sessions/" + d2["session"], headers=h1, auth=False
        )
        self.assertEqual(st, 204, b)
        self.assertEnded(h2)
        self.assertAlive(h1)
        st, _, lst = self.shared.json("GET", "/auth/sessions", headers=h1, auth=False)
        self.assertNotIn(d2["session"], [s["id"] for s in lst["items"]])

    def test_admin_disables_an_account(self):
        h = self.shared.new_user("rv-disabled")
        h2, _ = self.sign_in("rv-disabled")
        uid = self.uid(h)
        st, _, d = self.shared.json("PATCH", "/admin/users/" + uid, {"disabled": True})
        self.assertEqual(st, 200, d)
        self.assertEnded(h)
        self.assertEnded(h2)
        st, _, d = self.shared.login("rv-disabled", ADMIN_PASSWORD, source=self.fresh_source())
        self.assertEqual(st, 401, d)
        st, _, d = self.shared.json("PATCH", "/admin/users/" + uid, {"disabled": False})
        self.assertEqual(st, 200, d)
        h3, _ = self.sign_in("rv-disabled")
        self.assertAlive(h3)

    def test_admin_resets_a_password(self):
        h = self.shared.new_user("rv-reset")
        uid = self.uid(h)
        st, _, d = self.shared.json("POST", "/admin/users/%s/password" % uid, {})
        self.assertEqual(st, 200, d)
        otp = d["one_time_password"]
        self.assertEnded(h)
        st, _, _ = self.shared.login("rv-reset", ADMIN_PASSWORD, source=self.fresh_source())
        self.assertEqual(st, 401)  # the old password is gone
        h2, d2 = self.sign_in("rv-reset", otp)
        self.assertTrue(d2["user"]["must_change_password"])

    def test_admin_revokes_every_session(self):
        h = self.shared.new_user("rv-revoke")
        h2, _ = self.sign_in("rv-revoke")
        st, _, b = self.shared.request("DELETE", "/admin/users/%s/sessions" % self.uid(h))
        self.assertEqual(st, 204, b)
        self.assertEnded(h)
        self.assertEnded(h2)
        self.assertAlive(self.sign_in("rv-revoke")[0])  # the account itself still works
        # an id that is no account's is 404, as on the account's other routes: it used
        # to answer 204 having compared 26 bytes of an id that may be shorter
        for bad in ("x", "nosuch", "0" * 26, "0" * 40):
            st, hdrs, b = self.shared.request("DELETE", "/admin/users/%s/sessions" % bad)
            self.assertProblem(st, hdrs, b, 404, "not-found")

    def test_changing_your_password_ends_your_other_sessions(self):
        # someone who has the old password, or a session taken with it, must not keep the
        # account after its owner changes the password; the session that changed it goes on
        h = self.shared.new_user("rv-change")
        h2, _ = self.sign_in("rv-change")
        st, _, b = self.shared.request(
            "POST", "/auth/password", {"old_password": ADMIN_PASSWORD, "new_password": STRONG_PW},
            headers=h, auth=False,
        )
        self.assertEqual(st, 204, b)
        self.assertEnded(h2)
        self.assertAlive(h)
        st, _, lst = self.shared.json("GET", "/auth/sessions", headers=h, auth=False)
        self.assertEqual([s["current"] for s in lst["items"]], [True])
        self.assertAlive(self.sign_in("rv-change", STRONG_PW)[0])

    def test_a_logout_holds_for_the_requests_pipelined_behind_it(self):
        # One write carries them all, so the node reads them in one loop iteration, in
        # which the token was resolved just before the logout ended its session.
        h = self.shared.new_user("rv-pipelined")
        self.assertAlive(h)

        def req(method, path):
            return (
                "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 0\r\n\r\n"
                % (method, path, h["Authorization"])
            ).encode()

        wire = req("GET", "/auth/me") + req("POST", "/auth/logout") + 2 * req("GET", "/auth/me")
        with self.shared.rawconn() as c:
            rs = c.exchange(wire, 4)
        self.assertEqual([r.status for r in rs], [200, 204, 401, 401])

    def test_cli_disables_an_account_while_the_node_runs(self):
        # Another process changes the identity data: the running node's cached session
        # must not outlive it.
        h = self.shared.new_user("rv-cli")
        self.assertAlive(h)
        r = self.shared.admin_cli("user", "disable", "rv-cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEnded(h)
        r = self.shared.admin_cli("user", "enable", "rv-cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEnded(h)  # disabling ended the session for good
        self.assertAlive(self.sign_in("rv-cli")[0])


# ---- one-time passwords ---------------------------------------------------------------


class OneTimePassword(NodeTest):
    def change(self, n, h, old, new):
        return n.request(
            "POST", "/auth/password", {"old_password": old, "new_password": new}, h, auth=False
        )

    def test_first_start_admin(self):
        n = self.node(sign_in=False)
        otp = n.first_start_password()
        self.assertTrue(otp and len(otp) >= 10, n.stdout())
        self.assertNotIn(otp, n.log())  # printed once, on stdout, never logged
        st, _, d = n.login("admin", otp)
        self.assertEqual(st, 200, d)
        self.assertTrue(d["user"]["must_change_password"])
        self.assertIn("admin", d["user"]["roles"])
        h = bearer(d["token"])
        st, hdrs, b = n.request("GET", "/admin/users", headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 403, "password-change-required")
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 200)
        st, hdrs, b = self.change(n, h, "not-the-otp-1", STRONG_PW)
        self.assertEqual(st, 403, b)
        st, hdrs, b = self.change(n, h, otp, "short-1")
        self.assertProblem(st, hdrs, b, 422, "weak-password")
        st, _, b = self.change(n, h, otp, STRONG_PW)
        self.assertEqual(st, 204, b)
        self.assertEqual(n.request("GET", "/admin/users", headers=h, auth=False)[0], 200)
        self.assertEqual(n.login("admin", otp, source="127.0.2.1")[0], 401)
        st, _, d = n.login("admin", STRONG_PW)
        self.assertEqual(st, 200)
        self.assertFalse(d["user"]["must_change_password"])

    def test_new_staff_account_must_change_its_password(self):
        n = self.node()
        _, otp = create_account(n, "newcomer", roles=("notice_editor",))
        st, _, d = n.login("newcomer", otp)
        self.assertEqual(st, 200, d)
        self.assertTrue(d["user"]["must_change_password"])
        h = bearer(d["token"])
        for method, path, body in (
            ("POST", "/hello/counter", None),  # any signed-in user, another plugin
            ("POST", "/notices", {"title": "t", "body": "b"}),  # a role the account holds
            ("GET", "/admin/users", None),
        ):
            with self.subTest(path=path):
                st, hdrs, b = n.request(method, path, body, h, auth=False)
                self.assertProblem(st, hdrs, b, 403, "password-change-required")
        for weak in ("Short-1", "abcdefghijklmnop", "12345678901234567", "", otp[:9]):
            with self.subTest(weak=weak):
                st, hdrs, b = self.change(n, h, otp, weak)
                self.assertProblem(st, hdrs, b, 422, "weak-password")
        st, _, b = self.change(n, h, otp, STRONG_PW)
        self.assertEqual(st, 204, b)
        self.assertEqual(n.request("POST", "/hello/counter", None, h, auth=False)[0], 200)
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b"}, h, auth=False)
        self.assertEqual(st, 201, b)


# ---- registration and personal data -------------------------------------------------


def register(node, **fields):
    body = dict({"password": STRONG_PW}, **fields)
    return node.json("POST", "/auth/register", body, auth=False)


class Registration(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("hello",))

    def test_citizen(self):
        n = self.shared
        st, _, d = register(
            n, kind="citizen", login="zhang.san", name="Zhang San", id_number=PUBLISHED_ID
        )
        self.assertEqual(st, 201, d)
        self.assertEqual(d["kind"], "citizen")
        self.assertNotIn(PUBLISHED_ID, json.dumps(d))
        # the same person again, also spelled with a lower-case x
        for login, idn in (("zhang.san2", PUBLISHED_ID), ("zhang.san3", PUBLISHED_ID.lower())):
            with self.subTest(id_number=idn):
                st, h, b = n.request(
                    "POST",
                    "/auth/register",
                    {"kind": "citizen", "login": login, "name": "Zhang", "password": STRONG_PW,
                     "id_number": idn},
                    auth=False,
                )
                self.assertProblem(st, h, b, 409, "already-registered")
        bad = wrong_check(PUBLISHED_ID, id_check, "0123456789X")
        st, h, b = n.request(
            "POST",
            "/auth/register",
            {"kind": "citizen", "login": "li.si", "name": "Li Si", "password": STRONG_PW,
             "id_number": bad},
            auth=False,
        )
        self.assertProblem(st, h, b, 422, "invalid-id-number")
        self.assertEqual(n.login("li.si", STRONG_PW, source="127.0.3.1")[0], 401)  # not created
        # the citizen signs in (no one-time password) and reaches no staff route
        st, _, d = n.login("zhang.san", STRONG_PW)
        self.assertEqual(st, 200, d)
        self.assertFalse(d["user"]["must_change_password"])
        h = bearer(d["token"])
        st, _, me = n.json("GET", "/auth/me", headers=h, auth=False)
        self.assertEqual((st, me["kind"]), (200, "citizen"))
        self.assertNotIn(PUBLISHED_ID, json.dumps(me))
        self.assertEqual(n.request("GET", "/admin/users", headers=h, auth=False)[0], 403)

    def test_enterprise(self):
        n = self.shared
        st, _, d = register(
            n, kind="enterprise", login="acme", name="Acme Ltd", credit_code=PUBLISHED_CREDIT
        )
        self.assertEqual(st, 201, d)
        self.assertEqual(d["kind"], "enterprise")
        # one account per code: another login cannot take an enterprise's code
        st, h, b = self.shared.request(
            "POST", "/auth/register",
            {"kind": "enterprise", "login": "rival.co", "name": "Rival Co", "password": STRONG_PW,
             "credit_code": PUBLISHED_CREDIT}, auth=False)
        self.assertProblem(st, h, b, 409, "already-registered")
        self.assertIn(PUBLISHED_CREDIT, json.loads(b)["detail"])
        st, _, tok = n.login("acme", STRONG_PW)
        st, _, me = n.json("GET", "/auth/me", headers={"Authorization": "Bearer " + tok["token"]},
                           auth=False)
        self.assertEqual((st, me.get("credit_code")), (200, PUBLISHED_CREDIT), me)
        bad = wrong_check(PUBLISHED_CREDIT, credit_check, CREDIT_ALPHABET)
        for code in (bad, PUBLISHED_CREDIT[:17], PUBLISHED_CREDIT + "0", "", None):
            with self.subTest(code=code):
                body = {"kind": "enterprise", "login": "acme2", "name": "Acme 2",
                        "password": STRONG_PW}
                if code is not None:
                    body["credit_code"] = code
                st, h, b = n.request("POST", "/auth/register", body, auth=False)
                self.assertProblem(st, h, b, 422, "invalid-credit-code")

    def test_a_number_registered_by_someone_else_is_released_to_its_holder(self):
        n = self.shared
        idn = citizen_ids(1, want_x=True)[0]
        code = credit_code("91330122MA2A00077")
        accounts = {}
        for kind, login, extra in (("citizen", "squat.person", {"id_number": idn}),
                                   ("enterprise", "squat.firm", {"credit_code": code})):
            st, _, d = register(n, kind=kind, login=login, name="Squatter", **extra)
            self.assertEqual(st, 201, d)
            accounts[kind] = d["id"]
        st, _, firm = n.login("squat.firm", STRONG_PW, source="127.0.5.1")
        self.assertEqual(st, 200, firm)
        firm_h = bearer(firm["token"])
        for kind, uid in accounts.items():
            with self.subTest(kind):
                # still active: refused, it would go on acting under the number
                st, h, b = n.request("POST", "/admin/users/%s/release" % uid)
                self.assertProblem(st, h, b, 409, "account-active")
                self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"disabled": True})[0], 200)
                st, _, d = n.json("POST", "/admin/users/%s/release" % uid)
                self.assertEqual(st, 200, d)
                self.assertIn("released_at", d)
                st, h, b = n.request("POST", "/admin/users/%s/release" % uid)
                self.assertProblem(st, h, b, 409, "nothing-to-release")
        st, _, d = n.json("GET", "/admin/users/" + accounts["enterprise"])
        self.assertEqual((d.get("credit_code"), d.get("released_credit_code")), (None, code), d)
        self.assertEqual(n.request("GET", "/auth/me", headers=firm_h, auth=False)[0], 401)
        # the rightful holders register with their numbers
        st, _, d = register(n, kind="citizen", login="real.person", name="Real", id_number=idn)
        self.assertEqual(st, 201, d)
        st, _, d = register(n, kind="enterprise", login="real.firm", name="Real Firm",
                            credit_code=code)
        self.assertEqual(st, 201, d)
        # staff hold no registered number
        staff = n.json("GET", "/auth/me")[2]["id"]
        st, h, b = n.request("POST", "/admin/users/%s/release" % staff)
        self.assertProblem(st, h, b, 409, "not-registered-identity")

    def test_citizens_and_enterprises_close_their_own_accounts(self):
        n = self.shared
        idn = citizen_ids(2, want_x=False)[1]
        st, _, me = register(n, kind="citizen", login="leaving.person", name="Leaving", id_number=idn)
        self.assertEqual(st, 201, me)
        st, _, s1 = n.login("leaving.person", STRONG_PW, source="127.0.6.1")
        st, _, s2 = n.login("leaving.person", STRONG_PW, source="127.0.6.1")
        h1, h2 = bearer(s1["token"]), bearer(s2["token"])
        # the password confirms it; a wrong one counts towards the lock like any guess
        st, hd, b = n.request("POST", "/auth/close", {}, h1, auth=False)
        self.assertProblem(st, hd, b, 422, "invalid-credentials-shape")
        st, hd, b = n.request("POST", "/auth/close", {"password": "not-the-password-1"}, h1,
                              auth=False)
        self.assertProblem(st, hd, b, 403, "bad-credentials")
        self.assertEqual(n.request("GET", "/auth/me", None, h1, auth=False)[0], 200)  # still open
        st, _, b = n.request("POST", "/auth/close", {"password": STRONG_PW}, h1, auth=False)
        self.assertEqual(st, 204, b)
        for h in (h1, h2):  # every session ended, this one too
            self.assertEqual(n.request("GET", "/auth/me", None, h, auth=False)[0], 401)
        self.assertEqual(n.login("leaving.person", STRONG_PW, source="127.0.6.2")[0], 401)
        st, _, d = n.json("GET", "/admin/users/" + me["id"])
        self.assertTrue(d["disabled"] and "closed_at" in d, d)
        self.assertNotIn("id_number_enc", json.dumps(d))
        # it stays closed; the login stays taken; the ID number may register again
        st, hd, b = n.request("PATCH", "/admin/users/" + me["id"], {"disabled": False})
        self.assertProblem(st, hd, b, 409, "account-closed")
        r = n.admin_cli("user", "enable", "leaving.person")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("closed by its holder", r.stderr)
        st, hd, b = n.request("POST", "/auth/register", {"kind": "citizen", "login": "leaving.person",
                                                          "name": "X", "password": STRONG_PW},
                              auth=False)
        self.assertProblem(st, hd, b, 409, "login-taken")
        st, _, d = register(n, kind="citizen", login="back.again", name="Back", id_number=idn)
        self.assertEqual(st, 201, d)
        # the closing is on record, by the holder
        auditor = n.new_user("close.auditor", ("auditor",))
        st, _, recs = n.json("GET", "/audit?object=" + me["id"], headers=auditor, auth=False)
        self.assertEqual(st, 200, recs)
        self.assertIn(("close account", me["id"]),
                      [(r["action"], r["actor"]) for r in recs["items"]])
        # staff accounts are closed by an administrator, not by themselves
        st, hd, b = n.request("POST", "/auth/close", {"password": ADMIN_PASSWORD})
        self.assertProblem(st, hd, b, 403, "forbidden")

    def test_one_person_registering_many_times_at_once(self):
        # every attempt passes the checks, then hashes off the loop at the same time: the
        # ID number's index is taken by exactly one of them
        idn = citizen_ids(1, want_x=False)[0]
        results = [None] * 6

        def attempt(i):
            results[i] = register(
                self.shared, kind="citizen", login="racer%d" % i, name="Racer", id_number=idn
            )[0]

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(sorted(results), [201] + [409] * (len(results) - 1))

    def test_weak_password_and_bad_kind(self):
        st, h, b = self.shared.request(
            "POST", "/auth/register",
            {"kind": "citizen", "login": "weakling", "name": "W", "password": "password"},
            auth=False,
        )
        self.assertProblem(st, h, b, 422, "weak-password")
        st, h, b = self.shared.request(
            "POST", "/auth/register",
            {"kind": "staff", "login": "sneaky", "name": "S", "password": STRONG_PW},
            auth=False,
        )
        self.assertProblem(st, h, b, 422, "invalid-registration")


class CreditCodeIndex(NodeTest):
    def test_accounts_from_before_the_index_are_indexed_at_start(self):
        n = self.node(plugins=("hello",))
        st, _, d = register(n, kind="enterprise", login="acme", name="Acme Ltd",
                            credit_code=PUBLISHED_CREDIT)
        self.assertEqual(st, 201, d)
        self.assertEqual(n.stop(), 0)
        # as a data folder written before the index existed: empty it, marker and all
        def empty(txn, db):
            self.assertTrue(txn.get(PUBLISHED_CREDIT.encode()))
            txn.drop(db, delete=False)

        edit_db(self, n, "_core/credit_codes", empty)
        n.start()
        self.assertIn("indexed 1 enterprises' credit codes", n.log())
        st, h, b = n.request("POST", "/auth/register",
                             {"kind": "enterprise", "login": "acme-again", "name": "Acme again",
                              "password": STRONG_PW, "credit_code": PUBLISHED_CREDIT}, auth=False)
        self.assertProblem(st, h, b, 409, "already-registered")
        # once: the next start does not scan the accounts again
        self.assertEqual(n.stop(), 0)
        n.start()
        self.assertEqual(n.log().count("indexed 1 enterprises' credit codes"), 1)


class PersonalData(NodeTest):
    def test_id_numbers_are_not_in_the_data_file(self):
        n = self.node(plugins=("hello",))
        ids = [PUBLISHED_ID] + citizen_ids(4, want_x=True) + citizen_ids(4, want_x=False)
        names = []
        for i, idn in enumerate(ids):
            name = "Marker-%s" % uuid.uuid4().hex  # stored in clear: the search's control
            names.append(name)
            st, _, d = register(
                n, kind="citizen", login="citizen%d" % i, name=name,
                id_number=idn.lower() if i % 2 else idn,
            )
            self.assertEqual(st, 201, (idn, d))
        self.assertEqual(n.stop(), 0)
        with open(os.path.join(n.data_dir, "data.mdb"), "rb") as f:
            data = f.read()
        for name in names:
            self.assertIn(name.encode(), data, "the search cannot see clear text at all")
        log = n.log().encode() + n.stdout().encode()
        for idn in ids:
            forms = {idn, idn.lower(), idn.upper(), idn[:17]}
            for form in forms:
                for enc in ("ascii", "utf-16-le", "utf-16-be"):
                    with self.subTest(id_number=idn, form=form, encoding=enc):
                        needle = form.encode(enc)
                        self.assertNotIn(needle, data)
                        self.assertNotIn(needle, log)


class Sm4Fields(NodeTest):
    """crypto.fields = "SM4" (国密): personal-data fields are SM4-CTR with an HMAC-SM3 tag,
    as the header documents, which an independent implementation (Python's cryptography)
    opens with the key file alone; values of either cipher stay readable when the config
    changes, and lookups by ID number go on."""

    def key(self, n, context):
        """A sub-key of the master key (libsodium's crypto_kdf: BLAKE2b keyed by the master
        key, salt the sub-key id 1, personal the 8-byte context)."""
        with open(os.path.join(n.dir, "keys", "master.key"), "rb") as f:
            master = f.read()
        return hashlib.blake2b(b"", digest_size=32, key=master,
                               salt=(1).to_bytes(8, "little") + bytes(8),
                               person=context + bytes(8))

    def open_sm4(self, n, value, plugin, field):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives import hmac as chmac
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        def hmac_sm3(key, data):
            h = chmac.HMAC(key, hashes.SM3())
            h.update(data)
            return h.finalize()

        fk = self.key(n, b"ztfield_").digest()
        enc, mac = (hmac_sm3(fk, b"zhengtong-field-sm4-" + w) for w in (b"enc", b"mac"))
        self.assertEqual((value[0], len(value) > 41), (2, True))
        iv, ct, tag = value[1:17], value[17:-24], value[-24:]
        want = hmac_sm3(mac, value[:1] + plugin + b"\0" + field + b"\0" + iv + ct)[:24]
        self.assertEqual(tag, want)
        d = Cipher(algorithms.SM4(enc[:16]), modes.CTR(iv)).decryptor()
        return d.update(ct) + d.finalize()

    def users(self, n):
        found = {}

        def read(txn, db):
            for k, v in txn.cursor():
                u = json.loads(v)
                found[u.get("login")] = u

        edit_db(self, n, "_core/users", read)
        return found

    def test_fields_in_sm4_and_back(self):
        n = self.node(plugins=("hello",), options='crypto = { fields = "SM4" }')
        st, _, d = register(n, kind="citizen", login="li.si", name="Li Si", id_number=PUBLISHED_ID)
        self.assertEqual(st, 201, d)
        h = n.new_user("wang.wu")
        t, now = two_factor(self, n, h)
        self.assertEqual(n.stop(), 0)
        users = self.users(n)
        idn = self.open_sm4(n, unb64(users["li.si"]["id_number_enc"]), b"_core", b"id_number")
        self.assertEqual(idn.decode(), PUBLISHED_ID.upper())
        secret = self.open_sm4(n, unb64(users["wang.wu"]["totp_enc"]), b"_core", b"totp")
        self.assertEqual(base64.b32encode(secret).decode().rstrip("="), t["secret"].rstrip("="))
        # the default cipher again: what SM4 sealed still opens (a sign-in with a code reads
        # the authenticator secret), the ID number is still found, new values are XChaCha20
        n._conf_text = n._conf_text.replace('crypto = { fields = "SM4" }', "")
        n._write_conf()
        n.start()
        st, _, d = n.json("POST", "/auth/login", {"login": "wang.wu", "password": ADMIN_PASSWORD,
                                                  "code": totp(t["secret"], now + 30_000)},
                          auth=False)
        self.assertEqual(st, 200, d)
        st, hdrs, b = n.request("POST", "/auth/register",
                                {"kind": "citizen", "login": "li.si.2", "name": "Li Si",
                                 "password": STRONG_PW, "id_number": PUBLISHED_ID}, auth=False)
        self.assertProblem(st, hdrs, b, 409, "already-registered")
        other = citizen_ids(1, want_x=False)[0]
        st, _, d = register(n, kind="citizen", login="zhao.liu", name="Zhao Liu", id_number=other)
        self.assertEqual(st, 201, d)
        self.assertEqual(n.stop(), 0)
        self.assertEqual(unb64(self.users(n)["zhao.liu"]["id_number_enc"])[0], 1)

    def test_an_unknown_cipher_is_a_config_error(self):
        self.assertConfigError('crypto = { fields = "AES" }',
                               r"crypto.fields: 'AES' is not a field cipher: "
                               r"\"XChaCha20-Poly1305\" \(the default\) or \"SM4\"")


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---- residual information (剩余信息保护) ----------------------------------------------


def memory_holding(pid, needles):
    """For each of needles (bytes) found in the process's anonymous memory (heap, stacks,
    unnamed mappings: what it allocated, not the files it maps), the mappings it is in.
    Mappings over 1 GiB are reservations (AddressSanitizer's shadow), not allocations."""
    found = {}
    chunk, overlap = 16 << 20, max(len(n) for n in needles)
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            path = parts[5] if len(parts) > 5 else ""
            if parts[1][0] != "r" or path not in ("", "[heap]", "[stack]"):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if end - start > 1 << 30:
                continue
            at, tail = start, b""
            while at < end:
                try:
                    mem.seek(at)
                    data = tail + mem.read(min(chunk, end - at))
                except OSError:
                    break
                for n in needles:
                    if n in data:
                        found.setdefault(n, set()).add("%s %s" % (parts[0], path or "anon"))
                tail, at = data[-overlap:], at + chunk
    return found


class ResidualInformation(NodeTest):
    """GB/T 22239 剩余信息保护: what authenticates someone (passwords, tokens, keys, sign-in
    code secrets) and the ID numbers sent to the core are wiped from the node's memory once
    their request is answered, not left in freed buffers for a core dump or a later
    allocation to show."""

    def assertForgotten(self, n, secrets):
        """None of secrets (name: str or bytes) is in the node's memory; looked for after
        each step, so that a later allocation cannot hide what an earlier one left."""
        needles = {(v if isinstance(v, bytes) else v.encode()): k for k, v in secrets.items()}
        # The last answer reached us from inside the loop callback that wipes what it sent,
        # which may not have finished yet; one loop, one thread: a later answer says it has.
        self.assertEqual(n.request("GET", "/healthz", auth=False)[0], 200)
        control = n.data_dir.encode()  # the config's, held for the node's life
        found = memory_holding(n.proc.pid, list(needles) + [control])
        self.assertIn(control, found, "the search cannot see the node's memory")
        left = {needles[k]: v for k, v in found.items() if k in needles}
        self.assertEqual(left, {}, "left in memory after their requests were answered")

    def test_secrets_are_not_left_in_the_node_memory(self):
        n = self.node(plugins=("hello",))
        secrets = {"admin token": n.auth["Authorization"][7:], "admin password": ADMIN_PASSWORD}
        self.assertForgotten(n, secrets)
        uid, otp = create_account(n, "clerk")
        secrets["one-time password"] = otp
        self.assertForgotten(n, secrets)
        st, _, d = n.login("clerk", otp)
        self.assertEqual(st, 200, d)
        h = bearer(d["token"])
        secrets["first token"] = d["token"]
        self.assertForgotten(n, secrets)
        new_pw = "Residue-" + uuid.uuid4().hex
        secrets["new password"] = new_pw
        st, _, b = n.request("POST", "/auth/password", {"old_password": otp, "new_password": new_pw},
                             h, auth=False)
        self.assertEqual(st, 204, b)
        self.assertForgotten(n, secrets)
        st, _, d = n.login("clerk", new_pw)
        self.assertEqual(st, 200, d)
        h = bearer(d["token"])
        secrets["token"] = d["token"]
        secrets["token's bytes"] = base64.urlsafe_b64decode(d["token"][4:] + "==")
        self.assertForgotten(n, secrets)
        wrong = "Wrong-" + uuid.uuid4().hex
        secrets["wrong password"] = wrong
        self.assertEqual(n.login("clerk", wrong)[0], 401)
        self.assertForgotten(n, secrets)
        st, _, d = n.json("POST", "/auth/totp", {}, headers=h, auth=False)
        self.assertEqual(st, 201, d)
        secrets["sign-in code secret"] = d["secret"]
        secrets["its bytes"] = base64.b32decode(d["secret"])
        self.assertForgotten(n, secrets)
        st, _, b = n.request("POST", "/auth/totp/confirm",
                             {"code": totp(d["secret"], time.time() * 1000)}, headers=h, auth=False)
        self.assertEqual(st, 204, b)
        self.assertEqual(n.json("GET", "/auth/me", headers=h, auth=False)[0], 200)
        self.assertForgotten(n, secrets)
        st, _, k = n.json("POST", "/admin/keys", {"name": "k", "plugin": "hello", "role": "user"})
        self.assertEqual(st, 201, k)
        secrets["API key"] = k["key"]
        self.assertForgotten(n, secrets)
        st, _, b = n.request("POST", "/hello/counter", None, bearer(k["key"]), auth=False)
        self.assertEqual(st, 200, b)
        self.assertForgotten(n, secrets)
        st, _, d = n.json("POST", "/admin/users/%s/password" % uid, {})
        self.assertEqual(st, 200, d)
        secrets["reset's one-time password"] = d["one_time_password"]
        self.assertForgotten(n, secrets)
        idn = citizen_ids(1, want_x=False)[0]
        citizen_pw = "Citizen-" + uuid.uuid4().hex
        secrets["ID number"], secrets["citizen's password"] = idn, citizen_pw
        st, _, d = n.json("POST", "/auth/register", {"kind": "citizen", "login": "resident",
                                                     "name": "Resident", "id_number": idn,
                                                     "password": citizen_pw}, auth=False)
        self.assertEqual(st, 201, d)
        self.assertForgotten(n, secrets)
        st, _, d = n.login("resident", citizen_pw)
        self.assertEqual(st, 200, d)
        secrets["citizen's token"] = d["token"]
        st, _, me = n.json("GET", "/auth/me", headers=bearer(d["token"]), auth=False)
        self.assertEqual((st, me.get("id_number_masked")), (200, idn[:4] + "*" * 10 + idn[14:]), me)
        self.assertForgotten(n, secrets)


    def test_a_lua_plugin_sees_no_credential_and_leaves_no_secret(self):
        init = lua_route("POST", "/residue/check", """
            local j = req:json()
            local upper = string.upper(j.note)
            return 200, {valid = zt.valid.citizen_id(j.id_number),
                         authorization = req:header("Authorization") or false,
                         host = req:header("host"), length = #upper}
        """, role="user") + lua_route("POST", "/residue/churn", """
            local t = {}
            for i = 1, 2000 do t[i] = string.rep("x", 300) .. i end
            return 200, {kb = collectgarbage("count")}
        """)
        root = tempfile.mkdtemp(prefix="zt-residue-")
        lua_dir = lua_tree_with(os.path.join(root, "lua"), {"residue": (lua_manifest(), init)})
        n = self.node(plugins=("hello", "residue"), lua_dir=lua_dir)
        idn = citizen_ids(3, want_x=True)[2]
        note = "Secret-note-" + uuid.uuid4().hex
        st, _, d = n.json("POST", "/residue/check", {"id_number": idn, "note": note})
        self.assertEqual((st, d["valid"], d["authorization"]), (200, True, False), d)
        self.assertEqual(d["host"], "127.0.0.1:%d" % n.port)  # other headers are there
        # the collector frees the handler's strings as garbage is made; then they are gone
        for _ in range(30):
            self.assertEqual(n.request("POST", "/residue/churn", auth=False)[0], 200)
        self.assertForgotten(n, {"ID number": idn, "note": note,
                                 "token": n.auth["Authorization"][7:]})


# ---- sealed identity records (数据完整性) -----------------------------------------------

MAC_TAIL = re.compile(rb',"mac":"[A-Za-z0-9_-]{22}"}$')


def lmdb_items(node, dbname):
    """{key: value} of a stopped node's database dbname (read behind its back)."""
    got = {}
    edit_db(unittest.TestCase(), node, dbname, lambda txn, db: got.update(txn.cursor(db=db)))
    return got


class RecordIntegrity(NodeTest):
    """Accounts, sessions and API keys carry a keyed seal: a record changed, forged or
    copied behind the node's back signs no one in, and says so."""

    def test_records_changed_outside_the_node_are_not_trusted(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        st, _, d = n.json("POST", "/admin/departments", {"code": "edu", "name": "Education"})
        self.assertEqual(st, 201, d)
        clerk_id, otp = create_account(n, "clerk", department="edu")
        st, _, d = n.login("clerk", otp)
        self.assertEqual(st, 200, d)
        clerk_token = d["token"]
        st, _, k = n.json("POST", "/admin/keys", {"name": "gauge", "plugin": "hello",
                                                  "role": "user"})
        self.assertEqual(st, 201, k)
        self.assertEqual(n.request("POST", "/hello/counter", None, bearer(k["key"]),
                                   auth=False)[0], 200)
        self.assertEqual(n.stop(), 0)
        for db in ("_core/users", "_core/sessions", "_core/api_keys", "_core/departments"):
            items = lmdb_items(n, db)
            self.assertTrue(items, db)
            for key, value in items.items():
                self.assertRegex(value, MAC_TAIL, (db, key))
        # behind the node's back: the clerk made an administrator, a session forged for a
        # token of our own (a copy of the clerk's session, under another key), the key's
        # role raised, a department renamed
        forged = "zts_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        forged_hash = hashlib.blake2b(forged.encode(), digest_size=32).digest()
        clerk_hash = hashlib.blake2b(clerk_token.encode(), digest_size=32).digest()
        key_hash = hashlib.blake2b(k["key"].encode(), digest_size=32).digest()

        def tamper(txn, open_db):
            users, sessions, keys, depts = (open_db(x) for x in (
                "_core/users", "_core/sessions", "_core/api_keys", "_core/departments"))
            rec = txn.get(clerk_id.encode(), db=users)
            self.assertIn(b'"roles":[]', rec)
            txn.put(clerk_id.encode(), rec.replace(b'"roles":[]', b'"roles":["admin"]'), db=users)
            txn.put(forged_hash, txn.get(clerk_hash, db=sessions), db=sessions)
            rec = txn.get(key_hash, db=keys)
            txn.put(key_hash, rec.replace(b'"role":"user"', b'"role":"admin"'), db=keys)
            rec = txn.get(b"edu", db=depts)
            txn.put(b"edu", rec.replace(b'"name":"Education"', b'"name":"Finance"'), db=depts)
        edit_db(self, n, None, tamper)
        n.start()
        log = n.log()
        self.assertIn("identity: 4 records changed outside Zhengtong (the seal does not hold): "
                      "account " + clerk_id, log)
        self.assertIn(", department edu;", log)
        self.assertIn("identity: removed 1 session changed outside Zhengtong", log)
        # none of them gets anyone in
        st, _, d = n.login("clerk", otp)
        self.assertEqual((st, d["type"]), (401, "/problems/bad-credentials"), d)
        for token in (forged, k["key"], clerk_token):
            st, h, b = n.request("GET", "/auth/me", headers=bearer(token), auth=False)
            self.assertProblem(st, h, b, 401, "unauthenticated")
        self.assertEqual(n.request("POST", "/hello/counter", None, bearer(k["key"]),
                                   auth=False)[0], 401)
        for _ in range(3):  # retried: counted each time, logged once a minute
            self.assertEqual(n.request("GET", "/auth/me", headers=bearer(k["key"]),
                                       auth=False)[0], 401)
        self.assertEqual(n.log().count("identity: the API key %s fails its seal"
                                       % key_hash[:8].hex()), 1, n.log())
        self.assertGreaterEqual(scrape(n).get("zt_auth_records_refused_total"), 6)
        st, _, depts = n.json("GET", "/admin/departments")
        self.assertTrue(all("mac" not in x for x in depts["items"]), depts)
        st, h, b = n.request("PATCH", "/admin/departments/edu", {"name": "Education"})
        self.assertProblem(st, h, b, 409, "record-tampered")
        self.assertIn("identity: the account %s fails its seal" % clerk_id, n.log())
        # the administrator sees it
        st, _, lst = n.json("GET", "/admin/users?limit=500")
        row = [u for u in lst["items"] if u["login"] == "clerk"][0]
        self.assertIs(row.get("tampered"), True, row)
        self.assertNotIn("mac", row)
        self.assertTrue(all("tampered" not in u for u in lst["items"] if u["login"] != "clerk"))
        st, h, b = n.request("GET", "/admin/users/" + clerk_id)
        self.assertProblem(st, h, b, 409, "record-tampered")
        st, _, keys = n.json("GET", "/admin/keys")
        self.assertTrue(keys["items"] and all("mac" not in x for x in keys["items"]), keys)
        r = n.admin_cli("user", "list")
        self.assertIn("(TAMPERED: not trusted)", [l for l in r.stdout.splitlines() if "clerk" in l][0])
        self.assertIn("(TAMPERED: not trusted; revoke it)", n.admin_cli("key", "list").stdout)
        r = n.admin_cli("user", "passwd", "clerk")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("changed outside Zhengtong", r.stderr)
        # once a person has checked it, it is trusted again as it stands, and audited
        r = n.admin_cli("user", "reseal", "clerk")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('clerk: sealed again as it stands: staff, department edu, roles ["admin"]',
                      r.stdout)
        self.assertIn("its seal holds; nothing to do", n.admin_cli("user", "reseal", "clerk").stdout)
        st, _, d = n.login("clerk", otp)
        self.assertEqual(st, 200, d)
        st, _, log = n.json("GET", "/audit?object=clerk")
        self.assertIn("admin user reseal", [x["action"] for x in log["items"]], log)
        # at the next start only the key is left to revoke: the forged session is gone
        n.restart()
        self.assertIn("identity: 2 records changed outside Zhengtong (the seal does not hold): "
                      "API key", n.log())
        self.assertEqual(n.admin_cli("key", "revoke", k["id"]).returncode, 0)
        self.assertIn("(TAMPERED: not trusted)", n.admin_cli("dept", "list").stdout)
        r = n.admin_cli("dept", "reseal", "edu")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('edu: sealed again as it stands: "Finance", under root', r.stdout)
        n.restart()  # (the log is kept across starts: the two warnings above, no third)
        self.assertEqual(n.log().count("changed outside Zhengtong (the seal"), 2)

    def test_records_from_before_seals_are_sealed_once(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        _, otp = create_account(n, "clerk")
        self.assertEqual(n.stop(), 0)

        def strip(txn, open_db):  # as an earlier version wrote them
            count = 0
            for name in ("_core/users", "_core/sessions", "_core/api_keys", "_core/departments"):
                db = open_db(name)
                for key, value in list(txn.cursor(db=db)):
                    txn.put(key, MAC_TAIL.sub(b"}", value), db=db)
                    count += 1
            return count
        counted = []
        edit_db(self, n, None, lambda txn, open_db: counted.append(strip(txn, open_db)))
        n.start()
        self.assertIn("identity: sealed %d account, session, API key and department records"
                      % counted[0],
                      n.log())
        self.assertEqual(n.login("clerk", otp)[0], 200)  # the admin's session lives on too
        st, _, log = n.json("GET", "/audit?object=identity")
        self.assertEqual([x["action"] for x in log["items"]],
                         ["seal identity records: %d" % counted[0]], log)
        n.restart()
        self.assertNotIn("changed outside", n.log())
        self.assertEqual(scrape(n).get("zt_auth_records_refused_total"), 0)


# ---- API keys ------------------------------------------------------------------------


class ApiKeys(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("hello", "notice"))

    def check_bound_to_hello(self, key):
        n, h = self.shared, bearer(key)
        st, _, b = n.request("POST", "/hello/counter", None, h, auth=False)
        self.assertEqual(st, 200, b)
        self.assertEqual(n.request("GET", "/hello/counter", headers=h, auth=False)[0], 200)
        for method, path, body in (
            ("POST", "/notices", {"title": "t", "body": "b"}),  # another plugin
            ("DELETE", "/notices/x", None),
            ("GET", "/auth/me", None),  # the core
            ("GET", "/admin/users", None),
            ("POST", "/admin/keys", {"name": "k", "plugin": "hello", "role": "admin"}),
        ):
            with self.subTest(key=key[:8], route=path):
                st, hdrs, b = n.request(method, path, body, h, auth=False)
                self.assertProblem(st, hdrs, b, 403, "forbidden")

    def test_key_bound_to_a_plugin_and_a_role(self):
        n = self.shared
        st, _, k = n.json("POST", "/admin/keys", {"name": "sensor-1", "plugin": "hello",
                                                   "role": "user"})
        self.assertEqual(st, 201, k)
        self.assertTrue(k["key"].startswith("ztk_"), k)
        self.check_bound_to_hello(k["key"])
        # the list shows the key's record, never the key
        st, _, b = n.request("GET", "/admin/keys")
        self.assertEqual(st, 200)
        self.assertIn(k["id"].encode(), b)
        self.assertNotIn(k["key"].encode(), b)
        st, _, b = n.request("DELETE", "/admin/keys/" + k["id"])
        self.assertEqual(st, 204, b)
        st, hdrs, b = n.request("POST", "/hello/counter", None, bearer(k["key"]), auth=False)
        self.assertProblem(st, hdrs, b, 401, "unauthenticated")

    def test_key_for_an_unknown_plugin_is_refused(self):
        st, _, d = self.shared.json(
            "POST", "/admin/keys", {"name": "x", "plugin": "nosuchplugin", "role": "user"}
        )
        self.assertEqual(st, 422, d)

    def test_cli_adds_a_key_while_the_node_runs(self):
        r = self.shared.admin_cli("key", "add", "gauge-7", "hello", "user")
        self.assertEqual(r.returncode, 0, r.stderr)
        key = r.stdout.strip().splitlines()[-1].strip()
        self.assertTrue(key.startswith("ztk_"), r.stdout)
        self.check_bound_to_hello(key)


class ApiKeyLife(NodeTest):
    """Keys that expire, and the last use of each, for county IT to retire dead ones."""

    def test_a_key_works_for_its_days_and_records_its_last_use(self):
        n = self.node(plugins=("hello",), env=TEST_CLOCK, roles=())
        for days in (0, 3661, 1.5, "7"):
            st, _, d = n.json("POST", "/admin/keys", {"name": "g", "plugin": "hello", "role": "user",
                                                       "valid_days": days})
            self.assertEqual((st, d["type"]), (422, "/problems/invalid-key"), d)
            self.assertIn("valid_days", d["detail"])
        st, _, k = n.json("POST", "/admin/keys", {"name": "gauge-2", "plugin": "hello", "role": "user",
                                                   "valid_days": 30})
        self.assertEqual(st, 201, k)
        self.assertAlmostEqual(k["expires_at"] - k["created_at"], 30 * 86400000, delta=5000)
        self.assertNotIn("last_used_at", k)
        st, _, forever = n.json("POST", "/admin/keys", {"name": "gauge-3", "plugin": "hello", "role": "user"})
        self.assertIsNone(forever["expires_at"])
        self.assertEqual(n.request("POST", "/hello/counter", headers=bearer(k["key"]), auth=False)[0], 200)
        listed = {x["id"]: x for x in n.json("GET", "/admin/keys")[2]["items"]}
        used = listed[k["id"]]["last_used_at"]
        self.assertGreaterEqual(used, k["created_at"])
        self.assertNotIn("last_used_at", listed[forever["id"]])
        # written at most hourly, not on every request
        self.assertEqual(n.request("POST", "/hello/counter", headers=bearer(k["key"]), auth=False)[0], 200)
        listed = {x["id"]: x for x in n.json("GET", "/admin/keys")[2]["items"]}
        self.assertEqual(listed[k["id"]]["last_used_at"], used)
        n.set_clock(31 * 86400000)
        self.sign_in_again(n)
        st, hdrs, b = n.request("POST", "/hello/counter", headers=bearer(k["key"]), auth=False)
        self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertIn(b"expired", b)
        self.assertEqual(n.request("POST", "/hello/counter", headers=bearer(forever["key"]), auth=False)[0],
                         200)
        r = n.admin_cli("key", "list")  # (the command's clock is the machine's, not the test's)
        expires = time.strftime("%Y-%m-%d", time.gmtime(k["expires_at"] / 1000))
        self.assertEqual([l for l in r.stdout.splitlines() if "gauge-2" in l][0].split()[3], expires)
        for days in ("0", "x", "3661", "7d"):
            r = n.admin_cli("key", "add", "g", "hello", "user", days)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("DAYS", r.stderr)
        r = n.admin_cli("key", "add", "gauge-4", "hello", "user", "365")
        self.assertEqual(r.returncode, 0, r.stderr)

    def sign_in_again(self, n):
        n.auth = {}
        n.sign_in()


# ---- the event loop while passwords hash -------------------------------------------


class LoopWhileHashing(NodeTest):
    # Two logins, long hashes: on a 2-core machine (CI) the hashing threads must leave
    # the loop some CPU, or a slow (sanitizer) build proves nothing but starvation.
    LOGINS = 2
    ENOUGH = 20  # /healthz answers that must come back before the first sign-in does

    def test_healthz_answers_while_logins_hash(self):
        n = self.node(auth={"password_ops": 10, "password_memory": 128 << 20}, plugins=())
        base = scrape(n).get("zt_lmdb_nested_txns_total")
        body = json.dumps({"login": "admin", "password": ADMIN_PASSWORD}).encode()
        wire = (
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body
        logins = [n.rawconn(auth=False, timeout=30) for _ in range(self.LOGINS)]
        for c in logins:
            self.addCleanup(c.close)
            c.send(wire)

        def finished():
            r, _, _ = select.select([c.sock for c in logins], [], [], 0)
            return bool(r)

        # Each login handler opens a write transaction before it hands the hashing to
        # the pool: once the counter shows all of them, every login is in flight.
        started = False
        answers_while_hashing = 0
        probes = 0
        while not finished() and answers_while_hashing < 200 and probes < 20000:
            probes += 1
            if not started:
                started = scrape(n).get("zt_lmdb_nested_txns_total") >= base + self.LOGINS
                continue
            st, _, _ = n.request("GET", "/healthz", keep=True)
            self.assertEqual(st, 200)
            if not finished():
                answers_while_hashing += 1
        self.assertTrue(started, "the logins never reached their handler")
        self.assertGreaterEqual(answers_while_hashing, self.ENOUGH)
        for c in logins:
            r = c.response(timeout=30)
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertTrue(r.json()["token"].startswith("zts_"))


# ---- offline administration ---------------------------------------------------------


class OfflineAdmin(NodeTest):
    def test_admin_commands_work_and_are_audited(self):
        n = self.node(roles=("auditor",))
        r = n.admin_cli("dept", "add", "bureau7", "Bureau 7")
        self.assertEqual(r.returncode, 0, r.stderr)
        st, _, d = n.json("GET", "/admin/departments")
        self.assertIn(
            ("bureau7", "root"), [(x["code"], x.get("parent")) for x in d["items"]], d
        )
        r = n.admin_cli("user", "add", "clerk", "Clerk Li", "bureau7", "notice_editor")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"one-time password:\s*(\S+)", r.stdout)
        self.assertTrue(m, r.stdout)
        otp = m.group(1)
        st, _, d = n.login("clerk", otp)
        self.assertEqual(st, 200, d)
        self.assertTrue(d["user"]["must_change_password"])
        self.assertEqual((d["user"]["department"], d["user"]["roles"]), ("bureau7",
                                                                          ["notice_editor"]))
        h = bearer(d["token"])
        st, _, b = n.request(
            "POST", "/auth/password", {"old_password": otp, "new_password": STRONG_PW}, h,
            auth=False,
        )
        self.assertEqual(st, 204, b)
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b"}, h, auth=False)
        self.assertEqual(st, 201, b)
        # a login that exists: refused, and not audited
        r = n.admin_cli("user", "add", "clerk", "Other", "bureau7")
        self.assertNotEqual(r.returncode, 0)
        r = n.admin_cli("user", "roles", "clerk", "auditor")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(n.request("GET", "/audit", headers=h, auth=False)[0], 200)
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b"}, h, auth=False)
        self.assertEqual(st, 403, b)
        r = n.admin_cli("user", "passwd", "clerk")  # a new one-time password; sessions end
        self.assertEqual(r.returncode, 0, r.stderr)
        otp = re.search(r"one-time password:\s*(\S+)", r.stdout).group(1)
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 401)
        st, _, d = n.login("clerk", otp)
        self.assertEqual(st, 200, d)
        self.assertTrue(d["user"]["must_change_password"])
        h = bearer(d["token"])
        self.assertEqual(n.request("GET", "/auth/me", headers=h, auth=False)[0], 200)
        r = n.admin_cli("user", "disable", "clerk")
        self.assertEqual(r.returncode, 0, r.stderr)
        st, hdrs, b = n.request("GET", "/auth/me", headers=h, auth=False)
        self.assertProblem(st, hdrs, b, 401, "unauthenticated")
        self.assertEqual(n.login("clerk", STRONG_PW, source="127.0.4.1")[0], 401)
        st, _, d = n.json("GET", "/audit?plugin=core&limit=1000")
        self.assertEqual(st, 200)
        cli = [(x["action"], x["object"]) for x in d["items"] if x["actor"].startswith("cli:")]
        self.assertEqual(
            cli,
            [
                ("admin dept add", "bureau7"),
                ('admin user add: department "bureau7"; roles ["notice_editor"]; clearance '
                 '"internal"', "clerk"),
                ("admin user roles: auditor", "clerk"),
                ("admin user passwd", "clerk"),
                ("admin user disable", "clerk"),
            ],
        )

    def test_a_first_start_that_fails_keeps_the_password_for_the_next(self):
        """The first account is made once the node listens: a first start that cannot bind
        its port must not use up the one-time password unseen."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            n = self.node(start=False, port=taken.getsockname()[1])
            with self.assertRaises(AssertionError):
                n.start()
        finally:
            taken.close()
        self.assertNotIn("one-time password", n.stdout())
        n.port = free_port()
        n._write_conf()
        n.start()
        self.assertIsNotNone(n.first_start_password(), n.stdout())
        self.assertEqual(n.request("GET", "/auth/me")[0], 200)

    def test_keys_are_listed_and_revoked_offline(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        r = n.admin_cli("key", "add", "gauge-7", "hello", "reader")
        self.assertEqual(r.returncode, 1)
        self.assertIn("'reader' is not a role of this node", r.stderr)
        r = n.admin_cli("role", "add", "reader", "Reads the hello counter")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = n.admin_cli("key", "add", "gauge-7", "hello", "reader")
        self.assertEqual(r.returncode, 0, r.stderr)
        key = r.stdout.strip().splitlines()[-1]
        self.assertEqual(n.request("POST", "/hello/counter", headers=bearer(key), auth=False)[0], 200)
        r = n.admin_cli("key", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        line = [l for l in r.stdout.splitlines() if "gauge-7" in l]
        self.assertEqual(len(line), 1, r.stdout)
        kid = line[0].split()[0]
        cols = line[0].split()
        today = time.strftime("%Y-%m-%d", time.gmtime())
        # plugin, role, expires (never), last used (the request above), name
        self.assertEqual(cols[1:6], ["hello", "reader", "-", today, "gauge-7"], r.stdout)
        self.assertNotIn(key, r.stdout)  # the secret is shown once, at add
        r = n.admin_cli("key", "revoke", kid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(n.request("POST", "/hello/counter", headers=bearer(key), auth=False)[0], 401)
        r = n.admin_cli("key", "revoke", kid)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no API key", r.stderr)
        st, _, d = n.json("GET", "/audit?plugin=core&limit=1000")
        self.assertIn(("admin key revoke", kid), [(x["action"], x["object"]) for x in d["items"]])

    def test_command_lines_are_checked_before_anything_opens(self):
        n = self.node(start=False)
        # no data folder yet: nothing makes one as a side effect, whatever the command
        for args in (("admin", "user", "list"), ("admin", "dept", "add", "d1", "D1"),
                     ("audit", "verify")):
            with self.subTest(args=args):
                r = run([args[0], "-c", n.conf] + list(args[1:]))
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn("holds no data", r.stderr)
                self.assertIn("zhengtong serve", r.stderr)
                self.assertFalse(os.path.exists(n.data_dir), args)
        # a command line of the wrong shape is a usage error (2) and says the right shape
        for args, want in ((("admin", "user", "add"), "user add LOGIN NAME DEPT"),
                           (("admin", "key", "frob"), "key add NAME PLUGIN ROLE"),
                           (("audit", "frob"), "audit [-c FILE] verify"),
                           (("audit", "export", "5"), "export SEQ|YYYY-MM-DD FILE"),
                           (("audit", "export", "abc", "f"), "neither a record's sequence number"),
                           (("audit", "export", "2027-02-30", "f"), "nor a date"),
                           (("audit", "check"), "audit check FILE")):
            with self.subTest(args=args):
                r = run([args[0], "-c", n.conf] + list(args[1:]))
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(want, r.stderr)
        for args in (("admin", "--help"), ("audit", "-h")):
            r = run(list(args))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("user add LOGIN NAME DEPT", r.stdout)
        r = run(["audit", "check", os.path.join(n.dir, "no-such-archive")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read", r.stderr)
        self.assertNotIn("BROKEN", r.stderr)

    def test_offline_changes_are_checked_as_over_http(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        for args, want in (
            (("dept", "add", "d2", "   "), "NAME"),
            (("dept", "add", "d2", "two\nlines"), "control character"),
            (("user", "add", "li.si", "", "root"), "NAME"),
            (("user", "add", "li.si", "Li Si", "root", "clerk,bad role"), "ROLES"),
            (("user", "add", "li.si", "Li Si", "root", "public"), "ROLES"),
            (("user", "roles", "admin", "admin,x\ny"), "ROLES"),
            # an empty item (a script's empty variable) takes no roles away: "-" does
            (("user", "roles", "admin", ""), "ROLES (by commas, - for none)"),
            (("user", "roles", "admin", ","), "ROLES"),
            (("user", "roles", "admin", "admin,,auditor"), "ROLES"),
            (("user", "roles", "admin", "admin,"), "ROLES"),
            (("user", "add", "li.si", "Li Si", "root", ""), "ROLES"),
            (("user", "roles", "admin", "a" * 2000), "ROLES"),
            (("key", "add", "k1", "notice", "device"), "plugin 'notice' is not enabled"),
            (("key", "add", "k1", "hello", "public"), "role 'public'"),
            (("user", "add", "li.si", "Li Si", "root", "aproval_clerk"),
             "'aproval_clerk' is not a role of this node"),
            (("user", "roles", "admin", "admin,auditr"), "'auditr' is not a role"),
            (("key", "add", "k1", "hello", "hello_reader"), "'hello_reader' is not a role"),
            (("role", "add", "clerk", "   "), "description"),
            (("role", "add", "Clerk", "A clerk"), "a role name"),
            (("role", "add", "auditor", "Reads the log"), "declared by core"),
            (("role", "remove", "auditor"), "declared by core"),
            (("role", "remove", "nobody_has_it"), "no role 'nobody_has_it'"),
        ):
            with self.subTest(args=args):
                r = n.admin_cli(*args)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(want, r.stderr)
                self.assertEqual(r.stdout, "")
        st, _, d = n.json("GET", "/admin/departments")
        self.assertEqual([x["code"] for x in d["items"]], ["root"])
        for role in ("clerk", "approval_clerk"):  # hello declares neither
            r = n.admin_cli("role", "add", role, "A clerk of the service hall")
            self.assertEqual(r.returncode, 0, r.stderr)
        r = n.admin_cli("user", "add", "li.si", "\u674e\u56db", "root", "clerk,approval_clerk")
        self.assertEqual(r.returncode, 0, r.stderr)
        # the audit record names who ran it: the account, also where $USER is not set
        env = {k: v for k, v in os.environ.items() if k not in ("USER", "SUDO_USER", "LOGNAME")}
        r = run(["admin", "-c", n.conf, "user", "disable", "li.si"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        # nor whom the environment names, unless sudo says so: not made up, not another account
        nobody = pwd.getpwnam("nobody")
        for forged in ({"SUDO_USER": 'x", "evil'}, {"SUDO_USER": "nobody", "SUDO_UID": str(nobody.pw_uid)}):
            r = run(["admin", "-c", n.conf, "user", "enable", "li.si"], env=dict(env, **forged))
            self.assertEqual(r.returncode, 0, r.stderr)
        st, _, d = n.json("GET", "/audit?plugin=core&limit=1000")
        actors = {x["actor"] for x in d["items"] if x["actor"].startswith("cli:")}
        self.assertEqual(actors, {"cli:" + pwd.getpwuid(os.getuid()).pw_name})


class StrictInput(NodeTest):
    """What a client sends is JSON in UTF-8 or it is refused, with the reason: nothing is
    stored cut short at a NUL, nothing breaks the listings that show it later."""

    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("hello", "notice"))

    def post(self, path, raw, ctype="application/json", auth=True):
        h = {"Content-Type": ctype} if ctype else {}
        return self.shared.request("POST", path, raw, h, auth=auth)

    def reg(self, **fields):
        return dict({"kind": "citizen", "password": STRONG_PW}, **fields)

    def test_a_nul_inside_a_password_is_refused_not_cut(self):
        n = self.shared
        raw = json.dumps(self.reg(login="nul.pw", name="Nul", password="X\u0000" + STRONG_PW))
        st, h, b = self.post("/auth/register", raw.encode(), auth=False)
        self.assertProblem(st, h, b, 400, "invalid-json")
        self.assertIn("\\u0000", json.loads(b)["detail"])
        self.assertEqual(n.login("nul.pw", "X", source="127.0.9.1")[0], 401)
        self.assertEqual(n.login("nul.pw", "X\u0000" + STRONG_PW, source="127.0.9.2")[0], 400)

    def test_bytes_that_are_not_utf8_are_refused_where_they_are(self):
        n = self.shared
        raw = b'{"kind":"citizen","login":"bad.utf","name":"\xff\xfe","password":"%s"}' % (
            STRONG_PW.encode())
        st, h, b = self.post("/auth/register", raw, auth=False)
        self.assertProblem(st, h, b, 400, "invalid-json")
        self.assertIn("not valid UTF-8 (at byte 44)", json.loads(b)["detail"])
        for path, body in (("/admin/departments", b'{"code":"d9","name":"\xc0\xaf"}'),
                           ("/notices", b'{"title":"\xed\xa0\x80","body":"b"}')):
            with self.subTest(path=path):
                st, h, b = self.post(path, body)
                self.assertProblem(st, h, b, 400, "invalid-json")
        # the listings still read as JSON
        for path in ("/admin/users", "/admin/departments", "/notices"):
            st, _, d = n.json("GET", path)
            self.assertEqual(st, 200, d)

    def test_what_json_forbids_and_cjson_took(self):
        cases = [
            (b'{"kind":"citizen","login":"raw.tab","name":"a\tb","password":"x"}',
             "control character"),
            (b'{"kind":"citizen","kind":"enterprise","login":"two.kinds"}', '"kind" appears twice'),
            (b'{"name":"\\udc00"}', "unpaired surrogate"),
            (b"[" * 1001 + b"]" * 1001, "deeper than 1000"),
            (b'{"a":1} {"b":2}', "something follows"),
        ]
        for raw, why in cases:
            with self.subTest(why=why):
                st, h, b = self.post("/auth/register", raw, auth=False)
                self.assertProblem(st, h, b, 400, "invalid-json")
                self.assertIn(why, json.loads(b)["detail"])

    def test_only_json_is_taken_as_json(self):
        """A form or text/plain post (what another web site can make a browser send without
        asking) is not JSON, whatever it holds."""
        raw = json.dumps(self.reg(login="csrf.victim", name="V")).encode()
        for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                      "multipart/form-data; boundary=x"):
            with self.subTest(ctype=ctype):
                st, h, b = self.post("/auth/register", raw, ctype, auth=False)
                self.assertProblem(st, h, b, 415, "unsupported-media-type")
                self.assertIn(ctype.split(";")[0], json.loads(b)["detail"])
        st, _, b = self.post("/notices", b'{"title":"t","body":"b"}', "text/plain")
        self.assertEqual(st, 415, b)
        # a Lua plugin's req:json() answers the same
        self.assertIn("application/json", json.loads(b)["detail"])
        for ctype in ("application/json", "application/json; charset=utf-8",
                      "Application/JSON", "application/merge-patch+json"):
            with self.subTest(ctype=ctype):
                st, _, b = self.post("/notices", b'{"title":"t","body":"b"}', ctype)
                self.assertEqual(st, 201, b)

    def test_names_are_text_a_person_reads(self):
        n = self.shared
        bad = {
            "blank": "   ",
            "a line break": "Zhang\nSan",
            "a control character": "Zhang\u0007San",
            "a direction override": "admin\u202egpj.exe",
            "201 characters": "\u653f" * 201,
        }
        for what, name in bad.items():
            with self.subTest(what=what):
                st, h, b = n.request("POST", "/auth/register",
                                     self.reg(login="n.%d" % len(what), name=name), auth=False)
                self.assertProblem(st, h, b, 422, "invalid-registration")
                st, h, b = n.request("POST", "/admin/departments", {"code": "dx", "name": name})
                self.assertProblem(st, h, b, 422, "invalid-department")
                st, h, b = n.request("POST", "/admin/users", {"login": "u.x", "name": name,
                                                              "department": "root"})
                self.assertProblem(st, h, b, 422, "invalid-user")
                st, h, b = n.request("POST", "/notices", {"title": name, "body": "b"})
                self.assertProblem(st, h, b, 422)
        # 200 characters of Chinese are 600 bytes, and a name
        st, _, d = n.json("POST", "/auth/register", self.reg(login="long.name", name="\u653f" * 200),
                          auth=False)
        self.assertEqual(st, 201, d)
        st, _, me = n.json("GET", "/admin/users/" + d["id"])
        self.assertEqual(me["name"], "\u653f" * 200)
        st, h, b = n.request("PATCH", "/admin/users/" + d["id"], {"name": "x\u0000y"})
        self.assertProblem(st, h, b, 400, "invalid-json")
        st, h, b = n.request("PATCH", "/admin/users/" + d["id"], {"name": "\u2066x"})
        self.assertProblem(st, h, b, 422, "invalid-user")

    def test_an_id_number_sent_as_a_number_is_refused(self):
        st, h, b = self.shared.request(
            "POST", "/auth/register",
            self.reg(login="num.id", name="Num", id_number=341122199001011234), auth=False)
        self.assertProblem(st, h, b, 422, "invalid-id-number")
        self.assertIn("a string", json.loads(b)["detail"])

    def test_a_problem_never_echoes_bytes_that_are_not_utf8(self):
        st, h, b = self.shared.request("GET", "/nothing/%FF%FE")
        self.assertProblem(st, h, b, 404)  # assertProblem decodes it as UTF-8
        self.assertIn("\ufffd", json.loads(b)["detail"])
        st, h, b = self.shared.request("GET", "/notices/%FF%FE")
        self.assertProblem(st, h, b, 404)


class TrustedProxies(NodeTest):
    """Behind nginx every peer is 127.0.0.1: trusted_proxies lets X-Forwarded-For name the
    client, for the throttles and the audit log; nobody else can claim an address."""

    def last_client(self, n):
        st, _, d = n.json("GET", "/audit?plugin=hello&limit=1000")
        self.assertEqual(st, 200, d)
        return d["items"][-1]["client"]

    def post_as(self, n, xff=None, real=None):
        h = {}
        if xff is not None:
            h["X-Forwarded-For"] = xff
        if real is not None:
            h["X-Real-IP"] = real
        st, _, b = n.request("POST", "/hello/counter", None, h)
        self.assertEqual(st, 200, b)
        return self.last_client(n)

    def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        # no trusted proxies (the default): the header is anyone's to write
        self.assertEqual(self.post_as(n, "203.0.113.7"), "127.0.0.1")
        n.stop()
        n._conf_text += 'trusted_proxies = { "127.0.0.1", "10.0.0.0/8" }\n'
        n._write_conf()
        n.start()
        self.assertEqual(self.post_as(n, "203.0.113.7"), "203.0.113.7")
        # what a client wrote in front is not believed: the rightmost untrusted address is
        self.assertEqual(self.post_as(n, "198.51.100.1, 203.0.113.8"), "203.0.113.8")
        self.assertEqual(self.post_as(n, "203.0.113.9, 10.1.2.3"), "203.0.113.9")
        self.assertEqual(self.post_as(n, "2001:DB8::0:1"), "2001:db8::1")
        # nothing usable: the peer itself
        self.assertEqual(self.post_as(n, "unknown"), "127.0.0.1")
        self.assertEqual(self.post_as(n, "203.0.113.10:4711"), "127.0.0.1")
        self.assertEqual(self.post_as(n, real="192.0.2.44"), "192.0.2.44")
        # the sign-in throttle counts the real clients apart: one client's failures lock
        # that client, not the whole county behind the proxy
        for i in range(6):
            st, _, _ = n.request("POST", "/auth/login", {"login": "nobody%d" % i, "password": "x"},
                                 {"X-Forwarded-For": "203.0.113.66"}, auth=False)
        self.assertEqual(st, 429)
        st, _, d = n.request("POST", "/auth/login", {"login": "nobody9", "password": "x"},
                             {"X-Forwarded-For": "203.0.113.67"}, auth=False)
        self.assertEqual(st, 401, d)

    def test_a_bad_network_is_a_config_error(self):
        n = self.node(plugins=("hello",), start=False,
                      options='trusted_proxies = { "127.0.0.1", "10.1.2.3/8" }')
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1)
        self.assertIn("trusted_proxies: '10.1.2.3/8' has bits set after its prefix", r.stderr)


class AccountChangesAudited(NodeTest):
    def test_the_record_says_what_changed(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        n.new_user("li.ming", roles=("notice_editor",))
        n.ensure_roles(["approval_clerk"])
        st, _, lst = n.json("GET", "/admin/users?limit=500")
        uid = [u["id"] for u in lst["items"] if u["login"] == "li.ming"][0]
        st, _, d = n.json("PATCH", "/admin/users/" + uid,
                          {"roles": ["approval_clerk", "auditor"], "name": "李明", "disabled": False})
        self.assertEqual(st, 200, d)
        st, _, log = n.json("GET", "/audit?object=" + uid)
        self.assertIn('update account: roles ["approval_clerk","auditor"]; name changed; disabled false',
                      [r["action"] for r in log["items"]])
        self.assertNotIn("李明", json.dumps(log, ensure_ascii=False))  # a name is not logged

    def test_a_new_account_s_record_says_what_it_was_granted(self):
        # what an account can do from its first day is in the record that made it, in the
        # form a later change by PATCH takes: its department, roles and clearance
        n = self.node(plugins=("hello",), roles=("auditor",))
        n.ensure_roles(["approval_clerk", "notice_editor"])
        st, _, d = n.json("POST", "/admin/departments", {"code": "tax", "name": "Tax bureau"})
        self.assertEqual(st, 201, d)
        st, _, d = n.json("POST", "/admin/users",
                          {"login": "zhao.lei", "name": "赵磊", "department": "tax",
                           "roles": ["approval_clerk", "notice_editor"], "clearance": "sensitive"})
        self.assertEqual(st, 201, d)
        st, _, plain = n.json("POST", "/admin/users",
                              {"login": "qian.li", "name": "Qian Li", "department": "root"})
        self.assertEqual(st, 201, plain)
        r = n.admin_cli("user", "add", "sun.mei", "Sun Mei", "tax", "notice_editor,approval_clerk")
        self.assertEqual(r.returncode, 0, r.stderr)
        st, _, log = n.json("GET", "/audit?object=" + d["id"])
        self.assertIn('create account: department "tax"; roles ["approval_clerk","notice_editor"]; '
                      'clearance "sensitive"', [x["action"] for x in log["items"]], log)
        st, _, log = n.json("GET", "/audit?object=" + plain["id"])
        self.assertIn('create account: department "root"; roles []; clearance "internal"',
                      [x["action"] for x in log["items"]], log)  # what it got by default
        st, _, log = n.json("GET", "/audit?object=sun.mei")
        self.assertEqual([x["action"] for x in log["items"]],
                         ['admin user add: department "tax"; roles ["notice_editor",'
                          '"approval_clerk"]; clearance "internal"'], log)
        self.assertNotIn("赵磊", json.dumps(n.json("GET", "/audit?limit=1000")[2],
                                           ensure_ascii=False))  # a name is not logged


class Roles(NodeTest):
    """Accounts and API keys are given only the roles the node knows: the core's, the
    enabled plugins' (declared, or asked for by a route) and those county IT adds."""

    def roles(self, n):
        st, _, d = n.json("GET", "/admin/roles")
        self.assertEqual(st, 200, d)
        return {r["name"]: r for r in d["roles"]}

    def test_a_misspelt_role_is_refused_where_it_is_granted(self):
        n = self.node(plugins=("hello", "notice", "workflow", "approval"), roles=())
        for method, path, body in (
            ("POST", "/admin/users", {"login": "li.si", "name": "Li Si", "department": "root",
                                      "roles": ["approval_clerk", "aproval_clerk"]}),
            ("POST", "/admin/keys", {"name": "gauge", "plugin": "hello", "role": "hello_reader"}),
        ):
            st, _, d = n.json(method, path, body)
            self.assertEqual((st, d["type"]), (422, "/problems/unknown-role"), d)
            self.assertRegex(d["detail"], r"'(aproval_clerk|hello_reader)' is not a role of this node")
        st, _, d = n.json("POST", "/admin/users", {"login": "li.si", "name": "Li Si",
                                                    "department": "root", "roles": ["approval_clerk"]})
        self.assertEqual(st, 201, d)
        uid = d["id"]
        st, _, d = n.json("PATCH", "/admin/users/" + uid, {"roles": ["approval_clerk", "oa_ofice"]})
        self.assertEqual((st, d["type"]), (422, "/problems/unknown-role"), d)
        self.assertIn("'oa_ofice'", d["detail"])
        st, _, d = n.json("PATCH", "/admin/users/" + uid, {"roles": ["approval_clerk", "approval_clerk"]})
        self.assertEqual((st, d["type"]), (422, "/problems/invalid-user"), d)
        self.assertIn("each once", d["detail"])
        r = n.admin_cli("user", "roles", "li.si", "approval_clerk,approval_clerk")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("each once", r.stderr)
        # what each role is, who declared it and how many hold it
        r = self.roles(n)
        self.assertEqual((r["admin"]["from"], r["admin"]["accounts"]), ("core", 1))
        self.assertEqual((r["auditor"]["from"], r["seal_officer"]["from"]), ("core", "core"))
        self.assertEqual(r["notice_editor"]["from"], "notice")
        self.assertEqual(r["notice_editor"]["description"], "Publishes and withdraws notices")
        self.assertEqual((r["approval_clerk"]["from"], r["approval_clerk"]["accounts"]), ("approval", 1))
        self.assertEqual(r["dept_head"]["from"], "approval")  # approval's head_role
        self.assertEqual(r["oa_office"]["from"], "workflow")  # a task's role in document.lua
        self.assertIsNone(r["oa_office"]["description"])
        self.assertEqual(r["workflow_supervisor"]["from"], "workflow")
        self.assertNotIn("user", r)
        self.assertNotIn("public", r)
        self.assertEqual(list(r), sorted(r))

    def test_county_it_adds_roles_of_its_own(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        bad = (({"name": "Clerk", "description": "x"}, 422, "a role name"),
               ({"name": "user", "description": "x"}, 422, "'public' and 'user'"),
               ({"name": "hall_clerk"}, 422, "description"),
               ({"name": "hall_clerk", "description": "two\nlines"}, 422, "control character"),
               ({"name": "hall_clerk", "description": "x", "by": "me"}, 422, "not 'by'"),
               ({"name": "auditor", "description": "x"}, 409, "declared by core"))
        for body, status, want in bad:
            with self.subTest(body=body):
                st, _, d = n.json("POST", "/admin/roles", body)
                self.assertEqual(st, status, d)
                self.assertIn(want, d["detail"])
        st, _, d = n.json("POST", "/admin/roles", {"name": "hall_clerk", "description": "政务大厅窗口"})
        self.assertEqual((st, d["from"], d["created_by"]), (201, "custom", "admin"), d)
        st, _, d = n.json("POST", "/admin/roles", {"name": "hall_clerk", "description": "again"})
        self.assertEqual((st, d["type"]), (409, "/problems/role-exists"), d)
        h = n.new_user("wang.wu", roles=("hall_clerk",))
        self.assertEqual(n.json("GET", "/auth/me", headers=h, auth=False)[2]["roles"], ["hall_clerk"])
        r = self.roles(n)["hall_clerk"]
        self.assertEqual((r["from"], r["description"], r["accounts"]), ("custom", "政务大厅窗口", 1))
        # a role someone holds is not removed under them
        st, _, d = n.json("DELETE", "/admin/roles/hall_clerk")
        self.assertEqual((st, d["type"]), (409, "/problems/role-in-use"), d)
        self.assertIn("held by 1 accounts", d["detail"])
        st, _, d = n.json("DELETE", "/admin/roles/auditor")
        self.assertEqual(st, 409, d)
        self.assertEqual(n.json("DELETE", "/admin/roles/no_such_role")[0], 404)
        st, _, lst = n.json("GET", "/admin/users?limit=500")
        uid = [u["id"] for u in lst["items"] if u["login"] == "wang.wu"][0]
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"roles": []})[0], 200)
        st, _, _ = n.json("DELETE", "/admin/roles/hall_clerk")
        self.assertEqual(st, 204)
        self.assertNotIn("hall_clerk", self.roles(n))
        st, _, d = n.json("PATCH", "/admin/users/" + uid, {"roles": ["hall_clerk"]})
        self.assertEqual(st, 422, d)
        st, _, log = n.json("GET", "/audit?object=hall_clerk")
        self.assertEqual([x["action"] for x in log["items"]][:2], ["add role", "remove role"])
        # offline, the same rules and the same list
        r = n.admin_cli("role", "add", "night_watch", "Watches the sensors at night")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = n.admin_cli("role", "list")
        line = [l.split() for l in r.stdout.splitlines() if l.startswith("night_watch ")]
        self.assertEqual(line[0][:4], ["night_watch", "custom", "0", "0"], r.stdout)
        self.assertEqual(self.roles(n)["night_watch"]["created_by"][:4], "cli:")

    def test_roles_of_a_plugin_switched_off_stay_with_their_holders(self):
        n = self.node(plugins=("hello", "notice"), roles=("auditor",))
        n.new_user("editor", roles=("notice_editor",))
        n.stop()
        # offline, the roles the plugins declared at the last start are known
        r = n.admin_cli("role", "list")
        self.assertEqual([l.split()[:4] for l in r.stdout.splitlines() if l.startswith("notice_editor ")],
                         [["notice_editor", "notice", "1", "0"]], r.stdout)
        n._conf_text = n._conf_text.replace('plugins = { "hello", "notice" }', 'plugins = { "hello" }')
        self.assertIn('plugins = { "hello" }', n._conf_text)
        n._write_conf()
        n.start()
        r = self.roles(n)["notice_editor"]
        self.assertEqual((r["from"], r["accounts"]), (None, 1))  # held; nothing declares it
        st, _, lst = n.json("GET", "/admin/users?limit=500")
        uid = [u["id"] for u in lst["items"] if u["login"] == "editor"][0]
        # the holder keeps it through other changes; no one new is given it
        st, _, d = n.json("PATCH", "/admin/users/" + uid, {"roles": ["notice_editor"], "name": "Ed"})
        self.assertEqual(st, 200, d)
        st, _, d = n.json("POST", "/admin/users", {"login": "editor2", "name": "Ed Two",
                                                    "department": "root", "roles": ["notice_editor"]})
        self.assertEqual(st, 422, d)
        r = n.admin_cli("role", "list")
        self.assertIn("(held, but no enabled plugin declares it)",
                      [l for l in r.stdout.splitlines() if l.startswith("notice_editor ")][0])
        r = n.admin_cli("user", "roles", "editor", "notice_editor,auditor")
        self.assertEqual(r.returncode, 0, r.stderr)
        # the change in what the plugins declare is in the audit log
        st, _, log = n.json("GET", "/audit?object=roles")
        self.assertIn("no longer [notice_editor]", log["items"][-1]["action"])
        self.assertEqual(log["items"][-1]["actor"], "system")

    def test_a_lua_plugin_declares_its_roles(self):
        root = tempfile.mkdtemp(prefix="zt-e2e-roles-")
        self.addCleanup(shutil.rmtree, root, True)
        init = ('zt.role("stamp_keeper", "Keeps the stamps")\n'
                'zt.route("GET", "/stamps", { role = "stamp_reader" }, function(req) return 200, {} end)\n'
                'zt.route("GET", "/stamps/check", { role = "user" }, function(req)\n'
                '  local r = {}\n'
                '  for _, role in ipairs{ "stamp_keeper", "stamp_reader", "stamp_eraser", "user" } do\n'
                '    r[role] = zt.auth.has_role(req, role)\n'
                '  end\n'
                '  return 200, r\n'
                'end)\n')
        lua_dir = lua_tree_with(os.path.join(root, "lua"), {"stamps": (lua_manifest(), init)})
        n = self.node(plugins=("stamps",), lua_dir=lua_dir, roles=())
        r = self.roles(n)
        self.assertEqual((r["stamp_keeper"]["from"], r["stamp_keeper"]["description"]),
                         ("stamps", "Keeps the stamps"))
        self.assertEqual((r["stamp_reader"]["from"], r["stamp_reader"]["description"]), ("stamps", None))
        # a role the plugin checks but no one declared is named once in the log, for its developer
        for _ in range(3):
            st, _, d = n.json("GET", "/stamps/check")
            self.assertEqual(st, 200, d)
        log = n.log()
        self.assertEqual(log.count("checks the role 'stamp_eraser', which no plugin declares"), 1, log)
        self.assertEqual(log.count('zt.auth.has_role(req, \\"user\\") is never true'), 1, log)
        self.assertNotIn("'stamp_keeper', which no plugin", log)
        self.assertNotIn("'stamp_reader', which no plugin", log)
        for call, want in (('zt.role("Stamp Keeper")', "init.lua:1: zt.role: 'Stamp Keeper' is no role name"),
                           ('zt.role("user", "x")', "not 'public' or 'user'"),
                           ('zt.role("ok_role", 7)', "description must be a string"),
                           ('zt.role("ok_role", "")', "the description of 'ok_role' is empty")):
            with self.subTest(call=call):
                d = os.path.join(root, "bad%d" % abs(hash(call)))
                bad = lua_tree_with(d, {"stamps": (lua_manifest(), call + "\n")})
                m = self.node(plugins=("stamps",), lua_dir=bad, start=False)
                res = run(["check", "-c", m.conf])
                self.assertEqual(res.returncode, 1, res.stderr)
                self.assertIn(want, res.stderr)


class RefusalsAudited(NodeTest):
    """A signed-in caller refused (403) is a security event in the audit log."""

    def test_who_tried_what_they_may_not(self):
        n = self.node(plugins=("hello", "notice"), roles=("auditor",))
        h = n.new_user("clerk9", roles=())
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        self.assertEqual(n.request("GET", "/admin/users", headers=h, auth=False)[0], 403)
        self.assertEqual(n.request("DELETE", "/notices/01ABC", headers=h, auth=False)[0], 403)
        self.assertEqual(n.request("GET", "/notices", headers=h, auth=False)[0], 200)  # allowed: no record
        st, _, d = n.json("GET", "/audit?actor=" + uid)
        got = [(x["action"], x["object"], x.get("status")) for x in d["items"]]
        self.assertEqual([g for g in got if g[0].startswith("refused")],
                         [("refused: GET /admin/users", "/admin/users", 403),
                          ("refused: DELETE /notices/:id", "/notices/01ABC", 403)], got)
        # the auditor finds them by status
        st, _, d = n.json("GET", "/audit?status=403&actor=" + uid)
        self.assertEqual([x["action"] for x in d["items"]],
                         ["refused: GET /admin/users", "refused: DELETE /notices/:id"], d)
        self.assertEqual([x["action"] for x in  # its sign-in, and no read
                          n.json("GET", "/audit?status=200&actor=" + uid)[2]["items"]], ["sign-in"])
        for bad in ("4o3", "99", "600", "403.5"):
            self.assertEqual(n.json("GET", "/audit?status=" + bad)[0], 400, bad)
        # a script retrying cannot fill the log: 20 an account in 10 minutes, then counted
        for _ in range(25):
            self.assertEqual(n.request("GET", "/admin/users", headers=h, auth=False)[0], 403)
        st, _, d = n.json("GET", "/audit?limit=1000&actor=" + uid)
        self.assertEqual(sum(x["action"].startswith("refused") for x in d["items"]), 20)
        m = scrape(n)
        self.assertEqual(m.samples["zt_auth_refusals_unrecorded_total"][0][1], 7.0)
        self.assertEqual(m.get("zt_auth_refusals_total"), 27)
        self.assertIn("'clerk9' was refused 20 times in 10 minutes", n.log())
        st, _, v = n.json("GET", "/audit/verify")
        self.assertTrue(v["ok"], v)


class SessionEndsAndAccountReadsAudited(NodeTest):
    """A session's end is recorded by its public id, as its beginning was; an
    administrator's look at accounts (personal data of others) is recorded as a read."""

    def test_sign_out_and_an_ended_session_name_the_session(self):
        n = self.node(auth=CHEAP, roles=("auditor",))
        h = n.new_user("wang.fang")
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        _, _, d1 = n.login("wang.fang", ADMIN_PASSWORD)
        _, _, d2 = n.login("wang.fang", ADMIN_PASSWORD)
        st, hdrs, b = n.request("DELETE", "/auth/sessions/" + d2["session"],
                                headers=bearer(d1["token"]), auth=False)
        self.assertEqual(st, 204, b)
        ended = hdrs["x-request-id"]
        st, hdrs, b = n.request("POST", "/auth/logout", headers=bearer(d1["token"]), auth=False)
        self.assertEqual(st, 204, b)
        out = hdrs["x-request-id"]
        log = n.json("GET", "/audit?limit=1000&actor=" + uid)[2]["items"]
        got = {x["request_id"]: (x["action"], x["object"], x["status"]) for x in log}
        self.assertEqual(got[ended], ("end session", "session " + d2["session"], 204))
        self.assertEqual(got[out], ("sign-out", "session " + d1["session"], 204))
        # a refused end (no such session of the caller's) changes nothing and says so
        h3 = n.new_user("zhao.lei")
        st, hdrs, b = n.request("DELETE", "/auth/sessions/" + d1["session"], headers=h3,
                                auth=False)
        self.assertEqual(st, 404, b)

    def test_reading_accounts_is_recorded(self):
        n = self.node(auth=CHEAP, roles=("auditor",))
        n.new_user("chen.jing")
        me = n.json("GET", "/auth/me")[2]["id"]
        st, hdrs, lst = n.json("GET", "/admin/users?kind=staff&limit=500")
        self.assertEqual(st, 200, lst)
        ids = [u["id"] for u in lst["items"]]
        self.assertGreaterEqual(len(ids), 2)
        listed = hdrs["x-request-id"]
        target = [u for u in lst["items"] if u["login"] == "chen.jing"][0]["id"]
        st, hdrs, one = n.json("GET", "/admin/users/" + target)
        self.assertEqual(st, 200, one)
        viewed = hdrs["x-request-id"]
        # an answer refused before anything was read leaves no record
        st, hdrs, b = n.json("GET", "/admin/users?kind=martian")
        self.assertEqual(st, 400, b)
        refused = hdrs["x-request-id"]
        log = n.json("GET", "/audit?limit=1000&actor=" + me)[2]["items"]
        got = {x["request_id"]: (x["action"], x["object"], x["status"]) for x in log}
        self.assertEqual(got[listed], ("list accounts", "%d accounts for kind=staff&limit=500 "
                                       "from %s to %s" % (len(ids), ids[0], ids[-1]), 200))
        self.assertEqual(got[viewed], ("view account", target, 200))
        self.assertNotIn(refused, got)
        # the account's own look at itself is not someone else's read
        st, hdrs, _ = n.json("GET", "/auth/me")
        self.assertNotIn(hdrs["x-request-id"],
                         [x["request_id"] for x in n.json("GET", "/audit?limit=1000")[2]["items"]])


class SignInsAudited(NodeTest):
    """A sign-in's record names who signed in, as every later record of that account does,
    and the session it began (its public id, never the token)."""

    def test_the_record_names_the_account_and_its_session(self):
        n = self.node(auth=CHEAP, env=TEST_CLOCK, roles=("auditor",))
        h = n.new_user("li.ming")
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        st, hdrs, d = n.login("li.ming", ADMIN_PASSWORD, source="127.0.0.5")
        self.assertEqual(st, 200, d)
        self.assertEqual(hdrs.get("cache-control"), "no-store")  # it carries a token
        st, _, log = n.json("GET", "/audit?limit=1000&actor=" + uid)
        self.assertEqual(st, 200, log)
        r = [x for x in log["items"] if x["request_id"] == hdrs["x-request-id"]]
        self.assertEqual(len(r), 1, log)
        r = r[0]
        self.assertEqual((r["actor"], r["actor_login"], r["action"], r["object"], r["status"],
                          r["client"]),
                         (uid, "li.ming", "sign-in", "session " + d["session"], 200, "127.0.0.5"))
        # the session is the one its holder sees
        mine = n.json("GET", "/auth/sessions", headers=bearer(d["token"]), auth=False)[2]["items"]
        self.assertIn(d["session"], [s["id"] for s in mine if s["current"]])
        # the account's first sign-in (the one-time password) and what it then did are its
        # own records, under the same actor
        acts = [x["action"] for x in log["items"]]
        self.assertEqual(acts[:3], ["sign-in", "POST /auth/password", "sign-in"], acts)
        # with a second factor (any account may set one up)
        t, now = two_factor(self, n, h)
        n.set_clock(30_000)  # the next code: the confirmation spent this one
        st, hdrs, d = n.json("POST", "/auth/login",
                             {"login": "li.ming", "password": ADMIN_PASSWORD,
                              "code": totp(t["secret"], now + 30_000)}, auth=False)
        self.assertEqual(st, 200, d)
        st, _, log = n.json("GET", "/audit?limit=1000&actor=" + uid)
        r = [x for x in log["items"] if x["request_id"] == hdrs["x-request-id"]][0]
        self.assertEqual((r["actor"], r["actor_login"], r["action"], r["object"]),
                         (uid, "li.ming", "sign-in: password and code", "session " + d["session"]))
        # no token is in the log, and no sign-in is recorded as anonymous
        self.assertNotIn(d["token"], json.dumps(log))
        st, _, every = n.json("GET", "/audit?limit=1000&actor=anonymous")
        self.assertEqual([x for x in every["items"] if x["action"].startswith("POST /auth/login")],
                         [])
        st, _, v = n.json("GET", "/audit/verify")
        self.assertTrue(v["ok"], v)


class UnknownLogins(NodeTest):
    """A login that names no account is not written down: people type their password into
    the login field, and the audit log is kept for years."""

    def test_an_unknown_login_is_named_by_a_keyed_hash(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        typed = "correct.horse." + uuid.uuid4().hex[:10]  # a password in the login field
        for _ in range(2):
            self.assertEqual(n.login(typed, "whatever-pw-1")[0], 401)
        self.assertEqual(n.login("admin", "a-wrong-password-1")[0], 401)
        # (a refusal changes nothing: its record commits with the next batch, a moment on)
        wait_for("the three records", lambda: len(n.json("GET", "/audit?status=401")[2]["items"]) == 3)
        st, _, d = n.json("GET", "/audit?status=401&limit=100")
        got = [(x["action"], x["object"]) for x in d["items"]]
        unknown = [o for a, o in got if o != "admin"]
        self.assertEqual(len(unknown), 2, got)
        self.assertRegex(unknown[0], r"^unknown login #[0-9a-f]{16}$")
        self.assertEqual(unknown[0], unknown[1])  # one login, one name
        self.assertIn(("sign-in failed", "admin"), got)  # an account's login is named
        self.assertNotIn(typed, json.dumps(d))
        self.assertNotIn(typed, n.log())
        self.assertIn("failed sign-in for %s from 127.0.0.1" % unknown[0], n.log())
        self.assertIn("failed sign-in for 'admin' from 127.0.0.1", n.log())


class InactiveAccounts(NodeTest):
    """auth.inactive_after (GB/T 22239: unused accounts are stopped in time): a staff
    account not signed in for that long cannot sign in until an administrator reactivates
    it."""

    def test_an_unused_staff_account_is_stopped_until_reactivated(self):
        n = self.node(auth=dict(CHEAP, inactive_after=3600, idle_timeout=86400, session_ttl=86400),
                      env=TEST_CLOCK, plugins=("hello",), roles=("auditor",))
        n.new_user("clerk", roles=())
        st, _, lst = n.json("GET", "/admin/users?limit=500")
        u = [x for x in lst["items"] if x["login"] == "clerk"][0]
        self.assertIs(u["inactive"], False)
        self.assertGreater(u["last_login_at"], 0)
        st, _, d = register(n, kind="citizen", login="wang.wu", name="Wang Wu", id_number=PUBLISHED_ID)
        self.assertEqual(st, 201, d)
        n.set_clock(2 * 3600 * 1000)  # two hours on; the admin's session lives on
        # the right password is answered as a wrong one (RefusedAsWrongPassword); the log
        # tells the operator why
        st, _, d = n.login("clerk", ADMIN_PASSWORD)
        self.assertEqual((st, d["type"]), (401, "/problems/bad-credentials"), d)
        self.assertIn("refused sign-in for 'clerk' from 127.0.0.1, with the right password, "
                      "answered as a wrong one: the account has not signed in for more than 3600 "
                      "seconds (auth.inactive_after)", n.log())
        self.assertEqual(n.login("wang.wu", STRONG_PW)[0], 200)  # citizens are not held to it
        self.assertIs(n.json("GET", "/admin/users/" + u["id"])[2]["inactive"], True)
        st, _, log = n.json("GET", "/audit?object=clerk")
        self.assertIn("sign-in refused: inactive", [x["action"] for x in log["items"]])
        self.assertEqual(scrape(n).get("zt_auth_sign_ins_total", result="refused"), 1)
        st, _, d = n.json("PATCH", "/admin/users/" + u["id"], {"disabled": False})
        self.assertEqual((st, d["inactive"]), (200, False), d)
        self.assertEqual(n.login("clerk", ADMIN_PASSWORD)[0], 200)

    def test_accounts_from_before_sign_ins_were_recorded_get_a_full_period(self):
        n = self.node(auth=dict(CHEAP, inactive_after=3600, idle_timeout=86400, session_ttl=86400),
                      env=TEST_CLOCK, plugins=("hello",), roles=())
        n.set_clock(-3 * 3600 * 1000)  # made three hours before the node began to record sign-ins
        n.new_user("old.hand", roles=())
        n.set_clock(0)
        st, _, d = n.login("old.hand", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        n.set_clock(2 * 3600 * 1000)  # then an hour without a sign-in counts
        st, _, d = n.login("old.hand", ADMIN_PASSWORD)
        self.assertEqual((st, d["type"]), (401, "/problems/bad-credentials"), d)
        self.assertIn("refused sign-in for 'old.hand'", n.log())

    def test_offline_enable_and_a_new_password_reactivate(self):
        n = self.node(auth=dict(CHEAP, inactive_after=5), plugins=("hello",), roles=())
        r = n.admin_cli("user", "add", "li.wei", "Li Wei", "root")
        self.assertEqual(r.returncode, 0, r.stderr)
        otp = r.stdout.split("one-time password: ")[1].split()[0]
        time.sleep(5.5)
        st, _, d = n.login("li.wei", otp)
        self.assertEqual((st, d["type"]), (401, "/problems/bad-credentials"), d)
        self.assertIn("refused sign-in for 'li.wei'", n.log())
        r = n.admin_cli("user", "passwd", "li.wei")  # a new one-time password is given to be used
        self.assertEqual(r.returncode, 0, r.stderr)
        otp = r.stdout.split("one-time password: ")[1].split()[0]
        self.assertEqual(n.login("li.wei", otp)[0], 200)
        time.sleep(5.5)
        self.assertEqual(n.login("li.wei", otp)[0], 401)
        self.assertEqual(n.admin_cli("user", "enable", "li.wei").returncode, 0)
        self.assertEqual(n.login("li.wei", otp)[0], 200)


class RefusedAsWrongPassword(NodeTest):
    """A sign-in with the right password that is refused all the same (a disabled account,
    an inactive one) is answered exactly as a wrong password: anything else confirms the
    password to whoever tries it. It is recorded with its reason and counts towards the
    locks as a wrong password does (else the lock would tell)."""

    def same_as_a_wrong_password(self, n, login, source):
        right = n.request("POST", "/auth/login", {"login": login, "password": ADMIN_PASSWORD},
                          auth=False, source=source)
        wrong = n.request("POST", "/auth/login", {"login": login, "password": "Not-the-pw-77"},
                          auth=False, source=source + "1")
        self.assertEqual(answer_as_seen(right), answer_as_seen(wrong))
        st, _, d = answer_as_seen(right)
        self.assertEqual((st, d["type"], d["detail"]),
                         (401, "/problems/bad-credentials", "the login or the password is wrong"))
        return right[1]["x-request-id"]

    def test_a_disabled_account(self):
        n = self.node(auth=dict(CHEAP, max_failures=3), roles=("auditor",))
        n.new_user("clerk")
        n.new_user("clerk2")
        ids = {u["login"]: u["id"] for u in n.json("GET", "/admin/users")[2]["items"]}
        for login in ("clerk", "clerk2"):
            st, _, d = n.json("PATCH", "/admin/users/" + ids[login], {"disabled": True})
            self.assertEqual(st, 200, d)
        rid = self.same_as_a_wrong_password(n, "clerk", "127.0.0.21")
        # recorded with its reason, which the log explains to the operator
        st, _, log = n.json("GET", "/audit?object=clerk&status=401")
        r = [x for x in log["items"] if x["request_id"] == rid]
        self.assertEqual([(x["action"], x["actor"], x["client"]) for x in r],
                         [("sign-in refused: disabled", "anonymous", "127.0.0.21")], log)
        self.assertIn("refused sign-in for 'clerk' from 127.0.0.21, with the right password, "
                      "answered as a wrong one: the account is disabled", n.log())
        # it counts towards the account's lock: two refusals and a wrong password make three
        st, _, d = n.login("clerk", ADMIN_PASSWORD, source="127.0.0.23")
        self.assertEqual(st, 401, d)
        st, hdrs, b = n.request("POST", "/auth/login", {"login": "clerk", "password": ADMIN_PASSWORD},
                                auth=False, source="127.0.0.24")
        self.assertProblem(st, hdrs, b, 429, "too-many-attempts")
        # and towards the address's: three from one address lock it for every login
        for i in range(3):
            st, _, d = n.login("clerk2", ADMIN_PASSWORD, source="127.0.0.31")
            self.assertEqual(st, 401, d)
        self.assertEqual(n.login("admin", ADMIN_PASSWORD, source="127.0.0.31")[0], 429)
        self.assertEqual(n.login("admin", ADMIN_PASSWORD, source="127.0.0.32")[0], 200)
        self.assertEqual(scrape(n).get("zt_auth_sign_ins_total", result="refused"), 5)

    def test_an_inactive_account(self):
        n = self.node(auth=dict(CHEAP, inactive_after=3600, idle_timeout=86400, session_ttl=86400,
                                max_failures=3),
                      env=TEST_CLOCK, roles=("auditor",))
        n.new_user("clerk")
        n.set_clock(2 * 3600 * 1000)
        rid = self.same_as_a_wrong_password(n, "clerk", "127.0.0.21")
        st, _, log = n.json("GET", "/audit?object=clerk&status=401")
        self.assertIn(("sign-in refused: inactive", rid),
                      [(x["action"], x["request_id"]) for x in log["items"]], log)
        self.assertIn("refused sign-in for 'clerk' from 127.0.0.21, with the right password, "
                      "answered as a wrong one: the account has not signed in for more than 3600 "
                      "seconds (auth.inactive_after): an administrator reactivates it", n.log())
        st, _, d = n.login("clerk", ADMIN_PASSWORD, source="127.0.0.23")
        self.assertEqual(st, 401, d)
        self.assertEqual(n.login("clerk", ADMIN_PASSWORD, source="127.0.0.24")[0], 429)

    def test_an_expired_password_is_told(self):
        # the holder must act on it (set a new one), and the session that sign-in gives
        # reaches only /auth/ until then: it is no refusal
        n = self.node(auth=dict(CHEAP, password_max_age=3600, idle_timeout=86400,
                                session_ttl=86400), env=TEST_CLOCK, plugins=("notice",))
        n.new_user("clerk", roles=("notice_editor",))
        n.set_clock(2 * 3600 * 1000)
        st, _, d = n.login("clerk", ADMIN_PASSWORD)
        self.assertEqual(st, 200, d)
        self.assertLess(d["user"]["password_expires_at"], time.time() * 1000 + 2 * 3600 * 1000)
        st, hdrs, b = n.request("POST", "/notices", {"title": "t", "body": "b"},
                                headers=bearer(d["token"]), auth=False)
        self.assertProblem(st, hdrs, b, 403, "password-expired")


class UserFilters(NodeTest):
    """GET /admin/users finds the accounts an access review asks about (等保: 定期审查权限)."""

    def test_by_role_department_kind_and_state(self):
        n = self.node(auth=dict(CHEAP, inactive_after=86400), plugins=("hello", "notice"), roles=())
        for code, parent in (("jyj", "root"), ("jyj-office", "jyj"), ("gaj", "root")):
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": parent})
            self.assertEqual(st, 201, d)
        n.new_user("ed1", roles=("notice_editor",), department="jyj")
        n.new_user("ed2", roles=("notice_editor", "auditor"), department="jyj-office")
        n.new_user("cop", roles=("auditor",), department="gaj")
        self.assertEqual(register(n, kind="citizen", login="zhou.li", name="Zhou Li",
                                  id_number=PUBLISHED_ID)[0], 201)

        def logins(query):
            st, _, d = n.json("GET", "/admin/users?" + query)
            self.assertEqual(st, 200, d)
            return sorted(u["login"] for u in d["items"])

        self.assertEqual(logins("role=auditor"), ["cop", "ed2"])
        self.assertEqual(logins("role=notice_editor&department=jyj"), ["ed1", "ed2"])  # and below
        self.assertEqual(logins("department=jyj-office"), ["ed2"])
        self.assertEqual(logins("kind=citizen"), ["zhou.li"])
        self.assertEqual(logins("kind=staff&inactive=false"), ["admin", "cop", "ed1", "ed2"])
        uid = [u for u in n.json("GET", "/admin/users?role=auditor&department=gaj")[2]["items"]][0]["id"]
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"disabled": True})[0], 200)
        self.assertEqual(logins("disabled=true"), ["cop"])
        # a filter pages on: one a page, then the next from where the page stopped
        st, _, d = n.json("GET", "/admin/users?role=notice_editor&limit=1")
        self.assertEqual(len(d["items"]), 1)
        seen = [d["items"][0]["login"]]
        st, _, d = n.json("GET", "/admin/users?role=notice_editor&limit=1&after=" + d["next"])
        seen += [u["login"] for u in d["items"]]
        self.assertEqual(sorted(seen), ["ed1", "ed2"])
        for query in ("kind=robot", "disabled=yes", "role=Not%20A%20Role", "department=nowhere",
                      "limit=5x"):
            with self.subTest(query=query):
                st, _, d = n.json("GET", "/admin/users?" + query)
                self.assertEqual((st, d["type"]), (400, "/problems/invalid-query"), d)


class PasswordHistory(NodeTest):
    """auth.password_history: a staff member's new password is none of their last N."""

    def test_the_last_passwords_are_not_taken_again(self):
        n = self.node(auth=dict(CHEAP, password_history=3), plugins=("hello",), roles=())
        h = n.new_user("clerk")  # its one-time password is no password of its own
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        p = ["Second-pass-word-2", "Third-pass-word-3", "Fourth-pass-word-4"]

        def change(old, new):
            st, _, d = n.json("POST", "/auth/password", {"old_password": old, "new_password": new},
                              headers=h, auth=False)
            return st, d

        self.assertEqual(change(ADMIN_PASSWORD, p[0])[0], 204)
        st, d = change(p[0], ADMIN_PASSWORD)
        self.assertEqual((st, d["type"]), (422, "/problems/same-password"), d)
        self.assertIn("your last 3", d["detail"])
        self.assertEqual(change(p[0], p[1])[0], 204)
        self.assertEqual(change(p[1], ADMIN_PASSWORD)[0], 422)  # still among the last three
        self.assertEqual(change(p[1], p[2])[0], 204)
        self.assertEqual(change(p[2], ADMIN_PASSWORD)[0], 204)  # the fourth one back: free again
        self.assertEqual(n.login("clerk", ADMIN_PASSWORD)[0], 200)
        # after an administrator's reset, the password from before it is still one of the last
        st, _, d = n.json("POST", "/admin/users/%s/password" % uid)
        self.assertEqual(st, 200, d)
        st, _, s = n.login("clerk", d["one_time_password"])
        self.assertEqual(st, 200, s)
        h = bearer(s["token"])
        self.assertEqual(change(d["one_time_password"], ADMIN_PASSWORD)[0], 422)
        self.assertEqual(change(d["one_time_password"], p[2])[0], 422)
        self.assertEqual(change(d["one_time_password"], "Fifth-pass-word-5")[0], 204)
        # the history's hashes are never shown
        for path, hdrs in (("/admin/users/" + uid, None), ("/auth/me", h)):
            st, _, b = n.request("GET", path, headers=hdrs, auth=hdrs is None)
            self.assertEqual(st, 200)
            self.assertNotIn(b"pw_history", b)
            self.assertNotIn(b"argon2", b)


class PasswordRule(NodeTest):
    """What a password may not be, wherever one is set: registration, a change, and the
    one-time passwords an administrator's reset and the offline commands give."""

    MOST_USED = "the password is one of the most used passwords or keyboard runs"

    def weak(self, st, d, want):
        self.assertEqual((st, d["type"]), (422, "/problems/weak-password"), d)
        self.assertTrue(d["detail"].startswith(want), d)

    def test_what_an_assessor_found_accepted(self):
        n = self.node(auth=CHEAP, plugins=("hello",), roles=())
        citizen = {"kind": "citizen", "login": "wangwu2026", "name": "Wang Wu"}
        for pw, want in (
            ("wangwu2026", "the password contains the login"),
            ("WANGWU2026-ok", "the password contains the login"),  # any letter case
            ("aaaaaaaaa1", "the password needs at least 5 different characters (this one has 2)"),
            ("1111111111a", "the password needs at least 5 different characters (this one has 2)"),
            ("qwertyuiop1", self.MOST_USED),
            ("Qwertyuiop!2026", self.MOST_USED),
            ("1qaz2wsx3edc", self.MOST_USED),
            ("P@ssw0rd2026!", self.MOST_USED),  # look-alikes
            ("Woaini1314", self.MOST_USED),
            ("Wang-family-77", "the password contains the name, or a part of it"),
            ("xWangWu-7731", "the password contains the name, or a part of it"),  # run together
        ):
            with self.subTest(pw=pw):
                st, _, d = register(n, password=pw, **citizen)
                self.weak(st, d, want)
        st, _, d = register(n, password="Lotus-pond-7731", **citizen)
        self.assertEqual(st, 201, d)
        # a part of the login (before an @), of 3 characters or more; a short word is not one
        st, _, d = register(n, kind="citizen", login="zhang.wei", name="张伟",
                            password="Zhang-2026-lotus")
        self.weak(st, d, "the password contains a part of the login")
        st, _, d = register(n, kind="citizen", login="li.na@example.com", name="李娜",
                            password="Lina-example-7731")
        self.weak(st, d, "the password contains a part of the login")  # li + na run together
        st, _, d = register(n, kind="citizen", login="li.na@example.com", name="李娜",
                            password="Example-li-7731")
        self.assertEqual(st, 201, d)  # the mail domain's words are anyone's
        # two kinds by default (lower-case and digits will do), as before the setting
        st, _, d = register(n, kind="citizen", login="zhao.liu", name="Zhao Liu",
                            password="lotuspond7731")
        self.assertEqual(st, 201, d)

    def test_a_change_is_held_to_it_and_to_the_kinds_the_config_asks(self):
        n = self.node(auth=dict(CHEAP, password_classes=3), plugins=("hello",), roles=())
        h = n.new_user("li.ming")  # (its name here is li.ming too)

        def change(new):
            return n.json("POST", "/auth/password", {"old_password": ADMIN_PASSWORD,
                                                    "new_password": new}, headers=h, auth=False)

        st, _, d = change("lotuspond7731")
        self.weak(st, d, "the password needs characters of 3 kinds: lower-case letters, "
                         "upper-case letters, digits, others (this one has 2; "
                         "auth.password_classes)")
        for pw, want in (("Ming-2026-lotus", "the password contains a part of the login"),
                         ("Li.Ming-2026", "the password contains the login"),
                         ("Asdfghjkl;2026", self.MOST_USED)):
            with self.subTest(pw=pw):
                st, _, d = change(pw)
                self.weak(st, d, want)
        self.assertEqual(change("Lotus-pond-7731")[0], 204)
        st, _, d = register(n, kind="citizen", login="zhao.liu", name="Zhao Liu",
                            password="lotuspond7731")
        self.weak(st, d, "the password needs characters of 3 kinds")

    def test_one_time_passwords_keep_the_rule(self):
        # an administrator's reset and the offline commands give passwords the rule would
        # take, at its strictest: every kind of character, no login or name inside
        n = self.node(auth=dict(CHEAP, password_classes=4), plugins=("hello",), roles=())
        otps = []
        for i in range(10):
            st, _, d = n.json("POST", "/admin/users",
                              {"login": "clerk%d" % i, "name": "Clerk", "department": "root"})
            self.assertEqual(st, 201, d)
            otps.append(d["one_time_password"])
            st, _, r = n.json("POST", "/admin/users/%s/password" % d["id"])
            self.assertEqual(st, 200, r)
            otps.append(r["one_time_password"])
        r = n.admin_cli("user", "add", "sun.mei", "Sun Mei", "root")
        self.assertEqual(r.returncode, 0, r.stderr)
        otps.append(r.stdout.split("one-time password: ")[1].split()[0])
        r = n.admin_cli("user", "passwd", "sun.mei")
        self.assertEqual(r.returncode, 0, r.stderr)
        otps.append(r.stdout.split("one-time password: ")[1].split()[0])
        for otp in otps:
            self.assertEqual(len(otp), 20, otp)
            self.assertTrue(re.search("[a-z]", otp) and re.search("[A-Z]", otp) and
                            re.search("[0-9]", otp) and re.search("[^A-Za-z0-9]", otp), otp)
            self.assertIsNone(re.search("[A-Za-z0-9]{3}", otp), otp)  # holds no login
        # it signs in; the password set in its place is held to the rule
        st, _, d = n.login("sun.mei", otps[-1])
        self.assertEqual(st, 200, d)
        st, _, b = n.json("POST", "/auth/password", {"old_password": otps[-1],
                                                    "new_password": "Lotus-pond-lake"},
                          headers=bearer(d["token"]), auth=False)
        self.weak(st, b, "the password needs characters of 4 kinds")
        st, _, b = n.json("POST", "/auth/password", {"old_password": otps[-1],
                                                    "new_password": "Lotus-pond-7731"},
                          headers=bearer(d["token"]), auth=False)
        self.assertEqual(st, 204, b)

    def test_the_setting_is_checked(self):
        for bad in (0, 5, "3"):
            with self.subTest(bad=bad):
                n = self.node(auth=dict(CHEAP, password_classes=bad), start=False)
                r = run(["check", "-c", n.conf])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("auth.password_classes", r.stderr)


class PreviousSignIn(NodeTest):
    def test_a_sign_in_tells_when_and_where_the_one_before_was(self):
        n = self.node(auth=CHEAP, plugins=("hello",), roles=())
        st, _, d = register(n, kind="citizen", login="zhou.li", name="Zhou Li", id_number=PUBLISHED_ID)
        self.assertEqual(st, 201, d)
        st, _, d = n.login("zhou.li", STRONG_PW, source="127.0.0.7")
        self.assertEqual(st, 200, d)
        self.assertIsNone(d["previous_sign_in"])  # the first
        first_at = d["user"]["last_login_at"]
        self.assertEqual(d["user"]["last_login_client"], "127.0.0.7")
        self.assertEqual(n.login("zhou.li", "a-wrong-password-1", source="127.0.0.8")[0], 401)
        st, _, d = n.login("zhou.li", STRONG_PW, source="127.0.0.9")
        self.assertEqual(st, 200, d)
        # a failed attempt is no sign-in
        self.assertEqual(d["previous_sign_in"], {"at": first_at, "client": "127.0.0.7"})
        me = n.json("GET", "/auth/me", headers=bearer(d["token"]), auth=False)[2]
        self.assertEqual(me["last_login_client"], "127.0.0.9")


class AdminNetworks(NodeTest):
    """auth.admin_networks: the node is managed only from the county's own networks."""

    def test_management_routes_answer_only_those_networks(self):
        n = self.node(plugins=("hello", "notice"), auth=dict(CHEAP, admin_networks=["127.0.0.1/32"]),
                      roles=("auditor",))
        outside = "127.0.0.2"
        for path in ("/admin/users", "/audit/verify", "/admin/roles"):
            st, _, d = n.json("GET", path, source=outside)
            self.assertEqual((st, d["type"]), (403, "/problems/admin-network"), d)
            self.assertIn("not from 127.0.0.2", d["detail"])
            self.assertEqual(n.json("GET", path)[0], 200)
        self.assertEqual(n.json("GET", "/auth/me", source=outside)[0], 200)  # the rest as before
        self.assertEqual(n.json("GET", "/notices", source=outside)[0], 200)
        st, _, d = n.json("GET", "/audit?limit=1000")
        refused = [(x["action"], x["client"]) for x in d["items"] if x["action"].startswith("refused")]
        self.assertIn(("refused: GET /admin/users", outside), refused)

    def test_the_setting_is_checked(self):
        for value, want in (([], "auth.admin_networks is empty"),
                            (["10.0.0.0/33"], "auth.admin_networks: '10.0.0.0/33'"),
                            ("10.0.0.0/8", "auth.admin_networks must be a list")):
            with self.subTest(value=value):
                n = self.node(auth=dict(CHEAP, admin_networks=value), start=False)
                r = run(["check", "-c", n.conf])
                self.assertEqual(r.returncode, 1)
                self.assertIn(want, r.stderr)


class SeparateDuties(NodeTest):
    """auth.separate_duties (GB/T 22239 三权分立): the system administrator and the audit
    administrator are two people, and no one changes their own roles."""

    def test_admin_and_auditor_are_two_people(self):
        n = self.node(plugins=("hello", "notice"), auth=dict(CHEAP, separate_duties=True), roles=())
        st, _, d = n.json("POST", "/admin/users", {"login": "zhao", "name": "Zhao", "department": "root",
                                                    "roles": ["admin", "auditor"]})
        self.assertEqual((st, d["type"]), (422, "/problems/duties-not-separate"), d)
        r = n.admin_cli("user", "add", "qian", "Qian", "root", "auditor", "--recover")  # the first auditor
        otp = re.search(r"one-time password: (\S+)", r.stdout).group(1)
        h = bearer(n.login("qian", otp)[2]["token"])
        self.assertEqual(n.request("POST", "/auth/password", {"old_password": otp, "new_password": ADMIN_PASSWORD},
                                   headers=h, auth=False)[0], 204)
        self.assertEqual(n.json("GET", "/audit/verify", headers=h, auth=False)[0], 200)
        me = n.json("GET", "/auth/me")[2]
        # not by one's own hand: neither a second duty nor any other role
        for roles, status, kind in ((["admin", "auditor"], 422, "duties-not-separate"),
                                    (["admin", "notice_editor"], 403, "own-roles")):
            st, _, d = n.json("PATCH", "/admin/users/" + me["id"], {"roles": roles})
            self.assertEqual((st, d["type"]), (status, "/problems/" + kind), d)
        self.assertEqual(n.json("PATCH", "/admin/users/" + me["id"], {"roles": ["admin"], "name": "Boss"})[0],
                         200)  # the same roles: no change of them
        # another administrator may
        other = n.new_user("sun", roles=("admin",))
        st, _, d = n.json("PATCH", "/admin/users/" + me["id"], {"roles": ["admin", "notice_editor"]},
                          headers=other, auth=False)
        self.assertEqual((st, d["roles"]), (200, ["admin", "notice_editor"]), d)
        st, _, d = n.json("GET", "/audit?object=" + me["id"], headers=h, auth=False)
        self.assertEqual(d["items"][-1]["actor_login"], "sun", d["items"][-1])
        # offline too
        for args in (("user", "add", "li.wei", "Li Wei", "root", "admin,auditor"),
                     ("user", "roles", "qian", "auditor,admin")):
            r = n.admin_cli(*args, "--recover")
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("auth.separate_duties: one account cannot hold both admin and auditor", r.stderr)

    def test_accounts_that_hold_both_are_named_at_start(self):
        n = self.node(plugins=("hello",), auth=CHEAP, roles=("auditor",))  # off: allowed
        self.assertEqual(n.json("GET", "/audit/verify")[0], 200)
        n.stop()
        n._conf_text = n._conf_text.replace("auth = {", "auth = { separate_duties = true, ", 1)
        n._write_conf()
        n.start()
        self.assertIn("auth.separate_duties: 1 account(s) hold both admin and auditor (admin)", n.log())
        self.assertEqual(n.json("GET", "/audit/verify")[0], 200)  # they keep both until changed

    def test_off_the_administrators_manage_the_auditors_as_before(self):
        # off (the default): the administrators manage every account, the auditors' too
        n = self.node(plugins=("hello", "notice"), auth=CHEAP, roles=())
        h = n.new_user("inspector", roles=("auditor",))
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        self.assertEqual(n.json("POST", "/admin/users/%s/password" % uid)[0], 200)
        self.assertEqual(n.request("DELETE", "/admin/users/%s/totp" % uid)[0], 204)
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"roles": ["notice_editor"]})[0], 200)
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"roles": ["auditor"]})[0], 200)
        self.assertEqual(n.admin_cli("user", "passwd", "inspector").returncode, 0)
        h = n.new_user("inspector2", roles=("auditor",))
        self.assertProblem(*n.request("GET", "/admin/users", headers=h, auth=False), 403, "forbidden")
        self.assertFalse([r for r in n.json("GET", "/api")[2]["routes"] if "or_role" in r])

    def test_no_api_key_holds_auditor(self):
        # an administrator makes keys: one with auditor would read and verify the audit log
        n = self.node(plugins=("hello",), auth=CHEAP, roles=())
        st, _, k = n.json("POST", "/admin/keys", {"name": "old", "plugin": "core", "role": "auditor"})
        self.assertEqual(st, 201, k)
        self.assertEqual(n.request("GET", "/audit/verify", headers=bearer(k["key"]), auth=False)[0], 200)
        n.stop()
        n._conf_text = n._conf_text.replace("auth = {", "auth = { separate_duties = true, ", 1)
        n._write_conf()
        n.start()
        st, hdrs, b = n.request("POST", "/admin/keys", {"name": "k", "plugin": "core", "role": "auditor"})
        self.assertIn("auth.separate_duties", self.assertProblem(st, hdrs, b, 422, "invalid-key")["detail"])
        r = n.admin_cli("key", "add", "k", "core", "auditor")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("auth.separate_duties", r.stderr)
        # the key made before stops working
        st, hdrs, b = n.request("GET", "/audit/verify", headers=bearer(k["key"]), auth=False)
        self.assertIn("auth.separate_duties", self.assertProblem(st, hdrs, b, 401, "unauthenticated")["detail"])
        self.assertEqual(n.json("POST", "/admin/keys", {"name": "k", "plugin": "core", "role": "user"})[0], 201)

    def test_the_setting_is_a_boolean(self):
        n = self.node(auth=dict(CHEAP, separate_duties="yes"), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r":\d+: auth.separate_duties must be true or false, got string")


class AuditorAccounts(NodeTest):
    """auth.separate_duties: an account that holds auditor is the auditors' to manage. An
    administrator who could reset an auditor's password and remove their second factor would
    sign in as them and hold the audit function too (三权分立 on paper only)."""

    def setUp(self):
        super().setUp()
        self.n = self.node(plugins=("hello", "notice"), env=TEST_CLOCK, roles=(),
                           auth=dict(CHEAP, separate_duties=True, two_factor_roles=["auditor"]))
        self.offset = 0
        self.li, self.li_secret = self.first_auditor("aud.li")
        self.li_id = self.n.json("GET", "/auth/me", headers=self.li, auth=False)[2]["id"]

    def step(self):
        """A fresh 30 s step of the node's clock: each sign-in code is good once."""
        self.offset += 31_000
        self.n.set_clock(self.offset)

    def code(self, secret):
        return totp(secret, time.time() * 1000 + self.offset)

    def enroll(self, h):
        st, _, d = self.n.json("POST", "/auth/totp", {}, headers=h, auth=False)
        self.assertEqual(st, 201, d)
        self.step()
        st, _, b = self.n.request("POST", "/auth/totp/confirm", {"code": self.code(d["secret"])},
                                  headers=h, auth=False)
        self.assertEqual(st, 204, b)
        return d["secret"]

    def own_password(self, login, one_time):
        """Sign in with a one-time password, set ADMIN_PASSWORD, set up codes: (headers, secret)."""
        st, _, d = self.n.login(login, one_time)
        self.assertEqual(st, 200, d)
        h = bearer(d["token"])
        st, _, b = self.n.request("POST", "/auth/password",
                                  {"old_password": one_time, "new_password": ADMIN_PASSWORD},
                                  headers=h, auth=False)
        self.assertEqual(st, 204, b)
        return h, self.enroll(h)

    def first_auditor(self, login):
        # how the first auditor is made: root on the node's machine, saying so
        r = self.n.admin_cli("user", "add", login, "Li", "root", "auditor", "--recover")
        self.assertEqual(r.returncode, 0, r.stderr)
        return self.own_password(login, re.search(r"one-time password: (\S+)", r.stdout).group(1))

    def sign_in(self, login, secret):
        self.step()
        st, _, d = self.n.json("POST", "/auth/login", {"login": login, "password": ADMIN_PASSWORD,
                                                        "code": self.code(secret)}, auth=False)
        self.assertEqual(st, 200, d)
        return bearer(d["token"])

    def refused(self, method, path, body=None, headers=None):
        st, hdrs, b = self.n.request(method, path, body, headers=headers, auth=headers is None)
        p = self.assertProblem(st, hdrs, b, 403, "auditor-accounts")
        self.assertIn("auth.separate_duties", p["detail"])
        return p

    def test_the_administrator_cannot_take_over_the_audit_function(self):
        n, aud = self.n, "/admin/users/" + self.li_id
        # the assessor's sequence, refused at each step
        p = self.refused("DELETE", aud + "/totp")
        self.assertIn("holds auditor", p["detail"])
        self.refused("POST", aud + "/password")
        self.assertProblem(*n.request("POST", "/auth/login", {"login": "aud.li", "password": ADMIN_PASSWORD},
                                      auth=False), 401, "two-factor-required")  # password and codes as they were
        self.assertProblem(*n.request("GET", "/audit"), 403, "forbidden")
        # nor another way round: sessions, roles, department, clearance, enabled, login, name
        self.refused("DELETE", aud + "/sessions")
        for body in ({"disabled": True}, {"roles": []}, {"roles": ["auditor", "notice_editor"]},
                     {"department": "root"}, {"clearance": "sensitive"}, {"login": "aud.fake"},
                     {"name": "Someone"}):
            with self.subTest(body=body):
                self.refused("PATCH", aud, body)
        # nor a new auditor, nor the role given to an account of theirs
        p = self.refused("POST", "/admin/users", {"login": "aud.admin", "name": "A", "department": "root",
                                                   "roles": ["auditor"]})
        self.assertIn("only an auditor gives the auditor role", p["detail"])
        clerk, _ = create_account(n, "clerk")
        self.refused("PATCH", "/admin/users/" + clerk, {"roles": ["auditor"]})
        # still the administrator's: reading the account, and every other account
        st, _, d = n.json("GET", aud)
        self.assertEqual((st, d["roles"], d["disabled"]), (200, ["auditor"], False))
        self.assertEqual(n.json("PATCH", "/admin/users/" + clerk, {"roles": ["notice_editor"]})[0], 200)
        self.assertEqual(n.json("POST", "/admin/users/%s/password" % clerk)[0], 200)
        # the auditor goes on, and finds each attempt in the log
        self.assertEqual(n.request("GET", "/audit/verify", headers=self.li, auth=False)[0], 200)
        st, _, d = n.json("GET", "/audit?status=403&limit=100", headers=self.li, auth=False)
        tried = [x["action"] for x in d["items"] if x["actor_login"] == "admin"]
        for want in ("refused: DELETE /admin/users/:id/totp", "refused: POST /admin/users/:id/password",
                     "refused: PATCH /admin/users/:id", "refused: POST /admin/users"):
            self.assertIn(want, tried)

    def test_an_auditor_manages_the_auditors_accounts(self):
        n, li = self.n, self.li
        st, _, d = n.json("POST", "/admin/users", {"login": "aud.wang", "name": "Wang", "department": "root",
                                                    "roles": ["auditor"]}, headers=li, auth=False)
        self.assertEqual(st, 201, d)
        wang_id = d["id"]
        wang, wang_secret = self.own_password("aud.wang", d["one_time_password"])
        # wang forgot the password and lost the phone: li resets both
        st, _, d = n.json("POST", "/admin/users/%s/password" % wang_id, headers=li, auth=False)
        self.assertEqual(st, 200, d)
        self.assertEqual(n.request("GET", "/auth/me", headers=wang, auth=False)[0], 401)  # sessions end
        st, _, b = n.request("DELETE", "/admin/users/%s/totp" % wang_id, headers=li, auth=False)
        self.assertEqual(st, 204, b)
        wang, _ = self.own_password("aud.wang", d["one_time_password"])
        self.assertEqual(n.request("GET", "/audit/verify", headers=wang, auth=False)[0], 200)
        for body in ({"disabled": True}, {"disabled": False}, {"clearance": "sensitive"}, {"roles": []},
                     {"roles": ["auditor"]}):
            st, _, d = n.json("PATCH", "/admin/users/" + wang_id, body, headers=li, auth=False)
            self.assertEqual(st, 200, (body, d))
        self.assertEqual(n.request("DELETE", "/admin/users/%s/sessions" % wang_id, headers=li, auth=False)[0],
                         204)
        # an auditor sees and manages the auditors, and gives no role but auditor
        st, _, d = n.json("GET", "/admin/users", headers=li, auth=False)
        self.assertEqual(sorted(u["login"] for u in d["items"]), ["aud.li", "aud.wang"])
        self.refused("GET", "/admin/users?role=admin", headers=li)
        admin_id = n.json("GET", "/auth/me")[2]["id"]
        for method, path, body in (("GET", "/admin/users/" + admin_id, None),
                                   ("POST", "/admin/users/%s/password" % admin_id, None),
                                   ("DELETE", "/admin/users/%s/totp" % admin_id, None),
                                   ("DELETE", "/admin/users/%s/sessions" % admin_id, None),
                                   ("PATCH", "/admin/users/" + admin_id, {"disabled": True}),
                                   ("PATCH", "/admin/users/" + wang_id, {"roles": ["auditor", "notice_editor"]}),
                                   ("POST", "/admin/users", {"login": "x.y", "name": "X", "department": "root",
                                                             "roles": ["notice_editor"]}),
                                   ("POST", "/admin/users", {"login": "x.z", "name": "X", "department": "root",
                                                             "roles": ["auditor", "admin"]})):
            with self.subTest(method=method, path=path, body=body):
                st, hdrs, b = n.request(method, path, body, headers=li, auth=False)
                self.assertEqual(st, 422 if body and "admin" in body.get("roles", ()) else 403, b)
        self.assertProblem(*n.request("PATCH", "/admin/users/" + self.li_id, {"roles": []}, headers=li,
                                      auth=False), 403, "own-roles")
        # the role goes to an account of the administrator's only once it holds no other
        clerk, _ = create_account(n, "clerk", roles=("notice_editor",))
        p = self.refused("PATCH", "/admin/users/" + clerk, {"roles": ["notice_editor", "auditor"]}, headers=li)
        self.assertIn("holds no other ('notice_editor')", p["detail"])
        self.refused("PATCH", "/admin/users/" + clerk, {"disabled": True}, headers=li)
        self.assertEqual(n.json("PATCH", "/admin/users/" + clerk, {"roles": []})[0], 200)
        st, _, d = n.json("PATCH", "/admin/users/" + clerk, {"roles": ["auditor"]}, headers=li, auth=False)
        self.assertEqual((st, d["roles"]), (200, ["auditor"]), d)
        self.refused("PATCH", "/admin/users/" + clerk, {"disabled": True})  # now the auditors'
        
        # everything else stays the administrators'
        for method, path in (("GET", "/admin/departments"), ("GET", "/admin/keys"), ("GET", "/admin/roles"),
                             ("POST", "/admin/users/%s/release" % wang_id)):
            self.assertProblem(*n.request(method, path, {} if method == "POST" else None, headers=li,
                                          auth=False), 403, "forbidden")
        api = {(r["method"], r["path"]): r for r in n.json("GET", "/api")[2]["routes"]}
        also = sorted(k for k, r in api.items() if r.get("or_role") == "auditor")
        self.assertEqual(also, [("DELETE", "/admin/users/:id/sessions"), ("DELETE", "/admin/users/:id/totp"),
                                ("GET", "/admin/users"), ("GET", "/admin/users/:id"),
                                ("PATCH", "/admin/users/:id"), ("POST", "/admin/users"),
                                ("POST", "/admin/users/:id/password")])
        self.assertTrue(all(api[k]["role"] == "admin" for k in also))

    def test_root_recovers_an_auditor_account_only_saying_so(self):
        n = self.n
        st, _, d = n.json("POST", "/admin/users", {"login": "aud.wang", "name": "Wang", "department": "root",
                                                    "roles": ["auditor"]}, headers=self.li, auth=False)
        wang, wang_secret = self.own_password("aud.wang", d["one_time_password"])
        create_account(n, "clerk")
        for args in (("user", "passwd", "aud.li"), ("user", "totp-off", "aud.li"),
                     ("user", "disable", "aud.li"), ("user", "roles", "aud.li", "-"),
                     ("user", "clearance", "aud.li", "public"), ("user", "rename", "aud.li", "aud.lee"),
                     ("user", "reseal", "aud.li"), ("user", "roles", "clerk", "auditor"),
                     ("user", "add", "aud.zhao", "Zhao", "root", "auditor")):
            with self.subTest(args=args):
                r = n.admin_cli(*args)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn("auth.separate_duties", r.stderr)
                self.assertIn("only with --recover", r.stderr)
                self.assertEqual(r.stdout, "")
        self.assertEqual(n.admin_cli("user", "passwd", "clerk").returncode, 0)  # not an auditor's: as before
        self.assertEqual(n.request("GET", "/auth/me", headers=self.li, auth=False)[0], 200)  # untouched
        r = n.admin_cli("user", "passwd", "aud.li", "--recover")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: aud.li is an auditor's account", r.stderr)
        one_time = re.search(r"one-time password: (\S+)", r.stdout).group(1)
        self.assertEqual(n.request("GET", "/auth/me", headers=self.li, auth=False)[0], 401)
        self.step()
        st, _, d = n.json("POST", "/auth/login", {"login": "aud.li", "password": one_time,
                                                  "code": self.code(self.li_secret)}, auth=False)
        self.assertEqual((st, d["user"]["must_change_password"]), (200, True), d)
        me = pwd.getpwuid(os.getuid()).pw_name
        st, _, d = n.json("GET", "/audit?actor=cli:" + me, headers=wang, auth=False)
        got = [(x["action"], x["object"]) for x in d["items"]]
        self.assertEqual(got, [('admin user add aud.li: department "root"; roles ["auditor"]; '
                                'clearance "internal" (recovery of an auditor account)', "aud.li"),
                               ("admin user passwd", "clerk"),
                               ("admin user passwd aud.li (recovery of an auditor account)", "aud.li")])


class RenameLogin(NodeTest):
    """GB/T 22239: the default account is renamed (a known login is half a guess)."""

    def test_the_first_administrator_takes_another_login(self):
        n = self.node(plugins=("hello",), roles=("auditor",))
        uid = n.json("GET", "/auth/me")[2]["id"]
        st, _, d = n.json("PATCH", "/admin/users/" + uid, {"login": "zhang.wei"})
        self.assertEqual((st, d.get("login")), (200, "zhang.wei"), d)
        self.assertEqual(n.json("GET", "/auth/me")[2]["login"], "zhang.wei")  # the session goes on
        self.assertEqual(n.login("admin", ADMIN_PASSWORD)[0], 401)
        self.assertEqual(n.login("zhang.wei", ADMIN_PASSWORD)[0], 200)
        st, _, log = n.json("GET", "/audit?object=" + uid)
        self.assertIn('update account: login "zhang.wei"', [x["action"] for x in log["items"]])
        # a login that is taken, that is no login, or a citizen's own: refused
        cid, otp = create_account(n, "clerk")
        st, h, b = n.request("PATCH", "/admin/users/" + cid, {"login": "zhang.wei"})
        self.assertProblem(st, h, b, 409, "login-taken")
        st, h, b = n.request("PATCH", "/admin/users/" + cid, {"login": "Li Na"})
        self.assertProblem(st, h, b, 422, "invalid-user")
        st, _, d = register(n, kind="citizen", login="wang.wu", name="Wang Wu")
        self.assertEqual(st, 201, d)
        st, h, b = n.request("PATCH", "/admin/users/" + d["id"], {"login": "wang.liu"})
        self.assertProblem(st, h, b, 422, "invalid-user")
        # offline, on the node's machine
        r = n.admin_cli("user", "rename", "clerk", "li.na")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "clerk is now li.na"), r.stderr)
        self.assertEqual(n.login("li.na", otp)[0], 200)
        self.assertEqual(n.login("clerk", otp)[0], 401)
        r = n.admin_cli("user", "rename", "li.na", "zhang.wei")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the login 'zhang.wei' is taken", r.stderr)


class HttpsOnly(NodeTest):
    """auth.https_only: a password, token or key never crosses a network unencrypted. The
    node speaks no TLS: a credential is taken from this machine, or from a trusted proxy
    (nginx) that says it took the request over HTTPS."""

    HTTPS = {"X-Forwarded-Proto": "https"}

    def login(self, n, headers):
        return n.json("POST", "/auth/login", {"login": "admin", "password": n.first_start_password()},
                      headers=headers, auth=False)

    def test_behind_a_proxy_only_what_it_took_over_https(self):
        # every test connection is 127.0.0.1: made the trusted proxy, it stands for nginx
        n = self.node(plugins=("hello",), sign_in=False, auth=dict(CHEAP, https_only=True),
                      options='trusted_proxies = { "127.0.0.1" }')
        for headers in ({}, {"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "https, http"}):
            st, h, b = n.request("POST", "/auth/login", {"login": "admin", "password": "x" * 12},
                                 headers=headers, auth=False)
            p = self.assertProblem(st, h, b, 403, "https-required")
            self.assertIn("proxy_set_header X-Forwarded-Proto $scheme;", p["detail"])
        st, _, d = self.login(n, self.HTTPS)
        self.assertEqual(st, 200, d)
        token = bearer(d["token"])
        # a token too: only with the proxy's word
        st, h, b = n.request("GET", "/auth/me", headers=token, auth=False)
        self.assertProblem(st, h, b, 403, "https-required")
        self.assertEqual(n.request("GET", "/auth/me", headers=dict(token, **self.HTTPS),
                                   auth=False)[0], 200)
        # a password to registration as well; what carries none is served either way
        st, h, b = n.request("POST", "/auth/register", {"kind": "citizen", "login": "wang",
                                                        "name": "Wang", "password": STRONG_PW},
                             auth=False)
        self.assertProblem(st, h, b, 403, "https-required")
        self.assertEqual(n.request("GET", "/healthz", auth=False)[0], 200)
        self.assertEqual(n.request("GET", "/hello", auth=False)[0], 200)
        self.assertEqual(scrape(n).get("zt_auth_plain_http_refused_total"), 5)

    def test_on_this_machine_without_a_proxy(self):
        n = self.node(plugins=("hello",), sign_in=False, auth=dict(CHEAP, https_only=True))
        self.assertIn("auth.https_only without trusted_proxies: the node serves no HTTPS itself",
                      n.log())
        st, _, d = self.login(n, {})  # from 127.0.0.1: it never left the machine
        self.assertEqual(st, 200, d)

    def test_off_by_default_and_a_boolean(self):
        n = self.node(plugins=("hello",), options='trusted_proxies = { "127.0.0.1" }')
        self.assertEqual(n.request("GET", "/auth/me")[0], 200)  # no X-Forwarded-Proto
        bad = self.node(auth=dict(CHEAP, https_only="yes"), start=False)
        r = run(["check", "-c", bad.conf])
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r":\d+: auth.https_only must be true or false, got string")


class DepartmentTree(NodeTest):
    """A county reorganises: a department is renamed or moved, its code stays, and the
    scope of its staff moves with it."""

    def test_a_department_without_a_parent_goes_under_root(self):
        # one tree: county staff (in root) reach a bureau made without naming its parent
        n = self.node(plugins=("hello", "notice"), roles=("auditor",))
        st, _, d = n.json("POST", "/admin/departments", {"code": "wjw", "name": "卫生健康委员会"})
        self.assertEqual((st, d["parent"]), (201, "root"), d)
        st, h, b = n.request("POST", "/admin/departments", {"code": "x1", "name": "x", "parent": None})
        self.assertIn("left out: root", self.assertProblem(st, h, b, 422, "invalid-department")["detail"])
        editor = n.new_user("county.editor", roles=("notice_editor",), department="root")
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department_code": "wjw"},
                             editor, auth=False)
        self.assertEqual(st, 201, b)

    def test_rename_and_move(self):
        n = self.node(plugins=("hello", "notice"), roles=("auditor",))
        for code, parent in (("jyj", "root"), ("jyj-jc", "jyj"), ("wtj", "root")):
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": parent})
            self.assertEqual(st, 201, d)
        editor = n.new_user("editor", roles=("notice_editor",), department="jyj")
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department_code": "jyj-jc"},
                             editor, auth=False)
        self.assertEqual(st, 201, b)  # below the editor's department
        st, _, d = n.json("PATCH", "/admin/departments/jyj", {"name": "教育体育局"})
        self.assertEqual((st, d["name"], d["code"], d["parent"]), (200, "教育体育局", "jyj", "root"), d)
        # the section moves to the culture bureau: out of the education editor's scope
        st, _, d = n.json("PATCH", "/admin/departments/jyj-jc", {"parent": "wtj"})
        self.assertEqual((st, d["parent"]), (200, "wtj"), d)
        st, _, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department_code": "jyj-jc"},
                             editor, auth=False)
        self.assertEqual(st, 403, b)
        # what cannot be
        for code, body, want, why in (
            ("wtj", {"parent": "jyj-jc"}, 422, "below this department"),
            ("wtj", {"parent": "wtj"}, 422, "is this department"),
            ("root", {"parent": "wtj"}, 422, "does not move"),
            ("wtj", {"parent": "nowhere"}, 422, "existing department"),
            ("wtj", {"code": "x"}, 422, "only name and parent"),
            ("wtj", {"name": "  "}, 422, "only spaces"),
            ("nowhere", {"name": "x"}, 404, "no department nowhere"),
        ):
            with self.subTest(code=code, body=body):
                st, h, b = n.request("PATCH", "/admin/departments/" + code, body)
                p = self.assertProblem(st, h, b, want)
                self.assertIn(why, p["detail"])
        # no tree deeper than 32: a chain of 31 below root, then one more is refused
        prev = "root"
        for i in range(31):
            st, _, d = n.json("POST", "/admin/departments", {"code": "c%d" % i, "name": "c", "parent": prev})
            self.assertEqual(st, 201, d)
            prev = "c%d" % i
        st, h, b = n.request("PATCH", "/admin/departments/wtj", {"parent": prev})
        self.assertProblem(st, h, b, 422)
        self.assertIn("deeper than 32", json.loads(b)["detail"])
        st, h, b = n.request("POST", "/admin/departments", {"code": "c31", "name": "c", "parent": prev})
        self.assertProblem(st, h, b, 422)
        self.assertIn("deeper than 32", json.loads(b)["detail"])
        st, _, d = n.json("GET", "/admin/departments")
        self.assertEqual([x["parent"] for x in d["items"] if x["code"] == "wtj"], ["root"])
        st, _, log = n.json("GET", "/audit?object=jyj-jc")
        self.assertIn("update department", [r["action"] for r in log["items"]])


class SecurityLabels(NodeTest):
    """安全标记 (GB/T 22239 access control g): labels on subjects and objects. The node keeps
    the subjects' (every staff account and API key is cleared for a label); plugins label
    their objects and ask whether a caller is cleared for one."""

    LUA = (
        'zt.route("GET", "/lbl/check", { role = "user" }, function(req)\n'
        '  local who = zt.auth.caller(req)\n'
        '  local r = { clearance = who.clearance, labels = zt.auth.labels() }\n'
        '  for _, l in ipairs{ "public", "internal", "sensitive", "secret" } do\n'
        '    r[l] = zt.auth.clears(req, l)\n'
        '  end\n'
        '  local other = zt.auth.account(req, req.query.login or "nobody")\n'
        '  r.other_sensitive = other and zt.auth.clears(req, "sensitive", other) or false\n'
        '  return 200, r\n'
        'end)\n'
        'zt.route("GET", "/lbl/public", { role = "public" }, function(req)\n'
        '  return 200, { public = zt.auth.clears(req, "public"), internal = zt.auth.clears(req, "internal") }\n'
        'end)\n')

    def lua_node(self, **kw):
        import tempfile

        root = tempfile.mkdtemp(prefix="zt-lbl-")
        self.addCleanup(__import__("shutil").rmtree, root, True)
        lua_dir = lua_tree_with(os.path.join(root, "lua"), {"lbl": (lua_manifest(), self.LUA)})
        return self.node(plugins=("lbl",), lua_dir=lua_dir, **kw)

    def check(self, n, headers, login=None):
        st, _, d = n.json("GET", "/lbl/check" + ("?login=" + login if login else ""), headers=headers,
                          auth=False)
        self.assertEqual(st, 200, d)
        return d

    def test_accounts_are_cleared_and_plugins_ask(self):
        n = self.lua_node(roles=("auditor",))
        # the labels, lowest first, and the admin's clearance: the default
        st, _, d = n.json("GET", "/auth/labels")
        self.assertEqual((st, d), (200, {"labels": ["public", "internal", "sensitive"],
                                         "default_clearance": "internal", "clearance": "internal"}))
        self.assertEqual(n.json("GET", "/auth/me")[2]["clearance"], "internal")
        low = n.new_user("low")
        high = n.new_user("high", clearance="sensitive")
        d = self.check(n, low, login="high")
        self.assertEqual((d["clearance"], d["public"], d["internal"], d["sensitive"], d["secret"]),
                         ("internal", True, True, False, False))  # a label not listed: no one
        self.assertEqual(d["labels"], ["public", "internal", "sensitive"])
        self.assertTrue(d["other_sensitive"])  # what another account is cleared for (delegation)
        d = self.check(n, high, login="low")
        self.assertEqual((d["clearance"], d["sensitive"], d["other_sensitive"]), ("sensitive", True, False))
        # no one signed in: the lowest label only
        self.assertEqual(n.json("GET", "/lbl/public", auth=False)[2], {"public": True, "internal": False})
        # an administrator raises a clearance: the signed-in caller has it at once (cached callers)
        st, _, users = n.json("GET", "/admin/users")
        uid = {u["login"]: u["id"] for u in users["items"]}
        self.assertEqual({u["login"]: u["clearance"] for u in users["items"]}["high"], "sensitive")
        st, _, d = n.json("PATCH", "/admin/users/" + uid["low"], {"clearance": "sensitive"})
        self.assertEqual((st, d["clearance"]), (200, "sensitive"), d)
        self.assertTrue(self.check(n, low)["sensitive"])
        st, _, log = n.json("GET", "/audit?object=" + uid["low"])
        self.assertIn('update account: clearance "sensitive"', [r["action"] for r in log["items"]])
        # what is refused, and why
        for body, why in (({"clearance": "secret"}, "clearance: one of auth.labels (public, internal, sensitive)"),
                          ({"clearance": 3}, "clearance: one of auth.labels")):
            with self.subTest(body=body):
                st, h, b = n.request("PATCH", "/admin/users/" + uid["low"], body)
                self.assertIn(why, self.assertProblem(st, h, b, 422, "invalid-user")["detail"])
                st, h, b = n.request("POST", "/admin/users", dict(body, login="xx1", name="x", department="root"))
                self.assertIn(why, self.assertProblem(st, h, b, 422, "invalid-user")["detail"])
        st, _, d = n.json("POST", "/auth/register", {"kind": "citizen", "login": "wang", "name": "Wang",
                                                     "password": STRONG_PW}, auth=False)
        self.assertEqual(st, 201, d)
        st, h, b = n.request("PATCH", "/admin/users/" + d["id"], {"clearance": "sensitive"})
        self.assertIn("only a staff account's", self.assertProblem(st, h, b, 422)["detail"])
        st, _, d = n.json("POST", "/auth/login", {"login": "wang", "password": STRONG_PW}, auth=False)
        self.assertEqual(self.check(n, bearer(d["token"]))["clearance"], "public")  # citizens: the lowest
        # an API key's clearance: given, or the default, fixed with the key
        st, _, k = n.json("POST", "/admin/keys", {"name": "gw", "plugin": "lbl", "role": "auditor",
                                                  "clearance": "sensitive"})
        self.assertEqual((st, k["clearance"]), (201, "sensitive"), k)
        st, _, k2 = n.json("POST", "/admin/keys", {"name": "gw2", "plugin": "lbl", "role": "auditor"})
        self.assertEqual((st, k2["clearance"]), (201, "internal"), k2)
        st, h, b = n.request("POST", "/admin/keys", {"name": "gw3", "plugin": "lbl", "role": "auditor",
                                                     "clearance": "top"})
        self.assertProblem(st, h, b, 422, "invalid-key")
        d = self.check(n, {"Authorization": "Bearer " + k["key"]})
        self.assertEqual((d["clearance"], d["sensitive"]), ("sensitive", True))
        # offline, as county IT: set, list, audited
        n.stop()
        r = run(["admin", "-c", n.conf, "user", "clearance", "high", "public"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("high: cleared for public", r.stdout)
        r = run(["admin", "-c", n.conf, "user", "clearance", "high", "top"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LABEL: one of auth.labels", r.stderr)
        r = run(["admin", "-c", n.conf, "user", "clearance", "wang", "internal"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("only a staff account's clearance", r.stderr)
        self.assertRegex(run(["admin", "-c", n.conf, "user", "list"]).stdout, r"high +staff +root +public ")
        # a key made offline: its clearance given (after DAYS or alone), else the default
        keys = {}
        for name, extra, cleared in (("gw4", ("sensitive",), "sensitive"), ("gw5", ("30", "public"), "public"),
                                     ("gw6", (), "internal")):
            r = run(["admin", "-c", n.conf, "key", "add", name, "lbl", "auditor", *extra])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("cleared for %s:" % cleared, r.stdout)
            keys[cleared] = r.stdout.strip().splitlines()[-1]
        for extra, why in ((("top",), "'top': after ROLE come DAYS"), (("public", "internal"), "'internal'"),
                           (("3", "4"), "'4'"), (("0",), "DAYS: how many days")):
            r = run(["admin", "-c", n.conf, "key", "add", "gw7", "lbl", "auditor", *extra])
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn(why, r.stderr)
        n.start()
        for cleared, key in keys.items():
            self.assertEqual(self.check(n, {"Authorization": "Bearer " + key})["clearance"], cleared)
        self.assertFalse(self.check(n, high)["internal"])
        st, _, log = n.json("GET", "/audit?actor=cli:" + __import__("getpass").getuser())
        self.assertIn("admin user clearance: public", [r["action"] for r in log["items"]])

    def test_own_clearance_under_separate_duties(self):
        n = self.lua_node(auth=dict(CHEAP, separate_duties=True), roles=())
        me = n.json("GET", "/auth/me")[2]["id"]
        st, h, b = n.request("PATCH", "/admin/users/" + me, {"clearance": "sensitive"})
        self.assertProblem(st, h, b, 403, "own-clearance")
        self.assertEqual(n.json("PATCH", "/admin/users/" + me, {"clearance": "internal"})[0], 200)  # unchanged

    def test_a_label_the_county_removes(self):
        n = self.lua_node()
        high = n.new_user("high", clearance="sensitive")
        st, _, k = n.json("POST", "/admin/keys", {"name": "gw", "plugin": "lbl", "role": "notice_editor",
                                                  "clearance": "sensitive"})
        self.assertEqual(st, 201, k)
        st, _, d = n.json("GET", "/admin/users?clearance=sensitive")
        self.assertEqual([u["login"] for u in d["items"]], ["high"])
        self.assertEqual(len(n.json("GET", "/admin/users?clearance=internal")[2]["items"]), 1)  # admin
        st, h, b = n.request("GET", "/admin/users?clearance=secret")
        self.assertIn("one of auth.labels", self.assertProblem(st, h, b, 400, "invalid-query")["detail"])
        n.stop()
        n._conf_text = n._conf_text.replace("auth = {", 'auth = { labels = { "public", "internal" }, ', 1)
        n._write_conf()
        want = "auth.labels does not list the clearance of 2 account(s) or key(s): high (sensitive), key gw (sensitive)"
        n.start()
        self.assertIn(want, n.log())
        d = self.check(n, high)  # signs in still, cleared for the lowest only
        self.assertEqual((d["clearance"], d["public"], d["internal"]), ("sensitive", True, False))
        st, _, users = n.json("GET", "/admin/users")
        hid = [u["id"] for u in users["items"] if u["login"] == "high"][0]
        self.assertEqual(n.json("PATCH", "/admin/users/" + hid, {"clearance": "internal"})[0], 200)
        self.assertTrue(self.check(n, high)["internal"])

    def test_labels_in_the_config(self):
        n = self.lua_node(auth=dict(CHEAP, labels=["open", "restricted", "confidential", "top"],
                                    default_clearance="restricted"))
        st, _, d = n.json("GET", "/auth/labels")
        self.assertEqual((d["labels"], d["default_clearance"], d["clearance"]),
                         (["open", "restricted", "confidential", "top"], "restricted", "restricted"))
        self.assertEqual(n.json("GET", "/lbl/public", auth=False)[2], {"public": False, "internal": False})
        for auth, want in (
            (dict(CHEAP, labels=["open"]), "auth.labels must list 2 to 16 security labels"),
            (dict(CHEAP, labels=["open", "Top Secret"]), "auth.labels: 'Top Secret' is not a label name"),
            (dict(CHEAP, labels=["a", "b", "a"]), "auth.labels: 'a' is listed twice"),
            (dict(CHEAP, labels=["a", "b"]), "auth.labels does not list 'internal', the default clearance"),
            (dict(CHEAP, default_clearance="sensitiv"), "auth.default_clearance: 'sensitiv' is not one of auth.labels"),
            (dict(CHEAP, default_clearance=2), "auth.default_clearance must be a label of auth.labels"),
        ):
            with self.subTest(auth=auth):
                bad = self.node(auth=auth, start=False)
                r = run(["check", "-c", bad.conf])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertRegex(r.stderr, r"zhengtong.conf:\d+: ")
                self.assertIn(want, r.stderr)


if __name__ == "__main__":
    unittest.main()
