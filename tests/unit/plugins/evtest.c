/* evtest.c: a test plugin for events: routes that emit, subscribers that record what they get. */
#include <zt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One subscriber: what it subscribed to, and where it records what it received (in
 * delivery order, keyed by a counter: the order of the keys is the order of delivery). */
typedef struct subscriber {
    const char *name;
    const char *pattern;
    zt_db *seen;
} subscriber;

static subscriber subs[] = {
    {"all", "evtest.**", NULL},  {"star", "evtest.*.done", NULL},  {"flaky", "evtest.flaky", NULL},
    {"own", "_evtest.**", NULL}, {"late", "evtest.late.**", NULL},
};
#define NSUBS (sizeof subs / sizeof subs[0])

static zt_plugin *self;
static int fail_left;       /* flaky: failures still to give */
static unsigned long order; /* deliveries that ran, across subscribers */
static cJSON *checks;       /* what init found out about zt_on */

static void be64(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (unsigned char)v;
}

static int answer(zt_req *req, int status, const char *k, int v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, k, v);
    int rc = zt_respond_json(req, status, o);
    cJSON_Delete(o);
    return rc;
}

/* ---- subscribers -------------------------------------------------------------------- */

static int append_seen(zt_txn *t, zt_db *db, const cJSON *rec)
{
    zt_cursor *c;
    zt_kv kv;
    uint64_t n = 1;
    int rc = zt_cursor_open(t, db, &c);
    if (rc != ZT_OK) return rc;
    if (zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv) == ZT_OK && kv.klen == 8) {
        const unsigned char *k = kv.key;
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | k[i];
        n++;
    }
    zt_cursor_close(c);
    unsigned char key[8];
    be64(key, n);
    char *text = cJSON_PrintUnformatted(rec);
    if (!text) return ZT_ENOMEM;
    rc = zt_put(t, db, key, 8, text, strlen(text));
    free(text);
    return rc;
}

static int on_event(zt_req *req, const zt_event *ev, void *ud)
{
    subscriber *s = ud;
    const zt_caller *c = zt_req_caller(req);
    size_t blen;
    const char *body = zt_req_body(req, &blen);
    char *payload = cJSON_PrintUnformatted(ev->payload);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "seq", (double)ev->seq);
    cJSON_AddStringToObject(r, "topic", ev->topic);
    cJSON_AddItemToObject(r, "payload", cJSON_Duplicate(ev->payload, 1));
    cJSON_AddNumberToObject(r, "attempt", ev->attempt);
    cJSON_AddStringToObject(r, "source", ev->source);
    cJSON_AddStringToObject(r, "request_id", ev->request_id);
    cJSON_AddNumberToObject(r, "time", (double)ev->time_ms);
    cJSON_AddNumberToObject(r, "order", (double)++order);
    /* What a handler of work without a client sees of its zt_req. */
    cJSON_AddStringToObject(r, "method", zt_req_method(req));
    cJSON_AddBoolToObject(r, "path_is_topic", strcmp(zt_req_path(req), ev->topic) == 0);
    cJSON_AddBoolToObject(r, "body_is_payload",
                          payload && strlen(payload) == blen && memcmp(body, payload, blen) == 0);
    cJSON_AddStringToObject(r, "client", zt_req_client(req));
    cJSON_AddStringToObject(r, "caller_kind", c ? c->kind : "");
    cJSON_AddStringToObject(r, "caller_login", c ? c->login : "");
    cJSON_AddNumberToObject(r, "respond_rc", zt_respond(req, 200, NULL, "x", 1));
    cJSON_AddNumberToObject(r, "problem_rc", zt_problem(req, 400, "x", NULL, "x"));
    cJSON_AddBoolToObject(r, "no_header", zt_req_header(req, "Host") == NULL);
    free(payload);

    zt_txn *t = zt_req_txn(req);
    int rc = t ? append_seen(t, s->seen, r) : ZT_EIO;
    cJSON_Delete(r);
    if (rc != ZT_OK) return rc;
    /* A chain: work done for an event emits the next one. */
    if (strcmp(s->name, "all") == 0 && strcmp(ev->topic, "evtest.chain.start") == 0)
        rc = zt_emit(req, "evtest.chain.done", ev->payload);
    if (rc != ZT_OK) return rc;
    if (strcmp(s->name, "flaky") == 0 && fail_left > 0) {
        fail_left--;
        return ZT_ERROR; /* what it wrote above must be rolled back */
    }
    return ZT_OK;
}

/* ---- routes ------------------------------------------------------------------------- */

/* POST /evtest/emit {topic, payload, count}: count events (payload {"i": i} then) or one. */
static int h_emit(zt_req *req, void *ud)
{
    cJSON *j;
    if (zt_req_json(req, &j) != ZT_OK) return zt_problem(req, 400, "invalid-json", NULL, "json");
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(j, "topic");
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(j, "payload");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(j, "count");
    const char *name = cJSON_IsString(topic) ? topic->valuestring : "";
    int rc = ZT_OK;
    if (cJSON_IsNumber(count)) {
        for (int i = 0; rc == ZT_OK && i < count->valueint; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddNumberToObject(p, "i", i);
            rc = zt_emit(req, name, p);
            cJSON_Delete(p);
        }
    } else {
        rc = zt_emit(req, name, payload);
    }
    if (ud) rc = ZT_ECONFLICT; /* emit-fail: the request fails after emitting */
    return answer(req, rc == ZT_OK ? 201 : 400, "rc", rc);
}

/* GET /evtest/emit-get: what zt_emit says in a GET. */
static int h_emit_get(zt_req *req, void *ud)
{
    return answer(req, 200, "rc", zt_emit(req, "evtest.from-get", NULL));
}

/* POST /evtest/big: a payload over the limit. */
static int h_big(zt_req *req, void *ud)
{
    size_t n = 300 * 1024;
    char *s = malloc(n + 1);
    if (!s) return ZT_ENOMEM;
    memset(s, 'x', n);
    s[n] = 0;
    cJSON *p = cJSON_CreateString(s);
    free(s);
    int rc = zt_emit(req, "evtest.big", p);
    cJSON_Delete(p);
    return answer(req, 200, "rc", rc);
}

/* POST /evtest/flaky {"fail": N}: the flaky subscriber fails its next N attempts. */
static int h_flaky(zt_req *req, void *ud)
{
    cJSON *j;
    const cJSON *n;
    if (zt_req_json(req, &j) != ZT_OK || !cJSON_IsNumber(n = cJSON_GetObjectItem(j, "fail")))
        return zt_problem(req, 400, "invalid-json", NULL, "send {\"fail\": N}");
    fail_left = n->valueint;
    return answer(req, 200, "fail", fail_left);
}

/* POST /evtest/late-on: zt_on after init. */
static int h_late_on(zt_req *req, void *ud)
{
    return answer(req, 200, "rc", zt_on(self, "evtest.x", on_event, &subs[0]));
}

static int h_checks(zt_req *req, void *ud)
{
    return zt_respond_json(req, 200, checks);
}

/* GET /evtest/seen?sub=NAME: {"items": [what it received, in delivery order]} */
static int h_seen(zt_req *req, void *ud)
{
    const char *name = zt_req_query(req, "sub");
    subscriber *s = NULL;
    for (size_t i = 0; name && i < NSUBS; i++)
        if (strcmp(subs[i].name, name) == 0) s = &subs[i];
    if (!s) return zt_problem(req, 404, "not-found", NULL, "no such subscriber");
    zt_txn *t = zt_req_txn(req);
    zt_cursor *c;
    if (!t || zt_cursor_open(t, s->seen, &c) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    zt_kv kv;
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv))
        cJSON_AddItemToArray(items, cJSON_ParseWithLength(kv.val, kv.vlen));
    zt_cursor_close(c);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

/* ---- init --------------------------------------------------------------------------- */

static const zt_option options[] = {
    {"late", ZT_OPT_BOOL, "false", 0, "also subscribe evtest.late.** (a subscriber added later)"},
    {0},
};

static void check(const char *what, int rc)
{
    cJSON_AddNumberToObject(checks, what, rc);
}

static int init(zt_plugin *p)
{
    self = p;
    checks = cJSON_CreateObject();
    if (!checks) return ZT_ENOMEM;
    int rc = ZT_OK;
    for (size_t i = 0; rc == ZT_OK && i < NSUBS; i++) {
        char db[32];
        snprintf(db, sizeof db, "seen_%s", subs[i].name);
        rc = zt_db_open(p, db, &subs[i].seen);
        if (rc == ZT_OK && (strcmp(subs[i].name, "late") != 0 || zt_opt_bool(p, "late")))
            rc = zt_on(p, subs[i].pattern, on_event, &subs[i]);
    }
    if (rc != ZT_OK) return rc;
    check("duplicate", zt_on(p, "evtest.**", on_event, &subs[0]));
    check("other_private", zt_on(p, "_other.**", on_event, &subs[0]));
    check("double_star_inside", zt_on(p, "evtest.**.x", on_event, &subs[0]));
    check("empty_word", zt_on(p, "evtest..x", on_event, &subs[0]));
    check("bad_char", zt_on(p, "evtest.a b", on_event, &subs[0]));
    check("partial_star", zt_on(p, "evtest.a*", on_event, &subs[0]));

    zt_route routes[] = {
        {"POST", "/evtest/emit", h_emit, NULL, ZT_ROLE_PUBLIC, 0, "emit"},
        {"POST", "/evtest/emit-fail", h_emit, "fail", ZT_ROLE_PUBLIC, 0, "emit, then fail"},
        {"GET", "/evtest/emit-get", h_emit_get, NULL, ZT_ROLE_PUBLIC, 0, "emit in a GET"},
        {"POST", "/evtest/big", h_big, NULL, ZT_ROLE_PUBLIC, 0, "emit a payload too big"},
        {"POST", "/evtest/flaky", h_flaky, NULL, ZT_ROLE_PUBLIC, 0, "make flaky fail"},
        {"POST", "/evtest/late-on", h_late_on, NULL, ZT_ROLE_PUBLIC, 0, "zt_on after init"},
        {"GET", "/evtest/checks", h_checks, NULL, ZT_ROLE_PUBLIC, 0, "zt_on errors at init"},
        {"GET", "/evtest/seen", h_seen, NULL, ZT_ROLE_PUBLIC, 0, "what a subscriber got"},
    };
    for (size_t i = 0; rc == ZT_OK && i < sizeof routes / sizeof routes[0]; i++)
        rc = zt_route_add(p, &routes[i]);
    return rc;
}

static void fini(zt_plugin *p)
{
    cJSON_Delete(checks);
    checks = NULL;
}

ZT_PLUGIN(.name = "evtest", .version = "1.0", .description = "events test plugin",
          .options = options, .init = init, .fini = fini);
