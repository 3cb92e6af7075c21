-- One-stop online approval (一站式网上审批): the item catalogue, applications with their
-- materials, acceptance (受理), parallel approval on the workflow engine, time limits,
-- sealed decisions, public disclosure and supervision statistics.
local catalogue = require "approval.catalogue"
local shipped_items = require "approval.items"

local cfg = zt.config
-- ranges the option types cannot say: an error names the config's file and line
local function range(name, lo, hi)
  local v = cfg[name]
  if v < lo or v > hi then zt.config_error(name, ("must be %d to %d, not %d"):format(lo, hi, v)) end
end
range("page_size", 1, 200)
range("remind_days", 0, 365)
range("max_drafts", 1, 1000)
range("draft_days", 1, 3650)
range("applications_per_hour", 1, 1000000)
range("purge_hours", 0, 8760)
range("max_material_bytes", 1, 1 << 30)
if not cfg.number_prefix:match("^%u%u?%u?%u?$") then
  zt.config_error("number_prefix", ("must be 1 to 4 capital letters, not %q"):format(cfg.number_prefix))
end
local DAY = 86400000
local HOUR = 3600000

-- the roles this plugin checks (routes declare approval_admin themselves); head_role is the
-- config's, and one that zt.role refuses is the config's error, at its line
zt.role("approval_clerk", "Accepts, refuses and asks for more of applications to their department (受理)")
zt.role("approval_reviewer", "Decides the review task of their department (审查)")
zt.role("approval_supervisor", "Sees every application, the overdue list and the statistics (监察)")
zt.role("approval_admin", "Manages the item catalogue (事项管理)")
if not pcall(zt.role, cfg.head_role, "Head of a department: overdue applications escalate to them (督办)") then
  zt.config_error("head_role", ("must be a role name (1 to 64 of a-z 0-9 _ . - from a letter; not user or public), not %q")
    :format(cfg.head_role))
end

-- ---- storage ----------------------------------------------------------------------
-- The catalogue and the applications are sealed (数据完整性): a time limit, a state or a
-- decision changed behind the node's back is not read.
local items_db = zt.db.open("items", { sealed = true })        -- code → item managed over HTTP
local apps = zt.db.open("applications", { sealed = true })     -- number → application (numbers sort by date)
local by_applicant = zt.db.open("by_applicant") -- applicant id .. "/" .. number → true
local files = zt.db.open("materials")           -- number .. "/" .. material name → the file's bytes
local query_codes = zt.db.open("query_codes")   -- number → the query code, encrypted
local counters = zt.db.open("counters")         -- "day/<yyyymmdd>", "decision/<dept>/<yyyymmdd>" → last sequence number
local inbox = zt.db.open("inbox")               -- account id .. "/" .. zt.id() → message
local decisions = zt.db.open("decisions")       -- decision number → public record (no personal data)
local overdue_db = zt.db.open("overdue")        -- number → summary, while an overdue application is open
-- received (收件) by day: the Beijing date it was handed in .. "/" .. number → true, and
-- FILLED once the applications handed in before this index existed are in it
local by_submitted = zt.db.open("by_submitted")
local FILLED = "#filled" -- sorts before every date
-- the open drafts: applicant id .. "/" .. number → true, kept by save() (and FILLED once
-- the drafts made before this index existed are in it), so that max_drafts is checked by
-- reading an applicant's drafts, not every application they ever made
local drafts_db = zt.db.open("drafts")

-- The shipped catalogue, checked at start: a bad item stops the node, naming it.
local shipped = {}
for i, it in ipairs(shipped_items) do
  local item, why = catalogue.check(it, cfg.max_material_bytes)
  if not item then
    error(("approval/items.lua: item %d (%s): %s"):format(i, tostring(it.code), why), 0)
  end
  if shipped[item.code] then error("approval/items.lua: item code " .. item.code .. " twice", 0) end
  item.source = "shipped"
  shipped[item.code] = item
end

-- ---- helpers ------------------------------------------------------------------------
local function problem(status, kind, detail) zt.problem(status, kind, detail) end
local function invalid(detail) problem(422, "invalid-application", detail) end

local function item_of(code)
  local it = items_db:get(code)
  if it then it.source = "managed" return it end
  return shipped[code]
end

local function beijing_day(ms)
  return os.date("!%Y%m%d", (ms // 1000) + 8 * 3600)
end

-- An application is received (收件) on the Beijing day it was first handed in: its
-- submission, not the day its draft was made (the date in its number), nor a resubmission
-- after supplements (补正), which is the same application handed in again.
local function received_key(app)
  return beijing_day(app.submitted_at) .. "/" .. app.number
end

local function limit_of(req)
  local l = req.query.limit
  if l == nil then return cfg.page_size end
  l = math.tointeger(tonumber(l))
  if not l or l < 1 or l > 200 then problem(400, "invalid-query", "limit must be an integer from 1 to 200") end
  return l
end

-- A page of db, newest first: the keys under prefix, after the cursor ?before= (a key
-- without the prefix); fn(key without prefix, value) gives the item to list, or nil to
-- leave it out. The answer: {items, next}, next being the cursor of the following page.
local function newest_first(req, db, prefix, fn)
  local limit, before = limit_of(req), req.query.before
  local out, ids, next = zt.json.array(), {}, zt.json.null
  for key, value in db:iter{ prefix = prefix, reverse = true, from = prefix .. (before or "\255") } do
    local id = key:sub(#prefix + 1)
    local item = id ~= before and fn(id, value)
    if item then
      if #out == limit then next = ids[#ids] break end
      out[#out + 1] = item
      ids[#ids + 1] = id
    end
  end
  return 200, { items = out, next = next }
end

-- Failed progress queries one client may make in QUERY_WINDOW seconds (GET /approval/query).
local QUERY_FAILS, QUERY_WINDOW = 20, 15 * 60

-- A query code people can read out on the phone: no 0/O, 1/I/L.
local CODE_CHARS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
local function new_query_code()
  local raw, out = zt.crypto.random(8), {}
  for i = 1, 8 do
    local b = raw:byte(i) % #CODE_CHARS + 1
    out[i] = CODE_CHARS:sub(b, b)
  end
  return table.concat(out)
end

local function next_number(now)
  local day = beijing_day(now)
  local key = "day/" .. day
  local n = (counters:get(key) or 0) + 1
  counters:put(key, n)
  return ("%s%s%06d"):format(cfg.number_prefix, day, n)
end

-- A decision's number (决定书编号): the department, the Beijing date of the decision and
-- the department's sequence of that day. The application's own sequence would not do: it
-- counts the day the application was made, so two applications of different days were
-- given one number when decided on the same day, and the second replaced the first's
-- published decision. A number already taken (one given before this counter) is skipped.
local function next_decision_no(department, now)
  local day = beijing_day(now)
  local key = "decision/" .. department .. "/" .. day
  local n, no = counters:get(key) or 0, nil
  repeat
    n = n + 1
    no = ("%s-%s-%06d"):format(department, day, n)
  until not decisions:get(no)
  counters:put(key, n)
  return no
end

-- Tells the applicant (their inbox, and the bus). The messages about an application never
-- handed in are kept in app.notices (saved by the caller, after this) so that they go with
-- it when a withdrawn draft is purged.
local function notify(app, kind, text)
  local msg = { time = zt.now(), number = app.number, kind = kind, text = text, state = app.state }
  local key = app.applicant.id .. "/" .. zt.id()
  inbox:put(key, msg)
  if app.submitted_at == zt.json.null then
    app.notices = app.notices or {}
    app.notices[#app.notices + 1] = key
  end
  zt.emit("approval.notice", { number = app.number, applicant = app.applicant.id, kind = kind,
                               text = text, state = app.state })
end

local function step(app, actor, action, note)
  local h = app.history
  h[#h + 1] = { time = zt.now(), actor = actor, action = action, note = note or zt.json.null }
end

-- States in which an application is still the administration's to finish.
local OPEN = { submitted = true, reviewing = true, supplement = true }

local function save(app)
  app.updated_at = zt.now()
  apps:put(app.number, app)
  local dkey = app.applicant.id .. "/" .. app.number
  if app.state == "draft" then drafts_db:put(dkey, true) else drafts_db:delete(dkey) end
  -- the escalation queue (GET /approval/overdue) holds what is overdue and still open
  if app.overdue and OPEN[app.state] then
    overdue_db:put(app.number, { number = app.number, item = app.item, item_name = app.item_name,
                                 label = app.label or zt.json.null,
                                 department = app.department, departments = app.departments,
                                 deadline = app.deadline, state = app.state,
                                 escalated_to = app.escalated_to })
  elseif app.overdue then
    overdue_db:delete(app.number)
  end
end

-- The files of a draft nobody will hand in: deleted, so that withdrawing a draft (which
-- makes room under max_drafts) does not leave its files behind, unbounded.
local function delete_materials(app)
  for name in pairs(app.materials) do files:delete(app.number .. "/" .. name) end
  app.materials = {}
end

-- A draft withdrawn (by its applicant, by its expiry, by the closing of their account) was
-- never handed in: it is not a government record, and it is purged after purge_hours
-- (its record, its indexes, its query code, its inbox messages; its files are gone
-- already), so that making and withdrawing drafts does not store without bound. Until then
-- the applicant still sees it, withdrawn. What was handed in and then withdrawn stays.
local function purge_later(app)
  app.timers.purge = zt.timer.at(app.updated_at + cfg.purge_hours * HOUR, "_approval.purge",
                                 { number = app.number })
end

-- The departments that take part in an application's item.
local function departments_of(item)
  local d = { item.department }
  for _, x in ipairs(item.parallel_departments) do d[#d + 1] = x end
  if item.countersign ~= zt.json.null then
    for _, x in ipairs(item.countersign.departments) do d[#d + 1] = x end
  end
  return d
end

-- Staff see an application when one of its departments is in their scope, or when they
-- supervise, once it has been submitted: a draft is the applicant's own work until then
-- (numbers follow each other, so staff could otherwise read every draft in the making).
-- The applicant sees their own. Staff not cleared for the application's security label (its
-- item's) do not see it at all. Everyone else is told it does not exist.
local function cleared(req, label)
  return label == nil or label == zt.json.null or zt.auth.clears(req, label)
end

local function may_see(req, app)
  local c = req.caller
  if not c then return false end
  if c.id == app.applicant.id then return true end
  if c.kind ~= "staff" or app.state == "draft" or not cleared(req, app.label) then return false end
  if zt.auth.has_role(req, "approval_supervisor") then return true end
  for _, d in ipairs(app.departments) do
    if zt.auth.in_scope(req, d) then return true end
  end
  return false
end

local shown = catalogue.shown

local function load_app(req, number)
  local app = type(number) == "string" and #number <= 64 and apps:get(number)
  if not app or not may_see(req, app) then
    problem(404, "not-found", "there is no application " .. shown(number))
  end
  return app
end

local function own_app(req, number)
  local app = load_app(req, number)
  if app.applicant.id ~= req.caller.id then
    problem(403, "forbidden", "only the applicant may do this")
  end
  return app
end

local function need_state(app, states, what)
  for _, s in ipairs(states) do if app.state == s then return end end
  problem(409, "wrong-state", ("%s: application %s is %s (needs %s)"):format(
    what, app.number, app.state, table.concat(states, " or ")))
end

local function clerk_of(req, app, what)
  if not (zt.auth.has_role(req, "approval_clerk") and zt.auth.in_scope(req, app.department)) then
    problem(403, "forbidden", what .. " needs the role approval_clerk in department " .. app.department)
  end
end

-- A workflow service's refusal, as the answer to the request that asked for it.
local REFUSAL = {
  forbidden = { 403, "forbidden", "you may not act on this task" },
  conflict = { 409, "task-closed", "someone else has acted on this task already" },
  ["not-found"] = { 404, "not-found", "the workflow has no such task or instance" },
  invalid = { 422, "invalid-application", "the workflow refused the request" },
  ["not-provided"] = { 503, "service-unavailable", "a plugin this needs is not enabled" },
}

local function call(name, args)
  local r, msg, _, reason = zt.call(name, args)
  if r == nil then
    local how = REFUSAL[reason]
    if how then problem(how[1], how[2], how[3] .. " (" .. name .. ")") end
    zt.log.error("service %s failed: %s", name, tostring(msg))
    problem(500, "service-failed", "the " .. name .. " service failed; the log has the request id")
  end
  return r
end

-- The applicant's open workflow task at node `node` (the acceptance task), or nil.
local function open_tasks(app)
  local r = call("workflow.tasks", { instance = app.instance, state = "open" })
  return r and r.items or {}
end

local function view(app)
  local v = {}
  for k, x in pairs(app) do v[k] = x end
  v.timers = nil
  v.notices = nil
  return v
end

-- The end of a step someone took on an application: its history, the record, the
-- applicant told (主动告知), the audit record named; the answer is the application.
local function stepped(req, app, action, note, kind, text, audit_action)
  step(app, req.caller.login, action, note)
  notify(app, kind, text)
  save(app)
  zt.audit.note(req, audit_action, "application/" .. app.number)
  return 200, view(app)
end

-- Public progress: what anyone with the number and query code may see.
local function progress(app)
  local steps = zt.json.array()
  for _, h in ipairs(app.history) do
    steps[#steps + 1] = { time = h.time, action = h.action }
  end
  return {
    number = app.number, item = app.item, item_name = app.item_name, state = app.state,
    submitted_at = app.submitted_at, accepted_at = app.accepted_at, decided_at = app.decided_at,
    deadline = app.deadline, overdue = app.overdue, steps = steps,
    decision_no = app.result ~= zt.json.null and app.result.decision_no or zt.json.null,
  }
end

-- ---- time limits (限时办结) -----------------------------------------------------------
local function workdays_add(from, days)
  local r = call("workflow.workdays_add", { from = from, days = days })
  return r.time
end

local function workdays_between(from, to)
  return call("workflow.workdays_between", { from = from, to = to }).ms
end

-- A point of the clock that stood still from `since` to `now`: the working time that was
-- left until it at `since` is left until it from `now` (a point already passed stays).
local function moved(t, since, now)
  if t <= since then return t end
  return call("workflow.workdays_add", { from = now, ms = workdays_between(since, t) }).time
end

local function cancel_timers(app)
  for _, id in pairs(app.timers) do zt.timer.cancel(id) end
  app.timers = {}
end

local function arm_timers(app)
  cancel_timers(app)
  local now = zt.now()
  app.timers = {}
  if app.remind_at ~= zt.json.null and app.remind_at > now then
    app.timers.remind = zt.timer.at(app.remind_at, "_approval.remind", { number = app.number })
  end
  app.timers.due = zt.timer.at(app.deadline, "_approval.due", { number = app.number })
end

local function start_clock(app, now)
  app.deadline = workdays_add(now, app.promised_days)
  local r = app.promised_days - cfg.remind_days
  app.remind_at = r > 0 and workdays_add(now, r) or zt.json.null
  arm_timers(app)
end

local function pause_clock(app, now)
  app.paused_since = now
  cancel_timers(app)
  if app.instance ~= zt.json.null then call("workflow.pause", { instance = app.instance }) end
end

-- The clock restarts where it stopped (补正 time is not counted): the working days that
-- were left at the pause are left at the resume, so a pause over a weekend or a holiday
-- moves the deadline by the working time it took, not by the days on the wall.
local function resume_clock(app, now)
  local since = app.paused_since
  app.paused_ms = app.paused_ms + (now - since)
  app.paused_work_ms = (app.paused_work_ms or 0) + workdays_between(since, now)
  app.paused_since = zt.json.null
  app.deadline = moved(app.deadline, since, now)
  if app.remind_at ~= zt.json.null then app.remind_at = moved(app.remind_at, since, now) end
  arm_timers(app)
  if app.instance ~= zt.json.null then call("workflow.resume", { instance = app.instance }) end
end

-- ---- the catalogue ------------------------------------------------------------------
local function all_items()
  local seen, list = {}, {}
  for code, it in items_db:iter() do
    it.source = "managed"
    seen[code] = true
    list[#list + 1] = it
  end
  for code, it in pairs(shipped) do
    if not seen[code] then list[#list + 1] = it end
  end
  table.sort(list, function(a, b) return a.code < b.code end)
  return list
end

zt.route("GET", "/approval/items", { role = "public", summary = "The item catalogue (?q=&department=)" },
  function(req)
    local q, dept = req.query.q, req.query.department
    local out = zt.json.array()
    for _, it in ipairs(all_items()) do
      local in_dept = not dept or it.department == dept
      if not in_dept then
        for _, d in ipairs(departments_of(it)) do if d == dept then in_dept = true end end
      end
      if it.active and in_dept and catalogue.matches(it, q) then
        out[#out + 1] = { code = it.code, name = it.name, department = it.department,
                          promised_days = it.promised_days, statutory_days = it.statutory_days,
                          fee = it.fee, applicants = it.applicants }
      end
    end
    return 200, { items = out }
  end)

zt.route("GET", "/approval/items/:code", { role = "public", summary = "One item: conditions, materials, limits" },
  function(req)
    local it = item_of(req.params.code)
    if not it then problem(404, "not-found", "there is no item " .. req.params.code) end
    return 200, it
  end)

zt.route("PUT", "/approval/items/:code", { role = "approval_admin", body_limit = 262144,
                                            summary = "Publish or replace an item" },
  function(req)
    local input = req:json()
    if type(input) ~= "table" then problem(422, "invalid-item", "the body must be a JSON object") end
    if input.code ~= nil and input.code ~= req.params.code then
      problem(422, "invalid-item", "code in the body differs from the path")
    end
    input.code = req.params.code
    local item, why = catalogue.check(input, cfg.max_material_bytes)
    if not item then problem(422, "invalid-item", why) end
    -- what it names must exist: an item nobody can be assigned, or whose workflow is not
    -- there, would take applications that can never be decided
    for _, d in ipairs({ item.department, table.unpack(item.parallel_departments) }) do
      if not zt.auth.department(req, d) then
        problem(422, "invalid-item", ("there is no department %s (GET /admin/departments)"):format(d))
      end
    end
    if item.countersign ~= zt.json.null then
      for _, d in ipairs(item.countersign.departments) do
        if not zt.auth.department(req, d) then
          problem(422, "invalid-item", ("countersign: there is no department %s"):format(d))
        end
      end
    end
    local def, _, _, reason = zt.call("workflow.definition", { name = item.workflow })
    if not def and reason == "not-found" then
      problem(422, "invalid-item", ("workflow: there is no workflow definition %s (GET /workflow/definitions)")
        :format(item.workflow))
    elseif not def then
      call("workflow.definition", { name = item.workflow }) -- answers the refusal
    end
    local existed = item_of(item.code) ~= nil
    item.updated_by = req.caller.login
    item.updated_at = zt.now()
    items_db:put(item.code, item)
    zt.audit.note(req, existed and "replace item" or "publish item", "item/" .. item.code)
    item.source = "managed"
    return existed and 200 or 201, item
  end)

zt.route("DELETE", "/approval/items/:code", { role = "approval_admin",
                                               summary = "Remove a managed item (a shipped one: PUT active=false)" },
  function(req)
    local code = req.params.code
    if not items_db:get(code) then
      if shipped[code] then
        problem(409, "shipped-item", "item " .. code .. " is shipped with the node: withdraw it with "
          .. "PUT and \"active\": false")
      end
      problem(404, "not-found", "there is no item " .. code)
    end
    items_db:delete(code)
    zt.audit.note(req, "remove item", "item/" .. code)
    return 204
  end)

-- ---- applications -------------------------------------------------------------------
zt.route("POST", "/approval/applications", { role = "user", summary = "Start an application (a draft)" },
  function(req)
    local c = req.caller
    if c.kind ~= "citizen" and c.kind ~= "enterprise" then
      problem(403, "forbidden", "applications are made by citizens and enterprises, not " .. c.kind .. " accounts")
    end
    -- so many new applications an hour per account (and address: zt.rate counts per client),
    -- whatever becomes of them: each costs a record, indexes, audit records
    local rate = "create/" .. c.id
    zt.rate.check(req, rate, cfg.applications_per_hour, 3600, ("you may start at most %d applications "
      .. "an hour: try again later"):format(cfg.applications_per_hour))
    local input = req:json()
    if type(input) ~= "table" then invalid("the body must be a JSON object") end
    if type(input.item) ~= "string" then invalid("item: the code of an item (a string), not " .. shown(input.item)) end
    local item = item_of(input.item)
    if not item or not item.active then invalid("item: there is no item " .. input.item) end
    local ok_kind = false
    for _, k in ipairs(item.applicants) do if k == c.kind then ok_kind = true end end
    if not ok_kind then
      invalid(("item %s is for %s applicants"):format(item.code, table.concat(item.applicants, " and ")))
    end
    local form, why = catalogue.check_form(item, input.form)
    if not form then invalid(why) end
    -- Each draft holds up to its item's materials: so many drafts per applicant bound what
    -- one account can store before anyone has looked at it.
    local drafts = 0
    for _ in drafts_db:iter{ prefix = c.id .. "/" } do drafts = drafts + 1 end
    if drafts >= cfg.max_drafts then
      problem(409, "too-many-drafts", ("you hold %d drafts, the most one applicant may: submit or "
        .. "withdraw one first"):format(drafts))
    end
    -- An enterprise applies under its own code, the one its account was registered with:
    -- the credit check and the decision name the enterprise that applied.
    local code = zt.json.null
    if c.kind == "enterprise" then
      code = c.credit_code
      if not code then
        problem(403, "forbidden", "this enterprise account has no unified social credit code on record; "
          .. "ask the service desk")
      end
      local given = input.credit_code
      if given ~= nil and given ~= zt.json.null
          and (type(given) ~= "string" or given:upper() ~= code) then
        invalid("credit_code: " .. shown(given) .. " is not this account's code (" .. code
          .. "); an enterprise applies under its own code, which may be left out")
      end
    end
    zt.rate.note(req, rate, cfg.applications_per_hour, 3600)
    local now = zt.now()
    local number = next_number(now)
    local qcode = new_query_code()
    local app = {
      number = number, item = item.code, item_name = item.name, department = item.department,
      label = item.label or zt.json.null,
      departments = departments_of(item), promised_days = item.promised_days,
      applicant = { id = c.id, kind = c.kind, login = c.login, name = c.name, credit_code = code },
      form = form, materials = {}, state = "draft", created_at = now,
      submitted_at = zt.json.null, accepted_at = zt.json.null, decided_at = zt.json.null,
      deadline = zt.json.null, remind_at = zt.json.null, paused_since = zt.json.null, paused_ms = 0,
      overdue = false, reminded = false, escalated_to = zt.json.null, paused_work_ms = 0,
      working_days = zt.json.null,
      instance = zt.json.null, opinions = zt.json.array(), supplement = zt.json.null,
      history = zt.json.array(), result = zt.json.null, timers = {},
    }
    step(app, c.login, "created")
    -- a draft left alone is withdrawn after draft_days, its materials deleted (the timer is
    -- kept with the application, so that submitting or withdrawing cancels it)
    app.timers.draft = zt.timer.at(now + cfg.draft_days * DAY, "_approval.draft", { number = number })
    save(app)
    by_applicant:put(c.id .. "/" .. number, true)
    query_codes:put(number, zt.crypto.encrypt("query_code", qcode))
    zt.audit.note(req, "create application", "application/" .. number)
    local v = view(app)
    v.query_code = qcode
    return 201, v, { Location = "/approval/applications/" .. number }
  end)

zt.route("GET", "/approval/applications", { role = "user", summary = "The caller's own applications, newest first" },
  function(req)
    return newest_first(req, by_applicant, req.caller.id .. "/", function(number)
      local app = apps:get(number)
      return app and progress(app)
    end)
  end)

zt.route("GET", "/approval/applications/:no", { role = "user", summary = "One application (applicant or its departments)" },
  function(req)
    local app = load_app(req, req.params.no)
    local v = view(app)
    if req.caller.id == app.applicant.id then
      v.query_code = zt.crypto.decrypt("query_code", query_codes:get(app.number))
    else -- someone's personal data, looked at by staff: recorded (个人信息保护)
      zt.audit.note(req, "view application", "application/" .. app.number)
    end
    return 200, v
  end)

zt.route("PUT", "/approval/applications/:no/materials/:name",
  { role = "user", body_limit = cfg.max_material_bytes, summary = "Upload one material (the raw file)" },
  function(req)
    local app = own_app(req, req.params.no)
    need_state(app, { "draft", "supplement" }, "uploading a material")
    local item = item_of(app.item)
    local spec
    for _, m in ipairs(item.materials) do if m.name == req.params.name then spec = m end end
    if not spec then
      invalid(("item %s asks for no material '%s'"):format(item.code, req.params.name))
    end
    -- While supplements are awaited (补正), only the materials asked for are handed in
    -- again: the clerk has checked the others, which must not change behind their back.
    if app.state == "supplement" then
      local asked = false
      for _, n in ipairs(app.supplement.missing) do if n == spec.name then asked = true end end
      if not asked then
        problem(409, "wrong-state", ("application %s awaits supplements of %s only, not %s"):format(
          app.number, table.concat(app.supplement.missing, ", "), spec.name))
      end
    end
    local ctype = (req:header("Content-Type") or ""):match("^%s*([^;%s]+)")
    ctype = ctype and ctype:lower()
    local ok = false
    for _, f in ipairs(spec.formats) do if f == ctype then ok = true end end
    if not ok then
      problem(415, "wrong-format", ("%s (%s) must be one of %s, not %s"):format(
        spec.name, spec.title, table.concat(spec.formats, ", "), tostring(ctype)))
    end
    local size = #req.body
    if size == 0 then invalid(spec.name .. ": the file is empty") end
    if size > spec.max_bytes then
      problem(413, "file-too-large", ("%s (%s) may be at most %d bytes; this one is %d"):format(
        spec.name, spec.title, spec.max_bytes, size))
    end
    local meta = { name = spec.name, title = spec.title, content_type = ctype, size = size,
                   digest = zt.crypto.hex(zt.crypto.hash(req.body)), uploaded_at = zt.now() }
    files:put(app.number .. "/" .. spec.name, req.body)
    app.materials[spec.name] = meta
    save(app)
    zt.audit.note(req, "upload material", "application/" .. app.number .. "/" .. spec.name)
    return 200, meta
  end)

zt.route("GET", "/approval/applications/:no/materials/:name", { role = "user", summary = "Download one material" },
  function(req)
    local app = load_app(req, req.params.no)
    local meta = app.materials[req.params.name]
    local body = meta and files:get(app.number .. "/" .. meta.name)
    if not body then problem(404, "not-found", "application " .. app.number .. " has no material " .. req.params.name) end
    -- the file is what was uploaded: its digest is kept in the (sealed) application
    if meta.digest and zt.crypto.hex(zt.crypto.hash(body)) ~= meta.digest then
      zt.log.error("application %s: material %s does not match its digest: changed outside the node",
                   app.number, meta.name)
      problem(500, "material-damaged", "material " .. meta.name .. " of application " .. app.number
        .. " is not the file that was uploaded; the service desk has been told (the log)")
    end
    if req.caller.id ~= app.applicant.id then
      zt.audit.note(req, "download material", "application/" .. app.number .. "/" .. meta.name)
    end
    -- what an applicant uploaded is a file to save, never a page to open in the clerk's
    -- browser: no inline rendering, no scripts (and the core says nosniff: it is not JSON)
    return 200, body, { ["Content-Type"] = meta.content_type,
                        ["Content-Disposition"] = ('attachment; filename="%s-%s"'):format(app.number, meta.name),
                        ["Content-Security-Policy"] = "sandbox" }
  end)

local function missing_required(app, item)
  local missing = {}
  for _, m in ipairs(item.materials) do
    if m.required and not app.materials[m.name] then missing[#missing + 1] = m.name .. " (" .. m.title .. ")" end
  end
  return missing
end

zt.route("POST", "/approval/applications/:no/submit", { role = "user", summary = "Submit a draft for acceptance" },
  function(req)
    local app = own_app(req, req.params.no)
    need_state(app, { "draft" }, "submitting")
    local item = item_of(app.item)
    if not item or not item.active then problem(409, "item-withdrawn", "item " .. app.item .. " is no longer offered") end
    -- an item kept from before its departments were checked (PUT and items.lua check them
    -- now) would send the application to a review by nobody, and on to a sealed approval
    local lacks = catalogue.deciders(item)
    if lacks then
      problem(422, "invalid-item", ("item %s cannot be applied for until it is corrected: %s"):format(item.code, lacks))
    end
    local missing = missing_required(app, item)
    if #missing > 0 then invalid("required materials are missing: " .. table.concat(missing, "; ")) end
    local now = zt.now()
    start_clock(app, now) -- the deadline goes into the instance: its tasks are due then
    local data = {
      application = app.number, item = item.code, department = item.department, deadline = app.deadline,
      head_role = cfg.head_role, -- whom an overdue task escalates to, on the to-do list
      parallel = item.parallel_departments,
      countersign = item.countersign ~= zt.json.null and item.countersign.departments or zt.json.array(),
      need = item.countersign ~= zt.json.null and item.countersign.need or 0,
    }
    -- The instance is this plugin's, started on the applicant's behalf: the applicant is
    -- not its initiator, so acts on it only through the routes here (the engine's own
    -- withdraw would end it behind the application's back, as terminated).
    local started = call("workflow.start", { definition = item.workflow, data = data,
                                             business_key = app.number, priority = 0,
                                             label = app.label ~= zt.json.null and app.label or nil,
                                             initiator = "system:" .. zt.plugin })
    app.instance = started.instance
    app.state = "submitted"
    app.submitted_at = now
    by_submitted:put(received_key(app), true)
    return stepped(req, app, "submitted", nil, "submitted",
      "申请已提交，等待受理 (submitted, awaiting acceptance)", "submit application")
  end)

zt.route("POST", "/approval/applications/:no/withdraw", { role = "user", summary = "Withdraw before a decision" },
  function(req)
    local app = own_app(req, req.params.no)
    need_state(app, { "draft", "submitted", "supplement", "reviewing" }, "withdrawing")
    if app.instance ~= zt.json.null then
      call("workflow.cancel", { instance = app.instance, reason = "withdrawn by the applicant" })
    end
    cancel_timers(app)
    -- a draft was never handed in: its files go now, its record after purge_hours (what was
    -- handed in stays on record)
    local draft = app.state == "draft"
    if draft then delete_materials(app) end
    app.state = "withdrawn"
    app.decided_at = zt.now()
    app.updated_at = app.decided_at
    if draft then purge_later(app) end
    return stepped(req, app, "withdrawn", nil, "withdrawn",
      "申请已撤回 (withdrawn)", "withdraw application")
  end)

-- ---- acceptance (受理) ------------------------------------------------------------------
local function accept_task(app)
  for _, t in ipairs(open_tasks(app)) do
    if t.node == "accept" then return t end
  end
  problem(409, "wrong-state", "application " .. app.number .. " has no open acceptance task")
end

local function opinion_of(input, field, required)
  local v = type(input) == "table" and input[field] or nil
  if v == nil or v == zt.json.null then
    if required then invalid(field .. ": required") end
    return ""
  end
  if type(v) ~= "string" or not utf8.len(v) or utf8.len(v) > 2000 then
    invalid(field .. ": text of at most 2000 characters")
  end
  return v
end

-- Joint discipline (联合惩戒): the credit plugin, when there is one, says whether the
-- applicant is on a blacklist. Returns nil when the applicant may be accepted, or why not.
local function credit_refusal(app)
  local item = item_of(app.item)
  local r, msg, code = zt.call("credit.check", {
    code = app.applicant.credit_code ~= zt.json.null and app.applicant.credit_code or zt.json.null,
    account = app.applicant.id, name = app.applicant.name, purpose = "approval:" .. app.item })
  if r == nil then
    if code == "not-provided" then
      if item.without_credit == "skip" then return nil end
      problem(503, "credit-check-unavailable", "item " .. app.item .. " needs a credit check, "
        .. "and no credit plugin is enabled: it cannot be accepted now")
    end
    zt.log.error("credit.check failed: %s", tostring(msg))
    problem(503, "credit-check-unavailable", "the credit check failed; try again later")
  end
  if type(r) == "table" and r.blacklisted then
    return "联合惩戒：申请人在失信名单中 (the applicant is on a credit blacklist"
      .. (type(r.reason) == "string" and (": " .. r.reason) or "") .. ")"
  end
  return nil
end

local function not_accepted(req, app, reason)
  local t = accept_task(app)
  call("workflow.task_action", { task = t.id, action = "complete", decision = "refuse", opinion = reason })
  cancel_timers(app)
  app.state = "not_accepted"
  app.decided_at = zt.now()
  app.result = { decision = "not_accepted", reason = reason, decision_no = zt.json.null }
  step(app, req.caller.login, "not accepted", reason)
  save(app)
  notify(app, "not_accepted", "不予受理：" .. reason)
  zt.emit("approval.completed", { number = app.number, item = app.item, result = "not_accepted",
                                  department = app.department })
end

zt.route("POST", "/approval/applications/:no/accept", { role = "approval_clerk", summary = "Accept (受理)" },
  function(req)
    local app = load_app(req, req.params.no)
    clerk_of(req, app, "accepting")
    need_state(app, { "submitted" }, "accepting")
    local input = req.body ~= "" and req:json() or {}
    local opinion = opinion_of(input, "opinion", false)
    local refusal = credit_refusal(app)
    if refusal then
      not_accepted(req, app, refusal)
      zt.audit.note(req, "refuse application (credit)", "application/" .. app.number)
      return 200, view(app)
    end
    local t = accept_task(app)
    -- the deadline again: a supplement before acceptance moved it, and the review tasks
    -- made now take it from the data
    call("workflow.task_action", { task = t.id, action = "complete", decision = "accept", opinion = opinion,
                                   form = { deadline = app.deadline } })
    app.state = "reviewing"
    app.accepted_at = zt.now()
    return stepped(req, app, "accepted", opinion, "accepted",
      "申请已受理，进入审批 (accepted; under review)", "accept application")
  end)

zt.route("POST", "/approval/applications/:no/refuse", { role = "approval_clerk", summary = "Refuse to accept (不予受理)" },
  function(req)
    local app = load_app(req, req.params.no)
    clerk_of(req, app, "refusing")
    need_state(app, { "submitted", "supplement" }, "refusing")
    local reason = opinion_of(req:json(), "reason", true)
    if app.state == "supplement" then resume_clock(app, zt.now()) end
    not_accepted(req, app, reason)
    zt.audit.note(req, "refuse application", "application/" .. app.number)
    return 200, view(app)
  end)

zt.route("POST", "/approval/applications/:no/supplement", { role = "approval_clerk",
                                                            summary = "Ask for supplements (补正); the clock stops" },
  function(req)
    local app = load_app(req, req.params.no)
    clerk_of(req, app, "asking for supplements")
    need_state(app, { "submitted" }, "asking for supplements")
    local input = req:json()
    local item = item_of(app.item)
    if type(input) ~= "table" or type(input.missing) ~= "table" or #input.missing == 0 then
      invalid("missing: the list of materials to supply again (their names)")
    end
    local names = {}
    for _, m in ipairs(item.materials) do names[m.name] = true end
    local asked = {}
    for _, n in ipairs(input.missing) do
      if not names[n] then invalid("missing: item " .. item.code .. " has no material " .. shown(n)) end
      -- each material is asked for once: the request is what the applicant is told to hand in
      if asked[n] then invalid("missing: " .. n .. " is listed twice") end
      asked[n] = true
    end
    local now = zt.now()
    app.supplement = { missing = input.missing, note = opinion_of(input, "note", false),
                       requested_at = now, requested_by = req.caller.login }
    app.state = "supplement"
    pause_clock(app, now)
    return stepped(req, app, "supplements requested", table.concat(input.missing, ", "), "supplement",
      "请补正材料：" .. table.concat(input.missing, "、")
      .. (app.supplement.note ~= "" and ("（" .. app.supplement.note .. "）") or ""), "request supplements")
  end)

zt.route("POST", "/approval/applications/:no/resubmit", { role = "user",
                                                          summary = "Hand in the supplements; the clock restarts" },
  function(req)
    local app = own_app(req, req.params.no)
    need_state(app, { "supplement" }, "handing in supplements")
    local still = {}
    for _, n in ipairs(app.supplement.missing) do
      local m = app.materials[n]
      if not m or m.uploaded_at < app.supplement.requested_at then still[#still + 1] = n end
    end
    if #still > 0 then invalid("upload these again first: " .. table.concat(still, ", ")) end
    app.state = "submitted"
    resume_clock(app, zt.now())
    app.supplement.supplied_at = zt.now()
    return stepped(req, app, "supplements handed in", nil, "resubmitted",
      "补正材料已提交，等待受理 (supplements received)", "hand in supplements")
  end)

-- A department's decision on its own task (the staff workbench may also complete the task
-- through /workflow/tasks: the opinion is recorded from the workflow's event either way).
zt.route("POST", "/approval/applications/:no/review", { role = "user", summary = "Decide as one approving department" },
  function(req)
    local app = load_app(req, req.params.no)
    need_state(app, { "reviewing" }, "reviewing")
    local input = req:json()
    local decision = type(input) == "table" and input.decision
    if decision ~= "approve" and decision ~= "refuse" then invalid("decision: \"approve\" or \"refuse\"") end
    local opinion = opinion_of(input, "opinion", decision == "refuse")
    local mine
    for _, t in ipairs(open_tasks(app)) do
      if t.node ~= "accept" and (t.department == zt.json.null or zt.auth.in_scope(req, t.department)) then
        mine = t
        break
      end
    end
    if not mine then problem(403, "forbidden", "you have no open task on application " .. app.number) end
    call("workflow.task_action", { task = mine.id, action = "complete", decision = decision, opinion = opinion })
    zt.audit.note(req, decision .. " application", "application/" .. app.number)
    return 200, { number = app.number, task = mine.id, decision = decision }
  end)

-- ---- public query, inbox, disclosure --------------------------------------------------
zt.route("GET", "/approval/query", { role = "public", summary = "Progress by number and query code (no sign-in)" },
  function(req)
    local number, code = req.query.number, req.query.code
    if not number or not code then
      problem(400, "invalid-query", "send ?number=<the application's number>&code=<its query code>")
    end
    -- numbers are printed on receipts and follow each other; a code is 8 of 31 characters:
    -- without a limit, codes could be tried at network speed
    zt.rate.check(req, "query", QUERY_FAILS, QUERY_WINDOW,
                  "too many failed queries from this address: try again later, or ask the service desk")
    local app = type(number) == "string" and #number <= 64 and apps:get(number)
    local stored = app and query_codes:get(number)
    local plain = stored and zt.crypto.decrypt("query_code", stored)
    -- one answer for every failure: the query must not tell which numbers exist
    if not plain or type(code) ~= "string" or code:upper() ~= plain then
      zt.rate.note(req, "query", QUERY_FAILS, QUERY_WINDOW)
      problem(404, "not-found", "no application matches this number and query code")
    end
    -- an applicant's progress, asked for without signing in: no cache keeps it
    return 200, progress(app), { ["Cache-Control"] = "no-store" }
  end)

-- The escalation queue (督办): what is past its promised time and still open, for the heads
-- it is escalated to (head_role: their departments and those below), clerks (theirs) and
-- supervisors (all).
zt.route("GET", "/approval/overdue", { role = "user", summary = "Overdue open applications to push on (督办)" },
  function(req)
    local all = zt.auth.has_role(req, "approval_supervisor")
    if not (all or zt.auth.has_role(req, cfg.head_role) or zt.auth.has_role(req, "approval_clerk")) then
      problem(403, "forbidden", ("the overdue list is for %s, approval_clerk and approval_supervisor"):format(cfg.head_role))
    end
    local now = zt.now()
    return newest_first(req, overdue_db, "", function(_, o)
      local mine = all
      for _, d in ipairs(o.departments) do mine = mine or zt.auth.in_scope(req, d) end
      if not mine or not cleared(req, o.label) then return nil end
      o.overdue_ms = now - o.deadline
      return o
    end)
  end)

zt.route("GET", "/approval/inbox", { role = "user", summary = "The caller's notifications, newest first" },
  function(req)
    return newest_first(req, inbox, req.caller.id .. "/", function(id, msg)
      msg.id = id
      return msg
    end)
  end)

zt.route("GET", "/approval/decisions", { role = "public", summary = "Public licensing decisions (行政许可公示)" },
  function(req)
    local q = req.query.q
    return newest_first(req, decisions, "", function(_, d)
      if q and not (d.counterparty:find(q, 1, true) or d.item_name:find(q, 1, true)) then return nil end
      d.seal = nil
      return d
    end)
  end)

zt.route("GET", "/approval/decisions/:no", { role = "public", summary = "One decision with its seal (verify at /seal/verify)" },
  function(req)
    local d = decisions:get(req.params.no)
    if not d then problem(404, "not-found", "there is no decision " .. req.params.no) end
    return 200, d
  end)

-- ---- the workflow's events ----------------------------------------------------------
-- Every workflow event carries the instance's business_key: submit sets it to the number.
local function app_of_event(ev)
  local number = ev.payload.business_key
  return type(number) == "string" and apps:get(number) or nil
end

-- 双公示: the decision as published: who (an enterprise by name and code; a citizen by
-- a masked name only), what, when, by whom.
local function mask(name)
  local first = name:match("^[%z\1-\127\194-\244][\128-\191]*")
  return (first or "") .. "*"
end

local function decide(ctx, app, result)
  local now = zt.now()
  cancel_timers(app)
  app.state = result
  app.decided_at = now
  -- 办理时长 in working days, without the time the clock stood still for supplements
  app.working_days = (workdays_between(app.submitted_at, now) - (app.paused_work_ms or 0)) / DAY
  local refusals = {}
  for _, o in ipairs(app.opinions) do if o.decision == "refuse" then refusals[#refusals + 1] = o end end
  if result == "approved" then
    local no = next_decision_no(app.department, now)
    local doc = {
      decision_no = no, item = app.item, item_name = app.item_name,
      counterparty = app.applicant.kind == "enterprise" and app.applicant.name or mask(app.applicant.name),
      counterparty_code = app.applicant.credit_code,
      content = "准予" .. app.item_name:gsub(" %(.*%)$", ""),
      date = os.date("!%Y-%m-%d", now // 1000 + 8 * 3600), department = app.department,
      application = app.number, valid_from = now,
    }
    local seal = zt.seal.json(ctx, app.department, doc)
    app.result = { decision = "approved", decision_no = no, document = doc, seal = seal }
    local public = {}
    for k, v in pairs(doc) do public[k] = v end
    public.application = nil
    public.document = doc
    public.seal = seal
    decisions:put(no, public)
    step(app, "system", "approved", no)
    notify(app, "approved", "审批通过，决定书编号 " .. no)
  else
    app.result = { decision = "refused", decision_no = zt.json.null,
                   reason = #refusals > 0 and refusals[1].opinion or "", refusals = zt.json.array(refusals) }
    step(app, "system", "refused")
    notify(app, "refused", "审批未通过 (refused)")
  end
  save(app)
  zt.emit("approval.completed", { number = app.number, item = app.item, result = result,
                                  department = app.department, decision_no = app.result.decision_no })
end

local function on_task_completed(ev, ctx)
  local app = app_of_event(ev)
  if not app or app.state ~= "reviewing" then return end
  local p = ev.payload
  if p.node == "accept" then return end
  app.opinions[#app.opinions + 1] = { node = p.node, department = p.department or zt.json.null,
    actor = p.actor or zt.json.null, decision = p.decision or zt.json.null,
    opinion = p.opinion or "", time = ev.time }
  step(app, p.actor or "staff", "department decided", (p.department or p.node) .. ": " .. tostring(p.decision))
  -- 并联审批: one department's refusal ends the application refused
  if p.decision == "refuse" then
    -- the instance may have ended already (its last task was this one): nothing to cancel then
    zt.call("workflow.cancel", { instance = app.instance, reason = "refused by " .. tostring(p.department) })
    decide(ctx, app, "refused")
  else
    save(app)
    notify(app, "progress", "部门审查意见已出具 (a department has decided)")
  end
end

-- An instance ended outside this plugin (a workflow administrator, another plugin): the
-- application can go no further, so it ends terminated (终止), with no decision, its clock
-- stopped (it is never overdue afterwards) and the applicant told. Approval's own
-- cancellations (a refusal, a withdrawal) find the application ended already.
local function terminate(app, ev)
  cancel_timers(app)
  app.state = "terminated"
  app.decided_at = zt.now()
  step(app, ev.payload.actor or "system", "terminated",
       "its workflow instance was " .. tostring(ev.payload.state) .. " outside the approval plugin")
  save(app)
  notify(app, "terminated", "审批已终止 (terminated: its process was ended by the administration)")
end

local function on_instance_completed(ev, ctx)
  local app = app_of_event(ev)
  if not app then return end
  if ev.payload.state ~= "completed" then
    local open = { submitted = true, supplement = true, reviewing = true }
    if open[app.state] then terminate(app, ev) end
    return
  end
  if app.state ~= "reviewing" then return end
  local refused = ev.payload.result == "refused"
  for _, o in ipairs(app.opinions) do if o.decision == "refuse" then refused = true end end
  decide(ctx, app, refused and "refused" or "approved")
end

-- One subscription for both, so that they arrive in the order they happened (each
-- subscriber has its own position: two would race, and the last department's opinion
-- could arrive after the instance had completed). Only instances of this plugin's own
-- definitions (workflows/) are applications: the others (leave, document, ...) are not
-- looked up, and their business keys cannot touch an application.
zt.on("workflow.*.completed", function(ev, ctx)
  -- Only the workflow engine says that a task or instance of ours completed: any plugin
  -- may emit a topic that begins with "workflow.", and its payload would otherwise decide
  -- (and seal) an application.
  if ev.source ~= "workflow" then return end
  if type(ev.payload) ~= "table" or ev.payload.plugin ~= zt.plugin then return end
  if ev.topic == "workflow.task.completed" then
    on_task_completed(ev, ctx)
  elseif ev.topic == "workflow.instance.completed" then
    on_instance_completed(ev, ctx)
  end
end)

-- An application's workflow instance given another security label (a handler found it
-- touches what not every clerk should read; a supervisor lowered it): the application
-- follows, so that who sees it here is who sees its instance.
zt.on("workflow.instance.labelled", function(ev)
  if ev.source ~= "workflow" then return end
  if type(ev.payload) ~= "table" or ev.payload.plugin ~= zt.plugin then return end
  local app = app_of_event(ev)
  if not app or app.instance ~= ev.payload.instance or not zt.valid.label(ev.payload.label) then return end
  app.label = ev.payload.label
  step(app, type(ev.payload.actor) == "string" and ev.payload.actor or "system", "labelled", app.label)
  save(app)
end)

-- A draft untouched for draft_days is withdrawn and its materials deleted: drafts are
-- bounded per applicant (max_drafts), and what was never handed in is not kept for ever.
-- One touched since is looked at again draft_days after its last change.
-- A draft nobody will finish: withdrawn by the system, its files deleted.
local function drop_draft(app, action, note, kind, text)
  delete_materials(app)
  cancel_timers(app)
  app.state = "withdrawn"
  app.updated_at = zt.now()
  purge_later(app)
  step(app, "system", action, note)
  if kind then notify(app, kind, text) end
  save(app)
end

zt.on("_approval.draft", function(ev)
  local app = apps:get(ev.payload.number)
  if not app or app.state ~= "draft" then return end
  local due = app.updated_at + cfg.draft_days * DAY
  if due > zt.now() then
    app.timers.draft = zt.timer.at(due, "_approval.draft", { number = app.number })
    apps:put(app.number, app) -- not save(): that would count as a change of the draft
    return
  end
  app.expired = true
  drop_draft(app, "expired", ("a draft untouched for %d days"):format(cfg.draft_days), "expired",
    ("草稿 %d 天未处理，已撤回 (the draft lay untouched for %d days and was withdrawn)")
    :format(cfg.draft_days, cfg.draft_days))
end)

-- A withdrawn draft, purge_hours later: gone, as if it had never been made (the audit log
-- keeps that it was made and withdrawn). Never one that was handed in.
zt.on("_approval.purge", function(ev)
  local number = ev.payload.number
  local app = apps:get(number)
  if not app or app.state ~= "withdrawn" or app.submitted_at ~= zt.json.null then return end
  for name in pairs(app.materials) do files:delete(number .. "/" .. name) end
  for _, key in ipairs(app.notices or {}) do inbox:delete(key) end
  local akey = app.applicant.id .. "/" .. number
  by_applicant:delete(akey)
  drafts_db:delete(akey)
  query_codes:delete(number)
  apps:delete(number)
end)

-- An applicant who closes their account (注销) can no longer finish a draft: drafts are
-- withdrawn and their files deleted. What was handed in is the administration's to decide
-- as the law says; its history notes the closing, and its progress stays readable with
-- the number and the query code (GET /approval/query).
zt.on("identity.account.closed", function(ev)
  local id = ev.payload.id
  if type(id) ~= "string" or ev.source ~= "core" then return end
  local numbers = {}
  for key in by_applicant:iter{ prefix = id .. "/" } do numbers[#numbers + 1] = key:sub(#id + 2) end
  for _, number in ipairs(numbers) do
    local app = apps:get(number)
    if app and app.state == "draft" then
      drop_draft(app, "withdrawn", "the applicant closed their account")
    elseif app and OPEN[app.state] then
      step(app, "system", "applicant account closed", "the application goes on; its progress "
        .. "stays readable with its number and query code")
      save(app)
    end
  end
end)

zt.on("_approval.remind", function(ev)
  local app = apps:get(ev.payload.number)
  if not app or app.reminded then return end
  app.reminded = true
  app.timers.remind = nil
  save(app)
  zt.emit("approval.reminder", { number = app.number, department = app.department, deadline = app.deadline,
                                 state = app.state })
end)

zt.on("_approval.due", function(ev)
  local app = apps:get(ev.payload.number)
  if not app or app.overdue then return end
  if app.state ~= "submitted" and app.state ~= "reviewing" then return end
  app.overdue = true
  app.escalated_to = cfg.head_role
  app.timers.due = nil
  step(app, "system", "overdue; escalated to " .. cfg.head_role)
  save(app)
  notify(app, "overdue", "已超过承诺办理时限，已提交部门负责人督办 (past the promised time: escalated to "
    .. "the department's head)")
  zt.emit("approval.overdue", { number = app.number, department = app.department, role = cfg.head_role,
                                deadline = app.deadline, state = app.state })
end)

-- ---- supervision (监督) -----------------------------------------------------------------
-- The index of received applications, for those handed in before it existed: filled once,
-- at the first start with this code (FILLED says it is done; filling again writes the same).
zt.at_start(function(ctx)
  if drafts_db:get(FILLED) then return end
  local n = 0
  for _, app in apps:iter() do
    if app.state == "draft" then
      drafts_db:put(app.applicant.id .. "/" .. app.number, true)
      n = n + 1
    end
  end
  drafts_db:put(FILLED, { at = zt.now(), drafts = n })
  zt.audit.note(ctx, "index open drafts (" .. n .. ")", "approval/drafts")
end)

-- Drafts withdrawn before they were purged (kept for ever until then): each is given its
-- purge timer once, purge_hours after its last change (at once, if that is past).
local PURGING = "#purging"
zt.at_start(function(ctx)
  if drafts_db:get(PURGING) then return end
  local n, old = 0, {}
  for _, app in apps:iter() do
    if app.state == "withdrawn" and app.submitted_at == zt.json.null and not app.timers.purge then
      old[#old + 1] = app
    end
  end
  for _, app in ipairs(old) do
    purge_later(app)
    apps:put(app.number, app) -- not save(): the time it was withdrawn stays
    n = n + 1
  end
  drafts_db:put(PURGING, { at = zt.now(), drafts = n })
  zt.audit.note(ctx, "purge withdrawn drafts (" .. n .. ")", "approval/drafts")
end)

zt.at_start(function(ctx)
  if by_submitted:get(FILLED) then return end
  local n = 0
  for _, app in apps:iter() do
    if app.submitted_at ~= zt.json.null then
      by_submitted:put(received_key(app), true)
      n = n + 1
    end
  end
  by_submitted:put(FILLED, { at = zt.now(), applications = n })
  zt.audit.note(ctx, "index received applications (" .. n .. ")", "approval/by_submitted")
  zt.log.info("by_submitted: %d applications handed in before it are indexed by the day they were", n)
end)

zt.route("GET", "/approval/stats", { role = "approval_supervisor",
                                     summary = "Counts for supervisors (?from=&to= yyyymmdd: the Beijing days "
                                       .. "handed in, both included; item, department)" },
  function(req)
    local from, to = req.query.from or "00000000", req.query.to or "99999999"
    if not (from:match("^%d%d%d%d%d%d%d%d$") and to:match("^%d%d%d%d%d%d%d%d$")) then
      problem(400, "invalid-query", "from and to are dates as yyyymmdd")
    end
    local item_f, dept_f = req.query.item, req.query.department
    local groups = {}
    local function group(key)
      local g = groups[key]
      if not g then
        g = { received = 0, accepted = 0, not_accepted = 0, approved = 0, refused = 0, withdrawn = 0,
              terminated = 0, completed = 0, overdue = 0, on_time = 0, working_days_sum = 0 }
        groups[key] = g
      end
      return g
    end
    if not by_submitted:get(FILLED) then
      problem(503, "stats-unavailable", "the index of applications by the day they were handed in is "
        .. "not filled yet (it is filled at start; the log says why it was not)")
    end
    local total = group("*")
    -- received (收件): what was handed in, by its Beijing day; a draft withdrawn or expired
    -- never was
    for key in by_submitted:iter{ from = from } do
      if key:sub(1, 8) > to then break end
      local app = apps:get(key:sub(10))
      if app and (not item_f or app.item == item_f) and (not dept_f or app.department == dept_f) then
        for _, g in ipairs({ total, group("item/" .. app.item), group("department/" .. app.department) }) do
          g.received = g.received + 1
          if app.accepted_at ~= zt.json.null then g.accepted = g.accepted + 1 end
          if g[app.state] then g[app.state] = g[app.state] + 1 end
          if app.overdue then g.overdue = g.overdue + 1 end
          if app.state == "approved" or app.state == "refused" then
            g.completed = g.completed + 1
            if app.decided_at <= app.deadline then g.on_time = g.on_time + 1 end
            g.working_days_sum = g.working_days_sum + (app.working_days or 0)
          end
        end
      end
    end
    local function finish(g)
      g.on_time_rate = g.completed > 0 and g.on_time / g.completed or zt.json.null
      g.mean_working_days = g.completed > 0 and g.working_days_sum / g.completed or zt.json.null
      g.working_days_sum = nil
      return g
    end
    local by_item, by_dept = {}, {}
    for k, g in pairs(groups) do
      local kind, name = k:match("^(%a+)/(.*)$")
      if kind == "item" then by_item[name] = finish(g) elseif kind == "department" then by_dept[name] = finish(g) end
    end
    return 200, { from = from, to = to, total = finish(total), by_item = by_item, by_department = by_dept }
  end)
