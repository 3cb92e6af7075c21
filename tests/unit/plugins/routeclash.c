/* routeclash.c: a test plugin that claims one route twice and ignores the error. */
#include "testplugin.h"

static int handler(zt_req *req, void *ud)
{
    return ZT_ERROR;
}

static int init(zt_plugin *p)
{
    zt_route r = {.method = "GET", .path = "/clash", .handler = handler, .role = ZT_ROLE_PUBLIC};
    zt_route_add(p, &r);
    zt_route_add(p, &r); /* refused: the start must stop anyway */
    return ZT_OK;
}

ZT_PLUGIN(.name = "routeclash", .version = "1", .init = init, .fini = record_fini);
