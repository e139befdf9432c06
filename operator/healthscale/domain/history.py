"""One ClinicalSLO's demand history between cycles: what is kept, what to fetch next, how to merge.

Pure: no I/O. ``healthscale.service.history`` runs the plan against Prometheus. History is fetched
incrementally: the first cycle reads the whole ``forecast.history`` window in chunks of at most
``MAX_POINTS_PER_QUERY`` points, later cycles only what is new since the last kept sample (plus that
sample again, because it may have been computed from an incomplete window).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from healthscale.domain import series

MAX_POINTS_PER_QUERY = 10_000
"""Prometheus refuses query_range above 11,000 points; stay under it."""

STORED_DTYPE = np.float32
"""Kept history is single precision: half the memory (80 KiB for 14 days at 1 minute instead of
160 KiB, per ClinicalSLO) for 7 significant digits, far finer than any demand signal. Values beyond
its range (about ±3.4e38) are kept as ±Inf, which callers already treat as non-finite samples."""


@dataclasses.dataclass
class HistoryCache:
    """One ClinicalSLO's demand history, kept between cycles (compactly, see ``STORED_DTYPE``)."""

    query: str
    step: int
    start: int = 0
    values: npt.NDArray[np.float32] = dataclasses.field(default_factory=lambda: np.empty(0, STORED_DTYPE))

    def __post_init__(self) -> None:
        if self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}s")

    @property
    def end(self) -> int:
        """The instant just after the last kept interval."""
        return self.start + self.values.size * self.step

    def keep(self, history: series.Series) -> None:
        # Overflow to ±Inf is intended here (see STORED_DTYPE), not worth a warning.
        with np.errstate(over="ignore"):
            self.start, self.values = history.start, history.values.astype(STORED_DTYPE)

    def as_series(self) -> series.Series:
        """The kept history in double precision."""
        return series.Series(self.start, self.step, self.values.astype(np.float64))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one read covers: the grid ``[begin, end]`` (both inclusive, multiples of the step) and
    the ranges to fetch for it, each ``(start, end)`` inclusive and at most
    ``MAX_POINTS_PER_QUERY`` points."""

    begin: int
    end: int
    chunks: tuple[tuple[int, int], ...]


def plan(cache: HistoryCache, now: int, history_seconds: int) -> Plan:
    """The window ``[now - history, now]`` on the cache's grid, and the chunks the cache lacks."""
    step = cache.step
    begin = (now - history_seconds) // step * step
    end = now // step * step
    if cache.values.size and cache.end > begin:
        # Refetch the last known point too: it may have been computed from an incomplete window.
        fetch_from = max(begin, cache.end - step)
    else:
        fetch_from = begin
    span = MAX_POINTS_PER_QUERY * step
    chunks = tuple((start, min(end, start + span - step)) for start in range(fetch_from, end + 1, span))
    return Plan(begin, end, chunks)


def merge(kept: HistoryCache, fresh: series.Series, begin: int, end: int) -> series.Series:
    """The kept history updated by ``fresh`` on the grid ``[begin, end]`` (fresh samples win, NaN
    never does; ±Inf is a sample like any other and is kept)."""
    step = kept.step
    count = (end - begin) // step + 1
    values = np.full(count, np.nan)
    # Kept history is on the same grid: a slice copy, not per-sample indexing (it is every cycle).
    offset = (kept.start - begin) // step
    first, last = max(0, offset), min(count, offset + kept.values.size)
    if first < last:
        values[first:last] = kept.values[first - offset:last - offset]
    if len(fresh):
        offsets = (fresh.start + np.arange(len(fresh)) * fresh.step - begin) // step
        inside = (offsets >= 0) & (offsets < count) & ~np.isnan(fresh.values)
        values[offsets[inside]] = fresh.values[inside]
    return series.Series(begin, step, values)
