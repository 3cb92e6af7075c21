/* query.c: reading the time series: latest values, ranges with paging, aggregates; JSON, CSV. */
#include "sensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOWS 100000

/* A growing text; on failure it stays NULL-safe and reports ZT_ENOMEM at the end. */
typedef struct out {
    char *p;
    size_t n, cap;
    bool oom;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->n + n + 1) cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...)
{
    char b[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n >= 0) put(o, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

/* The shortest text that reads back as the same double. */
static void put_double(out *o, double d)
{
    char b[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, d);
        if (strtod(b, NULL) == d) break;
    }
    puts_(o, b);
}

static void put_jstr(out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(o, s + run, i - run);
        run = i + 1;
        if (c == '"')
            puts_(o, "\\\"");
        else if (c == '\\')
            puts_(o, "\\\\");
        else if (c == '\n')
            puts_(o, "\\n");
        else
            putf(o, "\\u%04x", c);
    }
    put(o, s + run, n - run);
    put(o, "\"", 1);
}

static void put_csv_str(out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') put(o, "\"", 1);
        put(o, s + i, 1);
    }
    put(o, "\"", 1);
}

static void put_val(out *o, const sn_val *v, bool csv)
{
    switch (v->type) {
    case LP_FLOAT:
        put_double(o, v->f);
        break;
    case LP_INT:
        putf(o, "%lld", (long long)v->i);
        break;
    case LP_UINT:
        putf(o, "%llu", (unsigned long long)v->u);
        break;
    case LP_BOOL:
        puts_(o, v->b ? "true" : "false");
        break;
    case LP_STRING:
        csv ? put_csv_str(o, v->s, v->sn) : put_jstr(o, v->s, v->sn);
        break;
    }
}

static void put_time(out *o, int64_t t)
{
    char b[40];
    sn_time_format(t, b);
    puts_(o, b);
}

static int send(zt_req *req, out *o, bool csv)
{
    if (o->oom) {
        free(o->p);
        return ZT_ENOMEM;
    }
    int rc = zt_respond(req, 200, csv ? "text/csv; charset=utf-8" : "application/json", o->p, o->n);
    free(o->p);
    return rc;
}

/* 1 for CSV, 0 for JSON (?format=csv|json, else the Accept header), -1 once answered 400. */
static int want_csv(zt_req *req)
{
    const char *f = zt_req_query(req, "format"), *a = zt_req_header(req, "Accept");
    if (f && strcmp(f, "csv") && strcmp(f, "json")) {
        zt_problem(req, 400, "invalid-query", NULL, "format: csv or json, not '%s'", f);
        return -1;
    }
    if (f) return strcmp(f, "csv") == 0;
    return a && strstr(a, "text/csv") != NULL;
}

/* The stream of the path, which must exist: ZT_OK, or answered (404) / an error. */
static int path_stream(zt_req *req, sn *S, zt_txn **t, uint32_t *id)
{
    const char *s = zt_req_param(req, "id");
    if (!(*t = zt_req_txn(req))) return ZT_EBUSY;
    unsigned char k[4];
    const void *val;
    size_t vl;
    if (sn_id_arg(s, id) != 0) goto none;
    sn_be32(k, *id);
    int rc = zt_get(*t, S->acl, k, 4, &val, &vl);
    if (rc == ZT_ENOTFOUND) goto none;
    if (rc != ZT_OK) return rc;
    return ZT_OK;
none:
    zt_problem(req, 404, "not-found", NULL, "no datastream %s", s);
    return 1;
}

static void put_latest(out *o, uint32_t id, int rc, int64_t t, const sn_val *v)
{
    putf(o, "{\"stream\":%u,\"time\":", id);
    if (rc == ZT_OK) {
        put(o, "\"", 1);
        put_time(o, t);
        puts_(o, "\",\"value\":");
        put_val(o, v, false);
    } else {
        puts_(o, "null,\"value\":null");
    }
    puts_(o, "}");
}

static int h_latest_one(zt_req *req, void *ud)
{
    sn *S = ud;
    zt_txn *t;
    uint32_t id;
    int rc = path_stream(req, S, &t, &id);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    zt_cursor *c;
    if ((rc = zt_cursor_open(t, S->obs, &c)) != ZT_OK) return rc;
    int64_t tm;
    sn_val v;
    rc = sn_obs_latest(c, id, &tm, &v);
    out o = {0};
    if (rc == ZT_OK || rc == ZT_ENOTFOUND) put_latest(&o, id, rc, tm, &v);
    zt_cursor_close(c);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        free(o.p);
        return rc;
    }
    return send(req, &o, false);
}

/* Latest value of every stream (of ?thing). */
static int h_latest(zt_req *req, void *ud)
{
    sn *S = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    const char *thing = zt_req_query(req, "thing");
    zt_cursor *cs, *co;
    int rc = zt_cursor_open(t, S->streams, &cs);
    if (rc != ZT_OK) return rc;
    if ((rc = zt_cursor_open(t, S->obs, &co)) != ZT_OK) {
        zt_cursor_close(cs);
        return rc;
    }
    out o = {0};
    puts_(&o, "{\"items\":[");
    zt_kv kv;
    bool first = true;
    for (rc = zt_cursor_seek(cs, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(cs, ZT_NEXT, NULL, 0, &kv)) {
        if (kv.klen != 4) continue;
        uint32_t id = sn_rd32(kv.key);
        if (thing) {
            cJSON *j = cJSON_ParseWithLength(kv.val, kv.vlen);
            const cJSON *th = cJSON_GetObjectItemCaseSensitive(j, "thing");
            bool match = cJSON_IsString(th) && strcmp(th->valuestring, thing) == 0;
            cJSON_Delete(j);
            if (!match) continue;
        }
        int64_t tm;
        sn_val v;
        int r = sn_obs_latest(co, id, &tm, &v);
        if (r != ZT_OK && r != ZT_ENOTFOUND) {
            rc = r;
            break;
        }
        if (!first) put(&o, ",", 1);
        first = false;
        put_latest(&o, id, r, tm, &v);
    }
    zt_cursor_close(co);
    zt_cursor_close(cs);
    if (rc != ZT_ENOTFOUND) {
        free(o.p);
        return rc;
    }
    puts_(&o, "]}");
    return send(req, &o, false);
}

static int range_args(zt_req *req, int64_t *start, int64_t *end)
{
    const char *s = zt_req_query(req, "start"), *e = zt_req_query(req, "end");
    *start = INT64_MIN;
    *end = INT64_MAX;
    if (s && sn_time_arg(s, start) != 0) {
        zt_problem(req, 400, "invalid-query", NULL, "start: RFC 3339 or ns since 1970");
        return 1;
    }
    if (e && sn_time_arg(e, end) != 0) {
        zt_problem(req, 400, "invalid-query", NULL, "end: RFC 3339 or ns since 1970");
        return 1;
    }
    return 0;
}

/* The first (or the next) observation of stream id in [start, end): its time in *tm;
 * ZT_ENOTFOUND past the last. */
static int obs_next(zt_cursor *c, bool first, uint32_t id, int64_t start, int64_t end, zt_kv *kv,
                    int64_t *tm)
{
    int rc;
    if (first) {
        unsigned char k[SN_OBS_KEY];
        sn_obs_key(id, start, k);
        rc = zt_cursor_seek(c, ZT_GE, k, SN_OBS_KEY, kv);
    } else {
        rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, kv);
    }
    if (rc != ZT_OK) return rc;
    if (kv->klen != SN_OBS_KEY) return ZT_ENOTFOUND;
    uint32_t kid;
    sn_obs_key_read(kv->key, &kid, tm);
    return kid == id && *tm < end ? ZT_OK : ZT_ENOTFOUND;
}

/* Observations of a stream in [start, end), oldest first, ?limit at a time (1..10000,
 * 1000); ?cursor (from "next") continues. */
static int h_range(zt_req *req, void *ud)
{
    sn *S = ud;
    zt_txn *t;
    uint32_t id;
    int rc = path_stream(req, S, &t, &id);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    int64_t start, end;
    if (range_args(req, &start, &end)) return ZT_OK;
    const char *cur = zt_req_query(req, "cursor");
    int64_t limit;
    if (sn_query_int(req, "limit", 1000, 1, 10000, &limit)) return ZT_OK;
    if (cur) {
        int64_t c;
        if (sn_time_arg(cur, &c) != 0)
            return zt_problem(req, 400, "invalid-query", NULL, "cursor: the 'next' of a page");
        if (c > start) start = c;
    }
    int csv = want_csv(req);
    if (csv < 0) return ZT_OK;
    zt_cursor *c;
    if ((rc = zt_cursor_open(t, S->obs, &c)) != ZT_OK) return rc;
    zt_kv kv;
    out o = {0};
    puts_(&o, csv ? "time,value\n" : "");
    if (!csv) putf(&o, "{\"stream\":%u,\"observations\":[", id);
    int64_t n = 0;
    bool more = false;
    int64_t next = 0;
    int64_t tm;
    for (rc = obs_next(c, true, id, start, end, &kv, &tm); rc == ZT_OK;
         rc = obs_next(c, false, id, start, end, &kv, &tm)) {
        if (n == limit) {
            more = true;
            next = tm;
            break;
        }
        sn_val v;
        if (sn_val_decode(kv.val, kv.vlen, &v) != 0) {
            rc = ZT_EIO;
            break;
        }
        if (csv) {
            put_time(&o, tm);
            put(&o, ",", 1);
            put_val(&o, &v, true);
            put(&o, "\n", 1);
        } else {
            puts_(&o, n ? ",{\"time\":\"" : "{\"time\":\"");
            put_time(&o, tm);
            puts_(&o, "\",\"value\":");
            put_val(&o, &v, false);
            put(&o, "}", 1);
        }
        n++;
    }
    zt_cursor_close(c);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        free(o.p);
        return rc;
    }
    if (more) zt_res_header(req, "X-Next-Cursor", zt_req_printf(req, "%lld", (long long)next));
    if (!csv) {
        if (more)
            putf(&o, "],\"next\":\"%lld\"}", (long long)next);
        else
            puts_(&o, "],\"next\":null}");
    }
    return send(req, &o, csv);
}

/* A duration: an integer with a unit (ns, us, ms, s, m, h, d), or plain seconds. */
static int duration(const char *s, int64_t *ns)
{
    int64_t v;
    const char *end;
    if (!s || sn_int_prefix(s, &v, &end) != 0 || v <= 0) return -1;
    static const struct {
        const char *u;
        int64_t ns;
    } units[] = {{"", 1000000000},
                 {"ns", 1},
                 {"us", 1000},
                 {"ms", 1000000},
                 {"s", 1000000000},
                 {"m", INT64_C(60000000000)},
                 {"h", INT64_C(3600000000000)},
                 {"d", INT64_C(86400000000000)}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].u) == 0) {
            if (v > INT64_MAX / units[i].ns) return -1;
            *ns = v * units[i].ns;
            return 0;
        }
    return -1;
}

enum { F_COUNT = 1, F_MIN = 2, F_MAX = 4, F_MEAN = 8, F_FIRST = 16, F_LAST = 32 };
static const char *const fn_names[] = {"count", "min", "max", "mean", "first", "last", NULL};

typedef struct win {
    int64_t start;
    uint64_t count;
    double min, max, sum, first, last;
} win;

static void put_win(out *o, const win *w, unsigned fns, bool csv, bool comma)
{
    double vals[6] = {(double)w->count,          w->min,   w->max,
                      w->sum / (double)w->count, w->first, w->last};
    if (csv) {
        put_time(o, w->start);
    } else {
        puts_(o, comma ? ",{\"time\":\"" : "{\"time\":\"");
        put_time(o, w->start);
        put(o, "\"", 1);
    }
    for (int i = 0; fn_names[i]; i++) {
        if (!(fns & (1u << i))) continue;
        if (csv)
            put(o, ",", 1);
        else
            putf(o, ",\"%s\":", fn_names[i]);
        if (i == 0)
            putf(o, "%llu", (unsigned long long)w->count);
        else
            put_double(o, vals[i]);
    }
    puts_(o, csv ? "\n" : "}");
}

/* Aggregates of the numeric observations of a stream in [start, end), per window of ?every
 * aligned to 1970 (as InfluxDB's GROUP BY time); windows without data are left out. */
static int h_aggregate(zt_req *req, void *ud)
{
    sn *S = ud;
    zt_txn *t;
    uint32_t id;
    int rc = path_stream(req, S, &t, &id);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    int64_t start, end, every;
    if (range_args(req, &start, &end)) return ZT_OK;
    const char *es = zt_req_query(req, "every");
    if (duration(es, &every) != 0)
        return zt_problem(req, 400, "invalid-query", NULL,
                          "every: the window, e.g. 60s, 5m, 1h, 1d (or seconds)");
    unsigned fns = 0;
    const char *fs = zt_req_query(req, "fn");
    if (!fs) fs = "count,min,max,mean,first,last";
    for (const char *p = fs; *p;) {
        size_t n = strcspn(p, ",");
        int i = 0;
        while (fn_names[i] && !(strlen(fn_names[i]) == n && !strncmp(fn_names[i], p, n))) i++;
        if (!fn_names[i])
            return zt_problem(req, 400, "invalid-query", NULL,
                              "fn: a list of count, min, max, mean, first, last");
        fns |= 1u << i;
        p += n + (p[n] == ',');
    }
    if (!fns)
        return zt_problem(req, 400, "invalid-query", NULL,
                          "fn: a list of count, min, max, mean, first, last");
    int csv = want_csv(req);
    if (csv < 0) return ZT_OK;
    zt_cursor *c;
    if ((rc = zt_cursor_open(t, S->obs, &c)) != ZT_OK) return rc;
    zt_kv kv;
    out o = {0};
    if (csv) {
        puts_(&o, "time");
        for (int i = 0; fn_names[i]; i++)
            if (fns & (1u << i)) putf(&o, ",%s", fn_names[i]);
        put(&o, "\n", 1);
    } else {
        putf(&o, "{\"stream\":%u,\"every_ns\":%lld,\"windows\":[", id, (long long)every);
    }
    win w = {.count = 0};
    size_t nwin = 0;
    int64_t tm;
    for (rc = obs_next(c, true, id, start, end, &kv, &tm); rc == ZT_OK;
         rc = obs_next(c, false, id, start, end, &kv, &tm)) {
        sn_val v;
        double d;
        if (sn_val_decode(kv.val, kv.vlen, &v) != 0) {
            rc = ZT_EIO;
            break;
        }
        if (!sn_val_number(&v, &d)) continue;
        int64_t ws = tm - (tm % every + every) % every;
        if (w.count && ws != w.start) {
            if (++nwin > MAX_WINDOWS) {
                rc = ZT_ETOOBIG;
                break;
            }
            put_win(&o, &w, fns, csv, nwin > 1);
            w.count = 0;
        }
        if (!w.count) {
            w = (win){.start = ws, .min = d, .max = d, .first = d};
        }
        w.count++;
        w.sum += d;
        if (d < w.min) w.min = d;
        if (d > w.max) w.max = d;
        w.last = d;
    }
    zt_cursor_close(c);
    if (rc == ZT_ETOOBIG) {
        free(o.p);
        return zt_problem(req, 422, "too-many-windows", NULL,
                          "more than %d windows: use a longer every or a shorter range",
                          MAX_WINDOWS);
    }
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        free(o.p);
        return rc;
    }
    if (w.count) put_win(&o, &w, fns, csv, nwin++ > 0);
    if (!csv) puts_(&o, "]}");
    return send(req, &o, csv);
}

int sn_query_routes(sn *S)
{
    const zt_route routes[] = {
        {"GET", "/sensor/latest", h_latest, S, ZT_ROLE_USER, 0,
         "The latest value of every datastream (?thing=)"},
        {"GET", "/sensor/streams/:id/latest", h_latest_one, S, ZT_ROLE_USER, 0,
         "The latest value of a datastream"},
        {"GET", "/sensor/streams/:id/observations", h_range, S, ZT_ROLE_USER, 0,
         "Observations in a range (?start, end, limit, cursor; JSON or CSV)"},
        {"GET", "/sensor/streams/:id/aggregate", h_aggregate, S, ZT_ROLE_USER, 0,
         "count, min, max, mean, first, last per window (?start, end, every, fn)"},
    };
    return sn_routes_add(S, routes, sizeof routes / sizeof routes[0]);
}
