/* sensor.c: IoT ingestion plugin: devices and streams, four ways in, time series, alerts. */
#include "sensor.h"

#include <stdlib.h>
#include <string.h>

static const zt_option options[] = {
    {.name = "auto_create",
     .type = ZT_OPT_BOOL,
     .def = "false",
     .description = "create a datastream for a series nobody defined (else: refuse the batch)"},
    {.name = "ignore_tags",
     .type = ZT_OPT_LIST,
     .def = NULL,
     .description = "tags left out of series keys (e.g. host, added by collection agents)"},
    {.name = "max_body",
     .type = ZT_OPT_INT,
     .def = "33554432",
     .description = "largest write body in bytes, as sent"},
    {.name = "max_inflated",
     .type = ZT_OPT_INT,
     .def = "134217728",
     .description = "largest write body in bytes once a gzip body is inflated"},
    {.name = "retention_every",
     .type = ZT_OPT_INT,
     .def = "10",
     .description = "seconds between two retention trims of one stream"},
    {0},
};

static sn *the; /* one instance: fini frees it */

static int init(zt_plugin *p)
{
    sn *S = calloc(1, sizeof *S);
    if (!S) return ZT_ENOMEM;
    S->p = p;
    struct {
        const char *name;
        zt_db **db;
    } dbs[] = {{"things", &S->things}, {"streams", &S->streams}, {"series", &S->series},
               {"acl", &S->acl},       {"obs", &S->obs},         {"meta", &S->meta},
               {"alerts", &S->alerts}, {"astate", &S->astate}};
    int rc = ZT_OK;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && rc == ZT_OK; i++)
        if ((rc = zt_db_open(p, dbs[i].name, dbs[i].db)) != ZT_OK)
            zt_log(p, ZT_LOG_ERROR, "cannot open database %s: %s", dbs[i].name, zt_strerror(rc));
    S->auto_create = zt_opt_bool(p, "auto_create");
    S->max_body = (size_t)zt_opt_int(p, "max_body");
    S->max_inflated = (size_t)zt_opt_int(p, "max_inflated");
    S->retention_every_ms = zt_opt_int(p, "retention_every") * 1000;
    S->nignore = zt_opt_list_len(p, "ignore_tags");
    if (S->nignore > sizeof S->ignore / sizeof S->ignore[0]) {
        zt_log(p, ZT_LOG_ERROR, "ignore_tags: at most %zu tags",
               sizeof S->ignore / sizeof S->ignore[0]);
        rc = ZT_EINVAL;
    }
    for (size_t i = 0; rc == ZT_OK && i < S->nignore; i++)
        S->ignore[i] = zt_opt_list_item(p, "ignore_tags", i);
    if (rc == ZT_OK && (S->max_body < 1024 || S->max_inflated < S->max_body)) {
        zt_log(p, ZT_LOG_ERROR, "max_body: at least 1024; max_inflated: at least max_body");
        rc = ZT_EINVAL;
    }
    if (rc == ZT_OK) rc = sn_admin_routes(S);
    if (rc == ZT_OK) rc = sn_ingest_routes(S);
    if (rc == ZT_OK) rc = sn_query_routes(S);
    if (rc != ZT_OK) {
        free(S);
        return rc;
    }
    the = S;
    zt_plugin_set_data(p, S);
    return ZT_OK;
}

static void fini(zt_plugin *p)
{
    (void)p;
    free(the);
    the = NULL;
}

ZT_PLUGIN(.name = "sensor", .version = "0.1.0",
          .description = "IoT monitoring: devices and datastreams, line protocol, JSON, MQTT and "
                         "nng ingestion, time series queries, alert rules",
          .options = options, .init = init, .fini = fini);
