/* test_config.c: the config reader: sandbox, defaults, checks and their file:line messages. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

#define NAME "/srv/zt/conf/zt.conf"

static int load(const char *text, zt_conf *c, char *err)
{
    return zt__conf_load_buffer(NAME, text, strlen(text), c, err, ZT_ERRLEN);
}

/* The text must be refused with a message that contains `want`. */
static void refused(const char *text, const char *want)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    int rc = load(text, &c, err);
    if (rc == ZT_OK || !strstr(err, want))
        fail_msg("config:\n%s\nwanted an error with: %s\ngot rc %d: %s", text, want, rc, err);
    assert_int_equal(rc, ZT_EINVAL);
    assert_null(c.L); /* freed on error */
    assert_null(c.file);
}

static void defaults(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("-- nothing but a comment\n", &c, err), ZT_OK);
    assert_string_equal(c.file, NAME);
    assert_string_equal(c.node_name, "zhengtong");
    assert_string_equal(c.region_code, "000000");
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0], "127.0.0.1:8080");
    assert_string_equal(c.data_dir, "/srv/zt/conf/data");
    assert_int_equal(c.map_size, (size_t)4 << 30);
    assert_int_equal(c.log_level, ZT_LOG_INFO);
    assert_string_equal(c.plugin_dir, ZT_DEFAULT_PLUGIN_DIR);
    assert_string_equal(c.lua_dir, ZT_DEFAULT_LUA_DIR);
    assert_string_equal(c.web_dir, ZT_DEFAULT_WEB_DIR);
    assert_string_equal(c.key_file, "/srv/zt/conf/keys/master.key");
    assert_int_equal(c.header_bytes, 16384);
    assert_int_equal(c.body_bytes, 1048576);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.idle_timeout_ms, 75000);
    assert_int_equal(c.shutdown_timeout_ms, 10000);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.commit_wait_ms, 1);
    assert_int_equal(c.lua_instructions, 10000000);
    assert_int_equal(c.lua_memory, 64 << 20);
    assert_int_equal(c.auth_session_ms, 8 * 3600 * 1000);
    assert_int_equal(c.auth_idle_ms, 1800 * 1000);
    assert_int_equal(c.auth_max_failures, 5);
    assert_int_equal(c.auth_lock_seconds, 900);
    assert_int_equal(c.auth_pw_ops, 2);
    assert_int_equal(c.auth_pw_mem, 64 << 20);
    assert_int_equal(c.auth_pw_max_age_ms, INT64_C(90) * 86400 * 1000);
    assert_int_equal(c.auth_reg_per_hour, 20);
    assert_int_equal(c.auth_n2fa_roles, 0);
    assert_int_equal(c.audit_checkpoint_every, 1000);
    assert_int_equal(c.audit_checkpoint_ms, 300000);
    assert_int_equal(c.nplugins, 0);
    zt__conf_free(&c);
    assert_null(c.L);
    zt__conf_free(&c); /* harmless twice */
}

static void every_key_set(void **state)
{
    const char *text =
        "node_name = 'east-county'\n"
        "region_code = '330100'\n"
        "listen = { '0.0.0.0:80', '[::1]:8443' }\n"
        "data_dir = '../var/./data/'\n"
        "map_size = 2^30\n"
        "log_level = 'debug'\n"
        "plugin_dir = '/opt/zt/plugins'\n"
        "lua_dir = 'lua'\n"
        "web_dir = false\n"
        "limits = { header_bytes = 8192, body_bytes = 0, header_timeout = 2.5,\n"
        "           idle_timeout = 30, shutdown_timeout = 0.25, max_connections = 7,\n"
        "           commit_wait = 0 }\n"
        "lua = { instructions = 1e6, memory = 8 * 1024 * 1024 }\n"
        "auth = { session_ttl = 60, idle_timeout = 0.5, max_failures = 3,\n"
        "         lock_seconds = 10, password_ops = 1, password_memory = 8192,\n"
        "         password_max_age = 0, two_factor_roles = { 'admin', 'auditor' },\n"
        "         registrations_per_hour = 7 }\n"
        "audit = { checkpoint_every = 10, checkpoint_interval = 1.5 }\n"
        "key_file = '/etc/zt/master.key'\n"
        "plugins = { 'b', 'a' }\n";
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load(text, &c, err), ZT_OK);
    assert_string_equal(c.node_name, "east-county");
    assert_string_equal(c.region_code, "330100");
    assert_int_equal(c.nlisten, 2);
    assert_string_equal(c.listen[0], "0.0.0.0:80");
    assert_string_equal(c.listen[1], "[::1]:8443");
    assert_string_equal(c.data_dir, "/srv/zt/var/data");
    assert_int_equal(c.map_size, 1 << 30);
    assert_int_equal(c.log_level, ZT_LOG_DEBUG);
    assert_string_equal(c.plugin_dir, "/opt/zt/plugins");
    assert_string_equal(c.lua_dir, "/srv/zt/conf/lua");
    assert_null(c.web_dir);
    assert_int_equal(c.header_bytes, 8192);
    assert_int_equal(c.body_bytes, 0);
    assert_int_equal(c.header_timeout_ms, 2500);
    assert_int_equal(c.idle_timeout_ms, 30000);
    assert_int_equal(c.shutdown_timeout_ms, 250);
    assert_int_equal(c.max_connections, 7);
    assert_int_equal(c.commit_wait_ms, 0);
    assert_int_equal(c.lua_instructions, 1000000);
    assert_int_equal(c.lua_memory, 8 << 20);
    assert_int_equal(c.auth_session_ms, 60000);
    assert_int_equal(c.auth_idle_ms, 500);
    assert_int_equal(c.auth_max_failures, 3);
    assert_int_equal(c.auth_lock_seconds, 10);
    assert_int_equal(c.auth_pw_ops, 1);
    assert_int_equal(c.auth_pw_mem, 8192);
    assert_int_equal(c.auth_pw_max_age_ms, 0); /* the policy off */
    assert_int_equal(c.auth_reg_per_hour, 7);
    assert_int_equal(c.auth_n2fa_roles, 2);
    assert_string_equal(c.auth_2fa_roles[0], "admin");
    assert_string_equal(c.auth_2fa_roles[1], "auditor");
    assert_int_equal(c.audit_checkpoint_every, 10);
    assert_int_equal(c.audit_checkpoint_ms, 1500);
    assert_string_equal(c.key_file, "/etc/zt/master.key");
    assert_int_equal(c.nplugins, 2);
    assert_string_equal(c.plugins[0].name, "b");
    assert_string_equal(c.plugins[1].name, "a");
    assert_int_equal(c.plugins[0].line, 20);
    zt__conf_free(&c);
}

/* 0: checkpoints by count only (README; audit.c starts no timer for it) */
static void checkpoint_interval_zero(void **state)
{
    (void)state;
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("audit = { checkpoint_interval = 0 }\n", &c, err), ZT_OK);
    assert_int_equal(c.audit_checkpoint_ms, 0);
    zt__conf_free(&c);
    refused("audit = { checkpoint_interval = -1 }\n", "checkpoint_interval");
}

static void single_listen_string_and_locals(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("local port = 9000\nlisten = '127.0.0.1:' .. port\nnode_name = 'n'\n"
                          "region_code = node_name == 'n' and '110000' or '000000'\n",
                          &c, err),
                     ZT_OK);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0], "127.0.0.1:9000");
    assert_string_equal(c.region_code, "110000");
    zt__conf_free(&c);
}

static void type_errors_name_key_and_line(void **state)
{
    refused("\n\nnode_name = 5\n", NAME ":3: node_name must be a string, got number");
    refused("\nnode_name = ''\n", NAME ":2: node_name must be 1 to 128 bytes");
    refused("\nregion_code = 330100\n", NAME ":2: region_code must be a string of 6 digits: "
                                             "write it in quotes");
    refused("region_code = '3301'\n", NAME ":1: region_code must be 6 digits");
    refused("\n\n\nlisten = 8080\n",
            NAME ":4: listen must be a string or a list of strings (\"host:port\"), got number");
    refused("listen = { '127.0.0.1:80', 80 }\n",
            NAME ":1: listen must be a list of strings: item 2 is a number");
    refused("listen = { a = '127.0.0.1:80' }\n",
            "listen must be a list of strings, without names or holes");
    refused("listen = {}\n", "listen must name at least one address");
    refused("\nlisten = '127.0.0.1:0'\n", NAME ":2: listen: '127.0.0.1:0' is not");
    refused("listen = '127.0.0.1:65536'\n", "the port must be between 1 and 65535");
    refused("listen = '127.0.0.1'\n", "it has no :port");
    refused("listen = 'localhost:80'\n", "numeric IPv4");
    refused("listen = '[::1:80'\n", "[address]:port");
    refused("listen = { '127.0.0.1:80', '127.0.0.1:80' }\n", "is listed twice");
    refused("\ndata_dir = true\n", NAME ":2: data_dir must be a string (a folder), got boolean");
    refused("data_dir = ''\n", "data_dir must not be empty");
    refused("\n\nmap_size = 'big'\n", NAME ":3: map_size must be an integer (bytes), got string");
    refused("map_size = 1.5\n", "map_size must be an integer (bytes), got 1.5");
    refused("map_size = 1000\n", "map_size must be between 1048576 and");
    refused("\nlog_level = 'loud'\n", NAME ":2: log_level must be \"debug\", \"info\"");
    refused("log_level = 3\n", NAME ":1: log_level must be a string, got number");
    refused("plugin_dir = {}\n", NAME ":1: plugin_dir must be a string (a folder), got table");
    refused("\nlua_dir = 5\n", NAME ":2: lua_dir must be a string (a folder), got number");
    refused("web_dir = true\n", NAME ":1: web_dir must be a string (a folder) or false, got true");
    refused("limits = 5\n", NAME ":1: limits must be a table ({ name = value, ... }), got number");
    refused("limits = {\n  header_bytes = 2048,\n  body_bytes = 'x',\n}\n",
            NAME ":3: limits.body_bytes must be an integer (bytes), got string");
    refused("limits = { header_timeout = 'soon' }\n",
            NAME ":1: limits.header_timeout must be a number (seconds), got string");
    refused("limits = { idle_timeout = 0 }\n", "limits.idle_timeout must be between 0.001");
    refused("limits = { max_connections = 0 }\n", "limits.max_connections must be between 1");
    refused("limits = { commit_wait = 2 }\n",
            NAME ":1: limits.commit_wait must be 0, or between 0.001 and 1 (seconds, to the "
                 "millisecond), got 2");
    refused("limits = { commit_wait = -0.001 }\n", "limits.commit_wait must be 0, or between");
    refused("limits = { 16384 }\n", "limits must hold name = value entries");
    refused("lua = {\n\n  memory = '64M' }\n",
            NAME ":3: lua.memory must be an integer (bytes), got string");
    refused("lua = { instructions = 10 }\n", "lua.instructions must be between 1000");
    refused("auth = {\n  max_failures = 'five' }\n",
            NAME ":2: auth.max_failures must be an integer (failed logins), got string");
    refused("auth = { password_memory = 1024 }\n", "auth.password_memory must be between 8192");
    refused("auth = { session_ttl = -1 }\n", "auth.session_ttl must be between 0.001");
    refused("auth = { password_max_age = 11 * 366 * 86400 }\n",
            "auth.password_max_age must be 0, or between");
    refused("auth = {\n two_factor_roles = { 'admin', 'user' } }\n",
            NAME ":2: auth.two_factor_roles: 'user' is not a role name");
    refused("auth = { two_factor_roles = 'admin' }\n",
            "auth.two_factor_roles must be a list of strings, got string");
    refused("auth = { two_factor_role = { 'admin' } }\n",
            "unknown key 'two_factor_role' in auth (did you mean 'two_factor_roles'?)");
    refused("audit = { checkpoint_every = 0 }\n", "audit.checkpoint_every must be between 1");
    refused("\nkey_file = false\n", NAME ":2: key_file must be a string (a file), got boolean");
    refused("auth = { sesion_ttl = 1 }\n", "unknown key 'sesion_ttl' in auth (did you mean");
    refused("local t = {}\nfor i = 1, 65 do t[i] = '127.0.0.1:' .. i end\nlisten = t\n",
            NAME ":3: listen may name at most 64 addresses");
    refused("local t = {}\nfor i = 1, 257 do t[i] = 'p' .. i end\nplugins = t\n",
            NAME ":3: plugins may list at most 256");
    refused("plugins = 'hello'\n", NAME ":1: plugins must be a list of strings");
    refused("plugins = { 'a', 1 }\n", "plugins must be a list of strings: item 2 is a number");
    refused("plugins = {\n 'hello',\n 'hello' }\n", NAME ":2: plugin 'hello' is listed twice");
    refused("plugins = { 'Hello' }\n", "plugin name 'Hello' must be lowercase");
    refused("plugins = { '../x' }\n", "plugin name '../x' must be lowercase");
    refused("plugins = { 'limits' }\n", "'limits' is a core key, not a plugin name");
}

static void unknown_keys_suggest(void **state)
{
    refused("node_name = 'x'\nlisen = '127.0.0.1:80'\n",
            NAME ":2: unknown key 'lisen' (did you mean 'listen'?)");
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("\nzzzzzz = 1\n", &c, err), ZT_EINVAL);
    assert_string_equal(err, NAME ":2: unknown key 'zzzzzz'");
    /* a table named almost like a core key is a typo, not a plugin's options */
    refused("limit = { body_bytes = 1 }\n",
            NAME ":1: unknown key 'limit' (did you mean 'limits'?)");
    refused("plugins = { 'hello' }\nhelo = 5\n", "unknown key 'helo' (did you mean 'hello'?)");
    /* the first error in the file is the one reported */
    assert_int_equal(load("log_levl = 'info'\nlisen = 1\n", &c, err), ZT_EINVAL);
    assert_string_equal(err, NAME ":1: unknown key 'log_levl' (did you mean 'log_level'?)");
}

static void nested_unknown_key_line(void **state)
{
    refused("node_name = 'x'\nlimits = {\n  header_bytes = 2048,\n  body_byte = 5,\n}\n",
            NAME ":4: unknown key 'body_byte' in limits (did you mean 'body_bytes'?)");
    /* CR LF line ends count once, as Lua counts them */
    refused("-- dos\r\nlimits = {\r\n\r\n  idle_timout = 1 }\r\n",
            NAME ":4: unknown key 'idle_timout' in limits (did you mean 'idle_timeout'?)");
    refused("lua = { instructions = 5000,\n  memroy = 2^20 }\n",
            NAME ":2: unknown key 'memroy' in lua (did you mean 'memory'?)");
    /* not written as `key =`: the line of the assignment */
    refused("\nlimits = { [\"b\" .. \"x\"] = 1 }\n", NAME ":2: unknown key 'bx' in limits");
}

static void key_set_twice(void **state)
{
    refused("listen = '127.0.0.1:80'\n\nlisten = '127.0.0.1:81'\n",
            NAME ":3: 'listen' is set twice (first at line 1)");
    refused("x = nil\nx = nil\n", NAME ":2: 'x' is set twice (first at line 1)");
}

static void undefined_names(void **state)
{
    refused("\nlog_level = info\n",
            NAME ":2: 'info' is not defined (text must be quoted: \"info\")");
    refused("print('hi')\n", NAME ":1: 'print' is not defined");
    refused("node_name = string.upper('x')\n", "'string' is not defined");
    refused("_ENV[1] = 2\n", NAME ":1: only names can be set at the top level");
}

static void syntax_errors_have_lines(void **state)
{
    refused("node_name = 'x'\n\nlisten = = 3\n", NAME ":3:");
    refused("limits = {\n  body_bytes = 5\n", NAME ":3:"); /* '}' expected at the end */
    /* a name longer than Lua's 60-byte chunk names still comes out whole */
    char name[200];
    snprintf(name, sizeof name, "/very/long/path/%0100d/zhengtong.conf", 0);
    zt_conf c;
    char err[ZT_ERRLEN];
    const char *text = "\nnode_name = = 1\n";
    assert_int_equal(zt__conf_load_buffer(name, text, strlen(text), &c, err, sizeof err),
                     ZT_EINVAL);
    char want[300];
    snprintf(want, sizeof want, "%s:2:", name);
    assert_memory_equal(err, want, strlen(want));
    /* runtime errors too */
    text = "node_name = 'x'\nmap_size = {} + 1\n";
    assert_int_equal(zt__conf_load_buffer(name, text, strlen(text), &c, err, sizeof err),
                     ZT_EINVAL);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "arithmetic"));
    /* a precompiled chunk is refused: text only */
    refused("\x1bLua\x54\x00", "attempt to load a binary chunk");
}

static void runaway_configs_are_stopped(void **state)
{
    refused("node_name = 'x'\n\nwhile true do end\n", NAME ":3: the config ran for more than");
    refused("local function f() return f() end\nf()\n", NAME ":1: the config ran for more than");
    refused("local s = 'x'\nfor i = 1, 40 do s = s .. s end\n", "needs more memory");
    /* stack overflow or out of memory, whichever Lua meets first */
    refused("local function f() f() end f()\n", NAME ":");
}

static void relative_paths(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    /* more ".." than any checkout is deep: the result must stop at the root */
    char text[1024] = "data_dir = '../data'\nlua_dir = 'a/./b/../c//'\nweb_dir = '/'\n"
                      "plugin_dir = '..";
    for (int i = 0; i < 100; i++) strcat(text, "/..");
    strcat(text, "'\n");
    assert_int_equal(zt__conf_load_buffer("conf/zt.conf", text, strlen(text), &c, err, sizeof err),
                     ZT_OK);
    char cwd[4096], want[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s/data", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(c.data_dir, want);
    snprintf(want, sizeof want, "%s/conf/a/c", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(c.lua_dir, want);
    assert_string_equal(c.web_dir, "/");
    assert_string_equal(c.plugin_dir, "/"); /* never above the root */
    zt__conf_free(&c);

    assert_int_equal(zt__conf_load_buffer("zt.conf", "", 0, &c, err, sizeof err), ZT_OK);
    snprintf(want, sizeof want, "%s/data", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(c.data_dir, want);
    zt__conf_free(&c);
}

static void from_a_file(void **state)
{
    char dir[] = "/tmp/zt-conf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/zt.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("node_name = 'from-file'\ndata_dir = 'd'\n", f);
    fclose(f);
    zt_conf c;
    char err[ZT_ERRLEN], want[128];
    assert_int_equal(zt__conf_load(path, &c, err, sizeof err), ZT_OK);
    assert_string_equal(c.node_name, "from-file");
    snprintf(want, sizeof want, "%s/d", dir);
    assert_string_equal(c.data_dir, want);
    zt__conf_free(&c);
    unlink(path);
    assert_int_equal(zt__conf_load(path, &c, err, sizeof err), ZT_EIO);
    snprintf(want, sizeof want, "%s: cannot open: ", path);
    assert_memory_equal(err, want, strlen(want));
    rmdir(dir);
}

/* Run fn with stderr going to a file; return what was written (malloc'd). */
static char *capture_stderr(int (*fn)(void *), void *arg, int *rc)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    *rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    rewind(tmp);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

static int load_disabled(void *arg)
{
    char err[ZT_ERRLEN];
    return load("plugins = { 'hello' }\n\nnotice = { page_size = 5 }\n", arg, err);
}

static void options_of_a_disabled_plugin_warn(void **state)
{
    zt_conf c;
    int rc;
    int level = zt__log_level;
    zt__log_level = ZT_LOG_DEBUG;
    char *out = capture_stderr(load_disabled, &c, &rc);
    zt__log_level = level;
    assert_int_equal(rc, ZT_OK);
    assert_non_null(strstr(out, "\"level\":\"warn\""));
    assert_non_null(strstr(out, NAME ":3: options for plugin 'notice', which is not in plugins"));
    free(out);
    zt__conf_free(&c);
}

static const zt_option decl[] = {
    {"title", ZT_OPT_STRING, "你好", 0, "a greeting"},
    {"count", ZT_OPT_INT, "100", 0, "how many"},
    {"ratio", ZT_OPT_NUMBER, "2.5", 0, "a ratio"},
    {"open", ZT_OPT_BOOL, "true", 0, "open to all"},
    {"tags", ZT_OPT_LIST, "a, b ,c", 0, "tags"},
    {"secret", ZT_OPT_STRING, NULL, 0, "optional, no default"},
    {NULL, 0, NULL, 0, NULL},
};

static int options(const char *text, zt_optval **v, size_t *n, char *err)
{
    zt_conf c;
    int rc = load(text, &c, err);
    if (rc) return rc;
    rc = zt__conf_plugin_options(&c, "p", decl, v, n, err, ZT_ERRLEN);
    zt__conf_free(&c);
    return rc;
}

static void option_defaults(void **state)
{
    zt_optval *v;
    size_t n;
    char err[ZT_ERRLEN];
    assert_int_equal(options("plugins = { 'p' }\n", &v, &n, err), ZT_OK);
    assert_int_equal(n, 6);
    assert_string_equal(v[0].name, "title");
    assert_true(v[0].set);
    assert_string_equal(v[0].s, "你好");
    assert_int_equal(v[1].i, 100);
    assert_true(v[2].n == 2.5);
    assert_true(v[3].b);
    assert_int_equal(v[4].nlist, 3);
    assert_string_equal(v[4].list[0], "a");
    assert_string_equal(v[4].list[1], "b");
    assert_string_equal(v[4].list[2], "c");
    assert_false(v[5].set);
    assert_null(v[5].s);
    zt__optvals_free(v, n);
}

static void option_values(void **state)
{
    zt_optval *v;
    size_t n;
    char err[ZT_ERRLEN];
    assert_int_equal(options("plugins = { 'p' }\np = { title = 'hi', count = 3.0, ratio = 1,\n"
                             "  open = false, tags = {}, secret = 's' }\n",
                             &v, &n, err),
                     ZT_OK);
    assert_string_equal(v[0].s, "hi");
    assert_int_equal(v[1].i, 3);
    assert_true(v[2].n == 1.0);
    assert_true(v[3].set);
    assert_false(v[3].b);
    assert_true(v[4].set);
    assert_int_equal(v[4].nlist, 0);
    assert_string_equal(v[5].s, "s");
    zt__optvals_free(v, n);
}

static void option_errors(void **state)
{
    zt_optval *v = (void *)1;
    size_t n = 1;
    char err[ZT_ERRLEN];
    struct {
        const char *text, *want;
    } cases[] = {
        {"plugins = { 'p' }\np = {\n  title = 'x',\n  count = 'many',\n}\n",
         NAME ":4: p.count must be an integer, got string"},
        {"plugins = { 'p' }\np = { count = 1.5 }\n",
         NAME ":2: p.count must be an integer, got 1.5"},
        {"plugins = { 'p' }\np = {\n ratio = '1' }\n",
         NAME ":3: p.ratio must be a number, got string"},
        {"plugins = { 'p' }\np = { open = 1 }\n",
         NAME ":2: p.open must be a boolean (true or false), got number"},
        {"plugins = { 'p' }\np = { tags = 'a' }\n", NAME ":2: p.tags must be a list of strings"},
        {"plugins = { 'p' }\np = { tags = { 'a', {} } }\n", "item 2 is a table"},
        {"plugins = { 'p' }\np = { title = 7 }\n", NAME ":2: p.title must be a string, got number"},
        {"plugins = { 'p' }\np = {\n  title = 'x',\n  cuont = 2,\n}\n",
         NAME ":4: unknown option 'cuont' for plugin 'p' (did you mean 'count'?)"},
        {"plugins = { 'p' }\np = { 1, 2 }\n", NAME ":2: p must hold name = value entries"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = options(cases[i].text, &v, &n, err);
        if (rc != ZT_EINVAL || !strstr(err, cases[i].want))
            fail_msg("config:\n%s\nwanted: %s\ngot %d: %s", cases[i].text, cases[i].want, rc, err);
        assert_null(v);
        assert_int_equal(n, 0);
    }
    refused("plugins = { 'p' }\np = 5\n",
            NAME ":2: options for plugin 'p' must be a table ({ name = value, ... }), got number");
}

static void required_options(void **state)
{
    static const zt_option req[] = {
        {"key", ZT_OPT_STRING, NULL, 1, "the signing key"},
        {NULL, 0, NULL, 0, NULL},
    };
    zt_conf c;
    zt_optval *v;
    size_t n;
    char err[ZT_ERRLEN];
    /* no table: the line where the plugin is listed */
    assert_int_equal(load("node_name = 'x'\nplugins = {\n  'a',\n  'p',\n}\n", &c, err), ZT_OK);
    assert_int_equal(zt__conf_plugin_options(&c, "p", req, &v, &n, err, sizeof err), ZT_EINVAL);
    assert_string_equal(err, NAME ":4: plugin 'p' needs option 'key' (a string: the signing key): "
                                  "set it in p = { key = ... }");
    zt__conf_free(&c);
    /* a table without it: the table's line */
    assert_int_equal(load("plugins = { 'p' }\n\np = {}\n", &c, err), ZT_OK);
    assert_int_equal(zt__conf_plugin_options(&c, "p", req, &v, &n, err, sizeof err), ZT_EINVAL);
    assert_memory_equal(err, NAME ":3: plugin 'p' needs option 'key'", 37);
    zt__conf_free(&c);
    /* given */
    assert_int_equal(load("plugins = { 'p' }\np = { key = 'k' }\n", &c, err), ZT_OK);
    assert_int_equal(zt__conf_plugin_options(&c, "p", req, &v, &n, err, sizeof err), ZT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].s, "k");
    zt__optvals_free(v, n);
    /* the same conf can be asked again, for another plugin */
    assert_int_equal(zt__conf_plugin_options(&c, "q", NULL, &v, &n, err, sizeof err), ZT_OK);
    assert_int_equal(n, 0);
    zt__optvals_free(v, n);
    zt__conf_free(&c);
}

static void bad_declarations(void **state)
{
    static const zt_option bad_default[] = {
        {"n", ZT_OPT_INT, "ten", 0, NULL},
        {NULL, 0, NULL, 0, NULL},
    };
    static const zt_option twice[] = {
        {"n", ZT_OPT_INT, "1", 0, NULL},
        {"n", ZT_OPT_INT, "2", 0, NULL},
        {NULL, 0, NULL, 0, NULL},
    };
    static const zt_option bad_type[] = {
        {"n", 99, "1", 0, NULL},
        {NULL, 0, NULL, 0, NULL},
    };
    zt_conf c;
    zt_optval *v;
    size_t n;
    char err[ZT_ERRLEN];
    assert_int_equal(load("plugins = { 'p' }\n", &c, err), ZT_OK);
    assert_int_equal(zt__conf_plugin_options(&c, "p", bad_default, &v, &n, err, sizeof err),
                     ZT_EINVAL);
    assert_non_null(strstr(err, "declares option 'n' with a default that is not an integer"));
    assert_int_equal(zt__conf_plugin_options(&c, "p", twice, &v, &n, err, sizeof err), ZT_EINVAL);
    assert_non_null(strstr(err, "declares option 'n' twice"));
    assert_int_equal(zt__conf_plugin_options(&c, "p", bad_type, &v, &n, err, sizeof err),
                     ZT_EINVAL);
    assert_non_null(strstr(err, "unknown type 99"));
    zt__conf_free(&c);
}

static void plugin_lines(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(
        load("-- the plugins\nplugins = {\n  'hello', -- a greeting\n\n  \"notice\",\n}\n"
             "hello = { greeting = 'hi' }\n",
             &c, err),
        ZT_OK);
    assert_int_equal(c.nplugins, 2);
    assert_int_equal(c.plugins[0].line, 3);
    assert_int_equal(c.plugins[1].line, 5);
    zt__conf_free(&c);
}

/* The configs the project ships: each loads, and its plugin options check against what
 * hello declares and what notice's manifest declares. */
static void shipped_configs_load(void **state)
{
    static const zt_option hello[] = {{"greeting", ZT_OPT_STRING, "你好", 0, NULL}, {0}};
    static const zt_option notice[] = {{"page_size", ZT_OPT_INT, "20", 0, NULL}, {0}};
    static const struct {
        const char *file, *plugins, *greeting;
        int64_t page_size;
    } confs[] = {
        {"conf/zhengtong.conf", "hello notice workflow approval sensor ", "你好", 20},
        {"conf/examples/rural-county.conf", "notice workflow approval sensor ", NULL, 10},
        {"conf/examples/district.conf", "hello notice workflow approval sensor ", "您好", 50},
    };
    const char *src = getenv("ZT_SRC");
    if (!src) fail_msg("ZT_SRC is not set (run through ctest)");
    for (size_t i = 0; i < sizeof confs / sizeof confs[0]; i++) {
        char path[1024], err[ZT_ERRLEN], names[256] = "";
        snprintf(path, sizeof path, "%s/%s", src, confs[i].file);
        zt_conf c;
        if (zt__conf_load(path, &c, err, sizeof err) != ZT_OK) fail_msg("%s", err);
        for (size_t j = 0; j < c.nplugins; j++) {
            strcat(names, c.plugins[j].name);
            strcat(names, " ");
        }
        assert_string_equal(names, confs[i].plugins);
        zt_optval *v;
        size_t n;
        if (confs[i].greeting) {
            assert_int_equal(zt__conf_plugin_options(&c, "hello", hello, &v, &n, err, sizeof err),
                             ZT_OK);
            assert_string_equal(v[0].s, confs[i].greeting);
            zt__optvals_free(v, n);
        }
        assert_int_equal(zt__conf_plugin_options(&c, "notice", notice, &v, &n, err, sizeof err),
                         ZT_OK);
        assert_int_equal(v[0].i, confs[i].page_size);
        zt__optvals_free(v, n);
        zt__conf_free(&c);
    }
}

static void bus_publish(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("-- none\n", &c, err), ZT_OK);
    assert_null(c.bus_publish); /* in this process only */
    zt__conf_free(&c);
    assert_int_equal(load("bus = { publish = 'tcp://127.0.0.1:7450' }\n", &c, err), ZT_OK);
    assert_string_equal(c.bus_publish, "tcp://127.0.0.1:7450");
    zt__conf_free(&c);
    assert_int_equal(load("bus = {}\n", &c, err), ZT_OK);
    assert_null(c.bus_publish);
    zt__conf_free(&c);
    refused("\nbus = 'tcp://127.0.0.1:7450'\n", NAME ":2: bus must be a table");
    refused("bus = {\n  publsh = 'tcp://127.0.0.1:1' }\n",
            NAME ":2: unknown key 'publsh' in bus (it takes: publish)");
    refused("bus = { publish = 7450 }\n", NAME ":1: bus.publish must be a string, got number");
    refused("bus = { publish = 'ipc:///tmp/x' }\n", "it must begin with tcp://");
    refused("bus = { publish = 'tcp://127.0.0.1' }\n", "it has no :port");
    refused("bus = { publish = 'tcp://127.0.0.1:0' }\n", "is not \"tcp://host:port\"");
}

/* Which addresses a plugin's socket would take from the node (zt_option_listen_apart). */
static void port_taken(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN], what[256];
    assert_int_equal(load("listen = { '127.0.0.1:8080', '[::1]:8081' }\n"
                          "bus = { publish = 'tcp://0.0.0.0:7450' }\n",
                          &c, err),
                     ZT_OK);
    static const struct {
        const char *addr, *what; /* what: NULL for none */
    } cases[] = {
        {"127.0.0.1:8080", "listen '127.0.0.1:8080'"},
        {"0.0.0.0:8080", "listen '127.0.0.1:8080'"},
        {"tcp://127.0.0.1:8080", "listen '127.0.0.1:8080'"},
        {"tcp://*:8080", "listen '127.0.0.1:8080'"},
        {"tcp4://:8080", "listen '127.0.0.1:8080'"},
        {"tcp://[::]:8080", "listen '127.0.0.1:8080'"}, /* dual-stack */
        {"tcp6://:8080", "listen '127.0.0.1:8080'"},
        {"wss://0.0.0.0:8080/gw", "listen '127.0.0.1:8080'"},
        {"tls+tcp://127.0.0.1:8080", "listen '127.0.0.1:8080'"},
        {"tcp://[::1]:8081", "listen '[::1]:8081'"},
        {"tcp://[::]:8081", "listen '[::1]:8081'"},
        {"tcp://127.0.0.2:7450", "bus.publish 'tcp://0.0.0.0:7450'"},
        {"tcp://127.0.0.2:8080", NULL}, /* another address */
        {"tcp://[::1]:8080", NULL},     /* another family: the listener is IPv4 */
        {"tcp://127.0.0.1:8081", NULL}, /* the IPv6 listener is IPv6-only */
        {"tcp://127.0.0.1:8082", NULL},
        {"ipc:///tmp/x", NULL}, /* no port */
        {"inproc://x", NULL},
        {"tcp://localhost:8080", NULL}, /* a host name: the bind will say */
        {"tcp://127.0.0.1", NULL},
        {"", NULL},
        {NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        strcpy(what, "-");
        bool taken = zt__conf_port_taken(&c, cases[i].addr, what, sizeof what);
        if (taken != (cases[i].what != NULL) || (taken && strcmp(what, cases[i].what) != 0))
            fail_msg("%s: taken %d by %s, wanted %s", cases[i].addr ? cases[i].addr : "(null)",
                     taken, what, cases[i].what ? cases[i].what : "none");
    }
    zt__conf_free(&c);
}

static void replication(void **state)
{
    zt_conf c;
    char err[ZT_ERRLEN];
    assert_int_equal(load("-- none\n", &c, err), ZT_OK);
    assert_null(c.repl_listen); /* off */
    assert_int_equal(c.repl_keep, 1u << 30);
    zt__conf_free(&c);
    assert_int_equal(
        load("replication = { listen = 'tcp://10.0.0.5:7460', keep = 65536 }\n", &c, err), ZT_OK);
    assert_string_equal(c.repl_listen, "tcp://10.0.0.5:7460");
    assert_int_equal(c.repl_keep, 65536);
    zt__conf_free(&c);
    refused("\nreplication = 'tcp://127.0.0.1:7460'\n", NAME ":2: replication must be a table");
    refused("replication = { keep = 65536 }\n", NAME ":1: replication needs listen");
    refused("replication = {\n  listen = 'tcp://127.0.0.1:7460',\n  kep = 1 }\n",
            NAME ":3: unknown key 'kep' in replication (it takes: listen, keep)");
    refused("replication = { listen = 'ipc:///tmp/r' }\n", "it must begin with tcp://");
    refused("replication = { listen = 'tcp://127.0.0.1:7460', keep = 100 }\n",
            "replication.keep must be between 65536");
    /* not at a port the node takes already: its HTTP listeners, the bus */
    refused("listen = '0.0.0.0:7460'\nreplication = {\n listen = 'tcp://10.0.0.5:7460' }\n",
            NAME ":3: replication.listen: 'tcp://10.0.0.5:7460' and listen '0.0.0.0:7460' are at "
                 "the same port");
    refused("bus = { publish = 'tcp://127.0.0.1:7450' }\n"
            "replication = { listen = 'tcp://127.0.0.1:7450' }\n",
            NAME ":2: replication.listen: 'tcp://127.0.0.1:7450' and bus.publish");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_key_set),
        cmocka_unit_test(checkpoint_interval_zero),
        cmocka_unit_test(single_listen_string_and_locals),
        cmocka_unit_test(type_errors_name_key_and_line),
        cmocka_unit_test(unknown_keys_suggest),
        cmocka_unit_test(nested_unknown_key_line),
        cmocka_unit_test(key_set_twice),
        cmocka_unit_test(undefined_names),
        cmocka_unit_test(syntax_errors_have_lines),
        cmocka_unit_test(runaway_configs_are_stopped),
        cmocka_unit_test(relative_paths),
        cmocka_unit_test(from_a_file),
        cmocka_unit_test(options_of_a_disabled_plugin_warn),
        cmocka_unit_test(option_defaults),
        cmocka_unit_test(option_values),
        cmocka_unit_test(option_errors),
        cmocka_unit_test(required_options),
        cmocka_unit_test(bad_declarations),
        cmocka_unit_test(plugin_lines),
        cmocka_unit_test(shipped_configs_load),
        cmocka_unit_test(bus_publish),
        cmocka_unit_test(port_taken),
        cmocka_unit_test(replication),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
