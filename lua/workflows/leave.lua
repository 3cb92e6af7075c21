-- leave.lua: a staff leave request (请假审批): the head of the requester's department
-- decides; more than three days also goes to personnel (人事). A refusal ends it.
return {
  name = "leave",
  title = "请假审批 (leave request)",
  version_note = "head of department; personnel above three days",
  starters = { "user" }, -- any signed-in staff member may ask for leave
  start = "start",
  nodes = {
    start = { type = "start", next = "head" },
    head = {
      type = "user", title = "部门负责人审批 (head of department)",
      role = "dept_head",
      -- the requester's own department (the instance's department is the initiator's)
      department = function(instance) return instance.department end,
      deadline = { days = 2 }, remind_before = { hours = 4 }, escalate_to = "dept_director",
      -- the head decides (and may say why), but sets none of the request's data: `days`
      -- steers where it goes next
      form = {},
      next = "head_decided",
    },
    head_decided = {
      type = "gateway",
      conditions = {
        { when = function(i) return i.decisions.head == "refuse" end, next = "refused" },
        { when = function(i) return (tonumber(i.data.days) or 0) > 3 end, next = "personnel" },
      },
      default = "approved",
    },
    personnel = {
      type = "user", title = "人事审批 (personnel)", role = "hr",
      deadline = { days = 3 }, remind_before = { days = 1 },
      form = {},
      next = "personnel_decided",
    },
    personnel_decided = {
      type = "gateway",
      conditions = { { when = function(i) return i.decisions.personnel == "refuse" end, next = "refused" } },
      default = "approved",
    },
    approved = { type = "end", result = "approved" },
    refused = { type = "end", result = "refused" },
  },
}
