"""Five-field cron expressions (minute hour day-of-month month day-of-week), parsed once.

Pure and clock-free: the calendar decides how a matching wall-clock minute maps onto real time
in a time zone (including DST gaps and repeats). Semantics follow Vixie cron: when both
day-of-month and day-of-week are restricted, a day matches if either does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

_MONTHS = {name: number for number, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_WEEKDAYS = {name: number for number, name in enumerate("sun mon tue wed thu fri sat".split())}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)


class CronError(ValueError):
    """A cron expression that does not parse; the message names the field and the rule."""


@dataclasses.dataclass(frozen=True)
class CronSpec:
    """The sets of values each field allows."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_of_month_restricted: bool
    weekday_restricted: bool

    def matches_day(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        cron_weekday = day.isoweekday() % 7
        by_month_day = day.day in self.days_of_month
        by_weekday = cron_weekday in self.weekdays
        if self.day_of_month_restricted and self.weekday_restricted:
            return by_month_day or by_weekday
        return by_month_day and by_weekday

    def times_of_day(self) -> list[dt.time]:
        """Every wall-clock minute of a matching day, in order."""
        return [dt.time(hour, minute) for hour in sorted(self.hours) for minute in sorted(self.minutes)]


def _value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise CronError(f"{field} field: {token!r} is not a number between {low} and {high}")
    number = int(token)
    if not low <= number <= high:
        raise CronError(f"{field} field: {number} is outside {low}-{high}")
    return number


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field} field: empty list item in {text!r}")
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            first = _value(first_text, field, low, high, names)
            last = _value(last_text, field, low, high, names)
            if first > last:
                raise CronError(f"{field} field: range {body!r} runs backwards")
        else:
            first = _value(body, field, low, high, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(expression: str) -> CronSpec:
    """Parse a cron expression or raise CronError naming the field at fault."""
    text = _MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron {expression!r} has {len(parts)} fields; it needs five: minute hour day-of-month month day-of-week"
        )
    parsed = [_field(part, name, low, high, names) for part, (name, low, high, names) in zip(parts, _FIELDS)]
    weekdays = frozenset(day % 7 for day in parsed[4])
    return CronSpec(
        expression=expression,
        minutes=parsed[0],
        hours=parsed[1],
        days_of_month=parsed[2],
        months=parsed[3],
        weekdays=weekdays,
        # As in Vixie cron, a field that starts with "*" (also "*/2") does not restrict days, so
        # "*/2 ... 1-5" means every other day AND a weekday, not OR.
        day_of_month_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )
