/* ingest.c: batches of observations (line protocol, JSON) into the time series, all or none. */
#include "sensor.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gz.h"

#define CACHE_SLOTS 1024 /* distinct series remembered per batch, at most (a power of two) */
#define CACHE_FIRST 16   /* the cache's first size: it doubles when half full */
#define TOUCHED_MAX 64   /* streams whose retention a batch checks */

typedef struct slot {
    uint64_t h;
    const char *key; /* NULL: empty */
    size_t klen;
    uint32_t id;
} slot;

struct sn_ingest {
    sn *S;
    zt_req *req;
    zt_txn *t;
    const char *writer; /* the device's account id; NULL: may write every stream */
    const char *unit;   /* what errors count: "line" or "observation" */
    int64_t now_ns;
    int64_t latest_ns; /* the latest time a point may have: now_ns + future_margin */
    size_t count, nslots, cap;
    slot *slots; /* cap of them, in the request's arena; NULL until the first miss */
    uint32_t touched[TOUCHED_MAX], touched_ret[TOUCHED_MAX];
    size_t ntouched;
    int status;
    const char *code;
    size_t line;
    char msg[600];
    unsigned char vbuf[9 + SN_MAX_STRING];
};

sn_ingest *sn_ingest_begin(sn *S, zt_req *req)
{
    sn_ingest *g = zt_req_alloc(req, sizeof *g);
    if (!g) return NULL;
    memset(g, 0, sizeof *g);
    g->S = S;
    g->req = req;
    g->now_ns = zt_now_ms() * 1000000;
    g->latest_ns = g->now_ns > INT64_MAX - S->future_ns ? INT64_MAX : g->now_ns + S->future_ns;
    const zt_caller *c = zt_req_caller(req);
    /* administrators and the node itself (MQTT, nng: the system caller) write any stream;
     * every other writer only those that list it: a device's key, and an account given
     * the device role too (the role is not a licence to write every stream) */
    if (c && (!c->kind || strcmp(c->kind, "system") != 0) && !zt_caller_has_role(c, SN_ADMIN_ROLE))
        g->writer = c->id;
    return g;
}

size_t sn_ingest_count(const sn_ingest *g)
{
    return g->count;
}

void sn_ingest_error(const sn_ingest *g, int *status, const char **code, const char **msg,
                     size_t *line)
{
    *status = g->status;
    *code = g->code;
    *msg = g->msg;
    *line = g->line;
}

static int fail(sn_ingest *g, int status, const char *code, size_t line, int rc, const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));
static int fail(sn_ingest *g, int status, const char *code, size_t line, int rc, const char *fmt,
                ...)
{
    g->status = status;
    g->code = code;
    g->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    return rc;
}

static uint64_t hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return h;
}

/* Put s into the first free slot of its probe run in t (cap slots); false if the run is
 * full. */
static bool place(slot *t, size_t cap, const slot *s)
{
    for (size_t i = (size_t)s->h & (cap - 1), probes = 0; probes < 8;
         i = (i + 1) & (cap - 1), probes++)
        if (!t[i].key) {
            t[i] = *s;
            return true;
        }
    return false;
}

/* Remember the stream of a series for the rest of the batch. The cache starts small (most
 * MQTT and nng messages are a line or two) and doubles, up to CACHE_SLOTS, when half full. */
static void remember(sn_ingest *g, uint64_t h, const char *key, size_t kl, uint32_t id)
{
    if (g->nslots >= g->cap / 2) {
        size_t cap = g->cap ? g->cap * 2 : CACHE_FIRST;
        if (cap > CACHE_SLOTS) return;
        slot *t = zt_req_alloc(g->req, cap * sizeof *t);
        if (!t) return;
        memset(t, 0, cap * sizeof *t);
        size_t n = 0;
        for (size_t i = 0; i < g->cap; i++)
            if (g->slots[i].key) n += place(t, cap, &g->slots[i]);
        g->slots = t;
        g->cap = cap;
        g->nslots = n;
    }
    char *copy = zt_req_alloc(g->req, kl);
    if (!copy) return;
    memcpy(copy, key, kl);
    g->nslots += place(g->slots, g->cap, &(slot){h, copy, kl, id});
}

/* A series key as text for messages: measurement,tag=value field. */
static const char *key_text(sn_ingest *g, const char *k, size_t n)
{
    char *s = zt_req_alloc(g->req, n + 1);
    if (!s) return "?";
    for (size_t i = 0; i < n; i++)
        s[i] = k[i] == '\x1f'   ? (i + 1 < n && k[i + 1] != '\x1d' ? ',' : ' ')
               : k[i] == '\x1e' ? '='
               : k[i] == '\x1d' ? '\0'
                                : k[i];
    /* drop the separators that turned into nothing */
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i]) s[j++] = s[i];
    s[j] = 0;
    return s;
}

/* The stream of a series (or of a stream id, when key is its 4-byte id and byid), checked
 * against the writer. */
static int resolve(sn_ingest *g, const char *key, size_t kl, bool byid, const sn_series *ser,
                   size_t line, uint32_t *id)
{
    uint64_t h = hash(key, kl) ^ (byid ? 0x9e3779b97f4a7c15ULL : 0);
    for (size_t i = (size_t)h & (g->cap - 1), probes = 0; g->cap && g->slots[i].key && probes < 8;
         i = (i + 1) & (g->cap - 1), probes++) {
        slot *s = &g->slots[i];
        if (s->h == h && s->klen == kl && memcmp(s->key, key, kl) == 0) {
            *id = s->id;
            return ZT_OK;
        }
    }
    sn *S = g->S;
    const void *v;
    size_t vl;
    int rc;
    if (byid) {
        *id = sn_rd32((const unsigned char *)key);
    } else if ((rc = zt_get(g->t, S->series, key, kl, &v, &vl)) == ZT_OK && vl == 4) {
        *id = sn_rd32(v);
    } else if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        return rc;
    } else if (!S->auto_create || !ser) {
        return fail(g, 422, "unprocessable entity", line, ZT_ENOTFOUND,
                    "%s %zu: no datastream for '%s' (the node does not create them: option "
                    "auto_create)",
                    g->unit, line, key_text(g, key, kl));
    } else {
        /* a new stream named after its series, writable by the device that made it */
        cJSON *st = cJSON_CreateObject(), *tags = cJSON_AddObjectToObject(st, "tags");
        cJSON_AddStringToObject(st, "name", key_text(g, key, kl));
        char *m = zt_req_alloc(g->req, ser->measurement.n + 1);
        char *f = zt_req_alloc(g->req, ser->field.n + 1);
        if (!st || !tags || !m || !f) {
            cJSON_Delete(st);
            return ZT_ENOMEM;
        }
        memcpy(m, ser->measurement.p, ser->measurement.n);
        m[ser->measurement.n] = 0;
        memcpy(f, ser->field.p, ser->field.n);
        f[ser->field.n] = 0;
        cJSON_AddStringToObject(st, "measurement", m);
        cJSON_AddStringToObject(st, "field", f);
        for (size_t j = 0; j < ser->ntags; j++) {
            char *tk = zt_req_alloc(g->req, ser->tk[j].n + 1),
                 *tv = zt_req_alloc(g->req, ser->tv[j].n + 1);
            if (!tk || !tv) {
                cJSON_Delete(st);
                return ZT_ENOMEM;
            }
            memcpy(tk, ser->tk[j].p, ser->tk[j].n);
            tk[ser->tk[j].n] = 0;
            memcpy(tv, ser->tv[j].p, ser->tv[j].n);
            tv[ser->tv[j].n] = 0;
            cJSON_AddStringToObject(tags, tk, tv);
        }
        cJSON_AddNumberToObject(st, "retention_days", 0);
        cJSON *devs = cJSON_AddArrayToObject(st, "devices");
        if (g->writer) cJSON_AddItemToArray(devs, cJSON_CreateString(g->writer));
        cJSON_AddBoolToObject(st, "auto_created", 1);
        const char *why = NULL;
        rc = sn_stream_create(S, g->t, st, id, &why);
        cJSON_Delete(st);
        if (rc == ZT_OK) sn_rules_forget(S, *id);
        if (rc == ZT_EINVAL || rc == ZT_EEXIST)
            return fail(g, 422, "unprocessable entity", line, rc,
                        "%s %zu: cannot create a datastream for '%s': %s", g->unit, line,
                        key_text(g, key, kl), why);
        if (rc != ZT_OK) return rc;
    }
    unsigned char ik[4];
    sn_be32(ik, *id);
    rc = zt_get(g->t, S->acl, ik, 4, &v, &vl);
    if (rc == ZT_ENOTFOUND || (rc == ZT_OK && (vl < 4 || (vl - 4) % 26)))
        return fail(g, 422, "unprocessable entity", line, ZT_ENOTFOUND, "%s %zu: no datastream %u",
                    g->unit, line, *id);
    if (rc != ZT_OK) return rc;
    uint32_t ret = sn_rd32(v);
    if (g->writer) {
        bool ok = false;
        for (size_t j = 4; j < vl && !ok; j += 26)
            ok = memcmp((const char *)v + j, g->writer, 26) == 0;
        if (!ok)
            return fail(g, 403, "forbidden", line, ZT_EPERM,
                        "%s %zu: this device may not write datastream %u%s%s%s", g->unit, line, *id,
                        byid ? "" : " ('", byid ? "" : key_text(g, key, kl), byid ? "" : "')");
    }
    /* The device spoke, now by the node's clock: the offline rules judge silence by this,
     * not by the points' own times (a clock set ahead would keep a station "speaking"
     * until its date). Once a batch per stream, on the first point (a cache miss). */
    unsigned char at[8];
    sn_be64(at, (uint64_t)g->now_ns);
    if ((rc = zt_put(g->t, S->arrived, ik, 4, at, 8)) != ZT_OK) return rc;
    if (g->ntouched < TOUCHED_MAX) {
        bool seen = false;
        for (size_t j = 0; j < g->ntouched && !seen; j++) seen = g->touched[j] == *id;
        if (!seen) {
            g->touched_ret[g->ntouched] = ret;
            g->touched[g->ntouched++] = *id;
        }
    }
    remember(g, h, key, kl, *id);
    return ZT_OK;
}

/* Whether a name holds a byte that separates the parts of series keys (0x1D to 0x1F): a
 * measurement "a<1F>b<1E>c" would otherwise name the series of "a" with the tag b=c. */
static bool has_sep(lp_str s)
{
    for (size_t i = 0; i < s.n; i++)
        if ((unsigned char)s.p[i] >= 0x1d && (unsigned char)s.p[i] <= 0x1f) return true;
    return false;
}

static bool series_has_sep(const sn_series *s)
{
    if (has_sep(s->measurement) || has_sep(s->field)) return true;
    for (size_t i = 0; i < s->ntags; i++)
        if (has_sep(s->tk[i]) || has_sep(s->tv[i])) return true;
    return false;
}

#define SEP_WHY "names hold no bytes 0x1D to 0x1F (they separate the parts of series keys)"

/* A point dated later than the node's clock allows: a device whose clock is ahead. */
static int too_far_ahead(sn_ingest *g, size_t line, int64_t t)
{
    char ts[40], now[40];
    sn_time_format(t, ts);
    sn_time_format(g->now_ns, now);
    return fail(g, 400, "invalid", line, ZT_EINVAL,
                "%s %zu: time %s is more than %lld s ahead of the node's clock (%s; option "
                "future_margin): is the device's clock right?",
                g->unit, line, ts, (long long)(g->S->future_ns / 1000000000), now);
}

static int write_obs(sn_ingest *g, uint32_t id, int64_t t, const sn_val *v)
{
    unsigned char k[SN_OBS_KEY];
    sn_obs_key(id, t, k);
    size_t vl = sn_val_encode(v, g->vbuf);
    int rc = zt_put(g->t, g->S->obs, k, SN_OBS_KEY, g->vbuf, vl);
    if (rc != ZT_OK) return rc;
    g->count++;
    if (sn_rules_any(g->S)) return sn_rules_observe(g->S, g->req, id, t, v);
    return ZT_OK;
}

static int need_txn(sn_ingest *g)
{
    if (!g->t && !(g->t = zt_req_txn(g->req))) return ZT_EBUSY;
    return ZT_OK;
}

int sn_ingest_lp(sn_ingest *g, const char *body, size_t len, int64_t mult)
{
    g->unit = "line";
    int rc = need_txn(g);
    if (rc != ZT_OK) return rc;
    char *scratch = zt_req_alloc(g->req, len + 1);
    lp_parser *ps = zt_req_alloc(g->req, sizeof *ps);
    lp_point *pt = zt_req_alloc(g->req, sizeof *pt);
    sn_series *ser = zt_req_alloc(g->req, sizeof *ser);
    if (!scratch || !ps || !pt || !ser) return ZT_ENOMEM;
    lp_init(ps, body, len, mult, scratch, len + 1);
    char key[SN_KEY_MAX];
    for (;;) {
        int r = lp_next(ps, pt);
        if (r == 0) break;
        if (r < 0)
            return fail(g, 400, "invalid", ps->err_line, ZT_EINVAL,
                        "failed to parse line protocol: error parsing line %zu (1-based): unable "
                        "to parse '%.*s': %s",
                        ps->err_line, (int)ps->err_text_len, ps->err_text, ps->err);
        sn_series_from_point(g->S, pt, ser);
        ser->field = (lp_str){"", 0};
        if (series_has_sep(ser))
            return fail(g, 400, "invalid", pt->line, ZT_EINVAL, "line %zu: " SEP_WHY, pt->line);
        size_t pl = sn_series_key(ser, key);
        int64_t t = pt->has_time ? pt->time_ns : g->now_ns;
        if (t > g->latest_ns) return too_far_ahead(g, pt->line, t);
        for (size_t i = 0; i < pt->nfields; i++) {
            const lp_field *f = &pt->field[i];
            if (!pl || pl + f->key.n > SN_KEY_MAX)
                return fail(g, 400, "invalid", pt->line, ZT_EINVAL,
                            "line %zu: the series (measurement, tags, field) is over %d bytes",
                            pt->line, SN_KEY_MAX);
            if (has_sep(f->key))
                return fail(g, 400, "invalid", pt->line, ZT_EINVAL, "line %zu: " SEP_WHY, pt->line);
            memcpy(key + pl, f->key.p, f->key.n);
            ser->field = f->key;
            uint32_t id;
            if ((rc = resolve(g, key, pl + f->key.n, false, ser, pt->line, &id)) != ZT_OK)
                return rc;
            sn_val v = {.type = f->type};
            switch (f->type) {
            case LP_FLOAT:
                v.f = f->v.f;
                break;
            case LP_INT:
                v.i = f->v.i;
                break;
            case LP_UINT:
                v.u = f->v.u;
                break;
            case LP_BOOL:
                v.b = f->v.b;
                break;
            case LP_STRING:
                if (f->v.s.n > SN_MAX_STRING)
                    return fail(g, 400, "invalid", pt->line, ZT_EINVAL,
                                "line %zu: a string value is over %d bytes", pt->line,
                                SN_MAX_STRING);
                v.s = f->v.s.p;
                v.sn = f->v.s.n;
                break;
            }
            if ((rc = write_obs(g, id, t, &v)) != ZT_OK) return rc;
        }
    }
    return ZT_OK;
}

/* ns since 1970 hold ±2^63: milliseconds up to this (the years 1677 to 2262) */
#define MS_MAX 9223372036853.0

/* The time of a JSON observation: "time" (RFC 3339, or a number of ms), or "time_ns" (an
 * integer, or its text); none: now. 0, -1 (not a time), or -2 (a number of ms out of
 * range: most likely microseconds or nanoseconds, which would overflow). */
static int json_time(sn_ingest *g, const cJSON *o, int64_t *t)
{
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "time"),
                *tn = cJSON_GetObjectItemCaseSensitive(o, "time_ns");
    if (cJSON_IsString(tm)) return sn_time_parse(tm->valuestring, t);
    if (cJSON_IsNumber(tm)) {
        double ms = tm->valuedouble, whole = trunc(ms);
        if (!(fabs(ms) <= MS_MAX)) return -2;
        /* the fraction is kept (to the ns): a device's 0.5 ms is not the 0 ms before it */
        *t = (int64_t)whole * 1000000 + (int64_t)llround((ms - whole) * 1e6);
        return 0;
    }
    if (cJSON_IsString(tn)) return sn_time_arg(tn->valuestring, t);
    if (cJSON_IsNumber(tn)) {
        /* -2^63 ≤ ns < 2^63, both exact as doubles; a fraction of a ns is no time */
        double ns = tn->valuedouble;
        if (!(ns >= -9223372036854775808.0 && ns < 9223372036854775808.0) || ns != floor(ns))
            return -1;
        *t = (int64_t)ns;
        return 0;
    }
    if (tm || tn) return -1;
    *t = g->now_ns;
    return 0;
}

int sn_ingest_json(sn_ingest *g, const cJSON *j)
{
    g->unit = "observation";
    int rc = need_txn(g);
    if (rc != ZT_OK) return rc;
    const cJSON *arr = cJSON_IsArray(j) ? j : cJSON_GetObjectItemCaseSensitive(j, "observations");
    if (!cJSON_IsArray(arr))
        return fail(g, 400, "invalid", 0, ZT_EINVAL,
                    "send {\"observations\": [{\"stream\": id, \"time\": \"RFC 3339\", "
                    "\"value\": v}, ...]}");
    size_t n = 0;
    const cJSON *o;
    char key[SN_KEY_MAX];
    lp_point *pt = NULL; /* scratch for series named by measurement, tags and field */
    sn_series *ser = NULL;
    cJSON_ArrayForEach(o, arr)
    {
        n++;
        if (!cJSON_IsObject(o))
            return fail(g, 400, "invalid", n, ZT_EINVAL, "observation %zu: not an object", n);
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(o, "stream"),
                    *val = cJSON_GetObjectItemCaseSensitive(o, "value");
        uint32_t id;
        if (cJSON_IsNumber(sid)) {
            /* 2.7 names no stream (it is not stream 2) */
            if (sid->valuedouble < 1 || sid->valuedouble > UINT32_MAX ||
                sid->valuedouble != floor(sid->valuedouble))
                return fail(g, 422, "unprocessable entity", n, ZT_EINVAL,
                            "observation %zu: no datastream %g", n, sid->valuedouble);
            unsigned char ik[4];
            sn_be32(ik, (uint32_t)sid->valuedouble);
            memcpy(key, ik, 4);
            rc = resolve(g, key, 4, true, NULL, n, &id);
        } else {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "measurement"),
                        *f = cJSON_GetObjectItemCaseSensitive(o, "field"),
                        *tags = cJSON_GetObjectItemCaseSensitive(o, "tags");
            if (!cJSON_IsString(m) || !cJSON_IsString(f) || (tags && !cJSON_IsObject(tags)))
                return fail(g, 400, "invalid", n, ZT_EINVAL,
                            "observation %zu: name its datastream: \"stream\": id, or "
                            "\"measurement\", \"tags\" and \"field\"",
                            n);
            if (!pt && !(pt = zt_req_alloc(g->req, sizeof *pt))) return ZT_ENOMEM;
            if (!ser && !(ser = zt_req_alloc(g->req, sizeof *ser))) return ZT_ENOMEM;
            pt->measurement = (lp_str){m->valuestring, strlen(m->valuestring)};
            pt->ntags = 0;
            const cJSON *tg;
            cJSON_ArrayForEach(tg, tags)
            {
                if (!cJSON_IsString(tg) || pt->ntags == LP_MAX_TAGS)
                    return fail(g, 400, "invalid", n, ZT_EINVAL,
                                "observation %zu: tags are names and text values", n);
                pt->tag_key[pt->ntags] = (lp_str){tg->string, strlen(tg->string)};
                pt->tag_val[pt->ntags++] = (lp_str){tg->valuestring, strlen(tg->valuestring)};
            }
            int dup = lp_dup_tag(pt);
            if (dup >= 0)
                return fail(g, 400, "invalid", n, ZT_EINVAL,
                            "observation %zu: duplicate tag key '%s' (a series has one value "
                            "per tag)",
                            n, pt->tag_key[dup].p);
            sn_series_from_point(g->S, pt, ser);
            ser->field = (lp_str){f->valuestring, strlen(f->valuestring)};
            if (series_has_sep(ser))
                return fail(g, 400, "invalid", n, ZT_EINVAL, "observation %zu: " SEP_WHY, n);
            size_t kl = sn_series_key(ser, key);
            if (!kl)
                return fail(g, 400, "invalid", n, ZT_EINVAL,
                            "observation %zu: the series is over %d bytes", n, SN_KEY_MAX);
            rc = resolve(g, key, kl, false, ser, n, &id);
        }
        if (rc != ZT_OK) return rc;
        int64_t t;
        int tr = json_time(g, o, &t);
        if (tr == -2)
            return fail(g, 400, "invalid", n, ZT_EINVAL,
                        "observation %zu: time: %.0f is not a number of milliseconds since 1970 "
                        "(those are within ±%.0f, the years 1677 to 2262): microseconds or "
                        "nanoseconds go in time_ns, as an integer of ns",
                        n, cJSON_GetObjectItemCaseSensitive(o, "time")->valuedouble, MS_MAX);
        if (tr != 0)
            return fail(g, 400, "invalid", n, ZT_EINVAL,
                        "observation %zu: time: RFC 3339 text or ms since 1970 (or time_ns: an "
                        "integer of ns)",
                        n);
        if (t > g->latest_ns) return too_far_ahead(g, n, t);
        sn_val v = {0};
        if (cJSON_IsBool(val)) {
            v.type = LP_BOOL;
            v.b = cJSON_IsTrue(val);
        } else if (cJSON_IsNumber(val)) {
            v.type = LP_FLOAT;
            v.f = val->valuedouble;
        } else if (cJSON_IsString(val) && strlen(val->valuestring) <= SN_MAX_STRING) {
            v.type = LP_STRING;
            v.s = val->valuestring;
            v.sn = strlen(val->valuestring);
        } else {
            return fail(g, 400, "invalid", n, ZT_EINVAL,
                        "observation %zu: value: a number, a boolean or a text (at most %d "
                        "bytes)",
                        n, SN_MAX_STRING);
        }
        if ((rc = write_obs(g, id, t, &v)) != ZT_OK) return rc;
    }
    return ZT_OK;
}

int sn_obs_drop(sn *S, zt_txn *t, uint32_t id, int64_t last, size_t max, size_t *n, bool *more)
{
    zt_cursor *c;
    int rc = zt_cursor_open(t, S->obs, &c);
    if (rc != ZT_OK) return rc;
    unsigned char k[SN_OBS_KEY];
    sn_obs_key(id, INT64_MIN, k);
    zt_kv kv;
    rc = zt_cursor_seek(c, ZT_GE, k, SN_OBS_KEY, &kv);
    while (rc == ZT_OK && kv.klen == SN_OBS_KEY) {
        uint32_t kid;
        int64_t kt;
        sn_obs_key_read(kv.key, &kid, &kt);
        if (kid != id || kt > last) break;
        if (*n == max) {
            *more = true;
            break;
        }
        if ((rc = zt_cursor_del(c)) != ZT_OK) break;
        (*n)++;
        rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* The newest time that a retention of days drops. */
static int64_t expired_of(int64_t now_ms, uint32_t days)
{
    return (now_ms - (int64_t)days * 86400000) * 1000000 - 1;
}

int sn_retention_pass(sn *S, zt_txn *t, int64_t now_ms, size_t max, size_t *deleted, bool *more)
{
    *deleted = 0;
    *more = false;
    zt_cursor *c;
    int rc = zt_cursor_open(t, S->acl, &c);
    if (rc != ZT_OK) return rc;
    /* From the stream where the last pass stopped, round to the one before it: a pass that
     * stops short does not leave the later streams waiting behind the first ones. */
    uint32_t start = S->ret_next;
    unsigned char k[4];
    sn_be32(k, start);
    bool wrapped = false;
    zt_kv kv;
    for (rc = zt_cursor_seek(c, ZT_GE, k, 4, &kv);; rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        if (rc == ZT_ENOTFOUND && !wrapped) {
            wrapped = true;
            rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv);
        }
        if (rc != ZT_OK) break;
        if (kv.klen != 4 || kv.vlen < 4) continue;
        uint32_t id = sn_rd32(kv.key), days = sn_rd32(kv.val);
        if (wrapped && id >= start) break;
        if (days == 0) continue;
        rc = sn_obs_drop(S, t, id, expired_of(now_ms, days), max, deleted, more);
        if (rc != ZT_OK) break;
        if (*more) {
            S->ret_next = id;
            break;
        }
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

int sn_ingest_end(sn_ingest *g)
{
    if (!g->t) return ZT_OK;
    /* Retention rides on ingestion: each stream written is trimmed by a bounded number of
     * points, at most every retention_every, so the work is spread thin over batches. */
    int64_t now = zt_now_ms();
    for (size_t i = 0; i < g->ntouched; i++) {
        uint32_t id = g->touched[i];
        if (!g->touched_ret[i]) continue;
        int64_t *last = &g->S->ret_checked[id % SN_RET_SLOTS];
        if (now - *last < g->S->retention_every_ms) continue;
        *last = now;
        size_t n = 0;
        bool more = false;
        int rc = sn_obs_drop(g->S, g->t, id, expired_of(now, g->touched_ret[i]), 512, &n, &more);
        if (rc != ZT_OK) return rc;
        if (more) *last = 0; /* still behind: trim again at the next batch */
    }
    return ZT_OK;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

enum api { API_V2, API_V1, API_JSON };

static int influx_error(zt_req *req, enum api api, int status, const char *code, const char *msg,
                        size_t line)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return ZT_ENOMEM;
    if (api == API_V1) {
        cJSON_AddStringToObject(o, "error", msg);
    } else {
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", msg);
    }
    if (line) cJSON_AddNumberToObject(o, "line", (double)line);
    if (status == 401 || status == 403) zt_res_header(req, "X-Influxdb-Error", msg);
    return sn_send(req, status, o);
}

/* Every storage error of a batch is the node's; a batch refused for its content answers
 * in the shape of the API it came through. */
static int finish(zt_req *req, sn_ingest *g, enum api api, int rc)
{
    if (rc == ZT_OK) rc = sn_ingest_end(g);
    if (rc == ZT_OK) {
        if (api != API_JSON) return zt_respond(req, 204, NULL, NULL, 0);
        char *b = zt_req_printf(req, "{\"written\":%zu}", g->count);
        return b ? zt_respond(req, 200, "application/json", b, strlen(b)) : ZT_ENOMEM;
    }
    if (!g->status) return rc; /* the core answers 500/503/507 and drops the batch */
    if (api == API_JSON) {
        const char *slug = g->status == 403   ? "forbidden"
                           : g->status == 422 ? "unknown-datastream"
                                              : "invalid-observation";
        return zt_problem(req, g->status, slug, NULL, "%s", g->msg);
    }
    return influx_error(req, api, g->status, g->code, g->msg, g->line);
}

static bool may_write(zt_req *req)
{
    const zt_caller *c = zt_req_caller(req);
    return c && (zt_caller_has_role(c, SN_ADMIN_ROLE) || zt_caller_has_role(c, SN_DEVICE_ROLE));
}

static int write_lp(zt_req *req, sn *S, enum api api)
{
    if (!may_write(req))
        return influx_error(req, api, 403, "forbidden",
                            "writing needs the role " SN_DEVICE_ROLE " or " SN_ADMIN_ROLE, 0);
    const char *where = zt_req_query(req, api == API_V2 ? "bucket" : "db");
    if (!where || !*where)
        return influx_error(req, api, 400, "invalid",
                            api == API_V2 ? "bucket not specified" : "database is required", 0);
    int64_t mult = lp_precision(zt_req_query(req, "precision"));
    if (mult < 0)
        return influx_error(req, api, 400, "invalid",
                            zt_req_printf(req, "invalid precision '%s': " LP_PRECISIONS,
                                          zt_req_query(req, "precision")),
                            0);
    size_t len;
    const char *body = zt_req_body(req, &len);
    char *inflated = NULL;
    const char *enc = zt_req_header(req, "Content-Encoding");
    if (enc && strcasecmp(enc, "gzip") == 0) {
        int r = gz_inflate(body, len, S->max_inflated, &inflated, &len);
        if (r == -3) return ZT_ENOMEM;
        if (r == -2)
            return influx_error(
                req, api, 413, "request too large",
                zt_req_printf(req, "the body inflates to more than %zu bytes", S->max_inflated), 0);
        if (r != 0) return influx_error(req, api, 400, "invalid", "the body is not valid gzip", 0);
        body = inflated;
    } else if (enc && strcasecmp(enc, "identity") != 0) {
        return influx_error(req, api, 415, "invalid",
                            zt_req_printf(req, "Content-Encoding %s: only gzip", enc), 0);
    }
    sn_ingest *g = sn_ingest_begin(S, req);
    int rc = g ? sn_ingest_lp(g, body, len, mult) : ZT_ENOMEM;
    rc = g ? finish(req, g, api, rc) : rc;
    free(inflated);
    return rc;
}

static int h_v2_write(zt_req *req, void *ud)
{
    return write_lp(req, ud, API_V2);
}

static int h_v1_write(zt_req *req, void *ud)
{
    return write_lp(req, ud, API_V1);
}

static int h_json_write(zt_req *req, void *ud)
{
    if (!may_write(req))
        return zt_problem(req, 403, "forbidden", NULL,
                          "writing needs the role " SN_DEVICE_ROLE " or " SN_ADMIN_ROLE);
    cJSON *j;
    if (zt_req_json(req, &j) != ZT_OK) return zt_req_json_problem(req);
    sn_ingest *g = sn_ingest_begin(ud, req);
    if (!g) return ZT_ENOMEM;
    return finish(req, g, API_JSON, sn_ingest_json(g, j));
}

static int h_retention(zt_req *req, void *ud)
{
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    int64_t max;
    if (sn_query_int(req, "max", 10000, 1, 1000000, &max)) return ZT_OK;
    size_t n;
    bool more;
    int rc = sn_retention_pass(ud, t, zt_now_ms(), (size_t)max, &n, &more);
    if (rc != ZT_OK) return rc;
    char *b = zt_req_printf(req, "{\"deleted\":%zu,\"more\":%s}", n, more ? "true" : "false");
    return b ? zt_respond(req, 200, "application/json", b, strlen(b)) : ZT_ENOMEM;
}

int sn_ingest_routes(sn *S)
{
    const zt_route routes[] = {
        {"POST", "/api/v2/write", h_v2_write, S, ZT_ROLE_USER, S->max_body,
         "InfluxDB v2 write: line protocol (Authorization: Token <API key>)"},
        {"POST", "/write", h_v1_write, S, ZT_ROLE_USER, S->max_body,
         "InfluxDB v1 write: line protocol"},
        {"POST", "/sensor/observations", h_json_write, S, ZT_ROLE_USER, S->max_body,
         "A JSON batch of observations"},
        {"POST", "/sensor/retention", h_retention, S, SN_ADMIN_ROLE, 0,
         "Drop observations older than their stream's retention now (up to ?max)"},
    };
    return sn_routes_add(S, routes, sizeof routes / sizeof routes[0]);
}
