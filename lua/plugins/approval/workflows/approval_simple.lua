-- approval_simple.lua: an item one department handles alone: acceptance (受理), then the
-- department's decision. The approval plugin drives it and keeps the application.
local function accepted(i) return i.decisions.accept ~= "refuse" end

-- The application's deadline (承诺时限), which the approval plugin keeps in the data: at
-- submission, and again at acceptance (supplements before it stop the clock).
local function legal_deadline(i) return i.data.deadline end
-- The role overdue tasks escalate to: the approval plugin's head_role, from the data.
local function head_role(i) return i.data.head_role end

return {
  name = "approval_simple",
  title = "审批：单部门 (one department)",
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
    accepted = { type = "gateway", conditions = { { when = accepted, next = "review" } },
                 default = "not_accepted" },
    review = {
      type = "user", title = "审查决定 (decision)", role = "approval_reviewer",
      deadline = legal_deadline, -- the item's promised time, as the application counts it
      escalate_to = head_role, -- then also on the department head's to-do list
      decisions = { "approve", "refuse" }, -- no completion decides by leaving it out
      reasons = { "refuse" }, -- a refusal says why (不予许可 states its reasons)
      form = {}, -- a reviewer sets no data: the departments, deadline and head_role steer the others
      department = function(i) return i.data.department end,
      next = "decided",
    },
    decided = {
      type = "gateway",
      conditions = { { when = function(i) return i.decisions.review == "refuse" end, next = "refused" } },
      default = "approved",
    },
    approved = { type = "end", result = "approved" },
    refused = { type = "end", result = "refused" },
    not_accepted = { type = "end", result = "not_accepted" },
  },
}
