/* test_audit.c: the audit chain: appends, tampering found at the right record, rollback,
 * signed checkpoints. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "core.h"
#include "testutil.h"

typedef struct fixture {
    char dir[64];
    zt_conf conf;
    zt_server srv;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof f->dir, "/tmp/zt-audit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->srv.conf = &f->conf;
    f->conf.audit_checkpoint_every = 1000000;
    f->conf.audit_checkpoint_ms = 1000000;
    tu_audit_open(&f->srv, f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_audit_close(&f->srv);
    assert_int_equal(tu_rm_tree(f->dir), 0);
    free(f);
    return 0;
}

static void append_n(fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        zt_txn *t;
        assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
        char obj[32];
        snprintf(obj, sizeof obj, "/things/%d", i);
        zt_audit_entry e = {.actor = "A1",
                            .plugin = "test",
                            .action = "POST /things",
                            .object = obj,
                            .request_id = "R",
                            .client = "127.0.0.1",
                            .status = 201};
        assert_int_equal(zt__audit_append(&f->srv, t, &e), ZT_OK);
        assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    }
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

/* The same records, the n of them queued in one batch: stored together in one value. */
static void append_batch(fixture *f, int n)
{
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    for (int i = 0; i < n; i++) {
        char obj[32];
        snprintf(obj, sizeof obj, "/things/b%d", i);
        zt_audit_entry e = {.actor = "A1",
                            .plugin = "test",
                            .action = "things",
                            .object = obj,
                            .request_id = "R",
                            .client = "127.0.0.1",
                            .status = 201};
        assert_int_equal(zt__audit_queue_entry(&f->srv, &e, "POST"), ZT_OK);
    }
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__audit_flush(&f->srv), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

static zt_audit_report verify(fixture *f)
{
    zt_txn *t;
    zt_audit_report r;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt__audit_verify(&f->srv, t, &r), ZT_OK);
    assert_int_equal(zt__audit_verify_checkpoints(&f->srv, t, &r), ZT_OK);
    zt__store_end(f->srv.store, t, false);
    return r;
}

/* The whole log as stored, to tamper with: its values (key, bytes) and, for each record,
 * its value and where in it it begins. */
#define MAXV 64
#define MAXR 256
typedef struct stored {
    size_t nv, nr;
    unsigned char key[MAXV][9];
    size_t klen[MAXV], vlen[MAXV];
    unsigned char val[MAXV][8192];
    size_t rv[MAXR], roff[MAXR], rlen[MAXR]; /* record seq-1: value, offset, length */
} stored;

static void load(fixture *f, stored *s)
{
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    memset(s, 0, sizeof *s);
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, zt__audit_db(&f->srv), &c), ZT_OK);
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        assert_true(s->nv < MAXV && kv.vlen <= sizeof s->val[0] && kv.klen <= 9);
        memcpy(s->key[s->nv], kv.key, kv.klen);
        memcpy(s->val[s->nv], kv.val, kv.vlen);
        s->klen[s->nv] = kv.klen, s->vlen[s->nv] = kv.vlen;
        for (size_t off = 0; off < kv.vlen; s->nr++) { /* len u32 | hash | prev | body */
            const unsigned char *r = s->val[s->nv] + off;
            assert_int_equal(kv.klen, 9);
            s->rv[s->nr] = s->nv, s->roff[s->nr] = off;
            s->rlen[s->nr] = 4 + ((size_t)r[0] << 24 | r[1] << 16 | r[2] << 8 | r[3]);
            off += s->rlen[s->nr];
        }
        s->nv++;
    }
    zt_cursor_close(c);
    zt__store_end(f->srv.store, t, false);
}

/* Write s back over the log (values left empty are deleted). */
static void store(fixture *f, stored *s)
{
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    for (size_t i = 0; i < s->nv; i++) {
        if (s->vlen[i])
            assert_int_equal(
                zt_put(t, zt__audit_db(&f->srv), s->key[i], s->klen[i], s->val[i], s->vlen[i]),
                ZT_OK);
        else
            assert_int_equal(zt_del(t, zt__audit_db(&f->srv), s->key[i], s->klen[i]), ZT_OK);
    }
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

static unsigned char *rec(stored *s, uint64_t seq)
{
    assert_true(seq >= 1 && seq <= s->nr);
    return s->val[s->rv[seq - 1]] + s->roff[seq - 1];
}

/* Offsets in a stored record: its length, hash, prev, body (format, seq, time, status). */
#define R_HASH 4
#define R_PREV 36
#define R_BODY 68

static void fill(fixture *f, bool batched)
{
    if (batched) { /* 1-3 alone, 4-8 in one batch, 9-10 in another */
        append_n(f, 3);
        append_batch(f, 5);
        append_batch(f, 2);
    } else {
        append_n(f, 10);
    }
    stored s;
    load(f, &s);
    assert_int_equal(s.nr, 10);
    assert_int_equal(s.nv, batched ? 5 : 10);
}

static void intact_chain_verifies(void **state)
{
    fixture *f = *state;
    fill(f, true);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.records, 10);
    assert_int_equal(r.last_seq, 10);
    append_n(f, 1);
    assert_int_equal(verify(f).records, 11);
}

static void flipped_byte_found(fixture *f, bool batched)
{
    fill(f, batched);
    /* every region of the record: its length, hash, prev, format, seq, time, a field */
    size_t offsets[] = {2, R_HASH + 3, R_PREV + 8, R_BODY, R_BODY + 8, R_BODY + 12, R_BODY + 25};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        stored s;
        load(f, &s);
        rec(&s, 5)[offsets[i]] ^= 0x01;
        store(f, &s);
        zt_audit_report r = verify(f);
        assert_int_equal(r.first_bad, 5);
        assert_int_equal(r.records, 4);
        rec(&s, 5)[offsets[i]] ^= 0x01;
        store(f, &s);
        assert_int_equal(verify(f).first_bad, 0);
    }
}

static void flipped_byte_found_at_its_record(void **state)
{
    flipped_byte_found(*state, false);
}

static void flipped_byte_found_in_a_batch(void **state)
{
    flipped_byte_found(*state, true);
}

/* Take record seq out of its value. */
static void cut(stored *s, uint64_t seq)
{
    size_t v = s->rv[seq - 1], off = s->roff[seq - 1], n = s->rlen[seq - 1];
    memmove(s->val[v] + off, s->val[v] + off + n, s->vlen[v] - off - n);
    s->vlen[v] -= n;
}

/* Tamper with a fresh log of each layout (one record per value, then batches of them):
 * verify stops at record bad, saying why (NULL: whatever), having passed `records` (-1:
 * not checked). */
static void found_in_both_layouts(void **state, void (*tamper)(stored *), uint64_t bad,
                                  const char *why, int records)
{
    for (int batched = 0; batched < 2; batched++) {
        fixture *f = *state;
        fill(f, batched);
        stored s;
        load(f, &s);
        tamper(&s);
        store(f, &s);
        zt_audit_report r = verify(f);
        assert_int_equal(r.first_bad, bad);
        if (records >= 0) assert_int_equal(r.records, records);
        if (why) assert_non_null(strstr(r.reason, why));
        teardown(state), setup(state);
    }
}

static void cut_6(stored *s)
{
    cut(s, 6); /* alone in its value, or in the middle of one */
}

static void deleted_record_found(void **state)
{
    found_in_both_layouts(state, cut_6, 6, "missing", 5);
}

static void deleted_batch_found(void **state)
{
    fixture *f = *state;
    fill(f, true);
    stored s;
    load(f, &s);
    s.vlen[3] = 0; /* records 4-8 */
    store(f, &s);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 4);
    assert_int_equal(r.records, 3);
}

/* 5 and 6: the same length, in separate values or next to each other in one */
static void swap_5_6(stored *s)
{
    assert_int_equal(s->rlen[4], s->rlen[5]);
    unsigned char tmp[1024];
    memcpy(tmp, rec(s, 5), s->rlen[4]);
    memcpy(rec(s, 5), rec(s, 6), s->rlen[4]);
    memcpy(rec(s, 6), tmp, s->rlen[4]);
}

static void reordered_records_found(void **state)
{
    found_in_both_layouts(state, swap_5_6, 5, NULL, -1);
}

static void value_under_another_key_found(void **state)
{
    fixture *f = *state;
    fill(f, true);
    stored s;
    load(f, &s);
    /* the batch of records 4-8 filed under 5, where they still sort: all intact */
    size_t m = s.nv++;
    memcpy(s.key[m], s.key[3], 9);
    s.key[m][7] = 5;
    s.klen[m] = 9;
    memcpy(s.val[m], s.val[3], s.vlen[3]);
    s.vlen[m] = s.vlen[3];
    s.vlen[3] = 0;
    store(f, &s);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 4);
    assert_non_null(strstr(r.reason, "another sequence number"));
    assert_int_equal(r.records, 3);
}

static void rolled_back_append_leaves_nothing(void **state)
{
    fixture *f = *state;
    append_n(f, 3);
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    zt_audit_entry e = {.action = "POST /x", .object = "/x"};
    assert_int_equal(zt__audit_append(&f->srv, t, &e), ZT_OK);
    zt__store_end(f->srv.store, t, false); /* the request failed */
    append_n(f, 2); /* same batch: chained after record 3, not after the lost one */
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.records, 5);
}

static void records_read_back(void **state)
{
    fixture *f = *state;
    fill(f, true);
    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    for (uint64_t seq = 1; seq <= 10; seq++) {
        cJSON *o = zt__audit_record_json(t, zt__audit_db(&f->srv), seq);
        assert_non_null(o);
        assert_int_equal((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "seq")), seq);
        char want[32];
        snprintf(want, sizeof want, seq <= 3 ? "/things/%d" : "/things/b%d",
                 (int)(seq <= 3   ? seq - 1
                       : seq <= 8 ? seq - 4
                                  : seq - 9));
        assert_string_equal(zt__jstr(o, "object"), want);
        assert_string_equal(zt__jstr(o, "action"), seq <= 3 ? "POST /things" : "POST things");
        assert_string_equal(zt__jstr(o, "actor"), "A1");
        assert_string_equal(zt__jstr(o, "plugin"), "test");
        assert_string_equal(zt__jstr(o, "client"), "127.0.0.1");
        assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "status")), 201);
        assert_int_equal(strlen(zt__jstr(o, "hash")), 64);
        cJSON_Delete(o);
    }
    assert_null(zt__audit_record_json(t, zt__audit_db(&f->srv), 11));
    cJSON *last = zt__audit_record_json(t, zt__audit_db(&f->srv), 0);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(last, "seq")), 10);
    cJSON_Delete(last);
    zt__store_end(f->srv.store, t, false);
}

/* A log written by zhengtong 0.1 (one record per 8-byte key, hash | prev | JSON) goes on
 * with new records chained to its last, and both are verified and read. */
static void old_format_log_continues(void **state)
{
    fixture *f = *state;
    unsigned char prev[32] = {0};
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    for (int seq = 1; seq <= 3; seq++) {
        unsigned char val[512], key[8] = {0, 0, 0, 0, 0, 0, 0, (unsigned char)seq};
        int n = snprintf((char *)val + 64, sizeof val - 64,
                         "{\"seq\":%d,\"time\":1700000000000,\"actor\":\"old\",\"plugin\":"
                         "\"core\",\"action\":\"POST /a\",\"object\":\"/a\"}",
                         seq);
        memcpy(val + 32, prev, 32);
        crypto_generichash(val, 32, val + 32, 32 + (size_t)n, NULL, 0);
        memcpy(prev, val, 32);
        assert_int_equal(zt_put(t, zt__audit_db(&f->srv), key, 8, val, 64 + (size_t)n), ZT_OK);
    }
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
    append_n(f, 2);
    append_batch(f, 3);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.records, 8);
    /* the old records had none: the first new one was signed at once, and now the head */
    assert_int_equal(r.checkpoints, 1);
    assert_int_equal(zt__audit_checkpoint(&f->srv), ZT_OK);
    assert_int_equal(verify(f).checkpoints, 2);

    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    cJSON *o = zt__audit_record_json(t, zt__audit_db(&f->srv), 2);
    assert_string_equal(zt__jstr(o, "actor"), "old");
    cJSON_Delete(o);
    o = zt__audit_record_json(t, zt__audit_db(&f->srv), 4);
    assert_string_equal(zt__jstr(o, "actor"), "A1");
    cJSON_Delete(o);
    zt__store_end(f->srv.store, t, false);

    /* an old record changed is still found at its place */
    unsigned char key[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    const void *v;
    size_t vl;
    unsigned char val[512];
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, zt__audit_db(&f->srv), key, 8, &v, &vl), ZT_OK);
    memcpy(val, v, vl);
    zt__store_end(f->srv.store, t, false);
    val[64 + 30] ^= 0x01;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_put(t, zt__audit_db(&f->srv), key, 8, val, vl), ZT_OK);
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
    assert_int_equal(verify(f).first_bad, 2);
}

/* An old record whose JSON gives a "seq" no uint64_t can hold (negative, huge), its hash
 * made right: found at its place, the number read without undefined behaviour. */
static void old_record_with_an_impossible_seq_found(void **state)
{
    fixture *f = *state;
    const char *seqs[] = {"-4", "1e300", "-1e300"};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        zt_txn *t;
        unsigned char val[256], key[8] = {0, 0, 0, 0, 0, 0, 0, 1};
        int n = snprintf((char *)val + 64, sizeof val - 64,
                         "{\"seq\":%s,\"time\":1,\"actor\":\"old\"}", seqs[i]);
        memset(val + 32, 0, 32);
        crypto_generichash(val, 32, val + 32, 32 + (size_t)n, NULL, 0);
        assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
        assert_int_equal(zt_put(t, zt__audit_db(&f->srv), key, 8, val, 64 + (size_t)n), ZT_OK);
        assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
        assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
        zt_audit_report r = verify(f);
        assert_int_equal(r.first_bad, 1);
        assert_non_null(strstr(r.reason, "another place"));
    }
}

/* Record 5 changed and its hash made to match: the next record's prev no longer does. */
static void rehash_5(stored *s)
{
    unsigned char *p = rec(s, 5);
    p[s->rlen[4] - 1] ^= 0x01; /* the last byte of its last field */
    crypto_generichash(p + R_HASH, 32, p + R_PREV, s->rlen[4] - R_PREV, NULL, 0);
}

static void rehashed_record_breaks_the_next_link(void **state)
{
    found_in_both_layouts(state, rehash_5, 6, "does not follow", -1);
}

static void checkpoint_pins_the_head(void **state)
{
    fixture *f = *state;
    append_n(f, 2);
    append_batch(f, 2);
    assert_int_equal(zt__audit_checkpoint(&f->srv), ZT_OK);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.checkpoints, 2); /* the log's first record, and its head */
    /* Rewrite the last record AND its hash consistently: the chain alone cannot tell, the
     * signed checkpoint can. */
    stored s;
    load(f, &s);
    unsigned char *p = rec(&s, 4);
    assert_int_equal(p[R_BODY + 17] << 8 | p[R_BODY + 18], 201); /* status */
    p[R_BODY + 18] = 200 & 0xff;
    crypto_generichash(p + R_HASH, 32, p + R_PREV, s.rlen[3] - R_PREV, NULL, 0);
    store(f, &s);
    r = verify(f);
    assert_int_equal(r.first_bad, 4);
    assert_non_null(strstr(r.reason, "checkpoint"));
}

/* The seq of each checkpoint, in order, and what each says came before it. */
static size_t checkpoints(fixture *f, uint64_t *seqs, uint64_t *prevs, size_t cap)
{
    zt_txn *t;
    zt_db *cps;
    zt_cursor *c;
    zt_kv kv;
    size_t n = 0;
    assert_int_equal(zt__store_db(f->srv.store, "_core", "audit_checkpoints", &cps), ZT_OK);
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, cps, &c), ZT_OK);
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK && n < cap;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), n++) {
        cJSON *o = cJSON_ParseWithLength(kv.val, kv.vlen);
        seqs[n] = zt__be64_get(kv.key);
        prevs[n] = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "prev"));
        assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "every")),
                         (double)f->conf.audit_checkpoint_every);
        cJSON_Delete(o);
    }
    zt_cursor_close(c);
    zt__store_end(f->srv.store, t, false);
    return n;
}

/* A checkpoint falls due at the record that reaches checkpoint_every, inside a batch too
 * (not at the batch's end, past it), and names the one before it; a log's first record
 * is signed at once. */
static void checkpoints_fall_due_inside_a_batch(void **state)
{
    fixture *f = *state;
    f->conf.audit_checkpoint_every = 3;
    append_batch(f, 8);
    append_n(f, 2);
    uint64_t seqs[8], prevs[8];
    assert_int_equal(checkpoints(f, seqs, prevs, 8), 4);
    const uint64_t want[] = {1, 4, 7, 10}, before[] = {0, 1, 4, 7};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seqs[i], want[i]);
        assert_int_equal(prevs[i], before[i]);
    }
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.checkpoints, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(intact_chain_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_found_at_its_record, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_found_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(deleted_record_found, setup, teardown),
        cmocka_unit_test_setup_teardown(deleted_batch_found, setup, teardown),
        cmocka_unit_test_setup_teardown(reordered_records_found, setup, teardown),
        cmocka_unit_test_setup_teardown(value_under_another_key_found, setup, teardown),
        cmocka_unit_test_setup_teardown(rolled_back_append_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(records_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(old_format_log_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(old_record_with_an_impossible_seq_found, setup, teardown),
        cmocka_unit_test_setup_teardown(rehashed_record_breaks_the_next_link, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoint_pins_the_head, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints_fall_due_inside_a_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
