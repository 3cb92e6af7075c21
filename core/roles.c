/* roles.c: which roles accounts and API keys may be given. */
#define _GNU_SOURCE /* memmem */
#include "core.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A role is a name the code checks (a route's role, zt_caller_has_role, a workflow task's
 * role). Granting a name nothing checks grants nothing, silently: "aproval_clerk" leaves a
 * clerk refused with no one told why. So a role is granted only if it is known:
 *   - declared: by the core, by a plugin (zt_role_declare, zt.role) or by a route that
 *     asks for it, with the plugin that declared it;
 *   - custom: added by county IT (POST /admin/roles, `zhengtong admin role add`), for the
 *     roles a script computes (a workflow task whose role a function returns).
 * The store keeps both in _core/roles: the custom ones, and the declared ones as of the
 * node's last start (so the offline `zhengtong admin`, which starts no plugin, knows them).
 * A role an account already holds stays when it stops being known (its plugin switched
 * off): GET /admin/roles shows it, with no origin.
 */

typedef struct role_decl {
    char *name, *description, *from; /* from: "core" or the plugin's name */
} role_decl;

struct zt_roles {
    role_decl *v;
    size_t n, cap;
    zt_db *db;           /* name → {"description", "from", custom: "created_by", "created_at"} */
    zt_db *users, *keys; /* the identity databases, to count who holds a role */
};

#define CUSTOM "custom"

bool zt__role_name_ok(const char *r)
{
    size_t n = strlen(r);
    if (n < 1 || n > 64 || !islower((unsigned char)r[0])) return false;
    for (; *r; r++)
        if (!(islower((unsigned char)*r) || isdigit((unsigned char)*r) || strchr("_.-", *r)))
            return false;
    return true;
}

static role_decl *find(const zt_roles *rs, const char *name)
{
    for (size_t i = 0; rs && i < rs->n; i++)
        if (strcmp(rs->v[i].name, name) == 0) return &rs->v[i];
    return NULL;
}

const char *zt__role_problem(const char *name, const char *description, char *buf, size_t cap)
{
    if (!name || !zt__role_name_ok(name) || strcmp(name, ZT_ROLE_PUBLIC) == 0 ||
        strcmp(name, ZT_ROLE_USER) == 0) {
        snprintf(buf, cap,
                 "'%s' is no role name (1 to 64 of a-z 0-9 _ . - from a letter; not 'public' "
                 "or 'user')",
                 name ? name : "");
        return buf;
    }
    const char *why = description ? zt_text_problem(description, 200, 0) : NULL;
    if (!why) return NULL;
    snprintf(buf, cap, "the description of '%s' %s", name, why);
    return buf;
}

int zt__roles_declare(zt_server *srv, const char *from, const char *name, const char *description)
{
    zt_roles *rs = srv->roles;
    char buf[256];
    if (zt__role_problem(name, description, buf, sizeof buf)) return ZT_EINVAL;
    if (!rs) return ZT_OK; /* a node without accounts (unit tests' bare servers) */
    role_decl *d = find(rs, name);
    if (d) {
        /* the first to describe it keeps it: a route, or a workflow's task, only names a
         * role; the plugin that says what it is for owns it */
        if (d->description || !description) return ZT_OK;
        char *desc = strdup(description), *owner = strdup(from);
        if (!desc || !owner) {
            free(desc), free(owner);
            return ZT_ENOMEM;
        }
        free(d->from);
        d->description = desc, d->from = owner;
        return ZT_OK;
    }
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? 2 * rs->cap : 16;
        role_decl *v = realloc(rs->v, cap * sizeof *v);
        if (!v) return ZT_ENOMEM;
        rs->v = v, rs->cap = cap;
    }
    d = &rs->v[rs->n];
    *d = (role_decl){strdup(name), description ? strdup(description) : NULL, strdup(from)};
    if (!d->name || !d->from || (description && !d->description)) {
        free(d->name), free(d->description), free(d->from);
        return ZT_ENOMEM;
    }
    rs->n++;
    return ZT_OK;
}

int zt_role_declare(zt_plugin *p, const char *role, const char *description)
{
    if (!p || !p->srv) return ZT_EINVAL;
    return zt__roles_declare(p->srv, p->name, role, description);
}

void zt__roles_from_routes(zt_server *srv)
{
    for (size_t i = 0; i < zt__router_count(srv->router); i++) {
        const zt__route *rt = zt__router_at(srv->router, i);
        /* a route's role was checked when it was added; memory is all that can fail */
        if (strcmp(rt->role, ZT_ROLE_PUBLIC) != 0 && strcmp(rt->role, ZT_ROLE_USER) != 0)
            zt__roles_declare(srv, rt->plugin ? rt->plugin->name : "core", rt->role, NULL);
    }
}

bool zt__role_known(zt_server *srv, zt_txn *t, const char *name)
{
    if (find(srv->roles, name)) return true;
    const void *v;
    size_t vl;
    return t && srv->roles && zt_get(t, srv->roles->db, name, strlen(name), &v, &vl) == ZT_OK;
}

bool zt__roles_hold(const cJSON *list, const char *s)
{
    for (const cJSON *x = cJSON_IsArray(list) ? list->child : NULL; x; x = x->next)
        if (cJSON_IsString(x) && strcmp(x->valuestring, s) == 0) return true;
    return false;
}

const char *zt__roles_unknown(zt_server *srv, zt_txn *t, const cJSON *roles, const cJSON *held)
{
    for (const cJSON *r = cJSON_IsArray(roles) ? roles->child : NULL; r; r = r->next)
        if (cJSON_IsString(r) && !zt__roles_hold(held, r->valuestring) &&
            !zt__role_known(srv, t, r->valuestring))
            return r->valuestring;
    return NULL;
}

bool zt__roles_not_separate(const zt_conf *c, const cJSON *roles)
{
    return c->auth_separate_duties && zt__roles_hold(roles, "admin") &&
           zt__roles_hold(roles, "auditor");
}

/* auth.separate_duties: the accounts that hold both admin and auditor are named at start,
 * for an auditor (such an account is the auditors' to manage) or root to give each one of
 * them (they keep both until then: taking one away here could lock out the only
 * administrator). A record names a role as "role" in its JSON, so only a record holding
 * both strings is read whole. */
static void warn_not_separate(zt_server *srv, zt_txn *t)
{
    zt_cursor *cur;
    zt_kv kv;
    if (!srv->conf->auth_separate_duties || zt_cursor_open(t, srv->roles->users, &cur) != ZT_OK)
        return;
    zt_buf who = {0};
    size_t n = 0;
    for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK;
         r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        if (!memmem(kv.val, kv.vlen, "\"auditor\"", 9) || !memmem(kv.val, kv.vlen, "\"admin\"", 7))
            continue;
        cJSON *u = cJSON_ParseWithLength(kv.val, kv.vlen);
        if (zt__roles_not_separate(srv->conf, cJSON_GetObjectItemCaseSensitive(u, "roles")) &&
            ++n <= 20)
            zt__buf_printf(&who, "%s%s", n > 1 ? ", " : "", zt__jstr(u, "login"));
        cJSON_Delete(u);
    }
    zt_cursor_close(cur);
    if (n)
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "auth.separate_duties: %zu account(s) hold both admin and auditor (%s%s): give "
                "each one of them (an auditor: PATCH /admin/users/:id; or zhengtong admin user "
                "roles LOGIN ROLES --recover)",
                n, who.data ? who.data : "", n > 20 ? ", ..." : "");
    zt__buf_free(&who);
}

/* ---- the store: declared roles as of this start ----------------------------------- */

static cJSON *decl_json(const role_decl *d)
{
    cJSON *o = cJSON_CreateObject();
    if (d->description)
        cJSON_AddStringToObject(o, "description", d->description);
    else
        cJSON_AddNullToObject(o, "description");
    cJSON_AddStringToObject(o, "from", d->from);
    return o;
}

/* Does the stored record v say what d declares? */
static bool same(const cJSON *v, const role_decl *d)
{
    const char *desc = zt__jstr(v, "description"), *from = zt__jstr(v, "from");
    return from && strcmp(from, d->from) == 0 &&
           (desc ? d->description && strcmp(desc, d->description) == 0 : !d->description);
}

/* Roles no enabled plugin declares any more leave the store (custom ones stay); those
 * declared now are written where they differ. One transaction, audited, when anything
 * changed. Then what the roles make doubtful is warned of. */
int zt__roles_sync(zt_server *srv, char *err, size_t errlen)
{
    zt_roles *rs = srv->roles;
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc != ZT_OK) return rc;
    zt_buf gone = {0}, came = {0};
    zt_cursor *cur;
    zt_kv kv;
    if ((rc = zt_cursor_open(t, rs->db, &cur)) == ZT_OK) {
        int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv);
        for (; r == ZT_OK && rc == ZT_OK; r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            cJSON *v = cJSON_ParseWithLength(kv.val, kv.vlen);
            const char *from = zt__jstr(v, "from");
            char name[65];
            snprintf(name, sizeof name, "%.*s", (int)(kv.klen < 64 ? kv.klen : 64),
                     (const char *)kv.key);
            if ((!from || strcmp(from, CUSTOM) != 0) && !find(rs, name)) {
                rc = zt_del(t, rs->db, kv.key, kv.klen);
                if (rc == ZT_OK) rc = zt__buf_printf(&gone, "%s%s", gone.len ? ", " : "", name);
            }
            cJSON_Delete(v);
        }
        zt_cursor_close(cur);
        if (r != ZT_OK && r != ZT_ENOTFOUND && rc == ZT_OK) rc = r;
    }
    for (size_t i = 0; rc == ZT_OK && i < rs->n; i++) {
        const role_decl *d = &rs->v[i];
        cJSON *v = zt__db_get_json(t, rs->db, d->name, strlen(d->name));
        if (!same(v, d)) {
            cJSON *o = decl_json(d);
            rc = zt__db_put_json(t, rs->db, d->name, strlen(d->name), o);
            cJSON_Delete(o);
            if (rc == ZT_OK) rc = zt__buf_printf(&came, "%s%s", came.len ? ", " : "", d->name);
        }
        cJSON_Delete(v);
    }
    if (rc == ZT_OK && (gone.len || came.len)) {
        zt_buf action = {0};
        rc = zt__buf_printf(&action,
                            "roles declared by the core and the plugins: new or changed [%s]; "
                            "no longer [%s]",
                            came.len ? came.data : "", gone.len ? gone.data : "");
        zt_audit_entry e = {.actor = "system",
                            .actor_login = "system:core",
                            .plugin = "core",
                            .action = action.data,
                            .object = "roles"};
        if (rc == ZT_OK) rc = zt__audit_append(srv, t, &e);
        zt__buf_free(&action);
    }
    zt__buf_free(&gone), zt__buf_free(&came);
    if ((rc = zt__store_write_done(srv->store, t, rc)) != ZT_OK) {
        snprintf(err, errlen, "cannot record the roles: %s", zt_strerror(rc));
        return rc;
    }
    if (zt__store_read_begin(srv->store, &t) == ZT_OK) {
        warn_not_separate(srv, t);
        zt__roles_warn_2fa(srv, t);
        zt__store_end(srv->store, t, false);
    }
    return ZT_OK;
}

void zt__roles_warn_2fa(zt_server *srv, zt_txn *t)
{
    const zt_conf *c = srv->conf;
    for (size_t i = 0; i < c->auth_n2fa_roles; i++)
        if (!zt__role_known(srv, t, c->auth_2fa_roles[i]))
            zt__log(ZT_LOG_WARN, NULL, NULL,
                    "auth.two_factor_roles: '%s' is not a role of this node (no plugin declares "
                    "it, %s): a typo? (accounts meant to need a code would sign in without one)",
                    c->auth_2fa_roles[i],
                    t ? "POST /admin/roles did not add it"
                      : "and check cannot see the roles county IT added");
}

/* ---- HTTP ------------------------------------------------------------------------- */

static cJSON *row_for(cJSON *list, const char *name, const cJSON *stored, const role_decl *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    const char *desc = d ? d->description : zt__jstr(stored, "description");
    const char *from = d ? d->from : zt__jstr(stored, "from");
    if (desc)
        cJSON_AddStringToObject(o, "description", desc);
    else
        cJSON_AddNullToObject(o, "description");
    if (from)
        cJSON_AddStringToObject(o, "from", from);
    else
        cJSON_AddNullToObject(o, "from"); /* held, but nothing here declares it */
    const char *by = d ? NULL : zt__jstr(stored, "created_by");
    if (by) cJSON_AddStringToObject(o, "created_by", by);
    cJSON_AddNumberToObject(o, "accounts", 0);
    cJSON_AddNumberToObject(o, "keys", 0);
    cJSON_AddItemToArray(list, o);
    return o;
}

static cJSON *row_find(cJSON *list, const char *name)
{
    for (cJSON *o = list->child; o; o = o->next)
        if (strcmp(zt__jstr(o, "name"), name) == 0) return o;
    return NULL;
}

static void row_count(cJSON *list, const char *name, const char *field)
{
    cJSON *o = row_find(list, name);
    if (!o) o = row_for(list, name, NULL, NULL);
    cJSON *n = cJSON_GetObjectItemCaseSensitive(o, field);
    cJSON_SetNumberValue(n, n->valuedouble + 1);
}

static int by_name(const void *x, const void *y)
{
    const cJSON *a = *(cJSON *const *)x, *b = *(cJSON *const *)y;
    return strcmp(zt__jstr(a, "name"), zt__jstr(b, "name"));
}

/* Every role known or held: {name, description, from, accounts, keys}, by name. */
static cJSON *roles_list(zt_server *srv, zt_txn *t)
{
    zt_roles *rs = srv->roles;
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < rs->n; i++) row_for(list, rs->v[i].name, NULL, &rs->v[i]);
    zt_cursor *cur;
    zt_kv kv;
    zt_db *dbs[3] = {rs->db, rs->users, rs->keys};
    for (int k = 0; k < 3; k++) {
        if (zt_cursor_open(t, dbs[k], &cur) != ZT_OK) continue;
        for (int r = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv); r == ZT_OK;
             r = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
            /* most accounts (citizens, enterprises) hold no role: not parsed (a record is
             * JSON without spaces; a quote inside a string is escaped, so this is the key) */
            if (k == 1 && memmem(kv.val, kv.vlen, "\"roles\":[]", 10)) continue;
            cJSON *v = cJSON_ParseWithLength(kv.val, kv.vlen);
            if (k == 0) {
                char name[65];
                snprintf(name, sizeof name, "%.*s", (int)(kv.klen < 64 ? kv.klen : 64),
                         (const char *)kv.key);
                /* custom, or declared at the last start (offline: no plugin runs) */
                if (!row_find(list, name)) row_for(list, name, v, NULL);
            } else if (k == 1) {
                const cJSON *roles = cJSON_GetObjectItemCaseSensitive(v, "roles");
                for (const cJSON *x = cJSON_IsArray(roles) ? roles->child : NULL; x; x = x->next)
                    if (cJSON_IsString(x)) row_count(list, x->valuestring, "accounts");
            } else {
                const char *role = zt__jstr(v, "role");
                if (role && strcmp(role, ZT_ROLE_USER) != 0) row_count(list, role, "keys");
            }
            cJSON_Delete(v);
        }
        zt_cursor_close(cur);
    }
    /* sorted by name */
    size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
    cJSON **v = n ? malloc(n * sizeof *v) : NULL;
    if (v) {
        for (cJSON *o = list->child; o; o = o->next) v[i++] = o;
        qsort(v, n, sizeof *v, by_name);
        cJSON *sorted = cJSON_CreateArray();
        while (list->child) cJSON_DetachItemViaPointer(list, list->child);
        cJSON_Delete(list);
        for (i = 0; i < n; i++) cJSON_AddItemToArray(sorted, v[i]);
        list = sorted;
        free(v);
    }
    return list;
}

static int h_list(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "roles", roles_list(srv, t));
    int rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

#define ROLE_NAME_RULE "1 to 64 of a-z 0-9 _ . - from a letter"

/* Why name cannot be added as a custom role in t, or NULL. *status: 422 or 409. */
static const char *add_problem(zt_server *srv, zt_txn *t, const char *name, const char *desc,
                               int *status, char *buf, size_t cap)
{
    *status = 422;
    if (!name || !zt__role_name_ok(name)) return "name: a role name (" ROLE_NAME_RULE ")";
    if (strcmp(name, ZT_ROLE_PUBLIC) == 0 || strcmp(name, ZT_ROLE_USER) == 0)
        return "name: 'public' and 'user' are not roles one is given (everyone, and every "
               "signed-in caller)";
    const char *why = desc ? zt_text_problem(desc, 200, 0) : "is missing";
    if (why) {
        snprintf(buf, cap,
                 "description: what the role lets its holders do, text of 1 to 200 "
                 "characters (this one %s)",
                 why);
        return buf;
    }
    *status = 409;
    const role_decl *d = find(srv->roles, name);
    if (d) {
        snprintf(buf, cap, "the role '%s' is declared by %s", name, d->from);
        return buf;
    }
    if (zt__role_known(srv, t, name)) {
        snprintf(buf, cap, "the role '%s' exists", name);
        return buf;
    }
    return NULL;
}

static int role_put(zt_server *srv, zt_txn *t, const char *name, const char *desc, const char *by)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "description", desc);
    cJSON_AddStringToObject(o, "from", CUSTOM);
    cJSON_AddStringToObject(o, "created_by", by);
    cJSON_AddNumberToObject(o, "created_at", (double)zt_now_ms());
    int rc = zt__db_put_json(t, srv->roles->db, name, strlen(name), o);
    cJSON_Delete(o);
    return rc;
}

static int h_add(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    cJSON *j = zt_req_object(req);
    if (!j) return ZT_OK;
    for (const cJSON *e = j->child; e; e = e->next)
        if (strcmp(e->string, "name") != 0 && strcmp(e->string, "description") != 0)
            return zt_problem(req, 422, "invalid-role", NULL,
                              "send {\"name\": …, \"description\": …} (not '%s')", e->string);
    const char *name = zt__jstr(j, "name"), *desc = zt__jstr(j, "description");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    char buf[512];
    int status;
    const char *why = add_problem(srv, t, name, desc, &status, buf, sizeof buf);
    if (why)
        return zt_problem(req, status, status == 409 ? "role-exists" : "invalid-role", NULL, "%s",
                          why);
    const zt_caller *c = zt_req_caller(req);
    int rc = role_put(srv, t, name, desc, c && c->login ? c->login : "?");
    if (rc != ZT_OK) return rc;
    zt_audit_note(req, "add role", name);
    cJSON *o = zt__db_get_json(t, srv->roles->db, name, strlen(name));
    if (!o) return ZT_EIO;
    cJSON_AddStringToObject(o, "name", name);
    rc = zt_respond_json(req, 201, o);
    cJSON_Delete(o);
    return rc;
}

/* Remove the custom role name in t: NULL, or why not (*status 404 or 409). */
static const char *remove_problem(zt_server *srv, zt_txn *t, const char *name, int *status,
                                  char *buf, size_t cap)
{
    cJSON *v = zt__db_get_json(t, srv->roles->db, name, strlen(name));
    const char *from = zt__jstr(v, "from");
    const role_decl *d = find(srv->roles, name);
    *status = 409;
    if (d)
        snprintf(buf, cap, "the role '%s' is declared by %s%s", name, d->from,
                 strcmp(d->from, "core") == 0 ? "" : ": it is a role while that plugin is enabled");
    else if (!from || strcmp(from, CUSTOM) != 0)
        *status = 404, snprintf(buf, cap, "no role '%s' was added here", name);
    cJSON_Delete(v);
    if (d || *status == 404) return buf;
    cJSON *list = roles_list(srv, t), *row = row_find(list, name);
    double accounts = row ? cJSON_GetObjectItemCaseSensitive(row, "accounts")->valuedouble : 0,
           keys = row ? cJSON_GetObjectItemCaseSensitive(row, "keys")->valuedouble : 0;
    cJSON_Delete(list);
    if (accounts || keys) {
        snprintf(buf, cap,
                 "the role '%s' is held by %.0f accounts and %.0f API keys: take it from them "
                 "first (GET /admin/users)",
                 name, accounts, keys);
        return buf;
    }
    return NULL;
}

static int h_remove(zt_req *req, void *ud)
{
    zt_server *srv = ud;
    const char *name = zt_req_param(req, "name");
    zt_txn *t = zt_req_txn(req);
    if (!t) return ZT_EIO;
    char buf[512];
    int status;
    const char *why = remove_problem(srv, t, name, &status, buf, sizeof buf);
    if (why)
        return zt_problem(req, status, status == 404 ? "not-found" : "role-in-use", NULL, "%s",
                          why);
    int rc = zt_del(t, srv->roles->db, name, strlen(name));
    if (rc != ZT_OK) return rc;
    zt_audit_note(req, "remove role", name);
    return zt_respond(req, 204, NULL, NULL, 0);
}

/* ---- the command line ------------------------------------------------------------- */

int zt__roles_cli_list(zt_server *srv, zt_txn *t, FILE *out)
{
    cJSON *list = roles_list(srv, t);
    fprintf(out, "%-24s %-10s %8s %5s  %s\n", "ROLE", "FROM", "ACCOUNTS", "KEYS", "DESCRIPTION");
    for (const cJSON *o = list->child; o; o = o->next) {
        const char *from = zt__jstr(o, "from"), *desc = zt__jstr(o, "description");
        fprintf(out, "%-24s %-10s %8.0f %5.0f  %s\n", zt__jstr(o, "name"), from ? from : "(none)",
                cJSON_GetObjectItemCaseSensitive(o, "accounts")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(o, "keys")->valuedouble,
                desc   ? desc
                : from ? "-"
                       : "(held, but no enabled plugin declares it)");
    }
    cJSON_Delete(list);
    return ZT_OK;
}

int zt__roles_cli(zt_server *srv, zt_txn *t, int argc, char **argv, FILE *out, char *err,
                  size_t errlen)
{
    char buf[512];
    int status;
    const char *why = NULL;
    int rc = ZT_OK;
    if (argc == 4 && strcmp(argv[1], "add") == 0) {
        if ((why = add_problem(srv, t, argv[2], argv[3], &status, buf, sizeof buf)) == NULL) {
            char by[80];
            snprintf(by, sizeof by, "cli:%s", zt__cli_user());
            if ((rc = role_put(srv, t, argv[2], argv[3], by)) == ZT_OK)
                fprintf(out, "role %s added\n", argv[2]);
        }
    } else if (argc == 3 && strcmp(argv[1], "remove") == 0) {
        if ((why = remove_problem(srv, t, argv[2], &status, buf, sizeof buf)) == NULL &&
            (rc = zt_del(t, srv->roles->db, argv[2], strlen(argv[2]))) == ZT_OK)
            fprintf(out, "role %s removed\n", argv[2]);
    } else {
        snprintf(err, errlen, "usage: zhengtong admin role add NAME DESCRIPTION | remove NAME");
        return ZT_EINVAL;
    }
    if (why) {
        snprintf(err, errlen, "%s", why);
        return status == 404 ? ZT_ENOTFOUND : status == 409 ? ZT_EEXIST : ZT_EINVAL;
    }
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------- */

int zt__roles_open(zt_server *srv, char *err, size_t errlen)
{
    zt_roles *rs = calloc(1, sizeof *rs);
    if (!rs) return ZT_ENOMEM;
    srv->roles = rs;
    int rc;
    if ((rc = zt__store_db(srv->store, "_core", "roles", &rs->db)) ||
        (rc = zt__store_db(srv->store, "_core", "users", &rs->users)) ||
        (rc = zt__store_db(srv->store, "_core", "api_keys", &rs->keys))) {
        snprintf(err, errlen, "cannot open the roles: %s", zt_strerror(rc));
        return rc;
    }
    static const char *const core[][2] = {
        {"admin", "County IT: accounts, departments, roles and API keys"},
        {"auditor", "Reads and verifies the audit log (GET /audit)"},
        {"seal_officer", "Seals documents with the seal of their department"},
    };
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        if ((rc = zt__roles_declare(srv, "core", core[i][0], core[i][1])) != ZT_OK) return rc;
    const zt_route routes[] = {
        {.method = "GET",
         .path = "/admin/roles",
         .handler = h_list,
         .summary = "Roles: declared by the core and the plugins, or added here; who holds them"},
        {.method = "POST",
         .path = "/admin/roles",
         .handler = h_add,
         .summary = "Add a role of your own (one a script computes)"},
        {.method = "DELETE",
         .path = "/admin/roles/:name",
         .handler = h_remove,
         .summary = "Remove a role added here that no one holds"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        zt_route r = routes[i];
        r.ud = srv, r.role = "admin", r.body_limit = 4096;
        if ((rc = zt__router_add(srv->router, NULL, &r, err, errlen)) != ZT_OK) return rc;
    }
    return ZT_OK;
}

void zt__roles_close(zt_server *srv)
{
    zt_roles *rs = srv->roles;
    if (!rs) return;
    for (size_t i = 0; i < rs->n; i++)
        free(rs->v[i].name), free(rs->v[i].description), free(rs->v[i].from);
    free(rs->v);
    free(rs);
    srv->roles = NULL;
}
