/* service.c: services between plugins: provided by name during init, called synchronously. */
#include "core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64
#define DEPTH_MAX    16

typedef struct service {
    char *name;
    zt_plugin *plugin;
    zt_service_fn fn;
    void *ud;
} service;

/* Sorted by name: declared once during init, looked up on every call. */
struct zt_services {
    service *items;
    size_t n, cap;
};

bool zt__service_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

zt_plugin *zt__req_plugin(const zt_req *req)
{
    if (req->service_plugin) return req->service_plugin;
    if (req->job_plugin) return req->job_plugin;
    return req->match.route ? req->match.route->plugin : NULL;
}

/* The index of name, or where it would go (*found false). */
static size_t find(const zt_services *sv, const char *name, bool *found)
{
    size_t lo = 0, hi = sv ? sv->n : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sv->items[mid].name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static const service *lookup(const zt_server *srv, const char *name)
{
    bool found;
    size_t i = find(srv->services, name, &found);
    return found ? &srv->services->items[i] : NULL;
}

/* A declaration that stops the start even if the plugin ignores the error, as a route
 * conflict does. */
static void refuse(zt_plugin *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(zt_plugin *p, const char *fmt, ...)
{
    char msg[ZT_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zt_log(p, ZT_LOG_ERROR, "%s", msg);
    zt__refuse_start(p->srv, msg);
}

int zt_provide(zt_plugin *p, const char *name, zt_service_fn fn, void *ud)
{
    if (!p || !p->in_init) {
        if (p)
            zt_log(p, ZT_LOG_ERROR, "zt_provide outside init: services are provided during init");
        return ZT_ESTATE;
    }
    if (!zt__service_name_ok(name) || !fn) {
        refuse(p,
               "plugin '%s' provides a service with a bad name '%s': a service name is 1..64 "
               "bytes of [A-Za-z0-9_.-]",
               p->name, name ? name : "(null)");
        return ZT_EINVAL;
    }
    zt_server *srv = p->srv;
    if (!srv->services && !(srv->services = calloc(1, sizeof *srv->services))) return ZT_ENOMEM;
    zt_services *sv = srv->services;
    bool found;
    size_t at = find(sv, name, &found);
    if (found) {
        refuse(p,
               "service '%s' of plugin '%s' is already provided by plugin '%s': enable only one "
               "of them",
               name, p->name, sv->items[at].plugin->name);
        return ZT_ECONFLICT;
    }
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        service *a = realloc(sv->items, cap * sizeof *a);
        if (!a) return ZT_ENOMEM;
        sv->items = a;
        sv->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return ZT_ENOMEM;
    memmove(&sv->items[at + 1], &sv->items[at], (sv->n - at) * sizeof *sv->items);
    sv->items[at] = (service){.name = copy, .plugin = p, .fn = fn, .ud = ud};
    sv->n++;
    return ZT_OK;
}

/* The service name if its plugin runs, else NULL. */
static const service *running(const zt_server *srv, const char *name)
{
    const service *s = name ? lookup(srv, name) : NULL;
    return s && s->plugin->state == ZT_PSTATE_RUNNING ? s : NULL;
}

bool zt__service_provided(const zt_server *srv, const char *name)
{
    return running(srv, name) != NULL;
}

int zt_call(zt_req *req, const char *name, const cJSON *args, cJSON **result)
{
    assert(req);
    cJSON *ignored = NULL;
    if (!result) result = &ignored; /* the caller wants only the outcome */
    *result = NULL;
    req->call_fail.msg = NULL;
    const service *s = running(req->srv, name);
    req->call_fail.not_provided = !s;
    if (!s) return ZT_ENOTFOUND;
    if (req->call_depth >= DEPTH_MAX) {
        zt_req_log(req, ZT_LOG_WARN, "zt_call('%s'): services call each other deeper than %d", name,
                   DEPTH_MAX);
        return ZT_EBUSY;
    }
    /* A call is one piece: what a service that fails wrote (its records, events, timers)
     * is undone, and what it noted for the audit record too; the caller's writes before
     * it stay, and a caller that copes with the failure goes on as if it was not made. */
    zt__savepoint sp = {0};
    if (req->srv->store && !zt__req_reads(req)) { /* (no store: unit tests of calls) */
        zt_txn *t = zt_req_txn(req);
        int rc = t ? zt__store_savepoint(t, &sp) : ZT_EIO;
        if (rc != ZT_OK) return rc;
    }
    const char *note_action = req->audit_action, *note_object = req->audit_object;
    bool note_read = req->audit_read;
    cJSON null = {.type = cJSON_NULL};
    zt_plugin *outer = req->service_plugin;
    req->service_plugin = s->plugin; /* what the service does (events, timers) is its own */
    req->call_depth++;
    cJSON *res = NULL;
    int rc = s->fn(req, args ? args : &null, &res, s->ud);
    req->call_depth--;
    req->service_plugin = outer;
    int src = zt__store_savepoint_end(req->txn, &sp, rc == ZT_OK);
    if (rc == ZT_OK && src != ZT_OK) {
        zt_req_log(req, ZT_LOG_ERROR, "zt_call('%s'): its writes cannot be kept: %s", name,
                   zt_strerror(src));
        rc = src;
    }
    if (rc != ZT_OK) {
        req->audit_action = note_action;
        req->audit_object = note_object;
        req->audit_read = note_read;
        cJSON_Delete(res);
        /* what a call it made in turn left is not why this service failed */
        if (req->call_fail.not_provided || req->call_fail.depth != req->call_depth + 1) {
            req->call_fail.not_provided = false;
            req->call_fail.msg = NULL;
        }
        return rc;
    }
    *result = res;
    cJSON_Delete(ignored);
    return ZT_OK;
}

void zt__call_fail(zt_req *req, const char *msg)
{
    assert(req->call_depth > 0); /* inside a service */
    req->call_fail.not_provided = false;
    req->call_fail.depth = req->call_depth;
    req->call_fail.msg = zt__arena_strndup(&req->arena, msg, strlen(msg)); /* NULL: unsaid */
}

int zt__services_check(zt_server *srv, char *err, size_t errlen)
{
    for (size_t i = 0; i < srv->nplugins; i++) {
        const zt_plugin *p = srv->plugins[i];
        for (size_t j = 0; j < p->nneeds; j++) {
            if (zt__service_provided(srv, p->needs[j])) continue;
            snprintf(err, errlen,
                     "plugin '%s' needs service '%s', which no enabled plugin provides: enable "
                     "the plugin that provides it (e.g. add it to plugins) or remove '%s'",
                     p->name, p->needs[j], p->name);
            return ZT_ENOTFOUND;
        }
        for (size_t j = 0; j < p->nwants; j++)
            if (!lookup(srv, p->wants[j]))
                zt__log(ZT_LOG_INFO, p->name, NULL,
                        "service '%s' is not provided by any enabled plugin: the plugin goes "
                        "without it",
                        p->wants[j]);
    }
    return ZT_OK;
}

void zt__services_free(zt_server *srv)
{
    zt_services *sv = srv->services;
    if (!sv) return;
    for (size_t i = 0; i < sv->n; i++) free(sv->items[i].name);
    free(sv->items);
    free(sv);
    srv->services = NULL;
}
