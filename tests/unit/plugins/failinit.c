/* failinit.c: a test plugin whose init fails. */
#include "testplugin.h"

static int init(zt_plugin *p)
{
    zt_test_record(p, "init");
    zt_log(p, ZT_LOG_ERROR, "cannot start (on purpose)");
    return ZT_EINVAL;
}

ZT_PLUGIN(.name = "failinit", .version = "1", .init = init, .fini = record_fini);
