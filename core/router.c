/* router.c: method + path routing over a trie of path segments (":name" and a final "*"). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { M_GET, M_POST, M_PUT, M_PATCH, M_DELETE, M_COUNT };
static const char *const method_names[M_COUNT] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

typedef struct rnode {
    char *seg; /* literal segment of this node (NULL for the root, param and wild nodes) */
    size_t seglen;
    struct rnode **kids;
    size_t nkids;
    struct rnode *param; /* the ":name" child; names live in each route */
    struct rnode *wild;  /* the "*" child: matches the rest of the path */
    zt__route *by_method[M_COUNT];
} rnode;

struct zt_router {
    rnode root;
    zt__route **routes; /* in declaration order; owns them */
    size_t nroutes, cap;
};

static int method_index(const char *m)
{
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(m, method_names[i]) == 0) return i;
    if (strcmp(m, "HEAD") == 0) return M_GET;
    return -1;
}

int zt__router_new(zt_router **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? ZT_OK : ZT_ENOMEM;
}

static void node_free(rnode *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        node_free(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->seg);
    if (n->param) node_free(n->param), free(n->param);
    if (n->wild) node_free(n->wild), free(n->wild);
}

void zt__router_free(zt_router *r)
{
    if (!r) return;
    node_free(&r->root);
    for (size_t i = 0; i < r->nroutes; i++) {
        zt__route *rt = r->routes[i];
        free(rt->method);
        free(rt->pattern);
        free(rt->role);
        free(rt->summary);
        free(rt);
    }
    free(r->routes);
    free(r);
}

static rnode *child(rnode *n, const char *seg, size_t len, bool create)
{
    rnode **slot = NULL;
    if (len == 1 && seg[0] == '*') {
        slot = &n->wild;
    } else if (seg[0] == ':') {
        slot = &n->param;
    } else {
        for (size_t i = 0; i < n->nkids; i++)
            if (n->kids[i]->seglen == len && memcmp(n->kids[i]->seg, seg, len) == 0)
                return n->kids[i];
        if (!create) return NULL;
        rnode **kids = realloc(n->kids, (n->nkids + 1) * sizeof(*kids));
        if (!kids) return NULL;
        n->kids = kids;
        rnode *k = calloc(1, sizeof(*k));
        if (!k || !(k->seg = strndup(seg, len))) {
            free(k);
            return NULL;
        }
        k->seglen = len;
        n->kids[n->nkids++] = k;
        return k;
    }
    if (!*slot && create) *slot = calloc(1, sizeof(rnode));
    return *slot;
}

/* Checks the pattern's shape; err says what is wrong with it. */
static bool pattern_ok(const char *p, char *err, size_t errlen)
{
    if (p[0] != '/') {
        snprintf(err, errlen, "route path '%s' must start with '/'", p);
        return false;
    }
    if (strcmp(p, "/") == 0) return true;
    unsigned nparams = 0;
    const char *s = p + 1;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) {
            snprintf(err, errlen, "route path '%s' has an empty segment", p);
            return false;
        }
        if (s[0] == '*' && (len != 1 || e)) {
            snprintf(err, errlen, "route path '%s': '*' must be the whole last segment", p);
            return false;
        }
        if (s[0] == ':') {
            if (len == 1) {
                snprintf(err, errlen, "route path '%s': a ':' needs a name", p);
                return false;
            }
            for (size_t i = 1; i < len; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_')) {
                    snprintf(err, errlen, "route path '%s': bad parameter name", p);
                    return false;
                }
            }
        }
        if (s[0] == ':' || s[0] == '*') nparams++;
        for (size_t i = 0; i < len; i++)
            if (s[i] == '?' || s[i] == '#' || (unsigned char)s[i] < 0x20 ||
                (i > 0 && (s[i] == '*' || s[i] == ':'))) {
                snprintf(err, errlen, "route path '%s' has a character a path cannot hold", p);
                return false;
            }
        s += len + (e ? 1 : 0);
        if (e && !*s) {
            snprintf(err, errlen, "route path '%s' must not end with '/'", p);
            return false;
        }
    }
    if (nparams > ZT_MAX_PARAMS) {
        snprintf(err, errlen, "route path '%s' has more than %d parameters", p, ZT_MAX_PARAMS);
        return false;
    }
    return true;
}

int zt__router_add(zt_router *r, zt_plugin *owner, const zt_route *def, char *err, size_t errlen)
{
    const char *who = owner ? owner->name : "core";
    if (!def || !def->method || !def->path || !def->handler) {
        snprintf(err, errlen, "plugin '%s': a route needs a method, a path and a handler", who);
        return ZT_EINVAL;
    }
    int mi = method_index(def->method);
    if (mi < 0 || strcmp(def->method, "HEAD") == 0) {
        snprintf(err, errlen, "plugin '%s': unsupported method '%s' for %s", who, def->method,
                 def->path);
        return ZT_EINVAL;
    }
    char perr[256];
    if (!pattern_ok(def->path, perr, sizeof perr)) {
        snprintf(err, errlen, "plugin '%s': %s", who, perr);
        return ZT_EINVAL;
    }
    /* no account could be given it, so no one could ever call the route */
    if (def->role && !zt__role_name_ok(def->role)) {
        snprintf(err, errlen,
                 "plugin '%s': role '%s' of %s %s is no role name (\"public\", \"user\" or 1 "
                 "to 64 of a-z 0-9 _ . - from a letter)",
                 who, def->role, def->method, def->path);
        return ZT_EINVAL;
    }
    rnode *n = &r->root;
    const char *s = def->path + 1;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (!(n = child(n, s, len, true))) return ZT_ENOMEM;
        s += len + (e ? 1 : 0);
    }
    if (n->by_method[mi]) {
        const zt__route *old = n->by_method[mi];
        snprintf(err, errlen,
                 "route %s %s of plugin '%s' is already claimed by plugin '%s' (%s %s)",
                 def->method, def->path, who, old->plugin ? old->plugin->name : "core", old->method,
                 old->pattern);
        return ZT_ECONFLICT;
    }
    if (r->nroutes == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        zt__route **rs = realloc(r->routes, cap * sizeof(*rs));
        if (!rs) return ZT_ENOMEM;
        r->routes = rs;
        r->cap = cap;
    }
    zt__route *rt = calloc(1, sizeof(*rt));
    if (!rt) return ZT_ENOMEM;
    rt->method = strdup(method_names[mi]);
    rt->pattern = strdup(def->path);
    rt->role = strdup(def->role ? def->role : ZT_ROLE_USER);
    rt->summary = def->summary ? strdup(def->summary) : NULL;
    if (!rt->method || !rt->pattern || !rt->role || (def->summary && !rt->summary)) {
        free(rt->method), free(rt->pattern), free(rt->role), free(rt->summary), free(rt);
        return ZT_ENOMEM;
    }
    rt->handler = def->handler;
    rt->ud = def->ud;
    rt->body_limit = def->body_limit;
    rt->plugin = owner;
    rt->idx = (unsigned)r->nroutes;
    r->routes[r->nroutes++] = rt;
    n->by_method[mi] = rt;
    return ZT_OK;
}

typedef struct walk {
    const char *pval[ZT_MAX_PARAMS];
    size_t plen[ZT_MAX_PARAMS];
    unsigned n;
} walk;

/* Depth-first: a literal segment beats a parameter, which beats "*". */
static const rnode *find(const rnode *n, const char *s, walk *w)
{
    if (!*s) return n;
    const char *e = strchr(s, '/');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    const char *rest = e ? e + 1 : s + len;
    if (e && !*rest) return NULL; /* trailing slash: not the same resource */
    for (size_t i = 0; i < n->nkids; i++) {
        const rnode *k = n->kids[i];
        if (k->seglen == len && memcmp(k->seg, s, len) == 0) {
            const rnode *f = find(k, rest, w);
            if (f) return f;
            break;
        }
    }
    if (n->param && len > 0 && w->n < ZT_MAX_PARAMS) {
        unsigned mark = w->n;
        w->pval[w->n] = s;
        w->plen[w->n++] = len;
        const rnode *f = find(n->param, rest, w);
        if (f) return f;
        w->n = mark;
    }
    if (n->wild && w->n < ZT_MAX_PARAMS) {
        w->pval[w->n] = s;
        w->plen[w->n++] = strlen(s);
        return n->wild;
    }
    return NULL;
}

static bool has_routes(const rnode *n)
{
    for (int i = 0; i < M_COUNT; i++)
        if (n->by_method[i]) return true;
    return false;
}

int zt__router_match(const zt_router *r, const char *method, const char *path, zt_match *m)
{
    m->route = NULL;
    m->nparams = 0;
    m->allow[0] = 0;
    if (path[0] != '/') return ZT_ENOTFOUND;
    walk w;
    w.n = 0;
    const rnode *n = find(&r->root, path + 1, &w);
    if (!n || !has_routes(n)) return ZT_ENOTFOUND;
    int mi = method_index(method);
    const zt__route *rt = mi >= 0 ? n->by_method[mi] : NULL;
    if (!rt) {
        size_t off = 0;
        for (int i = 0; i < M_COUNT; i++) {
            if (!n->by_method[i]) continue;
            off += (size_t)snprintf(m->allow + off, sizeof m->allow - off, "%s%s", off ? ", " : "",
                                    method_names[i]);
            if (i == M_GET)
                off += (size_t)snprintf(m->allow + off, sizeof m->allow - off, ", HEAD");
        }
        return ZT_EPERM;
    }
    /* Parameter names come from the matched route's own pattern, in order. */
    m->route = rt;
    m->nparams = w.n;
    const char *s = rt->pattern;
    unsigned i = 0;
    while (*s && i < w.n) {
        if (s[0] == '/' && (s[1] == ':' || s[1] == '*')) {
            m->pname[i] = s + (s[1] == ':' ? 2 : 1);
            m->pval[i] = w.pval[i];
            m->plen[i] = w.plen[i];
            i++;
        }
        s++;
    }
    return ZT_OK;
}

size_t zt__router_count(const zt_router *r)
{
    return r->nroutes;
}

const zt__route *zt__router_at(const zt_router *r, size_t i)
{
    return i < r->nroutes ? r->routes[i] : NULL;
}

void zt__router_or_role(zt_router *r, const char *role)
{
    if (r->nroutes) r->routes[r->nroutes - 1]->or_role = role;
}

int zt_route_add(zt_plugin *p, const zt_route *def)
{
    if (!p || !p->in_init) {
        zt_log(p, ZT_LOG_ERROR, "zt_route_add outside init: routes are declared during init");
        return ZT_ESTATE;
    }
    char err[ZT_ERRLEN];
    int rc = zt__router_add(p->srv->router, p, def, err, sizeof err);
    if (rc != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "%s", err);
        /* A conflict or a bad route stops the start even if the plugin ignores rc. */
        zt__refuse_start(p->srv, err);
    }
    return rc;
}
