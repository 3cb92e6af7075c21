-- The item catalogue's checks (approval.catalogue): run with `zhengtong test approval`.
local catalogue = require "approval.catalogue"
local shipped = require "approval.items"
local MAX = zt.config.max_material_bytes

-- A valid item to break one field at a time.
local function item(over)
  local it = {
    code = "T-1", name = "测试事项", department = "scjg", legal_basis = "《测试条例》第一条",
    statutory_days = 20, promised_days = 5, workflow = "approval_simple",
    materials = { { name = "form", title = "申请表", formats = { "application/pdf" } } },
    form = { { name = "who", title = "申请人", required = true },
             { name = "n", title = "数量", type = "integer" } },
  }
  for k, v in pairs(over or {}) do it[k] = v end
  return it
end

test("every shipped item passes the check", function(t)
  t.eq(#shipped, 3)
  for _, it in ipairs(shipped) do
    local ok, why = catalogue.check(it, MAX)
    t.ok(ok, tostring(it.code) .. ": " .. tostring(why))
  end
end)

test("the shipped items cover parallel approval, a simple registration and a countersign", function(t)
  local by = {}
  for _, it in ipairs(shipped) do by[it.code] = catalogue.check(it, MAX) end
  t.eq(#by["FOOD-LICENCE"].parallel_departments, 2)
  t.eq(by["BIRTH-REG"].workflow, "approval_simple")
  t.eq(by["ROAD-DIG"].countersign.need, 2)
  t.eq(#by["ROAD-DIG"].countersign.departments, 3)
end)

test("an item kept without the departments its workflow reads is found lacking", function(t)
  -- what submission asks of the item as kept: one saved before PUT checked its departments
  for _, it in ipairs(shipped) do t.eq(catalogue.deciders(catalogue.check(it, MAX)), nil, it.code) end
  local kept = catalogue.check(item(), MAX) -- approval_simple: no departments, countersign null
  t.eq(catalogue.deciders(kept), nil)
  for _, c in ipairs({
    { { workflow = "approval_parallel" }, "parallel_departments: workflow approval_parallel" },
    { { workflow = "approval_countersign" }, "countersign: workflow approval_countersign" },
    { { workflow = "approval_countersign", countersign = { departments = {}, need = 1 } },
      "countersign: workflow approval_countersign" },
  }) do
    local old = {}
    for k, v in pairs(kept) do old[k] = v end
    for k, v in pairs(c[1]) do old[k] = v end
    local why = catalogue.deciders(old)
    t.ok(why and why:find(c[2], 1, true), ("%s: %s"):format(c[2], tostring(why)))
  end
end)

test("defaults are filled in", function(t)
  local raw = item()
  raw.promised_days = nil
  local it = catalogue.check(raw, MAX)
  t.eq(it.promised_days, 20) -- promised defaults to statutory
  t.eq(it.fee, 0)
  t.eq(it.without_credit, "skip")
  t.eq(it.applicants, { "citizen", "enterprise" })
  t.eq(it.materials[1].required, true)
  t.eq(it.materials[1].max_bytes, MAX)
  t.eq(it.active, true)
end)

test("each bad field is named", function(t)
  local cases = {
    { { code = "a b" }, "code" },
    { { name = "" }, "name" },
    { { department = "a.b" }, "department" },
    { { statutory_days = 0 }, "statutory_days" },
    { { promised_days = 21 }, "promised_days" },
    { { fee = -1 }, "fee" },
    { { workflow = "../x" }, "workflow" },
    { { without_credit = "maybe" }, "without_credit" },
    { { applicants = { "robot" } }, "applicants" },
    { { parallel_departments = { "ok", "not ok" } }, "parallel_departments[2]" },
    { { countersign = { departments = { "a" }, need = 1 } }, "countersign" },
    { { countersign = { departments = { "a", "b" }, need = 3 } }, "countersign.need" },
    { { materials = { { name = "x", title = "x", formats = { "video/mp4" } } } }, "materials[1].formats" },
    { { materials = { { name = "x", title = "x", formats = { "application/pdf" }, max_bytes = MAX + 1 } } },
      "materials[1].max_bytes" },
    { { materials = { { name = "x", title = "x", formats = { "application/pdf" } },
                      { name = "x", title = "y", formats = { "application/pdf" } } } }, "listed twice" },
    { { form = { { name = "1x", title = "x" } } }, "form[1].name" },
    { { form = { { name = "x", title = "x", type = "date" } } }, "form[1].type" },
    { { form = { { name = "x", title = "x", min = 1 } } }, "form[1].min" },
    { { form = { { name = "x", title = "x", type = "integer", min = 5, max = 1 } } }, "form[1].min" },
    { { form = { { name = "x", title = "x", type = "number", max = "10" } } }, "form[1].max" },
    { { name = "two\nlines" }, "name" },
    { { name = "admin\u{202E}fdp.exe" }, "name" },
    { { name = ("政"):rep(201) }, "name" },
  }
  for _, c in ipairs(cases) do
    local ok, why = catalogue.check(item(c[1]), MAX)
    t.eq(ok, nil, c[2])
    t.ok(why:find(c[2], 1, true), ("%q does not name %s"):format(why, c[2]))
  end
end)

test("a form is checked against the item's fields", function(t)
  local it = catalogue.check(item(), MAX)
  t.eq(catalogue.check_form(it, { who = "张三", n = 3 }), { who = "张三", n = 3 })
  t.eq(catalogue.check_form(it, { who = "张三", n = zt.json.null }), { who = "张三" })
  local _, why = catalogue.check_form(it, {})
  t.ok(why:find("form.who", 1, true), why)
  _, why = catalogue.check_form(it, { who = "张三", n = 1.5 })
  t.ok(why:find("an integer", 1, true), why)
  _, why = catalogue.check_form(it, { who = "张三", extra = 1 })
  t.ok(why:find("no such field", 1, true), why)
  _, why = catalogue.check_form(it, "text")
  t.ok(why:find("JSON object", 1, true), why)
end)

test("a form's numbers keep to their range, and GET's countersign null is no countersign", function(t)
  local it = catalogue.check(item({ form = { { name = "children", title = "子女数", type = "integer",
                                              required = true, min = 0, max = 20 } } }), MAX)
  t.eq(catalogue.check_form(it, { children = 0 }), { children = 0 })
  t.eq(catalogue.check_form(it, { children = 20 }), { children = 20 })
  for _, bad in ipairs({ -3, 21 }) do
    local _, why = catalogue.check_form(it, { children = bad })
    t.ok(why and why:find("from 0 to 20", 1, true), tostring(why))
  end
  local kept = catalogue.check(item({ countersign = zt.json.null }), MAX)
  t.eq(kept.countersign, zt.json.null)
  t.ok(catalogue.check(item({ name = ("政"):rep(200) }), MAX), "200 characters are 600 bytes, and a name")
end)

test("search looks at code, name, conditions and legal basis", function(t)
  local it = catalogue.check(item({ conditions = "经营场所符合要求" }), MAX)
  t.ok(catalogue.matches(it, nil))
  t.ok(catalogue.matches(it, "测试"))
  t.ok(catalogue.matches(it, "经营场所"))
  t.ok(catalogue.matches(it, "条例"))
  t.eq(catalogue.matches(it, "食品"), false)
  t.eq(catalogue.matches(it, "("), false) -- plain text: a pattern would be malformed
end)

test("working days come from the workflow plugin's calendar", function(t)
  -- 2026-11-20 is a Friday (10:00 Beijing): one working day later is Monday the 23rd
  local friday = 1795140000000
  local r = zt.call("workflow.workdays_add", { from = friday, days = 1 })
  t.eq(r.time, friday + 3 * 86400000)
  -- and back: Friday 10:00 to Monday 10:00 is one working day, the weekend not counted
  local b = zt.call("workflow.workdays_between", { from = friday, to = r.time })
  t.eq(b.days, 1)
  t.eq(zt.call("workflow.workdays_between", { from = r.time, to = friday }).ms, 0)
end)

test("a label is one of the node's security labels", function(t)
  t.eq(catalogue.check(item{ label = "sensitive" }, MAX).label, "sensitive")
  t.eq(catalogue.check(item(), MAX).label, zt.json.null) -- none: the lowest
  local ok, why = catalogue.check(item{ label = "top-secret" }, MAX)
  t.eq(ok, nil)
  t.ok(why:find("label: one of the node's security labels (public, internal, sensitive)", 1, true), why)
end)

test("an item gives its shipped workflow the departments that decide, and nothing it ignores", function(t)
  -- approval_parallel with no parallel departments, or approval_countersign with no
  -- countersign, would go straight from acceptance to a sealed approval
  local cases = {
    { { workflow = "approval_parallel" }, "parallel_departments: workflow approval_parallel" },
    { { workflow = "approval_countersign" }, "countersign: workflow approval_countersign" },
    { { workflow = "approval_countersign", parallel_departments = { "wjw" },
        countersign = { departments = { "a", "b" }, need = 1 } }, "parallel_departments: workflow approval_countersign" },
    { { workflow = "approval_parallel", parallel_departments = { "wjw" },
        countersign = { departments = { "a", "b" }, need = 1 } }, "countersign: workflow approval_parallel" },
    { { parallel_departments = { "wjw" } }, "parallel_departments: workflow approval_simple" },
    { { countersign = { departments = { "a", "b" }, need = 2 } }, "countersign: workflow approval_simple" },
  }
  for _, c in ipairs(cases) do
    local ok, why = catalogue.check(item(c[1]), MAX)
    t.eq(ok, nil, c[2])
    t.ok(why and why:find(c[2], 1, true), ("%s does not name %s"):format(tostring(why), c[2]))
  end
  t.ok(catalogue.check(item({ workflow = "approval_parallel", parallel_departments = { "wjw" } }), MAX))
  t.ok(catalogue.check(item({ workflow = "approval_countersign",
                              countersign = { departments = { "a", "b" }, need = 2 } }), MAX))
  -- a county's own definition takes what it takes
  t.ok(catalogue.check(item({ workflow = "county_shape", parallel_departments = { "wjw" } }), MAX))
end)
