/* svcbadname.c: a test plugin that declares a service name that cannot exist. */
#include <zt.h>

static const char *const wants[] = {"credit check", NULL};

static int init(zt_plugin *p)
{
    (void)p;
    return ZT_OK;
}

ZT_PLUGIN(.name = "svcbadname", .version = "1", .description = "test: a bad service name",
          .wants = wants, .init = init);
