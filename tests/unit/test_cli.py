"""The ``healthscale`` command, run in-process: a backtest on 17 days of the real call-centre trace writes a
plan with one row per scored interval and prints the comparison table; bad manifests and traces exit 2
naming the field path or line and the rule; ``crds --check`` passes on the repository's CRDs and fails
on a tampered copy.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import pathlib
import shutil
from collections.abc import Callable

import pytest

from healthscale import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
CALL_CENTRE_SLO = REPO / "bench" / "manifests" / "call-centre.slo.yaml"
CALL_CENTRE_TRACE = pathlib.Path("/work/shared/traces/call_centre_bank_5min.csv")
CRDS = REPO / "crds"

PLAN_HEADER = [
    "timestamp", "demand", "forecast", "forecast_upper", "desired_replicas", "ready_replicas",
    "unmet_demand", "reason", "surge", "model", "guards",
    "hpa_desired_replicas", "hpa_ready_replicas", "oracle_replicas",
]
"""PLAN.csv's columns as the backtest documents them (report.PLAN_COLUMNS)."""

SLICE_END = "2003-03-20"
"""17 days from the trace's first row (2003-03-03T07:00, a Monday): 14 days of warm-up and 3 scored weekdays."""
FIRST_SCORED = "2003-03-17T07:00:00"


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run(*arguments: str) -> Outcome:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(arguments))
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def call_centre_slice(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The first 17 days of the call-centre trace (weekdays 07:00-21:00 only)."""
    lines = CALL_CENTRE_TRACE.read_text(encoding="utf-8").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if line < SLICE_END)]
    path = tmp_path_factory.mktemp("traces") / "call_centre_17d.csv"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@dataclasses.dataclass(frozen=True)
class Backtest:
    outcome: Outcome
    plan: pathlib.Path
    trace: pathlib.Path


@pytest.fixture(scope="module")
def backtest(call_centre_slice: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Backtest:
    plan = tmp_path_factory.mktemp("out") / "PLAN.csv"
    outcome = run("backtest", "--trace", str(call_centre_slice), "--slo", str(CALL_CENTRE_SLO),
                  "--output", str(plan), "--no-references", "--warmup-days", "14")
    return Backtest(outcome, plan, call_centre_slice)


# --- A backtest on a real trace ---------------------------------------------------------------------------------


def test_a_backtest_exits_0_and_says_what_it_replayed(backtest: Backtest) -> None:
    assert backtest.outcome.code == 0, backtest.outcome.stderr
    first_line = backtest.outcome.stdout.splitlines()[0]
    assert first_line.startswith("call_centre_17d.csv: 507 intervals of 300s replayed in ")
    assert first_line.endswith(f"(warm-up 14 days); plan written to {backtest.plan}")


def test_the_plan_has_the_documented_columns_and_one_row_per_scored_interval(backtest: Backtest) -> None:
    with backtest.trace.open(encoding="utf-8", newline="") as handle:
        scored = [row for row in csv.DictReader(handle) if row["timestamp"] >= FIRST_SCORED]
    with backtest.plan.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, row)) for row in reader]
    assert header == PLAN_HEADER
    assert len(rows) == len(scored) == 507
    assert [row["timestamp"] for row in rows] == [row["timestamp"] for row in scored]
    assert [float(row["demand"]) for row in rows] == [float(row["value"]) for row in scored]
    for row in rows:
        assert 2 <= int(row["desired_replicas"]) <= 60, row
        assert row["reason"] in {"schedule", "forecast", "reactive", "minimum"}, row
        assert float(row["unmet_demand"]) >= 0.0, row
        assert row["hpa_desired_replicas"] == row["hpa_ready_replicas"] == "", "no references were replayed"
    # Most of the day is forecast; a handful of mornings open on stale data and say so.
    forecast_rows = [row for row in rows if row["forecast"]]
    assert len(forecast_rows) > 0.9 * len(rows)
    assert all(row["model"] in {"harmonic", "seasonal-naive"} for row in forecast_rows)
    assert all(row["model"].startswith("none: ") for row in rows if not row["forecast"])


def test_the_readme_documents_the_same_plan_columns() -> None:
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    documented = readme.split("PLAN.csv has one row per interval: `", 1)[1].split("`", 1)[0]
    assert [column.strip() for column in documented.split(",")] == PLAN_HEADER


def test_the_printed_table_has_healthscale_and_oracle_rows(backtest: Backtest) -> None:
    lines = backtest.outcome.stdout.splitlines()
    table = [line for line in lines if line.startswith("|")]
    names = [line.split("|")[1].strip() for line in table]
    assert names[0] == "policy"
    assert set(table[1]) <= set("|-:"), "the header is underlined (Markdown)"
    assert names[2:] == ["healthscale", "oracle"]
    assert table[0].split("|")[2:-1] == [" unmet demand % ", " breach % ", " replica-hours ", " vs oracle "]
    oracle = [cell.strip() for cell in table[3].split("|")[2:-1]]
    assert (oracle[0], oracle[1], oracle[3]) == ("0.00", "0.0", "1.00x")
    assert any(line.startswith("healthscale's reasons: ") and "forecast" in line for line in lines)


# --- Bad input exits 2 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        pytest.param(("perReplica: 10", "perReplica: -10"),
                     ("spec.capacity.perReplica", "greater than 0"),
                     id="a negative perReplica names spec.capacity.perReplica and the bound"),
        pytest.param(("minReplicas: 2, maxReplicas: 60", "minReplicas: 80, maxReplicas: 60"),
                     ("spec.capacity", "minReplicas must be <= maxReplicas"),
                     id="minReplicas above maxReplicas names spec.capacity and the rule"),
        pytest.param(("horizon: 2h", "horizon: 2 hours"),
                     ("spec.forecast.horizon",),
                     id="an unreadable duration names spec.forecast.horizon"),
        pytest.param(("  targetRef: {name: call-centre}\n", ""),
                     ("spec.targetRef", "required field is missing"),
                     id="a missing targetRef names spec.targetRef and says it is required"),
        pytest.param(("criticality: high", "criticality: high\n  speling: wrong"),
                     ("spec.speling", "unknown field"),
                     id="an unknown field names its path and says it is unknown"),
        pytest.param(("kind: ClinicalSLO", "kind: SurgeSchedule"),
                     ("expected exactly one ClinicalSLO document, found 0",),
                     id="a file without a ClinicalSLO says so"),
        pytest.param(("journey:", "journey: [unclosed"),
                     ("not valid YAML",),
                     id="broken YAML says it is not valid YAML"),
    ],
)
def test_a_malformed_manifest_exits_2_naming_the_field_and_rule(
    call_centre_slice: pathlib.Path, tmp_path: pathlib.Path, edit: tuple[str, str], fragments: tuple[str, ...]
) -> None:
    text = CALL_CENTRE_SLO.read_text(encoding="utf-8")
    old, new = edit
    assert old in text
    manifest = tmp_path / "bad.slo.yaml"
    manifest.write_text(text.replace(old, new, 1), encoding="utf-8")
    plan = tmp_path / "PLAN.csv"
    outcome = run("backtest", "--trace", str(call_centre_slice), "--slo", str(manifest), "--output", str(plan),
                  "--no-references", "--warmup-days", "14")
    assert outcome.code == 2
    assert outcome.stderr.startswith(f"error: {manifest}")
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)
    assert not plan.exists()
    assert outcome.stdout == ""


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("timestamp,value\n2003-03-03T07:00:00,111\n2003-03-03T07:05:00,many\n2003-03-03T07:10:00,5\n",
                     (":3: field value: 'many' is not a number",), id="a non-numeric value names line 3"),
        pytest.param("timestamp,value\n2003-03-03T07:00:00,111\n2003-03-03T07:05:00,4\n2003-03-03T07:05:00,5\n",
                     (":4: field timestamp: 2003-03-03T07:05:00 repeats the previous row (line 3)",),
                     id="a duplicate timestamp names line 4 and line 3"),
        pytest.param("when,calls\n2003-03-03T07:00:00,111\n", (":1: header is 'when,calls'",),
                     id="a wrong header names line 1"),
    ],
)
def test_a_malformed_trace_exits_2_naming_the_line(tmp_path: pathlib.Path, text: str,
                                                    fragments: tuple[str, ...]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(text, encoding="utf-8")
    outcome = run("backtest", "--trace", str(trace), "--slo", str(CALL_CENTRE_SLO), "--output",
                  str(tmp_path / "PLAN.csv"), "--no-references")
    assert outcome.code == 2
    assert outcome.stderr.startswith("error: ")
    for fragment in fragments:
        assert f"{trace}{fragment}" in outcome.stderr, (fragment, outcome.stderr)


@pytest.mark.parametrize(
    ("warmup", "message"),
    [
        pytest.param("30", "error: --warmup-days 30 covers the whole trace", id="a warm-up longer than the trace"),
        pytest.param("-1", "error: --warmup-days must be >= 0", id="a negative warm-up"),
    ],
)
def test_a_bad_warmup_exits_2(call_centre_slice: pathlib.Path, tmp_path: pathlib.Path, warmup: str,
                              message: str) -> None:
    outcome = run("backtest", "--trace", str(call_centre_slice), "--slo", str(CALL_CENTRE_SLO), "--output",
                  str(tmp_path / "PLAN.csv"), "--no-references", "--warmup-days", warmup)
    assert outcome.code == 2
    assert outcome.stderr.startswith(message)


def test_a_missing_trace_file_exits_2(tmp_path: pathlib.Path) -> None:
    outcome = run("backtest", "--trace", str(tmp_path / "absent.csv"), "--slo", str(CALL_CENTRE_SLO),
                  "--output", str(tmp_path / "PLAN.csv"))
    assert outcome.code == 2
    assert "cannot read trace" in outcome.stderr


# --- crds --check --------------------------------------------------------------------------------------------------


def test_crds_check_passes_on_the_repository_crds() -> None:
    outcome = run("crds", "--check", "--output-dir", str(CRDS))
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.strip() == f"CRDs in {CRDS} match the models"


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        pytest.param(lambda path: path.write_text(path.read_text(encoding="utf-8").replace("minimum: 1", "minimum: 2", 1),
                                                  encoding="utf-8"),
                     "clinicalslos.healthscale.io.yaml", id="an edited bound is drift"),
        pytest.param(lambda path: path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8"),
                     "clinicalslos.healthscale.io.yaml", id="an extra newline is drift"),
        pytest.param(lambda path: path.unlink(), "clinicalslos.healthscale.io.yaml", id="a deleted CRD is drift"),
    ],
)
def test_crds_check_fails_on_a_tampered_copy(tmp_path: pathlib.Path, tamper: Callable[[pathlib.Path], object],
                                             named: str) -> None:
    copy = tmp_path / "crds"
    shutil.copytree(CRDS, copy)
    before = run("crds", "--check", "--output-dir", str(copy))
    assert before.code == 0, "an untouched copy passes"
    tamper(copy / named)
    outcome = run("crds", "--check", "--output-dir", str(copy))
    assert outcome.code == 1
    assert outcome.stderr.strip() == f"CRDs out of date in {copy}: {named}; run `healthscale crds`"
    assert outcome.stdout == ""


def test_crds_writes_files_that_then_pass_the_check(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "generated"
    written = run("crds", "--output-dir", str(target))
    assert written.code == 0
    generated = sorted(path.name for path in CRDS.glob("*.healthscale.io.yaml"))  # not Kopf's hand-written peering CRDs
    assert sorted(path.name for path in target.iterdir()) == generated == ["clinicalslos.healthscale.io.yaml",
                                                                           "surgeschedules.healthscale.io.yaml"]
    assert run("crds", "--check", "--output-dir", str(target)).code == 0
