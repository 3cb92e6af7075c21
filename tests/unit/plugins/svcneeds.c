/* svcneeds.c: a test plugin that cannot work without the service svccredit.check. */
#include <zt.h>

static const char *const needs[] = {"svccredit.check", NULL};

static int init(zt_plugin *p)
{
    (void)p;
    return ZT_OK;
}

ZT_PLUGIN(.name = "svcneeds", .version = "1", .description = "test: needs a service",
          .needs = needs, .init = init);
