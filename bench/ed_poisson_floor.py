"""How low can unmet demand go on the ED trace at a given replica-hour budget, even in hindsight?

Arrivals are Poisson counts. Suppose a planner knew, in hindsight, each hour-of-week's mean arrivals
(a better forecast than any real one) and provisioned the Poisson quantile q of it every hour. This
prints its unmet demand % and replica-hours relative to the oracle for several q: the floor that
Poisson noise alone puts under any policy on this trace.

    python bench/ed_poisson_floor.py
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import stats

from healthscale.backtest import trace

TRACE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "traces" / "ed_arrivals_iowa_hourly.csv"


def main() -> None:
    loaded = trace.load(TRACE)
    values = loaded.series.values
    observed = ~np.isnan(values)
    hour_of_week = ((loaded.series.times() // 3600 + 72) % 168)[observed]  # epoch day 0 was a Thursday
    arrivals = values[observed]
    means = np.zeros(168)
    for hour in range(168):
        means[hour] = arrivals[hour_of_week == hour].mean()
    rate = means[hour_of_week]
    print("quantile  unmet %  replica-hours vs oracle")
    for quantile in (0.5, 0.6, 0.7, 0.8, 0.9):
        provisioned = stats.poisson.ppf(quantile, rate)
        unmet = np.maximum(0.0, arrivals - provisioned).sum() / arrivals.sum()
        print(f"{quantile:8.1f}  {100 * unmet:7.2f}  {provisioned.sum() / arrivals.sum():.3f}x")


if __name__ == "__main__":
    main()
