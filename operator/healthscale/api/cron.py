"""Five-field cron expressions (minute hour day-of-month month day-of-week), parsed once.

Pure and clock-free: the calendar decides how a matching wall-clock minute maps onto real time
in a time zone (including DST gaps and repeats). Semantics follow Vixie cron: when both
day-of-month and day-of-week are restricted, a day matches if either does. An expression that
can never fire (``0 0 30 2 *``) is an error. ``PATTERN`` is the same grammar with the field
ranges, as a regular expression the API server can check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

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
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)


_MONTH_NAMES = ("January February March April May June July August September October November December").split()
_LONGEST_MONTH = dict(zip(range(1, 13), (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)))
"""Days in each month in its longest year (February 29 happens)."""


def _number_pattern(low: int, high: int) -> str:
    """A regular expression for the whole numbers low..high (at most 99), leading zeros allowed."""
    parts = []
    for tens in range(high // 10 + 1):
        first, last = max(low, tens * 10), min(high, tens * 10 + 9)
        if first <= last:
            prefix = str(tens) if tens else ""
            parts.append(f"{prefix}[{first % 10}-{last % 10}]")
    return "0*(" + "|".join(parts) + ")"


def _field_pattern(low: int, high: int, names: dict[str, int]) -> str:
    value = _number_pattern(low, high)
    if names:
        value = f"({value}|(?i:{'|'.join(names)}))"
    element = f"(\\*|{value}(-{value})?)(/0*[1-9][0-9]*)?"
    return f"{element}(,{element})*"


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

    def most_starts_within(self, span: dt.timedelta) -> int:
        """An upper bound on how often the expression fires in any interval ``span`` long.

        Counts as if every day matched, and widens the interval by 2h because a clock change
        (at most 2h, in any zone) makes a wall-clock stretch longer than the time elapsed.
        """
        starts = sorted(hour * 60 + minute for hour in self.hours for minute in self.minutes)
        whole_days, rest = divmod(span + dt.timedelta(hours=2), dt.timedelta(days=1))
        rest_minutes = math.ceil(rest / dt.timedelta(minutes=1))
        # Most starts in a wall-clock stretch of rest_minutes (ends included), wrapping past midnight.
        circular = starts + [start + 1440 for start in starts]
        most, last = 0, 0
        for first, start in enumerate(starts):
            last = max(last, first)
            while last + 1 < len(circular) and circular[last + 1] - start <= rest_minutes:
                last += 1
            most = max(most, last - first + 1)
        return whole_days * len(starts) + min(most, len(starts))


def _value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not (token.isascii() and token.isdigit()):
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
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
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
    parsed = [_field(part, name, low, high, names) for part, (name, low, high, names) in zip(parts, FIELDS)]
    weekdays = frozenset(day % 7 for day in parsed[4])
    spec = CronSpec(
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
    _check_fires(spec)
    return spec


def _check_fires(spec: CronSpec) -> None:
    """Raise CronError when no date ever matches: the days of the month exist in none of the months."""
    if spec.day_of_month_restricted and spec.weekday_restricted:
        return  # either field may match, and every weekday comes round
    if any(day <= _LONGEST_MONTH[month] for month in spec.months for day in spec.days_of_month):
        return
    months = [_MONTH_NAMES[month - 1] for month in sorted(spec.months)]
    days = [str(day) for day in sorted(spec.days_of_month)]
    raise CronError(
        f"cron {spec.expression!r} never fires: {_spoken(months, 'and')} "
        f"{'has' if len(months) == 1 else 'have'} no day {_spoken(days, 'or')}"
    )


def _spoken(items: list[str], conjunction: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


PATTERN = (
    "^\\s*(@(?i:" + "|".join(name.removeprefix("@") for name in _MACROS) + ")|"
    + "\\s+".join(_field_pattern(low, high, names) for _name, low, high, names in FIELDS)
    + ")\\s*$"
)
"""The grammar with every field's range: what the CRD can check without parsing (not "never fires")."""
