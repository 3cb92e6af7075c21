/* store.c: the LMDB storage layer: environment, named databases, pooled read transactions,
 * the group-commit batch with its nested transactions, cursors, backup. */
#include "core.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define STORE_MAXDBS                                                                               \
    128 /* named databases in all; each nested transaction zeroes per-database                     \
           state, so this is paid on every write (measured: 512 cost 40%) */
/* Reset read transactions keep their reader slot (MDB_NOTLS), so the pools of every
 * worker process sharing the environment count against this; LMDB's default (126) would
 * be exhausted by two pools alone. */
#define STORE_MAXREADERS 1024
#define STORE_POOL_MAX   64
#define STORE_MIN_MAP    (64u * 1024)
#define STORE_NAME_MAX   64
#define TXN_CURSORS_MAX  ZT_TXN_CURSORS_MAX
/* Written room kept past LMDB's last page (see room_ahead): topped up to ROOM_CHUNK when
 * less than ROOM_LOW is left. */
#define STORE_ROOM_LOW   (4u << 20)
#define STORE_ROOM_CHUNK (16u << 20)

enum txn_kind { TXN_READ = 1, TXN_BATCH_READ, TXN_WRITE };

struct zt_db {
    MDB_dbi dbi;
    char *name;        /* "<plugin>/<name>" */
    bool sealed;       /* every value ends with its seal (DB_SEAL bytes): zt__store_db_as */
    int64_t warned_at; /* when a value failing its seal was last logged (ms) */
    struct zt_db *next;
};

#define DB_SEAL 16 /* a keyed BLAKE2b-128 over the database's name, the key and the value */

struct zt_cursor {
    MDB_cursor *mc;
    zt_txn *txn;
    zt_db *db;
    struct zt_cursor *prev, *next;
    bool deleted;   /* the key under it was deleted by zt_cursor_del: no current key */
    unsigned level; /* the savepoints its transaction was in when it was opened */
};

struct zt_txn {
    MDB_txn *txn;
    zt_store *s;
    int kind;
    bool active;
    bool direct; /* the batch itself (zt__store_batch_write): no commit or abort of its own */
    /* The first error of a write that LMDB may have left the transaction unusable after
     * (it then refuses to commit, and a failed nested commit poisons the batch). */
    int failed;
    uint64_t writes; /* successful puts and deletes: whether the work changed anything */
    zt_cursor *cursors;
    unsigned ncursors;
    unsigned level;             /* savepoints open (zt__store_savepoint) */
    size_t rlog_mark;           /* the batch's change set when it began: undone to it */
    struct zt_txn *prev, *next; /* READ: in the store's live list or its pool */
};

struct zt_store {
    MDB_env *env;
    char *dir;
    size_t maxkey;
    zt_db *dbs;
    zt_txn *pool; /* reset read transactions, ready to renew */
    unsigned npool;
    zt_txn *live; /* read transactions handed out */
    size_t map_size, psize;
    uint64_t file_end; /* the data file's size, as last seen or made by room_ahead */
    bool no_room;      /* writing room ahead failed (disk full?): not tried again */
    MDB_txn *batch;
    zt_txn child; /* the one nested transaction of the batch (WRITE or BATCH_READ) */
    uint64_t commits, commit_errors, nested, last_commit_us;
    unsigned char *seal_key; /* sodium_malloc'd (zt__store_seal_key); NULL: none yet */
    uint64_t seals_failed;   /* values of sealed databases that failed their seal */
    /* Replication (the section "replication" below). With repl off, the write path pays
     * one branch per write. */
    bool repl;          /* capture every change of the batch into rlog */
    zt_buf rlog;        /* the open batch's change set: its ops, in the order made */
    zt_db *repl_log;    /* _core/replog: batch number (8 bytes, big-endian) → change set */
    zt_db *repl_meta;   /* _core/repl: "log" (REPL_META bytes), "standby" (the primary) */
    uint64_t repl_keep; /* bytes of change sets kept at most (replication.keep) */
    _Atomic uint64_t repl_acked; /* the standby has applied through it: may go */
    int64_t repl_warned_at;      /* when dropping unconfirmed change sets was last logged */
    void (*repl_notify)(void *arg);
    void *repl_notify_arg;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rlog_op(zt_store *s, char type, const char *name, const MDB_val *k, const MDB_val *v);
static void rlog_cut(zt_store *s, size_t mark);
static int rlog_flush(zt_store *s, MDB_txn *txn, bool *logged);
static void repl_notify(zt_store *s);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int zt__store_errno(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return ZT_OK;
    case MDB_NOTFOUND:
        return ZT_ENOTFOUND;
    case MDB_KEYEXIST:
        return ZT_EEXIST;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
        return ZT_EFULL;
    case MDB_BAD_VALSIZE:
        return ZT_ETOOBIG;
    case EACCES:
        return ZT_EREADONLY;
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case MDB_DBS_FULL:
    case MDB_TLS_FULL:
        return ZT_EBUSY;
    case ENOMEM:
        return ZT_ENOMEM;
    case EINVAL:
        return ZT_EINVAL;
    default:
        return ZT_EIO;
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* mkdir -p with mode 0700 for every folder it creates. */
static int mkdir_p(const char *path)
{
    size_t n = strlen(path);
    if (n == 0) {
        errno = ENOENT;
        return -1;
    }
    char *p = strdup(path);
    if (!p) return -1;
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        if (p[i - 1] == '/') continue; /* "a//b" */
        char c = p[i];
        p[i] = '\0';
        int rc = mkdir(p, 0700);
        int e = errno;
        p[i] = c;
        if (rc != 0 && e != EEXIST) {
            free(p);
            errno = e;
            return -1;
        }
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok || n >= STORE_NAME_MAX) return false;
    }
    return n > 0;
}

/* ---- environment ------------------------------------------------------------------ */

static int open_error(int rc, const char *dir, size_t map_size, char *err, size_t errlen)
{
    switch (rc) {
    case EACCES:
    case EPERM:
        seterr(err, errlen, "data_dir %s: permission denied", dir);
        return ZT_EPERM;
    case MDB_INVALID:
        seterr(err, errlen, "data_dir %s: data.mdb is not an LMDB environment", dir);
        return ZT_EINVAL;
    case MDB_VERSION_MISMATCH:
        seterr(err, errlen, "data_dir %s: data.mdb was written by an incompatible LMDB version",
               dir);
        return ZT_EINVAL;
    case ENOMEM:
        if (map_size)
            seterr(err, errlen, "data_dir %s: cannot map %zu bytes (map_size too large?)", dir,
                   map_size);
        else
            seterr(err, errlen, "data_dir %s: cannot map the environment: out of memory", dir);
        return ZT_ENOMEM;
    default:
        seterr(err, errlen, "data_dir %s: cannot open the LMDB environment: %s", dir,
               mdb_strerror(rc));
        return zt__store_errno(rc) == ZT_EFULL ? ZT_EFULL : ZT_EIO;
    }
}

/* The data folder, created if missing, or why not. */
static int make_data_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir_p(dir) == 0) return ZT_OK;
    int e = errno;
    if (e == EACCES || e == EPERM) {
        seterr(err, errlen, "data_dir %s: permission denied", dir);
        return ZT_EPERM;
    }
    if (e == ENOTDIR) {
        seterr(err, errlen, "data_dir %s: not a folder", dir);
        return ZT_EINVAL;
    }
    seterr(err, errlen, "data_dir %s: cannot create it: %s", dir, strerror(e));
    return ZT_EIO;
}

int zt__store_claim(const char *dir, int *fd_out, char *err, size_t errlen)
{
    *fd_out = -1;
    int rc = make_data_dir(dir, err, errlen);
    if (rc != ZT_OK) return rc;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/serve.lock", dir) >= sizeof path) {
        seterr(err, errlen, "data_dir %s: the path is too long", dir);
        return ZT_EINVAL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        seterr(err, errlen, "%s: %s", path, strerror(e));
        return e == EACCES || e == EPERM ? ZT_EPERM : ZT_EIO;
    }
    /* flock: the kernel lets go when the process ends, however it ends (no stale lock
     * to clear by hand after a crash or kill -9) */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char who[32] = "";
        ssize_t n = pread(fd, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = '\0';
        who[strcspn(who, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            seterr(err, errlen,
                   "data_dir %s is in use by another zhengtong serve (process %s); one node "
                   "serves a data folder",
                   dir, who[0] ? who : "unknown");
        else
            seterr(err, errlen, "%s: cannot lock it: %s", path, strerror(e));
        return e == EWOULDBLOCK ? ZT_EBUSY : ZT_EIO;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        zt__log(ZT_LOG_WARN, NULL, NULL, "%s: cannot write the process id: %s", path,
                strerror(errno)); /* the lock holds all the same */
    *fd_out = fd;
    return ZT_OK;
}

/* A small text value of _core/store (a number, a version) into out; "" when absent. */
static void store_text(zt_txn *t, zt_db *db, const char *key, char *out, size_t outlen)
{
    const void *v;
    size_t vl;
    out[0] = '\0';
    if (zt_get(t, db, key, strlen(key), &v, &vl) == ZT_OK)
        snprintf(out, outlen, "%.*s", (int)(vl < outlen ? vl : outlen - 1), (const char *)v);
}

int zt__store_format(zt_store *s, char *err, size_t errlen)
{
    zt_db *db;
    zt_txn *t;
    int rc = zt__store_db(s, "_core", "store", &db);
    if (rc == ZT_OK) rc = zt__store_read_begin(s, &t);
    if (rc != ZT_OK) {
        seterr(err, errlen, "data_dir %s: cannot read its format: %s", s->dir, zt_strerror(rc));
        return rc;
    }
    char format[24], version[64];
    store_text(t, db, "format", format, sizeof format);
    store_text(t, db, "version", version, sizeof version);
    zt__store_end(s, t, false);
    char *end;
    long n = format[0] ? strtol(format, &end, 10) : ZT_DATA_FORMAT;
    if (format[0] && (*end || n < 1)) {
        seterr(err, errlen, "data_dir %s: its format \"%s\" is not a number: damaged data?", s->dir,
               format);
        return ZT_EINVAL;
    }
    if (n > ZT_DATA_FORMAT) {
        seterr(err, errlen,
               "data_dir %s holds data in format %ld, last opened by zhengtong %s; this is "
               "zhengtong %s, which reads format %d at most: run that version or a newer one, or "
               "restore a backup made by this one",
               s->dir, n, version[0] ? version : "(unknown)", ZT_VERSION, ZT_DATA_FORMAT);
        return ZT_EINVAL;
    }
    if (format[0] && strcmp(version, ZT_VERSION) == 0) return ZT_OK; /* nothing to note */
    char f[24];
    snprintf(f, sizeof f, "%d", ZT_DATA_FORMAT);
    if ((rc = zt__store_write_begin(s, &t)) == ZT_OK) {
        rc = zt_put(t, db, "format", 6, f, strlen(f));
        if (rc == ZT_OK) rc = zt_put(t, db, "version", 7, ZT_VERSION, strlen(ZT_VERSION));
        rc = zt__store_write_done(s, t, rc);
    }
    if (rc != ZT_OK) {
        seterr(err, errlen, "data_dir %s: cannot note its format: %s", s->dir, zt_strerror(rc));
        return rc;
    }
    return ZT_OK;
}

int zt__store_open(zt_store **out, const char *dir, size_t map_size, char *err, size_t errlen)
{
    assert(out && dir);
    *out = NULL;
    if (map_size < STORE_MIN_MAP) {
        seterr(err, errlen, "map_size %zu is too small: at least %u bytes", map_size,
               STORE_MIN_MAP);
        return ZT_EINVAL;
    }
    int rc = make_data_dir(dir, err, errlen);
    if (rc != ZT_OK) return rc;

    zt_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        seterr(err, errlen, "data_dir %s: out of memory", dir);
        return ZT_ENOMEM;
    }
    rc = mdb_env_create(&s->env);
    if (rc != 0) {
        free(s->dir);
        free(s);
        seterr(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
        return zt__store_errno(rc);
    }
    if ((rc = mdb_env_set_maxdbs(s->env, STORE_MAXDBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, STORE_MAXREADERS)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, map_size)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0) {
        int zrc = open_error(rc, dir, map_size, err, errlen);
        mdb_env_close(s->env); /* also right after a failed mdb_env_open */
        free(s->dir);
        free(s);
        return zrc;
    }

    /* LMDB silently grows the map to hold the data already there; a map that is full from
     * the start would fail every write, so say so now. */
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if (used > map_size) {
        seterr(err, errlen, "data_dir %s holds %llu bytes, more than map_size %zu: raise map_size",
               dir, (unsigned long long)used, map_size);
        zt__store_close(s);
        return ZT_EINVAL;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead); /* slots left by crashed processes */
    s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
    s->map_size = info.me_mapsize;
    s->psize = st.ms_psize;
    *out = s;
    return ZT_OK;
}

static void close_cursors(zt_txn *t)
{
    while (t->cursors) zt_cursor_close(t->cursors);
    assert(t->ncursors == 0);
}

static void list_remove(zt_txn **head, zt_txn *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        *head = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void list_push(zt_txn **head, zt_txn *t)
{
    t->prev = NULL;
    t->next = *head;
    if (*head) (*head)->prev = t;
    *head = t;
}

void zt__store_close(zt_store *s)
{
    if (!s) return;
    unsigned leftover = 0;
    if (s->child.active) {
        close_cursors(&s->child);
        mdb_txn_abort(s->child.txn);
        s->child.active = false;
        leftover++;
    }
    if (s->batch) {
        mdb_txn_abort(s->batch); /* the server commits before closing: this is a bug */
        s->batch = NULL;
        leftover++;
    }
    while (s->live) {
        zt_txn *t = s->live;
        list_remove(&s->live, t);
        close_cursors(t);
        mdb_txn_abort(t->txn);
        free(t);
        leftover++;
    }
    while (s->pool) {
        zt_txn *t = s->pool;
        list_remove(&s->pool, t);
        mdb_txn_abort(t->txn);
        free(t);
    }
    if (leftover)
        zt__log(ZT_LOG_WARN, NULL, NULL, "store closed with %u transactions still open (aborted)",
                leftover);
    while (s->dbs) {
        zt_db *d = s->dbs;
        s->dbs = d->next;
        free(d->name);
        free(d);
    }
    mdb_env_close(s->env);
    zt__buf_free(&s->rlog);
    if (s->seal_key) sodium_free(s->seal_key);
    free(s->dir);
    free(s);
}

/* ---- named databases -------------------------------------------------------------- */

static zt_db *db_find(zt_db *list, const char *full)
{
    for (zt_db *d = list; d; d = d->next)
        if (strcmp(d->name, full) == 0) return d;
    return NULL;
}

/* A zt_db named full, not opened yet (NULL: out of memory). */
static zt_db *db_new(const char *full)
{
    zt_db *d = calloc(1, sizeof *d);
    if (d && !(d->name = strdup(full))) {
        free(d);
        return NULL;
    }
    return d;
}

int zt__store_db(zt_store *s, const char *plugin, const char *name, zt_db **out)
{
    if (!s || !plugin || !name || !out) return ZT_EINVAL;
    *out = NULL;
    /* The plugin part cannot hold '/', so "<plugin>/<name>" names one plugin only. */
    if (!valid_name(plugin) || !valid_name(name)) return ZT_EINVAL;
    if (s->batch) return ZT_ESTATE;

    char full[2 * STORE_NAME_MAX + 2];
    snprintf(full, sizeof full, "%s/%s", plugin, name);
    if ((*out = db_find(s->dbs, full))) return ZT_OK;

    /* Allocate first: once the dbi is committed nothing may fail. */
    zt_db *d = db_new(full);
    if (!d) return ZT_ENOMEM;
    MDB_txn *txn;
    bool logged = false;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc == 0) {
        /* with replication on, a database made (not one opened) is a change of its own */
        bool made = !s->repl;
        if (s->repl && (rc = mdb_dbi_open(txn, full, 0, &d->dbi)) == MDB_NOTFOUND) made = true;
        if (made) rc = mdb_dbi_open(txn, full, MDB_CREATE, &d->dbi);
        int zrc = ZT_OK;
        if (rc == 0 && made && s->repl) {
            assert(s->rlog.len == 0 && "no batch is open");
            zrc = rlog_op(s, 'C', full, NULL, NULL);
            if (zrc == ZT_OK) zrc = rlog_flush(s, txn, &logged);
            rlog_cut(s, 0);
        }
        if (rc == 0 && zrc == ZT_OK) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
            if (zrc != ZT_OK) {
                free(d->name);
                free(d);
                return zrc;
            }
        }
    }
    if (rc != 0) {
        free(d->name);
        free(d);
        return zt__store_errno(rc);
    }
    if (logged) repl_notify(s);
    d->next = s->dbs;
    s->dbs = d;
    *out = d;
    return ZT_OK;
}

/* ---- sealed databases (数据完整性 of business data) ------------------------------------- */

int zt__store_seal_key(zt_store *s, const unsigned char key[32])
{
    if (!s->seal_key && !(s->seal_key = sodium_malloc(32))) return ZT_ENOMEM;
    sodium_mprotect_readwrite(s->seal_key);
    memcpy(s->seal_key, key, 32);
    sodium_mprotect_readonly(s->seal_key);
    return ZT_OK;
}

/* The seal of value v under key k in database d (zt__seal_tag). */
static void seal_of(const zt_store *s, const zt_db *d, const void *k, size_t klen, const void *v,
                    size_t vlen, unsigned char out[DB_SEAL])
{
    zt__seal_tag(s->seal_key, d->name, k, klen, v, vlen, out);
}

/* A value read from database d: in a sealed one its seal is checked and cut off. ZT_EIO
 * when it does not hold (a value changed, added or copied outside the node): counted, and
 * logged once a minute per database, naming its key. */
static int unseal(zt_store *s, zt_db *d, const MDB_val *k, MDB_val *v)
{
    if (!d->sealed) return ZT_OK;
    unsigned char mac[DB_SEAL];
    if (v->mv_size >= DB_SEAL) {
        size_t n = v->mv_size - DB_SEAL;
        seal_of(s, d, k->mv_data, k->mv_size, v->mv_data, n, mac);
        if (sodium_memcmp(mac, (const unsigned char *)v->mv_data + n, DB_SEAL) == 0) {
            v->mv_size = n;
            return ZT_OK;
        }
    }
    s->seals_failed++;
    int64_t now = zt_now_ms();
    if (now - d->warned_at >= 60000 || !d->warned_at) {
        d->warned_at = now;
        char key[2 * 32 + 1] = "";
        const unsigned char *kb = k->mv_data;
        bool text = k->mv_size <= 64;
        for (size_t i = 0; text && i < k->mv_size; i++) text = kb[i] >= 0x21 && kb[i] < 0x7f;
        if (text)
            snprintf(key, sizeof key, "%.*s", (int)k->mv_size, (const char *)kb);
        else
            zt__hex(key, kb, k->mv_size < 32 ? k->mv_size : 32);
        zt__log(ZT_LOG_ERROR, NULL, NULL,
                "storage: the record %s%s of %s fails its seal: it was changed outside "
                "Zhengtong, and is not read (zt_store_seals_failed_total counts them)",
                text ? "" : "with key 0x", key, d->name);
    }
    return ZT_EIO;
}

/* The marker that database d is sealed, in _core/sealed: 1 there, 0 not, else a ZT_E*. */
static int sealed_marked(MDB_txn *txn, MDB_dbi marks, const zt_db *d)
{
    MDB_val k = {strlen(d->name), d->name}, v;
    int mrc = mdb_get(txn, marks, &k, &v);
    return mrc == 0 ? 1 : mrc == MDB_NOTFOUND ? 0 : zt__store_errno(mrc);
}

/* Seal every value d holds (a database first opened sealed, written before unsealed) and
 * mark it, in one transaction. */
static int seal_all(zt_store *s, MDB_txn *txn, zt_db *marks, zt_db *d, size_t *count)
{
    MDB_cursor *mc;
    int mrc = mdb_cursor_open(txn, d->dbi, &mc);
    MDB_val k, v;
    *count = 0;
    unsigned char kb[512];
    for (int g = mrc ? mrc : mdb_cursor_get(mc, &k, &v, MDB_FIRST); mrc == 0 && g == 0;
         g = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
        /* the key and the value point into a page the write may move: copied first, the
         * value written with mdb_put, the cursor set on the key again */
        unsigned char *b = k.mv_size <= sizeof kb ? malloc(v.mv_size + DB_SEAL) : NULL;
        if (!b) {
            mrc = ENOMEM;
            break;
        }
        memcpy(kb, k.mv_data, k.mv_size);
        memcpy(b, v.mv_data, v.mv_size);
        seal_of(s, d, kb, k.mv_size, b, v.mv_size, b + v.mv_size);
        MDB_val key = {k.mv_size, kb}, nv = {v.mv_size + DB_SEAL, b};
        if (s->repl && rlog_op(s, 'P', d->name, &key, &nv) != ZT_OK)
            mrc = ENOMEM; /* the transaction is dropped: nothing to cut off */
        else
            mrc = mdb_put(txn, d->dbi, &key, &nv, 0);
        free(b);
        if (!mrc) mrc = mdb_cursor_get(mc, &key, &v, MDB_SET);
        ++*count;
    }
    if (!mrc) mdb_cursor_close(mc);
    MDB_val mk = {strlen(d->name), d->name}, mv = {1, "1"};
    if (!mrc && s->repl && rlog_op(s, 'P', marks->name, &mk, &mv) != ZT_OK) mrc = ENOMEM;
    if (!mrc) mrc = mdb_put(txn, marks->dbi, &mk, &mv, 0);
    return zt__store_errno(mrc);
}

int zt__store_db_as(zt_store *s, const char *plugin, const char *name, bool sealed,
                    zt__seal_note note, void *arg, zt_db **out, char *err, size_t errlen)
{
    zt_db *d, *marks;
    *out = NULL;
    int rc = zt__store_db(s, plugin, name, &d);
    if (rc == ZT_OK) rc = zt__store_db(s, "_core", "sealed", &marks);
    if (rc != ZT_OK) {
        seterr(err, errlen, "cannot open database %s/%s: %s", plugin, name, zt_strerror(rc));
        return rc;
    }
    if (sealed && !s->seal_key) {
        seterr(err, errlen, "database %s: no key to seal it with", d->name);
        return ZT_ESTATE;
    }
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (mrc) return zt__store_errno(mrc);
    int marked = sealed_marked(txn, marks->dbi, d);
    mdb_txn_abort(txn);
    if (marked < 0) return marked;
    if (!sealed && (marked || d->sealed)) {
        seterr(err, errlen,
               "database %s is sealed (its records carry seals): open it sealed "
               "(zt_db_open_sealed; in Lua zt.db.open(name, { sealed = true }))",
               d->name);
        return ZT_ESTATE;
    }
    if (sealed && !marked) {
        /* sealed as it stands, marked, and (what it held) noted, in one transaction */
        zt_txn *t;
        size_t count = 0;
        if ((rc = zt__store_write_begin(s, &t)) != ZT_OK) return rc;
        rc = seal_all(s, t->txn, marks, d, &count);
        if (rc == ZT_OK && count && note) rc = note(arg, t, d->name, count);
        if ((rc = zt__store_write_done(s, t, rc)) != ZT_OK) {
            seterr(err, errlen, "cannot seal database %s: %s", d->name, zt_strerror(rc));
            return rc;
        }
        if (count)
            zt__log(ZT_LOG_INFO, NULL, NULL,
                    "storage: database %s is sealed from now on: its %zu record(s) were sealed "
                    "as they stood",
                    d->name, count);
    }
    if (sealed) d->sealed = true;
    *out = d;
    return ZT_OK;
}

/* ---- transactions ----------------------------------------------------------------- */

static int read_begin(zt_store *s, zt_txn **out)
{
    zt_txn *t = s->pool;
    if (t) {
        list_remove(&s->pool, t);
        s->npool--;
        int rc = mdb_txn_renew(t->txn);
        if (rc != 0) {
            mdb_txn_abort(t->txn);
            free(t);
            return zt__store_errno(rc);
        }
    } else {
        if (!(t = calloc(1, sizeof *t))) return ZT_ENOMEM;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
        if (rc == MDB_READERS_FULL) {
            /* Slots of crashed processes are only reclaimed when someone checks. */
            int dead = 0;
            if (mdb_reader_check(s->env, &dead) == 0 && dead > 0)
                rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
        }
        if (rc != 0) {
            free(t);
            return zt__store_errno(rc);
        }
        t->s = s;
        t->kind = TXN_READ;
    }
    t->active = true;
    t->failed = 0;
    list_push(&s->live, t);
    *out = t;
    return ZT_OK;
}

int zt__store_read_begin(zt_store *s, zt_txn **out)
{
    assert(s && out);
    *out = NULL;
    return read_begin(s, out);
}

/* A commit whose pages extend the data file makes its fdatasync also commit the
 * filesystem's journal (new blocks, new size). The audit log grows the file by about 350
 * bytes a write, so a batch of a few dozen writes extended it on nearly every commit, a
 * lone write rarely. Zeroes written ahead of LMDB's last page, in chunks, turn those
 * extensions into overwrites of blocks the filesystem already has (measured on ext4:
 * group-commit writes +18 %, single writes unchanged). Safe for LMDB: only ever past the
 * end of the file (nothing LMDB wrote is there, not even pages of a failed commit), and
 * only with the write lock held at the start of a batch (no writer, of this process or
 * another, is extending the file then); pages past the last one a meta page names are
 * free space to LMDB, whatever they hold. The cost: up to STORE_ROOM_CHUNK more on disk,
 * and the commit after a top-up also flushes its zeroes (once per ~16 MiB of data). */
static void room_ahead(zt_store *s)
{
    if (s->no_room) return;
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != 0) return;
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->psize;
    if (s->file_end >= used + STORE_ROOM_LOW) return;
    int fd;
    struct stat st;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0) return;
    uint64_t end = (uint64_t)st.st_size, want = used + STORE_ROOM_CHUNK;
    if (want > s->map_size) want = s->map_size;
    static const char zeros[64 * 1024];
    while (end < want) {
        size_t n = want - end < sizeof zeros ? (size_t)(want - end) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)end);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->no_room = true; /* LMDB reports a full disk itself, on the commit */
            zt__log(ZT_LOG_WARN, NULL, NULL,
                    "store: cannot write room ahead in %s/data.mdb (%s): commits that grow "
                    "the file will be slower",
                    s->dir, w < 0 ? strerror(errno) : "short write");
            break;
        }
        end += (uint64_t)w;
    }
    s->file_end = end;
}

/* Open the batch if none is; *began says whether this call did. */
static int batch_open(zt_store *s, bool *began)
{
    *began = false;
    if (s->batch) return ZT_OK;
    int rc = mdb_txn_begin(s->env, NULL, 0, &s->batch);
    if (rc != 0) {
        s->batch = NULL;
        return zt__store_errno(rc);
    }
    *began = true;
    room_ahead(s);
    return ZT_OK;
}

static zt_txn *child_set(zt_store *s, MDB_txn *txn, int kind, bool direct)
{
    zt_txn *t = &s->child;
    memset(t, 0, sizeof *t);
    t->txn = txn;
    t->s = s;
    t->kind = kind;
    t->active = true;
    t->direct = direct;
    t->rlog_mark = s->rlog.len;
    return t;
}

static int child_begin(zt_store *s, int kind, zt_txn **out)
{
    assert(!s->child.active && "one nested transaction at a time");
    if (s->child.active) return ZT_ESTATE;
    bool began;
    int rc = batch_open(s, &began);
    if (rc != ZT_OK) return rc;
    MDB_txn *child;
    rc = mdb_txn_begin(s->env, s->batch, 0, &child);
    if (rc != 0) {
        if (began) { /* nothing in it yet */
            mdb_txn_abort(s->batch);
            s->batch = NULL;
        }
        return zt__store_errno(rc);
    }
    if (kind == TXN_WRITE) s->nested++;
    *out = child_set(s, child, kind, false);
    return ZT_OK;
}

int zt__store_batch_write(zt_store *s, zt_txn **out)
{
    assert(s && out && !s->child.active && "one nested transaction at a time");
    *out = NULL;
    if (s->child.active) return ZT_ESTATE;
    bool began;
    int rc = batch_open(s, &began);
    if (rc != ZT_OK) return rc;
    *out = child_set(s, s->batch, TXN_WRITE, true);
    return ZT_OK;
}

int zt__store_write_begin(zt_store *s, zt_txn **out)
{
    assert(s && out);
    *out = NULL;
    return child_begin(s, TXN_WRITE, out);
}

int zt__store_batch_read_begin(zt_store *s, zt_txn **out)
{
    assert(s && out);
    *out = NULL;
    /* Without a batch there is nothing uncommitted to see: a pooled snapshot does the
     * same without taking the environment's write lock. */
    if (!s->batch) return read_begin(s, out);
    return child_begin(s, TXN_BATCH_READ, out);
}

int zt__store_end(zt_store *s, zt_txn *t, bool commit)
{
    assert(s && t && t->s == s && t->active);
    if (!t->active) return ZT_ESTATE;
    close_cursors(t);
    if (t->kind == TXN_READ) {
        t->active = false;
        list_remove(&s->live, t);
        if (s->npool < STORE_POOL_MAX) {
            mdb_txn_reset(t->txn);
            list_push(&s->pool, t);
            s->npool++;
        } else {
            mdb_txn_abort(t->txn);
            free(t);
        }
        return ZT_OK;
    }

    assert(t == &s->child && s->batch);
    int rc = ZT_OK;
    if (t->direct) {
        rc = commit ? t->failed : ZT_OK; /* a failure is the batch's: its owner aborts it */
    } else if (t->kind == TXN_WRITE && commit) {
        if (t->failed) {
            /* LMDB would refuse it and mark the whole batch failed. */
            mdb_txn_abort(t->txn);
            rc = t->failed;
        } else {
            int mrc = mdb_txn_commit(t->txn); /* frees the child even when it fails */
            rc = zt__store_errno(mrc);
        }
        if (rc != ZT_OK) rlog_cut(s, t->rlog_mark);
    } else {
        mdb_txn_abort(t->txn);
        rlog_cut(s, t->rlog_mark);
    }
    t->txn = NULL;
    t->active = false;
    return rc;
}

int zt__store_write_done(zt_store *s, zt_txn *t, int rc)
{
    int erc = zt__store_end(s, t, rc == ZT_OK);
    if (rc == ZT_OK) rc = erc;
    int crc = zt__store_batch_commit(s); /* what t did not keep is not in the batch */
    return rc == ZT_OK ? crc : rc;
}

int zt__store_savepoint(zt_txn *t, zt__savepoint *sp)
{
    sp->parent = NULL;
    if (!t || !t->active || t->kind != TXN_WRITE) return ZT_OK; /* nothing to undo */
    if (t->failed) return t->failed; /* LMDB would refuse it: the work fails */
    MDB_txn *child;
    int mrc = mdb_txn_begin(t->s->env, t->txn, 0, &child);
    if (mrc) return zt__store_errno(mrc);
    sp->parent = t->txn;
    sp->writes = t->writes;
    sp->failed = t->failed;
    sp->rlog_mark = t->s->rlog.len;
    t->txn = child;
    t->level++;
    return ZT_OK;
}

int zt__store_savepoint_end(zt_txn *t, zt__savepoint *sp, bool keep)
{
    if (!sp->parent) return ZT_OK;
    assert(t && t->active && t->level > 0);
    for (zt_cursor *c = t->cursors, *next; c; c = next) {
        next = c->next;
        if (c->level >= t->level) zt_cursor_close(c); /* LMDB ends them with the savepoint */
    }
    int rc = ZT_OK;
    if (keep && !t->failed) {
        /* a failed nested commit may leave part of it merged: the transaction fails */
        int mrc = mdb_txn_commit(t->txn);
        if (mrc) rc = t->failed = zt__store_errno(mrc);
    } else {
        mdb_txn_abort(t->txn); /* a write that failed in it fails no more than it */
        rlog_cut(t->s, sp->rlog_mark);
        rc = keep ? t->failed : ZT_OK;
        t->writes = sp->writes;
        t->failed = sp->failed;
    }
    t->txn = sp->parent;
    t->level--;
    sp->parent = NULL;
    return rc;
}

bool zt__store_in_batch(const zt_txn *t)
{
    return t && (t->kind == TXN_WRITE || t->kind == TXN_BATCH_READ);
}

bool zt__store_batch_open(const zt_store *s)
{
    return s && s->batch != NULL;
}

int zt__store_batch_commit(zt_store *s)
{
    assert(s);
    if (!s->batch) return ZT_OK;
    assert(!s->child.active && "commit with a nested transaction open");
    if (s->child.active) return ZT_ESTATE;
    bool logged = false;
    if (s->repl && s->rlog.len) {
        int lrc = rlog_flush(s, s->batch, &logged);
        rlog_cut(s, 0);
        if (lrc != ZT_OK) { /* a batch without its change set would be lost to the standby */
            zt__log(ZT_LOG_ERROR, NULL, NULL,
                    "replication: cannot log the batch's change set: %s; the batch is dropped",
                    zt_strerror(lrc));
            mdb_txn_abort(s->batch);
            s->batch = NULL;
            s->commit_errors++;
            return lrc;
        }
    }
    uint64_t t0 = mono_us();
    int rc = mdb_txn_commit(s->batch); /* frees the batch even when it fails */
    s->batch = NULL;
    s->last_commit_us = mono_us() - t0;
    if (rc != 0) {
        s->commit_errors++;
        return zt__store_errno(rc);
    }
    s->commits++;
    if (logged) repl_notify(s);
    return ZT_OK;
}

void zt__store_batch_abort(zt_store *s)
{
    assert(s && !s->child.active);
    if (!s->batch || s->child.active) return;
    mdb_txn_abort(s->batch);
    s->batch = NULL;
    rlog_cut(s, 0);
    s->commit_errors++;
}

void zt__store_stats(zt_store *s, zt_store_stats *st)
{
    assert(s && st);
    memset(st, 0, sizeof *st);
    st->commits = s->commits;
    st->commit_errors = s->commit_errors;
    st->nested = s->nested;
    st->last_commit_us = s->last_commit_us;
    st->seals_failed = s->seals_failed;
    MDB_envinfo info;
    MDB_stat ms;
    if (mdb_env_info(s->env, &info) == 0 && mdb_env_stat(s->env, &ms) == 0) {
        st->map_size = info.me_mapsize;
        st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    }
    /* a map far larger than the disk fails its writes on the disk, not on the map */
    struct statvfs fs;
    if (statvfs(s->dir, &fs) == 0) {
        st->fs_free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
        st->fs_size_bytes = (uint64_t)fs.f_blocks * fs.f_frsize;
    }
}

uint64_t zt__store_txn_writes(const zt_txn *t)
{
    return t ? t->writes : 0;
}

int zt_txn_writable(const zt_txn *txn)
{
    return txn && txn->active && txn->kind == TXN_WRITE;
}

/* ---- reads and writes ------------------------------------------------------------- */

static int check_key(const zt_txn *t, const void *key, size_t klen)
{
    if (!key || klen == 0) return ZT_EINVAL;
    if (klen > t->s->maxkey) return ZT_ETOOBIG;
    return ZT_OK;
}

/* Map an LMDB failure, remembering in a writable transaction that it may be unusable. */
static int txn_fail(zt_txn *t, int mrc)
{
    int rc = zt__store_errno(mrc);
    if (mrc != MDB_NOTFOUND && t->kind != TXN_READ && !t->failed) t->failed = rc;
    return rc;
}

int zt_get(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void **val, size_t *vlen)
{
    if (!txn || !db || !txn->active) return ZT_EINVAL;
    int rc = check_key(txn, key, klen);
    if (rc) return rc;
    MDB_val k = {klen, (void *)key}, v;
    int mrc = mdb_get(txn->txn, db->dbi, &k, &v);
    if (mrc) return txn_fail(txn, mrc);
    if ((rc = unseal(txn->s, db, &k, &v)) != ZT_OK) return rc;
    if (val) *val = v.mv_data;
    if (vlen) *vlen = v.mv_size;
    return ZT_OK;
}

static int put_flags(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void *val,
                     size_t vlen, unsigned flags)
{
    if (!txn || !db || !txn->active) return ZT_EINVAL;
    if (txn->kind != TXN_WRITE) return ZT_EREADONLY;
    int rc = check_key(txn, key, klen);
    if (rc) return rc;
    if (!val && vlen) return ZT_EINVAL;
    if (vlen > UINT32_MAX - DB_SEAL) return ZT_ETOOBIG; /* LMDB keeps a size in 32 bits */
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)(val ? val : "")};
    /* a sealed database's value is stored with its seal after it: built apart, as val may
     * point into the store (a value read in this transaction), which a reserve could move */
    unsigned char small[1024], *sealed = NULL;
    if (db->sealed) {
        sealed = vlen + DB_SEAL <= sizeof small ? small : malloc(vlen + DB_SEAL);
        if (!sealed) return ZT_ENOMEM;
        if (vlen) memcpy(sealed, val, vlen);
        seal_of(txn->s, db, key, klen, v.mv_data, vlen, sealed + vlen);
        v = (MDB_val){vlen + DB_SEAL, sealed};
    }
    zt_store *s = txn->s;
    size_t mark = s->rlog.len;
    int mrc = s->repl && rlog_op(s, 'P', db->name, &k, &v) != ZT_OK
                  ? ENOMEM
                  : mdb_put(txn->txn, db->dbi, &k, &v, flags);
    if (sealed && sealed != small) free(sealed);
    if (mrc) {
        rlog_cut(s, mark);
        return txn_fail(txn, mrc);
    }
    txn->writes++;
    return ZT_OK;
}

int zt_put(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void *val, size_t vlen)
{
    return put_flags(txn, db, key, klen, val, vlen, 0);
}

int zt__store_append(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    return put_flags(txn, db, key, klen, val, vlen, MDB_APPEND);
}

int zt_del(zt_txn *txn, zt_db *db, const void *key, size_t klen)
{
    if (!txn || !db || !txn->active) return ZT_EINVAL;
    if (txn->kind != TXN_WRITE) return ZT_EREADONLY;
    int rc = check_key(txn, key, klen);
    if (rc) return rc;
    MDB_val k = {klen, (void *)key};
    zt_store *s = txn->s;
    size_t mark = s->rlog.len;
    int mrc = s->repl && rlog_op(s, 'D', db->name, &k, NULL) != ZT_OK
                  ? ENOMEM
                  : mdb_del(txn->txn, db->dbi, &k, NULL);
    if (mrc) {
        rlog_cut(s, mark);
        return txn_fail(txn, mrc);
    }
    txn->writes++;
    return ZT_OK;
}

/* ---- cursors ---------------------------------------------------------------------- */

int zt_cursor_open(zt_txn *txn, zt_db *db, zt_cursor **out)
{
    if (!out) return ZT_EINVAL;
    *out = NULL;
    if (!txn || !db || !txn->active) return ZT_EINVAL;
    if (txn->ncursors >= TXN_CURSORS_MAX) return ZT_EBUSY;
    zt_cursor *c = calloc(1, sizeof *c);
    if (!c) return ZT_ENOMEM;
    int mrc = mdb_cursor_open(txn->txn, db->dbi, &c->mc);
    if (mrc) {
        free(c);
        return zt__store_errno(mrc);
    }
    c->txn = txn;
    c->db = db;
    c->level = txn->level;
    c->next = txn->cursors;
    if (txn->cursors) txn->cursors->prev = c;
    txn->cursors = c;
    txn->ncursors++;
    *out = c;
    return ZT_OK;
}

/* Positions follow LMDB: a move that finds nothing leaves the cursor where it was (past
 * the end for ZT_GE), and after mdb_cursor_del LMDB leaves it on the next key with a flag
 * that makes MDB_NEXT read that key rather than skip it, and MDB_PREV read the one before
 * the deleted key. */
int zt_cursor_seek(zt_cursor *c, int op, const void *key, size_t klen, zt_kv *out)
{
    if (!c) return ZT_EINVAL;
    zt_txn *t = c->txn;
    assert(t && t->active);
    MDB_val k = {0, NULL}, v = {0, NULL};
    MDB_cursor_op mop;
    switch (op) {
    case ZT_FIRST:
        mop = MDB_FIRST;
        break;
    case ZT_LAST:
        mop = MDB_LAST;
        break;
    case ZT_GE: {
        int rc = check_key(t, key, klen);
        if (rc) return rc;
        k.mv_size = klen;
        k.mv_data = (void *)key;
        mop = MDB_SET_RANGE;
        break;
    }
    case ZT_NEXT:
        mop = MDB_NEXT;
        break;
    case ZT_PREV:
        mop = MDB_PREV;
        break;
    case ZT_CURRENT:
        /* After a delete LMDB would answer with the next key: there is no current one. */
        if (c->deleted) return ZT_ENOTFOUND;
        mop = MDB_GET_CURRENT;
        break;
    default:
        return ZT_EINVAL;
    }
    int mrc = mdb_cursor_get(c->mc, &k, &v, mop);
    if (op != ZT_CURRENT) c->deleted = false;
    if (mrc == EINVAL && op == ZT_CURRENT) return ZT_ENOTFOUND; /* never positioned */
    if (mrc) return txn_fail(t, mrc);
    int rc = unseal(t->s, c->db, &k, &v); /* the cursor stays on it: ZT_NEXT goes past */
    if (rc != ZT_OK) return rc;
    if (out) {
        out->key = k.mv_data;
        out->klen = k.mv_size;
        out->val = v.mv_data;
        out->vlen = v.mv_size;
    }
    return ZT_OK;
}

int zt_cursor_del(zt_cursor *c)
{
    if (!c) return ZT_EINVAL;
    zt_txn *t = c->txn;
    assert(t && t->active);
    if (t->kind != TXN_WRITE) return ZT_EREADONLY;
    if (c->deleted) return ZT_ENOTFOUND;
    zt_store *s = t->s;
    size_t mark = s->rlog.len;
    int mrc = 0;
    if (s->repl) { /* the key it deletes, taken while it is there */
        MDB_val k, v;
        mrc = mdb_cursor_get(c->mc, &k, &v, MDB_GET_CURRENT);
        if (!mrc && rlog_op(s, 'D', c->db->name, &k, NULL) != ZT_OK) mrc = ENOMEM;
    }
    if (!mrc) mrc = mdb_cursor_del(c->mc, 0);
    if (mrc) rlog_cut(s, mark);
    if (mrc == EINVAL) return ZT_ENOTFOUND; /* never positioned */
    if (mrc) return txn_fail(t, mrc);
    c->deleted = true;
    t->writes++;
    return ZT_OK;
}

void zt_cursor_close(zt_cursor *c)
{
    if (!c) return;
    zt_txn *t = c->txn;
    mdb_cursor_close(c->mc);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->cursors = c->next;
    if (c->next) c->next->prev = c->prev;
    assert(t->ncursors > 0);
    t->ncursors--;
    free(c);
}

/* ---- replication: the change log ---------------------------------------------------- */

/* With replication on, every change a batch makes is captured as it is made, into
 * s->rlog, as ops:
 *   type (1: 'P' put, 'D' delete, 'C' create a database) | name length (1) | name |
 *   for 'P' and 'D': key length (2, big-endian) | key |
 *   for 'P': value length (4, big-endian) | value
 * with the value as stored (a sealed database's with its seal: the standby holds the same
 * master key, so the seals hold there too). Each op is taken before LMDB writes (the key
 * and the value may point into a page the write changes) and cut off again when the write
 * fails. A nested transaction or a savepoint that is dropped cuts off what it added: that
 * is the end of the buffer, as there is one nested transaction at a time and savepoints
 * nest. At the commit the ops become the batch's change set,
 *   version (1) | commit time (8, ms, big-endian) | ops,
 * written into _core/replog under the batch's number in the batch's own transaction: a
 * committed batch has its change set, and there is no change set without its batch. The
 * numbers and the log's bounds are in _core/repl "log", read and written in that same
 * transaction, so the processes sharing the environment (the CLI's commands) number their
 * batches in one sequence. */

#define REPL_EPOCH     16
#define REPL_META      (REPL_EPOCH + 24) /* epoch | head | first | bytes (8 bytes each, BE) */
#define REPL_SET_HEAD  9                 /* version | commit time */
#define REPL_PRUNE_MAX 1024              /* change sets one commit deletes at most */

static int meta_read(MDB_txn *txn, zt_store *s, zt_repl_state *st)
{
    memset(st, 0, sizeof *st);
    MDB_val k = {3, "log"}, v;
    int mrc = mdb_get(txn, s->repl_meta->dbi, &k, &v);
    if (mrc == 0) {
        if (v.mv_size != REPL_META) return ZT_EIO;
        const unsigned char *p = v.mv_data;
        st->on = true;
        memcpy(st->epoch, p, REPL_EPOCH);
        st->head = zt__be64_get(p + 16);
        st->first = zt__be64_get(p + 24);
        st->bytes = zt__be64_get(p + 32);
    } else if (mrc != MDB_NOTFOUND) {
        return zt__store_errno(mrc);
    }
    k = (MDB_val){7, "standby"};
    if ((mrc = mdb_get(txn, s->repl_meta->dbi, &k, &v)) == 0)
        snprintf(st->standby, sizeof st->standby, "%.*s", (int)v.mv_size, (const char *)v.mv_data);
    else if (mrc != MDB_NOTFOUND)
        return zt__store_errno(mrc);
    return ZT_OK;
}

static int meta_write(MDB_txn *txn, zt_store *s, const zt_repl_state *st)
{
    unsigned char b[REPL_META];
    memcpy(b, st->epoch, REPL_EPOCH);
    zt__be64_put(b + 16, st->head);
    zt__be64_put(b + 24, st->first);
    zt__be64_put(b + 32, st->bytes);
    MDB_val k = {3, "log"}, v = {sizeof b, b};
    return zt__store_errno(mdb_put(txn, s->repl_meta->dbi, &k, &v, 0));
}

/* Append one op to the batch's change set (v: NULL for 'D' and 'C'; k: NULL for 'C'). */
static int rlog_op(zt_store *s, char type, const char *name, const MDB_val *k, const MDB_val *v)
{
    size_t nl = strlen(name);
    size_t need = 2 + nl + (k ? 2 + k->mv_size : 0) + (v ? 4 + v->mv_size : 0);
    assert(nl <= 255 && (!k || k->mv_size <= 0xffff));
    if (zt__buf_reserve(&s->rlog, need) != ZT_OK) return ZT_ENOMEM;
    unsigned char *p = (unsigned char *)s->rlog.data + s->rlog.len;
    *p++ = (unsigned char)type;
    *p++ = (unsigned char)nl;
    memcpy(p, name, nl);
    p += nl;
    if (k) {
        *p++ = (unsigned char)(k->mv_size >> 8);
        *p++ = (unsigned char)k->mv_size;
        memcpy(p, k->mv_data, k->mv_size);
        p += k->mv_size;
    }
    if (v) {
        for (int i = 3; i >= 0; i--) *p++ = (unsigned char)(v->mv_size >> (8 * i));
        if (v->mv_size) memcpy(p, v->mv_data, v->mv_size);
    }
    s->rlog.len += need;
    return ZT_OK;
}

/* Undo the ops after mark (wiped: they carry the county's data). */
static void rlog_cut(zt_store *s, size_t mark)
{
    if (s->rlog.len <= mark) return;
    memset(s->rlog.data + mark, 0, s->rlog.len - mark);
    s->rlog.len = mark;
}

/* Delete the change sets the standby confirmed, and the oldest ones while the log holds
 * more than replication.keep bytes (never the newest: the log always says where it is). */
static int rlog_prune(zt_store *s, MDB_txn *txn, zt_repl_state *st)
{
    uint64_t acked = atomic_load(&s->repl_acked);
    if (st->first > acked && st->bytes <= s->repl_keep) return ZT_OK;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, s->repl_log->dbi, &c);
    if (mrc) return zt__store_errno(mrc);
    uint64_t lost_from = 0, lost_to = 0;
    for (int n = 0; n < REPL_PRUNE_MAX; n++) {
        MDB_val k, v;
        if ((mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) != 0) break;
        uint64_t seq = k.mv_size == 8 ? zt__be64_get(k.mv_data) : 0;
        bool confirmed = seq <= acked;
        if (!confirmed && (st->bytes <= s->repl_keep || seq >= st->head)) break;
        if ((mrc = mdb_cursor_del(c, 0)) != 0) break;
        st->bytes -= v.mv_size < st->bytes ? v.mv_size : st->bytes;
        st->first = seq + 1;
        if (!confirmed) {
            if (!lost_from) lost_from = seq;
            lost_to = seq;
        }
    }
    mdb_cursor_close(c);
    if (mrc && mrc != MDB_NOTFOUND) return zt__store_errno(mrc);
    int64_t now = zt_now_ms();
    if (lost_from && (now - s->repl_warned_at >= 60000 || !s->repl_warned_at)) {
        s->repl_warned_at = now;
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "replication: the change log is over replication.keep (%llu bytes): batches "
                "%llu..%llu were dropped before a standby confirmed them; a standby that has not "
                "applied them must be re-seeded from a new backup",
                (unsigned long long)s->repl_keep, (unsigned long long)lost_from,
                (unsigned long long)lost_to);
    }
    return ZT_OK;
}

/* Write the captured ops as the next change set, in txn, and empty the buffer. */
static int rlog_flush(zt_store *s, MDB_txn *txn, bool *logged)
{
    zt_repl_state st;
    *logged = false;
    int rc = meta_read(txn, s, &st);
    if (rc == ZT_OK && !st.on) {
        /* the serving node turned replication off while this process ran (the CLI) */
        s->repl = false;
        rlog_cut(s, 0);
        return ZT_OK;
    }
    if (rc != ZT_OK) return rc;
    uint64_t seq = st.head + 1;
    unsigned char key[8];
    zt__be64_put(key, seq);
    MDB_val k = {8, key}, v = {REPL_SET_HEAD + s->rlog.len, NULL};
    int mrc = mdb_put(txn, s->repl_log->dbi, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (mrc) return zt__store_errno(mrc);
    unsigned char *p = v.mv_data;
    p[0] = 1;
    zt__be64_put(p + 1, (uint64_t)zt_now_ms());
    memcpy(p + REPL_SET_HEAD, s->rlog.data, s->rlog.len);
    rlog_cut(s, 0);
    st.head = seq;
    st.bytes += v.mv_size;
    if ((rc = rlog_prune(s, txn, &st)) != ZT_OK) return rc;
    if ((rc = meta_write(txn, s, &st)) != ZT_OK) return rc;
    *logged = true;
    return ZT_OK;
}

static void repl_notify(zt_store *s)
{
    if (s->repl_notify) s->repl_notify(s->repl_notify_arg);
}

int zt__store_repl_open(zt_store *s, uint64_t keep)
{
    int rc = zt__store_db(s, "_core", "replog", &s->repl_log);
    if (rc == ZT_OK) rc = zt__store_db(s, "_core", "repl", &s->repl_meta);
    zt_repl_state st;
    if (rc == ZT_OK) rc = zt__store_repl_state(s, &st);
    if (rc != ZT_OK) return rc;
    s->repl_keep = keep;
    s->repl = st.on && !st.standby[0]; /* a standby changes through its primary only */
    return ZT_OK;
}

int zt__store_repl_state(zt_store *s, zt_repl_state *st)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (mrc) return zt__store_errno(mrc);
    int rc = meta_read(txn, s, st);
    mdb_txn_abort(txn);
    return rc;
}

/* A write transaction of its own, outside any batch: for the changes of the log itself. */
static int repl_txn(zt_store *s, MDB_txn **txn, zt_repl_state *st)
{
    assert(s->repl_meta && "zt__store_repl_open first");
    if (s->batch) return ZT_ESTATE;
    int mrc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (mrc) return zt__store_errno(mrc);
    int rc = meta_read(*txn, s, st);
    if (rc != ZT_OK) mdb_txn_abort(*txn);
    return rc;
}

int zt__store_repl_config(zt_store *s, bool on, zt_repl_state *st, int *what)
{
    MDB_txn *txn;
    *what = 0;
    int rc = repl_txn(s, &txn, st);
    if (rc != ZT_OK) return rc;
    int mrc = 0;
    if (st->standby[0]) {
        MDB_val k = {7, "standby"};
        mrc = mdb_del(txn, s->repl_meta->dbi, &k, NULL);
        *what |= ZT_REPL_PROMOTED;
    }
    if (on && !st->on) {
        randombytes_buf(st->epoch, REPL_EPOCH);
        st->on = true;
        st->head = 0;
        st->first = 1;
        st->bytes = 0;
        if (!mrc && (rc = meta_write(txn, s, st)) != ZT_OK) mrc = -1;
        *what |= ZT_REPL_STARTED;
    } else if (!on && st->on) {
        MDB_val k = {3, "log"};
        if (!mrc) mrc = mdb_drop(txn, s->repl_log->dbi, 0);
        if (!mrc) mrc = mdb_del(txn, s->repl_meta->dbi, &k, NULL);
        st->on = false;
        *what |= ZT_REPL_STOPPED;
    }
    if (mrc) {
        mdb_txn_abort(txn);
        return mrc == -1 ? rc : zt__store_errno(mrc);
    }
    if ((mrc = mdb_txn_commit(txn)) != 0) return zt__store_errno(mrc);
    s->repl = on;
    return ZT_OK;
}

int zt__store_repl_standby(zt_store *s, const char *primary, zt_repl_state *st)
{
    MDB_txn *txn;
    int rc = repl_txn(s, &txn, st);
    if (rc != ZT_OK) return rc;
    if (!st->on) {
        mdb_txn_abort(txn);
        return ZT_ENOTFOUND;
    }
    /* the primary's change sets that came with the backup are the primary's business */
    MDB_val k = {7, "standby"}, v = {strlen(primary), (void *)primary};
    int mrc = mdb_drop(txn, s->repl_log->dbi, 0);
    if (!mrc) mrc = mdb_put(txn, s->repl_meta->dbi, &k, &v, 0);
    st->first = st->head + 1;
    st->bytes = 0;
    rc = mrc ? zt__store_errno(mrc) : meta_write(txn, s, st);
    if (rc != ZT_OK) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((mrc = mdb_txn_commit(txn)) != 0) return zt__store_errno(mrc);
    snprintf(st->standby, sizeof st->standby, "%s", primary);
    s->repl = false;
    return ZT_OK;
}

void zt__store_repl_ack(zt_store *s, uint64_t seq)
{
    uint64_t cur = atomic_load(&s->repl_acked);
    while (seq > cur && !atomic_compare_exchange_weak(&s->repl_acked, &cur, seq)) {
    }
}

uint64_t zt__store_repl_acked(zt_store *s)
{
    return atomic_load(&s->repl_acked);
}

void zt__store_repl_notify(zt_store *s, void (*fn)(void *arg), void *arg)
{
    s->repl_notify = fn;
    s->repl_notify_arg = arg;
}

bool zt__store_repl_on(const zt_store *s)
{
    return s->repl;
}

/* The commit time of change set seq in txn; 0 if it is not there. */
static uint64_t set_time(zt_store *s, MDB_txn *txn, uint64_t seq)
{
    unsigned char key[8];
    zt__be64_put(key, seq);
    MDB_val k = {8, key}, v;
    if (mdb_get(txn, s->repl_log->dbi, &k, &v) != 0 || v.mv_size < REPL_SET_HEAD) return 0;
    return zt__be64_get((const unsigned char *)v.mv_data + 1);
}

int zt__store_repl_read(zt_store *s, uint64_t after, size_t max, zt_buf *out, zt_repl_state *st,
                        uint64_t *head_time)
{
    MDB_txn *txn;
    *head_time = 0;
    int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (mrc) return zt__store_errno(mrc);
    int rc = meta_read(txn, s, st);
    size_t start = out->len; /* what the caller put before (its header) */
    if (rc == ZT_OK && st->on && st->head) *head_time = set_time(s, txn, st->head);
    if (rc == ZT_OK && st->on && after + 1 >= st->first && after < st->head) {
        MDB_cursor *c;
        unsigned char key[8];
        zt__be64_put(key, after + 1);
        MDB_val k = {8, key}, v;
        if ((mrc = mdb_cursor_open(txn, s->repl_log->dbi, &c)) == 0) {
            for (int op = MDB_SET_RANGE; rc == ZT_OK; op = MDB_NEXT) {
                if ((mrc = mdb_cursor_get(c, &k, &v, op)) != 0) break;
                /* one at least, however large: else a change set larger than max alone
                 * (a 5 MB upload in one batch) would never be sent, and the standby would
                 * ask for it forever */
                if (out->len > start && out->len - start + 12 + v.mv_size > max) break;
                if (v.mv_size > UINT32_MAX || zt__buf_reserve(out, 12 + v.mv_size) != ZT_OK) {
                    rc = ZT_ENOMEM;
                    break;
                }
                unsigned char *p = (unsigned char *)out->data + out->len;
                memcpy(p, k.mv_data, 8);
                for (int i = 3; i >= 0; i--) p[8 + 3 - i] = (unsigned char)(v.mv_size >> (8 * i));
                memcpy(p + 12, v.mv_data, v.mv_size);
                out->len += 12 + v.mv_size;
            }
            mdb_cursor_close(c);
        }
        if (rc == ZT_OK && mrc && mrc != MDB_NOTFOUND) rc = zt__store_errno(mrc);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* The database named name[0..n) for the standby's apply: one already open, else opened
 * (made if new) in txn and kept in *fresh until txn commits (LMDB closes it on an abort). */
static int apply_db(zt_store *s, MDB_txn *txn, const char *name, size_t n, zt_db **fresh,
                    MDB_dbi *dbi)
{
    char full[2 * STORE_NAME_MAX + 2];
    if (n == 0 || n >= sizeof full) return ZT_EINVAL;
    memcpy(full, name, n);
    full[n] = '\0';
    const char *slash = strchr(full, '/');
    if (!slash || strlen(full) != n) return ZT_EINVAL;
    if (strcmp(full, s->repl_log->name) == 0 || strcmp(full, s->repl_meta->name) == 0)
        return ZT_EINVAL; /* the log's own: never in a change set */
    zt_db *d = db_find(s->dbs, full);
    if (!d) d = db_find(*fresh, full);
    if (d) {
        *dbi = d->dbi;
        return ZT_OK;
    }
    if (!(d = db_new(full))) return ZT_ENOMEM;
    int mrc = mdb_dbi_open(txn, full, MDB_CREATE, &d->dbi);
    if (mrc) {
        free(d->name);
        free(d);
        return zt__store_errno(mrc);
    }
    d->next = *fresh;
    *fresh = d;
    *dbi = d->dbi;
    return ZT_OK;
}

/* Apply one change set (its version byte on) in txn. */
static int apply_set(zt_store *s, MDB_txn *txn, const unsigned char *p, size_t n, zt_db **fresh,
                     char *why, size_t whylen)
{
    if (n < REPL_SET_HEAD || p[0] != 1) {
        seterr(why, whylen, "it is not a change set of version 1");
        return ZT_EINVAL;
    }
    size_t i = REPL_SET_HEAD;
    while (i < n) {
        unsigned char type = p[i];
        if (n - i < 2 || (type != 'P' && type != 'D' && type != 'C')) goto bad;
        size_t nl = p[i + 1];
        i += 2;
        if (n - i < nl) goto bad;
        const char *name = (const char *)p + i;
        i += nl;
        MDB_dbi dbi = 0;
        int rc = apply_db(s, txn, name, nl, fresh, &dbi);
        if (rc != ZT_OK) {
            seterr(why, whylen, "database %.*s: %s", (int)nl, name, zt_strerror(rc));
            return rc;
        }
        if (type == 'C') continue;
        if (n - i < 2) goto bad;
        MDB_val k = {(size_t)p[i] << 8 | p[i + 1], NULL};
        i += 2;
        if (n - i < k.mv_size || k.mv_size == 0) goto bad;
        k.mv_data = (void *)(p + i);
        i += k.mv_size;
        int mrc;
        if (type == 'P') {
            if (n - i < 4) goto bad;
            MDB_val v = {(size_t)p[i] << 24 | (size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 |
                             p[i + 3],
                         NULL};
            i += 4;
            if (n - i < v.mv_size) goto bad;
            v.mv_data = (void *)(p + i);
            i += v.mv_size;
            mrc = mdb_put(txn, dbi, &k, &v, 0);
        } else {
            mrc = mdb_del(txn, dbi, &k, NULL);
        }
        if (mrc) {
            seterr(why, whylen, "%s in %.*s: %s",
                   mrc == MDB_NOTFOUND ? "a record to delete is not there (the data differs from "
                                         "the primary's)"
                   : type == 'P'       ? "a put failed"
                                       : "a delete failed",
                   (int)nl, name, mdb_strerror(mrc));
            return mrc == MDB_NOTFOUND ? ZT_ESTATE : zt__store_errno(mrc);
        }
    }
    return ZT_OK;
bad:
    seterr(why, whylen, "it is cut short or malformed at byte %zu", i);
    return ZT_EINVAL;
}

int zt__store_repl_apply(zt_store *s, const unsigned char epoch[16], const void *sets, size_t len,
                         zt_repl_state *st, uint64_t *last_time, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = repl_txn(s, &txn, st);
    if (rc != ZT_OK) {
        seterr(err, errlen, "cannot begin a write: %s", zt_strerror(rc));
        return rc;
    }
    if (!st->on || sodium_memcmp(st->epoch, epoch, REPL_EPOCH) != 0) {
        mdb_txn_abort(txn);
        seterr(err, errlen, "the change sets are of another change log than the data's");
        return ZT_ESTATE;
    }
    zt_db *fresh = NULL;
    const unsigned char *p = sets;
    size_t off = 0;
    char why[256] = "";
    while (rc == ZT_OK && off < len) {
        if (len - off < 12) {
            seterr(err, errlen, "the change sets are cut short");
            rc = ZT_EINVAL;
            break;
        }
        uint64_t seq = zt__be64_get(p + off);
        size_t n = (size_t)p[off + 8] << 24 | (size_t)p[off + 9] << 16 | (size_t)p[off + 10] << 8 |
                   p[off + 11];
        off += 12;
        if (len - off < n) {
            seterr(err, errlen, "change set %llu is cut short", (unsigned long long)seq);
            rc = ZT_EINVAL;
        } else if (seq != st->head + 1) {
            seterr(err, errlen, "change set %llu does not follow batch %llu, the last applied",
                   (unsigned long long)seq, (unsigned long long)st->head);
            rc = ZT_ESTATE;
        } else if ((rc = apply_set(s, txn, p + off, n, &fresh, why, sizeof why)) != ZT_OK) {
            seterr(err, errlen, "change set %llu: %s", (unsigned long long)seq, why);
        } else {
            st->head = seq;
            if (last_time) *last_time = zt__be64_get(p + off + 1);
        }
        off += n;
    }
    st->first = st->head + 1;
    st->bytes = 0;
    if (rc == ZT_OK && (rc = meta_write(txn, s, st)) != ZT_OK)
        seterr(err, errlen, "cannot note the batch applied: %s", zt_strerror(rc));
    int mrc = rc == ZT_OK ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), 0);
    if (rc == ZT_OK && mrc) {
        rc = zt__store_errno(mrc);
        seterr(err, errlen, "cannot commit: %s", mdb_strerror(mrc));
    }
    while (fresh) { /* open for good only once committed */
        zt_db *d = fresh;
        fresh = d->next;
        if (rc == ZT_OK) {
            d->next = s->dbs;
            s->dbs = d;
        } else {
            free(d->name);
            free(d);
        }
    }
    return rc;
}

/* ---- backup ----------------------------------------------------------------------- */

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* dest must be new (its parent existing) or an empty folder; *created: we made it. */
static int backup_dest(const char *dest, bool *created, char *err, size_t errlen)
{
    *created = false;
    struct stat st;
    if (stat(dest, &st) != 0) {
        if (errno != ENOENT) {
            seterr(err, errlen, "backup destination %s: %s", dest, strerror(errno));
            return ZT_EIO;
        }
        /* Only the folder itself: on failure nothing we made is left behind. */
        if (mkdir(dest, 0700) != 0) {
            int e = errno;
            seterr(err, errlen, "backup destination %s: cannot create it: %s", dest, strerror(e));
            return e == EACCES || e == EPERM ? ZT_EPERM : ZT_EIO;
        }
        *created = true;
        return ZT_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        seterr(err, errlen, "backup destination %s exists and is not a folder", dest);
        return ZT_EEXIST;
    }
    DIR *d = opendir(dest);
    if (!d) {
        seterr(err, errlen, "backup destination %s: %s", dest, strerror(errno));
        return errno == EACCES ? ZT_EPERM : ZT_EIO;
    }
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    if (!empty) {
        seterr(err, errlen, "backup destination %s is not empty", dest);
        return ZT_EEXIST;
    }
    return ZT_OK;
}

/* A backup inside the data folder would be lost with it (and copied into the next one):
 * refuse dest when its parent folder is dir or below it. */
static int backup_outside(const char *dir, const char *dest, char *err, size_t errlen)
{
    char parent[4096], *rd = realpath(dir, NULL);
    snprintf(parent, sizeof parent, "%s", dest);
    char *rp = realpath(dirname(parent), NULL); /* dest itself does not exist yet */
    int rc = ZT_OK;
    if (rd && rp) {
        size_t dl = strlen(rd);
        if (strncmp(rp, rd, dl) == 0 && (rp[dl] == 0 || rp[dl] == '/' || dl == 1)) {
            seterr(err, errlen,
                   "backup destination %s is inside data_dir %s: put backups on another disk, "
                   "or at least outside the data folder",
                   dest, dir);
            rc = ZT_EINVAL;
        }
    }
    free(rd);
    free(rp);
    return rc;
}

/* Opens its own read-only handle: never call it in a process that has `dir` open, since
 * closing a second handle drops that process's POSIX locks on the lock file (lmdb.h,
 * caveats). `zhengtong backup` is a process of its own. */
int zt__store_backup(const char *dir, const char *dest, char *err, size_t errlen)
{
    assert(dir && dest);
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path) {
        seterr(err, errlen, "data_dir %s: path too long", dir);
        return ZT_EINVAL;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            seterr(err, errlen, "data_dir %s holds no LMDB environment (no data.mdb)", dir);
        else
            seterr(err, errlen, "data_dir %s: %s", dir, strerror(errno));
        return errno == EACCES ? ZT_EPERM : ZT_ENOTFOUND;
    }

    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        seterr(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
        return zt__store_errno(rc);
    }
    /* No map size: LMDB uses the one the writer recorded, so the map covers its data. */
    if ((rc = mdb_env_set_maxdbs(env, STORE_MAXDBS)) != 0 ||
        (rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600)) != 0) {
        int zrc = open_error(rc, dir, 0, err, errlen);
        mdb_env_close(env);
        return zrc;
    }

    bool created;
    int zrc = backup_outside(dir, dest, err, errlen);
    if (zrc) {
        mdb_env_close(env);
        return zrc;
    }
    zrc = backup_dest(dest, &created, err, errlen);
    if (zrc) {
        mdb_env_close(env);
        return zrc;
    }
    char copy[4096];
    if (snprintf(copy, sizeof copy, "%s/data.mdb", dest) >= (int)sizeof copy) {
        seterr(err, errlen, "backup destination %s: path too long", dest);
        zrc = ZT_EINVAL;
        goto fail;
    }
    rc = mdb_env_copy2(env, dest, MDB_CP_COMPACT);
    if (rc != 0) {
        seterr(err, errlen, "backup of %s into %s failed: %s", dir, dest, mdb_strerror(rc));
        zrc = zt__store_errno(rc) == ZT_EFULL ? ZT_EFULL : ZT_EIO;
        unlink(copy); /* a partial copy is worse than none */
        goto fail;
    }
    /* LMDB does not sync the copy; a backup is only one once it is on disk. It is the
     * county's personal data: private to the node's user, whatever the umask. */
    if (chmod(copy, 0600) != 0 || fsync_path(copy, O_RDONLY) != 0 ||
        fsync_path(dest, O_RDONLY | O_DIRECTORY) != 0) {
        seterr(err, errlen, "backup of %s into %s: cannot sync it: %s", dir, dest, strerror(errno));
        unlink(copy);
        zrc = ZT_EIO;
        goto fail;
    }
    mdb_env_close(env);
    return ZT_OK;

fail:
    if (created) rmdir(dest);
    mdb_env_close(env);
    return zrc;
}
