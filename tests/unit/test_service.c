/* test_service.c: the service table: declaration rules, lookup among many, the acting
 * plugin during nested calls, the depth limit, and the needs check. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef struct world {
    zt_server srv;
    zt_plugin a, b;
    zt_plugin *list[2];
    zt__route route; /* of plugin b */
    zt_req req;
} world;

static void make(world *w)
{
    memset(w, 0, sizeof *w);
    w->a = (zt_plugin){.name = "a", .srv = &w->srv, .state = ZT_PSTATE_RUNNING};
    w->b = (zt_plugin){.name = "b", .srv = &w->srv, .state = ZT_PSTATE_RUNNING};
    w->list[0] = &w->a;
    w->list[1] = &w->b;
    w->srv.plugins = w->list;
    w->srv.nplugins = 2;
    w->route.plugin = &w->b;
    w->req.srv = &w->srv;
    w->req.match.route = &w->route;
}

/* Returns {"plugin": the acting plugin, "inner": what a.whoami says when called from here
 * (when args is true)}. */
static int whoami(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)ud;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "plugin", zt__req_plugin(req)->name);
    if (cJSON_IsTrue(args)) {
        cJSON *inner = NULL;
        int rc = zt_call(req, "a.whoami", NULL, &inner);
        if (rc != ZT_OK) {
            cJSON_Delete(o);
            return rc;
        }
        cJSON_AddItemToObject(o, "inner", inner);
    }
    cJSON_AddStringToObject(o, "after", zt__req_plugin(req)->name);
    *result = o;
    return ZT_OK;
}

static int forever(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)args;
    int *calls = ud;
    ++*calls;
    return zt_call(req, "a.forever", NULL, result);
}

static int fails(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)req, (void)args, (void)ud;
    *result = cJSON_CreateString("half made"); /* the core drops it */
    return ZT_EINVAL;
}

static void declaration_rules(void **state)
{
    (void)state;
    world w;
    make(&w);
    assert_int_equal(zt_provide(&w.a, "a.x", whoami, NULL), ZT_ESTATE); /* not in init */
    assert_null(w.srv.services);
    w.a.in_init = true;
    const char *bad[] = {"", "a x", "a/x", "ä", NULL};
    for (int i = 0; bad[i]; i++) {
        w.srv.route_error[0] = 0;
        assert_int_equal(zt_provide(&w.a, bad[i], whoami, NULL), ZT_EINVAL);
        assert_non_null(strstr(w.srv.route_error, "bad name")); /* the start is refused */
    }
    char long_name[66];
    memset(long_name, 'n', 65);
    long_name[65] = 0;
    assert_int_equal(zt_provide(&w.a, long_name, whoami, NULL), ZT_EINVAL);
    long_name[64] = 0;
    w.srv.route_error[0] = 0;
    assert_int_equal(zt_provide(&w.a, long_name, whoami, NULL), ZT_OK);
    assert_int_equal(zt_provide(&w.a, "a.nofn", NULL, NULL), ZT_EINVAL);
    w.srv.route_error[0] = 0;
    assert_int_equal(zt_provide(&w.a, "shared.x", whoami, NULL), ZT_OK);
    w.b.in_init = true;
    assert_int_equal(zt_provide(&w.b, "shared.x", whoami, NULL), ZT_ECONFLICT);
    assert_string_equal(w.srv.route_error, "service 'shared.x' of plugin 'b' is already provided "
                                           "by plugin 'a': enable only one of them");
    zt__services_free(&w.srv);
    assert_null(w.srv.services);
}

static void lookup_among_many(void **state)
{
    (void)state;
    world w;
    make(&w);
    w.a.in_init = true;
    /* declared in an order that is not sorted */
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "a.s%03d", (i * 7919) % 300);
        assert_int_equal(zt_provide(&w.a, name, whoami, NULL), ZT_OK);
    }
    w.a.in_init = false;
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "a.s%03d", i);
        cJSON *r = NULL;
        assert_int_equal(zt_call(&w.req, name, NULL, &r), ZT_OK);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r, "plugin")), "a");
        cJSON_Delete(r);
    }
    cJSON *r = (cJSON *)1;
    assert_int_equal(zt_call(&w.req, "a.s300", NULL, &r), ZT_ENOTFOUND);
    assert_null(r);
    assert_int_equal(zt_call(&w.req, "a.s", NULL, &r), ZT_ENOTFOUND);
    assert_int_equal(zt_call(&w.req, NULL, NULL, &r), ZT_ENOTFOUND);
    /* a provider that is not running is not there */
    w.a.state = ZT_PSTATE_STOPPED;
    assert_int_equal(zt_call(&w.req, "a.s001", NULL, &r), ZT_ENOTFOUND);
    zt__services_free(&w.srv);
}

static void the_acting_plugin_follows_the_calls(void **state)
{
    (void)state;
    world w;
    make(&w);
    w.a.in_init = w.b.in_init = true;
    assert_int_equal(zt_provide(&w.a, "a.whoami", whoami, NULL), ZT_OK);
    assert_int_equal(zt_provide(&w.b, "b.whoami", whoami, NULL), ZT_OK);
    w.a.in_init = w.b.in_init = false;
    /* the request is b's route; a's service acts as a, even when called from b's service */
    assert_ptr_equal(zt__req_plugin(&w.req), &w.b);
    cJSON *args = cJSON_CreateTrue(), *r = NULL;
    assert_int_equal(zt_call(&w.req, "b.whoami", args, &r), ZT_OK);
    char *text = cJSON_PrintUnformatted(r);
    assert_string_equal(text, "{\"plugin\":\"b\",\"inner\":{\"plugin\":\"a\",\"after\":\"a\"},"
                              "\"after\":\"b\"}");
    free(text);
    cJSON_Delete(r);
    cJSON_Delete(args);
    assert_ptr_equal(zt__req_plugin(&w.req), &w.b);
    assert_null(w.req.service_plugin);
    assert_int_equal(w.req.call_depth, 0);
    /* a job's plugin, when no service runs */
    w.req.job_plugin = &w.a;
    assert_ptr_equal(zt__req_plugin(&w.req), &w.a);
    zt__services_free(&w.srv);
}

static void depth_and_errors(void **state)
{
    (void)state;
    world w;
    make(&w);
    int calls = 0;
    w.a.in_init = true;
    assert_int_equal(zt_provide(&w.a, "a.forever", forever, &calls), ZT_OK);
    assert_int_equal(zt_provide(&w.a, "a.fails", fails, NULL), ZT_OK);
    w.a.in_init = false;
    cJSON *r = (cJSON *)1;
    assert_int_equal(zt_call(&w.req, "a.forever", NULL, &r), ZT_EBUSY);
    assert_int_equal(calls, 16);
    assert_null(r);
    assert_int_equal(w.req.call_depth, 0);
    assert_null(w.req.service_plugin);
    assert_int_equal(zt_call(&w.req, "a.fails", NULL, &r), ZT_EINVAL);
    assert_null(r);
    assert_int_equal(zt_call(&w.req, "a.fails", NULL, NULL), ZT_EINVAL);
    zt__services_free(&w.srv);
}

static void needs_are_checked(void **state)
{
    (void)state;
    world w;
    make(&w);
    char *needs[] = {"a.there", "a.missing"};
    char *wants[] = {"nobody.wants"};
    w.b.needs = needs;
    w.b.nneeds = 1;
    w.b.wants = wants;
    w.b.nwants = 1;
    char err[ZT_ERRLEN] = "";
    /* nothing provided at all */
    assert_int_equal(zt__services_check(&w.srv, err, sizeof err), ZT_ENOTFOUND);
    assert_string_equal(err, "plugin 'b' needs service 'a.there', which no enabled plugin "
                             "provides: enable the plugin that provides it (e.g. add it to "
                             "plugins) or remove 'b'");
    w.a.in_init = true;
    assert_int_equal(zt_provide(&w.a, "a.there", whoami, NULL), ZT_OK);
    w.a.in_init = false;
    err[0] = 0;
    assert_int_equal(zt__services_check(&w.srv, err, sizeof err), ZT_OK); /* wants: only logged */
    assert_string_equal(err, "");
    w.b.nneeds = 2;
    assert_int_equal(zt__services_check(&w.srv, err, sizeof err), ZT_ENOTFOUND);
    assert_non_null(strstr(err, "needs service 'a.missing'"));
    w.b.needs = w.b.wants = NULL;
    w.b.nneeds = w.b.nwants = 0;
    zt__services_free(&w.srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(declaration_rules),
        cmocka_unit_test(lookup_among_many),
        cmocka_unit_test(the_acting_plugin_follows_the_calls),
        cmocka_unit_test(depth_and_errors),
        cmocka_unit_test(needs_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
