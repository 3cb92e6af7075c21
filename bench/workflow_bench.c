/* workflow_bench.c: the wfbench plugin: starts and completes workflow instances in process. */
#include <zt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const requires[] = {"workflow", NULL};
static const char *const needs[] = {"workflow.start", "workflow.task_action", "workflow.instance",
                                    NULL};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Complete one task; the ids of the tasks it opened go to out (at most 2). */
static int complete(zt_req *req, cJSON *args, const char *task, char out[2][27], int *nout)
{
    cJSON_SetValuestring(cJSON_GetObjectItemCaseSensitive(args, "task"), task);
    cJSON *res;
    int rc = zt_call(req, "workflow.task_action", args, &res);
    if (rc != ZT_OK) return rc;
    *nout = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res, "new_tasks"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (*nout < 2 && cJSON_IsString(id)) snprintf(out[(*nout)++], 27, "%s", id->valuestring);
    }
    cJSON_Delete(res);
    return ZT_OK;
}

/* POST /wfbench/run?n=N&definition=bench3: N instances of A, then B ∥ C, each started and
 * driven to its end, in this request's one transaction. */
static int run(zt_req *req, void *ud)
{
    (void)ud;
    const char *q = zt_req_query(req, "n");
    long n = q ? strtol(q, NULL, 10) : 1000;
    if (n < 1 || n > 200000)
        return zt_problem(req, 400, "invalid-input", "Invalid input", "n: 1 to 200000");
    q = zt_req_query(req, "definition");
    cJSON *start = cJSON_CreateObject(), *act = cJSON_CreateObject();
    cJSON_AddStringToObject(start, "definition", q ? q : "bench3");
    cJSON_AddStringToObject(act, "task", "");
    cJSON_AddStringToObject(act, "action", "complete");
    int rc = ZT_OK;
    char last[27] = "";
    double t0 = mono();
    for (long i = 0; i < n && rc == ZT_OK; i++) {
        cJSON *res;
        if ((rc = zt_call(req, "workflow.start", start, &res)) != ZT_OK) break;
        const cJSON *inst = cJSON_GetObjectItemCaseSensitive(res, "instance");
        const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(res, "tasks"), 0);
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(t, "id");
        char a[27];
        if (!cJSON_IsString(inst) || !cJSON_IsString(tid)) rc = ZT_ERROR;
        if (rc == ZT_OK) {
            snprintf(last, sizeof last, "%s", inst->valuestring);
            snprintf(a, sizeof a, "%s", tid->valuestring);
        }
        cJSON_Delete(res);
        char bc[2][27], none[2][27];
        int nbc = 0, nn;
        if (rc == ZT_OK) rc = complete(req, act, a, bc, &nbc);
        if (rc == ZT_OK && nbc != 2) rc = ZT_ERROR;
        for (int k = 0; k < nbc && rc == ZT_OK; k++) rc = complete(req, act, bc[k], none, &nn);
    }
    double secs = mono() - t0;
    /* the last instance must have ended */
    const char *state = "?";
    cJSON *args = cJSON_CreateObject(), *res = NULL;
    cJSON_AddStringToObject(args, "id", last);
    if (rc == ZT_OK && zt_call(req, "workflow.instance", args, &res) == ZT_OK) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(res, "state");
        if (cJSON_IsString(s)) state = s->valuestring;
    }
    cJSON *o = cJSON_CreateObject();
    if (rc == ZT_OK) {
        cJSON_AddNumberToObject(o, "instances", (double)n);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "per_second", (double)n / secs);
        cJSON_AddStringToObject(o, "last_state", state);
    }
    cJSON_Delete(res);
    cJSON_Delete(args);
    cJSON_Delete(start);
    cJSON_Delete(act);
    if (rc != ZT_OK) {
        cJSON_Delete(o);
        return zt_problem(req, 500, "bench-failed", "Benchmark failed", "%s", zt_strerror(rc));
    }
    rc = zt_respond_json(req, 200, o);
    cJSON_Delete(o);
    return rc;
}

static int init(zt_plugin *p)
{
    zt_route r = {"POST",
                  "/wfbench/run",
                  run,
                  p,
                  "bench",
                  0,
                  "Start and complete ?n= workflow instances in one transaction"};
    return zt_route_add(p, &r);
}

ZT_PLUGIN(.name = "wfbench", .version = "1.0.0",
          .description = "Benchmark driver of the workflow engine (bench/workflow_bench.py)",
          .requires = requires, .needs = needs, .init = init);
