/* sensor.c: IoT ingestion plugin: devices and streams, four ways in, time series, alerts. */
#include <zt.h>

static int init(zt_plugin *p)
{
    (void)p;
    return ZT_OK;
}

ZT_PLUGIN(.name = "sensor", .version = "0.1.0", .description = "IoT ingestion", .init = init);
