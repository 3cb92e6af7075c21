/* good.c: a test plugin with one option of every type. */
#include "testplugin.h"

static const zt_option options[] = {
    {"size", ZT_OPT_INT, "10", 0, "an integer"},    {"label", ZT_OPT_STRING, "x", 0, "a string"},
    {"ratio", ZT_OPT_NUMBER, "0.5", 0, "a number"}, {"on", ZT_OPT_BOOL, "false", 0, "a boolean"},
    {"tags", ZT_OPT_LIST, "a,b", 0, "a list"},      {0},
};

ZT_PLUGIN(.name = "good", .version = "2.0", .description = "a test plugin", .options = options,
          .init = record_init, .fini = record_fini);
