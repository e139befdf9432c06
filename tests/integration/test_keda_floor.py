"""healthscale with a real KEDA (issue 13, part 3): the floor goes to the ScaledObject, never to KEDA's HPA.

KEDA's operator and metrics adapter run on the dev cluster (``tools/devcluster/keda.sh``). A
ScaledObject with a Prometheus trigger on the dev cluster's Prometheus scales a Deployment; the
trigger's metric is served by a ``TextExporter`` the test controls. With a surge floor of 4,
healthscale raises the ScaledObject's ``minReplicaCount`` (its own field manager, the original
recorded first) and KEDA keeps it: its HPA follows, and KEDA still scales above the floor when the
metric rises. Switching to Preview, and deleting the ClinicalSLO, put the original back.
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

from clusterlib import (GROUP, VERSION, DevCluster, TextExporter, active_surge_schedule, deployment,
                        release_and_delete, replicas, running_operator, status_of, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.addons]

KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
FLOOR, ORIGINAL, CEILING = 4, 1, 10
KEDA_POLLING_SECONDS = 5
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def keda(addon: Callable[[str], None]) -> None:
    addon("keda")


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, keda: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(devcluster, log, "hs-keda-*"):
        yield log


class Demand:
    """The trigger's metric, ``healthscale_it_keda_demand{run=<RUN>}``, scraped by the dev Prometheus."""

    def __init__(self, devcluster: DevCluster) -> None:
        self.value = 1.0
        self.exporter = TextExporter(lambda: f'healthscale_it_keda_demand{{run="{RUN}"}} {self.value}\n')
        self.targets = Path(devcluster.env["DEVCLUSTER_PROMETHEUS_TARGETS_DIR"]) / f"keda-{RUN}.json"
        self.targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{self.exporter.port}"],
                                             "labels": {"job": f"keda-{RUN}"}}]))

    def close(self) -> None:
        self.targets.unlink(missing_ok=True)
        self.exporter.close()


@pytest.fixture
def demand(devcluster: DevCluster) -> Iterator[Demand]:
    served = Demand(devcluster)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-keda-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def scaled_object(namespace: str, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "ehr-api", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": "ehr-api"},  # kind Deployment by default
            "minReplicaCount": ORIGINAL, "maxReplicaCount": CEILING,
            "pollingInterval": KEDA_POLLING_SECONDS, "cooldownPeriod": 30,
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": prometheus_url, "query": f'sum(healthscale_it_keda_demand{{run="{RUN}"}})',
                "threshold": "1"}}],
        },
    }


def slo(namespace: str, mode: str = "Active") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace,
                     "labels": {"healthscale.io/journey-group": "emergency"}},
        "spec": {
            "journey": "ED triage screens", "criticality": "critical",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "mode": mode,
            # A perReplica far above the demand: the plan is the surge floor alone.
            "indicators": {"demand": f'sum(healthscale_it_keda_demand{{run="{RUN}"}})'},
            "capacity": {"perReplica": 1000, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
        },
    }


def read_scaled_object(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        KEDA[0], KEDA[1], namespace, KEDA[2], "ehr-api")
    return found


def min_replica_count(api: k8s_client.ApiClient, namespace: str) -> int:
    return int(read_scaled_object(api, namespace)["spec"].get("minReplicaCount", 0))


def keda_hpa(api: k8s_client.ApiClient, namespace: str) -> k8s_client.V2HorizontalPodAutoscaler | None:
    found = k8s_client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace).items
    return next((item for item in found if item.metadata.name == "keda-hpa-ehr-api"), None)


def hpa_floor(api: k8s_client.ApiClient, namespace: str) -> int | None:
    hpa = keda_hpa(api, namespace)
    return None if hpa is None else int(hpa.spec.min_replicas or 1)


def managers(item: dict[str, Any] | k8s_client.V2HorizontalPodAutoscaler) -> set[str]:
    """The field managers that wrote the object (a ScaledObject's JSON, or the client's HPA model)."""
    if isinstance(item, dict):
        return {str(entry["manager"]) for entry in item["metadata"].get("managedFields") or []}
    return {str(entry.manager) for entry in item.metadata.managed_fields or []}


def set_mode(api: k8s_client.ApiClient, namespace: str, mode: str) -> None:
    k8s_client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos", "ed-triage", {"spec": {"mode": mode}})


def test_healthscale_raises_the_scaled_objects_floor_keda_keeps_it_scales_above_it_and_both_restores_put_it_back(
        api: k8s_client.ApiClient, devcluster: DevCluster, operator: Path, namespace: str, demand: Demand) -> None:
    custom = k8s_client.CustomObjectsApi(api)
    deployment(api, namespace, "ehr-api", 1)
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, devcluster.prometheus_url))
    wait_until("KEDA's HPA for the ScaledObject", lambda: hpa_floor(api, namespace) == ORIGINAL, timeout=90)
    for body in (active_surge_schedule(namespace, "flu-season", "flu", FLOOR), slo(namespace)):
        plural = "surgeschedules" if body["kind"] == "SurgeSchedule" else "clinicalslos"
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    # The floor goes to the ScaledObject, recorded first, by healthscale's field manager ...
    wait_until("the ScaledObject's minReplicaCount raised to the surge floor",
               lambda: min_replica_count(api, namespace) == FLOOR)
    held = read_scaled_object(api, namespace)
    assert "healthscale" in managers(held)
    status = status_of(api, namespace, "ed-triage")
    scaled_uid = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).metadata.uid
    assert status["originals"] == [{"kind": "ScaledObject", "name": "ehr-api", "uid": held["metadata"]["uid"],
                                    "field": "minReplicaCount", "value": ORIGINAL, "scales": "Deployment/ehr-api",
                                    "scalesUid": scaled_uid}]
    owner = next(item for item in status["conditions"] if item["type"] == "FloorOwner")
    assert (owner["status"], owner["reason"]) == ("True", "Held") and "ScaledObject ehr-api" in owner["message"]

    # ... and KEDA keeps it over several of its reconciles: its HPA follows, never written by healthscale.
    wait_until("KEDA's HPA minReplicas following the ScaledObject", lambda: hpa_floor(api, namespace) == FLOOR)
    wait_until("the Deployment at the floor", lambda: replicas(api, namespace) == FLOOR)
    for _ in range(4):
        time.sleep(KEDA_POLLING_SECONDS)
        assert (min_replica_count(api, namespace), hpa_floor(api, namespace)) == (FLOOR, FLOOR)
    hpa = keda_hpa(api, namespace)
    assert hpa is not None and "healthscale" not in managers(hpa)
    ready = {item["type"]: item["status"] for item in read_scaled_object(api, namespace)["status"]["conditions"]}
    assert ready.get("Ready") == "True", ready

    # Reactive scaling above the floor still works: KEDA takes the Deployment to 7 for a demand of 7.
    demand.value = 7.0
    wait_until("KEDA scaling the Deployment above the floor", lambda: replicas(api, namespace) == 7, timeout=150)
    assert min_replica_count(api, namespace) == FLOOR

    # Preview puts the original back (and records nothing); Active raises it again; delete restores it.
    set_mode(api, namespace, "Preview")
    wait_until("the original minReplicaCount back in Preview", lambda: min_replica_count(api, namespace) == ORIGINAL)
    wait_until("no records in Preview", lambda: not status_of(api, namespace, "ed-triage").get("originals"))
    wait_until("KEDA's HPA back at the original floor", lambda: hpa_floor(api, namespace) == ORIGINAL)
    set_mode(api, namespace, "Active")
    wait_until("the floor raised again in Active", lambda: min_replica_count(api, namespace) == FLOOR)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the original minReplicaCount back after delete", lambda: min_replica_count(api, namespace) == ORIGINAL)
    assert keda_hpa(api, namespace) is not None  # KEDA's HPA was never deleted or taken over


def test_a_paused_scaled_object_is_left_alone_and_the_status_says_why(
        api: k8s_client.ApiClient, devcluster: DevCluster, operator: Path, namespace: str, demand: Demand) -> None:
    custom = k8s_client.CustomObjectsApi(api)
    deployment(api, namespace, "ehr-api", 1)
    paused = scaled_object(namespace, devcluster.prometheus_url)
    paused["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "2"}
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2], paused)
    for body in (active_surge_schedule(namespace, "flu-season", "flu", FLOOR), slo(namespace)):
        plural = "surgeschedules" if body["kind"] == "SurgeSchedule" else "clinicalslos"
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    def left() -> dict[str, Any] | None:
        found = [item for item in status_of(api, namespace, "ed-triage").get("conditions", [])
                 if item["type"] == "FloorOwner"]
        return found[0] if found and found[0]["reason"] == "LeftToOwner" else None

    owner = wait_until("FloorOwner saying the paused ScaledObject is left alone", left)
    assert owner["status"] == "False" and "autoscaling.keda.sh/paused-replicas" in owner["message"]
    wait_until("KEDA holding the Deployment at the paused count", lambda: replicas(api, namespace) == 2, timeout=90)
    assert min_replica_count(api, namespace) == ORIGINAL
    assert "healthscale" not in managers(read_scaled_object(api, namespace))
    assert not status_of(api, namespace, "ed-triage").get("originals")


def test_a_write_holding_a_deleted_scaled_objects_uid_is_refused_as_re_created(
        api: k8s_client.ApiClient, devcluster: DevCluster, keda: None, namespace: str) -> None:
    from healthscale import ports
    from healthscale.adapters import kube

    custom = k8s_client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, devcluster.prometheus_url))
    old = read_scaled_object(api, namespace)["metadata"]["uid"]
    custom.delete_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2], "ehr-api")
    wait_until("the ScaledObject gone", lambda: not custom.list_namespaced_custom_object(
        *KEDA[:2], namespace, KEDA[2])["items"], timeout=60)
    custom.create_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2],
                                           scaled_object(namespace, devcluster.prometheus_url))
    base = devcluster.api_client()
    workloads = kube.Workloads(base)
    try:
        with pytest.raises(ports.NotFound, match="re-created"):
            workloads.write_field(namespace, "ScaledObject", "ehr-api", old, "minReplicaCount", 4)
        assert workloads.read_field(namespace, "ScaledObject", "ehr-api", "minReplicaCount").value == ORIGINAL
    finally:
        workloads.close()
        base.close()
