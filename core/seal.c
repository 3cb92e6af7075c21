/* seal.c: electronic seals (电子印章): department Ed25519 or SM2 keys, sealing, verification. */
#include "core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/*
 * A seal signs, with the department's current key, the message
 *     "zhengtong-seal-v1\n" department "\n" key_id "\n" time "\n" hex(digest(doc))
 * and is handed out as JSON: {v, algorithm, department, key_id, time, digest, signature}.
 * The key's algorithm decides the rest: "Ed25519" (the digest BLAKE2b-256, a 64-byte
 * signature) or "SM2" (国密: the digest SM3, an SM2 signature with SM3 and the default
 * distinguishing ID, DER-encoded); seal.algorithm decides that of each new key.
 * Keys rotate: a new key becomes current, the old one is retired at that time and still
 * verifies the seals it made before.
 */

#define ALG_ED25519 "Ed25519"
#define ALG_SM2     "SM2"

struct zt_seals {
    zt_db *keys; /* key_id → {key_id, department, public_key, sealed, created_at, retired_at} */
    zt_db *current; /* department → key_id */
    zt_db *meta;    /* _core/meta: "node_key" → the node's sealed signing key (auth.c keeps
                     * "activity_since" there too) */
};

zt_db *zt__core_meta(zt_server *srv)
{
    return srv->seals->meta;
}

/* ---- canonical JSON -------------------------------------------------------------- */

/* The JSON Canonicalization Scheme (RFC 8785, JCS): what ECMAScript's JSON.stringify
 * writes, with object keys sorted, so that anyone can recompute the text a seal signs with
 * any JCS library (or ten lines of JavaScript). On top of JCS, numbers of magnitude 2^53
 * or more are refused (see zt_json_canonical), as are strings that are not UTF-8. */

/* The first UTF-16 code unit of a code point: keys are ordered by their UTF-16 code
 * units (RFC 8785 §3.2.3), which is code point order except that characters beyond
 * U+FFFF (written as surrogates, D800–DBFF first) come before U+E000–U+FFFF. */
static unsigned utf16_first(unsigned cp)
{
    return cp >= 0x10000 ? 0xD800 + ((cp - 0x10000) >> 10) : cp;
}

/* Keys are valid UTF-8 here (canon checks them before sorting). */
static int cmp_keys(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)(*(const cJSON *const *)a)->string;
    const unsigned char *y = (const unsigned char *)(*(const cJSON *const *)b)->string;
    size_t xn = strlen((const char *)x), yn = strlen((const char *)y);
    while (xn && yn) {
        unsigned cx = 0, cy = 0;
        size_t kx = zt__utf8_next(x, xn, &cx), ky = zt__utf8_next(y, yn, &cy);
        if (cx != cy) {
            unsigned ux = utf16_first(cx), uy = utf16_first(cy);
            if (ux == uy) return cx < cy ? -1 : 1; /* one high surrogate: low surrogate order */
            return ux < uy ? -1 : 1;
        }
        x += kx, xn -= kx;
        y += ky, yn -= ky;
    }
    return xn ? 1 : yn ? -1 : 0;
}

/* A number as ECMAScript's Number::toString writes it (RFC 8785 §3.2.2.3): the fewest
 * significant digits that read back as the same double (0.1 is 0.1, not
 * 0.10000000000000001), in plain notation from 1e-6 to below 1e21 and as 1e-7 below;
 * -0 is 0. printf rounds correctly, so the first precision that reads back gives the
 * closest of the shortest digit strings. */
static int es_number(zt_buf *b, double d)
{
    if (d == 0) return zt__buf_puts(b, "0");
    char e[40];
    for (int p = 0; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e is [-]D[.DDD]e±XX: the digits s (k of them) and n, with d = 0.s × 10^n */
    const char *s = e;
    char digits[24], out[64];
    size_t k = 0, o = 0;
    if (*s == '-') out[o++] = *s++;
    for (; *s && *s != 'e' && k < sizeof digits; s++)
        if (*s != '.') digits[k++] = *s;
    if (*s != 'e') return ZT_EINVAL;
    int n = atoi(s + 1) + 1, ki = (int)k;
    if (ki <= n && n <= 21) { /* 1500 */
        memcpy(out + o, digits, k), o += k;
        for (int i = ki; i < n; i++) out[o++] = '0';
    } else if (0 < n && n <= 21) { /* 1.5 */
        memcpy(out + o, digits, (size_t)n), o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, digits + n, k - (size_t)n), o += k - (size_t)n;
    } else if (-6 < n && n <= 0) { /* 0.0015 */
        out[o++] = '0', out[o++] = '.';
        for (int i = n; i < 0; i++) out[o++] = '0';
        memcpy(out + o, digits, k), o += k;
    } else { /* 1.5e-7 */
        out[o++] = digits[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, k - 1), o += k - 1;
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%d", n - 1 < 0 ? '-' : '+',
                              n - 1 < 0 ? 1 - n : n - 1);
    }
    return zt__buf_append(b, out, o);
}

static int canon_str(zt_buf *b, const char *s)
{
    size_t n = strlen(s);
    return zt__utf8_ok(s, n) ? zt__buf_json_str(b, s, n) : ZT_EINVAL;
}

static int canon(const cJSON *v, zt_buf *b, int depth)
{
    if (depth > 64) return ZT_EINVAL;
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        const cJSON **kids = malloc((n ? n : 1) * sizeof(*kids));
        if (!kids) return ZT_ENOMEM;
        n = 0;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!c->string || !zt__utf8_ok(c->string, strlen(c->string))) {
                free(kids);
                return ZT_EINVAL; /* a key that is not UTF-8 has no place in the order */
            }
            kids[n++] = c;
        }
        qsort(kids, n, sizeof(*kids), cmp_keys);
        int rc = zt__buf_puts(b, "{");
        for (size_t i = 0; i < n && rc == ZT_OK; i++) {
            if (i && strcmp(kids[i - 1]->string, kids[i]->string) == 0)
                rc = ZT_EINVAL; /* duplicate keys have no canonical form */
            if (rc == ZT_OK && i) rc = zt__buf_puts(b, ",");
            if (rc == ZT_OK) rc = canon_str(b, kids[i]->string);
            if (rc == ZT_OK) rc = zt__buf_puts(b, ":");
            if (rc == ZT_OK) rc = canon(kids[i], b, depth + 1);
        }
        free(kids);
        return rc ? rc : zt__buf_puts(b, "}");
    }
    if (cJSON_IsArray(v)) {
        int rc = zt__buf_puts(b, "[");
        for (const cJSON *c = v->child; c && rc == ZT_OK; c = c->next) {
            if (c != v->child) rc = zt__buf_puts(b, ",");
            if (rc == ZT_OK) rc = canon(c, b, depth + 1);
        }
        return rc ? rc : zt__buf_puts(b, "]");
    }
    if (cJSON_IsString(v)) return canon_str(b, v->valuestring);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* NaN and infinities have no JSON; from 2^53 on a double holds only every other
         * integer (then every fourth...), so 9007199254740993 would be sealed as
         * 9007199254740992, and an 18-digit ID number as its neighbour: the seal would
         * vouch for a number the document does not hold. Such numbers go as strings. */
        if (d != d || d - d != 0 || !(fabs(d) < 9007199254740992.0)) return ZT_EINVAL;
        return es_number(b, d);
    }
    if (cJSON_IsTrue(v)) return zt__buf_puts(b, "true");
    if (cJSON_IsFalse(v)) return zt__buf_puts(b, "false");
    if (cJSON_IsNull(v)) return zt__buf_puts(b, "null");
    return ZT_EINVAL;
}

int zt_json_canonical(const cJSON *v, char **out, size_t *len)
{
    zt_buf b = {0};
    int rc = canon(v, &b, 0);
    if (rc != ZT_OK || !b.data) {
        zt__buf_free(&b);
        return rc ? rc : ZT_ENOMEM;
    }
    *out = b.data;
    *len = b.len;
    return ZT_OK;
}

/* ---- keys ------------------------------------------------------------------------ */

static int seal_message(char *out, size_t cap, const char *dept, const char *key_id, int64_t time,
                        const void *doc, size_t len, bool sm3, char digest_hex[65])
{
    unsigned char d[32];
    if (sm3)
        zt__sm3(doc, len, d);
    else
        crypto_generichash(d, 32, doc, len, NULL, 0);
    sodium_bin2hex(digest_hex, 65, d, 32);
    int n = snprintf(out, cap, "zhengtong-seal-v1\n%s\n%s\n%lld\n%s", dept, key_id, (long long)time,
                     digest_hex);
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* Whether a key record (or a seal) is of SM2; else Ed25519 (records from before SM2 name
 * Ed25519, or no algorithm: the same). */
static bool is_sm2(const cJSON *k)
{
    const char *a = zt__jstr(k, "algorithm");
    return a && strcmp(a, ALG_SM2) == 0;
}

/* A new key for the department, of seal.algorithm; the current one (if any) retires now. */
static int rotate(zt_server *srv, zt_txn *t, const char *dept, cJSON **out)
{
    zt_seals *s = srv->seals;
    bool sm2 = srv->conf->seal_sm2;
    unsigned char pk[ZT__SM2_PK_BYTES], sealed[ZT__SEALED_SM2_BYTES];
    size_t slen = sizeof sealed, pklen = sm2 ? ZT__SM2_PK_BYTES : 32;
    int rc = sm2 ? zt__sm2_keygen(srv->keys, pk, sealed, &slen)
                 : zt__seal_keygen(srv->keys, pk, sealed, &slen);
    if (rc != ZT_OK) return rc;
    int64_t now = zt_now_ms();
    const void *v;
    size_t vl;
    if (zt_get(t, s->current, dept, strlen(dept), &v, &vl) == ZT_OK && vl == 26) {
        char old_id[27];
        memcpy(old_id, v, 26);
        old_id[26] = 0;
        cJSON *old = zt__db_get_json(t, s->keys, old_id, 26);
        if (old) {
            cJSON_AddNumberToObject(old, "retired_at", (double)now);
            rc = zt__db_put_json(t, s->keys, old_id, 26, old);
            cJSON_Delete(old);
            if (rc != ZT_OK) return rc;
        }
    }
    char id[27], pkhex[2 * ZT__SM2_PK_BYTES + 1], sb[ZT__B64URL_LEN(ZT__SEALED_SM2_BYTES)];
    zt_id(id);
    sodium_bin2hex(pkhex, sizeof pkhex, pk, pklen);
    zt__b64url_encode(sb, sealed, slen);
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "key_id", id);
    cJSON_AddStringToObject(k, "department", dept);
    cJSON_AddStringToObject(k, "algorithm", sm2 ? ALG_SM2 : ALG_ED25519);
    cJSON_AddStringToObject(k, "public_key", pkhex);
    cJSON_AddStringToObject(k, "sealed", sb);
    cJSON_AddNumberToObject(k, "created_at", (double)now);
    rc = zt__db_put_json(t, s->keys, id, 26, k);
    if (rc == ZT_OK) rc = zt_put(t, s->current, dept, strlen(dept), id, 26);
    if (rc == ZT_OK && out)
        *out = k;
    else
        cJSON_Delete(k);
    return rc;
}

static cJSON *public_key(const cJSON *k)
{
    cJSON *o = cJSON_Duplicate(k, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "sealed");
    return o;
}

int zt_seal_bytes(zt_req *req, const char *dept, const void *doc, size_t len, cJSON **seal)
{
    zt_server *srv = req->srv;
    zt_seals *s = srv->seals;
    if (!dept || !dept[0] || strlen(dept) > 64) return ZT_EINVAL;
    zt_txn *t;
    int wrc = zt__req_write_txn(req, &t);
    if (wrc != ZT_OK) return wrc;
    const void *v;
    size_t vl;
    cJSON *k = NULL;
    int rc = ZT_OK;
    if (zt_get(t, s->current, dept, strlen(dept), &v, &vl) == ZT_OK && vl == 26)
        k = zt__db_get_json(t, s->keys, v, 26);
    /* a department's first seal makes its key; a code that names no department gets none
     * (it would be published in GET /seal/keys as a seal of nobody) */
    if (!k && !zt__auth_dept_exists(srv, t, dept)) return ZT_ENOTFOUND;
    if (!k && (rc = rotate(srv, t, dept, &k)) != ZT_OK) return rc;
    const char *id = zt__jstr(k, "key_id"), *sb = zt__jstr(k, "sealed");
    bool sm2 = is_sm2(k);
    unsigned char sealed[ZT__SEALED_SM2_BYTES + 8], sig[ZT__SM2_SIG_MAX];
    size_t slen = 0, siglen = 64;
    int64_t now = zt_now_ms();
    char msg[512], digest[65];
    if (!id || !sb || zt__b64url_decode(sealed, sizeof sealed, sb, strlen(sb), &slen) != ZT_OK ||
        seal_message(msg, sizeof msg, dept, id, now, doc, len, sm2, digest) < 0) {
        cJSON_Delete(k);
        return ZT_EIO;
    }
    rc = sm2 ? zt__sm2_sign(srv->keys, sealed, slen, msg, strlen(msg), sig, &siglen)
             : zt__seal_sign(srv->keys, sealed, slen, msg, strlen(msg), sig);
    if (rc == ZT_OK) {
        char sigb[ZT__B64URL_LEN(ZT__SM2_SIG_MAX)];
        zt__b64url_encode(sigb, sig, siglen);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "v", 1);
        cJSON_AddStringToObject(o, "algorithm", sm2 ? ALG_SM2 : ALG_ED25519);
        cJSON_AddStringToObject(o, "department", dept);
        cJSON_AddStringToObject(o, "key_id", id);
        cJSON_AddNumberToObject(o, "time", (double)now);
        cJSON_AddStringToObject(o, "digest", digest);
        cJSON_AddStringToObject(o, "signature", sigb);
        *seal = o;
    }
    cJSON_Delete(k);
    return rc;
}

int zt_seal_json(zt_req *req, const char *dept, const cJSON *doc, cJSON **seal)
{
    char *c;
    size_t len;
    int rc = zt_json_canonical(doc, &c, &len);
    if (rc != ZT_OK) return rc;
    rc = zt_seal_bytes(req, dept, c, len, seal);
    free(c);
    return rc;
}

/* The public key of a sealed secret key, read from its bytes 1..32 only once the sealed
 * form has opened under this master key: a key pair put in the store by someone who has no
 * master key (to make seals, or sign checkpoints, that verify) is not believed (ZT_EINVAL).
 * Opening it is the check (its associated data is that public key): no signature needed. */
static int sealed_public(zt_server *srv, const unsigned char *sealed, size_t slen,
                         unsigned char *pk, size_t pklen)
{
    int rc = zt__seal_opens(srv->keys, sealed, slen);
    if (rc == ZT_OK && slen < 1 + pklen) rc = ZT_EINVAL;
    if (rc == ZT_OK) memcpy(pk, sealed + 1, pklen); /* the sealed form starts: version, key */
    return rc;
}

/* A department key record's public key (32 bytes for Ed25519, 65 for SM2: pk holds
 * ZT__SM2_PK_BYTES), if it is the one its sealed private key was made with under this
 * master key, the sealed form of its algorithm; ZT_EINVAL if any was changed outside
 * Zhengtong. */
static int key_public(zt_server *srv, const cJSON *k, unsigned char *pk)
{
    const char *pkhex = zt__jstr(k, "public_key"), *sb = zt__jstr(k, "sealed");
    size_t want = is_sm2(k) ? ZT__SM2_PK_BYTES : 32, n = 0, slen = 0;
    unsigned char shown[ZT__SM2_PK_BYTES], sealed[ZT__SEALED_SM2_BYTES + 8];
    if (!pkhex || !sb || zt__hex_decode(shown, sizeof shown, pkhex, strlen(pkhex), &n) != ZT_OK ||
        n != want || zt__b64url_decode(sealed, sizeof sealed, sb, strlen(sb), &slen) != ZT_OK ||
        slen != (want == 32 ? ZT__SEALED_SK_BYTES : ZT__SEALED_SM2_BYTES))
        return ZT_EINVAL;
    int rc = sealed_public(srv, sealed, slen, pk, want);
    if (rc == ZT_OK && sodium_memcmp(pk, shown, want) != 0) rc = ZT_EINVAL;
    return rc;
}

int zt__seal_check(zt_server *srv, zt_txn *t, const void *doc, size_t len, const cJSON *seal,
                   const char **why)
{
    zt_seals *s = srv->seals;
    const char *dept = zt__jstr(seal, "department"), *id = zt__jstr(seal, "key_id");
    const char *sigb = zt__jstr(seal, "signature");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(seal, "time");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(seal, "v");
    const char *alg = zt__jstr(seal, "algorithm");
    if (!dept || !id || !sigb || !cJSON_IsNumber(tm) || strlen(id) != 26) {
        *why = "the seal lacks department, key_id, time or signature";
        return ZT_EINVAL;
    }
    /* what the signature does not cover must still be what was issued: a seal that says
     * another version or algorithm, or a time the signature holds only rounded (1.4 ms
     * later, or beyond what an integer holds), is not the one the node made */
    if (!cJSON_IsNumber(v) || v->valuedouble != 1 || !alg ||
        (strcmp(alg, ALG_ED25519) != 0 && strcmp(alg, ALG_SM2) != 0)) {
        *why = "the seal is not of version 1 (v: 1, algorithm: Ed25519 or SM2)";
        return ZT_EINVAL;
    }
    if (!(tm->valuedouble >= 0 && tm->valuedouble < 9007199254740992.0) ||
        tm->valuedouble != (double)(int64_t)tm->valuedouble) {
        *why = "the seal's time is not a whole number of milliseconds";
        return ZT_EINVAL;
    }
    cJSON *k = zt__db_get_json(t, s->keys, id, 26);
    if (!k) {
        *why = "no such seal key on this node";
        return ZT_ENOTFOUND;
    }
    int rc = ZT_EINVAL, krc;
    bool sm2 = is_sm2(k);
    unsigned char pk[ZT__SM2_PK_BYTES], sig[ZT__SM2_SIG_MAX];
    size_t n = 0;
    const char *kdept = zt__jstr(k, "department");
    const cJSON *retired = cJSON_GetObjectItemCaseSensitive(k, "retired_at");
    char msg[512], digest[65];
    int64_t time = (int64_t)tm->valuedouble;
    if (!kdept || strcmp(kdept, dept) != 0) {
        *why = "the key belongs to another department";
    } else if (sm2 != (strcmp(alg, ALG_SM2) == 0)) {
        *why = sm2 ? "the seal says Ed25519, but its key is an SM2 key"
                   : "the seal says SM2, but its key is an Ed25519 key";
    } else if (cJSON_IsNumber(retired) && (double)time > retired->valuedouble) {
        *why = "the seal is dated after its key was retired";
    } else if ((krc = key_public(srv, k, pk)) != ZT_OK) {
        *why = "the seal key on this node was changed outside Zhengtong (it is not the one "
               "its private key was made with under the master key): no seal of it can be "
               "checked";
        if (krc == ZT_EINVAL)
            zt__log(ZT_LOG_ERROR, NULL, NULL,
                    "seal key %s of department %s was changed outside "
                    "Zhengtong: the seals it made cannot be checked",
                    id, kdept);
        else
            rc = krc;
    } else if (zt__b64url_decode(sig, sizeof sig, sigb, strlen(sigb), &n) != ZT_OK ||
               (sm2 ? n < 8 : n != 64)) {
        *why = sm2 ? "the signature is not an SM2 signature (DER, at most 72 bytes) in base64url"
                   : "the signature is not 64 bytes of base64url";
    } else if (seal_message(msg, sizeof msg, dept, id, time, doc, len, sm2, digest) < 0) {
        *why = "the seal's fields are too long";
    } else if (zt__jstr(seal, "digest") && strcmp(zt__jstr(seal, "digest"), digest) != 0) {
        *why = "the document is not the one that was sealed";
    } else if (sm2 ? zt__sm2_verify(pk, msg, strlen(msg), sig, n) != ZT_OK
                   : zt_seal_verify(pk, msg, strlen(msg), sig) != ZT_OK) {
        *why = "the signature does not match the document and the seal";
    } else {
        *why = NULL;
        rc = ZT_OK;
    }
    cJSON_Delete(k);
    return rc;
}

/* ---- the node's own key (audit checkpoints) ---------------------------------------- */

static int node_key(zt_server *srv, zt_txn *t, unsigned char *sealed, size_t *slen)
{
    const void *v;
    size_t vl;
    int rc = zt_get(t, srv->seals->meta, "node_key", 8, &v, &vl);
    if (rc == ZT_OK) {
        if (vl > *slen) return ZT_EIO;
        memcpy(sealed, v, vl);
        *slen = vl;
        return ZT_OK;
    }
    if (rc != ZT_ENOTFOUND || !zt_txn_writable(t)) return rc;
    unsigned char pk[32];
    if ((rc = zt__seal_keygen(srv->keys, pk, sealed, slen)) != ZT_OK) return rc;
    return zt_put(t, srv->seals->meta, "node_key", 8, sealed, *slen);
}

int zt__node_sign(zt_server *srv, zt_txn *t, const void *msg, size_t len, unsigned char sig[64])
{
    unsigned char sealed[ZT__SEALED_SK_BYTES + 8];
    size_t slen = sizeof sealed;
    int rc = node_key(srv, t, sealed, &slen);
    return rc ? rc : zt__seal_sign(srv->keys, sealed, slen, msg, len, sig);
}

/* ZT_ENOTFOUND: no key yet; ZT_EINVAL: not one this master key sealed (sealed_public). */
int zt__node_pubkey(zt_server *srv, zt_txn *t, unsigned char pk[32])
{
    unsigned char sealed[ZT__SEALED_SK_BYTES + 8];
    size_t slen = sizeof sealed;
    int rc = node_key(srv, t, sealed, &slen);
    return rc ? rc : sealed_public(srv, sealed, slen, pk, 32);
}

/* ---- HTTP ------------------------------------------------------------------------ */

#define NO_CANONICAL                                                                               \
    "the document has no canonical JSON form: a number beyond ±2^53 (9007199254740992: a "        \
    "double cannot tell such integers from their neighbours; send them as strings), or "           \
    "nesting deeper than 64"

/* The document of a sign or verify request: "document" (JSON, sealed in canonical form)
 * or "document_base64" (bytes, base64url). NULL, or why not. */
static const char *body_document(cJSON *j, char **doc, size_t *len)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "document");
    const char *b = zt__jstr(j, "document_base64");
    if (d && !b) return zt_json_canonical(d, doc, len) == ZT_OK ? NULL : NO_CANONICAL;
    if (b && !d) {
        size_t cap = strlen(b) + 4;
        if (!(*doc = malloc(cap))) return "out of memory";
        if (zt__b64url_decode(*doc, cap, b, strlen(b), len) != ZT_OK) {
            free(*doc);
            return "document_base64 is not base64url (RFC 4648 section 5, no padding)";
        }
        return NULL;
    }
    return ""; /* neither, or both: the caller says what to send */
}

struct key_filter {
    zt_server *srv;
    const char *dept; /* NULL: every department's */
};

/* A key of the department asked for, and one whose public key is its own: a key changed
 * outside Zhengtong is not published, for whoever checks seals with their own tools. */
static bool key_shown(cJSON *k, void *ud)
{
    struct key_filter *f = ud;
    const char *d = zt__jstr(k, "department");
    unsigned char pk[ZT__SM2_PK_BYTES];
    if (f->dept && (!d || strcmp(d, f->dept) != 0)) return false;
    if (key_public(f->srv, k, pk) == ZT_OK) {
        /* an SM2 key also as PEM, made here from the key just checked (never stored:
         * what is published is what the sealed key vouches for) */
        char pem[512];
        if (is_sm2(k) && zt__sm2_pem(pk, pem, sizeof pem) == ZT_OK)
            cJSON_AddStringToObject(k, "public_key_pem", pem);
        return true;
    }
    zt__log(ZT_LOG_ERROR, NULL, NULL,
            "seal key %s of department %s was changed outside Zhengtong: not published",
            zt__jstr(k, "key_id") ? zt__jstr(k, "key_id") : "?", d ? d : "?");
    return false;
}

static int h_keys(zt_req *req, void *ud)
{
    struct key_filter f = {ud, zt_req_query(req, "department")};
    return zt__respond_db_list(req, f.srv->seals->keys, key_shown, &f, "sealed");
}

static int h_verify(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const cJSON *seal = cJSON_GetObjectItemCaseSensitive(j, "seal");
    char *doc = NULL;
    size_t len = 0;
    const char *bad = cJSON_IsObject(seal) ? body_document(j, &doc, &len) : "";
    if (bad)
        return zt_problem(req, 422, "invalid-seal-request", NULL, "%s",
                          bad[0] ? bad
                                 : "send {\"seal\": {...}, and \"document\": <JSON> or "
                                   "\"document_base64\": <base64url bytes>}");
    zt_txn *t = zt_req_txn(req);
    const char *why = "storage failure";
    int rc = t ? zt__seal_check(srv, t, doc, len, seal, &why) : ZT_EIO;
    free(doc);
    if (rc == ZT_EIO) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "valid", rc == ZT_OK);
    if (why) cJSON_AddStringToObject(o, "reason", why);
    const char *dept = zt__jstr(seal, "department");
    if (dept) cJSON_AddStringToObject(o, "department", dept);
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int h_sign(zt_req *req, void *ud)
{
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *dept = zt__jstr(j, "department");
    if (!dept) dept = req->caller->department;
    if (!dept || !zt_req_in_scope(req, dept))
        return zt_problem(req, 403, "forbidden", NULL,
                          "you may seal only for your department or one below it");
    char *doc = NULL;
    size_t len = 0;
    const char *bad = body_document(j, &doc, &len);
    if (bad)
        return zt_problem(req, 422, "invalid-seal-request", NULL, "%s",
                          bad[0] ? bad
                                 : "send \"document\": <JSON> or \"document_base64\": "
                                   "<base64url>");
    cJSON *seal = NULL;
    int rc = zt_seal_bytes(req, dept, doc, len, &seal);
    free(doc);
    if (rc == ZT_ENOTFOUND)
        return zt_problem(req, 422, "invalid-seal-request", NULL,
                          "there is no department '%s' (GET /admin/departments)", dept);
    if (rc != ZT_OK) return rc;
    /* which seal, so that the record leads to the document (its digest) and back */
    char object[256];
    snprintf(object, sizeof object, "%s key %s time %.0f digest %s", dept, zt__jstr(seal, "key_id"),
             cJSON_GetNumberValue(cJSON_GetObjectItem(seal, "time")), zt__jstr(seal, "digest"));
    zt_audit_note(req, "seal", object);
    rc = zt_respond_json(req, 201, seal);
    cJSON_Delete(seal);
    return rc;
}

static int h_rotate(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    cJSON *j;
    const char *dept;
    if (zt_req_json(req, &j) != ZT_OK) return zt_req_json_problem(req);
    if (!(dept = zt__jstr(j, "department")) || !dept[0] || strlen(dept) > 64)
        return zt_problem(req, 422, "invalid-seal-request", NULL,
                          "send {\"department\": \"<code>\"}");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    if (!zt__auth_dept_exists(srv, t, dept))
        return zt_problem(req, 422, "invalid-seal-request", NULL,
                          "there is no department '%s' (GET /admin/departments)", dept);
    cJSON *k = NULL;
    int rc = rotate(srv, t, dept, &k);
    if (rc != ZT_OK) return rc;
    cJSON *o = public_key(k);
    unsigned char pk[ZT__SM2_PK_BYTES];
    char pem[512];
    if (is_sm2(k) && key_public(srv, k, pk) == ZT_OK && zt__sm2_pem(pk, pem, sizeof pem) == ZT_OK)
        cJSON_AddStringToObject(o, "public_key_pem", pem);
    zt_audit_note(req, "seal key rotation", dept);
    rc = zt_respond_json(req, 201, o);
    cJSON_Delete(o);
    cJSON_Delete(k);
    return rc;
}

/* seal.algorithm changed: the departments whose current key is of the other algorithm
 * keep sealing with it until their key is rotated; the log says which, once a start. */
void zt__seals_start(zt_server *srv)
{
    zt_seals *s = srv->seals;
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    zt_buf names = {0};
    size_t n = 0;
    if (zt__store_read_begin(srv->store, &t) != ZT_OK) return;
    if (zt_cursor_open(t, s->current, &c) == ZT_OK) {
        for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
             rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
            cJSON *k = kv.vlen == 26 ? zt__db_get_json(t, s->keys, kv.val, 26) : NULL;
            if (k && is_sm2(k) != srv->conf->seal_sm2 && n++ < 20)
                zt__buf_printf(&names, "%s%.*s", n > 1 ? ", " : "", (int)kv.klen,
                               (const char *)kv.key);
            cJSON_Delete(k);
        }
        zt_cursor_close(c);
    }
    zt__store_end(srv->store, t, false);
    if (n)
        zt__log(ZT_LOG_INFO, NULL, NULL,
                "seal.algorithm is %s, but %zu departments seal with %s keys (%.*s%s): each "
                "goes on with its key until it is rotated (POST /admin/seal/keys "
                "{\"department\": CODE}); their old seals stay valid",
                srv->conf->seal_sm2 ? ALG_SM2 : ALG_ED25519, n,
                srv->conf->seal_sm2 ? ALG_ED25519 : ALG_SM2, (int)names.len,
                names.data ? names.data : "", n > 20 ? ", ..." : "");
    zt__buf_free(&names);
}

int zt__seals_open(zt_server *srv, char *err, size_t errlen)
{
    zt_seals *s = calloc(1, sizeof(*s));
    if (!s) return ZT_ENOMEM;
    srv->seals = s;
    int rc;
    if ((rc = zt__store_db(srv->store, "_core", "seal_keys", &s->keys)) ||
        (rc = zt__store_db(srv->store, "_core", "seal_current", &s->current)) ||
        (rc = zt__store_db(srv->store, "_core", "meta", &s->meta))) {
        snprintf(err, errlen, "cannot open the seal databases: %s", zt_strerror(rc));
        return rc;
    }
    zt_route routes[] = {
        {.method = "GET",
         .path = "/seal/keys",
         .handler = h_keys,
         .role = ZT_ROLE_PUBLIC,
         .summary = "Public keys of every department's seals (?department=)"},
        {.method = "POST",
         .path = "/seal/verify",
         .handler = h_verify,
         .role = ZT_ROLE_PUBLIC,
         .summary = "Check a document against its seal"},
        {.method = "POST",
         .path = "/seal/sign",
         .handler = h_sign,
         .role = "seal_officer",
         .body_limit = 16 << 20,
         .summary = "Seal a document for your department"},
        {.method = "POST",
         .path = "/admin/seal/keys",
         .handler = h_rotate,
         .role = "admin",
         .summary = "A new seal key for a department (the old one retires)"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        routes[i].ud = srv;
        if ((rc = zt__router_add(srv->router, NULL, &routes[i], err, errlen)) != ZT_OK) return rc;
    }
    return ZT_OK;
}

void zt__seals_close(zt_server *srv)
{
    free(srv->seals);
    srv->seals = NULL;
}
