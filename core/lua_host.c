/* lua_host.c: the Lua plugin host: one sandboxed, budgeted state per plugin, and the zt module. */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sodium.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define HOOK_STEP    1000       /* instructions between two budget checks */
#define JSON_DEPTH   200        /* deepest table zt.json.encode follows (cycles end here) */
#define MAX_FILE     (8u << 20) /* largest Lua source file the host reads */
#define KEY_MAX      511        /* LMDB's key limit, as zt.h states it */
#define INT53        9007199254740992.0
#define DEFAULT_TYPE "text/plain; charset=utf-8"
#define SCRATCH_KEEP (64u << 10) /* a scratch buffer larger than this is freed after use */
#define POOL_STEP    16          /* size classes of the small blocks a state reuses */
#define POOL_MAX     256         /* (see block_free) */

/* ---- the plugin's state ------------------------------------------------------------ */

/* A route a plugin declared: the router's ud for the trampoline. */
struct lua_route {
    struct lua_route *next;
    struct zt_lua_plugin *lp;
    int ref; /* the handler function, in the registry */
    char *method;
    char *pattern;
};

/* A function of the plugin that the core calls: a zt.on handler or a zt.provide service
 * (the bus's or the services' ud for the trampolines). */
struct lua_hook {
    struct lua_hook *next;
    struct zt_lua_plugin *lp;
    int ref;    /* the function, in the registry */
    char *name; /* the pattern or the service */
};

struct db_iter;

struct zt_lua_plugin {
    lua_State *L;
    zt_plugin *p;
    zt_server *srv;
    size_t used, limit; /* bytes the state holds, and its cap (0: none) */
    uint64_t budget;    /* instructions per call into Lua (0: none) */
    uint64_t left;      /* of the budget, in the current call */
    bool exhausted;     /* the budget is spent: every instruction raises */
    bool oom;           /* the allocator refused something during this call */
    zt_req *req;        /* the work running now (request, event, service call), or NULL */
    uint64_t serial;    /* the current work's number, so that stale iterators are caught */
    uint64_t serials;   /* numbers given out so far */
    unsigned depth;     /* works running now: more than one when a call came back in */
    int store_err;      /* storage full (ZT_EFULL) or unavailable (ZT_EBUSY) in this call */
    struct lua_route *routes;
    struct lua_hook *hooks;  /* zt.on subscriptions and zt.provide services */
    struct lua_hook *starts; /* zt.at_start functions, in the order declared */
    struct db_iter *iters;   /* cursors open in the current work */
    char warn[256];          /* a warning being assembled from its pieces */
    size_t nwarn;
    char *roles_seen[32]; /* roles zt.auth.has_role was asked about, checked once each */
    size_t nroles_seen;

    /* while req is set: its req table (lua_topointer; NULL when the work has none), its
     * route (NULL but for a route's handler), and whether its caller table is made */
    const void *curreq;
    const struct lua_route *route;
    bool caller_made;
    int req_meta;       /* the metatable of req tables (also at K_REQ), as a registry ref */
    const void *req_mt; /* and its address */

    void *pool[POOL_MAX / POOL_STEP + 1]; /* free blocks by size class (block_free) */
    size_t pooled;                        /* bytes in them */

    zt_buf scratch;    /* JSON text being written (json_encode_text) */
    const void *null;  /* zt.json.null, and the metatable of zt.json.array's tables */
    const void *array; /* (lua_topointer: anchored in the registry for good) */
};

/* Registry keys: the addresses of these are unique light userdata, so looking one up never
 * creates a string (and so never allocates, which matters outside protected calls). */
static char K_NULL, K_ARRAY, K_PROBLEM, K_DB, K_ITER, K_BOX, K_REQ, K_CALLER, K_LOADED, K_LOADING,
    K_FORMAT, K_ANCHOR;

static struct zt_lua_plugin *plugin_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* Small blocks freed by a state are kept for its next allocations of the same size class:
 * a handler's few tables are then made and collected without malloc and free, which cost
 * more than the rest of a small handler. A block of size s <= POOL_MAX always has room
 * for its whole class (POOL_STEP * pool_class(s) bytes), so it can serve any size of that
 * class. At most POOL_KEEP bytes wait (what a burst of garbage frees beyond that goes back
 * to malloc). Under AddressSanitizer there is no pool, so that it sees every use of a
 * freed Lua object; valgrind checks the pool itself (its blocks are malloc's). */
#ifdef __SANITIZE_ADDRESS__
#define POOL_KEEP 0
#else
#define POOL_KEEP (256u << 10)
#endif

static inline size_t pool_class(size_t n)
{
    return (n + POOL_STEP - 1) / POOL_STEP;
}

/* What a Lua object held is wiped when it is freed or pooled (a password or an ID number
 * in a string the collector let go stays in no memory: GB/T 22239 剩余信息保护). */
static void block_free(struct zt_lua_plugin *lp, void *p, size_t size)
{
    if (!p) return;
    sodium_memzero(p, size);
    size_t c = size <= POOL_MAX ? pool_class(size) : 0;
    if (c && lp->pooled + c * POOL_STEP <= POOL_KEEP) {
        *(void **)p = lp->pool[c];
        lp->pool[c] = p;
        lp->pooled += c * POOL_STEP;
        return;
    }
    free(p);
}

/* A block for nsize > 0 bytes with the contents of p (osize bytes; p may be NULL).
 * NULL when memory is short, but never when shrinking. */
static void *block_resize(struct zt_lua_plugin *lp, void *p, size_t osize, size_t nsize)
{
    size_t oc = p && osize <= POOL_MAX ? pool_class(osize) : 0;
    size_t nc = nsize <= POOL_MAX ? pool_class(nsize) : 0;
    if (nc ? nc == oc : nsize == osize && p) {
        if (nsize < osize) sodium_memzero((char *)p + nsize, osize - nsize);
        return p;
    }
    void *np;
    if (nc && lp->pool[nc]) {
        np = lp->pool[nc];
        lp->pool[nc] = *(void **)np;
        lp->pooled -= nc * POOL_STEP;
    } else {
        /* not realloc: it would leave the old block as it was */
        np = malloc(nc ? nc * POOL_STEP : nsize);
        if (!np && nsize < osize) sodium_memzero((char *)p + nsize, osize - nsize);
        if (!np) return nsize <= osize ? p : NULL; /* the old block is large enough */
    }
    if (p) {
        memcpy(np, p, osize < nsize ? osize : nsize);
        block_free(lp, p, osize);
    }
    return np;
}

static void pool_drain(struct zt_lua_plugin *lp)
{
    for (size_t c = 0; c < sizeof lp->pool / sizeof lp->pool[0]; c++)
        while (lp->pool[c]) {
            void *p = lp->pool[c];
            lp->pool[c] = *(void **)p;
            free(p);
        }
    lp->pooled = 0;
}

/* The allocator: the cap counts every byte the state holds (not the pool, which it no
 * longer holds). Shrinking never fails. */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct zt_lua_plugin *lp = ud;
    if (!ptr) osize = 0; /* then osize only says what kind of object is made */
    if (nsize == 0) {
        block_free(lp, ptr, osize);
        lp->used -= osize;
        return NULL;
    }
    if (nsize > osize && lp->limit &&
        (lp->used > lp->limit || nsize - osize > lp->limit - lp->used)) {
        lp->oom = true;
        return NULL;
    }
    void *np = block_resize(lp, ptr, osize, nsize);
    if (!np) {
        lp->oom = true;
        return NULL;
    }
    lp->used = lp->used - osize + nsize;
    return np;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* The budget is spent: say so where the code is (level 0 in a hook, 1 in a C function),
 * and make every later instruction of this thread raise too. */
static int budget_raise(lua_State *L, int level)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    lp->left = 0;
    lp->exhausted = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_where(L, level);
    lua_pushliteral(L, "instruction budget exceeded");
    lua_concat(L, 2);
    return lua_error(L);
}

uint64_t zt__lua_budget_take(lua_State *L, uint64_t least, uint64_t most)
{
    assert(least <= most);
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->budget) return UINT64_MAX;
    if (lp->exhausted || lp->left < least) budget_raise(L, 1);
    uint64_t take = most < lp->left ? most : lp->left;
    lp->left -= take;
    return take;
}

void zt__lua_budget_give(lua_State *L, uint64_t n)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (lp->budget) lp->left += n;
}

/* The instruction budget. Once spent, the hook fires on every instruction and raises each
 * time, so that a script catching the error with pcall cannot go on: the error comes back
 * at its next instruction until control is back in C. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->exhausted) {
        uint64_t step = (uint64_t)lua_gethookcount(L);
        if (lp->left > step) {
            lp->left -= step;
            /* a coroutine made in an earlier, exhausted call may still count by one */
            if (step == 1 && lp->budget > 1) {
                int s = lp->budget < HOOK_STEP ? (int)lp->budget : HOOK_STEP;
                lua_sethook(L, budget_hook, LUA_MASKCOUNT, s);
            }
            return;
        }
    }
    budget_raise(L, 0);
}

static void budget_reset(struct zt_lua_plugin *lp)
{
    lp->left = lp->budget;
    lp->exhausted = false;
    lp->oom = false;
    if (lp->budget) {
        int step = lp->budget < HOOK_STEP ? (int)lp->budget : HOOK_STEP;
        lua_sethook(lp->L, budget_hook, LUA_MASKCOUNT, step);
    }
}

/* Errors become "message\nstack traceback: ..."; problems (zt.problem) pass unchanged. */
static int msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &K_PROBLEM);
        bool problem = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (problem) return 1;
    }
    const char *msg = luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Every entry into Lua goes through here: the function and its nargs arguments on top of
 * L run protected with the traceback handler, leaving nresults or the error value (the
 * caller pops it). A call from outside gets a fresh budget; one that came back in while
 * the state runs (a service calling the plugin again: depth > 1) spends what is left. */
static int lp_pcallv(struct zt_lua_plugin *lp, lua_State *L, int nargs, int nresults)
{
    if (lp->depth <= 1) budget_reset(lp);
    int fn = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, fn);
    int st = lua_pcall(L, nargs, nresults, fn);
    lua_remove(L, fn);
    return st;
}

/* fn(ud), protected, on the state's main thread (see lp_pcallv). */
static int lp_pcall(struct zt_lua_plugin *lp, lua_CFunction fn, void *ud)
{
    lua_pushcfunction(lp->L, fn);
    lua_pushlightuserdata(lp->L, ud);
    return lp_pcallv(lp, lp->L, 1, 0);
}

/* After a call: a refused allocation leaves garbage that the next call should not meet. */
static void lp_after(struct zt_lua_plugin *lp)
{
    if (lp->oom) lua_gc(lp->L, LUA_GCCOLLECT);
    lp->oom = false;
}

/* The first line of an error message, for err buffers (the log gets the traceback). */
static void first_part(char *err, size_t errlen, const char *msg)
{
    const char *tb = strstr(msg, "\nstack traceback:");
    int n = tb ? (int)(tb - msg) : (int)strlen(msg);
    snprintf(err, errlen, "%.*s", n, msg);
}

static int l_panic(lua_State *L)
{
    const char *m = lua_tostring(L, -1);
    struct zt_lua_plugin *lp = plugin_of(L);
    zt__log(ZT_LOG_ERROR, lp->p ? lp->p->name : NULL, NULL, "Lua panic: %s", m ? m : "?");
    return 0; /* Lua aborts */
}

static void l_warn(void *ud, const char *msg, int tocont)
{
    struct zt_lua_plugin *lp = ud;
    if (lp->nwarn == 0 && !tocont && msg[0] == '@') return; /* a control message */
    size_t n = strlen(msg), room = sizeof lp->warn - 1 - lp->nwarn;
    if (n > room) n = room;
    memcpy(lp->warn + lp->nwarn, msg, n);
    lp->nwarn += n;
    if (tocont) return;
    lp->warn[lp->nwarn] = 0;
    if (lp->req)
        zt_req_log(lp->req, ZT_LOG_WARN, "Lua warning: %s", lp->warn);
    else
        zt_log(lp->p, ZT_LOG_WARN, "Lua warning: %s", lp->warn);
    lp->nwarn = 0;
}

/* ---- files ------------------------------------------------------------------------- */

static int read_file(const char *path, zt_buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? ZT_ENOTFOUND : ZT_EIO;
    }
    int rc = ZT_OK;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > MAX_FILE) {
            snprintf(err, errlen, "%s: larger than %u bytes", path, MAX_FILE);
            rc = ZT_ETOOBIG;
            break;
        }
        if (zt__buf_append(out, chunk, n)) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = ZT_ENOMEM;
            break;
        }
    }
    if (rc == ZT_OK && ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = ZT_EIO;
    }
    fclose(f);
    if (rc) zt__buf_free(out);
    return rc;
}

int zt__lua_read_source(const char *path, zt_buf *out, char *err, size_t errlen)
{
    return read_file(path, out, err, errlen);
}

static int plugin_file(char *out, size_t n, const zt_server *srv, const char *plugin,
                       const char *file)
{
    int k = snprintf(out, n, "%s/plugins/%s/%s", srv->conf->lua_dir, plugin, file);
    return k < 0 || (size_t)k >= n ? ZT_ETOOBIG : ZT_OK;
}

/* ---- small helpers on Lua values --------------------------------------------------- */

static bool has_meta(lua_State *L, int idx, const void *key)
{
    if (!lua_getmetatable(L, idx)) return false;
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    bool eq = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return eq;
}

static void set_meta(lua_State *L, const void *key)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    lua_setmetatable(L, -2);
}

static void *check_ud(lua_State *L, int idx, const void *key, const char *what)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || !has_meta(L, idx, key)) luaL_typeerror(L, idx, what);
    return lua_touserdata(L, idx);
}

/* "init.lua:12: ": where the nearest Lua code is that called the running C function, also
 * through a pcall (where luaL_where(L, 1) would say nothing); "" if none. */
static const char *push_where(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) return lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    }
    return lua_pushliteral(L, "");
}

/* Arguments of the zt functions, strictly: strings are never taken from numbers, nor
 * numbers from strings, and a mistake names the function, the argument and what it got
 * ("zt.mask: front must be an integer, not string"), where luaL_check* would say "bad
 * argument #2 to '?'" (a function in a table has no name Lua can find). */
static const char *check_str(lua_State *L, int idx, const char *fn, const char *what, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: %s must be a string, not %s", fn, what, luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/* kind: "an integer", or what the integer counts ("an integer number of milliseconds") */
static lua_Integer check_integer(lua_State *L, int idx, const char *fn, const char *what,
                                 const char *kind)
{
    int isint = 0;
    lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
    if (!isint)
        luaL_error(L, "%s: %s must be %s, not %s", fn, what, kind,
                   lua_type(L, idx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, idx));
    return v;
}

static lua_Integer check_int(lua_State *L, int idx, const char *fn, const char *what)
{
    return check_integer(L, idx, fn, what, "an integer");
}

/* t: LUA_TTABLE or LUA_TFUNCTION */
static void check_type(lua_State *L, int idx, int t, const char *fn, const char *what)
{
    if (lua_type(L, idx) != t)
        luaL_error(L, "%s: %s must be a %s, not %s", fn, what, lua_typename(L, t),
                   luaL_typename(L, idx));
}

static void check_any(lua_State *L, int idx, const char *fn, const char *what)
{
    if (lua_type(L, idx) == LUA_TNONE) luaL_error(L, "%s: %s is missing", fn, what);
}

/* A metatable under a registry key; its fields are filled by the caller (left on top). */
static void new_meta(lua_State *L, const void *key, const char *name)
{
    lua_newtable(L);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable"); /* scripts can neither read nor replace it */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* C memory that a Lua error could strand (a cJSON tree, printed text) is held by a box: a
 * userdata whose __gc frees it, so every error path is leak-free. */
typedef struct jbox {
    cJSON *json;
    char *text;
    char *aux;
} jbox;

static void box_clear(jbox *b)
{
    cJSON_Delete(b->json);
    free(b->text);
    free(b->aux);
    b->json = NULL;
    b->text = b->aux = NULL;
}

static int box_gc(lua_State *L)
{
    box_clear(lua_touserdata(L, 1));
    return 0;
}

static jbox *box_new(lua_State *L)
{
    jbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->json = NULL;
    b->text = b->aux = NULL;
    set_meta(L, &K_BOX);
    return b;
}

/* ---- JSON -------------------------------------------------------------------------- */

static cJSON *json_attach(lua_State *L, cJSON *parent, const char *key, cJSON *item)
{
    if (!item) luaL_error(L, "not enough memory");
    cJSON_bool ok =
        key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) {
        cJSON_Delete(item);
        luaL_error(L, "not enough memory");
    }
    return item;
}

/* JSON text is written exactly as zt_json_print prints the tree the same value
 * makes (json_encode_tree), so that a value gives one text whichever way it went. */
static inline void text_put(lua_State *L, zt_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len <= n && zt__buf_reserve(b, n)) luaL_error(L, "not enough memory");
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static inline void text_char(lua_State *L, zt_buf *b, char c)
{
    if (b->cap - b->len <= 1 && zt__buf_reserve(b, 1)) luaL_error(L, "not enough memory");
    b->data[b->len++] = c;
}

static void text_int(lua_State *L, zt_buf *b, long long i)
{
    char tmp[21];
    text_put(L, b, tmp, zt__i64_text(tmp, (int64_t)i));
}

/* A number as zt_json_print writes it (exactly: integers up to 2^53 as integers). */
static void text_double(lua_State *L, zt_buf *b, double d)
{
    char tmp[32];
    text_put(L, b, tmp, zt__json_num(tmp, d));
}

/* A string, escaped as cJSON escapes: the two-character escapes, \u00xx for the other
 * control characters, everything else as it is (s is checked UTF-8 without NUL). */
#define TWO_ESC "\"\"\\\\\bb\ff\nn\rr\tt" /* each such character, then its escape letter */
static void text_str(lua_State *L, zt_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    text_char(L, b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c != '"' && c != '\\') continue;
        text_put(L, b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t elen = 6;
        const char *two = memchr(TWO_ESC, c, sizeof TWO_ESC - 1);
        if (two) {
            esc[1] = two[1];
            elen = 2;
        }
        text_put(L, b, esc, elen);
    }
    text_put(L, b, s + run, n - run);
    text_char(L, b, '"');
}

/* One encoding: where it goes, and the tables it must recognise by their address. */
struct jenc {
    lua_State *L;
    zt_buf *text;      /* text is appended here; NULL: a cJSON tree is built */
    const void *null;  /* zt.json.null (lua_topointer) */
    const void *array; /* the metatable of zt.json.array's tables */
    const void *req;   /* the metatable of req tables */
};

static void req_fill_all(lua_State *L, int t);

/* An object's key, and where its value waits on the stack (0: not there). */
struct jkey {
    const char *s;
    size_t len;
    int slot;
};

static int jkey_cmp(const void *a, const void *b)
{
    return strcmp(((const struct jkey *)a)->s, ((const struct jkey *)b)->s);
}

/* Objects of up to this many keys are encoded from one walk of the table, their values
 * held on the Lua stack; larger ones walk it again and look each value up. */
#define JKEYS_FEW 16

static void json_encode(struct jenc *e, int idx, cJSON *parent, const char *key, int depth);

static void json_leaf(struct jenc *e, cJSON *parent, const char *key, cJSON *item)
{
    assert(!e->text);
    json_attach(e->L, parent, key, item);
}

static void json_table(struct jenc *e, int idx, cJSON *parent, const char *key, int depth)
{
    lua_State *L = e->L;
    zt_buf *text = e->text;
    if (depth >= JSON_DEPTH)
        luaL_error(L, "zt.json.encode: tables nested deeper than %d (a table inside itself?)",
                   JSON_DEPTH);
    luaL_checkstack(L, JKEYS_FEW + 4, "zt.json.encode: nested too deep");
    int top = lua_gettop(L);
    /* A table is a JSON array when it is marked by zt.json.array, or when its keys are
     * exactly 1..n (n > 0); an object when all its keys are strings (an empty table is
     * {}). */
    bool marked = false;
    if (lua_getmetatable(L, idx)) {
        const void *mt = lua_topointer(L, -1);
        lua_pop(L, 1);
        marked = mt == e->array;
        if (mt == e->req) req_fill_all(L, idx); /* a req is all its fields, made or not */
    }
    struct jkey few[JKEYS_FEW];
    size_t nk = 0;
    lua_Integer n;
    int kind = 'a';
    if (marked) {
        n = (lua_Integer)lua_rawlen(L, idx);
    } else {
        lua_Integer max = 0;
        bool ints = true, strs = true;
        n = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            n++;
            if (lua_type(L, -2) == LUA_TSTRING) {
                ints = false;
                if (strs && n <= JKEYS_FEW) { /* keep the value, below the key lua_next needs */
                    few[nk].s = lua_tolstring(L, -2, &few[nk].len);
                    few[nk].slot = lua_gettop(L) - 1;
                    nk++;
                    lua_rotate(L, -2, 1);
                    continue;
                }
            } else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
                strs = false;
                if (lua_tointeger(L, -2) > max) max = lua_tointeger(L, -2);
            } else {
                ints = strs = false;
            }
            lua_pop(L, 1);
        }
        if (n == 0 || (strs && !ints))
            kind = 'o';
        else if (!ints || max != n)
            kind = 0;
        if (kind != 'o' || (lua_Integer)nk != n) {
            lua_settop(L, top);
            nk = 0;
        }
    }
    if (!kind)
        luaL_error(L, "zt.json.encode: a table mixes keys: use only 1..n (an array) or only "
                      "strings (an object)");
    if (kind == 'a') {
        cJSON *arr = NULL;
        if (text)
            text_char(L, text, '[');
        else
            arr = json_attach(L, parent, key, cJSON_CreateArray());
        for (lua_Integer i = 1; i <= n; i++) {
            if (text && i > 1) text_char(L, text, ',');
            lua_rawgeti(L, idx, i);
            json_encode(e, lua_gettop(L), arr, NULL, depth + 1);
            lua_pop(L, 1);
        }
        if (text) text_char(L, text, ']');
        return;
    }
    /* Keys in byte order: the same table always gives the same text (Lua's own order
     * changes from state to state). The table keeps the key strings alive. */
    struct jkey *keys = few;
    if ((lua_Integer)nk != n) { /* a large object: collect its keys again */
        keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            keys[nk].s = lua_tolstring(L, -2, &keys[nk].len); /* a string: checked above */
            keys[nk].slot = 0;
            nk++;
            lua_pop(L, 1);
        }
    }
    for (size_t i = 0; i < nk; i++)
        if (!zt__utf8_ok((const unsigned char *)keys[i].s, keys[i].len))
            luaL_error(L, "zt.json.encode: a key is not valid UTF-8 (or holds a NUL byte)");
    if (keys == few) {
        for (size_t i = 1; i < nk; i++) /* few keys: insertion sort */
            for (size_t j = i; j > 0 && strcmp(few[j - 1].s, few[j].s) > 0; j--) {
                struct jkey t = few[j];
                few[j] = few[j - 1];
                few[j - 1] = t;
            }
    } else {
        qsort(keys, nk, sizeof *keys, jkey_cmp);
    }
    cJSON *obj = NULL;
    if (text)
        text_char(L, text, '{');
    else
        obj = json_attach(L, parent, key, cJSON_CreateObject());
    for (size_t i = 0; i < nk; i++) {
        if (text) {
            if (i > 0) text_char(L, text, ',');
            text_str(L, text, keys[i].s, keys[i].len);
            text_char(L, text, ':');
        }
        int v = keys[i].slot;
        if (!v) {
            lua_pushlstring(L, keys[i].s, keys[i].len);
            lua_rawget(L, idx);
            v = lua_gettop(L);
        }
        json_encode(e, v, obj, keys[i].s, depth + 1);
        if (!keys[i].slot) lua_pop(L, 1);
    }
    if (text) text_char(L, text, '}');
    lua_settop(L, top);
}

/* Encode the value at idx, either as text appended to e->text, or (e->text NULL) as a
 * cJSON item added to parent (under key, or appended when key is NULL). Checks and their
 * order are the same either way, so both refuse the same values with the same message. */
static void json_encode(struct jenc *e, int idx, cJSON *parent, const char *key, int depth)
{
    lua_State *L = e->L;
    zt_buf *text = e->text;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        if (text)
            text_put(L, text, "null", 4);
        else
            json_leaf(e, parent, key, cJSON_CreateNull());
        return;
    case LUA_TBOOLEAN: {
        bool v = lua_toboolean(L, idx);
        if (text)
            text_put(L, text, v ? "true" : "false", v ? 4 : 5);
        else
            json_leaf(e, parent, key, cJSON_CreateBool(v));
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_Integer i = lua_tointeger(L, idx);
            /* cJSON holds numbers as doubles; print larger integers exactly */
            if (i >= -(lua_Integer)INT53 && i <= (lua_Integer)INT53) {
                if (!text)
                    json_leaf(e, parent, key, cJSON_CreateNumber((double)i));
                else
                    text_int(L, text, (long long)i);
            } else if (text) {
                text_int(L, text, (long long)i);
            } else {
                char buf[32];
                snprintf(buf, sizeof buf, "%lld", (long long)i);
                json_leaf(e, parent, key, cJSON_CreateRaw(buf));
            }
        } else {
            double d = lua_tonumber(L, idx);
            if (!isfinite(d)) luaL_error(L, "zt.json.encode: cannot encode NaN or infinity");
            if (text)
                text_double(L, text, d);
            else
                json_leaf(e, parent, key, cJSON_CreateNumber(d));
        }
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!zt__utf8_ok((const unsigned char *)s, len))
            luaL_error(L, "zt.json.encode: a string is not valid UTF-8 (or holds a NUL byte)");
        if (text)
            text_str(L, text, s, len);
        else
            json_leaf(e, parent, key, cJSON_CreateString(s));
        return;
    }
    case LUA_TTABLE:
        if (lua_topointer(L, idx) != e->null) {
            json_table(e, idx, parent, key, depth);
        } else if (text) {
            text_put(L, text, "null", 4);
        } else {
            json_leaf(e, parent, key, cJSON_CreateNull());
        }
        return;
    default:
        luaL_error(L, "zt.json.encode: cannot encode a %s", luaL_typename(L, idx));
        return;
    }
}

/* Encode the value at idx into a box (pushed on the stack); box->json is the tree. */
static jbox *json_encode_tree(lua_State *L, int idx)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    struct jenc e = {L, NULL, lp->null, lp->array, lp->req_mt};
    idx = lua_absindex(L, idx);
    jbox *b = box_new(L);
    b->json = cJSON_CreateArray(); /* a holder, so that the root is freed with it */
    if (!b->json) luaL_error(L, "not enough memory");
    json_encode(&e, idx, b->json, NULL, 0);
    cJSON *root = cJSON_DetachItemFromArray(b->json, 0);
    cJSON_Delete(b->json);
    b->json = root;
    return b;
}

/* Encode the value at idx as text, after `prefix` (may be empty), into the state's
 * scratch buffer. An error leaves the buffer to the next use (it is only ever
 * overwritten), so nothing can leak; no Lua code runs while it is filled. */
static zt_buf *json_encode_text(lua_State *L, int idx, const char *prefix, size_t plen)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    struct jenc e = {L, &lp->scratch, lp->null, lp->array, lp->req_mt};
    idx = lua_absindex(L, idx);
    lp->scratch.len = 0;
    text_put(L, &lp->scratch, prefix, plen);
    json_encode(&e, idx, NULL, NULL, 0);
    text_char(L, &lp->scratch, 0); /* a C string too, for those who want one */
    lp->scratch.len--;
    return &lp->scratch;
}

/* After the scratch buffer was used: a large one is not kept for the next use. */
static void scratch_done(struct zt_lua_plugin *lp)
{
    if (lp->scratch.cap > SCRATCH_KEEP) zt__buf_free(&lp->scratch);
}

static void json_push(lua_State *L, const cJSON *item, int depth)
{
    /* cJSON's parser stops at its nesting limit; a tree a C plugin built (an event's
     * payload, a service's result) has none, and this recursion is on the C stack */
    if (depth > CJSON_NESTING_LIMIT)
        luaL_error(L, "zt.json: nested deeper than %d", CJSON_NESTING_LIMIT);
    luaL_checkstack(L, 3, "zt.json: nested too deep");
    if (cJSON_IsNull(item)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &K_NULL);
    } else if (cJSON_IsBool(item)) {
        lua_pushboolean(L, cJSON_IsTrue(item));
    } else if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (d == floor(d) && d >= -INT53 && d <= INT53)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(item) || cJSON_IsRaw(item)) {
        lua_pushstring(L, item->valuestring);
    } else if (cJSON_IsArray(item)) {
        lua_createtable(L, cJSON_GetArraySize(item), 0);
        lua_Integer i = 1;
        for (const cJSON *c = item->child; c; c = c->next) {
            json_push(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
        set_meta(L, &K_ARRAY);
    } else if (cJSON_IsObject(item)) {
        lua_createtable(L, 0, cJSON_GetArraySize(item));
        for (const cJSON *c = item->child; c; c = c->next) {
            json_push(L, c, depth + 1);
            lua_setfield(L, -2, c->string);
        }
    } else {
        lua_pushnil(L);
    }
}

static int l_json_encode(lua_State *L)
{
    check_any(L, 1, "zt.json.encode", "the value");
    zt_buf *b = json_encode_text(L, 1, "", 0);
    lua_pushlstring(L, b->data, b->len);
    scratch_done(plugin_of(L));
    return 1;
}

static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = check_str(L, 1, "zt.json.decode", "text", &len);
    jbox *b = box_new(L);
    char why[200];
    if (zt__json_parse_strict(s, len, &b->json, why, sizeof why))
        return luaL_error(L, "zt.json.decode: %s", why);
    json_push(L, b->json, 0);
    box_clear(b);
    return 1;
}

static int l_json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    check_type(L, 1, LUA_TTABLE, "zt.json.array", "t");
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        lua_pop(L, 1);
        if (!has_meta(L, 1, &K_ARRAY))
            return luaL_error(L, "zt.json.array: the table has a metatable already");
        return 1;
    }
    set_meta(L, &K_ARRAY);
    return 1;
}

static int null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

static int l_readonly(lua_State *L)
{
    return luaL_error(L, "this table is read-only");
}

/* ---- problems (zt.problem) --------------------------------------------------------- */

typedef struct problem {
    int status;
    char type[65];
    char title[129];
    char where[LUA_IDSIZE + 24]; /* "init.lua:12: ": where it was raised, for log lines */
    size_t dlen;
    char detail[]; /* NUL-terminated */
} problem;

/* The problem (zt.problem) at idx, or NULL if that is something else. */
static const problem *to_problem(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TUSERDATA && has_meta(L, idx, &K_PROBLEM)
               ? lua_touserdata(L, idx)
               : NULL;
}

/* "problem 404 not-found: detail": tostring of a problem, and what log lines say of it. */
static const char *push_problem_text(lua_State *L, const problem *pb)
{
    return lua_pushfstring(L, "problem %d %s: %s", pb->status, pb->type, pb->detail);
}

static bool slug_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int raise_problem(lua_State *L, lua_Integer status, const char *type, const char *detail,
                         const char *title)
{
    if (status < 400 || status > 599)
        return luaL_error(L, "zt.problem: status %I is not 400..599", (LUAI_UACINT)status);
    if (!slug_ok(type))
        return luaL_error(L, "zt.problem: type '%s' is not a slug (1..64 of a-z, 0-9, -)", type);
    if (title && strlen(title) > 128) return luaL_error(L, "zt.problem: title over 128 bytes");
    size_t dlen = strlen(detail);
    problem *pb = lua_newuserdatauv(L, sizeof *pb + dlen + 1, 0);
    pb->status = (int)status;
    strcpy(pb->type, type);
    const char *std = title ? NULL : zt__status_title((int)status);
    if (title || std) { /* by default the status's title, as the core's own problems */
        strcpy(pb->title, title ? title : std);
    } else { /* a status without one: "im-a-teapot" → "Im a teapot" */
        strcpy(pb->title, type);
        for (char *c = pb->title; *c; c++)
            if (*c == '-') *c = ' ';
        if (pb->title[0] >= 'a' && pb->title[0] <= 'z') pb->title[0] = (char)(pb->title[0] - 32);
    }
    pb->dlen = dlen;
    memcpy(pb->detail, detail, dlen + 1);
    /* where the plugin raised it (the Lua caller of zt.problem, req:json, zt.rate.check;
     * through a pcall too): outside a handler it is an error like any other, and its log
     * line says where */
    snprintf(pb->where, sizeof pb->where, "%s", push_where(L));
    lua_pop(L, 1);
    set_meta(L, &K_PROBLEM);
    return lua_error(L);
}

static int l_problem(lua_State *L)
{
    /* strings and numbers are not mixed: a status "404" or a detail 42 is a mistake */
    lua_Integer status = check_int(L, 1, "zt.problem", "status");
    const char *type = check_str(L, 2, "zt.problem", "type", NULL);
    const char *detail = lua_isnoneornil(L, 3) ? "" : check_str(L, 3, "zt.problem", "detail", NULL);
    const char *title = lua_isnoneornil(L, 4) ? NULL : check_str(L, 4, "zt.problem", "title", NULL);
    return raise_problem(L, status, type, detail, title);
}

static int problem_tostring(lua_State *L)
{
    push_problem_text(L, lua_touserdata(L, 1));
    return 1;
}

static int problem_index(lua_State *L)
{
    problem *pb = lua_touserdata(L, 1);
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (strcmp(k, "status") == 0)
        lua_pushinteger(L, pb->status);
    else if (strcmp(k, "type") == 0)
        lua_pushstring(L, pb->type);
    else if (strcmp(k, "title") == 0)
        lua_pushstring(L, pb->title);
    else if (strcmp(k, "detail") == 0)
        lua_pushlstring(L, pb->detail, pb->dlen);
    else
        lua_pushnil(L);
    return 1;
}

/* ---- zt.log, zt.id, zt.now, print -------------------------------------------------- */

static void log_text(struct zt_lua_plugin *lp, int level, const char *msg)
{
    if (lp->req)
        zt_req_log(lp->req, level, "%s", msg);
    else
        zt_log(lp->p, level, "%s", msg);
}

static const char *const log_levels[] = {"debug", "info", "warn", "error"}; /* zt.log.* */

/* zt.log.<level>(fmt, ...): string.format; one argument is logged as it is. */
static int l_log(lua_State *L)
{
    int level = (int)lua_tointeger(L, lua_upvalueindex(1));
    if (level < zt__log_level) return 0;
    int n = lua_gettop(L);
    const char *msg;
    if (n <= 1) {
        msg = luaL_tolstring(L, 1, NULL);
    } else {
        /* A log line never fails its caller (a mistake in a debug line must not break the
         * request the day debug is turned on): a bad format is logged as such, with where. */
        bool fmt = lua_type(L, 1) == LUA_TSTRING;
        if (fmt) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &K_FORMAT);
            lua_insert(L, 1);
        }
        if (!fmt || lua_pcall(L, n, 1, 0) != LUA_OK) {
            /* string.format's "bad argument #2 to '?'": its arguments are ours, one for one */
            const char *e = fmt && lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            const char *fn = lua_pushfstring(L, "zt.log.%s", log_levels[level]);
            if (e) e = luaL_gsub(L, e, "to '?'", lua_pushfstring(L, "to '%s'", fn));
            luaL_where(L, 1);
            lua_pushfstring(L, "%s%s: %s%s (the line was not logged)", lua_tostring(L, -1), fn,
                            fmt ? "the format and its values do not match: "
                                : "with more than one argument the first must be a format "
                                  "string",
                            e ? e : "");
            log_text(plugin_of(L), ZT_LOG_ERROR, lua_tostring(L, -1));
            return 0;
        }
        msg = lua_tostring(L, -1);
    }
    log_text(plugin_of(L), level, msg);
    return 0;
}

static int l_print(lua_State *L)
{
    if (ZT_LOG_INFO < zt__log_level) return 0;
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_text(plugin_of(L), ZT_LOG_INFO, lua_tostring(L, -1));
    return 0;
}

static int l_id(lua_State *L)
{
    char id[27];
    zt_id(id);
    lua_pushstring(L, id);
    return 1;
}

/* zt.mask(s, front, back): s with its first front and last back characters kept, the
 * others '*' (zt_mask). */
static int l_mask(lua_State *L)
{
    size_t len;
    const char *s = check_str(L, 1, "zt.mask", "s", &len);
    lua_Integer front = check_int(L, 2, "zt.mask", "front"),
                back = check_int(L, 3, "zt.mask", "back");
    if (front < 0 || back < 0)
        return luaL_error(L, "zt.mask: %s must be a count of characters (0 or more)",
                          front < 0 ? "front" : "back");
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len + 1);
    /* (a NUL would cut the value short: it is no text either) */
    if (strlen(s) != len || zt_mask(s, (size_t)front, (size_t)back, out, len + 1) != ZT_OK)
        return luaL_error(L, "zt.mask: s is not UTF-8 text (without NUL)");
    luaL_pushresultsize(&b, strlen(out));
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)zt_now_ms());
    return 1;
}

/* ---- zt.db ------------------------------------------------------------------------- */

typedef struct ldb {
    zt_db *db;
    char name[65];
} ldb;

struct db_iter {
    struct zt_lua_plugin *lp;
    struct db_iter *prev, *next; /* in lp->iters while its cursor is open */
    zt_cursor *cur;
    uint64_t serial; /* the handler call it belongs to */
    bool started, reverse, done, has_from;
    lua_Integer left; /* items still allowed; < 0: no limit */
    size_t flen, plen;
    char keys[]; /* from (flen bytes), then prefix (plen bytes) */
};

static void iter_unlink(struct db_iter *it)
{
    if (it->cur) zt_cursor_close(it->cur);
    it->cur = NULL;
    if (it->prev) it->prev->next = it->next;
    if (it->next) it->next->prev = it->prev;
    if (it->lp->iters == it) it->lp->iters = it->next;
    it->prev = it->next = NULL;
}

/* The request is over: its cursors die with its transaction. */
static void iters_close_all(struct zt_lua_plugin *lp)
{
    while (lp->iters) iter_unlink(lp->iters);
}

static int iter_gc(lua_State *L)
{
    struct db_iter *it = lua_touserdata(L, 1);
    if (it->cur) iter_unlink(it);
    return 0;
}

/* The work running now, for functions that act in its transaction. */
static zt_req *work_of(lua_State *L, const char *fn)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->req)
        luaL_error(L,
                   "%s: no transaction here (only inside a handler, an event handler or a "
                   "service)",
                   fn);
    return lp->req;
}

static zt_txn *db_txn(lua_State *L, const char *fn)
{
    zt_txn *t = zt_req_txn(work_of(L, "zt.db"));
    if (!t) {
        plugin_of(L)->store_err = ZT_EBUSY;
        luaL_error(L, "%s: storage unavailable", fn);
    }
    return t;
}

static int db_fail(lua_State *L, const char *fn, int rc)
{
    if (rc == ZT_EFULL) plugin_of(L)->store_err = rc; /* then the core answers 507 */
    return luaL_error(L, "%s: %s", fn, zt_strerror(rc));
}

static const char *check_key(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L,
                   "db: a key must be a string, not %s (numbers: format them, as "
                   "(\"%%012d\"):format(n), so that they sort)",
                   luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/* Push a stored value: 's' + bytes is a string, 'j' + JSON a table (or number, boolean). */
static void push_stored(lua_State *L, const char *v, size_t vlen)
{
    if (vlen >= 1 && v[0] == 's') {
        lua_pushlstring(L, v + 1, vlen - 1);
        return;
    }
    if (vlen >= 1 && v[0] == 'j') {
        jbox *b = box_new(L);
        b->json = cJSON_ParseWithLength(v + 1, vlen - 1);
        if (b->json) {
            json_push(L, b->json, 0);
            box_clear(b);
            lua_remove(L, -2);
            return;
        }
    }
    luaL_error(L, "zt.db: a stored value is not in the zt.db encoding");
}

static int l_db_open(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *name = check_str(L, 1, "zt.db.open", "name", NULL);
    if (!lp->p->in_init) return luaL_error(L, "zt.db.open: only during init");
    if (strlen(name) > 64) return luaL_error(L, "zt.db.open: name '%s' is too long", name);
    /* zt.db.open(name, { sealed = true }): every value sealed (zt_db_open_sealed) */
    bool sealed = false;
    if (!lua_isnoneornil(L, 2)) {
        check_type(L, 2, LUA_TTABLE, "zt.db.open", "options ({ sealed = true })");
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (!k || strcmp(k, "sealed") != 0)
                return luaL_error(L, "zt.db.open('%s'): unknown option %s (it takes: sealed)", name,
                                  k ? k : luaL_typename(L, -2));
            if (!lua_isboolean(L, -1))
                return luaL_error(L, "zt.db.open('%s'): sealed must be true or false", name);
            sealed = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    }
    ldb *d = lua_newuserdatauv(L, sizeof *d, 0);
    d->db = NULL;
    strcpy(d->name, name);
    set_meta(L, &K_DB);
    int rc = sealed ? zt_db_open_sealed(lp->p, name, &d->db) : zt_db_open(lp->p, name, &d->db);
    if (rc == ZT_EINVAL)
        return luaL_error(L, "zt.db.open('%s'): a name is 1 to 64 of A-Z a-z 0-9 _ . -", name);
    if (rc == ZT_ESTATE && !sealed)
        return luaL_error(L,
                          "zt.db.open('%s'): the database is sealed (its records carry seals): "
                          "open it with zt.db.open('%s', { sealed = true })",
                          name, name);
    if (rc) return luaL_error(L, "zt.db.open('%s'): %s", name, zt_strerror(rc));
    return 1;
}

static int l_db_get(lua_State *L)
{
    ldb *d = check_ud(L, 1, &K_DB, "zt.db");
    size_t klen;
    const char *k = check_key(L, 2, &klen);
    zt_txn *t = db_txn(L, "db:get");
    const void *v;
    size_t vlen;
    int rc = klen == 0 || klen > KEY_MAX ? ZT_ENOTFOUND /* no such key can exist */
                                         : zt_get(t, d->db, k, klen, &v, &vlen);
    if (rc == ZT_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc) return db_fail(L, "db:get", rc);
    push_stored(L, v, vlen);
    return 1;
}

static int l_db_put(lua_State *L)
{
    ldb *d = check_ud(L, 1, &K_DB, "zt.db");
    size_t klen;
    const char *k = check_key(L, 2, &klen);
    if (klen == 0 || klen > KEY_MAX) return luaL_error(L, "db:put: a key is 1..%d bytes", KEY_MAX);
    int vt = lua_type(L, 3);
    if (vt == LUA_TNONE || vt == LUA_TNIL)
        return luaL_error(L, "db:put: no value (to remove a key use db:delete)");
    if (vt != LUA_TSTRING && vt != LUA_TTABLE && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
        return luaL_error(L, "db:put: cannot store a %s", luaL_typename(L, 3));
    zt_txn *t = db_txn(L, "db:put");
    zt_buf *b;
    if (vt == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 3, &len);
        b = &plugin_of(L)->scratch;
        b->len = 0;
        text_put(L, b, "s", 1);
        text_put(L, b, s, len);
    } else {
        b = json_encode_text(L, 3, "j", 1);
    }
    int rc = zt_put(t, d->db, k, klen, b->data, b->len);
    scratch_done(plugin_of(L));
    if (rc) return db_fail(L, "db:put", rc);
    return 0;
}

static int l_db_delete(lua_State *L)
{
    ldb *d = check_ud(L, 1, &K_DB, "zt.db");
    size_t klen;
    const char *k = check_key(L, 2, &klen);
    zt_txn *t = db_txn(L, "db:delete");
    if (klen == 0 || klen > KEY_MAX) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int rc = zt_del(t, d->db, k, klen);
    if (rc && rc != ZT_ENOTFOUND) return db_fail(L, "db:delete", rc);
    lua_pushboolean(L, rc == ZT_OK);
    return 1;
}

static int keycmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

/* Land on the first key of the iteration. Forward: the smallest key >= from and >= prefix.
 * Reverse: the largest key <= from and below every key that has the prefix after it. */
static int iter_first(struct db_iter *it, zt_kv *kv)
{
    const char *from = it->has_from ? it->keys : NULL, *prefix = it->keys + it->flen;
    if (!it->reverse) {
        const char *s = from;
        size_t sl = it->flen;
        if (it->plen && (!s || keycmp(prefix, it->plen, s, sl) > 0)) s = prefix, sl = it->plen;
        return s ? zt_cursor_seek(it->cur, ZT_GE, s, sl, kv)
                 : zt_cursor_seek(it->cur, ZT_FIRST, NULL, 0, kv);
    }
    char succ[KEY_MAX];
    size_t sl = it->plen;
    memcpy(succ, prefix, sl);
    while (sl && (unsigned char)succ[sl - 1] == 0xff) sl--;
    if (sl) succ[sl - 1]++;
    const char *bound = sl ? succ : NULL;
    bool inclusive = false;
    if (from && (!bound || keycmp(from, it->flen, succ, sl) < 0)) {
        bound = from, sl = it->flen;
        inclusive = true;
    }
    if (!bound) return zt_cursor_seek(it->cur, ZT_LAST, NULL, 0, kv);
    int rc = zt_cursor_seek(it->cur, ZT_GE, bound, sl, kv);
    if (rc == ZT_ENOTFOUND) return zt_cursor_seek(it->cur, ZT_LAST, NULL, 0, kv);
    if (rc) return rc;
    if (inclusive && keycmp(kv->key, kv->klen, bound, sl) == 0) return ZT_OK;
    return zt_cursor_seek(it->cur, ZT_PREV, NULL, 0, kv);
}

static int iter_step(lua_State *L)
{
    struct db_iter *it = lua_touserdata(L, lua_upvalueindex(1));
    struct zt_lua_plugin *lp = it->lp;
    if (it->done) return 0;
    if (!it->cur || it->serial != lp->serial || !lp->req)
        return luaL_error(L, "zt.db: iterator used after its request ended");
    zt_kv kv;
    int rc = ZT_ENOTFOUND;
    if (it->left != 0) {
        if (!it->started)
            rc = iter_first(it, &kv);
        else
            rc = zt_cursor_seek(it->cur, it->reverse ? ZT_PREV : ZT_NEXT, NULL, 0, &kv);
        it->started = true;
    }
    if (rc == ZT_OK && it->plen &&
        (kv.klen < it->plen || memcmp(kv.key, it->keys + it->flen, it->plen) != 0))
        rc = ZT_ENOTFOUND;
    if (rc == ZT_ENOTFOUND) {
        it->done = true;
        iter_unlink(it);
        return 0;
    }
    if (rc) return db_fail(L, "db:iter", rc);
    if (it->left > 0) it->left--;
    lua_pushlstring(L, kv.key, kv.klen);
    push_stored(L, kv.val, kv.vlen);
    return 2;
}

static const char *iter_opt_key(lua_State *L, const char *field, size_t *len)
{
    const char *s = NULL;
    *len = 0;
    if (lua_getfield(L, 2, field) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "db:iter: %s must be a string", field);
        s = lua_tolstring(L, -1, len);
        if (*len > KEY_MAX) luaL_error(L, "db:iter: %s is longer than a key can be", field);
    }
    return s; /* anchored by the options table */
}

/* db:iter{ from=, prefix=, reverse=, limit= } → an iterator function of key, value. */
static int l_db_iter(lua_State *L)
{
    ldb *d = check_ud(L, 1, &K_DB, "zt.db");
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    check_type(L, 2, LUA_TTABLE, "db:iter", "options");
    lua_settop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "from") && strcmp(k, "prefix") && strcmp(k, "reverse") && strcmp(k, "limit"))
            return luaL_error(L, "db:iter: unknown option '%s' (from, prefix, reverse, limit)", k);
        lua_pop(L, 1);
    }
    size_t flen, plen;
    const char *from = iter_opt_key(L, "from", &flen);
    const char *prefix = iter_opt_key(L, "prefix", &plen);
    int rt = lua_getfield(L, 2, "reverse");
    if (rt != LUA_TNIL && rt != LUA_TBOOLEAN)
        return luaL_error(L, "db:iter: reverse must be true or false, not %s", lua_typename(L, rt));
    bool reverse = lua_toboolean(L, -1);
    lua_Integer limit = -1;
    if (lua_getfield(L, 2, "limit") != LUA_TNIL) {
        int isint = lua_type(L, -1) == LUA_TNUMBER; /* "3" is not a limit */
        if (isint) limit = lua_tointegerx(L, -1, &isint);
        if (!isint || limit < 0)
            return luaL_error(L, "db:iter: limit must be an integer >= 0, not %s",
                              luaL_tolstring(L, -1, NULL));
    }
    zt_txn *t = db_txn(L, "db:iter");
    struct zt_lua_plugin *lp = plugin_of(L);

    struct db_iter *it = lua_newuserdatauv(L, sizeof *it + flen + plen, 0);
    memset(it, 0, sizeof *it);
    it->lp = lp;
    it->serial = lp->serial;
    it->reverse = reverse;
    it->left = limit;
    it->has_from = from && flen > 0;
    it->flen = it->has_from ? flen : 0;
    it->plen = plen;
    if (it->has_from) memcpy(it->keys, from, flen);
    if (plen) memcpy(it->keys + it->flen, prefix, plen);
    set_meta(L, &K_ITER);
    int rc = zt_cursor_open(t, d->db, &it->cur);
    if (rc) {
        it->cur = NULL;
        if (rc == ZT_EBUSY)
            return luaL_error(L,
                              "db:iter: too many unfinished iterators in this work (at "
                              "most %d): run the loops to their end, or give them a limit",
                              ZT_TXN_CURSORS_MAX);
        return db_fail(L, "db:iter", rc);
    }
    it->next = lp->iters;
    if (lp->iters) lp->iters->prev = it;
    lp->iters = it;
    lua_pushcclosure(L, iter_step, 1);
    return 1;
}

static int db_tostring(lua_State *L)
{
    ldb *d = lua_touserdata(L, 1);
    lua_pushfstring(L, "zt.db(%s)", d->name);
    return 1;
}

/* ---- work: what the zt module acts for ------------------------------------------------ */

/*
 * The state runs one work at a time: a route's request, an event, a service call, a C
 * plugin's zt_lua_call. A service may call back into a state that is running (plugin A's
 * handler calls B's service, which calls A's): the inner work runs nested, with its own
 * request, iterators and caller, and the outer one's are restored when it ends.
 */
struct work_frame {
    zt_req *req;
    const void *curreq;
    const struct lua_route *route;
    bool caller_made;
    uint64_t serial;
    int store_err;
    struct db_iter *iters;
};

static void work_enter(struct zt_lua_plugin *lp, struct work_frame *f, zt_req *req,
                       const struct lua_route *route)
{
    *f = (struct work_frame){lp->req,    lp->curreq,    lp->route, lp->caller_made,
                             lp->serial, lp->store_err, lp->iters};
    lp->depth++;
    lp->req = req;
    lp->curreq = NULL;
    lp->route = route;
    lp->caller_made = false;
    lp->serial = ++lp->serials;
    lp->store_err = 0;
    lp->iters = NULL;
}

static void work_leave(struct zt_lua_plugin *lp, const struct work_frame *f)
{
    assert(lp->depth > 0);
    iters_close_all(lp);   /* the work's cursors die with its transaction */
    if (lp->caller_made) { /* the slot exists, so this cannot allocate */
        lua_rawgetp(lp->L, LUA_REGISTRYINDEX, &K_CALLER);
        lua_pushnil(lp->L);
        lua_rawseti(lp->L, -2, lp->depth);
        lua_pop(lp->L, 1);
    }
    int inner = lp->store_err;
    lp->req = f->req;
    lp->curreq = f->curreq;
    lp->route = f->route;
    lp->caller_made = f->caller_made;
    lp->serial = f->serial;
    lp->store_err = f->store_err ? f->store_err : inner; /* the outer work met it too */
    lp->iters = f->iters;
    if (--lp->depth == 0) lp_after(lp);
}

/* Every entry into a plugin's code: the function and its nargs arguments on top of L run
 * protected (lp_pcallv) as the work req (of route, for a route's handler), which then ends.
 * ZT_OK with nresults left; on an error, its value is on top (the caller pops it) and the
 * result is the store's ZT_EFULL or ZT_EBUSY if that is what failed (worth retrying: the
 * core answers 507 or 503), ZT_ERROR otherwise. */
static int work_call(struct zt_lua_plugin *lp, lua_State *L, zt_req *req,
                     const struct lua_route *route, int nargs, int nresults)
{
    struct work_frame wf;
    work_enter(lp, &wf, req, route);
    int rc = ZT_OK;
    if (lp_pcallv(lp, L, nargs, nresults) != LUA_OK)
        rc = lp->store_err == ZT_EFULL || lp->store_err == ZT_EBUSY ? lp->store_err : ZT_ERROR;
    work_leave(lp, &wf);
    return rc;
}

/* ---- the request (inside a handler) ------------------------------------------------ */

/* The zt_req behind a req table, if that table is the request being handled now. The
 * table of the current request stays on the stack of run_handler while it runs, so no
 * other live table has its address. */
static zt_req *current_req(lua_State *L, int idx, const char *fn)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->req || lua_topointer(L, idx) != lp->curreq)
        luaL_error(L, "%s: this request is over (use it only inside its handler)", fn);
    return lp->req;
}

static int req_header(lua_State *L)
{
    zt_req *req = current_req(L, 1, "req:header");
    const char *name = check_str(L, 2, "req:header", "name", NULL);
    /* The credential is the core's: a plugin knows its caller from zt.auth, and a token
     * in a Lua string could be neither wiped nor kept from another plugin's log line. */
    if (strcasecmp(name, "Authorization") == 0) return 0;
    lua_pushstring(L, zt_req_header(req, name)); /* nil if absent */
    return 1;
}

static int req_json(lua_State *L)
{
    zt_req *req = current_req(L, 1, "req:json");
    cJSON *j;
    int rc = zt_req_json(req, &j);
    if (rc == ZT_EINVAL) /* as zt_req_json_problem answers; the title is the status's */
        return raise_problem(L, req->json_status,
                             req->json_status == 415 ? "unsupported-media-type" : "invalid-json",
                             req->json_why, NULL);
    if (rc) return luaL_error(L, "req:json: %s", zt_strerror(rc));
    json_push(L, j, 0);
    return 1;
}

/* The route's parameter names come from its own pattern: ":id" segments and a last "*". */
static void push_params(lua_State *L, const char *pattern, zt_req *req)
{
    lua_newtable(L);
    for (const char *s = pattern; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        char name[128];
        const char *nm = NULL;
        if (n > 1 && s[0] == ':' && n - 1 < sizeof name) {
            memcpy(name, s + 1, n - 1);
            name[n - 1] = 0;
            nm = name;
        } else if (n == 1 && s[0] == '*') {
            nm = "*";
        }
        if (nm) {
            const char *v = zt_req_param(req, nm);
            if (v) {
                lua_pushstring(L, v);
                lua_setfield(L, -2, nm);
            }
        }
        s += n;
        if (*s == '/') s++;
    }
}

/* Query parameters, percent-decoded ('+' is a space), the first value of each name. Pairs
 * that do not decode are left out. */
struct query_push {
    lua_State *L;
    int t;
    char *buf; /* room for the longest decoded piece */
};

static int query_add(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct query_push *q = ud;
    lua_State *L = q->L;
    long n = kl ? zt__pct_decode(q->buf, k, kl, true) : -1;
    if (n <= 0) return 0;
    lua_pushlstring(L, q->buf, (size_t)n);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, q->t) != LUA_TNIL) { /* the first value of a repeated key counts */
        lua_pop(L, 2);
        return 0;
    }
    lua_pop(L, 1);
    if ((n = zt__pct_decode(q->buf, v, vl, true)) < 0) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushlstring(L, q->buf, (size_t)n);
    lua_rawset(L, q->t);
    return 0;
}

static void push_query(lua_State *L, const char *q)
{
    lua_newtable(L);
    if (!q || !*q) return;
    struct query_push qp = {L, lua_gettop(L), lua_newuserdatauv(L, strlen(q) + 1, 0)};
    zt__query_each(q, query_add, &qp);
    lua_settop(L, qp.t);
}

/* req.caller: who is calling (nil on a public route called without a token). */
static void push_caller(lua_State *L, const zt_caller *c)
{
    if (!c) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 8);
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {{"id", offsetof(zt_caller, id)},
                  {"kind", offsetof(zt_caller, kind)},
                  {"login", offsetof(zt_caller, login)},
                  {"name", offsetof(zt_caller, name)},
                  {"department", offsetof(zt_caller, department)},
                  {"plugin", offsetof(zt_caller, plugin)},
                  {"credit_code", offsetof(zt_caller, credit_code)},
                  {"clearance", offsetof(zt_caller, clearance)}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        lua_pushstring(L, *(const char *const *)((const char *)c + fields[i].off));
        lua_setfield(L, -2, fields[i].name);
    }
    lua_createtable(L, (int)c->nroles, 0);
    for (size_t i = 0; i < c->nroles; i++) {
        lua_pushstring(L, c->roles[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    set_meta(L, &K_ARRAY); /* a list, also when empty: "roles": [] in JSON */
    lua_setfield(L, -2, "roles");
}

/* req.caller and zt.auth.caller(req): one table per work, made on first use. It is kept
 * where scripts cannot replace it: at the work's depth in the registry's K_CALLER table. */
static void push_caller_once(lua_State *L, struct zt_lua_plugin *lp)
{
    if (lp->caller_made) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &K_CALLER);
        lua_rawgeti(L, -1, lp->depth);
        lua_remove(L, -2);
        return;
    }
    push_caller(L, zt_req_caller(lp->req));
    if (lua_isnil(L, -1)) return;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &K_CALLER);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, lp->depth);
    lua_pop(L, 1);
    lp->caller_made = true;
}

/* The fields of req, each made when a handler first reads it (most read few or none). */
static const char *const req_fields[] = {"method", "path",   "params", "query",
                                         "body",   "caller", "id",     "client"};
#define REQ_NFIELDS (sizeof req_fields / sizeof req_fields[0])

static int req_field(const char *k)
{
    for (int f = 0; f < (int)REQ_NFIELDS; f++)
        if (strcmp(k, req_fields[f]) == 0) return f;
    return -1;
}

/* Push field f of the request being handled (the caller has checked it is current). */
static void push_req_field(lua_State *L, struct zt_lua_plugin *lp, int f)
{
    zt_req *req = lp->req;
    switch (f) {
    case 0:
        lua_pushstring(L, zt_req_method(req));
        break;
    case 1:
        lua_pushstring(L, zt_req_path(req));
        break;
    case 2: /* a route's parameters; other work has none */
        if (lp->route)
            push_params(L, lp->route->pattern, req);
        else
            lua_newtable(L);
        break;
    case 3:
        push_query(L, req->query);
        break;
    case 4: {
        size_t blen;
        const char *body = zt_req_body(req, &blen);
        lua_pushlstring(L, body, blen);
        break;
    }
    case 5:
        push_caller_once(L, lp);
        break;
    case 6:
        lua_pushstring(L, zt_req_id(req));
        break;
    default:
        assert(f == 7);
        lua_pushstring(L, zt_req_client(req));
        break;
    }
}

/* Make field f of the req table at t, keep it there (rawset), and leave it on the stack. */
static void req_fill(lua_State *L, int t, int f)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->req || lua_topointer(L, t) != lp->curreq)
        luaL_error(L, "req.%s: this request is over (use it only inside its handler)",
                   req_fields[f]);
    push_req_field(L, lp, f);
    if (lua_isnil(L, -1)) return;
    lua_pushvalue(L, -1);
    lua_setfield(L, t, req_fields[f]); /* t has no __newindex: a raw set */
}

/* __index of req: the methods (upvalues 1 and 2), then the fields. */
static int req_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "header") == 0) {
        lua_pushvalue(L, lua_upvalueindex(1));
        return 1;
    }
    if (strcmp(k, "json") == 0) {
        lua_pushvalue(L, lua_upvalueindex(2));
        return 1;
    }
    int f = req_field(k);
    if (f < 0) return 0;
    req_fill(L, 1, f);
    return 1;
}

static int l_next(lua_State *L);

/* Make every field of the req table at t that is not made yet. */
static void req_fill_all(lua_State *L, int t)
{
    for (size_t f = 0; f < REQ_NFIELDS; f++) { /* each read fills a missing field */
        lua_getfield(L, t, req_fields[f]);
        lua_pop(L, 1);
    }
}

/* __pairs of req: every field, as if they had all been made at the start. */
static int req_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    req_fill_all(L, 1);
    lua_pushcfunction(L, l_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* The request table: empty, with req_index to fill it. */
static void push_req(lua_State *L, const struct zt_lua_plugin *lp)
{
    lua_createtable(L, 0, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->req_meta); /* K_REQ's table, by a quicker key */
    lua_setmetatable(L, -2);
}

/* A work's req table at index 1, current until the work ends (it stays on the stack, so no
 * other table can have its address meanwhile). */
static void push_work_req(lua_State *L, struct zt_lua_plugin *lp)
{
    push_req(L, lp);
    lp->curreq = lua_topointer(L, -1);
}

struct hcall {
    struct lua_route *lr;
    zt_req *req;
    int rc;         /* what the trampoline returns when the handler ran to its end */
    bool answering; /* the handler returned: an error now is in what it returned */
    bool encoding;  /* the body it returned is being made JSON: an error there is the body's */
};

static char *req_strdup(zt_req *req, const char *s)
{
    size_t n = strlen(s);
    char *c = zt_req_alloc(req, n + 1);
    if (c) memcpy(c, s, n + 1);
    return c;
}

/* Answer with the scratch buffer's text. A small text is copied into a block of its size
 * (cheaper than a fresh buffer, and the scratch one stays for the next answer); a large
 * one, which scratch_done would free anyway, is handed over as it is. */
static int respond_text(zt_req *req, int status, const char *ctype, zt_buf *text)
{
    char *body;
    size_t len = text->len;
    if (text->cap > SCRATCH_KEEP) {
        body = text->data;
        *text = (zt_buf){0};
    } else if (!(body = malloc(len))) {
        return ZT_ENOMEM;
    } else {
        memcpy(body, text->data, len);
    }
    return zt__respond_take(req, status, ctype, body, len);
}

/* Turn handler(req)'s results (status, body, headers, at S, S+1, S+2) into the response. */
static int respond(lua_State *L, struct hcall *hc, int S)
{
    const int B = S + 1, H = S + 2;
    zt_req *req = hc->req;
    int isint = lua_type(L, S) == LUA_TNUMBER; /* "201" is text, not a status */
    lua_Integer status = isint ? lua_tointegerx(L, S, &isint) : 0;
    if (!isint || status < 200 || status > 599)
        return luaL_error(L, "the handler returned %s%s as status (expected an integer 200..599)",
                          luaL_tolstring(L, S, NULL),
                          lua_type(L, S) == LUA_TSTRING ? " (a string)" : "");
    const char *ctype = NULL;
    int ht = lua_type(L, H);
    if (ht != LUA_TNIL && ht != LUA_TTABLE)
        return luaL_error(L, "the handler returned a %s as headers (expected a table)",
                          luaL_typename(L, H));
    if (ht == LUA_TTABLE) { /* check them all before adding any */
        lua_pushnil(L);
        while (lua_next(L, H)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "response headers must be strings keyed by strings");
            size_t kl, vl;
            const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
            const char *why = zt__res_header_refusal(k, v);
            if (!why && (strlen(k) != kl || strlen(v) != vl)) why = "it has a NUL byte";
            if (strcasecmp(k, "content-type") == 0)
                ctype = v; /* the body's type, here */
            else if (!why)
                why = zt__res_header_nodes(k);
            if (why) return luaL_error(L, "response header '%s': %s", k, why);
            lua_pop(L, 1);
        }
    }
    int bt = lua_type(L, B);
    if (bt != LUA_TNIL && (status == 204 || status == 304))
        return luaL_error(L,
                          "the handler returned a body with status %d, which has none: return "
                          "%d alone (or 200 with the body)",
                          (int)status, (int)status);
    if (bt == LUA_TTABLE && status >= 400 && !ctype)
        return luaL_error(L,
                          "the handler returned a table with status %d: an error is a problem "
                          "(application/problem+json), so raise zt.problem(%d, type, detail); "
                          "or give the body's Content-Type",
                          (int)status, (int)status);
    zt_buf *text = NULL;
    if (bt == LUA_TTABLE) {
        hc->encoding = true;
        text = json_encode_text(L, B, "", 0);
        hc->encoding = false;
    } else if (bt != LUA_TNIL && bt != LUA_TSTRING) {
        return luaL_error(L,
                          "the handler returned a %s as body (expected a string, a table or nil)",
                          luaL_typename(L, B));
    }
    /* From here on nothing raises: the response is being written. */
    int rc = ZT_OK;
    if (ht == LUA_TTABLE) {
        lua_pushnil(L);
        while (rc == ZT_OK && lua_next(L, H)) {
            const char *k = lua_tostring(L, -2);
            if (strcasecmp(k, "content-type") != 0) rc = zt_res_header(req, k, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        if (rc) lua_pop(L, 1);
    }
    char *ct = NULL;
    if (rc == ZT_OK && ctype && bt != LUA_TNIL && !(ct = req_strdup(req, ctype))) rc = ZT_ENOMEM;
    if (rc == ZT_OK) {
        if (bt == LUA_TNIL) {
            rc = zt_respond(req, (int)status, NULL, NULL, 0);
        } else if (bt == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, B, &len);
            rc = zt_respond(req, (int)status, ct ? ct : DEFAULT_TYPE, s, len);
        } else {
            rc = respond_text(req, (int)status, ct ? ct : "application/json", text);
        }
    }
    hc->rc = rc;
    return 0;
}

/* Called protected: handler(req), then its answer. The req table stays at 1 (so that no
 * other table can have its address while the handler runs); the results land at 2..4. */
static int run_handler(lua_State *L)
{
    struct hcall *hc = lua_touserdata(L, 1);
    struct zt_lua_plugin *lp = plugin_of(L);
    lua_settop(L, 0);
    push_work_req(L, lp);
    lua_rawgeti(L, LUA_REGISTRYINDEX, hc->lr->ref);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
    hc->answering = true; /* lua_route_handler names the handler's line if respond fails */
    return respond(L, hc, 2);
}

/* The error value on top of L as text for a log line: a problem (zt.problem) as where it
 * was raised, its status, type and detail. */
static const char *error_text(lua_State *L)
{
    const problem *pb = to_problem(L, -1);
    if (pb) {
        lua_pushstring(L, pb->where);
        lua_pushliteral(L, "zt.");
        push_problem_text(L, pb);
        lua_concat(L, 3);
        lua_replace(L, -2);
    }
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)";
}

/* The zt_handler of every Lua route. */
static int lua_route_handler(zt_req *req, void *ud)
{
    struct lua_route *lr = ud;
    struct zt_lua_plugin *lp = lr->lp;
    assert(lp && lp->L);
    if (lp->req) { /* nothing calls a handler from inside one; if it ever does, refuse */
        zt_req_log(req, ZT_LOG_ERROR, "Lua state of %s is busy with request %s", lp->p->name,
                   zt_req_id(lp->req));
        return ZT_EBUSY;
    }
    lua_State *L = lp->L;
    int top = lua_gettop(L);
    struct hcall hc = {.lr = lr, .req = req, .rc = ZT_OK};
    lua_pushcfunction(L, run_handler);
    lua_pushlightuserdata(L, &hc);
    int rc = work_call(lp, L, req, lr, 1, 0);
    const problem *pb = rc != ZT_OK ? to_problem(L, -1) : NULL;
    if (rc == ZT_OK) {
        rc = hc.rc;
    } else if (pb) {
        rc = zt_problem(req, pb->status, pb->type, pb->title, "%s", pb->detail);
    } else {
        /* what the handler returned (a status, body or headers that cannot be) failed
         * after it returned, where no line of the plugin runs: name the handler's own */
        char where[LUA_IDSIZE + 300] = "";
        if (hc.answering) {
            lua_Debug ar;
            lua_rawgeti(L, LUA_REGISTRYINDEX, lr->ref);
            lua_getinfo(L, ">S", &ar); /* pops the function: the error stays on top */
            if (hc.encoding)
                snprintf(where, sizeof where,
                         "%s:%d: the body the handler of %s %s returned: ", ar.short_src,
                         ar.linedefined, lr->method, lr->pattern);
            else
                snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.linedefined);
        }
        zt_req_log(req, ZT_LOG_ERROR, "Lua handler %s %s failed: %s%s", lr->method, lr->pattern,
                   where, error_text(L));
        if (rc == ZT_ERROR) /* else the store's EFULL or EBUSY: the core answers 507 or 503 */
            rc = zt_problem(req, 500, "lua-error", "Lua handler failed",
                            "the handler failed; see the log with request id %s", zt_req_id(req));
    }
    lua_settop(L, top);
    return rc;
}

static void route_free(struct lua_route *r)
{
    if (!r) return;
    free(r->method);
    free(r->pattern);
    free(r);
}

/* A zt.route mistake: raised where init made it, and it stops the start even if init
 * catches it (a route the plugin meant to have and does not would fail its callers). */
static int route_refused(lua_State *L, struct zt_lua_plugin *lp, const char *fmt, ...)
{
    const char *where = push_where(L);
    va_list ap;
    va_start(ap, fmt);
    const char *what = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    const char *msg = lua_pushfstring(L, "%s%s", where, what);
    zt__refuse_start(lp->srv, msg);
    return lua_error(L);
}

/* zt.route(method, path, [opts,] handler) */
static int l_route(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *method = check_str(L, 1, "zt.route", "method", NULL);
    const char *path = check_str(L, 2, "zt.route", "path", NULL);
    if (!lp->p->in_init) return luaL_error(L, "zt.route: only during init");
    zt_route r = {.method = method, .path = path, .handler = lua_route_handler};
    int fidx = 3;
    if (lua_type(L, 3) == LUA_TTABLE) {
        fidx = 4;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "role") == 0 || strcmp(k, "summary") == 0) {
                if (lua_type(L, -1) != LUA_TSTRING)
                    return route_refused(L, lp, "zt.route %s %s: %s must be a string", method, path,
                                         k);
                if (k[0] == 'r')
                    r.role = lua_tostring(L, -1);
                else
                    r.summary = lua_tostring(L, -1);
            } else if (strcmp(k, "body_limit") == 0) {
                /* 0 is no limit of its own, as in zt_route: said by leaving it out */
                int isint = lua_type(L, -1) == LUA_TNUMBER;
                lua_Integer n = isint ? lua_tointegerx(L, -1, &isint) : 0;
                if (!isint || n < 1)
                    return route_refused(L, lp,
                                         "zt.route %s %s: body_limit must be an integer >= 1 "
                                         "(bytes; leave it out for the node's limits.body_bytes), "
                                         "not %s",
                                         method, path, luaL_tolstring(L, -1, NULL));
                r.body_limit = (size_t)n;
            } else {
                return route_refused(
                    L, lp, "zt.route %s %s: unknown option '%s' (role, body_limit, summary)",
                    method, path, k);
            }
            lua_pop(L, 1);
        }
    }
    if (lua_type(L, fidx) != LUA_TFUNCTION)
        return route_refused(L, lp, "zt.route %s %s: the handler must be a function, not %s",
                             method, path, luaL_typename(L, fidx));
    lua_pushvalue(L, fidx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct lua_route *lr = calloc(1, sizeof *lr);
    if (lr) {
        lr->method = strdup(method);
        lr->pattern = strdup(path);
    }
    if (!lr || !lr->method || !lr->pattern) {
        route_free(lr);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "not enough memory");
    }
    lr->lp = lp;
    lr->ref = ref;
    r.ud = lr;
    char why[ZT_ERRLEN] = "";
    int rc = zt__router_add(lp->srv->router, lp->p, &r, why, sizeof why);
    if (rc) {
        route_free(lr);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        /* the router said why (a bad pattern, method or role, a route taken) */
        return route_refused(L, lp, "zt.route %s %s: %s", method, path,
                             why[0] ? why : zt_strerror(rc));
    }
    lr->next = lp->routes;
    lp->routes = lr;
    return 0;
}

/* ---- zt.auth, zt.audit: the caller and the audit record of a request ----------------- */

/* The request being handled, from a handler's req argument. */
static zt_req *check_req(lua_State *L, int idx, const char *fn)
{
    if (lua_type(L, idx) != LUA_TTABLE || !has_meta(L, idx, &K_REQ))
        luaL_error(L, "%s: the first argument must be the handler's req, not %s", fn,
                   luaL_typename(L, idx));
    return current_req(L, idx, fn);
}

/* A string the core reads up to its NUL: a NUL inside would cut it short unseen. */
static const char *check_cstr(lua_State *L, int idx, const char *fn, const char *what,
                              size_t maxlen)
{
    size_t len;
    const char *s = check_str(L, idx, fn, what, &len);
    if (len == 0 || len > maxlen || strlen(s) != len)
        luaL_error(L, "%s: %s must be 1..%d bytes without NUL", fn, what, (int)maxlen);
    return s;
}

static int l_auth_caller(lua_State *L)
{
    check_req(L, 1, "zt.auth.caller");
    push_caller_once(L, plugin_of(L));
    return 1;
}

/* The first time a plugin asks about a role, whether anyone can be given it: a role no
 * one declared (zt.role) nor added (POST /admin/roles) is refused to every account, so the
 * check can never pass. Said once, in the log, for the plugin's developer. */
static void role_check_once(struct zt_lua_plugin *lp, zt_req *req, const char *role)
{
    /* under zhengtong test no init.lua ran: the plugins declared nothing to check against */
    if (!lp->srv->roles || lp->srv->lua_tests) return;
    for (size_t i = 0; i < lp->nroles_seen; i++)
        if (strcmp(lp->roles_seen[i], role) == 0) return;
    if (lp->nroles_seen == sizeof lp->roles_seen / sizeof *lp->roles_seen) return;
    if (!(lp->roles_seen[lp->nroles_seen] = strdup(role))) return;
    lp->nroles_seen++;
    if (strcmp(role, ZT_ROLE_USER) == 0 || strcmp(role, ZT_ROLE_PUBLIC) == 0) {
        zt_log(lp->p, ZT_LOG_WARN,
               "zt.auth.has_role(req, \"%s\") is never true: '%s' is a route's role, not one "
               "an account holds (req.caller says whether someone is signed in)",
               role, role);
    } else if (!zt__role_known(lp->srv, NULL, role) &&
               !zt__role_known(lp->srv, zt_req_txn(req), role)) {
        zt_log(lp->p, ZT_LOG_WARN,
               "zt.auth.has_role checks the role '%s', which no plugin declares and county IT "
               "has not added, so no account can be given it: declare it in init with "
               "zt.role(\"%s\", \"what it lets its holders do\")",
               role, role);
    }
}

static int l_auth_has_role(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.has_role");
    size_t len;
    const char *role = check_str(L, 2, "zt.auth.has_role", "role", &len);
    bool ok = strlen(role) == len;
    if (ok) role_check_once(plugin_of(L), req, role);
    lua_pushboolean(L, ok && zt_caller_has_role(zt_req_caller(req), role));
    return 1;
}

/* zt.role(name, description): a role the plugin checks (zt.auth.has_role), in init */
static int l_role(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->p->in_init) return luaL_error(L, "zt.role: only during init");
    const char *name = check_cstr(L, 1, "zt.role", "name", 64);
    size_t len = 0;
    const char *desc =
        lua_isnoneornil(L, 2) ? NULL : check_str(L, 2, "zt.role", "description", &len);
    char buf[256];
    const char *why = desc && strlen(desc) != len ? "the description holds a NUL"
                                                  : zt__role_problem(name, desc, buf, sizeof buf);
    if (why) return luaL_error(L, "zt.role: %s", why);
    if (zt_role_declare(lp->p, name, desc) != ZT_OK) return luaL_error(L, "zt.role: out of memory");
    return 0;
}

static int l_auth_in_scope(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.in_scope");
    size_t len;
    const char *dept = check_str(L, 2, "zt.auth.in_scope", "department", &len);
    assert(plugin_of(L)->srv->auth); /* the core opens identity before any plugin starts */
    /* A code with a NUL byte, or longer than the 64 bytes codes have (the core would cut
     * it to a caller's code), names no department: the answer is no. */
    bool ok = len > 0 && len <= 64 && strlen(dept) == len;
    lua_pushboolean(L, ok && zt_req_in_scope(req, dept));
    return 1;
}

/* zt.auth.department(req, code) → {code, name, parent} or nil: the department as its
 * record has it, so that the name a plugin shows for a department is its name, not what
 * a request claims. */
static int l_auth_department(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.department");
    size_t len;
    const char *code = check_str(L, 2, "zt.auth.department", "department", &len);
    zt_txn *t = len > 0 && len <= 64 && strlen(code) == len ? zt_req_txn(req) : NULL;
    cJSON *d = t ? zt__auth_dept_get(plugin_of(L)->srv, t, code) : NULL;
    if (!d) {
        lua_pushnil(L);
        return 1;
    }
    /* { code, name, parent }: the identity layer drops the record's seal when it reads it */
    zt_lua_push_json(L, d); /* protected: d is freed whatever happens */
    cJSON_Delete(d);
    return 1;
}

/* zt.auth.within(req, department, scope) → boolean: department is scope or below it. */
static int l_auth_within(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.within");
    size_t dl, sl;
    const char *dept = check_str(L, 2, "zt.auth.within", "department", &dl);
    const char *scope = check_str(L, 3, "zt.auth.within", "scope", &sl);
    bool ok = dl > 0 && dl <= 64 && strlen(dept) == dl && sl > 0 && sl <= 64 && strlen(scope) == sl;
    lua_pushboolean(L, ok && zt_req_dept_within(req, dept, scope));
    return 1;
}

/* zt.auth.clears(req, label [, who]) → boolean: the request's caller, or `who` (a caller
 * table, as zt.auth.account gives: its clearance), is cleared for the security label. A
 * label auth.labels does not list is cleared for no one (false, not an error: a county may
 * have removed it). */
static int l_auth_clears(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.clears");
    size_t len;
    const char *label = check_str(L, 2, "zt.auth.clears", "label", &len);
    struct zt_lua_plugin *lp = plugin_of(L);
    bool ok = strlen(label) == len;
    if (lua_isnoneornil(L, 3)) {
        lua_pushboolean(L, ok && zt_req_clears(req, label));
        return 1;
    }
    luaL_argexpected(L, lua_istable(L, 3), 3, "a caller table (zt.auth.account) or nil");
    lua_getfield(L, 3, "clearance");
    zt_caller who = {.clearance = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL};
    lua_pushboolean(L, ok && zt_caller_clears(lp->p, who.clearance ? &who : NULL, label));
    return 1;
}

/* zt.auth.labels() → the security labels of auth.labels, lowest first. */
static int l_auth_labels(lua_State *L)
{
    const zt_conf *c = plugin_of(L)->srv->conf;
    lua_createtable(L, (int)c->auth_nlabels, 0);
    for (size_t i = 0; i < c->auth_nlabels; i++) {
        lua_pushstring(L, c->auth_labels[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    set_meta(L, &K_ARRAY);
    return 1;
}

/* zt.auth.account(req, login) → the account as a caller table, or nil: none, or
 * disabled. An unreadable store is an error, not a nil (it would read as "no one"). */
static int l_auth_account(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.auth.account");
    size_t len;
    const char *login = check_str(L, 2, "zt.auth.account", "login", &len);
    const zt_caller *c = NULL;
    int rc = strlen(login) == len ? zt_req_account(req, login, &c) : ZT_ENOTFOUND;
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) luaL_error(L, "zt.auth.account: %s", zt_strerror(rc));
    push_caller(L, c);
    return 1;
}

/* zt.audit.note(req, action, object): either may be nil (the default stays). */
static int l_audit_note(lua_State *L)
{
    zt_req *req = check_req(L, 1, "zt.audit.note");
    const char *what[2] = {NULL, NULL};
    static const char *const names[2] = {"action", "object"};
    for (int k = 0; k < 2; k++) {
        if (lua_isnoneornil(L, 2 + k)) continue;
        size_t len;
        what[k] = check_str(L, 2 + k, "zt.audit.note", names[k], &len);
        if (strlen(what[k]) != len)
            return luaL_error(L, "zt.audit.note: %s holds a NUL byte", names[k]);
    }
    zt_audit_note(req, what[0], what[1]);
    return 0;
}

/* ---- zt.crypto, zt.valid: personal data ------------------------------------------- */

#define FIELD_NAME_MAX 64

static int crypto_fail(lua_State *L, const char *fn, int rc)
{
    if (rc == ZT_ESTATE) return luaL_error(L, "%s: the node has no keys (not started?)", fn);
    return luaL_error(L, "%s: %s", fn, zt_strerror(rc));
}

static int l_crypto_encrypt(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *field = check_cstr(L, 1, "zt.crypto.encrypt", "field", FIELD_NAME_MAX);
    size_t len;
    const char *plain = check_str(L, 2, "zt.crypto.encrypt", "plaintext", &len);
    if (len > SIZE_MAX / 2) return luaL_error(L, "zt.crypto.encrypt: plaintext too long");
    luaL_Buffer b;
    size_t outlen = len + ZT_FIELD_OVERHEAD;
    char *out = luaL_buffinitsize(L, &b, outlen);
    int rc = zt_field_encrypt(lp->p, field, plain, len, out, &outlen);
    if (rc) return crypto_fail(L, "zt.crypto.encrypt", rc);
    luaL_pushresultsize(&b, outlen);
    return 1;
}

/* → plaintext, or nil and why (never an error for a value that is not one of ours). */
static int l_crypto_decrypt(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *field = check_cstr(L, 1, "zt.crypto.decrypt", "field", FIELD_NAME_MAX);
    size_t len;
    const char *cipher = check_str(L, 2, "zt.crypto.decrypt", "ciphertext", &len);
    int rc = ZT_EINVAL;
    if (len >= ZT_FIELD_OVERHEAD) {
        luaL_Buffer b;
        size_t outlen = len - ZT_FIELD_OVERHEAD;
        char *out = luaL_buffinitsize(L, &b, outlen);
        rc = zt_field_decrypt(lp->p, field, cipher, len, out, &outlen);
        if (rc == ZT_OK) {
            luaL_pushresultsize(&b, outlen);
            return 1;
        }
    }
    if (rc != ZT_EINVAL) return crypto_fail(L, "zt.crypto.decrypt", rc);
    luaL_pushfail(L);
    lua_pushfstring(L,
                    "zt.crypto.decrypt: not a value encrypted for field '%s' of this plugin "
                    "(altered, cut short, or from another field, plugin or node)",
                    field);
    return 2;
}

static int l_crypto_index(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *field = check_cstr(L, 1, "zt.crypto.index", "field", FIELD_NAME_MAX);
    size_t len;
    const char *value = check_str(L, 2, "zt.crypto.index", "value", &len);
    unsigned char out[ZT_INDEX_BYTES];
    int rc = zt_field_index(lp->p, field, value, len, out);
    if (rc) return crypto_fail(L, "zt.crypto.index", rc);
    lua_pushlstring(L, (const char *)out, sizeof out);
    return 1;
}

#define RANDOM_MAX 1024

static int l_crypto_random(lua_State *L)
{
    int isint = 0;
    lua_Integer n = lua_type(L, 1) == LUA_TNUMBER ? lua_tointegerx(L, 1, &isint) : 0;
    if (!isint || n < 1 || n > RANDOM_MAX)
        return luaL_error(L, "zt.crypto.random: n must be an integer 1..%d", RANDOM_MAX);
    unsigned char buf[RANDOM_MAX];
    zt_random(buf, (size_t)n);
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

static int l_crypto_hash(lua_State *L)
{
    size_t len;
    const char *s = check_str(L, 1, "zt.crypto.hash", "the argument", &len);
    unsigned char out[32];
    zt_hash(s, len, out);
    lua_pushlstring(L, (const char *)out, sizeof out);
    return 1;
}

static int l_crypto_hex(lua_State *L)
{
    size_t len;
    const char *s = check_str(L, 1, "zt.crypto.hex", "the argument", &len);
    if (len > (SIZE_MAX - 1) / 2) return luaL_error(L, "zt.crypto.hex: too long");
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * len + 1);
    zt__hex(out, s, len);
    luaL_pushresultsize(&b, 2 * len);
    return 1;
}

/* The validators answer false for anything that is not a candidate string of theirs. */
static const char *valid_arg(lua_State *L, const char *fn)
{
    size_t len;
    const char *s = check_str(L, 1, fn, "the argument", &len);
    return strlen(s) == len ? s : NULL;
}

static int l_valid_citizen_id(lua_State *L)
{
    const char *s = valid_arg(L, "zt.valid.citizen_id");
    lua_pushboolean(L, s && zt_valid_citizen_id(s));
    return 1;
}

static int l_valid_citizen_id_canon(lua_State *L)
{
    const char *s = valid_arg(L, "zt.valid.citizen_id_canon");
    char out[19];
    if (s && zt_citizen_id_canon(s, out) == ZT_OK)
        lua_pushstring(L, out);
    else
        luaL_pushfail(L);
    return 1;
}

static int l_valid_credit_code(lua_State *L)
{
    const char *s = valid_arg(L, "zt.valid.credit_code");
    lua_pushboolean(L, s && zt_valid_credit_code(s));
    return 1;
}

/* zt.valid.label(v): true if v is one of the node's security labels (auth.labels); false
 * for anything else, strings or not (a label comes from a request's JSON). */
static int l_valid_label(lua_State *L)
{
    size_t len;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    lua_pushboolean(L, s && strlen(s) == len && zt__label_level(plugin_of(L)->srv->conf, s) >= 0);
    return 1;
}

/* zt.valid.text(s, max_chars [, "lines"]): true, or false and why (zt_text_problem). */
static int l_valid_text(lua_State *L)
{
    lua_Integer max = check_int(L, 2, "zt.valid.text", "max_chars");
    if (max < 1) return luaL_error(L, "zt.valid.text: max_chars must be at least 1");
    int flags = 0;
    if (!lua_isnoneornil(L, 3)) {
        const char *mode = check_str(L, 3, "zt.valid.text", "the third argument", NULL);
        if (strcmp(mode, "lines") != 0)
            return luaL_error(L, "zt.valid.text: the third argument may only be \"lines\"");
        flags = ZT_TEXT_LINES;
    }
    size_t len;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    const char *why = !s                 ? "is not text"
                      : strlen(s) != len ? "holds a NUL byte"
                                         : zt_text_problem(s, (size_t)max, flags);
    lua_pushboolean(L, why == NULL);
    if (!why) return 1;
    lua_pushstring(L, why);
    return 2;
}

/* ---- zt.rate: limits per client ------------------------------------------------------ */

static zt_req *rate_args(lua_State *L, const char *fn, const char **name, unsigned *max,
                         unsigned *window)
{
    zt_req *req = check_req(L, 1, fn);
    *name = check_cstr(L, 2, fn, "name", 100);
    lua_Integer m = check_int(L, 3, fn, "max"), w = check_int(L, 4, fn, "window");
    if (m < 1 || m > 1000000) luaL_error(L, "%s: max must be 1..1000000", fn);
    if (w < 1 || w > 86400 * 7) luaL_error(L, "%s: window must be 1..604800 seconds", fn);
    *max = (unsigned)m, *window = (unsigned)w;
    return req;
}

/* zt.rate.check(req, name, max, window [, detail]): raises 429 when the client must wait */
static int l_rate_check(lua_State *L)
{
    const char *name;
    unsigned max, window;
    zt_req *req = rate_args(L, "zt.rate.check", &name, &max, &window);
    const char *detail = lua_isnoneornil(L, 5) ? "too many attempts from this address: try later"
                                               : check_str(L, 5, "zt.rate.check", "detail", NULL);
    int64_t wait = zt_rate_wait(req, name, max, window);
    if (wait <= 0) return 0;
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)wait);
    zt_res_header(req, "Retry-After", s);
    return raise_problem(L, 429, "too-many-attempts", detail, "Too Many Requests");
}

/* zt.rate.note(req, name, max, window) → the seconds the client must now wait (0: none) */
static int l_rate_note(lua_State *L)
{
    const char *name;
    unsigned max, window;
    zt_req *req = rate_args(L, "zt.rate.note", &name, &max, &window);
    lua_pushinteger(L, (lua_Integer)zt_rate_note(req, name, max, window));
    return 1;
}

/* ---- zt.json.canonical, zt.seal: electronic seals --------------------------------- */

#define CANON_WHY "has no canonical JSON form (nested deeper than 64, or an integer beyond 2^53)"

static int l_json_canonical(lua_State *L)
{
    check_any(L, 1, "zt.json.canonical", "the value");
    jbox *b = json_encode_tree(L, 1);
    size_t len;
    int rc = zt_json_canonical(b->json, &b->text, &len);
    if (rc == ZT_EINVAL) return luaL_error(L, "zt.json.canonical: the value " CANON_WHY);
    if (rc) return luaL_error(L, "zt.json.canonical: %s", zt_strerror(rc));
    lua_pushlstring(L, b->text, len);
    box_clear(b);
    return 1;
}

/* Sealing writes (the department's first key), so only a request that may write can. */
static zt_req *seal_req(lua_State *L, const char *fn)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    zt_req *req = check_req(L, 1, fn);
    if (!lp->srv->seals || !lp->srv->keys)
        luaL_error(L, "%s: this node has no seal keys (not started?)", fn);
    zt_txn *t = zt_req_txn(req);
    if (!t) {
        lp->store_err = ZT_EBUSY;
        luaL_error(L, "%s: storage unavailable", fn);
    }
    if (!zt_txn_writable(t))
        luaL_error(L, "%s: only in a handler that may write (POST, PUT, PATCH, DELETE), not in %s",
                   fn, zt_req_method(req));
    return req;
}

/* Hand the seal (held by the box) to Lua as a table. */
static int seal_done(lua_State *L, const char *fn, const char *dept, jbox *b, cJSON *seal, int rc)
{
    if (rc == ZT_EINVAL) return luaL_error(L, "%s: the document %s", fn, CANON_WHY);
    if (rc == ZT_ENOTFOUND)
        return luaL_error(L, "%s: there is no department '%s' (zt.auth.department)", fn, dept);
    if (rc == ZT_EFULL) plugin_of(L)->store_err = rc;
    if (rc) return luaL_error(L, "%s: %s", fn, zt_strerror(rc));
    cJSON_Delete(b->json);
    b->json = seal;
    json_push(L, seal, 0);
    box_clear(b);
    return 1;
}

static int l_seal_json(lua_State *L)
{
    zt_req *req = seal_req(L, "zt.seal.json");
    const char *dept = check_cstr(L, 2, "zt.seal.json", "department", 64);
    check_any(L, 3, "zt.seal.json", "the document");
    jbox *b = json_encode_tree(L, 3);
    cJSON *seal = NULL;
    int rc = zt_seal_json(req, dept, b->json, &seal);
    return seal_done(L, "zt.seal.json", dept, b, seal, rc);
}

static int l_seal_bytes(lua_State *L)
{
    zt_req *req = seal_req(L, "zt.seal.bytes");
    const char *dept = check_cstr(L, 2, "zt.seal.bytes", "department", 64);
    size_t len;
    const char *doc = check_str(L, 3, "zt.seal.bytes", "the document", &len);
    jbox *b = box_new(L);
    cJSON *seal = NULL;
    int rc = zt_seal_bytes(req, dept, doc, len, &seal);
    return seal_done(L, "zt.seal.bytes", dept, b, seal, rc);
}

/* ---- zt.on, zt.emit, zt.timer, zt.provide, zt.call: events and services ------------- */

/* A string argument that the core reads up to its NUL, of any length (the core checks it). */
static const char *check_name(lua_State *L, int idx, const char *fn, const char *what)
{
    size_t len;
    const char *s = check_str(L, idx, fn, what, &len);
    if (strlen(s) != len) luaL_error(L, "%s: %s holds a NUL byte", fn, what);
    return s;
}

/* Keep the function at fidx for the core to call back: a hook named `name`. */
static struct lua_hook *hook_new(lua_State *L, struct zt_lua_plugin *lp, const char *fn,
                                 const char *name, int fidx)
{
    if (lua_type(L, fidx) != LUA_TFUNCTION)
        luaL_error(L, "%s: the handler must be a function, not %s", fn, luaL_typename(L, fidx));
    lua_pushvalue(L, fidx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct lua_hook *h = calloc(1, sizeof *h);
    if (h) h->name = strdup(name);
    if (!h || !h->name) {
        free(h);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        luaL_error(L, "not enough memory");
    }
    h->lp = lp;
    h->ref = ref;
    return h;
}

static void hook_free(lua_State *L, struct lua_hook *h)
{
    if (L) luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    free(h->name);
    free(h);
}

static void hook_link(struct zt_lua_plugin *lp, struct lua_hook *h)
{
    h->next = lp->hooks;
    lp->hooks = h;
}

/* The hook of zt.on, zt.provide and their like: named by argument 1 (`what`), its function
 * argument 2; only during init. */
static struct lua_hook *hook_declare(lua_State *L, const char *fn, const char *what)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *name = check_name(L, 1, fn, what);
    if (!lp->p->in_init) luaL_error(L, "%s: only during init", fn);
    return hook_new(L, lp, fn, name, 2);
}

/* Keep the hook if the core took it (rc 0); else free it and raise `fn('name'): why`. */
static int hook_declared(lua_State *L, struct lua_hook *h, const char *fn, int rc, const char *why)
{
    if (rc) {
        const char *name = lua_tostring(L, 1); /* h->name is freed with h */
        hook_free(L, h);
        return luaL_error(L, "%s('%s'): %s", fn, name, why);
    }
    hook_link(h->lp, h);
    return 0;
}

/* Run fn(arg) protected in the hook's state with req as its work. On an error, report says
 * it (msg lives until report returns) and the result is the store's ZT_EFULL or ZT_EBUSY
 * if that is what failed (worth retrying), ZT_ERROR otherwise. */
static int hook_run(struct lua_hook *h, zt_req *req, lua_CFunction fn, void *arg,
                    void (*report)(zt_req *req, void *arg, const char *msg))
{
    struct zt_lua_plugin *lp = h->lp;
    lua_State *L = lp->L;
    if (!lua_checkstack(L, 8)) return ZT_ENOMEM;
    int top = lua_gettop(L);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    int rc = work_call(lp, L, req, NULL, 1, 0);
    if (rc != ZT_OK) report(req, arg, error_text(L));
    lua_settop(L, top);
    return rc;
}

/* The event as a table: seq, topic, payload (nil for null), time, source, request_id,
 * timer (nil unless a timer fired it), attempt. */
static void push_event(lua_State *L, const zt_event *ev)
{
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)ev->seq);
    lua_setfield(L, -2, "seq");
    lua_pushstring(L, ev->topic);
    lua_setfield(L, -2, "topic");
    if (ev->payload && !cJSON_IsNull(ev->payload)) {
        json_push(L, ev->payload, 0);
        lua_setfield(L, -2, "payload");
    }
    lua_pushinteger(L, (lua_Integer)ev->time_ms);
    lua_setfield(L, -2, "time");
    lua_pushstring(L, ev->source ? ev->source : "");
    lua_setfield(L, -2, "source");
    lua_pushstring(L, ev->request_id ? ev->request_id : "");
    lua_setfield(L, -2, "request_id");
    if (ev->timer) {
        lua_pushstring(L, ev->timer);
        lua_setfield(L, -2, "timer");
    }
    lua_pushinteger(L, (lua_Integer)ev->attempt);
    lua_setfield(L, -2, "attempt");
}

struct ecall {
    struct lua_hook *h;
    const zt_event *ev;
};

/* Called protected: handler(ev, ctx). */
static int run_event(lua_State *L)
{
    struct ecall *ec = lua_touserdata(L, 1);
    lua_settop(L, 0);
    push_work_req(L, plugin_of(L));
    lua_rawgeti(L, LUA_REGISTRYINDEX, ec->h->ref);
    push_event(L, ec->ev);
    lua_pushvalue(L, 1);
    lua_call(L, 2, 0);
    return 0;
}

static void event_failed(zt_req *ctx, void *arg, const char *msg)
{
    const struct ecall *ec = arg;
    zt_req_log(ctx, ZT_LOG_ERROR,
               "Lua handler of %s for event %s (seq %llu, attempt %u) failed: %s", ec->h->name,
               ec->ev->topic, (unsigned long long)ec->ev->seq, ec->ev->attempt, msg);
}

/* The zt_event_fn of every zt.on: an error (or the budget, or the memory cap) is a
 * failure, which the bus retries; returning is success. */
static int lua_event_fn(zt_req *ctx, const zt_event *ev, void *ud)
{
    struct ecall ec = {ud, ev};
    return hook_run(ud, ctx, run_event, &ec, event_failed);
}

/* zt.on(pattern, handler): during init. */
static int l_on(lua_State *L)
{
    struct lua_hook *h = hook_declare(L, "zt.on", "pattern");
    int rc = zt_on(h->lp->p, h->name, lua_event_fn, h);
    const char *bad = rc == ZT_EINVAL ? zt__pattern_problem(h->name, h->lp->p->name) : NULL;
    const char *why = bad               ? bad
                      : rc == ZT_EEXIST ? "this plugin subscribed to it already"
                                        : zt_strerror(rc);
    return hook_declared(L, h, "zt.on", rc, why);
}

/* Called protected: fn(ctx), a function zt.at_start was given. */
static int run_start(lua_State *L)
{
    const struct lua_hook *h = lua_touserdata(L, 1);
    lua_settop(L, 0);
    push_work_req(L, plugin_of(L));
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
}

static void start_failed(zt_req *ctx, void *arg, const char *msg)
{
    (void)arg;
    zt_req_log(ctx, ZT_LOG_ERROR,
               "Lua function given to zt.at_start failed (nothing it wrote is kept; it runs "
               "again at the next start): %s",
               msg);
}

/* zt.at_start(fn): during init; fn(ctx) runs at each start of the node, before it serves
 * (zt__lua_start). */
static int l_at_start(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    if (!lp->p->in_init) return luaL_error(L, "zt.at_start: only during init");
    struct lua_hook *h = hook_new(L, lp, "zt.at_start", "start", 1);
    struct lua_hook **end = &lp->starts;
    while (*end) end = &(*end)->next;
    *end = h;
    return 0;
}

int zt__lua_start(zt_server *srv, zt_plugin *p)
{
    struct zt_lua_plugin *lp = p->lua;
    int failed = 0;
    for (struct lua_hook *h = lp ? lp->starts : NULL; h; h = h->next) {
        zt_req *job = zt__job_new(srv, p, "START", p->name);
        if (!job) {
            zt_log(p, ZT_LOG_ERROR, "zt.at_start: out of memory: a start function did not run");
            failed++;
            continue;
        }
        int rc = hook_run(h, job, run_start, h, start_failed);
        if (zt__job_end(srv, job, rc) != ZT_OK) failed++;
    }
    return failed ? ZT_ERROR : ZT_OK;
}

/* Why an emit or a timer was refused. */
static int bus_fail(lua_State *L, const char *fn, const char *topic, int rc)
{
    switch (rc) {
    case ZT_EINVAL: { /* the topic: its syntax, or another plugin's _ topic */
        const char *why = zt__topic_problem(topic, plugin_of(L)->p->name);
        return luaL_error(L, "%s: '%s' %s", fn, topic, why ? why : zt_strerror(rc));
    }
    case ZT_EREADONLY:
        return luaL_error(L,
                          "%s: only in work that may write (POST, PUT, PATCH, DELETE, an event), "
                          "not in GET",
                          fn);
    case ZT_ETOOBIG:
        return luaL_error(L, "%s: the payload is over 256 KiB", fn);
    default:
        return db_fail(L, fn, rc);
    }
}

/* The JSON of the argument at idx (none or nil: NULL), held by a box pushed on the stack. */
static const cJSON *arg_json(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) {
        box_new(L);
        return NULL;
    }
    return json_encode_tree(L, idx)->json;
}

/* zt.emit(topic [, payload]) */
static int l_emit(lua_State *L)
{
    zt_req *w = work_of(L, "zt.emit");
    const char *topic = check_name(L, 1, "zt.emit", "topic");
    const cJSON *payload = arg_json(L, 2);
    int rc = zt_emit(w, topic, payload);
    if (rc) return bus_fail(L, "zt.emit", topic, rc);
    return 0;
}

/* An integer argument, strictly (a string is not taken for a number). */
static int64_t check_ms(lua_State *L, int idx, const char *fn, const char *what)
{
    return (int64_t)check_integer(L, idx, fn, what, "an integer number of milliseconds");
}

static int timer_set(lua_State *L, const char *fn, int64_t due)
{
    zt_req *w = work_of(L, fn);
    const char *topic = check_name(L, 2, fn, "topic");
    const cJSON *payload = arg_json(L, 3);
    char id[27];
    int rc = zt_timer_at(w, due, topic, payload, id);
    if (rc) return bus_fail(L, fn, topic, rc);
    lua_pushstring(L, id);
    return 1;
}

/* zt.timer.at(due_ms, topic [, payload]) → id */
static int l_timer_at(lua_State *L)
{
    return timer_set(L, "zt.timer.at", check_ms(L, 1, "zt.timer.at", "due"));
}

/* zt.timer.after(ms, topic [, payload]) → id: due at zt.now() + ms. */
static int l_timer_after(lua_State *L)
{
    int64_t ms = check_ms(L, 1, "zt.timer.after", "delay");
    int64_t now = zt_now_ms();
    if (ms < 0 || ms > INT64_MAX - now)
        return luaL_error(L, "zt.timer.after: delay must be 0 or more (and not beyond the year "
                             "292 million)");
    return timer_set(L, "zt.timer.after", now + ms);
}

/* zt.timer.cancel(id) → true, or false if no such timer is pending. */
static int l_timer_cancel(lua_State *L)
{
    zt_req *w = work_of(L, "zt.timer.cancel");
    const char *id = check_name(L, 1, "zt.timer.cancel", "id");
    int rc = zt_timer_cancel(w, id);
    if (rc && rc != ZT_ENOTFOUND) return bus_fail(L, "zt.timer.cancel", id, rc);
    lua_pushboolean(L, rc == ZT_OK);
    return 1;
}

struct scall {
    struct lua_hook *h;
    const cJSON *args;
    cJSON *result;
};

/* Called protected: result = service(args, ctx), as JSON. */
static int run_service(lua_State *L)
{
    struct scall *sc = lua_touserdata(L, 1);
    lua_settop(L, 0);
    push_work_req(L, plugin_of(L));
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->h->ref);
    if (sc->args && !cJSON_IsNull(sc->args))
        json_push(L, sc->args, 0);
    else
        lua_pushnil(L);
    lua_pushvalue(L, 1);
    lua_call(L, 2, 1);
    if (!lua_isnil(L, -1)) {
        jbox *b = json_encode_tree(L, -1);
        sc->result = b->json; /* nothing raises after this */
        b->json = NULL;
    }
    return 0;
}

static void service_failed(zt_req *req, void *arg, const char *msg)
{
    const struct lua_hook *h = ((struct scall *)arg)->h;
    zt_req_log(req, ZT_LOG_WARN, "Lua service %s of %s failed: %s", h->name, h->lp->p->name, msg);
    char why[ZT_ERRLEN];
    first_part(why, sizeof why, msg);
    zt__call_fail(req, why);
}

/* The zt_service_fn of every zt.provide: runs in the providing plugin's state, with the
 * caller's request as its work. An error is a failed call (ZT_ERROR), never the caller's
 * crash; its message is logged and kept for a Lua caller. */
static int lua_service_fn(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    struct scall sc = {ud, args, NULL};
    *result = NULL;
    int rc = hook_run(ud, req, run_service, &sc, service_failed);
    if (rc == ZT_OK) *result = sc.result;
    return rc;
}

/* zt.provide(name, function(args, ctx) ... end): during init. */
static int l_provide(lua_State *L)
{
    struct lua_hook *h = hook_declare(L, "zt.provide", "name");
    int rc = zt_provide(h->lp->p, h->name, lua_service_fn, h);
    const char *why = rc == ZT_EINVAL ? "not a service name (1..64 bytes of letters, digits, _, . "
                                        "and -)"
                      : rc == ZT_ECONFLICT ? "another plugin provides it already"
                                           : zt_strerror(rc);
    return hook_declared(L, h, "zt.provide", rc, why);
}

/* What a service's error code means, as the fourth result of a failed zt.call. */
static const char *call_reason(int rc)
{
    switch (rc) {
    case ZT_EINVAL:
        return "invalid";
    case ZT_ENOTFOUND:
        return "not-found";
    case ZT_EPERM:
        return "forbidden";
    case ZT_ECONFLICT:
    case ZT_EEXIST:
        return "conflict";
    case ZT_EBUSY:
        return "busy";
    case ZT_EFULL:
        return "storage-full";
    default:
        return "error";
    }
}

/* zt.call(name [, args]) → result, or nil, message, "not-provided" | "failed", reason. A
 * result of null is zt.json.null, so that nil always means the call failed. */
static int l_call(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    zt_req *w = work_of(L, "zt.call");
    const char *name = check_name(L, 1, "zt.call", "name");
    const cJSON *args = arg_json(L, 2);
    jbox *res = box_new(L);
    int rc = zt_call(w, name, args, &res->json);
    if (rc == ZT_OK) {
        if (res->json)
            json_push(L, res->json, 0);
        else
            lua_rawgetp(L, LUA_REGISTRYINDEX, &K_NULL);
        box_clear(res);
        return 1;
    }
    box_clear(res);
    bool provided = !w->call_fail.not_provided;
    if (rc == ZT_EFULL) lp->store_err = rc; /* the handler failing now answers 507 */
    lua_pushnil(L);
    if (w->call_fail.msg) /* the service said why */
        lua_pushstring(L, w->call_fail.msg);
    else if (!provided)
        lua_pushfstring(L, "zt.call: no enabled plugin provides the service '%s'", name);
    else
        lua_pushfstring(L, "zt.call('%s'): %s", name, zt_strerror(rc));
    lua_pushstring(L, provided ? "failed" : "not-provided");
    lua_pushstring(L, provided ? call_reason(rc) : "not-provided");
    return 4;
}

/* ---- zt.config --------------------------------------------------------------------- */

/* __index of the proxy: upvalues are the values and the set of declared names. */
static int config_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 0; /* declared, unset */
    return luaL_error(L, "zt.config: no option '%s' (declare it in manifest.lua)",
                      luaL_tolstring(L, 2, NULL));
}

/* next() of the C API: scripts may replace the global one. */
static int l_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1)) return 2;
    lua_pushnil(L);
    return 1;
}

static int proxy_pairs(lua_State *L)
{
    lua_pushcfunction(L, l_next);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushnil(L);
    return 3;
}

static int proxy_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

/* Replace the table on top with a read-only proxy of it. With strict, reading an
 * undeclared key is an error (the set of declared names is just below the table). */
static void make_readonly(lua_State *L, bool strict)
{
    int t = lua_gettop(L);
    lua_newtable(L); /* the proxy */
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, t);
    if (strict) {
        lua_pushvalue(L, t - 1);
        lua_pushcclosure(L, config_index, 2);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, t);
    lua_pushcclosure(L, proxy_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushvalue(L, t);
    lua_pushcclosure(L, proxy_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, t);
}

static void push_config(lua_State *L, const zt_plugin *p)
{
    lua_newtable(L); /* declared names */
    for (size_t i = 0; i < p->noptions && p->options && p->options[i].name; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, p->options[i].name);
    }
    lua_newtable(L); /* values */
    for (size_t i = 0; i < p->nopts; i++) {
        const zt_optval *o = &p->opts[i];
        lua_pushboolean(L, 1);
        lua_setfield(L, -3, o->name);
        if (!o->set) continue;
        switch (o->type) {
        case ZT_OPT_STRING:
            lua_pushstring(L, o->s);
            break;
        case ZT_OPT_INT:
            lua_pushinteger(L, (lua_Integer)o->i);
            break;
        case ZT_OPT_NUMBER:
            lua_pushnumber(L, o->n);
            break;
        case ZT_OPT_BOOL:
            lua_pushboolean(L, o->b);
            break;
        case ZT_OPT_LIST:
            lua_createtable(L, (int)o->nlist, 0);
            for (size_t j = 0; j < o->nlist; j++) {
                lua_pushstring(L, o->list[j]);
                lua_rawseti(L, -2, (lua_Integer)j + 1);
            }
            make_readonly(L, false);
            break;
        default:
            continue;
        }
        lua_setfield(L, -2, o->name);
    }
    make_readonly(L, true);
    lua_remove(L, -2);
}

/* ---- the sandbox ------------------------------------------------------------------- */

/* collectgarbage("count") only: scripts must not steer the collector the node relies on. */
static int l_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed in the sandbox");
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) + lua_gc(L, LUA_GCCOUNTB) / 1024.0);
    return 1;
}

/* Lua calls a message handler from where the error was raised; for the budget's error that
 * is inside the hook, where hooks are off, so a looping handler would never be stopped.
 * Once the budget is spent, the script's handler is skipped and the error goes as it is. */
static int xpcall_handler(lua_State *L)
{
    if (plugin_of(L)->exhausted) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall(f, msgh, ...): the base library's, with msgh wrapped. Called as a C function,
 * not through lua_call, so that it keeps its continuation (yields across it still work). */
static int l_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* A coroutine's body runs inside a (yieldable) pcall of its own. The budget's error is
 * raised in the hook, where Lua has switched hooks off for that thread; only a pcall's
 * recovery switches them back on. Without one inside the coroutine, it would die with hooks
 * off, and closing it (coroutine.close, or coroutine.wrap after an error) would run its
 * <close> handlers beyond any budget. Here the error is caught and raised again, with
 * hooks on. */
static int guard_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
    return lua_gettop(L);
}

static int guard(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return guard_k(L, lua_pcallk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, 0, guard_k), 0);
}

/* coroutine.create(f) and coroutine.wrap(f) (the library's, as upvalue), with f guarded. */
static int l_coroutine_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, guard, 1);
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* setmetatable without __gc: Lua runs finalizers with hooks off, outside any budget. */
static int l_setmetatable(lua_State *L)
{
    lua_pushliteral(L, "__gc");
    if (lua_type(L, 2) == LUA_TTABLE && lua_rawget(L, 2) != LUA_TNIL)
        return luaL_error(L, "setmetatable: __gc is not allowed in the sandbox");
    lua_settop(L, 2);
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* load(chunk [, name [, mode [, env]]]): text only, whatever mode says. */
static int l_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n > 4) lua_settop(L, n = 4);
    if (n < 3) lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n < 3 ? 3 : n, LUA_MULTRET);
    return lua_gettop(L);
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* require(name): "zt" and the standard libraries; "zt.x.y" is <lua_dir>/zt/x/y.lua and
 * "<plugin>.x" is <lua_dir>/plugins/<plugin>/x.lua. Nothing else, and nothing outside lua/. */
static int l_require(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &K_LOADED); /* 2 */
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 2) != LUA_TNIL) {
        if (lua_touserdata(L, -1) == &K_LOADING)
            return luaL_error(L, "require '%s': it requires itself (a loop)", name);
        return 1;
    }
    lua_pop(L, 1);
    const char *dot = strchr(name, '.');
    bool ok = dot && len <= 200 && dot != name;
    for (size_t i = 0; ok && i < len; i++)
        if (name[i] == '.' ? (i + 1 == len || name[i + 1] == '.') : !name_char(name[i])) ok = false;
    if (!ok)
        return luaL_error(L,
                          "require '%s': no such module (modules are zt.<name> or "
                          "<plugin>.<name>, under lua/)",
                          name);
    char rel[256], path[PATH_MAX];
    size_t head = (size_t)(dot - name);
    if (head == 2 && memcmp(name, "zt", 2) == 0)
        snprintf(rel, sizeof rel, "zt/%s", dot + 1);
    else
        snprintf(rel, sizeof rel, "plugins/%.*s/%s", (int)head, name, dot + 1);
    for (char *c = strchr(rel, '/') + 1; *c; c++)
        if (*c == '.') *c = '/';
    int k = snprintf(path, sizeof path, "%s/%s.lua", lp->srv->conf->lua_dir, rel);
    if (k < 0 || (size_t)k >= sizeof path)
        return luaL_error(L, "require '%s': path too long", name);

    zt_buf src = {0};
    char err[ZT_ERRLEN];
    if (read_file(path, &src, err, sizeof err)) return luaL_error(L, "require '%s': %s", name, err);
    lua_pushfstring(L, "@%s", path);
    int st = luaL_loadbufferx(L, src.data ? src.data : "", src.len, lua_tostring(L, -1), "t");
    zt__buf_free(&src);
    if (st != LUA_OK) return lua_error(L);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, (void *)&K_LOADING);
    lua_rawset(L, 2);
    lua_pushvalue(L, 1);
    lua_pushstring(L, path);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) { /* forget the attempt, so a retry says why again */
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_rawset(L, 2);
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

static void set_funcs(lua_State *L, const luaL_Reg *r)
{
    for (; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
}

/* A standard library, opened without registering it anywhere a script could reach. */
static void open_lib(lua_State *L, lua_CFunction open)
{
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
}

static void setup_metatables(lua_State *L)
{
    new_meta(L, &K_BOX, "zt.box");
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    new_meta(L, &K_ARRAY, "zt.json.array");
    plugin_of(L)->array = lua_topointer(L, -1);
    lua_pop(L, 1);

    new_meta(L, &K_PROBLEM, "zt.problem");
    lua_pushcfunction(L, problem_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, problem_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    new_meta(L, &K_DB, "zt.db");
    lua_pushcfunction(L, db_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 4);
    set_funcs(L, (const luaL_Reg[]){{"get", l_db_get},
                                    {"put", l_db_put},
                                    {"delete", l_db_delete},
                                    {"iter", l_db_iter},
                                    {NULL, NULL}});
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    new_meta(L, &K_ITER, "zt.db.iterator");
    lua_pushcfunction(L, iter_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    new_meta(L, &K_REQ, "zt.request");
    lua_pushcfunction(L, req_header);
    lua_pushcfunction(L, req_json);
    lua_pushcclosure(L, req_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, req_pairs);
    lua_setfield(L, -2, "__pairs");
    plugin_of(L)->req_mt = lua_topointer(L, -1);
    plugin_of(L)->req_meta = luaL_ref(L, LUA_REGISTRYINDEX);

    /* zt.json.null: a unique, frozen table */
    lua_newtable(L);
    new_meta(L, &K_NULL, "zt.json.null"); /* K_NULL holds the metatable for a moment */
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_readonly);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    plugin_of(L)->null = lua_topointer(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &K_NULL); /* and now the sentinel itself */
}

/* zt.config_error(option, message): an option's value is wrong (init only); raises
 * "FILE:LINE: plugin.option: message", which stops the start as the config's own errors. */
static int l_config_error(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    const char *name = check_str(L, 1, "zt.config_error", "option", NULL);
    const char *msg = check_str(L, 2, "zt.config_error", "message", NULL);
    if (!lp->p->in_init) return luaL_error(L, "zt.config_error: only during init");
    bool declared = false;
    for (size_t i = 0; i < lp->p->nopts && !declared; i++)
        declared = lp->p->opts[i].name && strcmp(lp->p->opts[i].name, name) == 0;
    if (!declared)
        return luaL_error(L, "zt.config_error: '%s' is not an option of plugin '%s' (manifest.lua)",
                          name, lp->p->name);
    zt_option_fail(lp->p, name, "%s", msg);
    lua_pushstring(L, lp->p->init_error);
    return lua_error(L); /* no position: the message has the config's */
}

static void push_zt(lua_State *L, zt_plugin *p)
{
    lua_createtable(L, 0, 16);
    set_funcs(L, (const luaL_Reg[]){{"route", l_route},
                                    {"problem", l_problem},
                                    {"id", l_id},
                                    {"now", l_now},
                                    {"mask", l_mask},
                                    {"on", l_on},
                                    {"at_start", l_at_start},
                                    {"emit", l_emit},
                                    {"provide", l_provide},
                                    {"call", l_call},
                                    {"config_error", l_config_error},
                                    {"role", l_role},
                                    {NULL, NULL}});
    lua_pushstring(L, p->name);
    lua_setfield(L, -2, "plugin");

    lua_createtable(L, 0, 1);
    set_funcs(L, (const luaL_Reg[]){{"open", l_db_open}, {NULL, NULL}});
    lua_setfield(L, -2, "db");

    lua_createtable(L, 0, 5);
    set_funcs(L, (const luaL_Reg[]){{"encode", l_json_encode},
                                    {"decode", l_json_decode},
                                    {"array", l_json_array},
                                    {"canonical", l_json_canonical},
                                    {NULL, NULL}});
    lua_rawgetp(L, LUA_REGISTRYINDEX, &K_NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");

    lua_createtable(L, 0, 4);
    for (int i = ZT_LOG_DEBUG; i <= ZT_LOG_ERROR; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, l_log, 1);
        lua_setfield(L, -2, log_levels[i]);
    }
    lua_setfield(L, -2, "log");

    push_config(L, p);
    lua_setfield(L, -2, "config");

    const struct {
        const char *name;
        const luaL_Reg *funcs;
    } groups[] = {
        {"auth", (const luaL_Reg[]){{"caller", l_auth_caller},
                                    {"has_role", l_auth_has_role},
                                    {"in_scope", l_auth_in_scope},
                                    {"department", l_auth_department},
                                    {"within", l_auth_within},
                                    {"account", l_auth_account},
                                    {"clears", l_auth_clears},
                                    {"labels", l_auth_labels},
                                    {NULL, NULL}}},
        {"audit", (const luaL_Reg[]){{"note", l_audit_note}, {NULL, NULL}}},
        {"crypto", (const luaL_Reg[]){{"encrypt", l_crypto_encrypt},
                                      {"decrypt", l_crypto_decrypt},
                                      {"index", l_crypto_index},
                                      {"random", l_crypto_random},
                                      {"hash", l_crypto_hash},
                                      {"hex", l_crypto_hex},
                                      {NULL, NULL}}},
        {"rate", (const luaL_Reg[]){{"check", l_rate_check}, {"note", l_rate_note}, {NULL, NULL}}},
        {"valid", (const luaL_Reg[]){{"citizen_id", l_valid_citizen_id},
                                     {"citizen_id_canon", l_valid_citizen_id_canon},
                                     {"credit_code", l_valid_credit_code},
                                     {"label", l_valid_label},
                                     {"text", l_valid_text},
                                     {NULL, NULL}}},
        {"seal", (const luaL_Reg[]){{"json", l_seal_json}, {"bytes", l_seal_bytes}, {NULL, NULL}}},
        {"timer", (const luaL_Reg[]){{"at", l_timer_at},
                                     {"after", l_timer_after},
                                     {"cancel", l_timer_cancel},
                                     {NULL, NULL}}},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        lua_newtable(L);
        set_funcs(L, groups[i].funcs);
        lua_setfield(L, -2, groups[i].name);
    }
}

static int setup_sandbox(lua_State *L)
{
    struct zt_lua_plugin *lp = lua_touserdata(L, 1);
    lua_settop(L, 0);
    setup_metatables(L);
    lua_newtable(L); /* the works' caller tables, by depth */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &K_CALLER);

    open_lib(L, luaopen_base); /* fills the global table: the sandbox */
    static const char *const gone[] = {"dofile", "loadfile", "require", NULL};
    for (const char *const *g = gone; *g; g++) {
        lua_pushnil(L);
        lua_setglobal(L, *g);
    }
    lua_getglobal(L, "load");
    lua_pushcclosure(L, l_load, 1);
    lua_setglobal(L, "load");
    lua_getglobal(L, "xpcall");
    lua_pushcclosure(L, l_xpcall, 1);
    lua_setglobal(L, "xpcall");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_pushcfunction(L, l_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
    lua_pushcfunction(L, l_require);
    lua_setglobal(L, "require");
    lua_pop(L, 1);

    lua_newtable(L); /* the require cache */
    int loaded = lua_gettop(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &K_LOADED);

    static const struct {
        const char *name;
        lua_CFunction open;
    } libs[] = {{"string", luaopen_string},
                {"table", luaopen_table},
                {"math", luaopen_math},
                {"utf8", luaopen_utf8},
                {"coroutine", luaopen_coroutine}};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        open_lib(L, libs[i].open);
        if (strcmp(libs[i].name, "string") == 0) {
            lua_pushnil(L); /* nothing could load what it makes */
            lua_setfield(L, -2, "dump");
            /* the matcher within the budget; this table is also the strings' __index */
            zt__lua_patterns_install(L, -1);
            lua_getfield(L, -1, "format");
            lua_rawsetp(L, LUA_REGISTRYINDEX, &K_FORMAT);
        } else if (strcmp(libs[i].name, "coroutine") == 0) {
            static const char *const makers[] = {"create", "wrap"};
            for (int k = 0; k < 2; k++) {
                lua_getfield(L, -1, makers[k]);
                lua_pushcclosure(L, l_coroutine_new, 1);
                lua_setfield(L, -2, makers[k]);
            }
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, loaded, libs[i].name);
        lua_setglobal(L, libs[i].name);
    }
    open_lib(L, luaopen_os);
    lua_createtable(L, 0, 4);
    static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
    for (const char *const *k = os_keep; *k; k++) {
        lua_getfield(L, -2, *k);
        lua_setfield(L, -2, *k);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, loaded, "os");
    lua_setglobal(L, "os");
    lua_pop(L, 1);

    push_zt(L, lp->p);
    lua_pushvalue(L, -1);
    lua_setfield(L, loaded, "zt");
    lua_setglobal(L, "zt");
    return 0;
}

static int run_file(lua_State *L)
{
    const char *path = lua_touserdata(L, 1);
    zt_buf src = {0};
    char err[ZT_ERRLEN];
    if (read_file(path, &src, err, sizeof err)) return luaL_error(L, "%s", err);
    lua_pushfstring(L, "@%s", path);
    int st = luaL_loadbufferx(L, src.data ? src.data : "", src.len, lua_tostring(L, -1), "t");
    zt__buf_free(&src);
    if (st != LUA_OK) return lua_error(L);
    lua_call(L, 0, 0);
    return 0;
}

static void lp_free(struct zt_lua_plugin *lp)
{
    assert(lp->depth == 0);
    if (lp->L) {
        iters_close_all(lp);
        budget_reset(lp); /* finalizers run at close: they get one budget */
        lua_close(lp->L);
    }
    pool_drain(lp);
    zt__buf_free(&lp->scratch);
    for (size_t i = 0; i < lp->nroles_seen; i++) free(lp->roles_seen[i]);
    while (lp->routes) {
        struct lua_route *r = lp->routes;
        lp->routes = r->next;
        route_free(r);
    }
    while (lp->hooks) {
        struct lua_hook *h = lp->hooks;
        lp->hooks = h->next;
        hook_free(NULL, h); /* its function went with the state */
    }
    while (lp->starts) {
        struct lua_hook *h = lp->starts;
        lp->starts = h->next;
        hook_free(NULL, h);
    }
    free(lp);
}

/* A plugin's state: the sandbox and the zt module acting as p, with the config's budget
 * and memory cap. Lua plugins and C plugins' scripts (zt_lua_new) both start here. */
static int lp_new(zt_server *srv, zt_plugin *p, struct zt_lua_plugin **out, char *err,
                  size_t errlen)
{
    struct zt_lua_plugin *lp = calloc(1, sizeof *lp);
    if (!lp) {
        snprintf(err, errlen, "plugin %s: out of memory", p->name);
        return ZT_ENOMEM;
    }
    lp->p = p;
    lp->srv = srv;
    lp->limit = srv->conf->lua_memory;
    lp->budget = srv->conf->lua_instructions;
    lp->L = lua_newstate(l_alloc, lp);
    if (!lp->L) {
        snprintf(err, errlen, "plugin %s: not enough memory for a Lua state (lua.memory = %zu)",
                 p->name, lp->limit);
        pool_drain(lp);
        free(lp);
        return ZT_ENOMEM;
    }
    lua_atpanic(lp->L, l_panic);
    lua_setwarnf(lp->L, l_warn, lp);
    if (lp_pcall(lp, setup_sandbox, lp) != LUA_OK) {
        const char *msg = lua_tostring(lp->L, -1);
        snprintf(err, errlen, "plugin %s: cannot set up its Lua state: %s", p->name,
                 msg ? msg : "?");
        lp_free(lp);
        return ZT_ENOMEM;
    }
    lua_settop(lp->L, 0);
    lp_after(lp);
    *out = lp;
    return ZT_OK;
}

int zt__lua_init(zt_server *srv, zt_plugin *p, char *err, size_t errlen)
{
    assert(srv && srv->conf && srv->conf->lua_dir && p && !p->lua);
    char path[PATH_MAX];
    if (plugin_file(path, sizeof path, srv, p->name, "init.lua")) {
        snprintf(err, errlen, "plugin %s: path too long", p->name);
        return ZT_EINVAL;
    }
    struct zt_lua_plugin *lp;
    int rc = lp_new(srv, p, &lp, err, errlen);
    if (rc) return rc;
    if (srv->lua_tests) { /* zhengtong test: the test files run in this state, not init.lua */
        p->lua = lp;
        return ZT_OK;
    }
    if (lp_pcall(lp, run_file, path) != LUA_OK) {
        lp_after(lp); /* what a refused allocation left is gone before error_text's */
        const char *msg = error_text(lp->L);
        zt_log(p, ZT_LOG_ERROR, "init.lua failed: %s", msg);
        first_part(err, errlen, msg);
        lp_free(lp);
        return ZT_ERROR;
    }
    lua_settop(lp->L, 0);
    lp_after(lp);
    p->lua = lp;
    return ZT_OK;
}

void zt__lua_fini(zt_plugin *p)
{
    if (p->lua) lp_free(p->lua);
    p->lua = NULL;
    if (p->script) lp_free(plugin_of(p->script));
    p->script = NULL;
}

size_t zt__lua_memory(const zt_plugin *p)
{
    return p->lua ? p->lua->used : 0;
}

lua_State *zt__lua_state(const zt_plugin *p)
{
    return p->lua ? p->lua->L : NULL;
}

void zt__lua_push_ctx(lua_State *L)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    assert(lp->req);
    push_work_req(L, lp);
}

/* ---- Lua for C plugins (zt.h) ------------------------------------------------------- */

int zt_lua_new(zt_plugin *p, lua_State **out)
{
    assert(p && p->srv && out);
    *out = NULL;
    if (!p->in_init || p->kind != ZT_PLUGIN_C || p->script) {
        zt_log(p, ZT_LOG_ERROR, "zt_lua_new: %s",
               p->script ? "the plugin has its state already" : "only a C plugin, during its init");
        return ZT_ESTATE;
    }
    char err[ZT_ERRLEN];
    struct zt_lua_plugin *lp;
    int rc = lp_new(p->srv, p, &lp, err, sizeof err);
    if (rc) {
        zt_log(p, ZT_LOG_ERROR, "zt_lua_new: %s", err);
        return rc;
    }
    p->script = *out = lp->L;
    return ZT_OK;
}

int zt_lua_call(lua_State *L, zt_req *ctx, int nargs, int nresults, char *err, size_t errlen)
{
    struct zt_lua_plugin *lp = plugin_of(L);
    assert(lp && lp->L && nargs >= 0 && lua_gettop(L) > nargs);
    if (!lua_checkstack(L, 4)) {
        lua_pop(L, nargs + 1);
        snprintf(err, errlen, "not enough memory");
        return ZT_EINVAL;
    }
    if (work_call(lp, L, ctx, NULL, nargs, nresults) == ZT_OK) return ZT_OK;
    snprintf(err, errlen, "%s", error_text(L));
    lua_pop(L, 1);
    return ZT_EINVAL; /* as zt.h documents, whatever failed (the store's EFULL or EBUSY too) */
}

int zt_lua_run(lua_State *L, const char *name, const char *src, size_t len, int nresults, char *err,
               size_t errlen)
{
    assert(plugin_of(L) && name && (src || len == 0));
    char chunk[128];
    snprintf(chunk, sizeof chunk, "=%s", name); /* messages then say "name:line:" */
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "%s: not enough memory", name);
        return ZT_EINVAL;
    }
    if (luaL_loadbufferx(L, src ? src : "", len, chunk, "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        return ZT_EINVAL;
    }
    char msg[ZT_ERRLEN];
    int rc = zt_lua_call(L, NULL, 0, nresults, msg, sizeof msg);
    if (rc) first_part(err, errlen, msg);
    return rc;
}

static int push_json_p(lua_State *L)
{
    const cJSON *v = lua_touserdata(L, 1);
    if (v)
        json_push(L, v, 0);
    else
        lua_rawgetp(L, LUA_REGISTRYINDEX, &K_NULL);
    return 1;
}

void zt_lua_push_json(lua_State *L, const cJSON *v)
{
    /* protected: a C plugin calls it outside any pcall, where an error would abort */
    if (!lua_checkstack(L, 3)) {
        zt__log(ZT_LOG_ERROR, plugin_of(L)->p->name, NULL, "zt_lua_push_json: stack overflow");
        lua_pushnil(L);
        return;
    }
    lua_pushcfunction(L, push_json_p);
    lua_pushlightuserdata(L, (void *)v);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        zt__log(ZT_LOG_ERROR, plugin_of(L)->p->name, NULL, "zt_lua_push_json: %s",
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

static int to_json_p(lua_State *L)
{
    json_encode_tree(L, 1);
    return 1;
}

int zt_lua_to_json(lua_State *L, int idx, cJSON **out)
{
    *out = NULL;
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 3)) return ZT_ENOMEM;
    lua_pushcfunction(L, to_json_p);
    lua_pushvalue(L, idx);
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        zt__log(ZT_LOG_DEBUG, plugin_of(L)->p->name, NULL, "zt_lua_to_json: %s",
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        return st == LUA_ERRMEM ? ZT_ENOMEM : ZT_EINVAL;
    }
    jbox *b = lua_touserdata(L, -1);
    *out = b->json;
    b->json = NULL;
    lua_pop(L, 1);
    return ZT_OK;
}

/* ---- manifest.lua ------------------------------------------------------------------ */

/* A minimal Lua lexer, enough to know on which line a key of a table constructor is
 * written, so that "options.page_size.type is wrong" can name that line. */
enum { T_EOF, T_NAME, T_STR, T_LBRACE, T_RBRACE, T_SEP, T_ASSIGN, T_OTHER };
struct lex {
    const char *s, *e;
    int line;
};

static int long_level(const char *s, const char *e)
{
    if (s >= e || *s != '[') return -1;
    int lvl = 0;
    for (s++; s < e && *s == '='; s++) lvl++;
    return s < e && *s == '[' ? lvl : -1;
}

static void skip_long(struct lex *x, int lvl)
{
    x->s += lvl + 2;
    for (; x->s < x->e; x->s++) {
        if (*x->s == '\n') x->line++;
        if (*x->s != ']') continue;
        const char *q = x->s + 1;
        int n = 0;
        while (q < x->e && *q == '=') q++, n++;
        if (n == lvl && q < x->e && *q == ']') {
            x->s = q + 1;
            return;
        }
    }
}

static int lex_next(struct lex *x, const char **tok, size_t *tlen, int *tline)
{
    for (;;) {
        while (x->s < x->e && (*x->s == ' ' || *x->s == '\t' || *x->s == '\r' || *x->s == '\n')) {
            if (*x->s == '\n') x->line++;
            x->s++;
        }
        if (x->s >= x->e) return T_EOF;
        if (x->e - x->s >= 2 && x->s[0] == '-' && x->s[1] == '-') {
            x->s += 2;
            int lvl = long_level(x->s, x->e);
            if (lvl >= 0) {
                skip_long(x, lvl);
            } else {
                while (x->s < x->e && *x->s != '\n') x->s++;
            }
            continue;
        }
        break;
    }
    const char *s = x->s;
    *tok = s;
    *tline = x->line;
    char c = *s;
    int lvl = long_level(s, x->e);
    if (lvl >= 0) {
        skip_long(x, lvl);
        return T_STR;
    }
    if (c == '"' || c == '\'') {
        for (x->s++; x->s < x->e && *x->s != c; x->s++) {
            if (*x->s == '\\' && x->s + 1 < x->e) x->s++;
            if (*x->s == '\n') x->line++;
        }
        if (x->s < x->e) x->s++;
        return T_STR;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
        while (x->s < x->e && (name_char(*x->s) && *x->s != '-')) x->s++;
        *tlen = (size_t)(x->s - s);
        return T_NAME;
    }
    x->s++;
    if (c == '{') return T_LBRACE;
    if (c == '}') return T_RBRACE;
    if (c == ',' || c == ';') return T_SEP;
    if (c == '=' || c == '<' || c == '>' || c == '~') {
        if (x->s < x->e && *x->s == '=') {
            x->s++;
            return T_OTHER;
        }
        return c == '=' ? T_ASSIGN : T_OTHER;
    }
    return T_OTHER;
}

/* The line of `key` ("options.page_size.type") in the constructors of src, or 0; *ret gets
 * the line of the last top-level `return`. */
static int key_line(const char *src, size_t len, const char *key, int *ret)
{
    struct lex x = {src, src + len, 1};
    char paths[16][160];
    int depth = 0, prev = T_SEP, t, line;
    const char *tok;
    size_t tlen = 0;
    char pending[160] = ""; /* the key just assigned, if its value is a table */
    paths[0][0] = 0;
    while ((t = lex_next(&x, &tok, &tlen, &line)) != T_EOF) {
        if (t == T_NAME && depth == 0 && tlen == 6 && memcmp(tok, "return", 6) == 0) *ret = line;
        if (t == T_NAME && depth > 0 && (prev == T_LBRACE || prev == T_SEP)) {
            struct lex peek = x;
            const char *ptok;
            size_t plen;
            int pline;
            if (lex_next(&peek, &ptok, &plen, &pline) == T_ASSIGN) {
                const char *parent = paths[depth < 16 ? depth : 15];
                int n = snprintf(pending, sizeof pending, "%s%s%.*s", parent, *parent ? "." : "",
                                 (int)tlen, tok);
                if (n < 0 || (size_t)n >= sizeof pending) pending[0] = 0; /* too deep to name */
                if (strcmp(pending, key) == 0) return line;
                x = peek;
                prev = T_ASSIGN;
                continue;
            }
        }
        if (t == T_LBRACE) {
            depth++;
            if (depth < 16) {
                if (depth == 1)
                    paths[depth][0] = 0;
                else if (prev == T_ASSIGN && *pending)
                    snprintf(paths[depth], sizeof paths[depth], "%s", pending);
                else
                    memcpy(paths[depth], "[]", 3); /* a table in a list: no key leads here */
            }
        } else if (t == T_RBRACE && depth > 0) {
            depth--;
        }
        if (t != T_ASSIGN) pending[0] = 0;
        prev = t;
    }
    return 0;
}

/* The line to blame for key: the key itself, else the nearest enclosing key, else the
 * return statement. */
static int blame_line(const char *src, size_t len, const char *key)
{
    char k[160];
    int ret = 0;
    snprintf(k, sizeof k, "%s", key);
    for (;;) {
        int line = *k ? key_line(src, len, k, &ret) : 0;
        if (line) return line;
        char *dot = strrchr(k, '.');
        if (!dot) break;
        *dot = 0;
    }
    if (!ret) key_line(src, len, "", &ret);
    return ret ? ret : 1;
}

#define MF_MAX_OPTS 128
#define MF_MAX_REQS 64

struct mopt {
    const char *name, *def, *description;
    int type, required;
};

/* What manifest.lua says, as pointers into Lua strings (alive until the state closes). */
struct manifest {
    const char *version, *description;
    const char *requires[MF_MAX_REQS + 1]; /* NULL-terminated, as zt__dup_names takes them */
    size_t nrequires;
    const char *needs[MF_MAX_REQS + 1], *wants[MF_MAX_REQS + 1]; /* services (zt.call) */
    size_t nneeds, nwants;
    struct mopt opts[MF_MAX_OPTS];
    size_t nopts;
    bool bad;
    char key[160];  /* what the error is about */
    char what[256]; /* what is wrong */
};

static int mf_bad(struct manifest *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mf_bad(struct manifest *m, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->what, sizeof m->what, fmt, ap);
    va_end(ap);
    snprintf(m->key, sizeof m->key, "%s", key);
    m->bad = true;
    return -1;
}

static bool ident_ok(const char *s, bool dash)
{
    if (!*s || strlen(s) > 64 || (s[0] >= '0' && s[0] <= '9')) return false;
    for (; *s; s++)
        if (!name_char(*s) || (*s == '-' && !dash)) return false;
    return true;
}

/* The keys of the table at idx must all be strings among `allowed`. */
static int mf_keys(lua_State *L, struct manifest *m, int idx, const char *where,
                   const char *const *allowed, const char *list)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        char key[160];
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return mf_bad(m, where, "%s%shas a key that is not a name (expected %s)", where,
                          *where ? " " : "", list);
        }
        const char *k = lua_tostring(L, -1);
        const char *const *a = allowed;
        while (*a && strcmp(*a, k)) a++;
        if (!*a) {
            snprintf(key, sizeof key, "%s%s%s", where, *where ? "." : "", k);
            lua_pop(L, 1);
            return mf_bad(m, key, "unknown key '%s'%s%s (expected %s)", k, *where ? " in " : "",
                          where, list);
        }
    }
    return 0;
}

/* The sequence at idx: its strings, pushed into `out` (its length in *n). */
static int mf_strings(lua_State *L, struct manifest *m, int idx, const char *where,
                      const char **out, size_t max, size_t *n)
{
    size_t len = lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            (size_t)lua_tointeger(L, -1) > len) {
            lua_pop(L, 1);
            return mf_bad(m, where, "%s must be a list of strings", where);
        }
    }
    if (count != len) return mf_bad(m, where, "%s must be a list of strings", where);
    if (len > max) return mf_bad(m, where, "%s has more than %zu items", where, max);
    for (size_t i = 0; i < len; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
            return mf_bad(m, where, "%s: item %zu is a %s, not a string", where, i + 1,
                          luaL_typename(L, -1));
        out[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the table keeps it alive */
    }
    *n = len;
    return 0;
}

/* Keep a string alive as long as the state, in the anchor table at index 2. */
static const char *mf_anchor(lua_State *L)
{
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
    return s;
}

static const char *const opt_types[] = {NULL, "string", "integer", "number", "boolean", "list"};
static const char *const opt_phrases[] = {NULL,       "a string",  "an integer",
                                          "a number", "a boolean", "a list of strings"};

static int mf_default(lua_State *L, struct manifest *m, struct mopt *o, const char *key)
{
    int idx = lua_gettop(L);
    switch (o->type) {
    case ZT_OPT_STRING:
        if (lua_type(L, idx) != LUA_TSTRING) break;
        o->def = lua_tostring(L, idx);
        return 0;
    case ZT_OPT_INT: {
        int isint = 0; /* a float with an integral value is accepted, as zt.h says */
        lua_Integer i = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
        if (!isint) break;
        lua_pushfstring(L, "%I", (LUAI_UACINT)i);
        o->def = mf_anchor(L);
        return 0;
    }
    case ZT_OPT_NUMBER: {
        if (lua_type(L, idx) != LUA_TNUMBER) break;
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) return mf_bad(m, key, "%s must be a finite number", key);
        char buf[40];
        snprintf(buf, sizeof buf, "%.15g", d);
        if (strtod(buf, NULL) != d) snprintf(buf, sizeof buf, "%.17g", d);
        lua_pushstring(L, buf);
        o->def = mf_anchor(L);
        return 0;
    }
    case ZT_OPT_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN) break;
        o->def = lua_toboolean(L, idx) ? "true" : "false";
        return 0;
    case ZT_OPT_LIST: {
        if (lua_type(L, idx) != LUA_TTABLE) break;
        const char *items[256];
        size_t n;
        if (mf_strings(L, m, idx, key, items, 256, &n)) return -1;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; i < n; i++) {
            if (strchr(items[i], ','))
                return mf_bad(m, key, "%s: item %zu has a comma, which a list default cannot hold",
                              key, i + 1);
            if (i) luaL_addchar(&b, ',');
            luaL_addstring(&b, items[i]);
        }
        luaL_pushresult(&b);
        o->def = mf_anchor(L);
        return 0;
    }
    }
    return mf_bad(m, key, "%s must be %s, not a %s", key, opt_phrases[o->type],
                  luaL_typename(L, idx));
}

static int mf_option(lua_State *L, struct manifest *m, struct mopt *o)
{
    int idx = lua_gettop(L);
    char key[160], sub[200];
    snprintf(key, sizeof key, "options.%s", o->name);
    if (!ident_ok(o->name, false))
        return mf_bad(m, key, "option name '%s' is not a name (letters, digits, _)", o->name);
    if (lua_type(L, idx) != LUA_TTABLE)
        return mf_bad(m, key, "%s must be a table { type = ..., default = ..., description = ... }",
                      key);
    static const char *const fields[] = {"type", "default", "description", "required", NULL};
    if (mf_keys(L, m, idx, key, fields, "type, default, description, required")) return -1;

    snprintf(sub, sizeof sub, "%s.type", key);
    if (lua_getfield(L, idx, "type") != LUA_TSTRING)
        return mf_bad(
            m, lua_isnil(L, -1) ? key : sub,
            "%s needs a type: \"string\", \"integer\", \"number\", \"boolean\" or \"list\"", key);
    const char *tn = lua_tostring(L, -1);
    for (int t = ZT_OPT_STRING; t <= ZT_OPT_LIST; t++)
        if (strcmp(tn, opt_types[t]) == 0) o->type = t;
    if (!o->type)
        return mf_bad(m, sub, "%s: unknown type '%s' (string, integer, number, boolean or list)",
                      key, tn);
    lua_pop(L, 1);

    snprintf(sub, sizeof sub, "%s.description", key);
    int t = lua_getfield(L, idx, "description");
    if (t != LUA_TNIL && t != LUA_TSTRING) return mf_bad(m, sub, "%s must be a string", sub);
    o->description = lua_tostring(L, -1);
    lua_pop(L, 1);

    snprintf(sub, sizeof sub, "%s.required", key);
    t = lua_getfield(L, idx, "required");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) return mf_bad(m, sub, "%s must be true or false", sub);
    o->required = lua_toboolean(L, -1);
    lua_pop(L, 1);

    snprintf(sub, sizeof sub, "%s.default", key);
    if (lua_getfield(L, idx, "default") != LUA_TNIL) {
        if (o->required)
            return mf_bad(m, sub, "%s: an option with a default cannot be required", key);
        if (mf_default(L, m, o, sub)) return -1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Protected: check the table manifest.lua returned (index 1) into the struct. */
static int mf_parse(lua_State *L)
{
    struct manifest *m = lua_touserdata(L, 2);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: anchors for strings made here, kept until the state closes */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &K_ANCHOR);
    if (lua_type(L, 1) != LUA_TTABLE)
        return mf_bad(m, "", "manifest.lua must return a table (it returned %s)",
                      lua_isnil(L, 1) ? "nothing" : luaL_typename(L, 1)),
               0;
    static const char *const top[] = {"version", "description", "requires", "needs",
                                      "wants",   "options",     NULL};
    if (mf_keys(L, m, 1, "", top, "version, description, requires, needs, wants, options"))
        return 0;

    if (lua_getfield(L, 1, "version") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        return mf_bad(m, "version", "version must be a non-empty string, such as \"1.0.0\""), 0;
    m->version = lua_tostring(L, -1);
    int t = lua_getfield(L, 1, "description");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        return mf_bad(m, "description", "description must be a string"), 0;
    m->description = t == LUA_TSTRING ? lua_tostring(L, -1) : "";
    lua_settop(L, 2);

    t = lua_getfield(L, 1, "requires");
    if (t != LUA_TNIL) {
        if (t != LUA_TTABLE)
            return mf_bad(m, "requires", "requires must be a list of plugin names"), 0;
        if (mf_strings(L, m, 3, "requires", m->requires, MF_MAX_REQS, &m->nrequires)) return 0;
        for (size_t i = 0; i < m->nrequires; i++)
            if (!ident_ok(m->requires[i], true))
                return mf_bad(m, "requires", "requires: '%s' is not a plugin name", m->requires[i]),
                       0;
    }
    lua_settop(L, 2);

    const struct {
        const char *key;
        const char **out;
        size_t *n;
    } services[] = {{"needs", m->needs, &m->nneeds}, {"wants", m->wants, &m->nwants}};
    for (size_t k = 0; k < 2; k++) {
        const char *key = services[k].key;
        t = lua_getfield(L, 1, key);
        if (t != LUA_TNIL) {
            if (t != LUA_TTABLE)
                return mf_bad(m, key, "%s must be a list of service names", key), 0;
            if (mf_strings(L, m, 3, key, services[k].out, MF_MAX_REQS, services[k].n)) return 0;
            for (size_t i = 0; i < *services[k].n; i++)
                if (!zt__service_name_ok(services[k].out[i]))
                    return mf_bad(m, key,
                                  "%s: '%s' is not a service name (1..64 bytes of letters, "
                                  "digits, _, . and -)",
                                  key, services[k].out[i]),
                           0;
        }
        lua_settop(L, 2);
    }

    t = lua_getfield(L, 1, "options");
    if (t != LUA_TNIL) {
        if (t != LUA_TTABLE)
            return mf_bad(m, "options", "options must be a table of option declarations"), 0;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return mf_bad(m, "options", "options: every option needs a name as its key"), 0;
            if (m->nopts == MF_MAX_OPTS)
                return mf_bad(m, "options", "more than %d options", MF_MAX_OPTS), 0;
            struct mopt *o = &m->opts[m->nopts++];
            o->name = lua_tostring(L, -2);
            if (mf_option(L, m, o)) return 0;
            lua_settop(L, 4);
        }
    }
    return 0;
}

static int mopt_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mopt *)a)->name, ((const struct mopt *)b)->name);
}

/* Copy what the manifest said into p, every string malloc'd on its own as plugin.c frees
 * them, options sorted by name. On ZT_ENOMEM what was copied is in p, freed with it. */
static int mf_store(zt_plugin *p, struct manifest *m)
{
    qsort(m->opts, m->nopts, sizeof m->opts[0], mopt_cmp);
    if (!(p->version = strdup(m->version)) || !(p->description = strdup(m->description)) ||
        zt__dup_names(m->requires, &p->requires, &p->nrequires) ||
        zt__dup_names(m->needs, &p->needs, &p->nneeds) ||
        zt__dup_names(m->wants, &p->wants, &p->nwants) ||
        !(p->options = calloc(m->nopts + 1, sizeof *p->options)))
        return ZT_ENOMEM;
    p->noptions = m->nopts;
    for (size_t i = 0; i < m->nopts; i++) {
        const struct mopt *mo = &m->opts[i];
        zt_option *o = &p->options[i];
        o->type = mo->type;
        o->required = mo->required;
        if (!(o->name = strdup(mo->name)) || (mo->def && !(o->def = strdup(mo->def))) ||
            (mo->description && !(o->description = strdup(mo->description))))
            return ZT_ENOMEM;
    }
    return ZT_OK;
}

/* "?:12: msg" (the chunk is named "?") → "path:12: msg". */
static void mf_error(char *err, size_t errlen, const char *path, const char *msg)
{
    if (strncmp(msg, "?:", 2) == 0)
        snprintf(err, errlen, "%s:%s", path, msg + 2);
    else
        snprintf(err, errlen, "%s: %s", path, msg);
}

int zt__lua_manifest(zt_server *srv, zt_plugin *p, char *err, size_t errlen)
{
    assert(srv && srv->conf && srv->conf->lua_dir && p && p->name);
    char path[PATH_MAX];
    if (plugin_file(path, sizeof path, srv, p->name, "manifest.lua")) {
        snprintf(err, errlen, "plugin %s: path too long", p->name);
        return ZT_EINVAL;
    }
    zt_buf src = {0};
    int rc = read_file(path, &src, err, errlen);
    if (rc) return rc == ZT_ENOTFOUND ? ZT_ENOTFOUND : rc;

    struct zt_lua_plugin lp = {.p = p, .srv = srv};
    lp.limit = srv->conf->lua_memory;
    lp.budget = srv->conf->lua_instructions;
    struct manifest *m = calloc(1, sizeof *m);
    lp.L = m ? lua_newstate(l_alloc, &lp) : NULL;
    if (!lp.L) {
        snprintf(err, errlen, "%s: not enough memory", path);
        pool_drain(&lp);
        free(m);
        zt__buf_free(&src);
        return ZT_ENOMEM;
    }
    lua_State *L = lp.L;
    lua_atpanic(L, l_panic);
    /* no libraries: the chunk sees an empty global table; "?" is replaced by the path */
    rc = ZT_EINVAL;
    int st = luaL_loadbufferx(L, src.data ? src.data : "", src.len, "=?", "t");
    if (st == LUA_OK) {
        budget_reset(&lp);
        st = lua_pcall(L, 0, 1, 0);
    }
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        mf_error(err, errlen, path, msg ? msg : "(error object is not a string)");
    } else {
        lua_sethook(L, NULL, 0, 0);
        lua_pushcfunction(L, mf_parse);
        lua_pushvalue(L, 1); /* the table stays at 1: m points into its strings */
        lua_pushlightuserdata(L, m);
        if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
            snprintf(err, errlen, "%s: %s", path, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        } else if (m->bad) {
            snprintf(err, errlen, "%s:%d: %s", path, blame_line(src.data, src.len, m->key),
                     m->what);
        } else if ((rc = mf_store(p, m)) != ZT_OK) {
            snprintf(err, errlen, "%s: out of memory", path);
        }
    }
    lua_close(L);
    pool_drain(&lp);
    free(m);
    zt__buf_free(&src);
    return rc;
}
