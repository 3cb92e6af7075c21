/* static.c: files from the web folder: content types, ETag and If-None-Match, no way out. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file is read whole into the response. Larger ones would need http.c to stream from
 * the file descriptor: a limit to lift when the web pages need it. */
#define STATIC_MAX ((off_t)64 << 20)

static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "text/xml; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
};

static const char *content_type(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* No ".." segment, no backslash (a Windows separator some tools still honour). The
 * decoded path cannot hold a NUL: zt__pct_decode refuses %00. */
static bool path_safe(const char *path)
{
    if (strchr(path, '\\')) return false;
    for (const char *s = path; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return false;
        s += n;
        if (*s == '/') s++;
    }
    return true;
}

/* realpath(web_dir), kept while web_dir stays the same string. */
static const char *web_root(const char *dir)
{
    static char *root, *root_of;
    if (root_of && strcmp(root_of, dir) == 0) return root;
    char *r = realpath(dir, NULL);
    char *o = strdup(dir);
    if (!r || !o) {
        free(r);
        free(o);
        return NULL;
    }
    free(root);
    free(root_of);
    root = r;
    root_of = o;
    return root;
}

/* If-None-Match: a list of entity tags, or "*"; weak comparison (W/ ignored). */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        if (*p == '*') return true;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') { /* not a tag: skip this element */
            while (*p && *p != ',') p++;
            continue;
        }
        const char *q = strchr(p + 1, '"');
        if (!q) return false;
        if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0) return true;
        p = q + 1;
    }
    return false;
}

/* A folder asked for without its slash: send the client to the slash form, so that the
 * index page's relative links resolve inside the folder. */
static int redirect_to_folder(zt_req *req)
{
    const char *t = req->target;
    size_t n = strcspn(t, "?#");
    while (n > 1 && t[0] == '/' && t[1] == '/') t++, n--; /* never "//host": off-site */
    char *loc = zt_req_printf(req, "%.*s/%s%s", (int)n, t, req->query ? "?" : "",
                              req->query ? req->query : "");
    if (!loc) return ZT_ENOMEM;
    int rc = zt_res_header(req, "Location", loc);
    if (rc == ZT_OK) rc = zt_respond(req, 301, NULL, NULL, 0);
    return rc;
}

static int read_all(int fd, char *buf, size_t size)
{
    size_t got = 0;
    errno = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return ZT_EIO; /* an error, or the file shrank under us */
        got += (size_t)n;
    }
    return ZT_OK;
}

int zt__static_serve(zt_server *srv, zt_req *req)
{
    const char *dir = srv->conf ? srv->conf->web_dir : NULL;
    const char *path = req->path;
    if (!dir || !dir[0] || !path || path[0] != '/') return ZT_ENOTFOUND;
    if (!zt__req_reads(req)) return ZT_ENOTFOUND;
    if (req->responded) return ZT_ESTATE;
    if (!path_safe(path)) return ZT_ENOTFOUND;
    const char *root = web_root(dir);
    if (!root) {
        zt_req_log(req, ZT_LOG_WARN, "web_dir %s: %s", dir, strerror(errno));
        return ZT_ENOTFOUND;
    }
    size_t plen = strlen(path);
    bool folder = path[plen - 1] == '/';
    char *full = zt_req_printf(req, "%s%s%s", root, path, folder ? "index.html" : "");
    if (!full) return ZT_ENOMEM;

    struct stat st;
    if (stat(full, &st) != 0) return ZT_ENOTFOUND;
    if (S_ISDIR(st.st_mode)) return folder ? ZT_ENOTFOUND : redirect_to_folder(req);
    if (!S_ISREG(st.st_mode)) return ZT_ENOTFOUND;

    /* Symbolic links may point anywhere inside the folder, and nowhere outside it. */
    char *real = realpath(full, NULL);
    if (!real) return ZT_ENOTFOUND;
    size_t rlen = strlen(root);
    bool inside = strncmp(real, root, rlen) == 0 && (real[rlen] == '/' || root[rlen - 1] == '/');
    if (!inside) {
        free(real);
        return ZT_ENOTFOUND;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    free(real);
    if (fd < 0) {
        if (errno == EACCES)
            return zt_problem(req, 403, "forbidden", NULL, "%s may not be read", path);
        return ZT_ENOTFOUND;
    }
    int rc = ZT_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ZT_ENOTFOUND;
        goto out;
    }
    if (st.st_size > STATIC_MAX) {
        zt__problem(req, 500, "too-large-to-serve", "File too large to serve",
                    "%s is %lld bytes; static files of up to 64 MiB are served", path,
                    (long long)st.st_size);
        goto out;
    }
    unsigned long long mtime_ns = (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                                  (unsigned long long)st.st_mtim.tv_nsec;
    char etag[48];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size, mtime_ns);
    /* no-cache: browsers keep the file but ask each time; the ETag makes that cheap. (The
     * core says nosniff on every answer: a file is what its extension says.) A page is
     * shown in no other site's frame (clickjacking): CSP for browsers now, X-Frame-Options
     * for older ones. */
    const char *ctype = content_type(full);
    bool page = strncmp(ctype, "text/html", 9) == 0;
    if ((rc = zt_res_header(req, "ETag", etag)) != ZT_OK ||
        (rc = zt_res_header(req, "Cache-Control", "no-cache")) != ZT_OK ||
        (page &&
         (rc = zt_res_header(req, "Content-Security-Policy", "frame-ancestors 'none'")) != ZT_OK) ||
        (page && (rc = zt_res_header(req, "X-Frame-Options", "DENY")) != ZT_OK))
        goto out;
    const char *inm = zt_req_header(req, "If-None-Match");
    if (inm && etag_matches(inm, etag)) {
        rc = zt_respond(req, 304, NULL, NULL, 0);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    char *body = NULL;
    if (!req->head && size) {
        if (!(body = malloc(size))) {
            zt__problem(req, 503, "service-unavailable", NULL,
                        "the node is out of memory for %s; try again", path);
            goto out;
        }
        if (read_all(fd, body, size) != ZT_OK) {
            free(body);
            zt_req_log(req, ZT_LOG_ERROR, "reading %s: %s", full,
                       errno ? strerror(errno) : "the file shrank while read");
            zt__problem(req, 500, "internal-error", NULL,
                        "%s could not be read; the log has request id %s", path, req->id);
            goto out;
        }
    }
    /* The body is handed over rather than copied by zt_respond. For HEAD, res_body stays
     * NULL and res_len is the length the client would get (http.c sends it as is). */
    free(req->res_body);
    req->res_body = body;
    req->res_len = size;
    req->res_ctype = ctype;
    req->status = 200;
    req->responded = true;
out:
    close(fd);
    return rc;
}
