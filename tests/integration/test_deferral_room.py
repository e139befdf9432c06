"""Deferral makes room for a surge (issue 16, part 4): with ``spec.defer`` the report generator
is gone before the surge's pods are asked for, so they are scheduled at once and all Ready before
the window opens; without it, some stay Pending through the window.

Two worlds run side by side under one ``healthscale run``, identical but for ``spec.defer``. Each
has a namespace, a region of its own and one static KWOK node there (``ROOM`` CPUs, tainted so that
no other test's pod lands on it), and in it:

- a deferrable ``report-generator`` Deployment holding half the node (``SHARE`` pods of 1 CPU);
- the clinical target ``ehr-api`` (pods of 1 CPU, Ready ``STARTUP`` s after they start), at
  ``BASE`` replicas, allowed only into the region (node affinity and toleration, and the ClinicalSLO's
  residency), under a ClinicalSLO in mode Active;
- a SurgeSchedule whose date-range surge sets a floor of ``FLOOR`` = ``ROOM`` from ``WINDOW``
  seconds, with ``LEAD`` seconds of lead time; in the "with" world it also defers the report
  generator (``spec.defer``, to 0 replicas).

The ClinicalSLO's plan raises ``ehr-api`` to the floor at its first cycle within its reach
(``planning.Policy.reach``: startup + one forecast step, no node provisioning here) of
``start - leadTime``. The SurgeSchedule selects that ClinicalSLO (``sloRefs``), so the deferral loop
(every ``DEFER_CYCLE`` s) shrinks the report generator from that reach plus one deferral cycle
before ``start - leadTime``: at or before the raise, so with deferral the surge's extra pods find
the room free and wait Pending only for the report generator's pods to go (seconds). Without it
they wait until the window is over and the floor drops. After the window the report generator is
put back at its size.

Every pod's timeline (created, scheduled, Ready, gone, node) and both Deployments' replicas over
time go to ``out/deferral-room.json``; ``bench/deferral_timeline.py`` turns it into BENCHMARKS.md's
"Deferring non-critical work: room for a surge" and its figure. The test takes about 6 minutes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (GROUP, REPO_ROOT, VERSION, DevCluster, epoch, release_and_delete, running_operator, turned_true,
                        wait_until)

pytestmark = pytest.mark.integration

ARTIFACT = REPO_ROOT / "out" / "deferral-room.json"
REGION_LABEL = "node-restriction.kubernetes.io/region"
"""The admin-only region label (kubelets cannot set it on their own Node)."""
ROOM_TAINT = "healthscale-it/deferral-room"
"""Each room node is tainted with its own name under this key: only this test's pods tolerate it."""
ROOM, SHARE, BASE = 6, 3, 3
"""CPUs on each room node (pods of 1 CPU), the report generator's replicas, ehr-api's minReplicas."""
FLOOR = ROOM
"""The surge's floor: the report generator's room is needed too."""
STARTUP = 10
"""ehr-api's startupSeconds; its pods turn Ready that long after they start (kwok's ready-after)."""
STEP = 60
"""The ClinicalSLO's forecast step: it re-plans once a step."""
DEFER_CYCLE = 20
"""The operator's deferral cycle (``runtime.deferral``'s interval)."""
LEAD = 60
"""The surge's leadTime: the floor is to be served (its pods Ready) from ``start - leadTime``."""
REACH = STARTUP + STEP
"""The ClinicalSLO's ``planning.Policy.reach`` (no nodeProvisioningSeconds): it raises ``ehr-api``
this long before ``start - leadTime`` at the latest."""
DEFERRAL_LOOKAHEAD = REACH + DEFER_CYCLE
"""How long before ``start - leadTime`` deferral starts for a schedule that selects the ClinicalSLO."""
MARGIN = 20
"""Seconds between creating the surge and its deferral starting: the operator's first cycles come first."""
PENDING_TOTAL = 25
"""Most seconds the surge's extra pods may wait Pending in all, with deferral. Deferral from only
``start - leadTime`` would make each wait at least from the raise (``REACH`` before it at the
latest, ``STEP`` at the earliest) until then: 10 s or more each, 30 s or more in all."""
WINDOW = 60
"""How long the surge's window lasts."""
WORLDS = {"with": True, "without": False}
"""World name: whether its SurgeSchedule has spec.defer."""


def _local(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))


class World:
    """One namespace, region and room node, and what was seen happen in them."""

    def __init__(self, api: k8s_client.ApiClient, name: str, defer: bool, run: str) -> None:
        self.api, self.name, self.defer = api, name, defer
        self.namespace = self.region = f"hs-defroom-{name}-{run}"
        self.room_node = f"kwok-{self.namespace}"
        self.window_open = self.window_end = 0.0
        self.pods: dict[str, dict[str, Any]] = {}
        self.replicas: dict[str, list[list[float]]] = {"ehr-api": [], "report-generator": []}
        """Deployment: [seen at, spec.replicas, ready pods], a sample whenever either changes."""
        self.status: dict[str, Any] = {}
        self.schedule: dict[str, Any] = {}
        """The SurgeSchedule as read back once created."""

    def create_infrastructure(self) -> None:
        core = k8s_client.CoreV1Api(self.api)
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=self.namespace)))
        # No karpenter.sh/nodepool label: kwok's node-initialize makes it Ready at once. No type=kwok
        # either: this module may run beside test_node_restriction, which counts the dev cluster's six.
        allocatable = {"cpu": str(ROOM), "memory": "16Gi", "pods": "110"}
        core.create_node({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.room_node,
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": self.room_node, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "topology.kubernetes.io/region": self.region,
                                    REGION_LABEL: self.region}},
            "spec": {"taints": [{"key": ROOM_TAINT, "value": self.room_node, "effect": "NoSchedule"}]},
            "status": {"capacity": allocatable, "allocatable": allocatable,
                       "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                                    "containerRuntimeVersion": "kwok://fake", "kernelVersion": "kwok",
                                    "osImage": "kwok fake node", "machineID": "", "bootID": "", "systemUUID": "",
                                    "kubeProxyVersion": ""}}})

    def _deployment(self, name: str, replicas: int, labels: dict[str, str], ready_after: int | None) -> None:
        """``name`` with pods of 1 CPU that only this world's room node takes."""
        region = {"key": REGION_LABEL, "operator": "In", "values": [self.region]}
        annotations = {"devcluster.healthscale.io/ready-after": f"{ready_after}s"} if ready_after else {}
        k8s_client.AppsV1Api(self.api).create_namespaced_deployment(self.namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchExpressions": [region]}]}}},
                         "tolerations": [{"key": ROOM_TAINT, "operator": "Equal", "value": self.room_node,
                                          "effect": "NoSchedule"}],
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                         "resources": {"requests": {"cpu": "1"}}}]}}}})

    def create_workloads(self) -> None:
        self._deployment("report-generator", SHARE, {"healthscale.io/deferrable": "true"}, None)
        self._deployment("ehr-api", BASE, {}, STARTUP)

    def create_surge(self, window_open: float) -> None:
        self.window_open, self.window_end = window_open, window_open + WINDOW
        spec: dict[str, Any] = {
            "timezone": "UTC", "sloRefs": ["ed-triage"],
            "surges": [{"name": "flu-clinic", "start": _local(self.window_open), "end": _local(self.window_end),
                        "leadTime": f"{LEAD}s", "minReplicas": FLOOR}]}
        if self.defer:
            spec["defer"] = {"selector": {"matchLabels": {"healthscale.io/deferrable": "true"}}}
        custom = k8s_client.CustomObjectsApi(self.api)
        custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "surgeschedules", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
            "metadata": {"name": "flu-clinic", "namespace": self.namespace}, "spec": spec})
        self.schedule = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "surgeschedules", "flu-clinic")
        custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "clinicalslos", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
            "metadata": {"name": "ed-triage", "namespace": self.namespace},
            "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": "Active",
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                     "indicators": {"demand": "vector(1)"},
                     "capacity": {"perReplica": 1, "minReplicas": BASE, "maxReplicas": 10, "startupSeconds": STARTUP},
                     # Back to minReplicas at the first cycle after the window: the report generator's room.
                     "scaleDown": {"stabilizationSeconds": 0, "maxStepPercent": 100},
                     "forecast": {"history": "1d", "step": f"{STEP}s", "horizon": "1h"},
                     "residency": {"dataClass": "phi", "regions": [self.region]}}})

    def observe(self) -> None:
        """Record what is new: pods' creation, scheduling, readiness and deletion, replicas."""
        now = time.time()
        core, apps = k8s_client.CoreV1Api(self.api), k8s_client.AppsV1Api(self.api)
        pods = core.list_namespaced_pod(self.namespace).items
        ready: dict[str, int] = {}
        for pod in pods:
            app = (pod.metadata.labels or {}).get("app", "?")
            seen = self.pods.setdefault(pod.metadata.name, {
                "app": app, "created": epoch(pod.metadata.creation_timestamp), "scheduled": None, "ready": None,
                "node": None, "gone": None})
            seen["node"] = pod.spec.node_name or seen["node"]
            seen["scheduled"] = seen["scheduled"] or turned_true(pod.status.conditions, "PodScheduled")
            seen["ready"] = seen["ready"] or turned_true(pod.status.conditions, "Ready")
            if pod.metadata.deletion_timestamp is not None and seen["gone"] is None:
                seen["gone"] = epoch(pod.metadata.deletion_timestamp)
            if turned_true(pod.status.conditions, "Ready") and pod.metadata.deletion_timestamp is None:
                ready[app] = ready.get(app, 0) + 1
        present = {pod.metadata.name for pod in pods}
        for name, seen in self.pods.items():
            if name not in present and seen["gone"] is None:
                seen["gone"] = now
        for item in apps.list_namespaced_deployment(self.namespace).items:
            samples = self.replicas.setdefault(item.metadata.name, [])
            sample = [item.spec.replicas, ready.get(item.metadata.name, 0)]
            if not samples or samples[-1][1:] != sample:
                samples.append([now, *sample])
        if self.window_open:
            found = k8s_client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "surgeschedules", "flu-clinic")
            status = found.get("status") or {}
            if status.get("deferred") and "deferred" not in self.status:
                self.status["deferred"] = {"at": now, "records": status["deferred"]}
            if "deferred" in self.status and not status.get("deferred") and "restored" not in self.status:
                self.status["restored"] = {"at": now, "deferral": status.get("deferral")}

    def spec_replicas(self, app: str) -> int:
        return int(self.replicas[app][-1][1]) if self.replicas.get(app) else 0

    def ready_pods(self, app: str) -> int:
        return int(self.replicas[app][-1][2]) if self.replicas.get(app) else 0

    def first(self, app: str, replicas: int, after: float = 0.0) -> float | None:
        """When ``app``'s spec.replicas was first seen at ``replicas`` (at or after ``after``)."""
        return next((at for at, spec, _ in self.replicas.get(app, []) if spec == replicas and at >= after), None)

    def alive_at(self, app: str, moment: float) -> dict[str, dict[str, Any]]:
        """``app``'s pods that existed at ``moment``."""
        return {name: pod for name, pod in self.pods.items() if pod["app"] == app
                and pod["created"] <= moment and (pod["gone"] is None or pod["gone"] > moment)}

    def record(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "region": self.region, "defer": self.defer, "roomNode": self.room_node,
                "windowOpen": self.window_open, "windowEnd": self.window_end, "pods": self.pods,
                "replicas": self.replicas, "status": self.status}

    def delete(self) -> None:
        release_and_delete(self.api, self.namespace)
        try:
            k8s_client.CoreV1Api(self.api).delete_node(self.room_node)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="module")
def timelines(devcluster: DevCluster, api: k8s_client.ApiClient,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    """Both worlds, observed each second from before the surge until the report generator is back
    after the window (or a deadline)."""
    run = uuid.uuid4().hex[:5]
    worlds = {name: World(api, name, defer, run) for name, defer in WORLDS.items()}
    log = tmp_path_factory.mktemp("deferral-room-operator") / "operator.log"

    def observe_all() -> None:
        for world in worlds.values():
            world.observe()

    try:
        for world in worlds.values():
            world.create_infrastructure()
            world.create_workloads()

        def settled() -> bool:
            observe_all()
            return all(world.ready_pods("ehr-api") == BASE and world.ready_pods("report-generator") == SHARE
                       for world in worlds.values())

        wait_until("each room node full: three report generators and three ehr-api pods Ready", settled, timeout=120)
        with running_operator(devcluster, log, "hs-defroom-*", "--no-keda", "--region-label", REGION_LABEL):
            # Deferral's start (a lookahead before start - leadTime) and the plan's raise come after the
            # operator's first cycles: what is measured is the operator's timing, not the surge's creation.
            window_open = float(int(time.time() + LEAD + DEFERRAL_LOOKAHEAD + MARGIN))  # the surge's start: whole seconds
            for world in worlds.values():
                world.create_surge(window_open)
            deadline = window_open + WINDOW + 2 * STEP + 2 * DEFER_CYCLE + MARGIN

            def back() -> bool:
                return all(world.spec_replicas("report-generator") == SHARE and world.ready_pods("report-generator") == SHARE
                           for world in worlds.values())

            while time.time() < deadline and not (time.time() > window_open + WINDOW and back()):
                observe_all()
                time.sleep(1)
            observe_all()
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(json.dumps({
            "measured": time.strftime("%Y-%m-%d", time.gmtime()), "room": ROOM, "share": SHARE, "base": BASE,
            "floor": FLOOR, "startupSeconds": STARTUP, "stepSeconds": STEP, "deferCycleSeconds": DEFER_CYCLE,
            "leadSeconds": LEAD, "windowSeconds": WINDOW, "reachSeconds": REACH,
            "deferralLookaheadSeconds": DEFERRAL_LOOKAHEAD,
            "worlds": {name: world.record() for name, world in worlds.items()}}, indent=1))
        print(f"\ntimelines written to {ARTIFACT}")
        yield worlds
    finally:
        for world in worlds.values():
            world.delete()


def test_with_deferral_the_report_generator_makes_room_and_all_six_pods_are_ready_before_the_window(
        timelines: dict[str, World]) -> None:
    world = timelines["with"]
    assert "ed-triage" in world.schedule["spec"]["sloRefs"], "the schedule selects the ClinicalSLO: it has a lookahead"
    deferred_at, raised = world.first("report-generator", 0), world.first("ehr-api", FLOOR)
    assert deferred_at is not None, "the report generator was deferred"
    assert raised is not None, "the surge's floor was asked for"
    earliest = world.window_open - LEAD - DEFERRAL_LOOKAHEAD
    assert earliest - 2 <= deferred_at <= raised + DEFER_CYCLE + 5, (
        f"deferred {deferred_at - world.window_open:+.0f}s from the window's opening, the floor raised at "
        f"{raised - world.window_open:+.0f}s: from start - leadTime - (reach + a deferral cycle) "
        f"({earliest - world.window_open:+.0f}s), by a deferral cycle after the raise")
    records = world.status["deferred"]["records"]
    assert [(item["name"], item["original"], item["written"]) for item in records] == [
        ("report-generator", {"replicas": SHARE}, {"replicas": 0})]
    alive = world.alive_at("ehr-api", world.window_open)
    assert len(alive) == FLOOR, f"{len(alive)} ehr-api pods when the window opened"
    for name, pod in alive.items():
        assert pod["node"] == world.room_node, f"{name} runs in the region's room node"
        assert pod["ready"] is not None and pod["ready"] < world.window_open, (
            f"{name} Ready {pod['ready'] and pod['ready'] - world.window_open:+.0f}s from the window's opening")
    assert not world.alive_at("report-generator", world.window_open), "the report generator's pods were gone"
    # The surge's pods: ehr-api's beyond the first BASE; Pending from creation until scheduled (or gone).
    surge = sorted((name for name, pod in world.pods.items() if pod["app"] == "ehr-api"),
                   key=lambda name: world.pods[name]["created"])[BASE:]
    assert len(surge) == FLOOR - BASE, f"{len(surge)} ehr-api pods beyond the first {BASE}"
    pending = {name: (world.pods[name]["scheduled"] or world.pods[name]["gone"] or world.window_end)
               - world.pods[name]["created"] for name in surge}
    assert sum(pending.values()) <= PENDING_TOTAL, (
        f"the surge's pods waited Pending {pending} (s): the room was not free when they were asked for")


def test_without_deferral_the_surge_pods_stay_pending_through_the_window(timelines: dict[str, World]) -> None:
    world = timelines["without"]
    raised = world.first("ehr-api", FLOOR)
    assert raised is not None and raised < world.window_open, "the surge's floor was asked for before the window"
    assert world.first("report-generator", 0) is None and not world.status, "nothing was deferred"
    alive = world.alive_at("ehr-api", world.window_open)
    assert len(alive) == FLOOR
    pending = {name: pod for name, pod in alive.items()
               if pod["scheduled"] is None or pod["scheduled"] >= world.window_end}
    assert len(pending) == FLOOR - BASE, (
        f"{len(pending)} of the surge's pods were Pending all through the window (the report generator holds the room)")
    assert len(world.alive_at("report-generator", world.window_open)) == SHARE


def test_after_the_window_the_report_generator_is_back_at_its_size(timelines: dict[str, World]) -> None:
    world = timelines["with"]
    restored_at = world.first("report-generator", SHARE, after=world.first("report-generator", 0) or 0.0)
    assert restored_at is not None, "the report generator was put back"
    assert restored_at >= world.window_end - 1, (
        f"restored {restored_at - world.window_end:+.0f}s from the window's end: not before it")
    assert world.spec_replicas("report-generator") == SHARE and world.ready_pods("report-generator") == SHARE, (
        f"report generator now: {world.replicas['report-generator'][-1]}")
    assert "restored" in world.status, "the records were cleared"
    assert world.spec_replicas("ehr-api") == BASE, "and ehr-api back at minReplicas, giving the room back"
