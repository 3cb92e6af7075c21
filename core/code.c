/* code.c: what code the node runs (GB/T 22239 可信验证, as far as software can vouch for
 * itself): at each start, the digests of the zhengtong binary, the config file, each
 * plugin (its .so, or every file of its Lua folder) and the shared workflow definitions.
 * What changed since the last start is one audit record and one log line; GET /admin/code
 * lists what runs and since when. */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CODE_NAME_MAX 80 /* "plugin " and a plugin name */
#define CODE_DEPTH    16 /* folders within a Lua plugin's folder */

/* The bytes of the file at path into st. */
static int hash_file(const char *path, crypto_generichash_state *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? ZT_ENOTFOUND : ZT_EIO;
    unsigned char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) crypto_generichash_update(st, buf, (size_t)n);
    int rc = n < 0 ? ZT_EIO : ZT_OK;
    close(fd);
    return rc;
}

/* Every regular file below dir, in name order: its path (from the top folder), a NUL, its
 * length and its bytes; so a file renamed, moved, added or removed changes the digest. */
static int hash_tree(const char *dir, const char *rel, crypto_generichash_state *st, int depth,
                     const char *const *skip)
{
    if (depth > CODE_DEPTH) return ZT_EINVAL;
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return errno == ENOENT ? ZT_ENOTFOUND : ZT_EIO;
    int rc = ZT_OK;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char path[4096], sub[4096];
        struct stat sb;
        bool skipped = false; /* skip: names in the top folder that have digests of their own */
        for (const char *const *k = skip; k && *k && !skipped; k++) skipped = strcmp(name, *k) == 0;
        if (rc == ZT_OK && !skipped && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path &&
            snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name) < (int)sizeof sub &&
            stat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                rc = hash_tree(path, sub, st, depth + 1, NULL);
            } else if (S_ISREG(sb.st_mode)) {
                unsigned char len[8];
                zt__be64_put(len, (uint64_t)sb.st_size);
                crypto_generichash_update(st, (const unsigned char *)sub, strlen(sub) + 1);
                crypto_generichash_update(st, len, sizeof len);
                rc = hash_file(path, st);
            }
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

/* The digest of a file, or of a folder's files (tree), but for the top folder's skip. */
static int digest_of(const char *path, bool tree, const char *const *skip, unsigned char out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    int rc = tree ? hash_tree(path, "", &st, 0, skip) : hash_file(path, &st);
    crypto_generichash_final(&st, out, 32);
    return rc;
}

typedef struct code_item {
    char name[CODE_NAME_MAX];
    unsigned char digest[32];
} code_item;

/* What runs now: the binary, the config, each plugin, the workflow definitions, and the
 * rest of lua_dir: what plugins load from there (the sensor plugin's alert rules, modules a
 * Lua plugin requires) runs as much as the plugins do. */
static int code_now(zt_server *srv, code_item **out, size_t *n)
{
    const zt_conf *c = srv->conf;
    code_item *it = calloc(srv->nplugins + 4, sizeof *it);
    if (!it) return ZT_ENOMEM;
    size_t k = 0;
    int rc = ZT_OK;
    snprintf(it[k].name, CODE_NAME_MAX, "core");
    if ((rc = digest_of("/proc/self/exe", false, NULL, it[k].digest)) == ZT_OK) k++;
    snprintf(it[k].name, CODE_NAME_MAX, "config");
    if (rc == ZT_OK && (rc = digest_of(c->file, false, NULL, it[k].digest)) == ZT_OK) k++;
    for (size_t i = 0; rc == ZT_OK && i < srv->nplugins; i++) {
        const zt_plugin *p = srv->plugins[i];
        snprintf(it[k].name, CODE_NAME_MAX, "plugin %s", p->name);
        if ((rc = digest_of(p->path, p->kind == ZT_PLUGIN_LUA, NULL, it[k].digest)) == ZT_OK) k++;
    }
    char wf[4096];
    snprintf(wf, sizeof wf, "%s/workflows", c->lua_dir);
    snprintf(it[k].name, CODE_NAME_MAX, "workflows");
    if (rc == ZT_OK) {
        rc = digest_of(wf, true, NULL, it[k].digest);
        if (rc == ZT_OK) k++;
        if (rc == ZT_ENOTFOUND) rc = ZT_OK; /* no shared definitions */
    }
    static const char *const own[] = {"plugins", "workflows", NULL};
    snprintf(it[k].name, CODE_NAME_MAX, "lua library");
    if (rc == ZT_OK) {
        rc = digest_of(c->lua_dir, true, own, it[k].digest);
        if (rc == ZT_OK) k++;
        if (rc == ZT_ENOTFOUND) rc = ZT_OK; /* no lua_dir */
    }
    if (rc != ZT_OK) {
        free(it);
        return rc;
    }
    *out = it;
    *n = k;
    return ZT_OK;
}

/* Record what runs in _core/code (name → digest, since: 32 + 8 bytes), with one audit record
 * naming what changed since the last start (or, on the first, what there is). */
static int code_record(zt_server *srv, zt_db *db, char *err, size_t errlen)
{
    code_item *it;
    size_t n;
    int rc = code_now(srv, &it, &n);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot read the code it runs, to record it: %s", zt_strerror(rc));
        return rc;
    }
    zt_txn *t;
    if ((rc = zt__store_write_begin(srv->store, &t)) != ZT_OK) {
        free(it);
        return rc;
    }
    zt_buf what = {0};
    int64_t now = zt_now_ms();
    for (size_t i = 0; rc == ZT_OK && i < n; i++) {
        const void *v;
        size_t vl;
        bool had = zt_get(t, db, it[i].name, strlen(it[i].name), &v, &vl) == ZT_OK && vl == 40;
        if (had && memcmp(v, it[i].digest, 32) == 0) continue;
        char from[9], to[9];
        zt__hex(to, it[i].digest, 4);
        if (had) zt__hex(from, v, 4);
        zt__buf_printf(&what, "%s%s %s%s%s", what.len ? "; " : "", it[i].name, had ? from : "",
                       had ? " → " : "new ", to);
        unsigned char rec[40];
        memcpy(rec, it[i].digest, 32);
        zt__be64_put(rec + 32, (uint64_t)now);
        rc = zt_put(t, db, it[i].name, strlen(it[i].name), rec, sizeof rec);
    }
    zt_cursor *cur; /* what no longer runs (a plugin taken out of the config) */
    zt_kv kv;
    if (rc == ZT_OK && (rc = zt_cursor_open(t, db, &cur)) == ZT_OK) {
        for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK && rc == ZT_OK;
             r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            bool kept = false;
            for (size_t i = 0; !kept && i < n; i++)
                kept = kv.klen == strlen(it[i].name) && memcmp(kv.key, it[i].name, kv.klen) == 0;
            if (kept) continue;
            zt__buf_printf(&what, "%s%.*s removed", what.len ? "; " : "", (int)kv.klen,
                           (const char *)kv.key);
            rc = zt_cursor_del(cur);
        }
        zt_cursor_close(cur);
    }
    if (rc == ZT_OK && what.len) {
        char action[1000];
        snprintf(action, sizeof action, "code changed: %s", what.data);
        zt_audit_entry e = {
            .actor = "system", .plugin = "core", .action = action, .object = "code"};
        rc = zt__audit_append(srv, t, &e);
    }
    rc = zt__store_write_done(srv->store, t, rc);
    if (rc == ZT_OK && what.len)
        zt__log(ZT_LOG_INFO, NULL, NULL, "code: %s (GET /admin/code lists what runs)", what.data);
    if (rc != ZT_OK) snprintf(err, errlen, "cannot record the code it runs: %s", zt_strerror(rc));
    zt__buf_free(&what);
    free(it);
    return rc;
}

/* GET /admin/code: {items: [{name, digest (BLAKE2b-256, hex), since}]}. */
static int h_code(zt_req *req, void *ud)
{
    zt_txn *t = zt_req_txn(req);
    zt_cursor *cur;
    if (!t || zt_cursor_open(t, ud, &cur) != ZT_OK) return ZT_EIO;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    zt_kv kv;
    for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK;
         r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        if (kv.vlen != 40) continue;
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, kv.val, 32);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name",
                                zt_req_printf(req, "%.*s", (int)kv.klen, (const char *)kv.key));
        cJSON_AddStringToObject(x, "digest", hex);
        cJSON_AddNumberToObject(x, "since",
                                (double)zt__be64_get((const unsigned char *)kv.val + 32));
        cJSON_AddItemToArray(items, x);
    }
    zt_cursor_close(cur);
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

int zt__code_open(zt_server *srv, char *err, size_t errlen)
{
    zt_db *db;
    int rc = zt__store_db(srv->store, "_core", "code", &db);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "cannot open _core/code: %s", zt_strerror(rc));
        return rc;
    }
    zt_route r = {.method = "GET",
                  .path = "/admin/code",
                  .handler = h_code,
                  .ud = db,
                  .role = "auditor",
                  .summary = "What code the node runs: the binary, the config, each plugin and the "
                             "workflow definitions, by digest, and since when"};
    if ((rc = zt__router_add(srv->router, NULL, &r, err, errlen)) != ZT_OK) return rc;
    /* a check or a plugin's tests run on a scratch store: nothing to record there */
    return srv->check_only ? ZT_OK : code_record(srv, db, err, errlen);
}
