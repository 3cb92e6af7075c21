/* server.c: the node: start-up, request dispatch, group commit, built-in routes, shutdown. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

/* ---- dispatch -------------------------------------------------------------------- */

size_t zt__server_route(zt_server *srv, zt_req *req)
{
    req->route_rc = zt__router_match(srv->router, req->method, req->path, &req->match);
    if (req->route_rc == ZT_OK) {
        /* Parameters point into the path; give each its own NUL-terminated copy. */
        for (unsigned i = 0; i < req->match.nparams; i++) {
            char *v = zt__arena_strndup(&req->arena, req->match.pval[i], req->match.plen[i]);
            if (v) req->match.pval[i] = v;
        }
        if (req->match.route->body_limit) return req->match.route->body_limit;
    }
    return srv->conf->body_bytes;
}

static int status_for(int rc)
{
    switch (rc) {
    case ZT_EFULL:
        return 507;
    case ZT_EBUSY:
        return 503;
    case ZT_EIO:
        return 503;
    default:
        return 500;
    }
}

/* Returns whether the request's answer now waits for the batch's commit. */
static bool batch_add(zt_server *srv, zt_req *req)
{
    if (srv->nbatch == srv->capbatch) {
        size_t cap = srv->capbatch ? srv->capbatch * 2 : 64;
        zt_req **a = realloc(srv->batch_reqs, cap * sizeof(*a));
        if (!a) {
            /* Cannot track it: it still waits for the commit (used_batch), but a failed
             * commit could not rewrite its answer. Refuse it rather than risk a lie. */
            zt__problem(req, 503, "overloaded", NULL, "the node is out of memory; try again");
            return false;
        }
        srv->batch_reqs = a;
        srv->capbatch = cap;
    }
    srv->batch_reqs[srv->nbatch++] = req;
    return true;
}

/* After a handler (or its asynchronous continuation) has run: check it answered, end its
 * transaction (kept only on success), and let the answer go out after the commit. */
static void complete(zt_server *srv, zt_req *req, int rc)
{
    const zt__route *rt = req->match.route;
    if (rc != ZT_OK && !req->responded) {
        zt_req_log(req, ZT_LOG_ERROR, "handler of %s %s failed: %s", rt->method, rt->pattern,
                   zt_strerror(rc));
        zt__problem(req, status_for(rc), rc == ZT_EFULL ? "storage-full" : "internal-error", NULL,
                    "the request failed (%s); nothing of it was saved; the log has request id %s",
                    zt_strerror(rc), req->id);
    } else if (rc != ZT_OK) {
        /* It answered, then failed: its writes are dropped below, so an answer that says
         * they were made (a status below 400) would lie; a refusal it gave stands. */
        zt_req_log(req, ZT_LOG_ERROR, "handler of %s %s answered %d, then failed: %s%s", rt->method,
                   rt->pattern, req->status, zt_strerror(rc),
                   req->status < 400 ? "; answered 500 instead" : "");
        if (req->status < 400)
            zt__problem(req, 500, "internal-error", NULL,
                        "the request failed (%s) after its answer was made; nothing of it was "
                        "saved; the log has request id %s",
                        zt_strerror(rc), req->id);
    } else if (!req->responded) {
        zt_req_log(req, ZT_LOG_ERROR, "handler of %s %s returned without responding", rt->method,
                   rt->pattern);
        zt__problem(req, 500, "internal-error", NULL,
                    "the handler gave no answer; nothing of the request was saved");
        rc = ZT_ERROR;
    }
    bool commit = rc == ZT_OK && req->status < 400, in_batch;
    /* A change and its audit record commit together (in the batch), or neither does; a
     * read its handler noted (zt_audit_note) is answered once its record is on disk. */
    int erc = zt__req_end_txn(srv, req, commit, commit && (!zt__req_reads(req) || req->audit_read),
                              &in_batch);
    if (erc == ZT_ENOMEM) /* the audit record or the writes: either way, try again */
        zt__problem(req, 503, "storage-failure", NULL,
                    "the node is out of memory; nothing of the change was written");
    else if (erc != ZT_OK)
        zt__problem(req, status_for(erc), "storage-failure", NULL,
                    "the change could not be saved (%s); nothing of it was written",
                    zt_strerror(erc));
    bool held = false;
    if (in_batch) {
        req->used_batch = true;
        held = batch_add(srv, req);
    }
    if (req->status == 403) zt__auth_refused(srv, req);
    zt__auth_after(srv, req);
    req->ready = !held; /* a held answer goes out when its batch has committed (batch_end) */
}

static void run_handler(zt_server *srv, zt_req *req)
{
    const zt__route *rt = req->match.route;
    if (zt__auth_check(srv, req) != ZT_OK) {
        complete(srv, req, ZT_OK);
        return;
    }
    int rc = rt->handler(req, rt->ud);
    if (req->async) {
        /* The work runs and its done will be called with the request: it must wait for
         * that, whatever the handler returned, or done runs on a request answered and
         * freed. What the handler said instead of ZT_ASYNC is kept for the answer. */
        if (rc != ZT_ASYNC) {
            zt_req_log(req, ZT_LOG_ERROR,
                       "handler of %s %s called zt_work() but returned %d (%s), not ZT_ASYNC: "
                       "the answer waits for the work's done",
                       rt->method, rt->pattern, rc, rc == ZT_OK ? "ZT_OK" : zt_strerror(rc));
            req->work_handler_rc = rc;
        }
        /* A transaction never spans the wait: whatever it read is stale by then. */
        if (req->txn) {
            zt__store_end(srv->store, req->txn, false);
            req->txn = NULL;
        }
        return;
    }
    if (rc == ZT_ASYNC) {
        zt_req_log(req, ZT_LOG_ERROR, "handler returned ZT_ASYNC without zt_work()");
        rc = ZT_ERROR;
    }
    complete(srv, req, rc);
}

void zt__server_handle(zt_server *srv, zt_req *req)
{
    if (!req->responded) {
        if (req->route_rc == ZT_OK) {
            run_handler(srv, req);
            return;
        } else if (req->route_rc == ZT_EPERM) {
            zt__problem(req, 405, "method-not-allowed", NULL, "%s is not allowed on %s; use %s",
                        req->method, req->path, req->match.allow);
            zt_res_header(req, "Allow", req->match.allow);
        } else {
            int rc = zt__req_reads(req) ? zt__static_serve(srv, req) : ZT_ENOTFOUND;
            if (rc != ZT_OK && !req->responded)
                zt__problem(req, 404, "not-found", NULL, "there is nothing at %s", req->path);
        }
    }
    req->ready = true;
}

/* ---- work off the event loop ----------------------------------------------------- */

typedef struct work {
    uv_work_t w;
    zt_req *req;
    void (*fn)(void *arg);
    int (*done)(zt_req *req, void *arg);
    void *arg;
} work;

static void on_work(uv_work_t *w)
{
    work *k = w->data;
    k->fn(k->arg);
}

static void on_work_done(uv_work_t *w, int status)
{
    work *k = w->data;
    zt_req *req = k->req;
    zt_server *srv = req->srv;
    req->async = false;
    int rc = status == 0 ? k->done(req, k->arg) : ZT_ERROR;
    free(k);
    if (rc == ZT_ASYNC) rc = ZT_ERROR; /* one hop off the loop per handler */
    if (rc == ZT_OK && req->work_handler_rc != ZT_OK)
        rc = req->work_handler_rc; /* the handler failed, though it waited wrongly */
    complete(srv, req, rc);
    zt__http_ready(req);
}

int zt_work(zt_req *req, void (*fn)(void *arg), int (*done)(zt_req *req, void *arg), void *arg)
{
    /* a job cannot wait, nor a service: its caller goes on when it returns */
    if (req->async || req->responded || req->job_plugin || req->call_depth) return ZT_ESTATE;
    work *k = calloc(1, sizeof(*k));
    if (!k) return ZT_ENOMEM;
    k->w.data = k;
    k->req = req;
    k->fn = fn;
    k->done = done;
    k->arg = arg;
    int rc = uv_queue_work(req->srv->loop, &k->w, on_work, on_work_done);
    if (rc != 0) {
        free(k);
        return ZT_ERROR;
    }
    req->async = true;
    return ZT_OK;
}

void zt__server_done(zt_server *srv, zt_req *req)
{
    uint64_t ns = uv_hrtime() - req->t_start_ns;
    int idx = req->match.route ? (int)req->match.route->idx : -1;
    zt__metrics_request(srv->metrics, idx, req->status, ns);
    if (req->used_batch)
        for (size_t i = 0; i < srv->nbatch; i++)
            if (srv->batch_reqs[i] == req) srv->batch_reqs[i] = NULL;
    if (req->status >= 500 || req->status == 0)
        zt__log(ZT_LOG_WARN, NULL, req->id, "%s %s → %d in %.3f ms", req->method,
                req->path ? req->path : "?", req->status, (double)ns / 1e6);
    else if (zt__log_level <= ZT_LOG_DEBUG)
        zt__log(ZT_LOG_DEBUG, NULL, req->id, "%s %s → %d in %.3f ms", req->method,
                req->path ? req->path : "?", req->status, (double)ns / 1e6);
}

/* Commit the open batch (its audit records first), then let its answers go out: the
 * group commit, one fsync for every request of the batch. A batch that cannot be
 * committed is lost whole, and each of its requests is answered so. */
static void batch_end(zt_server *srv)
{
    int rc = ZT_OK;
    if (zt__audit_queued(srv)) rc = zt__audit_flush(srv);
    if (rc != ZT_OK) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "audit: cannot append the batch's records: %s",
                zt_strerror(rc));
        zt__store_batch_abort(srv->store); /* no change without its record */
    } else if (zt__store_batch_open(srv->store)) {
        rc = zt__store_batch_commit(srv->store);
        if (rc == ZT_OK) {
            zt__bus_after_commit(srv);
            zt__timers_after_commit(srv);
            zt__syslog_after_commit(srv);
        }
    }
    if (rc != ZT_OK) {
        zt__bus_after_abort(srv);
        zt__timers_after_abort(srv);
        zt__auth_after_abort(srv);
        zt__log(ZT_LOG_ERROR, NULL, NULL, "storage: batch lost: %s (%zu requests)", zt_strerror(rc),
                srv->nbatch);
    }
    zt__bw_end(&srv->bw, uv_hrtime());
    for (size_t i = 0; i < srv->nbatch; i++) {
        zt_req *req = srv->batch_reqs[i];
        if (!req) continue; /* its connection is gone and it was answered to nobody */
        srv->batch_reqs[i] = NULL;
        if (rc != ZT_OK)
            zt__problem(req, status_for(rc), "storage-failure", NULL,
                        "the change could not be saved (%s); nothing of it was written",
                        zt_strerror(rc));
        req->ready = true;
        zt__http_ready(req);
    }
    srv->nbatch = 0;
}

static void on_commit_timer(uv_timer_t *t);

/* End the open batch unless it waits for more writers (batch.c), then send the answers
 * that are ready. */
static void settle(zt_server *srv)
{
    if (srv->store && (zt__store_batch_open(srv->store) || srv->nbatch || zt__audit_queued(srv))) {
        uint64_t wait = 0;
        if (!srv->stopping)
            wait =
                zt__bw_wait(&srv->bw, uv_hrtime(), srv->conf->commit_wait_ms * UINT64_C(1000000));
        if (wait) {
            if (!uv_is_active((uv_handle_t *)&srv->commit_timer)) {
                uv_update_time(srv->loop); /* the iteration's work and commit made it stale */
                uv_timer_start(&srv->commit_timer, on_commit_timer, (wait + 999999) / 1000000, 0);
            }
        } else {
            uv_timer_stop(&srv->commit_timer);
            batch_end(srv);
        }
    }
    zt__http_flush(srv);
}

/* Once per loop iteration, after the I/O callbacks. */
static void on_check(uv_check_t *h)
{
    zt_server *srv = h->data;
    settle(srv);
    srv->iteration++;
}

/* libuv's clock counts whole milliseconds: the timer may fire early; settle then waits on
 * for what is left. */
static void on_commit_timer(uv_timer_t *t)
{
    settle(t->data);
}

/* ---- built-in routes ------------------------------------------------------------- */

static const char *state_name(int st)
{
    switch (st) {
    case ZT_PSTATE_LOADED:
        return "loaded";
    case ZT_PSTATE_RUNNING:
        return "running";
    case ZT_PSTATE_FAILED:
        return "failed";
    default:
        return "stopped";
    }
}

static int h_healthz(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    cJSON *o = cJSON_CreateObject();
    bool ok = !srv->stopping;
    cJSON_AddStringToObject(o, "node", srv->conf->node_name);
    cJSON_AddStringToObject(o, "region_code", srv->conf->region_code);
    cJSON_AddStringToObject(o, "version", ZT_VERSION);
    cJSON_AddNumberToObject(o, "uptime_seconds", (double)(uv_hrtime() - srv->started_ns) / 1e9);
    cJSON *ps = cJSON_AddArrayToObject(o, "plugins");
    for (size_t i = 0; i < srv->nplugins; i++) {
        zt_plugin *p = srv->plugins[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", p->name);
        cJSON_AddStringToObject(e, "kind", p->kind == ZT_PLUGIN_C ? "c" : "lua");
        cJSON_AddStringToObject(e, "version", p->version ? p->version : "");
        cJSON_AddStringToObject(e, "state", state_name(p->state));
        cJSON_AddItemToArray(ps, e);
        if (p->state != ZT_PSTATE_RUNNING) ok = false;
    }
    cJSON_AddStringToObject(o, "status", ok ? "ok" : srv->stopping ? "stopping" : "degraded");
    int rc = zt_respond_json(req, ok ? 200 : 503, o);
    cJSON_Delete(o);
    return rc;
}

static int h_metrics(zt_req *req, void *ud)
{
    zt_buf b = {0};
    int rc = zt__metrics_render(ud, &b);
    if (rc == ZT_OK)
        rc = zt_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    zt__buf_free(&b);
    return rc;
}

static int h_api(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "node", srv->conf->node_name);
    cJSON *rs = cJSON_AddArrayToObject(o, "routes");
    size_t n = zt__router_count(srv->router);
    for (size_t i = 0; i < n; i++) {
        const zt__route *rt = zt__router_at(srv->router, i);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "method", rt->method);
        cJSON_AddStringToObject(e, "path", rt->pattern);
        cJSON_AddStringToObject(e, "plugin", rt->plugin ? rt->plugin->name : "core");
        cJSON_AddStringToObject(e, "role", rt->role);
        if (rt->or_role) cJSON_AddStringToObject(e, "or_role", rt->or_role);
        cJSON_AddNumberToObject(e, "body_limit",
                                (double)(rt->body_limit ? rt->body_limit : srv->conf->body_bytes));
        if (rt->summary) cJSON_AddStringToObject(e, "summary", rt->summary);
        cJSON_AddItemToArray(rs, e);
    }
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

/* Tests move the clock (token expiry, deadlines) through this route, which exists only
 * when the environment variable ZT_TEST_CLOCK is set: never in production. */
static int h_test_clock(zt_req *req, void *ud)
{
    cJSON *j, *adv;
    if (zt_req_json(req, &j) != ZT_OK ||
        !cJSON_IsNumber(adv = cJSON_GetObjectItemCaseSensitive(j, "offset_ms")))
        return zt_problem(req, 400, "invalid-json", NULL, "send {\"offset_ms\": N}");
    zt__clock_set_offset_ms((int64_t)adv->valuedouble);
    zt__timers_clock_moved(req->srv);
    zt__log(ZT_LOG_WARN, NULL, req->id, "test clock: offset now %lld ms",
            (long long)adv->valuedouble);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "now", (double)zt_now_ms());
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int add_test_clock(zt_server *srv, char *err, size_t errlen)
{
    zt_route r = {.method = "POST",
                  .path = "/_test/clock",
                  .handler = h_test_clock,
                  .role = ZT_ROLE_PUBLIC,
                  .summary = "TEST MODE: move the clock"};
    zt__log(ZT_LOG_WARN, NULL, NULL, "ZT_TEST_CLOCK is set: the clock can be moved over HTTP");
    return zt__router_add(srv->router, NULL, &r, err, errlen);
}

static int add_builtin(zt_server *srv, const char *path, zt_handler h, const char *summary,
                       char *err, size_t errlen)
{
    zt_route r = {.method = "GET",
                  .path = path,
                  .handler = h,
                  .ud = srv,
                  .role = ZT_ROLE_PUBLIC,
                  .summary = summary};
    return zt__router_add(srv->router, NULL, &r, err, errlen);
}

/* ---- life cycle ------------------------------------------------------------------ */

#define KEY_CHECK     "master_key_check"
#define KEY_CHECK_CTX "ztkeychk"

/* What the store remembers of its master key: its check value (*checked, had), and
 * whether it holds data sealed under one (*data). */
static int key_memory(zt_store *store, zt_db **meta, bool *checked, unsigned char had[32],
                      bool *data, char *err, size_t errlen)
{
    zt_db *users;
    zt_txn *t;
    const void *v;
    size_t vl = 0;
    zt_kv kv;
    int rc = zt__store_db(store, "_core", "store", meta);
    if (rc == ZT_OK) rc = zt__store_db(store, "_core", "users", &users);
    if (rc == ZT_OK) rc = zt__store_read_begin(store, &t);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot read the store: %s", zt_strerror(rc));
        return rc;
    }
    *checked = zt_get(t, *meta, KEY_CHECK, strlen(KEY_CHECK), &v, &vl) == ZT_OK && vl == 32;
    if (*checked) memcpy(had, v, 32);
    *data = *checked || zt__db_edge(t, users, ZT_FIRST, &kv) == ZT_OK;
    zt__store_end(store, t, false);
    return ZT_OK;
}

/* Open key_file (made if it is missing and the store holds no data) as the master key of
 * the store in data_dir that remembers (checked, had); *check is the key's check value. */
static int key_open_matching(const char *key_file, const char *data_dir, bool data, bool checked,
                             const unsigned char had[32], zt_keys **keys, unsigned char check[32],
                             char *err, size_t errlen)
{
    struct stat st;
    if (data && stat(key_file, &st) != 0 && errno == ENOENT) {
        snprintf(err, errlen,
                 "key file %s is missing, but data_dir %s holds data sealed under a master key: "
                 "restore that key file (from where you keep it with the backups) or correct "
                 "key_file; a new key would leave the sealed data unreadable",
                 key_file, data_dir);
        return ZT_ENOTFOUND;
    }
    int rc = zt__keys_open(key_file, keys, err, errlen);
    if (rc != ZT_OK) return rc;
    if ((rc = zt__keys_derive(*keys, KEY_CHECK_CTX, 1, check, 32)) != ZT_OK) {
        snprintf(err, errlen, "key file %s: cannot derive its check value", key_file);
        return rc;
    }
    if (!checked || sodium_memcmp(had, check, 32) == 0) return ZT_OK;
    snprintf(err, errlen,
             "key file %s is not the master key data_dir %s was made with (its check value "
             "differs): restore the key file that belongs to this data, or correct key_file",
             key_file, data_dir);
    return ZT_EINVAL;
}

/* The master key must be the one the data was made with: with another (a key file lost
 * and made anew, the wrong file restored, a typo in key_file) the sealed fields, seal keys
 * and the node key cannot be opened, and checkpoints would fail batch after batch. The
 * store keeps a check value derived from the key (it reveals nothing of it); a store that
 * has one, or that holds accounts, needs its key file to be there and to match. */
static int open_master_key(zt_server *srv, const char *key_file, char *err, size_t errlen)
{
    zt_db *meta;
    zt_txn *t;
    bool checked, data;
    unsigned char had[32] = {0}, check[32];
    int rc = key_memory(srv->store, &meta, &checked, had, &data, err, errlen);
    if (rc == ZT_OK)
        rc = key_open_matching(key_file, srv->conf->data_dir, data, checked, had, &srv->keys, check,
                               err, errlen);
    if (rc != ZT_OK || checked) return rc;
    if ((rc = zt__store_write_begin(srv->store, &t)) == ZT_OK) {
        rc = zt_put(t, meta, KEY_CHECK, strlen(KEY_CHECK), check, sizeof check);
        rc = zt__store_write_done(srv->store, t, rc);
    }
    if (rc != ZT_OK)
        snprintf(err, errlen, "cannot note the master key's check value: %s", zt_strerror(rc));
    return rc;
}

int zt__server_check_key(const zt_conf *conf, char *err, size_t errlen)
{
    char mdb[4096];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", conf->data_dir);
    if (stat(mdb, &st) != 0) return ZT_OK; /* no data yet: the first start makes the key */
    const char *key_file = conf->key_file; /* a loaded config always names one */
    if (!key_file) return ZT_OK;
    zt_store *store;
    zt_db *meta;
    zt_keys *keys = NULL;
    bool checked, data;
    unsigned char had[32] = {0}, check[32];
    int rc = zt__store_open(&store, conf->data_dir, conf->map_size, err, errlen);
    if (rc != ZT_OK) return rc;
    rc = key_memory(store, &meta, &checked, had, &data, err, errlen);
    zt__store_close(store);
    /* check makes no key: one that is missing where serve would make it is no error */
    if (rc == ZT_OK && (data || stat(key_file, &st) == 0))
        rc = key_open_matching(key_file, conf->data_dir, data, checked, had, &keys, check, err,
                               errlen);
    zt__keys_close(keys);
    sodium_memzero(check, sizeof check);
    return rc;
}

int zt__server_open_core(zt_server *srv, zt_conf *conf, const char *data_dir, char *err,
                         size_t errlen)
{
    srv->conf = conf;
    srv->started_ns = uv_hrtime();
    zt__bw_init(&srv->bw);
    zt__log_level = conf->log_level;
    int rc = zt__store_open(&srv->store, data_dir, conf->map_size, err, errlen);
    if (rc != ZT_OK) return rc;
    /* before anything is written: the CLI's changes beside a replicating node are logged */
    if ((rc = zt__store_repl_open(srv->store, conf->repl_keep)) != ZT_OK) {
        snprintf(err, errlen, "data_dir %s: cannot open the replication log: %s", data_dir,
                 zt_strerror(rc));
        return rc;
    }
    zt_repl_state rs;
    if ((rc = zt__store_repl_state(srv->store, &rs)) != ZT_OK) {
        snprintf(err, errlen, "data_dir %s: cannot read the replication log: %s", data_dir,
                 zt_strerror(rc));
        return rc;
    }
    snprintf(srv->standby_of, sizeof srv->standby_of, "%s", rs.standby);
    /* a standby changes through its primary only: its next change set would not apply */
    if (srv->changes && rs.standby[0]) {
        snprintf(err, errlen,
                 "data_dir %s is a standby of %s: changes made here would make it differ from "
                 "the primary; make them on the primary, or promote the standby (zhengtong "
                 "serve) first",
                 data_dir, rs.standby);
        return ZT_ESTATE;
    }
    if ((rc = zt__store_format(srv->store, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__router_new(&srv->router)) != ZT_OK) return rc;
    if ((rc = add_builtin(srv, "/healthz", h_healthz, "Node and plugin health", err, errlen)) ||
        (rc = add_builtin(srv, "/metrics", h_metrics, "Prometheus metrics", err, errlen)) ||
        (rc = add_builtin(srv, "/api", h_api, "Every route, its plugin and role", err, errlen)))
        return rc;
    char scratch_key[4096];
    const char *key_file = conf->key_file;
    if (srv->check_only || !key_file) { /* check never creates the live key */
        snprintf(scratch_key, sizeof scratch_key, "%s/master.key", data_dir);
        key_file = scratch_key;
    }
    if ((rc = open_master_key(srv, key_file, err, errlen)) != ZT_OK) return rc;
    unsigned char dbkey[32]; /* seals the values of sealed databases (zt_db_open_sealed) */
    rc = zt__keys_derive(srv->keys, "ztdbseal", 1, dbkey, sizeof dbkey);
    if (rc == ZT_OK) rc = zt__store_seal_key(srv->store, dbkey);
    sodium_memzero(dbkey, sizeof dbkey);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot derive the key that seals databases: %s", zt_strerror(rc));
        return rc;
    }
    if ((rc = zt__seals_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__audit_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__audit_routes(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__auth_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__roles_open(srv, err, errlen)) != ZT_OK) return rc;
    if (getenv("ZT_TEST_CLOCK") && (rc = add_test_clock(srv, err, errlen)) != ZT_OK) return rc;
    return ZT_OK;
}

/* `serve`: replication as the config says (a log begun, or dropped); a standby's data
 * served is promoted. */
static int repl_config(zt_server *srv, char *err, size_t errlen)
{
    zt_repl_state st;
    int what;
    bool on = srv->conf->repl_listen != NULL;
    int rc = zt__store_repl_config(srv->store, on, &st, &what);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot %s the replication log: %s", on ? "begin" : "end",
                 zt_strerror(rc));
        return rc;
    }
    if (what & ZT_REPL_PROMOTED)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "replication: data_dir %s was a standby's (of %s), as of the primary's batch %llu: "
                "promoted, it is a node of its own from now on; the old primary must not serve "
                "again beside it (re-seed it as this node's standby instead)",
                srv->conf->data_dir, st.standby, (unsigned long long)st.head);
    if (what & ZT_REPL_STARTED)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "replication: change log begun: every change is logged from now on; seed the "
                "standby from a `zhengtong backup` made from now on");
    if (what & ZT_REPL_STOPPED)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "replication: off (no replication in %s): the change log was dropped; a standby "
                "must be re-seeded from a new backup once it is on again",
                srv->conf->file);
    return ZT_OK;
}

int zt__server_open(zt_server *srv, zt_conf *conf, const char *data_dir, char *err, size_t errlen)
{
    int rc = zt__server_open_core(srv, conf, data_dir, err, errlen);
    if (rc != ZT_OK) return rc;
    if (!srv->check_only && !srv->lua_tests && (rc = repl_config(srv, err, errlen)) != ZT_OK)
        return rc;
    if ((rc = zt__bus_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__bus_routes(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__timers_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__posts_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__plugins_load(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__code_open(srv, err, errlen)) != ZT_OK) return rc;
    if ((rc = zt__plugins_init(srv, err, errlen)) != ZT_OK) return rc;
    if (srv->route_error[0]) {
        snprintf(err, errlen, "%s", srv->route_error);
        return ZT_ECONFLICT;
    }
    zt__roles_from_routes(srv); /* the core's roles are declared by zt__roles_open */
    /* under `zhengtong test` the Lua providers did not start (a test file provides
     * stand-ins), so what they provide is not checked */
    if (!srv->lua_tests && (rc = zt__services_check(srv, err, errlen)) != ZT_OK) return rc;
    return zt__metrics_new(&srv->metrics, zt__router_count(srv->router));
}

static void on_close_free_nothing(uv_handle_t *h)
{
    (void)h;
}

static void finish_shutdown(zt_server *srv)
{
    zt__http_close_all(srv);
    zt__bus_stop(srv);
    zt__timers_stop(srv);
    zt__posts_stop(srv);
    /* What the last iteration wrote is committed and answered before the loop ends. */
    on_check(&srv->commit_check);
    zt__audit_checkpoint(srv);
    zt__syslog_stop(srv);
    uv_close((uv_handle_t *)&srv->commit_check, on_close_free_nothing);
    uv_close((uv_handle_t *)&srv->commit_timer, on_close_free_nothing);
    uv_close((uv_handle_t *)&srv->sigint, on_close_free_nothing);
    uv_close((uv_handle_t *)&srv->sigterm, on_close_free_nothing);
    uv_close((uv_handle_t *)&srv->sighup, on_close_free_nothing);
    uv_close((uv_handle_t *)&srv->shutdown_timer, on_close_free_nothing);
}

static void on_shutdown_tick(uv_timer_t *t)
{
    zt_server *srv = t->data;
    uint64_t waited = uv_now(srv->loop) - srv->stop_began_ms;
    if (zt__http_connections(srv) == 0) {
        zt__log(ZT_LOG_INFO, NULL, NULL, "all connections closed; stopping");
        finish_shutdown(srv);
    } else if (waited >= srv->conf->shutdown_timeout_ms) {
        unsigned receiving = zt__http_receiving(srv);
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "shutdown grace period over: closing %u connections (%u requests unanswered, %u "
                "of them still receiving their body)",
                zt__http_connections(srv), zt__http_inflight(srv) + receiving, receiving);
        finish_shutdown(srv);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    zt_server *srv = s->data;
    if (srv->stopping) {
        zt__log(ZT_LOG_WARN, NULL, NULL, "second signal: stopping now");
        uv_timer_stop(&srv->shutdown_timer);
        finish_shutdown(srv);
        return;
    }
    srv->stopping = true;
    srv->stop_began_ms = uv_now(srv->loop);
    unsigned receiving = zt__http_receiving(srv);
    unsigned inflight = zt__http_inflight(srv) + receiving, dropped = zt__http_stop_accepting(srv);
    zt__log(ZT_LOG_INFO, NULL, NULL,
            "%s: no new connections; finishing %u requests in flight, %u of them still "
            "receiving their body (%u connections still sending a request's headers closed: "
            "nothing of those had run); a second signal stops at once",
            signum == SIGINT ? "SIGINT" : "SIGTERM", inflight, receiving, dropped);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_tick, 0, 20);
}

/* SIGHUP would end the process at once (its default): no graceful stop, and an exit by a
 * signal that systemd's Restart=on-failure does not restart. The node has no reload. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    zt_server *srv = s->data;
    zt__log(ZT_LOG_WARN, NULL, NULL,
            "SIGHUP: ignored, the node keeps running with the config it started with (%s as it "
            "was then); it has no reload: to apply a changed config, `zhengtong check` it, then "
            "restart the node (systemctl restart zhengtong)",
            srv->conf->file);
}

int zt__server_listen(zt_server *srv, char *err, size_t errlen)
{
    zt__audit_start(srv);
    zt__auth_start(srv);
    int brc = zt__bus_start(srv, err, errlen);
    if (brc != ZT_OK) return brc;
    zt__timers_start(srv);
    /* the Lua plugins' start functions (zt.at_start), committed before anything is served */
    for (size_t i = 0; i < srv->nplugins; i++)
        if (srv->plugins[i]->state == ZT_PSTATE_RUNNING) zt__lua_start(srv, srv->plugins[i]);
    if (zt__store_batch_open(srv->store) || zt__audit_queued(srv)) batch_end(srv);
    zt__posts_start(srv);
    uv_check_init(srv->loop, &srv->commit_check);
    srv->commit_check.data = srv;
    uv_check_start(&srv->commit_check, on_check);
    uv_timer_init(srv->loop, &srv->commit_timer);
    srv->commit_timer.data = srv;
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_init(srv->loop, &srv->sighup);
    srv->sighup.data = srv;
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    if (!srv->check_only && !srv->lua_tests) zt__seals_start(srv);
    int rc = zt__repl_start(srv, err, errlen);
    if (rc == ZT_OK) rc = zt__syslog_start(srv, err, errlen);
    for (size_t i = 0; rc == ZT_OK && i < srv->conf->nlisten; i++)
        rc = zt__http_listen(srv, srv->conf->listen[i], err, errlen);
    /* the roles its plugins declared, for the offline `zhengtong admin` */
    if (rc == ZT_OK) rc = zt__roles_sync(srv, err, errlen);
    /* the first account, now that the node is up */
    if (rc == ZT_OK) rc = zt__auth_bootstrap(srv, err, errlen);
    if (rc != ZT_OK) {
        srv->stopping = true;
        zt__http_stop_accepting(srv);
        finish_shutdown(srv);
        uv_run(srv->loop, UV_RUN_DEFAULT);
    }
    return rc;
}

void zt__server_close(zt_server *srv)
{
    zt__repl_stop(srv);
    zt__posts_close(srv);
    zt__plugins_fini(srv);
    zt__posts_free(srv);
    zt__plugins_free(srv);
    zt__services_free(srv);
    zt__timers_close(srv);
    zt__bus_close(srv);
    zt__auth_close(srv);
    zt__roles_close(srv);
    zt__audit_close(srv);
    zt__seals_close(srv);
    zt__throttle_free(srv->rates);
    srv->rates = NULL;
    zt__metrics_free(srv->metrics);
    zt__router_free(srv->router);
    if (srv->store) zt__store_close(srv->store);
    if (srv->keys) zt__keys_close(srv->keys);
    srv->keys = NULL;
    free(srv->batch_reqs);
    srv->metrics = NULL;
    srv->router = NULL;
    srv->store = NULL;
}
