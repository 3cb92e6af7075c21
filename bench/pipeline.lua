-- pipeline.lua: wrk script: each connection writes ZT_BENCH_PIPELINE (default 16) GETs of
-- the target's path at once (HTTP/1.1 pipelining) and reads their answers, so that wrk
-- spends far less per request than the server does and the server's core, not the load
-- generator, bounds the run: a difference in the server's work per request shows in
-- requests/s. With ZT_BENCH_TOKEN set, every request carries it as a bearer token.
local depth = tonumber(os.getenv("ZT_BENCH_PIPELINE") or "16")
local token = os.getenv("ZT_BENCH_TOKEN")

init = function(args)
  local headers = {}
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  local r = {}
  for i = 1, depth do r[i] = wrk.format("GET", nil, headers) end
  req = table.concat(r)
end

request = function() return req end
