/* inbox.c: messages from MQTT and nng threads, queued and ingested in batches on the loop. */
#include "sensor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INBOX_MAX 100000 /* messages waiting; past it new ones are dropped */

typedef struct msg {
    struct msg *next;
    char *topic;
    size_t len;
    char data[];
} msg;

struct sn_inbox {
    sn *S;
    char name[16];
    int format;
    pthread_mutex_t mu;
    msg *head, *tail;
    size_t queued;
    bool posted;      /* a drain is posted and has not taken the queue yet */
    uint64_t dropped; /* under mu */
    /* the loop's own */
    uint64_t taken, refused, points, batches;
};

int sn_format_parse(const char *s)
{
    if (!s || !strcmp(s, "auto")) return SN_AUTO;
    if (!strcmp(s, "line")) return SN_LINE;
    if (!strcmp(s, "json")) return SN_JSON;
    return -1;
}

sn_inbox *sn_inbox_new(sn *S, const char *name, int format)
{
    sn_inbox *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return NULL;
    }
    b->S = S;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->format = format;
    return b;
}

static void free_list(msg *m)
{
    while (m) {
        msg *n = m->next;
        free(m);
        m = n;
    }
}

/* One message: line protocol or JSON, as configured or as it looks. */
static int ingest_one(sn_inbox *b, sn_ingest *g, const msg *m)
{
    int f = b->format;
    if (f == SN_AUTO) {
        size_t i = 0;
        while (i < m->len && (m->data[i] == ' ' || m->data[i] == '\n' || m->data[i] == '\t')) i++;
        f = i < m->len && (m->data[i] == '{' || m->data[i] == '[') ? SN_JSON : SN_LINE;
    }
    if (f == SN_LINE) return sn_ingest_lp(g, m->data, m->len, b->S->line_mult);
    cJSON *j = cJSON_ParseWithLength(m->data, m->len);
    if (!j) return ZT_EINVAL;
    int rc = sn_ingest_json(g, j);
    cJSON_Delete(j);
    return rc;
}

/* On the loop: every message queued so far, in one job (one transaction, one commit). A
 * message that is refused (bad text, unknown stream) is logged and skipped; the others go
 * in. */
static int drain(zt_req *job, void *arg)
{
    sn_inbox *b = arg;
    pthread_mutex_lock(&b->mu);
    msg *l = b->head;
    b->head = b->tail = NULL;
    b->queued = 0;
    b->posted = false;
    pthread_mutex_unlock(&b->mu);
    if (!job) {
        free_list(l);
        return ZT_OK;
    }
    sn_ingest *g = sn_ingest_begin(b->S, job);
    int rc = g ? ZT_OK : ZT_ENOMEM;
    /* A message alone in its batch needs no dry run: refused, it takes only itself down. */
    bool alone = l && !l->next;
    for (msg *m = l; m && rc == ZT_OK; m = m->next) {
        b->taken++;
        sn_ingest_dry(g, !alone);
        int r = ingest_one(b, g, m);
        if (r != ZT_OK) {
            int status;
            const char *code, *why;
            size_t line;
            sn_ingest_error(g, &status, &code, &why, &line);
            if (!status && r != ZT_EINVAL) {
                rc = r; /* storage: the whole batch is lost */
                break;
            }
            b->refused++;
            zt_req_log(job, ZT_LOG_WARN, "%s message refused (topic '%s'): %s", b->name,
                       m->topic ? m->topic : "", status ? why : "not JSON");
            if (alone) { /* what it wrote before the bad part goes with the job */
                free_list(l);
                return ZT_EINVAL;
            }
            sn_ingest_reset(g);
            continue;
        }
        if (alone) continue; /* written already */
        sn_ingest_dry(g, false);
        rc = ingest_one(b, g, m);
    }
    if (rc == ZT_OK) rc = sn_ingest_end(g);
    if (rc == ZT_OK) {
        b->points += sn_ingest_count(g);
        b->batches++;
    } else {
        zt_req_log(job, ZT_LOG_ERROR, "%s batch lost: %s", b->name, zt_strerror(rc));
    }
    free_list(l);
    return rc;
}

void sn_inbox_push(sn_inbox *b, const char *topic, const void *data, size_t len)
{
    size_t tl = topic ? strlen(topic) + 1 : 0;
    msg *m = malloc(sizeof *m + len + 1 + tl);
    if (!m) return;
    m->next = NULL;
    m->len = len;
    memcpy(m->data, data, len);
    m->data[len] = 0;
    m->topic = topic ? memcpy(m->data + len + 1, topic, tl) : NULL;
    pthread_mutex_lock(&b->mu);
    if (b->queued >= INBOX_MAX) {
        b->dropped++;
        pthread_mutex_unlock(&b->mu);
        free(m);
        return;
    }
    if (b->tail)
        b->tail->next = m;
    else
        b->head = m;
    b->tail = m;
    b->queued++;
    bool post = !b->posted;
    b->posted = true;
    /* posting under the lock keeps "posted" true exactly while a drain is on its way */
    if (post && zt_post(b->S->p, b->name, drain, b) != ZT_OK) b->posted = false;
    pthread_mutex_unlock(&b->mu);
}

void sn_inbox_stats(sn_inbox *b, cJSON *into)
{
    pthread_mutex_lock(&b->mu);
    double dropped = (double)b->dropped, queued = (double)b->queued;
    pthread_mutex_unlock(&b->mu);
    cJSON_AddNumberToObject(into, "messages", (double)b->taken);
    cJSON_AddNumberToObject(into, "refused", (double)b->refused);
    cJSON_AddNumberToObject(into, "dropped", dropped);
    cJSON_AddNumberToObject(into, "queued", queued);
    cJSON_AddNumberToObject(into, "points", (double)b->points);
    cJSON_AddNumberToObject(into, "batches", (double)b->batches);
}

void sn_inbox_free(sn_inbox *b)
{
    if (!b) return;
    free_list(b->head);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
