/* fuzz_audit_archive.c: libFuzzer harness for reading an audit archive: what `zhengtong
 * audit check FILE` and `audit prune FILE` parse, from a file anyone may hand an auditor.
 *
 * Input: the file's bytes. The check must end with ZT_OK or ZT_EINVAL (a reason naming a
 * line), never read out of bounds, and what it reports of a good archive must add up. */
#include "core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        assert(sodium_init() >= 0);
        snprintf(path, sizeof path, "/tmp/zt-fuzz-archive-%ld", (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    assert(f);
    assert(fwrite(data, 1, size, f) == size);
    assert(fclose(f) == 0);
    zt_archive_info in;
    char err[ZT_ERRLEN] = "";
    int rc = zt__audit_archive_check(path, &in, err, sizeof err);
    assert(rc == ZT_OK || rc == ZT_EINVAL);
    if (rc == ZT_OK) {
        assert(in.last_seq >= in.after_seq);
        assert(in.records == in.last_seq - in.after_seq);
    } else {
        assert(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
    }
    unlink(path);
    return 0;
}
