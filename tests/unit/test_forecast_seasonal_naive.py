"""The seasonal-naive model: the same time one week earlier (one day with less than two weeks of
history), and, with holidays, from the same kind of day.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.domain import series
from healthscale.domain.forecast import base, choice, holidays, seasonal_naive

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00Z, a Monday at midnight UTC; 2024-01-15 (Martin Luther King Jr. Day) is a US holiday."""
US = (holidays.Region("US"),)


def forecast_of(values: series.FloatArray, horizon: int, **overrides: object) -> base.Forecast:
    history = series.Series(MONDAY, HOUR, values)
    settings = base.Settings(history=30 * DAY, step=HOUR, horizon=horizon, model=seasonal_naive.NAME, **overrides)  # type: ignore[arg-type]
    outcome, _ = choice.forecast(history, history.end, settings)
    assert isinstance(outcome, base.Forecast), outcome
    return outcome


@hypothesis_settings(max_examples=20, deadline=None)
@given(profile=st.lists(st.floats(1.0, 500.0), min_size=168, max_size=168), weeks=st.integers(2, 3))
def test_an_exactly_repeating_week_is_forecast_exactly(profile: list[float], weeks: int) -> None:
    week = np.asarray(profile)
    forecast = forecast_of(np.tile(week, weeks), horizon=48 * HOUR)
    np.testing.assert_allclose(forecast.point, week[:48], rtol=1e-9)


def test_with_less_than_two_weeks_the_day_before_is_used() -> None:
    day = np.random.default_rng(2).uniform(5.0, 50.0, 24)
    values = np.tile(day, 10)
    values[-24:] = day * 2.0  # yesterday was twice as busy; a week ago is out of reach
    forecast = forecast_of(values, horizon=24 * HOUR)
    np.testing.assert_allclose(forecast.point, 2.0 * day, rtol=1e-9)


def test_without_holidays_a_holiday_is_forecast_from_the_same_weekday() -> None:
    week = np.random.default_rng(3).uniform(5.0, 50.0, 168)
    forecast = forecast_of(np.tile(week, 2), horizon=24 * HOUR)  # ends Sunday 14 January
    np.testing.assert_allclose(forecast.point, week[:24], rtol=1e-9)  # the Monday, holiday or not


def test_a_holiday_as_a_sunday_comes_from_the_latest_sunday() -> None:
    week = np.random.default_rng(4).uniform(5.0, 50.0, 168)
    forecast = forecast_of(np.tile(week, 2), horizon=24 * HOUR, holidays=US, holiday_effect=holidays.SUNDAY)
    np.testing.assert_allclose(forecast.point, week[-24:], rtol=1e-9)


def test_a_learned_holiday_comes_from_the_latest_holiday_and_the_next_day_skips_it() -> None:
    rng = np.random.default_rng(5)
    week = rng.uniform(5.0, 50.0, 168)
    holiday = rng.uniform(1.0, 4.0, 24)
    start = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())  # New Year's Day, a holiday
    values = np.tile(week, 3)
    values[:24] = holiday
    values = values[: 14 * 24 + 24]  # up to the end of Monday 15 January (MLK day)
    values[-24:] = week[:24]  # MLK day itself looked like an ordinary Monday: irrelevant below
    settings = base.Settings(history=30 * DAY, step=HOUR, horizon=48 * HOUR, model=seasonal_naive.NAME,
                             holidays=US, holiday_effect=holidays.LEARNED)
    history = series.Series(start, HOUR, values)
    now = start + 14 * DAY  # midnight before MLK day
    outcome, _ = choice.forecast(history, now, settings)
    assert isinstance(outcome, base.Forecast)
    np.testing.assert_allclose(outcome.point[:24], holiday, rtol=0.2)  # MLK day from New Year's Day
    # Tuesday 16 January comes from Tuesday 9 January (a week back), as any Tuesday would.
    np.testing.assert_allclose(outcome.point[24:], week[24:48], rtol=0.2)
