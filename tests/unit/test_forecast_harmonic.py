"""The harmonic model: its design (weekday levels, daily and weekend shapes, a holiday level), its
robust fit on statsmodels, and its AR(1) residual dynamics.

Series are hourly and synthetic; expected values come from the generating formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.domain import series
from healthscale.domain.forecast import base, choice, harmonic, holidays

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00Z, a Monday at midnight UTC."""


def daily(times: series.IntArray, amplitude: float, phase: float, weekend: float) -> series.FloatArray:
    seconds = times % DAY
    weekday = ((times // DAY) + 3) % 7
    shape = 100.0 * np.exp(amplitude * np.sin(2.0 * np.pi * seconds / DAY + phase))
    result: series.FloatArray = shape * np.where(weekday >= 5, weekend, 1.0)
    return result


def forecast_of(values: series.FloatArray, horizon: int = 24 * HOUR, **overrides: object) -> base.Forecast:
    history = series.Series(MONDAY, HOUR, values)
    settings = base.Settings(history=30 * DAY, step=HOUR, horizon=horizon, model=harmonic.NAME, **overrides)  # type: ignore[arg-type]
    outcome, _ = choice.forecast(history, history.end, settings)
    assert isinstance(outcome, base.Forecast), outcome
    return outcome


@hypothesis_settings(max_examples=15, deadline=None)
@given(amplitude=st.floats(0.1, 1.0), phase=st.floats(0.0, 2 * np.pi), weekend=st.floats(0.4, 1.2),
       seed=st.integers(0, 1000))
def test_any_smooth_daily_and_weekly_shape_under_noise_is_tracked(amplitude: float, phase: float, weekend: float,
                                                                  seed: int) -> None:
    times = MONDAY + HOUR * np.arange(17 * 24, dtype=np.int64)  # ends on a Thursday: the forecast spans a weekday
    noise = 1.0 + 0.05 * np.random.default_rng(seed).standard_normal(times.shape[0])
    forecast = forecast_of(daily(times, amplitude, phase, weekend) * noise, horizon=72 * HOUR)
    truth = daily(forecast.times(), amplitude, phase, weekend)
    # A flat forecast at the mean would be off by 10-60%; the weekend is in the 72 hours too.
    assert float(np.mean(np.abs(forecast.point - truth) / truth)) < 0.06


def test_a_level_shift_in_the_last_hours_carries_forward_and_decays() -> None:
    times = MONDAY + HOUR * np.arange(16 * 24, dtype=np.int64)
    noise = 1.0 + 0.03 * np.random.default_rng(1).standard_normal(times.shape[0])
    values = daily(times, 0.5, 0.0, 1.0) * noise
    shifted = values.copy()
    shifted[-4:] *= 1.5  # the last four hours ran 50% above the usual shape
    base_forecast, raised = forecast_of(values, horizon=48 * HOUR), forecast_of(shifted, horizon=48 * HOUR)
    ratio = raised.point / base_forecast.point
    assert ratio[0] > 1.1, "the next hour inherits part of the shift"
    assert ratio[-1] < ratio[0] and ratio[-1] < 1.05, "and it fades over two days"


def test_the_design_has_weekday_levels_daily_and_weekend_shapes_and_a_holiday_level() -> None:
    christmas = (np.datetime64("2024-12-25") - np.datetime64("1970-01-01")).astype(int)
    calendar = base.Calendar("UTC", (int(christmas),), holidays.LEARNED)
    design = harmonic.Design(weekday_levels=True, weekend_shape=True, daily_order=3, calendar=calendar,
                             holiday_level=True)
    start = int(christmas) * DAY - 3 * DAY  # Sunday 22 December
    times = start + HOUR * np.arange(7 * 24, dtype=np.int64)
    matrix = design.matrix(times)
    assert matrix.shape == (7 * 24, 7 + 2 * 3 + 2 * 3 + 1)
    np.testing.assert_array_equal(matrix[:, :7].sum(axis=1), 1.0)  # exactly one day type per row
    on_christmas = (times // DAY) == christmas
    assert design.holiday_column == matrix.shape[1] - 1
    np.testing.assert_array_equal(matrix[:, design.holiday_column], on_christmas.astype(float))
    np.testing.assert_array_equal(matrix[on_christmas, base.SUNDAY], 1.0)  # a holiday is a Sunday ...
    assert np.any(matrix[on_christmas, 7 + 6:7 + 12] != 0.0)  # ... with the weekend's shape


def test_without_a_week_of_history_there_is_one_level_and_no_weekend_shape() -> None:
    times = MONDAY + HOUR * np.arange(5 * 24, dtype=np.int64)
    history = series.Series(MONDAY, HOUR, daily(times, 0.5, 0.0, 1.0))
    settings = base.Settings(history=5 * DAY, step=HOUR, horizon=6 * HOUR, model=harmonic.NAME, validate=False)
    state = choice.fit(history, settings)
    assert isinstance(state, choice.State) and isinstance(state.fitted, harmonic.Harmonic)
    design = state.fitted.design
    assert (design.weekday_levels, design.weekend_shape, design.holiday_level) == (False, False, False)
    assert design.daily_order == harmonic.DAILY_ORDER


@pytest.mark.parametrize(
    ("step", "expected_order"),
    [
        pytest.param(HOUR, harmonic.DAILY_ORDER, id="hourly steps carry the full daily order"),
        pytest.param(4 * HOUR, 2, id="six points a day carry two harmonics"),
    ],
)
def test_the_daily_order_is_what_the_step_can_resolve(step: int, expected_order: int) -> None:
    times = MONDAY + step * np.arange(10 * DAY // step, dtype=np.int64)
    history = series.Series(MONDAY, step, daily(times, 0.5, 0.0, 1.0))
    settings = base.Settings(history=10 * DAY, step=step, horizon=step, model=harmonic.NAME, validate=False)
    state = choice.fit(history, settings)
    assert isinstance(state, choice.State) and isinstance(state.fitted, harmonic.Harmonic)
    assert state.fitted.design.daily_order == expected_order


def _statsmodels_robust_ridge(rows: series.FloatArray, target: series.FloatArray,
                              penalties: series.FloatArray) -> series.FloatArray:
    """The reference: statsmodels' ridge on rows whitened by sqrt(Huber weights), refitted each step."""
    from statsmodels.regression.linear_model import OLS

    weights = np.ones(target.shape[0])
    for _ in range(harmonic.REWEIGHTS + 1):
        root = np.sqrt(weights)
        coefficients = np.asarray(OLS(target * root, rows * root[:, None]).fit_regularized(
            method="elastic_net", alpha=penalties, L1_wt=0.0).params)
        weights = harmonic._huber_weights(target - rows @ coefficients)
    return coefficients


@pytest.mark.parametrize("spikes", [0, 5, 40], ids=lambda n: f"with {n} outlier spikes")
def test_the_cached_normal_equations_give_statsmodels_robust_ridge_estimate(spikes: int) -> None:
    times = MONDAY + HOUR * np.arange(15 * 24, dtype=np.int64)
    random = np.random.default_rng(spikes)
    values = daily(times, 0.6, 1.0, 0.7) * (1.0 + 0.1 * random.standard_normal(times.shape[0]))
    values[random.choice(times.shape[0], spikes, replace=False)] *= 20.0
    z = base.Scale.of(values).forward(values)
    design = harmonic.Design(weekday_levels=True, weekend_shape=True, daily_order=10, calendar=base.Calendar(),
                             holiday_level=False)
    rows = design.matrix(times)
    penalties = np.full(rows.shape[1], harmonic.RIDGE * float(np.einsum("ij,ij->", rows, rows)) / rows.size)
    ours = harmonic._robust_ridge(rows, z, rows.T @ rows, penalties)
    np.testing.assert_allclose(ours, _statsmodels_robust_ridge(rows, z, penalties), rtol=1e-6, atol=1e-8)
