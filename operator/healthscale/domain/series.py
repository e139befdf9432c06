"""Demand series on a regular time grid, and the wall-clock features seasonal models need.

A series is a start instant, a step and a float array in which NaN marks a missing interval
(a gap in Prometheus or in a trace). Everything is in epoch seconds internally; the grid is
aligned to multiples of the step so that series of different objects share their features.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UTC = dt.timezone.utc
DAY = 86400
WEEK = 7 * DAY


def to_epoch(moment: dt.datetime) -> int:
    """Whole epoch seconds of an aware datetime; naive datetimes are read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=UTC)


@dataclasses.dataclass(frozen=True, eq=False)
class Series:
    """Values at ``start``, ``start + step``, ...; NaN where nothing was observed."""

    start: int
    step: int
    values: FloatArray

    def __post_init__(self) -> None:
        if self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}s")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> int:
        """The instant just after the last interval."""
        return self.start + len(self) * self.step

    def times(self) -> IntArray:
        return self.start + self.step * np.arange(len(self), dtype=np.int64)

    def observed_count(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))

    def last_observed(self) -> tuple[int, float] | None:
        """Time and value of the newest non-NaN interval."""
        present = np.flatnonzero(~np.isnan(self.values))
        if present.size == 0:
            return None
        index = int(present[-1])
        return self.start + index * self.step, float(self.values[index])

    def since(self, moment: int) -> Series:
        """The part of the series from ``moment`` (aligned down to the grid) on."""
        offset = max(0, (moment - self.start) // self.step)
        return Series(self.start + offset * self.step, self.step, self.values[offset:])

    def before(self, moment: int) -> Series:
        """The intervals that start before ``moment``."""
        count = max(0, min(len(self), -(-(moment - self.start) // self.step)))
        return Series(self.start, self.step, self.values[:count])


def from_samples(times: Iterable[float], values: Iterable[float], step: int) -> Series:
    """Place irregular samples on the step grid (aligned to multiples of ``step``); later samples win."""
    time_array = np.asarray(list(times), dtype=np.float64)
    value_array = np.asarray(list(values), dtype=np.float64)
    if time_array.size == 0:
        return Series(0, step, np.empty(0))
    slots = np.floor(time_array / step).astype(np.int64)
    first, last = int(slots.min()), int(slots.max())
    grid = np.full(last - first + 1, np.nan)
    grid[slots - first] = value_array
    return Series(first * step, step, grid)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    return None if name == "UTC" else zoneinfo.ZoneInfo(name)


def wall_clock(times: IntArray, timezone: str) -> tuple[FloatArray, IntArray]:
    """Seconds since local midnight and local weekday (Monday = 0) for each epoch second."""
    zone = _zone(timezone)
    local = times.astype(np.int64)
    if zone is not None:
        hours = local // 3600
        unique_hours, inverse = np.unique(hours, return_inverse=True)
        offsets = np.array(
            [int(dt.datetime.fromtimestamp(int(hour) * 3600, tz=zone).utcoffset().total_seconds())  # type: ignore[union-attr]
             for hour in unique_hours],
            dtype=np.int64,
        )
        local = local + offsets[inverse]
    seconds_of_day = (local % DAY).astype(np.float64)
    # 1970-01-01 was a Thursday (weekday 3).
    weekday = ((local // DAY) + 3) % 7
    return seconds_of_day, weekday.astype(np.int64)
