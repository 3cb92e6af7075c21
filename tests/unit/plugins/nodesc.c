/* nodesc.c: a shared object without a plugin descriptor. */
#include "testplugin.h"

__attribute__((visibility("default"))) int not_a_plugin(void)
{
    return 0;
}
