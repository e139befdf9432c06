"""``healthscale capacity`` run in-process against a fake Prometheus: a real HTTP server on 127.0.0.1
answering query_range with a synthetic history whose knee is known by construction (M/M/1
replicas, see test_capacity.py), so the command goes through the real adapter and the very latency
queries the reconcile builds. Every failure (no data, a bad ClinicalSLO, Prometheus down, a bad
option) exits 2 with its message and no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import pathlib
import re
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import loopback_http

from healthscale import cli

MU = 42.0
THRESHOLD = 1.5
KNEE = MU - math.log(20) / THRESHOLD
"""The load per replica at which 95% of requests are under 1.5 s: 40.0."""
REPLICAS = 4.0
DEMAND = 'sum(rate(http_requests_total{service="ehr-api"}[5m]))'
READY = 'sum(kube_deployment_status_replicas_available{namespace="ehr", deployment="ehr-api"})'

SLO = """\
apiVersion: healthscale.io/v1alpha1
kind: ClinicalSLO
metadata: {name: ed-triage, namespace: ehr}
spec:
  journey: ED triage screen
  targetRef: {name: ehr-api}
  objectives:
    latency: {percentile: 95, thresholdSeconds: 1.5}
  indicators:
    demand: 'sum(rate(http_requests_total{service="ehr-api"}[5m]))'
    latencyHistogram: 'http_request_duration_seconds_bucket{service="ehr-api"}'
  capacity: {perReplica: 30, maxReplicas: 20}
"""


def load_at(times: np.ndarray, peak: float) -> np.ndarray:
    """Load per replica: a daily cycle from 5 to ``peak`` (peaking mid-afternoon UTC)."""
    hour = (times % 86400) / 3600
    return 5 + (peak - 5) * np.clip(np.sin(np.pi * (hour - 6) / 14), 0, None) ** 2


def jitter(times: np.ndarray, salt: int) -> np.ndarray:
    """Noise in [0, 1) that depends only on the time, so every query and chunk agrees on it."""
    return np.asarray(np.sin(times * 12.9898 + salt * 78.233) * 43758.5453 % 1.0)


class FakePrometheus:
    """query_range answers from the synthetic history; label values for the histogram's buckets.
    ``peak`` is the highest load per replica, ``empty`` queries return no series."""

    def __init__(self, peak: float = 50.0) -> None:
        self.peak = peak
        self.empty: set[str] = set()
        self.queries: list[str] = []
        self.http = loopback_http.LoopbackHttp(
            lambda path, params, _: (200, "application/json", json.dumps(self.answer(path, params)).encode()))
        self.url = self.http.url

    def answer(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        if path.startswith("/api/v1/label/le/values"):
            return {"status": "success", "data": ["0.5", "1.5", "5", "+Inf"]}
        query = params["query"]
        self.queries.append(query)
        times = np.arange(int(params["start"]), int(params["end"]) + 1, int(params["step"]), dtype=np.float64)
        load = load_at(times, self.peak) * (1 + 0.06 * (jitter(times, 1) - 0.5))
        share = np.clip(np.where(load < MU, 1 - np.exp(-(MU - load) * THRESHOLD), 0.0)
                        + 0.02 * (jitter(times, 2) - 0.5), 0.0, 1.0)
        values = {DEMAND: load * REPLICAS, READY: np.full(times.shape, REPLICAS)}
        if 'le="+Inf"' in query:
            values[query] = load * REPLICAS
        elif 'le="1.5"' in query:
            values[query] = load * REPLICAS * share
        found = values.get(query)
        result = [] if found is None or query in self.empty else [
            {"metric": {}, "values": [[float(t), repr(float(v))] for t, v in zip(times, found, strict=True)]}]
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


@pytest.fixture
def slo(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "slo.yaml"
    path.write_text(SLO, encoding="utf-8")
    return path


def run(*arguments: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(arguments))
    assert "Traceback" not in stdout.getvalue() + stderr.getvalue()
    return code, stdout.getvalue(), stderr.getvalue()


def recommended(stdout: str) -> float:
    """The recommendation, checked to lie inside its band. Over a short history the band may have no
    upper end (too few resampled blocks reach the peak hours): "above the heaviest load"."""
    found = re.search(r"^recommended perReplica: ([0-9.]+) \(band ([0-9.]+) to ([0-9.]+|above the heaviest load)\); "
                      r"declared: 30$", stdout, re.MULTILINE)
    assert found is not None, stdout
    value, low = float(found[1]), float(found[2])
    high = math.inf if found[3].startswith("above") else float(found[3])
    assert low <= value <= high
    return value


def test_capacity_prints_the_knee_within_10_percent_with_its_band_and_evidence(
        prometheus: FakePrometheus, slo: pathlib.Path, tmp_path: pathlib.Path) -> None:
    plot = tmp_path / "capacity.png"
    code, stdout, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url,
                               "--since", "7d", "--plot", str(plot))
    assert (code, stderr) == (0, "")
    assert recommended(stdout) == pytest.approx(KNEE, rel=0.10)
    assert "objective: 95% of requests under 1.5s (bucket le=1.5)\n" in stdout
    assert re.search(r"^evidence: 2017 intervals used, 0 left out .*, 7\.0 days; load per replica 4\.\d+ to 5\d\.\d+;",
                     stdout, re.MULTILINE), stdout
    assert f"query ready replicas: {READY}\n" in stdout
    assert plot.read_bytes().startswith(b"\x89PNG")
    # The latency queries are the reconcile's own (cycle.histogram_sli), not a copy.
    assert 'sum(rate(http_request_duration_seconds_bucket{service="ehr-api", le="1.5"}[5m]))' in prometheus.queries


def test_a_history_below_the_knee_prints_not_observed_with_a_lower_bound(
        prometheus: FakePrometheus, slo: pathlib.Path) -> None:
    prometheus.peak = 30.0
    code, stdout, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url, "--since", "3d")
    assert (code, stderr) == (0, "")
    assert re.search(r"^recommended perReplica: not observed: at least 3\d\.\d+; declared: 30$", stdout,
                     re.MULTILINE), stdout


def test_the_replicas_query_option_replaces_kube_state_metrics(prometheus: FakePrometheus, slo: pathlib.Path) -> None:
    code, stdout, _ = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url, "--since", "2d",
                          "--replicas-query", READY.replace("available", "ready"))
    assert code == 2  # the fake knows only the default query: no samples, named
    code, stdout, _ = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url, "--since", "2d",
                          "--replicas-query", READY)
    assert code == 0 and recommended(stdout) == pytest.approx(KNEE, rel=0.10)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(("arguments", "message"), [
    pytest.param(("--since", "14x"), r"error: --since: '14x' is not a duration", id="a bad --since names the option"),
    pytest.param(("--step", "10s"), r"error: --step 10s must be between 1m and 1d\n$",
                 id="a step under a minute is refused"),
    pytest.param(("--since", "1h", "--step", "1h"), r"error: --since 1h must be at least two --step \(1h\)\n$",
                 id="a history shorter than two steps is refused"),
    pytest.param(("--plot", "{tmp}"), r"error: --plot {tmp}: is a directory",
                 id="a plot path that is a directory is refused before reading Prometheus"),
])
def test_a_bad_option_exits_2_with_its_message(prometheus: FakePrometheus, slo: pathlib.Path, tmp_path: pathlib.Path,
                                               arguments: tuple[str, ...], message: str) -> None:
    code, _, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url,
                          *(argument.format(tmp=tmp_path) for argument in arguments))
    assert code == 2
    assert re.match(message.format(tmp=re.escape(str(tmp_path))), stderr), stderr
    assert not prometheus.queries


def test_prometheus_down_exits_2_naming_it(slo: pathlib.Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    code, stdout, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", url)
    assert (code, stdout) == (2, "")
    assert stderr.startswith(f"error: Prometheus at {url} (PrometheusUnavailable): "), stderr


def test_no_ready_replicas_in_prometheus_exits_2_suggesting_the_option(
        prometheus: FakePrometheus, slo: pathlib.Path) -> None:
    prometheus.empty.add(READY)
    code, _, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url, "--since", "1d")
    assert code == 2
    assert stderr.startswith(f"error: ready replicas returned no samples over 1d: {READY}; is kube-state-metrics "
                             "scraped?"), stderr
    assert "--replicas-query" in stderr


def test_no_demand_exits_2_naming_the_query(prometheus: FakePrometheus, slo: pathlib.Path) -> None:
    prometheus.empty.add(DEMAND)
    code, _, stderr = run("capacity", "--slo", str(slo), "--prometheus-url", prometheus.url, "--since", "1d")
    assert (code, stderr) == (2, f"error: indicators.demand returned no samples over 1d: {DEMAND}\n")


def test_an_slo_without_a_latency_objective_exits_2(prometheus: FakePrometheus, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(re.sub(r"  objectives:\n.*\n|    latencyHistogram: .*\n", "", SLO), encoding="utf-8")
    code, _, stderr = run("capacity", "--slo", str(path), "--prometheus-url", prometheus.url)
    assert code == 2
    assert stderr.startswith("error: ClinicalSLO ed-triage has no objectives.latency"), stderr


def test_a_threshold_without_a_bucket_exits_2_listing_the_buckets(prometheus: FakePrometheus,
                                                                  tmp_path: pathlib.Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(SLO.replace("thresholdSeconds: 1.5", "thresholdSeconds: 2"), encoding="utf-8")
    code, _, stderr = run("capacity", "--slo", str(path), "--prometheus-url", prometheus.url)
    assert code == 2
    assert stderr.startswith("error: the latency SLI cannot be measured (LatencyBucketMissing): "), stderr
    assert "0.5, 1.5, 5, +Inf" in stderr


def test_a_missing_slo_file_exits_2(prometheus: FakePrometheus, tmp_path: pathlib.Path) -> None:
    code, _, stderr = run("capacity", "--slo", str(tmp_path / "absent.yaml"), "--prometheus-url", prometheus.url)
    assert (code, stderr) == (2, f"error: --slo {tmp_path}/absent.yaml: the file does not exist\n")


def test_the_help_of_healthscale_capacity_is_plain_text() -> None:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exited:
        cli.main(["capacity", "--help"])
    assert exited.value.code == 0
    assert stdout.getvalue().startswith("usage: healthscale capacity")
    assert "``" not in stdout.getvalue()
