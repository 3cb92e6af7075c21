/* luatest.c: the Lua plugins' test runner (zhengtong test), on scratch nodes as check uses. */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the scratch node ------------------------------------------------------------ */

int zt__scratch_open(zt_scratch *s, zt_conf *conf, const char *what, bool lua_tests, char *err,
                     size_t errlen)
{
    memset(s, 0, sizeof *s);
    uv_loop_init(&s->loop);
    s->srv.loop = &s->loop;
    s->srv.check_only = true;
    s->srv.lua_tests = lua_tests;
    /* in $TMPDIR when set (as mkstemp's users expect), else /tmp */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 3000) tmp = "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/zhengtong-%s-XXXXXX", tmp, what);
    if (!mkdtemp(s->dir)) {
        snprintf(err, errlen, "zhengtong %s: mkdtemp %s: %s", what, s->dir, strerror(errno));
        s->dir[0] = 0;
        return ZT_EIO;
    }
    int rc = zt__server_open(&s->srv, conf, s->dir, err, errlen);
    /* the department a first start makes (tests seal for it, scope to it); no accounts */
    if (rc == ZT_OK) rc = zt__auth_root_dept(&s->srv, err, errlen);
    return rc;
}

void zt__scratch_close(zt_scratch *s)
{
    if (s->srv.store && zt__store_batch_open(s->srv.store)) zt__store_batch_abort(s->srv.store);
    zt__server_close(&s->srv);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    if (!s->dir[0]) return;
    static const char *const files[] = {"data.mdb", "lock.mdb", "master.key"};
    char path[sizeof s->dir + 16];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s->dir, files[i]);
        unlink(path);
    }
    rmdir(s->dir);
}

/* ---- the harness: test() and the t of each test, in the plugin's state ------------- */

/* It keeps what it uses in locals, so a test file that replaces a global cannot break it.
 * Results: the tests ({name, fn} in order), new_t() (which also closes the declarations),
 * and the metatable of what t.skip raises. A failed assertion raises at level 3: the line
 * in the test file that called t.eq (fail ← t.eq ← that line). */
static const char harness[] =
    "local type, tostring, pairs, next, ipairs, rawequal, error, pcall, setmetatable ="
    "  type, tostring, pairs, next, ipairs, rawequal, error, pcall, setmetatable\n"
    "local mtype, fmt, find, match, sub = math.type, string.format, string.find, string.match,"
    "  string.sub\n"
    "local concat, sort = table.concat, table.sort\n"
    "local null = zt.json.null\n"
    "local tests, loading = {}, true\n"
    "function test(name, fn)\n"
    "  if not loading then error('test(): declare tests at the top level of a test file', 2) end\n"
    "  if type(name) ~= 'string' or name == '' then\n"
    "    error('test(name, fn): name must be a non-empty string', 2)\n"
    "  end\n"
    "  if type(fn) ~= 'function' then error('test(name, fn): fn must be a function', 2) end\n"
    "  tests[#tests + 1] = { name, fn }\n"
    "end\n"
    /* plain copies, so that proxies (zt.config) are compared and shown by their pairs */
    "local function entries(t)\n"
    "  local r = {}\n"
    "  for k, v in pairs(t) do r[k] = v end\n"
    "  return r\n"
    "end\n"
    "local function key_less(a, b)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then return ta < tb end\n"
    "  if ta == 'number' or ta == 'string' then return a < b end\n"
    "  return tostring(a) < tostring(b)\n"
    "end\n"
    "local function sorted_keys(...)\n"
    "  local keys, seen = {}, {}\n"
    "  for _, e in ipairs({ ... }) do\n"
    "    for k in next, e do\n"
    "      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end\n"
    "    end\n"
    "  end\n"
    "  sort(keys, key_less)\n"
    "  return keys\n"
    "end\n"
    "local show\n"
    "local function key_text(k, depth, seen)\n"
    "  if type(k) == 'string' and match(k, '^[%a_][%w_]*$') then return k end\n"
    "  return '[' .. show(k, depth, seen) .. ']'\n"
    "end\n"
    "show = function(v, depth, seen)\n"
    "  if type(v) == 'string' then return fmt('%q', v) end\n"
    "  if rawequal(v, null) then return 'zt.json.null' end\n"
    "  if type(v) ~= 'table' then return tostring(v) end\n"
    "  depth, seen = depth or 0, seen or {}\n"
    "  if seen[v] then return '<cycle>' end\n"
    "  if depth >= 8 then return '{...}' end\n"
    "  seen[v] = true\n"
    "  local e, parts, n = entries(v), {}, 0\n"
    "  while e[n + 1] ~= nil do n = n + 1; parts[n] = show(e[n], depth + 1, seen) end\n"
    "  for _, k in ipairs(sorted_keys(e)) do\n"
    "    if not (mtype(k) == 'integer' and k >= 1 and k <= n) then\n"
    "      parts[#parts + 1] = key_text(k, depth + 1, seen) .. ' = ' .. show(e[k], depth + 1, "
    "seen)\n"
    "    end\n"
    "  end\n"
    "  seen[v] = nil\n"
    "  return '{' .. concat(parts, ', ') .. '}'\n"
    "end\n"
    "local function shown(v)\n"
    "  local s = show(v)\n"
    "  if #s > 2000 then s = sub(s, 1, 2000) .. '...' end\n"
    "  return s\n"
    "end\n"
    /* nil when a and b are equal; else where they first differ, and the two values there */
    "local function diff(a, b, path, seen)\n"
    "  if rawequal(a, b) then return nil end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' or rawequal(a, null) or rawequal(b, null) then\n"
    "    if a == b then return nil end\n"
    "    return path, a, b\n"
    "  end\n"
    "  if seen[a] == b then return nil end\n"
    "  seen[a] = b\n"
    "  local ea, eb = entries(a), entries(b)\n"
    "  for _, k in ipairs(sorted_keys(ea, eb)) do\n"
    "    local p, x, y = diff(ea[k], eb[k], path .. (type(k) == 'string' and match(k, "
    "'^[%a_][%w_]*$') and '.' .. k or '[' .. show(k) .. ']'), seen)\n"
    "    if p then return p, x, y end\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    "local function fail(msg, text)\n"
    "  error((msg ~= nil and tostring(msg) .. ': ' or '') .. text, 3)\n"
    "end\n"
    "local function is_problem(e)\n"
    "  return type(e) == 'userdata' and find(tostring(e), 'problem ', 1, true) == 1\n"
    "end\n"
    "local T = {}\n"
    "function T.eq(actual, expected, msg)\n"
    "  local p, x, y = diff(actual, expected, '', {})\n"
    "  if p == nil then return end\n"
    "  local text = 'expected ' .. shown(expected) .. ', got ' .. shown(actual)\n"
    "  if p ~= '' then\n"
    "    text = text .. '\\n(first difference at ' .. p .. ': expected ' .. shown(y) .. ', got ' "
    ".. shown(x) .. ')'\n"
    "  end\n"
    "  fail(msg, text)\n"
    "end\n"
    "function T.ok(v, msg)\n"
    "  if not v then fail(msg, 'expected a true value, got ' .. shown(v)) end\n"
    "  return v\n"
    "end\n"
    "function T.error(fn, text)\n"
    "  if type(fn) ~= 'function' then error('t.error(fn [, text]): fn must be a function', 2) end\n"
    "  if text ~= nil and type(text) ~= 'string' then\n"
    "    error('t.error(fn [, text]): text must be a string', 2)\n"
    "  end\n"
    "  local ok, e = pcall(fn)\n"
    "  if ok then fail(nil, 'expected an error, got none') end\n"
    "  if text and not find(tostring(e), text, 1, true) then\n"
    "    fail(nil, 'expected an error containing ' .. shown(text) .. ', got ' .. "
    "shown(tostring(e)))\n"
    "  end\n"
    "  return e\n"
    "end\n"
    "function T.problem(fn, status, ptype)\n"
    "  if type(fn) ~= 'function' then\n"
    "    error('t.problem(fn, status [, type]): fn must be a function', 2)\n"
    "  end\n"
    "  if mtype(status) ~= 'integer' then\n"
    "    error('t.problem(fn, status [, type]): status must be an integer', 2)\n"
    "  end\n"
    "  local want = 'zt.problem ' .. status .. (ptype ~= nil and ' ' .. tostring(ptype) or '')\n"
    "  local ok, e = pcall(fn)\n"
    "  if ok then fail(nil, 'expected ' .. want .. ', got no error') end\n"
    "  if not is_problem(e) then fail(nil, 'expected ' .. want .. ', got the error ' .. "
    "shown(tostring(e))) end\n"
    "  if e.status ~= status or (ptype ~= nil and e.type ~= ptype) then\n"
    "    fail(nil, 'expected ' .. want .. ', got zt.problem ' .. e.status .. ' ' .. e.type .. "
    "': ' .. e.detail)\n"
    "  end\n"
    "  return e\n"
    "end\n"
    "local SKIP = { __tostring = function(s) return 'skipped: ' .. s[1] end }\n"
    "function T.skip(why)\n"
    "  error(setmetatable({ why ~= nil and tostring(why) or '' }, SKIP), 0)\n"
    "end\n"
    "local function new_t()\n"
    "  loading = false\n"
    "  local t = {}\n"
    "  for k, f in next, T do t[k] = f end\n"
    "  return t\n"
    "end\n"
    "return tests, new_t, SKIP\n";

/* The message handler of a test (upvalue: SKIP): what was raised that is not a message
 * (an uncaught zt.problem, error{...}) becomes one, with the line that raised it. */
static int uncaught(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) return 1;
    if (lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(1))) {
        lua_settop(L, 1);
        return 1; /* t.skip */
    }
    lua_settop(L, 1);
    bool problem = luaL_getmetafield(L, 1, "__name") == LUA_TSTRING &&
                   strcmp(lua_tostring(L, -1), "zt.problem") == 0;
    lua_settop(L, 1);
    if (problem) /* "problem 404 not-found: detail" */
        lua_pushfstring(L, "uncaught zt.%s", luaL_tolstring(L, 1, NULL));
    else
        lua_pushfstring(L, "error value (a %s): %s", luaL_typename(L, 1),
                        luaL_tolstring(L, 1, NULL));
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar); level++)
        if (ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, lua_tostring(L, -1));
            break;
        }
    return 1;
}

/* Called (through zt_lua_call) with new_t, SKIP and the test's function: runs it with a
 * fresh t and the work's ctx. Returns nothing when it passed, else "skip" or "fail" and the
 * message. It is C so that nothing runs in Lua after the test: once the instruction budget is
 * spent, every Lua instruction would raise again. */
static int run_test(lua_State *L)
{
    lua_settop(L, 3);
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1); /* 4: t */
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, uncaught, 1);
    zt__lua_push_ctx(L); /* 6: ctx, which stays here while the test runs */
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 6);
    int st = lua_pcall(L, 2, 0, 5);
    if (st == LUA_OK) return 0;
    /* 7: what the test raised, as uncaught left it */
    if (lua_getmetatable(L, 7) && lua_rawequal(L, -1, 2)) {
        lua_pushliteral(L, "skip");
        lua_rawgeti(L, 7, 1);
        return 2;
    }
    lua_pushliteral(L, "fail");
    if (st == LUA_ERRMEM)
        lua_pushliteral(L, "not enough memory (the state is at the lua.memory cap of the config)");
    else
        lua_pushstring(L, lua_type(L, 7) == LUA_TSTRING ? lua_tostring(L, 7) : "(no message)");
    return 2;
}

/* ---- running ----------------------------------------------------------------------- */

typedef struct tally {
    unsigned n, passed, failed, skipped;
} tally;

/* msg's lines as TAP diagnostics; the traceback, if any, is for the log, not here */
static void diag(const char *msg)
{
    const char *end = strstr(msg, "\nstack traceback:");
    size_t len = end ? (size_t)(end - msg) : strlen(msg);
    while (len > 0) {
        const char *nl = memchr(msg, '\n', len);
        size_t n = nl ? (size_t)(nl - msg) : len;
        printf("#   %.*s\n", (int)n, msg);
        msg += n + (nl != NULL);
        len -= n + (nl != NULL);
    }
}

static void report(tally *ty, const char *label, const char *name, const char *kind,
                   const char *msg)
{
    ty->n++;
    if (!kind) {
        ty->passed++;
        printf("ok %u - %s: %s\n", ty->n, label, name);
    } else if (strcmp(kind, "skip") == 0) {
        ty->skipped++;
        printf("ok %u - %s: %s # SKIP %s\n", ty->n, label, name, msg ? msg : "");
    } else {
        ty->failed++;
        printf("not ok %u - %s: %s\n", ty->n, label, name);
        diag(msg ? msg : "(no message)");
    }
    fflush(stdout);
}

/* The tests the file declared (harness results at base+1..base+3), each as a job of the
 * plugin whose transaction is dropped afterwards: a test never sees another's writes. */
static void run_tests(zt_server *srv, zt_plugin *p, lua_State *L, int base, const char *label,
                      tally *ty)
{
    char err[ZT_ERRLEN];
    lua_Integer n = (lua_Integer)lua_rawlen(L, base + 1);
    if (n == 0)
        printf("# %s: no tests (declare them with test(name, function(t) ... end))\n", label);
    for (lua_Integer i = 1; i <= n; i++) {
        int top = lua_gettop(L);
        if (!lua_checkstack(L, 8)) {
            report(ty, label, "(the rest)", "fail", "out of memory");
            return;
        }
        lua_rawgeti(L, base + 1, i);
        lua_rawgeti(L, top + 1, 1); /* the name, kept on the stack while it is printed */
        const char *name = lua_tostring(L, -1);
        lua_pushcfunction(L, run_test);
        lua_pushvalue(L, base + 2);
        lua_pushvalue(L, base + 3);
        lua_rawgeti(L, top + 1, 2);
        zt_req *job = zt__job_new(srv, p, "TEST", label);
        if (!job) {
            report(ty, label, name, "fail", "out of memory");
            lua_settop(L, top);
            continue;
        }
        int rc = zt_lua_call(L, job, 3, 2, err, sizeof err);
        zt__job_end(srv, job, ZT_ERROR);
        if (rc != ZT_OK)
            report(ty, label, name, "fail", err);
        else
            report(ty, label, name, lua_tostring(L, -2), lua_tostring(L, -1));
        lua_settop(L, top);
    }
}

static zt_plugin *find_plugin(zt_server *srv, const char *name)
{
    for (size_t i = 0; i < srv->nplugins; i++)
        if (strcmp(srv->plugins[i]->name, name) == 0) return srv->plugins[i];
    return NULL;
}

/* One test file on a scratch node of its own: the plugin's fresh state (its init.lua does
 * not run), the harness, the file's top level (as init.lua: zt.db.open works), its tests. */
static void run_file(zt_conf *conf, const char *plugin, const char *dir, const char *file,
                     tally *ty)
{
    char label[400], chunk[400], path[4400], err[ZT_ERRLEN] = "";
    snprintf(label, sizeof label, "%s/%s", plugin, file);
    snprintf(chunk, sizeof chunk, "%s/tests/%s", plugin, file);
    int k = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (k < 0 || (size_t)k >= sizeof path) {
        report(ty, label, "the file did not load", "fail", "path too long");
        return;
    }
    zt_scratch s;
    int rc = zt__scratch_open(&s, conf, "test", true, err, sizeof err);
    zt_plugin *p = rc == ZT_OK ? find_plugin(&s.srv, plugin) : NULL;
    lua_State *L = p ? zt__lua_state(p) : NULL;
    if (rc == ZT_OK && !L) {
        snprintf(err, sizeof err, "plugin %s has no Lua state", plugin);
        rc = ZT_ESTATE;
    }
    int base = L ? lua_gettop(L) : 0;
    zt_buf src = {0};
    if (rc == ZT_OK) rc = zt__lua_read_source(path, &src, err, sizeof err);
    if (rc == ZT_OK) rc = zt_lua_run(L, "zt.test", harness, sizeof harness - 1, 3, err, sizeof err);
    if (rc == ZT_OK) {
        p->in_init = true;
        rc = zt_lua_run(L, chunk, src.data ? src.data : "", src.len, 0, err, sizeof err);
        p->in_init = false;
        /* as at a start (zt__plugins_init): an option found wrong (zt.config_error) or a
         * route refused stops it even if the file (or a module it requires) caught it */
        if (p->init_error) {
            snprintf(err, sizeof err, "%s", p->init_error);
            rc = ZT_EINVAL;
        } else if (rc == ZT_OK && s.srv.route_error[0]) {
            snprintf(err, sizeof err, "%.100s: %.400s", chunk, s.srv.route_error);
            rc = ZT_ECONFLICT;
        }
    }
    zt__buf_free(&src);
    if (rc == ZT_OK)
        run_tests(&s.srv, p, L, base, label, ty);
    else
        report(ty, label, "the file did not load", "fail", err);
    if (L) lua_settop(L, base);
    zt__scratch_close(&s);
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every tests/<file>.lua of a plugin, in the order of their names. */
static int run_plugin(zt_conf *conf, const char *plugin, tally *ty)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/plugins/%s/tests", conf->lua_dir, plugin);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "zhengtong test: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **files = NULL;
    size_t nfiles = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        char path[sizeof dir + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0 ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (nfiles == cap) {
            cap = cap ? cap * 2 : 16;
            char **a = realloc(files, cap * sizeof *a);
            if (!a) {
                rc = 1;
                break;
            }
            files = a;
        }
        if (!(files[nfiles] = strdup(e->d_name))) {
            rc = 1;
            break;
        }
        nfiles++;
    }
    closedir(d);
    if (rc) {
        fprintf(stderr, "zhengtong test: out of memory\n");
    } else {
        if (nfiles == 0) printf("# %s: no test files in %s\n", plugin, dir);
        if (nfiles) qsort(files, nfiles, sizeof *files, strp_cmp);
        for (size_t i = 0; i < nfiles; i++) run_file(conf, plugin, dir, files[i], ty);
    }
    for (size_t i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    return rc;
}

/* The config's Lua plugins, as its loader sees them (NULL-terminated, malloc'd names). */
static int lua_plugins(zt_conf *conf, char ***out)
{
    char err[ZT_ERRLEN] = "";
    zt_scratch s;
    int rc = zt__scratch_open(&s, conf, "test", true, err, sizeof err);
    char **names = rc == ZT_OK ? calloc(s.srv.nplugins + 1, sizeof *names) : NULL;
    if (rc == ZT_OK && !names) snprintf(err, sizeof err, "out of memory");
    for (size_t i = 0, k = 0; names && i < conf->nplugins; i++) {
        zt_plugin *p = find_plugin(&s.srv, conf->plugins[i].name);
        if (p && p->kind == ZT_PLUGIN_LUA && !(names[k++] = strdup(p->name))) {
            snprintf(err, sizeof err, "out of memory");
            for (size_t j = 0; j < k; j++) free(names[j]);
            free(names);
            names = NULL;
        }
    }
    zt__scratch_close(&s);
    if (!names) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    *out = names;
    return 0;
}

int zt__luatest(zt_conf *conf, char **names, int nnames)
{
    char **lua = NULL;
    if (lua_plugins(conf, &lua)) return 1;
    const char **run = calloc((size_t)nnames + 1 + conf->nplugins, sizeof *run);
    size_t nrun = 0;
    int status = run ? 0 : 1;
    char dir[4096];
    for (int i = 0; run && i < nnames && status == 0; i++) {
        bool known = false;
        for (char **l = lua; *l; l++) known = known || strcmp(*l, names[i]) == 0;
        snprintf(dir, sizeof dir, "%s/plugins/%s/tests", conf->lua_dir, names[i]);
        if (!known) {
            fprintf(stderr,
                    "zhengtong test: '%s' is not a Lua plugin of %s (its Lua plugins:", names[i],
                    conf->file);
            for (char **l = lua; *l; l++) fprintf(stderr, " %s", *l);
            fprintf(stderr, "%s)\n", lua[0] ? "" : " none");
            status = 2;
        } else if (!is_dir(dir)) {
            fprintf(stderr, "zhengtong test: plugin '%s' has no tests: no folder %s\n", names[i],
                    dir);
            status = 2;
        } else {
            run[nrun++] = names[i];
        }
    }
    for (char **l = lua; run && nnames == 0 && *l; l++) {
        snprintf(dir, sizeof dir, "%s/plugins/%s/tests", conf->lua_dir, *l);
        if (is_dir(dir)) run[nrun++] = *l;
    }
    if (run && status == 0 && nrun == 0)
        printf("# no Lua plugin of %s has a tests/ folder\n", conf->file);
    tally ty = {0};
    for (size_t i = 0; status == 0 && i < nrun; i++) status = run_plugin(conf, run[i], &ty);
    if (status == 0) {
        printf("1..%u\n# %u %s, %u passed, %u failed", ty.n, ty.n, ty.n == 1 ? "test" : "tests",
               ty.passed, ty.failed);
        if (ty.skipped) printf(", %u skipped", ty.skipped);
        printf("\n");
        status = ty.failed ? 1 : 0;
    }
    if (!run) fprintf(stderr, "zhengtong test: out of memory\n");
    free(run);
    for (char **l = lua; *l; l++) free(*l);
    free(lua);
    return status;
}
