/* chain_a.c: a test plugin that requires chain_b. */
#include "testplugin.h"

static const char *const requires[] = {"chain_b", NULL};

ZT_PLUGIN(.name = "chain_a", .version = "1", .requires = requires, .init = record_init,
          .fini = record_fini);
