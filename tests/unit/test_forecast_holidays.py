"""Public holidays: the dates come from the holidays package as local days; a bad country or
subdivision is refused at parse time naming the field; the spec's holidays reach the forecaster
and the backtest; and on a synthetic series with a known holiday effect the forecast for a
holiday is closer to the truth with holidays on than off (``Learned`` closer still once a holiday
has been seen).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from healthscale.api import clinicalslo, manifests
from healthscale.backtest import replay
from healthscale.domain import planning, series
from healthscale.domain.forecast import base, choice, harmonic, holidays, mstl, seasonal_naive

HOUR = 3600
DAY = 86400
CHRISTMAS = int(dt.datetime(2024, 12, 25, tzinfo=dt.timezone.utc).timestamp())
"""A Wednesday, and a US public holiday."""
THANKSGIVING = dt.date(2024, 11, 28)
US = (holidays.Region("US"),)


def test_us_holidays_are_local_day_numbers_of_the_right_dates() -> None:
    days = holidays.days((holidays.Region("US", "IA"),), 2014, 2014)
    dates = {holidays.date(day) for day in days}
    assert {dt.date(2014, 11, 27), dt.date(2014, 12, 25), dt.date(2014, 7, 4)} <= dates
    assert dt.date(2014, 12, 24) not in dates
    assert list(days) == sorted(days)


def test_several_regions_combine_their_holidays() -> None:
    both = set(holidays.days((holidays.Region("US"), holidays.Region("GB", "ENG")), 2024, 2024))
    assert holidays.date(min(both)) == dt.date(2024, 1, 1)
    assert (dt.date(2024, 12, 26) - dt.date(1970, 1, 1)).days in both, "Boxing Day comes from England"
    assert (dt.date(2024, 7, 4) - dt.date(1970, 1, 1)).days in both, "Independence Day comes from the US"


ZONES = ("UTC", "America/Chicago", "Europe/London", "Asia/Kolkata", "Pacific/Kiritimati", "Pacific/Pago_Pago")


@hypothesis_settings(max_examples=60, deadline=None)
@given(moment=st.integers(min_value=0, max_value=4_000_000_000), zone=st.sampled_from(ZONES))
def test_local_day_is_the_local_date_in_any_time_zone(moment: int, zone: str) -> None:
    times = np.array([moment], dtype=np.int64)
    _, weekday = series.wall_clock(times, zone)
    expected = (dt.datetime.fromtimestamp(moment, zoneinfo.ZoneInfo(zone)).date() - dt.date(1970, 1, 1)).days
    assert int(base.local_day(times, weekday)[0]) == expected


def test_a_holiday_is_a_sunday_on_the_calendar_and_flagged() -> None:
    christmas_day = (dt.date(2024, 12, 25) - dt.date(1970, 1, 1)).days
    calendar = base.Calendar("America/Chicago", (christmas_day,), holidays.SUNDAY)
    # 10:00 in Chicago on Christmas Eve, Christmas Day and Boxing Day.
    times = np.array([CHRISTMAS + 16 * HOUR + offset * DAY for offset in (-1, 0, 1)], dtype=np.int64)
    days = calendar.days(times)
    assert days.weekday.tolist() == [1, base.SUNDAY, 3]
    assert days.holiday.tolist() == [False, True, False]


# --- The spec ---------------------------------------------------------------------------------------------


def slo(forecast: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "healthscale.io/v1alpha1",
        "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage"},
        "spec": {
            "journey": "ED triage",
            "targetRef": {"name": "ed-api"},
            "indicators": {"demand": "sum(rate(http_requests_total[5m]))"},
            "capacity": {"perReplica": 10, "maxReplicas": 8},
            "forecast": forecast,
        },
    }


def test_holidays_default_to_none_and_their_effect_to_learned() -> None:
    spec = manifests.parse(clinicalslo.ClinicalSLO, slo({})).spec
    assert spec.forecast.holidays == ()
    assert spec.forecast.holiday_effect is clinicalslo.HolidayEffect.LEARNED


@pytest.mark.parametrize(
    ("forecast", "path", "rule"),
    [
        pytest.param({"holidays": [{"country": "XX"}]}, "spec.forecast.holidays[0].country",
                     "'XX' is not a country code", id="an unknown country is refused on its country field"),
        pytest.param({"holidays": [{"country": "us"}]}, "spec.forecast.holidays[0].country",
                     "'us' is not a country code", id="a lower-case country code is refused with examples"),
        pytest.param({"holidays": [{"country": "US", "subdivision": "IA"}, {"country": "US", "subdivision": "ENG"}]},
                     "spec.forecast.holidays[1]", "subdivision 'ENG' is not one of US's",
                     id="a subdivision of another country is refused on its list entry"),
        pytest.param({"holidays": [{"subdivision": "IA"}]}, "spec.forecast.holidays[0].country",
                     "required field is missing", id="a subdivision without a country is refused"),
        pytest.param({"holidayEffect": "Saturday"}, "spec.forecast.holidayEffect", "'Learned' or 'Sunday'",
                     id="an unknown holiday effect lists the allowed ones"),
    ],
)
def test_bad_holidays_are_refused_naming_the_field(forecast: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(clinicalslo.ClinicalSLO, slo(forecast))
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    assert problem.startswith(f"{path}: ") and rule in problem, problem


def test_the_effect_values_are_the_ones_the_forecaster_knows() -> None:
    assert tuple(effect.value for effect in clinicalslo.HolidayEffect) == holidays.EFFECTS


def test_the_spec_holidays_reach_the_forecaster_and_the_backtest() -> None:
    spec = manifests.parse(clinicalslo.ClinicalSLO, slo({
        "holidays": [{"country": "US", "subdivision": "IA"}, {"country": "GB"}], "holidayEffect": "Sunday",
    })).spec
    expected = (holidays.Region("US", "IA"), holidays.Region("GB"))
    settings = planning.forecast_settings(spec, planning.Policy.of(spec))
    assert (settings.holidays, settings.holiday_effect) == (expected, holidays.SUNDAY)
    _, replayed = replay.engine_policy(spec, HOUR)
    assert (replayed.holidays, replayed.holiday_effect) == (expected, holidays.SUNDAY)


# --- The effect on a forecast -----------------------------------------------------------------------------


def demand(times: series.IntArray, holiday_level: float, rng: np.random.Generator) -> series.FloatArray:
    """Daily cycle peaking at noon; weekends at 60%; US holidays at ``holiday_level``; 3% noise."""
    seconds = times % DAY
    weekday = ((times // DAY) + 3) % 7
    holiday_days = set(holidays.days(US, 2024, 2025))
    holiday = np.isin(times // DAY, list(holiday_days))
    level = np.where(holiday, holiday_level, np.where(weekday >= 5, 0.6, 1.0))
    daily = 100.0 * (1.0 + 0.6 * np.sin(2.0 * np.pi * (seconds / DAY - 0.25)))
    result: series.FloatArray = daily * level * (1.0 + 0.03 * rng.standard_normal(times.shape[0]))
    return result


def christmas_error(model: str, history_days: int, holiday_level: float, **overrides: Any) -> float:
    """Mean absolute percentage error of the forecast for Christmas Day, made at its midnight."""
    rng = np.random.default_rng(11)
    start = CHRISTMAS - history_days * DAY
    times = start + HOUR * np.arange((history_days + 1) * 24, dtype=np.int64)
    values = demand(times, holiday_level, rng)
    settings = base.Settings(history=history_days * DAY, step=HOUR, horizon=24 * HOUR, model=model, **overrides)
    outcome, _ = choice.forecast(series.Series(start, HOUR, values), CHRISTMAS, settings)
    assert isinstance(outcome, base.Forecast), outcome
    truth = 100.0 * (1.0 + 0.6 * np.sin(2.0 * np.pi * ((outcome.times() % DAY) / DAY - 0.25))) * holiday_level
    return float(np.mean(np.abs(outcome.point - truth) / truth))


@pytest.mark.parametrize("model", [harmonic.NAME, seasonal_naive.NAME, base.AUTO])
def test_a_holiday_like_a_sunday_is_forecast_as_one_with_holidays_on(model: str) -> None:
    off = christmas_error(model, 14, 0.6)
    on = christmas_error(model, 14, 0.6, holidays=US, holiday_effect=holidays.SUNDAY)
    # Off, Christmas is forecast as a Wednesday (two thirds above the truth); on, as a Sunday.
    assert off > 0.4
    assert on < 0.1


@pytest.mark.parametrize("model", [harmonic.NAME, seasonal_naive.NAME])
def test_learned_holidays_move_towards_the_level_seen_on_an_earlier_holiday(model: str) -> None:
    # Thanksgiving is in the 30 days of history; both holidays run at 30% of a weekday.
    off = christmas_error(model, 30, 0.3)
    sunday = christmas_error(model, 30, 0.3, holidays=US, holiday_effect=holidays.SUNDAY)
    learned = christmas_error(model, 30, 0.3, holidays=US, holiday_effect=holidays.LEARNED)
    assert learned < sunday < off


def test_learned_without_a_holiday_in_the_history_is_a_sunday() -> None:
    sunday = christmas_error(harmonic.NAME, 14, 0.6, holidays=US, holiday_effect=holidays.SUNDAY)
    learned = christmas_error(harmonic.NAME, 14, 0.6, holidays=US, holiday_effect=holidays.LEARNED)
    assert learned == pytest.approx(sunday, rel=1e-9)


def test_mstl_learns_a_holiday_offset_from_an_earlier_holiday() -> None:
    off = christmas_error(mstl.NAME, 30, 0.3)
    learned = christmas_error(mstl.NAME, 30, 0.3, holidays=US, holiday_effect=holidays.LEARNED)
    assert learned < off


def test_the_day_after_a_holiday_is_not_forecast_from_the_holiday() -> None:
    # Seasonal-naive with a daily period (less than two weeks): Boxing Day comes from Christmas Eve.
    rng = np.random.default_rng(5)
    start = CHRISTMAS - 9 * DAY
    now = CHRISTMAS + DAY
    times = start + HOUR * np.arange(10 * 24, dtype=np.int64)
    values = demand(times, 0.3, rng)
    settings = base.Settings(history=10 * DAY, step=HOUR, horizon=24 * HOUR, model=seasonal_naive.NAME,
                             holidays=US, holiday_effect=holidays.SUNDAY)
    outcome, _ = choice.forecast(series.Series(start, HOUR, values), now, settings)
    assert isinstance(outcome, base.Forecast)
    christmas_eve = values[(CHRISTMAS - DAY - start) // HOUR:(CHRISTMAS - start) // HOUR]
    # The point is Christmas Eve's value plus the model's median error (small), not Christmas's 30%.
    np.testing.assert_allclose(outcome.point, christmas_eve, rtol=0.05)
