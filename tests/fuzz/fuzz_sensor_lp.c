/* fuzz_sensor_lp.c: libFuzzer harness for the sensor plugin's line protocol parser. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The parser is the plugin's, compiled in here (it needs nothing of the core). */
#include "../../plugins/sensor/lp.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every point is well formed, every name inside the input or the scratch; an error names a
 * line that exists. The first byte picks the precision. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const precs[] = {"ns", "us", "ms", "s", "m", "h"};
    if (size == 0) return 0;
    int64_t mult = lp_precision(precs[data[0] % 6]);
    const char *buf = (const char *)data + 1;
    size_t len = size - 1, lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    char *scratch = malloc(len + 1);
    static lp_point pt;
    lp_parser ps;
    lp_init(&ps, buf, len, mult, scratch, len + 1);
    int rc;
    size_t last = 0;
#define INSIDE(s)                                                                                  \
    ((s).n == 0 || ((s).p >= buf && (s).p + (s).n <= buf + len) ||                                 \
     ((s).p >= scratch && (s).p + (s).n <= scratch + len + 1))
    while ((rc = lp_next(&ps, &pt)) == 1) {
        if (pt.line < last || pt.line > lines || pt.measurement.n == 0 || pt.nfields == 0) abort();
        last = pt.line;
        if (!INSIDE(pt.measurement)) abort();
        for (size_t i = 0; i < pt.ntags; i++)
            if (!INSIDE(pt.tag_key[i]) || !INSIDE(pt.tag_val[i]) || !pt.tag_key[i].n) abort();
        for (size_t i = 0; i < pt.nfields; i++) {
            const lp_field *f = &pt.field[i];
            if (!INSIDE(f->key) || !f->key.n || f->type < LP_FLOAT || f->type > LP_BOOL) abort();
            if (f->type == LP_STRING && !INSIDE(f->v.s)) abort();
        }
    }
    if (rc == -1 && (ps.err_line < 1 || ps.err_line > lines || !ps.err[0])) abort();
    free(scratch);
    return 0;
}
