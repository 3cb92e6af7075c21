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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_grows_and_resets),
        cmocka_unit_test(buf_json_escapes),
        cmocka_unit_test(pct_decode_cases),
        cmocka_unit_test(ids_are_ordered_and_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
