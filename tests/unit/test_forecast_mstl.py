"""The mstl model: statsmodels' MSTL decomposition, AR(1) remainder dynamics, and the AR model's
own intervals shaped by the empirical error distribution.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.domain import series
from healthscale.domain.forecast import base, choice, mstl

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00Z, a Monday at midnight UTC."""


def shape(times: series.IntArray, amplitude: float = 0.6, weekend: float = 1.0) -> series.FloatArray:
    seconds = times % DAY
    weekday = ((times // DAY) + 3) % 7
    result: series.FloatArray = (100.0 * (1.0 + amplitude * np.sin(2.0 * np.pi * (seconds / DAY - 0.25)))
                                 * np.where(weekday >= 5, weekend, 1.0))
    return result


def noisy(days: int, seed: int, amplitude: float = 0.6, weekend: float = 1.0, step: int = HOUR) -> series.Series:
    times = MONDAY + step * np.arange(days * DAY // step, dtype=np.int64)
    noise = 1.0 + 0.05 * np.random.default_rng(seed).standard_normal(times.shape[0])
    return series.Series(MONDAY, step, shape(times, amplitude, weekend) * noise)


def fitted_of(history: series.Series, horizon: int = 24 * HOUR) -> tuple[choice.State, mstl.Mstl]:
    settings = base.Settings(history=history.end - history.start, step=history.step, horizon=horizon,
                             model=mstl.NAME, validate=False)
    state = choice.fit(history, settings)
    assert isinstance(state, choice.State) and isinstance(state.fitted, mstl.Mstl)
    return state, state.fitted


@hypothesis_settings(max_examples=15, deadline=None)
@given(amplitude=st.floats(0.2, 0.9), seed=st.integers(0, 1000), days=st.integers(3, 20))
def test_a_daily_cycle_under_noise_is_tracked(amplitude: float, seed: int, days: int) -> None:
    history = noisy(days, seed, amplitude)
    state, _ = fitted_of(history)
    forecast = choice.predict(state, history, history.end)
    assert isinstance(forecast, base.Forecast)
    truth = shape(forecast.times(), amplitude)
    assert float(np.mean(np.abs(forecast.point - truth) / truth)) < 0.08


@hypothesis_settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), days=st.integers(3, 20))
def test_the_band_widens_with_the_horizon_and_is_ordered(seed: int, days: int) -> None:
    _, model = fitted_of(noisy(days, seed))
    table = model.error_table
    levels = model.levels
    for row, level in enumerate(levels):
        if level > 0.5:
            assert np.all(np.diff(table[row] - table[levels.index(0.5)]) >= -1e-12), level
    assert np.all(np.diff(table, axis=0) >= -1e-12), "higher levels are never below lower ones"


@pytest.mark.parametrize(
    ("days", "cycles"),
    [
        pytest.param(14, 1, id="two weeks exactly are too few for MSTL's weekly cycle"),
        pytest.param(21, 2, id="three weeks carry a daily and a weekly cycle"),
        pytest.param(1, 0, id="a single day carries no cycle at all, only a level"),
    ],
)
def test_the_cycles_are_those_the_history_can_carry(days: int, cycles: int) -> None:
    history = noisy(days, 0, weekend=0.5)
    _, model = fitted_of(history)
    assert len(model.seasons) == cycles


def test_a_weekly_cycle_forecasts_the_weekend_dip() -> None:
    history = noisy(26, 1, weekend=0.5)  # ends on a Friday night
    state, _ = fitted_of(history, horizon=48 * HOUR)
    forecast = choice.predict(state, history, history.end)
    assert isinstance(forecast, base.Forecast)
    truth = shape(forecast.times(), weekend=0.5)
    assert float(np.mean(np.abs(forecast.point - truth) / truth)) < 0.1


def test_a_level_shift_in_the_last_hours_carries_forward() -> None:
    history = noisy(14, 2)
    shifted = series.Series(history.start, HOUR, np.concatenate([history.values[:-3], history.values[-3:] * 1.6]))
    state, _ = fitted_of(history)
    state_shifted, _ = fitted_of(shifted)
    plain = choice.predict(state, history, history.end)
    raised = choice.predict(state_shifted, shifted, shifted.end)
    assert isinstance(plain, base.Forecast) and isinstance(raised, base.Forecast)
    assert raised.point[0] > 1.1 * plain.point[0]


def test_the_five_minute_fit_uses_jumps_and_still_follows_the_shape() -> None:
    history = noisy(14, 3, step=300)
    state, model = fitted_of(history, horizon=2 * HOUR)
    assert model.seasons[0].shape == (DAY // 300,)
    forecast = choice.predict(state, history, history.end)
    assert isinstance(forecast, base.Forecast)
    truth = shape(forecast.times())
    assert float(np.mean(np.abs(forecast.point - truth) / truth)) < 0.08
