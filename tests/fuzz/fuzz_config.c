/* fuzz_config.c: libFuzzer harness for the config reader: any bytes, then any options. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME "/fuzz/zt.conf"

/* One option of each type, so that every option check is reached from any plugin table. */
static const zt_option decl[] = {
    {"s", ZT_OPT_STRING, "x", 0, NULL},
    {"i", ZT_OPT_INT, "1", 0, NULL},
    {"n", ZT_OPT_NUMBER, "1.5", 0, NULL},
    {"b", ZT_OPT_BOOL, "true", 0, NULL},
    {"l", ZT_OPT_LIST, "a,b", 0, NULL},
    {"r", ZT_OPT_STRING, NULL, 1, NULL},
    {NULL, 0, NULL, 0, NULL},
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt__log_level = ZT_LOG_ERROR + 1; /* warnings about the input are not news */
    return 0;
}

/* Every refusal must say where: "file:line: ..." or "file: ...". */
static void check_error(const char *err)
{
    if (strncmp(err, NAME ":", strlen(NAME ":")) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    if (zt__conf_load_buffer(NAME, (const char *)data, size, &c, err, sizeof err) != ZT_OK) {
        check_error(err);
        return 0;
    }
    for (size_t i = 0; i <= c.nplugins; i++) {
        /* the last round asks for a plugin that is not listed */
        const char *name = i < c.nplugins ? c.plugins[i].name : "unlisted";
        zt_optval *v;
        size_t n;
        if (zt__conf_plugin_options(&c, name, decl, &v, &n, err, sizeof err) == ZT_OK)
            zt__optvals_free(v, n);
        else
            check_error(err);
    }
    zt__conf_free(&c);
    return 0;
}
