-- document.lua: an outgoing official document (发文): drafting, review by the office,
-- legal and finance checks in parallel (会签: both must sign), sign-off by the leader,
-- numbering by a service task, end. Returning to the drafter (驳回) is a task action.
return {
  name = "document",
  title = "发文审批 (outgoing document)",
  starters = { "oa_drafter" },
  start = "start",
  nodes = {
    start = { type = "start", next = "draft" },
    draft = {
      type = "user", title = "拟稿 (draft)",
      assignee = function(instance) return instance.initiator end,
      next = "office",
    },
    office = {
      type = "user", title = "办公室审核 (office review)", role = "oa_office",
      deadline = { days = 1 }, form = {}, next = "checks",
    },
    checks = { type = "split", next = { "legal", "finance" } },
    -- the checks and the sign-off decide and give opinions; the draft is the drafter's
    legal = { type = "user", title = "法制审核 (legal check)", role = "oa_legal", form = {}, next = "signed" },
    finance = { type = "user", title = "财务审核 (finance check)", role = "oa_finance", form = {},
                next = "signed" },
    signed = { type = "join", need = "all", next = "leader" },
    leader = {
      type = "user", title = "领导签发 (sign-off)", role = "oa_leader",
      deadline = { days = 2 }, escalate_to = "oa_office", form = {},
      next = "number",
    },
    number = {
      type = "service", title = "编号 (numbering)",
      fn = function(instance, ctx)
        -- a readable number from the instance id; a county's OA plugin would keep a register
        instance.data.doc_no = "政发-" .. instance.id:sub(-6)
      end,
      next = "done",
    },
    done = { type = "end", result = "issued" },
  },
}
