/* workflow.c: the workflow engine plugin: options, databases, definitions, start and stop. */
#include "wf.h"

#include <stdlib.h>
#include <string.h>

static const zt_option options[] = {
    {.name = "holidays",
     .type = ZT_OPT_LIST,
     .def = "",
     .description = "days off on working days (法定节假日), \"YYYY-MM-DD\" each"},
    {.name = "workdays",
     .type = ZT_OPT_LIST,
     .def = "",
     .description = "weekend days that are working days (调休), \"YYYY-MM-DD\" each"},
    {.name = "utc_offset_minutes",
     .type = ZT_OPT_INT,
     .def = "480",
     .description = "the calendar's time zone as minutes east of UTC (Beijing: 480)"},
    {.name = "page_size",
     .type = ZT_OPT_INT,
     .def = "20",
     .description = "to-do list entries per page without ?limit="},
    {.name = "max_page",
     .type = ZT_OPT_INT,
     .def = "200",
     .description = "the largest ?limit= of the to-do list"},
    {.name = "sealed",
     .type = ZT_OPT_BOOL,
     .def = "false",
     .description = "keep instances, tasks and history in sealed databases (数据完整性: a "
                    "record changed outside the node is not read); once on, it stays on"},
    {0},
};

static int calendar(wf *w)
{
    int64_t off = zt_opt_int(w->p, "utc_offset_minutes");
    if (off < -14 * 60 || off > 14 * 60)
        return zt_option_fail(w->p, "utc_offset_minutes",
                              "%lld is not a time zone: minutes from UTC, -840 to 840 (480: "
                              "Beijing)",
                              (long long)off);
    w->cal.offset_ms = off * 60000;
    static const char *const lists[] = {"holidays", "workdays"};
    for (int l = 0; l < 2; l++) {
        size_t n = zt_opt_list_len(w->p, lists[l]);
        for (size_t i = 0; i < n; i++) {
            const char *s = zt_opt_list_item(w->p, lists[l], i);
            int32_t day;
            if (!*s) continue; /* the empty default */
            if (wf_cal_parse_date(s, &day) != 0)
                return zt_option_fail(w->p, lists[l],
                                      "item %zu, \"%s\", is not a date that exists (YYYY-MM-DD)",
                                      i + 1, s);
            if (wf_cal_add_date(&w->cal, day, l) != 0) return ZT_ENOMEM;
        }
    }
    return ZT_OK;
}

static void fini(zt_plugin *p)
{
    wf *w = zt_plugin_data(p);
    if (!w) return;
    wf_defs_free(w);
    wf_cal_free(&w->cal);
    free(w);
    zt_plugin_set_data(p, NULL);
}

static int init(zt_plugin *p)
{
    wf *w = calloc(1, sizeof *w);
    if (!w) return ZT_ENOMEM;
    w->p = p;
    zt_plugin_set_data(p, w);
    w->page_size = zt_opt_int(p, "page_size");
    w->max_page = zt_opt_int(p, "max_page");
    int rc = ZT_EINVAL;
    if (w->max_page < 1 || w->max_page > 1000) {
        rc = zt_option_fail(p, "max_page", "must be 1 to 1000, not %lld", (long long)w->max_page);
        goto fail;
    }
    if (w->page_size < 1 || w->page_size > w->max_page) {
        rc = zt_option_fail(p, "page_size", "must be 1 to max_page (%lld), not %lld",
                            (long long)w->max_page, (long long)w->page_size);
        goto fail;
    }
    if ((rc = calendar(w)) != ZT_OK) goto fail;
    /* sealed: what the instances are and decided, and the recorded sources of the versions
     * they run; the to-do index is not (an entry only points at a task, which is read,
     * sealed, before anything is shown or done) */
    bool sealed = zt_opt_bool(p, "sealed");
    const struct {
        const char *name;
        zt_db **db;
        bool sealed;
    } dbs[] = {{"definitions", &w->defs, sealed},
               {"instances", &w->inst, sealed},
               {"tasks", &w->task, sealed},
               {"todo", &w->todo, false},
               {"history", &w->hist, sealed}};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        rc = dbs[i].sealed ? zt_db_open_sealed(p, dbs[i].name, dbs[i].db)
                           : zt_db_open(p, dbs[i].name, dbs[i].db);
        if (rc == ZT_ESTATE && !dbs[i].sealed) {
            rc = zt_option_fail(p, "sealed",
                                "is false, but database %s was sealed when it was true: "
                                "sealed stays true once it has been",
                                dbs[i].name);
            goto fail;
        }
        if (rc != ZT_OK) {
            zt_log(p, ZT_LOG_ERROR, "cannot open database %s: %s", dbs[i].name, zt_strerror(rc));
            goto fail;
        }
    }
    if ((rc = zt_lua_new(p, &w->L)) != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "cannot make its Lua state: %s", zt_strerror(rc));
        goto fail;
    }
    char err[1024] = "";
    if ((rc = wf_defs_load(w, err, sizeof err)) != ZT_OK) {
        zt_log(p, ZT_LOG_ERROR, "%s", err);
        goto fail;
    }
    size_t n = 0;
    for (wf_def *d = w->files; d; d = d->next) n++;
    if ((rc = zt_role_declare(p, "workflow_supervisor",
                              "Sees every workflow instance and its statistics")) != ZT_OK)
        goto fail;
    if ((rc = wf_api_init(w)) != ZT_OK) goto fail;
    zt_log(p, ZT_LOG_INFO, "%zu workflow definitions loaded", n);
    return ZT_OK;
fail:
    fini(p);
    return rc;
}

ZT_PLUGIN(.name = "workflow", .version = "1.0.0",
          .description = "Workflow engine: Lua definitions, user and service tasks, gateways, "
                         "parallel split and join, deadlines on a working-day calendar, to-do "
                         "lists",
          .options = options, .init = init, .fini = fini);
