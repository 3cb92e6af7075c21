/* engine.c: instances and tasks: starting, moving through nodes, task actions, deadlines. */
#include "wf.h"

#include <lauxlib.h>
#include <lua.h>

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const inst_states[] = {"", "running", "completed", "withdrawn", "cancelled"};
static const char *const task_states[] = {"", "open", "completed", "cancelled"};

int wf_op_begin(wf_op *op, wf *w, zt_req *req)
{
    memset(op, 0, sizeof *op);
    op->w = w;
    op->req = req;
    op->txn = zt_req_txn(req);
    if (!op->txn) return ZT_EBUSY;
    op->caller = zt_req_caller(req);
    op->actor = op->caller && op->caller->login ? op->caller->login : "anonymous";
    op->now = zt_now_ms();
    return ZT_OK;
}

int wf_fail(wf_op *op, int status, const char *slug, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->why, sizeof op->why, fmt, ap);
    va_end(ap);
    op->status = status;
    op->slug = slug;
    switch (status) {
    case 400:
    case 422:
        return ZT_EINVAL;
    case 403:
        return ZT_EPERM;
    case 404:
        return ZT_ENOTFOUND;
    case 409:
        return ZT_ECONFLICT;
    default:
        return ZT_ERROR;
    }
}

/* A storage or memory error where no person's mistake is involved. */
static int sys_fail(wf_op *op, int rc, const char *what)
{
    if (op->status) return rc;
    snprintf(op->why, sizeof op->why, "%s: %s", what, zt_strerror(rc));
    op->status = rc == ZT_EBUSY ? 503 : rc == ZT_EFULL ? 507 : 500;
    op->slug = "workflow-storage";
    return rc;
}

/* Actions write: a service called from a GET (a read-only transaction) is refused. */
static int need_write(wf_op *op)
{
    return zt_txn_writable(op->txn) ? ZT_OK : sys_fail(op, ZT_EREADONLY, "workflow action");
}

/* ---- views -------------------------------------------------------------------------- */

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v && *v) cJSON_AddStringToObject(o, k, v);
}

static void add_time(cJSON *o, const char *k, int64_t v)
{
    if (v > 0) cJSON_AddNumberToObject(o, k, (double)v);
}

cJSON *wf_task_json(wf *w, const wf_task *t, int64_t now)
{
    (void)w;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", t->id);
    add_str(o, "instance", t->inst);
    add_str(o, "definition", t->def);
    cJSON_AddNumberToObject(o, "version", t->version);
    add_str(o, "node", t->node_id);
    add_str(o, "title", t->title);
    add_str(o, "business_key", t->bkey);
    add_str(o, "plugin", t->owner);
    add_str(o, "role", t->role);
    add_str(o, "department", t->dept);
    add_str(o, "assignee", t->assignee);
    add_str(o, "escalated_to", t->escalated);
    add_str(o, "delegated_by", t->delegated_by);
    add_str(o, "label", t->label);
    cJSON_AddStringToObject(o, "state", t->state <= WF_T_CANCELLED ? task_states[t->state] : "?");
    cJSON_AddNumberToObject(o, "priority", t->priority);
    add_time(o, "created", t->created);
    add_time(o, "due", t->due);
    add_time(o, "remind_at", t->remind_at);
    cJSON_AddBoolToObject(o, "overdue",
                          (t->flags & WF_TF_OVERDUE) ||
                              (t->state == WF_T_OPEN && t->due > 0 && t->due < now) ||
                              (t->state == WF_T_COMPLETED && t->due > 0 && t->done_at > t->due));
    cJSON_AddBoolToObject(o, "claimed", (t->flags & WF_TF_CLAIMED) != 0);
    add_time(o, "done_at", t->done_at);
    add_str(o, "done_by", t->done_by);
    add_str(o, "decision", t->decision);
    add_str(o, "opinion", t->opinion);
    return o;
}

cJSON *wf_inst_json(wf *w, const wf_inst *in, bool with_data)
{
    (void)w;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", in->id);
    add_str(o, "definition", in->def);
    cJSON_AddNumberToObject(o, "version", in->version);
    add_str(o, "business_key", in->bkey);
    add_str(o, "plugin", in->owner);
    add_str(o, "initiator", in->initiator);
    add_str(o, "department", in->dept);
    add_str(o, "label", in->label);
    cJSON_AddNumberToObject(o, "priority", in->priority);
    cJSON_AddStringToObject(o, "state", in->state <= WF_I_CANCELLED ? inst_states[in->state] : "?");
    add_str(o, "result", in->result);
    add_time(o, "created", in->created);
    add_time(o, "ended", in->ended);
    cJSON_AddBoolToObject(o, "paused", (in->flags & WF_IF_PAUSED) != 0);
    cJSON_AddNumberToObject(o, "paused_ms", (double)in->paused_ms);
    cJSON_AddBoolToObject(o, "overdue", (in->flags & WF_IF_OVERDUE) != 0);
    cJSON *open = cJSON_AddArrayToObject(o, "open_tasks");
    for (uint16_t i = 0; open && i < in->nopen; i++) {
        char id[WF_ID + 1];
        memcpy(id, in->open[i], WF_ID);
        id[WF_ID] = 0;
        cJSON_AddItemToArray(open, cJSON_CreateString(id));
    }
    if (with_data) {
        cJSON *data = cJSON_Parse(in->data && *in->data ? in->data : "{}");
        cJSON_AddItemToObject(o, "data", data ? data : cJSON_CreateObject());
        cJSON *dec = cJSON_Parse(in->decisions && *in->decisions ? in->decisions : "{}");
        cJSON_AddItemToObject(o, "decisions", dec ? dec : cJSON_CreateObject());
    }
    return o;
}

/* ---- events ------------------------------------------------------------------------- */

/* Emit topic about the instance (and task t, if any); extra's members (if any) are added. */
static int emit_with(wf_op *op, const char *topic, const wf_inst *in, const wf_task *t,
                     const char *actor, const cJSON *extra)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return sys_fail(op, ZT_ENOMEM, "event");
    for (const cJSON *e = extra ? extra->child : NULL; e; e = e->next)
        cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
    cJSON_AddStringToObject(o, "instance", in->id);
    add_str(o, "definition", in->def);
    cJSON_AddNumberToObject(o, "version", in->version);
    add_str(o, "business_key", in->bkey);
    add_str(o, "plugin", in->owner);
    add_str(o, "label", in->label);
    if (t) {
        cJSON_AddStringToObject(o, "task", t->id);
        add_str(o, "node", t->node_id);
        add_str(o, "role", t->role);
        add_str(o, "department", t->dept);
        add_str(o, "assignee", t->assignee);
        add_str(o, "escalated_to", t->escalated);
        add_str(o, "decision", t->decision);
        add_str(o, "opinion", t->opinion);
        add_time(o, "due", t->due);
        cJSON_AddStringToObject(o, "state", task_states[t->state]);
    } else {
        cJSON_AddStringToObject(o, "state", inst_states[in->state]);
        add_str(o, "result", in->result);
    }
    add_str(o, "actor", actor);
    int rc = zt_emit(op->req, topic, o);
    cJSON_Delete(o);
    return rc == ZT_OK ? ZT_OK : sys_fail(op, rc, topic);
}

static int emit(wf_op *op, const char *topic, const wf_inst *in, const wf_task *t,
                const char *actor)
{
    return emit_with(op, topic, in, t, actor, NULL);
}

/* ---- Lua ---------------------------------------------------------------------------- */

/* The instance as scripts see it: {id, definition, version, business_key, initiator,
 * department, priority, data, decisions}. */
static void push_instance(wf_op *op, const wf_inst *in)
{
    cJSON *o = wf_inst_json(op->w, in, true);
    if (o) cJSON_DeleteItemFromObject(o, "open_tasks");
    zt_lua_push_json(op->w->L, o ? o : cJSON_CreateNull());
    cJSON_Delete(o);
}

/* Call function `ref` with (instance, ctx), leaving 1 result on the stack above the
 * instance table; the caller pops both (lua_settop to the returned base). With
 * write_back, instance.data as the script left it becomes the instance's data. */
static int call_fn(wf_op *op, wf_inst *in, const wf_def *d, const wf_node *n, int ref,
                   bool write_back, int *base)
{
    lua_State *L = op->w->L;
    *base = lua_gettop(L);
    push_instance(op, in);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushvalue(L, -2);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, n->id);
    lua_setfield(L, -2, "node");
    lua_pushinteger(L, op->now);
    lua_setfield(L, -2, "now");
    lua_pushstring(L, op->actor);
    lua_setfield(L, -2, "actor");
    char err[512];
    if (zt_lua_call(L, op->req, 2, 1, err, sizeof err) != ZT_OK) {
        lua_settop(L, *base);
        return wf_fail(op, 500, "workflow-script-failed", "workflow %s v%u, node '%s': %s", d->name,
                       d->version, n->id, err);
    }
    if (write_back) {
        lua_getfield(L, *base + 1, "data");
        cJSON *data = NULL;
        int rc = lua_istable(L, -1) ? zt_lua_to_json(L, -1, &data) : ZT_EINVAL;
        lua_pop(L, 1);
        if (rc != ZT_OK || !cJSON_IsObject(data)) {
            cJSON_Delete(data);
            lua_settop(L, *base);
            return wf_fail(op, 500, "workflow-script-failed",
                           "workflow %s v%u, node '%s': instance.data must stay a table that "
                           "JSON can carry",
                           d->name, d->version, n->id);
        }
        const char *kept = wf_inst_keep_json(in, data);
        cJSON_Delete(data);
        if (!kept) {
            lua_settop(L, *base);
            return sys_fail(op, ZT_ENOMEM, "instance data");
        }
        in->data = kept;
    }
    return ZT_OK;
}

/* ---- tasks -------------------------------------------------------------------------- */

static int arm(wf_op *op, wf_task *t)
{
    char id[27];
    int rc;
    if (t->due > 0 && !(t->flags & WF_TF_OVERDUE)) {
        cJSON *pl = cJSON_CreateObject();
        if (!pl || !cJSON_AddStringToObject(pl, "task", t->id)) {
            cJSON_Delete(pl);
            return sys_fail(op, ZT_ENOMEM, "timer");
        }
        rc = zt_timer_at(op->req, t->due, "_workflow.due", pl, id);
        if (rc == ZT_OK && t->remind_at > 0 && !(t->flags & WF_TF_REMINDED)) {
            if ((t->due_timer = wf_task_keep(t, id)) == NULL) rc = ZT_ENOMEM;
            if (rc == ZT_OK) rc = zt_timer_at(op->req, t->remind_at, "_workflow.remind", pl, id);
            if (rc == ZT_OK && !(t->remind_timer = wf_task_keep(t, id))) rc = ZT_ENOMEM;
        } else if (rc == ZT_OK && !(t->due_timer = wf_task_keep(t, id))) {
            rc = ZT_ENOMEM;
        }
        cJSON_Delete(pl);
        if (rc != ZT_OK) return sys_fail(op, rc, "timer");
    }
    return ZT_OK;
}

static int disarm(wf_op *op, wf_task *t)
{
    const char **ids[] = {&t->due_timer, &t->remind_timer};
    for (int i = 0; i < 2; i++) {
        if (!wf_nz(*ids[i])) continue;
        int rc = zt_timer_cancel(op->req, *ids[i]);
        if (rc != ZT_OK && rc != ZT_ENOTFOUND) return sys_fail(op, rc, "timer");
        *ids[i] = "";
    }
    return ZT_OK;
}

/* The active staff account `who` (a login, or an account id) into *c: ZT_ENOTFOUND for
 * none (no such account, a disabled one, a citizen's), else what reading it gave. */
static int staff_account(wf_op *op, const char *who, const zt_caller **c)
{
    *c = NULL;
    int rc = op->req ? zt_req_account(op->req, who, c) : ZT_EIO;
    return rc == ZT_OK && strcmp((*c)->kind, "staff") != 0 ? ZT_ENOTFOUND : rc;
}

/* "a, b, c": the words, as much of them as cap holds. */
static void join_words(char *out, size_t cap, char *const *w, size_t n)
{
    out[0] = 0;
    for (size_t i = 0, used = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? ", " : "", w[i]);
}

/* A task a definition gives someone by name waits for them alone: when they cannot take
 * it (no active staff account, or one not cleared for its label), say so once, where county
 * IT looks, with the way out. The task is opened all the same: the step that opens it
 * belongs to whoever completed the one before, who can do nothing about it. */
static void warn_unable(wf_op *op, const wf_def *d, const wf_node *n, const wf_task *t)
{
    const zt_caller *c;
    int rc = staff_account(op, t->assignee, &c);
    bool no_account = rc == ZT_ENOTFOUND;
    if (!no_account && (rc != ZT_OK || wf_cleared(op->w, c, t->label))) return;
    zt_log(op->w->p, ZT_LOG_WARN,
           "workflow %s v%u, node '%s': task %s is for '%.64s', who %s%s: a workflow supervisor "
           "can give it to someone else (POST /workflow/tasks/%s/delegate)",
           d->name, d->version, n->id, t->id, t->assignee,
           no_account ? "is not the login of an active staff account"
                      : "is not cleared for its label ",
           no_account ? "" : t->label, t->id);
}

static int new_task(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni, const char *role,
                    const char *dept, const char *assignee, const char *title)
{
    const wf_node *n = &d->nodes[ni];
    wf_task t;
    memset(&t, 0, sizeof t);
    zt_id(t.id);
    t.state = WF_T_OPEN;
    t.node = ni;
    t.priority = in->priority;
    t.version = in->version;
    t.created = op->now;
    t.inst = in->id;
    t.def = in->def;
    t.node_id = n->id;
    t.title = title ? title : n->title;
    t.bkey = in->bkey;
    t.owner = in->owner;
    t.role = role;
    t.dept = dept;
    t.assignee = assignee;
    t.label = in->label;
    int rc = ZT_OK;
    if (wf_nz(assignee)) warn_unable(op, d, n, &t);
    if (n->deadline_fn != WF_NOREF) {
        /* the moment the instance's data (its plugin) says; nil: no deadline */
        lua_State *L = op->w->L;
        int base;
        if ((rc = call_fn(op, in, d, n, n->deadline_fn, false, &base)) != ZT_OK) return rc;
        int isint = 0;
        lua_Integer at = lua_isnil(L, -1) ? 0 : lua_tointegerx(L, -1, &isint);
        bool ok = lua_isnil(L, -1) || (isint && at > 0 && at < ((lua_Integer)1 << 53));
        lua_settop(L, base);
        if (!ok)
            return wf_fail(op, 500, "workflow-script-failed",
                           "workflow %s v%u, node '%s': deadline() must return a time (ms "
                           "since 1970, an integer) or nil",
                           d->name, d->version, n->id);
        t.due = (int64_t)at;
    } else if (n->deadline_ms > 0) {
        t.due = wf_cal_add(&op->w->cal, op->now, n->deadline_ms);
    }
    if (t.due > 0) {
        if (n->remind_ms > 0) {
            int64_t r = wf_cal_add(&op->w->cal, t.due, -n->remind_ms);
            t.remind_at = r > op->now ? r : 0;
        }
        /* a paused instance's clock stands still: the timers start at resume */
        if (!(in->flags & WF_IF_PAUSED)) rc = arm(op, &t);
    }
    if (rc == ZT_OK && (rc = wf_task_put(op->w, op->txn, &t)) != ZT_OK) sys_fail(op, rc, "task");
    if (rc == ZT_OK && (rc = wf_todo_put(op->w, op->txn, &t)) != ZT_OK) sys_fail(op, rc, "to-do");
    if (rc == ZT_OK && (rc = wf_inst_add_open(in, t.id)) != ZT_OK) sys_fail(op, rc, "instance");
    if (rc == ZT_OK) rc = emit(op, "workflow.task.created", in, &t, NULL);
    if (rc == ZT_OK && op->created) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "id", t.id);
            cJSON_AddStringToObject(o, "node", n->id);
            add_str(o, "role", role);
            add_str(o, "department", dept);
            add_str(o, "assignee", assignee);
            add_time(o, "due", t.due);
            cJSON_AddItemToArray(op->created, o);
        }
    }
    wf_task_free(&t);
    return rc;
}

/* Close an open task that nobody completed (join fired, instance ended, returned): t as
 * loaded, left as stored. */
static int cancel_task(wf_op *op, wf_inst *in, wf_task *t, const char *by, const char *opinion)
{
    wf_inst_del_open(in, t->id);
    if (t->state != WF_T_OPEN) return ZT_OK;
    int rc = wf_todo_del(op->w, op->txn, t);
    if (rc == ZT_OK) rc = disarm(op, t);
    t->state = WF_T_CANCELLED;
    t->done_at = op->now;
    if (by) t->done_by = by;
    if (opinion) t->opinion = opinion;
    if (rc == ZT_OK) rc = wf_task_put(op->w, op->txn, t);
    if (rc != ZT_OK) sys_fail(op, rc, "task");
    return rc;
}

/* Cancel the open tasks whose node is in `nodes` (NULL: all). */
static int cancel_open(wf_op *op, wf_inst *in, const bool *nodes, uint8_t only_node)
{
    /* copy: cancel_task edits the list */
    uint16_t n = in->nopen;
    char(*ids)[WF_ID] = n ? malloc((size_t)n * WF_ID) : NULL;
    if (n && !ids) return sys_fail(op, ZT_ENOMEM, "tasks");
    if (n) memcpy(ids, in->open, (size_t)n * WF_ID);
    int rc = ZT_OK;
    for (uint16_t i = 0; i < n && rc == ZT_OK; i++) {
        char tid[WF_ID + 1];
        memcpy(tid, ids[i], WF_ID);
        tid[WF_ID] = 0;
        wf_task t;
        if ((rc = wf_task_get(op->w, op->txn, tid, &t)) != ZT_OK) {
            sys_fail(op, rc, "task");
            break;
        }
        bool hit = nodes ? nodes[t.node] : only_node == WF_NONE || t.node == only_node;
        if (hit) rc = cancel_task(op, in, &t, NULL, NULL);
        wf_task_free(&t);
    }
    free(ids);
    return rc;
}

/* ---- moving through the graph ------------------------------------------------------- */

static int enter(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni);

static int open_user(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni)
{
    const wf_node *n = &d->nodes[ni];
    lua_State *L = op->w->L;
    int rc = wf_inst_visit(in, ni);
    if (rc != ZT_OK) return sys_fail(op, rc, "instance");
    wf_inst_del_counter(in, ni);
    int base;
    if (n->multi_fn != WF_NOREF) {
        if ((rc = call_fn(op, in, d, n, n->multi_fn, false, &base)) != ZT_OK) return rc;
        int list = lua_gettop(L);
        size_t k = lua_istable(L, list) ? lua_rawlen(L, list) : 0;
        if (!lua_istable(L, list) || k > WF_MAX_MULTI) {
            lua_settop(L, base);
            return wf_fail(op, 500, "workflow-script-failed",
                           "workflow %s v%u, node '%s': multi must return a list of at most %d "
                           "departments or {role, department, assignee} tables",
                           d->name, d->version, n->id, WF_MAX_MULTI);
        }
        for (size_t i = 1; i <= k && rc == ZT_OK; i++) {
            int ty = lua_rawgeti(L, list, (lua_Integer)i);
            const char *role = n->role, *dept = n->dept, *who = NULL, *title = NULL;
            if (ty == LUA_TSTRING) {
                dept = lua_tostring(L, -1);
            } else if (ty == LUA_TTABLE) {
                int it = lua_gettop(L);
                const char *keys[] = {"role", "department", "assignee", "title"};
                const char **dst[] = {&role, &dept, &who, &title};
                for (int j = 0; j < 4; j++) {
                    lua_pushstring(L, keys[j]);
                    if (lua_rawget(L, it) == LUA_TSTRING) *dst[j] = lua_tostring(L, -1);
                    /* the string stays referenced by the table until the item is popped */
                    lua_pop(L, 1);
                }
            } else {
                rc = wf_fail(op, 500, "workflow-script-failed",
                             "workflow %s v%u, node '%s': multi item %zu is neither a "
                             "department code nor a table",
                             d->name, d->version, n->id, i);
            }
            if (rc == ZT_OK && !wf_nz(role) && !wf_nz(dept) && !wf_nz(who))
                rc = wf_fail(op, 500, "workflow-script-failed",
                             "workflow %s v%u, node '%s': multi item %zu names nobody", d->name,
                             d->version, n->id, i);
            if (rc == ZT_OK) rc = new_task(op, in, d, ni, role, dept, who, title);
            lua_pop(L, 1);
        }
        lua_settop(L, base);
        if (rc != ZT_OK) return rc;
        if (k == 0) return enter(op, in, d, n->next); /* nobody to ask: nothing to wait for */
        wf_counter *c = wf_inst_counter(in, ni, true);
        if (!c) return sys_fail(op, ZT_ENOMEM, "instance");
        size_t need = n->need ? (size_t)n->need : k;
        if (n->need_fn != WF_NOREF) {
            if ((rc = call_fn(op, in, d, n, n->need_fn, false, &base)) != ZT_OK) return rc;
            lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
            lua_settop(L, base);
            if (v < 1 || (size_t)v > k)
                return wf_fail(op, 500, "workflow-script-failed",
                               "workflow %s v%u, node '%s': need must return a whole number "
                               "from 1 to the %zu tasks multi opened",
                               d->name, d->version, n->id, k);
            need = (size_t)v;
        }
        c->need = (uint16_t)(need < k ? need : k);
        return ZT_OK;
    }
    const char *dept = n->dept, *who = NULL;
    char *dept_copy = NULL, *who_copy = NULL;
    if (n->dept_fn != WF_NOREF) {
        if ((rc = call_fn(op, in, d, n, n->dept_fn, false, &base)) != ZT_OK) return rc;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        dept = s && *s ? (dept_copy = strdup(s)) : NULL;
        lua_settop(L, base);
        if (!s || !*s)
            return wf_fail(op, 500, "workflow-script-failed",
                           "workflow %s v%u, node '%s': department() must return a department "
                           "code",
                           d->name, d->version, n->id);
        if (!dept) return sys_fail(op, ZT_ENOMEM, "task");
    }
    if (n->assignee_fn != WF_NOREF) {
        if ((rc = call_fn(op, in, d, n, n->assignee_fn, false, &base)) != ZT_OK) {
            free(dept_copy);
            return rc;
        }
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        who = s && *s ? (who_copy = strdup(s)) : NULL;
        lua_settop(L, base);
        if (!s || !*s) {
            free(dept_copy);
            return wf_fail(op, 500, "workflow-script-failed",
                           "workflow %s v%u, node '%s': assignee() must return a user's login "
                           "or id",
                           d->name, d->version, n->id);
        }
        if (!who) {
            free(dept_copy);
            return sys_fail(op, ZT_ENOMEM, "task");
        }
    }
    rc = new_task(op, in, d, ni, n->role, dept, who, NULL);
    free(dept_copy);
    free(who_copy);
    return rc;
}

/* The members of obj (a completing task's form, a service's answer) set in the instance's
 * data. */
static int merge_data(wf_op *op, wf_inst *in, const cJSON *obj)
{
    if (!obj || !obj->child) return ZT_OK;
    cJSON *data = cJSON_Parse(in->data && *in->data ? in->data : "{}");
    if (!data) return sys_fail(op, ZT_ENOMEM, "instance data");
    for (const cJSON *it = obj->child; it; it = it->next) {
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy) continue;
        if (cJSON_GetObjectItemCaseSensitive(data, it->string))
            cJSON_ReplaceItemInObjectCaseSensitive(data, it->string, copy);
        else
            cJSON_AddItemToObject(data, it->string, copy);
    }
    const char *kept = wf_inst_keep_json(in, data);
    cJSON_Delete(data);
    if (!kept) return sys_fail(op, ZT_ENOMEM, "instance data");
    in->data = kept;
    return ZT_OK;
}

static int run_service(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni)
{
    const wf_node *n = &d->nodes[ni];
    if (n->fn != WF_NOREF) {
        int base, rc = call_fn(op, in, d, n, n->fn, true, &base);
        if (rc != ZT_OK) return rc;
        lua_settop(op->w->L, base);
        return ZT_OK;
    }
    cJSON *args = cJSON_Parse(in->data && *in->data ? in->data : "{}"), *res = NULL;
    if (!args) return sys_fail(op, ZT_ENOMEM, "instance data");
    int rc = zt_call(op->req, n->service, args, &res);
    cJSON_Delete(args);
    if (rc != ZT_OK) {
        cJSON_Delete(res);
        return wf_fail(op, rc == ZT_ENOTFOUND ? 503 : 500, "workflow-service-failed",
                       "workflow %s v%u, node '%s': service %s: %s", d->name, d->version, n->id,
                       n->service, rc == ZT_ENOTFOUND ? "not provided" : zt_strerror(rc));
    }
    /* an object answer is merged into the instance's data */
    rc = cJSON_IsObject(res) ? merge_data(op, in, res) : ZT_OK;
    cJSON_Delete(res);
    return rc;
}

static int choose(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni, uint8_t *out)
{
    const wf_node *n = &d->nodes[ni];
    for (size_t i = 0; i < n->nconds; i++) {
        int base, rc = call_fn(op, in, d, n, n->conds[i].fn, false, &base);
        if (rc != ZT_OK) return rc;
        bool yes = lua_toboolean(op->w->L, -1);
        lua_settop(op->w->L, base);
        if (yes) {
            *out = n->conds[i].next;
            return ZT_OK;
        }
    }
    if (n->dflt == WF_NONE)
        return wf_fail(op, 422, "workflow-no-path",
                       "workflow %s v%u, gateway '%s': no condition holds and there is no "
                       "default",
                       d->name, d->version, n->id);
    *out = n->dflt;
    return ZT_OK;
}

static int finish(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni, int state,
                  const char *result, const char *action, const char *opinion)
{
    int rc = cancel_open(op, in, NULL, WF_NONE);
    if (rc != ZT_OK) return rc;
    in->state = (uint8_t)state;
    in->ended = op->now;
    in->result = result;
    in->ncounters = 0;
    wf_step s = {op->now, action, ni != WF_NONE ? d->nodes[ni].id : NULL, op->actor, NULL,
                 NULL,    opinion};
    if ((rc = wf_hist_add(op->w, op->txn, in, &s)) != ZT_OK) return sys_fail(op, rc, "history");
    return emit(op, "workflow.instance.completed", in, NULL, op->actor);
}

/* who counts towards c once (a vote): ZT_OK, or 409 already-signed naming what they
 * completed already. */
static int vote_once(wf_op *op, wf_inst *in, wf_counter *c, const char *who, const char *what)
{
    int had = wf_counter_sign(in, c, who);
    if (had < 0) return sys_fail(op, had, "instance");
    if (had)
        return wf_fail(op, 409, "already-signed",
                       "%s has completed %s already: each is for a different person", who, what);
    return ZT_OK;
}

static int enter(wf_op *op, wf_inst *in, const wf_def *d, uint8_t ni)
{
    assert(ni < d->nnodes);
    if (++op->steps > WF_MAX_STEPS)
        return wf_fail(op, 500, "workflow-loop",
                       "workflow %s v%u: more than %d nodes in one step (a loop without a user "
                       "task?)",
                       d->name, d->version, WF_MAX_STEPS);
    if (in->state != WF_I_RUNNING) return ZT_OK; /* another branch ended it */
    const wf_node *n = &d->nodes[ni];
    int rc;
    uint8_t next = WF_NONE;
    switch (n->type) {
    case WF_START:
        return enter(op, in, d, n->next);
    case WF_USER:
        return open_user(op, in, d, ni);
    case WF_SERVICE:
        if ((rc = run_service(op, in, d, ni)) != ZT_OK) return rc;
        return enter(op, in, d, n->next);
    case WF_GATEWAY:
        if ((rc = choose(op, in, d, ni, &next)) != ZT_OK) return rc;
        return enter(op, in, d, next);
    case WF_SPLIT:
        op->signer = NULL; /* what reaches a join from these branches is not the person's */
        /* a new activation of the split: its joins start counting afresh */
        for (size_t x = 0; x < d->nnodes; x++)
            if (d->nodes[x].type == WF_JOIN && d->nodes[x].split == ni)
                wf_inst_del_counter(in, (uint8_t)x);
        for (size_t i = 0; i < n->nouts; i++)
            if ((rc = enter(op, in, d, n->outs[i])) != ZT_OK) return rc;
        return ZT_OK;
    case WF_JOIN: {
        wf_counter *c = wf_inst_counter(in, ni, true);
        if (!c) return sys_fail(op, ZT_ENOMEM, "instance");
        if (c->need == 0xffff) return ZT_OK; /* fired already (N of M): a late branch */
        if (op->signer && n->need && n->need < n->nin) {
            /* N of M (会签): the branches are votes; one person gives one */
            char what[128];
            snprintf(what, sizeof what, "another branch that joins at '%s'", n->id);
            if ((rc = vote_once(op, in, c, op->signer, what)) != ZT_OK) return rc;
            op->signer = NULL; /* counted here, not again at a join further on */
        }
        c->count++;
        unsigned need = n->need ? (unsigned)n->need : n->nin;
        if (c->count < need) return ZT_OK;
        wf_inst_del_counter(in, ni);
        if (need < n->nin) {
            /* N of M: the branches still open are not needed any more */
            if ((rc = cancel_open(op, in, n->region, WF_NONE)) != ZT_OK) return rc;
            for (size_t x = 0; x < d->nnodes; x++)
                if (n->region[x]) wf_inst_del_counter(in, (uint8_t)x);
            /* late arrivals of this activation must not fire it again */
            wf_counter *late = wf_inst_counter(in, ni, true);
            if (!late) return sys_fail(op, ZT_ENOMEM, "instance");
            late->count = 0;
            late->need = 0xffff; /* marks "fired" */
        }
        return enter(op, in, d, n->next);
    }
    case WF_END:
        return finish(op, in, d, ni, WF_I_COMPLETED, n->result ? n->result : "completed", "end",
                      NULL);
    }
    return wf_fail(op, 500, "workflow-bad-node", "node '%s' has an unknown type", n->id);
}

/* ---- starting ----------------------------------------------------------------------- */

int wf_start(wf_op *op, const wf_start_args *a, wf_inst *in)
{
    memset(in, 0, sizeof *in);
    int rc = need_write(op);
    if (rc != ZT_OK) return rc;
    wf_def *d = a->def ? a->def : wf_def_current(op->w, op->txn, a->definition, &rc);
    if (!d)
        return rc == ZT_ENOTFOUND ? wf_fail(op, 404, "unknown-definition",
                                            "there is no workflow definition '%s'", a->definition)
                                  : sys_fail(op, rc, "definitions");
    assert(d->version > 0);
    /* its security label: the definition's, or one above it that the starter gives */
    const char *label = a->label ? a->label : d->label;
    if (a->label && zt_label_level(op->w->p, a->label) < 0)
        return wf_fail(op, 422, "invalid-label",
                       "label: '%.40s' is not one of the node's security labels (GET "
                       "/auth/labels lists them)",
                       a->label);
    if (a->label && d->label &&
        zt_label_level(op->w->p, a->label) < zt_label_level(op->w->p, d->label))
        return wf_fail(op, 422, "invalid-label",
                       "label: workflow %s's instances are labelled %s at least, not %s", d->name,
                       d->label, a->label);
    zt_id(in->id);
    in->state = WF_I_RUNNING;
    in->priority = (int8_t)(a->priority < -100 ? -100 : a->priority > 100 ? 100 : a->priority);
    in->version = d->version;
    in->created = op->now;
    in->def = d->name;
    in->bkey = a->bkey;
    in->owner = d->owner;
    in->initiator = a->initiator;
    in->initiator_id = a->initiator_id;
    in->dept = a->dept;
    in->label = label ? label : "";
    in->data = "{}";
    in->decisions = "";
    if (a->data && !(in->data = wf_inst_keep_json(in, a->data)))
        return sys_fail(op, ZT_ENOMEM, "instance data");
    wf_step s = {op->now, "start", d->nodes[d->start].id, op->actor, NULL, NULL, NULL};
    if ((rc = wf_hist_add(op->w, op->txn, in, &s)) != ZT_OK) return sys_fail(op, rc, "history");
    if ((rc = enter(op, in, d, d->start)) != ZT_OK) return rc;
    if ((rc = wf_inst_put(op->w, op->txn, in)) != ZT_OK) return sys_fail(op, rc, "instance");
    return ZT_OK;
}

/* ---- task actions ------------------------------------------------------------------- */

bool wf_is_initiator(const zt_caller *c, const wf_inst *in)
{
    return c && ((c->login && wf_nz(in->initiator) && !strcmp(c->login, in->initiator)) ||
                 (c->id && wf_nz(in->initiator_id) && !strcmp(c->id, in->initiator_id)));
}

static bool is_system(const zt_caller *c)
{
    return c && c->kind && !strcmp(c->kind, "system");
}

bool wf_cleared(wf *w, const zt_caller *c, const char *label)
{
    return !wf_nz(label) || is_system(c) || zt_caller_clears(w->p, c, label);
}

int wf_not_cleared(wf_op *op, const char *what, const char *id, const char *label)
{
    const zt_caller *c = op->caller;
    return wf_fail(op, 403, "label-not-cleared",
                   "%s %s is labelled %s, above your clearance (%s): only those cleared for it "
                   "see or handle it",
                   what, id, label, c && c->clearance ? c->clearance : "none");
}

bool wf_may_act(wf_op *op, const wf_task *t)
{
    const zt_caller *c = op->caller;
    if (!c) return false;
    if (is_system(c)) return true;
    if (!wf_cleared(op->w, c, t->label)) return false; /* 安全标记: before any other right */
    if (wf_nz(t->assignee))
        return (c->login && !strcmp(c->login, t->assignee)) ||
               (c->id && !strcmp(c->id, t->assignee));
    bool role_ok = !wf_nz(t->role) || zt_caller_has_role(c, t->role);
    bool esc_ok = wf_nz(t->escalated) && zt_caller_has_role(c, t->escalated);
    bool dept_ok = !wf_nz(t->dept) || zt_req_in_scope(op->req, t->dept);
    return (role_ok || esc_ok) && dept_ok;
}

bool wf_acts_on_open(wf_op *op, const wf_inst *in)
{
    char tid[WF_ID + 1];
    tid[WF_ID] = 0;
    bool ok = false;
    for (uint16_t i = 0; !ok && i < in->nopen; i++) {
        wf_task t;
        memcpy(tid, in->open[i], WF_ID);
        if (wf_task_get(op->w, op->txn, tid, &t) != ZT_OK) continue;
        ok = wf_may_act(op, &t);
        wf_task_free(&t);
    }
    return ok;
}

static int load_pair(wf_op *op, const char *task_id, wf_task *t, wf_inst *in, const wf_def **d)
{
    int rc = wf_task_get(op->w, op->txn, task_id, t);
    if (rc == ZT_ENOTFOUND) return wf_fail(op, 404, "not-found", "there is no task %.40s", task_id);
    if (rc != ZT_OK) return sys_fail(op, rc, "task");
    if ((rc = wf_inst_get(op->w, op->txn, t->inst, in)) != ZT_OK)
        return sys_fail(op, rc == ZT_ENOTFOUND ? ZT_EIO : rc, "instance of the task");
    *d = wf_def_at(op->w, op->txn, in->def, in->version, &rc);
    if (!*d) return sys_fail(op, rc, "definition of the instance");
    if (t->node >= (*d)->nnodes) return sys_fail(op, ZT_EIO, "task's node");
    return ZT_OK;
}

static int set_decision(wf_op *op, wf_inst *in, const char *node, const char *decision)
{
    cJSON *o = cJSON_Parse(in->decisions && *in->decisions ? in->decisions : "{}");
    if (!o) return sys_fail(op, ZT_ENOMEM, "decisions");
    cJSON *v = cJSON_CreateString(decision);
    if (v && cJSON_GetObjectItemCaseSensitive(o, node))
        cJSON_ReplaceItemInObjectCaseSensitive(o, node, v);
    else if (v)
        cJSON_AddItemToObject(o, node, v);
    const char *kept = wf_inst_keep_json(in, o);
    cJSON_Delete(o);
    if (!kept) return sys_fail(op, ZT_ENOMEM, "decisions");
    in->decisions = kept;
    return ZT_OK;
}

/* A node that lists its decisions takes only one of them: a completion that leaves the
 * decision out, or gives another word, would decide by default. One of its `reasons` comes
 * with an opinion. */
static int check_decision(wf_op *op, const wf_node *n, const char *decision, const char *opinion)
{
    if (!n->ndecisions) return ZT_OK;
    for (size_t i = 0; decision && i < n->ndecisions; i++) {
        if (strcmp(decision, n->decisions[i]) != 0) continue;
        if ((n->reasons & (1u << i)) && !wf_nz(opinion))
            return wf_fail(op, 422, "invalid-input",
                           "opinion: task '%s' decided '%s' needs an opinion saying why", n->id,
                           decision);
        return ZT_OK;
    }
    char list[16 * 66];
    join_words(list, sizeof list, n->decisions, n->ndecisions);
    return wf_fail(op, 422, "invalid-input", "decision: task '%s' is decided with one of %s%s%.64s",
                   n->id, list, decision ? ", not " : " (it is required)",
                   decision ? decision : "");
}

/* A node that lists its form's fields takes only those: the rest of the data is the
 * definition's (what its routing reads), not the handler's to set. */
static int check_form(wf_op *op, const wf_node *n, const cJSON *form)
{
    if (!n->form_listed || !form) return ZT_OK;
    for (const cJSON *it = form->child; it; it = it->next) {
        size_t k = 0;
        while (k < n->nform && strcmp(it->string, n->form[k]) != 0) k++;
        if (k < n->nform) continue;
        if (!n->nform)
            return wf_fail(op, 422, "invalid-input", "form.%.64s: task '%s' takes no form",
                           it->string, n->id);
        char list[sizeof op->why];
        join_words(list, sizeof list, n->form, n->nform);
        return wf_fail(op, 422, "invalid-input", "form.%.64s: task '%s' takes only %s", it->string,
                       n->id, list);
    }
    return ZT_OK;
}

static int do_complete(wf_op *op, wf_task *t, wf_inst *in, const wf_def *d, const wf_action *a)
{
    int rc = check_decision(op, &d->nodes[t->node], a->decision, a->opinion);
    if (rc != ZT_OK) return rc;
    if ((rc = check_form(op, &d->nodes[t->node], a->form)) != ZT_OK) return rc;
    if ((rc = merge_data(op, in, a->form)) != ZT_OK) return rc;
    if (wf_nz(a->decision) && (rc = set_decision(op, in, t->node_id, a->decision)) != ZT_OK)
        return rc;
    if ((rc = wf_todo_del(op->w, op->txn, t)) != ZT_OK) return sys_fail(op, rc, "to-do");
    if ((rc = disarm(op, t)) != ZT_OK) return rc;
    t->state = WF_T_COMPLETED;
    t->done_at = op->now;
    t->done_by = op->actor;
    t->decision = a->decision;
    t->opinion = a->opinion;
    if ((rc = wf_task_put(op->w, op->txn, t)) != ZT_OK) return sys_fail(op, rc, "task");
    wf_inst_del_open(in, t->id);
    in->flags |= WF_IF_TOUCHED;
    wf_step s = {op->now, "complete", t->node_id, op->actor, t->id, a->decision, a->opinion};
    if ((rc = wf_hist_add(op->w, op->txn, in, &s)) != ZT_OK) return sys_fail(op, rc, "history");
    if ((rc = emit(op, "workflow.task.completed", in, t, op->actor)) != ZT_OK) return rc;
    const wf_node *n = &d->nodes[t->node];
    wf_counter *c = wf_inst_counter(in, t->node, false);
    bool person = op->caller && op->caller->kind && strcmp(op->caller->kind, "system") != 0;
    if (c) {
        /* one of a multi-instance node's tasks; where the definition says how many suffice
         * (need: a countersign, 会签), they are votes, each a different person's */
        bool vote = n->need || n->need_fn != WF_NOREF;
        if (person && vote) {
            char what[128];
            snprintf(what, sizeof what, "another of node '%s''s tasks", t->node_id);
            if ((rc = vote_once(op, in, c, op->actor, what)) != ZT_OK) return rc;
        }
        if (++c->count < c->need) return ZT_OK;
        wf_inst_del_counter(in, t->node);
        if ((rc = cancel_open(op, in, NULL, t->node)) != ZT_OK) return rc;
    }
    op->signer = person ? op->actor : NULL;
    rc = enter(op, in, d, n->next);
    op->signer = NULL;
    return rc;
}

static int do_return(wf_op *op, wf_task *t, wf_inst *in, const wf_def *d, const wf_action *a)
{
    if (!wf_nz(a->node)) return wf_fail(op, 400, "invalid-input", "node: the node to return to");
    int target = wf_node_index(d, a->node);
    if (target < 0 || d->nodes[target].type != WF_USER || !wf_inst_visited(in, (uint8_t)target))
        return wf_fail(op, 422, "not-returnable",
                       "node '%.64s' is not a user task this instance has already passed", a->node);
    int rc = cancel_task(op, in, t, op->actor, a->opinion);
    if (rc != ZT_OK) return rc;
    if ((rc = cancel_open(op, in, NULL, WF_NONE)) != ZT_OK) return rc;
    in->ncounters = 0;
    in->flags |= WF_IF_TOUCHED;
    wf_step s = {op->now, "return", t->node_id, op->actor, t->id, a->node, a->opinion};
    if ((rc = wf_hist_add(op->w, op->txn, in, &s)) != ZT_OK) return sys_fail(op, rc, "history");
    return enter(op, in, d, (uint8_t)target);
}

static bool good_login(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f) return false;
    return true;
}

/* Whom a task is delegated to must be able to handle it as the core checks a caller: an
 * active staff account, with the task's role (or the one it escalated to) and the task's
 * department within their own. A task given to someone by name asks only the first. */
static int check_delegate(wf_op *op, const wf_task *t, const char *to)
{
    const zt_caller *c;
    int rc = staff_account(op, to, &c);
    if (rc == ZT_ENOTFOUND)
        return wf_fail(op, 422, "invalid-delegate",
                       "to: '%.64s' is not the login of an active staff account", to);
    if (rc != ZT_OK) return sys_fail(op, rc, "the account to delegate to");
    bool role_ok = !wf_nz(t->role) || zt_caller_has_role(c, t->role) ||
                   (wf_nz(t->escalated) && zt_caller_has_role(c, t->escalated));
    bool dept_ok =
        !wf_nz(t->dept) || (c->department && zt_req_dept_within(op->req, t->dept, c->department));
    if (!role_ok)
        return wf_fail(op, 422, "invalid-delegate",
                       "'%s' cannot handle task %s: it needs the role %s", c->login, t->id,
                       t->role);
    if (!dept_ok)
        return wf_fail(op, 422, "invalid-delegate",
                       "'%s' cannot handle task %s: it is for department %s, which is not "
                       "within theirs (%s)",
                       c->login, t->id, t->dept, c->department ? c->department : "none");
    if (!wf_cleared(op->w, c, t->label))
        return wf_fail(op, 422, "invalid-delegate",
                       "'%s' cannot handle task %s: it is labelled %s, above their clearance (%s)",
                       c->login, t->id, t->label, c->clearance ? c->clearance : "none");
    return ZT_OK;
}

/* Give an open task to `to` (claim: flag WF_TF_CLAIMED; delegate: WF_TF_DELEGATED, by the
 * actor): its to-do keys move with it and step s goes into the history. */
static int reassign(wf_op *op, wf_task *t, wf_inst *in, const char *to, uint8_t flag,
                    const wf_step *s)
{
    int rc = wf_todo_del(op->w, op->txn, t);
    if (rc != ZT_OK) return sys_fail(op, rc, "to-do");
    if (flag == WF_TF_DELEGATED) t->delegated_by = op->actor;
    t->assignee = to;
    t->flags |= flag;
    in->flags |= WF_IF_TOUCHED;
    if ((rc = wf_todo_put(op->w, op->txn, t)) != ZT_OK ||
        (rc = wf_task_put(op->w, op->txn, t)) != ZT_OK ||
        (rc = wf_hist_add(op->w, op->txn, in, s)) != ZT_OK)
        return sys_fail(op, rc, "task");
    return ZT_OK;
}

int wf_task_action(wf_op *op, const char *task_id, const wf_action *a, wf_task *out)
{
    wf_task *t = out;
    wf_inst in;
    const wf_def *d = NULL;
    memset(&in, 0, sizeof in);
    memset(t, 0, sizeof *t);
    int rc = need_write(op);
    if (rc == ZT_OK) rc = load_pair(op, task_id, t, &in, &d);
    if (rc != ZT_OK) goto done;
    const char *act = a->action ? a->action : "";
    bool known = !strcmp(act, "claim") || !strcmp(act, "complete") || !strcmp(act, "return") ||
                 !strcmp(act, "delegate");
    if (!known) {
        rc = wf_fail(op, 400, "invalid-input",
                     "action: claim, complete, return or delegate, not '%.32s'", act);
        goto done;
    }
    /* checked inside this write transaction: of two people completing the same task, the
     * second sees the first one's change here */
    if (t->state != WF_T_OPEN || in.state != WF_I_RUNNING) {
        rc = wf_fail(op, 409, "task-closed", "task %s is %s already", t->id,
                     t->state == WF_T_OPEN ? "part of an instance that ended"
                                           : task_states[t->state]);
        goto done;
    }
    if (!wf_cleared(op->w, op->caller, t->label)) {
        rc = wf_not_cleared(op, "task", t->id, t->label);
        goto done;
    }
    /* 改派: a supervisor gives any open task to someone else, so that a task is never stuck
     * with one person (away, disabled, or named by a definition below the task's label) */
    bool reassigning = !strcmp(act, "delegate") && wf_is_supervisor(op->caller);
    if (!reassigning && !wf_may_act(op, t)) {
        rc = wf_fail(op, 403, "not-your-task",
                     "task %s is for %s%s%s%s%s; you (%s) may not act on it", t->id,
                     wf_nz(t->assignee) ? t->assignee
                     : wf_nz(t->role)   ? "role "
                                        : "",
                     wf_nz(t->assignee) ? ""
                     : wf_nz(t->role)   ? t->role
                                        : "",
                     !wf_nz(t->assignee) && wf_nz(t->dept) ? " in department " : "",
                     !wf_nz(t->assignee) && wf_nz(t->dept) ? t->dept : "", "", op->actor);
        goto done;
    }
    /* nor returned to over HTTP: that would reopen it behind its plugin's back */
    int back = !strcmp(act, "return") && wf_nz(a->node) ? wf_node_index(d, a->node) : -1;
    if (a->over_http &&
        ((d->nodes[t->node].plugin_only && (!strcmp(act, "complete") || !strcmp(act, "return"))) ||
         (back >= 0 && d->nodes[back].plugin_only))) {
        rc = wf_fail(op, 403, "forbidden",
                     "node '%s' (task %s) is decided through the %s plugin's own routes, not "
                     "the workflow's",
                     back >= 0 ? d->nodes[back].id : t->node_id, t->id, d->owner);
        goto done;
    }
    if (!strcmp(act, "claim")) {
        if (wf_nz(t->assignee)) {
            /* claiming one's own task again changes nothing */
            goto done;
        }
        wf_step s = {op->now, "claim", t->node_id, op->actor, t->id, NULL, NULL};
        if ((rc = reassign(op, t, &in, op->actor, WF_TF_CLAIMED, &s)) != ZT_OK) goto done;
    } else if (!strcmp(act, "delegate")) {
        if (!good_login(a->to)) {
            rc = wf_fail(op, 400, "invalid-input", "to: the login of the person to delegate to");
            goto done;
        }
        if ((rc = check_delegate(op, t, a->to)) != ZT_OK) goto done;
        wf_step s = {op->now, "delegate", t->node_id, op->actor, t->id, a->to, a->opinion};
        if ((rc = reassign(op, t, &in, a->to, WF_TF_DELEGATED, &s)) != ZT_OK) goto done;
    } else if (!strcmp(act, "complete")) {
        if ((rc = do_complete(op, t, &in, d, a)) != ZT_OK) goto done;
    } else {
        if ((rc = do_return(op, t, &in, d, a)) != ZT_OK) goto done;
    }
    if ((rc = wf_inst_put(op->w, op->txn, &in)) != ZT_OK) sys_fail(op, rc, "instance");
done:
    wf_inst_free(&in);
    return rc;
}

/* ---- withdraw, cancel, pause -------------------------------------------------------- */

/* Instance inst_id into in, for a change (a write transaction). */
static int load_to_change(wf_op *op, const char *inst_id, wf_inst *in)
{
    int rc = need_write(op);
    if (rc != ZT_OK) return rc;
    rc = wf_inst_get(op->w, op->txn, inst_id, in);
    if (rc == ZT_ENOTFOUND)
        return wf_fail(op, 404, "not-found", "there is no instance %.40s", inst_id);
    return rc == ZT_OK ? ZT_OK : sys_fail(op, rc, "instance");
}

int wf_withdraw(wf_op *op, const char *inst_id, bool by_initiator_only, const char *reason,
                int state, wf_inst *in)
{
    int rc = load_to_change(op, inst_id, in);
    if (rc != ZT_OK) return rc;
    if (in->state != WF_I_RUNNING)
        return wf_fail(op, 409, "instance-ended", "instance %s is %s already", in->id,
                       inst_states[in->state]);
    if (by_initiator_only) {
        if (!wf_is_initiator(op->caller, in))
            return wf_fail(op, 403, "not-initiator",
                           "only the initiator (%s) may withdraw instance %s",
                           wf_nz(in->initiator) ? in->initiator : "?", in->id);
        if (in->flags & WF_IF_TOUCHED)
            return wf_fail(op, 409, "already-handled",
                           "instance %s cannot be withdrawn: a task of it has been handled",
                           in->id);
    }
    rc = finish(op, in, NULL, WF_NONE, state, inst_states[state],
                state == WF_I_WITHDRAWN ? "withdraw" : "cancel", reason);
    if (rc == ZT_OK && (rc = wf_inst_put(op->w, op->txn, in)) != ZT_OK)
        sys_fail(op, rc, "instance");
    return rc;
}

bool wf_is_supervisor(const zt_caller *c)
{
    return c && (zt_caller_has_role(c, "admin") || zt_caller_has_role(c, "workflow_supervisor") ||
                 is_system(c));
}

/* The level of an instance's label: its place in auth.labels, 0 for none; a label the node
 * no longer lists counts as above every listed one (only the system caller clears it). */
static int level_of(wf *w, const char *label)
{
    if (!wf_nz(label)) return 0;
    int l = zt_label_level(w->p, label);
    return l >= 0 ? l : 1 << 20;
}

int wf_relabel(wf_op *op, const char *inst_id, const char *label, const char *reason, wf_inst *in)
{
    int rc = load_to_change(op, inst_id, in);
    if (rc != ZT_OK) return rc;
    const zt_caller *c = op->caller;
    if (!wf_cleared(op->w, c, in->label)) return wf_not_cleared(op, "instance", in->id, in->label);
    if (!label || zt_label_level(op->w->p, label) < 0)
        return wf_fail(op, 422, "invalid-label",
                       "label: '%.40s' is not one of the node's security labels (GET "
                       "/auth/labels lists them)",
                       label ? label : "");
    if (!wf_cleared(op->w, c, label))
        return wf_fail(op, 403, "label-not-cleared",
                       "label: you are cleared for %s, not %s: you label only what you may read",
                       c && c->clearance ? c->clearance : "none", label);
    int from = level_of(op->w, in->label), to = level_of(op->w, label);
    /* raised: by its initiator, whoever may act on one of its open tasks, or a supervisor;
     * lowered: by a supervisor only */
    bool may =
        wf_is_supervisor(c) || (to >= from && (wf_is_initiator(c, in) || wf_acts_on_open(op, in)));
    if (!may)
        return wf_fail(op, 403, "forbidden",
                       to >= from ? "instance %s's label is raised by its initiator, whoever may "
                                    "act on one of its open tasks, or a supervisor"
                                  : "instance %s's label is lowered by a supervisor "
                                    "(workflow_supervisor or admin) only",
                       in->id);
    if (from == to) return ZT_OK; /* so already: nothing to record */
    const char *previous = wf_nz(in->label) ? in->label : NULL;
    if (!(in->label = wf_inst_keep(in, label))) return sys_fail(op, ZT_ENOMEM, "instance");
    char tid[WF_ID + 1];
    tid[WF_ID] = 0;
    for (uint16_t i = 0; i < in->nopen; i++) { /* the to-do list reads the tasks' copies */
        wf_task t;
        memcpy(tid, in->open[i], WF_ID);
        if ((rc = wf_task_get(op->w, op->txn, tid, &t)) != ZT_OK) return sys_fail(op, rc, "task");
        t.label = in->label;
        rc = wf_task_put(op->w, op->txn, &t);
        wf_task_free(&t);
        if (rc != ZT_OK) return sys_fail(op, rc, "task");
    }
    wf_step s = {op->now, "label", NULL, op->actor, NULL, label, reason};
    if ((rc = wf_hist_add(op->w, op->txn, in, &s)) != ZT_OK) return sys_fail(op, rc, "history");
    if ((rc = wf_inst_put(op->w, op->txn, in)) != ZT_OK) return sys_fail(op, rc, "instance");
    cJSON *extra = cJSON_CreateObject();
    if (!extra || !(previous ? cJSON_AddStringToObject(extra, "previous", previous)
                             : cJSON_AddNullToObject(extra, "previous"))) {
        cJSON_Delete(extra);
        return sys_fail(op, ZT_ENOMEM, "event");
    }
    rc = emit_with(op, "workflow.instance.labelled", in, NULL, op->actor, extra);
    cJSON_Delete(extra);
    return rc;
}

int wf_pause(wf_op *op, const char *inst_id, bool pause)
{
    wf_inst in;
    int rc = load_to_change(op, inst_id, &in);
    if (rc != ZT_OK) return rc;
    if (in.state != WF_I_RUNNING) {
        rc = wf_fail(op, 409, "instance-ended", "instance %s is %s already", in.id,
                     inst_states[in.state]);
        goto done;
    }
    if (pause == ((in.flags & WF_IF_PAUSED) != 0)) goto done; /* already so */
    int64_t since = in.paused_since;
    for (uint16_t i = 0; i < in.nopen && rc == ZT_OK; i++) {
        char tid[WF_ID + 1];
        memcpy(tid, in.open[i], WF_ID);
        tid[WF_ID] = 0;
        wf_task t;
        if ((rc = wf_task_get(op->w, op->txn, tid, &t)) != ZT_OK) {
            sys_fail(op, rc, "task");
            break;
        }
        if (t.due > 0) {
            if (pause) {
                rc = disarm(op, &t);
            } else {
                /* the deadline moves by the working time the clock stood still (for a task
                 * made during the pause, since it was made) */
                int64_t from = t.created > since ? t.created : since;
                int64_t stood = wf_cal_between(&op->w->cal, from, op->now);
                rc = wf_todo_del(op->w, op->txn, &t);
                if (rc == ZT_OK) {
                    t.due = wf_cal_add(&op->w->cal, t.due, stood);
                    if (t.remind_at > 0) t.remind_at = wf_cal_add(&op->w->cal, t.remind_at, stood);
                    rc = arm(op, &t);
                }
                if (rc == ZT_OK && (rc = wf_todo_put(op->w, op->txn, &t)) != ZT_OK)
                    sys_fail(op, rc, "to-do");
            }
            if (rc == ZT_OK && (rc = wf_task_put(op->w, op->txn, &t)) != ZT_OK)
                sys_fail(op, rc, "task");
        }
        wf_task_free(&t);
    }
    if (rc != ZT_OK) goto done;
    if (pause) {
        in.flags |= WF_IF_PAUSED;
        in.paused_since = op->now;
    } else {
        in.flags &= (uint8_t)~WF_IF_PAUSED;
        in.paused_ms += op->now - since;
        in.paused_since = 0;
    }
    wf_step s = {op->now, pause ? "pause" : "resume", NULL, op->actor, NULL, NULL, NULL};
    if ((rc = wf_hist_add(op->w, op->txn, &in, &s)) != ZT_OK ||
        (rc = wf_inst_put(op->w, op->txn, &in)) != ZT_OK)
        sys_fail(op, rc, "instance");
done:
    wf_inst_free(&in);
    return rc;
}

/* ---- deadlines ---------------------------------------------------------------------- */

int wf_timer_fired(wf_op *op, const zt_event *ev)
{
    bool due = !strcmp(ev->topic, "_workflow.due");
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(ev->payload, "task");
    if (!cJSON_IsString(tid) || !ev->timer) return ZT_OK; /* not ours to understand */
    wf_task t;
    wf_inst in;
    const wf_def *d;
    memset(&in, 0, sizeof in);
    int rc = load_pair(op, tid->valuestring, &t, &in, &d);
    if (rc == ZT_ENOTFOUND) return ZT_OK;
    if (rc != ZT_OK) goto done;
    /* a timer replaced since (pause, resume) or a task closed since: nothing to do */
    const char *cur = due ? t.due_timer : t.remind_timer;
    if (t.state != WF_T_OPEN || in.state != WF_I_RUNNING || !wf_nz(cur) || strcmp(cur, ev->timer))
        goto done;
    op->actor = "system";
    if (due) {
        t.due_timer = "";
        t.flags |= WF_TF_OVERDUE;
        in.flags |= WF_IF_OVERDUE;
        const wf_node *n = &d->nodes[t.node];
        const char *to = wf_nz(t.escalated) ? NULL : n->escalate_to;
        if (n->escalate_fn != WF_NOREF && !wf_nz(t.escalated)) {
            /* the role the instance's data names (its plugin's setting); a script that
             * fails or gives no role leaves the task overdue, not escalated: a timer that
             * failed would be tried again for ever */
            int base;
            lua_State *L = op->w->L;
            if (call_fn(op, &in, d, n, n->escalate_fn, false, &base) == ZT_OK) {
                const char *r = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
                to = r && *r ? wf_task_keep(&t, r) : NULL;
                if (!to && !lua_isnil(L, -1))
                    zt_log(op->w->p, ZT_LOG_ERROR,
                           "workflow %s v%u, node '%s': escalate_to() must return a role or nil",
                           d->name, d->version, n->id);
                lua_settop(L, base);
            } else { /* said, and forgotten: this step goes on */
                zt_log(op->w->p, ZT_LOG_ERROR, "%s (task %s left unescalated)", op->why, t.id);
                op->status = 0;
                op->slug = NULL;
            }
        }
        if (to) {
            if ((rc = wf_todo_del(op->w, op->txn, &t)) != ZT_OK) {
                sys_fail(op, rc, "to-do");
                goto done;
            }
            t.escalated = to;
            if ((rc = wf_todo_put(op->w, op->txn, &t)) != ZT_OK) {
                sys_fail(op, rc, "to-do");
                goto done;
            }
        }
    } else {
        t.remind_timer = "";
        t.flags |= WF_TF_REMINDED;
    }
    const char *what = due ? (wf_nz(t.escalated) ? "overdue, escalated" : "overdue") : "reminder";
    wf_step s = {op->now, what, t.node_id, "system", t.id, t.escalated, NULL};
    if ((rc = wf_task_put(op->w, op->txn, &t)) != ZT_OK ||
        (rc = wf_hist_add(op->w, op->txn, &in, &s)) != ZT_OK ||
        (rc = wf_inst_put(op->w, op->txn, &in)) != ZT_OK) {
        sys_fail(op, rc, "task");
        goto done;
    }
    rc = emit(op, due ? "workflow.task.overdue" : "workflow.task.reminder", &in, &t, NULL);
done:
    wf_task_free(&t);
    wf_inst_free(&in);
    return rc;
}
