/* chain_b.c: a test plugin that requires chain_c. */
#include "testplugin.h"

static const char *const requires[] = {"chain_c", NULL};

ZT_PLUGIN(.name = "chain_b", .version = "1", .requires = requires, .init = record_init,
          .fini = record_fini);
