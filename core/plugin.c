/* plugin.c: the plugin host: finds, loads, orders, starts and stops the configured plugins. */
#include "core.h"

#include <assert.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * Ownership: everything a zt_plugin points to is malloc'd and freed by zt__plugins_free,
 * except what lives in a C plugin's own image (its descriptor and the strings of its
 * option declarations, valid until dlclose). For a Lua plugin, zt__lua_manifest fills
 * version, description, requires and options with malloc'd memory, the strings inside
 * p->options included.
 */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int dup_into(char **dst, const char *s)
{
    *dst = NULL;
    if (!s) return ZT_OK;
    return (*dst = strdup(s)) ? ZT_OK : ZT_ENOMEM;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int zt__dup_names(const char *const *names, char ***out, size_t *n)
{
    size_t count = 0;
    while (names && names[count]) count++;
    /* NULL-terminated too, as a manifest's lists always were */
    if (count && !(*out = calloc(count + 1, sizeof **out))) return ZT_ENOMEM;
    for (; *n < count; ++*n)
        if (dup_into(&(*out)[*n], names[*n])) return ZT_ENOMEM;
    return ZT_OK;
}

static void plugin_free(zt_plugin *p)
{
    if (!p) return;
    assert(p->state != ZT_PSTATE_RUNNING);
    zt__optvals_free(p->opts, p->nopts);
    if (p->kind == ZT_PLUGIN_LUA && p->options) {
        for (size_t i = 0; i < p->noptions; i++) {
            free((char *)p->options[i].name);
            free((char *)p->options[i].def);
            free((char *)p->options[i].description);
        }
    }
    free(p->options);
    free_names(p->requires, p->nrequires);
    free_names(p->needs, p->nneeds);
    free_names(p->wants, p->nwants);
    free(p->version);
    free(p->description);
    free(p->path);
    free(p->init_error);
    free(p->name);
    if (p->dl) dlclose(p->dl);
    free(p);
}

/* Copy what the descriptor declares; the option declarations stay in the plugin's image. */
static int copy_descriptor(zt_plugin *p, const zt_plugin_def *def)
{
    if (dup_into(&p->version, def->version) || dup_into(&p->description, def->description))
        return ZT_ENOMEM;
    if (zt__dup_names(def->requires, &p->requires, &p->nrequires) ||
        zt__dup_names(def->needs, &p->needs, &p->nneeds) ||
        zt__dup_names(def->wants, &p->wants, &p->nwants))
        return ZT_ENOMEM;
    size_t n = 0;
    while (def->options && def->options[n].name) n++;
    if (n) {
        if (!(p->options = calloc(n, sizeof *p->options))) return ZT_ENOMEM;
        memcpy(p->options, def->options, n * sizeof *p->options);
        p->noptions = n;
    }
    return ZT_OK;
}

/* Service names in a C plugin's needs and wants (a manifest's are checked as it is read,
 * where the error can name their line). */
static int check_services(const zt_plugin *p, char *err, size_t errlen)
{
    for (int w = 0; w < 2; w++) {
        char **names = w ? p->wants : p->needs;
        size_t n = w ? p->nwants : p->nneeds;
        for (size_t i = 0; i < n; i++) {
            if (zt__service_name_ok(names[i])) continue;
            snprintf(err, errlen,
                     "plugin '%s' (%s) %s service '%s': a service name is 1..64 bytes of "
                     "[A-Za-z0-9_.-]",
                     p->name, p->path, w ? "wants" : "needs", names[i]);
            return ZT_EINVAL;
        }
    }
    return ZT_OK;
}

/* abi_minor is read from descriptors made before it, in what was their padding */
_Static_assert(offsetof(zt_plugin_def, abi_minor) == sizeof(int) &&
                   offsetof(zt_plugin_def, name) == sizeof(void *),
               "abi_minor must sit in the padding between abi and name (an LP64 platform)");

/* Whether this node can load a plugin built for the descriptor's ABI. Only abi and
 * abi_minor are read: nothing else in a descriptor of another ABI can be trusted. */
static int check_abi(const zt_plugin *p, const zt_plugin_def *def, char *err, size_t errlen)
{
    if (def->abi != ZT_ABI_VERSION) {
        snprintf(err, errlen,
                 "plugin '%s' (%s) was built for plugin ABI %d; this zhengtong has ABI %d: "
                 "rebuild it",
                 p->name, p->path, def->abi, ZT_ABI_VERSION);
        return ZT_EINVAL;
    }
    if (def->abi_minor > ZT_ABI_MINOR) {
        snprintf(err, errlen,
                 "plugin '%s' (%s) was built for zhengtong plugin ABI %d.%d; this node has "
                 "%d.%d: upgrade the node",
                 p->name, p->path, def->abi, def->abi_minor, ZT_ABI_VERSION, ZT_ABI_MINOR);
        return ZT_EINVAL;
    }
    return ZT_OK;
}

/* dlopen found a symbol missing (why: its words). Opened again with lazy binding (a
 * missing function is looked up at its first call, which never comes), the plugin's
 * descriptor says whether it was built for another ABI or a later minor: then err says
 * that, as it would had every function been there. */
static int cannot_link(zt_plugin *p, const char *why, char *err, size_t errlen)
{
    void *dl = dlopen(p->path, RTLD_LAZY | RTLD_LOCAL);
    const zt_plugin_def *def = dl ? dlsym(dl, "zt_plugin_descriptor") : NULL;
    int rc = def ? check_abi(p, def, err, errlen) : ZT_OK;
    int minor = def ? def->abi_minor : 0;
    if (dl) dlclose(dl);
    if (rc != ZT_OK) return rc;
    char hint[200] = "";
    if (strstr(why, "undefined symbol: zt_") && def) /* a function no zt.h declared */
        snprintf(hint, sizeof hint,
                 " (it was built for plugin ABI %d.%d, all of which this node (%d.%d) has: "
                 "zt.h declares no such function)",
                 ZT_ABI_VERSION, minor, ZT_ABI_VERSION, ZT_ABI_MINOR);
    else if (strstr(why, "undefined symbol: zt_")) /* unread: linked with -z now, say */
        snprintf(hint, sizeof hint,
                 " (if the plugin was built against a later zt.h than this node's, plugin ABI "
                 "%d.%d, upgrade the node)",
                 ZT_ABI_VERSION, ZT_ABI_MINOR);
    snprintf(err, errlen, "plugin '%s' (%s) cannot be loaded: %s%s", p->name, p->path, why, hint);
    return ZT_EINVAL;
}

static int load_c(zt_plugin *p, char *err, size_t errlen)
{
    p->kind = ZT_PLUGIN_C;
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        char why[ZT_ERRLEN / 2];
        snprintf(why, sizeof why, "%s", dlerror());
        if (strstr(why, "undefined symbol")) return cannot_link(p, why, err, errlen);
        snprintf(err, errlen, "plugin '%s' (%s) cannot be loaded: %s", p->name, p->path, why);
        return ZT_EINVAL;
    }
    const zt_plugin_def *def = dlsym(p->dl, "zt_plugin_descriptor");
    if (!def) {
        snprintf(err, errlen,
                 "plugin '%s' (%s) exports no zt_plugin_descriptor: declare it with ZT_PLUGIN()",
                 p->name, p->path);
        return ZT_EINVAL;
    }
    int rc = check_abi(p, def, err, errlen);
    if (rc != ZT_OK) return rc;
    if (!def->name || strcmp(def->name, p->name) != 0) {
        snprintf(err, errlen,
                 "plugin '%s' (%s) calls itself '%s': its descriptor's name must be its file "
                 "name",
                 p->name, p->path, def->name ? def->name : "(null)");
        return ZT_EINVAL;
    }
    if (!def->init) {
        snprintf(err, errlen, "plugin '%s' (%s) has no init function", p->name, p->path);
        return ZT_EINVAL;
    }
    p->def = def;
    if (copy_descriptor(p, def)) {
        snprintf(err, errlen, "plugin '%s': out of memory", p->name);
        return ZT_ENOMEM;
    }
    return check_services(p, err, errlen);
}

static int load_one(zt_server *srv, const zt_conf_plugin *cp, zt_plugin **out, char *err,
                    size_t errlen)
{
    const zt_conf *conf = srv->conf;
    zt_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(cp->name))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return ZT_ENOMEM;
    }
    *out = p;
    p->srv = srv;
    p->state = ZT_PSTATE_LOADED;
    zt_buf so = {0}, manifest = {0};
    int rc = ZT_ENOMEM;
    if (zt__buf_printf(&so, "%s/%s.so", conf->plugin_dir, cp->name) ||
        zt__buf_printf(&manifest, "%s/plugins/%s/manifest.lua", conf->lua_dir, cp->name)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (is_file(so.data)) {
        p->path = so.data;
        so.data = NULL;
        rc = load_c(p, err, errlen);
    } else if (is_file(manifest.data)) {
        p->kind = ZT_PLUGIN_LUA;
        if (!(p->path = strndup(manifest.data, manifest.len - strlen("/manifest.lua")))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        err[0] = 0;
        rc = zt__lua_manifest(srv, p, err, errlen);
        if (rc != ZT_OK && !err[0])
            snprintf(err, errlen, "plugin '%s': cannot read %s: %s", cp->name, manifest.data,
                     zt_strerror(rc));
    } else {
        snprintf(err, errlen, "%s:%d: unknown plugin '%s' (no %s.so in %s, no %s)", conf->file,
                 cp->line, cp->name, cp->name, conf->plugin_dir, manifest.data);
        rc = ZT_ENOTFOUND;
    }
out:
    zt__buf_free(&so);
    zt__buf_free(&manifest);
    return rc;
}

static int index_of(zt_plugin **list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i]->name, name) == 0) return (int)i;
    return -1;
}

static int check_requires(const zt_conf *conf, zt_plugin **list, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < list[i]->nrequires; j++) {
            if (index_of(list, n, list[i]->requires[j]) < 0) {
                snprintf(err, errlen, "%s:%d: plugin '%s' requires '%s', which is not in plugins",
                         conf->file, conf->plugins[i].line, list[i]->name, list[i]->requires[j]);
                return ZT_EINVAL;
            }
        }
    }
    return ZT_OK;
}

/* The first required plugin of list[i] not yet placed, or -1. */
static int unplaced_requirement(zt_plugin **list, size_t n, const bool *placed, size_t i)
{
    for (size_t j = 0; j < list[i]->nrequires; j++) {
        int r = index_of(list, n, list[i]->requires[j]);
        assert(r >= 0); /* check_requires ran */
        if (!placed[r]) return r;
    }
    return -1;
}

/* Every plugin after those it requires; at each step the first listed plugin whose
 * requirements are all placed, so that the order is the listed one wherever it can be. */
static int order(const zt_conf *conf, zt_plugin **list, size_t n, zt_plugin **out, char *err,
                 size_t errlen)
{
    bool *placed = calloc(n ? n : 1, sizeof *placed);
    int *seen = calloc(n ? n : 1, sizeof *seen);
    if (!placed || !seen) {
        free(placed);
        free(seen);
        snprintf(err, errlen, "out of memory");
        return ZT_ENOMEM;
    }
    int rc = ZT_OK;
    for (size_t k = 0; k < n && rc == ZT_OK; k++) {
        size_t i = 0;
        while (i < n && (placed[i] || unplaced_requirement(list, n, placed, i) >= 0)) i++;
        if (i < n) {
            placed[i] = true;
            out[k] = list[i];
            continue;
        }
        /* Every plugin left waits for another one left: walk the requirements from the
         * first of them until one comes round again. */
        size_t at = 0;
        while (placed[at]) at++;
        int step = 1;
        while (!seen[at]) {
            seen[at] = step++;
            at = (size_t)unplaced_requirement(list, n, placed, at);
        }
        zt_buf b = {0};
        int start = seen[at];
        zt__buf_printf(&b, "%s:%d: plugins require each other in a cycle: %s", conf->file,
                       conf->plugins[at].line, list[at]->name);
        size_t c = at;
        do {
            c = (size_t)unplaced_requirement(list, n, placed, c);
            zt__buf_printf(&b, " -> %s", list[c]->name);
        } while (seen[c] != start);
        snprintf(err, errlen, "%s", b.data ? b.data : "plugins require each other in a cycle");
        zt__buf_free(&b);
        rc = ZT_EINVAL;
    }
    free(placed);
    free(seen);
    return rc;
}

static int load_options(zt_conf *conf, zt_plugin *p, char *err, size_t errlen)
{
    /* a terminated copy: Lua plugins' declarations come as an array and a count */
    zt_option *decl = calloc(p->noptions + 1, sizeof *decl);
    if (!decl) {
        snprintf(err, errlen, "out of memory");
        return ZT_ENOMEM;
    }
    if (p->noptions) memcpy(decl, p->options, p->noptions * sizeof *decl);
    int rc = zt__conf_plugin_options(conf, p->name, decl, &p->opts, &p->nopts, err, errlen);
    free(decl);
    return rc;
}

/* ---- the plugin's databases ------------------------------------------------------- */

/* A database sealed at its first sealed open while it held records: the audit log says so,
 * with the count. Whoever deleted its mark to have changed records sealed leaves this. */
static int seal_noted(void *arg, zt_txn *t, const char *db, size_t count)
{
    zt_server *srv = arg;
    if (!srv->audit) return ZT_OK; /* a bare server (unit tests) keeps no audit log */
    char action[160];
    snprintf(action, sizeof action, "seal database %s: %zu", db, count);
    zt_audit_entry e = {.actor = "system", .plugin = "core", .action = action, .object = db};
    return zt__audit_append(srv, t, &e);
}

static int db_open(zt_plugin *p, const char *name, bool sealed, zt_db **out)
{
    if (!p || !name || !out) return ZT_EINVAL;
    *out = NULL;
    if (!p->in_init || !p->srv || !p->srv->store) return ZT_ESTATE;
    char err[300] = "";
    int rc = zt__store_db_as(p->srv->store, p->name, name, sealed, seal_noted, p->srv, out, err,
                             sizeof err);
    if (rc != ZT_OK && rc != ZT_EINVAL) zt_log(p, ZT_LOG_ERROR, "%s", err);
    return rc;
}

int zt_db_open(zt_plugin *p, const char *name, zt_db **out)
{
    return db_open(p, name, false, out);
}

int zt_db_open_sealed(zt_plugin *p, const char *name, zt_db **out)
{
    return db_open(p, name, true, out);
}

int zt__plugins_load(zt_server *srv, char *err, size_t errlen)
{
    zt_conf *conf = srv->conf;
    assert(!srv->plugins);
    size_t n = conf->nplugins;
    zt_plugin **list = calloc(n ? n : 1, sizeof *list);
    zt_plugin **ordered = calloc(n ? n : 1, sizeof *ordered);
    int rc = ZT_ENOMEM;
    if (!list || !ordered) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = load_one(srv, &conf->plugins[i], &list[i], err, errlen)) != ZT_OK) goto fail;
    if ((rc = check_requires(conf, list, n, err, errlen)) != ZT_OK) goto fail;
    if ((rc = order(conf, list, n, ordered, err, errlen)) != ZT_OK) goto fail;
    for (size_t i = 0; i < n; i++)
        if ((rc = load_options(conf, list[i], err, errlen)) != ZT_OK) goto fail;
    free(list);
    srv->plugins = ordered;
    srv->nplugins = n;
    return ZT_OK;

fail:
    for (size_t i = 0; list && i < n; i++) plugin_free(list[i]);
    free(list);
    free(ordered);
    return rc;
}

static void stop(zt_plugin *p)
{
    assert(p->state == ZT_PSTATE_RUNNING);
    if (p->kind == ZT_PLUGIN_C && p->def->fini) p->def->fini(p);
    zt__lua_fini(p); /* a Lua plugin's state, or a C plugin's zt_lua_new state after its fini */
    p->state = ZT_PSTATE_STOPPED;
}

void zt__refuse_start(zt_server *srv, const char *msg)
{
    if (!srv->route_error[0]) snprintf(srv->route_error, sizeof srv->route_error, "%s", msg);
}

int zt__plugins_init(zt_server *srv, char *err, size_t errlen)
{
    for (size_t i = 0; i < srv->nplugins; i++) {
        zt_plugin *p = srv->plugins[i];
        assert(p->state == ZT_PSTATE_LOADED);
        char why[ZT_ERRLEN] = "";
        p->in_init = true;
        int rc = p->kind == ZT_PLUGIN_C ? p->def->init(p) : zt__lua_init(srv, p, why, sizeof why);
        p->in_init = false;
        /* a route refused, or an option found wrong (zt_option_fail, zt.config_error),
         * during its init stops the start even if the plugin went on (Lua: caught it) */
        if (rc == ZT_OK && srv->route_error[0]) {
            snprintf(why, sizeof why, "%s", srv->route_error);
            rc = ZT_ECONFLICT;
        }
        if (rc == ZT_OK && p->init_error) rc = ZT_EINVAL;
        if (rc == ZT_OK) {
            p->state = ZT_PSTATE_RUNNING;
            continue;
        }
        if (!why[0] && srv->route_error[0]) /* the declaration it failed on */
            snprintf(why, sizeof why, "%s", srv->route_error);
        if (!why[0])
            snprintf(why, sizeof why, "init returned %d (%s); the log above says why", rc,
                     zt_strerror(rc));
        if (p->init_error) /* zt_option_fail: file:line first, as for the config's own */
            snprintf(err, errlen, "%s", p->init_error);
        else
            snprintf(err, errlen, "plugin '%s' failed to start: %s", p->name, why);
        p->state = ZT_PSTATE_FAILED;
        zt__lua_fini(p); /* a state its init made (zt_lua_new) before failing */
        while (i-- > 0) stop(srv->plugins[i]);
        return rc < 0 ? rc : ZT_ERROR;
    }
    return ZT_OK;
}

void zt__plugins_fini(zt_server *srv)
{
    for (size_t i = srv->nplugins; i-- > 0;)
        if (srv->plugins[i]->state == ZT_PSTATE_RUNNING) stop(srv->plugins[i]);
}

void zt__plugins_free(zt_server *srv)
{
    for (size_t i = 0; i < srv->nplugins; i++) plugin_free(srv->plugins[i]);
    free(srv->plugins);
    srv->plugins = NULL;
    srv->nplugins = 0;
}

/* ---- the public accessors ------------------------------------------------------- */

const char *zt_plugin_name(const zt_plugin *p)
{
    return p->name;
}

void zt_plugin_set_data(zt_plugin *p, void *data)
{
    p->data = data;
}

void *zt_plugin_data(const zt_plugin *p)
{
    return p->data;
}

int zt_check_only(const zt_plugin *p)
{
    return p->srv->check_only;
}

const char *zt_plugin_at(const zt_plugin *p, size_t i)
{
    const zt_server *srv = p->srv;
    return i < srv->nplugins ? srv->plugins[i]->name : NULL;
}

const char *zt_lua_dir(const zt_plugin *p)
{
    return p->srv->conf->lua_dir;
}

static const char *const type_names[] = {"?", "string", "int", "number", "bool", "list"};

/* The option's value, or NULL after logging the plugin's mistake. */
static const zt_optval *option(const zt_plugin *p, const char *name, int type)
{
    assert(type >= ZT_OPT_STRING && type <= ZT_OPT_LIST);
    for (size_t i = 0; name && i < p->nopts; i++) {
        const zt_optval *v = &p->opts[i];
        if (strcmp(v->name, name) != 0) continue;
        if (v->type == type) return v;
        zt_log(p, ZT_LOG_ERROR, "option '%s' is declared as %s but read as %s", name,
               v->type >= ZT_OPT_STRING && v->type <= ZT_OPT_LIST ? type_names[v->type] : "?",
               type_names[type]);
        return NULL;
    }
    zt_log(p, ZT_LOG_ERROR, "option '%s' is not declared by this plugin", name ? name : "(null)");
    return NULL;
}

int zt_option_fail(zt_plugin *p, const char *name, const char *fmt, ...)
{
    char msg[ZT_ERRLEN / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const zt_optval *v = NULL;
    for (size_t i = 0; i < p->nopts && !v; i++)
        if (p->opts[i].name && strcmp(p->opts[i].name, name) == 0) v = &p->opts[i];
    const zt_conf *c = p->srv ? p->srv->conf : NULL;
    char text[ZT_ERRLEN];
    if (v && c)
        snprintf(text, sizeof text, "%s:%d: %s.%s%s: %s", c->file, v->line, p->name, name,
                 v->from_config ? "" : " (its default)", msg);
    else
        snprintf(text, sizeof text, "plugin '%s', option '%s': %s", p->name, name, msg);
    zt_log(p, ZT_LOG_ERROR, "%s", text);
    if (!p->init_error) p->init_error = strdup(text); /* the first one says it */
    return ZT_EINVAL;
}

int zt_option_listen_apart(zt_plugin *p, const char *name, const char *addr)
{
    char what[256];
    if (!p->srv || !p->srv->conf || !zt__conf_port_taken(p->srv->conf, addr, what, sizeof what))
        return ZT_OK;
    return zt_option_fail(p, name,
                          "'%s' and %s are at the same port: the node would take it twice; give "
                          "%s.%s another port",
                          addr, what, p->name, name);
}

const char *zt_opt_string(const zt_plugin *p, const char *name)
{
    const zt_optval *v = option(p, name, ZT_OPT_STRING);
    return v && v->set ? v->s : NULL;
}

int64_t zt_opt_int(const zt_plugin *p, const char *name)
{
    const zt_optval *v = option(p, name, ZT_OPT_INT);
    return v && v->set ? v->i : 0;
}

double zt_opt_number(const zt_plugin *p, const char *name)
{
    const zt_optval *v = option(p, name, ZT_OPT_NUMBER);
    return v && v->set ? v->n : 0.0;
}

int zt_opt_bool(const zt_plugin *p, const char *name)
{
    const zt_optval *v = option(p, name, ZT_OPT_BOOL);
    return v && v->set && v->b;
}

size_t zt_opt_list_len(const zt_plugin *p, const char *name)
{
    const zt_optval *v = option(p, name, ZT_OPT_LIST);
    return v ? v->nlist : 0;
}

const char *zt_opt_list_item(const zt_plugin *p, const char *name, size_t i)
{
    const zt_optval *v = option(p, name, ZT_OPT_LIST);
    return v && i < v->nlist ? v->list[i] : NULL;
}
