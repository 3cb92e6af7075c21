/* chain_c.c: a test plugin at the bottom of the chain a → b → c. */
#include "testplugin.h"

ZT_PLUGIN(.name = "chain_c", .version = "1", .init = record_init, .fini = record_fini);
