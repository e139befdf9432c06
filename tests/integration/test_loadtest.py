"""The load test, short profile (issue 14): a real HTTP service of known capacity, Locust replaying
a real morning, a Prometheus of its own, and the real reconcile scaling the process count.

Needs no cluster: only Debian's prometheus binary (``make system-packages``), Locust (test extra)
and ../shared/traces. ``loadtest/run.py`` runs as a subprocess in a session of its own, so that
every process it starts (Prometheus, balancers, replicas, Locust) is stopped even if the test
fails or times out: SIGTERM runs the driver's cleanup, SIGKILL to its process group is the last
resort. About 5 minutes on 2 cores; ``make loadtest`` runs the long profile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clusterlib import REPO_ROOT

pytestmark = pytest.mark.integration

TRACES = REPO_ROOT.parent / "shared" / "traces"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not found: `make system-packages` installs Debian's package", pytrace=False)
    if not (TRACES / "call_centre_bank_5min.csv").is_file():
        pytest.fail(f"{TRACES} not found: the load test replays ../shared/traces", pytrace=False)
    out = tmp_path_factory.mktemp("loadtest")
    with open(out / "driver.log", "wb") as log_file:
        driver = subprocess.Popen(
            [sys.executable, "-m", "loadtest.run", "--profile", "short", "--out", str(out), "--plot",
             str(out / "loadtest.png")], cwd=REPO_ROOT, start_new_session=True, stdout=log_file,
            stderr=subprocess.STDOUT)
    try:
        code = driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.send_signal(signal.SIGTERM)
            try:
                driver.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
    log = (out / "driver.log").read_text()
    print(log)
    assert code == 0, log[-5000:]
    assert (out / "loadtest.png").stat().st_size > 10_000
    found: dict[str, Any] = json.loads((out / "results.json").read_text())
    return found


def test_the_true_knee_from_erlang_c_agrees_with_a_simulation_of_the_same_queue(results: dict[str, Any]) -> None:
    assert results["true_knee"] == pytest.approx(26.355, abs=0.01)  # 2 slots, exp. 50 ms, 95% under 0.25 s
    assert results["simulated_knee"] == pytest.approx(results["true_knee"], rel=0.03)


def test_the_learned_per_replica_is_within_15_percent_of_the_true_knee(results: dict[str, Any]) -> None:
    assert results["learned"]["outcome"] == "Observed", results["learned"]["reason"]
    assert abs(results["knee_error"]) <= 0.15, results["learned"]


@pytest.mark.parametrize("window", ["5m", "30m", "1h"], ids=lambda window: f"over {window}")
def test_the_latency_burn_rates_in_status_match_prometheus_from_the_raw_histogram(
        results: dict[str, Any], window: str) -> None:
    pair = results["burn_rates"][window]
    assert pair["status"] is not None and pair["prometheus"] is not None, pair
    assert pair["status"] == pytest.approx(pair["prometheus"], rel=0.03, abs=0.02)


def test_the_operator_keeps_the_latency_objective_where_the_reactive_policy_breaches_it(
        results: dict[str, Any]) -> None:
    # hpa-70: an HPA at a common 70% target, whose owner does not know the knee (66% utilisation).
    # hpa-60 (tuned just below the knee) is reported, not asserted: it meets or narrowly misses
    # the objective from run to run (BENCHMARKS.md).
    compliance = results["compliance"]
    assert compliance["operator"] >= 0.95 > compliance["hpa-70"], compliance
