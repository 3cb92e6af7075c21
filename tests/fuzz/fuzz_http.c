/* fuzz_http.c: libFuzzer harness for the request path: bytes of a client → parser → router →
 * handler → serialized answers. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* One route that touches what handlers use: a parameter, the query, a header, the body
 * and JSON parsing. Everything else goes through 404/405 and the core's own errors. */
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
    srv.conf = &conf;
    char err[ZT_ERRLEN];
    zt_route r = {.method = "POST",
                  .path = "/items/:id/*",
                  .handler = h_item,
                  .role = ZT_ROLE_PUBLIC,
                  .body_limit = 4096};
    if (zt__router_new(&srv.router) != ZT_OK ||
        zt__router_add(srv.router, NULL, &r, err, sizeof err) != ZT_OK)
        abort();
    ready = true;
    return &srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = zt__http_fuzz_feed(server(), (const char *)data, size);
    if (n < 0 && n != ZT_ENOMEM) abort();
    return 0;
}
