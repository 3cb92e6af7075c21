/* auth.c: accounts, departments, sessions, the role check before every handler. */
#define _GNU_SOURCE /* memmem */
#include "core.h"

#include <ctype.h>
#include <pwd.h>
#include <unistd.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define TOKEN_PREFIX "zts_"
#define KEY_PREFIX   "ztk_"
#define SID_HEX      16 /* a session's public id: the first 8 bytes of its token hash */

/* The outcomes of POST /auth/login, counted for monitoring (zt_auth_sign_ins_total). */
enum sign_in { SI_OK, SI_BAD_PASSWORD, SI_BAD_CODE, SI_CODE_REQUIRED, SI_LOCKED, SI_REFUSED, SI_N };
static const char *const SIGN_IN_RESULT[SI_N] = {
    "ok", "bad_password", "bad_code", "code_required", "locked", "refused"};

#define REC_LOGGED 16 /* records whose broken seal was logged in the last minute */

struct zt_auth {
    zt_server *srv;
    zt_db *users, *logins, *depts, *sessions, *user_sessions, *citizen_ids, *keys;
    zt_db *credit_codes;      /* an enterprise's credit code → its account's id */
    zt_plugin core;           /* the core's binding for its own encrypted fields */
    zt_db *gen;               /* "g" → the identity generation (8 bytes, big-endian) */
    struct sess_entry *cache; /* resolved sessions, valid while the generation holds */
    unsigned char tag_key[crypto_shorthash_siphashx24_KEYBYTES]; /* random, per process */
    uint64_t gen_seen;             /* the generation as read in loop iteration gen_at - 1 */
    uint64_t gen_at;               /* 1 + the iteration gen_seen holds for; 0: read it again */
    uint64_t bumped_in;            /* the last batch this process changed it in */
    zt_throttle *throttle;         /* failed attempts and registrations, in memory */
    uint64_t refusals_unrecorded;  /* 403s past an account's share of the audit log */
    uv_timer_t sweep;              /* ended sessions no one will end (zt__auth_start) */
    char sweep_from[26 + SID_HEX]; /* where the next sweep goes on (a user_sessions key) */
    size_t sweep_from_len;
    uint64_t refusals;       /* every 403 to a signed-in caller */
    uint64_t sign_ins[SI_N]; /* POST /auth/login by outcome */
    uint64_t locks[2];       /* accounts, addresses that reached auth.max_failures */
    unsigned char *rec_key;  /* sodium_malloc'd: seals the records below (rec_put) */
    uint64_t rec_refused;    /* records read whose seal did not hold */
    struct {
        char label[64];
        int64_t at;
    } rec_logged[REC_LOGGED]; /* the last of them logged, and when (rec_get_ex) */
    uint64_t plain_refused;   /* credentials refused for coming over plain HTTP */
    zt_db *meta; /* _core/meta (seal.c's too): "activity_since" → ms (8 bytes, big-endian) */
    int64_t activity_since; /* sign-ins are recorded since then: the floor of inactivity */
};

/* ---- brute force: per account and per client address ----------------------------- */

#define FAIL_WINDOW_MS   (15 * 60 * 1000)
#define FAIL_MAX_ENTRIES 65536
#define BACKOFF_MAX_S    1024 /* the longest pause before the lock: 1, 2, 4 … s */

/* "addr:<the client's address, or its IPv6 /64>" */
static void addr_key(char out[80], const char *prefix, const char *client)
{
    char who[64];
    if (zt__client_prefix(client, who, sizeof who) != ZT_OK) snprintf(who, sizeof who, "?");
    snprintf(out, 80, "%s%s", prefix, who);
}

/* Seconds the key must still wait, or 0. Three failures in the window start a backoff
 * (1, 2, 4 … s); max_failures lock it for lock_seconds, however long that is. */
static int64_t fail_wait_s(zt_auth *a, const char *key, int64_t now)
{
    zt_attempts f = zt__throttle_get(a->throttle, key);
    const zt_conf *c = a->srv->conf;
    int64_t until = 0;
    if (f.count >= c->auth_max_failures)
        until = f.last_ms + (int64_t)c->auth_lock_seconds * 1000;
    else if (f.count >= 3 && now - f.last_ms <= FAIL_WINDOW_MS)
        until = f.last_ms + ((int64_t)1000 << (f.count - 3 < 10 ? f.count - 3 : 10));
    return until > now ? (until - now + 999) / 1000 : 0;
}

/* A failed guess (a password or a code) by an account ("acct:…") or an address
 * ("addr:…"); the one that locks it is counted (zt_auth_locks_total) and logged, for an
 * alert on someone guessing. */
static void fail_note(zt_auth *a, const char *key, int64_t now)
{
    const zt_conf *c = a->srv->conf;
    int64_t hold = (int64_t)c->auth_lock_seconds * 1000;
    if (hold < FAIL_WINDOW_MS) hold = FAIL_WINDOW_MS;
    if (hold < BACKOFF_MAX_S * 1000) hold = BACKOFF_MAX_S * 1000;
    if (zt__throttle_note(a->throttle, key, now, FAIL_WINDOW_MS, true, hold) != ZT_OK) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "out of memory counting a failed attempt of %s", key);
        return;
    }
    if (zt__throttle_get(a->throttle, key).count != c->auth_max_failures) return;
    bool account = strncmp(key, "acct:", 5) == 0;
    a->locks[account ? 0 : 1]++;
    zt__log(ZT_LOG_WARN, NULL, NULL,
            "%s %s%s%s is locked for %u s after %u failed sign-ins (auth.max_failures)",
            account ? "the account" : "the address", account ? "'" : "", key + 5,
            account ? "'" : "", c->auth_lock_seconds, c->auth_max_failures);
}

static void fail_clear(zt_auth *a, const char *key)
{
    zt__throttle_clear(a->throttle, key);
}

/* ---- records --------------------------------------------------------------------- */

/* Sealed records (GB/T 22239 数据完整性 of 鉴别数据): accounts, sessions and API keys say who
 * gets in. Each is stored as its JSON with a last field "mac", a keyed BLAKE2b-128 (a key
 * derived from the master key) over the database's name, the record's key and its bytes
 * before that field. A record changed, added or copied behind the node's back (with LMDB
 * tools, in a doctored backup) fails the check and is not trusted: it signs no one in
 * (as if absent), the log names it and zt_auth_records_refused_total counts it. */
#define MAC_HEAD ",\"mac\":\""
#define MAC_B64  22                                  /* 16 bytes in base64url, no padding */
#define MAC_TAIL (sizeof MAC_HEAD - 1 + MAC_B64 + 2) /* ,"mac":"…"} */

static const char *sealed_name(const zt_auth *a, const zt_db *db)
{
    return db == a->users      ? "users"
           : db == a->sessions ? "sessions"
           : db == a->keys     ? "api_keys"
                               : "departments";
}

static void rec_mac(const zt_auth *a, const zt_db *db, const void *key, size_t klen, const void *v,
                    size_t n, unsigned char mac[16])
{
    zt__seal_tag(a->rec_key, sealed_name(a, db), key, klen, v, n, mac);
}

/* The length of what v[0..n) seals, or 0 when it carries no seal. */
static size_t sealed_body(const char *v, size_t n)
{
    if (n < MAC_TAIL + 2 || v[n - 1] != '}' || v[n - 2] != '"') return 0;
    return memcmp(v + n - MAC_TAIL, MAC_HEAD, sizeof MAC_HEAD - 1) == 0 ? n - MAC_TAIL : 0;
}

static bool rec_ok(const zt_auth *a, const zt_db *db, const void *key, size_t klen, const char *v,
                   size_t n)
{
    size_t body = sealed_body(v, n), got_len = 0;
    unsigned char want[16], got[16];
    if (!body ||
        sodium_base642bin(got, sizeof got, v + body + sizeof MAC_HEAD - 1, MAC_B64, NULL, &got_len,
                          NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got_len != sizeof got)
        return false;
    rec_mac(a, db, key, klen, v, body, want);
    return crypto_verify_16(want, got) == 0;
}

/* Stores j (without any "mac" it carried) sealed. */
static int rec_put(zt_auth *a, zt_txn *t, zt_db *db, const void *key, size_t klen, cJSON *j)
{
    cJSON_DeleteItemFromObjectCaseSensitive(j, "mac");
    char *text = zt_json_print(j);
    if (!text) return ZT_ENOMEM;
    size_t n = strlen(text), body = n - 1; /* without its closing brace */
    if (n < 3 || text[body] != '}') {      /* records are non-empty objects */
        free(text);
        return ZT_EINVAL;
    }
    char *v = malloc(body + MAC_TAIL + 1);
    if (!v) {
        free(text);
        return ZT_ENOMEM;
    }
    memcpy(v, text, body);
    free(text);
    unsigned char mac[16];
    rec_mac(a, db, key, klen, v, body, mac);
    char *o = v + body;
    memcpy(o, MAC_HEAD, sizeof MAC_HEAD - 1);
    o += sizeof MAC_HEAD - 1;
    sodium_bin2base64(o, MAC_B64 + 1, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    memcpy(o + MAC_B64, "\"}", 2);
    int rc = zt_put(t, db, key, klen, v, body + MAC_TAIL);
    free(v);
    return rc;
}

/* How a record is named in the log: an account by its id, a session or key by its public
 * id (the first 8 bytes of its hash). */
static void rec_label(const zt_auth *a, const zt_db *db, const void *key, size_t klen, char out[64])
{
    if (db == a->users || db == a->depts)
        snprintf(out, 64, "%s %.*s", db == a->users ? "account" : "department",
                 (int)(klen < 40 ? klen : 40), (const char *)key);
    else {
        char hex[17];
        sodium_bin2hex(hex, sizeof hex, key, klen < 8 ? klen : 8);
        snprintf(out, 64, "%s %s", db == a->sessions ? "session" : "API key", hex);
    }
}

/* A record whose seal holds, parsed; NULL if there is none, or (*tampered set) if its seal
 * does not hold, which is logged and counted. */
static cJSON *rec_get_ex(zt_auth *a, zt_txn *t, zt_db *db, const void *key, size_t klen,
                         bool *tampered)
{
    const void *v;
    size_t n;
    if (tampered) *tampered = false;
    if (zt_get(t, db, key, klen, &v, &n) != ZT_OK) return NULL;
    if (!rec_ok(a, db, key, klen, v, n)) {
        char label[64];
        rec_label(a, db, key, klen, label);
        a->rec_refused++;
        /* once a minute for the same record: someone retrying a forged token must not
         * flood the log (zt_auth_records_refused_total counts every read) */
        int64_t now = zt_now_ms();
        size_t slot = 0;
        bool recent = false;
        for (size_t i = 0; i < REC_LOGGED && !recent; i++) {
            recent =
                strcmp(a->rec_logged[i].label, label) == 0 && now - a->rec_logged[i].at < 60000;
            if (a->rec_logged[i].at < a->rec_logged[slot].at) slot = i;
        }
        if (!recent) {
            snprintf(a->rec_logged[slot].label, sizeof a->rec_logged[slot].label, "%s", label);
            a->rec_logged[slot].at = now;
            zt__log(ZT_LOG_ERROR, NULL, NULL,
                    "identity: the %s fails its seal: it was changed outside Zhengtong, and is "
                    "not trusted (it signs no one in)",
                    label);
        }
        if (tampered) *tampered = true;
        return NULL;
    }
    /* the seal is checked: nothing reads it, and nothing shows it */
    cJSON *r = cJSON_ParseWithLength(v, n);
    cJSON_DeleteItemFromObjectCaseSensitive(r, "mac");
    return r;
}

static cJSON *rec_get(zt_auth *a, zt_txn *t, zt_db *db, const void *key, size_t klen)
{
    return rec_get_ex(a, t, db, key, klen, NULL);
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static bool jtrue(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The account as others may see it: never the password hash. */
static cJSON *user_public(const cJSON *u)
{
    cJSON *o = cJSON_Duplicate(u, 1);
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "pw");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "pw_history");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "id_number_enc");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "totp_enc");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "totp_pending_enc");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "totp_last_step");
    if (o) cJSON_DeleteItemFromObjectCaseSensitive(o, "mac");
    return o;
}

/* Staff accounts are held to the password and activity rules; citizens and enterprises
 * are not. */
static bool is_staff(const cJSON *u)
{
    const char *kind = zt__jstr(u, "kind");
    return kind && strcmp(kind, "staff") == 0;
}

/* An account's or a key's clearance (a label of auth.labels): staff accounts and keys
 * theirs, or auth.default_clearance if none was given; citizens and enterprises the lowest
 * label (what they reach is their own). A clearance no longer listed is kept as it is, and
 * clears only the lowest label (zt_caller_clears). */
static const char *clearance_of(const zt_conf *c, const cJSON *u)
{
    const char *kind = zt__jstr(u, "kind");
    if (kind && (strcmp(kind, "citizen") == 0 || strcmp(kind, "enterprise") == 0))
        return c->auth_labels[0];
    const char *l = zt__jstr(u, "clearance");
    return l ? l : c->auth_default_clearance;
}

/* Why `label` (NULL: what was given is no string) is no clearance, a label of auth.labels:
 * in req's memory; NULL when it is one. */
static const char *clearance_problem(zt_req *req, const char *label)
{
    const zt_conf *c = req->srv->conf;
    if (zt__label_level(c, label) >= 0) return NULL;
    zt_buf b = {0};
    int rc = zt__buf_puts(&b, "clearance: one of auth.labels (");
    for (size_t i = 0; i < c->auth_nlabels; i++)
        rc |= zt__buf_printf(&b, "%s%s", i ? ", " : "", c->auth_labels[i]);
    rc |= zt__buf_puts(&b, ")");
    const char *why = rc == ZT_OK ? zt_req_printf(req, "%.*s", (int)b.len, b.data) : NULL;
    zt__buf_free(&b);
    return why ? why : "clearance: one of auth.labels";
}

/* The string a JSON value holds, or NULL. */
static const char *jstring(const cJSON *v)
{
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An administrator's doing: the account may sign in again, for another inactive_after. */
static void reactivate(cJSON *u)
{
    cJSON_DeleteItemFromObjectCaseSensitive(u, "reactivated_at");
    cJSON_AddNumberToObject(u, "reactivated_at", (double)zt_now_ms());
}

/* The password being replaced (old_hash, NULL: none) joins the account's history: the
 * last auth.password_history - 1 replaced ones are kept (with the current one, that many a
 * new password may not repeat). Staff accounts only, as the password's age; a one-time
 * password an administrator gave is no password of the holder's and is not kept. */
static void history_push(const zt_conf *c, cJSON *u, const char *old_hash)
{
    cJSON *hist = cJSON_DetachItemFromObjectCaseSensitive(u, "pw_history");
    if (c->auth_pw_history < 2 || !is_staff(u)) {
        cJSON_Delete(hist); /* off: nothing kept */
        return;
    }
    if (!cJSON_IsArray(hist)) cJSON_Delete(hist), hist = cJSON_CreateArray();
    if (old_hash && !jtrue(u, "must_change_password"))
        cJSON_InsertItemInArray(hist, 0, cJSON_CreateString(old_hash));
    while (cJSON_GetArraySize(hist) > (int)c->auth_pw_history - 1)
        cJSON_DeleteItemFromArray(hist, cJSON_GetArraySize(hist) - 1);
    cJSON_AddItemToObject(u, "pw_history", hist);
}

/* Set u's password hash, whether it must be changed at the next sign-in (a one-time
 * password), and when it was set (auth.password_max_age counts from then); the one it
 * replaces joins the history. */
static void set_password(const zt_conf *c, cJSON *u, const char *pwhash, bool must_change)
{
    history_push(c, u, zt__jstr(u, "pw"));
    static const char *const keys[] = {"pw", "must_change_password", "password_changed_at"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(u, keys[i]);
    cJSON_AddStringToObject(u, "pw", pwhash);
    cJSON_AddBoolToObject(u, "must_change_password", must_change);
    cJSON_AddNumberToObject(u, "password_changed_at", (double)zt_now_ms());
    if (must_change) reactivate(u); /* a one-time password is given to be used */
}

/* When a staff account's password stops reaching beyond /auth/ (auth.password_max_age),
 * or INT64_MAX: never (the policy is off, or the account is not staff). Accounts from
 * before password_changed_at was kept count from their creation. */
static int64_t password_expires_at(const zt_conf *c, const cJSON *u)
{
    if (!c->auth_pw_max_age_ms || !is_staff(u)) return INT64_MAX;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(u, "password_changed_at");
    if (!cJSON_IsNumber(at)) at = cJSON_GetObjectItemCaseSensitive(u, "created_at");
    return (cJSON_IsNumber(at) ? (int64_t)at->valuedouble : 0) + c->auth_pw_max_age_ms;
}

/* auth.inactive_after: a staff account is inactive once that long has passed since the
 * last of its sign-in, its creation and its reactivation by an administrator (enabling
 * it, or giving it a one-time password), and since the node began to record sign-ins (an
 * account from before has had no chance to show it is used). */
static bool inactive(const zt_auth *a, const cJSON *u, int64_t now)
{
    const zt_conf *c = a->srv->conf;
    if (!c->auth_inactive_ms || !is_staff(u)) return false;
    double last = (double)a->activity_since;
    static const char *const keys[] = {"last_login_at", "created_at", "reactivated_at"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (jnum(u, keys[i]) > last) last = jnum(u, keys[i]);
    return now - (int64_t)last > c->auth_inactive_ms;
}

/* What an account looks like to its owner and to administrators: no secrets, and when its
 * password expires if it does. */
static cJSON *user_view(const zt_auth *a, const cJSON *u)
{
    cJSON *o = user_public(u);
    int64_t exp = password_expires_at(a->srv->conf, u);
    if (o && exp != INT64_MAX) cJSON_AddNumberToObject(o, "password_expires_at", (double)exp);
    if (o && a->srv->conf->auth_inactive_ms && is_staff(u))
        cJSON_AddBoolToObject(o, "inactive", inactive(a, u, zt_now_ms()));
    if (o) cJSON_AddBoolToObject(o, "two_factor", cJSON_GetObjectItem(u, "totp_enc") != NULL);
    if (o && !cJSON_GetObjectItem(o, "clearance"))
        cJSON_AddStringToObject(o, "clearance", clearance_of(a->srv->conf, u));
    return o;
}

/* ---- the second factor (totp.c): secrets kept encrypted under the master key ------- */

/* u's authenticator secret in `field` ("totp_enc", or "totp_pending_enc" while it is being
 * set up): ZT_ENOTFOUND if it has none. */
static int totp_key(zt_auth *a, const cJSON *u, const char *field, unsigned char key[ZT_TOTP_KEY])
{
    const char *b64 = zt__jstr(u, field);
    if (!b64) return ZT_ENOTFOUND;
    unsigned char enc[ZT_TOTP_KEY + ZT_FIELD_OVERHEAD];
    size_t elen = 0, klen = ZT_TOTP_KEY;
    if (zt__b64url_decode(enc, sizeof enc, b64, strlen(b64), &elen) != ZT_OK ||
        zt_field_decrypt(&a->core, "totp", enc, elen, key, &klen) != ZT_OK || klen != ZT_TOTP_KEY)
        return ZT_EIO; /* damaged, or the key file is not the one it was made under */
    return ZT_OK;
}

static int totp_store(zt_auth *a, cJSON *u, const char *field, const unsigned char *key)
{
    cJSON_DeleteItemFromObjectCaseSensitive(u, field);
    if (!key) return ZT_OK;
    unsigned char enc[ZT_TOTP_KEY + ZT_FIELD_OVERHEAD];
    size_t elen = sizeof enc;
    int rc = zt_field_encrypt(&a->core, "totp", key, ZT_TOTP_KEY, enc, &elen);
    if (rc != ZT_OK) return rc;
    char b64[ZT__B64URL_LEN(sizeof enc)];
    zt__b64url_encode(b64, enc, elen);
    return cJSON_AddStringToObject(u, field, b64) ? ZT_OK : ZT_ENOMEM;
}

/* The first role of auth.two_factor_roles that roles (a JSON array) holds, or NULL. */
static const char *two_factor_role(const zt_conf *c, const cJSON *roles)
{
    for (size_t i = 0; i < c->auth_n2fa_roles; i++)
        if (zt__roles_hold(roles, c->auth_2fa_roles[i])) return c->auth_2fa_roles[i];
    return NULL;
}

/* The plugin a key may call: "core" or one the config enables. */
static bool key_plugin_ok(const zt_conf *c, const char *plugin)
{
    if (strcmp(plugin, "core") == 0) return true;
    for (size_t i = 0; i < c->nplugins; i++)
        if (strcmp(c->plugins[i].name, plugin) == 0) return true;
    return false;
}

/* An API key is one factor: it may not hold a role of auth.two_factor_roles, whose
 * accounts sign in with a code too (such a key would reach what the code guards, with no
 * session to end and no password to change); nor, under auth.separate_duties, auditor: an
 * administrator makes keys, and would hold the audit function with one. NULL, or why not. */
static const char *key_role_problem(const zt_conf *c, const char *role)
{
    if (!zt__role_name_ok(role))
        return "is not a role name (1 to 64 of a-z 0-9 _ . - from a letter)";
    if (strcmp(role, ZT_ROLE_PUBLIC) == 0)
        return "is everyone's, signed in or not: a key needs another (\"user\" for routes any "
               "signed-in caller may use)";
    for (size_t i = 0; i < c->auth_n2fa_roles; i++)
        if (strcmp(role, c->auth_2fa_roles[i]) == 0)
            return "is one of auth.two_factor_roles, which sign in with a code from an "
                   "authenticator app too: an API key, one factor, cannot hold it";
    if (c->auth_separate_duties && strcmp(role, "auditor") == 0)
        return "is the audit administrators' (auth.separate_duties): an API key, which an "
               "administrator makes, cannot hold it";
    return NULL;
}

/* What an offline grant of an unknown role is told (%s: the role). */
#define CLI_ROLE_UNKNOWN                                                                           \
    "'%s' is not a role of this node (zhengtong admin role list: the core's, those the "           \
    "plugins declared at the node's last start, and those added with zhengtong admin role add)"

/* Why an API key cannot be given role now, in t (key_role_problem, or a role the node does
 * not know), or NULL; *type: the problem's. */
static const char *key_grant_problem(zt_auth *a, zt_txn *t, const char *role, bool offline,
                                     const char **type, char *buf, size_t cap)
{
    const char *why = key_role_problem(a->srv->conf, role);
    *type = why ? "invalid-key" : "unknown-role";
    if (why) {
        snprintf(buf, cap, "role '%s' %s", role, why);
        return buf;
    }
    if (strcmp(role, ZT_ROLE_USER) == 0 || zt__role_known(a->srv, t, role)) return NULL;
    snprintf(buf, cap, offline ? "ROLE: " CLI_ROLE_UNKNOWN : "role: " ZT__ROLE_UNKNOWN, role);
    return buf;
}

#define LOGIN_RULE "login: 3 to 64 of a-z 0-9 _ . @ - (lower case)"

static bool login_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 64) return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("_.@-", *s)))
            return false;
    return true;
}

/* Why a person's or a department's name is not acceptable ("name: ... ; <this>"), or NULL. */
static const char *name_problem(const char *name)
{
    return name ? zt_text_problem(name, 200, 0) : "is missing";
}
/* What a refused name is told, with name_problem's reason. */
#define NAME_TEXT "text of 1 to 200 characters (this one %s)"
#define NAME_RULE "name: " NAME_TEXT

/* ---- the password rule ------------------------------------------------------------ */

/* The most used passwords (in leaked lists and in China's: 5201314 and woaini are love
 * numbers and words) and keyboard runs, lower case. A password is refused when it is one
 * of them, or is one with digits or symbols before or after it, or written with look-alikes
 * (p@ssw0rd): see common_password. A short list on purpose: what guessers try first. */
static const char *const COMMON_PASSWORDS[] = {
    "password",   "passwd",    "admin",      "administrator", "root",         "system",
    "manager",    "welcome",   "letmein",    "iloveyou",      "trustno1",     "changeme",
    "default",    "secret",    "master",     "guest",         "test",         "hello",
    "monkey",     "dragon",    "sunshine",   "princess",      "football",     "superman",
    "abc",        "abcd",      "abcdef",     "abcdefg",       "abcdefgh",     "abcdefghi",
    "abcdefghij", "abc123",    "abcd1234",   "a1b2c3d4",      "aa123456",     "123456",
    "12345678",   "123456789", "1234567890", "0123456789",    "9876543210",   "123123123",
    "1234qwer",   "qwer1234",  "qwe123",     "123qwe",        "qwerty",       "qwertyui",
    "qwertyuiop", "asdf",      "asdfgh",     "asdfghjk",      "asdfghjkl",    "zxcv",
    "zxcvbn",     "zxcvbnm",   "qazwsx",     "qazwsxedc",     "1qaz2wsx",     "1qaz2wsx3edc",
    "1qaz@wsx",   "zaq12wsx",  "1q2w3e4r",   "1q2w3e4r5t",    "1q2w3e4r5t6y", "q1w2e3r4",
    "q1w2e3r4t5", "qweasdzxc", "woaini",     "woaini1314",    "5201314",      "1314520",
    "zhongguo",   "china",     "beijing",    "shanghai",      "huawei",       "baidu",
    "taobao",     "zhengtong", NULL};

/* Look-alikes read as the letters they stand for (the list is of letters). */
static char unleet(char ch)
{
    static const char from[] = "@4031!$57", to[] = "aaoeiisst";
    const char *p = strchr(from, ch);
    return ch && p ? to[p - from] : ch;
}

static bool listed(const char *s, size_t n)
{
    for (size_t i = 0; COMMON_PASSWORDS[i]; i++)
        if (strlen(COMMON_PASSWORDS[i]) == n && memcmp(COMMON_PASSWORDS[i], s, n) == 0) return true;
    return false;
}

/* pw is one of COMMON_PASSWORDS, in any letter case, or is one with digits and symbols
 * around it (Password2024!, 123qwerty), or with look-alikes inside it (P@ssw0rd1). */
static bool common_password(const char *pw)
{
    size_t n = strlen(pw), b = 0, e = n;
    char low[1025]; /* (a copy of the password: wiped) */
    if (n >= sizeof low) return false;
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)pw[i]);
    bool hit = listed(low, n);
    while (b < e && !isalpha((unsigned char)low[b])) b++;
    while (e > b && !isalpha((unsigned char)low[e - 1])) e--;
    if (!hit && b < e) hit = listed(low + b, e - b);
    for (size_t i = b; !hit && i < e; i++) low[i] = unleet(low[i]);
    if (!hit && b < e) hit = listed(low + b, e - b);
    sodium_memzero(low, sizeof low);
    return hit;
}

/* The next word of s[0..len) from *at: a run of ASCII letters and digits and characters
 * beyond ASCII (the middle dot of transcribed names, U+00B7, parts them too); its length in
 * *n and its characters in *chars, or NULL when there is none. */
static const char *next_word(const char *s, size_t len, size_t *at, size_t *n, size_t *chars)
{
#define MIDDLE_DOT(i)                                                                              \
    (i + 1 < len && (unsigned char)s[i] == 0xC2 && (unsigned char)s[i + 1] == 0xB7)
    size_t i = *at, start;
    while (i < len && (MIDDLE_DOT(i) || (!(s[i] & 0x80) && !isalnum((unsigned char)s[i]))))
        i += MIDDLE_DOT(i) ? 2 : 1;
    if (i == len) return NULL;
    for (start = i, *chars = 0; i < len && !MIDDLE_DOT(i); i++) {
        if (!(s[i] & 0x80) && !isalnum((unsigned char)s[i])) break;
        if ((s[i] & 0xC0) != 0x80) ++*chars; /* (not a continuation byte) */
    }
    *at = i, *n = i - start;
    return s + start;
#undef MIDDLE_DOT
}

/* pw holds needle[0..n) in any ASCII letter case. */
static bool holds(const char *pw, const char *needle, size_t n)
{
    for (size_t i = 0, len = strlen(pw); n && i + n <= len; i++)
        if (strncasecmp(pw + i, needle, n) == 0) return true;
    return false;
}

/* pw holds a word of s[0..len) of 3 characters or more, or, when s has several words, all
 * of them run together ("Wang Wu": wang, wangwu). */
static bool holds_words(const char *pw, const char *s, size_t len)
{
    char joined[1024]; /* (a name has at most 200 characters, a login 64) */
    size_t at = 0, n, chars, all = 0, words = 0, jlen = 0;
    bool whole = true;
    for (const char *w; (w = next_word(s, len, &at, &n, &chars)); words++, all += chars) {
        if (chars >= 3 && holds(pw, w, n)) return true;
        if (jlen + n <= sizeof joined - 1)
            memcpy(joined + jlen, w, n), jlen += n;
        else
            whole = false;
    }
    joined[jlen] = 0;
    return whole && words > 1 && all >= 3 && holds(pw, joined, jlen);
}

#define PASSWORD_DISTINCT 5 /* different characters a password has at least */

/* Why pw is not acceptable as the password of the account login (NULL: not known yet) of
 * the person name (NULL: not known), or NULL. The message, for a person, is static or in
 * buf. The rule (README, Identity): 10 to 1024 characters; not the login, nor the name,
 * nor a word of either, inside it; not one of the most used passwords or keyboard runs;
 * PASSWORD_DISTINCT different characters; characters of auth.password_classes kinds. */
static const char *password_problem(const zt_conf *c, const char *pw, const char *login,
                                    const char *name, char *buf, size_t cap)
{
    size_t n = strlen(pw);
    if (n < 10) return "a password needs at least 10 characters";
    if (n > 1024) return "a password has at most 1024 characters";
    if (login && holds(pw, login, strlen(login))) return "the password contains the login";
    /* (the words before an @: a mail domain's are anyone's) */
    if (login && holds_words(pw, login, strcspn(login, "@")))
        return "the password contains a part of the login";
    if (name && holds_words(pw, name, strlen(name)))
        return "the password contains the name, or a part of it";
    if (common_password(pw))
        return "the password is one of the most used passwords or keyboard runs (whatever the "
               "letter case, digits or symbols around it, or @ for a, 0 for o)";
    unsigned distinct = 0;
    uint32_t seen[PASSWORD_DISTINCT];
    for (const char *p = pw; *p && distinct < PASSWORD_DISTINCT;) {
        uint32_t ch = (unsigned char)tolower((unsigned char)*p++);
        while ((*p & 0xC0) == 0x80) ch = ch << 8 | (unsigned char)*p++; /* a whole character */
        unsigned i = 0;
        while (i < distinct && seen[i] != ch) i++;
        if (i == distinct) seen[distinct++] = ch;
    }
    sodium_memzero(seen, sizeof seen);
    if (distinct < PASSWORD_DISTINCT)
        return snprintf(buf, cap,
                        "the password needs at least %d different characters (this one has %u)",
                        PASSWORD_DISTINCT, distinct),
               buf;
    unsigned kinds[4] = {0};
    for (const char *p = pw; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        kinds[islower(ch) ? 0 : isupper(ch) ? 1 : isdigit(ch) ? 2 : 3] = 1;
    }
    unsigned have = kinds[0] + kinds[1] + kinds[2] + kinds[3];
    if (have < c->auth_pw_classes)
        return snprintf(buf, cap,
                        "the password needs characters of %u kinds: lower-case letters, "
                        "upper-case letters, digits, others (this one has %u; "
                        "auth.password_classes)",
                        c->auth_pw_classes, have),
               buf;
    return NULL;
}

static int hash_password(const zt_conf *c, const char *pw, char out[crypto_pwhash_STRBYTES])
{
    if (crypto_pwhash_str(out, pw, strlen(pw), c->auth_pw_ops, c->auth_pw_mem) != 0)
        return ZT_ENOMEM;
    return ZT_OK;
}

#define ONE_TIME_LEN 20

/* A one-time password, 20 characters a person can type: two letters or digits that are
 * not mistaken for others, a symbol, two more, ... (about 90 bits). Never three letters or
 * digits in a row, so it holds no login and no word of a name; drawn again until the
 * password rule finds nothing wrong, whatever auth.password_classes asks. */
static void random_password(const zt_conf *c, char out[ONE_TIME_LEN + 1])
{
    static const char alnum[] = "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3479", sym[] = "+=%:";
    char why[256];
    do {
        for (int i = 0; i < ONE_TIME_LEN; i++)
            out[i] = i % 3 == 2 ? sym[randombytes_uniform(sizeof sym - 1)]
                                : alnum[randombytes_uniform(sizeof alnum - 1)];
        out[ONE_TIME_LEN] = 0;
    } while (password_problem(c, out, NULL, NULL, why, sizeof why));
}

static int create_user(zt_auth *a, zt_txn *t, const char *login, const char *name, const char *kind,
                       const char *dept, const cJSON *roles, const char *pwhash, bool must_change,
                       const cJSON *extra, cJSON **out)
{
    const void *v;
    size_t vlen;
    if (zt_get(t, a->logins, login, strlen(login), &v, &vlen) == ZT_OK) return ZT_EEXIST;
    char id[27];
    zt_id(id);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "id", id);
    cJSON_AddStringToObject(u, "login", login);
    cJSON_AddStringToObject(u, "name", name);
    cJSON_AddStringToObject(u, "kind", kind);
    if (dept) cJSON_AddStringToObject(u, "department", dept);
    cJSON_AddItemToObject(u, "roles", roles ? cJSON_Duplicate(roles, 1) : cJSON_CreateArray());
    set_password(a->srv->conf, u, pwhash, must_change);
    cJSON_AddBoolToObject(u, "disabled", false);
    cJSON_AddNumberToObject(u, "created_at", (double)zt_now_ms());
    for (const cJSON *e = extra ? extra->child : NULL; e; e = e->next)
        cJSON_AddItemToObject(u, e->string, cJSON_Duplicate(e, 1));
    int rc = rec_put(a, t, a->users, id, 26, u);
    if (rc == ZT_OK) rc = zt_put(t, a->logins, login, strlen(login), id, 26);
    if (rc == ZT_OK && out)
        *out = u;
    else
        cJSON_Delete(u);
    return rc;
}

/* ---- sessions -------------------------------------------------------------------- */

static void token_hash(const char *token, size_t len, unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)token, len, NULL, 0);
}

static void sid_of(const unsigned char hash[32], char out[SID_HEX + 1])
{
    sodium_bin2hex(out, SID_HEX + 1, hash, SID_HEX / 2);
}

/* The user-sessions index key: user id then session id. */
static size_t us_key(char out[26 + SID_HEX], const char *uid, const char *sid)
{
    memcpy(out, uid, 26);
    memcpy(out + 26, sid, SID_HEX);
    return 26 + SID_HEX;
}

static int gen_bump(zt_auth *a, zt_txn *t);
static int revoke_all(zt_auth *a, zt_txn *t, const char *uid);
static int revoke_but(zt_auth *a, zt_txn *t, const char *uid, const unsigned char *keep);

static int session_delete(zt_auth *a, zt_txn *t, const unsigned char hash[32], const char *uid)
{
    char sid[SID_HEX + 1], k[26 + SID_HEX];
    sid_of(hash, sid);
    int rc = zt_del(t, a->sessions, hash, 32);
    if (rc == ZT_OK || rc == ZT_ENOTFOUND) rc = zt_del(t, a->user_sessions, k, us_key(k, uid, sid));
    if (rc == ZT_OK || rc == ZT_ENOTFOUND) rc = gen_bump(a, t);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

/* ---- the session cache ------------------------------------------------------------ */

/*
 * Resolving a token reads and parses two JSON records (session, account): a fifth of a
 * small write request's work. Resolved sessions are kept in a small direct-mapped cache,
 * valid while the identity generation stored in LMDB is unchanged. Every change that
 * could alter a resolved caller (a session ended, an account changed, roles, password
 * flags) bumps the generation in its own transaction, from this process or another (the
 * offline `zhengtong admin`): an 8-byte read tells whether the cache holds. That read is
 * made once per loop iteration (the first signed-in request of the iteration, in its own
 * transaction), unless this process has changed the generation in the open batch: then
 * every request reads it again until that batch ends. A revocation by another process is
 * seen from the next iteration on, one by this process at once.
 */

#define SESS_CACHE 1024

/* A resolved session. A request finds its entry by the token's tag, a SipHash-128 of it
 * under a key random to this process (so the cache keeps no token, and a token not known
 * cannot be made to match without that key), and takes the stored BLAKE2b hash (the
 * session's key in LMDB) from it: a cached session costs no BLAKE2b. */
typedef struct sess_entry {
    unsigned char tag[crypto_shorthash_siphashx24_BYTES];
    unsigned char hash[32];
    bool valid;
    bool must_change;
    int64_t password_expires_at; /* INT64_MAX: never */
    bool needs_two_factor;       /* a role of auth.two_factor_roles, no authenticator yet */
    uint64_t gen;
    int64_t expires_at, last_seen;
    zt_caller *caller; /* one allocation: the struct, its roles and their strings */
    size_t caller_size;
} sess_entry;

static void entry_clear(sess_entry *e)
{
    free(e->caller);
    memset(e, 0, sizeof(*e));
}

static void token_tag(const zt_auth *a, const char *token, size_t len,
                      unsigned char tag[crypto_shorthash_siphashx24_BYTES])
{
    crypto_shorthash_siphashx24(tag, (const unsigned char *)token, len, a->tag_key);
}

/* Two tags equal, in a time that does not depend on where they differ (as sodium_memcmp,
 * in two words instead of a byte loop: this runs for every request with a token). */
static bool tag_eq(const unsigned char *x, const unsigned char *y)
{
    _Static_assert(crypto_shorthash_siphashx24_BYTES == 16, "a tag is two words");
    uint64_t x0, x1, y0, y1;
    memcpy(&x0, x, 8), memcpy(&x1, x + 8, 8), memcpy(&y0, y, 8), memcpy(&y1, y + 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
}

static sess_entry *entry_for(zt_auth *a, const unsigned char tag[crypto_shorthash_siphashx24_BYTES])
{
    return &a->cache[(tag[0] | (unsigned)tag[1] << 8) % SESS_CACHE];
}

/* A lost batch may have filled the cache from changes that are now undone, under a
 * generation number that a later change will reuse: forget it all. */
void zt__auth_after_abort(zt_server *srv)
{
    zt_auth *a = srv->auth;
    if (!a || !a->cache) return;
    for (size_t i = 0; i < SESS_CACHE; i++) a->cache[i].valid = false;
    a->gen_at = 0;
}

/* The pointers of a packed caller moved by d bytes with it. */
static void caller_move(zt_caller *c, ptrdiff_t d)
{
#define MOVE(p) p = (p) ? (const char *)(p) + d : NULL
    MOVE(c->id);
    MOVE(c->kind);
    MOVE(c->login);
    MOVE(c->name);
    MOVE(c->department);
    MOVE(c->credit_code);
    MOVE(c->clearance);
    const char **roles = (const char **)((char *)c->roles + d);
    for (size_t i = 0; i < c->nroles; i++) MOVE(roles[i]);
    c->roles = roles;
#undef MOVE
}

/* Account u as a caller in one allocation: the struct, the roles array, the strings. */
static zt_caller *caller_pack(const zt_conf *conf, const cJSON *u, size_t *size)
{
    enum { NF = 7 };
    const char *f[NF] = {zt__jstr(u, "id"),    zt__jstr(u, "kind"),       zt__jstr(u, "login"),
                         zt__jstr(u, "name"),  zt__jstr(u, "department"), NULL,
                         clearance_of(conf, u)};
    if (f[1] && strcmp(f[1], "enterprise") == 0) f[5] = zt__jstr(u, "credit_code");
    if (!f[0] || !f[1] || !f[2] || !f[3]) return NULL;
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(u, "roles");
    size_t nroles = 0, len = 0;
    for (const cJSON *r = roles ? roles->child : NULL; r; r = r->next)
        if (cJSON_IsString(r)) nroles++, len += strlen(r->valuestring) + 1;
    for (int i = 0; i < NF; i++) len += f[i] ? strlen(f[i]) + 1 : 0;
    size_t head = sizeof(zt_caller) + (nroles + 1) * sizeof(char *);
    zt_caller *c = calloc(1, head + len);
    if (!c) return NULL;
    const char **rs = (const char **)(c + 1);
    char *p = (char *)c + head;
    const char **dst[NF] = {&c->id,         &c->kind,        &c->login,    &c->name,
                            &c->department, &c->credit_code, &c->clearance};
    for (int i = 0; i < NF; i++) {
        if (!f[i]) continue;
        size_t n = strlen(f[i]) + 1;
        *dst[i] = memcpy(p, f[i], n);
        p += n;
    }
    for (const cJSON *r = roles ? roles->child : NULL; r; r = r->next) {
        if (!cJSON_IsString(r)) continue;
        size_t n = strlen(r->valuestring) + 1;
        rs[c->nroles++] = memcpy(p, r->valuestring, n);
        p += n;
    }
    c->roles = rs;
    *size = head + len;
    return c;
}

static bool entry_fill(sess_entry *e, const zt_conf *c, const unsigned char *tag,
                       const unsigned char hash[32], uint64_t gen, const cJSON *s, const cJSON *u)
{
    entry_clear(e);
    e->caller = caller_pack(c, u, &e->caller_size);
    if (!e->caller) return false;
    memcpy(e->tag, tag, sizeof e->tag);
    memcpy(e->hash, hash, 32);
    e->gen = gen;
    e->expires_at = (int64_t)jnum(s, "expires_at");
    e->last_seen = (int64_t)jnum(s, "last_seen");
    e->must_change = jtrue(u, "must_change_password");
    e->password_expires_at = password_expires_at(c, u);
    e->needs_two_factor =
        !cJSON_GetObjectItem(u, "totp_enc") && two_factor_role(c, cJSON_GetObjectItem(u, "roles"));
    e->valid = true;
    return true;
}

/* A packed caller copied into request memory, its pointers moved with it; NULL when out
 * of memory. */
static zt_caller *caller_copy(zt_req *req, const zt_caller *packed, size_t size)
{
    zt_caller *c = zt_req_alloc(req, size);
    if (!c) return NULL;
    memcpy(c, packed, size);
    caller_move(c, (char *)c - (char *)packed);
    return c;
}

/* The caller of a request, copied from the cache into request memory (an entry may be
 * replaced while the request still runs). */
static zt_caller *caller_from(zt_req *req, const sess_entry *e)
{
    return caller_copy(req, e->caller, e->caller_size);
}

static uint64_t gen_of(zt_auth *a, zt_txn *t)
{
    const void *v;
    size_t vl;
    return zt_get(t, a->gen, "g", 1, &v, &vl) == ZT_OK && vl == 8 ? zt__be64_get(v) : 0;
}

/* In the transaction of a change that could alter a resolved caller. Until that batch
 * ends every request reads the generation in its own transaction again (the change may
 * still roll back; or commit, and a later writer of the batch must see it). */
static int gen_bump(zt_auth *a, zt_txn *t)
{
    a->bumped_in = a->srv->bw.seq;
    a->gen_at = 0;
    unsigned char v[8];
    zt__be64_put(v, gen_of(a, t) + 1);
    return zt_put(t, a->gen, "g", 1, v, 8);
}

static int unauthenticated(zt_req *req, const char *why)
{
    zt__problem(req, 401, "unauthenticated", NULL, "%s", why);
    zt_res_header(req, "WWW-Authenticate", "Bearer realm=\"zhengtong\"");
    return ZT_EPERM;
}

/* A device's or another node's API key: a caller of kind "device" with one role, bound to
 * one plugin's routes. */
static int resolve_key(zt_server *srv, zt_req *req, const char *tok, bool answer)
{
    unsigned char hash[32];
    token_hash(tok, strlen(tok), hash);
    zt_txn *t = zt_req_txn(req);
    if (!t) {
        zt__problem(req, 503, "storage-failure", NULL, "cannot read the API keys");
        return ZT_EPERM;
    }
    cJSON *k = rec_get(srv->auth, t, srv->auth->keys, hash, 32);
    if (!k || jtrue(k, "disabled")) {
        cJSON_Delete(k);
        return answer ? unauthenticated(req, "the API key is unknown or revoked") : ZT_ENOTFOUND;
    }
    double expires = jnum(k, "expires_at");
    if (expires > 0 && (double)zt_now_ms() >= expires) {
        cJSON_Delete(k);
        return answer ? unauthenticated(req, "the API key has expired: the node's administrator "
                                             "makes a new one (POST /admin/keys)")
                      : ZT_ENOTFOUND;
    }
    /* a key made before its role was listed in auth.two_factor_roles (or before
     * auth.separate_duties, for auditor) holds it no more */
    const char *krole = zt__jstr(k, "role");
    if (!krole || key_role_problem(srv->conf, krole)) {
        cJSON_Delete(k);
        return answer ? unauthenticated(req, "the API key's role is one no key may hold (one of "
                                             "auth.two_factor_roles, or auditor under "
                                             "auth.separate_duties): revoke it")
                      : ZT_ENOTFOUND;
    }
    zt_caller *c = zt_req_alloc(req, sizeof(*c));
    const char **roles = zt_req_alloc(req, 2 * sizeof(*roles));
    if (!c || !roles) {
        cJSON_Delete(k);
        return ZT_ENOMEM;
    }
    memset(c, 0, sizeof(*c));
    zt_arena *ar = &req->arena;
    const char *id = zt__jstr(k, "id"), *name = zt__jstr(k, "name"),
               *plugin = zt__jstr(k, "plugin");
    const char *role = zt__jstr(k, "role");
    c->id = zt__arena_strndup(ar, id, strlen(id));
    c->kind = "device";
    c->login = c->name = zt__arena_strndup(ar, name, strlen(name));
    c->plugin = zt__arena_strndup(ar, plugin, strlen(plugin));
    const char *cl = clearance_of(srv->conf, k);
    c->clearance = zt__arena_strndup(ar, cl, strlen(cl));
    roles[0] = zt__arena_strndup(ar, role, strlen(role));
    roles[1] = NULL;
    c->roles = roles;
    c->nroles = 1;
    req->caller = c;
    req->session_last_seen = INT64_MAX; /* keys have no session to refresh */
    memcpy(req->token_hash, hash, 32);
    req->key_last_used = (int64_t)jnum(k, "last_used_at");
    cJSON_Delete(k);
    return ZT_OK;
}

static int no_sessions(zt_req *req)
{
    zt__problem(req, 503, "storage-failure", NULL, "cannot read the sessions");
    return ZT_EPERM;
}

/* The identity generation: read in the request's transaction once per loop iteration,
 * and by every request while this process has changed it in the open batch (see above).
 * False: no transaction. */
static bool generation(zt_server *srv, zt_req *req, uint64_t *gen)
{
    zt_auth *a = srv->auth;
    uint64_t now_at = srv->iteration + 1;
    if (a->gen_at == now_at) {
        *gen = a->gen_seen;
        return true;
    }
    zt_txn *t = zt_req_txn(req);
    if (!t) return false;
    *gen = gen_of(a, t);
    if (a->bumped_in != srv->bw.seq) a->gen_seen = *gen, a->gen_at = now_at;
    return true;
}

_Static_assert(sizeof TOKEN_PREFIX == 5 && sizeof KEY_PREFIX == 5, "4-byte prefixes");

/* s starts with the 4 bytes of p (it stops at the first that differs: a NUL ends s) */
static bool prefix4(const char *s, const char *p)
{
    return s[0] == p[0] && s[1] == p[1] && s[2] == p[2] && s[3] == p[3];
}

/* "Bearer " in any letter case (RFC 9110: the scheme is case-insensitive), without a
 * locale-aware strncasecmp on every signed-in request. */
static bool bearer_scheme(const char *h)
{
    static const char want[] = "bearer ";
    for (int i = 0; i < 7; i++)
        if ((h[i] | (h[i] >= 'A' && h[i] <= 'Z' ? 0x20 : 0)) != want[i]) return false;
    return true;
}

/* Sessions and keys are read in the request's own transaction, which the handler then
 * goes on using: one transaction per request, and a read in an iteration that has written
 * sees the batch (a session revoked earlier in it is gone).
 * Resolve the bearer token into req->caller. Returns ZT_OK (caller set), ZT_ENOTFOUND (no
 * token) or an answer already given (ZT_EPERM: 401). */
static int resolve(zt_server *srv, zt_req *req, bool answer)
{
    const char *h = zt_req_header(req, "Authorization");
    if (!h) return ZT_ENOTFOUND;
    const char *why = NULL;
    if (bearer_scheme(h)) { /* first: every signed-in request */
        const char *tok = h + 7;
        while (*tok == ' ') tok++;
        if (prefix4(tok, KEY_PREFIX)) {
            return resolve_key(srv, req, tok, answer);
        } else if (!prefix4(tok, TOKEN_PREFIX)) {
            why = "the token is not a Zhengtong session token or API key";
        } else {
            unsigned char hash[32], tag[crypto_shorthash_siphashx24_BYTES];
            size_t toklen = strlen(tok);
            zt_auth *a = srv->auth;
            token_tag(a, tok, toklen, tag);
            uint64_t gen;
            if (!generation(srv, req, &gen)) return no_sessions(req);
            sess_entry *e = entry_for(a, tag);
            if (e->valid && e->gen == gen && tag_eq(e->tag, tag)) {
                memcpy(hash, e->hash, 32);
            } else {
                token_hash(tok, toklen, hash);
                zt_txn *t = zt_req_txn(req); /* the one generation() began, if it did */
                if (!t) return no_sessions(req);
                cJSON *s = rec_get(a, t, a->sessions, hash, 32), *u = NULL;
                const char *uid = s ? zt__jstr(s, "user") : NULL;
                u = uid ? rec_get(a, t, a->users, uid, strlen(uid)) : NULL;
                if (!s)
                    why = "the token is unknown, revoked or expired: sign in again";
                else if (!u || jtrue(u, "disabled"))
                    why = "the account is disabled";
                else if (!entry_fill(e, srv->conf, tag, hash, gen, s, u))
                    why = "out of memory";
                cJSON_Delete(u);
                cJSON_Delete(s);
            }
            int64_t now = req->checked_at = zt_now_ms();
            if (why) {
            } else if (e->expires_at <= now) {
                why = "the session has expired: sign in again";
            } else if (now - e->last_seen > srv->conf->auth_idle_ms) {
                why = "the session was idle too long: sign in again";
            } else {
                req->caller = caller_from(req, e);
                req->must_change_password = e->must_change;
                req->password_expired = e->password_expires_at <= now;
                req->needs_two_factor = e->needs_two_factor;
                memcpy(req->token_hash, hash, 32);
                memcpy(req->token_tag, tag, sizeof tag);
                req->session_last_seen = e->last_seen;
            }
            if (!why) return req->caller ? ZT_OK : ZT_ENOMEM;
        }
    } else if (strncasecmp(h, "Token ", 6) == 0) {
        /* InfluxDB's scheme, so that its clients and agents write with an API key as is */
        const char *tok = h + 6;
        while (*tok == ' ') tok++;
        if (strncmp(tok, KEY_PREFIX, strlen(KEY_PREFIX)) == 0)
            return resolve_key(srv, req, tok, answer);
        why = "'Authorization: Token' takes an API key";
    } else if (strncasecmp(h, "Basic ", 6) == 0) {
        /* InfluxDB 1.x clients and agents send a user and password: the password is the
         * device's API key (the user name is not read) */
        const char *b64 = h + 6, *pw;
        while (*b64 == ' ') b64++;
        size_t n = 0, cap = strlen(b64);
        char *dec = cap < 1024 ? zt_req_alloc(req, cap + 1) : NULL;
        if (dec &&
            sodium_base642bin((unsigned char *)dec, cap, b64, cap, NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) == 0 &&
            (dec[n] = 0, strlen(dec) == n) && (pw = strchr(dec, ':')) &&
            strncmp(pw + 1, KEY_PREFIX, strlen(KEY_PREFIX)) == 0)
            return resolve_key(srv, req, pw + 1, answer);
        why = "'Authorization: Basic' takes an API key as the password";
    } else {
        why = "the Authorization header must be 'Bearer <token>' (or 'Token <API key>', or "
              "'Basic' with an API key as the password)";
    }
    if (!answer) return ZT_ENOTFOUND;
    zt__problem(req, 401, "unauthenticated", NULL, "%s", why);
    zt_res_header(req, "WWW-Authenticate", "Bearer realm=\"zhengtong\"");
    return ZT_EPERM;
}

/* Set the time field of the JSON record key (32 bytes: a token's or an API key's hash) in
 * db to now, in a transaction of its own (the request's own may be read-only): true when
 * it is kept. */
static bool stamp(zt_server *srv, zt_db *db, const unsigned char key[32], const char *field,
                  int64_t now)
{
    zt_txn *t;
    if (zt__store_write_begin(srv->store, &t) != ZT_OK) return false;
    cJSON *r = rec_get(srv->auth, t, db, key, 32);
    bool ok = false;
    if (r) {
        cJSON_DeleteItemFromObjectCaseSensitive(r, field);
        cJSON_AddNumberToObject(r, field, (double)now);
        ok = rec_put(srv->auth, t, db, key, 32, r) == ZT_OK;
        cJSON_Delete(r);
    }
    return zt__store_end(srv->store, t, ok) == ZT_OK && ok;
}

#define KEY_USE_EVERY_MS (3600 * 1000) /* an API key's last use, recorded at most hourly */

/* After the request's work. Idle expiry needs a session's last_seen; writing it on every
 * request would turn reads into writes, so it is refreshed at most once a minute per
 * session, and at least twice per idle timeout (else a session in use would end as idle
 * under a timeout below a minute). An API key's last_used_at, for county IT to find the
 * keys no device uses any more, is written at most hourly. */
void zt__auth_after(zt_server *srv, zt_req *req)
{
    if (!req->caller) return; /* (before the clock: most answers are to no one signed in) */
    /* a session's time is when it was checked: last_seen is kept to the minute */
    int64_t now = req->checked_at ? req->checked_at : zt_now_ms();
    int64_t every = srv->conf->auth_idle_ms / 2;
    if (every > 60000) every = 60000;
    if (req->session_last_seen == INT64_MAX) { /* an API key */
        if (now - req->key_last_used >= KEY_USE_EVERY_MS) {
            stamp(srv, srv->auth->keys, req->token_hash, "last_used_at", now);
            req->key_last_used = now;
        }
        return;
    }
    if (now - req->session_last_seen < every) return;
    if (stamp(srv, srv->auth->sessions, req->token_hash, "last_seen", now)) {
        sess_entry *e = entry_for(srv->auth, req->token_tag);
        if (e->valid && memcmp(e->hash, req->token_hash, 32) == 0) e->last_seen = now;
    }
    req->session_last_seen = now;
}

/* The core's /auth/ routes: a caller's own account (sign-in, password, sessions, codes). */
static bool own_account_route(const zt__route *rt)
{
    return rt->plugin == NULL && strncmp(rt->pattern, "/auth/", 6) == 0;
}

/* auth.https_only: a credential (a bearer token or key, a password sent to the core's
 * /auth/ routes) never crosses a network unencrypted. */
static bool plain_credential(zt_server *srv, zt_req *req, const zt__route *rt)
{
    if (!srv->conf->auth_https_only || !req->plain_http) return false;
    if (zt_req_header(req, "Authorization")) return true;
    return own_account_route(rt) && strcmp(req->method, "GET") != 0 &&
           strcmp(req->method, "HEAD") != 0;
}

int zt__auth_check(zt_server *srv, zt_req *req)
{
    const zt__route *rt = req->match.route;
    if (plain_credential(srv, req, rt)) {
        srv->auth->plain_refused++;
        zt__problem(req, 403, "https-required", NULL,
                    "credentials (passwords, tokens, keys) travel only over HTTPS here "
                    "(auth.https_only): use the county's https:// address%s",
                    srv->conf->nproxies ? "; a proxy in trusted_proxies must say "
                                          "'X-Forwarded-Proto: https' (nginx: proxy_set_header "
                                          "X-Forwarded-Proto $scheme;)"
                                        : "");
        return ZT_EPERM;
    }
    bool public = strcmp(rt->role, ZT_ROLE_PUBLIC) == 0;
    int rc = resolve(srv, req, !public);
    if (public) {
        /* A bad token on a public route is ignored, and a caller the core would hold back
         * anywhere else (a one-time or expired password, a second factor not set up, a key
         * of another plugin) is nobody here: a public handler that looks at its caller must
         * not see one that the checks below would stop. */
        const zt_caller *c = req->caller;
        const char *owner = rt->plugin ? rt->plugin->name : "core";
        if (c && (req->must_change_password || req->needs_two_factor || req->password_expired ||
                  (c->plugin && strcmp(c->plugin, owner) != 0)))
            req->caller = NULL;
        return ZT_OK;
    }
    if (rc == ZT_EPERM) return rc;
    if (rc != ZT_OK) {
        zt__problem(req, 401, "unauthenticated", NULL,
                    "%s %s needs a signed-in caller: send 'Authorization: Bearer <token>' "
                    "(POST /auth/login gives one)",
                    rt->method, rt->pattern);
        zt_res_header(req, "WWW-Authenticate", "Bearer realm=\"zhengtong\"");
        return ZT_EPERM;
    }
    const char *owner = rt->plugin ? rt->plugin->name : "core";
    if (req->caller->plugin && strcmp(req->caller->plugin, owner) != 0) {
        zt__problem(req, 403, "forbidden", NULL,
                    "this API key may call only the routes of plugin '%s'", req->caller->plugin);
        return ZT_EPERM;
    }
    bool own_account = own_account_route(rt);
    if (req->must_change_password && !own_account) {
        zt__problem(req, 403, "password-change-required", NULL,
                    "this account has a one-time password: set your own with POST "
                    "/auth/password first");
        return ZT_EPERM;
    }
    if (req->needs_two_factor && !own_account) {
        zt__problem(req, 403, "two-factor-required", NULL,
                    "accounts with one of the roles of auth.two_factor_roles sign in with a code "
                    "from an authenticator app too: set one up with POST /auth/totp, then POST "
                    "/auth/totp/confirm");
        return ZT_EPERM;
    }
    if (req->password_expired && !own_account) {
        long long age = (long long)(srv->conf->auth_pw_max_age_ms / 1000);
        bool days = age >= 86400;
        zt__problem(req, 403, "password-expired", NULL,
                    "this account's password is older than %lld %s (auth.password_max_age): "
                    "set a new one with POST /auth/password",
                    days ? age / 86400 : age, days ? "days" : "seconds");
        return ZT_EPERM;
    }
    if (strcmp(rt->role, ZT_ROLE_USER) != 0 && !zt_caller_has_role(req->caller, rt->role) &&
        !(rt->or_role && zt_caller_has_role(req->caller, rt->or_role))) {
        zt__problem(req, 403, "forbidden", NULL, "%s %s needs the role '%s'%s%s%s", rt->method,
                    rt->pattern, rt->role, rt->or_role ? " or '" : "",
                    rt->or_role ? rt->or_role : "", rt->or_role ? "'" : "");
        return ZT_EPERM;
    }
    const zt_conf *c = srv->conf;
    if (c->auth_nadmin_nets &&
        (strcmp(rt->role, "admin") == 0 || strcmp(rt->role, "auditor") == 0) &&
        !zt__netmask_match(c->auth_admin_nets, c->auth_nadmin_nets, zt_req_client(req))) {
        zt__problem(req, 403, "admin-network", NULL,
                    "%s %s is managed only from the networks of auth.admin_networks, not from %s",
                    rt->method, rt->pattern, zt_req_client(req));
        return ZT_EPERM;
    }
    return ZT_OK;
}

bool zt__auth_dept_exists(zt_server *srv, zt_txn *t, const char *code)
{
    const void *v;
    size_t vl;
    return code && strlen(code) <= 64 &&
           zt_get(t, srv->auth->depts, code, strlen(code), &v, &vl) == ZT_OK;
}

cJSON *zt__auth_dept_get(zt_server *srv, zt_txn *t, const char *code)
{
    if (!code || !code[0] || strlen(code) > 64) return NULL;
    return rec_get(srv->auth, t, srv->auth->depts, code, strlen(code));
}

const zt_caller *zt_req_caller(zt_req *req)
{
    return req->caller;
}

int zt_caller_has_role(const zt_caller *c, const char *role)
{
    if (!c) return 0;
    for (size_t i = 0; i < c->nroles; i++)
        if (strcmp(c->roles[i], role) == 0) return 1;
    return 0;
}

int zt_label_level(zt_plugin *p, const char *label)
{
    int l = p ? zt__label_level(p->srv->conf, label) : -1;
    return l >= 0 ? l : ZT_EINVAL;
}

static int clears(const zt_conf *conf, const zt_caller *c, const char *label)
{
    int want = zt__label_level(conf, label);
    if (want < 0) return 0;
    int have = c ? zt__label_level(conf, c->clearance) : 0;
    return (have < 0 ? 0 : have) >= want;
}

int zt_caller_clears(zt_plugin *p, const zt_caller *c, const char *label)
{
    return p ? clears(p->srv->conf, c, label) : 0;
}

int zt_req_clears(zt_req *req, const char *label)
{
    return clears(req->srv->conf, req->caller, label);
}

static int find_user(zt_auth *a, zt_txn *t, const char *login, cJSON **u);

#define DEPT_DEPTH 32 /* levels of the department tree: more is a cycle, or a mistake */

/* How many steps up from dept reach the root (0: dept is a top department), stopping at
 * scope if given (*hit: it was passed); -1 for an unknown code or a tree deeper than
 * DEPT_DEPTH. */
static int dept_walk(zt_auth *a, zt_txn *t, const char *dept, const char *scope, bool *hit)
{
    char code[65];
    if (hit) *hit = false;
    if (!dept || strlen(dept) > 64) return -1; /* codes are ≤ 64 */
    snprintf(code, sizeof code, "%s", dept);
    for (int depth = 0; depth < DEPT_DEPTH; depth++) {
        if (scope && strcmp(code, scope) == 0) {
            *hit = true;
            return depth;
        }
        cJSON *d = rec_get(a, t, a->depts, code, strlen(code));
        const char *parent = d ? zt__jstr(d, "parent") : NULL;
        bool top = d && (!parent || !parent[0]);
        if (parent && parent[0]) snprintf(code, sizeof code, "%s", parent);
        cJSON_Delete(d);
        if (top) return depth;
        if (!parent) return -1; /* unknown */
    }
    return -1;
}

int zt_req_dept_within(zt_req *req, const char *dept, const char *scope)
{
    zt_txn *t = zt_req_txn(req);
    bool hit = false;
    return t && scope && dept_walk(req->srv->auth, t, dept, scope, &hit) >= 0 && hit;
}

int zt_req_in_scope(zt_req *req, const char *dept)
{
    const zt_caller *c = req->caller;
    return c && c->department ? zt_req_dept_within(req, dept, c->department) : 0;
}

/* An account id as zt_id makes them: 26 of Crockford's base-32 digits, upper case. */
static bool account_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 26 || !(isdigit((unsigned char)s[n]) || isupper((unsigned char)s[n])))
            return false;
    return n == 26;
}

int zt_req_account(zt_req *req, const char *login, const zt_caller **out)
{
    *out = NULL;
    bool by_id = login && account_id(login);
    if (!login || !(by_id || login_ok(login))) return ZT_ENOTFOUND;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    zt_auth *a = req->srv->auth;
    cJSON *u = NULL;
    bool tampered = false;
    int rc = ZT_OK;
    if (by_id) { /* (a login is lower case, an id upper case: never both) */
        u = rec_get_ex(a, t, a->users, login, strlen(login), &tampered);
        rc = u ? ZT_OK : tampered ? ZT_ESTATE : ZT_ENOTFOUND;
    } else {
        rc = find_user(a, t, login, &u);
    }
    if (rc != ZT_OK) return rc == ZT_ESTATE ? ZT_ENOTFOUND : rc; /* not trusted: absent */
    if (jtrue(u, "disabled")) {
        cJSON_Delete(u);
        return ZT_ENOTFOUND;
    }
    size_t size;
    zt_caller *packed = caller_pack(req->srv->conf, u, &size);
    cJSON_Delete(u);
    if (!packed) return ZT_EIO;
    zt_caller *c = caller_copy(req, packed, size);
    free(packed);
    if (!c) return ZT_ENOMEM;
    *out = c;
    return ZT_OK;
}

/* ---- HTTP: sign in and out --------------------------------------------------------- */

typedef struct login_work {
    zt_auth *a;
    char login[65];
    char client[46];
    char hash[crypto_pwhash_STRBYTES];
    char *password; /* sodium_malloc'd, wiped */
    char *new_password;
    char new_hash[crypto_pwhash_STRBYTES];
    char code[8]; /* the authenticator's code, if sent (6 digits; more is wrong anyway) */
    bool known, ok, hashed;
    /* a change: the account's earlier password hashes (auth.password_history), and whether
     * the new password is one of them */
    char (*history)[crypto_pwhash_STRBYTES];
    size_t nhistory;
    bool reused;
} login_work;

static void login_work_free(login_work *w)
{
    if (w->password) sodium_free(w->password);
    if (w->new_password) sodium_free(w->new_password);
    free(w->history);
    sodium_memzero(w, sizeof(*w));
    free(w);
}

static char *secret_dup(const char *s)
{
    size_t n = strlen(s);
    char *p = sodium_malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static void login_verify(void *arg)
{
    login_work *w = arg;
    if (!w->known) { /* spend what a verification costs, so timing does not tell */
        char h[crypto_pwhash_STRBYTES];
        if (crypto_pwhash_str(h, w->password, strlen(w->password), w->a->srv->conf->auth_pw_ops,
                              w->a->srv->conf->auth_pw_mem) == 0)
            sodium_memzero(h, sizeof h);
        w->ok = false;
        return;
    }
    w->ok = crypto_pwhash_str_verify(w->hash, w->password, strlen(w->password)) == 0;
    for (size_t i = 0; w->ok && w->new_password && !w->reused && i < w->nhistory; i++)
        w->reused =
            crypto_pwhash_str_verify(w->history[i], w->new_password, strlen(w->new_password)) == 0;
    if (w->ok && w->new_password && !w->reused)
        w->hashed =
            crypto_pwhash_str(w->new_hash, w->new_password, strlen(w->new_password),
                              w->a->srv->conf->auth_pw_ops, w->a->srv->conf->auth_pw_mem) == 0;
}

/* Refused sign-ins are security events too (GB/T 22239 audit): their record is queued
 * for the next batch on its own, as the request itself changes nothing. */
/* How the log and the audit log name the login a sign-in was given: the login, when it is
 * an account's; otherwise not the text (people type their password into the login field,
 * and the audit log is kept for years) but "unknown login #" and a keyed hash of it, so
 * that the attempts at one unknown login still show as one. */
static const char *login_named(zt_auth *a, zt_req *req, const char *login)
{
    zt_txn *t = zt_req_txn(req);
    const void *v;
    size_t vl;
    if (t && zt_get(t, a->logins, login, strlen(login), &v, &vl) == ZT_OK) return login;
    unsigned char idx[ZT_INDEX_BYTES];
    char hex[17];
    if (zt_field_index(&a->core, "unknown_login", login, strlen(login), idx) != ZT_OK)
        return "an unknown login";
    sodium_bin2hex(hex, sizeof hex, idx, 8);
    const char *named = zt_req_printf(req, "unknown login #%s", hex);
    return named ? named : "an unknown login";
}

#define REFUSALS_RECORDED  20 /* refusals recorded per account (or address) per window */
#define REFUSALS_WINDOW_MS (10 * 60 * 1000)

/* Whether a refusal of `who` (key: "refused:<account id>", "locked:<login>", ...) still goes
 * into the audit log in this window: anyone may be refused, as often as they like, and
 * the log is kept for years, so the records of one account's or one address's refusals
 * are bounded; the first one over says so in the log, and a metric counts the rest. */
static bool refusal_recordable(zt_auth *a, zt_req *req, const char *key, const char *who)
{
    int64_t now = zt_now_ms();
    zt__throttle_note(a->throttle, key, now, REFUSALS_WINDOW_MS, false, REFUSALS_WINDOW_MS);
    unsigned n = zt__throttle_get(a->throttle, key).count;
    if (n <= REFUSALS_RECORDED) return true;
    if (n == REFUSALS_RECORDED + 1)
        zt_req_log(req, ZT_LOG_WARN,
                   "%s was refused %u times in %d minutes: the audit log records no more of "
                   "those refusals until then (zt_auth_refusals_unrecorded_total counts them)",
                   who, n - 1, REFUSALS_WINDOW_MS / 60000);
    return false;
}

static void audit_refusal(zt_req *req, const char *what, const char *login)
{
    req->refusal_recorded = true; /* (one record of it, not two) */
    zt_audit_note(req, what, login);
    if (zt__audit_queue(req->srv, req) != ZT_OK)
        zt_req_log(req, ZT_LOG_ERROR, "audit: cannot record '%s' for '%s'", what, login);
}

void zt__auth_refused(zt_server *srv, zt_req *req)
{
    zt_auth *a = srv->auth;
    const zt_caller *c = req->caller;
    if (!a || !c || !c->id || req->status != 403 || req->refusal_recorded) return;
    char key[80], who[80];
    snprintf(key, sizeof key, "refused:%s", c->id);
    snprintf(who, sizeof who, "'%s'", c->login ? c->login : c->id);
    a->refusals++;
    if (!refusal_recordable(a, req, key, who)) {
        a->refusals_unrecorded++;
        return;
    }
    const zt__route *rt = req->match.route;
    const char *what = req->audit_action
                           ? req->audit_action
                           : zt_req_printf(req, "%s %s", req->method, rt ? rt->pattern : req->path);
    const char *action = what ? zt_req_printf(req, "refused: %s", what) : NULL;
    if (action) req->audit_action = action;
    if (!action || zt__audit_queue(srv, req) != ZT_OK)
        zt_req_log(req, ZT_LOG_ERROR, "audit: cannot record the refusal");
}

/* 429 with Retry-After; what says why, "try again in N s" follows. */
static int too_many(zt_req *req, int64_t wait, const char *type, const char *what)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)wait);
    zt__problem(req, 429, type, NULL, "%s: try again in %lld s", what, (long long)wait);
    zt_res_header(req, "Retry-After", s);
    return ZT_OK;
}

/* Sessions an account keeps at most: a sign-in beyond it ends the oldest. */
#define MAX_SESSIONS 64

typedef struct live_session {
    int64_t created;
    char order[27]; /* a zt_id made with it: sign-ins within one millisecond keep their order */
    unsigned char hash[32];
} live_session;

static int by_created(const void *x, const void *y)
{
    const live_session *p = x, *q = y;
    if (p->created != q->created) return (p->created > q->created) - (p->created < q->created);
    return strcmp(p->order, q->order);
}

/* Before a sign-in adds a session to account uid: its ended sessions (expired, idle) go,
 * and of the live ones the oldest, so that MAX_SESSIONS - 1 remain. Every sign-in stores
 * a session: without this anyone who can register could grow the store without bound by
 * signing in over and over. */
/* Whether session record s (NULL: gone) has ended: expired, or idle too long. */
static bool session_ended(const zt_auth *a, const cJSON *s, int64_t now)
{
    return !s || jnum(s, "expires_at") <= (double)now ||
           (double)now - jnum(s, "last_seen") > (double)a->srv->conf->auth_idle_ms;
}

/* Remove the session that user_sessions cursor cur is at (kv: its entry), both records. */
static int drop_session_at(zt_auth *a, zt_txn *t, zt_cursor *cur, const zt_kv *kv)
{
    int rc = kv->vlen == 32 ? zt_del(t, a->sessions, kv->val, 32) : ZT_OK;
    return rc == ZT_OK || rc == ZT_ENOTFOUND ? zt_cursor_del(cur) : rc;
}

static int prune_sessions(zt_auth *a, zt_txn *t, const char *uid, int64_t now)
{
    zt_cursor *cur;
    int rc = zt_cursor_open(t, a->user_sessions, &cur);
    if (rc != ZT_OK) return rc;
    live_session *live = NULL;
    size_t nlive = 0, cap = 0;
    zt_kv kv;
    for (rc = zt_cursor_seek(cur, ZT_GE, uid, 26, &kv);
         rc == ZT_OK && kv.klen == 26 + SID_HEX && memcmp(kv.key, uid, 26) == 0;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *s = kv.vlen == 32 ? rec_get(a, t, a->sessions, kv.val, 32) : NULL;
        bool ended = session_ended(a, s, now);
        if (!ended) {
            if (nlive == cap) {
                size_t nc = cap ? 2 * cap : 16;
                live_session *v = realloc(live, nc * sizeof *v);
                if (!v) {
                    cJSON_Delete(s);
                    rc = ZT_ENOMEM;
                    break;
                }
                live = v, cap = nc;
            }
            live[nlive].created = (int64_t)jnum(s, "created_at");
            const char *ord = zt__jstr(s, "order");
            snprintf(live[nlive].order, sizeof live[nlive].order, "%s", ord ? ord : "");
            memcpy(live[nlive++].hash, kv.val, 32);
        }
        cJSON_Delete(s);
        if (ended && (rc = drop_session_at(a, t, cur, &kv)) != ZT_OK) break;
    }
    zt_cursor_close(cur);
    if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    if (rc == ZT_OK && nlive >= MAX_SESSIONS) {
        qsort(live, nlive, sizeof *live, by_created);
        for (size_t i = 0; rc == ZT_OK && i <= nlive - MAX_SESSIONS; i++)
            rc = session_delete(a, t, live[i].hash, uid);
    }
    free(live);
    return rc;
}

/* A sign-in refused once its password was checked. Whatever the reason, it is answered as
 * a wrong password is and counts towards the account's and the address's lock as one does
 * (OWASP: the same answer for a disabled or locked account): a refusal that said more, or
 * took no count, would tell whoever tried that the password was right, and a disabled or
 * inactive account's password, confirmed, waits for the day it is enabled again. The
 * reason is for the operator: `why` in the log (NULL: the password was wrong), `action` in
 * the audit record. */
static void sign_in_refused(zt_req *req, const login_work *w, const char *action, const char *why)
{
    zt_auth *a = w->a;
    int64_t now = zt_now_ms();
    char key[80];
    snprintf(key, sizeof key, "acct:%s", w->login);
    fail_note(a, key, now);
    addr_key(key, "addr:", w->client);
    fail_note(a, key, now);
    const char *named = w->known ? w->login : login_named(a, req, w->login);
    const char *q = w->known ? "'" : "";
    if (why)
        zt_req_log(req, ZT_LOG_WARN,
                   "refused sign-in for %s%s%s from %s, with the right password, answered as a "
                   "wrong one: %s",
                   q, named, q, w->client, why);
    else
        zt_req_log(req, ZT_LOG_WARN, "failed sign-in for %s%s%s from %s", q, named, q, w->client);
    zt_problem(req, 401, "bad-credentials", NULL, "the login or the password is wrong");
    audit_refusal(req, action, named);
}

/* The request that signed account u in is the account's own from then on: the audit
 * record of the sign-in names it as every later record of it does (the request's caller;
 * none called when it began), and the session it began by its public id, never the token.
 * The session was stamped just now: the request leaves it as it is. */
static int signed_in(zt_req *req, const cJSON *u, const char *token, const unsigned char hash[32],
                     const char *sid, int64_t now, bool with_code)
{
    size_t size;
    zt_caller *packed = caller_pack(req->srv->conf, u, &size);
    zt_caller *c = packed ? caller_copy(req, packed, size) : NULL;
    free(packed);
    if (!c) return ZT_ENOMEM;
    req->caller = c;
    memcpy(req->token_hash, hash, 32);
    token_tag(req->srv->auth, token, strlen(token), req->token_tag);
    req->session_last_seen = now;
    char object[8 + SID_HEX + 1];
    snprintf(object, sizeof object, "session %s", sid);
    zt_audit_note(req, with_code ? "sign-in: password and code" : "sign-in", object);
    return ZT_OK;
}

static int login_done(zt_req *req, void *arg)
{
    login_work *w = arg;
    zt_auth *a = w->a;
    int64_t now = zt_now_ms();
    char akey[80], ckey[80];
    snprintf(akey, sizeof akey, "acct:%s", w->login);
    addr_key(ckey, "addr:", w->client);
    int rc = ZT_OK;
    if (!w->ok) {
        a->sign_ins[SI_BAD_PASSWORD]++;
        sign_in_refused(req, w, "sign-in failed", NULL);
        login_work_free(w);
        return ZT_OK;
    }
    zt_txn *t = zt_req_txn(req);
    const void *idv;
    size_t idlen;
    cJSON *u = NULL;
    if (!t || zt_get(t, a->logins, w->login, strlen(w->login), &idv, &idlen) != ZT_OK ||
        !(u = rec_get(a, t, a->users, idv, idlen))) {
        login_work_free(w);
        return t ? ZT_ENOTFOUND : ZT_EIO;
    }
    if (jtrue(u, "disabled")) {
        a->sign_ins[SI_REFUSED]++;
        sign_in_refused(req, w, "sign-in refused: disabled",
                        cJSON_GetObjectItemCaseSensitive(u, "closed_at")
                            ? "the account was closed by its holder"
                            : "the account is disabled (PATCH /admin/users/:id {\"disabled\": "
                              "false}, or zhengtong admin user enable, enables it)");
        goto out;
    }
    if (inactive(a, u, now)) {
        a->sign_ins[SI_REFUSED]++;
        long long age = (long long)(a->srv->conf->auth_inactive_ms / 1000);
        bool days = age >= 86400;
        const char *why = zt_req_printf(
            req,
            "the account has not signed in for more than %lld %s (auth.inactive_after): an "
            "administrator reactivates it (PATCH /admin/users/:id {\"disabled\": false}, or "
            "zhengtong admin user enable)",
            days ? age / 86400 : age, days ? "days" : "seconds");
        sign_in_refused(req, w, "sign-in refused: inactive", why ? why : "inactive");
        goto out;
    }
    unsigned char key[ZT_TOTP_KEY];
    int krc = totp_key(a, u, "totp_enc", key);
    if (krc == ZT_OK) { /* the password was right: now the authenticator's code */
        int64_t step = -1;
        if (w->code[0])
            step = zt__totp_check(key, w->code, now, (int64_t)jnum(u, "totp_last_step"));
        sodium_memzero(key, sizeof key);
        if (!w->code[0]) {
            a->sign_ins[SI_CODE_REQUIRED]++;
            zt_problem(req, 401, "two-factor-required", NULL,
                       "this account signs in with a code from its authenticator app too: send "
                       "{\"login\": …, \"password\": …, \"code\": \"123456\"}");
            goto out;
        }
        if (step < 0) { /* a guess like a wrong password: it counts towards the lock */
            a->sign_ins[SI_BAD_CODE]++;
            fail_note(a, akey, now);
            fail_note(a, ckey, now);
            zt_req_log(req, ZT_LOG_WARN, "wrong sign-in code for '%s' from %s", w->login,
                       w->client);
            zt_problem(req, 401, "bad-credentials", NULL,
                       "the code is wrong, or was used already: wait for the next one");
            audit_refusal(req, "sign-in failed: code", w->login);
            goto out;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(u, "totp_last_step");
        cJSON_AddNumberToObject(u, "totp_last_step", (double)step);
    } else if (krc != ZT_ENOTFOUND) {
        zt_req_log(req, ZT_LOG_ERROR, "the authenticator secret of '%s' cannot be opened: %s",
                   w->login, zt_strerror(krc));
        rc = krc;
        goto out;
    }
    fail_clear(a, akey);
    /* the sign-in before this one, for its holder to notice one that was not theirs */
    double prev_at = jnum(u, "last_login_at");
    const char *pc = zt__jstr(u, "last_login_client");
    char prev_client[sizeof w->client];
    snprintf(prev_client, sizeof prev_client, "%s", pc ? pc : "");
    cJSON_DeleteItemFromObjectCaseSensitive(u, "last_login_at");
    cJSON_AddNumberToObject(u, "last_login_at", (double)now);
    cJSON_DeleteItemFromObjectCaseSensitive(u, "last_login_client");
    cJSON_AddStringToObject(u, "last_login_client", w->client);
    /* (idv pointed into the map: a write may move what it pointed at) */
    if ((rc = rec_put(a, t, a->users, zt__jstr(u, "id"), 26, u)) != ZT_OK) goto out;
    if ((rc = prune_sessions(a, t, zt__jstr(u, "id"), now)) != ZT_OK) goto out;
    unsigned char raw[32], hash[32];
    randombytes_buf(raw, sizeof raw);
    char token[4 + sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    memcpy(token, TOKEN_PREFIX, 4);
    sodium_bin2base64(token + 4, sizeof token - 4, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    token_hash(token, strlen(token), hash);
    char sid[SID_HEX + 1], k[26 + SID_HEX];
    sid_of(hash, sid);
    const zt_conf *c = a->srv->conf;
    int64_t expires = now + c->auth_session_ms;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "id", sid);
    cJSON_AddStringToObject(s, "user", zt__jstr(u, "id"));
    cJSON_AddNumberToObject(s, "created_at", (double)now);
    char order[27];
    zt_id(order);
    cJSON_AddStringToObject(s, "order", order);
    cJSON_AddNumberToObject(s, "last_seen", (double)now);
    cJSON_AddNumberToObject(s, "expires_at", (double)expires);
    cJSON_AddStringToObject(s, "client", w->client);
    rc = rec_put(a, t, a->sessions, hash, 32, s);
    if (rc == ZT_OK)
        rc = zt_put(t, a->user_sessions, k, us_key(k, zt__jstr(u, "id"), sid), hash, 32);
    cJSON_Delete(s);
    if (rc == ZT_OK) rc = signed_in(req, u, token, hash, sid, now, krc == ZT_OK);
    if (rc == ZT_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "token", token);
        cJSON_AddStringToObject(o, "session", sid);
        cJSON_AddNumberToObject(o, "expires_at", (double)expires);
        cJSON_AddItemToObject(o, "user", user_view(a, u));
        if (prev_at > 0) {
            cJSON *prev = cJSON_AddObjectToObject(o, "previous_sign_in");
            cJSON_AddNumberToObject(prev, "at", prev_at);
            cJSON_AddStringToObject(prev, "client", prev_client);
        } else {
            cJSON_AddNullToObject(o, "previous_sign_in");
        }
        rc = zt_respond_json(req, 200, o);
        zt__json_delete_wiped(o); /* it holds a secret */
        if (rc == ZT_OK) a->sign_ins[SI_OK]++;
    }
    sodium_memzero(token, sizeof token);
out:
    cJSON_Delete(u);
    login_work_free(w);
    return rc;
}

/* Parses {login, password[, new_password]}; answers and returns NULL on bad input. */
/* What a password is checked for: a sign-in ({login, password}), a change ({old_password,
 * new_password} of the caller) or the caller confirming an act ({password}). */
enum login_mode { LOGIN_SIGN_IN, LOGIN_CHANGE, LOGIN_CONFIRM };

static login_work *login_parse(zt_auth *a, zt_req *req, enum login_mode mode)
{
    cJSON *j = zt_req_object(req);
    if (!j) return NULL;
    bool with_new = mode == LOGIN_CHANGE;
    const char *login = zt__jstr(j, "login"),
               *pw = zt__jstr(j, with_new ? "old_password" : "password");
    const char *npw = with_new ? zt__jstr(j, "new_password") : NULL;
    if (mode != LOGIN_SIGN_IN) login = req->caller->login;
    if (!login || !pw || (with_new && !npw)) {
        zt_problem(req, 422, "invalid-credentials-shape", NULL,
                   with_new                ? "send {\"old_password\": …, \"new_password\": …}"
                   : mode == LOGIN_CONFIRM ? "send {\"password\": …}: your password confirms it"
                                           : "send {\"login\": …, \"password\": …}");
        return NULL;
    }
    char buf[256];
    const char *weak =
        with_new ? password_problem(a->srv->conf, npw, login, req->caller->name, buf, sizeof buf)
                 : NULL;
    if (weak) {
        zt_problem(req, 422, "weak-password", NULL, "%s", weak);
        return NULL;
    }
    if (with_new && strcmp(pw, npw) == 0) { /* a change that changes nothing renews nothing */
        zt_problem(req, 422, "same-password", NULL,
                   "the new password must differ from the old one");
        return NULL;
    }
    login_work *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->a = a;
    size_t n = strlen(login) < 64 ? strlen(login) : 64;
    for (size_t i = 0; i < n; i++) w->login[i] = (char)tolower((unsigned char)login[i]);
    snprintf(w->client, sizeof w->client, "%s", zt_req_client(req));
    const char *code = mode == LOGIN_SIGN_IN ? zt__jstr(j, "code") : NULL;
    if (code) snprintf(w->code, sizeof w->code, "%s", code);
    w->password = secret_dup(pw);
    w->new_password = npw ? secret_dup(npw) : NULL;
    if (!w->password || (npw && !w->new_password)) {
        login_work_free(w);
        return NULL;
    }
    return w;
}

static int lookup_hash(zt_auth *a, zt_req *req, login_work *w)
{
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const void *idv;
    size_t idlen;
    if (zt_get(t, a->logins, w->login, strlen(w->login), &idv, &idlen) == ZT_OK) {
        cJSON *u = rec_get(a, t, a->users, idv, idlen);
        const char *h = u ? zt__jstr(u, "pw") : NULL;
        if (h && strlen(h) < sizeof w->hash) {
            snprintf(w->hash, sizeof w->hash, "%s", h);
            w->known = true;
        }
        const cJSON *hist =
            w->new_password ? cJSON_GetObjectItemCaseSensitive(u, "pw_history") : NULL;
        int n = cJSON_IsArray(hist) ? cJSON_GetArraySize(hist) : 0;
        if (n > 0 && (w->history = calloc((size_t)n, sizeof *w->history)))
            for (const cJSON *x = hist->child; x; x = x->next)
                if (cJSON_IsString(x) && strlen(x->valuestring) < sizeof *w->history)
                    snprintf(w->history[w->nhistory++], sizeof *w->history, "%s", x->valuestring);
        cJSON_Delete(u);
    }
    /* The transaction does not span the hashing (zt_work ends it). */
    return ZT_OK;
}

/* Seconds the account or the client address of w must still wait, or 0. */
static int64_t locked_s(zt_auth *a, const login_work *w)
{
    int64_t now = zt_now_ms(), wait, wait2;
    char key[80];
    snprintf(key, sizeof key, "acct:%s", w->login);
    wait = fail_wait_s(a, key, now);
    addr_key(key, "addr:", w->client);
    wait2 = fail_wait_s(a, key, now);
    return wait2 > wait ? wait2 : wait;
}

/* Sign-in and password change both verify a password off the loop, then `done` acts. */
static int verify_then(zt_req *req, zt_auth *a, enum login_mode mode, int (*done)(zt_req *, void *))
{
    login_work *w = login_parse(a, req, mode);
    if (!w) return req->responded ? ZT_OK : ZT_ENOMEM;
    /* A password is a guess like any other: a locked account or address takes none. */
    int64_t wait = locked_s(a, w);
    if (wait > 0) {
        if (mode == LOGIN_SIGN_IN) a->sign_ins[SI_LOCKED]++;
        too_many(req, wait, "too-many-attempts",
                 "too many failed sign-ins from this account or address");
        /* A locked account or address is refused for nothing: recorded while both have
         * records left in the window (one address trying many logins, many addresses one
         * login), else only counted. */
        const char *named = login_named(a, req, w->login);
        char akey[80], ckey[80], who[160];
        snprintf(akey, sizeof akey, "locked:%s", w->login);
        addr_key(ckey, "locked@", w->client);
        snprintf(who, sizeof who, "the locked sign-in of %s", named);
        bool rec = refusal_recordable(a, req, akey, who);
        snprintf(who, sizeof who, "a sign-in from locked address %s", w->client);
        if (refusal_recordable(a, req, ckey, who) && rec)
            audit_refusal(req, "sign-in refused: locked", named);
        else
            a->refusals_unrecorded++;
        login_work_free(w);
        return ZT_OK;
    }
    int rc = lookup_hash(a, req, w);
    if (rc == ZT_OK) rc = zt_work(req, login_verify, done, w);
    if (rc != ZT_OK) {
        login_work_free(w);
        return rc;
    }
    return ZT_ASYNC;
}

static int h_login(zt_req *req, void *ud)
{
    return verify_then(req, ud, LOGIN_SIGN_IN, login_done);
}

/* A signed-in caller's password was wrong: a guess like any other, it counts towards the
 * account's lock; 403 and a record of the refusal. */
static void wrong_password(zt_req *req, const login_work *w, const char *detail,
                           const char *refusal)
{
    char key[80];
    snprintf(key, sizeof key, "acct:%s", w->login);
    fail_note(w->a, key, zt_now_ms());
    zt_problem(req, 403, "bad-credentials", NULL, "%s", detail);
    audit_refusal(req, refusal, w->login);
}

static int password_done(zt_req *req, void *arg)
{
    login_work *w = arg;
    zt_auth *a = w->a;
    int rc = ZT_OK;
    if (!w->ok) {
        wrong_password(req, w, "the old password is wrong", "password change refused");
    } else if (w->reused) {
        zt_problem(req, 422, "same-password", NULL,
                   "the new password must differ from your last %u (auth.password_history)",
                   a->srv->conf->auth_pw_history);
    } else if (!w->hashed) {
        rc = ZT_ENOMEM;
    } else {
        zt_txn *t = zt_req_txn(req);
        cJSON *u = t ? rec_get(a, t, a->users, req->caller->id, 26) : NULL;
        if (!u) {
            rc = ZT_EIO;
        } else {
            set_password(a->srv->conf, u, w->new_hash, false);
            rc = rec_put(a, t, a->users, req->caller->id, 26, u);
            cJSON_Delete(u);
            /* whoever had the old password, or a session taken with it, must not keep the
             * account: the other sessions end, this one goes on (revoke_but bumps the
             * generation, which the cached sessions' password state needs too) */
            if (rc == ZT_OK) rc = revoke_but(a, t, req->caller->id, req->token_hash);
            if (rc == ZT_OK) rc = zt_respond(req, 204, NULL, NULL, 0);
        }
    }
    login_work_free(w);
    return rc;
}

static int h_password(zt_req *req, void *ud)
{
    return verify_then(req, ud, LOGIN_CHANGE, password_done);
}

/* ---- setting up the second factor: POST /auth/totp, POST /auth/totp/confirm,
 * DELETE /auth/totp (own account), DELETE /admin/users/:id/totp (a lost phone) ---------- */

/* The account the route's :id names; NULL with *rc set when there is none (after a 404)
 * or it cannot be read. */
static cJSON *path_account(zt_auth *a, zt_req *req, int *rc)
{
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    bool tampered = false;
    cJSON *u = t ? rec_get_ex(a, t, a->users, id, strlen(id), &tampered) : NULL;
    *rc = !t         ? ZT_EIO
          : u        ? ZT_OK
          : tampered ? zt_problem(req, 409, "record-tampered", NULL,
                                  "account %s was changed outside Zhengtong (its seal does not "
                                  "hold) and signs no one in: once someone has checked it, "
                                  "`zhengtong admin user reseal LOGIN` trusts it again",
                                  id)
                     : zt_problem(req, 404, "not-found", NULL, "there is no account %s", id);
    return u;
}

/* auth.separate_duties (GB/T 22239 三权分立): an account that holds auditor is the
 * auditors' to manage, never an administrator's, who could otherwise reset its password,
 * take its second factor away, sign in as it and hold the audit function too. The account
 * routes answer an auditor (their or_role) for such accounts alone, and an auditor gives no
 * role but auditor. u: the account (NULL: one being created); want: the roles it is to
 * hold (NULL: as they are); change: false for a read. Answers 403 auditor-accounts and
 * returns false when the caller may not. */
static bool duties_hold(zt_req *req, const cJSON *u, const cJSON *want, bool change)
{
    if (!req->srv->conf->auth_separate_duties) return true;
    const zt_caller *c = zt_req_caller(req);
    const cJSON *held = u ? cJSON_GetObjectItemCaseSensitive(u, "roles") : NULL;
    const char *id = u ? zt__jstr(u, "id") : NULL, *other = NULL, *grant = NULL;
    bool admin = zt_caller_has_role(c, "admin"), auditor = zt_caller_has_role(c, "auditor");
    bool held_aud = zt__roles_hold(held, "auditor"), want_aud = zt__roles_hold(want, "auditor");
    /* other: a role besides auditor it is to hold; grant: one it does not hold yet */
    for (const cJSON *r = cJSON_IsArray(want) ? want->child : NULL; r && !grant; r = r->next)
        if (cJSON_IsString(r) && strcmp(r->valuestring, "auditor") != 0) {
            if (!other) other = r->valuestring;
            if (!zt__roles_hold(held, r->valuestring)) grant = r->valuestring;
        }
    const char *fmt = NULL, *arg = id ? id : "";
    if (!admin && !held_aud && !want_aud) {
        fmt = !u       ? "an auditor creates only accounts that hold auditor (\"roles\": "
                         "[\"auditor\"]): the others are an administrator's"
              : change ? "an auditor manages only the accounts that hold auditor: account %s is "
                         "an administrator's"
                       : "an auditor sees only the accounts that hold auditor: account %s is an "
                         "administrator's";
    } else if (change && held_aud && !auditor) {
        fmt = "account %s holds auditor: only an auditor manages an auditor's account (its "
              "password, second factor, sessions, roles, department, clearance, whether it is "
              "enabled), not an administrator, who could then take over the audit function; "
              "another auditor does, or root on the node's machine with `zhengtong admin user "
              "... --recover`";
    } else if (change && want_aud && !auditor) {
        fmt = "only an auditor gives the auditor role (an administrator who could would take "
              "over the audit function); an auditor does, or root on the node's machine with "
              "`zhengtong admin user ... --recover`";
    } else if (change && u && want_aud && !held_aud && other) {
        fmt = "the auditor role goes to an account that holds no other ('%s'): those are an "
              "administrator's to take away first, and an auditor's account is the auditors' "
              "alone";
        arg = other;
    } else if (change && !admin && grant) {
        fmt = "an auditor gives no role but auditor: '%s' is an administrator's to give";
        arg = grant;
    }
    if (!fmt) return true;
    const char *why = zt_req_printf(req, fmt, arg); /* NULL: out of memory, refused still */
    zt_problem(req, 403, "auditor-accounts", NULL, "auth.separate_duties: %s",
               why ? why : "an auditor's account is the auditors' to manage");
    return false;
}

/* The caller's own record (ZT_EIO when it cannot be read: the caller exists). */
static cJSON *own_record(zt_auth *a, zt_req *req)
{
    zt_txn *t = zt_req_txn(req);
    return t ? rec_get(a, t, a->users, req->caller->id, 26) : NULL;
}

/* A code from the body ({"code": "123456"}) checked against u's secret in field, spending
 * it; a wrong one counts towards the account's lock like a wrong password (a stolen
 * session must not try all million). Answers and returns false when it does not hold. */
static bool code_holds(zt_auth *a, zt_req *req, cJSON *u, const char *field)
{
    char akey[80];
    snprintf(akey, sizeof akey, "acct:%s", req->caller->login);
    int64_t now = zt_now_ms(), wait = fail_wait_s(a, akey, now);
    if (wait > 0) {
        too_many(req, wait, "too-many-attempts",
                 "too many failed sign-ins from this account or address");
        return false;
    }
    cJSON *j = zt_req_object(req);
    const char *code = j ? zt__jstr(j, "code") : NULL;
    if (!code) {
        if (j) zt_problem(req, 422, "invalid-code", NULL, "send {\"code\": \"123456\"}");
        return false;
    }
    unsigned char key[ZT_TOTP_KEY];
    if (totp_key(a, u, field, key) != ZT_OK) {
        zt_problem(req, 409, "no-authenticator", NULL,
                   strcmp(field, "totp_enc") == 0
                       ? "this account has no authenticator"
                       : "no authenticator is being set up: POST /auth/totp first");
        return false;
    }
    int64_t step = zt__totp_check(key, code, now, (int64_t)jnum(u, "totp_last_step"));
    sodium_memzero(key, sizeof key);
    if (step < 0) {
        fail_note(a, akey, now);
        zt_problem(req, 422, "bad-code", NULL,
                   "the code is wrong, or was used already: wait for the next one");
        return false;
    }
    fail_clear(a, akey);
    cJSON_DeleteItemFromObjectCaseSensitive(u, "totp_last_step");
    cJSON_AddNumberToObject(u, "totp_last_step", (double)step);
    return true;
}

/* "Label:login" and issuer= of an otpauth:// URI: the node's name, percent-encoded. */
static char *otpauth_uri(zt_req *req, const char *node, const char *login, const char *b32)
{
    zt_buf b = {0};
    char *issuer = NULL;
    for (const unsigned char *c = (const unsigned char *)node; *c; c++)
        zt__buf_printf(&b, isalnum(*c) || strchr("-._~", *c) ? "%c" : "%%%02X", *c);
    if (b.data) issuer = zt_req_printf(req, "%s", b.data);
    zt__buf_free(&b);
    if (!issuer) return NULL;
    return zt_req_printf(req,
                         "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&"
                         "period=30",
                         issuer, login, b32, issuer);
}

static int h_totp_begin(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    cJSON *u = own_record(a, req);
    if (!u) return ZT_EIO;
    int rc;
    if (cJSON_GetObjectItem(u, "totp_enc")) {
        rc = zt_problem(req, 409, "two-factor-on", NULL,
                        "this account has an authenticator already: remove it first (DELETE "
                        "/auth/totp with a code from it; a lost phone: ask an administrator)");
    } else {
        unsigned char key[ZT_TOTP_KEY];
        char b32[ZT_TOTP_B32];
        zt__totp_secret(key);
        zt__base32(key, sizeof key, b32);
        rc = totp_store(a, u, "totp_pending_enc", key);
        if (rc == ZT_OK) rc = rec_put(a, zt_req_txn(req), a->users, req->caller->id, 26, u);
        const char *uri =
            rc == ZT_OK ? otpauth_uri(req, a->srv->conf->node_name, req->caller->login, b32) : NULL;
        if (rc == ZT_OK && !uri) rc = ZT_ENOMEM;
        if (rc == ZT_OK) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "secret", b32);
            cJSON_AddStringToObject(o, "uri", uri);
            cJSON_AddStringToObject(o, "next",
                                    "add it to an authenticator app (the uri as a QR code, or "
                                    "the secret by hand), then POST /auth/totp/confirm with "
                                    "{\"code\": …} from the app");
            rc = zt_respond_json(req, 201, o);
            zt__json_delete_wiped(o); /* it holds a secret */
        }
        sodium_memzero(key, sizeof key);
        sodium_memzero(b32, sizeof b32);
    }
    cJSON_Delete(u);
    return rc;
}

/* Turn the pending secret on (confirm) or the current one off (!confirm), given a code
 * from it. */
static int totp_switch(zt_req *req, zt_auth *a, bool confirm)
{
    cJSON *u = own_record(a, req);
    if (!u) return ZT_EIO;
    int rc = ZT_OK;
    if (code_holds(a, req, u, confirm ? "totp_pending_enc" : "totp_enc")) {
        unsigned char key[ZT_TOTP_KEY];
        if (confirm && (rc = totp_key(a, u, "totp_pending_enc", key)) == ZT_OK) {
            rc = totp_store(a, u, "totp_enc", key);
            sodium_memzero(key, sizeof key);
        }
        if (!confirm) {
            totp_store(a, u, "totp_enc", NULL);
            cJSON_DeleteItemFromObjectCaseSensitive(u, "totp_last_step");
        }
        totp_store(a, u, "totp_pending_enc", NULL);
        zt_txn *t = zt_req_txn(req);
        if (rc == ZT_OK) rc = rec_put(a, t, a->users, req->caller->id, 26, u);
        /* sessions see whether it is on; turning it on also ends the sessions signed in
         * with the password alone (whoever had the password keeps none), not this one */
        if (rc == ZT_OK)
            rc = confirm ? revoke_but(a, t, req->caller->id, req->token_hash) : gen_bump(a, t);
        if (rc == ZT_OK) {
            zt_audit_note(req,
                          confirm ? "turn on two-factor sign-in" : "turn off two-factor sign-in",
                          req->caller->id);
            rc = zt_respond(req, 204, NULL, NULL, 0);
        }
    }
    cJSON_Delete(u);
    return req->responded ? ZT_OK : rc;
}

static int h_totp_confirm(zt_req *req, void *ud)
{
    return totp_switch(req, ud, true);
}

static int h_totp_delete(zt_req *req, void *ud)
{
    return totp_switch(req, ud, false);
}

/* Sign-in codes off for account u (a lost phone), stored; every session ends: whoever
 * holds the phone or a session must not keep the account. */
static int totp_off(zt_auth *a, zt_txn *t, cJSON *u)
{
    const char *id = zt__jstr(u, "id");
    totp_store(a, u, "totp_enc", NULL);
    totp_store(a, u, "totp_pending_enc", NULL);
    cJSON_DeleteItemFromObjectCaseSensitive(u, "totp_last_step");
    int rc = rec_put(a, t, a->users, id, strlen(id), u);
    return rc == ZT_OK ? revoke_all(a, t, id) : rc;
}

static int h_user_totp_delete(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    int rc;
    cJSON *u = path_account(a, req, &rc);
    if (!u) return rc;
    if (!duties_hold(req, u, NULL, true)) {
        cJSON_Delete(u);
        return ZT_OK;
    }
    rc = totp_off(a, t, u);
    cJSON_Delete(u);
    if (rc != ZT_OK) return rc;
    zt_audit_note(req, "remove two-factor sign-in", id);
    return zt_respond(req, 204, NULL, NULL, 0);
}

/* Drop index entry key → id from db if it is this account's (1), or leave it (0). */
static int unindex(zt_txn *t, zt_db *db, const void *key, size_t klen, const char *id)
{
    const void *v;
    size_t vl;
    if (zt_get(t, db, key, klen, &v, &vl) != ZT_OK || vl != strlen(id) || memcmp(v, id, vl) != 0)
        return 0;
    return zt_del(t, db, key, klen) == ZT_OK ? 1 : ZT_EIO;
}

/* POST /admin/users/:id/release: a disabled citizen's or enterprise's account gives up the
 * ID number or credit code it registered with, so that the number's rightful holder can
 * register (registration checks a number, not a person: anyone may type another's). The
 * record stays for the history, without the number: a citizen's encrypted ID number is
 * dropped (only its masked form stays), an enterprise's code is kept as
 * released_credit_code, which no caller carries. */
/* Take account u (a citizen or an enterprise, in t) off the ID number or credit code it
 * registered with: the index entry goes if it is this account's, a citizen's encrypted
 * number leaves the record (its masked form stays), an enterprise's code stays as
 * released_credit_code, which no caller carries. 1 if it held one, 0 if not, or an error. */
static int drop_identity(zt_auth *a, zt_txn *t, cJSON *u)
{
    const char *id = zt__jstr(u, "id");
    const char *code = zt__jstr(u, "credit_code"), *enc = zt__jstr(u, "id_number_enc");
    if (!id || (!code && !enc)) return 0;
    int rc = code ? unindex(t, a->credit_codes, code, strlen(code), id) : 0;
    if (rc >= 0 && enc) {
        unsigned char cipher[18 + ZT_FIELD_OVERHEAD], index[ZT_INDEX_BYTES];
        char canon[19];
        size_t clen = 0, n = 18;
        if (zt__b64url_decode(cipher, sizeof cipher, enc, strlen(enc), &clen) == ZT_OK &&
            zt_field_decrypt(&a->core, "id_number", cipher, clen, canon, &n) == ZT_OK && n == 18 &&
            zt_field_index(&a->core, "id_number", canon, 18, index) == ZT_OK)
            rc = unindex(t, a->citizen_ids, index, sizeof index, id);
        else
            rc = ZT_EIO; /* damaged, or another key file's */
        sodium_memzero(canon, sizeof canon);
    }
    if (rc < 0) return rc;
    cJSON_DeleteItemFromObjectCaseSensitive(u, "id_number_enc");
    if (code) {
        cJSON_AddStringToObject(u, "released_credit_code", code);
        cJSON_DeleteItemFromObjectCaseSensitive(u, "credit_code");
    }
    cJSON_AddNumberToObject(u, "released_at", (double)zt_now_ms());
    if ((rc = rec_put(a, t, a->users, id, strlen(id), u)) != ZT_OK) return rc;
    if ((rc = gen_bump(a, t)) != ZT_OK) return rc; /* the cached callers carry the code */
    return 1;
}

static bool self_registered(const cJSON *u)
{
    const char *kind = zt__jstr(u, "kind");
    return kind && (strcmp(kind, "citizen") == 0 || strcmp(kind, "enterprise") == 0);
}

/* POST /admin/users/:id/release: a disabled citizen's or enterprise's account gives up the
 * ID number or credit code it registered with, so that the number's rightful holder can
 * register (registration checks a number, not a person: anyone may type another's). The
 * record stays for the history, without the number (drop_identity). */
static int h_user_release(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    int rc;
    cJSON *u = path_account(a, req, &rc);
    if (!u) return rc;
    const char *kind = zt__jstr(u, "kind"), *id = zt__jstr(u, "id");
    if (!self_registered(u)) {
        rc = zt_problem(req, 409, "not-registered-identity", NULL,
                        "account %s is %s: only citizens and enterprises register with an ID "
                        "number or a credit code",
                        id, kind ? kind : "?");
    } else if (!jtrue(u, "disabled")) {
        rc = zt_problem(req, 409, "account-active", NULL,
                        "disable account %s first (PATCH /admin/users/%s {\"disabled\": true}): "
                        "it must not go on acting under what it gives up",
                        id, id);
    } else if ((rc = drop_identity(a, zt_req_txn(req), u)) == 0) {
        rc = zt_problem(req, 409, "nothing-to-release", NULL,
                        "account %s holds no ID number or credit code (released already?)", id);
    } else if (rc > 0) {
        zt_audit_note(req, "release registered identity", id);
        cJSON *o = user_view(a, u);
        rc = o ? zt_respond_json(req, 200, o) : ZT_ENOMEM;
        cJSON_Delete(o);
    }
    cJSON_Delete(u);
    return rc;
}

/* POST /auth/close {password}: a citizen or an enterprise closes its own account (注销,
 * PIPL art. 47): once the password checks, the account is disabled for good (closed_at),
 * its sessions end, and it gives up its ID number or credit code, which may register
 * again. What it did stays on record (applications, the audit log) as the law keeps it;
 * its login stays taken, so that no one else signs in as it. */
static int close_done(zt_req *req, void *arg)
{
    login_work *w = arg;
    zt_auth *a = w->a;
    int rc = ZT_OK;
    zt_txn *t = zt_req_txn(req);
    cJSON *u = NULL;
    if (!w->ok) {
        wrong_password(req, w, "the password is wrong", "account closing refused");
    } else if (!t || !(u = rec_get(a, t, a->users, req->caller->id, 26))) {
        rc = ZT_EIO;
    } else if ((rc = drop_identity(a, t, u)) >= 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(u, "disabled");
        cJSON_AddBoolToObject(u, "disabled", true);
        cJSON_AddNumberToObject(u, "closed_at", (double)zt_now_ms());
        rc = rec_put(a, t, a->users, req->caller->id, 26, u);
        if (rc == ZT_OK) rc = revoke_all(a, t, req->caller->id); /* this session too */
        if (rc == ZT_OK) { /* for plugins that hold the account's unfinished business */
            cJSON *ev = cJSON_CreateObject();
            cJSON_AddStringToObject(ev, "id", req->caller->id);
            cJSON_AddStringToObject(ev, "kind", req->caller->kind);
            rc = ev ? zt_emit(req, "identity.account.closed", ev) : ZT_ENOMEM;
            cJSON_Delete(ev);
        }
        if (rc == ZT_OK) {
            zt_audit_note(req, "close account", req->caller->id);
            rc = zt_respond(req, 204, NULL, NULL, 0);
        }
    }
    cJSON_Delete(u);
    login_work_free(w);
    return rc;
}

static int h_close(zt_req *req, void *ud)
{
    const char *kind = req->caller->kind;
    if (strcmp(kind, "citizen") != 0 && strcmp(kind, "enterprise") != 0)
        return zt_problem(req, 403, "forbidden", NULL,
                          "a %s account is closed by an administrator (PATCH /admin/users/:id "
                          "{\"disabled\": true}), not by itself",
                          kind);
    return verify_then(req, ud, LOGIN_CONFIRM, close_done);
}

/* A session ended by its holder is recorded by its public id, as its sign-in was: the
 * record of how it ended is found beside the one of how it began. */
static void note_session(zt_req *req, const char *action, const unsigned char hash[32])
{
    char sid[SID_HEX + 1], object[8 + SID_HEX + 1];
    sid_of(hash, sid);
    snprintf(object, sizeof object, "session %s", sid);
    zt_audit_note(req, action, object);
}

static int h_logout(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    int rc = session_delete(a, t, req->token_hash, req->caller->id);
    if (rc == ZT_OK) note_session(req, "sign-out", req->token_hash);
    return rc == ZT_OK ? zt_respond(req, 204, NULL, NULL, 0) : rc;
}

static int h_me(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    zt_txn *t = zt_req_txn(req);
    cJSON *u = t ? rec_get(a, t, a->users, req->caller->id, 26) : NULL;
    if (!u) return ZT_EIO;
    cJSON *o = user_view(a, u);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    cJSON_Delete(u);
    return rc;
}

/* The security labels, lowest first, and the caller's clearance: what a form offers. */
static int h_labels(zt_req *req, void *ud)
{
    (void)ud;
    const zt_conf *c = req->srv->conf;
    cJSON *o = cJSON_CreateObject(), *l = cJSON_AddArrayToObject(o, "labels");
    for (size_t i = 0; l && i < c->auth_nlabels; i++)
        cJSON_AddItemToArray(l, cJSON_CreateString(c->auth_labels[i]));
    cJSON_AddStringToObject(o, "default_clearance", c->auth_default_clearance);
    cJSON_AddStringToObject(o, "clearance", req->caller->clearance);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int h_sessions(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    zt_txn *t = zt_req_txn(req);
    zt_cursor *cur;
    if (!t || zt_cursor_open(t, a->user_sessions, &cur) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    char cur_sid[SID_HEX + 1];
    sid_of(req->token_hash, cur_sid);
    zt_kv kv;
    for (int rc = zt_cursor_seek(cur, ZT_GE, req->caller->id, 26, &kv);
         rc == ZT_OK && kv.klen == 26 + SID_HEX && memcmp(kv.key, req->caller->id, 26) == 0;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *s = rec_get(a, t, a->sessions, kv.val, kv.vlen);
        if (!s) continue;
        cJSON_AddBoolToObject(s, "current",
                              strcmp(zt__jstr(s, "id") ? zt__jstr(s, "id") : "", cur_sid) == 0);
        cJSON_DeleteItemFromObjectCaseSensitive(s, "user");
        cJSON_DeleteItemFromObjectCaseSensitive(s, "order");
        cJSON_AddItemToArray(items, s);
    }
    zt_cursor_close(cur);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int h_session_delete(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *sid = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    char k[26 + SID_HEX];
    const void *hash;
    size_t hlen;
    if (strlen(sid) != SID_HEX ||
        zt_get(t, a->user_sessions, k, us_key(k, req->caller->id, sid), &hash, &hlen) != ZT_OK ||
        hlen != 32)
        return zt_problem(req, 404, "not-found", NULL, "you have no session %s", sid);
    unsigned char h[32];
    memcpy(h, hash, 32);
    int rc = session_delete(a, t, h, req->caller->id);
    if (rc == ZT_OK) note_session(req, "end session", h);
    return rc == ZT_OK ? zt_respond(req, 204, NULL, NULL, 0) : rc;
}

/* ---- HTTP: administration ---------------------------------------------------------- */

/* Hashing a password costs tens of milliseconds: it runs off the loop. A handler checks
 * its input, then hands the password and what to do next to hash_then(); `then` runs back
 * on the loop with a fresh transaction and answers. */
typedef struct hash_job {
    zt_auth *a;
    char *pw; /* sodium_malloc'd, wiped */
    char hash[crypto_pwhash_STRBYTES];
    bool ok;
    int (*then)(zt_req *req, struct hash_job *j);
    cJSON *args;                     /* what the handler checked, for `then` */
    char one_time[ONE_TIME_LEN + 1]; /* a generated password, shown once */
} hash_job;

static void hash_job_run(void *arg)
{
    hash_job *j = arg;
    j->ok = crypto_pwhash_str(j->hash, j->pw, strlen(j->pw), j->a->srv->conf->auth_pw_ops,
                              j->a->srv->conf->auth_pw_mem) == 0;
}

static void hash_job_free(hash_job *j)
{
    if (j->pw) sodium_free(j->pw);
    cJSON_Delete(j->args);
    sodium_memzero(j, sizeof(*j));
    free(j);
}

static int hash_job_done(zt_req *req, void *arg)
{
    hash_job *j = arg;
    int rc = j->ok ? j->then(req, j) : ZT_ENOMEM;
    hash_job_free(j);
    return rc;
}

/* pw NULL: generate a one-time password. Takes args. Returns ZT_ASYNC or an error. */
static int hash_then(zt_req *req, zt_auth *a, const char *pw, cJSON *args,
                     int (*then)(zt_req *req, hash_job *j))
{
    hash_job *j = calloc(1, sizeof(*j));
    if (!j) {
        cJSON_Delete(args);
        return ZT_ENOMEM;
    }
    j->a = a;
    j->args = args;
    j->then = then;
    if (!pw) {
        random_password(a->srv->conf, j->one_time);
        pw = j->one_time;
    }
    int rc = (j->pw = secret_dup(pw)) ? zt_work(req, hash_job_run, hash_job_done, j) : ZT_ENOMEM;
    if (rc != ZT_OK) {
        hash_job_free(j);
        return rc;
    }
    return ZT_ASYNC;
}

static bool roles_ok(const cJSON *roles)
{
    if (!cJSON_IsArray(roles)) return false;
    for (const cJSON *r = roles->child; r; r = r->next) {
        if (!cJSON_IsString(r) || !zt__role_name_ok(r->valuestring)) return false;
        if (strcmp(r->valuestring, ZT_ROLE_PUBLIC) == 0 ||
            strcmp(r->valuestring, ZT_ROLE_USER) == 0)
            return false;
        for (const cJSON *q = roles->child; q != r; q = q->next) /* each once */
            if (strcmp(q->valuestring, r->valuestring) == 0) return false;
    }
    return true;
}
#define ROLES_RULE                                                                                 \
    "a list of role names, each once (1 to 64 of a-z 0-9 _ . - from a letter; not 'public' or "    \
    "'user')"

/* Why an account cannot be given the roles want (a JSON list; held: the roles it holds
 * now, which it keeps even if no longer known, or NULL), or NULL; *type: the problem's.
 * offline: the message points at `zhengtong admin role`, not at HTTP. */
static const char *grant_problem(zt_auth *a, zt_txn *t, const cJSON *want, const cJSON *held,
                                 bool offline, const char **type, char *buf, size_t cap)
{
    *type = "invalid-user";
    if (!roles_ok(want)) return ROLES_RULE;
    const char *unknown = zt__roles_unknown(a->srv, t, want, held);
    if (unknown) {
        *type = "unknown-role";
        snprintf(buf, cap, offline ? CLI_ROLE_UNKNOWN : ZT__ROLE_UNKNOWN, unknown);
        return buf;
    }
    *type = "duties-not-separate";
    return zt__roles_not_separate(a->srv->conf, want) ? ZT__DUTIES_RULE : NULL;
}

/* What a new account is granted, for its audit record, as a PATCH records a change (each
 * key and its JSON value, "; " between): after `prefix`, `department "tax"; roles
 * ["approval_clerk"]; clearance "internal"`. Into b, NUL-terminated. */
static int grants_text(zt_buf *b, const char *prefix, const zt_conf *c, const cJSON *u)
{
    const char *dept = zt__jstr(u, "department"), *clear = clearance_of(c, u);
    char *roles = zt_json_print(cJSON_GetObjectItemCaseSensitive(u, "roles"));
    int rc = roles && dept ? zt__buf_printf(b, "%sdepartment ", prefix) : ZT_ENOMEM;
    if (rc == ZT_OK) rc = zt__buf_json_str(b, dept, strlen(dept));
    if (rc == ZT_OK) rc = zt__buf_printf(b, "; roles %s; clearance ", roles);
    if (rc == ZT_OK) rc = zt__buf_json_str(b, clear, strlen(clear));
    if (rc == ZT_OK) rc = zt__buf_append(b, "", 1);
    free(roles);
    return rc;
}

static int user_create_then(zt_req *req, hash_job *j)
{
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const char *login = zt__jstr(j->args, "login");
    cJSON *u = NULL, *extra = cJSON_CreateObject();
    const char *clearance = zt__jstr(j->args, "clearance");
    if (!extra || (clearance && !cJSON_AddStringToObject(extra, "clearance", clearance))) {
        cJSON_Delete(extra);
        return ZT_ENOMEM;
    }
    int rc = create_user(
        j->a, t, login, zt__jstr(j->args, "name"), "staff", zt__jstr(j->args, "department"),
        cJSON_GetObjectItemCaseSensitive(j->args, "roles"), j->hash, true, extra, &u);
    cJSON_Delete(extra);
    if (rc == ZT_EEXIST)
        return zt_problem(req, 409, "login-taken", NULL, "the login '%s' is taken", login);
    if (rc != ZT_OK) return rc;
    zt_buf what = {0};
    rc = grants_text(&what, "create account: ", j->a->srv->conf, u);
    if (rc == ZT_OK) {
        zt_audit_note(req, what.data, zt__jstr(u, "id"));
        cJSON *o = user_view(j->a, u);
        cJSON_AddStringToObject(o, "one_time_password", j->one_time);
        rc = zt_respond_json(req, 201, o);
        zt__json_delete_wiped(o); /* it holds a secret */
    }
    zt__buf_free(&what);
    cJSON_Delete(u);
    return rc;
}

static int h_user_create(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *login = zt__jstr(j, "login"), *name = zt__jstr(j, "name"),
               *dept = zt__jstr(j, "department");
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(j, "roles");
    if (!login || !login_ok(login)) return zt_problem(req, 422, "invalid-user", NULL, LOGIN_RULE);
    const char *why = name_problem(name);
    if (why) return zt_problem(req, 422, "invalid-user", NULL, NAME_RULE, why);
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    char buf[512];
    const char *type,
        *bad = roles ? grant_problem(a, t, roles, NULL, false, &type, buf, sizeof buf) : NULL;
    if (bad) return zt_problem(req, 422, type, NULL, "roles: %s", bad);
    if (!duties_hold(req, NULL, roles, true)) return ZT_OK;
    const cJSON *clearance = cJSON_GetObjectItemCaseSensitive(j, "clearance");
    if (clearance && (bad = clearance_problem(req, jstring(clearance))))
        return zt_problem(req, 422, "invalid-user", NULL, "%s", bad);
    const void *v;
    size_t vlen;
    if (!dept || zt_get(t, a->depts, dept, strlen(dept), &v, &vlen) != ZT_OK)
        return zt_problem(req, 422, "invalid-user", NULL,
                          "department: the code of an existing department (POST "
                          "/admin/departments creates one)");
    return hash_then(req, a, NULL, cJSON_Duplicate(j, 1), user_create_then);
}

/* GET /admin/users filters: kind, role, department (it and those below), disabled,
 * inactive. NULL: all pass. */
typedef struct user_filter {
    const char *kind, *role, *dept, *clearance;
    int disabled, inactive; /* -1: either, 0: false, 1: true */
} user_filter;

static bool user_passes(zt_auth *a, zt_txn *t, const user_filter *f, const cJSON *u, int64_t now)
{
    const char *kind = zt__jstr(u, "kind");
    if (f->kind && (!kind || strcmp(kind, f->kind) != 0)) return false;
    if (f->role && !zt__roles_hold(cJSON_GetObjectItemCaseSensitive(u, "roles"), f->role))
        return false;
    if (f->disabled >= 0 && jtrue(u, "disabled") != (f->disabled == 1)) return false;
    if (f->clearance && strcmp(clearance_of(a->srv->conf, u), f->clearance) != 0) return false;
    if (f->inactive >= 0 && inactive(a, u, now) != (f->inactive == 1)) return false;
    bool hit = false;
    if (f->dept) dept_walk(a, t, zt__jstr(u, "department"), f->dept, &hit);
    return !f->dept || hit;
}

/* "true" 1, "false" 0, absent -1; else -2. */
static int query_bool(zt_req *req, const char *name)
{
    const char *v = zt_req_query(req, name);
    return !v ? -1 : strcmp(v, "true") == 0 ? 1 : strcmp(v, "false") == 0 ? 0 : -2;
}

#define USER_SCAN_MAX 20000 /* accounts one page reads at most: a rare filter pages on */

static int h_user_list(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    zt_txn *t = zt_req_txn(req);
    zt_cursor *cur;
    if (!t) return ZT_EIO;
    const char *lim = zt_req_query(req, "limit"), *after = zt_req_query(req, "after");
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 50;
    if (limit < 1 || limit > 500 || (lim && *end))
        return zt_problem(req, 400, "invalid-query", NULL, "limit: 1 to 500");
    user_filter f = {zt_req_query(req, "kind"),       zt_req_query(req, "role"),
                     zt_req_query(req, "department"), zt_req_query(req, "clearance"),
                     query_bool(req, "disabled"),     query_bool(req, "inactive")};
    if (f.kind && strcmp(f.kind, "staff") != 0 && strcmp(f.kind, "citizen") != 0 &&
        strcmp(f.kind, "enterprise") != 0)
        return zt_problem(req, 400, "invalid-query", NULL, "kind: staff, citizen or enterprise");
    if (f.disabled == -2 || f.inactive == -2)
        return zt_problem(req, 400, "invalid-query", NULL, "disabled, inactive: true or false");
    if (f.role && !zt__role_name_ok(f.role))
        return zt_problem(req, 400, "invalid-query", NULL, "role: a role name");
    /* an auditor (the route's or_role under auth.separate_duties) sees the auditors only */
    if (a->srv->conf->auth_separate_duties && !zt_caller_has_role(zt_req_caller(req), "admin")) {
        if (f.role && strcmp(f.role, "auditor") != 0)
            return zt_problem(req, 403, "auditor-accounts", NULL,
                              "auth.separate_duties: an auditor sees only the accounts that "
                              "hold auditor (role=auditor)");
        f.role = "auditor";
    }
    const char *why = f.clearance ? clearance_problem(req, f.clearance) : NULL;
    if (why) return zt_problem(req, 400, "invalid-query", NULL, "%s", why);
    if (f.dept && !zt__auth_dept_exists(a->srv, t, f.dept))
        return zt_problem(req, 400, "invalid-query", NULL, "department: no department '%s'",
                          f.dept);
    if (zt_cursor_open(t, a->users, &cur) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    zt_kv kv;
    int rc = after ? zt_cursor_seek(cur, ZT_GE, after, strlen(after), &kv)
                   : zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv);
    if (rc == ZT_OK && after && kv.klen == strlen(after) && memcmp(kv.key, after, kv.klen) == 0)
        rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv);
    long n = 0, scanned = 0;
    char last[27] = "";
    int64_t now = zt_now_ms();
    /* a role filter: only records that hold the role's name as a JSON string are parsed
     * (most accounts, citizens', hold none) */
    char *quoted = f.role ? zt_req_printf(req, "\"%s\"", f.role) : NULL;
    for (; rc == ZT_OK && n < limit && scanned < USER_SCAN_MAX;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv), scanned++) {
        snprintf(last, sizeof last, "%.*s", (int)kv.klen, (const char *)kv.key);
        if (quoted && !memmem(kv.val, kv.vlen, quoted, strlen(quoted))) continue;
        cJSON *u = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (u && user_passes(a, t, &f, u, now)) {
            cJSON *view = user_view(a, u);
            if (!rec_ok(a, a->users, kv.key, kv.klen, kv.val, kv.vlen))
                cJSON_AddTrueToObject(view, "tampered"); /* it signs no one in */
            cJSON_AddItemToArray(items, view);
            n++;
        }
        cJSON_Delete(u);
    }
    /* more to read: the next page starts after the last account read (which a filter may
     * have passed over) */
    if (rc == ZT_OK && last[0])
        cJSON_AddStringToObject(o, "next", last);
    else
        cJSON_AddNullToObject(o, "next");
    zt_cursor_close(cur);
    /* the accounts seen are personal data looked at by someone else: the read is recorded,
     * with what was asked and which accounts it showed (the first and the last) */
    const cJSON *first = cJSON_GetArrayItem(items, 0),
                *lastv = cJSON_GetArrayItem(items, (int)n - 1);
    const char *q = req->query && *req->query ? req->query : NULL;
    zt_audit_note(req, "list accounts",
                  zt_req_printf(req, "%ld accounts%s%.200s%s%s%s%s", n, q ? " for " : "",
                                q ? q : "", n ? " from " : "", n ? zt__jstr(first, "id") : "",
                                n > 1 ? " to " : "", n > 1 ? zt__jstr(lastv, "id") : ""));
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int h_user_get(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    int rc;
    cJSON *u = path_account(a, req, &rc);
    if (!u) return rc;
    if (!duties_hold(req, u, NULL, false)) {
        cJSON_Delete(u);
        return ZT_OK;
    }
    zt_audit_note(req, "view account", zt__jstr(u, "id"));
    cJSON *o = user_view(a, u);
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    cJSON_Delete(u);
    return rc;
}

static int revoke_all(zt_auth *a, zt_txn *t, const char *uid)
{
    return revoke_but(a, t, uid, NULL);
}

/* End every session of account uid but the one whose token hash is keep (NULL: all). */
static int revoke_but(zt_auth *a, zt_txn *t, const char *uid, const unsigned char *keep)
{
    zt_cursor *cur;
    int rc = zt_cursor_open(t, a->user_sessions, &cur);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    for (rc = zt_cursor_seek(cur, ZT_GE, uid, 26, &kv);
         rc == ZT_OK && kv.klen == 26 + SID_HEX && memcmp(kv.key, uid, 26) == 0;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        if (keep && kv.vlen == 32 && memcmp(kv.val, keep, 32) == 0) continue;
        if (kv.vlen == 32 && (rc = zt_del(t, a->sessions, kv.val, 32)) != ZT_OK &&
            rc != ZT_ENOTFOUND)
            break;
        if ((rc = zt_cursor_del(cur)) != ZT_OK) break;
    }
    zt_cursor_close(cur);
    if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    return rc == ZT_OK ? gen_bump(a, t) : rc;
}

/* The login index follows an account's renamed login (from to to; nothing if the same). */
static int login_move(zt_auth *a, zt_txn *t, const char *id, const char *from, const char *to)
{
    if (!to || strcmp(from, to) == 0) return ZT_OK;
    int rc = zt_del(t, a->logins, from, strlen(from));
    if (rc == ZT_OK || rc == ZT_ENOTFOUND)
        rc = zt_put(t, a->logins, to, strlen(to), id, strlen(id));
    return rc;
}

static int h_user_patch(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *id = zt_req_param(req, "id");
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    zt_txn *t = zt_req_txn(req);
    int rc;
    cJSON *u = path_account(a, req, &rc);
    if (!u) return rc;
    /* (roles to change: checked with them, once they are known to be roles) */
    if (!cJSON_GetObjectItemCaseSensitive(j, "roles") && !duties_hold(req, u, NULL, true)) {
        cJSON_Delete(u);
        return ZT_OK;
    }
    rc = ZT_OK;
    char old_login[65];
    snprintf(old_login, sizeof old_login, "%s", zt__jstr(u, "login") ? zt__jstr(u, "login") : "");
    for (const cJSON *e = j->child; e; e = e->next) {
        const char *k = e->string, *bad = NULL;
        if (strcmp(k, "login") == 0) { /* GB/T 22239: the default account is renamed */
            const void *v;
            size_t vl;
            if (!cJSON_IsString(e) || !login_ok(e->valuestring)) {
                bad = LOGIN_RULE;
            } else if (!is_staff(u)) {
                bad = "login: only a staff account's login is changed (a citizen's or an "
                      "enterprise's is their own)";
            } else if (strcmp(e->valuestring, old_login) != 0 &&
                       zt_get(t, a->logins, e->valuestring, strlen(e->valuestring), &v, &vl) ==
                           ZT_OK) {
                cJSON_Delete(u);
                return zt_problem(req, 409, "login-taken", NULL, "the login '%s' is taken",
                                  e->valuestring);
            }
        } else if (strcmp(k, "name") == 0) {
            const char *why = cJSON_IsString(e) ? name_problem(e->valuestring) : "is not a string";
            if (why) bad = zt_req_printf(req, NAME_RULE, why);
        } else if (strcmp(k, "department") == 0) {
            const void *v;
            size_t vl;
            if (!cJSON_IsString(e) ||
                zt_get(t, a->depts, e->valuestring, strlen(e->valuestring), &v, &vl) != ZT_OK)
                bad = "department: the code of an existing department";
        } else if (strcmp(k, "roles") == 0) {
            const cJSON *held = cJSON_GetObjectItemCaseSensitive(u, "roles");
            char buf[512];
            const char *type, *why = grant_problem(a, t, e, held, false, &type, buf, sizeof buf);
            if (why) {
                int st = zt_problem(req, 422, type, NULL, "roles: %s", why);
                cJSON_Delete(u);
                return st;
            } else if (!duties_hold(req, u, e, true)) {
                cJSON_Delete(u);
                return ZT_OK;
            } else if (a->srv->conf->auth_separate_duties &&
                       strcmp(zt_req_caller(req)->id, id) == 0 && !cJSON_Compare(e, held, true)) {
                cJSON_Delete(u);
                return zt_problem(req, 403, "own-roles", NULL,
                                  "auth.separate_duties: no one changes their own roles; another "
                                  "administrator does");
            }
        } else if (strcmp(k, "clearance") == 0) { /* 安全标记: the subject's label */
            if (!is_staff(u)) {
                bad = "clearance: only a staff account's is set (a citizen's or an enterprise's "
                      "is the lowest label: what they reach is their own)";
            } else if (!(bad = clearance_problem(req, jstring(e))) &&
                       a->srv->conf->auth_separate_duties &&
                       strcmp(zt_req_caller(req)->id, id) == 0 &&
                       strcmp(e->valuestring, clearance_of(a->srv->conf, u)) != 0) {
                cJSON_Delete(u);
                return zt_problem(req, 403, "own-clearance", NULL,
                                  "auth.separate_duties: no one changes their own clearance; "
                                  "another administrator does");
            }
        } else if (strcmp(k, "disabled") == 0) {
            if (!cJSON_IsBool(e))
                bad = "disabled: true or false";
            else if (cJSON_IsFalse(e) && cJSON_GetObjectItemCaseSensitive(u, "closed_at")) {
                cJSON_Delete(u);
                return zt_problem(req, 409, "account-closed", NULL,
                                  "account %s was closed by its holder: it stays closed (they "
                                  "may register again)",
                                  id);
            }
        } else {
            bad = "only login, name, department, roles, clearance and disabled can be changed";
        }
        if (bad) {
            cJSON_Delete(u);
            return zt_problem(req, 422, "invalid-user", NULL, "%s", bad);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(u, k);
        cJSON_AddItemToObject(u, k, cJSON_Duplicate(e, 1));
        if (strcmp(k, "disabled") == 0 && cJSON_IsFalse(e)) reactivate(u);
    }
    rc = rec_put(a, t, a->users, id, strlen(id), u);
    if (rc == ZT_OK) rc = login_move(a, t, id, old_login, zt__jstr(u, "login"));
    if (rc == ZT_OK) rc = gen_bump(a, t); /* what a cached caller holds changed */
    if (rc == ZT_OK && jtrue(u, "disabled")) rc = revoke_all(a, t, id);
    if (rc == ZT_OK) {
        /* the record says what changed, the roles granted included (a name is personal
         * data: only that it changed) */
        zt_buf what = {0};
        int brc = zt__buf_puts(&what, "update account");
        for (const cJSON *e = j->child; e && brc == ZT_OK; e = e->next) {
            brc = zt__buf_puts(&what, e == j->child ? ": " : "; ");
            if (strcmp(e->string, "name") == 0) {
                brc |= zt__buf_puts(&what, "name changed");
            } else {
                char *v = zt_json_print(e);
                brc |= zt__buf_printf(&what, "%s %s", e->string, v ? v : "?");
                free(v);
            }
        }
        if (brc == ZT_OK && zt__buf_append(&what, "", 1) == ZT_OK)
            zt_audit_note(req, what.data, id);
        zt__buf_free(&what);
        cJSON *o = user_view(a, u);
        rc = zt_respond_json(req, 200, o);
        cJSON_Delete(o);
    }
    cJSON_Delete(u);
    return rc;
}

static int user_reset_then(zt_req *req, hash_job *j)
{
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    int rc;
    cJSON *u = path_account(j->a, req, &rc);
    if (!u) return rc;
    if (!duties_hold(req, u, NULL, true)) { /* read as it is now, after the hashing */
        cJSON_Delete(u);
        return ZT_OK;
    }
    set_password(j->a->srv->conf, u, j->hash, true);
    rc = rec_put(j->a, t, j->a->users, id, strlen(id), u);
    cJSON_Delete(u);
    if (rc == ZT_OK) rc = revoke_all(j->a, t, id);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "one_time_password", j->one_time);
    zt_audit_note(req, "reset password", id);
    rc = zt_respond_json(req, 200, o);
    zt__json_delete_wiped(o); /* it holds a secret */
    return rc;
}

static int h_user_reset(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *id = zt_req_param(req, "id");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const void *v;
    size_t vl;
    if (zt_get(t, a->users, id, strlen(id), &v, &vl) != ZT_OK)
        return zt_problem(req, 404, "not-found", NULL, "there is no account %s", id);
    return hash_then(req, a, NULL, NULL, user_reset_then);
}

static int h_user_revoke(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    int rc;
    /* the account must exist: revoke_all compares account ids of 26 bytes, and a shorter
     * :id would be read past its end */
    cJSON *u = path_account(a, req, &rc);
    if (!u) return rc;
    if (!duties_hold(req, u, NULL, true)) {
        cJSON_Delete(u);
        return ZT_OK;
    }
    rc = revoke_all(a, zt_req_txn(req), zt__jstr(u, "id"));
    cJSON_Delete(u);
    return rc == ZT_OK ? zt_respond(req, 204, NULL, NULL, 0) : rc;
}

static int h_dept_list(zt_req *req, void *ud)
{
    return zt__respond_db_list(req, ((zt_auth *)ud)->depts, NULL, NULL, "mac");
}

/* Every department still reaches the root within DEPT_DEPTH steps (after a move). */
static bool dept_tree_ok(zt_auth *a, zt_txn *t)
{
    zt_cursor *cur;
    zt_kv kv;
    bool ok = zt_cursor_open(t, a->depts, &cur) == ZT_OK;
    for (int r = ok ? zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv) : ZT_EIO; ok && r == ZT_OK;
         r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        char code[65];
        snprintf(code, sizeof code, "%.*s", (int)(kv.klen < 64 ? kv.klen : 64),
                 (const char *)kv.key);
        ok = dept_walk(a, t, code, NULL, NULL) >= 0;
    }
    if (ok) zt_cursor_close(cur);
    return ok;
}

/* PATCH /admin/departments/:code {name, parent}: a department renamed or moved (a county
 * reorganises its bureaus). Its code stays: accounts, records and seals name it. Moving
 * it moves its staff's scope with it: they see below its new place, and the editors
 * above it now see it. */
static int h_dept_update(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *code = zt_req_param(req, "code");
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    bool tampered;
    cJSON *d = rec_get_ex(a, t, a->depts, code, strlen(code), &tampered);
    if (!d && tampered)
        return zt_problem(req, 409, "record-tampered", NULL,
                          "department %s was changed outside Zhengtong (its seal does not hold): "
                          "once someone has checked it, `zhengtong admin dept reseal %s` trusts "
                          "it again",
                          code, code);
    if (!d) return zt_problem(req, 404, "not-found", NULL, "there is no department %s", code);
    const char *bad = NULL;
    for (const cJSON *e = j->child; e && !bad; e = e->next) {
        if (strcmp(e->string, "name") == 0) {
            const char *why = cJSON_IsString(e) ? name_problem(e->valuestring) : "is not text";
            if (why) bad = zt_req_printf(req, NAME_RULE, why);
        } else if (strcmp(e->string, "parent") == 0) {
            bool in = false;
            if (strcmp(code, "root") == 0)
                bad = "parent: root is the top of the tree; it does not move";
            else if (!cJSON_IsString(e) || !zt__auth_dept_exists(a->srv, t, e->valuestring))
                bad = "parent: the code of an existing department";
            else if (dept_walk(a, t, e->valuestring, code, &in) >= 0 && in)
                bad = zt_req_printf(req, "parent: %s is %s: a department cannot move below itself",
                                    e->valuestring,
                                    strcmp(e->valuestring, code) == 0 ? "this department"
                                                                      : "below this department");
        } else {
            bad = "only name and parent can be changed (the code stays: records name it)";
        }
    }
    if (bad) {
        cJSON_Delete(d);
        return zt_problem(req, 422, "invalid-department", NULL, "%s", bad);
    }
    for (const cJSON *e = j->child; e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(d, e->string);
        cJSON_AddStringToObject(d, e->string, e->valuestring);
    }
    int rc = rec_put(a, t, a->depts, code, strlen(code), d);
    if (rc == ZT_OK && !dept_tree_ok(a, t)) {
        cJSON_Delete(d);
        return zt_problem(req, 422, "invalid-department", NULL,
                          "parent: the tree would be deeper than %d levels", DEPT_DEPTH);
    }
    if (rc == ZT_OK) {
        zt_audit_note(req, "update department", code);
        rc = zt_respond_json(req, 200, d);
    }
    cJSON_Delete(d);
    return rc;
}

static bool dept_code_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_') return false;
    return true;
}

static int h_dept_create(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *code = zt__jstr(j, "code"), *name = zt__jstr(j, "name"), *parent = "root";
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(j, "parent");
    if (!code || !dept_code_ok(code))
        return zt_problem(req, 422, "invalid-department", NULL,
                          "code: 1 to 64 letters, digits, - or _");
    /* left out: under root, the top of the one tree (as `zhengtong admin dept add`) */
    if (pj && !cJSON_IsString(pj))
        return zt_problem(req, 422, "invalid-department", NULL,
                          "parent: the code of an existing department (left out: root)");
    if (pj) parent = pj->valuestring;
    const char *why = name_problem(name);
    if (why) return zt_problem(req, 422, "invalid-department", NULL, NAME_RULE, why);
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const void *v;
    size_t vl;
    if (zt_get(t, a->depts, parent, strlen(parent), &v, &vl) != ZT_OK)
        return zt_problem(req, 422, "invalid-department", NULL,
                          "parent: '%s' is not an existing department", parent);
    if (dept_walk(a, t, parent, NULL, NULL) >= DEPT_DEPTH - 1)
        return zt_problem(req, 422, "invalid-department", NULL,
                          "parent: the tree would be deeper than %d levels", DEPT_DEPTH);
    if (zt_get(t, a->depts, code, strlen(code), &v, &vl) == ZT_OK)
        return zt_problem(req, 409, "department-exists", NULL, "department %s exists", code);
    cJSON *d = NULL;
    int rc = zt__auth_dept_put(a->srv, t, code, name, parent, &d);
    if (rc == ZT_OK) rc = zt_respond_json(req, 201, d);
    cJSON_Delete(d);
    return rc;
}

/* Citizens and enterprises register themselves; they reach only their own data. A
 * citizen's ID number is kept only encrypted, with a blind index so that one person
 * cannot hold two accounts. */
static int register_then(zt_req *req, hash_job *j)
{
    zt_auth *a = j->a;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    const char *login = zt__jstr(j->args, "login"), *idx = zt__jstr(j->args, "id_index");
    cJSON *extra = cJSON_GetObjectItemCaseSensitive(j->args, "extra");
    const char *code = zt__jstr(extra, "credit_code");
    const void *v;
    size_t vl;
    if (code && zt_get(t, a->credit_codes, code, strlen(code), &v, &vl) == ZT_OK)
        return zt_problem(req, 409, "already-registered", NULL,
                          "an account for the unified social credit code %s exists; sign in, "
                          "or ask the service desk to recover it",
                          code);
    unsigned char index[ZT_INDEX_BYTES];
    size_t n = 0;
    if (idx) {
        if (zt__b64url_decode(index, sizeof index, idx, strlen(idx), &n) != ZT_OK || n != 32)
            return ZT_EINVAL;
        if (zt_get(t, a->citizen_ids, index, n, &v, &vl) == ZT_OK)
            return zt_problem(req, 409, "already-registered", NULL,
                              "an account with this ID number exists; sign in, or ask the "
                              "service desk to recover it");
    }
    cJSON *u = NULL;
    int rc = create_user(a, t, login, zt__jstr(j->args, "name"), zt__jstr(j->args, "kind"), NULL,
                         NULL, j->hash, false, extra, &u);
    if (rc == ZT_EEXIST)
        return zt_problem(req, 409, "login-taken", NULL, "the login '%s' is taken", login);
    const char *uid = u ? zt__jstr(u, "id") : NULL;
    if (rc == ZT_OK && idx) rc = zt_put(t, a->citizen_ids, index, n, uid, strlen(uid));
    if (rc == ZT_OK && code) rc = zt_put(t, a->credit_codes, code, strlen(code), uid, strlen(uid));
    if (rc == ZT_OK) {
        cJSON *o = user_view(a, u);
        zt_audit_note(req, "register", uid);
        rc = zt_respond_json(req, 201, o);
        cJSON_Delete(o);
    }
    cJSON_Delete(u);
    return rc;
}

#define HOUR_MS (3600 * 1000)

/* Seconds before the client of req may register again (auth.registrations_per_hour), or
 * 0; the key it is counted under goes to rkey. */
static int64_t register_wait_s(zt_auth *a, zt_req *req, char rkey[80], int64_t now)
{
    addr_key(rkey, "reg:", zt_req_client(req));
    unsigned max = a->srv->conf->auth_reg_per_hour;
    zt_attempts r = zt__throttle_get(a->throttle, rkey);
    if (!max || r.count < max || now - r.first_ms >= HOUR_MS || now < r.first_ms) return 0;
    return (r.first_ms + HOUR_MS - now + 999) / 1000;
}

static int h_register(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    char rkey[80];
    int64_t now = zt_now_ms(), wait = register_wait_s(a, req, rkey, now);
    if (wait > 0)
        return too_many(req, wait, "too-many-registrations",
                        "too many accounts registered from this address in the last hour");
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *kind = zt__jstr(j, "kind"), *login = zt__jstr(j, "login"),
               *name = zt__jstr(j, "name");
    const char *pw = zt__jstr(j, "password"), *code = zt__jstr(j, "credit_code");
    const char *idn = zt__jstr(j, "id_number");
    if (!kind || (strcmp(kind, "citizen") != 0 && strcmp(kind, "enterprise") != 0))
        return zt_problem(req, 422, "invalid-registration", NULL,
                          "kind: \"citizen\" or \"enterprise\"");
    if (!login || !login_ok(login))
        return zt_problem(req, 422, "invalid-registration", NULL, LOGIN_RULE);
    const char *why = name_problem(name);
    if (why) return zt_problem(req, 422, "invalid-registration", NULL, NAME_RULE, why);
    char buf[256];
    why = pw ? password_problem(a->srv->conf, pw, login, name, buf, sizeof buf)
             : "password: required";
    if (why) return zt_problem(req, 422, "weak-password", NULL, "%s", why);
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(j, "id_number");
    if (idj && !cJSON_IsString(idj) && !cJSON_IsNull(idj))
        return zt_problem(req, 422, "invalid-id-number", NULL,
                          "id_number: a string (\"34112219900101123X\"): an 18-digit JSON number "
                          "loses its last digits, and an X cannot be one");
    cJSON *args = cJSON_CreateObject(), *extra = cJSON_AddObjectToObject(args, "extra");
    cJSON_AddStringToObject(args, "kind", kind);
    cJSON_AddStringToObject(args, "login", login);
    cJSON_AddStringToObject(args, "name", name);
    if (strcmp(kind, "enterprise") == 0) {
        if (!code || !zt_valid_credit_code(code)) {
            cJSON_Delete(args);
            return zt_problem(req, 422, "invalid-credit-code", NULL,
                              "credit_code: an 18-character unified social credit code with "
                              "a valid check character (GB 32100-2015)");
        }
        cJSON_AddStringToObject(extra, "credit_code", code);
    } else if (idn) {
        char canon[19], masked[19];
        unsigned char index[ZT_INDEX_BYTES], enc[18 + ZT_FIELD_OVERHEAD];
        size_t elen = sizeof enc;
        if (zt_citizen_id_canon(idn, canon) != ZT_OK) {
            cJSON_Delete(args);
            return zt_problem(req, 422, "invalid-id-number", NULL,
                              "id_number: an 18-character citizen ID number with a valid "
                              "birth date and check character (GB 11643-1999)");
        }
        char b64[ZT__B64URL_LEN(sizeof enc)];
        if (zt_field_index(&a->core, "id_number", canon, 18, index) != ZT_OK ||
            zt_field_encrypt(&a->core, "id_number", canon, 18, enc, &elen) != ZT_OK) {
            cJSON_Delete(args);
            return ZT_ESTATE;
        }
        zt__b64url_encode(b64, enc, elen);
        cJSON_AddStringToObject(extra, "id_number_enc", b64);
        zt_mask(canon, 4, 4, masked, sizeof masked); /* "3301**********1234" */
        cJSON_AddStringToObject(extra, "id_number_masked", masked);
        zt__b64url_encode(b64, index, sizeof index);
        cJSON_AddStringToObject(args, "id_index", b64);
        sodium_memzero(canon, sizeof canon);
    }
    /* counted when it is about to cost a hash, whether or not the login is taken */
    if (a->srv->conf->auth_reg_per_hour &&
        zt__throttle_note(a->throttle, rkey, now, HOUR_MS, false, HOUR_MS) != ZT_OK) {
        cJSON_Delete(args);
        return ZT_ENOMEM;
    }
    return hash_then(req, a, pw, args, register_then);
}

/* ---- HTTP: API keys for devices and other nodes ------------------------------------ */

/* A new API key: its record is stored under the hash of the key, which goes to key[] and
 * is shown once. */
#define KEY_DAYS_MAX 3660 /* ten years */

static int key_new(zt_auth *a, zt_txn *t, const char *name, const char *plugin, const char *role,
                   const char *clearance, long days, char key[4 + ZT__B64URL_LEN(32)], cJSON **rec)
{
    unsigned char raw[32], hash[32];
    randombytes_buf(raw, sizeof raw);
    char id[27];
    memcpy(key, KEY_PREFIX, 4);
    zt__b64url_encode(key + 4, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    token_hash(key, strlen(key), hash);
    zt_id(id);
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "id", id);
    cJSON_AddStringToObject(k, "name", name);
    cJSON_AddStringToObject(k, "plugin", plugin);
    cJSON_AddStringToObject(k, "role", role);
    /* fixed with the key, as its role: a device's reach does not move with the default */
    cJSON_AddStringToObject(k, "clearance",
                            clearance ? clearance : a->srv->conf->auth_default_clearance);
    int64_t now = zt_now_ms();
    cJSON_AddNumberToObject(k, "created_at", (double)now);
    if (days) /* it works that many days; else until it is revoked */
        cJSON_AddNumberToObject(k, "expires_at", (double)(now + (int64_t)days * 86400000));
    else
        cJSON_AddNullToObject(k, "expires_at");
    int rc = rec_put(a, t, a->keys, hash, 32, k);
    if (rc == ZT_OK)
        *rec = k;
    else
        cJSON_Delete(k);
    return rc;
}

static int h_key_create(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    const char *name = zt__jstr(j, "name"), *plugin = zt__jstr(j, "plugin"),
               *role = zt__jstr(j, "role");
    if (!name || !plugin || !plugin[0] || strlen(plugin) > 64 || !role)
        return zt_problem(req, 422, "invalid-key", NULL,
                          "send {\"name\": …, \"plugin\": <the plugin it may call>, "
                          "\"role\": <its role>}");
    const char *bad = name_problem(name);
    if (bad) return zt_problem(req, 422, "invalid-key", NULL, NAME_RULE, bad);
    if (!key_plugin_ok(a->srv->conf, plugin))
        return zt_problem(req, 422, "invalid-key", NULL, "plugin '%s' is not enabled here", plugin);
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(j, "valid_days");
    if (days && !cJSON_IsNull(days) &&
        (!cJSON_IsNumber(days) || days->valuedouble != (double)(int)days->valuedouble ||
         days->valuedouble < 1 || days->valuedouble > KEY_DAYS_MAX))
        return zt_problem(req, 422, "invalid-key", NULL,
                          "valid_days: how many days the key works, 1 to %d (leave it out for "
                          "a key that works until it is revoked)",
                          KEY_DAYS_MAX);
    const cJSON *clearance = cJSON_GetObjectItemCaseSensitive(j, "clearance");
    if (clearance && (bad = clearance_problem(req, jstring(clearance))))
        return zt_problem(req, 422, "invalid-key", NULL, "%s", bad);
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    char buf[512];
    const char *type, *why = key_grant_problem(a, t, role, false, &type, buf, sizeof buf);
    if (why) return zt_problem(req, 422, type, NULL, "%s", why);
    char key[4 + ZT__B64URL_LEN(32)];
    cJSON *k = NULL;
    int rc = key_new(a, t, name, plugin, role, zt__jstr(j, "clearance"),
                     cJSON_IsNumber(days) ? days->valueint : 0, key, &k);
    if (rc == ZT_OK) {
        cJSON_AddStringToObject(k, "key", key);
        zt_audit_note(req, "create API key", zt__jstr(k, "id"));
        rc = zt_respond_json(req, 201, k);
    }
    sodium_memzero(key, sizeof key);
    zt__json_delete_wiped(k); /* it holds a secret */
    return rc;
}

static int h_key_list(zt_req *req, void *ud)
{
    return zt__respond_db_list(req, ((zt_auth *)ud)->keys, NULL, NULL, "mac");
}

/* Remove the API key whose public id is id: ZT_ENOTFOUND if there is none. */
static int key_revoke(zt_auth *a, zt_txn *t, const char *id)
{
    zt_cursor *cur;
    if (!t || zt_cursor_open(t, a->keys, &cur) != ZT_OK) return ZT_EIO;
    zt_kv kv;
    int rc;
    bool found = false;
    for (rc = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK && !found;
         rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *k = cJSON_ParseWithLength(kv.val, kv.vlen);
        found = k && zt__jstr(k, "id") && strcmp(zt__jstr(k, "id"), id) == 0;
        cJSON_Delete(k);
        if (found) rc = zt_cursor_del(cur);
    }
    zt_cursor_close(cur);
    if (!found) return ZT_ENOTFOUND;
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static int h_key_delete(zt_req *req, void *ud)
{
    zt_auth *a = ud;
    const char *id = zt_req_param(req, "id");
    int rc = key_revoke(a, zt_req_txn(req), id);
    if (rc == ZT_ENOTFOUND)
        return zt_problem(req, 404, "not-found", NULL, "there is no API key %s", id);
    if (rc != ZT_OK) return rc;
    zt_audit_note(req, "revoke API key", id);
    return zt_respond(req, 204, NULL, NULL, 0);
}

/* ---- offline administration: zhengtong admin ... ---------------------------------- */

/* The account of login: ZT_ENOTFOUND if there is none, ZT_ESTATE if its seal does not
 * hold (then it is not trusted: see rec_get). */
static int find_user(zt_auth *a, zt_txn *t, const char *login, cJSON **u)
{
    const void *idv;
    size_t idl;
    bool tampered;
    if (zt_get(t, a->logins, login, strlen(login), &idv, &idl) != ZT_OK) return ZT_ENOTFOUND;
    *u = rec_get_ex(a, t, a->users, idv, idl, &tampered);
    return *u ? ZT_OK : tampered ? ZT_ESTATE : ZT_ENOTFOUND;
}

/* The offline commands' account, or why not in err. */
static int cli_user(zt_auth *a, zt_txn *t, const char *login, cJSON **u, char *err, size_t errlen)
{
    int rc = find_user(a, t, login, u);
    if (rc == ZT_ENOTFOUND) snprintf(err, errlen, "no account %s", login);
    if (rc == ZT_ESTATE)
        snprintf(err, errlen,
                 "account %s was changed outside Zhengtong (its seal does not hold): check it "
                 "(zhengtong admin user list), then `zhengtong admin user reseal %s`",
                 login, login);
    return rc;
}

/* `admin dept reseal CODE`: a department whose seal does not hold is trusted again, as it
 * stands (its name and parent printed), once a person has checked it. */
static int dept_reseal(zt_auth *a, zt_txn *t, const char *code, FILE *out, char *err, size_t errlen)
{
    const void *v;
    size_t vl;
    if (zt_get(t, a->depts, code, strlen(code), &v, &vl) != ZT_OK) {
        snprintf(err, errlen, "no department %s", code);
        return ZT_ENOTFOUND;
    }
    if (rec_ok(a, a->depts, code, strlen(code), v, vl)) {
        fprintf(out, "%s: its seal holds; nothing to do\n", code);
        return ZT_OK;
    }
    cJSON *d = cJSON_ParseWithLength(v, vl);
    if (!cJSON_IsObject(d) || !zt__jstr(d, "code") || strcmp(zt__jstr(d, "code"), code) != 0 ||
        !zt__jstr(d, "name")) {
        cJSON_Delete(d);
        snprintf(err, errlen,
                 "department %s: its record is not this department's (not JSON, or another "
                 "code): it cannot be trusted again",
                 code);
        return ZT_EINVAL;
    }
    const char *parent = zt__jstr(d, "parent");
    int rc = rec_put(a, t, a->depts, code, strlen(code), d);
    if (rc == ZT_OK)
        fprintf(out, "%s: sealed again as it stands: \"%s\", under %s\n", code, zt__jstr(d, "name"),
                parent && parent[0] ? parent : "no other (a top department)");
    cJSON_Delete(d);
    return rc;
}

/* `admin user reseal LOGIN`: an account whose seal does not hold is trusted again, as it
 * stands, once a person has checked it; its sessions end (they may have been made with
 * it). What it says goes to out, and the audit log records who resealed it. */
static int user_reseal(zt_auth *a, zt_txn *t, const char *login, FILE *out, char *err,
                       size_t errlen)
{
    const void *idv, *v;
    size_t idl, vl;
    if (zt_get(t, a->logins, login, strlen(login), &idv, &idl) != ZT_OK ||
        zt_get(t, a->users, idv, idl, &v, &vl) != ZT_OK) {
        snprintf(err, errlen, "no account %s", login);
        return ZT_ENOTFOUND;
    }
    char id[27];
    snprintf(id, sizeof id, "%.*s", (int)(idl < 26 ? idl : 26), (const char *)idv);
    if (rec_ok(a, a->users, idv, idl, v, vl)) {
        fprintf(out, "%s: its seal holds; nothing to do\n", login);
        return ZT_OK;
    }
    cJSON *u = cJSON_ParseWithLength(v, vl);
    if (!cJSON_IsObject(u) || !zt__jstr(u, "id") || strcmp(zt__jstr(u, "id"), id) != 0 ||
        !zt__jstr(u, "login") || strcmp(zt__jstr(u, "login"), login) != 0) {
        cJSON_Delete(u);
        snprintf(err, errlen,
                 "account %s: its record is not an account of this login (not JSON, or another "
                 "id or login): it cannot be trusted again; disable the login's holder's access "
                 "and create a new account",
                 login);
        return ZT_EINVAL;
    }
    char *roles = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(u, "roles"));
    const char *dept = zt__jstr(u, "department"), *kind = zt__jstr(u, "kind");
    int rc = rec_put(a, t, a->users, id, strlen(id), u);
    if (rc == ZT_OK) rc = revoke_all(a, t, id);
    if (rc == ZT_OK)
        fprintf(out,
                "%s: sealed again as it stands: %s, department %s, roles %s, %s; every "
                "session ended\n",
                login, kind ? kind : "?", dept ? dept : "-", roles ? roles : "[]",
                jtrue(u, "disabled") ? "disabled" : "enabled");
    free(roles);
    cJSON_Delete(u);
    return rc;
}

static cJSON *roles_from_csv(const char *csv)
{
    cJSON *roles = cJSON_CreateArray();
    if (!csv || strcmp(csv, "-") == 0) return roles;
    /* every item, empty ones too, for the grant check to refuse: "" or "a,,b" from a
     * script's empty variable must not quietly take an account's roles away ("-" does) */
    for (const char *r = csv;; r++) {
        char item[66]; /* a name over 64 is kept at 65: enough to be refused as one */
        size_t n = strcspn(r, ","), k = n < sizeof item - 1 ? n : sizeof item - 1;
        memcpy(item, r, k);
        item[k] = 0;
        cJSON_AddItemToArray(roles, cJSON_CreateString(item));
        r += n;
        if (!*r) break;
    }
    return roles;
}

/* One line per record of db, as row writes it. */
/* One row a record; an account or key whose seal does not hold says so. */
static int cli_list(zt_auth *a, zt_txn *t, zt_db *db, void (*row)(const cJSON *, FILE *), FILE *out)
{
    zt_cursor *c;
    int rc = zt_cursor_open(t, db, &c);
    zt_kv kv;
    for (rc = rc ? rc : zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        cJSON *j = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (j && !rec_ok(a, db, kv.key, kv.klen, kv.val, kv.vlen))
            cJSON_AddTrueToObject(j, "tampered");
        if (j) row(j, out);
        cJSON_Delete(j);
    }
    zt_cursor_close(c);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

static void user_row(const cJSON *u, FILE *out)
{
    char *r = zt_json_print(cJSON_GetObjectItemCaseSensitive(u, "roles"));
    fprintf(out, "%-26s %-20s %-10s %-12s %-10s %s%s%s%s %s\n", or_dash(zt__jstr(u, "id")),
            or_dash(zt__jstr(u, "login")), or_dash(zt__jstr(u, "kind")),
            or_dash(zt__jstr(u, "department")), or_dash(zt__jstr(u, "clearance")), r ? r : "[]",
            jtrue(u, "disabled") ? " (disabled)" : "",
            cJSON_GetObjectItemCaseSensitive(u, "totp_enc") ? " (two-factor)" : "",
            jtrue(u, "tampered") ? " (TAMPERED: not trusted)" : "", or_dash(zt__jstr(u, "name")));
    free(r);
}

static void dept_row(const cJSON *d, FILE *out)
{
    fprintf(out, "%-16s %-16s %s%s\n", or_dash(zt__jstr(d, "code")), or_dash(zt__jstr(d, "parent")),
            or_dash(zt__jstr(d, "name")), jtrue(d, "tampered") ? " (TAMPERED: not trusted)" : "");
}

/* ms as the UTC date YYYY-MM-DD, or "-" for 0 */
static const char *day_of(double ms, char out[11])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm)) return "-";
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000,
             (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100);
    return out;
}

static void key_row(const cJSON *k, FILE *out)
{
    char e[11], u[11];
    double expires = jnum(k, "expires_at");
    fprintf(out, "%-26s %-16s %-20s %-10s %-10s %s%s%s\n", or_dash(zt__jstr(k, "id")),
            or_dash(zt__jstr(k, "plugin")), or_dash(zt__jstr(k, "role")), day_of(expires, e),
            day_of(jnum(k, "last_used_at"), u), or_dash(zt__jstr(k, "name")),
            expires > 0 && expires <= (double)zt_now_ms() ? " (expired)" : "",
            jtrue(k, "tampered") ? " (TAMPERED: not trusted; revoke it)" : "");
}

/* Who runs the command, for the audit record: the login behind sudo, else the account
 * the process runs as (not $USER, which cron and systemd units do not set). */
/* Whether sudo, not the environment alone, says `user` ran this: SUDO_UID is that
 * account's, and the parent process is sudo, running as root (which only the setuid sudo
 * is, for someone who is not root already). Anyone can set SUDO_USER; a record that
 * blames another person on its word alone is worse than none. */
static bool sudo_says(const char *user)
{
    const char *uid = getenv("SUDO_UID");
    struct passwd *pw = user ? getpwnam(user) : NULL;
    char *end = NULL;
    if (!uid || !pw || !*uid || strtoul(uid, &end, 10) != pw->pw_uid || *end) return false;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)getppid());
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool named = false, root = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long r, e;
        if (strcmp(line, "Name:\tsudo\n") == 0) named = true;
        if (sscanf(line, "Uid:\t%lu\t%lu", &r, &e) == 2) root = e == 0;
    }
    fclose(f);
    return named && root;
}

const char *zt__cli_user(void)
{
    static char name[64];
    const char *sudo = getenv("SUDO_USER");
    struct passwd *pw = sudo && sudo_says(sudo) ? getpwnam(sudo) : getpwuid(getuid());
    snprintf(name, sizeof name, "%s", pw && pw->pw_name ? pw->pw_name : "?");
    return name;
}

/* One change: its own transaction, with its audit record (actor "cli"), which names
 * `object`; `granted` gets what a new account is granted, for the record's action (else it
 * stays empty). */
static int cli_change(zt_auth *a, int argc, char **argv, FILE *out, char *err, size_t errlen,
                      zt_txn *t, char *object, size_t olen, zt_buf *granted)
{
#define NEED(n, usage)                                                                             \
    do {                                                                                           \
        if (argc != (n) && !(argc == (n) + 1 && strstr(usage, "["))) {                             \
            snprintf(err, errlen, "usage: zhengtong admin %s", usage);                             \
            return ZT_EINVAL;                                                                      \
        }                                                                                          \
    } while (0)
    const zt_conf *conf = a->srv->conf;
    const char *what = argv[0], *verb = argc > 1 ? argv[1] : "";
    cJSON *u = NULL;
    int rc;
    if (strcmp(what, "user") == 0 && strcmp(verb, "add") == 0) {
        NEED(5, "user add LOGIN NAME DEPT [ROLE,ROLE...]");
        const void *v;
        size_t vl;
        if (!login_ok(argv[2])) {
            snprintf(err, errlen, LOGIN_RULE);
            return ZT_EINVAL;
        }
        const char *why = name_problem(argv[3]);
        if (why) {
            snprintf(err, errlen, "NAME: " NAME_TEXT, why);
            return ZT_EINVAL;
        }
        if (zt_get(t, a->depts, argv[4], strlen(argv[4]), &v, &vl) != ZT_OK) {
            snprintf(err, errlen, "no department %s (zhengtong admin dept add)", argv[4]);
            return ZT_ENOTFOUND;
        }
        cJSON *roles = roles_from_csv(argc > 5 ? argv[5] : NULL);
        char buf[512];
        const char *type;
        if ((why = grant_problem(a, t, roles, NULL, true, &type, buf, sizeof buf))) {
            snprintf(err, errlen, "ROLES (by commas): %s", why);
            cJSON_Delete(roles);
            return ZT_EINVAL;
        }
        char pw[ONE_TIME_LEN + 1], hash[crypto_pwhash_STRBYTES];
        random_password(conf, pw);
        rc = hash_password(conf, pw, hash);
        if (rc == ZT_OK)
            rc = create_user(a, t, argv[2], argv[3], "staff", argv[4], roles, hash, true, NULL, &u);
        cJSON_Delete(roles);
        if (rc == ZT_EEXIST) snprintf(err, errlen, "the login '%s' is taken", argv[2]);
        if (rc == ZT_OK) rc = grants_text(granted, "", conf, u);
        if (rc == ZT_OK) fprintf(out, "created %s; one-time password: %s\n", argv[2], pw);
        sodium_memzero(pw, sizeof pw);
    } else if (strcmp(what, "user") == 0 && strcmp(verb, "passwd") == 0) {
        NEED(3, "user passwd LOGIN");
        rc = cli_user(a, t, argv[2], &u, err, errlen);
        char pw[ONE_TIME_LEN + 1], hash[crypto_pwhash_STRBYTES];
        random_password(conf, pw);
        if (rc == ZT_OK && (rc = hash_password(conf, pw, hash)) == ZT_OK) {
            set_password(conf, u, hash, true);
            rc = rec_put(a, t, a->users, zt__jstr(u, "id"), 26, u);
            if (rc == ZT_OK) rc = revoke_all(a, t, zt__jstr(u, "id"));
            if (rc == ZT_OK)
                fprintf(out, "%s: one-time password: %s (every session ended)\n", argv[2], pw);
        }
        sodium_memzero(pw, sizeof pw);
    } else if (strcmp(what, "user") == 0 &&
               (strcmp(verb, "roles") == 0 || strcmp(verb, "disable") == 0 ||
                strcmp(verb, "enable") == 0)) {
        bool roles = strcmp(verb, "roles") == 0;
        if (roles)
            NEED(4, "user roles LOGIN ROLE,ROLE...|-");
        else
            NEED(3, "user disable|enable LOGIN");
        cJSON *want = roles ? roles_from_csv(argv[3]) : NULL;
        rc = cli_user(a, t, argv[2], &u, err, errlen);
        if (rc == ZT_OK && strcmp(verb, "enable") == 0 &&
            cJSON_GetObjectItemCaseSensitive(u, "closed_at")) {
            snprintf(err, errlen, "%s was closed by its holder: it stays closed", argv[2]);
            rc = ZT_EINVAL;
        }
        char buf[512];
        const char *type,
            *why = rc == ZT_OK && roles
                       ? grant_problem(a, t, want, cJSON_GetObjectItemCaseSensitive(u, "roles"),
                                       true, &type, buf, sizeof buf)
                       : NULL;
        if (why) {
            snprintf(err, errlen, "ROLES (by commas, - for none): %s", why);
            rc = ZT_EINVAL;
        }
        if (rc == ZT_OK) {
            if (roles) {
                cJSON_ReplaceItemInObjectCaseSensitive(u, "roles", want);
                want = NULL;
            } else {
                cJSON_ReplaceItemInObjectCaseSensitive(
                    u, "disabled", cJSON_CreateBool(strcmp(verb, "disable") == 0));
                if (strcmp(verb, "enable") == 0) reactivate(u);
            }
            rc = rec_put(a, t, a->users, zt__jstr(u, "id"), 26, u);
            if (rc == ZT_OK && strcmp(verb, "disable") == 0)
                rc = revoke_all(a, t, zt__jstr(u, "id"));
            if (rc == ZT_OK) fprintf(out, "%s: %s\n", argv[2], roles ? argv[3] : verb);
        }
        cJSON_Delete(want);
    } else if (strcmp(what, "user") == 0 && strcmp(verb, "totp-off") == 0) {
        NEED(3, "user totp-off LOGIN");
        rc = cli_user(a, t, argv[2], &u, err, errlen);
        if (rc == ZT_OK && (rc = totp_off(a, t, u)) == ZT_OK)
            fprintf(out,
                    "%s: two-factor sign-in off; every session ended (set it up again with "
                    "POST /auth/totp)\n",
                    argv[2]);
    } else if (strcmp(what, "user") == 0 && strcmp(verb, "rename") == 0) {
        NEED(4, "user rename LOGIN NEWLOGIN");
        const void *v;
        size_t vl;
        if (!login_ok(argv[3])) {
            snprintf(err, errlen, "NEWLOGIN: %s", LOGIN_RULE);
            return ZT_EINVAL;
        }
        if ((rc = cli_user(a, t, argv[2], &u, err, errlen)) == ZT_OK && !is_staff(u)) {
            snprintf(err, errlen, "%s: only a staff account's login is changed", argv[2]);
            rc = ZT_EINVAL;
        } else if (rc == ZT_OK &&
                   zt_get(t, a->logins, argv[3], strlen(argv[3]), &v, &vl) == ZT_OK) {
            snprintf(err, errlen, "the login '%s' is taken", argv[3]);
            rc = ZT_EEXIST;
        }
        if (rc == ZT_OK) {
            char id[27];
            snprintf(id, sizeof id, "%s", zt__jstr(u, "id"));
            cJSON_ReplaceItemInObjectCaseSensitive(u, "login", cJSON_CreateString(argv[3]));
            rc = rec_put(a, t, a->users, id, strlen(id), u);
            if (rc == ZT_OK) rc = login_move(a, t, id, argv[2], argv[3]);
            if (rc == ZT_OK) fprintf(out, "%s is now %s\n", argv[2], argv[3]);
        }
    } else if (strcmp(what, "user") == 0 && strcmp(verb, "clearance") == 0) {
        NEED(4, "user clearance LOGIN LABEL");
        if (zt__label_level(conf, argv[3]) < 0) {
            snprintf(err, errlen, "LABEL: one of auth.labels (zhengtong.conf): '%s' is not",
                     argv[3]);
            return ZT_EINVAL;
        }
        if ((rc = cli_user(a, t, argv[2], &u, err, errlen)) == ZT_OK && !is_staff(u)) {
            snprintf(err, errlen, "%s: only a staff account's clearance is set", argv[2]);
            rc = ZT_EINVAL;
        }
        if (rc == ZT_OK) {
            cJSON_DeleteItemFromObjectCaseSensitive(u, "clearance");
            cJSON_AddStringToObject(u, "clearance", argv[3]);
            rc = rec_put(a, t, a->users, zt__jstr(u, "id"), 26, u);
            if (rc == ZT_OK) fprintf(out, "%s: cleared for %s\n", argv[2], argv[3]);
        }
    } else if (strcmp(what, "user") == 0 && strcmp(verb, "reseal") == 0) {
        NEED(3, "user reseal LOGIN");
        rc = user_reseal(a, t, argv[2], out, err, errlen);
    } else if (strcmp(what, "dept") == 0 && strcmp(verb, "reseal") == 0) {
        NEED(3, "dept reseal CODE");
        rc = dept_reseal(a, t, argv[2], out, err, errlen);
    } else if (strcmp(what, "key") == 0 && strcmp(verb, "revoke") == 0) {
        NEED(3, "key revoke ID");
        if ((rc = key_revoke(a, t, argv[2])) == ZT_ENOTFOUND)
            snprintf(err, errlen, "no API key %s (zhengtong admin key list)", argv[2]);
        if (rc == ZT_OK) fprintf(out, "API key %s revoked\n", argv[2]);
    } else if (strcmp(what, "dept") == 0 && strcmp(verb, "add") == 0) {
        NEED(4, "dept add CODE NAME [PARENT]");
        const void *v;
        size_t vl;
        const char *parent = argc > 4 ? argv[4] : "root";
        if (!dept_code_ok(argv[2])) {
            snprintf(err, errlen, "CODE: 1 to 64 letters, digits, - or _");
            return ZT_EINVAL;
        }
        const char *why = name_problem(argv[3]);
        if (why) {
            snprintf(err, errlen, "NAME: " NAME_TEXT, why);
            return ZT_EINVAL;
        }
        if (zt_get(t, a->depts, parent, strlen(parent), &v, &vl) != ZT_OK) {
            snprintf(err, errlen, "no parent department %s", parent);
            return ZT_ENOTFOUND;
        }
        if (dept_walk(a, t, parent, NULL, NULL) >= DEPT_DEPTH - 1) {
            snprintf(err, errlen, "the tree would be deeper than %d levels", DEPT_DEPTH);
            return ZT_EINVAL;
        }
        if (zt_get(t, a->depts, argv[2], strlen(argv[2]), &v, &vl) == ZT_OK) {
            snprintf(err, errlen, "department %s exists", argv[2]);
            return ZT_EEXIST;
        }
        rc = zt__auth_dept_put(a->srv, t, argv[2], argv[3], parent, NULL);
        if (rc == ZT_OK) fprintf(out, "department %s under %s\n", argv[2], parent);
    } else if (strcmp(what, "key") == 0 && strcmp(verb, "add") == 0) {
        if (argc < 5 || argc > 7) {
            snprintf(err, errlen,
                     "usage: zhengtong admin key add NAME PLUGIN ROLE [DAYS] [CLEARANCE]");
            return ZT_EINVAL;
        }
        rc = ZT_OK;
        char key[4 + ZT__B64URL_LEN(32)];
        cJSON *k = NULL;
        long days = 0;
        const char *clearance = NULL;
        char buf[512];
        const char *type, *why = key_grant_problem(a, t, argv[4], true, &type, buf, sizeof buf),
                          *bad = name_problem(argv[2]);
        if (bad) {
            snprintf(err, errlen, "NAME: " NAME_TEXT, bad);
            rc = ZT_EINVAL;
        } else if (!key_plugin_ok(a->srv->conf, argv[3])) {
            snprintf(err, errlen, "plugin '%s' is not enabled in the config (plugins = {...})",
                     argv[3]);
            rc = ZT_EINVAL;
        } else if (why) {
            snprintf(err, errlen, "%s", why);
            rc = ZT_EINVAL;
        }
        /* after ROLE: how many days it works (a number), its clearance (a label), either */
        for (int i = 5; rc == ZT_OK && i < argc; i++) {
            char *end = NULL;
            if (isdigit((unsigned char)argv[i][0]) && !days) {
                days = strtol(argv[i], &end, 10);
                if (days < 1 || days > KEY_DAYS_MAX || *end) {
                    snprintf(err, errlen, "DAYS: how many days the key works, 1 to %d",
                             KEY_DAYS_MAX);
                    rc = ZT_EINVAL;
                }
            } else if (!clearance && zt__label_level(conf, argv[i]) >= 0) {
                clearance = argv[i];
            } else {
                snprintf(err, errlen,
                         "'%s': after ROLE come DAYS (1 to %d) and the key's CLEARANCE (one of "
                         "auth.labels in zhengtong.conf), each at most once",
                         argv[i], KEY_DAYS_MAX);
                rc = ZT_EINVAL;
            }
        }
        if (rc == ZT_OK) rc = key_new(a, t, argv[2], argv[3], argv[4], clearance, days, key, &k);
        if (rc == ZT_OK)
            fprintf(out, "key %s for plugin %s, role %s, cleared for %s:\n%s\n", zt__jstr(k, "id"),
                    argv[3], argv[4], zt__jstr(k, "clearance"), key);
        cJSON_Delete(k);
        sodium_memzero(key, sizeof key);
    } else if (strcmp(what, "role") == 0) {
        rc = zt__roles_cli(a->srv, t, argc, argv, out, err, errlen);
    } else {
        snprintf(err, errlen,
                 "usage: zhengtong admin [-c FILE] user add|passwd|roles|disable|enable|totp-off|"
                 "rename|clearance|reseal|list, dept add|reseal|list, key add|list|revoke, role "
                 "add|remove|list");
        return ZT_EINVAL;
    }
    snprintf(object, olen, "%s", argc > 2 ? argv[2] : "");
    cJSON_Delete(u);
    return rc;
#undef NEED
}

/* auth.separate_duties: does `admin user VERB LOGIN ...` act on an auditor's account, one
 * that holds auditor (as stored, its seal holding or not: a reseal trusts it) or is to? */
static bool cli_on_auditor(zt_auth *a, zt_txn *t, int argc, char **argv)
{
    if (!a->srv->conf->auth_separate_duties || argc < 3 || strcmp(argv[0], "user") != 0)
        return false;
    bool add = strcmp(argv[1], "add") == 0, roles = strcmp(argv[1], "roles") == 0;
    cJSON *want =
        add || roles ? roles_from_csv(argc > (add ? 5 : 3) ? argv[add ? 5 : 3] : NULL) : NULL;
    bool on = zt__roles_hold(want, "auditor");
    cJSON_Delete(want);
    const void *idv, *v;
    size_t idl, vl;
    if (on || add || zt_get(t, a->logins, argv[2], strlen(argv[2]), &idv, &idl) != ZT_OK ||
        zt_get(t, a->users, idv, idl, &v, &vl) != ZT_OK)
        return on;
    cJSON *u = cJSON_ParseWithLength(v, vl);
    on = zt__roles_hold(cJSON_GetObjectItemCaseSensitive(u, "roles"), "auditor");
    cJSON_Delete(u);
    return on;
}

int zt__auth_cli(zt_server *srv, int argc, char **argv, bool recover, FILE *out, char *err,
                 size_t errlen)
{
    zt_auth *a = srv->auth;
    if (argc < 1) {
        snprintf(err, errlen, "usage: zhengtong admin user|dept|key ...");
        return ZT_EINVAL;
    }
    zt_txn *t;
    int rc;
    bool list = argc == 2 && strcmp(argv[1], "list") == 0;
    if (list) {
        if ((rc = zt__store_read_begin(srv->store, &t)) != ZT_OK) return rc;
        rc = strcmp(argv[0], "user") == 0   ? cli_list(a, t, a->users, user_row, out)
             : strcmp(argv[0], "dept") == 0 ? cli_list(a, t, a->depts, dept_row, out)
             : strcmp(argv[0], "key") == 0  ? cli_list(a, t, a->keys, key_row, out)
             : strcmp(argv[0], "role") == 0 ? zt__roles_cli_list(srv, t, out)
                                            : ZT_EINVAL;
        zt__store_end(srv->store, t, false);
        if (rc == ZT_EINVAL)
            snprintf(err, errlen, "usage: zhengtong admin user|dept|key|role list");
        return rc;
    }
    if ((rc = zt__store_write_begin(srv->store, &t)) != ZT_OK) return rc;
    /* under auth.separate_duties an auditor's account is the auditors' to manage: root acts
     * for them (the first auditor, one locked out) only when it says so, and the record
     * says so too */
    bool recovery = cli_on_auditor(a, t, argc, argv);
    if (recovery && !recover) {
        zt__store_write_done(srv->store, t, ZT_EPERM);
        snprintf(err, errlen,
                 "%s is an auditor's account (it holds auditor%s): under auth.separate_duties "
                 "only the auditors manage such accounts, over HTTP. Root on this machine acts "
                 "for them, to make the first auditor or to let one who is locked out back in, "
                 "only with --recover, which the audit log records as a recovery of an auditor "
                 "account",
                 argv[2],
                 strcmp(argv[1], "add") == 0 || strcmp(argv[1], "roles") == 0 ? ", or is to" : "");
        return ZT_EPERM;
    }
    char object[128];
    /* what it says goes out once the change is committed: never "created" for a change
     * the store then refused (a full map, a failing disk) */
    char *said = NULL;
    size_t saidlen = 0;
    FILE *buf = open_memstream(&said, &saidlen);
    if (!buf) {
        zt__store_write_done(srv->store, t, ZT_ENOMEM);
        return ZT_ENOMEM;
    }
    zt_buf granted = {0};
    rc = cli_change(a, argc, argv, buf, err, errlen, t, object, sizeof object, &granted);
    fclose(buf);
    if (rc == ZT_OK) rc = gen_bump(a, t); /* the running node's cached sessions */
    if (rc == ZT_OK) {
        /* the roles granted are part of what was done (a new account's department and
         * clearance too); a recovery names its account */
        bool what = strcmp(argv[0], "user") == 0 && argc > 3 &&
                    (strcmp(argv[1], "roles") == 0 || strcmp(argv[1], "clearance") == 0);
        zt_buf action = {0};
        rc = zt__buf_printf(&action, "admin %s %s%s%s", argv[0], argv[1], recovery ? " " : "",
                            recovery ? object : "");
        if (rc == ZT_OK && granted.len) rc = zt__buf_printf(&action, ": %s", granted.data);
        if (rc == ZT_OK && !granted.len && what) rc = zt__buf_printf(&action, ": %.900s", argv[3]);
        if (rc == ZT_OK && recovery)
            rc = zt__buf_puts(&action, " (recovery of an auditor account)");
        if (rc == ZT_OK) rc = zt__buf_append(&action, "", 1);
        char actor[80];
        snprintf(actor, sizeof actor, "cli:%s", zt__cli_user());
        zt_audit_entry e = {
            .actor = actor, .plugin = "core", .action = action.data, .object = object};
        if (rc == ZT_OK) rc = zt__audit_append(srv, t, &e);
        zt__buf_free(&action);
    }
    zt__buf_free(&granted);
    rc = zt__store_write_done(srv->store, t, rc);
    if (rc == ZT_OK && said) fwrite(said, 1, saidlen, out);
    if (rc == ZT_OK && recovery)
        fprintf(stderr,
                "zhengtong: warning: %s is an auditor's account, which under "
                "auth.separate_duties the auditors manage: this change by root is in the audit "
                "log as a recovery of an auditor account\n",
                object);
    if (said) sodium_memzero(said, saidlen); /* it may hold a one-time password */
    free(said);
    if (rc != ZT_OK && !err[0]) snprintf(err, errlen, "%s", zt_strerror(rc));
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------ */

static int add(zt_server *srv, const char *method, const char *path, zt_handler h, const char *role,
               const char *summary, char *err, size_t errlen)
{
    zt_route r = {.method = method,
                  .path = path,
                  .handler = h,
                  .ud = srv->auth,
                  .role = role,
                  .body_limit = 16384,
                  .summary = summary};
    return zt__router_add(srv->router, NULL, &r, err, errlen);
}

/* A route of the accounts, an administrator's; under auth.separate_duties an auditor's
 * too, for the accounts that hold auditor alone (duties_hold). */
static int add_account(zt_server *srv, const char *method, const char *path, zt_handler h,
                       const char *summary, char *err, size_t errlen)
{
    int rc = add(srv, method, path, h, "admin", summary, err, errlen);
    if (rc == ZT_OK && srv->conf->auth_separate_duties) zt__router_or_role(srv->router, "auditor");
    return rc;
}

/* Enterprises registered before the credit-code index existed go into it, once: a key
 * that is no code marks it done. If two such accounts share a code, the first keeps it
 * and the log names the other, for the service desk. */
#define CREDIT_INDEX_DONE "#filled"

/* Accounts and keys cleared for a label auth.labels no longer lists (a county removed or
 * renamed it) clear the lowest label only: named at start (see records_seal), for an
 * administrator to give each a label again; disabled accounts, which do nothing, are not.
 * Only records that name a clearance are read whole. */
typedef struct unlisted {
    zt_buf who;
    size_t n;
} unlisted;

static void unlisted_note(const zt_auth *a, unlisted *ul, bool key, const zt_kv *kv)
{
    if (!memmem(kv->val, kv->vlen, "\"clearance\"", 11)) return;
    cJSON *u = cJSON_ParseWithLength(kv->val, kv->vlen);
    const char *cl = zt__jstr(u, "clearance");
    if (cl && zt__label_level(a->srv->conf, cl) < 0 && !jtrue(u, "disabled") && ++ul->n <= 20)
        zt__buf_printf(&ul->who, "%s%s%s (%s)", ul->n > 1 ? ", " : "", key ? "key " : "",
                       or_dash(zt__jstr(u, key ? "name" : "login")), cl);
    cJSON_Delete(u);
}

/* At start, one pass over each sealed database: one whose records carry no seal at all
 * (data from before it was sealed) is sealed, in one transaction with an audit record; in
 * the others the records whose seal does not hold are named in a warning (they sign no one
 * in), and such sessions removed. Stripping every seal of a database to have a change
 * sealed leaves that audit record, which names the count. The same pass names the
 * accounts and keys cleared for a label no longer listed. */
static int records_seal(zt_auth *a, char *err, size_t errlen)
{
    zt_store *st = a->srv->store;
    zt_db *dbs[] = {a->users, a->sessions, a->keys, a->depts};
    enum { NDBS = sizeof dbs / sizeof dbs[0] };
    bool unsealed[NDBS] = {false};
    zt_txn *t;
    int rc = zt__store_read_begin(st, &t);
    if (rc != ZT_OK) return rc;
    size_t bad = 0, nforged = 0, nunsealed = 0;
    char names[5][64];
    unsigned char(*forged)[32] = NULL; /* sessions whose seal does not hold */
    unlisted ul = {0};
    for (size_t d = 0; d < NDBS; d++) {
        zt_cursor *cur;
        zt_kv kv;
        size_t total = 0, bad_before = bad, forged_before = nforged;
        bool any_sealed = false;
        if (zt_cursor_open(t, dbs[d], &cur) != ZT_OK) continue;
        for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK;
             r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            total++;
            any_sealed |= sealed_body(kv.val, kv.vlen) != 0;
            if (dbs[d] == a->users || dbs[d] == a->keys)
                unlisted_note(a, &ul, dbs[d] == a->keys, &kv);
            if (rec_ok(a, dbs[d], kv.key, kv.klen, kv.val, kv.vlen)) continue;
            if (bad < 5) rec_label(a, dbs[d], kv.key, kv.klen, names[bad]);
            bad++;
            if (dbs[d] == a->sessions && kv.klen == 32 && nforged < 100000) {
                void *nf = realloc(forged, (nforged + 1) * sizeof *forged);
                if (nf) memcpy((forged = nf)[nforged++], kv.key, 32);
            }
        }
        zt_cursor_close(cur);
        if (total && !any_sealed) { /* from before seals: none of it is a broken seal */
            unsealed[d] = true;
            nunsealed += total;
            bad = bad_before;
            nforged = forged_before;
        }
    }
    zt__store_end(st, t, false);
    if (ul.n)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "auth.labels does not list the clearance of %zu account(s) or key(s): %s%s; they "
                "are cleared for the lowest label only until an administrator gives them one "
                "(PATCH /admin/users/:id, zhengtong admin user clearance; a key is made anew)",
                ul.n, ul.who.data ? ul.who.data : "", ul.n > 20 ? ", ..." : "");
    zt__buf_free(&ul.who);
    if (bad)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "identity: %zu record%s changed outside Zhengtong (the seal does not hold): "
                "%s%s%s%s%s%s%s%s%s%s; they are not trusted (an account or a department: "
                "`zhengtong admin user reseal LOGIN` or `dept reseal CODE` once checked; an API "
                "key: revoke it)",
                bad, bad == 1 ? "" : "s", names[0], bad > 1 ? ", " : "", bad > 1 ? names[1] : "",
                bad > 2 ? ", " : "", bad > 2 ? names[2] : "", bad > 3 ? ", " : "",
                bad > 3 ? names[3] : "", bad > 4 ? ", " : "", bad > 4 ? names[4] : "",
                bad > 5 ? " …" : "");
    if (!nforged && !nunsealed) return ZT_OK;
    if ((rc = zt__store_write_begin(st, &t)) != ZT_OK) {
        free(forged);
        return rc;
    }
    /* a session is only a sign-in: one that does not hold is removed */
    for (size_t i = 0; i < nforged && rc == ZT_OK; i++)
        if ((rc = zt_del(t, a->sessions, forged[i], 32)) == ZT_ENOTFOUND) rc = ZT_OK;
    free(forged);
    for (size_t d = 0; d < NDBS && rc == ZT_OK; d++) {
        if (!unsealed[d]) continue;
        zt_cursor *cur;
        zt_kv kv;
        if ((rc = zt_cursor_open(t, dbs[d], &cur)) != ZT_OK) break;
        /* keys and records first, then the puts: a put under an open cursor may move it */
        size_t n = 0, cap = 0;
        struct pending_rec {
            char *key;
            size_t klen;
            cJSON *rec;
        } *recs = NULL;
        for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK && rc == ZT_OK;
             r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                struct pending_rec *nr = realloc(recs, cap * sizeof *recs);
                if (!nr) {
                    rc = ZT_ENOMEM;
                    break;
                }
                recs = nr;
            }
            recs[n].key = malloc(kv.klen ? kv.klen : 1);
            recs[n].klen = kv.klen;
            recs[n].rec = cJSON_ParseWithLength(kv.val, kv.vlen);
            if (!recs[n].key)
                rc = ZT_ENOMEM;
            else
                memcpy(recs[n].key, kv.key, kv.klen);
            n++;
        }
        zt_cursor_close(cur);
        for (size_t i = 0; i < n; i++) {
            if (rc == ZT_OK && recs[i].rec && recs[i].key)
                rc = rec_put(a, t, dbs[d], recs[i].key, recs[i].klen, recs[i].rec);
            free(recs[i].key);
            cJSON_Delete(recs[i].rec);
        }
        free(recs);
    }
    if (rc == ZT_OK && nunsealed) {
        char action[64];
        snprintf(action, sizeof action, "seal identity records: %zu", nunsealed);
        zt_audit_entry e = {
            .actor = "system", .plugin = "core", .action = action, .object = "identity"};
        rc = zt__audit_append(a->srv, t, &e);
    }
    if ((rc = zt__store_write_done(st, t, rc)) != ZT_OK) {
        snprintf(err, errlen, "cannot seal the identity records: %s", zt_strerror(rc));
        return rc;
    }
    if (nforged)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "identity: removed %zu session%s changed outside Zhengtong", nforged,
                nforged == 1 ? "" : "s");
    if (nunsealed)
        zt__log(ZT_LOG_INFO, NULL, NULL,
                "identity: sealed %zu account, session, API key and department records (kept "
                "from before records were sealed)",
                nunsealed);
    return ZT_OK;
}

static int credit_index_fill(zt_auth *a, char *err, size_t errlen)
{
    zt_store *st = a->srv->store;
    zt_txn *t;
    const void *v;
    size_t vl;
    int rc = zt__store_read_begin(st, &t);
    if (rc != ZT_OK) return rc;
    bool done =
        zt_get(t, a->credit_codes, CREDIT_INDEX_DONE, strlen(CREDIT_INDEX_DONE), &v, &vl) == ZT_OK;
    zt__store_end(st, t, false);
    if (done) return ZT_OK;
    if ((rc = zt__store_write_begin(st, &t)) != ZT_OK) return rc;
    zt_cursor *cur;
    zt_kv kv;
    long n = 0;
    if ((rc = zt_cursor_open(t, a->users, &cur)) == ZT_OK) {
        for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK && rc == ZT_OK;
             r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            cJSON *u = cJSON_ParseWithLength(kv.val, kv.vlen);
            const char *kind = zt__jstr(u, "kind"), *code = zt__jstr(u, "credit_code");
            const char *id = zt__jstr(u, "id");
            if (kind && strcmp(kind, "enterprise") == 0 && code && id) {
                if (zt_get(t, a->credit_codes, code, strlen(code), &v, &vl) == ZT_OK)
                    zt__log(ZT_LOG_WARN, NULL, NULL,
                            "identity: account %s has the credit code %s of account %.*s; it "
                            "keeps its code, but the code's index names the other",
                            id, code, (int)vl, (const char *)v);
                else if ((rc = zt_put(t, a->credit_codes, code, strlen(code), id, strlen(id))) ==
                         ZT_OK)
                    n++;
            }
            cJSON_Delete(u);
        }
        zt_cursor_close(cur);
    }
    if (rc == ZT_OK)
        rc = zt_put(t, a->credit_codes, CREDIT_INDEX_DONE, strlen(CREDIT_INDEX_DONE), "1", 1);
    if ((rc = zt__store_write_done(st, t, rc)) != ZT_OK) {
        snprintf(err, errlen, "cannot index the enterprises' credit codes: %s", zt_strerror(rc));
        return rc;
    }
    if (n) zt__log(ZT_LOG_INFO, NULL, NULL, "identity: indexed %ld enterprises' credit codes", n);
    return ZT_OK;
}

int zt__auth_dept_put(zt_server *srv, zt_txn *t, const char *code, const char *name,
                      const char *parent, cJSON **out)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "code", code);
    cJSON_AddStringToObject(d, "name", name);
    if (parent) cJSON_AddStringToObject(d, "parent", parent);
    int rc = rec_put(srv->auth, t, srv->auth->depts, code, strlen(code), d);
    if (out && rc == ZT_OK)
        *out = d;
    else
        cJSON_Delete(d);
    return rc;
}

/* The department "root", named after the node. */
static int put_root(zt_auth *a, zt_txn *t)
{
    return zt__auth_dept_put(a->srv, t, "root", a->srv->conf->node_name, NULL, NULL);
}

int zt__auth_root_dept(zt_server *srv, char *err, size_t errlen)
{
    zt_auth *a = srv->auth;
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc != ZT_OK) return rc;
    const void *v;
    size_t vl;
    if (zt_get(t, a->depts, "root", 4, &v, &vl) != ZT_OK) rc = put_root(a, t);
    if ((rc = zt__store_write_done(srv->store, t, rc)) != ZT_OK)
        snprintf(err, errlen, "cannot create the department root: %s", zt_strerror(rc));
    return rc;
}

/* The first start creates the department "root" and the account "admin" with a one-time
 * password, printed once. */
/* The first start that records sign-ins notes when: accounts from before are judged
 * inactive only once auth.inactive_after has passed from then. */
static int activity_floor(zt_auth *a)
{
    if (a->activity_since) return ZT_OK;
    zt_txn *t;
    int rc = zt__store_write_begin(a->srv->store, &t);
    if (rc != ZT_OK) return rc;
    unsigned char v[8];
    int64_t now = zt_now_ms();
    zt__be64_put(v, (uint64_t)now);
    rc = zt__store_write_done(a->srv->store, t, zt_put(t, a->meta, "activity_since", 14, v, 8));
    if (rc == ZT_OK) a->activity_since = now;
    return rc;
}

int zt__auth_bootstrap(zt_server *srv, char *err, size_t errlen)
{
    zt_auth *a = srv->auth;
    zt_store *st = a->srv->store;
    zt_txn *t;
    int rc = activity_floor(a);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot record when sign-ins began to count: %s", zt_strerror(rc));
        return rc;
    }
    if ((rc = zt__store_read_begin(st, &t)) != ZT_OK) return rc;
    zt_cursor *cur;
    zt_kv kv;
    bool empty = zt_cursor_open(t, a->users, &cur) == ZT_OK &&
                 zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv) == ZT_ENOTFOUND;
    zt__store_end(st, t, false);
    if (!empty) return ZT_OK;
    char pw[ONE_TIME_LEN + 1], hash[crypto_pwhash_STRBYTES];
    random_password(a->srv->conf, pw);
    if ((rc = hash_password(a->srv->conf, pw, hash)) != ZT_OK) return rc;
    if ((rc = zt__store_write_begin(st, &t)) != ZT_OK) return rc;
    rc = put_root(a, t);
    cJSON *roles = cJSON_CreateArray();
    cJSON_AddItemToArray(roles, cJSON_CreateString("admin"));
    if (rc == ZT_OK)
        rc = create_user(a, t, "admin", "Administrator", "staff", "root", roles, hash, true, NULL,
                         NULL);
    cJSON_Delete(roles);
    if ((rc = zt__store_write_done(st, t, rc)) != ZT_OK) {
        snprintf(err, errlen, "cannot create the first account: %s", zt_strerror(rc));
        return rc;
    }
    /* On stdout, not in the log (stderr): a password has no place in log files. */
    fprintf(stdout,
            "\n  First start: created the account 'admin' with the one-time password\n"
            "      %s\n"
            "  Sign in (POST /auth/login) and set your own (POST /auth/password).\n\n",
            pw);
    fflush(stdout);
    zt__log(ZT_LOG_WARN, NULL, NULL,
            "first start: created account 'admin' (one-time password printed on stdout)");
    sodium_memzero(pw, sizeof pw);
    return ZT_OK;
}

int zt__auth_open(zt_server *srv, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return ZT_ERROR;
    }
    zt_auth *a = calloc(1, sizeof(*a));
    if (!a) return ZT_ENOMEM;
    a->srv = srv;
    srv->auth = a; /* zt__auth_close frees it, whatever is missing */
    if (!(a->cache = calloc(SESS_CACHE, sizeof(*a->cache))) ||
        !(a->throttle = zt__throttle_new(FAIL_MAX_ENTRIES)))
        return ZT_ENOMEM;
    randombytes_buf(a->tag_key, sizeof a->tag_key);
    a->core.name = "_core";
    a->core.srv = srv;
    int rc;
    if ((rc = zt__store_db(srv->store, "_core", "users", &a->users)) ||
        (rc = zt__store_db(srv->store, "_core", "logins", &a->logins)) ||
        (rc = zt__store_db(srv->store, "_core", "departments", &a->depts)) ||
        (rc = zt__store_db(srv->store, "_core", "sessions", &a->sessions)) ||
        (rc = zt__store_db(srv->store, "_core", "user_sessions", &a->user_sessions)) ||
        (rc = zt__store_db(srv->store, "_core", "citizen_ids", &a->citizen_ids)) ||
        (rc = zt__store_db(srv->store, "_core", "credit_codes", &a->credit_codes)) ||
        (rc = zt__store_db(srv->store, "_core", "api_keys", &a->keys)) ||
        (rc = zt__store_db(srv->store, "_core", "identity_generation", &a->gen)) ||
        (rc = zt__store_db(srv->store, "_core", "meta", &a->meta))) {
        snprintf(err, errlen, "cannot open the identity databases: %s", zt_strerror(rc));
        return rc;
    }
    if (!(a->rec_key = sodium_malloc(32)) ||
        zt__keys_derive(srv->keys, "ztrecmac", 1, a->rec_key, 32) != ZT_OK) {
        snprintf(err, errlen, "cannot derive the key that seals the identity records");
        return ZT_ERROR;
    }
    sodium_mprotect_readonly(a->rec_key);
    if (srv->conf->auth_https_only && !srv->conf->nproxies)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "auth.https_only without trusted_proxies: the node serves no HTTPS itself, so "
                "only clients on this machine can sign in; put nginx in front for HTTPS and "
                "list it in trusted_proxies");
    if (!srv->check_only && (rc = credit_index_fill(a, err, errlen)) != ZT_OK) return rc;
    if (!srv->check_only && (rc = records_seal(a, err, errlen)) != ZT_OK) return rc;
    zt_txn *t;
    if ((rc = zt__store_read_begin(srv->store, &t)) != ZT_OK) return rc;
    const void *v;
    size_t vl;
    if (zt_get(t, a->meta, "activity_since", 14, &v, &vl) == ZT_OK && vl == 8)
        a->activity_since = (int64_t)zt__be64_get(v);
    zt__store_end(srv->store, t, false);
    const char *U = ZT_ROLE_USER, *P = ZT_ROLE_PUBLIC, *A = "admin";
    if ((rc =
             add(srv, "POST", "/auth/login", h_login, P, "Sign in: a bearer token", err, errlen)) ||
        (rc = add(srv, "POST", "/auth/logout", h_logout, U, "End this session", err, errlen)) ||
        (rc = add(srv, "POST", "/auth/password", h_password, U, "Change your password", err,
                  errlen)) ||
        (rc = add(srv, "POST", "/auth/register", h_register, P,
                  "Register as a citizen or an enterprise", err, errlen)) ||
        (rc = add(srv, "POST", "/auth/close", h_close, U,
                  "Close your own account (a citizen's or an enterprise's), with your password",
                  err, errlen)) ||
        (rc = add(srv, "GET", "/auth/me", h_me, U, "Your account", err, errlen)) ||
        (rc = add(srv, "GET", "/auth/labels", h_labels, U,
                  "The security labels (安全标记), lowest first, and your clearance", err,
                  errlen)) ||
        (rc = add(srv, "POST", "/auth/totp", h_totp_begin, U,
                  "Set up sign-in codes from an authenticator app: a secret", err, errlen)) ||
        (rc = add(srv, "POST", "/auth/totp/confirm", h_totp_confirm, U,
                  "Turn sign-in codes on with a first code", err, errlen)) ||
        (rc = add(srv, "DELETE", "/auth/totp", h_totp_delete, U,
                  "Turn sign-in codes off (send a code)", err, errlen)) ||
        (rc = add(srv, "GET", "/auth/sessions", h_sessions, U, "Your sessions", err, errlen)) ||
        (rc = add(srv, "DELETE", "/auth/sessions/:id", h_session_delete, U,
                  "End one of your sessions", err, errlen)) ||
        (rc = add_account(srv, "GET", "/admin/users", h_user_list, "Accounts", err, errlen)) ||
        (rc = add_account(srv, "POST", "/admin/users", h_user_create, "Create a staff account", err,
                          errlen)) ||
        (rc = add_account(srv, "GET", "/admin/users/:id", h_user_get, "An account", err, errlen)) ||
        (rc = add_account(srv, "PATCH", "/admin/users/:id", h_user_patch,
                          "Change login, name, department, roles, clearance, disabled", err,
                          errlen)) ||
        (rc = add_account(srv, "POST", "/admin/users/:id/password", h_user_reset,
                          "Reset to a one-time password", err, errlen)) ||
        (rc = add_account(srv, "DELETE", "/admin/users/:id/sessions", h_user_revoke,
                          "Revoke every session of an account", err, errlen)) ||
        (rc = add(srv, "POST", "/admin/users/:id/release", h_user_release, A,
                  "A disabled citizen's or enterprise's account gives up its ID number or "
                  "credit code, for its rightful holder to register",
                  err, errlen)) ||
        (rc = add_account(srv, "DELETE", "/admin/users/:id/totp", h_user_totp_delete,
                          "Remove an account's sign-in codes (a lost phone); ends its sessions",
                          err, errlen)) ||
        (rc = add(srv, "GET", "/admin/departments", h_dept_list, A, "Departments", err, errlen)) ||
        (rc = add(srv, "PATCH", "/admin/departments/:code", h_dept_update, A,
                  "Rename or move a department (its code stays)", err, errlen)) ||
        (rc = add(srv, "POST", "/admin/departments", h_dept_create, A, "Create a department", err,
                  errlen)) ||
        (rc = add(srv, "GET", "/admin/keys", h_key_list, A, "API keys of devices and nodes", err,
                  errlen)) ||
        (rc = add(srv, "POST", "/admin/keys", h_key_create, A,
                  "A new API key bound to a plugin and a role (shown once)", err, errlen)) ||
        (rc = add(srv, "DELETE", "/admin/keys/:id", h_key_delete, A, "Revoke an API key", err,
                  errlen)))
        return rc;
    return ZT_OK;
}

int zt__auth_metrics(zt_server *srv, zt_buf *out)
{
    const zt_auth *a = srv->auth;
    const zt_throttle *t = a->throttle;
    int rc = zt__buf_puts(out, "# HELP zt_auth_sign_ins_total Sign-ins (POST /auth/login) by "
                               "outcome: ok, bad_password (or no such login), bad_code, "
                               "code_required, locked (429), refused (disabled, inactive).\n"
                               "# TYPE zt_auth_sign_ins_total counter\n");
    for (size_t i = 0; rc == ZT_OK && i < SI_N; i++)
        rc = zt__buf_printf(out, "zt_auth_sign_ins_total{result=\"%s\"} %llu\n", SIGN_IN_RESULT[i],
                            (unsigned long long)a->sign_ins[i]);
    if (rc == ZT_OK)
        rc = zt__buf_printf(
            out,
            "# HELP zt_auth_locks_total Accounts and client addresses locked after "
            "auth.max_failures failed sign-ins (or passwords, codes): someone guessing.\n"
            "# TYPE zt_auth_locks_total counter\n"
            "zt_auth_locks_total{scope=\"account\"} %llu\n"
            "zt_auth_locks_total{scope=\"address\"} %llu\n"
            "# HELP zt_auth_refusals_total Refusals (403) of signed-in callers.\n"
            "# TYPE zt_auth_refusals_total counter\n"
            "zt_auth_refusals_total %llu\n"
            "# HELP zt_auth_records_refused_total Accounts, sessions and API keys read whose "
            "seal did not hold (changed outside Zhengtong): not trusted.\n"
            "# TYPE zt_auth_records_refused_total counter\n"
            "zt_auth_records_refused_total %llu\n"
            "# HELP zt_auth_plain_http_refused_total Requests refused for carrying a credential "
            "over plain HTTP (auth.https_only).\n"
            "# TYPE zt_auth_plain_http_refused_total counter\n"
            "zt_auth_plain_http_refused_total %llu\n",
            (unsigned long long)a->locks[0], (unsigned long long)a->locks[1],
            (unsigned long long)a->refusals, (unsigned long long)a->rec_refused,
            (unsigned long long)a->plain_refused);
    if (rc != ZT_OK) return rc;
    return zt__buf_printf(
        out,
        "# HELP zt_auth_throttle_entries Accounts and client addresses with failed sign-ins "
        "or registrations counted (in memory, at most %d).\n"
        "# TYPE zt_auth_throttle_entries gauge\n"
        "zt_auth_throttle_entries %zu\n"
        "# HELP zt_auth_throttle_evictions_total Counts forgotten while they still mattered, "
        "the table being full (a flood of failed sign-ins from many addresses).\n"
        "# TYPE zt_auth_throttle_evictions_total counter\n"
        "zt_auth_throttle_evictions_total %llu\n"
        "# HELP zt_auth_refusals_unrecorded_total Refusals (403) of signed-in callers not "
        "recorded in the audit log: an account's beyond %d in %d minutes.\n"
        "# TYPE zt_auth_refusals_unrecorded_total counter\n"
        "zt_auth_refusals_unrecorded_total %llu\n",
        FAIL_MAX_ENTRIES, zt__throttle_size(t), (unsigned long long)zt__throttle_evictions(t),
        REFUSALS_RECORDED, REFUSALS_WINDOW_MS / 60000, (unsigned long long)a->refusals_unrecorded);
}

/* Ended sessions go when their account signs in again, signs out or is revoked; those of
 * an account that never comes back stayed for good (a reviewer found 208 session records
 * for 202 accounts, most abandoned). A sweep goes through SWEEP_MAX session keys every
 * SWEEP_EVERY_MS, on from where the last stopped, and removes the ended ones, in the
 * batch, with one audit record of how many. */
#define SWEEP_EVERY_MS (60 * 1000)
#define SWEEP_MAX      2000

static int sweep_sessions(zt_auth *a, size_t *removed)
{
    zt_server *srv = a->srv;
    zt_txn *t;
    zt_cursor *cur = NULL;
    *removed = 0;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc != ZT_OK) return rc;
    zt__audit_pos mark; /* the record goes with the transaction */
    zt__audit_mark(srv, &mark);
    int64_t now = zt_now_ms();
    zt_kv kv;
    size_t seen = 0;
    if ((rc = zt_cursor_open(t, a->user_sessions, &cur)) == ZT_OK)
        rc = a->sweep_from_len ? zt_cursor_seek(cur, ZT_GE, a->sweep_from, a->sweep_from_len, &kv)
                               : zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv);
    while (rc == ZT_OK && seen++ < SWEEP_MAX) {
        cJSON *s = kv.vlen == 32 ? rec_get(a, t, a->sessions, kv.val, 32) : NULL;
        bool ended = session_ended(a, s, now);
        cJSON_Delete(s);
        if (ended) {
            if ((rc = drop_session_at(a, t, cur, &kv)) != ZT_OK) break;
            ++*removed;
        }
        rc = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv);
    }
    /* on from the next key, or from the start once the end was reached */
    a->sweep_from_len = 0;
    if (rc == ZT_OK && kv.klen <= sizeof a->sweep_from) {
        memcpy(a->sweep_from, kv.key, kv.klen);
        a->sweep_from_len = kv.klen;
    }
    if (cur) zt_cursor_close(cur);
    if (rc == ZT_ENOTFOUND) rc = ZT_OK;
    if (rc == ZT_OK && *removed) {
        char object[48];
        snprintf(object, sizeof object, "%zu ended sessions", *removed);
        zt_audit_entry e = {.actor = "system",
                            .actor_login = "system",
                            .plugin = "core",
                            .action = "sweep sessions",
                            .object = object,
                            .request_id = "",
                            .client = "internal"};
        rc = zt__audit_queue_entry(srv, &e, NULL);
    }
    int erc = zt__store_end(srv->store, t, rc == ZT_OK && *removed);
    if (rc == ZT_OK) rc = erc;
    if (rc != ZT_OK) {
        zt__audit_rewind(srv, &mark);
        *removed = 0;
    }
    return rc;
}

static void on_sweep(uv_timer_t *tm)
{
    zt_auth *a = tm->data;
    size_t removed;
    int rc = sweep_sessions(a, &removed);
    if (rc != ZT_OK)
        zt__log(ZT_LOG_WARN, NULL, NULL, "sessions: the sweep of ended sessions failed: %s",
                zt_strerror(rc));
    else if (removed)
        zt__log(ZT_LOG_INFO, NULL, NULL, "sessions: removed %zu ended sessions", removed);
}

void zt__auth_start(zt_server *srv)
{
    zt_auth *a = srv->auth;
    if (!a || !srv->store) return;
    uv_timer_init(srv->loop, &a->sweep);
    a->sweep.data = a;
    uint64_t every = getenv("ZT_TEST_SWEEP_MS") && getenv("ZT_TEST_CLOCK")
                         ? strtoull(getenv("ZT_TEST_SWEEP_MS"), NULL, 10)
                         : SWEEP_EVERY_MS;
    uv_timer_start(&a->sweep, on_sweep, every, every);
    uv_unref((uv_handle_t *)&a->sweep);
}

static void on_sweep_closed(uv_handle_t *h)
{
    free(h->data);
}

void zt__auth_close(zt_server *srv)
{
    zt_auth *a = srv->auth;
    if (!a) return;
    zt__throttle_free(a->throttle);
    if (a->rec_key) sodium_free(a->rec_key);
    for (size_t i = 0; a->cache && i < SESS_CACHE; i++) entry_clear(&a->cache[i]);
    free(a->cache);
    srv->auth = NULL;
    if (a->sweep.loop)
        uv_close((uv_handle_t *)&a->sweep, on_sweep_closed);
    else
        free(a);
}
