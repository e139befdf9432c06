"""The surge calendar: when each known surge is in effect, read on a time zone's wall clock.

Cron windows are expanded day by day on the local calendar and then placed on the real time
line, so DST days behave as people expect:

- a start time that does not exist (the spring-forward gap) starts when the clocks jump;
- a start time that happens twice (the fall-back hour) starts once, at its first occurrence;
- durations are elapsed time, so a 2h window is 2h long even across a transition.

Date ranges (``start``/``end``) are local wall-clock instants with the same gap rule. Every
query takes the instant it is asked about; nothing here reads the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence

from healthscale.api import cron, surgeschedule

UTC = dt.timezone.utc


@dataclasses.dataclass(frozen=True)
class Window:
    """One occurrence of a surge on the real time line (aware UTC datetimes)."""

    surge: str
    start: dt.datetime
    end: dt.datetime
    lead_time: dt.timedelta
    multiplier: float
    min_replicas: int | None

    @property
    def effective_start(self) -> dt.datetime:
        """When the surge must already be in effect: ``lead_time`` before it starts."""
        return self.start - self.lead_time

    def in_effect(self, moment: dt.datetime, lookahead: dt.timedelta = dt.timedelta(0)) -> bool:
        """True when ``moment`` is inside the window, its lead time, or ``lookahead`` before that."""
        return self.effective_start - lookahead <= moment < self.end


def _aware(local: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Place a naive local time on the time line (first occurrence; gaps start at the jump)."""
    first = local.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == local:
        return as_utc
    # ``local`` falls in a gap: the earliest whole second whose wall clock reads at or after it.
    low = int(local.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(as_utc.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= local:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)


@dataclasses.dataclass(frozen=True)
class _Rule:
    surge: surgeschedule.Surge
    cron_spec: cron.CronSpec | None


class Calendar:
    """The surges of one SurgeSchedule (or several), answering "what is in effect when"."""

    def __init__(self, timezone: str, surges: Sequence[surgeschedule.Surge]) -> None:
        self.timezone = timezone
        self._zone = zoneinfo.ZoneInfo(timezone)
        self._rules = tuple(_Rule(surge, cron.parse(surge.cron) if surge.cron else None) for surge in surges)

    @staticmethod
    def of(spec: surgeschedule.SurgeScheduleSpec) -> Calendar:
        return Calendar(spec.timezone, spec.surges)

    def _window(self, surge: surgeschedule.Surge, start: dt.datetime, end: dt.datetime) -> Window:
        return Window(surge.name, start, end, surge.lead_time, surge.multiplier, surge.min_replicas)

    def _cron_windows(self, rule: _Rule, begin: dt.datetime, end: dt.datetime) -> Iterable[Window]:
        assert rule.cron_spec is not None and rule.surge.duration is not None
        duration = rule.surge.duration
        # A window that started before ``begin`` may still be open, so look back one duration.
        first_day = (begin - duration - rule.surge.lead_time).astimezone(self._zone).date() - dt.timedelta(days=1)
        last_day = (end + rule.surge.lead_time).astimezone(self._zone).date() + dt.timedelta(days=1)
        times = rule.cron_spec.times_of_day()
        day = first_day
        while day <= last_day:
            if rule.cron_spec.matches_day(day):
                for time_of_day in times:
                    start = _aware(dt.datetime.combine(day, time_of_day), self._zone)
                    window = self._window(rule.surge, start, start + duration)
                    if window.end > begin and window.effective_start < end:
                        yield window
            day += dt.timedelta(days=1)

    def _range_window(self, rule: _Rule) -> Window:
        assert rule.surge.start is not None and rule.surge.end is not None
        start = _aware(surgeschedule.parse_local_time(rule.surge.start), self._zone)
        end = _aware(surgeschedule.parse_local_time(rule.surge.end), self._zone)
        return self._window(rule.surge, start, end)

    def windows(self, begin: dt.datetime, end: dt.datetime) -> list[Window]:
        """Every window (lead time included) that overlaps ``[begin, end)``, by start time."""
        found: list[Window] = []
        for rule in self._rules:
            if rule.cron_spec is not None:
                found.extend(self._cron_windows(rule, begin, end))
            else:
                window = self._range_window(rule)
                if window.end > begin and window.effective_start < end:
                    found.append(window)
        # Overlapping occurrences of one cron surge (duration longer than its period) merge
        # naturally in the queries below; they are kept apart here so each has its own bounds.
        return sorted(found, key=lambda window: (window.start, window.surge))

    def in_effect(self, moment: dt.datetime, lookahead: dt.timedelta = dt.timedelta(0)) -> list[Window]:
        """Surges active at ``moment`` or starting within their lead time (plus ``lookahead``)."""
        longest = max((rule.surge.lead_time for rule in self._rules), default=dt.timedelta(0))
        candidates = self.windows(moment - dt.timedelta(seconds=1), moment + lookahead + longest + dt.timedelta(seconds=1))
        return [window for window in candidates if window.in_effect(moment, lookahead)]

    def next_window(self, moment: dt.datetime, within: dt.timedelta = dt.timedelta(days=400)) -> Window | None:
        """The first window that starts after ``moment`` (searching up to ``within`` ahead)."""
        horizon = dt.timedelta(days=1)
        while horizon <= within:
            upcoming = [window for window in self.windows(moment, moment + horizon) if window.start > moment]
            if upcoming:
                return min(upcoming, key=lambda window: (window.start, window.surge))
            horizon *= 4
        upcoming = [window for window in self.windows(moment, moment + within) if window.start > moment]
        return min(upcoming, key=lambda window: (window.start, window.surge)) if upcoming else None

    def next_per_surge(self, moment: dt.datetime, within: dt.timedelta = dt.timedelta(days=400)) -> dict[str, Window]:
        """For each surge, its window in effect at ``moment`` if any, else its next one."""
        result: dict[str, Window] = {}
        for rule in self._rules:
            single = Calendar.__new__(Calendar)
            single.timezone, single._zone, single._rules = self.timezone, self._zone, (rule,)
            horizon = dt.timedelta(days=1)
            while rule.surge.name not in result:
                # Widen the search 1d, 4d, 16d, ... and always finish with ``within`` itself, so a
                # window between the last power of four and ``within`` is not missed.
                span = min(horizon, within)
                for window in single.windows(moment, moment + span):
                    if window.end > moment:
                        result[rule.surge.name] = window
                        break
                if span >= within:
                    break
                horizon *= 4
        return result
