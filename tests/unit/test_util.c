/* test_util.c: arena, buffers, percent-decoding, ids. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "core.h"

static void arena_grows_and_resets(void **state)
{
    unsigned char first[1024];
    zt_arena a;
    zt__arena_init(&a, first, sizeof first);
    char *p = zt__arena_alloc(&a, 100);
    assert_non_null(p);
    assert_true((uintptr_t)p % 16 == 0);
    char *big = zt__arena_alloc(&a, 100000); /* needs a block of its own */
    assert_non_null(big);
    memset(big, 1, 100000);
    assert_ptr_not_equal(a.head, a.first);
    char *s = zt__arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    zt__arena_reset(&a);
    assert_ptr_equal(a.head, a.first);
    assert_int_equal(a.first->used, 0);
}

static char *arena_printf(zt_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = zt__arena_vprintf(a, fmt, ap);
    va_end(ap);
    return s;
}

static void arena_printf_in_place_and_across_blocks(void **state)
{
    /* a first block whose room is not a multiple of 16 (requests embed theirs) */
    _Alignas(16) unsigned char first[sizeof(zt_arena_block) + 40];
    zt_arena a;
    zt__arena_init(&a, first, sizeof first);
    /* every length around the end of the first block and of the next one */
    char want[200], *prev = NULL;
    for (int len = 0; len < 150; len++) {
        memset(want, 'a' + len % 26, (size_t)len);
        want[len] = 0;
        char *s = arena_printf(&a, "%s", want);
        assert_non_null(s);
        assert_string_equal(s, want);
        assert_true((uintptr_t)s % 16 == 0);
        if (prev) assert_true(strlen(prev) == (size_t)len - 1); /* not overwritten */
        prev = s;
    }
    char *n = arena_printf(&a, "%d-%s", 42, "x");
    assert_string_equal(n, "42-x");
    zt__arena_reset(&a);
}

static void buf_json_escapes(void **state)
{
    zt_buf b = {0};
    assert_int_equal(zt__buf_json_str(&b, "a\"b\\c\n\x01", 7), ZT_OK);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    zt__buf_free(&b);
    assert_int_equal(zt__buf_printf(&b, "%0300d", 7), ZT_OK);
    assert_int_equal(b.len, 300);
    zt__buf_free(&b);
}

static void pct_decode_cases(void **state)
{
    char out[64];
    assert_int_equal(zt__pct_decode(out, "a%20b+c", 7, true), 5);
    assert_string_equal(out, "a b c");
    assert_int_equal(zt__pct_decode(out, "a+b", 3, false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(zt__pct_decode(out, "%e6%94%bf", 9, false), 3);
    assert_int_equal(zt__pct_decode(out, "%2", 2, false), -1);
    assert_int_equal(zt__pct_decode(out, "%zz", 3, false), -1);
    assert_int_equal(zt__pct_decode(out, "a%00", 4, false), -1);
}

static void ids_are_ordered_and_unique(void **state)
{
    char prev[27], cur[27];
    zt_id(prev);
    assert_int_equal(strlen(prev), 26);
    for (int i = 0; i < 100000; i++) {
        zt_id(cur);
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, 27);
    }
}

/* Decode n digits of an id (Crockford's base 32) from s. */
static uint64_t id_digits(const char *s, int n)
{
    static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        const char *d = strchr(digits, s[i]);
        assert_non_null(d);
        v = v << 5 | (uint64_t)(d - digits);
    }
    return v;
}

static void ids_hold_the_time_and_count_by_one(void **state)
{
    char a[27], b[27];
    int64_t before = zt_now_ms();
    zt_id(a);
    zt_id(b);
    int64_t after = zt_now_ms();
    /* the first 10 digits: the time in ms (48 bits) */
    uint64_t ta = id_digits(a, 10), tb = id_digits(b, 10);
    assert_true(ta >= (uint64_t)before && tb <= (uint64_t)after && ta <= tb);
    /* the last 16: the counter (80 bits), one more for each id; its low 60 bits suffice
     * here unless they carried into the rest between the two, which the assert allows */
    uint64_t ca = id_digits(a + 14, 12), cb = id_digits(b + 14, 12);
    assert_true(cb == ca + 1 || (cb == 0 && ca == (UINT64_C(1) << 60) - 1));
    for (int i = 10; i < 14; i++) assert_true(cb == 0 || a[i] == b[i]);
    /* carrying through the digits: 40 000 ids count 40 000 */
    uint64_t c0 = id_digits(b + 14, 12);
    for (int i = 0; i < 40000; i++) zt_id(b);
    uint64_t c1 = id_digits(b + 14, 12);
    assert_true(c1 - c0 == 40000 || c1 < c0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_grows_and_resets),
        cmocka_unit_test(arena_printf_in_place_and_across_blocks),
        cmocka_unit_test(buf_json_escapes),
        cmocka_unit_test(ids_hold_the_time_and_count_by_one),
        cmocka_unit_test(pct_decode_cases),
        cmocka_unit_test(ids_are_ordered_and_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
