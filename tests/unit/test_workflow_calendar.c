/* test_workflow_calendar.c: the workflow plugin's working-day calendar. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/workflow/calendar.c"

#define H       (3600 * 1000LL)
#define BEIJING (8 * H)

static wf_cal beijing(void)
{
    wf_cal c = {0};
    c.offset_ms = BEIJING;
    return c;
}

static int32_t day_of(const char *s)
{
    int32_t d;
    assert_int_equal(wf_cal_parse_date(s, &d), 0);
    return d;
}

/* ms of a Beijing wall-clock time on date s */
static int64_t at(const char *s, int hour)
{
    return (int64_t)day_of(s) * WF_DAY_MS + hour * H - BEIJING;
}

static void parses_dates(void **state)
{
    int32_t d;
    assert_int_equal(wf_cal_parse_date("1970-01-01", &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(wf_cal_parse_date("1970-01-02", &d), 0);
    assert_int_equal(d, 1);
    assert_int_equal(wf_cal_parse_date("2024-02-29", &d), 0);
    assert_int_equal(wf_cal_parse_date("2024-03-01", &d), 0);
    int32_t feb29 = day_of("2024-02-29");
    assert_int_equal(d, feb29 + 1);
    const char *bad[] = {"2023-02-29", "2026-13-01",  "2026-00-10", "2026-04-31", "2026-4-01",
                         "20260401",   "2026-04-01x", "",           "abcd-ef-gh", "1969-12-31"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(wf_cal_parse_date(bad[i], &d), -3);
}

static void weekends_and_lists(void **state)
{
    wf_cal c = beijing();
    /* 2024-01-01 was a Monday; 2026-09-27 a Sunday; 2026-10-01 a Thursday */
    assert_true(wf_cal_is_workday(&c, day_of("2024-01-01")));
    assert_false(wf_cal_is_workday(&c, day_of("2024-01-06")));
    assert_false(wf_cal_is_workday(&c, day_of("2024-01-07")));
    assert_false(wf_cal_is_workday(&c, day_of("2026-09-27")));
    assert_true(wf_cal_is_workday(&c, day_of("2026-10-01")));
    assert_int_equal(wf_cal_add_date(&c, day_of("2026-10-01"), 0), 0);
    assert_int_equal(wf_cal_add_date(&c, day_of("2026-09-27"), 1), 0);
    assert_int_equal(wf_cal_add_date(&c, day_of("2026-10-01"), 0), 0); /* twice: once */
    assert_int_equal(c.nholidays, 1);
    assert_false(wf_cal_is_workday(&c, day_of("2026-10-01")));
    assert_true(wf_cal_is_workday(&c, day_of("2026-09-27")));
    /* the day of a time follows the zone: 23:30 UTC on the 5th is the 6th in Beijing */
    int64_t t = (int64_t)day_of("2024-01-05") * WF_DAY_MS + 23 * H + 30 * 60000;
    assert_int_equal(wf_cal_day(&c, t), day_of("2024-01-06"));
    wf_cal_free(&c);
}

static void adds_working_days(void **state)
{
    wf_cal c = beijing();
    /* Friday 10:00 + 1 day: Monday 10:00 */
    assert_int_equal(wf_cal_add(&c, at("2024-01-05", 10), WF_DAY_MS), at("2024-01-08", 10));
    /* Monday 10:00 + 5 days: next Monday 10:00 */
    assert_int_equal(wf_cal_add(&c, at("2024-01-08", 10), 5 * WF_DAY_MS), at("2024-01-15", 10));
    /* from a Saturday: counting starts Monday 00:00 */
    assert_int_equal(wf_cal_add(&c, at("2024-01-06", 15), WF_DAY_MS), at("2024-01-09", 0));
    assert_int_equal(wf_cal_add(&c, at("2024-01-06", 15), 4 * H), at("2024-01-08", 4));
    /* a holiday Monday pushes it to Tuesday; a worked Saturday pulls it in */
    assert_int_equal(wf_cal_add_date(&c, day_of("2024-01-08"), 0), 0);
    assert_int_equal(wf_cal_add(&c, at("2024-01-05", 10), WF_DAY_MS), at("2024-01-09", 10));
    assert_int_equal(wf_cal_add_date(&c, day_of("2024-01-06"), 1), 0);
    assert_int_equal(wf_cal_add(&c, at("2024-01-05", 10), WF_DAY_MS), at("2024-01-06", 10));
    /* backwards */
    assert_int_equal(wf_cal_add(&c, at("2024-01-06", 10), -WF_DAY_MS), at("2024-01-05", 10));
    assert_int_equal(wf_cal_add(&c, at("2024-01-09", 10), -2 * WF_DAY_MS), at("2024-01-05", 10));
    assert_int_equal(wf_cal_add(&c, at("2024-01-07", 12), -2 * H), at("2024-01-06", 22));
    wf_cal_free(&c);
}

static void between_counts_working_time(void **state)
{
    wf_cal c = beijing();
    assert_int_equal(wf_cal_between(&c, at("2024-01-05", 10), at("2024-01-08", 10)), WF_DAY_MS);
    assert_int_equal(wf_cal_between(&c, at("2024-01-06", 0), at("2024-01-08", 0)), 0);
    assert_int_equal(wf_cal_between(&c, at("2024-01-08", 10), at("2024-01-08", 9)), 0);
    assert_int_equal(wf_cal_between(&c, at("2024-01-08", 9), at("2024-01-08", 17)), 8 * H);
    wf_cal_free(&c);
}

/* Adding N working days and measuring the working time between the two ends gives N days
 * back, whatever the start, holidays and worked weekends. */
static void add_and_between_agree(void **state)
{
    wf_cal c = beijing();
    const char *hol[] = {"2024-02-12", "2024-02-13", "2024-02-14", "2024-04-04", "2024-05-01"};
    for (size_t i = 0; i < 5; i++) assert_int_equal(wf_cal_add_date(&c, day_of(hol[i]), 0), 0);
    assert_int_equal(wf_cal_add_date(&c, day_of("2024-02-04"), 1), 0);
    assert_int_equal(wf_cal_add_date(&c, day_of("2024-02-18"), 1), 0);
    srand(7);
    int64_t base = at("2024-01-01", 0);
    for (int i = 0; i < 2000; i++) {
        int64_t t = base + (int64_t)(rand() % (150 * 24)) * H + rand() % 3600000;
        int64_t span = (int64_t)(rand() % 40) * WF_DAY_MS + (rand() % 24) * H;
        int64_t end = wf_cal_add(&c, t, span);
        assert_true(end >= t);
        if (wf_cal_is_workday(&c, wf_cal_day(&c, t)))
            assert_int_equal(wf_cal_between(&c, t, end), span);
        assert_true(wf_cal_add(&c, end, -span) <= t || !wf_cal_is_workday(&c, wf_cal_day(&c, t)));
        if (wf_cal_is_workday(&c, wf_cal_day(&c, t)) && span > 0)
            assert_int_equal(wf_cal_add(&c, end, -span), t);
    }
    wf_cal_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_dates),          cmocka_unit_test(weekends_and_lists),
        cmocka_unit_test(adds_working_days),     cmocka_unit_test(between_counts_working_time),
        cmocka_unit_test(add_and_between_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
