"""Demand forecasting: seasonal models, automatic model choice, and honest "no forecast" results.

Models (all work on ``z = log1p(demand / scale)``, so daily swings act multiplicatively and zeros
are fine):

- ``harmonic``: ridge regression on daily Fourier terms, a weekday level and a weekend-specific
  daily shape (daily and weekly seasonality), fitted robustly (Huber weights), plus an AR(1) on
  the residuals so that a level shift now carries into the next hours. Fitting is two small
  least-squares solves; between fits a new sample costs one dot product.
- ``seasonal-naive``: the value one week (or one day) earlier.
- ``holt-winters``: statsmodels' additive Holt-Winters with a daily season (the Predictive HPA's
  approach), kept for comparison; its state is updated cheaply between refits.

Quantiles come from the empirical distribution of each model's own h-step errors, so skewed
demand gets a skewed band and nothing is assumed Gaussian. ``auto`` picks the model with the
lowest rolling-origin error on the most recent history and only switches when another model
is clearly better, so the choice does not thrash.

A forecast that cannot be made is a ``NoForecast`` with a reason, never zeros.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from healthscale.domain import series as series_

FloatArray = series_.FloatArray

LEVELS: tuple[float, ...] = (0.5, 0.75, 0.8, 0.9, 0.95, 0.975, 0.99)
"""Quantile levels every forecast carries (a spec's own quantile is added when it asks for one)."""

MIN_HISTORY = series_.DAY
"""Less observed span than one day cannot show a daily cycle: no forecast."""

WEEKLY_HISTORY = 7 * series_.DAY
"""From one week of history on, weekday levels and a weekend shape are fitted."""

SWITCH_MARGIN = 0.9
"""``auto`` replaces the model in use only when another is at least 10% better."""

_HARMONIC_ORDER = 10
_WEEKEND_ORDER = 6
_HUBER_K = 2.5
_RIDGE = 1e-3


HARMONIC = "harmonic"
SEASONAL_NAIVE = "seasonal-naive"
HOLT_WINTERS = "holt-winters"
AUTO = "auto"
AUTO_CANDIDATES = (HARMONIC, SEASONAL_NAIVE)


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

    def times(self) -> series_.IntArray:
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

    def paths_z(self, z: FloatArray, start: int, origins: series_.IntArray, steps: int) -> FloatArray:
        """Point forecasts (origins, steps) from each origin index, using only z before it."""
        ...

    @property
    def in_sample_mae(self) -> float:
        """Mean absolute in-sample error over the horizon, in transformed units."""
        ...

    def widened(self, ratio: float) -> Fitted:
        """The same model with its error quantiles spread ``ratio`` times wider around the median."""
        ...


def _widen(table: FloatArray, levels: tuple[float, ...], ratio: float) -> FloatArray:
    median = table[levels.index(0.5)]
    result: FloatArray = median + ratio * (table - median)
    return result


def _mean_abs(errors_by_h: list[FloatArray]) -> float:
    pooled = np.concatenate(errors_by_h) if errors_by_h else np.empty(0)
    return float(np.mean(np.abs(pooled))) if pooled.size else 0.0


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


# --- error quantiles --------------------------------------------------------------------------


def _horizon_samples(steps: int) -> series_.IntArray:
    return np.unique(np.round(np.geomspace(1, steps, num=min(steps, 8))).astype(np.int64))


def _error_quantiles(errors_by_h: list[FloatArray], sampled: series_.IntArray, steps: int,
                     levels: tuple[float, ...]) -> FloatArray:
    """(levels, steps) quantiles of h-step errors, interpolated over h; upper tails never shrink with h."""
    table = np.zeros((len(levels), sampled.size))
    for column, errors in enumerate(errors_by_h):
        if errors.size:
            table[:, column] = np.quantile(errors, levels)
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


# --- harmonic regression ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Design:
    weekday_levels: bool
    weekend_shape: bool
    daily_order: int
    timezone: str

    def matrix(self, times: series_.IntArray) -> FloatArray:
        seconds, weekday = series_.wall_clock(times, self.timezone)
        angle = 2.0 * np.pi * seconds / series_.DAY
        columns: list[FloatArray] = []
        if self.weekday_levels:
            columns.extend((weekday == day).astype(np.float64) for day in range(7))
        else:
            columns.append(np.ones(times.shape[0]))
        orders = np.arange(1, self.daily_order + 1)
        phases = np.outer(angle, orders)
        columns.extend(np.sin(phases).T)
        columns.extend(np.cos(phases).T)
        if self.weekend_shape:
            weekend = (weekday >= 5).astype(np.float64)
            weekend_orders = orders[: min(_WEEKEND_ORDER, self.daily_order)]
            weekend_phases = np.outer(angle, weekend_orders)
            columns.append(weekend)
            columns.extend(np.sin(weekend_phases).T * weekend)
            columns.extend(np.cos(weekend_phases).T * weekend)
        return np.column_stack(columns)


# A few entries suffice (one fit reuses its matrix for validation and residuals); each can be
# megabytes (14 days at 1 minute x ~40 columns), so the operator must not keep hundreds.
@functools.lru_cache(maxsize=4)
def _cached_matrix(design: _Design, start: int, step: int, count: int) -> FloatArray:
    matrix = design.matrix(start + step * np.arange(count, dtype=np.int64))
    matrix.setflags(write=False)
    return matrix


def _weighted_ridge(matrix: FloatArray, target: FloatArray, weights: FloatArray) -> FloatArray:
    weighted = matrix * weights[:, None]
    gram = weighted.T @ matrix
    penalty = _RIDGE * (np.trace(gram) / gram.shape[0] + 1e-12)
    coefficients: FloatArray = np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), weighted.T @ target)
    return coefficients


def _huber_weights(residuals: FloatArray) -> FloatArray:
    spread = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    if spread <= 0:
        return np.ones_like(residuals)
    magnitude = np.abs(residuals) / (_HUBER_K * spread)
    result: FloatArray = np.where(magnitude <= 1.0, 1.0, 1.0 / np.maximum(magnitude, 1e-12))
    return result


def _ar1(residuals: FloatArray) -> float:
    """Lag-1 autocorrelation of the residuals over consecutive observed pairs, in [0, 0.98]."""
    current, previous = residuals[1:], residuals[:-1]
    both = ~(np.isnan(current) | np.isnan(previous))
    denominator = float(np.dot(previous[both], previous[both]))
    if denominator <= 0:
        return 0.0
    return float(np.clip(np.dot(current[both], previous[both]) / denominator, 0.0, 0.98))


def _h_step_errors(residuals: FloatArray, phi: float, sampled: series_.IntArray) -> list[FloatArray]:
    errors = []
    for horizon in sampled:
        h = int(horizon)
        if h >= residuals.shape[0]:
            errors.append(np.empty(0))
            continue
        difference = residuals[h:] - phi**h * residuals[:-h]
        errors.append(difference[~np.isnan(difference)])
    return errors


@dataclasses.dataclass(frozen=True, eq=False)
class Harmonic:
    name: str
    fitted_until: int
    step: int
    design: _Design
    coefficients: FloatArray
    phi: float
    error_table: FloatArray  # (levels, max steps) quantiles of h-step errors
    levels: tuple[float, ...]
    in_sample_mae: float

    def widened(self, ratio: float) -> Harmonic:
        return dataclasses.replace(self, error_table=_widen(self.error_table, self.levels, ratio))

    @staticmethod
    def fit(z: FloatArray, start: int, step: int, span: int, settings: Settings) -> Harmonic:
        observed_days = _observed_weekdays(z, start, step, settings.timezone)
        present = ~np.isnan(z)
        seconds, weekdays = series_.wall_clock(start + step * np.flatnonzero(present).astype(np.int64), settings.timezone)
        # A daily shape needs as many distinct observed times of day as it has terms; when the
        # same hours are always missing (a service closed at night), fit a smoother shape.
        distinct_slots = int(np.unique((seconds // step).astype(np.int64)).size)
        weekly = span >= WEEKLY_HISTORY
        design = _Design(
            weekday_levels=weekly,
            weekend_shape=weekly and observed_days["weekend"] >= 2 and observed_days["weekday"] >= 2,
            daily_order=max(1, min(_HARMONIC_ORDER, series_.DAY // step // 2 - 1, (distinct_slots - 1) // 2)),
            timezone=settings.timezone,
        )
        matrix = _cached_matrix(design, start, step, z.shape[0])
        rows, target = matrix[present], z[present]
        coefficients = _weighted_ridge(rows, target, np.ones(target.shape[0]))
        for _ in range(2):
            coefficients = _weighted_ridge(rows, target, _huber_weights(target - rows @ coefficients))
        if design.weekday_levels:
            # A weekday never observed has no level of its own (the ridge leaves it near 0, which
            # would forecast no demand): it gets the average level of the days that were seen.
            seen = np.unique(weekdays)
            unseen = np.setdiff1d(np.arange(7), seen)
            if unseen.size and seen.size:
                coefficients = coefficients.copy()
                coefficients[unseen] = coefficients[seen].mean()
        residuals = z - matrix @ coefficients
        phi = _ar1(residuals)
        steps = settings.horizon_steps
        sampled = _horizon_samples(steps)
        errors = _h_step_errors(residuals, phi, sampled)
        table = _error_quantiles(errors, sampled, steps, settings.levels)
        return Harmonic(HARMONIC, start + z.shape[0] * step, step, design, coefficients, phi, table,
                        settings.levels, _mean_abs(errors))

    def _residuals(self, z: FloatArray, start: int) -> FloatArray:
        matrix = _cached_matrix(self.design, start, self.step, z.shape[0])
        result: FloatArray = z - matrix @ self.coefficients
        return result

    def predict_z(self, z_recent: FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
        origin_index = (origin - recent_start) // self.step
        observed = np.flatnonzero(~np.isnan(z_recent[:origin_index]))
        residual = 0.0
        if observed.size:
            # Only the newest residual matters: one design row instead of the whole window.
            newest = int(observed[-1])
            row = self.design.matrix(np.array([recent_start + newest * self.step], dtype=np.int64))[0]
            residual = float(z_recent[newest] - row @ self.coefficients) * self.phi ** (origin_index - 1 - newest)
        future = origin + self.step * np.arange(steps, dtype=np.int64)
        decay = self.phi ** np.arange(1, steps + 1)
        mean = self.design.matrix(future) @ self.coefficients + decay * residual
        table = self.error_table[:, :steps]
        quantiles = mean[None, :] + table[[self.levels.index(level) for level in levels]]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: FloatArray, start: int, origins: series_.IntArray, steps: int) -> FloatArray:
        residuals = self._residuals(z, start)
        base = _cached_matrix(self.design, start, self.step, z.shape[0]) @ self.coefficients
        filled = np.where(np.isnan(residuals), 0.0, residuals)
        decay = self.phi ** np.arange(1, steps + 1)
        index = origins[:, None] + np.arange(steps)[None, :]
        index = np.minimum(index, z.shape[0] - 1)
        result: FloatArray = base[index] + decay[None, :] * filled[origins - 1][:, None]
        return result


def _observed_weekdays(z: FloatArray, start: int, step: int, timezone: str) -> dict[str, int]:
    times = start + step * np.flatnonzero(~np.isnan(z)).astype(np.int64)
    if times.size == 0:
        return {"weekday": 0, "weekend": 0}
    _, weekday = series_.wall_clock(times, timezone)
    days = np.unique((times // series_.DAY) * 10 + (weekday >= 5))
    weekend = int(np.count_nonzero(days % 10 == 1))
    return {"weekday": int(days.size) - weekend, "weekend": weekend}


# --- seasonal naive ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SeasonalNaive:
    name: str
    fitted_until: int
    step: int
    period: int  # in steps
    error_table: FloatArray
    levels: tuple[float, ...]
    fallback: float  # median z, used when no earlier season was observed
    in_sample_mae: float

    def widened(self, ratio: float) -> SeasonalNaive:
        return dataclasses.replace(self, error_table=_widen(self.error_table, self.levels, ratio))

    @staticmethod
    def fit(z: FloatArray, start: int, step: int, span: int, settings: Settings) -> SeasonalNaive:
        period = (series_.WEEK if span >= 2 * series_.WEEK else series_.DAY) // step
        steps = settings.horizon_steps
        errors = z[period:] - z[:-period] if z.shape[0] > period else np.empty(0)
        errors = errors[~np.isnan(errors)]
        sampled = np.array([1], dtype=np.int64)
        table = _error_quantiles([errors], sampled, 1, settings.levels)
        observed = z[~np.isnan(z)]
        return SeasonalNaive(
            SEASONAL_NAIVE, start + z.shape[0] * step, step, max(1, period),
            np.repeat(table, steps, axis=1), settings.levels, float(np.median(observed)), _mean_abs([errors]),
        )

    def _lagged(self, z: FloatArray, targets: series_.IntArray, limit: series_.IntArray) -> FloatArray:
        """z one or more whole periods before each target index, strictly before ``limit``."""
        seasons_back = np.maximum(1, -(-(targets - limit + 1) // self.period))
        values = np.full(targets.shape, np.nan)
        for extra in range(4):
            index = targets - (seasons_back + extra) * self.period
            valid = (index >= 0) & np.isnan(values)
            values[valid] = z[index[valid]]
        return np.where(np.isnan(values), self.fallback, values)

    def predict_z(self, z_recent: FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
        origin_index = (origin - recent_start) // self.step
        targets = origin_index + np.arange(steps, dtype=np.int64)
        mean = self._lagged(z_recent, targets, np.full(steps, origin_index, dtype=np.int64))
        table = self.error_table[:, :steps]
        quantiles = mean[None, :] + table[[self.levels.index(level) for level in levels]]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: FloatArray, start: int, origins: series_.IntArray, steps: int) -> FloatArray:
        targets = origins[:, None] + np.arange(steps)[None, :]
        limits = np.repeat(origins[:, None], steps, axis=1)
        return self._lagged(z, targets.ravel(), limits.ravel()).reshape(targets.shape)


# --- Holt-Winters (statsmodels) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class HoltWinters:
    name: str
    fitted_until: int
    step: int
    alpha: float
    gamma: float
    level: float
    season: FloatArray  # seasonal terms, indexed by slot = (time // step) % period
    period: int
    residual_quantiles: FloatArray  # (levels,)
    levels: tuple[float, ...]
    in_sample_mae: float

    def widened(self, ratio: float) -> HoltWinters:
        return dataclasses.replace(self, residual_quantiles=_widen(self.residual_quantiles, self.levels, ratio))

    @staticmethod
    def fit(z: FloatArray, start: int, step: int, span: int, settings: Settings) -> HoltWinters:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        period = max(2, series_.DAY // step)
        filled = _interpolate(z)
        with warnings.catch_warnings():
            # statsmodels warns about convergence on short or flat series; the fit is still usable
            # and its quality is measured by the rolling-origin error like any other model's.
            warnings.simplefilter("ignore")
            result = ExponentialSmoothing(
                filled, trend=None, seasonal="add", seasonal_periods=period, initialization_method="estimated"
            ).fit(use_brute=False)
        alpha = float(result.params["smoothing_level"])
        gamma = float(result.params["smoothing_seasonal"])
        seasonal_states = np.asarray(result.season, dtype=np.float64)
        level = float(np.asarray(result.level)[-1])
        first_slot = (start // step) % period
        season = np.empty(period)
        last_slots = (first_slot + np.arange(z.shape[0] - period, z.shape[0])) % period
        season[last_slots] = seasonal_states[-period:]
        residuals = filled - np.asarray(result.fittedvalues, dtype=np.float64)
        settled = residuals[period:] if residuals.shape[0] > period else residuals
        quantiles = np.quantile(settled, settings.levels)
        return HoltWinters(HOLT_WINTERS, start + z.shape[0] * step, step, alpha, gamma, level, season,
                           period, np.asarray(quantiles), settings.levels, _mean_abs([settled]))

    def _run(self, z: FloatArray, start: int) -> tuple[float, FloatArray, FloatArray]:
        """Update the fitted state over observations at or after ``fitted_until``; one-step means."""
        level, season = self.level, self.season.copy()
        offset = (self.fitted_until - start) // self.step
        means = np.full(z.shape[0], np.nan)
        for index in range(max(0, offset), z.shape[0]):
            slot = ((start // self.step) + index) % self.period
            means[index] = level + season[slot]
            value = z[index]
            if np.isnan(value):
                continue
            new_level = self.alpha * (value - season[slot]) + (1 - self.alpha) * level
            season[slot] = self.gamma * (value - new_level) + (1 - self.gamma) * season[slot]
            level = new_level
        return level, season, means

    def predict_z(self, z_recent: FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
        origin_index = (origin - recent_start) // self.step
        level, season, _ = self._run(z_recent[:origin_index], recent_start)
        slots = ((origin // self.step) + np.arange(steps)) % self.period
        mean = level + season[slots]
        spread = np.sqrt(1 + np.arange(steps) * self.alpha**2)
        rows = self.residual_quantiles[[self.levels.index(level_) for level_ in levels]]
        median = float(self.residual_quantiles[self.levels.index(0.5)])
        quantiles = mean[None, :] + median + (rows[:, None] - median) * spread[None, :]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: FloatArray, start: int, origins: series_.IntArray, steps: int) -> FloatArray:
        paths = np.empty((origins.shape[0], steps))
        for row, origin in enumerate(origins):
            paths[row], _ = self.predict_z(z, start, start + int(origin) * self.step, steps, (0.5,) if 0.5 in self.levels else self.levels)
        return paths


def _interpolate(z: FloatArray) -> FloatArray:
    present = np.flatnonzero(~np.isnan(z))
    if present.size == z.shape[0]:
        return z
    result: FloatArray = np.interp(np.arange(z.shape[0]), present, z[present])
    return result


_FITTERS: dict[str, Callable[[FloatArray, int, int, int, Settings], Fitted]] = {
    HARMONIC: Harmonic.fit, SEASONAL_NAIVE: SeasonalNaive.fit, HOLT_WINTERS: HoltWinters.fit,
}


# --- model choice -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Validation:
    """Rolling-origin result of one model on the newest history."""

    error: float
    """Mean absolute error in demand units."""
    spread_ratio: float
    """Out-of-sample over in-sample mean absolute error (transformed units), at least 1."""


_FAILED = _Validation(math.inf, 1.0)


def _validate(name: str, z: FloatArray, values: FloatArray, start: int, step: int, span: int,
              settings: Settings, scale: Scale) -> _Validation:
    """Fit on all but the newest stretch of history, then forecast it from rolling origins."""
    steps = settings.horizon_steps
    holdout = min(max(steps * 2, 2 * series_.DAY // step), int(z.shape[0] * 0.3))
    split = z.shape[0] - holdout
    training = z[:split]
    if np.count_nonzero(~np.isnan(training)) < 2 or holdout < 1:
        return _FAILED
    fitted = _FITTERS[name](training, start, step, span - holdout * step, settings)
    stride = max(1, steps // 4)
    origins = np.arange(split, z.shape[0], stride, dtype=np.int64)
    paths_z = fitted.paths_z(z, start, origins, steps)
    index = np.minimum(origins[:, None] + np.arange(steps)[None, :], z.shape[0] - 1)
    inside = (origins[:, None] + np.arange(steps)[None, :]) < z.shape[0]
    actual = np.where(inside, values[index], np.nan)
    errors = np.abs(actual - scale.inverse(paths_z))
    errors = errors[~np.isnan(errors)]
    if not errors.size:
        return _FAILED
    errors_z = np.abs(np.where(inside, z[index], np.nan) - paths_z)
    errors_z = errors_z[~np.isnan(errors_z)]
    expected = fitted.in_sample_mae
    ratio = float(np.clip(errors_z.mean() / expected, 1.0, 3.0)) if expected > 0 else 1.0
    return _Validation(float(errors.mean()), ratio)


def _naive_scale(values: FloatArray) -> float:
    differences = np.abs(np.diff(values))
    differences = differences[~np.isnan(differences)]
    return float(differences.mean()) if differences.size else 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class State:
    """What a series' forecaster keeps between cycles (the operator caches it per ClinicalSLO)."""

    fitted: Fitted
    scale: Scale
    error: float | None
    settings: Settings
    notes: tuple[str, ...]


def _prepare(history: series_.Series) -> tuple[FloatArray, tuple[str, ...]]:
    values = history.values.astype(np.float64, copy=True)
    notes = []
    invalid = ~np.isfinite(values) & ~np.isnan(values)
    negative = values < 0
    if invalid.any() or negative.any():
        notes.append(f"ignored {int((invalid | negative).sum())} infinite or negative samples")
        values[invalid | negative] = np.nan
    return values, tuple(notes)


def fit(history: series_.Series, settings: Settings, previous: State | None = None) -> State | NoForecast:
    """Fit the configured model (or choose one for ``auto``) on ``history``."""
    values, notes = _prepare(history)
    observed = np.flatnonzero(~np.isnan(values))
    if observed.size == 0:
        return NoForecast("NoData", "the demand query returned no samples in the history window")
    span = int(observed[-1] - observed[0] + 1) * history.step
    needed_points = max(4, (MIN_HISTORY // history.step) // 2)
    if span < MIN_HISTORY or observed.size < needed_points:
        return NoForecast(
            "InsufficientHistory",
            f"{_hours(span)} of demand history with {observed.size} samples; a forecast needs at least "
            f"{_hours(MIN_HISTORY)} with {needed_points} samples",
        )
    trimmed = values[observed[0]:]
    start = history.start + int(observed[0]) * history.step
    scale = Scale.of(trimmed)
    z = scale.forward(trimmed)
    if np.nanmax(trimmed) == np.nanmin(trimmed):
        notes = (*notes, "flat series: every sample equals " + f"{float(np.nanmax(trimmed)):g}")
    if span < WEEKLY_HISTORY:
        notes = (*notes, f"weekly cycle not modelled: {_hours(span)} of history, needs 7d")
    naive = _naive_scale(trimmed)
    try:
        if settings.model == AUTO:
            results = {name: _validate(name, z, trimmed, start, history.step, span, settings, scale)
                       for name in AUTO_CANDIDATES}
            chosen = min(results, key=lambda name: results[name].error)
            # The incumbent (the model in use, else the first candidate) keeps its place unless
            # another is clearly better: a choice that flips every refit would thrash the plan.
            incumbent = previous.fitted.name if previous is not None and previous.fitted.name in results else AUTO_CANDIDATES[0]
            if results[chosen].error > SWITCH_MARGIN * results[incumbent].error:
                chosen = incumbent
            validation = results[chosen]
        else:
            chosen = settings.model
            validation = (_validate(chosen, z, trimmed, start, history.step, span, settings, scale)
                          if settings.validate else _Validation(math.nan, 1.0))
        fitted = _FITTERS[chosen](z, start, history.step, span, settings).widened(validation.spread_ratio)
    except (np.linalg.LinAlgError, ValueError) as error:
        return NoForecast("FitFailed", f"{settings.model} model could not be fitted: {error}")
    error_ratio = validation.error / naive if naive > 0 and math.isfinite(validation.error) else None
    return State(fitted, scale, error_ratio, settings, notes)


def predict(state: State, recent: series_.Series, origin: int) -> Outcome:
    """Forecast ``[origin, origin + horizon)`` using the fitted state and the newest samples."""
    settings = state.settings
    latest = recent.last_observed()
    if latest is None:
        return NoForecast("NoData", "no recent demand samples")
    staleness = origin - (latest[0] + recent.step)
    allowed = max(settings.horizon, 3600)
    if staleness > allowed and not _usually_quiet(recent, origin - allowed, origin):
        return NoForecast(
            "StaleData", f"the newest demand sample is {_hours(staleness)} old (more than {_hours(allowed)})"
        )
    values, _ = _prepare(recent)
    steps = settings.horizon_steps
    z = state.scale.forward(values)
    z = np.where(np.isnan(values), np.nan, z)
    aligned_origin = recent.start + -(-(origin - recent.start) // recent.step) * recent.step
    if aligned_origin > recent.end:
        z = np.concatenate([z, np.full((aligned_origin - recent.end) // recent.step, np.nan)])
    point_z, quantiles_z = state.fitted.predict_z(z, recent.start, aligned_origin, steps, settings.levels)
    quantiles = {level: state.scale.inverse(quantiles_z[row]) for row, level in enumerate(settings.levels)}
    if not all(np.all(np.isfinite(q)) for q in quantiles.values()):
        return NoForecast("FitFailed", f"{state.fitted.name} produced non-finite values")
    return Forecast(
        model=state.fitted.name,
        start=aligned_origin,
        step=recent.step,
        point=state.scale.inverse(point_z),
        quantiles=quantiles,
        error=state.error,
        notes=state.notes,
    )


FRESH_SECONDS = 600
"""Demand observed within two steps, or this many seconds, is current."""


def staleness(history: series_.Series, now: int) -> NoForecast | None:
    """Why the newest demand is too old to justify removing capacity, or None when it is current.

    Old data may still forecast a rise (scaling up on it is safe), but never a scale-down: the
    planner holds replicas while this is set. Silence at an hour that is usually silent (a clinic
    at night) is the series' normal shape, not staleness.
    """
    allowed = max(2 * history.step, FRESH_SECONDS)
    latest = history.last_observed()
    if latest is None:
        return NoForecast("StaleData", "no demand sample has been observed")
    age = now - (latest[0] + history.step)
    if age <= allowed or _usually_quiet(history, now - allowed, now):
        return None
    return NoForecast("StaleData", f"the newest demand sample is {_hours(age)} old (current means within {_hours(allowed)})")


def _usually_quiet(recent: series_.Series, begin: int, end: int) -> bool:
    """True when ``[begin, end)`` had no samples on most of the previous seven days too.

    A clinic closed at night has no demand samples every night: that silence is its normal
    shape, and the forecast for the morning is exactly what is needed. Silence at an hour that
    usually has samples is a broken metrics pipeline, and the data is stale.
    """
    checked = quiet = 0
    for days_back in range(1, 8):
        first = (begin - days_back * series_.DAY - recent.start) // recent.step
        last = (end - days_back * series_.DAY - recent.start) // recent.step
        if first < 0:
            break
        span = recent.values[first:last]
        if span.size == 0:
            continue
        checked += 1
        quiet += bool(np.all(np.isnan(span)))
    return checked >= 2 and 2 * quiet >= checked


def needs_refit(state: State | None, settings: Settings, now: int) -> bool:
    return state is None or state.settings != settings or now - state.fitted.fitted_until >= settings.refit_every


def forecast(history: series_.Series, now: int, settings: Settings,
             state: State | None = None) -> tuple[Outcome, State | None]:
    """One cycle: refit when due (or on first use), then predict from ``now``.

    ``history`` holds the samples before ``now``; the returned state is handed back next cycle.
    """
    window = history.since(now - settings.history).before(now)
    if needs_refit(state, settings, now):
        fitted = fit(window, settings, previous=state)
        if isinstance(fitted, NoForecast):
            return fitted, state if state is not None and now - state.fitted.fitted_until < settings.history else None
        state = fitted
    assert state is not None
    return predict(state, window, now), state


def _hours(seconds: int) -> str:
    if seconds >= series_.DAY and seconds % series_.DAY == 0:
        return f"{seconds // series_.DAY}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h".replace(".0h", "h")
    return f"{seconds // 60}m"
