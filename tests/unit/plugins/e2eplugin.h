/* e2eplugin.h: what the test plugins of the end-to-end tests share (JSON answers, keys). */
#include <zt.h>

#include <stdint.h>

/* Answer with o (NULL: out of memory) and free it. */
static inline int reply(zt_req *req, int status, cJSON *o)
{
    int rc = o ? zt_respond_json(req, status, o) : ZT_ENOMEM;
    cJSON_Delete(o);
    return rc;
}

/* The request's JSON object, or NULL after answering 400. */
static inline cJSON *body_object(zt_req *req)
{
    cJSON *j;
    if (zt_req_json(req, &j) == ZT_OK && cJSON_IsObject(j)) return j;
    zt_problem(req, 400, "invalid-json", NULL, "send a JSON object");
    return NULL;
}

/* A number member, or def. */
static inline double num(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static inline void put_be64(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (unsigned char)v;
}

/* {"error": the ZT_E* code, "message": what zt_strerror says} */
static inline int reply_error(zt_req *req, int status, int rc)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddNumberToObject(o, "error", rc) ||
              !cJSON_AddStringToObject(o, "message", zt_strerror(rc)))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return reply(req, status, o);
}

/* POST /<plugin>/cancel {"id"} → 204, or 404 {"error"} */
static inline int cancel_timer(zt_req *req, void *ud)
{
    (void)ud;
    cJSON *j = body_object(req);
    if (!j) return ZT_OK;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
    int rc = zt_timer_cancel(req, id ? id : "");
    if (rc == ZT_ENOTFOUND) return reply_error(req, 404, rc);
    if (rc != ZT_OK) return rc;
    return zt_respond(req, 204, NULL, NULL, 0);
}
