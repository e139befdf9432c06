"""``holt-winters``: statsmodels' additive Holt-Winters with a daily season, the Predictive HPA's
approach, kept for comparison (and as the backtest's reference policy). It ignores holidays.

The fit is statsmodels' ``ExponentialSmoothing``; between refits its level and season are
updated by the same smoothing equations, one sample at a time (kept in numpy: a handful of
samples per cycle, where a statsmodels refit would cost a full optimisation).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from healthscale.domain import series as series_
from healthscale.domain.forecast import base

NAME = "holt-winters"


@dataclasses.dataclass(frozen=True, eq=False)
class HoltWinters:
    name: str
    fitted_until: int
    step: int
    alpha: float
    gamma: float
    level: float
    season: base.FloatArray  # seasonal terms, indexed by slot = (time // step) % period
    period: int
    residual_quantiles: base.FloatArray  # (levels,)
    levels: tuple[float, ...]
    in_sample_mae: float

    def widened(self, ratio: float) -> HoltWinters:
        return dataclasses.replace(self, residual_quantiles=base.widen(self.residual_quantiles, self.levels, ratio))

    def _run(self, z: base.FloatArray, start: int) -> tuple[float, base.FloatArray, base.FloatArray]:
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

    def offsets_z(self, level: float, steps: int) -> base.FloatArray:
        median = float(self.residual_quantiles[self.levels.index(0.5)])
        spread = np.sqrt(1 + np.arange(steps) * self.alpha**2)
        result: base.FloatArray = median + (float(self.residual_quantiles[self.levels.index(level)]) - median) * spread
        return result

    def predict_z(self, z_recent: base.FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[base.FloatArray, base.FloatArray]:
        origin_index = (origin - recent_start) // self.step
        level, season, _ = self._run(z_recent[:origin_index], recent_start)
        slots = ((origin // self.step) + np.arange(steps)) % self.period
        mean = level + season[slots]
        spread = np.sqrt(1 + np.arange(steps) * self.alpha**2)
        rows = self.residual_quantiles[base.rows_for(self.levels, levels)]
        median = float(self.residual_quantiles[self.levels.index(0.5)])
        quantiles = mean[None, :] + median + (rows[:, None] - median) * spread[None, :]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: base.FloatArray, start: int, origins: series_.IntArray, steps: int) -> base.FloatArray:
        paths = np.empty((origins.shape[0], steps))
        wanted = (0.5,) if 0.5 in self.levels else self.levels
        for row, origin in enumerate(origins):
            paths[row], _ = self.predict_z(z, start, start + int(origin) * self.step, steps, wanted)
        return paths


def fit(training: base.Training, settings: base.Settings) -> HoltWinters:
    z, start, step = training.z, training.start, training.step
    period = max(2, series_.DAY // step)
    filled = base.interpolate(z)
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
    return HoltWinters(NAME, training.end, step, alpha, gamma, level, season, period, np.asarray(quantiles),
                       settings.levels, base.mean_abs([settled]))
