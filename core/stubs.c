/* stubs.c: TEMPORARY weak stand-ins for functions still being written in parallel.
 * Each real definition overrides its stub; this file is deleted once all have landed. */
#include "core.h"

#define W __attribute__((weak))

/* config.c */
W int zt__conf_load(const char *path, zt_conf *c, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__conf_plugin_options(zt_conf *c, const char *plugin, const zt_option *decl, zt_optval **out, size_t *nout, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__conf_load_buffer(const char *name, const char *text, size_t len, zt_conf *c, char *err, size_t errlen) { return ZT_ERROR; }
W void zt__conf_free(zt_conf *c) {}
W void zt__optvals_free(zt_optval *v, size_t n) {}
/* store.c */
W int zt__store_open(zt_store **out, const char *dir, size_t map_size, char *err, size_t errlen) { return ZT_ERROR; }
W void zt__store_close(zt_store *s) {}
W int zt__store_db(zt_store *s, const char *plugin, const char *name, zt_db **out) { return ZT_ERROR; }
W int zt__store_read_begin(zt_store *s, zt_txn **out) { return ZT_ERROR; }
W int zt__store_batch_read_begin(zt_store *s, zt_txn **out) { return ZT_ERROR; }
W int zt__store_write_begin(zt_store *s, zt_txn **out) { return ZT_ERROR; }
W int zt__store_end(zt_store *s, zt_txn *t, bool commit) { return ZT_ERROR; }
W bool zt__store_in_batch(const zt_txn *t) { return false; }
W bool zt__store_batch_open(const zt_store *s) { return false; }
W int zt__store_batch_commit(zt_store *s) { return ZT_OK; }
W void zt__store_stats(zt_store *s, zt_store_stats *st) {}
W int zt__store_backup(const char *dir, const char *dest, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__store_errno(int mdb_rc) { return ZT_ERROR; }
W int zt_db_open(zt_plugin *p, const char *name, zt_db **out) { return ZT_ERROR; }
W int zt_txn_writable(const zt_txn *txn) { return 0; }
W int zt_get(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void **val, size_t *vlen) { return ZT_ERROR; }
W int zt_put(zt_txn *txn, zt_db *db, const void *key, size_t klen, const void *val, size_t vlen) { return ZT_ERROR; }
W int zt_del(zt_txn *txn, zt_db *db, const void *key, size_t klen) { return ZT_ERROR; }
W int zt_cursor_open(zt_txn *txn, zt_db *db, zt_cursor **out) { return ZT_ERROR; }
W int zt_cursor_seek(zt_cursor *c, int op, const void *key, size_t klen, zt_kv *out) { return ZT_ERROR; }
W int zt_cursor_del(zt_cursor *c) { return ZT_ERROR; }
W void zt_cursor_close(zt_cursor *c) {}
/* router.c */
/* plugin.c */
W int zt__plugins_load(zt_server *srv, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__plugins_init(zt_server *srv, char *err, size_t errlen) { return ZT_ERROR; }
W void zt__plugins_fini(zt_server *srv) {}
W void zt__plugins_free(zt_server *srv) {}
W const char *zt_plugin_name(const zt_plugin *p) { return p->name; }
W void zt_plugin_set_data(zt_plugin *p, void *data) { p->data = data; }
W void *zt_plugin_data(const zt_plugin *p) { return p->data; }
W const char *zt_opt_string(const zt_plugin *p, const char *name) { return NULL; }
W int64_t zt_opt_int(const zt_plugin *p, const char *name) { return 0; }
W double zt_opt_number(const zt_plugin *p, const char *name) { return 0; }
W int zt_opt_bool(const zt_plugin *p, const char *name) { return 0; }
W size_t zt_opt_list_len(const zt_plugin *p, const char *name) { return 0; }
W const char *zt_opt_list_item(const zt_plugin *p, const char *name, size_t i) { return NULL; }
/* lua_host.c */
W int zt__lua_manifest(zt_server *srv, zt_plugin *p, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__lua_init(zt_server *srv, zt_plugin *p, char *err, size_t errlen) { return ZT_ERROR; }
W void zt__lua_fini(zt_plugin *p) {}
W size_t zt__lua_memory(const zt_plugin *p) { return 0; }
/* http.c, static.c */
W int zt__http_listen(zt_server *srv, const char *addr, char *err, size_t errlen) { return ZT_ERROR; }
W void zt__http_stop_accepting(zt_server *srv) {}
W void zt__http_flush(zt_server *srv) {}
W void zt__http_close_all(zt_server *srv) {}
W void zt__http_ready(zt_req *req) {}
W unsigned zt__http_connections(const zt_server *srv) { return 0; }
W unsigned zt__http_inflight(const zt_server *srv) { return 0; }
W int zt__static_serve(zt_server *srv, zt_req *req) { return ZT_ENOTFOUND; }
/* server.c, request API */

