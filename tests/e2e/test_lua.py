# test_lua.py: Lua plugins: failures stay in their request; the notice plugin's CRUD and checks.
import json
import os
import shutil
import tempfile
import unittest
import urllib.parse

from ztnode import NodeTest, lua_manifest, lua_route, lua_tree_with

MARKER = "e2e-raised-this-7f3a"

# The test plugin: one route per way a handler can go wrong, and well-behaved ones.
E2E_INIT = "".join(
    [
        "local calls = 0\n",
        'local kv = zt.db.open("kv")\n',
        lua_route("GET", "/e2e/ok", "calls = calls + 1\nreturn 200, { ok = true, calls = calls }"),
        lua_route("GET", "/e2e/error", 'error("%s")' % MARKER),
        lua_route("GET", "/e2e/error-table", "error({ code = 42 })"),
        lua_route("GET", "/e2e/loop", "local n = 0\nwhile true do n = n + 1 end"),
        lua_route("GET", "/e2e/recurse", "local function f(n) return f(n + 1) + 1 end\nreturn 200, { f(1) }"),
        lua_route(
            "GET",
            "/e2e/bomb",
            "local t = {}\nlocal i = 0\nwhile true do i = i + 1\n"
            't[i] = string.rep("x", 1 << 20) .. i end',
        ),
        lua_route("GET", "/e2e/bigstring", 'local s = string.rep("y", 1 << 30)\nreturn 200, { n = #s }'),
        lua_route("GET", "/e2e/bad-return", 'return "not a status"'),
        lua_route("GET", "/e2e/dup-length", 'return 200, "five!", { ["Content-Length"] = "4" }'),
        lua_route(
            "GET", "/e2e/table", 'return 200, { name = "zhengtong", list = { 1, 2, 3 }, nested = { a = "b" } }'
        ),
        lua_route(
            "GET", "/e2e/text", 'return 200, "plain words", { ["Content-Type"] = "text/plain", ["X-E2e"] = "yes" }'
        ),
        lua_route("GET", "/e2e/cached", 'return 200, { v = 1 }, { ["Cache-Control"] = "public, max-age=60" }'),
        lua_route("GET", "/e2e/sniff", 'return 200, { v = 1 }, { ["X-Content-Type-Options"] = "whatever" }'),
        lua_route("GET", "/e2e/teapot", 'zt.problem(418, "teapot", "short and stout", "I am a teapot")'),
        lua_route(
            "GET",
            "/e2e/sandbox",
            "return 200, {\n"
            "  io = type(io), os_execute = type(os and os.execute), loadfile = type(loadfile),\n"
            "  dofile = type(dofile), debug = type(debug),\n"
            '  require_outside = (pcall(require, "../../../../etc/passwd")),\n'
            "}",
        ),
        lua_route("PUT", "/e2e/kv/:k", "kv:put(req.params.k, req.body)\nreturn 204"),
        lua_route(
            "GET",
            "/e2e/kv/:k",
            'local v = kv:get(req.params.k)\nif v == nil then zt.problem(404, "not-found", "no such key") end\n'
            "return 200, { value = v }",
        ),
        lua_route("PUT", "/e2e/kv-fail/:k", 'kv:put(req.params.k, req.body)\nerror("failed after writing")'),
        lua_route(
            "PUT", "/e2e/kv-problem/:k", 'kv:put(req.params.k, req.body)\nzt.problem(409, "conflict", "refused after writing")'
        ),
        lua_route("PUT", "/e2e/kv-loop/:k", "kv:put(req.params.k, req.body)\nwhile true do end"),
        lua_route(
            "GET",
            "/e2e/spin",
            "local n = math.tointeger(tonumber(req.query.n))\nlocal x = 0\n"
            "for i = 1, n do x = x + i end\nreturn 200, { n = n }",
        ),
        lua_route("GET", "/e2e/whoami", "return 200, { login = req.caller and req.caller.login or zt.json.null }"),
        lua_route(
            "GET",
            "/e2e/account",
            "local a = zt.auth.account(req, req.query.login)\n"
            "return 200, { account = a or zt.json.null,\n"
            "  within = zt.auth.within(req, req.query.dept or 'x', req.query.scope or 'x') }",
        ),
        lua_route(
            "GET",
            "/e2e/alloc",
            "local mb = math.tointeger(tonumber(req.query.mb))\n"
            'local s = string.rep("m", mb << 20)\nreturn 200, { bytes = #s }',
        ),
    ]
)

FAILURES = {
    "/e2e/error": "lua-error",
    "/e2e/error-table": "lua-error",
    "/e2e/loop": None,
    "/e2e/recurse": None,
    "/e2e/bomb": None,
    "/e2e/bigstring": None,
    "/e2e/bad-return": "lua-error",
    "/e2e/dup-length": "lua-error",
}


def lua_tree_with_e2e(root):
    return lua_tree_with(os.path.join(root, "lua"), {"e2e": (lua_manifest(), E2E_INIT)})


class LuaFailures(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="zt-e2e-lua-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        lua_dir = lua_tree_with_e2e(cls.root)
        # a smaller memory cap than the default keeps the bomb quick
        cls.shared_node(
            plugins=("hello", "notice", "e2e"),
            lua_dir=lua_dir,
            lua={"instructions": 10000000, "memory": 32 << 20},
        )

    def ok(self):
        st, h, b = self.shared.request("GET", "/e2e/ok")
        self.assertEqual(st, 200, b)
        d = json.loads(b)
        self.assertIs(d["ok"], True)
        return d["calls"]

    def test_accounts_and_departments_of_others(self):
        n = self.shared
        for code, parent in (("lu_bureau", "root"), ("lu_section", "lu_bureau"), ("lu_other", "root")):
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": parent})
            self.assertEqual(st, 201, d)
        h = n.new_user("lu.clerk", ("clerk",), "lu_section")

        def get(**q):
            st, _, d = n.json("GET", "/e2e/account?" + urllib.parse.urlencode(q), auth=False)
            self.assertEqual(st, 200, d)
            return d

        a = get(login="lu.clerk")["account"]
        self.assertEqual((a["login"], a["kind"], a["department"], a["roles"]),
                         ("lu.clerk", "staff", "lu_section", ["clerk"]))
        self.assertEqual(a["id"], n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"])
        self.assertIsNone(get(login="no.such.one")["account"])
        self.assertIsNone(get(login="NOT A LOGIN")["account"])
        uid = a["id"]
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"disabled": True})[0], 200)
        self.assertIsNone(get(login="lu.clerk")["account"])  # disabled: can do nothing
        for dept, scope, want in (("lu_section", "lu_bureau", True), ("lu_section", "root", True),
                                  ("lu_bureau", "lu_bureau", True), ("lu_bureau", "lu_section", False),
                                  ("lu_other", "lu_bureau", False), ("nope", "root", False)):
            with self.subTest(dept=dept, scope=scope):
                self.assertIs(get(login="x", dept=dept, scope=scope)["within"], want)

    def test_a_public_route_sees_no_caller_the_core_would_hold_back(self):
        n = self.shared

        def whoami(token):
            st, _, d = n.json("GET", "/e2e/whoami", headers={"Authorization": "Bearer " + token},
                              auth=False)
            self.assertEqual(st, 200, d)
            return d["login"]

        # a one-time password: the account reaches only /auth/, and is nobody here
        st, _, u = n.json("POST", "/admin/users", {"login": "held.one", "name": "Held",
                                                    "department": "root", "roles": []})
        self.assertEqual(st, 201, u)
        st, _, s = n.json("POST", "/auth/login", {"login": "held.one",
                                                   "password": u["one_time_password"]}, auth=False)
        self.assertEqual(st, 200, s)
        self.assertIsNone(whoami(s["token"]))
        st, _, _ = n.json("POST", "/auth/password", {"old_password": u["one_time_password"],
                                                      "new_password": "Another-strong-pw-2"},
                          headers={"Authorization": "Bearer " + s["token"]}, auth=False)
        self.assertEqual(st, 204)
        self.assertEqual(whoami(s["token"]), "held.one")  # once it has its own
        # an API key is its plugin's caller only
        for plugin, want in (("hello", None), ("e2e", "lua-key-e2e")):
            st, _, k = n.json("POST", "/admin/keys", {"name": "lua-key-" + plugin, "plugin": plugin,
                                                       "role": "user"})
            self.assertEqual(st, 201, k)
            self.assertEqual(whoami(k["key"]), want)

    def test_returning_a_table_is_json(self):
        st, h, b = self.shared.request("GET", "/e2e/table")
        self.assertEqual(st, 200, b)
        self.assertTrue(h["content-type"].startswith("application/json"), h)
        self.assertEqual(
            json.loads(b), {"name": "zhengtong", "list": [1, 2, 3], "nested": {"a": "b"}}
        )

    def test_string_body_and_headers(self):
        st, h, b = self.shared.request("GET", "/e2e/text")
        self.assertEqual(st, 200, b)
        self.assertEqual(b, b"plain words")
        self.assertTrue(h["content-type"].startswith("text/plain"), h)
        self.assertEqual(h.get("x-e2e"), "yes")

    def test_node_headers_are_sent_once(self):
        # a plugin's own headers travel beside the node's, which appear exactly once
        with self.shared.rawconn() as c:
            c.send(b"GET /e2e/text HTTP/1.1\r\nHost: e2e\r\n\r\n")
            r = c.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header_all("x-e2e"), ["yes"])
        for name in ("content-length", "content-type", "date", "x-request-id", "x-content-type-options"):
            self.assertEqual(len(r.header_all(name)), 1, r.raw_headers)
        # signed in (rawconn's token): what it is told may be personal, no cache keeps it
        self.assertEqual(r.header_all("cache-control"), ["no-store"])
        # a handler that says how its answer may be cached is believed, and only it is sent
        with self.shared.rawconn() as c:
            c.send(b"GET /e2e/cached HTTP/1.1\r\nHost: e2e\r\n\r\n")
            r = c.response()
        self.assertEqual((r.status, r.header_all("cache-control")), (200, ["public, max-age=60"]))
        # nosniff is the node's to say, as the other headers it writes
        self.assertEqual(self.shared.request("GET", "/e2e/sniff")[0], 500)

    def kv_get(self, k):
        st, h, b = self.shared.request("GET", "/e2e/kv/" + k)
        return st, (json.loads(b).get("value") if st == 200 else None)

    def test_storage_write_and_read(self):
        st, _, b = self.shared.request("PUT", "/e2e/kv/alpha", b"first value")
        self.assertEqual(st, 204, b)
        self.assertEqual(self.kv_get("alpha"), (200, "first value"))
        self.assertEqual(self.kv_get("never-written")[0], 404)

    def test_failed_handler_keeps_nothing(self):
        for route, status in (("kv-fail", 500), ("kv-problem", 409), ("kv-loop", 500)):
            with self.subTest(route=route):
                key = "lost-" + route
                st, h, b = self.shared.request("PUT", "/e2e/%s/%s" % (route, key), b"must not stay",
                                               timeout=20)
                self.assertProblem(st, h, b, status)
                self.assertEqual(self.kv_get(key)[0], 404, "the failed handler's write was kept")

    def test_failure_in_a_batch_leaves_the_others(self):
        # three writes pipelined: they share a batch; the middle one fails
        wire = b""
        for path, body in (("/e2e/kv/b1", b"one"), ("/e2e/kv-fail/b2", b"two"), ("/e2e/kv/b3", b"three")):
            wire += b"PUT %s HTTP/1.1\r\nHost: e2e\r\nContent-Length: %d\r\n\r\n%s" % (
                path.encode(), len(body), body)
        with self.shared.rawconn() as c:
            rs = c.exchange(wire, 3)
        self.assertEqual([r.status for r in rs], [204, 500, 204])
        self.assertEqual(self.kv_get("b1"), (200, "one"))
        self.assertEqual(self.kv_get("b2")[0], 404)
        self.assertEqual(self.kv_get("b3"), (200, "three"))

    def test_problem_from_lua(self):
        st, h, b = self.shared.request("GET", "/e2e/teapot")
        p = self.assertProblem(st, h, b, 418, "teapot")
        self.assertEqual(p["title"], "I am a teapot")
        self.assertEqual(p["detail"], "short and stout")

    def test_failures_are_500_and_the_next_request_is_served(self):
        for path, slug in FAILURES.items():
            with self.subTest(path=path):
                st, h, b = self.shared.request("GET", path, timeout=20)
                p = self.assertProblem(st, h, b, 500, slug)
                # the log has the error raised on purpose, with the request id
                # the log says why, under the request's id
                why = [r for r in self.shared.log_records() if r.get("request_id") == p["request_id"]]
                text = json.dumps(why, ensure_ascii=False)
                self.assertTrue(why, "no log line with request id %s" % p["request_id"])
                if path == "/e2e/error":
                    self.assertIn(MARKER, text)
                if path == "/e2e/loop":
                    self.assertIn("instruction", text)
                if path in ("/e2e/bomb", "/e2e/bigstring"):
                    self.assertIn("memory", text)
                if path == "/e2e/dup-length":
                    self.assertIn("response header 'Content-Length'", text)
                self.ok()
                self.assertEqual(self.shared.request("GET", "/hello")[0], 200)

    def test_state_persists_between_requests(self):
        a = self.ok()
        b = self.ok()
        self.assertEqual(b, a + 1)

    def test_error_is_logged_with_traceback(self):
        st, h, b = self.shared.request("GET", "/e2e/error")
        self.assertEqual(st, 500)
        rid = h["x-request-id"]
        recs = [r for r in self.shared.log_records() if MARKER in json.dumps(r, ensure_ascii=False)]
        self.assertTrue(recs, self.shared.log()[-3000:])
        text = json.dumps(recs, ensure_ascii=False)
        self.assertIn(rid, text)
        self.assertIn("traceback", text)
        self.assertTrue(any(r.get("level") == "error" for r in recs), recs)

    def test_sandbox(self):
        st, h, b = self.shared.request("GET", "/e2e/sandbox")
        self.assertEqual(st, 200, b)
        d = json.loads(b)
        self.assertEqual(d["io"], "nil")
        self.assertEqual(d["os_execute"], "nil")
        self.assertEqual(d["loadfile"], "nil")
        self.assertEqual(d["dofile"], "nil")
        self.assertEqual(d["debug"], "nil")
        self.assertIs(d["require_outside"], False)

    def test_failures_do_not_stop_other_plugins_or_requests_on_one_connection(self):
        for path in FAILURES:
            st, h, b = self.shared.request("GET", path, keep=True, timeout=20)
            self.assertEqual(st, 500, (path, b))
            st, h, b = self.shared.request("GET", "/e2e/ok", keep=True)
            self.assertEqual(st, 200, (path, b))
        st, _, body = self.shared.json("GET", "/healthz")
        self.assertEqual(st, 200)


class LuaLimitsFromConfig(NodeTest):
    """lua.instructions and lua.memory are the config's, not fixed numbers."""

    def test_limits_follow_the_config(self):
        root = tempfile.mkdtemp(prefix="zt-e2e-lua-")
        self.addCleanup(shutil.rmtree, root, True)
        lua_dir = lua_tree_with_e2e(root)
        roomy = self.node(plugins=("e2e",), lua_dir=lua_dir)  # the defaults: 10^7, 64 MiB
        tight = self.node(
            plugins=("e2e",), lua_dir=lua_dir, lua={"instructions": 100000, "memory": 4 << 20}
        )
        # a loop of 10^6 steps (a few million instructions) and an 8 MiB string
        for path in ("/e2e/spin?n=1000000", "/e2e/alloc?mb=8"):
            with self.subTest(path=path):
                st, h, b = roomy.request("GET", path)
                self.assertEqual(st, 200, b)
                st, h, b = tight.request("GET", path)
                self.assertProblem(st, h, b, 500)
        # small work passes under the tight limits too
        self.assertEqual(tight.request("GET", "/e2e/spin?n=1000")[0], 200)
        self.assertEqual(tight.request("GET", "/e2e/alloc?mb=1")[0], 200)


# A plugin with start functions: they count the starts, see each other's writes in order,
# and one of them fails after writing.
START_INIT = "".join(
    [
        'local kv = zt.db.open("kv")\n',
        "zt.at_start(function(ctx)\n"
        '  kv:put("starts", (kv:get("starts") or 0) + 1)\n'
        '  kv:put("ctx", { method = ctx.method, caller = ctx.caller.login })\n'
        "end)\n",
        'zt.at_start(function() kv:put("dropped", true)\n error("e2e-start-fails-9c1d") end)\n',
        'zt.at_start(function() kv:put("second", kv:get("starts")) end)\n',
        lua_route(
            "GET",
            "/e2e/starts",
            'return 200, { starts = kv:get("starts"), ctx = kv:get("ctx"), second = kv:get("second"),\n'
            '  dropped = kv:get("dropped") or false }',
        ),
        lua_route("POST", "/e2e/late", 'zt.at_start(function() end)\nreturn 204'),
    ]
)


class AtStart(NodeTest):
    """zt.at_start: work at each start, committed before the node serves."""

    def test_start_functions_run_in_order_before_serving_and_a_failure_is_dropped(self):
        root = tempfile.mkdtemp(prefix="zt-e2e-lua-")
        self.addCleanup(shutil.rmtree, root, True)
        lua_dir = lua_tree_with(os.path.join(root, "lua"), {"e2e": (lua_manifest(), START_INIT)})
        n = self.node(plugins=("e2e",), lua_dir=lua_dir)
        # the first request answered already sees what they wrote
        st, _, d = n.json("GET", "/e2e/starts")
        self.assertEqual(st, 200, d)
        self.assertEqual(d, {"starts": 1, "ctx": {"method": "START", "caller": "system:e2e"},
                             "second": 1, "dropped": False})
        self.assertIn("e2e-start-fails-9c1d", n.log())
        self.assertIn("zt.at_start failed", n.log())
        n.restart()
        st, _, d = n.json("GET", "/e2e/starts")
        self.assertEqual((d["starts"], d["second"], d["dropped"]), (2, 2, False), d)
        # only during init
        st, _, d = n.json("POST", "/e2e/late")
        self.assertEqual(st, 500, d)
        self.assertIn("zt.at_start: only during init", n.log())


class Notice(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("hello", "notice"))

    def create(self, **fields):
        st, h, d = self.shared.json("POST", "/notices", fields)
        self.assertEqual(st, 201, d)
        self.assertTrue(d.get("id"), d)
        return d

    def test_create_get_delete(self):
        st, _, b = self.shared.json("POST", "/admin/departments", {"code": "slj", "name": "水务局", "parent": "root"})
        self.assertEqual(st, 201, b)
        d = self.create(title="停水通知", body="明日 8:00-12:00 停水", department="水务局", department_code="slj")
        self.assertEqual(d["title"], "停水通知")
        self.assertEqual(d["body"], "明日 8:00-12:00 停水")
        self.assertEqual(d["department"], "水务局")
        st, h, got = self.shared.json("GET", "/notices/" + d["id"])
        self.assertEqual(st, 200, got)
        self.assertEqual(got["id"], d["id"])
        self.assertEqual(got["title"], "停水通知")
        self.assertEqual(got["body"], "明日 8:00-12:00 停水")
        self.assertEqual(got["department"], "水务局")
        st, h, b = self.shared.request("DELETE", "/notices/" + d["id"])
        self.assertEqual(st, 204, b)
        self.assertEqual(b, b"")
        st, h, b = self.shared.request("GET", "/notices/" + d["id"])
        self.assertProblem(st, h, b, 404)
        st, h, b = self.shared.request("DELETE", "/notices/" + d["id"])
        self.assertProblem(st, h, b, 404)

    def test_writes_need_the_editor_role(self):
        st, _, before = self.shared.json("GET", "/notices?limit=100")
        doc = {"title": "not allowed", "body": "b"}
        st, h, b = self.shared.request("POST", "/notices", doc, auth=False)
        self.assertProblem(st, h, b, 401)
        reader = self.shared.new_user("reader%d" % id(self), roles=["some_other_role"])
        st, h, b = self.shared.request("POST", "/notices", doc, reader)
        self.assertProblem(st, h, b, 403)
        st, h, b = self.shared.request("DELETE", "/notices/" + self.create(title="t", body="b")["id"], None, reader)
        self.assertProblem(st, h, b, 403)
        # reading is public
        st, _, after = self.shared.json("GET", "/notices?limit=100", auth=False)
        self.assertEqual(st, 200)
        self.assertNotIn("not allowed", [x["title"] for x in after["items"]])

    def test_editors_publish_and_withdraw_within_their_department(self):
        n = self.shared
        for code, name, parent in (("jyj", "教育局", "root"), ("jyj-jc", "教材科", "jyj"), ("swj", "swj", "root")):
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": name, "parent": parent})
            self.assertEqual(st, 201, d)
        edu = n.new_user("edu.editor", roles=["notice_editor"], department="jyj")
        st, _, mine = n.json("POST", "/notices", {"title": "开学", "body": "b"}, edu, auth=False)
        self.assertEqual(st, 201, mine)
        self.assertEqual((mine["department_code"], mine["published_by"]), ("jyj", "edu.editor"))
        # the editor's login is for staff: readers see the department
        st, _, pub = n.json("GET", "/notices/" + mine["id"], auth=False)
        self.assertEqual((st, pub["department_code"]), (200, "jyj"))
        self.assertNotIn("published_by", pub)
        st, _, lst = n.json("GET", "/notices?limit=100", auth=False)
        self.assertFalse([x for x in lst["items"] if "published_by" in x])
        st, _, staff = n.json("GET", "/notices/" + mine["id"], headers=edu, auth=False)
        self.assertEqual(staff["published_by"], "edu.editor")
        st, _, below = n.json("POST", "/notices", {"title": "教材", "body": "b", "department_code": "jyj-jc"},
                              edu, auth=False)
        self.assertEqual((st, below.get("department_code")), (201, "jyj-jc"), below)
        for other in ("swj", "root", "nowhere"):
            st, h, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department_code": other},
                                 edu, auth=False)
            self.assertProblem(st, h, b, 403)
        st, h, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department_code": 7}, edu, auth=False)
        self.assertProblem(st, h, b, 422)
        # the name readers see is the issuing department's own, never a text of the
        # editor's choosing (the county government's name on the bureau's notice)
        st, h, b = n.request("POST", "/notices", {"title": "t", "body": "b", "department": "县人民政府"},
                             edu, auth=False)
        p = self.assertProblem(st, h, b, 422, "invalid-notice")
        self.assertIn("教育局", p["detail"])
        st, _, named = n.json("POST", "/notices", {"title": "开学", "body": "b", "department": "教育局"},
                              edu, auth=False)
        self.assertEqual((st, named.get("department")), (201, "教育局"), named)
        self.assertEqual(below["department"], "教材科")
        self.assertEqual(n.request("DELETE", "/notices/" + named["id"], None, edu, auth=False)[0], 204)
        water = self.create(title="停水", body="b", department_code="swj")  # by admin, in root
        st, h, b = n.request("DELETE", "/notices/" + water["id"], None, edu, auth=False)
        self.assertProblem(st, h, b, 403)
        self.assertEqual(n.json("GET", "/notices/" + water["id"])[0], 200)  # still there
        self.assertEqual(n.request("DELETE", "/notices/" + below["id"], None, edu, auth=False)[0], 204)
        self.assertEqual(n.request("DELETE", "/notices/" + mine["id"])[0], 204)  # admin: above all
        self.assertEqual(n.request("DELETE", "/notices/" + water["id"])[0], 204)

    def test_a_labelled_notice_is_for_those_cleared(self):
        """安全标记: an internal notice is read by staff cleared for internal, not by everyone."""
        n = self.shared
        editor = n.new_user("lbl.editor", roles=["notice_editor"])  # internal: the default
        citizen_pw = "Another-strong-pw-2"
        st, _, d = n.json("POST", "/auth/register", {"kind": "citizen", "login": "lbl.citizen", "name": "C",
                                                     "password": citizen_pw}, auth=False)
        self.assertEqual(st, 201, d)
        citizen = {"Authorization": "Bearer " + n.login("lbl.citizen", citizen_pw)[2]["token"]}
        st, _, internal = n.json("POST", "/notices", {"title": "内部通知", "body": "b", "label": "internal"},
                                 editor, auth=False)
        self.assertEqual((st, internal.get("label")), (201, "internal"), internal)
        st, _, public = n.json("POST", "/notices", {"title": "公告", "body": "b"}, editor, auth=False)
        self.assertEqual((st, public.get("label")), (201, None), public)
        listed = lambda h, auth: [x["id"] for x in n.json("GET", "/notices?limit=100", headers=h, auth=auth)[2]["items"]]
        for who, h, auth in (("anyone", None, False), ("a citizen", citizen, False)):
            with self.subTest(who=who):
                self.assertIn(public["id"], listed(h, auth))
                self.assertNotIn(internal["id"], listed(h, auth))
                st, hd, b = n.request("GET", "/notices/" + internal["id"], headers=h, auth=auth)
                self.assertProblem(st, hd, b, 404, "not-found")  # as if there were none
        self.assertIn(internal["id"], listed(editor, False))
        self.assertEqual(n.json("GET", "/notices/" + internal["id"], headers=editor, auth=False)[0], 200)
        # pages count what the reader sees: one a page, the internal one passed over
        st, _, page = n.json("GET", "/notices?limit=1&before=" + public["id"], auth=False)
        self.assertNotIn(internal["id"], [x["id"] for x in page["items"]])
        # an editor publishes only what they may read, with a label of the node's
        st, h, b = n.request("POST", "/notices", {"title": "t", "body": "b", "label": "sensitive"}, editor,
                             auth=False)
        self.assertIn("you are cleared for internal, not sensitive", self.assertProblem(st, h, b, 403)["detail"])
        for bad in ("secret", 3):
            st, h, b = n.request("POST", "/notices", {"title": "t", "body": "b", "label": bad}, editor, auth=False)
            p = self.assertProblem(st, h, b, 422, "invalid-notice")
            self.assertIn("label, if given, must be one of public, internal, sensitive", p["detail"])

    def test_a_notice_of_no_department_is_its_publishers_to_withdraw(self):
        n = self.shared
        st, _, k = n.json("POST", "/admin/keys", {"name": "board-feed", "plugin": "notice",
                                                   "role": "notice_editor"})
        self.assertEqual(st, 201, k)
        feed = {"Authorization": "Bearer " + k["key"]}
        st, _, made = n.json("POST", "/notices", {"title": "停电", "body": "b"}, feed, auth=False)
        self.assertEqual((st, made.get("department_code")), (201, None), made)
        other = n.new_user("any.editor", roles=["notice_editor"], department="root")
        st, h, b = n.request("DELETE", "/notices/" + made["id"], None, other, auth=False)
        self.assertIn("who published it, or an administrator", self.assertProblem(st, h, b, 403)["detail"])
        self.assertEqual(n.request("DELETE", "/notices/" + made["id"], None, feed, auth=False)[0], 204)
        st, _, again = n.json("POST", "/notices", {"title": "停电", "body": "b"}, feed, auth=False)
        self.assertEqual(n.request("DELETE", "/notices/" + again["id"])[0], 204)  # admin

    def test_department_is_optional(self):
        d = self.create(title="t", body="b")
        st, _, got = self.shared.json("GET", "/notices/" + d["id"])
        self.assertEqual(st, 200)
        self.assertEqual(got["title"], "t")

    def test_ids_are_unique_and_time_ordered(self):
        ids = [self.create(title="order %d" % i, body="b")["id"] for i in range(5)]
        self.assertEqual(len(set(ids)), 5)
        self.assertEqual(ids, sorted(ids))

    def test_list_pages_newest_first(self):
        made = [self.create(title="page %d" % i, body="b")["id"] for i in range(7)]
        seen = []
        st, _, page = self.shared.json("GET", "/notices?limit=3")
        self.assertEqual(st, 200, page)
        pages = 0
        while True:
            pages += 1
            self.assertLessEqual(len(page["items"]), 3)
            seen += [x["id"] for x in page["items"]]
            nxt = page.get("next")
            if not nxt or pages > 50:
                break
            st, _, page = self.shared.json("GET", "/notices?limit=3&before=%s" % nxt)
            self.assertEqual(st, 200, page)
        self.assertEqual(len(seen), len(set(seen)), "an item on two pages")
        self.assertEqual(seen, sorted(seen, reverse=True), "not newest first")
        # everything made here is listed, in reverse order of creation
        mine = [i for i in seen if i in made]
        self.assertEqual(mine, list(reversed(made)))
        # the first page holds the newest ones
        st, _, first = self.shared.json("GET", "/notices?limit=2")
        self.assertEqual([x["id"] for x in first["items"]], seen[:2])

    def test_deleted_notice_is_not_listed(self):
        d = self.create(title="to delete", body="b")
        self.assertEqual(self.shared.request("DELETE", "/notices/" + d["id"])[0], 204)
        st, _, page = self.shared.json("GET", "/notices?limit=100")
        self.assertNotIn(d["id"], [x["id"] for x in page["items"]])

    def test_invalid_notices(self):
        bad = [
            {"body": "no title"},
            {"title": "no body"},
            {"title": 12, "body": "title not a string"},
            {"title": "t", "body": ["not", "a", "string"]},
            {"title": "t", "body": "b", "department": 7},
            [],
            "just a string",
        ]
        st, _, before = self.shared.json("GET", "/notices?limit=100")
        for doc in bad:
            with self.subTest(doc=doc):
                st, h, b = self.shared.request("POST", "/notices", json.dumps(doc).encode(),
                                               {"Content-Type": "application/json"})
                self.assertProblem(st, h, b, 422, "invalid-notice")
        st, _, after = self.shared.json("GET", "/notices?limit=100")
        self.assertEqual(before["items"], after["items"], "an invalid notice was stored")

    def test_not_json(self):
        st, h, b = self.shared.request("POST", "/notices", b"{title: oops", {"Content-Type": "application/json"})
        self.assertIn(st, (400, 422), b)
        self.assertProblem(st, h, b, st)

    def test_unknown_id(self):
        st, h, b = self.shared.request("GET", "/notices/00000000000000000000000000")
        self.assertProblem(st, h, b, 404)

    def test_bad_limit(self):
        for q in ("limit=0", "limit=-1", "limit=abc", "limit=100000"):
            with self.subTest(q=q):
                st, h, b = self.shared.request("GET", "/notices?" + q)
                if st == 200:  # clamped: then never more than a sane page
                    self.assertLessEqual(len(json.loads(b)["items"]), 1000)
                else:
                    self.assertProblem(st, h, b, st)
                    self.assertIn(st, (400, 422))


class NoticeOptions(NodeTest):
    def test_page_size_option(self):
        n = self.node(plugins=("hello", "notice"), options="notice = { page_size = 2 }")
        for i in range(3):
            st, _, d = n.json("POST", "/notices", {"title": "n%d" % i, "body": "b"})
            self.assertEqual(st, 201, d)
        st, _, page = n.json("GET", "/notices")
        self.assertEqual(st, 200)
        self.assertEqual(len(page["items"]), 2)
        self.assertTrue(page.get("next"))
        st, _, rest = n.json("GET", "/notices?before=" + page["next"])
        self.assertEqual([x["title"] for x in rest["items"]], ["n0"])


if __name__ == "__main__":
    unittest.main()
