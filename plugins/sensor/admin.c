/* admin.c: things and datastreams over HTTP, for the sensor administrator. */
#include "sensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sn_send(zt_req *req, int status, cJSON *o)
{
    int rc = o ? zt_respond_json(req, status, o) : ZT_ENOMEM;
    cJSON_Delete(o);
    return rc;
}

cJSON *sn_get_json(zt_txn *t, zt_db *db, const void *k, size_t kl, int *rc)
{
    const void *v;
    size_t vl;
    *rc = zt_get(t, db, k, kl, &v, &vl);
    if (*rc != ZT_OK) return NULL;
    cJSON *j = cJSON_ParseWithLength(v, vl);
    if (!j) *rc = ZT_EIO;
    return j;
}

int sn_put_json(zt_txn *t, zt_db *db, const void *k, size_t kl, const cJSON *j)
{
    char *s = zt_json_print(j);
    if (!s) return ZT_ENOMEM;
    int rc = zt_put(t, db, k, kl, s, strlen(s));
    free(s);
    return rc;
}

int sn_stream_get(sn *S, zt_txn *t, uint32_t id, cJSON **out)
{
    unsigned char k[4];
    sn_be32(k, id);
    int rc;
    *out = sn_get_json(t, S->streams, k, 4, &rc);
    return rc;
}

/* A name given by an administrator: 1..200 bytes, no control characters (they separate
 * the parts of series keys). */
static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 200) return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) return false;
    return true;
}

static int bad(zt_req *req, const char *detail)
{
    return zt_problem(req, 422, "invalid-sensor-record", "Invalid record", "%s", detail);
}

/* ---- things ------------------------------------------------------------------------ */

/* Copy the fields a thing may have from body into t (checked). NULL, or what is wrong. */
static const char *thing_fields(const cJSON *body, cJSON *t, bool create)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name"),
                *loc = cJSON_GetObjectItemCaseSensitive(body, "location"),
                *props = cJSON_GetObjectItemCaseSensitive(body, "properties");
    if (create || name) {
        if (!cJSON_IsString(name) || !name_ok(name->valuestring))
            return "name: 1 to 200 characters";
        cJSON_DeleteItemFromObjectCaseSensitive(t, "name");
        cJSON_AddStringToObject(t, "name", name->valuestring);
    }
    if (loc && !cJSON_IsNull(loc)) {
        const cJSON *lat = cJSON_GetObjectItemCaseSensitive(loc, "lat"),
                    *lon = cJSON_GetObjectItemCaseSensitive(loc, "lon");
        if (!cJSON_IsNumber(lat) || !cJSON_IsNumber(lon) || fabs(lat->valuedouble) > 90 ||
            fabs(lon->valuedouble) > 180)
            return "location: {\"lat\": -90..90, \"lon\": -180..180}";
        cJSON_DeleteItemFromObjectCaseSensitive(t, "location");
        cJSON *l = cJSON_AddObjectToObject(t, "location");
        cJSON_AddNumberToObject(l, "lat", lat->valuedouble);
        cJSON_AddNumberToObject(l, "lon", lon->valuedouble);
    }
    if (props) {
        if (!cJSON_IsObject(props)) return "properties: an object";
        cJSON_DeleteItemFromObjectCaseSensitive(t, "properties");
        cJSON_AddItemToObject(t, "properties", cJSON_Duplicate(props, 1));
    }
    return NULL;
}

static int thing_create(zt_req *req, void *ud)
{
    sn *S = ud;
    cJSON *body = zt_req_object(req);
    if (!body) return ZT_OK;
    char id[27];
    zt_id(id);
    cJSON *t = cJSON_CreateObject();
    if (!t) return ZT_ENOMEM;
    cJSON_AddStringToObject(t, "id", id);
    const char *why = thing_fields(body, t, true);
    if (why) {
        cJSON_Delete(t);
        return bad(req, why);
    }
    zt_txn *tx = zt_req_txn(req);
    int rc = tx ? sn_put_json(tx, S->things, id, 26, t) : ZT_EBUSY;
    if (rc != ZT_OK) {
        cJSON_Delete(t);
        return rc;
    }
    zt_audit_note(req, "create thing", id);
    return sn_send(req, 201, t);
}

/* The thing :id in *th; 1 when there is none (answered 404). */
static int thing_load(zt_req *req, sn *S, zt_txn *t, cJSON **th)
{
    const char *id = zt_req_param(req, "id");
    int rc;
    *th = sn_get_json(t, S->things, id, strlen(id), &rc);
    if (rc == ZT_ENOTFOUND) {
        zt_problem(req, 404, "not-found", NULL, "no thing %s", id);
        return 1;
    }
    return rc;
}

static int thing_get(zt_req *req, void *ud)
{
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *j;
    int rc = thing_load(req, ud, t, &j);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    return sn_send(req, 200, j);
}

static int thing_patch(zt_req *req, void *ud)
{
    sn *S = ud;
    const char *id = zt_req_param(req, "id");
    cJSON *body = zt_req_object(req);
    if (!body) return ZT_OK;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *j;
    int rc = thing_load(req, S, t, &j);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    const char *why = thing_fields(body, j, false);
    if (why) {
        cJSON_Delete(j);
        return bad(req, why);
    }
    if ((rc = sn_put_json(t, S->things, id, strlen(id), j)) != ZT_OK) {
        cJSON_Delete(j);
        return rc;
    }
    zt_audit_note(req, "update thing", id);
    return sn_send(req, 200, j);
}

/* Paged list of a database of JSON records: ?limit (1..1000, 100) &after=<key>. key_of
 * turns the text of `after` into a key. */
static int list(zt_req *req, zt_db *db, int (*key_of)(const char *, unsigned char *, size_t *),
                bool (*keep)(const cJSON *, void *), void *arg)
{
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    const char *after = zt_req_query(req, "after");
    int64_t limit;
    if (sn_query_int(req, "limit", 100, 1, 1000, &limit)) return ZT_OK;
    unsigned char k[64];
    size_t kl = 0;
    if (after && key_of(after, k, &kl) != 0)
        return zt_problem(req, 400, "invalid-query", NULL, "after: a key from 'next'");
    zt_cursor *c;
    int rc = zt_cursor_open(t, db, &c);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    cJSON *last = NULL;
    zt_kv kv;
    rc = after ? zt_cursor_seek(c, ZT_GE, k, kl, &kv) : zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv);
    if (rc == ZT_OK && after && kv.klen == kl && memcmp(kv.key, k, kl) == 0)
        rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
    int64_t n = 0;
    bool more = false;
    for (; rc == ZT_OK; rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *j = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (!j) {
            rc = ZT_EIO;
            break;
        }
        if (keep && !keep(j, arg)) {
            cJSON_Delete(j);
            continue;
        }
        if (n == limit) {
            more = true;
            cJSON_Delete(j);
            break;
        }
        cJSON_AddItemToArray(items, j);
        last = j;
        n++;
    }
    zt_cursor_close(c);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) {
        cJSON_Delete(o);
        return rc;
    }
    cJSON *id = more && last ? cJSON_GetObjectItemCaseSensitive(last, "id") : NULL;
    if (cJSON_IsString(id))
        cJSON_AddStringToObject(o, "next", id->valuestring);
    else if (cJSON_IsNumber(id))
        cJSON_AddStringToObject(o, "next", zt_req_printf(req, "%.0f", id->valuedouble));
    else
        cJSON_AddNullToObject(o, "next");
    return sn_send(req, 200, o);
}

static int text_key(const char *s, unsigned char *k, size_t *kl)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return -1;
    memcpy(k, s, n);
    *kl = n;
    return 0;
}

static int id_key(const char *s, unsigned char *k, size_t *kl)
{
    uint32_t v;
    if (sn_id_arg(s, &v) != 0) return -1;
    sn_be32(k, v);
    *kl = 4;
    return 0;
}

static int thing_list(zt_req *req, void *ud)
{
    return list(req, ((sn *)ud)->things, text_key, NULL, NULL);
}

static bool of_thing(const cJSON *j, void *arg)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "thing");
    return !arg || (cJSON_IsString(t) && strcmp(t->valuestring, arg) == 0);
}

static int thing_delete(zt_req *req, void *ud)
{
    sn *S = ud;
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    zt_cursor *c;
    int rc = zt_cursor_open(t, S->streams, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    bool used = false;
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK && !used;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *j = cJSON_ParseWithLength(kv.val, kv.vlen);
        used = j && of_thing(j, (void *)id);
        cJSON_Delete(j);
    }
    zt_cursor_close(c);
    if (used)
        return zt_problem(req, 409, "thing-in-use", "Thing in use",
                          "thing %s still has datastreams: delete them first", id);
    rc = zt_del(t, S->things, id, strlen(id));
    if (rc == ZT_ENOTFOUND) return zt_problem(req, 404, "not-found", NULL, "no thing %s", id);
    if (rc != ZT_OK) return rc;
    zt_audit_note(req, "delete thing", id);
    return zt_respond(req, 204, NULL, NULL, 0);
}

/* ---- datastreams ---------------------------------------------------------------------- */

/* The access record of a stream: its retention, then the accounts that may write it. */
static int acl_put(sn *S, zt_txn *t, uint32_t id, const cJSON *st)
{
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(st, "devices");
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(st, "retention_days");
    size_t n = (size_t)cJSON_GetArraySize(devs);
    unsigned char *v = malloc(4 + 26 * n), k[4];
    if (!v) return ZT_ENOMEM;
    sn_be32(v, cJSON_IsNumber(ret) ? (uint32_t)ret->valuedouble : 0);
    size_t i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, devs) memcpy(v + 4 + 26 * i++, d->valuestring, 26);
    sn_be32(k, id);
    int rc = zt_put(t, S->acl, k, 4, v, 4 + 26 * n);
    free(v);
    return rc;
}

/* Fields of a stream that can change. */
static const char *stream_fields(zt_req *req, sn *S, const cJSON *body, cJSON *st, bool create)
{
    static const char *const texts[] = {"name", "observed_property", "unit", NULL};
    for (int i = 0; texts[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, texts[i]);
        if (!v && !(create && i == 0)) continue;
        if (!cJSON_IsString(v) || !name_ok(v->valuestring))
            return zt_req_printf(req, "%s: 1 to 200 characters", texts[i]);
        cJSON_DeleteItemFromObjectCaseSensitive(st, texts[i]);
        cJSON_AddStringToObject(st, texts[i], v->valuestring);
    }
    const cJSON *thing = cJSON_GetObjectItemCaseSensitive(body, "thing");
    if (thing) {
        zt_txn *t = zt_req_txn(req);
        const void *v;
        size_t vl;
        if (!cJSON_IsString(thing) || !t ||
            zt_get(t, S->things, thing->valuestring, strlen(thing->valuestring), &v, &vl) != ZT_OK)
            return "thing: the id of an existing thing";
        cJSON_DeleteItemFromObjectCaseSensitive(st, "thing");
        cJSON_AddStringToObject(st, "thing", thing->valuestring);
    } else if (create) {
        return "thing: the id of an existing thing";
    }
    const cJSON *every = cJSON_GetObjectItemCaseSensitive(body, "expected_interval");
    if (every) {
        if (!cJSON_IsNumber(every) || every->valuedouble <= 0 || every->valuedouble > 1e9)
            return "expected_interval: seconds between observations, above 0";
        cJSON_DeleteItemFromObjectCaseSensitive(st, "expected_interval");
        cJSON_AddNumberToObject(st, "expected_interval", every->valuedouble);
    }
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(body, "retention_days");
    if (ret || create) {
        double d = ret ? ret->valuedouble : 0;
        if ((ret && !cJSON_IsNumber(ret)) || d < 0 || d > 100000 || d != floor(d))
            return "retention_days: whole days to keep observations (0: forever)";
        cJSON_DeleteItemFromObjectCaseSensitive(st, "retention_days");
        cJSON_AddNumberToObject(st, "retention_days", d);
    }
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(body, "devices");
    if (devs || create) {
        cJSON *copy = cJSON_CreateArray();
        const cJSON *d;
        cJSON_ArrayForEach(d, devs)
        {
            if (!cJSON_IsString(d) || strlen(d->valuestring) != 26) {
                cJSON_Delete(copy);
                return "devices: the ids of the API keys that may write the stream";
            }
            cJSON_AddItemToArray(copy, cJSON_CreateString(d->valuestring));
        }
        if (devs && !cJSON_IsArray(devs)) {
            cJSON_Delete(copy);
            return "devices: a list of API key ids";
        }
        cJSON_DeleteItemFromObjectCaseSensitive(st, "devices");
        cJSON_AddItemToObject(st, "devices", copy);
    }
    return NULL;
}

/* The series a stream's record names. NULL, or what is wrong. */
static const char *stream_series(sn *S, const cJSON *st, sn_series *s)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "measurement"),
                *f = cJSON_GetObjectItemCaseSensitive(st, "field"),
                *tags = cJSON_GetObjectItemCaseSensitive(st, "tags");
    if (!cJSON_IsString(m) || !name_ok(m->valuestring)) return "measurement: 1 to 200 characters";
    if (!cJSON_IsString(f) || !name_ok(f->valuestring)) return "field: 1 to 200 characters";
    if (tags && !cJSON_IsObject(tags)) return "tags: an object of tag names to values";
    lp_point pt;
    pt.measurement = (lp_str){m->valuestring, strlen(m->valuestring)};
    pt.ntags = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tags)
    {
        if (pt.ntags == LP_MAX_TAGS) return "tags: too many";
        if (!cJSON_IsString(t) || !name_ok(t->valuestring) || !name_ok(t->string))
            return "tags: names and values of 1 to 200 characters";
        for (size_t j = 0; j < S->nignore; j++)
            if (strcmp(S->ignore[j].p, t->string) == 0)
                return "tags: a tag that the option ignore_tags leaves out of series";
        pt.tag_key[pt.ntags] = (lp_str){t->string, strlen(t->string)};
        pt.tag_val[pt.ntags++] = (lp_str){t->valuestring, strlen(t->valuestring)};
    }
    sn_series_from_point(S, &pt, s);
    s->field = (lp_str){f->valuestring, strlen(f->valuestring)};
    return NULL;
}

static int next_id(sn *S, zt_txn *t, uint32_t *id)
{
    const void *v;
    size_t vl;
    int rc = zt_get(t, S->meta, "next_stream", 11, &v, &vl);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    *id = rc == ZT_OK && vl == 4 ? sn_rd32(v) : 1;
    unsigned char b[4];
    sn_be32(b, *id + 1);
    return zt_put(t, S->meta, "next_stream", 11, b, 4);
}

/* Create a stream record st (its series fields checked) in t; sets "id". */
int sn_stream_create(sn *S, zt_txn *t, cJSON *st, uint32_t *idp, const char **why)
{
    sn_series s;
    char key[SN_KEY_MAX];
    size_t kl;
    *why = stream_series(S, st, &s);
    if (*why) return ZT_EINVAL;
    if (!(kl = sn_series_key(&s, key))) {
        *why = "the series key (measurement, tags, field) is too long";
        return ZT_EINVAL;
    }
    const void *v;
    size_t vl;
    if (zt_get(t, S->series, key, kl, &v, &vl) == ZT_OK) {
        *why = "another datastream has this measurement, tags and field";
        return ZT_EEXIST;
    }
    uint32_t id;
    int rc = next_id(S, t, &id);
    if (rc != ZT_OK) return rc;
    cJSON_DeleteItemFromObjectCaseSensitive(st, "id");
    cJSON_AddNumberToObject(st, "id", id);
    unsigned char k[4];
    sn_be32(k, id);
    if ((rc = zt_put(t, S->series, key, kl, k, 4)) != ZT_OK ||
        (rc = sn_put_json(t, S->streams, k, 4, st)) != ZT_OK ||
        (rc = acl_put(S, t, id, st)) != ZT_OK)
        return rc;
    *idp = id;
    return ZT_OK;
}

static int stream_create(zt_req *req, void *ud)
{
    sn *S = ud;
    cJSON *body = zt_req_object(req);
    if (!body) return ZT_OK;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *st = cJSON_CreateObject();
    if (!st) return ZT_ENOMEM;
    const char *why = stream_fields(req, S, body, st, true);
    static const char *const keyf[] = {"measurement", "field", "tags", NULL};
    for (int i = 0; !why && keyf[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, keyf[i]);
        if (v) cJSON_AddItemToObject(st, keyf[i], cJSON_Duplicate(v, 1));
    }
    if (!cJSON_GetObjectItemCaseSensitive(st, "tags")) cJSON_AddObjectToObject(st, "tags");
    uint32_t id = 0;
    int rc = why ? ZT_EINVAL : sn_stream_create(S, t, st, &id, &why);
    if (rc != ZT_OK) {
        cJSON_Delete(st);
        if (rc == ZT_EEXIST) return zt_problem(req, 409, "stream-exists", NULL, "%s", why);
        return why ? bad(req, why) : rc;
    }
    sn_rules_forget(S, id);
    zt_audit_note(req, "create datastream", zt_req_printf(req, "%u", id));
    return sn_send(req, 201, st);
}

static int stream_param(zt_req *req, uint32_t *id)
{
    unsigned char k[4];
    size_t kl;
    if (id_key(zt_req_param(req, "id"), k, &kl) != 0) return -1;
    *id = sn_rd32(k);
    return 0;
}

/* The datastream :id in *st; 1 when there is none (answered 404). */
static int stream_load(zt_req *req, sn *S, zt_txn *t, uint32_t *id, cJSON **st)
{
    *st = NULL;
    int rc = stream_param(req, id) == 0 ? sn_stream_get(S, t, *id, st) : ZT_ENOTFOUND;
    if (rc == ZT_ENOTFOUND) {
        zt_problem(req, 404, "not-found", NULL, "no datastream %s", zt_req_param(req, "id"));
        return 1;
    }
    return rc;
}

static int stream_get(zt_req *req, void *ud)
{
    sn *S = ud;
    uint32_t id;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *st;
    int rc = stream_load(req, S, t, &id, &st);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    return sn_send(req, 200, st);
}

static int stream_list(zt_req *req, void *ud)
{
    return list(req, ((sn *)ud)->streams, id_key, of_thing, (void *)zt_req_query(req, "thing"));
}

static int stream_patch(zt_req *req, void *ud)
{
    sn *S = ud;
    uint32_t id;
    cJSON *body = zt_req_object(req);
    if (!body) return ZT_OK;
    static const char *const keyf[] = {"measurement", "field", "tags", "id", NULL};
    for (int i = 0; keyf[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(body, keyf[i]))
            return bad(req, "the series of a datastream (measurement, tags, field) and its id "
                            "do not change: make another datastream");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *st;
    int rc = stream_load(req, S, t, &id, &st);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    const char *why = stream_fields(req, S, body, st, false);
    if (why) {
        cJSON_Delete(st);
        return bad(req, why);
    }
    unsigned char k[4];
    sn_be32(k, id);
    if ((rc = sn_put_json(t, S->streams, k, 4, st)) != ZT_OK ||
        (rc = acl_put(S, t, id, st)) != ZT_OK) {
        cJSON_Delete(st);
        return rc;
    }
    sn_rules_forget(S, id);
    zt_audit_note(req, "update datastream", zt_req_param(req, "id"));
    return sn_send(req, 200, st);
}

static int stream_delete(zt_req *req, void *ud)
{
    sn *S = ud;
    uint32_t id;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    cJSON *st;
    int rc = stream_load(req, S, t, &id, &st);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    sn_series s;
    char key[SN_KEY_MAX];
    size_t kl = stream_series(S, st, &s) ? 0 : sn_series_key(&s, key);
    unsigned char k[4];
    sn_be32(k, id);
    if (kl) zt_del(t, S->series, key, kl);
    sn_rules_forget(S, id);
    cJSON_Delete(st);
    if ((rc = zt_del(t, S->streams, k, 4)) != ZT_OK) return rc;
    zt_del(t, S->acl, k, 4);
    zt_del(t, S->arrived, k, 4);
    /* its observations go with it; its open alerts close, saying why (the people on duty,
     * and a grid case opened from one, see the station's alarm end, not hang open) */
    size_t n = 0, closed = 0;
    bool more = false;
    if ((rc = sn_obs_drop(S, t, id, INT64_MAX, SIZE_MAX, &n, &more)) != ZT_OK ||
        (rc = sn_rules_close_stream(S, req, id, "datastream deleted", &closed)) != ZT_OK)
        return rc;
    zt_audit_note(req,
                  zt_req_printf(req,
                                "delete datastream and its %zu observations, closing %zu "
                                "alerts",
                                n, closed),
                  zt_req_param(req, "id"));
    return zt_respond(req, 204, NULL, NULL, 0);
}

int sn_admin_routes(sn *S)
{
    const zt_route routes[] = {
        {"POST", "/sensor/things", thing_create, S, SN_ADMIN_ROLE, 0, "Register a thing"},
        {"GET", "/sensor/things", thing_list, S, ZT_ROLE_USER, 0, "Things (paged)"},
        {"GET", "/sensor/things/:id", thing_get, S, ZT_ROLE_USER, 0, "A thing"},
        {"PATCH", "/sensor/things/:id", thing_patch, S, SN_ADMIN_ROLE, 0, "Change a thing"},
        {"DELETE", "/sensor/things/:id", thing_delete, S, SN_ADMIN_ROLE, 0, "Delete a thing"},
        {"POST", "/sensor/streams", stream_create, S, SN_ADMIN_ROLE, 0, "Define a datastream"},
        {"GET", "/sensor/streams", stream_list, S, ZT_ROLE_USER, 0, "Datastreams (paged)"},
        {"GET", "/sensor/streams/:id", stream_get, S, ZT_ROLE_USER, 0, "A datastream"},
        {"PATCH", "/sensor/streams/:id", stream_patch, S, SN_ADMIN_ROLE, 0, "Change a datastream"},
        {"DELETE", "/sensor/streams/:id", stream_delete, S, SN_ADMIN_ROLE, 0,
         "Delete a datastream and its observations"},
    };
    return sn_routes_add(S, routes, sizeof routes / sizeof routes[0]);
}
