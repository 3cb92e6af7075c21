# workcal.py: an independent working-day calendar, to check the deadlines that the workflow
# plugin's calendar computes (weekends off, configured holidays off, configured weekend
# working days on; whole days, Beijing time, as the plugin's default utc_offset_minutes).
import datetime

DAY = 86400000
HOUR = 3600000
BEIJING = 8 * HOUR


def beijing_date(ms):
    return datetime.datetime.utcfromtimestamp((ms + BEIJING) / 1000).date()


def day_start(d):
    """The ms at which Beijing date d begins."""
    return (d - datetime.date(1970, 1, 1)).days * DAY - BEIJING


def is_workday(d, holidays=(), workdays=()):
    s = d.isoformat()
    if s in workdays:
        return True
    return d.weekday() < 5 and s not in holidays


def add_workdays(ms, days, holidays=()):
    """ms plus `days` working days at the same Beijing clock time (from a non-working day:
    from the next working day's midnight)."""
    local = ms + BEIJING
    d = beijing_date(ms)
    pos = local % DAY
    if not is_workday(d, holidays):
        while not is_workday(d, holidays):
            d += datetime.timedelta(days=1)
        pos = 0
    left = days
    while left > 0:
        d += datetime.timedelta(days=1)
        if is_workday(d, holidays):
            left -= 1
    return day_start(d) + pos


def add_work_ms(ms, work, holidays=()):
    """ms plus `work` ms of working time (whole working days count 24 h)."""
    t = ms
    while True:
        d = beijing_date(t)
        end = day_start(d) + DAY
        if is_workday(d, holidays):
            if work <= end - t:
                return t + work
            work -= end - t
        t = end


def work_between(a, b, holidays=()):
    """The working time from a to b (0 if b <= a)."""
    total, t = 0, a
    while t < b:
        d = beijing_date(t)
        end = min(day_start(d) + DAY, b)
        if is_workday(d, holidays):
            total += end - t
        t = end
    return total


def sub_work_hours(ms, hours, holidays=()):
    """ms minus `hours` of working time (whole working days count 24 h)."""
    t = ms
    left = hours * HOUR
    while left > 0:
        d = beijing_date(t - 1)
        start = day_start(d)
        if is_workday(d, holidays):
            take = min(left, t - start)
            t -= take
            left -= take
        else:
            t = start
    return t
