/* test_bus.c: the outbox's sequence numbers, jobs and their audit records, delivery and
 * redelivery after a lost batch, private topics. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "core.h"
#include "testutil.h"

#define MAXGOT 64

typedef struct got {
    char who[16];
    uint64_t seq;
    char topic[64];
    unsigned attempt;
} got;

typedef struct fixture {
    char dir[64];
    uv_loop_t loop;
    zt_conf conf;
    zt_server srv;
    zt_plugin p, q; /* "sub" and "other" */
    zt_plugin *plugins[2];
    zt_db *db;
    got got[MAXGOT];
    size_t ngot;
    int fail;   /* handler failures still to give */
    bool write; /* the handler writes into db */
    char publish[64];
} fixture;

static fixture *F;

static char publish_url[64]; /* conf bus.publish for the next setup; "" for none */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->publish, sizeof f->publish, "%s", publish_url);
    f->conf.bus_publish = f->publish[0] ? f->publish : NULL;
    F = f;
    snprintf(f->dir, sizeof f->dir, "/tmp/zt-bus-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[ZT_ERRLEN];
    uv_loop_init(&f->loop);
    f->srv.loop = &f->loop;
    f->srv.conf = &f->conf;
    f->conf.audit_checkpoint_every = 1000000;
    f->conf.audit_checkpoint_ms = 1000000;
    tu_audit_open(&f->srv, f->dir);
    assert_int_equal(zt__bus_open(&f->srv, err, sizeof err), ZT_OK);
    f->p = (zt_plugin){.name = "sub", .srv = &f->srv, .in_init = true};
    f->q = (zt_plugin){.name = "other", .srv = &f->srv, .in_init = true};
    f->plugins[0] = &f->p;
    f->plugins[1] = &f->q;
    f->srv.plugins = f->plugins;
    f->srv.nplugins = 2;
    assert_int_equal(zt_db_open(&f->p, "things", &f->db), ZT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zt__bus_stop(&f->srv);
    zt__bus_close(&f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the bus's handles close */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_audit_close(&f->srv);
    assert_int_equal(tu_rm_tree(f->dir), 0);
    free(f);
    return 0;
}

/* What server.c's check does once per loop iteration. */
static void commit_batch(fixture *f)
{
    assert_int_equal(zt__audit_flush(&f->srv), ZT_OK);
    assert_int_equal(zt__store_batch_commit(f->srv.store), ZT_OK);
    zt__bus_after_commit(&f->srv);
}

static void emit(fixture *f, const char *source, const char *topic, bool keep)
{
    zt_txn *t;
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    cJSON *p = cJSON_CreateString(topic);
    assert_int_equal(zt__bus_emit_txn(&f->srv, t, source, "", NULL, topic, p), ZT_OK);
    cJSON_Delete(p);
    assert_int_equal(zt__store_end(f->srv.store, t, keep), ZT_OK);
}

/* The outbox's sequence numbers and topics, as committed. */
static size_t outbox(fixture *f, uint64_t *seqs, size_t cap)
{
    zt_db *db;
    assert_int_equal(zt__store_db(f->srv.store, "_core", "outbox", &db), ZT_OK);
    zt_txn *t;
    zt_cursor *c;
    zt_kv kv;
    size_t n = 0;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_cursor_open(t, db, &c), ZT_OK);
    for (int rc = zt_cursor_seek(c, ZT_FIRST, NULL, 0, &kv); rc == ZT_OK && n < cap;
         rc = zt_cursor_seek(c, ZT_NEXT, NULL, 0, &kv)) {
        assert_int_equal(kv.klen, 8);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v = v << 8 | ((const unsigned char *)kv.key)[i];
        seqs[n++] = v;
    }
    zt_cursor_close(c);
    zt__store_end(f->srv.store, t, false);
    return n;
}

static void seq_follows_the_batch_and_rollbacks_leave_no_gap(void **state)
{
    fixture *f = *state;
    emit(f, "sub", "a.one", true);
    emit(f, "sub", "a.two", false); /* rolled back: its number is taken by the next */
    emit(f, "sub", "a.three", true);
    commit_batch(f);
    emit(f, "sub", "a.four", true);
    zt__store_batch_abort(f->srv.store); /* a lost batch */
    zt__bus_after_abort(&f->srv);
    emit(f, "sub", "a.five", true);
    commit_batch(f);
    uint64_t seqs[8];
    assert_int_equal(outbox(f, seqs, 8), 3);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);
    assert_int_equal(seqs[2], 3);
}

static void emit_refusals(void **state)
{
    fixture *f = *state;
    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt__bus_emit_txn(&f->srv, t, "sub", "", NULL, "a.b", NULL), ZT_EREADONLY);
    zt__store_end(f->srv.store, t, false);
    assert_int_equal(zt__store_write_begin(f->srv.store, &t), ZT_OK);
    const char *bad[] = {"", "a..b", ".a", "a.", "a b", "a.*", "a/b", "ü"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(zt__bus_emit_txn(&f->srv, t, "sub", "", NULL, bad[i], NULL), ZT_EINVAL);
    assert_int_equal(zt__store_txn_writes(t), 0);
    zt__store_end(f->srv.store, t, false);
    zt__store_batch_abort(f->srv.store);
}

static void a_job_answers_nobody(void **state)
{
    fixture *f = *state;
    zt_req *job = zt__job_new(&f->srv, &f->p, "EVENT", "x.y");
    assert_non_null(job);
    assert_string_equal(zt_req_method(job), "EVENT");
    assert_string_equal(zt_req_path(job), "x.y");
    assert_string_equal(zt_req_client(job), "internal");
    assert_null(zt_req_header(job, "Host"));
    assert_null(zt_req_query(job, "a"));
    assert_null(zt_req_param(job, "id"));
    const zt_caller *c = zt_req_caller(job);
    assert_string_equal(c->kind, "system");
    assert_string_equal(c->login, "system:sub");
    assert_null(c->department);
    assert_int_equal(c->nroles, 0);
    assert_int_equal(zt_respond(job, 200, NULL, "x", 1), ZT_ESTATE);
    assert_int_equal(zt_respond_json(job, 200, NULL), ZT_ESTATE);
    assert_int_equal(zt_problem(job, 400, "bad", NULL, "x"), ZT_ESTATE);
    assert_int_equal(zt_res_header(job, "A", "b"), ZT_ESTATE);
    assert_int_equal(zt_work(job, NULL, NULL, NULL), ZT_ESTATE);
    assert_true(zt_txn_writable(zt_req_txn(job)));
    assert_int_equal(zt__job_end(&f->srv, job, ZT_OK), ZT_OK);
    assert_int_equal(zt__audit_queued(&f->srv), 0); /* it changed nothing */
    zt__store_batch_abort(f->srv.store);
}

static cJSON *last_audit(fixture *f)
{
    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    cJSON *r = zt__audit_record_json(t, zt__audit_db(&f->srv), 0);
    zt__store_end(f->srv.store, t, false);
    return r;
}

static void job_changes_are_kept_with_their_record_or_dropped(void **state)
{
    fixture *f = *state;
    /* bookkeeping only: kept, no record */
    zt_req *job = zt__job_new(&f->srv, &f->p, "EVENT", "x.y");
    assert_int_equal(zt_put(zt_req_txn(job), f->db, "k0", 2, "v", 1), ZT_OK);
    zt__job_audit_from_here(job);
    assert_int_equal(zt__job_end(&f->srv, job, ZT_OK), ZT_OK);
    assert_int_equal(zt__audit_queued(&f->srv), 0);
    /* a change: kept, with a record */
    job = zt__job_new(&f->srv, &f->p, "EVENT", "x.y");
    assert_int_equal(zt_put(zt_req_txn(job), f->db, "k1", 2, "v", 1), ZT_OK);
    assert_int_equal(zt__job_end(&f->srv, job, ZT_OK), ZT_OK);
    assert_int_equal(zt__audit_queued(&f->srv), 1);
    /* a failure: dropped, no record */
    job = zt__job_new(&f->srv, &f->p, "EVENT", "x.z");
    assert_int_equal(zt_put(zt_req_txn(job), f->db, "k2", 2, "v", 1), ZT_OK);
    assert_int_equal(zt__job_end(&f->srv, job, ZT_ERROR), ZT_ERROR);
    /* a note names the action */
    job = zt__job_new(&f->srv, &f->p, "EVENT", "x.w");
    assert_int_equal(zt_put(zt_req_txn(job), f->db, "k3", 2, "v", 1), ZT_OK);
    zt_audit_note(job, "archive document", "doc/7");
    assert_int_equal(zt__job_end(&f->srv, job, ZT_OK), ZT_OK);
    assert_int_equal(zt__audit_queued(&f->srv), 2);
    commit_batch(f);

    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "k0", 2, NULL, NULL), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "k1", 2, NULL, NULL), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "k2", 2, NULL, NULL), ZT_ENOTFOUND);
    zt__store_end(f->srv.store, t, false);

    cJSON *r = last_audit(f);
    assert_non_null(r);
    assert_string_equal(zt__jstr(r, "actor"), "system");
    assert_string_equal(zt__jstr(r, "actor_login"), "system:sub");
    assert_string_equal(zt__jstr(r, "plugin"), "sub");
    assert_string_equal(zt__jstr(r, "action"), "archive document");
    assert_string_equal(zt__jstr(r, "object"), "doc/7");
    assert_string_equal(zt__jstr(r, "client"), "internal");
    double seq = cJSON_GetNumberValue(cJSON_GetObjectItem(r, "seq"));
    cJSON_Delete(r);
    assert_true(seq >= 2);
}

/* ---- delivery ------------------------------------------------------------------------ */

static int on_event(zt_req *req, const zt_event *ev, void *ud)
{
    fixture *f = F;
    assert_true(f->ngot < MAXGOT);
    got *g = &f->got[f->ngot++];
    snprintf(g->who, sizeof g->who, "%s", (const char *)ud);
    g->seq = ev->seq;
    snprintf(g->topic, sizeof g->topic, "%s", ev->topic);
    g->attempt = ev->attempt;
    assert_ptr_equal(req->event, ev);
    assert_string_equal(zt_req_path(req), ev->topic);
    if (f->write) {
        char k[32];
        snprintf(k, sizeof k, "%s/%llu", (const char *)ud, (unsigned long long)ev->seq);
        assert_int_equal(zt_put(zt_req_txn(req), f->db, k, strlen(k), "1", 1), ZT_OK);
    }
    if (f->fail > 0) {
        f->fail--;
        return ZT_ERROR;
    }
    return ZT_OK;
}

/* Run the loop (committing after each iteration, as server.c does) until n deliveries. */
static void run_until(fixture *f, size_t n)
{
    for (int i = 0; i < 5000 && f->ngot < n; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        commit_batch(f);
        if (f->ngot < n) usleep(1000);
    }
    assert_int_equal(f->ngot, n);
}

static void subscribe(fixture *f)
{
    assert_int_equal(zt_on(&f->p, "t.*", on_event, "one"), ZT_OK);
    assert_int_equal(zt_on(&f->p, "t.**", on_event, "many"), ZT_OK);
    assert_int_equal(zt_on(&f->p, "_sub.**", on_event, "own"), ZT_OK);
    assert_int_equal(zt_on(&f->q, "**", on_event, "other"), ZT_OK);
    assert_int_equal(zt_on(&f->p, "t.*", on_event, "again"), ZT_EEXIST);
    assert_int_equal(zt_on(&f->q, "_sub.x", on_event, "spy"), ZT_EINVAL);
    f->p.in_init = f->q.in_init = false;
    assert_int_equal(zt_on(&f->p, "late", on_event, "late"), ZT_ESTATE);
    char err[ZT_ERRLEN];
    assert_int_equal(zt__bus_start(&f->srv, err, sizeof err), ZT_OK);
}

static size_t count(fixture *f, const char *who, const char *topic)
{
    size_t n = 0;
    for (size_t i = 0; i < f->ngot; i++)
        n += strcmp(f->got[i].who, who) == 0 && strcmp(f->got[i].topic, topic) == 0;
    return n;
}

static void patterns_and_private_topics(void **state)
{
    fixture *f = *state;
    emit(f, "sub", "t.before", true); /* before the subscribers start: not theirs */
    commit_batch(f);
    subscribe(f);
    emit(f, "sub", "t.a", true);
    emit(f, "sub", "t.a.b", true);
    emit(f, "sub", "_sub.x", true);
    emit(f, "sub", "u", true);
    commit_batch(f);
    /* one: t.a; many: t.a, t.a.b; own: _sub.x; other: t.a, t.a.b, u */
    run_until(f, 7);
    assert_int_equal(count(f, "one", "t.a"), 1);
    assert_int_equal(count(f, "many", "t.a"), 1);
    assert_int_equal(count(f, "many", "t.a.b"), 1);
    assert_int_equal(count(f, "own", "_sub.x"), 1);
    assert_int_equal(count(f, "other", "t.a"), 1);
    assert_int_equal(count(f, "other", "t.a.b"), 1);
    assert_int_equal(count(f, "other", "u"), 1);
    assert_int_equal(count(f, "other", "_sub.x"), 0);
    assert_int_equal(count(f, "other", "t.before"), 0);
    /* per subscriber, in order */
    uint64_t last = 0;
    for (size_t i = 0; i < f->ngot; i++)
        if (strcmp(f->got[i].who, "other") == 0) {
            assert_true(f->got[i].seq > last);
            last = f->got[i].seq;
        }
}

static void a_lost_batch_is_delivered_again(void **state)
{
    fixture *f = *state;
    subscribe(f);
    f->write = true;
    emit(f, "sub", "t.lost", true);
    commit_batch(f);
    /* deliver without committing: the deliveries wait in the open batch */
    for (int i = 0; i < 5000 && f->ngot < 3; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (f->ngot < 3) usleep(1000);
    }
    assert_int_equal(f->ngot, 3); /* one, many, other */
    assert_int_equal(zt__audit_queued(&f->srv), 3);
    /* the batch is lost: its changes, records and positions with it */
    zt__audit_flush(&f->srv);
    zt__store_batch_abort(f->srv.store);
    zt__bus_after_abort(&f->srv);
    run_until(f, 6);
    assert_int_equal(count(f, "one", "t.lost"), 2);
    assert_int_equal(count(f, "other", "t.lost"), 2);
    /* the second time it is committed: nothing more comes */
    for (int i = 0; i < 50; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        commit_batch(f);
    }
    assert_int_equal(f->ngot, 6);
    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "one/1", 5, NULL, NULL), ZT_OK);
    zt__store_end(f->srv.store, t, false);
}

static void a_failure_is_rolled_back_and_retried_later(void **state)
{
    fixture *f = *state;
    assert_int_equal(zt_on(&f->p, "f", on_event, "flaky"), ZT_OK);
    f->p.in_init = f->q.in_init = false;
    char err[ZT_ERRLEN];
    assert_int_equal(zt__bus_start(&f->srv, err, sizeof err), ZT_OK);
    f->write = true;
    f->fail = 1;
    emit(f, "sub", "f", true);
    commit_batch(f);
    run_until(f, 1);
    assert_int_equal(f->got[0].attempt, 1);
    zt_txn *t;
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "flaky/1", 7, NULL, NULL), ZT_ENOTFOUND);
    zt__store_end(f->srv.store, t, false);
    zt_buf m = {0};
    assert_int_equal(zt__bus_metrics(&f->srv, &m), ZT_OK);
    assert_non_null(strstr(m.data, "zt_bus_failures_total{plugin=\"sub\",pattern=\"f\"} 1\n"));
    assert_non_null(strstr(m.data, "zt_bus_retry_seconds{plugin=\"sub\",pattern=\"f\"} 1\n"));
    assert_non_null(strstr(m.data, "zt_bus_subscriber_lag{plugin=\"sub\",pattern=\"f\"} 1\n"));
    zt__buf_free(&m);
    /* the retry comes after the backoff (1 s): the loop waits for its timer */
    for (int i = 0; i < 100 && f->ngot < 2; i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        commit_batch(f);
    }
    assert_int_equal(f->ngot, 2);
    assert_int_equal(f->got[1].attempt, 2);
    assert_int_equal(zt__store_read_begin(f->srv.store, &t), ZT_OK);
    assert_int_equal(zt_get(t, f->db, "flaky/1", 7, NULL, NULL), ZT_OK);
    zt__store_end(f->srv.store, t, false);
    assert_int_equal(zt__bus_metrics(&f->srv, &m), ZT_OK);
    assert_non_null(strstr(m.data, "zt_bus_retry_seconds{plugin=\"sub\",pattern=\"f\"} 0\n"));
    assert_non_null(strstr(m.data, "zt_bus_deliveries_total{plugin=\"sub\",pattern=\"f\"} 1\n"));
    zt__buf_free(&m);
}

/* Events every subscriber has passed go after a day; the newest stays, so numbers go on. */
static void old_passed_events_are_pruned(void **state)
{
    fixture *f = *state;
    assert_int_equal(zt_on(&f->p, "t.**", on_event, "many"), ZT_OK);
    f->p.in_init = f->q.in_init = false;
    char err[ZT_ERRLEN];
    assert_int_equal(zt__bus_start(&f->srv, err, sizeof err), ZT_OK);
    for (int i = 0; i < 3; i++) emit(f, "sub", "t.x", true);
    commit_batch(f);
    run_until(f, 3);
    uint64_t seqs[8];
    size_t n = 0;
    /* a day later the sweep (every second) prunes */
    zt__clock_set_offset_ms(2 * 24 * 3600 * 1000LL);
    for (int i = 0; i < 100 && (n = outbox(f, seqs, 8)) != 1; i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        commit_batch(f);
    }
    zt__clock_set_offset_ms(0);
    assert_int_equal(n, 1);
    assert_int_equal(seqs[0], 3);
    emit(f, "sub", "t.y", true);
    commit_batch(f);
    assert_int_equal(outbox(f, seqs, 8), 2);
    assert_int_equal(seqs[1], 4);
}

static void events_a_subscriber_has_not_handled_stay(void **state)
{
    fixture *f = *state;
    assert_int_equal(zt_on(&f->p, "t.**", on_event, "many"), ZT_OK);
    f->p.in_init = f->q.in_init = false;
    char err[ZT_ERRLEN];
    assert_int_equal(zt__bus_start(&f->srv, err, sizeof err), ZT_OK);
    f->fail = 1000; /* it never gets past the first */
    for (int i = 0; i < 3; i++) emit(f, "sub", "t.x", true);
    commit_batch(f);
    run_until(f, 1);
    zt__clock_set_offset_ms(2 * 24 * 3600 * 1000LL);
    /* the second attempt comes a second after the first: a sweep ran before it */
    for (int i = 0; i < 100 && f->ngot < 2; i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        commit_batch(f);
    }
    assert_int_equal(f->ngot, 2);
    zt__clock_set_offset_ms(0);
    uint64_t seqs[8];
    assert_int_equal(outbox(f, seqs, 8), 3);
}

/* A TCP port nobody listens on now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int setup_publish(void **state)
{
    snprintf(publish_url, sizeof publish_url, "tcp://127.0.0.1:%d", free_port());
    int rc = setup(state);
    publish_url[0] = 0;
    return rc;
}

/* bus.publish: another node subscribes over tcp and receives committed events only. */
static void committed_events_are_published_for_other_nodes(void **state)
{
    fixture *f = *state;
    char err[ZT_ERRLEN];
    assert_int_equal(zt__bus_start(&f->srv, err, sizeof err), ZT_OK);
    nng_socket s;
    assert_int_equal(nng_sub0_open(&s), 0);
    assert_int_equal(nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 100), 0);
    assert_int_equal(nng_dial(s, f->conf.bus_publish, NULL, NNG_FLAG_NONBLOCK), 0);
    /* pub/sub drops what is sent before the subscriber is connected: emit until one comes */
    char *msg = NULL;
    size_t len = 0;
    for (int i = 0; i < 100 && !msg; i++) {
        emit(f, "sub", "n.rolled-back", false);
        emit(f, "sub", "n.kept", true);
        commit_batch(f);
        if (nng_recv(s, &msg, &len, NNG_FLAG_ALLOC) != 0) msg = NULL;
    }
    assert_non_null(msg);
    assert_true(len > 8);
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) seq = seq << 8 | (unsigned char)msg[i];
    uint64_t seqs[128];
    size_t n = outbox(f, seqs, 128);
    assert_true(seq >= 1 && seq <= n && seqs[seq - 1] == seq);
    assert_non_null(memmem(msg + 8, len - 8, "n.kept", 6));
    assert_null(memmem(msg + 8, len - 8, "rolled", 6));
    nng_free(msg, len);
    nng_close(s);
}

static void a_taken_publish_address_is_refused(void **state)
{
    fixture *f = *state;
    fixture g = {0};
    char err[ZT_ERRLEN];
    g.srv.conf = &g.conf;
    g.srv.store = f->srv.store;
    g.conf.bus_publish = f->conf.bus_publish;
    assert_int_not_equal(zt__bus_open(&g.srv, err, sizeof err), ZT_OK);
    assert_non_null(strstr(err, "bus.publish: cannot listen on tcp://127.0.0.1:"));
    zt__bus_close(&g.srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(seq_follows_the_batch_and_rollbacks_leave_no_gap, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(emit_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(a_job_answers_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(job_changes_are_kept_with_their_record_or_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(patterns_and_private_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lost_batch_is_delivered_again, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failure_is_rolled_back_and_retried_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(old_passed_events_are_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(events_a_subscriber_has_not_handled_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(committed_events_are_published_for_other_nodes,
                                        setup_publish, teardown),
        cmocka_unit_test_setup_teardown(a_taken_publish_address_is_refused, setup_publish,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
