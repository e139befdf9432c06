"""The backtest's deferral report (``backtest.deferral``, ``--deferrable-replicas``): hours in force and
replica-hours deferred per surge window, lead time included, clipped to the replayed span, overlapping
windows counted once (for the one that ends last); the total agrees with ``domain.deferral.in_force``
(hypothesis); and the ``healthscale backtest`` command prints the table, fills PLAN.csv's
deferred_replicas, and prints one line instead when the option or spec.defer is missing.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import pathlib
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from healthscale.api import surgeschedule
from healthscale.backtest import deferral as backtest_deferral, report
from healthscale.domain import calendar, deferral
from cli_runner import Outcome, run

# See test_planning_properties: import hypothesis' patching module once with its DeprecationWarning
# silenced, so that a failing example reports normally under filterwarnings=error.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

REPO = pathlib.Path(__file__).resolve().parents[2]
SLO = REPO / "examples" / "backtest" / "clinicalslo.yaml"
UTC = dt.timezone.utc
DAY = dt.datetime(2024, 3, 6, tzinfo=UTC)
"""A Wednesday: the replayed span of the pure cases is this day, 00:00 to 24:00."""
SELECTOR = {"matchLabels": {"healthscale.io/deferrable": "true"}}


def policy(replicas: int = 0, during_burn: bool = False) -> surgeschedule.DeferPolicy:
    return surgeschedule.DeferPolicy.model_validate(
        {"selector": SELECTOR, "replicas": replicas, "duringBurn": during_burn})


def schedule_calendar(surges: list[dict[str, Any]]) -> calendar.Calendar:
    """The calendar the replay builds: the trace's wall clock read as UTC."""
    spec = surgeschedule.SurgeScheduleSpec.model_validate({"sloRefs": ["x"], "surges": surges})
    return calendar.Calendar("UTC", spec.surges)


def held_back(surges: list[dict[str, Any]], replicas: int, deferred_to: int = 0,
              begin: dt.datetime = DAY, end: dt.datetime = DAY + dt.timedelta(days=1)) -> backtest_deferral.Deferred:
    windows = schedule_calendar(surges).windows(begin - dt.timedelta(days=1), end + dt.timedelta(days=1))
    return backtest_deferral.deferred(policy(deferred_to), windows, begin, end, replicas)


@dataclasses.dataclass(frozen=True)
class Case:
    surges: list[dict[str, Any]]
    replicas: int
    deferred_to: int
    credited: list[tuple[str, float]]
    """Per window overlapping the day, by start: (surge, hours credited)."""
    hours: float
    replica_hours: float


def ranged(name: str, start: str, end: str, lead: str = "0s") -> dict[str, Any]:
    return {"name": name, "start": start, "end": end, "leadTime": lead, "multiplier": 1.5}


CASES = [
    pytest.param(Case([{"name": "rounds", "cron": "0 9 * * *", "duration": "2h", "multiplier": 1.5}], 4, 0,
                      [("rounds", 2.0)], 2.0, 8.0),
                 id="one window fully inside the trace counts its duration times every deferrable replica"),
    pytest.param(Case([ranged("night-clinic", "2024-03-06T22:00", "2024-03-07T04:00")], 4, 0,
                      [("night-clinic", 2.0)], 2.0, 8.0),
                 id="a window clipped by the trace's end counts only the part inside the trace"),
    pytest.param(Case([ranged("late-shift", "2024-03-05T20:00", "2024-03-06T03:00")], 4, 0,
                      [("late-shift", 3.0)], 3.0, 12.0),
                 id="a window opened before the trace's start counts only the part inside the trace"),
    pytest.param(Case([{"name": "rounds", "cron": "0 9 * * *", "duration": "2h", "leadTime": "30m",
                        "multiplier": 1.5}], 4, 0, [("rounds", 2.5)], 2.5, 10.0),
                 id="the lead time before a window is counted as deferred"),
    pytest.param(Case([ranged("clinic", "2024-03-06T09:00", "2024-03-06T12:00"),
                       ranged("vaccination", "2024-03-06T10:00", "2024-03-06T14:00")], 4, 0,
                      [("clinic", 1.0), ("vaccination", 4.0)], 5.0, 20.0),
                 id="two overlapping surges are counted once and the overlap goes to the one that ends last"),
    pytest.param(Case([ranged("vaccination", "2024-03-06T10:00", "2024-03-06T12:00"),
                       ranged("clinic", "2024-03-06T08:00", "2024-03-06T14:00")], 4, 0,
                      [("clinic", 6.0), ("vaccination", 0.0)], 6.0, 24.0),
                 id="a window nested in another is listed but credited nothing"),
    pytest.param(Case([ranged("clinic", "2024-03-06T09:00", "2024-03-06T11:00"),
                       ranged("vaccination", "2024-03-06T12:00", "2024-03-06T13:00", lead="1h")], 4, 0,
                      [("clinic", 2.0), ("vaccination", 2.0)], 4.0, 16.0),
                 id="a window whose lead time opens as another ends chains on without double counting"),
    pytest.param(Case([{"name": "rounds", "cron": "0 9 * * *", "duration": "2h", "multiplier": 1.5}], 4, 1,
                      [("rounds", 2.0)], 2.0, 6.0),
                 id="workloads shrunk to defer.replicas above 0 hold back only the difference"),
    pytest.param(Case([{"name": "rounds", "cron": "0 9 * * *", "duration": "2h", "multiplier": 1.5}], 4, 4,
                      [("rounds", 2.0)], 2.0, 0.0),
                 id="defer.replicas equal to the deferrable replicas defers no replica-hours"),
    pytest.param(Case([{"name": "rounds", "cron": "0 9 * * *", "duration": "2h", "multiplier": 1.5}], 4, 10,
                      [("rounds", 2.0)], 2.0, 0.0),
                 id="defer.replicas above the deferrable replicas defers no replica-hours"),
    pytest.param(Case([ranged("flu-season", "2024-12-01", "2025-03-01")], 4, 0, [], 0.0, 0.0),
                 id="a surge outside the trace has no row and defers nothing"),
]


@pytest.mark.parametrize("case", CASES)
def test_hours_and_replica_hours_deferred_per_window(case: Case) -> None:
    held = held_back(case.surges, case.replicas, case.deferred_to)
    assert [(item.window.surge, item.hours) for item in held.windows] == case.credited
    assert [item.replica_hours for item in held.windows] == [hours * held.held_back for _, hours in case.credited]
    assert (held.hours, held.replica_hours) == (case.hours, case.replica_hours)


def test_the_total_per_surge_adds_up_its_windows() -> None:
    held = held_back([{"name": "rounds", "cron": "0 */6 * * *", "duration": "1h", "multiplier": 1.5},
                      ranged("clinic", "2024-03-06T13:00", "2024-03-06T15:00")], replicas=3)
    assert held.by_surge() == {"rounds": (4.0, 12.0), "clinic": (2.0, 6.0)}


def test_negative_deferrable_replicas_are_refused() -> None:
    with pytest.raises(ValueError, match="deferrable replicas must be >= 0, got -1"):
        held_back([ranged("clinic", "2024-03-06T09:00", "2024-03-06T12:00")], replicas=-1)


@pytest.mark.parametrize(
    ("starts", "expected"),
    [
        pytest.param([8, 9, 10, 11], [1.5, 3.0, 1.5, 0.0], id="an interval half in force holds back half"),
        pytest.param([0, 12], [0.0, 0.0], id="intervals outside every window hold back nothing"),
    ],
)
def test_replicas_held_back_per_interval_are_time_weighted(starts: list[int], expected: list[float]) -> None:
    held = held_back([{"name": "rounds", "cron": "30 9 * * *", "duration": "1h", "leadTime": "1h",
                       "multiplier": 1.5}], replicas=3)
    epochs = np.array([int((DAY + dt.timedelta(hours=hour)).timestamp()) for hour in starts])
    assert held.per_interval(epochs, 3600).tolist() == expected


QUARTER = dt.timedelta(minutes=15)


@st.composite
def day_surges(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to five date-range surges on quarter hours around the day, some overlapping, some chained."""
    surges = []
    for index in range(draw(st.integers(1, 5))):
        start = DAY + draw(st.integers(-12, 100)) * QUARTER
        end = start + draw(st.integers(1, 40)) * QUARTER
        lead = draw(st.integers(0, 8)) * QUARTER
        surges.append(ranged(f"s{index}", start.strftime("%Y-%m-%dT%H:%M"), end.strftime("%Y-%m-%dT%H:%M"),
                             f"{int(lead.total_seconds())}s"))
    return surges


@settings(max_examples=60, deadline=None)
@given(surges=day_surges(), replicas=st.integers(0, 6), deferred_to=st.integers(0, 6))
def test_the_total_is_exactly_where_domain_deferral_is_in_force(surges: list[dict[str, Any]], replicas: int,
                                                                deferred_to: int) -> None:
    held = held_back(surges, replicas, deferred_to)
    schedule = schedule_calendar(surges)
    in_force = 0
    for step in range(24 * 4):
        moment = DAY + step * QUARTER
        holds = deferral.in_force(policy(deferred_to), schedule, {}, (), moment).in_force
        in_force += holds
        credited = [stretch for stretch in held.stretches if stretch.start <= moment < stretch.end]
        assert len(credited) == (1 if holds else 0)
    assert held.hours == in_force / 4
    assert held.replica_hours == (replicas - min(replicas, deferred_to)) * in_force / 4
    for item in held.windows:
        clipped = min(item.window.end, held.end) - max(item.window.effective_start, held.begin)
        assert 0 <= item.hours <= clipped / dt.timedelta(hours=1)


# --- The command --------------------------------------------------------------------------------------------------


SCHEDULE = """\
apiVersion: healthscale.io/v1alpha1
kind: SurgeSchedule
metadata: {{name: transport-surges, namespace: demo}}
spec:
  sloRefs: [patient-transport]
  surges:
  - {{name: rounds, cron: "0 9 * * *", duration: 2h, leadTime: 30m, multiplier: 1.5}}
  - {{name: night-clinic, start: "2024-03-07T22:00", end: "2024-03-08T04:00", minReplicas: 3}}
{defer}"""
DEFER = "  defer: {selector: {matchLabels: {healthscale.io/deferrable: \"true\"}}, replicas: 1}\n"


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Four days of hourly demand from Monday 2024-03-04: two of warm-up, two replayed (Wed and Thu)."""
    start = dt.datetime(2024, 3, 4)
    rows = [f"{(start + dt.timedelta(hours=hour)).isoformat()},{1000 + 800 * (8 <= hour % 24 < 18)}"
            for hour in range(4 * 24)]
    path = tmp_path_factory.mktemp("traces") / "small.csv"
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def backtest(trace: pathlib.Path, tmp_path: pathlib.Path, defer: str, *extra: str) -> Outcome:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(SCHEDULE.format(defer=defer), encoding="utf-8")
    return run("backtest", "--trace", str(trace), "--slo", str(SLO), "--schedule", str(schedule),
               "--output", str(tmp_path / "PLAN.csv"), "--no-references", "--warmup-days", "2", *extra)


def test_the_backtest_prints_the_replica_hours_deferred_per_surge_window(small_trace: pathlib.Path,
                                                                          tmp_path: pathlib.Path) -> None:
    outcome = backtest(small_trace, tmp_path, DEFER, "--deferrable-replicas", "6")
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    heading = lines.index("| surge        | start            | effective start  | end              "
                          "| hours deferred | replica-hours deferred |")
    assert lines[heading - 2] == (
        "deferral (spec.defer) from 2024-03-06 00:00 to 2024-03-08 00:00: 6 deferrable replicas shrink to 1, 5 held "
        "back from each window's effective start (start - leadTime) to its end; overlapping windows are counted "
        "once, for the one that ends last")
    # Rounds: 2h plus 30m lead, twice; the night clinic's 22:00-04:00 is clipped at the trace's end to 2h.
    assert [line.split("|")[1:-1] for line in lines[heading + 2:heading + 6]] == [
        [" rounds       ", " 2024-03-06 09:00 ", " 2024-03-06 08:30 ", " 2024-03-06 11:00 ", "           2.50 ",
         "                   12.5 "],
        [" rounds       ", " 2024-03-07 09:00 ", " 2024-03-07 08:30 ", " 2024-03-07 11:00 ", "           2.50 ",
         "                   12.5 "],
        [" night-clinic ", " 2024-03-07 22:00 ", " 2024-03-07 22:00 ", " 2024-03-08 04:00 ", "           2.00 ",
         "                   10.0 "],
        [" total        ", "                  ", "                  ", "                  ", "           7.00 ",
         "                   35.0 "],
    ]
    assert lines[heading + 6] == ""
    assert lines[heading + 7:] == ["per surge: rounds 5.00 h, 25.0 replica-h; night-clinic 2.00 h, 10.0 replica-h",
                                   report.NO_BURN]
    with (tmp_path / "PLAN.csv").open(encoding="utf-8", newline="") as handle:
        plan = list(csv.DictReader(handle))
    assert len(plan) == 48
    assert sum(float(row["deferred_replicas"]) for row in plan) == 35.0  # hourly rows: replica-hours
    assert [row["deferred_replicas"] for row in plan[8:12]] == ["2.500", "5.000", "5.000", "0.000"]


@pytest.mark.parametrize(
    ("defer", "extra", "note"),
    [
        pytest.param(DEFER, (), f"note: {report.NEEDS_REPLICAS}",
                     id="spec.defer without --deferrable-replicas prints a one-line note instead of the table"),
        pytest.param("", ("--deferrable-replicas", "6"), "note: --deferrable-replicas is unused: no --schedule with "
                     "spec.defer", id="a schedule without spec.defer prints no table"),
    ],
)
def test_without_both_the_option_and_spec_defer_there_is_no_table(small_trace: pathlib.Path, tmp_path: pathlib.Path,
                                                                   defer: str, extra: tuple[str, ...],
                                                                   note: str) -> None:
    outcome = backtest(small_trace, tmp_path, defer, *extra)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[-1] == note
    assert "replica-hours deferred" not in outcome.stdout
    with (tmp_path / "PLAN.csv").open(encoding="utf-8", newline="") as handle:
        assert report.DEFERRED_COLUMN not in next(csv.reader(handle))


def test_negative_deferrable_replicas_exit_2_before_the_replay(small_trace: pathlib.Path,
                                                               tmp_path: pathlib.Path) -> None:
    outcome = backtest(small_trace, tmp_path, DEFER, "--deferrable-replicas", "-1")
    assert (outcome.code, outcome.stderr) == (2, "error: --deferrable-replicas must be between 0 and 1000000\n")
    assert not (tmp_path / "PLAN.csv").exists()
