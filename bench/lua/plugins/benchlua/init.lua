-- init.lua: the bench plugin's one route, the Lua twin of nginx's content_by_lua_block.
zt.route("GET", "/bench/lua", { role = "public" }, function(req)
    return 200, { ok = true }
end)
