/* timer.c: durable timers: kept in LMDB by due time, only the earliest armed in libuv. */
#include "core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * _core/timers holds one record per pending timer under BE64(due_ms) | id (8 + 26 bytes),
 * so that its first key is the next timer to fire:
 *     {"topic": ..., "plugin": ..., "set": ms, "payload": <any JSON>}
 * _core/timer_ids holds id → BE64(due_ms) | plugin, to cancel by id without a scan, and
 * under the key "pending" the number of pending timers (BE64), kept in the same
 * transactions as the records, so that it is exact whatever commits or rolls back.
 *
 * Nothing is kept in memory per timer: one uv_timer armed at the earliest due time, and
 * the earliest due time the open batch set (the batch may set a timer earlier than the
 * armed one: it is armed once the batch commits).
 */

#define ID_LEN       26
#define KEY_LEN      (8 + ID_LEN)
#define TOPIC_MAX    128
#define PAYLOAD_MAX  (256 * 1024)
#define PER_PASS     1000 /* timers fired per loop iteration: a burst never stalls HTTP */
#define RETRY_MIN_MS 1000 /* after a failed firing (the bus or storage refused) */
#define RETRY_MAX_MS 60000
#define MAX_WAIT_MS  60000 /* look again at least this often: the wall clock may jump */
#define NONE         INT64_MAX

static const char pending_key[] = "pending";

struct zt_timers {
    zt_server *srv;
    zt_db *due; /* _core/timers */
    zt_db *ids; /* _core/timer_ids */
    uv_timer_t timer;
    uv_idle_t idle; /* active while a firing waits for its batch: the loop must not sleep */
    bool started, stopped;
    int closing;          /* handles whose close callback has not run yet */
    int64_t armed;        /* the due time the uv_timer is set for; NONE: not armed */
    int64_t batch_min;    /* the earliest due time set in the open batch; NONE */
    uint64_t batch_fired; /* timers fired in the open batch */
    uint64_t fired;       /* fired and committed since the start */
    uint64_t retry_ms;    /* 0, or the wait after the last failure */
};

/* ---- opening and closing ----------------------------------------------------------- */

int zt__timers_open(zt_server *srv, char *err, size_t errlen)
{
    assert(!srv->timers);
    zt_timers *tm = calloc(1, sizeof *tm);
    if (!tm) {
        snprintf(err, errlen, "timers: out of memory");
        return ZT_ENOMEM;
    }
    tm->srv = srv;
    tm->armed = tm->batch_min = NONE;
    int rc = zt__store_db(srv->store, "_core", "timers", &tm->due);
    if (rc == ZT_OK) rc = zt__store_db(srv->store, "_core", "timer_ids", &tm->ids);
    if (rc != ZT_OK) {
        snprintf(err, errlen, "timers: cannot open their databases: %s", zt_strerror(rc));
        free(tm);
        return rc;
    }
    srv->timers = tm;
    return ZT_OK;
}

static void on_closed(uv_handle_t *h)
{
    zt_timers *tm = h->data;
    if (--tm->closing == 0 && !tm->srv) free(tm);
}

static void close_handles(zt_timers *tm)
{
    if (!tm->started || tm->closing || uv_is_closing((uv_handle_t *)&tm->timer)) return;
    tm->closing = 2;
    uv_close((uv_handle_t *)&tm->timer, on_closed);
    uv_close((uv_handle_t *)&tm->idle, on_closed);
}

void zt__timers_stop(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    if (!tm || tm->stopped) return;
    tm->stopped = true;
    close_handles(tm);
}

void zt__timers_close(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    if (!tm) return;
    srv->timers = NULL;
    tm->stopped = true;
    close_handles(tm);
    tm->srv = NULL; /* the last close callback frees it */
    if (!tm->closing) free(tm);
}

/* ---- arming ------------------------------------------------------------------------ */

/* The due time of the first key of db in t, or NONE. */
static int first_due(zt_timers *tm, zt_txn *t, int64_t *due)
{
    zt_kv kv;
    *due = NONE;
    int rc = zt__db_edge(t, tm->due, ZT_FIRST, &kv);
    if (rc == ZT_OK) *due = (int64_t)zt__be64_get(kv.key);
    return rc == ZT_ENOTFOUND ? ZT_OK : rc;
}

static void on_timer(uv_timer_t *h);

static void arm_at(zt_timers *tm, int64_t due)
{
    if (!tm->started || tm->stopped) return;
    tm->armed = due;
    if (due == NONE) {
        uv_timer_stop(&tm->timer);
        return;
    }
    /* libuv counts on the monotonic clock; due times are on the wall clock */
    int64_t wait = due - zt_now_ms();
    if (wait > MAX_WAIT_MS) wait = MAX_WAIT_MS;
    uv_timer_start(&tm->timer, on_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

static void retry_later(zt_timers *tm)
{
    tm->retry_ms = tm->retry_ms ? tm->retry_ms * 2 : RETRY_MIN_MS;
    if (tm->retry_ms > RETRY_MAX_MS) tm->retry_ms = RETRY_MAX_MS;
    arm_at(tm, zt_now_ms() + (int64_t)tm->retry_ms);
}

/* Arm the earliest timer the store holds (what the open batch holds too: a timer it set
 * and fires in it commits or is lost with it). */
static void arm(zt_timers *tm)
{
    if (!tm->started || tm->stopped) return;
    zt_txn *t;
    int64_t due = NONE;
    int rc = zt__store_batch_read_begin(tm->srv->store, &t);
    if (rc == ZT_OK) {
        rc = first_due(tm, t, &due);
        zt__store_end(tm->srv->store, t, false);
    }
    if (rc != ZT_OK) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "timers: cannot read the next due time: %s",
                zt_strerror(rc));
        retry_later(tm);
        return;
    }
    arm_at(tm, due);
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only being active matters: the loop polls without sleeping until the commit */
}

void zt__timers_start(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    if (!tm || tm->started) return;
    uv_timer_init(srv->loop, &tm->timer);
    uv_idle_init(srv->loop, &tm->idle);
    tm->timer.data = tm->idle.data = tm;
    tm->started = true;
    arm(tm); /* timers that fell due while the node was down fire at once */
}

void zt__timers_clock_moved(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    /* Look at once (in the next iteration: the caller may hold a transaction). */
    if (tm) arm_at(tm, zt_now_ms());
}

void zt__timers_after_commit(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    if (!tm) return;
    tm->fired += tm->batch_fired;
    tm->batch_fired = 0;
    if (tm->started && !tm->stopped) uv_idle_stop(&tm->idle);
    /* A timer the batch set may come before the armed one. If the request that set it
     * failed after all, the early wake-up finds nothing due and arms the right one. */
    if (tm->batch_min < tm->armed) arm_at(tm, tm->batch_min);
    tm->batch_min = NONE;
}

void zt__timers_after_abort(zt_server *srv)
{
    zt_timers *tm = srv->timers;
    if (!tm) return;
    bool fired = tm->batch_fired > 0;
    tm->batch_fired = 0;
    tm->batch_min = NONE;
    if (tm->started && !tm->stopped) uv_idle_stop(&tm->idle);
    /* What was fired is pending again: the store failed, so wait before trying again. */
    if (fired) retry_later(tm);
}

/* ---- firing ------------------------------------------------------------------------ */

static int count_add(zt_timers *tm, zt_txn *t, int64_t delta)
{
    const void *v;
    size_t vlen;
    uint64_t n = 0;
    int rc = zt_get(t, tm->ids, pending_key, sizeof pending_key - 1, &v, &vlen);
    if (rc == ZT_OK && vlen == 8)
        n = zt__be64_get(v);
    else if (rc != ZT_OK && rc != ZT_ENOTFOUND)
        return rc;
    assert(delta >= 0 || n >= (uint64_t)-delta);
    n = delta < 0 && n < (uint64_t)-delta ? 0 : n + (uint64_t)delta;
    unsigned char b[8];
    zt__be64_put(b, n);
    return zt_put(t, tm->ids, pending_key, sizeof pending_key - 1, b, 8);
}

typedef struct fire_rec {
    cJSON *json;
    const char *topic, *plugin;
    const cJSON *payload;
} fire_rec;

static bool rec_parse(const zt_kv *kv, fire_rec *r)
{
    memset(r, 0, sizeof *r);
    if (kv->klen != KEY_LEN || !(r->json = cJSON_ParseWithLength(kv->val, kv->vlen))) return false;
    r->topic = zt__jstr(r->json, "topic");
    r->plugin = zt__jstr(r->json, "plugin");
    r->payload = cJSON_GetObjectItemCaseSensitive(r->json, "payload");
    return r->topic && r->plugin && r->payload;
}

/* One timer: its event, its audit record (queued for the batch), and its records gone, in t. */
static int fire_one(zt_timers *tm, zt_txn *t, zt_cursor *c, const zt_kv *kv, const fire_rec *r)
{
    char id[ID_LEN + 1];
    memcpy(id, (const char *)kv->key + 8, ID_LEN);
    id[ID_LEN] = 0;
    int rc = zt__bus_emit_txn(tm->srv, t, r->plugin, "", id, r->topic, r->payload);
    if (rc != ZT_OK) {
        zt__log(ZT_LOG_ERROR, r->plugin, NULL, "timers: timer %s (%s) cannot fire: %s", id,
                r->topic, zt_strerror(rc));
        return rc;
    }
    zt_audit_entry e = {.actor = "system",
                        .actor_login = "system",
                        .plugin = r->plugin,
                        .action = r->topic,
                        .object = id,
                        .request_id = "",
                        .client = "internal"};
    if ((rc = zt__audit_queue_entry(tm->srv, &e, "TIMER")) != ZT_OK) return rc;
    if ((rc = zt_del(t, tm->ids, id, ID_LEN)) != ZT_OK && rc != ZT_ENOTFOUND) return rc;
    return zt_cursor_del(c);
}

/*
 * Fire what is due, PER_PASS at most, in a write transaction nested in the batch: the
 * events, the audit records and the deletions commit together, so each timer fires
 * exactly once. Returns the due time of the next timer (now: more are due) or NONE.
 */
static int fire_due(zt_timers *tm, int64_t *next, uint64_t *nfired)
{
    zt_store *s = tm->srv->store;
    zt_txn *t;
    zt_cursor *c = NULL;
    *next = NONE;
    *nfired = 0;
    int rc = zt__store_write_begin(s, &t);
    if (rc != ZT_OK) return rc;
    zt__audit_pos mark; /* the pass's audit records go with its transaction */
    zt__audit_mark(tm->srv, &mark);
    rc = zt_cursor_open(t, tm->due, &c);
    int64_t now = zt_now_ms();
    uint64_t gone = 0;
    zt_kv kv;
    while (rc == ZT_OK) {
        int src = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv);
        if (src == ZT_ENOTFOUND) break;
        if ((rc = src) != ZT_OK) break;
        int64_t due = kv.klen >= 8 ? (int64_t)zt__be64_get(kv.key) : 0;
        if (due > now || gone == PER_PASS) {
            *next = due > now ? due : now;
            break;
        }
        fire_rec r;
        if (rec_parse(&kv, &r)) {
            rc = fire_one(tm, t, c, &kv, &r);
            if (rc == ZT_OK) ++*nfired;
        } else {
            /* Firing it can never succeed; keeping it would stop every timer behind it. */
            zt__log(ZT_LOG_ERROR, NULL, NULL,
                    "timers: dropping a damaged timer record (%zu-byte key, %zu-byte value)",
                    kv.klen, kv.vlen);
            if (kv.klen == KEY_LEN) zt_del(t, tm->ids, (const char *)kv.key + 8, ID_LEN);
            rc = zt_cursor_del(c);
        }
        cJSON_Delete(r.json);
        if (rc == ZT_OK) gone++;
    }
    if (c) zt_cursor_close(c);
    if (rc == ZT_OK && gone) rc = count_add(tm, t, -(int64_t)gone);
    int erc = zt__store_end(s, t, rc == ZT_OK && gone);
    if (rc == ZT_OK) rc = erc;
    if (rc != ZT_OK) {
        zt__audit_rewind(tm->srv, &mark);
        *nfired = 0;
    }
    return rc;
}

static void on_timer(uv_timer_t *h)
{
    zt_timers *tm = h->data;
    if (tm->stopped) return;
    if (tm->armed != NONE && zt_now_ms() < tm->armed) {
        arm_at(tm, tm->armed); /* not yet by the wall clock */
        return;
    }
    tm->armed = NONE;
    int64_t next;
    uint64_t n;
    int rc = fire_due(tm, &next, &n);
    if (rc != ZT_OK) {
        zt__log(ZT_LOG_ERROR, NULL, NULL, "timers: firing failed (%s); trying again in %llu ms",
                zt_strerror(rc),
                (unsigned long long)(tm->retry_ms ? tm->retry_ms * 2 : RETRY_MIN_MS));
        retry_later(tm);
        return;
    }
    tm->retry_ms = 0;
    if (n) {
        tm->batch_fired += n;
        uv_idle_start(&tm->idle, on_idle); /* commit this iteration, not at the next I/O */
    }
    arm_at(tm, next);
}

/* ---- setting and cancelling -------------------------------------------------------- */

/* The writable transaction of req for a timer, or an error. */
static int timer_txn(zt_req *req, zt_txn **t)
{
    if (!req->srv->timers) return ZT_ESTATE;
    return zt__req_write_txn(req, t);
}

int zt_timer_at(zt_req *req, int64_t due_ms, const char *topic, const cJSON *payload, char id[27])
{
    const zt_plugin *p = zt__req_plugin(req);
    const char *plugin = p ? p->name : "core";
    if (!zt__topic_ok(topic, plugin)) return ZT_EINVAL;
    zt_txn *t;
    int rc = timer_txn(req, &t);
    if (rc != ZT_OK) return rc;
    zt_timers *tm = req->srv->timers;
    if (due_ms < 0) due_ms = 0; /* long past: due at once, and the key stays unsigned */

    char *ptext = payload ? zt_json_print(payload) : NULL;
    if (payload && !ptext) return ZT_ENOMEM;
    size_t plen = ptext ? strlen(ptext) : 4;
    if (plen > PAYLOAD_MAX) {
        cJSON_free(ptext);
        return ZT_ETOOBIG;
    }
    zt_buf rec = {0};
    rc = zt__buf_puts(&rec, "{\"topic\":");
    rc |= zt__buf_json_str(&rec, topic, strlen(topic));
    rc |= zt__buf_puts(&rec, ",\"plugin\":");
    rc |= zt__buf_json_str(&rec, plugin, strlen(plugin));
    rc |= zt__buf_puts(&rec, ",\"set\":");
    int64_t now = zt_now_ms();
    rc |= zt__buf_u64(&rec, (uint64_t)(now > 0 ? now : 0));
    rc |= zt__buf_puts(&rec, ",\"payload\":");
    rc |= zt__buf_append(&rec, ptext ? ptext : "null", plen);
    rc |= zt__buf_puts(&rec, "}");
    cJSON_free(ptext);
    if (rc != ZT_OK) {
        zt__buf_free(&rec);
        return ZT_ENOMEM;
    }

    char tid[27];
    zt_id(tid);
    unsigned char key[KEY_LEN];
    zt__be64_put(key, (uint64_t)due_ms);
    memcpy(key + 8, tid, ID_LEN);
    size_t pl = strlen(plugin);
    unsigned char *ref = malloc(8 + pl);
    if (!ref) {
        zt__buf_free(&rec);
        return ZT_ENOMEM;
    }
    memcpy(ref, key, 8);
    memcpy(ref + 8, plugin, pl);
    rc = zt_put(t, tm->due, key, KEY_LEN, rec.data, rec.len);
    if (rc == ZT_OK) rc = zt_put(t, tm->ids, tid, ID_LEN, ref, 8 + pl);
    if (rc == ZT_OK) rc = count_add(tm, t, 1);
    free(ref);
    zt__buf_free(&rec);
    if (rc != ZT_OK) return rc;
    if (due_ms < tm->batch_min) tm->batch_min = due_ms;
    if (id) memcpy(id, tid, 27);
    return ZT_OK;
}

int zt_timer_cancel(zt_req *req, const char *id)
{
    if (!id || strlen(id) != ID_LEN) return ZT_ENOTFOUND;
    const zt_plugin *p = zt__req_plugin(req);
    const char *plugin = p ? p->name : "core";
    zt_txn *t;
    int rc = timer_txn(req, &t);
    if (rc != ZT_OK) return rc;
    zt_timers *tm = req->srv->timers;
    const void *v;
    size_t vlen, pl = strlen(plugin);
    if ((rc = zt_get(t, tm->ids, id, ID_LEN, &v, &vlen)) != ZT_OK) return rc;
    if (vlen != 8 + pl || memcmp((const char *)v + 8, plugin, pl) != 0) return ZT_ENOTFOUND;
    unsigned char key[KEY_LEN];
    memcpy(key, v, 8);
    memcpy(key + 8, id, ID_LEN);
    if ((rc = zt_del(t, tm->due, key, KEY_LEN)) != ZT_OK ||
        (rc = zt_del(t, tm->ids, id, ID_LEN)) != ZT_OK)
        return rc == ZT_ENOTFOUND ? ZT_EIO : rc; /* the two records disagree */
    return count_add(tm, t, -1);
}

/* ---- metrics ----------------------------------------------------------------------- */

int zt__timers_metrics(zt_server *srv, zt_buf *out)
{
    zt_timers *tm = srv->timers;
    if (!tm) return ZT_OK;
    zt_txn *t;
    uint64_t pending = 0;
    int64_t due = NONE;
    int rc = zt__store_read_begin(srv->store, &t); /* what is committed */
    if (rc == ZT_OK) {
        const void *v;
        size_t vlen;
        if (zt_get(t, tm->ids, pending_key, sizeof pending_key - 1, &v, &vlen) == ZT_OK &&
            vlen == 8)
            pending = zt__be64_get(v);
        rc = first_due(tm, t, &due);
        zt__store_end(srv->store, t, false);
    }
    if (rc != ZT_OK) return rc;
    rc = zt__buf_printf(out,
                        "# HELP zt_timers_pending Durable timers set and not yet fired or "
                        "cancelled.\n"
                        "# TYPE zt_timers_pending gauge\n"
                        "zt_timers_pending %llu\n"
                        "# HELP zt_timers_fired_total Timers fired since the node started.\n"
                        "# TYPE zt_timers_fired_total counter\n"
                        "zt_timers_fired_total %llu\n",
                        (unsigned long long)pending, (unsigned long long)tm->fired);
    if (rc == ZT_OK && due != NONE)
        rc = zt__buf_printf(out,
                            "# HELP zt_timers_next_due_seconds Seconds until the earliest "
                            "pending timer is due (negative: overdue).\n"
                            "# TYPE zt_timers_next_due_seconds gauge\n"
                            "zt_timers_next_due_seconds %.3f\n",
                            (double)(due - zt_now_ms()) / 1e3);
    return rc;
}
