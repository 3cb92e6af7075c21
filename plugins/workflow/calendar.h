/* calendar.h: the working-day calendar of the workflow plugin (pure functions). */
#ifndef WF_CALENDAR_H
#define WF_CALENDAR_H

#include <stddef.h>
#include <stdint.h>

#define WF_DAY_MS 86400000LL

/* Days are counted from 1970-01-01 in the calendar's own time zone. A day is a working day
 * when it is Monday to Friday and not a holiday, or when it is listed as an adjusted
 * working day (调休: a weekend day worked in exchange for a holiday). */
typedef struct wf_cal {
    int32_t *holidays; /* sorted, malloc'd */
    size_t nholidays;
    int32_t *workdays; /* sorted, malloc'd */
    size_t nworkdays;
    int64_t offset_ms; /* the zone's offset from UTC (Beijing: +8 h) */
} wf_cal;

/* "YYYY-MM-DD" (a date that exists) → its day number. ZT_EINVAL (-3) otherwise. */
int wf_cal_parse_date(const char *s, int32_t *day);
/* Add a date to the holidays (workday 0) or the adjusted working days (workday 1);
 * keeps the lists sorted. -2 (ZT_ENOMEM) on failure. */
int wf_cal_add_date(wf_cal *c, int32_t day, int workday);
void wf_cal_free(wf_cal *c);

/* The calendar day of a time (ms since 1970 UTC), and whether it is a working day. */
int32_t wf_cal_day(const wf_cal *c, int64_t t);
int wf_cal_is_workday(const wf_cal *c, int32_t day);

/* t moved by `work_ms` of working time (negative: backwards). Only time on working days
 * counts, so adding N days from a working day lands at the same clock time N working days
 * later; a start on a non-working day counts from the next working day's midnight (or,
 * backwards, from the previous working day's end). */
int64_t wf_cal_add(const wf_cal *c, int64_t t, int64_t work_ms);
/* The working time in [a, b) (0 when b <= a). */
int64_t wf_cal_between(const wf_cal *c, int64_t a, int64_t b);

#endif
