/* audit.c: the append-only, hash-chained audit log of every change, and its verification. */
#include "core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/*
 * The head of the chain is always read from the writing transaction itself (the last
 * key), never from memory: so a rolled-back request, a lost batch, or another process
 * appending (the offline `zhengtong admin`) can never fork the chain.
 *
 * A record is stored under its sequence number (8 bytes, big-endian) as
 *     hash[32] | prev[32] | json
 * where hash = BLAKE2b-256(prev | json) and prev is the hash of the record before (zeros
 * for the first). The json holds the sequence number again, so a record moved to another
 * key is caught; the stored hash catches a change to the record itself; the chain of prev
 * catches a record deleted or inserted. Signed checkpoints (checkpoint.c) pin the head.
 */

#define HDR 64

struct zt_audit {
    zt_db *log;
    zt_db *cps;        /* checkpoints: seq → {seq, hash, time, signature} */
    uint64_t cp_seq;   /* the last checkpoint's sequence number */
    uint64_t since_cp; /* records appended by this process since (a hint for when) */
    uv_timer_t timer;  /* checkpoints the head every interval if it moved */
    zt_server *srv;
    zt_buf queue; /* records of the open batch, each its fields NUL-terminated in a row */
    size_t nqueued;
    size_t last_at; /* where the last queued record begins */
};

static void chain_hash(const unsigned char prev[32], const void *json, size_t len,
                       unsigned char out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, prev, 32);
    crypto_generichash_update(&st, json, len);
    crypto_generichash_final(&st, out, 32);
}

int zt__audit_open(zt_server *srv, char *err, size_t errlen)
{
    zt_audit *a = calloc(1, sizeof(*a));
    if (!a) return ZT_ENOMEM;
    srv->audit = a;
    a->srv = srv;
    int rc = zt__store_db(srv->store, "_core", "audit", &a->log);
    if (rc == ZT_OK) rc = zt__store_db(srv->store, "_core", "audit_checkpoints", &a->cps);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot open the audit log: %s", zt_strerror(rc));
        return rc;
    }
    zt_txn *t;
    if ((rc = zt__store_read_begin(srv->store, &t)) != ZT_OK) return rc;
    zt_kv kv;
    rc = zt__db_edge(t, a->cps, ZT_LAST, &kv);
    if (rc == ZT_OK && kv.klen == 8) a->cp_seq = zt__be64_get(kv.key);
    zt__store_end(srv->store, t, false);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* The last record in t: its sequence number and hash (0 and zeros for an empty log). */
static int head_in(zt_audit *a, zt_txn *t, uint64_t *seq, unsigned char hash[32])
{
    zt_kv kv;
    *seq = 0;
    memset(hash, 0, 32);
    int rc = zt__db_edge(t, a->log, ZT_LAST, &kv);
    if (rc == ZT_OK && (kv.klen != 8 || kv.vlen <= HDR)) return ZT_EIO;
    if (rc == ZT_OK) {
        *seq = zt__be64_get(kv.key);
        memcpy(hash, kv.val, 32);
    }
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void zt__audit_close(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (!a) return;
    srv->audit = NULL;
    zt__buf_free(&a->queue);
    if (a->timer.loop) {
        a->timer.data = a;
        uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    } else {
        free(a);
    }
}

static int checkpoint_message(char *out, size_t cap, uint64_t seq, const unsigned char hash[32],
                              int64_t time)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    int n = snprintf(out, cap, "zhengtong-audit-checkpoint-v1\n%llu\n%s\n%lld",
                     (unsigned long long)seq, hex, (long long)time);
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* Sign the committed head in a batch of its own (called between batches). */
int zt__audit_checkpoint(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (!a || zt__store_batch_open(srv->store)) return ZT_OK;
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc != ZT_OK) return rc;
    uint64_t seq;
    unsigned char hash[32];
    if ((rc = head_in(a, t, &seq, hash)) != ZT_OK || seq == a->cp_seq) {
        zt__store_end(srv->store, t, false);
        zt__store_batch_commit(srv->store); /* nothing was written: an empty commit */
        return rc;
    }
    int64_t now = zt_now_ms();
    char msg[256], hex[65], sigb[ZT__B64URL_LEN(64)];
    unsigned char sig[64], key[8];
    checkpoint_message(msg, sizeof msg, seq, hash, now);
    rc = zt__node_sign(srv, t, msg, strlen(msg), sig);
    if (rc == ZT_OK) {
        sodium_bin2hex(hex, sizeof hex, hash, 32);
        zt__b64url_encode(sigb, sig, 64);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)seq);
        cJSON_AddStringToObject(o, "hash", hex);
        cJSON_AddNumberToObject(o, "time", (double)now);
        cJSON_AddStringToObject(o, "signature", sigb);
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        zt__be64_put(key, seq);
        rc = text ? zt_put(t, a->cps, key, 8, text, strlen(text)) : ZT_ENOMEM;
        cJSON_free(text);
    }
    int erc = zt__store_end(srv->store, t, rc == ZT_OK);
    if (rc == ZT_OK) rc = erc;
    if (rc == ZT_OK)
        rc = zt__store_batch_commit(srv->store);
    else if (zt__store_batch_open(srv->store))
        zt__store_batch_commit(srv->store);
    if (rc == ZT_OK) {
        a->cp_seq = seq;
        a->since_cp = 0;
    } else
        zt__log(ZT_LOG_ERROR, NULL, NULL, "audit: cannot write a checkpoint: %s", zt_strerror(rc));
    return rc;
}

void zt__audit_after_commit(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (a && a->since_cp >= srv->conf->audit_checkpoint_every) zt__audit_checkpoint(srv);
}

static void on_timer(uv_timer_t *t)
{
    zt_audit *a = t->data;
    zt__audit_checkpoint(a->srv);
}

void zt__audit_start(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (!srv->conf->audit_checkpoint_ms) return; /* 0: by count only */
    uv_timer_init(srv->loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_timer, srv->conf->audit_checkpoint_ms,
                   srv->conf->audit_checkpoint_ms);
    uv_unref((uv_handle_t *)&a->timer);
}

/* Append one record after (*seq, prev), which then become the new head. b is a scratch
 * buffer reused across the records of a batch. This runs for every change: no printf. */
static int append_after(zt_audit *a, zt_txn *t, uint64_t *seq, unsigned char prev[32],
                        const zt_audit_entry *e, zt_buf *b)
{
    b->len = 0;
    int rc = zt__buf_append(b, prev, 32); /* room for the hash, filled below */
    rc |= zt__buf_append(b, prev, 32);
    rc |= zt__buf_puts(b, "{\"seq\":");
    rc |= zt__buf_u64(b, *seq + 1);
    rc |= zt__buf_puts(b, ",\"time\":");
    rc |= zt__buf_u64(b, (uint64_t)zt_now_ms());
    static const char *const names[] = {
        ",\"actor\":",  ",\"actor_login\":", ",\"plugin\":", ",\"action\":",
        ",\"object\":", ",\"request_id\":",  ",\"client\":"};
    const char *vals[] = {e->actor ? e->actor : "anonymous",
                          e->actor_login,
                          e->plugin ? e->plugin : "core",
                          e->action ? e->action : "",
                          e->object ? e->object : "",
                          e->request_id,
                          e->client};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!vals[i]) continue;
        rc |= zt__buf_puts(b, names[i]);
        rc |= zt__buf_json_str(b, vals[i], strlen(vals[i]));
    }
    if (e->status > 0) {
        rc |= zt__buf_puts(b, ",\"status\":");
        rc |= zt__buf_u64(b, (uint64_t)e->status);
    }
    rc |= zt__buf_puts(b, "}");
    if (rc != ZT_OK) return ZT_ENOMEM;
    unsigned char *val = (unsigned char *)b->data;
    chain_hash(prev, val + HDR, b->len - HDR, val);
    unsigned char key[8];
    zt__be64_put(key, *seq + 1);
    /* The log only grows at its end: LMDB's append path, no search. */
    if ((rc = zt__store_append(t, a->log, key, 8, val, b->len)) != ZT_OK) return rc;
    (*seq)++;
    memcpy(prev, val, 32);
    a->since_cp++;
    return ZT_OK;
}

int zt__audit_append(zt_server *srv, zt_txn *t, const zt_audit_entry *e)
{
    zt_audit *a = srv->audit;
    uint64_t seq;
    unsigned char prev[32];
    int rc = head_in(a, t, &seq, prev);
    if (rc != ZT_OK) return rc;
    zt_buf b = {0};
    rc = append_after(a, t, &seq, prev, e, &b);
    zt__buf_free(&b);
    return rc;
}

int zt__audit_verify(zt_txn *t, zt_db *log, zt_audit_report *r)
{
    memset(r, 0, sizeof(*r));
    zt_cursor *c;
    int rc = zt_cursor_open(t, log, &c);
    if (rc != ZT_OK) return rc;
    unsigned char prev[32] = {0}, h[32];
    uint64_t expect = 1;
    zt_kv kv;
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), expect++) {
        const unsigned char *v = kv.val;
        const char *why = NULL;
        uint64_t seq = kv.klen == 8 ? zt__be64_get(kv.key) : 0;
        if (kv.klen != 8 || seq != expect) {
            why = seq > expect ? "a record is missing before this one" : "bad sequence number";
            if (seq > expect) seq = expect;
        } else if (kv.vlen <= HDR) {
            why = "the record is truncated";
        } else {
            chain_hash(v + 32, v + HDR, kv.vlen - HDR, h);
            cJSON *o = cJSON_ParseWithLength((const char *)v + HDR, kv.vlen - HDR);
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seq");
            if (sodium_memcmp(h, v, 32) != 0)
                why = "the record's content does not match its hash";
            else if (!cJSON_IsNumber(s) || (uint64_t)s->valuedouble != seq)
                why = "the record belongs at another place in the log";
            else if (sodium_memcmp(prev, v + 32, 32) != 0)
                why = "the record does not follow the record before it";
            cJSON_Delete(o);
        }
        if (why) {
            r->first_bad = seq ? seq : expect;
            snprintf(r->reason, sizeof r->reason, "%s", why);
            break;
        }
        memcpy(prev, v, 32);
        r->records++;
        r->last_seq = seq;
        memcpy(r->last_hash, prev, 32);
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND || rc == ZT_OK ? ZT_OK : rc;
}

int zt__audit_verify_checkpoints(zt_server *srv, zt_txn *t, zt_audit_report *r)
{
    zt_audit *a = srv->audit;
    unsigned char pk[32];
    zt_cursor *c;
    int rc = zt_cursor_open(t, a->cps, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    bool have_pk = false;
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        if (!have_pk) {
            if (zt__node_pubkey(srv, t, pk) != ZT_OK) break;
            have_pk = true;
        }
        uint64_t seq = kv.klen == 8 ? zt__be64_get(kv.key) : 0;
        cJSON *o = cJSON_ParseWithLength(kv.val, kv.vlen);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hash");
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "time");
        const cJSON *sg = cJSON_GetObjectItemCaseSensitive(o, "signature");
        unsigned char hash[32], sig[64], key[8];
        size_t n = 0, m = 0;
        char msg[256];
        const char *why = NULL;
        const void *rv;
        size_t rvl;
        zt__be64_put(key, seq);
        if (!cJSON_IsString(h) || !cJSON_IsNumber(tm) || !cJSON_IsString(sg) ||
            zt__hex_decode(hash, 32, h->valuestring, strlen(h->valuestring), &n) != ZT_OK ||
            n != 32 ||
            zt__b64url_decode(sig, 64, sg->valuestring, strlen(sg->valuestring), &m) != ZT_OK ||
            m != 64)
            why = "a checkpoint is damaged";
        else if (checkpoint_message(msg, sizeof msg, seq, hash, (int64_t)tm->valuedouble) < 0 ||
                 zt_seal_verify(pk, msg, strlen(msg), sig) != ZT_OK)
            why = "a checkpoint's signature is not the node's";
        else if (zt_get(t, a->log, key, 8, &rv, &rvl) != ZT_OK || rvl < HDR ||
                 sodium_memcmp(rv, hash, 32) != 0)
            why = "the log does not match its signed checkpoint here";
        cJSON_Delete(o);
        if (why && (!r->first_bad || seq < r->first_bad)) {
            r->first_bad = seq;
            snprintf(r->reason, sizeof r->reason, "%s", why);
        }
        if (why) break;
        r->checkpoints++;
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND || rc == ZT_OK ? ZT_OK : rc;
}

zt_db *zt__audit_db(zt_server *srv)
{
    return srv->audit->log;
}

void zt_audit_note(zt_req *req, const char *action, const char *object)
{
    if (action) req->audit_action = zt__arena_strndup(&req->arena, action, strlen(action));
    if (object) req->audit_object = zt__arena_strndup(&req->arena, object, strlen(object));
}

/* A queued record is its fields one after the other, each NUL-terminated, in the order
 * of zt_audit_entry (a missing one empty), then the status as text. */
#define NFIELDS 7

/* Queue one record: the fields of zt_audit_entry in f (action NULL: "<verb> <what>"). */
static int enqueue(zt_audit *a, const char *const f[NFIELDS], const char *verb, const char *what,
                   int status)
{
    size_t at = a->queue.len;
    int rc = ZT_OK;
    for (size_t i = 0; i < NFIELDS && rc == ZT_OK; i++) {
        if (!f[i]) { /* this runs for every change: no printf */
            rc = zt__buf_puts(&a->queue, verb);
            rc |= zt__buf_append(&a->queue, " ", 1);
            rc |= zt__buf_append(&a->queue, what, strlen(what) + 1);
        } else {
            rc = zt__buf_append(&a->queue, f[i], strlen(f[i]) + 1);
        }
    }
    if (rc == ZT_OK) rc = zt__buf_u64(&a->queue, (uint64_t)(status > 0 ? status : 0));
    if (rc == ZT_OK) rc = zt__buf_append(&a->queue, "", 1);
    if (rc != ZT_OK) {
        a->queue.len = at;
        return rc;
    }
    a->last_at = at;
    a->nqueued++;
    return ZT_OK;
}

int zt__audit_queue(zt_server *srv, zt_req *req)
{
#ifdef ZT_BENCH_NO_AUDIT
    (void)srv, (void)req, (void)enqueue;
    return ZT_OK; /* the benchmark build that measures what the audit log costs */
#endif
    const zt__route *rt = req->match.route; /* NULL for a job: then method and path */
    const char *f[NFIELDS] = {
        req->caller ? req->caller->id : "",
        req->caller && req->caller->login ? req->caller->login : "",
        zt__req_plugin(req) ? zt__req_plugin(req)->name : "core",
        req->audit_action, /* NULL: "<method> <route>" */
        req->audit_object ? req->audit_object : req->path,
        req->id,
        zt_req_client(req),
    };
    return enqueue(srv->audit, f, req->method, rt ? rt->pattern : req->path, req->status);
}

int zt__audit_queue_entry(zt_server *srv, const zt_audit_entry *e, const char *verb)
{
#ifdef ZT_BENCH_NO_AUDIT
    (void)srv, (void)e, (void)verb;
    return ZT_OK;
#endif
    const char *f[NFIELDS] = {
        e->actor ? e->actor : "",       e->actor_login ? e->actor_login : "",
        e->plugin ? e->plugin : "core", verb ? NULL : e->action ? e->action : "",
        e->object ? e->object : "",     e->request_id ? e->request_id : "",
        e->client ? e->client : ""};
    return enqueue(srv->audit, f, verb, e->action ? e->action : "", e->status);
}

void zt__audit_mark(const zt_server *srv, zt__audit_pos *pos)
{
    pos->len = srv->audit ? srv->audit->queue.len : 0;
    pos->n = srv->audit ? srv->audit->nqueued : 0;
}

void zt__audit_rewind(zt_server *srv, const zt__audit_pos *pos)
{
    zt_audit *a = srv->audit;
    if (!a) return;
    assert(pos->n <= a->nqueued && pos->len <= a->queue.len);
    a->queue.len = pos->len;
    a->nqueued = pos->n;
}

void zt__audit_unqueue_last(zt_server *srv)
{
#ifdef ZT_BENCH_NO_AUDIT
    (void)srv;
    return; /* nothing was queued */
#endif
    zt_audit *a = srv->audit;
    assert(a->nqueued > 0);
    a->queue.len = a->last_at;
    a->nqueued--;
}

size_t zt__audit_queued(const zt_server *srv)
{
    return srv->audit ? srv->audit->nqueued : 0;
}

int zt__audit_flush(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (!a->nqueued) return ZT_OK;
    zt_txn *t = NULL;
    uint64_t seq = 0;
    unsigned char prev[32];
    zt_buf b = {0};
    /* In the batch itself: if a record cannot be written, the batch is lost whole (no
     * change without its record), so a nested transaction would roll back nothing. */
    int rc = zt__store_batch_write(srv->store, &t);
    if (rc == ZT_OK) rc = head_in(a, t, &seq, prev); /* once: the batch's records follow */
    const char *p = a->queue.data;
    for (size_t n = 0; rc == ZT_OK && n < a->nqueued; n++) {
        const char *f[NFIELDS + 1];
        for (size_t i = 0; i <= NFIELDS; i++) {
            f[i] = p;
            p += strlen(p) + 1;
        }
        zt_audit_entry e = {.actor = f[0][0] ? f[0] : NULL,
                            .actor_login = f[1][0] ? f[1] : NULL,
                            .plugin = f[2],
                            .action = f[3],
                            .object = f[4],
                            .request_id = f[5],
                            .client = f[6],
                            .status = atoi(f[7])};
        rc = append_after(a, t, &seq, prev, &e, &b);
    }
    zt__buf_free(&b);
    if (t) {
        int erc = zt__store_end(srv->store, t, rc == ZT_OK);
        if (rc == ZT_OK) rc = erc;
    }
    a->queue.len = 0;
    a->nqueued = 0;
    return rc;
}

/* ---- HTTP ------------------------------------------------------------------------ */

static int h_verify(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    zt_audit_report r;
    int rc = zt__audit_verify(t, srv->audit->log, &r);
    if (rc == ZT_OK) rc = zt__audit_verify_checkpoints(srv, t, &r);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", r.first_bad == 0);
    cJSON_AddNumberToObject(o, "records", (double)r.records);
    cJSON_AddNumberToObject(o, "checkpoints", (double)r.checkpoints);
    if (r.first_bad) {
        cJSON_AddNumberToObject(o, "first_bad", (double)r.first_bad);
        cJSON_AddStringToObject(o, "reason", r.reason);
    } else {
        cJSON_AddNullToObject(o, "first_bad");
    }
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, r.last_hash, 32);
    cJSON_AddStringToObject(o, "head", hex);
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static bool match_str(const cJSON *o, const char *k, const char *want)
{
    if (!want) return true;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

static int h_list(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    const char *actor = zt_req_query(req, "actor"), *plugin = zt_req_query(req, "plugin");
    const char *object = zt_req_query(req, "object"), *from = zt_req_query(req, "from");
    const char *to = zt_req_query(req, "to"), *after = zt_req_query(req, "after");
    const char *lim = zt_req_query(req, "limit");
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 50;
    if ((lim && *end) || limit < 1 || limit > 1000)
        return zt_problem(req, 400, "invalid-query", NULL, "limit: 1 to 1000");
    double tfrom = from ? strtod(from, NULL) : 0, tto = to ? strtod(to, NULL) : 1e300;
    uint64_t start = after ? strtoull(after, NULL, 10) + 1 : 1;
    zt_txn *t = zt_req_txn(req);
    zt_cursor *c;
    if (!t || zt_cursor_open(t, srv->audit->log, &c) != ZT_OK) return ZT_EIO;
    unsigned char key[8];
    zt__be64_put(key, start);
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    long n = 0;
    uint64_t last = 0;
    zt_kv kv;
    /* A scan bounded in records examined, so a filter that matches little cannot hold
     * the loop: the client continues from `next`. */
    long examined = 0;
    int rc;
    for (rc = zt_cursor_seek(c, ZT_GE, key, 8, &kv); rc == ZT_OK && n < limit && examined < 100000;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), examined++) {
        last = kv.klen == 8 ? zt__be64_get(kv.key) : last;
        if (kv.vlen <= HDR) continue;
        cJSON *r = cJSON_ParseWithLength((const char *)kv.val + HDR, kv.vlen - HDR);
        if (!r) continue;
        double tm = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "time"));
        if (match_str(r, "actor", actor) && match_str(r, "plugin", plugin) &&
            match_str(r, "object", object) && tm >= tfrom && tm < tto) {
            char hex[65];
            sodium_bin2hex(hex, sizeof hex, kv.val, 32);
            cJSON_AddStringToObject(r, "hash", hex);
            cJSON_AddItemToArray(items, r);
            n++;
        } else {
            cJSON_Delete(r);
        }
    }
    zt_cursor_close(c);
    if (rc == ZT_OK)
        cJSON_AddStringToObject(o, "next", zt_req_printf(req, "%llu", (unsigned long long)last));
    else
        cJSON_AddNullToObject(o, "next");
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

int zt__audit_routes(zt_server *srv, char *err, size_t errlen)
{
    zt_route v = {.method = "GET",
                  .path = "/audit/verify",
                  .handler = h_verify,
                  .ud = srv,
                  .role = "auditor",
                  .summary = "Recompute the audit chain; the first bad record"};
    zt_route l = {.method = "GET",
                  .path = "/audit",
                  .handler = h_list,
                  .ud = srv,
                  .role = "auditor",
                  .summary = "Audit records (actor, plugin, object, from, to, after, limit)"};
    int rc = zt__router_add(srv->router, NULL, &v, err, errlen);
    return rc ? rc : zt__router_add(srv->router, NULL, &l, err, errlen);
}
