/* stubs.c: weak stand-ins for core functions being written now; real ones override them. */
#include "core.h"

#define WEAK __attribute__((weak))

WEAK zt_req *zt__job_new(zt_server *srv, zt_plugin *p, const char *method, const char *path)
{
    (void)srv, (void)p, (void)method, (void)path;
    return NULL;
}
WEAK int zt__job_end(zt_server *srv, zt_req *job, int rc)
{
    (void)srv, (void)job;
    return rc;
}
WEAK int zt__bus_open(zt_server *srv, char *err, size_t errlen)
{
    (void)srv, (void)err, (void)errlen;
    return ZT_OK;
}
WEAK int zt__bus_start(zt_server *srv, char *err, size_t errlen)
{
    (void)srv, (void)err, (void)errlen;
    return ZT_OK;
}
WEAK int zt__bus_emit_txn(zt_server *srv, zt_txn *t, const char *source, const char *reqid,
                          const char *timer, const char *topic, const cJSON *payload)
{
    (void)srv, (void)t, (void)source, (void)reqid, (void)timer, (void)topic, (void)payload;
    return ZT_ERROR;
}
WEAK void zt__bus_after_commit(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__bus_after_abort(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__bus_stop(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__bus_close(zt_server *srv)
{
    (void)srv;
}
WEAK int zt__bus_metrics(zt_server *srv, zt_buf *out)
{
    (void)srv, (void)out;
    return ZT_OK;
}
WEAK int zt_on(zt_plugin *p, const char *pattern, zt_event_fn fn, void *ud)
{
    (void)p, (void)pattern, (void)fn, (void)ud;
    return ZT_ERROR;
}
WEAK int zt_emit(zt_req *req, const char *topic, const cJSON *payload)
{
    (void)req, (void)topic, (void)payload;
    return ZT_ERROR;
}
WEAK int zt__timers_open(zt_server *srv, char *err, size_t errlen)
{
    (void)srv, (void)err, (void)errlen;
    return ZT_OK;
}
WEAK void zt__timers_start(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__timers_after_commit(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__timers_after_abort(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__timers_clock_moved(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__timers_stop(zt_server *srv)
{
    (void)srv;
}
WEAK void zt__timers_close(zt_server *srv)
{
    (void)srv;
}
WEAK int zt__timers_metrics(zt_server *srv, zt_buf *out)
{
    (void)srv, (void)out;
    return ZT_OK;
}
WEAK int zt_timer_at(zt_req *req, int64_t due_ms, const char *topic, const cJSON *payload,
                     char id[27])
{
    (void)req, (void)due_ms, (void)topic, (void)payload, (void)id;
    return ZT_ERROR;
}
WEAK int zt_timer_cancel(zt_req *req, const char *id)
{
    (void)req, (void)id;
    return ZT_ERROR;
}
WEAK int zt__services_check(zt_server *srv, char *err, size_t errlen)
{
    (void)srv, (void)err, (void)errlen;
    return ZT_OK;
}
WEAK void zt__services_free(zt_server *srv)
{
    (void)srv;
}
WEAK int zt_provide(zt_plugin *p, const char *name, zt_service_fn fn, void *ud)
{
    (void)p, (void)name, (void)fn, (void)ud;
    return ZT_ERROR;
}
WEAK int zt_call(zt_req *req, const char *name, const cJSON *args, cJSON **result)
{
    (void)req, (void)name, (void)args;
    *result = NULL;
    return ZT_ENOTFOUND;
}
WEAK const char *zt_plugin_at(const zt_plugin *p, size_t i)
{
    return i < p->srv->nplugins ? p->srv->plugins[i]->name : NULL;
}
WEAK const char *zt_lua_dir(const zt_plugin *p)
{
    return p->srv->conf->lua_dir;
}
WEAK int zt_lua_new(zt_plugin *p, lua_State **out)
{
    (void)p;
    *out = NULL;
    return ZT_ERROR;
}
WEAK int zt_lua_run(lua_State *L, const char *name, const char *src, size_t len, int nresults,
                    char *err, size_t errlen)
{
    (void)L, (void)name, (void)src, (void)len, (void)nresults;
    snprintf(err, errlen, "not built yet");
    return ZT_ERROR;
}
WEAK int zt_lua_call(lua_State *L, zt_req *ctx, int nargs, int nresults, char *err, size_t errlen)
{
    (void)L, (void)ctx, (void)nargs, (void)nresults;
    snprintf(err, errlen, "not built yet");
    return ZT_ERROR;
}
WEAK void zt_lua_push_json(lua_State *L, const cJSON *v)
{
    (void)L, (void)v;
}
WEAK int zt_lua_to_json(lua_State *L, int idx, cJSON **out)
{
    (void)L, (void)idx;
    *out = NULL;
    return ZT_ERROR;
}
