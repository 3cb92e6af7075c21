/* fuzz_audit.c: libFuzzer harness for reading stored audit values: what `zhengtong audit
 * verify`, GET /audit/verify and GET /audit parse, from a log someone may have tampered with.
 *
 * Input: a flags byte (bit 0: the old 8-byte key, else the 9-byte key of a batch; bit 1:
 * make each record's hash and prev right first, so that the walk goes past the hash check),
 * 8 bytes of the key's sequence number, then the stored value. */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Chain the records of a new-format value (len u32 | hash | prev | body) as the node
 * would have: each hash over prev | body, each prev the hash before. */
static void rechain(unsigned char *v, size_t len)
{
    unsigned char prev[32] = {0};
    for (size_t off = 0; len - off >= 4 + 64;) {
        size_t n = (size_t)v[off] << 24 | v[off + 1] << 16 | v[off + 2] << 8 | v[off + 3];
        if (n < 64 || n > len - off - 4) return;
        unsigned char *r = v + off + 4;
        memcpy(r + 32, prev, 32);
        crypto_generichash(r, 32, r + 32, n - 32, NULL, 0);
        memcpy(prev, r, 32);
        off += 4 + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        assert(sodium_init() >= 0);
        init = true;
    }
    if (size < 9) return 0;
    unsigned char key[9];
    memcpy(key, data + 1, 8);
    key[8] = 0x02;
    size_t vlen = size - 9;
    unsigned char *val = malloc(vlen ? vlen : 1);
    memcpy(val, data + 9, vlen);
    if (data[0] & 2) rechain(val, vlen);
    zt_kv kv = {.key = key, .klen = data[0] & 1 ? 8 : 9, .val = val, .vlen = vlen};

    uint64_t first = zt__be64_get(key), expect = first;
    unsigned char prev[32] = {0};
    const char *why = zt__audit_check_value(&kv, &expect, prev);
    assert(expect >= first && (why || expect > first)); /* a value that verifies holds some */

    cJSON *all = zt__audit_value_json(&kv);
    assert(all);
    int n = cJSON_GetArraySize(all);
    /* every record that verified can be shown, with its own sequence number */
    assert(n >= 0 && (uint64_t)n >= expect - first);
    uint64_t seq = first;
    for (const cJSON *r = all->child; r && seq < expect; r = r->next, seq++) {
        if (kv.klen == 8) break; /* an old record's JSON is what was stored */
        assert(cJSON_GetNumberValue(cJSON_GetObjectItem(r, "seq")) == (double)seq);
        assert(cJSON_IsString(cJSON_GetObjectItem(r, "hash")));
    }
    char *text = cJSON_PrintUnformatted(all);
    assert(text);
    cJSON_free(text);
    cJSON_Delete(all);
    free(val);
    return 0;
}
