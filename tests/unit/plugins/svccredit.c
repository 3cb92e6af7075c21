/* svccredit.c: a test plugin providing services: a credit check over its own records. */
#include "e2eplugin.h"

#include <stdbool.h>
#include <string.h>

typedef struct state {
    zt_db *records; /* code → {"blacklisted": bool} */
    zt_db *checks;  /* one key per check made (a zt_id) → the code checked */
} state;

/* POST /svccredit/records {"code", "blacklisted"} */
static int post_record(zt_req *req, void *ud)
{
    state *s = ud;
    cJSON *j = body_object(req);
    if (!j) return ZT_OK;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (!cJSON_IsString(code) || !code->valuestring[0])
        return zt_problem(req, 422, "invalid", NULL, "code is required");
    const char *val = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "blacklisted"))
                          ? "{\"blacklisted\":true}"
                          : "{\"blacklisted\":false}";
    int rc = zt_put(zt_req_txn(req), s->records, code->valuestring, strlen(code->valuestring), val,
                    strlen(val));
    if (rc != ZT_OK) return rc;
    return zt_respond(req, 204, NULL, NULL, 0);
}

/* GET /svccredit/checks: how many checks were kept. */
static int get_checks(zt_req *req, void *ud)
{
    state *s = ud;
    zt_cursor *c;
    zt_kv kv;
    int rc = zt_cursor_open(zt_req_txn(req), s->checks, &c);
    if (rc != ZT_OK) return rc;
    double n = 0;
    while (zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv) == ZT_OK) n++;
    zt_cursor_close(c);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", n);
    return reply(req, 200, o);
}

/* svccredit.check {"code"} → {"code", "found", "blacklisted"}; each check is logged in the
 * caller's transaction (kept only if the caller's work commits). */
static int svc_check(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    state *s = ud;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(args, "code");
    if (!cJSON_IsString(code) || !code->valuestring[0]) return ZT_EINVAL;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const void *v;
    size_t vlen;
    int rc = zt_get(t, s->records, code->valuestring, strlen(code->valuestring), &v, &vlen);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    cJSON *rec = rc == ZT_OK ? cJSON_ParseWithLength(v, vlen) : NULL;
    bool found = rc == ZT_OK;
    bool black = rec && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "blacklisted"));
    cJSON_Delete(rec);
    if (zt_txn_writable(t)) {
        char id[27];
        zt_id(id);
        if ((rc = zt_put(t, s->checks, id, 26, code->valuestring, strlen(code->valuestring))))
            return rc;
    }
    /* "then_fail": having written its check and set a timer, the service fails: a failed
     * call leaves nothing of itself */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "then_fail"))) {
        char id[27];
        rc = zt_timer_at(req, zt_now_ms() + 3600 * 1000, "_svccredit.remind", NULL, id);
        return rc == ZT_OK ? ZT_ECONFLICT : rc;
    }
    /* "then_call": with a cursor open over the checks, it calls this service again with
     * those args and copes with a failure; the cursor reads on after the call */
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(args, "then_call");
    double seen = 0;
    if (inner) {
        zt_cursor *c;
        zt_kv kv;
        if ((rc = zt_cursor_open(t, s->checks, &c)) != ZT_OK) return rc;
        if (zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv) == ZT_OK) seen++;
        cJSON *r = NULL;
        rc = zt_call(req, "svccredit.check", inner, &r);
        cJSON_Delete(r);
        while (zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv) == ZT_OK) seen++;
        zt_cursor_close(c);
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return ZT_ENOMEM;
    cJSON_AddStringToObject(o, "code", code->valuestring);
    cJSON_AddBoolToObject(o, "found", found);
    cJSON_AddBoolToObject(o, "blacklisted", black);
    if (inner) {
        cJSON_AddNumberToObject(o, "inner_error", rc);
        cJSON_AddNumberToObject(o, "checks_seen", seen);
    }
    *result = o;
    return ZT_OK;
}

/* svccredit.recurse {"n"} calls itself n more times → {"levels": how many ran}. */
static int svc_recurse(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)ud;
    double n = num(args, "n", 0);
    double levels = 1;
    if (n > 0) {
        cJSON *a = cJSON_CreateObject(), *r = NULL;
        if (!a || !cJSON_AddNumberToObject(a, "n", n - 1)) {
            cJSON_Delete(a);
            return ZT_ENOMEM;
        }
        int rc = zt_call(req, "svccredit.recurse", a, &r);
        cJSON_Delete(a);
        if (rc != ZT_OK) return rc;
        levels += num(r, "levels", 0);
        cJSON_Delete(r);
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return ZT_ENOMEM;
    cJSON_AddNumberToObject(o, "levels", levels);
    *result = o;
    return ZT_OK;
}

/* svccredit.echo → {"is_null": whether args is a JSON null, "value": args} */
static int svc_echo(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)req, (void)ud;
    cJSON *o = cJSON_CreateObject();
    if (!o) return ZT_ENOMEM;
    cJSON_AddBoolToObject(o, "is_null", cJSON_IsNull(args));
    cJSON_AddItemToObject(o, "value", cJSON_Duplicate(args, 1));
    *result = o;
    return ZT_OK;
}

/* svccredit.remind sets a timer on this plugin's own topic: a service acts as its plugin. */
static int svc_remind(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)args, (void)ud;
    char id[27];
    int rc = zt_timer_at(req, zt_now_ms() + 3600 * 1000, "_svccredit.remind", NULL, id);
    if (rc != ZT_OK) return rc;
    if (!(*result = cJSON_CreateString(id))) return ZT_ENOMEM;
    return ZT_OK;
}

static state st;

static int init(zt_plugin *p)
{
    int rc;
    if ((rc = zt_db_open(p, "records", &st.records)) || (rc = zt_db_open(p, "checks", &st.checks)))
        return rc;
    const zt_route routes[] = {
        {"POST", "/svccredit/records", post_record, &st, ZT_ROLE_PUBLIC, 0, "Add a record"},
        {"GET", "/svccredit/checks", get_checks, &st, ZT_ROLE_PUBLIC, 0, "Checks kept"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if ((rc = zt_route_add(p, &routes[i])) != ZT_OK) return rc;
    if ((rc = zt_provide(p, "svccredit.check", svc_check, &st)) ||
        (rc = zt_provide(p, "svccredit.recurse", svc_recurse, NULL)) ||
        (rc = zt_provide(p, "svccredit.echo", svc_echo, NULL)) ||
        (rc = zt_provide(p, "svccredit.remind", svc_remind, NULL)))
        return rc;
    return ZT_OK;
}

ZT_PLUGIN(.name = "svccredit", .version = "1", .description = "test: provides services",
          .init = init);
