/* totp.c: time-based one-time codes (RFC 6238 over RFC 4226's HOTP), the second factor of
 * a sign-in. HMAC-SHA1, 6 digits, 30-second steps: the parameters every authenticator
 * app takes (several ignore an algorithm= other than SHA1, so no other is offered).
 * HMAC-SHA1 comes from OpenSSL's libcrypto (libsodium has no SHA-1); its weaknesses as a
 * hash do not reach HMAC. */
#include "core.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define STEP_MS 30000

void zt__totp_secret(unsigned char key[ZT_TOTP_KEY])
{
    randombytes_buf(key, ZT_TOTP_KEY);
}

int zt__totp_code(const unsigned char key[ZT_TOTP_KEY], uint64_t step)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    zt__be64_put(msg, step);
    if (!HMAC(EVP_sha1(), key, ZT_TOTP_KEY, msg, sizeof msg, mac, &len) || len != 20) return -1;
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
