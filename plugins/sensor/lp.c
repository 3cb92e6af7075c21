/* lp.c: InfluxDB line protocol parser: one pass over the body, names unescaped in place. */
#include "lp.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t lp_precision(const char *name)
{
    if (!name || !name[0] || !strcmp(name, "ns") || !strcmp(name, "n")) return 1;
    if (!strcmp(name, "us") || !strcmp(name, "u") || !strcmp(name, "\xc2\xb5")) return 1000;
    if (!strcmp(name, "ms")) return 1000000;
    if (!strcmp(name, "s")) return 1000000000;
    if (!strcmp(name, "m")) return INT64_C(60000000000);
    if (!strcmp(name, "h")) return INT64_C(3600000000000);
    return -1;
}

int lp_dup_tag(const lp_point *pt)
{
    for (size_t i = 1; i < pt->ntags; i++)
        for (size_t j = 0; j < i; j++)
            if (pt->tag_key[i].n == pt->tag_key[j].n &&
                memcmp(pt->tag_key[i].p, pt->tag_key[j].p, pt->tag_key[i].n) == 0)
                return (int)i;
    return -1;
}

void lp_init(lp_parser *ps, const char *buf, size_t len, int64_t mult, char *scratch, size_t cap)
{
    assert(mult > 0);
    memset(ps, 0, sizeof *ps);
    ps->p = buf;
    ps->end = buf + len;
    ps->line = 1;
    ps->mult = mult;
    ps->scratch = scratch;
    ps->cap = cap;
}

/* The end of a line: "\n", "\r\n", or the end of the input. */
static int at_eol(const lp_parser *ps, const char *p)
{
    return p == ps->end || *p == '\n' || (*p == '\r' && (p + 1 == ps->end || p[1] == '\n'));
}

static int fail(lp_parser *ps, const char *line_start, size_t line, const char *why)
{
    const char *e = line_start;
    while (e < ps->end && *e != '\n' && *e != '\r' && e - line_start < 80) e++;
    ps->err_line = line;
    ps->err_text = line_start;
    ps->err_text_len = (size_t)(e - line_start);
    snprintf(ps->err, sizeof ps->err, "%s", why);
    return -1;
}

/* Copy [s, e) to scratch, turning "\c" into c for each c in esc. */
static int unescape(lp_parser *ps, const char *s, const char *e, const char *esc, lp_str *out)
{
    if ((size_t)(e - s) > ps->cap - ps->used) return -1;
    char *d = ps->scratch + ps->used, *d0 = d;
    while (s < e) {
        if (*s == '\\' && s + 1 < e && strchr(esc, s[1])) s++;
        *d++ = *s++;
    }
    out->p = d0;
    out->n = (size_t)(d - d0);
    ps->used += out->n;
    return 0;
}

/* A name (measurement, tag key or value, field key): up to an unescaped character of stop
 * or the end of the line. A backslash always takes the next character with it; it is
 * dropped only before one of esc. */
static int scan_name(lp_parser *ps, const char *esc, const char *stop, lp_str *out)
{
    const char *s = ps->p, *p = s;
    int escaped = 0;
    for (;;) {
        if (at_eol(ps, p)) break;
        char c = *p;
        if (c == '\\' && p + 1 < ps->end && p[1] != '\n') {
            escaped |= strchr(esc, p[1]) != NULL;
            p += 2;
            continue;
        }
        if (strchr(stop, c)) break;
        p++;
    }
    ps->p = p;
    if (!escaped) {
        out->p = s;
        out->n = (size_t)(p - s);
        return 0;
    }
    return unescape(ps, s, p, esc, out);
}

/* A decimal integer of [s, e) (an optional '-' for signed). 0, or -1 if not one, -2 if out
 * of range. */
static int parse_int(const char *s, const char *e, int sign_ok, int64_t *iv, uint64_t *uv)
{
    int neg = 0;
    if (s < e && *s == '-') {
        if (!sign_ok) return -1;
        neg = 1;
        s++;
    }
    if (s == e) return -1;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -2;
        v = v * 10 + d;
    }
    if (uv) {
        *uv = v;
        return 0;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return -2;
        *iv = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return -2;
        *iv = (int64_t)v;
    }
    return 0;
}

static int is_word(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(*words, s, n) == 0) return 1;
    return 0;
}

static const char *const true_words[] = {"t", "T", "true", "True", "TRUE", NULL};
static const char *const false_words[] = {"f", "F", "false", "False", "FALSE", NULL};

/* A field value at ps->p. Returns NULL, or why it is not one. */
static const char *scan_value(lp_parser *ps, lp_field *f)
{
    const char *s = ps->p;
    if (s < ps->end && *s == '"') {
        const char *p = s + 1;
        int escaped = 0;
        size_t lines = 0;
        for (;;) {
            if (p == ps->end) return "unbalanced quotes";
            if (*p == '\\' && p + 1 < ps->end && (p[1] == '"' || p[1] == '\\')) {
                escaped = 1;
                p += 2;
                continue;
            }
            if (*p == '"') break;
            lines += *p == '\n';
            p++;
        }
        f->type = LP_STRING;
        if (escaped) {
            if (unescape(ps, s + 1, p, "\"\\", &f->v.s) != 0) return "line too long";
        } else {
            f->v.s.p = s + 1;
            f->v.s.n = (size_t)(p - s - 1);
        }
        ps->line += lines; /* a string may hold newlines: they count as lines */
        ps->p = p + 1;
        return NULL;
    }
    const char *p = s;
    while (!at_eol(ps, p) && *p != ',' && *p != ' ') p++;
    ps->p = p;
    size_t n = (size_t)(p - s);
    if (n == 0) return "missing field value";
    if (is_word(s, n, true_words)) {
        f->type = LP_BOOL;
        f->v.b = 1;
        return NULL;
    }
    if (is_word(s, n, false_words)) {
        f->type = LP_BOOL;
        f->v.b = 0;
        return NULL;
    }
    char last = s[n - 1];
    if (last == 'i' || last == 'u') {
        int rc = last == 'i' ? parse_int(s, p - 1, 1, &f->v.i, NULL)
                             : parse_int(s, p - 1, 0, NULL, &f->v.u);
        if (rc == -2) return "value out of range";
        if (rc != 0) return last == 'i' ? "invalid integer" : "invalid unsigned integer";
        f->type = last == 'i' ? LP_INT : LP_UINT;
        return NULL;
    }
    /* a float: digits with at most a sign, a point and an exponent; no NaN, no infinity */
    char buf[64];
    int digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits = 1;
        else if (!strchr("+-.eE", c))
            return "invalid field value";
    }
    if (!digits || n >= sizeof buf) return "invalid number";
    memcpy(buf, s, n);
    buf[n] = 0;
    char *endp;
    double d = strtod(buf, &endp);
    if (endp != buf + n) return "invalid number";
    if (!isfinite(d)) return "value out of range";
    f->type = LP_FLOAT;
    f->v.f = d;
    return NULL;
}

/* Skip blank lines and comments. 0 at the end of the input. */
static int next_line(lp_parser *ps)
{
    for (;;) {
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r')) ps->p++;
        if (ps->p == ps->end) return 0;
        if (*ps->p == '\n') {
            ps->p++;
            ps->line++;
            continue;
        }
        if (*ps->p == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
            continue;
        }
        return 1;
    }
}

int lp_next(lp_parser *ps, lp_point *pt)
{
    if (!next_line(ps)) return 0;
    const char *ls = ps->p;
    size_t line = ps->line;
    ps->used = 0;
    pt->line = line;
    pt->ntags = pt->nfields = 0;
    pt->has_time = 0;
    pt->time_ns = 0;
#define FAIL(why) return fail(ps, ls, line, why)

    if (scan_name(ps, ", ", ", ", &pt->measurement) != 0) FAIL("line too long");
    if (pt->measurement.n == 0) FAIL("missing measurement");
    while (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        if (pt->ntags == LP_MAX_TAGS) FAIL("too many tags");
        lp_str *k = &pt->tag_key[pt->ntags], *v = &pt->tag_val[pt->ntags];
        if (scan_name(ps, ",= ", ",= ", k) != 0) FAIL("line too long");
        if (k->n == 0) FAIL("missing tag key");
        if (at_eol(ps, ps->p) || *ps->p != '=') FAIL("missing tag value");
        ps->p++;
        if (scan_name(ps, ",= ", ",= ", v) != 0) FAIL("line too long");
        if (v->n == 0) FAIL("missing tag value");
        if (!at_eol(ps, ps->p) && *ps->p == '=') FAIL("invalid tag format");
        pt->ntags++;
    }
    int dup = lp_dup_tag(pt);
    if (dup >= 0) {
        char why[sizeof ps->err];
        const lp_str *k = &pt->tag_key[dup];
        snprintf(why, sizeof why, "duplicate tag key '%.*s'", k->n > 60 ? 60 : (int)k->n, k->p);
        FAIL(why);
    }
    if (at_eol(ps, ps->p)) FAIL("missing fields");
    while (ps->p < ps->end && *ps->p == ' ') ps->p++;
    if (at_eol(ps, ps->p)) FAIL("missing fields");
    for (;;) {
        if (pt->nfields == LP_MAX_FIELDS) FAIL("too many fields");
        lp_field *f = &pt->field[pt->nfields];
        if (scan_name(ps, ",= ", ",= ", &f->key) != 0) FAIL("line too long");
        if (f->key.n == 0) FAIL("missing field key");
        if (at_eol(ps, ps->p) || *ps->p != '=') FAIL("missing field value");
        ps->p++;
        const char *why = scan_value(ps, f);
        if (why) FAIL(why);
        pt->nfields++;
        if (at_eol(ps, ps->p) || *ps->p == ' ') break;
        if (*ps->p != ',') FAIL("invalid field format");
        ps->p++;
    }
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t')) ps->p++;
    if (!at_eol(ps, ps->p)) {
        const char *s = ps->p;
        while (!at_eol(ps, ps->p) && *ps->p != ' ' && *ps->p != '\t') ps->p++;
        int64_t t;
        int rc = parse_int(s, ps->p, 1, &t, NULL);
        if (rc != 0) FAIL(rc == -2 ? "time outside range" : "bad timestamp");
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t')) ps->p++;
        if (!at_eol(ps, ps->p)) FAIL("bad timestamp");
        if (t > INT64_MAX / ps->mult || t < INT64_MIN / ps->mult) FAIL("time outside range");
        pt->has_time = 1;
        pt->time_ns = t * ps->mult;
    }
#undef FAIL
    if (ps->p < ps->end && *ps->p == '\r') ps->p++;
    if (ps->p < ps->end) {
        assert(*ps->p == '\n');
        ps->p++;
        ps->line++;
    }
    return 1;
}
