/* gz.c: gzip bodies inflated with zlib, stopping at a size limit (no zip bombs). */
#include "gz.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int gz_inflate(const void *in, size_t len, size_t limit, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return -3;
    size_t cap = len * 4 < 65536 ? 65536 : len * 4, n = 0;
    if (cap > limit + 1) cap = limit + 1;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -3;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    while (rc == 0) {
        if (n == cap) {
            if (cap > limit) {
                rc = -2;
                break;
            }
            size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = -3;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        z.next_out = (Bytef *)buf + n;
        z.avail_out = (uInt)(cap - n);
        int zr = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
        if (zr == Z_STREAM_END) {
            /* concatenated members are one body (gzip(1) makes them) */
            if (z.avail_in == 0) break;
            if (inflateReset(&z) != Z_OK) rc = -1;
        } else if (zr != Z_OK && !(zr == Z_BUF_ERROR && z.avail_out == 0)) {
            rc = -1;
        } else if (zr == Z_OK && z.avail_in == 0 && z.avail_out > 0) {
            rc = -1; /* the input ended inside a member */
        }
    }
    if (rc == 0 && n > limit) rc = -2;
    inflateEnd(&z);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = n;
    return 0;
}
