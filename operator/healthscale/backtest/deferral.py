"""What spec.defer would have held back over a replayed trace: hours in force and replica-hours
deferred, per surge window. Pure: it takes the policy, the calendar and the span, and returns numbers.

Deferral is in force where ``domain.deferral.in_force`` says a surge holds: inside some window's
``[effective_start, end)`` (``domain.calendar``), so a window's lead time counts, and back-to-back
(chained) windows simply follow each other. Windows are clipped to the replayed span.

The backtest has no cluster, so the deferrable workloads are one number: ``replicas``, their usual
replicas summed (``--deferrable-replicas``). While in force, ``replicas - min(replicas, defer.replicas)``
are held back: exact for one workload or for ``defer.replicas: 0`` (the default); with several
workloads and ``defer.replicas > 0`` each keeps that many, so it overstates what is held back.

Overlapping windows (of one surge or of several) are counted once: each stretch of time in force goes
to the window that holds longest, the one whose own end is latest (on a tie, the one that opened
first, then the surge's name), so a window nested inside another is credited 0 hours. The total is
the length of the union. ``duringBurn`` is not modelled: a trace has no SLI to burn.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections.abc import Sequence

import numpy as np

from healthscale.api import surgeschedule
from healthscale.backtest import replay
from healthscale.domain import calendar as calendar_
from healthscale.domain import series

HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Stretch:
    """A stretch of time in force, credited to one window."""

    start: dt.datetime
    end: dt.datetime
    window: calendar_.Window


@dataclasses.dataclass(frozen=True)
class WindowHours:
    """One surge window that overlaps the replayed span, and the time in force credited to it."""

    window: calendar_.Window
    hours: float
    replica_hours: float


@dataclasses.dataclass(frozen=True)
class Deferred:
    """What deferral held back over ``[begin, end)``."""

    begin: dt.datetime
    end: dt.datetime
    replicas: int
    """The deferrable workloads' usual replicas, summed (``--deferrable-replicas``)."""
    deferred_to: int
    """spec.defer.replicas: what they shrink to."""
    windows: tuple[WindowHours, ...]
    """Every window overlapping the span, by start (a nested window credited 0 hours included)."""
    stretches: tuple[Stretch, ...]
    """The time in force, in order, without overlaps."""

    @property
    def held_back(self) -> int:
        """Replicas held back while deferral is in force."""
        return self.replicas - min(self.replicas, self.deferred_to)

    @property
    def hours(self) -> float:
        """Hours in force within the span (the union of the windows)."""
        return sum(item.hours for item in self.windows)

    @property
    def replica_hours(self) -> float:
        return self.held_back * self.hours

    def by_surge(self) -> dict[str, tuple[float, float]]:
        """Per surge, in order of first window: (hours in force, replica-hours deferred)."""
        totals: dict[str, tuple[float, float]] = {}
        for item in self.windows:
            hours, replica_hours = totals.get(item.window.surge, (0.0, 0.0))
            totals[item.window.surge] = (hours + item.hours, replica_hours + item.replica_hours)
        return totals

    def per_interval(self, starts: np.ndarray, step: int) -> series.FloatArray:
        """Replicas held back during each interval ``[start, start + step)`` (epoch seconds), time
        weighted as the plan's ready_replicas is: deferral in force for half an interval counts half."""
        result = np.zeros(len(starts), dtype=np.float64)
        bounds = [(series.to_epoch(item.start), series.to_epoch(item.end)) for item in self.stretches]
        first = 0
        for row, start in enumerate(starts.tolist()):
            finish = start + step
            while first < len(bounds) and bounds[first][1] <= start:
                first += 1  # intervals come in order: a stretch over before this one is over for the rest
            covered = 0
            for low, high in bounds[first:]:
                if low >= finish:
                    break
                covered += min(high, finish) - max(low, start)
            result[row] = self.held_back * covered / step
        return result


def deferred(policy: surgeschedule.DeferPolicy, windows: Sequence[calendar_.Window], begin: dt.datetime,
             end: dt.datetime, replicas: int) -> Deferred:
    """What ``policy`` holds back over ``[begin, end)`` with ``replicas`` deferrable replicas, given the
    surge ``windows`` (``Calendar.windows`` over at least that span; others are ignored)."""
    if replicas < 0:
        raise ValueError(f"deferrable replicas must be >= 0, got {replicas}")
    inside = sorted((window for window in windows if window.end > begin and window.effective_start < end),
                    key=lambda window: (window.effective_start, window.start, window.surge))
    stretches = _stretches(inside, begin, end)
    credited: dict[calendar_.Window, dt.timedelta] = {}
    for stretch in stretches:
        credited[stretch.window] = credited.get(stretch.window, dt.timedelta(0)) + (stretch.end - stretch.start)
    held_back = replicas - min(replicas, policy.replicas)
    rows = []
    for window in sorted(inside, key=lambda window: (window.start, window.surge)):
        hours = credited.get(window, dt.timedelta(0)) / HOUR
        rows.append(WindowHours(window, hours, held_back * hours))
    return Deferred(begin, end, replicas, policy.replicas, tuple(rows), tuple(stretches))


def over_replay(policy: surgeschedule.DeferPolicy, result: replay.Result, replicas: int) -> Deferred:
    """``deferred`` over what ``result`` replayed: from its first scored interval to the trace's end
    (the warm-up is history only), with the schedule's windows as the replay read them."""
    begin = series.from_epoch(int(result.times[0])) if result.times.size else series.from_epoch(result.trace.series.end)
    return deferred(policy, result.windows, begin, series.from_epoch(result.trace.series.end), replicas)


def _stretches(windows: Sequence[calendar_.Window], begin: dt.datetime, end: dt.datetime) -> list[Stretch]:
    """Sweep the windows (sorted by effective start) over ``[begin, end)``: between consecutive
    openings and closings, the open window that holds longest is credited."""
    boundaries = sorted({begin, end, *(max(begin, min(end, moment)) for window in windows
                                       for moment in (window.effective_start, window.end))})
    open_: list[tuple[float, dt.datetime, dt.datetime, str, int]] = []  # latest end first: ends negated
    stretches: list[Stretch] = []
    following = 0
    for low, high in zip(boundaries, boundaries[1:]):
        while following < len(windows) and windows[following].effective_start <= low:
            window = windows[following]
            heapq.heappush(open_, (-window.end.timestamp(), window.effective_start, window.start, window.surge,
                                   following))
            following += 1
        while open_ and windows[open_[0][4]].end <= low:
            heapq.heappop(open_)
        if not open_:
            continue
        holder = windows[open_[0][4]]
        if stretches and stretches[-1].window is holder and stretches[-1].end == low:
            stretches[-1] = Stretch(stretches[-1].start, high, holder)
        else:
            stretches.append(Stretch(low, high, holder))
    return stretches

