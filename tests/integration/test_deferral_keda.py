"""Deferring KEDA ScaledObjects around a surge, on the real KEDA (issue 16).

KEDA's operator and metrics adapter run on the dev cluster (``tools/devcluster/keda.sh``). Three
ScaledObjects carry the deferrable label, each with a Prometheus trigger on the dev Prometheus
(served by a ``TextExporter``) and each scaling its own Deployment:

- ``notification-batch`` (minReplicaCount 2): deferred from ``start - leadTime`` with KEDA's
  ``autoscaling.keda.sh/paused-replicas`` annotation at ``spec.defer.replicas`` (0), written by
  healthscale's field manager and recorded first as unset; KEDA honours it and scales the
  Deployment to 0. After the window the annotation is removed and KEDA scales it back;
- ``report-export``: already paused by someone else: left alone (AlreadyPaused), its value kept;
- ``ehr-api``: scales a ClinicalSLO's target: never paused (ClinicalTarget).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (GROUP, VERSION, DevCluster, TextExporter, deployment, release_and_delete, replicas,
                        running_operator, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.addons]

KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
PAUSED = "autoscaling.keda.sh/paused-replicas"
DEFERRABLE = {"healthscale.io/deferrable": "true"}
FINALIZER = "healthscale.io/restore-deferred"
FLOOR = 2
CYCLE = 20
KEDA_POLLING_SECONDS = 5
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def keda(addon: Callable[[str], None]) -> None:
    addon("keda")


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, keda: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(devcluster, log, "hs-kdefer-*", "--keda", "--deferral"):
        yield log


@pytest.fixture
def demand(devcluster: DevCluster) -> Iterator[None]:
    """The triggers' metric, ``healthscale_it_deferral_demand{run=<RUN>}`` (1: below every floor)."""
    exporter = TextExporter(lambda: f'healthscale_it_deferral_demand{{run="{RUN}"}} 1\n')
    targets = Path(devcluster.env["DEVCLUSTER_PROMETHEUS_TARGETS_DIR"]) / f"deferral-keda-{RUN}.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{exporter.port}"], "labels": {"job": f"deferral-{RUN}"}}]))
    try:
        yield
    finally:
        targets.unlink(missing_ok=True)
        exporter.close()


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-kdefer-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def local(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))


def scaled_object(namespace: str, name: str, prometheus_url: str, paused: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": DEFERRABLE,
                     "annotations": {PAUSED: paused} if paused is not None else {}},
        "spec": {
            "scaleTargetRef": {"name": name},  # kind Deployment by default
            "minReplicaCount": FLOOR, "maxReplicaCount": 10,
            "pollingInterval": KEDA_POLLING_SECONDS, "cooldownPeriod": 30,
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": prometheus_url, "query": f'sum(healthscale_it_deferral_demand{{run="{RUN}"}})',
                "threshold": "1"}}],
        },
    }


def schedule(namespace: str, start: float, end: float, lead_seconds: int) -> dict[str, Any]:
    # Its selector selects no ClinicalSLO (the Preview one below would make deferral a preview).
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
        "metadata": {"name": "flu-clinic", "namespace": namespace},
        "spec": {"timezone": "UTC", "selector": {"matchLabels": {"healthscale.io/journey-group": "emergency"}},
                 "surges": [{"name": "flu-vaccination-day", "start": local(start), "end": local(end),
                             "leadTime": f"{lead_seconds}s", "minReplicas": 1}],
                 "defer": {"selector": {"matchLabels": DEFERRABLE}, "replicas": 0}},
    }


def clinical_slo(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace},
        "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": "Preview",
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                 "indicators": {"demand": "vector(2)"},
                 "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 10, "startupSeconds": 30},
                 "forecast": {"history": "1d", "step": "1m", "horizon": "30m"}},
    }


def read_scaled_object(api: k8s_client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        KEDA[0], KEDA[1], namespace, KEDA[2], name)
    return found


def paused(api: k8s_client.ApiClient, namespace: str, name: str) -> str | None:
    annotations = read_scaled_object(api, namespace, name)["metadata"].get("annotations") or {}
    return annotations.get(PAUSED)


def annotation_managers(item: dict[str, Any]) -> set[str]:
    """The field managers that own the paused-replicas annotation."""
    return {str(entry["manager"]) for entry in item["metadata"].get("managedFields") or []
            if f"f:{PAUSED}" in ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations", {})}


def schedule_status(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "surgeschedules", "flu-clinic")
    return found


def events(api: k8s_client.ApiClient, namespace: str, reason: str) -> list[k8s_client.CoreV1Event]:
    return [item for item in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items if item.reason == reason]


def test_a_surge_pauses_a_deferrable_scaled_object_keda_holds_it_at_zero_and_resumes_it_after(
        api: k8s_client.ApiClient, devcluster: DevCluster, operator: Path, namespace: str, demand: None) -> None:
    custom = k8s_client.CustomObjectsApi(api)
    for name in ("notification-batch", "report-export", "ehr-api"):
        deployment(api, namespace, name, FLOOR)
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, "notification-batch", devcluster.prometheus_url))
    # Paused by its owner at 1 before any surge: healthscale must leave it, and its value, alone.
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, "report-export", devcluster.prometheus_url, "1"))
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, "ehr-api", devcluster.prometheus_url))
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", clinical_slo(namespace))
    wait_until("KEDA holding report-export at its owner's paused count",
               lambda: replicas(api, namespace, "report-export") == 1, timeout=90)
    assert replicas(api, namespace, "notification-batch") == FLOOR

    now = time.time()
    start, end, lead = now + 75, now + 150, 45
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules",
                                           schedule(namespace, start, end, lead))

    # During deferral: healthscale's annotation at "0", recorded first as unset; KEDA scales to 0.
    wait_until("notification-batch paused at 0", lambda: paused(api, namespace, "notification-batch") == "0",
               timeout=start - time.time() + CYCLE + 10)
    assert time.time() < start, "deferral starts at start - leadTime, before the window opens"
    held = read_scaled_object(api, namespace, "notification-batch")
    assert annotation_managers(held) == {"healthscale"}
    status = schedule_status(api, namespace)["status"]
    (record,) = status["deferred"]
    assert record == {"kind": "ScaledObject", "name": "notification-batch", "uid": held["metadata"]["uid"],
                      "field": "pausedReplicas", "original": {}, "written": {"pausedReplicas": "0"},
                      "since": record["since"], "until": local(end) + "Z", "cause": "Surge",
                      "causeName": "flu-vaccination-day"}
    assert status["deferredCount"] == 1
    assert {(item["kind"], item["name"], item["reason"]) for item in status["notDeferred"]} == {
        ("ScaledObject", "report-export", "AlreadyPaused"), ("ScaledObject", "ehr-api", "ClinicalTarget")}
    assert FINALIZER in schedule_status(api, namespace)["metadata"]["finalizers"]
    wait_until("KEDA scaling notification-batch to 0", lambda: replicas(api, namespace, "notification-batch") == 0,
               timeout=60)
    assert paused(api, namespace, "report-export") == "1"
    assert paused(api, namespace, "ehr-api") is None, "a ScaledObject scaling a ClinicalSLO's target is never paused"
    assert replicas(api, namespace, "ehr-api") == FLOOR
    report = read_scaled_object(api, namespace, "report-export")
    assert "healthscale" not in annotation_managers(report)

    # After the window: the annotation is removed and KEDA scales the Deployment back to its floor.
    wait_until("the paused-replicas annotation removed after the window",
               lambda: paused(api, namespace, "notification-batch") is None, timeout=end - time.time() + CYCLE + 10)
    assert time.time() >= end - 1, "nothing is restored before the window ends"
    wait_until("KEDA scaling notification-batch back to its floor",
               lambda: replicas(api, namespace, "notification-batch") >= FLOOR, timeout=90)
    settled = wait_until("the records cleared and the finalizer off", lambda: (
        found if not (found := schedule_status(api, namespace))["status"].get("deferred")
        and FINALIZER not in (found["metadata"].get("finalizers") or []) else None), timeout=CYCLE + 10)
    assert settled["status"]["deferredCount"] == 0

    def restored_events() -> list[k8s_client.CoreV1Event] | None:
        found = events(api, namespace, "Restored")
        return found if {item.involved_object.name for item in found} == {"flu-clinic", "notification-batch"} else None

    restored = wait_until("a Restored Event on the schedule and on the ScaledObject", restored_events, timeout=30)
    assert all("surge flu-vaccination-day" in item.message for item in restored), [item.message for item in restored]
    assert {item.involved_object.kind for item in restored} == {"SurgeSchedule", "ScaledObject"}
    assert paused(api, namespace, "report-export") == "1", "the owner's pause is kept after the window"
    assert replicas(api, namespace, "report-export") == 1
    assert paused(api, namespace, "ehr-api") is None
