"""``harmonic``: a robust regression on the daily and weekly calendar, plus AR(1) residual dynamics.

The design has daily Fourier terms, a level per weekday and a weekend-specific daily shape (from
one week of history on), and, when holidays are ``Learned`` and one was seen, a holiday level on
top of the Sunday a holiday otherwise is. It is fitted as iteratively reweighted ridge least
squares with statsmodels' Huber's T weights (``robust.norms.HuberT``) on a MAD scale
(``robust.scale.mad``), so outliers do not drag the shape; each step solves the weighted normal
equations from a cached Gram matrix, and a unit test holds the estimate equal to statsmodels'
ridge (``OLS.fit_regularized``) at each step. Then an AR(1)
(``yule_walker``) on the residuals so that a level shift now carries into the next hours. Between
refits a new sample costs one design row and one dot product.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from statsmodels.robust import norms, scale as robust_scale

from healthscale.domain import series as series_
from healthscale.domain.forecast import base

NAME = "harmonic"
DAILY_ORDER = 10
WEEKEND_ORDER = 6
HUBER_T = 2.5
REWEIGHTS = 2
"""Huber reweightings after the plain fit (statsmodels' Huber weights and MAD scale each time).
statsmodels' RLM iterates to convergence and computes a robust covariance we do not use, at 3-10
times the cost; two steps settle the shape, one does not (a hundredfold spike still drags it)."""
RIDGE = 1e-3
"""Relative ridge penalty: keeps collinear columns (a weekday never seen) finite."""


@dataclasses.dataclass(frozen=True)
class Design:
    """Which columns the regression has; the matrix follows from the times alone."""

    weekday_levels: bool
    weekend_shape: bool
    daily_order: int
    calendar: base.Calendar
    holiday_level: bool

    @property
    def holiday_column(self) -> int | None:
        if not self.holiday_level:
            return None
        levels = 7 if self.weekday_levels else 1
        weekend = 2 * min(WEEKEND_ORDER, self.daily_order) if self.weekend_shape else 0
        return levels + 2 * self.daily_order + weekend

    def matrix(self, times: series_.IntArray) -> base.FloatArray:
        days = self.calendar.days(times)
        angle = 2.0 * np.pi * days.seconds / series_.DAY
        blocks: list[base.FloatArray] = [
            np.eye(7)[days.weekday] if self.weekday_levels else np.ones((times.shape[0], 1))]
        phases = np.outer(angle, np.arange(1, self.daily_order + 1))
        sines, cosines = np.sin(phases), np.cos(phases)
        blocks += [sines, cosines]
        if self.weekend_shape:
            # The weekend's level is in its two weekday columns; this is only its different shape.
            weekend = (days.weekday >= 5).astype(np.float64)[:, None]
            order = min(WEEKEND_ORDER, self.daily_order)
            blocks += [sines[:, :order] * weekend, cosines[:, :order] * weekend]
        if self.holiday_level:
            blocks.append(days.holiday.astype(np.float64)[:, None])
        return np.hstack(blocks)


# Kept in numpy and cached: the design depends only on the time grid, so one matrix serves the
# validation fit, the final fit and its residuals. A few entries suffice; each can be megabytes
# (14 days at 1 minute x ~40 columns), so the operator must not keep hundreds.
@functools.lru_cache(maxsize=4)
def cached_matrix(design: Design, start: int, step: int, count: int) -> base.FloatArray:
    matrix = design.matrix(start + step * np.arange(count, dtype=np.int64))
    matrix.setflags(write=False)
    return matrix


# Kept in numpy: a Huber step changes the weights of a few rows only, so the weighted normal
# equations are the cached Gram matrix minus those rows' share, much less work than statsmodels'
# ridge (``OLS.fit_regularized``), which takes an SVD of the whole design at every step.
@functools.lru_cache(maxsize=4)
def cached_gram(design: Design, start: int, step: int, count: int) -> base.FloatArray:
    matrix = cached_matrix(design, start, step, count)
    gram: base.FloatArray = matrix.T @ matrix
    gram.setflags(write=False)
    return gram


def _robust_ridge(rows: base.FloatArray, target: base.FloatArray, gram: base.FloatArray,
                  penalties: base.FloatArray) -> base.FloatArray:
    """Ridge least squares, then ``REWEIGHTS`` Huber reweightings (statsmodels' ``HuberT`` weights
    on a ``mad`` scale): the same estimate as statsmodels' ``fit_regularized(L1_wt=0)`` on rows
    whitened by the weights' square root, ``(X'WX + n diag(penalties)) b = X'Wy``."""
    regularised = gram + np.diag(rows.shape[0] * penalties)
    moment = rows.T @ target
    coefficients = np.asarray(np.linalg.solve(regularised, moment), dtype=np.float64)
    for _ in range(REWEIGHTS):
        weights = _huber_weights(target - rows @ coefficients)
        lowered = np.flatnonzero(weights < 1.0)
        shrink = 1.0 - weights[lowered]
        part = rows[lowered]
        coefficients = np.asarray(np.linalg.solve(regularised - (part * shrink[:, None]).T @ part,
                                                  moment - part.T @ (shrink * target[lowered])), dtype=np.float64)
    return coefficients


def _huber_weights(residuals: base.FloatArray) -> base.FloatArray:
    spread = float(robust_scale.mad(residuals))
    if not spread > 0:
        return np.ones_like(residuals)
    weights: base.FloatArray = norms.HuberT(t=HUBER_T).weights(residuals / spread)
    return weights


def _observed_days(days: base.Days, times: series_.IntArray) -> dict[str, int]:
    if times.size == 0:
        return {"weekday": 0, "weekend": 0, "holiday": 0}
    day_numbers = np.unique((times // series_.DAY) * 10 + (days.weekday >= 5) + 2 * days.holiday)
    weekend = int(np.count_nonzero(day_numbers % 10 >= 1))
    return {"weekday": int(day_numbers.size) - weekend, "weekend": weekend,
            "holiday": int(np.count_nonzero(day_numbers % 10 >= 2))}


@dataclasses.dataclass(frozen=True, eq=False)
class Harmonic:
    name: str
    fitted_until: int
    step: int
    design: Design
    coefficients: base.FloatArray
    phi: float
    error_table: base.FloatArray  # (levels, max steps) quantiles of h-step errors
    levels: tuple[float, ...]
    in_sample_mae: float

    def widened(self, ratio: float) -> Harmonic:
        return dataclasses.replace(self, error_table=base.widen(self.error_table, self.levels, ratio))

    def _residuals(self, z: base.FloatArray, start: int) -> base.FloatArray:
        matrix = cached_matrix(self.design, start, self.step, z.shape[0])
        result: base.FloatArray = z - matrix @ self.coefficients
        return result

    def offsets_z(self, level: float, steps: int) -> base.FloatArray:
        return self.error_table[self.levels.index(level), :steps]

    def predict_z(self, z_recent: base.FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[base.FloatArray, base.FloatArray]:
        mean = base.ar1_forecast(lambda times: self.design.matrix(times) @ self.coefficients, self.phi,
                                 z_recent, recent_start, origin, self.step, steps)
        quantiles = mean[None, :] + self.error_table[base.rows_for(self.levels, levels), :steps]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: base.FloatArray, start: int, origins: series_.IntArray, steps: int) -> base.FloatArray:
        residuals = self._residuals(z, start)
        fitted = cached_matrix(self.design, start, self.step, z.shape[0]) @ self.coefficients
        filled = np.where(np.isnan(residuals), 0.0, residuals)
        decay = self.phi ** np.arange(1, steps + 1)
        index = np.minimum(origins[:, None] + np.arange(steps)[None, :], z.shape[0] - 1)
        result: base.FloatArray = fitted[index] + decay[None, :] * filled[origins - 1][:, None]
        return result


def fit(training: base.Training, settings: base.Settings) -> Harmonic:
    z, start, step = training.z, training.start, training.step
    present = ~np.isnan(z)
    observed_times = start + step * np.flatnonzero(present).astype(np.int64)
    days = training.calendar.days(observed_times)
    observed = _observed_days(days, observed_times)
    # A daily shape needs as many distinct observed times of day as it has terms; when the
    # same hours are always missing (a service closed at night), fit a smoother shape.
    distinct_slots = int(np.unique((days.seconds // step).astype(np.int64)).size)
    weekly = training.span >= base.WEEKLY_HISTORY
    design = Design(
        weekday_levels=weekly,
        weekend_shape=weekly and observed["weekend"] >= 2 and observed["weekday"] >= 2,
        daily_order=max(1, min(DAILY_ORDER, series_.DAY // step // 2 - 1, (distinct_slots - 1) // 2)),
        calendar=training.calendar,
        holiday_level=training.calendar.learns_holidays and observed["holiday"] >= 1,
    )
    matrix = cached_matrix(design, start, step, z.shape[0])
    rows, target = (matrix, z) if present.all() else (matrix[present], z[present])
    penalties = np.full(rows.shape[1], RIDGE * float(np.einsum("ij,ij->", rows, rows)) / rows.size)
    if design.holiday_column is not None:
        # A holiday's own level is shrunk towards the Sunday's as if one day of ordinary data
        # said "no difference": one holiday seen moves it half way, three holidays three quarters.
        penalties[design.holiday_column] = (series_.DAY // step) / rows.shape[0]
    gram = cached_gram(design, start, step, z.shape[0]) if rows.shape[0] == z.shape[0] else rows.T @ rows
    coefficients = _robust_ridge(rows, target, gram, penalties)
    if design.weekday_levels:
        # A weekday never observed has no level of its own (the ridge leaves it near 0, which
        # would forecast no demand): it gets the average level of the days that were seen.
        seen = np.unique(days.weekday)
        unseen = np.setdiff1d(np.arange(7), seen)
        if unseen.size and seen.size:
            coefficients = coefficients.copy()
            coefficients[unseen] = coefficients[seen].mean()
    residuals = z - matrix @ coefficients
    phi = base.ar1(residuals)
    steps = settings.horizon_steps
    sampled = base.horizon_samples(steps)
    errors = base.ar1_errors(residuals, phi, sampled)
    table = base.error_quantiles(errors, sampled, steps, settings.levels)
    return Harmonic(NAME, training.end, step, design, coefficients, phi, table, settings.levels,
                    base.mean_abs(errors))
