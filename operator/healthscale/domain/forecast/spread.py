"""The forecast band's width by time of day: a factor on a model's pooled band, hour by hour.

A fixed replica budget is spent best when every interval has the same chance of demand above its
band (the newsvendor condition), which needs the band calibrated hour by hour, not just overall.
Errors are not equally large at every hour (a call centre's morning ramp misses by more than its
afternoon), so ``fit`` regresses the log absolute h-step in-sample error on a few daily harmonics
(the usual multiplicative-variance model: one huge spike moves its hour's width by a bounded
factor, not in proportion), bounds each hour at ``BOUND`` either way of the level, and rescales so
that the provisioned quantile is still met overall. ``choice`` fits it after the final model and
applies ``Spread.at`` to the upper quantiles; None keeps the pooled band.

Cheap by construction (the operator cold-fits a thousand series on two cores; this adds about a
millisecond per series): origins are strided like ``choice.validate``'s and at most ``MAX_ORIGINS``,
local time of day is computed once per grid index, not per (origin, step), and the regression runs
on the errors summed per grid index.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from healthscale.domain import series as series_
from healthscale.domain.forecast import base

ENABLED = True
"""Whether ``choice.fit`` fits a spread at all; False keeps every band pooled over the hours. On the
rolling splits (``bench/generalise.py --models auto``) it takes the call centre at p95 from 1.03x to
0.91x the three-line heuristic at equal cost (the one row that did not beat it) and helps the call
centre at p80, the ED at p80 and the taxi; the ED at p95 gets a little worse (0.24x to 0.25x the
HPA, still inside the 0.3x goal)."""

ORDER = 2
"""Daily harmonics in the band's width: a morning ramp may be wider than the afternoon, no finer."""

BOUND = 4.0
"""No hour's band is more than this many times wider or narrower than the level (the typical
hour's): a few days of history prove no more than that."""

MIN_ERRORS = 50
"""Fewer in-sample errors than this cannot show a daily shape: no spread, the pooled band."""

MIN_SAMPLES = 24 * 24
"""Fewer observed intervals in the history than this (two dozen per hour of the day) leave the
pooled band: the h-step errors of neighbouring origins overlap, so the intervals, not the errors,
are the evidence. On the hourly ED trace (336 intervals in 14 days) a fitted daily width made the
p95 plan worse (0.65% to 0.68% unmet, ``make bench``); with 5- to 30-minute steps it helped."""

MAX_ORIGINS = 256
"""In-sample origins whose paths are scored, at most (evenly spaced): a few thousand errors fix five
coefficients and a quantile, and the cost stays near a millisecond per series."""

FLOOR = 0.1
"""An error counts as at least this share of the typical one: exact zeros (equal counts) would
have log -inf."""


@dataclasses.dataclass(frozen=True, eq=False)
class Spread:
    """How wide the band is at each time of day, as a factor on the band pooled over all hours."""

    coefficients: base.FloatArray
    """Of the log width on ``daily``'s columns; the first (the level) includes the rescaling."""
    calendar: base.Calendar

    @property
    def level(self) -> float:
        """The factor before the hour's harmonics: every hour's width is within ``BOUND`` of it."""
        return math.exp(float(self.coefficients[0]))

    def at(self, times: base.IntArray) -> base.FloatArray:
        """The factor on the pooled band's offsets from the point forecast at each of ``times``."""
        return width(daily(self.calendar.days(times).seconds), self.coefficients)


def width(design: base.FloatArray, coefficients: base.FloatArray) -> base.FloatArray:
    # Bounded around the level (the constant term): harmonics alone cannot make an hour extreme.
    bound = math.log(BOUND)
    result: base.FloatArray = np.exp(coefficients[0] + np.clip(design[:, 1:] @ coefficients[1:], -bound, bound))
    return result


def daily(seconds: base.FloatArray) -> base.FloatArray:
    """The design: a constant, then sines and cosines of the time of day up to ``ORDER``."""
    # In single precision: a width needs no more, and numpy's float32 sine is many times faster.
    angle = (2.0 * np.pi / series_.DAY) * np.asarray(seconds, dtype=np.float32)
    design: base.FloatArray = np.empty((angle.shape[0], 1 + 2 * ORDER))
    design[:, 0] = 1.0
    sine, cosine = np.sin(angle).astype(np.float64), np.cos(angle).astype(np.float64)
    design[:, 1], design[:, 1 + ORDER] = sine, cosine
    # Higher orders by the angle-addition formulas: two trigonometric calls whatever the order.
    for order in range(2, ORDER + 1):
        previous_sine, previous_cosine = design[:, order - 1], design[:, order + ORDER - 1]
        design[:, order] = previous_sine * cosine + previous_cosine * sine
        design[:, order + ORDER] = previous_cosine * cosine - previous_sine * sine
    return design


def fit(fitted: base.Fitted, training: base.Training, steps: int, level: float) -> Spread | None:
    """The band's width by time of day from ``fitted``'s in-sample errors up to ``steps`` ahead, or
    None when the history is too short (``MIN_SAMPLES``) or has too few errors (or none but zeros)."""
    z = training.z
    count = int(z.shape[0])
    if np.count_nonzero(~np.isnan(z)) < MIN_SAMPLES:
        return None
    # Strided at least like choice.validate (neighbouring origins' paths overlap and say nearly the
    # same), and more on long histories.
    first = max(1, count // 10)
    origins = np.arange(first, count, max(1, steps // 4, -(-(count - first) // MAX_ORIGINS)), dtype=np.int64)
    if origins.size == 0 or steps < 1:
        return None
    index = origins[:, None] + np.arange(steps, dtype=np.int64)[None, :]
    actual = np.where(index < count, z[np.minimum(index, count - 1)], np.nan)
    errors = actual - fitted.paths_z(z, training.start, origins, steps)
    present = ~np.isnan(errors)
    if np.count_nonzero(present) < MIN_ERRORS:
        return None
    rows = index[present]
    median, upper = quantiles(errors[present], (0.5, level))
    centred = errors[present] - median
    pooled = float(upper - median)
    absolute = np.abs(centred)
    typical = float(np.mean(absolute))
    if not typical > 0 or not pooled > 0:
        return None
    # Time of day once per grid index (the calendar's time zone conversion is the costly part), and
    # least squares on the errors summed per grid index: the same solution as on every error, since
    # errors at one index share their row of the design. numpy, not statsmodels' WLS: a small
    # solve of 1 + 2 * ORDER columns per fit, where building a model object would cost more than the solve.
    grid = daily(training.calendar.days(training.start + training.step * np.arange(count, dtype=np.int64)).seconds)
    weight = np.bincount(rows, minlength=count).astype(np.float64)
    total = np.bincount(rows, weights=np.log(np.maximum(absolute, FLOOR * typical)), minlength=count)
    coefficients: base.FloatArray = np.asarray(
        np.linalg.lstsq(grid.T @ (weight[:, None] * grid), grid.T @ total, rcond=None)[0], dtype=np.float64)
    # Rescaled so that the standardised errors' quantile at ``level`` is the pooled one: the band
    # keeps its overall coverage and only moves between hours.
    standardised = float(quantiles(centred / width(grid, coefficients)[rows], (level,))[0])
    if not standardised > 0:
        return None
    coefficients[0] += math.log(standardised / pooled)
    return Spread(coefficients, training.calendar)


def quantiles(values: base.FloatArray, levels: tuple[float, ...]) -> base.FloatArray:
    """``np.quantile``'s default (linear) estimate at each of ``levels``, from one partial sort:
    about twice as fast on a few thousand values."""
    position = np.asarray(levels, dtype=np.float64) * (values.shape[0] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, values.shape[0] - 1)
    ordered = np.partition(values, np.union1d(below, above))
    result: base.FloatArray = ordered[below] + (position - below) * (ordered[above] - ordered[below])
    return result
