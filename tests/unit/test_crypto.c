/* test_crypto.c: key file, field encryption, blind indexes, ID validators, seal keys, encodings. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "core.h"
#include "testutil.h"

/* ---- fixture: a temporary folder, a key file in a folder that does not exist yet ---- */

typedef struct env {
    char dir[64];
    char keydir[96];
    char keypath[128];
    zt_keys *k;
    zt_server *srv;
    zt_plugin alpha, beta;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    strcpy(e->dir, "/tmp/zt-crypto-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->keydir, sizeof e->keydir, "%s/keys", e->dir);
    snprintf(e->keypath, sizeof e->keypath, "%s/master.key", e->keydir);
    e->srv = calloc(1, sizeof *e->srv);
    assert_non_null(e->srv);
    e->alpha = (zt_plugin){.name = "alpha", .srv = e->srv};
    e->beta = (zt_plugin){.name = "beta", .srv = e->srv};
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    zt__clock_set_offset_ms(0);
    zt__keys_close(e->k);
    tu_rm_tree(e->dir);
    free(e->srv);
    free(e);
    return 0;
}

static void open_keys(env *e)
{
    char err[ZT_ERRLEN];
    zt__keys_close(e->k);
    e->k = NULL;
    int rc = zt__keys_open(e->keypath, &e->k, err, sizeof err);
    if (rc != ZT_OK) fail_msg("zt__keys_open: %d %s", rc, err);
    e->srv->keys = e->k;
}

static void read_file(const char *path, unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, len, f), len);
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

static void write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ---- the key file ----------------------------------------------------------------- */

static void key_file_created_private_and_kept(void **state)
{
    env *e = *state;
    open_keys(e);
    struct stat st;
    assert_int_equal(stat(e->keydir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(e->keypath, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(count_entries(e->keydir), 1); /* no temporary file left behind */

    unsigned char before[32], after[32];
    read_file(e->keypath, before, 32);
    unsigned char zero[32] = {0};
    assert_memory_not_equal(before, zero, 32);
    open_keys(e);
    read_file(e->keypath, after, 32);
    assert_memory_equal(before, after, 32);
}

static void reopened_key_decrypts(void **state)
{
    env *e = *state;
    open_keys(e);
    const char *id = "11010519491231002X";
    unsigned char ct[18 + ZT_FIELD_OVERHEAD];
    size_t clen = sizeof ct;
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, ct, &clen), ZT_OK);
    unsigned char idx1[ZT_INDEX_BYTES], idx2[ZT_INDEX_BYTES];
    assert_int_equal(zt_field_index(&e->alpha, "id_number", id, 18, idx1), ZT_OK);

    open_keys(e);
    char pt[18];
    size_t plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", ct, clen, pt, &plen), ZT_OK);
    assert_int_equal(plen, 18);
    assert_memory_equal(pt, id, 18);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", id, 18, idx2), ZT_OK);
    assert_memory_equal(idx1, idx2, sizeof idx1);

    /* Another node (another key file) can neither decrypt nor match the index. */
    strcat(e->keypath, ".other");
    open_keys(e);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", ct, clen, pt, &plen), ZT_EINVAL);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", id, 18, idx2), ZT_OK);
    assert_memory_not_equal(idx1, idx2, sizeof idx1);
}

static void lax_or_bad_key_files_refused(void **state)
{
    env *e = *state;
    open_keys(e);
    zt__keys_close(e->k);
    e->k = e->srv->keys = NULL;
    unsigned char key[32], now[32];
    read_file(e->keypath, key, 32);

    char err[ZT_ERRLEN];
    zt_keys *k = NULL;
    static const mode_t lax[] = {0644, 0640, 0604, 0620, 0602, 0660};
    for (size_t i = 0; i < sizeof lax / sizeof lax[0]; i++) {
        assert_int_equal(chmod(e->keypath, lax[i]), 0);
        assert_int_equal(zt__keys_open(e->keypath, &k, err, sizeof err), ZT_EPERM);
        assert_null(k);
        assert_non_null(strstr(err, e->keypath));
        assert_non_null(strstr(err, "chmod 600"));
        read_file(e->keypath, now, 32); /* refused, never replaced */
        assert_memory_equal(key, now, 32);
    }
    assert_int_equal(chmod(e->keypath, 0400), 0); /* read-only for the owner is fine */
    assert_int_equal(zt__keys_open(e->keypath, &k, err, sizeof err), ZT_OK);
    zt__keys_close(k);

    assert_int_equal(chmod(e->keypath, 0600), 0);
    write_file(e->keypath, key, 31, 0600);
    assert_int_equal(zt__keys_open(e->keypath, &k, err, sizeof err), ZT_EINVAL);
    assert_non_null(strstr(err, "31 bytes"));
    write_file(e->keypath, "", 0, 0600);
    assert_int_equal(zt__keys_open(e->keypath, &k, err, sizeof err), ZT_EINVAL);
    unsigned char big[33] = {0};
    write_file(e->keypath, big, 33, 0600);
    assert_int_equal(zt__keys_open(e->keypath, &k, err, sizeof err), ZT_EINVAL);
    assert_null(k);

    char path[160];
    snprintf(path, sizeof path, "%s/adir", e->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(zt__keys_open(path, &k, err, sizeof err), ZT_EINVAL);
    assert_non_null(strstr(err, "not a regular file"));

    /* The folder to create is a file. */
    snprintf(path, sizeof path, "%s/master.key/sub/k", e->keydir);
    assert_int_not_equal(zt__keys_open(path, &k, err, sizeof err), ZT_OK);
    assert_null(k);
    assert_non_null(strstr(err, "master.key"));
}

static void existing_key_file_is_used(void **state)
{
    env *e = *state;
    unsigned char master[32];
    randombytes_buf(master, sizeof master);
    assert_int_equal(mkdir(e->keydir, 0755), 0);
    assert_int_equal(chmod(e->keydir, 0755), 0);
    write_file(e->keypath, master, 32, 0600);
    open_keys(e);
    struct stat st;
    assert_int_equal(stat(e->keydir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755); /* an existing folder is left alone */

    /* Decrypt and index by hand from the documented derivation: the format at rest is
     * pinned, and the key read is the one in the file. */
    unsigned char fkey[32], ikey[32];
    assert_int_equal(crypto_kdf_derive_from_key(fkey, 32, 1, "ztfield_", master), 0);
    assert_int_equal(crypto_kdf_derive_from_key(ikey, 32, 1, "ztindex_", master), 0);

    const char *val = "13800138000";
    unsigned char ct[64];
    size_t clen = sizeof ct;
    assert_int_equal(zt_field_encrypt(&e->alpha, "phone", val, 11, ct, &clen), ZT_OK);
    assert_int_equal(clen, 11 + ZT_FIELD_OVERHEAD);
    assert_int_equal(ct[0], 1);
    unsigned char ad[32];
    crypto_generichash_state st2;
    crypto_generichash_init(&st2, NULL, 0, 32);
    crypto_generichash_update(&st2, ct, 1);
    crypto_generichash_update(&st2, (const unsigned char *)"alpha\0phone", 12);
    crypto_generichash_final(&st2, ad, 32);
    unsigned char pt[64];
    unsigned long long plen;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL, ct + 25, clen - 25,
                                                                ad, 32, ct + 1, fkey),
                     0);
    assert_int_equal(plen, 11);
    assert_memory_equal(pt, val, 11);

    unsigned char want[32], got[32];
    crypto_generichash_init(&st2, ikey, 32, 32);
    crypto_generichash_update(&st2, (const unsigned char *)"alpha\0phone", 12);
    crypto_generichash_update(&st2, (const unsigned char *)val, 11);
    crypto_generichash_final(&st2, want, 32);
    assert_int_equal(zt_field_index(&e->alpha, "phone", val, 11, got), ZT_OK);
    assert_memory_equal(want, got, 32);

    /* zt__keys_derive is the same derivation, under the caller's context. */
    unsigned char d1[32], d2[32];
    assert_int_equal(zt__keys_derive(e->k, "zttest__", 7, d1, 32), ZT_OK);
    assert_int_equal(crypto_kdf_derive_from_key(d2, 32, 7, "zttest__", master), 0);
    assert_memory_equal(d1, d2, 32);
    assert_int_equal(zt__keys_derive(e->k, "zttest__", 7, d1, 8), ZT_EINVAL);
}

/* Processes that start together on an empty folder must all end with the same key. */
static void racing_creators_agree(void **state)
{
    env *e = *state;
    enum { N = 6, CT = 4 + ZT_FIELD_OVERHEAD };
    int gate[2], results[2];
    assert_int_equal(pipe(gate), 0);
    assert_int_equal(pipe(results), 0);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {
            }
            zt_keys *k;
            char err[ZT_ERRLEN];
            if (zt__keys_open(e->keypath, &k, err, sizeof err) != ZT_OK) _exit(2);
            e->srv->keys = k;
            unsigned char out[1 + CT];
            size_t olen = CT;
            out[0] = (unsigned char)i;
            char msg[4] = {'r', 'a', 'c', (char)('0' + i)};
            if (zt_field_encrypt(&e->alpha, "f", msg, 4, out + 1, &olen) != ZT_OK) _exit(3);
            if (write(results[1], out, sizeof out) != (ssize_t)sizeof out) _exit(4);
            zt__keys_close(k);
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]); /* all children go */
    close(results[1]);
    for (int i = 0; i < N; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    open_keys(e);
    assert_int_equal(count_entries(e->keydir), 1);
    for (int i = 0; i < N; i++) {
        unsigned char rec[1 + CT];
        assert_int_equal(read(results[0], rec, sizeof rec), (ssize_t)sizeof rec);
        char pt[4];
        size_t plen = sizeof pt;
        assert_int_equal(zt_field_decrypt(&e->alpha, "f", rec + 1, CT, pt, &plen), ZT_OK);
        assert_int_equal(pt[3], '0' + rec[0]);
    }
    close(results[0]);
}

/* ---- fields --------------------------------------------------------------------- */

static void field_round_trips(void **state)
{
    env *e = *state;
    open_keys(e);
    static const size_t lens[] = {0, 1, 18, 255, 4096};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = lens[i];
        unsigned char *pt = malloc(n + 1), *ct = malloc(n + ZT_FIELD_OVERHEAD);
        unsigned char *ct2 = malloc(n + ZT_FIELD_OVERHEAD), *back = malloc(n + 1);
        assert_true(pt && ct && ct2 && back);
        randombytes_buf(pt, n);
        size_t clen = n + ZT_FIELD_OVERHEAD, clen2 = clen, blen = n;
        assert_int_equal(zt_field_encrypt(&e->alpha, "address", pt, n, ct, &clen), ZT_OK);
        assert_int_equal(clen, n + ZT_FIELD_OVERHEAD);
        assert_int_equal(zt_field_encrypt(&e->alpha, "address", pt, n, ct2, &clen2), ZT_OK);
        assert_memory_not_equal(ct, ct2, clen); /* a fresh nonce each time */
        if (n >= 8) assert_null(memmem(ct, clen, pt, 8));
        assert_int_equal(zt_field_decrypt(&e->alpha, "address", ct, clen, back, &blen), ZT_OK);
        assert_int_equal(blen, n);
        if (n) assert_memory_equal(back, pt, n);
        free(pt);
        free(ct);
        free(ct2);
        free(back);
    }
}

/* crypto.fields = "SM4": the same contract in the SM4 form (version 2, as long), and
 * either form opens whichever the config says now. */
static void field_sm4(void **state)
{
    env *e = *state;
    open_keys(e);
    zt_conf conf = {0};
    e->srv->conf = &conf;
    const char *id = "440524188001010014";
    unsigned char v1[18 + ZT_FIELD_OVERHEAD], v2[sizeof v1], bad[sizeof v1];
    size_t l1 = sizeof v1, l2 = sizeof v2;
    char pt[18];
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, v1, &l1), ZT_OK);
    conf.fields_sm4 = true;
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, v2, &l2), ZT_OK);
    assert_int_equal(l2, 18 + ZT_FIELD_OVERHEAD);
    assert_int_equal(v1[0], 1);
    assert_int_equal(v2[0], 2);
    assert_null(memmem(v2, l2, id, 8));
    for (int sm4 = 0; sm4 < 2; sm4++) { /* both open, whichever the config says */
        conf.fields_sm4 = sm4;
        size_t plen = sizeof pt;
        assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", v1, l1, pt, &plen), ZT_OK);
        assert_memory_equal(pt, id, 18);
        plen = sizeof pt;
        assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", v2, l2, pt, &plen), ZT_OK);
        assert_memory_equal(pt, id, 18);
    }
    for (size_t i = 0; i < l2; i++) {
        memcpy(bad, v2, l2);
        bad[i] ^= 0x01;
        size_t plen = sizeof pt;
        if (zt_field_decrypt(&e->alpha, "id_number", bad, l2, pt, &plen) == ZT_OK)
            fail_msg("SM4 value byte %zu altered, yet it opened", i);
    }
    size_t plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "phone", v2, l2, pt, &plen), ZT_EINVAL);
    assert_int_equal(zt_field_decrypt(&e->beta, "id_number", v2, l2, pt, &plen), ZT_EINVAL);
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", v2, l2 - 1, pt, &plen), ZT_EINVAL);
    /* two encryptions of one value differ (a fresh IV) */
    unsigned char v3[sizeof v1];
    size_t l3 = sizeof v3;
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, v3, &l3), ZT_OK);
    assert_memory_not_equal(v2, v3, l2);
    /* another node's key does not open it */
    strcat(e->keypath, ".other");
    open_keys(e);
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", v2, l2, pt, &plen), ZT_EINVAL);
    e->srv->conf = NULL;
}

static void field_tampering_fails(void **state)
{
    env *e = *state;
    open_keys(e);
    const char *id = "440524188001010014";
    unsigned char ct[18 + ZT_FIELD_OVERHEAD], bad[sizeof ct];
    size_t clen = sizeof ct;
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, ct, &clen), ZT_OK);
    char pt[18];
    for (size_t i = 0; i < clen; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, ct, clen);
            bad[i] ^= (unsigned char)(1u << bit);
            size_t plen = sizeof pt;
            if (zt_field_decrypt(&e->alpha, "id_number", bad, clen, pt, &plen) != ZT_EINVAL)
                fail_msg("byte %zu bit %d flipped, yet it decrypted", i, bit);
        }
    }
    for (size_t n = 0; n < clen; n++) { /* cut short */
        size_t plen = sizeof pt;
        assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", ct, n, pt, &plen), ZT_EINVAL);
    }
    unsigned char longer[sizeof ct + 1];
    memcpy(longer, ct, clen);
    longer[clen] = 0;
    size_t plen = sizeof pt + 1;
    char pt2[19];
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", longer, clen + 1, pt2, &plen),
                     ZT_EINVAL);
}

static void field_moved_fails(void **state)
{
    env *e = *state;
    open_keys(e);
    const char *id = "11010519491231002X";
    unsigned char ct[18 + ZT_FIELD_OVERHEAD];
    size_t clen = sizeof ct;
    char pt[18];
    size_t plen = sizeof pt;
    assert_int_equal(zt_field_encrypt(&e->alpha, "id_number", id, 18, ct, &clen), ZT_OK);
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_number", ct, clen, pt, &plen), ZT_OK);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "guardian_id", ct, clen, pt, &plen), ZT_EINVAL);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->beta, "id_number", ct, clen, pt, &plen), ZT_EINVAL);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "id_numbe", ct, clen, pt, &plen), ZT_EINVAL);

    /* The boundary between plugin and field names is part of the binding. */
    zt_plugin ab = {.name = "ab", .srv = e->srv}, a = {.name = "a", .srv = e->srv};
    clen = sizeof ct;
    assert_int_equal(zt_field_encrypt(&ab, "c", id, 18, ct, &clen), ZT_OK);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&a, "bc", ct, clen, pt, &plen), ZT_EINVAL);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&ab, "c", ct, clen, pt, &plen), ZT_OK);
}

static void field_arguments_checked(void **state)
{
    env *e = *state;
    unsigned char ct[64];
    char pt[64];
    size_t clen = sizeof ct, plen;
    /* No keys yet: the node has not started. */
    assert_int_equal(zt_field_encrypt(&e->alpha, "f", "x", 1, ct, &clen), ZT_ESTATE);
    unsigned char idx[ZT_INDEX_BYTES];
    assert_int_equal(zt_field_index(&e->alpha, "f", "x", 1, idx), ZT_ESTATE);
    open_keys(e);
    assert_int_equal(zt_field_encrypt(&e->alpha, "", "x", 1, ct, &clen), ZT_EINVAL);
    assert_int_equal(zt_field_encrypt(&e->alpha, NULL, "x", 1, ct, &clen), ZT_EINVAL);
    assert_int_equal(zt_field_index(&e->alpha, "", "x", 1, idx), ZT_EINVAL);

    clen = 10 + ZT_FIELD_OVERHEAD - 1;
    assert_int_equal(zt_field_encrypt(&e->alpha, "f", "0123456789", 10, ct, &clen), ZT_ETOOBIG);
    assert_int_equal(clen, 10 + ZT_FIELD_OVERHEAD);
    assert_int_equal(zt_field_encrypt(&e->alpha, "f", "0123456789", 10, ct, &clen), ZT_OK);
    plen = 9;
    assert_int_equal(zt_field_decrypt(&e->alpha, "f", ct, clen, pt, &plen), ZT_ETOOBIG);
    assert_int_equal(plen, 10);
    assert_int_equal(zt_field_decrypt(&e->alpha, "f", ct, clen, pt, &plen), ZT_OK);
    assert_memory_equal(pt, "0123456789", 10);
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "", ct, clen, pt, &plen), ZT_EINVAL);
    ct[0] = 2; /* an unknown format version */
    plen = sizeof pt;
    assert_int_equal(zt_field_decrypt(&e->alpha, "f", ct, clen, pt, &plen), ZT_EINVAL);
}

static void blind_index_per_field(void **state)
{
    env *e = *state;
    open_keys(e);
    const char *v = "11010519491231002X", *w = "440524188001010014";
    unsigned char a1[32], a2[32], other[32];
    assert_int_equal(zt_field_index(&e->alpha, "id_number", v, 18, a1), ZT_OK);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", v, 18, a2), ZT_OK);
    assert_memory_equal(a1, a2, 32);
    assert_int_equal(zt_field_index(&e->alpha, "guardian_id", v, 18, other), ZT_OK);
    assert_memory_not_equal(a1, other, 32);
    assert_int_equal(zt_field_index(&e->beta, "id_number", v, 18, other), ZT_OK);
    assert_memory_not_equal(a1, other, 32);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", w, 18, other), ZT_OK);
    assert_memory_not_equal(a1, other, 32);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", v, 17, other), ZT_OK);
    assert_memory_not_equal(a1, other, 32);
    /* Keyed: not the plain hash of the value that anyone could compute. */
    zt_hash(v, 18, other);
    assert_memory_not_equal(a1, other, 32);

    /* The canonical form makes x and X one index. */
    char c1[19], c2[19];
    assert_int_equal(zt_citizen_id_canon("11010519491231002x", c1), ZT_OK);
    assert_int_equal(zt_citizen_id_canon("11010519491231002X", c2), ZT_OK);
    assert_string_equal(c1, c2);
    assert_int_equal(zt_field_index(&e->alpha, "id_number", c1, 18, a2), ZT_OK);
    assert_memory_equal(a1, a2, 32);
}

/* ---- validators ----------------------------------------------------------------- */

/* The check character by the ISO 7064 MOD 11-2 recursion (not the weight table). */
static char id_check(const char *first17)
{
    int p = 0;
    for (int i = 0; i < 17; i++) p = (p + first17[i] - '0') * 2 % 11;
    int c = (12 - p) % 11;
    return c == 10 ? 'X' : (char)('0' + c);
}

/* An ID number with the given date and a correct check character. */
static void make_id(char out[19], const char *date8)
{
    snprintf(out, 19, "330106%s123", date8);
    out[17] = id_check(out);
    out[18] = 0;
}

static const char *const published_ids[] = {
    "11010519491231002X", /* GB 11643-1999's example (Beijing, Chaoyang, 1949-12-31) */
    "440524188001010014", /* GB 11643-1999's example (Shantou, Chaoyang county, 1880-01-01) */
    "34052419800101001X", /* a worked example printed with the check algorithm */
    "370101190102039973", /* a worked example (Jinan, 1901-02-03), check character 3 */
};

static void citizen_id_examples(void **state)
{
    for (size_t i = 0; i < sizeof published_ids / sizeof published_ids[0]; i++) {
        const char *s = published_ids[i];
        assert_int_equal(id_check(s), s[17]); /* the test's own reckoning agrees */
        if (!zt_valid_citizen_id(s)) fail_msg("%s refused", s);
    }
    assert_int_equal(zt_valid_citizen_id("11010519491231002x"), 1);
    assert_int_equal(zt_valid_citizen_id("110105194912310021"), 0);
    assert_int_equal(zt_valid_citizen_id("11010519491231002"), 0);
    assert_int_equal(zt_valid_citizen_id("11010519491231002X0"), 0);
    assert_int_equal(zt_valid_citizen_id(""), 0);
    assert_int_equal(zt_valid_citizen_id(NULL), 0);
    assert_int_equal(zt_valid_citizen_id(" 11010519491231002X"), 0);
    char out[19] = "junk";
    assert_int_equal(zt_citizen_id_canon("110105194912310021", out), ZT_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(zt_citizen_id_canon("11010519491231002x", out), ZT_OK);
    assert_string_equal(out, "11010519491231002X");
}

/* Every change of one character to any other byte makes the number invalid: both check
 * schemes catch all single substitutions. Upper- and lower-case X are one for ID numbers. */
static void every_mutation_fails(const char *const *list, size_t n, int (*valid)(const char *))
{
    for (size_t i = 0; i < n; i++) {
        char s[19];
        for (int pos = 0; pos < 18; pos++) {
            for (int c = 1; c < 256; c++) {
                strcpy(s, list[i]);
                if (c == (unsigned char)s[pos]) continue;
                if (valid == zt_valid_citizen_id && pos == 17 && s[17] == 'X' && c == 'x') continue;
                s[pos] = (char)c;
                if (valid(s)) fail_msg("%s accepted (from %s)", s, list[i]);
            }
        }
    }
}

static void citizen_id_every_mutation_fails(void **state)
{
    every_mutation_fails(published_ids, sizeof published_ids / sizeof published_ids[0],
                         zt_valid_citizen_id);
}

static void citizen_id_dates(void **state)
{
    static const struct {
        const char *date;
        int ok;
    } cases[] = {
        {"20000229", 1}, {"20240229", 1}, {"19000229", 0}, {"20230229", 0}, {"20240431", 0},
        {"20240430", 1}, {"20241301", 0}, {"20240001", 0}, {"20240100", 0}, {"20240132", 0},
        {"20241231", 1}, {"18000101", 1}, {"17991231", 0}, {"29990101", 0},
    };
    char id[19];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_id(id, cases[i].date);
        if (zt_valid_citizen_id(id) != cases[i].ok)
            fail_msg("%s (%s): expected %d", id, cases[i].date, cases[i].ok);
    }
}

/* Move the node's clock so that it reads the given UTC time. */
static void clock_at_utc(int y, int mon, int d, int h)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h};
    int64_t target = (int64_t)timegm(&tm) * 1000;
    zt__clock_set_offset_ms(0);
    zt__clock_set_offset_ms(target - zt_now_ms());
}

static void citizen_id_not_born_tomorrow(void **state)
{
    char today[19], tomorrow[19], yesterday[19];
    make_id(yesterday, "20200614");
    make_id(today, "20200615");
    make_id(tomorrow, "20200616");
    clock_at_utc(2020, 6, 15, 4); /* 12:00 in Beijing */
    assert_int_equal(zt_valid_citizen_id(yesterday), 1);
    assert_int_equal(zt_valid_citizen_id(today), 1);
    assert_int_equal(zt_valid_citizen_id(tomorrow), 0);
    clock_at_utc(2020, 6, 15, 20); /* still the 15th in UTC, already the 16th in Beijing */
    assert_int_equal(zt_valid_citizen_id(tomorrow), 1);
    clock_at_utc(2020, 6, 15, 15); /* 23:00 in Beijing */
    assert_int_equal(zt_valid_citizen_id(tomorrow), 0);
    zt__clock_set_offset_ms(0);
    assert_int_equal(zt_valid_citizen_id(tomorrow), 1);
}

static const char credit_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* The check character with weights 3^(i-1) mod 31 made as it goes (not the table). */
static char credit_check(const char *first17)
{
    int sum = 0, w = 1;
    for (int i = 0; i < 17; i++) {
        const char *at = strchr(credit_alphabet, first17[i]);
        assert_non_null(at);
        sum += (int)(at - credit_alphabet) * w;
        w = w * 3 % 31;
    }
    return credit_alphabet[(31 - sum % 31) % 31];
}

static void make_code(char out[19], const char *first17)
{
    memcpy(out, first17, 17);
    out[17] = credit_check(first17);
    out[18] = 0;
}

static const char *const published_codes[] = {
    "91350100M000100Y43", /* GB 32100-2015's worked example (its check character 3) */
    "914403001922038216", /* Huawei Technologies Co., Ltd. */
    "91440300708461136T", /* Shenzhen Tencent Computer Systems Co., Ltd. */
    "91110108551385082Q", /* Beijing Xiaomi Technology Co., Ltd. */
};

static void credit_code_examples(void **state)
{
    for (size_t i = 0; i < sizeof published_codes / sizeof published_codes[0]; i++) {
        const char *s = published_codes[i];
        assert_int_equal(credit_check(s), s[17]);
        if (!zt_valid_credit_code(s)) fail_msg("%s refused", s);
    }
    /* The standard's example as printed there, with the wrong check character Z. */
    assert_int_equal(zt_valid_credit_code("91350100M000100Y4Z"), 0);
    assert_int_equal(zt_valid_credit_code("91440300708461136t"), 0); /* upper case only */
    assert_int_equal(zt_valid_credit_code("91440300708461136"), 0);
    assert_int_equal(zt_valid_credit_code("91440300708461136TT"), 0);
    assert_int_equal(zt_valid_credit_code(""), 0);
    assert_int_equal(zt_valid_credit_code(NULL), 0);

    char code[19];
    /* A sum divisible by 31 gives the check value 0 (31 is written 0). */
    int zeros = 0;
    for (const char *c = credit_alphabet; *c; c++) {
        char first[18] = "5133010012345678";
        first[16] = *c;
        first[17] = 0;
        make_code(code, first);
        assert_int_equal(zt_valid_credit_code(code), 1);
        zeros += code[17] == '0';
    }
    assert_int_equal(zeros, 1);
    /* Letters may stand first and second (authority and organisation type)... */
    make_code(code, "Y1330100MA2H3J4K5");
    assert_int_equal(zt_valid_credit_code(code), 1);
    make_code(code, "N2330100MA2H3J4K5");
    assert_int_equal(zt_valid_credit_code(code), 1);
    /* ...but not in the division code (characters 3 to 8), even with a right check. */
    for (int pos = 2; pos < 8; pos++) {
        char first[18] = "91330100MA2H3J4K5";
        first[pos] = 'A';
        make_code(code, first);
        if (zt_valid_credit_code(code)) fail_msg("%s accepted", code);
    }
}

/* A number is given somewhere: the first digits are a division of GB/T 2260 (its first
 * two a province), and a credit code's first two say who registered what. Right check
 * characters do not make up for a place that is not one. */
static void numbers_name_real_places(void **state)
{
    (void)state;
    static const struct {
        const char *first17;
        int valid;
    } ids[] = {
        {"00000019900101001", 0}, /* all zeros: a right check character, no place */
        {"99010519491231002", 0}, {"10010519491231002", 0}, {"66010519491231002", 0},
        {"11010519491231002", 1}, {"65010219900101001", 1}, {"81000019900101001", 1},
        {"83000019900101001", 1}, /* a Taiwan resident's residence permit */
        {"93310619900101001", 1}, /* a foreigner's permanent residence card (2023): 9, province */
        {"90010619900101001", 0},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char id[19];
        snprintf(id, sizeof id, "%s", ids[i].first17);
        id[17] = id_check(ids[i].first17);
        id[18] = 0;
        if (zt_valid_citizen_id(id) != ids[i].valid)
            fail_msg("%s: %s", id, ids[i].valid ? "refused" : "accepted");
    }
    static const struct {
        const char *first17;
        int valid;
    } codes[] = {
        {"00000000000000000", 0}, /* all zeros: its check character is 0, so "valid" before */
        {"01330100MA2H3J4K5", 0}, /* no authority 0 */
        {"B1330100MA2H3J4K5", 0}, /* nor B */
        {"90330100MA2H3J4K5", 0}, /* no organisation type 0 */
        {"91000000MA2H3J4K5", 0}, /* no division 00 */
        {"91990100MA2H3J4K5", 0}, {"12100000400001342", 1}, /* a national authority: division 10 */
        {"91330100MA2H3J4K5", 1}, {"Y1330100MA2H3J4K5", 1}, {"A1110000MA2H3J4K5", 1},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char code[19];
        make_code(code, codes[i].first17);
        if (zt_valid_credit_code(code) != codes[i].valid)
            fail_msg("%s: %s", code, codes[i].valid ? "refused" : "accepted");
    }
}

static void credit_code_every_mutation_fails(void **state)
{
    every_mutation_fails(published_codes, sizeof published_codes / sizeof published_codes[0],
                         zt_valid_credit_code);
}

/* ---- seals ---------------------------------------------------------------------- */

/* Masked for display: characters kept at each end, every other one '*'. */
static void mask_shows_only_the_ends(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t front, back;
        const char *want;
    } cases[] = {
        {"13812345678", 3, 4, "138****5678"},
        {"11010519491231002X", 4, 4, "1101**********002X"},
        {"张三丰", 1, 1, "张*丰"},
        {"张三", 1, 1, "张*"}, /* all would show: fewer kept */
        {"张", 1, 1, "*"},     /* one character: masked */
        {"", 1, 1, ""},
        {"欧阳娜娜", 1, 0, "欧***"},
        {"a@b.cn", 0, 0, "******"},
        {"浙江省杭州市西湖区", 3, 2, "浙江省****湖区"},
        {"abc", 5, 0, "ab*"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        assert_int_equal(zt_mask(cases[i].in, cases[i].front, cases[i].back, out, sizeof out),
                         ZT_OK);
        assert_string_equal(out, cases[i].want);
    }
    char out[8];
    assert_int_equal(zt_mask("\xff\xfe", 1, 1, out, sizeof out), ZT_EINVAL); /* not UTF-8 */
    assert_string_equal(out, "");
    assert_int_equal(zt_mask(NULL, 1, 1, out, sizeof out), ZT_EINVAL);
    assert_int_equal(zt_mask("13812345678", 3, 4, out, sizeof out), ZT_ENOMEM); /* 12 bytes */
}

static void seal_sign_verify(void **state)
{
    env *e = *state;
    open_keys(e);
    unsigned char pk[32], sealed[ZT__SEALED_SK_BYTES], sig[64], sig2[64];
    size_t slen = sizeof sealed;
    assert_int_equal(zt__seal_keygen(e->k, pk, sealed, &slen), ZT_OK);
    assert_int_equal(slen, ZT__SEALED_SK_BYTES);
    assert_memory_equal(sealed + 1, pk, 32);

    unsigned char doc[] = "{\"approval\":\"A-2024-0001\",\"result\":\"granted\"}";
    size_t dlen = sizeof doc - 1;
    assert_int_equal(zt__seal_sign(e->k, sealed, slen, doc, dlen, sig), ZT_OK);
    assert_int_equal(zt_seal_verify(pk, doc, dlen, sig), ZT_OK);
    /* Ed25519 is deterministic: the same sealed key signs the same way after a reopen. */
    open_keys(e);
    assert_int_equal(zt__seal_sign(e->k, sealed, slen, doc, dlen, sig2), ZT_OK);
    assert_memory_equal(sig, sig2, 64);

    for (size_t i = 0; i < dlen; i++) {
        doc[i] ^= 0x01;
        assert_int_equal(zt_seal_verify(pk, doc, dlen, sig), ZT_EINVAL);
        doc[i] ^= 0x01;
    }
    assert_int_equal(zt_seal_verify(pk, doc, dlen - 1, sig), ZT_EINVAL);
    for (size_t i = 0; i < 64; i++) {
        for (int bit = 0; bit < 8; bit++) {
            sig[i] ^= (unsigned char)(1u << bit);
            if (zt_seal_verify(pk, doc, dlen, sig) != ZT_EINVAL)
                fail_msg("signature byte %zu bit %d flipped, yet it verified", i, bit);
            sig[i] ^= (unsigned char)(1u << bit);
        }
    }
    assert_int_equal(zt_seal_verify(pk, doc, dlen, sig), ZT_OK);

    /* Another key pair's public key does not verify it. */
    unsigned char pk2[32], sealed2[ZT__SEALED_SK_BYTES];
    size_t slen2 = sizeof sealed2;
    assert_int_equal(zt__seal_keygen(e->k, pk2, sealed2, &slen2), ZT_OK);
    assert_memory_not_equal(pk, pk2, 32);
    assert_int_equal(zt_seal_verify(pk2, doc, dlen, sig), ZT_EINVAL);
    assert_int_equal(zt__seal_sign(e->k, sealed2, slen2, doc, dlen, sig2), ZT_OK);
    assert_int_equal(zt_seal_verify(pk2, doc, dlen, sig2), ZT_OK);
    assert_int_equal(zt_seal_verify(pk, doc, dlen, sig2), ZT_EINVAL);
}

static void sealed_key_tampering_refused(void **state)
{
    env *e = *state;
    open_keys(e);
    unsigned char pk[32], sealed[ZT__SEALED_SK_BYTES], sig[64];
    size_t slen = 10;
    assert_int_equal(zt__seal_keygen(e->k, pk, sealed, &slen), ZT_ETOOBIG);
    assert_int_equal(slen, ZT__SEALED_SK_BYTES);
    assert_int_equal(zt__seal_keygen(e->k, pk, sealed, &slen), ZT_OK);
    for (size_t i = 0; i < slen; i++) {
        sealed[i] ^= 0x80;
        if (zt__seal_sign(e->k, sealed, slen, "m", 1, sig) != ZT_EINVAL)
            fail_msg("sealed key byte %zu altered, yet it signed", i);
        sealed[i] ^= 0x80;
    }
    assert_int_equal(zt__seal_sign(e->k, sealed, slen - 1, "m", 1, sig), ZT_EINVAL);
    assert_int_equal(zt__seal_sign(e->k, sealed, slen, "m", 1, sig), ZT_OK);
    /* Another node's master key cannot unseal it. */
    strcat(e->keypath, ".other");
    open_keys(e);
    assert_int_equal(zt__seal_sign(e->k, sealed, slen, "m", 1, sig), ZT_EINVAL);
}

/* The 32-byte secret of a sealed seal key whose public key is pklen bytes, opened with
 * the master key read from the key file, as the header documents the sealed form:
 * version | public key | nonce (24) | XChaCha20-Poly1305 (32 + 16), the first two the
 * associated data, under the sub-key "ztseal__" 1. */
static void unseal_by_hand(env *e, const unsigned char *sealed, size_t pklen, unsigned char out[32])
{
    unsigned char master[32], skey[32];
    read_file(e->keypath, master, 32);
    assert_int_equal(crypto_kdf_derive_from_key(skey, 32, 1, "ztseal__", master), 0);
    unsigned long long n;
    size_t ad = 1 + pklen;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n, NULL, sealed + ad + 24, 48,
                                                                sealed, ad, sealed + ad, skey),
                     0);
    assert_int_equal(n, 32);
}

/* SM2 (国密): a key sealed as an Ed25519 key is, signatures that verify with its public
 * point and no other, its sealed form refused once altered or under another master key,
 * and the private scalar (opened by hand, as documented) not in it in clear. */
static void sm2_seal_keys(void **state)
{
    env *e = *state;
    open_keys(e);
    unsigned char pk[ZT__SM2_PK_BYTES], sealed[ZT__SEALED_SM2_BYTES], sig[ZT__SM2_SIG_MAX];
    size_t slen = 10, siglen = 0;
    assert_int_equal(zt__sm2_keygen(e->k, pk, sealed, &slen), ZT_ETOOBIG);
    assert_int_equal(slen, ZT__SEALED_SM2_BYTES);
    assert_int_equal(zt__sm2_keygen(e->k, pk, sealed, &slen), ZT_OK);
    assert_int_equal(sealed[0], 2);
    assert_int_equal(pk[0], 4); /* uncompressed: 04 | X | Y */
    assert_memory_equal(sealed + 1, pk, ZT__SM2_PK_BYTES);
    assert_int_equal(zt__seal_opens(e->k, sealed, slen), ZT_OK);

    unsigned char doc[] = "zhengtong-seal-v1\nedu\nKEY\n1700000000000\nabc";
    size_t dlen = sizeof doc - 1;
    assert_int_equal(zt__sm2_sign(e->k, sealed, slen, doc, dlen, sig, &siglen), ZT_OK);
    assert_true(siglen >= 8 && siglen <= ZT__SM2_SIG_MAX);
    assert_int_equal(sig[0], 0x30); /* DER: a SEQUENCE of r and s */
    assert_int_equal(zt__sm2_verify(pk, doc, dlen, sig, siglen), ZT_OK);
    for (size_t i = 0; i < dlen; i++) {
        doc[i] ^= 0x01;
        if (zt__sm2_verify(pk, doc, dlen, sig, siglen) != ZT_EINVAL)
            fail_msg("document byte %zu changed, yet it verified", i);
        doc[i] ^= 0x01;
    }
    for (size_t i = 0; i < siglen; i++) {
        sig[i] ^= 0x10;
        if (zt__sm2_verify(pk, doc, dlen, sig, siglen) != ZT_EINVAL)
            fail_msg("signature byte %zu changed, yet it verified", i);
        sig[i] ^= 0x10;
    }
    assert_int_equal(zt__sm2_verify(pk, doc, dlen, sig, siglen - 1), ZT_EINVAL);
    /* another key pair's point does not verify it; a point off the curve verifies nothing */
    unsigned char pk2[ZT__SM2_PK_BYTES], sealed2[ZT__SEALED_SM2_BYTES];
    size_t slen2 = sizeof sealed2;
    assert_int_equal(zt__sm2_keygen(e->k, pk2, sealed2, &slen2), ZT_OK);
    assert_memory_not_equal(pk, pk2, ZT__SM2_PK_BYTES);
    assert_int_equal(zt__sm2_verify(pk2, doc, dlen, sig, siglen), ZT_EINVAL);
    pk2[40] ^= 0x01;
    assert_int_equal(zt__sm2_verify(pk2, doc, dlen, sig, siglen), ZT_EINVAL);

    /* the sealed form: any byte altered (the point included: it is associated data) */
    for (size_t i = 0; i < slen; i++) {
        sealed[i] ^= 0x80;
        if (zt__sm2_sign(e->k, sealed, slen, doc, dlen, sig, &siglen) == ZT_OK)
            fail_msg("sealed SM2 key byte %zu altered, yet it signed", i);
        sealed[i] ^= 0x80;
    }
    assert_int_equal(zt__seal_opens(e->k, sealed, slen - 1), ZT_EINVAL);

    /* opened by hand with the master key, as documented */
    unsigned char d[32];
    unseal_by_hand(e, sealed, ZT__SM2_PK_BYTES, d);
    for (size_t i = 0; i + 8 <= 32; i++) assert_null(memmem(sealed, slen, d + i, 8));

    /* another node's master key cannot unseal it */
    strcat(e->keypath, ".other");
    open_keys(e);
    assert_int_equal(zt__sm2_sign(e->k, sealed, slen, doc, dlen, sig, &siglen), ZT_EINVAL);
    assert_int_equal(zt__seal_opens(e->k, sealed, slen), ZT_EINVAL);
}

static void sm3_vectors(void **state)
{
    (void)state;
    /* GB/T 32905-2016, appendix A: "abc" */
    unsigned char out[32];
    char hex[65];
    zt__sm3("abc", 3, out);
    zt__hex(hex, out, 32);
    assert_string_equal(hex, "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
}

static void sealed_key_holds_no_clear_secret(void **state)
{
    env *e = *state;
    open_keys(e);
    unsigned char pk[32], sealed[ZT__SEALED_SK_BYTES];
    size_t slen = sizeof sealed;
    assert_int_equal(zt__seal_keygen(e->k, pk, sealed, &slen), ZT_OK);

    /* Unseal by hand with the master key from the file, as documented. */
    unsigned char seed[32], pk2[32], sk[64];
    unseal_by_hand(e, sealed, 32, seed);
    assert_int_equal(crypto_sign_seed_keypair(pk2, sk, seed), 0);
    assert_memory_equal(pk, pk2, 32); /* it really is the secret of pk */

    /* No 8-byte run of the secret half of the key is in the sealed form. */
    for (size_t i = 0; i + 8 <= 32; i++) {
        assert_null(memmem(sealed, slen, seed + i, 8));
        assert_null(memmem(sealed, slen, sk + i, 8));
    }
    /* And the signature it makes is that key's. */
    unsigned char sig[64], sig2[64];
    assert_int_equal(zt__seal_sign(e->k, sealed, slen, "doc", 3, sig), ZT_OK);
    crypto_sign_detached(sig2, NULL, (const unsigned char *)"doc", 3, sk);
    assert_memory_equal(sig, sig2, 64);
}

/* ---- random, hashing, encodings ------------------------------------------------- */

static void random_and_hash(void **state)
{
    unsigned char a[32], b[32], h[32];
    zt_random(a, sizeof a);
    zt_random(b, sizeof b);
    assert_memory_not_equal(a, b, 32);
    zt_random(a, 0);

    /* BLAKE2b-256 known answers ("abc" and ""). */
    char hex[65];
    zt_hash("abc", 3, h);
    zt__hex(hex, h, 32);
    assert_string_equal(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
    zt_hash("", 0, h);
    zt__hex(hex, h, 32);
    assert_string_equal(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

static void hex_codec(void **state)
{
    char hex[16];
    zt__hex(hex, "\x00\x0a\xff", 3);
    assert_string_equal(hex, "000aff");
    zt__hex(hex, "", 0);
    assert_string_equal(hex, "");

    unsigned char out[8];
    size_t n = 99;
    assert_int_equal(zt__hex_decode(out, sizeof out, "000AfF", 6, &n), ZT_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\x00\x0a\xff", 3);
    assert_int_equal(zt__hex_decode(out, sizeof out, "", 0, &n), ZT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(zt__hex_decode(out, sizeof out, "abc", 3, &n), ZT_EINVAL);
    assert_int_equal(zt__hex_decode(out, sizeof out, "zz", 2, &n), ZT_EINVAL);
    assert_int_equal(zt__hex_decode(out, sizeof out, "0a 0b", 5, &n), ZT_EINVAL);
    assert_int_equal(zt__hex_decode(out, sizeof out, "0a:0", 4, &n), ZT_EINVAL);
    assert_int_equal(zt__hex_decode(out, 2, "0a0b0c", 6, &n), ZT_ETOOBIG);
    /* Reads exactly slen characters: what follows does not matter. */
    assert_int_equal(zt__hex_decode(out, sizeof out, "0a0bzz", 4, &n), ZT_OK);
    assert_int_equal(n, 2);
}

static void b64url_codec(void **state)
{
    /* RFC 4648 section 10's vectors, without the padding. */
    static const char *const vec[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    char enc[64];
    unsigned char dec[64];
    size_t n;
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        size_t len = strlen(vec[i][0]);
        zt__b64url_encode(enc, vec[i][0], len);
        assert_string_equal(enc, vec[i][1]);
        assert_int_equal(zt__b64url_decode(dec, sizeof dec, enc, strlen(enc), &n), ZT_OK);
        assert_int_equal(n, len);
        assert_memory_equal(dec, vec[i][0], len);
    }
    zt__b64url_encode(enc, "\xfb\xff\xbf", 3); /* the URL alphabet's two characters */
    assert_string_equal(enc, "-_-_");

    /* Padding, whitespace, the standard alphabet, impossible lengths, stray low bits. */
    static const char *const bad[] = {"Zg==", "Zm9v\n", "Zm 9v", "+/+/", "Z", "Zm9vY", "Zh", "Zm9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (zt__b64url_decode(dec, sizeof dec, bad[i], strlen(bad[i]), &n) != ZT_EINVAL)
            fail_msg("\"%s\" decoded", bad[i]);
    assert_int_equal(zt__b64url_decode(dec, 5, "Zm9vYmFy", 8, &n), ZT_ETOOBIG);
    assert_int_equal(zt__b64url_decode(dec, 6, "Zm9vYmFy", 8, &n), ZT_OK);

    /* Every length round-trips, and ZT__B64URL_LEN is exact. */
    unsigned char bin[64];
    for (size_t len = 0; len <= sizeof bin; len++) {
        randombytes_buf(bin, len);
        char out[ZT__B64URL_LEN(64)];
        zt__b64url_encode(out, bin, len);
        assert_int_equal(strlen(out) + 1, ZT__B64URL_LEN(len));
        assert_int_equal(zt__b64url_decode(dec, len, out, strlen(out), &n), ZT_OK);
        assert_int_equal(n, len);
        if (len) assert_memory_equal(dec, bin, len);
    }
}

static void totp_rfc6238(void **state)
{
    /* RFC 6238 appendix B, SHA1 (its 8-digit codes; we send the last 6) */
    const unsigned char *key = (const unsigned char *)"12345678901234567890";
    static const struct {
        int64_t t;
        int code;
    } vec[] = {{59, 287082},       {1111111109, 81804},  {1111111111, 50471},
               {1234567890, 5924}, {2000000000, 279037}, {20000000000, 353130}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        assert_int_equal(zt__totp_code(key, (uint64_t)(vec[i].t / 30)), vec[i].code);
        char code[7];
        snprintf(code, sizeof code, "%06d", vec[i].code);
        int64_t now_ms = vec[i].t * 1000, step = vec[i].t / 30;
        /* good in its step and one either side, once, and never as 5 or 7 digits */
        assert_int_equal(zt__totp_check(key, code, now_ms, -1), step);
        assert_int_equal(zt__totp_check(key, code, now_ms + 30000, -1), step);
        assert_int_equal(zt__totp_check(key, code, now_ms - 30000, -1), step);
        assert_int_equal(zt__totp_check(key, code, now_ms + 60000, -1), -1);
        assert_int_equal(zt__totp_check(key, code, now_ms, step), -1); /* spent */
        assert_int_equal(zt__totp_check(key, code + 1, now_ms, -1), -1);
        char longer[8];
        snprintf(longer, sizeof longer, "%s0", code);
        assert_int_equal(zt__totp_check(key, longer, now_ms, -1), -1);
    }
    assert_int_equal(zt__totp_check(key, "12345a", 59000, -1), -1);
    assert_int_equal(zt__totp_check(key, NULL, 59000, -1), -1);
    /* RFC 4648 section 10's base32 vectors, without the padding */
    static const char *const b32[][2] = {{"", ""},
                                         {"f", "MY"},
                                         {"fo", "MZXQ"},
                                         {"foo", "MZXW6"},
                                         {"foob", "MZXW6YQ"},
                                         {"fooba", "MZXW6YTB"},
                                         {"foobar", "MZXW6YTBOI"}};
    char out[ZT_TOTP_B32];
    for (size_t i = 0; i < sizeof b32 / sizeof b32[0]; i++) {
        zt__base32((const unsigned char *)b32[i][0], strlen(b32[i][0]), out);
        assert_string_equal(out, b32[i][1]);
    }
    unsigned char k1[ZT_TOTP_KEY], k2[ZT_TOTP_KEY];
    zt__totp_secret(k1);
    zt__totp_secret(k2);
    assert_memory_not_equal(k1, k2, ZT_TOTP_KEY);
    zt__base32(k1, sizeof k1, out);
    assert_int_equal(strlen(out) + 1, ZT_TOTP_B32);
}

static void hex_is(const unsigned char *bin, size_t n, const char *want)
{
    char hex[2 * 64 + 1];
    sodium_bin2hex(hex, sizeof hex, bin, n);
    assert_string_equal(hex, want);
}

/* FIPS 180-4 / RFC 3174 test messages, and RFC 2202's HMAC-SHA1 cases. */
static void sha1_and_hmac_vectors(void **state)
{
    (void)state;
    unsigned char out[20];
    zt__sha1("abc", 3, out);
    hex_is(out, 20, "a9993e364706816aba3e25717850c26c9cd0d89d");
    zt__sha1("", 0, out);
    hex_is(out, 20, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *two =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56: a block edge */
    zt__sha1(two, strlen(two), out);
    hex_is(out, 20, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    static char million[1000000];
    memset(million, 'a', sizeof million);
    zt__sha1(million, sizeof million, out);
    hex_is(out, 20, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    /* the lengths around the padding's edges (values from Python's hashlib) */
    static const struct {
        size_t n;
        const char *sha1;
    } edges[] = {{55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
                 {56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
                 {63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
                 {64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
                 {65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
                 {119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
                 {120, "f34c1488385346a55709ba056ddd08280dd4c6d6"},
                 {128, "ad5b3fdbcb526778c2839d2f151ea753995e26a0"}};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        zt__sha1(million, edges[i].n, out);
        hex_is(out, 20, edges[i].sha1);
    }
    zt__hmac_sha1(million, 65, million, 100, out); /* a 65-byte key: hashed first */
    hex_is(out, 20, "db5957fce472247fd1693a6fa4a15aeb60feff3c");
    unsigned char k20[20], k80[80], d50[50];
    memset(k20, 0x0b, 20);
    zt__hmac_sha1(k20, 20, "Hi There", 8, out);
    hex_is(out, 20, "b617318655057264e28bc0b6fb378c8ef146be00");
    zt__hmac_sha1("Jefe", 4, "what do ya want for nothing?", 28, out);
    hex_is(out, 20, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    memset(k20, 0xaa, 20);
    memset(d50, 0xdd, 50);
    zt__hmac_sha1(k20, 20, d50, 50, out);
    hex_is(out, 20, "125d7342b9ac11cd91a39af48aa17b4f63f175d3");
    memset(k80, 0xaa, 80); /* a key longer than the block is hashed first */
    zt__hmac_sha1(k80, 80, "Test Using Larger Than Block-Size Key - Hash Key First", 54, out);
    hex_is(out, 20, "aa4ae5e15272d00e95705637ce8a3b55ed402112");
    zt__hmac_sha1(k80, 80,
                  "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data", 73,
                  out);
    hex_is(out, 20, "e8e99d0f45237d786d6bbaa7965c7808bbff1a91");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(key_file_created_private_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(reopened_key_decrypts, setup, teardown),
        cmocka_unit_test_setup_teardown(lax_or_bad_key_files_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(existing_key_file_is_used, setup, teardown),
        cmocka_unit_test_setup_teardown(racing_creators_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(field_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(field_tampering_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(field_sm4, setup, teardown),
        cmocka_unit_test_setup_teardown(field_moved_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(field_arguments_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(blind_index_per_field, setup, teardown),
        cmocka_unit_test(citizen_id_examples),
        cmocka_unit_test(citizen_id_every_mutation_fails),
        cmocka_unit_test(citizen_id_dates),
        cmocka_unit_test_setup_teardown(citizen_id_not_born_tomorrow, setup, teardown),
        cmocka_unit_test(credit_code_examples),
        cmocka_unit_test(numbers_name_real_places),
        cmocka_unit_test(credit_code_every_mutation_fails),
        cmocka_unit_test(mask_shows_only_the_ends),
        cmocka_unit_test_setup_teardown(seal_sign_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(sealed_key_tampering_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(sealed_key_holds_no_clear_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(sm2_seal_keys, setup, teardown),
        cmocka_unit_test(sm3_vectors),
        cmocka_unit_test(random_and_hash),
        cmocka_unit_test(hex_codec),
        cmocka_unit_test(b64url_codec),
        cmocka_unit_test(totp_rfc6238),
        cmocka_unit_test(sha1_and_hmac_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
