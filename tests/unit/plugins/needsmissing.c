/* needsmissing.c: a test plugin that requires a plugin the tests never list. */
#include "testplugin.h"

static const char *const requires[] = {"absent", NULL};

ZT_PLUGIN(.name = "needsmissing", .version = "1", .requires = requires, .init = record_init);
