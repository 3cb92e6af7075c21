# test_approval.py: the approval plugin (一站式网上审批) over HTTP, on the workflow engine.
import datetime
import json
import os
import tempfile
import time
import unittest

from workcal import DAY, HOUR, add_work_ms, beijing_date, day_start, work_between
from ztnode import NodeTest, credit_code, edit_db, lua_tree_with, scrape, wait_for

TEST_CLOCK = {"ZT_TEST_CLOCK": "1"}
AUTH = {"password_ops": 1, "password_memory": 8192, "session_ttl": 366 * 86400,
        "idle_timeout": 366 * 86400, "password_max_age": 0}  # the clock moves months here
PDF = {"Content-Type": "application/pdf"}

GOOD_CODE = credit_code("91330122MA2A00001")
BLACK_CODE = credit_code("91330122MA2A00002")

# A stand-in for the credit plugin (the real one is another issue): credit.check says
# BLACK_CODE is on a blacklist.
CREDIT_MANIFEST = 'return { version = "0.0.1", description = "stand-in credit checks" }\n'
CREDIT_INIT = (
    'zt.provide("credit.check", function(args)\n'
    '  if args.code == "%s" then return { blacklisted = true, reason = "拒不履行法院判决" } end\n'
    "  return { blacklisted = false }\n"
    "end)\n" % BLACK_CODE
)

DEPTS = [("scjg", "市场监督管理局"), ("scjg-sp", "食品安全科"), ("wjw", "卫生健康委员会"),
         ("zjj", "住房和城乡建设局"), ("gajj", "公安交警大队"), ("zhzf", "综合行政执法局")]


def food_form():
    return {"business_name": "城关镇好味道餐馆", "address": "城关镇人民路 8 号",
            "categories": "热食类食品制售", "area_m2": 86.5}


class ApprovalTest(NodeTest):
    # the tests make many applications as one account: more than the default's 30 an hour
    OPTIONS = "approval = { applications_per_hour = 1000 }"
    SEAL_ALGORITHM = "Ed25519"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="zt-approval-")
        lua = lua_tree_with(os.path.join(cls.tmp, "lua"), {"credit": (CREDIT_MANIFEST, CREDIT_INIT)})
        n = cls.shared_node(plugins=("workflow", "approval", "credit"), lua_dir=lua, auth=AUTH,
                            env=TEST_CLOCK, roles=("approval_admin",), options=cls.OPTIONS)
        for code, name in DEPTS:
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": name, "parent": "root"})
            assert st == 201, (st, d)
        cls.clerk = n.new_user("clerk", ["approval_clerk"], "scjg")
        cls.clerk_wjw = n.new_user("clerk_wjw", ["approval_clerk"], "wjw")
        cls.clerk_zjj = n.new_user("clerk_zjj", ["approval_clerk"], "zjj")
        cls.sp = n.new_user("reviewer_sp", ["approval_reviewer"], "scjg-sp")
        cls.wjw = n.new_user("reviewer_wjw", ["approval_reviewer"], "wjw")
        cls.zjj = n.new_user("reviewer_zjj", ["approval_reviewer"], "zjj")
        cls.gajj = n.new_user("reviewer_gajj", ["approval_reviewer"], "gajj")
        cls.zhzf = n.new_user("reviewer_zhzf", ["approval_reviewer"], "zhzf")
        cls.supervisor = n.new_user("supervisor", ["approval_supervisor"], "root")
        cls.ent = cls.register("enterprise", "haoweidao", "城关镇好味道餐饮有限公司", GOOD_CODE)
        cls.ent2 = cls.register("enterprise", "other-co", "另一家公司", credit_code("91330122MA2A00003"))
        cls.bad = cls.register("enterprise", "badco", "失信有限公司", BLACK_CODE)
        cls.citizen = cls.register("citizen", "zhangsan", "张三", None)

    @classmethod
    def register(cls, kind, login, name, code):
        n = cls.shared
        body = {"kind": kind, "login": login, "name": name, "password": "Applicant-password-1"}
        if code:
            body["credit_code"] = code
        st, _, d = n.json("POST", "/auth/register", body, auth=False)
        assert st == 201, (st, d)
        st, _, d = n.login(login, "Applicant-password-1")
        assert st == 200, (st, d)
        return {"Authorization": "Bearer " + d["token"]}

    # ---- helpers -------------------------------------------------------------------

    def call(self, method, path, who, body=None, headers=None):
        h = dict(who or {})
        h.update(headers or {})
        if isinstance(body, bytes):
            st, hd, b = self.shared.request(method, path, body, h, auth=False)
            return st, (json.loads(b) if b and hd.get("content-type", "").endswith("json") else b)
        st, _, d = self.shared.json(method, path, body, h, auth=who is None and False)
        return st, d

    def ok(self, method, path, who, body=None, status=200, headers=None):
        st, d = self.call(method, path, who, body, headers)
        self.assertEqual(st, status, d)
        return d

    def draft(self, item="FOOD-LICENCE", who=None, form=None, code=GOOD_CODE):
        who = who or self.ent
        body = {"item": item, "form": form if form is not None else food_form()}
        if code:
            body["credit_code"] = code
        return self.ok("POST", "/approval/applications", who, body, 201)

    def upload_all(self, app, who=None, skip=()):
        item = self.ok("GET", "/approval/items/" + app["item"], None)
        for m in item["materials"]:
            if m["required"] and m["name"] not in skip:
                self.ok("PUT", "/approval/applications/%s/materials/%s" % (app["number"], m["name"]),
                        who or self.ent, b"%PDF-1.7 " + m["name"].encode(), headers=PDF)

    def submitted(self, item="FOOD-LICENCE", who=None, code=GOOD_CODE, form=None):
        app = self.draft(item, who, form, code)
        self.upload_all(app, who)
        return self.ok("POST", "/approval/applications/%s/submit" % app["number"], who or self.ent)

    def app(self, number, who=None):
        return self.ok("GET", "/approval/applications/" + number, who or self.ent)

    def wait_state(self, number, state, who=None):
        def reached():
            a = self.app(number, who)
            return a if a["state"] == state else None
        return wait_for("application %s to be %s" % (number, state), reached)

    def inbox_kinds(self, number, who=None):
        d = self.ok("GET", "/approval/inbox?limit=200", who or self.ent)
        return [m["kind"] for m in reversed(d["items"]) if m["number"] == number]


class Catalogue(ApprovalTest):
    def test_public_catalogue(self):
        d = self.ok("GET", "/approval/items", None)
        codes = [i["code"] for i in d["items"]]
        self.assertEqual(codes, ["BIRTH-REG", "FOOD-LICENCE", "ROAD-DIG"])
        d = self.ok("GET", "/approval/items?q=%E9%A3%9F%E5%93%81", None)  # 食品
        self.assertEqual([i["code"] for i in d["items"]], ["FOOD-LICENCE"])
        d = self.ok("GET", "/approval/items?department=gajj", None)  # a countersigning one
        self.assertEqual([i["code"] for i in d["items"]], ["ROAD-DIG"])
        it = self.ok("GET", "/approval/items/FOOD-LICENCE", None)
        self.assertEqual(it["parallel_departments"], ["scjg-sp", "wjw"])
        self.assertEqual((it["statutory_days"], it["promised_days"]), (20, 10))
        self.assertTrue(all("formats" in m and "max_bytes" in m for m in it["materials"]))
        st, d = self.call("GET", "/approval/items/NOPE", None)
        self.assertEqual(st, 404)

    def test_admin_manages_items(self):
        item = {"name": "户外广告设置许可", "department": "zhzf", "legal_basis": "《城市市容和环境卫生管理条例》",
                "statutory_days": 20, "promised_days": 5, "workflow": "approval_simple",
                "materials": [{"name": "design", "title": "设计图", "formats": ["application/pdf"],
                               "max_bytes": 1000}]}
        d = self.ok("PUT", "/approval/items/AD-SIGN", self.shared.auth, item, 201)
        self.assertEqual(d["source"], "managed")
        self.assertIn("AD-SIGN", [i["code"] for i in self.ok("GET", "/approval/items", None)["items"]])
        # bad items name the field
        for bad, word in [({**item, "promised_days": 30}, "promised_days"),
                          ({**item, "department": "a.b"}, "department"),
                          ({**item, "materials": [{"name": "x", "title": "x", "formats": ["video/mp4"]}]},
                           "formats"),
                          # what it names must exist
                          ({**item, "department": "nosuchdept"}, "no department nosuchdept"),
                          ({**item, "workflow": "approval_parallel", "parallel_departments": ["zhzf", "gone"]},
                           "no department gone"),
                          ({**item, "workflow": "approval_countersign",
                            "countersign": {"departments": ["zhzf", "gone2"], "need": 1}},
                           "countersign: there is no department gone2"),
                          ({**item, "workflow": "approval_simpel"}, "no workflow definition approval_simpel"),
                          # the departments that decide fit the workflow: none would mean a
                          # sealed approval nobody reviewed
                          ({**item, "workflow": "approval_parallel"},
                           "parallel_departments: workflow approval_parallel"),
                          ({**item, "workflow": "approval_countersign"},
                           "countersign: workflow approval_countersign"),
                          ({**item, "workflow": "approval_parallel",
                            "countersign": {"departments": ["zjj", "gajj"], "need": 2}},
                           "parallel_departments: workflow approval_parallel"),
                          ({**item, "parallel_departments": ["wjw"]},
                           "parallel_departments: workflow approval_simple"),
                          ({**item, "name": "two\nlines"}, "name"),
                          ({**item, "form": [{"name": "n", "title": "N", "type": "string", "min": 1}]},
                           "form[1].min"),
                          ({**item, "form": [{"name": "n", "title": "N", "type": "integer", "min": 5,
                                              "max": 1}]}, "form[1].min")]:
            st, d = self.call("PUT", "/approval/items/AD-SIGN", self.shared.auth, bad)
            self.assertEqual(st, 422, d)
            self.assertIn(word, d["detail"])
        # what GET shows can be PUT back as it is (countersign null: none)
        got = self.ok("GET", "/approval/items/AD-SIGN", None)
        self.assertIsNone(got["countersign"])
        back = {k: v for k, v in got.items() if k not in ("source", "updated_by", "updated_at")}
        self.ok("PUT", "/approval/items/AD-SIGN", self.shared.auth, back, 200)
        # not an administrator
        st, d = self.call("PUT", "/approval/items/AD-SIGN", self.clerk, item)
        self.assertEqual(st, 403)
        # a shipped item cannot be deleted, only withdrawn
        st, d = self.call("DELETE", "/approval/items/BIRTH-REG", self.shared.auth)
        self.assertEqual((st, d["type"]), (409, "/problems/shipped-item"))
        self.ok("DELETE", "/approval/items/AD-SIGN", self.shared.auth, status=204)
        st, _ = self.call("GET", "/approval/items/AD-SIGN", None)
        self.assertEqual(st, 404)


class Applications(ApprovalTest):
    def test_full_lifecycle_with_parallel_approval(self):
        app = self.draft()
        no = app["number"]
        self.assertRegex(no, r"^SP\d{8}\d{6}$")
        self.assertEqual(app["state"], "draft")
        self.assertRegex(app["query_code"], r"^[2-9A-Z]{8}$")
        self.upload_all(app)
        a = self.ok("POST", "/approval/applications/%s/submit" % no, self.ent)
        self.assertEqual(a["state"], "submitted")
        self.assertGreater(a["deadline"], a["submitted_at"])
        # the clerk of the responsible department accepts (credit check passes)
        a = self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk, {"opinion": "材料齐全"})
        self.assertEqual(a["state"], "reviewing")
        # each parallel department has its own task on its to-do list
        todo_sp = self.ok("GET", "/workflow/tasks", self.sp)["items"]
        todo_wjw = self.ok("GET", "/workflow/tasks", self.wjw)["items"]
        self.assertEqual([t["department"] for t in todo_sp if t["business_key"] == no], ["scjg-sp"])
        self.assertEqual([t["department"] for t in todo_wjw if t["business_key"] == no], ["wjw"])
        # due when the application is: the reviewers' to-do lists show the promised time
        for t in [t for t in todo_sp + todo_wjw if t["business_key"] == no]:
            self.assertEqual((t["due"], t["overdue"]), (a["deadline"], False), t)
        self.ok("POST", "/approval/applications/%s/review" % no, self.sp,
                {"decision": "approve", "opinion": "符合食品安全要求"})
        # the health department decides through the unified to-do list instead
        task = [t for t in todo_wjw if t["business_key"] == no][0]
        self.ok("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw,
                {"decision": "approve", "opinion": "卫生条件合格"})
        a = self.wait_state(no, "approved")
        self.assertEqual(sorted(o["department"] for o in a["opinions"]), ["scjg-sp", "wjw"])
        res = a["result"]
        self.assertEqual(res["decision"], "approved")
        # the decision is sealed by the responsible department, and anyone can verify it
        self.assertEqual(res["seal"]["department"], "scjg")
        self.assertEqual(res["seal"]["algorithm"], self.SEAL_ALGORITHM)
        st, _, v = self.shared.json("POST", "/seal/verify", {"document": res["document"], "seal": res["seal"]},
                                    auth=False)
        self.assertEqual(st, 200, v)
        self.assertTrue(v["valid"], v)
        forged = dict(res["document"], counterparty="别的公司")
        st, _, v = self.shared.json("POST", "/seal/verify", {"document": forged, "seal": res["seal"]}, auth=False)
        self.assertFalse(v.get("valid"), v)
        # published without personal data
        pub = self.ok("GET", "/approval/decisions/" + res["decision_no"], None)
        self.assertEqual(pub["counterparty"], "城关镇好味道餐饮有限公司")
        self.assertEqual(pub["counterparty_code"], GOOD_CODE)
        self.assertNotIn("application", pub)
        self.assertNotIn("form", json.dumps(pub))
        listed = self.ok("GET", "/approval/decisions", None)["items"]
        self.assertIn(res["decision_no"], [d["decision_no"] for d in listed])
        # told at every step
        self.assertEqual(self.inbox_kinds(no), ["submitted", "accepted", "progress", "progress", "approved"])

    def test_a_department_decides_in_so_many_words(self):
        # through the unified to-do list a reviewer completes the task with its decision:
        # a completion with none (or another word) used to count as an approval, and the
        # decision was sealed without anyone having said "approve"
        no = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        task = [t for t in self.ok("GET", "/workflow/tasks", self.wjw)["items"] if t["business_key"] == no][0]
        for body in ({}, {"opinion": "看过了"}, {"decision": "ok"}, {"decision": "Approve"}):
            st, d = self.call("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw, body)
            self.assertEqual(st, 422, d)
            self.assertIn("approve, refuse", d["detail"])
        self.ok("POST", "/approval/applications/%s/review" % no, self.sp, {"decision": "approve"})
        time.sleep(0.3)
        a = self.app(no)
        self.assertEqual((a["state"], [o["department"] for o in a["opinions"]]), ("reviewing", ["scjg-sp"]))
        self.ok("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw, {"decision": "approve"})
        self.assertEqual(self.wait_state(no, "approved")["result"]["decision"], "approved")

    def test_a_refusal_on_the_to_do_list_says_why(self):
        # the /review route asks a refusing department for its opinion; the to-do list let a
        # refusal through without one, and the applicant was refused with no reason
        no = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        task = [t for t in self.ok("GET", "/workflow/tasks", self.wjw)["items"] if t["business_key"] == no][0]
        for body in ({"decision": "refuse"}, {"decision": "refuse", "opinion": ""}):
            st, d = self.call("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw, body)
            self.assertEqual(st, 422, d)
            self.assertIn("opinion: task 'review' decided 'refuse' needs an opinion saying why", d["detail"])
        self.assertEqual(self.app(no)["state"], "reviewing")
        self.ok("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw,
                {"decision": "refuse", "opinion": "从业人员无健康证明"})
        self.assertEqual(self.wait_state(no, "refused")["result"]["reason"], "从业人员无健康证明")
        d = self.ok("GET", "/workflow/definitions/approval_parallel", self.wjw)
        review = [x for x in d["nodes"] if x["id"] == "review"][0]
        self.assertEqual(review["reasons"], ["refuse"])

    def test_a_reviewer_sets_none_of_the_application_data(self):
        # the to-do list merged a completion's form into the instance's data: a reviewer
        # could set head_role (whom every department's overdue task escalates to) or the
        # deadline of the others' tasks
        no = self.submitted()["number"]
        inst = self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)["instance"]
        before = self.ok("GET", "/workflow/instances/" + inst, self.wjw)["data"]
        task = [t for t in self.ok("GET", "/workflow/tasks", self.wjw)["items"] if t["business_key"] == no][0]
        for form, field in (({"head_role": "nobody", "deadline": 1}, "head_role"), ({"parallel": []}, "parallel"),
                            ({"opinion_extra": "x"}, "opinion_extra")):
            st, d = self.call("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw,
                              {"decision": "approve", "form": form})
            self.assertEqual(st, 422, d)
            self.assertIn("form.%s: task 'review' takes no form" % field, d["detail"])
        self.assertEqual(self.ok("GET", "/workflow/instances/" + inst, self.wjw)["data"], before)
        # the departments decide as before: the to-do list without a form, and /review
        self.ok("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw, {"decision": "approve"})
        self.ok("POST", "/approval/applications/%s/review" % no, self.sp, {"decision": "approve"})
        self.assertEqual(self.wait_state(no, "approved")["result"]["decision"], "approved")
        # every user task of the shipped definitions says what it sets: acceptance the
        # deadline (its route does), the departments nothing
        for name in ("approval_simple", "approval_parallel", "approval_countersign"):
            d = self.ok("GET", "/workflow/definitions/" + name, self.wjw)
            forms = {x["id"]: x.get("form") for x in d["nodes"] if x["type"] == "user"}
            self.assertEqual(forms.pop("accept"), ["deadline"], name)
            self.assertEqual(list(forms.values()), [[]], name)

    def test_one_department_refusing_ends_it(self):
        no = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        self.ok("POST", "/approval/applications/%s/review" % no, self.wjw,
                {"decision": "refuse", "opinion": "后厨面积不足"})
        a = self.wait_state(no, "refused")
        self.assertEqual(a["result"]["reason"], "后厨面积不足")
        self.assertEqual([o["department"] for o in a["opinions"]], ["wjw"])
        # the other department's task is gone
        todo = self.ok("GET", "/workflow/tasks", self.sp)["items"]
        self.assertNotIn(no, [t["business_key"] for t in todo])
        st, d = self.call("POST", "/approval/applications/%s/review" % no, self.sp, {"decision": "approve"})
        self.assertEqual(st, 409, d)
        self.assertEqual(self.inbox_kinds(no)[-1], "refused")

    def test_countersign_two_of_three(self):
        form = {"road": "人民路（解放街至中山路段）", "length_m": 120, "start_date": "2026-12-01", "days": 15}
        no = self.submitted("ROAD-DIG", form=form)["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk_zjj)
        self.ok("POST", "/approval/applications/%s/review" % no, self.gajj, {"decision": "approve"})
        self.assertEqual(self.app(no)["state"], "reviewing")
        self.ok("POST", "/approval/applications/%s/review" % no, self.zhzf, {"decision": "approve"})
        a = self.wait_state(no, "approved")
        self.assertEqual(a["result"]["seal"]["department"], "zjj")
        todo = self.ok("GET", "/workflow/tasks", self.zjj)["items"]
        self.assertNotIn(no, [t["business_key"] for t in todo])  # the third is cancelled

    def test_countersign_need_comes_from_the_item(self):
        item = self.ok("GET", "/approval/items/ROAD-DIG", None)
        for k in ("source",):
            item.pop(k, None)
        item["countersign"] = {"departments": ["zjj", "gajj", "zhzf"], "need": 3}
        self.ok("PUT", "/approval/items/ROAD-DIG-ALL", self.shared.auth, dict(item, code="ROAD-DIG-ALL"), 201)
        form = {"road": "解放街", "length_m": 30, "start_date": "2026-12-05", "days": 3}
        no = self.submitted("ROAD-DIG-ALL", form=form)["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk_zjj)
        self.ok("POST", "/approval/applications/%s/review" % no, self.gajj, {"decision": "approve"})
        self.ok("POST", "/approval/applications/%s/review" % no, self.zhzf, {"decision": "approve"})
        time.sleep(0.2)
        self.assertEqual(self.app(no)["state"], "reviewing")  # all three must sign
        self.ok("POST", "/approval/applications/%s/review" % no, self.zjj, {"decision": "approve"})
        self.wait_state(no, "approved")

    def test_an_applicant_who_closes_the_account(self):
        # drafts are withdrawn and their files deleted; what was handed in goes on, its
        # history says so, and its progress stays readable by number and query code
        who = self.register("citizen", "leaving", "王离", None)
        form = {"spouse_name": "李四", "children": 1}
        draft = self.draft("BIRTH-REG", who, form, None)
        self.upload_all(draft, who)
        handed = self.submitted("BIRTH-REG", who, None, form)
        code = self.app(handed["number"], who)["query_code"]
        st, d = self.call("POST", "/auth/close", who, {"password": "Applicant-password-1"})
        self.assertEqual(st, 204, d)
        self.assertEqual(self.call("GET", "/approval/applications", who)[0], 401)
        def withdrawn():
            st, d = self.call("GET", "/approval/query?number=%s&code=%s"
                              % (draft["number"], draft["query_code"]), None)
            return d if st == 200 and d["state"] == "withdrawn" else None
        wait_for("the draft to be withdrawn", withdrawn)
        kept = self.app(handed["number"], self.clerk_wjw)
        self.assertEqual(kept["state"], "submitted")
        self.assertIn("applicant account closed", [h["action"] for h in kept["history"]])
        st, d = self.call("GET", "/approval/query?number=%s&code=%s" % (handed["number"], code), None)
        self.assertEqual((st, d["state"]), (200, "submitted"))
        self.ok("POST", "/approval/applications/%s/accept" % handed["number"], self.clerk_wjw)

    def test_citizen_simple_registration(self):
        # a count cannot be negative: the item gives the field its range
        for children in (-3, 21):
            st, d = self.call("POST", "/approval/applications", self.citizen,
                              {"item": "BIRTH-REG", "form": {"spouse_name": "李四", "children": children}})
            self.assertEqual(st, 422, d)
            self.assertIn("form.children (现有子女数): from 0 to 20", d["detail"])
        form = {"spouse_name": "李四", "children": 0}
        no = self.submitted("BIRTH-REG", who=self.citizen, code=None, form=form)["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk_wjw)
        self.ok("POST", "/approval/applications/%s/review" % no, self.wjw, {"decision": "approve"})
        a = self.wait_state(no, "approved", self.citizen)
        # a citizen's name is not published in full
        pub = self.ok("GET", "/approval/decisions/" + a["result"]["decision_no"], None)
        self.assertEqual(pub["counterparty"], "张*")

    def test_an_applicant_holds_so_many_drafts(self):
        who = self.register("citizen", "drafter", "王五", None)
        form = {"spouse_name": "李四", "children": 0}
        made = [self.draft("BIRTH-REG", who, form, None)["number"] for _ in range(10)]
        st, d = self.call("POST", "/approval/applications", who, {"item": "BIRTH-REG", "form": form})
        self.assertEqual((st, d["type"]), (409, "/problems/too-many-drafts"), d)
        self.assertIn("10 drafts", d["detail"])
        # they are counted from the index of open drafts (not by reading every application
        # the applicant ever made); drafts made before it existed are put in it at a start
        n = self.shared
        n.stop()
        edit_db(self, n, None, lambda txn, open_db: txn.drop(open_db("approval/drafts"), delete=True))
        n.start()
        st, d = self.call("POST", "/approval/applications", who, {"item": "BIRTH-REG", "form": form})
        self.assertEqual((st, d["type"]), (409, "/problems/too-many-drafts"), d)
        self.assertIn("10 drafts", d["detail"])
        # a withdrawn draft no longer counts, nor does a submitted application
        self.ok("POST", "/approval/applications/%s/withdraw" % made[0], who)
        self.draft("BIRTH-REG", who, form, None)
        self.upload_all({"number": made[1], "item": "BIRTH-REG"}, who)
        self.ok("POST", "/approval/applications/%s/submit" % made[1], who)
        self.draft("BIRTH-REG", who, form, None)
        st, d = self.call("POST", "/approval/applications", who, {"item": "BIRTH-REG", "form": form})
        self.assertEqual(st, 409, d)

    def test_bad_input_is_refused_and_writes_nothing(self):
        st, d = self.call("POST", "/approval/applications", self.ent, {"item": "NOPE", "form": {}})
        self.assertEqual(st, 422)
        self.assertIn("no item NOPE", d["detail"])
        # what is not a string is named by its kind (never a Lua address: "table: 0x5562…")
        for item, kind in (({}, "a JSON object or list"), ([], "a JSON object or list"), (7, "7"), (None, "null")):
            st, d = self.call("POST", "/approval/applications", self.ent, {"item": item, "form": {}})
            self.assertEqual(st, 422, d)
            self.assertEqual(d["detail"], "item: the code of an item (a string), not " + kind)
        st, d = self.call("POST", "/approval/applications", self.ent,
                          {"item": "FOOD-LICENCE", "form": food_form(), "credit_code": {"a": 1}})
        self.assertEqual(st, 422, d)
        self.assertNotIn("0x", d["detail"])
        self.assertIn("credit_code: a JSON object or list is not this account's code", d["detail"])
        st, d = self.call("POST", "/approval/applications", self.ent, {"item": "FOOD-LICENCE", "form": {}})
        self.assertEqual(st, 422)
        self.assertIn("business_name", d["detail"])
        st, d = self.call("POST", "/approval/applications", self.citizen,
                          {"item": "FOOD-LICENCE", "form": food_form()})
        self.assertEqual(st, 422)  # the item is for enterprises
        st, d = self.call("POST", "/approval/applications", self.clerk,
                          {"item": "FOOD-LICENCE", "form": food_form()})
        self.assertEqual(st, 403)  # staff do not apply
        app = self.draft()
        no = app["number"]
        path = "/approval/applications/%s/materials/" % no
        st, d = self.call("PUT", path + "application", self.ent, b"GIF89a", {"Content-Type": "image/gif"})
        self.assertEqual((st, d["type"]), (415, "/problems/wrong-format"))
        st, d = self.call("PUT", path + "application", self.ent, b"x" * (5 * 1024 * 1024 + 1), PDF)
        self.assertEqual((st, d["type"]), (413, "/problems/file-too-large"))
        st, d = self.call("PUT", path + "passport", self.ent, b"%PDF", PDF)
        self.assertEqual(st, 422)
        # none of those left a material behind
        self.assertEqual(self.app(no)["materials"], {})
        self.upload_all(app, skip=("floor_plan",))
        st, d = self.call("POST", "/approval/applications/%s/submit" % no, self.ent)
        self.assertEqual(st, 422)
        self.assertIn("floor_plan", d["detail"])
        self.assertEqual(self.app(no)["state"], "draft")
        # actions in the wrong state, by the wrong people
        # (a draft is not the clerk's to see: 404, as for any number they may not see)
        st, d = self.call("POST", "/approval/applications/%s/accept" % no, self.clerk)
        self.assertEqual((st, d["type"]), (404, "/problems/not-found"))
        self.upload_all(app)
        self.ok("POST", "/approval/applications/%s/submit" % no, self.ent)
        st, d = self.call("POST", "/approval/applications/%s/accept" % no, self.clerk_wjw)
        self.assertEqual(st, 403)  # not the responsible department's clerk
        st, d = self.call("POST", "/approval/applications/%s/submit" % no, self.ent)
        self.assertEqual(st, 409)
        st, d = self.call("PUT", path + "application", self.ent, b"%PDF-again", PDF)
        self.assertEqual(st, 409)  # no uploads once submitted (unless supplements are asked)

    def test_materials_are_kept_with_their_digest(self):
        app = self.draft()
        body = b"%PDF-1.7 the application form"
        m = self.ok("PUT", "/approval/applications/%s/materials/application" % app["number"], self.ent, body,
                    headers=PDF)
        self.assertEqual(m["size"], len(body))
        import hashlib
        self.assertEqual(m["digest"], hashlib.blake2b(body, digest_size=32).hexdigest())
        st, h, b = self.shared.request("GET", "/approval/applications/%s/materials/application" % app["number"],
                                       headers=self.ent, auth=False)
        self.assertEqual((st, h["content-type"], b), (200, "application/pdf", body))

    def test_a_withdrawn_draft_leaves_no_timer(self):
        # the draft's expiry timer was set after the application was saved, so its id was
        # never kept and nothing could cancel it: every draft of the last 30 days stayed
        # pending (zt_timers_pending), handed in or withdrawn
        def pending():
            return scrape(self.shared).get("zt_timers_pending")
        base = pending()
        a = self.draft()
        self.assertEqual(pending(), base + 1)
        # withdrawn, it is purged later (purge_hours): that timer instead of its expiry
        self.ok("POST", "/approval/applications/%s/withdraw" % a["number"], self.ent)
        self.assertEqual(pending(), base + 1)
        # handed in, its expiry is cancelled too: once it is withdrawn (its time limits and
        # its workflow instance cancelled; no purge, it was handed in) nothing is left
        base = pending()
        a = self.submitted()
        self.assertGreater(pending(), base)
        self.ok("POST", "/approval/applications/%s/withdraw" % a["number"], self.ent)
        self.assertEqual(pending(), base)

    def test_privacy_between_applicants(self):
        app = self.draft()
        no = app["number"]
        st, d = self.call("GET", "/approval/applications/" + no, self.ent2)
        self.assertEqual(st, 404)
        st, d = self.call("GET", "/approval/applications/%s/materials/application" % no, self.ent2)
        self.assertEqual(st, 404)
        st, d = self.call("POST", "/approval/applications/%s/withdraw" % no, self.ent2)
        self.assertEqual(st, 404)
        mine = [a["number"] for a in self.ok("GET", "/approval/applications", self.ent2)["items"]]
        self.assertNotIn(no, mine)
        self.assertIn(no, [a["number"] for a in self.ok("GET", "/approval/applications", self.ent)["items"]])
        # staff outside the item's departments do not see it either
        st, d = self.call("GET", "/approval/applications/" + no, self.zhzf)
        self.assertEqual(st, 404)
        # nor, while it is a draft, do its own departments' staff: it is the applicant's own
        # work until submitted (this pinned the opposite before)
        for who in (self.sp, self.clerk):
            st, d = self.call("GET", "/approval/applications/" + no, who)
            self.assertEqual(st, 404, d)
            st, d = self.call("GET", "/approval/applications/%s/materials/application" % no, who)
            self.assertEqual(st, 404, d)
        self.upload_all(app)
        self.ok("POST", "/approval/applications/%s/submit" % no, self.ent)
        for who in (self.sp, self.clerk):
            self.assertEqual(self.ok("GET", "/approval/applications/" + no, who)["number"], no)
        st, d = self.call("GET", "/approval/applications/" + no, self.zhzf)
        self.assertEqual(st, 404)
        # staff looking at an applicant's personal data leave a record each (个人信息保护);
        # the applicant looking at their own does not
        self.ok("GET", "/approval/applications/" + no, self.ent)
        st, _, _ = self.shared.request("GET", "/approval/applications/%s/materials/application" % no,
                                       headers=self.clerk, auth=False)
        self.assertEqual(st, 200)
        aud = self.shared.new_user("aud.privacy", roles=("auditor",))
        st, _, recs = self.shared.json("GET", "/audit?limit=1000&object=application/" + no, None,
                                       aud, auth=False)
        self.assertEqual(st, 200, recs)
        reads = [(r["actor_login"], r["action"], r["object"]) for r in recs["items"]
                 if r["action"] in ("view application", "download material")]
        self.assertEqual(reads, [("reviewer_sp", "view application", "application/" + no),
                                 ("clerk", "view application", "application/" + no)])
        st, _, recs = self.shared.json("GET", "/audit?limit=1000&object=application/%s/application"
                                       % no, None, aud, auth=False)
        self.assertEqual([(r["actor_login"], r["action"]) for r in recs["items"]
                          if r["action"] == "download material"],
                         [("clerk", "download material")])

    def test_lists_are_paged_newest_first(self):
        made = [self.draft(who=self.ent2, code=credit_code("91330122MA2A00003"))["number"] for _ in range(3)]
        seen, path = [], "/approval/applications?limit=2"
        while True:
            d = self.ok("GET", path, self.ent2)
            self.assertLessEqual(len(d["items"]), 2)
            seen += [a["number"] for a in d["items"]]
            if d["next"] is None:
                break
            path = "/approval/applications?limit=2&before=" + d["next"]
        self.assertEqual([n for n in seen if n in made], sorted(made, reverse=True))
        self.assertEqual(len(seen), len(set(seen)))
        inbox = self.ok("GET", "/approval/inbox?limit=1", self.ent)
        self.assertEqual(len(inbox["items"]), 1)
        st, d = self.call("GET", "/approval/applications?limit=0", self.ent2)
        self.assertEqual(st, 400)

    def test_public_query_by_number_and_code(self):
        app = self.submitted()
        no = app["number"]
        code = self.app(no)["query_code"]
        st, h, d = self.shared.json("GET", "/approval/query?number=%s&code=%s" % (no, code.lower()), auth=False)
        self.assertEqual(st, 200, d)
        self.assertEqual((d["number"], d["state"]), (no, "submitted"))
        self.assertEqual(h.get("cache-control"), "no-store")  # anonymous, and someone's progress
        self.assertNotIn("applicant", d)
        self.assertNotIn("form", d)
        for q in ["number=%s&code=WRONGCOD" % no, "number=SP00000000000000&code=%s" % code]:
            st, _, d = self.shared.json("GET", "/approval/query?" + q, auth=False)
            self.assertEqual(st, 404, q)
            self.assertEqual(d["detail"], "no application matches this number and query code")
        st, _, d = self.shared.json("GET", "/approval/query?number=%s" % no, auth=False)
        self.assertEqual((st, d["type"]), (400, "/problems/invalid-query"))
        # codes cannot be tried at network speed: 20 failures from one address, then 429
        n, wrong = self.shared, "/approval/query?number=%s&code=WRONGCOD" % no
        for i in range(20):
            self.assertEqual(n.request("GET", wrong, auth=False, source="127.0.5.1")[0], 404, i)
        st, h, b = n.request("GET", wrong, auth=False, source="127.0.5.1")
        self.assertProblem(st, h, b, 429, "too-many-attempts")
        self.assertGreater(int(h["retry-after"]), 0)
        # also with the right code, from that address; another address is not held
        right = "/approval/query?number=%s&code=%s" % (no, code)
        self.assertEqual(n.request("GET", right, auth=False, source="127.0.5.1")[0], 429)
        self.assertEqual(n.request("GET", right, auth=False, source="127.0.5.2")[0], 200)

    def test_withdrawal(self):
        no = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        a = self.ok("POST", "/approval/applications/%s/withdraw" % no, self.ent)
        self.assertEqual(a["state"], "withdrawn")
        todo = self.ok("GET", "/workflow/tasks", self.sp)["items"]
        self.assertNotIn(no, [t["business_key"] for t in todo])
        st, d = self.call("POST", "/approval/applications/%s/withdraw" % no, self.ent)
        self.assertEqual(st, 409)
        self.assertEqual(self.inbox_kinds(no)[-1], "withdrawn")
        # a draft withdrawn (which makes room under max_drafts) leaves no files behind:
        # withdrawing and starting again would otherwise store without bound
        draft = self.draft()
        self.upload_all(draft)
        path = "/approval/applications/%s/materials/application" % draft["number"]
        self.assertEqual(self.shared.request("GET", path, headers=self.ent, auth=False)[0], 200)
        a = self.ok("POST", "/approval/applications/%s/withdraw" % draft["number"], self.ent)
        self.assertEqual((a["state"], a["materials"]), ("withdrawn", {}))
        self.assertEqual(self.shared.request("GET", path, headers=self.ent, auth=False)[0], 404)

    def test_the_applicant_acts_through_the_approval_routes_only(self):
        # the application's workflow instance is the approval plugin's: an applicant who
        # withdrew it through the workflow engine's own route would end the application
        # as terminated by the administration (counted so in the statistics, and told so)
        # where the approval's withdraw says withdrawn
        a = self.submitted()
        no, inst = a["number"], a["instance"]
        st, d = self.call("POST", "/workflow/instances/%s/withdraw" % inst, self.ent, {})
        self.assertEqual(st, 403, d)
        self.assertEqual(d["type"], "/problems/not-initiator")
        time.sleep(0.3)  # an event it had caused would have arrived by now
        a = self.app(no)
        self.assertEqual(a["state"], "submitted")
        self.assertNotIn("terminated", self.inbox_kinds(no))
        a = self.ok("POST", "/approval/applications/%s/withdraw" % no, self.ent)
        self.assertEqual(a["state"], "withdrawn")

    def test_acceptance_goes_through_the_approval_route(self):
        # the acceptance task is on the clerk's to-do list, but it is decided by POST
        # .../accept, which runs the credit check first (联合惩戒): completing it through
        # the workflow's own route skipped the check and left the application stuck in
        # "submitted" with no acceptance task for the route to act on
        for code, who in ((BLACK_CODE, self.bad), (GOOD_CODE, self.ent)):
            a = self.submitted(who=who, code=code)
            no = a["number"]
            task = [t for t in self.ok("GET", "/workflow/tasks?limit=200", self.clerk)["items"]
                    if t["business_key"] == no][0]
            self.assertEqual(task["node"], "accept")
            for decision in ("accept", "refuse"):
                st, d = self.call("POST", "/workflow/tasks/%s/complete" % task["id"], self.clerk,
                                  {"decision": decision})
                self.assertEqual(st, 403, d)
                self.assertIn("approval", d["detail"])
            st, d = self.call("POST", "/workflow/tasks/%s/return" % task["id"], self.clerk, {"node": "accept"})
            self.assertEqual(st, 403, d)
            a = self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
            self.assertEqual(a["state"], "not_accepted" if code == BLACK_CODE else "reviewing")
        # nor is it reopened by returning there from a department's task
        task = [t for t in self.ok("GET", "/workflow/tasks?limit=200", self.wjw)["items"]
                if t["business_key"] == no][0]
        st, d = self.call("POST", "/workflow/tasks/%s/return" % task["id"], self.wjw, {"node": "accept"})
        self.assertEqual(st, 403, d)
        self.assertIn("'accept'", d["detail"])
        self.ok("POST", "/workflow/tasks/%s/complete" % task["id"], self.wjw, {"decision": "approve"})

    def test_blacklisted_applicant_refused_at_acceptance(self):
        no = self.submitted(who=self.bad, code=BLACK_CODE)["number"]
        a = self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        self.assertEqual(a["state"], "not_accepted")
        self.assertIn("拒不履行法院判决", a["result"]["reason"])
        self.assertIn("not_accepted", self.inbox_kinds(no, self.bad))

    def test_an_enterprise_applies_under_its_own_code(self):
        # the blacklisted enterprise cannot pass a clean enterprise's code off as its own
        st, d = self.call("POST", "/approval/applications", self.bad,
                          {"item": "FOOD-LICENCE", "form": food_form(), "credit_code": GOOD_CODE})
        self.assertEqual(st, 422, d)
        self.assertIn("not this account's code", d["detail"])
        for wrong in (12345, "", BLACK_CODE[:17]):
            st, d = self.call("POST", "/approval/applications", self.bad,
                              {"item": "FOOD-LICENCE", "form": food_form(), "credit_code": wrong})
            self.assertEqual(st, 422, (wrong, d))
        # left out, or typed in lower case: the account's own
        for given in (None, BLACK_CODE.lower()):
            app = self.draft(who=self.bad, code=given)
            self.assertEqual(app["applicant"]["credit_code"], BLACK_CODE, app)
        # so the credit check sees the code that is on the blacklist
        self.upload_all(app, self.bad)
        no = self.ok("POST", "/approval/applications/%s/submit" % app["number"], self.bad)["number"]
        a = self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        self.assertEqual(a["state"], "not_accepted", a)
        # a citizen has no code, whatever the request says
        app = self.ok("POST", "/approval/applications", self.citizen,
                      {"item": "BIRTH-REG", "form": {"spouse_name": "李四", "children": 0},
                       "credit_code": GOOD_CODE}, 201)
        self.assertIsNone(app["applicant"]["credit_code"], app)

    def test_refused_acceptance(self):
        no = self.submitted()["number"]
        st, d = self.call("POST", "/approval/applications/%s/refuse" % no, self.clerk, {})
        self.assertEqual(st, 422)  # a reason is required
        a = self.ok("POST", "/approval/applications/%s/refuse" % no, self.clerk, {"reason": "不属于本机关职权范围"})
        self.assertEqual(a["state"], "not_accepted")
        self.assertEqual(a["result"]["reason"], "不属于本机关职权范围")



class GmApplications(Applications):
    """The same applications on a node of 国密 settings: decisions sealed with SM2 (and
    checked by POST /seal/verify), personal-data fields in SM4."""

    OPTIONS = (ApprovalTest.OPTIONS + '\nseal = { algorithm = "SM2" }\n'
               'crypto = { fields = "SM4" }')
    SEAL_ALGORITHM = "SM2"


class Labelled(ApprovalTest):
    """An item with a security label (安全标记): its applications, and their workflow tasks,
    are seen and handled only by staff cleared for it; the applicant sees their own."""

    def test_only_cleared_staff_see_and_handle_a_labelled_item(self):
        n = self.shared
        item = {"name": "涉及个人隐私的登记", "department": "zhzf", "legal_basis": "《测试条例》第一条",
                "statutory_days": 20, "promised_days": 5, "workflow": "approval_simple",
                "applicants": ["citizen"], "label": "sensitive",
                "materials": [{"name": "form", "title": "申请表", "formats": ["application/pdf"]}]}
        st, d = self.call("PUT", "/approval/items/PRIV", n.auth, dict(item, label="secret"))
        self.assertEqual(st, 422, d)
        self.assertIn("label: one of the node's security labels (public, internal, sensitive)", d["detail"])
        self.assertEqual(self.ok("PUT", "/approval/items/PRIV", n.auth, item, 201)["label"], "sensitive")
        clerk_lo = n.new_user("clerk_zhzf", ["approval_clerk"], "zhzf")
        clerk_hi = n.new_user("clerk_zhzf_hi", ["approval_clerk"], "zhzf", clearance="sensitive")
        reviewer_hi = n.new_user("reviewer_zhzf_hi", ["approval_reviewer"], "zhzf", clearance="sensitive")
        sup_hi = n.new_user("supervisor_hi", ["approval_supervisor"], "root", clearance="sensitive")
        app = self.submitted("PRIV", who=self.citizen, code=None, form={})
        no = app["number"]
        self.assertEqual(app["label"], "sensitive")
        self.assertEqual(self.app(no, self.citizen)["label"], "sensitive")  # their own
        # below the label: as if it did not exist
        for who, method, path in ((clerk_lo, "GET", ""), (clerk_lo, "POST", "/accept"),
                                  (self.supervisor, "GET", ""),
                                  (clerk_lo, "GET", "/materials/form")):
            with self.subTest(path=path):
                st, d = self.call(method, "/approval/applications/" + no + path, who, {} if method == "POST" else None)
                self.assertEqual(st, 404, d)
        self.assertEqual(self.app(no, sup_hi)["state"], "submitted")
        self.ok("POST", "/approval/applications/%s/accept" % no, clerk_hi)
        # its workflow task is labelled too: not on an uncleared reviewer's to-do list
        todo = lambda who: [t.get("business_key") for t in self.ok("GET", "/workflow/tasks", who)["items"]]
        self.assertNotIn(no, todo(self.zhzf))
        self.assertIn(no, todo(reviewer_hi))
        st, d = self.call("POST", "/approval/applications/%s/review" % no, self.zhzf, {"decision": "approve"})
        self.assertEqual(st, 404, d)
        self.ok("POST", "/approval/applications/%s/review" % no, reviewer_hi, {"decision": "approve"})
        self.wait_state(no, "approved", self.citizen)

    def test_an_application_follows_its_instance_labelled_again(self):
        n = self.shared
        item = {"name": "户外活动登记", "department": "zhzf", "legal_basis": "《测试条例》第二条",
                "statutory_days": 20, "promised_days": 5, "workflow": "approval_simple",
                "applicants": ["citizen"],
                "materials": [{"name": "form", "title": "申请表", "formats": ["application/pdf"]}]}
        self.ok("PUT", "/approval/items/OUTDOOR", n.auth, item, 201)
        clerk = n.new_user("clerk_zhzf2", ["approval_clerk"], "zhzf")
        sup_hi = n.new_user("supervisor_hi2", ["approval_supervisor", "workflow_supervisor"], "root",
                            clearance="sensitive")
        app = self.submitted("OUTDOOR", who=self.citizen, code=None, form={})
        no = app["number"]
        self.assertIsNone(app["label"])
        self.assertEqual(self.app(no, clerk)["state"], "submitted")
        st, d = self.call("POST", "/workflow/instances/%s/label" % app["instance"], sup_hi,
                          {"label": "sensitive", "reason": "涉及他人隐私"})
        self.assertEqual((st, d.get("label")), (200, "sensitive"), d)
        wait_for("the application to follow its instance's label",
                 lambda: self.app(no, self.citizen)["label"] == "sensitive")
        self.assertEqual(self.call("GET", "/approval/applications/" + no, clerk)[0], 404)
        self.assertIn(("supervisor_hi2", "labelled", "sensitive"),
                      [(h["actor"], h["action"], h["note"]) for h in self.app(no, sup_hi)["history"]])


class Integrity(ApprovalTest):
    """数据完整性: an application changed behind the node's back (its record is sealed), or a
    material file swapped, is not served."""

    def test_a_record_or_a_file_changed_outside_is_not_served(self):
        n = self.shared
        app = self.submitted()
        no = app["number"]
        other = self.submitted()["number"]
        n.stop()

        def tamper(txn, open_db):
            apps, files = open_db("approval/applications"), open_db("approval/materials")
            v = bytearray(txn.get(no.encode(), db=apps))
            i = v.index(b'"submitted"')
            v[i + 1:i + 10] = b"approved\""  # its state, same length
            txn.put(no.encode(), bytes(v), db=apps)
            key = (other + "/application").encode()
            txn.put(key, txn.get(key, db=files) + b" and a page added", db=files)

        edit_db(self, n, None, tamper)
        n.start()
        st, body = self.call("GET", "/approval/applications/" + no, self.ent)
        self.assertEqual(st, 500, body)
        self.assertIn("storage: the record %s of approval/applications fails its seal" % no, n.log())
        self.assertEqual(scrape(n).get("zt_store_seals_failed_total"), 1)
        st, body = self.call("GET", "/approval/applications/%s/materials/application" % other, self.ent)
        self.assertEqual((st, body.get("type")), (500, "/problems/material-damaged"), body)
        self.assertIn("application %s: material application does not match its digest" % other, n.log())
        self.assertEqual(self.app(other)["state"], "submitted")  # the rest holds

    def test_starting_an_application_reads_none_of_the_earlier_ones(self):
        # max_drafts is checked from the index of open drafts: the applicant's earlier
        # applications are not read (it took longer with each: 49 ms at ~3,000, on the event
        # loop). One of them changed outside the node fails its seal when read: starting
        # another is still served, and nothing reads it.
        n = self.shared
        who = self.register("citizen", "longhistory", "钱七", None)
        form = {"spouse_name": "李四", "children": 0}
        old = self.submitted("BIRTH-REG", who, None, form)["number"]
        self.ok("POST", "/approval/applications/%s/withdraw" % old, who)
        self.draft("BIRTH-REG", who, form, None)
        n.stop()

        def tamper(txn, open_db):
            apps = open_db("approval/applications")
            v = bytearray(txn.get(old.encode(), db=apps))
            i = v.index(b'"withdrawn"')
            v[i + 1:i + 10] = b"approved\""  # its state, same length
            txn.put(old.encode(), bytes(v), db=apps)

        edit_db(self, n, None, tamper)
        n.start()
        self.draft("BIRTH-REG", who, form, None)
        self.assertEqual(scrape(n).get("zt_store_seals_failed_total") or 0, 0)  # since the start
        self.assertNotIn("the record %s of approval/applications fails its seal" % old, n.log())

class TimeLimits(ApprovalTest):
    """The clock moves here: these tests have a node of their own."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.offset = 0

    def move(self, ms):
        type(self).offset += ms
        self.shared.set_clock(self.offset)

    def test_a_draft_left_alone_is_withdrawn_and_its_materials_deleted(self):
        before = self.ok("GET", "/approval/stats", self.supervisor)["total"]
        app = self.draft()
        no = app["number"]
        path = "/approval/applications/%s/materials/application" % no
        self.move(20 * DAY)
        self.ok("PUT", path, self.ent, b"%PDF-1.7 touched", headers=PDF)  # a change: it counts
        self.move(15 * DAY)  # 35 days old, 15 since it was touched: still a draft
        time.sleep(0.3)  # time for a timer that should not fire to do so anyway
        self.assertEqual(self.app(no)["state"], "draft")
        self.move(16 * DAY)  # 31 days untouched
        a = wait_for("draft %s to expire" % no,
                     lambda: (lambda x: x if x["state"] == "withdrawn" else None)(self.app(no)))
        self.assertTrue(a["expired"])
        self.assertEqual(a["materials"], {})
        st, _ = self.call("GET", path, self.ent)
        self.assertEqual(st, 404)
        self.assertIn("expired", self.inbox_kinds(no))
        # it was never handed in: not received, nor counted as withdrawn
        after = self.ok("GET", "/approval/stats", self.supervisor)["total"]
        self.assertEqual((after["received"], after["withdrawn"]),
                         (before["received"], before["withdrawn"]))

    def test_a_withdrawn_draft_is_purged_after_a_day(self):
        # a draft never handed in is not a government record: withdrawn (by its applicant,
        # or expired), it is kept purge_hours (24) for the applicant to see, then purged:
        # record, indexes, query code, inbox messages. One handed in and withdrawn stays.
        n = self.shared
        who = self.register("citizen", "undecided", "孙八", None)
        form = {"spouse_name": "李四", "children": 0}
        kept = self.submitted("BIRTH-REG", who, None, form)
        kept_code = self.app(kept["number"], who)["query_code"]
        self.ok("POST", "/approval/applications/%s/withdraw" % kept["number"], who)
        drafts = [self.draft("BIRTH-REG", who, form, None) for _ in range(3)]
        self.upload_all(drafts[0], who)
        for d in drafts:
            self.ok("POST", "/approval/applications/%s/withdraw" % d["number"], who)
        numbers = [d["number"] for d in drafts]
        listed = [a["number"] for a in self.ok("GET", "/approval/applications", who)["items"]]
        self.assertEqual(listed, list(reversed(numbers)) + [kept["number"]])
        self.assertEqual(self.inbox_kinds(numbers[0], who), ["withdrawn"])
        self.move(23 * HOUR)
        time.sleep(0.3)  # time for a timer that should not fire to do so anyway
        self.assertEqual(self.app(numbers[0], who)["state"], "withdrawn")
        self.move(2 * HOUR)

        def purged():
            return all(self.call("GET", "/approval/applications/" + no, who)[0] == 404 for no in numbers)
        wait_for("the withdrawn drafts to be purged", purged)
        listed = [a["number"] for a in self.ok("GET", "/approval/applications", who)["items"]]
        self.assertEqual(listed, [kept["number"]])
        for d in drafts:
            st, _ = self.call("GET", "/approval/query?number=%s&code=%s" % (d["number"], d["query_code"]), None)
            self.assertEqual(st, 404)
            self.assertEqual(self.inbox_kinds(d["number"], who), [])
        st, d = self.call("GET", "/approval/query?number=%s&code=%s" % (kept["number"], kept_code), None)
        self.assertEqual((st, d["state"]), (200, "withdrawn"))
        # nothing of them is left in the store
        n.stop()
        left = []

        def look(txn, open_db):
            for name in ("applications", "by_applicant", "query_codes", "materials", "drafts"):
                for key, _ in txn.cursor(db=open_db("approval/" + name)):
                    if any(no.encode() in key for no in numbers):
                        left.append((name, key))

        edit_db(self, n, None, look)
        n.start()
        n.set_clock(self.offset)
        self.assertEqual(left, [])

    def test_each_decision_has_a_number_of_its_own(self):
        # two applications of different days with the same sequence of their day, decided
        # by one department on one day: they once got one decision number, and the second
        # replaced the first's published decision
        form = {"spouse_name": "李四", "children": 0}
        self.move(60 * DAY)  # a day no other test made an application on
        first = self.submitted("BIRTH-REG", who=self.citizen, code=None, form=form)["number"]
        self.move(DAY)
        second = self.submitted("BIRTH-REG", who=self.citizen, code=None, form=form)["number"]
        self.assertEqual(first[-6:], second[-6:])
        self.assertNotEqual(first[2:10], second[2:10])
        numbers = []
        for no in (first, second):
            self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk_wjw)
            self.ok("POST", "/approval/applications/%s/review" % no, self.wjw, {"decision": "approve"})
            numbers.append(self.wait_state(no, "approved", self.citizen)["result"]["decision_no"])
        self.assertNotEqual(numbers[0], numbers[1])
        for no, dno in zip((first, second), numbers):
            self.assertRegex(dno, r"^wjw-%s-\d{6}$" % second[2:10])
            pub = self.ok("GET", "/approval/decisions/" + dno, None)
            self.assertEqual(pub["document"]["application"], no)
            self.assertEqual(pub["decision_no"], dno)

    def test_supplements_pause_the_clock_and_deadlines_escalate(self):
        # a Thursday, 10:00 in Beijing: the pause below takes Thursday's rest and Friday
        # (working time) and the weekend (none)
        now = self.shared.set_clock(self.offset)["now"]
        d = beijing_date(now) + datetime.timedelta(days=1)
        while d.weekday() != 3:
            d += datetime.timedelta(days=1)
        self.move(day_start(d) + 10 * HOUR - now)
        no = self.submitted()["number"]
        a = self.app(no)
        deadline, remind = a["deadline"], a["remind_at"]
        self.assertIsNotNone(remind)
        self.assertLess(remind, deadline)
        st, d = self.call("POST", "/approval/applications/%s/supplement" % no, self.clerk,
                          {"missing": ["nothing-like-this"]})
        self.assertEqual(st, 422)
        a = self.ok("POST", "/approval/applications/%s/supplement" % no, self.clerk,
                    {"missing": ["floor_plan"], "note": "平面图不清晰"})
        self.assertEqual(a["state"], "supplement")
        self.assertIn("supplement", self.inbox_kinds(no))
        paused_at = a["paused_since"]
        self.assertEqual(beijing_date(paused_at).weekday(), 3)
        # three days pass while the applicant redraws the plan: the clock stands still
        self.move(3 * DAY)
        st, d = self.call("POST", "/approval/applications/%s/resubmit" % no, self.ent)
        self.assertEqual(st, 422)  # the plan was not uploaded again
        self.ok("PUT", "/approval/applications/%s/materials/floor_plan" % no, self.ent, b"%PDF new plan",
                headers=PDF)
        a = self.ok("POST", "/approval/applications/%s/resubmit" % no, self.ent)
        self.assertEqual(a["state"], "submitted")
        stood = a["paused_ms"]
        self.assertGreaterEqual(stood, 3 * DAY)
        resumed = paused_at + stood
        self.assertEqual(beijing_date(resumed).weekday(), 6)  # a Sunday
        # what was left of the working time at the pause is left from the resume on
        for before, after in ((deadline, a["deadline"]), (remind, a["remind_at"])):
            left = work_between(paused_at, before)
            self.assertGreater(left, 0)
            self.assertEqual(after, add_work_ms(resumed, left))
            self.assertEqual(work_between(resumed, after), left)
        self.assertLess(a["deadline"], deadline + stood)  # not by the days on the wall
        self.assertEqual(a["paused_work_ms"], work_between(paused_at, resumed))
        self.ok("POST", "/approval/applications/%s/accept" % no, self.clerk)
        # past the reminder: handlers are reminded; past the deadline: overdue, escalated
        now = self.shared.set_clock(self.offset)["now"]
        self.move(a["remind_at"] - now + 1000)
        self.wait_flag(no, "reminded")
        self.assertFalse(self.app(no)["overdue"])
        self.move(a["deadline"] - a["remind_at"] + 1000)
        a = self.wait_flag(no, "overdue")
        self.assertEqual(a["escalated_to"], "dept_head")
        # the escalation is somewhere to act on: the head's queue (their departments), the
        # applicant's inbox; not for a head of another department, nor for a reviewer
        head = self.shared.new_user("head_scjg", ["dept_head"], "scjg")
        other = self.shared.new_user("head_zjj", ["dept_head"], "zjj")  # not in this item
        queue = self.ok("GET", "/approval/overdue", head)["items"]
        mine = [o for o in queue if o["number"] == no]
        self.assertEqual(len(mine), 1, queue)
        self.assertEqual((mine[0]["department"], mine[0]["escalated_to"]), ("scjg", "dept_head"))
        self.assertGreater(mine[0]["overdue_ms"], 0)
        self.assertNotIn(no, [o["number"] for o in self.ok("GET", "/approval/overdue", other)["items"]])
        self.assertIn(no, [o["number"] for o in self.ok("GET", "/approval/overdue", self.supervisor)["items"]])
        self.assertEqual(self.call("GET", "/approval/overdue", self.ent)[0], 403)
        self.assertIn("overdue", self.inbox_kinds(no))
        # and the reviewers' tasks, due at the moved deadline, are overdue on their lists,
        # and on the heads' of those departments (escalated to the head_role)
        mine = [t for t in self.ok("GET", "/workflow/tasks", self.sp)["items"] if t["business_key"] == no]
        self.assertEqual([(t["due"], t["overdue"]) for t in mine], [(a["deadline"], True)])
        self.assertEqual(mine[0]["escalated_to"], "dept_head")
        head_sp = self.shared.new_user("head_sp", ["dept_head"], "scjg-sp")
        pushed = [t for t in self.ok("GET", "/workflow/tasks", head_sp)["items"] if t["business_key"] == no]
        self.assertEqual([t["department"] for t in pushed], ["scjg-sp"])
        stats = self.ok("GET", "/approval/stats", self.supervisor)
        self.assertGreaterEqual(stats["total"]["overdue"], 1)
        # a restart does not fire them again, nor lose the state
        self.shared.restart()
        self.assertTrue(self.app(no)["overdue"])
        # decided, it leaves the queue
        for who in (self.sp, self.wjw):
            self.ok("POST", "/approval/applications/%s/review" % no, who, {"decision": "approve"})
        self.wait_state(no, "approved", self.ent)
        self.assertNotIn(no, [o["number"] for o in self.ok("GET", "/approval/overdue", head)["items"]])

    def test_a_supplement_replaces_only_what_was_asked_for(self):
        # the clerk checked the other materials before asking for the plan again: while
        # the supplement is awaited, the applicant hands in the plan, and cannot swap the
        # checked ones behind the clerk's back
        no = self.submitted()["number"]
        before = self.app(no)["materials"]
        self.ok("POST", "/approval/applications/%s/supplement" % no, self.clerk,
                {"missing": ["floor_plan"], "note": "平面图不清晰"})
        for name in ("licence_copy", "application", "health_certs"):
            st, d = self.call("PUT", "/approval/applications/%s/materials/%s" % (no, name), self.ent,
                              b"%PDF another document", headers=PDF)
            self.assertEqual(st, 409, d)
            self.assertEqual(d["type"], "/problems/wrong-state")
            self.assertIn("floor_plan", d["detail"])
        a = self.app(no)
        self.assertEqual({k: v for k, v in a["materials"].items() if k != "floor_plan"},
                         {k: v for k, v in before.items() if k != "floor_plan"})
        self.ok("PUT", "/approval/applications/%s/materials/floor_plan" % no, self.ent, b"%PDF new plan",
                headers=PDF)
        self.assertEqual(self.ok("POST", "/approval/applications/%s/resubmit" % no, self.ent)["state"],
                         "submitted")

    def test_a_supplement_asks_for_each_material_once(self):
        no = self.submitted()["number"]
        for missing in (["floor_plan", "floor_plan"], ["floor_plan", "licence_copy", "floor_plan"]):
            st, d = self.call("POST", "/approval/applications/%s/supplement" % no, self.clerk,
                              {"missing": missing, "note": "平面图不清晰"})
            self.assertEqual(st, 422, d)
            self.assertIn("missing: floor_plan is listed twice", d["detail"])
        a = self.app(no)
        self.assertEqual((a["state"], a.get("supplement")), ("submitted", None), a)
        a = self.ok("POST", "/approval/applications/%s/supplement" % no, self.clerk,
                    {"missing": ["floor_plan", "licence_copy"]})
        self.assertEqual((a["state"], a["supplement"]["missing"]), ("supplement", ["floor_plan", "licence_copy"]))

    def wait_flag(self, no, flag):
        def raised():
            a = self.app(no)
            return a if a[flag] else None
        return wait_for("application %s to be %s" % (no, flag), raised)


class RateLimited(ApprovalTest):
    OPTIONS = "approval = { applications_per_hour = 3 }"

    def test_an_account_starts_so_many_applications_an_hour(self):
        # made and withdrawn at once, each still costs a record, indexes and audit records
        who = self.register("citizen", "hasty", "周九", None)
        form = {"spouse_name": "李四", "children": 0}
        for _ in range(3):
            d = self.draft("BIRTH-REG", who, form, None)
            self.ok("POST", "/approval/applications/%s/withdraw" % d["number"], who)
        h = dict(who, **{"Content-Type": "application/json"})
        st, hd, b = self.shared.request("POST", "/approval/applications",
                                        json.dumps({"item": "BIRTH-REG", "form": form}).encode(), h, auth=False)
        self.assertEqual(st, 429, b)
        self.assertEqual(json.loads(b)["type"], "/problems/too-many-attempts")
        self.assertTrue(0 < int(hd["retry-after"]) <= 3600, hd)
        self.assertIn("at most 3 applications an hour", json.loads(b)["detail"])
        # another account is not held up; nor is this one an hour later
        self.draft("BIRTH-REG", self.citizen, form, None)
        self.shared.set_clock(HOUR + 1000)
        self.draft("BIRTH-REG", who, form, None)


class Supervision(ApprovalTest):
    def test_statistics_match_what_happened(self):
        approved = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % approved, self.clerk)
        for who in (self.sp, self.wjw):
            self.ok("POST", "/approval/applications/%s/review" % approved, who, {"decision": "approve"})
        refused = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/accept" % refused, self.clerk)
        self.ok("POST", "/approval/applications/%s/review" % refused, self.sp, {"decision": "refuse", "opinion": "否"})
        not_accepted = self.submitted()["number"]
        self.ok("POST", "/approval/applications/%s/refuse" % not_accepted, self.clerk, {"reason": "不符合条件"})
        waiting = self.submitted()["number"]
        self.draft()  # drafts do not count
        self.wait_state(approved, "approved")
        self.wait_state(refused, "refused")
        s = self.ok("GET", "/approval/stats?item=FOOD-LICENCE", self.supervisor)
        t = s["total"]
        self.assertEqual((t["received"], t["accepted"], t["approved"], t["refused"], t["not_accepted"],
                          t["completed"]), (4, 2, 1, 1, 1, 2))
        self.assertEqual(t["on_time_rate"], 1.0)
        # decided within seconds of submission: well under a working day each
        self.assertGreaterEqual(t["mean_working_days"], 0)
        self.assertLess(t["mean_working_days"], 0.01)
        self.assertEqual(s["by_department"]["scjg"]["received"], 4)
        st, d = self.call("GET", "/approval/stats", self.clerk)
        self.assertEqual(st, 403)
        st, d = self.call("GET", "/approval/stats?from=2026", self.supervisor)
        self.assertEqual(st, 400)
        self.assertEqual(self.app(waiting)["state"], "submitted")


def month_end(d, k):
    """The last day of the k-th month after d's."""
    m = d.month + k + 1
    return datetime.date(d.year + (m - 1) // 12, (m - 1) % 12 + 1, 1) - datetime.timedelta(days=1)


def ymd(d):
    return d.strftime("%Y%m%d")


class ReceivedByDay(ApprovalTest):
    """收件 statistics count an application on the Beijing day it was handed in. The clock
    moves here: each test works in months of its own."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.offset = 0
        cls.today = beijing_date(cls.shared.set_clock(0)["now"])

    def at(self, d, hours):
        """The node's clock to `hours` past the start of Beijing day d."""
        now = self.shared.set_clock(self.offset)["now"]
        type(self).offset += day_start(d) + int(hours * HOUR) - now
        self.shared.set_clock(self.offset)

    def stats(self, frm, to):
        return self.ok("GET", "/approval/stats?from=%s&to=%s" % (ymd(frm), ymd(to)), self.supervisor)

    def received(self, frm, to):
        return self.stats(frm, to)["total"]["received"]

    def test_a_draft_is_received_on_the_day_it_is_handed_in(self):
        made = month_end(self.today, 1)  # the last day of a month
        handed = made + datetime.timedelta(days=2)  # the 2nd of the next
        self.at(made, 10)
        app = self.draft()
        self.upload_all(app)
        self.assertEqual(app["number"][2:10], ymd(made))
        self.at(handed, 1)  # 01:00 in Beijing: the day before in UTC
        self.ok("POST", "/approval/applications/%s/submit" % app["number"], self.ent)
        self.assertEqual(self.received(made, made), 0)
        self.assertEqual(self.received(made.replace(day=1), made), 0)  # the draft's month
        self.assertEqual(self.received(handed - datetime.timedelta(days=1), handed - datetime.timedelta(days=1)), 0)
        s = self.stats(handed, handed)
        self.assertEqual((s["total"]["received"], s["by_item"]["FOOD-LICENCE"]["received"],
                          s["by_department"]["scjg"]["received"]), (1, 1, 1), s)
        self.assertEqual(self.received(handed.replace(day=1), month_end(handed, 0)), 1)

    def test_b_a_resubmission_after_supplements_is_received_once(self):
        made = month_end(self.today, 3)
        handed = made + datetime.timedelta(days=2)
        again = handed + datetime.timedelta(days=3)
        self.at(made, 10)
        app = self.draft()
        self.upload_all(app)
        no = app["number"]
        self.at(handed, 9)
        self.ok("POST", "/approval/applications/%s/submit" % no, self.ent)
        self.ok("POST", "/approval/applications/%s/supplement" % no, self.clerk, {"missing": ["floor_plan"]})
        self.at(again, 9)
        self.ok("PUT", "/approval/applications/%s/materials/floor_plan" % no, self.ent, b"%PDF new plan",
                headers=PDF)
        self.assertEqual(self.ok("POST", "/approval/applications/%s/resubmit" % no, self.ent)["state"], "submitted")
        self.assertEqual(self.received(handed, handed), 1)
        self.assertEqual(self.received(again, again), 0)
        self.assertEqual(self.received(made, again + datetime.timedelta(days=10)), 1)

    def test_c_a_node_from_before_the_index_counts_alike(self):
        n = self.shared
        made = month_end(self.today, 5)
        handed = made + datetime.timedelta(days=2)
        self.at(made, 10)
        self.draft()  # never handed in
        late = self.draft()
        self.upload_all(late)
        self.submitted()  # handed in the day it was made
        self.at(handed, 1)
        self.ok("POST", "/approval/applications/%s/submit" % late["number"], self.ent)
        ranges = [(made, made), (made + datetime.timedelta(days=1),) * 2, (handed, handed),
                  (made - datetime.timedelta(days=40), handed + datetime.timedelta(days=40))]

        def counts():
            return [self.stats(a, b)["total"] for a, b in ranges]

        before = counts()
        self.assertEqual([t["received"] for t in before], [1, 0, 1, 2])

        def without_index(txn, open_db):
            txn.drop(open_db("approval/by_submitted"), delete=True)

        def without_marker(txn, open_db):
            self.assertTrue(txn.delete(b"#filled", db=open_db("approval/by_submitted")))

        for change in (without_index, without_marker):
            with self.subTest(change=change.__name__):
                n.stop()
                edit_db(self, n, None, change)
                n.start()
                self.assertEqual(counts(), before)


class WithoutCredit(NodeTest):
    def test_item_says_refuse_when_no_credit_plugin(self):
        n = self.node(plugins=("workflow", "approval"), auth=AUTH, roles=("approval_admin",))
        st, _, d = n.json("POST", "/admin/departments", {"code": "scjg", "name": "市场监管", "parent": "root"})
        self.assertEqual(st, 201, d)
        clerk = n.new_user("clerk", ["approval_clerk"], "scjg")
        body = {"kind": "enterprise", "login": "company", "name": "公司", "password": "Applicant-password-1",
                "credit_code": GOOD_CODE}
        self.assertEqual(n.json("POST", "/auth/register", body, auth=False)[0], 201)
        ent = {"Authorization": "Bearer " + n.login("company", "Applicant-password-1")[2]["token"]}
        st, _, app = n.json("POST", "/approval/applications",
                            {"item": "FOOD-LICENCE", "form": food_form(), "credit_code": GOOD_CODE}, ent, auth=False)
        self.assertEqual(st, 201, app)
        no = app["number"]
        for m in n.json("GET", "/approval/items/FOOD-LICENCE", auth=False)[2]["materials"]:
            if m["required"]:
                st, _, b = n.request("PUT", "/approval/applications/%s/materials/%s" % (no, m["name"]),
                                     b"%PDF", dict(ent, **PDF), auth=False)
                self.assertEqual(st, 200, b)
        self.assertEqual(n.json("POST", "/approval/applications/%s/submit" % no, None, ent, auth=False)[0], 200)
        # FOOD-LICENCE says without_credit = "refuse": it cannot be accepted now
        st, _, d = n.json("POST", "/approval/applications/%s/accept" % no, None, clerk, auth=False)
        self.assertEqual((st, d["type"]), (503, "/problems/credit-check-unavailable"))
        st, _, a = n.json("GET", "/approval/applications/" + no, None, ent, auth=False)
        self.assertEqual(a["state"], "submitted")  # nothing changed


# A plugin that cancels any workflow instance it is told to (workflow.cancel has no
# initiator check for plugins), as another plugin of the node could.
MEDDLER_MANIFEST = 'return { version = "0.0.1", description = "cancels instances", requires = { "workflow" } }\n'
MEDDLER_INIT = (
    'zt.route("POST", "/meddler/cancel/:id", { role = "public" }, function(req)\n'
    '  local r, msg = zt.call("workflow.cancel", { instance = req.params.id, reason = "cancelled elsewhere" })\n'
    '  if r == nil then zt.problem(500, "cancel-failed", tostring(msg)) end\n'
    "  return 200, { cancelled = req.params.id }\n"
    "end)\n"
    # what the workflow engine says when an application's instance completes, said by
    # another plugin: a department's approval and the instance's end
    'zt.route("POST", "/meddler/forge/:no", { role = "public" }, function(req)\n'
    '  local p = { plugin = "approval", business_key = req.params.no, node = "review",\n'
    '              department = "wjw", decision = "approve", actor = "reviewer_wjw" }\n'
    '  zt.emit("workflow.task.completed", p)\n'
    '  zt.emit("workflow.instance.completed", { plugin = "approval", business_key = req.params.no,\n'
    '                                            state = "completed", result = "approved" })\n'
    "  return 200, { forged = req.params.no }\n"
    "end)\n"
)


class CancelledElsewhere(NodeTest):
    def test_an_instance_cancelled_by_another_plugin_ends_its_application_terminated(self):
        tmp = tempfile.mkdtemp(prefix="zt-approval-")
        lua = lua_tree_with(os.path.join(tmp, "lua"), {"meddler": (MEDDLER_MANIFEST, MEDDLER_INIT)})
        n = self.node(plugins=("workflow", "approval", "meddler"), lua_dir=lua, auth=AUTH,
                      roles=("approval_admin",))
        st, _, d = n.json("POST", "/admin/departments", {"code": "wjw", "name": "卫生健康委员会", "parent": "root"})
        self.assertEqual(st, 201, d)
        clerk = n.new_user("clerk_wjw", ["approval_clerk"], "wjw")
        reviewer = n.new_user("reviewer_wjw", ["approval_reviewer"], "wjw")
        body = {"kind": "citizen", "login": "zhangsan", "name": "张三", "password": "Applicant-password-1"}
        self.assertEqual(n.json("POST", "/auth/register", body, auth=False)[0], 201)
        citizen = {"Authorization": "Bearer " + n.login("zhangsan", "Applicant-password-1")[2]["token"]}

        def reviewing():
            st, _, app = n.json("POST", "/approval/applications",
                                {"item": "BIRTH-REG", "form": {"spouse_name": "李四", "children": 0}},
                                citizen, auth=False)
            self.assertEqual(st, 201, app)
            no = app["number"]
            st, _, b = n.request("PUT", "/approval/applications/%s/materials/id_cards" % no, b"%PDF",
                                 dict(citizen, **PDF), auth=False)
            self.assertEqual(st, 200, b)
            for path, who in (("submit", citizen), ("accept", clerk)):
                st, _, a = n.json("POST", "/approval/applications/%s/%s" % (no, path), None, who, auth=False)
                self.assertEqual(st, 200, a)
            self.assertEqual(a["state"], "reviewing")
            return a

        cancelled, decided = reviewing(), reviewing()
        st, _, d = n.json("POST", "/meddler/cancel/" + cancelled["instance"], None, auth=False)
        self.assertEqual(st, 200, d)
        # the plugin takes the workflow's events in order: once the later instance's
        # approval is in, the cancellation before it has been seen
        st, _, d = n.json("POST", "/approval/applications/%s/review" % decided["number"],
                          {"decision": "approve"}, reviewer, auth=False)
        self.assertEqual(st, 200, d)

        def state(no):
            return n.json("GET", "/approval/applications/" + no, None, citizen, auth=False)[2]

        wait_for("the other application to be approved",
                 lambda: state(decided["number"])["state"] == "approved")
        a = wait_for("the cancelled one to be terminated",
                     lambda: (lambda x: x if x["state"] == "terminated" else None)(
                         state(cancelled["number"])))
        self.assertIsNone(a["result"])  # no decision, nothing sealed
        self.assertEqual(a["history"][-1]["action"], "terminated")
        self.assertIn("cancelled", a["history"][-1]["note"])
        st, _, inbox = n.json("GET", "/approval/inbox", None, citizen, auth=False)
        self.assertEqual(st, 200, inbox)
        self.assertIn(("terminated", cancelled["number"]),
                      [(m["kind"], m["number"]) for m in inbox["items"]])
        # it is done: no longer withdrawable, and the statistics count it
        st, _, d = n.json("POST", "/approval/applications/%s/withdraw" % cancelled["number"],
                          None, citizen, auth=False)
        self.assertEqual(st, 409, d)
        supervisor = n.new_user("supervisor", ["approval_supervisor"], "root")
        st, _, stats = n.json("GET", "/approval/stats", None, supervisor, auth=False)
        self.assertEqual(st, 200, stats)
        self.assertEqual((stats["total"]["terminated"], stats["total"]["approved"]), (1, 1), stats)

        # another plugin's events in the workflow's name decide nothing: only the
        # workflow engine's own (ev.source) say that an application's instance ended
        forged = reviewing()
        st, _, d = n.json("POST", "/meddler/forge/" + forged["number"], None, auth=False)
        self.assertEqual(st, 200, d)
        time.sleep(0.5)
        a = state(forged["number"])
        self.assertEqual((a["state"], a["result"], a["opinions"]), ("reviewing", None, []), a)
        st, _, d = n.json("POST", "/approval/applications/%s/review" % forged["number"],
                          {"decision": "approve"}, reviewer, auth=False)
        self.assertEqual(st, 200, d)
        a = wait_for("the application to be approved by its reviewer",
                     lambda: (lambda x: x if x["state"] == "approved" else None)(state(forged["number"])))
        self.assertEqual([o["actor"] for o in a["opinions"]], ["reviewer_wjw"])



# A plugin that calls the workflow's services as the signed-in caller, with what it is given:
# it starts the approval definitions with data no item on the node could give now.
DRIVER_MANIFEST = 'return { version = "0.0.1", description = "calls services", requires = { "workflow" } }\n'
DRIVER_INIT = (
    'zt.route("POST", "/driver/call", { role = "user" }, function(req)\n'
    "  local b = req:json()\n"
    "  local r, msg, code = zt.call(b.service, b.args)\n"
    "  return 200, { ok = r ~= nil, result = r or zt.json.null, code = code or zt.json.null }\n"
    "end)\n"
)


class NobodyReviews(NodeTest):
    """An item saved before items were checked for the departments that decide (an
    approval_parallel item without parallel_departments, an approval_countersign one without
    a countersign) cannot be planted: its record is sealed. Its applications reach the
    definitions with an empty list in the data, and the review went straight on to a sealed
    approval that nobody gave. Here the definitions get that data directly."""

    def test_a_review_by_no_department_fails_instead_of_approving(self):
        tmp = tempfile.mkdtemp(prefix="zt-approval-")
        lua = lua_tree_with(os.path.join(tmp, "lua"), {"driver": (DRIVER_MANIFEST, DRIVER_INIT)})
        n = self.node(plugins=("workflow", "approval", "driver"), lua_dir=lua, auth=AUTH)
        for code in ("scjg", "wjw"):
            st, _, d = n.json("POST", "/admin/departments", {"code": code, "name": code, "parent": "root"})
            self.assertEqual(st, 201, d)
        clerk = n.new_user("clerk", ["approval_clerk"], "scjg")

        def service(name, args):
            st, _, d = n.json("POST", "/driver/call", {"service": name, "args": args}, clerk, auth=False)
            self.assertEqual(st, 200, d)
            return d

        def accept(definition, number, **lists):
            data = {"application": number, "item": "OLD", "department": "scjg", "head_role": "dept_head",
                    **lists}
            d = service("workflow.start", {"definition": definition, "data": data, "business_key": number,
                                           "initiator": "system:approval"})
            self.assertTrue(d["ok"], d)
            inst, task = d["result"]["instance"], d["result"]["tasks"][0]
            self.assertEqual(task["node"], "accept")
            return inst, task["id"], service("workflow.task_action",
                                             {"task": task["id"], "action": "complete", "decision": "accept"})

        for definition, number, lists, why in (
                ("approval_parallel", "OLD-1", {"parallel": []},
                 "application OLD-1: item OLD lists no parallel_departments: nobody would review it"),
                ("approval_parallel", "OLD-2", {},
                 "application OLD-2: item OLD lists no parallel_departments: nobody would review it"),
                ("approval_countersign", "OLD-3", {"countersign": [], "need": 0},
                 "application OLD-3: item OLD has no countersign departments: nobody would sign it")):
            with self.subTest(number):
                inst, task, done = accept(definition, number, **lists)
                self.assertFalse(done["ok"], done)
                # nothing of the step is kept: the acceptance is still open, nothing decided
                st, _, i = n.json("GET", "/workflow/instances/" + inst)
                self.assertEqual(st, 200, i)
                self.assertEqual((i["state"], i["open_tasks"], i["decisions"]), ("running", [task], {}), i)
                st, _, h = n.json("GET", "/workflow/instances/%s/history" % inst)
                self.assertEqual([s["action"] for s in h["items"]], ["start"], h)
                self.assertIn(why, n.log())
                # the clerk can still refuse to accept it (不予受理)
                done = service("workflow.task_action", {"task": task, "action": "complete", "decision": "refuse",
                                                        "opinion": "事项未列明审查部门"})
                self.assertTrue(done["ok"], done)
                st, _, i = n.json("GET", "/workflow/instances/" + inst)
                self.assertEqual((i["state"], i["result"]), ("completed", "not_accepted"), i)
        # with the departments the review opens, one task each
        inst, _, done = accept("approval_parallel", "NEW-1", parallel=["wjw"])
        self.assertTrue(done["ok"], done)
        self.assertEqual([(t["node"], t["department"]) for t in done["result"]["new_tasks"]], [("review", "wjw")])
        inst, _, done = accept("approval_countersign", "NEW-2", countersign=["scjg", "wjw"], need=1)
        self.assertTrue(done["ok"], done)
        self.assertEqual(sorted(t["department"] for t in done["result"]["new_tasks"]), ["scjg", "wjw"])

if __name__ == "__main__":
    unittest.main()
