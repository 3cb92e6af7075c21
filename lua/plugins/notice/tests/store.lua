-- What init.lua relies on from the zt module, checked against the notice board's own
-- database: run with `zhengtong test notice` (docs/lua-api.md, "Testing a plugin").
local notices = zt.db.open("notices") -- at the top level, as in init.lua

-- A notice as POST /notices makes it.
local function notice(title, department)
  return {
    id = zt.id(),
    title = title,
    body = "政务服务大厅每日9:00-12:00开放。",
    department = department or zt.json.null,
    created_at = zt.now(),
  }
end

-- Publish n notices titled "notice 1" .. "notice n", oldest first; their ids in order.
local function publish(n)
  local ids = {}
  for i = 1, n do
    local it = notice("notice " .. i)
    notices:put(it.id, it)
    ids[i] = it.id
  end
  return ids
end

test("a notice comes back from the database as it was stored", function(t)
  local n = notice("春节期间政务大厅开放时间")
  notices:put(n.id, n)
  local got = notices:get(n.id)
  t.eq(got, n)
  t.ok(got.department == zt.json.null, "a missing department stays null, not nil")
  t.eq(math.type(got.created_at), "integer", "created_at stays an integer")
end)

test("each test starts from an empty database", function(t)
  -- the test above wrote a notice; its transaction was rolled back
  t.eq(notices:iter{ limit = 1 }(), nil)
end)

test("ids sort by time: the newest notice is the last key", function(t)
  local ids = publish(50)
  for i = 2, #ids do
    t.ok(ids[i] > ids[i - 1], ("id %d sorts after id %d"):format(i, i - 1))
  end
  local newest = {}
  for id, n in notices:iter{ reverse = true, limit = 3 } do newest[#newest + 1] = n.title end
  t.eq(newest, { "notice 50", "notice 49", "notice 48" })
end)

test("a page after `before` is a reverse scan from it, which yields `before` first", function(t)
  local ids = publish(5)
  local seen = {}
  for id in notices:iter{ from = ids[4], reverse = true } do seen[#seen + 1] = id end
  -- GET /notices?before=<id> skips the first key, which is `before` itself
  t.eq(seen, { ids[4], ids[3], ids[2], ids[1] })
end)

test("withdrawing a notice removes it once", function(t)
  local n = notice("临时停水通知", "县水务局")
  notices:put(n.id, n)
  t.eq(notices:delete(n.id), true)
  t.eq(notices:get(n.id), nil)
  t.eq(notices:delete(n.id), false, "a second withdrawal finds nothing")
end)

test("the options are in the range init.lua accepts", function(t)
  t.ok(zt.config.page_size >= 1 and zt.config.page_size <= 100, "page_size is 1..100")
  t.ok(zt.config.max_body >= 1, "max_body is at least 1")
  t.error(function() return zt.config.no_such_option end, "no option 'no_such_option'")
end)

test("an invalid notice is a 422 problem that a caller can catch", function(t)
  local p = t.problem(function() zt.problem(422, "invalid-notice", "title must be text") end,
    422, "invalid-notice")
  t.eq(p.detail, "title must be text")
  t.eq(p.title, "Unprocessable Content") -- the status's, as the core's own problems
end)
