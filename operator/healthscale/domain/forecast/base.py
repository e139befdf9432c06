"""What every forecasting model shares: settings, the forecast and "no forecast" values, the
transformed space models work in, the local calendar they see, and error quantiles.

Models work on ``z = log1p(demand / scale)`` (``Scale``), so daily swings act multiplicatively
and zeros are fine. Their bands come from the empirical distribution of their own errors
(``error_quantiles``), so skewed demand gets a skewed band and nothing is assumed Gaussian.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
import math
import warnings
from typing import Protocol

import numpy as np
from statsmodels.regression.linear_model import yule_walker

from healthscale.domain import series as series_
from healthscale.domain.forecast import holidays as holidays_

FloatArray = series_.FloatArray
IntArray = series_.IntArray

LEVELS: tuple[float, ...] = (0.5, 0.75, 0.8, 0.9, 0.95, 0.975, 0.99)
"""Quantile levels every forecast carries (a spec's own quantile is added when it asks for one)."""

MIN_HISTORY = series_.DAY
"""Less observed span than one day cannot show a daily cycle: no forecast."""

WEEKLY_HISTORY = 7 * series_.DAY
"""From one week of history on, weekday levels and a weekend shape are fitted."""

AUTO = "auto"
"""Not a model: choose one of the candidates by rolling-origin error (``choice``)."""

SUNDAY = 6
"""Weekday number of Sunday (Monday = 0), the day type a holiday starts from."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to forecast one series; built from a ClinicalSLO's ``spec.forecast``."""

    history: int
    step: int
    horizon: int
    model: str = AUTO
    timezone: str = "UTC"
    refit_every: int = 6 * 3600
    extra_level: float | None = None
    validate: bool = True
    """Measure rolling-origin error (and widen the band to match) at each refit; ``auto`` always does."""
    holidays: tuple[holidays_.Region, ...] = ()
    """Whose public holidays the series follows; none means every day is an ordinary weekday."""
    holiday_effect: str = holidays_.LEARNED
    """How a holiday is treated (``holidays.EFFECTS``)."""

    @property
    def horizon_steps(self) -> int:
        return max(1, -(-self.horizon // self.step))

    @property
    def levels(self) -> tuple[float, ...]:
        if self.extra_level is None or self.extra_level in LEVELS:
            return LEVELS
        return tuple(sorted((*LEVELS, self.extra_level)))


@dataclasses.dataclass(frozen=True, eq=False)
class Forecast:
    """Demand over ``[start, start + len(point) * step)``: a point forecast and upper quantiles."""

    model: str
    start: int
    step: int
    point: FloatArray
    quantiles: Mapping[float, FloatArray]
    error: float | None = None
    """Recent mean absolute scaled error (1.0 = as good as "same as last interval")."""
    notes: tuple[str, ...] = ()

    def quantile(self, level: float) -> FloatArray:
        """The forecast at ``level``, interpolating between carried levels when needed."""
        if level in self.quantiles:
            return self.quantiles[level]
        carried = sorted(self.quantiles)
        if level <= carried[0]:
            return self.quantiles[carried[0]]
        if level >= carried[-1]:
            return self.quantiles[carried[-1]]
        upper_index = next(index for index, value in enumerate(carried) if value > level)
        low, high = carried[upper_index - 1], carried[upper_index]
        weight = (level - low) / (high - low)
        return (1 - weight) * self.quantiles[low] + weight * self.quantiles[high]

    def times(self) -> IntArray:
        return self.start + self.step * np.arange(self.point.shape[0], dtype=np.int64)

    def peak(self, values: FloatArray, begin: int, end: int) -> tuple[float, int] | None:
        """Highest of ``values`` (one per forecast interval) over ``[begin, end)``, and when.

        An interval that ``end`` cuts short counts in proportion: demand is taken to move
        linearly from the previous interval's value, so a window that reaches two minutes into
        the next hour does not provision for that whole hour's peak.
        """
        span = self.window(begin, end)
        if span.stop <= span.start:
            return None
        chosen = values[span].astype(np.float64, copy=True)
        last = span.stop - 1
        reached = (end - (self.start + last * self.step)) / self.step
        if reached < 1.0 and last > span.start:
            previous = values[last - 1]
            chosen[-1] = previous + reached * (values[last] - previous)
        index = int(np.argmax(chosen))
        return float(chosen[index]), int(self.start + (span.start + index) * self.step)

    def window(self, begin: int, end: int) -> slice:
        """Index range of the forecast intervals that overlap ``[begin, end)``."""
        first = max(0, (begin - self.start) // self.step)
        last = min(self.point.shape[0], -(-(end - self.start) // self.step))
        return slice(int(first), int(max(first, last)))


@dataclasses.dataclass(frozen=True)
class NoForecast:
    """Why there is no forecast. The planner treats this as "unknown", never as zero demand."""

    code: str
    """CamelCase cause: NoData, InsufficientHistory, StaleData or FitFailed."""
    reason: str
    """A sentence with the numbers."""


Outcome = Forecast | NoForecast


# --- the local calendar -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Days:
    """Where each of some times falls on the local calendar."""

    seconds: FloatArray
    """Seconds since local midnight."""
    weekday: IntArray
    """Day type, Monday = 0: the local weekday, or Sunday on a holiday the calendar treats as one."""
    holiday: np.ndarray
    """True on a public holiday."""


@dataclasses.dataclass(frozen=True)
class Calendar:
    """The wall clock a series follows and its public holidays (hashable: design caches key on it)."""

    timezone: str = "UTC"
    holidays: tuple[int, ...] = ()
    """Local day numbers (days since 1970-01-01) of the holidays, sorted."""
    effect: str = holidays_.LEARNED

    @property
    def learns_holidays(self) -> bool:
        return bool(self.holidays) and self.effect == holidays_.LEARNED

    def days(self, times: IntArray) -> Days:
        seconds, weekday = series_.wall_clock(times, self.timezone)
        if not self.holidays:
            return Days(seconds, weekday, np.zeros(times.shape[0], dtype=bool))
        holiday = np.isin(local_day(times, weekday), np.asarray(self.holidays, dtype=np.int64))
        return Days(seconds, np.where(holiday, SUNDAY, weekday), holiday)


def local_day(times: IntArray, weekday: IntArray) -> IntArray:
    """Local day number of each time, given its local weekday (``series.wall_clock``'s answer).

    The local date is the UTC date or one either side of it; the local weekday says which.
    """
    utc_day = times.astype(np.int64) // series_.DAY
    shift = ((weekday - (utc_day + 3)) % 7 + 3) % 7 - 3
    result: IntArray = utc_day + shift
    return result


@dataclasses.dataclass(frozen=True, eq=False)
class Training:
    """What a model is fitted on: transformed demand ``z`` from ``start`` every ``step`` seconds."""

    z: FloatArray
    start: int
    step: int
    span: int
    """Seconds from the first to the last observed sample (inclusive of its interval)."""
    calendar: Calendar

    @property
    def end(self) -> int:
        return self.start + int(self.z.shape[0]) * self.step

    def head(self, count: int, span: int) -> Training:
        """The first ``count`` steps only, observed over ``span`` seconds."""
        return dataclasses.replace(self, z=self.z[:count], span=span)


class Fitted(Protocol):
    """A model fitted on history up to ``fitted_until``; predicts from any later origin."""

    @property
    def name(self) -> str: ...

    @property
    def fitted_until(self) -> int: ...

    def predict_z(self, z_recent: FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
        """Point (steps,) and quantiles (levels, steps) in transformed units."""
        ...

    def paths_z(self, z: FloatArray, start: int, origins: IntArray, steps: int) -> FloatArray:
        """Point forecasts (origins, steps) from each origin index, using only z before it."""
        ...

    def offsets_z(self, level: float, steps: int) -> FloatArray:
        """(steps,) offset of quantile ``level`` (a carried level) from ``paths_z``'s point."""
        ...

    @property
    def in_sample_mae(self) -> float:
        """Mean absolute in-sample error over the horizon, in transformed units."""
        ...

    def widened(self, ratio: float) -> Fitted:
        """The same model with its error quantiles spread ``ratio`` times wider around the median."""
        ...


# --- transforms -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scale:
    """``z = log1p(y / level)``: multiplicative for large y, linear near zero."""

    level: float

    @staticmethod
    def of(values: FloatArray) -> Scale:
        positive = values[values > 0]
        return Scale(float(np.median(positive)) if positive.size else 1.0)

    def forward(self, values: FloatArray) -> FloatArray:
        result: FloatArray = np.log1p(np.maximum(values, 0.0) / self.level)
        return result

    def inverse(self, z: FloatArray) -> FloatArray:
        result: FloatArray = np.maximum(self.level * np.expm1(z), 0.0)
        return result


def interpolate(z: FloatArray) -> FloatArray:
    """Gaps filled linearly between their neighbours (for models that need a complete series)."""
    present = np.flatnonzero(~np.isnan(z))
    if present.size == z.shape[0]:
        return z
    result: FloatArray = np.interp(np.arange(z.shape[0]), present, z[present])
    return result


# --- error quantiles --------------------------------------------------------------------------


def horizon_samples(steps: int) -> IntArray:
    """The horizons (in steps) whose errors are measured; the others are interpolated."""
    return np.unique(np.round(np.geomspace(1, steps, num=min(steps, 8))).astype(np.int64))


def error_quantiles(errors_by_h: list[FloatArray], sampled: IntArray, steps: int,
                    levels: tuple[float, ...]) -> FloatArray:
    """(levels, steps) quantiles of h-step errors, interpolated over h; upper tails never shrink with h.

    numpy's empirical quantiles: the band is the errors' own distribution, with no model to fit.
    """
    table = np.zeros((len(levels), sampled.size))
    for column, errors in enumerate(errors_by_h):
        if errors.size:
            table[:, column] = sorted_quantiles(np.sort(errors), levels)
    full = np.empty((len(levels), steps))
    horizons = np.arange(1, steps + 1)
    for row in range(len(levels)):
        full[row] = np.interp(horizons, sampled, table[row])
    median_row = levels.index(0.5) if 0.5 in levels else None
    for row, level in enumerate(levels):
        if level > 0.5:
            full[row] = np.maximum.accumulate(full[row])
            if median_row is not None:
                full[row] = np.maximum(full[row], full[median_row])
    return full


def sorted_quantiles(ordered: FloatArray, levels: tuple[float, ...]) -> FloatArray:
    """``np.quantile(values, levels)`` (its default linear interpolation) of already sorted values.

    Kept in numpy: one sort serves every level, where ``np.quantile`` partitions once per call.
    """
    position = np.asarray(levels) * (ordered.shape[0] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.shape[0] - 1)
    result: FloatArray = ordered[below] + (position - below) * (ordered[above] - ordered[below])
    return result


def widen(table: FloatArray, levels: tuple[float, ...], ratio: float) -> FloatArray:
    """Quantiles (levels first) spread ``ratio`` times wider around their median."""
    median = table[levels.index(0.5)]
    result: FloatArray = median + ratio * (table - median)
    return result


def mean_abs(errors_by_h: list[FloatArray]) -> float:
    pooled = np.concatenate(errors_by_h) if errors_by_h else np.empty(0)
    return float(np.mean(np.abs(pooled))) if pooled.size else 0.0


def rows_for(levels: tuple[float, ...], wanted: tuple[float, ...]) -> list[int]:
    """Row indexes of ``wanted`` levels in a table laid out by ``levels``."""
    return [levels.index(level) for level in wanted]


# --- residual dynamics ------------------------------------------------------------------------

MAX_PHI = 0.98
"""Residuals persist at most this much per step: a forecast never carries a deviation forever."""


def ar1(residuals: FloatArray) -> float:
    """AR(1) coefficient of the residuals by statsmodels' Yule-Walker estimator, in [0, MAX_PHI].

    Gaps count as zero residuals, which only drops the pairs that span them. (``AutoReg`` gives the
    same coefficient to within 1/n at ten times the cost: it builds a full regression model.)
    """
    filled = np.where(np.isnan(residuals), 0.0, residuals)
    if filled.shape[0] < 3 or not np.any(filled[:-1]):
        return 0.0
    with warnings.catch_warnings():
        # statsmodels 0.15 announces a new return type; the (coefficients, sigma) tuple stays until 0.16.
        warnings.simplefilter("ignore", FutureWarning)
        coefficients, _ = yule_walker(filled, order=1, method="mle", demean=False)
    phi = float(coefficients[0])
    return float(np.clip(phi, 0.0, MAX_PHI)) if math.isfinite(phi) else 0.0


def ar1_errors(residuals: FloatArray, phi: float, sampled: IntArray) -> list[FloatArray]:
    """In-sample errors, h steps ahead for each sampled h, of a forecast that carries the newest
    residual forward with AR(1) decay (a few vector operations per horizon)."""
    errors = []
    for horizon in sampled:
        h = int(horizon)
        if h >= residuals.shape[0]:
            errors.append(np.empty(0))
            continue
        difference = residuals[h:] - phi**h * residuals[:-h]
        errors.append(difference[~np.isnan(difference)])
    return errors


def ar1_forecast(expected: Callable[[IntArray], FloatArray], phi: float, z_recent: FloatArray, recent_start: int,
                 origin: int, step: int, steps: int) -> FloatArray:
    """The mean path from ``origin``: a model's expected z plus its newest residual decayed by AR(1).

    Only the newest observed residual matters, so ``expected`` is asked for one time more than the
    forecast's, in one call.
    """
    origin_index = (origin - recent_start) // step
    observed = np.flatnonzero(~np.isnan(z_recent[:origin_index]))
    newest = int(observed[-1]) if observed.size else origin_index - 1
    times = np.concatenate([[recent_start + newest * step], origin + step * np.arange(steps)])
    values = expected(times.astype(np.int64))
    residual = 0.0
    if observed.size:
        residual = float(z_recent[newest] - values[0]) * phi ** (origin_index - 1 - newest)
    mean: FloatArray = values[1:] + phi ** np.arange(1, steps + 1) * residual
    return mean
