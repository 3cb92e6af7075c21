/* zt.h: the one header a Zhengtong C plugin includes (plugin ABI and platform API). */
#ifndef ZT_H
#define ZT_H

/*
 * Conventions, for every function below unless its comment says otherwise:
 *
 * - Errors are returned as a negative ZT_E* code; 0 (ZT_OK) is success. There is no
 *   hidden global error state. zt_strerror() names a code.
 * - Every function runs on the event loop thread. None is thread-safe.
 * - "During init" means from the plugin's init() until it returns. Routes and databases
 *   can be declared only then (ZT_ESTATE otherwise).
 * - Memory returned as `const char *` or `const void *` is owned by the core: by the
 *   request (freed when its response has been sent), by the transaction (valid until the
 *   transaction ends or the next write in it), or by the plugin (valid until fini), as
 *   each function says. Never free it.
 * - JSON is cJSON (libcjson). Objects the core returns are owned by the core; objects
 *   passed to the core are only read.
 */

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes, "2.1": ZT_ABI_VERSION.ZT_ABI_MINOR. A plugin built for
 * another ZT_ABI_VERSION is refused at load. Within one, nothing of this header is taken
 * away or changed, and ZT_ABI_MINOR grows with every function, type, field or constant it
 * gains: a node has all that a plugin built for its minor or a lower one can use, and
 * refuses a plugin built for a higher one with "plugin 'x' (...) was built for zhengtong
 * plugin ABI 2.2; this node has 2.1: upgrade the node", rather than with dlopen's
 * "undefined symbol" for a function it lacks (or silence for a field it would not read).
 * Plugins built before the minor was counted read as 2.0, which every node of ABI 2 loads.
 * A new ZT_ABI_VERSION starts its minors at 1. */
#define ZT_ABI_VERSION 2
#define ZT_ABI_MINOR   1

/* ---- errors -------------------------------------------------------------------- */

#define ZT_OK        0
#define ZT_ERROR     (-1)  /* unspecified failure; the log says more */
#define ZT_ENOMEM    (-2)  /* out of memory */
#define ZT_EINVAL    (-3)  /* invalid argument or malformed input */
#define ZT_ENOTFOUND (-4)  /* no such key, route, option, record */
#define ZT_EEXIST    (-5)  /* already exists */
#define ZT_EREADONLY (-6)  /* write attempted in a read-only transaction */
#define ZT_EFULL     (-7)  /* storage map full */
#define ZT_ETOOBIG   (-8)  /* key or value too large */
#define ZT_ECONFLICT (-9)  /* conflicting declaration (route claimed twice, ...) */
#define ZT_EPERM     (-10) /* not allowed (another plugin's database, ...) */
#define ZT_EIO       (-11) /* storage or system I/O failure */
#define ZT_ESTATE    (-12) /* called at the wrong time (route added after init, ...) */
#define ZT_EBUSY     (-13) /* resource busy or exhausted (too many cursors, readers) */

/* A short English description of an error code. Static storage. */
const char *zt_strerror(int err);

/* ---- plugins ------------------------------------------------------------------- */

typedef struct zt_plugin zt_plugin;
typedef struct zt_req zt_req;

/* Option types a plugin can declare. */
enum zt_opt_type {
    ZT_OPT_STRING = 1, /* Lua string */
    ZT_OPT_INT,        /* Lua integer (a float with an integral value is accepted) */
    ZT_OPT_NUMBER,     /* Lua number */
    ZT_OPT_BOOL,       /* Lua boolean */
    ZT_OPT_LIST,       /* Lua sequence of strings */
};

/* One option a plugin takes. The config table named after the plugin may hold only
 * declared options; each value is checked against its type before anything starts. */
typedef struct zt_option {
    const char *name;
    int type;                /* enum zt_opt_type */
    const char *def;         /* default, written as text ("100", "true", "a,b" for lists);
                                NULL: no default (then the option is required if .required) */
    int required;            /* 1: the config must set it (when def is NULL) */
    const char *description; /* one line, shown by `zhengtong check` and GET /api */
} zt_option;

/* The descriptor a C plugin exports as `zt_plugin_descriptor` (use ZT_PLUGIN(), which
 * fills abi and abi_minor from this header). `abi` must stay the first member: the core
 * reads it before anything else. */
typedef struct zt_plugin_def {
    int abi; /* ZT_ABI_VERSION */
    /* ZT_ABI_MINOR. It sits where descriptors made before it had padding (an int before a
     * pointer, on the 64-bit platforms the node builds for), which compilers write as
     * zero: theirs read as minor 0, and the members after it did not move. */
    int abi_minor;
    const char *name;            /* must equal the .so file name without ".so" */
    const char *version;         /* the plugin's own version, e.g. "1.2.0" */
    const char *description;     /* one line */
    const char *const *requires; /* NULL-terminated names of required plugins, or NULL */
    const zt_option *options;    /* terminated by an entry with name == NULL, or NULL */
    /* Services (see zt_call) the plugin calls, NULL-terminated, or NULL. `needs`: the node
     * refuses to start (and `zhengtong check` fails) when no enabled plugin provides one;
     * `wants`: optional, the plugin copes when zt_call says ZT_ENOTFOUND. */
    const char *const *needs;
    const char *const *wants;
    /* Called once, in dependency order, before the node serves. Declare routes and
     * databases here. Return ZT_OK, or an error code after zt_log()ging why: the node
     * then refuses to start, naming the plugin. */
    int (*init)(zt_plugin *p);
    /* Called once at shutdown, in reverse order, only if init succeeded. May be NULL. */
    void (*fini)(zt_plugin *p);
} zt_plugin_def;

#define ZT_PLUGIN(...)                                                                             \
    __attribute__((visibility("default")))                                                         \
    const zt_plugin_def zt_plugin_descriptor = {ZT_ABI_VERSION, ZT_ABI_MINOR, __VA_ARGS__}

/* The plugin's name. Owned by the core. */
const char *zt_plugin_name(const zt_plugin *p);
/* A pointer the plugin keeps for itself; the core never reads it. */
void zt_plugin_set_data(zt_plugin *p, void *data);
void *zt_plugin_data(const zt_plugin *p);
/* 1 when the node only checks itself and will never serve: `zhengtong check`, and the
 * scratch nodes of `zhengtong test`; 0 for `zhengtong serve`. init runs then as for a
 * start (on a scratch store), and checks every option as it would for a start; but a node
 * may be serving with this very config meanwhile (the upgrade steps check while it runs),
 * so init must do nothing that is seen outside the process: no listening (the address is
 * the live node's), no connecting (a broker would hand the live node's client id to the
 * check), no writing outside its databases. Check what can be checked without it: an
 * address parses, a port is in range, a file is readable. */
int zt_check_only(const zt_plugin *p);

/* Declared options, after defaults. Asking for an undeclared option, or with the wrong
 * type, is a bug in the plugin: it returns NULL / 0 / 0.0 / 0 and logs an error. */
/* For init: an option's value is wrong in a way its type cannot say (out of range, a file
 * that is not there, a date that does not exist). Logs and records
 * "FILE:LINE: plugin.option: message" (the line where the config sets it, or its plugin's
 * table when it is the default), which the node prints as the reason it did not start, as
 * for its own settings; the node does not start even if init goes on and returns ZT_OK.
 * Returns ZT_EINVAL: `return zt_option_fail(p, "page_size", "must be 1 to 100, not %lld",
 * (long long)n);` from init. */
int zt_option_fail(zt_plugin *p, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For init, in a plugin that listens on a TCP port of its own (a gateway socket, a
 * broker) at addr, the value of its option `name`: when the node itself listens there (a
 * `listen` address, or `bus.publish`: the same port, and the same host or either one
 * every address), fails the option as zt_option_fail does ("FILE:LINE: plugin.name:
 * 'tcp://0.0.0.0:8080' and listen '127.0.0.1:8080' are at the same port: ...") and returns
 * ZT_EINVAL; the start would otherwise fail at the bind with "address already in use",
 * which `zhengtong check` cannot see (it binds nothing). addr is "host:port", "[v6]:port",
 * or an nng URL of a TCP transport (tcp://, ws://, wss://, tls+tcp://, their 4 and 6
 * kinds), where an empty host or "*" is every address; a socket at [::] is taken to be
 * dual-stack (Linux's default, and nng's), so it collides with IPv4 listeners too.
 * ZT_OK otherwise, and for what it cannot judge (NULL, a host name, ipc://): the bind
 * says. Call it in check as at a start: it binds nothing. */
int zt_option_listen_apart(zt_plugin *p, const char *name, const char *addr);
const char *zt_opt_string(const zt_plugin *p, const char *name); /* NULL if unset */
int64_t zt_opt_int(const zt_plugin *p, const char *name);
double zt_opt_number(const zt_plugin *p, const char *name);
int zt_opt_bool(const zt_plugin *p, const char *name);
/* Lists: the number of items, and item i (0-based; NULL past the end). */
size_t zt_opt_list_len(const zt_plugin *p, const char *name);
const char *zt_opt_list_item(const zt_plugin *p, const char *name, size_t i);

/* ---- logging ------------------------------------------------------------------- */

enum zt_log_level { ZT_LOG_DEBUG = 0, ZT_LOG_INFO, ZT_LOG_WARN, ZT_LOG_ERROR };

/* One JSON object per line on stderr: time, level, plugin, message. Messages below the
 * configured level are dropped before formatting. Unlike the rest of this API it may be
 * called from any thread (a client library's callback): each line is formatted on the
 * caller's stack and written in one call. */
void zt_log(const zt_plugin *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, also naming the request id. */
void zt_req_log(zt_req *req, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- routes -------------------------------------------------------------------- */

/* Who may call a route. Any other string is a role name (issue: identity layer). */
#define ZT_ROLE_PUBLIC "public" /* anyone, no token */
#define ZT_ROLE_USER   "user"   /* any signed-in caller */

/* Returned by a handler that called zt_work(): the answer comes from its `done`. */
#define ZT_ASYNC 1

/* A request handler. It must respond (zt_respond*, zt_problem) before returning ZT_OK.
 * Returning an error code without responding makes the core answer 500 (or 507 for
 * ZT_EFULL, 503 for ZT_EBUSY and ZT_EIO). Whatever the handler wrote is kept only if it
 * returns ZT_OK with a status below 400; otherwise its transaction is aborted. So an error
 * code returned after a response below 400 (a failed second zt_respond's ZT_ESTATE
 * included) replaces that response with 500, which would otherwise say a change was made
 * that was not; a response of 400 or more stands. The log names the handler either way. */
typedef int (*zt_handler)(zt_req *req, void *ud);

typedef struct zt_route {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE"; GET also answers HEAD */
    const char *path;   /* "/notices", "/notices/:id"; a last segment "*" matches the rest
                           of the path, read as the parameter "*" */
    zt_handler handler;
    void *ud;            /* passed to the handler */
    const char *role;    /* ZT_ROLE_PUBLIC, ZT_ROLE_USER or a role name; NULL = ZT_ROLE_USER */
    size_t body_limit;   /* largest request body in bytes; 0 = the server's limit
                            (limits.body_bytes), so a limit of its own is 1 or more */
    const char *summary; /* one line for GET /api; may be NULL */
} zt_route;

/* Declare a route. During init only (ZT_ESTATE). The core copies everything it needs.
 * Errors: ZT_EINVAL (bad method, pattern or role name), ZT_ECONFLICT (the same method and path
 * shape is claimed already; the log names both plugins, and the node will not start). */
int zt_route_add(zt_plugin *p, const zt_route *r);

/* ---- requests ------------------------------------------------------------------ */

/*
 * A zt_req is a unit of work. Most are HTTP requests. The core also runs work that no
 * client asked for through the same type, so that storage, audit, identity, events and
 * services work the same way in both:
 *   - the delivery of an event to a subscriber (zt_on): method "EVENT", path the topic;
 *   - a timer firing is delivered as an event.
 * For such work zt_req_header, zt_req_query and zt_req_param return NULL, the body is the
 * event's payload as JSON text, the client is "internal", zt_req_caller is the system
 * caller (kind "system", login "system:<plugin>", no department, no roles), the
 * transaction is a write transaction in the batch, its changes are audited (actor
 * "system", plugin, action "EVENT <topic>" unless zt_audit_note names it), and zt_respond*
 * / zt_problem return ZT_ESTATE: the handler's return code is its answer.
 */

/* All strings below are NUL-terminated and owned by the request. */
const char *zt_req_method(const zt_req *req); /* "GET", "HEAD", "POST", ... */
const char *zt_req_path(const zt_req *req);   /* percent-decoded path, without the query */
/* A route parameter (":id" is asked for as "id"; the trailing * as "*"); NULL if none. */
const char *zt_req_param(const zt_req *req, const char *name);
/* A query-string parameter, percent-decoded (+ is a space); the first if repeated. */
const char *zt_req_query(const zt_req *req, const char *name);
/* A request header, case-insensitive; NULL if absent. */
const char *zt_req_header(const zt_req *req, const char *name);
/* The request body (after chunked decoding); *len gets its length. Never NULL. */
const char *zt_req_body(const zt_req *req, size_t *len);
/* The request id (also sent as X-Request-Id and written in logs and audit records). */
const char *zt_req_id(const zt_req *req);
/* The client address as text ("127.0.0.1"). */
const char *zt_req_client(const zt_req *req);
/* The body parsed as JSON (owned by the request). Strict: the body must be UTF-8, without
 * NUL ("\u0000" included), raw control characters in strings, unpaired surrogates,
 * repeated keys in an object or nesting deeper than 1000, and a Content-Type, if sent,
 * must be application/json (or a type ending in +json): a form or text/plain post from
 * another web site is not taken as JSON. ZT_EINVAL otherwise: the handler then answers
 * zt_req_json_problem(req). */
int zt_req_json(zt_req *req, cJSON **out);
/* Answer why zt_req_json refused the body: 415 unsupported-media-type for another
 * Content-Type, else 400 invalid-json with the reason and the byte where it was found.
 * Returns what zt_problem returns. */
int zt_req_json_problem(zt_req *req);
/* The body as a JSON object (owned by the request). When it is not one, answers as
 * zt_req_json_problem does (or 400 invalid-json "the body must be a JSON object") and
 * returns NULL: the handler then returns ZT_OK. */
cJSON *zt_req_object(zt_req *req);
/* Limits per client, for what a client may try only so often (guessing a query code,
 * sending a form that costs work): at most max attempts of `name` (the plugin's own word;
 * the table keeps each plugin's apart) by one client (an IPv4 address, an IPv6 /64;
 * behind trusted_proxies the forwarded client) in window_s seconds from the first.
 * zt_rate_wait: the seconds the client must wait before trying again (0: go ahead);
 * zt_rate_note: count one attempt and return the wait now in effect. Answer a wait with
 * 429 and Retry-After. Kept in memory, at most 65536 keys (as the sign-in lock's table:
 * full, it forgets first what no longer makes anyone wait); a restart forgets. */
int64_t zt_rate_wait(zt_req *req, const char *name, unsigned max, unsigned window_s);
int64_t zt_rate_note(zt_req *req, const char *name, unsigned max, unsigned window_s);
/* Memory that lives until the request is done; NULL when out of memory. */
void *zt_req_alloc(zt_req *req, size_t size);
/* printf into request memory. */
char *zt_req_printf(zt_req *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Run fn(arg) on a thread of the worker pool, then done(req, arg) back on the event loop;
 * the handler returns ZT_ASYNC right after a successful call. Use it for slow CPU work
 * (password hashing, image processing) so the loop keeps serving. fn must not call any
 * zt_ function. done answers like a handler (it may use zt_req_txn: a fresh transaction,
 * since none is held across the wait) and returns ZT_OK or an error code; it is called
 * even if the client has gone away (its answer is then dropped), so it can free arg. A
 * handler that returns anything else after a successful call is a bug (logged): the answer
 * still waits for done, and an error code it returned fails the request as if done had.
 * Errors: ZT_ESTATE (called twice, after responding, in an event's or a job's work, or in
 * a service: its caller goes on when it returns), ZT_ENOMEM, ZT_ERROR (the pool refused
 * it); then neither fn nor done is ever called. */
int zt_work(zt_req *req, void (*fn)(void *arg), int (*done)(zt_req *req, void *arg), void *arg);

/* ---- responses ----------------------------------------------------------------- */

/* Add a response header (copied). Errors: ZT_EINVAL (and a warning in the log) for a name
 * that is not an RFC 9110 token, a value with a control character other than tab, or a
 * header the core writes itself: Content-Length, Content-Type (zt_respond's ctype), Date,
 * X-Request-Id, Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade,
 * X-Content-Type-Options (nosniff, on every answer that is not JSON). Without a
 * Cache-Control of its own an answer to a signed-in caller says "Cache-Control: no-store". */
int zt_res_header(zt_req *req, const char *name, const char *value);
/* Respond with a body (copied). ctype NULL means no Content-Type. Responding twice is
 * ZT_ESTATE; a ctype with a control character is ZT_EINVAL. */
int zt_respond(zt_req *req, int status, const char *ctype, const void *body, size_t len);
/* Respond with JSON (application/json). */
int zt_respond_json(zt_req *req, int status, const cJSON *json);
/* Respond with an RFC 9457 problem (application/problem+json):
 *   type   a stable slug ("not-found", "invalid-json"); sent as "/problems/<slug>"
 *   title  a short, fixed summary of the type
 *   detail what went wrong with this request, for a person to act on (printf format)
 * The body also carries "status" and "request_id". */
int zt_problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- storage (LMDB) ------------------------------------------------------------ */

/*
 * One LMDB environment per node. A plugin opens its own named databases during init;
 * they are stored as "<plugin>/<name>", and no plugin can open another's. Keys are
 * ordered bytewise (encode integers big-endian to scan them in order); a key is 1..511
 * bytes.
 *
 * A handler reaches storage through its request's transaction:
 *   - GET and HEAD requests read a consistent snapshot and cannot write (ZT_EREADONLY);
 *   - other methods write in a transaction nested in the open batch: the batch of all
 *     requests of one loop iteration (or a few, see limits.commit_wait) commits once (one
 *     fsync, group commit), and only then do their responses go out. A response that says a change
 * was made means the change is on disk. A handler that fails (error return, or a status >= 400) has
 * its nested transaction aborted; the other requests of the batch are unaffected. Memory returned
 * by reads is valid until the transaction ends or the next write in it.
 */
typedef struct zt_db zt_db;
typedef struct zt_txn zt_txn;
typedef struct zt_cursor zt_cursor;

/* Open (creating if needed) the plugin's database `name` (1..64 of [A-Za-z0-9_.-]).
 * During init only. The handle is valid until the node stops; do not free it.
 * ZT_ESTATE for a database that is sealed (the log says so). */
int zt_db_open(zt_plugin *p, const char *name, zt_db **out);
/* The same, sealed (数据完整性 of important business data, GB/T 22239): every value is
 * stored with a keyed BLAKE2b-128 (a key derived from the master key) over the database's
 * name, its key and the value, and checked on every read: a value changed, added or copied
 * to another key outside the node (LMDB tools, a doctored backup) reads as ZT_EIO, from
 * zt_get and zt_cursor_seek (the cursor stands on it: ZT_NEXT goes on past it), is logged
 * once a minute per database naming its key, and counted (zt_store_seals_failed_total).
 * Reads and writes are otherwise the same (the seal is 16 bytes more on disk; a read or
 * write hashes the value). The first sealed open seals what the database holds, as it
 * stands, and marks it (with the audit record "seal database <plugin>/<name>: N" when it
 * held records): from then on it is only opened sealed (zt_db_open: ZT_ESTATE). */
int zt_db_open_sealed(zt_plugin *p, const char *name, zt_db **out);

/* The request's transaction (see above), begun on first use. NULL only on storage
 * failure (then respond 503). Ends with the request; never end it yourself. */
zt_txn *zt_req_txn(zt_req *req);
/* 1 if the transaction can write. */
int zt_txn_writable(const zt_txn *txn);

/* Read one key. ZT_ENOTFOUND if absent. */
int zt_get(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void **val, size_t *vlen);
/* Write one key (replacing any value). ZT_EREADONLY, ZT_EFULL, ZT_ETOOBIG, ZT_EINVAL. */
int zt_put(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void *val, size_t vlen);
/* Delete one key. ZT_ENOTFOUND if absent; ZT_EREADONLY. */
int zt_del(zt_txn *txn, zt_db *db, const void *key, size_t klen);

/* Ordered iteration. A cursor belongs to its transaction; close it when done (the core
 * closes any left open when the transaction ends). */
enum zt_seek {
    ZT_FIRST = 0, /* the smallest key */
    ZT_LAST,      /* the largest key */
    ZT_GE,        /* the smallest key >= the given key */
    ZT_NEXT,      /* the key after the current one */
    ZT_PREV,      /* the key before the current one */
    ZT_CURRENT,   /* the current key again */
};
typedef struct zt_kv {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
} zt_kv;
int zt_cursor_open(zt_txn *txn, zt_db *db, zt_cursor **out);
/* Move the cursor and read where it lands. `key` is read only for ZT_GE. ZT_ENOTFOUND
 * when there is no such key (past either end). */
int zt_cursor_seek(zt_cursor *c, int op, const void *key, size_t klen, zt_kv *out);
/* On a new cursor ZT_NEXT reads the first key and ZT_PREV the last. A move that finds
 * nothing leaves the cursor where it was (ZT_GE past the end leaves it after the last key,
 * so ZT_PREV then reads the last). A transaction holds at most 256 cursors (ZT_EBUSY). */
/* Delete the key under the cursor; the cursor then stands before the next key
 * (ZT_NEXT reads it; ZT_CURRENT is then ZT_ENOTFOUND). ZT_EREADONLY in a read
 * transaction. */
int zt_cursor_del(zt_cursor *c);
/* Close a cursor. One left open is closed when its transaction ends (the request's, or a
 * service call's savepoint): its pointer is then no longer valid, not even for
 * zt_cursor_close. Close cursors where they were opened. */
void zt_cursor_close(zt_cursor *c);

/* ---- identity (统一身份认证) ----------------------------------------------------- */

/* Who is calling. The core checks the route's role before the handler runs (no or bad
 * token → 401, a missing role → 403), so a handler of a non-public route always has a
 * caller. All strings are owned by the request. */
typedef struct zt_caller {
    const char *id;         /* the account's id (a zt_id) */
    const char *kind;       /* "staff", "citizen", "enterprise" or "device" (an API key) */
    const char *login;      /* the login name */
    const char *name;       /* the person's or enterprise's name */
    const char *department; /* staff: the department code; NULL otherwise */
    const char *const *roles;
    size_t nroles;
    const char *plugin; /* a device's key is bound to one plugin's routes; NULL otherwise */
    /* an enterprise: its unified social credit code (统一社会信用代码), validated at
     * registration, one account per code; NULL for other callers. What an enterprise does
     * under its code takes it from here, never from what the request says. */
    const char *credit_code;
    /* the security label the caller is cleared for (see "security labels"): a staff
     * account's or API key's, the lowest label for citizens and enterprises, the highest
     * for the system caller */
    const char *clearance;
} zt_caller;

/* The caller, or NULL on a public route called without a (valid) token, or with one the
 * core holds back on other routes (a one-time or expired password, a second factor not
 * set up, an API key of another plugin). */
const zt_caller *zt_req_caller(zt_req *req);
/* 1 if the caller holds the role. */
int zt_caller_has_role(const zt_caller *c, const char *role);
/* Declare a role the plugin's code checks (with zt_caller_has_role), and what it lets its
 * holders do (text of 1 to 200 characters, or NULL). Accounts and API keys are given only
 * roles the node knows: the core's, the enabled plugins' and those county IT adds
 * (POST /admin/roles), so a misspelt role is refused where it is granted. A route's role
 * is declared by the route itself (with no description: declare it too, to say what it
 * is for); declare the others, in init. A role declared twice, by one plugin or two, is
 * one role: the first description stays, and the plugin that gave it is its owner in GET
 * /admin/roles. ZT_EINVAL for a name that is no role name (1 to 64 of a-z 0-9 _ . - from
 * a letter; not "public" or "user", which no one is given) or a description that is no
 * such text. */
int zt_role_declare(zt_plugin *p, const char *role, const char *description);
/* 1 if department code `dept` is the caller's department or below it in the department
 * tree (county → bureau → section): the scope of what a staff member may see. 0 for
 * callers with no department and for unknown codes. Reads the request's transaction. */
int zt_req_in_scope(zt_req *req, const char *dept);
/* 1 if department `dept` is `scope` or below it in the department tree; 0 otherwise, and
 * for unknown codes. zt_req_in_scope(req, d) is zt_req_dept_within(req, d, caller's). */
int zt_req_dept_within(zt_req *req, const char *dept, const char *scope);
/* The account whose login is `login` (or whose id it is), as a caller (strings owned by
 * the request), read in the request's transaction: for a plugin to check whom it hands
 * work to (a task delegated) as the core checks a caller. ZT_ENOTFOUND: no such login, or
 * the account is disabled (it can do nothing); ZT_EIO: it could not be read. */
int zt_req_account(zt_req *req, const char *login, const zt_caller **out);

/* Security labels (安全标记; GB/T 22239 access control g: important subjects and objects
 * carry labels, and a subject reaches a labelled object only as far as its label allows).
 * County IT lists the labels in auth.labels, lowest first (by default "public" <
 * "internal" < "sensitive"). Every staff account and API key has a clearance, one of them
 * (auth.default_clearance unless an administrator gives another); citizens and
 * enterprises have the lowest; the system caller (timers, events, jobs) has the highest.
 * A plugin gives what it keeps a label (a case, a document) and shows or changes a
 * labelled thing only to callers cleared for it, beside its own rules (an applicant reads
 * their own application whatever its label). Labels are names; compare them only through
 * these functions: a county may add one between two others. */
/* The label's level: 0 for the lowest, up to the number of labels - 1; ZT_EINVAL for NULL
 * or a name auth.labels does not list. */
int zt_label_level(zt_plugin *p, const char *label);
/* 1 if caller c (NULL: no one signed in) is cleared for `label`: its clearance's level is
 * the label's or higher. The lowest label is cleared for everyone, NULL included; a label
 * not listed for no one (fail closed); a clearance no longer listed clears the lowest only. */
int zt_caller_clears(zt_plugin *p, const zt_caller *c, const char *label);
/* zt_caller_clears for the request's caller. */
int zt_req_clears(zt_req *req, const char *label);

/* ---- audit --------------------------------------------------------------------- */

/* Every successful request other than GET/HEAD is recorded in the audit log, in the same
 * transaction as its change: actor, plugin, action, object, request id, client address,
 * chained by hash. By default the action is "<METHOD> <route pattern>" and the object
 * the path; a handler names them better with this (copied). In a GET or HEAD it records
 * the read: a successful answer then goes out only once its record is on disk (as a
 * change's does; if the record cannot be written, the caller gets a 5xx, not the data).
 * For reads of personal data by someone other than its subject (staff opening a
 * citizen's application), not for every read: each costs a durable write. */
void zt_audit_note(zt_req *req, const char *action, const char *object);

/* ---- events (the bus) -------------------------------------------------------------- */

/*
 * Topics are dot-separated words ("workflow.task.created"): 1..128 bytes of
 * [A-Za-z0-9_-] words separated by single dots. Topics starting with "_" are a plugin's
 * own: only that plugin can subscribe to "_<plugin>.*" (timers use them).
 *
 * Delivery guarantee: an event emitted in a transaction is written to the outbox in that
 * transaction, so it exists only if the change that emitted it committed. Each subscriber
 * has a position in the outbox, kept in LMDB: it receives every matching event committed
 * after it first subscribed, in emission order, at least once, across restarts. The
 * handler runs in a write transaction of its own (a zt_req of method "EVENT") that also
 * advances its position: the handler's changes and "this event is done" commit together,
 * so a handler whose changes are only in the node's storage sees each event once. A handler
 * that fails (returns an error) has its changes rolled back and gets the same event again
 * later, with backoff (1 s doubling to 5 min); meanwhile the subscriber's later events wait
 * (order), other subscribers go on. /metrics shows each subscriber's lag and failures.
 */

/* What a subscriber receives. Owned by the core, valid during the handler. */
typedef struct zt_event {
    uint64_t seq;           /* position in the outbox: increasing, never reused */
    const char *topic;      /* the topic it was emitted with */
    const cJSON *payload;   /* the JSON value emitted (any JSON value; null if none) */
    int64_t time_ms;        /* when the emitting transaction ran (zt_now_ms) */
    const char *source;     /* the emitting plugin's name, or "core" */
    const char *request_id; /* the request that emitted it, or "" */
    const char *timer;      /* the id of the timer that fired it (zt_timer_at), or NULL */
    unsigned attempt;       /* 1 the first time, then 2, 3, ... after failures */
} zt_event;

/* Return ZT_OK when the event has been handled; any error: roll back, retry later. */
typedef int (*zt_event_fn)(zt_req *ctx, const zt_event *ev, void *ud);

/* Subscribe during init. pattern: a topic, where a word "*" matches any one word and a
 * last word "**" matches one or more words ("workflow.task.*", "sensor.**"). A plugin
 * subscribes to one pattern once; its position is kept under (plugin, pattern), so a
 * pattern that changes starts afresh from the newest event.
 * Errors: ZT_ESTATE (after init), ZT_EINVAL (bad pattern; another plugin's "_" topics),
 * ZT_EEXIST (the plugin subscribed to that pattern already), ZT_ENOMEM. */
int zt_on(zt_plugin *p, const char *pattern, zt_event_fn fn, void *ud);

/* Emit an event in the work's transaction (see the delivery guarantee above): it is
 * delivered only if that transaction commits, after the commit. payload may be NULL (sent
 * as null); it is copied. Errors: ZT_EINVAL (bad topic, or another plugin's "_" topic),
 * ZT_EREADONLY (in a GET), ZT_ETOOBIG (payload over 256 KiB), ZT_EFULL, ZT_EIO. */
int zt_emit(zt_req *req, const char *topic, const cJSON *payload);

/* ---- durable timers -------------------------------------------------------------- */

/* At time due_ms (zt_now_ms), emit event `topic` with `payload`, as the plugin that set it
 * (zt_event.source) with zt_event.timer = the id. The timer is written in the work's
 * transaction (it exists only if that commits) and kept in LMDB ordered by due time; only
 * the next one is armed, so pending timers cost no memory. A timer due while the node was
 * down fires once after the start; a due time in the past fires at once. id (27 bytes,
 * may be NULL) receives the timer's id. Errors as zt_emit. */
int zt_timer_at(zt_req *req, int64_t due_ms, const char *topic, const cJSON *payload, char id[27]);
/* Cancel a pending timer set by the same plugin, in the work's transaction. ZT_ENOTFOUND
 * if there is no such pending timer (fired already, cancelled, another plugin's). */
int zt_timer_cancel(zt_req *req, const char *id);

/* ---- services between plugins ---------------------------------------------------- */

/*
 * A service is a named function a plugin offers others ("credit.check"): synchronous, run
 * inside the caller's transaction (its writes commit or roll back with the caller's), with
 * the caller's zt_req (so the caller's identity, request id and audit apply). Each call is
 * one piece: when the service fails, what it wrote (records, events, timers, its audit
 * note) is undone and the caller's work goes on as before the call; when it succeeds, it
 * stays with the caller's. The caller answers its client: in a service zt_respond*,
 * zt_problem, zt_res_header and zt_work are ZT_ESTATE. Cursors a service leaves open are
 * closed when it returns in a request that writes (with its savepoint), else when the
 * request ends: a service closes its own. Names are "<plugin>.<word>" by convention: 1..64
 * bytes of [A-Za-z0-9_.-].
 */

/* Runs the service. args: the caller's JSON (never NULL: null when none was given).
 * *result: a new JSON value for the caller (the caller deletes it), or NULL for null.
 * Return ZT_OK, or an error code (ZT_EINVAL: the args are wrong; ZT_ENOTFOUND; ...). */
typedef int (*zt_service_fn)(zt_req *req, const cJSON *args, cJSON **result, void *ud);

/* Provide a service, during init. ZT_ECONFLICT (the log names both plugins; the node
 * does not start) when another plugin provides it; ZT_EINVAL, ZT_ESTATE, ZT_ENOMEM. */
int zt_provide(zt_plugin *p, const char *name, zt_service_fn fn, void *ud);

/* Call a service. ZT_ENOTFOUND when no enabled plugin provides it (the caller decides:
 * skip, refuse, ...); otherwise what the service returned. *result as above (NULL on
 * error); result itself may be NULL when the caller wants only the outcome. A service may call
 * others; a chain deeper than 16 is ZT_EBUSY. */
int zt_call(zt_req *req, const char *name, const cJSON *args, cJSON **result);

/* ---- work from other threads ------------------------------------------------------ */

/* Hand work to the event loop from any thread (a client library's network thread, a
 * socket's callback): soon, on the loop thread, fn(job, arg) runs as work no client asked
 * for, like an event's delivery (see "requests": the system caller of p, method "JOB", path
 * `what`, a write transaction nested in the open batch, audited as
 * "JOB <what>"). fn's return code decides as an event handler's does: ZT_OK keeps its
 * writes (they commit with the batch, one fsync for all), an error drops them. Works run
 * in the order they were posted. fn is called exactly once for each work posted with
 * ZT_OK: with job NULL when the node could not run it (out of memory, or it stopped first),
 * so that it can free arg. Unlike the rest of this header, thread-safe, from init on (work
 * posted during init runs once the node serves).
 * Errors: ZT_ESTATE (the node is stopping; fn will not be called), ZT_ENOMEM. */
int zt_post(zt_plugin *p, const char *what, int (*fn)(zt_req *job, void *arg), void *arg);

/* ---- the other plugins, and Lua for C plugins ------------------------------------- */

/* The enabled plugins' names, in init order: i from 0; NULL past the end. */
const char *zt_plugin_at(const zt_plugin *p, size_t i);
/* The node's lua/ folder (lua_dir): Lua plugins are in <lua_dir>/plugins/<name>/. */
const char *zt_lua_dir(const zt_plugin *p);

/*
 * A C plugin that runs scripts (workflow conditions, alert rules) gets a Lua 5.4 state
 * with the same sandbox as a Lua plugin: safe standard library, the zt module acting as
 * this plugin (its databases, its events), an instruction budget per call and a memory
 * cap (the config's lua settings). Include <lua.h> and <lauxlib.h> and link Lua 5.4 to use
 * the state; never lua_close it, never call lua_pcall on it yourself for script code (use
 * zt_lua_call, which applies the budget).
 */
typedef struct lua_State lua_State;
/* Make the state, during init. The core closes it after fini. ZT_ESTATE, ZT_ENOMEM. */
int zt_lua_new(zt_plugin *p, lua_State **out);
/* Compile `len` bytes of src (text only) as chunk `name` (used in messages: "name:line")
 * and run it in the sandbox with the budget, leaving its first `nresults` results on the
 * stack. On failure ZT_EINVAL and err holds "name:line: what went wrong". */
int zt_lua_run(lua_State *L, const char *name, const char *src, size_t len, int nresults, char *err,
               size_t errlen);
/* lua_pcall with the budget and memory cap: the function and its nargs arguments are on the
 * stack; nresults (or LUA_MULTRET) are left. ctx (may be NULL) is the work the script runs
 * for: the zt module's storage, events, timers and services act in ctx's transaction (and
 * raise an error without one). On failure (error, budget exceeded, out of memory) returns
 * ZT_EINVAL with the message and traceback in err; the stack is as before the function. */
int zt_lua_call(lua_State *L, zt_req *ctx, int nargs, int nresults, char *err, size_t errlen);
/* JSON ↔ Lua, as the zt module converts them (zt.json): objects ↔ tables with string
 * keys, arrays ↔ sequences, null ↔ zt.json.null. zt_lua_to_json returns ZT_EINVAL (and
 * *out NULL) for values JSON cannot carry (functions, mixed tables, NaN, cycles). */
void zt_lua_push_json(lua_State *L, const cJSON *v);
int zt_lua_to_json(lua_State *L, int idx, cJSON **out);

/* ---- time and ids -------------------------------------------------------------- */

/* Wall-clock time in milliseconds since 1970 (UTC), as the node sees it. This is the one
 * clock of the node: deadlines, timers, token expiry and audit times all read it. In test
 * mode (environment ZT_TEST_CLOCK set) POST /_test/clock {"offset_ms": N} moves it, and
 * timers that became due fire. */
int64_t zt_now_ms(void);

/* A unique, time-ordered id: 26 characters of Crockford base32 (48 bits of milliseconds,
 * 80 bits from a per-node random start and a counter), NUL-terminated into out[27]. Ids
 * made later in the same node sort after earlier ones, byte by byte. */
void zt_id(char out[27]);

/* ---- crypto and personal data ------------------------------------------------- */

/*
 * Personal data (citizen ID numbers, phone numbers, addresses, ...) is never stored in
 * clear. A plugin encrypts each such field with zt_field_encrypt before zt_put, and
 * decrypts it after zt_get; to find a record by such a value, it also stores a blind index
 * (zt_field_index) as a key that points to the record. Keys come from the node's key file:
 * a plugin never sees them, and each plugin and field has its own binding, so a value
 * copied from one field or plugin into another does not decrypt there.
 *
 * Unlike the rest of this header, the functions of this section keep no state of their
 * own and may be called from any thread, once the node has started (from init on).
 */

/* Bytes zt_field_encrypt adds to a value: a version byte, a 24-byte random nonce and a
 * 16-byte authentication tag (XChaCha20-Poly1305); with crypto.fields = "SM4" (国密) a
 * version byte, a 16-byte random IV and a 24-byte HMAC-SM3 tag over SM4-CTR, as long.
 * zt_field_decrypt opens both, whatever the config says now. */
#define ZT_FIELD_OVERHEAD 41

/* Encrypt `len` bytes of plain for the field named `field` (a non-empty string: the
 * plugin's own name for the field, e.g. "id_number") of plugin p, with XChaCha20-Poly1305
 * (or SM4 and HMAC-SM3: crypto.fields) under the node's field key. Two encryptions of one
 * value differ.
 *   out     receives len + ZT_FIELD_OVERHEAD bytes; must not overlap plain
 *   outlen  in: the room in out; out: the bytes written (or, on ZT_ETOOBIG, needed)
 * Errors: ZT_EINVAL (no field name), ZT_ETOOBIG (out is short), ZT_ESTATE (the node has
 * no keys: called before start). */
int zt_field_encrypt(const zt_plugin *p, const char *field, const void *plain, size_t len,
                     void *out, size_t *outlen);
/* Decrypt what zt_field_encrypt wrote for the same plugin and field.
 *   out     receives len - ZT_FIELD_OVERHEAD bytes; must not overlap cipher
 *   outlen  in: the room in out; out: the bytes written (or, on ZT_ETOOBIG, needed)
 * Errors: ZT_EINVAL when the value is not one: too short, altered, encrypted for another
 * field or plugin, or under another node's key (out then holds nothing of it);
 * ZT_ETOOBIG, ZT_ESTATE as above. */
int zt_field_decrypt(const zt_plugin *p, const char *field, const void *cipher, size_t len,
                     void *out, size_t *outlen);

/* Bytes of a blind index. */
#define ZT_INDEX_BYTES 32
/* A blind index of a value: keyed BLAKE2b-256 of the plugin's name, the field's name and
 * the value, under the node's index key. Equal inputs give equal indexes, on this node,
 * for as long as its key file lives; the same value in another field or plugin gives an
 * unrelated index. Without the key file nobody can compute it, so it does not reveal the
 * value (yet it shows which records share one). Lookup is exact, byte for byte: the caller
 * normalises first (trim, one letter case; for citizen ID numbers use
 * zt_citizen_id_canon). Errors: ZT_EINVAL (no field name), ZT_ESTATE. */
int zt_field_index(const zt_plugin *p, const char *field, const void *plain, size_t len,
                   unsigned char out[ZT_INDEX_BYTES]);

/* 1 if s is a valid 18-character citizen identity number (公民身份号码, GB 11643-1999):
 * 17 digits, then the ISO 7064 MOD 11-2 check character (a digit or X; x is accepted),
 * with a birth date (digits 7-14, YYYYMMDD) that exists, is not before 1800 and is not
 * after today in Beijing time (by zt_now_ms), and an address code (digits 1-6) whose first
 * two are a province of GB/T 2260 (11-65, 71, 81, 82; 83 for Taiwan residents' permits; a
 * foreigner's permanent residence card of 2023 starts 9 and then the province). The rest
 * of the address code is not checked against the full list (it changes every year); the
 * older 15-digit numbers are not accepted. 0 otherwise, and for NULL. */
int zt_valid_citizen_id(const char *s);
/* Check s as zt_valid_citizen_id does and write its canonical form (upper-case X) to out.
 * ZT_EINVAL if it is not valid (out is then an empty string). */
int zt_citizen_id_canon(const char *s, char out[19]);
/* Personal data shown masked (脱敏, GB/T 35273): s (UTF-8) with its first `front` and last
 * `back` characters kept and each other character an '*': zt_mask("13812345678", 3, 4)
 * is "138****5678", zt_mask("张三丰", 1, 1) "张*丰". At least one character is always
 * masked: a value of no more than front + back characters keeps fewer (at most all but
 * its last: "张三" with 1, 1 is "张*"; one character is "*"). Characters, not bytes.
 * out holds at least strlen(s) + 1 bytes (a masked character never grows). ZT_EINVAL if
 * s is not valid UTF-8 (or NULL; out is then ""), ZT_ENOMEM if outlen is too small. */
int zt_mask(const char *s, size_t front, size_t back, char *out, size_t outlen);
/* 1 if s is a valid 18-character unified social credit code (统一社会信用代码,
 * GB 32100-2015): every character from "0123456789ABCDEFGHJKLMNPQRTUWXY" (upper case; no
 * I, O, Z, S, V), the first a registering authority (1-9, A, N, Y), the second an
 * organisation type (not 0), characters 3-8 the authority's division code (digits; the
 * first two a province as for zt_valid_citizen_id, or 10 for a national authority), and
 * the last the check character of the MOD 31 scheme. 0 otherwise, and for NULL. Whether
 * the code was ever issued is not knowable here. Callers accepting typed input may
 * upper-case it first. */
int zt_valid_credit_code(const char *s);

/* Electronic seals (电子印章). Seal a document for department `dept` with its current key
 * (made on first use, of the config's seal.algorithm; private keys are stored only
 * encrypted under the node's master key). The seal is a JSON object {v, algorithm,
 * department, key_id, time, digest, signature} (*seal: new, the caller deletes it):
 * algorithm "Ed25519" (digest: hex BLAKE2b-256 of the document; signature: 64 bytes,
 * base64url) or "SM2" (国密: digest hex SM3; signature: SM2 with SM3 and the default
 * distinguishing ID "1234567812345678", DER, base64url), the key's. Anyone can check it with
 * POST /seal/verify against the public keys of GET /seal/keys. Inside a writing request
 * only (ZT_EREADONLY in GET). zt_seal_json seals the canonical form of a JSON value
 * (zt_json_canonical). Errors: ZT_EINVAL, ZT_ENOTFOUND (no department dept: no key is
 * made for a code that names none), ZT_EREADONLY, ZT_EIO. */
int zt_seal_bytes(zt_req *req, const char *dept, const void *doc, size_t len, cJSON **seal);
int zt_seal_json(zt_req *req, const char *dept, const cJSON *doc, cJSON **seal);
/* The canonical text of a JSON value, for signing and hashing: its RFC 8785 (JCS) form,
 * which any JCS library recomputes: no whitespace, object keys sorted by their UTF-16 code
 * units, strings and numbers as ECMAScript's JSON.stringify writes them (0.1, 1e-7, 100 for
 * 1e2, 0 for -0). *out is malloc'd (free it). ZT_EINVAL for NaN, infinities, duplicate
 * keys, strings that are not UTF-8, nesting deeper than 64, or a number of magnitude 2^53
 * (9007199254740992) or more (JCS would write it; this refuses it): a double cannot tell
 * such integers from their neighbours, so a seal over one would vouch for another (an
 * 18-digit ID number, an amount in fen): send long numbers as strings. */
int zt_json_canonical(const cJSON *v, char **out, size_t *len);
/* JSON text of v without white space, like cJSON_PrintUnformatted but with every number
 * written so that it reads back as the same double: integers up to 2^53 as integers
 * (cJSON writes 5000000000000001 as 5e+15), others with the fewest of 15..17 significant
 * digits; and always JSON: bytes of a string that are not UTF-8 are written as U+FFFD.
 * malloc'd (free it); NULL when out of memory or v is deeper than 1000. */
char *zt_json_print(const cJSON *v);

/* Why s is not acceptable as text a person typed (a name, a title, a comment), or NULL
 * when it is: strict UTF-8, at least one character that is not a space, at most
 * max_chars characters (code points, not bytes), no control characters (flags
 * ZT_TEXT_LINES lets line breaks and tabs through, for bodies of text), no text-direction
 * overrides (U+202A-U+202E, U+2066-U+2069, which make a name read differently from what it
 * is) and no non-characters. The reason is a phrase to follow the field's name ("is
 * empty", "is too long", "holds a control character ..."). */
#define ZT_TEXT_LINES 1
const char *zt_text_problem(const char *s, size_t max_chars, int flags);

/* 0 if sig is a valid Ed25519 signature of msg by the public key pk (an electronic seal:
 * the core makes seals, anyone can check them); ZT_EINVAL otherwise. */
int zt_seal_verify(const unsigned char pk[32], const void *msg, size_t len,
                   const unsigned char sig[64]);

/* Fill buf with len bytes from the system's cryptographic random source. Never fails (a
 * system without one stops the process rather than hand out guessable bytes). */
void zt_random(void *buf, size_t len);
/* BLAKE2b-256 of in (unkeyed: for fingerprints and token hashes, not for secrets that
 * could be guessed; those get zt_field_index). */
void zt_hash(const void *in, size_t len, unsigned char out[32]);

#ifdef __cplusplus
}
#endif
#endif /* ZT_H */
