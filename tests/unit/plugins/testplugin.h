/* testplugin.h: what the test plugins share: init and fini that tell the test they ran. */
#include <zt.h>

/* Defined by test_plugin.c (the executable exports it). */
void zt_test_record(zt_plugin *p, const char *event);

static inline int record_init(zt_plugin *p)
{
    zt_test_record(p, "init");
    return ZT_OK;
}

static inline void record_fini(zt_plugin *p)
{
    zt_test_record(p, "fini");
}
