/* crypto.c: the node's keys, personal-data fields, blind indexes, ID validators, seal keys. */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#define KEY_BYTES     32
#define FIELD_VERSION 1
#define SEAL_VERSION  1
#define NONCE_BYTES   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES     crypto_aead_xchacha20poly1305_ietf_ABYTES

/* Sub-key contexts are part of the data at rest: changing one loses every value under it. */
#define CTX_FIELD "ztfield_"
#define CTX_INDEX "ztindex_"
#define CTX_SEAL  "ztseal__"
#define SUBKEY_ID 1

_Static_assert(ZT_FIELD_OVERHEAD == 1 + NONCE_BYTES + TAG_BYTES, "ZT_FIELD_OVERHEAD");
_Static_assert(ZT__SEALED_SK_BYTES ==
                   1 + crypto_sign_PUBLICKEYBYTES + NONCE_BYTES + crypto_sign_SEEDBYTES + TAG_BYTES,
               "ZT__SEALED_SK_BYTES");
_Static_assert(ZT_INDEX_BYTES == crypto_generichash_BYTES, "ZT_INDEX_BYTES");
_Static_assert(KEY_BYTES == crypto_kdf_KEYBYTES && KEY_BYTES == crypto_generichash_KEYBYTES &&
                   KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
               "key sizes");
_Static_assert(sizeof CTX_FIELD - 1 == crypto_kdf_CONTEXTBYTES, "context size");

/* A seal key in clear, only while it makes a key or a signature (then wiped). */
typedef struct seal_secret {
    unsigned char seed[crypto_sign_SEEDBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
} seal_secret;

/* In locked memory with guard pages (sodium_malloc), read-only once made. scratch, also
 * locked but writable, is the one place where a seal key is ever in clear: allocated once,
 * not per signature (a sodium_malloc is several system calls, more than the signature
 * itself). Signing runs on the loop thread only. */
struct zt_keys {
    unsigned char master[KEY_BYTES];
    unsigned char field[KEY_BYTES];
    unsigned char index[KEY_BYTES];
    unsigned char seal[KEY_BYTES];
    seal_secret *scratch;
};

static atomic_bool sodium_ready;

/* sodium_init is itself idempotent and thread-safe; the flag only spares its lock. */
static int crypto_init(void)
{
    if (atomic_load_explicit(&sodium_ready, memory_order_acquire)) return ZT_OK;
    if (sodium_init() < 0) return ZT_ERROR;
    atomic_store_explicit(&sodium_ready, true, memory_order_release);
    return ZT_OK;
}

/* ---- the key file ---------------------------------------------------------------- */

static int errno_code(int e)
{
    return e == ENOMEM ? ZT_ENOMEM : ZT_EIO;
}

/* ZT_ENOTFOUND (no message) when there is no file: the caller then creates one. */
static int read_key(const char *path, unsigned char key[KEY_BYTES], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT) return ZT_ENOTFOUND;
        snprintf(err, errlen, "key file %s: cannot open: %s", path, strerror(errno));
        return errno_code(errno);
    }
    int rc = ZT_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        rc = ZT_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "key file %s is not a regular file", path);
        rc = ZT_EINVAL;
    } else if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "key file %s may be accessed by group or others (mode %04o): it holds the "
                 "node's master key; run `chmod 600 %s` and check that no one copied it",
                 path, (unsigned)(st.st_mode & 07777), path);
        rc = ZT_EPERM;
    } else if (st.st_size != KEY_BYTES) {
        snprintf(err, errlen,
                 "key file %s has %lld bytes, not %d: it is not a Zhengtong key file (or it "
                 "was damaged: restore it from the backup; a new key cannot read old data)",
                 path, (long long)st.st_size, KEY_BYTES);
        rc = ZT_EINVAL;
    }
    for (size_t got = 0; rc == ZT_OK && got < KEY_BYTES;) {
        ssize_t n = read(fd, key + got, KEY_BYTES - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(err, errlen, "key file %s: cannot read: %s", path,
                     n < 0 ? strerror(errno) : "it became shorter");
            rc = ZT_EIO;
        } else {
            got += (size_t)n;
        }
    }
    close(fd);
    return rc;
}

/* The folder part of path ("." when there is none), in a malloc'd string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* mkdir -p, each folder it makes private to the node's user. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return ZT_OK;
        snprintf(err, errlen, "key folder %s is not a folder", dir);
        return ZT_EINVAL;
    }
    char *parent = dir_of(dir);
    if (!parent) return ZT_ENOMEM;
    int rc = strcmp(parent, dir) == 0 ? ZT_OK : make_dirs(parent, err, errlen);
    free(parent);
    if (rc == ZT_OK && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create key folder %s: %s", dir, strerror(errno));
        rc = errno_code(errno);
    }
    return rc;
}

static int fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "key folder %s: cannot sync: %s", dir, strerror(errno));
        if (fd >= 0) close(fd);
        return ZT_EIO;
    }
    close(fd);
    return ZT_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Publish a new random key at path. link(), unlike rename(), never replaces a file: when
 * another process published its key first, that one is read back and ours is dropped. */
static int create_key(const char *path, unsigned char key[KEY_BYTES], char *err, size_t errlen)
{
    char *dir = dir_of(path);
    char *tmp = malloc(strlen(path) + sizeof ".tmp.XXXXXX");
    int rc = dir && tmp ? make_dirs(dir, err, errlen) : ZT_ENOMEM;
    if (rc != ZT_OK) goto out;
    strcpy(tmp, path);
    strcat(tmp, ".tmp.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create key file %s: %s", tmp, strerror(errno));
        rc = errno_code(errno);
        goto out;
    }
    randombytes_buf(key, KEY_BYTES);
    if (fchmod(fd, 0600) != 0 || write_all(fd, key, KEY_BYTES) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write key file %s: %s", tmp, strerror(errno));
        rc = ZT_EIO;
    }
    if (close(fd) != 0 && rc == ZT_OK) {
        snprintf(err, errlen, "cannot write key file %s: %s", tmp, strerror(errno));
        rc = ZT_EIO;
    }
    if (rc == ZT_OK && link(tmp, path) != 0) {
        if (errno == EEXIST) {
            rc = ZT_EEXIST;
        } else {
            snprintf(err, errlen, "cannot create key file %s: %s", path, strerror(errno));
            rc = errno_code(errno);
        }
    }
    unlink(tmp);
    if (rc == ZT_EEXIST) {
        sodium_memzero(key, KEY_BYTES);
        rc = read_key(path, key, err, errlen);
        if (rc == ZT_ENOTFOUND) {
            snprintf(err, errlen, "key file %s vanished while it was being created", path);
            rc = ZT_EIO;
        }
    } else if (rc == ZT_OK) {
        rc = fsync_dir(dir, err, errlen);
    }
out:
    free(dir);
    free(tmp);
    return rc;
}

/* HMAC-SM3 (GB/T 32905 in RFC 2104's construction) of the parts, one after the other. */
static int hmac_sm3(const unsigned char *key, size_t klen, const void *const *parts,
                    const size_t *lens, size_t nparts, unsigned char out[32])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SM3", 0),
                           OSSL_PARAM_construct_end()};
    size_t n = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, klen, params) == 1;
    for (size_t i = 0; ok && i < nparts; i++) ok = EVP_MAC_update(ctx, parts[i], lens[i]) == 1;
    ok = ok && EVP_MAC_final(ctx, out, &n, 32) == 1 && n == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    ERR_clear_error();
    return ok ? ZT_OK : ZT_ERROR;
}

/* The SM4 field keys (an SM4 key, an HMAC-SM3 key): HMAC-SM3 of the field key (itself
 * from the master key). Made for each value, not at start: OpenSSL is then initialised
 * only in a node that uses it (2 MB of memory otherwise); the caller wipes them. */
typedef struct sm4_keys {
    unsigned char enc[32], mac[32]; /* enc: its first 16 bytes */
} sm4_keys;

static int sm4_keys_make(const zt_keys *k, sm4_keys *out)
{
    static const char enc[] = "zhengtong-field-sm4-enc", mac[] = "zhengtong-field-sm4-mac";
    const void *p[1] = {enc};
    size_t l[1] = {sizeof enc - 1};
    int rc = hmac_sm3(k->field, KEY_BYTES, p, l, 1, out->enc);
    p[0] = mac, l[0] = sizeof mac - 1;
    if (rc == ZT_OK) rc = hmac_sm3(k->field, KEY_BYTES, p, l, 1, out->mac);
    return rc;
}

int zt__keys_open(const char *path, zt_keys **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen) err[0] = 0;
    if (crypto_init() != ZT_OK) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return ZT_ERROR;
    }
    zt_keys *k = sodium_malloc(sizeof *k);
    if (!k) {
        snprintf(err, errlen, "key file %s: out of locked memory", path);
        return ZT_ENOMEM;
    }
    int rc = read_key(path, k->master, err, errlen);
    if (rc == ZT_ENOTFOUND) rc = create_key(path, k->master, err, errlen);
    if (rc == ZT_OK &&
        (crypto_kdf_derive_from_key(k->field, KEY_BYTES, SUBKEY_ID, CTX_FIELD, k->master) != 0 ||
         crypto_kdf_derive_from_key(k->index, KEY_BYTES, SUBKEY_ID, CTX_INDEX, k->master) != 0 ||
         crypto_kdf_derive_from_key(k->seal, KEY_BYTES, SUBKEY_ID, CTX_SEAL, k->master) != 0)) {
        snprintf(err, errlen, "key file %s: cannot derive the sub-keys", path);
        rc = ZT_ERROR;
    }
    if (rc == ZT_OK && !(k->scratch = sodium_malloc(sizeof *k->scratch))) {
        snprintf(err, errlen, "key file %s: out of locked memory", path);
        rc = ZT_ENOMEM;
    }
    if (rc != ZT_OK) {
        sodium_free(k);
        return rc;
    }
    /* A stray write into the keys faults at once instead of silently changing them. */
    sodium_mprotect_readonly(k);
    *out = k;
    return ZT_OK;
}

void zt__keys_close(zt_keys *k)
{
    if (!k) return;
    sodium_free(k->scratch); /* both wiped */
    sodium_free(k);
}

int zt__keys_derive(const zt_keys *k, const char ctx[8], uint64_t id, unsigned char *out,
                    size_t len)
{
    if (!k || len < crypto_kdf_BYTES_MIN || len > crypto_kdf_BYTES_MAX) return ZT_EINVAL;
    return crypto_kdf_derive_from_key(out, len, id, ctx, k->master) == 0 ? ZT_OK : ZT_ERROR;
}

/* ---- fields and blind indexes ---------------------------------------------------- */

static const zt_keys *plugin_keys(const zt_plugin *p)
{
    return p && p->srv ? p->srv->keys : NULL;
}

/* Names are NUL-terminated in the hash input so that ("ab", "c") and ("a", "bc") differ. */
static void hash_names(crypto_generichash_state *st, const char *plugin, const char *field)
{
    crypto_generichash_update(st, (const unsigned char *)plugin, strlen(plugin) + 1);
    crypto_generichash_update(st, (const unsigned char *)field, strlen(field) + 1);
}

/* The associated data: binds a value to its format version, plugin and field. */
static void field_ad(unsigned char ad[32], unsigned char version, const char *plugin,
                     const char *field)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, &version, 1);
    hash_names(&st, plugin, field);
    crypto_generichash_final(&st, ad, 32);
}

static int field_check(const zt_plugin *p, const char *field, const zt_keys **k)
{
    if (!field || !field[0] || !p || !p->name) return ZT_EINVAL;
    *k = plugin_keys(p);
    return *k ? ZT_OK : ZT_ESTATE;
}

/* crypto.fields = "SM4" (国密, for the commercial-cryptography assessment): the value is
 *     2 | IV (16) | SM4-CTR(plain) | HMAC-SM3(version | plugin NUL | field NUL | IV | ct)[:24]
 * as long as the XChaCha20-Poly1305 form (ZT_FIELD_OVERHEAD), encrypt-then-MAC: OpenSSL 3.0
 * has no SM4-GCM. The MAC binds it to its version, plugin and field as the AEAD's
 * associated data does. */
#define SM4_VERSION 2
#define SM4_IV      16
#define SM4_TAG     24
_Static_assert(1 + SM4_IV + SM4_TAG == ZT_FIELD_OVERHEAD, "the same overhead");

static int sm4_tag(const sm4_keys *k, const char *plugin, const char *field, const unsigned char *c,
                   size_t clen, unsigned char tag[32])
{
    const void *parts[4] = {c, plugin, field, c + 1};
    size_t lens[4] = {1, strlen(plugin) + 1, strlen(field) + 1, clen - 1};
    return hmac_sm3(k->mac, sizeof k->mac, parts, lens, 4, tag);
}

/* SM4-CTR of n bytes (the same both ways). */
static int sm4_ctr(const sm4_keys *k, const unsigned char iv[SM4_IV], const unsigned char *in,
                   size_t n, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx && EVP_EncryptInit_ex(ctx, EVP_sm4_ctr(), NULL, k->enc, iv) == 1;
    for (size_t done = 0; ok && done < n;) { /* EVP takes an int length */
        int step = n - done > (1u << 30) ? 1 << 30 : (int)(n - done), got = 0;
        ok = EVP_EncryptUpdate(ctx, out + done, &got, in + done, step) == 1 && got == step;
        done += (size_t)step;
    }
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();
    return ok ? ZT_OK : ZT_ERROR;
}

static int sm4_encrypt(const zt_keys *zk, const char *plugin, const char *field,
                       const unsigned char *plain, size_t len, unsigned char *o)
{
    unsigned char tag[32];
    sm4_keys k;
    o[0] = SM4_VERSION;
    randombytes_buf(o + 1, SM4_IV);
    int rc = sm4_keys_make(zk, &k);
    if (rc == ZT_OK) rc = sm4_ctr(&k, o + 1, plain, len, o + 1 + SM4_IV);
    if (rc == ZT_OK) rc = sm4_tag(&k, plugin, field, o, 1 + SM4_IV + len, tag);
    if (rc == ZT_OK) memcpy(o + 1 + SM4_IV + len, tag, SM4_TAG);
    sodium_memzero(&k, sizeof k);
    return rc;
}

static int sm4_decrypt(const zt_keys *zk, const char *plugin, const char *field,
                       const unsigned char *c, size_t len, unsigned char *out)
{
    unsigned char tag[32];
    sm4_keys k;
    size_t n = len - ZT_FIELD_OVERHEAD;
    int rc = sm4_keys_make(zk, &k);
    if (rc == ZT_OK) rc = sm4_tag(&k, plugin, field, c, 1 + SM4_IV + n, tag);
    if (rc == ZT_OK && sodium_memcmp(tag, c + 1 + SM4_IV + n, SM4_TAG) != 0) rc = ZT_EINVAL;
    if (rc == ZT_OK) rc = sm4_ctr(&k, c + 1, c + 1 + SM4_IV, n, out);
    sodium_memzero(&k, sizeof k);
    return rc;
}

static bool fields_sm4(const zt_plugin *p)
{
    return p->srv && p->srv->conf && p->srv->conf->fields_sm4;
}

int zt_field_encrypt(const zt_plugin *p, const char *field, const void *plain, size_t len,
                     void *out, size_t *outlen)
{
    const zt_keys *k;
    int rc = field_check(p, field, &k);
    if (rc != ZT_OK) return rc;
    if (len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
        len > SIZE_MAX - ZT_FIELD_OVERHEAD)
        return ZT_ETOOBIG;
    size_t need = len + ZT_FIELD_OVERHEAD;
    if (*outlen < need) {
        *outlen = need;
        return ZT_ETOOBIG;
    }
    unsigned char *o = out, ad[32];
    if (fields_sm4(p)) {
        rc = sm4_encrypt(k, p->name, field, plain, len, o);
        if (rc == ZT_OK) *outlen = need;
        return rc;
    }
    o[0] = FIELD_VERSION;
    randombytes_buf(o + 1, NONCE_BYTES);
    field_ad(ad, FIELD_VERSION, p->name, field);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(o + 1 + NONCE_BYTES, &clen, plain, len, ad,
                                               sizeof ad, NULL, o + 1, k->field);
    assert(clen == len + TAG_BYTES);
    *outlen = need;
    return ZT_OK;
}

int zt_field_decrypt(const zt_plugin *p, const char *field, const void *cipher, size_t len,
                     void *out, size_t *outlen)
{
    const zt_keys *k;
    int rc = field_check(p, field, &k);
    if (rc != ZT_OK) return rc;
    const unsigned char *c = cipher;
    if (len < ZT_FIELD_OVERHEAD || (c[0] != FIELD_VERSION && c[0] != SM4_VERSION)) return ZT_EINVAL;
    size_t need = len - ZT_FIELD_OVERHEAD;
    if (*outlen < need) {
        *outlen = need;
        return ZT_ETOOBIG;
    }
    if (c[0] == SM4_VERSION) { /* whatever crypto.fields says now: old values stay readable */
        rc = sm4_decrypt(k, p->name, field, c, len, out);
        if (rc == ZT_OK) *outlen = need;
        return rc;
    }
    unsigned char ad[32];
    field_ad(ad, c[0], p->name, field);
    unsigned long long mlen;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, c + 1 + NONCE_BYTES,
                                                   len - 1 - NONCE_BYTES, ad, sizeof ad, c + 1,
                                                   k->field) != 0)
        return ZT_EINVAL;
    assert(mlen == need);
    *outlen = need;
    return ZT_OK;
}

int zt_field_index(const zt_plugin *p, const char *field, const void *plain, size_t len,
                   unsigned char out[ZT_INDEX_BYTES])
{
    const zt_keys *k;
    int rc = field_check(p, field, &k);
    if (rc != ZT_OK) return rc;
    crypto_generichash_state st;
    crypto_generichash_init(&st, k->index, KEY_BYTES, ZT_INDEX_BYTES);
    hash_names(&st, p->name, field);
    crypto_generichash_update(&st, plain, len);
    crypto_generichash_final(&st, out, ZT_INDEX_BYTES);
    sodium_memzero(&st, sizeof st); /* it holds the keyed state */
    return ZT_OK;
}

/* ---- validators ------------------------------------------------------------------ */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Today as YYYYMMDD in China Standard Time (UTC+8, no daylight saving): the dates in
 * ID numbers are Beijing dates, whatever the server's time zone. */
static long today_beijing(void)
{
    time_t t = (time_t)(zt_now_ms() / 1000 + 8 * 3600);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return 0;
    return (tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

static bool birth_date_ok(const char *d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    long v = 0;
    for (int i = 0; i < 8; i++) v = v * 10 + (d[i] - '0');
    int y = (int)(v / 10000), m = (int)(v / 100 % 100), day = (int)(v % 100);
    if (y < 1800 || m < 1 || m > 12 || day < 1) return false;
    int last = mdays[m - 1] + (m == 2 && leap_year(y));
    return day <= last && v <= today_beijing();
}

/* Whether the two digits at p are a province-level division of GB/T 2260 (11 Beijing to
 * 65 Xinjiang, 71 Taiwan, 81 Hong Kong, 82 Macao; 83: the residence permits of Taiwan
 * residents), the first two of every division code: 00 or 99 is no place. */
static bool province_ok(const char *p)
{
    static const char *const codes = "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 "
                                     "45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83";
    for (const char *c = codes; *c; c += c[2] ? 3 : 2)
        if (c[0] == p[0] && c[1] == p[1]) return true;
    return false;
}

int zt_valid_citizen_id(const char *s)
{
    static const int weight[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char check[] = "10X98765432";
    if (!s || strlen(s) != 18) return 0;
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (!is_digit(s[i])) return 0;
        sum += (s[i] - '0') * weight[i];
    }
    char last = s[17] == 'x' ? 'X' : s[17];
    if (last != check[sum % 11]) return 0;
    /* where the number was given: a division code (a foreigner's permanent residence card
     * of 2023 puts 9 first, then the province) */
    if (!province_ok(s[0] == '9' ? s + 1 : s)) return 0;
    return birth_date_ok(s + 6);
}

int zt_citizen_id_canon(const char *s, char out[19])
{
    out[0] = 0;
    if (!zt_valid_citizen_id(s)) return ZT_EINVAL;
    memcpy(out, s, 19);
    if (out[17] == 'x') out[17] = 'X';
    return ZT_OK;
}

void zt__seal_tag(const unsigned char key[32], const char *space, const void *k, size_t klen,
                  const void *v, size_t vlen, unsigned char out[16])
{
    unsigned char len[8];
    zt__be64_put(len, klen);
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, 32, 16);
    crypto_generichash_update(&st, (const unsigned char *)space, strlen(space) + 1);
    crypto_generichash_update(&st, len, sizeof len);
    crypto_generichash_update(&st, k, klen);
    crypto_generichash_update(&st, v, vlen);
    crypto_generichash_final(&st, out, 16);
    sodium_memzero(&st, sizeof st);
}

int zt_mask(const char *s, size_t front, size_t back, char *out, size_t outlen)
{
    if (outlen) out[0] = 0;
    size_t len = s ? strlen(s) : 0, n = 0;
    if (!s || !zt__utf8_ok(s, len)) return ZT_EINVAL;
    if (outlen < len + 1) return ZT_ENOMEM;
    unsigned cp;
    for (size_t i = 0, k; i < len; i += k, n++)
        k = zt__utf8_next((const unsigned char *)s + i, len - i, &cp);
    if (n <= front + back) { /* it would show all: keep fewer, mask at least one */
        back = 0;
        if (front >= n) front = n ? n - 1 : 0;
    }
    char *o = out;
    size_t c = 0;
    for (size_t i = 0, k; i < len; i += k, c++) {
        k = zt__utf8_next((const unsigned char *)s + i, len - i, &cp);
        if (c < front || c >= n - back) {
            memcpy(o, s + i, k);
            o += k;
        } else {
            *o++ = '*';
        }
    }
    *o = 0;
    return ZT_OK;
}

/* The value of a character of the credit code alphabet, -1 for any other. */
static int credit_value(char c)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const char *at = c ? strchr(alphabet, c) : NULL;
    return at ? (int)(at - alphabet) : -1;
}

int zt_valid_credit_code(const char *s)
{
    static const int weight[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};
    if (!s || strlen(s) != 18) return 0;
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        int v = credit_value(s[i]);
        if (v < 0 || (i >= 2 && i < 8 && !is_digit(s[i]))) return 0;
        sum += v * weight[i];
    }
    /* the registering authority (1 to 9, A, N, Y: GB 32100-2015 and its additions), an
     * organisation type (never 0), and where it registered: a division code, or 10 for
     * the national authorities */
    if (!strchr("123456789ANY", s[0]) || s[1] == '0' ||
        !(province_ok(s + 2) || (s[2] == '1' && s[3] == '0')))
        return 0;
    return credit_value(s[17]) == (31 - sum % 31) % 31;
}

/* ---- seal keys ------------------------------------------------------------------- */

enum { SEAL_PK = 1, SEAL_NONCE = SEAL_PK + crypto_sign_PUBLICKEYBYTES };
enum { SEAL_CT = SEAL_NONCE + NONCE_BYTES };

int zt__seal_keygen(zt_keys *k, unsigned char pk[32], unsigned char *sealed_sk, size_t *sealed_len)
{
    if (!k) return ZT_ESTATE;
    if (*sealed_len < ZT__SEALED_SK_BYTES) {
        *sealed_len = ZT__SEALED_SK_BYTES;
        return ZT_ETOOBIG;
    }
    seal_secret *s = k->scratch;
    randombytes_buf(s->seed, sizeof s->seed);
    crypto_sign_seed_keypair(pk, s->sk, s->seed);
    sealed_sk[0] = SEAL_VERSION;
    memcpy(sealed_sk + SEAL_PK, pk, crypto_sign_PUBLICKEYBYTES);
    randombytes_buf(sealed_sk + SEAL_NONCE, NONCE_BYTES);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed_sk + SEAL_CT, &clen, s->seed, sizeof s->seed,
                                               sealed_sk, SEAL_NONCE, NULL, sealed_sk + SEAL_NONCE,
                                               k->seal);
    assert(SEAL_CT + clen == ZT__SEALED_SK_BYTES);
    sodium_memzero(s, sizeof *s);
    *sealed_len = ZT__SEALED_SK_BYTES;
    return ZT_OK;
}

/* Open the seed of a sealed secret key into s->sk (the caller wipes s). An Ed25519 secret
 * key is seed | public key: the seed is opened into its first half. The stored public key
 * is the AEAD's associated data, so it is the one made with this seed: no need to derive it
 * again (a scalar multiplication, as much work as a signature). */
static int open_seed(zt_keys *k, const unsigned char *sealed_sk, size_t sealed_len, seal_secret *s)
{
    if (sealed_len != ZT__SEALED_SK_BYTES || sealed_sk[0] != SEAL_VERSION) return ZT_EINVAL;
    unsigned long long slen;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            s->sk, &slen, NULL, sealed_sk + SEAL_CT, ZT__SEALED_SK_BYTES - SEAL_CT, sealed_sk,
            SEAL_NONCE, sealed_sk + SEAL_NONCE, k->seal) != 0 ||
        slen != crypto_sign_SEEDBYTES)
        return ZT_EINVAL;
    return ZT_OK;
}

int zt__seal_sign(zt_keys *k, const unsigned char *sealed_sk, size_t sealed_len, const void *msg,
                  size_t len, unsigned char sig[64])
{
    if (!k) return ZT_ESTATE;
    seal_secret *s = k->scratch;
    int rc = open_seed(k, sealed_sk, sealed_len, s);
    if (rc == ZT_OK) {
        memcpy(s->sk + crypto_sign_SEEDBYTES, sealed_sk + SEAL_PK, crypto_sign_PUBLICKEYBYTES);
        crypto_sign_detached(sig, NULL, msg, len, s->sk);
    }
    sodium_memzero(s, sizeof *s);
    return rc;
}

int zt_seal_verify(const unsigned char pk[32], const void *msg, size_t len,
                   const unsigned char sig[64])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? ZT_OK : ZT_EINVAL;
}

/* ---- SM2 seal keys (国密: GB/T 32918, with SM3, GB/T 32905) ------------------------- */

/* The same sealed form as an Ed25519 key's, its first byte 2, the public key the
 * uncompressed point (65 bytes), the secret the private scalar (32 bytes): */
_Static_assert(ZT__SEALED_SM2_BYTES == 1 + ZT__SM2_PK_BYTES + NONCE_BYTES + 32 + TAG_BYTES,
               "ZT__SEALED_SM2_BYTES");
#define SM2_VERSION 2
#define SM2_ID      "1234567812345678" /* GM/T 0009-2012's default distinguishing ID */

enum { SM2_NONCE = 1 + ZT__SM2_PK_BYTES, SM2_CT = SM2_NONCE + NONCE_BYTES };

/* An SM2 key from its public point and, for signing, its private scalar (NULL: public
 * only). NULL on failure (OpenSSL's error queue says why). */
static EVP_PKEY *sm2_key(const unsigned char pk[ZT__SM2_PK_BYTES], const unsigned char *priv)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    BIGNUM *bn = priv ? BN_secure_new() : NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
    EVP_PKEY *key = NULL;
    if (b && ctx && (!priv || (bn && BN_bin2bn(priv, 32, bn))) &&
        OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0) &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pk, ZT__SM2_PK_BYTES) &&
        (!priv || OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, bn)) &&
        (params = OSSL_PARAM_BLD_to_param(b)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &key, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    OSSL_PARAM_free(params); /* its secure part (the scalar) cleared */
    OSSL_PARAM_BLD_free(b);
    BN_clear_free(bn);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int zt__sm2_keygen(zt_keys *k, unsigned char pk[ZT__SM2_PK_BYTES], unsigned char *sealed,
                   size_t *sealed_len)
{
    if (!k) return ZT_ESTATE;
    if (*sealed_len < ZT__SEALED_SM2_BYTES) {
        *sealed_len = ZT__SEALED_SM2_BYTES;
        return ZT_ETOOBIG;
    }
    seal_secret *s = k->scratch;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    BIGNUM *priv = NULL;
    size_t pl = 0;
    int rc = key && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &priv) == 1 &&
                     BN_bn2binpad(priv, s->seed, 32) == 32 &&
                     EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pk,
                                                     ZT__SM2_PK_BYTES, &pl) == 1 &&
                     pl == ZT__SM2_PK_BYTES && pk[0] == 4
                 ? ZT_OK
                 : ZT_ERROR;
    BN_clear_free(priv);
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (rc == ZT_OK) {
        sealed[0] = SM2_VERSION;
        memcpy(sealed + 1, pk, ZT__SM2_PK_BYTES);
        randombytes_buf(sealed + SM2_NONCE, NONCE_BYTES);
        unsigned long long clen;
        crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + SM2_CT, &clen, s->seed, 32, sealed,
                                                   SM2_NONCE, NULL, sealed + SM2_NONCE, k->seal);
        assert(SM2_CT + clen == ZT__SEALED_SM2_BYTES);
        *sealed_len = ZT__SEALED_SM2_BYTES;
    }
    sodium_memzero(s, sizeof *s);
    return rc;
}

/* Open the private scalar of a sealed SM2 key into s->seed (the caller wipes s). */
static int sm2_open(zt_keys *k, const unsigned char *sealed, size_t len, seal_secret *s)
{
    unsigned long long n;
    if (len != ZT__SEALED_SM2_BYTES || sealed[0] != SM2_VERSION ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(s->seed, &n, NULL, sealed + SM2_CT,
                                                   ZT__SEALED_SM2_BYTES - SM2_CT, sealed, SM2_NONCE,
                                                   sealed + SM2_NONCE, k->seal) != 0 ||
        n != 32)
        return ZT_EINVAL;
    return ZT_OK;
}

/* A signing or verifying context: SM3, and the distinguishing ID that goes into the
 * digest (Z, GB/T 32918.2) set on it before any data (OpenSSL 3.0 takes it no earlier than
 * the init; a wrong one makes every signature fail to verify, so the tests would tell). */
static EVP_MD_CTX *sm2_md(EVP_PKEY *key, bool sign)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL; /* the context's own */
    if (m && ((sign ? EVP_DigestSignInit(m, &pctx, EVP_sm3(), NULL, key)
                    : EVP_DigestVerifyInit(m, &pctx, EVP_sm3(), NULL, key)) != 1 ||
              EVP_PKEY_CTX_set1_id(pctx, SM2_ID, sizeof SM2_ID - 1) != 1)) {
        EVP_MD_CTX_free(m);
        m = NULL;
    }
    return m;
}

int zt__sm2_sign(zt_keys *k, const unsigned char *sealed, size_t sealed_len, const void *msg,
                 size_t len, unsigned char sig[ZT__SM2_SIG_MAX], size_t *siglen)
{
    if (!k) return ZT_ESTATE;
    seal_secret *s = k->scratch;
    int rc = sm2_open(k, sealed, sealed_len, s);
    EVP_PKEY *key = rc == ZT_OK ? sm2_key(sealed + 1, s->seed) : NULL;
    sodium_memzero(s, sizeof *s);
    EVP_MD_CTX *m = key ? sm2_md(key, true) : NULL;
    *siglen = ZT__SM2_SIG_MAX;
    if (rc == ZT_OK && (!m || EVP_DigestSign(m, sig, siglen, msg, len) != 1)) rc = ZT_ERROR;
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(key); /* its scalar cleared */
    ERR_clear_error();
    return rc;
}

int zt__sm2_verify(const unsigned char pk[ZT__SM2_PK_BYTES], const void *msg, size_t len,
                   const unsigned char *sig, size_t siglen)
{
    EVP_PKEY *key = pk[0] == 4 ? sm2_key(pk, NULL) : NULL;
    EVP_MD_CTX *m = key ? sm2_md(key, false) : NULL;
    int rc = m && EVP_DigestVerify(m, sig, siglen, msg, len) == 1 ? ZT_OK : ZT_EINVAL;
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

int zt__sm2_pem(const unsigned char pk[ZT__SM2_PK_BYTES], char *out, size_t cap)
{
    EVP_PKEY *key = sm2_key(pk, NULL);
    BIO *b = key ? BIO_new(BIO_s_mem()) : NULL;
    int rc = ZT_ERROR;
    char *p;
    long n;
    if (b && PEM_write_bio_PUBKEY(b, key) == 1 && (n = BIO_get_mem_data(b, &p)) > 0) {
        rc = (size_t)n < cap ? ZT_OK : ZT_ETOOBIG;
        if (rc == ZT_OK) memcpy(out, p, (size_t)n), out[n] = 0;
    }
    BIO_free(b);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

void zt__sm3(const void *in, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(in, len, out, &n, EVP_sm3(), NULL) != 1 || n != 32) abort(); /* no SM3 */
}

int zt__seal_opens(zt_keys *k, const unsigned char *sealed_sk, size_t sealed_len)
{
    if (!k) return ZT_ESTATE;
    seal_secret *s = k->scratch;
    int rc = sealed_len && sealed_sk[0] == SM2_VERSION ? sm2_open(k, sealed_sk, sealed_len, s)
                                                       : open_seed(k, sealed_sk, sealed_len, s);
    sodium_memzero(s, sizeof *s);
    return rc;
}

/* ---- random, hashing, encodings -------------------------------------------------- */

void zt_random(void *buf, size_t len)
{
    /* Without libsodium there is no safe randomness to hand out: stop. */
    if (crypto_init() != ZT_OK) abort();
    randombytes_buf(buf, len);
}

void zt_hash(const void *in, size_t len, unsigned char out[32])
{
    crypto_generichash(out, 32, in, len, NULL, 0);
}

void zt__hex(char *out, const void *bin, size_t len)
{
    sodium_bin2hex(out, 2 * len + 1, bin, len);
}

int zt__hex_decode(void *out, size_t cap, const char *s, size_t slen, size_t *outlen)
{
    if (slen % 2) return ZT_EINVAL;
    if (cap < slen / 2) return ZT_ETOOBIG;
    const char *end;
    size_t n;
    if (sodium_hex2bin(out, cap, s, slen, NULL, &n, &end) != 0 || end != s + slen) return ZT_EINVAL;
    assert(n == slen / 2);
    *outlen = n;
    return ZT_OK;
}

void zt__b64url_encode(char *out, const void *bin, size_t len)
{
    sodium_bin2base64(out, ZT__B64URL_LEN(len), bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int zt__b64url_decode(void *out, size_t cap, const char *s, size_t slen, size_t *outlen)
{
    /* Every 4 characters carry 3 bytes; a lone trailing character carries none. */
    if (slen % 4 == 1) return ZT_EINVAL;
    if (cap < slen / 4 * 3 + (slen % 4 ? slen % 4 - 1 : 0)) return ZT_ETOOBIG;
    const char *end;
    size_t n;
    if (sodium_base642bin(out, cap, s, slen, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + slen)
        return ZT_EINVAL;
    *outlen = n;
    return ZT_OK;
}
