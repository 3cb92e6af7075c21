# test_lua_bus.py: Lua plugins on the bus: zt.on/zt.emit, durable timers, services between plugins.
import json
import shutil
import tempfile
import unittest

from ztnode import NodeTest, lua_tree_with, run, wait_for

WAIT = 30.0  # seconds a test waits for a delivery before it fails (a retry comes after 1 s)


def manifest(**extra):
    lines = ['  version = "1.0.0",', '  description = "e2e bus test plugin",']
    for k, v in extra.items():
        lines.append("  %s = { %s }," % (k, ", ".join('"%s"' % x for x in v)))
    return "return {\n%s\n}\n" % "\n".join(lines)


# busa: subscribes, emits, sets timers, calls services (its own too).
BUSA = r'''
local seen = zt.db.open("seen")       -- busa.note events, by seq
local ticks = zt.db.open("ticks")     -- timer events, by timer id
local tries = zt.db.open("tries")     -- attempts of the flaky handler
local echoes = zt.db.open("echoes")   -- calls of busa.echo

local function key(seq) return string.format("%016d", seq) end

zt.on("busa.note", function(ev, ctx)
  seen:put(key(ev.seq), { seq = ev.seq, topic = ev.topic, payload = ev.payload or "none",
    source = ev.source, request_id = ev.request_id, attempt = ev.attempt,
    time = ev.time, method = ctx.method, path = ctx.path, kind = ctx.caller.kind })
end)

zt.on("_busa.tick", function(ev)
  ticks:put(ev.timer, { n = ev.payload.n, source = ev.source, topic = ev.topic })
end)

-- fails on its first attempt at each event (by an error, or by the budget), then works:
-- what the failed attempt wrote must be gone
zt.on("busa.flaky", function(ev)
  local name = ev.payload.name
  tries:put(name .. "/" .. ev.attempt, { attempt = ev.attempt })
  if ev.attempt == 1 then
    if ev.payload.mode == "loop" then while true do end end
    if ev.payload.mode == "problem" then zt.problem(409, "flaky", "a problem on purpose") end
    error("flaky handler fails on purpose: " .. name)
  end
end)

zt.provide("busa.echo", function(args, ctx)
  echoes:put(zt.id(), { said = args.say, request_id = ctx.id })
  return { echo = args.say, by = zt.plugin }
end)

local function body(req)
  local b = req:json()
  return type(b) == "table" and b or {}
end

zt.route("POST", "/busa/emit", { role = "public" }, function(req)
  local b = body(req)
  for i = 1, b.count or 1 do
    zt.emit("busa.note", { n = i, tag = b.tag })
  end
  return 200, { request_id = req.id }
end)

zt.route("POST", "/busa/emit-null", { role = "public" }, function(req)
  zt.emit("busa.note")
  return 204
end)

zt.route("POST", "/busa/emit-then-fail", { role = "public" }, function(req)
  zt.emit("busa.note", { tag = body(req).tag })
  error("the handler fails after emitting")
end)

zt.route("POST", "/busa/emit-then-problem", { role = "public" }, function(req)
  zt.emit("busa.note", { tag = body(req).tag })
  zt.problem(409, "conflict", "refused after emitting")
end)

zt.route("POST", "/busa/flaky", { role = "public" }, function(req)
  local b = body(req)
  zt.emit("busa.flaky", { name = b.name, mode = b.mode })
  return 204
end)

zt.route("GET", "/busa/emit-in-get", { role = "public" }, function(req)
  local ok, e = pcall(zt.emit, "busa.note", { tag = "get" })
  local ok2, e2 = pcall(zt.emit, "busa..bad", {})
  return 200, { ok = ok, err = e, bad_ok = ok2, bad_err = e2 }
end)

local function list(db)
  local out = zt.json.array()
  for k, v in db:iter() do
    if type(v) == "table" then v.key = k end
    out[#out + 1] = v
  end
  return out
end

zt.route("GET", "/busa/seen", { role = "public" }, function(req) return 200, list(seen) end)
zt.route("GET", "/busa/ticks", { role = "public" }, function(req) return 200, list(ticks) end)
zt.route("GET", "/busa/tries", { role = "public" }, function(req) return 200, list(tries) end)
zt.route("GET", "/busa/echoes", { role = "public" }, function(req) return 200, list(echoes) end)

zt.route("POST", "/busa/timer", { role = "public" }, function(req)
  local b = body(req)
  local id
  if b.at then
    id = zt.timer.at(b.at, "_busa.tick", { n = b.n })
  else
    id = zt.timer.after(b.after, "_busa.tick", { n = b.n })
  end
  return 200, { id = id, now = zt.now() }
end)

zt.route("POST", "/busa/timer/:id/cancel", { role = "public" }, function(req)
  return 200, { cancelled = zt.timer.cancel(req.params.id) }
end)

-- a service call; the answer shows all of zt.call's results
local function call(name, args)
  local r, msg, code, reason = zt.call(name, args)
  return { result = r == nil and "nil" or r, msg = msg or "none", code = code or "none",
           reason = reason or "none" }
end

zt.route("POST", "/busa/call/:name", { role = "public" }, function(req)
  local out = call(req.params.name, body(req))
  out.me = req.caller and req.caller.login or "nobody"
  out.request_id = req.id
  return 200, out
end)

-- a service that writes, then this handler fails: nothing the service wrote is kept
zt.route("POST", "/busa/store-then-fail/:k", { role = "public" }, function(req)
  local out = call("busb.store", { k = req.params.k })
  if body(req).fail then error("failing after a service wrote") end
  return 200, out
end)

zt.route("POST", "/busa/nested", { role = "public" }, function(req)
  -- busb.back calls busa.echo: back into this state while this handler runs
  local out = call("busb.back", { say = "hello" })
  out.after = req.method .. " " .. req.id -- this request's table works again afterwards
  return 200, out
end)

zt.route("POST", "/busa/nested-in-coroutine", { role = "public" }, function(req)
  -- the same, from inside a coroutine: the call comes back on the state's main thread
  local co = coroutine.wrap(function(say)
    local got = call("busb.back", { say = say })
    local again = coroutine.yield(got)
    return again .. " " .. req.id
  end)
  local out = co("from a coroutine")
  out.after = co("resumed")
  return 200, out
end)
'''

# busb: provides services, one of which calls back into busa.
BUSB = r'''
local kv = zt.db.open("kv")

zt.provide("busb.add", function(args, ctx)
  return { sum = args.a + args.b, caller = ctx.caller and ctx.caller.login or "nobody",
           request_id = ctx.id, method = ctx.method }
end)

zt.provide("busb.fail", function(args)
  error("no credit for " .. tostring(args and args.who))
end)

zt.provide("busb.nothing", function(args) end)

zt.provide("busb.loop", function(args) while true do end end)

zt.provide("busb.bad-result", function(args) return print end)

zt.provide("busb.store", function(args)
  kv:put(args.k, "stored by busb")
  return true
end)

zt.provide("busb.back", function(args)
  local r, msg, code = zt.call("busa.echo", args)
  if r == nil then error("busa.echo failed: " .. msg .. " (" .. code .. ")") end
  return { via = zt.plugin, echo = r }
end)

zt.route("GET", "/busb/kv/:k", { role = "public" }, function(req)
  local v = kv:get(req.params.k)
  if v == nil then zt.problem(404, "not-found", "no key " .. req.params.k) end
  return 200, { value = v }
end)
'''


class LuaBus(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="zt-e2e-luabus-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.lua_dir = lua_tree_with(
            cls.root + "/lua",
            {
                "busa": (manifest(needs=["busb.add"], wants=["nobody.here"]), BUSA),
                "busb": (manifest(), BUSB),
            },
        )
        cls.shared_node(plugins=("busa", "busb"), lua_dir=cls.lua_dir)

    def get(self, path):
        st, _, d = self.shared.json("GET", path)
        self.assertEqual(st, 200, d)
        return d

    def post(self, path, body=None, want=200):
        st, _, d = self.shared.json("POST", path, body if body is not None else {})
        self.assertEqual(st, want, d)
        return d

    def seen(self, tag=None):
        return [
            e
            for e in self.get("/busa/seen")
            if tag is None or e["payload"] != "none" and e["payload"].get("tag") == tag
        ]

    # ---- events -------------------------------------------------------------------

    def test_emitted_events_reach_the_subscriber_in_order(self):
        d = self.post("/busa/emit", {"count": 3, "tag": "ordered"})
        got = wait_for(
            "3 events", lambda: len(self.seen("ordered")) == 3 and self.seen("ordered"), WAIT
        )
        self.assertEqual([e["payload"]["n"] for e in got], [1, 2, 3])
        seqs = [e["seq"] for e in got]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 3)
        for e in got:
            self.assertEqual(e["topic"], "busa.note")
            self.assertEqual(e["source"], "busa")
            self.assertEqual(e["request_id"], d["request_id"])
            self.assertEqual(e["attempt"], 1)
            self.assertIsInstance(e["time"], int)
            # the handler's ctx is the event's work
            self.assertEqual(e["method"], "EVENT")
            self.assertEqual(e["path"], "busa.note")
            self.assertEqual(e["kind"], "system")

    def test_null_payload_is_nil(self):
        before = len(self.get("/busa/seen"))
        st, _, _ = self.shared.request("POST", "/busa/emit-null")
        self.assertEqual(st, 204)
        got = wait_for(
            "the null event",
            lambda: [e for e in self.get("/busa/seen")[before:] if e["payload"] == "none"],
            WAIT,
        )
        self.assertEqual(len(got), 1)

    def test_only_committed_work_emits(self):
        st, _, b = self.shared.request("POST", "/busa/emit-then-fail", {"tag": "lost-error"})
        self.assertEqual(st, 500, b)
        st, _, b = self.shared.request("POST", "/busa/emit-then-problem", {"tag": "lost-problem"})
        self.assertEqual(st, 409, b)
        # an event emitted after them on the same topic arrives after them, had they existed
        self.post("/busa/emit", {"tag": "marker"})
        wait_for("the marker event", lambda: self.seen("marker"), WAIT)
        self.assertEqual(self.seen("lost-error"), [])
        self.assertEqual(self.seen("lost-problem"), [])

    def test_emit_in_get_and_bad_topic_raise(self):
        d = self.get("/busa/emit-in-get")
        self.assertIs(d["ok"], False)
        self.assertIn("not in GET", d["err"])
        self.assertIs(d["bad_ok"], False)
        self.assertIn("'busa..bad' is not a topic", d["bad_err"])

    def test_failing_handler_is_retried_without_its_writes(self):
        for mode, name in (("error", "by-error"), ("loop", "by-budget"), ("problem", "by-problem")):
            self.post("/busa/flaky", {"name": name, "mode": mode}, want=204)
        tries = wait_for(
            "the flaky events handled on their second attempt",
            lambda: (lambda t: len(t) == 3 and t)([t for t in self.get("/busa/tries")]),
            WAIT,
        )
        # each first attempt wrote "<name>/1" and then failed: rolled back
        self.assertEqual(sorted(t["key"] for t in tries), ["by-budget/2", "by-error/2", "by-problem/2"])
        log = self.shared.log()
        self.assertIn("flaky handler fails on purpose: by-error", log)
        self.assertIn("instruction budget exceeded", log)
        # a problem outside a request is an error like any other, logged where it was raised
        line = next(i for i, t in enumerate(BUSA.splitlines(), 1) if '"a problem on purpose"' in t)
        self.assertIn("init.lua:%d: zt.problem 409 flaky: a problem on purpose" % line, log)

    # ---- services ---------------------------------------------------------------------

    def test_call_another_plugins_service(self):
        d = self.post("/busa/call/busb.add", {"a": 2, "b": 40})
        self.assertEqual(d["result"]["sum"], 42)
        self.assertEqual((d["msg"], d["code"], d["reason"]), ("none", "none", "none"))
        # inside the caller's request: its caller, its id
        self.assertEqual(d["result"]["caller"], d["me"])
        self.assertNotEqual(d["me"], "nobody")
        self.assertEqual(d["result"]["request_id"], d["request_id"])
        self.assertEqual(d["result"]["method"], "POST")

    def test_call_nobody_provides(self):
        d = self.post("/busa/call/nobody.here", {"x": 1})
        self.assertEqual(d["result"], "nil")
        self.assertEqual(d["code"], "not-provided")
        self.assertEqual(d["reason"], "not-provided")
        self.assertIn("nobody.here", d["msg"])

    def test_failing_service_is_a_failed_call(self):
        d = self.post("/busa/call/busb.fail", {"who": "张三"})
        self.assertEqual(d["result"], "nil")
        self.assertEqual(d["code"], "failed")
        self.assertEqual(d["reason"], "error")  # what a Lua service raises
        self.assertIn("no credit for 张三", d["msg"])
        d = self.post("/busa/call/busb.bad-result")
        self.assertEqual((d["result"], d["code"]), ("nil", "failed"))
        self.assertIn("cannot encode a function", d["msg"])
        # the service's state has a budget of its own: the caller goes on after it is spent
        d = self.post("/busa/call/busb.loop")
        self.assertEqual((d["result"], d["code"]), ("nil", "failed"))
        self.assertIn("instruction budget exceeded", d["msg"])
        # the caller's state goes on
        self.assertEqual(self.post("/busa/call/busb.add", {"a": 1, "b": 1})["result"]["sum"], 2)

    def test_service_returning_nothing_is_null(self):
        d = self.post("/busa/call/busb.nothing")
        self.assertIsNone(d["result"])  # zt.json.null, not nil: the call worked
        self.assertEqual(d["code"], "none")

    def test_own_service_and_calls_back_into_the_caller(self):
        d = self.post("/busa/call/busa.echo", {"say": "self"})
        self.assertEqual(d["result"], {"echo": "self", "by": "busa"})
        d = self.post("/busa/nested")
        self.assertEqual(d["code"], "none", d)
        self.assertEqual(d["result"]["via"], "busb")
        self.assertEqual(d["result"]["echo"], {"echo": "hello", "by": "busa"})
        self.assertTrue(d["after"].startswith("POST "), d)
        echoes = self.get("/busa/echoes")
        self.assertIn(d["after"][5:], [e["request_id"] for e in echoes if e["said"] == "hello"])

    def test_nested_call_from_a_coroutine(self):
        d = self.post("/busa/nested-in-coroutine")
        self.assertEqual(d["code"], "none", d)
        self.assertEqual(d["result"]["echo"], {"echo": "from a coroutine", "by": "busa"})
        self.assertTrue(d["after"].startswith("resumed "), d)

    def test_service_writes_go_with_the_callers_transaction(self):
        self.post("/busa/store-then-fail/kept", {"fail": False})
        st, _, d = self.shared.json("GET", "/busb/kv/kept")
        self.assertEqual((st, d["value"]), (200, "stored by busb"))
        st, _, _ = self.shared.request("POST", "/busa/store-then-fail/dropped", {"fail": True})
        self.assertEqual(st, 500)
        st, _, _ = self.shared.request("GET", "/busb/kv/dropped")
        self.assertEqual(st, 404)


class LuaTimers(NodeTest):
    """Timers on a node of their own: the test moves its clock."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="zt-e2e-luatimers-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        lua_dir = lua_tree_with(
            cls.root + "/lua", {"busa": (manifest(), BUSA), "busb": (manifest(), BUSB)}
        )
        cls.shared_node(plugins=("busa", "busb"), lua_dir=lua_dir, env={"ZT_TEST_CLOCK": "1"})

    def get(self, path):
        st, _, d = self.shared.json("GET", path, auth=False)
        self.assertEqual(st, 200, d)
        return d

    def post(self, path, body=None, want=200):
        st, _, d = self.shared.json("POST", path, body if body is not None else {}, auth=False)
        self.assertEqual(st, want, d)
        return d

    def test_timers_fire_and_cancel(self):
        # the clock moves only for this node's tests: timers due in an hour
        a = self.post("/busa/timer", {"after": 3600 * 1000, "n": 1})
        b = self.post("/busa/timer", {"after": 3600 * 1000 + 1, "n": 2})
        c = self.post("/busa/timer", {"at": a["now"] + 3600 * 1000 + 2, "n": 3})
        for t in (a, b, c):
            self.assertRegex(t["id"], r"^[0-9A-Z]{26}$")
        self.assertEqual(len({a["id"], b["id"], c["id"]}), 3)
        self.assertIs(self.post("/busa/timer/%s/cancel" % a["id"])["cancelled"], True)
        self.assertIs(self.post("/busa/timer/%s/cancel" % a["id"])["cancelled"], False)
        self.assertIs(self.post("/busa/timer/%s/cancel" % ("0" * 26))["cancelled"], False)
        self.shared.set_clock(2 * 3600 * 1000)
        ticks = wait_for(
            "the two timers left",
            lambda: (lambda t: len(t) >= 2 and t)(
                [t for t in self.get("/busa/ticks") if t["key"] in (a["id"], b["id"], c["id"])]
            ),
            WAIT,
        )
        # a, the earliest, would have fired first: it is cancelled, so it never does
        self.assertEqual(sorted(t["key"] for t in ticks), sorted([b["id"], c["id"]]))
        by_id = {t["key"]: t for t in ticks}
        self.assertEqual(by_id[b["id"]]["n"], 2)
        self.assertEqual(by_id[c["id"]]["n"], 3)
        self.assertEqual(by_id[b["id"]]["source"], "busa")
        self.assertEqual(by_id[b["id"]]["topic"], "_busa.tick")
        # a timer that fired cannot be cancelled
        self.assertIs(self.post("/busa/timer/%s/cancel" % b["id"])["cancelled"], False)


class LuaNeeds(NodeTest):
    def test_a_missing_needed_service_stops_the_check(self):
        root = tempfile.mkdtemp(prefix="zt-e2e-luaneeds-")
        self.addCleanup(shutil.rmtree, root, True)
        lua_dir = lua_tree_with(
            root + "/lua",
            {
                "needy": (manifest(needs=["credit.check"]), "-- calls credit.check\n"),
                "hopeful": (manifest(wants=["sms.send"]), "-- calls sms.send when there\n"),
            },
        )
        n = self.node(plugins=("needy", "hopeful"), lua_dir=lua_dir, start=False)
        r = run(["check", "-c", n.conf])
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("credit.check", r.stdout + r.stderr)
        self.assertIn("needy", r.stdout + r.stderr)
        # a want that nobody provides does not stop it
        n2 = self.node(plugins=("hopeful",), lua_dir=lua_dir, start=False)
        r = run(["check", "-c", n2.conf])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
