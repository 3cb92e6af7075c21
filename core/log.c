/* log.c: structured logs, one JSON object per line on stderr. */
#include "core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int zt__log_level = ZT_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int zt__log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

void zt__vlog(int level, const char *plugin, const char *reqid, const char *fmt, va_list ap)
{
    if (level < zt__log_level) return;
    if (level < ZT_LOG_DEBUG || level > ZT_LOG_ERROR) level = ZT_LOG_ERROR;
    char msg[2048];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) return;
    size_t mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;

    int64_t now = zt_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[80];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));

    /* Every line is UTF-8 JSON: bytes that are not UTF-8 (a plugin printing ciphertext, a
     * client's bytes quoted, a message cut inside a character) become U+FFFD. */
    zt_buf b = {0};
    zt__buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
    if (plugin) {
        zt__buf_puts(&b, ",\"plugin\":");
        zt__buf_json_text(&b, plugin, strlen(plugin));
    }
    if (reqid) {
        zt__buf_puts(&b, ",\"request_id\":");
        zt__buf_json_text(&b, reqid, strlen(reqid));
    }
    zt__buf_puts(&b, ",\"msg\":");
    zt__buf_json_text(&b, msg, mlen);
    zt__buf_puts(&b, "}\n");
    if (b.data) fwrite(b.data, 1, b.len, stderr);
    zt__buf_free(&b);
}

void zt__log(int level, const char *plugin, const char *reqid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zt__vlog(level, plugin, reqid, fmt, ap);
    va_end(ap);
}

void zt_log(const zt_plugin *p, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zt__vlog(level, p ? p->name : NULL, NULL, fmt, ap);
    va_end(ap);
}

void zt_req_log(zt_req *req, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const zt_plugin *p = zt__req_plugin(req); /* a service's provider while it runs */
    zt__vlog(level, p ? p->name : NULL, req->id, fmt, ap);
    va_end(ap);
}
