/* testutil.h: what several unit tests share: a temporary folder removed, an audited store. */
#ifndef ZT_TESTUTIL_H
#define ZT_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

/* Remove path and everything below it, not following links. 0 or -1. */
static inline int tu_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[4096];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub ||
            tu_rm_tree(sub) != 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(path) == 0 ? rc : -1;
}

/* What the audit log needs under srv (its conf set), over a new store in dir: the store,
 * the router, keys in dir/keys, seals and the audit log itself. */
static inline void tu_audit_open(zt_server *srv, const char *dir)
{
    char err[ZT_ERRLEN], key[128];
    assert_int_equal(zt__store_open(&srv->store, dir, 64 << 20, err, sizeof err), ZT_OK);
    assert_int_equal(zt__router_new(&srv->router), ZT_OK);
    snprintf(key, sizeof key, "%s/keys/master.key", dir);
    assert_int_equal(zt__keys_open(key, &srv->keys, err, sizeof err), ZT_OK);
    assert_int_equal(zt__seals_open(srv, err, sizeof err), ZT_OK);
    assert_int_equal(zt__audit_open(srv, err, sizeof err), ZT_OK);
}

/* Close what tu_audit_open opened, in the reverse order. */
static inline void tu_audit_close(zt_server *srv)
{
    zt__audit_close(srv);
    zt__seals_close(srv);
    zt__keys_close(srv->keys);
    zt__router_free(srv->router);
    zt__store_close(srv->store);
}

#endif
