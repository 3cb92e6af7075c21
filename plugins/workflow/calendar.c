/* calendar.c: working days (weekends, holidays, adjusted working days) for deadlines. */
#include "calendar.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil). */
static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int32_t)doe - 719468;
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int wf_cal_parse_date(const char *s, int32_t *day)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return -3;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return -3;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    unsigned m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
    unsigned d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1) return -3;
    if (d > mdays[m - 1] + (m == 2 && leap(y))) return -3;
    *day = days_from_civil(y, m, d);
    return 0;
}

static int cmp_day(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int has_day(const int32_t *v, size_t n, int32_t day)
{
    return n && bsearch(&day, v, n, sizeof *v, cmp_day) != NULL;
}

int wf_cal_add_date(wf_cal *c, int32_t day, int workday)
{
    int32_t **v = workday ? &c->workdays : &c->holidays;
    size_t *n = workday ? &c->nworkdays : &c->nholidays;
    if (has_day(*v, *n, day)) return 0;
    int32_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return -2;
    nv[(*n)++] = day;
    qsort(nv, *n, sizeof *nv, cmp_day);
    *v = nv;
    return 0;
}

void wf_cal_free(wf_cal *c)
{
    free(c->holidays);
    free(c->workdays);
    c->holidays = c->workdays = NULL;
    c->nholidays = c->nworkdays = 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int32_t wf_cal_day(const wf_cal *c, int64_t t)
{
    return (int32_t)floor_div(t + c->offset_ms, WF_DAY_MS);
}

int wf_cal_is_workday(const wf_cal *c, int32_t day)
{
    int wd = (int)(((day % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday; 0 = Sunday */
    if (wd == 0 || wd == 6) return has_day(c->workdays, c->nworkdays, day);
    return !has_day(c->holidays, c->nholidays, day);
}

/* Weekends alone leave at most two days off in seven; a calendar listing every day of a
 * year as a holiday would still end: the walk gives up after this many days. */
#define MAX_WALK 100000

static int32_t next_workday(const wf_cal *c, int32_t day, int dir)
{
    for (int i = 0; i < MAX_WALK; i++) {
        day += dir;
        if (wf_cal_is_workday(c, day)) return day;
    }
    return day;
}

int64_t wf_cal_add(const wf_cal *c, int64_t t, int64_t work_ms)
{
    int64_t local = t + c->offset_ms;
    int32_t day = (int32_t)floor_div(local, WF_DAY_MS);
    int64_t pos = local - (int64_t)day * WF_DAY_MS;
    if (work_ms >= 0) {
        if (!wf_cal_is_workday(c, day)) day = next_workday(c, day, 1), pos = 0;
        int64_t left = work_ms;
        for (int i = 0; i < MAX_WALK && left > WF_DAY_MS - pos; i++) {
            left -= WF_DAY_MS - pos;
            day = next_workday(c, day, 1);
            pos = 0;
        }
        return (int64_t)day * WF_DAY_MS + pos + left - c->offset_ms;
    }
    if (!wf_cal_is_workday(c, day)) day = next_workday(c, day, -1), pos = WF_DAY_MS;
    int64_t left = -work_ms;
    for (int i = 0; i < MAX_WALK && left > pos; i++) {
        left -= pos;
        day = next_workday(c, day, -1);
        pos = WF_DAY_MS;
    }
    return (int64_t)day * WF_DAY_MS + pos - left - c->offset_ms;
}

int64_t wf_cal_between(const wf_cal *c, int64_t a, int64_t b)
{
    if (b <= a) return 0;
    int32_t da = wf_cal_day(c, a), db = wf_cal_day(c, b);
    int64_t sum = 0;
    for (int32_t d = da; d <= db; d++) {
        if (!wf_cal_is_workday(c, d)) continue;
        int64_t lo = (int64_t)d * WF_DAY_MS - c->offset_ms, hi = lo + WF_DAY_MS;
        if (lo < a) lo = a;
        if (hi > b) hi = b;
        if (hi > lo) sum += hi - lo;
    }
    assert(sum >= 0);
    return sum;
}
