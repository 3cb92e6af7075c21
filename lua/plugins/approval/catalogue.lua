-- The item catalogue (事项清单): what an approval item is, checked the same way whether it
-- comes from the shipped files (items.lua) or from an administrator over HTTP.
local M = {}

-- What a client sent, for a message: a string as it is, a number or boolean as written, a
-- table by its kind (tostring would show a Lua address).
function M.shown(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return tostring(v) end
  if v == nil or v == zt.json.null then return "null" end
  return "a " .. (t == "table" and "JSON object or list" or t)
end

local KINDS = { citizen = true, enterprise = true }
local FORM_TYPES = { string = true, integer = true, number = true, boolean = true }
local WITHOUT_CREDIT = { skip = true, refuse = true }
-- What each shipped definition (workflows/) reads of an item: the departments that decide.
local SHAPES = { approval_simple = "simple", approval_parallel = "parallel",
                 approval_countersign = "countersign" }

-- Content types a material may list: the ones a county receives in practice.
M.FORMATS = {
  ["application/pdf"] = true, ["image/jpeg"] = true, ["image/png"] = true,
  ["image/tiff"] = true, ["application/ofd"] = true, -- OFD: China's fixed-layout format
  ["application/zip"] = true, ["text/plain"] = true,
}

-- One line of text (a name, a title) of 1..max characters; lines: line breaks allowed.
local function text(v, max, lines)
  return (zt.valid.text(v, max, lines and "lines" or nil))
end

local function code_ok(v)
  return type(v) == "string" and #v >= 1 and #v <= 64 and v:match("^[%w_.-]+$") ~= nil
end
M.code_ok = code_ok

-- Department codes as the identity layer allows them (no dots).
local function dept_ok(v)
  return type(v) == "string" and #v >= 1 and #v <= 64 and v:match("^[%w_-]+$") ~= nil
end
M.dept_ok = dept_ok

local function int_in(v, lo, hi)
  return math.type(v) == "integer" and v >= lo and v <= hi
end

local function list(v)
  return type(v) == "table" and (#v > 0 or next(v) == nil)
end

-- What is wrong with the departments that decide an item (checked, or as kept: a
-- countersign of null is none), for a person to fix; nil when nothing is. The shipped
-- definitions (workflows/) review by the departments the item lists: given none, a
-- multi-instance review would go straight on, and the application would be approved and
-- sealed with nobody having looked at it; lists a definition does not read would make
-- departments see an application they never decide. A county's own definitions take what
-- they take.
function M.deciders(it)
  local shape = SHAPES[it.workflow]
  if not shape then return nil end
  local parallel = it.parallel_departments or {}
  local countersign = it.countersign ~= zt.json.null and it.countersign or nil
  if countersign and #(countersign.departments or {}) == 0 then countersign = nil end
  local wants_parallel, wants_countersign = shape == "parallel", shape == "countersign"
  if wants_parallel and #parallel == 0 then
    return "parallel_departments: workflow approval_parallel is decided by these departments; "
      .. "list at least one"
  elseif wants_countersign and countersign == nil then
    return "countersign: workflow approval_countersign is decided by these departments; "
      .. "give { departments = {...}, need = N }"
  elseif not wants_parallel and #parallel > 0 then
    return ("parallel_departments: workflow %s does not use them (approval_parallel does)")
      :format(it.workflow)
  elseif not wants_countersign and countersign ~= nil then
    return ("countersign: workflow %s does not use it (approval_countersign does)"):format(it.workflow)
  end
  return nil
end

-- Check one item; returns the item as it is kept (a fresh table), or nil and what is wrong
-- (naming the field, for a person to fix).
function M.check(it, max_material_bytes)
  if type(it) ~= "table" then return nil, "an item must be a JSON object" end
  if not code_ok(it.code) then return nil, "code: 1 to 64 of letters, digits, _ . -" end
  if not text(it.name, 200) then return nil, "name: text of 1 to 200 characters" end
  if not dept_ok(it.department) then return nil, "department: the responsible department's code" end
  if not text(it.legal_basis, 2000, true) then return nil, "legal_basis: text of 1 to 2000 characters" end
  if it.conditions ~= nil and it.conditions ~= "" and not text(it.conditions, 4000, true) then
    return nil, "conditions: text of at most 4000 characters"
  end
  if not int_in(it.statutory_days, 1, 365) then
    return nil, "statutory_days: working days the law allows, an integer from 1 to 365"
  end
  local promised = it.promised_days == nil and it.statutory_days or it.promised_days
  if not int_in(promised, 1, it.statutory_days) then
    return nil, "promised_days: an integer from 1 to statutory_days (承诺时限 never exceeds 法定时限)"
  end
  local fee = it.fee == nil and 0 or it.fee
  if not (type(fee) == "number" and fee >= 0 and fee < 1e9) then
    return nil, "fee: the fee in yuan, a number >= 0 (0: free)"
  end
  if not (type(it.workflow) == "string" and it.workflow:match("^[%w_.-]+$")) then
    return nil, "workflow: the name of the workflow definition the item runs"
  end
  local without = it.without_credit == nil and "skip" or it.without_credit
  if not WITHOUT_CREDIT[without] then
    return nil, "without_credit: \"skip\" or \"refuse\": what to do when no credit plugin answers"
  end
  -- its applications' security label (安全标记): staff not cleared for it do not see them
  local label = it.label == nil and zt.json.null or it.label
  if label ~= zt.json.null then
    if not zt.valid.label(label) then
      return nil, "label: one of the node's security labels (" .. table.concat(zt.auth.labels(), ", ")
        .. "), or leave it out"
    end
  end
  local applicants = it.applicants == nil and { "citizen", "enterprise" } or it.applicants
  if not list(applicants) or #applicants == 0 then
    return nil, "applicants: a list of \"citizen\" and/or \"enterprise\""
  end
  for _, k in ipairs(applicants) do
    if not KINDS[k] then return nil, "applicants: \"citizen\" or \"enterprise\", not " .. M.shown(k) end
  end
  local parallel = it.parallel_departments == nil and {} or it.parallel_departments
  if not list(parallel) then return nil, "parallel_departments: a list of department codes" end
  for i, d in ipairs(parallel) do
    if not dept_ok(d) then return nil, ("parallel_departments[%d]: a department code"):format(i) end
  end
  local countersign = it.countersign
  if countersign == zt.json.null then countersign = nil end -- as GET shows "no countersign"
  if countersign ~= nil then
    if type(countersign) ~= "table" or not list(countersign.departments)
      or #countersign.departments < 2 then
      return nil, "countersign: { departments = { at least two codes }, need = N }"
    end
    for i, d in ipairs(countersign.departments) do
      if not dept_ok(d) then return nil, ("countersign.departments[%d]: a department code"):format(i) end
    end
    if not int_in(countersign.need, 1, #countersign.departments) then
      return nil, "countersign.need: how many of the departments must sign, 1..their number"
    end
  end
  local why = M.deciders(it)
  if why then return nil, why end
  local materials = it.materials == nil and {} or it.materials
  if not list(materials) then return nil, "materials: a list of required documents" end
  local seen, mats = {}, {}
  for i, m in ipairs(materials) do
    local where = ("materials[%d]"):format(i)
    if type(m) ~= "table" then return nil, where .. ": an object" end
    if not (type(m.name) == "string" and m.name:match("^[%w_-]+$") and #m.name <= 64) then
      return nil, where .. ".name: 1 to 64 of letters, digits, _ -"
    end
    if seen[m.name] then return nil, where .. ".name: '" .. m.name .. "' is listed twice" end
    seen[m.name] = true
    if not text(m.title, 200) then return nil, where .. ".title: text of 1 to 200 characters" end
    if not list(m.formats) or #m.formats == 0 then
      return nil, where .. ".formats: a list of content types (application/pdf, image/jpeg, ...)"
    end
    for _, f in ipairs(m.formats) do
      if not M.FORMATS[f] then return nil, where .. ".formats: unsupported content type " .. M.shown(f) end
    end
    local max = m.max_bytes == nil and max_material_bytes or m.max_bytes
    if not int_in(max, 1, max_material_bytes) then
      return nil, ("%s.max_bytes: 1 to %d bytes"):format(where, max_material_bytes)
    end
    mats[i] = { name = m.name, title = m.title, required = m.required ~= false,
                formats = zt.json.array({ table.unpack(m.formats) }), max_bytes = max }
  end
  local form = it.form == nil and {} or it.form
  if not list(form) then return nil, "form: a list of fields" end
  local fields, fseen = {}, {}
  for i, f in ipairs(form) do
    local where = ("form[%d]"):format(i)
    if type(f) ~= "table" or not (type(f.name) == "string" and f.name:match("^[%a_][%w_]*$")) then
      return nil, where .. ".name: a field name (letters, digits, _)"
    end
    if fseen[f.name] then return nil, where .. ".name: '" .. f.name .. "' is listed twice" end
    fseen[f.name] = true
    if not text(f.title, 200) then return nil, where .. ".title: text of 1 to 200 characters" end
    local ty = f.type == nil and "string" or f.type
    if not FORM_TYPES[ty] then return nil, where .. ".type: string, integer, number or boolean" end
    local numeric = ty == "integer" or ty == "number"
    for _, bound in ipairs({ "min", "max" }) do
      local b = f[bound]
      if b ~= nil and b ~= zt.json.null then
        if not numeric then return nil, ("%s.%s: only an integer or number field has one"):format(where, bound) end
        if type(b) ~= "number" or b ~= b or b == math.huge or b == -math.huge then
          return nil, ("%s.%s: a number"):format(where, bound)
        end
      end
    end
    local lo = f.min ~= zt.json.null and f.min or nil
    local hi = f.max ~= zt.json.null and f.max or nil
    if lo and hi and lo > hi then return nil, where .. ".min: at most max" end
    fields[i] = { name = f.name, title = f.title, type = ty, required = f.required == true,
                  min = lo, max = hi }
  end
  return {
    code = it.code, name = it.name, department = it.department, legal_basis = it.legal_basis,
    conditions = it.conditions or "", statutory_days = it.statutory_days,
    promised_days = promised, fee = fee, workflow = it.workflow, without_credit = without,
    label = label,
    applicants = zt.json.array({ table.unpack(applicants) }),
    parallel_departments = zt.json.array({ table.unpack(parallel) }),
    countersign = countersign and { departments = zt.json.array({ table.unpack(countersign.departments) }),
                                    need = countersign.need } or zt.json.null,
    materials = zt.json.array(mats), form = zt.json.array(fields),
    active = it.active ~= false,
  }
end

-- Check a filled form against the item's fields: the cleaned form, or nil and why.
function M.check_form(item, form)
  if form == nil then form = {} end
  if type(form) ~= "table" then return nil, "form: a JSON object of the item's fields" end
  local known, out = {}, {}
  for _, f in ipairs(item.form) do
    known[f.name] = f
    local v = form[f.name]
    if v == nil or v == zt.json.null then
      if f.required then return nil, ("form.%s (%s) is required"):format(f.name, f.title) end
    elseif f.type == "string" and not text(v, 2000, true) then
      return nil, ("form.%s: text of 1 to 2000 characters"):format(f.name)
    elseif f.type == "integer" and math.type(v) ~= "integer" then
      return nil, ("form.%s: an integer"):format(f.name)
    elseif f.type == "number" and type(v) ~= "number" then
      return nil, ("form.%s: a number"):format(f.name)
    elseif (f.min and v < f.min) or (f.max and v > f.max) then
      return nil, ("form.%s (%s): from %s to %s"):format(f.name, f.title,
        f.min and zt.json.encode(f.min) or "any", f.max and zt.json.encode(f.max) or "any")
    elseif f.type == "boolean" and type(v) ~= "boolean" then
      return nil, ("form.%s: true or false"):format(f.name)
    else
      out[f.name] = v
    end
  end
  for k in pairs(form) do
    if not known[k] then return nil, ("form.%s: the item has no such field"):format(tostring(k)) end
  end
  return out
end

-- Does the item (as kept) mention `text` in its code, name, conditions or basis?
function M.matches(item, q)
  if not q or q == "" then return true end
  for _, s in ipairs({ item.code, item.name, item.conditions, item.legal_basis }) do
    if s:find(q, 1, true) then return true end
  end
  return false
end

return M
