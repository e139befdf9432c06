"""The band's width by time of day (``forecast.spread``): noisier hours get a wider band while the
overall coverage at the provisioned quantile holds, no hour's width is beyond ``spread.BOUND`` either
way of the level, and too few (or only zero) errors keep the pooled band.

Series are synthetic with a known noise level per hour; expected shares come from the generating
formula (5% above the p95), never from the code under test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.domain import series
from healthscale.domain.forecast import base, choice, harmonic, spread

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00Z, a Monday at midnight UTC."""
QUARTER = 900


def noisy_mornings(seed: int, days: int, step: int, morning_noise: float) -> series.FloatArray:
    """A daily cycle (trough at 03:00, peak at 15:00 UTC) with log-normal noise of 0.1, or
    ``morning_noise`` from 06:00 to 12:00."""
    times = MONDAY + step * np.arange(days * DAY // step)
    hour = (times % DAY) / HOUR
    level = 100.0 * (1.5 + np.sin(2.0 * np.pi * (hour - 9.0) / 24.0))
    noise = np.where((hour >= 6) & (hour < 12), morning_noise, 0.1)
    result: series.FloatArray = level * np.exp(noise * np.random.default_rng(seed).standard_normal(times.shape[0]))
    return result


@pytest.mark.parametrize(("step", "seed"), [
    pytest.param(QUARTER, 0, id="a call centre whose mornings are three times noisier, at quarter-hour steps"),
    pytest.param(QUARTER, 1, id="the same call centre on another draw of its noise"),
    pytest.param(300, 2, id="the same call centre at five-minute steps"),
])
def test_noisier_mornings_widen_the_morning_p95_while_overall_coverage_holds(
        step: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spread, "ENABLED", True)
    values = noisy_mornings(seed, 21, step, morning_noise=0.3)
    fitted_steps = 14 * DAY // step
    settings = base.Settings(history=14 * DAY, step=step, horizon=2 * HOUR, model=harmonic.NAME, extra_level=0.95)
    state = choice.fit(series.Series(MONDAY, step, values[:fitted_steps]), settings)
    assert isinstance(state, choice.State), state
    assert state.spread is not None
    relative: dict[int, list[float]] = {}
    above = total = 0
    # A week out of sample, from back-to-back origins so every interval is scored once.
    for origin in range(fitted_steps, values.shape[0] - settings.horizon_steps + 1, settings.horizon_steps):
        forecast = choice.predict(state, series.Series(MONDAY, step, values[:origin]), MONDAY + origin * step)
        assert isinstance(forecast, base.Forecast), forecast
        actual = values[origin:origin + settings.horizon_steps]
        p95 = forecast.quantiles[0.95]
        np.testing.assert_array_equal(forecast.quantiles[0.5], forecast.point)  # the median is untouched
        above += int(np.count_nonzero(actual > p95))
        total += actual.shape[0]
        for hour, width in zip((forecast.times() % DAY) // HOUR, (p95 - forecast.point) / forecast.point):
            relative.setdefault(int(hour), []).append(float(width))
    morning = np.mean([np.mean(relative[hour]) for hour in range(7, 11)])
    afternoon = np.mean([np.mean(relative[hour]) for hour in range(13, 17)])
    assert morning > 1.5 * afternoon
    assert 0.02 <= above / total <= 0.09


@dataclasses.dataclass(frozen=True)
class Zero:
    """A model that always forecasts zero: its errors are the series itself."""

    def paths_z(self, z: base.FloatArray, start: int, origins: base.IntArray, steps: int) -> base.FloatArray:
        return np.zeros((origins.shape[0], steps))


def training_of(z: base.FloatArray, step: int = QUARTER) -> base.Training:
    return base.Training(z, MONDAY, step, z.shape[0] * step, base.Calendar())


@hypothesis_settings(max_examples=40, deadline=None)
@given(noise=st.lists(st.floats(1e-4, 10.0), min_size=24, max_size=24), seed=st.integers(0, 2**16),
       level=st.sampled_from((0.8, 0.9, 0.95, 0.99)))
def test_no_hour_is_wider_or_narrower_than_four_times_the_level(noise: list[float], seed: int, level: float) -> None:
    days = 7
    hourly = np.tile(np.asarray(noise), days)
    z = np.repeat(hourly, HOUR // QUARTER) * np.random.default_rng(seed).standard_normal(days * DAY // QUARTER)
    fitted = spread.fit(Zero(), training_of(z), 8, level)  # type: ignore[arg-type]
    assert fitted is not None
    width = fitted.at(MONDAY + QUARTER * np.arange(DAY // QUARTER, dtype=np.int64))
    assert np.all(width <= spread.BOUND * fitted.level * (1 + 1e-9))
    assert np.all(width >= fitted.level / spread.BOUND * (1 - 1e-9))


@pytest.mark.parametrize("z", [
    pytest.param(np.random.default_rng(3).standard_normal(12), id="three hours of errors are too few to say"),
    pytest.param(np.full(7 * DAY // QUARTER, np.nan), id="a week of gaps has no errors at all"),
    pytest.param(np.zeros(7 * DAY // QUARTER), id="a week of exact forecasts has only zero errors"),
    pytest.param(np.random.default_rng(4).standard_normal(spread.MIN_SAMPLES - 1),
                 id="a history one interval short of two dozen per hour of the day is too short to say"),
])
def test_too_few_errors_keep_the_pooled_band(z: base.FloatArray) -> None:
    assert spread.fit(Zero(), training_of(z), 8, 0.95) is None  # type: ignore[arg-type]



@hypothesis_settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
       levels=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
def test_the_quick_quantiles_are_numpys(values: list[float], levels: list[float]) -> None:
    array = np.asarray(values)
    np.testing.assert_allclose(spread.quantiles(array, tuple(levels)), np.quantile(array, levels), rtol=1e-12, atol=1e-9)


def test_the_state_carries_a_spread_exactly_when_enabled() -> None:
    values = noisy_mornings(4, 14, QUARTER, morning_noise=0.3)
    settings = base.Settings(history=14 * DAY, step=QUARTER, horizon=2 * HOUR, model=harmonic.NAME, extra_level=0.95)
    state = choice.fit(series.Series(MONDAY, QUARTER, values), settings)
    assert isinstance(state, choice.State), state
    assert (state.spread is None) == (not spread.ENABLED)
