/* test_util.c: arena, buffers, percent-decoding, ids. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
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

/* zt__json_parse_strict: what cJSON takes and the node refuses, each with its reason. */
static void json_strict_refuses_with_reasons(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"{\"p\":\"X\\u0000zzz\"}", "\\u0000"},
        {"{\"p\":\"X\\u0000\"}", "(at byte 7)"},
        {"\"\\ud800\"", "unpaired surrogate"},
        {"\"\\ud800\\u0041\"", "unpaired surrogate"},
        {"\"\\udfff\"", "unpaired surrogate"},
        {"\"a\tb\"", "control character"},
        {"\"a\nb\"", "control character"},
        {"\"\xff\"", "not valid UTF-8"},
        {"\"\xc0\xaf\"", "not valid UTF-8"},     /* overlong "/" */
        {"\"\xed\xa0\x80\"", "not valid UTF-8"}, /* an encoded surrogate */
        {"\"\xe6\x94\"", "not valid UTF-8"},     /* cut short */
        {"{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", "\"c\" appears twice"},
        {"{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k4\":"
         "9}",
         "\"k4\" appears twice"},
        {"[1] x", "something follows"},
        {"{\"a\" 1}", "not valid JSON (at byte 5)"},
    };
    char why[200];
    cJSON *j;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = zt__json_parse_strict(bad[i].text, strlen(bad[i].text), &j, why, sizeof why);
        if (rc != ZT_EINVAL || !strstr(why, bad[i].why))
            fail_msg("%s: rc %d, \"%s\" (wanted \"%s\")", bad[i].text, rc, why, bad[i].why);
        assert_null(j);
    }
    /* a raw NUL byte is not JSON either, wherever it is */
    assert_int_equal(zt__json_parse_strict("\"a\0b\"", 5, &j, why, sizeof why), ZT_EINVAL);
    assert_non_null(strstr(why, "NUL"));
    /* nesting: 1000 deep is fine, 1001 is not */
    char deep[2100];
    for (int depth = 1000; depth <= 1001; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        int rc = zt__json_parse_strict(deep, 2 * (size_t)depth, &j, why, sizeof why);
        if (depth == 1000) {
            assert_int_equal(rc, ZT_OK);
            cJSON_Delete(j);
        } else {
            assert_int_equal(rc, ZT_EINVAL);
            assert_non_null(strstr(why, "deeper than 1000"));
        }
    }
    /* and what it takes: escapes of every kind, a pair, text in any script, trailing space */
    const char *good =
        "{\"t\":\"a\\tb\\n\\\"\\\\\\/\\u00e9\\ud83d\\ude00\xe6\x94\xbf\",\"n\":[1,-2.5e3]}\r\n ";
    assert_int_equal(zt__json_parse_strict(good, strlen(good), &j, why, sizeof why), ZT_OK);
    assert_string_equal(cJSON_GetObjectItem(j, "t")->valuestring,
                        "a\tb\n\"\\/\xc3\xa9\xf0\x9f\x98\x80\xe6\x94\xbf");
    cJSON_Delete(j);
}

/* zt_json_print writes every number so that it reads back as the same double, integers up
 * to 2^53 without an exponent (cJSON writes 5000000000000001 as 5e+15). */
static void json_print_is_exact(void **state)
{
    static const struct {
        double d;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-0.0, "-0"},
        {1, "1"},
        {-42, "-42"},
        {1e15, "1000000000000000"},
        {5000000000000001.0, "5000000000000001"},
        {9007199254740992.0, "9007199254740992"},
        {-9007199254740992.0, "-9007199254740992"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {1e300, "1e+300"},
        {2.5, "2.5"},
        {1e20, "1e+20"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zt__json_num(out, cases[i].d);
        assert_string_equal(out, cases[i].want);
    }
    /* random doubles and integers read back exactly */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        if (i % 2) {
            memcpy(&d, &x, sizeof d);
            if (!isfinite(d)) continue;
        } else {
            d = (double)(int64_t)(x % 18014398509481985ull) - 9007199254740992.0;
        }
        zt__json_num(out, d);
        if (strtod(out, NULL) != d) fail_msg("%.17g printed as %s", d, out);
    }
    /* a whole tree: like cJSON's compact text, numbers exact, NaN as null */
    cJSON *o =
        cJSON_Parse("{\"a\":[1,2.5,\"x\\u0001\\b\\f\",true,false,null,{}],\"b\":{\"c\":[]}}");
    cJSON_AddNumberToObject(o, "big", 5000000000000001.0);
    cJSON_AddNumberToObject(o, "nan", NAN);
    char *text = zt_json_print(o);
    assert_string_equal(text,
                        "{\"a\":[1,2.5,\"x\\u0001\\b\\f\",true,false,null,{}],\"b\":{\"c\":[]},"
                        "\"big\":5000000000000001,\"nan\":null}");
    free(text);
    cJSON_Delete(o);
    /* stored before input was checked: what is not UTF-8 is written as U+FFFD */
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "Li\xff\xfe Ming");
    cJSON_AddStringToObject(o, "k\xc0", "\xe6\x94\xbf");
    text = zt_json_print(o);
    assert_string_equal(text, "{\"name\":\"Li\xef\xbf\xbd\xef\xbf\xbd Ming\",\"k\xef\xbf\xbd\":"
                              "\"\xe6\x94\xbf\"}");
    free(text);
    cJSON_Delete(o);
}

/* zt_text_problem: what a person's name or a title may be. */
static void text_rules(void **state)
{
    assert_null(zt_text_problem("张三", 200, 0));
    assert_null(zt_text_problem("O'Brien-Smith Jr.", 200, 0));
    assert_null(zt_text_problem("line one\nline two\ttabbed", 200, ZT_TEXT_LINES));
    assert_string_equal(zt_text_problem("", 200, 0), "is empty");
    assert_string_equal(zt_text_problem(NULL, 200, 0), "is empty");
    assert_string_equal(zt_text_problem("   ", 200, 0), "is only spaces");
    assert_string_equal(zt_text_problem("\xe3\x80\x80\xc2\xa0", 200, 0), "is only spaces");
    assert_non_null(strstr(zt_text_problem("a\nb", 200, 0), "control character"));
    assert_non_null(strstr(zt_text_problem("a\x01"
                                           "b",
                                           200, ZT_TEXT_LINES),
                           "control character"));
    assert_non_null(strstr(zt_text_problem("a\x7f", 200, 0), "control character"));
    assert_non_null(strstr(zt_text_problem("a\xc2\x85", 200, 0), "control character")); /* NEL */
    assert_non_null(strstr(zt_text_problem("admin\xe2\x80\xaegpj.exe", 200, 0), "direction"));
    assert_non_null(strstr(zt_text_problem("x\xe2\x81\xa6y", 200, 0), "direction"));
    assert_string_equal(zt_text_problem("\xff", 200, 0), "is not valid UTF-8");
    /* the limit counts characters, not bytes: 200 Chinese characters are 600 bytes */
    char name[700] = "";
    for (int i = 0; i < 200; i++) strcat(name, "\xe6\x94\xbf");
    assert_null(zt_text_problem(name, 200, 0));
    strcat(name, "\xe6\x94\xbf");
    assert_string_equal(zt_text_problem(name, 200, 0), "is too long");
}

/* Problem details echo what a client sent: bytes that are not UTF-8 become U+FFFD. */
static void json_text_replaces_what_is_not_utf8(void **state)
{
    zt_buf b = {0};
    assert_int_equal(zt__buf_json_text(&b, "/n/\xff\xfe/\xe6\x94\xbf\xe6", 10), ZT_OK);
    assert_int_equal(zt__buf_append(&b, "", 1), ZT_OK);
    assert_string_equal(b.data, "\"/n/\xef\xbf\xbd\xef\xbf\xbd/\xe6\x94\xbf\xef\xbf\xbd\"");
    zt__buf_free(&b);
}

/* trusted_proxies: addresses and networks, v4 and v6, and what they match. */
static void netmasks(void **state)
{
    zt_netmask m[4];
    assert_null(zt__netmask_parse("127.0.0.1", &m[0]));
    assert_null(zt__netmask_parse("10.0.0.0/8", &m[1]));
    assert_null(zt__netmask_parse("2001:db8::/32", &m[2]));
    assert_null(zt__netmask_parse("172.16.0.0/12", &m[3]));
    assert_true(zt__netmask_match(m, 4, "127.0.0.1"));
    assert_false(zt__netmask_match(m, 4, "127.0.0.2"));
    assert_true(zt__netmask_match(m, 4, "10.255.1.2"));
    assert_false(zt__netmask_match(m, 4, "11.0.0.1"));
    assert_true(zt__netmask_match(m, 4, "172.31.255.255"));
    assert_false(zt__netmask_match(m, 4, "172.32.0.0"));
    assert_true(zt__netmask_match(m, 4, "2001:db8:ffff::1"));
    assert_false(zt__netmask_match(m, 4, "2001:db9::1"));
    assert_true(zt__netmask_match(m, 4, "::ffff:10.1.1.1")); /* a v4 client on a v6 socket */
    assert_false(zt__netmask_match(m, 4, "not an address"));
    assert_false(zt__netmask_match(m, 0, "127.0.0.1"));
    zt_netmask all;
    assert_null(zt__netmask_parse("0.0.0.0/0", &all));
    assert_true(zt__netmask_match(&all, 1, "203.0.113.9"));
    assert_false(zt__netmask_match(&all, 1, "::1"));
    assert_non_null(strstr(zt__netmask_parse("10.1.2.3/8", &all), "after its prefix"));
    assert_non_null(strstr(zt__netmask_parse("10.0.0.0/33", &all), "0..32"));
    assert_non_null(strstr(zt__netmask_parse("::/129", &all), "0..128"));
    assert_non_null(strstr(zt__netmask_parse("localhost", &all), "not an IPv4 or IPv6"));
    assert_non_null(zt__netmask_parse("10.0.0.0/", &all));
    assert_non_null(zt__netmask_parse("", &all));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_grows_and_resets),
        cmocka_unit_test(arena_printf_in_place_and_across_blocks),
        cmocka_unit_test(buf_json_escapes),
        cmocka_unit_test(json_strict_refuses_with_reasons),
        cmocka_unit_test(json_print_is_exact),
        cmocka_unit_test(text_rules),
        cmocka_unit_test(json_text_replaces_what_is_not_utf8),
        cmocka_unit_test(netmasks),
        cmocka_unit_test(ids_hold_the_time_and_count_by_one),
        cmocka_unit_test(pct_decode_cases),
        cmocka_unit_test(ids_are_ordered_and_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
