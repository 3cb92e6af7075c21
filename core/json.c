/* json.c: strict JSON input, exact JSON output, and the checks for text people type.
 *
 * cJSON is lenient where a government system must not be: it takes bytes that are not
 * UTF-8, raw control characters inside strings, "\u0000" (which then cuts a C string
 * short: a password "X\u0000zzz" would become "X"), unpaired surrogates and repeated
 * keys. zt__json_parse_strict refuses all of them, with a reason a caller can read.
 * cJSON also prints integers from 10^15 to 2^53 with 15 significant digits (so
 * 5000000000000001 comes out as 5e+15); zt_json_print writes every number so that it
 * reads back as the same double, integers as integers. */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/* ---- UTF-8 ------------------------------------------------------------------------- */

size_t zt__utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    unsigned v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t zt__utf8_bad(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n;) {
        if (s[i] && s[i] < 0x80) { /* the common case, without the call */
            i++;
            continue;
        }
        unsigned cp;
        size_t k = zt__utf8_next(s + i, n - i, &cp);
        if (!k || cp == 0) return i;
        i += k;
    }
    return n;
}

bool zt__utf8_ok(const void *s, size_t n)
{
    return zt__utf8_bad(s, n) == n;
}

int zt__buf_json_text(zt_buf *b, const char *s, size_t n)
{
    size_t bad = zt__utf8_bad(s, n);
    if (bad == n) return zt__buf_json_str(b, s, n); /* the common case: no copy */
    zt_buf t = {0};
    const unsigned char *u = (const unsigned char *)s;
    if (zt__buf_append(&t, s, bad)) goto oom; /* what is fine before it, as it is */
    for (size_t i = bad; i < n;) {
        unsigned cp;
        size_t k = zt__utf8_next(u + i, n - i, &cp);
        if (k && cp) {
            if (zt__buf_append(&t, s + i, k)) goto oom;
            i += k;
        } else { /* a byte that starts no character: U+FFFD */
            if (zt__buf_append(&t, "\xEF\xBF\xBD", 3)) goto oom;
            i++;
        }
    }
    int rc = zt__buf_json_str(b, t.data ? t.data : "", t.len);
    zt__buf_free(&t);
    return rc;
oom:
    zt__buf_free(&t);
    return ZT_ENOMEM;
}

/* ---- strict parsing ---------------------------------------------------------------- */

/* The four hex digits at p as a number, or -1. */
static int hex4(const char *p)
{
    unsigned char b[2];
    size_t n;
    return zt__hex_decode(b, sizeof b, p, 4, &n) == ZT_OK ? b[0] << 8 | b[1] : -1;
}

/* What cJSON would let through and we do not: the text itself, before parsing. */
static const char *text_problem(const char *s, size_t n, size_t *at)
{
    size_t bad = zt__utf8_bad(s, n);
    if (bad < n) {
        *at = bad;
        return s[bad] ? "is not valid UTF-8" : "holds a NUL byte";
    }
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        *at = i;
        if (!in_str) {
            if (c == '"') {
                in_str = true;
            } else if (c == '[' || c == '{') {
                if (++depth > ZT_JSON_DEPTH) return "is nested deeper than " ZT_JSON_DEPTH_S;
            } else if (c == ']' || c == '}') {
                depth--;
            }
            continue;
        }
        if (c == '"') {
            in_str = false;
        } else if (c < 0x20) {
            return "holds a control character inside a string (write it as an escape: \\n, "
                   "\\t, \\u001f)";
        } else if (c == '\\' && i + 1 < n) {
            if (s[i + 1] != 'u') {
                i++; /* a two-character escape; cJSON checks the letter */
                continue;
            }
            int v = n - i >= 6 ? hex4(s + i + 2) : -1;
            if (v < 0) continue; /* cJSON reports the bad escape */
            if (v == 0) return "holds \\u0000 (a NUL character) inside a string";
            if (v >= 0xDC00 && v <= 0xDFFF) return "holds an unpaired surrogate (\\udc00-\\udfff)";
            if (v >= 0xD800 && v <= 0xDBFF) {
                int lo = n - i >= 12 && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s + i + 8) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return "holds an unpaired surrogate (\\ud800-\\udbff)";
                i += 6;
            }
            i += 5;
        }
    }
    return NULL;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The first key that an object (at any depth) holds twice, or NULL. */
static const char *repeated_key(const cJSON *v)
{
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) return NULL;
    size_t n = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        const char *r = repeated_key(e);
        if (r) return r;
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2) return NULL;
    if (n <= 8) {
        for (const cJSON *e = v->child; e; e = e->next)
            for (const cJSON *f = e->next; f; f = f->next)
                if (strcmp(e->string, f->string) == 0) return e->string;
        return NULL;
    }
    const cJSON **all = malloc(n * sizeof *all);
    if (!all) return NULL; /* the caller cannot tell: leaves the object as parsed */
    size_t i = 0;
    for (const cJSON *e = v->child; e; e = e->next) all[i++] = e;
    qsort(all, n, sizeof *all, key_cmp);
    const char *r = NULL;
    for (i = 1; i < n && !r; i++)
        if (strcmp(all[i - 1]->string, all[i]->string) == 0) r = all[i]->string;
    free(all);
    return r;
}

static void json_wipe(cJSON *j)
{
    for (; j; j = j->next) {
        if (j->string && !(j->type & cJSON_StringIsConst))
            sodium_memzero(j->string, strlen(j->string));
        if (j->type & cJSON_IsReference) continue; /* what it points to is not its own */
        if (j->valuestring) sodium_memzero(j->valuestring, strlen(j->valuestring));
        j->valuedouble = 0;
        j->valueint = 0;
        json_wipe(j->child);
    }
}

void zt__json_delete_wiped(cJSON *j)
{
    if (!j) return;
    json_wipe(j);
    cJSON_Delete(j);
}

int zt__json_parse_strict(const char *s, size_t n, cJSON **out, char *why, size_t whylen)
{
    *out = NULL;
    size_t at = 0;
    const char *p = text_problem(s, n, &at);
    if (p) {
        snprintf(why, whylen, "not valid JSON: it %s (at byte %zu)", p, at);
        return ZT_EINVAL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!j) {
        if (end && end >= s && end <= s + n)
            snprintf(why, whylen, "not valid JSON (at byte %zu)", (size_t)(end - s));
        else
            snprintf(why, whylen, "not valid JSON");
        return ZT_EINVAL;
    }
    while (end < s + n && strchr(" \t\r\n", *end)) end++;
    if (end != s + n) {
        cJSON_Delete(j);
        snprintf(why, whylen, "not valid JSON: something follows the value (at byte %zu)",
                 (size_t)(end - s));
        return ZT_EINVAL;
    }
    const char *k = repeated_key(j);
    if (k) {
        /* name the key, cut short on a character boundary */
        size_t kl = strlen(k), cut = 0;
        while (cut < kl && cut < 60) {
            unsigned cp;
            size_t step = zt__utf8_next((const unsigned char *)k + cut, kl - cut, &cp);
            if (!step || cut + step > 60) break;
            cut += step;
        }
        snprintf(why, whylen, "not valid here: the key \"%.*s%s\" appears twice in one object",
                 (int)cut, k, cut < kl ? "…" : "");
        cJSON_Delete(j);
        return ZT_EINVAL;
    }
    *out = j;
    return ZT_OK;
}

/* ---- exact printing ---------------------------------------------------------------- */

size_t zt__json_num(char out[32], double d)
{
    int n;
    if (!isfinite(d)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (d == 0 && signbit(d)) {
        memcpy(out, "-0", 3);
        return 2;
    }
    if (fabs(d) <= 9007199254740992.0 && d == trunc(d)) {
        size_t len = zt__i64_text(out, (int64_t)d);
        out[len] = 0;
        return len;
    }
    /* the shortest of 15, 16, 17 significant digits that reads back as d */
    for (int prec = 15;; prec++) {
        n = snprintf(out, 32, "%.*g", prec, d);
        if (prec == 17 || strtod(out, NULL) == d) break;
    }
    return (size_t)n;
}

/* A string as JSON; bytes that are not UTF-8 (data stored before the node checked its
 * input) become U+FFFD, so that what it writes is always JSON. */
static int print_str(zt_buf *b, const char *s)
{
    return zt__buf_json_text(b, s, strlen(s));
}

static int print_value(zt_buf *b, const cJSON *v, int depth)
{
    if (depth > ZT_JSON_DEPTH) return ZT_EINVAL;
    char num[32];
    switch (v->type & 0xFF) {
    case cJSON_False:
        return zt__buf_append(b, "false", 5);
    case cJSON_True:
        return zt__buf_append(b, "true", 4);
    case cJSON_NULL:
        return zt__buf_append(b, "null", 4);
    case cJSON_Number:
        return zt__buf_append(b, num, zt__json_num(num, v->valuedouble));
    case cJSON_Raw:
        return v->valuestring ? zt__buf_puts(b, v->valuestring) : ZT_EINVAL;
    case cJSON_String:
        return v->valuestring ? print_str(b, v->valuestring) : ZT_EINVAL;
    case cJSON_Array:
    case cJSON_Object: {
        bool obj = cJSON_IsObject(v);
        if (zt__buf_append(b, obj ? "{" : "[", 1)) return ZT_ENOMEM;
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child && zt__buf_append(b, ",", 1)) return ZT_ENOMEM;
            if (obj) {
                if (!e->string) return ZT_EINVAL;
                int rc = print_str(b, e->string);
                if (rc || zt__buf_append(b, ":", 1)) return ZT_ENOMEM;
            }
            int rc = print_value(b, e, depth + 1);
            if (rc) return rc;
        }
        return zt__buf_append(b, obj ? "}" : "]", 1);
    }
    default:
        return ZT_EINVAL;
    }
}

char *zt_json_print(const cJSON *v)
{
    zt_buf b = {0};
    if (!v || print_value(&b, v, 0) || zt__buf_append(&b, "", 1)) {
        zt__buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* ---- text people type -------------------------------------------------------------- */

static bool blank_cp(unsigned cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

const char *zt_text_problem(const char *s, size_t max_chars, int flags)
{
    if (!s || !*s) return "is empty";
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), chars = 0;
    bool blank = true;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t k = zt__utf8_next(u + i, n - i, &cp);
        if (!k) return "is not valid UTF-8";
        i += k;
        chars++;
        bool line = cp == '\n' || cp == '\t' || cp == '\r';
        if ((cp < 0x20 && !(line && (flags & ZT_TEXT_LINES))) || (cp >= 0x7F && cp <= 0x9F))
            return (flags & ZT_TEXT_LINES) ? "holds a control character (only line breaks and tabs "
                                             "may appear)"
                                           : "holds a control character (a line break, a tab…)";
        if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
            return "holds a text-direction control character (U+202A-U+202E, U+2066-U+2069)";
        if (cp == 0xFFFE || cp == 0xFFFF) return "holds a non-character (U+FFFE, U+FFFF)";
        if (!blank_cp(cp)) blank = false;
    }
    if (blank) return "is only spaces";
    if (chars > max_chars) return "is too long";
    return NULL;
}
