"""Demand forecasting at its edges: too little, no or stale data give a NoForecast with a reason (never a
zero forecast); gaps, zeros, flat series and outliers still give sane forecasts; seasonal shape is tracked;
quantiles are ordered; ``auto`` is deterministic; nothing after ``now`` is read; a reused state agrees with
a fresh fit.

Series are small and synthetic (hourly, at most three weeks) so the whole module runs in a few seconds.
Expected values come from the generating formula, never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.api import clinicalslo
from healthscale.domain import series
from healthscale.domain.forecast import base, choice, harmonic, holt_winters, mstl, seasonal_naive

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00Z, a Monday at midnight UTC."""

MODELS = tuple(choice.MODELS)
ALL_MODELS = (base.AUTO, *MODELS)


def weekly_shape(times: series.IntArray) -> series.FloatArray:
    """Demand with a daily cycle (trough 40 at 00:00 UTC, peak 160 at 12:00) that drops to 60% on weekends."""
    seconds = times % DAY
    weekday = ((times // DAY) + 3) % 7
    daily = 100.0 * (1.0 + 0.6 * np.sin(2.0 * np.pi * (seconds / DAY - 0.25)))
    result: series.FloatArray = daily * np.where(weekday >= 5, 0.6, 1.0)
    return result


def grid(count: int, start: int = MONDAY, step: int = HOUR) -> series.IntArray:
    return start + step * np.arange(count, dtype=np.int64)


def noisy(days: float, noise: float = 0.05, seed: int = 0, step: int = HOUR) -> series.FloatArray:
    """``days`` of the weekly shape from MONDAY with multiplicative Gaussian noise."""
    count = int(days * DAY) // step
    rng = np.random.default_rng(seed)
    result: series.FloatArray = weekly_shape(grid(count, step=step)) * (1.0 + noise * rng.standard_normal(count))
    return result


def history_of(values: series.FloatArray | list[float], start: int = MONDAY, step: int = HOUR) -> series.Series:
    return series.Series(start, step, np.asarray(values, dtype=np.float64))


def settings(**overrides: object) -> base.Settings:
    fields: dict[str, object] = {"history": 14 * DAY, "step": HOUR, "horizon": 6 * HOUR}
    fields.update(overrides)
    return base.Settings(**fields)  # type: ignore[arg-type]


def outcome_at_end(history: series.Series, **overrides: object) -> base.Outcome:
    """The forecast made just after the last interval of ``history``."""
    outcome, _ = choice.forecast(history, history.end, settings(**overrides))
    return outcome


def expect_forecast(outcome: base.Outcome) -> base.Forecast:
    assert isinstance(outcome, base.Forecast), outcome
    return outcome


def mape(forecast: base.Forecast) -> float:
    truth = weekly_shape(forecast.times())
    return float(np.mean(np.abs(forecast.point - truth) / truth))


def assert_valid(forecast: base.Forecast) -> None:
    """Finite and non-negative everywhere, with every carried quantile the length of the point forecast."""
    assert np.all(np.isfinite(forecast.point)) and np.all(forecast.point >= 0.0)
    for level, values in forecast.quantiles.items():
        assert values.shape == forecast.point.shape, level
        assert np.all(np.isfinite(values)) and np.all(values >= 0.0), level


# --- No forecast: too little history, no data, stale data -----------------------------------------------


@pytest.mark.parametrize(
    ("history", "sample_count"),
    [
        pytest.param(history_of(np.full(23, 50.0)), 23, id="23 hourly samples are less than the day a forecast needs"),
        pytest.param(history_of([50.0, *[np.nan] * 46, 50.0]), 2,
                     id="two samples two days apart span enough time but are far too few"),
        pytest.param(history_of([50.0 if hour % 3 == 0 else np.nan for hour in range(33)]), 11,
                     id="eleven samples over 33 hours are one short of the twelve an hourly series needs"),
        pytest.param(history_of(np.full(47, 50.0), step=1800), 47,
                     id="23.5 hours of half-hourly samples are less than a day"),
        pytest.param(history_of(np.full(23, 0.0)), 23, id="23 hours of zeros are too little, not a zero forecast"),
    ],
)
def test_too_little_history_is_insufficient_history_and_never_a_zero_forecast(
    history: series.Series, sample_count: int
) -> None:
    outcome, state = choice.forecast(history, history.end, settings(step=history.step))
    assert isinstance(outcome, base.NoForecast)
    assert outcome.code == "InsufficientHistory"
    assert f"with {sample_count} samples" in outcome.reason
    assert "a forecast needs at least 1d" in outcome.reason
    assert state is None


def test_a_full_day_of_hourly_samples_is_just_enough() -> None:
    forecast = expect_forecast(outcome_at_end(history_of(np.full(24, 50.0))))
    np.testing.assert_allclose(forecast.point, 50.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("history", "now"),
    [
        pytest.param(history_of([]), MONDAY, id="an empty series has no data"),
        pytest.param(history_of(np.full(72, np.nan)), MONDAY + 3 * DAY, id="three days of NaN have no data"),
        pytest.param(history_of(np.full(72, 50.0)), MONDAY + 20 * DAY,
                     id="samples older than the whole history window are no data"),
        pytest.param(history_of(np.full(72, -5.0)), MONDAY + 3 * DAY,
                     id="only negative samples (which are ignored) are no data"),
        pytest.param(history_of(np.full(72, np.inf)), MONDAY + 3 * DAY,
                     id="only infinite samples (which are ignored) are no data"),
    ],
)
def test_no_samples_is_no_data(history: series.Series, now: int) -> None:
    outcome, state = choice.forecast(history, now, settings())
    assert isinstance(outcome, base.NoForecast)
    assert outcome.code == "NoData"
    assert state is None


@pytest.mark.parametrize(
    ("silence", "horizon", "stale", "reason"),
    [
        pytest.param(DAY, 6 * HOUR, True, "the newest demand sample is 1d old (more than 6h)",
                     id="a day without samples is stale for a 6h horizon"),
        pytest.param(7 * HOUR, 6 * HOUR, True, "the newest demand sample is 7h old (more than 6h)",
                     id="seven silent hours are stale for a 6h horizon"),
        pytest.param(6 * HOUR, 6 * HOUR, False, None, id="exactly the horizon without samples is not yet stale"),
        pytest.param(2 * HOUR, 30 * 60, True, "the newest demand sample is 2h old (more than 1h)",
                     id="a short horizon still allows one silent hour and no more"),
        pytest.param(HOUR, 30 * 60, False, None, id="one silent hour is allowed even for a 30 minute horizon"),
    ],
)
def test_a_long_silence_before_now_is_stale_data(silence: int, horizon: int, stale: bool, reason: str | None) -> None:
    history = history_of(noisy(10))
    outcome, _ = choice.forecast(history, history.end + silence, settings(horizon=horizon))
    if stale:
        assert isinstance(outcome, base.NoForecast)
        assert (outcome.code, outcome.reason) == ("StaleData", reason)
    else:
        forecast = expect_forecast(outcome)
        assert forecast.start == history.end + silence
        assert_valid(forecast)


# --- Gaps, zeros, flat series and outliers still forecast --------------------------------------------------


def _with_nan(values: series.FloatArray, index: slice) -> series.FloatArray:
    result = values.copy()
    result[index] = np.nan
    return result


THREE_WEEKS = noisy(21)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(_with_nan(THREE_WEEKS, slice(12 * 24 + 8, 12 * 24 + 14)), id="a six hour gap mid-history"),
        pytest.param(_with_nan(THREE_WEEKS, slice(15 * 24, 16 * 24)), id="a whole missing day"),
        pytest.param(_with_nan(THREE_WEEKS, slice(10 * 24, 13 * 24)), id="three missing days"),
        pytest.param(_with_nan(THREE_WEEKS, slice(-2, None)), id="the last two hours missing"),
        pytest.param(_with_nan(THREE_WEEKS, slice(None, None, 5)), id="every fifth hourly sample missing"),
        pytest.param(_with_nan(THREE_WEEKS, slice(None, None, 3)),
                     id="every third hourly sample missing (the same hours every day)"),
    ],
)
@pytest.mark.parametrize("model", [base.AUTO, harmonic.NAME])
def test_gaps_in_the_history_still_forecast_the_daily_shape(values: series.FloatArray, model: str) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(values), model=model, horizon=24 * HOUR))
    assert_valid(forecast)
    # A flat forecast at the mean level scores ~45% here; a forecast that follows the shape scores ~2%.
    assert mape(forecast) < 0.10


@pytest.mark.parametrize("model", ALL_MODELS)
def test_an_all_zero_series_forecasts_zero_not_nothing(model: str) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(np.zeros(5 * 24)), model=model))
    assert_valid(forecast)
    np.testing.assert_allclose(forecast.point, 0.0, atol=1e-9)
    np.testing.assert_allclose(forecast.quantile(0.99), 0.0, atol=1e-9)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_sparse_counts_with_mostly_zeros_give_a_small_non_negative_forecast(model: str) -> None:
    counts = np.random.default_rng(3).poisson(0.3, 10 * 24).astype(np.float64)
    forecast = expect_forecast(outcome_at_end(history_of(counts), model=model, horizon=24 * HOUR))
    assert_valid(forecast)
    assert 0.0 <= float(np.mean(forecast.point)) <= 1.0
    # The band may be skewed upwards (one more arrival doubles a count of one) but stays in proportion.
    assert float(np.max(forecast.quantile(0.95))) <= 3.0 * float(np.max(counts))


@pytest.mark.parametrize("model", ALL_MODELS)
def test_quiet_nights_of_zeros_forecast_the_day_and_a_near_zero_night(model: str) -> None:
    times = grid(10 * 24)
    values = weekly_shape(times)
    values[(times % DAY) < 6 * HOUR] = 0.0
    forecast = expect_forecast(outcome_at_end(history_of(values), model=model, horizon=24 * HOUR))
    assert_valid(forecast)
    night = (forecast.times() % DAY) < 6 * HOUR
    expected = weekly_shape(forecast.times())
    # At most a twentieth of the 160 peak: mstl's smooth trend blurs a night of exact zeros a little.
    assert float(np.max(forecast.point[night])) < 160.0 / 20
    assert float(np.mean(np.abs(forecast.point[~night] - expected[~night]) / expected[~night])) < 0.10


@pytest.mark.parametrize("model", ALL_MODELS)
def test_a_flat_series_forecasts_its_level_with_a_narrow_band(model: str) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(np.full(5 * 24, 42.0)), model=model))
    assert_valid(forecast)
    np.testing.assert_allclose(forecast.point, 42.0, rtol=1e-3)
    np.testing.assert_allclose(forecast.quantile(0.99), 42.0, rtol=1e-3)
    assert "flat series: every sample equals 42" in forecast.notes


@pytest.mark.parametrize("model", [base.AUTO, harmonic.NAME])
@pytest.mark.parametrize("days", [4, 14], ids=["after four days of history", "after two weeks of history"])
def test_a_single_huge_spike_yesterday_does_not_blow_up_tomorrow(model: str, days: int) -> None:
    clean = noisy(days)
    spiked = clean.copy()
    spiked[-24 + 14] = 100.0 * float(np.max(clean))  # yesterday 14:00, a hundred times the peak
    baseline = expect_forecast(outcome_at_end(history_of(clean), model=model, horizon=24 * HOUR))
    forecast = expect_forecast(outcome_at_end(history_of(spiked), model=model, horizon=24 * HOUR))
    assert_valid(forecast)
    assert float(np.max(forecast.point)) <= 1.25 * float(np.max(baseline.point))
    assert float(np.max(forecast.quantile(0.95))) <= 1.5 * float(np.max(baseline.quantile(0.95)))
    # Tomorrow 14:00 in particular is forecast near its true value, not near the spike.
    assert float(forecast.point[14]) <= 1.5 * float(weekly_shape(forecast.times())[14])


def test_negative_and_infinite_samples_are_ignored_with_a_note() -> None:
    values = noisy(5)
    values[[10, 20, 30]] = [-1.0, np.inf, -np.inf]
    forecast = expect_forecast(outcome_at_end(history_of(values)))
    assert_valid(forecast)
    assert "ignored 3 infinite or negative samples" in forecast.notes


# --- Seasonality --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "days",
    [
        pytest.param(21, id="three weeks of history forecast a Monday and Tuesday"),
        pytest.param(19, id="nineteen days of history forecast the weekend dip"),
        pytest.param(18, id="eighteen days of history forecast a Friday into the weekend"),
    ],
)
def test_the_harmonic_model_tracks_daily_and_weekly_shape(days: int) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(noisy(days)), model=harmonic.NAME,
                                              horizon=48 * HOUR))
    truth = weekly_shape(forecast.times())
    assert forecast.model == harmonic.NAME
    # Forecasting the mean level would score 45-90% here; a seasonal model ~2%.
    assert mape(forecast) < 0.08
    assert float(np.corrcoef(forecast.point, truth)[0, 1]) > 0.98


@pytest.mark.parametrize(
    ("timezone", "expected_local_hour"),
    [
        pytest.param("America/Chicago", 9, id="in the demand's own time zone the 09:00 peak stays at 09:00 after DST"),
        pytest.param("UTC", 10, id="read in UTC the peak is an hour late after Chicago springs forward"),
    ],
)
def test_the_daily_cycle_follows_the_configured_wall_clock_across_dst(timezone: str, expected_local_hour: int) -> None:
    chicago = zoneinfo.ZoneInfo("America/Chicago")
    start = int(dt.datetime(2024, 2, 26, tzinfo=dt.timezone.utc).timestamp())  # DST starts 2024-03-10
    times = grid(21 * 24, start=start)
    local_hours = np.array([dt.datetime.fromtimestamp(int(moment), chicago).hour for moment in times])
    values = 10.0 + 90.0 * np.exp(-0.5 * ((local_hours - 9) / 1.5) ** 2)
    forecast = expect_forecast(outcome_at_end(history_of(values, start=start), model=harmonic.NAME,
                                              horizon=24 * HOUR, timezone=timezone))
    peak = int(forecast.times()[int(np.argmax(forecast.point))])
    assert dt.datetime.fromtimestamp(peak, chicago).hour == expected_local_hour


# --- Quantiles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ALL_MODELS)
def test_quantiles_are_ordered_and_non_negative(model: str) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(noisy(21)), model=model, horizon=12 * HOUR))
    assert_valid(forecast)
    levels = sorted(forecast.quantiles)
    assert levels == list(base.LEVELS)
    for lower, upper in zip(levels, levels[1:]):
        assert np.all(forecast.quantiles[upper] >= forecast.quantiles[lower] - 1e-9), (lower, upper)
    assert np.all(forecast.quantile(0.95) >= forecast.quantile(0.8) - 1e-9)
    assert np.all(forecast.quantile(0.8) >= forecast.point - 1e-9)
    # On noisy data the band has some width.
    assert float(np.min(forecast.quantile(0.95) - forecast.point)) > 0.0


def test_a_spec_quantile_is_carried_between_its_neighbours() -> None:
    forecast = expect_forecast(outcome_at_end(history_of(noisy(10)), extra_level=0.85))
    assert 0.85 in forecast.quantiles
    assert np.all(forecast.quantiles[0.8] <= forecast.quantiles[0.85] + 1e-9)
    assert np.all(forecast.quantiles[0.85] <= forecast.quantiles[0.9] + 1e-9)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        pytest.param(0.5, 10.0, id="a carried level is returned as is"),
        pytest.param(0.7, 15.0, id="a level halfway between two carried levels is interpolated halfway"),
        pytest.param(0.6, 12.5, id="a level a quarter of the way is interpolated a quarter of the way"),
        pytest.param(0.3, 10.0, id="a level below the lowest carried is the lowest"),
        pytest.param(0.999, 20.0, id="a level above the highest carried is the highest"),
    ],
)
def test_quantile_interpolates_between_carried_levels(level: float, expected: float) -> None:
    forecast = base.Forecast("harmonic", 0, HOUR, np.array([10.0]),
                                    {0.5: np.array([10.0]), 0.9: np.array([20.0])})
    np.testing.assert_allclose(forecast.quantile(level), [expected])


@pytest.mark.parametrize(
    ("begin", "end", "expected"),
    [
        pytest.param(0, 900, (40.0, 600), id="whole intervals: the highest value and when it starts"),
        pytest.param(0, 660, (24.0, 600), id="an interval cut to a fifth counts a fifth of the way up from the one before"),
        pytest.param(300, 600, (20.0, 300), id="a window of one whole interval is that interval"),
        pytest.param(900, 1200, None, id="a window after the forecast has no peak"),
    ],
)
def test_peak_counts_a_cut_interval_in_proportion(begin: int, end: int, expected: tuple[float, int] | None) -> None:
    values = np.array([10.0, 20.0, 40.0])
    forecast = base.Forecast("harmonic", 0, 300, values, {0.5: values})
    assert forecast.peak(values, begin, end) == expected


# --- Model choice and each model ----------------------------------------------------------------------


def test_auto_chooses_a_candidate_and_chooses_it_the_same_way_every_time() -> None:
    history = history_of(noisy(16, seed=7))
    first = expect_forecast(outcome_at_end(history, model=base.AUTO))
    second = expect_forecast(outcome_at_end(history, model=base.AUTO))
    assert first.model in choice.AUTO_CANDIDATES
    assert second.model == first.model
    np.testing.assert_array_equal(first.point, second.point)
    for level in first.quantiles:
        np.testing.assert_array_equal(first.quantiles[level], second.quantiles[level])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(np.tile(np.random.default_rng(1).uniform(5.0, 50.0, 24), 10), seasonal_naive.NAME,
                     id="an irregular daily profile repeated exactly is best forecast by the day before"),
        pytest.param(noisy(21), harmonic.NAME, id="a smooth shape under noise is best forecast by the harmonic fit"),
    ],
)
def test_auto_chooses_the_model_that_fits_the_series(values: series.FloatArray, expected: str) -> None:
    forecast = expect_forecast(outcome_at_end(history_of(values), model=base.AUTO))
    assert forecast.model == expected


@pytest.mark.parametrize("model", MODELS)
def test_each_explicit_model_forecasts_the_horizon_from_now(model: str) -> None:
    history = history_of(noisy(15))
    forecast = expect_forecast(outcome_at_end(history, model=model))
    assert forecast.model == model
    assert (forecast.start, forecast.step) == (history.end, HOUR)
    assert forecast.point.shape == (6,)
    assert_valid(forecast)
    assert forecast.error is not None and 0.0 < forecast.error < 5.0
    # Loose: each model must at least be in the right range for the next six hours.
    assert mape(forecast) < 0.5


def test_without_validation_the_forecast_error_is_unknown() -> None:
    forecast = expect_forecast(outcome_at_end(history_of(noisy(10)), model=harmonic.NAME, validate=False))
    assert forecast.error is None


def test_a_now_between_grid_points_forecasts_from_the_next_grid_point() -> None:
    history = history_of(noisy(10))
    outcome, _ = choice.forecast(history, history.end - HOUR + 600, settings())
    forecast = expect_forecast(outcome)
    assert forecast.start == history.end


# --- Never peeks past now; state reuse ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize(
    "future",
    [
        pytest.param(lambda values: values * 100.0, id="a hundredfold surge after now"),
        pytest.param(lambda values: np.zeros_like(values), id="zeros after now"),
        pytest.param(lambda values: np.full_like(values, np.nan), id="a gap after now"),
    ],
)
def test_samples_after_now_do_not_change_the_forecast(
    model: str, future: Callable[[series.FloatArray], series.FloatArray]
) -> None:
    values = noisy(18)
    now = MONDAY + 16 * DAY
    cut = (now - MONDAY) // HOUR
    altered = values.copy()
    altered[cut:] = future(values[cut:])
    reference, _ = choice.forecast(history_of(values), now, settings(model=model))
    changed, _ = choice.forecast(history_of(altered), now, settings(model=model))
    reference, changed = expect_forecast(reference), expect_forecast(changed)
    assert changed.model == reference.model
    np.testing.assert_array_equal(changed.point, reference.point)
    for level in reference.quantiles:
        np.testing.assert_array_equal(changed.quantiles[level], reference.quantiles[level])


@pytest.mark.parametrize("model", ALL_MODELS)
def test_a_reused_state_does_not_read_samples_after_now_either(model: str) -> None:
    values = noisy(18)
    fitted_at = MONDAY + 15 * DAY
    now = fitted_at + 3 * HOUR
    cut = (now - MONDAY) // HOUR
    altered = values.copy()
    altered[cut:] *= 50.0
    chosen = settings(model=model)
    _, state = choice.forecast(history_of(values), fitted_at, chosen)
    reference, _ = choice.forecast(history_of(values), now, chosen, state)
    changed, _ = choice.forecast(history_of(altered), now, chosen, state)
    np.testing.assert_array_equal(expect_forecast(changed).point, expect_forecast(reference).point)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_a_reused_state_agrees_with_a_fresh_fit(model: str) -> None:
    history = history_of(noisy(20))
    chosen = settings(model=model, refit_every=6 * HOUR)
    fitted_at = MONDAY + 18 * DAY
    _, state = choice.forecast(history, fitted_at, chosen)
    assert isinstance(state, choice.State) and state.fitted.fitted_until == fitted_at

    reused, kept = choice.forecast(history, fitted_at + 3 * HOUR, chosen, state)
    fresh, _ = choice.forecast(history, fitted_at + 3 * HOUR, chosen)
    assert kept is state, "three hours into a six hour refit period the state is reused, not refitted"
    reused, fresh = expect_forecast(reused), expect_forecast(fresh)
    assert_valid(reused)
    assert reused.start == fresh.start == fitted_at + 3 * HOUR
    np.testing.assert_allclose(reused.point, fresh.point, rtol=0.05)
    np.testing.assert_allclose(reused.quantile(0.95), fresh.quantile(0.95), rtol=0.05)

    _, refitted = choice.forecast(history, fitted_at + 6 * HOUR, chosen, state)
    assert refitted is not None and refitted.fitted.fitted_until == fitted_at + 6 * HOUR


@pytest.mark.parametrize(
    ("state_settings", "fitted_ago", "now_settings", "expected"),
    [
        pytest.param(None, 0, settings(), True, id="with no state a fit is due"),
        pytest.param(settings(), 5 * HOUR, settings(), False, id="five hours after a fit no refit is due"),
        pytest.param(settings(), 6 * HOUR, settings(), True, id="refit_every after a fit a refit is due"),
        pytest.param(settings(), HOUR, settings(model=harmonic.NAME), True,
                     id="changed settings make a refit due at once"),
    ],
)
def test_needs_refit(state_settings: base.Settings | None, fitted_ago: int,
                     now_settings: base.Settings, expected: bool) -> None:
    now = MONDAY + 10 * DAY
    state = None
    if state_settings is not None:
        fitted = choice.fit(history_of(noisy(10 - fitted_ago / DAY)), state_settings)
        assert isinstance(fitted, choice.State)
        state = fitted
        assert state.fitted.fitted_until == now - fitted_ago
    assert choice.needs_refit(state, now_settings, now) is expected


# --- Known weakness: an unobserved weekday ---------------------------------------------------------------


def test_a_weekday_missing_from_history_is_not_forecast_as_almost_no_demand() -> None:
    # Eight days of history from a Monday: the only Tuesday (day 1) is a gap, and tomorrow is a Tuesday.
    values = noisy(8)
    values[24:48] = np.nan
    outcome = outcome_at_end(history_of(values), model=harmonic.NAME, horizon=24 * HOUR)
    # Either an honest NoForecast, or a forecast in the range of the other weekdays; never ~0.
    if isinstance(outcome, base.Forecast):
        truth = weekly_shape(outcome.times())
        assert float(np.mean(outcome.point)) >= 0.5 * float(np.mean(truth)), (
            f"forecast mean {np.mean(outcome.point):.1f} against a true mean of {np.mean(truth):.1f}"
        )


# --- The registry and invariants of every model ----------------------------------------------------------


def test_the_registry_is_the_crd_enum_less_auto() -> None:
    assert set(choice.MODELS) == {model.value for model in clinicalslo.ForecastModel} - {base.AUTO}
    assert set(choice.AUTO_CANDIDATES) <= set(choice.MODELS)
    assert choice.AUTO_CANDIDATES[0] == harmonic.NAME, "the default incumbent is the harmonic model"


def test_an_unknown_model_is_no_forecast_with_the_known_ones() -> None:
    outcome = outcome_at_end(history_of(noisy(5)), model="prophet")
    assert isinstance(outcome, base.NoForecast) and outcome.code == "FitFailed"
    assert "unknown model 'prophet'" in outcome.reason and mstl.NAME in outcome.reason


@hypothesis_settings(max_examples=6, deadline=None)
@given(factor=st.floats(0.001, 1000.0), seed=st.integers(0, 100))
@pytest.mark.parametrize("model", ALL_MODELS)
def test_scaling_demand_scales_the_forecast_and_nothing_else(model: str, factor: float, seed: int) -> None:
    values = noisy(9, seed=seed)
    reference = expect_forecast(outcome_at_end(history_of(values), model=model))
    scaled = expect_forecast(outcome_at_end(history_of(values * factor), model=model))
    assert scaled.model == reference.model
    # Holt-Winters' smoothing parameters come from a numerical optimiser, exact only to its tolerance.
    rtol = 1e-4 if model == holt_winters.NAME else 1e-6
    np.testing.assert_allclose(scaled.point, reference.point * factor, rtol=rtol)
    np.testing.assert_allclose(scaled.quantile(0.95), reference.quantile(0.95) * factor, rtol=rtol)


def _validation(loss: float, blocks: list[float]) -> choice.Validation:
    return choice.Validation(loss, loss, 1.0, np.asarray(blocks, dtype=np.float64))


@pytest.mark.parametrize(
    ("challenger", "incumbent", "expected"),
    [
        pytest.param(_validation(0.8, [0.8, 0.7, 0.9, 0.8, 0.8, 0.7]), _validation(1.0, [1.0, 0.9, 1.1, 1.0, 1.0, 0.9]),
                     True, id="lower in every block by the same margin is clearly better"),
        pytest.param(_validation(0.8, [0.2, 1.6, 0.1, 1.5, 0.3, 1.1]), _validation(1.0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
                     False, id="lower on average but up and down from block to block is luck"),
        pytest.param(_validation(0.8, [0.8, 0.8]), _validation(1.0, [1.0, 1.0]), True,
                     id="with fewer than three blocks the lower loss decides"),
        pytest.param(_validation(0.8, [0.8, 0.8, np.nan, 0.8]), _validation(1.0, [1.0, 1.0, 1.0, 1.0]), True,
                     id="a block of gaps is left out and a constant improvement is clearly better"),
        pytest.param(_validation(1.2, [1.2, 1.2, 1.2]), _validation(1.0, [1.0, 1.0, 1.0]), False,
                     id="a constant worsening is never better"),
    ],
)
def test_a_challenger_replaces_the_incumbent_only_when_clearly_better(
    challenger: choice.Validation, incumbent: choice.Validation, expected: bool
) -> None:
    assert choice.clearly_better(challenger, incumbent) is expected


STEADY = [1.0, 0.9, 1.1, 1.0, 1.0, 0.9]


def _scaled(loss: float, noise: list[float] | None = None) -> choice.Validation:
    blocks = [loss * value for value in (noise or STEADY)]
    return _validation(loss, blocks)


@pytest.mark.parametrize(
    ("results", "incumbent", "expected"),
    [
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _scaled(0.7)}, None, "seasonal-naive",
                     id="a challenger 30% better in every block replaces the default"),
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _validation(0.7, [0.1, 1.5, 0.1, 1.4, 0.2, 0.9])},
                     None, "harmonic", id="a challenger 30% better on a lucky block or two stays out"),
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _scaled(0.95)}, None, "harmonic",
                     id="a challenger 5% better stays out"),
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _scaled(0.8), "mstl": _scaled(0.75)},
                     "seasonal-naive", "seasonal-naive", id="the eligible model in use keeps its place against one 6% better"),
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _scaled(0.8), "mstl": _scaled(0.6)},
                     "seasonal-naive", "mstl", id="the model in use gives way to one 25% better"),
        pytest.param({"harmonic": _scaled(1.0), "seasonal-naive": _scaled(0.95), "mstl": _scaled(0.97)},
                     "seasonal-naive", "harmonic", id="the model in use returns to the default once no longer eligible"),
        pytest.param({"harmonic": choice.FAILED, "seasonal-naive": _scaled(2.0)}, None, "seasonal-naive",
                     id="a default that failed is replaced by any candidate that did not"),
    ],
)
def test_auto_keeps_the_default_unless_another_is_clearly_better(
    results: dict[str, choice.Validation], incumbent: str | None, expected: str
) -> None:
    assert choice.choose(results, incumbent) == expected


@pytest.mark.parametrize(
    ("days", "candidates"),
    [
        pytest.param(20, {harmonic.NAME, seasonal_naive.NAME},
                     id="below three weeks auto leaves mstl out (it would have no weekly cycle)"),
        pytest.param(22, {harmonic.NAME, seasonal_naive.NAME, mstl.NAME}, id="from three weeks auto validates mstl too"),
    ],
)
def test_auto_considers_mstl_from_three_weeks_of_history(days: int, candidates: set[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    validated: list[str] = []
    real = choice.validate

    def recording(name: str, *arguments: object) -> choice.Validation:
        validated.append(name)
        return real(name, *arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(choice, "validate", recording)
    history = history_of(noisy(days))
    choice.forecast(history, history.end, settings(history=30 * DAY))
    assert set(validated) == candidates
