/* syslog.c: the audit log sent on to the county's log collector (日志审计; GB/T 22239
 * level 3, 集中管控: audit data gathered in one place and analysed there). */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/*
 * With audit.syslog = "tcp://collector:port", every committed audit record is also sent,
 * in order, as one RFC 5424 message over TCP (RFC 6587 octet counting: "LEN SP MSG"); with
 * "tls://collector:port" the same inside TLS (RFC 5425), the collector's certificate
 * checked against audit.syslog_ca and the name it is reached by:
 *
 *     <PRI>1 TIME HOST zhengtong PID audit - {"seq":…,"time":…,"actor":…,…,"hash":…}
 *
 * PRI from audit.syslog_facility and the severity (warning for a status of 400 or more:
 * refusals, failed sign-ins; notice for the rest), TIME the record's own (UTC, ms), HOST
 * the node_name, the message the record as GET /audit shows it (UTF-8 JSON).
 *
 * What was sent is not believed delivered until the collector's TCP has acknowledged its
 * last byte (SIOCOUTQ: the bytes sent and not yet acknowledged) and the connection stayed
 * up for a tick after: up to there the records are *confirmed*, and that position is kept
 * in the store (_core/meta "audit_syslog", each second it moves, and at shutdown). A
 * connection that breaks, a collector down for days, a restart: the records from the
 * confirmed position on are sent (again): none is lost, some may come twice (the seq
 * tells). `audit prune` leaves the records not yet confirmed.
 *
 * Sent from the loop (libuv TCP; TLS through memory BIOs), at most SEND_MAX of records a
 * write, after each commit and on a one-second tick (which also catches what an offline
 * `zhengtong admin` appended, and retries a lost collector: 1 s, doubling up to 60 s). The
 * first start with audit.syslog sends the log from its beginning (what was pruned before
 * is in the archives `audit export` wrote).
 */

#define META_KEY    "audit_syslog"
#define SEND_MAX    (256 * 1024)
#define RECS_MAX    2000
#define TICK_MS     1000
#define RETRY_MAX   60000
#define CONNECT_MAX 10000 /* ms a connection may take to open */

typedef struct sent_mark {
    uint64_t seq; /* the last record of a write */
    uint64_t end; /* the connection's byte count at its end */
} sent_mark;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct zt_syslog *f; /* NULL once it is given up (closing) */
    zt_buf out;          /* the records being written (before TLS) */
    uint64_t bytes;      /* bytes the kernel took, in order */
    sent_mark *marks;
    size_t nmarks, cap;
    bool open, writing; /* connected (and TLS up); a write of records in flight */
    uint64_t ripe;      /* acknowledged at the last tick: confirmed at the next */
    SSL *ssl;           /* tls://: the session, over two memory BIOs */
    BIO *net_in, *net_out;
    char rbuf[16384];
} conn;

/* One write on the socket: records (through: the last one's seq) or TLS's own bytes. */
typedef struct out_write {
    uv_write_t req;
    conn *c;
    uint64_t through; /* 0: no records */
    size_t len;
    char data[];
} out_write;

struct zt_syslog {
    zt_server *srv;
    uv_timer_t tick;
    uv_getaddrinfo_t gai;
    bool resolving, stopping, tick_closed; /* f is freed when both are over */
    conn *c;
    SSL_CTX *tls;       /* tls://: what the collector's certificate is checked against */
    uint64_t sent;      /* the last record written to the current connection */
    uint64_t confirmed; /* the last record the collector's TCP acknowledged */
    uint64_t saved;     /* confirmed, as the store holds it */
    int64_t connect_began, retry_at;
    uint64_t retry_ms;
    bool down_said; /* the log said the collector is unreachable */
    char host[256];
    int pid;
    char when[32]; /* the last record's time to the second, as RFC 5424 writes it */
    time_t when_secs;
    /* metrics */
    uint64_t records_total, connects_total, failures_total;
    zt_db *meta;
};

static void connect_now(zt_syslog *f);
static void pump(zt_syslog *f);
static void syslog_free(zt_syslog *f);

/* ---- the confirmed position, in the store ------------------------------------------ */

int zt__syslog_confirmed(zt_server *srv, zt_txn *t, uint64_t *seq)
{
    const void *v;
    size_t vl;
    int rc = zt_get(t, zt__core_meta(srv), META_KEY, sizeof META_KEY - 1, &v, &vl);
    if (rc == ZT_OK && vl != 8) rc = ZT_EIO;
    if (rc == ZT_OK) *seq = zt__be64_get(v);
    return rc;
}

/* Keep `confirmed` in the store, in a transaction of its own (none is open: a batch would
 * carry it into a request's fate). */
static void save(zt_syslog *f)
{
    zt_server *srv = f->srv;
    if (f->confirmed == f->saved || zt__store_batch_open(srv->store)) return;
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc != ZT_OK) return;
    unsigned char v[8];
    zt__be64_put(v, f->confirmed);
    rc = zt_put(t, f->meta, META_KEY, sizeof META_KEY - 1, v, 8);
    if (zt__store_write_done(srv->store, t, rc) == ZT_OK) f->saved = f->confirmed;
}

/* ---- the connection --------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    zt__buf_free(&c->out);
    free(c->marks);
    if (c->ssl) SSL_free(c->ssl); /* and its BIOs */
    free(c);
}

static void retry_later(zt_syslog *f)
{
    f->retry_at = zt_now_ms() + (int64_t)f->retry_ms;
    f->retry_ms = f->retry_ms * 2 > RETRY_MAX ? RETRY_MAX : f->retry_ms * 2;
}

/* Give the connection up (why: for the log): what it sent and the collector did not
 * acknowledge is sent again on the next. */
static void drop(zt_syslog *f, const char *why)
{
    conn *c = f->c;
    if (!c) return;
    f->c = NULL;
    c->f = NULL;
    f->sent = f->confirmed;
    if (!f->stopping) f->failures_total++;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (!f->down_said && !f->stopping) {
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "audit.syslog: %s: %s; the records from #%llu on are kept and sent once it "
                "answers (zt_audit_syslog_lag_records says how many wait)",
                f->srv->conf->audit_syslog_host, why, (unsigned long long)f->confirmed + 1);
        f->down_said = true;
    }
    retry_later(f);
}

/* OpenSSL's reason for the last failure, and the certificate check's when it failed. */
static const char *tls_problem(conn *c, char *buf, size_t len)
{
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    if (v != X509_V_OK)
        snprintf(buf, len, "its certificate is not accepted: %s", X509_verify_cert_error_string(v));
    else if (e)
        snprintf(buf, len, "TLS: %s",
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error");
    else
        snprintf(buf, len, "TLS: the connection failed");
    ERR_clear_error();
    return buf;
}

/* The records the collector has: those whose last byte its TCP acknowledged (no longer in
 * the socket's send queue) a tick ago, the connection up since. A tick's wait, because an
 * acknowledgement is the kernel's: a collector that then refuses the connection (a TLS
 * 1.3 client certificate it does not accept is judged after the records are on their
 * way) resets it within moments, and what it dropped is not counted. */
static void confirm(zt_syslog *f)
{
    conn *c = f->c;
    uv_os_fd_t fd;
    int unacked;
    if (!c || !c->open) return;
    if (c->ripe > f->confirmed) f->confirmed = c->ripe;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, SIOCOUTQ, &unacked) != 0 ||
        unacked < 0)
        return;
    uint64_t acked = c->bytes - (uint64_t)unacked;
    size_t i = 0;
    while (i < c->nmarks && c->marks[i].end <= acked) c->ripe = c->marks[i++].seq;
    memmove(c->marks, c->marks + i, (c->nmarks - i) * sizeof *c->marks);
    c->nmarks -= i;
}

static void on_out_written(uv_write_t *w, int status)
{
    out_write *o = w->data;
    conn *c = o->c;
    uint64_t through = o->through;
    size_t len = o->len;
    free(o);
    if (through) c->writing = false;
    zt_syslog *f = c->f;
    if (!f) return; /* given up meanwhile */
    if (status < 0) {
        drop(f, uv_strerror(status));
        return;
    }
    c->bytes += len; /* writes complete in their order */
    if (!through) return;
    if (c->nmarks == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        sent_mark *m = realloc(c->marks, cap * sizeof *m);
        if (!m) {
            drop(f, "out of memory");
            return;
        }
        c->marks = m, c->cap = cap;
    }
    c->marks[c->nmarks++] = (sent_mark){through, c->bytes};
    f->sent = through;
    pump(f);
}

/* Write len bytes to the socket (copied); through: the last record among them, if any. */
static int send_raw(conn *c, const void *data, size_t len, uint64_t through)
{
    out_write *o = malloc(sizeof *o + len);
    if (!o) return ZT_ENOMEM;
    o->req.data = o;
    o->c = c;
    o->through = through;
    o->len = len;
    memcpy(o->data, data, len);
    uv_buf_t buf = uv_buf_init(o->data, (unsigned)len);
    int rc = uv_write(&o->req, (uv_stream_t *)&c->tcp, &buf, 1, on_out_written);
    if (rc != 0) {
        free(o);
        return ZT_EIO;
    }
    if (through) c->writing = true;
    return ZT_OK;
}

/* What TLS has to send (handshake, records, alerts), in one write. */
static int tls_flush(conn *c, uint64_t through)
{
    size_t n = BIO_ctrl_pending(c->net_out);
    if (!n) return through ? ZT_EIO : ZT_OK;
    char *buf = malloc(n);
    if (!buf) return ZT_ENOMEM;
    int got = BIO_read(c->net_out, buf, (int)n);
    int rc = got > 0 ? send_raw(c, buf, (size_t)got, through) : ZT_EIO;
    free(buf);
    return rc;
}

static void now_open(zt_syslog *f)
{
    conn *c = f->c;
    c->open = true;
    f->connects_total++;
    f->retry_ms = TICK_MS;
    if (f->down_said)
        zt__log(ZT_LOG_INFO, NULL, NULL, "audit.syslog: %s answers again; sending from #%llu",
                f->srv->conf->audit_syslog_host, (unsigned long long)f->confirmed + 1);
    f->down_said = false;
    pump(f);
}

/* Move the TLS handshake on: ZT_OK, done or waiting for the collector; else dropped. */
static void tls_handshake(zt_syslog *f)
{
    conn *c = f->c;
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    char why[256];
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
        tls_problem(c, why, sizeof why);
        tls_flush(c, 0); /* its alert */
        drop(f, why);
        return;
    }
    if (tls_flush(c, 0) != ZT_OK) {
        drop(f, "cannot write");
        return;
    }
    if (r == 1) now_open(f);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    conn *c = h->data; /* a collector says nothing but TLS: the rest is dropped */
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    zt_syslog *f = c->f;
    if (!f || n == 0) return;
    if (n < 0) {
        drop(f, n == UV_EOF ? "the collector closed the connection" : uv_strerror((int)n));
        return;
    }
    if (!c->ssl) return;
    if (BIO_write(c->net_in, buf->base, (int)n) != (int)n) {
        drop(f, "out of memory");
        return;
    }
    if (!c->open) {
        tls_handshake(f);
        return;
    }
    char sink[4096];
    int r;
    while ((r = SSL_read(c->ssl, sink, sizeof sink)) > 0) {
    }
    int e = SSL_get_error(c->ssl, r);
    char why[256];
    if (e == SSL_ERROR_ZERO_RETURN)
        drop(f, "the collector closed the connection");
    else if (e != SSL_ERROR_WANT_READ)
        drop(f, tls_problem(c, why, sizeof why));
    else if (tls_flush(c, 0) != ZT_OK) /* what TLS answers (a key update) */
        drop(f, "cannot write");
}

/* The collector's name, as its certificate must give it (a DNS name or an address). */
static int tls_begin(zt_syslog *f, conn *c)
{
    const char *host = f->srv->conf->audit_syslog_host;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!(c->ssl = SSL_new(f->tls)) || !(c->net_in = BIO_new(BIO_s_mem())) ||
        !(c->net_out = BIO_new(BIO_s_mem()))) {
        BIO_free(c->net_in);
        BIO_free(c->net_out);
        c->net_in = c->net_out = NULL;
        return ZT_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->net_in, c->net_out); /* the session owns them now */
    SSL_set_connect_state(c->ssl);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1
              : (SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
                 X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1))
        return ZT_ENOMEM;
    return ZT_OK;
}

static void on_connected(uv_connect_t *r, int status)
{
    conn *c = r->data;
    zt_syslog *f = c->f;
    if (!f) return;
    if (status < 0) {
        drop(f, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (!f->tls)
        now_open(f);
    else if (tls_begin(f, c) != ZT_OK)
        drop(f, "cannot begin TLS: out of memory");
    else
        tls_handshake(f);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    zt_syslog *f = g->data;
    f->resolving = false;
    if (f->stopping) {
        uv_freeaddrinfo(ai);
        if (f->tick_closed) syslog_free(f);
        return;
    }
    conn *c = status == 0 && ai ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        uv_freeaddrinfo(ai);
        f->c = NULL;
        if (!f->down_said)
            zt__log(ZT_LOG_WARN, NULL, NULL, "audit.syslog: cannot find %s: %s",
                    f->srv->conf->audit_syslog_host,
                    status ? uv_strerror(status) : "out of memory");
        f->down_said = true;
        f->failures_total++;
        retry_later(f);
        return;
    }
    c->f = f;
    c->tcp.data = c->creq.data = c;
    f->c = c;
    f->sent = f->confirmed;
    f->connect_began = zt_now_ms();
    uv_tcp_init(f->srv->loop, &c->tcp);
    int rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connected);
    uv_freeaddrinfo(ai);
    if (rc != 0) drop(f, uv_strerror(rc));
}

static void connect_now(zt_syslog *f)
{
    if (f->c || f->resolving || f->stopping) return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    f->gai.data = f;
    if (uv_getaddrinfo(f->srv->loop, &f->gai, on_resolved, f->srv->conf->audit_syslog_host,
                       f->srv->conf->audit_syslog_port, &hints) == 0)
        f->resolving = true;
}

/* ---- the messages ----------------------------------------------------------------- */

typedef struct batch {
    zt_syslog *f;
    zt_buf *out;
    uint64_t through;
    int rc;
} batch;

static bool add_record(void *ud, uint64_t seq, uint64_t time_ms, int status, const char *json,
                       size_t jn)
{
    batch *b = ud;
    zt_syslog *f = b->f;
    /* the time's seconds, formatted once per second of records */
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (!time_ms) {
        snprintf(f->when, sizeof f->when, "-");
        f->when_secs = -1;
    } else if (secs != f->when_secs && gmtime_r(&secs, &tm)) {
        strftime(f->when, sizeof f->when, "%Y-%m-%dT%H:%M:%S", &tm);
        f->when_secs = secs;
    }
    int pri = f->srv->conf->audit_syslog_facility * 8 + (status >= 400 ? 4 : 5);
    char head[400];
    int hn = time_ms ? snprintf(head, sizeof head, "<%d>1 %s.%03dZ %s zhengtong %d audit - ", pri,
                                f->when, (int)(time_ms % 1000), f->host, f->pid)
                     : snprintf(head, sizeof head, "<%d>1 - %s zhengtong %d audit - ", pri, f->host,
                                f->pid);
    char len[24];
    int ln = snprintf(len, sizeof len, "%zu ", (size_t)hn + jn);
    int rc = zt__buf_append(b->out, len, (size_t)ln);
    if (rc == ZT_OK) rc = zt__buf_append(b->out, head, (size_t)hn);
    if (rc == ZT_OK) rc = zt__buf_append(b->out, json, jn);
    if (rc != ZT_OK) {
        b->rc = rc;
        return false;
    }
    b->through = seq;
    return b->out->len < SEND_MAX;
}

/* Write the next records after `sent`, if the connection is open and idle. */
static void pump(zt_syslog *f)
{
    conn *c = f->c;
    if (!c || !c->open || c->writing || f->stopping) return;
    zt_txn *t;
    if (zt__store_read_begin(f->srv->store, &t) != ZT_OK) return;
    c->out.len = 0;
    batch b = {f, &c->out, f->sent, ZT_OK};
    int rc = zt__audit_each(f->srv, t, f->sent + 1, RECS_MAX, add_record, &b);
    zt__store_end(f->srv->store, t, false);
    if (rc == ZT_OK) rc = b.rc;
    if (rc != ZT_OK) {
        /* a record that cannot be read is not passed over: audit verify says why */
        zt__log(ZT_LOG_ERROR, NULL, NULL,
                "audit.syslog: cannot read the records after #%llu: %s (run zhengtong audit "
                "verify); trying again in a minute",
                (unsigned long long)f->sent, zt_strerror(rc));
        drop(f, "a record could not be read");
        f->retry_at = zt_now_ms() + RETRY_MAX;
        return;
    }
    if (b.through == f->sent) return; /* nothing new */
    f->records_total += b.through - f->sent;
    int wrc;
    if (!c->ssl)
        wrc = send_raw(c, c->out.data, c->out.len, b.through);
    else if (SSL_write(c->ssl, c->out.data, (int)c->out.len) != (int)c->out.len)
        wrc = ZT_EIO;
    else
        wrc = tls_flush(c, b.through);
    if (wrc != ZT_OK) drop(f, "cannot write");
}

/* ---- the loop's side -------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    zt_syslog *f = t->data;
    int64_t now = zt_now_ms();
    if (f->c && !f->c->open && now - f->connect_began > CONNECT_MAX)
        drop(f, "no answer to the connection");
    if (!f->c && !f->resolving && now >= f->retry_at) connect_now(f);
    confirm(f);
    save(f);
    pump(f);
}

void zt__syslog_after_commit(zt_server *srv)
{
    if (srv->syslog) pump(srv->syslog);
}

/* A host name as RFC 5424 takes it (1 to 255 printable US-ASCII characters): the node's
 * name, or the machine's. */
static void host_name(const zt_conf *c, char out[256])
{
    const char *n = c->node_name;
    bool ok = n && n[0] && strlen(n) < 256;
    for (const char *p = n; ok && *p; p++) ok = *p > 32 && *p < 127;
    if (ok) {
        snprintf(out, 256, "%s", n);
        return;
    }
    if (gethostname(out, 256) != 0 || !out[0]) snprintf(out, 256, "-");
    out[255] = 0;
}

/* tls://: the context every connection's session is made from: TLS 1.2 or later, the
 * collector's certificate checked against audit.syslog_ca (else the system's CAs), this
 * node's own certificate when one is set. A file that cannot be used stops the start. */
static int tls_context(const zt_conf *c, SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *what = NULL, *file = NULL;
    int line = c->audit_syslog_line;
    struct stat st;
    char mode[4200] = "";
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        what = "cannot make a TLS context";
    } else if (c->audit_syslog_ca
                   ? SSL_CTX_load_verify_locations(ctx, c->audit_syslog_ca, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        what = "cannot read the CA certificates that vouch for the collector from";
        file = c->audit_syslog_ca ? c->audit_syslog_ca : "the system's store";
        line = c->audit_syslog_ca ? c->audit_syslog_ca_line : line;
    } else if (c->audit_syslog_cert &&
               SSL_CTX_use_certificate_chain_file(ctx, c->audit_syslog_cert) != 1) {
        what = "cannot read the node's certificate from", file = c->audit_syslog_cert;
        line = c->audit_syslog_cert_line;
    } else if (c->audit_syslog_key && stat(c->audit_syslog_key, &st) == 0 && (st.st_mode & 077)) {
        /* as the master key's: a private key others can read is another's to use */
        snprintf(mode, sizeof mode, " (mode %04o): run `chmod 600 %s`",
                 (unsigned)(st.st_mode & 07777), c->audit_syslog_key);
        what = "the node's private key may be read by group or others:";
        file = c->audit_syslog_key;
        line = c->audit_syslog_cert_line;
    } else if (c->audit_syslog_key &&
               SSL_CTX_use_PrivateKey_file(ctx, c->audit_syslog_key, SSL_FILETYPE_PEM) != 1) {
        bool other = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        what = other ? "the private key is not the certificate's:"
                     : "cannot read the node's private key from";
        file = c->audit_syslog_key;
        line = c->audit_syslog_cert_line;
    } else if (c->audit_syslog_key && SSL_CTX_check_private_key(ctx) != 1) {
        what = "the private key is not the certificate's:", file = c->audit_syslog_key;
        line = c->audit_syslog_cert_line;
    }
    if (!what) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        *out = ctx;
        return ZT_OK;
    }
    unsigned long e = ERR_peek_last_error();
    const char *why = e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "failed";
    if (mode[0])
        snprintf(err, errlen, "%s:%d: audit.syslog: %s %s%s", c->file, line, what, file, mode);
    else
        snprintf(err, errlen, "%s:%d: audit.syslog: %s%s%s (%s)", c->file, line, what,
                 file ? " " : "", file ? file : "", why);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return ZT_EINVAL;
}

int zt__syslog_check(const zt_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    int rc = c->audit_syslog_tls ? tls_context(c, &ctx, err, errlen) : ZT_OK;
    SSL_CTX_free(ctx);
    return rc;
}

int zt__syslog_start(zt_server *srv, char *err, size_t errlen)
{
    const zt_conf *c = srv->conf;
    if (!c->audit_syslog_host || srv->check_only || srv->lua_tests) return ZT_OK;
    zt_syslog *f = calloc(1, sizeof *f);
    if (!f) return ZT_ENOMEM;
    f->srv = srv;
    f->pid = (int)getpid();
    f->retry_ms = TICK_MS;
    host_name(c, f->host);
    if (c->audit_syslog_tls) {
        int trc = tls_context(c, &f->tls, err, errlen);
        if (trc != ZT_OK) {
            free(f);
            return trc;
        }
    }
    zt_txn *t;
    uint64_t head = 0;
    f->meta = zt__core_meta(srv);
    int rc = zt__store_read_begin(srv->store, &t);
    if (rc == ZT_OK) {
        rc = zt__syslog_confirmed(srv, t, &f->confirmed);
        if (rc == ZT_ENOTFOUND && (rc = zt__audit_head(srv, t, &head)) == ZT_OK) {
            /* the first start that sends: the whole log, from its beginning (the collector
             * is to hold every record the node does) */
            f->confirmed = 0;
            f->saved = UINT64_MAX;
            zt__log(ZT_LOG_INFO, NULL, NULL,
                    "audit.syslog: sending the audit log to %s:%s from its beginning (%llu "
                    "records so far)",
                    c->audit_syslog_host, c->audit_syslog_port, (unsigned long long)head);
        } else {
            f->saved = f->confirmed;
        }
        zt__store_end(srv->store, t, false);
    }
    if (rc != ZT_OK) {
        snprintf(err, errlen, "audit.syslog: cannot read where sending stopped: %s",
                 zt_strerror(rc));
        SSL_CTX_free(f->tls);
        free(f);
        return rc;
    }
    f->sent = f->confirmed;
    save(f);
    uv_timer_init(srv->loop, &f->tick);
    f->tick.data = f;
    uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&f->tick);
    srv->syslog = f;
    connect_now(f);
    return ZT_OK;
}

static void syslog_free(zt_syslog *f)
{
    SSL_CTX_free(f->tls); /* a session still closing holds its own reference */
    free(f);
}

static void on_tick_closed(uv_handle_t *h)
{
    zt_syslog *f = h->data;
    f->tick_closed = true;
    if (!f->resolving) syslog_free(f); /* else when the resolver is over (on_resolved) */
}

void zt__syslog_stop(zt_server *srv)
{
    zt_syslog *f = srv->syslog;
    if (!f) return;
    confirm(f);
    save(f);
    f->stopping = true;
    if (f->resolving) uv_cancel((uv_req_t *)&f->gai);
    drop(f, "stopping");
    srv->syslog = NULL;
    uv_close((uv_handle_t *)&f->tick, on_tick_closed);
}

int zt__syslog_metrics(zt_server *srv, zt_buf *out)
{
    zt_syslog *f = srv->syslog;
    if (!f) return ZT_OK;
    uint64_t head = f->confirmed;
    zt_txn *t;
    if (zt__store_read_begin(srv->store, &t) == ZT_OK) {
        zt__audit_head(srv, t, &head);
        zt__store_end(srv->store, t, false);
    }
    return zt__buf_printf(
        out,
        "# HELP zt_audit_syslog_connected Whether the log collector (audit.syslog) is connected.\n"
        "# TYPE zt_audit_syslog_connected gauge\n"
        "zt_audit_syslog_connected %d\n"
        "# HELP zt_audit_syslog_lag_records Audit records the collector has not acknowledged.\n"
        "# TYPE zt_audit_syslog_lag_records gauge\n"
        "zt_audit_syslog_lag_records %llu\n"
        "# HELP zt_audit_syslog_confirmed_seq The last audit record the collector acknowledged.\n"
        "# TYPE zt_audit_syslog_confirmed_seq gauge\n"
        "zt_audit_syslog_confirmed_seq %llu\n"
        "# HELP zt_audit_syslog_records_total Audit records written to the collector (again after "
        "a broken connection).\n"
        "# TYPE zt_audit_syslog_records_total counter\n"
        "zt_audit_syslog_records_total %llu\n"
        "# HELP zt_audit_syslog_connects_total Connections made to the collector.\n"
        "# TYPE zt_audit_syslog_connects_total counter\n"
        "zt_audit_syslog_connects_total %llu\n"
        "# HELP zt_audit_syslog_failures_total Connections to the collector lost or not made.\n"
        "# TYPE zt_audit_syslog_failures_total counter\n"
        "zt_audit_syslog_failures_total %llu\n",
        f->c && f->c->open ? 1 : 0,
        (unsigned long long)(head > f->confirmed ? head - f->confirmed : 0),
        (unsigned long long)f->confirmed, (unsigned long long)f->records_total,
        (unsigned long long)f->connects_total, (unsigned long long)f->failures_total);
}
