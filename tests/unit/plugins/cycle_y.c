/* cycle_y.c: a test plugin that requires cycle_x, which requires it back. */
#include "testplugin.h"

static const char *const requires[] = {"cycle_x", NULL};

ZT_PLUGIN(.name = "cycle_y", .version = "1", .requires = requires, .init = record_init);
