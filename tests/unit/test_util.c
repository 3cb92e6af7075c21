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

/* zt__json_valid agrees with cJSON on what is one JSON value. */
static void json_checked_without_building_it(void **state)
{
    (void)state;
    const char *good[] = {"0",
                          "-0",
                          "1.5e-3",
                          "-12E+2",
                          "true",
                          "false",
                          "null",
                          "\"\"",
                          " [ ] ",
                          "{}",
                          "[1,[2,[3]]]",
                          "{\"a\":{\"b\":[null]}}",
                          "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"",
                          "\"\xe6\x94\xbf\xf0\x9f\x98\x80\"",
                          "\n\t{\"k\" : 1 }\r\n"};
    const char *bad[] = {"",
                         " ",
                         "01",
                         "1.",
                         ".5",
                         "-",
                         "1e",
                         "+1",
                         "tru",
                         "nulll",
                         "[1,]",
                         "[1 2]",
                         "{\"a\"}",
                         "{\"a\":1,}",
                         "{a:1}",
                         "{\"a\":1",
                         "\"abc",
                         "\"\\q\"",
                         "\"\\u12\"",
                         "\"\x01\"",
                         "\"\xc0\x80\"",
                         "\"\xed\xa0\x80\"",
                         "\"\xf5\x80\x80\x80\"",
                         "\"\xe6\x94\"",
                         "1 2",
                         "[]]",
                         "'a'"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(zt__json_valid(good[i], strlen(good[i])));
        cJSON *j = cJSON_Parse(good[i]);
        assert_non_null(j); /* cJSON reads them too */
        cJSON_Delete(j);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (zt__json_valid(bad[i], strlen(bad[i]))) fail_msg("accepted: %s", bad[i]);
    /* nesting: 1000 levels pass, 1001 do not */
    char deep[2003];
    memset(deep, '[', 1001);
    memset(deep + 1001, ']', 1001);
    deep[2002] = 0;
    assert_false(zt__json_valid(deep, 2002));
    assert_true(zt__json_valid(deep + 1, 2000));
    /* the length counts, not a NUL */
    assert_true(zt__json_valid("[1]garbage", 3));
    assert_false(zt__json_valid("[1]", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_grows_and_resets),
        cmocka_unit_test(buf_json_escapes),
        cmocka_unit_test(pct_decode_cases),
        cmocka_unit_test(ids_are_ordered_and_unique),
        cmocka_unit_test(json_checked_without_building_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
