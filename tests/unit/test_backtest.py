"""The backtest: reading trace CSVs (every malformed row named by line and rule), the capacity model, the
replay's no-peeking guarantee on a short synthetic trace, and the comparison scores (the oracle is the
yardstick: no unmet demand, exactly 1x its own replica-hours).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from healthscale.api import clinicalslo, manifests
from healthscale.backtest import policies, replay, trace
from healthscale.domain import planning, series

HOUR = 3600
DAY = 86400
MONDAY = 1704067200
"""2024-01-01T00:00:00, read as UTC like every trace timestamp."""


def write(tmp_path: pathlib.Path, text: str, name: str = "trace.csv") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# --- Loading a good trace ---------------------------------------------------------------------------------


def test_a_good_trace_loads_onto_its_grid_with_gaps_as_nan(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "timestamp,value\n"
                           "2024-01-01T00:00:00,5\n"
                           "2024-01-01T01:00:00,7.5\n"
                           "2024-01-01T03:00:00,0\n"  # 02:00 is a missing row
                           "2024-01-01T04:00:00,nan\n"
                           "2024-01-01T05:00:00,\n"
                           "2024-01-01T06:00:00,NA\n")
    loaded = trace.load(path)
    assert loaded.path == path
    assert loaded.rows == 6
    assert (loaded.step, loaded.series.start) == (HOUR, MONDAY)
    np.testing.assert_array_equal(loaded.series.values, [5.0, 7.5, np.nan, 0.0, np.nan, np.nan, np.nan])
    assert loaded.timestamp(MONDAY + 3 * HOUR).isoformat() == "2024-01-01T03:00:00"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Timestamp , Value\n2024-01-01T00:00,1\n2024-01-01T00:05,2\n2024-01-01T00:10,3\n",
                     id="a header in other case and spacing is accepted"),
        pytest.param("timestamp,value\r\n2024-01-01T00:00,1\r\n2024-01-01T00:05,2\r\n2024-01-01T00:10,3\r\n",
                     id="Windows line endings are accepted"),
        pytest.param("timestamp,value\n2024-01-01T00:00,1\n\n2024-01-01T00:05,2\n , \n2024-01-01T00:10,3\n",
                     id="blank lines are skipped"),
        pytest.param("timestamp,value\n 2024-01-01T00:00:00 , 1 \n2024-01-01T00:05,2\n2024-01-01T00:10,3e0\n",
                     id="spaces around fields and exponent notation are accepted"),
    ],
)
def test_harmless_variations_load(tmp_path: pathlib.Path, text: str) -> None:
    loaded = trace.load(write(tmp_path, text))
    assert loaded.step == 300
    np.testing.assert_array_equal(loaded.series.values, [1.0, 2.0, 3.0])


# --- Malformed traces ----------------------------------------------------------------------------------------

GOOD_ROWS = "2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2\n2024-01-01T02:00:00,3\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("", (": the file is empty; expected a header line 'timestamp,value'",),
                     id="an empty file says it is empty"),
        pytest.param("timestamp,value\n", (": a trace needs at least 3 rows, found 0",),
                     id="a header without rows says how many rows there are"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2\n",
                     (": a trace needs at least 3 rows, found 2",), id="two rows are too few"),
        pytest.param("time,demand\n" + GOOD_ROWS, (":1: header is 'time,demand'; expected 'timestamp,value'",),
                     id="a wrong header names line 1 and the expected header"),
        pytest.param("timestamp,value,unit\n" + GOOD_ROWS, (":1: header is 'timestamp,value,unit'",),
                     id="a header with an extra column names line 1"),
        pytest.param(GOOD_ROWS, (":1: header is '2024-01-01T00:00:00,1'",),
                     id="a missing header names line 1"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2,extra\n2024-01-01T02:00:00,3\n",
                     (":3: expected 2 fields (timestamp,value), found 3",), id="a row with three fields names its line"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2\nyesterday,3\n",
                     (":4: field timestamp: 'yesterday' is not an ISO-8601 time",),
                     id="an unreadable timestamp names its line and field"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,lots\n2024-01-01T02:00:00,3\n",
                     (":3: field value: 'lots' is not a number",), id="a non-numeric value names its line and field"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,-4\n2024-01-01T02:00:00,3\n",
                     (":3: field value: '-4' must be a finite number >= 0",), id="a negative value names its line and rule"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,inf\n2024-01-01T02:00:00,3\n",
                     (":3: field value: 'inf' must be a finite number >= 0",), id="an infinite value names its line and rule"),
        pytest.param("timestamp,value\n2024-01-01T01:00:00,1\n2024-01-01T02:00:00,2\n2024-01-01T00:30:00,3\n",
                     (":4: field timestamp: 2024-01-01T00:30:00 goes back before the previous row (line 3)",
                      "rows must be in increasing time order"),
                     id="a timestamp earlier than the row before names both lines"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2\n2024-01-01T01:00:00,3\n"
                     "2024-01-01T02:00:00,4\n",
                     (":4: field timestamp: 2024-01-01T01:00:00 repeats the previous row (line 3)",),
                     id="a duplicate timestamp names both lines"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,2\n2024-01-01T02:00:00,3\n"
                     "2024-01-01T02:30:00,4\n",
                     (":5: field timestamp: not on the trace's 3600s grid (1800s after the previous row)",),
                     id="a row off the trace's grid names its line and the step"),
        pytest.param("timestamp,value\n2024-01-01T00:00:00,1\n\n\n2024-01-01T03:00:00,x\n2024-01-01T04:00:00,3\n",
                     (":5: field value: 'x' is not a number",), id="blank lines still count towards line numbers"),
    ],
)
def test_a_malformed_trace_names_the_line_and_the_rule(tmp_path: pathlib.Path, text: str,
                                                        fragments: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(trace.TraceError) as raised:
        trace.load(path)
    message = str(raised.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(["2024-01-01T00:00:00", "2024-01-01T01:00:00", "2024-01-01T02:00:00"], id="naive local times"),
        pytest.param(["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"], id="times ending in Z"),
        pytest.param(["2024-01-01T00:00:00+01:00", "2024-01-01T01:00:00+01:00", "2024-01-01T02:00:00+0100"],
                     id="times with an offset keep the wall clock as written"),
        pytest.param(["1704067200", "1704070800", "1704074400.0"], id="epoch seconds are read as UTC"),
        pytest.param(["2024-01-01T00:00:00Z", "1704070800", "2024-01-01T02:00:00"], id="the forms can be mixed"),
    ],
)
def test_a_trace_accepts_iso_times_with_z_or_an_offset_and_epoch_seconds(tmp_path: pathlib.Path,
                                                                         rows: list[str]) -> None:
    path = write(tmp_path, "timestamp,value\n" + "".join(f"{moment},{value}\n" for value, moment in enumerate(rows)))
    loaded = trace.load(path)
    assert loaded.step == 3600
    assert [loaded.timestamp(int(epoch)).isoformat() for epoch in loaded.series.times()] == [
        "2024-01-01T00:00:00", "2024-01-01T01:00:00", "2024-01-01T02:00:00"]


def test_every_bad_row_is_listed_up_to_ten(tmp_path: pathlib.Path) -> None:
    rows = "".join(f"2024-01-01T{hour:02d}:00:00,bad{hour}\n" for hour in range(12))
    path = write(tmp_path, "timestamp,value\n" + rows)
    with pytest.raises(trace.TraceError) as raised:
        trace.load(path)
    message = str(raised.value)
    assert message.startswith("malformed trace:\n")
    for line in range(2, 12):
        assert f"{path}:{line}: field value: 'bad{line - 2}' is not a number" in message
    assert f"{path}:12:" not in message
    assert message.endswith("... and 2 more")


def test_a_missing_file_is_a_trace_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(trace.TraceError, match="cannot read trace"):
        trace.load(path)


# --- The capacity model -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "startup", "requests", "interval", "serving"),
    [
        pytest.param(2, 120, [(0, 5)], (0, 300), 3.8,
                     id="three replicas asked for at 0 with a 120s startup serve 3/5 of the first 300s: 3.8"),
        pytest.param(2, 120, [(0, 5)], (300, 600), 5.0, id="the next interval has all five"),
        pytest.param(2, 0, [(0, 5)], (0, 300), 5.0, id="without startup time a scale-up serves at once"),
        pytest.param(5, 120, [(0, 3)], (0, 300), 3.0, id="a scale-down takes effect at once"),
        pytest.param(2, 120, [(0, 5), (60, 3)], (60, 360), 2.8,
                     id="a scale-down cancels starting pods first: one of three still starts, serving 2.8"),
        pytest.param(2, 600, [(0, 4)], (0, 300), 2.0, id="pods that need longer than the interval serve none of it"),
    ],
)
def test_capacity_serves_scale_ups_after_startup(initial: int, startup: int, requests: list[tuple[int, int]],
                                                 interval: tuple[int, int], serving: float) -> None:
    capacity = policies.Capacity(initial, startup)
    for moment, replicas in requests:
        capacity.request(moment, replicas)
    if interval[0] > requests[-1][0]:
        capacity.serving(requests[-1][0], interval[0])
    assert capacity.serving(*interval) == pytest.approx(serving)
    assert capacity.requested == requests[-1][1]


@pytest.mark.parametrize(
    ("demand", "replicas"),
    [
        pytest.param(0.0, 1, id="no demand still runs minReplicas"),
        pytest.param(25.0, 3, id="25 at 10 per replica needs 3"),
        pytest.param(30.0, 3, id="exactly 30 needs exactly 3"),
        pytest.param(5000.0, 100, id="more than the maximum can serve is capped at maxReplicas"),
        pytest.param(math.nan, 1, id="a missing interval needs minReplicas"),
    ],
)
def test_the_oracle_needs_exactly_enough_replicas(demand: float, replicas: int) -> None:
    policy = planning.Policy(per_replica=10.0, min_replicas=1, max_replicas=100, startup_seconds=120, headroom=0.1,
                             quantile=0.9, stabilization_seconds=600, max_step_fraction=0.25, cycle_seconds=HOUR)
    assert policies.oracle_replicas(policy, demand) == replicas


# --- Replay ---------------------------------------------------------------------------------------------------


@pytest.fixture
def slo_spec(slo_document: dict[str, Any]) -> clinicalslo.ClinicalSLOSpec:
    """The docs' example ClinicalSLO at an hourly step with a short history, so replays take a moment."""
    slo_document["spec"]["capacity"] = {"perReplica": 10, "minReplicas": 1, "maxReplicas": 100,
                                        "startupSeconds": 120, "headroomPercent": 10}
    slo_document["spec"]["forecast"] = {"history": "4d", "step": "1h", "horizon": "3h", "model": "harmonic"}
    return manifests.parse(clinicalslo.ClinicalSLO, slo_document).spec


def synthetic_trace(values: series.FloatArray) -> trace.Trace:
    return trace.Trace(pathlib.Path("synthetic.csv"), series.Series(MONDAY, HOUR, values), int(values.size))


def daily_demand(days: int = 6, seed: int = 0) -> series.FloatArray:
    hours = np.arange(days * 24)
    rng = np.random.default_rng(seed)
    result: series.FloatArray = 200.0 * (1.0 + 0.5 * np.sin(2 * np.pi * (hours % 24 - 6) / 24)) \
        * (1.0 + 0.05 * rng.standard_normal(hours.size))
    return result


WARMUP_DAYS = 3.0
FIRST_SCORED = 72


def test_a_replay_scores_every_observed_interval_after_the_warmup(slo_spec: clinicalslo.ClinicalSLOSpec) -> None:
    values = daily_demand()
    values[[80, 81, 100]] = np.nan
    result = replay.replay(synthetic_trace(values), slo_spec, None, WARMUP_DAYS, with_references=False)
    scored = [position for position in range(FIRST_SCORED, values.size) if position not in (80, 81, 100)]
    np.testing.assert_array_equal(result.times, MONDAY + HOUR * np.array(scored))
    np.testing.assert_array_equal(result.demand, values[scored])
    assert list(result.runs) == ["healthscale"]
    assert result.runs["healthscale"].desired.shape == (len(scored),)
    assert replay.scored_intervals(synthetic_trace(values), WARMUP_DAYS) == len(scored)
    # The trace's hourly step replaces the spec's 1h step without a note; a different one gets a note.
    assert result.notes == ()


def test_a_warmup_covering_the_whole_trace_is_refused(slo_spec: clinicalslo.ClinicalSLOSpec) -> None:
    with pytest.raises(ValueError, match="--warmup-days 6 covers the whole trace"):
        replay.replay(synthetic_trace(daily_demand()), slo_spec, None, 6.0, with_references=False)


def _decisions(result: replay.Result, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    run = result.runs[name]
    return (run.desired, np.array([choice.forecast for choice in run.choices]),
            np.array([choice.forecast_upper for choice in run.choices]))


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda values: values * 7.0, id="demand seven times higher from then on"),
        pytest.param(lambda values: np.zeros_like(values), id="demand dropping to zero from then on"),
    ],
)
@pytest.mark.parametrize("offset", [0, 5, 40], ids=["at the first scored interval", "five hours in", "forty hours in"])
def test_decisions_never_depend_on_demand_at_or_after_their_interval(
    slo_spec: clinicalslo.ClinicalSLOSpec, alter: Callable[[series.FloatArray], series.FloatArray], offset: int
) -> None:
    values = daily_demand()
    cut = FIRST_SCORED + offset
    altered = values.copy()
    altered[cut:] = alter(values[cut:])
    original = replay.replay(synthetic_trace(values), slo_spec, None, WARMUP_DAYS, with_references=False)
    changed = replay.replay(synthetic_trace(altered), slo_spec, None, WARMUP_DAYS, with_references=False)
    row = offset  # no gaps: row r decides at position FIRST_SCORED + r
    for before, after in zip(_decisions(original, "healthscale"), _decisions(changed, "healthscale")):
        np.testing.assert_array_equal(after[: row + 1], before[: row + 1])
    # The comparison can fail: the altered demand does change the decisions after the cut.
    assert not np.array_equal(changed.runs["healthscale"].desired[row + 1:], original.runs["healthscale"].desired[row + 1:])


def test_the_reference_policies_do_not_peek_either(slo_spec: clinicalslo.ClinicalSLOSpec) -> None:
    values = daily_demand()
    cut = FIRST_SCORED + 30
    altered = values.copy()
    altered[cut:] *= 5.0
    original = replay.replay(synthetic_trace(values), slo_spec, None, WARMUP_DAYS)
    changed = replay.replay(synthetic_trace(altered), slo_spec, None, WARMUP_DAYS)
    # The budget-matched HPA and heuristic pick their headroom after the fact, from healthscale's replica-hours
    # over the whole replay, by design; every other policy decides from the past alone.
    matched = (replay.MATCHED_HPA_PREFIX, replay.MATCHED_HEURISTIC_PREFIX)
    deciding = [name for name in original.runs if not name.startswith(matched)]
    assert deciding == ["healthscale", "reactive HPA", "three-line heuristic", "schedule only",
                        "Holt-Winters (Predictive HPA)"]
    for name in deciding:
        np.testing.assert_array_equal(changed.runs[name].desired[:31], original.runs[name].desired[:31], err_msg=name)


def test_the_oracle_meets_all_demand_with_exactly_its_own_replica_hours(slo_spec: clinicalslo.ClinicalSLOSpec) -> None:
    result = replay.replay(synthetic_trace(daily_demand()), slo_spec, None, WARMUP_DAYS, with_references=False)
    scores = {score.name: score for score in result.scores()}
    assert list(scores) == ["healthscale", "oracle"]
    oracle = scores["oracle"]
    assert (oracle.unmet_percent, oracle.breach_percent, oracle.relative_replica_hours) == (0.0, 0.0, 1.0)
    expected_oracle = [math.ceil(demand / 10.0) for demand in result.demand]
    np.testing.assert_array_equal(result.oracle, expected_oracle)
    assert oracle.replica_hours == pytest.approx(float(sum(expected_oracle)))
    engine = scores["healthscale"]
    assert engine.replica_hours == pytest.approx(float(result.runs["healthscale"].ready.sum()))
    assert engine.relative_replica_hours == pytest.approx(engine.replica_hours / oracle.replica_hours)


def _result(demand: list[float], runs: dict[str, list[float]], oracle: list[int], min_replicas: int = 1) -> replay.Result:
    policy = planning.Policy(per_replica=10.0, min_replicas=min_replicas, max_replicas=100, startup_seconds=0,
                             headroom=0.1, quantile=0.9, stabilization_seconds=0, max_step_fraction=0.25,
                             cycle_seconds=HOUR)
    demand_array = np.asarray(demand)
    return replay.Result(
        trace=synthetic_trace(demand_array),
        policy=policy,
        times=MONDAY + HOUR * np.arange(len(demand)),
        demand=demand_array,
        runs={name: replay.Run(name, np.ceil(ready).astype(np.int64), np.asarray(ready), [], np.ceil(ready))
              for name, ready in runs.items()},
        oracle=np.asarray(oracle, dtype=np.int64),
        windows=[],
        notes=(),
    )


def test_scores_are_unmet_share_breach_share_and_replica_hours() -> None:
    # Demand 10, 20, 30, 0 at 10 per replica; the oracle runs 1, 2, 3 and minReplicas 1 = 7 replica-hours.
    result = _result([10.0, 20.0, 30.0, 0.0], {"short": [1.0, 1.0, 3.0, 1.0], "generous": [2.0, 2.5, 4.0, 2.0]},
                     [1, 2, 3, 1])
    scores = {score.name: score for score in result.scores()}
    short, generous, oracle = scores["short"], scores["generous"], scores["oracle"]
    # "short" leaves 10 of 60 units unmet in one interval of four, over 6 replica-hours.
    assert short.unmet_percent == pytest.approx(100.0 * 10.0 / 60.0)
    assert short.breach_percent == pytest.approx(25.0)
    assert short.replica_hours == pytest.approx(6.0)
    assert short.relative_replica_hours == pytest.approx(6.0 / 7.0)
    assert (generous.unmet_percent, generous.breach_percent) == (0.0, 0.0)
    assert generous.relative_replica_hours == pytest.approx(10.5 / 7.0)
    assert (oracle.unmet_percent, oracle.replica_hours, oracle.relative_replica_hours) == (0.0, 7.0, 1.0)


def test_scores_without_demand_or_oracle_replicas_do_not_divide_by_zero() -> None:
    result = _result([0.0, 0.0, 0.0], {"idle": [0.0, 0.0, 0.0]}, [0, 0, 0], min_replicas=0)
    for score in result.scores():
        assert (score.unmet_percent, score.breach_percent, score.replica_hours) == (0.0, 0.0, 0.0)
        assert math.isnan(score.relative_replica_hours)


# --- What a policy may see --------------------------------------------------------------------------------------


def test_a_policy_context_shows_only_the_past() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    history = series.Series(MONDAY, HOUR, values)
    context = policies.Context(MONDAY + 3 * HOUR, 3, history, 2)
    np.testing.assert_array_equal(context.past().values, [1.0, 2.0, np.nan])
    assert context.past().end == context.now
    assert context.last_demand() is None  # the interval before now is missing
    assert policies.Context(MONDAY + 4 * HOUR, 4, history, 2).last_demand() == 4.0
    assert policies.Context(MONDAY, 0, history, 2).last_demand() is None
