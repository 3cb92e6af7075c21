/* test_router.c: matching, parameters, priorities, 405 Allow lists, conflicts, bad patterns. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "core.h"

static int h(zt_req *req, void *ud)
{
    return ZT_OK;
}

static zt_router *make(void)
{
    zt_router *r;
    assert_int_equal(zt__router_new(&r), ZT_OK);
    return r;
}

static void add(zt_router *r, const char *method, const char *path, void *ud)
{
    char err[ZT_ERRLEN];
    zt_route def = {.method = method, .path = path, .handler = h, .ud = ud};
    int rc = zt__router_add(r, NULL, &def, err, sizeof err);
    if (rc != ZT_OK) fail_msg("add %s %s: %s", method, path, err);
}

static const char *param(const zt_match *m, const char *name, char *buf)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < m->nparams; i++)
        if (strncmp(m->pname[i], name, n) == 0 && (m->pname[i][n] == 0 || m->pname[i][n] == '/')) {
            memcpy(buf, m->pval[i], m->plen[i]);
            buf[m->plen[i]] = 0;
            return buf;
        }
    return NULL;
}

static void literal_param_and_wildcard(void **state)
{
    zt_router *r = make();
    int a, b, c, d, e;
    add(r, "GET", "/notices", &a);
    add(r, "GET", "/notices/:id", &b);
    add(r, "GET", "/notices/latest", &c);
    add(r, "GET", "/files/*", &d);
    add(r, "GET", "/dept/:dept/users/:user", &e);
    zt_match m;
    char buf[128];
    assert_int_equal(zt__router_match(r, "GET", "/notices", &m), ZT_OK);
    assert_ptr_equal(m.route->ud, &a);
    assert_int_equal(zt__router_match(r, "GET", "/notices/42", &m), ZT_OK);
    assert_ptr_equal(m.route->ud, &b);
    assert_string_equal(param(&m, "id", buf), "42");
    assert_int_equal(zt__router_match(r, "GET", "/notices/latest", &m), ZT_OK);
    assert_ptr_equal(m.route->ud, &c); /* the literal wins over :id */
    assert_int_equal(zt__router_match(r, "HEAD", "/notices/latest", &m), ZT_OK);
    assert_int_equal(zt__router_match(r, "GET", "/files/a/b/c.txt", &m), ZT_OK);
    assert_ptr_equal(m.route->ud, &d);
    assert_string_equal(param(&m, "*", buf), "a/b/c.txt");
    assert_int_equal(zt__router_match(r, "GET", "/dept/330100/users/li", &m), ZT_OK);
    assert_string_equal(param(&m, "dept", buf), "330100");
    assert_string_equal(param(&m, "user", buf), "li");
    assert_null(param(&m, "dep", buf));
    assert_int_equal(zt__router_match(r, "GET", "/notices/", &m), ZT_ENOTFOUND);
    assert_int_equal(zt__router_match(r, "GET", "/nope", &m), ZT_ENOTFOUND);
    assert_int_equal(zt__router_match(r, "GET", "/dept/1/users", &m), ZT_ENOTFOUND);
    assert_int_equal(zt__router_match(r, "GET", "/", &m), ZT_ENOTFOUND);
    zt__router_free(r);
}

static void backtracks_from_literal_to_param(void **state)
{
    zt_router *r = make();
    int a, b;
    add(r, "GET", "/a/b/c", &a);
    add(r, "GET", "/a/:x/d", &b);
    zt_match m;
    char buf[32];
    assert_int_equal(zt__router_match(r, "GET", "/a/b/d", &m), ZT_OK);
    assert_ptr_equal(m.route->ud, &b);
    assert_string_equal(param(&m, "x", buf), "b");
    zt__router_free(r);
}

static void wrong_method_lists_allow(void **state)
{
    zt_router *r = make();
    add(r, "GET", "/notices/:id", NULL);
    add(r, "DELETE", "/notices/:id", NULL);
    zt_match m;
    assert_int_equal(zt__router_match(r, "POST", "/notices/1", &m), ZT_EPERM);
    assert_string_equal(m.allow, "GET, HEAD, DELETE");
    assert_int_equal(zt__router_match(r, "BREW", "/notices/1", &m), ZT_EPERM);
    zt__router_free(r);
}

static void conflicts_name_both(void **state)
{
    zt_router *r = make();
    zt_plugin a = {.name = "alpha"}, b = {.name = "beta"};
    char err[ZT_ERRLEN];
    zt_route d1 = {.method = "GET", .path = "/x/:id", .handler = h};
    zt_route d2 = {.method = "GET", .path = "/x/:key", .handler = h};
    zt_route d3 = {.method = "PUT", .path = "/x/:key", .handler = h};
    assert_int_equal(zt__router_add(r, &a, &d1, err, sizeof err), ZT_OK);
    assert_int_equal(zt__router_add(r, &b, &d2, err, sizeof err), ZT_ECONFLICT);
    assert_non_null(strstr(err, "'alpha'"));
    assert_non_null(strstr(err, "'beta'"));
    assert_int_equal(zt__router_add(r, &b, &d3, err, sizeof err), ZT_OK);
    assert_int_equal(zt__router_count(r), 2);
    zt__router_free(r);
}

static void bad_patterns_refused(void **state)
{
    zt_router *r = make();
    char err[ZT_ERRLEN];
    const char *bad[] = {"x", "/a//b", "/a/", "/a/*/b", "/a/b*", "/:", "/a/:b-c", "/a?b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zt_route d = {.method = "GET", .path = bad[i], .handler = h};
        assert_int_equal(zt__router_add(r, NULL, &d, err, sizeof err), ZT_EINVAL);
    }
    zt_route head = {.method = "HEAD", .path = "/a", .handler = h};
    assert_int_equal(zt__router_add(r, NULL, &head, err, sizeof err), ZT_EINVAL);
    zt_route nohandler = {.method = "GET", .path = "/a"};
    assert_int_equal(zt__router_add(r, NULL, &nohandler, err, sizeof err), ZT_EINVAL);
    assert_int_equal(zt__router_count(r), 0);
    zt__router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_param_and_wildcard),
        cmocka_unit_test(backtracks_from_literal_to_param),
        cmocka_unit_test(wrong_method_lists_allow),
        cmocka_unit_test(conflicts_name_both),
        cmocka_unit_test(bad_patterns_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
