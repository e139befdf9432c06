"""Burn-rate reads against the local stack's real Prometheus: short windows every cycle, long ones reused.

At a thousand ClinicalSLOs with error indicators, re-reading every window each minute would send
Prometheus 16,000 subqueries a minute, 2,000 of them over the whole 28-day SLO window.
"""

from __future__ import annotations

import time

import pytest

from clusterlib import DevCluster, RecordingPrometheus
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


def _windows(queries: list[str]) -> set[int]:
    return {int(query.split(")[", 1)[1].split("s:", 1)[0]) for query in queries}


def test_long_windows_are_reused_and_short_ones_read_every_cycle(devcluster: DevCluster) -> None:
    client, spec, memory, now = RecordingPrometheus(devcluster.prometheus_url), _spec(), cycle.Memory(), int(time.time())
    budget_window = 28 * 86400
    every_window = {*slo.WINDOW_SECONDS, budget_window}

    first = cycle.burn_report(client, spec, memory, now, MINUTE)
    assert first is not None
    assert first.rates["1h"] == pytest.approx(50.0, rel=1e-3)
    assert first.budget_remaining == pytest.approx(-49.0, rel=1e-3)
    assert first.fast_burn
    assert len(client.queries) == 2 * len(every_window)  # errors and total for every window

    client.queries.clear()
    next_cycle = cycle.burn_report(client, spec, memory, now + MINUTE, MINUTE)
    # The fast pairs' windows are read again; the long ones are reused (2h may go either way:
    # its per-query spread can bring its reuse down to the step).
    assert {5 * MINUTE, 30 * MINUTE, 60 * MINUTE} <= _windows(client.queries)
    assert not _windows(client.queries) & {6 * 3600, 86400, 3 * 86400, budget_window}
    assert next_cycle == first

    client.queries.clear()
    cycle.burn_report(client, spec, memory, now + slo.MAX_REUSE_SECONDS, MINUTE)
    assert _windows(client.queries) == every_window  # nothing is reused for longer than the cap


def test_editing_an_indicator_reads_every_window_of_it_again(devcluster: DevCluster) -> None:
    client, spec, memory, now = RecordingPrometheus(devcluster.prometheus_url), _spec(), cycle.Memory(), int(time.time())
    cycle.burn_report(client, spec, memory, now, MINUTE)
    edited = spec.model_copy(update={"indicators": spec.indicators.model_copy(update={"errors": "vector(1)"})})

    client.queries.clear()
    report = cycle.burn_report(client, edited, memory, now + MINUTE, MINUTE)
    assert report is not None and report.rates["3d"] == pytest.approx(100.0, rel=1e-3)  # 10% errors now
    new_errors_reads = [query for query in client.queries if query.startswith("avg_over_time((vector(1))[")]
    assert _windows(new_errors_reads) == {*slo.WINDOW_SECONDS, 28 * 86400}
    assert not any("vector(0.5)" in query for query in memory.burn_values)  # nothing of the old query is kept
