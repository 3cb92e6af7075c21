/* timertest.c: a test plugin that sets and cancels durable timers and records their events. */
#include "e2eplugin.h"

#include <string.h>

static zt_db *fired; /* BE64(event seq) → {"timer", "topic", "source", "payload"} */

/* The due time of a request: "due_ms" as given, or now + "in_ms". */
static int64_t due_of(const cJSON *j)
{
    const cJSON *due = cJSON_GetObjectItemCaseSensitive(j, "due_ms");
    if (cJSON_IsNumber(due)) return (int64_t)due->valuedouble;
    return zt_now_ms() + (int64_t)num(j, "in_ms", 0);
}

/* POST /timertest/set {"due_ms" | "in_ms", "topic"?, "payload"?, "fail"?} → {"id"};
 * with "fail" the request answers 422 after setting it (so it must not exist). */
static int post_set(zt_req *req, void *ud)
{
    (void)ud;
    cJSON *j = body_object(req);
    if (!j) return ZT_OK;
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(j, "topic");
    char id[27];
    int rc =
        zt_timer_at(req, due_of(j), cJSON_IsString(topic) ? topic->valuestring : "_timertest.due",
                    cJSON_GetObjectItemCaseSensitive(j, "payload"), id);
    if (rc != ZT_OK) return reply_error(req, 422, rc);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fail")))
        return zt_problem(req, 422, "failed", NULL, "failed after setting timer %s, as asked", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    return reply(req, 201, o);
}

/* POST /timertest/bulk {"n", "due_ms", "step_ms"}: n timers at due_ms + i * step_ms, payload
 * {"i": i}, in this one request. */
static int post_bulk(zt_req *req, void *ud)
{
    (void)ud;
    cJSON *j = body_object(req);
    if (!j) return ZT_OK;
    int64_t n = (int64_t)num(j, "n", 0), due = due_of(j), step = (int64_t)num(j, "step_ms", 1);
    int64_t first = (int64_t)num(j, "first", 0);
    cJSON *payload = cJSON_CreateObject();
    cJSON *i_item = cJSON_AddNumberToObject(payload, "i", 0);
    if (!i_item) {
        cJSON_Delete(payload);
        return ZT_ENOMEM;
    }
    int rc = ZT_OK;
    for (int64_t i = 0; i < n && rc == ZT_OK; i++) {
        cJSON_SetNumberValue(i_item, (double)(first + i));
        rc = zt_timer_at(req, due + i * step, "_timertest.bulk", payload, NULL);
    }
    cJSON_Delete(payload);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "set", (double)n);
    return reply(req, 201, o);
}

/* GET /timertest/fired → {"items": [every event received, in order]} */
static int get_fired(zt_req *req, void *ud)
{
    (void)ud;
    zt_cursor *c;
    zt_kv kv;
    int rc = zt_cursor_open(zt_req_txn(req), fired, &c);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    while (zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv) == ZT_OK)
        cJSON_AddItemToArray(items, cJSON_ParseWithLength(kv.val, kv.vlen));
    zt_cursor_close(c);
    return reply(req, 200, o);
}

static int on_event(zt_req *ctx, const zt_event *ev, void *ud)
{
    (void)ud;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "timer", ev->timer ? ev->timer : "");
    cJSON_AddStringToObject(o, "topic", ev->topic);
    cJSON_AddStringToObject(o, "source", ev->source);
    cJSON_AddItemToObject(o, "payload", cJSON_Duplicate(ev->payload, 1));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return ZT_ENOMEM;
    unsigned char key[8];
    put_be64(key, ev->seq);
    zt_txn *t = zt_req_txn(ctx);
    int rc = t ? zt_put(t, fired, key, 8, text, strlen(text)) : ZT_EIO;
    cJSON_free(text);
    return rc;
}

static int init(zt_plugin *p)
{
    int rc = zt_db_open(p, "fired", &fired);
    if (rc != ZT_OK) return rc;
    const zt_route routes[] = {
        {"POST", "/timertest/set", post_set, NULL, ZT_ROLE_PUBLIC, 0, "Set a timer"},
        {"POST", "/timertest/bulk", post_bulk, NULL, ZT_ROLE_PUBLIC, 0, "Set many timers"},
        {"POST", "/timertest/cancel", cancel_timer, NULL, ZT_ROLE_PUBLIC, 0, "Cancel a timer"},
        {"GET", "/timertest/fired", get_fired, NULL, ZT_ROLE_PUBLIC, 0, "Events received"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if ((rc = zt_route_add(p, &routes[i])) != ZT_OK) return rc;
    if ((rc = zt_on(p, "_timertest.*", on_event, NULL)) != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "cannot subscribe: %s", zt_strerror(rc));
        return rc;
    }
    return ZT_OK;
}

ZT_PLUGIN(.name = "timertest", .version = "1", .description = "test: durable timers", .init = init);
