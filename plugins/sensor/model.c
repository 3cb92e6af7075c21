/* model.c: the sensor plugin's stored forms: values, observation and series keys, times. */
#include "sensor.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sn_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

uint32_t sn_rd32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

void sn_be64(unsigned char *b, uint64_t v)
{
    sn_be32(b, (uint32_t)(v >> 32));
    sn_be32(b + 4, (uint32_t)v);
}

uint64_t sn_rd64(const unsigned char *b)
{
    return (uint64_t)sn_rd32(b) << 32 | sn_rd32(b + 4);
}

void sn_obs_key(uint32_t id, int64_t t, unsigned char k[SN_OBS_KEY])
{
    sn_be32(k, id);
    sn_be64(k + 4, (uint64_t)t ^ (UINT64_C(1) << 63));
}

void sn_obs_key_read(const unsigned char k[SN_OBS_KEY], uint32_t *id, int64_t *t)
{
    *id = sn_rd32(k);
    *t = (int64_t)(sn_rd64(k + 4) ^ (UINT64_C(1) << 63));
}

int sn_obs_latest(zt_cursor *c, uint32_t id, int64_t *t, sn_val *v)
{
    unsigned char k[SN_OBS_KEY];
    zt_kv kv;
    int rc;
    if (id == UINT32_MAX) {
        rc = zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv);
    } else {
        sn_obs_key(id + 1, INT64_MIN, k);
        rc = zt_cursor_seek(c, ZT_GE, k, SN_OBS_KEY, &kv);
        rc = zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv);
    }
    if (rc != ZT_OK) return rc;
    uint32_t kid;
    if (kv.klen != SN_OBS_KEY) return ZT_EIO;
    sn_obs_key_read(kv.key, &kid, t);
    if (kid != id) return ZT_ENOTFOUND;
    return !v || sn_val_decode(kv.val, kv.vlen, v) == 0 ? ZT_OK : ZT_EIO;
}

size_t sn_val_encode(const sn_val *v, unsigned char *buf)
{
    switch (v->type) {
    case LP_FLOAT:
        buf[0] = 'f';
        memcpy(buf + 1, &v->f, 8);
        return 9;
    case LP_INT:
        buf[0] = 'i';
        memcpy(buf + 1, &v->i, 8);
        return 9;
    case LP_UINT:
        buf[0] = 'u';
        memcpy(buf + 1, &v->u, 8);
        return 9;
    case LP_BOOL:
        buf[0] = 'b';
        buf[1] = (unsigned char)(v->b != 0);
        return 2;
    case LP_STRING:
        assert(v->sn <= SN_MAX_STRING);
        buf[0] = 's';
        memcpy(buf + 1, v->s, v->sn);
        return 1 + v->sn;
    }
    assert(0 && "unknown value type");
    return 0;
}

int sn_val_decode(const void *buf, size_t len, sn_val *v)
{
    const unsigned char *b = buf;
    memset(v, 0, sizeof *v);
    if (len < 1) return -1;
    switch (b[0]) {
    case 'f':
        v->type = LP_FLOAT;
        if (len != 9) return -1;
        memcpy(&v->f, b + 1, 8);
        return 0;
    case 'i':
        v->type = LP_INT;
        if (len != 9) return -1;
        memcpy(&v->i, b + 1, 8);
        return 0;
    case 'u':
        v->type = LP_UINT;
        if (len != 9) return -1;
        memcpy(&v->u, b + 1, 8);
        return 0;
    case 'b':
        v->type = LP_BOOL;
        if (len != 2) return -1;
        v->b = b[1];
        return 0;
    case 's':
        v->type = LP_STRING;
        v->s = (const char *)b + 1;
        v->sn = len - 1;
        return 0;
    }
    return -1;
}

int sn_val_number(const sn_val *v, double *d)
{
    switch (v->type) {
    case LP_FLOAT:
        *d = v->f;
        return 1;
    case LP_INT:
        *d = (double)v->i;
        return 1;
    case LP_UINT:
        *d = (double)v->u;
        return 1;
    case LP_BOOL:
        *d = v->b ? 1 : 0;
        return 1;
    }
    return 0;
}

static int lpstr_cmp(lp_str a, lp_str b)
{
    int c = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
    return c ? c : (a.n > b.n) - (a.n < b.n);
}

void sn_series_from_point(const sn *S, const lp_point *pt, sn_series *s)
{
    s->measurement = pt->measurement;
    s->ntags = 0;
    for (size_t i = 0; i < pt->ntags; i++) {
        lp_str k = pt->tag_key[i], v = pt->tag_val[i];
        bool skip = false;
        for (size_t j = 0; j < S->nignore && !skip; j++)
            skip = S->ignore[j].n == k.n && memcmp(S->ignore[j].p, k.p, k.n) == 0;
        if (skip) continue;
        size_t at = s->ntags++; /* insertion sort: points have a handful of tags */
        while (at > 0 && lpstr_cmp(s->tk[at - 1], k) > 0) {
            s->tk[at] = s->tk[at - 1];
            s->tv[at] = s->tv[at - 1];
            at--;
        }
        s->tk[at] = k;
        s->tv[at] = v;
    }
}

size_t sn_series_key(const sn_series *s, char out[SN_KEY_MAX])
{
    size_t n = 0;
#define PUT(ptr, len)                                                                              \
    do {                                                                                           \
        if (n + (len) > SN_KEY_MAX) return 0;                                                      \
        memcpy(out + n, ptr, len);                                                                 \
        n += len;                                                                                  \
    } while (0)
#define PUTC(c)                                                                                    \
    do {                                                                                           \
        if (n + 1 > SN_KEY_MAX) return 0;                                                          \
        out[n++] = (c);                                                                            \
    } while (0)
    PUT(s->measurement.p, s->measurement.n);
    PUTC('\x1f');
    for (size_t i = 0; i < s->ntags; i++) {
        PUT(s->tk[i].p, s->tk[i].n);
        PUTC('\x1e');
        PUT(s->tv[i].p, s->tv[i].n);
        PUTC('\x1f');
    }
    PUTC('\x1d');
    PUT(s->field.p, s->field.n);
#undef PUT
#undef PUTC
    return n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

int sn_time_parse(const char *s, int64_t *ns)
{
    int y, mo, d, h, mi, se;
    if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
        digits(&s, 2, &d) || (*s != 'T' && *s != 't' && *s != ' '))
        return -1;
    s++;
    if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' || digits(&s, 2, &se))
        return -1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if (mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 60) return -1;
    /* a day the month has: 02-30 is no date, not 03-01 */
    if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap)) return -1;
    int64_t frac = 0;
    if (*s == '.') {
        s++;
        int n = 0;
        while (*s >= '0' && *s <= '9') {
            if (n < 9) frac = frac * 10 + (*s - '0');
            n++;
            s++;
        }
        if (n == 0) return -1;
        for (; n < 9; n++) frac *= 10;
    }
    int64_t off = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1, oh, om;
        if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om)) return -1;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*s) return -1;
    int64_t secs =
        days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - off;
    if (secs > INT64_MAX / 1000000000 - 1 || secs < INT64_MIN / 1000000000 + 1) return -1;
    *ns = secs * 1000000000 + frac;
    return 0;
}

void sn_time_format(int64_t ns, char out[40])
{
    int64_t secs = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int n = snprintf(out, 40, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    if (frac) {
        char f[11];
        snprintf(f, sizeof f, ".%09lld", (long long)frac);
        size_t l = strlen(f);
        while (l > 1 && f[l - 1] == '0') f[--l] = 0; /* as RFC3339Nano: no trailing zeros */
        n += snprintf(out + n, (size_t)(40 - n), "%s", f);
    }
    snprintf(out + n, (size_t)(40 - n), "Z");
}

int sn_int_prefix(const char *s, int64_t *v, const char **end)
{
    bool neg = *s == '-';
    const char *p = s + neg;
    uint64_t u = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (u > (lim - d) / 10) return -1; /* not the nearest end of int64 */
        u = u * 10 + d;
    }
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    *end = p;
    return 0;
}

int sn_int_arg(const char *s, int64_t *v)
{
    const char *end;
    return s && sn_int_prefix(s, v, &end) == 0 && !*end ? 0 : -1;
}

int sn_time_arg(const char *s, int64_t *ns)
{
    if (!s || !*s) return -1;
    if (sn_time_parse(s, ns) == 0) return 0;
    return sn_int_arg(s, ns);
}
