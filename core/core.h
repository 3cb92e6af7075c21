/* core.h: internal interfaces between the files of the core (never seen by plugins). */
#ifndef ZT_CORE_H
#define ZT_CORE_H

#include "zt.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

/* Internal names are zt__*; `static` functions need no prefix. Errors are ZT_E* codes.
 * A function that fails with a message for a person writes it into (err, errlen). */

typedef struct zt_server zt_server;
typedef struct zt_conn zt_conn;
typedef struct zt_store zt_store;
typedef struct zt_router zt_router;
typedef struct zt_conf zt_conf;
typedef struct zt_lua_host zt_lua_host;
typedef struct zt_auth zt_auth;
typedef struct zt_roles zt_roles;
typedef struct zt_audit zt_audit;
typedef struct zt_seals zt_seals;
typedef struct zt_bus zt_bus;
typedef struct zt_timers zt_timers;
typedef struct zt_posts zt_posts;
typedef struct zt_services zt_services;

#define ZT_ERRLEN 512

/* ---- util.c: arena, strings, ids, time ------------------------------------------- */

/* A bump allocator: many small allocations, freed at once. The first block lives inline
 * so that most requests never call malloc for it. */
typedef struct zt_arena_block {
    struct zt_arena_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} zt_arena_block;
typedef struct zt_arena {
    zt_arena_block *head; /* the current block; chain of older ones behind it */
    zt_arena_block *first;
} zt_arena;
void zt__arena_init(zt_arena *a, void *first_block, size_t first_size);
void *zt__arena_alloc(zt_arena *a, size_t size);
char *zt__arena_strndup(zt_arena *a, const char *s, size_t n);
char *zt__arena_vprintf(zt_arena *a, const char *fmt, va_list ap);
/* Frees every block but the inline first one, and empties it. */
void zt__arena_reset(zt_arena *a);

/* Percent-decode src[0..n) into dst (at least n+1 bytes); plus_space: '+' means ' '.
 * Returns the decoded length, or -1 for a bad escape or a decoded NUL byte. */
long zt__pct_decode(char *dst, const char *src, size_t n, bool plus_space);

/* Split a query string into its "key=value" (or "key") pieces, in order, raw (not
 * decoded): fn is called for each until it returns non-zero, which is then returned. */
int zt__query_each(const char *q,
                   int (*fn)(void *ud, const char *k, size_t kl, const char *v, size_t vl),
                   void *ud);

/* Big-endian 64-bit integers, for keys that sort in numeric order. */
void zt__be64_put(void *out, uint64_t v);
uint64_t zt__be64_get(const void *p);

/* Monotonic milliseconds (for timeouts and latency), independent of the wall clock. */
uint64_t zt__mono_ms(void);
/* The wall clock behind zt_now_ms. A test mode can move it (see clock in issue 5). */
void zt__clock_set_offset_ms(int64_t offset);

/* Append JSON-escaped s to a growable buffer. */
typedef struct zt_buf {
    char *data;
    size_t len, cap;
} zt_buf;
int zt__buf_grow(zt_buf *b, size_t extra); /* into a new block: the old one is wiped */
/* Room for extra more bytes and a NUL. */
static inline int zt__buf_reserve(zt_buf *b, size_t extra)
{
    return b->cap - b->len >= extra + 1 ? ZT_OK : zt__buf_grow(b, extra);
}
int zt__buf_append(zt_buf *b, const void *p, size_t n);
int zt__buf_puts(zt_buf *b, const char *s);
int zt__buf_printf(zt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int zt__buf_json_str(zt_buf *b, const char *s, size_t n); /* with the quotes */
int zt__buf_u64(zt_buf *b, uint64_t v);                   /* decimal, no printf */
/* v in decimal at out (20 bytes; 21 for a negative), no NUL, no printf; the length. */
size_t zt__u64_text(char *out, uint64_t v);
size_t zt__i64_text(char *out, int64_t v);
void zt__buf_free(zt_buf *b); /* wipes what it held, then frees it */
/* Empties it, wiping what it held; keeps its room (memory that stays allocated: a plain
 * memset, which the compiler keeps). */
static inline void zt__buf_wipe(zt_buf *b)
{
    if (b->data) memset(b->data, 0, b->len);
    b->len = 0;
}
void zt__free_wiped(void *p, size_t n); /* free(p) once its n bytes are wiped */

/* ---- json.c: strict JSON input, exact output, UTF-8 ------------------------------- */

#define ZT_JSON_DEPTH   1000 /* cJSON's own nesting limit */
#define ZT_JSON_DEPTH_S "1000"
/* The length of the valid UTF-8 character at s[0..n) and its code point, or 0 when the
 * bytes there start none (n == 0, bad or overlong encoding, surrogate). */
size_t zt__utf8_next(const unsigned char *s, size_t n, unsigned *cp);
bool zt__utf8_ok(const void *s, size_t n);    /* strict UTF-8 without NUL */
size_t zt__utf8_bad(const void *s, size_t n); /* where it is not (the first such byte), or n */
/* Like zt__buf_json_str, but bytes that are not UTF-8 become U+FFFD: for text that may
 * echo what a client sent (problem details). */
int zt__buf_json_text(zt_buf *b, const char *s, size_t n);
/* Parse s[0..n) as one JSON value that must be strict UTF-8 without NUL, raw control
 * characters in strings, \u0000, unpaired surrogates, repeated keys or nesting deeper
 * than ZT_JSON_DEPTH; only white space may follow it. ZT_EINVAL with why filled
 * ("not valid JSON: ... (at byte N)"). */
int zt__json_parse_strict(const char *s, size_t n, cJSON **out, char *why, size_t whylen);
/* cJSON_Delete, after wiping every string and number in it: for a request's body and
 * for answers that carry a secret (a token, a one-time password, a key). */
void zt__json_delete_wiped(cJSON *j);
size_t zt__json_num(char out[32], double d); /* a number as zt_json_print writes it */

/* JSON records in the store (the core's own databases hold JSON values). */
cJSON *zt__db_get_json(zt_txn *t, zt_db *db, const void *key, size_t klen); /* NULL: absent */
int zt__db_put_json(zt_txn *t, zt_db *db, const void *key, size_t klen, const cJSON *j);
/* The first (op ZT_FIRST) or last (ZT_LAST) record of db in t; ZT_ENOTFOUND when empty. */
int zt__db_edge(zt_txn *t, zt_db *db, int op, zt_kv *kv);
const char *zt__jstr(const cJSON *o, const char *k); /* a string member, or NULL */
/* Answer 200 {"items": [every record of db]} (in key order), those keep() accepts (NULL:
 * all; it may add members to what is shown), each without its member `strip` (NULL:
 * none). */
int zt__respond_db_list(zt_req *req, zt_db *db, bool (*keep)(cJSON *rec, void *arg), void *arg,
                        const char *strip);

/* ---- log.c --------------------------------------------------------------------- */

extern int zt__log_level;
/* One JSON line on stderr; plugin and reqid may be NULL. */
void zt__log(int level, const char *plugin, const char *reqid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void zt__vlog(int level, const char *plugin, const char *reqid, const char *fmt, va_list ap);
int zt__log_level_parse(const char *s); /* "debug".."error" → level, -1 if unknown */

/* ---- config.c ------------------------------------------------------------------ */

/* A plugin option value after validation. */
typedef struct zt_optval {
    const char *name;
    int type;         /* enum zt_opt_type */
    bool set;         /* false: no value and no default */
    int line;         /* where the config sets it; else its plugin's table, or the plugins list */
    bool from_config; /* false: the declared default */
    char *s;
    int64_t i;
    double n;
    bool b;
    char **list;
    size_t nlist;
} zt_optval;

/* An address or a network: family AF_INET or AF_INET6, its bytes, its prefix length. */
typedef struct zt_netmask {
    int family;
    unsigned char addr[16];
    unsigned bits;
} zt_netmask;
/* Parse "10.0.0.0/8", "::1", "192.0.2.7" into m; NULL if fine, else why not. */
const char *zt__netmask_parse(const char *s, zt_netmask *m);
/* Is the address text (as inet_ntop writes it) inside one of the n masks? */
bool zt__netmask_match(const zt_netmask *m, size_t n, const char *addr);

typedef struct zt_conf_plugin {
    char *name;
    int line; /* where it is listed in `plugins` (the line of the assignment) */
} zt_conf_plugin;

#define PW_HISTORY_MAX 24 /* auth.password_history: the longest */

struct zt_conf {
    char *file;        /* the path it was read from */
    char *node_name;   /* node_name = "demo-county" */
    char *region_code; /* region_code = "330100" (6 digits, GB/T 2260) */
    char **listen;     /* listen = { "127.0.0.1:8080" } */
    size_t nlisten;
    /* trusted_proxies = { "127.0.0.1", "10.0.0.0/8" }: peers whose X-Forwarded-For (or
     * X-Real-IP) names the client (a reverse proxy such as nginx); none by default */
    zt_netmask *proxies;
    size_t nproxies;
    char *data_dir;   /* data_dir = "data" (relative to the config file's folder) */
    size_t map_size;  /* map_size = 1073741824 (bytes) */
    int log_level;    /* log_level = "info" */
    char *plugin_dir; /* where C plugins (<name>.so) are found */
    char *lua_dir;    /* the lua/ folder: zt library, plugins/<name>/, workflows/ */
    char *web_dir;    /* static files served at / ; NULL: none */
    char *key_file;   /* the master key (created 0600 on first start); default
                         <config folder>/keys/master.key: outside data_dir, so that a backup
                         of the data does not carry the key that opens it */
    /* the lines that set data_dir and web_dir (0: the default) */
    int data_dir_line, web_dir_line;
    int bus_publish_line; /* where bus.publish is set (0: not) */
    /* limits = { header_bytes=, body_bytes=, header_timeout=, idle_timeout=,
     *            shutdown_timeout=, max_connections=, commit_wait= } (times in seconds,
     *            may be fractional) */
    size_t header_bytes;
    size_t body_bytes;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t shutdown_timeout_ms;
    unsigned max_connections;
    uint64_t commit_wait_ms; /* how long a batch may wait for its writers (batch.c); 0: never */
    /* lua = { instructions = per-call budget, memory = bytes per plugin state } */
    uint64_t lua_instructions;
    size_t lua_memory;
    /* auth = { session_ttl = 28800, idle_timeout = 1800 (s), max_failures = 5,
     *          lock_seconds = 900, password_ops = 2, password_memory = 67108864 } */
    int64_t auth_session_ms;
    int64_t auth_idle_ms;
    unsigned auth_max_failures;
    unsigned auth_lock_seconds;
    unsigned long long auth_pw_ops;
    size_t auth_pw_mem;
    /* password_max_age = 90 days (s): a staff account's password older than this reaches
     * only /auth/ until it is changed (GB/T 22239: 定期更换); 0: never */
    int64_t auth_pw_max_age_ms;
    /* inactive_after = 0 (s): a staff account not signed in for this long is inactive: its
     * sign-in is refused until an administrator reactivates it (GB/T 22239: 及时停用多余的、
     * 过期的账户); 0: never */
    int64_t auth_inactive_ms;
    /* password_history = 0: a staff account's new password may not be any of its last N
     * (the current one included; at most PW_HISTORY_MAX); 0: only not the current one */
    unsigned auth_pw_history;
    /* password_classes = 2: a password has characters of at least this many of the kinds
     * lower-case letters, upper-case letters, digits, others (1 to 4) */
    unsigned auth_pw_classes;
    /* registrations_per_hour = 20: self-registrations from one client address (an IPv6
     * /64) in an hour; each costs an Argon2id hash and adds an account; 0: no limit */
    unsigned auth_reg_per_hour;
    /* two_factor_roles = { "admin", ... }: accounts holding one reach only /auth/ until
     * they have set up sign-in codes (POST /auth/totp); none by default */
    char **auth_2fa_roles;
    size_t auth_n2fa_roles;
    /* separate_duties = false: when true, no account holds both admin and auditor (the
     * system and the audit administrator are two people, GB/T 22239 三权分立) and no one
     * changes their own roles */
    bool auth_separate_duties;
    bool auth_https_only; /* credentials only over HTTPS (a trusted proxy's) or loopback */
    /* labels = { "public", "internal", "sensitive" }: the security labels (安全标记), lowest
     * first (2 to ZT_LABELS_MAX); default_clearance = "internal": the clearance of a staff
     * account or an API key that was given none */
    char **auth_labels;
    size_t auth_nlabels;
    char *auth_default_clearance;
    int auth_labels_line, auth_clearance_line; /* where they were set (0: the default) */
    /* admin_networks = { "10.1.0.0/16" }: the routes that need admin or auditor answer
     * only clients in these networks (GB/T 22239: management terminals limited by
     * address); none: every address */
    zt_netmask *auth_admin_nets;
    size_t auth_nadmin_nets;
    /* audit = { checkpoint_every = 1000 (records), checkpoint_interval = 300 (s) } */
    uint64_t audit_checkpoint_every;
    uint64_t audit_checkpoint_ms;
    uint64_t audit_retain_ms; /* audit prune keeps records younger than this */
    /* audit.syslog = "tcp://collector:601": every record also goes there (syslog.c), as
     * host and port; NULL: nowhere. audit.syslog_facility: RFC 5424's number (10:
     * authpriv by default) */
    /* seal.algorithm: new department seal keys are SM2 (国密) rather than Ed25519 */
    bool seal_sm2;
    /* crypto.fields = "SM4": personal-data fields are encrypted with SM4 and HMAC-SM3 */
    bool fields_sm4;
    char *audit_syslog_host, *audit_syslog_port;
    int audit_syslog_facility;
    /* tls:// (RFC 5425): the CA file that vouches for the collector (NULL: the system's),
     * and this node's certificate and key when the collector asks for one (both or
     * neither); the lines that set them, for the checks made once all are read */
    bool audit_syslog_tls;
    char *audit_syslog_ca, *audit_syslog_cert, *audit_syslog_key;
    int audit_syslog_line, audit_syslog_tls_line, audit_syslog_ca_line, audit_syslog_cert_line;
    /* bus = { publish = "tcp://127.0.0.1:7450" }: committed events are also published there
     * for other nodes (nng pub/sub; each message is seq (8 bytes, big-endian) | record);
     * NULL: in this process only */
    char *bus_publish;
    /* replication = { listen = "tcp://host:port", keep = 1073741824 }: the standby pulls
     * the change sets from there (repl.c); keep: bytes of change sets kept at most for it;
     * NULL: replication off */
    char *repl_listen;
    int repl_listen_line;
    uint64_t repl_keep;
    zt_conf_plugin *plugins; /* plugins = { "hello", "notice" } in listed order */
    size_t nplugins;
    void *L; /* the config's Lua state: keeps the raw plugin option tables */
};

/* Security labels (auth.labels): a label name is 1 to 32 of a-z 0-9 _ . - from a letter;
 * its level is its place in auth.labels (0 the lowest), -1 for NULL or one not listed. */
#define ZT_LABELS_MAX 16
bool zt__label_name_ok(const char *l);
int zt__label_level(const zt_conf *c, const char *label);

/* Read and check a config file. Core keys are validated here; a top-level key that is
 * neither a core key nor the name of a plugin is reported. Plugin option tables are kept
 * for zt__conf_plugin_options. On error: ZT_EINVAL and "file:line: what is wrong". */
int zt__conf_load(const char *path, zt_conf *c, char *err, size_t errlen);
/* What the file system says of the config's folders, before anything opens them: data_dir
 * is a folder, or is missing (the first start makes it, and the folders above it) with no
 * file where a folder above it should be; with web, web_dir (unless false) is a folder.
 * On error: ZT_EINVAL and "file:line: what is wrong". */
int zt__conf_check_dirs(const zt_conf *c, bool web, char *err, size_t errlen);
/* Check the option table of `plugin` against its declarations and produce the values
 * (defaults filled in). *out is an array of as many entries as decl has (malloc'd). */
int zt__conf_plugin_options(zt_conf *c, const char *plugin, const zt_option *decl, zt_optval **out,
                            size_t *nout, char *err, size_t errlen);
/* Parse a config text from memory (for the fuzzer and unit tests). */
int zt__conf_load_buffer(const char *name, const char *text, size_t len, zt_conf *c, char *err,
                         size_t errlen);
void zt__conf_free(zt_conf *c);
/* The node's own socket (a listen address, bus.publish) that a socket bound at addr would
 * collide with ("address already in use"): addr is "host:port" as listen takes it or an
 * nng URL of a TCP transport (an empty host or "*": every address; [::] dual-stack).
 * Writes what the config calls it ("listen '127.0.0.1:8080'") into what; false when none
 * does, and for an address it cannot judge (a host name, another transport). */
bool zt__conf_port_taken(const zt_conf *c, const char *addr, char *what, size_t len);
void zt__optvals_free(zt_optval *v, size_t n);

/* ---- store.c (LMDB) ------------------------------------------------------------ */

#define ZT_TXN_CURSORS_MAX 256 /* cursors one transaction holds: more is a leak */

typedef struct zt_store_stats {
    uint64_t commits;       /* batch commits that succeeded */
    uint64_t commit_errors; /* batch commits that failed */
    uint64_t nested;        /* nested write transactions begun */
    uint64_t map_size;      /* bytes */
    uint64_t used_bytes;    /* pages in use * page size */
    uint64_t last_commit_us;
    uint64_t fs_free_bytes; /* free to this user on the data folder's filesystem (0: unknown) */
    uint64_t fs_size_bytes; /* the size of that filesystem */
    uint64_t seals_failed;  /* values of sealed databases that failed their seal */
} zt_store_stats;

int zt__store_open(zt_store **out, const char *dir, size_t map_size, char *err, size_t errlen);
/* What the data folder's contents are laid out as. Raise it with a change a node of the
 * version before could not read right, and upgrade older folders in zt__store_format. */
#define ZT_DATA_FORMAT 1
/* Check the folder's format (_core/store "format"; none yet: this one) and note this
 * version as the last that opened it ("version"). A folder of a newer format is refused:
 * ZT_EINVAL, err names both versions. */
int zt__store_format(zt_store *s, char *err, size_t errlen);
/* Claim the data folder `dir` (created if missing) for the serving node: an exclusive
 * lock on dir/serve.lock, held while *fd is open (close it at exit). A second serving
 * node on the same folder would keep its own sessions, timers and counters beside the
 * first's: ZT_EBUSY, and err names the process that holds it. The CLI's commands work on
 * a served folder without claiming it. */
int zt__store_claim(const char *dir, int *fd, char *err, size_t errlen);
void zt__store_close(zt_store *s);
/* Open/create the named database "<plugin>/<name>" (in its own write transaction; not
 * while a batch is open). */
int zt__store_db(zt_store *s, const char *plugin, const char *name, zt_db **out);
/* A read transaction from a pool (reset/renewed, not reopened). */
int zt__store_read_begin(zt_store *s, zt_txn **out);
/* A transaction that may read what the open batch wrote but never writes: a nested
 * transaction of the batch, aborted at its end. Used by reads while a batch is open.
 * With no batch open it is an ordinary pooled read transaction (zt__store_in_batch says
 * which; ask before zt__store_end, which may free it). */
int zt__store_batch_read_begin(zt_store *s, zt_txn **out);
/* A write transaction nested in the current batch (the batch begins if none is open). */
int zt__store_write_begin(zt_store *s, zt_txn **out);
/* The batch itself as the write transaction (the batch begins if none is open), for
 * writes that need no rollback of their own because a failure of theirs loses the whole
 * batch (the batch's audit records). Not counted as a nested transaction; zt__store_end
 * only returns the first failed write's error, and the owner then aborts the batch. */
int zt__store_batch_write(zt_store *s, zt_txn **out);
/* End any of the above. commit: a nested write is merged into the batch; otherwise it is
 * aborted. Read transactions return to the pool. Open cursors are closed. A nested write
 * in which a write failed is aborted even with commit (its error is returned): merging it
 * would fail the whole batch. */
int zt__store_end(zt_store *s, zt_txn *t, bool commit);
/* End t, a write made outside any request (start-up, the CLI, a checkpoint), keeping its
 * writes if rc is ZT_OK, and commit the batch now: the batch is closed whatever happened.
 * rc, or the first error of the end and the commit. */
int zt__store_write_done(zt_store *s, zt_txn *t, int rc);
/* Puts and deletes that succeeded in t so far (0 for a transaction that changed nothing). */
uint64_t zt__store_txn_writes(const zt_txn *t);
/* A savepoint in a write transaction (a nested LMDB transaction under it): what is written
 * through t from zt__store_savepoint on is kept, or undone, by zt__store_savepoint_end, as
 * one piece; the writes before it stay either way. zt_call runs each service call in one,
 * so that a call that fails leaves nothing of itself. Cursors opened after it are closed
 * at its end; those opened before go on (LMDB carries them through). They nest. On a read
 * transaction both do nothing. */
typedef struct zt__savepoint {
    void *parent; /* the MDB_txn that t wrote in before; NULL: no savepoint was made */
    uint64_t writes;
    int failed;
    size_t rlog_mark; /* the batch's change set (replication) when it was made */
} zt__savepoint;
int zt__store_savepoint(zt_txn *t, zt__savepoint *sp);
/* keep: merge what was written since into the transaction (an error there fails t: LMDB
 * may have merged part of it), else drop it. ZT_OK, or that error. */
int zt__store_savepoint_end(zt_txn *t, zt__savepoint *sp, bool keep);
/* 1 if the transaction belongs to the open batch (its request must wait for the commit). */
bool zt__store_in_batch(const zt_txn *t);
bool zt__store_batch_open(const zt_store *s);
/* Commit the batch (one fsync). ZT_OK if none was open. On failure everything the batch
 * held is lost and the error is returned (ZT_EFULL, ZT_EIO). */
int zt__store_batch_commit(zt_store *s);
/* zt_put of a key greater than every key of db (LMDB's append fast path, no search);
 * ZT_EEXIST if it is not. */
int zt__store_append(zt_txn *t, zt_db *db, const void *key, size_t klen, const void *val,
                     size_t vlen);
/* Drop the open batch and everything in it (no nested transaction may be open). */
void zt__store_batch_abort(zt_store *s);
/* The key that seals the values of sealed databases (derived from the master key): set
 * before any database is opened sealed. */
int zt__store_seal_key(zt_store *s, const unsigned char key[32]);
/* Database plugin/name, plain or sealed (every value stored with its zt__seal_tag, checked
 * on every read: a value changed, added or copied outside the node reads as ZT_EIO, logged
 * and counted). The first sealed open seals what the database holds, as it stands, and
 * marks it (_core/sealed), in one transaction in which note (if given) is told how many
 * records it sealed when there were any (the audit record: seal database x: N); a sealed
 * database is never opened plain (ZT_ESTATE). err says why on failure. */
typedef int (*zt__seal_note)(void *arg, zt_txn *t, const char *db, size_t count);
int zt__store_db_as(zt_store *s, const char *plugin, const char *name, bool sealed,
                    zt__seal_note note, void *arg, zt_db **out, char *err, size_t errlen);
void zt__store_stats(zt_store *s, zt_store_stats *st);
/* Hot, compacted copy of the environment in `dir` into the empty or new folder `dest`,
 * safe while a server runs on it. */
int zt__store_backup(const char *dir, const char *dest, char *err, size_t errlen);
int zt__store_errno(int mdb_rc); /* LMDB code → ZT_E* */

/* Replication (异地实时备份). On the primary, with replication on, every change a batch
 * makes is captured, and the batch's change set is written into _core/replog under the
 * batch's number in the batch's own transaction (store.c says how). A standby applies the
 * change sets in order; the data's "log" in _core/repl says where each is. */
typedef struct zt_repl_state {
    bool on;                 /* the data has a change log (the primary's, or its copy's) */
    unsigned char epoch[16]; /* the log's identity: made when replication is turned on */
    uint64_t head;           /* the last batch logged (primary) or applied (standby) */
    uint64_t first;          /* the oldest change set kept (head + 1: none) */
    uint64_t bytes;          /* bytes of the change sets kept */
    char standby[256];       /* the primary a standby follows; "" on a primary */
} zt_repl_state;
/* Open the log's databases; capture is on when the data has a log and is no standby's
 * (so the CLI's commands log their batches beside a replicating node). keep: bytes of
 * change sets kept at most (replication.keep). Before anything is written. */
int zt__store_repl_open(zt_store *s, uint64_t keep);
/* The log's state, in a read transaction of its own (any thread). */
int zt__store_repl_state(zt_store *s, zt_repl_state *st);
/* `serve`: replication on (a log is begun if the data has none: a new epoch, batch 0) or
 * off (the log is dropped); a standby's mark is removed (promotion). *what says which of
 * ZT_REPL_* happened; *st is the state after. Not while a batch is open. */
enum { ZT_REPL_STARTED = 1, ZT_REPL_STOPPED = 2, ZT_REPL_PROMOTED = 4 };
int zt__store_repl_config(zt_store *s, bool on, zt_repl_state *st, int *what);
/* `standby`: mark the data as following primary (a URL), drop the change sets that came
 * with the backup, stop capture. ZT_ENOTFOUND when the data has no log (a backup of a node
 * without replication). */
int zt__store_repl_standby(zt_store *s, const char *primary, zt_repl_state *st);
/* For the replication server's thread (its own read transaction): the log's state, the
 * commit time of its head (0: none), and the change sets after batch `after`, appended to
 * out as seq (8) | length (4, big-endian) | change set, while out stays within max bytes
 * (one at least). Nothing is appended unless after is within [first - 1, head). */
int zt__store_repl_read(zt_store *s, uint64_t after, size_t max, zt_buf *out, zt_repl_state *st,
                        uint64_t *head_time);
/* The standby has applied through seq: its change sets may go, at a later commit (any
 * thread). */
void zt__store_repl_ack(zt_store *s, uint64_t seq);
uint64_t zt__store_repl_acked(zt_store *s);
/* fn(arg) after each commit that logged a change set (on the committing thread). */
void zt__store_repl_notify(zt_store *s, void (*fn)(void *arg), void *arg);
bool zt__store_repl_on(const zt_store *s);
/* The standby: apply change sets (as zt__store_repl_read gives them) of the log `epoch`,
 * each the next after the data's head, in one durable transaction, with the new head: all
 * or none. *st is the state after; *last_time the last one's commit time. ZT_ESTATE when
 * they do not follow (or a record to delete is missing: the data differs), ZT_EINVAL when
 * malformed; err says which. */
int zt__store_repl_apply(zt_store *s, const unsigned char epoch[16], const void *sets, size_t len,
                         zt_repl_state *st, uint64_t *last_time, char *err, size_t errlen);

/* ---- repl.c: the replication server (primary) and the standby ------------------- */

typedef struct zt_repl zt_repl;
/* Listen on replication.listen and answer the standby's requests from a thread of its own
 * (after the store's log is configured). */
int zt__repl_start(zt_server *srv, char *err, size_t errlen);
void zt__repl_stop(zt_server *srv);
/* Prometheus lines of the primary's log (nothing with replication off). */
int zt__repl_metrics(zt_server *srv, zt_buf *out);
/* `zhengtong standby [-c FILE] URL`: follow the primary at URL until SIGINT/SIGTERM; the
 * exit status. `zhengtong standby [-c FILE] status`: what the standby last said. */
int zt__standby_run(zt_conf *conf, const char *url);
int zt__standby_status(zt_conf *conf);

/* ---- totp.c: the second factor of a sign-in (RFC 6238: HMAC-SHA1, 6 digits, 30 s) --- */

#define ZT_TOTP_KEY 20                              /* bytes of a secret (160 bits, RFC 4226) */
#define ZT_TOTP_B32 ((ZT_TOTP_KEY * 8 + 4) / 5 + 1) /* its base32 text, with the NUL */
void zt__totp_secret(unsigned char key[ZT_TOTP_KEY]);
/* The code of a 30-second step (0..999999), or -1. */
int zt__totp_code(const unsigned char key[ZT_TOTP_KEY], uint64_t step);
/* The step whose code `code` is (6 digits), within one step of now and after last_step
 * (a code is good once), or -1. */
int64_t zt__totp_check(const unsigned char key[ZT_TOTP_KEY], const char *code, int64_t now_ms,
                       int64_t last_step);
/* SHA-1 (FIPS 180-4) and HMAC-SHA1 (RFC 2104), for the codes only. */
void zt__sha1(const void *msg, size_t len, unsigned char out[20]);
void zt__hmac_sha1(const void *key, size_t klen, const void *msg, size_t len,
                   unsigned char out[20]);
/* RFC 4648 base32 without padding (what authenticator apps take); out: (n*8+4)/5+1 bytes. */
void zt__base32(const unsigned char *in, size_t n, char *out);

/* ---- throttle.c: attempts counted per key, in memory (sign-in lock, registrations) --- */

typedef struct zt_throttle zt_throttle;
typedef struct zt_attempts {
    unsigned count;            /* attempts in the current window */
    int64_t first_ms, last_ms; /* the window's first and last */
} zt_attempts;
/* A table of at most max keys (full, it forgets what matters least: see throttle.c). */
zt_throttle *zt__throttle_new(size_t max);
void zt__throttle_free(zt_throttle *t);
/* key's attempts, or zeros; the caller judges whether they still count. */
zt_attempts zt__throttle_get(zt_throttle *t, const char *key);
/* One more attempt by key at now. The count starts again when the last attempt
 * (sliding) or the window's first (fixed) is window_ms old; the entry is kept for at
 * least hold_ms from now, the time it may make someone wait. */
int zt__throttle_note(zt_throttle *t, const char *key, int64_t now, int64_t window_ms, bool sliding,
                      int64_t hold_ms);
void zt__throttle_clear(zt_throttle *t, const char *key);
size_t zt__throttle_size(const zt_throttle *t);
uint64_t zt__throttle_evictions(const zt_throttle *t); /* entries that mattered, forgotten */
/* The part of a client address that counts as one client: an IPv4 address, an IPv6 /64
 * ("2001:db8:1:2::/64"; a host picks the rest itself), ::ffff:a.b.c.d as a.b.c.d. */
int zt__client_prefix(const char *client, char *out, size_t cap);
/* ---- request.c ----------------------------------------------------------------- */

/* 1 for GET and HEAD: requests that read a snapshot and change nothing (no write
 * transaction, no audit record). */
bool zt__req_reads(const zt_req *req);
/* The reason phrase of an HTTP status the node answers with ("Not Found"), or NULL. */
const char *zt__status_title(int status);
/* NULL when `name: value` is a well-formed response header, else why not: the name must be
 * an RFC 9110 token, the value free of control characters (tab aside). */
const char *zt__res_header_refusal(const char *name, const char *value);
/* Why a plugin may not add the header `name` (NULL: it may): Content-Length,
 * Content-Type, Date, X-Request-Id and the connection's own headers (Connection,
 * Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade) are the node's; a second copy
 * would make the response ambiguous to clients and proxies. */
const char *zt__res_header_nodes(const char *name);

/* ---- router.c ------------------------------------------------------------------ */

#define ZT_MAX_PARAMS 8

typedef struct zt__route {
    char *method;  /* "GET", ... */
    char *pattern; /* as declared */
    zt_handler handler;
    void *ud;
    char *role;
    const char *or_role; /* a second role that may call it, or NULL: only the core's own
                            routes have one (zt__router_or_role), a static string */
    size_t body_limit;
    char *summary;
    zt_plugin *plugin; /* the owner; NULL for the core's own routes */
    unsigned idx;      /* index in the router's table, for metrics */
} zt__route;

typedef struct zt_match {
    const zt__route *route;
    unsigned nparams;
    const char *pname[ZT_MAX_PARAMS];
    const char *pval[ZT_MAX_PARAMS]; /* point into a copy made by the caller's arena */
    size_t plen[ZT_MAX_PARAMS];
    char allow[64]; /* for 405: "GET, HEAD, POST" */
} zt_match;

int zt__router_new(zt_router **out);
void zt__router_free(zt_router *r);
/* Add a route; ZT_ECONFLICT with "… already claimed by plugin X" in err. */
int zt__router_add(zt_router *r, zt_plugin *owner, const zt_route *def, char *err, size_t errlen);
/* Match a decoded path. ZT_OK (m->route set), ZT_ENOTFOUND, or ZT_EPERM meaning the path
 * exists for other methods (m->allow lists them). Params point into `path`, which the
 * router does not modify: m->plen gives each length. */
int zt__router_match(const zt_router *r, const char *method, const char *path, zt_match *m);
size_t zt__router_count(const zt_router *r);
const zt__route *zt__router_at(const zt_router *r, size_t i);
/* The route added last may also be called by a caller holding role (a static string): the
 * core's account routes, which the auditors reach under auth.separate_duties. */
void zt__router_or_role(zt_router *r, const char *role);

/* ---- plugin.c (C plugin host and the plugin list) ------------------------------ */

enum { ZT_PLUGIN_C = 1, ZT_PLUGIN_LUA = 2 };
enum { ZT_PSTATE_LOADED = 0, ZT_PSTATE_RUNNING, ZT_PSTATE_FAILED, ZT_PSTATE_STOPPED };

struct zt_plugin {
    char *name;
    int kind;
    int state;
    char *version;
    char *description;
    char **requires;
    size_t nrequires;
    zt_option *options; /* declarations (for C: the descriptor's; for Lua: built) */
    size_t noptions;
    zt_optval *opts; /* validated values, parallel to options */
    size_t nopts;
    const zt_plugin_def *def; /* C */
    void *dl;                 /* C: dlopen handle */
    char *path;               /* the .so or the Lua plugin folder */
    void *data;               /* zt_plugin_set_data */
    zt_server *srv;
    bool in_init;
    struct zt_lua_plugin *lua; /* Lua: its state (lua_host.c) */
    char **needs;              /* services it requires (descriptor / manifest `needs`) */
    size_t nneeds;
    char **wants; /* services it may call (optional) */
    size_t nwants;
    lua_State *script; /* C: the state of zt_lua_new, closed by zt__plugins_fini after fini */
    char *init_error;  /* zt_option_fail's "FILE:LINE: ..." (malloc'd), the start's error */
};

/* Find, load and order the plugins the config lists: for each name, a C plugin
 * <plugin_dir>/<name>.so or a Lua plugin <lua_dir>/plugins/<name>/ (manifest.lua +
 * init.lua). Checks ABI, requires and options; orders by dependencies. Nothing is
 * initialised yet. */
int zt__plugins_load(zt_server *srv, char *err, size_t errlen);
/* init every plugin in order; on failure fini those already started, in reverse. */
int zt__plugins_init(zt_server *srv, char *err, size_t errlen);
/* A declaration refused during init (a route, a service) stops the start even if the
 * plugin goes on: msg is the start's error unless an earlier refusal is (the first says
 * it). Logs nothing. */
void zt__refuse_start(zt_server *srv, const char *msg);
void zt__plugins_fini(zt_server *srv);
void zt__plugins_free(zt_server *srv);
/* Copy a NULL-terminated list of names (NULL: none) into *out (each name malloc'd), counting
 * them in *n (0 before): on ZT_ENOMEM, what was copied is there to free as the rest. */
int zt__dup_names(const char *const *names, char ***out, size_t *n);

/* ---- code.c -------------------------------------------------------------------- */

/* What code the node runs (after zt__plugins_load): the digests of the binary, the config,
 * each plugin and the workflow definitions in _core/code; what changed since the last
 * start is one audit record ("code changed: …") and a log line (not under check_only);
 * declares GET /admin/code (auditor). */
int zt__code_open(zt_server *srv, char *err, size_t errlen);

/* ---- lua_host.c ---------------------------------------------------------------- */

/* Read lua_dir/plugins/<name>/manifest.lua (in an empty sandbox) into p: version,
 * description, requires (nrequires), needs and wants (services, their names checked),
 * options (noptions; no terminator needed). All of it malloc'd, the strings inside each
 * zt_option too: zt__plugins_free frees it, also what a failed call left. p->name,
 * p->path (the plugin's folder) and p->kind are set before the call. */
int zt__lua_manifest(zt_server *srv, zt_plugin *p, char *err, size_t errlen);
/* Create the plugin's sandboxed state and run its init.lua (which declares routes and
 * databases through the zt module). */
int zt__lua_init(zt_server *srv, zt_plugin *p, char *err, size_t errlen);
void zt__lua_fini(zt_plugin *p);
/* Run the functions the Lua plugin p gave zt.at_start, in order, each as a job of p (method
 * START, path its name): once the node has started, before it serves. A failure is logged
 * and its writes dropped; ZT_ERROR if any failed, else ZT_OK (also for a C plugin). */
int zt__lua_start(zt_server *srv, zt_plugin *p);
/* Bytes the plugin's Lua state holds. */
size_t zt__lua_memory(const zt_plugin *p);
/* The plugin's Lua state (NULL before zt__lua_init): for the test runner, which runs its
 * test files in it (with srv->lua_tests, zt__lua_init makes the state without running
 * init.lua). Calls into it go through zt_lua_run and zt_lua_call. */
lua_State *zt__lua_state(const zt_plugin *p);
/* Push the request table of the work running on L (the ctx of zt_lua_call), as an event
 * handler's ctx is made: for zt.auth.*, zt.audit.note, zt.seal. It is the work's only while
 * it stays on the stack. Only from a C function that Lua called inside such a work. */
void zt__lua_push_ctx(lua_State *L);
/* The text of a Lua source file into out (empty before), read as init.lua and modules are
 * (at most 8 MiB); on failure err names the file and why, and out is freed. */
int zt__lua_read_source(const char *path, zt_buf *out, char *err, size_t errlen);

/* ---- lua_pattern.c ------------------------------------------------------------- */

/* Set find, match, gmatch and gsub into the table at idx: Lua's patterns, matched in steps
 * that are charged to the instruction budget of the plugin call running on L. */
void zt__lua_patterns_install(lua_State *L, int idx);
/* (lua_host.c) Take at least `least` and at most `most` steps (as many as are left) from
 * the budget of the call running on L; returns how many were taken, or UINT64_MAX when
 * calls have no budget (the steps are free). When fewer than `least` are left, or the
 * budget is already spent, raises "instruction budget exceeded" as a Lua error. Call it
 * only from a C function that Lua called. */
uint64_t zt__lua_budget_take(lua_State *L, uint64_t least, uint64_t most);
/* (lua_host.c) Give back n steps taken and not spent (nothing when there is no budget). */
void zt__lua_budget_give(lua_State *L, uint64_t n);

/* ---- http.c (connections, parsing, responses) ---------------------------------- */

typedef struct zt_hdr {
    const char *name, *value;
    size_t nlen, vlen;
} zt_hdr;

struct zt_req {
    zt_conn *conn;
    zt_server *srv;
    struct zt_req *next; /* in the connection's queue, oldest first */
    zt_arena arena;
    uint64_t t_start_ns; /* uv_hrtime at first byte */
    char id[27];
    char client[46]; /* the peer's address as text, filled at accept */

    /* parsed */
    const char *method; /* static string */
    char *target;       /* raw request target */
    char *path;         /* decoded path */
    char *query;        /* raw query string (after '?') or NULL */
    zt_hdr *hdrs;
    size_t nhdrs, caphdrs;
    zt_buf body;
    bool keepalive;
    bool head;
    zt_match match;
    int route_rc; /* result of zt__router_match */
    cJSON *json;
    const char *json_why; /* why zt_req_json refused the body (request memory) */
    int json_status;      /* and the status that says so: 400 or 415 */

    /* the handling */
    zt_txn *txn;
    bool used_batch;     /* its answer waits for the batch commit */
    bool async;          /* work is running off the loop (zt_work); the answer comes later */
    int work_handler_rc; /* what a handler that called zt_work returned, if not ZT_ASYNC */
    zt_caller *caller;
    bool must_change_password;
    bool password_expired; /* a staff password older than auth.password_max_age */
    bool needs_two_factor; /* a role of auth.two_factor_roles, and no authenticator yet */
    unsigned char token_hash[32];
    unsigned char token_tag[16]; /* its tag in the session cache (auth.c) */
    int64_t session_last_seen;   /* INT64_MAX: no session (an API key, whose hash is token_hash) */
    int64_t checked_at;          /* when its session was checked (zt_now_ms), 0: not */
    int64_t key_last_used;       /* an API key: when its use was last recorded (ms; 0: never) */
    bool refusal_recorded;       /* auth.c recorded why it refused: the 403 hook does not */
    const char *audit_action;    /* zt_audit_note; NULL: "<METHOD> <route pattern>" */
    const char *audit_object;    /* NULL: the path */
    bool audit_read;             /* a GET that zt_audit_note named: recorded as a change is */
    /* work that no client asked for (zt__job_new): conn is NULL */
    zt_plugin *job_plugin; /* the plugin the work runs for */
    const zt_event *event; /* the event being delivered, or NULL */
    unsigned call_depth;   /* zt_call nesting */
    /* during zt_call: the provider whose service runs (zt__req_plugin), or NULL */
    zt_plugin *service_plugin;
    /* why the last zt_call failed (service.c), beyond its code: set on entry */
    struct {
        bool not_provided; /* no running plugin provides the service */
        unsigned depth;    /* call_depth of the service that said msg */
        const char *msg;   /* NULL unless the service said (zt__call_fail; arena) */
    } call_fail;

    /* the response */
    bool responded;
    bool ready; /* may be sent (after the batch commit if used_batch) */
    int status;
    zt_buf res_hdrs;    /* "Name: value\r\n" lines added by the handler */
    bool res_cache_set; /* the handler said Cache-Control (else: no-store) */
    char *res_body;     /* malloc'd */
    size_t res_len;
    const char *res_ctype;
    bool close_after; /* send then close the connection (parse errors, shutdown) */
    bool plain_http;  /* it crossed a network unencrypted: not from loopback, nor from a
                         trusted proxy that says X-Forwarded-Proto: https */
};

/* Start listening on one address ("127.0.0.1:8080", "[::1]:8080"). */
int zt__http_listen(zt_server *srv, const char *addr, char *err, size_t errlen);
/* Stop accepting; close idle connections, and those whose request's headers are still
 * arriving (nothing of those has run); connections in flight close after their responses.
 * Returns how many it closed with headers arriving. */
unsigned zt__http_stop_accepting(zt_server *srv);
/* Send every ready response of every connection, in request order (called after the
 * batch commit, once per loop iteration). */
void zt__http_flush(zt_server *srv);
/* Close every connection now, whatever it is doing (the end of a shutdown whose grace
 * period ran out); requests not answered are dropped (zt__server_done with status 0). */
void zt__http_close_all(zt_server *srv);
/* A request answered later than from zt__server_handle (an asynchronous handler): mark
 * its connection for the next zt__http_flush. */
void zt__http_ready(zt_req *req);
/* The number of the last batch the connection wrote in (batch.c), 0: none. */
uint64_t *zt__conn_wrote_in(zt_conn *c);
/* Connections open / requests in flight. */
unsigned zt__http_connections(const zt_server *srv);
unsigned zt__http_inflight(const zt_server *srv);
/* Requests whose headers are read and whose body is still arriving (not in inflight yet:
 * they have not run). A stop finishes them too. */
unsigned zt__http_receiving(const zt_server *srv);
/* For the fuzzer: run data through the request path (the same parser callbacks, routing
 * and handlers) on a connection without a socket, as if a client sent it and then closed
 * its side; answers are serialized and discarded. Returns the number of answers, or
 * ZT_ENOMEM. srv needs what zt__server_handle reads (conf, router; for a matched route
 * also the store, audit and identity state); loop may be NULL (nothing runs off it). */
int zt__http_fuzz_feed(zt_server *srv, const char *data, size_t len);

/* ---- auth.c -------------------------------------------------------------------- */

/* Open the identity databases, create the first account on first start, declare the
 * /auth and /admin routes. */
int zt__auth_open(zt_server *srv, char *err, size_t errlen);
void zt__auth_close(zt_server *srv);
/* Before a handler: resolve the bearer token and check the route's role. ZT_OK to go on;
 * otherwise the request has been answered (401, 403). */
int zt__auth_check(zt_server *srv, zt_req *req);
/* 1 if the department code exists (read in t). */
bool zt__auth_dept_exists(zt_server *srv, zt_txn *t, const char *code);
/* Department `code`'s record ({code, name, parent}), or NULL: none, or unreadable. */
/* A department (parent NULL: a top one) stored as the node stores it (sealed); *out, if
 * given, its record. */
int zt__auth_dept_put(zt_server *srv, zt_txn *t, const char *code, const char *name,
                      const char *parent, cJSON **out);
cJSON *zt__auth_dept_get(zt_server *srv, zt_txn *t, const char *code);
/* After the request's transaction ended: a signed-in caller answered 403 is recorded in
 * the audit log ("refused: <action>", status 403; a security event), at most 20 per
 * account in 10 minutes. */
void zt__auth_refused(zt_server *srv, zt_req *req);
/* After the request's transaction ended: refresh its session's last use (once a minute). */
void zt__auth_after(zt_server *srv, zt_req *req);
/* /metrics lines: the sign-in and registration counters' table. */
int zt__auth_metrics(zt_server *srv, zt_buf *out);
/* A batch was lost: the session cache may hold what it undid. */
void zt__auth_after_abort(zt_server *srv);
/* An empty store gets the department "root" and the account "admin" with a one-time
 * password printed on stdout. `serve` calls it once the node listens and its plugins
 * started, so that a first start that fails does not use up the password unseen. */
int zt__auth_bootstrap(zt_server *srv, char *err, size_t errlen);
/* Only the department "root" (named after the node), if missing: a scratch node's. */
int zt__auth_root_dept(zt_server *srv, char *err, size_t errlen);
/* `zhengtong admin user|dept|key ...` (argv after "admin"): one change in its own
 * transaction with its audit record, committed before it returns. Output on out. Under
 * auth.separate_duties a change to an account that holds auditor (or is to) needs recover
 * (`--recover`; else ZT_EPERM, err says why), warns on stderr and is recorded as a recovery. */
int zt__auth_cli(zt_server *srv, int argc, char **argv, bool recover, FILE *out, char *err,
                 size_t errlen);
/* Who runs a command, for its audit records: the user who ran sudo (when sudo says so, not
 * only $SUDO_USER), else the user's name. */
const char *zt__cli_user(void);

/* ---- roles.c ------------------------------------------------------------------- */

/* A role name: 1 to 64 of a-z 0-9 _ . - starting with a letter. */
bool zt__role_name_ok(const char *r);
/* Open _core/roles, declare the core's roles and the /admin/roles routes. */
int zt__roles_open(zt_server *srv, char *err, size_t errlen);
void zt__roles_close(zt_server *srv);
/* Why name (with description, which may be NULL) cannot be declared, in buf, or NULL: a
 * name that is no role name (or "public", "user", which no one is given), or a
 * description that is no text of 1 to 200 characters on one line. */
const char *zt__role_problem(const char *name, const char *description, char *buf, size_t cap);
/* Declare a role (from: "core" or a plugin's name; description may be NULL). ZT_EINVAL
 * when zt__role_problem says why not. */
int zt__roles_declare(zt_server *srv, const char *from, const char *name, const char *description);
/* Every route's role is declared, by the route's plugin. */
void zt__roles_from_routes(zt_server *srv);
/* At start, once the plugins declared theirs: the store's copy of the declared roles made
 * current (audited when it changed); unknown auth.two_factor_roles, and accounts holding
 * admin and auditor under auth.separate_duties, warned of. */
int zt__roles_sync(zt_server *srv, char *err, size_t errlen);
/* A role of auth.two_factor_roles that is not known is warned of: a typo would let the
 * accounts meant to need a code sign in without one. t NULL: declared roles only (`check`,
 * on its scratch store). */
void zt__roles_warn_2fa(zt_server *srv, zt_txn *t);
/* Is name declared, or a custom role in t (t may be NULL: declared only)? */
bool zt__role_known(zt_server *srv, zt_txn *t, const char *name);
/* The first string of the JSON list roles that held (a JSON list, or NULL) does not hold
 * and that is not known; NULL if there is none. */
const char *zt__roles_unknown(zt_server *srv, zt_txn *t, const cJSON *roles, const cJSON *held);
/* Does the JSON list roles hold the string role? */
bool zt__roles_hold(const cJSON *roles, const char *role);
/* auth.separate_duties is on and the JSON list roles holds both admin and auditor. */
bool zt__roles_not_separate(const zt_conf *c, const cJSON *roles);
#define ZT__DUTIES_RULE                                                                            \
    "auth.separate_duties: one account cannot hold both admin and auditor (the system "            \
    "administrator and the audit administrator are two people)"
/* What a grant of an unknown role is told (%s: the role). */
#define ZT__ROLE_UNKNOWN                                                                           \
    "'%s' is not a role of this node (GET /admin/roles lists them: the core's and the "            \
    "enabled plugins', and those added with POST /admin/roles)"
/* `zhengtong admin role add NAME DESCRIPTION | remove NAME` (argv after "admin"), in t. */
int zt__roles_cli(zt_server *srv, zt_txn *t, int argc, char **argv, FILE *out, char *err,
                  size_t errlen);
/* `zhengtong admin role list`: a table on out. */
int zt__roles_cli_list(zt_server *srv, zt_txn *t, FILE *out);

/* ---- audit.c ------------------------------------------------------------------- */

typedef struct zt_audit_entry {
    const char *actor, *actor_login, *plugin, *action, *object, *request_id, *client;
    int status;
} zt_audit_entry;
typedef struct zt_audit_report {
    uint64_t records;   /* records that verified */
    uint64_t first_bad; /* 0 if none */
    char reason[256];
    uint64_t last_seq;
    unsigned char last_hash[32];
    uint64_t checkpoints;    /* signed checkpoints that verified */
    uint64_t pruned_through; /* records up to this one are in archives, not here (0: none) */
} zt_audit_report;

int zt__audit_open(zt_server *srv, char *err, size_t errlen);
void zt__audit_close(zt_server *srv);
int zt__audit_routes(zt_server *srv, char *err, size_t errlen);
/* Append one record in t (a write transaction), chained to the last record in t. */
int zt__audit_append(zt_server *srv, zt_txn *t, const zt_audit_entry *e);
/* The record of a request that changed something, queued for its batch: the records of
 * a batch are appended together just before it commits (zt__audit_flush), so each change
 * and its record still commit together or not at all, while the log's pages are copied
 * once per batch instead of once per request. Unqueue the last one if the request's own
 * transaction then fails. */
int zt__audit_queue(zt_server *srv, zt_req *req);
void zt__audit_unqueue_last(zt_server *srv);
/* The same for work that is not a request (a timer firing), in a transaction nested in
 * the batch; verb non-NULL: the action is "<verb> <e->action>". With a mark taken before
 * that transaction, a rewind unqueues all it queued if it is then rolled back. */
int zt__audit_queue_entry(zt_server *srv, const zt_audit_entry *e, const char *verb);
typedef struct zt__audit_pos {
    size_t len, n;
} zt__audit_pos;
void zt__audit_mark(const zt_server *srv, zt__audit_pos *pos);
void zt__audit_rewind(zt_server *srv, const zt__audit_pos *pos);
/* Append the queued records in the open batch, with the signed checkpoints that fall due
 * among them (zt__audit_append too). On failure the caller aborts the batch. */
int zt__audit_flush(zt_server *srv);
size_t zt__audit_queued(const zt_server *srv);
zt_db *zt__audit_db(zt_server *srv);
/* The stored value in log that holds record seq, and where in it the record begins. */
int zt__audit_locate(zt_txn *t, zt_db *log, uint64_t seq, zt_kv *kv, size_t *off);
/* The records of one stored value as GET /audit shows them, in a JSON array (ending at
 * one that cannot be read). The caller deletes it. */
cJSON *zt__audit_value_json(const zt_kv *kv);
/* Check the records of one stored value, going on from a walk of the log: *expect is the
 * sequence number the next record must have, prev the hash it must follow; both move past
 * each record that verifies. NULL, or why the record at *expect does not. */
const char *zt__audit_check_value(const zt_kv *kv, uint64_t *expect, unsigned char prev[32]);
/* Record seq (0: the last one) as GET /audit shows it, or NULL. The caller deletes it. */
cJSON *zt__audit_record_json(zt_txn *t, zt_db *log, uint64_t seq);
/* The last record's sequence number in t (the log's beginning, after what was pruned, when
 * it holds none; 0 for a log never written). */
int zt__audit_head(zt_server *srv, zt_txn *t, uint64_t *seq);
/* fn for each record of t from sequence number `from` on (the first one after it when it
 * was pruned), in order, at most max of them, each as the JSON text GET /audit shows
 * (json: the callback's to read, not to keep), until fn returns false. ZT_EIO at a record
 * that cannot be read (audit verify says what is wrong). */
typedef bool (*zt__audit_each_fn)(void *ud, uint64_t seq, uint64_t time_ms, int status,
                                  const char *json, size_t len);
int zt__audit_each(zt_server *srv, zt_txn *t, uint64_t from, size_t max, zt__audit_each_fn fn,
                   void *ud);
/* Recompute the chain in t: r->first_bad is the first record that fails (0: none). */
/* An audit archive: what `zhengtong audit export` wrote, as zt__audit_archive_check read it. */
typedef struct zt_archive_info {
    char node[65];
    unsigned char node_key[32];
    uint64_t after_seq; /* it begins after this record (0: the first) ... */
    unsigned char after_hash[32];
    uint64_t last_seq; /* ... and ends with this one */
    unsigned char last_hash[32];
    uint64_t records, checkpoints;
    /* the last record a signed checkpoint covers (0: none): the records after it, and the
     * header's node and key when there is no checkpoint, are authenticated by nothing */
    uint64_t signed_through;
    unsigned char digest[32]; /* BLAKE2b-256 of the file */
} zt_archive_info;
/* Write the oldest records, through the last whole batch that ends at or before `through`
 * and was made before before_ms (UINT64_MAX: any time), to a new archive file at path
 * (never over one); ZT_EINVAL if there are none. */
int zt__audit_export(zt_server *srv, uint64_t through, uint64_t before_ms, const char *path,
                     zt_archive_info *info, char *err, size_t errlen);
/* Check an archive: each record's hash and chain, each checkpoint's signature (under the
 * key it names) and record, the end line. err says "path:line: why". */
int zt__audit_archive_check(const char *path, zt_archive_info *info, char *err, size_t errlen);
/* Check the archive, then write its records to out, one JSON object per line, as GET
 * /audit shows them (for reading an archive: its lines hold the stored binary records). */
int zt__audit_archive_show(const char *path, FILE *out, char *err, size_t errlen);
/* Remove from the log the records the archive at path holds, once it has checked: it must
 * be this node's, begin where the log begins and end with a record of the log. One
 * transaction: an audit record of it (by actor, with the last record's hash), the head
 * signed, the records and their checkpoints gone, the log then beginning after the
 * archive's last record (signed by the node key: verify believes no other beginning). */
int zt__audit_prune(zt_server *srv, const char *path, const char *actor, zt_archive_info *info,
                    char *err, size_t errlen);
/* Recompute the chain from where it begins (record 1, or after the last record pruned: a
 * beginning the node signed and the log's last audit prune record names). */
int zt__audit_verify(zt_server *srv, zt_txn *t, zt_audit_report *r);
/* Then check every signed checkpoint against the log, and that none is missing (lowers
 * r->first_bad if need be). */
int zt__audit_verify_checkpoints(zt_server *srv, zt_txn *t, zt_audit_report *r);
/* Sign the committed head now if it moved (its own transaction; not while a batch is
 * open). Records are signed every audit_checkpoint_every in their own transactions. */
int zt__audit_checkpoint(zt_server *srv);
/* Start the interval timer (audit_checkpoint_ms). */
void zt__audit_start(zt_server *srv);
/* Start the sweep of ended sessions (auth.c): serve only. */
void zt__auth_start(zt_server *srv);

/* ---- seal.c -------------------------------------------------------------------- */

int zt__seals_open(zt_server *srv, char *err, size_t errlen);
/* At a serving start: name the departments whose key is not of seal.algorithm. */
void zt__seals_start(zt_server *srv);
void zt__seals_close(zt_server *srv);
/* Check a seal against doc in t. ZT_OK, or ZT_EINVAL / ZT_ENOTFOUND with *why for a
 * person (ZT_EIO for a damaged key record). */
int zt__seal_check(zt_server *srv, zt_txn *t, const void *doc, size_t len, const cJSON *seal,
                   const char **why);
/* Sign with the node's own key (made on first use, kept sealed in _core/meta); its public
 * key. t must be writable the first time. */
int zt__node_sign(zt_server *srv, zt_txn *t, const void *msg, size_t len, unsigned char sig[64]);
int zt__node_pubkey(zt_server *srv, zt_txn *t, unsigned char pk[32]);

/* ---- work without a client (request.c, server.c) -------------------------------- */

/* A zt_req for work that no client asked for (an event delivered to plugin p): its own
 * arena, the system caller of p, method and path as given (copied), no connection; its
 * transaction (zt_req_txn) is a write transaction nested in the batch. NULL: no memory. */
zt_req *zt__job_new(zt_server *srv, zt_plugin *p, const char *method, const char *path);
/* End the work: with rc == ZT_OK its transaction is merged into the batch, with an audit
 * record queued if it wrote anything (actor "system", the plugin, action "<method> <path>"
 * unless zt_audit_note named it); otherwise everything it wrote is dropped. Returns rc, or
 * the storage error that prevented keeping its changes. Frees the job. */
int zt__job_end(zt_server *srv, zt_req *job, int rc);
/* What the job's transaction wrote so far is the core's bookkeeping (an event's delivered
 * position), not the work's: only writes after this call make its audit record. */
void zt__job_audit_from_here(zt_req *job);

/* ---- bus.c (events: outbox in LMDB, subscriber positions, delivery over nng) ------ */

/* Open the outbox and positions databases (_core/outbox, _core/subscribers) and the nng
 * transport. Before the plugins' init (they subscribe during it). */
int zt__bus_open(zt_server *srv, char *err, size_t errlen);
/* GET /admin/bus and POST /admin/bus/skip (admin). */
int zt__bus_routes(zt_server *srv, char *err, size_t errlen);
/* After every plugin's init: give new subscribers their starting position (the newest
 * event), then start delivering (what is pending from before a restart goes first). */
int zt__bus_start(zt_server *srv, char *err, size_t errlen);
/* Write an event into the outbox in t (timer.c uses it; zt_emit is this for a zt_req).
 * source: the plugin's name or "core"; reqid "" and timer NULL when none. */
int zt__bus_emit_txn(zt_server *srv, zt_txn *t, const char *source, const char *reqid,
                     const char *timer, const char *topic, const cJSON *payload);
/* A topic as zt.h defines it, which `plugin` (a name, or "core") may emit: topics starting
 * with "_" only under its own "_<plugin>". zt__topic_problem: why not ("is not a topic
 * (...)", "is another plugin's: ..."), a phrase to follow the topic; NULL if it may. */
const char *zt__topic_problem(const char *topic, const char *plugin);
/* The same for a subscription's pattern (zt_on): * is one word, ** the rest. */
const char *zt__pattern_problem(const char *pattern, const char *plugin);
bool zt__topic_ok(const char *topic, const char *plugin);
/* The batch committed: publish what it emitted; deliver. / The batch was lost: forget
 * what it emitted and any positions it advanced. */
void zt__bus_after_commit(zt_server *srv);
void zt__bus_after_abort(zt_server *srv);
/* Shutdown: stop delivering; close handles (the loop then ends). */
void zt__bus_stop(zt_server *srv);
void zt__bus_close(zt_server *srv);
/* Prometheus lines: per subscriber lag, deliveries, failures, retry state. */
int zt__bus_metrics(zt_server *srv, zt_buf *out);

/* ---- post.c (zt_post: work handed to the loop from other threads) ------------------ */

/* Before the plugins' init (they may post from it: the work waits for the start). */
int zt__posts_open(zt_server *srv, char *err, size_t errlen);
/* With the loop serving: run what was posted, and from now on as it is posted. */
void zt__posts_start(zt_server *srv);
/* At shutdown, before the last commit: refuse new work, run what is queued. */
void zt__posts_stop(zt_server *srv);
/* Before the plugins' fini: refuse new work; what is queued gets job NULL. */
void zt__posts_close(zt_server *srv);
/* After the plugins' fini (their threads have stopped). */
void zt__posts_free(zt_server *srv);

/* ---- timer.c (durable timers) --------------------------------------------------- */

/* Open _core/timers (by due time) and _core/timer_ids (id → due key). */
int zt__timers_open(zt_server *srv, char *err, size_t errlen);
/* Arm the earliest timer (and fire what fell due while the node was down). */
void zt__timers_start(zt_server *srv);
/* A batch committed (it may have set earlier timers) / was lost (forget what it set). */
void zt__timers_after_commit(zt_server *srv);
void zt__timers_after_abort(zt_server *srv);
/* The clock moved (test mode): re-arm against the new time. */
void zt__timers_clock_moved(zt_server *srv);
void zt__timers_stop(zt_server *srv);
void zt__timers_close(zt_server *srv);
/* Prometheus lines: pending timers, fired, next due. */
int zt__timers_metrics(zt_server *srv, zt_buf *out);
/* zt_audit_head_seq, zt_audit_checkpoint_seq, zt_audit_checkpoint_failures_total. */
int zt__audit_metrics(zt_server *srv, zt_buf *out);

/* _core/meta: the core's own small values (the node key, "activity_since",
 * "audit_syslog"), opened with the seals (also for the offline commands). */
zt_db *zt__core_meta(zt_server *srv);

/* ---- syslog.c: the audit log sent on to a log collector (audit.syslog) -------------- */

typedef struct zt_syslog zt_syslog;
/* Start sending (nothing without audit.syslog); ZT_OK or why not, in err. */
int zt__syslog_start(zt_server *srv, char *err, size_t errlen);
/* For `check`: the TLS files of audit.syslog read as a start reads them (ZT_OK, or why
 * not at the config's line, in err). */
int zt__syslog_check(const zt_conf *c, char *err, size_t errlen);
/* Keep the position the collector acknowledged and close the connection. */
void zt__syslog_stop(zt_server *srv);
/* A batch committed: send its records. */
void zt__syslog_after_commit(zt_server *srv);
int zt__syslog_metrics(zt_server *srv, zt_buf *out);
/* The last record the collector acknowledged, as t holds it (ZT_ENOTFOUND: never sent). */
int zt__syslog_confirmed(zt_server *srv, zt_txn *t, uint64_t *seq);

/* ---- service.c (services between plugins) --------------------------------------- */

/* After every plugin's init: every `needs` of every plugin is provided; otherwise err
 * names the plugin, the service and what to do (ZT_ENOTFOUND). Logs unmet `wants`. */
int zt__services_check(zt_server *srv, char *err, size_t errlen);
void zt__services_free(zt_server *srv);
/* 1 if an enabled, running plugin provides the service (zt_call's ZT_ENOTFOUND can also be
 * the service's own answer). */
bool zt__service_provided(const zt_server *srv, const char *name);
/* Inside a service: why it fails, for its caller (req->call_fail.msg, which zt_call keeps
 * only if the service then returns an error). */
void zt__call_fail(zt_req *req, const char *msg);
/* 1 if s is a service name as zt.h defines it (1..64 bytes of [A-Za-z0-9_.-]). */
bool zt__service_name_ok(const char *s);
/* The plugin whose code runs for req, that its events and timers belong to: the service
 * being called (zt_call), else the job's plugin, else the route's; NULL: the core. */
zt_plugin *zt__req_plugin(const zt_req *req);
/* The request's transaction for a write: ZT_EREADONLY for a reading request (or a
 * transaction that cannot write), ZT_EIO when none can begin. */
int zt__req_write_txn(zt_req *req, zt_txn **t);
/* End a request's or a job's work: its transaction (if any) is kept (commit) with its audit
 * record queued for the batch (audit), or dropped. Returns ZT_OK; ZT_ENOMEM when the record
 * could not be queued (then nothing is kept); or the store's error when keeping the writes
 * failed (logged). *in_batch: whether its answer must wait for the batch's commit. */
int zt__req_end_txn(zt_server *srv, zt_req *req, bool commit, bool audit, bool *in_batch);

/* ---- static.c ------------------------------------------------------------------ */

/* Serve a file under web_dir for GET/HEAD of path (index.html for folders). Returns
 * ZT_ENOTFOUND if there is no such file (the caller then answers 404). */
int zt__static_serve(zt_server *srv, zt_req *req);

/* ---- crypto.c (node keys, seal key material, encodings) ----------------------- */

/* The node's keys: a master key from the key file and one sub-key per purpose derived
 * from it. Held in locked, read-only memory (sodium_malloc); never copied elsewhere. Once
 * open, the keys never change, so any thread may use them. */
typedef struct zt_keys zt_keys;

/* Open the master key file at `path`; when there is none, create it: 32 random bytes,
 * mode 0600, in a folder created 0700 if missing, published atomically (a temporary file,
 * fsync, link to the final name, fsync of the folder), so processes starting together
 * all end up with the one key that won. Refused, with the reason and the fix in err:
 * a file that group or others may access (ZT_EPERM), that is not a regular file or is
 * not 32 bytes long (ZT_EINVAL); I/O failures are ZT_EIO. Initialises libsodium. */
int zt__keys_open(const char *path, zt_keys **out, char *err, size_t errlen);
/* Wipe and free; NULL is ignored. */
void zt__keys_close(zt_keys *k);
/* Derive a key for a purpose of the caller's own: ctx is 8 characters naming it (not one
 * of crypto.c's: "ztfield_", "ztindex_", "ztseal__"), id a version; 16 <= len <= 64.
 * The caller keeps the result secret and wipes it (sodium_memzero) when done. */
/* The seal of a stored record: a keyed BLAKE2b-128 over `space` (the database's name, with
 * its NUL), the key's length (8 bytes, big-endian), the key and the value, so that no record
 * holds under another key or in another database. Used by the identity records (auth.c) and
 * the sealed databases (store.c). */
void zt__seal_tag(const unsigned char key[32], const char *space, const void *k, size_t klen,
                  const void *v, size_t vlen, unsigned char out[16]);
int zt__keys_derive(const zt_keys *k, const char ctx[8], uint64_t id, unsigned char *out,
                    size_t len);

/* Seal (Ed25519) key material. A sealed secret key is, byte by byte:
 *   version (1) | public key (32) | nonce (24) | XChaCha20-Poly1305(seed) (32 + 16)
 * encrypted under the seal sub-key, with version and public key as associated data; the
 * public key can be read from bytes 1..32. It may be stored anywhere (LMDB): without the
 * key file it reveals nothing. */
#define ZT__SEALED_SK_BYTES 105
/* Make a key pair. *sealed_len: in, the room in sealed_sk (at least ZT__SEALED_SK_BYTES);
 * out, the bytes written. ZT_ETOOBIG if the room is short. The secret key exists in clear
 * only in locked memory inside this call. */
int zt__seal_keygen(zt_keys *k, unsigned char pk[32], unsigned char *sealed_sk, size_t *sealed_len);
/* Sign msg with a sealed secret key (decrypted into locked memory, wiped before return).
 * ZT_EINVAL if the sealed key is malformed, tampered with, or sealed under another
 * master key. */
int zt__seal_sign(zt_keys *k, const unsigned char *sealed_sk, size_t sealed_len, const void *msg,
                  size_t len, unsigned char sig[64]);
/* Whether a sealed secret key (Ed25519 or SM2) opens under this master key (and so was
 * made with the public key it carries): ZT_OK, else ZT_EINVAL as zt__seal_sign. No
 * signature is made. */
int zt__seal_opens(zt_keys *k, const unsigned char *sealed_sk, size_t sealed_len);

/* SM2 seal keys (国密: GB/T 32918.2 signatures over SM3, GB/T 32905), through OpenSSL.
 * Sealed as an Ed25519 key is, byte by byte:
 *   version (2) | public key (65: 04 | X | Y) | nonce (24) | XChaCha20-Poly1305(d) (32 + 16)
 * d the private scalar, in clear only in locked memory and OpenSSL's key while it signs.
 * Signatures are DER (GM/T 0009-2012: SEQUENCE of r, s; at most ZT__SM2_SIG_MAX bytes)
 * over SM3 with the default distinguishing ID "1234567812345678". */
#define ZT__SM2_PK_BYTES     65
#define ZT__SEALED_SM2_BYTES 138
#define ZT__SM2_SIG_MAX      72
int zt__sm2_keygen(zt_keys *k, unsigned char pk[ZT__SM2_PK_BYTES], unsigned char *sealed,
                   size_t *sealed_len);
int zt__sm2_sign(zt_keys *k, const unsigned char *sealed, size_t sealed_len, const void *msg,
                 size_t len, unsigned char sig[ZT__SM2_SIG_MAX], size_t *siglen);
/* ZT_OK if sig is pk's SM2 signature of msg; ZT_EINVAL otherwise. */
int zt__sm2_verify(const unsigned char pk[ZT__SM2_PK_BYTES], const void *msg, size_t len,
                   const unsigned char *sig, size_t siglen);
/* The public key as a PEM SubjectPublicKeyInfo (what `openssl pkeyutl -pubin` reads). */
int zt__sm2_pem(const unsigned char pk[ZT__SM2_PK_BYTES], char *out, size_t cap);
/* SM3 (GB/T 32905) of in. */
void zt__sm3(const void *in, size_t len, unsigned char out[32]);

/* Hex (lower case) and base64url (RFC 4648 section 5, no padding), in constant time
 * (they carry tokens and keys). Encoders write a NUL-terminated string into `out`, which
 * holds 2*len+1 or ZT__B64URL_LEN(len) bytes. Decoders read exactly slen characters
 * (upper- or lower-case hex; the base64url alphabet without padding, whitespace or
 * stray bits) into out, which holds cap bytes, and set *outlen: ZT_EINVAL for anything
 * else, ZT_ETOOBIG when cap is short. */
#define ZT__B64URL_LEN(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0) + 1)
void zt__hex(char *out, const void *bin, size_t len);
int zt__hex_decode(void *out, size_t cap, const char *s, size_t slen, size_t *outlen);
void zt__b64url_encode(char *out, const void *bin, size_t len);
int zt__b64url_decode(void *out, size_t cap, const char *s, size_t slen, size_t *outlen);

/* ---- server.c ------------------------------------------------------------------ */

typedef struct zt_metrics zt_metrics;

/* ---- batch.c: how long the group commit waits for its writers ---------------------- */

/* Committing at the end of every loop iteration splits a stream of writes from many
 * connections into two alternating halves: those answered by the last commit are not back
 * yet when the next batch commits. So the open batch may wait, at most limits.commit_wait,
 * for the connections that wrote in one of the two batches before it and have not written
 * in it yet; then one commit serves them all. A lone writer, writes further apart than
 * commit_wait, and a stopping node never wait. Answers still go out only after their
 * commit; what waits is the commit (and so those answers). */
typedef struct zt__batchwait {
    uint64_t seq;         /* the open (or next) batch's number, from 1 */
    uint64_t open_ns;     /* when the open batch was first seen open (0: not yet) */
    uint64_t last_end_ns; /* when the batch before it ended */
    size_t joined;        /* connections with a write in the open batch */
    size_t again;         /* of those, the ones with a write in the batch before too */
    size_t prev;          /* connections with a write in the batch before */
    size_t expected;      /* connections with a write in one of the two batches before */
    bool waiting;         /* the open batch has waited */
    uint64_t waited;      /* batches that waited */
    uint64_t timed_out;   /* of those, the ones that waited the whole commit_wait */
} zt__batchwait;

void zt__bw_init(zt__batchwait *bw);
/* A connection whose last write was in batch *wrote_in (0: never) writes in the open one;
 * *wrote_in becomes its number. */
void zt__bw_join(zt__batchwait *bw, uint64_t *wrote_in);
/* A connection whose last write was in batch wrote_in is gone: it will not be back. */
void zt__bw_gone(zt__batchwait *bw, uint64_t wrote_in);
/* With a batch open, at now_ns: 0 to commit it now, else at most how many ns more it
 * waits (max_ns: limits.commit_wait; 0 never waits). */
uint64_t zt__bw_wait(zt__batchwait *bw, uint64_t now_ns, uint64_t max_ns);
/* The open batch ended (committed or lost) at now_ns. */
void zt__bw_end(zt__batchwait *bw, uint64_t now_ns);

struct zt_server {
    uv_loop_t *loop;
    zt_conf *conf;
    zt_store *store;
    zt_router *router;
    zt_plugin **plugins; /* in dependency (init) order */
    size_t nplugins;
    zt_lua_host *lua;
    struct zt_keys *keys; /* the node's keys (crypto.c); plugins reach them through srv */
    zt_metrics *metrics;
    zt_auth *auth;
    zt_roles *roles;
    zt_audit *audit;
    zt_seals *seals;
    zt_bus *bus;
    zt_timers *timers;
    zt_services *services;
    zt_repl *repl;      /* the replication server (repl.c); NULL: off */
    zt_syslog *syslog;  /* the audit log's collector (syslog.c); NULL: none */
    zt_posts *posts;    /* zt_post's queue (post.c) */
    zt_throttle *rates; /* zt_rate_*: plugins' limits per client (made on first use) */
    bool check_only;    /* `zhengtong check`: no first-start account, no side effects */
    bool lua_tests;     /* `zhengtong test`: Lua plugins get their state, but no init.lua runs */
    /* an offline command that changes the data (admin, audit prune, a backup's record):
     * zt__server_open_core refuses a standby's folder (ZT_ESTATE) before anything is
     * written; standby_of then names its primary */
    bool changes;
    char standby_of[256];
    uint64_t started_ns;
    bool stopping;
    uint64_t stop_began_ms;
    uv_check_t commit_check;
    uv_timer_t commit_timer; /* ends a batch's wait for its writers (batch.c) */
    zt__batchwait bw;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t shutdown_timer;
    void *http;                  /* http.c's state: listeners, connection list */
    char route_error[ZT_ERRLEN]; /* a declaration refused in init (zt__refuse_start) */
    zt_req **batch_reqs;         /* requests whose answers wait for the batch commit */
    size_t nbatch, capbatch;
    uint64_t iteration; /* loop iterations ended (on_check): what was read in one holds in it */
};

/* Open the store in data_dir, declare the built-in routes, load and init the plugins,
 * check that every service needed is provided (not with srv->lua_tests: the Lua providers
 * did not start). srv->loop must be set. On failure, err says why; call zt__server_close either
 * way. */
int zt__server_open(zt_server *srv, zt_conf *conf, const char *data_dir, char *err, size_t errlen);
/* Only the core's own services (keys, store, seals, audit, identity): for the offline
 * commands (admin, audit verify). */
int zt__server_open_core(zt_server *srv, zt_conf *conf, const char *data_dir, char *err,
                         size_t errlen);
/* For `check`: whether the key file is the master key of the data in conf's data_dir, as
 * serve would find (the same errors); ZT_OK if the folder holds no data yet. It writes
 * nothing: no key file is made, no check value noted. */
int zt__server_check_key(const zt_conf *conf, char *err, size_t errlen);
/* Listen on every configured address, handle SIGINT/SIGTERM (stop) and SIGHUP (logged,
 * ignored: there is no reload), start the commit check,
 * then make the first account if the store has none (zt__auth_bootstrap). Then
 * uv_run(srv->loop) serves until a signal has stopped everything. */
int zt__server_listen(zt_server *srv, char *err, size_t errlen);
/* fini the plugins (reverse order), close the store, free what open made. */
void zt__server_close(zt_server *srv);

/* http.c calls these. */
/* After the request line and headers: route the request (fills req->match, route_rc).
 * Returns the body limit for it. */
size_t zt__server_route(zt_server *srv, zt_req *req);
/* After the whole request: run it (answering at once or later). */
void zt__server_handle(zt_server *srv, zt_req *req);
/* When the response has been written or the connection died: metrics, log. */
void zt__server_done(zt_server *srv, zt_req *req);

/* (request.c) zt_respond without the copy: body (malloc'd; NULL when len is 0) becomes the
 * response's, and is freed on an error too (ZT_ESTATE, ZT_EINVAL as zt_respond). ctype must
 * outlive the request (a literal, or request memory). */
int zt__respond_take(zt_req *req, int status, const char *ctype, char *body, size_t len);

/* Answer with a problem, for the core's own errors. */
void zt__problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- luatest.c (the scratch node of check and test; the Lua test runner) --------- */

/* A node on a scratch data folder and key in $TMPDIR (zhengtong-<what>-XXXXXX), so that
 * check and test never touch live data. */
typedef struct zt_scratch {
    zt_server srv;
    uv_loop_t loop;
    char dir[3100]; /* "" until made */
} zt_scratch;
/* Make the folder and open the node on it (check_only): as zt__server_open does, or with
 * lua_tests so that no Lua plugin's init.lua runs (nor the services check, as the Lua
 * providers did not start). On failure err says why; call zt__scratch_close either way. */
int zt__scratch_open(zt_scratch *s, zt_conf *conf, const char *what, bool lua_tests, char *err,
                     size_t errlen);
/* Close the node, run its loop out, remove the folder. */
void zt__scratch_close(zt_scratch *s);
/* `zhengtong test [PLUGIN...]`: run lua_dir/plugins/<name>/tests/<file>.lua of the named Lua
 * plugins (none: every Lua plugin of the config with a tests/ folder), each file on a
 * scratch node of its own; TAP-like lines on stdout. Returns the exit status: 0 all passed,
 * 1 a test failed, a file did not load or a node did not start, 2 a name that is not a
 * Lua plugin of the config with a tests/ folder. */
int zt__luatest(zt_conf *conf, char **names, int nnames);

/* metrics.c */
int zt__metrics_new(zt_metrics **out, size_t nroutes);
void zt__metrics_free(zt_metrics *m);
void zt__metrics_request(zt_metrics *m, int route_idx, int status, uint64_t ns);
/* Prometheus text exposition of everything. */
int zt__metrics_render(zt_server *srv, zt_buf *out);

#endif /* ZT_CORE_H */
