/* main.c: the zhengtong command: serve, check, test, backup, standby, admin, audit, version. */
#include "core.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

static const char usage[] =
    "usage: zhengtong <command> [-c FILE] [args]\n"
    "  serve  [-c FILE]        run the node (default config: conf/zhengtong.conf)\n"
    "  check  [-c FILE]        check the config and start every plugin without serving\n"
    "  test   [-c FILE] [PLUGIN...]   run the Lua plugins' tests (lua/plugins/<name>/tests/*.lua)\n"
    "  backup [-c FILE] DEST   hot, compacted copy of the data into the new folder DEST\n"
    "  standby [-c FILE] tcp://PRIMARY:PORT   follow the primary's replication.listen, applying\n"
    "                          its changes to data_dir (seeded from its backup); serves nothing\n"
    "  standby [-c FILE] status   what the standby on data_dir last said: applied, behind, lag\n"
    "  admin  [-c FILE] user add LOGIN NAME DEPT [ROLE,ROLE...]   (prints a one-time password)\n"
    "                   user passwd|disable|enable LOGIN\n"
    "                   user roles LOGIN ROLE,ROLE...|-\n"
    "                   user totp-off LOGIN                (a lost phone: sign-in codes off)\n"
    "                   user rename LOGIN NEWLOGIN         (a staff login, e.g. the first admin)\n"
    "                   user clearance LOGIN LABEL         (a label of auth.labels: 安全标记)\n"
    "                   user reseal LOGIN | dept reseal CODE   (trust again a record changed\n"
    "                                                      outside Zhengtong, once checked)\n"
    "                   user ... --recover                 (auth.separate_duties: root acts on an\n"
    "                                                      auditor's account, which the auditors\n"
    "                                                      manage: the first auditor, a recovery)\n"
    "                   user list | dept list | key list\n"
    "                   dept add CODE NAME [PARENT]\n"
    "                   key add NAME PLUGIN ROLE [DAYS] [CLEARANCE]   (an API key for a device\n"
    "                                                      or node; DAYS: it works that many\n"
    "                                                      days; CLEARANCE: a label of\n"
    "                                                      auth.labels, else the default)\n"
    "                   key revoke ID\n"
    "                   role list | role remove NAME\n"
    "                   role add NAME DESCRIPTION          (a role a script computes)\n"
    "  audit  [-c FILE] verify                 recompute the audit chain and its checkpoints\n"
    "                   export SEQ|DATE FILE   write the oldest records, through record SEQ or\n"
    "                                          from before DATE (YYYY-MM-DD, Beijing time;\n"
    "                                          whole batches), to a new archive FILE\n"
    "                   prune FILE             remove the records archive FILE holds from the\n"
    "                                          log, once it has checked them\n"
    "  audit  check FILE       check an archive on its own (no config, no data folder)\n"
    "  audit  show FILE        check it, then print its records, one JSON object a line\n"
    "  version                 print the version and the plugin ABI\n";

/* The command lines `admin` and `audit` take, checked before anything is opened: a
 * mistyped line is a usage error (exit 2) that touches no data. min/max count the words
 * after the command. */
static const struct shape {
    const char *cmd, *sub, *verb;
    int min, max;
    const char *usage;
} shapes[] = {
    {"admin", "user", "add", 5, 6, "admin [-c FILE] user add LOGIN NAME DEPT [ROLE,ROLE...]"},
    {"admin", "user", "passwd", 3, 3, "admin [-c FILE] user passwd LOGIN"},
    {"admin", "user", "disable", 3, 3, "admin [-c FILE] user disable LOGIN"},
    {"admin", "user", "enable", 3, 3, "admin [-c FILE] user enable LOGIN"},
    {"admin", "user", "roles", 4, 4, "admin [-c FILE] user roles LOGIN ROLE,ROLE...|-"},
    {"admin", "user", "list", 2, 2, "admin [-c FILE] user list"},
    {"admin", "dept", "add", 4, 5, "admin [-c FILE] dept add CODE NAME [PARENT]"},
    {"admin", "dept", "list", 2, 2, "admin [-c FILE] dept list"},
    {"admin", "user", "totp-off", 3, 3, "admin [-c FILE] user totp-off LOGIN"},
    {"admin", "user", "rename", 4, 4, "admin [-c FILE] user rename LOGIN NEWLOGIN"},
    {"admin", "user", "clearance", 4, 4, "admin [-c FILE] user clearance LOGIN LABEL"},
    {"admin", "user", "reseal", 3, 3, "admin [-c FILE] user reseal LOGIN"},
    {"admin", "dept", "reseal", 3, 3, "admin [-c FILE] dept reseal CODE"},
    {"admin", "key", "add", 5, 7, "admin [-c FILE] key add NAME PLUGIN ROLE [DAYS] [CLEARANCE]"},
    {"admin", "key", "list", 2, 2, "admin [-c FILE] key list"},
    {"admin", "key", "revoke", 3, 3, "admin [-c FILE] key revoke ID"},
    {"admin", "role", "list", 2, 2, "admin [-c FILE] role list"},
    {"admin", "role", "add", 4, 4, "admin [-c FILE] role add NAME DESCRIPTION"},
    {"admin", "role", "remove", 3, 3, "admin [-c FILE] role remove NAME"},
    {"audit", "verify", NULL, 1, 1, "audit [-c FILE] verify"},
    {"audit", "export", NULL, 3, 3, "audit [-c FILE] export SEQ|YYYY-MM-DD FILE"},
    {"audit", "prune", NULL, 2, 2, "audit [-c FILE] prune FILE"},
    {"audit", "check", NULL, 2, 2, "audit check FILE"},
    {"audit", "show", NULL, 2, 2, "audit show FILE"},
};

/* 0 if args fit a shape of cmd; else prints why on stderr and returns 2. */
static int check_shape(const char *cmd, char **args, int nargs)
{
    const struct shape *near = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const struct shape *sh = &shapes[i];
        if (strcmp(sh->cmd, cmd) != 0 || nargs < 1 || strcmp(sh->sub, args[0]) != 0) continue;
        if (sh->verb && (nargs < 2 || strcmp(sh->verb, args[1]) != 0)) continue;
        if (nargs >= sh->min && nargs <= sh->max) return 0;
        near = sh;
    }
    if (near) {
        fprintf(stderr, "zhengtong: usage: zhengtong %s\n", near->usage);
    } else {
        fprintf(stderr, "zhengtong: %s takes one of:\n", cmd);
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            if (strcmp(shapes[i].cmd, cmd) == 0)
                fprintf(stderr, "  zhengtong %s\n", shapes[i].usage);
    }
    return 2;
}

#ifdef ZT_BENCH_NO_AUDIT
#define BENCH_NO_AUDIT " BENCHMARK BUILD: changes are NOT audited"
#else
#define BENCH_NO_AUDIT ""
#endif

static int cmd_serve(zt_conf *conf)
{
    if (BENCH_NO_AUDIT[0])
        zt__log(ZT_LOG_WARN, NULL, NULL,
                "built with ZT_BENCH_NO_AUDIT: changes are NOT audited; for benchmarks only");
    char err[ZT_ERRLEN] = "";
    int lock_fd;
    if (zt__conf_check_dirs(conf, true, err, sizeof err) != ZT_OK ||
        zt__store_claim(conf->data_dir, &lock_fd, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "zhengtong: %s\n", err);
        return 1;
    }
    zt_server srv = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    srv.loop = &loop;
    int rc = zt__server_open(&srv, conf, conf->data_dir, err, sizeof err);
    if (rc == ZT_OK) rc = zt__server_listen(&srv, err, sizeof err);
    if (rc != ZT_OK) {
        fprintf(stderr, "zhengtong: %s\n", err[0] ? err : zt_strerror(rc));
        zt__server_close(&srv);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        close(lock_fd);
        return 1;
    }
    zt__log(ZT_LOG_INFO, NULL, NULL, "node %s serving on %s with %zu plugins and %zu routes",
            conf->node_name, conf->listen[0], srv.nplugins, zt__router_count(srv.router));
    uv_run(&loop, UV_RUN_DEFAULT);
    zt__server_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT); /* close callbacks of anything the plugins closed */
    if (uv_loop_close(&loop) != 0) zt__log(ZT_LOG_WARN, NULL, NULL, "handles left open at exit");
    zt__log(ZT_LOG_INFO, NULL, NULL, "stopped");
    close(lock_fd); /* only now may another node serve the folder */
    return 0;
}

/* `check` starts every plugin against a scratch store, so it never changes live data; it
 * reads the live store only to see that the key file is its master key. */
static int cmd_check(zt_conf *conf)
{
    zt_scratch s;
    char err[ZT_ERRLEN] = "";
    if (zt__conf_check_dirs(conf, true, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = zt__scratch_open(&s, conf, "check", false, err, sizeof err);
    if (rc == ZT_OK) zt__roles_warn_2fa(&s.srv, NULL);
    size_t nroutes = s.srv.router ? zt__router_count(s.srv.router) : 0;
    size_t nplugins = s.srv.nplugins;
    zt__scratch_close(&s);
    if (rc != ZT_OK) {
        fprintf(stderr, "%s\n", err[0] ? err : zt_strerror(rc));
        return 1;
    }
    /* the live data and its key file, as serve will open them (a backup restored without
     * its key, or with another one, passed check and then failed to start) */
    if ((rc = zt__server_check_key(conf, err, sizeof err)) != ZT_OK ||
        (rc = zt__syslog_check(conf, err, sizeof err)) != ZT_OK) {
        fprintf(stderr, "zhengtong: %s\n", err[0] ? err : zt_strerror(rc));
        return 1;
    }
    printf("%s: OK: node %s, %zu plugins, %zu routes\n", conf->file, conf->node_name, nplugins,
           nroutes);
    struct stat st; /* a new node, or a mistyped path: say which folder the start will make */
    if (stat(conf->data_dir, &st) != 0 && errno == ENOENT)
        printf("  data_dir %s does not exist yet: the first start makes it\n", conf->data_dir);
    return 0;
}

static void print_archive(const char *what, const char *path, const zt_archive_info *in)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, in->digest, 32);
    printf("%s %s: records %llu..%llu (%llu), %llu signed checkpoints, node %s\n"
           "  its BLAKE2b-256: %s\n",
           what, path, (unsigned long long)in->after_seq + 1, (unsigned long long)in->last_seq,
           (unsigned long long)in->records, (unsigned long long)in->checkpoints, in->node, hex);
    if (in->signed_through && in->signed_through < in->last_seq)
        printf("  records %llu..%llu come after its last signed checkpoint (record %llu): no "
               "signature in it covers them\n",
               (unsigned long long)in->signed_through + 1, (unsigned long long)in->last_seq,
               (unsigned long long)in->signed_through);
}

/* `check FILE` reads only the file: an auditor checks an archive anywhere. What it can
 * vouch for is what a checkpoint signed; the node key of the first line is a claim that
 * anyone writing such a file makes as they like. */
static int cmd_audit_check(const char *path)
{
    char err[ZT_ERRLEN] = "";
    zt_archive_info in;
    int rc = sodium_init() < 0 ? ZT_ERROR : zt__audit_archive_check(path, &in, err, sizeof err);
    if (rc != ZT_OK) { /* a file that cannot be read is not a broken archive */
        fprintf(stderr, "zhengtong: %s%s\n", rc == ZT_EINVAL ? "archive BROKEN: " : "",
                err[0] ? err : "libsodium failed");
        return 1;
    }
    char key[ZT__B64URL_LEN(32)], last[65];
    zt__b64url_encode(key, in.node_key, 32);
    sodium_bin2hex(last, sizeof last, in.last_hash, 32);
    print_archive(in.checkpoints ? "archive OK" : "archive UNSIGNED", path, &in);
    if (in.checkpoints)
        printf("  signed by node key %s (compare: GET /audit/checkpoints, node_key) through "
               "record %llu\n",
               key, (unsigned long long)in.signed_through);
    else
        printf("  WARNING: it holds no signed checkpoint: nothing in it is authenticated. Its "
               "records\n  chain together, but anyone can write such a file, and the node key "
               "its first line\n  names (%s) is only a claim.\n",
               key);
    if (!in.checkpoints || in.signed_through < in.last_seq)
        printf("  A signed checkpoint after record %llu vouches for %s: in the archive that "
               "follows\n  (it begins after hash %s) or in the node's log.\n",
               (unsigned long long)in.last_seq, in.checkpoints ? "those records" : "them", last);
    return 0;
}

/* `show FILE`: the records of a checked archive, as text an auditor reads. */
static int cmd_audit_show(const char *path)
{
    char err[ZT_ERRLEN] = "";
    if (sodium_init() < 0 || zt__audit_archive_show(path, stdout, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "zhengtong: %s\n", err[0] ? err : "libsodium failed");
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

/* "YYYY-MM-DD" as the ms of its first moment in Beijing time (UTC+8, the counties' clock). */
static bool before_date(const char *s, uint64_t *ms)
{
    int y, m, d, n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || y < 1970 ||
        m < 1 || m > 12 || d < 1)
        return false;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] + (m == 2 && leap)) return false;
    /* days since 1970-01-01 (H. Hinnant's days_from_civil) */
    int yy = y - (m <= 2), era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t days = (int64_t)era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    *ms = (uint64_t)(days * 86400000 - 8 * 3600000);
    return true;
}

/* export's SEQ (a record's sequence number) or DATE: the bound it sets, the other
 * UINT64_MAX; false if it is neither. */
static bool export_bound(const char *s, unsigned long long *through, uint64_t *before)
{
    *through = *before = UINT64_MAX;
    if (before_date(s, before)) return true;
    char *end;
    errno = 0;
    *through = strtoull(s, &end, 10);
    return s[0] >= '0' && s[0] <= '9' && !*end && !errno && *through > 0;
}

/* The audit record of a copy just made of what the county holds (a backup: every record;
 * an audit export: the log's oldest records), by root on the node's machine: who took it
 * and where to is recorded as any change is (the copy itself does not hold it). what: the
 * action; object: where (and what). */
static int record_copy(zt_server *srv, const char *what, const char *object, const char *dest,
                       char *err, size_t errlen)
{
    char actor[80];
    snprintf(actor, sizeof actor, "cli:%s", zt__cli_user());
    zt_txn *t;
    int rc = zt__store_write_begin(srv->store, &t);
    if (rc == ZT_OK) {
        zt_audit_entry e = {.actor = actor, .plugin = "core", .action = what, .object = object};
        rc = zt__store_write_done(srv->store, t, zt__audit_append(srv, t, &e));
    }
    if (rc != ZT_OK)
        snprintf(err, errlen, "the %s in %s was made, but its audit record was not written: %s",
                 what, dest, zt_strerror(rc));
    return rc;
}

static int cmd_audit(zt_server *srv, int argc, char **argv, char *err, size_t errlen)
{
    const char *sub = argv[0];
    int rc;
    zt_archive_info in;
    if (strcmp(sub, "verify") == 0 && argc == 1) {
        zt_txn *t;
        zt_audit_report r;
        if ((rc = zt__store_read_begin(srv->store, &t)) != ZT_OK) return rc;
        rc = zt__audit_verify(srv, t, &r);
        if (rc == ZT_OK) rc = zt__audit_verify_checkpoints(srv, t, &r);
        zt__store_end(srv->store, t, false);
        if (rc != ZT_OK) return rc;
        if (r.first_bad) {
            printf("audit log BROKEN at record %llu: %s (%llu records verified before it)\n",
                   (unsigned long long)r.first_bad, r.reason, (unsigned long long)r.records);
            return ZT_EINVAL;
        }
        printf("audit log OK: %llu records, %llu signed checkpoints", (unsigned long long)r.records,
               (unsigned long long)r.checkpoints);
        if (r.pruned_through)
            printf(" (records 1..%llu are in archives)", (unsigned long long)r.pruned_through);
        printf("\n");
        return ZT_OK;
    }
    if (strcmp(sub, "export") == 0 && argc == 3) {
        unsigned long long through;
        uint64_t before;
        export_bound(argv[1], &through, &before); /* main refused one that is neither */
        if ((rc = zt__audit_export(srv, through, before, argv[2], &in, err, errlen)) != ZT_OK)
            return rc;
        print_archive("exported to", argv[2], &in);
        /* the archive holds who did what to whom: taking it is recorded (GB/T 22239 审计管理:
         * the audit administrator's operations are audited too) */
        char where[PATH_MAX], object[PATH_MAX + 64];
        snprintf(object, sizeof object, "records %llu..%llu to %s",
                 (unsigned long long)in.after_seq + 1, (unsigned long long)in.last_seq,
                 realpath(argv[2], where) ? where : argv[2]);
        return record_copy(srv, "audit export", object, argv[2], err, errlen);
    }
    if (strcmp(sub, "prune") == 0 && argc == 2) {
        char actor[80];
        snprintf(actor, sizeof actor, "cli:%s", zt__cli_user());
        if ((rc = zt__audit_prune(srv, argv[1], actor, &in, err, errlen)) == ZT_OK)
            print_archive("pruned the records of", argv[1], &in);
        return rc;
    }
    snprintf(err, errlen, "usage: zhengtong audit [-c FILE] verify | export SEQ FILE | prune FILE");
    return ZT_EINVAL;
}

static int record_backup(zt_server *srv, const char *dest, char *err, size_t errlen)
{
    char where[PATH_MAX], object[PATH_MAX + 16];
    snprintf(object, sizeof object, "to %s", realpath(dest, where) ? where : dest);
    return record_copy(srv, "backup", object, dest, err, errlen);
}

enum offline { OFFLINE_ADMIN, OFFLINE_AUDIT, OFFLINE_BACKUP_RECORD };

/* Offline commands open the core's own services on the live data (LMDB is safe to share
 * with a running node: writes take turns). */
static int cmd_offline(zt_conf *conf, enum offline what, bool recover, int argc, char **argv)
{
    char err[ZT_ERRLEN] = "";
    char mdb[4096];
    struct stat st;
    if (zt__conf_check_dirs(conf, false, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    snprintf(mdb, sizeof mdb, "%s/data.mdb", conf->data_dir);
    if (stat(mdb, &st) != 0 && errno == ENOENT) {
        /* never make a data folder (and its admin) as a side effect of a command */
        fprintf(stderr,
                "zhengtong: data_dir %s holds no data (no %s): `zhengtong serve -c %s` creates "
                "it on its first start\n",
                conf->data_dir, mdb, conf->file);
        return 1;
    }
    errno = 0;
    if (stat(mdb, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "zhengtong: data_dir %s: %s %s\n", conf->data_dir, mdb,
                errno ? strerror(errno) : "is not a file");
        return 1;
    }
    zt_server srv = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    srv.loop = &loop;
    /* what reads only may run on a standby's folder: the lists, audit verify; export signs
     * the log's head first (a checkpoint: a change) */
    bool export = what == OFFLINE_AUDIT && strcmp(argv[0], "export") == 0;
    srv.changes = what == OFFLINE_ADMIN   ? !(argc == 2 && strcmp(argv[1], "list") == 0)
                  : what == OFFLINE_AUDIT ? strcmp(argv[0], "verify") != 0
                                          : true;
    int rc = zt__server_open_core(&srv, conf, conf->data_dir, err, sizeof err);
    if (rc == ZT_ESTATE && srv.standby_of[0] && what == OFFLINE_BACKUP_RECORD) {
        /* the copy is made; its record would be a change the primary never made */
        printf("data_dir %s is a standby of %s: the backup's audit record is not written here "
               "(it would make the standby differ from the primary, whose change sets would "
               "then fail to apply)\n",
               conf->data_dir, srv.standby_of);
        rc = ZT_OK;
        err[0] = '\0';
    } else if (rc == ZT_ESTATE && srv.standby_of[0] && export) {
        snprintf(err + strlen(err), sizeof err - strlen(err),
                 " (audit export signs the log's head before it exports: a change)");
    } else if (rc == ZT_OK && what == OFFLINE_ADMIN)
        rc = zt__auth_cli(&srv, argc, argv, recover, stdout, err, sizeof err);
    else if (rc == ZT_OK && what == OFFLINE_AUDIT)
        rc = cmd_audit(&srv, argc, argv, err, sizeof err);
    else if (rc == ZT_OK && !srv.standby_of[0])
        rc = record_backup(&srv, argv[0], err, sizeof err);
    zt__server_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (rc != ZT_OK && err[0]) fprintf(stderr, "zhengtong: %s\n", err);
    return rc == ZT_OK ? 0 : 1;
}

static int cmd_backup(zt_conf *conf, const char *dest)
{
    char err[ZT_ERRLEN] = "";
    if (zt__conf_check_dirs(conf, false, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = zt__store_backup(conf->data_dir, dest, err, sizeof err);
    if (rc != ZT_OK) {
        fprintf(stderr, "zhengtong backup: %s\n", err[0] ? err : zt_strerror(rc));
        return 1;
    }
    printf("backed up %s to %s\n", conf->data_dir, dest);
    char *argv[] = {(char *)dest};
    return cmd_offline(conf, OFFLINE_BACKUP_RECORD, false, 1, argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("zhengtong %s (plugin ABI %d.%d)%s\n", ZT_VERSION, ZT_ABI_VERSION, ZT_ABI_MINOR,
               BENCH_NO_AUDIT);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    const char *file = "conf/zhengtong.conf";
    char *args[16];
    int nargs = 0;
    bool recover = false; /* admin: root acts on an auditor's account (auth.separate_duties) */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout); /* `zhengtong admin --help` */
            return 0;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "zhengtong: -c needs a FILE (the config)\n%s", usage);
                return 2;
            }
            file = argv[++i];
        } else if (strcmp(argv[i], "--recover") == 0 && strcmp(cmd, "admin") == 0) {
            recover = true;
        } else if ((argv[i][0] == '-' && argv[i][1]) || nargs == 16) {
            fprintf(stderr, "zhengtong: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        } else {
            args[nargs++] = argv[i];
        }
    }
    bool serve = strcmp(cmd, "serve") == 0, check = strcmp(cmd, "check") == 0,
         backup = strcmp(cmd, "backup") == 0, admin = strcmp(cmd, "admin") == 0,
         audit = strcmp(cmd, "audit") == 0, test = strcmp(cmd, "test") == 0,
         standby = strcmp(cmd, "standby") == 0;
    if (!serve && !check && !backup && !admin && !audit && !test && !standby) {
        fprintf(stderr, "zhengtong: unknown command '%s'\n%s", cmd, usage);
        return 2;
    }
    if ((backup && nargs != 1) || ((serve || check) && nargs != 0) || (standby && nargs != 1)) {
        fputs(usage, stderr);
        return 2;
    }
    if ((admin || audit) && check_shape(cmd, args, nargs)) return 2;
    unsigned long long seq;
    uint64_t ms;
    if (audit && strcmp(args[0], "export") == 0 && !export_bound(args[1], &seq, &ms)) {
        fprintf(stderr,
                "zhengtong: export: '%s' is neither a record's sequence number nor a date "
                "(YYYY-MM-DD)\nzhengtong: usage: zhengtong audit [-c FILE] export "
                "SEQ|YYYY-MM-DD FILE\n",
                args[1]);
        return 2;
    }
    if (audit && nargs == 2 && strcmp(args[0], "check") == 0) return cmd_audit_check(args[1]);
    if (audit && nargs == 2 && strcmp(args[0], "show") == 0) return cmd_audit_show(args[1]);
    zt_conf conf = {0};
    char err[ZT_ERRLEN] = "";
    if (zt__conf_load(file, &conf, err, sizeof err) != ZT_OK) {
        fprintf(stderr, "%s\n", err[0] ? err : "cannot read the config");
        zt__conf_free(&conf);
        return 1;
    }
    zt__log_level = conf.log_level;
    int rc = serve     ? cmd_serve(&conf)
             : standby ? (strcmp(args[0], "status") == 0 ? zt__standby_status(&conf)
                                                         : zt__standby_run(&conf, args[0]))
             : check   ? cmd_check(&conf)
             : test    ? zt__luatest(&conf, args, nargs)
             : backup
                 ? cmd_backup(&conf, args[0])
                 : cmd_offline(&conf, admin ? OFFLINE_ADMIN : OFFLINE_AUDIT, recover, nargs, args);
    zt__conf_free(&conf);
    return rc;
}
