/* fuzz_json.c: libFuzzer harness for zt__json_valid: what it accepts, cJSON parses. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every text the checker accepts is one JSON value cJSON reads whole (it is the stricter of
 * the two: it also wants valid UTF-8), and the checker never reads past the length. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    if (zt__json_valid((const char *)data, size) && !memchr(data, 0, size)) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(copy, &end, 1);
        if (!j) abort();
        cJSON_Delete(j);
    }
    free(copy);
    return 0;
}
