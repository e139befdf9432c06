"""The holt-winters model (the Predictive HPA's approach, kept for comparison): statsmodels' fit,
and its state carried forward between refits by the same smoothing equations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.domain import series
from healthscale.domain.forecast import base, choice, holt_winters

HOUR = 3600
DAY = 86400
MONDAY = 1704067200


def shape(times: series.IntArray, amplitude: float) -> series.FloatArray:
    result: series.FloatArray = 100.0 * (1.0 + amplitude * np.sin(2.0 * np.pi * ((times % DAY) / DAY - 0.25)))
    return result


@hypothesis_settings(max_examples=8, deadline=None)
@given(amplitude=st.floats(0.2, 0.8), seed=st.integers(0, 1000))
def test_a_daily_cycle_under_noise_is_tracked(amplitude: float, seed: int) -> None:
    times = MONDAY + HOUR * np.arange(10 * 24, dtype=np.int64)
    values = shape(times, amplitude) * (1.0 + 0.05 * np.random.default_rng(seed).standard_normal(times.shape[0]))
    settings = base.Settings(history=10 * DAY, step=HOUR, horizon=24 * HOUR, model=holt_winters.NAME, validate=False)
    outcome, _ = choice.forecast(series.Series(MONDAY, HOUR, values), MONDAY + 10 * DAY, settings)
    assert isinstance(outcome, base.Forecast) and outcome.model == holt_winters.NAME
    truth = shape(outcome.times(), amplitude)
    assert float(np.mean(np.abs(outcome.point - truth) / truth)) < 0.1


def test_between_refits_the_state_follows_new_samples() -> None:
    times = MONDAY + HOUR * np.arange(12 * 24, dtype=np.int64)
    # A wandering level, so that the fitted smoothing level is well above zero.
    level = np.exp(np.cumsum(0.04 * np.random.default_rng(1).standard_normal(times.shape[0])))
    values = shape(times, 0.5) * level
    settings = base.Settings(history=10 * DAY, step=HOUR, horizon=6 * HOUR, model=holt_winters.NAME, validate=False)
    fitted_at = MONDAY + 11 * DAY
    _, state = choice.forecast(series.Series(MONDAY, HOUR, values), fitted_at, settings)
    raised = values.copy()
    raised[11 * 24: 11 * 24 + 3] *= 2.0  # three hours at twice the usual level after the fit
    plain, _ = choice.forecast(series.Series(MONDAY, HOUR, values), fitted_at + 3 * HOUR, settings, state)
    lifted, kept = choice.forecast(series.Series(MONDAY, HOUR, raised), fitted_at + 3 * HOUR, settings, state)
    assert kept is state
    assert isinstance(plain, base.Forecast) and isinstance(lifted, base.Forecast)
    # How far it follows is the fitted smoothing level's business; that it follows is the point.
    assert lifted.point[0] > 1.01 * plain.point[0]
