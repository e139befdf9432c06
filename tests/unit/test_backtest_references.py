"""The backtest's yardsticks for issue 15: the three-line heuristic (decisions worked out by hand), the
same-replica-hours search, time-weighted startup at an hourly step, quantile calibration on series whose breach
share is known, and rolling time splits whose choice never sees what they score.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import statistics
from typing import Any

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies

from healthscale.api import clinicalslo, manifests
from healthscale.backtest import calibration, generalisation, policies, references, replay, report, splits, trace
from healthscale.domain import planning, series

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00, read as UTC like every trace timestamp."""

POLICY = planning.Policy(per_replica=10.0, min_replicas=1, max_replicas=100, startup_seconds=300, headroom=0.1,
                         quantile=0.8, stabilization_seconds=600, max_step_fraction=0.25, cycle_seconds=HOUR)
NOW = 7 * 24 + 5
"""The interval decided in the heuristic's table: a week and five hours into an hourly trace."""


# --- The three-line heuristic ------------------------------------------------------------------------------------


def _context(known: dict[int, float], current: int = 4) -> policies.Context:
    values = np.full(NOW + 3, np.nan)
    for index, value in known.items():
        values[index] = value
    values[NOW:] = 1e6  # the interval decided and after it: never to be read
    return policies.Context(MONDAY + NOW * HOUR, NOW, series.Series(MONDAY, HOUR, values), current)


@pytest.mark.parametrize(
    ("known", "replicas", "reason"),
    [
        pytest.param({NOW - 24: 50, NOW - 168: 80, NOW - 1: 30}, 9, "heuristic",
                     id="last week's 80 is the largest line: 80 x 1.1 / 10 = 8.8, so 9 replicas"),
        pytest.param({NOW - 24: 50, NOW - 1: 30}, 6, "heuristic",
                     id="a missing line is left out: yesterday's 50 x 1.1 / 10 = 5.5, so 6"),
        pytest.param({NOW - 24: 50, NOW - 168: 20, NOW - 3: 70}, 8, "heuristic",
                     id="the last interval seen may be older than the last interval: 70 x 1.1 / 10 = 7.7, so 8"),
        pytest.param({NOW - 24: 30, NOW - 168: 30, NOW - 1: 30}, 4, "heuristic",
                     id="33 rounds up to 4 replicas"),
        pytest.param({NOW - 24: 0.0, NOW - 168: 0.0, NOW - 1: 0.0}, 1, "heuristic",
                     id="no demand on any line still runs minReplicas"),
        pytest.param({NOW - 168: 5000}, 100, "heuristic", id="more than maxReplicas can serve is capped"),
        pytest.param({}, 4, "hold", id="with no line at all the current replicas are held"),
        pytest.param({NOW - 169: 500}, 4, "hold", id="demand seen more than a week ago is no line"),
    ],
)
def test_the_heuristic_provisions_the_largest_of_its_three_lines_with_headroom(
    known: dict[int, float], replicas: int, reason: str
) -> None:
    choice = references.ThreeLineHeuristic(POLICY).decide(_context(known))
    assert (choice.replicas, choice.reason) == (replicas, reason)


@pytest.fixture
def hourly_spec(slo_document: dict[str, Any]) -> clinicalslo.ClinicalSLOSpec:
    """An hourly ClinicalSLO with a 300 s startup: how the held-back hourly traces are judged."""
    slo_document["spec"]["capacity"] = {"perReplica": 10, "minReplicas": 1, "maxReplicas": 100,
                                        "startupSeconds": 300, "headroomPercent": 10}
    slo_document["spec"]["forecast"] = {"history": "4d", "step": "1h", "horizon": "3h", "model": "harmonic"}
    return manifests.parse(clinicalslo.ClinicalSLO, slo_document).spec


def daily_demand(days: int = 6, seed: int = 0) -> series.FloatArray:
    hours = np.arange(days * 24)
    rng = np.random.default_rng(seed)
    result: series.FloatArray = 200.0 * (1.0 + 0.5 * np.sin(2 * np.pi * (hours % 24 - 6) / 24)) \
        * (1.0 + 0.05 * rng.standard_normal(hours.size))
    return result


def synthetic_trace(values: series.FloatArray) -> trace.Trace:
    return trace.Trace(pathlib.Path("synthetic.csv"), series.Series(MONDAY, HOUR, values), int(values.size))


def test_the_replay_runs_the_heuristic_and_its_same_replica_hours_variant(
    hourly_spec: clinicalslo.ClinicalSLOSpec,
) -> None:
    values = daily_demand()
    result = replay.replay(synthetic_trace(values), hourly_spec, None, 3.0)
    names = list(result.runs)
    assert names[:3] == ["healthscale", "reactive HPA", names[2]] and names[2].startswith(replay.MATCHED_HPA_PREFIX)
    assert names[3] == "three-line heuristic" and names[4].startswith(replay.MATCHED_HEURISTIC_PREFIX)
    # Six days of data: no line a week back, so each decision is max(yesterday, last hour) x 1.1 / 10 rounded up.
    positions = np.arange(72, values.size)
    expected = np.ceil(np.round(np.maximum(values[positions - 24], values[positions - 1]) * 1.1 / 10.0, 9))
    np.testing.assert_array_equal(result.runs["three-line heuristic"].desired, expected)
    engine_hours = float(result.runs["healthscale"].ready.sum())
    assert float(result.runs[names[4]].ready.sum()) >= engine_hours
    scores = {score.name: score for score in result.scores()}
    assert names[4] in scores and "three-line heuristic" in report.table(result)


@pytest.mark.parametrize(
    ("threshold", "lowest", "found"),
    [
        pytest.param(37, 0, 37, id="the least headroom that spends enough is found to 1%"),
        pytest.param(250, 0, 250, id="past the first guess the search doubles, then bisects"),
        pytest.param(-40, -90, -40, id="below zero when the lowest allowed is below zero"),
        pytest.param(-95, -90, -89, id="never the lowest itself: one above it"),
        pytest.param(5000, 0, 1600, id="the ceiling when nothing spends enough"),
    ],
)
def test_least_headroom_finds_the_threshold(threshold: int, lowest: int, found: int) -> None:
    assert references.least_headroom(lambda percent: percent >= threshold, lowest) == found


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(threshold=strategies.integers(-200, 2000), lowest=strategies.integers(-90, 50))
def test_least_headroom_is_the_threshold_within_its_bounds_and_was_tried(threshold: int, lowest: int) -> None:
    tried: list[int] = []

    def enough(percent: int) -> bool:
        tried.append(percent)
        return percent >= threshold

    found = references.least_headroom(enough, lowest)
    assert found == min(references.SEARCH_CEILING, max(threshold, lowest + 1))
    assert found in tried and lowest not in tried


# --- Startup, time-weighted at the data's own step ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "startup", "replicas", "interval", "serving"),
    [
        pytest.param(2, 300, 5, (0, HOUR), 2 + 3 * 3300 / 3600,
                     id="three replicas starting 300s into an hour serve 3300/3600 of it each"),
        pytest.param(2, 300, 5, (HOUR, 2 * HOUR), 5.0, id="and all of the next hour"),
        pytest.param(2, 5400, 4, (0, HOUR), 2.0, id="a startup longer than the hour serves none of it"),
        pytest.param(2, 5400, 4, (HOUR, 2 * HOUR), 3.0, id="and half of the next hour: 2 + 2 x 1800/3600"),
    ],
)
def test_startup_counts_time_weighted_within_an_hourly_interval(initial: int, startup: int, replicas: int,
                                                                interval: tuple[int, int], serving: float) -> None:
    capacity = policies.Capacity(initial, startup)
    capacity.request(0, replicas)
    if interval[0] > 0:
        capacity.serving(0, interval[0])
    assert capacity.serving(*interval) == pytest.approx(serving)


def test_an_hourly_replay_scores_scale_ups_for_the_share_of_the_hour_after_startup(
    hourly_spec: clinicalslo.ClinicalSLOSpec,
) -> None:
    values = daily_demand()
    result = replay.replay(synthetic_trace(values), hourly_spec, None, 3.0, with_references=False)
    run = replay.rerun(result, references.ThreeLineHeuristic(result.policy))
    before, after = run.desired[:-1].astype(float), run.desired[1:].astype(float)
    # A scale-down serves at once; a scale-up's new replicas serve 3300 of the 3600 seconds.
    expected = np.minimum(before, after) + np.maximum(0.0, after - before) * 3300 / 3600
    np.testing.assert_allclose(run.ready[1:], expected)
    assert np.any(after > before) and np.any(after < before)
    # Against instant replicas, the 300s startup costs exactly 300/3600 of each added replica's first hour.
    instant = dataclasses.replace(result, policy=dataclasses.replace(result.policy, startup_seconds=0))
    at_once = replay.rerun(instant, references.ThreeLineHeuristic(result.policy))
    np.testing.assert_array_equal(at_once.desired, run.desired)
    assert float(at_once.ready[1:].sum() - run.ready[1:].sum()) == \
        pytest.approx(float(np.maximum(0.0, after - before).sum()) * 300 / 3600)


# --- Quantile calibration ------------------------------------------------------------------------------------


def test_calibration_counts_strict_breaches_over_intervals_with_a_forecast() -> None:
    demand = np.array([11.0, 12.0, 10.0, 9.0, 8.0, np.nan, 15.0])
    quantile = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, np.nan])
    result = calibration.calibration(demand, quantile, 0.8)
    assert (result.intervals, result.breaches) == (5, 2)  # 10 on a quantile of 10 is no breach
    assert (result.breach_percent, result.nominal_percent) == (pytest.approx(40.0), pytest.approx(20.0))
    assert result.describe() == "demand above the p80 forecast in 40.0% of 5 intervals (nominal 20%)"


@pytest.mark.parametrize("level", [0.8, 0.95], ids=["p80 is breached a fifth of the time", "p95 one time in twenty"])
def test_a_calibrated_quantile_is_breached_at_its_nominal_share(level: float) -> None:
    rng = np.random.default_rng(7)
    demand = 100.0 + 10.0 * rng.standard_normal(200_000)
    quantile = np.full(demand.shape, 100.0 + 10.0 * statistics.NormalDist().inv_cdf(level))
    result = calibration.calibration(demand, quantile, level)
    assert result.breach_percent == pytest.approx(result.nominal_percent, abs=0.3)
    too_narrow = calibration.calibration(demand, quantile - 5.0, level)
    assert too_narrow.breach_percent > result.nominal_percent + 5.0


def test_calibration_without_forecasts_says_so_and_mismatched_lengths_are_refused() -> None:
    empty = calibration.calibration(np.array([1.0, 2.0]), np.array([np.nan, np.nan]), 0.95)
    assert empty.intervals == 0 and math.isnan(empty.breach_percent)
    assert empty.describe() == "no interval had a p95 forecast"
    with pytest.raises(ValueError, match="demand has 2 intervals but the quantile 1"):
        calibration.calibration(np.array([1.0, 2.0]), np.array([1.0]), 0.95)


def test_the_replay_exposes_the_engines_forecast_quantile_for_each_interval(
    hourly_spec: clinicalslo.ClinicalSLOSpec,
) -> None:
    result = replay.replay(synthetic_trace(daily_demand()), hourly_spec, None, 3.0, with_references=False)
    quantile = result.forecast_quantile()
    choices = result.runs["healthscale"].choices
    np.testing.assert_array_equal(quantile, [choice.forecast_upper for choice in choices])
    assert np.all(quantile[~np.isnan(quantile)] >= np.array([choice.forecast for choice in choices])[~np.isnan(quantile)])
    measured = report.calibration(result)
    assert (measured.level, measured.intervals) == (result.policy.quantile, int(np.count_nonzero(~np.isnan(quantile))))
    assert measured.intervals > 0


# --- Rolling time splits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "step", "count", "unit"),
    [
        pytest.param(MONDAY, HOUR, 3 * 365 * 24, "month", id="three years hourly are cut into months"),
        pytest.param(MONDAY, 1800, 10 * 7 * 48, "week", id="ten weeks are cut into weeks"),
        pytest.param(MONDAY, 60, 14 * 1440, "day", id="two weeks are cut into days"),
    ],
)
def test_the_period_is_the_longest_that_gives_four(start: int, step: int, count: int, unit: str) -> None:
    assert splits.unit_for(start + step * np.arange(count, dtype=np.int64)) == unit


def test_periods_are_named_by_their_first_day() -> None:
    moment = np.array([MONDAY + 2 * DAY + 5 * HOUR], dtype=np.int64)  # Wednesday 2024-01-03 05:00
    assert [splits.name(int(splits.labels(moment, unit)[0]), unit) for unit in splits.UNITS] == \
        ["2024-01", "week of 2024-01-01", "2024-01-03"]
    with pytest.raises(ValueError, match="unknown period unit 'year'"):
        splits.labels(moment, "year")


@strategies.composite
def _times(draw: strategies.DrawFn) -> series.IntArray:
    step = draw(strategies.sampled_from([60, 300, 1800, HOUR, DAY]))
    start = draw(strategies.integers(946684800, 1893456000)) // step * step
    gaps = draw(strategies.lists(strategies.integers(1, 2000), min_size=1, max_size=200))
    return start + step * np.cumsum([0, *gaps]).astype(np.int64)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(times=_times(), unit=strategies.sampled_from(splits.UNITS),
                  window=strategies.none() | strategies.integers(1, 4),
                  max_splits=strategies.none() | strategies.integers(1, 6))
def test_no_split_chooses_on_an_interval_it_scores_or_after_it(
    times: series.IntArray, unit: str, window: int | None, max_splits: int | None
) -> None:
    labels = splits.labels(times, unit)
    made = splits.rolling(times, unit, window, max_splits)
    distinct = np.unique(labels).size
    assert len(made) == (distinct - 1 if max_splits is None else min(distinct - 1, max_splits))
    scored_first = [int(times[split.score].min()) for split in made]
    assert scored_first == sorted(set(scored_first)), "each split scores a later period than the one before"
    for split in made:
        assert split.choose.any() and split.score.any()
        assert not np.any(split.choose & split.score)
        assert times[split.choose].max() < times[split.score].min()
        assert np.unique(labels[split.score]).size == 1
        if window is None:
            np.testing.assert_array_equal(split.choose, times < times[split.score].min())
        else:
            assert np.unique(labels[split.choose]).size <= window
    if made:
        assert made[-1].score[-1], "the last period is always scored"


def test_a_split_needs_at_least_one_period_to_choose_on() -> None:
    with pytest.raises(ValueError, match="at least one earlier period, got window 0"):
        splits.rolling(np.arange(10, dtype=np.int64) * DAY, "day", window=0)


# --- Choosing on earlier periods ---------------------------------------------------------------------------------

DAYS = 4
DEMAND = np.full(DAYS * 24, 10.0)
"""Ten units an hour for four days, one replica's worth (perReplica 10)."""


def _by_day(*readies: float) -> series.FloatArray:
    return np.repeat(np.asarray(readies, dtype=np.float64), 24)


def _constant(ready: float) -> generalisation.Reference:
    """A reference that no headroom improves: easy to work out by hand."""
    return generalisation.Reference(lambda _: np.full(DEMAND.shape, ready), 0)


def _evaluate(early: series.FloatArray, late: series.FloatArray) -> generalisation.Outcome:
    times = MONDAY + HOUR * np.arange(DEMAND.size, dtype=np.int64)
    candidates = [generalisation.Candidate("early", early, np.full(DEMAND.shape, 10.0)),
                  generalisation.Candidate("late", late, np.full(DEMAND.shape, 9.0))]
    return generalisation.evaluate(DEMAND, np.ones(DEMAND.shape), 10.0, 0.8, candidates, _constant(0.5),
                                   _constant(0.8), splits.rolling(times, "day"), "day")


def test_each_split_keeps_the_model_that_did_best_before_it_even_when_it_then_fails() -> None:
    # "early" serves day 0 and nothing after; "late" serves half of day 0 and all of every later day.
    outcome = _evaluate(_by_day(1.0, 0.0, 0.0, 0.0), _by_day(0.5, 1.0, 1.0, 1.0))
    assert [split.chosen for split in outcome.splits] == ["early", "late", "late"]
    assert outcome.chosen() == {"early": 1, "late": 2}
    assert [split.period for split in outcome.splits] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    # Scored: day 1 on "early" (all 240 unmet), days 2 and 3 on "late" (none): 240 of 720.
    assert outcome.unmet_percent == pytest.approx(100.0 / 3.0)
    assert outcome.hpa_unmet_percent == pytest.approx(50.0)  # half a replica: half of every hour unmet
    assert outcome.heuristic_unmet_percent == pytest.approx(20.0)
    assert outcome.versus_hpa == pytest.approx(2.0 / 3.0)
    assert outcome.versus_heuristic == pytest.approx(5.0 / 3.0)
    assert outcome.default_versus_hpa == pytest.approx(2.0)  # "early" kept throughout: all unmet
    assert outcome.relative_replica_hours == pytest.approx(48.0 / 72.0)
    assert [split.versus_hpa for split in outcome.splits] == [pytest.approx(2.0), 0.0, 0.0]
    # Demand 10 never exceeds "early"'s quantile of 10, and always exceeds "late"'s 9.
    assert (outcome.calibration.intervals, outcome.calibration.breaches) == (72, 48)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(
    early=strategies.lists(strategies.floats(0.0, 2.0), min_size=DAYS, max_size=DAYS),
    late=strategies.lists(strategies.floats(0.0, 2.0), min_size=DAYS, max_size=DAYS),
    changed=strategies.lists(strategies.floats(0.0, 2.0), min_size=2 * DAYS, max_size=2 * DAYS),
    cut=strategies.integers(1, DAYS - 1),
)
def test_a_choice_never_depends_on_the_period_it_scores_or_later(
    early: list[float], late: list[float], changed: list[float], cut: int
) -> None:
    original = _evaluate(_by_day(*early), _by_day(*late))
    altered = _evaluate(_by_day(*early[:cut], *changed[cut:DAYS]), _by_day(*late[:cut], *changed[DAYS + cut:]))
    # Split k scores day k + 1 and chooses on days up to k: the choices up to the cut day are the same.
    assert [split.chosen for split in altered.splits][:cut] == [split.chosen for split in original.splits][:cut]
