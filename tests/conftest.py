"""Shared fixtures: the example ClinicalSLO and SurgeSchedule manifests from the project's docs."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml

# Tests find tools installed beside this Python (hadolint, lint-imports, healthscale) by name: put its
# bin directory first on PATH, so `.venv/bin/pytest` works as `make test` does, without activating .venv.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])

EXAMPLE_MANIFESTS = """
apiVersion: healthscale.io/v1alpha1
kind: ClinicalSLO
metadata: {name: ed-triage-chart, namespace: ehr, labels: {healthscale.io/journey-group: emergency}}
spec:
  journey: "Open patient chart from ED triage"
  criticality: critical
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: ehr-api}
  mode: Active
  objectives:
    latency: {percentile: 95, thresholdSeconds: 1.5}
    availability: 99.9
    window: 28d
  indicators:
    demand: sum(rate(http_requests_total{service="ehr-api"}[5m]))
    latencyHistogram: http_request_duration_seconds_bucket{service="ehr-api"}
    errors: sum(rate(http_requests_total{service="ehr-api",code=~"5.."}[5m]))
    total: sum(rate(http_requests_total{service="ehr-api"}[5m]))
  capacity: {perReplica: 40, minReplicas: 2, maxReplicas: 60, startupSeconds: 120, headroomPercent: 10}
  forecast: {history: 14d, step: 5m, horizon: 2h, model: auto}
  scaleDown: {stabilizationSeconds: 600, maxStepPercent: 25}
  residency: {dataClass: phi, regions: [eu-west-1, eu-central-1]}
---
apiVersion: healthscale.io/v1alpha1
kind: SurgeSchedule
metadata: {name: ed-shift-changes, namespace: ehr}
spec:
  timezone: America/Chicago
  selector: {matchLabels: {healthscale.io/journey-group: emergency}}
  sloRefs: [ed-triage-chart]
  surges:
  - {name: morning-rounds, cron: "0 7 * * 1-5", duration: 2h, leadTime: 20m, multiplier: 1.5, minReplicas: 10}
  - {name: flu-season, start: "2026-12-01", end: "2027-03-01", multiplier: 1.3}
  - {name: vaccination-drive, start: "2026-12-12T08:00", end: "2026-12-12T18:00", minReplicas: 20}
"""

_SLO_DOCUMENT, _SCHEDULE_DOCUMENT = yaml.safe_load_all(EXAMPLE_MANIFESTS)

# Speed is measured by `make bench`, never asserted: no per-example deadline, which a busy machine
# (make test runs two workers on two cores) would turn into failures that say nothing about the code.
hypothesis.settings.register_profile("healthscale", deadline=None)
hypothesis.settings.load_profile("healthscale")

STANDALONE = frozenset({"tests/integration/test_alert_rules_fire.py", "tests/integration/test_bootstrap.py",
                        "tests/integration/test_loadtest.py"})
"""Integration tests that bring their own parts (a Prometheus, a fresh clone, a load generator) and never
use the local cluster; tests/integration/conftest.py fails the collection if one starts to."""


BESIDE = frozenset({"tests/integration/test_deferral_on_cluster.py", "tests/integration/test_deferral_room.py",
                    "tests/integration/test_deferral_keda.py"})
"""Cluster tests that need nothing of the others' timing (their own namespaces, nodes and operators, no
restarts of shared parts): each module may run on the other worker, beside the ordered ones."""


def uses_the_cluster(nodeid: str) -> bool:
    module = nodeid.split("::", 1)[0]
    return module.startswith("tests/integration/") and module not in STANDALONE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The standalone modules run beside the cluster's tests: they must not use it.
    wrong = sorted({item.nodeid.split("::", 1)[0] for item in items
                    if "devcluster" in getattr(item, "fixturenames", ()) and not uses_the_cluster(item.nodeid)})
    if wrong:
        raise pytest.UsageError(f"{', '.join(wrong)} use the dev cluster: take them out of STANDALONE in "
                                "tests/conftest.py, or make test runs them beside the cluster's other tests")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs two pytest-xdist workers: every test of the one local cluster goes to one worker,
    in collection order (the cluster's tests are not independent of each other's timing), while the
    other worker takes the unit, chart, standalone and ``BESIDE`` tests module by module."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only where xdist runs the session

    class ClusterInOrder(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "the local cluster" if uses_the_cluster(nodeid) and module not in BESIDE else module

    return ClusterInOrder(config, log)


@pytest.fixture
def slo_document() -> dict[str, Any]:
    """A fresh copy of the example ClinicalSLO manifest, safe to modify."""
    return copy.deepcopy(_SLO_DOCUMENT)


@pytest.fixture
def schedule_document() -> dict[str, Any]:
    """A fresh copy of the example SurgeSchedule manifest, safe to modify."""
    return copy.deepcopy(_SCHEDULE_DOCUMENT)
