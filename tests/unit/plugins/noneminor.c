/* noneminor.c: a test plugin built for a later minor of this plugin ABI that uses nothing
 * this node lacks: refused all the same (a field this node would not read is as missing). */
#include "testplugin.h"

__attribute__((visibility("default"))) const zt_plugin_def zt_plugin_descriptor = {
    .abi = ZT_ABI_VERSION,
    .abi_minor = ZT_ABI_MINOR + 1,
    .name = "noneminor",
    .init = record_init,
};
