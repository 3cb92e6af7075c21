/* hello.c: the example C plugin: a greeting, a greeting by name, and a durable counter. */
#include <zt.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const zt_option options[] = {
    {.name = "greeting", .type = ZT_OPT_STRING, .def = "你好", .description = "what to say"},
    {0},
};

static const char count_key[] = "count";

/* The plugin's state (zt_plugin_data): its database, and the answer of GET /hello. */
typedef struct hello {
    zt_db *db;
    char *greeting; /* {"greeting": ..., "plugin": "hello"}: it never changes, so it is
                       built once, at init, not for every request */
    size_t greeting_len;
} hello;

/* Every handler ends here: send the object (or fail for lack of memory) and free it. */
static int send_json(zt_req *req, cJSON *o)
{
    int rc = o ? zt_respond_json(req, 200, o) : ZT_ENOMEM;
    cJSON_Delete(o);
    return rc;
}

static int get_hello(zt_req *req, void *ud)
{
    const hello *h = zt_plugin_data(ud);
    return zt_respond(req, 200, "application/json", h->greeting, h->greeting_len);
}

static int get_hello_name(zt_req *req, void *ud)
{
    zt_plugin *p = ud;
    const char *text =
        zt_req_printf(req, "%s, %s", zt_opt_string(p, "greeting"), zt_req_param(req, "name"));
    cJSON *o = text ? cJSON_CreateObject() : NULL;
    if (o && !cJSON_AddStringToObject(o, "greeting", text)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return send_json(req, o);
}

/* The counter is 8 bytes, big-endian, so that it reads the same on every machine. */
static int read_count(zt_txn *txn, zt_db *db, uint64_t *n)
{
    const void *val;
    size_t len;
    *n = 0;
    int rc = zt_get(txn, db, count_key, sizeof count_key - 1, &val, &len);
    if (rc == ZT_ENOTFOUND) return ZT_OK;
    if (rc != ZT_OK) return rc;
    if (len != 8) return ZT_EINVAL;
    for (int i = 0; i < 8; i++) *n = *n << 8 | ((const unsigned char *)val)[i];
    return ZT_OK;
}

static int counter(zt_req *req, zt_plugin *p, int add)
{
    zt_db *db = ((hello *)zt_plugin_data(p))->db;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY; /* storage failure: the core answers 503 */
    uint64_t n;
    int rc = read_count(txn, db, &n);
    if (rc != ZT_OK) return rc;
    if (add) {
        n += 1;
        unsigned char val[8];
        for (int i = 7; i >= 0; i--) val[i] = (unsigned char)(n >> (8 * (7 - i)));
        /* durable once the response is out: the core commits before sending it */
        if ((rc = zt_put(txn, db, count_key, sizeof count_key - 1, val, sizeof val)) != ZT_OK)
            return rc;
    }
    /* A tiny fixed shape needs no JSON library: print it (cJSON would print the number
     * through floating point). */
    char *body = zt_req_printf(req, "{\"count\":%llu}", (unsigned long long)n);
    if (!body) return ZT_ENOMEM;
    return zt_respond(req, 200, "application/json", body, strlen(body));
}

static int get_counter(zt_req *req, void *ud)
{
    return counter(req, ud, 0);
}

static int post_counter(zt_req *req, void *ud)
{
    return counter(req, ud, 1);
}

static void fini(zt_plugin *p)
{
    hello *h = zt_plugin_data(p);
    if (!h) return;
    cJSON_free(h->greeting);
    free(h);
    zt_plugin_set_data(p, NULL);
}

static int init(zt_plugin *p)
{
    hello *h = calloc(1, sizeof *h);
    if (!h) return ZT_ENOMEM;
    zt_plugin_set_data(p, h);
    int rc = zt_db_open(p, "counters", &h->db);
    if (rc != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "cannot open its database: %s", zt_strerror(rc));
        fini(p); /* the core calls fini only after an init that succeeded */
        return rc;
    }
    cJSON *o = cJSON_CreateObject();
    if (cJSON_AddStringToObject(o, "greeting", zt_opt_string(p, "greeting")) &&
        cJSON_AddStringToObject(o, "plugin", zt_plugin_name(p)))
        h->greeting = zt_json_print(o);
    cJSON_Delete(o);
    if (!h->greeting) {
        fini(p);
        return ZT_ENOMEM;
    }
    h->greeting_len = strlen(h->greeting);
    const zt_route routes[] = {
        {"GET", "/hello", get_hello, p, ZT_ROLE_PUBLIC, 0, "A greeting"},
        {"GET", "/hello/:name", get_hello_name, p, ZT_ROLE_PUBLIC, 0, "A greeting for someone"},
        {"GET", "/hello/counter", get_counter, p, ZT_ROLE_PUBLIC, 0, "The counter"},
        {"POST", "/hello/counter", post_counter, p, ZT_ROLE_USER, 0, "Add one to the counter"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if ((rc = zt_route_add(p, &routes[i])) != ZT_OK) { /* the core logged why */
            fini(p);
            return rc;
        }
    zt_log(p, ZT_LOG_INFO, "greeting with \"%s\"", zt_opt_string(p, "greeting"));
    return ZT_OK;
}

ZT_PLUGIN(.name = "hello", .version = "1.0.0",
          .description = "A greeting and a counter: the example C plugin", .options = options,
          .init = init, .fini = fini);
