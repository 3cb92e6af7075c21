/* lua_pattern.c: Lua's string.find, match, gmatch and gsub, counting steps against the budget. */
#define _GNU_SOURCE /* memmem */
#include "core.h"

#include <assert.h>
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <lauxlib.h>
#include <lua.h>

/*
 * The string library matches patterns inside one C call, where the instruction budget
 * never looks: ("a"):rep(20000):find("a*b") takes seconds, ("a*"):rep(20) .. "b" longer
 * than anyone waits. The sandbox's string table (which is also the strings' __index, so
 * s:find is covered) gets these four functions instead, written here from the manual's
 * description of Lua 5.4 patterns. A pattern is first compiled into a list of items, each
 * character class a 256-bit set; matching then backtracks over an explicit stack of choice
 * points, counting its steps and charging them to the same budget as the Lua code, so a
 * match that runs too long fails with "instruction budget exceeded" like a loop does.
 *
 * Two differences from the standard library: a malformed pattern is an error even when
 * the subject would never make the matcher reach the bad part, and there is no "pattern
 * too complex" limit (the stack is the pattern's length, not C recursion).
 */

#define PAT_MAXCAPTURES 32
#define PAT_POSITION    (-1) /* the length of a position capture "()" */
#define FUEL_CHUNK      1024 /* steps taken from the budget at a time */
#define FUEL_BYTES      32   /* bytes scanned by a plain search per step */
#define PAT_SPECIALS    "^$*+?.([%-"

enum {
    PI_CHAR,     /* one byte, .c */
    PI_ANY,      /* "." */
    PI_SET,      /* a class "%a" or a set "[...]", .set */
    PI_BACKREF,  /* "%1".."%9": capture .c again */
    PI_BALANCE,  /* "%bxy": .c = x, .close = y */
    PI_FRONTIER, /* "%f[set]" */
    PI_OPEN,     /* "(": capture .c begins */
    PI_POSITION, /* "()": capture .c is the position */
    PI_CLOSE,    /* ")": capture .c ends */
    PI_END,      /* "$" at the end: the end of the subject */
};
enum { Q_ONE, Q_STAR, Q_PLUS, Q_LAZY, Q_OPT }; /* the quantifier of a class */

struct pitem {
    unsigned char op, q, c, close;
    const unsigned char *set; /* 32 bytes: bit b of byte b/8 for each byte value b */
};

/* A choice point: item `item` matched `n` bytes from `pos`; on failure try another n. */
struct pframe {
    size_t item, pos, n;
};

struct pprog {
    size_t nitems, nsets;
    unsigned ncap;
    bool anchor; /* "^": only at the start position */
    struct pitem *items;
    struct pframe *frames; /* at most one choice point per item is ever pending */
    unsigned char (*sets)[32];
};

struct pmatch {
    lua_State *L;
    const struct pprog *pg;
    const unsigned char *s;
    size_t n;
    int64_t fuel; /* steps taken from the budget and not yet spent */
    size_t cstart[PAT_MAXCAPTURES];
    ptrdiff_t clen[PAT_MAXCAPTURES];
};

/* The classes %a %c %d %g %l %p %s %u %w %x by the C library's ctype (as the standard
 * library reads them), and %z (the NUL byte: undocumented since 5.2, yet still accepted by
 * 5.4), then their complements %A ... %Z. */
static const char class_letters[] = "acdglpsuwxz";
#define NCLASSES (sizeof class_letters - 1)
static unsigned char class_sets[2 * NCLASSES][32];
static bool class_sets_ready;

static bool ctype_has(char letter, int c)
{
    switch (letter) {
    case 'a':
        return isalpha(c);
    case 'c':
        return iscntrl(c);
    case 'd':
        return isdigit(c);
    case 'g':
        return isgraph(c);
    case 'l':
        return islower(c);
    case 'p':
        return ispunct(c);
    case 's':
        return isspace(c);
    case 'u':
        return isupper(c);
    case 'w':
        return isalnum(c);
    case 'x':
        return isxdigit(c);
    default:
        return c == 0;
    }
}

static void class_sets_init(void)
{
    if (class_sets_ready) return;
    for (size_t k = 0; k < NCLASSES; k++)
        for (int c = 0; c < 256; c++) {
            if (ctype_has(class_letters[k], c))
                class_sets[k][c >> 3] |= (unsigned char)(1u << (c & 7));
            else
                class_sets[k + NCLASSES][c >> 3] |= (unsigned char)(1u << (c & 7));
        }
    class_sets_ready = true;
}

/* The set of "%<c>" when c names a class; NULL when "%<c>" is c itself. */
static const unsigned char *class_set(unsigned char c)
{
    const char *at = c ? strchr(class_letters, tolower(c)) : NULL;
    if (!at) return NULL;
    return class_sets[(size_t)(at - class_letters) + (isupper(c) ? NCLASSES : 0)];
}

static inline bool set_has(const unsigned char *set, unsigned char c)
{
    return (set[c >> 3] >> (c & 7)) & 1;
}

static inline bool item_has(const struct pitem *it, unsigned char c)
{
    if (it->op == PI_CHAR) return c == it->c;
    if (it->op == PI_ANY) return true;
    return set_has(it->set, c);
}

/* ---- the budget, step by step ---- */

static void fuel_refill(struct pmatch *m)
{
    uint64_t need = (uint64_t)-m->fuel;
    uint64_t take = zt__lua_budget_take(m->L, need, need + FUEL_CHUNK);
    if (take == UINT64_MAX) {
        m->fuel = INT64_MAX / 2;
        return;
    }
    m->fuel += (int64_t)take;
}

static inline void fuel_spend(struct pmatch *m, size_t steps)
{
    m->fuel -= (int64_t)steps;
    if (m->fuel < 0) fuel_refill(m);
}

/* Give back what was taken and not spent: before Lua runs (its instructions are counted by
 * the hook) and before returning, so that many small matches cost what they do. */
static void fuel_settle(struct pmatch *m)
{
    if (m->fuel > 0) zt__lua_budget_give(m->L, (uint64_t)m->fuel);
    m->fuel = 0;
}

/* ---- compiling ---- */

static void set_add(unsigned char *set, unsigned char c)
{
    set[c >> 3] |= (unsigned char)(1u << (c & 7));
}

/* "%<c>" inside a set: a class, or c itself. */
static void set_add_escape(unsigned char *set, unsigned char c)
{
    const unsigned char *cs = class_set(c);
    if (!cs) {
        set_add(set, c);
        return;
    }
    for (int k = 0; k < 32; k++) set[k] |= cs[k];
}

/* The set "[...]" that opens at p[i]; returns the index after its "]". The first byte
 * after "[" (or "[^") belongs to the set even if it is "]"; "%" takes the byte after it
 * along; inside, "x-y" is a range unless the "-" is last. */
static size_t compile_set(lua_State *L, const char *p, size_t lp, size_t i, unsigned char *set)
{
    size_t j = i + 1;
    bool negate = j < lp && p[j] == '^';
    if (negate) j++;
    size_t body = j;
    do {
        if (j >= lp) luaL_error(L, "malformed pattern (missing ']')");
        if (p[j++] == '%' && j < lp) j++;
    } while (j >= lp || p[j] != ']');
    size_t end = j; /* p[end] == ']', so p[k + 1] below is always inside the pattern */
    memset(set, 0, 32);
    for (size_t k = body; k < end;) {
        unsigned char c = (unsigned char)p[k];
        if (c == '%') {
            set_add_escape(set, (unsigned char)p[k + 1]);
            k += 2;
        } else if (p[k + 1] == '-' && k + 2 < end) {
            for (unsigned x = c; x <= (unsigned char)p[k + 2]; x++) set_add(set, (unsigned char)x);
            k += 3;
        } else {
            set_add(set, c);
            k++;
        }
    }
    if (negate)
        for (int k = 0; k < 32; k++) set[k] = (unsigned char)~set[k];
    return end + 1;
}

/* Compile pattern p into a new userdata (pushed). anchor_ok: a leading "^" anchors the
 * match (string.gmatch reads it as a plain "^"). Malformed patterns raise. */
static struct pprog *pat_compile(struct pmatch *m, const char *p, size_t lp, bool anchor_ok)
{
    lua_State *L = m->L;
    fuel_spend(m, lp + 1);
    /* every item takes at least one byte of the pattern, every set at least three */
    size_t maxi = lp + 1, maxs = lp / 3 + 1;
    size_t unit = sizeof(struct pitem) + sizeof(struct pframe);
    if (maxi > (SIZE_MAX / 2 - sizeof(struct pprog)) / (unit + 32))
        luaL_error(L, "pattern too long");
    struct pprog *pg =
        lua_newuserdatauv(L, sizeof *pg + maxi * unit + maxs * sizeof pg->sets[0], 0);
    memset(pg, 0, sizeof *pg);
    pg->items = (struct pitem *)(pg + 1);
    pg->frames = (struct pframe *)(pg->items + maxi);
    pg->sets = (unsigned char(*)[32])(pg->frames + maxi);

    unsigned open[PAT_MAXCAPTURES], nopen = 0;
    bool closed[PAT_MAXCAPTURES] = {false};
    size_t i = 0;
    if (anchor_ok && lp > 0 && p[0] == '^') {
        pg->anchor = true;
        i = 1;
    }
    while (i < lp) {
        assert(pg->nitems < maxi);
        struct pitem *it = &pg->items[pg->nitems++];
        memset(it, 0, sizeof *it);
        unsigned char c = (unsigned char)p[i];
        if (c == '(') {
            if (pg->ncap == PAT_MAXCAPTURES) luaL_error(L, "too many captures");
            it->c = (unsigned char)pg->ncap++;
            if (i + 1 < lp && p[i + 1] == ')') {
                it->op = PI_POSITION;
                closed[it->c] = true;
                i += 2;
            } else {
                it->op = PI_OPEN;
                open[nopen++] = it->c;
                i++;
            }
            continue;
        }
        if (c == ')') {
            if (nopen == 0) luaL_error(L, "invalid pattern capture");
            it->op = PI_CLOSE;
            it->c = (unsigned char)open[--nopen];
            closed[it->c] = true;
            i++;
            continue;
        }
        if (c == '$' && i + 1 == lp) {
            it->op = PI_END;
            i++;
            continue;
        }
        if (c == '%' && i + 1 < lp) {
            unsigned char d = (unsigned char)p[i + 1];
            if (d == 'b') {
                if (i + 3 >= lp) luaL_error(L, "malformed pattern (missing arguments to '%%b')");
                it->op = PI_BALANCE;
                it->c = (unsigned char)p[i + 2];
                it->close = (unsigned char)p[i + 3];
                i += 4;
                continue;
            }
            if (d == 'f') {
                i += 2;
                if (i >= lp || p[i] != '[') luaL_error(L, "missing '[' after '%%f' in pattern");
                assert(pg->nsets < maxs);
                it->op = PI_FRONTIER;
                it->set = pg->sets[pg->nsets];
                i = compile_set(L, p, lp, i, pg->sets[pg->nsets++]);
                continue;
            }
            if (d >= '0' && d <= '9') {
                int k = d - '1';
                if (k < 0 || k >= (int)pg->ncap || !closed[k])
                    luaL_error(L, "invalid capture index %%%d in pattern", k + 1);
                it->op = PI_BACKREF;
                it->c = (unsigned char)k;
                i += 2;
                continue;
            }
        }
        /* a single character class, perhaps with a quantifier */
        if (c == '%') {
            if (i + 1 >= lp) luaL_error(L, "malformed pattern (ends with '%%')");
            it->set = class_set((unsigned char)p[i + 1]);
            it->op = it->set ? PI_SET : PI_CHAR;
            it->c = (unsigned char)p[i + 1];
            i += 2;
        } else if (c == '[') {
            assert(pg->nsets < maxs);
            it->op = PI_SET;
            it->set = pg->sets[pg->nsets];
            i = compile_set(L, p, lp, i, pg->sets[pg->nsets++]);
        } else {
            it->op = c == '.' ? PI_ANY : PI_CHAR;
            it->c = c;
            i++;
        }
        static const char quantifiers[] = "*+-?"; /* in the order of Q_STAR.. */
        const char *q = i < lp ? memchr(quantifiers, p[i], 4) : NULL;
        if (q) {
            it->q = (unsigned char)(Q_STAR + (q - quantifiers));
            i++;
        }
    }
    if (nopen) luaL_error(L, "unfinished capture");
    return pg;
}

/* ---- matching ---- */

/* Match the whole program at pos: the end of the match, or -1. */
static ptrdiff_t pat_run(struct pmatch *m, size_t pos)
{
    const struct pprog *pg = m->pg;
    const unsigned char *s = m->s;
    const size_t n = m->n;
    struct pframe *fr = pg->frames;
    size_t i = 0, nf = 0;
    for (;;) {
        fuel_spend(m, 1);
        if (i == pg->nitems) return (ptrdiff_t)pos;
        const struct pitem *it = &pg->items[i];
        switch (it->op) {
        case PI_OPEN:
            m->cstart[it->c] = pos;
            i++;
            continue;
        case PI_POSITION:
            m->cstart[it->c] = pos;
            m->clen[it->c] = PAT_POSITION;
            i++;
            continue;
        case PI_CLOSE:
            m->clen[it->c] = (ptrdiff_t)(pos - m->cstart[it->c]);
            i++;
            continue;
        case PI_END:
            if (pos != n) goto fail;
            i++;
            continue;
        case PI_BALANCE: {
            if (pos >= n || s[pos] != it->c) goto fail;
            size_t k = pos + 1, depth = 1;
            for (; k < n; k++) {
                fuel_spend(m, 1);
                if (s[k] == it->close) {
                    if (--depth == 0) break;
                } else if (s[k] == it->c) {
                    depth++;
                }
            }
            if (k >= n) goto fail;
            pos = k + 1;
            i++;
            continue;
        }
        case PI_FRONTIER: {
            unsigned char prev = pos ? s[pos - 1] : 0, cur = pos < n ? s[pos] : 0;
            if (set_has(it->set, prev) || !set_has(it->set, cur)) goto fail;
            i++;
            continue;
        }
        case PI_BACKREF: {
            ptrdiff_t len = m->clen[it->c]; /* a position capture matches nothing */
            if (len < 0 || (size_t)len > n - pos) goto fail;
            fuel_spend(m, (size_t)len / FUEL_BYTES);
            if (memcmp(s + m->cstart[it->c], s + pos, (size_t)len) != 0) goto fail;
            pos += (size_t)len;
            i++;
            continue;
        }
        default:
            break;
        }
        /* a character class */
        switch (it->q) {
        case Q_ONE:
            if (pos >= n || !item_has(it, s[pos])) goto fail;
            pos++;
            break;
        case Q_OPT: /* with the byte first, then without */
            if (pos < n && item_has(it, s[pos])) fr[nf++] = (struct pframe){i, pos++, 1};
            break;
        case Q_LAZY: /* none first, then one more at each retry */
            fr[nf++] = (struct pframe){i, pos, 0};
            break;
        default: { /* as many as match first, then one fewer at each retry */
            size_t k = 0, least = it->q == Q_PLUS;
            while (pos + k < n && item_has(it, s[pos + k])) {
                fuel_spend(m, 1);
                k++;
            }
            if (k < least) goto fail;
            if (k > least) fr[nf++] = (struct pframe){i, pos, k};
            pos += k;
            break;
        }
        }
        assert(nf <= pg->nitems);
        i++;
        continue;
    fail:
        for (;;) {
            if (nf == 0) return -1;
            fuel_spend(m, 1);
            struct pframe *f = &fr[nf - 1];
            const struct pitem *fi = &pg->items[f->item];
            i = f->item + 1;
            if (fi->q == Q_OPT) {
                pos = f->pos;
                nf--;
                break;
            }
            if (fi->q == Q_LAZY) {
                size_t at = f->pos + f->n;
                if (at < n && item_has(fi, s[at])) {
                    f->n++;
                    pos = at + 1;
                    break;
                }
                nf--;
                continue;
            }
            f->n--;
            pos = f->pos + f->n;
            if (f->n == (fi->q == Q_PLUS ? 1u : 0u)) nf--;
            break;
        }
    }
}

static void pat_begin(struct pmatch *m, lua_State *L, const char *s, size_t n)
{
    m->L = L;
    m->pg = NULL;
    m->s = (const unsigned char *)s;
    m->n = n;
    m->fuel = 0;
}

/* Capture k as a Lua value: its text, or its position (1-based) for "()". */
static void pat_push_capture(struct pmatch *m, unsigned k)
{
    if (m->clen[k] == PAT_POSITION)
        lua_pushinteger(m->L, (lua_Integer)m->cstart[k] + 1);
    else
        lua_pushlstring(m->L, (const char *)m->s + m->cstart[k], (size_t)m->clen[k]);
}

/* The captures of the match [s, e); with none, the whole match if `whole`. */
static int pat_push_captures(struct pmatch *m, size_t s, size_t e, bool whole)
{
    unsigned n = m->pg->ncap;
    if (n == 0) {
        if (!whole) return 0;
        lua_pushlstring(m->L, (const char *)m->s + s, e - s);
        return 1;
    }
    luaL_checkstack(m->L, (int)n, "too many captures");
    for (unsigned k = 0; k < n; k++) pat_push_capture(m, k);
    return (int)n;
}

/* A 1-based start (negative: from the end) as an offset; past the end is > len. */
static size_t pat_offset(lua_Integer i, size_t len)
{
    if (i > 0) return (size_t)i - 1;
    if (i == 0 || i < -(lua_Integer)len) return 0;
    return len - (size_t)-i;
}

static bool pat_has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (memchr(PAT_SPECIALS, p[i], sizeof PAT_SPECIALS - 1)) return true;
    return false;
}

static int pat_find_aux(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = pat_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    struct pmatch m;
    pat_begin(&m, L, s, ls);
    if (find && (lua_toboolean(L, 4) || !pat_has_specials(p, lp))) {
        const char *hit = memmem(s + init, ls - init, p, lp);
        fuel_spend(&m, ((hit ? (size_t)(hit - s) + lp : ls) - init) / FUEL_BYTES + 1);
        fuel_settle(&m);
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)(hit - s + lp));
        return 2;
    }
    m.pg = pat_compile(&m, p, lp, true);
    size_t at = init;
    do {
        ptrdiff_t e = pat_run(&m, at);
        if (e >= 0) {
            fuel_settle(&m);
            if (!find) return pat_push_captures(&m, at, (size_t)e, true);
            lua_pushinteger(L, (lua_Integer)at + 1);
            lua_pushinteger(L, (lua_Integer)e);
            return 2 + pat_push_captures(&m, at, (size_t)e, false);
        }
    } while (at++ < ls && !m.pg->anchor);
    fuel_settle(&m);
    luaL_pushfail(L);
    return 1;
}

static int l_str_find(lua_State *L)
{
    return pat_find_aux(L, true);
}

static int l_str_match(lua_State *L)
{
    return pat_find_aux(L, false);
}

/* Where a gmatch iteration stands: the next start, and the end of the last match (an
 * empty match right there is skipped, so that "a*" on "ab" gives "a", "", not "a", "", ""). */
struct gmatch_state {
    size_t src;
    ptrdiff_t last;
};

static int gmatch_step(lua_State *L)
{
    size_t ls;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    struct gmatch_state *st = lua_touserdata(L, lua_upvalueindex(3));
    struct pmatch m;
    pat_begin(&m, L, s, ls);
    m.pg = lua_touserdata(L, lua_upvalueindex(2));
    for (size_t at = st->src; at <= ls; at++) {
        ptrdiff_t e = pat_run(&m, at);
        if (e >= 0 && e != st->last) {
            st->src = (size_t)e;
            st->last = e;
            fuel_settle(&m);
            return pat_push_captures(&m, at, (size_t)e, true);
        }
    }
    st->src = ls + 1;
    fuel_settle(&m);
    return 0;
}

static int l_str_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = pat_offset(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2);
    struct pmatch m;
    pat_begin(&m, L, s, ls);
    pat_compile(&m, p, lp, false);
    fuel_settle(&m);
    struct gmatch_state *st = lua_newuserdatauv(L, sizeof *st, 0);
    st->src = init > ls ? ls + 1 : init;
    st->last = -1;
    lua_remove(L, 2);
    lua_pushcclosure(L, gmatch_step, 3);
    return 1;
}

/* gsub with a string replacement: "%0" the match, "%1".."%9" captures, "%%" a "%". */
static void gsub_add_string(struct pmatch *m, luaL_Buffer *b, size_t s, size_t e)
{
    lua_State *L = m->L;
    size_t l;
    const char *r = lua_tolstring(L, 3, &l); /* r[l] is its NUL */
    size_t k = 0;
    const char *pc;
    while ((pc = memchr(r + k, '%', l - k)) != NULL) {
        size_t at = (size_t)(pc - r);
        luaL_addlstring(b, r + k, at - k);
        unsigned char d = (unsigned char)r[at + 1];
        if (d == '%') {
            luaL_addchar(b, '%');
        } else if (d == '0' || (d == '1' && m->pg->ncap == 0)) { /* %1 without captures */
            luaL_addlstring(b, (const char *)m->s + s, e - s);
        } else if (d >= '1' && d <= '9') {
            unsigned c = d - '1';
            if (c >= m->pg->ncap)
                luaL_error(L, "invalid capture index %%%d in replacement string", (int)c + 1);
            pat_push_capture(m, c);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%%' in replacement string");
        }
        k = at + 2;
        fuel_spend(m, 1);
    }
    if (k < l) luaL_addlstring(b, r + k, l - k);
}

/* gsub with a function (called with the captures) or a table (indexed by the first):
 * false or nil keeps the match as it was. */
static void gsub_add_value(struct pmatch *m, luaL_Buffer *b, size_t s, size_t e, int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TSTRING || tr == LUA_TNUMBER) {
        gsub_add_string(m, b, s, e);
        return;
    }
    fuel_settle(m);
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = pat_push_captures(m, s, e, true);
        lua_call(L, n, 1);
    } else {
        if (m->pg->ncap == 0)
            lua_pushlstring(L, (const char *)m->s + s, e - s);
        else
            pat_push_capture(m, 0);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, (const char *)m->s + s, e - s);
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int l_str_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(
        L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
        "string/function/table");
    lua_settop(L, 3);
    if (tr == LUA_TNUMBER) lua_tolstring(L, 3, NULL); /* the replacement as text, once */
    struct pmatch m;
    pat_begin(&m, L, s, ls);
    m.pg = pat_compile(&m, p, lp, true);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t at = 0;
    ptrdiff_t last = -1;
    lua_Integer count = 0;
    while (count < max) {
        ptrdiff_t e = pat_run(&m, at);
        if (e >= 0 && e != last) {
            count++;
            gsub_add_value(&m, &b, at, (size_t)e, tr);
            at = (size_t)e;
            last = e;
        } else if (at < ls) {
            luaL_addchar(&b, s[at++]);
        } else {
            break;
        }
        if (m.pg->anchor) break;
    }
    luaL_addlstring(&b, s + at, ls - at);
    fuel_settle(&m);
    luaL_pushresult(&b);
    lua_pushinteger(L, count);
    return 2;
}

void zt__lua_patterns_install(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {{"find", l_str_find},
                                     {"match", l_str_match},
                                     {"gmatch", l_str_gmatch},
                                     {"gsub", l_str_gsub},
                                     {NULL, NULL}};
    idx = lua_absindex(L, idx);
    class_sets_init();
    for (const luaL_Reg *r = funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, idx, r->name);
    }
}
