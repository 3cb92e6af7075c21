-- bearer.lua: wrk script: every request a GET with the bench's bearer token.
-- bench.py passes the token in ZT_BENCH_TOKEN. Without one it raises an error; wrk prints it
-- and would go on anonymously, so bench.py first runs this script against the signed-in-only
-- GET /auth/me, where an anonymous request is a 401 that fails the run.
local token = os.getenv("ZT_BENCH_TOKEN")
if not token or token == "" then
  error("bearer.lua: ZT_BENCH_TOKEN is not set")
end
wrk.headers["Authorization"] = "Bearer " .. token
