/* def.c: workflow definitions: Lua files compiled into node graphs, checked, versioned. */
#include "wf.h"

#include <lauxlib.h>
#include <lua.h>

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {NULL,      "start", "user", "service",
                                         "gateway", "split", "join", "end"};

const char *wf_node_type_name(int type)
{
    return type > 0 && type <= WF_END ? type_names[type] : "?";
}

static int type_of(const char *s)
{
    for (int i = 1; i <= WF_END; i++)
        if (!strcmp(s, type_names[i])) return i;
    if (!strcmp(s, "task")) return WF_USER;
    if (!strcmp(s, "exclusive")) return WF_GATEWAY;
    if (!strcmp(s, "parallel")) return WF_SPLIT;
    return 0;
}

int wf_node_index(const wf_def *d, const char *id)
{
    for (size_t i = 0; i < d->nnodes; i++)
        if (!strcmp(d->nodes[i].id, id)) return (int)i;
    return -1;
}

static void unref(lua_State *L, int *ref)
{
    if (L && *ref != WF_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = WF_NOREF;
}

static void def_free(lua_State *L, wf_def *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nnodes; i++) {
        wf_node *n = &d->nodes[i];
        free(n->id), free(n->title), free(n->role), free(n->dept), free(n->escalate_to);
        free(n->service), free(n->result), free(n->outs), free(n->region);
        for (size_t k = 0; k < n->ndecisions; k++) free(n->decisions[k]);
        free(n->decisions);
        for (size_t k = 0; k < n->nform; k++) free(n->form[k]);
        free(n->form);
        unref(L, &n->dept_fn), unref(L, &n->assignee_fn), unref(L, &n->multi_fn), unref(L, &n->fn);
        unref(L, &n->need_fn), unref(L, &n->deadline_fn), unref(L, &n->escalate_fn);
        for (size_t c = 0; c < n->nconds; c++) unref(L, &n->conds[c].fn);
        free(n->conds);
    }
    free(d->nodes);
    for (size_t i = 0; i < d->nstarters; i++) free(d->starters[i]);
    free(d->starters);
    unref(L, &d->ref);
    free(d->name), free(d->title), free(d->note), free(d->owner), free(d->file), free(d->src);
    free(d->label);
    free(d);
}

void wf_defs_free(wf *w)
{
    for (int pass = 0; pass < 2; pass++) {
        wf_def *d = pass ? w->cached : w->files;
        while (d) {
            wf_def *next = d->next;
            def_free(w->L, d);
            d = next;
        }
    }
    w->files = w->cached = NULL;
}

/* ---- reading the table -------------------------------------------------------------- */

typedef struct ctx {
    lua_State *L;
    wf_def *d;
    const char *chunk; /* file name for messages */
    char *err;
    size_t errlen;
    const char *node; /* the node being read, for messages */
    zt_plugin *p;     /* the workflow plugin: it declares the roles a definition names */
} ctx;

/* Where `id = {` or `["id"] = {` seems to be in the source: a line for messages. */
static int line_of(const wf_def *d, const char *id)
{
    size_t n = strlen(id);
    const char *s = d->src, *end = d->src + d->srclen;
    for (const char *p = s; p && p < end; p = memchr(p + 1, id[0], (size_t)(end - p - 1))) {
        if ((size_t)(end - p) < n || memcmp(p, id, n)) continue;
        if (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
        const char *q = p + n;
        if (q < end && *q == '"') q++;
        if (q < end && *q == ']') q++;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (q >= end || *q != '=') continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (q >= end || *q != '{') continue;
        int line = 1;
        for (const char *c = s; c < p; c++) line += *c == '\n';
        return line;
    }
    return 0;
}

static int fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ctx *c, const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *name = c->d->name ? c->d->name : "?";
    if (c->node) {
        int line = line_of(c->d, c->node);
        if (line)
            snprintf(c->err, c->errlen, "%s:%d: workflow %s, node '%s': %s", c->chunk, line, name,
                     c->node, what);
        else
            snprintf(c->err, c->errlen, "%s: workflow %s, node '%s': %s", c->chunk, name, c->node,
                     what);
    } else {
        snprintf(c->err, c->errlen, "%s: workflow %s: %s", c->chunk, name, what);
    }
    return ZT_EINVAL;
}

/* Push t[name] without metamethods (a script's __index must not run outside its budget). */
static int rawfield(lua_State *L, int t, const char *name)
{
    lua_pushstring(L, name);
    return lua_rawget(L, t);
}

/* A string field: *out malloc'd or NULL when absent. */
static int str_field(ctx *c, int t, const char *name, char **out, bool required)
{
    int ty = rawfield(c->L, t, name);
    *out = NULL;
    if (ty == LUA_TNIL) {
        lua_pop(c->L, 1);
        return required ? fail(c, "'%s' is missing", name) : ZT_OK;
    }
    if (ty != LUA_TSTRING) {
        lua_pop(c->L, 1);
        return fail(c, "'%s' must be text, not a %s", name, lua_typename(c->L, ty));
    }
    size_t n;
    const char *s = lua_tolstring(c->L, -1, &n);
    if (n == 0 || strlen(s) != n) {
        lua_pop(c->L, 1);
        return fail(c, "'%s' must be non-empty text", name);
    }
    *out = strdup(s);
    lua_pop(c->L, 1);
    return *out ? ZT_OK : ZT_ENOMEM;
}

/* A field that may be text or a function: one of *s, *ref is set. */
static int str_or_fn(ctx *c, int t, const char *name, char **s, int *ref)
{
    *s = NULL;
    *ref = WF_NOREF;
    int ty = rawfield(c->L, t, name);
    if (ty == LUA_TFUNCTION) {
        *ref = luaL_ref(c->L, LUA_REGISTRYINDEX);
        return ZT_OK;
    }
    lua_pop(c->L, 1);
    if (ty == LUA_TNIL) return ZT_OK;
    return str_field(c, t, name, s, false);
}

static int fn_field(ctx *c, int t, const char *name, int *ref)
{
    *ref = WF_NOREF;
    int ty = rawfield(c->L, t, name);
    if (ty == LUA_TFUNCTION) {
        *ref = luaL_ref(c->L, LUA_REGISTRYINDEX);
        return ZT_OK;
    }
    lua_pop(c->L, 1);
    if (ty == LUA_TNIL) return ZT_OK;
    return fail(c, "'%s' must be a function, not a %s", name, lua_typename(c->L, ty));
}

/* {days = N} or {hours = N} (working time) → ms; 0 when absent. */
static int span_field(ctx *c, int t, const char *name, int64_t *ms)
{
    *ms = 0;
    int ty = rawfield(c->L, t, name);
    if (ty == LUA_TNIL) {
        lua_pop(c->L, 1);
        return ZT_OK;
    }
    if (ty != LUA_TTABLE) {
        lua_pop(c->L, 1);
        return fail(c, "'%s' must be a table {days = N} or {hours = N}", name);
    }
    int st = lua_gettop(c->L);
    double total = 0;
    bool any = false;
    static const struct {
        const char *k;
        double ms;
    } units[] = {{"days", 86400000.0}, {"hours", 3600000.0}, {"minutes", 60000.0}};
    for (size_t i = 0; i < 3; i++) {
        int vt = rawfield(c->L, st, units[i].k);
        if (vt == LUA_TNUMBER) {
            double v = lua_tonumber(c->L, -1);
            if (!(v >= 0 && v <= 3650)) {
                lua_settop(c->L, st - 1);
                return fail(c, "'%s.%s' must be a number from 0 to 3650", name, units[i].k);
            }
            total += v * units[i].ms, any = true;
        } else if (vt != LUA_TNIL) {
            lua_settop(c->L, st - 1);
            return fail(c, "'%s.%s' must be a number", name, units[i].k);
        }
        lua_pop(c->L, 1);
    }
    lua_settop(c->L, st - 1);
    if (!any || total <= 0) return fail(c, "'%s' needs days, hours or minutes above 0", name);
    *ms = (int64_t)total;
    return ZT_OK;
}

/* A node reference by id, resolved once every node is known. */
typedef struct pending {
    char *target;
    const char *from; /* node id */
    const char *field;
} pending;

typedef struct refs {
    pending *v;
    size_t n, cap;
} refs;

static int add_ref(refs *r, uint8_t *slot, const char *target, const char *from, const char *field)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 32;
        pending *v = realloc(r->v, nc * sizeof *v);
        if (!v) return ZT_ENOMEM;
        r->v = v, r->cap = nc;
    }
    char *t = strdup(target);
    if (!t) return ZT_ENOMEM;
    r->v[r->n++] = (pending){t, from, field};
    *slot = WF_NONE;
    return ZT_OK;
}

static int ref_field(ctx *c, refs *r, int t, const char *name, uint8_t *slot, bool required)
{
    char *s;
    int rc = str_field(c, t, name, &s, required);
    *slot = WF_NONE;
    if (rc != ZT_OK || !s) return rc;
    rc = add_ref(r, slot, s, c->node, name);
    free(s);
    return rc;
}

/* The len strings of the list at index lt copied into *out (calloc'd, *n of them), each 1 to
 * 64 bytes and listed once. ZT_EINVAL when one is not (*twice: the word it repeats, or
 * NULL); what was copied is kept for def_free. */
static int copy_words(lua_State *L, int lt, size_t len, char ***out, size_t *n, const char **twice)
{
    *twice = NULL;
    if (len && !(*out = calloc(len, sizeof **out))) return ZT_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        size_t wl = 0;
        const char *w = lua_rawgeti(L, lt, (lua_Integer)i + 1) == LUA_TSTRING
                            ? lua_tolstring(L, -1, &wl)
                            : NULL;
        for (size_t k = 0; w && k < *n; k++)
            if (!strcmp(w, (*out)[k])) *twice = (*out)[k];
        if (!w || wl < 1 || wl > 64 || strlen(w) != wl || *twice) {
            lua_pop(L, 1);
            return ZT_EINVAL;
        }
        (*out)[*n] = strdup(w);
        lua_pop(L, 1);
        if (!(*out)[(*n)++]) return ZT_ENOMEM;
    }
    return ZT_OK;
}

/* decisions = { "approve", "refuse" }: the words a completion of the task may give (its
 * decision is then required, and one of them), so that no completion decides by leaving
 * the decision out. At most 16 words of 1 to 64 bytes. */
static int decisions_field(ctx *c, int t, wf_node *n)
{
    lua_State *L = c->L;
    int ty = rawfield(L, t, "decisions");
    size_t len = ty == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return ZT_OK;
    }
    const char *twice;
    int rc = ty == LUA_TTABLE && len >= 1 && len <= 16
                 ? copy_words(L, lua_gettop(L), len, &n->decisions, &n->ndecisions, &twice)
                 : ZT_EINVAL;
    lua_pop(L, 1);
    return rc == ZT_EINVAL ? fail(c, "decisions must be a list of 1 to 16 different words") : rc;
}

/* reasons = { "refuse" }: the decisions (of the node's `decisions`) that a completion gives
 * only with an opinion saying why, as a refusal of a licence must (不予许可 states its
 * reasons): one left without would reach the person it decides about with none. */
static int reasons_field(ctx *c, int t, wf_node *n)
{
    lua_State *L = c->L;
    int ty = rawfield(L, t, "reasons");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return ZT_OK;
    }
    size_t len = ty == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    if (ty != LUA_TTABLE || len < 1 || !n->ndecisions) {
        lua_pop(L, 1);
        return fail(c, "reasons must be a list of some of the node's decisions");
    }
    for (size_t i = 0; i < len; i++) {
        const char *w =
            lua_rawgeti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t k = 0;
        while (w && k < n->ndecisions && strcmp(w, n->decisions[k]) != 0) k++;
        lua_pop(L, 1);
        if (!w || k == n->ndecisions) {
            lua_pop(L, 1);
            return fail(c, "reasons must be a list of some of the node's decisions");
        }
        n->reasons |= (uint16_t)(1u << k);
    }
    lua_pop(L, 1);
    return ZT_OK;
}

/* form = { "opinion_extra", ... }: the fields of the instance's data that a completion of
 * the task may set with its form (an empty list: none). Without it a form sets any field,
 * so a definition whose data steers it (its gateways, departments, deadlines, escalation
 * read it) lists what its handlers may fill in: whoever completes one task would otherwise
 * rewrite what decides the others. At most 64 names of 1 to 64 bytes, each once. */
static int form_field(ctx *c, int t, wf_node *n)
{
    lua_State *L = c->L;
    int ty = rawfield(L, t, "form");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return ZT_OK;
    }
    int ft = lua_gettop(L);
    size_t len = ty == LUA_TTABLE ? lua_rawlen(L, ft) : 0;
    /* a list and nothing else: { deadline = true } would read as the empty list */
    size_t keys = 0;
    if (ty == LUA_TTABLE)
        for (lua_pushnil(L); lua_next(L, ft); lua_pop(L, 1)) keys++;
    if (ty != LUA_TTABLE || keys != len || len > 64) {
        lua_pop(L, 1);
        return fail(c, "form must be a list of at most 64 field names (the data a completion "
                       "may set)");
    }
    n->form_listed = true;
    const char *twice;
    int rc = copy_words(L, ft, len, &n->form, &n->nform, &twice);
    if (rc == ZT_EINVAL)
        rc = twice ? fail(c, "form lists '%s' twice", twice)
                   : fail(c, "form must list field names of 1 to 64 bytes");
    lua_pop(L, 1);
    return rc;
}

/* A role the definition names outright (what: where) is a role of the node: the accounts
 * that handle its tasks can be given it (zt_role_declare). One that is no role name no
 * account could hold: the definition is refused. A role a function computes is one county
 * IT adds (POST /admin/roles). */
static int declare_role(ctx *c, const char *what, const char *role)
{
    /* "user" (any signed-in caller) and "public" are a route's roles, no one's to declare */
    if (!role || strcmp(role, ZT_ROLE_USER) == 0 || strcmp(role, ZT_ROLE_PUBLIC) == 0 ||
        zt_role_declare(c->p, role, NULL) == ZT_OK)
        return ZT_OK;
    return fail(c, "%s: '%s' is no role name (1 to 64 of a-z 0-9 _ . - from a letter)", what, role);
}

static int read_user(ctx *c, refs *r, int t, wf_node *n)
{
    int rc;
    if ((rc = str_field(c, t, "role", &n->role, false)) != ZT_OK) return rc;
    if ((rc = str_or_fn(c, t, "department", &n->dept, &n->dept_fn)) != ZT_OK) return rc;
    if ((rc = fn_field(c, t, "assignee", &n->assignee_fn)) != ZT_OK) return rc;
    if ((rc = fn_field(c, t, "multi", &n->multi_fn)) != ZT_OK) return rc;
    if ((rc = str_or_fn(c, t, "escalate_to", &n->escalate_to, &n->escalate_fn)) != ZT_OK) return rc;
    if ((rc = declare_role(c, "role", n->role)) != ZT_OK ||
        (rc = declare_role(c, "escalate_to", n->escalate_to)) != ZT_OK)
        return rc;
    /* a span of working time from the task's creation, or a function of the instance that
     * gives the moment (a time limit its plugin counts, such as a legal one) */
    if (rawfield(c->L, t, "deadline") == LUA_TFUNCTION) {
        n->deadline_fn = luaL_ref(c->L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(c->L, 1);
        if ((rc = span_field(c, t, "deadline", &n->deadline_ms)) != ZT_OK) return rc;
    }
    if ((rc = span_field(c, t, "remind_before", &n->remind_ms)) != ZT_OK) return rc;
    if ((rc = decisions_field(c, t, n)) != ZT_OK) return rc;
    if ((rc = reasons_field(c, t, n)) != ZT_OK) return rc;
    if ((rc = form_field(c, t, n)) != ZT_OK) return rc;
    /* complete_over_http = false: the task is decided through its plugin's own routes
     * (which check what the engine does not know of), not POST /workflow/tasks/:id/... */
    int hty = rawfield(c->L, t, "complete_over_http");
    bool over_http = hty != LUA_TBOOLEAN || lua_toboolean(c->L, -1);
    lua_pop(c->L, 1);
    if (hty != LUA_TNIL && hty != LUA_TBOOLEAN)
        return fail(c, "complete_over_http must be true or false");
    n->plugin_only = !over_http;
    if (!n->role && !n->dept && n->dept_fn == WF_NOREF && n->assignee_fn == WF_NOREF &&
        n->multi_fn == WF_NOREF)
        return fail(c, "a user task needs a role, a department, an assignee or multi");
    if (n->need_fn != WF_NOREF && n->multi_fn == WF_NOREF)
        return fail(c, "need as a function goes with multi");
    bool deadline = n->deadline_ms || n->deadline_fn != WF_NOREF;
    if (n->remind_ms && !deadline) return fail(c, "remind_before needs a deadline");
    if ((n->escalate_to || n->escalate_fn != WF_NOREF) && !deadline)
        return fail(c, "escalate_to needs a deadline");
    return ref_field(c, r, t, "next", &n->next, true);
}

/* need = "all" | N; on a multi-instance user task also a function of the instance that
 * returns N (an item that says how many of its departments must sign). */
static int need_field(ctx *c, int t, wf_node *n, bool fn_ok)
{
    int ty = rawfield(c->L, t, "need");
    n->need = 0;
    if (ty == LUA_TFUNCTION && fn_ok) {
        n->need_fn = luaL_ref(c->L, LUA_REGISTRYINDEX);
        return ZT_OK;
    }
    if (ty == LUA_TNUMBER && lua_isinteger(c->L, -1) && lua_tointeger(c->L, -1) >= 1 &&
        lua_tointeger(c->L, -1) <= WF_MAX_MULTI)
        n->need = (int)lua_tointeger(c->L, -1);
    else if (ty == LUA_TSTRING && !strcmp(lua_tostring(c->L, -1), "all"))
        n->need = 0;
    else if (ty != LUA_TNIL) {
        lua_pop(c->L, 1);
        return fail(c, "'need' must be \"all\" or a whole number from 1 to %d", WF_MAX_MULTI);
    }
    lua_pop(c->L, 1);
    return ZT_OK;
}

static int read_gateway(ctx *c, refs *r, int t, wf_node *n)
{
    int ty = rawfield(c->L, t, "conditions");
    int ct = lua_gettop(c->L);
    if (ty != LUA_TTABLE && ty != LUA_TNIL) {
        lua_pop(c->L, 1);
        return fail(c, "'conditions' must be a list of {when = function, next = node}");
    }
    size_t len = ty == LUA_TTABLE ? lua_rawlen(c->L, ct) : 0;
    if (len > 64) {
        lua_pop(c->L, 1);
        return fail(c, "at most 64 conditions");
    }
    if (len && !(n->conds = calloc(len, sizeof *n->conds))) {
        lua_pop(c->L, 1);
        return ZT_ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        n->conds[i].fn = WF_NOREF;
        n->nconds = i + 1;
        if (lua_rawgeti(c->L, ct, (lua_Integer)i + 1) != LUA_TTABLE) {
            lua_settop(c->L, ct - 1);
            return fail(c, "condition %zu must be a table {when = function, next = node}", i + 1);
        }
        int it = lua_gettop(c->L);
        int rc = fn_field(c, it, "when", &n->conds[i].fn);
        if (rc == ZT_OK && n->conds[i].fn == WF_NOREF)
            rc = fail(c, "condition %zu has no 'when' function", i + 1);
        if (rc == ZT_OK) rc = ref_field(c, r, it, "next", &n->conds[i].next, true);
        lua_pop(c->L, 1);
        if (rc != ZT_OK) {
            lua_settop(c->L, ct - 1);
            return rc;
        }
    }
    lua_pop(c->L, 1);
    size_t before = r->n;
    int rc = ref_field(c, r, t, "default", &n->dflt, false);
    if (rc != ZT_OK) return rc;
    if (!n->nconds && r->n == before) return fail(c, "a gateway needs conditions or a default");
    return ZT_OK;
}

static int read_split(ctx *c, refs *r, int t, wf_node *n)
{
    int ty = rawfield(c->L, t, "next");
    int lt = lua_gettop(c->L);
    if (ty != LUA_TTABLE) {
        lua_pop(c->L, 1);
        return fail(c, "a split's 'next' must be a list of two or more node ids");
    }
    size_t len = lua_rawlen(c->L, lt);
    if (len < 2 || len > 64) {
        lua_pop(c->L, 1);
        return fail(c, "a split's 'next' must list 2 to 64 node ids");
    }
    if (!(n->outs = calloc(len, 1))) {
        lua_pop(c->L, 1);
        return ZT_ENOMEM;
    }
    n->nouts = len;
    for (size_t i = 0; i < len; i++) {
        int rc;
        if (lua_rawgeti(c->L, lt, (lua_Integer)i + 1) != LUA_TSTRING)
            rc = fail(c, "a split's 'next' must list node ids (text)");
        else
            rc = add_ref(r, &n->outs[i], lua_tostring(c->L, -1), c->node, "next");
        lua_pop(c->L, 1);
        if (rc != ZT_OK) {
            lua_pop(c->L, 1);
            return rc;
        }
    }
    lua_pop(c->L, 1);
    return ZT_OK;
}

static int read_node(ctx *c, refs *r, int t, wf_node *n)
{
    char *type;
    int rc = str_field(c, t, "type", &type, true);
    if (rc != ZT_OK) return rc;
    n->type = type_of(type);
    if (!n->type) {
        rc = fail(c, "unknown node type '%s' (start, user, service, gateway, split, join, end)",
                  type);
        free(type);
        return rc;
    }
    free(type);
    if ((rc = str_field(c, t, "title", &n->title, false)) != ZT_OK) return rc;
    switch (n->type) {
    case WF_START:
        return ref_field(c, r, t, "next", &n->next, true);
    case WF_USER:
        if ((rc = need_field(c, t, n, true)) != ZT_OK) return rc;
        return read_user(c, r, t, n);
    case WF_SERVICE:
        if ((rc = fn_field(c, t, "fn", &n->fn)) != ZT_OK) return rc;
        if ((rc = str_field(c, t, "service", &n->service, false)) != ZT_OK) return rc;
        if ((n->fn == WF_NOREF) == (n->service == NULL))
            return fail(c, "a service task needs either fn (a function) or service (a name)");
        return ref_field(c, r, t, "next", &n->next, true);
    case WF_GATEWAY:
        return read_gateway(c, r, t, n);
    case WF_SPLIT:
        return read_split(c, r, t, n);
    case WF_JOIN:
        if ((rc = need_field(c, t, n, false)) != ZT_OK) return rc;
        return ref_field(c, r, t, "next", &n->next, true);
    case WF_END:
        return str_field(c, t, "result", &n->result, false);
    }
    return ZT_EINVAL;
}

/* ---- checking the graph ------------------------------------------------------------- */

static size_t edges(const wf_node *n, uint8_t out[66])
{
    size_t k = 0;
    if (n->next != WF_NONE) out[k++] = n->next;
    for (size_t i = 0; i < n->nconds; i++) out[k++] = n->conds[i].next;
    if (n->type == WF_GATEWAY && n->dflt != WF_NONE) out[k++] = n->dflt;
    for (size_t i = 0; i < n->nouts; i++) out[k++] = n->outs[i];
    return k;
}

static void reach(const wf_def *d, uint8_t from, bool *seen, bool forward)
{
    uint8_t stack[WF_MAX_NODES * 66];
    size_t sp = 0;
    stack[sp++] = from;
    while (sp) {
        uint8_t x = stack[--sp];
        if (forward) {
            uint8_t e[66];
            size_t k = edges(&d->nodes[x], e);
            for (size_t i = 0; i < k; i++)
                if (!seen[e[i]]) seen[e[i]] = true, stack[sp++] = e[i];
        } else {
            for (size_t y = 0; y < d->nnodes; y++) {
                uint8_t e[66];
                size_t k = edges(&d->nodes[y], e);
                for (size_t i = 0; i < k; i++)
                    if (e[i] == x && !seen[y]) {
                        seen[y] = true, stack[sp++] = (uint8_t)y;
                        break;
                    }
            }
        }
    }
}

static int check_graph(ctx *c)
{
    wf_def *d = c->d;
    size_t nn = d->nnodes;
    bool seen[WF_MAX_NODES] = {0};
    seen[d->start] = true;
    reach(d, d->start, seen, true);
    bool has_end = false;
    for (size_t i = 0; i < nn; i++) {
        c->node = d->nodes[i].id;
        if (!seen[i])
            return fail(c, "cannot be reached from the start node '%s'", d->nodes[d->start].id);
        if (d->nodes[i].type == WF_END) has_end = true;
        if (d->nodes[i].type == WF_START && i != d->start)
            return fail(c, "a start node other than the definition's start '%s'",
                        d->nodes[d->start].id);
    }
    c->node = NULL;
    if (!has_end) return fail(c, "no end node");
    if (d->nodes[d->start].type == WF_JOIN || d->nodes[d->start].type == WF_END) {
        c->node = d->nodes[d->start].id;
        return fail(c, "cannot be the start node");
    }
    /* joins: count incoming edges, find the split each closes */
    for (size_t j = 0; j < nn; j++) {
        wf_node *jn = &d->nodes[j];
        if (jn->type != WF_JOIN) continue;
        c->node = jn->id;
        unsigned nin = 0;
        for (size_t y = 0; y < nn; y++) {
            uint8_t e[66];
            size_t k = edges(&d->nodes[y], e);
            for (size_t i = 0; i < k; i++) nin += e[i] == j;
        }
        bool back[WF_MAX_NODES] = {0};
        reach(d, (uint8_t)j, back, false);
        size_t best = SIZE_MAX;
        uint8_t split = WF_NONE;
        bool *region = NULL;
        for (size_t s = 0; s < nn; s++) {
            if (d->nodes[s].type != WF_SPLIT || !back[s]) continue;
            bool fwd[WF_MAX_NODES] = {0};
            reach(d, (uint8_t)s, fwd, true);
            size_t size = 0;
            for (size_t x = 0; x < nn; x++) size += fwd[x] && back[x] && x != s && x != j;
            if (size < best) {
                best = size, split = (uint8_t)s;
                free(region);
                if (!(region = calloc(nn, sizeof *region))) return ZT_ENOMEM;
                for (size_t x = 0; x < nn; x++) region[x] = fwd[x] && back[x] && x != s && x != j;
            }
        }
        if (split == WF_NONE) return fail(c, "a join with no parallel split before it");
        jn->split = split;
        jn->nin = (uint8_t)(nin > 255 ? 255 : nin);
        jn->region = region;
        if (jn->need > (int)nin)
            return fail(c, "need = %d, but only %u branches arrive", jn->need, nin);
    }
    c->node = NULL;
    return ZT_OK;
}

/* ---- one definition ----------------------------------------------------------------- */

static bool good_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) return false;
    return true;
}

/* The table on the top of L becomes *out (popped either way). src is copied. */
static int compile(wf *w, const char *chunk, bool recorded, const char *src, size_t len,
                   const char *owner, wf_def **out, char *err, size_t errlen)
{
    lua_State *L = w->L;
    *out = NULL;
    wf_def *d = calloc(1, sizeof *d);
    refs r = {0};
    if (!d) {
        lua_pop(L, 1);
        return ZT_ENOMEM;
    }
    d->ref = WF_NOREF;
    ctx c = {L, d, chunk, err, errlen, NULL, w->p};
    int rc = ZT_ENOMEM;
    if (!(d->src = malloc(len + 1)) || !(d->owner = strdup(owner)) || !(d->file = strdup(chunk)))
        goto done;
    memcpy(d->src, src, len);
    d->src[len] = 0;
    d->srclen = len;
    zt_hash(src, len, d->digest);
    if (!lua_istable(L, -1)) {
        rc = fail(&c, "the file must return a table {name, start, nodes, ...}");
        goto done;
    }
    int t = lua_gettop(L);
    if ((rc = str_field(&c, t, "name", &d->name, true)) != ZT_OK) goto done;
    if (!good_name(d->name)) {
        rc = fail(&c, "name: 1 to 64 of A-Z a-z 0-9 _ . -");
        goto done;
    }
    if ((rc = str_field(&c, t, "title", &d->title, false)) != ZT_OK) goto done;
    if ((rc = str_field(&c, t, "version_note", &d->note, false)) != ZT_OK) goto done;
    /* its instances' security label, at least (a recorded version's is not looked at: an
     * instance keeps its own, and only the file's starts new ones) */
    if ((rc = str_field(&c, t, "label", &d->label, false)) != ZT_OK) goto done;
    if (!recorded && d->label && zt_label_level(w->p, d->label) < 0) {
        rc =
            fail(&c, "label '%s' is not one of the node's security labels (auth.labels)", d->label);
        goto done;
    }
    char *start;
    if ((rc = str_field(&c, t, "start", &start, true)) != ZT_OK) goto done;
    /* starters: the roles allowed to start it over HTTP */
    int sty = rawfield(L, t, "starters");
    if (sty == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        if (n && !(d->starters = calloc(n, sizeof *d->starters))) {
            free(start);
            lua_pop(L, 1);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING) {
                lua_pop(L, 2);
                free(start);
                rc = fail(&c, "starters must be a list of role names");
                goto done;
            }
            d->starters[d->nstarters] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
            if (!d->starters[d->nstarters++]) {
                lua_pop(L, 1);
                free(start);
                rc = ZT_ENOMEM;
                goto done;
            }
            if ((rc = declare_role(&c, "starters", d->starters[d->nstarters - 1])) != ZT_OK) {
                lua_pop(L, 1);
                free(start);
                goto done;
            }
        }
    } else if (sty != LUA_TNIL) {
        lua_pop(L, 1);
        free(start);
        rc = fail(&c, "starters must be a list of role names");
        goto done;
    }
    lua_pop(L, 1);
    /* nodes */
    if (rawfield(L, t, "nodes") != LUA_TTABLE) {
        lua_pop(L, 1);
        free(start);
        rc = fail(&c, "nodes must be a table {id = {type = ...}, ...}");
        goto done;
    }
    int nt = lua_gettop(L);
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, nt)) count++, lua_pop(L, 1);
    if (count == 0 || count > WF_MAX_NODES) {
        lua_pop(L, 1);
        free(start);
        rc = fail(&c, "a definition has 1 to %d nodes, not %zu", WF_MAX_NODES, count);
        goto done;
    }
    if (!(d->nodes = calloc(count, sizeof *d->nodes))) {
        lua_pop(L, 1);
        free(start);
        rc = ZT_ENOMEM;
        goto done;
    }
    lua_pushnil(L);
    while (lua_next(L, nt)) {
        wf_node *n = &d->nodes[d->nnodes];
        n->next = n->dflt = n->split = WF_NONE;
        n->dept_fn = n->assignee_fn = n->multi_fn = n->fn = n->need_fn = n->deadline_fn =
            n->escalate_fn = WF_NOREF;
        if (lua_type(L, -2) != LUA_TSTRING || !good_name(lua_tostring(L, -2))) {
            lua_pop(L, 3);
            free(start);
            rc = fail(&c, "node ids are names (A-Z a-z 0-9 _ . -), each a table");
            goto done;
        }
        if (!(n->id = strdup(lua_tostring(L, -2)))) {
            lua_pop(L, 3);
            free(start);
            rc = ZT_ENOMEM;
            goto done;
        }
        d->nnodes++;
        c.node = n->id;
        if (!lua_istable(L, -1)) {
            rc = fail(&c, "a node is a table {type = ..., ...}");
        } else {
            rc = read_node(&c, &r, lua_gettop(L), n);
        }
        lua_pop(L, 1);
        if (rc != ZT_OK) {
            lua_pop(L, 2);
            free(start);
            goto done;
        }
    }
    lua_pop(L, 1);
    c.node = NULL;
    /* node order is the table's, which Lua does not fix: sort by id so that indexes kept
     * in records mean the same node every time this source is compiled */
    for (size_t i = 1; i < d->nnodes; i++)
        for (size_t j = i; j > 0 && strcmp(d->nodes[j - 1].id, d->nodes[j].id) > 0; j--) {
            wf_node tmp = d->nodes[j];
            d->nodes[j] = d->nodes[j - 1];
            d->nodes[j - 1] = tmp;
        }
    /* references are resolved below by (node id, field, position): the nodes moved */
    int si = wf_node_index(d, start);
    if (si < 0) {
        rc = fail(&c, "start '%s' is not a node", start);
        free(start);
        goto done;
    }
    free(start);
    d->start = (uint8_t)si;
    rc = ZT_OK;
done:
    if (rc == ZT_OK) {
        /* resolve references: every slot was recorded with its node id; find the node
         * again (after sorting) and the slot by field */
        size_t idx[WF_MAX_NODES] = {0}; /* per node: how many "next" refs of a split seen */
        size_t cidx[WF_MAX_NODES] = {0};
        for (size_t i = 0; i < r.n && rc == ZT_OK; i++) {
            pending *p = &r.v[i];
            int from = wf_node_index(d, p->from);
            assert(from >= 0);
            wf_node *n = &d->nodes[from];
            uint8_t *slot;
            if (!strcmp(p->field, "default"))
                slot = &n->dflt;
            else if (n->type == WF_SPLIT)
                slot = &n->outs[idx[from]++];
            else if (n->type == WF_GATEWAY)
                slot = &n->conds[cidx[from]++].next;
            else
                slot = &n->next;
            int to = wf_node_index(d, p->target);
            if (to < 0) {
                c.node = n->id;
                rc = fail(&c, "%s '%s' is not a node of this definition", p->field, p->target);
                break;
            }
            *slot = (uint8_t)to;
        }
        if (rc == ZT_OK) rc = check_graph(&c);
    }
    for (size_t i = 0; i < r.n; i++) free(r.v[i].target);
    free(r.v);
    if (rc == ZT_OK) {
        d->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the table */
        *out = d;
        return ZT_OK;
    }
    lua_pop(L, 1);
    if (rc == ZT_ENOMEM) snprintf(err, errlen, "%s: out of memory", chunk);
    def_free(L, d);
    return rc;
}

/* ---- files -------------------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ZT_EIO;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (4u << 20)) {
                free(buf);
                fclose(f);
                return ZT_ETOOBIG;
            }
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return ZT_ENOMEM;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ZT_EIO;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return ZT_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.lua of dir, in name order (so that messages and version order do not depend on
 * the file system). */
static int load_dir(wf *w, const char *dir, const char *shown, const char *owner, char *err,
                    size_t errlen)
{
    DIR *dh = opendir(dir);
    if (!dh) return errno == ENOENT ? ZT_OK : ZT_EIO;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = ZT_OK;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".lua") || e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(names, cap * sizeof *nv);
            if (!nv) {
                rc = ZT_ENOMEM;
                break;
            }
            names = nv;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = ZT_ENOMEM;
            break;
        }
        n++;
    }
    closedir(dh);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == ZT_OK; i++) {
        char path[4096], chunk[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(chunk, sizeof chunk, "%s/%s", shown, names[i]);
        char *src;
        size_t len;
        if ((rc = read_file(path, &src, &len)) != ZT_OK) {
            snprintf(err, errlen, "%s: cannot read it (%s)", path, zt_strerror(rc));
            break;
        }
        rc = zt_lua_run(w->L, chunk, src, len, 1, err, errlen);
        wf_def *d = NULL;
        if (rc == ZT_OK) rc = compile(w, chunk, false, src, len, owner, &d, err, errlen);
        free(src);
        if (rc != ZT_OK) break;
        for (wf_def *o = w->files; o; o = o->next)
            if (!strcmp(o->name, d->name)) {
                snprintf(err, errlen, "%s: workflow %s is defined already in %s", chunk, d->name,
                         o->file);
                def_free(w->L, d);
                rc = ZT_ECONFLICT;
                break;
            }
        if (rc != ZT_OK) break;
        d->next = w->files;
        w->files = d;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int wf_defs_load(wf *w, char *err, size_t errlen)
{
    const char *lua_dir = zt_lua_dir(w->p);
    char dir[4096], shown[512];
    snprintf(dir, sizeof dir, "%s/workflows", lua_dir);
    int rc = load_dir(w, dir, "workflows", zt_plugin_name(w->p), err, errlen);
    const char *name;
    for (size_t i = 0; rc == ZT_OK && (name = zt_plugin_at(w->p, i)); i++) {
        snprintf(dir, sizeof dir, "%s/plugins/%s/workflows", lua_dir, name);
        snprintf(shown, sizeof shown, "plugins/%s/workflows", name);
        rc = load_dir(w, dir, shown, name, err, errlen);
    }
    if (rc != ZT_OK && !*err) snprintf(err, errlen, "%s", zt_strerror(rc));
    return rc;
}

/* ---- versions ----------------------------------------------------------------------- */

/* Key: name NUL version (big-endian u32). Value: digest (32), recorded at (i64), source. */
static size_t vkey(unsigned char *k, const char *name, uint32_t v)
{
    size_t n = strlen(name);
    memcpy(k, name, n);
    k[n] = 0;
    for (int i = 0; i < 4; i++) k[n + 1 + i] = (unsigned char)(v >> (8 * (3 - i)));
    return n + 5;
}

int wf_def_latest(wf *w, zt_txn *txn, const char *name, uint32_t *version, unsigned char digest[32])
{
    unsigned char k[80];
    size_t n = strlen(name);
    *version = 0;
    zt_cursor *cur;
    int rc = zt_cursor_open(txn, w->defs, &cur);
    if (rc != ZT_OK) return rc;
    /* just past every key of name: name followed by 0x01 */
    memcpy(k, name, n);
    k[n] = 1;
    zt_kv kv;
    rc = zt_cursor_seek(cur, ZT_GE, k, n + 1, &kv);
    if (rc == ZT_OK || rc == ZT_ENOTFOUND) rc = zt_cursor_seek(cur, ZT_PREV, NULL, 0, &kv);
    if (rc == ZT_OK && kv.klen == n + 5 && !memcmp(kv.key, name, n) &&
        ((const unsigned char *)kv.key)[n] == 0 && kv.vlen >= 40) {
        const unsigned char *x = (const unsigned char *)kv.key + n + 1;
        *version = (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
        if (digest) memcpy(digest, kv.val, 32);
    }
    zt_cursor_close(cur);
    return rc == ZT_OK || rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static bool recorded(wf *w, zt_txn *txn, const wf_def *d)
{
    unsigned char k[80];
    const void *val;
    size_t vlen;
    return d->version &&
           zt_get(txn, w->defs, k, vkey(k, d->name, d->version), &val, &vlen) == ZT_OK &&
           vlen >= 32 && !memcmp(val, d->digest, 32);
}

wf_def *wf_def_file(wf *w, const char *name)
{
    wf_def *d = w->files;
    while (d && strcmp(d->name, name)) d = d->next;
    return d;
}

wf_def *wf_def_current(wf *w, zt_txn *txn, const char *name, int *rc)
{
    wf_def *d = wf_def_file(w, name);
    if (!d) {
        *rc = ZT_ENOTFOUND;
        return NULL;
    }
    *rc = ZT_OK;
    if (recorded(w, txn, d)) return d;
    uint32_t latest;
    unsigned char dg[32];
    if ((*rc = wf_def_latest(w, txn, name, &latest, dg)) != ZT_OK) return NULL;
    if (latest && !memcmp(dg, d->digest, 32)) {
        d->version = latest;
        return d;
    }
    if (!zt_txn_writable(txn)) {
        d->version = 0; /* to be recorded by the next write that starts it */
        return d;
    }
    unsigned char k[80];
    size_t kl = vkey(k, name, latest + 1);
    unsigned char *val = malloc(40 + d->srclen);
    if (!val) {
        *rc = ZT_ENOMEM;
        return NULL;
    }
    memcpy(val, d->digest, 32);
    wf_put_be64(val + 32, (uint64_t)zt_now_ms());
    memcpy(val + 40, d->src, d->srclen);
    *rc = zt_put(txn, w->defs, k, kl, val, 40 + d->srclen);
    free(val);
    if (*rc != ZT_OK) return NULL;
    d->version = latest + 1;
    zt_log(w->p, ZT_LOG_INFO, "workflow %s: version %u recorded (from %s)", name, d->version,
           d->file);
    return d;
}

wf_def *wf_def_at(wf *w, zt_txn *txn, const char *name, uint32_t version, int *rc)
{
    *rc = ZT_OK;
    for (wf_def *d = w->files; d; d = d->next)
        if (d->version == version && !strcmp(d->name, name)) return d;
    for (wf_def *d = w->cached; d; d = d->next)
        if (d->version == version && !strcmp(d->name, name)) return d;
    unsigned char k[80];
    const void *val;
    size_t vlen;
    if (strlen(name) > 64) {
        *rc = ZT_ENOTFOUND;
        return NULL;
    }
    if ((*rc = zt_get(txn, w->defs, k, vkey(k, name, version), &val, &vlen)) != ZT_OK) return NULL;
    if (vlen < 40) {
        *rc = ZT_EIO;
        return NULL;
    }
    /* the store's memory is valid only until the next write: copy the source */
    size_t len = vlen - 40;
    char *src = malloc(len + 1);
    if (!src) {
        *rc = ZT_ENOMEM;
        return NULL;
    }
    memcpy(src, (const char *)val + 40, len);
    src[len] = 0;
    char chunk[96], err[512];
    snprintf(chunk, sizeof chunk, "%s@v%u", name, version);
    wf_def *d = NULL;
    *rc = zt_lua_run(w->L, chunk, src, len, 1, err, sizeof err);
    if (*rc == ZT_OK) {
        const wf_def *file = wf_def_file(w, name);
        *rc = compile(w, chunk, true, src, len, file ? file->owner : zt_plugin_name(w->p), &d, err,
                      sizeof err);
    }
    free(src);
    if (*rc != ZT_OK) {
        zt_log(w->p, ZT_LOG_ERROR, "workflow %s version %u no longer compiles: %s", name, version,
               err);
        return NULL;
    }
    d->version = version;
    d->next = w->cached;
    w->cached = d;
    return d;
}
