/* request.c: the request and response API that handlers use (zt_req_*, zt_respond*), and
 * the units of work that no client asked for (jobs). */
#include "core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *zt_req_method(const zt_req *req)
{
    return req->method;
}

const char *zt_req_path(const zt_req *req)
{
    return req->path;
}

const char *zt_req_param(const zt_req *req, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < req->match.nparams; i++) {
        const char *p = req->match.pname[i];
        if (strncmp(p, name, n) == 0 && (p[n] == 0 || p[n] == '/')) return req->match.pval[i];
    }
    return NULL;
}

struct query_find {
    zt_req *req;
    const char *name;
    size_t nlen;
    const char *found; /* the decoded value; NULL if absent or badly encoded */
};

static int query_match(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct query_find *f = ud;
    /* Keys are compared decoded, so "a%5Fb" finds "a_b". */
    char *key = zt_req_alloc(f->req, kl + 1);
    if (!key) return 1;
    if (zt__pct_decode(key, k, kl, true) != (long)f->nlen || memcmp(key, f->name, f->nlen))
        return 0;
    char *val = zt_req_alloc(f->req, vl + 1);
    if (val && zt__pct_decode(val, v, vl, true) >= 0) f->found = val;
    return 1; /* the first one counts */
}

const char *zt_req_query(const zt_req *req, const char *name)
{
    struct query_find f = {(zt_req *)req, name, strlen(name), NULL};
    zt__query_each(req->query, query_match, &f);
    return f.found;
}

const char *zt_req_header(const zt_req *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nhdrs; i++)
        if (req->hdrs[i].nlen == n && strncasecmp(req->hdrs[i].name, name, n) == 0)
            return req->hdrs[i].value;
    return NULL;
}

const char *zt_req_body(const zt_req *req, size_t *len)
{
    *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *zt_req_id(const zt_req *req)
{
    return req->id;
}

const char *zt_req_client(const zt_req *req)
{
    return req->client[0] ? req->client : "unknown";
}

/* application/json, or any type ending in +json, with or without parameters. */
static bool json_media_type(const char *ct)
{
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return true;
    return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0 && memchr(ct, '/', n);
}

int zt_req_json(zt_req *req, cJSON **out)
{
    if (!req->json) {
        if (req->json_why) return ZT_EINVAL; /* refused once already */
        const char *ct = zt_req_header(req, "Content-Type");
        if (ct && !json_media_type(ct)) {
            req->json_why = zt_req_printf(
                req, "send the body as Content-Type: application/json (this one came as %s)", ct);
            req->json_status = 415;
            return ZT_EINVAL;
        }
        size_t len;
        const char *body = zt_req_body(req, &len);
        char why[200];
        if (zt__json_parse_strict(body, len, &req->json, why, sizeof why) != ZT_OK) {
            req->json_why = zt_req_printf(req, "the body is %s", why);
            req->json_status = 400;
            return ZT_EINVAL;
        }
    }
    *out = req->json;
    return ZT_OK;
}

int zt_req_json_problem(zt_req *req)
{
    if (req->json_status == 415)
        return zt_problem(req, 415, "unsupported-media-type", NULL, "%s", req->json_why);
    return zt_problem(req, 400, "invalid-json", NULL, "%s",
                      req->json_why ? req->json_why : "the body is not valid JSON");
}

cJSON *zt_req_object(zt_req *req)
{
    cJSON *j;
    int rc = zt_req_json(req, &j);
    if (rc == ZT_OK && cJSON_IsObject(j)) return j;
    if (rc == ZT_OK)
        zt_problem(req, 400, "invalid-json", NULL, "the body must be a JSON object");
    else
        zt_req_json_problem(req);
    return NULL;
}

void *zt_req_alloc(zt_req *req, size_t size)
{
    return zt__arena_alloc(&req->arena, size);
}

char *zt_req_printf(zt_req *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = zt__arena_vprintf(&req->arena, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- responses ------------------------------------------------------------------- */

/* A job has nobody to answer: its handler's return code is its answer. */
static bool is_job(const zt_req *req)
{
    return req->job_plugin != NULL;
}

/* Nor does a service: its caller answers, once the call has returned. */
static bool cannot_answer(const zt_req *req)
{
    return is_job(req) || req->call_depth > 0;
}

const char *zt__res_header_nodes(const char *name)
{
    static const char *const nodes[] = {"Content-Length",
                                        "Content-Type",
                                        "Date",
                                        "X-Request-Id",
                                        "Connection",
                                        "Keep-Alive",
                                        "Transfer-Encoding",
                                        "TE",
                                        "Trailer",
                                        "Upgrade",
                                        "X-Content-Type-Options"};
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
        if (strcasecmp(name, nodes[i]) == 0) return "the node writes this header itself";
    return NULL;
}

/* RFC 9110 token characters (header names), and what a header value may not hold: the
 * control characters but tab, and DEL. Tables: this runs for every response. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};
static const unsigned char vbad[256] = {
    [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1, [0x07] = 1, [0x08] = 1,
    [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1,
    [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1,
    [0x1a] = 1, [0x1b] = 1, [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [0x7f] = 1,
};

static const char *value_refusal(const char *value)
{
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if (vbad[*c]) return "the value has a control character (CR, LF, ...)";
    return NULL;
}

const char *zt__res_header_refusal(const char *name, const char *value)
{
    if (!name[0]) return "the name is empty";
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (!tchar[*c]) return "the name has a character that is not allowed in a header name";
    return value_refusal(value);
}

int zt_res_header(zt_req *req, const char *name, const char *value)
{
    if (cannot_answer(req)) return ZT_ESTATE;
    const char *why = zt__res_header_refusal(name, value);
    if (!why) why = zt__res_header_nodes(name);
    if (why) {
        zt_req_log(req, ZT_LOG_WARN, "response header '%s' refused: %s", name, why);
        return ZT_EINVAL;
    }
    if (zt__buf_printf(&req->res_hdrs, "%s: %s\r\n", name, value)) return ZT_ENOMEM;
    if (strcasecmp(name, "Cache-Control") == 0) req->res_cache_set = true;
    return ZT_OK;
}

int zt_respond(zt_req *req, int status, const char *ctype, const void *body, size_t len)
{
    if (req->responded || cannot_answer(req)) return ZT_ESTATE;
    if (status < 200 || status > 599) return ZT_EINVAL;
    /* a stored file's type, say, must not split the response */
    if (ctype && value_refusal(ctype)) return ZT_EINVAL;
    char *copy = NULL;
    if (len) {
        if (!(copy = malloc(len))) return ZT_ENOMEM;
        memcpy(copy, body, len);
    }
    zt__free_wiped(req->res_body, req->res_len);
    req->res_body = copy;
    req->res_len = len;
    req->res_ctype = ctype ? zt__arena_strndup(&req->arena, ctype, strlen(ctype)) : NULL;
    req->status = status;
    req->responded = true;
    return ZT_OK;
}

/* Take a malloc'd body as the response's, without copying it. */
static int respond_owned(zt_req *req, int status, const char *ctype, char *body, size_t len)
{
    zt__free_wiped(req->res_body, req->res_len);
    req->res_body = body;
    req->res_len = len;
    req->res_ctype = ctype;
    req->status = status;
    req->responded = true;
    return ZT_OK;
}

int zt__respond_take(zt_req *req, int status, const char *ctype, char *body, size_t len)
{
    if (req->responded || cannot_answer(req) || status < 200 || status > 599) {
        zt__free_wiped(body, len);
        return req->responded || cannot_answer(req) ? ZT_ESTATE : ZT_EINVAL;
    }
    return respond_owned(req, status, ctype, body, len);
}

int zt_respond_json(zt_req *req, int status, const cJSON *json)
{
    if (req->responded || cannot_answer(req)) return ZT_ESTATE;
    if (status < 200 || status > 599) return ZT_EINVAL;
    char *text = zt_json_print(json); /* cJSON allocates with malloc */
    if (!text) return ZT_ENOMEM;
    return respond_owned(req, status, "application/json", text, strlen(text));
}

const char *zt__status_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return NULL;
    }
}

static int vproblem(zt_req *req, int status, const char *type, const char *title, const char *fmt,
                    va_list ap)
{
    char detail[1024];
    vsnprintf(detail, sizeof detail, fmt, ap);
    if (!title) title = zt__status_title(status);
    if (!title) title = "Error";
    zt_buf b = {0};
    int rc = zt__buf_puts(&b, "{\"type\":\"/problems/");
    rc |= zt__buf_puts(&b, type);
    rc |= zt__buf_puts(&b, "\",\"title\":");
    rc |= zt__buf_json_text(&b, title, strlen(title));
    rc |= zt__buf_printf(&b, ",\"status\":%d,\"detail\":", status);
    rc |= zt__buf_json_text(&b, detail, strlen(detail));
    rc |= zt__buf_puts(&b, ",\"request_id\":\"");
    rc |= zt__buf_puts(&b, req->id);
    rc |= zt__buf_puts(&b, "\"}");
    if (rc) {
        zt__buf_free(&b);
        return ZT_ENOMEM;
    }
    return respond_owned(req, status, "application/problem+json", b.data, b.len);
}

int zt_problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...)
{
    if (req->responded || cannot_answer(req)) return ZT_ESTATE;
    if (status < 400 || status > 599) return ZT_EINVAL;
    for (const char *t = type; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') || *t == '-')) return ZT_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vproblem(req, status, type, title, fmt, ap);
    va_end(ap);
    return rc;
}

void zt__problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...)
{
    if (is_job(req)) return;
    /* The core's own errors replace whatever the handler answered. */
    zt__buf_free(&req->res_hdrs);
    va_list ap;
    va_start(ap, fmt);
    vproblem(req, status, type, title, fmt, ap);
    va_end(ap);
}

/* ---- storage --------------------------------------------------------------------- */

bool zt__req_reads(const zt_req *req)
{
    return req->head || strcmp(req->method, "GET") == 0;
}

zt_txn *zt_req_txn(zt_req *req)
{
    if (req->txn) return req->txn;
    zt_store *s = req->srv->store;
    int rc;
    zt__batchwait *bw = &req->srv->bw;
    if (!zt__req_reads(req)) {
        rc = zt__store_write_begin(s, &req->txn);
        if (rc == ZT_OK && req->conn) zt__bw_join(bw, zt__conn_wrote_in(req->conn));
    } else if (zt__store_batch_open(s) &&
               (!req->conn || *zt__conn_wrote_in(req->conn) == bw->seq)) {
        /* What this connection wrote is in the open batch: read it, answer after it. */
        rc = zt__store_batch_read_begin(s, &req->txn);
    } else {
        /* What is committed, answered at once (not held by another client's batch). */
        rc = zt__store_read_begin(s, &req->txn);
    }
    if (rc != ZT_OK) {
        zt_req_log(req, ZT_LOG_ERROR, "storage: cannot begin a transaction: %s", zt_strerror(rc));
        req->txn = NULL;
        return NULL;
    }
    return req->txn;
}

int zt__req_write_txn(zt_req *req, zt_txn **t)
{
    *t = NULL;
    if (zt__req_reads(req)) return ZT_EREADONLY;
    if (!(*t = zt_req_txn(req))) return ZT_EIO;
    return zt_txn_writable(*t) ? ZT_OK : ZT_EREADONLY;
}

int zt__req_end_txn(zt_server *srv, zt_req *req, bool commit, bool audit, bool *in_batch)
{
    bool queued = false;
    int rc = ZT_OK;
    if (commit && audit) {
        if (zt__audit_queue(srv, req) == ZT_OK) {
            queued = true;
        } else {
            zt_req_log(req, ZT_LOG_ERROR, "audit: cannot queue the record: out of memory");
            commit = false;
            rc = ZT_ENOMEM;
        }
    }
    *in_batch = queued;
    if (!req->txn) return rc;
    *in_batch = queued || zt__store_in_batch(req->txn); /* before the end may free it */
    int erc = zt__store_end(srv->store, req->txn, commit);
    req->txn = NULL;
    if (queued && erc != ZT_OK) zt__audit_unqueue_last(srv);
    if (commit && erc != ZT_OK) {
        zt_req_log(req, ZT_LOG_ERROR, "storage: cannot keep the writes of %s %s: %s", req->method,
                   req->path ? req->path : "?", zt_strerror(erc));
        rc = erc;
    }
    return rc;
}

/* ---- work without a client -------------------------------------------------------- */

typedef struct job {
    zt_req r; /* first: a zt_req * of a job is a job * */
    zt_caller caller;
    uint64_t bookkeeping; /* writes of the core before the work's own (zt__job_audit_from_here) */
    _Alignas(16) unsigned char arena0[2048];
} job;

zt_req *zt__job_new(zt_server *srv, zt_plugin *p, const char *method, const char *path)
{
    assert(srv && p && method && path);
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    zt_req *r = &j->r;
    r->srv = srv;
    zt__arena_init(&r->arena, j->arena0, sizeof j->arena0);
    r->t_start_ns = uv_hrtime();
    zt_id(r->id);
    snprintf(r->client, sizeof r->client, "internal");
    r->method = zt__arena_strndup(&r->arena, method, strlen(method));
    r->path = zt__arena_strndup(&r->arena, path, strlen(path));
    char *login = zt_req_printf(r, "system:%s", p->name);
    if (!r->method || !r->path || !login) {
        zt__arena_reset(&r->arena);
        free(j);
        return NULL;
    }
    const zt_conf *conf = srv->conf;
    j->caller = (zt_caller){
        .id = "system",
        .kind = "system",
        .login = login,
        .name = "system",
        .clearance = conf->auth_nlabels ? conf->auth_labels[conf->auth_nlabels - 1] : NULL};
    r->caller = &j->caller;
    r->session_last_seen = INT64_MAX; /* no session to refresh */
    r->job_plugin = p;
    return r;
}

void zt__job_audit_from_here(zt_req *req)
{
    job *j = (job *)req;
    assert(is_job(req));
    j->bookkeeping = zt__store_txn_writes(req->txn);
}

int zt__job_end(zt_server *srv, zt_req *req, int rc)
{
    job *j = (job *)req;
    assert(is_job(req) && !req->async);
    if (rc == ZT_ASYNC) rc = ZT_ERROR; /* a job cannot wait: zt_work refuses it */
    if (req->txn) {
        bool commit = rc == ZT_OK, in_batch;
        bool changed = commit && zt__store_txn_writes(req->txn) > j->bookkeeping;
        int erc = zt__req_end_txn(srv, req, commit, changed, &in_batch);
        if (erc != ZT_OK) rc = erc;
    }
    zt__buf_free(&req->body);
    zt__buf_free(&req->res_hdrs);
    free(req->res_body);
    cJSON_Delete(req->json);
    zt__arena_reset(&req->arena);
    free(j);
    return rc;
}
