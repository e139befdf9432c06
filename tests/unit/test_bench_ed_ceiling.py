"""bench/ed_ceiling.py's hindsight rates: the hour-of-week mean and the same-day level, from the whole trace."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from healthscale.backtest import policies
from healthscale.domain import planning, series

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module() -> ModuleType:
    # The script imports its siblings ``run`` and ``generalise`` as bench scripts do (their folder is first on sys.path).
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "bench"))
        spec = importlib.util.spec_from_file_location("healthscale_bench_ed_ceiling", REPO_ROOT / "bench" / "ed_ceiling.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


ceiling = _bench_module()

MONDAY = int(dt.datetime(2013, 7, 1, tzinfo=dt.timezone.utc).timestamp())
"""2013-07-01T00:00, a Monday, where the ED trace starts."""


def _hours(count: int, start: int = MONDAY) -> series.IntArray:
    return start + 3600 * np.arange(count, dtype=np.int64)


@pytest.mark.parametrize(("moment", "expected"), [
    pytest.param(MONDAY, 0, id="Monday midnight is hour 0 of the week"),
    pytest.param(MONDAY + 13 * 3600, 13, id="Monday 13:00 is hour 13"),
    pytest.param(MONDAY + 6 * series.DAY + 23 * 3600, 167, id="Sunday 23:00 is the last hour of the week"),
    pytest.param(MONDAY + series.WEEK + 25 * 3600, 25, id="the next week's Tuesday 01:00 is hour 25 again"),
])
def test_hour_of_week(moment: int, expected: int) -> None:
    assert int(ceiling.hour_of_week(np.array([moment], dtype=np.int64))[0]) == expected


def test_hour_of_week_mean_averages_the_same_hour_over_weeks_and_skips_missing_intervals() -> None:
    times = _hours(3 * 168)
    values = np.concatenate([np.full(168, 2.0), np.full(168, 4.0), np.full(168, 9.0)])
    values[2 * 168 + 5] = math.nan  # week 3's Monday 05:00 is missing: its slot averages weeks 1 and 2
    rates = ceiling.hindsight_rates(times, values)["how"]
    assert rates[5] == pytest.approx(3.0)
    assert rates[6] == pytest.approx(5.0)
    assert rates[2 * 168 + 5] == pytest.approx(3.0), "a missing interval still gets its slot's mean"


def test_same_day_level_scales_the_weekly_shape_to_each_days_arrivals() -> None:
    times = _hours(2 * 168)
    shape = np.tile(np.r_[np.ones(12), 3 * np.ones(12)], 14)
    values = shape * np.repeat(np.arange(1, 15, dtype=float), 24)  # day d has level d times the shape
    rates = ceiling.hindsight_rates(times, values)["day"]
    np.testing.assert_allclose(rates, values)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 30).map(float), st.just(math.nan)), min_size=24, max_size=24 * 10))
def test_same_day_rates_sum_to_each_days_observed_arrivals(draws: list[float]) -> None:
    values = np.array(draws)
    times = _hours(values.size, MONDAY + 7 * 3600)  # days cut mid-trace
    rates = ceiling.hindsight_rates(times, values)
    observed = ~np.isnan(values)
    day = times // series.DAY
    for label in np.unique(day[observed]):
        mask = (day == label) & observed
        if rates["how"][mask].sum() > 0:
            assert rates["day"][mask].sum() == pytest.approx(values[mask].sum())
    assert np.all(np.isfinite(rates["day"])) and np.all(rates["day"] >= 0)


POLICY = planning.Policy(per_replica=2.0, min_replicas=1, max_replicas=60, startup_seconds=300, headroom=0.1,
                         quantile=0.8, stabilization_seconds=600, max_step_fraction=0.25, cycle_seconds=3600)


@pytest.mark.parametrize(("rate", "position", "expected"), [
    pytest.param([4.0, 4.0, 4.0], 0, 3, id="p80 of Poisson(4) is 6 arrivals: 3 replicas of 2"),
    pytest.param([4.0, 40.0, 40.0], 0, 5,
                 id="the next hour's rise counts for the startup's share: 6 + 300/3600 x (45 - 6) arrivals, 5 replicas"),
    pytest.param([0.0, 0.0, 0.0], 0, 1, id="no arrivals expected still keeps minReplicas"),
    pytest.param([4.0, 4.0, 9.0], 2, 6, id="at the trace's end the last rate is held"),
])
def test_pure_hindsight_provisions_the_poisson_quantile_over_the_lookahead(rate: list[float], position: int,
                                                                         expected: int) -> None:
    history = series.Series(MONDAY, 3600, np.zeros(len(rate)))
    policy = ceiling.Hindsight(POLICY, np.array(rate), 0.8, through_planner=False)
    choice = policy.decide(policies.Context(MONDAY + position * 3600, position, history, 1))
    assert choice.replicas == expected
