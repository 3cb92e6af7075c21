/* badabi.c: a test plugin built for another plugin ABI (written out: ZT_PLUGIN fills ours). */
#include "testplugin.h"

__attribute__((visibility("default"))) const zt_plugin_def zt_plugin_descriptor = {
    .abi = ZT_ABI_VERSION + 1,
    .name = "badabi",
    .init = record_init,
};
