/* misbehave.c: a test plugin whose handlers break the handler contract of zt.h. */
#include "e2eplugin.h"

#include <string.h>

static zt_db *db;
static const char key[] = "k";

/* Write the key, then answer 201 and fail anyway (how = "error"), or answer twice and
 * return what the second answer said (how = "twice"). */
static int h_write(zt_req *req, void *ud)
{
    const char *how = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    int rc = zt_put(t, db, key, 1, "v", 1);
    if (rc != ZT_OK) return rc;
    rc = zt_respond(req, 201, "text/plain", "saved", 5);
    if (strcmp(how, "twice") == 0) return zt_respond(req, 200, "text/plain", "again", 5);
    return rc == ZT_OK ? ZT_EIO : rc;
}

/* Answer 409, then fail: the refusal stands. */
static int h_refuse(zt_req *req, void *ud)
{
    zt_problem(req, 409, "conflict", NULL, "refused on purpose");
    return ZT_EINVAL;
}

static void work(void *arg)
{
    (void)arg;
}

static int work_done(zt_req *req, void *arg)
{
    return zt_respond(req, 200, "text/plain", "done", 4);
}

/* zt_work, then return what ud says (ZT_OK, or ZT_EINVAL) instead of ZT_ASYNC. */
static int h_work(zt_req *req, void *ud)
{
    int rc = zt_work(req, work, work_done, NULL);
    return rc != ZT_OK ? rc : *(const int *)ud;
}

/* A service cannot wait for work: its caller goes on as soon as it returns. */
static int svc_work(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return zt_work(req, work, work_done, NULL);
}

/* Nor answer its caller's client. */
static int svc_answer(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return zt_respond(req, 200, "text/plain", "service", 7);
}

/* GET /misbehave/call/:service → {"rc": what the service returned} */
static int h_call(zt_req *req, void *ud)
{
    const char *name = zt_req_printf(req, "misbehave.%s", zt_req_param(req, "service"));
    int rc = name ? zt_call(req, name, NULL, NULL) : ZT_ENOMEM;
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddNumberToObject(o, "rc", rc)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return reply(req, 200, o);
}

static int h_read(zt_req *req, void *ud)
{
    const void *v;
    size_t n;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EBUSY;
    int rc = zt_get(t, db, key, 1, &v, &n);
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    return reply(req, 200, cJSON_CreateBool(rc == ZT_OK));
}

static int init(zt_plugin *p)
{
    static const int ok = ZT_OK, einval = ZT_EINVAL;
    int rc = zt_db_open(p, "kv", &db);
    const zt_route routes[] = {
        {"POST", "/misbehave/error", h_write, (void *)"error", ZT_ROLE_PUBLIC, 0, NULL},
        {"POST", "/misbehave/twice", h_write, (void *)"twice", ZT_ROLE_PUBLIC, 0, NULL},
        {"POST", "/misbehave/refuse", h_refuse, NULL, ZT_ROLE_PUBLIC, 0, NULL},
        {"GET", "/misbehave/written", h_read, NULL, ZT_ROLE_PUBLIC, 0, NULL},
        {"GET", "/misbehave/work-ok", h_work, (void *)&ok, ZT_ROLE_PUBLIC, 0, NULL},
        {"GET", "/misbehave/call/:service", h_call, NULL, ZT_ROLE_PUBLIC, 0, NULL},
        {"GET", "/misbehave/work-einval", h_work, (void *)&einval, ZT_ROLE_PUBLIC, 0, NULL},
    };
    if (rc == ZT_OK) rc = zt_provide(p, "misbehave.work", svc_work, NULL);
    if (rc == ZT_OK) rc = zt_provide(p, "misbehave.answer", svc_answer, NULL);
    for (size_t i = 0; rc == ZT_OK && i < sizeof routes / sizeof *routes; i++)
        rc = zt_route_add(p, &routes[i]);
    return rc;
}

ZT_PLUGIN("misbehave", "1.0.0", "handlers that break the contract, for the tests", NULL, NULL, NULL,
          NULL, init, NULL);
