-- padded.lua: wrk script: every request a GET with a header as long as the bench's bearer
-- token header ("X-Bench-Pad-1: Bearer <token>", 13 letters of name as "Authorization"),
-- which the server parses and keeps but does not check: with bearer.lua, it tells the
-- token check itself from the cost of a longer request. bench.py passes the token in
-- ZT_BENCH_TOKEN.
local token = os.getenv("ZT_BENCH_TOKEN")
if not token or token == "" then
  error("padded.lua: ZT_BENCH_TOKEN is not set")
end
wrk.headers["X-Bench-Pad-1"] = "Bearer " .. token
