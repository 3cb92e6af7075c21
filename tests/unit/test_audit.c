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

static zt_audit_report verify(fixture *f)
{
    zt_txn *t;
    zt_audit_report r;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt__audit_verify(t, zt__audit_db(&f->srv), &r), ZT_OK);
    assert_int_equal(zt__audit_verify_checkpoints(&f->srv, t, &r), ZT_OK);
    zt__store_end(f->srv.store, t, false);
    return r;
}

static void key8(unsigned char k[8], uint64_t seq)
{
    for (int i = 7; i >= 0; i--, seq >>= 8) k[i] = (unsigned char)seq;
}

/* Read record seq into buf (returns its length). */
static size_t get_rec(fixture *f, uint64_t seq, unsigned char *buf, size_t cap)
{
    zt_txn *t;
    unsigned char k[8];
    const void *v;
    size_t vl;
    key8(k, seq);
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, zt__audit_db(&f->srv), k, 8, &v, &vl), ZT_OK);
    assert_true(vl <= cap);
    memcpy(buf, v, vl);
    zt__store_end(f->srv.store, t, false);
    return vl;
}

static void put_rec(fixture *f, uint64_t seq, const unsigned char *buf, size_t len)
{
    zt_txn *t;
    unsigned char k[8];
    key8(k, seq);
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    if (buf)
        assert_int_equal(zt_put(t, zt__audit_db(&f->srv), k, 8, buf, len), ZT_OK);
    else
        assert_int_equal(zt_del(t, zt__audit_db(&f->srv), k, 8), ZT_OK);
    assert_int_equal(zt__store_end(f->srv.store, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
}

static void intact_chain_verifies(void **state)
{
    fixture *f = *state;
    append_n(f, 10);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.records, 10);
}

static void flipped_byte_found_at_its_record(void **state)
{
    fixture *f = *state;
    append_n(f, 10);
    unsigned char rec[1024];
    /* every region of the record: its hash, its prev, its JSON */
    size_t offsets[] = {3, 40, 64 + 10};
    for (size_t i = 0; i < 3; i++) {
        size_t n = get_rec(f, 5, rec, sizeof rec);
        rec[offsets[i] < n ? offsets[i] : n - 1] ^= 0x01;
        put_rec(f, 5, rec, n);
        zt_audit_report r = verify(f);
        assert_int_equal(r.first_bad, 5);
        rec[offsets[i] < n ? offsets[i] : n - 1] ^= 0x01;
        put_rec(f, 5, rec, n);
        assert_int_equal(verify(f).first_bad, 0);
    }
}

static void deleted_record_found(void **state)
{
    fixture *f = *state;
    append_n(f, 10);
    put_rec(f, 6, NULL, 0);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 6);
    assert_int_equal(r.records, 5);
}

static void reordered_records_found(void **state)
{
    fixture *f = *state;
    append_n(f, 10);
    unsigned char a[1024], b[1024];
    size_t na = get_rec(f, 3, a, sizeof a), nb = get_rec(f, 4, b, sizeof b);
    put_rec(f, 3, b, nb);
    put_rec(f, 4, a, na);
    assert_int_equal(verify(f).first_bad, 3);
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

static void checkpoint_pins_the_head(void **state)
{
    fixture *f = *state;
    append_n(f, 4);
    assert_int_equal(zt__audit_checkpoint(&f->srv), ZT_OK);
    zt_audit_report r = verify(f);
    assert_int_equal(r.first_bad, 0);
    assert_int_equal(r.checkpoints, 1);
    /* Rewrite the last record AND its hash consistently: the chain alone cannot tell, the
     * signed checkpoint can. */
    unsigned char rec[1024], prev[32];
    size_t n = get_rec(f, 4, rec, sizeof rec);
    memcpy(prev, rec + 32, 32);
    char *json = (char *)rec + 64;
    char *p = strstr(json, "\"status\":201");
    assert_non_null(p);
    p[11] = '0'; /* 201 → 200 */

    unsigned char buf[1100];
    memcpy(buf, prev, 32);
    memcpy(buf + 32, json, n - 64);
    crypto_generichash(rec, 32, buf, 32 + n - 64, NULL, 0);
    put_rec(f, 4, rec, n);
    r = verify(f);
    assert_int_equal(r.first_bad, 4);
    assert_non_null(strstr(r.reason, "checkpoint"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(intact_chain_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_found_at_its_record, setup, teardown),
        cmocka_unit_test_setup_teardown(deleted_record_found, setup, teardown),
        cmocka_unit_test_setup_teardown(reordered_records_found, setup, teardown),
        cmocka_unit_test_setup_teardown(rolled_back_append_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoint_pins_the_head, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
