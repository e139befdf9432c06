"""Rolling time splits of a replay: choose on earlier periods, score on the next one.

The scored intervals are cut into calendar periods (months, or weeks or days for short traces:
the longest unit that gives at least ``MIN_PERIODS`` of them). Split ``k`` scores period ``k`` and
lets a choice (a model, any tunable) look only at the periods before it: all of them for an
expanding window, or the last ``window`` of them. No interval a split scores is one its choice
saw, and every interval its choice saw comes before every interval it scores.

Splits are masks over the replay's scored intervals, not separate replays: every decision in a
replay already sees only the intervals before it, so scoring period ``k`` of one long replay is
what an operator started at the beginning of the trace would have done in period ``k``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import numpy.typing as npt

from healthscale.domain import series

BoolArray = npt.NDArray[np.bool_]

UNITS = ("month", "week", "day")
MIN_PERIODS = 4
"""The longest unit with at least this many periods is used: three splits at the very least."""

_MONDAY = 4 * series.DAY
"""1970-01-05T00:00Z, a Monday: weeks run Monday to Sunday."""


def labels(times: series.IntArray, unit: str) -> series.IntArray:
    """The period of each time (epoch seconds, the trace's wall clock read as UTC), as increasing integers."""
    if unit == "month":
        months: series.IntArray = times.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        return months
    if unit == "week":
        return (times - _MONDAY) // series.WEEK
    if unit == "day":
        return times // series.DAY
    raise ValueError(f"unknown period unit {unit!r}; expected one of {', '.join(UNITS)}")


def name(label: int, unit: str) -> str:
    """``2014-03``, ``week of 2014-03-03`` or ``2014-03-03``."""
    if unit == "month":
        return f"{1970 + label // 12:04d}-{label % 12 + 1:02d}"
    first = label * series.WEEK + _MONDAY if unit == "week" else label * series.DAY
    day = dt.datetime.fromtimestamp(first, dt.timezone.utc).date().isoformat()
    return f"week of {day}" if unit == "week" else day


def unit_for(times: series.IntArray) -> str:
    """The longest unit that cuts ``times`` into at least ``MIN_PERIODS`` periods (else days)."""
    for unit in UNITS:
        if np.unique(labels(times, unit)).size >= MIN_PERIODS:
            return unit
    return UNITS[-1]


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split: the intervals a choice may look at and the period it is scored on."""

    period: str
    choose: BoolArray
    score: BoolArray


def rolling(times: series.IntArray, unit: str, window: int | None = None, max_splits: int | None = None) -> list[Split]:
    """Splits scoring each period after the first, choosing on the ``window`` periods before it
    (all earlier periods when None). ``max_splits`` keeps that many, evenly spaced, the last included."""
    if window is not None and window < 1:
        raise ValueError(f"a choice needs at least one earlier period, got window {window}")
    if max_splits is not None and max_splits < 1:
        raise ValueError(f"max_splits must be at least 1, got {max_splits}")
    period = labels(times, unit)
    distinct = np.unique(period)
    chosen = list(range(1, distinct.size))
    if max_splits is not None and len(chosen) > max_splits:
        # Spaced back from the last, so that the last period is always scored.
        picks = np.linspace(len(chosen) - 1, 0, max(1, max_splits)).round().astype(int)
        chosen = [chosen[int(index)] for index in np.unique(picks)]
    splits = []
    for index in chosen:
        first = distinct[0] if window is None else distinct[max(0, index - window)]
        splits.append(Split(
            period=name(int(distinct[index]), unit),
            choose=(period >= first) & (period < distinct[index]),
            score=period == distinct[index],
        ))
    return splits
