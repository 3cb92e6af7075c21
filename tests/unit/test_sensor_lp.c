/* test_sensor_lp.c: the sensor plugin's line protocol parser and gzip bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gz.h"
#include "lp.h"

static char scratch[4096];
static lp_parser ps;
static lp_point pt;

static void start(const char *text, const char *precision)
{
    int64_t mult = lp_precision(precision);
    assert_true(mult > 0);
    lp_init(&ps, text, strlen(text), mult, scratch, sizeof scratch);
}

/* Parse exactly one point from text. */
static void one(const char *text, const char *precision)
{
    start(text, precision);
    int rc = lp_next(&ps, &pt);
    if (rc != 1) fail_msg("'%s': %d %s", text, rc, ps.err);
    assert_int_equal(lp_next(&ps, &pt), 0);
}

static void str_is(lp_str s, const char *want)
{
    if (s.n != strlen(want) || memcmp(s.p, want, s.n) != 0)
        fail_msg("got '%.*s', want '%s'", (int)s.n, s.p, want);
}

/* The error and its line for text that has a bad line. */
static void bad(const char *text, size_t line, const char *why)
{
    start(text, "ns");
    int rc;
    while ((rc = lp_next(&ps, &pt)) == 1) {
    }
    if (rc != -1) fail_msg("'%s' was accepted", text);
    assert_int_equal(ps.err_line, line);
    if (strcmp(ps.err, why) != 0) fail_msg("'%s': got '%s', want '%s'", text, ps.err, why);
}

static void simple_point(void **state)
{
    one("weather,location=us-midwest,season=summer temperature=82 1465839830100400200", "ns");
    str_is(pt.measurement, "weather");
    assert_int_equal(pt.ntags, 2);
    str_is(pt.tag_key[0], "location");
    str_is(pt.tag_val[0], "us-midwest");
    str_is(pt.tag_key[1], "season");
    str_is(pt.tag_val[1], "summer");
    assert_int_equal(pt.nfields, 1);
    str_is(pt.field[0].key, "temperature");
    assert_int_equal(pt.field[0].type, LP_FLOAT);
    assert_true(pt.field[0].v.f == 82.0);
    assert_true(pt.has_time);
    assert_true(pt.time_ns == INT64_C(1465839830100400200));
    assert_int_equal(pt.line, 1);
}

static void field_types(void **state)
{
    one("m i=-42i,u=18446744073709551615u,f=-1.5e3,g=7,s=\"hi\",b1=t,b2=TRUE,b3=False,b4=f", "ns");
    assert_int_equal(pt.nfields, 9);
    assert_int_equal(pt.field[0].type, LP_INT);
    assert_true(pt.field[0].v.i == -42);
    assert_int_equal(pt.field[1].type, LP_UINT);
    assert_true(pt.field[1].v.u == UINT64_MAX);
    assert_int_equal(pt.field[2].type, LP_FLOAT);
    assert_true(pt.field[2].v.f == -1500.0);
    assert_int_equal(pt.field[3].type, LP_FLOAT);
    assert_true(pt.field[3].v.f == 7.0);
    assert_int_equal(pt.field[4].type, LP_STRING);
    str_is(pt.field[4].v.s, "hi");
    int want[] = {1, 1, 0, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pt.field[5 + i].type, LP_BOOL);
        assert_int_equal(pt.field[5 + i].v.b, want[i]);
    }
    assert_false(pt.has_time);
}

static void every_boolean_spelling(void **state)
{
    const char *yes[] = {"t", "T", "true", "True", "TRUE"},
               *no[] = {"f", "F", "false", "False", "FALSE"};
    char line[64];
    for (int i = 0; i < 5; i++) {
        snprintf(line, sizeof line, "m v=%s", yes[i]);
        one(line, "ns");
        assert_int_equal(pt.field[0].type, LP_BOOL);
        assert_int_equal(pt.field[0].v.b, 1);
        snprintf(line, sizeof line, "m v=%s", no[i]);
        one(line, "ns");
        assert_int_equal(pt.field[0].type, LP_BOOL);
        assert_int_equal(pt.field[0].v.b, 0);
    }
    bad("m v=tRUE", 1, "invalid field value");
    bad("m v=yes", 1, "invalid field value");
}

static void integer_limits(void **state)
{
    one("m a=9223372036854775807i,b=-9223372036854775808i,c=0u", "ns");
    assert_true(pt.field[0].v.i == INT64_MAX);
    assert_true(pt.field[1].v.i == INT64_MIN);
    assert_true(pt.field[2].v.u == 0);
    bad("m a=9223372036854775808i", 1, "value out of range");
    bad("m a=-9223372036854775809i", 1, "value out of range");
    bad("m a=18446744073709551616u", 1, "value out of range");
    bad("m a=-1u", 1, "invalid unsigned integer");
    bad("m a=1.5i", 1, "invalid integer");
    bad("m a=i", 1, "invalid integer");
}

static void measurement_escapes(void **state)
{
    one("my\\ weather\\,x,a=b v=1", "ns");
    str_is(pt.measurement, "my weather,x");
    /* '=' needs no escape in a measurement; a backslash before it is kept */
    one("a=b\\=c v=1", "ns");
    str_is(pt.measurement, "a=b\\=c");
    /* a backslash before an ordinary character is itself */
    one("c:\\dir v=1", "ns");
    str_is(pt.measurement, "c:\\dir");
}

static void tag_and_field_key_escapes(void **state)
{
    one("m,tag\\ key\\,\\=x=tag\\ val\\,\\=y field\\ k\\,\\=z=1", "ns");
    str_is(pt.tag_key[0], "tag key,=x");
    str_is(pt.tag_val[0], "tag val,=y");
    str_is(pt.field[0].key, "field k,=z");
    one("m,t=a\\b v=1", "ns");
    str_is(pt.tag_val[0], "a\\b");
}

static void string_field_escapes(void **state)
{
    one("m s=\"say \\\"hi\\\" to C:\\\\dir, and a=b \\n\"", "ns");
    assert_int_equal(pt.field[0].type, LP_STRING);
    /* only \" and \\ are escapes in a string; other backslashes stay */
    str_is(pt.field[0].v.s, "say \"hi\" to C:\\dir, and a=b \\n");
    /* a string may hold spaces, commas, '=' and even a newline (counted as a line) */
    start("m s=\"a, b=c\nd\" 5\nm v=2 6\n", "ns");
    assert_int_equal(lp_next(&ps, &pt), 1);
    str_is(pt.field[0].v.s, "a, b=c\nd");
    assert_true(pt.time_ns == 5);
    assert_int_equal(lp_next(&ps, &pt), 1);
    assert_int_equal(pt.line, 3);
    assert_true(pt.time_ns == 6);
    one("m s=\"\"", "ns");
    assert_int_equal(pt.field[0].v.s.n, 0);
}

static void precisions(void **state)
{
    struct {
        const char *name;
        int64_t ns;
    } cases[] = {{"ns", 1},
                 {"n", 1},
                 {"", 1},
                 {"us", 1000},
                 {"u", 1000},
                 {"ms", 1000000},
                 {"s", 1000000000},
                 {"m", INT64_C(60000000000)},
                 {"h", INT64_C(3600000000000)}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        one("m v=1 1700", cases[i].name);
        assert_true(pt.time_ns == 1700 * cases[i].ns);
    }
    one("m v=1 -5", "s");
    assert_true(pt.time_ns == -5000000000);
    assert_true(lp_precision("d") == -1);
    assert_true(lp_precision("NS") == -1);
    /* nanoseconds past 2262 do not fit */
    start("m v=1 9300000000000", "ms");
    assert_int_equal(lp_next(&ps, &pt), -1);
    assert_string_equal(ps.err, "time outside range");
}

static void comments_blank_lines_and_crlf(void **state)
{
    start("# a comment\n\n   \r\nm v=1 1\r\n# another, v=2\n\tm v=2 2\n\n", "ns");
    assert_int_equal(lp_next(&ps, &pt), 1);
    assert_int_equal(pt.line, 4);
    assert_true(pt.time_ns == 1);
    assert_int_equal(lp_next(&ps, &pt), 1);
    assert_int_equal(pt.line, 6);
    assert_true(pt.time_ns == 2);
    assert_int_equal(lp_next(&ps, &pt), 0);
    start("", "ns");
    assert_int_equal(lp_next(&ps, &pt), 0);
}

static void errors_name_line_and_reason(void **state)
{
    bad("m v=1\nm\n", 2, "missing fields");
    bad("m v=1\n\nm \n", 3, "missing fields");
    bad(",t=a v=1", 1, "missing measurement");
    bad("m,=a v=1", 1, "missing tag key");
    bad("m,t v=1", 1, "missing tag value");
    bad("m,t= v=1", 1, "missing tag value");
    bad("m,t=a=b v=1", 1, "invalid tag format");
    bad("m =1", 1, "missing field key");
    bad("m v", 1, "missing field value");
    bad("m v=", 1, "missing field value");
    bad("m v=1,", 1, "missing field key");
    bad("m v=\"abc", 1, "unbalanced quotes");
    bad("m v=abc", 1, "invalid field value");
    bad("m v=1.2.3", 1, "invalid number");
    bad("m v=NaN", 1, "invalid field value");
    bad("m v=1e999", 1, "value out of range");
    bad("m v=1 12x", 1, "bad timestamp");
    bad("m v=1 12 13", 1, "bad timestamp");
    bad("m v=1 99999999999999999999", 1, "time outside range");
    bad("m v=\"a\"x", 1, "invalid field format");
    /* a tag key twice: which value names the series? (InfluxDB refuses it too) */
    bad("slope,site=A,site=B disp=1", 1, "duplicate tag key 'site'");
    bad("m v=1\nm,a=1,b=2,c=3,b=2 v=1", 2, "duplicate tag key 'b'");
    bad("m,s\\ x=1,s\\ x=2 v=1", 1, "duplicate tag key 's x'"); /* named unescaped */
    /* the text of the bad line comes with the error */
    bad("m v=1\nbad line here\nm v=2", 2, "missing field value");
    assert_int_equal(ps.err_text_len, strlen("bad line here"));
    assert_memory_equal(ps.err_text, "bad line here", ps.err_text_len);
}

static void too_many_tags_and_fields(void **state)
{
    char line[2048] = "m";
    for (int i = 0; i <= LP_MAX_TAGS; i++) sprintf(line + strlen(line), ",t%d=x", i);
    strcat(line, " v=1");
    bad(line, 1, "too many tags");
    strcpy(line, "m ");
    for (int i = 0; i <= LP_MAX_FIELDS; i++)
        sprintf(line + strlen(line), "%sf%d=1", i ? "," : "", i);
    bad(line, 1, "too many fields");
}

static void many_points_reuse_scratch(void **state)
{
    /* escapes on every line: the scratch is reused per line, so a body far larger than the
     * scratch parses */
    size_t n = 2000;
    char *body = malloc(n * 40);
    assert_non_null(body);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "m\\ x,t=a\\ b v=%zui,s=\"q\\\"\" %zu\n", i, i);
    lp_init(&ps, body, len, 1, scratch, 64);
    size_t got = 0;
    int rc;
    while ((rc = lp_next(&ps, &pt)) == 1) {
        str_is(pt.measurement, "m x");
        str_is(pt.tag_val[0], "a b");
        str_is(pt.field[1].v.s, "q\"");
        assert_true(pt.field[0].v.i == (int64_t)got);
        assert_true(pt.time_ns == (int64_t)got);
        assert_int_equal(pt.line, got + 1);
        got++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(got, n);
    free(body);
}

/* gzip of text through zlib's own writer, independent of gz.c */
static unsigned char *gzip(const char *text, size_t len, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, len);
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)text;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static void gzip_bodies(void **state)
{
    size_t n = 300000, zl;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = "m v=1 1\n"[i % 8];
    unsigned char *z = gzip(text, n, &zl);
    assert_true(zl < n / 10);
    char *out;
    size_t outlen;
    assert_int_equal(gz_inflate(z, zl, n, &out, &outlen), 0);
    assert_int_equal(outlen, n);
    assert_memory_equal(out, text, n);
    free(out);
    /* one byte over the limit is refused, whatever the compressed size */
    assert_int_equal(gz_inflate(z, zl, n - 1, &out, &outlen), -2);
    assert_null(out);
    /* truncated, damaged, not gzip */
    assert_int_equal(gz_inflate(z, zl / 2, n, &out, &outlen), -1);
    z[zl / 2] ^= 0x55;
    assert_int_equal(gz_inflate(z, zl, n, &out, &outlen), -1);
    assert_int_equal(gz_inflate("m v=1", 5, n, &out, &outlen), -1);
    assert_int_equal(gz_inflate("", 0, n, &out, &outlen), -1);
    free(z);
    /* two members, as gzip(1) makes when files are concatenated */
    size_t l1, l2;
    unsigned char *a = gzip("m v=1 1\n", 8, &l1), *b = gzip("m v=2 2\n", 8, &l2);
    unsigned char *ab = malloc(l1 + l2);
    memcpy(ab, a, l1);
    memcpy(ab + l1, b, l2);
    assert_int_equal(gz_inflate(ab, l1 + l2, 100, &out, &outlen), 0);
    assert_int_equal(outlen, 16);
    assert_memory_equal(out, "m v=1 1\nm v=2 2\n", 16);
    free(out);
    free(a);
    free(b);
    free(ab);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(simple_point),
        cmocka_unit_test(field_types),
        cmocka_unit_test(every_boolean_spelling),
        cmocka_unit_test(integer_limits),
        cmocka_unit_test(measurement_escapes),
        cmocka_unit_test(tag_and_field_key_escapes),
        cmocka_unit_test(string_field_escapes),
        cmocka_unit_test(precisions),
        cmocka_unit_test(comments_blank_lines_and_crlf),
        cmocka_unit_test(errors_name_line_and_reason),
        cmocka_unit_test(too_many_tags_and_fields),
        cmocka_unit_test(many_points_reuse_scratch),
        cmocka_unit_test(gzip_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
