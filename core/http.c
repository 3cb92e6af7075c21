/* http.c: HTTP/1.1 connections over libuv and http-parser: parsing, limits, timeouts, responses. */
#include "core.h"

#include <http_parser.h>

#include <arpa/inet.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>

/*
 * The shape of a connection's life:
 *
 *   read → http_parser_execute → callbacks build zt_req objects in the connection's queue
 *   (oldest first) and hand each complete one to zt__server_handle. Nothing is written
 *   from the read callback: a connection with an answer ready goes on the dirty list, and
 *   zt__http_flush (once per loop iteration, after the batch commit) serializes every
 *   ready answer at the head of each dirty connection's queue into one buffer and writes
 *   it with one write. A response that closes the connection ends with a shutdown, then a
 *   short "lingering" read that discards what the client still sends, so the client
 *   reads our answer instead of a reset.
 *
 * One periodic sweep over all connections enforces the header/body timeout, the idle
 * keep-alive timeout, stalled writes and the end of lingering: no per-connection timers.
 */

enum {
    READ_SIZE = 64 * 1024, /* the one read buffer: parsing copies whatever it keeps */
    MAX_QUEUE = 64,        /* requests queued on a connection before reading pauses */
    HELD_MAX = 256 * 1024, /* answer bytes a connection holds unsent before reading pauses */
    FREE_MAX = 4,          /* zt_req objects a connection keeps for reuse */
    REQ_ARENA = 4096,      /* a request's inline first arena block */
    SWEEP_MS = 500,
    LINGER_MS = 2000,          /* how long a closing connection drains the client's bytes */
    KEEP_OUT = 64 * 1024,      /* output buffer capacity kept between writes */
    KEEP_SMALL = 4 * 1024,     /* response-header and token buffers kept between requests */
    BODY_PREALLOC = 64 * 1024, /* at most this much reserved ahead of a declared body */
};

#define DEFAULT_HEADER_BYTES      (16u * 1024)
#define DEFAULT_HEADER_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS   60000u

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ---- intrusive lists ------------------------------------------------------------- */

typedef struct link {
    struct link *prev, *next;
} link;

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

static void list_init(link *l)
{
    l->prev = l->next = l;
}

static bool list_empty(const link *l)
{
    return l->next == l;
}

static void list_push(link *head, link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static void list_del(link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* ---- state ----------------------------------------------------------------------- */

/* A request as http.c holds it: the shared zt_req, what only parsing needs, and the
 * inline first arena block (so that a small request allocates nothing). */
typedef struct http_req {
    zt_req r;
    uint64_t begin_ms; /* loop time of the first byte: the header timeout counts from it */
    size_t target_len;
    size_t hdr_bytes; /* request line and header bytes seen by the callbacks */
    size_t body_limit;
    bool headers_done;
    bool complete;   /* the whole message has been read */
    bool dispatched; /* handed to zt__server_handle */
    bool counted;    /* counted in http_state.inflight */
    bool orphan;     /* its connection is gone; zt__http_ready frees it */
    bool want_continue, continue_sent;
    bool http10;
    size_t held; /* its answer's bytes, counted in zt_conn.held until it leaves the queue */
    _Alignas(16) unsigned char arena0[REQ_ARENA];
} http_req;

enum { T_NONE, T_URL, T_FIELD, T_VALUE };

struct zt_conn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct http_state *hs;
    http_parser parser;
    link all, dirty, resume;
    http_req *head, *tail; /* the queue, oldest first, linked through r.next */
    http_req *parsing;     /* the request being read (the queue's tail), or NULL */
    unsigned nqueue;
    http_req *free; /* recycled requests, linked through r.next */
    unsigned nfree;
    int tok;             /* what acc holds */
    int need;            /* what the line-ending check expects next (NEED_*) */
    const char *scan;    /* next byte of the current read not yet line-ending checked */
    http_req *completed; /* the message on_message_complete just ended, to dispatch */
    zt_buf acc;          /* a target, header name or value, which may arrive in pieces */
    size_t acc_used;     /* the most acc held since it was last wiped (acc_wipe) */
    zt_buf out;          /* serialized responses; stable while a write is in flight */
    char *pending;       /* bytes read but not parsed while parsing is paused */
    size_t npending;
    size_t held;        /* answer bytes made and not yet in out (http_req.held) */
    uint64_t active_ms; /* accepted, or last became idle: the idle timeout counts from it */
    uint64_t wrote_in;  /* the last batch it wrote in (batch.c), 0: none */
    uint64_t linger_until;
    size_t wq_size; /* write queue size at the last sweep, to spot a stalled reader */
    uint64_t wq_since;
    unsigned nresponses; /* for the fuzzer */
    char client[46];
    bool proxied;    /* the peer is one of trusted_proxies: X-Forwarded-For names the client */
    bool fake;       /* no socket (zt__http_fuzz_feed) */
    bool reading;    /* uv_read_start in effect */
    bool paused;     /* parser paused: too many requests queued */
    bool stop_parse; /* no further request will be read */
    bool eof_seen;   /* the client closed its side while parsing was paused */
    bool eof;        /* the client closed its side and everything it sent is parsed */
    bool writing;    /* a uv_write is in flight */
    bool finishing;  /* shutdown issued: the connection closes after its last bytes */
    bool lingering;
    bool closing;
    bool fatal; /* out of memory inside the parser: close */
};

typedef struct http_state {
    zt_server *srv;
    uv_tcp_t **listeners;
    size_t nlisteners;
    link conns, dirty, resume;
    unsigned nconns;
    unsigned inflight;
    unsigned nhandles; /* open uv handles that point here; the state is freed at zero */
    bool has_handles;
    bool stopped;    /* zt__http_stop_accepting */
    bool closed_all; /* zt__http_close_all: free when the last handle is closed */
    uv_timer_t sweep;
    uv_idle_t idle; /* resumes paused connections before the loop polls */
    time_t date_sec;
    size_t date_len;
    char date[64]; /* "Date: ...\r\n" */
    char rbuf[READ_SIZE];
} http_state;

static void close_conn(zt_conn *c);
static void flush_conn(zt_conn *c);

static uint64_t now_ms(const http_state *hs)
{
    return hs->srv->loop ? uv_now(hs->srv->loop) : 0;
}

static size_t header_limit(const http_state *hs)
{
    size_t n = hs->srv->conf ? hs->srv->conf->header_bytes : 0;
    return n ? n : DEFAULT_HEADER_BYTES;
}

static uint64_t header_timeout(const http_state *hs)
{
    uint64_t n = hs->srv->conf ? hs->srv->conf->header_timeout_ms : 0;
    return n ? n : DEFAULT_HEADER_TIMEOUT_MS;
}

static uint64_t idle_timeout(const http_state *hs)
{
    uint64_t n = hs->srv->conf ? hs->srv->conf->idle_timeout_ms : 0;
    return n ? n : DEFAULT_IDLE_TIMEOUT_MS;
}

static void date_update(http_state *hs)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(zt_now_ms() / 1000); /* the node's clock, which tests may move */
    if (t == hs->date_sec && hs->date_len) return;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* By hand rather than strftime: the names must not follow the locale. */
    int n = snprintf(hs->date, sizeof hs->date, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     days[tm.tm_wday % 7], tm.tm_mday, mons[tm.tm_mon % 12], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    assert(n > 0 && (size_t)n < sizeof hs->date);
    hs->date_len = (size_t)n;
    hs->date_sec = t;
}

static void maybe_free_state(http_state *hs)
{
    if (!hs->closed_all || hs->nhandles) return;
    hs->srv->http = NULL;
    free(hs->listeners);
    free(hs);
}

static void on_handle_closed(uv_handle_t *h)
{
    http_state *hs = h->data;
    assert(hs->nhandles > 0);
    hs->nhandles--;
    maybe_free_state(hs);
}

static void on_sweep(uv_timer_t *t);
static void on_idle(uv_idle_t *i);

static http_state *state_get(zt_server *srv, bool handles)
{
    http_state *hs = srv->http;
    if (!hs) {
        if (!(hs = calloc(1, sizeof(*hs)))) return NULL;
        hs->srv = srv;
        list_init(&hs->conns);
        list_init(&hs->dirty);
        list_init(&hs->resume);
        date_update(hs);
        /* http-parser counts the request line and header bytes exactly (its own limit is
         * process-wide: one server per process). The callbacks count too, as a guard. */
        size_t lim = header_limit(hs);
        http_parser_set_max_header_size(lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim);
        srv->http = hs;
    }
    if (handles && !hs->has_handles) {
        assert(srv->loop);
        uv_timer_init(srv->loop, &hs->sweep);
        uv_idle_init(srv->loop, &hs->idle);
        hs->sweep.data = hs->idle.data = hs;
        hs->nhandles += 2;
        hs->has_handles = true;
        uv_timer_start(&hs->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        /* The sweep alone must not keep the loop running once everything else is gone. */
        uv_unref((uv_handle_t *)&hs->sweep);
    }
    return hs;
}

/* ---- requests -------------------------------------------------------------------- */

static http_req *H(zt_req *r)
{
    return r ? CONTAINER(r, http_req, r) : NULL;
}

/* Frees what a request owns beyond its inline block; keeps a small res_hdrs buffer. */
static void req_clear(http_req *h)
{
    zt_req *r = &h->r;
    zt__arena_reset(&r->arena);
    zt__free_wiped(r->res_body, r->res_len);
    r->res_body = NULL;
    zt__buf_free(&r->body);
    zt__json_delete_wiped(r->json);
    r->json = NULL;
    if (r->res_hdrs.cap > KEEP_SMALL) zt__buf_free(&r->res_hdrs);
    zt__buf_wipe(&r->res_hdrs);
}

static void req_free(http_req *h)
{
    req_clear(h);
    zt__buf_free(&h->r.res_hdrs);
    free(h);
}

static void recycle(zt_conn *c, http_req *h)
{
    if (c->nfree >= FREE_MAX || c->closing) {
        req_free(h);
        return;
    }
    req_clear(h);
    h->r.next = c->free ? &c->free->r : NULL;
    c->free = h;
    c->nfree++;
}

static void count(http_state *hs, http_req *h)
{
    if (!h->counted) {
        h->counted = true;
        hs->inflight++;
    }
}

static void uncount(http_state *hs, http_req *h)
{
    if (h->counted) {
        h->counted = false;
        assert(hs->inflight > 0);
        hs->inflight--;
    }
}

/* A new request at the tail of the queue. */
static http_req *req_begin(zt_conn *c)
{
    http_req *h = c->free;
    zt_buf keep = {0};
    if (h) {
        c->free = H(h->r.next);
        c->nfree--;
        keep = h->r.res_hdrs;
    } else if (!(h = malloc(sizeof(*h)))) {
        return NULL;
    }
    memset(h, 0, offsetof(http_req, arena0));
    zt_req *r = &h->r;
    r->res_hdrs = keep;
    zt__arena_init(&r->arena, h->arena0, sizeof h->arena0);
    r->conn = c;
    r->srv = c->hs->srv;
    r->t_start_ns = uv_hrtime();
    zt_id(r->id);
    memcpy(r->client, c->client, sizeof r->client);
    r->method = "-"; /* until the request line says */
    h->begin_ms = now_ms(c->hs);
    if (c->tail)
        c->tail->r.next = r;
    else
        c->head = h;
    c->tail = h;
    c->nqueue++;
    return h;
}

static void queue_pop(zt_conn *c)
{
    http_req *h = c->head;
    assert(h && c->nqueue > 0);
    c->head = H(h->r.next);
    if (!c->head) c->tail = NULL;
    h->r.next = NULL;
    c->nqueue--;
    c->held -= h->held;
    h->held = 0;
    if (c->parsing == h) c->parsing = NULL;
}

/* A client that sends requests faster than it reads their answers (pipelining, and not
 * reading) would have every answer made and held: 64 of 455 KB on one connection. Past
 * HELD_MAX of answers made and unsent, no further request is read until they are out. */
static bool holds_too_much(const zt_conn *c)
{
    return c->held + c->out.len > HELD_MAX;
}

static void mark_dirty(zt_conn *c)
{
    if (!c->closing && list_empty(&c->dirty)) list_push(&c->hs->dirty, &c->dirty);
}

/*
 * Dropping a request that will never be answered on its connection (the connection
 * closed, or an earlier answer closed it).
 *
 * - A request whose handler is still running off the loop (dispatched, not ready) cannot
 *   be freed: the server holds it and calls zt__http_ready when the work is done. It is
 *   orphaned: it loses its connection (r.conn = NULL; r.client is its own copy), stays
 *   counted in flight (a graceful shutdown waits for it: it may hold a transaction), and
 *   zt__http_ready reports it dropped and frees it.
 * - Every other request the server saw or that got an answer is reported to
 *   zt__server_done with status 0 (dropped), so metrics count it and the server forgets
 *   it (it may sit in the batch list), then freed.
 * - A request still half-read was never seen by anyone: freed silently.
 */
static void release(zt_conn *c, http_req *h)
{
    zt_req *r = &h->r;
    if (c->parsing == h) c->parsing = NULL;
    r->next = NULL;
    if (h->dispatched && !r->ready) {
        h->orphan = true;
        r->conn = NULL;
        return;
    }
    if (h->counted) {
        r->status = 0;
        zt__server_done(r->srv, r);
        uncount(c->hs, h);
    }
    req_free(h);
}

void zt__http_ready(zt_req *req)
{
    http_req *h = H(req);
    if (h->orphan) {
        http_state *hs = req->srv->http;
        req->status = 0;
        zt__server_done(req->srv, req);
        if (hs)
            uncount(hs, h);
        else
            h->counted = false;
        req_free(h);
        return;
    }
    assert(req->conn);
    mark_dirty(req->conn);
}

/* ---- reading --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    zt_conn *c = handle->data;
    (void)suggested;
    /* One buffer for every connection: libuv reads into it and calls on_read at once,
     * and parsing copies what it keeps (paused leftovers go to c->pending). */
    *buf = uv_buf_init(c->hs->rbuf, sizeof c->hs->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_start(zt_conn *c)
{
    if (c->reading || c->fake || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        close_conn(c);
        return;
    }
    c->reading = true;
}

static void read_stop(zt_conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void stop_parsing(zt_conn *c)
{
    c->stop_parse = true;
    read_stop(c);
    zt__free_wiped(c->pending, c->npending);
    c->pending = NULL;
    c->npending = 0;
    if (!list_empty(&c->resume)) list_del(&c->resume);
}

/* The core answers this request itself (limits, malformed input, timeouts): a problem,
 * then the connection closes, since what follows on the wire cannot be trusted. */
static void answer(zt_conn *c, http_req *h, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void answer(zt_conn *c, http_req *h, int status, const char *type, const char *fmt, ...)
{
    zt_req *r = &h->r;
    assert(!h->dispatched);
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    zt__problem(r, status, type, NULL, "%s", detail);
    if (r->status != status) { /* out of memory for the body: the status line still goes */
        r->status = status;
        r->res_len = 0;
        r->responded = true;
    }
    r->ready = true;
    r->close_after = true;
    r->keepalive = false;
    count(c->hs, h);
    if (c->parsing == h) c->parsing = NULL;
    stop_parsing(c);
    mark_dirty(c);
}

static int oom(zt_conn *c, http_req *h)
{
    answer(c, h, 503, "service-unavailable", "the node is out of memory; try again");
    return -1;
}

static bool hdr_is(const zt_hdr *x, const char *name, size_t n)
{
    return x->nlen == n && strncasecmp(x->name, name, n) == 0;
}
#define HDR_IS(x, lit) hdr_is(x, lit, sizeof(lit) - 1)

static int bad_request(zt_conn *c, http_req *h, const char *detail)
{
    answer(c, h, 400, "bad-request", "malformed request: %s", detail);
    return -1;
}

/* RFC 9110 5.6.2: the parser's non-strict build lets spaces into names. */
static bool is_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (!n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(extra, ch))))
            return false;
    }
    return true;
}

/* Puts a token (s[0..n)) into the request: the target, a header name, or its value. */
static int place(zt_conn *c, http_req *h, int tok, const char *s, size_t n)
{
    zt_req *r = &h->r;
    switch (tok) {
    case T_URL:
        if (!(r->target = zt__arena_strndup(&r->arena, s, n))) return oom(c, h);
        h->target_len = n;
        break;
    case T_FIELD:
        if (r->nhdrs == r->caphdrs) {
            size_t cap = r->caphdrs ? r->caphdrs * 2 : 16;
            zt_hdr *nh = zt__arena_alloc(&r->arena, cap * sizeof(*nh));
            if (!nh) return oom(c, h);
            if (r->nhdrs) memcpy(nh, r->hdrs, r->nhdrs * sizeof(*nh));
            r->hdrs = nh;
            r->caphdrs = cap;
        }
        if (!is_token(s, n))
            return bad_request(c, h, "a header name is not a token (no space before the colon)");
        zt_hdr *x = &r->hdrs[r->nhdrs];
        if (!(x->name = zt__arena_strndup(&r->arena, s, n))) return oom(c, h);
        x->nlen = n;
        x->value = "";
        x->vlen = 0;
        r->nhdrs++;
        break;
    case T_VALUE:
        assert(r->nhdrs > 0);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        zt_hdr *v = &r->hdrs[r->nhdrs - 1];
        if (!(v->value = zt__arena_strndup(&r->arena, s, n))) return oom(c, h);
        v->vlen = n;
        break;
    default:
        break;
    }
    return 0;
}

/* Moves the token in acc into the request. */
static int commit(zt_conn *c, http_req *h)
{
    int tok = c->tok;
    size_t n = c->acc.len;
    c->tok = T_NONE;
    if (n > c->acc_used) c->acc_used = n;
    c->acc.len = 0;
    return place(c, h, tok, c->acc.data ? c->acc.data : "", n);
}

/* What acc held (a bearer token among the headers) is wiped once a request's headers are
 * in, not token by token; `keep` bounds the room it keeps. */
static void acc_wipe(zt_conn *c, size_t keep)
{
    if (c->acc.cap <= keep && !c->acc.len && !c->acc_used) return;
    if (c->acc.len > c->acc_used) c->acc_used = c->acc.len;
    c->acc.len = c->acc_used;
    if (c->acc.cap > keep)
        zt__buf_free(&c->acc);
    else
        zt__buf_wipe(&c->acc);
    c->acc_used = 0;
}

static int token(zt_conn *c, http_req *h, int tok, const char *at, size_t len)
{
    h->hdr_bytes += len;
    if (h->hdr_bytes > header_limit(c->hs)) {
        answer(c, h, 431, "header-too-large",
               "the request line and headers exceed %zu bytes; send fewer or shorter headers",
               header_limit(c->hs));
        return -1;
    }
    if (c->tok != tok && commit(c, h)) return -1;
    c->tok = tok;
    if (zt__buf_append(&c->acc, at, len)) return oom(c, h);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    zt_conn *c = p->data;
    assert(!c->parsing);
    http_req *h = req_begin(c);
    if (!h) {
        c->fatal = true;
        return -1;
    }
    c->parsing = h;
    c->tok = T_NONE;
    acc_wipe(c, KEEP_SMALL);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    zt_conn *c = p->data;
    c->parsing->r.method = http_method_str((enum http_method)p->method);
    return token(c, c->parsing, T_URL, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    zt_conn *c = p->data;
    http_req *h = c->parsing;
    if (h->headers_done) { /* trailers of a chunked body: counted, not kept */
        h->hdr_bytes += len;
        return 0;
    }
    return token(c, h, T_FIELD, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    zt_conn *c = p->data;
    http_req *h = c->parsing;
    if (h->headers_done) {
        h->hdr_bytes += len;
        return 0;
    }
    return token(c, h, T_VALUE, at, len);
}

/* target → path (percent-decoded) and query (raw). Only origin-form is served. */
static int split_target(zt_conn *c, http_req *h)
{
    zt_req *r = &h->r;
    const char *t = r->target;
    size_t n = h->target_len;
    if (!t || n == 0 || t[0] != '/')
        return bad_request(c, h, "the request target must be a path that starts with /");
    const char *end = memchr(t, '#', n); /* a fragment is never the server's business */
    if (end) n = (size_t)(end - t);
    const char *q = memchr(t, '?', n);
    size_t plen = q ? (size_t)(q - t) : n;
    char *path = zt__arena_alloc(&r->arena, plen + 1);
    if (!path) return oom(c, h);
    if (zt__pct_decode(path, t, plen, false) < 0)
        return bad_request(c, h, "the path has a bad %-escape or an encoded NUL byte");
    r->path = path;
    if (q && !(r->query = zt__arena_strndup(&r->arena, q + 1, n - plen - 1))) return oom(c, h);
    return 0;
}

/* One address of a forwarding header, s[0..n) trimmed, into out (canonical text); false
 * if it is not one ("unknown", a name, an address with a port). */
static bool forwarded_addr(const char *s, size_t n, char out[46])
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') s++, n -= 2;
    char tmp[64];
    unsigned char bin[16];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (inet_pton(AF_INET, tmp, bin) == 1) return inet_ntop(AF_INET, bin, out, 46) != NULL;
    if (inet_pton(AF_INET6, tmp, bin) == 1) return inet_ntop(AF_INET6, bin, out, 46) != NULL;
    return false;
}

/* Behind trusted proxies the client is the rightmost address of X-Forwarded-For that is
 * not a trusted proxy itself (what is left of it was written by whoever sent it, and may
 * be anything), else X-Real-IP; the peer's own address if neither says. */
static void forwarded_client(zt_req *r)
{
    const zt_conf *conf = r->srv->conf;
    char found[46] = "", a[46];
    bool done = false;
    for (size_t i = r->nhdrs; i-- > 0 && !done;) {
        const zt_hdr *x = &r->hdrs[i];
        if (!HDR_IS(x, "x-forwarded-for")) continue;
        const char *v = x->value, *end = v + strlen(v);
        while (end > v && !done) {
            const char *comma = end;
            while (comma > v && comma[-1] != ',') comma--;
            if (!forwarded_addr(comma, (size_t)(end - comma), a)) {
                done = true; /* not an address: nothing left of it is believed */
            } else {
                memcpy(found, a, sizeof a);
                done = !zt__netmask_match(conf->proxies, conf->nproxies, a);
            }
            end = comma > v ? comma - 1 : v;
        }
    }
    if (!found[0]) {
        const char *real = zt_req_header(r, "X-Real-IP");
        if (real) forwarded_addr(real, strlen(real), found);
    }
    if (found[0]) memcpy(r->client, found, sizeof r->client);
}

/* Whether the request crossed a network unencrypted. The node speaks no TLS itself: a
 * request is encrypted only if it came from this machine, or from a trusted proxy that
 * says it took it over HTTPS (X-Forwarded-Proto: https, exactly one value); a trusted
 * proxy that says nothing is taken at its word's absence: plain. */
static bool plain_http(const zt_conn *c, const zt_req *r)
{
    if (c->proxied) {
        const char *proto = zt_req_header((zt_req *)r, "X-Forwarded-Proto");
        return !proto || strcasecmp(proto, "https") != 0;
    }
    return strncmp(c->client, "127.", 4) != 0 && strcmp(c->client, "::1") != 0 &&
           strncmp(c->client, "::ffff:127.", 11) != 0;
}

static int on_headers_complete(http_parser *p)
{
    zt_conn *c = p->data;
    http_req *h = c->parsing;
    zt_req *r = &h->r;
    if (commit(c, h)) return -1;
    acc_wipe(c, KEEP_SMALL);
    h->headers_done = true;
    r->method = http_method_str((enum http_method)p->method);
    r->head = p->method == HTTP_HEAD;
    /* No upgrade (WebSocket, CONNECT tunnels) is spoken here: answer, then close. */
    r->keepalive = http_should_keep_alive(p) && !p->upgrade;
    h->http10 = p->http_major == 1 && p->http_minor == 0;

    unsigned ncl = 0, nte = 0, nhost = 0;
    const char *te = NULL, *expect = NULL;
    for (size_t i = 0; i < r->nhdrs; i++) {
        const zt_hdr *x = &r->hdrs[i];
        if (HDR_IS(x, "content-length"))
            ncl++;
        else if (HDR_IS(x, "transfer-encoding"))
            nte++, te = x->value;
        else if (HDR_IS(x, "expect"))
            expect = x->value;
        else if (HDR_IS(x, "host"))
            nhost++;
    }
    /* Shapes that front-ends and back-ends may frame differently (request smuggling). */
    if (ncl && nte) return bad_request(c, h, "both Content-Length and Transfer-Encoding");
    if (ncl > 1) return bad_request(c, h, "more than one Content-Length header");
    if (nte > 1) return bad_request(c, h, "more than one Transfer-Encoding header");
    if (nte && strcasecmp(te, "chunked") != 0) {
        answer(c, h, 400, "bad-request",
               "malformed request: Transfer-Encoding \"%.100s\" is not supported; send "
               "\"chunked\" or a Content-Length",
               te);
        return -1;
    }
    if (nhost > 1) return bad_request(c, h, "more than one Host header");
    if (c->proxied) forwarded_client(r);
    r->plain_http = r->srv->conf && r->srv->conf->auth_https_only && plain_http(c, r);
    if (split_target(c, h)) return -1;

    size_t limit = zt__server_route(r->srv, r);
    h->body_limit = limit;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = !chunked && p->content_length != ULLONG_MAX;
    if (has_len && p->content_length > limit) {
        answer(c, h, 413, "body-too-large", "the body is %llu bytes; %s %s takes at most %zu bytes",
               (unsigned long long)p->content_length, r->method, r->path, limit);
        return -1;
    }
    bool body = chunked || (has_len && p->content_length > 0);
    if (expect && !h->http10) { /* HTTP/1.0 clients cannot mean it (RFC 9110 10.1.1) */
        if (strcasecmp(expect, "100-continue") != 0) {
            answer(c, h, 417, "expectation-failed",
                   "Expect: \"%.100s\" is not supported; only 100-continue is", expect);
            return -1;
        }
        if (body) {
            h->want_continue = true;
            mark_dirty(c);
        }
    }
    if (has_len && p->content_length > 0) {
        size_t ahead =
            p->content_length < BODY_PREALLOC ? (size_t)p->content_length : (size_t)BODY_PREALLOC;
        if (zt__buf_reserve(&r->body, ahead)) return oom(c, h);
    }
    return 0;
}

/*
 * The http-parser that Debian ships is built non-strict: where an LF must follow a CR
 * (request line, header lines, end of headers, chunk lines) it takes any byte, it does
 * not look at the two bytes after chunk data, and it unfolds continuation lines. Framing
 * that lenient is how requests are smuggled past a stricter front-end, so every byte the
 * parser reads outside a body is checked here: each CR is followed by LF, chunk data by
 * CRLF, and no line starts with a space or tab (obs-fold, RFC 9112 5.2). A bare LF as a
 * line end is accepted, as RFC 9112 2.2 allows.
 */
enum { NEED_NONE, NEED_LF, NEED_CRLF, AFTER_LF };

static bool check_endings(zt_conn *c, const char *p, const char *end)
{
    for (; p < end; p++) {
        if (c->need == NEED_NONE) {
            /* Only CR and LF change the state: skip to the first of them (a request line
             * or header line at a time, not a byte). */
            const char *cr = memchr(p, '\r', (size_t)(end - p)), *lim = cr ? cr : end;
            const char *lf = memchr(p, '\n', (size_t)(lim - p));
            p = lf ? lf : lim;
            if (p == end) break;
        }
        char ch = *p;
        switch (c->need) {
        case NEED_CRLF:
            if (ch != '\r') return false;
            c->need = NEED_LF;
            continue;
        case NEED_LF:
            if (ch != '\n') return false;
            c->need = AFTER_LF;
            continue;
        case AFTER_LF:
            if (ch == ' ' || ch == '\t') return false;
            c->need = NEED_NONE;
            break;
        default:
            break;
        }
        if (ch == '\r')
            c->need = NEED_LF;
        else if (ch == '\n')
            c->need = AFTER_LF;
    }
    return true;
}

static int bad_endings(zt_conn *c, http_req *h)
{
    return bad_request(c, h,
                       "a line does not end with CRLF, chunk data not with CRLF, or a header "
                       "line is folded");
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    zt_conn *c = p->data;
    http_req *h = c->parsing;
    zt_req *r = &h->r;
    if (!check_endings(c, c->scan, at)) return bad_endings(c, h);
    c->scan = at + len;
    bool chunk_end = (p->flags & F_CHUNKED) && p->content_length == 0;
    c->need = chunk_end ? NEED_CRLF : NEED_NONE; /* body bytes are free */
    if (len > h->body_limit - r->body.len) {     /* chunked bodies end up here */
        answer(c, h, 413, "body-too-large", "the body exceeds %zu bytes, the limit of %s %s",
               h->body_limit, r->method, r->path);
        return -1;
    }
    if (zt__buf_append(&r->body, at, len)) return oom(c, h);
    return 0;
}

/* The parser pauses at the end of each message, so that feed() learns where the message
 * ended and can check its line endings before the request is dispatched. */
static int on_message_complete(http_parser *p)
{
    zt_conn *c = p->data;
    http_req *h = c->parsing;
    c->parsing = NULL;
    h->complete = true;
    c->completed = h;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Keeps bytes that arrived while parsing is paused. */
static void keep(zt_conn *c, const char *data, size_t len)
{
    if (!len) return;
    char *p = malloc(c->npending + len); /* not realloc: the old block is wiped */
    if (!p) {
        close_conn(c);
        return;
    }
    if (c->npending) memcpy(p, c->pending, c->npending);
    memcpy(p + c->npending, data, len);
    zt__free_wiped(c->pending, c->npending);
    c->pending = p;
    c->npending += len;
}

static void parse_error(zt_conn *c, enum http_errno e)
{
    http_req *h = c->parsing;
    if (!h && !(h = req_begin(c))) { /* the error came before any request began */
        close_conn(c);
        return;
    }
    if (e == HPE_HEADER_OVERFLOW && !h->headers_done)
        answer(c, h, 431, "header-too-large",
               "the request line and headers exceed %zu bytes; send fewer or shorter headers",
               header_limit(c->hs));
    else
        answer(c, h, 400, "bad-request", "malformed request: %s", http_errno_description(e));
}

/* A complete request goes to the server. */
static void dispatch(zt_conn *c, http_req *h)
{
    zt_req *r = &h->r;
    h->dispatched = true;
    count(c->hs, h);
    zt__server_handle(r->srv, r);
    if (r->ready) mark_dirty(c);
    if (r->res_body) {
        h->held = r->res_len;
        c->held += h->held;
    }
    if (!r->keepalive || c->hs->stopped)
        stop_parsing(c);
    else if (c->nqueue >= MAX_QUEUE || holds_too_much(c))
        c->paused = true; /* flush_conn resumes when answers have gone out */
}

static void feed(zt_conn *c, const char *data, size_t len)
{
    assert(!c->paused && !c->stop_parse && !c->closing);
    while (len && !c->paused && !c->stop_parse) {
        c->scan = data;
        size_t n = http_parser_execute(&c->parser, &settings, data, len);
        if (c->fatal) {
            close_conn(c);
            return;
        }
        if (c->closing || c->stop_parse) return; /* a callback answered and stopped us */
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        http_req *done = c->completed;
        c->completed = NULL;
        if (e != HPE_OK && e != HPE_PAUSED) {
            parse_error(c, e);
            return;
        }
        if (!check_endings(c, c->scan, data + n)) {
            if (done || c->parsing)
                bad_endings(c, done ? done : c->parsing);
            else
                parse_error(c, HPE_LF_EXPECTED);
            return;
        }
        if (e == HPE_PAUSED) http_parser_pause(&c->parser, 0);
        data += n;
        len -= n;
        if (done) dispatch(c, done);
        if (c->closing) return;
        /* http-parser reads nothing after an upgrade; such a request closes (keepalive). */
        assert(!done || !c->parser.upgrade || c->stop_parse);
    }
    if (c->paused && !c->stop_parse) keep(c, data, len);
    if (c->stop_parse || c->paused) read_stop(c);
}

/* The client will send nothing more and everything it sent is parsed: a half-read
 * request can never complete; the connection closes once the answers are out. */
static void eof_settle(zt_conn *c)
{
    c->eof = true;
    if (c->parsing) {
        http_req *h = c->parsing, *prev = NULL;
        for (http_req *x = c->head; x != h; x = H(x->r.next)) prev = x;
        assert(c->tail == h);
        if (prev)
            prev->r.next = NULL;
        else
            c->head = NULL;
        c->tail = prev;
        c->nqueue--;
        release(c, h);
    }
    stop_parsing(c);
    if (!c->head && !c->writing && !c->finishing)
        close_conn(c);
    else
        mark_dirty(c);
}

static void resume(zt_conn *c)
{
    if (c->closing || !c->paused || c->stop_parse) return;
    c->paused = false;
    char *buf = c->pending;
    size_t n = c->npending;
    c->pending = NULL;
    c->npending = 0;
    if (n) feed(c, buf, n);
    zt__free_wiped(buf, n);
    if (c->closing || c->paused || c->stop_parse) return;
    if (c->eof_seen)
        eof_settle(c);
    else
        read_start(c);
}

static void run_resumes(http_state *hs)
{
    while (!list_empty(&hs->resume)) {
        zt_conn *c = CONTAINER(hs->resume.next, zt_conn, resume);
        list_del(&c->resume);
        resume(c);
    }
}

/* Stopped only by an iteration that found nothing to resume: the requests a resume
 * dispatched are answered in the check phase after the poll, and an active idle handle is
 * what keeps that poll from waiting for the next timer (up to the sweep's 500 ms) first. */
static void on_idle(uv_idle_t *i)
{
    http_state *hs = i->data;
    if (list_empty(&hs->resume))
        uv_idle_stop(i);
    else
        run_resumes(hs);
}

static void schedule_resume(zt_conn *c)
{
    if (!list_empty(&c->resume)) return;
    list_push(&c->hs->resume, &c->resume);
    /* Parsing dispatches requests, which may open the batch: do it in the idle phase, so
     * that the check handle commits and answers in the same iteration. */
    if (c->hs->has_handles) uv_idle_start(&c->hs->idle, on_idle);
}

/* Bytes read from the client: parsed, kept while parsing is paused, or discarded. */
static void take(zt_conn *c, const char *data, size_t len)
{
    if (c->closing || c->lingering || c->stop_parse) return; /* discarded */
    if (c->paused) {
        keep(c, data, len);
        read_stop(c);
        return;
    }
    feed(c, data, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    zt_conn *c = s->data;
    if (nread > 0) {
        take(c, buf->base, (size_t)nread);
        /* Parsing copied whatever it keeps: the read buffer is wiped (passwords, tokens). */
        memset(buf->base, 0, (size_t)nread);
    } else if (c->closing) {
        return;
    } else if (nread == UV_EOF && !c->lingering) {
        c->reading = false; /* libuv stops reading at EOF */
        if (c->paused)
            c->eof_seen = true;
        else
            eof_settle(c);
    } else if (nread < 0) {
        close_conn(c);
    }
}

/* ---- writing --------------------------------------------------------------------- */

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}
#define PUTS(o, lit) put(o, lit, sizeof(lit) - 1)

static char *put_uint(char *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do tmp[--i] = (char)('0' + v % 10);
    while ((v /= 10));
    return put(o, tmp + i, sizeof tmp - i);
}

static const char *reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return s[0] == '<' ? "Unknown" : s; /* "<unknown>" */
}

/* application/json, application/problem+json, any other …+json (parameters after ;) */
static bool json_type(const char *ct)
{
    if (!ct) return false;
    size_t n = strcspn(ct, "; ");
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
            strncasecmp(ct + n - 5, "+json", 5) == 0);
}

static int serialize(zt_conn *c, http_req *h, bool last)
{
    const zt_req *r = &h->r;
    const http_state *hs = c->hs;
    int st = r->status >= 100 && r->status <= 999 ? r->status : 500;
    const char *rs = reason(st);
    size_t rl = strlen(rs);
    bool bodyless = st < 200 || st == 204 || st == 304;
    /* HEAD keeps the length of the body it does not get (static.c leaves res_body NULL). */
    size_t clen = r->head || r->res_body ? r->res_len : 0;
    size_t blen = bodyless || r->head || !r->res_body ? 0 : r->res_len;
    size_t ctl = r->res_ctype ? strlen(r->res_ctype) : 0;
    size_t need = 13 + rl + 2 + hs->date_len + 40 + 16 + ctl + 2 + 16 + sizeof r->id + 2 + 26 + 25 +
                  34 + r->res_hdrs.len + 2 + blen;
    if (zt__buf_reserve(&c->out, need)) return ZT_ENOMEM;
    char *o = c->out.data + c->out.len;
    o = PUTS(o, "HTTP/1.1 ");
    *o++ = (char)('0' + st / 100);
    *o++ = (char)('0' + st / 10 % 10);
    *o++ = (char)('0' + st % 10);
    *o++ = ' ';
    o = put(o, rs, rl);
    o = PUTS(o, "\r\n");
    o = put(o, hs->date, hs->date_len);
    if (!bodyless) {
        o = PUTS(o, "Content-Length: ");
        o = put_uint(o, clen);
        o = PUTS(o, "\r\n");
    }
    if (ctl) {
        o = PUTS(o, "Content-Type: ");
        o = put(o, r->res_ctype, ctl);
        o = PUTS(o, "\r\n");
    }
    o = PUTS(o, "X-Request-Id: ");
    o = put(o, r->id, strlen(r->id));
    o = PUTS(o, "\r\n");
    /* An answer to someone signed in may hold personal data: no cache keeps it (a shared
     * computer in a service hall) unless its handler says it may. And an answer is taken
     * for nothing but the type it says: a browser never renders JSON, anything else says
     * nosniff. (Anonymous JSON, the commonest answer, carries neither: 57 bytes.) */
    if (!r->res_cache_set && r->caller) o = PUTS(o, "Cache-Control: no-store\r\n");
    if (!json_type(r->res_ctype)) o = PUTS(o, "X-Content-Type-Options: nosniff\r\n");
    if (last)
        o = PUTS(o, "Connection: close\r\n");
    else if (h->http10)
        o = PUTS(o, "Connection: keep-alive\r\n");
    if (r->res_hdrs.len) o = put(o, r->res_hdrs.data, r->res_hdrs.len);
    o = PUTS(o, "\r\n");
    if (blen) o = put(o, r->res_body, blen);
    c->out.len = (size_t)(o - c->out.data);
    assert(c->out.len < c->out.cap);
    return ZT_OK;
}

static void trim_out(zt_conn *c)
{
    zt__buf_wipe(&c->out);
    if (c->out.cap > KEEP_OUT) zt__buf_free(&c->out);
}

static void on_write(uv_write_t *w, int status)
{
    zt_conn *c = w->handle->data;
    c->writing = false;
    if (c->closing) return;
    if (status < 0) {
        close_conn(c);
        return;
    }
    trim_out(c);
    if (!c->head) c->active_ms = now_ms(c->hs);
    if (!c->finishing) mark_dirty(c); /* more may have become ready meanwhile */
}

static void write_out(zt_conn *c)
{
    zt_buf *o = &c->out;
    if (!o->len) return;
    if (c->fake) {
        zt__buf_wipe(o);
        return;
    }
    assert(o->len <= UINT_MAX);
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        close_conn(c);
        return;
    }
    if ((size_t)n == o->len) {
        trim_out(c);
        return;
    }
    b = uv_buf_init(o->data + n, (unsigned)(o->len - (size_t)n));
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        close_conn(c);
        return;
    }
    c->writing = true;
    c->wq_size = SIZE_MAX;
    c->wq_since = now_ms(c->hs);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    zt_conn *c = s->handle->data;
    if (c->closing) return;
    if (status < 0 || c->eof) {
        close_conn(c);
        return;
    }
    c->lingering = true;
    c->linger_until = now_ms(c->hs) + LINGER_MS;
    read_start(c);
}

/* No more requests: send what is queued for writing, then close. */
static void finish(zt_conn *c)
{
    c->finishing = true;
    stop_parsing(c);
    if (c->fake || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) close_conn(c);
}

static void done(zt_conn *c, http_req *h)
{
    assert(h->counted);
    zt__server_done(h->r.srv, &h->r);
    uncount(c->hs, h);
    recycle(c, h);
}

static void flush_conn(zt_conn *c)
{
    if (c->closing || c->writing || c->finishing) return;
    bool last = false;
    while (c->head && !last) {
        http_req *h = c->head;
        zt_req *r = &h->r;
        if (!r->ready) {
            /* The client waits for this before sending the body; it goes out only when
             * every earlier answer has, and not at all once the body is here. */
            if (h->want_continue && !h->continue_sent && !h->complete) {
                if (zt__buf_append(&c->out, CONTINUE_100, sizeof CONTINUE_100 - 1)) {
                    close_conn(c);
                    return;
                }
                h->continue_sent = true;
            }
            break;
        }
        last = r->close_after || !r->keepalive || (!r->next && (c->hs->stopped || c->eof));
        if (serialize(c, h, last) != ZT_OK) {
            close_conn(c);
            return;
        }
        queue_pop(c);
        c->nresponses++;
        done(c, h);
    }
    if (last) /* what follows a closing answer is never answered */
        while (c->head) {
            http_req *h = c->head;
            queue_pop(c);
            release(c, h);
        }
    write_out(c);
    if (c->closing) return;
    if (last || (!c->head && (c->eof || (c->hs->stopped && c->stop_parse)))) {
        finish(c);
        return;
    }
    if (!c->head && !c->writing) c->active_ms = now_ms(c->hs);
    if (c->paused && c->nqueue < MAX_QUEUE && !holds_too_much(c)) schedule_resume(c);
}

void zt__http_flush(zt_server *srv)
{
    http_state *hs = srv->http;
    if (!hs || list_empty(&hs->dirty)) return;
    date_update(hs);
    /* Work on a detached list: what turns dirty meanwhile waits for the next iteration. */
    link todo;
    todo.next = hs->dirty.next;
    todo.prev = hs->dirty.prev;
    todo.next->prev = &todo;
    todo.prev->next = &todo;
    list_init(&hs->dirty);
    while (!list_empty(&todo)) {
        zt_conn *c = CONTAINER(todo.next, zt_conn, dirty);
        list_del(&c->dirty);
        flush_conn(c);
    }
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_init(http_state *hs, zt_conn *c)
{
    c->hs = hs;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    list_init(&c->dirty);
    list_init(&c->resume);
    list_push(&hs->conns, &c->all);
    hs->nconns++;
    c->active_ms = now_ms(hs);
    c->tcp.data = c;
}

static void conn_free(zt_conn *c)
{
    http_state *hs = c->hs;
    assert(c->closing && !c->head);
    while (c->free) {
        http_req *h = c->free;
        c->free = H(h->r.next);
        req_free(h);
    }
    acc_wipe(c, 0);
    zt__buf_free(&c->out);
    zt__free_wiped(c->pending, c->npending);
    assert(hs->nconns > 0);
    hs->nconns--;
    free(c);
}

static void on_conn_closed(uv_handle_t *handle)
{
    zt_conn *c = handle->data;
    http_state *hs = c->hs;
    conn_free(c);
    assert(hs->nhandles > 0);
    hs->nhandles--;
    maybe_free_state(hs);
}

static void close_conn(zt_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    zt__bw_gone(&c->hs->srv->bw, c->wrote_in);
    c->reading = false;
    while (c->head) {
        http_req *h = c->head;
        queue_pop(c);
        release(c, h);
    }
    c->parsing = NULL;
    list_del(&c->all);
    if (!list_empty(&c->dirty)) list_del(&c->dirty);
    if (!list_empty(&c->resume)) list_del(&c->resume);
    if (!c->fake) uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    /* A fake connection is freed by zt__http_fuzz_feed. */
}

static void overloaded(zt_conn *c)
{
    http_req *h = req_begin(c);
    if (!h) {
        close_conn(c);
        return;
    }
    unsigned max = c->hs->srv->conf->max_connections;
    answer(c, h, 503, "service-unavailable",
           "the node serves at most %u connections at once; try again shortly", max);
}

static void on_connection(uv_stream_t *ls, int status);

/* Out of memory for a connection. libuv stops watching a listener whose connection is
 * not accepted, so take it anyway with a handle of our own and close it at once. */
static struct {
    uv_tcp_t tcp;
    bool busy;
    uv_stream_t *stalled; /* a listener left waiting while the sink was busy */
} sink;

static void on_sink_closed(uv_handle_t *handle)
{
    (void)handle;
    sink.busy = false;
    uv_stream_t *ls = sink.stalled; /* close_listeners forgets a listener it closes */
    sink.stalled = NULL;
    if (ls) on_connection(ls, 0);
}

static void drop_connection(http_state *hs, uv_stream_t *ls)
{
    if (sink.busy) {
        sink.stalled = ls;
        return;
    }
    if (uv_tcp_init(hs->srv->loop, &sink.tcp) != 0) return;
    sink.busy = true;
    (void)uv_accept(ls, (uv_stream_t *)&sink.tcp);
    uv_close((uv_handle_t *)&sink.tcp, on_sink_closed);
}

static void on_connection(uv_stream_t *ls, int status)
{
    http_state *hs = ls->data;
    zt_server *srv = hs->srv;
    if (status < 0) {
        zt__log(ZT_LOG_WARN, NULL, NULL, "accept: %s", uv_strerror(status));
        return;
    }
    zt_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "accept: out of memory; connection dropped");
        drop_connection(hs, ls);
        return;
    }
    uv_tcp_init(srv->loop, &c->tcp);
    hs->nhandles++;
    conn_init(hs, c);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->client, sizeof c->client);
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->client, sizeof c->client);
    }
    c->proxied = srv->conf->nproxies &&
                 zt__netmask_match(srv->conf->proxies, srv->conf->nproxies, c->client);
    unsigned max = srv->conf->max_connections;
    if (max && hs->nconns > max)
        overloaded(c);
    else
        read_start(c);
}

static void on_listener_closed(uv_handle_t *handle)
{
    http_state *hs = handle->data;
    free(handle);
    assert(hs->nhandles > 0);
    hs->nhandles--;
    maybe_free_state(hs);
}

/* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080" */
static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) return -1;
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    bool v6 = false;
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']') return -1;
        h++;
        hlen -= 2;
        v6 = true;
    }
    if (hlen == 0 || hlen >= sizeof host) return -1;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (*end || errno || port < 0 || port > 65535) return -1;
    memset(ss, 0, sizeof *ss);
    if (v6) return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) ? -1 : 0;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? -1 : 0;
}

int zt__http_listen(zt_server *srv, const char *addr, char *err, size_t errlen)
{
    http_state *hs = state_get(srv, true);
    if (!hs) {
        snprintf(err, errlen, "listen %s: out of memory", addr);
        return ZT_ENOMEM;
    }
    if (hs->stopped) {
        snprintf(err, errlen, "listen %s: the server is stopping", addr);
        return ZT_ESTATE;
    }
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss) != 0) {
        snprintf(err, errlen, "listen %s: not an address (write 127.0.0.1:8080 or [::1]:8080)",
                 addr);
        return ZT_EINVAL;
    }
    uv_tcp_t **ls = realloc(hs->listeners, (hs->nlisteners + 1) * sizeof(*ls));
    uv_tcp_t *t = malloc(sizeof(*t));
    if (ls) hs->listeners = ls;
    if (!ls || !t) {
        free(t);
        snprintf(err, errlen, "listen %s: out of memory", addr);
        return ZT_ENOMEM;
    }
    int rc = uv_tcp_init_ex(srv->loop, t, ss.ss_family);
    if (rc != 0) {
        free(t);
        snprintf(err, errlen, "listen %s: %s", addr, uv_strerror(rc));
        return ZT_EIO;
    }
    t->data = hs;
    hs->nhandles++;
    hs->listeners[hs->nlisteners++] = t;
    /* No SO_REUSEPORT: a second node given the same address (a copied config, a test
     * node left running) must fail to start, not take half of this one's clients. */
    rc = uv_tcp_bind(t, (struct sockaddr *)&ss, ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)t, 511, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s: %s", addr, uv_strerror(rc));
        hs->nlisteners--;
        uv_close((uv_handle_t *)t, on_listener_closed);
        return rc == UV_EADDRINUSE ? ZT_EBUSY : rc == UV_EACCES ? ZT_EPERM : ZT_EIO;
    }
    return ZT_OK;
}

/* ---- timeouts, shutdown, counts -------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
    http_state *hs = t->data;
    uint64_t now = now_ms(hs), hdr_ms = header_timeout(hs), idle_ms = idle_timeout(hs);
    for (link *l = hs->conns.next, *next; l != &hs->conns; l = next) {
        next = l->next; /* closing unlinks c only */
        zt_conn *c = CONTAINER(l, zt_conn, all);
        if (c->fake) continue;
        if (c->lingering) {
            if (now >= c->linger_until) close_conn(c);
            continue;
        }
        if (c->writing) { /* a client that stops reading holds our memory: not forever */
            size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
            if (q != c->wq_size) {
                c->wq_size = q;
                c->wq_since = now;
            } else if (now - c->wq_since >= idle_ms) {
                close_conn(c);
                continue;
            }
        }
        http_req *h = c->parsing;
        if (h && now - h->begin_ms >= hdr_ms)
            answer(c, h, 408, "request-timeout",
                   "the request was not complete %.1f s after its first byte; the connection is "
                   "closed",
                   (double)hdr_ms / 1000);
        else if (!c->head && !c->writing && !c->finishing && now - c->active_ms >= idle_ms)
            close_conn(c); /* an idle keep-alive connection: silently */
    }
}

static void close_listeners(http_state *hs)
{
    for (size_t i = 0; i < hs->nlisteners; i++) {
        if (sink.stalled == (uv_stream_t *)hs->listeners[i]) sink.stalled = NULL;
        uv_close((uv_handle_t *)hs->listeners[i], on_listener_closed);
    }
    hs->nlisteners = 0;
}

unsigned zt__http_stop_accepting(zt_server *srv)
{
    http_state *hs = srv->http;
    unsigned dropped = 0;
    if (!hs) return 0;
    hs->stopped = true;
    close_listeners(hs);
    for (link *l = hs->conns.next, *next; l != &hs->conns; l = next) {
        next = l->next;
        zt_conn *c = CONTAINER(l, zt_conn, all);
        if (c->closing || c->finishing || c->fake) continue;
        if (!c->head && !c->writing) {
            close_conn(c);
            continue;
        }
        /* Only a request still arriving, its headers not yet whole: nothing of it has run,
         * and waiting for a slow client would hold the stop for up to header_timeout. It
         * is dropped (the client sees the connection close before any answer, and may send
         * it again); a request whose body is arriving is finished. */
        if (c->head == c->parsing && c->parsing && !c->parsing->headers_done && !c->writing) {
            dropped++;
            close_conn(c);
            continue;
        }
        /* Busy: no new request once the one being read (if any) is complete; the last
         * answer says Connection: close (flush_conn) and the connection closes after it. */
        if (!c->parsing) stop_parsing(c);
        mark_dirty(c);
    }
    return dropped;
}

void zt__http_close_all(zt_server *srv)
{
    http_state *hs = srv->http;
    if (!hs || hs->closed_all) return;
    hs->stopped = true;
    close_listeners(hs);
    while (!list_empty(&hs->conns)) close_conn(CONTAINER(hs->conns.next, zt_conn, all));
    if (hs->has_handles) {
        uv_close((uv_handle_t *)&hs->sweep, on_handle_closed);
        uv_close((uv_handle_t *)&hs->idle, on_handle_closed);
        hs->has_handles = false;
    }
    hs->closed_all = true;
    maybe_free_state(hs);
}

unsigned zt__http_connections(const zt_server *srv)
{
    const http_state *hs = srv->http;
    return hs ? hs->nconns : 0;
}

unsigned zt__http_inflight(const zt_server *srv)
{
    const http_state *hs = srv->http;
    return hs ? hs->inflight : 0;
}

unsigned zt__http_receiving(const zt_server *srv)
{
    const http_state *hs = srv->http;
    unsigned n = 0;
    if (!hs) return 0;
    for (const link *l = hs->conns.next; l != &hs->conns; l = l->next) {
        const zt_conn *c = CONTAINER(l, zt_conn, all);
        const http_req *h = c->parsing;
        n += h && h->headers_done && !h->complete && !h->counted && !c->closing;
    }
    return n;
}

uint64_t *zt__conn_wrote_in(zt_conn *c)
{
    return &c->wrote_in;
}

/* ---- fuzzing --------------------------------------------------------------------- */

int zt__http_fuzz_feed(zt_server *srv, const char *data, size_t len)
{
    http_state *hs = state_get(srv, false);
    if (!hs) return ZT_ENOMEM;
    zt_conn *c = calloc(1, sizeof(*c));
    if (!c) return ZT_ENOMEM;
    c->fake = true;
    conn_init(hs, c);
    memcpy(c->client, "fuzz", 5);
    c->proxied = srv->conf->nproxies > 0; /* what X-Forwarded-For says is fuzzed too */
    /* The input arrives in reads of a size its first byte chooses, so that tokens split
     * across reads are exercised as well as whole requests. */
    size_t step = len && (data[0] & 1) ? 1 + (size_t)((unsigned char)data[0] % 23) : len;
    for (size_t off = 0; off < len && !c->closing && !c->stop_parse; off += step) {
        size_t k = len - off < step ? len - off : step;
        if (c->paused)
            keep(c, data + off, k);
        else
            feed(c, data + off, k);
        for (;;) { /* what the loop does between reads: answer, then resume parsing */
            zt__http_flush(srv);
            if (list_empty(&hs->resume)) break;
            run_resumes(hs);
        }
    }
    if (!c->closing) { /* the client closes its side */
        if (c->paused)
            c->eof_seen = true;
        else if (!c->stop_parse)
            eof_settle(c);
        zt__http_flush(srv);
    }
    int n = (int)c->nresponses;
    close_conn(c);
    conn_free(c);
    return n;
}
