# test_workflow.py: the workflow engine plugin over HTTP: joins, returns, delegation,
# deadlines across a restart, versions, concurrent completion, events, to-do order, stats.
import datetime
import json
import math
import os
import threading
import time
import unittest

from workcal import DAY, HOUR, add_workdays, beijing_date, is_workday, sub_work_hours, work_between
from ztnode import NodeTest, credit_code, edit_db, lua_manifest, lua_tree_with, run, wait_for

TEST_CLOCK = {"ZT_TEST_CLOCK": "1"}
# sessions that outlive the clock moves of these tests (and the cheapest password hashing)
AUTH = {"password_ops": 1, "password_memory": 8192, "session_ttl": 366 * 86400,
        "idle_timeout": 366 * 86400}

# ---- definitions the tests run ------------------------------------------------------

DEFS = {
    # A, then B and C in parallel, then the end: the benchmark's shape
    "par": """
return { name = "par", title = "parallel", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "a" },
    a = { type = "user", role = "clerk", department = "d1", next = "fork" },
    fork = { type = "split", next = { "b", "c" } },
    b = { type = "user", role = "reviewer", department = "d1", next = "j" },
    c = { type = "user", role = "reviewer", department = "d2", next = "j" },
    j = { type = "join", need = "all", next = "e" },
    e = { type = "end", result = "done" },
  } }
""",
    # three signers, two suffice (会签 N of M), then a clerk
    "nofm": """
return { name = "nofm", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "fork" },
    fork = { type = "split", next = { "x", "y", "z" } },
    x = { type = "user", role = "signer", next = "j" },
    y = { type = "user", role = "signer", next = "j" },
    z = { type = "user", role = "signer", next = "j" },
    j = { type = "join", need = 2, next = "after" },
    after = { type = "user", role = "clerk", next = "e" },
    e = { type = "end" },
  } }
""",
    # one task per department listed in the data; two of them suffice
    "multi": """
return { name = "multi", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "sign" },
    sign = { type = "user", role = "reviewer", need = 2,
             multi = function(i) return i.data.depts end, next = "e" },
    e = { type = "end" },
  } }
""",
    "ret": """
return { name = "ret", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "a" },
    a = { type = "user", role = "clerk", next = "b" },
    b = { type = "user", role = "reviewer", department = "d1", next = "e" },
    e = { type = "end" },
  } }
""",
    "deadline": """
return { name = "deadline", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1",
          deadline = { days = 2 }, remind_before = { hours = 4 }, escalate_to = "boss",
          next = "e" },
    e = { type = "end" },
  } }
""",
    "calc": """
return { name = "calc", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "add" },
    add = { type = "service", next = "gw",
            fn = function(i, ctx) i.data.total = i.data.a + i.data.b end },
    gw = { type = "gateway", default = "small",
           conditions = { { when = function(i) return i.data.total > 10 end, next = "big" } } },
    big = { type = "end", result = "big" },
    small = { type = "end", result = "small" },
  } }
""",
    # the service task fails after a user task of the other branch was made
    "boom": """
return { name = "boom", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "fork" },
    fork = { type = "split", next = { "a", "bad" } },
    a = { type = "user", role = "clerk", next = "j" },
    bad = { type = "service", fn = function() error("boom") end, next = "j" },
    j = { type = "join", next = "e" },
    e = { type = "end" },
  } }
""",
    # a user task, then a service task that fails: completing the task fails whole
    "late": """
return { name = "late", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", next = "bad" },
    bad = { type = "service", fn = function() error("late boom") end, next = "e" },
    e = { type = "end" },
  } }
""",
    "todo": """
return { name = "todo", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "gw" },
    gw = { type = "gateway", default = "t0", conditions = {
      { when = function(i) return i.data.kind == "d1" end, next = "t1" },
      { when = function(i) return i.data.kind == "d5" end, next = "t5" } } },
    t1 = { type = "user", role = "clerk", deadline = { days = 1 }, next = "e" },
    t5 = { type = "user", role = "clerk", deadline = { days = 5 }, next = "e" },
    t0 = { type = "user", role = "clerk", next = "e" },
    e = { type = "end" },
  } }
""",
    "dated": """
return { name = "dated", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1", next = "e",
          deadline = function(i) return i.data.due end,
          escalate_to = function(i) return i.data.escalate end },
    e = { type = "end" },
  } }
""",
    # a script fails when a task is completed
    "boom2": """
return { name = "boom2", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1", next = "bad" },
    bad = { type = "service", fn = function() error("boom after the task") end, next = "e" },
    e = { type = "end" },
  } }
""",
    "plain": """
return { name = "plain", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1", next = "e" },
    e = { type = "end" },
  } }
""",
    # the data steers it (the gateway reads route): the clerk fills in note and amount, the
    # reviewer nothing
    "formed": """
return { name = "formed", starters = { "user" }, start = "s",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1", form = { "note", "amount" }, next = "r" },
    r = { type = "user", role = "reviewer", department = "d1", form = {}, next = "gw" },
    gw = { type = "gateway", default = "normal",
           conditions = { { when = function(i) return i.data.route == "fast" end, next = "fast" } } },
    normal = { type = "end", result = "normal" },
    fast = { type = "end", result = "fast" },
  } }
""",
}

# A Lua plugin that records every workflow.* event it is delivered, in order.
SPY_INIT = """
local seen = zt.db.open("seen")
zt.on("workflow.**", function(ev, ctx)
  local n = (seen:get("n") or 0) + 1
  seen:put("n", n)
  seen:put(string.format("e%08d", n), { topic = ev.topic, payload = ev.payload })
end)
-- calls a workflow service as another plugin would, and copes with its failure
zt.route("POST", "/wfspy/call", { role = "user" }, function(req)
  local b = req:json()
  local r, msg, code = zt.call(b.service, b.args)
  return 200, { ok = r ~= nil, code = code or zt.json.null }
end)
zt.route("GET", "/wfspy/events", { role = "public" }, function(req)
  local out = zt.json.array()
  for _, v in seen:iter{ prefix = "e" } do out[#out + 1] = v end
  return 200, { items = out }
end)
"""


def write_defs(lua_dir, defs):
    d = os.path.join(lua_dir, "workflows")
    os.makedirs(d, exist_ok=True)
    for name, text in defs.items():
        with open(os.path.join(d, name + ".lua"), "w") as f:
            f.write(text)


def make_lua_dir(base, defs=DEFS, spy=True):
    lua_dir = os.path.join(base, "lua")
    plugins = {"wfspy": (lua_manifest(requires=("workflow",)), SPY_INIT)} if spy else {}
    lua_tree_with(lua_dir, plugins)
    # the shipped examples stay; the tests' own definitions go beside them
    write_defs(lua_dir, defs)
    return lua_dir


class WorkflowTest(NodeTest):
    @classmethod
    def setUpClass(cls):
        import tempfile

        cls.base = tempfile.mkdtemp(prefix="zt-wf-")
        cls.lua_dir = make_lua_dir(cls.base)
        n = cls.shared_node(
            plugins=("workflow", "wfspy"),
            lua_dir=cls.lua_dir,
            roles=("workflow_supervisor",),
            env=TEST_CLOCK,
            auth=AUTH,
        )
        for code, parent in (("d1", "root"), ("d2", "root")):
            st, _, b = n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": parent})
            assert st in (200, 201), (st, b)
        cls.users = {}
        for login, roles, dept in (
            ("clerk1", ("clerk",), "d1"),
            ("clerk2", ("clerk",), "d1"),
            ("rev1", ("reviewer",), "d1"),
            ("rev2", ("reviewer",), "d2"),
            ("sign1", ("signer",), "d1"),
            ("sign2", ("signer",), "d1"),
            ("sign3", ("signer",), "d2"),
            ("boss", ("boss",), "d1"),
            ("outsider", (), "d2"),
        ):
            cls.users[login] = n.new_user(login, roles, dept)

    @classmethod
    def tearDownClass(cls):
        import shutil

        shutil.rmtree(cls.base, ignore_errors=True)

    # ---- helpers --------------------------------------------------------------------

    def as_(self, login, method, path, body=None):
        n = self.shared
        return n.json(method, path, body, headers=self.users[login], auth=False)

    def start(self, definition, data=None, key=None, priority=None, login=None):
        body = {"definition": definition, "data": data or {}}
        if key:
            body["business_key"] = key
        if priority is not None:
            body["priority"] = priority
        if login:
            st, _, d = self.as_(login, "POST", "/workflow/instances", body)
        else:
            st, _, d = self.shared.json("POST", "/workflow/instances", body)
        self.assertEqual(st, 201, d)
        return d

    def open_tasks(self, inst_id):
        st, _, d = self.shared.json("GET", "/workflow/instances/" + inst_id)
        self.assertEqual(st, 200, d)
        out = []
        for tid in d["open_tasks"]:
            st, _, t = self.shared.json("GET", "/workflow/tasks/" + tid)
            self.assertEqual(st, 200, t)
            out.append(t)
        return d, out

    def task_at(self, inst_id, node):
        _, tasks = self.open_tasks(inst_id)
        found = [t for t in tasks if t["node"] == node]
        self.assertEqual(len(found), 1, tasks)
        return found[0]

    def assertScriptFailed(self, st, h, d, *words):
        """500 workflow-script-failed: the client is told where to look, not the script's
        error and its traceback, which the log has under the request id."""
        p = self.assertProblem(st, h, json.dumps(d).encode(), 500, "workflow-script-failed")
        self.assertEqual(p["detail"], "the workflow's definition or script failed; see the log "
                         "with request id %s" % p["request_id"])
        recs = [r for r in self.shared.log_records() if r.get("request_id") == p["request_id"]]
        text = json.dumps(recs, ensure_ascii=False)
        for w in words:
            self.assertIn(w, text)
        return text

    def act(self, login, task_id, action, body=None, want=200):
        st, h, d = self.as_(login, "POST", "/workflow/tasks/%s/%s" % (task_id, action), body or {})
        self.assertEqual(st, want, d)
        return d

    def instance(self, inst_id):
        st, _, d = self.shared.json("GET", "/workflow/instances/" + inst_id)
        self.assertEqual(st, 200, d)
        return d

    def events(self):
        st, _, d = self.shared.json("GET", "/wfspy/events", auth=False)
        self.assertEqual(st, 200, d)
        return d["items"]

    def wait_events(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events()
            if pred(ev):
                return ev
            if time.monotonic() > deadline:
                self.fail("events never showed %s; got %s" % (what, json.dumps(ev)[-3000:]))
            time.sleep(0.05)

    # ---- parallel split and join ---------------------------------------------------

    def test_parallel_join_all(self):
        inst = self.start("par", key="P-1")
        self.assertEqual([t["node"] for t in inst["tasks"]], ["a"])
        a = self.task_at(inst["id"], "a")
        self.act("clerk1", a["id"], "complete", {"decision": "ok", "opinion": "同意"})
        d, tasks = self.open_tasks(inst["id"])
        self.assertEqual(sorted(t["node"] for t in tasks), ["b", "c"])
        b = next(t for t in tasks if t["node"] == "b")
        c = next(t for t in tasks if t["node"] == "c")
        # rev2 is in d2: not b's department
        self.act("rev2", b["id"], "complete", want=403)
        self.act("rev1", b["id"], "complete", {"opinion": "b ok"})
        d = self.instance(inst["id"])
        self.assertEqual(d["state"], "running")  # c is still open: the join waits
        self.assertEqual(d["open_tasks"], [c["id"]])
        self.act("rev2", c["id"], "complete", {"opinion": "c ok"})
        d = self.instance(inst["id"])
        self.assertEqual(d["state"], "completed")
        self.assertEqual(d["result"], "done")
        self.assertEqual(d["open_tasks"], [])
        self.assertEqual(d["decisions"], {"a": "ok"})
        st, _, h = self.shared.json("GET", "/workflow/instances/%s/history" % inst["id"])
        self.assertEqual(st, 200, h)
        steps = [(s["action"], s.get("node"), s["actor"]) for s in h["items"]]
        self.assertEqual(steps[0][0], "start")
        self.assertIn(("complete", "a", "clerk1"), steps)
        self.assertIn(("complete", "b", "rev1"), steps)
        self.assertIn(("complete", "c", "rev2"), steps)
        self.assertEqual(steps[-1][:2], ("end", "e"))
        op = next(s for s in h["items"] if s.get("node") == "a" and s["action"] == "complete")
        self.assertEqual(op["opinion"], "同意")
        self.assertEqual(op["decision"], "ok")

    def test_join_n_of_m_cancels_the_rest(self):
        inst = self.start("nofm")
        _, tasks = self.open_tasks(inst["id"])
        self.assertEqual(sorted(t["node"] for t in tasks), ["x", "y", "z"])
        by = {t["node"]: t for t in tasks}
        self.act("sign1", by["x"]["id"], "complete", {"decision": "sign"})
        d = self.instance(inst["id"])
        self.assertEqual(len(d["open_tasks"]), 2)
        self.act("sign3", by["z"]["id"], "complete", {"decision": "sign"})
        # two of three: y is cancelled, the clerk's task is open
        _, tasks = self.open_tasks(inst["id"])
        self.assertEqual([t["node"] for t in tasks], ["after"])
        st, _, y = self.shared.json("GET", "/workflow/tasks/" + by["y"]["id"])
        self.assertEqual(y["state"], "cancelled")
        self.act("sign2", by["y"]["id"], "complete", want=409)
        self.act("clerk1", tasks[0]["id"], "complete")
        self.assertEqual(self.instance(inst["id"])["state"], "completed")

    def test_one_person_gives_one_of_the_opinions_a_join_counts(self):
        inst = self.start("nofm")
        _, tasks = self.open_tasks(inst["id"])
        by = {t["node"]: t for t in tasks}
        self.act("sign1", by["x"]["id"], "complete", {"decision": "sign"})
        # sign1 may act on y (a signer), but a second signature of theirs is not a second
        d = self.act("sign1", by["y"]["id"], "complete", {"decision": "sign"}, want=409)
        self.assertEqual(d["type"], "/problems/already-signed", d)
        self.assertIn("sign1 has completed another branch that joins at 'j'", d["detail"])
        self.assertEqual(self.task_at(inst["id"], "y")["state"], "open")  # nothing kept
        self.act("sign2", by["y"]["id"], "complete", {"decision": "sign"})
        _, tasks = self.open_tasks(inst["id"])
        self.assertEqual([t["node"] for t in tasks], ["after"])

    def test_one_person_gives_one_of_a_countersigns_opinions(self):
        n = self.shared
        self.users["rev_county"] = n.new_user("rev_county", ("reviewer",), "root")  # all within root
        inst = self.start("multi", {"depts": ["d1", "d2", "root"]})
        _, tasks = self.open_tasks(inst["id"])
        by = {t["department"]: t for t in tasks}
        self.act("rev_county", by["d1"]["id"], "complete", {"decision": "approve"})
        d = self.act("rev_county", by["d2"]["id"], "complete", {"decision": "approve"}, want=409)
        self.assertEqual(d["type"], "/problems/already-signed", d)
        self.assertIn("node 'sign''s tasks", d["detail"])
        self.assertEqual(self.instance(inst["id"])["state"], "running")
        self.act("rev2", by["d2"]["id"], "complete", {"decision": "approve"})
        self.assertEqual(self.instance(inst["id"])["state"], "completed")

    def test_multi_instance_countersign(self):
        inst = self.start("multi", {"depts": ["d1", "d2", "root"]})
        _, tasks = self.open_tasks(inst["id"])
        self.assertEqual(sorted(t["department"] for t in tasks), ["d1", "d2", "root"])
        by = {t["department"]: t for t in tasks}
        self.act("rev2", by["d1"]["id"], "complete", want=403)
        self.act("rev1", by["d1"]["id"], "complete", {"decision": "approve"})
        self.assertEqual(self.instance(inst["id"])["state"], "running")
        self.act("rev2", by["d2"]["id"], "complete", {"decision": "approve"})
        d = self.instance(inst["id"])
        self.assertEqual(d["state"], "completed")
        st, _, t = self.shared.json("GET", "/workflow/tasks/" + by["root"]["id"])
        self.assertEqual(t["state"], "cancelled")

    # ---- return, delegate, claim, withdraw ------------------------------------------

    def test_return_to_an_earlier_node(self):
        inst = self.start("ret")
        a = self.task_at(inst["id"], "a")
        self.act("clerk1", a["id"], "complete", {"form": {"amount": 5}})
        b = self.task_at(inst["id"], "b")
        # only nodes already passed: not b itself's successors, not unknown ones
        d = self.act("rev1", b["id"], "return", {"node": "e"}, want=422)
        d = self.act("rev1", b["id"], "return", {"node": "nosuch"}, want=422)
        d = self.act("rev1", b["id"], "return", {"node": "a", "opinion": "材料不全"})
        self.assertEqual((d["state"], d["done_by"]), ("cancelled", "rev1"))
        a2 = self.task_at(inst["id"], "a")
        self.assertNotEqual(a2["id"], a["id"])
        st, _, old_b = self.shared.json("GET", "/workflow/tasks/" + b["id"])
        self.assertEqual(old_b["state"], "cancelled")
        self.act("clerk2", a2["id"], "complete", {"form": {"amount": 7}})
        b2 = self.task_at(inst["id"], "b")
        self.act("rev1", b2["id"], "complete")
        d = self.instance(inst["id"])
        self.assertEqual(d["state"], "completed")
        self.assertEqual(d["data"]["amount"], 7)
        st, _, h = self.shared.json("GET", "/workflow/instances/%s/history" % inst["id"])
        ret = [s for s in h["items"] if s["action"] == "return"]
        self.assertEqual(len(ret), 1)
        self.assertEqual((ret[0]["node"], ret[0]["actor"], ret[0]["opinion"]), ("b", "rev1", "材料不全"))

    def test_a_task_sets_only_the_data_its_form_lists(self):
        # a completion's form was merged into the data whatever it held: the handler of one
        # task could rewrite what the definition's routing reads (here the gateway's route)
        inst = self.start("formed", {"route": "normal"})
        t = self.task_at(inst["id"], "t")
        d = self.act("clerk1", t["id"], "complete", {"form": {"note": "ok", "route": "fast"}}, want=422)
        self.assertIn("form.route: task 't' takes only note, amount", d["detail"])
        self.assertEqual(self.task_at(inst["id"], "t")["state"], "open")
        self.assertEqual(self.instance(inst["id"])["data"], {"route": "normal"})
        self.act("clerk1", t["id"], "complete", {"form": {"note": "材料齐全", "amount": 3}})
        r = self.task_at(inst["id"], "r")
        for form in ({"route": "fast"}, {"note": "changed"}):
            d = self.act("rev1", r["id"], "complete", {"form": form}, want=422)
            self.assertIn("form.%s: task 'r' takes no form" % list(form)[0], d["detail"])
        self.act("rev1", r["id"], "complete", {"form": {}, "opinion": "同意"})
        d = self.instance(inst["id"])
        self.assertEqual((d["state"], d["result"]), ("completed", "normal"))
        self.assertEqual(d["data"], {"route": "normal", "note": "材料齐全", "amount": 3})
        # the definition shows what each task takes; one without form takes any field
        st, _, defn = self.shared.json("GET", "/workflow/definitions/formed")
        self.assertEqual(st, 200, defn)
        forms = {x["id"]: x.get("form") for x in defn["nodes"] if x["type"] == "user"}
        self.assertEqual(forms, {"t": ["note", "amount"], "r": []})
        st, _, defn = self.shared.json("GET", "/workflow/definitions/plain")
        self.assertNotIn("form", [k for x in defn["nodes"] for k in x])

    def test_delegate_and_claim(self):
        inst = self.start("plain")
        t = self.task_at(inst["id"], "t")
        self.act("outsider", t["id"], "claim", want=403)
        d = self.act("clerk1", t["id"], "claim")
        self.assertEqual(d["assignee"], "clerk1")
        self.act("clerk2", t["id"], "complete", want=403)  # claimed by clerk1 now
        self.act("clerk1", t["id"], "delegate", {}, want=400)
        d = self.act("clerk1", t["id"], "delegate", {"to": "clerk2", "opinion": "请代办"})
        self.assertEqual((d["assignee"], d["delegated_by"]), ("clerk2", "clerk1"))
        self.act("clerk1", t["id"], "complete", want=403)
        st, _, todo = self.as_("clerk2", "GET", "/workflow/tasks")
        self.assertIn(t["id"], [x["id"] for x in todo["items"]])
        self.act("clerk2", t["id"], "complete", {"opinion": "已办"})
        self.assertEqual(self.instance(inst["id"])["state"], "completed")

    def test_a_task_goes_only_to_someone_who_may_handle_it(self):
        n = self.shared
        inst = self.start("plain")
        t = self.task_at(inst["id"], "t")  # role clerk, department d1
        self.act("clerk1", t["id"], "claim")
        n.new_user("clerk_d2", ("clerk",), "d2")
        h = n.new_user("clerk_gone", ("clerk",), "d1")
        uid = n.json("GET", "/auth/me", headers=h, auth=False)[2]["id"]
        self.assertEqual(n.json("PATCH", "/admin/users/" + uid, {"disabled": True})[0], 200)
        st, _, d = n.json("POST", "/auth/register", {"kind": "citizen", "login": "wf.citizen",
                                                     "name": "Citizen", "password": "Another-strong-pw-2"},
                          auth=False)
        self.assertEqual(st, 201, d)
        for to, why in (
            ("no.such.login", "is not the login of an active staff account"),
            ("wf.citizen", "is not the login of an active staff account"),
            ("clerk_gone", "is not the login of an active staff account"),
            ("outsider", "needs the role clerk"),
            ("boss", "needs the role clerk"),
            ("clerk_d2", "department d1, which is not within theirs (d2)"),
        ):
            with self.subTest(to=to):
                d = self.act("clerk1", t["id"], "delegate", {"to": to}, want=422)
                self.assertEqual(d["type"], "/problems/invalid-delegate", d)
                self.assertIn(why, d["detail"])
        self.assertEqual(self.task_at(inst["id"], "t")["assignee"], "clerk1")  # still
        d = self.act("clerk1", t["id"], "delegate", {"to": "clerk2"})
        self.assertEqual(d["assignee"], "clerk2")

    def test_withdraw_only_while_untouched(self):
        inst = self.start("plain", login="clerk1")
        st, _, d = self.as_("clerk2", "POST", "/workflow/instances/%s/withdraw" % inst["id"], {})
        self.assertEqual(st, 403, d)
        st, _, d = self.as_("clerk1", "POST", "/workflow/instances/%s/withdraw" % inst["id"], {})
        self.assertEqual(st, 200, d)
        self.assertEqual(d["state"], "withdrawn")
        t = inst["tasks"][0]
        self.act("clerk1", t["id"], "complete", want=409)
        inst = self.start("plain", login="clerk1")
        self.act("clerk2", inst["tasks"][0]["id"], "claim")
        st, h, d = self.as_("clerk1", "POST", "/workflow/instances/%s/withdraw" % inst["id"], {})
        self.assertEqual(st, 409, d)
        self.assertEqual(self.instance(inst["id"])["state"], "running")

    def test_an_http_start_is_in_the_callers_department(self):
        # the shipped leave request goes to the head of the requester's department: the
        # requester must not send it to a head of their choosing (another department's,
        # or one below their own) by naming a department in the body or the data
        n = self.shared
        heads = {d: n.new_user("head_" + d, ("dept_head",), d) for d in ("d1", "d2")}
        for body in ({"department": "d2"}, {"data": {"department": "d2", "days": 1}}):
            st, _, d = self.as_("clerk1", "POST", "/workflow/instances", dict(body, definition="leave"))
            self.assertEqual(st, 403, d)
            self.assertEqual(d["type"], "/problems/forbidden")
            self.assertIn("your own department", d["detail"])
        st, _, todo = n.json("GET", "/workflow/tasks", headers=heads["d2"], auth=False)
        self.assertEqual([t for t in todo["items"] if t["definition"] == "leave"], [])
        # its own department, named or not, is what it always was
        for body in ({}, {"department": "d1"}, {"data": {"department": "d1", "days": 1}}):
            st, _, d = self.as_("clerk1", "POST", "/workflow/instances", dict(body, definition="leave"))
            self.assertEqual(st, 201, d)
            self.assertEqual(d["department"], "d1")
            self.assertEqual([t["department"] for t in d["tasks"]], ["d1"])

    def test_the_shipped_leave_request_keeps_its_days(self):
        # `days` decides whether personnel sees the request: the head decides, and cannot
        # make a three-week leave a one-day one (or the other way round) on the way
        n = self.shared
        head = n.new_user("head_days", ("dept_head",), "d1")
        st, _, inst = self.as_("clerk1", "POST", "/workflow/instances", {"definition": "leave", "data": {"days": 15}})
        self.assertEqual(st, 201, inst)
        tid = inst["tasks"][0]["id"]
        st, _, d = n.json("POST", "/workflow/tasks/%s/complete" % tid, {"decision": "approve", "form": {"days": 1}},
                          headers=head, auth=False)
        self.assertEqual((st, d["type"]), (422, "/problems/invalid-input"), d)
        self.assertIn("days", d["detail"])
        st, _, d = n.json("POST", "/workflow/tasks/%s/complete" % tid, {"decision": "approve", "opinion": "同意"},
                          headers=head, auth=False)
        self.assertEqual(st, 200, d)
        got = self.instance(inst["id"])
        self.assertEqual((got["state"], got["data"]["days"]), ("running", 15))  # on to personnel
        self.assertEqual([t["node"] for t in d["new_tasks"]], ["personnel"])

    def test_citizens_start_no_staff_process(self):
        # anyone may register as a citizen or enterprise; "user" among a definition's
        # starters is the staff: a citizen's leave request would have no department, and
        # land on the to-do list of every head in the county
        n = self.shared
        head = n.new_user("head_x", ("dept_head",), "d2")
        for kind, login, extra in (("citizen", "wf-citizen", {}),
                                   ("enterprise", "wf-ent", {"credit_code": credit_code("91330122MA2A00009")})):
            body = dict({"kind": kind, "login": login, "name": login, "password": "Applicant-password-1"}, **extra)
            st, _, d = n.json("POST", "/auth/register", body, auth=False)
            self.assertEqual(st, 201, d)
            st, _, d = n.login(login, "Applicant-password-1")
            who = {"Authorization": "Bearer " + d["token"]}
            for definition in ("leave", "plain"):
                st, _, d = n.json("POST", "/workflow/instances", {"definition": definition, "data": {"days": 9}},
                                  headers=who, auth=False)
                self.assertEqual(st, 403, d)
                self.assertEqual(d["type"], "/problems/forbidden")
                self.assertIn("staff", d["detail"])
        st, _, todo = n.json("GET", "/workflow/tasks", headers=head, auth=False)
        self.assertEqual([t for t in todo["items"] if t["definition"] == "leave"], [])

    # ---- two people complete one task ------------------------------------------------

    def test_concurrent_completion_one_wins(self):
        for _ in range(5):
            inst = self.start("plain")
            tid = inst["tasks"][0]["id"]
            results = {}
            barrier = threading.Barrier(2)

            def go(login):
                barrier.wait()
                st, _, d = self.as_(login, "POST", "/workflow/tasks/%s/complete" % tid, {"opinion": login})
                results[login] = (st, d)

            ts = [threading.Thread(target=go, args=(u,)) for u in ("clerk1", "clerk2")]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10)
            codes = sorted(v[0] for v in results.values())
            self.assertEqual(codes, [200, 409], results)
            loser = next(v[1] for v in results.values() if v[0] == 409)
            self.assertEqual(loser["type"], "/problems/task-closed")
            winner = next(k for k, v in results.items() if v[0] == 200)
            st, _, t = self.shared.json("GET", "/workflow/tasks/" + tid)
            self.assertEqual((t["state"], t["done_by"], t["opinion"]), ("completed", winner, winner))

    # ---- scripts: service tasks and gateways ------------------------------------------

    def test_a_script_failing_on_complete_is_in_the_log_not_the_answer(self):
        tid = self.start("boom2", key="BOOM2-1")["tasks"][0]["id"]
        st, h, d = self.as_("clerk1", "POST", "/workflow/tasks/%s/complete" % tid, {})
        self.assertScriptFailed(st, h, d, "boom after the task", "stack traceback")
        st, _, t = self.shared.json("GET", "/workflow/tasks/" + tid)
        self.assertEqual(t["state"], "open")  # nothing of the failed step is kept

    def test_service_task_and_gateway(self):
        d = self.start("calc", {"a": 4, "b": 9})
        self.assertEqual((d["state"], d["result"]), ("completed", "big"))
        self.assertEqual(self.instance(d["id"])["data"]["total"], 13)
        d = self.start("calc", {"a": 1, "b": 2})
        self.assertEqual(d["result"], "small")

    def test_a_failed_service_call_leaves_the_task_open(self):
        # A plugin completes a task through workflow.task_action; the next node's script
        # fails, and the plugin copes with the failure and commits its own work: the task
        # stays open (it was completed, the instance stuck with no open task, before).
        inst = self.start("late")
        t = self.task_at(inst["id"], "t")
        st, _, d = self.as_("clerk1", "POST", "/wfspy/call",
                            {"service": "workflow.task_action", "args": {"task": t["id"], "action": "complete"}})
        self.assertEqual((st, d), (200, {"ok": False, "code": "failed"}))
        again = self.task_at(inst["id"], "t")
        self.assertEqual((again["id"], again["state"]), (t["id"], "open"))
        st, _, h = self.shared.json("GET", "/workflow/instances/%s/history" % inst["id"])
        self.assertNotIn("complete", [s["action"] for s in h["items"]])
        # nor does a failed start leave an instance behind
        st, _, d = self.as_("clerk1", "POST", "/wfspy/call",
                            {"service": "workflow.start", "args": {"definition": "boom", "business_key": "BOOM-2"}})
        self.assertEqual((st, d["ok"]), (200, False), d)
        marker = self.start("plain", key="MARK-LATE")  # events arrive in order: after it, none
        ev = self.wait_events(lambda ev: any(e["payload"].get("instance") == marker["id"] for e in ev),
                              "the marker's start")
        self.assertFalse([e for e in ev if e["payload"].get("business_key") == "BOOM-2"])
        self.assertFalse([e for e in ev if e["payload"].get("instance") == inst["id"]
                          and e["topic"] != "workflow.task.created"])

    # ---- events: exactly the committed work --------------------------------------------

    def test_events_only_for_committed_work(self):
        st, h, d = self.shared.json("POST", "/workflow/instances", {"definition": "boom"})
        self.assertScriptFailed(st, h, d, "boom", "stack traceback")
        # a marker after the failure: events arrive in order, so once it is seen anything
        # the failed start emitted would have been seen too
        inst = self.start("plain", key="MARK-1")
        self.act("clerk1", inst["tasks"][0]["id"], "complete")
        ev = self.wait_events(
            lambda ev: any(e["topic"] == "workflow.instance.completed"
                           and e["payload"].get("business_key") == "MARK-1" for e in ev),
            "the marker's completion")
        self.assertFalse([e for e in ev if e["payload"].get("definition") == "boom"])
        mine = [e for e in ev if e["payload"].get("instance") == inst["id"]]
        self.assertEqual([e["topic"] for e in mine],
                         ["workflow.task.created", "workflow.task.completed",
                          "workflow.instance.completed"])
        p = mine[0]["payload"]
        self.assertEqual((p["definition"], p["business_key"], p["plugin"], p["node"], p["task"]),
                         ("plain", "MARK-1", "workflow", "t", inst["tasks"][0]["id"]))
        self.assertIsInstance(p["version"], int)
        self.assertEqual(mine[1]["payload"]["actor"], "clerk1")
        self.assertEqual(mine[2]["payload"]["state"], "completed")
        # a refused action (409) emits nothing either
        self.act("clerk2", inst["tasks"][0]["id"], "complete", want=409)
        inst2 = self.start("plain", key="MARK-2")
        self.wait_events(
            lambda ev: any(e["payload"].get("business_key") == "MARK-2" for e in ev), "MARK-2")
        ev = self.events()
        self.assertEqual(len([e for e in ev if e["payload"].get("instance") == inst["id"]]), 3)
        self.assertEqual(len([e for e in ev if e["payload"].get("instance") == inst2["id"]]), 1)

    # ---- bad input -------------------------------------------------------------------

    def test_bad_input_is_a_problem(self):
        n = self.shared
        cases = [
            ("POST", "/workflow/instances", "not json", 400),
            ("POST", "/workflow/instances", [], 400),
            ("POST", "/workflow/instances", {}, 400),
            ("POST", "/workflow/instances", {"definition": "nosuch"}, 404),
            ("POST", "/workflow/instances", {"definition": "plain", "data": [1]}, 400),
            ("POST", "/workflow/instances", {"definition": "plain", "priority": 1.5}, 400),
            ("POST", "/workflow/instances", {"definition": "plain", "initiator": "x"}, 400),
            ("GET", "/workflow/instances/NOSUCHINSTANCE0000000000000", None, 404),
            ("GET", "/workflow/tasks/NOSUCHTASK", None, 404),
            ("POST", "/workflow/tasks/NOSUCHTASK/complete", {}, 404),
            ("GET", "/workflow/tasks?limit=0", None, 400),
            ("GET", "/workflow/tasks?after=zz", None, 400),
            ("GET", "/workflow/stats?from=yesterday", None, 400),
            ("GET", "/workflow/definitions/nosuch", None, 404),
        ]
        for method, path, body, want in cases:
            st, h, b = n.request(method, path, body)
            self.assertProblem(st, h, b, want)
        inst = self.start("plain")
        tid = inst["tasks"][0]["id"]
        for body in ({"opinion": 5}, {"form": [1]}, {"decision": "x" * 65}):
            st, h, b = n.request("POST", "/workflow/tasks/%s/complete" % tid, body)
            self.assertProblem(st, h, b, 400)
        # nothing of those was written: the task is still open and untouched
        st, _, t = n.json("GET", "/workflow/tasks/" + tid)
        self.assertEqual((t["state"], t.get("assignee")), ("open", None))
        # the outsider sees neither the instance nor the task
        st, h, b = n.request("GET", "/workflow/instances/" + inst["id"], headers=self.users["outsider"], auth=False)
        self.assertProblem(st, h, b, 403)

    # ---- the to-do list ------------------------------------------------------------------

    def test_todo_order_and_pages(self):
        n = self.shared
        self.addCleanup(n.set_clock, 0)
        n.set_clock(0)
        # x goes overdue: made first, then the clock moves three working days on
        x = self.start("todo", {"kind": "d1"}, key="X")
        n.set_clock(7 * DAY)
        y = self.start("todo", {"kind": "d1"}, key="Y")
        z = self.start("todo", {"kind": "d5"}, key="Z")
        w_hi = self.start("todo", {"kind": "none"}, key="W-hi", priority=5)
        w_lo = self.start("todo", {"kind": "none"}, key="W-lo", priority=-5)
        w_mid = self.start("todo", {"kind": "none"}, key="W-mid", priority=0)
        want_keys = {"X", "Y", "Z", "W-hi", "W-lo", "W-mid"}
        items = []
        after = None
        pages = 0
        while True:
            q = "/workflow/tasks?limit=2" + ("&after=" + after if after else "")
            st, _, d = self.as_("clerk2", "GET", q)
            self.assertEqual(st, 200, d)
            self.assertLessEqual(len(d["items"]), 2)
            items += d["items"]
            pages += 1
            after = d["next"]
            if not after:
                break
        self.assertEqual(len(items), len({t["id"] for t in items}))  # no task twice
        mine = [t for t in items if t.get("business_key") in want_keys]
        self.assertEqual(len(mine), 6)
        # the order the issue asks for, computed here from each task's own fields
        big = float("inf")
        expect = sorted(mine, key=lambda t: (not t["overdue"], t.get("due", big), -t["priority"], t["id"]))
        self.assertEqual([t["id"] for t in mine], [t["id"] for t in expect])
        self.assertEqual([t["business_key"] for t in mine], ["X", "Y", "Z", "W-hi", "W-mid", "W-lo"])
        self.assertTrue(mine[0]["overdue"])
        self.assertFalse(any(t["overdue"] for t in mine[1:]))
        # the whole list is the same order page by page
        st, _, whole = self.as_("clerk2", "GET", "/workflow/tasks?limit=200")
        self.assertEqual([t["id"] for t in whole["items"]], [t["id"] for t in items])
        # a person without the role sees none of them
        st, _, d = self.as_("outsider", "GET", "/workflow/tasks")
        self.assertFalse([t for t in d["items"] if t.get("business_key") in want_keys])

    def test_a_deadline_the_instance_gives(self):
        # a time limit the plugin counts (a legal one) is the task's deadline: the function
        # gives the moment from the instance's data; nil: none; anything else is refused
        due = 1_900_000_000_000
        d = self.start("dated", {"due": due}, key="DATED-1")
        self.assertEqual([t["due"] for t in d["tasks"]], [due])
        d = self.start("dated", {}, key="DATED-2")
        self.assertEqual([t.get("due") for t in d["tasks"]], [None])
        st, h, p = self.shared.json("POST", "/workflow/instances",
                                    {"definition": "dated", "data": {"due": "tomorrow"}})
        self.assertScriptFailed(st, h, p, "deadline() must return a time")
        st, _, df = self.shared.json("GET", "/workflow/definitions/dated")
        self.assertEqual([(x.get("deadline"), x.get("escalate_to")) for x in df["nodes"] if x["id"] == "t"],
                         [("(function)", "(function)")])
        # a moment already past: overdue at once, escalated to the role the data names; a
        # task whose data names none stays only overdue
        for key, esc in (("DATED-3", "boss"), ("DATED-4", None)):
            data = {"due": 1000}
            if esc:
                data["escalate"] = esc
            tid = self.start("dated", data, key=key)["tasks"][0]["id"]
            wait_for("the overdue event of %s" % key, lambda: [
                e for e in self.events()
                if e["topic"] == "workflow.task.overdue" and e["payload"].get("task") == tid])
            t = self.shared.json("GET", "/workflow/tasks/" + tid)[2]
            self.assertTrue(t["overdue"], t)
            self.assertEqual(t.get("escalated_to"), esc)

    # ---- statistics ------------------------------------------------------------------

    def test_stats_match_the_instances(self):
        n = self.shared
        self.addCleanup(n.set_clock, 0)
        n.set_clock(0)
        ids = []
        for i, hours in enumerate((1, 2, 5, 30)):
            n.set_clock(0)
            inst = self.start("ret", key="S-%d" % i)
            ids.append(inst["id"])
            a = self.task_at(inst["id"], "a")
            self.act("clerk1", a["id"], "complete")
            n.set_clock(hours * HOUR)
            b = self.task_at(inst["id"], "b")
            self.act("rev1", b["id"], "complete")
        running = self.start("ret", key="S-run")
        ids.append(running["id"])
        st, _, s = n.json("GET", "/workflow/stats?definition=ret")
        self.assertEqual(st, 200, s)
        insts = [self.instance(i) for i in ids]
        # every "ret" instance, including those of other tests
        st, _, all_s = n.json("GET", "/workflow/stats")
        g = s["by_definition"]["ret"]
        self.assertEqual(g, s["total"])
        self.assertEqual(g, all_s["by_definition"]["ret"])
        # from/to bound by the creation time: only the last instance
        st, _, win = n.json("GET", "/workflow/stats?definition=ret&from=%d" % running["created"])
        self.assertEqual(win["total"]["instances"], 1)
        self.assertEqual(win["total"]["running"], 1)
        # the numbers from the instances, computed here
        st, _, every = n.json("GET", "/workflow/stats?definition=ret&from=%d&to=%d"
                              % (insts[0]["created"], running["created"] + 1))
        t = every["total"]
        done = [i for i in insts if i["state"] == "completed"]
        durs = sorted(i["ended"] - i["created"] for i in done)
        self.assertEqual(t["instances"], 5)
        self.assertEqual((t["completed"], t["running"]), (4, 1))
        self.assertAlmostEqual(t["mean_duration_ms"], sum(durs) / len(durs), places=3)
        self.assertEqual(t["p90_duration_ms"], durs[math.ceil(0.9 * len(durs)) - 1])
        self.assertEqual(t["on_time_rate"], 1.0)
        st, h, b = self.as_("outsider", "GET", "/workflow/stats")
        self.assertEqual(st, 403)

    # ---- definitions ---------------------------------------------------------------------

    def test_definitions_listed(self):
        st, _, d = self.shared.json("GET", "/workflow/definitions")
        self.assertEqual(st, 200, d)
        names = {x["name"]: x for x in d["items"]}
        for name in DEFS:
            self.assertIn(name, names)
        self.assertIn("leave", names)  # the demo county's examples are loaded too
        self.assertEqual(names["par"]["plugin"], "workflow")
        self.assertEqual(names["par"]["file"], "workflows/par.lua")
        st, _, p = self.shared.json("GET", "/workflow/definitions/par")
        nodes = {x["id"]: x for x in p["nodes"]}
        self.assertEqual(nodes["fork"]["next"], ["b", "c"])
        self.assertEqual(nodes["j"]["need"], "all")


class DeadlineTest(NodeTest):
    """Reminder, overdue and escalation from durable timers, across a restart."""

    def test_reminder_and_escalation_across_restart(self):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        lua_dir = make_lua_dir(base)
        # tomorrow (Beijing) and the day after are holidays: the deadline must skip them
        now = int(time.time() * 1000)
        today = beijing_date(now)
        holidays = [(today + datetime.timedelta(days=k)).isoformat() for k in (1, 2)]
        n = self.node(
            plugins=("workflow", "wfspy"), lua_dir=lua_dir, env=TEST_CLOCK, auth=AUTH,
            options="workflow = { holidays = { %s } }\n" % ", ".join('"%s"' % h for h in holidays),
        )
        for code in ("d1",):
            n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": "root"})
        clerk = n.new_user("clerk1", ("clerk",), "d1")
        boss = n.new_user("boss", ("boss",), "d1")
        st, _, inst = n.json("POST", "/workflow/instances", {"definition": "deadline", "business_key": "DL"})
        self.assertEqual(st, 201, inst)
        t = inst["tasks"][0]
        st, _, task = n.json("GET", "/workflow/tasks/" + t["id"])
        due = add_workdays(task["created"], 2, holidays)
        self.assertEqual(task["due"], due)
        self.assertEqual(task["remind_at"], sub_work_hours(due, 4, holidays))

        def todo(h):
            st, _, d = n.json("GET", "/workflow/tasks", headers=h, auth=False)
            self.assertEqual(st, 200, d)
            return [x["id"] for x in d["items"]]

        self.assertIn(t["id"], todo(clerk))
        self.assertNotIn(t["id"], todo(boss))

        def topics():
            st, _, d = n.json("GET", "/wfspy/events", auth=False)
            return [e["topic"] for e in d["items"] if e["payload"].get("task") == t["id"]]

        def wait_for(topic):
            deadline = time.monotonic() + 10
            while topic not in topics():
                if time.monotonic() > deadline:
                    self.fail("no %s; events %r; log %s" % (topic, topics(), n.log()[-3000:]))
                time.sleep(0.05)

        # past the reminder: the reminder only
        n.set_clock(task["remind_at"] - int(time.time() * 1000) + 1000)
        wait_for("workflow.task.reminder")
        self.assertNotIn("workflow.task.overdue", topics())
        # restart: the clock goes back to real time, the due timer stays in the store
        n.restart()
        n.set_clock(due - int(time.time() * 1000) + 1000)
        wait_for("workflow.task.overdue")
        self.assertEqual(topics().count("workflow.task.reminder"), 1)
        self.assertEqual(topics().count("workflow.task.overdue"), 1)
        st, _, task = n.json("GET", "/workflow/tasks/" + t["id"])
        self.assertEqual((task["overdue"], task["escalated_to"]), (True, "boss"))
        # the boss of d1 now has it on the to-do list, and may complete it
        self.assertIn(t["id"], todo(boss))
        st, _, d = n.json("POST", "/workflow/tasks/%s/complete" % t["id"], {"opinion": "督办"},
                          headers=boss, auth=False)
        self.assertEqual(st, 200, d)
        st, _, s = n.json("GET", "/workflow/stats")
        self.assertEqual(s["by_definition"]["deadline"]["on_time_rate"], 0.0)


class PauseTest(NodeTest):
    def test_pause_moves_the_deadline_by_the_working_time_stood_still(self):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        lua_dir = make_lua_dir(base)
        # a Lua plugin reaches pause/resume/workdays_add as services
        init = """
zt.route("POST", "/svc/:name", { role = "user" }, function(req)
  local r, msg = zt.call("workflow." .. req.params.name, req:json())
  if r == nil and msg then zt.problem(422, "service-refused", msg) end
  return 200, r or {}
end)
-- a GET reads a snapshot: starting from there must fail cleanly
zt.route("GET", "/svcget/start", { role = "user" }, function(req)
  local r, msg = zt.call("workflow.start", { definition = "deadline" })
  if r == nil and msg then zt.problem(422, "service-refused", msg) end
  return 200, r
end)
"""
        lua_tree_with(lua_dir, {"svc": (lua_manifest(requires=("workflow",)), init)})
        n = self.node(plugins=("workflow", "svc"), lua_dir=lua_dir, env=TEST_CLOCK, auth=AUTH)
        n.json("POST", "/admin/departments", {"code": "d1", "name": "d1", "parent": "root"})
        st, _, inst = n.json("POST", "/svc/start", {"definition": "deadline", "business_key": "PZ"})
        self.assertEqual(st, 200, inst)
        tid = inst["tasks"][0]["id"]
        st, _, t0 = n.json("GET", "/workflow/tasks/" + tid)
        st, _, r = n.json("POST", "/svc/pause", {"instance": inst["instance"]})
        self.assertEqual(st, 200, r)
        n.set_clock(10 * DAY)  # ten calendar days: some of them working days
        st, _, r = n.json("POST", "/svc/resume", {"instance": inst["instance"]})
        self.assertEqual(st, 200, r)
        st, _, i = n.json("GET", "/workflow/instances/" + inst["instance"])
        st, _, t1 = n.json("GET", "/workflow/tasks/" + tid)
        st, _, h = n.json("GET", "/workflow/instances/%s/history" % inst["instance"])
        paused = next(s["time"] for s in h["items"] if s["action"] == "pause")
        resumed = next(s["time"] for s in h["items"] if s["action"] == "resume")
        self.assertEqual(i["paused_ms"], resumed - paused)
        # the working time between pause and resume, counted here
        worked = work_between(paused, resumed)
        st, _, moved = n.json("POST", "/svc/workdays_add", {"from": t0["due"], "ms": worked})
        self.assertEqual(t1["due"], moved["time"])
        self.assertGreater(t1["due"], t0["due"])
        st, _, r = n.json("POST", "/svc/workdays_add", {"from": "x"})
        self.assertEqual(st, 422, r)
        # a range walked a day at a time is bounded like workdays_add: ten years at most
        st, _, r = n.json("POST", "/svc/workdays_between", {"from": 0, "to": 1e15})
        self.assertEqual(st, 422, r)
        self.assertIn("invalid", r["detail"])
        st, _, r = n.json("POST", "/svc/workdays_between", {"from": 0, "to": 3650 * DAY})
        self.assertEqual(st, 200, r)
        self.assertGreater(r["days"], 2500)
        st, _, r = n.json("GET", "/svcget/start")
        self.assertEqual(st, 422, r)
        self.assertIn("read-only", r["detail"])


class VersionTest(NodeTest):
    def test_running_instances_keep_their_version(self):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        lua_dir = make_lua_dir(base, {"v": DEFS["plain"].replace('"plain"', '"v"')}, spy=False)
        n = self.node(plugins=("workflow",), lua_dir=lua_dir, roles=("clerk",))
        n.json("POST", "/admin/departments", {"code": "d1", "name": "d1", "parent": "root"})
        st, _, i1 = n.json("POST", "/workflow/instances", {"definition": "v"})
        self.assertEqual((st, i1["version"]), (201, 1), i1)
        # version 2 has a second task after t
        v2 = DEFS["plain"].replace('"plain"', '"v"').replace(
            'next = "e" },', 'next = "t2" },\n    t2 = { type = "user", role = "clerk", next = "e" },')
        self.assertIn("t2", v2)
        write_defs(lua_dir, {"v": v2})
        n.restart()
        st, _, i2 = n.json("POST", "/workflow/instances", {"definition": "v"})
        self.assertEqual((st, i2["version"]), (201, 2), i2)
        st, _, d = n.json("GET", "/workflow/definitions/v")
        self.assertEqual((d["version"], d["versions_recorded"]), (2, 2))
        # admin holds clerk; department d1 is below root, the admin's department
        st, _, r = n.json("POST", "/workflow/tasks/%s/complete" % i1["tasks"][0]["id"], {})
        self.assertEqual(st, 200, r)
        st, _, d1 = n.json("GET", "/workflow/instances/" + i1["id"])
        self.assertEqual((d1["state"], d1["version"]), ("completed", 1))
        st, _, r = n.json("POST", "/workflow/tasks/%s/complete" % i2["tasks"][0]["id"], {})
        self.assertEqual(st, 200, r)
        self.assertEqual([t["node"] for t in r["new_tasks"]], ["t2"])
        st, _, d2 = n.json("GET", "/workflow/instances/" + i2["id"])
        self.assertEqual(d2["state"], "running")
        # restarting with an unchanged file records no third version
        n.restart()
        st, _, i3 = n.json("POST", "/workflow/instances", {"definition": "v"})
        self.assertEqual(i3["version"], 2)


BAD = [
    ("unknown type", 'n = { type = "usr", next = "e" }', "unknown node type 'usr'", "n"),
    ("dangling next", 'n = { type = "user", role = "r", next = "nowhere" }', "'nowhere' is not a node", "n"),
    ("join without split", 'n = { type = "join", next = "e" }', "no parallel split", "n"),
    ("unreachable", 'n = { type = "user", role = "r", next = "e" },\n    lost = { type = "user", role = "r", next = "e" }',
     "cannot be reached", "lost"),
    ("no assignment", 'n = { type = "user", next = "e" }', "needs a role", "n"),
    ("a role no account can hold", 'n = { type = "user", role = "Office Clerk", next = "e" }',
     "role: 'Office Clerk' is no role name", "n"),
    ("escalation to no role", 'n = { type = "user", role = "r", deadline = "2d", escalate_to = "x y", next = "e" }',
     "escalate_to: 'x y' is no role name", "n"),
    ("empty decisions", 'n = { type = "user", role = "r", decisions = {}, next = "e" }', "decisions must be", "n"),
    ("decisions not words", 'n = { type = "user", role = "r", decisions = { "ok", 2 }, next = "e" }',
     "decisions must be", "n"),
    ("decisions twice", 'n = { type = "user", role = "r", decisions = { "ok", "ok" }, next = "e" }',
     "decisions must be a list of 1 to 16 different words", "n"),
    ("reasons without decisions", 'n = { type = "user", role = "r", reasons = { "refuse" }, next = "e" }',
     "reasons must be a list of some of the node's decisions", "n"),
    ("reasons not among the decisions",
     'n = { type = "user", role = "r", decisions = { "ok", "no" }, reasons = { "refuse" }, next = "e" }',
     "reasons must be a list of some of the node's decisions", "n"),
    ("form not a list", 'n = { type = "user", role = "r", form = "note", next = "e" }', "form must be a list", "n"),
    ("form a map", 'n = { type = "user", role = "r", form = { note = true }, next = "e" }', "form must be a list",
     "n"),
    ("form not names", 'n = { type = "user", role = "r", form = { "note", 2 }, next = "e" }',
     "form must list field names", "n"),
    ("form twice", 'n = { type = "user", role = "r", form = { "note", "note" }, next = "e" }',
     "form lists 'note' twice", "n"),
    ("complete_over_http not a boolean", 'n = { type = "user", role = "r", complete_over_http = "no", next = "e" }',
     "complete_over_http must be", "n"),
]


class BadDefinitionTest(NodeTest):
    def check_refused(self, text, want, node_id):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        lua_dir = make_lua_dir(base, {"broken": text}, spy=False)
        n = self.node(plugins=("workflow",), lua_dir=lua_dir, start=False)
        r = run(["check", "-c", n.conf])
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("workflows/broken.lua", out)
        self.assertIn(want, out)
        if node_id:
            self.assertIn("'%s'" % node_id, out)
        with self.assertRaises(AssertionError) as cm:
            n.start()
        self.assertIn(want, str(cm.exception))

    def test_bad_graphs_refused(self):
        for what, node, want, node_id in BAD:
            with self.subTest(what):
                text = ('return { name = "broken", start = "s", nodes = {\n'
                        '    s = { type = "start", next = "n" },\n    %s,\n'
                        '    e = { type = "end" },\n} }\n' % node)
                self.check_refused(text, want, node_id)

    def test_missing_end_and_syntax_refused(self):
        self.check_refused('return { name = "broken", start = "s", nodes = {\n'
                           '  s = { type = "start", next = "a" },\n'
                           '  a = { type = "user", role = "r", next = "s" } } }\n', "no end node", None)
        self.check_refused('return { name = "broken", start = "s", nodes = {', "broken.lua:1", None)
        self.check_refused('return 42', "must return a table", None)
        self.check_refused('return { name = "broken", start = "s", starters = { "hr", "Head Office" },\n'
                           '  nodes = { s = { type = "start", next = "e" }, e = { type = "end" } } }\n',
                           "starters: 'Head Office' is no role name", None)


LABEL_DEFS = {
    # its instances are labelled sensitive at least (安全标记)
    "casefile": """
return { name = "casefile", title = "涉敏案件", starters = { "user" }, start = "s", label = "sensitive",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", role = "clerk", department = "d1", next = "e" },
    e = { type = "end" },
  } }
""",
    "plain": DEFS["plain"],
    # a task given by name: to whom the instance's data says
    "named": """
return { name = "named", starters = { "user" }, start = "s", label = "sensitive",
  nodes = {
    s = { type = "start", next = "t" },
    t = { type = "user", assignee = function(i) return i.data.who end, next = "e" },
    e = { type = "end" },
  } }
""",
}


class LabelTest(NodeTest):
    """Security labels on instances and their tasks: only those cleared for an instance's
    label see or handle it (its initiator always sees their own)."""

    def label_node(self, spy=False, **kw):
        """A node with LABEL_DEFS and the department d1."""
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        n = self.node(plugins=("workflow", "wfspy") if spy else ("workflow",),
                      lua_dir=make_lua_dir(base, LABEL_DEFS, spy=spy), auth=AUTH, **kw)
        st, _, d = n.json("POST", "/admin/departments", {"code": "d1", "name": "d1", "parent": "root"})
        self.assertEqual(st, 201, d)
        return n

    def test_only_the_cleared_see_and_handle_a_labelled_instance(self):
        n = self.label_node(spy=True, roles=("workflow_supervisor",))
        u = {
            "starter": n.new_user("starter", (), "d1"),
            "clerk": n.new_user("clerk", ("clerk",), "d1"),  # internal: the default
            "cleared": n.new_user("cleared", ("clerk",), "d1", clearance="sensitive"),
            "cleared2": n.new_user("cleared2", ("clerk",), "d1", clearance="sensitive"),
            "sup": n.new_user("sup", ("workflow_supervisor",), "d1"),
            "sup_hi": n.new_user("sup_hi", ("workflow_supervisor",), "d1", clearance="sensitive"),
        }

        def as_(who, method, path, body=None):
            return n.json(method, path, body, headers=u[who], auth=False)

        defs = {x["name"]: x for x in n.json("GET", "/workflow/definitions")[2]["items"]}
        self.assertEqual(defs["casefile"]["label"], "sensitive")
        self.assertNotIn("label", defs["plain"])
        # a staff member below the label starts one: it is theirs to read
        st, _, inst = as_("starter", "POST", "/workflow/instances", {"definition": "casefile"})
        self.assertEqual((st, inst["label"]), (201, "sensitive"), inst)
        tid = inst["tasks"][0]["id"]
        self.assertEqual(as_("starter", "GET", "/workflow/instances/" + inst["id"])[0], 200)
        self.assertEqual(as_("starter", "GET", "/workflow/tasks/" + tid)[0], 200)
        # the clerk holds the task's role in its department, yet is not cleared: it is not on
        # their to-do list, and they can neither read nor act on it
        todo = lambda who: [x["id"] for x in as_(who, "GET", "/workflow/tasks")[2]["items"]]
        self.assertNotIn(tid, todo("clerk"))
        self.assertIn(tid, todo("cleared"))
        for who, method, path in (("clerk", "GET", "/workflow/tasks/" + tid),
                                  ("clerk", "POST", "/workflow/tasks/%s/complete" % tid),
                                  ("clerk", "POST", "/workflow/tasks/%s/claim" % tid),
                                  ("sup", "GET", "/workflow/instances/" + inst["id"]),
                                  ("sup", "GET", "/workflow/instances/%s/history" % inst["id"])):
            with self.subTest(who=who, path=path):
                st, h, b = n.request(method, path, {} if method == "POST" else None, u[who], auth=False)
                p = self.assertProblem(st, h, b, 403, "label-not-cleared")
                self.assertIn("is labelled sensitive, above your clearance (internal)", p["detail"])
        self.assertEqual(as_("sup_hi", "GET", "/workflow/instances/" + inst["id"])[0], 200)
        # nor is it delegated to someone who could not handle it
        st, h, b = n.request("POST", "/workflow/tasks/%s/delegate" % tid, {"to": "clerk"}, u["cleared"],
                             auth=False)
        p = self.assertProblem(st, h, b, 422, "invalid-delegate")
        self.assertIn("labelled sensitive, above their clearance (internal)", p["detail"])
        st, _, d = as_("cleared", "POST", "/workflow/tasks/%s/delegate" % tid, {"to": "cleared2"})
        self.assertEqual((st, d["assignee"], d["label"]), (200, "cleared2", "sensitive"), d)
        st, _, d = as_("cleared2", "POST", "/workflow/tasks/%s/complete" % tid, {"opinion": "已核"})
        self.assertEqual(st, 200, d)
        st, _, d = as_("starter", "GET", "/workflow/instances/" + inst["id"])
        self.assertEqual((d["state"], d["label"]), ("completed", "sensitive"))
        # events carry it, for plugins that keep their own copies
        ev = [e["payload"] for e in n.json("GET", "/wfspy/events", auth=False)[2]["items"]
              if e["payload"].get("instance") == inst["id"]]
        self.assertTrue(ev and all(p.get("label") == "sensitive" for p in ev), ev)

        # a starter may label an instance above its definition's, not below, and only with a label
        st, _, d = as_("starter", "POST", "/workflow/instances", {"definition": "plain", "label": "sensitive"})
        self.assertEqual((st, d["label"]), (201, "sensitive"), d)
        self.assertNotIn(d["tasks"][0]["id"], todo("clerk"))
        st, _, d = as_("starter", "POST", "/workflow/instances", {"definition": "plain"})
        self.assertEqual(st, 201, d)
        self.assertNotIn("label", d)  # the lowest: everyone who may otherwise
        self.assertIn(d["tasks"][0]["id"], todo("clerk"))
        for body, why in (({"definition": "casefile", "label": "internal"},
                           "casefile's instances are labelled sensitive at least, not internal"),
                          ({"definition": "plain", "label": "secret"}, "'secret' is not one of the node's security labels")):
            with self.subTest(body=body):
                st, h, b = n.request("POST", "/workflow/instances", body, u["starter"], auth=False)
                self.assertIn(why, self.assertProblem(st, h, b, 422, "invalid-label")["detail"])

    def test_an_instance_is_labelled_again(self):
        n = self.label_node(spy=True, roles=("workflow_supervisor",))
        u = {
            "starter": n.new_user("starter", (), "d1"),
            "clerk": n.new_user("clerk", ("clerk",), "d1"),
            "cleared": n.new_user("cleared", ("clerk",), "d1", clearance="sensitive"),
            "bystander": n.new_user("bystander", (), "d1", clearance="sensitive"),
            "sup": n.new_user("sup", ("workflow_supervisor",), "d1"),
            "sup_hi": n.new_user("sup_hi", ("workflow_supervisor",), "d1", clearance="sensitive"),
        }

        def as_(who, method, path, body=None):
            return n.json(method, path, body, headers=u[who], auth=False)

        def relabel(who, inst_id, label, want, kind=None, reason="涉及个人隐私"):
            st, h, b = n.request("POST", "/workflow/instances/%s/label" % inst_id,
                                 {"label": label, "reason": reason}, u[who], auth=False)
            if want != 200:
                return self.assertProblem(st, h, b, want, kind)
            self.assertEqual(st, 200, b)
            return json.loads(b)

        todo = lambda who: [x["id"] for x in as_(who, "GET", "/workflow/tasks")[2]["items"]]
        st, _, first = as_("starter", "POST", "/workflow/instances", {"definition": "plain"})
        st, _, inst = as_("starter", "POST", "/workflow/instances", {"definition": "plain"})
        self.assertEqual(st, 201, inst)
        done_id, tid = first["tasks"][0]["id"], inst["tasks"][0]["id"]
        self.assertEqual(as_("clerk", "POST", "/workflow/tasks/%s/complete" % done_id, {})[0], 200)
        self.assertIn(tid, todo("clerk"))
        # who may not: above their own clearance; not theirs to handle; a label not listed
        p = relabel("sup", inst["id"], "sensitive", 403, "label-not-cleared")
        self.assertIn("you are cleared for internal, not sensitive", p["detail"])
        relabel("bystander", inst["id"], "sensitive", 403, "forbidden")
        relabel("cleared", inst["id"], "secret", 422, "invalid-label")
        # a handler cleared for it raises it: the task leaves the others' to-do lists
        d = relabel("cleared", inst["id"], "sensitive", 200)
        self.assertEqual(d["label"], "sensitive")
        self.assertNotIn(tid, todo("clerk"))
        self.assertIn(tid, todo("cleared"))
        st, h, b = n.request("GET", "/workflow/tasks/" + tid, headers=u["clerk"], auth=False)
        self.assertProblem(st, h, b, 403, "label-not-cleared")
        self.assertEqual(as_("starter", "GET", "/workflow/instances/" + inst["id"])[2]["label"], "sensitive")
        steps = as_("sup_hi", "GET", "/workflow/instances/%s/history" % inst["id"])[2]["items"]
        self.assertIn(("label", "cleared", "sensitive", "涉及个人隐私"),
                      [(x["action"], x.get("actor"), x.get("decision"), x.get("opinion")) for x in steps])
        labelled = lambda: [(e["payload"]["instance"], e["payload"]["label"], e["payload"]["previous"],
                             e["payload"]["actor"])
                            for e in n.json("GET", "/wfspy/events", auth=False)[2]["items"]
                            if e["topic"] == "workflow.instance.labelled"] or None
        self.assertEqual(wait_for("the labelled event", labelled), [(inst["id"], "sensitive", None, "cleared")])
        # lowered by a supervisor only
        relabel("cleared", inst["id"], "internal", 403, "forbidden")
        d = relabel("sup_hi", inst["id"], "public", 200)
        self.assertEqual(d["label"], "public")
        self.assertIn(tid, todo("clerk"))
        # a closed task follows its instance's label, not the one it had when it closed
        self.assertEqual(relabel("starter", first["id"], "internal", 200)["label"], "internal")  # its initiator
        relabel("starter", first["id"], "public", 403, "forbidden")
        relabel("sup_hi", first["id"], "sensitive", 200)
        st, h, b = n.request("GET", "/workflow/tasks/" + done_id, headers=u["clerk"], auth=False)
        self.assertProblem(st, h, b, 403, "label-not-cleared")
        self.assertEqual(as_("sup_hi", "GET", "/workflow/tasks/" + done_id)[2]["label"], "sensitive")

    def test_paging_passes_over_what_the_caller_may_not_see(self):
        n = self.label_node()
        clerk = n.new_user("clerk", ("clerk",), "d1")
        starter = n.new_user("starter", (), "d1")
        want = []
        for i in range(6):  # open, sensitive, open, sensitive, ...
            body = {"definition": "plain", "priority": 10 - i}
            if i % 2:
                body["label"] = "sensitive"
            st, _, d = n.json("POST", "/workflow/instances", body, headers=starter, auth=False)
            self.assertEqual(st, 201, d)
            if not i % 2:
                want.append(d["tasks"][0]["id"])
        got, after = [], None
        while True:
            st, _, page = n.json("GET", "/workflow/tasks?limit=1" + ("&after=" + after if after else ""),
                                 headers=clerk, auth=False)
            self.assertEqual(st, 200, page)
            got += [x["id"] for x in page["items"]]
            after = page["next"]
            if not after:
                break
        self.assertEqual(got, want)

    def test_a_supervisor_gives_a_stuck_task_to_someone_else(self):
        """A task named for someone not cleared for its label (or with no account) waits for
        them alone: the log says so, and a workflow supervisor cleared for it reassigns it
        (改派)."""
        n = self.label_node(roles=("workflow_supervisor",))
        u = {
            "starter": n.new_user("starter", (), "d1"),
            "clerk": n.new_user("clerk", ("clerk",), "d1"),  # internal: the default
            "cleared": n.new_user("cleared", ("clerk",), "d1", clearance="sensitive"),
            "sup": n.new_user("sup", ("workflow_supervisor",), "d1"),
            "sup_hi": n.new_user("sup_hi", ("workflow_supervisor",), "d1", clearance="sensitive"),
        }

        def act(who, tid, action, body, want):
            st, h, b = n.json("POST", "/workflow/tasks/%s/%s" % (tid, action), body, headers=u[who], auth=False)
            self.assertEqual(st, want, b)
            return b

        tids = {}
        for who in ("clerk", "nobody.here"):
            st, _, inst = n.json("POST", "/workflow/instances", {"definition": "named", "data": {"who": who}},
                                 headers=u["starter"], auth=False)
            self.assertEqual((st, inst["tasks"][0]["assignee"]), (201, who), inst)
            tids[who] = inst["tasks"][0]["id"]
        log = wait_for("the warnings", lambda: n.log().count("a workflow supervisor can give it") >= 2 and n.log())
        self.assertIn("workflow named v1, node 't': task %s is for 'clerk', who is not cleared for its label "
                      "sensitive" % tids["clerk"], log)
        self.assertIn("task %s is for 'nobody.here', who is not the login of an active staff account"
                      % tids["nobody.here"], log)
        tid = tids["clerk"]
        act("clerk", tid, "complete", {}, 403)  # the one it names cannot
        act("cleared", tid, "delegate", {"to": "cleared"}, 403)  # a cleared bystander may not give it
        act("sup", tid, "delegate", {"to": "cleared"}, 403)  # a supervisor below its label may not
        act("sup_hi", tid, "delegate", {"to": "clerk"}, 422)  # nor to someone below it
        d = act("sup_hi", tid, "delegate", {"to": "cleared", "opinion": "改派"}, 200)
        self.assertEqual((d["assignee"], d["delegated_by"]), ("cleared", "sup_hi"))
        act("sup_hi", tid, "complete", {}, 403)  # reassigning is all a supervisor does with it
        d = act("cleared", tid, "complete", {"opinion": "已办"}, 200)
        self.assertEqual(d["state"], "completed")
        # no warning for a task named for someone who can take it, by login or account id
        before = n.log().count("a workflow supervisor can give it")
        for who in ("cleared", n.json("GET", "/auth/me", headers=u["cleared"], auth=False)[2]["id"]):
            st, _, inst = n.json("POST", "/workflow/instances", {"definition": "named", "data": {"who": who}},
                                 headers=u["starter"], auth=False)
            self.assertEqual(st, 201, inst)
            act("cleared", inst["tasks"][0]["id"], "complete", {}, 200)
        self.assertEqual(n.log().count("a workflow supervisor can give it"), before)

    def test_records_from_before_labels_are_unlabelled(self):
        n = self.label_node()
        clerk = n.new_user("clerk", ("clerk",), "d1")
        st, _, inst = n.json("POST", "/workflow/instances", {"definition": "plain"}, headers=clerk, auth=False)
        self.assertEqual(st, 201, inst)
        tid = inst["tasks"][0]["id"]
        n.stop()

        def strip(txn, open_db):
            # the label is the records' last field: an empty string (u32 length 0, NUL)
            for dbname, key in (("workflow/instances", inst["id"]), ("workflow/tasks", tid)):
                db = open_db(dbname)
                v = txn.get(key.encode(), db=db)
                self.assertTrue(v.endswith(b"\0" * 5), v[-16:])
                txn.put(key.encode(), v[:-5], db=db)

        edit_db(self, n, None, strip)
        n.start()
        st, _, d = n.json("GET", "/workflow/instances/" + inst["id"], headers=clerk, auth=False)
        self.assertEqual((st, "label" in d), (200, False), d)
        self.assertIn(tid, [x["id"] for x in n.json("GET", "/workflow/tasks", headers=clerk, auth=False)[2]["items"]])
        st, _, d = n.json("POST", "/workflow/tasks/%s/complete" % tid, {}, headers=clerk, auth=False)
        self.assertEqual(st, 200, d)



class SealedTest(NodeTest):
    """workflow = { sealed = true }: instances, tasks, history and recorded definitions in
    sealed databases; a record changed behind the node's back is not read."""

    def test_a_changed_instance_is_not_read(self):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        lua_dir = make_lua_dir(base, LABEL_DEFS, spy=False)
        # written unsealed, then sealed at the start that turns the option on
        n = self.node(plugins=("workflow",), lua_dir=lua_dir, auth=AUTH)
        n.json("POST", "/admin/departments", {"code": "d1", "name": "d1", "parent": "root"})
        clerk = n.new_user("clerk", ("clerk",), "d1")
        first = n.json("POST", "/workflow/instances", {"definition": "plain"}, headers=clerk, auth=False)[2]
        n.stop()
        n._conf_text += "workflow = { sealed = true }\n"
        n._write_conf()
        n.start()
        for db in ("definitions", "instances", "tasks", "history"):
            self.assertIn("storage: database workflow/%s is sealed from now on" % db, n.log())
        self.assertEqual(n.json("GET", "/workflow/instances/" + first["id"], headers=clerk, auth=False)[0], 200)
        st, _, second = n.json("POST", "/workflow/instances", {"definition": "plain"}, headers=clerk, auth=False)
        self.assertEqual(st, 201, second)
        self.assertEqual(n.json("POST", "/workflow/tasks/%s/complete" % second["tasks"][0]["id"], {},
                                headers=clerk, auth=False)[0], 200)
        n.stop()

        def tamper(txn, open_db):  # a task given to someone else, behind the node's back
            db = open_db("workflow/tasks")
            key = first["tasks"][0]["id"].encode()
            v = txn.get(key, db=db)
            txn.put(key, v.replace(b"clerk", b"boss!", 1), db=db)

        edit_db(self, n, None, tamper)
        n.start()
        st, h, b = n.request("GET", "/workflow/tasks/" + first["tasks"][0]["id"], headers=clerk, auth=False)
        self.assertEqual(st, 503, b)  # a storage failure, as the core answers one: nothing served
        self.assertIn("input/output error", json.loads(b)["detail"])
        self.assertIn("of workflow/tasks fails its seal", n.log())
        self.assertEqual(n.json("GET", "/workflow/instances/" + second["id"], headers=clerk, auth=False)[2]["state"],
                         "completed")
        # once on, it stays on
        n.stop()
        n._conf_text = n._conf_text.replace("workflow = { sealed = true }", "workflow = { sealed = false }")
        n._write_conf()
        with self.assertRaises(AssertionError) as cm:
            n.start()
        self.assertIn("workflow.sealed: is false, but database definitions was sealed when it was true",
                      str(cm.exception) + n.log())

class BadLabelTest(NodeTest):
    def test_a_label_the_node_does_not_list_is_refused(self):
        import tempfile

        base = tempfile.mkdtemp(prefix="zt-wf-")
        self.addCleanup(__import__("shutil").rmtree, base, True)
        text = ('return { name = "broken", start = "s", label = "top-secret", nodes = {\n'
                '  s = { type = "start", next = "e" }, e = { type = "end" } } }\n')
        n = self.node(plugins=("workflow",), lua_dir=make_lua_dir(base, {"broken": text}, spy=False),
                      start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("workflows/broken.lua: workflow broken: label 'top-secret' is not one of the node's "
                      "security labels (auth.labels)", r.stderr)


if __name__ == "__main__":
    unittest.main()
