"""Smoke tests of the local dev cluster itself: KWOK nodes, real scheduling, backfilled Prometheus."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from kubernetes import client as k8s_client

from clusterlib import wait_until

pytestmark = pytest.mark.integration

METRIC = "healthscale_demo_requests_per_second"


class DevCluster(Protocol):  # what these tests use of conftest.DevCluster
    prometheus_url: str


def prom_get(cluster: DevCluster, path: str, **params: str) -> Any:
    url = f"{cluster.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


# ------------------------------------------------------------------- nodes
def test_nodes_in_three_regions_are_ready(core_v1: k8s_client.CoreV1Api) -> None:
    nodes = core_v1.list_node(label_selector="type=kwok").items
    assert len(nodes) >= 6
    regions: dict[str, set[str]] = {}
    for node in nodes:
        labels = node.metadata.labels or {}
        region = labels.get("topology.kubernetes.io/region")
        zone = labels.get("topology.kubernetes.io/zone")
        assert region and zone, f"{node.metadata.name} lacks region/zone labels: {labels}"
        assert zone.startswith(region), (node.metadata.name, region, zone)
        regions.setdefault(region, set()).add(zone)

        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        assert ready and ready[0].status == "True", f"{node.metadata.name} not Ready"
        # Managed by KWOK, schedulable, no leftover not-ready taint.
        assert (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"
        assert not node.spec.unschedulable
        assert not node.spec.taints, f"{node.metadata.name} taints: {node.spec.taints}"
        assert int(node.status.allocatable["pods"]) >= 100

    assert {"eu-west-1", "eu-central-1", "us-east-1"} <= set(regions)
    assert all(len(zones) >= 2 for zones in regions.values()), regions


# -------------------------------------------------------------- scheduling
@pytest.fixture
def namespace(core_v1: k8s_client.CoreV1Api) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core_v1.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core_v1.delete_namespace(name)


def test_deployment_pods_scheduled_on_kwok_nodes_and_ready(
    namespace: str, apps_v1: k8s_client.AppsV1Api, core_v1: k8s_client.CoreV1Api
) -> None:
    labels = {"app": "smoke"}
    container = k8s_client.V1Container(
        name="app",
        image="registry.k8s.io/pause:3.10",
        resources=k8s_client.V1ResourceRequirements(requests={"cpu": "500m", "memory": "256Mi"}),
    )
    deployment = k8s_client.V1Deployment(
        metadata=k8s_client.V1ObjectMeta(name="smoke"),
        spec=k8s_client.V1DeploymentSpec(
            replicas=3,
            selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(
                metadata=k8s_client.V1ObjectMeta(labels=labels),
                spec=k8s_client.V1PodSpec(containers=[container]),
            ),
        ),
    )
    apps_v1.create_namespaced_deployment(namespace, deployment)

    def available() -> int | None:
        status = apps_v1.read_namespaced_deployment_status("smoke", namespace).status
        return status.available_replicas if status.available_replicas == 3 else None

    wait_until("3 available replicas", available)

    kwok_nodes = {n.metadata.name for n in core_v1.list_node(label_selector="type=kwok").items}
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app=smoke").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name in kwok_nodes, pod.spec.node_name  # placed by kube-scheduler
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip, pod.metadata.name
        conditions = {c.type: c.status for c in pod.status.conditions}
        assert conditions.get("PodScheduled") == "True"
        assert conditions.get("Ready") == "True"
    events = core_v1.list_namespaced_event(namespace, field_selector="reason=Scheduled").items
    assert len(events) >= 3
    assert {e.reporting_component or e.source.component for e in events} == {"default-scheduler"}

    # Scale down: KWOK's pod-delete stage must really remove the extra pods.
    apps_v1.patch_namespaced_deployment_scale("smoke", namespace, {"spec": {"replicas": 1}})
    wait_until(
        "scale-down to 1 pod",
        lambda: len(core_v1.list_namespaced_pod(namespace, label_selector="app=smoke").items) == 1,
    )


# --------------------------------------------------------------- Prometheus
def test_prometheus_has_two_weeks_of_backfilled_demand(devcluster: DevCluster) -> None:
    now = time.time()
    data = prom_get(
        devcluster,
        "/api/v1/query_range",
        query=METRIC,
        start=str(now - 14 * 86400),
        end=str(now),
        step="300",
    )
    series = {s["metric"]["journey"]: s["values"] for s in data["result"]}
    assert {"call-centre", "ed-arrivals"} <= set(series), series.keys()

    # The ED trace has no gaps: its history covers the whole 14-day window.
    spans = {j: float(v[-1][0]) - float(v[0][0]) for j, v in series.items()}
    assert spans["ed-arrivals"] > 13 * 86400, spans
    assert len(series["ed-arrivals"]) > 13 * 288  # 5-minute steps
    values = [float(v) for _, v in series["ed-arrivals"]]
    assert min(values) >= 0 and max(values) > min(values)  # a real shape, not a constant
    # One series per journey: backfilled history and live scrapes are merged.
    assert len(data["result"]) == len(series)


def test_prometheus_has_a_recent_live_value(devcluster: DevCluster) -> None:
    up = prom_get(devcluster, "/api/v1/query", query='up{job="demand-replay"}')
    assert up["result"] and up["result"][0]["value"][1] == "1", up

    def recent() -> list[Any] | None:
        # Live scrapes every 5s; the backfill ends when up.sh ran. A sample
        # from the last minute proves the exporter feeds Prometheus now.
        result = prom_get(devcluster, "/api/v1/query",
                          query=f'timestamp({METRIC}{{journey="ed-arrivals"}})')["result"]
        return result if result and time.time() - float(result[0]["value"][1]) < 60 else None

    wait_until("a fresh sample of the ED demand", recent, timeout=60)
    value = prom_get(devcluster, "/api/v1/query", query=f'{METRIC}{{journey="ed-arrivals"}}')
    assert float(value["result"][0]["value"][1]) >= 0
