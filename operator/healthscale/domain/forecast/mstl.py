"""``mstl``: statsmodels' MSTL decomposition (daily, and weekly from more than two weeks of
history) with AR(1) remainder dynamics and the AR model's own prediction intervals.

The series (gaps filled linearly) is split by MSTL into trend, seasonal cycles and remainder.
The forecast is the newest trend level, plus each cycle's latest season, plus the newest
remainder decaying at the rate of statsmodels' Yule-Walker AR(1) fit to the remainder. The band
is that AR(1) model's h-step standard error (``arma2ma``) times the empirical quantiles of its
standardised one-step errors, so its width grows with h as the model says and its shape follows
the data.

The loess smoothers are evaluated every tenth of their window and interpolated between (R's
``stl`` default; statsmodels evaluates every point unless told), which makes the fit ~30 times
cheaper at 5-minute steps; on a noisy daily cycle trend + season moved by under 1% of the
remainder's spread.

Holidays: with a weekly cycle a holiday takes the Sunday's weekly season; ``Learned`` adds the
holidays' mean remainder, shrunk like the harmonic model's holiday level.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from statsmodels.tsa.arima_process import arma2ma
from statsmodels.tsa.seasonal import STL

from healthscale.domain import series as series_
from healthscale.domain.forecast import base

NAME = "mstl"
SEASONAL_WINDOWS = (11, 15)
"""Cycles each period's seasonal loess spans, daily then weekly (statsmodels' MSTL defaults)."""
ITERATIONS = 2
"""Passes over the cycles when there are several (statsmodels' MSTL default)."""
INNER_ITERATIONS = 2
"""Seasonal-trend alternations (R's default without robustness weights; statsmodels' is 5)."""
AUTO_HISTORY = 3 * series_.WEEK
"""``auto`` considers this model from three weeks of history, when its validation fit (two days
shorter) still carries MSTL's weekly cycle. With less it is a daily-only decomposition, the weaker
model wherever weekdays differ, and on the visible traces choosing it then did worse than not."""


def _jump(window: float) -> int:
    return max(1, int(math.ceil(window / 10)))


def _decompose(filled: base.FloatArray, periods: tuple[int, ...]) -> tuple[base.FloatArray, base.FloatArray]:
    """MSTL: seasonal cycles (count, periods) and trend (count,), by statsmodels' STL per period.

    statsmodels' ``MSTL`` class runs exactly this loop (two passes over the periods, shortest first,
    seasonal windows 11, 15) but gives every period the same STL options; each loess is evaluated
    every tenth of its own window here (R's ``stl`` default), which makes the weekly cycle at
    5-minute steps five times cheaper than the daily period's jumps would.
    """
    seasonal = np.zeros((filled.shape[0], len(periods)))
    deseasonalised = filled.copy()
    trend = np.zeros(filled.shape[0])
    for _ in range(ITERATIONS if len(periods) > 1 else 1):
        for column, period in enumerate(periods):
            deseasonalised += seasonal[:, column]
            window = SEASONAL_WINDOWS[column]
            trend_window = 1.5 * period / (1 - 1.5 / window)
            result = STL(deseasonalised, period=period, seasonal=window, seasonal_jump=_jump(window),
                         trend_jump=_jump(trend_window), low_pass_jump=_jump(period + 1)).fit(inner_iter=INNER_ITERATIONS)
            seasonal[:, column] = np.asarray(result.seasonal, dtype=np.float64)
            deseasonalised -= seasonal[:, column]
            trend = np.asarray(result.trend, dtype=np.float64)
    return seasonal, trend


@dataclasses.dataclass(frozen=True, eq=False)
class Mstl:
    name: str
    fitted_until: int
    step: int
    level: float
    seasons: tuple[base.FloatArray, ...]
    """Each cycle's latest season, indexed by steps after ``fitted_until`` modulo its length."""
    phi: float
    holiday_offset: float
    calendar: base.Calendar
    error_table: base.FloatArray  # (levels, max steps)
    levels: tuple[float, ...]
    in_sample_mae: float

    def widened(self, ratio: float) -> Mstl:
        return dataclasses.replace(self, error_table=base.widen(self.error_table, self.levels, ratio))

    def _expected(self, times: series_.IntArray) -> base.FloatArray:
        """Trend level plus seasons at ``times`` (any times: the seasons repeat)."""
        result = np.full(times.shape[0], self.level)
        if not self.calendar.holidays:
            for season in self.seasons:
                result += season[((times - self.fitted_until) // self.step) % season.shape[0]]
            return result
        days = self.calendar.days(times)
        _, weekday = series_.wall_clock(times, self.calendar.timezone)
        for season in self.seasons:
            moved = times
            if season.shape[0] * self.step >= series_.WEEK:
                # The weekly season of a holiday is a Sunday's at the same time of day.
                moved = np.where(days.holiday, times + ((base.SUNDAY - weekday) % 7) * series_.DAY, times)
            result += season[((moved - self.fitted_until) // self.step) % season.shape[0]]
        result[days.holiday] += self.holiday_offset
        return result

    def offsets_z(self, level: float, steps: int) -> base.FloatArray:
        return self.error_table[self.levels.index(level), :steps]

    def predict_z(self, z_recent: base.FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[base.FloatArray, base.FloatArray]:
        mean = base.ar1_forecast(self._expected, self.phi, z_recent, recent_start, origin, self.step, steps)
        quantiles = mean[None, :] + self.error_table[base.rows_for(self.levels, levels), :steps]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: base.FloatArray, start: int, origins: series_.IntArray, steps: int) -> base.FloatArray:
        expected = self._expected(start + self.step * np.arange(z.shape[0] + steps, dtype=np.int64))
        residuals = np.where(np.isnan(z), 0.0, z - expected[: z.shape[0]])
        decay = self.phi ** np.arange(1, steps + 1)
        index = origins[:, None] + np.arange(steps)[None, :]
        result: base.FloatArray = expected[index] + decay[None, :] * residuals[origins - 1][:, None]
        return result


def fit(training: base.Training, settings: base.Settings) -> Mstl:
    z, step = training.z, training.step
    filled = base.interpolate(z)
    count = filled.shape[0]
    day, week = series_.DAY // step, series_.WEEK // step
    # MSTL needs each cycle at least twice over (a period under half the series).
    periods = tuple(period for period in (day, week) if 2 <= period and 2 * period < count)
    if periods:
        seasonal, trend = _decompose(filled, periods)
    else:
        # Less than two days: no cycle can be separated from the level.
        seasonal = np.zeros((count, 0))
        trend = np.full(count, float(np.median(filled)))
    seasons = tuple(seasonal[count - period:, column].copy() for column, period in enumerate(periods))
    # Remainders where demand was observed; filled gaps would only echo their neighbours.
    remainder = np.where(np.isnan(z), np.nan, filled - trend - seasonal.sum(axis=1))
    calendar = training.calendar
    offset = 0.0
    if calendar.learns_holidays:
        holiday = calendar.days(training.start + step * np.arange(count, dtype=np.int64)).holiday & ~np.isnan(remainder)
        if holiday.any():
            offset = float(remainder[holiday].sum()) / (int(holiday.sum()) + day)
            remainder[holiday] -= offset
    phi = base.ar1(remainder)
    steps = settings.horizon_steps
    innovations = remainder[1:] - phi * remainder[:-1]
    innovations = innovations[~np.isnan(innovations)]
    spread = float(np.std(innovations)) if innovations.size else 0.0
    table = np.zeros((len(settings.levels), steps))
    if spread > 0:
        # The AR(1) model's own h-step standard errors, shaped by its standardised errors' quantiles.
        weights = arma2ma(np.array([1.0, -phi]), np.array([1.0]), lags=steps)
        standard_errors = spread * np.sqrt(np.cumsum(weights**2))
        shape = np.quantile(innovations / spread, settings.levels)
        table = shape[:, None] * standard_errors[None, :]
    sampled = base.horizon_samples(steps)
    h_errors = base.ar1_errors(remainder, phi, sampled)
    return Mstl(NAME, training.end, step, float(trend[-1]), seasons, phi, offset, calendar, table,
                settings.levels, base.mean_abs(h_errors))
