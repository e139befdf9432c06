"""Node room on the local control plane (issue 13, part 1): the operator holds room ahead of a
surge with a placeholder Deployment, and the scheduler, the ReplicaSet controller and the garbage
collector treat it as the design says.

One `healthscale run` process serves the namespaces `hs-room-*`. The ClinicalSLOs ask for one
replica on demand alone (perReplica is far above the dev cluster's demand) and name the region
eu-west-1; a SurgeSchedule opens a floor of 6 fifteen minutes from now: beyond the plan's lookahead
(60 s startup + a 5 minute cycle), within nodeProvisioningSeconds (900 s) more. So the operator asks
for 1 replica now and holds room for 5 more.

Karpenter itself (nodes appearing for the placeholders) is part 2 of the issue and not here: the
dev cluster's KWOK nodes have room to spare, so these tests show where the placeholders go, not
that nodes come for them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (ED_DEMAND, GROUP, VERSION, DevCluster, deployment, release_and_delete, running_operator,
                        PLACEHOLDER_PRIORITY_CLASS, placeholder_priority_class, status_of, wait_until)

pytestmark = pytest.mark.integration

PRIORITY_CLASS = PLACEHOLDER_PRIORITY_CLASS
FLOOR = 6


@pytest.fixture(scope="module")
def priority_class(api: k8s_client.ApiClient) -> str:
    return placeholder_priority_class(api)


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, priority_class: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("room-operator") / "operator.log"
    with running_operator(devcluster, log, "hs-room-*", "--placeholder-priority-class", priority_class):
        yield log


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-room-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def _minute(offset_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + offset_seconds))


def create_world(api: k8s_client.ApiClient, namespace: str, mode: str = "Active", on_node: str | None = None) -> None:
    if on_node is None:
        deployment(api, namespace, "ehr-api", 1)
    else:
        pinned_deployment(api, namespace, on_node)
    custom = k8s_client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
        "metadata": {"name": "flu-clinic", "namespace": namespace},
        "spec": {"timezone": "UTC", "sloRefs": ["ed-triage"],
                 "surges": [{"name": "flu-clinic", "start": _minute(15 * 60), "end": _minute(3 * 3600),
                             "minReplicas": FLOOR}]}})
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace},
        "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": mode,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                 "indicators": {"demand": ED_DEMAND},
                 "capacity": {"perReplica": 100000, "minReplicas": 1, "maxReplicas": 20, "startupSeconds": 60,
                              "nodeProvisioningSeconds": 900},
                 "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
                 "residency": {"dataClass": "phi", "regions": ["eu-west-1"]}}})


def pinned_deployment(api: k8s_client.ApiClient, namespace: str, node: str) -> None:
    """``ehr-api`` with one replica of 100m, allowed only onto ``node`` (its label and taint)."""
    labels = {"app": "ehr-api"}
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ehr-api"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {ROOM_LABEL: node},
                     "tolerations": [{"key": ROOM_LABEL, "operator": "Equal", "value": node, "effect": "NoSchedule"}],
                     "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": "100m"}}}]}}}})


ROOM_LABEL = "healthscale-it/room"


@pytest.fixture
def small_node(api: k8s_client.ApiClient, namespace: str) -> Iterator[str]:
    """A KWOK node in eu-west-1 with room for six pods of 100m, tainted and labelled for this test alone."""
    name = f"kwok-{namespace}"
    core = k8s_client.CoreV1Api(api)
    core.create_node({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "topology.kubernetes.io/region": "eu-west-1",
                                "node-restriction.kubernetes.io/region": "eu-west-1", ROOM_LABEL: name}},
        "spec": {"taints": [{"key": ROOM_LABEL, "value": name, "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "600m", "memory": "8Gi", "pods": "20"},
                   "allocatable": {"cpu": "600m", "memory": "8Gi", "pods": "20"},
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                                "containerRuntimeVersion": "kwok://fake", "kernelVersion": "kwok",
                                "osImage": "kwok fake node", "machineID": "", "bootID": "", "systemUUID": "",
                                "kubeProxyVersion": ""}}})
    try:
        yield name
    finally:
        core.delete_node(name)


def reservation(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any] | None:
    found = status_of(api, namespace, "ed-triage").get("reservation")
    return found if isinstance(found, dict) else None


def placeholder_pods(api: k8s_client.ApiClient, namespace: str) -> list[k8s_client.V1Pod]:
    return k8s_client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="healthscale.io/room-for=ed-triage-room").items


def events(api: k8s_client.ApiClient, namespace: str) -> set[str]:
    return {event.reason for event in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items}


def test_room_for_a_surge_beyond_the_lookahead_is_held_by_placeholders_in_the_allowed_region(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    create_world(api, namespace)
    held = wait_until("status.reservation applied", lambda: (found := reservation(api, namespace))
                      and found.get("applied") and found, timeout=180)
    assert (held["replicas"], held["needed"], held["placeholders"]) == (FLOOR - 1, FLOOR, "ed-triage-room")
    assert "flu-clinic floor 6" in held["message"]
    apps = k8s_client.AppsV1Api(api)
    room = apps.read_namespaced_deployment("ed-triage-room", namespace)
    assert room.spec.replicas == FLOOR - 1
    assert [(owner.kind, owner.name) for owner in room.metadata.owner_references] == [("ClinicalSLO", "ed-triage")]
    assert apps.read_namespaced_deployment("ehr-api", namespace).spec.replicas == 1, "the target is not scaled early"

    def running() -> list[k8s_client.V1Pod] | None:
        pods = placeholder_pods(api, namespace)
        return pods if len(pods) == FLOOR - 1 and all(pod.status.phase == "Running" for pod in pods) else None

    pods = wait_until("the placeholder pods running", running, timeout=120)
    nodes = {node.metadata.name: node.metadata.labels for node in k8s_client.CoreV1Api(api).list_node().items}
    for pod in pods:
        assert pod.spec.priority == -10 and pod.spec.priority_class_name == PRIORITY_CLASS
        assert nodes[pod.spec.node_name]["topology.kubernetes.io/region"] == "eu-west-1"
        assert pod.spec.containers[0].resources.requests == {"cpu": "100m"}, "what one target pod asks for"
        assert "app" not in (pod.metadata.labels or {}), "no Service of the target selects them"
    assert "RoomReserved" in wait_until("a RoomReserved Event", lambda: events(api, namespace) or None)


def test_a_real_replica_preempts_a_placeholder_at_once_and_the_placeholder_waits(
        api: k8s_client.ApiClient, operator: Path, namespace: str, small_node: str) -> None:
    # The node holds six pods of 100m: the target's one and the five placeholders fill it.
    create_world(api, namespace, on_node=small_node)
    core = k8s_client.CoreV1Api(api)

    def phases() -> dict[str, list[str]]:
        pods = core.list_namespaced_pod(namespace).items
        found: dict[str, list[str]] = {"target": [], "placeholder": []}
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None:
                continue
            kind = "target" if (pod.metadata.labels or {}).get("app") == "ehr-api" else "placeholder"
            found[kind].append(pod.status.phase if pod.spec.node_name else "Pending")
        return found

    wait_until("the target's pod and five placeholders running on the small node",
               lambda: phases() == {"target": ["Running"], "placeholder": ["Running"] * (FLOOR - 1)}, timeout=180)
    # A scale-up beyond the room (as a surge's, or an HPA's): the scheduler preempts placeholders at once.
    k8s_client.AppsV1Api(api).patch_namespaced_deployment_scale("ehr-api", namespace, {"spec": {"replicas": 3}})
    started = time.monotonic()
    wait_until("three target pods running", lambda: sorted(phases()["target"]) == ["Running"] * 3, timeout=60)
    print(f"\nthree target pods running {time.monotonic() - started:.1f}s after the scale-up")
    # The preempted placeholders' ReplicaSet replaced them; with no room left they wait.
    found = wait_until("the placeholders: three running, two pending",
                       lambda: (placeholders := sorted(phases()["placeholder"])) == ["Pending"] * 2 + ["Running"] * 3
                       and placeholders, timeout=60)
    assert len(found) == FLOOR - 1


def test_deleting_the_clinicalslo_deletes_its_placeholders(api: k8s_client.ApiClient, operator: Path,
                                                             namespace: str) -> None:
    create_world(api, namespace)
    apps = k8s_client.AppsV1Api(api)

    def exists() -> bool:
        try:
            apps.read_namespaced_deployment("ed-triage-room", namespace)
            return True
        except k8s_client.ApiException as error:
            if error.status == 404:
                return False
            raise

    wait_until("the placeholder Deployment", exists, timeout=180)
    k8s_client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos",
                                                                     "ed-triage")
    wait_until("the placeholder Deployment gone", lambda: not exists(), timeout=60)
    wait_until("its pods gone", lambda: not placeholder_pods(api, namespace), timeout=60)


def test_preview_reports_the_room_and_creates_nothing(api: k8s_client.ApiClient, operator: Path,
                                                       namespace: str) -> None:
    create_world(api, namespace, mode="Preview")
    held = wait_until("status.reservation", lambda: reservation(api, namespace), timeout=180)
    assert (held["replicas"], held["applied"]) == (FLOOR - 1, False)
    assert "Preview: nothing reserved" in held["message"] and "placeholders" not in held
    names = [item.metadata.name for item in k8s_client.AppsV1Api(api).list_namespaced_deployment(namespace).items]
    assert names == ["ehr-api"]
