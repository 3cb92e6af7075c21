/* test_throttle.c: attempts per key, windows, a full table, client prefixes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "core.h"

#define MINUTE (60 * 1000)

static void sliding_window_counts_until_quiet(void **state)
{
    (void)state;
    zt_throttle *t = zt__throttle_new(16);
    assert_non_null(t);
    assert_int_equal(zt__throttle_get(t, "acct:li").count, 0);
    for (int i = 0; i < 3; i++) /* one every 10 minutes: each within 15 of the last */
        assert_int_equal(
            zt__throttle_note(t, "acct:li", i * 10 * MINUTE, 15 * MINUTE, true, 15 * MINUTE),
            ZT_OK);
    zt_attempts a = zt__throttle_get(t, "acct:li");
    assert_int_equal(a.count, 3);
    assert_int_equal(a.first_ms, 0);
    assert_int_equal(a.last_ms, 20 * MINUTE);
    /* quiet for the window: the next starts again at 1 */
    zt__throttle_note(t, "acct:li", 35 * MINUTE, 15 * MINUTE, true, 15 * MINUTE);
    a = zt__throttle_get(t, "acct:li");
    assert_int_equal(a.count, 1);
    assert_int_equal(a.first_ms, 35 * MINUTE);
    assert_int_equal(zt__throttle_get(t, "acct:wang").count, 0);
    zt__throttle_clear(t, "acct:li");
    assert_int_equal(zt__throttle_get(t, "acct:li").count, 0);
    assert_int_equal(zt__throttle_size(t), 0);
    zt__throttle_free(t);
}

static void fixed_window_counts_from_the_first(void **state)
{
    (void)state;
    zt_throttle *t = zt__throttle_new(16);
    for (int i = 0; i < 6; i++) /* one every 10 minutes: the hour is from the first */
        zt__throttle_note(t, "reg:10.0.0.1", i * 10 * MINUTE, 60 * MINUTE, false, 60 * MINUTE);
    assert_int_equal(zt__throttle_get(t, "reg:10.0.0.1").count, 6);
    zt__throttle_note(t, "reg:10.0.0.1", 60 * MINUTE, 60 * MINUTE, false, 60 * MINUTE);
    zt_attempts a = zt__throttle_get(t, "reg:10.0.0.1");
    assert_int_equal(a.count, 1);
    assert_int_equal(a.first_ms, 60 * MINUTE);
    /* a clock that went back starts a new window, never a negative one */
    zt__throttle_note(t, "reg:10.0.0.1", 30 * MINUTE, 60 * MINUTE, false, 60 * MINUTE);
    assert_int_equal(zt__throttle_get(t, "reg:10.0.0.1").first_ms, 30 * MINUTE);
    zt__throttle_free(t);
}

/* A full table forgets what no longer matters first; with everything live it forgets
 * something rather than stop counting, and counts that. */
static void full_table_keeps_counting(void **state)
{
    (void)state;
    enum { MAX = 64 };
    zt_throttle *t = zt__throttle_new(MAX);
    char key[32];
    /* MAX keys that matter for one minute */
    for (int i = 0; i < MAX; i++) {
        snprintf(key, sizeof key, "addr:stale%d", i);
        zt__throttle_note(t, key, 0, MINUTE, true, MINUTE);
    }
    assert_int_equal(zt__throttle_size(t), MAX);
    /* later, a locked account: the stale ones go, it is counted and nothing live is lost */
    for (int i = 0; i < 5; i++)
        zt__throttle_note(t, "acct:target", 2 * MINUTE, MINUTE, true, 60 * MINUTE);
    assert_int_equal(zt__throttle_get(t, "acct:target").count, 5);
    assert_int_equal(zt__throttle_size(t), 1);
    assert_int_equal(zt__throttle_evictions(t), 0);
    /* fill it with live keys: the table never grows past MAX and keeps counting new ones */
    for (int i = 0; i < 4 * MAX; i++) {
        snprintf(key, sizeof key, "acct:flood%d", i);
        assert_int_equal(zt__throttle_note(t, key, 2 * MINUTE + i, MINUTE, true, MINUTE), ZT_OK);
        assert_int_equal(zt__throttle_get(t, key).count, 1);
        assert_true(zt__throttle_size(t) <= MAX);
    }
    assert_true(zt__throttle_evictions(t) >= 3 * MAX);
    /* keys tried once each made room among themselves: the locked account was kept */
    assert_int_equal(zt__throttle_get(t, "acct:target").count, 5);
    zt__throttle_free(t);
}

/* Of entries with as many attempts, the one that stops mattering first goes. */
static void eviction_prefers_what_matters_least(void **state)
{
    (void)state;
    zt_throttle *t = zt__throttle_new(3);
    for (int i = 0; i < 5; i++) zt__throttle_note(t, "acct:locked", 0, MINUTE, true, 60 * MINUTE);
    zt__throttle_note(t, "addr:a", 0, MINUTE, true, 2 * MINUTE);
    zt__throttle_note(t, "addr:b", 0, MINUTE, true, 3 * MINUTE);
    /* full, nothing stale at 30 s: addr:a goes (one attempt, held the shortest) */
    zt__throttle_note(t, "addr:c", 30 * 1000, MINUTE, true, MINUTE);
    assert_int_equal(zt__throttle_size(t), 3);
    assert_int_equal(zt__throttle_evictions(t), 1);
    assert_int_equal(zt__throttle_get(t, "addr:a").count, 0);
    assert_int_equal(zt__throttle_get(t, "addr:b").count, 1);
    assert_int_equal(zt__throttle_get(t, "addr:c").count, 1);
    assert_int_equal(zt__throttle_get(t, "acct:locked").count, 5);
    /* at 4 minutes addr:b and addr:c are stale: a sweep, not an eviction, makes room */
    zt__throttle_note(t, "addr:d", 4 * MINUTE, MINUTE, true, MINUTE);
    assert_int_equal(zt__throttle_evictions(t), 1);
    assert_int_equal(zt__throttle_size(t), 2);
    assert_int_equal(zt__throttle_get(t, "addr:d").count, 1);
    assert_int_equal(zt__throttle_get(t, "acct:locked").count, 5);
    zt__throttle_free(t);
}

static void client_prefixes(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(zt__client_prefix("192.0.2.7", out, sizeof out), ZT_OK);
    assert_string_equal(out, "192.0.2.7");
    assert_int_equal(zt__client_prefix("2001:db8:1:2:aaaa:bbbb:cccc:dddd", out, sizeof out), ZT_OK);
    assert_string_equal(out, "2001:db8:1:2::/64");
    char other[64];
    zt__client_prefix("2001:db8:1:2::1", other, sizeof other);
    assert_string_equal(other, out); /* the same subscriber */
    zt__client_prefix("2001:db8:1:3::1", other, sizeof other);
    assert_string_not_equal(other, out); /* the next network is another */
    assert_int_equal(zt__client_prefix("::ffff:192.0.2.7", out, sizeof out), ZT_OK);
    assert_string_equal(out, "192.0.2.7");
    assert_int_equal(zt__client_prefix("::1", out, sizeof out), ZT_OK);
    assert_string_equal(out, "::/64");
    assert_int_equal(zt__client_prefix("2001:db8:1:2::1", out, 8), ZT_EINVAL);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sliding_window_counts_until_quiet),
        cmocka_unit_test(fixed_window_counts_from_the_first),
        cmocka_unit_test(full_table_keeps_counting),
        cmocka_unit_test(eviction_prefers_what_matters_least),
        cmocka_unit_test(client_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
