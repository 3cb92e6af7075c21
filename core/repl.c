/* repl.c: real-time replication to a standby node (异地实时备份): the primary's server of
 * change sets, the standby that pulls and applies them, the channel between them. */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The channel. The standby asks (nng req/rep), the primary answers:
 *   request: id (16, random) | epoch (16) | applied (8): "I have applied through batch N"
 *   answer:  id (16, the request's) | status (1) | epoch (16) | head (8) | head's commit
 *            time (8, ms) | first kept (8) | then, for REPL_OK, change sets as
 *            zt__store_repl_read gives them; for REPL_RESEED, why (text)
 * Each message is sealed: nonce (24) | XChaCha20-Poly1305 of it, under a key both ends
 * derive from the master key they hold, the direction as associated data. So nobody
 * without the key reads the county's data off the wire or pulls it, an answer is taken
 * only for the request it names (a replayed old answer is refused), and a request never
 * passes for an answer. A request that does not open gets no answer at all. */
#define REPL_KEY_CTX     "ztrepl__"
#define REPL_AD          "zhengtong-replication-1"
#define REPL_REQ_V1      (16 + 16 + 8) /* a standby of before REPL_REQ: answers of REPL_REPLY_MAX */
#define REPL_REQ         (16 + 16 + 8 + 4)
#define REPL_HDR         (16 + 1 + 16 + 8 + 8 + 8)
#define REPL_REPLY_MAX   (4u << 20)   /* change sets one answer carries (one at least) */
#define REPL_REPLY_MIN   (64u << 10)  /* ... when the standby asks for less over a slow link */
#define REPL_REPLY_START (256u << 10) /* what a standby asks for at first */
#define REPL_POLL_MS     1000         /* an answer with nothing new waits this long for a commit */
#define REPL_RECV_MS                                                                               \
    20000 /* the standby waits this long for an answer at first (4 MB: 1.6 Mbit/s) ... */
#define REPL_RECV_MAX                                                                              \
    600000                   /* ... and at most, over a slow link (one change set of 4 MB at       \
                              * 56 kbit/s, at worst) */
#define REPL_STATUS_MS 2000  /* the standby rewrites standby.json this often when idle */
#define REPL_LOG_MS    10000 /* progress lines at most this often */
#define SEALED_EXTRA                                                                               \
    (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)

enum { REPL_OK = 0, REPL_RESEED = 1 };

static int64_t mono_ms(void)
{
    return (int64_t)zt__mono_ms();
}

/* Seal plain[0..n) into out (n + SEALED_EXTRA bytes) for direction dir ('Q' or 'R'). */
static void seal_msg(const unsigned char *key, char dir, const void *plain, size_t n,
                     unsigned char *out)
{
    unsigned char ad[sizeof REPL_AD];
    memcpy(ad, REPL_AD, sizeof REPL_AD - 1);
    ad[sizeof REPL_AD - 1] = (unsigned char)dir;
    randombytes_buf(out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, plain, n, ad, sizeof ad, NULL, out, key);
}

/* Open a sealed message in place of nothing: plain (malloc'd, *n bytes) or -1. */
static int open_msg(const unsigned char *key, char dir, const unsigned char *in, size_t len,
                    unsigned char **plain, size_t *n)
{
    *plain = NULL;
    if (len < SEALED_EXTRA) return -1;
    unsigned char ad[sizeof REPL_AD];
    memcpy(ad, REPL_AD, sizeof REPL_AD - 1);
    ad[sizeof REPL_AD - 1] = (unsigned char)dir;
    size_t m = len - SEALED_EXTRA;
    unsigned char *p = malloc(m ? m : 1);
    unsigned long long got;
    if (!p ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            p, &got, NULL, in + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, sizeof ad, in, key) != 0) {
        free(p);
        return -1;
    }
    *plain = p;
    *n = (size_t)got;
    return 0;
}

static int derive_key(zt_keys *keys, unsigned char **out)
{
    *out = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    if (!*out) return ZT_ENOMEM;
    int rc =
        zt__keys_derive(keys, REPL_KEY_CTX, 1, *out, crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    if (rc != ZT_OK) {
        sodium_free(*out);
        *out = NULL;
        return rc;
    }
    sodium_mprotect_readonly(*out);
    return ZT_OK;
}

static void epoch_hex(char out[33], const unsigned char epoch[16])
{
    zt__hex(out, epoch, 16);
}

/* ---- the primary ------------------------------------------------------------------ */

struct zt_repl {
    zt_store *s;
    nng_socket sock;
    pthread_t th;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen; /* commits that logged a change set */
    bool stop;
    unsigned char *key;
    char url[256];
    int64_t warned_auth, warned_reseed; /* when those were last logged (mono ms) */
    _Atomic int64_t last_request_ms;    /* wall clock of the standby's last request; 0: none */
};

static void on_logged(void *arg)
{
    zt_repl *r = arg;
    pthread_mutex_lock(&r->mu);
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void peer_text(nng_msg *m, char *out, size_t n)
{
    nng_sockaddr sa;
    snprintf(out, n, "an unknown address");
    nng_pipe p = nng_msg_get_pipe(m);
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) return;
    if (sa.s_family == NNG_AF_INET) {
        const unsigned char *a = (const unsigned char *)&sa.s_in.sa_addr;
        snprintf(out, n, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_INET6) {
        char hex[33];
        zt__hex(hex, sa.s_in6.sa_addr, 16);
        snprintf(out, n, "[%s]:%u", hex, ntohs(sa.s_in6.sa_port));
    }
}

/* Wait (at most REPL_POLL_MS) for a commit after generation gen. */
static void wait_commit(zt_repl *r, uint64_t gen)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += REPL_POLL_MS / 1000;
    ts.tv_nsec += (long)(REPL_POLL_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (r->gen == gen && !r->stop)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) break;
    pthread_mutex_unlock(&r->mu);
}

static uint64_t current_gen(zt_repl *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t g = r->gen;
    pthread_mutex_unlock(&r->mu);
    return g;
}

/* Answer one request (m is freed). */
static void answer(zt_repl *r, nng_msg *m)
{
    unsigned char *req;
    size_t n;
    char peer[80];
    peer_text(m, peer, sizeof peer);
    if (open_msg(r->key, 'Q', nng_msg_body(m), nng_msg_len(m), &req, &n) != 0 ||
        (n != REPL_REQ && n != REPL_REQ_V1)) {
        nng_msg_free(m);
        free(req);
        int64_t now = mono_ms();
        if (!r->warned_auth || now - r->warned_auth >= 60000) {
            r->warned_auth = now;
            zt__log(ZT_LOG_WARN, NULL, NULL,
                    "replication: a request from %s does not open with this node's master key "
                    "(not our standby, or a standby with another key file): not answered",
                    peer);
        }
        return;
    }
    nng_msg_free(m);
    atomic_store(&r->last_request_ms, zt_now_ms());
    unsigned char rid[16], epoch[16];
    memcpy(rid, req, 16);
    memcpy(epoch, req + 16, 16);
    uint64_t applied = zt__be64_get(req + 32);
    /* what the standby asks for at most (less over a slow link: repl_answered) */
    uint32_t max = REPL_REPLY_MAX;
    if (n == REPL_REQ) {
        max = (uint32_t)req[40] << 24 | (uint32_t)req[41] << 16 | (uint32_t)req[42] << 8 | req[43];
        max = max < REPL_REPLY_MIN ? REPL_REPLY_MIN : max > REPL_REPLY_MAX ? REPL_REPLY_MAX : max;
    }
    free(req);

    zt_buf out = {0};
    zt_repl_state st;
    uint64_t head_time = 0;
    int rc = zt__buf_reserve(&out, REPL_HDR);
    if (rc == ZT_OK) {
        out.len = REPL_HDR;
        uint64_t gen = current_gen(r);
        rc = zt__store_repl_read(r->s, applied, max, &out, &st, &head_time);
        if (rc == ZT_OK && st.on && applied == st.head && sodium_memcmp(epoch, st.epoch, 16) == 0) {
            wait_commit(r, gen); /* nothing new: answer as soon as there is */
            rc = zt__store_repl_read(r->s, applied, max, &out, &st, &head_time);
        }
    }
    if (rc != ZT_OK) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "replication: cannot read the change log: %s",
                zt_strerror(rc));
        zt__buf_free(&out);
        return; /* the standby asks again */
    }
    char why[256] = "";
    if (!st.on)
        snprintf(why, sizeof why, "replication is off on the primary");
    else if (sodium_memcmp(epoch, st.epoch, 16) != 0)
        snprintf(why, sizeof why,
                 "the standby's data is of another change log than the primary's (a backup made "
                 "before replication was last turned on, or of another node)");
    else if (applied > st.head)
        snprintf(why, sizeof why,
                 "the standby has applied batch %llu, past the primary's last (%llu): the "
                 "primary's data is older than the standby's (was it restored from a backup?)",
                 (unsigned long long)applied, (unsigned long long)st.head);
    else if (applied + 1 < st.first)
        snprintf(why, sizeof why,
                 "batch %llu, the next the standby needs, is no longer kept (the primary keeps "
                 "batches %llu..%llu; replication.keep)",
                 (unsigned long long)applied + 1, (unsigned long long)st.first,
                 (unsigned long long)st.head);
    int status = why[0] ? REPL_RESEED : REPL_OK;
    if (status == REPL_OK) {
        zt__store_repl_ack(r->s, applied);
    } else {
        out.len = REPL_HDR;
        zt__buf_puts(&out, why);
        int64_t now = mono_ms();
        if (!r->warned_reseed || now - r->warned_reseed >= 60000) {
            r->warned_reseed = now;
            zt__log(ZT_LOG_WARN, NULL, NULL,
                    "replication: the standby at %s must be re-seeded from a new backup: %s", peer,
                    why);
        }
    }
    unsigned char *h = (unsigned char *)out.data;
    memcpy(h, rid, 16);
    h[16] = (unsigned char)status;
    memcpy(h + 17, st.epoch, 16);
    zt__be64_put(h + 33, st.head);
    zt__be64_put(h + 41, head_time);
    zt__be64_put(h + 49, st.first);
    nng_msg *a;
    if (nng_msg_alloc(&a, out.len + SEALED_EXTRA) == 0) {
        seal_msg(r->key, 'R', out.data, out.len, nng_msg_body(a));
        if (nng_sendmsg(r->sock, a, 0) != 0) nng_msg_free(a);
    }
    zt__buf_free(&out);
}

static void *serve_thread(void *arg)
{
    zt_repl *r = arg;
    for (;;) {
        nng_msg *m;
        int rc = nng_recvmsg(r->sock, &m, 0);
        if (rc == NNG_ECLOSED) break;
        if (rc == 0) answer(r, m);
    }
    return NULL;
}

static void repl_free(zt_repl *r)
{
    if (r->key) sodium_free(r->key);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int zt__repl_start(zt_server *srv, char *err, size_t errlen)
{
    const zt_conf *c = srv->conf;
    if (!c->repl_listen || srv->check_only || srv->lua_tests) return ZT_OK;
    zt_repl *r = calloc(1, sizeof *r);
    if (!r) return ZT_ENOMEM;
    r->s = srv->store;
    snprintf(r->url, sizeof r->url, "%s", c->repl_listen);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->mu, NULL);
    int rc = derive_key(srv->keys, &r->key);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "replication: cannot derive the channel's key: %s", zt_strerror(rc));
        repl_free(r);
        return rc;
    }
    int nrc;
    if ((nrc = nng_rep0_open(&r->sock)) != 0 ||
        (nrc = nng_socket_set_size(r->sock, NNG_OPT_RECVMAXSZ, 1024)) != 0) {
        snprintf(err, errlen, "replication: cannot open a socket: %s", nng_strerror(nrc));
        repl_free(r);
        return ZT_EIO;
    }
    if ((nrc = nng_listen(r->sock, r->url, NULL, 0)) != 0) {
        snprintf(err, errlen, "%s:%d: replication.listen: cannot listen on %s: %s", c->file,
                 c->repl_listen_line, r->url, nng_strerror(nrc));
        nng_close(r->sock);
        repl_free(r);
        return ZT_EIO;
    }
    if (pthread_create(&r->th, NULL, serve_thread, r) != 0) {
        snprintf(err, errlen, "replication: cannot start its thread");
        nng_close(r->sock);
        repl_free(r);
        return ZT_ENOMEM;
    }
    r->running = true;
    zt__store_repl_notify(srv->store, on_logged, r);
    srv->repl = r;
    zt_repl_state st;
    if (zt__store_repl_state(srv->store, &st) == ZT_OK) {
        char hex[33];
        epoch_hex(hex, st.epoch);
        zt__log(ZT_LOG_INFO, NULL, NULL,
                "replication: serving change sets on %s (log %s, at batch %llu, keeping batches "
                "%llu..%llu, %llu bytes)",
                r->url, hex, (unsigned long long)st.head, (unsigned long long)st.first,
                (unsigned long long)st.head, (unsigned long long)st.bytes);
    }
    return ZT_OK;
}

void zt__repl_stop(zt_server *srv)
{
    zt_repl *r = srv->repl;
    if (!r) return;
    zt__store_repl_notify(srv->store, NULL, NULL);
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    nng_close(r->sock); /* its nng_recvmsg returns NNG_ECLOSED */
    if (r->running) pthread_join(r->th, NULL);
    repl_free(r);
    srv->repl = NULL;
}

int zt__repl_metrics(zt_server *srv, zt_buf *out)
{
    zt_repl_state st;
    if (!srv->repl || zt__store_repl_state(srv->store, &st) != ZT_OK || !st.on) return ZT_OK;
    int64_t last = atomic_load(&srv->repl->last_request_ms);
    return zt__buf_printf(
        out,
        "# HELP zt_replication_head_batch The last batch in the change log.\n"
        "# TYPE zt_replication_head_batch gauge\n"
        "zt_replication_head_batch %llu\n"
        "# HELP zt_replication_confirmed_batch The last batch the standby confirmed it applied.\n"
        "# TYPE zt_replication_confirmed_batch gauge\n"
        "zt_replication_confirmed_batch %llu\n"
        "# HELP zt_replication_log_bytes Bytes of change sets kept for the standby.\n"
        "# TYPE zt_replication_log_bytes gauge\n"
        "zt_replication_log_bytes %llu\n"
        "# HELP zt_replication_last_request_seconds Seconds since the standby last asked (-1: "
        "never, since this start).\n"
        "# TYPE zt_replication_last_request_seconds gauge\n"
        "zt_replication_last_request_seconds %.3f\n",
        (unsigned long long)st.head, (unsigned long long)zt__store_repl_acked(srv->store),
        (unsigned long long)st.bytes, last ? (double)(zt_now_ms() - last) / 1000.0 : -1.0);
}

/* ---- the standby -------------------------------------------------------------------- */

typedef struct standby {
    zt_conf *conf;
    const char *url;
    zt_store *s;
    nng_socket sock;
    unsigned char *key;
    zt_repl_state st;
    atomic_bool stop;
    const char *state; /* "connecting", "following", "catching up", "unreachable", ... */
    uint64_t primary_head, primary_head_time, last_time;
    int64_t last_contact;         /* wall clock ms; 0: never */
    int64_t status_at, logged_at; /* mono ms */
    uint64_t logged_head;
    /* what an answer may carry and how long it may take (repl_answered, repl_slow) */
    uint32_t max_reply;
    int recv_ms, base_recv_ms;
    /* connections to the primary now, and how often they came or went: an answer that
     * does not come while one connection stayed up is a slow link, not a primary gone */
    atomic_int pipes;
    atomic_uint pipe_events;
    char why[512];
} standby;

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    standby *sb = arg;
    atomic_fetch_add(&sb->pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
    atomic_fetch_add(&sb->pipe_events, 1);
}

/* How much the standby asks for and how long it waits adapt to the link, as TCP's window
 * does: a cancelled request's answer is not, the primary sends it all the same and it
 * takes the line before the next (nng's REQ cannot call it back), so timeouts cost twice
 * and the sizes are kept where none happen. An answer starts at REPL_REPLY_START and
 * doubles while full answers come in an eighth of the time allowed, halves when one takes
 * half of it. No answer within recv_ms over a connection that stayed up: a quarter of the
 * size (down to REPL_REPLY_MIN), and twice the wait (up to REPL_RECV_MAX), for a change
 * set larger alone than the line carries in the wait. */
static void repl_slow(standby *sb)
{
    int waited = sb->recv_ms;
    sb->max_reply = sb->max_reply / 4 < REPL_REPLY_MIN ? REPL_REPLY_MIN : sb->max_reply / 4;
    sb->recv_ms = sb->recv_ms * 2 > REPL_RECV_MAX ? REPL_RECV_MAX : sb->recv_ms * 2;
    zt__log(ZT_LOG_WARN, NULL, NULL,
            "standby: no answer from %s within %.0f s over a connection that stayed up: the "
            "link is slow; now asking for at most %u KB an answer, waiting up to %.0f s",
            sb->url, waited / 1000.0, sb->max_reply >> 10, sb->recv_ms / 1000.0);
}

/* An answer of n bytes came after took ms. */
static void repl_answered(standby *sb, int64_t took, size_t n)
{
    if (took * 2 > sb->recv_ms)
        sb->max_reply = sb->max_reply / 2 < REPL_REPLY_MIN ? REPL_REPLY_MIN : sb->max_reply / 2;
    else if (n * 2 >= sb->max_reply && took * 8 < sb->recv_ms)
        sb->max_reply = sb->max_reply * 2 > REPL_REPLY_MAX ? REPL_REPLY_MAX : sb->max_reply * 2;
    if (sb->recv_ms > sb->base_recv_ms && took * 4 < sb->recv_ms)
        sb->recv_ms = sb->recv_ms / 2 < sb->base_recv_ms ? sb->base_recv_ms : sb->recv_ms / 2;
}

/* data_dir/standby.json: what `zhengtong standby status` reads (replaced whole). */
static void write_status(standby *sb)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/standby.json", sb->conf->data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    uint64_t behind = sb->primary_head > sb->st.head ? sb->primary_head - sb->st.head : 0;
    double lag = behind && sb->primary_head_time > sb->last_time
                     ? (double)(sb->primary_head_time - sb->last_time) / 1000.0
                     : 0;
    cJSON_AddStringToObject(o, "primary", sb->url);
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    cJSON_AddStringToObject(o, "state", sb->state);
    cJSON_AddNumberToObject(o, "applied", (double)sb->st.head);
    cJSON_AddNumberToObject(o, "primary_head", (double)sb->primary_head);
    cJSON_AddNumberToObject(o, "behind", (double)behind);
    cJSON_AddNumberToObject(o, "lag_seconds", lag);
    cJSON_AddNumberToObject(o, "last_contact_ms", (double)sb->last_contact);
    cJSON_AddNumberToObject(o, "updated_ms", (double)zt_now_ms());
    if (sb->why[0]) cJSON_AddStringToObject(o, "why", sb->why);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        size_t n = strlen(text);
        bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
        close(fd);
        if (!ok || rename(tmp, path) != 0) unlink(tmp);
    }
    cJSON_free(text);
    sb->status_at = mono_ms();
}

static void set_state(standby *sb, const char *state)
{
    if (sb->state == state) return;
    sb->state = state;
    write_status(sb);
}

/* The signals end the wait on the primary: nng_close from this thread makes the main
 * thread's nng call return. */
typedef struct sigwaiter {
    pthread_t th;
    sigset_t set;
    standby *sb;
} sigwaiter;

static void *sig_thread(void *arg)
{
    sigwaiter *w = arg;
    int sig = 0;
    sigwait(&w->set, &sig);
    if (!atomic_exchange(&w->sb->stop, true)) {
        zt__log(ZT_LOG_INFO, NULL, NULL, "standby: %s: stopping",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
        nng_close(w->sb->sock);
    }
    return NULL;
}

/* One request and its answer. Returns 0 to go on, 1 when the standby must stop (why is
 * set and logged), -1 when the primary did not answer (retry). */
static int pull(standby *sb)
{
    unsigned char req[REPL_REQ], rid[16];
    randombytes_buf(rid, sizeof rid);
    memcpy(req, rid, 16);
    memcpy(req + 16, sb->st.epoch, 16);
    zt__be64_put(req + 32, sb->st.head);
    req[40] = (unsigned char)(sb->max_reply >> 24), req[41] = (unsigned char)(sb->max_reply >> 16);
    req[42] = (unsigned char)(sb->max_reply >> 8), req[43] = (unsigned char)sb->max_reply;
    nng_msg *m;
    if (nng_msg_alloc(&m, sizeof req + SEALED_EXTRA) != 0) return -1;
    seal_msg(sb->key, 'Q', req, sizeof req, nng_msg_body(m));
    nng_socket_set_ms(sb->sock, NNG_OPT_RECVTIMEO, sb->recv_ms);
    unsigned events = atomic_load(&sb->pipe_events);
    int64_t sent_at = mono_ms();
    int nrc = nng_sendmsg(sb->sock, m, 0);
    if (nrc != 0) {
        nng_msg_free(m);
        return atomic_load(&sb->stop) ? 1 : -1;
    }
    if ((nrc = nng_recvmsg(sb->sock, &m, 0)) != 0) {
        if (atomic_load(&sb->stop)) return 1;
        if (nrc == NNG_ETIMEDOUT && atomic_load(&sb->pipes) > 0 &&
            atomic_load(&sb->pipe_events) == events) {
            repl_slow(sb);
            return 2;
        }
        return -1;
    }
    int64_t took = mono_ms() - sent_at;
    unsigned char *a;
    size_t n;
    if (open_msg(sb->key, 'R', nng_msg_body(m), nng_msg_len(m), &a, &n) != 0 || n < REPL_HDR ||
        memcmp(a, rid, 16) != 0) {
        nng_msg_free(m);
        free(a);
        zt__log(ZT_LOG_ERROR, NULL, NULL,
                "standby: an answer from %s does not open with this node's master key, or "
                "answers another request: is key_file the primary's master key? (retrying)",
                sb->url);
        sleep(2);
        return -1;
    }
    nng_msg_free(m);
    repl_answered(sb, took, n);
    sb->last_contact = zt_now_ms();
    int status = a[16];
    sb->primary_head = zt__be64_get(a + 33);
    sb->primary_head_time = zt__be64_get(a + 41);
    if (status != REPL_OK) {
        snprintf(sb->why, sizeof sb->why, "%.*s", (int)(n - REPL_HDR), (const char *)a + REPL_HDR);
        free(a);
        zt__log(ZT_LOG_ERROR, NULL, NULL,
                "standby: the primary says this standby must be re-seeded: %s. Stop it, restore "
                "a new `zhengtong backup` of the primary into data_dir %s, and start it again",
                sb->why, sb->conf->data_dir);
        set_state(sb, "reseed");
        return 1;
    }
    if (n > REPL_HDR) {
        char err[sizeof sb->why - 40] = ""; /* room for it in why, after the words before it */
        uint64_t before = sb->st.head;
        int rc = zt__store_repl_apply(sb->s, sb->st.epoch, a + REPL_HDR, n - REPL_HDR, &sb->st,
                                      &sb->last_time, err, sizeof err);
        free(a);
        if (rc != ZT_OK) {
            snprintf(sb->why, sizeof sb->why, "cannot apply the primary's changes: %s", err);
            zt__log(ZT_LOG_ERROR, NULL, NULL,
                    "standby: %s; nothing of them was applied (data_dir "
                    "%s is as of batch %llu)",
                    sb->why, sb->conf->data_dir, (unsigned long long)sb->st.head);
            set_state(sb, "failed");
            return 1;
        }
        (void)before;
    } else {
        free(a);
    }
    bool behind = sb->primary_head > sb->st.head;
    const char *was = sb->state;
    sb->state = behind ? "catching up" : "following";
    int64_t now = mono_ms();
    if (was != sb->state || now - sb->logged_at >= REPL_LOG_MS) {
        if (sb->st.head != sb->logged_head || was != sb->state) {
            if (behind)
                zt__log(ZT_LOG_INFO, NULL, NULL,
                        "standby: applied through batch %llu; the primary is at %llu (%llu "
                        "behind, %.1f s)",
                        (unsigned long long)sb->st.head, (unsigned long long)sb->primary_head,
                        (unsigned long long)(sb->primary_head - sb->st.head),
                        (double)(sb->primary_head_time - sb->last_time) / 1000.0);
            else
                zt__log(ZT_LOG_INFO, NULL, NULL,
                        "standby: up to date with the primary at batch %llu",
                        (unsigned long long)sb->st.head);
            sb->logged_head = sb->st.head;
        }
        sb->logged_at = now;
    }
    if (was != sb->state || sb->st.head != sb->logged_head || now - sb->status_at >= REPL_STATUS_MS)
        write_status(sb);
    return 0;
}

static int standby_loop(standby *sb)
{
    int64_t silent_since = 0;
    while (!atomic_load(&sb->stop)) {
        int rc = pull(sb);
        if (rc == 1) return atomic_load(&sb->stop) && !sb->why[0] ? 0 : 1;
        if (rc == 2) continue; /* slow: asked again for less (repl_slow said so) */
        if (rc == 0) {
            if (silent_since)
                zt__log(ZT_LOG_INFO, NULL, NULL, "standby: the primary at %s answers again",
                        sb->url);
            silent_since = 0;
            continue;
        }
        if (atomic_load(&sb->stop)) break;
        if (!silent_since) {
            silent_since = mono_ms();
            zt__log(ZT_LOG_WARN, NULL, NULL,
                    "standby: the primary at %s does not answer; retrying (data_dir is as of "
                    "batch %llu)",
                    sb->url, (unsigned long long)sb->st.head);
        }
        set_state(sb, "unreachable");
        write_status(sb);
    }
    return 0;
}

static int standby_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int standby_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zhengtong standby: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int zt__standby_run(zt_conf *conf, const char *url)
{
    char err[ZT_ERRLEN] = "", mdb[4096];
    struct stat st;
    if (strncmp(url, "tcp://", 6) != 0 || !url[6] || strlen(url) >= 256)
        return standby_fail("the primary's address must be tcp://HOST:PORT (its "
                            "replication.listen), not '%s'",
                            url);
    if (zt__conf_check_dirs(conf, false, err, sizeof err) != ZT_OK) return standby_fail("%s", err);
    snprintf(mdb, sizeof mdb, "%s/data.mdb", conf->data_dir);
    if (stat(mdb, &st) != 0)
        return standby_fail(
            "data_dir %s holds no data: seed it first with a `zhengtong backup` of the primary "
            "(copied there, owned by this user, mode 0700) and the primary's master key file "
            "(at key_file %s, mode 0600)",
            conf->data_dir, conf->key_file);
    if (stat(conf->key_file, &st) != 0)
        return standby_fail("key file %s is missing: copy the primary's master key there (mode "
                            "0600); the channel and the data are sealed under it",
                            conf->key_file);
    if (zt__server_check_key(conf, err, sizeof err) != ZT_OK) return standby_fail("%s", err);
    /* before any thread starts (nng's too), so that only sig_thread takes the signals */
    sigwaiter w = {0};
    sigemptyset(&w.set);
    sigaddset(&w.set, SIGINT);
    sigaddset(&w.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &w.set, NULL);

    int lock_fd;
    if (zt__store_claim(conf->data_dir, &lock_fd, err, sizeof err) != ZT_OK)
        return standby_fail("%s", err);
    standby sb = {.conf = conf, .url = url, .state = "connecting", .max_reply = REPL_REPLY_START};
    atomic_init(&sb.stop, false);
    atomic_init(&sb.pipes, 0);
    atomic_init(&sb.pipe_events, 0);
    /* ZT_TEST_REPL_RECV_MS: a shorter first wait, for the tests of a slow link */
    const char *t = getenv("ZT_TEST_REPL_RECV_MS");
    sb.base_recv_ms = t && atoi(t) > 0 ? atoi(t) : REPL_RECV_MS;
    sb.recv_ms = sb.base_recv_ms;
    zt_keys *keys = NULL;
    int rc = zt__store_open(&sb.s, conf->data_dir, conf->map_size, err, sizeof err);
    if (rc == ZT_OK && (rc = zt__store_repl_open(sb.s, conf->repl_keep)) != ZT_OK)
        snprintf(err, sizeof err, "data_dir %s: cannot read its change log: %s", conf->data_dir,
                 zt_strerror(rc));
    if (rc == ZT_OK && (rc = zt__store_repl_standby(sb.s, url, &sb.st)) != ZT_OK)
        snprintf(err, sizeof err,
                 rc == ZT_ENOTFOUND
                     ? "data_dir %s holds no replication position: it is not a backup of a "
                       "primary with replication on (or one made before it was turned on): "
                       "seed it from a new `zhengtong backup` of the primary"
                     : "data_dir %s: cannot mark it a standby's",
                 conf->data_dir);
    if (rc == ZT_OK) rc = zt__keys_open(conf->key_file, &keys, err, sizeof err);
    if (rc == ZT_OK && (rc = derive_key(keys, &sb.key)) != ZT_OK)
        snprintf(err, sizeof err, "cannot derive the channel's key: %s", zt_strerror(rc));
    int nrc = 0;
    if (rc == ZT_OK &&
        ((nrc = nng_req0_open(&sb.sock)) != 0 ||
         (nrc = nng_socket_set_size(sb.sock, NNG_OPT_RECVMAXSZ, 0)) != 0 ||
         (nrc = nng_socket_set_ms(sb.sock, NNG_OPT_RECVTIMEO, sb.recv_ms)) != 0 ||
         (nrc = nng_socket_set_ms(sb.sock, NNG_OPT_SENDTIMEO, REPL_RECV_MS)) != 0 ||
         /* a request is sent again only after a connection is lost, never
          * while its answer is on its way over a slow link */
         (nrc = nng_socket_set_ms(sb.sock, NNG_OPT_REQ_RESENDTIME, REPL_RECV_MAX + 1000)) != 0 ||
         (nrc = nng_pipe_notify(sb.sock, NNG_PIPE_EV_ADD_POST, on_pipe, &sb)) != 0 ||
         (nrc = nng_pipe_notify(sb.sock, NNG_PIPE_EV_REM_POST, on_pipe, &sb)) != 0 ||
         (nrc = nng_socket_set_ms(sb.sock, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
         (nrc = nng_dial(sb.sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0)) {
        snprintf(err, sizeof err, "cannot connect to %s: %s", url, nng_strerror(nrc));
        rc = ZT_EIO;
    }
    int status = 1;
    if (rc == ZT_OK) {
        char hex[33];
        epoch_hex(hex, sb.st.epoch);
        zt__log(ZT_LOG_INFO, NULL, NULL,
                "standby of %s: data_dir %s is as of batch %llu of change log %s; following (it "
                "serves nothing; to promote it, stop it and `zhengtong serve` this config)",
                url, conf->data_dir, (unsigned long long)sb.st.head, hex);
        write_status(&sb);
        w.sb = &sb;
        if (pthread_create(&w.th, NULL, sig_thread, &w) != 0) {
            snprintf(err, sizeof err, "cannot start the signal thread");
        } else {
            status = standby_loop(&sb);
            if (!atomic_exchange(&sb.stop, true)) {
                nng_close(sb.sock);
                pthread_kill(w.th, SIGTERM); /* blocked everywhere: sigwait takes it */
            }
            pthread_join(w.th, NULL);
            if (!sb.why[0]) set_state(&sb, "stopped");
            zt__log(ZT_LOG_INFO, NULL, NULL, "standby: stopped at batch %llu",
                    (unsigned long long)sb.st.head);
        }
    } else if (nrc) {
        nng_close(sb.sock);
    }
    if (err[0]) fprintf(stderr, "zhengtong standby: %s\n", err);
    if (sb.key) sodium_free(sb.key);
    zt__keys_close(keys);
    zt__store_close(sb.s);
    close(lock_fd);
    return err[0] ? 1 : status;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

int zt__standby_status(zt_conf *conf)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/standby.json", conf->data_dir);
    zt_buf b = {0};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "zhengtong standby: no standby has run on data_dir %s (no %s)\n",
                conf->data_dir, path);
        return 1;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) zt__buf_append(&b, chunk, n);
    fclose(f);
    cJSON *o = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    zt__buf_free(&b);
    const char *state = o ? zt__jstr(o, "state") : NULL;
    if (!state) {
        cJSON_Delete(o);
        fprintf(stderr, "zhengtong standby: %s is not a standby's status\n", path);
        return 1;
    }
#define NUM(k) num(o, k)
    double pid = NUM("pid"), updated = NUM("updated_ms"), contact = NUM("last_contact_ms");
    bool alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    int64_t now = zt_now_ms();
    bool live = strcmp(state, "stopped") != 0 && alive;
    printf("standby of %s: %s%s\n", zt__jstr(o, "primary") ? zt__jstr(o, "primary") : "?",
           live                            ? state
           : strcmp(state, "stopped") == 0 ? "stopped"
                                           : "not running",
           live ? "" : " (no standby process runs on this data_dir)");
    printf("  applied through batch %.0f; the primary was at %.0f (%.0f behind, %.1f s of its "
           "commits)\n",
           NUM("applied"), NUM("primary_head"), NUM("behind"), NUM("lag_seconds"));
    if (contact > 0)
        printf("  last answer from the primary %.1f s ago\n",
               (double)(now - (int64_t)contact) / 1000.0);
    else
        printf("  no answer from the primary yet\n");
    if (zt__jstr(o, "why")) printf("  %s\n", zt__jstr(o, "why"));
    bool ok = live && (strcmp(state, "following") == 0 || strcmp(state, "catching up") == 0) &&
              now - (int64_t)updated < 30000;
#undef NUM
    cJSON_Delete(o);
    return ok ? 0 : 1;
}
