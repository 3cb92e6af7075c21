-- The notice board: everyone reads notices; editors publish and withdraw them.
local page_size = zt.config.page_size
local max_body = zt.config.max_body
if page_size < 1 or page_size > 100 then
  zt.config_error("page_size", ("must be 1 to 100, not %d"):format(page_size))
end
if max_body < 1 or max_body > 1000000 then
  zt.config_error("max_body", ("must be 1 to 1000000 bytes, not %d"):format(max_body))
end

zt.role("notice_editor", "Publishes and withdraws notices")

-- Keyed by zt.id(): ids sort by time, so the newest notice is the last key.
local notices = zt.db.open("notices")

local function invalid(detail)
  zt.problem(422, "invalid-notice", detail)
end

-- What a reader sees: the editor's login is staff business (who to ask, who may withdraw
-- it), not something to publish to everyone.
local function view(req, notice)
  local c = req.caller
  if c and c.kind == "staff" then return notice end
  notice.published_by = nil
  return notice
end

local function not_found(id)
  zt.problem(404, "not-found", "there is no notice " .. id)
end

-- A notice labelled above the reader's clearance (安全标记: an internal notice, say, for
-- staff only) is not theirs to see; one without a label is public.
local function visible(req, notice)
  local label = notice.label
  return label == nil or label == zt.json.null or zt.auth.clears(req, label)
end

-- The notice :id if the caller may see it; else 404, as if there were none.
local function readable(req)
  local notice = notices:get(req.params.id)
  if not notice or not visible(req, notice) then not_found(req.params.id) end
  return notice
end

-- GET /notices?limit=&before=: newest first; `next` is the `before` of the next page.
zt.route("GET", "/notices", { role = "public", summary = "List notices, newest first" },
  function(req)
    local limit = page_size
    if req.query.limit then
      limit = math.tointeger(tonumber(req.query.limit))
      if not limit or limit < 1 or limit > 100 then
        zt.problem(400, "invalid-query", "limit must be an integer from 1 to 100")
      end
    end
    local before = req.query.before
    local items, next = zt.json.array(), zt.json.null
    for id, notice in notices:iter{ from = before, reverse = true } do
      if id ~= before and visible(req, notice) then
        if #items == limit then
          next = items[#items].id
          break
        end
        items[#items + 1] = view(req, notice)
      end
    end
    return 200, { items = items, next = next }
  end)

zt.route("GET", "/notices/:id", { role = "public", summary = "One notice" },
  function(req)
    return 200, view(req, readable(req))
  end)

-- A JSON body may escape every character as \uXXXX (6 bytes): room for that.
zt.route("POST", "/notices",
  { role = "notice_editor", body_limit = 6 * max_body + 1024, summary = "Publish a notice" },
  function(req)
    local input = req:json()
    if type(input) ~= "table" then invalid("the body must be a JSON object") end
    local title, body, department = input.title, input.body, input.department
    local ok, why = zt.valid.text(title, 200)
    if not ok then invalid("title must be one line of text, 1 to 200 characters: it " .. why) end
    ok, why = zt.valid.text(body, max_body, "lines")
    if body == "" then ok = true end
    if not ok or #body > max_body then
      invalid(("body must be text of at most %d bytes: it %s"):format(max_body, why or "is too long"))
    end
    if department == zt.json.null then department = nil end
    if department ~= nil and (type(department) ~= "string" or not utf8.len(department)) then
      invalid("department, if given, must be text")
    end
    -- The department that issues it: the editor's own, or one below it (an editor of the
    -- county office may publish for a bureau, not the other way round).
    local code = input.department_code
    if code == nil or code == zt.json.null then code = req.caller.department end
    if code ~= nil and type(code) ~= "string" then
      invalid("department_code, if given, must be a department code")
    end
    if code ~= nil and not zt.auth.in_scope(req, code) then
      zt.problem(403, "forbidden", "you publish for your own department or one below it, not " .. code)
    end
    -- The name readers see is that department's, from its record: a text of the editor's
    -- choosing would publish in another department's name after all.
    local dept = code ~= nil and zt.auth.department(req, code) or nil
    local name = dept and dept.name or nil
    if department ~= nil and department ~= name then
      invalid(name and ("department: the name of department %s is %s; leave it out"):format(code, name)
        or "department: this notice is issued by no department; leave it out")
    end
    department = name
    -- Who may read it: a label of the node's (zt.auth.labels), none for everyone. An editor
    -- publishes only what they may read themselves.
    local label = input.label
    if label == zt.json.null then label = nil end
    if label ~= nil then
      if not zt.valid.label(label) then
        invalid("label, if given, must be one of " .. table.concat(zt.auth.labels(), ", "))
      end
      if not zt.auth.clears(req, label) then
        zt.problem(403, "forbidden", ("label: you are cleared for %s, not %s: you publish only "
          .. "what you may read"):format(req.caller.clearance, label))
      end
    end
    local notice = {
      id = zt.id(),
      title = title,
      body = body,
      department = department or zt.json.null,
      department_code = code or zt.json.null,
      label = label or zt.json.null,
      published_by = req.caller.login,
      created_at = zt.now(),
    }
    notices:put(notice.id, notice)
    zt.log.info("notice %s published: %s", notice.id, title)
    return 201, notice, { Location = "/notices/" .. notice.id }
  end)

zt.route("DELETE", "/notices/:id", { role = "notice_editor", summary = "Withdraw a notice" },
  function(req)
    local notice = readable(req)
    -- Withdrawn by the editors of the department that issued it, or of one above it; one
    -- issued by no department (its editor had none: an API key) by its publisher or an
    -- administrator, not by every editor of the county.
    local code = notice.department_code
    if code ~= nil and code ~= zt.json.null then
      if not zt.auth.in_scope(req, code) then
        zt.problem(403, "forbidden", "notice " .. req.params.id .. " was issued by department " .. code
          .. ": its editors, or those of a department above it, withdraw it")
      end
    elseif notice.published_by ~= req.caller.login and not zt.auth.has_role(req, "admin") then
      zt.problem(403, "forbidden", "notice " .. req.params.id .. " was issued by no department: "
        .. tostring(notice.published_by) .. ", who published it, or an administrator withdraws it")
    end
    notices:delete(req.params.id)
    zt.log.info("notice %s withdrawn", req.params.id)
    return 204
  end)
