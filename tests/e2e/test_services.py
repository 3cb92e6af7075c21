# test_services.py: services between plugins (zt_provide/zt_call), needs and wants, conflicts.
import os
import unittest

from ztnode import NodeTest, env, run, scrape

ZT_EINVAL = -3  # zt.h
ZT_EBUSY = -13
ZT_ECONFLICT = -9


def test_plugins():
    return os.path.join(env("ZT_BUILD"), "tests", "plugins")


def services_node(test, plugins, **kw):
    return test.node(plugins=plugins, plugin_dir=test_plugins(), sign_in=False, **kw)


def call(node, service, args=None, **extra):
    body = dict(service=service, **extra)
    if args is not None:
        body["args"] = args
    return node.json("POST", "/svccaller/call", body)


class Calls(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared_node(plugins=("svccredit", "svccaller"), plugin_dir=test_plugins(), sign_in=False)

    def test_call_reads_the_providers_records(self):
        n = self.shared
        st, _, _ = n.request("POST", "/svccredit/records", {"code": "A1", "blacklisted": True})
        self.assertEqual(st, 204)
        st, _, _ = n.request("POST", "/svccredit/records", {"code": "B2", "blacklisted": False})
        self.assertEqual(st, 204)
        st, _, d = call(n, "svccredit.check", {"code": "A1"})
        self.assertEqual((st, d), (200, {"provided": True, "result": {"code": "A1", "found": True, "blacklisted": True}}))
        st, _, d = call(n, "svccredit.check", {"code": "B2"})
        self.assertEqual(d["result"], {"code": "B2", "found": True, "blacklisted": False})
        st, _, d = call(n, "svccredit.check", {"code": "C3"})
        self.assertEqual(d["result"], {"code": "C3", "found": False, "blacklisted": False})

    def test_service_errors_reach_the_caller(self):
        st, _, d = call(self.shared, "svccredit.check", {"nocode": 1})
        self.assertEqual((st, d["error"]), (200, ZT_EINVAL), d)

    def test_unknown_service_is_not_found(self):
        st, _, d = call(self.shared, "svccredit.nosuch", {})
        self.assertEqual((st, d), (200, {"provided": False}))

    def test_service_writes_commit_with_the_caller(self):
        n = self.shared
        before = n.json("GET", "/svccredit/checks")[2]["count"]
        st, _, d = call(n, "svccredit.check", {"code": "K1"})
        self.assertEqual(st, 200)
        self.assertEqual(n.json("GET", "/svccredit/checks")[2]["count"], before + 1)
        # the caller fails after the call: the service's write is rolled back with it
        st, _, d = call(n, "svccredit.check", {"code": "K2"}, reject=True)
        self.assertEqual(st, 422)
        self.assertEqual(n.json("GET", "/svccredit/checks")[2]["count"], before + 1)

    def test_a_failed_call_leaves_nothing_of_itself(self):
        # the caller copes with the failure and commits: what the service wrote before it
        # failed (a record, a timer) is not kept, what the caller wrote before the call is
        n = self.shared
        count = lambda: n.json("GET", "/svccredit/checks")[2]["count"]
        before, timers = count(), scrape(n).get("zt_timers_pending")
        st, _, d = call(n, "svccredit.check", {"code": "F1", "then_fail": True})
        self.assertEqual((st, d.get("error")), (200, ZT_ECONFLICT), d)
        self.assertEqual(count(), before)
        self.assertEqual(scrape(n).get("zt_timers_pending"), timers)
        # nested: the outer call writes, the inner one writes and fails, the outer goes on
        # (a cursor it opened before the inner call reads on after it) and is kept
        st, _, d = call(n, "svccredit.check", {"code": "F2", "then_call": {"code": "F3", "then_fail": True}})
        self.assertEqual(st, 200, d)
        self.assertEqual((d["result"]["inner_error"], d["result"]["checks_seen"]), (ZT_ECONFLICT, before + 1), d)
        self.assertEqual(count(), before + 1)
        # and an inner call that succeeds is kept with the outer one
        st, _, d = call(n, "svccredit.check", {"code": "F4", "then_call": {"code": "F5"}})
        self.assertEqual((d["result"]["inner_error"], d["result"]["checks_seen"]), (0, before + 3), d)
        self.assertEqual(count(), before + 3)

    def test_args_absent_is_json_null(self):
        st, _, d = call(self.shared, "svccredit.echo")
        self.assertEqual(d, {"provided": True, "result": {"is_null": True, "value": None}})
        st, _, d = call(self.shared, "svccredit.echo", {"x": [1, "y"]})
        self.assertEqual(d, {"provided": True, "result": {"is_null": False, "value": {"x": [1, "y"]}}})

    def test_call_depth_is_limited_to_16(self):
        st, _, d = call(self.shared, "svccredit.recurse", {"n": 15})
        self.assertEqual(d, {"provided": True, "result": {"levels": 16}})
        st, _, d = call(self.shared, "svccredit.recurse", {"n": 16})
        self.assertEqual(d["error"], ZT_EBUSY, d)

    def test_a_service_acts_as_its_own_plugin(self):
        # it sets a timer on its own private topic "_svccredit.*": allowed only because
        # the timer belongs to the provider, not to the calling plugin
        st, _, d = call(self.shared, "svccredit.remind")
        self.assertEqual(st, 200, d)
        self.assertTrue(d["provided"], d)
        self.assertEqual(len(d["result"]), 26, d)


class Wants(NodeTest):
    def test_a_wanted_service_missing_is_handled_by_the_caller(self):
        n = services_node(self, ("svccaller",))
        st, _, d = call(n, "svccredit.check", {"code": "A1"})
        self.assertEqual((st, d), (200, {"provided": False}))
        logged = [r for r in n.log_records() if r.get("plugin") == "svccaller" and "svccredit.check" in r.get("msg", "")]
        self.assertTrue(logged, n.log())
        self.assertEqual(logged[0]["level"], "info")


NEEDS_MSG = (
    "plugin 'svcneeds' needs service 'svccredit.check', which no enabled plugin provides: "
    "enable the plugin that provides it (e.g. add it to plugins) or remove 'svcneeds'"
)


class Needs(NodeTest):
    def test_check_fails_on_a_missing_need(self):
        n = services_node(self, ("svcneeds",), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(NEEDS_MSG, r.stderr)

    def test_serve_refuses_a_missing_need(self):
        n = services_node(self, ("svcneeds", "svccaller"), start=False)
        r = run(["serve", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(NEEDS_MSG, r.stderr)

    def test_a_need_met_starts(self):
        n = services_node(self, ("svcneeds", "svccredit"), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("OK", r.stdout)
        n.start()
        st, _, _ = n.request("GET", "/healthz")
        self.assertEqual(st, 200)

    def test_two_providers_conflict(self):
        n = services_node(self, ("svccredit", "svcdup"), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(
            "plugin 'svcdup' failed to start: service 'svccredit.check' of plugin 'svcdup' is "
            "already provided by plugin 'svccredit': enable only one of them",
            r.stderr,
        )
        r = run(["serve", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("already provided by plugin 'svccredit'", r.stderr)

    def test_a_bad_service_name_is_refused_at_load(self):
        n = services_node(self, ("svcbadname",), start=False)
        r = run(["check", "-c", n.conf])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("plugin 'svcbadname'", r.stderr)
        self.assertIn("wants service 'credit check': a service name is 1..64 bytes", r.stderr)


if __name__ == "__main__":
    unittest.main()
