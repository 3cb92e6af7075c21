/* record.c: compact binary records of instances and tasks, the to-do index and history. */
#include "wf.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records are written field after field: integers little-endian at fixed width, strings as
 * a u32 length, the bytes and a NUL (so a decoded string can point into the record). A
 * leading format byte lets a later version read older records; fields added since are
 * appended and read only when the record goes on (an older record lacks them). */
#define INST_FMT 1
#define TASK_FMT 1

void wf_buf_init(wf_buf *b)
{
    b->d = b->stack;
    b->len = 0;
    b->cap = sizeof b->stack;
    b->oom = false;
}

void wf_buf_free(wf_buf *b)
{
    if (b->d != b->stack) free(b->d);
    b->d = b->stack;
    b->len = 0;
}

static bool reserve(wf_buf *b, size_t n)
{
    if (b->oom) return false;
    if (b->len + n <= b->cap) return true;
    size_t cap = b->cap * 2;
    while (cap < b->len + n) cap *= 2;
    unsigned char *d = b->d == b->stack ? malloc(cap) : realloc(b->d, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    if (b->d == b->stack) memcpy(d, b->stack, b->len);
    b->d = d;
    b->cap = cap;
    return true;
}

void wf_put_bytes(wf_buf *b, const void *p, size_t n)
{
    if (!n || !reserve(b, n)) return;
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

void wf_put_u8(wf_buf *b, uint8_t v)
{
    wf_put_bytes(b, &v, 1);
}

void wf_put_u16(wf_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    wf_put_bytes(b, x, 2);
}

void wf_put_u32(wf_buf *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
    wf_put_bytes(b, x, 4);
}

void wf_put_i64(wf_buf *b, int64_t v)
{
    unsigned char x[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) x[i] = (unsigned char)(u >> (8 * i));
    wf_put_bytes(b, x, 8);
}

void wf_put_str(wf_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    wf_put_u32(b, (uint32_t)n);
    if (n) wf_put_bytes(b, s, n);
    wf_put_u8(b, 0);
}

void wf_put_be64(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (unsigned char)v;
}

/* ---- reading ------------------------------------------------------------------------ */

typedef struct rd {
    const unsigned char *p, *end;
    bool bad;
} rd;

static const unsigned char *take(rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += n;
    return at;
}

static uint8_t get_u8(rd *r)
{
    const unsigned char *x = take(r, 1);
    return x ? x[0] : 0;
}

static uint16_t get_u16(rd *r)
{
    const unsigned char *x = take(r, 2);
    return x ? (uint16_t)(x[0] | x[1] << 8) : 0;
}

static uint32_t get_u32(rd *r)
{
    const unsigned char *x = take(r, 4);
    uint32_t v = 0;
    if (x)
        for (int i = 3; i >= 0; i--) v = v << 8 | x[i];
    return v;
}

static int64_t get_i64(rd *r)
{
    const unsigned char *x = take(r, 8);
    uint64_t v = 0;
    if (x)
        for (int i = 7; i >= 0; i--) v = v << 8 | x[i];
    return (int64_t)v;
}

static const char *get_str(rd *r)
{
    uint32_t n = get_u32(r);
    const unsigned char *x = take(r, (size_t)n + 1);
    if (!x || x[n] != 0) {
        r->bad = true;
        return "";
    }
    return (const char *)x;
}

/* ---- owned strings ------------------------------------------------------------------ */

/* Own the malloc'd c from now on (freed with the record), or free it at once. */
static const char *adopt(void ***own, size_t *n, size_t *cap, char *c)
{
    if (!c) return NULL;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        void **v = realloc(*own, nc * sizeof *v);
        if (!v) {
            free(c);
            return NULL;
        }
        *own = v;
        *cap = nc;
    }
    (*own)[(*n)++] = c;
    return c;
}

static const char *keep(void ***own, size_t *n, size_t *cap, const char *s)
{
    return s ? adopt(own, n, cap, strdup(s)) : NULL;
}

const char *wf_inst_keep(wf_inst *in, const char *s)
{
    return keep(&in->own, &in->nown, &in->capown, s);
}

const char *wf_inst_keep_json(wf_inst *in, const cJSON *o)
{
    return adopt(&in->own, &in->nown, &in->capown, zt_json_print(o));
}

const char *wf_task_keep(wf_task *t, const char *s)
{
    return keep(&t->own, &t->nown, &t->capown, s);
}

/* ---- instances ---------------------------------------------------------------------- */

void wf_inst_free(wf_inst *in)
{
    for (size_t i = 0; i < in->nown; i++) free(in->own[i]);
    free(in->own);
    free(in->raw);
    free(in->open);
    free(in->counters);
    free(in->visited);
    memset(in, 0, sizeof *in);
}

static void *grow(void *v, uint16_t *cap, uint16_t need, size_t size)
{
    if (need <= *cap) return v;
    uint16_t nc = *cap ? *cap : 4;
    while (nc < need) nc = (uint16_t)(nc * 2);
    void *nv = realloc(v, (size_t)nc * size);
    if (nv) *cap = nc;
    return nv;
}

/* A copy of the record `id` of db in *raw (the store's memory is gone at the next write),
 * and a reader over it. */
static int load(zt_txn *txn, zt_db *db, const char *id, void **raw, rd *r)
{
    if (strlen(id) != WF_ID) return ZT_ENOTFOUND;
    const void *val;
    size_t vlen;
    int rc = zt_get(txn, db, id, WF_ID, &val, &vlen);
    if (rc != ZT_OK) return rc;
    if (!(*raw = malloc(vlen))) return ZT_ENOMEM;
    memcpy(*raw, val, vlen);
    *r = (rd){*raw, (const unsigned char *)*raw + vlen, false};
    return ZT_OK;
}

/* Store a record built in b (ZT_ENOMEM if building it ran out), and free b. */
static int store(zt_txn *txn, zt_db *db, const void *key, size_t klen, wf_buf *b)
{
    int rc = b->oom ? ZT_ENOMEM : zt_put(txn, db, key, klen, b->d, b->len);
    wf_buf_free(b);
    return rc;
}

/* Decode the instance record r reads into out (zeroed, out->raw set by the caller if it
 * owns a copy); freed on failure. */
static int inst_decode(wf *w, const char *id, rd r, wf_inst *out)
{
    memcpy(out->id, id, WF_ID);
    if (get_u8(&r) != INST_FMT) goto bad;
    out->state = get_u8(&r);
    out->flags = get_u8(&r);
    out->priority = (int8_t)get_u8(&r);
    out->version = get_u32(&r);
    out->nsteps = get_u32(&r);
    out->created = get_i64(&r);
    out->ended = get_i64(&r);
    out->paused_since = get_i64(&r);
    out->paused_ms = get_i64(&r);
    out->def = get_str(&r);
    out->bkey = get_str(&r);
    out->owner = get_str(&r);
    out->initiator = get_str(&r);
    out->initiator_id = get_str(&r);
    out->dept = get_str(&r);
    out->result = get_str(&r);
    out->data = get_str(&r);
    out->decisions = get_str(&r);
    uint16_t n = get_u16(&r);
    if (n && !(out->open = grow(NULL, &out->capopen, n, WF_ID))) goto oom;
    for (uint16_t i = 0; i < n; i++) {
        const unsigned char *x = take(&r, WF_ID);
        if (!x) goto bad;
        memcpy(out->open[i], x, WF_ID);
    }
    out->nopen = n;
    n = get_u16(&r);
    if (n && !(out->counters = grow(NULL, &out->capcounters, n, sizeof(wf_counter)))) goto oom;
    for (uint16_t i = 0; i < n; i++) {
        out->counters[i].node = get_u8(&r);
        out->counters[i].count = get_u16(&r);
        out->counters[i].need = get_u16(&r);
    }
    out->ncounters = n;
    n = get_u16(&r);
    if (n && !(out->visited = grow(NULL, &out->capvisited, n, 1))) goto oom;
    for (uint16_t i = 0; i < n; i++) out->visited[i] = get_u8(&r);
    out->nvisited = n;
    /* who counted towards each counter: absent from records written before it was kept */
    for (uint16_t i = 0; i < out->ncounters; i++) out->counters[i].signers = "";
    if (r.p < r.end) {
        if (get_u16(&r) != out->ncounters) goto bad;
        for (uint16_t i = 0; i < out->ncounters; i++) out->counters[i].signers = get_str(&r);
    }
    /* its security label: absent from records written before labels (the lowest) */
    out->label = r.p < r.end ? get_str(&r) : "";
    if (r.bad) goto bad;
    return ZT_OK;
bad:
    wf_inst_free(out);
    zt_log(w->p, ZT_LOG_ERROR, "instance %s: damaged record", id);
    return ZT_EIO;
oom:
    wf_inst_free(out);
    return ZT_ENOMEM;
}

int wf_inst_get(wf *w, zt_txn *txn, const char *id, wf_inst *out)
{
    memset(out, 0, sizeof *out);
    rd r;
    int rc = load(txn, w->inst, id, &out->raw, &r);
    return rc == ZT_OK ? inst_decode(w, id, r, out) : rc;
}

int wf_inst_decode(wf *w, const char *id, const void *val, size_t vlen, wf_inst *out)
{
    memset(out, 0, sizeof *out);
    return inst_decode(w, id, (rd){val, (const unsigned char *)val + vlen, false}, out);
}

int wf_inst_put(wf *w, zt_txn *txn, const wf_inst *in)
{
    wf_buf b;
    wf_buf_init(&b);
    wf_put_u8(&b, INST_FMT);
    wf_put_u8(&b, in->state);
    wf_put_u8(&b, in->flags);
    wf_put_u8(&b, (uint8_t)in->priority);
    wf_put_u32(&b, in->version);
    wf_put_u32(&b, in->nsteps);
    wf_put_i64(&b, in->created);
    wf_put_i64(&b, in->ended);
    wf_put_i64(&b, in->paused_since);
    wf_put_i64(&b, in->paused_ms);
    wf_put_str(&b, in->def);
    wf_put_str(&b, in->bkey);
    wf_put_str(&b, in->owner);
    wf_put_str(&b, in->initiator);
    wf_put_str(&b, in->initiator_id);
    wf_put_str(&b, in->dept);
    wf_put_str(&b, in->result);
    wf_put_str(&b, in->data);
    wf_put_str(&b, in->decisions);
    wf_put_u16(&b, in->nopen);
    wf_put_bytes(&b, in->open, (size_t)in->nopen * WF_ID);
    wf_put_u16(&b, in->ncounters);
    for (uint16_t i = 0; i < in->ncounters; i++) {
        wf_put_u8(&b, in->counters[i].node);
        wf_put_u16(&b, in->counters[i].count);
        wf_put_u16(&b, in->counters[i].need);
    }
    wf_put_u16(&b, in->nvisited);
    wf_put_bytes(&b, in->visited, in->nvisited);
    wf_put_u16(&b, in->ncounters);
    for (uint16_t i = 0; i < in->ncounters; i++)
        wf_put_str(&b, in->counters[i].signers ? in->counters[i].signers : "");
    wf_put_str(&b, in->label);
    return store(txn, w->inst, in->id, WF_ID, &b);
}

int wf_inst_add_open(wf_inst *in, const char *task_id)
{
    if (in->nopen == UINT16_MAX) return ZT_ETOOBIG;
    void *v = grow(in->open, &in->capopen, (uint16_t)(in->nopen + 1), WF_ID);
    if (!v) return ZT_ENOMEM;
    in->open = v;
    memcpy(in->open[in->nopen++], task_id, WF_ID);
    return ZT_OK;
}

bool wf_inst_del_open(wf_inst *in, const char *task_id)
{
    for (uint16_t i = 0; i < in->nopen; i++)
        if (!memcmp(in->open[i], task_id, WF_ID)) {
            memmove(in->open[i], in->open[i + 1], (size_t)(in->nopen - i - 1) * WF_ID);
            in->nopen--;
            return true;
        }
    return false;
}

wf_counter *wf_inst_counter(wf_inst *in, uint8_t node, bool create)
{
    for (uint16_t i = 0; i < in->ncounters; i++)
        if (in->counters[i].node == node) return &in->counters[i];
    if (!create) return NULL;
    void *v =
        grow(in->counters, &in->capcounters, (uint16_t)(in->ncounters + 1), sizeof(wf_counter));
    if (!v) return NULL;
    in->counters = v;
    wf_counter *c = &in->counters[in->ncounters++];
    c->node = node;
    c->count = c->need = 0;
    c->signers = "";
    return c;
}

int wf_counter_sign(wf_inst *in, wf_counter *c, const char *login)
{
    const char *s = c->signers ? c->signers : "";
    size_t ln = strlen(login), sn = strlen(s);
    for (const char *p = s; (p = strstr(p, login)) != NULL; p++)
        if (p > s && p[-1] == '\n' && p[ln] == '\n') return 1;
    char *n = malloc(sn + ln + 3);
    if (!n) return ZT_ENOMEM;
    snprintf(n, sn + ln + 3, "%s%s%s\n", sn ? s : "", sn ? "" : "\n", login);
    const char *kept = wf_inst_keep(in, n);
    free(n);
    if (!kept) return ZT_ENOMEM;
    c->signers = kept;
    return 0;
}

void wf_inst_del_counter(wf_inst *in, uint8_t node)
{
    for (uint16_t i = 0; i < in->ncounters; i++)
        if (in->counters[i].node == node) {
            in->counters[i] = in->counters[--in->ncounters];
            return;
        }
}

int wf_inst_visit(wf_inst *in, uint8_t node)
{
    if (wf_inst_visited(in, node)) return ZT_OK;
    void *v = grow(in->visited, &in->capvisited, (uint16_t)(in->nvisited + 1), 1);
    if (!v) return ZT_ENOMEM;
    in->visited = v;
    in->visited[in->nvisited++] = node;
    return ZT_OK;
}

bool wf_inst_visited(const wf_inst *in, uint8_t node)
{
    return in->visited && memchr(in->visited, node, in->nvisited) != NULL;
}

/* ---- tasks -------------------------------------------------------------------------- */

void wf_task_free(wf_task *t)
{
    for (size_t i = 0; i < t->nown; i++) free(t->own[i]);
    free(t->own);
    free(t->raw);
    memset(t, 0, sizeof *t);
}

int wf_task_get(wf *w, zt_txn *txn, const char *id, wf_task *out)
{
    memset(out, 0, sizeof *out);
    rd r;
    int rc = load(txn, w->task, id, &out->raw, &r);
    if (rc != ZT_OK) return rc;
    memcpy(out->id, id, WF_ID);
    if (get_u8(&r) != TASK_FMT) r.bad = true;
    out->state = get_u8(&r);
    out->flags = get_u8(&r);
    out->node = get_u8(&r);
    out->priority = (int8_t)get_u8(&r);
    out->version = get_u32(&r);
    out->created = get_i64(&r);
    out->due = get_i64(&r);
    out->remind_at = get_i64(&r);
    out->done_at = get_i64(&r);
    const char **s[] = {&out->inst,     &out->def,       &out->node_id,      &out->title,
                        &out->bkey,     &out->owner,     &out->role,         &out->dept,
                        &out->assignee, &out->escalated, &out->remind_timer, &out->due_timer,
                        &out->done_by,  &out->decision,  &out->opinion,      &out->delegated_by};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) *s[i] = get_str(&r);
    out->label = r.p < r.end ? get_str(&r) : ""; /* absent before labels: the lowest */
    if (r.bad) {
        wf_task_free(out);
        zt_log(w->p, ZT_LOG_ERROR, "task %s: damaged record", id);
        return ZT_EIO;
    }
    return ZT_OK;
}

int wf_task_put(wf *w, zt_txn *txn, const wf_task *t)
{
    wf_buf b;
    wf_buf_init(&b);
    wf_put_u8(&b, TASK_FMT);
    wf_put_u8(&b, t->state);
    wf_put_u8(&b, t->flags);
    wf_put_u8(&b, t->node);
    wf_put_u8(&b, (uint8_t)t->priority);
    wf_put_u32(&b, t->version);
    wf_put_i64(&b, t->created);
    wf_put_i64(&b, t->due);
    wf_put_i64(&b, t->remind_at);
    wf_put_i64(&b, t->done_at);
    const char *s[] = {t->inst,     t->def,       t->node_id,      t->title,
                       t->bkey,     t->owner,     t->role,         t->dept,
                       t->assignee, t->escalated, t->remind_timer, t->due_timer,
                       t->done_by,  t->decision,  t->opinion,      t->delegated_by};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) wf_put_str(&b, s[i]);
    wf_put_str(&b, t->label);
    return store(txn, w->task, t->id, WF_ID, &b);
}

/* ---- the to-do index ---------------------------------------------------------------- */

void wf_sortkey(const wf_task *t, unsigned char out[WF_SORTKEY])
{
    wf_put_be64(out, t->due > 0 ? (uint64_t)t->due : UINT64_MAX);
    out[8] = (unsigned char)(127 - t->priority); /* higher priority first */
    memcpy(out + 9, t->id, WF_ID);
}

/* Keys: 'u' login NUL sortkey (assigned to one person), 'r' role NUL sortkey (a role's
 * pool; the value is the department, checked against the reader's scope), 'd' NUL
 * sortkey (a department's pool without a role). */
static int todo_key(unsigned char *k, size_t *klen, char kind, const char *who,
                    const unsigned char sk[WF_SORTKEY])
{
    size_t n = strlen(who);
    if (1 + n + 1 + WF_SORTKEY > 511) return ZT_ETOOBIG;
    k[0] = (unsigned char)kind;
    memcpy(k + 1, who, n);
    k[1 + n] = 0;
    memcpy(k + 2 + n, sk, WF_SORTKEY);
    *klen = 2 + n + WF_SORTKEY;
    return ZT_OK;
}

static int todo_each(wf *w, zt_txn *txn, const wf_task *t, bool put)
{
    unsigned char sk[WF_SORTKEY], k[512];
    size_t klen;
    wf_sortkey(t, sk);
    const char *dept = t->dept ? t->dept : "";
    struct {
        char kind;
        const char *who;
    } e[3];
    int n = 0;
    if (t->assignee && *t->assignee) {
        e[n].kind = 'u', e[n++].who = t->assignee;
    } else if (t->role && *t->role) {
        e[n].kind = 'r', e[n++].who = t->role;
    } else {
        e[n].kind = 'd', e[n++].who = "";
    }
    if (t->escalated && *t->escalated) e[n].kind = 'r', e[n++].who = t->escalated;
    for (int i = 0; i < n; i++) {
        int rc = todo_key(k, &klen, e[i].kind, e[i].who, sk);
        if (rc == ZT_OK)
            rc = put ? zt_put(txn, w->todo, k, klen, dept, strlen(dept))
                     : zt_del(txn, w->todo, k, klen);
        if (rc == ZT_ENOTFOUND && !put) rc = ZT_OK;
        if (rc != ZT_OK) return rc;
    }
    return ZT_OK;
}

int wf_todo_put(wf *w, zt_txn *txn, const wf_task *t)
{
    return todo_each(w, txn, t, true);
}

int wf_todo_del(wf *w, zt_txn *txn, const wf_task *t)
{
    return todo_each(w, txn, t, false);
}

/* ---- history ------------------------------------------------------------------------ */

int wf_hist_add(wf *w, zt_txn *txn, wf_inst *in, const wf_step *s)
{
    unsigned char k[WF_ID + 4];
    memcpy(k, in->id, WF_ID);
    uint32_t seq = ++in->nsteps;
    for (int i = 0; i < 4; i++) k[WF_ID + i] = (unsigned char)(seq >> (8 * (3 - i)));
    wf_buf b;
    wf_buf_init(&b);
    wf_put_i64(&b, s->time);
    wf_put_str(&b, s->action);
    wf_put_str(&b, s->node);
    wf_put_str(&b, s->actor);
    wf_put_str(&b, s->task);
    wf_put_str(&b, s->decision);
    wf_put_str(&b, s->opinion);
    return store(txn, w->hist, k, sizeof k, &b);
}

int wf_hist_decode(const void *val, size_t vlen, wf_step *s)
{
    rd r = {val, (const unsigned char *)val + vlen, false};
    s->time = get_i64(&r);
    s->action = get_str(&r);
    s->node = get_str(&r);
    s->actor = get_str(&r);
    s->task = get_str(&r);
    s->decision = get_str(&r);
    s->opinion = get_str(&r);
    return r.bad ? ZT_EIO : ZT_OK;
}
