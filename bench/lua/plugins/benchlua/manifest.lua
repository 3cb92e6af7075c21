-- The bench plugin's manifest: one tiny route for bench/run (not shipped in lua/).
return {
  version = "1.0.0",
  description = "Benchmark plugin: one tiny public route, GET /bench/lua",
}
