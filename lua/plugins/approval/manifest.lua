-- The approval plugin's manifest: one-stop online administrative approval (一站式网上审批).
return {
  version = "0.1.0",
  description = "One-stop online approval (一站式网上审批): catalogue, applications, "
    .. "acceptance, parallel approval, time limits, sealed decisions, supervision",
  requires = { "workflow" },
  wants = { "credit.check" },
  options = {
    number_prefix = {
      type = "string",
      default = "SP",
      description = "letters before an application's number (SP20261122000001)",
    },
    max_material_bytes = {
      type = "integer",
      default = 20971520,
      description = "largest material file any item may accept, in bytes (an item may set less)",
    },
    page_size = {
      type = "integer",
      default = 20,
      description = "list entries per page when the request gives no ?limit= (1..200)",
    },
    remind_days = {
      type = "integer",
      default = 1,
      description = "working days before an application's deadline when its handlers are reminded",
    },
    max_drafts = {
      type = "integer",
      default = 10,
      description = "drafts (applications not yet submitted) one applicant may hold at once (1..1000)",
    },
    draft_days = {
      type = "integer",
      default = 30,
      description = "days a draft may lie untouched before it is withdrawn and its materials deleted (1..3650)",
    },
    applications_per_hour = {
      type = "integer",
      default = 30,
      description = "applications one account may start in an hour (from one address), then 429 (1..1000000)",
    },
    purge_hours = {
      type = "integer",
      default = 24,
      description = "hours a withdrawn draft (never handed in) is kept before it is purged (0..8760)",
    },
    head_role = {
      type = "string",
      default = "dept_head",
      description = "the role an overdue application is escalated to (in its department)",
    },
  },
}
