"""Forecasting throughput: healthscale's engine against naive per-series Holt-Winters refits.

The operator forecasts every ClinicalSLO every cycle, so this measures, on one core:

- a cold cycle: every series fitted from 14 days of 5-minute history (what happens at start-up;
  ``auto`` validates harmonic and seasonal-naive there, and mstl too from three weeks of history);
- a steady cycle: one new point per series and the cached fit updated, plus the refits due (each
  series is refitted every ``refit_every``, 6 h, so a cycle carries 1/72 of a cold cycle);
- the Predictive HPA's way: a fresh statsmodels Holt-Winters fit per series per cycle.

The series are 14-day windows cut at random from the real traces in ../shared/traces, resampled
to 5 minutes and rescaled, so that the fits see real shapes, noise and gaps.

    python bench/throughput.py --series 1000 --naive-series 30
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from healthscale.backtest import trace
from healthscale.domain import series
from healthscale.domain.forecast import base, choice, holt_winters

STEP = 300
HISTORY = 14 * series.DAY
TRACES = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def _five_minute(path: pathlib.Path) -> np.ndarray:
    """The trace on a 5-minute grid: averaged when finer, repeated when coarser (gaps stay NaN)."""
    loaded = trace.load(path)
    values = loaded.series.values
    if loaded.step < STEP:
        factor = STEP // loaded.step
        usable = values[: values.size // factor * factor].reshape(-1, factor)
        with np.errstate(invalid="ignore"):
            return np.where(np.isnan(usable).all(axis=1), np.nan, np.nanmean(np.where(np.isnan(usable), 0, usable), axis=1))
    return np.repeat(values, loaded.step // STEP)


def make_series(count: int, seed: int) -> list[series.Series]:
    random = np.random.default_rng(seed)
    sources = [_five_minute(path) for path in sorted(TRACES.glob("*.csv"))]
    points = HISTORY // STEP + 1
    sources = [source for source in sources if source.size > points]
    made = []
    start = 1_700_000_000 // series.DAY * series.DAY
    for index in range(count):
        source = sources[index % len(sources)]
        offset = int(random.integers(0, source.size - points))
        while np.isnan(source[offset + points - 1]):  # end on a sample, as a live series does
            offset = int(random.integers(0, source.size - points))
        window = source[offset: offset + points] * float(random.uniform(0.5, 2.0))
        made.append(series.Series(start, STEP, window.astype(np.float64)))
    return made


def run(count: int, naive_count: int, seed: int) -> dict[str, float]:
    histories = make_series(count, seed)
    now = histories[0].end
    settings = base.Settings(history=HISTORY, step=STEP, horizon=2 * 3600)
    started = time.perf_counter()
    states: list[choice.State | None] = []
    failures = 0
    for history in histories:
        outcome, state = choice.forecast(history, now, settings, None)
        failures += isinstance(outcome, base.NoForecast)
        states.append(state)
    cold = time.perf_counter() - started

    # Steady state: the next cycle, one more point; only series due for a refit are refitted.
    started = time.perf_counter()
    for history, state in zip(histories, states):
        grown = series.Series(history.start, STEP, np.append(history.values, history.values[-1]))
        choice.forecast(grown, now + STEP, settings, state)
    update = time.perf_counter() - started
    # Each series is refitted once per refit_every, so a cycle carries that share of a cold fit.
    steady = update + cold * STEP / settings.refit_every

    naive_settings = base.Settings(history=HISTORY, step=STEP, horizon=2 * 3600,
                                          model=holt_winters.NAME, validate=False)
    started = time.perf_counter()
    for history in histories[:naive_count]:
        choice.forecast(history, now, naive_settings, None)
    naive = (time.perf_counter() - started) / naive_count * count

    return {
        "series": count,
        "no_forecast": failures,
        "cold_seconds": cold,
        "update_seconds": update,
        "steady_seconds": steady,
        "naive_seconds_extrapolated": naive,
        "naive_series_timed": naive_count,
        "cold_series_per_minute": count / cold * 60,
        "steady_series_per_minute": count / steady * 60,
        "naive_series_per_minute": count / naive * 60,
        "cold_speedup_vs_naive": naive / cold,
        "steady_speedup_vs_naive": naive / steady,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--naive-series", type=int, default=30, help="how many naive refits to time (extrapolated)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=pathlib.Path)
    arguments = parser.parse_args()
    threadpool_limits(1)
    if not TRACES.is_dir():
        print(f"error: {TRACES} not found (the benchmark uses ../shared/traces)", file=sys.stderr)
        return 2
    figures = run(arguments.series, arguments.naive_series, arguments.seed)
    for key, value in figures.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
