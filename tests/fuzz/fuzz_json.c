/* fuzz_json.c: libFuzzer harness for what the node makes of JSON a client sends (request
 * bodies, zt.json.decode) and what it writes back.
 *
 * zt__json_parse_strict must never crash, and what it accepts must be UTF-8 without NUL
 * in every string and key, with no key twice in an object; zt_json_print of it must parse
 * again (strictly) to a tree that prints to the same text. zt_text_problem runs over the
 * raw bytes as over a name someone typed. */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every string and key of v is strict UTF-8 without NUL; no object repeats a key. */
static void check_tree(const cJSON *v)
{
    if (v->string) assert(zt__utf8_ok(v->string, strlen(v->string)));
    if (cJSON_IsString(v)) assert(zt__utf8_ok(v->valuestring, strlen(v->valuestring)));
    for (const cJSON *e = v->child; e; e = e->next) {
        check_tree(e);
        if (cJSON_IsObject(v))
            for (const cJSON *f = e->next; f; f = f->next) assert(strcmp(e->string, f->string));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char why[200];
    cJSON *j = NULL;
    if (zt__json_parse_strict(s, size, &j, why, sizeof why) == ZT_OK) {
        assert(j);
        check_tree(j);
        char *text = zt_json_print(j);
        assert(text);
        cJSON *again = NULL;
        int rc = zt__json_parse_strict(text, strlen(text), &again, why, sizeof why);
        if (rc != ZT_OK) {
            fprintf(stderr, "printed text does not parse: %s\n%s\n", why, text);
            abort();
        }
        char *text2 = zt_json_print(again);
        assert(text2 && strcmp(text, text2) == 0);
        free(text2);
        free(text);
        cJSON_Delete(again);
        cJSON_Delete(j);
    } else {
        assert(!j && why[0]);
    }
    /* as a name: the input up to its first NUL */
    char *name = malloc(size + 1);
    if (!name) return 0;
    memcpy(name, data, size);
    name[size] = 0;
    const char *p = zt_text_problem(name, 200, size & 1 ? ZT_TEXT_LINES : 0);
    if (!p) assert(zt__utf8_ok(name, strlen(name)) && strlen(name) > 0);
    free(name);
    return 0;
}
