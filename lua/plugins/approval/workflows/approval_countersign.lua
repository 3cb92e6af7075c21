-- approval_countersign.lua: countersign (会签): after acceptance, the listed departments
-- sign; as many as the item's countersign.need suffice, and the others' tasks are then
-- cancelled. A refusal ends the application refused.
local function accepted(i) return i.decisions.accept ~= "refuse" end

-- The application's deadline (承诺时限), which the approval plugin keeps in the data: at
-- submission, and again at acceptance (supplements before it stop the clock).
local function legal_deadline(i) return i.data.deadline end
-- The role overdue tasks escalate to: the approval plugin's head_role, from the data.
local function head_role(i) return i.data.head_role end
-- The departments that sign: the item's countersign.departments, put in the data at
-- submission. With none the countersign would go straight on to an approval nobody gave (an
-- item saved before items were checked for them): the step fails instead (a script error:
-- nothing of it is kept, the log says why), and the clerk can still refuse to accept it.
local function signing(i)
  local d = i.data.countersign
  if type(d) ~= "table" or #d == 0 then
    error(("application %s: item %s has no countersign departments: nobody would sign it")
      :format(tostring(i.data.application), tostring(i.data.item)), 0)
  end
  return d
end

return {
  name = "approval_countersign",
  title = "审批：会签 (countersign, N of the departments)",
  start = "start",
  nodes = {
    start = { type = "start", next = "accept" },
    accept = {
      type = "user", title = "受理 (acceptance)", role = "approval_clerk",
      deadline = legal_deadline, -- the item's promised time, as the application counts it
      escalate_to = head_role, -- then also on the department head's to-do list
      decisions = { "accept", "refuse" },
      reasons = { "refuse" }, -- 不予受理 says why
      complete_over_http = false, -- POST /approval/applications/:no/accept (credit check first)
      form = { "deadline" }, -- the accept route sets it again; nothing else of the data
      department = function(i) return i.data.department end,
      next = "accepted",
    },
    accepted = { type = "gateway", conditions = { { when = accepted, next = "sign" } },
                 default = "not_accepted" },
    sign = {
      type = "user", title = "会签 (countersign)", role = "approval_reviewer",
      deadline = legal_deadline, -- the item's promised time, as the application counts it
      escalate_to = head_role, -- then also on the department head's to-do list
      decisions = { "approve", "refuse" }, -- no completion decides by leaving it out
      reasons = { "refuse" }, -- a refusal says why (不予许可 states its reasons)
      form = {}, -- a reviewer sets no data: the departments, deadline and head_role steer the others
      multi = signing, -- one task per department; none is an error, not an approval
      need = function(i) return i.data.need end,
      next = "decided",
    },
    decided = {
      type = "gateway",
      conditions = { { when = function(i) return i.decisions.sign == "refuse" end, next = "refused" } },
      default = "approved",
    },
    approved = { type = "end", result = "approved" },
    refused = { type = "end", result = "refused" },
    not_accepted = { type = "end", result = "not_accepted" },
  },
}
