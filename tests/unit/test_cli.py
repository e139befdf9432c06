"""The ``healthscale`` command, run in-process: a backtest on 17 days of the real call-centre trace writes a
plan with one row per scored interval and prints the comparison table; bad manifests and traces exit 2
naming the field path or line and the rule; every other user mistake (paths, missing files, no cluster
credentials, no plot extra) exits with its exact message and no traceback; ``--version`` and plain help;
``crds --check`` passes on the repository's CRDs and fails on a tampered copy.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.metadata
import io
import os
import pathlib
import re
import shutil
import sys
from collections.abc import Callable

import pytest

from healthscale import cli
from cli_runner import Outcome, run

REPO = pathlib.Path(__file__).resolve().parents[2]
CALL_CENTRE_SLO = REPO / "bench" / "manifests" / "call-centre.slo.yaml"
CALL_CENTRE_TRACE = pathlib.Path("/work/shared/traces/call_centre_bank_5min.csv")
CRDS = REPO / "crds"

PLAN_HEADER = [
    "timestamp", "demand", "forecast", "forecast_upper", "desired_replicas", "ready_replicas",
    "unmet_demand", "reason", "surge", "model", "guards",
    "hpa_desired_replicas", "hpa_ready_replicas", "oracle_replicas", "reserved_replicas",
]
"""PLAN.csv's columns as the backtest documents them (report.PLAN_COLUMNS)."""

SLICE_END = "2003-03-20"
"""17 days from the trace's first row (2003-03-03T07:00, a Monday): 14 days of warm-up and 3 scored weekdays."""
FIRST_SCORED = "2003-03-17T07:00:00"


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
                     ("not valid YAML", "line 6, column 14"),
                     id="broken YAML says it is not valid YAML and names the line"),
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


# --- Every user mistake: its exact message and exit code, never a traceback --------------------------------------


NO_CLUSTER = ("error: no cluster credentials: not in a pod with a ServiceAccount, and no kubeconfig at $KUBECONFIG "
              "or ~/.kube/config. Set KUBECONFIG to the cluster's kubeconfig (as for kubectl), or run in the cluster "
              "with a ServiceAccount\n")


@dataclasses.dataclass(frozen=True)
class Mistake:
    arguments: tuple[str, ...]
    """The command line; {tmp} is a fresh directory holding trace.csv, slo.yaml (valid), broken.yaml, a-file."""
    stderr: str
    """The exact message, {tmp} expanded."""
    code: int = 2


BACKTEST = ("backtest", "--trace", "{tmp}/trace.csv", "--slo", "{tmp}/slo.yaml")
MISTAKES = [
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}"),
                         "error: --output {tmp}: is a directory; name a file in it, e.g. {tmp}/plan.csv\n"),
                 id="an output path that is a directory is refused before the replay"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/absent/plan.csv"),
                         "error: --output {tmp}/absent/plan.csv: the directory {tmp}/absent does not exist "
                         "(create it first)\n"),
                 id="an output path in a missing directory names the directory"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/a-file/plan.csv"),
                         "error: --output {tmp}/a-file/plan.csv: {tmp}/a-file is not a directory\n"),
                 id="an output path under a file says the parent is not a directory"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/plan.csv", "--plot", "{tmp}"),
                         "error: --plot {tmp}: is a directory; name a file in it, e.g. {tmp}/plan.png\n"),
                 id="a plot path that is a directory is refused before the replay"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/plan.csv", "--plot", "{tmp}/absent/plan.png"),
                         "error: --plot {tmp}/absent/plan.png: the directory {tmp}/absent does not exist "
                         "(create it first)\n"),
                 id="a plot path in a missing directory names the directory"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/plan.csv", "--plot", "{tmp}/plan.csv"),
                         "error: --plot {tmp}/plan.csv: is the same file as --output\n"),
                 id="a plot path equal to the output path is refused"),
    pytest.param(Mistake(("backtest", "--trace", "{tmp}/trace.csv", "--slo", "{tmp}/absent.yaml", "--output",
                          "{tmp}/plan.csv"), "error: --slo {tmp}/absent.yaml: the file does not exist\n"),
                 id="a missing SLO file says the file does not exist"),
    pytest.param(Mistake(("backtest", "--trace", "{tmp}/trace.csv", "--slo", "{tmp}", "--output", "{tmp}/plan.csv"),
                         "error: --slo {tmp}: is a directory, not a file\n"),
                 id="an SLO path that is a directory says so"),
    pytest.param(Mistake((*BACKTEST, "--schedule", "{tmp}/absent.yaml", "--output", "{tmp}/plan.csv"),
                         "error: --schedule {tmp}/absent.yaml: the file does not exist\n"),
                 id="a missing schedule file says the file does not exist"),
    pytest.param(Mistake(("backtest", "--trace", "{tmp}/absent.csv", "--slo", "{tmp}/slo.yaml", "--output",
                          "{tmp}/plan.csv"), "error: --trace {tmp}/absent.csv: the file does not exist\n"),
                 id="a missing trace file says the file does not exist"),
    pytest.param(Mistake(("backtest", "--trace", "{tmp}/trace.csv", "--slo", "{tmp}/broken.yaml", "--output",
                          "{tmp}/plan.csv"),
                         "error: {tmp}/broken.yaml: invalid manifest:\n  - line 4, column 5: not valid YAML: expected "
                         "',' or '}}', but got ':' (while parsing a flow mapping started at line 3, column 11)\n"),
                 id="broken YAML names the file, the line and the column"),
    pytest.param(Mistake((*BACKTEST, "--output", "{tmp}/plan.csv", "--warmup-days", "-1"),
                         "error: --warmup-days must be >= 0\n"),
                 id="a negative warm-up is refused"),
    pytest.param(Mistake(("explain", "ed-triage-chart"),
                         "error: explain 'ed-triage-chart': name the ClinicalSLO as NAMESPACE/NAME, e.g. "
                         "ehr/ed-triage-chart\n"),
                 id="explain without a namespace asks for NAMESPACE/NAME"),
    pytest.param(Mistake(("explain", "ehr/ed-triage-chart"), NO_CLUSTER),
                 id="explain without cluster credentials says how to provide them"),
    pytest.param(Mistake(("run", "--prometheus-url", "http://prometheus:9090"), NO_CLUSTER),
                 id="run without cluster credentials says how to provide them"),
    pytest.param(Mistake(("release", "--dry-run"), NO_CLUSTER),
                 id="release without cluster credentials says how to provide them"),
    pytest.param(Mistake(("run", "--prometheus-url", "http://prometheus:9090", "--prometheus-bearer-token-file",
                          "{tmp}/absent-token"),
                         "error: --prometheus-bearer-token-file: cannot read {tmp}/absent-token: No such file or "
                         "directory\n"),
                 id="run with a missing bearer-token file names the option and the file"),
]


@pytest.fixture
def no_cluster(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a pod's ServiceAccount nor a kubeconfig."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("mistake", MISTAKES)
@pytest.mark.usefixtures("no_cluster")
def test_a_user_mistake_exits_with_its_exact_message(tmp_path: pathlib.Path, mistake: Mistake) -> None:
    (tmp_path / "trace.csv").write_text("timestamp,value\n2024-01-01T00:00:00,1\n", encoding="utf-8")
    shutil.copy(CALL_CENTRE_SLO, tmp_path / "slo.yaml")
    (tmp_path / "broken.yaml").write_text("apiVersion: healthscale.io/v1alpha1\nkind: ClinicalSLO\n"
                                          "metadata: {name: x\nspec: {}\n", encoding="utf-8")
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    outcome = run(*(argument.format(tmp=tmp_path) for argument in mistake.arguments))
    assert (outcome.code, outcome.stderr) == (mistake.code, mistake.stderr.format(tmp=tmp_path))
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert not (tmp_path / "plan.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_directory_is_refused_before_the_replay(tmp_path: pathlib.Path) -> None:
    (tmp_path / "trace.csv").write_text("timestamp,value\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        outcome = run("backtest", "--trace", str(tmp_path / "trace.csv"), "--slo", str(CALL_CENTRE_SLO),
                      "--output", str(locked / "plan.csv"))
    finally:
        locked.chmod(0o700)
    assert (outcome.code, outcome.stderr) == (2, f"error: --output {locked}/plan.csv: permission denied "
                                                 "(cannot write there)\n")


def test_plot_without_matplotlib_names_the_extra_before_the_replay(tmp_path: pathlib.Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "trace.csv").write_text("timestamp,value\n", encoding="utf-8")
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the plot extra looks like
    outcome = run("backtest", "--trace", str(tmp_path / "trace.csv"), "--slo", str(CALL_CENTRE_SLO),
                  "--output", str(tmp_path / "plan.csv"), "--plot", str(tmp_path / "plan.png"))
    assert (outcome.code, outcome.stderr) == (
        2, f"error: --plot {tmp_path}/plan.png: plotting needs the plot extra: pip install 'healthscale[plot]'\n")
    assert not (tmp_path / "plan.csv").exists()


def test_an_unusable_kubeconfig_is_named_with_what_is_wrong(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    outcome = run("run", "--prometheus-url", "http://prometheus:9090")
    assert outcome.code == 2
    assert outcome.stderr.startswith(f"error: cannot use the kubeconfig {kubeconfig}: "), outcome.stderr
    assert "Traceback" not in outcome.stderr


# --- --version and plain help ----------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert stdout.getvalue() == f"healthscale {importlib.metadata.version('healthscale')}\n"


@pytest.mark.parametrize("command", [(), ("backtest",), ("run",), ("explain",), ("release",), ("crds",)],
                         ids=lambda command: f"the help of healthscale {' '.join(command)} is plain text".replace(
                             "  ", " "))
def test_help_is_plain_text_without_markup(command: tuple[str, ...]) -> None:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    text = stdout.getvalue()
    assert text.startswith("usage: healthscale")
    assert "``" not in text
    assert not re.search(r":[a-z]+:`", text), text
