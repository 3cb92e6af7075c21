/* inbox.c: messages from MQTT and nng threads, each ingested as a job of its own on the loop. */
#include "sensor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INBOX_MAX 100000 /* messages waiting; past it new ones are dropped */

typedef struct msg {
    sn_inbox *b;
    char *topic;
    size_t len;
    char data[];
} msg;

struct sn_inbox {
    sn *S;
    char name[16];
    int format;
    pthread_mutex_t mu;
    size_t queued;    /* posted and not yet run; under mu */
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

/* On the loop: one message, as a job of its own: its own transaction nested in the loop
 * iteration's batch, so a refused message (bad text, unknown stream) takes only itself
 * down, and the messages of one iteration still share one commit. No dry run needed. */
static int ingest_msg(zt_req *job, void *arg)
{
    msg *m = arg;
    sn_inbox *b = m->b;
    pthread_mutex_lock(&b->mu);
    b->queued--;
    pthread_mutex_unlock(&b->mu);
    if (!job) {
        free(m);
        return ZT_OK;
    }
    b->taken++;
    sn_ingest *g = sn_ingest_begin(b->S, job);
    int rc = g ? ingest_one(b, g, m) : ZT_ENOMEM;
    if (rc == ZT_OK) rc = sn_ingest_end(g);
    int status = 0;
    const char *code = NULL, *why = NULL;
    size_t line = 0;
    if (rc != ZT_OK && g) sn_ingest_error(g, &status, &code, &why, &line);
    if (rc == ZT_OK) {
        b->points += sn_ingest_count(g);
        b->batches++;
    } else if (g && (status || rc == ZT_EINVAL)) {
        b->refused++;
        zt_req_log(job, ZT_LOG_WARN, "%s message refused (topic '%s'): %s", b->name,
                   m->topic ? m->topic : "", status ? why : "not JSON");
    } else {
        zt_req_log(job, ZT_LOG_ERROR, "%s message lost: %s", b->name, zt_strerror(rc));
    }
    free(m);
    return rc;
}

void sn_inbox_push(sn_inbox *b, const char *topic, const void *data, size_t len)
{
    size_t tl = topic ? strlen(topic) + 1 : 0;
    msg *m = malloc(sizeof *m + len + 1 + tl);
    if (!m) return;
    m->b = b;
    m->len = len;
    memcpy(m->data, data, len);
    m->data[len] = 0;
    m->topic = topic ? memcpy(m->data + len + 1, topic, tl) : NULL;
    pthread_mutex_lock(&b->mu);
    bool full = b->queued >= INBOX_MAX;
    if (full)
        b->dropped++;
    else
        b->queued++;
    pthread_mutex_unlock(&b->mu);
    if (full || zt_post(b->S->p, b->name, ingest_msg, m) != ZT_OK) {
        if (!full) {
            pthread_mutex_lock(&b->mu);
            b->queued--;
            b->dropped++;
            pthread_mutex_unlock(&b->mu);
        }
        free(m);
    }
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
    pthread_mutex_destroy(&b->mu);
    free(b);
}
