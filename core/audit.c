/* audit.c: the append-only, hash-chained audit log of every change, and its verification. */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

/*
 * The head of the chain is always read from the writing transaction itself (the last
 * key), never from memory: so a rolled-back request, a lost batch, or another process
 * appending (the offline `zhengtong admin`) can never fork the chain.
 *
 * A record is
 *     len u32 | hash[32] | prev[32] | body            (len: the bytes after it)
 *     body = 0x02 | seq u64 | time u64 | status u16 | 7 × (varint n, n bytes)
 * integers big-endian, the seven fields those of zt_audit_entry in order (empty: none),
 * hash = BLAKE2b-256(prev | body), prev the hash of the record before (zeros for the
 * first). The body holds the sequence number, so a record moved elsewhere is caught; the
 * stored hash catches a change to the record itself; the chain of prev catches a record
 * deleted, inserted or reordered. Signed checkpoints pin the head.
 *
 * The records of one batch are stored together, in one value under the first one's
 * sequence number (8 bytes) and the format byte 0x02: one LMDB append per batch, not per
 * change. A batch is built in that form as its changes are made (the queue), so at
 * commit the record needs only its sequence number, time and hash filled in.
 *
 * Logs written before this format (zhengtong 0.1, up to November 2026) keep their records
 * one per key (8 bytes) as hash[32] | prev[32] | JSON; they are read and verified as
 * before, and the first new record chains to the last of them.
 */

#define HDR         64                    /* hash | prev */
#define FMT         0x02                  /* the body's first byte (and the key's ninth) */
#define FIXED       (1 + 8 + 8 + 2)       /* format, seq, time, status */
#define REC_MIN     (4 + HDR + FIXED + 7) /* the smallest record: seven empty fields */
#define VALUE_SPLIT (32u * 1024)          /* a batch's value ends after this many bytes */

typedef struct zt_audit_rec {
    uint64_t seq;
    const unsigned char *hash, *prev;
    const unsigned char *body; /* prev | body is what hash covers (they are adjacent) */
    size_t blen;
    bool v1; /* body is the JSON of the old format */
} zt_audit_rec;

struct zt_audit {
    zt_db *log;
    zt_db *cps; /* checkpoints: seq → {seq, hash, time, prev, every, signature} */
    /* "a" → seq u64 | hash[32] | signature[64]: the last record pruned (archived), and the
     * node's signature that it is where the log begins */
    zt_db *anchor;
    uv_timer_t timer; /* checkpoints the head every interval if it moved */
    zt_server *srv;
    zt_buf queue; /* the open batch's records, already in their stored form */
    size_t nqueued;
    size_t last_at;       /* where the last queued record begins */
    uint64_t cp_failures; /* checkpoints not signed or not written, since the start */
    /* the `every` of the last checkpoint read, and that checkpoint as stored: every batch
     * looks the last checkpoint up, and parses it only when it is another */
    uint64_t cp_read_every;
    unsigned char cp_read[512];
    size_t cp_read_len; /* 0: none */
};

/* hash = BLAKE2b-256(prev | body): the two are adjacent in a stored record. */
static void chain_hash(const unsigned char *prev_body, size_t len, unsigned char out[32])
{
    crypto_generichash(out, 32, prev_body, len, NULL, 0);
}

int zt__audit_open(zt_server *srv, char *err, size_t errlen)
{
    zt_audit *a = calloc(1, sizeof(*a));
    if (!a) return ZT_ENOMEM;
    srv->audit = a;
    a->srv = srv;
    int rc = zt__store_db(srv->store, "_core", "audit", &a->log);
    if (rc == ZT_OK) rc = zt__store_db(srv->store, "_core", "audit_checkpoints", &a->cps);
    if (rc == ZT_OK) rc = zt__store_db(srv->store, "_core", "audit_anchor", &a->anchor);
    if (rc != ZT_OK) snprintf(err, errlen, "cannot open the audit log: %s", zt_strerror(rc));
    return rc;
}

static uint32_t be32_get(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void be32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static bool is_v2_key(const zt_kv *kv)
{
    return kv->klen == 9 && ((const unsigned char *)kv->key)[8] == FMT;
}

/* The record of the stored value kv that begins at *off, which then moves past it.
 * ZT_ENOTFOUND after the last one; ZT_EIO if the value is not records. */
static int rec_next(const zt_kv *kv, size_t *off, zt_audit_rec *r)
{
    const unsigned char *v = kv->val;
    if (*off >= kv->vlen) return ZT_ENOTFOUND;
    memset(r, 0, sizeof *r);
    if (kv->klen == 8) { /* the old format: one record per key */
        if (kv->vlen <= HDR) return ZT_EIO;
        r->v1 = true;
        r->seq = zt__be64_get(kv->key);
        r->hash = v, r->prev = v + 32, r->body = v + HDR, r->blen = kv->vlen - HDR;
        *off = kv->vlen;
        return ZT_OK;
    }
    if (!is_v2_key(kv) || kv->vlen - *off < REC_MIN) return ZT_EIO;
    size_t n = be32_get(v + *off);
    if (n < REC_MIN - 4 || n > kv->vlen - *off - 4 || v[*off + 4 + HDR] != FMT) return ZT_EIO;
    r->hash = v + *off + 4, r->prev = r->hash + 32, r->body = r->hash + HDR;
    r->blen = n - HDR;
    r->seq = zt__be64_get(r->body + 1);
    *off += 4 + n;
    return ZT_OK;
}

/* A record's fields (a new-format body), not NUL-terminated. */
typedef struct rec_fields {
    uint64_t time; /* the seq is the record's (rec_next reads it) */
    int status;
    const char *f[7];
    size_t n[7];
} rec_fields;

static const char *const field_names[7] = {"actor",  "actor_login", "plugin", "action",
                                           "object", "request_id",  "client"};

static int varint_get(const unsigned char **p, const unsigned char *end, size_t *out)
{
    size_t v = 0;
    for (int shift = 0; *p < end && shift < 35; shift += 7) {
        unsigned char c = *(*p)++;
        v |= (size_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return ZT_OK;
        }
    }
    return ZT_EIO;
}

static int fields_decode(const zt_audit_rec *r, rec_fields *o)
{
    const unsigned char *p = r->body, *end = r->body + r->blen;
    if (r->v1 || r->blen < FIXED || p[0] != FMT) return ZT_EIO;
    o->time = zt__be64_get(p + 9);
    o->status = p[17] << 8 | p[18];
    p += FIXED;
    for (int i = 0; i < 7; i++) {
        if (varint_get(&p, end, &o->n[i]) != ZT_OK || o->n[i] > (size_t)(end - p)) return ZT_EIO;
        o->f[i] = (const char *)p;
        p += o->n[i];
    }
    return p == end ? ZT_OK : ZT_EIO;
}

#define ANCHOR_LEN 104 /* seq | hash | signature */

/* Where the log in t begins: after the last record pruned into an archive (its sequence
 * number and hash), or after nothing (0 and zeros). The node's signature of it goes to sig
 * (when not NULL; zeros if it has none). */
static int anchor_read(zt_audit *a, zt_txn *t, uint64_t *seq, unsigned char hash[32],
                       unsigned char sig[64])
{
    *seq = 0;
    memset(hash, 0, 32);
    if (sig) memset(sig, 0, 64);
    const void *v;
    size_t vl;
    int rc = zt_get(t, a->anchor, "a", 1, &v, &vl);
    if (rc == ZT_ENOTFOUND) return ZT_OK;
    if (rc != ZT_OK) return rc;
    if (vl != 40 && vl != ANCHOR_LEN) return ZT_EIO; /* 40: written before it was signed */
    *seq = zt__be64_get(v);
    memcpy(hash, (const unsigned char *)v + 8, 32);
    if (sig && vl == ANCHOR_LEN) memcpy(sig, (const unsigned char *)v + 40, 64);
    return ZT_OK;
}

static int anchor_get(zt_audit *a, zt_txn *t, uint64_t *seq, unsigned char hash[32])
{
    return anchor_read(a, t, seq, hash, NULL);
}

/* The last record in t: its sequence number and hash (the anchor's for an empty log). */
static int head_in(zt_audit *a, zt_txn *t, uint64_t *seq, unsigned char hash[32])
{
    zt_kv kv;
    *seq = 0;
    memset(hash, 0, 32);
    int rc = zt__db_edge(t, a->log, ZT_LAST, &kv);
    if (rc == ZT_ENOTFOUND) return anchor_get(a, t, seq, hash);
    if (rc != ZT_OK) return rc;
    zt_audit_rec r;
    size_t off = 0;
    bool any = false;
    while ((rc = rec_next(&kv, &off, &r)) == ZT_OK) {
        *seq = r.seq;
        memcpy(hash, r.hash, 32);
        any = true;
    }
    return rc == ZT_ENOTFOUND && any ? ZT_OK : ZT_EIO;
}

/* Put c on the stored value that holds record seq (exact) or the first record from seq on
 * (!exact: a record missing from a value is passed over), with *off where that record
 * begins in *kv. */
static int seek_record(zt_cursor *c, uint64_t seq, bool exact, zt_kv *kv, size_t *off)
{
    unsigned char key[8];
    zt__be64_put(key, seq);
    *off = 0;
    int rc = zt_cursor_seek(c, ZT_GE, key, 8, kv);
    if (rc == ZT_OK && kv->klen >= 8 && zt__be64_get(kv->key) == seq) return ZT_OK;
    if (rc != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    zt_kv pv; /* in the value before, if anywhere */
    if (zt_cursor_seek(c, rc == ZT_OK ? ZT_PREV : ZT_LAST, NULL, 0, &pv) == ZT_OK) {
        zt_audit_rec r;
        for (size_t at = 0, next = 0; rec_next(&pv, &next, &r) == ZT_OK; at = next) {
            if (exact ? r.seq == seq : r.seq >= seq) {
                *kv = pv, *off = at;
                return ZT_OK;
            }
        }
    }
    return exact ? ZT_ENOTFOUND : zt_cursor_seek(c, ZT_GE, key, 8, kv); /* from the next */
}

int zt__audit_locate(zt_txn *t, zt_db *log, uint64_t seq, zt_kv *kv, size_t *off)
{
    zt_cursor *c;
    int rc = zt_cursor_open(t, log, &c);
    if (rc != ZT_OK) return rc;
    rc = seek_record(c, seq, true, kv, off);
    zt_cursor_close(c);
    return rc;
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

/* What the node signs: this header, then the sequence number, the hash in hex, the time in
 * ms, the checkpoint before it and the checkpoint_every it was signed under, one per line
 * (GET /audit/checkpoints shows the same with placeholders). Checkpoints signed before
 * prev and every existed (zhengtong 0.1 until November 2026) said only the first three,
 * under CP_HEADER_V1; they still verify, and bound nothing. */
#define CP_HEADER_V1 "zhengtong-audit-checkpoint-v1"
#define CP_HEADER    "zhengtong-audit-checkpoint-v2"
/* What the node signs when a pruning moves the log's beginning: seq and hash in hex. */
#define ANCHOR_HEADER "zhengtong-audit-beginning-v1"

static void anchor_message(char *out, size_t cap, uint64_t seq, const unsigned char hash[32])
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    snprintf(out, cap, ANCHOR_HEADER "\n%llu\n%s", (unsigned long long)seq, hex);
}

/* The record of a pruning (actor cli:…, plugin core): the records it removed, the archive
 * that holds them, and the hash of the last, where the log then begins. */
#define PRUNE_ACTION     "audit prune"
#define PRUNE_OBJECT     "records %llu..%llu, archive blake2b %s, last hash %s"
#define PRUNE_OBJECT_MAX 256

/*
 * Checkpoints are signed in the transaction of the records they sign (write_records): at
 * the record where the records since the last checkpoint reach audit.checkpoint_every, or
 * at the first record of a log that has none. Each names the checkpoint before it (prev:
 * its sequence number, or where the log then began) and the checkpoint_every it was
 * signed under (every). So verify can tell a checkpoint deleted: the one after it names
 * it; and checkpoints deleted at the end, or all of them: more records follow the last
 * one than its `every` lets by. The next writer keeps to the smaller of its own
 * checkpoint_every and the last checkpoint's, so a changed config never makes a log look
 * broken.
 */
typedef struct cp_links {
    uint64_t prev;  /* the checkpoint before, or where the log began then */
    uint64_t every; /* 0: a checkpoint of the first form, which says neither */
} cp_links;

/* A JSON number that is a whole number from 0 to 2^53 (exact in a double). */
static bool whole_u53(double d)
{
    return d >= 0 && d < 9007199254740992.0 && d == (double)(uint64_t)d;
}

static int checkpoint_message(char *out, size_t cap, uint64_t seq, const unsigned char hash[32],
                              int64_t time, const cp_links *l)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    int n = l->every ? snprintf(out, cap, CP_HEADER "\n%llu\n%s\n%lld\n%llu\n%llu",
                                (unsigned long long)seq, hex, (long long)time,
                                (unsigned long long)l->prev, (unsigned long long)l->every)
                     : snprintf(out, cap, CP_HEADER_V1 "\n%llu\n%s\n%lld", (unsigned long long)seq,
                                hex, (long long)time);
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* The node's signature over record seq (hash) as the checkpoint after prev, written to the
 * checkpoints in t. A key that cannot sign leaves *sign_rc (and writes nothing); the
 * return value is whether t took it. */
static int checkpoint_put(zt_server *srv, zt_txn *t, uint64_t seq, const unsigned char hash[32],
                          uint64_t prev, int *sign_rc)
{
    int64_t now = zt_now_ms();
    cp_links l = {prev, srv->conf->audit_checkpoint_every};
    char msg[320], hex[65], sigb[ZT__B64URL_LEN(64)];
    unsigned char sig[64], key[8];
    checkpoint_message(msg, sizeof msg, seq, hash, now, &l);
    if ((*sign_rc = zt__node_sign(srv, t, msg, strlen(msg), sig)) != ZT_OK) return ZT_OK;
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    zt__b64url_encode(sigb, sig, 64);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "hash", hex);
    cJSON_AddNumberToObject(o, "time", (double)now);
    cJSON_AddNumberToObject(o, "prev", (double)prev);
    cJSON_AddNumberToObject(o, "every", (double)l.every);
    cJSON_AddStringToObject(o, "signature", sigb);
    char *text = zt_json_print(o);
    cJSON_Delete(o);
    zt__be64_put(key, seq);
    int rc = text ? zt_put(t, srv->audit->cps, key, 8, text, strlen(text)) : ZT_ENOMEM;
    zt_audit *a = srv->audit;
    if (rc == ZT_OK && strlen(text) <= sizeof a->cp_read) { /* the next batch reads it back */
        a->cp_read_len = strlen(text);
        memcpy(a->cp_read, text, a->cp_read_len);
        a->cp_read_every = l.every;
    }
    cJSON_free(text);
    return rc;
}

/* The last checkpoint in t: its sequence number and the checkpoint_every it was signed
 * under (0 when it does not say). ZT_ENOTFOUND if there is none. */
static int last_checkpoint(zt_audit *a, zt_txn *t, uint64_t *seq, uint64_t *every)
{
    zt_kv kv;
    *seq = *every = 0;
    int rc = zt__db_edge(t, a->cps, ZT_LAST, &kv);
    if (rc != ZT_OK) return rc;
    if (kv.klen != 8) return ZT_EIO;
    *seq = zt__be64_get(kv.key);
    if (kv.vlen == a->cp_read_len && memcmp(kv.val, a->cp_read, kv.vlen) == 0) {
        *every = a->cp_read_every; /* (its text holds its seq, and its signature) */
        return ZT_OK;
    }
    cJSON *o = cJSON_ParseWithLength(kv.val, kv.vlen);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "every");
    if (cJSON_IsNumber(e) && whole_u53(e->valuedouble)) *every = (uint64_t)e->valuedouble;
    cJSON_Delete(o);
    a->cp_read_len = 0;
    if (kv.vlen <= sizeof a->cp_read) {
        memcpy(a->cp_read, kv.val, kv.vlen);
        a->cp_read_len = kv.vlen, a->cp_read_every = *every;
    }
    return ZT_OK;
}

/* Where the next checkpoint is due in t: *cp is the last one (or where the log begins, when
 * there is none: then the first record is signed at once), *limit the records after it. */
static int checkpoint_due(zt_audit *a, zt_txn *t, uint64_t *cp, uint64_t *limit)
{
    uint64_t every, mine = a->srv->conf->audit_checkpoint_every;
    unsigned char hash[32];
    int rc = last_checkpoint(a, t, cp, &every);
    if (rc == ZT_ENOTFOUND) {
        *limit = 1;
        return anchor_get(a, t, cp, hash);
    }
    *limit = every && every < mine ? every : mine;
    return rc;
}

/* Sign the head of the log in t if no checkpoint has (*sign_rc: the key's error). */
static int sign_head(zt_audit *a, zt_txn *t, int *sign_rc)
{
    uint64_t seq, cp, limit;
    unsigned char hash[32];
    *sign_rc = ZT_OK;
    int rc = head_in(a, t, &seq, hash);
    if (rc == ZT_OK) rc = checkpoint_due(a, t, &cp, &limit);
    if (rc != ZT_OK || seq == cp) return rc; /* nothing after the last: nothing to sign */
    return checkpoint_put(a->srv, t, seq, hash, cp, sign_rc);
}

/* Sign the committed head in a transaction of its own: on the interval timer, at shutdown,
 * before an export. The records' own transactions sign every checkpoint_every records. */
int zt__audit_checkpoint(zt_server *srv)
{
    zt_audit *a = srv->audit;
    if (!a || zt__store_batch_open(srv->store)) return ZT_OK;
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t), src = ZT_OK;
    if (rc != ZT_OK) return rc;
    rc = sign_head(a, t, &src);
    rc = zt__store_write_done(srv->store, t, rc == ZT_OK ? src : rc);
    if (rc != ZT_OK) {
        a->cp_failures++;
        zt__log(ZT_LOG_ERROR, NULL, NULL, "audit: cannot write a checkpoint: %s", zt_strerror(rc));
    }
    return rc;
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

static unsigned char *varint_put(unsigned char *p, size_t n)
{
    for (; n >= 0x80; n >>= 7) *p++ = (unsigned char)(n | 0x80);
    *p++ = (unsigned char)n;
    return p;
}

/* Add one record to b in its stored form, its sequence number, time, prev and hash to be
 * filled in by write_records. f: the seven fields (NULL: empty); if f[3] (the action) is
 * NULL, the action is "<verb> <what>". This runs for every change: one reservation, no
 * printf. */
static int rec_build(zt_buf *b, const char *const f[7], const char *verb, const char *what,
                     int status)
{
    size_t n[7], nv = 0, nw = 0, len = HDR + FIXED;
    for (int i = 0; i < 7; i++) {
        if (i == 3 && !f[3]) {
            nv = strlen(verb), nw = strlen(what);
            n[3] = nv + 1 + nw;
        } else {
            n[i] = f[i] ? strlen(f[i]) : 0;
        }
        if (n[i] > UINT32_MAX - len - 10) return ZT_ETOOBIG;
        len += 5 + n[i]; /* at most: a record is less than 4 GiB, so a length is 5 bytes */
    }
    if (zt__buf_reserve(b, 4 + len) != ZT_OK) return ZT_ENOMEM;
    unsigned char *r = (unsigned char *)b->data + b->len, *p = r + 4 + HDR;
    memset(r, 0, 4 + HDR + FIXED);
    p[0] = FMT;
    uint16_t st = status > 0 && status < 65536 ? (uint16_t)status : 0;
    p[17] = (unsigned char)(st >> 8), p[18] = (unsigned char)st;
    p += FIXED;
    for (int i = 0; i < 7; i++) {
        p = varint_put(p, n[i]);
        if (i == 3 && !f[3]) {
            memcpy(p, verb, nv);
            p[nv] = ' ';
            memcpy(p + nv + 1, what, nw);
        } else if (n[i]) {
            memcpy(p, f[i], n[i]);
        }
        p += n[i];
    }
    be32_put(r, (uint32_t)(p - r - 4));
    b->len = (size_t)(p - (unsigned char *)b->data);
    b->data[b->len] = 0; /* zt_buf's invariant: room for it was reserved */
    return ZT_OK;
}

/* Chain the records built in recs[0, len) after the head of the log in t, and append
 * them: one value per VALUE_SPLIT bytes, under its first record's sequence number; with
 * the checkpoints that fall due among them. A checkpoint that cannot be signed does not
 * cost the records (the log says why, and the next records try again); one that cannot
 * be written fails t, as a record would. */
static int write_records(zt_audit *a, zt_txn *t, unsigned char *recs, size_t len)
{
    uint64_t seq, cp, limit;
    unsigned char prev[32];
    int rc = head_in(a, t, &seq, prev), src = ZT_OK; /* once: the batch's records follow */
    if (rc == ZT_OK) rc = checkpoint_due(a, t, &cp, &limit);
    if (rc != ZT_OK) return rc;
    uint64_t now = (uint64_t)zt_now_ms(), every = a->srv->conf->audit_checkpoint_every;
    size_t off = 0;
    while (rc == ZT_OK && off < len) {
        size_t from = off;
        unsigned char key[9];
        zt__be64_put(key, seq + 1);
        key[8] = FMT;
        do {
            unsigned char *r = recs + off, *body = r + 4 + HDR;
            size_t rlen = be32_get(r);
            memcpy(r + 4 + 32, prev, 32);
            zt__be64_put(body + 1, ++seq);
            zt__be64_put(body + 9, now);
            chain_hash(r + 4 + 32, rlen - 32, r + 4);
            memcpy(prev, r + 4, 32);
            off += 4 + rlen;
            if (seq - cp >= limit && src == ZT_OK) {
                rc = checkpoint_put(a->srv, t, seq, r + 4, cp, &src);
                if (src != ZT_OK) {
                    a->cp_failures++;
                    zt__log(ZT_LOG_ERROR, NULL, NULL, "audit: cannot sign a checkpoint at %llu: %s",
                            (unsigned long long)seq, zt_strerror(src));
                }
                cp = seq, limit = every;
            }
        } while (rc == ZT_OK && off < len && off - from < VALUE_SPLIT);
        /* The log only grows at its end: LMDB's append path, no search. */
        if (rc == ZT_OK) rc = zt__store_append(t, a->log, key, sizeof key, recs + from, off - from);
    }
    return rc;
}

int zt__audit_append(zt_server *srv, zt_txn *t, const zt_audit_entry *e)
{
    const char *f[7] = {e->actor,
                        e->actor_login,
                        e->plugin ? e->plugin : "core",
                        e->action ? e->action : "",
                        e->object,
                        e->request_id,
                        e->client};
    zt_buf b = {0};
    int rc = rec_build(&b, f, "", "", e->status); /* f[3] is never NULL here */
    if (rc == ZT_OK) rc = write_records(srv->audit, t, (unsigned char *)b.data, b.len);
    zt__buf_free(&b);
    return rc;
}

/* Why record r, found where expect belongs, does not verify (NULL: it does). */
static const char *rec_check(const zt_audit_rec *r, uint64_t expect, const unsigned char prev[32])
{
    unsigned char h[32];
    chain_hash(r->prev, 32 + r->blen, h);
    if (r->v1) { /* the key is its place; the JSON must say the same */
        if (r->seq != expect)
            return r->seq > expect ? "a record is missing before this one" : "bad sequence number";
        cJSON *o = cJSON_ParseWithLength((const char *)r->body, r->blen);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seq");
        /* a double out of uint64_t's range is not converted: that is undefined */
        bool here = cJSON_IsNumber(s) && s->valuedouble >= 0 &&
                    s->valuedouble < 18446744073709551616.0 && (uint64_t)s->valuedouble == r->seq;
        cJSON_Delete(o);
        if (sodium_memcmp(h, r->hash, 32) != 0)
            return "the record's content does not match its hash";
        if (!here) return "the record belongs at another place in the log";
    } else { /* the body is its place, so its hash first */
        rec_fields f;
        if (sodium_memcmp(h, r->hash, 32) != 0)
            return "the record's content does not match its hash";
        if (fields_decode(r, &f) != ZT_OK) return "the record is damaged";
        if (r->seq > expect)
            return "a record is missing before this one, or records are out of order";
        if (r->seq < expect) return "the record belongs at an earlier place in the log";
    }
    if (sodium_memcmp(prev, r->prev, 32) != 0)
        return "the record does not follow the record before it";
    return NULL;
}

const char *zt__audit_check_value(const zt_kv *kv, uint64_t *expect, unsigned char prev[32])
{
    zt_audit_rec rec;
    size_t off = 0;
    int rc;
    bool first = true;
    while ((rc = rec_next(kv, &off, &rec)) == ZT_OK) {
        const char *why = first && !rec.v1 && zt__be64_get(kv->key) != rec.seq
                              ? "the records are stored under another sequence number"
                              : rec_check(&rec, *expect, prev);
        if (why) return why;
        first = false;
        memcpy(prev, rec.hash, 32);
        (*expect)++;
    }
    if (rc != ZT_ENOTFOUND) return "the record is truncated or damaged";
    return first ? "an empty value in the log" : NULL;
}

/* Note in r that the log is broken at record seq, for why, unless it is at an earlier one. */
static void broken_at(zt_audit_report *r, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void broken_at(zt_audit_report *r, uint64_t seq, const char *fmt, ...)
{
    if (r->first_bad && r->first_bad <= seq) return;
    r->first_bad = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

/* The last pruning the log records: through which record, and that record's hash. */
typedef struct prune_note {
    bool found;
    uint64_t through;
    unsigned char hash[32];
} prune_note;

/* Note in p the pruning records of stored value kv (checked: its records verify). */
static void prune_notes(const zt_kv *kv, prune_note *p)
{
    zt_audit_rec rec;
    rec_fields f;
    size_t off = 0;
    while (rec_next(kv, &off, &rec) == ZT_OK) {
        if (rec.v1 || fields_decode(&rec, &f) != ZT_OK || f.n[2] != 4 ||
            memcmp(f.f[2], "core", 4) != 0 || f.n[3] != strlen(PRUNE_ACTION) ||
            memcmp(f.f[3], PRUNE_ACTION, f.n[3]) != 0)
            continue;
        char object[PRUNE_OBJECT_MAX], last[65];
        unsigned long long from, through;
        size_t n = 0;
        snprintf(object, sizeof object, "%.*s", (int)f.n[4], f.f[4]);
        p->found = true; /* one that does not say where the log begins then: nowhere */
        p->through = UINT64_MAX;
        if (sscanf(object,
                   "records %llu..%llu, archive blake2b %*64[0-9a-f], last hash %64[0-9a-f]", &from,
                   &through, last) == 3 &&
            zt__hex_decode(p->hash, 32, last, strlen(last), &n) == ZT_OK && n == 32)
            p->through = through;
    }
}

/* Why the log's beginning after record seq (hash) is not one a pruning made (NULL: it
 * is): the node signed it (sig), and the last pruning the log records ends there. */
static const char *beginning_check(zt_server *srv, zt_txn *t, uint64_t seq,
                                   const unsigned char hash[32], const unsigned char sig[64],
                                   const prune_note *p, char *buf, size_t cap)
{
    unsigned char pk[32];
    char msg[128];
    if (seq) {
        int krc = zt__node_pubkey(srv, t, pk);
        anchor_message(msg, sizeof msg, seq, hash);
        if (krc == ZT_ENOTFOUND)
            return "the node key is missing (_core/meta): where the log begins cannot be checked";
        if (krc != ZT_OK)
            return "the node key is not one this master key sealed: where the log begins cannot "
                   "be checked";
        if (zt_seal_verify(pk, msg, strlen(msg), sig) != ZT_OK) {
            snprintf(buf, cap,
                     "the log begins after record %llu, but the node did not sign that beginning "
                     "(_core/audit_anchor): records were removed other than by audit prune",
                     (unsigned long long)seq);
            return buf;
        }
    }
    if (!p) return NULL; /* the log could not be read to its end */
    if (seq && !p->found)
        snprintf(buf, cap,
                 "the log begins after record %llu, but it holds no audit prune record that "
                 "removed records up to there",
                 (unsigned long long)seq);
    else if (p->found && (p->through != seq || sodium_memcmp(p->hash, hash, 32) != 0))
        snprintf(buf, cap,
                 "the log begins after record %llu, but its last audit prune record does not "
                 "end there",
                 (unsigned long long)seq);
    else
        return NULL;
    return buf;
}

int zt__audit_verify(zt_server *srv, zt_txn *t, zt_audit_report *r)
{
    memset(r, 0, sizeof(*r));
    unsigned char prev[32], begin[32], sig[64];
    int rc = anchor_read(srv->audit, t, &r->pruned_through, prev, sig);
    if (rc != ZT_OK) return rc;
    memcpy(begin, prev, 32);
    zt_cursor *c;
    if ((rc = zt_cursor_open(t, srv->audit->log, &c)) != ZT_OK) return rc;
    uint64_t expect = r->pruned_through + 1;
    zt_kv kv;
    const char *why = NULL;
    prune_note pn = {0};
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK && !why;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv))
        if (!(why = zt__audit_check_value(&kv, &expect, prev))) prune_notes(&kv, &pn);
    r->last_seq = expect - 1;
    r->records = r->last_seq - r->pruned_through;
    if (why) {
        r->first_bad = expect;
        snprintf(r->reason, sizeof r->reason, "%s", why);
    }
    memcpy(r->last_hash, prev, 32);
    zt_cursor_close(c);
    if (rc != ZT_ENOTFOUND && rc != ZT_OK) return rc;
    /* the beginning: a record before it is one of the log, unless a pruning moved it */
    char buf[sizeof r->reason];
    const char *bwhy =
        beginning_check(srv, t, r->pruned_through, begin, sig, why ? NULL : &pn, buf, sizeof buf);
    if (bwhy) broken_at(r, r->pruned_through + 1, "%s", bwhy);
    return ZT_OK;
}

/* When record r was made (ms), or 0 if it does not say. */
static uint64_t rec_time(const zt_audit_rec *r)
{
    if (!r->v1) return r->blen >= FIXED ? zt__be64_get(r->body + 9) : 0;
    cJSON *o = cJSON_ParseWithLength((const char *)r->body, r->blen);
    double t = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "time"));
    cJSON_Delete(o);
    return whole_u53(t) ? (uint64_t)t : 0;
}

/* Whether the log holds record seq and its stored hash is hash. */
static bool at_record(zt_txn *t, zt_db *log, uint64_t seq, const unsigned char hash[32],
                      uint64_t *when)
{
    zt_kv kv;
    zt_audit_rec r;
    size_t off;
    bool here = zt__audit_locate(t, log, seq, &kv, &off) == ZT_OK &&
                rec_next(&kv, &off, &r) == ZT_OK && r.seq == seq &&
                sodium_memcmp(r.hash, hash, 32) == 0;
    if (here && when) *when = rec_time(&r);
    return here;
}

/* Why checkpoint json (stored under seq) is not one the key pk signed (NULL: it is); its
 * hash goes to hash, what it says of the checkpoint before it to l (l->every 0: it is of
 * the first form, and says nothing). */
static const char *checkpoint_check(const unsigned char pk[32], uint64_t seq, const char *json,
                                    size_t len, unsigned char hash[32], cp_links *l)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hash");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "time");
    const cJSON *sg = cJSON_GetObjectItemCaseSensitive(o, "signature");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(o, "prev");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "every");
    unsigned char sig[64];
    size_t n = 0, m = 0;
    char msg[320];
    const char *why = NULL;
    memset(l, 0, sizeof *l);
    if (!cJSON_IsString(h) || !cJSON_IsNumber(tm) || !cJSON_IsString(sg) ||
        !whole_u53(tm->valuedouble) ||
        (sq && !(cJSON_IsNumber(sq) && sq->valuedouble == (double)seq)) ||
        zt__hex_decode(hash, 32, h->valuestring, strlen(h->valuestring), &n) != ZT_OK || n != 32 ||
        zt__b64url_decode(sig, 64, sg->valuestring, strlen(sg->valuestring), &m) != ZT_OK ||
        m != 64 || !pv != !ev ||
        (pv && !(cJSON_IsNumber(pv) && whole_u53(pv->valuedouble) && pv->valuedouble < seq &&
                 cJSON_IsNumber(ev) && whole_u53(ev->valuedouble) && ev->valuedouble >= 1)))
        why = "a checkpoint is damaged";
    if (!why && pv) l->prev = (uint64_t)pv->valuedouble, l->every = (uint64_t)ev->valuedouble;
    if (!why && (checkpoint_message(msg, sizeof msg, seq, hash, (int64_t)tm->valuedouble, l) < 0 ||
                 zt_seal_verify(pk, msg, strlen(msg), sig) != ZT_OK))
        why = "a checkpoint's signature is not the node's";
    cJSON_Delete(o);
    return why;
}

#define CPS_MISSING "checkpoints missing after record %llu: "

/* Whether the checkpoints are all there (see cp_links): each names the one before it, and
 * no more records follow one (or the log's beginning) before the next than the first's
 * checkpoint_every lets by. cp is the checkpoint just checked (l what it says), last the
 * one before it (have_last: there is one; last_every what it said, 0: nothing). */
static void checkpoint_follows(zt_audit_report *r, bool have_last, uint64_t last,
                               uint64_t last_every, uint64_t cp, const cp_links *l)
{
    uint64_t begin = r->pruned_through;
    /* after one of the first form, the writer of cp kept to its own checkpoint_every */
    uint64_t every = last_every ? last_every : l->every;
    if (!l->every) return; /* of the first form: it says nothing of the one before */
    if (have_last && l->prev != last)
        broken_at(r, last + 1,
                  CPS_MISSING "the checkpoint at record %llu follows one at record %llu, which "
                              "is not there",
                  (unsigned long long)last, (unsigned long long)cp, (unsigned long long)l->prev);
    else if (have_last && cp - last > every) /* deleted, and the node signed on after them */
        broken_at(r, last + 1,
                  CPS_MISSING "the next checkpoint is at record %llu, %llu records on, where one "
                              "is signed every %llu",
                  (unsigned long long)last, (unsigned long long)cp, (unsigned long long)(cp - last),
                  (unsigned long long)every);
    else if (!have_last && l->prev > begin)
        broken_at(r, begin + 1,
                  CPS_MISSING "the first checkpoint here (record %llu) follows one at record %llu, "
                              "which is not there",
                  (unsigned long long)begin, (unsigned long long)cp, (unsigned long long)l->prev);
    else if (!have_last && l->prev == begin && cp - begin > l->every)
        broken_at(r, begin + 1,
                  CPS_MISSING "the first checkpoint here is at record %llu, %llu records on, where "
                              "one is signed every %llu",
                  (unsigned long long)begin, (unsigned long long)cp,
                  (unsigned long long)(cp - begin), (unsigned long long)l->every);
}

int zt__audit_verify_checkpoints(zt_server *srv, zt_txn *t, zt_audit_report *r)
{
    zt_audit *a = srv->audit;
    unsigned char pk[32];
    zt_cursor *c;
    int rc = zt_cursor_open(t, a->cps, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    bool have_pk = false, have_last = false;
    uint64_t last = 0;
    cp_links ll = {0, 0}; /* what the last checkpoint said */
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        uint64_t seq = kv.klen == 8 ? zt__be64_get(kv.key) : 0;
        unsigned char hash[32];
        cp_links l;
        const char *why = NULL;
        /* without the node's own key no checkpoint is checked: the log is not OK then */
        int krc = have_pk ? ZT_OK : zt__node_pubkey(srv, t, pk);
        if (krc == ZT_ENOTFOUND)
            why = "the node key is missing (_core/meta): no checkpoint can be checked";
        else if (krc == ZT_EINVAL)
            why = "the node key is not one this master key sealed: no checkpoint can be checked";
        else if (krc != ZT_OK) {
            rc = krc;
            break;
        }
        have_pk = true;
        if (!why) why = checkpoint_check(pk, seq, kv.val, kv.vlen, hash, &l);
        if (!why && !at_record(t, a->log, seq, hash, NULL))
            why = "the log does not match its signed checkpoint here";
        if (why) {
            broken_at(r, seq, "%s", why);
            break;
        }
        checkpoint_follows(r, have_last, last, ll.every, seq, &l);
        r->checkpoints++;
        have_last = true, last = seq, ll = l;
    }
    zt_cursor_close(c);
    if (rc != ZT_ENOTFOUND && rc != ZT_OK) return rc;
    /* the records after the last checkpoint: no more than it lets by (one of the first
     * form, or none: this node's checkpoint_every) */
    uint64_t from = have_last ? last : r->pruned_through;
    uint64_t every = ll.every ? ll.every : srv->conf->audit_checkpoint_every;
    if (r->last_seq > from && r->last_seq - from > every)
        broken_at(r, from + 1, CPS_MISSING "%llu records follow %s, where one is signed every %llu",
                  (unsigned long long)from, (unsigned long long)(r->last_seq - from),
                  have_last ? "the last checkpoint" : "the log's beginning with none",
                  (unsigned long long)every);
    return ZT_OK;
}

zt_db *zt__audit_db(zt_server *srv)
{
    return srv->audit->log;
}

void zt_audit_note(zt_req *req, const char *action, const char *object)
{
    /* in a GET, the read itself is recorded (personal data looked at by someone else) */
    if (zt__req_reads(req)) req->audit_read = true;
    if (action) req->audit_action = zt__arena_strndup(&req->arena, action, strlen(action));
    if (object) req->audit_object = zt__arena_strndup(&req->arena, object, strlen(object));
}

/* Queue one record: the fields of zt_audit_entry in f (action NULL: "<verb> <what>"). */
static int enqueue(zt_audit *a, const char *const f[7], const char *verb, const char *what,
                   int status)
{
    size_t at = a->queue.len;
    int rc = rec_build(&a->queue, f, verb, what, status);
    if (rc != ZT_OK) return rc;
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
    const char *f[7] = {
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
    const char *f[7] = {e->actor ? e->actor : "",       e->actor_login ? e->actor_login : "",
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

int zt__audit_metrics(zt_server *srv, zt_buf *out)
{
    zt_audit *a = srv->audit;
    uint64_t head = 0, cp = 0, every;
    unsigned char hash[32];
    zt_txn *t;
    if (zt__store_read_begin(srv->store, &t) == ZT_OK) {
        head_in(a, t, &head, hash);
        last_checkpoint(a, t, &cp, &every);
        zt__store_end(srv->store, t, false);
    }
    return zt__buf_printf(
        out,
        "# HELP zt_audit_head_seq The audit log's last sequence number (records ever "
        "appended).\n"
        "# TYPE zt_audit_head_seq gauge\n"
        "zt_audit_head_seq %llu\n"
        "# HELP zt_audit_checkpoint_seq The sequence number the last signed checkpoint "
        "covers.\n"
        "# TYPE zt_audit_checkpoint_seq gauge\n"
        "zt_audit_checkpoint_seq %llu\n"
        "# HELP zt_audit_checkpoint_failures_total Checkpoints that could not be signed or "
        "written since the start (the log says why).\n"
        "# TYPE zt_audit_checkpoint_failures_total counter\n"
        "zt_audit_checkpoint_failures_total %llu\n",
        (unsigned long long)head, (unsigned long long)cp, (unsigned long long)a->cp_failures);
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
    /* In the batch itself: if a record cannot be written, the batch is lost whole (no
     * change without its record), so a nested transaction would roll back nothing. The
     * checkpoints go in with the records they sign: no commit of their own (that was a
     * second fsync every checkpoint_every records on a busy node). */
    int rc = zt__store_batch_write(srv->store, &t);
    if (rc == ZT_OK) rc = write_records(a, t, (unsigned char *)a->queue.data, a->queue.len);
    if (t) {
        int erc = zt__store_end(srv->store, t, rc == ZT_OK);
        if (rc == ZT_OK) rc = erc;
    }
    a->queue.len = 0;
    a->nqueued = 0;
    return rc;
}

/* ---- HTTP ------------------------------------------------------------------------ */

/* ---- retention: archives ------------------------------------------------------------ */

/*
 * The log grows for as long as the node runs; the law asks that it be kept (six months
 * at least), not that it stay in the live database. `zhengtong audit export` writes the
 * oldest records to an archive file, and `zhengtong audit prune` removes from the log
 * exactly the records an archive holds, once it has checked the archive record by record.
 * The log then begins after the last of them: the anchor keeps its sequence number and
 * hash, so the records that stay still chain to it, and the archives chain to each other.
 *
 * An archive is text, a JSON object per line:
 *     {"zhengtong_audit_archive": 1, "node": name, "node_key": base64url, "after_seq": n,
 *      "after_hash": hex, "created_at": ms}
 *     {"key": base64url, "value": base64url}      a stored value, as it was (a batch)
 *     {"checkpoint": {"seq", "hash", "time", "signature"}}   after the value it signs
 *     ...
 *     {"end": {"records": n, "last_seq": n, "last_hash": hex}}
 * so it is checked with the code that checks the log, and the end line catches a cut.
 */

#define ARCHIVE_FMT 1

/* The records of stored value kv: the first and last sequence numbers, and when the last
 * was made (when is not NULL). */
static int value_span(const zt_kv *kv, uint64_t *first, uint64_t *last, uint64_t *when)
{
    zt_audit_rec r;
    size_t off = 0;
    int rc, n = 0;
    while ((rc = rec_next(kv, &off, &r)) == ZT_OK) {
        if (!n++) *first = r.seq;
        *last = r.seq;
        if (when) *when = rec_time(&r);
    }
    return rc == ZT_ENOTFOUND && n ? ZT_OK : ZT_EIO;
}

static int put_line(FILE *f, cJSON *o)
{
    char *text = zt_json_print(o);
    cJSON_Delete(o);
    if (!text) return ZT_ENOMEM;
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    cJSON_free(text);
    return ok ? ZT_OK : ZT_EIO;
}

static void add_b64(cJSON *o, const char *name, const void *bin, size_t len)
{
    char *s = malloc(ZT__B64URL_LEN(len));
    if (!s) return; /* the object is then incomplete: the archive's check refuses it */
    zt__b64url_encode(s, bin, len);
    cJSON_AddStringToObject(o, name, s);
    free(s);
}

static void add_hex(cJSON *o, const char *name, const unsigned char hash[32])
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    cJSON_AddStringToObject(o, name, hex);
}

/* Write the archive of the log in t, through the last whole stored value that ends at or
 * before record `through` and whose last record was made before before_ms, to f. */
static int export_to(zt_server *srv, zt_txn *t, uint64_t through, uint64_t before_ms, FILE *f,
                     zt_archive_info *info, char *err, size_t errlen)
{
    zt_audit *a = srv->audit;
    unsigned char pk[32];
    int rc = anchor_get(a, t, &info->after_seq, info->after_hash);
    if (rc == ZT_OK) rc = zt__node_pubkey(srv, t, pk);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot read the log's beginning or the node key: %s",
                 zt_strerror(rc));
        return rc;
    }
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "zhengtong_audit_archive", ARCHIVE_FMT);
    cJSON_AddStringToObject(h, "node", srv->conf->node_name);
    add_b64(h, "node_key", pk, 32);
    cJSON_AddNumberToObject(h, "after_seq", (double)info->after_seq);
    add_hex(h, "after_hash", info->after_hash);
    cJSON_AddNumberToObject(h, "created_at", (double)zt_now_ms());
    if ((rc = put_line(f, h)) != ZT_OK) return rc;
    zt_cursor *c, *cp;
    if ((rc = zt_cursor_open(t, a->log, &c)) != ZT_OK) return rc;
    if ((rc = zt_cursor_open(t, a->cps, &cp)) != ZT_OK) {
        zt_cursor_close(c);
        return rc;
    }
    info->last_seq = info->after_seq;
    memcpy(info->last_hash, info->after_hash, 32);
    zt_kv kv, ck;
    for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        uint64_t first = 0, last = 0, when = 0;
        if ((rc = value_span(&kv, &first, &last, &when)) != ZT_OK) break;
        if (last > through || when >= before_ms) break;
        cJSON *o = cJSON_CreateObject();
        add_b64(o, "key", kv.key, kv.klen);
        add_b64(o, "value", kv.val, kv.vlen);
        if ((rc = put_line(f, o)) != ZT_OK) break;
        /* the value's last record, for the end line */
        zt_audit_rec r;
        for (size_t off = 0; rec_next(&kv, &off, &r) == ZT_OK;) memcpy(info->last_hash, r.hash, 32);
        info->records += last - first + 1;
        info->last_seq = last;
        unsigned char key[8];
        zt__be64_put(key, first);
        int crc;
        for (crc = zt_cursor_seek(cp, ZT_GE, key, 8, &ck);
             crc == ZT_OK && ck.klen == 8 && zt__be64_get(ck.key) <= last;
             crc = zt_cursor_seek(cp, ZT_NEXT, NULL, 0, &ck)) {
            cJSON *cj = cJSON_ParseWithLength(ck.val, ck.vlen), *w = cJSON_CreateObject();
            cJSON_AddItemToObject(w, "checkpoint", cj ? cj : cJSON_CreateNull());
            if ((rc = put_line(f, w)) != ZT_OK) break;
            info->checkpoints++;
        }
        if (rc != ZT_OK) break;
    }
    zt_cursor_close(cp);
    zt_cursor_close(c);
    if (rc == ZT_EIO) snprintf(err, errlen, "a stored value of the log is damaged: run verify");
    if (rc != ZT_ENOTFOUND && rc != ZT_OK) return rc;
    if (info->records == 0) {
        if (before_ms == UINT64_MAX)
            snprintf(err, errlen,
                     "nothing to export through record %llu: the log begins after record %llu, "
                     "and its oldest batch ends later",
                     (unsigned long long)through, (unsigned long long)info->after_seq);
        else
            snprintf(err, errlen,
                     "nothing to export from before that time: the log begins after record "
                     "%llu, and its oldest batch ends later",
                     (unsigned long long)info->after_seq);
        return ZT_EINVAL;
    }
    cJSON *e = cJSON_CreateObject(), *end = cJSON_AddObjectToObject(e, "end");
    cJSON_AddNumberToObject(end, "records", (double)info->records);
    cJSON_AddNumberToObject(end, "last_seq", (double)info->last_seq);
    add_hex(end, "last_hash", info->last_hash);
    return put_line(f, e);
}

int zt__audit_export(zt_server *srv, uint64_t through, uint64_t before_ms, const char *path,
                     zt_archive_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.partial", path) >= (int)sizeof tmp) return ZT_EINVAL;
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        snprintf(err, errlen, "%s exists: an archive is never overwritten", path);
        return ZT_EEXIST;
    }
    /* 0600: an archive holds who did what to whom, like the data it comes from */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return ZT_EIO;
    }
    /* the head signed first: the node's key then exists to name, and the records after
     * the archive's are pinned too */
    int rc = zt__audit_checkpoint(srv);
    zt_txn *t;
    if (rc == ZT_OK)
        rc = zt__store_read_begin(srv->store, &t);
    else
        snprintf(err, errlen, "cannot sign the log's head: %s", zt_strerror(rc));
    if (rc == ZT_OK) {
        rc = export_to(srv, t, through, before_ms, f, info, err, errlen);
        zt__store_end(srv->store, t, false);
    }
    /* whole on the disk, then under its name: a crash leaves a .partial, never a short
     * archive that looks whole */
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = rc == ZT_OK ? ZT_EIO : rc;
    if (fclose(f) != 0) rc = rc == ZT_OK ? ZT_EIO : rc;
    if (rc == ZT_OK && rename(tmp, path) != 0) rc = ZT_EIO;
    if (rc != ZT_OK) {
        if (!err[0]) snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        remove(tmp);
        return rc;
    }
    /* read back as prune will read it: what was written is what the log holds */
    return zt__audit_archive_check(path, info, err, errlen);
}

/* The bytes of a base64url string member, exactly n of them (n 0: any up to cap). */
static bool get_b64(const cJSON *o, const char *name, unsigned char *out, size_t cap, size_t *len)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(s) &&
           zt__b64url_decode(out, cap, s->valuestring, strlen(s->valuestring), len) == ZT_OK;
}

static bool get_hex32(const cJSON *o, const char *name, unsigned char out[32])
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
    size_t n = 0;
    return cJSON_IsString(s) &&
           zt__hex_decode(out, 32, s->valuestring, strlen(s->valuestring), &n) == ZT_OK && n == 32;
}

static bool get_u53(const cJSON *o, const char *name, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || !whole_u53(v->valuedouble)) return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

#define ARCHIVE_VALUE_MAX (VALUE_SPLIT + 64 * 1024) /* a batch's value, with its last record */

int zt__audit_archive_check(const char *path, zt_archive_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return ZT_EIO;
    }
    crypto_generichash_state digest;
    crypto_generichash_init(&digest, NULL, 0, 32);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    unsigned char prev[32], key[16], *val = malloc(ARCHIVE_VALUE_MAX), *last_val = NULL;
    size_t last_vlen = 0, last_klen = 0;
    unsigned char last_key[16];
    uint64_t expect = 0;
    const char *why = NULL;
    bool ended = false;
    int rc = val ? ZT_OK : ZT_ENOMEM;
    if (!(last_val = malloc(ARCHIVE_VALUE_MAX))) rc = ZT_ENOMEM;
    while (rc == ZT_OK && !why && (n = getline(&line, &cap, f)) > 0) {
        lineno++;
        crypto_generichash_update(&digest, (const unsigned char *)line, (size_t)n);
        cJSON *o = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *cpo = cJSON_GetObjectItemCaseSensitive(o, "checkpoint"),
                    *end = cJSON_GetObjectItemCaseSensitive(o, "end");
        size_t kl = 0, vl = 0;
        uint64_t fmt = 0;
        if (!cJSON_IsObject(o)) {
            why = "not a JSON object";
        } else if (ended) {
            why = "a line after the end line";
        } else if (lineno == 1) {
            const cJSON *node = cJSON_GetObjectItemCaseSensitive(o, "node");
            if (!get_u53(o, "zhengtong_audit_archive", &fmt) || fmt != ARCHIVE_FMT)
                why = "not a zhengtong audit archive of format 1";
            else if (!get_b64(o, "node_key", info->node_key, 32, &kl) || kl != 32 ||
                     !get_u53(o, "after_seq", &info->after_seq) ||
                     !get_hex32(o, "after_hash", info->after_hash) || !cJSON_IsString(node))
                why = "the first line lacks node_key, after_seq, after_hash or node";
            else {
                snprintf(info->node, sizeof info->node, "%s", node->valuestring);
                memcpy(prev, info->after_hash, 32);
                expect = info->after_seq + 1;
            }
        } else if (cpo) {
            uint64_t seq = 0;
            unsigned char hash[32];
            char *text = zt_json_print(cpo);
            zt_kv kv = {last_key, last_klen, last_val, last_vlen};
            zt_audit_rec r;
            cp_links l;
            bool here = false;
            if (!get_u53(cpo, "seq", &seq) || !text)
                why = "a checkpoint is damaged";
            else if ((why = checkpoint_check(info->node_key, seq, text, strlen(text), hash, &l)) ==
                     NULL) {
                for (size_t off = 0; last_vlen && rec_next(&kv, &off, &r) == ZT_OK;)
                    here |= r.seq == seq && sodium_memcmp(r.hash, hash, 32) == 0;
                if (!here) why = "a checkpoint does not match the records before it";
            }
            cJSON_free(text);
            if (!why) {
                info->checkpoints++;
                if (seq > info->signed_through) info->signed_through = seq;
            }
        } else if (end) {
            uint64_t records = 0, last = 0;
            unsigned char h[32];
            if (!get_u53(end, "records", &records) || !get_u53(end, "last_seq", &last) ||
                !get_hex32(end, "last_hash", h))
                why = "the end line is damaged";
            else if (records != info->records || last != expect - 1 ||
                     sodium_memcmp(h, prev, 32) != 0)
                why = "the end line does not match the records above it";
            ended = true;
        } else if (!get_b64(o, "key", key, sizeof key, &kl) ||
                   !get_b64(o, "value", val, ARCHIVE_VALUE_MAX, &vl) || vl == 0) {
            why = "neither records (key, value), a checkpoint nor the end";
        } else {
            zt_kv kv = {key, kl, val, vl};
            uint64_t before = expect;
            why = zt__audit_check_value(&kv, &expect, prev);
            info->records += expect - before;
            memcpy(last_key, key, kl), last_klen = kl;
            memcpy(last_val, val, vl), last_vlen = vl;
        }
        cJSON_Delete(o);
    }
    if (rc == ZT_OK && !why && ferror(f)) why = "cannot be read to its end";
    if (rc == ZT_OK && !why && lineno == 0) why = "empty";
    if (rc == ZT_OK && !why && !ended) why = "it ends before its end line: it was cut short";
    if (rc == ZT_OK && why) {
        snprintf(err, errlen, "%s:%ld: %s (record %llu)", path, lineno, why,
                 (unsigned long long)expect);
        rc = ZT_EINVAL;
    }
    info->last_seq = expect ? expect - 1 : 0;
    memcpy(info->last_hash, prev, 32);
    crypto_generichash_final(&digest, info->digest, 32);
    free(line);
    free(val);
    free(last_val);
    fclose(f);
    return rc;
}

int zt__audit_archive_show(const char *path, FILE *out, char *err, size_t errlen)
{
    zt_archive_info in;
    int rc = zt__audit_archive_check(path, &in, err, errlen); /* nothing shown of a bad one */
    if (rc != ZT_OK) return rc;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ZT_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned char key[16], *val = malloc(ARCHIVE_VALUE_MAX);
    rc = val ? ZT_OK : ZT_ENOMEM;
    while (rc == ZT_OK && getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line), *recs = NULL;
        size_t kl = 0, vl = 0;
        if (get_b64(o, "key", key, sizeof key, &kl) &&
            get_b64(o, "value", val, ARCHIVE_VALUE_MAX, &vl)) {
            zt_kv kv = {key, kl, val, vl};
            if (!(recs = zt__audit_value_json(&kv))) rc = ZT_ENOMEM;
            for (const cJSON *r = recs ? recs->child : NULL; r && rc == ZT_OK; r = r->next) {
                char *text = zt_json_print(r);
                if (!text || fprintf(out, "%s\n", text) < 0) rc = text ? ZT_EIO : ZT_ENOMEM;
                free(text);
            }
        }
        cJSON_Delete(recs);
        cJSON_Delete(o);
    }
    free(line);
    free(val);
    fclose(f);
    if (rc != ZT_OK && !err[0]) snprintf(err, errlen, "%s", zt_strerror(rc));
    return rc;
}

/* Whether record seq is the last of the stored value that holds it. */
static bool ends_value(zt_txn *t, zt_db *log, uint64_t seq)
{
    zt_kv kv;
    size_t off;
    uint64_t first = 0, last = 0;
    return zt__audit_locate(t, log, seq, &kv, &off) == ZT_OK &&
           value_span(&kv, &first, &last, NULL) == ZT_OK && last == seq;
}

/* ZT_OK if the checked archive at path may be pruned from the log in t; else why, in err. */
static int prune_refusal(zt_server *srv, zt_txn *t, const char *path, const zt_archive_info *in,
                         char *err, size_t errlen)
{
    zt_audit *a = srv->audit;
    unsigned char pk[32], hash[32];
    uint64_t seq, made = 0, retain = srv->conf->audit_retain_ms, now = (uint64_t)zt_now_ms();
    uint64_t sent = 0;
    int rc = zt__node_pubkey(srv, t, pk);
    if (rc == ZT_OK) rc = anchor_get(a, t, &seq, hash);
    if (rc != ZT_OK) return rc;
    if (sodium_memcmp(pk, in->node_key, 32) != 0)
        snprintf(err, errlen, "%s is the archive of another node's log (%s)", path, in->node);
    else if (in->last_seq <= seq) /* pruned twice: no new export would help */
        snprintf(err, errlen,
                 "the records of %s (%llu..%llu) are already pruned: the log here begins after "
                 "record %llu; nothing of it is left to prune",
                 path, (unsigned long long)in->after_seq + 1, (unsigned long long)in->last_seq,
                 (unsigned long long)seq);
    else if (seq != in->after_seq || sodium_memcmp(hash, in->after_hash, 32) != 0)
        snprintf(err, errlen,
                 "%s begins after record %llu, but the log here begins after record %llu: "
                 "export again",
                 path, (unsigned long long)in->after_seq, (unsigned long long)seq);
    else if (!at_record(t, a->log, in->last_seq, in->last_hash, &made))
        snprintf(err, errlen, "record %llu here is not the archive's last: %s is not of this log",
                 (unsigned long long)in->last_seq, path);
    else if (srv->conf->audit_syslog_host &&
             !(zt__syslog_confirmed(srv, t, &sent) == ZT_OK && sent >= in->last_seq))
        /* audit.syslog: what the collector has not acknowledged stays here until it has */
        snprintf(err, errlen,
                 "the records of %s (%llu..%llu) have not all reached the log collector "
                 "(audit.syslog), which acknowledged the records up to %llu: they are kept "
                 "until it has them (zt_audit_syslog_lag_records says how many wait)",
                 path, (unsigned long long)in->after_seq + 1, (unsigned long long)in->last_seq,
                 (unsigned long long)sent);
    else if (retain && (!made || made + retain > now)) {
        /* records are kept for audit.retain (GB/T 22239 level 3: six months at least),
         * whoever runs the command: pruning is for archiving old records, not for
         * removing recent ones */
        char when[32] = "(no time)";
        time_t at = (time_t)((made + retain) / 1000);
        struct tm tm;
        if (made && gmtime_r(&at, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
        snprintf(err, errlen,
                 "the records of %s (%llu..%llu) are kept for audit.retain (%llu days) after "
                 "they were made: the last of them may be pruned from %s; export through an "
                 "older record",
                 path, (unsigned long long)in->after_seq + 1, (unsigned long long)in->last_seq,
                 (unsigned long long)(retain / (24 * 3600 * 1000ULL)), when);
    } else if (!ends_value(t, a->log, in->last_seq))
        snprintf(err, errlen,
                 "%s ends inside a batch of the log (record %llu): an archive holds whole "
                 "batches, as export writes them",
                 path, (unsigned long long)in->last_seq);
    else
        return ZT_OK;
    return ZT_EINVAL;
}

int zt__audit_prune(zt_server *srv, const char *path, const char *actor, zt_archive_info *info,
                    char *err, size_t errlen)
{
    zt_audit *a = srv->audit;
    int rc = zt__audit_archive_check(path, info, err, errlen);
    if (rc != ZT_OK) return rc;
    zt_txn *t;
    if ((rc = zt__store_write_begin(srv->store, &t)) != ZT_OK) return rc;
    if ((rc = prune_refusal(srv, t, path, info, err, errlen)) != ZT_OK && !err[0])
        snprintf(err, errlen, "cannot read the node key or the log's beginning: %s",
                 zt_strerror(rc));
    if (rc == ZT_OK) { /* first the record of this, so that the log is never empty */
        char object[PRUNE_OBJECT_MAX], hex[65], last[65];
        sodium_bin2hex(hex, sizeof hex, info->digest, 32);
        sodium_bin2hex(last, sizeof last, info->last_hash, 32);
        snprintf(object, sizeof object, PRUNE_OBJECT, (unsigned long long)info->after_seq + 1,
                 (unsigned long long)info->last_seq, hex, last);
        zt_audit_entry e = {
            .actor = actor, .plugin = "core", .action = PRUNE_ACTION, .object = object};
        rc = zt__audit_append(srv, t, &e);
    }
    int src = ZT_OK; /* the log ends at a checkpoint: the one the others then follow */
    if (rc == ZT_OK && (rc = sign_head(a, t, &src)) == ZT_OK && (rc = src) != ZT_OK)
        snprintf(err, errlen, "cannot sign the log's head: %s", zt_strerror(rc));
    zt_cursor *c = NULL;
    zt_kv kv;
    if (rc == ZT_OK && (rc = zt_cursor_open(t, a->log, &c)) == ZT_OK) {
        for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;) {
            uint64_t first = 0, last = 0;
            if ((rc = value_span(&kv, &first, &last, NULL)) != ZT_OK || last > info->last_seq)
                break;
            if ((rc = zt_cursor_del(c)) == ZT_OK) rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
        }
        zt_cursor_close(c);
        if (rc == ZT_ENOTFOUND || rc == ZT_OK) rc = ZT_OK;
    }
    if (rc == ZT_OK && (rc = zt_cursor_open(t, a->cps, &c)) == ZT_OK) {
        for (rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv);
             rc == ZT_OK && kv.klen == 8 && zt__be64_get(kv.key) <= info->last_seq;)
            if ((rc = zt_cursor_del(c)) == ZT_OK) rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
        zt_cursor_close(c);
        if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    }
    if (rc == ZT_OK) {
        unsigned char v[ANCHOR_LEN];
        char msg[128];
        zt__be64_put(v, info->last_seq);
        memcpy(v + 8, info->last_hash, 32);
        anchor_message(msg, sizeof msg, info->last_seq, info->last_hash);
        if ((rc = zt__node_sign(srv, t, msg, strlen(msg), v + 40)) != ZT_OK)
            snprintf(err, errlen, "cannot sign the log's new beginning: %s", zt_strerror(rc));
        else
            rc = zt_put(t, a->anchor, "a", 1, v, sizeof v);
    }
    rc = zt__store_write_done(srv->store, t, rc);
    if (rc != ZT_OK && !err[0]) snprintf(err, errlen, "cannot prune: %s", zt_strerror(rc));
    return rc;
}

/* A read of the records is recorded too (GB/T 22239 level 3, 审计管理: the audit
 * administrator's operations are audited; the records say who did what to whom): how many
 * it showed and what it asked, held as every recorded read is until its record is on
 * disk. Verifying the chain and reading the checkpoints show no one's data. */
static void note_read(zt_req *req, long n)
{
    const char *q = req->query && *req->query ? req->query : NULL;
    zt_audit_note(req, "read audit records",
                  zt_req_printf(req, "%ld records%s%.200s", n, q ? " for " : "", q ? q : ""));
}

static int h_verify(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    zt_audit_report r;
    int rc = zt__audit_verify(srv, t, &r);
    if (rc == ZT_OK) rc = zt__audit_verify_checkpoints(srv, t, &r);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", r.first_bad == 0);
    cJSON_AddNumberToObject(o, "records", (double)r.records);
    cJSON_AddNumberToObject(o, "checkpoints", (double)r.checkpoints);
    cJSON_AddNumberToObject(o, "pruned_through", (double)r.pruned_through);
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

/* Read record r to show it: an old one's JSON (*v1) or a new one's fields (*f). */
static bool rec_read(const zt_audit_rec *r, rec_fields *f, cJSON **v1)
{
    *v1 = NULL;
    if (r->v1) return (*v1 = cJSON_ParseWithLength((const char *)r->body, r->blen)) != NULL;
    return fields_decode(r, f) == ZT_OK;
}

/* Field i of a record as it is shown (*v, *n): no actor is "anonymous"; false for a field
 * left out (no account: no login). */
static bool shown_field(const rec_fields *f, int i, const char **v, size_t *n)
{
    *v = f->f[i], *n = f->n[i];
    if (!*n && i == 0) *v = "anonymous", *n = 9;
    return *n || i != 1;
}

/* Record r, read by rec_read, as GET /audit shows it (with its hash; v1 is taken over). */
static cJSON *rec_json(const zt_audit_rec *r, const rec_fields *f, cJSON *v1)
{
    cJSON *o = v1;
    if (!r->v1) {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)r->seq);
        cJSON_AddNumberToObject(o, "time", (double)f->time);
        for (int i = 0; i < 7; i++) {
            const char *v;
            size_t n;
            if (!shown_field(f, i, &v, &n)) continue;
            char *z = strndup(v, n);
            if (z) cJSON_AddStringToObject(o, field_names[i], z);
            free(z);
        }
        if (f->status) cJSON_AddNumberToObject(o, "status", f->status);
    }
    if (!o) return NULL;
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, r->hash, 32);
    cJSON_AddStringToObject(o, "hash", hex);
    return o;
}

cJSON *zt__audit_value_json(const zt_kv *kv)
{
    cJSON *a = cJSON_CreateArray(), *o;
    zt_audit_rec r;
    size_t off = 0;
    rec_fields f;
    cJSON *v1;
    while (a && rec_next(kv, &off, &r) == ZT_OK && rec_read(&r, &f, &v1) &&
           (o = rec_json(&r, &f, v1)))
        cJSON_AddItemToArray(a, o);
    return a;
}

cJSON *zt__audit_record_json(zt_txn *t, zt_db *log, uint64_t seq)
{
    zt_kv kv;
    size_t off;
    int rc = seq ? zt__audit_locate(t, log, seq, &kv, &off) : zt__db_edge(t, log, ZT_LAST, &kv);
    cJSON *a = rc == ZT_OK ? zt__audit_value_json(&kv) : NULL, *o = NULL;
    for (cJSON *i = a ? a->child : NULL; i && !o; i = i->next)
        if (!seq ? !i->next : cJSON_GetNumberValue(cJSON_GetObjectItem(i, "seq")) == (double)seq)
            o = cJSON_DetachItemViaPointer(a, i);
    cJSON_Delete(a);
    return o;
}

int zt__audit_head(zt_server *srv, zt_txn *t, uint64_t *seq)
{
    unsigned char hash[32];
    return head_in(srv->audit, t, seq, hash);
}

/* Record r (new format, read by rec_read) as JSON text, the members of rec_json in its
 * order, appended to b: no cJSON tree, since the log collector gets every record. Bytes
 * that are not UTF-8 (a path as a client sent it) become U+FFFD. */
static int rec_json_text(const zt_audit_rec *r, const rec_fields *f, zt_buf *b)
{
    static const char *const keys[7] = {
        ",\"actor\":",  ",\"actor_login\":", ",\"plugin\":", ",\"action\":",
        ",\"object\":", ",\"request_id\":",  ",\"client\":"};
    char num[64], hex[65];
    int rc =
        zt__buf_append(b, num,
                       (size_t)snprintf(num, sizeof num, "{\"seq\":%llu,\"time\":%llu",
                                        (unsigned long long)r->seq, (unsigned long long)f->time));
    for (int i = 0; rc == ZT_OK && i < 7; i++) {
        const char *v;
        size_t n;
        if (!shown_field(f, i, &v, &n)) continue;
        rc = zt__buf_puts(b, keys[i]);
        if (rc == ZT_OK) rc = zt__buf_json_text(b, v, n);
    }
    if (rc == ZT_OK && f->status)
        rc = zt__buf_append(b, num, (size_t)snprintf(num, sizeof num, ",\"status\":%d", f->status));
    sodium_bin2hex(hex, sizeof hex, r->hash, 32);
    if (rc == ZT_OK) rc = zt__buf_puts(b, ",\"hash\":\"");
    if (rc == ZT_OK) rc = zt__buf_append(b, hex, 64);
    if (rc == ZT_OK) rc = zt__buf_puts(b, "\"}");
    return rc;
}

int zt__audit_each(zt_server *srv, zt_txn *t, uint64_t from, size_t max, zt__audit_each_fn fn,
                   void *ud)
{
    zt_cursor *c;
    int rc = zt_cursor_open(t, srv->audit->log, &c);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    zt_buf text = {0};
    size_t off, n = 0;
    bool more = true;
    for (rc = seek_record(c, from, false, &kv, &off); rc == ZT_OK && more && n < max;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), off = 0) {
        zt_audit_rec r;
        while (more && n < max && (rc = rec_next(&kv, &off, &r)) == ZT_OK) {
            rec_fields f;
            cJSON *v1 = NULL, *o;
            if (r.seq < from) continue;
            text.len = 0;
            uint64_t when = 0;
            int status = 0;
            if (!rec_read(&r, &f, &v1)) {
                rc = ZT_EIO; /* damaged: audit verify says where */
            } else if (!r.v1) {
                rc = rec_json_text(&r, &f, &text);
                when = f.time, status = f.status;
            } else if ((o = rec_json(&r, &f, v1))) { /* the old format: its JSON as it is */
                const cJSON *sv = cJSON_GetObjectItemCaseSensitive(o, "status");
                const cJSON *tv = cJSON_GetObjectItemCaseSensitive(o, "time");
                when = cJSON_IsNumber(tv) ? (uint64_t)tv->valuedouble : 0;
                status = cJSON_IsNumber(sv) ? sv->valueint : 0;
                char *j = cJSON_PrintUnformatted(o);
                rc = j ? zt__buf_puts(&text, j) : ZT_ENOMEM;
                free(j);
                cJSON_Delete(o);
            } else {
                rc = ZT_ENOMEM;
            }
            if (rc != ZT_OK) break;
            more = fn(ud, r.seq, when, status, text.data, text.len);
            n++;
        }
        if (rc != ZT_OK && rc != ZT_ENOTFOUND) break;
        rc = ZT_OK;
    }
    zt_cursor_close(c);
    zt__buf_free(&text);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* A record's field i against a filter (NULL: any). */
static bool field_is(const zt_audit_rec *r, const rec_fields *f, const cJSON *o, int i,
                     const char *want)
{
    if (!want) return true;
    if (r->v1) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field_names[i]);
        return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
    }
    if (i == 0 && !f->n[0]) return strcmp(want, "anonymous") == 0;
    return strlen(want) == f->n[i] && memcmp(f->f[i], want, f->n[i]) == 0;
}

/* A query parameter that must be a non-negative number, all of it. */
static bool query_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return *s && !*end && errno == 0 && *out >= 0 && isfinite(*out);
}

/* A page's `after` (a sequence number: the page starts at the next one) and `limit`
 * (1 to 1000, default 50). False when it answered 400. */
static bool page_query(zt_req *req, uint64_t *start, long *limit)
{
    const char *after = zt_req_query(req, "after"), *lim = zt_req_query(req, "limit");
    char *end = NULL;
    *limit = lim ? strtol(lim, &end, 10) : 50;
    if ((lim && *end) || *limit < 1 || *limit > 1000) {
        zt_problem(req, 400, "invalid-query", NULL, "limit: 1 to 1000");
        return false;
    }
    *start = 1;
    if (after) {
        double a;
        if (!query_number(after, &a) || !whole_u53(a)) {
            zt_problem(req, 400, "invalid-query", NULL,
                       "after: a record's sequence number (`next` of the page before)");
            return false;
        }
        *start = (uint64_t)a + 1;
    }
    return true;
}

/* The node's signed checkpoints, with its public key: what lets someone outside the node
 * check that the log shown later still holds the heads signed earlier (a history rewritten
 * in between no longer matches a signature). */
static int h_checkpoints(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    uint64_t start;
    long limit;
    if (!page_query(req, &start, &limit)) return ZT_OK;
    zt_txn *t = zt_req_txn(req);
    zt_cursor *c;
    if (!t || zt_cursor_open(t, srv->audit->cps, &c) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    unsigned char pk[32];
    char pkb[ZT__B64URL_LEN(32)];
    if (zt__node_pubkey(srv, t, pk) == ZT_OK) { /* none before the first checkpoint */
        zt__b64url_encode(pkb, pk, 32);
        cJSON_AddStringToObject(o, "node_key", pkb);
    } else {
        cJSON_AddNullToObject(o, "node_key");
    }
    cJSON_AddStringToObject(o, "signed", CP_HEADER "\n<seq>\n<hash, hex>\n<time>\n<prev>\n<every>");
    /* checkpoints without prev and every, signed before they existed */
    cJSON_AddStringToObject(o, "signed_v1", CP_HEADER_V1 "\n<seq>\n<hash, hex>\n<time>");
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    unsigned char key[8];
    zt__be64_put(key, start);
    zt_kv kv;
    long n = 0;
    int rc = zt_cursor_seek(c, ZT_GE, key, 8, &kv);
    for (; rc == ZT_OK && n < limit; rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), n++)
        cJSON_AddItemToArray(items, cJSON_ParseWithLength(kv.val, kv.vlen));
    if (rc == ZT_OK && kv.klen == 8)
        cJSON_AddStringToObject(
            o, "next", zt_req_printf(req, "%llu", (unsigned long long)(zt__be64_get(kv.key) - 1)));
    else
        cJSON_AddNullToObject(o, "next");
    zt_cursor_close(c);
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int h_list(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    const char *actor = zt_req_query(req, "actor"), *plugin = zt_req_query(req, "plugin");
    const char *object = zt_req_query(req, "object"), *from = zt_req_query(req, "from");
    const char *to = zt_req_query(req, "to"), *status = zt_req_query(req, "status");
    uint64_t start;
    long limit;
    if (!page_query(req, &start, &limit)) return ZT_OK;
    double tfrom = 0, tto = 1e300, want_status = 0;
    if (status && (!query_number(status, &want_status) || want_status < 100 || want_status > 599 ||
                   want_status != (double)(int)want_status))
        return zt_problem(req, 400, "invalid-query", NULL,
                          "status: an HTTP status, 100 to 599 (403: refused access, 401: "
                          "failed sign-ins)");
    if (from && !query_number(from, &tfrom))
        return zt_problem(req, 400, "invalid-query", NULL, "from: a time in ms since 1970");
    if (to && !query_number(to, &tto))
        return zt_problem(req, 400, "invalid-query", NULL, "to: a time in ms since 1970");
    zt_txn *t = zt_req_txn(req);
    zt_cursor *c;
    if (!t || zt_cursor_open(t, srv->audit->log, &c) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    long n = 0;
    uint64_t last = start - 1;
    zt_kv kv;
    size_t off;
    int rc = seek_record(c, start, false, &kv, &off);
    /* A scan bounded in records examined, so a filter that matches little cannot hold
     * the loop: the client continues from `next` (null: the end of the log). */
    long examined = 0;
    bool more = false;
    for (; rc == ZT_OK; rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), off = 0) {
        zt_audit_rec r;
        while (n < limit && examined < 100000 && rec_next(&kv, &off, &r) == ZT_OK) {
            examined++;
            /* `next` only moves on: in a log whose stored seqs go back (tampered; verify
             * says where), a page that ended on a lower seq would be listed again */
            if (r.seq > last) last = r.seq;
            rec_fields f;
            cJSON *v1;
            if (!rec_read(&r, &f, &v1)) continue;
            double tm = r.v1 ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v1, "time"))
                             : (double)f.time;
            const cJSON *sv = r.v1 ? cJSON_GetObjectItemCaseSensitive(v1, "status") : NULL;
            int st = r.v1 ? (cJSON_IsNumber(sv) ? sv->valueint : 0) : f.status;
            bool match = field_is(&r, &f, v1, 0, actor) && field_is(&r, &f, v1, 2, plugin) &&
                         field_is(&r, &f, v1, 4, object) && tm >= tfrom && tm < tto &&
                         (!status || st == (int)want_status);
            if (!match) {
                cJSON_Delete(v1);
                continue;
            }
            cJSON *item = rec_json(&r, &f, v1); /* each record is read once */
            if (item) {
                cJSON_AddItemToArray(items, item);
                n++;
            }
        }
        if (n >= limit || examined >= 100000) {
            more = off < kv.vlen || zt_cursor_seek(c, ZT_NEXT, NULL, 0, NULL) == ZT_OK;
            break;
        }
    }
    zt_cursor_close(c);
    if (more)
        cJSON_AddStringToObject(o, "next", zt_req_printf(req, "%llu", (unsigned long long)last));
    else
        cJSON_AddNullToObject(o, "next");
    note_read(req, n);
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

int zt__audit_routes(zt_server *srv, char *err, size_t errlen)
{
    static const struct {
        const char *path;
        zt_handler handler;
        const char *summary;
    } routes[] = {
        {"/audit/verify", h_verify, "Recompute the audit chain; the first bad record"},
        {"/audit/checkpoints", h_checkpoints,
         "The node's signed checkpoints of the chain, and its public key"},
        {"/audit", h_list, "Audit records (actor, plugin, object, status, from, to, after, limit)"},
    };
    int rc = ZT_OK;
    for (size_t i = 0; rc == ZT_OK && i < sizeof routes / sizeof routes[0]; i++) {
        zt_route r = {.method = "GET",
                      .path = routes[i].path,
                      .handler = routes[i].handler,
                      .ud = srv,
                      .role = "auditor",
                      .summary = routes[i].summary};
        rc = zt__router_add(srv->router, NULL, &r, err, errlen);
    }
    return rc;
}
