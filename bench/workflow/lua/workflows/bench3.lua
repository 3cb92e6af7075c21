-- bench3.lua: the benchmark's process: task A, then B and C in parallel, then the end.
return {
  name = "bench3",
  title = "benchmark: A, then B ∥ C",
  starters = { "bench" },
  start = "s",
  nodes = {
    s = { type = "start", next = "a" },
    a = { type = "user", role = "bench", next = "fork" },
    fork = { type = "split", next = { "b", "c" } },
    b = { type = "user", role = "bench", next = "j" },
    c = { type = "user", role = "bench", next = "j" },
    j = { type = "join", need = "all", next = "e" },
    e = { type = "end" },
  },
}
