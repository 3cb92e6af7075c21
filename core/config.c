/* config.c: reads the config file (Lua assignments in an empty sandbox) and checks it. */
#include "core.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

/* A config is a few dozen assignments: these bounds only stop a runaway or hostile file. */
#define CONF_MEMORY       (32u << 20)
#define CONF_INSTRUCTIONS 1000000
#define CONF_HOOK_STEP    1000
#define CONF_MAX_FILE     (4u << 20)
#define CONF_SCAN_BYTES   (64u << 20)
#define CONF_MAX_LISTEN   64
#define CONF_MAX_PLUGINS  256
#define MIB               (1024 * 1024)

#define REG_VALUES "zt.conf.values" /* top-level key → value */
#define REG_LINES  "zt.conf.lines"  /* top-level key → line of its assignment */

/* Everything the Lua side of one config needs; the allocator's userdata, so that any
 * function holding the lua_State can reach it. */
typedef struct conf_state {
    size_t mem;
    long budget; /* instructions left */
    zt_conf *c;
    char *src; /* the text (NUL-terminated copy), for finding keys inside tables */
    size_t srclen;
    size_t *line_off; /* line_off[l - 1]: offset of line l; line_off[nlines] = srclen */
    int nlines;
    char *base;       /* the config file's folder, absolute */
    size_t scan_left; /* bytes that finding lines may still read (a huge generated file
                         must not make it quadratic) */
} conf_state;

/* A key of a table with the line it is written on. */
typedef struct keyline {
    const char *key;
    int line;
} keyline;

enum {
    K_NODE_NAME,
    K_REGION_CODE,
    K_LISTEN,
    K_DATA_DIR,
    K_MAP_SIZE,
    K_LOG_LEVEL,
    K_PLUGIN_DIR,
    K_LUA_DIR,
    K_WEB_DIR,
    K_KEY_FILE,
    K_LIMITS,
    K_LUA,
    K_AUTH,
    K_AUDIT,
    K_BUS,
    K_PLUGINS,
    K_TRUSTED_PROXIES,
    K_REPLICATION,
    K_SEAL,
    K_CRYPTO,
};
static const char *const core_keys[] = {
    /* in the order of the enum */
    "node_name",  "region_code", "listen",  "data_dir", "map_size",        "log_level",
    "plugin_dir", "lua_dir",     "web_dir", "key_file", "limits",          "lua",
    "auth",       "audit",       "bus",     "plugins",  "trusted_proxies", "replication",
    "seal",       "crypto",      NULL,
};
static conf_state *state_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void *conf_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    conf_state *st = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        st->mem -= osize;
        free(ptr);
        return NULL;
    }
    if (nsize > osize && nsize - osize > CONF_MEMORY - st->mem) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    st->mem = st->mem - osize + nsize;
    return p;
}

/* Raise "file:line: message" (line 0: "file: message") as a Lua error. */
__attribute__((noreturn, format(printf, 3, 4))) static void fail(lua_State *L, int line,
                                                                 const char *fmt, ...)
{
    char msg[ZT_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *file = state_of(L)->c->file;
    if (line > 0)
        lua_pushfstring(L, "%s:%d: %s", file, line, msg);
    else
        lua_pushfstring(L, "%s: %s", file, msg);
    lua_error(L);
    abort(); /* not reached: lua_error does not return */
}

__attribute__((noreturn)) static void fail_nomem(lua_State *L)
{
    fail(L, 0, "out of memory");
}

static char *dup_or_fail(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d) fail_nomem(L);
    return d;
}

static int current_line(lua_State *L)
{
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar) && ar.currentline > 0)
        return ar.currentline;
    return 0;
}

/* ---- suggestions ------------------------------------------------------------------ */

/* Levenshtein distance where swapping two neighbours counts as one edit ("cuont"). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[65][65];
    if (la > 64 || lb > 64) return SIZE_MAX;
    for (size_t i = 0; i <= la; i++) d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1u < best) best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best) best = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    }
    return d[la][lb];
}

typedef struct suggest {
    const char *key;
    const char *best;
    size_t dist;
} suggest;

static void suggest_try(suggest *s, const char *cand)
{
    size_t d = edit_distance(s->key, cand);
    size_t la = strlen(s->key), lc = strlen(cand);
    /* close enough to be a typo, not a different word */
    if (d == 0 || d > 2 || d * 3 > (la > lc ? la : lc)) return;
    if (!s->best || d < s->dist) {
        s->best = cand;
        s->dist = d;
    }
}

/* " (did you mean 'x'?)" or "" */
static const char *suggest_text(const suggest *s, char *buf, size_t n)
{
    if (!s->best) return "";
    snprintf(buf, n, " (did you mean '%s'?)", s->best);
    return buf;
}

/* ---- lines of keys in table constructors ----------------------------------------- */

/* If a line ends at i, where the next begins; else 0. As Lua's lexer counts: \n, \r,
 * \r\n and \n\r each end one line. */
static size_t line_break(const char *s, size_t len, size_t i)
{
    if (s[i] != '\n' && s[i] != '\r') return 0;
    if (i + 1 < len && (s[i + 1] == '\n' || s[i + 1] == '\r') && s[i + 1] != s[i]) return i + 2;
    return i + 1;
}

static void index_lines(conf_state *st)
{
    int n = 1;
    for (size_t i = 0, next; i < st->srclen; i = next ? next : i + 1)
        if ((next = line_break(st->src, st->srclen, i))) n++;
    st->line_off = malloc(((size_t)n + 1) * sizeof *st->line_off);
    if (!st->line_off) return; /* then every key falls back to its table's line */
    int l = 0;
    st->line_off[l++] = 0;
    for (size_t i = 0, next; i < st->srclen; i = next ? next : i + 1)
        if ((next = line_break(st->src, st->srclen, i))) st->line_off[l++] = next;
    assert(l == n);
    st->line_off[n] = st->srclen;
    st->nlines = n;
}

static bool ident_char(char ch)
{
    return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9');
}

/* Does `key%s*=` (not `==`) start at p, with no identifier character before it? */
static bool key_assigned_at(const char *line, const char *p, const char *end, const char *key,
                            size_t klen)
{
    if (p > line && ident_char(p[-1])) return false;
    if ((size_t)(end - p) < klen || memcmp(p, key, klen) != 0) return false;
    const char *q = p + klen;
    if (q < end && ident_char(*q)) return false;
    while (q < end && (*q == ' ' || *q == '\t')) q++;
    return q < end && *q == '=' && (q + 1 == end || q[1] != '=');
}

/* Is "text" or 'text' in the line, quoted? */
static bool quoted_at(const char *p, const char *end, const char *text, size_t tlen)
{
    if (*p != '"' && *p != '\'') return false;
    return (size_t)(end - p) >= tlen + 2 && memcmp(p + 1, text, tlen) == 0 && p[tlen + 1] == *p;
}

/* The level of a Lua long bracket opening at p ("[[" 0, "[==[" 2), or -1. */
static int long_open(const char *p, const char *end)
{
    if (p >= end || *p != '[') return -1;
    int lvl = 0;
    for (p++; p < end && *p == '='; p++) lvl++;
    return p < end && *p == '[' ? lvl : -1;
}

/* Does "]" + lvl "=" + "]" (the end of a long bracket of that level) begin at p? */
static bool long_close(const char *p, const char *end, int lvl)
{
    if (*p != ']' || end - p < lvl + 2) return false;
    for (int i = 1; i <= lvl; i++)
        if (p[i] != '=') return false;
    return p[lvl + 1] == ']';
}

/* How many times `key = ` (or, if quoted, "key") is written on line l, outside strings of
 * either kind and comments. *lvl: the long string or comment the line begins in ([==[
 * level), or -1; it is left as the line ends, for the next. */
static int count_on_line(conf_state *st, int l, const char *key, size_t klen, bool quoted, int *lvl)
{
    const char *line = st->src + st->line_off[l - 1];
    const char *end = st->src + st->line_off[l];
    size_t len = (size_t)(end - line);
    if (st->scan_left < len) return 0;
    st->scan_left -= len;
    int n = 0;
    char in = 0; /* the quote we are inside, or 0 */
    for (const char *p = line; p < end; p++) {
        if (*lvl >= 0) { /* inside [=[ ... ]=]: look for its end */
            if (long_close(p, end, *lvl)) {
                p += *lvl + 1;
                *lvl = -1;
            }
            continue;
        }
        if (!in) {
            bool comment = p + 1 < end && p[0] == '-' && p[1] == '-';
            int open = long_open(comment ? p + 2 : p, end);
            if (open >= 0) { /* a long string, or a long comment */
                *lvl = open;
                p += (comment ? 2 : 0) + open + 1;
                continue;
            }
            if (comment) break; /* to the end of the line */
        }
        if (quoted ? quoted_at(p, end, key, klen) : !in && key_assigned_at(line, p, end, key, klen))
            n++;
        if (in && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"' || *p == '\'')
            in = !in ? *p : in == *p ? 0 : in;
    }
    return n;
}

static bool on_line(conf_state *st, int l, const char *key, size_t klen, bool quoted)
{
    int lvl = -1;
    return count_on_line(st, l, key, klen, quoted, &lvl) > 0;
}

/* The first line in [from, to] where `key = ` (or, if quoted, "key") is written;
 * `from` if none. Lua keeps no lines for the fields of a table constructor. */
static int find_line(conf_state *st, int from, int to, const char *key, bool quoted)
{
    if (!st->line_off || from < 1 || from > st->nlines) return from;
    if (to > st->nlines || to < from) to = st->nlines;
    size_t klen = strlen(key);
    for (int l = from; l <= to; l++)
        if (on_line(st, l, key, klen, quoted)) return l;
    return from;
}

/* Lua reports an assignment on the line where its value ends: the line where `key =`
 * is written is the nearest one at or above it. */
static int start_line(conf_state *st, int line, const char *key)
{
    if (!st->line_off || line < 1 || line > st->nlines) return line;
    size_t klen = strlen(key);
    for (int l = line; l >= 1; l--)
        if (on_line(st, l, key, klen, false)) return l;
    return line;
}

/* The last line that may belong to the assignment on `line`: the one before the next
 * top-level assignment (or the end of the file). */
static int assignment_end(lua_State *L, int line)
{
    int next = 0;
    lua_getfield(L, LUA_REGISTRYINDEX, REG_LINES);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        int l = (int)lua_tointeger(L, -1);
        if (l > line && (next == 0 || l < next)) next = l;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return next ? next - 1 : INT32_MAX;
}

/* ---- the sandbox ------------------------------------------------------------------ */

static int env_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    int type = lua_rawget(L, lua_upvalueindex(1));
    int line = current_line(L);
    if (type == LUA_TTABLE) {
        /* `limits.idle_timeout = 5` after `limits = {...}` would change the table without
         * a word (and without a line to blame): a table is written whole, once */
        lua_pushvalue(L, 2);
        lua_rawget(L, lua_upvalueindex(2));
        fail(L, line,
             "'%s' is a table (set at line %d): write what goes in it inside its braces, "
             "'%s = { name = value, ... }', not as %s.name later",
             lua_tostring(L, 2), (int)lua_tointeger(L, -1), lua_tostring(L, 2), lua_tostring(L, 2));
    }
    if (type != LUA_TNIL) return 1;
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        fail(L, line, "'%s' is not defined (text must be quoted: \"%s\")", k, k);
    }
    fail(L, line, "a %s key is not defined", luaL_typename(L, 2));
}

/* Top-level keys land in the values table, never in the environment itself, so that
 * every assignment comes through here and a second one is seen. */
static int env_newindex(lua_State *L)
{
    int line = current_line(L);
    if (lua_type(L, 2) != LUA_TSTRING)
        fail(L, line, "only names can be set at the top level, not a %s key", luaL_typename(L, 2));
    line = start_line(state_of(L), line, lua_tostring(L, 2));
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
        fail(L, line, "'%s' is set twice (first at line %d)", lua_tostring(L, 2),
             (int)lua_tointeger(L, -1));
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_pushinteger(L, line);
    lua_rawset(L, lua_upvalueindex(2));
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, lua_upvalueindex(1));
    return 0;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    conf_state *st = state_of(L);
    st->budget -= CONF_HOOK_STEP;
    if (st->budget > 0) return;
    int line = lua_getinfo(L, "l", ar) && ar->currentline > 0 ? ar->currentline : 0;
    fail(L, line, "the config ran for more than %d instructions (an endless loop?)",
         CONF_INSTRUCTIONS);
}

/* ---- value checks (the value is on the top of the stack) -------------------------- */

static const char *want_string(lua_State *L, int line, const char *what, const char *expect)
{
    if (lua_type(L, -1) != LUA_TSTRING)
        fail(L, line, "%s must be %s, got %s", what, expect, luaL_typename(L, -1));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) fail(L, line, "%s must not contain a NUL byte", what);
    return s;
}

/* A Lua integer, or a float with an integral value (2^30 is a float in Lua). */
static bool to_integer(lua_State *L, int idx, int64_t *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER) return false;
    int ok;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok) return false;
    *out = (int64_t)v;
    return true;
}

static int64_t want_int(lua_State *L, int line, const char *what, const char *unit, int64_t lo,
                        int64_t hi)
{
    int64_t v;
    char u[64] = "";
    if (unit) snprintf(u, sizeof u, " (%s)", unit);
    if (!to_integer(L, -1, &v)) {
        if (lua_type(L, -1) == LUA_TNUMBER)
            fail(L, line, "%s must be an integer%s, got %.14g", what, u,
                 (double)lua_tonumber(L, -1));
        fail(L, line, "%s must be an integer%s, got %s", what, u, luaL_typename(L, -1));
    }
    if (v < lo || v > hi)
        fail(L, line, "%s must be between %lld and %lld%s, got %lld", what, (long long)lo,
             (long long)hi, u, (long long)v);
    return v;
}

/* A number of seconds, to the millisecond: at least least_ms (0 or 1), at most max_seconds. */
static int64_t want_seconds_ms(lua_State *L, int line, const char *what, int64_t least_ms,
                               int64_t max_seconds)
{
    if (lua_type(L, -1) != LUA_TNUMBER)
        fail(L, line, "%s must be a number (seconds), got %s", what, luaL_typename(L, -1));
    double v = (double)lua_tonumber(L, -1);
    if (!((v == 0 && least_ms == 0) || (v >= 0.001 && v <= (double)max_seconds)))
        fail(L, line, "%s must be %s %lld (seconds, to the millisecond), got %.14g", what,
             least_ms ? "between 0.001 and" : "0, or between 0.001 and", (long long)max_seconds, v);
    return (int64_t)llround(v * 1000);
}

/* A sequence of strings (1..n, nothing else); returns n. */
static size_t want_list(lua_State *L, int line, const char *what)
{
    if (!lua_istable(L, -1))
        fail(L, line, "%s must be a list of strings, got %s", what, luaL_typename(L, -1));
    size_t n = (size_t)lua_rawlen(L, -1), count = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        int64_t i;
        if (lua_type(L, -2) != LUA_TNUMBER || !to_integer(L, -2, &i) || i < 1 || (size_t)i > n)
            fail(L, line, "%s must be a list of strings, without names or holes", what);
        if (lua_type(L, -1) != LUA_TSTRING)
            fail(L, line, "%s must be a list of strings: item %lld is a %s", what, (long long)i,
                 luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            fail(L, line, "%s: item %lld contains a NUL byte", what, (long long)i);
        count++;
        lua_pop(L, 1);
    }
    if (count != n) fail(L, line, "%s must be a list of strings, without holes", what);
    return n;
}

/* An absolute, cleaned path: relative ones are taken from the config file's folder. */
static void clean_path(char *p)
{
    assert(p[0] == '/');
    size_t o = 0;
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *e = s;
        while (*e && *e != '/') e++;
        size_t n = (size_t)(e - s);
        if (n == 1 && s[0] == '.') {
            /* nothing */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && p[o - 1] != '/') o--;
            if (o > 0) o--;
        } else {
            p[o++] = '/';
            memmove(p + o, s, n);
            o += n;
        }
        s = e;
    }
    if (o == 0) p[o++] = '/';
    p[o] = 0;
}

static char *join_path(const char *base, const char *path)
{
    size_t bl = strlen(base), pl = strlen(path);
    char *r = malloc(bl + pl + 2);
    if (!r) return NULL;
    if (path[0] == '/') {
        memcpy(r, path, pl + 1);
    } else {
        memcpy(r, base, bl);
        r[bl] = '/';
        memcpy(r + bl + 1, path, pl + 1);
    }
    clean_path(r);
    return r;
}

#define FOLDER "a string (a folder)"

static char *want_path(lua_State *L, int line, const char *what, const char *expect)
{
    const char *s = want_string(L, line, what, expect);
    if (!*s) fail(L, line, "%s must not be empty", what);
    char *p = join_path(state_of(L)->base, s);
    if (!p) fail_nomem(L);
    return p;
}

static void set_str(char **field, char *value)
{
    free(*field);
    *field = value;
}

/* A listen address, parsed. */
typedef struct listen_addr {
    int af;
    bool dual; /* an IPv6 socket that takes IPv4 too (nng's); the node's listeners are not */
    unsigned char ip[16];
    long port;
} listen_addr;

/* "127.0.0.1:8080" or "[::1]:8080", numeric, port 1..65535, into *a; NULL, or why not. */
static const char *listen_problem(const char *s, listen_addr *a)
{
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return "an IPv6 address is written [address]:port";
        if ((size_t)(close - s - 1) >= sizeof host) return "the address is too long";
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        port = close + 2;
        a->af = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) return "it has no :port";
        if ((size_t)(colon - s) >= sizeof host) return "the address is too long";
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        port = colon + 1;
        a->af = AF_INET;
    }
    memset(a->ip, 0, sizeof a->ip);
    a->dual = false;
    if (inet_pton(a->af, host, a->ip) != 1)
        return a->af == AF_INET ? "the host must be a numeric IPv4 address (or [IPv6])"
                                : "the host is not a numeric IPv6 address";
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen)
        return "the port must be a number";
    a->port = strtol(port, NULL, 10);
    if (a->port < 1 || a->port > 65535) return "the port must be between 1 and 65535";
    return NULL;
}

static bool listen_any(const listen_addr *a)
{
    static const unsigned char zero[16];
    return memcmp(a->ip, zero, a->af == AF_INET6 ? 16 : 4) == 0;
}

/* Whether one socket bound to a would make binding b fail (address in use): the same
 * port and family (IPv6 listeners are IPv6-only), and the same address or either one
 * every address (0.0.0.0, [::]); a dual-stack socket at [::] is every IPv4 address too. */
static bool listen_overlap(const listen_addr *a, const listen_addr *b)
{
    if (a->port != b->port) return false;
    if (a->af != b->af) return (a->dual && listen_any(a)) || (b->dual && listen_any(b));
    return listen_any(a) || listen_any(b) || memcmp(a->ip, b->ip, sizeof a->ip) == 0;
}

/* Where a socket that nng (bus.publish, a plugin's) or a plugin binds would listen:
 * "host:port" as listen takes it, or an nng URL of a TCP transport (tcp, ws, wss,
 * tls+tcp, and their 4 and 6 kinds; a websocket's path dropped) where an empty host or
 * "*" is every address (IPv4's; IPv6's for the 6 kinds). [::] is dual-stack (Linux's
 * default, and nng's). NULL, or why it is no address this can judge (another transport,
 * a host name). */
static const char *socket_problem(const char *s, listen_addr *a)
{
    static const char *const tcp[] = {"tcp", "ws", "wss", "tls+tcp"};
    const char *any = "0.0.0.0";
    const char *sep = strstr(s, "://");
    if (sep) {
        size_t n = (size_t)(sep - s);
        if (n && (s[n - 1] == '4' || s[n - 1] == '6')) {
            if (s[n - 1] == '6') any = "[::]";
            n--;
        }
        size_t i = 0;
        while (i < sizeof tcp / sizeof *tcp && (strlen(tcp[i]) != n || strncmp(s, tcp[i], n))) i++;
        if (i == sizeof tcp / sizeof *tcp) return "it is no TCP transport";
        s = sep + 3;
        if (s[0] == '*' && s[1] == ':') s++;
    }
    char hp[96];
    int len = (int)strcspn(s, "/");
    if (len >= 80) return "the address is too long";
    snprintf(hp, sizeof hp, "%s%.*s", sep && s[0] == ':' ? any : "", len, s);
    const char *why = listen_problem(hp, a);
    a->dual = a->af == AF_INET6;
    return why;
}

/* The node's own socket that one at a would collide with: into what, as its setting
 * names it; false if none. with_bus: bus.publish is one of them. */
static bool node_socket_at(const zt_conf *c, const listen_addr *a, bool with_bus, char *what,
                           size_t len)
{
    listen_addr l;
    for (size_t i = 0; i < c->nlisten; i++) {
        if (listen_problem(c->listen[i], &l) || !listen_overlap(a, &l)) continue;
        snprintf(what, len, "listen '%s'", c->listen[i]);
        return true;
    }
    if (!with_bus || !c->bus_publish || socket_problem(c->bus_publish, &l) ||
        !listen_overlap(a, &l))
        return false;
    snprintf(what, len, "bus.publish '%s'", c->bus_publish);
    return true;
}

bool zt__conf_port_taken(const zt_conf *c, const char *addr, char *what, size_t len)
{
    listen_addr a, r;
    if (!addr || socket_problem(addr, &a)) return false;
    if (node_socket_at(c, &a, true, what, len)) return true;
    if (!c->repl_listen || socket_problem(c->repl_listen, &r) || !listen_overlap(&a, &r))
        return false;
    snprintf(what, len, "replication.listen '%s'", c->repl_listen);
    return true;
}

static void check_listen(lua_State *L, zt_conf *c, int line)
{
    size_t n;
    bool single = lua_type(L, -1) == LUA_TSTRING;
    if (single) {
        n = 1;
    } else {
        if (!lua_istable(L, -1))
            fail(L, line, "listen must be a string or a list of strings (\"host:port\"), got %s",
                 luaL_typename(L, -1));
        n = want_list(L, line, "listen");
        if (n == 0) fail(L, line, "listen must name at least one address");
        if (n > CONF_MAX_LISTEN)
            fail(L, line, "listen may name at most %d addresses", CONF_MAX_LISTEN);
    }
    char **list = calloc(n, sizeof *list);
    listen_addr addrs[CONF_MAX_LISTEN];
    if (!list) fail_nomem(L);
    for (size_t i = 0; i < c->nlisten; i++) free(c->listen[i]);
    free(c->listen);
    c->listen = list;
    c->nlisten = 0;
    for (size_t i = 0; i < n; i++) {
        if (!single) lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *s = want_string(L, line, "listen", "a string");
        const char *why = listen_problem(s, &addrs[i]);
        if (why) fail(L, line, "listen: '%s' is not \"host:port\" or \"[v6]:port\": %s", s, why);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j], s) == 0) fail(L, line, "listen: '%s' is listed twice", s);
            if (!listen_overlap(&addrs[j], &addrs[i])) continue;
            const char *fam = addrs[i].af == AF_INET6 ? "IPv6" : "IPv4";
            bool jany = listen_any(&addrs[j]);
            if (jany != listen_any(&addrs[i]))
                fail(L, line,
                     "listen: '%s' covers '%s' (it listens on every %s address at that port): "
                     "the node cannot listen on both; keep one",
                     jany ? list[j] : s, jany ? s : list[j], fam);
            fail(L, line, "listen: '%s' and '%s' are the same %s address and port: keep one",
                 list[j], s, fam);
        }
        list[i] = dup_or_fail(L, s);
        c->nlisten++;
        if (!single) lua_pop(L, 1);
    }
}

/* A list of addresses or networks ({ "127.0.0.1", "10.0.0.0/8", "::1" }) into *list:
 * trusted_proxies, auth.admin_networks. */
static void check_networks(lua_State *L, int line, const char *what, zt_netmask **list, size_t *n)
{
    if (!lua_istable(L, -1))
        fail(L, line,
             "%s must be a list of addresses or networks ({ \"127.0.0.1\", \"10.0.0.0/8\" }), "
             "got %s",
             what, luaL_typename(L, -1));
    size_t len = want_list(L, line, what);
    if (len > CONF_MAX_LISTEN) fail(L, line, "%s may name at most %d", what, CONF_MAX_LISTEN);
    zt_netmask *m = calloc(len ? len : 1, sizeof *m);
    if (!m) fail_nomem(L);
    free(*list);
    *list = m;
    *n = 0;
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *s = want_string(L, line, what, "a string");
        const char *why = zt__netmask_parse(s, &m[i]);
        if (why) fail(L, line, "%s: '%s' %s", what, s, why);
        ++*n;
        lua_pop(L, 1);
    }
}

/* The line where `key = ` is written in the table assigned on lines first..to (first if
 * it is not found: Lua keeps no lines for the fields of a table constructor). Lua keeps
 * the last of `{ a = 1, a = 2 }` without a word: a key written twice in one table (these
 * tables are flat: options, limits) is an error at its second line. */
static int key_line(lua_State *L, conf_state *st, int first, int to, const char *key,
                    const char *what)
{
    if (!st->line_off || first < 1 || first > st->nlines) return first;
    if (to > st->nlines || to < first) to = st->nlines;
    size_t klen = strlen(key);
    int seen = 0, at = 0, lvl = -1;
    for (int l = first; l <= to; l++) {
        int n = count_on_line(st, l, key, klen, false, &lvl);
        if (!n) continue;
        if (seen + n > 1)
            fail(L, l,
                 "%s: '%s' is set twice (first at line %d): Lua would keep the last "
                 "without a word",
                 what, key, at ? at : l);
        seen += n;
        at = l;
    }
    return at ? at : first;
}

static int by_line(const void *a, const void *b)
{
    const keyline *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* The keys of the table on the top of the stack, sorted by the line each is written on,
 * kept in a userdata pushed on the stack. The lines are found from table_line on, or, for
 * LINES_ARE_VALUES, they are the table's values (the top-level lines table). */
#define LINES_ARE_VALUES (-1)
static keyline *sorted_keys(lua_State *L, int table_line, const char *what, size_t *n)
{
    conf_state *st = state_of(L);
    int t = lua_gettop(L);
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            fail(L, table_line, "%s must hold name = value entries, not a list item (%s key)", what,
                 luaL_typename(L, -2));
        count++;
        lua_pop(L, 1);
    }
    keyline *keys = lua_newuserdatauv(L, count * sizeof *keys + 1, 0);
    bool scan = table_line != LINES_ARE_VALUES;
    int to = scan ? assignment_end(L, table_line) : 0;
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        assert(i < count);
        keys[i].key = lua_tostring(L, -2); /* anchored by the table */
        keys[i].line =
            scan ? key_line(L, st, table_line, to, keys[i].key, what) : (int)lua_tointeger(L, -1);
        i++;
        lua_pop(L, 1);
    }
    qsort(keys, count, sizeof *keys, by_line);
    *n = count;
    return keys;
}

static int key_index(const char *const *names, const char *key)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], key) == 0) return i;
    return -1;
}

/* The fields of the tables limits, lua, auth and audit: each number lands in a zt_conf
 * member; a value of another kind (a list, a boolean) is read by its own check. */
typedef struct field {
    const char *name;
    bool seconds;     /* a number of seconds, stored as milliseconds; else an integer */
    const char *unit; /* for messages */
    int64_t lo, hi;   /* the range (seconds: lo is 0 or 1 ms, hi in seconds) */
    size_t off, size; /* the member */
    /* not a number: checks the value on the top of the stack and stores it (line: its key's) */
    void (*check)(lua_State *L, zt_conf *c, int line);
} field;

#define FIELD(name, seconds, unit, lo, hi, member)                                                 \
    {                                                                                              \
        name, seconds, unit, lo, hi, offsetof(zt_conf, member), sizeof(((zt_conf *)0)->member),    \
            NULL                                                                                   \
    }
#define CHECKED(name, fn)                                                                          \
    {                                                                                              \
        name, false, NULL, 0, 0, 0, 0, fn                                                          \
    }
#define DAY (24 * 3600)

static void check_two_factor_roles(lua_State *L, zt_conf *c, int line);
static void check_admin_networks(lua_State *L, zt_conf *c, int line);
static void check_separate_duties(lua_State *L, zt_conf *c, int line);
static void check_audit_retain(lua_State *L, zt_conf *c, int line);
static void check_seal_algorithm(lua_State *L, zt_conf *c, int line);
static void check_crypto_fields(lua_State *L, zt_conf *c, int line);
static void check_audit_syslog(lua_State *L, zt_conf *c, int line);
static void check_audit_syslog_facility(lua_State *L, zt_conf *c, int line);
static void check_audit_syslog_ca(lua_State *L, zt_conf *c, int line);
static void check_audit_syslog_cert(lua_State *L, zt_conf *c, int line);
static void check_audit_syslog_key(lua_State *L, zt_conf *c, int line);
static void check_https_only(lua_State *L, zt_conf *c, int line);
static void check_labels(lua_State *L, zt_conf *c, int line);
static void check_default_clearance(lua_State *L, zt_conf *c, int line);

static const field limits_fields[] = {
    FIELD("header_bytes", false, "bytes", 1024, MIB, header_bytes),
    FIELD("body_bytes", false, "bytes", 0, INT64_C(1) << 40, body_bytes),
    FIELD("header_timeout", true, "seconds", 1, DAY, header_timeout_ms),
    FIELD("idle_timeout", true, "seconds", 1, DAY, idle_timeout_ms),
    FIELD("shutdown_timeout", true, "seconds", 1, DAY, shutdown_timeout_ms),
    FIELD("max_connections", false, "connections", 1, 1000000, max_connections),
    FIELD("commit_wait", true, "seconds", 0, 1, commit_wait_ms),
    {0},
};
static const field lua_fields[] = {
    FIELD("instructions", false, "instructions per call", 1000, INT64_C(1) << 50, lua_instructions),
    FIELD("memory", false, "bytes", MIB, INT64_C(1) << 40, lua_memory),
    {0},
};
static const field auth_fields[] = {
    FIELD("session_ttl", true, "seconds", 1, 366 * DAY, auth_session_ms),
    FIELD("idle_timeout", true, "seconds", 1, 366 * DAY, auth_idle_ms),
    FIELD("max_failures", false, "failed logins", 1, 1000, auth_max_failures),
    FIELD("lock_seconds", false, "seconds", 1, 366 * DAY, auth_lock_seconds),
    FIELD("password_ops", false, "Argon2id passes", 1, UINT32_MAX, auth_pw_ops),
    FIELD("password_memory", false, "bytes", 8192, INT64_C(1) << 40, auth_pw_mem),
    FIELD("password_max_age", true, "seconds", 0, 10 * 366 * DAY, auth_pw_max_age_ms),
    FIELD("inactive_after", true, "seconds", 0, 10 * 366 * DAY, auth_inactive_ms),
    FIELD("password_history", false, "passwords", 0, PW_HISTORY_MAX, auth_pw_history),
    FIELD("password_classes", false, "kinds of characters", 1, 4, auth_pw_classes),
    FIELD("registrations_per_hour", false, "registrations", 0, 1000000, auth_reg_per_hour),
    CHECKED("two_factor_roles", check_two_factor_roles),
    CHECKED("separate_duties", check_separate_duties),
    CHECKED("https_only", check_https_only),
    CHECKED("admin_networks", check_admin_networks),
    CHECKED("labels", check_labels),
    CHECKED("default_clearance", check_default_clearance),
    {0},
};

static const field audit_fields[] = {
    FIELD("checkpoint_every", false, "records", 1, INT64_C(1) << 40, audit_checkpoint_every),
    FIELD("checkpoint_interval", true, "seconds", 0, 366 * DAY, audit_checkpoint_ms),
    CHECKED("retain", check_audit_retain),
    CHECKED("syslog", check_audit_syslog),
    CHECKED("syslog_facility", check_audit_syslog_facility),
    CHECKED("syslog_ca", check_audit_syslog_ca),
    CHECKED("syslog_cert", check_audit_syslog_cert),
    CHECKED("syslog_key", check_audit_syslog_key),
    {0},
};

static const field seal_fields[] = {
    CHECKED("algorithm", check_seal_algorithm),
    {0},
};
static const field crypto_fields[] = {
    CHECKED("fields", check_crypto_fields),
    {0},
};

static void store_field(zt_conf *c, const field *f, int64_t v)
{
    unsigned char *p = (unsigned char *)c + f->off;
    if (f->size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, sizeof x);
    } else {
        assert(f->size == sizeof(uint64_t));
        uint64_t x = (uint64_t)v;
        memcpy(p, &x, sizeof x);
    }
}

static char **new_list(lua_State *L, size_t n)
{
    char **list = calloc(n ? n : 1, sizeof *list);
    if (!list) fail_nomem(L);
    return list;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

bool zt__label_name_ok(const char *l)
{
    return l && strlen(l) <= 32 && zt__role_name_ok(l); /* a role's alphabet, shorter */
}

int zt__label_level(const zt_conf *c, const char *label)
{
    for (size_t i = 0; label && i < c->auth_nlabels; i++)
        if (strcmp(c->auth_labels[i], label) == 0) return (int)i;
    return -1;
}

/* auth.two_factor_roles = { "admin", ... }: role names (not public or user). */
static void check_two_factor_roles(lua_State *L, zt_conf *c, int line)
{
    size_t n = want_list(L, line, "auth.two_factor_roles");
    char **list = new_list(L, n);
    free_list(c->auth_2fa_roles, c->auth_n2fa_roles);
    c->auth_2fa_roles = list;
    c->auth_n2fa_roles = 0;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *r = lua_tostring(L, -1);
        if (!r[0] || strlen(r) > 64 || strcmp(r, "public") == 0 || strcmp(r, "user") == 0)
            fail(L, line,
                 "auth.two_factor_roles: '%s' is not a role name (1 to 64 characters, "
                 "not public or user)",
                 r);
        list[c->auth_n2fa_roles++] = dup_or_fail(L, r);
        lua_pop(L, 1);
    }
}

/* auth.admin_networks = { "10.1.0.0/16" }: not empty (leaving it out allows every address). */
static void check_admin_networks(lua_State *L, zt_conf *c, int line)
{
    check_networks(L, line, "auth.admin_networks", &c->auth_admin_nets, &c->auth_nadmin_nets);
    if (!c->auth_nadmin_nets)
        fail(L, line,
             "auth.admin_networks is empty: no one could manage the node (leave it out to "
             "allow every address)");
}

/* The value on the stack, which must be true or false (name says where, if not). */
static bool want_bool(lua_State *L, int line, const char *name)
{
    if (!lua_isboolean(L, -1))
        fail(L, line, "%s must be true or false, got %s", name, luaL_typename(L, -1));
    return lua_toboolean(L, -1);
}

/* audit.retain = seconds: how long audit prune keeps records; 0 lets it prune any */
static void check_audit_retain(lua_State *L, zt_conf *c, int line)
{
    int64_t ms = want_seconds_ms(L, line, "audit.retain", 0, INT64_C(100) * 366 * DAY);
    c->audit_retain_ms = (uint64_t)ms;
    if (ms < INT64_C(180) * DAY * 1000)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "%s:%d: audit.retain is %lld days: audit prune may remove records younger than "
                "the six months GB/T 22239 level 3 asks audit records to be kept",
                c->file, line, (long long)(ms / (DAY * INT64_C(1000))));
}

/* audit.syslog = "tcp://host:port" or "tls://host:port": the log collector every record is
 * also sent to; host a name, an IPv4 address or [an IPv6 address] */
static void check_audit_syslog(lua_State *L, zt_conf *c, int line)
{
    const char *u = want_string(L, line, "audit.syslog",
                                "a string (\"tcp://host:port\" or \"tls://host:port\")");
    const char *why = NULL, *host = u + 6, *port = NULL;
    size_t hl = 0;
    if (strncmp(u, "udp://", 6) == 0) {
        why = "only tcp:// (syslog over UDP loses records without a word, and an audit record "
              "must not be lost)";
    } else if (strncmp(u, "tcp://", 6) != 0 && strncmp(u, "tls://", 6) != 0) {
        why = "it must begin with tcp:// or tls:// (RFC 5425)";
    } else if (host[0] == '[') {
        const char *close = strchr(host, ']');
        char ip6[64];
        unsigned char bin[16];
        hl = close ? (size_t)(close - host - 1) : 0;
        if (!close || close[1] != ':') {
            why = "an IPv6 address is written [address]:port";
        } else if (hl >= sizeof ip6) {
            why = "the host is not a numeric IPv6 address";
        } else {
            memcpy(ip6, host + 1, hl);
            ip6[hl] = 0;
            if (inet_pton(AF_INET6, ip6, bin) != 1) why = "the host is not a numeric IPv6 address";
            host++, port = close + 2;
        }
    } else {
        static const char name_chars[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
        const char *colon = strrchr(host, ':');
        hl = colon ? (size_t)(colon - host) : 0;
        if (!colon)
            why = "it has no :port";
        else if (hl == 0 || hl > 253 || strspn(host, name_chars) != hl)
            why = "the host must be a name (letters, digits, '.', '-'), an IPv4 address or "
                  "[an IPv6 address]";
        else
            port = colon + 1;
    }
    size_t pl = port ? strlen(port) : 0;
    long pn = pl && pl <= 5 && strspn(port, "0123456789") == pl ? strtol(port, NULL, 10) : 0;
    if (!why && (pn < 1 || pn > 65535)) why = "the port must be a number from 1 to 65535";
    if (why)
        fail(L, line, "audit.syslog: '%s' is not \"tcp://host:port\" or \"tls://host:port\": %s", u,
             why);
    c->audit_syslog_tls = strncmp(u, "tls://", 6) == 0;
    c->audit_syslog_line = line;
    free(c->audit_syslog_host);
    free(c->audit_syslog_port);
    c->audit_syslog_host = strndup(host, hl);
    c->audit_syslog_port = strdup(port);
    if (!c->audit_syslog_host || !c->audit_syslog_port) fail_nomem(L);
}

/* audit.syslog_facility = "authpriv": an RFC 5424 facility, by its usual name */
static void check_audit_syslog_facility(lua_State *L, zt_conf *c, int line)
{
    static const char *const names[] = {
        "kern",   "user",     "mail",   "daemon", "auth",   "syslog", "lpr",   "news",   "uucp",
        "cron",   "authpriv", "ftp",    "ntp",    "audit",  "alert",  "clock", "local0", "local1",
        "local2", "local3",   "local4", "local5", "local6", "local7", NULL};
    const char *f = want_string(L, line, "audit.syslog_facility", "a string (\"authpriv\")");
    int i = key_index(names, f);
    if (i < 0)
        fail(L, line,
             "audit.syslog_facility: '%s' is not a syslog facility (kern, user, mail, daemon, "
             "auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, clock, "
             "local0 to local7)",
             f);
    c->audit_syslog_facility = i;
}

/* audit.syslog_ca, _cert, _key = "file": PEM files for tls:// (checked once all are read:
 * check_syslog_tls); the files themselves are read at start */
static void check_audit_syslog_ca(lua_State *L, zt_conf *c, int line)
{
    set_str(&c->audit_syslog_ca, want_path(L, line, "audit.syslog_ca", "a string (a PEM file)"));
    c->audit_syslog_tls_line = c->audit_syslog_ca_line = line;
}

static void check_audit_syslog_cert(lua_State *L, zt_conf *c, int line)
{
    set_str(&c->audit_syslog_cert,
            want_path(L, line, "audit.syslog_cert", "a string (a PEM file)"));
    c->audit_syslog_tls_line = c->audit_syslog_cert_line = line;
}

static void check_audit_syslog_key(lua_State *L, zt_conf *c, int line)
{
    set_str(&c->audit_syslog_key, want_path(L, line, "audit.syslog_key", "a string (a PEM file)"));
    c->audit_syslog_tls_line = c->audit_syslog_cert_line = line;
}

/* The TLS files go with tls://, the certificate with its key. */
static void check_syslog_tls(lua_State *L, const zt_conf *c)
{
    if (c->audit_syslog_tls_line && !c->audit_syslog_tls)
        fail(L, c->audit_syslog_tls_line,
             "audit.syslog_ca, syslog_cert and syslog_key are for audit.syslog = "
             "\"tls://host:port\"%s",
             c->audit_syslog_host ? ", not tcp://" : ", which is not set");
    if (!c->audit_syslog_cert != !c->audit_syslog_key)
        fail(L, c->audit_syslog_cert_line,
             "audit.syslog_cert and audit.syslog_key go together: the node's certificate and "
             "its private key, for a collector that asks for one");
}

/* One of two names, the first the default: whether it is the second. what: the kind of
 * name ("a seal algorithm"), means: what the second is (for the message). */
static bool want_second(lua_State *L, int line, const char *name, const char *first,
                        const char *second, const char *what, const char *means)
{
    char expect[96];
    snprintf(expect, sizeof expect, "a string (\"%s\" or \"%s\")", first, second);
    const char *a = want_string(L, line, name, expect);
    if (strcmp(a, first) != 0 && strcmp(a, second) != 0)
        fail(L, line, "%s: '%s' is not %s: \"%s\" (the default) or \"%s\" (%s)", name, a, what,
             first, second, means);
    return strcmp(a, second) == 0;
}

/* seal.algorithm = "Ed25519" | "SM2": the algorithm of each new department seal key */
static void check_seal_algorithm(lua_State *L, zt_conf *c, int line)
{
    c->seal_sm2 = want_second(L, line, "seal.algorithm", "Ed25519", "SM2", "a seal algorithm",
                              "国密 SM2 signatures over SM3 digests, GB/T 32918 and GB/T 32905");
}

/* crypto.fields = "XChaCha20-Poly1305" | "SM4": how new personal-data fields are
 * encrypted (those written before stay readable either way) */
static void check_crypto_fields(lua_State *L, zt_conf *c, int line)
{
    c->fields_sm4 =
        want_second(L, line, "crypto.fields", "XChaCha20-Poly1305", "SM4", "a field cipher",
                    "国密 SM4 with HMAC-SM3, GB/T 32907 and GB/T 32905");
}

/* auth.separate_duties = true | false */
static void check_separate_duties(lua_State *L, zt_conf *c, int line)
{
    c->auth_separate_duties = want_bool(L, line, "auth.separate_duties");
}

/* auth.https_only = true | false */
static void check_https_only(lua_State *L, zt_conf *c, int line)
{
    c->auth_https_only = want_bool(L, line, "auth.https_only");
}

/* auth.labels = { "public", "internal", "sensitive" }: label names, lowest first. */
static void check_labels(lua_State *L, zt_conf *c, int line)
{
    size_t n = want_list(L, line, "auth.labels");
    if (n < 2 || n > ZT_LABELS_MAX)
        fail(L, line,
             "auth.labels must list 2 to %d security labels, lowest first (e.g. { \"public\", "
             "\"internal\", \"sensitive\" }), got %zu",
             ZT_LABELS_MAX, n);
    char **list = new_list(L, n);
    free_list(c->auth_labels, c->auth_nlabels);
    c->auth_labels = list;
    c->auth_nlabels = 0;
    c->auth_labels_line = line;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *l = lua_tostring(L, -1);
        if (!zt__label_name_ok(l))
            fail(L, line,
                 "auth.labels: '%s' is not a label name (1 to 32 of a-z 0-9 _ . - from a "
                 "letter)",
                 l);
        for (size_t j = 0; j < i; j++)
            if (strcmp(list[j], l) == 0) fail(L, line, "auth.labels: '%s' is listed twice", l);
        list[c->auth_nlabels++] = dup_or_fail(L, l);
        lua_pop(L, 1);
    }
}

/* auth.default_clearance = "internal": one of auth.labels (checked once both are read). */
static void check_default_clearance(lua_State *L, zt_conf *c, int line)
{
    const char *l = want_string(L, line, "auth.default_clearance", "a label of auth.labels");
    set_str(&c->auth_default_clearance, dup_or_fail(L, l));
    c->auth_clearance_line = line;
}

/* The default clearance is one of the labels (the two keys are read in either order). */
static void check_clearance_known(lua_State *L, zt_conf *c)
{
    if (zt__label_level(c, c->auth_default_clearance) >= 0) return;
    if (c->auth_clearance_line)
        fail(L, c->auth_clearance_line, "auth.default_clearance: '%s' is not one of auth.labels",
             c->auth_default_clearance);
    fail(L, c->auth_labels_line,
         "auth.labels does not list '%s', the default clearance: list it, or set "
         "auth.default_clearance to one of them",
         c->auth_default_clearance);
}

/* bus.publish and the HTTP listeners are sockets of one process: one that the other
 * covers would stop the start with "address already in use", which sends county IT
 * looking for another program (the keys are read in either order). */
static void check_publish_apart(lua_State *L, const zt_conf *c)
{
    listen_addr pub, rep;
    char what[256];
    if (c->bus_publish && !socket_problem(c->bus_publish, &pub) &&
        node_socket_at(c, &pub, false, what, sizeof what))
        fail(L, c->bus_publish_line,
             "bus.publish: '%s' and %s are at the same port: the node would take it twice; "
             "give the bus another port",
             c->bus_publish, what);
    if (c->repl_listen && !socket_problem(c->repl_listen, &rep) &&
        node_socket_at(c, &rep, true, what, sizeof what))
        fail(L, c->repl_listen_line,
             "replication.listen: '%s' and %s are at the same port: the node would take it "
             "twice; give replication another port",
             c->repl_listen, what);
}

/* limits = { ... }, lua = { ... } or auth = { ... }: the value on the top of the stack. */
static void check_section(lua_State *L, zt_conf *c, int line, const char *section,
                          const field *fields)
{
    if (!lua_istable(L, -1))
        fail(L, line, "%s must be a table ({ name = value, ... }), got %s", section,
             luaL_typename(L, -1));
    size_t n;
    keyline *keys = sorted_keys(L, line, section, &n);
    for (size_t i = 0; i < n; i++) {
        int kl = keys[i].line;
        const field *f = fields;
        while (f->name && strcmp(f->name, keys[i].key) != 0) f++;
        if (!f->name) {
            suggest s = {.key = keys[i].key};
            for (f = fields; f->name; f++) suggest_try(&s, f->name);
            char hint[96];
            fail(L, kl, "unknown key '%s' in %s%s", keys[i].key, section,
                 suggest_text(&s, hint, sizeof hint));
        }
        char what[64];
        snprintf(what, sizeof what, "%s.%s", section, f->name);
        lua_getfield(L, -2, f->name);
        if (f->check)
            f->check(L, c, kl);
        else
            store_field(c, f,
                        f->seconds ? want_seconds_ms(L, kl, what, f->lo, f->hi)
                                   : want_int(L, kl, what, f->unit, f->lo, f->hi));
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the keys */
}

/* bus = { publish = "tcp://host:port" }: where committed events are also published, for
 * other nodes and processes (nng pub/sub). */
static void check_bus(lua_State *L, zt_conf *c, int line)
{
    if (!lua_istable(L, -1))
        fail(L, line, "bus must be a table ({ publish = \"tcp://host:port\" }), got %s",
             luaL_typename(L, -1));
    size_t n;
    keyline *keys = sorted_keys(L, line, "bus", &n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].key, "publish") != 0)
            fail(L, keys[i].line, "unknown key '%s' in bus (it takes: publish)", keys[i].key);
        lua_getfield(L, -2, "publish");
        const char *u = want_string(L, keys[i].line, "bus.publish", "a string");
        const char *hostport = strncmp(u, "tcp://", 6) == 0 ? u + 6 : NULL;
        listen_addr a;
        const char *why = hostport ? listen_problem(hostport, &a) : "it must begin with tcp://";
        if (why) fail(L, keys[i].line, "bus.publish: '%s' is not \"tcp://host:port\": %s", u, why);
        set_str(&c->bus_publish, dup_or_fail(L, u));
        c->bus_publish_line = keys[i].line;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the keys */
}

/* replication = { listen = "tcp://host:port", keep = bytes }: where the standby pulls the
 * change sets from, and how many bytes of them the primary keeps for it at most. */
static void check_replication(lua_State *L, zt_conf *c, int line)
{
    if (!lua_istable(L, -1))
        fail(L, line,
             "replication must be a table ({ listen = \"tcp://host:port\", keep = bytes }), got "
             "%s",
             luaL_typename(L, -1));
    size_t n;
    keyline *keys = sorted_keys(L, line, "replication", &n);
    for (size_t i = 0; i < n; i++) {
        int kl = keys[i].line;
        if (strcmp(keys[i].key, "listen") == 0) {
            lua_getfield(L, -2, "listen");
            const char *u = want_string(L, kl, "replication.listen", "a string");
            const char *hostport = strncmp(u, "tcp://", 6) == 0 ? u + 6 : NULL;
            listen_addr a;
            const char *why = hostport ? listen_problem(hostport, &a) : "it must begin with tcp://";
            if (why) fail(L, kl, "replication.listen: '%s' is not \"tcp://host:port\": %s", u, why);
            set_str(&c->repl_listen, dup_or_fail(L, u));
            c->repl_listen_line = kl;
        } else if (strcmp(keys[i].key, "keep") == 0) {
            lua_getfield(L, -2, "keep");
            c->repl_keep =
                (uint64_t)want_int(L, kl, "replication.keep", "bytes", 65536, INT64_C(1) << 50);
        } else {
            fail(L, kl, "unknown key '%s' in replication (it takes: listen, keep)", keys[i].key);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the keys */
    if (!c->repl_listen)
        fail(L, line,
             "replication needs listen = \"tcp://host:port\" (the standby's address "
             "to pull from)");
}

/* A plugin name is a Lua identifier (its options are `name = { ... }`) and a file name. */
static bool plugin_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
    for (size_t i = 0; i < n; i++)
        if (!ident_char(s[i]) || (s[i] >= 'A' && s[i] <= 'Z')) return false;
    return true;
}

static void check_plugins(lua_State *L, zt_conf *c, int line)
{
    if (!lua_istable(L, -1))
        fail(L, line, "plugins must be a list of strings ({ \"name\", ... }), got %s",
             luaL_typename(L, -1));
    size_t n = want_list(L, line, "plugins");
    if (n > CONF_MAX_PLUGINS) fail(L, line, "plugins may list at most %d", CONF_MAX_PLUGINS);
    c->plugins = calloc(n ? n : 1, sizeof *c->plugins);
    if (!c->plugins) fail_nomem(L);
    int to = assignment_end(L, line);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *name = lua_tostring(L, -1);
        int pl = find_line(state_of(L), line, to, name, true);
        if (!plugin_name_ok(name))
            fail(L, pl,
                 "plugin name '%s' must be lowercase letters, digits and _ (starting with a "
                 "letter, at most 64)",
                 name);
        if (key_index(core_keys, name) >= 0)
            fail(L, pl, "'%s' is a core key, not a plugin name", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->plugins[j].name, name) == 0)
                fail(L, pl, "plugin '%s' is listed twice", name);
        c->plugins[i].name = dup_or_fail(L, name);
        c->plugins[i].line = pl;
        c->nplugins++;
        lua_pop(L, 1);
    }
}

static int plugin_index(const zt_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nplugins; i++)
        if (strcmp(c->plugins[i].name, name) == 0) return (int)i;
    return -1;
}

/* A top-level key that is not a core key. */
static void check_other(lua_State *L, zt_conf *c, const char *key, int line)
{
    suggest s = {.key = key};
    for (int i = 0; core_keys[i]; i++) suggest_try(&s, core_keys[i]);
    bool near_core = s.best != NULL;
    for (size_t i = 0; i < c->nplugins; i++) suggest_try(&s, c->plugins[i].name);
    char hint[96];
    if (plugin_index(c, key) >= 0) {
        if (!lua_istable(L, -1) && !lua_isnil(L, -1))
            fail(L, line, "options for plugin '%s' must be a table ({ name = value, ... }), got %s",
                 key, luaL_typename(L, -1));
        return; /* checked by zt__conf_plugin_options, against the plugin's declarations */
    }
    if (!lua_istable(L, -1) || near_core)
        fail(L, line, "unknown key '%s'%s", key, suggest_text(&s, hint, sizeof hint));
    zt__log(ZT_LOG_WARN, NULL, NULL,
            "%s:%d: options for plugin '%s', which is not in plugins, are ignored%s", c->file, line,
            key, suggest_text(&s, hint, sizeof hint));
}

/* Whether n bytes of address space can be reserved now, as LMDB maps the file: PROT_NONE
 * and MAP_NORESERVE, so that nothing is committed, only the addresses (which rlimit -v
 * and the CPU's user address space, 2^47 on x86-64, bound). */
static bool can_reserve(size_t n)
{
    void *p = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    munmap(p, n);
    return true;
}

/* map_size is address space: more than the machine can map fails the start in LMDB, after
 * data.mdb is made, without a line. Say so here, with the most it can. */
static void check_map_size(lua_State *L, size_t n, int line)
{
    if (can_reserve(n)) return;
    int most = 0;
    for (int b = 20; b < 50 && can_reserve((size_t)1 << b); b++) most = b;
    fail(L, line,
         "map_size %zu bytes is more address space than this machine can map (here at most "
         "about 2^%d = %zu): lower it (it reserves addresses only; the file grows as it fills)",
         n, most, (size_t)1 << most);
}

static void check_core(lua_State *L, zt_conf *c, int k, int line)
{
    const char *s;
    switch (k) {
    case K_NODE_NAME:
        s = want_string(L, line, "node_name", "a string");
        if (!*s || strlen(s) > 128) fail(L, line, "node_name must be 1 to 128 bytes");
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                fail(L, line, "node_name must not contain control characters");
        set_str(&c->node_name, dup_or_fail(L, s));
        break;
    case K_REGION_CODE:
        if (lua_type(L, -1) == LUA_TNUMBER)
            fail(L, line, "region_code must be a string of 6 digits: write it in quotes");
        s = want_string(L, line, "region_code", "a string of 6 digits (GB/T 2260)");
        if (strlen(s) != 6 || strspn(s, "0123456789") != 6)
            fail(L, line, "region_code must be 6 digits (GB/T 2260, e.g. \"330100\"), got \"%s\"",
                 s);
        set_str(&c->region_code, dup_or_fail(L, s));
        break;
    case K_LISTEN:
        check_listen(L, c, line);
        break;
    case K_DATA_DIR:
        set_str(&c->data_dir, want_path(L, line, "data_dir", FOLDER));
        c->data_dir_line = line;
        break;
    case K_MAP_SIZE:
        c->map_size = (size_t)want_int(L, line, "map_size", "bytes", MIB, (int64_t)1 << 50);
        check_map_size(L, c->map_size, line);
        break;
    case K_LOG_LEVEL:
        s = want_string(L, line, "log_level", "a string");
        if ((c->log_level = zt__log_level_parse(s)) < 0)
            fail(L, line,
                 "log_level must be \"debug\", \"info\", \"warn\" or \"error\", got \"%s\"", s);
        break;
    case K_PLUGIN_DIR:
        set_str(&c->plugin_dir, want_path(L, line, "plugin_dir", FOLDER));
        break;
    case K_LUA_DIR:
        set_str(&c->lua_dir, want_path(L, line, "lua_dir", FOLDER));
        break;
    case K_WEB_DIR:
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            set_str(&c->web_dir, NULL);
        } else {
            if (lua_type(L, -1) != LUA_TSTRING)
                fail(L, line, "web_dir must be a string (a folder) or false, got %s",
                     lua_type(L, -1) == LUA_TBOOLEAN ? "true" : luaL_typename(L, -1));
            set_str(&c->web_dir, want_path(L, line, "web_dir", FOLDER));
        }
        c->web_dir_line = line;
        break;
    case K_LIMITS:
        check_section(L, c, line, "limits", limits_fields);
        break;
    case K_LUA:
        check_section(L, c, line, "lua", lua_fields);
        break;
    case K_AUTH:
        check_section(L, c, line, "auth", auth_fields);
        break;
    case K_AUDIT:
        check_section(L, c, line, "audit", audit_fields);
        break;
    case K_BUS:
        check_bus(L, c, line);
        break;
    case K_KEY_FILE:
        set_str(&c->key_file, want_path(L, line, "key_file", "a string (a file)"));
        break;
    case K_TRUSTED_PROXIES:
        check_networks(L, line, "trusted_proxies", &c->proxies, &c->nproxies);
        break;
    case K_REPLICATION:
        check_replication(L, c, line);
        break;
    case K_SEAL:
        check_section(L, c, line, "seal", seal_fields);
        break;
    case K_CRYPTO:
        check_section(L, c, line, "crypto", crypto_fields);
        break;
    default: /* plugins: checked first */
        break;
    }
    lua_pop(L, 1);
}

static void set_defaults(lua_State *L, zt_conf *c)
{
    c->node_name = dup_or_fail(L, "zhengtong");
    c->region_code = dup_or_fail(L, "000000");
    c->listen = calloc(1, sizeof *c->listen);
    if (!c->listen) fail_nomem(L);
    c->listen[0] = dup_or_fail(L, "127.0.0.1:8080");
    c->nlisten = 1;
    const char *base = state_of(L)->base;
    if (!(c->data_dir = join_path(base, "data"))) fail_nomem(L);
    if (!(c->plugin_dir = join_path(base, ZT_DEFAULT_PLUGIN_DIR))) fail_nomem(L);
    if (!(c->lua_dir = join_path(base, ZT_DEFAULT_LUA_DIR))) fail_nomem(L);
    if (!(c->web_dir = join_path(base, ZT_DEFAULT_WEB_DIR))) fail_nomem(L);
    /* beside the config, not in data_dir: a backup of the data must not carry its key */
    if (!(c->key_file = join_path(base, "keys/master.key"))) fail_nomem(L);
    c->map_size = (size_t)4 << 30;
    c->log_level = ZT_LOG_INFO;
    c->header_bytes = 16384;
    c->body_bytes = 1048576;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 75000;
    c->shutdown_timeout_ms = 10000;
    c->max_connections = 1024;
    c->commit_wait_ms = 1;
    c->lua_instructions = 10000000;
    c->lua_memory = 64 * MIB;
    c->auth_session_ms = 8 * 3600 * 1000;
    c->auth_idle_ms = 30 * 60 * 1000;
    c->auth_max_failures = 5;
    c->auth_lock_seconds = 900;
    c->auth_pw_max_age_ms = INT64_C(90) * DAY * 1000;
    c->auth_reg_per_hour = 20;
    c->auth_pw_ops = 2; /* libsodium's "interactive" Argon2id cost */
    c->auth_pw_mem = 64 * MIB;
    c->auth_pw_classes = 2; /* two kinds, as before the setting: old configs keep their rule */
    c->audit_checkpoint_every = 1000;
    c->audit_checkpoint_ms = 300 * 1000;
    c->audit_retain_ms = 180ULL * DAY * 1000; /* GB/T 22239 level 3: six months at least */
    c->audit_syslog_facility = 10;            /* authpriv: security messages, kept private */
    c->repl_keep = (uint64_t)1 << 30;
    static const char *const labels[] = {"public", "internal", "sensitive"};
    c->auth_labels = new_list(L, 3);
    for (size_t i = 0; i < 3; i++) c->auth_labels[c->auth_nlabels++] = dup_or_fail(L, labels[i]);
    c->auth_default_clearance = dup_or_fail(L, "internal");
}

/* Run the text, then check every top-level key, in the order of the file. */
static int load_protected(lua_State *L)
{
    zt_conf *c = lua_touserdata(L, 1);
    conf_state *st = state_of(L);
    set_defaults(L, c);

    lua_newtable(L); /* 2: values */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_VALUES);
    lua_newtable(L); /* 3: lines */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_LINES);

    const char *chunkname = lua_pushfstring(L, "@%s", c->file); /* 4 */
    /* text only: a precompiled chunk could crash the loader */
    if (luaL_loadbufferx(L, st->src, st->srclen, chunkname, "t") != LUA_OK) lua_error(L);
    lua_newtable(L); /* the environment: always empty */
    lua_newtable(L);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, env_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, env_newindex, 2);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_setupvalue(L, -2, 1); /* _ENV */
    st->budget = CONF_INSTRUCTIONS;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, CONF_HOOK_STEP);
    lua_call(L, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    lua_settop(L, 3);

    /* plugins first: whether another key is a plugin's options depends on it */
    lua_getfield(L, 3, "plugins");
    lua_getfield(L, 2, "plugins");
    if (!lua_isnil(L, -1)) check_plugins(L, c, (int)lua_tointeger(L, -2));
    lua_pop(L, 2);

    /* the top-level keys, sorted by line */
    size_t n;
    lua_pushvalue(L, 3);
    keyline *keys = sorted_keys(L, LINES_ARE_VALUES, "_ENV", &n);
    for (size_t i = 0; i < n; i++) {
        int k = key_index(core_keys, keys[i].key);
        if (k == K_PLUGINS) continue;
        lua_getfield(L, 2, keys[i].key);
        if (k >= 0) {
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1); /* `key = nil` keeps the default */
                continue;
            }
            check_core(L, c, k, keys[i].line);
        } else {
            check_other(L, c, keys[i].key, keys[i].line);
            lua_pop(L, 1);
        }
    }
    check_clearance_known(L, c);
    check_publish_apart(L, c);
    check_syslog_tls(L, c);
    return 0;
}

/* Lua's own messages start with the chunk's short name, which it cuts to 60 bytes with a
 * leading "...": give them the whole name back. */
static void format_error(const char *file, const char *msg, char *err, size_t errlen)
{
    size_t n = strlen(file);
    if (strncmp(msg, file, n) == 0 && msg[n] == ':') {
        snprintf(err, errlen, "%s", msg);
        return;
    }
    if (strncmp(msg, "...", 3) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t sl = n - i;
            if (strncmp(msg + 3, file + i, sl) == 0 && msg[3 + sl] == ':') {
                snprintf(err, errlen, "%s%s", file, msg + 3 + sl);
                return;
            }
        }
    }
    snprintf(err, errlen, "%s: %s", file, msg);
}

static void report(lua_State *L, int rc, const char *file, char *err, size_t errlen)
{
    if (rc == LUA_ERRMEM)
        snprintf(err, errlen, "%s: the config needs more memory than the %u MiB it may use", file,
                 CONF_MEMORY >> 20);
    else if (lua_type(L, -1) == LUA_TSTRING)
        format_error(file, lua_tostring(L, -1), err, errlen);
    else
        snprintf(err, errlen, "%s: error (%s)", file, luaL_typename(L, -1));
    lua_pop(L, 1);
}

static char *folder_of(const char *name)
{
    const char *slash = strrchr(name, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == name)
        dir = strdup("/");
    else
        dir = strndup(name, (size_t)(slash - name));
    if (!dir) return NULL;
    if (dir[0] != '/') {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) {
            free(dir);
            return NULL;
        }
        char *abs = join_path(cwd, dir);
        free(dir);
        return abs;
    }
    clean_path(dir);
    return dir;
}

int zt__conf_load_buffer(const char *name, const char *text, size_t len, zt_conf *c, char *err,
                         size_t errlen)
{
    memset(c, 0, sizeof *c);
    err[0] = 0;
    /* A UTF-8 byte order mark, as Notepad writes before the Chinese comments: not Lua. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, len -= 3;
    int rc = ZT_ENOMEM;
    conf_state *st = calloc(1, sizeof *st);
    if (!st) goto nomem;
    st->c = c;
    st->scan_left = CONF_SCAN_BYTES;
    st->srclen = len;
    st->src = malloc(len + 1);
    if (!st->src) goto nomem;
    if (len) memcpy(st->src, text, len);
    st->src[len] = 0;
    if (!(c->file = strdup(name))) goto nomem;
    if (!(st->base = folder_of(name))) {
        snprintf(err, errlen, "%s: cannot find its folder: %s", name, strerror(errno));
        rc = ZT_EIO;
        goto out;
    }
    index_lines(st);
    lua_State *L = lua_newstate(conf_alloc, st);
    if (!L) goto nomem;
    c->L = L;
    st = NULL; /* owned by the state now */

    lua_pushcfunction(L, load_protected);
    lua_pushlightuserdata(L, c);
    int lrc = lua_pcall(L, 1, 0, 0);
    if (lrc != LUA_OK) {
        report(L, lrc, name, err, errlen);
        zt__conf_free(c);
        return ZT_EINVAL;
    }
    lua_settop(L, 0);
    return ZT_OK;

nomem:
    snprintf(err, errlen, "%s: out of memory", name);
out:
    if (st) {
        free(st->src);
        free(st->base);
        free(st);
    }
    zt__conf_free(c);
    return rc;
}

int zt__conf_load(const char *path, zt_conf *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return ZT_EIO;
    }
    zt_buf b = {0};
    char chunk[8192];
    size_t n;
    int rc = ZT_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > CONF_MAX_FILE) {
            snprintf(err, errlen, "%s: larger than %u MiB: is it a config file?", path,
                     CONF_MAX_FILE >> 20);
            rc = ZT_EINVAL;
            break;
        }
        if (zt__buf_append(&b, chunk, n)) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = ZT_ENOMEM;
            break;
        }
    }
    if (rc == ZT_OK && ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = ZT_EIO;
    }
    fclose(f);
    if (rc == ZT_OK) rc = zt__conf_load_buffer(path, b.data ? b.data : "", b.len, c, err, errlen);
    zt__buf_free(&b);
    return rc;
}

/* "file:line: key path" or "file: key (its default) path", then what is wrong with it. */
__attribute__((format(printf, 7, 8))) static int dir_fail(const zt_conf *c, int line,
                                                          const char *key, const char *path,
                                                          char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    char why[ZT_ERRLEN / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s %s %s", c->file, line, key, path, why);
    else
        snprintf(err, errlen, "%s: %s (its default) %s %s", c->file, key, path, why);
    return ZT_EINVAL;
}

int zt__conf_check_dirs(const zt_conf *c, bool web, char *err, size_t errlen)
{
    struct stat st;
    const char *d = c->data_dir;
    if (stat(d, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return dir_fail(c, c->data_dir_line, "data_dir", d, err, errlen, "is not a folder");
    } else if (errno == ENOTDIR) { /* a folder above it is a file: name it */
        char up[4096];
        snprintf(up, sizeof up, "%s", d);
        for (char *slash; (slash = strrchr(up, '/')) && slash != up;) {
            *slash = 0;
            if (stat(up, &st) == 0 && !S_ISDIR(st.st_mode)) break;
        }
        return dir_fail(c, c->data_dir_line, "data_dir", d, err, errlen,
                        "cannot be made: %s is a file, not a folder", up);
    } else if (errno != ENOENT) { /* missing is fine: the first start makes it */
        return dir_fail(c, c->data_dir_line, "data_dir", d, err, errlen, "cannot be read: %s",
                        strerror(errno));
    }
    if (!web || !c->web_dir) return ZT_OK;
    if (stat(c->web_dir, &st) != 0 && errno == ENOENT)
        return dir_fail(c, c->web_dir_line, "web_dir", c->web_dir, err, errlen,
                        "does not exist (web_dir = false serves no web pages)");
    if (stat(c->web_dir, &st) != 0)
        return dir_fail(c, c->web_dir_line, "web_dir", c->web_dir, err, errlen,
                        "cannot be read: %s", strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return dir_fail(c, c->web_dir_line, "web_dir", c->web_dir, err, errlen, "is not a folder");
    return ZT_OK;
}

void zt__conf_free(zt_conf *c)
{
    if (c->L) {
        conf_state *st = state_of(c->L);
        lua_close(c->L);
        free(st->src);
        free(st->line_off);
        free(st->base);
        free(st);
    }
    free(c->file);
    free(c->node_name);
    free(c->region_code);
    for (size_t i = 0; i < c->nlisten; i++) free(c->listen[i]);
    free(c->listen);
    free_list(c->auth_2fa_roles, c->auth_n2fa_roles);
    free_list(c->auth_labels, c->auth_nlabels);
    free(c->auth_default_clearance);
    free(c->data_dir);
    free(c->plugin_dir);
    free(c->lua_dir);
    free(c->web_dir);
    free(c->key_file);
    free(c->bus_publish);
    free(c->repl_listen);
    free(c->audit_syslog_host);
    free(c->audit_syslog_port);
    free(c->audit_syslog_ca);
    free(c->audit_syslog_cert);
    free(c->audit_syslog_key);
    free(c->proxies);
    free(c->auth_admin_nets);
    for (size_t i = 0; i < c->nplugins; i++) free(c->plugins[i].name);
    free(c->plugins);
    memset(c, 0, sizeof *c);
}

/* ---- plugin options --------------------------------------------------------------- */

typedef struct opt_job {
    zt_conf *c;
    const char *plugin;
    const zt_option *decl;
    zt_optval *out;
    size_t ndecl;
} opt_job;

static const char *type_text(int type)
{
    switch (type) {
    case ZT_OPT_STRING:
        return "a string";
    case ZT_OPT_INT:
        return "an integer";
    case ZT_OPT_NUMBER:
        return "a number";
    case ZT_OPT_BOOL:
        return "a boolean (true or false)";
    case ZT_OPT_LIST:
        return "a list of strings";
    default:
        return "an unknown type";
    }
}

/* The value on the top of the stack, checked against the option's type. */
static void opt_from_value(lua_State *L, int line, const char *what, zt_optval *v)
{
    switch (v->type) {
    case ZT_OPT_STRING:
        v->s = dup_or_fail(L, want_string(L, line, what, "a string"));
        break;
    case ZT_OPT_INT:
        v->i = want_int(L, line, what, NULL, INT64_MIN, INT64_MAX);
        break;
    case ZT_OPT_NUMBER:
        if (lua_type(L, -1) != LUA_TNUMBER)
            fail(L, line, "%s must be a number, got %s", what, luaL_typename(L, -1));
        v->n = (double)lua_tonumber(L, -1);
        break;
    case ZT_OPT_BOOL:
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            fail(L, line, "%s must be a boolean (true or false), got %s", what,
                 luaL_typename(L, -1));
        v->b = lua_toboolean(L, -1);
        break;
    default: {
        size_t n = want_list(L, line, what);
        v->list = new_list(L, n);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            v->list[i] = dup_or_fail(L, lua_tostring(L, -1));
            v->nlist++;
            lua_pop(L, 1);
        }
    }
    }
    v->set = true;
}

static char *dup_trimmed(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return strndup(s, n);
}

/* A default written as text; false if the plugin wrote it wrong. */
static bool opt_from_default(lua_State *L, const char *def, zt_optval *v)
{
    char *end;
    errno = 0;
    switch (v->type) {
    case ZT_OPT_STRING:
        v->s = dup_or_fail(L, def);
        break;
    case ZT_OPT_INT: {
        long long x = strtoll(def, &end, 10);
        if (!*def || *end || errno) return false;
        v->i = x;
        break;
    }
    case ZT_OPT_NUMBER:
        v->n = strtod(def, &end);
        if (!*def || *end || errno) return false;
        break;
    case ZT_OPT_BOOL:
        if (strcmp(def, "true") == 0)
            v->b = true;
        else if (strcmp(def, "false") == 0)
            v->b = false;
        else
            return false;
        break;
    default: {
        size_t n = 0;
        if (*def) {
            n = 1;
            for (const char *p = def; (p = strchr(p, ',')); p++) n++;
        }
        v->list = new_list(L, n);
        const char *p = def;
        for (size_t i = 0; i < n; i++) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (!(v->list[i] = dup_trimmed(p, len))) fail_nomem(L);
            v->nlist++;
            p = comma ? comma + 1 : p + len;
        }
    }
    }
    v->set = true;
    return true;
}

static int options_protected(lua_State *L)
{
    opt_job *job = lua_touserdata(L, 1);
    zt_conf *c = job->c;
    const char *plugin = job->plugin;
    int pi = plugin_index(c, plugin);
    int plugins_line = pi >= 0 ? c->plugins[pi].line : 0;

    for (size_t i = 0; i < job->ndecl; i++) {
        const zt_option *d = &job->decl[i];
        if (d->type < ZT_OPT_STRING || d->type > ZT_OPT_LIST)
            fail(L, plugins_line, "plugin '%s' declares option '%s' with an unknown type %d",
                 plugin, d->name, d->type);
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->decl[j].name, d->name) == 0)
                fail(L, plugins_line, "plugin '%s' declares option '%s' twice", plugin, d->name);
    }

    lua_getfield(L, LUA_REGISTRYINDEX, REG_LINES);
    lua_getfield(L, -1, plugin);
    int table_line = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_VALUES);
    lua_getfield(L, -1, plugin); /* 3: the options table, or nil */
    bool has_table = lua_istable(L, 3);
    if (!has_table && !lua_isnil(L, 3))
        fail(L, table_line,
             "options for plugin '%s' must be a table ({ name = value, ... }), got %s", plugin,
             luaL_typename(L, 3));

    keyline *keys = NULL;
    size_t nkeys = 0;
    if (has_table) {
        lua_pushvalue(L, 3);
        keys = sorted_keys(L, table_line, plugin, &nkeys); /* 5 */
        for (size_t k = 0; k < nkeys; k++) {
            size_t i = 0;
            while (i < job->ndecl && strcmp(job->decl[i].name, keys[k].key) != 0) i++;
            if (i < job->ndecl) continue;
            suggest s = {.key = keys[k].key};
            for (i = 0; i < job->ndecl; i++) suggest_try(&s, job->decl[i].name);
            char hint[96];
            fail(L, keys[k].line, "unknown option '%s' for plugin '%s'%s", keys[k].key, plugin,
                 suggest_text(&s, hint, sizeof hint));
        }
    }

    for (size_t i = 0; i < job->ndecl; i++) {
        const zt_option *d = &job->decl[i];
        zt_optval *v = &job->out[i];
        v->name = d->name;
        v->type = d->type;
        int line = table_line ? table_line : plugins_line;
        v->line = line;
        if (has_table) {
            lua_getfield(L, 3, d->name);
            if (!lua_isnil(L, -1)) {
                for (size_t k = 0; k < nkeys; k++)
                    if (strcmp(keys[k].key, d->name) == 0) line = keys[k].line;
                v->line = line;
                v->from_config = true;
                char what[160];
                snprintf(what, sizeof what, "%s.%s", plugin, d->name);
                opt_from_value(L, line, what, v);
                lua_pop(L, 1);
                continue;
            }
            lua_pop(L, 1);
        }
        if (d->def) {
            if (!opt_from_default(L, d->def, v))
                fail(L, plugins_line,
                     "plugin '%s' declares option '%s' with a default that is not %s: \"%s\"",
                     plugin, d->name, type_text(d->type), d->def);
        } else if (d->required) {
            fail(L, line, "plugin '%s' needs option '%s' (%s%s%s): set it in %s = { %s = ... }",
                 plugin, d->name, type_text(d->type), d->description ? ": " : "",
                 d->description ? d->description : "", plugin, d->name);
        }
    }
    return 0;
}

int zt__conf_plugin_options(zt_conf *c, const char *plugin, const zt_option *decl, zt_optval **out,
                            size_t *nout, char *err, size_t errlen)
{
    assert(c->L);
    *out = NULL;
    *nout = 0;
    size_t ndecl = 0;
    while (decl && decl[ndecl].name) ndecl++;
    zt_optval *vals = calloc(ndecl ? ndecl : 1, sizeof *vals);
    if (!vals) {
        snprintf(err, errlen, "%s: out of memory", c->file);
        return ZT_ENOMEM;
    }
    opt_job job = {.c = c, .plugin = plugin, .decl = decl, .out = vals, .ndecl = ndecl};
    lua_State *L = c->L;
    lua_pushcfunction(L, options_protected);
    lua_pushlightuserdata(L, &job);
    int rc = lua_pcall(L, 1, 0, 0);
    if (rc != LUA_OK) {
        report(L, rc, c->file, err, errlen);
        zt__optvals_free(vals, ndecl);
        return ZT_EINVAL;
    }
    *out = vals;
    *nout = ndecl;
    return ZT_OK;
}

void zt__optvals_free(zt_optval *v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].s);
        for (size_t j = 0; j < v[i].nlist; j++) free(v[i].list[j]);
        free(v[i].list);
    }
    free(v);
}
