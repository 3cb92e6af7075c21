-- pipeline.lua: wrk script: each connection writes ZT_BENCH_PIPELINE (default 16) GETs of
-- the target's path at once (HTTP/1.1 pipelining) and reads their answers, so that wrk
-- spends far less per request than the server does and the server's core, not the load
-- generator, bounds the run: a difference in the server's work per request shows in
-- requests/s. With ZT_BENCH_TOKEN set, every request carries it as a bearer token; with
-- ZT_BENCH_PAD set instead, the same bytes under a header of the same length that the
-- server does not read ("X-Bench-Pad-1: Bearer <token>"): the request as long, no check.
local depth = tonumber(os.getenv("ZT_BENCH_PIPELINE") or "16")
local token = os.getenv("ZT_BENCH_TOKEN")
local pad = os.getenv("ZT_BENCH_PAD")

init = function(args)
  local headers = {}
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if pad and pad ~= "" then headers["X-Bench-Pad-1"] = "Bearer " .. pad end
  local r = {}
  for i = 1, depth do r[i] = wrk.format("GET", nil, headers) end
  req = table.concat(r)
end

request = function() return req end
