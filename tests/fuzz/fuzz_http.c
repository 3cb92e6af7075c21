/* fuzz_http.c: libFuzzer harness for the request path: bytes of a client → parser → router →
 * handler → serialized answers. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One route that touches what handlers use: a parameter, the query, a header, the body
 * (a GET may carry one) and JSON parsing. Everything else goes through 404/405 and the
 * core's own errors. */
static int h_item(zt_req *req, void *ud)
{
    (void)ud;
    const char *id = zt_req_param(req, "id");
    const char *q = zt_req_query(req, "q");
    const char *h = zt_req_header(req, "x-h");
    size_t len;
    const char *body = zt_req_body(req, &len);
    cJSON *json = NULL;
    bool is_json = zt_req_json(req, &json) == ZT_OK;
    char *text = zt_req_printf(req, "%s|%s|%s|%zu|%d|%.*s", id ? id : "", q ? q : "", h ? h : "",
                               len, is_json, (int)(len < 16 ? len : 16), body);
    if (!text) return ZT_ENOMEM;
    if (h && strcmp(h, "problem") == 0)
        return zt_problem(req, 422, "fuzz", "Fuzz", "detail %s", text);
    if (h) zt_res_header(req, "X-Echo", h); /* may refuse CR/LF: fine */
    return zt_respond(req, 200, "text/plain", text, strlen(text));
}

static char data_dir[] = "/tmp/zt-fuzz-http-XXXXXX";
static zt_router *identity_routes; /* kept reachable: not a leak */

static void remove_data_dir(void)
{
    char path[sizeof data_dir + 16];
    snprintf(path, sizeof path, "%s/data.mdb", data_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", data_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/master.key", data_dir);
    unlink(path);
    rmdir(data_dir);
}

/* The bare server: conf with default limits, a router with one route. Dispatch also
 * reads the identity and audit state (a bearer token is looked up, every answer marks
 * the audit chain), so those are opened on a scratch store; their own routes go to a
 * router the fuzzer never sees (login hashes passwords off the loop, which does not run
 * here). The fuzzed route is a read: nothing is ever written. */
static zt_server *server(void)
{
    static zt_server srv;
    static zt_conf conf;
    static bool ready;
    if (ready) return &srv;
    zt__log_level = ZT_LOG_ERROR + 1; /* quiet: every dropped request would log */
    conf.node_name = "fuzz";
    conf.region_code = "330100";
    conf.header_bytes = 16 * 1024;
    conf.body_bytes = 64 * 1024;
    conf.header_timeout_ms = 10000;
    conf.idle_timeout_ms = 60000;
    /* every fuzzed connection is a trusted proxy's: X-Forwarded-For is parsed */
    static zt_netmask proxies[1];
    if (zt__netmask_parse("0.0.0.0/0", &proxies[0]) != NULL) abort();
    conf.proxies = proxies;
    conf.nproxies = 1;
    srv.conf = &conf;
    srv.check_only = true; /* no first-start admin account */
    char err[ZT_ERRLEN] = "";
    zt_route r = {
        .method = "GET", .path = "/items/:id/*", .handler = h_item, .role = ZT_ROLE_PUBLIC};
    zt_router *router = NULL;
    int rc = ZT_OK;
    if (!mkdtemp(data_dir) || atexit(remove_data_dir) != 0) rc = ZT_EIO;
    if (rc == ZT_OK) rc = zt__store_open(&srv.store, data_dir, 16u << 20, err, sizeof err);
    char key_file[sizeof data_dir + 16];
    snprintf(key_file, sizeof key_file, "%s/master.key", data_dir);
    if (rc == ZT_OK) rc = zt__keys_open(key_file, &srv.keys, err, sizeof err); /* seals records */
    if (rc == ZT_OK) rc = zt__router_new(&router);
    if (rc == ZT_OK) rc = zt__router_add(router, NULL, &r, err, sizeof err);
    if (rc == ZT_OK) rc = zt__router_new(&srv.router); /* takes the identity routes */
    if (rc == ZT_OK) rc = zt__audit_open(&srv, err, sizeof err);
    if (rc == ZT_OK) rc = zt__auth_open(&srv, err, sizeof err);
    if (rc != ZT_OK) {
        fprintf(stderr, "fuzz_http: cannot build the server: %s %s\n", zt_strerror(rc), err);
        abort();
    }
    identity_routes = srv.router;
    srv.router = router;
    ready = true;
    return &srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = zt__http_fuzz_feed(server(), (const char *)data, size);
    if (n < 0 && n != ZT_ENOMEM) abort();
    return 0;
}
