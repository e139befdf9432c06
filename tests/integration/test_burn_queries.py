"""Burn-rate reads against the local stack's real Prometheus: short windows every cycle, long ones reused;
and the latency objective read from a real histogram that Prometheus scrapes.

At a thousand ClinicalSLOs with error indicators, re-reading every window each minute would send
Prometheus 16,000 subqueries a minute, 2,000 of them over the whole 28-day SLO window.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import DevCluster, HistogramExporter, RecordingPrometheus, wait_until
from healthscale.api import clinicalslo, manifests
from healthscale.domain import slo
from healthscale.service import cycle

pytestmark = pytest.mark.integration

MINUTE = 60


def _spec() -> clinicalslo.ClinicalSLOSpec:
    # 5% of requests failing against a 99.9% objective: a burn of 50x on every window.
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": "portal", "namespace": "default"},
        "spec": {
            "journey": "patient portal logins",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "portal"},
            "indicators": {"demand": "vector(1)", "errors": "vector(0.5)", "total": "vector(10)"},
            "objectives": {"availability": 99.9, "window": "28d"},
            "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 10, "startupSeconds": 60},
        },
    }).spec


def availability_report(metrics: RecordingPrometheus, spec: clinicalslo.ClinicalSLOSpec, memory: cycle.Memory,
                        now: int, step: int) -> slo.Report | None:
    """The availability objective's report, as the reconcile measures it."""
    return cycle.measure(metrics, spec, memory, now, step)[slo.AVAILABILITY].report


def _windows(queries: list[str]) -> set[int]:
    return {int(query.split(")[", 1)[1].split("s:", 1)[0]) for query in queries}


def test_long_windows_are_reused_and_short_ones_read_every_cycle(devcluster: DevCluster) -> None:
    client, spec, memory, now = RecordingPrometheus(devcluster.prometheus_url), _spec(), cycle.Memory(), int(time.time())
    budget_window = 28 * 86400
    every_window = {*slo.WINDOW_SECONDS, budget_window}

    first = availability_report(client, spec, memory, now, MINUTE)
    assert first is not None
    assert first.rates["1h"] == pytest.approx(50.0, rel=1e-3)
    assert first.budget_remaining == pytest.approx(-49.0, rel=1e-3)
    assert first.fast_burn
    assert len(client.queries) == 2 * len(every_window)  # errors and total for every window

    client.queries.clear()
    next_cycle = availability_report(client, spec, memory, now + MINUTE, MINUTE)
    # The fast pairs' windows are read again; the long ones are reused (2h may go either way:
    # its per-query spread can bring its reuse down to the step).
    assert {5 * MINUTE, 30 * MINUTE, 60 * MINUTE} <= _windows(client.queries)
    assert not _windows(client.queries) & {6 * 3600, 86400, 3 * 86400, budget_window}
    assert next_cycle == first

    client.queries.clear()
    availability_report(client, spec, memory, now + slo.MAX_REUSE_SECONDS, MINUTE)
    assert _windows(client.queries) == every_window  # nothing is reused for longer than the cap


def test_editing_an_indicator_reads_every_window_of_it_again(devcluster: DevCluster) -> None:
    client, spec, memory, now = RecordingPrometheus(devcluster.prometheus_url), _spec(), cycle.Memory(), int(time.time())
    availability_report(client, spec, memory, now, MINUTE)
    edited = spec.model_copy(update={"indicators": spec.indicators.model_copy(update={"errors": "vector(1)"})})

    client.queries.clear()
    report = availability_report(client, edited, memory, now + MINUTE, MINUTE)
    assert report is not None and report.rates["3d"] == pytest.approx(100.0, rel=1e-3)  # 10% errors now
    new_errors_reads = [query for query in client.queries if query.startswith("avg_over_time((vector(1))[")]
    assert _windows(new_errors_reads) == {*slo.WINDOW_SECONDS, 28 * 86400}
    assert not any("vector(0.5)" in query for query in memory.burn_values)  # nothing of the old query is kept


# ------------------------------------------------------------------------ latency from a real histogram

RUN = f"{os.getpid()}-{int(time.time())}"
HISTOGRAM = f'healthscale_it_request_seconds_bucket{{run="{RUN}"}}'
BUCKETS = (("0.1", 0), ("0.5", 0), ("1.5", 8), ("5", 10), ("+Inf", 10))
"""le -> requests a second at or under it: 8 of every 10 requests take 1 s, 2 take 3 s."""


def prometheus_value(devcluster: DevCluster, query: str) -> float | None:
    url = f"{devcluster.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def histogram(devcluster: DevCluster) -> Iterator[HistogramExporter]:
    serving = HistogramExporter(RUN, BUCKETS, sum_per_second=14)
    targets = Path(devcluster.env["DEVCLUSTER_PROMETHEUS_TARGETS_DIR"]) / f"latency-{RUN}.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{serving.port}"], "labels": {"job": f"latency-{RUN}"}}]))
    try:
        # rate() needs two scrapes of the +Inf bucket.
        wait_until("Prometheus having two scrapes of the histogram", lambda: prometheus_value(
            devcluster, f'count_over_time(healthscale_it_request_seconds_bucket{{run="{RUN}",le="+Inf"}}[5m]) >= 2'),
            timeout=120)
        yield serving
    finally:
        targets.unlink(missing_ok=True)
        serving.close()


def _latency_spec(threshold: float) -> clinicalslo.ClinicalSLOSpec:
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": "triage", "namespace": "default"},
        "spec": {
            "journey": "ED triage screens",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triage"},
            "indicators": {"demand": "vector(1)", "latencyHistogram": HISTOGRAM},
            # 7d: averaged at 5m (slo.resolution), so a value exists within minutes of the first scrape.
            "objectives": {"latency": {"percentile": 95, "thresholdSeconds": threshold}, "window": "7d"},
            "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 10, "startupSeconds": 60},
        },
    }).spec


def test_the_latency_objective_of_a_real_histogram_matches_what_prometheus_computes(
        devcluster: DevCluster, histogram: HistogramExporter) -> None:
    client = RecordingPrometheus(devcluster.prometheus_url)

    def measured_over_the_window() -> cycle.Measured | None:
        found = cycle.measure(client, _latency_spec(1.5), cycle.Memory(), int(time.time()), MINUTE)[slo.LATENCY]
        return found if found.report is not None and found.report.compliance is not None else None

    # The 7d window steps at 5m: it has a value once a 5m-aligned instant has two scrapes behind it.
    latency = wait_until("the 7d compliance of the new histogram", measured_over_the_window, timeout=480, pause=15)
    assert latency.report is not None
    assert latency.bucket == "1.5"
    # 20% of requests over 1.5 s against the 5% the objective allows: a burn of 4x, compliance 80%.
    assert latency.report.compliance == pytest.approx(0.8, rel=1e-3)
    assert latency.report.budget_remaining == pytest.approx(-3.0, rel=1e-3)
    raw = prometheus_value(devcluster, f'1 - sum(rate(healthscale_it_request_seconds_bucket{{run="{RUN}",le="1.5"}}[5m]))'
                                       f' / sum(rate(healthscale_it_request_seconds_bucket{{run="{RUN}",le="+Inf"}}[5m]))')
    assert raw is not None
    assert latency.report.rates["5m"] == pytest.approx(raw / 0.05, rel=1e-3)
    assert latency.report.rates["5m"] == pytest.approx(4.0, rel=1e-3)
    assert not latency.report.fast_burn


def test_a_threshold_between_buckets_of_a_real_histogram_names_the_boundaries(
        devcluster: DevCluster, histogram: HistogramExporter) -> None:
    measured = cycle.measure(RecordingPrometheus(devcluster.prometheus_url), _latency_spec(1.0), cycle.Memory(),
                             int(time.time()), MINUTE)
    latency = measured[slo.LATENCY]
    assert (latency.report, latency.reason) == (None, "LatencyBucketMissing")
    assert "thresholdSeconds 1 " in latency.message and "its boundaries are 0.1, 0.5, 1.5, 5, +Inf" in latency.message
