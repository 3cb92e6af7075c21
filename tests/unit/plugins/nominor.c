/* nominor.c: a test plugin as built before the descriptor had abi_minor: the descriptor of
 * that zt.h, written out, with padding (zero) where abi_minor is now. */
#include "testplugin.h"

struct def_before_minor {
    int abi;
    const char *name, *version, *description;
    const char *const *requires;
    const zt_option *options;
    const char *const *needs, *const *wants;
    int (*init)(zt_plugin *p);
    void (*fini)(zt_plugin *p);
};

__attribute__((visibility("default"))) const struct def_before_minor zt_plugin_descriptor = {
    ZT_ABI_VERSION, "nominor", "1.0.0", "built before minors", NULL,
    NULL,           NULL,      NULL,    record_init,           record_fini,
};
