/* test_timer.c: durable timers in the store: order by due time, ids, cancel rules, the
 * pending count, topics, and a firing the bus refuses losing nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "testutil.h"

typedef struct fixture {
    char dir[64];
    zt_conf conf;
    zt_server srv;
    uv_loop_t loop;
    zt_plugin own, other;
    zt__route own_route, other_route;
    zt_db *due, *ids;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof f->dir, "/tmp/zt-timer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[ZT_ERRLEN];
    f->srv.conf = &f->conf;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->srv.loop = &f->loop;
    assert_int_equal(zt__store_open(&f->srv.store, f->dir, 64 << 20, err, sizeof err), ZT_OK);
    assert_int_equal(zt__timers_open(&f->srv, err, sizeof err), ZT_OK);
    assert_int_equal(zt__store_db(f->srv.store, "_core", "timers", &f->due), ZT_OK);
    assert_int_equal(zt__store_db(f->srv.store, "_core", "timer_ids", &f->ids), ZT_OK);
    f->own.name = "own";
    f->other.name = "other";
    f->own_route.plugin = &f->own;
    f->other_route.plugin = &f->other;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zt__timers_stop(&f->srv);
    zt__timers_close(&f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* close callbacks */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    zt__store_close(f->srv.store);
    assert_int_equal(tu_rm_tree(f->dir), 0);
    free(f);
    return 0;
}

/* A request of plugin p (its route's plugin), method m. */
static zt_req *req_new(fixture *f, zt_plugin *p, const char *m)
{
    zt_req *r = calloc(1, sizeof *r);
    r->srv = &f->srv;
    r->method = m;
    r->path = "/x";
    r->match.route = p == &f->own ? &f->own_route : &f->other_route;
    return r;
}

/* End the request's transaction (kept or not) and commit the batch. */
static void req_end(fixture *f, zt_req *r, bool keep)
{
    if (r->txn) assert_int_equal(zt__store_end(f->srv.store, r->txn, keep), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
    if (keep) zt__timers_after_commit(&f->srv);
    free(r);
}

static uint64_t be(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

/* The committed timers, in key order, and the pending count. */
typedef struct listing {
    size_t n;
    uint64_t pending;
    int64_t due[16];
    char id[16][27];
} listing;

/* The listing, after checking that it holds n timers and the count says so. */
static listing list(fixture *f, size_t n)
{
    listing l = {0};
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, f->due, &c), ZT_OK);
    while (zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv) == ZT_OK) {
        assert_int_equal(kv.klen, 34);
        assert_true(l.n < 16);
        l.due[l.n] = (int64_t)be(kv.key);
        memcpy(l.id[l.n], (const char *)kv.key + 8, 26);
        l.id[l.n][26] = 0;
        l.n++;
    }
    zt_cursor_close(c);
    const void *v;
    size_t vlen;
    if (zt_get(t, f->ids, "pending", 7, &v, &vlen) == ZT_OK) {
        assert_int_equal(vlen, 8);
        l.pending = be(v);
    }
    zt__store_end(f->srv.store, t, false);
    assert_int_equal(l.n, n);
    assert_int_equal(l.pending, n);
    return l;
}

static void ordered_by_due_time(void **state)
{
    fixture *f = *state;
    zt_req *r = req_new(f, &f->own, "POST");
    char id[4][27];
    int64_t set[4] = {3000, 1000, -5, 2000};
    for (int i = 0; i < 4; i++)
        assert_int_equal(zt_timer_at(r, set[i], "own.tick", NULL, id[i]), ZT_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(strlen(id[i]), 26);
    req_end(f, r, true);

    listing l = list(f, 4);
    /* a due time before 1970 is due at once: it sorts first */
    int64_t want[4] = {0, 1000, 2000, 3000};
    const char *want_id[4] = {id[2], id[1], id[3], id[0]};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l.due[i], want[i]);
        assert_string_equal(l.id[i], want_id[i]);
    }
}

static void a_rolled_back_request_leaves_no_timer(void **state)
{
    fixture *f = *state;
    zt_req *r = req_new(f, &f->own, "POST");
    assert_int_equal(zt_timer_at(r, 5000, "own.tick", NULL, NULL), ZT_OK);
    req_end(f, r, false);
    list(f, 0);
}

static void cancel_only_by_the_same_plugin(void **state)
{
    fixture *f = *state;
    zt_req *r = req_new(f, &f->own, "POST");
    char a[27], b[27];
    assert_int_equal(zt_timer_at(r, 1000, "own.tick", NULL, a), ZT_OK);
    assert_int_equal(zt_timer_at(r, 2000, "own.tick", NULL, b), ZT_OK);
    req_end(f, r, true);

    r = req_new(f, &f->other, "POST");
    assert_int_equal(zt_timer_cancel(r, a), ZT_ENOTFOUND);
    req_end(f, r, true);

    r = req_new(f, &f->own, "POST");
    assert_int_equal(zt_timer_cancel(r, "short"), ZT_ENOTFOUND);
    assert_int_equal(zt_timer_cancel(r, NULL), ZT_ENOTFOUND);
    assert_int_equal(zt_timer_cancel(r, "00000000000000000000000000"), ZT_ENOTFOUND);
    assert_int_equal(zt_timer_cancel(r, a), ZT_OK);
    assert_int_equal(zt_timer_cancel(r, a), ZT_ENOTFOUND);
    req_end(f, r, true);

    listing l = list(f, 1);
    assert_string_equal(l.id[0], b);
}

static void refused_arguments(void **state)
{
    fixture *f = *state;
    zt_req *g = req_new(f, &f->own, "GET");
    assert_int_equal(zt_timer_at(g, 1, "own.tick", NULL, NULL), ZT_EREADONLY);
    assert_int_equal(zt_timer_cancel(g, "00000000000000000000000000"), ZT_EREADONLY);
    req_end(f, g, false);

    zt_req *r = req_new(f, &f->own, "POST");
    char long_topic[130];
    memset(long_topic, 'a', 129);
    long_topic[129] = 0;
    const char *bad[] = {"",        ".a",  "a.",       "a..b",   "a b",
                         "a/b",     "a.*", long_topic, "_other", "_other.x",
                         "_ownx.y", "_",   "_own-x",   "tick\n", NULL};
    for (int i = 0; bad[i]; i++)
        if (zt_timer_at(r, 1, bad[i], NULL, NULL) != ZT_EINVAL) fail_msg("topic %s", bad[i]);
    long_topic[128] = 0;
    const char *good[] = {"a", "own.tick", "A-b_c.d", "_own", "_own.x", long_topic, NULL};
    for (int i = 0; good[i]; i++)
        if (zt_timer_at(r, 1, good[i], NULL, NULL) != ZT_OK) fail_msg("topic %s", good[i]);

    /* a payload over 256 KiB */
    size_t big = 256 * 1024;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = 0;
    cJSON *p = cJSON_CreateString(s); /* with its quotes: 2 bytes over */
    free(s);
    assert_int_equal(zt_timer_at(r, 1, "own.tick", p, NULL), ZT_ETOOBIG);
    cJSON_Delete(p);
    req_end(f, r, true);

    list(f, 6);
}

static void metrics_show_pending_and_next(void **state)
{
    fixture *f = *state;
    zt_req *r = req_new(f, &f->own, "POST");
    int64_t now = zt_now_ms();
    assert_int_equal(zt_timer_at(r, now + 3600 * 1000, "own.tick", NULL, NULL), ZT_OK);
    assert_int_equal(zt_timer_at(r, now + 7200 * 1000, "own.tick", NULL, NULL), ZT_OK);
    req_end(f, r, true);
    zt_buf b = {0};
    assert_int_equal(zt__timers_metrics(&f->srv, &b), ZT_OK);
    assert_non_null(strstr(b.data, "\nzt_timers_pending 2\n"));
    assert_non_null(strstr(b.data, "\nzt_timers_fired_total 0\n"));
    const char *nd = strstr(b.data, "\nzt_timers_next_due_seconds ");
    assert_non_null(nd);
    double secs = strtod(nd + strlen("\nzt_timers_next_due_seconds "), NULL);
    assert_true(secs > 3500 && secs <= 3600);
    zt__buf_free(&b);
}

/* Without a bus the event cannot be written: the timer must stay, whole. */
static void a_refused_firing_loses_nothing(void **state)
{
    fixture *f = *state;
    zt_req *r = req_new(f, &f->own, "POST");
    char id[27];
    cJSON *p = cJSON_Parse("{\"case\":7}");
    assert_int_equal(zt_timer_at(r, zt_now_ms() - 1000, "own.tick", p, id), ZT_OK);
    cJSON_Delete(p);
    req_end(f, r, true);
    zt__timers_start(&f->srv); /* due already: tries at once */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (zt__store_batch_open(f->srv.store)) {
        assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
        zt__timers_after_commit(&f->srv);
    }
    listing l = list(f, 1);
    assert_string_equal(l.id[0], id);
    zt_buf b = {0};
    assert_int_equal(zt__timers_metrics(&f->srv, &b), ZT_OK);
    assert_non_null(strstr(b.data, "\nzt_timers_fired_total 0\n"));
    zt__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ordered_by_due_time, setup, teardown),
        cmocka_unit_test_setup_teardown(a_rolled_back_request_leaves_no_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_only_by_the_same_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_show_pending_and_next, setup, teardown),
        cmocka_unit_test_setup_teardown(a_refused_firing_loses_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
