"""``seasonal-naive``: the value at the same time one week earlier (one day with less than two
weeks of history), from the same kind of day.

With holidays, a holiday is forecast from the latest earlier holiday (``Learned``; the latest
Sunday when none was seen) or the latest Sunday (``Sunday``), and an ordinary day never from a
holiday. The whole model is index arithmetic on the history, so it stays in numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from healthscale.domain import series as series_
from healthscale.domain.forecast import base, holidays as holidays_

NAME = "seasonal-naive"
LOOKBACK_DAYS = 35
"""How far back a holiday (or the day after one) looks for a day of its kind."""


@dataclasses.dataclass(frozen=True, eq=False)
class SeasonalNaive:
    name: str
    fitted_until: int
    step: int
    period: int  # in steps
    error_table: base.FloatArray
    levels: tuple[float, ...]
    fallback: float  # median z, used when no earlier season was observed
    in_sample_mae: float
    calendar: base.Calendar

    def widened(self, ratio: float) -> SeasonalNaive:
        return dataclasses.replace(self, error_table=base.widen(self.error_table, self.levels, ratio))

    def _lagged(self, z: base.FloatArray, start: int, targets: series_.IntArray,
                limit: series_.IntArray) -> base.FloatArray:
        """z one or more whole periods before each target index, strictly before ``limit``."""
        seasons_back = np.maximum(1, -(-(targets - limit + 1) // self.period))
        values = np.full(targets.shape, np.nan)
        for extra in range(4):
            index = targets - (seasons_back + extra) * self.period
            valid = (index >= 0) & np.isnan(values)
            values[valid] = z[index[valid]]
        if self.calendar.holidays:
            self._same_kind(z, start, targets, limit, targets - seasons_back * self.period, values)
        return np.where(np.isnan(values), self.fallback, values)

    def _same_kind(self, z: base.FloatArray, start: int, targets: series_.IntArray, limit: series_.IntArray,
                   plain: series_.IntArray, values: base.FloatArray) -> None:
        """Replace, in place, the values of holidays and of days whose plain source is a holiday."""
        times = start + self.step * np.concatenate([targets, plain]).astype(np.int64)
        days = self.calendar.days(times)
        count = targets.shape[0]
        affected = np.flatnonzero(days.holiday[:count] | days.holiday[count:])
        if not affected.size:
            return
        day = max(1, series_.DAY // self.step)
        back = np.arange(1, LOOKBACK_DAYS + 1)
        candidates = targets[affected][:, None] - day * back[None, :]
        usable = (candidates >= 0) & (candidates < limit[affected][:, None])
        safe = np.clip(candidates, 0, z.shape[0] - 1)
        usable &= ~np.isnan(z[safe])
        found = self.calendar.days(start + self.step * safe.ravel().astype(np.int64))
        weekday, holiday = found.weekday.reshape(safe.shape), found.holiday.reshape(safe.shape)
        wanted_weekday = days.weekday[:count][affected][:, None]
        target_holiday = days.holiday[:count][affected][:, None]
        weekly = self.period >= 7 * day
        learned = self.calendar.effect == holidays_.LEARNED
        # An ordinary day comes from an ordinary day (of its weekday, with a weekly period).
        ordinary = ~holiday & (weekday == wanted_weekday) if weekly else ~holiday
        sunday = weekday == base.SUNDAY
        matches = np.where(target_holiday, holiday if learned else sunday, ordinary) & usable
        if learned:
            # A Learned holiday with no earlier holiday in the history is a Sunday.
            none_seen = ~matches.any(axis=1, keepdims=True) & target_holiday
            matches |= none_seen & sunday & usable
        has = matches.any(axis=1)
        first = np.argmax(matches, axis=1)
        chosen = safe[np.arange(affected.size), first]
        values[affected[has]] = z[chosen[has]]

    def offsets_z(self, level: float, steps: int) -> base.FloatArray:
        return self.error_table[self.levels.index(level), :steps]

    def predict_z(self, z_recent: base.FloatArray, recent_start: int, origin: int, steps: int,
                  levels: tuple[float, ...]) -> tuple[base.FloatArray, base.FloatArray]:
        origin_index = (origin - recent_start) // self.step
        targets = origin_index + np.arange(steps, dtype=np.int64)
        mean = self._lagged(z_recent, recent_start, targets, np.full(steps, origin_index, dtype=np.int64))
        quantiles = mean[None, :] + self.error_table[base.rows_for(self.levels, levels), :steps]
        return quantiles[levels.index(0.5)], quantiles

    def paths_z(self, z: base.FloatArray, start: int, origins: series_.IntArray, steps: int) -> base.FloatArray:
        targets = origins[:, None] + np.arange(steps)[None, :]
        limits = np.repeat(origins[:, None], steps, axis=1)
        return self._lagged(z, start, targets.ravel(), limits.ravel()).reshape(targets.shape)


def fit(training: base.Training, settings: base.Settings) -> SeasonalNaive:
    z, step = training.z, training.step
    period = (series_.WEEK if training.span >= 2 * series_.WEEK else series_.DAY) // step
    errors = z[period:] - z[:-period] if z.shape[0] > period else np.empty(0)
    errors = errors[~np.isnan(errors)]
    table = base.error_quantiles([errors], np.array([1], dtype=np.int64), 1, settings.levels)
    observed = z[~np.isnan(z)]
    return SeasonalNaive(
        NAME, training.end, step, max(1, period), np.repeat(table, settings.horizon_steps, axis=1),
        settings.levels, float(np.median(observed)), base.mean_abs([errors]), training.calendar,
    )

