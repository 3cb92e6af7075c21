/* sensor.h: what the sensor plugin's files share: its state, the stored forms, helpers. */
#ifndef SENSOR_H
#define SENSOR_H

#include <zt.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lp.h"

#define SN_ADMIN_ROLE    "sensor_admin"
#define SN_DEVICE_ROLE   "sensor_device"
#define SN_RULES_DEFAULT "sensor/rules.lua" /* may be absent: then no rules */
#define SN_MAX_STRING    4096               /* longest string value kept */
#define SN_KEY_MAX       500  /* longest series key (LMDB keys are at most 511 bytes) */
#define SN_RET_SLOTS     1024 /* streams whose retention was checked lately (hashed by id) */

typedef struct sn_mqtt sn_mqtt;
typedef struct sn_gw sn_gw;
typedef struct sn_rules sn_rules;

typedef struct sn {
    zt_plugin *p;
    zt_db *things;  /* thing id (zt_id) → JSON */
    zt_db *streams; /* stream id (4 bytes BE) → JSON */
    zt_db *series;  /* series key (see sn_series_key) → stream id (4 bytes BE) */
    zt_db *acl;     /* stream id → retention days (4 bytes BE), then writer ids, 26 bytes each */
    zt_db *obs;     /* stream id, time (sn_obs_key) → value (sn_val_encode) */
    zt_db *meta;    /* "next_stream" → 4 bytes BE */
    zt_db *alerts;  /* alert id (zt_id) → JSON */
    zt_db *astate;  /* rule name \0 stream id → JSON: the state of a rule for a stream */
    zt_db *arrived; /* stream id → when a point of it last arrived (node's ns, 8 bytes BE) */
    bool auto_create;
    size_t max_body, max_inflated;
    size_t nignore;
    lp_str ignore[16]; /* tags left out of series keys (nul-terminated, lengths kept) */
    int64_t ret_checked[SN_RET_SLOTS];
    uint32_t ret_next; /* the stream where the next retention pass starts */
    int64_t retention_every_ms;
    int64_t line_mult; /* ns per timestamp unit of line protocol from MQTT and nng */
    int64_t future_ns; /* a point later than the node's clock by more than this is refused */
    sn_mqtt *mqtt;
    sn_gw *gw;
    sn_rules *rules;
} sn;

/* A value as stored: a type byte, then 8 bytes (float, int, uint), 1 (bool) or the text. */
typedef struct sn_val {
    int type; /* enum lp_type */
    double f;
    int64_t i;
    uint64_t u;
    int b;
    const char *s;
    size_t sn;
} sn_val;

/* Encode into buf (room for 9 + SN_MAX_STRING bytes); its length. */
size_t sn_val_encode(const sn_val *v, unsigned char *buf);
int sn_val_decode(const void *buf, size_t len, sn_val *v);
/* 1 with *d set if the value is a number (bools count as 0 and 1). */
int sn_val_number(const sn_val *v, double *d);

/* The observation key: stream id (4 bytes BE) then the time in ns, sign bit flipped,
 * 8 bytes BE, so that keys sort by stream, then by time (negative times first). */
#define SN_OBS_KEY 12
void sn_obs_key(uint32_t id, int64_t t, unsigned char k[SN_OBS_KEY]);
void sn_obs_key_read(const unsigned char k[SN_OBS_KEY], uint32_t *id, int64_t *t);
/* The newest observation of stream id, through c (a cursor on obs): its time and, unless v
 * is NULL, its value. ZT_ENOTFOUND if the stream has none. */
int sn_obs_latest(zt_cursor *c, uint32_t id, int64_t *t, sn_val *v);
void sn_be32(unsigned char *b, uint32_t v);
uint32_t sn_rd32(const unsigned char *b);
void sn_be64(unsigned char *b, uint64_t v);
uint64_t sn_rd64(const unsigned char *b);

/* A series: measurement, tags sorted by key (the ignored ones left out), field. */
typedef struct sn_series {
    lp_str measurement;
    size_t ntags;
    lp_str tk[LP_MAX_TAGS], tv[LP_MAX_TAGS];
    lp_str field;
} sn_series;
/* The series key: measurement 0x1F (tag 0x1E value 0x1F)* 0x1D field. Its length, or 0
 * if over SN_KEY_MAX. */
size_t sn_series_key(const sn_series *s, char out[SN_KEY_MAX]);
/* Sort a point's tags into s, leaving out the ignored ones. */
void sn_series_from_point(const sn *S, const lp_point *pt, sn_series *s);

/* Times: RFC 3339 ↔ ns since 1970. Parse: 0 or -1. Format: out needs 40 bytes. */
int sn_time_parse(const char *s, int64_t *ns);
void sn_time_format(int64_t ns, char out[40]);
/* A time from a query parameter: RFC 3339 or integer ns. */
int sn_time_arg(const char *s, int64_t *ns);
/* The integer at the start of s: an optional '-' then digits (no space, no '+'), within
 * int64; *end after it. 0, or -1 if there is none or it is out of range. */
int sn_int_prefix(const char *s, int64_t *v, const char **end);
/* All of s such an integer (NULL: -1). */
int sn_int_arg(const char *s, int64_t *v);
/* Query parameter name: a whole integer from min to max, or def when it is absent. 0, or
 * 1 once answered 400 invalid-query naming the parameter, its range and what was sent. */
int sn_query_int(zt_req *req, const char *name, int64_t def, int64_t min, int64_t max,
                 int64_t *out);
/* A datastream id (1 to 2^32 - 1, digits only): 0, or -1. */
int sn_id_arg(const char *s, uint32_t *id);

/* Stream records (admin.c) */
int sn_stream_get(sn *S, zt_txn *t, uint32_t id, cJSON **out);
/* Create the stream record st (with measurement, tags, field, ...) in t and set its "id".
 * ZT_EINVAL or ZT_EEXIST with *why for a person; storage errors. */
int sn_stream_create(sn *S, zt_txn *t, cJSON *st, uint32_t *id, const char **why);

/* ingest.c */
typedef struct sn_ingest sn_ingest;
/* Begin a batch for req (its transaction) as its caller. NULL: out of memory. */
sn_ingest *sn_ingest_begin(sn *S, zt_req *req);
/* Line protocol text; 0, or an error with sn_ingest_error filled in. */
int sn_ingest_lp(sn_ingest *g, const char *body, size_t len, int64_t mult);
/* A JSON batch: {"observations": [...]} or [...]. */
int sn_ingest_json(sn_ingest *g, const cJSON *j);
/* After the last: retention of the streams written, the rules. 0 or an error. */
int sn_ingest_end(sn_ingest *g);
/* Why the batch failed: HTTP status, InfluxDB code word, message, line (0: none). */
void sn_ingest_error(const sn_ingest *g, int *status, const char **code, const char **msg,
                     size_t *line);
size_t sn_ingest_count(const sn_ingest *g);
/* Delete the observations of stream id at or before time last (INT64_MAX: all), until *n,
 * which counts on, reaches max (SIZE_MAX: no limit); then *more is set. */
int sn_obs_drop(sn *S, zt_txn *t, uint32_t id, int64_t last, size_t max, size_t *n, bool *more);
/* Delete up to max observations older than the retention of each stream, from where the
 * last pass stopped (*more: it stopped short again); the number. */
int sn_retention_pass(sn *S, zt_txn *t, int64_t now_ms, size_t max, size_t *deleted, bool *more);
int sn_ingest_routes(sn *S);

/* sensor.c: add n routes of the plugin; the first error. */
int sn_routes_add(sn *S, const zt_route *routes, size_t n);

/* query.c */
int sn_query_routes(sn *S);

/* admin.c */
int sn_admin_routes(sn *S);
/* Respond with cJSON o (deleting it); ZT_ENOMEM if o is NULL. */
int sn_send(zt_req *req, int status, cJSON *o);
/* A JSON record of db (NULL with *rc: ZT_ENOTFOUND, ZT_EIO if it is not JSON, ...). */
cJSON *sn_get_json(zt_txn *t, zt_db *db, const void *k, size_t kl, int *rc);
int sn_put_json(zt_txn *t, zt_db *db, const void *k, size_t kl, const cJSON *j);

/* inbox.c: messages from other threads (MQTT, nng) ingested in batches on the loop */
typedef struct sn_inbox sn_inbox;
enum sn_format { SN_AUTO = 0, SN_LINE, SN_JSON };
/* NULL: out of memory. name: "mqtt", "nng" (logs, job names). */
sn_inbox *sn_inbox_new(sn *S, const char *name, int format);
/* Any thread: copy a message in (dropped, with a warning, past the queue's bound). */
void sn_inbox_push(sn_inbox *b, const char *topic, const void *data, size_t len);
/* After the producing threads have stopped. */
void sn_inbox_free(sn_inbox *b);
int sn_format_parse(const char *s);
/* Counters, read on the loop: messages taken, refused, dropped; points written. */
void sn_inbox_stats(sn_inbox *b, cJSON *into);

/* mqtt.c, gw.c */
int sn_mqtt_start(sn *S);
void sn_mqtt_stop(sn *S);
void sn_mqtt_stats(sn *S, cJSON *into);
void sn_gw_stats(sn *S, cJSON *into);
int sn_gw_start(sn *S);
void sn_gw_stop(sn *S);

/* rules.c: alert rules (Lua) */
int sn_rules_init(sn *S);
void sn_rules_fini(sn *S);
/* Called for each observation written in a batch, in the batch's transaction. */
int sn_rules_observe(sn *S, zt_req *req, uint32_t id, int64_t t, const sn_val *v);
int sn_rules_routes(sn *S);
/* Close every open alert of stream id (in req's transaction), with reason; their number in
 * *n. Each emits sensor.alert "closed". */
int sn_rules_close_stream(sn *S, zt_req *req, uint32_t id, const char *reason, size_t *n);
/* 1 if any rule is loaded (else ingestion skips them). */
bool sn_rules_any(const sn *S);
/* Stream id was created, changed or deleted: which rules apply to it is worked out again
 * (they depend only on its own id and observed_property). Also on create: a batch that was
 * rolled back can have cached the rules of an id that is handed out again. */
void sn_rules_forget(sn *S, uint32_t id);

#endif
