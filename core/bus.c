/* bus.c: events: the outbox in LMDB, subscribers and their positions, delivery over nng. */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

/*
 * The truth is in LMDB: _core/outbox holds every committed event under its sequence
 * number (8 bytes, big-endian), _core/subscribers each subscriber's last handled sequence
 * number under "plugin\0pattern". An event is written in the emitting transaction, so it
 * exists only if that committed; a subscriber's position is written in the transaction
 * of the work that handled the event, so the work and "done" commit together.
 *
 * After each batch commit the publisher sends what the batch emitted (seq + record, as
 * stored) on an nng pub socket; the deliverer's sub socket receives them on an nng thread
 * and hands them to the loop (uv_async). The deliverer keeps recent records in a ring and
 * reads the outbox for anything it did not hear (a dropped message, another process's
 * events, a restart), and a sweep every second reads the outbox head: the transport makes
 * delivery prompt, it is never needed for it to be complete.
 *
 * A record is: version (1) | time ms (8, big-endian) | then topic, source, request id and
 * timer id, each a length byte and its bytes | the payload as JSON text (the rest).
 */

#define REC_VERSION    1
#define TOPIC_MAX      128
#define PAYLOAD_MAX    (256 * 1024)
#define RING           512  /* recent committed events heard over the transport */
#define RING_REC_MAX   8192 /* larger records are read from the outbox when due */
#define PASS_DELIVER   256  /* handlers run per loop iteration, so HTTP stays responsive */
#define PASS_SCAN      4096 /* events looked at per loop iteration */
#define SWEEP_MS       1000 /* reading the head and persisting skips without a message */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS (5 * 60 * 1000)
#define PRUNE_AGE_MS   (24 * 3600 * 1000LL)
#define PRUNE_BATCH    256

typedef struct sub {
    char *plugin_name; /* a copy: the bus outlives the plugins at shutdown */
    zt_plugin *plugin;
    char *pattern;
    zt_event_fn fn;
    void *ud;
    uint64_t pos;    /* the last event handled or skipped, in memory */
    uint64_t stored; /* the position written in LMDB (committed or in the open batch) */
    unsigned failed; /* failures of the event after pos */
    uint64_t backoff_ms;
    uint64_t retry_at; /* uv_now when to try again; 0: not waiting */
    uint64_t deliveries, failures;
    uint64_t stuck_seq;              /* the event that failed last (0: none) */
    char stuck_topic[TOPIC_MAX + 1]; /* and its topic */
} sub;

typedef struct slot {
    uint64_t seq;
    nng_msg *msg; /* seq (8) | record */
} slot;

/* What carries committed events from the publisher to deliverers. Only this struct and
 * the transport_* functions know nng: another transport (tcp:// to other nodes, an ipc://
 * between worker processes) is another listen or dial on these sockets. */
typedef struct transport {
    nng_socket pub, sub;
    nng_aio *aio;
    bool open, receiving;
    uv_mutex_t mu; /* guards q: filled on an nng thread, drained on the loop */
    nng_msg **q;
    size_t nq, capq;
    uint64_t dropped; /* messages the loop never saw (out of memory) */
    char url[64];
} transport;

struct zt_bus {
    zt_server *srv;
    zt_db *outbox, *positions;
    sub *subs;
    size_t nsubs, capsubs;
    transport tr;
    uint64_t published; /* the newest event the publisher sent */
    bool emitted;       /* the open batch may hold events */
    uint64_t head;      /* the newest committed event the deliverer knows of */
    uint64_t heard;     /* events the transport brought */
    slot ring[RING];
    uv_async_t async;
    uv_idle_t idle;
    uv_timer_t sweep, retry;
    unsigned handles; /* open uv handles; the bus is freed when closed and none is left */
    bool started, stopped, closing;
    size_t next_sub; /* where the next pass begins: every subscriber gets a turn */
};

/* ---- topics and patterns ----------------------------------------------------------- */

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Words of [A-Za-z0-9_-] separated by single dots; in a pattern a word may be "*", and
 * the last "**". */
static bool valid_name(const char *s, bool pattern)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TOPIC_MAX) return false;
    for (const char *w = s;;) {
        size_t wl = strcspn(w, ".");
        if (wl == 0) return false;
        bool last = w[wl] == 0;
        if (pattern && wl == 1 && w[0] == '*') {
        } else if (pattern && wl == 2 && w[0] == '*' && w[1] == '*') {
            if (!last) return false;
        } else {
            for (size_t i = 0; i < wl; i++)
                if (!word_char(w[i]) || (w[i] == '*')) return false;
        }
        if (last) return true;
        w += wl + 1;
    }
}

/* 1 if the first word of s is "_<plugin>": the plugin's own topics. */
static bool own_private(const char *s, const char *plugin)
{
    size_t n = strlen(plugin);
    return s[0] == '_' && strncmp(s + 1, plugin, n) == 0 && (s[1 + n] == '.' || s[1 + n] == 0);
}

/* Why s is no topic (or, as a pattern, no pattern) that plugin may use; NULL: it is. */
static const char *name_problem(const char *s, const char *plugin, bool pattern)
{
    if (!valid_name(s, pattern))
        return pattern ? "is not a pattern (1..128 bytes: dot-separated words of letters, "
                         "digits, _ and -, or * for one word and ** last for the rest)"
                       : "is not a topic (1..128 bytes: dot-separated words of letters, digits, "
                         "_ and -)";
    if (s[0] == '_' && !own_private(s, plugin))
        return "is another plugin's: a topic that starts with _ is private to the plugin it "
               "names";
    return NULL;
}

const char *zt__topic_problem(const char *topic, const char *plugin)
{
    return name_problem(topic, plugin, false);
}

const char *zt__pattern_problem(const char *pattern, const char *plugin)
{
    return name_problem(pattern, plugin, true);
}

bool zt__topic_ok(const char *topic, const char *plugin)
{
    return !zt__topic_problem(topic, plugin);
}

static bool pattern_matches(const char *p, const char *t)
{
    for (;;) {
        size_t pl = strcspn(p, "."), tl = strcspn(t, ".");
        if (pl == 2 && p[0] == '*' && p[1] == '*') return tl > 0; /* last: one word or more */
        if (!(pl == 1 && p[0] == '*') && (pl != tl || memcmp(p, t, pl) != 0)) return false;
        p += pl;
        t += tl;
        if (!*p || !*t) return !*p && !*t;
        p++;
        t++;
    }
}

/* Whether subscriber s receives topic: its pattern matches, and a "_" topic is s's own. */
static bool sub_wants(const sub *s, const char *topic)
{
    if (topic[0] == '_' && !own_private(topic, s->plugin_name)) return false;
    return pattern_matches(s->pattern, topic);
}

/* ---- records ------------------------------------------------------------------------ */

typedef struct rec {
    int64_t time_ms;
    char topic[TOPIC_MAX + 1];
    char source[256], reqid[256], timer[256];
    const char *payload; /* JSON text, not NUL-terminated */
    size_t plen;
} rec;

static int put_field(zt_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 255) return ZT_EINVAL;
    unsigned char l = (unsigned char)n;
    return zt__buf_append(b, &l, 1) || zt__buf_append(b, s ? s : "", n) ? ZT_ENOMEM : ZT_OK;
}

static bool get_field(const unsigned char **p, const unsigned char *end, char *out, size_t cap)
{
    if (*p >= end) return false;
    size_t n = **p;
    (*p)++;
    if (n >= cap || (size_t)(end - *p) < n) return false;
    memcpy(out, *p, n);
    out[n] = 0;
    *p += n;
    return true;
}

static bool rec_decode(const void *data, size_t len, rec *r)
{
    const unsigned char *p = data, *end = p + len;
    if (len < 9 || p[0] != REC_VERSION) return false;
    r->time_ms = (int64_t)zt__be64_get(p + 1);
    p += 9;
    if (!get_field(&p, end, r->topic, sizeof r->topic) ||
        !get_field(&p, end, r->source, sizeof r->source) ||
        !get_field(&p, end, r->reqid, sizeof r->reqid) ||
        !get_field(&p, end, r->timer, sizeof r->timer))
        return false;
    r->payload = (const char *)p;
    r->plen = (size_t)(end - p);
    return r->topic[0] != 0;
}

/* ---- the transport ------------------------------------------------------------------ */

static void on_recv(void *arg);

static int transport_open(zt_bus *b, char *err, size_t errlen)
{
    static unsigned instances; /* several servers in one process (the unit tests) */
    transport *tr = &b->tr;
    snprintf(tr->url, sizeof tr->url, "inproc://zt-bus-%ld-%u", (long)getpid(), instances++);
    int rc = uv_mutex_init(&tr->mu);
    if (rc != 0) {
        snprintf(err, errlen, "bus: %s", uv_strerror(rc));
        return ZT_ERROR;
    }
    tr->open = true;
    if ((rc = nng_pub0_open(&tr->pub)) != 0 || (rc = nng_listen(tr->pub, tr->url, NULL, 0)) != 0 ||
        (rc = nng_sub0_open(&tr->sub)) != 0 ||
        (rc = nng_socket_set(tr->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
        (rc = nng_socket_set_int(tr->sub, NNG_OPT_RECVBUF, 8192)) != 0 ||
        (rc = nng_dial(tr->sub, tr->url, NULL, 0)) != 0 ||
        (rc = nng_aio_alloc(&tr->aio, on_recv, b)) != 0) {
        snprintf(err, errlen, "bus: cannot open the nng transport %s: %s", tr->url,
                 nng_strerror(rc));
        return rc == NNG_ENOMEM ? ZT_ENOMEM : ZT_EIO;
    }
    /* Other nodes subscribe here (`zhengtong check` binds nothing). */
    const char *pub = b->srv->conf->bus_publish;
    if (pub && !b->srv->check_only && (rc = nng_listen(tr->pub, pub, NULL, 0)) != 0) {
        snprintf(err, errlen, "bus.publish: cannot listen on %s: %s", pub, nng_strerror(rc));
        return rc == NNG_EADDRINUSE ? ZT_EBUSY : ZT_EIO;
    }
    return ZT_OK;
}

/* Best effort: a message lost here is read from the outbox later. */
static void transport_publish(zt_bus *b, uint64_t seq, const void *data, size_t len)
{
    if (!b->tr.open || b->stopped) return;
    nng_msg *m;
    unsigned char k[8];
    zt__be64_put(k, seq);
    if (nng_msg_alloc(&m, 0) != 0) return;
    if (nng_msg_append(m, k, 8) != 0 || nng_msg_append(m, data, len) != 0 ||
        nng_sendmsg(b->tr.pub, m, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(m);
}

/* On an nng thread: queue the message for the loop, and wait for the next. */
static void on_recv(void *arg)
{
    zt_bus *b = arg;
    transport *tr = &b->tr;
    if (nng_aio_result(tr->aio) != 0) return; /* closed or stopped: do not re-arm */
    nng_msg *m = nng_aio_get_msg(tr->aio);
    uv_mutex_lock(&tr->mu);
    if (tr->nq == tr->capq) {
        size_t cap = tr->capq ? tr->capq * 2 : 64;
        nng_msg **q = realloc(tr->q, cap * sizeof *q);
        if (q) {
            tr->q = q;
            tr->capq = cap;
        }
    }
    if (tr->nq < tr->capq) {
        tr->q[tr->nq++] = m;
        m = NULL;
    } else {
        tr->dropped++;
    }
    uv_mutex_unlock(&tr->mu);
    if (m) nng_msg_free(m);
    uv_async_send(&b->async);
    nng_recv_aio(tr->sub, tr->aio);
}

static void transport_stop(zt_bus *b)
{
    transport *tr = &b->tr;
    if (!tr->open) return;
    if (tr->aio) nng_aio_stop(tr->aio); /* waits for a running on_recv */
    nng_close(tr->sub);
    nng_close(tr->pub);
    if (tr->aio) nng_aio_free(tr->aio);
    tr->aio = NULL;
    for (size_t i = 0; i < tr->nq; i++) nng_msg_free(tr->q[i]);
    free(tr->q);
    tr->q = NULL;
    tr->nq = tr->capq = 0;
    uv_mutex_destroy(&tr->mu);
    tr->open = false;
}

/* ---- opening ------------------------------------------------------------------------ */

int zt__bus_open(zt_server *srv, char *err, size_t errlen)
{
    zt_bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "bus: out of memory");
        return ZT_ENOMEM;
    }
    b->srv = srv;
    srv->bus = b;
    int rc = zt__store_db(srv->store, "_core", "outbox", &b->outbox);
    if (rc == ZT_OK) rc = zt__store_db(srv->store, "_core", "subscribers", &b->positions);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "bus: cannot open the outbox: %s", zt_strerror(rc));
        return rc;
    }
    return transport_open(b, err, errlen);
}

int zt_on(zt_plugin *p, const char *pattern, zt_event_fn fn, void *ud)
{
    if (!p) return ZT_ESTATE;
    if (!fn || zt__pattern_problem(pattern, p->name)) return ZT_EINVAL;
    if (!p->in_init || !p->srv || !p->srv->bus) return ZT_ESTATE;
    zt_bus *b = p->srv->bus;
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].plugin == p && strcmp(b->subs[i].pattern, pattern) == 0) return ZT_EEXIST;
    if (b->nsubs == b->capsubs) {
        size_t cap = b->capsubs ? b->capsubs * 2 : 8;
        sub *a = realloc(b->subs, cap * sizeof *a);
        if (!a) return ZT_ENOMEM;
        b->subs = a;
        b->capsubs = cap;
    }
    sub *s = &b->subs[b->nsubs];
    memset(s, 0, sizeof *s);
    s->plugin_name = strdup(p->name);
    s->pattern = strdup(pattern);
    if (!s->plugin_name || !s->pattern) {
        free(s->plugin_name);
        free(s->pattern);
        return ZT_ENOMEM;
    }
    s->plugin = p;
    s->fn = fn;
    s->ud = ud;
    b->nsubs++;
    return ZT_OK;
}

/* The key of a subscriber's position: "plugin\0pattern". */
static size_t pos_key(const sub *s, char *key, size_t cap)
{
    size_t pl = strlen(s->plugin_name), tl = strlen(s->pattern);
    assert(pl + 1 + tl <= cap);
    memcpy(key, s->plugin_name, pl);
    key[pl] = 0;
    memcpy(key + pl + 1, s->pattern, tl);
    return pl + 1 + tl;
}

static int pos_read(zt_bus *b, zt_txn *t, const sub *s, uint64_t *out)
{
    char key[512];
    size_t kl = pos_key(s, key, sizeof key);
    const void *v;
    size_t vl;
    int rc = zt_get(t, b->positions, key, kl, &v, &vl);
    if (rc == ZT_OK) {
        if (vl != 8) return ZT_EIO;
        *out = zt__be64_get(v);
    }
    return rc;
}

static int pos_write(zt_bus *b, zt_txn *t, const sub *s, uint64_t seq)
{
    char key[512];
    size_t kl = pos_key(s, key, sizeof key);
    unsigned char v[8];
    zt__be64_put(v, seq);
    return zt_put(t, b->positions, key, kl, v, 8);
}

/* The newest event in t (0 when the outbox is empty). */
static int outbox_last(zt_bus *b, zt_txn *t, uint64_t *seq)
{
    zt_kv kv;
    *seq = 0;
    int rc = zt__db_edge(t, b->outbox, ZT_LAST, &kv);
    if (rc == ZT_OK && kv.klen != 8) return ZT_EIO;
    if (rc == ZT_OK) *seq = zt__be64_get(kv.key);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* ---- emitting ----------------------------------------------------------------------- */

int zt__bus_emit_txn(zt_server *srv, zt_txn *t, const char *source, const char *reqid,
                     const char *timer, const char *topic, const cJSON *payload)
{
    zt_bus *b = srv->bus;
    if (!b) return ZT_ESTATE;
    if (!valid_name(topic, false)) return ZT_EINVAL;
    if (!zt_txn_writable(t)) return ZT_EREADONLY;
    char *text = payload ? zt_json_print(payload) : NULL;
    if (payload && !text) return ZT_ENOMEM;
    const char *ptext = text ? text : "null";
    size_t plen = strlen(ptext);
    int rc = plen > PAYLOAD_MAX ? ZT_ETOOBIG : ZT_OK;
    zt_buf r = {0};
    if (rc == ZT_OK) {
        unsigned char hdr[9];
        hdr[0] = REC_VERSION;
        zt__be64_put(hdr + 1, (uint64_t)zt_now_ms());
        rc = zt__buf_append(&r, hdr, 9) ? ZT_ENOMEM : ZT_OK;
    }
    if (rc == ZT_OK) rc = put_field(&r, topic);
    if (rc == ZT_OK) rc = put_field(&r, source ? source : "core");
    if (rc == ZT_OK) rc = put_field(&r, reqid);
    if (rc == ZT_OK) rc = put_field(&r, timer);
    if (rc == ZT_OK && zt__buf_append(&r, ptext, plen)) rc = ZT_ENOMEM;
    cJSON_free(text);
    uint64_t last = 0;
    /* The sequence number comes from the transaction itself, so that requests of one batch
     * follow each other and a rolled-back emit leaves no gap. */
    if (rc == ZT_OK) rc = outbox_last(b, t, &last);
    if (rc == ZT_OK) {
        unsigned char key[8];
        zt__be64_put(key, last + 1);
        rc = zt__store_append(t, b->outbox, key, 8, r.data, r.len);
    }
    zt__buf_free(&r);
    if (rc == ZT_OK) b->emitted = true;
    return rc;
}

int zt_emit(zt_req *req, const char *topic, const cJSON *payload)
{
    const zt_plugin *p = zt__req_plugin(req); /* a service emits as its own plugin */
    const char *source = p ? p->name : "core";
    if (!zt__topic_ok(topic, source)) return ZT_EINVAL;
    zt_txn *t;
    int rc = zt__req_write_txn(req, &t);
    return rc ? rc : zt__bus_emit_txn(req->srv, t, source, req->id, NULL, topic, payload);
}

/* ---- delivering --------------------------------------------------------------------- */

static void on_idle(uv_idle_t *h);
static void on_retry(uv_timer_t *h);

/* There may be events to deliver: run passes from the next loop iteration on. */
static void kick(zt_bus *b)
{
    if (b->started && !b->stopped && !uv_is_active((uv_handle_t *)&b->idle))
        uv_idle_start(&b->idle, on_idle);
}

static void arm_retry(zt_bus *b)
{
    if (!b->started || b->stopped) return;
    uint64_t first = 0;
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].retry_at && (!first || b->subs[i].retry_at < first))
            first = b->subs[i].retry_at;
    if (!first) {
        uv_timer_stop(&b->retry);
        return;
    }
    uint64_t now = uv_now(b->srv->loop);
    uv_timer_start(&b->retry, on_retry, first > now ? first - now : 0, 0);
}

static void on_retry(uv_timer_t *h)
{
    zt_bus *b = h->data;
    uint64_t now = uv_now(b->srv->loop);
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].retry_at && b->subs[i].retry_at <= now) b->subs[i].retry_at = 0;
    arm_retry(b);
    kick(b);
}

/* s's next try waits: 1 s, doubling to 5 min. */
static void wait_after_failure(zt_bus *b, sub *s)
{
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
    s->retry_at = uv_now(b->srv->loop) + s->backoff_ms;
    arm_retry(b);
}

/* Run s's handler for event seq in a job whose transaction also advances s's position. */
static int deliver(zt_bus *b, sub *s, uint64_t seq, const rec *r)
{
    zt_server *srv = b->srv;
    zt_req *job = zt__job_new(srv, s->plugin, "EVENT", r->topic);
    if (!job) return ZT_ENOMEM;
    zt_txn *t = zt_req_txn(job);
    int rc = t ? pos_write(b, t, s, seq) : ZT_EIO;
    cJSON *payload = NULL;
    if (rc == ZT_OK) {
        zt__job_audit_from_here(job);
        if (zt__buf_append(&job->body, r->payload, r->plen)) rc = ZT_ENOMEM;
    }
    if (rc == ZT_OK) {
        payload = cJSON_ParseWithLength(r->payload, r->plen);
        zt_event ev = {.seq = seq,
                       .topic = job->path,
                       .payload = payload,
                       .time_ms = r->time_ms,
                       .source = r->source,
                       .request_id = r->reqid,
                       .timer = r->timer[0] ? r->timer : NULL,
                       .attempt = s->failed + 1};
        if (!payload) {
            /* Only this file writes records; a damaged one is still handed over, as null. */
            payload = cJSON_CreateNull();
            ev.payload = payload;
        }
        job->event = &ev;
        job->json = payload; /* zt_req_json gives it without parsing the body again */
        rc = s->fn(job, &ev, s->ud);
        job->event = NULL;
        if (rc > 0) rc = ZT_ERROR; /* ZT_ASYNC: a job cannot wait */
    }
    rc = zt__job_end(srv, job, rc); /* frees job->json: the payload */
    if (rc == ZT_OK) {
        s->pos = s->stored = seq;
        s->failed = 0;
        s->backoff_ms = 0;
        s->deliveries++;
        s->stuck_seq = 0;
        return ZT_OK;
    }
    s->failures++;
    s->failed++;
    s->stuck_seq = seq;
    snprintf(s->stuck_topic, sizeof s->stuck_topic, "%s", r->topic);
    wait_after_failure(b, s);
    zt__log(ZT_LOG_WARN, s->plugin_name, NULL,
            "event %llu (%s) to subscriber %s failed (attempt %u: %s); again in %llu s",
            (unsigned long long)seq, r->topic, s->pattern, s->failed, zt_strerror(rc),
            (unsigned long long)(s->backoff_ms / 1000));
    return rc;
}

/* The first event after `after` (at most b->head): from the ring when the transport
 * brought it, otherwise from the outbox in *t (a read transaction begun on first use).
 * ZT_ENOTFOUND when there is none up to the head. */
static int next_event(zt_bus *b, zt_txn **t, uint64_t after, uint64_t *seq, rec *r)
{
    const slot *sl = &b->ring[(after + 1) % RING];
    if (sl->msg && sl->seq == after + 1 &&
        rec_decode((const char *)nng_msg_body(sl->msg) + 8, nng_msg_len(sl->msg) - 8, r)) {
        *seq = after + 1;
        return ZT_OK;
    }
    int rc;
    if (!*t && (rc = zt__store_read_begin(b->srv->store, t)) != ZT_OK) return rc;
    zt_cursor *c;
    if ((rc = zt_cursor_open(*t, b->outbox, &c)) != ZT_OK) return rc;
    unsigned char key[8];
    zt_kv kv;
    zt__be64_put(key, after + 1);
    rc = zt_cursor_seek(c, ZT_GE, key, 8, &kv);
    if (rc == ZT_OK) {
        *seq = kv.klen == 8 ? zt__be64_get(kv.key) : 0;
        if (*seq == 0)
            rc = ZT_EIO;
        else if (*seq > b->head)
            rc = ZT_ENOTFOUND;
        else if (!rec_decode(kv.val, kv.vlen, r))
            rc = ZT_EIO;
    }
    zt_cursor_close(c);
    return rc;
}

/* Deliver what is due, within the pass's budget. Returns true if work is left. */
static bool deliver_pass(zt_bus *b)
{
    unsigned delivered = 0, scanned = 0;
    zt_txn *t = NULL;
    bool more = false;
    size_t n = b->nsubs;
    for (size_t k = 0; k < n && !more; k++) {
        sub *s = &b->subs[(b->next_sub + k) % n];
        while (s->pos < b->head && !s->retry_at) {
            if (delivered >= PASS_DELIVER || scanned >= PASS_SCAN) {
                more = true;
                break;
            }
            uint64_t seq;
            rec r;
            int rc = next_event(b, &t, s->pos, &seq, &r);
            scanned++;
            if (rc == ZT_ENOTFOUND) {
                s->pos = b->head; /* nothing more up to the head */
                break;
            }
            if (rc != ZT_OK) {
                /* Never skipped: the subscriber waits (its lag shows) and tries again. */
                zt__log(ZT_LOG_ERROR, s->plugin_name, NULL,
                        "bus: subscriber %s cannot read the outbox after %llu: %s", s->pattern,
                        (unsigned long long)s->pos, zt_strerror(rc));
                wait_after_failure(b, s);
                break;
            }
            if (!sub_wants(s, r.topic)) {
                s->pos = seq; /* persisted with its next write or by the sweep */
                continue;
            }
            delivered++;
            if (deliver(b, s, seq, &r) != ZT_OK) break;
        }
    }
    b->next_sub = n ? (b->next_sub + 1) % n : 0;
    if (t) zt__store_end(b->srv->store, t, false);
    return more;
}

static void on_idle(uv_idle_t *h)
{
    zt_bus *b = h->data;
    if (!deliver_pass(b)) uv_idle_stop(&b->idle);
}

/* Committed events heard over the transport: into the ring; the head moves. */
static void on_async(uv_async_t *h)
{
    zt_bus *b = h->data;
    transport *tr = &b->tr;
    nng_msg **q;
    size_t nq;
    uv_mutex_lock(&tr->mu);
    q = tr->q;
    nq = tr->nq;
    tr->q = NULL;
    tr->nq = tr->capq = 0;
    uv_mutex_unlock(&tr->mu);
    for (size_t i = 0; i < nq; i++) {
        nng_msg *m = q[i];
        if (nng_msg_len(m) < 8 + 9) {
            nng_msg_free(m);
            continue;
        }
        uint64_t seq = zt__be64_get(nng_msg_body(m));
        b->heard++;
        if (seq > b->head) b->head = seq;
        if (nng_msg_len(m) > 8 + RING_REC_MAX) {
            nng_msg_free(m);
            continue;
        }
        slot *sl = &b->ring[seq % RING];
        if (sl->msg) nng_msg_free(sl->msg);
        sl->seq = seq;
        sl->msg = m;
    }
    free(q);
    kick(b);
}

/* ---- the sweep: head, skipped positions, pruning ------------------------------------ */

/* Delete events that every subscriber has passed and that are older than a day, a few at
 * a time; never the newest, whose number the next emit continues from. */
static int prune(zt_bus *b, zt_txn *t)
{
    uint64_t upto = b->head;
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].pos < upto) upto = b->subs[i].pos;
    int64_t before = zt_now_ms() - PRUNE_AGE_MS;
    zt_cursor *c;
    int rc = zt_cursor_open(t, b->outbox, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    for (int n = 0; n < PRUNE_BATCH; n++) {
        rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
        if (rc != ZT_OK) break;
        uint64_t seq = kv.klen == 8 ? zt__be64_get(kv.key) : 0;
        rec r;
        if (seq == 0 || seq > upto || seq >= b->head || !rec_decode(kv.val, kv.vlen, &r) ||
            r.time_ms >= before)
            break;
        if ((rc = zt_cursor_del(c)) != ZT_OK) break;
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* Whether the oldest event in t could be pruned (so that a quiet node writes nothing). */
static bool prunable(zt_bus *b, zt_txn *t)
{
    zt_cursor *c;
    zt_kv kv;
    rec r;
    if (zt_cursor_open(t, b->outbox, &c) != ZT_OK) return false;
    bool yes = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv) == ZT_OK && kv.klen == 8 &&
               zt__be64_get(kv.key) < b->head && rec_decode(kv.val, kv.vlen, &r) &&
               r.time_ms < zt_now_ms() - PRUNE_AGE_MS;
    for (size_t i = 0; yes && i < b->nsubs; i++) yes = b->subs[i].pos >= zt__be64_get(kv.key);
    zt_cursor_close(c);
    return yes;
}

static void on_sweep(uv_timer_t *h)
{
    zt_bus *b = h->data;
    zt_store *st = b->srv->store;
    zt_txn *t;
    uint64_t last = 0;
    bool prune_some = false;
    /* Events the transport did not bring (dropped, another process's). */
    if (zt__store_read_begin(st, &t) == ZT_OK) {
        if (outbox_last(b, t, &last) == ZT_OK && last > b->head) b->head = last;
        prune_some = prunable(b, t);
        zt__store_end(st, t, false);
    }
    bool skipped = false;
    for (size_t i = 0; i < b->nsubs; i++) skipped = skipped || b->subs[i].pos > b->subs[i].stored;
    /* Housekeeping only when delivery is idle, and between batches. */
    if ((skipped || prune_some) && !uv_is_active((uv_handle_t *)&b->idle) &&
        !zt__store_batch_open(st) && zt__store_write_begin(st, &t) == ZT_OK) {
        int rc = ZT_OK;
        for (size_t i = 0; rc == ZT_OK && i < b->nsubs; i++) {
            sub *s = &b->subs[i];
            if (s->pos > s->stored) rc = pos_write(b, t, s, s->pos);
        }
        if (rc == ZT_OK && prune_some) rc = prune(b, t);
        int erc = zt__store_end(st, t, rc == ZT_OK);
        if (rc == ZT_OK) rc = erc;
        if (rc == ZT_OK) /* committed by this iteration's check, or reloaded if it fails */
            for (size_t i = 0; i < b->nsubs; i++) b->subs[i].stored = b->subs[i].pos;
        else
            zt__log(ZT_LOG_WARN, NULL, NULL, "bus: housekeeping failed: %s", zt_strerror(rc));
    }
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].pos < b->head && !b->subs[i].retry_at) kick(b);
}

/* ---- the batch ---------------------------------------------------------------------- */

void zt__bus_after_commit(zt_server *srv)
{
    zt_bus *b = srv->bus;
    if (!b || !b->emitted) return;
    b->emitted = false;
    /* Publish what the batch really holds, read back: an emit whose request then failed
     * was rolled back with it and is not there. */
    zt_txn *t;
    zt_cursor *c;
    if (zt__store_read_begin(srv->store, &t) != ZT_OK) return; /* the sweep finds them */
    if (zt_cursor_open(t, b->outbox, &c) == ZT_OK) {
        unsigned char key[8];
        zt_kv kv;
        zt__be64_put(key, b->published + 1);
        for (int rc = zt_cursor_seek(c, ZT_GE, key, 8, &kv); rc == ZT_OK;
             rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
            if (kv.klen != 8) break;
            uint64_t seq = zt__be64_get(kv.key);
            transport_publish(b, seq, kv.val, kv.vlen);
            b->published = seq;
        }
        zt_cursor_close(c);
    }
    zt__store_end(srv->store, t, false);
}

/* Positions as LMDB holds them (what a lost batch had advanced is undone). */
static int positions_load(zt_bus *b, zt_txn *t)
{
    for (size_t i = 0; i < b->nsubs; i++) {
        sub *s = &b->subs[i];
        uint64_t v;
        int rc = pos_read(b, t, s, &v);
        if (rc == ZT_ENOTFOUND) continue;
        if (rc != ZT_OK) return rc;
        s->pos = s->stored = v;
    }
    return ZT_OK;
}

/* ---- administration: GET /admin/bus, POST /admin/bus/skip ------------------------------ */

/* "<plugin> <pattern>": how an administrator names a subscriber. */
static void sub_name(const sub *s, char *out, size_t n)
{
    snprintf(out, n, "%s %s", s->plugin_name, s->pattern);
}

static int h_bus(zt_req *req, void *ud)
{
    zt_bus *b = ((zt_server *)ud)->bus;
    cJSON *o = cJSON_CreateObject(), *subs = cJSON_AddArrayToObject(o, "subscribers");
    cJSON_AddNumberToObject(o, "head", (double)b->head);
    uint64_t now = uv_now(b->srv->loop);
    for (size_t i = 0; i < b->nsubs; i++) {
        const sub *s = &b->subs[i];
        char name[TOPIC_MAX * 2 + 80];
        sub_name(s, name, sizeof name);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "subscriber", name);
        cJSON_AddNumberToObject(x, "position", (double)s->pos);
        cJSON_AddNumberToObject(x, "deliveries", (double)s->deliveries);
        cJSON_AddNumberToObject(x, "failures", (double)s->failures);
        if (s->stuck_seq && s->failed) {
            cJSON *st = cJSON_AddObjectToObject(x, "failing");
            cJSON_AddNumberToObject(st, "seq", (double)s->stuck_seq);
            cJSON_AddStringToObject(st, "topic", s->stuck_topic);
            cJSON_AddNumberToObject(st, "attempts", s->failed);
            cJSON_AddNumberToObject(st, "retry_in_ms",
                                    s->retry_at > now ? (double)(s->retry_at - now) : 0);
        } else {
            cJSON_AddNullToObject(x, "failing");
        }
        cJSON_AddItemToArray(subs, x);
    }
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

/* An event a subscriber fails on for good (a payload its handler cannot take) would hold
 * back all its later events: an administrator passes it over, naming both, after reading
 * the log. The position moves in this request's transaction; a lost batch reloads it. */
static int h_skip(zt_req *req, void *ud)
{
    zt_bus *b = ((zt_server *)ud)->bus;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *who = zt__jstr(j, "subscriber");
    const cJSON *seqj = cJSON_GetObjectItemCaseSensitive(j, "seq");
    if (!who || !cJSON_IsNumber(seqj) || seqj->valuedouble < 1 ||
        seqj->valuedouble != (double)(uint64_t)seqj->valuedouble)
        return zt_problem(req, 422, "invalid-skip", NULL,
                          "send {\"subscriber\": \"<plugin> <pattern>\" (GET /admin/bus), "
                          "\"seq\": <the event it fails on>}");
    uint64_t seq = (uint64_t)seqj->valuedouble;
    sub *s = NULL;
    for (size_t i = 0; i < b->nsubs && !s; i++) {
        char name[TOPIC_MAX * 2 + 80];
        sub_name(&b->subs[i], name, sizeof name);
        if (strcmp(name, who) == 0) s = &b->subs[i];
    }
    if (!s)
        return zt_problem(req, 404, "not-found", NULL,
                          "there is no subscriber '%s' (GET /admin/bus lists them)", who);
    if (!s->failed || s->stuck_seq != seq)
        return zt_problem(req, 409, "not-failing", NULL,
                          "subscriber '%s' is not failing on event %llu%s: only the event it "
                          "fails on is skipped",
                          who, (unsigned long long)seq, s->failed ? "" : " (it fails on none)");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    int rc = pos_write(b, t, s, seq);
    if (rc != ZT_OK) return rc;
    char what[TOPIC_MAX * 3 + 120];
    snprintf(what, sizeof what, "event %llu (%s) for %s", (unsigned long long)seq, s->stuck_topic,
             who);
    zt__log(ZT_LOG_WARN, s->plugin_name, zt_req_id(req), "skipping %s, as an administrator asked",
            what);
    zt_audit_note(req, "skip event", what);
    s->pos = s->stored = seq;
    s->failed = 0;
    s->backoff_ms = 0;
    s->retry_at = 0;
    s->stuck_seq = 0;
    arm_retry(b);
    kick(b);
    return zt_respond(req, 204, NULL, NULL, 0);
}

int zt__bus_routes(zt_server *srv, char *err, size_t errlen)
{
    zt_route get = {.method = "GET",
                    .path = "/admin/bus",
                    .handler = h_bus,
                    .ud = srv,
                    .role = "admin",
                    .summary = "Event subscribers: position, deliveries, the event one fails on"};
    zt_route skip = {.method = "POST",
                     .path = "/admin/bus/skip",
                     .handler = h_skip,
                     .ud = srv,
                     .role = "admin",
                     .summary =
                         "Pass over the event a subscriber fails on (after reading the log)"};
    int rc = zt__router_add(srv->router, NULL, &get, err, errlen);
    return rc ? rc : zt__router_add(srv->router, NULL, &skip, err, errlen);
}

void zt__bus_after_abort(zt_server *srv)
{
    zt_bus *b = srv->bus;
    if (!b) return;
    b->emitted = false;
    zt_txn *t;
    int rc = zt__store_read_begin(srv->store, &t);
    if (rc == ZT_OK) {
        rc = positions_load(b, t);
        zt__store_end(srv->store, t, false);
    }
    if (rc != ZT_OK)
        zt__log(ZT_LOG_ERROR, NULL, NULL, "bus: cannot reload positions: %s", zt_strerror(rc));
    kick(b);
}

/* ---- life cycle --------------------------------------------------------------------- */

static void bus_free(zt_bus *b)
{
    transport_stop(b);
    for (size_t i = 0; i < RING; i++)
        if (b->ring[i].msg) nng_msg_free(b->ring[i].msg);
    for (size_t i = 0; i < b->nsubs; i++) {
        free(b->subs[i].plugin_name);
        free(b->subs[i].pattern);
    }
    free(b->subs);
    free(b);
}

static void on_handle_closed(uv_handle_t *h)
{
    zt_bus *b = h->data;
    assert(b->handles > 0);
    if (--b->handles == 0 && b->closing) bus_free(b);
}

int zt__bus_start(zt_server *srv, char *err, size_t errlen)
{
    zt_bus *b = srv->bus;
    if (!b) return ZT_OK;
    zt_store *st = srv->store;
    zt_txn *t;
    int rc = zt__store_read_begin(st, &t);
    if (rc == ZT_OK) {
        rc = outbox_last(b, t, &b->head);
        for (size_t i = 0; rc == ZT_OK && i < b->nsubs; i++) {
            sub *s = &b->subs[i];
            rc = pos_read(b, t, s, &s->pos);
            if (rc == ZT_ENOTFOUND) { /* new: from the newest event on */
                s->pos = b->head;
                s->stored = UINT64_MAX; /* to write below */
                rc = ZT_OK;
            } else {
                s->stored = s->pos;
            }
        }
        zt__store_end(st, t, false);
    }
    b->published = b->head;
    bool fresh = false;
    for (size_t i = 0; i < b->nsubs; i++) fresh = fresh || b->subs[i].stored == UINT64_MAX;
    if (rc == ZT_OK && fresh && !zt__store_batch_open(st)) {
        if ((rc = zt__store_write_begin(st, &t)) == ZT_OK) {
            for (size_t i = 0; rc == ZT_OK && i < b->nsubs; i++)
                if (b->subs[i].stored == UINT64_MAX) rc = pos_write(b, t, &b->subs[i], b->head);
            rc = zt__store_write_done(st, t, rc);
        }
    }
    if (rc != ZT_OK) {
        snprintf(err, errlen, "bus: cannot read or write subscriber positions: %s",
                 zt_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < b->nsubs; i++) b->subs[i].stored = b->subs[i].pos;

    uv_loop_t *loop = srv->loop;
    uv_async_init(loop, &b->async, on_async);
    uv_idle_init(loop, &b->idle);
    uv_timer_init(loop, &b->sweep);
    uv_timer_init(loop, &b->retry);
    b->async.data = b->idle.data = b->sweep.data = b->retry.data = b;
    b->handles = 4;
    b->started = true;
    nng_recv_aio(b->tr.sub, b->tr.aio);
    uv_timer_start(&b->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    kick(b); /* what was pending before a restart */
    return ZT_OK;
}

void zt__bus_stop(zt_server *srv)
{
    zt_bus *b = srv->bus;
    if (!b || b->stopped) return;
    b->stopped = true;
    transport_stop(b); /* no more on_recv, so no uv_async_send after the close below */
    if (!b->started) return;
    uv_close((uv_handle_t *)&b->async, on_handle_closed);
    uv_close((uv_handle_t *)&b->idle, on_handle_closed);
    uv_close((uv_handle_t *)&b->sweep, on_handle_closed);
    uv_close((uv_handle_t *)&b->retry, on_handle_closed);
}

void zt__bus_close(zt_server *srv)
{
    zt_bus *b = srv->bus;
    if (!b) return;
    srv->bus = NULL;
    zt__bus_stop(srv);
    b->closing = true;
    if (b->handles == 0) bus_free(b);
}

/* ---- metrics ------------------------------------------------------------------------ */

int zt__bus_metrics(zt_server *srv, zt_buf *out)
{
    zt_bus *b = srv->bus;
    if (!b) return ZT_OK;
    int rc = zt__buf_printf(out,
                            "# HELP zt_bus_head_seq The newest committed event.\n"
                            "# TYPE zt_bus_head_seq gauge\n"
                            "zt_bus_head_seq %llu\n",
                            (unsigned long long)b->head);
    uv_mutex_t *mu = b->tr.open ? &b->tr.mu : NULL;
    if (mu) uv_mutex_lock(mu);
    uint64_t dropped = b->tr.dropped;
    if (mu) uv_mutex_unlock(mu);
    rc |= zt__buf_printf(out,
                         "# HELP zt_bus_transport_events_total Committed events that reached the "
                         "deliverer over the transport (the rest are read from the outbox).\n"
                         "# TYPE zt_bus_transport_events_total counter\n"
                         "zt_bus_transport_events_total %llu\n"
                         "# HELP zt_bus_transport_dropped_total Messages lost between the "
                         "transport and the loop (read from the outbox instead).\n"
                         "# TYPE zt_bus_transport_dropped_total counter\n"
                         "zt_bus_transport_dropped_total %llu\n",
                         (unsigned long long)b->heard, (unsigned long long)dropped);
    static const char *const help[] = {
        "zt_bus_subscriber_lag Events committed after the subscriber's position.\n"
        "# TYPE zt_bus_subscriber_lag gauge",
        "zt_bus_deliveries_total Events handled by the subscriber.\n"
        "# TYPE zt_bus_deliveries_total counter",
        "zt_bus_failures_total Failed deliveries (rolled back, retried).\n"
        "# TYPE zt_bus_failures_total counter",
        "zt_bus_retry_seconds Backoff before the failing event is tried again; 0: none.\n"
        "# TYPE zt_bus_retry_seconds gauge",
    };
    for (size_t m = 0; m < sizeof help / sizeof help[0]; m++) {
        rc |= zt__buf_printf(out, "# HELP %s\n", help[m]);
        size_t nl = strcspn(help[m], " ");
        for (size_t i = 0; i < b->nsubs; i++) {
            const sub *s = &b->subs[i];
            uint64_t v = m == 0   ? (b->head > s->pos ? b->head - s->pos : 0)
                         : m == 1 ? s->deliveries
                         : m == 2 ? s->failures
                                  : (s->failed || s->retry_at ? s->backoff_ms / 1000 : 0);
            rc |= zt__buf_printf(out, "%.*s{plugin=\"%s\",pattern=\"%s\"} %llu\n", (int)nl, help[m],
                                 s->plugin_name, s->pattern, (unsigned long long)v);
        }
    }
    return rc ? ZT_ENOMEM : ZT_OK;
}
