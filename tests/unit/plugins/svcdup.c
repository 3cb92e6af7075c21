/* svcdup.c: a test plugin that provides a service svccredit provides too (a conflict). */
#include <zt.h>

static int svc(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    (void)req, (void)args, (void)result, (void)ud;
    return ZT_OK;
}

static int init(zt_plugin *p)
{
    return zt_provide(p, "svccredit.check", svc, NULL);
}

ZT_PLUGIN(.name = "svcdup", .version = "1", .description = "test: a second provider", .init = init);
