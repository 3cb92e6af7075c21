/* test_store.c: the LMDB storage layer: transactions, group commit, cursors, limits, backup,
 * the replication change log. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"
#include "testutil.h"

#include <sodium.h>

#include <lmdb.h>

#define MIB (1024u * 1024u)

typedef struct fx {
    char root[64]; /* the mkdtemp folder */
    char dir[256]; /* data_dir inside it (created by the store) */
    zt_store *s;
    zt_server srv;
    char err[ZT_ERRLEN];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->root, "/tmp/zt-store-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/data/db", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    zt__store_close(f->s);
    tu_rm_tree(f->root);
    free(f);
    return 0;
}

static void open_store(fx *f, size_t map_size)
{
    f->err[0] = '\0';
    int rc = zt__store_open(&f->s, f->dir, map_size, f->err, sizeof f->err);
    if (rc != ZT_OK) fail_msg("zt__store_open: %s (%s)", zt_strerror(rc), f->err);
    f->srv.store = f->s;
}

static void reopen_store(fx *f, size_t map_size)
{
    zt__store_close(f->s);
    f->s = NULL;
    open_store(f, map_size);
}

/* A database as plugin `plugin` declares it during init. */
static zt_db *open_db(fx *f, const char *plugin, const char *name)
{
    zt_plugin p = {0};
    p.name = (char *)plugin;
    p.srv = &f->srv;
    p.in_init = true;
    zt_db *db = NULL;
    assert_int_equal(zt_db_open(&p, name, &db), ZT_OK);
    assert_non_null(db);
    return db;
}

static void put_str(zt_txn *t, zt_db *db, const char *k, const char *v)
{
    assert_int_equal(zt_put(t, db, k, strlen(k), v, strlen(v)), ZT_OK);
}

/* The value of k as a NUL-terminated copy in buf, or NULL if absent. */
static const char *get_str(zt_txn *t, zt_db *db, const char *k, char *buf, size_t cap)
{
    const void *v;
    size_t n;
    int rc = zt_get(t, db, k, strlen(k), &v, &n);
    if (rc == ZT_ENOTFOUND) return NULL;
    assert_int_equal(rc, ZT_OK);
    assert_true(n < cap);
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

/* Run one request's writes in the batch: begin, put every k=v pair, end with commit. */
static void write_pairs(fx *f, zt_db *db, const char *const *kv, size_t n)
{
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    for (size_t i = 0; i + 1 < n; i += 2) put_str(t, db, kv[i], kv[i + 1]);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
}

/* The same as a batch of its own, committed. */
static void commit_pairs(fx *f, zt_db *db, const char *const *kv, size_t n)
{
    write_pairs(f, db, kv, n);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
}

static void assert_read(fx *f, zt_db *db, const char *k, const char *want)
{
    zt_txn *t;
    char buf[256];
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    const char *got = get_str(t, db, k, buf, sizeof buf);
    if (want) {
        assert_non_null(got);
        assert_string_equal(got, want);
    } else {
        assert_null(got);
    }
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static void key_of(char *out, unsigned i)
{
    snprintf(out, 16, "k%05u", i);
}

/* ---- sealed databases ------------------------------------------------------------- */

static int open_db_as(fx *f, const char *plugin, const char *name, bool sealed, zt_db **db)
{
    zt_plugin p = {0};
    p.name = (char *)plugin;
    p.srv = &f->srv;
    p.in_init = true;
    return sealed ? zt_db_open_sealed(&p, name, db) : zt_db_open(&p, name, db);
}

static void sealed_databases(void **state)
{
    fx *f = *state;
    open_store(f, 16 * MIB);
    zt_db *db = open_db(f, "p", "cases");
    const char *kv[] = {"a", "first", "b", "", "c", "third"};
    commit_pairs(f, db, kv, 6);
    zt_db *sdb = NULL;
    assert_int_equal(open_db_as(f, "p", "cases", true, &sdb), ZT_ESTATE); /* no key yet */
    unsigned char key[32] = {1, 2, 3};
    assert_true(sodium_init() >= 0); /* the node's key file opens libsodium */
    assert_int_equal(zt__store_seal_key(f->s, key), ZT_OK);
    assert_int_equal(open_db_as(f, "p", "cases", true, &sdb), ZT_OK);
    assert_ptr_equal(sdb, db); /* one handle, sealed from now on */
    assert_read(f, db, "a", "first");
    assert_read(f, db, "b", ""); /* an empty value holds its seal too */
    const char *more[] = {"d", "fourth"};
    commit_pairs(f, db, more, 2);
    /* a cursor sees the values without their seals */
    zt_txn *t;
    zt_cursor *c;
    zt_kv got;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    const char *want[] = {"first", "", "third", "fourth"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(zt_cursor_seek(c, i ? ZT_NEXT : ZT_FIRST, NULL, 0, &got), ZT_OK);
        assert_int_equal(got.vlen, strlen(want[i]));
        assert_memory_equal(got.val, want[i], got.vlen);
    }
    zt_cursor_close(c);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    assert_int_equal(open_db_as(f, "p", "cases", false, &sdb), ZT_ESTATE); /* never plain */
    /* after a restart the mark holds: plain is refused, sealed reads; under another key
     * (a value changed outside the node, as far as the seal can tell) nothing is read */
    reopen_store(f, 16 * MIB);
    assert_int_equal(zt__store_seal_key(f->s, key), ZT_OK);
    assert_int_equal(open_db_as(f, "p", "cases", false, &sdb), ZT_ESTATE);
    assert_int_equal(open_db_as(f, "p", "cases", true, &sdb), ZT_OK);
    assert_read(f, sdb, "d", "fourth");
    reopen_store(f, 16 * MIB);
    key[0] ^= 1;
    assert_int_equal(zt__store_seal_key(f->s, key), ZT_OK);
    assert_int_equal(open_db_as(f, "p", "cases", true, &sdb), ZT_OK);
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    const void *v;
    size_t n;
    assert_int_equal(zt_get(t, sdb, "a", 1, &v, &n), ZT_EIO);
    assert_int_equal(zt_cursor_open(t, sdb, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &got), ZT_EIO);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &got), ZT_EIO); /* on past it */
    zt_cursor_close(c);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    zt_store_stats st;
    zt__store_stats(f->s, &st);
    assert_int_equal(st.seals_failed, 3);
}

/* ---- basic operations ------------------------------------------------------------- */

static void put_get_del(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0); /* created like mkdir -p, private */
    assert_int_equal(st.st_mode & 0777, 0700);
    zt_db *db = open_db(f, "notice", "items");

    zt_txn *t;
    char buf[256];
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, db, "a", "one");
    put_str(t, db, "b", "two");
    put_str(t, db, "a", "uno");                              /* replaces */
    assert_int_equal(zt_put(t, db, "e", 1, NULL, 0), ZT_OK); /* empty value */
    assert_string_equal(get_str(t, db, "a", buf, sizeof buf), "uno");
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_true(zt__store_batch_open(f->s));
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_false(zt__store_batch_open(f->s));

    assert_read(f, db, "a", "uno");
    assert_read(f, db, "b", "two");
    assert_read(f, db, "e", "");
    assert_read(f, db, "c", NULL);

    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_del(t, db, "a", 1), ZT_OK);
    assert_int_equal(zt_del(t, db, "a", 1), ZT_ENOTFOUND);
    assert_int_equal(zt_del(t, db, "zz", 2), ZT_ENOTFOUND);
    assert_null(get_str(t, db, "a", buf, sizeof buf));
    /* A missing key is an answer, not a failure: the request still commits. */
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_read(f, db, "a", NULL);
    assert_read(f, db, "b", "two");

    /* Large values live on overflow pages. */
    size_t big = 200000;
    unsigned char *v = malloc(big);
    assert_non_null(v);
    for (size_t i = 0; i < big; i++) v[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_put(t, db, "big", 3, v, big), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    const void *got;
    size_t n;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_get(t, db, "big", 3, &got, &n), ZT_OK);
    assert_int_equal(n, big);
    assert_memory_equal(got, v, big);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    free(v);

    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK); /* none open: nothing to do */
}

static void key_size_limits(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "keys");
    char key[600];
    memset(key, 'x', sizeof key);

    zt_txn *t;
    zt_kv kv;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_put(t, db, key, 511, "v", 1), ZT_OK);
    assert_int_equal(zt_put(t, db, key, 512, "v", 1), ZT_ETOOBIG);
    assert_int_equal(zt_put(t, db, key, 0, "v", 1), ZT_EINVAL);
    assert_int_equal(zt_put(t, db, NULL, 3, "v", 1), ZT_EINVAL);
    assert_int_equal(zt_put(t, db, "k", 1, NULL, 4), ZT_EINVAL);
    assert_int_equal(zt_get(t, db, key, 512, NULL, NULL), ZT_ETOOBIG);
    assert_int_equal(zt_get(t, db, key, 0, NULL, NULL), ZT_EINVAL);
    assert_int_equal(zt_del(t, db, key, 512), ZT_ETOOBIG);
    assert_int_equal(zt_del(t, db, key, 0), ZT_EINVAL);
    zt_cursor *c;
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, key, 512, &kv), ZT_ETOOBIG);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, key, 0, &kv), ZT_EINVAL);
    assert_int_equal(zt_cursor_seek(c, 99, NULL, 0, &kv), ZT_EINVAL);
    /* Rejected arguments never reach LMDB, so the request's writes still commit. */
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);

    const void *v;
    size_t n;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_get(t, db, key, 511, &v, &n), ZT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(zt_get(t, db, key, 510, &v, &n), ZT_ENOTFOUND);
    assert_int_equal(zt_get(t, db, key, 512, &v, &n), ZT_ETOOBIG);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static void readonly_transactions(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "ro");
    const char *kv[] = {"k", "v"};
    commit_pairs(f, db, kv, 2);

    /* Without a batch, a batch read is a plain snapshot that need not wait for a commit. */
    zt_txn *t;
    assert_int_equal(zt__store_batch_read_begin(f->s, &t), ZT_OK);
    assert_false(zt__store_in_batch(t));
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    assert_false(zt__store_batch_open(f->s));

    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
            assert_false(zt__store_in_batch(t));
        } else {
            const char *kv2[] = {"w", "x"};
            write_pairs(f, db, kv2, 2); /* opens a batch */
            assert_int_equal(zt__store_batch_read_begin(f->s, &t), ZT_OK);
            assert_true(zt__store_in_batch(t));
        }
        assert_int_equal(zt_txn_writable(t), 0);
        assert_int_equal(zt_put(t, db, "k", 1, "new", 3), ZT_EREADONLY);
        assert_int_equal(zt_del(t, db, "k", 1), ZT_EREADONLY);
        zt_cursor *c;
        zt_kv out;
        assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
        assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &out), ZT_OK);
        assert_int_equal(zt_cursor_del(c), ZT_EREADONLY);
        zt_cursor_close(c);
        char buf[16];
        assert_string_equal(get_str(t, db, "k", buf, sizeof buf), "v");
        /* commit=true on a read changes nothing */
        assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    }
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_read(f, db, "k", "v");
    assert_read(f, db, "w", "x");

    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_txn_writable(t), 1);
    assert_true(zt__store_in_batch(t));
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_int_equal(zt_txn_writable(NULL), 0);
}

/* ---- the batch -------------------------------------------------------------------- */

static void nested_abort_keeps_siblings(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "n");
    const char *before[] = {"a", "original"};
    commit_pairs(f, db, before, 2);

    zt_store_stats st0, st1;
    zt__store_stats(f->s, &st0);

    const char *first[] = {"b", "kept-1"};
    write_pairs(f, db, first, 2);

    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, db, "a", "changed");
    put_str(t, db, "c", "dropped");
    assert_int_equal(zt_del(t, db, "b", 1), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK); /* the failed handler */

    const char *third[] = {"d", "kept-3"};
    commit_pairs(f, db, third, 2);

    assert_read(f, db, "a", "original");
    assert_read(f, db, "b", "kept-1");
    assert_read(f, db, "c", NULL);
    assert_read(f, db, "d", "kept-3");
    zt__store_stats(f->s, &st1);
    assert_int_equal(st1.commits - st0.commits, 1);
    assert_int_equal(st1.nested - st0.nested, 3);
    assert_int_equal(st1.commit_errors, 0);
}

/* Savepoints (a service call): what is written after one is kept or dropped as a piece,
 * the writes before it stay, they nest, a cursor opened before reads on through them, and
 * one opened inside is closed at its end. */
static void savepoints(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "sp");
    zt_txn *t;
    char buf[64];
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, db, "a", "before");
    zt_cursor *outer;
    zt_kv kv;
    assert_int_equal(zt_cursor_open(t, db, &outer), ZT_OK);
    assert_int_equal(zt_cursor_seek(outer, ZT_FIRST, NULL, 0, &kv), ZT_OK);

    zt__savepoint sp1, sp2;
    assert_int_equal(zt__store_savepoint(t, &sp1), ZT_OK);
    put_str(t, db, "b", "dropped");
    put_str(t, db, "a", "changed, dropped");
    zt_cursor *inner; /* left open: the savepoint's end closes it */
    assert_int_equal(zt_cursor_open(t, db, &inner), ZT_OK);
    assert_int_equal(zt_cursor_seek(inner, ZT_LAST, NULL, 0, &kv), ZT_OK);
    assert_int_equal(zt__store_savepoint_end(t, &sp1, false), ZT_OK);
    assert_string_equal(get_str(t, db, "a", buf, sizeof buf), "before");
    assert_null(get_str(t, db, "b", buf, sizeof buf));
    assert_int_equal(zt__store_txn_writes(t), 1);

    assert_int_equal(zt__store_savepoint(t, &sp1), ZT_OK); /* kept, with one dropped inside */
    put_str(t, db, "c", "kept");
    assert_int_equal(zt__store_savepoint(t, &sp2), ZT_OK);
    put_str(t, db, "d", "dropped inside");
    assert_int_equal(zt__store_savepoint_end(t, &sp2, false), ZT_OK);
    assert_int_equal(zt__store_savepoint_end(t, &sp1, true), ZT_OK);
    assert_string_equal(get_str(t, db, "c", buf, sizeof buf), "kept");
    assert_null(get_str(t, db, "d", buf, sizeof buf));
    /* the cursor opened before them all reads on: a, then c */
    assert_int_equal(zt_cursor_seek(outer, ZT_NEXT, NULL, 0, &kv), ZT_OK);
    assert_int_equal(kv.klen, 1);
    assert_memory_equal(kv.key, "c", 1);
    zt_cursor_close(outer);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_read(f, db, "a", "before");
    assert_read(f, db, "b", NULL);
    assert_read(f, db, "c", "kept");
    assert_read(f, db, "d", NULL);

    /* on a read transaction there is nothing to undo: both do nothing */
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt__store_savepoint(t, &sp1), ZT_OK);
    assert_null(sp1.parent);
    assert_int_equal(zt__store_savepoint_end(t, &sp1, false), ZT_OK);
    assert_string_equal(get_str(t, db, "c", buf, sizeof buf), "kept");
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static void group_commit_is_one_commit(void **state)
{
    fx *f = *state;
    open_store(f, 8 * MIB);
    zt_db *db = open_db(f, "p", "g");
    zt_store_stats st0, st1;
    zt__store_stats(f->s, &st0);
    assert_int_equal(st0.map_size, 8 * MIB);

    enum { N = 500 };
    for (unsigned i = 0; i < N; i++) {
        zt_txn *t;
        char k[16];
        key_of(k, i);
        assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
        put_str(t, db, k, "value");
        assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
        assert_true(zt__store_batch_open(f->s));
    }
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    zt__store_stats(f->s, &st1);
    assert_int_equal(st1.commits - st0.commits, 1);
    assert_int_equal(st1.nested - st0.nested, N);
    assert_int_equal(st1.commit_errors, 0);
    assert_true(st1.used_bytes > st0.used_bytes);
    assert_true(st1.used_bytes <= st1.map_size);

    zt_txn *t;
    unsigned count = 0;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv))
        count++;
    assert_int_equal(count, N);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static void batch_read_sees_the_batch(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "v");
    zt_txn *old;
    /* A snapshot taken before the batch. */
    assert_int_equal(zt__store_read_begin(f->s, &old), ZT_OK);

    const char *kv[] = {"x", "pending"};
    write_pairs(f, db, kv, 2);

    zt_txn *br, *rd;
    char buf[32];
    assert_int_equal(zt__store_batch_read_begin(f->s, &br), ZT_OK);
    assert_int_equal(zt__store_read_begin(f->s, &rd), ZT_OK);
    assert_string_equal(get_str(br, db, "x", buf, sizeof buf), "pending");
    assert_null(get_str(rd, db, "x", buf, sizeof buf));
    assert_int_equal(zt__store_end(f->s, br, true), ZT_OK);
    assert_int_equal(zt__store_end(f->s, rd, false), ZT_OK);

    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    /* The old snapshot stays what it was; a renewed pooled one sees the commit. */
    assert_null(get_str(old, db, "x", buf, sizeof buf));
    assert_int_equal(zt__store_end(f->s, old, false), ZT_OK);
    assert_int_equal(zt__store_read_begin(f->s, &rd), ZT_OK);
    assert_string_equal(get_str(rd, db, "x", buf, sizeof buf), "pending");
    assert_int_equal(zt__store_end(f->s, rd, false), ZT_OK);
}

static void read_txn_pool(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "r");
    const char *kv[] = {"k", "v"};
    commit_pairs(f, db, kv, 2);

    /* Hold read transactions until the reader table is full. */
    enum { CAP = 8192 };
    zt_txn **held = calloc(CAP, sizeof *held);
    assert_non_null(held);
    size_t n = 0;
    int rc;
    while ((rc = zt__store_read_begin(f->s, &held[n])) == ZT_OK) {
        n++;
        assert_true(n < CAP);
    }
    assert_int_equal(rc, ZT_EBUSY);
    assert_true(n > 64);
    for (size_t i = 0; i < n; i++) assert_int_equal(zt__store_end(f->s, held[i], false), ZT_OK);

    /* Far more begin/end than there are reader slots: reset transactions are reused. */
    char buf[8];
    for (size_t i = 0; i < 3 * n; i++) {
        zt_txn *a, *b;
        assert_int_equal(zt__store_read_begin(f->s, &a), ZT_OK);
        assert_int_equal(zt__store_read_begin(f->s, &b), ZT_OK);
        assert_string_equal(get_str(a, db, "k", buf, sizeof buf), "v");
        assert_string_equal(get_str(b, db, "k", buf, sizeof buf), "v");
        assert_int_equal(zt__store_end(f->s, b, false), ZT_OK);
        assert_int_equal(zt__store_end(f->s, a, false), ZT_OK);
    }
    /* Every slot is still usable at once. */
    for (size_t i = 0; i < n; i++) assert_int_equal(zt__store_read_begin(f->s, &held[i]), ZT_OK);
    for (size_t i = 0; i < n; i++) assert_int_equal(zt__store_end(f->s, held[i], false), ZT_OK);
    free(held);
}

/* ---- cursors ---------------------------------------------------------------------- */

enum { NKEYS = 2000 };

/* NKEYS keys k00000.. with 38-byte values (many pages), written in a scrambled order. */
static zt_db *fill(fx *f, const char *name)
{
    zt_db *db = open_db(f, "p", name);
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    for (unsigned j = 0; j < NKEYS; j++) {
        unsigned i = (j * 7919u) % NKEYS; /* 7919 is prime: a permutation */
        char k[16], v[48];
        key_of(k, i);
        snprintf(v, sizeof v, "value-of-%05u-padding-padding-padding", i);
        put_str(t, db, k, v);
    }
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    return db;
}

static void assert_key(const zt_kv *kv, unsigned i)
{
    char k[16];
    key_of(k, i);
    assert_int_equal(kv->klen, strlen(k));
    assert_memory_equal(kv->key, k, kv->klen);
}

static void cursor_order_and_ends(void **state)
{
    fx *f = *state;
    open_store(f, 8 * MIB);
    zt_db *db = fill(f, "c");
    zt_db *empty = open_db(f, "p", "empty");
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);

    assert_int_equal(zt_cursor_open(t, empty, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "a", 1, &kv), ZT_ENOTFOUND);
    zt_cursor_close(c);

    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_ENOTFOUND); /* nowhere */
    unsigned i = 0;
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        assert_key(&kv, i);
        char v[48];
        snprintf(v, sizeof v, "value-of-%05u-padding-padding-padding", i);
        assert_int_equal(kv.vlen, strlen(v));
        assert_memory_equal(kv.val, v, kv.vlen);
        i++;
    }
    assert_int_equal(i, NKEYS);
    /* A move past the end leaves the cursor on the last key. */
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, NKEYS - 1);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, NKEYS - 2);

    i = NKEYS;
    for (int rc = zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv))
        assert_key(&kv, --i);
    assert_int_equal(i, 0);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, 0);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, 1);

    /* ZT_GE: exact, between two keys, before the first, past the last. */
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k01234", 6, &kv), ZT_OK);
    assert_key(&kv, 1234);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k01234!", 7, &kv), ZT_OK);
    assert_key(&kv, 1235);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, 1234);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "a", 1, &kv), ZT_OK);
    assert_key(&kv, 0);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k1", 2, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_OK); /* from past the end */
    assert_key(&kv, NKEYS - 1);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k1", 2, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_ENOTFOUND);
    zt_cursor_close(c);

    /* A new cursor: ZT_NEXT starts at the first key, ZT_PREV at the last. */
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, 0);
    zt_cursor_close(c);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, NULL), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_OK);
    assert_key(&kv, NKEYS - 1);
    zt_cursor_close(c);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static bool alive[NKEYS]; /* the model of what the database holds */

static unsigned key_index(const zt_kv *kv)
{
    assert_int_equal(kv->klen, 6);
    return (unsigned)strtoul((const char *)kv->key + 1, NULL, 10);
}

/* The nearest alive key after (dir > 0) or before i; -1 if none. */
static int neighbour(unsigned i, int dir)
{
    for (int j = (int)i + dir; j >= 0 && j < NKEYS; j += dir)
        if (alive[j]) return j;
    return -1;
}

/* Walk the keys with ZT_NEXT (forward) or ZT_PREV, deleting those where del(i); each
 * alive key must be seen once, in order. */
static void walk_deleting(fx *f, zt_db *db, bool forward, bool (*del)(unsigned))
{
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    int want = neighbour(forward ? (unsigned)-1 : NKEYS, forward ? 1 : -1);
    int rc;
    for (rc = zt_cursor_seek(c, forward ? ZT_FIRST : ZT_LAST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, forward ? ZT_NEXT : ZT_PREV, NULL, 0, &kv)) {
        unsigned i = key_index(&kv);
        assert_int_equal(i, want);
        want = neighbour(i, forward ? 1 : -1);
        if (del(i)) {
            assert_int_equal(zt_cursor_del(c), ZT_OK);
            alive[i] = false;
            assert_int_equal(zt_cursor_seek(c, ZT_CURRENT, NULL, 0, &kv), ZT_ENOTFOUND);
            assert_int_equal(zt_cursor_del(c), ZT_ENOTFOUND); /* gone already */
        }
    }
    assert_int_equal(rc, ZT_ENOTFOUND);
    assert_int_equal(want, -1);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK); /* the cursor is closed here */
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
}

static void expect_alive(fx *f, zt_db *db)
{
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv);
    for (unsigned i = 0; i < NKEYS; i++) {
        if (!alive[i]) continue;
        assert_int_equal(rc, ZT_OK);
        assert_int_equal(key_index(&kv), i);
        rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
    }
    assert_int_equal(rc, ZT_ENOTFOUND);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
}

static bool every_third(unsigned i)
{
    return i % 3 == 0;
}
static bool runs_of_fifty(unsigned i)
{
    return (i / 50) % 2 == 1; /* long runs: whole pages empty out and merge */
}
static bool every_fourth(unsigned i)
{
    return i % 4 == 1;
}
static bool all_keys(unsigned i)
{
    return true;
}

static void cursor_delete_while_iterating(void **state)
{
    fx *f = *state;
    open_store(f, 8 * MIB);
    zt_db *db = fill(f, "d");
    for (unsigned i = 0; i < NKEYS; i++) alive[i] = true;

    /* Around the ends: delete the last key, then the first. */
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv), ZT_OK);
    assert_int_equal(zt_cursor_del(c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_OK);
    assert_int_equal(key_index(&kv), NKEYS - 2);
    assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv), ZT_OK);
    assert_int_equal(zt_cursor_del(c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv), ZT_OK);
    assert_int_equal(key_index(&kv), 1);
    assert_int_equal(zt_cursor_del(c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv), ZT_OK);
    assert_int_equal(key_index(&kv), 2);
    /* After a delete, ZT_PREV reads the key before the deleted one. */
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k01000", 6, &kv), ZT_OK);
    assert_int_equal(zt_cursor_del(c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_PREV, NULL, 0, &kv), ZT_OK);
    assert_int_equal(key_index(&kv), 999);
    alive[0] = alive[1] = alive[1000] = alive[NKEYS - 1] = false;
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    expect_alive(f, db);

    walk_deleting(f, db, true, every_third);
    expect_alive(f, db);
    walk_deleting(f, db, true, runs_of_fifty);
    expect_alive(f, db);
    walk_deleting(f, db, false, every_fourth);
    expect_alive(f, db);
    walk_deleting(f, db, false, all_keys);
    expect_alive(f, db);

    /* Empty: every move finds nothing, and a new key is found again. */
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv), ZT_ENOTFOUND);
    assert_int_equal(zt_cursor_del(c), ZT_ENOTFOUND);
    put_str(t, db, "k00007", "back");
    assert_int_equal(zt_cursor_seek(c, ZT_LAST, NULL, 0, &kv), ZT_OK);
    assert_int_equal(key_index(&kv), 7);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
}

static void cursors_closed_at_end(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = fill(f, "o");
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;

    /* Left open in each kind of transaction: the end closes them (valgrind/ASan watch). */
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
        assert_int_equal(zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv), ZT_OK);
    }
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);

    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, db, "new", "1");
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "new", 3, &kv), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);

    assert_int_equal(zt__store_batch_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "new", 3, &kv), ZT_OK); /* sees the batch */
    assert_memory_equal(kv.key, "new", 3);
    /* A transaction holds a bounded number of cursors. */
    int rc;
    unsigned n = 1;
    while ((rc = zt_cursor_open(t, db, &c)) == ZT_OK) {
        n++;
        assert_true(n < 100000);
    }
    assert_int_equal(rc, ZT_EBUSY);
    assert_null(c);
    zt_cursor_close(NULL);
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);

    /* Closing one by hand, then the rest at the end, in a fresh transaction. */
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    zt_cursor *keep[3];
    for (int i = 0; i < 3; i++) assert_int_equal(zt_cursor_open(t, db, &keep[i]), ZT_OK);
    zt_cursor_close(keep[1]);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_read(f, db, "new", "1");
}

/* ---- databases -------------------------------------------------------------------- */

static void database_isolation(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *ax = open_db(f, "a", "x");
    zt_db *bx = open_db(f, "b", "x");
    zt_db *ay = open_db(f, "a", "y");
    zt_db *core = open_db(f, "_core", "x");
    assert_ptr_not_equal(ax, bx);
    assert_ptr_not_equal(ax, ay);
    assert_ptr_equal(open_db(f, "a", "x"), ax); /* the same handle again */

    const char *kva[] = {"k", "from-a", "only-a", "1"};
    write_pairs(f, ax, kva, 4);
    const char *kvb[] = {"k", "from-b"};
    commit_pairs(f, bx, kvb, 2);
    assert_read(f, ax, "k", "from-a");
    assert_read(f, bx, "k", "from-b");
    assert_read(f, bx, "only-a", NULL);
    assert_read(f, ay, "k", NULL);
    assert_read(f, core, "k", NULL);

    /* Names: 1..64 of [A-Za-z0-9_.-]; nothing that could reach another plugin's. */
    zt_plugin p = {0};
    p.name = "a";
    p.srv = &f->srv;
    p.in_init = true;
    zt_db *db = (zt_db *)&db;
    char n64[65], n65[66];
    memset(n64, 'n', 64);
    n64[64] = '\0';
    memset(n65, 'n', 65);
    n65[65] = '\0';
    assert_int_equal(zt_db_open(&p, n64, &db), ZT_OK);
    assert_non_null(db);
    assert_int_equal(zt_db_open(&p, "Ok_name-1.2", &db), ZT_OK);
    const char *bad[] = {"", n65, "b/x", "../b", "x y", "x\n", "\xe6\x94\xbf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(zt_db_open(&p, bad[i], &db), ZT_EINVAL);
        assert_null(db);
    }
    p.name = "b/evil";
    assert_int_equal(zt_db_open(&p, "x", &db), ZT_EINVAL);
    p.name = "a";

    /* Only during init, and never while a batch is open. */
    p.in_init = false;
    assert_int_equal(zt_db_open(&p, "z", &db), ZT_ESTATE);
    p.in_init = true;
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt_db_open(&p, "z", &db), ZT_ESTATE);
    assert_int_equal(zt_db_open(&p, "x", &db), ZT_ESTATE);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    assert_int_equal(zt_db_open(&p, "z", &db), ZT_OK);

    /* The databases outlive a restart, separate still. */
    reopen_store(f, 4 * MIB);
    ax = open_db(f, "a", "x");
    bx = open_db(f, "b", "x");
    assert_read(f, ax, "k", "from-a");
    assert_read(f, bx, "k", "from-b");
}

/* ---- durability and failures ------------------------------------------------------ */

static void durable_after_reopen(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "dur");
    const char *kv[] = {"committed", "yes"};
    commit_pairs(f, db, kv, 2);
    const char *kv2[] = {"uncommitted", "no"};
    write_pairs(f, db, kv2, 2); /* the batch is still open at close: lost */
    zt_txn *r;
    assert_int_equal(zt__store_read_begin(f->s, &r), ZT_OK); /* left open too */

    reopen_store(f, 4 * MIB);
    db = open_db(f, "p", "dur");
    assert_read(f, db, "committed", "yes");
    assert_read(f, db, "uncommitted", NULL);
}

static uint64_t data_file_size(fx *f)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* How many bytes of data.mdb from off to its end are not zero. */
static uint64_t nonzero_from(fx *f, uint64_t off)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseeko(fp, (off_t)off, SEEK_SET), 0);
    uint64_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF) n += c != 0;
    fclose(fp);
    return n;
}

/* Zeroes are written ahead of LMDB's last page (so that commits overwrite blocks instead
 * of growing the file): at least 4 MiB of room once a batch has begun, never past the map,
 * only zeroes, and what was committed, before and after the room was made, stays. */
static void room_ahead_of_the_data(void **state)
{
    fx *f = *state;
    open_store(f, 64 * MIB);
    zt_db *db = open_db(f, "p", "room");
    const char *kv[] = {"first", "1"};
    commit_pairs(f, db, kv, 2);
    zt_store_stats st;
    zt__store_stats(f->s, &st);
    uint64_t size = data_file_size(f);
    assert_true(size >= st.used_bytes + 4 * MIB);
    assert_true(size <= 64 * MIB);
    assert_int_equal(nonzero_from(f, st.used_bytes), 0);

    /* Grow the data past the first room, over many batches. */
    char val[1500];
    memset(val, 'v', sizeof val);
    for (unsigned b = 0; b < 40; b++) {
        zt_txn *t;
        assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
        for (unsigned i = 0; i < 200; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%02u-%03u", b, i);
            assert_int_equal(zt_put(t, db, k, strlen(k), val, sizeof val), ZT_OK);
        }
        assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
        assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    }
    zt__store_stats(f->s, &st);
    assert_true(st.used_bytes > 16 * MIB); /* past the first chunk */
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK); /* a batch begins: room */
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    zt__store_batch_abort(f->s);
    size = data_file_size(f);
    assert_true(size >= st.used_bytes + 4 * MIB);
    assert_true(size <= 64 * MIB);
    assert_int_equal(nonzero_from(f, st.used_bytes), 0);

    reopen_store(f, 64 * MIB);
    db = open_db(f, "p", "room");
    assert_read(f, db, "first", "1");
    zt_txn *r;
    assert_int_equal(zt__store_read_begin(f->s, &r), ZT_OK);
    const char *keys[] = {"k00-000", "k20-100", "k39-199"};
    for (size_t i = 0; i < 3; i++) {
        const void *v;
        size_t vlen;
        assert_int_equal(zt_get(r, db, keys[i], strlen(keys[i]), &v, &vlen), ZT_OK);
        assert_int_equal(vlen, sizeof val);
        assert_memory_equal(v, val, sizeof val);
    }
    assert_int_equal(zt__store_end(f->s, r, false), ZT_OK);

    /* A map smaller than the room: the file stops at the map. */
    zt__store_close(f->s);
    f->s = NULL;
    tu_rm_tree(f->root);
    assert_int_equal(mkdir(f->root, 0700), 0);
    open_store(f, 1 * MIB);
    db = open_db(f, "p", "room");
    commit_pairs(f, db, kv, 2);
    assert_true(data_file_size(f) <= 1 * MIB);
    reopen_store(f, 1 * MIB);
    db = open_db(f, "p", "room");
    assert_read(f, db, "first", "1");
}

/* How many keys start with the byte tag. */
static unsigned count_tag(fx *f, zt_db *db, char tag)
{
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    char prefix[2] = {tag, 0};
    unsigned n = 0;
    assert_int_equal(zt__store_read_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    for (int rc = zt_cursor_seek(c, ZT_GE, prefix, 1, &kv);
         rc == ZT_OK && ((const char *)kv.key)[0] == tag;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv))
        n++;
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    return n;
}

/* Put up to max 1500-byte values under keys <tag><i>; the first error, or ZT_OK. */
static int fill_until_full(fx *f, zt_db *db, zt_txn *t, char tag, unsigned max)
{
    char val[1500];
    memset(val, 'v', sizeof val);
    for (unsigned i = 0; i < max; i++) {
        char k[16];
        snprintf(k, sizeof k, "%c%05u", tag, i);
        int rc = zt_put(t, db, k, strlen(k), val, sizeof val);
        if (rc != ZT_OK) return rc;
    }
    return ZT_OK;
}

static void map_full(void **state)
{
    fx *f = *state;
    enum { MAP = 256 * 1024 };
    open_store(f, MAP);
    zt_db *db = open_db(f, "p", "full");
    const char *kv[] = {"A-before", "kept"};
    commit_pairs(f, db, kv, 2);

    /* One request overfills the map: it fails, at a put or at the end of its nested
     * transaction or at the batch commit, and none of it persists. */
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    int rc = fill_until_full(f, db, t, 'B', 1000);
    int rc_end = zt__store_end(f->s, t, true); /* as if the handler ignored the error */
    int rc_commit = zt__store_batch_commit(f->s);
    assert_true(rc == ZT_EFULL || rc_end == ZT_EFULL || rc_commit == ZT_EFULL);
    if (rc == ZT_EFULL) {
        /* The failed request is dropped alone: the batch itself still commits. */
        assert_int_equal(rc_end, ZT_EFULL);
        assert_int_equal(rc_commit, ZT_OK);
    }
    zt_store_stats st;
    zt__store_stats(f->s, &st);
    assert_int_equal(st.commit_errors, rc_commit == ZT_OK ? 0 : 1);

    /* A sibling of a request that overfills the map is kept if the batch commits. */
    const char *kv2[] = {"C-sibling", "kept"};
    write_pairs(f, db, kv2, 2);
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    int rc2 = fill_until_full(f, db, t, 'D', 1000);
    int rc2_end = zt__store_end(f->s, t, true);
    int rc2_commit = zt__store_batch_commit(f->s);
    assert_true(rc2 == ZT_EFULL || rc2_end == ZT_EFULL || rc2_commit == ZT_EFULL);
    if (rc2 == ZT_EFULL) {
        assert_int_equal(rc2_end, ZT_EFULL);
        assert_int_equal(rc2_commit, ZT_OK);
    }

    reopen_store(f, MAP);
    db = open_db(f, "p", "full");
    assert_read(f, db, "A-before", "kept");
    assert_int_equal(count_tag(f, db, 'B'), 0);
    assert_int_equal(count_tag(f, db, 'D'), 0);
    assert_int_equal(count_tag(f, db, 'C'), rc2_commit == ZT_OK ? 1 : 0);

    /* Still usable: a small write fits once the failed requests are gone. */
    const char *kv3[] = {"E-after", "ok"};
    commit_pairs(f, db, kv3, 2);
    assert_read(f, db, "E-after", "ok");
}

static void open_errors(void **state)
{
    fx *f = *state;
    zt_store *s = NULL;

    assert_int_equal(zt__store_open(&s, f->dir, 4096, f->err, sizeof f->err), ZT_EINVAL);
    assert_null(s);
    assert_non_null(strstr(f->err, "map_size"));

    /* A file where the folder should be. */
    char path[300];
    snprintf(path, sizeof path, "%s/file", f->root);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a folder", fp);
    fclose(fp);
    f->err[0] = '\0';
    assert_int_not_equal(zt__store_open(&s, path, 4 * MIB, f->err, sizeof f->err), ZT_OK);
    assert_null(s);
    assert_non_null(strstr(f->err, path));
    assert_non_null(strstr(f->err, "not a folder"));

    /* A data.mdb that is not LMDB. */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad", f->root);
    assert_int_equal(mkdir(bad, 0700), 0);
    snprintf(path, sizeof path, "%s/data.mdb", bad);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 4 * 4096; i++) fputc(i * 31, fp);
    fclose(fp);
    f->err[0] = '\0';
    assert_int_not_equal(zt__store_open(&s, bad, 4 * MIB, f->err, sizeof f->err), ZT_OK);
    assert_null(s);
    assert_non_null(strstr(f->err, "not an LMDB environment"));

    /* More data than the configured map holds. */
    open_store(f, 2 * MIB);
    zt_db *db = open_db(f, "p", "grow");
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(fill_until_full(f, db, t, 'G', 200), ZT_OK);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    zt__store_close(f->s);
    f->s = NULL;
    f->err[0] = '\0';
    assert_int_equal(zt__store_open(&s, f->dir, 128 * 1024, f->err, sizeof f->err), ZT_EINVAL);
    assert_null(s);
    assert_non_null(strstr(f->err, "map_size"));
    open_store(f, 2 * MIB); /* still intact */
    db = open_db(f, "p", "grow");
    assert_int_equal(count_tag(f, db, 'G'), 200);
}

static void open_permission_denied(void **state)
{
    fx *f = *state;
    if (geteuid() == 0) skip(); /* root is never denied */
    char locked[256];
    snprintf(locked, sizeof locked, "%s/locked", f->root);
    assert_int_equal(mkdir(locked, 0500), 0);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/data", locked);
    zt_store *s = NULL;
    assert_int_equal(zt__store_open(&s, dir, 4 * MIB, f->err, sizeof f->err), ZT_EPERM);
    assert_non_null(strstr(f->err, "permission denied"));
    chmod(locked, 0700);
}

/* ---- backup ----------------------------------------------------------------------- */

/* Another process holds the environment open, in the middle of a batch, while we copy. */
static void backup_while_open(void **state)
{
    fx *f = *state;
    open_store(f, 4 * MIB); /* create it, then leave it to the other process */
    zt__store_close(f->s);
    f->s = NULL;

    int ready[2], done[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(done[1]);
        zt_store *s;
        char err[ZT_ERRLEN];
        int ok = zt__store_open(&s, f->dir, 4 * MIB, err, sizeof err) == ZT_OK;
        zt_db *db = NULL;
        zt_txn *t = NULL;
        ok = ok && zt__store_db(s, "p", "bk", &db) == ZT_OK;
        ok = ok && zt__store_write_begin(s, &t) == ZT_OK;
        ok = ok && zt_put(t, db, "saved", 5, "yes", 3) == ZT_OK;
        ok = ok && zt__store_end(s, t, true) == ZT_OK;
        ok = ok && zt__store_batch_commit(s) == ZT_OK;
        ok = ok && zt__store_write_begin(s, &t) == ZT_OK; /* holds the write lock */
        ok = ok && zt_put(t, db, "pending", 7, "no", 2) == ZT_OK;
        ok = ok && zt__store_end(s, t, true) == ZT_OK;
        char c = ok ? 'y' : 'n';
        ssize_t w = write(ready[1], &c, 1);
        ssize_t r = read(done[0], &c, 1); /* until the copy is made */
        if (ok) zt__store_close(s);
        _exit(ok && w == 1 && r == 1 ? 0 : 1);
    }
    close(ready[1]);
    close(done[0]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');

    char dest[128];
    snprintf(dest, sizeof dest, "%s/backup-today", f->root);
    f->err[0] = '\0';
    int rc = zt__store_backup(f->dir, dest, f->err, sizeof f->err);
    assert_int_equal(write(done[1], "x", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(ready[0]);
    close(done[1]);
    if (rc != ZT_OK) fail_msg("backup: %s", f->err);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat st;
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* A destination that is not empty, or not a folder, is refused. */
    assert_int_equal(zt__store_backup(f->dir, dest, f->err, sizeof f->err), ZT_EEXIST);
    assert_non_null(strstr(f->err, "not empty"));
    char file[300];
    snprintf(file, sizeof file, "%s/data.mdb", dest);
    assert_int_equal(zt__store_backup(f->dir, file, f->err, sizeof f->err), ZT_EEXIST);
    assert_non_null(strstr(f->err, "not a folder"));
    char nowhere[256];
    snprintf(nowhere, sizeof nowhere, "%s/nothing-here", f->root);
    char dest2[256];
    snprintf(dest2, sizeof dest2, "%s/backup2", f->root);
    assert_int_equal(zt__store_backup(nowhere, dest2, f->err, sizeof f->err), ZT_ENOTFOUND);
    assert_non_null(strstr(f->err, "no LMDB environment"));
    assert_int_not_equal(stat(dest2, &st), 0); /* nothing left behind */
    char deep[300];
    snprintf(deep, sizeof deep, "%s/no-parent/x", f->root);
    assert_int_equal(zt__store_backup(f->dir, deep, f->err, sizeof f->err), ZT_EIO);
    assert_non_null(strstr(f->err, "cannot create"));
    snprintf(deep, sizeof deep, "%s/no-parent", f->root);
    assert_int_not_equal(stat(deep, &st), 0);

    /* An empty existing folder is fine. */
    assert_int_equal(mkdir(dest2, 0700), 0);
    assert_int_equal(zt__store_backup(f->dir, dest2, f->err, sizeof f->err), ZT_OK);

    /* The copy is a working environment with the committed data only. */
    snprintf(f->dir, sizeof f->dir, "%s", dest);
    open_store(f, 4 * MIB);
    zt_db *db = open_db(f, "p", "bk");
    assert_read(f, db, "saved", "yes");
    assert_read(f, db, "pending", NULL);
    const char *kv[] = {"later", "1"}; /* and writable */
    commit_pairs(f, db, kv, 2);
}

/* ---- replication: capture on the primary, apply on the standby ---------------------- */

/* Every record of every database but the change log's own, as text, read from the
 * environment in dir by LMDB itself (no store may have it open in this process). */
static void dump_env(const char *dir, zt_buf *out)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_cursor *names, *c;
    MDB_val k, v, rk, rv;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 128), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    MDB_dbi main_db, dbi;
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main_db), 0);
    assert_int_equal(mdb_cursor_open(txn, main_db, &names), 0);
    for (int op = MDB_FIRST; mdb_cursor_get(names, &k, &v, op) == 0; op = MDB_NEXT) {
        char name[160];
        snprintf(name, sizeof name, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        if (strcmp(name, "_core/replog") == 0 || strcmp(name, "_core/repl") == 0) continue;
        assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
        assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
        zt__buf_printf(out, "[%s]\n", name);
        for (int o = MDB_FIRST; mdb_cursor_get(c, &rk, &rv, o) == 0; o = MDB_NEXT) {
            char *hk = malloc(2 * rk.mv_size + 1), *hv = malloc(2 * rv.mv_size + 1);
            zt__hex(hk, rk.mv_data, rk.mv_size);
            zt__hex(hv, rv.mv_data, rv.mv_size);
            zt__buf_printf(out, "%s=%s\n", hk, hv);
            free(hk);
            free(hv);
        }
        mdb_cursor_close(c);
    }
    mdb_cursor_close(names);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static zt_repl_state repl_state(zt_store *s)
{
    zt_repl_state st;
    assert_int_equal(zt__store_repl_state(s, &st), ZT_OK);
    return st;
}

static void repl_on(fx *f, uint64_t keep)
{
    zt_repl_state st;
    int what;
    assert_int_equal(zt__store_repl_open(f->s, keep), ZT_OK);
    assert_int_equal(zt__store_repl_config(f->s, true, &st, &what), ZT_OK);
    assert_true(zt__store_repl_on(f->s));
}

/* The change sets after batch `after`, as the primary sends them. */
static void repl_sets(fx *f, uint64_t after, zt_buf *out, size_t *count)
{
    zt_repl_state st;
    uint64_t ht;
    out->len = 0;
    assert_int_equal(zt__store_repl_read(f->s, after, SIZE_MAX, out, &st, &ht), ZT_OK);
    *count = 0;
    for (size_t off = 0; off < out->len; (*count)++)
        off += 12 + ((size_t)(unsigned char)out->data[off + 8] << 24 |
                     (size_t)(unsigned char)out->data[off + 9] << 16 |
                     (size_t)(unsigned char)out->data[off + 10] << 8 |
                     (unsigned char)out->data[off + 11]);
}

static void replication_capture_and_apply(void **state)
{
    fx *f = *state;
    assert_true(sodium_init() >= 0);
    open_store(f, 16 * MIB);
    repl_on(f, 1 << 20);
    zt_repl_state st = repl_state(f->s);
    assert_true(st.on);
    assert_int_equal(st.head, 0);
    zt_db *a = open_db(f, "p", "a"); /* made (and _core/sealed): change sets of their own */
    const char *kv[] = {"k1", "v1", "k2", "v2", "k9", "v9"};
    commit_pairs(f, a, kv, 6);
    assert_int_equal(repl_state(f->s).head, 3);

    /* the standby is seeded from a backup of the data as it is now */
    char seed[300];
    snprintf(seed, sizeof seed, "%s/seed", f->root);
    zt__store_close(f->s);
    f->s = NULL;
    assert_int_equal(zt__store_backup(f->dir, seed, f->err, sizeof f->err), ZT_OK);
    open_store(f, 16 * MIB);
    assert_int_equal(zt__store_repl_open(f->s, 1 << 20), ZT_OK);
    assert_true(zt__store_repl_on(f->s)); /* the data says so: the CLI's processes log too */
    a = open_db(f, "p", "a");

    /* one batch: kept and dropped nested transactions, savepoints, a failed delete */
    zt_txn *t;
    zt__savepoint sp1, sp2;
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, a, "k3", "v3");
    assert_int_equal(zt_del(t, a, "k1", 2), ZT_OK);
    assert_int_equal(zt_del(t, a, "nothing", 7), ZT_ENOTFOUND); /* not in the change set */
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    put_str(t, a, "x", "dropped with its transaction");
    assert_int_equal(zt__store_end(f->s, t, false), ZT_OK);
    assert_int_equal(zt__store_write_begin(f->s, &t), ZT_OK);
    assert_int_equal(zt__store_savepoint(t, &sp1), ZT_OK);
    put_str(t, a, "y", "dropped with its savepoint");
    assert_int_equal(zt__store_savepoint_end(t, &sp1, false), ZT_OK);
    assert_int_equal(zt__store_savepoint(t, &sp1), ZT_OK);
    put_str(t, a, "z", "kept");
    assert_int_equal(zt__store_savepoint(t, &sp2), ZT_OK);
    put_str(t, a, "z2", "dropped inside a kept one");
    assert_int_equal(zt__store_savepoint_end(t, &sp2, false), ZT_OK);
    assert_int_equal(zt__store_savepoint_end(t, &sp1, true), ZT_OK);
    zt_cursor *c;
    zt_kv got;
    assert_int_equal(zt_cursor_open(t, a, &c), ZT_OK);
    assert_int_equal(zt_cursor_seek(c, ZT_GE, "k2", 2, &got), ZT_OK);
    assert_int_equal(zt_cursor_del(c), ZT_OK); /* k2, by cursor */
    zt_cursor_close(c);
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    /* the batch itself as the writer, as the audit records are written */
    assert_int_equal(zt__store_batch_write(f->s, &t), ZT_OK);
    put_str(t, a, "direct", "in the batch");
    assert_int_equal(zt__store_end(f->s, t, true), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->s), ZT_OK);
    /* a batch dropped whole leaves no change set */
    write_pairs(f, a, (const char *const[]){"lost", "with the batch"}, 2);
    zt__store_batch_abort(f->s);
    assert_int_equal(repl_state(f->s).head, 4);
    /* a new database, then a sealed one sealed as it stands */
    zt_db *b = open_db(f, "p", "b");
    commit_pairs(f, b, (const char *const[]){"b1", "in b"}, 2);
    unsigned char key[32] = {7};
    assert_int_equal(zt__store_seal_key(f->s, key), ZT_OK);
    zt_db *sealed;
    assert_int_equal(open_db_as(f, "p", "b", true, &sealed), ZT_OK);
    commit_pairs(f, sealed, (const char *const[]){"b2", "sealed"}, 2);
    assert_int_equal(repl_state(f->s).head, 8); /* C b, b1, seal of b (marks too), b2 */

    zt_buf sets = {0};
    size_t count;
    repl_sets(f, 3, &sets, &count);
    assert_int_equal(count, 5);
    zt_repl_state pst = repl_state(f->s);

    /* the standby */
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s", seed);
    zt_store *sb;
    assert_int_equal(zt__store_open(&sb, sdir, 16 * MIB, f->err, sizeof f->err), ZT_OK);
    assert_int_equal(zt__store_repl_open(sb, 1 << 20), ZT_OK);
    assert_int_equal(zt__store_repl_standby(sb, "tcp://primary:7460", &st), ZT_OK);
    assert_false(zt__store_repl_on(sb));
    assert_int_equal(st.head, 3);
    assert_memory_equal(st.epoch, pst.epoch, 16);
    uint64_t when = 0;
    /* out of order, damaged, of another log: refused, nothing applied */
    size_t first_len =
        12 + ((size_t)(unsigned char)sets.data[10] << 8 | (unsigned char)sets.data[11]);
    assert_int_equal(zt__store_repl_apply(sb, st.epoch, sets.data + first_len, sets.len - first_len,
                                          &st, &when, f->err, sizeof f->err),
                     ZT_ESTATE);
    assert_non_null(strstr(f->err, "does not follow batch 3"));
    assert_int_equal(zt__store_repl_apply(sb, st.epoch, sets.data, first_len - 1, &st, &when,
                                          f->err, sizeof f->err),
                     ZT_EINVAL);
    unsigned char other[16] = {0};
    assert_int_equal(
        zt__store_repl_apply(sb, other, sets.data, sets.len, &st, &when, f->err, sizeof f->err),
        ZT_ESTATE);
    assert_int_equal(repl_state(sb).head, 3);
    /* in order: all of them, in one transaction */
    assert_int_equal(
        zt__store_repl_apply(sb, st.epoch, sets.data, sets.len, &st, &when, f->err, sizeof f->err),
        ZT_OK);
    assert_int_equal(st.head, 8);
    assert_true(when > 0);
    st = repl_state(sb);
    assert_int_equal(st.head, 8);
    assert_string_equal(st.standby, "tcp://primary:7460");
    /* again: they no longer follow */
    assert_int_equal(
        zt__store_repl_apply(sb, st.epoch, sets.data, sets.len, &st, &when, f->err, sizeof f->err),
        ZT_ESTATE);
    zt__store_close(sb);
    zt__store_close(f->s);
    f->s = NULL;

    zt_buf pd = {0}, sd = {0};
    dump_env(f->dir, &pd);
    dump_env(sdir, &sd);
    assert_non_null(strstr(pd.data, "[p/b]"));
    assert_null(strstr(pd.data, "6b31=")); /* k1 went */
    assert_string_equal(pd.data, sd.data);
    zt__buf_free(&pd);
    zt__buf_free(&sd);

    /* promotion: serve's config removes the mark; the log goes on from the primary's head */
    assert_int_equal(zt__store_open(&sb, sdir, 16 * MIB, f->err, sizeof f->err), ZT_OK);
    assert_int_equal(zt__store_repl_open(sb, 1 << 20), ZT_OK);
    assert_false(zt__store_repl_on(sb));
    int what;
    assert_int_equal(zt__store_repl_config(sb, true, &st, &what), ZT_OK);
    assert_int_equal(what, ZT_REPL_PROMOTED);
    assert_int_equal(st.head, 8);
    assert_string_equal(repl_state(sb).standby, "");
    zt__store_close(sb);
    zt__buf_free(&sets);
}

static void replication_log_bounds(void **state)
{
    fx *f = *state;
    assert_true(sodium_init() >= 0);
    open_store(f, 64 * MIB);
    zt_db *db = open_db(f, "p", "big"); /* before the log: no change set */
    repl_on(f, 65536);
    char value[4000];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    char k[16];
    for (unsigned i = 0; i < 40; i++) {
        key_of(k, i);
        commit_pairs(f, db, (const char *const[]){k, value}, 2);
    }
    zt_repl_state st = repl_state(f->s);
    assert_int_equal(st.head, 40);
    assert_true(st.bytes <= 65536);
    assert_true(st.first > 1 && st.first <= 40); /* the oldest went, never the newest */
    zt_buf sets = {0};
    size_t count;
    repl_sets(f, st.first - 2, &sets, &count); /* too old: nothing */
    assert_int_equal(count, 0);
    repl_sets(f, st.first - 1, &sets, &count);
    assert_int_equal(count, st.head - st.first + 1);
    /* what the standby confirmed goes at the next commit */
    zt__store_repl_ack(f->s, 40);
    zt__store_repl_ack(f->s, 12); /* never back */
    assert_int_equal(zt__store_repl_acked(f->s), 40);
    commit_pairs(f, db, (const char *const[]){"after", "ack"}, 2);
    st = repl_state(f->s);
    assert_int_equal(st.head, 41);
    assert_int_equal(st.first, 41);
    /* off: the log is dropped, and nothing more is captured */
    unsigned char epoch[16];
    memcpy(epoch, st.epoch, 16);
    int what;
    assert_int_equal(zt__store_repl_config(f->s, false, &st, &what), ZT_OK);
    assert_int_equal(what, ZT_REPL_STOPPED);
    assert_false(zt__store_repl_on(f->s));
    commit_pairs(f, db, (const char *const[]){"unlogged", "1"}, 2);
    st = repl_state(f->s);
    assert_false(st.on);
    repl_sets(f, 40, &sets, &count);
    assert_int_equal(count, 0);
    /* on again: another log, from batch 0 (a standby of the old one must be re-seeded) */
    assert_int_equal(zt__store_repl_config(f->s, true, &st, &what), ZT_OK);
    assert_int_equal(what, ZT_REPL_STARTED);
    assert_int_equal(st.head, 0);
    assert_memory_not_equal(st.epoch, epoch, 16);
    /* data without a log cannot be a standby */
    assert_int_equal(zt__store_repl_config(f->s, false, &st, &what), ZT_OK);
    assert_int_equal(zt__store_repl_standby(f->s, "tcp://x:1", &st), ZT_ENOTFOUND);
    zt__buf_free(&sets);
}

static void error_mapping(void **state)
{
    assert_int_equal(zt__store_errno(MDB_SUCCESS), ZT_OK);
    assert_int_equal(zt__store_errno(MDB_NOTFOUND), ZT_ENOTFOUND);
    assert_int_equal(zt__store_errno(MDB_MAP_FULL), ZT_EFULL);
    assert_int_equal(zt__store_errno(MDB_BAD_VALSIZE), ZT_ETOOBIG);
    assert_int_equal(zt__store_errno(EACCES), ZT_EREADONLY);
    assert_int_equal(zt__store_errno(MDB_READERS_FULL), ZT_EBUSY);
    assert_int_equal(zt__store_errno(MDB_TXN_FULL), ZT_EBUSY);
    assert_int_equal(zt__store_errno(ENOMEM), ZT_ENOMEM);
    assert_int_equal(zt__store_errno(MDB_CORRUPTED), ZT_EIO);
    assert_int_equal(zt__store_errno(EIO), ZT_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_get_del, setup, teardown),
        cmocka_unit_test_setup_teardown(key_size_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(readonly_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_abort_keeps_siblings, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_is_one_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_read_sees_the_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(read_txn_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(cursor_order_and_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(cursor_delete_while_iterating, setup, teardown),
        cmocka_unit_test_setup_teardown(cursors_closed_at_end, setup, teardown),
        cmocka_unit_test_setup_teardown(database_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(durable_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(room_ahead_of_the_data, setup, teardown),
        cmocka_unit_test_setup_teardown(map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(open_permission_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(backup_while_open, setup, teardown),
        cmocka_unit_test(error_mapping),
        cmocka_unit_test_setup_teardown(sealed_databases, setup, teardown),
        cmocka_unit_test_setup_teardown(replication_capture_and_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(replication_log_bounds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
