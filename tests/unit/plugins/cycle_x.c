/* cycle_x.c: a test plugin that requires cycle_y, which requires it back. */
#include "testplugin.h"

static const char *const requires[] = {"cycle_y", NULL};

ZT_PLUGIN(.name = "cycle_x", .version = "1", .requires = requires, .init = record_init);
