/* lp.h: InfluxDB line protocol parser (1.x/2.x), single pass, no allocation per point. */
#ifndef SENSOR_LP_H
#define SENSOR_LP_H

#include <stddef.h>
#include <stdint.h>

enum lp_type { LP_FLOAT = 1, LP_INT, LP_UINT, LP_STRING, LP_BOOL };

/* Text of a name or string value, unescaped: it points into the input when it held no
 * escape, into the parser's scratch otherwise. Not NUL-terminated. */
typedef struct lp_str {
    const char *p;
    size_t n;
} lp_str;

typedef struct lp_field {
    lp_str key;
    int type; /* enum lp_type */
    union {
        double f;
        int64_t i;
        uint64_t u;
        int b;
        lp_str s;
    } v;
} lp_field;

#define LP_MAX_TAGS   32
#define LP_MAX_FIELDS 64

/* One point; valid until the next lp_next on the same parser. */
typedef struct lp_point {
    lp_str measurement;
    size_t ntags;
    lp_str tag_key[LP_MAX_TAGS], tag_val[LP_MAX_TAGS];
    size_t nfields;
    lp_field field[LP_MAX_FIELDS];
    int has_time;    /* 0: the line had no timestamp (the writer takes "now") */
    int64_t time_ns; /* the timestamp converted to nanoseconds */
    size_t line;     /* 1-based line number where the point starts */
} lp_point;

typedef struct lp_parser {
    const char *p, *end;
    size_t line;  /* the line the cursor is on, 1-based */
    int64_t mult; /* nanoseconds per timestamp unit */
    char *scratch;
    size_t cap, used;
    /* After lp_next returned -1: */
    size_t err_line;      /* 1-based line of the bad point */
    const char *err_text; /* the bad line's text (to its end or 80 bytes) */
    size_t err_text_len;
    char err[96]; /* why, in InfluxDB's words where it has some */
} lp_parser;

/* Nanoseconds per unit for a precision name: "ns" (or "n"), "us" (or "u", "µ"), "ms",
 * "s", and InfluxDB 1.x's "m" and "h". NULL or "" is ns. -1 for an unknown name. */
int64_t lp_precision(const char *name);
/* The names lp_precision takes, for messages. */
#define LP_PRECISIONS "ns (or n), us (or u, \xc2\xb5), ms, s, m or h"

/* The index of a tag of pt whose key an earlier tag has too (InfluxDB refuses such a
 * point: which value would the series have?), or -1 if every key is once. */
int lp_dup_tag(const lp_point *pt);

/* Parse len bytes of buf with timestamps in units of mult ns. scratch receives unescaped
 * names and strings: cap bytes, at least the longest line (len is always enough). */
void lp_init(lp_parser *ps, const char *buf, size_t len, int64_t mult, char *scratch, size_t cap);

/* The next point: 1, or 0 at the end of the input (blank lines and # comments skipped),
 * or -1 with err, err_line and err_text set; the parser stays at the error. A tag key
 * given twice is an error ("duplicate tag key 'k'"). */
int lp_next(lp_parser *ps, lp_point *pt);

#endif
