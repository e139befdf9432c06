"""Quantile calibration: how often demand exceeded the forecast quantile the engine provisioned for.

A forecast at quantile ``q`` is calibrated when demand exceeds it in a share ``1 - q`` of intervals.
A breach share well above nominal means the band is too narrow (the plan leans on headroom and
luck); well below, the band is wider than the errors need (replica-hours spent for nothing).
Intervals without a forecast are left out, and "exceeded" is strict: Poisson counts often land
exactly on an integer quantile, and meeting the quantile is not a breach.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from healthscale.domain import series


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Breaches of the forecast at ``level`` over the intervals that had a forecast."""

    level: float
    intervals: int
    breaches: int

    @property
    def nominal_percent(self) -> float:
        return 100.0 * (1.0 - self.level)

    @property
    def breach_percent(self) -> float:
        return 100.0 * self.breaches / self.intervals if self.intervals else math.nan

    def describe(self) -> str:
        """e.g. ``demand above the p95 forecast in 6.1% of 25,968 intervals (nominal 5%)``."""
        if not self.intervals:
            return f"no interval had a p{self.level * 100:g} forecast"
        return (f"demand above the p{self.level * 100:g} forecast in {self.breach_percent:.1f}% of "
                f"{self.intervals:,} intervals (nominal {self.nominal_percent:g}%)")


def calibration(demand: series.FloatArray, quantile: series.FloatArray, level: float) -> Calibration:
    """Compare ``demand`` with the forecast ``quantile`` (at ``level``) for the same intervals."""
    if demand.shape != quantile.shape:
        raise ValueError(f"demand has {demand.shape[0]} intervals but the quantile {quantile.shape[0]}")
    forecast = ~np.isnan(quantile) & ~np.isnan(demand)
    breaches = int(np.count_nonzero(demand[forecast] > quantile[forecast]))
    return Calibration(level, int(np.count_nonzero(forecast)), breaches)
