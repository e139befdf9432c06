"""Node warm-up against a real Karpenter (issue 13, part 2): with warm-up, a surge's pods are Ready
before its window opens; without it, they wait Pending for nodes Karpenter launches.

Karpenter's KWOK provider runs as ``tools/devcluster/karpenter.sh up`` starts it, and its nodes come
up ``NODE_SECONDS`` after launch (the kwok stages ``karpenter-node-*``). Two worlds run side by side
under one ``healthscale run``, identical but for ``capacity.nodeProvisioningSeconds``:

- a region of its own, whose only node before the surge has room for exactly 2 of the target's
  pods (1 CPU each), and a NodePool that adds nodes there (``karpenter.sh nodepool``, as ``up``
  makes them, with this test's node start-up time);
- the target ``ehr-api`` at 2 replicas, startupSeconds ``STARTUP`` (its pods turn Ready that long
  after they start), the region as its residency, and a SurgeSchedule whose floor of 6 opens
  ``node start-up + startup + one cycle + MARGIN`` seconds after the worlds are made.

"warm" sets nodeProvisioningSeconds to the node start-up plus MARGIN: its first cycle holds room
for 4 placeholders, Karpenter launches nodes for them, and when the floor comes into the plan's
lookahead the 4 new replicas preempt the placeholders. "cold" (0) asks for the same 6 at the same
moment, and its 4 new pods wait for nodes launched only then.

Each pod's and node's timeline goes to ``out/karpenter-warmup.json`` (``bench/karpenter_timeline.py``
turns it into BENCHMARKS.md's "Node warm-up on a real Karpenter" and its figure). The node start-up
is ``HEALTHSCALE_IT_KARPENTER_NODE_SECONDS`` (default 60: the test takes about 4.5 minutes; the
benchmark runs it at the dev cluster's 120).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from clusterlib import (ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, epoch, release_and_delete, running_operator,
                        PLACEHOLDER_PRIORITY_CLASS, placeholder_priority_class, status_of, turned_true, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.addons]

KARPENTER = REPO_ROOT / "tools" / "devcluster" / "karpenter.sh"
ARTIFACT = REPO_ROOT / "out" / "karpenter-warmup.json"
NODEPOOLS = ("karpenter.sh", "v1", "nodepools")
PRIORITY_CLASS = PLACEHOLDER_PRIORITY_CLASS
REGION_LABEL = "node-restriction.kubernetes.io/region"
"""The admin-only region label: Karpenter puts it on its nodes from the NodePool's labels."""
TAINT = {"key": "devcluster.healthscale.io/autoscaled", "value": "true", "effect": "NoSchedule"}
"""karpenter.sh's NodePools taint their nodes so; the room node here too, so no other pod takes it."""
NODE_SECONDS = int(os.environ.get("HEALTHSCALE_IT_KARPENTER_NODE_SECONDS", "60"))
STARTUP = 10
CYCLE = 60
MARGIN = 40
"""Karpenter's batching (up to 10 s), the operator's tick (20 s) and scheduling, with room to spare."""
ROOM, FLOOR = 2, 6
WORLDS = {"warm": NODE_SECONDS + MARGIN, "cold": 0}
"""World name: its nodeProvisioningSeconds."""


@pytest.fixture(scope="module")
def priority_class(api: k8s_client.ApiClient) -> str:
    return placeholder_priority_class(api)


class World:
    """One namespace, region, room node and NodePool, and what was seen happen in them."""

    def __init__(self, api: k8s_client.ApiClient, name: str, provisioning: int, run: str) -> None:
        self.api, self.name, self.provisioning = api, name, provisioning
        self.namespace = self.region = self.pool = f"hs-karp-{name}-{run}"
        self.room_node = f"kwok-{self.namespace}"
        self.window_open = 0.0
        self.raised: float | None = None
        self.reserved: float | None = None
        self.pods: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}

    def create_infrastructure(self) -> None:
        core = k8s_client.CoreV1Api(self.api)
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=self.namespace)))
        pool = subprocess.run(["bash", str(KARPENTER), "nodepool", self.pool, self.region, str(NODE_SECONDS)],
                              check=True, capture_output=True, text=True).stdout
        k8s_client.CustomObjectsApi(self.api).create_cluster_custom_object(*NODEPOOLS, yaml.safe_load(pool))
        # Room for exactly two pods of 1 CPU, instant (no karpenter.sh/nodepool label: node-initialize).
        allocatable = {"cpu": str(ROOM), "memory": "16Gi", "pods": "110"}
        core.create_node({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.room_node,
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": self.room_node, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "topology.kubernetes.io/region": self.region,
                                    REGION_LABEL: self.region}},
            "spec": {"taints": [TAINT]},
            "status": {"capacity": allocatable, "allocatable": allocatable,
                       "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                                    "containerRuntimeVersion": "kwok://fake", "kernelVersion": "kwok",
                                    "osImage": "kwok fake node", "machineID": "", "bootID": "", "systemUUID": "",
                                    "kubeProxyVersion": ""}}})

    def create_target(self) -> None:
        labels = {"app": "ehr-api"}
        region = {"key": REGION_LABEL, "operator": "In", "values": [self.region]}
        k8s_client.AppsV1Api(self.api).create_namespaced_deployment(self.namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ehr-api"},
            "spec": {"replicas": ROOM, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels,
                             "annotations": {"devcluster.healthscale.io/ready-after": f"{STARTUP}s"}},
                "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchExpressions": [region]}]}}},
                         "tolerations": [{**TAINT, "operator": "Equal"}],
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                         "resources": {"requests": {"cpu": "1"}}}]}}}})

    def create_surge(self, window_open: float) -> None:
        self.window_open = window_open
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window_open))
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window_open + 3600))
        custom = k8s_client.CustomObjectsApi(self.api)
        custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "surgeschedules", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
            "metadata": {"name": "flu-clinic", "namespace": self.namespace},
            "spec": {"timezone": "UTC", "sloRefs": ["ed-triage"],
                     "surges": [{"name": "flu-clinic", "start": start, "end": end, "minReplicas": FLOOR}]}})
        custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "clinicalslos", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
            "metadata": {"name": "ed-triage", "namespace": self.namespace},
            "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": "Active",
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                     "indicators": {"demand": ED_DEMAND},
                     "capacity": {"perReplica": 100000, "minReplicas": ROOM, "maxReplicas": 10,
                                  "startupSeconds": STARTUP, "nodeProvisioningSeconds": self.provisioning},
                     "forecast": {"history": "1d", "step": "1m", "horizon": "1h"},
                     "residency": {"dataClass": "phi", "regions": [self.region]}}})

    def observe(self) -> None:
        """Record what is new: pods' creation, scheduling and readiness, nodes', the scale-up."""
        now = time.time()
        core = k8s_client.CoreV1Api(self.api)
        for pod in core.list_namespaced_pod(self.namespace).items:
            labels = pod.metadata.labels or {}
            seen = self.pods.setdefault(pod.metadata.name, {
                "kind": "target" if labels.get("app") == "ehr-api" else "placeholder",
                "created": epoch(pod.metadata.creation_timestamp), "scheduled": None, "ready": None,
                "node": None, "gone": None})
            seen["node"] = pod.spec.node_name or seen["node"]
            seen["scheduled"] = seen["scheduled"] or turned_true(pod.status.conditions, "PodScheduled")
            seen["ready"] = seen["ready"] or turned_true(pod.status.conditions, "Ready")
        present = {pod.metadata.name for pod in core.list_namespaced_pod(self.namespace).items}
        for name, seen in self.pods.items():
            if name not in present and seen["gone"] is None:
                seen["gone"] = now
        for node in core.list_node(label_selector=f"karpenter.sh/nodepool={self.pool}").items:
            seen = self.nodes.setdefault(node.metadata.name, {
                "created": epoch(node.metadata.creation_timestamp), "ready": None,
                "instanceType": (node.metadata.labels or {}).get("node.kubernetes.io/instance-type")})
            seen["ready"] = seen["ready"] or turned_true(node.status.conditions, "Ready")
        if self.raised is None and replicas(self.api, self.namespace) >= FLOOR:
            self.raised = now
        if self.window_open and self.reserved is None:  # the ClinicalSLO exists
            held = status_of(self.api, self.namespace, "ed-triage").get("reservation") or {}
            if held.get("applied") and held.get("replicas"):
                self.reserved = now

    def new_targets(self) -> dict[str, dict[str, Any]]:
        """The target's pods beyond the first two (those the surge added)."""
        targets = sorted(((name, pod) for name, pod in self.pods.items() if pod["kind"] == "target"),
                         key=lambda item: item[1]["created"] or 0)
        return dict(targets[ROOM:])

    def targets_ready(self) -> int:
        return sum(1 for pod in self.pods.values() if pod["kind"] == "target" and pod["ready"] and not pod["gone"])

    def record(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "region": self.region, "nodeProvisioningSeconds": self.provisioning,
                "windowOpen": self.window_open, "raised": self.raised, "reserved": self.reserved,
                "roomNode": self.room_node, "pods": self.pods, "nodes": self.nodes}

    def delete(self) -> None:
        release_and_delete(self.api, self.namespace)
        # Karpenter drains and deletes the NodePool's nodes (its NodeClaims are owned by it).
        for delete in (lambda: k8s_client.CustomObjectsApi(self.api).delete_cluster_custom_object(*NODEPOOLS, self.pool),
                       lambda: k8s_client.CoreV1Api(self.api).delete_node(self.room_node)):
            try:
                delete()
            except k8s_client.ApiException as error:
                if error.status != 404:
                    raise


def replicas(api: k8s_client.ApiClient, namespace: str) -> int:
    return int(k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).spec.replicas)


@pytest.fixture(scope="module")
def timelines(devcluster: DevCluster, api: k8s_client.ApiClient, addon: Callable[[str], None], priority_class: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    """Both worlds, run side by side until every target pod is Ready (or a deadline), observed each second."""
    addon("karpenter")
    run = uuid.uuid4().hex[:5]
    worlds = {name: World(api, name, provisioning, run) for name, provisioning in WORLDS.items()}
    log = tmp_path_factory.mktemp("karpenter-operator") / "operator.log"
    try:
        for world in worlds.values():
            world.create_infrastructure()
            world.create_target()
        def first_replicas_ready() -> bool:
            for world in worlds.values():
                world.observe()
            return all(world.targets_ready() == ROOM for world in worlds.values())

        wait_until("the two first replicas Ready on each room node", first_replicas_ready, timeout=120)
        with running_operator(devcluster, log, "hs-karp-*", "--placeholder-priority-class", priority_class,
                              "--region-label", REGION_LABEL):
            window_open = time.time() + NODE_SECONDS + STARTUP + CYCLE + MARGIN
            for world in worlds.values():
                world.create_surge(window_open)
            deadline = window_open + NODE_SECONDS + 2 * CYCLE + MARGIN
            while time.time() < deadline and not all(world.targets_ready() >= FLOOR for world in worlds.values()):
                for world in worlds.values():
                    world.observe()
                time.sleep(1)
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(json.dumps({
            "measured": time.strftime("%Y-%m-%d", time.gmtime()), "nodeSeconds": NODE_SECONDS,
            "startupSeconds": STARTUP, "cycleSeconds": CYCLE, "room": ROOM, "floor": FLOOR,
            "worlds": {name: world.record() for name, world in worlds.items()}}, indent=1))
        print(f"\ntimelines written to {ARTIFACT}")
        yield worlds
    finally:
        for world in worlds.values():
            world.delete()


def test_with_warm_up_karpenter_adds_nodes_for_the_placeholders_and_all_six_pods_are_ready_before_the_window(
        timelines: dict[str, World]) -> None:
    warm = timelines["warm"]
    assert warm.reserved is not None, "room was held for the surge"
    placeholders = [pod for pod in warm.pods.values() if pod["kind"] == "placeholder"]
    assert len(placeholders) >= FLOOR - ROOM, "a placeholder for each replica the room node cannot hold"
    assert warm.nodes, "Karpenter launched nodes for the placeholders"
    assert {pod["node"] for pod in placeholders if pod["node"]} <= set(warm.nodes), "placeholders ran on them"
    new = warm.new_targets()
    assert len(new) == FLOOR - ROOM and warm.raised is not None
    for name, pod in new.items():
        assert pod["node"] in warm.nodes, f"{name} runs on a node Karpenter launched for the room"
        assert pod["ready"] is not None and pod["ready"] < warm.window_open, (
            f"{name} Ready {pod['ready'] and pod['ready'] - warm.window_open:+.0f}s from the window's opening")
    first_node_ready = min(node["ready"] for node in warm.nodes.values() if node["ready"])
    assert first_node_ready <= warm.raised, "the nodes were up before the replicas were asked for"


def test_without_warm_up_the_new_pods_are_pending_until_karpenter_nodes_come_up(
        timelines: dict[str, World]) -> None:
    cold = timelines["cold"]
    assert cold.reserved is None and not any(pod["kind"] == "placeholder" for pod in cold.pods.values())
    assert cold.raised is not None, "the surge's floor was asked for"
    new = cold.new_targets()
    assert len(new) == FLOOR - ROOM
    assert cold.nodes, "Karpenter launched nodes for the pending pods"
    for name, pod in new.items():
        node = cold.nodes.get(pod["node"] or "")
        assert node is not None, f"{name} runs on a node Karpenter launched ({pod['node']})"
        assert node["created"] >= pod["created"] - 1, f"{name}'s node was launched after it was created, for it"
        assert pod["scheduled"] is not None and node["ready"] is not None and pod["scheduled"] >= node["ready"] - 1, (
            f"{name} was Pending until its node was Ready")
