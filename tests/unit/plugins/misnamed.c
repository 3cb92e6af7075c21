/* misnamed.c: a test plugin whose descriptor names another plugin than its file. */
#include "testplugin.h"

ZT_PLUGIN(.name = "other", .version = "1", .init = record_init);
