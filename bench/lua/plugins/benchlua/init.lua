-- The bench plugin: the Lua twin of nginx's content_by_lua_block { ngx.say('{"ok":true}') }.
zt.route("GET", "/bench/lua", { role = "public", summary = "Benchmark: a tiny Lua route" },
  function(req)
    return 200, { ok = true }
  end)
