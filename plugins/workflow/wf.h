/* wf.h: the workflow plugin's internal interfaces (definitions, records, engine). */
#ifndef WF_H
#define WF_H

#include <zt.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calendar.h"

#define WF_NONE      0xff /* no node */
#define WF_MAX_NODES 250
#define WF_ID        26    /* a zt_id without its NUL */
#define WF_NOREF     (-2)  /* LUA_NOREF */
#define WF_MAX_STEPS 10000 /* nodes entered by one action: more is a loop in the definition */
#define WF_MAX_MULTI 200   /* tasks one multi-instance user task may open */

enum wf_node_type { WF_START = 1, WF_USER, WF_SERVICE, WF_GATEWAY, WF_SPLIT, WF_JOIN, WF_END };

typedef struct wf_cond {
    int fn; /* registry ref of the condition */
    uint8_t next;
} wf_cond;

typedef struct wf_node {
    char *id;
    char *title;
    int type;
    uint8_t next;
    /* user task */
    char *role, *dept, *escalate_to;
    int dept_fn, assignee_fn, multi_fn; /* registry refs or WF_NOREF */
    int need_fn;                        /* multi: need = function(instance) → N, or WF_NOREF */
    int need;                           /* multi and join: 0 = all, else N */
    int64_t deadline_ms, remind_ms;     /* working time; 0: none */
    int deadline_fn;  /* deadline = function(instance) → a time (ms) or nil, or WF_NOREF */
    int escalate_fn;  /* escalate_to = function(instance) → a role or nil, or WF_NOREF */
    char **decisions; /* the decisions a completion may give; none: any */
    size_t ndecisions;
    uint16_t reasons; /* bit i: decisions[i] needs an opinion, its reason (reasons = {...}) */
    char **form;      /* the data fields a completion's form may set (form = {...}) */
    size_t nform;
    bool form_listed; /* form = {...} given (an empty list: none); false: any field */
    bool plugin_only; /* completed and returned only through services (its plugin's routes) */
    /* service task */
    int fn;
    char *service;
    /* exclusive gateway */
    wf_cond *conds;
    size_t nconds;
    uint8_t dflt;
    /* parallel split */
    uint8_t *outs;
    size_t nouts;
    /* join: its split, its incoming edges, and the nodes between them (cancelled when it
     * fires early: N of M) */
    uint8_t split, nin;
    bool *region;
    /* end */
    char *result;
} wf_node;

typedef struct wf_def {
    char *name, *title, *note;
    char *owner;      /* the plugin that ships it ("workflow" for lua/workflows/) */
    char *file;       /* where it was read from ("db" for an old version) */
    uint32_t version; /* 0: the file's, not yet known to be recorded */
    unsigned char digest[32];
    char *src;
    size_t srclen;
    wf_node *nodes;
    size_t nnodes;
    uint8_t start;
    char **starters;
    size_t nstarters;
    char *label; /* the security label its instances have at least; NULL: the lowest */
    int ref;     /* registry ref of the definition's table (keeps its functions) */
    struct wf_def *next;
} wf_def;

enum { WF_I_RUNNING = 1, WF_I_COMPLETED, WF_I_WITHDRAWN, WF_I_CANCELLED };
enum { WF_IF_TOUCHED = 1, WF_IF_PAUSED = 2, WF_IF_OVERDUE = 4 };
enum { WF_T_OPEN = 1, WF_T_COMPLETED, WF_T_CANCELLED };
enum { WF_TF_CLAIMED = 1, WF_TF_DELEGATED = 2, WF_TF_REMINDED = 4, WF_TF_OVERDUE = 8 };

typedef struct wf_counter {
    uint8_t node;
    uint16_t count, need;
    /* who has counted towards it: "\nlogin\nlogin\n" ("" none), for countersigns and
     * joins, whose tasks must be completed by as many different people */
    const char *signers;
} wf_counter;

/* An instance as decoded: strings point into `raw` (a private copy of the record) or into
 * memory in `own`; both are freed by wf_inst_free. */
typedef struct wf_inst {
    char id[WF_ID + 1];
    uint8_t state, flags;
    int8_t priority;
    uint32_t version, nsteps;
    int64_t created, ended, paused_since, paused_ms;
    const char *def, *bkey, *owner, *initiator, *initiator_id, *dept, *result;
    const char *label;     /* its security label (安全标记); "" or NULL: the lowest */
    const char *data;      /* JSON text of an object */
    const char *decisions; /* JSON text of an object: node → last decision */
    char (*open)[WF_ID];   /* open task ids */
    uint16_t nopen, capopen;
    wf_counter *counters;
    uint16_t ncounters, capcounters;
    uint8_t *visited;
    uint16_t nvisited, capvisited;
    void *raw;
    void **own;
    size_t nown, capown;
} wf_inst;

typedef struct wf_task {
    char id[WF_ID + 1];
    uint8_t state, flags, node;
    int8_t priority;
    uint32_t version;
    int64_t created, due, remind_at, done_at;
    const char *inst, *def, *node_id, *title, *bkey, *owner, *role, *dept, *assignee, *escalated,
        *remind_timer, *due_timer, *done_by, *decision, *opinion, *delegated_by;
    const char *label; /* its instance's security label, copied at creation; "": the lowest */
    void *raw;
    void **own;
    size_t nown, capown;
} wf_task;

/* The plugin's state. */
typedef struct wf {
    zt_plugin *p;
    lua_State *L;
    zt_db *defs, *inst, *task, *todo, *hist;
    wf_cal cal;
    wf_def *files;  /* the definitions of the files, as loaded at start */
    wf_def *cached; /* older versions compiled from the db */
    int64_t page_size, max_page;
} wf;

/* s when it is a non-empty string, else NULL. */
static inline const char *wf_nz(const char *s)
{
    return s && *s ? s : NULL;
}

/* ---- definitions (def.c) ---------------------------------------------------------- */

/* Load every definition file, validate; on failure err says which file and node. */
int wf_defs_load(wf *w, char *err, size_t errlen);
void wf_defs_free(wf *w);
/* The definition file `name` as loaded at start (its version not looked at), or NULL. */
wf_def *wf_def_file(wf *w, const char *name);
/* The file's definition `name`, its version made sure to be recorded in txn (writable:
 * recorded if new). NULL with *rc ZT_ENOTFOUND when there is none. */
wf_def *wf_def_current(wf *w, zt_txn *txn, const char *name, int *rc);
/* Definition `name` at `version`: the file's if it is that version, else compiled from
 * the recorded source (cached). */
wf_def *wf_def_at(wf *w, zt_txn *txn, const char *name, uint32_t version, int *rc);
int wf_node_index(const wf_def *d, const char *id);
const char *wf_node_type_name(int type);
/* Latest recorded version of name (0: none). */
int wf_def_latest(wf *w, zt_txn *txn, const char *name, uint32_t *version,
                  unsigned char digest[32]);

/* ---- records (record.c) ----------------------------------------------------------- */

typedef struct wf_buf {
    unsigned char *d;
    size_t len, cap;
    unsigned char stack[1024];
    bool oom;
} wf_buf;
void wf_buf_init(wf_buf *b);
void wf_buf_free(wf_buf *b);
void wf_put_u8(wf_buf *b, uint8_t v);
void wf_put_u16(wf_buf *b, uint16_t v);
void wf_put_u32(wf_buf *b, uint32_t v);
void wf_put_i64(wf_buf *b, int64_t v);
void wf_put_str(wf_buf *b, const char *s); /* NULL is stored as "" */
void wf_put_bytes(wf_buf *b, const void *p, size_t n);
void wf_put_be64(unsigned char out[8], uint64_t v);

int wf_inst_get(wf *w, zt_txn *txn, const char *id, wf_inst *out); /* ZT_ENOTFOUND */
/* The instance record `id` as read from the store (val, vlen), decoded in place: its strings
 * point into val, valid as long as the store's memory is (until the txn's next write). */
int wf_inst_decode(wf *w, const char *id, const void *val, size_t vlen, wf_inst *out);
int wf_inst_put(wf *w, zt_txn *txn, const wf_inst *in);
void wf_inst_free(wf_inst *in);
int wf_task_get(wf *w, zt_txn *txn, const char *id, wf_task *out);
int wf_task_put(wf *w, zt_txn *txn, const wf_task *t);
void wf_task_free(wf_task *t);
/* Keep s (copied) for the record's lifetime; NULL on no memory. */
const char *wf_inst_keep(wf_inst *in, const char *s);
/* o printed, kept by the instance like wf_inst_keep (NULL: out of memory). */
const char *wf_inst_keep_json(wf_inst *in, const cJSON *o);
const char *wf_task_keep(wf_task *t, const char *s);
int wf_inst_add_open(wf_inst *in, const char *task_id);
bool wf_inst_del_open(wf_inst *in, const char *task_id);
wf_counter *wf_inst_counter(wf_inst *in, uint8_t node, bool create);
void wf_inst_del_counter(wf_inst *in, uint8_t node);
/* 1 if login has counted towards c already; else add it (ZT_ENOMEM) and return 0. */
int wf_counter_sign(wf_inst *in, wf_counter *c, const char *login);
int wf_inst_visit(wf_inst *in, uint8_t node);
bool wf_inst_visited(const wf_inst *in, uint8_t node);

/* The to-do indexes of an open task: put or remove every key it is listed under. */
int wf_todo_put(wf *w, zt_txn *txn, const wf_task *t);
int wf_todo_del(wf *w, zt_txn *txn, const wf_task *t);
/* Sort key of a task: due (big-endian; none: the largest), 255 - priority, id. */
#define WF_SORTKEY (8 + 1 + WF_ID)
void wf_sortkey(const wf_task *t, unsigned char out[WF_SORTKEY]);

/* One history step of an instance. */
typedef struct wf_step {
    int64_t time;
    const char *action, *node, *actor, *task, *decision, *opinion;
} wf_step;
int wf_hist_add(wf *w, zt_txn *txn, wf_inst *in, const wf_step *s);
/* Read a history record (strings point into val). ZT_EIO if damaged. */
int wf_hist_decode(const void *val, size_t vlen, wf_step *s);

/* ---- the engine (engine.c) -------------------------------------------------------- */

/* What an action acts with: the work (request, event or service call) and its txn. */
typedef struct wf_op {
    wf *w;
    zt_req *req;
    zt_txn *txn;
    const zt_caller *caller;
    const char *actor; /* login, or "system:<plugin>" */
    int64_t now;
    int steps;
    /* why an action was refused, for a person; status for HTTP */
    int status;
    const char *slug;
    char why[512];
    cJSON *created; /* tasks created by this action (array of small objects), or NULL */
    /* the person whose completion of a task is being carried to the join it reaches (a
     * join counts different people), or NULL */
    const char *signer;
} wf_op;

int wf_op_begin(wf_op *op, wf *w, zt_req *req);
/* Fail the action: status, slug and a message. Returns the matching ZT_E* code. */
int wf_fail(wf_op *op, int status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef struct wf_start_args {
    const char *definition, *bkey, *initiator, *initiator_id, *dept;
    const char *label; /* its security label (at least the definition's); NULL: that one */
    const cJSON *data; /* object or NULL */
    int priority;
    wf_def *def; /* a->definition as wf_def_current resolved it in op's txn, or NULL */
} wf_start_args;
int wf_start(wf_op *op, const wf_start_args *a, wf_inst *out);

typedef struct wf_action {
    const char *action; /* claim, complete, return, delegate */
    const char *decision, *opinion, *node, *to;
    const cJSON *form; /* object or NULL */
    bool over_http;    /* asked for by POST /workflow/tasks/:id/..., not by a service */
} wf_action;
int wf_task_action(wf_op *op, const char *task_id, const wf_action *a, wf_task *out);
int wf_withdraw(wf_op *op, const char *inst_id, bool by_initiator_only, const char *reason,
                int state, wf_inst *out);
int wf_pause(wf_op *op, const char *inst_id, bool pause);
/* Give instance inst_id (and its open tasks) another security label: raised by a
 * supervisor or a handler of one of its open tasks, lowered by a supervisor only; the
 * caller must be cleared for both labels (the system caller may do either). A history step,
 * and the event workflow.instance.labelled {instance, label, previous, actor, ...}. */
int wf_relabel(wf_op *op, const char *inst_id, const char *label, const char *reason, wf_inst *out);
/* An admin, a workflow_supervisor, or the system caller. */
bool wf_is_supervisor(const zt_caller *c);
/* A timer fired: ev->topic _workflow.remind or _workflow.due. */
int wf_timer_fired(wf_op *op, const zt_event *ev);
/* 1 if c started the instance (its login or its id). */
bool wf_is_initiator(const zt_caller *c, const wf_inst *in);
/* 1 if c is cleared for the security label (an instance's or a task's): "" or NULL is the
 * lowest, the system caller is cleared for every label, even one the county removed. */
bool wf_cleared(wf *w, const zt_caller *c, const char *label);
/* Answer 403 label-not-cleared: what (an instance or a task) id is labelled above c's
 * clearance. */
int wf_not_cleared(wf_op *op, const char *what, const char *id, const char *label);
/* 1 if the op's caller may act on the task. */
bool wf_may_act(wf_op *op, const wf_task *t);
/* 1 if the op's caller may act on one of the instance's open tasks. */
bool wf_acts_on_open(wf_op *op, const wf_inst *in);

cJSON *wf_inst_json(wf *w, const wf_inst *in, bool with_data);
cJSON *wf_task_json(wf *w, const wf_task *t, int64_t now);

/* ---- routes and services (api.c) ------------------------------------------------- */

int wf_api_init(wf *w);

#endif
