/* util.c: arena allocator, growable buffers, percent-decoding, clocks and ids. */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

/* ---- arena ----------------------------------------------------------------------- */

void zt__arena_init(zt_arena *a, void *first_block, size_t first_size)
{
    zt_arena_block *b = first_block;
    b->next = NULL;
    b->used = 0;
    b->size = first_size - sizeof(*b);
    a->head = a->first = b;
}

/* What an allocation of size takes from a block (every pointer stays 16-aligned). */
static size_t arena_take(size_t size)
{
    return (size + 15) & ~(size_t)15;
}

void *zt__arena_alloc(zt_arena *a, size_t size)
{
    size = arena_take(size);
    zt_arena_block *b = a->head;
    if (b->size - b->used < size) {
        size_t bsize = size > 8192 ? size : 8192;
        zt_arena_block *nb = malloc(sizeof(*nb) + bsize);
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->size = bsize;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *zt__arena_strndup(zt_arena *a, const char *s, size_t n)
{
    char *p = zt__arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *zt__arena_vprintf(zt_arena *a, const char *fmt, va_list ap)
{
    /* Format into the room left in the current block; only a text that does not fit
     * there is formatted again, into room of its size. */
    zt_arena_block *b = a->head;
    size_t room = b->size - b->used;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf((char *)b->data + b->used, room, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    if (arena_take((size_t)n + 1) <= room)
        return zt__arena_alloc(a, (size_t)n + 1); /* claims, in place, what it wrote */
    char *p = zt__arena_alloc(a, (size_t)n + 1);
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

/* What a request held (its headers, a bearer token among them) is wiped, not only let go. */
void zt__arena_reset(zt_arena *a)
{
    zt_arena_block *b = a->head;
    while (b != a->first) {
        zt_arena_block *next = b->next;
        explicit_bzero(b->data, b->used);
        free(b);
        b = next;
    }
    a->head = a->first;
    memset(a->first->data, 0, a->first->used); /* kept for the next request: not elided */
    a->first->used = 0;
}

/* ---- buffers --------------------------------------------------------------------- */

/* A buffer's bytes are wiped wherever it lets them go: when it grows into a new block
 * (the old one whole; not realloc, which would leave it as it was), when it is emptied
 * (zt__buf_wipe) and when it is freed. What requests and answers carry (passwords, tokens,
 * ID numbers) stays in no freed memory (GB/T 22239 剩余信息保护). */
int zt__buf_grow(zt_buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra + 1) {
        if (cap > SIZE_MAX / 2) return ZT_ENOMEM;
        cap *= 2;
    }
    char *d = malloc(cap);
    if (!d) return ZT_ENOMEM;
    if (b->data) {
        memcpy(d, b->data, b->len + 1); /* the NUL the appends keep, or a spare byte */
        zt__free_wiped(b->data, b->cap);
    }
    b->data = d;
    b->cap = cap;
    return ZT_OK;
}

void zt__free_wiped(void *p, size_t n)
{
    if (!p) return;
    explicit_bzero(p, n); /* a plain memset before free may be left out by the compiler */
    free(p);
}

int zt__buf_append(zt_buf *b, const void *p, size_t n)
{
    if (zt__buf_reserve(b, n)) return ZT_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return ZT_OK;
}

int zt__buf_puts(zt_buf *b, const char *s)
{
    return zt__buf_append(b, s, strlen(s));
}

int zt__buf_printf(zt_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
    va_end(ap2);
    int rc = ZT_OK;
    if (n < 0) {
        rc = ZT_EINVAL;
    } else if ((size_t)n < sizeof tmp) {
        rc = zt__buf_append(b, tmp, (size_t)n);
    } else if ((rc = zt__buf_reserve(b, (size_t)n)) == ZT_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    va_end(ap);
    return rc;
}

int zt__buf_json_str(zt_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (zt__buf_reserve(b, n + 2)) return ZT_ENOMEM;
    b->data[b->len++] = '"';
    /* 1 for the bytes that need an escape: controls, the quote and the backslash (as
     * cJSON and the Lua host escape: one text for one value whichever wrote it) */
    static const unsigned char esc_tab[256] = {
        [0 ... 0x1f] = 1,
        ['"'] = 1,
        ['\\'] = 1,
    };
    size_t run = 0; /* bytes before i that need no escape, copied in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!esc_tab[c]) {
            run++;
            continue;
        }
        if (zt__buf_append(b, s + i - run, run)) return ZT_ENOMEM;
        run = 0;
        char esc[7] = {'\\', 0};
        size_t elen = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (zt__buf_append(b, esc, elen)) return ZT_ENOMEM;
    }
    if (zt__buf_append(b, s + n - run, run) || zt__buf_append(b, "\"", 1)) return ZT_ENOMEM;
    return ZT_OK;
}

size_t zt__u64_text(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, tmp + sizeof tmp - n, n);
    return n;
}

size_t zt__i64_text(char *out, int64_t v)
{
    if (v >= 0) return zt__u64_text(out, (uint64_t)v);
    out[0] = '-';
    return 1 + zt__u64_text(out + 1, 0ull - (uint64_t)v);
}

int zt__buf_u64(zt_buf *b, uint64_t v)
{
    char tmp[20];
    return zt__buf_append(b, tmp, zt__u64_text(tmp, v));
}

void zt__buf_free(zt_buf *b)
{
    zt__free_wiped(b->data, b->len); /* (a memset then free may be left out) */
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- percent-decoding ------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long zt__pct_decode(char *dst, const char *src, size_t n, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            if (n - i < 3) return -1;
            int h = hexval((unsigned char)src[i + 1]), l = hexval((unsigned char)src[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = (char)(h * 16 + l);
            if (c == 0) return -1;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == 0) {
            return -1;
        }
        dst[o++] = c;
    }
    dst[o] = 0;
    return (long)o;
}

int zt__query_each(const char *q,
                   int (*fn)(void *ud, const char *k, size_t kl, const char *v, size_t vl),
                   void *ud)
{
    for (const char *p = q, *end = q ? q + strlen(q) : NULL; p && p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp) amp = end;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        const char *v = eq ? eq + 1 : amp;
        int rc = fn(ud, p, (size_t)((eq ? eq : amp) - p), v, (size_t)(amp - v));
        if (rc) return rc;
        p = amp + 1;
    }
    return 0;
}

/* ---- clocks and ids -------------------------------------------------------------- */

static int64_t clock_offset_ms;

uint64_t zt__mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

void zt__clock_set_offset_ms(int64_t offset)
{
    clock_offset_ms = offset;
}

int64_t zt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset_ms;
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* 128 bits: 48 of time (ms), then an 80-bit counter seeded at random, monotonic within the
 * process even when the clock stands still or steps back; written as 26 digits of 5 bits
 * (the first holds the top 3 bits): digits 0..9 are the time, 10..25 exactly the counter.
 * So the text itself is the state: a new id adds one to its last 16 digits, and writes
 * the first 10 again only when the millisecond changed (this runs for every request). */
void zt_id(char out[27])
{
    static char cur[27];
    static int64_t last_ms = -1;
    static signed char val[128]; /* digit → value */
    if (last_ms < 0) {
        unsigned char ctr[10];
        randombytes_buf(ctr, sizeof ctr);
        ctr[0] &= 0x7f; /* leave room to count */
        uint64_t hi = (uint64_t)ctr[0] << 8 | ctr[1], lo = 0;
        for (int i = 2; i < 10; i++) lo = lo << 8 | ctr[i];
        for (int i = 25; i >= 10; i--) {
            cur[i] = crockford[lo & 31];
            lo = lo >> 5 | hi << 59;
            hi >>= 5;
        }
        for (int i = 0; i < 32; i++) val[(unsigned char)crockford[i]] = (signed char)i;
        last_ms = 0;
    }
    int64_t ms = zt_now_ms();
    if (ms > last_ms) {
        last_ms = ms;
        uint64_t t = (uint64_t)ms & ((UINT64_C(1) << 48) - 1);
        for (int i = 9; i >= 0; i--, t >>= 5) cur[i] = crockford[t & 31];
    }
    for (int i = 25; i >= 10; i--) { /* + 1, carrying */
        int d = val[(unsigned char)cur[i]] + 1;
        cur[i] = crockford[d & 31];
        if (d < 32) break;
    }
    memcpy(out, cur, 27);
}

const char *zt_strerror(int err)
{
    switch (err) {
    case ZT_OK:
        return "success";
    case ZT_ERROR:
        return "failure";
    case ZT_ENOMEM:
        return "out of memory";
    case ZT_EINVAL:
        return "invalid argument";
    case ZT_ENOTFOUND:
        return "not found";
    case ZT_EEXIST:
        return "already exists";
    case ZT_EREADONLY:
        return "read-only transaction";
    case ZT_EFULL:
        return "storage full";
    case ZT_ETOOBIG:
        return "too large";
    case ZT_ECONFLICT:
        return "conflict";
    case ZT_EPERM:
        return "not permitted";
    case ZT_EIO:
        return "input/output error";
    case ZT_ESTATE:
        return "called at the wrong time";
    case ZT_EBUSY:
        return "busy";
    default:
        return "unknown error";
    }
}

/* ---- JSON records in the store ---------------------------------------------------- */

cJSON *zt__db_get_json(zt_txn *t, zt_db *db, const void *key, size_t klen)
{
    const void *v;
    size_t vlen;
    if (zt_get(t, db, key, klen, &v, &vlen) != ZT_OK) return NULL;
    return cJSON_ParseWithLength(v, vlen);
}

int zt__db_put_json(zt_txn *t, zt_db *db, const void *key, size_t klen, const cJSON *j)
{
    char *text = zt_json_print(j);
    if (!text) return ZT_ENOMEM;
    int rc = zt_put(t, db, key, klen, text, strlen(text));
    cJSON_free(text);
    return rc;
}

int zt__db_edge(zt_txn *t, zt_db *db, int op, zt_kv *kv)
{
    zt_cursor *c;
    int rc = zt_cursor_open(t, db, &c);
    if (rc != ZT_OK) return rc;
    rc = zt_cursor_seek(c, op, NULL, 0, kv); /* what it points at outlives the cursor */
    zt_cursor_close(c);
    return rc;
}

const char *zt__jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int zt__respond_db_list(zt_req *req, zt_db *db, bool (*keep)(cJSON *rec, void *arg), void *arg,
                        const char *strip)
{
    zt_txn *t = zt_req_txn(req);
    zt_cursor *cur;
    if (!t || zt_cursor_open(t, db, &cur) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    zt_kv kv;
    for (int rc = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *r = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (!r || (keep && !keep(r, arg))) {
            cJSON_Delete(r);
            continue;
        }
        if (strip) cJSON_DeleteItemFromObjectCaseSensitive(r, strip);
        cJSON_AddItemToArray(items, r);
    }
    zt_cursor_close(cur);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

void zt__be64_put(void *out, uint64_t v)
{
    unsigned char *b = out;
    for (int i = 7; i >= 0; i--, v >>= 8) b[i] = (unsigned char)v;
}

uint64_t zt__be64_get(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

/* ---- addresses and networks -------------------------------------------------------- */

const char *zt__netmask_parse(const char *s, zt_netmask *m)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr) return "is not an address";
    memcpy(addr, s, alen);
    addr[alen] = 0;
    memset(m, 0, sizeof *m);
    if (inet_pton(AF_INET, addr, m->addr) == 1)
        m->family = AF_INET, m->bits = 32;
    else if (inet_pton(AF_INET6, addr, m->addr) == 1)
        m->family = AF_INET6, m->bits = 128;
    else
        return "is not an IPv4 or IPv6 address (\"10.0.0.1\", \"10.0.0.0/8\", \"::1\")";
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || bits < 0 || (unsigned long)bits > m->bits)
            return m->family == AF_INET ? "has a prefix length that is not 0..32"
                                        : "has a prefix length that is not 0..128";
        m->bits = (unsigned)bits;
        /* the bits past the prefix must be zero: "10.1.2.3/8" is probably a mistake */
        for (unsigned b = m->bits; b < (m->family == AF_INET ? 32u : 128u); b++)
            if (m->addr[b / 8] & (0x80 >> (b % 8)))
                return "has bits set after its prefix (write the network: 10.0.0.0/8)";
    }
    return NULL;
}

bool zt__netmask_match(const zt_netmask *m, size_t n, const char *addr)
{
    unsigned char a4[4], a6[16];
    bool v4 = inet_pton(AF_INET, addr, a4) == 1, v6 = !v4 && inet_pton(AF_INET6, addr, a6) == 1;
    if (v6 && memcmp(a6, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) { /* ::ffff:a.b.c.d */
        memcpy(a4, a6 + 12, 4);
        v4 = true, v6 = false;
    }
    if (!v4 && !v6) return false;
    for (size_t i = 0; i < n; i++) {
        if (m[i].family != (v4 ? AF_INET : AF_INET6)) continue;
        const unsigned char *x = v4 ? a4 : a6;
        unsigned full = m[i].bits / 8, rest = m[i].bits % 8;
        if (memcmp(x, m[i].addr, full) != 0) continue;
        if (rest && ((x[full] ^ m[i].addr[full]) & (0xFF00 >> rest))) continue;
        return true;
    }
    return false;
}
