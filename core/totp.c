/* totp.c: time-based one-time codes (RFC 6238 over RFC 4226's HOTP), the second factor of
 * a sign-in. HMAC-SHA1, 6 digits, 30-second steps: the parameters every authenticator
 * app takes (several ignore an algorithm= other than SHA1, so no other is offered).
 * SHA-1 and HMAC are here, from FIPS 180-4 and RFC 2104 (libsodium has no SHA-1, and
 * linking OpenSSL's libcrypto for these 80 lines cost every node 1.4 MB of memory and an
 * OpenSSL to keep patched). SHA-1's collisions do not reach HMAC, nor a 6-digit code.
 * Checked against the RFC 3174, RFC 2202 and RFC 6238 vectors in test_crypto. */
#include "core.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef struct sha1 {
    uint32_t h[5];
    uint64_t len; /* bytes so far */
    unsigned char block[64];
    size_t used;
} sha1;

static uint32_t rol(uint32_t x, int n)
{
    return x << n | x >> (32 - n);
}

static void sha1_block(sha1 *c, const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = c->h[0], b = c->h[1], d = c->h[3], e = c->h[4], cc = c->h[2];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & cc) | (~b & d), k = 0x5a827999;
        else if (i < 40)
            f = b ^ cc ^ d, k = 0x6ed9eba1;
        else if (i < 60)
            f = (b & cc) | (b & d) | (cc & d), k = 0x8f1bbcdc;
        else
            f = b ^ cc ^ d, k = 0xca62c1d6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = cc, cc = rol(b, 30), b = a, a = t;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
    sodium_memzero(w, sizeof w);
}

static void sha1_init(sha1 *c)
{
    static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->used = 0;
}

static void sha1_update(sha1 *c, const unsigned char *p, size_t n)
{
    c->len += n;
    while (n) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->block + c->used, p, take);
        c->used += take, p += take, n -= take;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha1_final(sha1 *c, unsigned char out[20])
{
    uint64_t bits = c->len * 8;
    unsigned char pad[72] = {0x80};
    size_t n = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) pad[n + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(c, pad, n + 8);
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
    sodium_memzero(c, sizeof *c);
}

void zt__sha1(const void *msg, size_t len, unsigned char out[20])
{
    sha1 c;
    sha1_init(&c);
    sha1_update(&c, msg, len);
    sha1_final(&c, out);
}

void zt__hmac_sha1(const void *key, size_t klen, const void *msg, size_t len, unsigned char out[20])
{
    unsigned char k[64] = {0}, pad[64], inner[20];
    if (klen > 64)
        zt__sha1(key, klen, k);
    else
        memcpy(k, key, klen);
    sha1 c;
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    sha1_init(&c);
    sha1_update(&c, pad, 64);
    sha1_update(&c, msg, len);
    sha1_final(&c, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    sha1_init(&c);
    sha1_update(&c, pad, 64);
    sha1_update(&c, inner, 20);
    sha1_final(&c, out);
    sodium_memzero(k, sizeof k);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(inner, sizeof inner);
}

#define STEP_MS 30000

void zt__totp_secret(unsigned char key[ZT_TOTP_KEY])
{
    randombytes_buf(key, ZT_TOTP_KEY);
}

int zt__totp_code(const unsigned char key[ZT_TOTP_KEY], uint64_t step)
{
    unsigned char msg[8], mac[20];
    zt__be64_put(msg, step);
    zt__hmac_sha1(key, ZT_TOTP_KEY, msg, sizeof msg, mac);
    unsigned off = mac[19] & 0x0f; /* RFC 4226 5.3: dynamic truncation */
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    sodium_memzero(mac, sizeof mac);
    return (int)(bin % 1000000);
}

int64_t zt__totp_check(const unsigned char key[ZT_TOTP_KEY], const char *code, int64_t now_ms,
                       int64_t last_step)
{
    if (!code || strlen(code) != 6 || strspn(code, "0123456789") != 6 || now_ms < 0) return -1;
    int want = (int)strtol(code, NULL, 10);
    int64_t now = now_ms / STEP_MS;
    /* one step either side: a phone's clock a little off, a code typed as it turned */
    for (int64_t s = now - 1; s <= now + 1; s++) {
        if (s <= last_step) continue; /* each code once: a code seen over a shoulder is spent */
        int got = zt__totp_code(key, (uint64_t)s);
        if (got >= 0 && sodium_memcmp(&got, &want, sizeof got) == 0) return s;
    }
    return -1;
}

void zt__base32(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"; /* RFC 4648 */
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits) out[o++] = alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}
