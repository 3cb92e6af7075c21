-- The notice board's manifest: what it is and the options a county may set.
return {
  version = "1.0.0",
  description = "Notice board (通知公告): staff publish notices, everyone reads them",
  options = {
    page_size = {
      type = "integer",
      default = 20,
      description = "notices per page when the request gives no ?limit= (1..100)",
    },
    max_body = {
      type = "integer",
      default = 20000,
      description = "largest notice body, in bytes",
    },
  },
}
