/* sensor.c: IoT ingestion plugin: devices and streams, four ways in, time series, alerts. */
#include "sensor.h"

#include <stdlib.h>
#include <string.h>

#define OPT(name, type, def, what)                                                                 \
    {                                                                                              \
        name, type, def, 0, what                                                                   \
    }
static const zt_option options[] = {
    OPT("auto_create", ZT_OPT_BOOL, "false",
        "create a datastream for a series nobody defined (else: refuse the batch)"),
    OPT("ignore_tags", ZT_OPT_LIST, NULL,
        "tags left out of series keys (e.g. host, added by collection agents)"),
    OPT("max_body", ZT_OPT_INT, "33554432", "largest write body in bytes, as sent"),
    OPT("max_inflated", ZT_OPT_INT, "134217728",
        "largest write body in bytes once a gzip body is inflated"),
    OPT("retention_every", ZT_OPT_INT, "10", "seconds between two retention trims of one stream"),
    OPT("future_margin", ZT_OPT_INT, "300",
        "seconds a point's time may be ahead of the node's clock (later: refused)"),
    OPT("precision", ZT_OPT_STRING, "ns",
        "timestamp unit of line protocol from MQTT and nng: " LP_PRECISIONS),
    OPT("mqtt_host", ZT_OPT_STRING, NULL, "MQTT broker to subscribe at (unset: no MQTT input)"),
    OPT("mqtt_port", ZT_OPT_INT, "1883", "its port"),
    OPT("mqtt_topics", ZT_OPT_LIST, "sensors/#", "topic filters to subscribe to"),
    OPT("mqtt_format", ZT_OPT_STRING, "auto",
        "payloads: line (protocol), json, or auto (JSON if it starts with { or [)"),
    OPT("mqtt_qos", ZT_OPT_INT, "1", "subscription QoS"),
    OPT("mqtt_client_id", ZT_OPT_STRING, "zhengtong-sensor", "client id at the broker"),
    OPT("mqtt_username", ZT_OPT_STRING, NULL, "broker login"),
    OPT("mqtt_password", ZT_OPT_STRING, NULL, "broker password"),
    OPT("nng_listen", ZT_OPT_STRING, NULL,
        "nng pull socket for gateways, e.g. tcp://0.0.0.0:7770 (unset: none)"),
    OPT("nng_format", ZT_OPT_STRING, "auto", "gateway messages: line, json or auto"),
    OPT("check_every", ZT_OPT_INT, "60",
        "seconds between checks for silent devices and retention passes"),
    OPT("rules", ZT_OPT_STRING, SN_RULES_DEFAULT,
        "alert rules, a file under lua_dir (missing: no rules)"),
    {0},
};
#undef OPT

static sn *the; /* one instance: fini frees it */

int sn_routes_add(sn *S, const zt_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = zt_route_add(S->p, &routes[i]);
        if (rc != ZT_OK) return rc;
    }
    return ZT_OK;
}

int sn_query_int(zt_req *req, const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    const char *s = zt_req_query(req, name);
    *out = def;
    if (!s || (sn_int_arg(s, out) == 0 && *out >= min && *out <= max)) return 0;
    zt_problem(req, 400, "invalid-query", NULL, "%s: a whole number from %lld to %lld, not '%s'",
               name, (long long)min, (long long)max, s);
    return 1;
}

int sn_id_arg(const char *s, uint32_t *id)
{
    int64_t v;
    if (!s || *s == '-' || sn_int_arg(s, &v) != 0 || v < 1 || v > UINT32_MAX) return -1;
    *id = (uint32_t)v;
    return 0;
}

static int h_inputs(zt_req *req, void *ud)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        sn_mqtt_stats(ud, o);
        sn_gw_stats(ud, o);
    }
    return sn_send(req, 200, o);
}

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
               {"alerts", &S->alerts}, {"astate", &S->astate},   {"arrived", &S->arrived}};
    int rc = ZT_OK;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && rc == ZT_OK; i++)
        if ((rc = zt_db_open(p, dbs[i].name, dbs[i].db)) != ZT_OK)
            zt_log(p, ZT_LOG_ERROR, "cannot open database %s: %s", dbs[i].name, zt_strerror(rc));
    S->auto_create = zt_opt_bool(p, "auto_create");
    S->max_body = (size_t)zt_opt_int(p, "max_body");
    S->max_inflated = (size_t)zt_opt_int(p, "max_inflated");
    S->retention_every_ms = zt_opt_int(p, "retention_every") * 1000;
    S->nignore = zt_opt_list_len(p, "ignore_tags");
    if (S->nignore > sizeof S->ignore / sizeof S->ignore[0])
        rc = zt_option_fail(p, "ignore_tags", "at most %zu tags, not %zu",
                            sizeof S->ignore / sizeof S->ignore[0], S->nignore);
    for (size_t i = 0; rc == ZT_OK && i < S->nignore; i++) {
        const char *t = zt_opt_list_item(p, "ignore_tags", i);
        S->ignore[i] = (lp_str){t, strlen(t)};
    }
    if (rc == ZT_OK && S->max_body < 1024)
        rc = zt_option_fail(p, "max_body", "at least 1024 bytes, not %zu", S->max_body);
    if (rc == ZT_OK && S->max_inflated < S->max_body)
        rc = zt_option_fail(p, "max_inflated", "at least max_body (%zu), not %zu", S->max_body,
                            S->max_inflated);
    int64_t margin = zt_opt_int(p, "future_margin");
    bool margin_ok = margin >= 0 && margin <= INT64_MAX / 1000000000;
    S->future_ns = margin_ok ? margin * 1000000000 : 0;
    if (rc == ZT_OK && !margin_ok)
        rc = zt_option_fail(p, "future_margin", "seconds, 0 to %lld, not %lld",
                            (long long)(INT64_MAX / 1000000000), (long long)margin);
    S->line_mult = lp_precision(zt_opt_string(p, "precision"));
    if (rc == ZT_OK && S->line_mult < 0)
        rc = zt_option_fail(p, "precision", LP_PRECISIONS ", not \"%s\"",
                            zt_opt_string(p, "precision"));
    if (rc == ZT_OK)
        rc = zt_role_declare(p, SN_ADMIN_ROLE, "Manages things, streams, alert rules and data");
    if (rc == ZT_OK)
        rc = zt_role_declare(p, SN_DEVICE_ROLE, "A device's API key: sends its observations");
    if (rc == ZT_OK)
        rc = zt_role_declare(p, "sensor_duty", "On duty: sees and acknowledges sensor alerts");
    if (rc == ZT_OK) rc = sn_admin_routes(S);
    if (rc == ZT_OK) rc = sn_ingest_routes(S);
    if (rc == ZT_OK) rc = sn_query_routes(S);
    if (rc == ZT_OK)
        rc = zt_route_add(p, &(zt_route){"GET", "/sensor/inputs", h_inputs, S, ZT_ROLE_USER, 0,
                                         "MQTT and nng inputs"});
    if (rc == ZT_OK) rc = sn_rules_routes(S);
    if (rc == ZT_OK) rc = sn_rules_init(S);
    if (rc == ZT_OK) rc = sn_mqtt_start(S);
    if (rc == ZT_OK) rc = sn_gw_start(S);
    if (rc != ZT_OK) {
        sn_gw_stop(S);
        sn_mqtt_stop(S);
        sn_rules_fini(S);
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
    sn_gw_stop(the);
    sn_mqtt_stop(the);
    sn_rules_fini(the);
    free(the);
    the = NULL;
}

ZT_PLUGIN(.name = "sensor", .version = "0.1.0",
          .description = "IoT monitoring: devices and datastreams, line protocol, JSON, MQTT and "
                         "nng ingestion, time series queries, alert rules",
          .options = options, .init = init, .fini = fini);
