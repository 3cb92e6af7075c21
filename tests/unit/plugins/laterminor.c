/* laterminor.c: a test plugin built for a later minor of this plugin ABI (written out:
 * ZT_PLUGIN fills ours) that calls a function this node lacks, as such a plugin would. */
#include "testplugin.h"

int zt_from_a_later_release(zt_plugin *p);

static int init(zt_plugin *p)
{
    return zt_from_a_later_release(p);
}

__attribute__((visibility("default"))) const zt_plugin_def zt_plugin_descriptor = {
    .abi = ZT_ABI_VERSION,
    .abi_minor = ZT_ABI_MINOR + 1,
    .name = "laterminor",
    .init = init,
};
