-- post.lua: wrk script: every request a signed-in POST with a small JSON body.
-- bench.py passes the bearer token in ZT_BENCH_TOKEN.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("ZT_BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
