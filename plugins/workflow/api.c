/* api.c: the workflow plugin's HTTP routes, services for other plugins, and timer events. */
#include "wf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPINION 4000 /* bytes */
#define MAX_KEY     128

static const char *title_of(const char *slug)
{
    static const struct {
        const char *slug, *title;
    } t[] = {
        {"invalid-input", "Invalid input"},
        {"invalid-json", "The body is not JSON"},
        {"not-found", "Not found"},
        {"unknown-definition", "No such workflow definition"},
        {"task-closed", "The task is closed"},
        {"not-your-task", "Not your task"},
        {"not-initiator", "Only the initiator may do this"},
        {"already-handled", "Handled already"},
        {"instance-ended", "The instance has ended"},
        {"not-returnable", "Cannot return there"},
        {"forbidden", "Forbidden"},
        {"label-not-cleared", "Above your clearance"},
        {"invalid-label", "Not a security label"},
        {"invalid-delegate", "Cannot delegate to them"},
        {"workflow-no-path", "No path out of a gateway"},
        {"workflow-script-failed", "A workflow script failed"},
        {"workflow-service-failed", "A service of the workflow failed"},
        {"workflow-loop", "The workflow loops"},
        {"workflow-storage", "Storage failure"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].slug, slug)) return t[i].title;
    return "Workflow error";
}

/* Answer the failure an op recorded (or a storage error it did not explain). */
static int answer_fail(zt_req *req, wf_op *op, int rc)
{
    if (!op->status) {
        op->status = rc == ZT_EBUSY ? 503 : rc == ZT_EFULL ? 507 : 500;
        op->slug = "workflow-storage";
        snprintf(op->why, sizeof op->why, "%s", zt_strerror(rc));
    }
    if (op->status >= 500) zt_req_log(req, ZT_LOG_ERROR, "%s", op->why);
    /* a definition's or its script's fault (an error and its traceback, the script's own
     * words): for whoever maintains the node, in the log; the client gets where to look */
    if (op->status == 500)
        return zt_problem(req, 500, op->slug, title_of(op->slug),
                          "the workflow's definition or script failed; see the log with request "
                          "id %s",
                          zt_req_id(req));
    return zt_problem(req, op->status, op->slug, title_of(op->slug), "%s", op->why);
}

static int send(zt_req *req, int status, cJSON *o)
{
    int rc = o ? zt_respond_json(req, status, o) : ZT_ENOMEM;
    cJSON_Delete(o);
    return rc;
}

/* The body as a JSON object (zt_req_object: answers 400 itself and returns NULL when it is
 * not one). An empty body is an empty object. */
static cJSON *body_object(zt_req *req)
{
    static cJSON empty; /* never modified: an object with no members */
    size_t len;
    zt_req_body(req, &len);
    if (len > 0) return zt_req_object(req);
    empty.type = cJSON_Object;
    return &empty;
}

/* A member that must be a string of at most max bytes when present. */
static int opt_string(wf_op *op, const cJSON *o, const char *k, size_t max, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return ZT_OK;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max)
        return wf_fail(op, 400, "invalid-input", "%s: text of at most %zu bytes", k, max);
    *out = v->valuestring;
    return ZT_OK;
}

/* ---- starting ------------------------------------------------------------------------ */

static int parse_start(wf_op *op, const cJSON *a, wf_start_args *s)
{
    memset(s, 0, sizeof *s);
    int rc;
    if ((rc = opt_string(op, a, "definition", 64, &s->definition)) != ZT_OK) return rc;
    if (!s->definition)
        return wf_fail(op, 400, "invalid-input", "definition: the name of a workflow definition");
    if ((rc = opt_string(op, a, "business_key", MAX_KEY, &s->bkey)) != ZT_OK) return rc;
    if ((rc = opt_string(op, a, "department", 64, &s->dept)) != ZT_OK) return rc;
    if ((rc = opt_string(op, a, "label", 32, &s->label)) != ZT_OK) return rc;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(a, "data");
    if (data && !cJSON_IsNull(data) && !cJSON_IsObject(data))
        return wf_fail(op, 400, "invalid-input", "data: a JSON object");
    s->data = cJSON_IsObject(data) ? data : NULL;
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(a, "priority");
    if (pr && !cJSON_IsNull(pr)) {
        if (!cJSON_IsNumber(pr) || pr->valuedouble != floor(pr->valuedouble) ||
            pr->valuedouble < -100 || pr->valuedouble > 100)
            return wf_fail(op, 400, "invalid-input", "priority: a whole number from -100 to 100");
        s->priority = (int)pr->valuedouble;
    }
    if (!s->dept && s->data) {
        const cJSON *dd = cJSON_GetObjectItemCaseSensitive(s->data, "department");
        if (cJSON_IsString(dd) && strlen(dd->valuestring) <= 64) s->dept = dd->valuestring;
    }
    if (!s->dept && op->caller) s->dept = op->caller->department;
    return ZT_OK;
}

static cJSON *start_result(wf *w, wf_op *op, const wf_inst *in)
{
    cJSON *o = wf_inst_json(w, in, false);
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "instance", in->id);
    cJSON_AddItemToObject(o, "tasks", op->created ? op->created : cJSON_CreateArray());
    op->created = NULL;
    return o;
}

static int post_instances(zt_req *req, void *ud)
{
    wf *w = ud;
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    cJSON *a = body_object(req);
    if (!a) return ZT_OK;
    wf_start_args s;
    if ((rc = parse_start(&op, a, &s)) != ZT_OK) return answer_fail(req, &op, rc);
    if (cJSON_GetObjectItemCaseSensitive(a, "initiator"))
        return zt_problem(req, 400, "invalid-input", "Invalid input",
                          "initiator: over HTTP the initiator is the caller");
    /* only the definition's starter roles may start it over HTTP */
    wf_def *d = wf_def_current(w, op.txn, s.definition, &rc);
    if (!d && rc == ZT_ENOTFOUND)
        return zt_problem(req, 404, "unknown-definition", title_of("unknown-definition"),
                          "there is no workflow definition '%s'", s.definition);
    if (!d) return rc;
    /* "user" among the starters is any staff member: anyone may register as a citizen or
     * an enterprise, and an instance started over HTTP is staff work, routed by the
     * starter's department (a citizen has none: its tasks would reach every desk of their
     * role in the county). Citizens' processes are started by the plugins they use. */
    bool staff = op.caller->kind && !strcmp(op.caller->kind, "staff");
    bool may = false;
    for (size_t i = 0; i < d->nstarters && !may; i++)
        may = (staff && !strcmp(d->starters[i], ZT_ROLE_USER)) ||
              zt_caller_has_role(op.caller, d->starters[i]);
    if (!may)
        return zt_problem(req, 403, "forbidden", "Forbidden",
                          "workflow %s may be started over HTTP only by the roles in its "
                          "starters%s",
                          d->name,
                          !d->nstarters ? " (it lists none: plugins start it)"
                          : staff       ? ""
                                        : " (\"user\" there is any staff member; citizens' and "
                                          "enterprises' processes are started by the plugins "
                                          "they use)");
    /* Over HTTP the instance's department is the caller's own: definitions route tasks by
     * it (the leave request goes to the head of the requester's department), and a starter
     * must not pick whose desk the work lands on, in the body or in the data that
     * definitions read. Plugins name departments through workflow.start. */
    const char *own = op.caller->department;
    const cJSON *dd = s.data ? cJSON_GetObjectItemCaseSensitive(s.data, "department") : NULL;
    const char *named = s.dept;
    if (cJSON_IsString(dd) && (!named || !strcmp(named, own ? own : ""))) named = dd->valuestring;
    if (named && (!own || strcmp(named, own) != 0))
        return zt_problem(req, 403, "forbidden", "Forbidden",
                          "department: an instance started over HTTP is in your own department "
                          "(%s), not %.64s; leave department out",
                          own ? own : "you have none", named);
    s.initiator = op.caller->login;
    s.initiator_id = op.caller->id;
    s.def = d;
    op.created = cJSON_CreateArray();
    wf_inst in;
    rc = wf_start(&op, &s, &in);
    if (rc != ZT_OK) {
        cJSON_Delete(op.created);
        wf_inst_free(&in);
        return answer_fail(req, &op, rc);
    }
    zt_audit_note(req, "workflow start", zt_req_printf(req, "workflow/instance/%s", in.id));
    cJSON *o = start_result(w, &op, &in);
    cJSON_Delete(op.created);
    wf_inst_free(&in);
    return send(req, 201, o);
}

/* ---- reading instances ---------------------------------------------------------------- */

/* The history steps of an instance, in order; damaged ones are passed over. A step's strings
 * point into the store: they last until the next write. */
typedef struct steps {
    zt_cursor *cur;
    const char *id;
    bool started;
} steps;

static int steps_open(steps *it, wf *w, zt_txn *txn, const char *inst_id)
{
    it->id = inst_id;
    it->started = false;
    return zt_cursor_open(txn, w->hist, &it->cur);
}

static bool steps_next(steps *it, wf_step *s)
{
    for (;;) {
        zt_kv kv;
        int rc = it->started ? zt_cursor_seek(it->cur, ZT_NEXT, NULL, 0, &kv)
                             : zt_cursor_seek(it->cur, ZT_GE, it->id, WF_ID, &kv);
        it->started = true;
        if (rc != ZT_OK || kv.klen != WF_ID + 4 || memcmp(kv.key, it->id, WF_ID)) return false;
        if (wf_hist_decode(kv.val, kv.vlen, s) == ZT_OK) return true;
    }
}

/* Who may read an instance: its initiator, supervisors, whoever may act on one of its open
 * tasks, and whoever acted on it before. */
static bool may_read(wf_op *op, const wf_inst *in)
{
    const zt_caller *c = op->caller;
    if (!c) return false;
    if (wf_is_initiator(c, in)) return true; /* their own, whatever its label */
    if (!wf_cleared(op->w, c, in->label)) return false;
    if (wf_is_supervisor(c) || wf_acts_on_open(op, in)) return true;
    steps it;
    if (!c->login || steps_open(&it, op->w, op->txn, in->id) != ZT_OK) return false;
    bool found = false;
    wf_step s;
    while (!found && steps_next(&it, &s)) found = !strcmp(s.actor, c->login);
    zt_cursor_close(it.cur);
    return found;
}

/* Begin the op and load the instance :id if the caller may read it. Returns 1 when it
 * answered the request itself (404, 403); in is empty unless ZT_OK. */
static int load_readable(zt_req *req, void *ud, wf_op *op, wf_inst *in)
{
    memset(in, 0, sizeof *in);
    int rc = wf_op_begin(op, ud, req);
    if (rc != ZT_OK) return rc;
    const char *id = zt_req_param(req, "id");
    rc = wf_inst_get(op->w, op->txn, id, in);
    if (rc == ZT_ENOTFOUND) {
        zt_problem(req, 404, "not-found", "Not found", "there is no instance %.40s", id);
        return 1;
    }
    if (rc != ZT_OK) return rc;
    if (!may_read(op, in)) {
        if (!wf_is_initiator(op->caller, in) && !wf_cleared(op->w, op->caller, in->label)) {
            answer_fail(req, op, wf_not_cleared(op, "instance", id, in->label));
        } else {
            zt_problem(req, 403, "forbidden", "Forbidden",
                       "instance %s is visible to its initiator, its handlers and supervisors", id);
        }
        wf_inst_free(in);
        return 1;
    }
    return ZT_OK;
}

static int get_instance(zt_req *req, void *ud)
{
    wf_op op;
    wf_inst in;
    int rc = load_readable(req, ud, &op, &in);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    cJSON *o = wf_inst_json(ud, &in, true);
    wf_inst_free(&in);
    return send(req, 200, o);
}

static cJSON *history_json(wf *w, zt_txn *txn, const wf_inst *in)
{
    cJSON *items = cJSON_CreateArray();
    steps it;
    if (!items || steps_open(&it, w, txn, in->id) != ZT_OK) {
        cJSON_Delete(items);
        return NULL;
    }
    wf_step s;
    while (steps_next(&it, &s)) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddNumberToObject(o, "time", (double)s.time);
        cJSON_AddStringToObject(o, "action", s.action);
        if (*s.node) cJSON_AddStringToObject(o, "node", s.node);
        cJSON_AddStringToObject(o, "actor", s.actor);
        if (*s.task) cJSON_AddStringToObject(o, "task", s.task);
        if (*s.decision) cJSON_AddStringToObject(o, "decision", s.decision);
        if (*s.opinion) cJSON_AddStringToObject(o, "opinion", s.opinion);
        cJSON_AddItemToArray(items, o);
    }
    zt_cursor_close(it.cur);
    return items;
}

static int get_history(zt_req *req, void *ud)
{
    wf_op op;
    wf_inst in;
    int rc = load_readable(req, ud, &op, &in);
    if (rc != ZT_OK) return rc > 0 ? ZT_OK : rc;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = history_json(ud, op.txn, &in);
    if (o && items) {
        cJSON_AddStringToObject(o, "instance", in.id);
        cJSON_AddItemToObject(o, "items", items);
    } else {
        cJSON_Delete(items);
        cJSON_Delete(o);
        o = NULL;
    }
    wf_inst_free(&in);
    return send(req, 200, o);
}

/* POST /workflow/instances/:id/withdraw {reason}, and /label {label, reason}: another
 * security label. */
static int instance_action(zt_req *req, void *ud, bool relabel)
{
    wf_op op;
    wf_inst in;
    int rc = wf_op_begin(&op, ud, req);
    if (rc != ZT_OK) return rc;
    cJSON *a = body_object(req);
    if (!a) return ZT_OK;
    const char *label = NULL, *reason;
    if ((relabel && (rc = opt_string(&op, a, "label", 32, &label)) != ZT_OK) ||
        (rc = opt_string(&op, a, "reason", MAX_OPINION, &reason)) != ZT_OK)
        return answer_fail(req, &op, rc);
    if (relabel && !label)
        return zt_problem(req, 400, "invalid-input", "Invalid input",
                          "label: one of the node's security labels (GET /auth/labels)");
    memset(&in, 0, sizeof in);
    const char *id = zt_req_param(req, "id");
    rc = relabel ? wf_relabel(&op, id, label, reason, &in)
                 : wf_withdraw(&op, id, true, reason, WF_I_WITHDRAWN, &in);
    if (rc != ZT_OK) {
        wf_inst_free(&in);
        return answer_fail(req, &op, rc);
    }
    zt_audit_note(req,
                  relabel ? zt_req_printf(req, "workflow label: %s", label) : "workflow withdraw",
                  zt_req_printf(req, "workflow/instance/%s", in.id));
    cJSON *o = wf_inst_json(ud, &in, false);
    wf_inst_free(&in);
    return send(req, 200, o);
}

static int post_withdraw(zt_req *req, void *ud)
{
    return instance_action(req, ud, false);
}

static int post_label(zt_req *req, void *ud)
{
    return instance_action(req, ud, true);
}

/* ---- tasks ---------------------------------------------------------------------------- */

static int parse_action(wf_op *op, const cJSON *a, wf_action *x)
{
    int rc;
    if ((rc = opt_string(op, a, "decision", 64, &x->decision)) != ZT_OK) return rc;
    if ((rc = opt_string(op, a, "opinion", MAX_OPINION, &x->opinion)) != ZT_OK) return rc;
    if ((rc = opt_string(op, a, "node", 64, &x->node)) != ZT_OK) return rc;
    if ((rc = opt_string(op, a, "to", 64, &x->to)) != ZT_OK) return rc;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(a, "form");
    if (!f) f = cJSON_GetObjectItemCaseSensitive(a, "data");
    if (f && !cJSON_IsNull(f) && !cJSON_IsObject(f))
        return wf_fail(op, 400, "invalid-input", "form: a JSON object merged into the data");
    x->form = cJSON_IsObject(f) ? f : NULL;
    return ZT_OK;
}

static int task_action_http(zt_req *req, wf *w, const char *action)
{
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    cJSON *a = body_object(req);
    if (!a) return ZT_OK;
    wf_action x = {.action = action, .over_http = true};
    if ((rc = parse_action(&op, a, &x)) != ZT_OK) return answer_fail(req, &op, rc);
    wf_task t;
    op.created = cJSON_CreateArray();
    rc = wf_task_action(&op, zt_req_param(req, "id"), &x, &t);
    if (rc != ZT_OK) {
        cJSON_Delete(op.created);
        wf_task_free(&t);
        return answer_fail(req, &op, rc);
    }
    zt_audit_note(req, zt_req_printf(req, "workflow task %s", action),
                  zt_req_printf(req, "workflow/task/%s", t.id));
    cJSON *o = wf_task_json(w, &t, op.now);
    if (o)
        cJSON_AddItemToObject(o, "new_tasks", op.created);
    else
        cJSON_Delete(op.created);
    wf_task_free(&t);
    return send(req, 200, o);
}

static int post_claim(zt_req *req, void *ud)
{
    return task_action_http(req, ud, "claim");
}
static int post_complete(zt_req *req, void *ud)
{
    return task_action_http(req, ud, "complete");
}
static int post_return(zt_req *req, void *ud)
{
    return task_action_http(req, ud, "return");
}
static int post_delegate(zt_req *req, void *ud)
{
    return task_action_http(req, ud, "delegate");
}

static int get_task(zt_req *req, void *ud)
{
    wf *w = ud;
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    wf_task t;
    const char *id = zt_req_param(req, "id");
    rc = wf_task_get(w, op.txn, id, &t);
    if (rc == ZT_ENOTFOUND)
        return zt_problem(req, 404, "not-found", "Not found", "there is no task %.40s", id);
    if (rc != ZT_OK) return rc;
    const zt_caller *c = op.caller;
    /* the instance's label is the one that holds (a closed task keeps the label it had when
     * it closed; the instance may have been labelled since); above the caller's clearance
     * only the instance's initiator sees it (may_read) */
    wf_inst in;
    bool have_in = wf_inst_get(w, op.txn, t.inst, &in) == ZT_OK;
    const char *label = have_in ? in.label : t.label;
    bool cleared = wf_cleared(w, c, label);
    bool ok = cleared && (wf_may_act(&op, &t) || wf_is_supervisor(c) ||
                          (c->login && wf_nz(t.done_by) && !strcmp(c->login, t.done_by)) ||
                          (c->login && wf_nz(t.delegated_by) && !strcmp(c->login, t.delegated_by)));
    if (!ok && have_in) ok = may_read(&op, &in);
    if (ok)
        rc = have_in && !(t.label = wf_task_keep(&t, label))
                 ? ZT_ENOMEM
                 : send(req, 200, wf_task_json(w, &t, op.now));
    else if (!cleared)
        rc = answer_fail(req, &op, wf_not_cleared(&op, "task", id, label));
    else
        rc = zt_problem(req, 403, "forbidden", "Forbidden",
                        "task %s is visible to its handlers, its instance's initiator and "
                        "supervisors",
                        id);
    if (have_in) wf_inst_free(&in);
    wf_task_free(&t);
    return rc;
}

/* ---- the to-do list ------------------------------------------------------------------- */

/* One sorted stream of the to-do index: the keys under one prefix. */
typedef struct stream {
    zt_cursor *cur;
    unsigned char prefix[80];
    size_t plen;
    bool scoped; /* the value is a department the caller's scope must cover */
    bool live;
    unsigned char sk[WF_SORTKEY];
    char dept[65];
} stream;

static void stream_read(stream *s, int rc, const zt_kv *kv)
{
    s->live =
        rc == ZT_OK && kv->klen == s->plen + WF_SORTKEY && !memcmp(kv->key, s->prefix, s->plen);
    if (!s->live) return;
    memcpy(s->sk, (const unsigned char *)kv->key + s->plen, WF_SORTKEY);
    size_t n = kv->vlen < 64 ? kv->vlen : 64;
    memcpy(s->dept, kv->val, n);
    s->dept[n] = 0;
}

static int stream_open(wf_op *op, stream *s, char kind, const char *who, bool scoped,
                       const unsigned char *after)
{
    size_t n = strlen(who);
    memset(s, 0, sizeof *s);
    if (n > 64) return ZT_OK;
    s->prefix[0] = (unsigned char)kind;
    memcpy(s->prefix + 1, who, n);
    s->prefix[1 + n] = 0;
    s->plen = n + 2;
    s->scoped = scoped;
    int rc = zt_cursor_open(op->txn, op->w->todo, &s->cur);
    if (rc != ZT_OK) return rc;
    unsigned char k[80 + WF_SORTKEY];
    memcpy(k, s->prefix, s->plen);
    size_t kl = s->plen;
    if (after) memcpy(k + kl, after, WF_SORTKEY), kl += WF_SORTKEY;
    zt_kv kv;
    rc = zt_cursor_seek(s->cur, ZT_GE, k, kl, &kv);
    stream_read(s, rc, &kv);
    /* "after" is exclusive */
    if (s->live && after && !memcmp(s->sk, after, WF_SORTKEY)) {
        rc = zt_cursor_seek(s->cur, ZT_NEXT, NULL, 0, &kv);
        stream_read(s, rc, &kv);
    }
    return ZT_OK;
}

static void stream_next(stream *s)
{
    zt_kv kv;
    int rc = zt_cursor_seek(s->cur, ZT_NEXT, NULL, 0, &kv);
    stream_read(s, rc, &kv);
}

static const char hexd[] = "0123456789abcdef";

static int get_tasks(zt_req *req, void *ud)
{
    wf *w = ud;
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    const zt_caller *c = op.caller;
    int64_t limit = w->page_size;
    const char *q = zt_req_query(req, "limit");
    if (q) {
        char *end;
        long v = strtol(q, &end, 10);
        if (*end || v < 1 || v > w->max_page)
            return zt_problem(req, 400, "invalid-input", "Invalid input",
                              "limit: a whole number from 1 to %lld", (long long)w->max_page);
        limit = v;
    }
    unsigned char after[WF_SORTKEY], *afterp = NULL;
    q = zt_req_query(req, "after");
    if (q) {
        /* the cursor is the sort key: 18 hex digits, then the task id */
        bool ok = strlen(q) == 18 + WF_ID;
        for (int i = 0; ok && i < 9; i++) {
            const char *h1 = strchr(hexd, q[2 * i]), *h2 = strchr(hexd, q[2 * i + 1]);
            ok = h1 && h2 && q[2 * i] && q[2 * i + 1];
            if (ok) after[i] = (unsigned char)((h1 - hexd) << 4 | (h2 - hexd));
        }
        if (!ok)
            return zt_problem(req, 400, "invalid-input", "Invalid input",
                              "after: the 'next' value of the previous page");
        memcpy(after + 9, q + 18, WF_ID);
        afterp = after;
    }
    /* streams: assigned to the caller (by login and by id), each of the caller's roles, and
     * department pools */
    size_t ns = c->nroles + 3;
    stream *s = calloc(ns, sizeof *s);
    if (!s) return ZT_ENOMEM;
    size_t k = 0;
    if (c->login && (rc = stream_open(&op, &s[k++], 'u', c->login, false, afterp)) != ZT_OK)
        goto out;
    if (c->id && (rc = stream_open(&op, &s[k++], 'u', c->id, false, afterp)) != ZT_OK) goto out;
    for (size_t i = 0; i < c->nroles; i++)
        if ((rc = stream_open(&op, &s[k++], 'r', c->roles[i], true, afterp)) != ZT_OK) goto out;
    if (c->department && (rc = stream_open(&op, &s[k++], 'd', "", true, afterp)) != ZT_OK) goto out;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    if (!o || !items) {
        cJSON_Delete(o);
        rc = ZT_ENOMEM;
        goto out;
    }
    /* last: the last entry listed (the next page's cursor); seen: the last one read (the
     * streams give a task once each: merged, its copies come one after the other) */
    unsigned char last[WF_SORTKEY], seen[WF_SORTKEY];
    bool have_seen = false, more = false; /* more: count == limit >= 1, so last is set */
    int64_t count = 0;
    for (;;) {
        stream *m = NULL;
        for (size_t i = 0; i < k; i++)
            if (s[i].live && (!m || memcmp(s[i].sk, m->sk, WF_SORTKEY) < 0)) m = &s[i];
        if (!m) break;
        unsigned char sk[WF_SORTKEY];
        memcpy(sk, m->sk, WF_SORTKEY);
        bool scoped_ok = !m->scoped || !*m->dept || zt_req_in_scope(req, m->dept);
        stream_next(m);
        if (!scoped_ok || (have_seen && !memcmp(sk, seen, WF_SORTKEY))) continue;
        memcpy(seen, sk, WF_SORTKEY);
        have_seen = true;
        char tid[WF_ID + 1];
        memcpy(tid, sk + 9, WF_ID);
        tid[WF_ID] = 0;
        wf_task t;
        if ((rc = wf_task_get(w, op.txn, tid, &t)) != ZT_OK) {
            cJSON_Delete(o);
            goto out;
        }
        /* a task labelled above the caller's clearance is not theirs to see (安全标记) */
        bool listed = wf_cleared(w, c, t.label);
        if (listed && count == limit) more = true;
        if (listed && !more) {
            cJSON_AddItemToArray(items, wf_task_json(w, &t, op.now));
            memcpy(last, sk, WF_SORTKEY);
            count++;
        }
        wf_task_free(&t);
        if (more) break;
    }
    if (more) {
        char next[18 + WF_ID + 1];
        for (int i = 0; i < 9; i++) {
            next[2 * i] = hexd[last[i] >> 4];
            next[2 * i + 1] = hexd[last[i] & 15];
        }
        memcpy(next + 18, last + 9, WF_ID);
        next[18 + WF_ID] = 0;
        cJSON_AddStringToObject(o, "next", next);
    } else {
        cJSON_AddNullToObject(o, "next");
    }
    rc = send(req, 200, o);
out:
    for (size_t i = 0; i < k; i++)
        if (s[i].cur) zt_cursor_close(s[i].cur);
    free(s);
    return rc;
}

/* ---- definitions ---------------------------------------------------------------------- */

static cJSON *def_summary(wf *w, zt_txn *txn, const wf_def *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "name", d->name);
    if (d->title) cJSON_AddStringToObject(o, "title", d->title);
    if (d->note) cJSON_AddStringToObject(o, "version_note", d->note);
    cJSON_AddStringToObject(o, "plugin", d->owner);
    cJSON_AddStringToObject(o, "file", d->file);
    /* the file's version is the latest recorded when that is the file's text; a read
     * changes nothing (not d->version either: a write may be recording it right now) */
    uint32_t latest = 0;
    unsigned char dg[32];
    wf_def_latest(w, txn, d->name, &latest, dg);
    if (latest && !memcmp(dg, d->digest, 32))
        cJSON_AddNumberToObject(o, "version", latest);
    else
        cJSON_AddNullToObject(o, "version"); /* recorded when it is first started */
    cJSON_AddNumberToObject(o, "versions_recorded", latest);
    cJSON *st = cJSON_AddArrayToObject(o, "starters");
    for (size_t i = 0; st && i < d->nstarters; i++)
        cJSON_AddItemToArray(st, cJSON_CreateString(d->starters[i]));
    if (d->label) cJSON_AddStringToObject(o, "label", d->label);
    return o;
}

static int get_definitions(zt_req *req, void *ud)
{
    wf *w = ud;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    if (!items) {
        cJSON_Delete(o);
        return ZT_ENOMEM;
    }
    for (wf_def *d = w->files; d; d = d->next) cJSON_AddItemToArray(items, def_summary(w, txn, d));
    return send(req, 200, o);
}

static const char *fn_or(const char *s, int ref)
{
    return s ? s : ref != WF_NOREF ? "(function)" : NULL;
}

static int get_definition(zt_req *req, void *ud)
{
    wf *w = ud;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY;
    const char *name = zt_req_param(req, "name");
    const wf_def *d = wf_def_file(w, name);
    if (!d)
        return zt_problem(req, 404, "unknown-definition", title_of("unknown-definition"),
                          "there is no workflow definition '%.64s'", name);
    cJSON *o = def_summary(w, txn, d);
    cJSON *nodes = o ? cJSON_AddArrayToObject(o, "nodes") : NULL;
    if (!nodes) {
        cJSON_Delete(o);
        return ZT_ENOMEM;
    }
    for (size_t i = 0; i < d->nnodes; i++) {
        const wf_node *n = &d->nodes[i];
        cJSON *x = cJSON_CreateObject();
        if (!x) break;
        cJSON_AddStringToObject(x, "id", n->id);
        cJSON_AddStringToObject(x, "type", wf_node_type_name(n->type));
        if (n->title) cJSON_AddStringToObject(x, "title", n->title);
        if (i == d->start) cJSON_AddTrueToObject(x, "start");
        if (n->next != WF_NONE) cJSON_AddStringToObject(x, "next", d->nodes[n->next].id);
        if (n->nouts) {
            cJSON *outs = cJSON_AddArrayToObject(x, "next");
            for (size_t j = 0; outs && j < n->nouts; j++)
                cJSON_AddItemToArray(outs, cJSON_CreateString(d->nodes[n->outs[j]].id));
        }
        if (n->type == WF_GATEWAY) {
            cJSON *cs = cJSON_AddArrayToObject(x, "conditions");
            for (size_t j = 0; cs && j < n->nconds; j++)
                cJSON_AddItemToArray(cs, cJSON_CreateString(d->nodes[n->conds[j].next].id));
            if (n->dflt != WF_NONE) cJSON_AddStringToObject(x, "default", d->nodes[n->dflt].id);
        }
        const char *v;
        if ((v = n->role)) cJSON_AddStringToObject(x, "role", v);
        if ((v = fn_or(n->dept, n->dept_fn))) cJSON_AddStringToObject(x, "department", v);
        if (n->assignee_fn != WF_NOREF) cJSON_AddStringToObject(x, "assignee", "(function)");
        if (n->multi_fn != WF_NOREF) cJSON_AddStringToObject(x, "multi", "(function)");
        if (n->type == WF_JOIN || n->multi_fn != WF_NOREF) {
            if (n->need)
                cJSON_AddNumberToObject(x, "need", n->need);
            else
                cJSON_AddStringToObject(x, "need", "all");
        }
        if (n->deadline_ms) cJSON_AddNumberToObject(x, "deadline_ms", (double)n->deadline_ms);
        if (n->deadline_fn != WF_NOREF) cJSON_AddStringToObject(x, "deadline", "(function)");
        if (n->remind_ms) cJSON_AddNumberToObject(x, "remind_before_ms", (double)n->remind_ms);
        if ((v = fn_or(n->escalate_to, n->escalate_fn)))
            cJSON_AddStringToObject(x, "escalate_to", v);
        if (n->plugin_only) cJSON_AddFalseToObject(x, "complete_over_http");
        if (n->ndecisions) {
            cJSON *ds = cJSON_AddArrayToObject(x, "decisions");
            for (size_t j = 0; ds && j < n->ndecisions; j++)
                cJSON_AddItemToArray(ds, cJSON_CreateString(n->decisions[j]));
        }
        if (n->reasons) {
            cJSON *rs = cJSON_AddArrayToObject(x, "reasons");
            for (size_t j = 0; rs && j < n->ndecisions; j++)
                if (n->reasons & (1u << j))
                    cJSON_AddItemToArray(rs, cJSON_CreateString(n->decisions[j]));
        }
        if (n->form_listed) {
            cJSON *fs = cJSON_AddArrayToObject(x, "form");
            for (size_t j = 0; fs && j < n->nform; j++)
                cJSON_AddItemToArray(fs, cJSON_CreateString(n->form[j]));
        }
        if (n->service) cJSON_AddStringToObject(x, "service", n->service);
        if (n->result) cJSON_AddStringToObject(x, "result", n->result);
        cJSON_AddItemToArray(nodes, x);
    }
    return send(req, 200, o);
}

/* ---- statistics ----------------------------------------------------------------------- */

typedef struct group {
    char *key;
    uint64_t n, state[5], on_time;
    int64_t *dur;
    size_t ndur, capdur;
} group;

typedef struct groups {
    group *v;
    size_t n, cap;
} groups;

static group *group_of(groups *g, const char *key)
{
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->v[i].key, key)) return &g->v[i];
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 8;
        group *v = realloc(g->v, nc * sizeof *v);
        if (!v) return NULL;
        g->v = v, g->cap = nc;
    }
    group *x = &g->v[g->n];
    memset(x, 0, sizeof *x);
    if (!(x->key = strdup(key))) return NULL;
    g->n++;
    return x;
}

static int group_add(group *x, const wf_inst *in)
{
    if (!x) return ZT_ENOMEM;
    x->n++;
    if (in->state <= WF_I_CANCELLED) x->state[in->state]++;
    if (in->state == WF_I_COMPLETED) {
        if (!(in->flags & WF_IF_OVERDUE)) x->on_time++;
        if (x->ndur == x->capdur) {
            size_t nc = x->capdur ? x->capdur * 2 : 64;
            int64_t *v = realloc(x->dur, nc * sizeof *v);
            if (!v) return ZT_ENOMEM;
            x->dur = v, x->capdur = nc;
        }
        x->dur[x->ndur++] = in->ended - in->created;
    }
    return ZT_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static cJSON *group_json(group *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "instances", (double)x->n);
    for (int s = WF_I_RUNNING; s <= WF_I_CANCELLED; s++) {
        static const char *const names[] = {"", "running", "completed", "withdrawn", "cancelled"};
        cJSON_AddNumberToObject(o, names[s], (double)x->state[s]);
    }
    uint64_t done = x->state[WF_I_COMPLETED];
    cJSON_AddNumberToObject(o, "on_time", (double)x->on_time);
    if (done) {
        cJSON_AddNumberToObject(o, "on_time_rate", (double)x->on_time / (double)done);
        qsort(x->dur, x->ndur, sizeof *x->dur, cmp_i64);
        double sum = 0;
        for (size_t i = 0; i < x->ndur; i++) sum += (double)x->dur[i];
        cJSON_AddNumberToObject(o, "mean_duration_ms", sum / (double)x->ndur);
        size_t rank = (size_t)ceil(0.9 * (double)x->ndur); /* nearest rank */
        cJSON_AddNumberToObject(o, "p90_duration_ms", (double)x->dur[rank ? rank - 1 : 0]);
    } else {
        cJSON_AddNullToObject(o, "on_time_rate");
        cJSON_AddNullToObject(o, "mean_duration_ms");
        cJSON_AddNullToObject(o, "p90_duration_ms");
    }
    return o;
}

static void groups_free(groups *g)
{
    for (size_t i = 0; i < g->n; i++) free(g->v[i].key), free(g->v[i].dur);
    free(g->v);
}

/* A time bound: milliseconds since 1970, or a date YYYY-MM-DD (midnight in the calendar's
 * zone). */
static int time_arg(wf *w, const char *s, int64_t *out)
{
    int32_t day;
    if (wf_cal_parse_date(s, &day) == 0) {
        *out = (int64_t)day * WF_DAY_MS - w->cal.offset_ms;
        return ZT_OK;
    }
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0) return ZT_EINVAL;
    *out = v;
    return ZT_OK;
}

static int get_stats(zt_req *req, void *ud)
{
    wf *w = ud;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY;
    if (!wf_is_supervisor(zt_req_caller(req)))
        return zt_problem(req, 403, "forbidden", "Forbidden",
                          "statistics need the role workflow_supervisor (or admin)");
    int64_t from = 0, to = INT64_MAX;
    const char *q;
    if ((q = zt_req_query(req, "from")) && time_arg(w, q, &from) != ZT_OK)
        return zt_problem(req, 400, "invalid-input", "Invalid input",
                          "from: a date YYYY-MM-DD or milliseconds since 1970");
    if ((q = zt_req_query(req, "to")) && time_arg(w, q, &to) != ZT_OK)
        return zt_problem(req, 400, "invalid-input", "Invalid input",
                          "to: a date YYYY-MM-DD or milliseconds since 1970");
    const char *fdef = zt_req_query(req, "definition"), *fdept = zt_req_query(req, "department");
    groups total = {0}, bydef = {0}, bydept = {0};
    zt_cursor *cur;
    int rc = zt_cursor_open(txn, w->inst, &cur);
    if (rc != ZT_OK) return rc;
    zt_kv kv;
    int sr = zt_cursor_seek(cur, ZT_FIRST, NULL, 0, &kv);
    for (; sr == ZT_OK && rc == ZT_OK; sr = zt_cursor_seek(cur, ZT_NEXT, NULL, 0, &kv)) {
        if (kv.klen != WF_ID) continue;
        char id[WF_ID + 1];
        memcpy(id, kv.key, WF_ID);
        id[WF_ID] = 0;
        wf_inst in;
        if ((rc = wf_inst_decode(w, id, kv.val, kv.vlen, &in)) != ZT_OK) break;
        bool keep = in.created >= from && in.created < to && (!fdef || !strcmp(fdef, in.def)) &&
                    (!fdept || !strcmp(fdept, in.dept ? in.dept : ""));
        if (keep) {
            rc = group_add(group_of(&total, "*"), &in);
            if (rc == ZT_OK) rc = group_add(group_of(&bydef, in.def), &in);
            if (rc == ZT_OK) rc = group_add(group_of(&bydept, wf_nz(in.dept) ? in.dept : "-"), &in);
        }
        wf_inst_free(&in);
    }
    zt_cursor_close(cur);
    cJSON *o = rc == ZT_OK ? cJSON_CreateObject() : NULL;
    if (o) {
        if (from > 0) cJSON_AddNumberToObject(o, "from", (double)from);
        if (to < INT64_MAX) cJSON_AddNumberToObject(o, "to", (double)to);
        group empty = {0};
        cJSON_AddItemToObject(o, "total", group_json(total.n ? &total.v[0] : &empty));
        cJSON *a = cJSON_AddObjectToObject(o, "by_definition");
        for (size_t i = 0; a && i < bydef.n; i++)
            cJSON_AddItemToObject(a, bydef.v[i].key, group_json(&bydef.v[i]));
        cJSON *b = cJSON_AddObjectToObject(o, "by_department");
        for (size_t i = 0; b && i < bydept.n; i++)
            cJSON_AddItemToObject(b, bydept.v[i].key, group_json(&bydept.v[i]));
    }
    groups_free(&total);
    groups_free(&bydef);
    groups_free(&bydept);
    if (rc != ZT_OK) return rc;
    return send(req, 200, o);
}

/* ---- services ------------------------------------------------------------------------- */

/* A service's failure: logged with its reason (the caller sees the code). */
static int svc_fail(zt_req *req, const char *name, wf_op *op, int rc)
{
    zt_req_log(req, op->status >= 500 || !op->status ? ZT_LOG_ERROR : ZT_LOG_INFO, "%s: %s", name,
               op->why[0] ? op->why : zt_strerror(rc));
    return rc;
}

static const char *arg_str(const cJSON *a, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int svc_start(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    if (!cJSON_IsObject(args)) return ZT_EINVAL;
    wf_start_args s;
    if ((rc = parse_start(&op, args, &s)) != ZT_OK) return svc_fail(req, "workflow.start", &op, rc);
    if ((rc = opt_string(&op, args, "initiator", 64, &s.initiator)) != ZT_OK)
        return svc_fail(req, "workflow.start", &op, rc);
    if (!s.initiator && op.caller) {
        s.initiator = op.caller->login;
        s.initiator_id = op.caller->id;
    }
    op.created = cJSON_CreateArray();
    wf_inst in;
    rc = wf_start(&op, &s, &in);
    if (rc == ZT_OK) *result = start_result(w, &op, &in);
    cJSON_Delete(op.created);
    wf_inst_free(&in);
    if (rc != ZT_OK) return svc_fail(req, "workflow.start", &op, rc);
    return *result ? ZT_OK : ZT_ENOMEM;
}

static int svc_instance(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    zt_txn *txn = zt_req_txn(req);
    const char *id = arg_str(args, "id");
    if (!id) id = arg_str(args, "instance");
    if (!txn) return ZT_EBUSY;
    if (!id) return ZT_EINVAL;
    wf_inst in;
    int rc = wf_inst_get(w, txn, id, &in);
    if (rc != ZT_OK) return rc;
    *result = wf_inst_json(w, &in, true);
    wf_inst_free(&in);
    return *result ? ZT_OK : ZT_ENOMEM;
}

/* workflow.definition {name}: the definition's summary (as GET /workflow/definitions lists
 * it), or ZT_ENOTFOUND: for a plugin that refers to a definition by name (an approval item
 * names the workflow it runs) to check the name when it is given. */
static int svc_definition(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    const char *name = arg_str(args, "name");
    if (!name) return ZT_EINVAL;
    const wf_def *d = wf_def_file(w, name);
    if (!d) return ZT_ENOTFOUND;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY;
    *result = def_summary(w, txn, d);
    return *result ? ZT_OK : ZT_ENOMEM;
}

static int svc_task_action(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    wf_op op;
    int rc = wf_op_begin(&op, w, req);
    if (rc != ZT_OK) return rc;
    const char *task = arg_str(args, "task");
    wf_action x = {.action = arg_str(args, "action")};
    if (!task || !x.action) return ZT_EINVAL;
    if ((rc = parse_action(&op, args, &x)) != ZT_OK)
        return svc_fail(req, "workflow.task_action", &op, rc);
    wf_task t;
    op.created = cJSON_CreateArray();
    rc = wf_task_action(&op, task, &x, &t);
    if (rc == ZT_OK) {
        *result = wf_task_json(w, &t, op.now);
        if (*result) cJSON_AddItemToObject(*result, "new_tasks", op.created), op.created = NULL;
    }
    cJSON_Delete(op.created);
    wf_task_free(&t);
    if (rc != ZT_OK) return svc_fail(req, "workflow.task_action", &op, rc);
    return *result ? ZT_OK : ZT_ENOMEM;
}

/* Append a task id (WF_ID bytes) to a growing list; false when out of memory. */
static bool task_id_add(char (**ids)[WF_ID + 1], size_t *n, size_t *cap, const char *id)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *v = realloc(*ids, nc * sizeof **ids);
        if (!v) return false;
        *ids = v;
        *cap = nc;
    }
    memcpy((*ids)[*n], id, WF_ID);
    (*ids)[(*n)++][WF_ID] = 0;
    return true;
}

/* Tasks of an instance (open ones, or every one it had), or the caller's open tasks. */
static int svc_tasks(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    zt_txn *txn = zt_req_txn(req);
    if (!txn) return ZT_EBUSY;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(args, "filter");
    if (!cJSON_IsObject(f)) f = args;
    const char *inst = arg_str(f, "instance"), *state = arg_str(f, "state");
    if (!inst) return ZT_EINVAL; /* the caller's to-do list is GET /workflow/tasks */
    bool only_open = state && !strcmp(state, "open");
    if (state && !only_open && strcmp(state, "all")) return ZT_EINVAL;
    wf_inst in;
    int rc = wf_inst_get(w, txn, inst, &in);
    if (rc != ZT_OK) return rc;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    /* ids: the open ones, then (for all) those named in the history */
    char(*ids)[WF_ID + 1] = NULL;
    size_t n = 0, cap = 0;
    for (uint16_t i = 0; i < in.nopen; i++)
        if (!task_id_add(&ids, &n, &cap, in.open[i])) break;
    steps it;
    if (!only_open && steps_open(&it, w, txn, in.id) == ZT_OK) {
        wf_step s;
        while (steps_next(&it, &s)) {
            if (strlen(s.task) != WF_ID) continue;
            bool dup = false;
            for (size_t i = 0; i < n && !dup; i++) dup = !strcmp(ids[i], s.task);
            if (!dup && !task_id_add(&ids, &n, &cap, s.task)) break;
        }
        zt_cursor_close(it.cur);
    }
    int64_t now = zt_now_ms();
    for (size_t i = 0; items && i < n; i++) {
        wf_task t;
        if (wf_task_get(w, txn, ids[i], &t) != ZT_OK) continue;
        cJSON_AddItemToArray(items, wf_task_json(w, &t, now));
        wf_task_free(&t);
    }
    free(ids);
    wf_inst_free(&in);
    if (!items) {
        cJSON_Delete(o);
        return ZT_ENOMEM;
    }
    *result = o;
    return ZT_OK;
}

static int pause_svc(zt_req *req, const cJSON *args, cJSON **result, void *ud, bool pause)
{
    wf_op op;
    int rc = wf_op_begin(&op, ud, req);
    if (rc != ZT_OK) return rc;
    const char *id = arg_str(args, "instance");
    if (!id) id = arg_str(args, "id");
    if (!id) return ZT_EINVAL;
    rc = wf_pause(&op, id, pause);
    if (rc != ZT_OK) return svc_fail(req, pause ? "workflow.pause" : "workflow.resume", &op, rc);
    *result = NULL;
    return ZT_OK;
}

static int svc_pause(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return pause_svc(req, args, result, ud, true);
}

static int svc_resume(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return pause_svc(req, args, result, ud, false);
}

static int end_svc(zt_req *req, const cJSON *args, cJSON **result, void *ud, bool withdraw)
{
    wf_op op;
    int rc = wf_op_begin(&op, ud, req);
    if (rc != ZT_OK) return rc;
    const char *id = arg_str(args, "instance");
    if (!id) id = arg_str(args, "id");
    const char *reason = arg_str(args, "reason");
    if (!id || (reason && strlen(reason) > MAX_OPINION)) return ZT_EINVAL;
    wf_inst in;
    memset(&in, 0, sizeof in);
    rc = wf_withdraw(&op, id, withdraw, reason, withdraw ? WF_I_WITHDRAWN : WF_I_CANCELLED, &in);
    if (rc == ZT_OK) *result = wf_inst_json(ud, &in, false);
    wf_inst_free(&in);
    if (rc != ZT_OK)
        return svc_fail(req, withdraw ? "workflow.withdraw" : "workflow.cancel", &op, rc);
    return *result ? ZT_OK : ZT_ENOMEM;
}

static int svc_label(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf_op op;
    int rc = wf_op_begin(&op, ud, req);
    if (rc != ZT_OK) return rc;
    const char *id = arg_str(args, "instance"), *label = arg_str(args, "label"),
               *reason = arg_str(args, "reason");
    if (!id || !label || (reason && strlen(reason) > MAX_OPINION)) return ZT_EINVAL;
    wf_inst in;
    memset(&in, 0, sizeof in);
    rc = wf_relabel(&op, id, label, reason, &in);
    if (rc == ZT_OK) *result = wf_inst_json(ud, &in, false);
    wf_inst_free(&in);
    if (rc != ZT_OK) return svc_fail(req, "workflow.label", &op, rc);
    return *result ? ZT_OK : ZT_ENOMEM;
}

static int svc_cancel(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return end_svc(req, args, result, ud, false);
}

static int svc_withdraw(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    return end_svc(req, args, result, ud, true);
}

static int svc_workdays_add(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    (void)req;
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(args, "from");
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(args, "days");
    const cJSON *hours = cJSON_GetObjectItemCaseSensitive(args, "hours");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(args, "ms");
    if ((from && !cJSON_IsNumber(from)) || (days && !cJSON_IsNumber(days)) ||
        (hours && !cJSON_IsNumber(hours)) || (ms && !cJSON_IsNumber(ms)) ||
        (!days && !hours && !ms))
        return ZT_EINVAL;
    double span = (days ? days->valuedouble * 86400000.0 : 0) +
                  (hours ? hours->valuedouble * 3600000.0 : 0) + (ms ? ms->valuedouble : 0);
    if (!(fabs(span) <= 3650 * 86400000.0)) return ZT_EINVAL;
    int64_t t0 = from ? (int64_t)from->valuedouble : zt_now_ms();
    int64_t t = wf_cal_add(&w->cal, t0, (int64_t)llround(span));
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddNumberToObject(o, "time", (double)t)) {
        cJSON_Delete(o);
        return ZT_ENOMEM;
    }
    int32_t day = wf_cal_day(&w->cal, t);
    cJSON_AddBoolToObject(o, "workday", wf_cal_is_workday(&w->cal, day));
    *result = o;
    return ZT_OK;
}

/* {from, to} (ms) → {ms, days}: the working time between them (0 when to <= from). The
 * calendar is walked a day at a time on the event loop: like workdays_add, a range longer
 * than 3650 days is invalid input. */
static int svc_workdays_between(zt_req *req, const cJSON *args, cJSON **result, void *ud)
{
    wf *w = ud;
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(args, "from");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(args, "to");
    if (!cJSON_IsNumber(from) || !cJSON_IsNumber(to)) return ZT_EINVAL;
    if (!(to->valuedouble - from->valuedouble <= 3650 * 86400000.0)) {
        zt_req_log(req, ZT_LOG_INFO,
                   "workflow.workdays_between: from %.0f to %.0f is more "
                   "than 3650 days",
                   from->valuedouble, to->valuedouble);
        return ZT_EINVAL;
    }
    int64_t ms = wf_cal_between(&w->cal, (int64_t)from->valuedouble, (int64_t)to->valuedouble);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddNumberToObject(o, "ms", (double)ms) ||
        !cJSON_AddNumberToObject(o, "days", (double)ms / 86400000.0)) {
        cJSON_Delete(o);
        return ZT_ENOMEM;
    }
    *result = o;
    return ZT_OK;
}

/* ---- timers --------------------------------------------------------------------------- */

static int on_timer(zt_req *ctx, const zt_event *ev, void *ud)
{
    wf_op op;
    int rc = wf_op_begin(&op, ud, ctx);
    if (rc != ZT_OK) return rc;
    rc = wf_timer_fired(&op, ev);
    if (rc != ZT_OK) zt_req_log(ctx, ZT_LOG_ERROR, "%s: %s", ev->topic, op.why);
    return rc;
}

/* ---- declaring everything ------------------------------------------------------------- */

int wf_api_init(wf *w)
{
    zt_plugin *p = w->p;
    const zt_route routes[] = {
        {"GET", "/workflow/definitions", get_definitions, w, ZT_ROLE_USER, 0,
         "Workflow definitions: name, title, current version, owning plugin"},
        {"GET", "/workflow/definitions/:name", get_definition, w, ZT_ROLE_USER, 0,
         "One definition with its nodes"},
        {"POST", "/workflow/instances", post_instances, w, ZT_ROLE_USER, 0,
         "Start an instance {definition, data, business_key, priority} (the definition's "
         "starters)"},
        {"GET", "/workflow/instances/:id", get_instance, w, ZT_ROLE_USER, 0,
         "One instance (its initiator, handlers, supervisors)"},
        {"GET", "/workflow/instances/:id/history", get_history, w, ZT_ROLE_USER, 0,
         "Every step of an instance: who, when, what, opinion"},
        {"POST", "/workflow/instances/:id/withdraw", post_withdraw, w, ZT_ROLE_USER, 0,
         "Withdraw by the initiator while no task has been handled"},
        {"POST", "/workflow/instances/:id/label", post_label, w, ZT_ROLE_USER, 0,
         "Another security label {label, reason}: raised by a handler or a supervisor, "
         "lowered by a supervisor"},
        {"GET", "/workflow/tasks", get_tasks, w, ZT_ROLE_USER, 0,
         "The caller's to-do list across plugins: overdue, nearest deadline, priority "
         "(?limit=&after=)"},
        {"GET", "/workflow/tasks/:id", get_task, w, ZT_ROLE_USER, 0, "One task"},
        {"POST", "/workflow/tasks/:id/claim", post_claim, w, ZT_ROLE_USER, 0,
         "Claim a task of one's role pool"},
        {"POST", "/workflow/tasks/:id/complete", post_complete, w, ZT_ROLE_USER, 0,
         "Complete a task {decision, opinion, form}"},
        {"POST", "/workflow/tasks/:id/return", post_return, w, ZT_ROLE_USER, 0,
         "Return to an earlier node {node, opinion} (驳回)"},
        {"POST", "/workflow/tasks/:id/delegate", post_delegate, w, ZT_ROLE_USER, 0,
         "Delegate a task to someone {to, opinion} (委托)"},
        {"GET", "/workflow/stats", get_stats, w, ZT_ROLE_USER, 0,
         "Instances by state, on-time rate, mean and p90 duration, by definition and "
         "department (?from=&to=&definition=&department=)"},
    };
    int rc;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if ((rc = zt_route_add(p, &routes[i])) != ZT_OK) return rc;
    const struct {
        const char *name;
        zt_service_fn fn;
    } svcs[] = {
        {"workflow.start", svc_start},
        {"workflow.instance", svc_instance},
        {"workflow.definition", svc_definition},
        {"workflow.task_action", svc_task_action},
        {"workflow.tasks", svc_tasks},
        {"workflow.pause", svc_pause},
        {"workflow.resume", svc_resume},
        {"workflow.cancel", svc_cancel},
        {"workflow.withdraw", svc_withdraw},
        {"workflow.label", svc_label},
        {"workflow.workdays_add", svc_workdays_add},
        {"workflow.workdays_between", svc_workdays_between},
    };
    for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++)
        if ((rc = zt_provide(p, svcs[i].name, svcs[i].fn, w)) != ZT_OK) {
            zt_log(p, ZT_LOG_ERROR, "cannot provide %s: %s", svcs[i].name, zt_strerror(rc));
            return rc;
        }
    if ((rc = zt_on(p, "_workflow.due", on_timer, w)) != ZT_OK ||
        (rc = zt_on(p, "_workflow.remind", on_timer, w)) != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "cannot subscribe to its timers: %s", zt_strerror(rc));
        return rc;
    }
    return ZT_OK;
}
