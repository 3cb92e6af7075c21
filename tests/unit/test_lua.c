/* test_lua.c: the Lua plugin host: sandbox, manifest, budget, memory cap, zt.json, handlers, zt.db,
 * zt.auth, zt.audit, zt.crypto, zt.valid, zt.seal, the budgeted pattern matcher, states for C
 * plugins (zt_lua_*), and the Lua side of events, timers and services. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "core.h"
#include "testutil.h"

#define MIB         (1024u * 1024u)
#define MEMORY_CAP  4194304 /* as written in the Lua below */
#define INSTRUCTION 2000000

typedef struct fx {
    char root[64];
    char lua[128]; /* lua_dir: plugin files are written here */
    zt_conf conf;
    zt_server srv;
    zt_plugin p;
    zt_caller *caller; /* who the requests made by call() come from */
    char err[ZT_ERRLEN];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->root, "/tmp/zt-lua-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->lua, sizeof f->lua, "%s/lua", f->root);
    assert_int_equal(mkdir(f->lua, 0700), 0);
    f->conf.lua_dir = f->lua;
    f->conf.lua_instructions = INSTRUCTION;
    f->conf.lua_memory = MEMORY_CAP;
    f->srv.conf = &f->conf;
    assert_int_equal(zt__router_new(&f->srv.router), ZT_OK);
    char data[128];
    snprintf(data, sizeof data, "%s/data", f->root);
    if (zt__store_open(&f->srv.store, data, 16 * MIB, f->err, sizeof f->err) != ZT_OK)
        fail_msg("store: %s", f->err);
    f->p.name = "t";
    f->p.kind = ZT_PLUGIN_LUA;
    f->p.srv = &f->srv;
    *state = f;
    return 0;
}

/* What manifest.lua filled in, freed as plugin.c frees it: every string on its own. */
static void manifest_free(zt_plugin *p)
{
    for (size_t i = 0; p->options && i < p->noptions; i++) {
        free((char *)p->options[i].name);
        free((char *)p->options[i].def);
        free((char *)p->options[i].description);
    }
    for (size_t i = 0; i < p->nrequires; i++) free(p->requires[i]);
    for (size_t i = 0; i < p->nneeds; i++) free(p->needs[i]);
    for (size_t i = 0; i < p->nwants; i++) free(p->wants[i]);
    free(p->options);
    free(p->requires);
    free(p->needs);
    free(p->wants);
    p->needs = p->wants = NULL;
    p->nneeds = p->nwants = 0;
    free(p->version);
    free(p->description);
    p->version = p->description = NULL;
    p->requires = NULL;
    p->options = NULL;
    p->noptions = p->nrequires = 0;
}

/* What a started node has besides storage: its keys, seals and identity (no first-start
 * account: check_only). */
static void open_core(fx *f)
{
    char key[160];
    snprintf(key, sizeof key, "%s/keys/master.key", f->root);
    f->srv.check_only = true;
    if (zt__keys_open(key, &f->srv.keys, f->err, sizeof f->err) != ZT_OK ||
        zt__seals_open(&f->srv, f->err, sizeof f->err) != ZT_OK ||
        zt__auth_open(&f->srv, f->err, sizeof f->err) != ZT_OK)
        fail_msg("core: %s", f->err);
}

static int teardown(void **state)
{
    fx *f = *state;
    zt__lua_fini(&f->p);
    assert_null(f->p.lua);
    zt__auth_close(&f->srv);
    zt__seals_close(&f->srv);
    zt__keys_close(f->srv.keys);
    manifest_free(&f->p);
    zt__router_free(f->srv.router);
    zt__store_close(f->srv.store);
    tu_rm_tree(f->root);
    free(f);
    return 0;
}

/* Write text to <lua_dir>/rel, making its folders. */
static void write_file(fx *f, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->lua, rel);
    for (char *s = strchr(path + strlen(f->lua) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        mkdir(path, 0700);
        *s = '/';
    }
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static int init_plugin(fx *f, const char *init_lua)
{
    char rel[128];
    snprintf(rel, sizeof rel, "plugins/%s/init.lua", f->p.name);
    write_file(f, rel, init_lua);
    f->err[0] = 0;
    f->p.in_init = true;
    int rc = zt__lua_init(&f->srv, &f->p, f->err, sizeof f->err);
    f->p.in_init = false;
    return rc;
}

static void init_ok(fx *f, const char *init_lua)
{
    int rc = init_plugin(f, init_lua);
    if (rc != ZT_OK) fail_msg("init.lua failed: %s", f->err);
    assert_non_null(f->p.lua);
}

static void init_fails(fx *f, const char *init_lua, const char *want)
{
    if (init_plugin(f, init_lua) == ZT_OK) fail_msg("init.lua did not fail: %s", init_lua);
    assert_null(f->p.lua);
    if (!strstr(f->err, want)) fail_msg("error \"%s\" does not say \"%s\"", f->err, want);
}

/* Mistakes in init say what is wrong, at the line, not "invalid argument". */
static void init_mistakes_say_why(void **state)
{
    fx *f = *state;
    init_fails(f, "\nzt.db.open('bad name')", ":2: zt.db.open('bad name'): a name is 1 to 64");
    init_fails(f, "zt.route('GET', 'no-slash', print)",
               ":1: zt.route GET no-slash: plugin 't': route path 'no-slash' must start with '/'");
    /* body_limit 0 is not "no body": the default is said by leaving it out, as in C */
    init_fails(f, "zt.route('POST', '/x', { body_limit = 0 }, print)",
               ":1: zt.route POST /x: body_limit must be an integer >= 1 (bytes; leave it out "
               "for the node's limits.body_bytes), not 0");
    init_fails(f, "zt.route('POST', '/x', { body_limit = '10' }, print)",
               "body_limit must be an integer >= 1 (bytes; leave it out for the node's "
               "limits.body_bytes), not 10");
    /* a problem outside a handler is an error, at the line that raised it */
    init_fails(f, "local x = 1\nzt.problem(418, 'teapot', 'not now')",
               "init.lua:2: zt.problem 418 teapot: not now");
    /* made through a pcall and raised again: still where it was made */
    init_fails(f, "local ok, p = pcall(zt.problem, 418, 'teapot', 'later')\nerror(p)",
               "init.lua:1: zt.problem 418 teapot: later");
}

/* A role no account could hold: no one could ever call the route. */
static void route_roles_are_role_names(void **state)
{
    fx *f = *state;
    init_fails(f,
               "zt.route('GET', '/x', { role = 'public' }, print)\n"
               "zt.route('GET', '/u', { role = 'user' }, print)\n"
               "zt.route('GET', '/e', { role = 'notice_editor' }, print)\n"
               "zt.route('GET', '/y', { role = 'Bad Role' }, print)",
               ":4: zt.route GET /y: plugin 't': role 'Bad Role' of GET /y is no role name");
}

/* ---- requests, made by hand as http.c and server.c would ------------------------------- */

typedef struct treq {
    zt_req r;
    zt_hdr hdrs[4];
    char path[256];
    char query[256];
    _Alignas(16) unsigned char first[4096];
    int rc; /* what the handler returned */
} treq;

/* Route method + target, run the handler, end its transaction as the server does. */
static treq *call(fx *f, const char *method, const char *target, const char *body,
                  const char *hname, const char *hvalue)
{
    treq *t = calloc(1, sizeof *t);
    assert_non_null(t);
    zt_req *r = &t->r;
    r->srv = &f->srv;
    zt__arena_init(&r->arena, t->first, sizeof t->first);
    zt_id(r->id);
    strcpy(r->client, "192.0.2.7");
    r->caller = f->caller;
    r->method = method;
    const char *q = strchr(target, '?');
    snprintf(t->path, sizeof t->path, "%.*s", q ? (int)(q - target) : (int)strlen(target), target);
    r->path = t->path;
    if (q) {
        snprintf(t->query, sizeof t->query, "%s", q + 1);
        r->query = t->query;
    }
    if (hname) {
        t->hdrs[0] = (zt_hdr){hname, hvalue, strlen(hname), strlen(hvalue)};
        r->hdrs = t->hdrs;
        r->nhdrs = 1;
    }
    if (body) assert_int_equal(zt__buf_append(&r->body, body, strlen(body)), ZT_OK);
    if (zt__router_match(f->srv.router, method, r->path, &r->match) != ZT_OK)
        fail_msg("no route for %s %s", method, r->path);
    for (unsigned i = 0; i < r->match.nparams; i++)
        r->match.pval[i] = zt__arena_strndup(&r->arena, r->match.pval[i], r->match.plen[i]);
    t->rc = r->match.route->handler(r, r->match.route->ud);
    if (r->txn) {
        bool commit = t->rc == ZT_OK && r->responded && r->status < 400;
        assert_int_equal(zt__store_end(f->srv.store, r->txn, commit), ZT_OK);
        r->txn = NULL;
    }
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
    return t;
}

static void done(treq *t)
{
    free(t->r.res_body);
    zt__buf_free(&t->r.res_hdrs);
    zt__buf_free(&t->r.body);
    cJSON_Delete(t->r.json);
    zt__arena_reset(&t->r.arena);
    free(t);
}

/* The response body as a NUL-terminated string (request memory). */
static const char *body_of(treq *t)
{
    char *s = zt_req_alloc(&t->r, t->r.res_len + 1);
    assert_non_null(s);
    if (t->r.res_len) memcpy(s, t->r.res_body, t->r.res_len);
    s[t->r.res_len] = 0;
    return s;
}

/* Expect a status and a body equal to want (NULL: any). */
static void expect(fx *f, const char *method, const char *target, const char *body, int status,
                   const char *want)
{
    treq *t = call(f, method, target, body, NULL, NULL);
    assert_int_equal(t->rc, ZT_OK);
    assert_true(t->r.responded);
    if (t->r.status != status)
        fail_msg("%s %s: status %d, not %d: %s", method, target, t->r.status, status, body_of(t));
    if (want) assert_string_equal(body_of(t), want);
    done(t);
}

/* Expect a problem: status, application/problem+json, "/problems/<type>", a detail that
 * holds `detail`. */
static void expect_problem(fx *f, const char *method, const char *target, const char *body,
                           int status, const char *type, const char *detail)
{
    treq *t = call(f, method, target, body, NULL, NULL);
    assert_int_equal(t->rc, ZT_OK);
    if (t->r.status != status)
        fail_msg("%s %s: status %d, not %d: %s", method, target, t->r.status, status, body_of(t));
    assert_string_equal(t->r.res_ctype, "application/problem+json");
    cJSON *j = cJSON_Parse(body_of(t));
    assert_non_null(j);
    char want[96];
    snprintf(want, sizeof want, "/problems/%s", type);
    assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, want);
    const char *d = cJSON_GetObjectItem(j, "detail")->valuestring;
    if (detail && !strstr(d, detail)) fail_msg("detail \"%s\" does not say \"%s\"", d, detail);
    cJSON_Delete(j);
    done(t);
}

/* ---- Lua for C plugins: zt_lua_new, zt_lua_run, zt_lua_call, JSON --------------------- */

/* f->p as a C plugin in its init, with a script state. */
static lua_State *script_state(fx *f)
{
    f->p.kind = ZT_PLUGIN_C;
    lua_State *L;
    assert_int_equal(zt_lua_new(&f->p, &L), ZT_ESTATE); /* only during init */
    assert_null(L);
    f->p.in_init = true;
    assert_int_equal(zt_lua_new(&f->p, &L), ZT_OK);
    assert_non_null(L);
    assert_ptr_equal(f->p.script, L);
    lua_State *again;
    assert_int_equal(zt_lua_new(&f->p, &again), ZT_ESTATE); /* one per plugin */
    assert_null(again);
    return L;
}

/* zt_lua_run that must succeed. */
static void run_ok(lua_State *L, const char *name, const char *src, int nresults)
{
    char err[ZT_ERRLEN] = "";
    int rc = zt_lua_run(L, name, src, strlen(src), nresults, err, sizeof err);
    if (rc != ZT_OK) fail_msg("%s failed: %s", name, err);
}

static void script_runs_in_the_sandbox(void **state)
{
    fx *f = *state;
    lua_State *L = script_state(f);
    int top = lua_gettop(L);
    run_ok(L, "sum", "return 1 + 2, 'x'", 2);
    assert_int_equal(lua_gettop(L), top + 2);
    assert_int_equal(lua_tointeger(L, -2), 3);
    assert_string_equal(lua_tostring(L, -1), "x");
    lua_settop(L, top);

    /* the same sandbox and zt module as a Lua plugin, acting as this plugin */
    run_ok(L, "sandbox",
           "return table.concat({ type(io), type(debug), type(os.execute), type(loadfile), "
           "type(string.dump), zt.plugin, type(zt.on), type(zt.emit), type(zt.timer.at), "
           "type(zt.call), tostring(pcall(load, '\\27Lua')) }, ' ')",
           1);
    assert_string_equal(lua_tostring(L, -1),
                        "nil nil nil nil nil t function function function function true");
    lua_settop(L, top);

    /* errors say "name:line: what", without the traceback */
    static const struct {
        const char *src, *want;
    } bad[] = {
        {"local t = nil\nreturn t.x", "cond:2: attempt to index a nil value (local 't')"},
        {"return = 1", "cond:1: unexpected symbol near '='"},
        {"\n\nerror('no such department')", "cond:3: no such department"},
        {"\x1bLua\x54\x00", "attempt to load a binary chunk"},
        {"while true do end", "cond:1: instruction budget exceeded"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ZT_ERRLEN] = "";
        int rc = zt_lua_run(L, "cond", bad[i].src, strlen(bad[i].src), 1, err, sizeof err);
        assert_int_equal(rc, ZT_EINVAL);
        assert_int_equal(lua_gettop(L), top);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].want);
        assert_null(strstr(err, "stack traceback"));
    }
    run_ok(L, "after", "return 40 + 2", 1); /* still usable */
    assert_int_equal(lua_tointeger(L, -1), 42);
    lua_settop(L, top);
    f->p.in_init = false;
}

static void script_calls_are_budgeted(void **state)
{
    fx *f = *state;
    lua_State *L = script_state(f);
    run_ok(L, "lib",
           "kv = zt.db.open('kv')\n"
           "function spin(n) local x = 0 for i = 1, n do x = x + i end return x end\n"
           "function stubborn() while true do pcall(function() while true do end end) end end\n"
           "function bomb() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1024) .. i end end\n"
           "function get(k) return kv:get(k) end\n"
           "function put(k, v) kv:put(k, v) return true end\n"
           "function two(a, b) return b, a end\n",
           0);
    f->p.in_init = false;
    int top = lua_gettop(L);
    char err[ZT_ERRLEN];

    /* arguments in, results out */
    lua_getglobal(L, "two");
    lua_pushinteger(L, 1);
    lua_pushstring(L, "b");
    assert_int_equal(zt_lua_call(L, NULL, 2, 2, err, sizeof err), ZT_OK);
    assert_int_equal(lua_gettop(L), top + 2);
    assert_string_equal(lua_tostring(L, -2), "b");
    assert_int_equal(lua_tointeger(L, -1), 1);
    lua_settop(L, top);

    /* over the budget, also when the script catches the error: ZT_EINVAL, the stack as
     * before the function, a traceback, and the state usable afterwards */
    const char *over[] = {"stubborn", "spin"};
    for (int i = 0; i < 2; i++) {
        lua_getglobal(L, over[i]);
        lua_pushinteger(L, (lua_Integer)INSTRUCTION * 10);
        err[0] = 0;
        assert_int_equal(zt_lua_call(L, NULL, 1, 1, err, sizeof err), ZT_EINVAL);
        assert_int_equal(lua_gettop(L), top);
        if (!strstr(err, "instruction budget exceeded") || !strstr(err, "stack traceback"))
            fail_msg("%s: %s", over[i], err);
    }
    /* each call has a budget of its own: a call within it succeeds after the failures */
    lua_getglobal(L, "spin");
    lua_pushinteger(L, 1000);
    assert_int_equal(zt_lua_call(L, NULL, 1, 1, err, sizeof err), ZT_OK);
    assert_int_equal(lua_tointeger(L, -1), 500500);
    lua_settop(L, top);

    /* the memory cap */
    lua_getglobal(L, "bomb");
    assert_int_equal(zt_lua_call(L, NULL, 0, 0, err, sizeof err), ZT_EINVAL);
    assert_int_equal(lua_gettop(L), top);
    assert_non_null(strstr(err, "not enough memory"));
    assert_true(zt__lua_memory(&f->p) == 0); /* a C plugin's state is not p->lua */
    run_ok(L, "small", "return collectgarbage('count') * 1024", 1);
    assert_true(lua_tonumber(L, -1) < MEMORY_CAP / 2); /* the garbage went */
    lua_settop(L, top);

    /* storage only with a work: none, then a writing request's transaction */
    lua_getglobal(L, "get");
    lua_pushstring(L, "a");
    assert_int_equal(zt_lua_call(L, NULL, 1, 1, err, sizeof err), ZT_EINVAL);
    assert_non_null(strstr(err, "no transaction here"));
    assert_int_equal(lua_gettop(L), top);

    zt_db *kv;
    assert_int_equal(zt__store_db(f->srv.store, "t", "kv", &kv), ZT_OK);
    zt_req r = {.srv = &f->srv, .method = "POST", .path = "/x"};
    zt_id(r.id);
    lua_getglobal(L, "put");
    lua_pushstring(L, "a");
    lua_pushstring(L, "written by a script");
    assert_int_equal(zt_lua_call(L, &r, 2, 1, err, sizeof err), ZT_OK);
    assert_true(lua_toboolean(L, -1));
    lua_settop(L, top);
    assert_non_null(r.txn);
    const void *v;
    size_t vlen;
    assert_int_equal(zt_get(r.txn, kv, "a", 1, &v, &vlen), ZT_OK);
    assert_memory_equal(v, "swritten by a script", vlen);
    assert_int_equal(zt__store_end(f->srv.store, r.txn, false), ZT_OK); /* rolled back */
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

static void script_json_both_ways(void **state)
{
    fx *f = *state;
    lua_State *L = script_state(f);
    run_ok(L, "lib",
           "function reshape(v) v.count = #v.list v.list[#v.list + 1] = 'added' return v end\n"
           "function is_null(v) return v == zt.json.null end\n",
           0);
    f->p.in_init = false;
    int top = lua_gettop(L);
    char err[ZT_ERRLEN];
    const char *text = "{\"list\":[1,2.5,\"三\",null,true,{}],\"n\":null,\"o\":{\"a\":{\"b\":[]}},"
                       "\"big\":9007199254740993,\"neg\":-0.125}";
    cJSON *in = cJSON_Parse(text);
    assert_non_null(in);

    zt_lua_push_json(L, in);
    assert_int_equal(lua_gettop(L), top + 1);
    cJSON *back;
    assert_int_equal(zt_lua_to_json(L, -1, &back), ZT_OK);
    assert_int_equal(lua_gettop(L), top + 1);
    assert_true(cJSON_Compare(in, back, 1));
    cJSON_Delete(back);
    lua_settop(L, top);

    /* through a script */
    lua_getglobal(L, "reshape");
    zt_lua_push_json(L, in);
    assert_int_equal(zt_lua_call(L, NULL, 1, 1, err, sizeof err), ZT_OK);
    assert_int_equal(zt_lua_to_json(L, lua_gettop(L), &back), ZT_OK);
    assert_int_equal(cJSON_GetObjectItem(back, "count")->valueint, 6);
    const cJSON *list = cJSON_GetObjectItem(back, "list");
    assert_int_equal(cJSON_GetArraySize(list), 7);
    assert_string_equal(cJSON_GetArrayItem(list, 6)->valuestring, "added");
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(list, 3)));
    assert_true(cJSON_IsArray(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(back, "o"), "a"), "b")));
    cJSON_Delete(back);
    lua_settop(L, top);
    cJSON_Delete(in);

    /* NULL and null are zt.json.null */
    lua_getglobal(L, "is_null");
    zt_lua_push_json(L, NULL);
    assert_int_equal(zt_lua_call(L, NULL, 1, 1, err, sizeof err), ZT_OK);
    assert_true(lua_toboolean(L, -1));
    lua_settop(L, top);

    /* a tree deeper than any parsed JSON can be (built in C) is refused, not followed */
    cJSON *deep = cJSON_CreateArray(), *at = deep;
    for (int i = 0; i < 1100; i++) {
        cJSON *inner = cJSON_CreateArray();
        assert_true(cJSON_AddItemToArray(at, inner));
        at = inner;
    }
    zt_lua_push_json(L, deep);
    assert_int_equal(lua_gettop(L), top + 1);
    assert_true(lua_isnil(L, -1));
    lua_settop(L, top);
    cJSON_Delete(deep);

    /* what JSON cannot carry */
    static const char *const bad[] = {
        "return print",
        "return { 1, 2, x = 3 }",
        "return 0/0",
        "local t = {} t.t = t return t",
        "return { [true] = 1 }",
        "return 'a\\0b'",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_ok(L, "bad", bad[i], 1);
        back = (cJSON *)1;
        assert_int_equal(zt_lua_to_json(L, -1, &back), ZT_EINVAL);
        assert_null(back);
        assert_int_equal(lua_gettop(L), top + 1); /* the value stays */
        lua_settop(L, top);
    }
}

/* ---- events, timers and services: what the Lua side checks itself ---------------------- */

static void bus_functions_check_where_and_what(void **state)
{
    fx *f = *state;
    /* during init: no work, so no transaction */
    static const char *const no_txn[] = {
        "zt.emit('a.b', {})",   "zt.timer.at(0, 'a.b')", "zt.timer.after(10, 'a.b')",
        "zt.timer.cancel('x')", "zt.call('a.b')",
    };
    for (size_t i = 0; i < sizeof no_txn / sizeof no_txn[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "\n%s\n", no_txn[i]);
        init_fails(f, src, ":2: ");
        if (!strstr(f->err, "no transaction here")) fail_msg("%s: %s", no_txn[i], f->err);
    }
    init_fails(f, "zt.on('a.b', 5)", "zt.on: the handler must be a function, not number");
    init_fails(f, "zt.on(5, print)", "zt.on: pattern must be a string, not number");
    /* a pattern says what is wrong with it: its form, or whose topics it names */
    init_fails(f, "zt.on('a..b', print)", "zt.on('a..b'): is not a pattern");
    init_fails(f, "zt.on('a.**.b', print)", "** last for the rest");
    init_fails(f, "zt.on('_other.x', print)", "zt.on('_other.x'): is another plugin's");
    init_fails(f, "zt.provide('t.x', {})", "zt.provide: the handler must be a function, not table");
    init_fails(f, "zt.provide('t\\0x', print)", "zt.provide: name holds a NUL byte");

    /* in a handler: subscribing and providing are over; arguments are checked */
    init_ok(f, "zt.route('POST', '/try', { role = 'public' }, function(req)\n"
               "  local out = {}\n"
               "  for _, fn in ipairs{\n"
               "    function() zt.on('a.b', print) end,\n"
               "    function() zt.provide('t.y', print) end,\n"
               "    function() zt.timer.at('soon', 'a.b') end,\n"
               "    function() zt.timer.at(1.5, 'a.b') end,\n"
               "    function() zt.timer.after(-1, 'a.b') end,\n"
               "    function() zt.timer.after(math.maxinteger, 'a.b') end,\n"
               "    function() zt.emit(7) end,\n"
               "    function() zt.emit('a.b', print) end,\n"
               "    function() zt.timer.cancel(5) end,\n"
               "    function() zt.call('a.b', { 1, x = 2 }) end,\n"
               "    function() zt.emit('_other.topic') end,\n"
               "    function() zt.timer.after(10, '_other.topic') end,\n"
               "    function() zt.emit('a..b') end,\n"
               "  } do\n"
               "    local ok, e = pcall(fn)\n"
               "    out[#out + 1] = ok and 'ok' or e:match('^[^:]*:%d+: (.*)$')\n"
               "  end\n"
               "  local r, msg, code = zt.call('nobody.here', { x = 1 })\n"
               "  out[#out + 1] = tostring(r) .. ', ' .. msg .. ', ' .. code\n"
               "  return 200, table.concat(out, '\\n')\n"
               "end)\n");
    expect(f, "POST", "/try", NULL, 200,
           "zt.on: only during init\n"
           "zt.provide: only during init\n"
           "zt.timer.at: due must be an integer number of milliseconds, not string\n"
           "zt.timer.at: due must be an integer number of milliseconds, not a fraction\n"
           "zt.timer.after: delay must be 0 or more (and not beyond the year 292 million)\n"
           "zt.timer.after: delay must be 0 or more (and not beyond the year 292 million)\n"
           "zt.emit: topic must be a string, not number\n"
           "zt.json.encode: cannot encode a function\n"
           "zt.timer.cancel: id must be a string, not number\n"
           "zt.json.encode: a table mixes keys: use only 1..n (an array) or only strings (an "
           "object)\n"
           "zt.emit: '_other.topic' is another plugin's: a topic that starts with _ is private "
           "to the plugin it names\n"
           "zt.timer.after: '_other.topic' is another plugin's: a topic that starts with _ is "
           "private to the plugin it names\n"
           "zt.emit: 'a..b' is not a topic (1..128 bytes: dot-separated words of letters, digits, "
           "_ and -)\n"
           "nil, zt.call: no enabled plugin provides the service 'nobody.here', not-provided");
}

/* ---- the sandbox ----------------------------------------------------------------------- */

static void sandbox_has_no_way_out(void **state)
{
    fx *f = *state;
    init_ok(f,
            "for _, name in ipairs{ 'io', 'debug', 'package', 'dofile', 'loadfile', 'module',\n"
            "                       'setfenv', 'getfenv', 'loadstring' } do\n"
            "  assert(_G[name] == nil, name .. ' is reachable')\n"
            "end\n"
            "for _, name in ipairs{ 'execute', 'getenv', 'remove', 'rename', 'exit', 'tmpname',\n"
            "                       'setlocale' } do\n"
            "  assert(os[name] == nil, 'os.' .. name .. ' is reachable')\n"
            "end\n"
            "assert(string.dump == nil)\n"
            "assert(not pcall(function() return io.open('/etc/passwd') end))\n"
            "assert(not pcall(function() os.execute('true') end))\n"
            "assert(type(os.time()) == 'number' and type(os.clock()) == 'number')\n"
            "assert(os.date('!%Y', 0) == '1970' and os.difftime(2, 1) == 1)\n"
            "assert(type(string.format) == 'function' and type(table.concat) == 'function')\n"
            "assert(type(math.floor) == 'function' and utf8.len('政通') == 2)\n"
            "assert(coroutine.wrap(function() coroutine.yield(7) end)() == 7)\n"
            "-- finalizers would run outside the budget: refused\n"
            "local ok, e = pcall(setmetatable, {}, { __gc = function() end })\n"
            "assert(not ok and e:find('__gc'), e)\n"
            "assert(getmetatable(setmetatable({}, { __index = { x = 1 } })).__index.x == 1)\n"
            "-- xpcall's handler works as usual within the budget\n"
            "local ok2, e2 = xpcall(error, function(m) return 'handled ' .. m end, 'x', 0)\n"
            "assert(not ok2 and e2 == 'handled x', e2)\n"
            "assert(select('#', xpcall(function(...) return ... end, print, 1, 2)) == 3)\n"
            "local co = coroutine.wrap(function() return xpcall(coroutine.yield, print, 5) end)\n"
            "assert(co() == 5 and co() == true)\n"
            "-- the collector is the node's: only 'count' is allowed\n"
            "assert(type(collectgarbage('count')) == 'number')\n"
            "assert(not pcall(collectgarbage))\n"
            "assert(not pcall(collectgarbage, 'stop'))\n"
            "-- load: text only, with the sandbox as its default environment\n"
            "local f, e = load('\\27Lua\\84\\0\\25\\147\\13\\10\\26\\10')\n"
            "assert(f == nil and e:find('binary'), e)\n"
            "f, e = load('\\27Lua', 'x', 'b')\n"
            "assert(f == nil and e:find('binary'), e)\n"
            "local parts = { '\\27', 'Lua' }\n"
            "f, e = load(function() return table.remove(parts, 1) end)\n"
            "assert(f == nil and e:find('binary'), e)\n"
            "assert(load('return zt')() == zt)\n"
            "assert(load('return x', 'c', 't', { x = 5 })() == 5)\n"
            "assert(load('return io')() == nil)\n");
}

static void require_only_inside_lua(void **state)
{
    fx *f = *state;
    write_file(f, "zt/util.lua", "local n = ... ; return { x = 1, name = n, io = io }\n");
    write_file(f, "zt/deep/mod.lua", "return 'deep'\n");
    write_file(f, "plugins/t/helper.lua", "return function() return zt.plugin end\n");
    write_file(f, "plugins/other/mod.lua", "return 'other'\n");
    write_file(f, "plugins/t/loop.lua", "return require 't.loop'\n");
    write_file(f, "plugins/t/broken.lua", "return {\n");
    write_file(f, "secret.lua", "return 'secret'\n");
    init_ok(f, "local u = require 'zt.util'\n"
               "assert(u.x == 1 and u.name == 'zt.util' and u.io == nil)\n"
               "assert(require 'zt.util' == u, 'modules are cached')\n"
               "assert(require 'zt.deep.mod' == 'deep')\n"
               "assert(require 't.helper'() == 't')\n"
               "assert(require 'other.mod' == 'other')\n"
               "assert(require 'zt' == zt and require 'string' == string)\n"
               "for _, n in ipairs{ 'secret', '../secret', 'zt/../secret', 'zt..secret',\n"
               "    'zt.../secret', '/etc/passwd', 'zt./etc/passwd', 'zt.', '.zt', 'io', 'os.x',\n"
               "    'debug', 'package', 't.nope', 'zt.util/../../secret', 'zt.a b', '' } do\n"
               "  local ok, e = pcall(require, n)\n"
               "  assert(not ok, 'require ' .. n .. ' worked')\n"
               "end\n"
               "local ok, e = pcall(require, 't.loop')\n"
               "assert(not ok and e:find('loop'), e)\n"
               "ok, e = pcall(require, 't.broken')\n"
               "assert(not ok and e:find('broken.lua:2'), e)\n");
}

/* ---- manifest.lua ---------------------------------------------------------------------- */

static int manifest(fx *f, const char *text)
{
    write_file(f, "plugins/t/manifest.lua", text);
    manifest_free(&f->p);
    f->err[0] = 0;
    return zt__lua_manifest(&f->srv, &f->p, f->err, sizeof f->err);
}

static const zt_option *opt(fx *f, const char *name)
{
    for (size_t i = 0; i < f->p.noptions; i++)
        if (strcmp(f->p.options[i].name, name) == 0) return &f->p.options[i];
    fail_msg("no option %s", name);
    return NULL;
}

static void manifest_reads_every_type(void **state)
{
    fx *f = *state;
    int rc =
        manifest(f, "-- a manifest\n"
                    "return {\n"
                    "  version = '2.1.0',\n"
                    "  description = 'a test plugin',\n"
                    "  requires = { 'workflow', 'credit' },\n"
                    "  options = {\n"
                    "    page_size = { type = 'integer', default = 20, description = 'rows' },\n"
                    "    whole = { type = 'integer', default = 3.0 },\n"
                    "    ratio = { type = 'number', default = 0.1 },\n"
                    "    big = { type = 'number', default = 1e300 },\n"
                    "    greeting = { type = 'string', default = '你好' },\n"
                    "    on = { type = 'boolean', default = false },\n"
                    "    roles = { type = 'list', default = { 'a', 'b', 'c' } },\n"
                    "    none = { type = 'list', default = {} },\n"
                    "    secret = { type = 'string', required = true },\n"
                    "    maybe = { type = 'number' },\n"
                    "  },\n"
                    "}\n");
    if (rc != ZT_OK) fail_msg("%s", f->err);
    assert_string_equal(f->p.version, "2.1.0");
    assert_string_equal(f->p.description, "a test plugin");
    assert_int_equal(f->p.nrequires, 2);
    assert_string_equal(f->p.requires[0], "workflow");
    assert_string_equal(f->p.requires[1], "credit");
    assert_null(f->p.requires[2]);
    assert_int_equal(f->p.noptions, 10);
    assert_null(f->p.options[10].name);        /* terminated */
    for (size_t i = 1; i < f->p.noptions; i++) /* sorted by name */
        assert_true(strcmp(f->p.options[i - 1].name, f->p.options[i].name) < 0);
    assert_int_equal(opt(f, "page_size")->type, ZT_OPT_INT);
    assert_string_equal(opt(f, "page_size")->def, "20");
    assert_string_equal(opt(f, "page_size")->description, "rows");
    assert_string_equal(opt(f, "whole")->def, "3");
    assert_int_equal(opt(f, "ratio")->type, ZT_OPT_NUMBER);
    assert_true(strtod(opt(f, "ratio")->def, NULL) == 0.1);
    assert_true(strtod(opt(f, "big")->def, NULL) == 1e300);
    assert_int_equal(opt(f, "greeting")->type, ZT_OPT_STRING);
    assert_string_equal(opt(f, "greeting")->def, "你好");
    assert_int_equal(opt(f, "on")->type, ZT_OPT_BOOL);
    assert_string_equal(opt(f, "on")->def, "false");
    assert_int_equal(opt(f, "roles")->type, ZT_OPT_LIST);
    assert_string_equal(opt(f, "roles")->def, "a,b,c");
    assert_string_equal(opt(f, "none")->def, "");
    assert_null(opt(f, "secret")->def);
    assert_int_equal(opt(f, "secret")->required, 1);
    assert_int_equal(opt(f, "page_size")->required, 0);
    assert_null(opt(f, "maybe")->def);
    assert_null(opt(f, "maybe")->description);

    /* the least a manifest says */
    rc = manifest(f, "return { version = '0.1' }");
    if (rc != ZT_OK) fail_msg("%s", f->err);
    assert_int_equal(f->p.noptions, 0);
    assert_null(f->p.options[0].name);
    assert_int_equal(f->p.nrequires, 0);
    assert_string_equal(f->p.description, "");
}

static void manifest_errors_name_the_line(void **state)
{
    fx *f = *state;
    static const struct {
        const char *text;
        const char *want; /* after "<path>" */
    } cases[] = {
        {"return {\n  version = '1',\n  options = {\n    a = { type = 'integr' },\n  },\n}\n",
         ":4: options.a: unknown type 'integr'"},
        {"return {\n  version = '1',\n  options = {\n    a = {\n      type = 'integer',\n"
         "      default = 'x',\n    },\n  },\n}\n",
         ":6: options.a.default must be an integer, not a string"},
        {"return {\n  version = '1',\n  options = { n = { type = 'integer', default = 1.5 } "
         "},\n}\n",
         ":3: options.n.default must be an integer, not a number"},
        {"return {\n  version = '1',\n  colour = 'red',\n}\n", ":3: unknown key 'colour'"},
        {"-- no version\n\nreturn {\n  description = 'x',\n}\n", ":3: version must be"},
        {"return {\n  version = '1',\n  requires = 'workflow',\n}\n",
         ":3: requires must be a list"},
        {"return {\n  version = '1',\n  requires = { 'a', 7 },\n}\n", ":3: requires: item 2"},
        {"return {\n  version = '1',\n  requires = { '../x' },\n}\n", ":3: requires: '../x'"},
        {"return {\n  version = '1',\n  options = {\n    a = 5,\n  },\n}\n",
         ":4: options.a must be a table"},
        {"return {\n  version = '1',\n  options = {\n    a = { type = 'list', default = { 1 } },\n"
         "  },\n}\n",
         ":4: options.a.default: item 1 is a number"},
        {"return {\n  version = '1',\n  options = {\n    a = { type = 'list', default = { 'x,y' } "
         "},\n"
         "  },\n}\n",
         ":4: options.a.default: item 1 has a comma"},
        {"return {\n  version = '1',\n  options = {\n    a = {\n      type = 'string',\n"
         "      required = true,\n      default = 'x',\n    },\n  },\n}\n",
         ":7: options.a: an option with a default cannot be required"},
        {"return {\n  version = '1',\n  options = { a = { type = 'string', colour = 1 } },\n}\n",
         ":3: unknown key 'colour' in options.a"},
        {"return {\n  version = '1',\n  options = {\n    ['bad name'] = { type = 'string' },\n"
         "  },\n}\n",
         ":3: option name 'bad name' is not a name"},
        {"\n\nreturn 'nope'\n", ":3: manifest.lua must return a table"},
        {"local x = 1\n", ":1: manifest.lua must return a table (it returned nothing)"},
        {"return {\n  version = '1',\n  x = = 2,\n}\n", ":3: unexpected symbol"},
        {"local t = {}\nreturn { version = t.a.b }\n", ":2: attempt to index a nil value"},
        {"-- the manifest sandbox is empty\nreturn { version = os.getenv('HOME') }\n",
         ":2: attempt to index a nil value (global 'os')"},
        {"local s = 'x'\nwhile true do s = s end\n", ":2: instruction budget exceeded"},
        {"local t = {}\nfor i = 1, 1e9 do t[i] = i end\n", "not enough memory"},
    };
    char path[256];
    snprintf(path, sizeof path, "%s/plugins/t/manifest.lua", f->lua);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (manifest(f, cases[i].text) == ZT_OK) fail_msg("case %zu was accepted", i);
        assert_null(f->p.options);
        assert_null(f->p.version);
        if (strncmp(f->err, path, strlen(path)) != 0 || !strstr(f->err, cases[i].want))
            fail_msg("case %zu: \"%s\" is not \"%s%s…\"", i, f->err, path, cases[i].want);
    }
    /* no manifest at all */
    f->p.name = "absent";
    assert_int_equal(zt__lua_manifest(&f->srv, &f->p, f->err, sizeof f->err), ZT_ENOTFOUND);
    assert_non_null(strstr(f->err, "absent/manifest.lua"));
    f->p.name = "t";
}

static void manifest_needs_and_wants(void **state)
{
    fx *f = *state;
    int rc = manifest(f, "return {\n"
                         "  version = '1',\n"
                         "  needs = { 'credit.check', 'people.find-by_id' },\n"
                         "  wants = { 'sms.send' },\n"
                         "}\n");
    if (rc != ZT_OK) fail_msg("%s", f->err);
    assert_int_equal(f->p.nneeds, 2);
    assert_string_equal(f->p.needs[0], "credit.check");
    assert_string_equal(f->p.needs[1], "people.find-by_id");
    assert_null(f->p.needs[2]); /* terminated, as the descriptor's are */
    assert_int_equal(f->p.nwants, 1);
    assert_string_equal(f->p.wants[0], "sms.send");
    assert_null(f->p.wants[1]);

    rc = manifest(f, "return { version = '1' }");
    if (rc != ZT_OK) fail_msg("%s", f->err);
    assert_int_equal(f->p.nneeds, 0);
    assert_int_equal(f->p.nwants, 0);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"return {\n  version = '1',\n  needs = 'credit.check',\n}\n",
         ":3: needs must be a list of service names"},
        {"return {\n  version = '1',\n  wants = { 'a.b', 5 },\n}\n",
         ":3: wants: item 2 is a number"},
        {"return {\n  version = '1',\n  needs = { 'credit check' },\n}\n",
         ":3: needs: 'credit check' is not a service name"},
        {"return {\n  version = '1',\n  needs = { '' },\n}\n",
         ":3: needs: '' is not a service name"},
        {"return {\n  version = '1',\n  wants = { 'x/y' },\n}\n", ":3: wants: 'x/y' is not"},
        {"return {\n  version = '1',\n  needs = { a = 'b.c' },\n}\n",
         ":3: needs must be a list of strings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (manifest(f, bad[i].text) == ZT_OK) fail_msg("case %zu was accepted", i);
        assert_null(f->p.needs);
        assert_null(f->p.wants);
        if (!strstr(f->err, bad[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, f->err, bad[i].want);
    }
}

/* ---- limits ---------------------------------------------------------------------------- */

static void budget_stops_endless_loops(void **state)
{
    fx *f = *state;
    init_fails(f, "local n = 0\nwhile true do n = n + 1 end\n",
               "init.lua:2: instruction budget exceeded");
    /* catching the error does not help: it comes back at the next instruction */
    init_fails(f,
               "while true do\n"
               "  pcall(function() while true do end end)\n"
               "end\n",
               "instruction budget exceeded");
    init_fails(f, "while true do pcall(error, 'x') end\n", "instruction budget exceeded");
    init_fails(f,
               "local function h() while true do end end\n"
               "while true do xpcall(function() while true do end end, h) end\n",
               "instruction budget exceeded");
    init_fails(f,
               "local co = coroutine.wrap(function()\n"
               "  while true do pcall(function() while true do end end) end\n"
               "end)\n"
               "while true do pcall(co) end\n",
               "instruction budget exceeded");
    init_fails(f,
               "local t = setmetatable({}, { __index = function(t, k) return t[k + 1] end })\n"
               "while true do pcall(function() return t[1] end) end\n",
               "instruction budget exceeded");
    /* a coroutine stopped by the budget has its <close> handlers run under the budget too */
    init_fails(
        f,
        "local f = coroutine.wrap(function()\n"
        "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
        "  while true do end\n"
        "end)\n"
        "f()\n",
        "instruction budget exceeded");
    init_fails(
        f,
        "local co = coroutine.create(function()\n"
        "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
        "  table.sort({ 3, 2, 1 }, function(a, b) while true do end end)\n"
        "end)\n"
        "while true do pcall(coroutine.resume, co) pcall(coroutine.close, co) end\n",
        "instruction budget exceeded");
    /* a finite loop within the budget runs to its end */
    init_ok(f, "local n = 0\nfor i = 1, 10000 do n = n + i end\nassert(n == 50005000)\n");
}

static void memory_cap_stops_a_bomb(void **state)
{
    fx *f = *state;
    init_fails(f, "local t = {}\nfor i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end\n",
               "not enough memory");
    init_fails(f, "local s = ('x'):rep(64 * 1024 * 1024)\n", "not enough memory");
    /* caught, the bomb's garbage is collected and the state works on */
    init_ok(f, "local ok, e = pcall(function()\n"
               "  local t = {}\n"
               "  for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end\n"
               "end)\n"
               "assert(not ok and tostring(e):find('not enough memory'), tostring(e))\n"
               "local after = {}\n"
               "for i = 1, 10000 do after[i] = tostring(i) end\n"
               "assert(#after == 10000 and after[10000] == '10000')\n"
               "assert(collectgarbage('count') * 1024 <= 4194304)\n");
    assert_true(zt__lua_memory(&f->p) > 0);
    assert_true(zt__lua_memory(&f->p) <= MEMORY_CAP);
}

/* The node's log (stderr) at level info, caught into a file while a test runs. */
typedef struct logcap {
    FILE *file;
    int saved_fd, level;
} logcap;

static void log_capture(fx *f, logcap *c)
{
    char path[160];
    snprintf(path, sizeof path, "%s/stderr", f->root);
    fflush(stderr);
    c->saved_fd = dup(2);
    c->file = fopen(path, "w+");
    assert_non_null(c->file);
    dup2(fileno(c->file), 2);
    c->level = zt__log_level;
    zt__log_level = ZT_LOG_INFO;
}

/* Stop catching; what was logged into buf (NUL-terminated). */
static void log_captured(logcap *c, char *buf, size_t cap)
{
    zt__log_level = c->level;
    fflush(stderr);
    dup2(c->saved_fd, 2);
    close(c->saved_fd);
    rewind(c->file);
    size_t n = fread(buf, 1, cap - 1, c->file);
    buf[n] = 0;
    fclose(c->file);
    assert_true(n > 0);
}

/* ---- zt.log, print, warn -------------------------------------------------------------- */

static void logs_go_to_the_node_log(void **state)
{
    fx *f = *state;
    logcap lc;
    log_capture(f, &lc);
    int rc = init_plugin(f, "zt.log.info('%d notices, %s', 3, 'ok')\n"
                            "zt.log.warn('100% literal')\n"
                            "zt.log.debug('below the level')\n"
                            "zt.log.error({})\n"
                            "print('a', 1, nil)\n"
                            "warn('careful', ' now')\n"
                            "assert(pcall(zt.log.info, '%d', 'x'))\n"
                            "zt.log.warn({}, 2)\n");
    char buf[4096];
    log_captured(&lc, buf, sizeof buf);
    if (rc != ZT_OK) fail_msg("%s", f->err);
    assert_non_null(strstr(buf, "\"level\":\"info\",\"plugin\":\"t\",\"msg\":\"3 notices, ok\""));
    assert_non_null(strstr(buf, "\"level\":\"warn\",\"plugin\":\"t\",\"msg\":\"100% literal\""));
    assert_null(strstr(buf, "below the level"));
    assert_non_null(strstr(buf, "\"level\":\"error\",\"plugin\":\"t\",\"msg\":\"table: "));
    assert_non_null(strstr(buf, "\"msg\":\"a\\t1\\tnil\""));
    assert_non_null(strstr(buf, "\"msg\":\"Lua warning: careful now\""));
    /* a log line with a bad format never fails its caller: it says so, with where */
    assert_non_null(strstr(buf, "zt.log.info: the format and its values do not match: bad "
                                "argument #2 to 'zt.log.info' (number expected, got string) (the "
                                "line was not logged)"));
    assert_non_null(strstr(buf, "init.lua:8: zt.log.warn: with more than one argument the first "
                                "must be a format string"));
}

/* Every log line is UTF-8 JSON, whatever bytes a plugin logs: those that are not UTF-8 are
 * U+FFFD. */
static void log_lines_are_utf8(void **state)
{
    fx *f = *state;
    open_core(f);
    logcap lc;
    log_capture(f, &lc);
    int rc = init_plugin(f, "print('\\255\\254 bytes, 正 \\228\\184 cut')\n"
                            "print(zt.crypto.encrypt('f', 'x'))\n"
                            "zt.log.warn('%s', zt.crypto.hash('x'))\n");
    char buf[8192];
    log_captured(&lc, buf, sizeof buf);
    if (rc != ZT_OK) fail_msg("%s", f->err);
    if (!zt__utf8_ok(buf, strlen(buf))) fail_msg("not UTF-8: %s", buf);
    assert_non_null(
        strstr(buf, "\"msg\":\"\xEF\xBF\xBD\xEF\xBF\xBD bytes, 正 \xEF\xBF\xBD\xEF\xBF\xBD cut\""));
    for (char *line = buf, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        if (!j) fail_msg("not JSON: %s", line);
        cJSON_Delete(j);
    }
}

/* A handler's mistakes are logged with the plugin's file and line, also those found after
 * it returned (a body that cannot be JSON) and a key of the wrong type. */
static void handler_mistakes_name_their_line(void **state)
{
    fx *f = *state;
    init_ok(f, "local kv = zt.db.open('kv')\n"
               "zt.route('GET', '/badjson', function()\n"
               "  return 200, { ok = true, f = print }\n"
               "end)\n"
               "zt.route('GET', '/numkey', function() return 200, tostring(kv:get(5)) end)\n"
               "zt.route('GET', '/r/:n', function(req)\n"
               "  local n = req.params.n\n"
               "  if n == '1' then return 204, 'x' end\n"
               "  if n == '2' then return '201', { a = 1 } end\n"
               "  if n == '3' then return 418, {} end\n"
               "  if n == '4' then return 200, 42 end\n"
               "  if n == '5' then return 200, 'x', { ['X-A'] = 'a\\nb' } end\n"
               "  if n == '6' then return 200, 'x', { ['Content-Length'] = '1' } end\n"
               "  return 200, 'x', 5\n"
               "end)\n");
    logcap lc;
    log_capture(f, &lc);
    expect_problem(f, "GET", "/badjson", NULL, 500, "lua-error", NULL);
    expect_problem(f, "GET", "/numkey", NULL, 500, "lua-error", NULL);
    for (int i = 1; i <= 7; i++) {
        char target[16];
        snprintf(target, sizeof target, "/r/%d", i);
        expect_problem(f, "GET", target, NULL, 500, "lua-error", NULL);
    }
    char buf[16384];
    log_captured(&lc, buf, sizeof buf);
    assert_non_null(strstr(buf, "init.lua:2: the body the handler of GET /badjson returned: "
                                "zt.json.encode: cannot encode a function"));
    assert_non_null(strstr(buf, "init.lua:5: db: a key must be a string, not number"));
    /* what a handler returned is checked after it returned: the line is the handler's */
    const char *want[] = {
        "init.lua:6: the handler returned a body with status 204",
        "init.lua:6: the handler returned 201 (a string) as status",
        "init.lua:6: the handler returned a table with status 418",
        "init.lua:6: the handler returned a number as body",
        "init.lua:6: response header 'X-A'",
        "init.lua:6: response header 'Content-Length'",
        "init.lua:6: the handler returned a number as headers",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(buf, want[i])) fail_msg("the log does not say \"%s\":\n%s", want[i], buf);
}

/* ---- zt.json --------------------------------------------------------------------------- */

static const char *json_lua =
    "local function same(a, b, path)\n"
    "  path = path or 'v'\n"
    "  if type(a) ~= type(b) then error(path .. ': ' .. type(a) .. ' vs ' .. type(b)) end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b or math.type(a) ~= math.type(b) then\n"
    "      error(path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  if a == zt.json.null or b == zt.json.null then assert(a == b, path) return end\n"
    "  for k, v in pairs(a) do same(v, b[k], path .. '.' .. tostring(k)) end\n"
    "  for k in pairs(b) do assert(a[k] ~= nil, path .. '.' .. tostring(k) .. ' extra') end\n"
    "end\n"
    "local v = {\n"
    "  s = '政通人和 😀 \"quoted\" \\\\ \\n tab\\t',\n"
    "  i = 42, neg = -7, f = 1.5, tiny = 1e-300, ms = 1700000000123,\n"
    "  big = math.maxinteger,\n"
    "  yes = true, no = false, nothing = zt.json.null,\n"
    "  arr = { 1, 'two', { three = 3 }, zt.json.null, { 5, { 6 } } },\n"
    "  empty_obj = {}, empty_arr = zt.json.array(),\n"
    "  nested = { a = { b = { c = { d = { 'deep' } } } } },\n"
    "  ['key with 空格'] = 'k',\n"
    "}\n"
    "local text = zt.json.encode(v)\n"
    "local back = zt.json.decode(text)\n"
    "-- integers beyond 2^53 come back as floats; everything else as it went\n"
    "assert(back.big == math.maxinteger * 1.0 and math.type(back.big) == 'float')\n"
    "back.big, v.big = nil, nil\n"
    "same(v, back)\n"
    "assert(zt.json.encode(back) == zt.json.encode(v), 'the same table, the same text')\n"
    "assert(zt.json.encode({ b = 1, a = 2, c = { z = 1, y = 2 } }) ==\n"
    "       '{\"a\":2,\"b\":1,\"c\":{\"y\":2,\"z\":1}}')\n"
    "assert(getmetatable(back.arr) == false, 'arrays are marked')\n"
    "assert(zt.json.encode(back.empty_arr) == '[]' and zt.json.encode(back.empty_obj) == '{}')\n"
    "assert(zt.json.encode({}) == '{}')\n"
    "assert(zt.json.encode(zt.json.array()) == '[]')\n"
    "assert(zt.json.encode({ 1, 2, 3 }) == '[1,2,3]')\n"
    "assert(zt.json.encode(zt.json.array({ 'a' })) == '[\"a\"]')\n"
    "assert(zt.json.encode(zt.json.null) == 'null' and zt.json.encode(nil) == 'null')\n"
    "assert(zt.json.encode(math.maxinteger) == '9223372036854775807')\n"
    "assert(zt.json.encode(1700000000123) == '1700000000123')\n"
    "assert(zt.json.encode('政') == '\"政\"')\n"
    "assert(zt.json.decode('\"\\\\u6b63\\\\ud83d\\\\ude00\"') == '正😀')\n"
    "local a = zt.json.decode('[1, null, 3]')\n"
    "assert(#a == 3 and a[2] == zt.json.null and a[3] == 3)\n"
    "assert(math.type(zt.json.decode('2.0')) == 'integer')\n"
    "assert(zt.json.decode('2.5') == 2.5)\n"
    "assert(zt.json.decode(' {\"a\": [true, false]} ').a[2] == false)\n"
    "assert(tostring(zt.json.null) == 'null')\n"
    "assert(not pcall(function() zt.json.null.x = 1 end))\n";

static void json_round_trip(void **state)
{
    fx *f = *state;
    init_ok(f, json_lua);
}

static void json_refuses_what_is_not_json(void **state)
{
    fx *f = *state;
    init_ok(f,
            "local function bad(f, want)\n"
            "  local ok, e = pcall(f)\n"
            "  assert(not ok and e:find(want, 1, true), tostring(e))\n"
            "end\n"
            "local enc, dec = zt.json.encode, zt.json.decode\n"
            "bad(function() enc({ 1, nil, 3 }) end, 'mixes keys')\n"
            "bad(function() enc({ 1, x = 2 }) end, 'mixes keys')\n"
            "bad(function() enc({ [true] = 1 }) end, 'mixes keys')\n"
            "bad(function() enc({ [1.5] = 1 }) end, 'mixes keys')\n"
            "bad(function() enc(print) end, 'cannot encode a function')\n"
            "bad(function() enc({ f = coroutine.create(print) }) end, 'cannot encode a thread')\n"
            "bad(function() enc(0/0) end, 'NaN')\n"
            "bad(function() enc(math.huge) end, 'infinity')\n"
            "bad(function() enc('\\255') end, 'UTF-8')\n"
            "bad(function() enc('a\\0b') end, 'NUL')\n"
            "bad(function() enc({ ['\\192'] = 1 }) end, 'UTF-8')\n"
            "local t = {} t.self = t\n"
            "bad(function() enc(t) end, 'nested deeper')\n"
            "for _, s in ipairs{ '', '{', '[1,', '{} x', 'nul', \"{'a':1}\", '[1]]' } do\n"
            "  bad(function() dec(s) end, 'not valid JSON')\n"
            "end\n"
            "bad(function() dec('\"\\\\u0000\"') end, 'NUL')\n"
            "bad(function() dec('\"\\\\ud800\"') end, 'unpaired surrogate')\n"
            "bad(function() dec('\"\\\\udc00x\"') end, 'unpaired surrogate')\n"
            "bad(function() local _ = dec('\"a\\\\tb\"') and dec('\"a\tb\"') end, 'control "
            "character')\n"
            "bad(function() dec('\"\255\"') end, 'UTF-8')\n"
            "bad(function() dec('{\"a\":1,\"a\":2}') end, 'appears twice')\n"
            "bad(function() dec(('['):rep(1001) .. (']'):rep(1001)) end, 'deeper than 1000')\n"
            "assert(dec('\"\\\\ud83d\\\\ude00\"') == '\\240\\159\\152\\128')\n"
            "assert(#dec(('['):rep(1000) .. (']'):rep(1000)) == 1)\n"
            "assert(enc(5000000000000001) == '5000000000000001')\n"
            "assert(enc(2^53) == '9007199254740992')\n"
            "assert(enc(0.1 + 0.2) == '0.30000000000000004')\n"
            "assert(dec(enc(1/3)) == 1/3)\n"
            "bad(function() zt.json.array(setmetatable({}, {})) end, 'metatable')\n");
}

/* The text the node writes from Lua (responses, zt.json.encode, db:put) must be what
 * zt_json_print writes for the same value as a cJSON tree: each number and string here is
 * encoded by the node, and the same value is put into a tree (integers within 2^53 as
 * doubles, larger ones as raw text) and printed by zt_json_print, as C plugins' answers
 * are. (zt_json_print's own exactness: test_util.) */
static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void json_text_is_what_c_prints(void **state)
{
    fx *f = *state;
    static const double specials[] = {0.0,
                                      -0.0,
                                      1.0,
                                      -1.0,
                                      0.5,
                                      0.1,
                                      0.1 + 0.2,
                                      1.0 / 3,
                                      2.0 / 3,
                                      1e-300,
                                      5e-324,
                                      1.7976931348623157e308,
                                      2147483647.0,
                                      2147483648.0,
                                      -2147483648.0,
                                      -2147483649.0,
                                      2147483647.5,
                                      1e15,
                                      1e16,
                                      1e21,
                                      123456789012345678.0,
                                      9007199254740992.0,
                                      9007199254740993.0,
                                      -9007199254740991.0,
                                      3.14159,
                                      -2.5e-7,
                                      1e-7,
                                      100.0,
                                      1e9,
                                      1.5e9};
    static const long long ints[] = {0,
                                     1,
                                     -1,
                                     42,
                                     2147483647LL,
                                     2147483648LL,
                                     -2147483648LL,
                                     -2147483649LL,
                                     999999999999999LL,
                                     1000000000000000LL,
                                     1000000000000001LL,
                                     1234567890123456LL,
                                     9007199254740991LL,
                                     9007199254740992LL,
                                     -9007199254740992LL,
                                     9007199254740993LL,
                                     -9007199254740993LL,
                                     1700000000123LL,
                                     INT64_MAX,
                                     INT64_MIN};
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    zt_buf lua = {0};
    cJSON *want = cJSON_CreateArray();
    assert_non_null(want);
    assert_int_equal(zt__buf_puts(&lua, "local values = zt.json.array()\n"
                                        "local function d(s) values[#values + 1] = tonumber(s) "
                                        "assert(math.type(values[#values]) == 'float', s) end\n"
                                        "local function i(s) values[#values + 1] = tonumber(s) "
                                        "assert(math.type(values[#values]) == 'integer', s) end\n"
                                        "local function s(...) values[#values + 1] = "
                                        "string.char(...) end\n"
                                        "local function sl(t) s(table.unpack(t)) end\n"),
                     ZT_OK);
    size_t nd = sizeof specials / sizeof specials[0];
    for (size_t k = 0; k < nd + 3000; k++) {
        double d;
        if (k < nd) {
            d = specials[k];
        } else if (k % 3 == 0) { /* any finite double */
            uint64_t bits = xorshift(&seed);
            memcpy(&d, &bits, sizeof d);
            if (!isfinite(d)) continue;
        } else if (k % 3 == 1) { /* short decimals, where 15 and 17 digits part */
            d = (double)(int64_t)(xorshift(&seed) % 2000000001) / 1000.0 - 1e6;
        } else { /* integral values around and beyond int */
            d = (double)((int64_t)xorshift(&seed) >> (xorshift(&seed) % 60));
        }
        assert_int_equal(zt__buf_printf(&lua, "d('%a')\n", d), ZT_OK);
        cJSON_AddItemToArray(want, cJSON_CreateNumber(d));
    }
    size_t ni = sizeof ints / sizeof ints[0];
    for (size_t k = 0; k < ni + 1000; k++) {
        long long v =
            k < ni ? ints[k] : (long long)((int64_t)xorshift(&seed) >> (xorshift(&seed) % 63));
        assert_int_equal(zt__buf_printf(&lua, "i('%lld')\n", v), ZT_OK);
        if (v >= -9007199254740992LL && v <= 9007199254740992LL) {
            cJSON_AddItemToArray(want, cJSON_CreateNumber((double)v));
        } else {
            char raw[32];
            snprintf(raw, sizeof raw, "%lld", v);
            cJSON_AddItemToArray(want, cJSON_CreateRaw(raw));
        }
    }
    /* every ASCII character alone, then runs of them between other text */
    for (int c = 1; c < 128; c++) {
        assert_int_equal(zt__buf_printf(&lua, "s(%d)\n", c), ZT_OK);
        char one[2] = {(char)c, 0};
        cJSON_AddItemToArray(want, cJSON_CreateString(one));
    }
    char all[300];
    size_t n = 0;
    assert_int_equal(zt__buf_puts(&lua, "sl{"), ZT_OK);
    for (int c = 1; c < 128; c++) {
        assert_int_equal(zt__buf_printf(&lua, "%d, 120, ", c), ZT_OK);
        all[n++] = (char)c;
        all[n++] = 'x';
    }
    all[n] = 0;
    assert_int_equal(zt__buf_puts(&lua, "0xe6, 0x94, 0xbf, 0xf0, 0x9f, 0x98, 0x80}\n"), ZT_OK);
    strcat(all, "\xe6\x94\xbf\xf0\x9f\x98\x80");
    cJSON_AddItemToArray(want, cJSON_CreateString(all));
    assert_int_equal(zt__buf_puts(&lua,
                                  "zt.route('GET', '/values', function() return 200, values end)\n"
                                  "zt.route('GET', '/text', function()\n"
                                  "  return 200, zt.json.encode(values)\n"
                                  "end)\n"),
                     ZT_OK);
    init_ok(f, lua.data);
    char *text = zt_json_print(want);
    assert_non_null(text);
    treq *t = call(f, "GET", "/values", NULL, NULL, NULL);
    assert_int_equal(t->r.status, 200);
    assert_string_equal(t->r.res_ctype, "application/json");
    const char *got = body_of(t);
    if (strcmp(got, text) != 0) { /* name the first value that differs */
        size_t at = 0;
        while (got[at] == text[at]) at++;
        while (at > 0 && text[at - 1] != ',') at--;
        fail_msg("node: %.60s\ncJSON: %.60s", got + at, text + at);
    }
    done(t);
    expect(f, "GET", "/text", NULL, 200, text);
    free(text);
    cJSON_Delete(want);
    zt__buf_free(&lua);
}

/* An object of n keys "k1".."kn", sorted as the node sorts them, each value an object of
 * 3 such keys down to depth 0, where the value is the key's number. */
static cJSON *keyed(int n, int depth)
{
    char names[64][16];
    const char *order[64];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i + 1);
        order[i] = names[i];
    }
    for (int i = 1; i < n; i++) /* byte order: k1, k10, k11, ..., k2, ... */
        for (int j = i; j > 0 && strcmp(order[j - 1], order[j]) > 0; j--) {
            const char *x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToObject(
            o, order[i], depth > 0 ? keyed(3, depth - 1) : cJSON_CreateNumber(atoi(order[i] + 1)));
    return o;
}

static void json_objects_sort_their_keys(void **state)
{
    fx *f = *state;
    init_ok(
        f,
        "local function keyed(n, depth)\n"
        "  local t = {}\n"
        "  for i = 1, n do t['k' .. i] = depth > 0 and keyed(3, depth - 1) or i end\n"
        "  return t\n"
        "end\n"
        "local doc = { small = keyed(5, 2), large = keyed(40, 1),\n"
        "  list = { keyed(17, 0), keyed(16, 0), keyed(1, 0), {}, zt.json.array() },\n"
        "  esc = { ['a\"b'] = 1, ['a\\\\b'] = 2, ['\\n'] = 3, ['é'] = 4, Z = 5, [''] = 6 } }\n"
        "local bad = {}\n"
        "for i = 1, 20 do bad['k' .. i] = i end\n"
        "bad[21] = 21\n"
        "local function fails(v, want)\n"
        "  local ok, e = pcall(zt.json.encode, v)\n"
        "  assert(not ok and e:find(want, 1, true), tostring(e))\n"
        "end\n"
        "fails(bad, 'mixes keys')\n"
        "bad[21] = nil\n"
        "bad['\\255'] = 1\n"
        "fails(bad, 'key is not valid UTF-8')\n"
        "bad['\\255'] = nil\n"
        "bad.k20 = { f = print }\n"
        "fails(bad, 'cannot encode a function')\n"
        "local kv = zt.db.open('kv')\n"
        "zt.route('GET', '/doc', function() return 200, doc end)\n"
        "zt.route('PUT', '/doc', function(req)\n"
        "  assert(not pcall(kv.put, kv, 'bad', { 1, { f = print } }))\n"
        "  kv:put('doc', doc)\n"
        "  assert(not pcall(kv.put, kv, 'bad', bad))\n"
        "  return 200, zt.json.encode(kv:get('doc')) == zt.json.encode(doc) and 'same' or 'not'\n"
        "end)\n"
        "zt.route('GET', '/raw', function()\n"
        "  return 200, { doc = doc }, { ['Content-Type'] = 'application/x.doc+json' }\n"
        "end)\n");
    cJSON *want = cJSON_CreateObject();
    cJSON *esc = cJSON_CreateObject();
    const char *ekeys[] = {"", "\n", "Z", "a\"b", "a\\b", "é"};
    for (int i = 0; i < 6; i++) {
        static const int val[] = {6, 3, 5, 1, 2, 4};
        cJSON_AddItemToObject(esc, ekeys[i], cJSON_CreateNumber(val[i]));
    }
    cJSON_AddItemToObject(want, "esc", esc);
    cJSON_AddItemToObject(want, "large", keyed(40, 1));
    cJSON *list = cJSON_CreateArray();
    cJSON_AddItemToArray(list, keyed(17, 0));
    cJSON_AddItemToArray(list, keyed(16, 0));
    cJSON_AddItemToArray(list, keyed(1, 0));
    cJSON_AddItemToArray(list, cJSON_CreateObject());
    cJSON_AddItemToArray(list, cJSON_CreateArray());
    cJSON_AddItemToObject(want, "list", list);
    cJSON_AddItemToObject(want, "small", keyed(5, 2));
    char *text = cJSON_PrintUnformatted(want);
    assert_non_null(text);
    expect(f, "GET", "/doc", NULL, 200, text);
    expect(f, "PUT", "/doc", NULL, 200, "same");
    treq *t = call(f, "GET", "/raw", NULL, NULL, NULL);
    assert_string_equal(t->r.res_ctype, "application/x.doc+json");
    assert_int_equal(strncmp(body_of(t), "{\"doc\":", 7), 0);
    assert_int_equal(strncmp(body_of(t) + 7, text, strlen(text)), 0);
    done(t);
    /* stored as JSON text after its tag byte, the same text */
    zt_db *db;
    f->p.in_init = true; /* opening the same name again gives the same database */
    assert_int_equal(zt_db_open(&f->p, "kv", &db), ZT_OK);
    f->p.in_init = false;
    zt_txn *tx;
    assert_int_equal(zt__store_read_begin(f->srv.store, &tx), ZT_OK);
    const void *v;
    size_t vlen;
    assert_int_equal(zt_get(tx, db, "doc", 3, &v, &vlen), ZT_OK);
    assert_int_equal(vlen, strlen(text) + 1);
    assert_int_equal(((const char *)v)[0], 'j');
    assert_memory_equal((const char *)v + 1, text, strlen(text));
    assert_int_equal(zt__store_end(f->srv.store, tx, false), ZT_OK);
    free(text);
    cJSON_Delete(want);
}

/* Bodies larger than the scratch buffer keeps, and errors that stop an encoding half way,
 * leave the next answers whole. */
static void json_large_and_broken_answers(void **state)
{
    fx *f = *state;
    init_ok(f, "local big = ('政通'):rep(20000)\n"
               "zt.route('GET', '/big', function() return 200, { s = big, n = #big } end)\n"
               "zt.route('GET', '/half', function()\n"
               "  return 200, { a = big, z = { print } }\n"
               "end)\n"
               "zt.route('GET', '/enc', function()\n"
               "  local ok = pcall(zt.json.encode, { big, print })\n"
               "  return 200, { ok = ok, len = #zt.json.encode({ big }) }\n"
               "end)\n"
               "zt.route('GET', '/small', function() return 200, { ok = true } end)\n");
    for (int round = 0; round < 3; round++) {
        treq *t = call(f, "GET", "/big", NULL, NULL, NULL);
        assert_int_equal(t->r.status, 200);
        assert_int_equal(t->r.res_len, 6 * 20000 + strlen("{\"n\":120000,\"s\":\"\"}"));
        assert_int_equal(strncmp(body_of(t), "{\"n\":120000,\"s\":\"政通政通", 26), 0);
        assert_int_equal(strcmp(body_of(t) + t->r.res_len - 8, "政通\"}"), 0);
        done(t);
        expect_problem(f, "GET", "/half", NULL, 500, "lua-error", "see the log");
        expect(f, "GET", "/small", NULL, 200, "{\"ok\":true}");
        expect(f, "GET", "/enc", NULL, 200, "{\"len\":120004,\"ok\":false}");
        expect(f, "GET", "/small", NULL, 200, "{\"ok\":true}");
    }
}

/* ---- zt.config ------------------------------------------------------------------------- */

static void config_is_a_read_only_view(void **state)
{
    fx *f = *state;
    static zt_option decl[] = {
        {"size", ZT_OPT_INT, "3", 0, NULL},       {"name", ZT_OPT_STRING, NULL, 0, NULL},
        {"ratio", ZT_OPT_NUMBER, "0.5", 0, NULL}, {"on", ZT_OPT_BOOL, "true", 0, NULL},
        {"roles", ZT_OPT_LIST, "a,b", 0, NULL},   {NULL, 0, NULL, 0, NULL}};
    char *roles[] = {"clerk", "chief"};
    zt_optval vals[] = {
        {.name = "size", .type = ZT_OPT_INT, .set = true, .i = 7},
        {.name = "name", .type = ZT_OPT_STRING, .set = false},
        {.name = "ratio", .type = ZT_OPT_NUMBER, .set = true, .n = 0.25},
        {.name = "on", .type = ZT_OPT_BOOL, .set = true, .b = false},
        {.name = "roles", .type = ZT_OPT_LIST, .set = true, .list = roles, .nlist = 2},
    };
    zt_option *saved = f->p.options;
    f->p.options = decl;
    f->p.noptions = 5;
    f->p.opts = vals;
    f->p.nopts = 5;
    int rc =
        init_plugin(f, "local c = zt.config\n"
                       "assert(c.size == 7 and math.type(c.size) == 'integer')\n"
                       "assert(c.name == nil)\n"
                       "assert(c.ratio == 0.25 and c.on == false)\n"
                       "assert(#c.roles == 2 and c.roles[1] == 'clerk' and c.roles[2] == 'chief')\n"
                       "local seen = 0\n"
                       "for k, v in pairs(c) do seen = seen + 1 end\n"
                       "assert(seen == 4, seen)\n"
                       "local n = 0 for _, r in ipairs(c.roles) do n = n + 1 end\n"
                       "assert(n == 2)\n"
                       "local ok, e = pcall(function() c.size = 8 end)\n"
                       "assert(not ok and e:find('read%-only'), e)\n"
                       "assert(not pcall(function() c.roles[1] = 'x' end))\n"
                       "ok, e = pcall(function() return c.nope end)\n"
                       "assert(not ok and e:find(\"no option 'nope'\"), e)\n"
                       "assert(getmetatable(c) == false)\n"
                       "assert(zt.plugin == 't')\n");
    f->p.options = saved;
    f->p.noptions = 0;
    f->p.opts = NULL;
    f->p.nopts = 0;
    if (rc != ZT_OK) fail_msg("%s", f->err);
}

/* ---- handlers -------------------------------------------------------------------------- */

static const char *handlers_lua =
    "local items = zt.db.open('items')\n"
    "assert(tostring(items) == 'zt.db(items)')\n"
    "local ok, e = pcall(items.get, items, 'k')\n"
    "assert(not ok and e:find('no transaction here', 1, true), e)\n"
    "ok, e = pcall(zt.route, 'GET', '/x', { colour = 'red' }, print)\n"
    "assert(not ok and e:find(\"unknown option 'colour'\"), e)\n"
    "zt.route('GET', '/echo/:a/:b', { role = 'public' }, function(req)\n"
    "  local q = {}\n"
    "  for k, v in pairs(req.query) do q[#q + 1] = k .. '=' .. v end\n"
    "  table.sort(q)\n"
    "  return 200, table.concat({ req.method, req.path, req.params.a, req.params.b,\n"
    "    table.concat(q, '&'), tostring(req:header('x-test')), tostring(req:header('nope')),\n"
    "    req.client, #req.id }, '|')\n"
    "end)\n"
    "zt.route('GET', '/files/*', function(req) return 200, req.params['*'] end)\n"
    "zt.route('GET', '/whoami', function(req)\n"
    "  local c = req.caller\n"
    "  if not c then return 200, 'nobody' end\n"
    "  return 200, table.concat({ c.id, c.kind, c.login, c.name, tostring(c.department),\n"
    "    table.concat(c.roles, '+'), tostring(c.credit_code), zt.json.encode(c.roles) }, '|')\n"
    "end)\n"
    "zt.route('POST', '/body', { body_limit = 100 }, function(req)\n"
    "  local j = req:json()\n"
    "  return 201, { got = j, raw = req.body }, { ['X-Made'] = 'yes' }\n"
    "end)\n"
    "zt.route('GET', '/html', function() return 200, '<p>hi</p>', { ['Content-Type'] = 'text/html' "
    "} end)\n"
    "zt.route('GET', '/geo', function()\n"
    "  return 200, { type = 'Point' }, { ['content-type'] = 'application/geo+json' }\n"
    "end)\n"
    "zt.route('GET', '/empty', function() return 204 end)\n"
    "zt.route('GET', '/error', function() error('boom') end)\n"
    "zt.route('GET', '/badstatus', function() return 'ok' end)\n"
    "zt.route('GET', '/strstatus', function() return '201', 'ok' end)\n"
    "zt.route('GET', '/body204', function() return 204, 'dropped?' end)\n"
    "zt.route('GET', '/errtable', function() return 400, { error = 'x' } end)\n"
    "zt.route('GET', '/errtyped', function()\n"
    "  return 400, { error = 'x' }, { ['Content-Type'] = 'application/json' }\n"
    "end)\n"
    "zt.route('GET', '/numdetail', function() zt.problem(400, 'bad', 42) end)\n"
    "zt.route('GET', '/strproblem', function() zt.problem('404', 'bad', 'x') end)\n"

    "zt.route('GET', '/badbody', function() return 200, print end)\n"
    "zt.route('GET', '/badheader', function() return 200, 'x', { ['X-A'] = 'a\\r\\nb' } end)\n"
    "zt.route('GET', '/nodeheader', function() return 200, 'x', { ['content-length'] = '1' } end)\n"
    "zt.route('GET', '/idheader', function() return 200, 'x', { ['X-Request-Id'] = 'mine' } end)\n"
    "zt.route('GET', '/nulheader', function() return 200, 'x', { ['X-A'] = 'a\\0b' } end)\n"
    "zt.route('GET', '/nameheader', function() return 200, 'x', { ['X A'] = 'b' } end)\n"
    "zt.route('GET', '/typeheader', function()\n"
    "  return 200, 'x', { ['Content-Type'] = 'text/plain\\r\\nX-B: c' }\n"
    "end)\n"
    "zt.route('GET', '/problem', function()\n"
    "  zt.problem(409, 'already-there', 'the thing exists', 'Exists')\n"
    "end)\n"
    "zt.route('GET', '/caught', function()\n"
    "  local ok, p = pcall(zt.problem, 418, 'teapot', 'short and stout')\n"
    "  return 200, p.type .. ' ' .. p.status .. ' ' .. p.detail\n"
    "end)\n"
    "zt.route('GET', '/loop', function() while true do pcall(function() while true do end end) end "
    "end)\n"
    "zt.route('GET', '/bomb', function()\n"
    "  local t = {}\n"
    "  for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end\n"
    "end)\n"
    "zt.route('GET', '/late', function() zt.route('GET', '/later', print) end)\n"
    "local dead\n"
    "zt.route('GET', '/co1', function()\n"
    "  dead = coroutine.create(function()\n"
    "    local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
    "    while true do end\n"
    "  end)\n"
    "  coroutine.resume(dead)\n"
    "end)\n"
    "zt.route('GET', '/co2', function() coroutine.close(dead) return 200, 'closed' end)\n"
    "zt.route('GET', '/fields/:x', function(req)\n"
    "  assert(req.nope == nil and req[1] == nil and req[true] == nil)\n"
    "  assert(type(req.header) == 'function' and type(req.json) == 'function')\n"
    "  assert(req.params == req.params and req.query == req.query, 'made once')\n"
    "  local seen = {}\n"
    "  for k, v in pairs(req) do\n"
    "    if k == 'caller' then v = v.login elseif type(v) == 'table' then v = next(v) or '{}' end\n"
    "    seen[#seen + 1] = k .. '=' .. (k == 'id' and #v or v)\n"
    "  end\n"
    "  table.sort(seen)\n"
    "  return 200, table.concat(seen, ' ')\n"
    "end)\n"
    "zt.route('GET', '/asjson/:x', function(req)\n"
    "  local j = zt.json.decode(zt.json.encode(req))\n"
    "  local n = 0\n"
    "  for _ in pairs(j) do n = n + 1 end\n"
    "  return 200, table.concat({ n, j.method, j.path, j.params.x, tostring(j.id == req.id),\n"
    "    j.client, '[' .. j.body .. ']', tostring(j.caller) }, ' ')\n"
    "end)\n"
    "local kept, kept2\n"
    "zt.route('GET', '/keep', function(req) kept = req return 200, 'kept' end)\n"
    "zt.route('GET', '/keep2', function(req) kept2 = req return 200, req.method end)\n"
    "zt.route('GET', '/stale2', function()\n"
    "  local out = { kept2.method, tostring(kept2.header ~= nil) }\n"
    "  for _, f in ipairs{ function() return kept2.path end, function() return kept.body end,\n"
    "                      function() return pairs(kept2) end } do\n"
    "    out[#out + 1] = select(2, pcall(f)):match('(req%.%a+: .*)$')\n"
    "  end\n"
    "  return 200, table.concat(out, '|')\n"
    "end)\n"
    "zt.route('GET', '/stale', function() return 200, tostring(select(2, pcall(kept.header, kept, "
    "'x'))) end)\n"
    "zt.route('GET', '/ok', function() return 200, 'ok' end)\n";

static void handler_request_and_response(void **state)
{
    fx *f = *state;
    init_ok(f, handlers_lua);

    /* http.c decodes the path before routing; the query comes raw */
    treq *t = call(f, "GET", "/echo/one/政?b=2&a=x+y%21&a=ignored&flag&bad=%zz&%zz=1", NULL,
                   "X-Test", "hello");
    assert_int_equal(t->rc, ZT_OK);
    assert_int_equal(t->r.status, 200);
    assert_string_equal(t->r.res_ctype, "text/plain; charset=utf-8");
    assert_string_equal(body_of(t),
                        "GET|/echo/one/政|one|政|a=x y!&b=2&flag=|hello|nil|192.0.2.7|26");
    done(t);
    expect(f, "GET", "/files/a/b/c.txt", NULL, 200, "a/b/c.txt");
    /* as JSON and to pairs(req), req is every field, as if all had been there from the start */
    expect(f, "GET", "/asjson/y", NULL, 200, "7 GET /asjson/y y true 192.0.2.7 [] nil");
    expect(f, "GET", "/fields/one?q=2", NULL, 200,
           "body= client=192.0.2.7 id=26 method=GET params=x path=/fields/one query=q");
    expect(f, "GET", "/whoami", NULL, 200, "nobody");
    const char *roles[] = {"clerk", "notice_editor"};
    zt_caller who = {"01J9Z8M3Q4XKQ7T2V6C5W8E0RA",
                     "staff",
                     "li",
                     "李明",
                     NULL,
                     roles,
                     2,
                     NULL,
                     NULL,
                     "internal"};
    zt_caller ent = {
        "01J9Z8M3Q4XKQ7T2V6C5W8E0RB", "enterprise", "acme", "Acme", NULL, NULL, 0, NULL,
        "91350100M000100Y43",         "public"};
    f->caller = &ent;
    expect(f, "GET", "/whoami", NULL, 200,
           "01J9Z8M3Q4XKQ7T2V6C5W8E0RB|enterprise|acme|Acme|nil||91350100M000100Y43|[]");
    f->caller = &who; /* the core resolves the caller before the handler runs */
    expect(f, "GET", "/whoami", NULL, 200,
           "01J9Z8M3Q4XKQ7T2V6C5W8E0RA|staff|li|李明|nil|clerk+notice_editor|nil|"
           "[\"clerk\",\"notice_editor\"]");
    expect(f, "GET", "/fields/two", NULL, 200,
           "body= caller=li client=192.0.2.7 id=26 method=GET params=x path=/fields/two query={}");
    f->caller = NULL;

    t = call(f, "POST", "/body", "{\"n\": [1, 2, {\"x\": null}]}", NULL, NULL);
    assert_int_equal(t->r.status, 201);
    assert_string_equal(t->r.res_ctype, "application/json");
    cJSON *j = cJSON_Parse(body_of(t));
    assert_non_null(j);
    char *got = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "got"));
    assert_string_equal(got, "{\"n\":[1,2,{\"x\":null}]}");
    assert_string_equal(cJSON_GetObjectItem(j, "raw")->valuestring,
                        "{\"n\": [1, 2, {\"x\": null}]}");
    free(got);
    cJSON_Delete(j);
    assert_non_null(strstr(t->r.res_hdrs.data, "X-Made: yes\r\n"));
    /* zt_res_header, as a C plugin calls it: the node's headers and malformed ones are
     * refused and leave the headers as they were */
    size_t had = t->r.res_hdrs.len;
    const char *refused[][2] = {{"Content-Length", "1"},
                                {"x-request-id", "a"},
                                {"Transfer-Encoding", "chunked"},
                                {"Connection", "close"},
                                {"Date", "x"},
                                {"Content-Type", "text/html"},
                                {"X A", "b"},
                                {"", "b"},
                                {"X-A", "a\r\nX-B: c"},
                                {"X-A", "a\x01"}};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        assert_int_equal(zt_res_header(&t->r, refused[i][0], refused[i][1]), ZT_EINVAL);
    assert_int_equal(t->r.res_hdrs.len, had);
    assert_int_equal(zt_res_header(&t->r, "X-Tab_ok!", "a\tb \xe6\x94\xbf"), ZT_OK);
    assert_non_null(strstr(t->r.res_hdrs.data, "X-Tab_ok!: a\tb \xe6\x94\xbf\r\n"));
    t->r.responded = false; /* as if unanswered: a type that would split the response */
    assert_int_equal(zt_respond(&t->r, 200, "text/plain\r\nX-B: c", "x", 1), ZT_EINVAL);
    t->r.responded = true;
    done(t);

    t = call(f, "GET", "/html", NULL, NULL, NULL);
    assert_string_equal(t->r.res_ctype, "text/html");
    assert_string_equal(body_of(t), "<p>hi</p>");
    assert_true(t->r.res_hdrs.len == 0); /* Content-Type is not repeated as a header */
    done(t);
    t = call(f, "GET", "/geo", NULL, NULL, NULL);
    assert_string_equal(t->r.res_ctype, "application/geo+json");
    assert_string_equal(body_of(t), "{\"type\":\"Point\"}");
    done(t);
    t = call(f, "GET", "/empty", NULL, NULL, NULL);
    assert_int_equal(t->r.status, 204);
    assert_int_equal(t->r.res_len, 0);
    assert_null(t->r.res_ctype);
    done(t);

    expect_problem(f, "GET", "/problem", NULL, 409, "already-there", "the thing exists");
    t = call(f, "GET", "/problem", NULL, NULL, NULL);
    assert_non_null(strstr(body_of(t), "\"title\":\"Exists\""));
    done(t);
    expect(f, "GET", "/caught", NULL, 200, "teapot 418 short and stout");
    expect_problem(f, "POST", "/body", "{not json", 400, "invalid-json", "not valid JSON");
    t = call(f, "POST", "/body", "", NULL, NULL);
    assert_int_equal(t->r.status, 400);
    assert_non_null(strstr(body_of(t), "\"title\":\"Bad Request\""));
    done(t);
}

static void handler_errors_fail_only_their_request(void **state)
{
    fx *f = *state;
    init_ok(f, handlers_lua);
    const char *bad[] = {"/error",    "/badstatus", "/badbody",    "/badheader",  "/nodeheader",
                         "/idheader", "/nulheader", "/nameheader", "/typeheader", "/loop",
                         "/bomb",     "/late",      "/co1",        "/strstatus",  "/body204",
                         "/errtable", "/numdetail", "/strproblem"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_problem(f, "GET", bad[i], NULL, 500, "lua-error", "see the log with request id");
        /* the state keeps serving, and what a failed call left behind is collected */
        expect(f, "GET", "/ok", NULL, 200, "ok");
        assert_true(zt__lua_memory(&f->p) < MEMORY_CAP / 4);
    }
    /* an error answer with a body of the handler's own type goes as it is */
    treq *te = call(f, "GET", "/errtyped", NULL, NULL, NULL);
    assert_int_equal(te->r.status, 400);
    assert_string_equal(te->r.res_ctype, "application/json");
    done(te);
    /* the coroutine /co1 left stopped by the budget had its <close> handler cut short there:
     * closing it in a later request has nothing left to run */
    expect(f, "GET", "/co2", NULL, 200, "closed");
    for (size_t i = 3; i < 9; i++) {
        treq *t = call(f, "GET", bad[i], NULL, NULL, NULL);
        assert_true(t->r.res_hdrs.len == 0); /* nothing of a failed answer leaks out */
        done(t);
    }
    treq *t;
    /* the id in the detail is this request's */
    t = call(f, "GET", "/error", NULL, NULL, NULL);
    assert_non_null(strstr(body_of(t), t->r.id));
    done(t);
    /* a request table kept past its handler is dead: its methods, and the fields it had
     * not read (what it read stays) */
    expect(f, "GET", "/keep", NULL, 200, "kept");
    t = call(f, "GET", "/stale", NULL, NULL, NULL);
    assert_non_null(strstr(body_of(t), "this request is over"));
    done(t);
    expect(f, "GET", "/keep2", NULL, 200, "GET");
    expect(f, "GET", "/stale2", NULL, 200,
           "GET|true|req.path: this request is over (use it only inside its handler)"
           "|req.body: this request is over (use it only inside its handler)"
           "|req.path: this request is over (use it only inside its handler)");
    /* the route declared outside init was refused */
    zt_match m;
    assert_int_equal(zt__router_match(f->srv.router, "GET", "/later", &m), ZT_ENOTFOUND);
}

/* ---- zt.db ----------------------------------------------------------------------------- */

static const char *db_lua =
    "local kv = zt.db.open('kv')\n"
    "zt.route('PUT', '/kv/:k', function(req)\n"
    "  local v = req.query.json and zt.json.decode(req.body) or req.body\n"
    "  kv:put(req.params.k, v)\n"
    "  return 204\n"
    "end)\n"
    "zt.route('GET', '/kv/:k', function(req)\n"
    "  local v = kv:get(req.params.k)\n"
    "  if v == nil then zt.problem(404, 'not-found', req.params.k) end\n"
    "  if type(v) == 'table' then return 200, v end\n"
    "  return 200, type(v) .. ':' .. tostring(v)\n"
    "end)\n"
    "zt.route('DELETE', '/kv/:k', function(req)\n"
    "  return 200, tostring(kv:delete(req.params.k))\n"
    "end)\n"
    "zt.route('GET', '/write-in-get', function(req)\n"
    "  local ok, e = pcall(kv.put, kv, 'x', 'y')\n"
    "  return 200, tostring(e)\n"
    "end)\n"
    "zt.route('POST', '/odd', function(req)\n"
    "  local out = {}\n"
    "  for _, f in ipairs{\n"
    "    function() kv:put('', 'x') end,\n"
    "    function() kv:put(('k'):rep(512), 'x') end,\n"
    "    function() kv:put('k', nil) end,\n"
    "    function() kv:put('k', print) end,\n"
    "    function() kv:put(1, 'x') end,\n"
    "    function() kv:iter{ colour = 1 } end,\n"
    "    function() kv:iter{ limit = -1 } end,\n"
    "    function() kv:iter{ limit = '3' } end,\n"
    "    function() kv:iter{ reverse = 'yes' } end,\n"
    "  } do out[#out + 1] = (pcall(f)) and 'ok' or 'err' end\n"
    "  out[#out + 1] = tostring(kv:get(('k'):rep(600)))\n"
    "  out[#out + 1] = tostring(kv:delete(''))\n"
    "  kv:put('n', 5)  kv:put('b', true)\n"
    "  out[#out + 1] = math.type(kv:get('n')) .. ' ' .. tostring(kv:get('b'))\n"
    "  return 200, table.concat(out, ' ')\n"
    "end)\n"
    "-- GET /list?from=&prefix=&reverse=&limit=: the keys, comma-separated\n"
    "local stale\n"
    "zt.route('GET', '/list', function(req)\n"
    "  local q = req.query\n"
    "  local keys = {}\n"
    "  for k, v in kv:iter{ from = q.from, prefix = q.prefix, reverse = q.reverse == '1',\n"
    "                       limit = tonumber(q.limit) } do\n"
    "    assert(v == 'v' .. k, k)\n"
    "    keys[#keys + 1] = k\n"
    "  end\n"
    "  stale = kv:iter()\n"
    "  return 200, table.concat(keys, ',')\n"
    "end)\n"
    "zt.route('GET', '/stale', function()\n"
    "  return 200, tostring(select(2, pcall(stale)))\n"
    "end)\n";

static void raw_value(fx *f, const char *key, const char *want, size_t wlen)
{
    zt_db *db;
    zt_txn *t;
    assert_int_equal(zt__store_db(f->srv.store, "t", "kv", &db), ZT_OK);
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    const void *v;
    size_t n;
    assert_int_equal(zt_get(t, db, key, strlen(key), &v, &n), ZT_OK);
    assert_int_equal(n, wlen);
    assert_memory_equal(v, want, wlen);
    assert_int_equal(zt__store_end(f->srv.store, t, false), ZT_OK);
}

static void db_values_and_their_encoding(void **state)
{
    fx *f = *state;
    init_ok(f, db_lua);
    expect(f, "PUT", "/kv/greeting", "hello 你好", 204, "");
    expect(f, "GET", "/kv/greeting", NULL, 200, "string:hello 你好");
    raw_value(f, "greeting", "shello 你好", strlen("shello 你好"));
    expect(f, "PUT", "/kv/doc?json=1", "{\"a\":[1,2]}", 204, "");
    expect(f, "GET", "/kv/doc", NULL, 200, "{\"a\":[1,2]}");
    raw_value(f, "doc", "j{\"a\":[1,2]}", 12);
    expect(f, "PUT", "/kv/bin", "a\x01\x7f", 204, "");
    raw_value(f, "bin", "sa\x01\x7f", 4);
    expect(f, "PUT", "/kv/empty", "", 204, "");
    expect(f, "GET", "/kv/empty", NULL, 200, "string:");
    raw_value(f, "empty", "s", 1);
    expect(f, "DELETE", "/kv/greeting", NULL, 200, "true");
    expect(f, "DELETE", "/kv/greeting", NULL, 200, "false");
    expect_problem(f, "GET", "/kv/greeting", NULL, 404, "not-found", "greeting");
    expect(f, "GET", "/write-in-get", NULL, 200, "db:put: read-only transaction");
    expect(f, "POST", "/odd", NULL, 200,
           "err err err err err err err err err nil false integer true");
}

static void db_iteration(void **state)
{
    fx *f = *state;
    init_ok(f, db_lua);
    const char *keys[] = {"a", "b1", "b2", "b3", "c", "c\xff", "d"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char target[64], body[16];
        snprintf(target, sizeof target, "/kv/%s", keys[i]);
        snprintf(body, sizeof body, "v%s", keys[i]);
        expect(f, "PUT", target, body, 204, "");
    }
    expect(f, "GET", "/list", NULL, 200, "a,b1,b2,b3,c,c\xff,d");
    expect(f, "GET", "/list?reverse=1", NULL, 200, "d,c\xff,c,b3,b2,b1,a");
    expect(f, "GET", "/list?limit=2", NULL, 200, "a,b1");
    expect(f, "GET", "/list?limit=0", NULL, 200, "");
    expect(f, "GET", "/list?from=b2", NULL, 200, "b2,b3,c,c\xff,d");
    expect(f, "GET", "/list?from=bb", NULL, 200, "c,c\xff,d");
    expect(f, "GET", "/list?from=b2&reverse=1", NULL, 200, "b2,b1,a");
    expect(f, "GET", "/list?from=bb&reverse=1", NULL, 200, "b3,b2,b1,a");
    expect(f, "GET", "/list?from=z&reverse=1&limit=1", NULL, 200, "d");
    expect(f, "GET", "/list?from=0&reverse=1", NULL, 200, "");
    expect(f, "GET", "/list?prefix=b", NULL, 200, "b1,b2,b3");
    expect(f, "GET", "/list?prefix=b&reverse=1", NULL, 200, "b3,b2,b1");
    expect(f, "GET", "/list?prefix=b&from=b2", NULL, 200, "b2,b3");
    expect(f, "GET", "/list?prefix=b&from=b2&reverse=1", NULL, 200, "b2,b1");
    expect(f, "GET", "/list?prefix=b&from=a", NULL, 200, "b1,b2,b3");
    expect(f, "GET", "/list?prefix=b&from=z&reverse=1", NULL, 200, "b3,b2,b1");
    expect(f, "GET", "/list?prefix=c&reverse=1", NULL, 200, "c\xff,c");
    expect(f, "GET", "/list?prefix=c%FF&reverse=1", NULL, 200, "c\xff");
    expect(f, "GET", "/list?prefix=x", NULL, 200, "");
    expect(f, "GET", "/list?prefix=x&reverse=1", NULL, 200, "");
    /* an iterator kept past its request is refused, not a dangling cursor */
    treq *t = call(f, "GET", "/stale", NULL, NULL, NULL);
    assert_non_null(strstr(body_of(t), "iterator used after its request ended"));
    done(t);
    expect(f, "GET", "/list?limit=1", NULL, 200, "a");
}

/* ---- zt.auth, zt.audit ----------------------------------------------------------------- */

/* The department tree county D0 → bureau D1 → section D2, and X0 elsewhere. */
static void departments(fx *f)
{
    static const char *const rows[][2] = {{"D0", NULL}, {"D1", "D0"}, {"D2", "D1"}, {"X0", NULL}};
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(zt__auth_dept_put(&f->srv, t, rows[i][0], "x", rows[i][1], NULL), ZT_OK);
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

static const char *auth_lua =
    "local ok, e = pcall(zt.auth.caller, nil)\n"
    "assert(not ok and e:find(\"must be the handler's req, not nil\", 1, true), e)\n"
    "ok, e = pcall(zt.audit.note, {}, 'x')\n"
    "assert(not ok and e:find(\"must be the handler's req, not table\", 1, true), e)\n"
    "local kept\n"
    "zt.route('GET', '/who', { role = 'public' }, function(req)\n"
    "  local c = zt.auth.caller(req)\n"
    "  local out = { tostring(c == req.caller), c and c.login or 'nobody',\n"
    "                c and tostring(c.plugin) }\n"
    "  for _, r in ipairs{ 'clerk', 'notice_editor', 'admin', 'clerk\\0x', '' } do\n"
    "    out[#out + 1] = r:gsub('\\0', '0') .. '=' .. tostring(zt.auth.has_role(req, r))\n"
    "  end\n"
    "  for _, d in ipairs{ 'D0', 'D1', 'D2', 'X0', 'D9', 'D1\\0', ('D'):rep(65), '' } do\n"
    "    out[#out + 1] = d:sub(1, 3):gsub('\\0', '0') .. '=' .. tostring(zt.auth.in_scope(req, "
    "d))\n"
    "  end\n"
    "  -- the table is the plugin's to change; the answers come from the core\n"
    "  if req.caller then req.caller.roles[1] = 'admin' end\n"
    "  req.caller = { roles = { 'admin' } }\n"
    "  out[#out + 1] = tostring(zt.auth.has_role(req, 'admin'))\n"
    "  out[#out + 1] = tostring(zt.auth.caller(req) == req.caller)\n"
    "  kept = req\n"
    "  return 200, table.concat(out, ' ')\n"
    "end)\n"
    "zt.route('GET', '/bad', { role = 'public' }, function(req)\n"
    "  local out = {}\n"
    "  for _, f in ipairs{\n"
    "    function() return zt.auth.has_role(req, 5) end,\n"
    "    function() return zt.auth.has_role(req) end,\n"
    "    function() return zt.auth.in_scope(req, { 'D1' }) end,\n"
    "    function() return zt.auth.caller(req.caller) end,\n"
    "    function() return zt.auth.caller(kept) end,\n"
    "    function() return zt.audit.note(req, 5) end,\n"
    "    function() return zt.audit.note(req, 'a', 'b\\0c') end,\n"
    "    function() return zt.audit.note(kept, 'a') end,\n"
    "  } do\n"
    "    local ok, e = pcall(f)\n"
    "    out[#out + 1] = ok and 'ok' or e:match(': ([^:]*)$')\n"
    "  end\n"
    "  return 200, table.concat(out, '|')\n"
    "end)\n"
    "zt.route('GET', '/dept/:code', { role = 'public' }, function(req)\n"
    "  local d = zt.auth.department(req, req.params.code)\n"
    "  if not d then return 200, 'nil' end\n"
    "  local out = {}\n"
    "  for k, v in pairs(d) do out[#out + 1] = k .. '=' .. v end\n"
    "  table.sort(out)\n"
    "  return 200, table.concat(out, ' ')\n"
    "end)\n"
    "zt.route('POST', '/note/:how', function(req)\n"
    "  if req.params.how == 'both' then zt.audit.note(req, 'approve notice', 'notice/42')\n"
    "  elseif req.params.how == 'object' then zt.audit.note(req, nil, 'notice/7')\n"
    "  else zt.audit.note(req) end\n"
    "  return 204\n"
    "end)\n";

static void auth_answers_from_the_core(void **state)
{
    fx *f = *state;
    open_core(f);
    departments(f);
    init_ok(f, auth_lua);
    expect(f, "GET", "/who", NULL, 200,
           "true nobody clerk=false notice_editor=false admin=false clerk0x=false =false "
           "D0=false D1=false D2=false X0=false D9=false D10=false DDD=false =false false false");
    const char *roles[] = {"clerk", "notice_editor"};
    zt_caller who = {"01J9Z8M3Q4XKQ7T2V6C5W8E0RA",
                     "staff",
                     "li",
                     "李明",
                     "D1",
                     roles,
                     2,
                     NULL,
                     NULL,
                     "internal"};
    f->caller = &who;
    expect(f, "GET", "/who", NULL, 200,
           "true li nil clerk=true notice_editor=true admin=false clerk0x=false =false "
           "D0=false D1=true D2=true X0=false D9=false D10=false DDD=false =false false false");
    assert_string_equal(roles[0], "clerk"); /* the Lua table was a copy */
    who.department = NULL;                  /* a device's key: bound to a plugin, no scope at all */
    who.kind = "device";
    who.plugin = "t";
    expect(f, "GET", "/who", NULL, 200,
           "true li t clerk=true notice_editor=true admin=false clerk0x=false =false "
           "D0=false D1=false D2=false X0=false D9=false D10=false DDD=false =false false false");
    expect(f, "GET", "/bad", NULL, 200,
           "role must be a string, not number|role must be a string, not no value"
           "|department must be a string, not table"
           "|the first argument must be the handler's req, not table"
           "|this request is over (use it only inside its handler)"
           "|action must be a string, not number|object holds a NUL byte"
           "|this request is over (use it only inside its handler)");
    /* the documented fields, never the record's seal (mac) */
    expect(f, "GET", "/dept/D1", NULL, 200, "code=D1 name=x parent=D0");
    expect(f, "GET", "/dept/D0", NULL, 200, "code=D0 name=x");
    expect(f, "GET", "/dept/D9", NULL, 200, "nil");
    f->caller = NULL;
}

static void audit_note_names_the_record(void **state)
{
    fx *f = *state;
    init_ok(f, auth_lua);
    treq *t = call(f, "POST", "/note/both", NULL, NULL, NULL);
    assert_int_equal(t->r.status, 204);
    assert_string_equal(t->r.audit_action, "approve notice");
    assert_string_equal(t->r.audit_object, "notice/42");
    done(t);
    t = call(f, "POST", "/note/object", NULL, NULL, NULL);
    assert_null(t->r.audit_action); /* the default "<METHOD> <route>" stays */
    assert_string_equal(t->r.audit_object, "notice/7");
    done(t);
    t = call(f, "POST", "/note/none", NULL, NULL, NULL);
    assert_null(t->r.audit_action);
    assert_null(t->r.audit_object);
    done(t);
}

/* ---- zt.crypto, zt.valid --------------------------------------------------------------- */

static const char *crypto_lua =
    "local function unhex(h)\n"
    "  local o = {}\n"
    "  for i = 1, #h, 2 do o[#o + 1] = string.char(tonumber(h:sub(i, i + 1), 16)) end\n"
    "  return table.concat(o)\n"
    "end\n"
    "local hex, c = zt.crypto.hex, zt.crypto\n"
    "-- in init too: the keys are open from init on\n"
    "local id = '11010519491231002X'\n"
    "local e1, e2 = c.encrypt('id_number', id), c.encrypt('id_number', id)\n"
    "assert(#e1 == #id + 41 and e1 ~= e2, 'two encryptions of one value differ')\n"
    "assert(c.decrypt('id_number', e1) == id and c.decrypt('id_number', e2) == id)\n"
    "assert(c.decrypt('x', c.encrypt('x', '')) == '')\n"
    "local function refused(field, v)\n"
    "  local p, why = c.decrypt(field, v)\n"
    "  assert(p == nil and why:find('not a value encrypted for field', 1, true), tostring(why))\n"
    "end\n"
    "refused('phone', e1)\n"
    "refused('id_number', e1:sub(1, -2))\n"
    "refused('id_number', e1:sub(1, 20) .. string.char((e1:byte(21) + 1) % 256) .. e1:sub(22))\n"
    "refused('id_number', '')\n"
    "local i1 = c.index('id_number', id)\n"
    "assert(#i1 == 32 and i1 == c.index('id_number', id) and i1 ~= c.index('phone', id))\n"
    "assert(#hex(i1) == 64 and hex('\\0\\255ab') == '00ff6162' and hex('') == '')\n"
    "assert(#c.hash('') == 32 and c.hash('a') ~= c.hash('b'))\n"
    "local r1, r2 = c.random(16), c.random(16)\n"
    "assert(#r1 == 16 and r1 ~= r2 and #c.random(1) == 1 and #c.random(1024) == 1024)\n"
    "local function bad(f, want)\n"
    "  local ok, e = pcall(f)\n"
    "  assert(not ok and e:find(want, 1, true), want .. ': ' .. tostring(e))\n"
    "end\n"
    "bad(function() c.encrypt(5, 'x') end, 'field must be a string, not number')\n"
    "bad(function() c.encrypt('', 'x') end, 'field must be 1..64 bytes without NUL')\n"
    "bad(function() c.encrypt('a\\0b', 'x') end, 'without NUL')\n"
    "bad(function() c.encrypt(('f'):rep(65), 'x') end, 'field must be 1..64 bytes')\n"
    "bad(function() c.encrypt('f') end, 'plaintext must be a string, not no value')\n"
    "bad(function() c.encrypt('f', 12345) end, 'plaintext must be a string, not number')\n"
    "bad(function() c.decrypt('f', nil) end, 'ciphertext must be a string, not nil')\n"
    "bad(function() c.index('f', {}) end, 'value must be a string, not table')\n"
    "for _, n in ipairs{ 0, 1025, -1, 1.5, '8', false } do\n"
    "  bad(function() c.random(n) end, 'n must be an integer 1..1024')\n"
    "end\n"
    "bad(function() c.random() end, 'n must be an integer')\n"
    "bad(function() c.hash(nil) end, 'must be a string, not nil')\n"
    "bad(function() c.hex(1) end, 'must be a string, not number')\n"
    "bad(function() zt.valid.citizen_id(110105194912310021) end, 'must be a string, not number')\n"
    "bad(function() zt.valid.credit_code() end, 'must be a string, not no value')\n"
    "bad(function() zt.valid.citizen_id_canon({}) end, 'must be a string, not table')\n"
    "zt.route('POST', '/crypto', function(req)\n"
    "  local q = req.query\n"
    "  local out = {\n"
    "    index = hex(c.index(q.field, q.value)),\n"
    "    hash = hex(c.hash(q.value)),\n"
    "    cipher = hex(c.encrypt(q.field, q.value)),\n"
    "  }\n"
    "  local plain, why = c.decrypt(q.field, unhex(req.body))\n"
    "  out.plain = plain or why\n"
    "  return 200, out\n"
    "end)\n"
    "zt.route('POST', '/valid', function(req)\n"
    "  local out = {}\n"
    "  for line in (req.body .. '\\n'):gmatch('(.-)\\n') do\n"
    "    line = line:gsub('#', '\\0')\n"
    "    out[#out + 1] = table.concat({ tostring(zt.valid.citizen_id(line)),\n"
    "      tostring(zt.valid.citizen_id_canon(line)), tostring(zt.valid.credit_code(line)) }, ' "
    "')\n"
    "  end\n"
    "  return 200, table.concat(out, '\\n')\n"
    "end)\n";

static cJSON *json_of(treq *t)
{
    cJSON *j = cJSON_Parse(body_of(t));
    if (!j) fail_msg("not JSON: %s", body_of(t));
    return j;
}

static const char *jget(cJSON *j, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(j, k);
    if (!cJSON_IsString(v)) fail_msg("no string %s", k);
    return v->valuestring;
}

static void crypto_is_the_plugins_own(void **state)
{
    fx *f = *state;
    open_core(f);
    init_ok(f, crypto_lua);
    const char *field = "phone", *value = "13800138000";
    /* a value C encrypted for this plugin and field, handed to Lua as hex */
    unsigned char cipher[64], idx[32], hash[32];
    size_t clen = sizeof cipher;
    assert_int_equal(zt_field_encrypt(&f->p, field, value, strlen(value), cipher, &clen), ZT_OK);
    char body[2 * sizeof cipher + 1], target[128], hex[65];
    zt__hex(body, cipher, clen);
    snprintf(target, sizeof target, "/crypto?field=%s&value=%s", field, value);
    treq *t = call(f, "POST", target, body, NULL, NULL);
    assert_int_equal(t->r.status, 200);
    cJSON *j = json_of(t);
    assert_string_equal(jget(j, "plain"), value);
    assert_int_equal(zt_field_index(&f->p, field, value, strlen(value), idx), ZT_OK);
    zt__hex(hex, idx, 32);
    assert_string_equal(jget(j, "index"), hex);
    zt_hash(value, strlen(value), hash);
    zt__hex(hex, hash, 32);
    assert_string_equal(jget(j, "hash"), hex);
    /* what Lua encrypted, C decrypts for the same plugin and field */
    unsigned char bin[64];
    char plain[64];
    size_t blen, plen = sizeof plain;
    const char *ch = jget(j, "cipher");
    assert_int_equal(zt__hex_decode(bin, sizeof bin, ch, strlen(ch), &blen), ZT_OK);
    assert_int_equal(zt_field_decrypt(&f->p, field, bin, blen, plain, &plen), ZT_OK);
    assert_int_equal(plen, strlen(value));
    assert_memory_equal(plain, value, plen);
    cJSON_Delete(j);
    done(t);
    /* another plugin's value does not decrypt here */
    zt_plugin other = {.name = "u", .srv = &f->srv};
    clen = sizeof cipher;
    assert_int_equal(zt_field_encrypt(&other, field, value, strlen(value), cipher, &clen), ZT_OK);
    zt__hex(body, cipher, clen);
    t = call(f, "POST", target, body, NULL, NULL);
    j = json_of(t);
    assert_non_null(strstr(jget(j, "plain"), "not a value encrypted for field 'phone'"));
    cJSON_Delete(j);
    done(t);
}

static void crypto_needs_the_keys(void **state)
{
    fx *f = *state;
    init_fails(f, "zt.crypto.encrypt('f', 'x')\n",
               "init.lua:1: zt.crypto.encrypt: the node has no keys");
    init_fails(f, "zt.crypto.index('f', 'x')\n", "zt.crypto.index: the node has no keys");
}

/* Strings are never taken from numbers, nor numbers from strings; each mistake names the
 * function, the argument and the type it got (never "bad argument #2 to '?'"). */
static void arguments_are_never_coerced(void **state)
{
    fx *f = *state;
    init_ok(
        f,
        "local function why(fn, ...)\n"
        "  local ok, e = pcall(fn, ...)\n"
        "  assert(not ok, 'accepted')\n"
        "  return (tostring(e):gsub('^[^:]*:%d+: ', ''))\n"
        "end\n"
        "local function all(req)\n"
        "  return table.concat({\n"
        "    why(zt.mask, 5, 1, 1), why(zt.mask, 'abc', '1', 1),\n"
        "    why(zt.valid.text, 'abc', '5'), why(zt.valid.text, 'abc', 2.5),\n"
        "    why(zt.valid.text, 'abc', 5, 1),\n"
        "    why(zt.json.decode, 5), why(zt.json.array, 5), why(zt.json.encode),\n"
        "    why(zt.problem, 404.5, 'x'),\n"
        "    why(zt.route, 'GET', '/y', {}, 'notafunction'), why(zt.route, 5, '/y', print),\n"
        "    why(zt.db.open, 5), why(zt.db.open, 'x', 5),\n"
        "    why(zt.config_error, 5, 'x'),\n"
        "    req and why(zt.rate.note, req, 'x', '3', '60') or '-',\n"
        "    req and why(zt.rate.check, req, 'x', 3, 60, 5) or '-',\n"
        "    req and why(req.header, req, 5) or '-',\n"
        "    why(zt.rate.note, {}, 'x', 3, 60), why(zt.rate.check, 5, 'x', 3, 60),\n"
        "  }, '\\n')\n"
        "end\n"
        "zt.route('GET', '/all', { role = 'public' }, function(req) return 200, all(req) end)\n");
    expect(f, "GET", "/all", NULL, 200,
           "zt.mask: s must be a string, not number\n"
           "zt.mask: front must be an integer, not string\n"
           "zt.valid.text: max_chars must be an integer, not string\n"
           "zt.valid.text: max_chars must be an integer, not a fraction\n"
           "zt.valid.text: the third argument must be a string, not number\n"
           "zt.json.decode: text must be a string, not number\n"
           "zt.json.array: t must be a table, not number\n"
           "zt.json.encode: the value is missing\n"
           "zt.problem: status must be an integer, not a fraction\n"
           "zt.route: only during init\n"
           "zt.route: method must be a string, not number\n"
           "zt.db.open: name must be a string, not number\n"
           "zt.db.open: only during init\n"
           "zt.config_error: option must be a string, not number\n"
           "zt.rate.note: max must be an integer, not string\n"
           "zt.rate.check: detail must be a string, not number\n"
           "req:header: name must be a string, not number\n"
           "zt.rate.note: the first argument must be the handler's req, not table\n"
           "zt.rate.check: the first argument must be the handler's req, not number");
}

/* In init, where zt.route and zt.db.open are checked further. */
static void init_arguments_are_never_coerced(void **state)
{
    fx *f = *state;
    init_fails(f, "zt.route('GET', '/y', {}, 'notafunction')",
               ":1: zt.route GET /y: the handler must be a function, not string");
    init_fails(f, "zt.db.open('x', 5)",
               ":1: zt.db.open: options ({ sealed = true }) must be a "
               "table, not number");
}

static void validators_agree_with_the_core(void **state)
{
    fx *f = *state;
    open_core(f);
    init_ok(f, crypto_lua);
    static const char *const inputs[] = {
        "11010519491231002X",
        "11010519491231002x",
        "110105194912310021",
        "11010519491231002",
        "110105194902300021",
        "11010518991231002X",
        "91350100M000100Y43",
        "91350100M000100Y44",
        "91350100m000100y43",
        "9135010OM000100Y43",
        "",
        "11010519491231002X#",
    };
    /* the core finds these two valid: the cases are not all "no" */
    assert_true(zt_valid_citizen_id(inputs[0]) && zt_valid_credit_code(inputs[6]));
    zt_buf body = {0}, want = {0};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *s = inputs[i];
        bool nul = strchr(s, '#') != NULL; /* '#' stands for a NUL byte: never valid */
        char canon[19];
        int cid = !nul && zt_valid_citizen_id(s), ok = !nul && zt_citizen_id_canon(s, canon) == 0;
        int cc = !nul && zt_valid_credit_code(s);
        assert_int_equal(zt__buf_printf(&body, "%s%s", i ? "\n" : "", s), ZT_OK);
        assert_int_equal(zt__buf_printf(&want, "%s%s %s %s", i ? "\n" : "", cid ? "true" : "false",
                                        ok ? canon : "nil", cc ? "true" : "false"),
                         ZT_OK);
    }
    assert_int_equal(zt__buf_append(&body, "", 1), ZT_OK);
    assert_int_equal(zt__buf_append(&want, "", 1), ZT_OK);
    expect(f, "POST", "/valid", body.data, 200, want.data);
    assert_non_null(strstr(want.data, "true 11010519491231002X false\ntrue 11010519491231002X"));
    zt__buf_free(&body);
    zt__buf_free(&want);
}

/* ---- zt.seal, zt.json.canonical -------------------------------------------------------- */

static const char *seal_lua =
    "local doc = { title = '通知', n = 3, ratio = 0.1, list = { 1, 2.5, zt.json.null },\n"
    "              nested = { b = true, a = false } }\n"
    "local ok, e = pcall(zt.seal.json, nil, 'D1', doc)\n"
    "assert(not ok and e:find(\"must be the handler's req\", 1, true), e)\n"
    "assert(zt.json.canonical({ b = 1, a = { 1, 'x' } }) == '{\"a\":[1,\"x\"],\"b\":1}')\n"
    /* RFC 8785: numbers as ECMAScript writes them, keys in UTF-16 code unit order */
    "local c = zt.json.canonical({ r = 0.1, s = 1e-7, t = 2.0, u = -0.0, ['\\u{FF61}'] = 1,\n"
    "                              ['\\u{1F600}'] = 2 })\n"
    "assert(c == '{\"r\":0.1,\"s\":1e-7,\"t\":2,\"u\":0,\"\\u{1F600}\":2,\"\\u{FF61}\":1}', c)\n"
    "ok, e = pcall(zt.json.canonical, { n = math.maxinteger })\n"
    "assert(not ok and e:find('no canonical JSON form', 1, true), e)\n"
    "ok, e = pcall(zt.json.canonical)\n"
    "assert(not ok and e:find('zt.json.canonical: the value is missing', 1, true), e)\n"
    "zt.route('POST', '/seal', function(req)\n"
    "  return 201, { json = zt.seal.json(req, 'D1', doc),\n"
    "                bytes = zt.seal.bytes(req, 'D2', 'raw \\0 bytes'),\n"
    "                canonical = zt.json.canonical(doc) }\n"
    "end)\n"
    "zt.route('GET', '/seal', function(req)\n"
    "  local ok, e = pcall(zt.seal.json, req, 'D1', doc)\n"
    "  return 200, e\n"
    "end)\n"
    "zt.route('POST', '/bad', function(req)\n"
    "  local out = {}\n"
    "  for _, f in ipairs{\n"
    "    function() zt.seal.json(req, '', {}) end,\n"
    "    function() zt.seal.json(req, 5, {}) end,\n"
    "    function() zt.seal.json(req, ('D'):rep(65), {}) end,\n"
    "    function() zt.seal.json(req, 'D1') end,\n"
    "    function() zt.seal.json(req, 'D1', { f = print }) end,\n"
    "    function() zt.seal.json(req, 'D1', { n = 1 << 60 }) end,\n"
    "    function() zt.seal.bytes(req, 'D1', {}) end,\n"
    "    function() zt.seal.bytes({}, 'D1', 'x') end,\n"
    "    function() zt.seal.bytes(req, 'NO-SUCH', 'x') end,\n"
    "  } do\n"
    "    local ok, e = pcall(f)\n"
    "    out[#out + 1] = ok and 'ok' or e:match('^[^:]*:%d+: (.*)$')\n"
    "  end\n"
    "  return 200, table.concat(out, '\\n')\n"
    "end)\n";

/* The seal in j[k] checks against doc (and not against a changed doc). */
static void seal_checks(fx *f, cJSON *seal, const char *dept, const void *doc, size_t len)
{
    assert_string_equal(jget(seal, "department"), dept);
    assert_string_equal(jget(seal, "algorithm"), "Ed25519");
    assert_int_equal(strlen(jget(seal, "key_id")), 26);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(seal, "time")));
    zt_txn *t;
    const char *why = NULL;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    int rc = zt__seal_check(&f->srv, t, doc, len, seal, &why);
    if (rc != ZT_OK) fail_msg("seal does not check: %s", why ? why : "?");
    char *changed = malloc(len + 1);
    assert_non_null(changed);
    memcpy(changed, doc, len);
    changed[len / 2] ^= 1;
    assert_int_not_equal(zt__seal_check(&f->srv, t, changed, len, seal, &why), ZT_OK);
    free(changed);
    assert_int_equal(zt__store_end(f->srv.store, t, false), ZT_OK);
}

/* Departments as `zhengtong admin dept add` makes them. */
static void add_depts(fx *f, const char *const *codes)
{
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    for (; *codes; codes++)
        assert_int_equal(zt__auth_dept_put(&f->srv, t, *codes, *codes,
                                           strcmp(*codes, "root") == 0 ? NULL : "root", NULL),
                         ZT_OK);
    assert_int_equal(zt__store_write_done(f->srv.store, t, ZT_OK), ZT_OK);
}

static void seals_from_lua_check_in_the_core(void **state)
{
    fx *f = *state;
    open_core(f);
    add_depts(f, (const char *const[]){"root", "D1", "D2", NULL});
    init_ok(f, seal_lua);
    treq *t = call(f, "POST", "/seal", NULL, NULL, NULL);
    if (t->r.status != 201) fail_msg("%d %s", t->r.status, body_of(t));
    cJSON *j = json_of(t);
    /* the same document, canonical by the core's own function */
    cJSON *doc = cJSON_Parse("{\"title\":\"通知\",\"n\":3,\"ratio\":0.1,\"list\":[1,2.5,null],"
                             "\"nested\":{\"b\":true,\"a\":false}}");
    char *canon;
    size_t clen;
    assert_int_equal(zt_json_canonical(doc, &canon, &clen), ZT_OK);
    assert_string_equal(jget(j, "canonical"), canon);
    seal_checks(f, cJSON_GetObjectItem(j, "json"), "D1", canon, clen);
    seal_checks(f, cJSON_GetObjectItem(j, "bytes"), "D2", "raw \0 bytes", 11);
    free(canon);
    cJSON_Delete(doc);
    cJSON_Delete(j);
    done(t);
    expect(f, "GET", "/seal", NULL, 200,
           "zt.seal.json: only in a handler that may write (POST, PUT, PATCH, DELETE), not in GET");
    expect(f, "POST", "/bad", NULL, 200,
           "zt.seal.json: department must be 1..64 bytes without NUL\n"
           "zt.seal.json: department must be a string, not number\n"
           "zt.seal.json: department must be 1..64 bytes without NUL\n"
           "zt.seal.json: the document is missing\n"
           "zt.json.encode: cannot encode a function\n"
           "zt.seal.json: the document has no canonical JSON form (nested deeper than 64, or an "
           "integer beyond 2^53)\n"
           "zt.seal.bytes: the document must be a string, not table\n"
           "zt.seal.bytes: the first argument must be the handler's req, not table\n"
           "zt.seal.bytes: there is no department 'NO-SUCH' (zt.auth.department)");
}

static void seals_need_the_keys(void **state)
{
    fx *f = *state;
    init_ok(f, seal_lua);
    expect_problem(f, "POST", "/seal", NULL, 500, "lua-error", NULL);
}

/* The first ```lua block after `heading` in docs/lua-api.md (malloc'd), or NULL. */
static char *doc_example(const char *heading)
{
    const char *src = getenv("ZT_SRC");
    if (!src) return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/docs/lua-api.md", src);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, fp);
    fclose(fp);
    doc[n] = 0;
    const char *h = strstr(doc, heading), *b = h ? strstr(h, "```lua\n") : NULL;
    const char *e = b ? strstr(b + 7, "```") : NULL;
    if (!e) fail_msg("no example under %s", heading);
    return strndup(b + 7, (size_t)(e - b - 7));
}

/* Whether the bytes of s appear anywhere in the file at path. */
static bool file_holds(const char *path, const char *s)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t cap = 1 << 20, n = 0, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    bool found = memmem(buf, n, s, strlen(s)) != NULL;
    free(buf);
    return found;
}

/* zt.mask: the core's zt_mask, by characters; a wrong argument is an error naming it */
static void mask_in_lua(void **state)
{
    fx *f = *state;
    open_core(f);
    init_ok(f, "local ok, e = pcall(zt.mask, '\\255', 1, 1)\n"
               "assert(not ok and e:find('not UTF-8 text', 1, true), e)\n"
               "ok, e = pcall(zt.mask, 'abc', -1, 1)\n"
               "assert(not ok and e:find('zt.mask: front must be a count of characters', 1, "
               "true), e)\n"
               /* strings are never taken from numbers, nor numbers from strings */
               "ok, e = pcall(zt.mask, 5, 1, 1)\n"
               "assert(not ok and e:find('zt.mask: s must be a string, not number', 1, true), e)\n"
               "ok, e = pcall(zt.mask, 'abc', '1', 1)\n"
               "assert(not ok and e:find('zt.mask: front must be an integer, not string', 1, "
               "true), e)\n"
               "ok, e = pcall(zt.mask, 'abc', 1, 1.5)\n"
               "assert(not ok and e:find('zt.mask: back must be an integer, not a fraction', 1, "
               "true), e)\n"
               "ok, e = pcall(zt.mask, 'a\\0b', 1, 1)\n"
               "assert(not ok and e:find('not UTF-8 text', 1, true), e)\n"
               "zt.route('GET', '/m', { role = 'public' }, function(req)\n"
               "  return 200, { zt.mask('13812345678', 3, 4), zt.mask('张三丰', 1, 1),\n"
               "                zt.mask('张三', 1, 1), zt.mask('', 2, 2) }\n"
               "end)\n");
    expect(f, "GET", "/m", NULL, 200, "[\"138****5678\",\"张*丰\",\"张*\",\"\"]");
}

/* The worked example of docs/lua-api.md, as a reader would copy it: it stores a hall, and
 * refuses a name or hours no one should read (controls, direction overrides). */
static void doc_worked_example(void **state)
{
    fx *f = *state;
    char *code = doc_example("`lua/plugins/halls/init.lua`:");
    if (!code) skip();
    zt_optval vals[] = {
        {.name = "default_hours", .type = ZT_OPT_STRING, .set = true, .s = "08:30-17:30"}};
    f->p.opts = vals;
    f->p.nopts = 1;
    init_ok(f, code);
    free(code);
    const char *roles[] = {"hall_admin"};
    zt_caller wang = {"01J9Z8M3Q4XKQ7T2V6C5W8E0RD",
                      "staff",
                      "wang",
                      "王",
                      NULL,
                      roles,
                      1,
                      NULL,
                      NULL,
                      "internal"};
    f->caller = &wang;
    treq *t = call(f, "PUT", "/halls/341122", "{\"name\":\"城关镇便民服务中心\"}", NULL, NULL);
    assert_int_equal(t->r.status, 200);
    assert_non_null(strstr(body_of(t), "\"hours\":\"08:30-17:30\""));
    done(t);
    expect_problem(f, "PUT", "/halls/341122", "{\"name\":\"\"}", 422, "invalid-hall",
                   "name is empty");
    expect_problem(f, "PUT", "/halls/341122", "{\"name\":\"admin\\u202egpj.exe\"}", 422,
                   "invalid-hall", "name holds a text-direction control character");
    expect_problem(f, "PUT", "/halls/341122", "{\"name\":\"a\\nb\"}", 422, "invalid-hall",
                   "name holds a control character");
    expect_problem(f, "PUT", "/halls/341122", "{\"name\":\"x\",\"hours\":\"9\\u202e5\"}", 422,
                   "invalid-hall", "hours holds a text-direction control character");
    expect_problem(f, "PUT", "/halls/341122", "{\"name\":5}", 422, "invalid-hall",
                   "name is not text");
    expect(f, "GET", "/halls/341122", NULL, 200, NULL);
    f->caller = NULL;
    f->p.opts = NULL;
    f->p.nopts = 0;
}

static void doc_personal_data_example(void **state)
{
    fx *f = *state;
    char *code = doc_example("### zt.crypto: personal data");
    if (!code) skip();
    open_core(f);
    init_ok(f, code);
    free(code);
    const char *number = "11010519491231002X";
    expect(f, "POST", "/people", "{\"name\":\"王芳\",\"id_number\":\"11010519491231002x\"}", 201,
           NULL);
    expect_problem(f, "POST", "/people", "{\"name\":\"王芳\",\"id_number\":\"11010519491231002X\"}",
                   409, "person-exists", "registered already");
    expect_problem(f, "POST", "/people", "{\"name\":\"x\",\"id_number\":\"110105194912310021\"}",
                   422, "invalid-person", "id_number");
    expect_problem(f, "POST", "/people", "[]", 422, "invalid-person", "id_number");
    /* the number is in the store only encrypted: not in clear in the LMDB file */
    char data[160];
    snprintf(data, sizeof data, "%s/data/data.mdb", f->root);
    assert_true(file_holds(data, "王芳")); /* the search does find what is there */
    assert_false(file_holds(data, number));
    assert_false(file_holds(data, "11010519491231002x"));
}

/* ---- patterns: the budgeted matcher ------------------------------------------------------ */

/* Runs a list of cases { op, subject, pattern, arg3, arg4 } and describes each result on a
 * line of its own. The same text runs in the sandbox (the host's matcher) and in a plain
 * Lua state (the standard library's), so it uses no pattern itself. */
static const char *pattern_runner =
    "local function show(v)\n"
    "  if type(v) == 'string' then\n"
    "    local o = {}\n"
    "    for i = 1, #v do\n"
    "      local b = v:byte(i)\n"
    "      o[i] = (b >= 32 and b < 127 and b ~= 92) and string.char(b) or ('\\\\%03d'):format(b)\n"
    "    end\n"
    "    return '\"' .. table.concat(o) .. '\"'\n"
    "  elseif type(v) == 'number' then\n"
    "    return math.type(v) .. ':' .. tostring(v)\n"
    "  end\n"
    "  return tostring(v)\n"
    "end\n"
    "local function all(...)\n"
    "  local o = {}\n"
    "  for i = 1, select('#', ...) do o[i] = show((select(i, ...))) end\n"
    "  return table.concat(o, ',')\n"
    "end\n"
    "local function repl_f(...)\n"
    "  local first = ...\n"
    "  if first == '' then return false end\n"
    "  if select('#', ...) == 2 then return nil end\n"
    "  local o = {}\n"
    "  for i = 1, select('#', ...) do o[i] = tostring((select(i, ...))) end\n"
    "  return '<' .. table.concat(o, '|') .. '>'\n"
    "end\n"
    "local repl_t = { a = 'A', b = false, [''] = 'E', ['('] = 7, [1] = 'one', [2] = 'two' }\n"
    "local function one(c)\n"
    "  local op, s, p, x, y = c[1], c[2], c[3], c[4], c[5]\n"
    "  if op == 'gmatch' then\n"
    "    local it, o = string.gmatch(s, p, x), {}\n"
    "    for k = 1, 60 do\n"
    "      local r = table.pack(it())\n"
    "      if r[1] == nil then break end\n"
    "      o[k] = '{' .. all(table.unpack(r, 1, r.n)) .. '}'\n"
    "    end\n"
    "    return table.concat(o)\n"
    "  elseif op == 'gsubf' then return all(string.gsub(s, p, repl_f, y))\n"
    "  elseif op == 'gsubt' then return all(string.gsub(s, p, repl_t, y))\n"
    "  elseif op == 'method' then return all(s:find(p, x)) .. ';' .. all(s:match(p, x))\n"
    "  end\n"
    "  return all(string[op](s, p, x, y))\n"
    "end\n"
    "function run_cases(cases)\n"
    "  local out = {}\n"
    "  for i, c in ipairs(cases) do\n"
    "    local ok, r = pcall(one, c)\n"
    "    out[i] = ok and r or 'error'\n"
    "  end\n"
    "  return table.concat(out, '\\n')\n"
    "end\n";

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
    return (unsigned)(xorshift(&rng) % n);
}

typedef struct pgen {
    char p[512];
    size_t n;
    unsigned ncap;
    unsigned closed[32]; /* indexes (1-based) of captures closed so far */
    unsigned nclosed;
} pgen;

static void put(pgen *g, char c)
{
    assert_true(g->n + 1 < sizeof g->p);
    g->p[g->n++] = c;
}

/* Bytes subjects are made of: few, so that patterns find things. */
static const char subject_bytes[] = "aaabbc()%.- []^$1_A\n\0\xe4\xff";

static char any_byte(void)
{
    return subject_bytes[rnd(sizeof subject_bytes - 1)];
}

static void gen_set(pgen *g)
{
    put(g, '[');
    if (rnd(4) == 0) put(g, '^');
    if (rnd(6) == 0) put(g, ']'); /* first: a member */
    for (unsigned k = 1 + rnd(4); k > 0; k--) {
        switch (rnd(6)) {
        case 0:
            put(g, 'a' + rnd(3));
            put(g, '-');
            put(g, 'a' + rnd(4));
            break;
        case 1:
            put(g, '%');
            put(g, "adswpxAS]%-^"[rnd(12)]);
            break;
        case 2:
            put(g, '-');
            break;
        default: {
            char c = any_byte();
            if (c == ']' || c == '%' || c == '^' || c == '\0') c = 'b'; /* "[^" negates */
            put(g, c);
        }
        }
    }
    put(g, ']');
}

/* One character class, then perhaps a quantifier. */
static void gen_class(pgen *g)
{
    switch (rnd(8)) {
    case 0:
        put(g, '.');
        break;
    case 1:
    case 2:
        put(g, '%');
        put(g, "acdglpsuwxzACDGLPSUWXZ"[rnd(22)]);
        break;
    case 3:
        gen_set(g);
        break;
    case 4: /* an escaped magic character */
        put(g, '%');
        put(g, "^$*+?.([%-)]"[rnd(12)]);
        break;
    default: {
        char c = any_byte();
        if (strchr("^$*+?.([%-)", c) && c) { /* escape it, or pick a plain one */
            put(g, '%');
        }
        put(g, c);
    }
    }
    unsigned q = rnd(10);
    if (q < 6) put(g, "*+-?"[q % 4]);
}

static void gen_items(pgen *g, unsigned count, int depth)
{
    for (unsigned k = 0; k < count; k++) {
        unsigned r = rnd(100);
        if (r < 58 || g->n > 150) {
            gen_class(g);
        } else if (r < 70 && depth < 2 && g->ncap < 30) {
            unsigned idx = ++g->ncap;
            put(g, '(');
            gen_items(g, 1 + rnd(3), depth + 1);
            put(g, ')');
            g->closed[g->nclosed++] = idx;
        } else if (r < 74 && g->ncap < 30) {
            put(g, '(');
            put(g, ')');
            g->closed[g->nclosed++] = ++g->ncap;
        } else if (r < 80) {
            put(g, '%');
            put(g, 'b');
            put(g, "()[]ab"[rnd(6)]);
            put(g, "()[]ab"[rnd(6)]);
        } else if (r < 86) {
            put(g, '%');
            put(g, 'f');
            gen_set(g);
        } else if (r < 93 && g->nclosed && g->closed[0] <= 9) {
            unsigned c;
            do c = g->closed[rnd(g->nclosed)];
            while (c > 9);
            put(g, '%');
            put(g, (char)('0' + c));
        } else if (g->n > 0 && r < 97) { /* "^" and "$" in the middle stand for themselves */
            put(g, r & 1 ? '^' : '$');
            put(g, 'a');
        } else {
            gen_class(g);
        }
    }
}

static void gen_pattern(pgen *g)
{
    memset(g, 0, sizeof *g);
    if (rnd(4) == 0) put(g, '^');
    if (rnd(12) == 0) put(g, "*+-?"[rnd(4)]); /* a quantifier first is a plain character */
    gen_items(g, 1 + rnd(5), 0);
    if (rnd(5) == 0) put(g, '$');
}

/* s[0..n) as a Lua string literal, every byte but letters and digits escaped. */
static void lua_literal(zt_buf *b, const char *s, size_t n)
{
    assert_int_equal(zt__buf_puts(b, "\""), ZT_OK);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            assert_int_equal(zt__buf_append(b, &s[i], 1), ZT_OK);
        else
            assert_int_equal(zt__buf_printf(b, "\\%03u", c), ZT_OK);
    }
    assert_int_equal(zt__buf_puts(b, "\""), ZT_OK);
}

/* `n` cases as a Lua chunk that returns them. */
static void gen_cases(zt_buf *b, unsigned n)
{
    static const char *const ops[] = {"find", "find",  "match", "match", "gmatch",
                                      "gsub", "gsubf", "gsubt", "method"};
    assert_int_equal(zt__buf_puts(b, "return {\n"), ZT_OK);
    for (unsigned i = 0; i < n; i++) {
        const char *op = ops[rnd(sizeof ops / sizeof ops[0])];
        char subject[64];
        size_t sl = rnd(5) == 0 ? rnd(40) : rnd(12);
        for (size_t k = 0; k < sl; k++) subject[k] = any_byte();
        pgen g;
        gen_pattern(&g);
        assert_int_equal(zt__buf_printf(b, "{'%s',", op), ZT_OK);
        lua_literal(b, subject, sl);
        assert_int_equal(zt__buf_puts(b, ","), ZT_OK);
        lua_literal(b, g.p, g.n);
        if (strcmp(op, "gsub") == 0) { /* a replacement string */
            static const char *const parts[] = {"x", "%0", "%1", "%2", "%%", "<", "%"};
            char r[32] = "";
            for (unsigned k = rnd(4); k > 0; k--) strcat(r, parts[rnd(7)]);
            assert_int_equal(zt__buf_puts(b, ","), ZT_OK);
            lua_literal(b, r, strlen(r));
        } else {
            static const long inits[] = {1, 2, 0, -1, -2, -30, 3, 100};
            if (rnd(2))
                assert_int_equal(zt__buf_puts(b, ",nil"), ZT_OK);
            else
                assert_int_equal(zt__buf_printf(b, ",%ld", inits[rnd(8)]), ZT_OK);
        }
        if (op[0] == 'g' && op[1] == 's' && rnd(3) == 0)
            assert_int_equal(zt__buf_printf(b, ",%u", rnd(3)), ZT_OK); /* at most n */
        else if (strcmp(op, "find") == 0 && rnd(6) == 0)
            assert_int_equal(zt__buf_puts(b, ",true"), ZT_OK); /* plain */
        assert_int_equal(zt__buf_puts(b, "},\n"), ZT_OK);
    }
    assert_int_equal(zt__buf_puts(b, "}\n"), ZT_OK);
}

/* What the standard library makes of the cases, from a plain Lua state of the test's own. */
static char *reference_results(lua_State *ref, const zt_buf *cases)
{
    lua_getglobal(ref, "run_cases");
    if (luaL_loadbuffer(ref, cases->data, strlen(cases->data), "=cases") != LUA_OK ||
        lua_pcall(ref, 0, 1, 0) != LUA_OK || lua_pcall(ref, 1, 1, 0) != LUA_OK)
        fail_msg("reference: %s", lua_tostring(ref, -1));
    char *out = strdup(lua_tostring(ref, -1));
    lua_pop(ref, 1);
    return out;
}

/* Line `i` (0-based) of text, into out. */
static void line_of(const char *text, unsigned i, char *out, size_t outlen)
{
    while (i-- && text) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    if (!text) text = "(none)";
    size_t n = strcspn(text, "\n");
    snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1), text);
}

/* Corners the generator seldom reaches, as a chunk of cases. */
static const char *const fixed_cases =
    "return {\n"
    "{'find', 'a-b(x)', '%b()-'}, {'match', '(x)-y', '%)-'}, {'gsub', 'hello world', '(o)(.-)',"
    " '%2%1'},\n"
    "{'match', '[[x]]', '[]]+'}, {'match', 'a]b', '[^]]+'}, {'gsub', 'abc', '%f[%w]', '<'},\n"
    "{'gsub', 'THE (quick) fox', '%f[%a]%a+%f[%A]', 'W'}, {'find', 'x', 'x$$'},\n"
    "{'match', 'a$$', '$$'}, {'match', 'a^b', 'a^b'}, {'gmatch', 'abc', '^.'},\n"
    "{'match', 'aaa', 'a-$'}, {'match', 'aaab', 'a-b'}, {'gsub', 'abc', '', '-'},\n"
    "{'gsub', 'abc', '.-', '-'}, {'gsub', 'a b  c', '%s*', '_'}, {'gmatch', 'a b  c', '%s*'},\n"
    "{'find', 'abc', 'b', -1}, {'find', 'abc', '', 10}, {'find', 'abc', '', 4},\n"
    "{'find', 'abc', '', -10}, {'match', 'abc', '()', 4}, {'gmatch', 'abc', '()', 3},\n"
    "{'gmatch', 'abc', '.', 9}, {'gsub', 'abc', '%w', '%%%0'}, {'gsub', 'abc', '%w', '%1'},\n"
    "{'match', '  trim me  ', '^%s*(.-)%s*$'}, {'find', 'a.b', '.'}, {'find', 'a+b', '+', 1,"
    " true},\n"
    "{'match', 'x((a))y', '%b()'}, {'match', \"'q' 'r'\", \"%b''\"},\n"
    "{'match', 'a\\nb', 'a.b'}, {'find', 'x\\228\\255', '[\\128-\\255]+'},\n"
    "{'match', '-', '[a-]'}, {'match', '-', '[%a-z]'}, {'match', 'z', '[%a-z]'},\n"
    "{'match', 'b', '[a-%]]'}, {'match', ']', '[a-%%]'}, {'match', '%', '[%%-a]'},\n"
    "{'match', 'aXb', '%u'}, {'match', 'a\\0b', '%Z+'}, {'match', 'a\\0b', '[%z]'},\n"
    "{'match', 'a\\0b', '\\0'}, {'gsub', 'a\\0b\\0', '%c', '.'},\n"
    "{'match', 'aaa', '(a*(.)%2)'}, {'match', 'xyzzy', '(z)%1'}, {'match', 'abab', '()(b)%2'},\n"
    "{'match', 'ab', '()%1'}, {'gsubf', 'hello world', '()(%w+)()'}, {'gsubt', 'abc', '()'},\n"
    "{'gsubt', 'a b', '%w'}, {'gsubf', 'abc', '%w', 2}, {'gsub', 'abc', '^%w', 'X'},\n"
    "{'gsub', 'abc', 'x*', '-', 2}, {'gsub', 'abc', '$', '!'}, {'gsub', '', '', 'e'},\n"
    "{'method', 'key = value', '(%w+)%s*=%s*(%w+)'}, {'find', '**', '*+'},\n"
    "{'match', '-a', '-a'}, {'match', '?', '?"
    "?'}, {'match', '++', '++'},\n"
    "{'match', 'x', '[^%s]'}, {'match', ' ', '[^%S]'}, {'match', '^', '[%^]'},\n"
    "}\n";

/* Run a chunk of cases in the sandbox (POST /cases) and in ref; every line must agree.
 * Returns how many results are something other than nil or an error. */
static unsigned compare_cases(fx *f, lua_State *ref, const char *chunk, unsigned n)
{
    zt_buf cases = {0};
    assert_int_equal(zt__buf_append(&cases, chunk, strlen(chunk) + 1), ZT_OK);
    char *want = reference_results(ref, &cases);
    treq *t = call(f, "POST", "/cases", cases.data, NULL, NULL);
    if (t->r.status != 200) fail_msg("status %d: %s", t->r.status, body_of(t));
    const char *got = body_of(t);
    unsigned found = 0;
    for (unsigned i = 0; i < n; i++) {
        char a[2048], b[2048], c[2048];
        line_of(got, i, a, sizeof a);
        line_of(want, i, b, sizeof b);
        if (strcmp(a, b) != 0) {
            line_of(cases.data, i + 1, c, sizeof c); /* a case a line, when generated */
            fail_msg("case %u (%s)\n  host:    %s\n  library: %s", i + 1, c, a, b);
        }
        found += strcmp(b, "nil") != 0 && strcmp(b, "error") != 0 && b[0];
    }
    assert_string_equal(got, want); /* and nothing more */
    free(want);
    done(t);
    zt__buf_free(&cases);
    return found;
}

static void patterns_agree_with_the_string_library(void **state)
{
    fx *f = *state;
    f->conf.lua_instructions = 200000000; /* thousands of cases in a call: the budget is on */
    char init[8192];
    snprintf(init, sizeof init,
             "%s\n"
             "zt.route('POST', '/cases', function(req)\n"
             "  return 200, run_cases(load(req.body)())\n"
             "end)\n",
             pattern_runner);
    init_ok(f, init);
    lua_State *ref = luaL_newstate();
    assert_non_null(ref);
    luaL_openlibs(ref);
    assert_int_equal(luaL_dostring(ref, pattern_runner), LUA_OK);

    unsigned nfixed = 0;
    for (const char *c = fixed_cases; *c; c++) nfixed += c[0] == '}' && c[1] == ',';
    assert_true(nfixed >= 60);
    assert_true(compare_cases(f, ref, fixed_cases, nfixed) > nfixed / 2);
    unsigned total = 0, matched = 0;
    for (int batch = 0; batch < 20; batch++) {
        zt_buf cases = {0};
        gen_cases(&cases, 200);
        assert_int_equal(zt__buf_append(&cases, "", 1), ZT_OK);
        matched += compare_cases(f, ref, cases.data, 200);
        total += 200;
        zt__buf_free(&cases);
    }
    lua_close(ref);
    assert_int_equal(total, 4000);
    assert_true(matched > total / 4); /* the cases do find things, not only nil */
}

static void patterns_cover_the_syntax(void **state)
{
    fx *f = *state;
    init_ok(
        f, "local function same(a, b) assert(a == b, tostring(a) .. ' ~= ' .. tostring(b)) end\n"
           "same(('hello world'):find('o w'), 5)\n"
           "same(select(2, ('hello world'):find('o w')), 7)\n"
           "same(('x = 42'):match('^(%w+)%s*=%s*(%d+)$'), 'x')\n"
           "same(select(2, ('x = 42'):match('^(%w+)%s*=%s*(%d+)$')), '42')\n"
           "same(('THE (quick) fox'):find('%((%a+)%)'), 5)\n"
           "same(('f(a(b)c)d'):match('%b()'), '(a(b)c)')\n"
           "same(('THE (quick) fox'):gsub('%f[%a]%a+', string.lower), 'the (quick) fox')\n"
           "same(('hello'):match('()ll()'), 3)\n"
           "same(select(2, ('hello'):match('()ll()')), 5)\n"
           "same(('say \"hi\" now'):match('([\"\\'])(.-)%1'), '\"')\n"
           "same(('abc'):gsub('%w', '%0%0'), 'aabbcc')\n"
           "same(('abc'):gsub('', '-'), '-a-b-c-')\n"
           "same(('hello world'):gsub('o', { o = '0' }), 'hell0 w0rld')\n"
           "same(('abc'):gsub('b', '%%'), 'a%c')\n"
           "same(select(2, ('a,b,,c'):gsub(',', ';', 2)), 2)\n"
           "local words = {}\n"
           "for k, v in ('a=1, b=2, c=3'):gmatch('(%w+)=(%w+)') do words[#words + 1] = k .. v end\n"
           "same(table.concat(words, ' '), 'a1 b2 c3')\n"
           "local n = 0 for w in ('one two three'):gmatch('%a+', 5) do n = n + 1 end\n"
           "same(n, 2)\n"
           "same(string.gmatch('^a^a', '^a')(), '^a') -- no anchor in gmatch\n"
           "same(('a.b'):find('.', 1, true), 2)\n"
           "same(('a+b'):find('+', 1), 2) -- no specials: a plain search\n"
           "same(('[x]'):match('[]x[]+'), '[x]')\n"
           "same(('a-b'):match('[a-]+'), 'a-')\n"
           "same(('x%y'):match('[%%]'), '%')\n"
           "same(('\\0a\\0'):find('a%z'), 2) -- %z, the NUL byte, is still there in 5.4\n"
           "same(('a\\0b'):find('\\0', 1, true), 2)\n"
           "same(('a\\0b'):match('.%z?(.)'), 'b')\n"
           "same(('end$'):match('d%$$'), 'd$')\n"
           "same(('a$b'):match('a$b'), 'a$b')\n"
           "same(('caret^'):match('t^'), 't^')\n"
           "-- deeper than the standard library's limit of 200 nested items\n"
           "same(#(('a'):rep(300):match(('a?'):rep(250))), 250)\n"
           "same(#(('a'):rep(40):match(('(a)'):rep(32))), 1)\n"
           "-- arguments are checked as the standard library checks them\n"
           "local function err(f, want)\n"
           "  local ok, e = pcall(f)\n"
           "  assert(not ok and e:find(want, 1, true), want .. ': ' .. tostring(e))\n"
           "end\n"
           "err(function() ('x'):find('x%') end, \"malformed pattern (ends with '%')\")\n"
           "err(function() ('abc'):find('z%') end, 'ends with') -- even where not reached\n"
           "err(function() ('a'):find('[a') end, \"malformed pattern (missing ']')\")\n"
           "err(function() ('a'):find('[]') end, \"missing ']'\")\n"
           "err(function() ('a'):find('(a)%2') end, 'invalid capture index %2')\n"
           "err(function() ('a'):find('(a%1)') end, 'invalid capture index %1')\n"
           "err(function() ('a'):find('%0') end, 'invalid capture index %0')\n"
           "err(function() ('a'):match('a)') end, 'invalid pattern capture')\n"
           "err(function() ('a'):find('(a') end, 'unfinished capture')\n"
           "err(function() ('a'):find('%fa') end, \"missing '[' after '%f' in pattern\")\n"
           "err(function() ('a'):find('%bx') end, \"missing arguments to '%b'\")\n"
           "err(function() ('a'):find(('()'):rep(33)) end, 'too many captures')\n"
           "err(function() ('a'):gsub('a', '%2') end, 'invalid capture index %2')\n"
           "err(function() ('a'):gsub('a', '%x') end, \"invalid use of '%' in replacement\")\n"
           "err(function() ('a'):gsub('a', {a = {}}) end, 'invalid replacement value (a table)')\n"
           "err(function() ('a'):gsub('a') end, 'string/function/table expected')\n"
           "err(function() ('a'):find({}) end, 'string expected')\n"
           "err(function() ('a'):find('a', 'x') end, 'number expected')\n"
           "err(function() string.gmatch(nil, 'a') end, 'string expected')\n"
           "same(('a'):gsub('x', '%2'), 'a') -- a replacement is read only for a match\n"
           "assert(getmetatable('').__index == string and ('').find == string.find)\n");
}

static void patterns_run_within_the_budget(void **state)
{
    fx *f = *state;
    /* each of these would take seconds to forever inside one C call */
    static const char *const slow[] = {
        "local s = ('a'):rep(20000)\nlocal x = s:find('a*b')\n",
        "local s = ('a'):rep(20000)\nlocal x = string.match(s, '.-b')\n",
        "local s = ('a'):rep(20000)\nlocal x = s:gsub('a*b', 'x')\n",
        "local s = ('a'):rep(20000)\nfor m in s:gmatch('a*b') do end\n",
        "local s = ('a'):rep(40)\nlocal x = s:match(('a*'):rep(25) .. 'b')\n",
        "local s = ('a'):rep(5000)\nlocal x = s:find('(a*)%1b')\n",
        "local s = ('('):rep(20000)\nlocal x = s:find('%b()')\n",
        "local s = ('ab'):rep(10000)\nlocal x = s:find('[ab]-[ab]-c')\n",
        "local s = ('a'):rep(1000000)\nfor i = 1, 1e7 do s:find('b', 1, true) end\n",
        "local p = ('a?'):rep(5000)\nfor i = 1, 1e7 do ('b'):match(p) end\n",
        "local s = ('a'):rep(20000)\nlocal x = s:gsub('a*b', function() end)\n",
    };
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++)
        init_fails(f, slow[i], "init.lua:2: instruction budget exceeded");
    /* caught, the error comes back at once: the script cannot go on matching */
    init_fails(f,
               "local s = ('a'):rep(20000)\n"
               "while true do pcall(string.find, s, 'a*b') end\n",
               "instruction budget exceeded");
    init_fails(f,
               "local ok, e = pcall(string.find, ('a'):rep(20000), 'a*b')\n"
               "error('went on after: ' .. tostring(e))\n",
               "init.lua:2: instruction budget exceeded");
    /* many small matches cost what they do: this fits the test's 2 000 000 */
    init_ok(f, "local n = 0\n"
               "for i = 1, 20000 do\n"
               "  local k, v = ('key=value'):match('^(%w+)=(%w+)$')\n"
               "  if k == 'key' and ('abc'):find('b', 1, true) == 2 then n = n + 1 end\n"
               "end\n"
               "assert(n == 20000)\n");
}

static void patterns_in_a_handler(void **state)
{
    fx *f = *state;
    init_ok(f, "zt.route('GET', '/slow', function()\n"
               "  return 200, tostring(('a'):rep(30000):find('a*b'))\n"
               "end)\n"
               "zt.route('GET', '/fast', function(req)\n"
               "  return 200, (req.path:gsub('/', '#'))\n"
               "end)\n");
    for (int i = 0; i < 3; i++) {
        expect_problem(f, "GET", "/slow", NULL, 500, "lua-error", "see the log");
        expect(f, "GET", "/fast", NULL, 200, "#fast");
    }
}

/* ---- the example plugin ---------------------------------------------------------------- */

static void notice_plugin(void **state)
{
    fx *f = *state;
    const char *src = getenv("ZT_SRC");
    if (!src) skip();
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/lua", src);
    f->conf.lua_dir = dir;
    f->p.name = "notice";
    if (zt__lua_manifest(&f->srv, &f->p, f->err, sizeof f->err) != ZT_OK) fail_msg("%s", f->err);
    assert_int_equal(f->p.noptions, 2);
    assert_string_equal(f->p.options[0].name, "max_body");
    assert_string_equal(f->p.options[0].def, "20000");
    assert_string_equal(f->p.options[1].name, "page_size");
    assert_string_equal(f->p.options[1].def, "20");
    /* what config.c would make of a county's notice = { page_size = 2, max_body = 50 } */
    zt_optval vals[] = {{.name = "max_body", .type = ZT_OPT_INT, .set = true, .i = 50},
                        {.name = "page_size", .type = ZT_OPT_INT, .set = true, .i = 2}};
    f->p.opts = vals;
    f->p.nopts = 2;
    f->p.in_init = true;
    int rc = zt__lua_init(&f->srv, &f->p, f->err, sizeof f->err);
    f->p.in_init = false;
    if (rc != ZT_OK) fail_msg("%s", f->err);

    expect(f, "GET", "/notices", NULL, 200, "{\"items\":[],\"next\":null}");
    /* the core lets only a notice_editor reach the writes; one of no department here (the
     * department scoping is the e2e test's, with a real department tree) */
    const char *roles[] = {"notice_editor"};
    zt_caller editor = {
        "01J9Z8M3Q4XKQ7T2V6C5W8E0RC", "staff", "ed", "Ed", NULL, roles, 1, NULL, NULL, "internal"};
    f->caller = &editor;
    /* the department's name comes from its record: an editor of none puts no name on it */
    treq *bad = call(f, "POST", "/notices",
                     "{\"title\":\"t\",\"body\":\"b\",\"department\":\"民政局\"}", NULL, NULL);
    assert_int_equal(bad->r.status, 422);
    done(bad);
    char ids[3][27];
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"title\":\"通知 %d\",\"body\":\"text %d\"}", i, i);
        treq *t = call(f, "POST", "/notices", body, NULL, NULL);
        if (t->r.status != 201) fail_msg("POST: %d %s", t->r.status, body_of(t));
        cJSON *j = cJSON_Parse(body_of(t));
        assert_non_null(j);
        snprintf(ids[i], sizeof ids[i], "%s", cJSON_GetObjectItem(j, "id")->valuestring);
        assert_int_equal(strlen(ids[i]), 26);
        char title[32];
        snprintf(title, sizeof title, "通知 %d", i);
        assert_string_equal(cJSON_GetObjectItem(j, "title")->valuestring, title);
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "created_at")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "department")));
        char loc[64];
        snprintf(loc, sizeof loc, "Location: /notices/%s\r\n", ids[i]);
        assert_non_null(strstr(t->r.res_hdrs.data, loc));
        cJSON_Delete(j);
        done(t);
    }
    /* newest first, two a page (page_size), then the rest */
    char target[128];
    treq *t = call(f, "GET", "/notices", NULL, NULL, NULL);
    cJSON *j = cJSON_Parse(body_of(t));
    cJSON *items = cJSON_GetObjectItem(j, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "id")->valuestring,
                        ids[2]);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 1), "id")->valuestring,
                        ids[1]);
    assert_string_equal(cJSON_GetObjectItem(j, "next")->valuestring, ids[1]);
    cJSON_Delete(j);
    done(t);
    snprintf(target, sizeof target, "/notices?before=%s", ids[1]);
    t = call(f, "GET", target, NULL, NULL, NULL);
    j = cJSON_Parse(body_of(t));
    items = cJSON_GetObjectItem(j, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "id")->valuestring,
                        ids[0]);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "next")));
    cJSON_Delete(j);
    done(t);
    t = call(f, "GET", "/notices?limit=3", NULL, NULL, NULL);
    j = cJSON_Parse(body_of(t));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "next")));
    cJSON_Delete(j);
    done(t);
    expect_problem(f, "GET", "/notices?limit=0", NULL, 400, "invalid-query", "limit");
    expect_problem(f, "GET", "/notices?limit=101", NULL, 400, "invalid-query", "limit");
    expect_problem(f, "GET", "/notices?limit=x", NULL, 400, "invalid-query", "limit");

    snprintf(target, sizeof target, "/notices/%s", ids[1]);
    t = call(f, "GET", target, NULL, NULL, NULL);
    assert_int_equal(t->r.status, 200);
    assert_non_null(strstr(body_of(t), "\"title\":\"通知 1\""));
    done(t);
    expect_problem(f, "GET", "/notices/NOPE", NULL, 404, "not-found", "NOPE");

    /* validation: each failure names its field */
    expect_problem(f, "POST", "/notices", "5", 422, "invalid-notice", "JSON object");
    expect_problem(f, "POST", "/notices", "[1]", 422, "invalid-notice", "title");
    expect_problem(f, "POST", "/notices", "{\"body\":\"x\"}", 422, "invalid-notice", "title");
    expect_problem(f, "POST", "/notices", "{\"title\":\"\",\"body\":\"x\"}", 422, "invalid-notice",
                   "title");
    char long_title[1024] = "{\"title\":\"";
    for (int i = 0; i < 201; i++) strcat(long_title, "政");
    strcat(long_title, "\",\"body\":\"x\"}");
    expect_problem(f, "POST", "/notices", long_title, 422, "invalid-notice", "title");
    expect_problem(f, "POST", "/notices", "{\"title\":\"t\"}", 422, "invalid-notice", "body");
    expect_problem(
        f, "POST", "/notices",
        "{\"title\":\"t\",\"body\":\"0123456789012345678901234567890123456789012345678901\"}", 422,
        "invalid-notice", "body must be text of at most 50 bytes");
    expect_problem(f, "POST", "/notices", "{\"title\":\"t\",\"body\":\"x\",\"department\":5}", 422,
                   "invalid-notice", "department");
    expect_problem(f, "POST", "/notices", "{\"title\":", 400, "invalid-json", NULL);

    expect(f, "DELETE", target, NULL, 204, "");
    expect_problem(f, "DELETE", target, NULL, 404, "not-found", ids[1]);
    expect_problem(f, "GET", target, NULL, 404, "not-found", ids[1]);
    f->caller = NULL;
    f->p.opts = NULL;
    f->p.nopts = 0;
}

int main(void)
{
    /* the failures these tests provoke are logged; ZT_TEST_LOG=1 shows them */
    zt__log_level = getenv("ZT_TEST_LOG") ? ZT_LOG_DEBUG : ZT_LOG_ERROR + 1;
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(sandbox_has_no_way_out),
        T(require_only_inside_lua),
        T(manifest_reads_every_type),
        T(manifest_errors_name_the_line),
        T(manifest_needs_and_wants),
        T(budget_stops_endless_loops),
        T(memory_cap_stops_a_bomb),
        T(logs_go_to_the_node_log),
        T(log_lines_are_utf8),
        T(json_round_trip),
        T(json_refuses_what_is_not_json),
        T(init_mistakes_say_why),
        T(route_roles_are_role_names),
        T(handler_mistakes_name_their_line),
        T(json_text_is_what_c_prints),
        T(json_objects_sort_their_keys),
        T(json_large_and_broken_answers),
        T(config_is_a_read_only_view),
        T(handler_request_and_response),
        T(handler_errors_fail_only_their_request),
        T(db_values_and_their_encoding),
        T(db_iteration),
        T(auth_answers_from_the_core),
        T(audit_note_names_the_record),
        T(crypto_is_the_plugins_own),
        T(crypto_needs_the_keys),
        T(arguments_are_never_coerced),
        T(init_arguments_are_never_coerced),
        T(validators_agree_with_the_core),
        T(seals_from_lua_check_in_the_core),
        T(seals_need_the_keys),
        T(mask_in_lua),
        T(doc_personal_data_example),
        T(doc_worked_example),
        T(patterns_agree_with_the_string_library),
        T(patterns_cover_the_syntax),
        T(patterns_run_within_the_budget),
        T(patterns_in_a_handler),
        T(notice_plugin),
        T(script_runs_in_the_sandbox),
        T(script_calls_are_budgeted),
        T(script_json_both_ways),
        T(bus_functions_check_where_and_what),
    };
    if (getenv("ZT_TEST_FILTER")) cmocka_set_test_filter(getenv("ZT_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
