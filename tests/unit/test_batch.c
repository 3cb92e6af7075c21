/* test_batch.c: when the group commit waits for its writers (batch.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "core.h"

#define MS   UINT64_C(1000000)
#define WAIT (1 * MS) /* limits.commit_wait */

/* Connections: each keeps the number of the last batch it wrote in. */
static uint64_t conn[64];

/* A fresh state and connections, after a first batch in which connections 0..n-1 wrote,
 * ended at t. */
static void after_first_batch(zt__batchwait *bw, int n, uint64_t t)
{
    zt__bw_init(bw);
    memset(conn, 0, sizeof conn);
    for (int i = 0; i < n; i++) zt__bw_join(bw, &conn[i]);
    zt__bw_end(bw, t);
}

static void a_lone_writer_never_waits(void **state)
{
    (void)state;
    zt__batchwait bw;
    zt__bw_init(&bw);
    memset(conn, 0, sizeof conn);
    uint64_t t = 100 * MS;
    for (int i = 0; i < 5; i++, t += MS / 2) {
        zt__bw_join(&bw, &conn[0]);
        assert_int_equal(zt__bw_wait(&bw, t, WAIT), 0);
        zt__bw_end(&bw, t + MS / 10);
    }
    assert_int_equal(bw.waited, 0);
}

static void the_writers_of_the_last_two_batches_are_waited_for(void **state)
{
    (void)state;
    zt__batchwait bw;
    zt__bw_init(&bw);
    memset(conn, 0, sizeof conn);
    uint64_t t = 100 * MS;
    zt__bw_join(&bw, &conn[0]);
    zt__bw_join(&bw, &conn[1]);
    assert_int_equal(zt__bw_wait(&bw, t, WAIT), 0); /* nobody expected yet */
    zt__bw_end(&bw, t + 100000);
    assert_int_equal(bw.expected, 2);
    /* the next batch waits until as many have written in it */
    zt__bw_join(&bw, &conn[2]);
    uint64_t w = zt__bw_wait(&bw, t + 150000, WAIT);
    assert_true(w > 0 && w <= WAIT);
    zt__bw_join(&bw, &conn[0]);
    assert_int_equal(zt__bw_wait(&bw, t + 200000, WAIT), 0);
    zt__bw_end(&bw, t + 250000);
    /* 0 and 2 wrote in this one, 0 and 1 in the one before: three writers */
    assert_int_equal(bw.expected, 3);
    zt__bw_join(&bw, &conn[1]);
    assert_true(zt__bw_wait(&bw, t + 300000, WAIT) > 0);
    zt__bw_join(&bw, &conn[2]);
    zt__bw_join(&bw, &conn[2]); /* a second write of a connection counts once */
    assert_true(zt__bw_wait(&bw, t + 350000, WAIT) > 0);
    zt__bw_join(&bw, &conn[0]);
    assert_int_equal(zt__bw_wait(&bw, t + 400000, WAIT), 0);
    zt__bw_end(&bw, t + 450000);
    assert_int_equal(bw.expected, 3);
    assert_int_equal(bw.waited, 2);
    assert_int_equal(bw.timed_out, 0);
}

static void a_wait_ends_after_commit_wait(void **state)
{
    (void)state;
    zt__batchwait bw;
    uint64_t t = 100 * MS;
    after_first_batch(&bw, 2, t);
    zt__bw_join(&bw, &conn[0]); /* 1 does not come back */
    uint64_t w = zt__bw_wait(&bw, t + 100000, WAIT);
    assert_int_equal(w, WAIT); /* counted from when the batch was first seen */
    assert_int_equal(zt__bw_wait(&bw, t + 600000, WAIT), WAIT - 500000);
    assert_int_equal(zt__bw_wait(&bw, t + 100000 + WAIT, WAIT), 0);
    assert_int_equal(bw.waited, 1);
    assert_int_equal(bw.timed_out, 1);
    zt__bw_end(&bw, t + 100000 + WAIT);
    /* 1 wrote in the batch before that one: expected once more */
    assert_int_equal(bw.expected, 2);
    zt__bw_join(&bw, &conn[0]);
    assert_true(zt__bw_wait(&bw, t + 2 * WAIT, WAIT) > 0);
    assert_int_equal(zt__bw_wait(&bw, t + 3 * WAIT, WAIT), 0);
    zt__bw_end(&bw, t + 3 * WAIT);
    assert_int_equal(bw.expected, 1); /* and then no longer */
    zt__bw_join(&bw, &conn[0]);
    assert_int_equal(zt__bw_wait(&bw, t + 3 * WAIT + 1000, WAIT), 0);
    assert_int_equal(bw.timed_out, 2);
}

static void writes_far_apart_or_no_wait_configured_commit_at_once(void **state)
{
    (void)state;
    zt__batchwait bw;
    uint64_t t = 100 * MS;
    after_first_batch(&bw, 2, t);
    /* the next write comes 5 ms later: not a stream, whoever is expected */
    zt__bw_join(&bw, &conn[0]);
    assert_int_equal(zt__bw_wait(&bw, t + 5 * MS, WAIT), 0);
    zt__bw_end(&bw, t + 5 * MS);
    zt__bw_join(&bw, &conn[0]);
    zt__bw_join(&bw, &conn[1]);
    zt__bw_end(&bw, t + 6 * MS);
    zt__bw_join(&bw, &conn[0]);
    assert_int_equal(zt__bw_wait(&bw, t + 6 * MS + 1000, 0), 0); /* commit_wait = 0 */
    assert_int_equal(bw.waited, 0);
}

static void a_closed_connection_is_not_waited_for(void **state)
{
    (void)state;
    zt__batchwait bw;
    uint64_t t = 100 * MS;
    after_first_batch(&bw, 3, t);
    assert_int_equal(bw.expected, 3);
    zt__bw_gone(&bw, conn[2]);
    assert_int_equal(bw.expected, 2);
    zt__bw_join(&bw, &conn[0]);
    assert_true(zt__bw_wait(&bw, t + 1000, WAIT) > 0);
    zt__bw_gone(&bw, conn[1]);
    assert_int_equal(zt__bw_wait(&bw, t + 2000, WAIT), 0);
    /* one that wrote in the open batch, or never, changes nothing */
    zt__bw_gone(&bw, conn[0]);
    zt__bw_gone(&bw, 0);
    assert_int_equal(bw.expected, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_lone_writer_never_waits),
        cmocka_unit_test(the_writers_of_the_last_two_batches_are_waited_for),
        cmocka_unit_test(a_wait_ends_after_commit_wait),
        cmocka_unit_test(writes_far_apart_or_no_wait_configured_commit_at_once),
        cmocka_unit_test(a_closed_connection_is_not_waited_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
