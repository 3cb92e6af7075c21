/* post.c: work handed to the event loop from other threads (zt_post). */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct post {
    struct post *next;
    zt_plugin *p;
    int (*fn)(zt_req *job, void *arg);
    void *arg;
    char what[64];
} post;

struct zt_posts {
    uv_mutex_t mu;
    uv_async_t async;
    bool started, closed;
    post *head, *tail;
};

int zt__posts_open(zt_server *srv, char *err, size_t errlen)
{
    zt_posts *q = calloc(1, sizeof *q);
    if (!q || uv_mutex_init(&q->mu) != 0) {
        free(q);
        snprintf(err, errlen, "out of memory");
        return ZT_ENOMEM;
    }
    srv->posts = q;
    return ZT_OK;
}

/* Take the queue as it is now; what is posted meanwhile waits for the next wake-up. */
static post *take(zt_posts *q)
{
    uv_mutex_lock(&q->mu);
    post *l = q->head;
    q->head = q->tail = NULL;
    uv_mutex_unlock(&q->mu);
    return l;
}

static void run(zt_server *srv, post *l, bool live)
{
    while (l) {
        post *n = l->next;
        zt_req *job = live ? zt__job_new(srv, l->p, "JOB", l->what) : NULL;
        int rc = l->fn(job, l->arg);
        if (job) zt__job_end(srv, job, rc);
        free(l);
        l = n;
    }
}

static void on_async(uv_async_t *a)
{
    zt_server *srv = a->data;
    run(srv, take(srv->posts), true);
}

void zt__posts_start(zt_server *srv)
{
    zt_posts *q = srv->posts;
    if (!q) return;
    uv_async_init(srv->loop, &q->async, on_async);
    q->async.data = srv;
    uv_mutex_lock(&q->mu);
    q->started = true;
    bool any = q->head != NULL; /* posted during init */
    uv_mutex_unlock(&q->mu);
    if (any) uv_async_send(&q->async);
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

void zt__posts_stop(zt_server *srv)
{
    zt_posts *q = srv->posts;
    if (!q) return;
    uv_mutex_lock(&q->mu);
    bool started = q->started;
    q->closed = true;
    q->started = false;
    uv_mutex_unlock(&q->mu);
    /* the last works still run: the final commit check of the shutdown keeps them */
    run(srv, take(q), true);
    if (started) uv_close((uv_handle_t *)&q->async, on_closed);
}

void zt__posts_close(zt_server *srv)
{
    zt_posts *q = srv->posts;
    if (!q) return;
    uv_mutex_lock(&q->mu);
    q->closed = true;
    uv_mutex_unlock(&q->mu);
    run(srv, take(q), false); /* e.g. posted during init by a node that never served */
}

void zt__posts_free(zt_server *srv)
{
    zt_posts *q = srv->posts;
    if (!q) return;
    assert(q->closed && !q->head);
    uv_mutex_destroy(&q->mu);
    free(q);
    srv->posts = NULL;
}

int zt_post(zt_plugin *p, const char *what, int (*fn)(zt_req *job, void *arg), void *arg)
{
    assert(p && fn);
    zt_posts *q = p->srv->posts;
    if (!q) return ZT_ESTATE;
    post *w = malloc(sizeof *w);
    if (!w) return ZT_ENOMEM;
    *w = (post){.p = p, .fn = fn, .arg = arg};
    snprintf(w->what, sizeof w->what, "%s", what && *what ? what : p->name);
    uv_mutex_lock(&q->mu);
    if (q->closed) {
        uv_mutex_unlock(&q->mu);
        free(w);
        return ZT_ESTATE;
    }
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    /* under the lock, so that the handle cannot be closed in between (zt__posts_stop) */
    if (q->started) uv_async_send(&q->async);
    uv_mutex_unlock(&q->mu);
    return ZT_OK;
}
