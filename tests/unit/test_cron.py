"""Five-field cron expressions: fields, ranges, steps, lists, names, macros, the Vixie day rule and errors."""

from __future__ import annotations

import datetime as dt

import pytest

from healthscale.api import cron


@pytest.mark.parametrize(
    ("expression", "attribute", "expected"),
    [
        ("* * * * *", "minutes", set(range(60))),
        ("* * * * *", "hours", set(range(24))),
        ("* * * * *", "days_of_month", set(range(1, 32))),
        ("* * * * *", "months", set(range(1, 13))),
        ("* * * * *", "weekdays", set(range(7))),
        ("15 * * * *", "minutes", {15}),
        ("0 9-17 * * *", "hours", set(range(9, 18))),
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("10-30/10 * * * *", "minutes", {10, 20, 30}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("0 0 1,15,31 * *", "days_of_month", {1, 15, 31}),
        ("0 6,12-14,20 * * *", "hours", {6, 12, 13, 14, 20}),
        ("0 0 * * MON-FRI", "weekdays", {1, 2, 3, 4, 5}),
        ("0 0 * * mon,Wed,FRI", "weekdays", {1, 3, 5}),
        ("0 0 * * SUN", "weekdays", {0}),
        ("0 0 * JAN *", "months", {1}),
        ("0 0 * JAN-MAR,dec *", "months", {1, 2, 3, 12}),
        ("0 0 * * 7", "weekdays", {0}),
        ("0 0 * * 5-7", "weekdays", {5, 6, 0}),
        ("0 0 * * 0,7", "weekdays", {0}),
        ("0 0 * * */2", "weekdays", {0, 2, 4, 6}),
    ],
    ids=[
        "a star minute is every minute",
        "a star hour is every hour",
        "a star day of month is days 1 to 31",
        "a star month is every month",
        "a star day of week is every day of the week",
        "a single minute",
        "a range includes both ends",
        "a step on a star counts from the lowest value",
        "a step on a range stays inside the range",
        "a step on a single value runs to the end of the field",
        "a list of days of the month",
        "a list can mix values and ranges",
        "weekday names make a range",
        "weekday names are case-insensitive in a list",
        "SUN is day zero",
        "a month name",
        "month names make ranges and mix with lists",
        "7 is Sunday",
        "a range ending at 7 wraps to Sunday",
        "0 and 7 are the same Sunday",
        "a step over the weekdays",
    ],
)
def test_fields_expand_to_the_values_they_allow(expression: str, attribute: str, expected: set[int]) -> None:
    assert getattr(cron.parse(expression), attribute) == frozenset(expected)


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
        (" @hourly ", "0 * * * *"),
    ],
    ids=[
        "@yearly is midnight on the first of January",
        "@annually is the same as @yearly",
        "@monthly is midnight on the first of the month",
        "@weekly is midnight on Sunday",
        "@daily is midnight every day",
        "@midnight is the same as @daily",
        "@hourly is minute zero of every hour",
        "macros are case-insensitive",
        "blanks around a macro are ignored",
    ],
)
def test_macros_mean_their_five_field_equivalents(macro: str, equivalent: str) -> None:
    parsed, expected = cron.parse(macro), cron.parse(equivalent)
    for attribute in (
        "minutes", "hours", "days_of_month", "months", "weekdays", "day_of_month_restricted", "weekday_restricted"
    ):
        assert getattr(parsed, attribute) == getattr(expected, attribute), attribute


def test_the_expression_is_kept_as_written() -> None:
    assert cron.parse("@daily").expression == "@daily"


def test_times_of_day_lists_every_matching_minute_in_order() -> None:
    assert cron.parse("30,0 8,7 * * *").times_of_day() == [
        dt.time(7, 0), dt.time(7, 30), dt.time(8, 0), dt.time(8, 30)
    ]


@pytest.mark.parametrize(
    ("expression", "day", "weekday_name", "expected"),
    [
        ("0 7 * * 1-5", "2026-03-09", "Monday", True),
        ("0 7 * * 1-5", "2026-03-14", "Saturday", False),
        ("0 7 * * MON-FRI", "2026-03-13", "Friday", True),
        ("0 0 * * 7", "2026-03-08", "Sunday", True),
        ("0 0 * * 7", "2026-03-09", "Monday", False),
        ("0 0 13 * *", "2026-04-13", "Monday", True),
        ("0 0 13 * *", "2026-03-20", "Friday", False),
        ("0 0 * * FRI", "2026-03-20", "Friday", True),
        ("0 0 * * FRI", "2026-04-13", "Monday", False),
        ("0 0 13 * FRI", "2026-03-13", "Friday", True),
        ("0 0 13 * FRI", "2026-03-20", "Friday", True),
        ("0 0 13 * FRI", "2026-04-13", "Monday", True),
        ("0 0 13 * FRI", "2026-03-16", "Monday", False),
        ("0 0 * JAN *", "2026-01-05", "Monday", True),
        ("0 0 * JAN *", "2026-02-02", "Monday", False),
        ("0 0 1 JAN MON", "2026-02-02", "Monday", False),
        ("0 0 31 * *", "2026-04-30", "Thursday", False),
        ("@daily", "2026-02-28", "Saturday", True),
        ("0 0 */2 * MON", "2026-02-03", "Tuesday", False),
        ("0 0 */2 * MON", "2026-02-16", "Monday", False),
        ("0 0 */2 * MON", "2026-02-23", "Monday", True),
    ],
    ids=[
        "a weekday schedule matches a Monday",
        "a weekday schedule skips a Saturday",
        "named weekdays include Friday",
        "7 matches a Sunday",
        "7 does not match a Monday",
        "a day of the month alone matches that day whatever the weekday",
        "a day of the month alone does not match other days",
        "a weekday alone matches that weekday whatever the date",
        "a weekday alone does not match other weekdays",
        "with both restricted a day matching both matches",
        "with both restricted a day matching only the weekday matches (Vixie OR)",
        "with both restricted a day matching only the day of the month matches (Vixie OR)",
        "with both restricted a day matching neither does not match",
        "a month restriction matches days in that month",
        "a month restriction skips other months",
        "the month still applies when both day fields are restricted",
        "day 31 never matches a thirty-day month",
        "@daily matches every day",
        "a stepped star day of the month is unrestricted, so odd days need the weekday too (not OR)",
        "a stepped star day of the month and the weekday must both match: even Monday fails",
        "a stepped star day of the month and the weekday both match on an odd Monday",
    ],
)
def test_matches_day(expression: str, day: str, weekday_name: str, expected: bool) -> None:
    date = dt.date.fromisoformat(day)
    assert date.strftime("%A") == weekday_name  # the table itself is right
    assert cron.parse(expression).matches_day(date) is expected


@pytest.mark.parametrize(
    ("expression", "expected_message"),
    [
        ("60 * * * *", "minute field: 60 is outside 0-59"),
        ("0 24 * * *", "hour field: 24 is outside 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is outside 1-31"),
        ("0 0 32 * *", "day-of-month field: 32 is outside 1-31"),
        ("0 0 * 13 *", "month field: 13 is outside 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is outside 0-7"),
        ("0 0 * * 5-1", "day-of-week field: range '5-1' runs backwards"),
        ("30-10 * * * *", "minute field: range '30-10' runs backwards"),
        ("*/0 * * * *", "minute field: step '0' must be a positive number"),
        ("0 */x * * *", "hour field: step 'x' must be a positive number"),
        ("0 0 * * FOO", "day-of-week field: 'FOO' is not a number between 0 and 7"),
        ("0 0 * MON *", "month field: 'MON' is not a number between 1 and 12"),
        ("1,,2 * * * *", "minute field: empty list item"),
        ("0 7 * *", "has 4 fields; it needs five: minute hour day-of-month month day-of-week"),
        ("0 7 * * * *", "has 6 fields; it needs five"),
        ("", "has 0 fields; it needs five"),
        ("@reboot", "has 1 fields; it needs five"),
    ],
    ids=[
        "minute 60 is out of range",
        "hour 24 is out of range",
        "day of month 0 is out of range",
        "day of month 32 is out of range",
        "month 13 is out of range",
        "day of week 8 is out of range",
        "a backwards weekday range is named",
        "a backwards minute range is named",
        "a zero step is refused",
        "a step that is not a number is refused",
        "an unknown weekday name is not a number",
        "weekday names are not month names",
        "an empty list item is refused",
        "four fields are too few",
        "six fields are too many",
        "an empty expression has no fields",
        "an unknown macro is not a five-field expression",
    ],
)
def test_errors_name_the_field_and_the_rule(expression: str, expected_message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse(expression)
    assert expected_message in str(caught.value)


def test_cron_errors_are_value_errors_so_pydantic_reports_them() -> None:
    assert issubclass(cron.CronError, ValueError)
