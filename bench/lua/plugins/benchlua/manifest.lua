-- manifest.lua: the bench plugin, a tiny Lua route for bench/run (not shipped in lua/).
name = "benchlua"
version = "1.0.0"
description = "Benchmark plugin: one tiny public route, GET /bench/lua"
requires = {}
options = {}
