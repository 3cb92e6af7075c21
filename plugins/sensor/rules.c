/* rules.c: alert rules written in Lua, evaluated on ingest and, for silence, on a timer. */
#include "sensor.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_THRESHOLD = 1, K_RATE, K_OFFLINE, K_CHECK };
static const char *const kind_names[] = {"", "threshold", "rate", "offline", "check"};

typedef struct rule {
    char name[64];
    char level[32];
    int kind;
    uint32_t stream;     /* this stream, or */
    char property[201];  /* every stream of this observed property */
    int below;           /* threshold: alert below (else above) */
    double limit, clear; /* threshold, rate: open past limit, close back past clear */
    double window, per;  /* rate: seconds looked back; the unit of the rate (s) */
    double intervals;    /* offline: expected intervals without data */
    int fn;              /* check: registry reference of the function */
} rule;

/* The rules that apply to a stream, remembered per stream id: as many as there are (a
 * county may put dozens of thresholds on one property). */
typedef struct match {
    uint32_t id;
    int known;
    size_t n, cap;
    uint16_t *idx;
} match;

#define MATCH_SLOTS 4096

struct sn_rules {
    lua_State *L;
    rule *r;
    size_t n, cap;
    match *m; /* MATCH_SLOTS, by id */
    bool any_offline;
    /* the ticker thread: offline checks and retention, through zt_post */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, running, tick_posted;
    bool ret_posted;  /* a retention pass is queued (loop thread only) */
    unsigned ret_run; /* passes since the last tick (loop thread only) */
    int64_t every_ms;
};

/* ---- reading the rules file (in a protected call) ---------------------------------- */

static double num_field(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static void str_field(lua_State *L, int t, const char *k, char *out, size_t len, const char *def)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
    if (!s) luaL_error(L, "%s: missing", k);
    if (strlen(s) >= len) luaL_error(L, "%s: too long", k);
    snprintf(out, len, "%s", s);
    lua_pop(L, 1);
}

static int read_rules(lua_State *L)
{
    sn_rules *R = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n > 1000) return luaL_error(L, "at most 1000 rules");
    R->r = calloc((size_t)n + 1, sizeof *R->r);
    if (!R->r) return luaL_error(L, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        int t = lua_gettop(L);
        if (!lua_istable(L, t)) return luaL_error(L, "rule %d: a table", (int)i);
        rule *r = &R->r[R->n];
        str_field(L, t, "name", r->name, sizeof r->name, NULL);
        for (size_t j = 0; j < R->n; j++)
            if (!strcmp(R->r[j].name, r->name))
                return luaL_error(L, "rule %s: the name is taken", r->name);
        str_field(L, t, "level", r->level, sizeof r->level, "warning");
        double sid = num_field(L, t, "stream", 0);
        if (sid < 0 || sid > UINT32_MAX || sid != floor(sid))
            return luaL_error(L, "rule %s: stream: a datastream id", r->name);
        r->stream = (uint32_t)sid;
        str_field(L, t, "property", r->property, sizeof r->property, "");
        if (!r->stream == !r->property[0])
            return luaL_error(L,
                              "rule %s: either stream = <id> or property = <observed "
                              "property>",
                              r->name);
        static const char *const kinds[] = {"threshold", "rate", "offline", "check"};
        for (int k = 0; k < 4; k++) {
            lua_getfield(L, t, kinds[k]);
            if (!lua_isnil(L, -1)) {
                if (r->kind) return luaL_error(L, "rule %s: one kind per rule", r->name);
                r->kind = k + 1;
            } else {
                lua_pop(L, 1);
            }
        }
        if (!r->kind) return luaL_error(L, "rule %s: threshold, rate, offline or check", r->name);
        int s = lua_gettop(L); /* the kind's value */
        if (r->kind == K_CHECK) {
            luaL_checktype(L, s, LUA_TFUNCTION);
            lua_pushvalue(L, s);
            r->fn = luaL_ref(L, LUA_REGISTRYINDEX);
        } else {
            luaL_checktype(L, s, LUA_TTABLE);
        }
        if (r->kind == K_THRESHOLD) {
            lua_getfield(L, s, "below");
            r->below = !lua_isnil(L, -1);
            lua_pop(L, 1);
            r->limit = num_field(L, s, r->below ? "below" : "above", NAN);
            if (isnan(r->limit)) return luaL_error(L, "rule %s: above = or below =", r->name);
            r->clear = num_field(L, s, "clear", r->limit);
            if (r->below ? r->clear < r->limit : r->clear > r->limit)
                return luaL_error(L, "rule %s: clear is on the safe side of the limit", r->name);
        } else if (r->kind == K_RATE) {
            r->limit = num_field(L, s, "above", NAN);
            r->clear = num_field(L, s, "clear", r->limit);
            r->window = num_field(L, s, "window", 3600);
            r->per = num_field(L, s, "per", 3600);
            if (isnan(r->limit) || r->clear > r->limit || r->window <= 0 || r->per <= 0)
                return luaL_error(L,
                                  "rule %s: rate = {above =, clear <= above, window = s, "
                                  "per = s}",
                                  r->name);
        } else if (r->kind == K_OFFLINE) {
            r->intervals = num_field(L, s, "intervals", 3);
            if (r->intervals <= 0) return luaL_error(L, "rule %s: intervals > 0", r->name);
            R->any_offline = true;
        }
        lua_settop(L, t - 1);
        R->n++;
    }
    return 0;
}

/* ---- alerts -------------------------------------------------------------------------- */

static void state_key(const rule *r, uint32_t id, char *k, size_t *kl)
{
    size_t n = strlen(r->name);
    memcpy(k, r->name, n + 1);
    sn_be32((unsigned char *)k + n + 1, id);
    *kl = n + 5;
}

/* The id of the rule's open alert for the stream into open[27] ("" if none). */
static int open_alert(sn *S, zt_txn *t, const rule *r, uint32_t id, char open[27])
{
    char k[80];
    size_t kl;
    const void *v;
    size_t vl;
    state_key(r, id, k, &kl);
    open[0] = 0;
    int rc = zt_get(t, S->astate, k, kl, &v, &vl);
    if (rc == ZT_ENOTFOUND) return ZT_OK;
    if (rc != ZT_OK) return rc;
    if (vl != 26) return ZT_EIO;
    memcpy(open, v, 26);
    open[26] = 0;
    return ZT_OK;
}

static cJSON *val_json(const sn_val *v)
{
    switch (v->type) {
    case LP_FLOAT:
        return cJSON_CreateNumber(v->f);
    case LP_INT:
        return cJSON_CreateNumber((double)v->i);
    case LP_UINT:
        return cJSON_CreateNumber((double)v->u);
    case LP_BOOL:
        return cJSON_CreateBool(v->b);
    default: {
        char *s = malloc(v->sn + 1);
        if (!s) return NULL;
        memcpy(s, v->s, v->sn);
        s[v->sn] = 0;
        cJSON *j = cJSON_CreateString(s);
        free(s);
        return j;
    }
    }
}

static int emit(zt_req *req, const cJSON *a, const char *state)
{
    cJSON *e = cJSON_Duplicate(a, 1);
    if (!e) return ZT_ENOMEM;
    cJSON_AddStringToObject(e, "state", state);
    int rc = zt_emit(req, "sensor.alert", e);
    cJSON_Delete(e);
    return rc;
}

/* Open an alert of rule r for stream id at time t (ns); emits sensor.alert with the thing's
 * location. */
static int raise_alert(sn *S, zt_req *req, const rule *r, const char *level, uint32_t id, int64_t t,
                       const cJSON *value, double measure)
{
    zt_txn *tx = zt_req_txn(req);
    if (!tx) return ZT_EBUSY;
    cJSON *st = NULL;
    int rc = sn_stream_get(S, tx, id, &st);
    if (rc != ZT_OK) return rc;
    char aid[27], ts[40];
    zt_id(aid);
    sn_time_format(t, ts);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "id", aid);
    cJSON_AddStringToObject(a, "rule", r->name);
    cJSON_AddStringToObject(a, "kind", kind_names[r->kind]);
    cJSON_AddStringToObject(a, "level", level);
    cJSON_AddNumberToObject(a, "stream", id);
    const char *fields[] = {"name", "observed_property", "unit", "thing"};
    for (int i = 0; i < 4; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(st, fields[i]);
        if (cJSON_IsString(f))
            cJSON_AddStringToObject(a, i == 0 ? "stream_name" : fields[i], f->valuestring);
    }
    const cJSON *thing = cJSON_GetObjectItemCaseSensitive(st, "thing");
    int trc;
    cJSON *th = cJSON_IsString(thing) ? sn_get_json(tx, S->things, thing->valuestring,
                                                    strlen(thing->valuestring), &trc)
                                      : NULL;
    if (th) { /* no thing (or none readable): no location */
        cJSON *loc = cJSON_DetachItemFromObjectCaseSensitive(th, "location");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(th, "name");
        if (cJSON_IsString(nm)) cJSON_AddStringToObject(a, "thing_name", nm->valuestring);
        cJSON_AddItemToObject(a, "location", loc ? loc : cJSON_CreateNull());
        cJSON_Delete(th);
    }
    cJSON_Delete(st);
    cJSON_AddStringToObject(a, "start", ts);
    cJSON_AddNullToObject(a, "end");
    cJSON_AddItemToObject(a, "value", value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
    if (!isnan(measure))
        cJSON_AddNumberToObject(a, r->kind == K_RATE ? "rate" : "measure", measure);
    cJSON_AddBoolToObject(a, "acked", 0);
    char k[80];
    size_t kl;
    state_key(r, id, k, &kl);
    if ((rc = sn_put_json(tx, S->alerts, aid, 26, a)) == ZT_OK &&
        (rc = zt_put(tx, S->astate, k, kl, aid, 26)) == ZT_OK)
        rc = emit(req, a, "open");
    cJSON_Delete(a);
    return rc;
}

/* Close alert aid, whose state is astate key k, at time t; reason: why, when it is not the
 * data (NULL: the data). */
static int close_state(sn *S, zt_req *req, const void *k, size_t kl, const char *aid, int64_t t,
                       const char *reason)
{
    zt_txn *tx = zt_req_txn(req);
    if (!tx) return ZT_EBUSY;
    int rc;
    cJSON *a = sn_get_json(tx, S->alerts, aid, 26, &rc);
    if (!a) return rc;
    char ts[40];
    sn_time_format(t, ts);
    cJSON_ReplaceItemInObjectCaseSensitive(a, "end", cJSON_CreateString(ts));
    if (reason) cJSON_AddStringToObject(a, "reason", reason);
    if ((rc = sn_put_json(tx, S->alerts, aid, 26, a)) == ZT_OK &&
        (rc = zt_del(tx, S->astate, k, kl)) == ZT_OK)
        rc = emit(req, a, "closed");
    cJSON_Delete(a);
    return rc;
}

static int close_alert(sn *S, zt_req *req, const rule *r, uint32_t id, const char *aid, int64_t t)
{
    char k[80];
    size_t kl;
    state_key(r, id, k, &kl);
    return close_state(S, req, k, kl, aid, t, NULL);
}

int sn_rules_close_stream(sn *S, zt_req *req, uint32_t id, const char *reason, size_t *n)
{
    zt_txn *tx = zt_req_txn(req);
    if (!tx) return ZT_EBUSY;
    *n = 0;
    /* every open alert of the stream, of whatever rule (also one no longer in the file):
     * the keys first, as closing writes */
    typedef struct {
        char k[80];
        size_t kl;
        char aid[26];
    } open_one;
    open_one *found = NULL;
    size_t cap = 0;
    zt_cursor *c;
    int rc = zt_cursor_open(tx, S->astate, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        if (kv.klen < 5 || kv.klen > sizeof found->k || kv.vlen != 26 ||
            sn_rd32((const unsigned char *)kv.key + kv.klen - 4) != id)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            open_one *f = realloc(found, cap * sizeof *f);
            if (!f) {
                rc = ZT_ENOMEM;
                break;
            }
            found = f;
        }
        memcpy(found[*n].k, kv.key, kv.klen);
        found[*n].kl = kv.klen;
        memcpy(found[*n].aid, kv.val, 26);
        (*n)++;
    }
    zt_cursor_close(c);
    if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    int64_t now = zt_now_ms() * 1000000;
    for (size_t i = 0; i < *n && rc == ZT_OK; i++)
        rc = close_state(S, req, found[i].k, found[i].kl, found[i].aid, now, reason);
    free(found);
    return rc;
}

/* ---- evaluation ------------------------------------------------------------------------ */

/* The rules that apply to stream id into *out; ZT_ENOMEM (nothing remembered) if the
 * list cannot grow. */
static int rules_for(sn *S, zt_txn *t, uint32_t id, const match **out)
{
    sn_rules *R = S->rules;
    match *m = &R->m[id % MATCH_SLOTS];
    *out = m;
    if (m->known && m->id == id) return ZT_OK;
    m->id = id;
    m->known = 0;
    m->n = 0;
    cJSON *st = NULL;
    const char *prop = NULL;
    if (sn_stream_get(S, t, id, &st) == ZT_OK) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(st, "observed_property");
        prop = cJSON_IsString(p) ? p->valuestring : NULL;
    }
    int rc = ZT_OK;
    for (size_t i = 0; i < R->n && rc == ZT_OK; i++) {
        if (R->r[i].stream != id &&
            !(prop && R->r[i].property[0] && !strcmp(prop, R->r[i].property)))
            continue;
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 4;
            uint16_t *idx = realloc(m->idx, cap * sizeof *idx);
            if (!idx) {
                rc = ZT_ENOMEM;
                break;
            }
            m->idx = idx;
            m->cap = cap;
        }
        m->idx[m->n++] = (uint16_t)i;
    }
    cJSON_Delete(st);
    m->known = rc == ZT_OK;
    return rc;
}

void sn_rules_forget(sn *S, uint32_t id)
{
    if (!S->rules) return;
    match *m = &S->rules->m[id % MATCH_SLOTS];
    if (m->id == id) m->known = 0;
}

/* The rate of change per r->per seconds from the oldest observation in the window before
 * t to (t, d). NAN when there is none. */
static int rate_of(sn *S, zt_txn *tx, const rule *r, uint32_t id, int64_t t, double d, double *rate)
{
    *rate = NAN;
    zt_cursor *c;
    int rc = zt_cursor_open(tx, S->obs, &c);
    if (rc != ZT_OK) return rc;
    unsigned char k[SN_OBS_KEY];
    sn_obs_key(id, t - (int64_t)(r->window * 1e9), k);
    zt_kv kv;
    rc = zt_cursor_seek(c, ZT_GE, k, SN_OBS_KEY, &kv);
    if (rc == ZT_OK && kv.klen == SN_OBS_KEY) {
        uint32_t kid;
        int64_t t0;
        sn_val v0;
        double d0;
        sn_obs_key_read(kv.key, &kid, &t0);
        if (kid == id && t0 < t && sn_val_decode(kv.val, kv.vlen, &v0) == 0 &&
            sn_val_number(&v0, &d0))
            *rate = (d - d0) / ((double)(t - t0) / 1e9) * r->per;
    }
    zt_cursor_close(c);
    return rc == ZT_OK || rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static int run_check(sn *S, zt_req *req, const rule *r, uint32_t id, int64_t t, const cJSON *value,
                     char *level, size_t llen)
{
    lua_State *L = S->rules->L;
    char ts[40], err[512];
    sn_time_format(t, ts);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "stream", id);
    cJSON_AddStringToObject(o, "time", ts);
    cJSON_AddItemToObject(o, "value", value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn);
    zt_lua_push_json(L, o);
    cJSON_Delete(o);
    int rc = zt_lua_call(L, req, 1, 1, err, sizeof err);
    if (rc != ZT_OK) {
        zt_req_log(req, ZT_LOG_ERROR, "rule %s: %s", r->name, err);
        return rc; /* a broken rule fails the batch: its data would escape the rule */
    }
    level[0] = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
        snprintf(level, llen, "%s", lua_tostring(L, -1));
    else if (lua_toboolean(L, -1))
        snprintf(level, llen, "%s", r->level);
    lua_pop(L, 1);
    return ZT_OK;
}

int sn_rules_observe(sn *S, zt_req *req, uint32_t id, int64_t t, const sn_val *v)
{
    zt_txn *tx = zt_req_txn(req);
    if (!tx) return ZT_EBUSY;
    const match *m;
    int rc = rules_for(S, tx, id, &m);
    if (rc != ZT_OK) return rc;
    double d = NAN;
    int numeric = sn_val_number(v, &d);
    cJSON *value = NULL; /* v as JSON, made once, when a check or an opening alert needs it */
    for (size_t i = 0; i < m->n && rc == ZT_OK; i++) {
        const rule *r = &S->rules->r[m->idx[i]];
        char open[27];
        if ((rc = open_alert(S, tx, r, id, open)) != ZT_OK) break;
        if (r->kind == K_OFFLINE) { /* data came: the device is back */
            if (open[0]) rc = close_alert(S, req, r, id, open, t);
            continue;
        }
        char level[32];
        double measure = NAN;
        bool bad = false, clear = false;
        if (r->kind == K_CHECK) {
            if (!value) value = val_json(v);
            rc = run_check(S, req, r, id, t, value, level, sizeof level);
            bad = level[0] != 0;
            clear = !bad;
        } else if (numeric) {
            snprintf(level, sizeof level, "%s", r->level);
            measure = d;
            if (r->kind == K_RATE) rc = rate_of(S, tx, r, id, t, d, &measure);
            if (rc == ZT_OK && !isnan(measure)) {
                /* hysteresis: opens past the limit, closes only back past clear */
                bad = r->below ? measure < r->limit : measure > r->limit;
                clear = r->below ? measure >= r->clear : measure <= r->clear;
            }
        }
        if (rc == ZT_OK && bad && !open[0]) {
            if (!value) value = val_json(v);
            rc = raise_alert(S, req, r, level, id, t, value, measure);
        } else if (rc == ZT_OK && clear && open[0]) {
            rc = close_alert(S, req, r, id, open, t);
        }
    }
    cJSON_Delete(value);
    return rc;
}

/* When a point of stream id last arrived at the node (by its clock, in ns), through co (a
 * cursor on obs); ZT_ENOTFOUND if none ever did. A stream written before the node kept
 * arrivals has its newest point's time instead, or now if that is later (a point dated
 * ahead would keep it "speaking" until its date): recorded, so it counts from there. */
static int last_arrival(sn *S, zt_txn *tx, zt_cursor *co, uint32_t id, int64_t now, int64_t *last)
{
    unsigned char k[4], at[8];
    const void *v;
    size_t vl;
    sn_be32(k, id);
    int rc = zt_get(tx, S->arrived, k, 4, &v, &vl);
    if (rc == ZT_OK && vl == 8) {
        *last = (int64_t)sn_rd64(v);
        return ZT_OK;
    }
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    if ((rc = sn_obs_latest(co, id, last, NULL)) != ZT_OK) return rc;
    if (*last > now) *last = now;
    sn_be64(at, (uint64_t)*last);
    return zt_put(tx, S->arrived, k, 4, at, 8);
}

/* Streams silent for longer than their rule allows: an offline alert each. */
static int check_offline(sn *S, zt_req *req)
{
    sn_rules *R = S->rules;
    zt_txn *tx = zt_req_txn(req);
    if (!tx) return ZT_EBUSY;
    int64_t now = zt_now_ms() * 1000000;
    zt_cursor *cs, *co;
    int rc = zt_cursor_open(tx, S->streams, &cs);
    if (rc != ZT_OK) return rc;
    if ((rc = zt_cursor_open(tx, S->obs, &co)) != ZT_OK) {
        zt_cursor_close(cs);
        return rc;
    }
    zt_kv kv;
    /* ids first: raising alerts writes, which would move the cursors' pages */
    uint32_t *ids = NULL;
    double *every = NULL;
    size_t n = 0, cap = 0;
    for (rc = zt_cursor_seek(cs, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(cs, ZT_NEXT, NULL, 0, &kv)) {
        if (kv.klen != 4) continue;
        cJSON *st = cJSON_ParseWithLength(kv.val, kv.vlen);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "expected_interval");
        if (cJSON_IsNumber(e) && e->valuedouble > 0) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint32_t *ni = realloc(ids, cap * sizeof *ids);
                double *ne = ni ? realloc(every, cap * sizeof *every) : NULL;
                if (ni) ids = ni;
                if (ne) every = ne;
                if (!ni || !ne) {
                    cJSON_Delete(st);
                    rc = ZT_ENOMEM;
                    break;
                }
            }
            ids[n] = sn_rd32(kv.key);
            every[n++] = e->valuedouble;
        }
        cJSON_Delete(st);
    }
    zt_cursor_close(cs);
    if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    for (size_t i = 0; i < n && rc == ZT_OK; i++) {
        const match *m;
        if ((rc = rules_for(S, tx, ids[i], &m)) != ZT_OK) break;
        for (size_t j = 0; j < m->n && rc == ZT_OK; j++) {
            const rule *r = &R->r[m->idx[j]];
            if (r->kind != K_OFFLINE) continue;
            char open[27];
            if ((rc = open_alert(S, tx, r, ids[i], open)) != ZT_OK || open[0]) continue;
            int64_t last;
            rc = last_arrival(S, tx, co, ids[i], now, &last);
            if (rc == ZT_ENOTFOUND) { /* never spoke: not offline, not yet installed */
                rc = ZT_OK;
                continue;
            }
            if (rc != ZT_OK) break;
            double silent = (double)(now - last) / 1e9;
            if (silent > r->intervals * every[i])
                rc = raise_alert(S, req, r, r->level, ids[i], now, NULL, silent);
        }
    }
    zt_cursor_close(co);
    free(ids);
    free(every);
    return rc;
}

/* ---- the ticker: offline checks and retention in small batches --------------------------- */

static int retention_more(zt_req *job, void *arg);

/* A retention pass of at most 2000 points; while a pass stops short, the next one is
 * posted at once (a job of its own, its own transaction) rather than at the next tick, up
 * to RET_RUN passes a tick (should their writes never commit, no endless chain). */
#define RET_RUN 100
static int retention(sn *S, zt_req *job)
{
    zt_txn *t = zt_req_txn(job);
    if (!t) return ZT_OK;
    size_t n;
    bool more;
    int rc = sn_retention_pass(S, t, zt_now_ms(), 2000, &n, &more);
    if (rc == ZT_OK && n) zt_audit_note(job, "retention", zt_req_printf(job, "%zu", n));
    if (rc == ZT_OK && more && !S->rules->ret_posted && ++S->rules->ret_run < RET_RUN)
        S->rules->ret_posted = zt_post(S->p, "sensor.retention", retention_more, S) == ZT_OK;
    return rc;
}

static int retention_more(zt_req *job, void *arg)
{
    sn *S = arg;
    S->rules->ret_posted = false;
    if (!job) return ZT_OK;
    int rc = retention(S, job);
    if (rc != ZT_OK) zt_req_log(job, ZT_LOG_ERROR, "sensor retention: %s", zt_strerror(rc));
    return rc;
}

static int tick(zt_req *job, void *arg)
{
    sn *S = arg;
    sn_rules *R = S->rules;
    pthread_mutex_lock(&R->mu);
    R->tick_posted = false;
    pthread_mutex_unlock(&R->mu);
    if (!job) return ZT_OK;
    int rc = R->any_offline ? check_offline(S, job) : ZT_OK;
    if (rc == ZT_OK && !R->ret_posted) { /* else: that one is queued */
        R->ret_run = 0;
        rc = retention(S, job);
    }
    if (rc != ZT_OK) zt_req_log(job, ZT_LOG_ERROR, "sensor tick: %s", zt_strerror(rc));
    return rc;
}

static void *ticker(void *arg)
{
    sn *S = arg;
    sn_rules *R = S->rules;
    pthread_mutex_lock(&R->mu);
    while (!R->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += R->every_ms / 1000;
        ts.tv_nsec += (R->every_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&R->cv, &R->mu, &ts);
        if (R->stop || R->tick_posted) continue; /* one at a time: never a pile-up */
        R->tick_posted = zt_post(S->p, "sensor.tick", tick, S) == ZT_OK;
    }
    pthread_mutex_unlock(&R->mu);
    return NULL;
}

/* ---- HTTP: alerts ---------------------------------------------------------------------------- */

static int h_alerts(zt_req *req, void *ud)
{
    sn *S = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    const char *state = zt_req_query(req, "state"), *before = zt_req_query(req, "before"),
               *ss = zt_req_query(req, "stream");
    int64_t limit;
    if (sn_query_int(req, "limit", 100, 1, 1000, &limit)) return ZT_OK;
    if (state && strcmp(state, "open") && strcmp(state, "closed"))
        return zt_problem(req, 400, "invalid-query", NULL, "state: open or closed, not '%s'",
                          state);
    uint32_t want_stream = 0;
    if (ss && sn_id_arg(ss, &want_stream) != 0)
        return zt_problem(req, 400, "invalid-query", NULL, "stream: a datastream id, not '%s'", ss);
    if (before && strlen(before) != 26)
        return zt_problem(req, 400, "invalid-query", NULL,
                          "before: the id of an alert (the 'next' of a page), not '%s'", before);
    zt_cursor *c;
    int rc = zt_cursor_open(t, S->alerts, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    /* newest first */
    if (before) {
        rc = zt_cursor_seek(c, ZT_GE, before, 26, &kv);
        rc = zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv);
    } else {
        rc = zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv);
    }
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    int64_t n = 0;
    const char *next = NULL;
    for (; rc == ZT_OK; rc = zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv)) {
        cJSON *a = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (!a) continue;
        bool closed = !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(a, "end"));
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(a, "stream");
        if ((state && closed != !strcmp(state, "closed")) ||
            (ss && !(cJSON_IsNumber(sid) && sid->valuedouble == (double)want_stream))) {
            cJSON_Delete(a);
            continue;
        }
        if (n == limit) {
            cJSON_Delete(a);
            next =
                zt_req_printf(req, "%.26s",
                              (const char *)cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                                  cJSON_GetArrayItem(items, n - 1), "id")));
            break;
        }
        cJSON_AddItemToArray(items, a);
        n++;
    }
    zt_cursor_close(c);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        cJSON_Delete(o);
        return rc;
    }
    if (next)
        cJSON_AddStringToObject(o, "next", next);
    else
        cJSON_AddNullToObject(o, "next");
    return sn_send(req, 200, o);
}

static int h_ack(zt_req *req, void *ud)
{
    sn *S = ud;
    const zt_caller *c = zt_req_caller(req);
    if (!zt_caller_has_role(c, SN_ADMIN_ROLE) && !zt_caller_has_role(c, "sensor_duty"))
        return zt_problem(req, 403, "forbidden", NULL,
                          "acknowledging needs the role sensor_duty or " SN_ADMIN_ROLE);
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    int rc = ZT_ENOTFOUND;
    cJSON *a = strlen(id) == 26 ? sn_get_json(t, S->alerts, id, 26, &rc) : NULL;
    if (rc == ZT_ENOTFOUND) return zt_problem(req, 404, "not-found", NULL, "no alert %s", id);
    if (rc != ZT_OK) return rc;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "acked"))) {
        cJSON_Delete(a);
        return zt_problem(req, 409, "already-acknowledged", NULL, "alert %s is acknowledged", id);
    }
    char ts[40];
    sn_time_format(zt_now_ms() * 1000000, ts);
    cJSON_ReplaceItemInObjectCaseSensitive(a, "acked", cJSON_CreateTrue());
    cJSON_AddStringToObject(a, "acked_by", c->login);
    cJSON_AddStringToObject(a, "acked_at", ts);
    if ((rc = sn_put_json(t, S->alerts, id, 26, a)) != ZT_OK) {
        cJSON_Delete(a);
        return rc;
    }
    zt_audit_note(req, "acknowledge alert", id);
    return sn_send(req, 200, a);
}

int sn_rules_routes(sn *S)
{
    const zt_route routes[] = {
        {"GET", "/sensor/alerts", h_alerts, S, ZT_ROLE_USER, 0,
         "Alerts, newest first (?state=open|closed, stream, limit, before)"},
        {"POST", "/sensor/alerts/:id/ack", h_ack, S, ZT_ROLE_USER, 0,
         "Acknowledge an alert (sensor_duty or sensor_admin)"},
    };
    return sn_routes_add(S, routes, sizeof routes / sizeof routes[0]);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int load(sn *S, sn_rules *R)
{
    const char *rel = zt_opt_string(S->p, "rules");
    if (!rel || !*rel) return ZT_OK;
    if (rel[0] == '/' || strstr(rel, ".."))
        return zt_option_fail(S->p, "rules", "\"%s\" is not a path inside lua_dir (%s)", rel,
                              zt_lua_dir(S->p));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", zt_lua_dir(S->p), rel);
    FILE *f = fopen(path, "rb");
    /* the shipped default may be absent (no rules); a file the config names must be there:
     * a typo would otherwise mean no alerts, without a word */
    if (!f && strcmp(rel, SN_RULES_DEFAULT) == 0) return ZT_OK;
    if (!f)
        return zt_option_fail(S->p, "rules", "cannot read %s: %s (set rules = \"\" for none)", path,
                              strerror(errno));
    char *src = NULL;
    size_t len = 0, cap = 0, got;
    char buf[8192];
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + got > cap) {
            cap = (len + got) * 2;
            char *ns = realloc(src, cap);
            if (!ns) {
                free(src);
                fclose(f);
                return ZT_ENOMEM;
            }
            src = ns;
        }
        memcpy(src + len, buf, got);
        len += got;
    }
    fclose(f);
    int rc = zt_lua_new(S->p, &R->L);
    char err[512];
    if (rc != ZT_OK) {
        zt_log(S->p, ZT_LOG_ERROR, "rules %s: no Lua state: %s", path, zt_strerror(rc));
        free(src);
        return rc;
    }
    rc = zt_lua_run(R->L, rel, src, len, 1, err, sizeof err);
    free(src);
    if (rc == ZT_OK) {
        lua_pushlightuserdata(R->L, R);
        lua_pushcclosure(R->L, read_rules, 1);
        lua_insert(R->L, -2);
        rc = zt_lua_call(R->L, NULL, 1, 0, err, sizeof err);
    }
    if (rc != ZT_OK) return zt_option_fail(S->p, "rules", "%s", err);
    zt_log(S->p, ZT_LOG_INFO, "%zu alert rules from %s", R->n, rel);
    return ZT_OK;
}

int sn_rules_init(sn *S)
{
    sn_rules *R = calloc(1, sizeof *R);
    if (!R) return ZT_ENOMEM;
    S->rules = R;
    R->m = calloc(MATCH_SLOTS, sizeof *R->m);
    if (!R->m || pthread_mutex_init(&R->mu, NULL) != 0) return ZT_ENOMEM;
    if (pthread_cond_init(&R->cv, NULL) != 0) return ZT_ENOMEM;
    int rc = load(S, R);
    if (rc != ZT_OK) return rc;
    R->every_ms = zt_opt_int(S->p, "check_every") * 1000;
    if (R->every_ms <= 0) return zt_option_fail(S->p, "check_every", "seconds, at least 1");
    if (pthread_create(&R->thread, NULL, ticker, S) != 0) return ZT_ERROR;
    R->running = true;
    return ZT_OK;
}

bool sn_rules_any(const sn *S)
{
    return S->rules && S->rules->n > 0;
}

void sn_rules_fini(sn *S)
{
    sn_rules *R = S->rules;
    if (!R) return;
    if (R->running) {
        pthread_mutex_lock(&R->mu);
        R->stop = true;
        pthread_cond_signal(&R->cv);
        pthread_mutex_unlock(&R->mu);
        pthread_join(R->thread, NULL);
        pthread_cond_destroy(&R->cv);
        pthread_mutex_destroy(&R->mu);
    }
    free(R->r);
    for (size_t i = 0; R->m && i < MATCH_SLOTS; i++) free(R->m[i].idx);
    free(R->m);
    free(R);
    S->rules = NULL;
}
