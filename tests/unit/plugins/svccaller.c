/* svccaller.c: a test plugin calling services it may go without (wants). */
#include "e2eplugin.h"

static const char *const wants[] = {"svccredit.check", "svccredit.recurse", "svccredit.echo",
                                    "svccredit.remind", NULL};

/* POST /svccaller/call {"service", "args"?, "reject"?}: call it; answer
 * {"provided": false} when nobody provides it, {"error"} when it failed, else
 * {"provided": true, "result"}; with "reject" answer 422 after the call (the service's
 * writes then roll back with the request's). */
static int post_call(zt_req *req, void *ud)
{
    (void)ud;
    cJSON *j = body_object(req);
    if (!j) return ZT_OK;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "service");
    if (!cJSON_IsString(name)) return zt_problem(req, 422, "invalid", NULL, "service is required");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
    cJSON *result = NULL;
    int rc = zt_call(req, name->valuestring, args, &result);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "reject"))) {
        cJSON_Delete(result);
        return zt_problem(req, 422, "rejected", NULL, "rejected after the call, as asked");
    }
    if (rc == ZT_ENOTFOUND) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "provided", 0);
        return reply(req, 200, o);
    }
    if (rc != ZT_OK) return reply_error(req, 200, rc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "provided", 1);
    cJSON_AddItemToObject(o, "result", result ? result : cJSON_CreateNull());
    return reply(req, 200, o);
}

static int init(zt_plugin *p)
{
    const zt_route r = {.method = "POST",
                        .path = "/svccaller/call",
                        .handler = post_call,
                        .role = ZT_ROLE_PUBLIC,
                        .summary = "Call a service"};
    return zt_route_add(p, &r);
}

ZT_PLUGIN(.name = "svccaller", .version = "1", .description = "test: calls services",
          .wants = wants, .init = init);
