"""The operator against the local control plane and Prometheus: plan, scale, report, restore.

One `healthscale run` process watches the namespaces `hs-it-*`; each test works in its own
namespace. Demand is the dev cluster's backfilled ED-arrivals series (two weeks of history).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (ED_DEMAND, GROUP, VERSION, DevCluster, active_surge_schedule, deployment,
                        release_and_delete, replicas, running_operator, status_of, wait_until)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The operator, started once the CRDs are installed (``api``)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(devcluster, log, "hs-it-*"):
        yield log


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-it-{uuid.uuid4().hex[:6]}"
    core = k8s_client.CoreV1Api(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def slo_manifest(namespace: str, name: str = "ed-triage", mode: str = "Active", demand: str = ED_DEMAND,
                 **capacity: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": namespace, "labels": {"healthscale.io/journey-group": "emergency"}},
        "spec": {
            "journey": "ED triage screens",
            "criticality": "critical",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "mode": mode,
            "indicators": {"demand": demand},
            "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60, **capacity},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
        },
    }


def custom(api: k8s_client.ApiClient) -> k8s_client.CustomObjectsApi:
    return k8s_client.CustomObjectsApi(api)


def create(api: k8s_client.ApiClient, body: dict[str, Any]) -> None:
    plural = {"ClinicalSLO": "clinicalslos", "SurgeSchedule": "surgeschedules"}[body["kind"]]
    custom(api).create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], plural, body)


def slo_status(api: k8s_client.ApiClient, namespace: str, name: str = "ed-triage") -> dict[str, Any]:
    return status_of(api, namespace, name)


def planned(api: k8s_client.ApiClient, namespace: str, name: str = "ed-triage") -> dict[str, Any] | None:
    status = slo_status(api, namespace, name)
    return status if status.get("desiredReplicas") is not None else None


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {item["type"]: item["status"] for item in status.get("conditions", [])}


def test_an_active_slo_scales_its_deployment_to_the_plan_and_explains_it(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create(api, slo_manifest(namespace))
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    assert conditions(status) == {"Ready": "True", "MetricsAvailable": "True", "Forecasting": "True",
                                  "DemandAnomaly": "False"}
    assert status["reason"] in {"forecast", "reactive", "schedule", "minimum"}
    assert status["currentDemand"] > 0
    assert status["forecastPeak"] > 0
    assert status["model"] in {"harmonic", "seasonal-naive"}
    assert str(status["desiredReplicas"]) in status["explanation"]
    desired = int(status["desiredReplicas"])
    assert desired > 1, "ED demand (at least ~3 requests/s at night) at 1/replica needs more than one replica"
    wait_until("the Deployment at the planned replicas", lambda: replicas(api, namespace) == desired)
    recorded = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    uid = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).metadata.uid
    assert recorded["status"]["originals"] == [
        {"kind": "Deployment", "name": "ehr-api", "uid": uid, "field": "replicas", "value": 1}]
    events = k8s_client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ClinicalSLO").items
    scaled = [event for event in events if event.reason == "ScaledUp"]
    assert scaled and f"1 -> {desired}" in scaled[0].message

    def scheduled_pods() -> list[k8s_client.V1Pod] | None:
        # One listing per poll: the pod count and their binding must come from the same read.
        pods = k8s_client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=ehr-api").items
        bound = [pod for pod in pods if pod.spec.node_name]
        return bound if len(pods) == desired and len(bound) == desired else None

    pods = wait_until("all the new pods scheduled on KWOK nodes", scheduled_pods)
    nodes = {node.metadata.name for node in k8s_client.CoreV1Api(api).list_node().items}
    assert len(pods) == desired and {pod.spec.node_name for pod in pods} <= nodes


def test_deleting_the_slo_restores_the_replicas_it_found(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create(api, slo_manifest(namespace))
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    wait_until("the scale-up", lambda: replicas(api, namespace) == int(status["desiredReplicas"]))
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the original replica count", lambda: replicas(api, namespace) == 1)

    def gone() -> bool:
        try:
            slo_status(api, namespace)
        except k8s_client.ApiException as error:
            return error.status == 404
        return False

    wait_until("the finalizer to let the ClinicalSLO go", gone)


def test_preview_mode_plans_and_reports_but_never_scales(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create(api, slo_manifest(namespace, mode="Preview"))
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    assert int(status["desiredReplicas"]) > 1
    assert "Preview" in next(item["message"] for item in status["conditions"] if item["type"] == "Ready")
    time.sleep(5)
    assert replicas(api, namespace) == 1
    assert not slo_status(api, namespace).get("originals")


def test_with_an_hpa_the_operator_moves_its_floor_and_leaves_replicas_to_it(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    autoscaling = k8s_client.AutoscalingV2Api(api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, k8s_client.V2HorizontalPodAutoscaler(
        metadata=k8s_client.V1ObjectMeta(name="ehr-api"),
        spec=k8s_client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s_client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                      name="ehr-api"),
            min_replicas=1, max_replicas=30,
            metrics=[k8s_client.V2MetricSpec(type="Resource", resource=k8s_client.V2ResourceMetricSource(
                name="cpu", target=k8s_client.V2MetricTarget(type="Utilization", average_utilization=70)))],
        ),
    ))
    create(api, slo_manifest(namespace))
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    desired = int(status["desiredReplicas"])
    floor = wait_until("the HPA floor raised", lambda: (
        autoscaling.read_namespaced_horizontal_pod_autoscaler("ehr-api", namespace).spec.min_replicas
        if autoscaling.read_namespaced_horizontal_pod_autoscaler("ehr-api", namespace).spec.min_replicas > 1 else None))
    assert floor == min(desired, 30)
    recorded = slo_status(api, namespace)["originals"]
    uid = autoscaling.read_namespaced_horizontal_pod_autoscaler("ehr-api", namespace).metadata.uid
    scaled_uid = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).metadata.uid
    assert recorded == [{"kind": "HorizontalPodAutoscaler", "name": "ehr-api", "uid": uid, "field": "minReplicas",
                         "value": 1, "scales": "Deployment/ehr-api", "scalesUid": scaled_uid}]
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the HPA floor restored", lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "ehr-api", namespace).spec.min_replicas == 1)


def test_an_active_surge_floor_wins_and_names_the_surge(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create(api, slo_manifest(namespace, perReplica=5))  # forecast alone asks for far fewer than the floor
    now = time.gmtime()
    create(api, active_surge_schedule(namespace, "drill", "mass-casualty-drill", floor=35))
    assert now.tm_year >= 2026
    status = wait_until("the surge to decide", lambda: (
        lambda current: current if current.get("surge") == "mass-casualty-drill" else None)(slo_status(api, namespace)))
    assert status["reason"] == "schedule"
    assert status["desiredReplicas"] == 35
    assert "mass-casualty-drill floor 35" in status["explanation"]
    wait_until("35 replicas", lambda: replicas(api, namespace) == 35)
    schedule = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", "drill")
    windows = schedule["status"]["windows"]
    assert [window["name"] for window in windows] == ["mass-casualty-drill"]
    assert windows[0]["active"] is True


def test_an_empty_demand_query_is_no_forecast_and_never_scales_down(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 6)
    create(api, slo_manifest(namespace, demand='sum(healthscale_demo_requests_per_second{journey="no-such"})'))
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    assert conditions(status)["MetricsAvailable"] == "False"
    assert conditions(status)["Forecasting"] == "False"
    assert status["desiredReplicas"] == 6
    assert "scale-down held: no forecast" in status["explanation"]
    time.sleep(3)
    assert replicas(api, namespace) == 6


@pytest.mark.parametrize(
    ("capacity", "rule"),
    [
        pytest.param({"minReplicas": 10, "maxReplicas": 5}, "minReplicas must be <= maxReplicas",
                     id="minReplicas above maxReplicas is rejected by the CRD's CEL rule"),
        pytest.param({"perReplica": 0}, "perReplica", id="a zero perReplica is rejected by the OpenAPI minimum"),
    ],
)
def test_the_api_server_rejects_invalid_specs_with_the_rule(
        api: k8s_client.ApiClient, namespace: str, capacity: dict[str, Any], rule: str) -> None:
    body = slo_manifest(namespace, **capacity)
    with pytest.raises(k8s_client.ApiException) as raised:
        create(api, body)
    assert raised.value.status == 422
    causes = json.loads(raised.value.body)["details"]["causes"]
    assert any(rule in cause["message"] and cause["field"].startswith("spec.capacity") for cause in causes), causes


def test_a_fast_error_budget_burn_is_reported_and_blocks_scale_down(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 30)
    # 10/replica: ED demand (at most ~67/s, p90 ~39/s at 17:00 Chicago) with the fast burn's extra 25%
    # headroom asks for at most ~10 replicas at any hour, so 30 can only be a held scale-down. At
    # 1/replica the plan rose above 30 from about 09:00 to 22:00 Chicago time (35 at 11:00), a
    # scale-up the burn rightly does not hold back: the test then failed at those hours only.
    body = slo_manifest(namespace, perReplica=10)
    # 5% of requests failing against a 99.9% objective: a burn of 50x on every window.
    body["spec"]["indicators"].update(errors="vector(0.5)", total="vector(10)")
    body["spec"]["objectives"] = {"availability": 99.9, "window": "28d"}
    create(api, body)
    status = wait_until("a plan in status", lambda: planned(api, namespace))
    assert status["burnRates"]["1h"] == pytest.approx(50.0, rel=1e-3)
    assert status["burnRates"]["5m"] == pytest.approx(50.0, rel=1e-3)
    assert status["errorBudgetRemaining"] == pytest.approx(-49.0, rel=1e-3)
    assert status["desiredReplicas"] == 30
    assert "scale-down held: error budget burning fast" in status["explanation"]
    assert status["forecastPeak"] is None or status["forecastPeak"] / 10 < 30, "the forecast asks for 30 or more: no scale-down to hold"
    time.sleep(3)
    assert replicas(api, namespace) == 30


def test_one_bad_object_never_harms_another(api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    """A ClinicalSLO and a SurgeSchedule that pass the CRD but not the models say so in their own
    status and Events; the valid ClinicalSLO beside them still gets its surge floor."""
    deployment(api, namespace, "ehr-api", 1)
    broken = slo_manifest(namespace, name="too-many-points")
    broken["spec"]["targetRef"]["name"] = "other"
    broken["spec"]["forecast"] = {"history": "90d", "step": "1m", "horizon": "1h"}  # 129,600 points a read
    create(api, broken)
    never = active_surge_schedule(namespace, "never", "april-31st", floor=30)
    never["spec"]["surges"] = [{"name": "april-31st", "cron": "0 0 31 4 *", "duration": "1h", "minReplicas": 30}]
    create(api, never)
    create(api, slo_manifest(namespace, perReplica=50))
    create(api, active_surge_schedule(namespace, "drill", "drill", floor=6))

    wait_until("the valid ClinicalSLO at its surge floor", lambda: replicas(api, namespace) == 6)
    invalid = wait_until("Ready=False on the invalid ClinicalSLO", lambda: next(
        (item for item in slo_status(api, namespace, "too-many-points").get("conditions", [])
         if item["type"] == "Ready" and item["status"] == "False"), None))
    assert invalid["reason"] == "InvalidSpec" and "spec.forecast" in invalid["message"], invalid
    schedule = wait_until("Ready=False on the invalid SurgeSchedule", lambda: next(
        (item for item in (custom(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "surgeschedules", "never").get("status") or {}).get("conditions", [])
         if item["type"] == "Ready" and item["status"] == "False"), None))
    assert schedule["reason"] == "InvalidSpec" and "never fires" in schedule["message"], schedule
    # The scale write comes before the status write in a reconcile, so the floor can be seen first.
    wait_until("Ready=True on the valid ClinicalSLO", lambda: conditions(slo_status(api, namespace)).get("Ready") == "True")
    warnings = {(event.involved_object.name, event.reason) for event in k8s_client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="type=Warning").items}
    assert {("too-many-points", "InvalidSpec"), ("never", "InvalidSpec")} <= warnings, warnings
    assert replicas(api, namespace) == 6, "the never-firing schedule's floor of 30 must not apply"
