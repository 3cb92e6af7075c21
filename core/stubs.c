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
W int zt__router_new(zt_router **out) { return ZT_ERROR; }
W void zt__router_free(zt_router *r) {}
W int zt__router_add(zt_router *r, zt_plugin *owner, const zt_route *def, char *err, size_t errlen) { return ZT_ERROR; }
W int zt__router_match(const zt_router *r, const char *method, const char *path, zt_match *m) { return ZT_ENOTFOUND; }
W size_t zt__router_count(const zt_router *r) { return 0; }
W const zt__route *zt__router_at(const zt_router *r, size_t i) { return NULL; }
W int zt_route_add(zt_plugin *p, const zt_route *r) { return ZT_ERROR; }
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
W size_t zt__server_route(zt_server *srv, zt_req *req) { return 0; }
W void zt__server_handle(zt_server *srv, zt_req *req) {}
W void zt__server_done(zt_server *srv, zt_req *req) {}
W void zt__problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...) {}
W int zt__metrics_new(zt_metrics **out, size_t nroutes) { return ZT_ERROR; }
W void zt__metrics_free(zt_metrics *m) {}
W void zt__metrics_request(zt_metrics *m, int route_idx, int status, uint64_t ns) {}
W int zt__metrics_render(zt_server *srv, zt_buf *out) { return ZT_ERROR; }
W const char *zt_req_method(const zt_req *req) { return req->method; }
W const char *zt_req_path(const zt_req *req) { return req->path; }
W const char *zt_req_param(const zt_req *req, const char *name) { return NULL; }
W const char *zt_req_query(const zt_req *req, const char *name) { return NULL; }
W const char *zt_req_header(const zt_req *req, const char *name) { return NULL; }
W const char *zt_req_body(const zt_req *req, size_t *len) { *len = req->body.len; return req->body.data ? req->body.data : ""; }
W const char *zt_req_id(const zt_req *req) { return req->id; }
W const char *zt_req_client(const zt_req *req) { return "127.0.0.1"; }
W int zt_req_json(zt_req *req, cJSON **out) { return ZT_ERROR; }
W void *zt_req_alloc(zt_req *req, size_t size) { return zt__arena_alloc(&req->arena, size); }
W char *zt_req_printf(zt_req *req, const char *fmt, ...) { return NULL; }
W int zt_res_header(zt_req *req, const char *name, const char *value) { return ZT_ERROR; }
W int zt_respond(zt_req *req, int status, const char *ctype, const void *body, size_t len) { return ZT_ERROR; }
W int zt_respond_json(zt_req *req, int status, const cJSON *json) { return ZT_ERROR; }
W int zt_problem(zt_req *req, int status, const char *type, const char *title, const char *fmt, ...) { return ZT_ERROR; }
W zt_txn *zt_req_txn(zt_req *req) { return NULL; }
