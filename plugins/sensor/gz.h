/* gz.h: gzip bodies (Content-Encoding: gzip) inflated under a size limit. */
#ifndef SENSOR_GZ_H
#define SENSOR_GZ_H

#include <stddef.h>

/* Inflate the gzip data in[0..len) (one or more members) into a malloc'd buffer *out of
 * *outlen bytes (free it). 0; -1 not gzip or damaged (*out NULL); -2 it would be larger
 * than limit bytes; -3 out of memory. */
int gz_inflate(const void *in, size_t len, size_t limit, char **out, size_t *outlen);

#endif
