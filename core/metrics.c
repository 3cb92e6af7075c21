/* metrics.c: request counters and latency histograms, rendered in Prometheus text format. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof bucket_le / sizeof bucket_le[0])

typedef struct status_count {
    int status;
    uint64_t count;
} status_count;

typedef struct route_stats {
    status_count *statuses; /* few distinct statuses per route: a short array */
    size_t nstatuses;
    uint64_t buckets[NBUCKETS]; /* not cumulative; summed when rendered */
    uint64_t count;
    double sum_s;
} route_stats;

struct zt_metrics {
    route_stats *routes; /* one per router route, plus one for requests no route took */
    size_t nroutes;
};

int zt__metrics_new(zt_metrics **out, size_t nroutes)
{
    zt_metrics *m = calloc(1, sizeof(*m));
    if (!m) return ZT_ENOMEM;
    m->nroutes = nroutes + 1;
    m->routes = calloc(m->nroutes, sizeof(*m->routes));
    if (!m->routes) {
        free(m);
        return ZT_ENOMEM;
    }
    *out = m;
    return ZT_OK;
}

void zt__metrics_free(zt_metrics *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nroutes; i++) free(m->routes[i].statuses);
    free(m->routes);
    free(m);
}

void zt__metrics_request(zt_metrics *m, int route_idx, int status, uint64_t ns)
{
    if (!m) return;
    size_t i =
        route_idx >= 0 && (size_t)route_idx < m->nroutes - 1 ? (size_t)route_idx : m->nroutes - 1;
    route_stats *r = &m->routes[i];
    size_t k;
    for (k = 0; k < r->nstatuses; k++)
        if (r->statuses[k].status == status) break;
    if (k == r->nstatuses) {
        status_count *sc = realloc(r->statuses, (k + 1) * sizeof(*sc));
        if (!sc) return;
        r->statuses = sc;
        sc[k].status = status;
        sc[k].count = 0;
        r->nstatuses++;
    }
    r->statuses[k].count++;
    double s = (double)ns / 1e9;
    r->count++;
    r->sum_s += s;
    for (size_t b = 0; b < NBUCKETS; b++)
        if (s <= bucket_le[b]) {
            r->buckets[b]++;
            break;
        }
}

static void route_labels(zt_server *srv, size_t i, zt_buf *out)
{
    const zt__route *rt = zt__router_at(srv->router, i);
    if (!rt) {
        zt__buf_puts(out, "route=\"(none)\",method=\"\",plugin=\"\"");
        return;
    }
    /* Patterns hold no quote or backslash (the router refuses them), so no escaping. */
    zt__buf_printf(out, "route=\"%s\",method=\"%s\",plugin=\"%s\"", rt->pattern, rt->method,
                   rt->plugin ? rt->plugin->name : "core");
}

int zt__metrics_render(zt_server *srv, zt_buf *out)
{
    zt_metrics *m = srv->metrics;
    zt__buf_puts(out, "# HELP zt_http_requests_total HTTP requests answered, by route and status.\n"
                      "# TYPE zt_http_requests_total counter\n");
    for (size_t i = 0; m && i < m->nroutes; i++) {
        route_stats *r = &m->routes[i];
        for (size_t k = 0; k < r->nstatuses; k++) {
            zt__buf_puts(out, "zt_http_requests_total{");
            route_labels(srv, i, out);
            zt__buf_printf(out, ",status=\"%d\"} %llu\n", r->statuses[k].status,
                           (unsigned long long)r->statuses[k].count);
        }
    }
    zt__buf_puts(out, "# HELP zt_http_request_duration_seconds Time from the first byte of a "
                      "request to its response being handed to the socket.\n"
                      "# TYPE zt_http_request_duration_seconds histogram\n");
    for (size_t i = 0; m && i < m->nroutes; i++) {
        route_stats *r = &m->routes[i];
        if (!r->count) continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += r->buckets[b];
            zt__buf_puts(out, "zt_http_request_duration_seconds_bucket{");
            route_labels(srv, i, out);
            zt__buf_printf(out, ",le=\"%g\"} %llu\n", bucket_le[b], (unsigned long long)cum);
        }
        zt__buf_puts(out, "zt_http_request_duration_seconds_bucket{");
        route_labels(srv, i, out);
        zt__buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)r->count);
        zt__buf_puts(out, "zt_http_request_duration_seconds_sum{");
        route_labels(srv, i, out);
        zt__buf_printf(out, "} %.9f\n", r->sum_s);
        zt__buf_puts(out, "zt_http_request_duration_seconds_count{");
        route_labels(srv, i, out);
        zt__buf_printf(out, "} %llu\n", (unsigned long long)r->count);
    }

    zt_store_stats st = {0};
    if (srv->store) zt__store_stats(srv->store, &st);
    zt__buf_printf(out,
                   "# HELP zt_lmdb_commits_total Batch commits (each one fsync).\n"
                   "# TYPE zt_lmdb_commits_total counter\n"
                   "zt_lmdb_commits_total %llu\n"
                   "# HELP zt_lmdb_commit_errors_total Batch commits that failed.\n"
                   "# TYPE zt_lmdb_commit_errors_total counter\n"
                   "zt_lmdb_commit_errors_total %llu\n"
                   "# HELP zt_lmdb_nested_txns_total Nested write transactions (one per "
                   "writing request).\n"
                   "# TYPE zt_lmdb_nested_txns_total counter\n"
                   "zt_lmdb_nested_txns_total %llu\n"
                   "# HELP zt_lmdb_map_size_bytes The LMDB map size.\n"
                   "# TYPE zt_lmdb_map_size_bytes gauge\n"
                   "zt_lmdb_map_size_bytes %llu\n"
                   "# HELP zt_lmdb_used_bytes Bytes of the map in use.\n"
                   "# TYPE zt_lmdb_used_bytes gauge\n"
                   "zt_lmdb_used_bytes %llu\n"
                   "# HELP zt_data_fs_free_bytes Bytes free on the data folder's filesystem "
                   "(to the node's user).\n"
                   "# TYPE zt_data_fs_free_bytes gauge\n"
                   "zt_data_fs_free_bytes %llu\n"
                   "# HELP zt_data_fs_size_bytes Size of the data folder's filesystem.\n"
                   "# TYPE zt_data_fs_size_bytes gauge\n"
                   "zt_data_fs_size_bytes %llu\n"
                   "# HELP zt_lmdb_last_commit_seconds Duration of the last batch commit.\n"
                   "# TYPE zt_lmdb_last_commit_seconds gauge\n"
                   "zt_lmdb_last_commit_seconds %.6f\n"
                   "# HELP zt_batch_waits_total Batches whose commit waited for the writers of "
                   "the batches before (limits.commit_wait).\n"
                   "# TYPE zt_batch_waits_total counter\n"
                   "zt_batch_waits_total %llu\n"
                   "# HELP zt_batch_wait_timeouts_total Of those, the ones that waited the whole "
                   "commit_wait.\n"
                   "# TYPE zt_batch_wait_timeouts_total counter\n"
                   "zt_batch_wait_timeouts_total %llu\n"
                   "# HELP zt_store_seals_failed_total Records of sealed databases that failed "
                   "their seal when read (changed outside the node).\n"
                   "# TYPE zt_store_seals_failed_total counter\n"
                   "zt_store_seals_failed_total %llu\n",
                   (unsigned long long)st.commits, (unsigned long long)st.commit_errors,
                   (unsigned long long)st.nested, (unsigned long long)st.map_size,
                   (unsigned long long)st.used_bytes, (unsigned long long)st.fs_free_bytes,
                   (unsigned long long)st.fs_size_bytes, (double)st.last_commit_us / 1e6,
                   (unsigned long long)srv->bw.waited, (unsigned long long)srv->bw.timed_out,
                   (unsigned long long)st.seals_failed);

    zt__buf_puts(out, "# HELP zt_lua_memory_bytes Memory held by each Lua plugin's state.\n"
                      "# TYPE zt_lua_memory_bytes gauge\n");
    for (size_t i = 0; i < srv->nplugins; i++) {
        zt_plugin *p = srv->plugins[i];
        if (p->kind != ZT_PLUGIN_LUA) continue;
        zt__buf_printf(out, "zt_lua_memory_bytes{plugin=\"%s\"} %zu\n", p->name, zt__lua_memory(p));
    }
    if (srv->bus) zt__bus_metrics(srv, out);
    if (srv->timers) zt__timers_metrics(srv, out);
    if (srv->audit) zt__audit_metrics(srv, out);
    if (srv->syslog) zt__syslog_metrics(srv, out);
    if (srv->repl) zt__repl_metrics(srv, out);
    if (srv->auth) zt__auth_metrics(srv, out);
    size_t rss = 0;
    uv_resident_set_memory(&rss);
    zt__buf_printf(out,
                   "# HELP zt_http_connections Open HTTP connections.\n"
                   "# TYPE zt_http_connections gauge\n"
                   "zt_http_connections %u\n"
                   "# HELP zt_http_requests_in_flight Requests read and not yet answered.\n"
                   "# TYPE zt_http_requests_in_flight gauge\n"
                   "zt_http_requests_in_flight %u\n"
                   "# HELP zt_process_resident_memory_bytes Resident set size.\n"
                   "# TYPE zt_process_resident_memory_bytes gauge\n"
                   "zt_process_resident_memory_bytes %zu\n"
                   "# HELP zt_uptime_seconds Seconds since the node started.\n"
                   "# TYPE zt_uptime_seconds gauge\n"
                   "zt_uptime_seconds %.3f\n",
                   zt__http_connections(srv), zt__http_inflight(srv), rss,
                   (double)(uv_hrtime() - srv->started_ns) / 1e9);
    return out->data ? ZT_OK : ZT_ENOMEM;
}
