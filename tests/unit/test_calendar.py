"""The surge calendar on real wall clocks: weekday windows, DST gaps and repeats, lead time, date ranges,
overlapping surges and windows still open from the day before.

Every expected instant is written in the test as an explicit UTC time (or built with zoneinfo), never
computed with the code under test.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest

from healthscale.api import surgeschedule
from healthscale.domain import calendar

UTC = dt.timezone.utc
CHICAGO, LONDON = "America/Chicago", "Europe/London"
LENGTHS = {"30m": dt.timedelta(minutes=30), "1h": dt.timedelta(hours=1), "2h": dt.timedelta(hours=2)}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An unambiguous local wall-clock time as a UTC instant, through zoneinfo."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)


def surge(**fields: Any) -> surgeschedule.Surge:
    """A surge written the way a manifest writes it (camelCase, durations as text)."""
    fields.setdefault("multiplier", 1.5)
    return surgeschedule.Surge.model_validate(fields)


def only(windows: list[calendar.Window]) -> calendar.Window:
    assert len(windows) == 1, windows
    return windows[0]


# --- A weekday cron window ---------------------------------------------------------------------------

WEEKDAY_MORNINGS = surge(name="morning-rounds", cron="0 7 * * 1-5", duration="2h")


@pytest.mark.parametrize(
    ("zone", "moment", "expected_start"),
    [
        (CHICAGO, utc(2026, 3, 2, 13, 30), utc(2026, 3, 2, 13, 0)),
        (LONDON, utc(2026, 3, 2, 7, 30), utc(2026, 3, 2, 7, 0)),
        ("UTC", utc(2026, 3, 2, 7, 30), utc(2026, 3, 2, 7, 0)),
        (CHICAGO, utc(2026, 7, 6, 12, 30), utc(2026, 7, 6, 12, 0)),
        (LONDON, utc(2026, 7, 6, 6, 30), utc(2026, 7, 6, 6, 0)),
        (CHICAGO, utc(2026, 3, 6, 14, 59, 59), utc(2026, 3, 6, 13, 0)),
    ],
    ids=[
        "07:30 on a winter Monday in Chicago (13:30Z, CST) is inside the 07:00 window",
        "07:30 on a winter Monday in London (GMT) is inside the 07:00 window",
        "07:30 on a Monday in UTC is inside the 07:00 window",
        "07:30 on a summer Monday in Chicago (12:30Z, CDT) is inside the 07:00 window",
        "07:30 on a summer Monday in London (06:30Z, BST) is inside the 07:00 window",
        "the last second of a Friday window is still inside it",
    ],
)
def test_a_weekday_window_is_in_effect_on_weekday_mornings(
    zone: str, moment: dt.datetime, expected_start: dt.datetime
) -> None:
    window = only(calendar.Calendar(zone, [WEEKDAY_MORNINGS]).in_effect(moment))
    assert window.surge == "morning-rounds"
    assert window.start == expected_start
    assert window.end == expected_start + dt.timedelta(hours=2)
    assert window.multiplier == 1.5


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        (CHICAGO, utc(2026, 3, 7, 13, 30)),
        (LONDON, utc(2026, 3, 7, 7, 30)),
        ("UTC", utc(2026, 3, 8, 7, 30)),
        (CHICAGO, utc(2026, 3, 2, 12, 59, 59)),
        (CHICAGO, utc(2026, 3, 2, 15, 0)),
        (CHICAGO, utc(2026, 3, 2, 7, 30)),
        (LONDON, utc(2026, 3, 2, 13, 30)),
    ],
    ids=[
        "07:30 on a Saturday in Chicago is not a weekday",
        "07:30 on a Saturday in London is not a weekday",
        "07:30 on a Sunday in UTC is not a weekday",
        "one second before 07:00 in Chicago is before the window",
        "09:00 in Chicago is the exclusive end of the window",
        "07:30 UTC is 01:30 in Chicago, long before the window",
        "07:30 Chicago time is 13:30 in London, after London's window",
    ],
)
def test_a_weekday_window_is_not_in_effect_at_other_times(zone: str, moment: dt.datetime) -> None:
    assert calendar.Calendar(zone, [WEEKDAY_MORNINGS]).in_effect(moment) == []


def test_the_helpers_agree_with_zoneinfo() -> None:
    # The explicit UTC times above assume these offsets; check them once against zoneinfo.
    assert local(CHICAGO, 2026, 3, 2, 7, 30) == utc(2026, 3, 2, 13, 30)
    assert local(CHICAGO, 2026, 7, 6, 7, 30) == utc(2026, 7, 6, 12, 30)
    assert local(LONDON, 2026, 7, 6, 7, 30) == utc(2026, 7, 6, 6, 30)
    assert local(LONDON, 2026, 12, 12, 8) == utc(2026, 12, 12, 8)


# --- DST: the spring-forward gap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "rule", "day", "expected_start", "expected_wall_clock"),
    [
        (CHICAGO, {"cron": "30 2 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 8, 0), "03:00 CDT"),
        (CHICAGO, {"cron": "0 2 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 8, 0), "03:00 CDT"),
        (CHICAGO, {"cron": "59 2 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 8, 0), "03:00 CDT"),
        (CHICAGO, {"cron": "0 3 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 8, 0), "03:00 CDT"),
        (CHICAGO, {"cron": "0 7 * * *", "duration": "2h"}, (2026, 3, 8), utc(2026, 3, 8, 12, 0), "07:00 CDT"),
        (CHICAGO, {"cron": "0 7 * * *", "duration": "2h"}, (2026, 3, 7), utc(2026, 3, 7, 13, 0), "07:00 CST"),
        (CHICAGO, {"cron": "0 1 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 7, 0), "01:00 CST"),
        (LONDON, {"cron": "30 1 * * *", "duration": "1h"}, (2026, 3, 29), utc(2026, 3, 29, 1, 0), "02:00 BST"),
        (LONDON, {"cron": "30 2 * * *", "duration": "1h"}, (2026, 3, 29), utc(2026, 3, 29, 1, 30), "02:30 BST"),
        (LONDON, {"cron": "0 7 * * *", "duration": "2h"}, (2026, 3, 29), utc(2026, 3, 29, 6, 0), "07:00 BST"),
        (LONDON, {"cron": "0 7 * * *", "duration": "2h"}, (2026, 3, 28), utc(2026, 3, 28, 7, 0), "07:00 GMT"),
        ("UTC", {"cron": "30 2 * * *", "duration": "1h"}, (2026, 3, 8), utc(2026, 3, 8, 2, 30), "02:30 UTC"),
        (CHICAGO, {"start": "2026-03-08T02:30", "end": "2026-03-08T05:00"}, (2026, 3, 8), utc(2026, 3, 8, 8, 0),
         "03:00 CDT"),
        (LONDON, {"start": "2026-03-29T01:15:30", "end": "2026-03-29T05:00"}, (2026, 3, 29), utc(2026, 3, 29, 1, 0),
         "02:00 BST"),
    ],
    ids=[
        "in Chicago a window at 02:30, which does not exist, begins when the clocks jump to 03:00",
        "in Chicago a window at 02:00, the first missing minute, begins at the jump",
        "in Chicago a window at 02:59, the last missing minute, begins at the jump",
        "in Chicago a window at 03:00 begins at the same instant as the ones in the gap",
        "in Chicago 07:00 on the spring-forward day is 12:00Z (CDT), not 13:00Z",
        "in Chicago 07:00 the day before is still 13:00Z (CST)",
        "in Chicago 01:00, before the gap, is unaffected",
        "in London a window at 01:30, which does not exist, begins when the clocks jump to 02:00",
        "in London 02:30 exists on the spring-forward day and is 01:30Z",
        "in London 07:00 on the spring-forward day is 06:00Z (BST)",
        "in London 07:00 the day before is 07:00Z (GMT)",
        "UTC has no gap",
        "a date range starting in the Chicago gap begins when the clocks jump",
        "a date range starting in the London gap with seconds begins when the clocks jump",
    ],
)
def test_spring_forward(
    zone: str, rule: dict[str, str], day: tuple[int, int, int], expected_start: dt.datetime, expected_wall_clock: str
) -> None:
    cal = calendar.Calendar(zone, [surge(name="s", **rule)])
    begin = dt.datetime(*day, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)
    window = only(cal.windows(begin, begin + dt.timedelta(hours=23)))
    assert window.start == expected_start
    assert expected_start.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%H:%M %Z") == expected_wall_clock
    if "duration" in rule:
        assert window.end - window.start == LENGTHS[rule["duration"]], "durations are elapsed time"


def test_a_window_that_begins_in_the_gap_is_in_effect_from_the_jump_for_its_whole_duration() -> None:
    cal = calendar.Calendar(CHICAGO, [surge(name="s", cron="30 2 * * *", duration="1h")])
    assert cal.in_effect(utc(2026, 3, 8, 7, 59, 59)) == []
    assert only(cal.in_effect(utc(2026, 3, 8, 8, 0))).start == utc(2026, 3, 8, 8, 0)
    assert only(cal.in_effect(utc(2026, 3, 8, 8, 59, 59))).end == utc(2026, 3, 8, 9, 0)
    assert cal.in_effect(utc(2026, 3, 8, 9, 0)) == []


def test_a_window_across_the_gap_lasts_its_duration_of_elapsed_time() -> None:
    # 01:00 CST + 2h = 04:00 CDT on the wall clock: two hours pass, not three.
    cal = calendar.Calendar(CHICAGO, [surge(name="s", cron="0 1 * * *", duration="2h")])
    window = only(cal.in_effect(utc(2026, 3, 8, 8, 30)))
    assert (window.start, window.end) == (utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 9, 0))


# --- DST: the fall-back repeat -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "rule", "day", "expected_start", "not_start"),
    [
        (CHICAGO, {"cron": "30 1 * * *", "duration": "30m"}, (2026, 11, 1), utc(2026, 11, 1, 6, 30),
         utc(2026, 11, 1, 7, 30)),
        (LONDON, {"cron": "30 1 * * *", "duration": "30m"}, (2026, 10, 25), utc(2026, 10, 25, 0, 30),
         utc(2026, 10, 25, 1, 30)),
        (CHICAGO, {"start": "2026-11-01T01:30", "end": "2026-11-01T04:00"}, (2026, 11, 1), utc(2026, 11, 1, 6, 30),
         utc(2026, 11, 1, 7, 30)),
        (LONDON, {"start": "2026-10-25T01:00", "end": "2026-10-25T04:00"}, (2026, 10, 25), utc(2026, 10, 25, 0, 0),
         utc(2026, 10, 25, 1, 0)),
    ],
    ids=[
        "in Chicago a window at 01:30, which happens twice, occurs once at its first occurrence (CDT)",
        "in London a window at 01:30, which happens twice, occurs once at its first occurrence (BST)",
        "a Chicago date range starting at an ambiguous time starts at the first occurrence",
        "a London date range starting at the repeated 01:00 starts at the first occurrence",
    ],
)
def test_fall_back_ambiguous_times_happen_once_at_the_first_occurrence(
    zone: str, rule: dict[str, str], day: tuple[int, int, int], expected_start: dt.datetime, not_start: dt.datetime
) -> None:
    zone_info = zoneinfo.ZoneInfo(zone)
    # Both instants read the same wall-clock time: the test data really is ambiguous.
    assert expected_start.astimezone(zone_info).replace(tzinfo=None) == not_start.astimezone(zone_info).replace(
        tzinfo=None
    )
    cal = calendar.Calendar(zone, [surge(name="s", **rule)])
    begin = dt.datetime(*day, tzinfo=zone_info).astimezone(UTC)
    windows = cal.windows(begin, begin + dt.timedelta(hours=25))
    assert [window.start for window in windows] == [expected_start]


@pytest.mark.parametrize(
    ("zone", "cron_text", "inside", "expected_start", "expected_end"),
    [
        (CHICAGO, "0 0 * * *", utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 7, 0)),
        (CHICAGO, "30 0 * * *", utc(2026, 11, 1, 7, 15), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30)),
        (LONDON, "0 0 * * *", utc(2026, 10, 25, 0, 30), utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 1, 0)),
        (CHICAGO, "0 7 * * *", utc(2026, 11, 1, 13, 30), utc(2026, 11, 1, 13, 0), utc(2026, 11, 1, 15, 0)),
        (LONDON, "0 7 * * *", utc(2026, 10, 25, 7, 30), utc(2026, 10, 25, 7, 0), utc(2026, 10, 25, 9, 0)),
    ],
    ids=[
        "a 2h window from midnight in Chicago ends 2h later, at the second 01:00",
        "a 2h window from 00:30 in Chicago ends 2h later, at the second 01:30",
        "a 2h window from midnight in London (23:00Z) ends 2h later, at 01:00 GMT",
        "07:00 on the Chicago fall-back day is 13:00Z (CST)",
        "07:00 on the London fall-back day is 07:00Z (GMT)",
    ],
)
def test_fall_back_windows_last_their_duration_of_elapsed_time(
    zone: str, cron_text: str, inside: dt.datetime, expected_start: dt.datetime, expected_end: dt.datetime
) -> None:
    cal = calendar.Calendar(zone, [surge(name="s", cron=cron_text, duration="2h")])
    window = only(cal.in_effect(inside))
    assert (window.start, window.end) == (expected_start, expected_end)
    assert window.end - window.start == dt.timedelta(hours=2)
    assert cal.in_effect(expected_end) == []
    assert cal.in_effect(expected_end - dt.timedelta(seconds=1)) == [window]


# --- Lead time and lookahead -------------------------------------------------------------------------

LEAD = surge(name="morning-rounds", cron="0 7 * * 1-5", duration="2h", leadTime="20m")
# Monday 2026-03-02 07:00 CST is 13:00Z, so the lead time begins at 12:40Z.


@pytest.mark.parametrize(
    ("moment", "lookahead", "expected"),
    [
        (utc(2026, 3, 2, 12, 40), dt.timedelta(0), True),
        (utc(2026, 3, 2, 12, 39, 59), dt.timedelta(0), False),
        (utc(2026, 3, 2, 12, 50), dt.timedelta(0), True),
        (utc(2026, 3, 2, 14, 59, 59), dt.timedelta(0), True),
        (utc(2026, 3, 2, 15, 0), dt.timedelta(0), False),
        (utc(2026, 3, 2, 12, 30), dt.timedelta(minutes=10), True),
        (utc(2026, 3, 2, 12, 29, 59), dt.timedelta(minutes=10), False),
        (utc(2026, 3, 2, 15, 0), dt.timedelta(hours=1), False),
        (utc(2026, 3, 1, 12, 40), dt.timedelta(0), False),
    ],
    ids=[
        "the surge is in effect exactly leadTime before it starts",
        "one second earlier it is not",
        "it stays in effect through the lead time",
        "it stays in effect until the last second of the window",
        "the end is exclusive even with a lead time",
        "a lookahead extends the lead time further back",
        "one second before lead time plus lookahead it is not in effect",
        "a lookahead does not extend the end",
        "the lead time before a Sunday that has no window brings nothing",
    ],
)
def test_lead_time_and_lookahead(moment: dt.datetime, lookahead: dt.timedelta, expected: bool) -> None:
    found = calendar.Calendar(CHICAGO, [LEAD]).in_effect(moment, lookahead)
    assert [window.surge for window in found] == (["morning-rounds"] if expected else [])
    for window in found:
        assert window.start == utc(2026, 3, 2, 13, 0)
        assert window.effective_start == utc(2026, 3, 2, 12, 40)
        assert window.lead_time == dt.timedelta(minutes=20)


def test_a_lead_time_reaches_back_across_midnight_into_the_previous_day() -> None:
    cal = calendar.Calendar(LONDON, [surge(name="night", cron="0 0 * * MON", duration="1h", leadTime="2h")])
    # Monday 2026-03-02 00:00 GMT; the lead time starts Sunday 22:00.
    assert cal.in_effect(utc(2026, 3, 1, 21, 59, 59)) == []
    assert only(cal.in_effect(utc(2026, 3, 1, 22, 0))).start == utc(2026, 3, 2, 0, 0)


def test_window_in_effect_matches_the_calendar() -> None:
    window = only(calendar.Calendar(CHICAGO, [LEAD]).windows(utc(2026, 3, 2), utc(2026, 3, 3)))
    assert window.in_effect(utc(2026, 3, 2, 12, 40))
    assert not window.in_effect(utc(2026, 3, 2, 12, 39))
    assert window.in_effect(utc(2026, 3, 2, 12, 39), dt.timedelta(minutes=1))
    assert not window.in_effect(utc(2026, 3, 2, 15, 0), dt.timedelta(days=1))


# --- Date ranges -------------------------------------------------------------------------------------

FLU = surge(name="flu-season", start="2026-12-01", end="2027-03-01", multiplier=1.3)
VACCINATION = surge(name="vaccination-drive", start="2026-12-12T08:00", end="2026-12-12T18:00", multiplier=1.0,
                    minReplicas=20)


@pytest.mark.parametrize(
    ("zone", "ranged", "expected_start", "expected_end"),
    [
        (CHICAGO, FLU, utc(2026, 12, 1, 6, 0), utc(2027, 3, 1, 6, 0)),
        (LONDON, FLU, utc(2026, 12, 1, 0, 0), utc(2027, 3, 1, 0, 0)),
        ("UTC", FLU, utc(2026, 12, 1), utc(2027, 3, 1)),
        (CHICAGO, VACCINATION, utc(2026, 12, 12, 14, 0), utc(2026, 12, 13, 0, 0)),
        (LONDON, VACCINATION, utc(2026, 12, 12, 8, 0), utc(2026, 12, 12, 18, 0)),
        (LONDON, surge(name="summer", start="2026-07-01", end="2026-07-02"), utc(2026, 6, 30, 23, 0),
         utc(2026, 7, 1, 23, 0)),
        (CHICAGO, surge(name="spring", start="2026-03-01", end="2026-04-01"), utc(2026, 3, 1, 6, 0),
         utc(2026, 4, 1, 5, 0)),
        ("UTC", surge(name="seconds", start="2026-12-12T08:00:30", end="2026-12-12T08:01"), utc(2026, 12, 12, 8, 0, 30),
         utc(2026, 12, 12, 8, 1)),
    ],
    ids=[
        "dates are local midnight in Chicago (06:00Z in winter)",
        "dates are local midnight in London (00:00Z in winter)",
        "dates are midnight in UTC",
        "date-times are local wall-clock times in Chicago",
        "date-times are local wall-clock times in London",
        "a London summer date is midnight BST, 23:00Z the day before",
        "a Chicago range across spring-forward starts in CST and ends in CDT",
        "date-times may carry seconds",
    ],
)
def test_date_ranges_are_read_on_the_local_wall_clock(
    zone: str, ranged: surgeschedule.Surge, expected_start: dt.datetime, expected_end: dt.datetime
) -> None:
    cal = calendar.Calendar(zone, [ranged])
    assert cal.in_effect(expected_start - dt.timedelta(seconds=1)) == []
    window = only(cal.in_effect(expected_start))
    assert (window.start, window.end) == (expected_start, expected_end)
    assert only(cal.in_effect(expected_end - dt.timedelta(seconds=1))) == window
    assert cal.in_effect(expected_end) == [], "the end is exclusive"


def test_date_range_windows_carry_the_surge_settings() -> None:
    window = only(calendar.Calendar(CHICAGO, [VACCINATION]).in_effect(utc(2026, 12, 12, 15)))
    assert (window.surge, window.multiplier, window.min_replicas) == ("vaccination-drive", 1.0, 20)


# --- Overlapping surges and what comes next ------------------------------------------------------------

ROUNDS = surge(name="morning-rounds", cron="0 7 * * 1-5", duration="2h", leadTime="20m", minReplicas=10)
EXAMPLE = calendar.Calendar(CHICAGO, [ROUNDS, FLU, VACCINATION])


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2026, 12, 14, 13, 30), {"morning-rounds", "flu-season"}),
        (utc(2026, 12, 12, 16, 0), {"flu-season", "vaccination-drive"}),
        (utc(2026, 12, 14, 12, 45), {"morning-rounds", "flu-season"}),
        (utc(2026, 12, 14, 18, 0), {"flu-season"}),
        (utc(2026, 11, 30, 13, 30), {"morning-rounds"}),
        (utc(2026, 11, 29, 13, 30), set()),
    ],
    ids=[
        "a weekday morning in flu season has both surges in effect",
        "the Saturday vaccination drive overlaps flu season",
        "the morning-rounds lead time counts as in effect alongside flu season",
        "a weekday afternoon in flu season has only flu season",
        "a Monday morning before flu season has only morning rounds",
        "a Sunday before flu season has nothing",
    ],
)
def test_in_effect_returns_every_overlapping_surge(moment: dt.datetime, expected: set[str]) -> None:
    found = EXAMPLE.in_effect(moment)
    assert {window.surge for window in found} == expected
    assert len(found) == len(expected)
    assert [window.start for window in found] == sorted(window.start for window in found)


@pytest.mark.parametrize(
    ("moment", "expected_surge", "expected_start"),
    [
        (utc(2026, 11, 30, 16, 0), "flu-season", utc(2026, 12, 1, 6, 0)),
        (utc(2026, 12, 1, 7, 0), "morning-rounds", utc(2026, 12, 1, 13, 0)),
        (utc(2026, 12, 11, 16, 0), "vaccination-drive", utc(2026, 12, 12, 14, 0)),
        (utc(2026, 12, 12, 16, 0), "morning-rounds", utc(2026, 12, 14, 13, 0)),
        (utc(2026, 12, 1, 13, 0), "morning-rounds", utc(2026, 12, 2, 13, 0)),
    ],
    ids=[
        "before flu season the next window is flu season, which starts first",
        "once flu season has started the next window is the next morning round",
        "on the Friday before, the next window is the Saturday vaccination drive",
        "during the drive on Saturday the next window is Monday's morning round",
        "a window starting exactly now is not next; the following one is",
    ],
)
def test_next_window_is_the_earliest_start_after_now(
    moment: dt.datetime, expected_surge: str, expected_start: dt.datetime
) -> None:
    window = EXAMPLE.next_window(moment)
    assert window is not None
    assert (window.surge, window.start) == (expected_surge, expected_start)


def test_next_window_is_none_when_nothing_is_left_within_the_search() -> None:
    cal = calendar.Calendar(CHICAGO, [FLU, VACCINATION])
    assert cal.next_window(utc(2027, 3, 2)) is None
    assert cal.next_window(utc(2026, 11, 1), within=dt.timedelta(days=20)) is None
    assert cal.next_window(utc(2026, 11, 1), within=dt.timedelta(days=40)) is not None


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (
            utc(2026, 12, 12, 16, 0),
            {
                "morning-rounds": (utc(2026, 12, 14, 13, 0), utc(2026, 12, 14, 15, 0)),
                "flu-season": (utc(2026, 12, 1, 6, 0), utc(2027, 3, 1, 6, 0)),
                "vaccination-drive": (utc(2026, 12, 12, 14, 0), utc(2026, 12, 13, 0, 0)),
            },
        ),
        (
            utc(2026, 3, 1, 12, 0),
            {
                "morning-rounds": (utc(2026, 3, 2, 13, 0), utc(2026, 3, 2, 15, 0)),
                "flu-season": (utc(2026, 12, 1, 6, 0), utc(2027, 3, 1, 6, 0)),
                "vaccination-drive": (utc(2026, 12, 12, 14, 0), utc(2026, 12, 13, 0, 0)),
            },
        ),
        (
            utc(2027, 6, 1, 12, 0),
            {"morning-rounds": (utc(2027, 6, 1, 12, 0), utc(2027, 6, 1, 14, 0))},
        ),
        (
            utc(2027, 6, 1, 12, 30),
            {"morning-rounds": (utc(2027, 6, 1, 12, 0), utc(2027, 6, 1, 14, 0))},
        ),
    ],
    ids=[
        "during the drive each surge reports its current or next window",
        "date ranges nine months away are still found",
        "surges whose range has passed are left out",
        "a window in progress is reported rather than the next one",
    ],
)
def test_next_per_surge_gives_each_surge_its_current_or_next_window(
    moment: dt.datetime, expected: dict[str, tuple[dt.datetime, dt.datetime]]
) -> None:
    found = EXAMPLE.next_per_surge(moment)
    assert {name: (window.start, window.end) for name, window in found.items()} == expected


def test_next_per_surge_searches_as_far_as_asked_and_no_further() -> None:
    # Flu season starts 275 days after 2026-03-01 12:00Z.
    assert "flu-season" in EXAMPLE.next_per_surge(utc(2026, 3, 1, 12), within=dt.timedelta(days=276))
    assert "flu-season" not in EXAMPLE.next_per_surge(utc(2026, 3, 1, 12), within=dt.timedelta(days=274))


# --- Windows still open from the day before ------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "cron_text", "duration", "moment", "expected_starts"),
    [
        ("UTC", "0 22 * * *", "30h", utc(2026, 5, 6, 10, 0), [utc(2026, 5, 5, 22, 0)]),
        ("UTC", "0 22 * * *", "30h", utc(2026, 5, 6, 23, 0), [utc(2026, 5, 5, 22, 0), utc(2026, 5, 6, 22, 0)]),
        (CHICAGO, "0 20 * * MON", "30h", utc(2026, 3, 3, 18, 0), [utc(2026, 3, 3, 2, 0)]),
        (LONDON, "0 9 * * MON", "3d", utc(2026, 3, 4, 12, 0), [utc(2026, 3, 2, 9, 0)]),
        (LONDON, "0 23 * * SAT", "30h", utc(2026, 3, 29, 12, 0), [utc(2026, 3, 28, 23, 0)]),
    ],
    ids=[
        "a 30h window that started yesterday evening is still open this morning",
        "yesterday's 30h window and tonight's overlap and both are returned",
        "a Monday-evening 30h window in Chicago is still open on Tuesday afternoon",
        "a three-day window from Monday is still open on Wednesday",
        "a window opened the night before spring-forward is still open the next day",
    ],
)
def test_a_cron_window_that_started_earlier_and_is_still_open_is_returned(
    zone: str, cron_text: str, duration: str, moment: dt.datetime, expected_starts: list[dt.datetime]
) -> None:
    cal = calendar.Calendar(zone, [surge(name="long", cron=cron_text, duration=duration)])
    found = cal.in_effect(moment)
    assert [window.start for window in found] == expected_starts
    assert all(window.end > moment for window in found)
    assert cal.next_per_surge(moment)["long"].start == expected_starts[0]


# --- Construction -------------------------------------------------------------------------------------


def test_calendar_of_a_spec_reads_its_timezone_and_surges() -> None:
    spec = surgeschedule.SurgeScheduleSpec.model_validate(
        {"timezone": CHICAGO, "sloRefs": ["ed-triage-chart"], "surges": [ROUNDS.wire(), FLU.wire()]}
    )
    cal = calendar.Calendar.of(spec)
    assert cal.timezone == CHICAGO
    assert [window.surge for window in cal.in_effect(utc(2026, 12, 14, 13, 30))] == ["flu-season", "morning-rounds"]


def test_windows_are_sorted_by_start_and_cover_the_asked_span() -> None:
    windows = EXAMPLE.windows(utc(2026, 12, 11), utc(2026, 12, 15))
    assert [(window.surge, window.start) for window in windows] == [
        ("flu-season", utc(2026, 12, 1, 6, 0)),
        ("morning-rounds", utc(2026, 12, 11, 13, 0)),
        ("vaccination-drive", utc(2026, 12, 12, 14, 0)),
        ("morning-rounds", utc(2026, 12, 14, 13, 0)),
    ]
