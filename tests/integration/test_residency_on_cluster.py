"""Data residency on the local control plane: KWOK nodes in three regions and the real scheduler.

One `healthscale run` process watches this run's namespaces `hs-res-<run>-*`, runs the residency admission
webhook on a loopback port (self-signed, its own ValidatingWebhookConfiguration) and exposes its
metrics. A second one, in evict mode, watches `hs-rev-<run>-*`. Each test works in its own namespace.
Demand is a constant (`vector(20)`), so the plans are predictable; `forecast.step` is 1m, so a
cycle (and with it the residency audit) runs every minute.

The six proofs of the residency issue are the first six tests; then the ones that hold against
the workload owner: regions bounded by the namespace and the cluster-wide allow-list (never
written, not even as a change of an enforced SLO's regions), and the audit of every pod of an
enforced namespace, ClinicalSLO target or not. Nodes this module relabels are its own KWOK nodes
(tainted, so that nothing else lands on them, and deleted at the end).
"""

from __future__ import annotations

import calendar
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (GROUP, REPO_ROOT, VERSION, DevCluster, active_surge_schedule, replicas, stop_process,
                        wait_until)
from healthscale.runtime import handlers

pytestmark = pytest.mark.integration

REGION = "topology.kubernetes.io/region"
DATA_CLASS = "healthscale.io/data-class"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
EU = ["eu-west-1", "eu-central-1"]
CLUSTER_ALLOWED = [*EU, "ap-south-1"]
"""The operator's cluster-wide --allowed-regions."""
AUDIT_SECONDS = 5
RUN = uuid.uuid4().hex[:4]
"""Namespaces and the webhook configuration are this run's own, so that runs can overlap."""
PREFIX, EVICT_PREFIX = f"hs-res-{RUN}-", f"hs-rev-{RUN}-"
CONFIGURATION = f"healthscale-residency-{RUN}"
STEP_SECONDS = 60
TICK_SECONDS = handlers.TICK_SECONDS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_operator(devcluster: DevCluster, log: Path, *arguments: str) -> subprocess.Popen[bytes]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", devcluster.prometheus_url,
             "--health-port", "0", *arguments],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)},
        )
    time.sleep(2)
    if process.poll() is not None:
        pytest.fail(f"healthscale run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
    return process


class Operator:
    def __init__(self, log: Path, metrics_port: int, webhook_port: int) -> None:
        self.log = log
        self.metrics_port = metrics_port
        self.webhook_port = webhook_port

    def metric(self, name: str, **labels: str) -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        for line in text.splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(item in line for item in wanted):
                return float(line.rsplit(" ", 1)[1])
        return None


def webhook_url(api: k8s_client.ApiClient) -> str | None:
    try:
        found = k8s_client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(CONFIGURATION)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(found.webhooks[0].client_config.url)


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("residency-operator") / "operator.log"
    metrics_port, webhook_port = free_port(), free_port()
    process = start_operator(devcluster, log, "--namespace", f"{PREFIX}*", "--metrics-port", str(metrics_port),
                             "--webhook-port", str(webhook_port), "--webhook-configuration", CONFIGURATION,
                             "--default-allowed-regions", ",".join(EU), "--allowed-regions", ",".join(CLUSTER_ALLOWED),
                             "--residency-audit-seconds", str(AUDIT_SECONDS))
    try:
        wait_until("the webhook configuration pointing at this operator",
                   lambda: f":{webhook_port}/" in (webhook_url(api) or ""), timeout=60)
        yield Operator(log, metrics_port, webhook_port)
    finally:
        stop_process(process, log)
        try:
            k8s_client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(CONFIGURATION)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="module")
def evicting_operator(devcluster: DevCluster, api: k8s_client.ApiClient,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("residency-evict-operator") / "operator.log"
    process = start_operator(devcluster, log, "--namespace", f"{EVICT_PREFIX}*", "--metrics-port", "0",
                             "--residency-evict")
    try:
        yield log
    finally:
        stop_process(process, log)


Namespaces = Callable[..., str]


@pytest.fixture
def namespaces(api: k8s_client.ApiClient) -> Iterator[Namespaces]:
    """Creates namespaces (``prefix``, opted in or not, with allowed regions); deletes them afterwards."""
    core = k8s_client.CoreV1Api(api)
    created: list[str] = []

    def make(prefix: str = PREFIX, enforced: bool = False, regions: str | None = None) -> str:
        name = f"{prefix}{uuid.uuid4().hex[:6]}"
        labels = {"healthscale.io/residency": "enforced"} if enforced else None
        annotations = {"healthscale.io/allowed-regions": regions} if regions else None
        core.create_namespace(k8s_client.V1Namespace(
            metadata=k8s_client.V1ObjectMeta(name=name, labels=labels, annotations=annotations)))
        created.append(name)
        return name

    yield make
    custom = k8s_client.CustomObjectsApi(api)
    for name in created:
        # First healthscale's own objects, while the operator still serves the namespace: Kopf stops
        # serving a namespace once it is terminating, and their finalizers would then hold it forever.
        for plural in ("clinicalslos", "surgeschedules"):
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, name, plural)["items"]:
                custom.delete_namespaced_custom_object(GROUP, VERSION, name, plural, item["metadata"]["name"])
        for plural in ("clinicalslos", "surgeschedules"):
            try:
                wait_until(f"the {plural} in {name} to go", lambda: not custom.list_namespaced_custom_object(
                    GROUP, VERSION, name, plural)["items"], timeout=30)
            except AssertionError:
                for item in custom.list_namespaced_custom_object(GROUP, VERSION, name, plural)["items"]:
                    custom.patch_namespaced_custom_object(GROUP, VERSION, name, plural, item["metadata"]["name"],
                                                          {"metadata": {"finalizers": None}})
        core.delete_namespace(name)


Nodes = Callable[..., str]


@pytest.fixture
def nodes(devcluster: DevCluster, api: k8s_client.ApiClient) -> Iterator[Nodes]:
    """Creates this test's own KWOK nodes, tainted for its pods only; deletes them afterwards."""
    core = k8s_client.CoreV1Api(api)
    created: list[str] = []

    def make(region: str, pool: str) -> str:
        name = f"hs-res-node-{uuid.uuid4().hex[:6]}"
        core.create_node(k8s_client.V1Node(
            metadata=k8s_client.V1ObjectMeta(
                name=name,
                annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                labels={"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                        REGION: region, "topology.kubernetes.io/zone": f"{region}x", "healthscale.io/test-pool": pool}),
            spec=k8s_client.V1NodeSpec(taints=[k8s_client.V1Taint(key="healthscale.io/test-pool", value=pool,
                                                                  effect="NoSchedule")]),
            status=k8s_client.V1NodeStatus(
                capacity={"cpu": "64", "memory": "256Gi", "pods": "500"},
                allocatable={"cpu": "64", "memory": "256Gi", "pods": "500"}),
        ))
        created.append(name)

        def ready() -> bool:
            node = core.read_node(name)
            conditions = {item.type: item.status for item in node.status.conditions or []}
            taints = [taint.key for taint in node.spec.taints or []]
            return conditions.get("Ready") == "True" and taints == ["healthscale.io/test-pool"]

        wait_until(f"KWOK node {name} Ready", ready, timeout=60)
        return name

    yield make
    for name in created:
        try:
            core.delete_node(name)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


def deployment(api: k8s_client.ApiClient, namespace: str, replicas: int, affinity: dict[str, Any] | None = None,
               pool: str | None = None, name: str = "ehr-api") -> None:
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, DATA_CLASS: "phi"}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                    "resources": {"requests": {"cpu": "10m"}}}],
                    **({"affinity": affinity} if affinity else {}),
                    **({"tolerations": [{"key": "healthscale.io/test-pool", "operator": "Equal", "value": pool,
                                         "effect": "NoSchedule"}]} if pool else {}),
                },
            },
        },
    }
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, body)


def slo_manifest(namespace: str, regions: list[str], per_replica: float = 5, max_replicas: int = 20) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace, "labels": {"healthscale.io/journey-group": "emergency"}},
        "spec": {
            "journey": "ED triage screens",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "indicators": {"demand": "vector(20)"},
            "capacity": {"perReplica": per_replica, "minReplicas": 1, "maxReplicas": max_replicas,
                         "startupSeconds": 30},
            "forecast": {"history": "2d", "step": "1m", "horizon": "1h"},
            "residency": {"dataClass": "phi", "regions": regions},
        },
    }


def create(api: k8s_client.ApiClient, body: dict[str, Any]) -> None:
    plural = {"ClinicalSLO": "clinicalslos", "SurgeSchedule": "surgeschedules"}[body["kind"]]
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"]["namespace"], plural, body)


def slo_status(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    found = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    status: dict[str, Any] = found.get("status") or {}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((item for item in status.get("conditions", []) if item["type"] == type_), {})


def template(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    found = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace)
    body: dict[str, Any] = api.sanitize_for_serialization(found)
    return body


def required_terms(api: k8s_client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    affinity = template(api, namespace)["spec"]["template"]["spec"].get("affinity") or {}
    return list(affinity.get("nodeAffinity", {}).get(REQUIRED, {}).get("nodeSelectorTerms", []))


def live_pods(api: k8s_client.ApiClient, namespace: str) -> list[k8s_client.V1Pod]:
    listed = k8s_client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=ehr-api").items
    return [pod for pod in listed if pod.metadata.deletion_timestamp is None]


def regions_of(api: k8s_client.ApiClient) -> dict[str, str]:
    return {node.metadata.name: (node.metadata.labels or {}).get(REGION, "unlabelled")
            for node in k8s_client.CoreV1Api(api).list_node().items}


def placed(api: k8s_client.ApiClient, namespace: str, count: int) -> list[tuple[str, str]] | None:
    """(pod, region) of every live pod once exactly ``count`` are scheduled and none is left over."""
    pods = live_pods(api, namespace)
    if len(pods) != count or not all(pod.spec.node_name for pod in pods):
        return None
    regions = regions_of(api)
    return [(pod.metadata.name, regions.get(pod.spec.node_name, "unlabelled")) for pod in pods]


def compliant_and_placed(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any] | None:
    """The ClinicalSLO's status once it reports ResidencyCompliant and all its desired pods are scheduled."""
    found = slo_status(api, namespace)
    desired = found.get("desiredReplicas")
    if condition(found, "ResidencyCompliant").get("status") != "True" or not desired:
        return None
    return found if placed(api, namespace, int(desired)) else None


def events(api: k8s_client.ApiClient, namespace: str, reason: str) -> list[k8s_client.CoreV1Event]:
    listed = k8s_client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ClinicalSLO").items
    return [event for event in listed if event.reason == reason]


# --------------------------------------------------------------------------------- the six proofs


def test_scaled_pods_land_only_in_the_allowed_regions(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    deployment(api, namespace, replicas=1)  # no constraints: its first pod may land anywhere
    create(api, slo_manifest(namespace, EU))
    status = wait_until("a plan with residency in status", lambda: (
        lambda found: found if found.get("desiredReplicas") and found.get("residency") else None)(
        slo_status(api, namespace)))
    desired = int(status["desiredReplicas"])
    assert desired > 1, "20 demand units at 5 per replica need several replicas"
    wait_until("the scale-up", lambda: replicas(api, namespace) == desired)
    where = wait_until(f"{desired} pods scheduled from the restricted template",
                       lambda: (lambda found: found if found and all(region in EU for _, region in found) else None)(
                           placed(api, namespace, desired)), timeout=180)
    assert {region for _, region in where} <= set(EU)
    assert required_terms(api, namespace) == [{"matchExpressions": [{"key": REGION, "operator": "In", "values": EU}]}]
    enforced = events(api, namespace, "ResidencyEnforced")
    assert enforced and "requires topology.kubernetes.io/region In (eu-west-1, eu-central-1)" in enforced[0].message
    final = wait_until("ResidencyCompliant=True", lambda: (
        lambda found: found if condition(found, "ResidencyCompliant").get("status") == "True" else None)(
        slo_status(api, namespace)), timeout=STEP_SECONDS + 60)
    assert final["residency"]["violations"] == []
    assert final["residency"]["enforced"] is True
    trusted = condition(final, "RegionLabelTrusted")
    assert (trusted["status"], trusted["reason"]) == ("False", "KubeletSettableLabel")
    assert "--region-label=node-restriction.kubernetes.io/region" in trusted["message"]
    assert "RESIDENCY IS ONLY AS GOOD AS THE REGION LABEL" in operator.log.read_text(), "said loudly at start-up"


def test_a_patient_data_pod_without_constraints_is_rejected_with_a_clear_message(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=True, regions="eu-west-1,eu-central-1")
    core = k8s_client.CoreV1Api(api)

    def pod(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}], **spec}}

    with pytest.raises(k8s_client.ApiException) as refused:
        core.create_namespaced_pod(namespace, pod("chart-zz9name", {DATA_CLASS: "phi"}))
    assert refused.value.status == 403
    message = str(refused.value.body)
    assert "denied the request" in message
    assert f"phi data in namespace {namespace}" in message and "eu-west-1, eu-central-1" in message
    assert ("it has neither a nodeSelector on topology.kubernetes.io/region nor a required node affinity, so it "
            'could run in any region; add a required node affinity term \\"topology.kubernetes.io/region In '
            '(eu-west-1, eu-central-1)\\"') in message
    assert "zz9name" not in message, "a denial names the namespace and data class, never the pod"

    with pytest.raises(k8s_client.ApiException) as elsewhere:
        core.create_namespaced_pod(namespace, pod("chart-us", {DATA_CLASS: "pii"}, nodeSelector={REGION: "us-east-1"}))
    assert "nodeSelector topology.kubernetes.io/region=us-east-1 is outside the allowed regions" in str(elsewhere.value.body)

    core.create_namespaced_pod(namespace, pod("chart-eu", {DATA_CLASS: "phi"}, affinity={"nodeAffinity": {REQUIRED: {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": REGION, "operator": "In", "values": ["eu-central-1"]}]}]}}}))
    core.create_namespaced_pod(namespace, pod("not-patient-data", {"app": "cache", DATA_CLASS: "none"}))
    node = wait_until("the admitted patient-data pod scheduled",
                      lambda: core.read_namespaced_pod("chart-eu", namespace).spec.node_name)
    assert regions_of(api)[node] == "eu-central-1"
    assert operator.metric("healthscale_residency_admissions_total", namespace=namespace, result="denied") == 2


def test_relabelling_a_node_out_of_region_is_reported_within_one_cycle(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces, nodes: Nodes) -> None:
    pool = uuid.uuid4().hex[:6]
    node = nodes("eu-west-1", pool)
    namespace = namespaces()
    pinned = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "healthscale.io/test-pool", "operator": "In", "values": [pool]}]}]}}}
    deployment(api, namespace, replicas=0, affinity=pinned, pool=pool)
    create(api, slo_manifest(namespace, ["eu-west-1"], per_replica=20))
    status = wait_until("compliant pods on the test node", lambda: compliant_and_placed(api, namespace), timeout=180)
    desired = int(status["desiredReplicas"])
    assert {pod.spec.node_name for pod in live_pods(api, namespace)} == {node}

    relabelled = time.time()
    k8s_client.CoreV1Api(api).patch_node(node, {"metadata": {"labels": {REGION: "us-east-1"}}})

    def first_cycle_after_relabel() -> dict[str, Any] | None:
        found = slo_status(api, namespace)
        started = calendar.timegm(time.strptime(found["lastCycleTime"], "%Y-%m-%dT%H:%M:%SZ"))
        return found if started >= relabelled + 1 else None

    after = wait_until("the next cycle", first_cycle_after_relabel, timeout=STEP_SECONDS + TICK_SECONDS + 30)
    assert time.time() - relabelled <= STEP_SECONDS + TICK_SECONDS + 30
    report = after["residency"]["violations"]
    assert sorted(report, key=lambda item: item["pod"]) == sorted(
        [{"pod": pod.metadata.name, "node": node, "region": "us-east-1"} for pod in live_pods(api, namespace)],
        key=lambda item: item["pod"])
    assert len(report) == desired
    assert after["residency"]["compliant"] is False
    compliant = condition(after, "ResidencyCompliant")
    assert (compliant["status"], compliant["reason"]) == ("False", "PodsOutsideRegions")
    assert f"on {node} (us-east-1)" in compliant["message"]
    warning = wait_until("a ResidencyViolation event", lambda: events(api, namespace, "ResidencyViolation"))
    assert warning[0].type == "Warning" and node in warning[0].message
    assert not any(pod.metadata.name in warning[0].message for pod in live_pods(api, namespace)), \
        "pod names stay in status, out of Events"
    assert operator.metric("healthscale_residency_target_violations", namespace=namespace) == desired
    assert operator.metric("healthscale_residency_compliant", namespace=namespace) == 0
    # That was this ClinicalSLO's second cycle: the operator's own keeping-up measure counted it.
    assert (operator.metric("healthscale_cycle_delay_seconds_count") or 0) >= 1
    assert (operator.metric("healthscale_desired_replicas", namespace=namespace) or 0) >= 1


def test_an_allowed_region_without_nodes_is_a_shortfall_and_placement_is_not_relaxed(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    deployment(api, namespace, replicas=0)
    create(api, slo_manifest(namespace, ["ap-south-1"]))
    status = wait_until("a shortfall in status", lambda: (
        lambda found: found if (found.get("residency") or {}).get("shortfall")
        and found["residency"]["shortfall"]["replicas"] == found.get("desiredReplicas") else None)(
        slo_status(api, namespace)), timeout=STEP_SECONDS * 2 + 60)
    desired = int(status["desiredReplicas"])
    assert status["residency"]["shortfall"] == {"replicas": desired, "regions": ["ap-south-1"],
                                                "regionsWithoutNodes": ["ap-south-1"]}
    short = condition(status, "ResidencyCapacityShortfall")
    assert (short["status"], short["reason"]) == ("True", "AllowedRegionsFull")
    assert "no nodes at all in ap-south-1" in short["message"] and "not relaxed" in short["message"]
    assert wait_until("a ResidencyCapacityShortfall event", lambda: events(api, namespace, "ResidencyCapacityShortfall"))
    assert operator.metric("healthscale_residency_shortfall_replicas", namespace=namespace, region="ap-south-1") == desired
    time.sleep(TICK_SECONDS)
    pods = live_pods(api, namespace)
    assert len(pods) == desired
    assert [pod.spec.node_name for pod in pods] == [None] * desired, "no pod may be placed outside ap-south-1"
    assert required_terms(api, namespace) == [
        {"matchExpressions": [{"key": REGION, "operator": "In", "values": ["ap-south-1"]}]}]


def test_scaling_ahead_of_a_surge_keeps_residency(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=True, regions="eu-central-1")  # the webhook checks every new pod as well
    deployment(api, namespace, replicas=0)
    create(api, slo_manifest(namespace, ["eu-central-1"]))
    create(api, active_surge_schedule(namespace, "vaccination-drive", "vaccination-drive", floor=12))
    status = wait_until("the surge floor to decide", lambda: (
        lambda found: found if found.get("surge") == "vaccination-drive" else None)(slo_status(api, namespace)))
    assert status["desiredReplicas"] == 12 and status["reason"] == "schedule"
    where = wait_until("12 pods scheduled", lambda: placed(api, namespace, 12), timeout=180)
    assert {region for _, region in where} == {"eu-central-1"}
    failed = [event for event in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items
              if event.reason == "FailedCreate"]
    assert failed == [], "the template already required the region when the surge scaled it"


def test_existing_affinity_terms_survive_the_merge(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    arch = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a", "us-east-1a"]}
    preferred = [{"weight": 50, "preference": {"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-central-1b"]}]}}]
    deployment(api, namespace, replicas=1, affinity={"nodeAffinity": {
        REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [arch]}, {"matchExpressions": [zone]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": preferred}})
    create(api, slo_manifest(namespace, EU))
    residency = {"key": REGION, "operator": "In", "values": EU}
    terms = wait_until("the requirement merged into the template",
                       lambda: (lambda found: found if any(residency in term.get("matchExpressions", [])
                                                           for term in found) else None)(
                           required_terms(api, namespace)))
    assert terms == [{"matchExpressions": [arch, residency]}, {"matchExpressions": [zone, residency]}]
    body = template(api, namespace)
    node_affinity = body["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert body["metadata"]["annotations"]["healthscale.io/residency-requirement"] == \
        '{"label":"topology.kubernetes.io/region","regions":["eu-west-1","eu-central-1"]}'
    managers = {entry["manager"]: entry for entry in body["metadata"]["managedFields"]}
    assert "f:requiredDuringSchedulingIgnoredDuringExecution" in str(managers["healthscale"]["fieldsV1"])
    desired = int(wait_until("a plan", lambda: slo_status(api, namespace).get("desiredReplicas")))
    where = wait_until("the pods scheduled from the merged template",
                       lambda: (lambda found: found if found and all(region in EU for _, region in found) else None)(
                           placed(api, namespace, desired)), timeout=180)
    assert {region for _, region in where} <= set(EU)


# ------------------------------------------------------------------- against the workload owner


def refused(api: k8s_client.ApiClient, namespace: str, generation: int = 1) -> dict[str, Any] | None:
    """The status once Ready=False/RegionsNotAllowed describes ``generation``."""
    found = slo_status(api, namespace)
    ready = condition(found, "Ready")
    return found if ready.get("reason") == "RegionsNotAllowed" and ready.get("observedGeneration") == generation \
        else None


def test_regions_the_namespace_does_not_allow_are_refused_and_never_written(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=True, regions="eu-west-1,eu-central-1")
    deployment(api, namespace, replicas=0)
    create(api, slo_manifest(namespace, ["eu-west-1", "us-east-1"]))
    status = wait_until("Ready=False RegionsNotAllowed", lambda: refused(api, namespace), timeout=TICK_SECONDS * 3)
    message = condition(status, "Ready")["message"]
    assert message.startswith(f"spec.residency.regions lists us-east-1, which namespace {namespace} does not allow")
    assert f"allows eu-west-1, eu-central-1 (annotation healthscale.io/allowed-regions of namespace {namespace})" \
        in message
    assert status["residency"]["namespaceRegions"] == EU
    assert wait_until("a RegionsNotAllowed event", lambda: events(api, namespace, "RegionsNotAllowed"))
    time.sleep(TICK_SECONDS)  # another tick: still nothing written, nothing scaled
    body = template(api, namespace)
    assert required_terms(api, namespace) == []
    assert "healthscale.io/residency-requirement" not in (body["metadata"].get("annotations") or {})
    assert replicas(api, namespace) == 0
    assert "desiredReplicas" not in slo_status(api, namespace)


def test_widening_an_enforced_slos_regions_keeps_the_requirement_it_had(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=True, regions="eu-west-1,eu-central-1")
    deployment(api, namespace, replicas=0)
    create(api, slo_manifest(namespace, ["eu-west-1"]))
    eu_west = [{"matchExpressions": [{"key": REGION, "operator": "In", "values": ["eu-west-1"]}]}]
    wait_until("the eu-west-1 requirement written", lambda: required_terms(api, namespace) == eu_west)
    owned = template(api, namespace)["metadata"]["annotations"]["healthscale.io/residency-requirement"]
    k8s_client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos", "ed-triage",
        {"spec": {"residency": {"regions": ["eu-west-1", "us-east-1"]}}})
    wait_until("Ready=False RegionsNotAllowed for generation 2", lambda: refused(api, namespace, 2),
               timeout=TICK_SECONDS * 3)
    time.sleep(TICK_SECONDS)
    assert required_terms(api, namespace) == eu_west, "never widened"
    assert template(api, namespace)["metadata"]["annotations"]["healthscale.io/residency-requirement"] == owned


def test_a_namespace_cannot_allow_a_region_outside_the_cluster_wide_list(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=True, regions="eu-west-1,us-east-1")
    deployment(api, namespace, replicas=0)
    create(api, slo_manifest(namespace, ["us-east-1"]))
    status = wait_until("Ready=False RegionsNotAllowed", lambda: refused(api, namespace), timeout=TICK_SECONDS * 3)
    assert "us-east-1 dropped: not in the cluster-wide --allowed-regions" in condition(status, "Ready")["message"]
    assert status["residency"]["clippedRegions"] == ["us-east-1"]
    assert status["residency"]["namespaceRegions"] == ["eu-west-1"]
    assert required_terms(api, namespace) == []


def pod_events(api: k8s_client.ApiClient, namespace: str, name: str) -> list[k8s_client.CoreV1Event]:
    listed = k8s_client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}").items
    return [event for event in listed if event.reason == "ResidencyViolation"]


def test_every_pod_of_an_enforced_namespace_is_audited_not_only_clinicalslo_targets(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    # Created before the namespace enforces residency (so admission does not refuse them), bound
    # to a node outside its regions directly (spec.nodeName bypasses the scheduler).
    namespace = namespaces(regions="eu-west-1,eu-central-1")
    core = k8s_client.CoreV1Api(api)
    for name, labels in (("lab-report-7", {}), ("cache", {DATA_CLASS: "none"}), ("ehr-db-0", {DATA_CLASS: "pii"})):
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "kwok-us-east-1a" if name != "ehr-db-0" else "kwok-eu-west-1a",
                     "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}})
    wait_until("the pods running", lambda: all(
        core.read_namespaced_pod(name, namespace).status.phase == "Running" for name in ("lab-report-7", "cache")))
    assert operator.metric("healthscale_residency_violations", namespace=namespace) is None, "not enforced yet"
    core.patch_namespace(namespace, {"metadata": {"labels": {"healthscale.io/residency": "enforced"}}})

    wait_until("the audit's count", lambda: operator.metric(
        "healthscale_residency_violations", namespace=namespace, data_class="phi") == 1, timeout=AUDIT_SECONDS * 6)
    assert operator.metric("healthscale_residency_violations", namespace=namespace, data_class="pii") == 0
    (event,) = wait_until("a Warning Event on the pod", lambda: pod_events(api, namespace, "lab-report-7"),
                          timeout=AUDIT_SECONDS * 6)
    assert event.type == "Warning" and event.source.component == "healthscale"
    assert event.message == ("this phi pod runs on node kwok-us-east-1a, in region us-east-1, outside the regions "
                             f"namespace {namespace} allows: eu-west-1, eu-central-1 (annotation "
                             f"healthscale.io/allowed-regions of namespace {namespace})")
    assert pod_events(api, namespace, "cache") == [], "data-class none is exempt"
    assert pod_events(api, namespace, "ehr-db-0") == [], "in an allowed region"
    time.sleep(AUDIT_SECONDS * 2)
    assert len(pod_events(api, namespace, "lab-report-7")) == 1, "posted once, not every pass"
    log = operator.log.read_text()
    assert f"namespace {namespace} has 1 phi pod(s) outside eu-west-1, eu-central-1" in log
    assert "lab-report-7" not in log, "the log counts pods, it never names them"


# -------------------------------------------------------------------------------------- evict mode


def test_evict_mode_moves_pods_out_of_a_relabelled_node_only_as_their_budget_allows(
        api: k8s_client.ApiClient, evicting_operator: Path, namespaces: Namespaces, nodes: Nodes) -> None:
    pool = uuid.uuid4().hex[:6]
    leaving, staying = nodes("eu-west-1", pool), nodes("eu-west-1", pool)
    namespace = namespaces(prefix=EVICT_PREFIX)
    pinned = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "healthscale.io/test-pool", "operator": "In", "values": [pool]}]}]}}}
    deployment(api, namespace, replicas=0, affinity=pinned, pool=pool)
    policy = k8s_client.PolicyV1Api(api)
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "ehr-api"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "ehr-api"}}}})
    create(api, slo_manifest(namespace, ["eu-west-1"], per_replica=8))
    status = wait_until("compliant pods", lambda: compliant_and_placed(api, namespace), timeout=180)
    desired = int(status["desiredReplicas"])
    on_leaving = [pod.metadata.name for pod in live_pods(api, namespace) if pod.spec.node_name == leaving]
    assert on_leaving, "the scheduler spreads the pods over both nodes of the pool"
    k8s_client.CoreV1Api(api).patch_node(leaving, {"metadata": {"labels": {REGION: "us-east-1"}}})

    blocked = wait_until("the budget to block the eviction",
                         lambda: events(api, namespace, "ResidencyEvictionBlocked"), timeout=STEP_SECONDS * 2 + 30)
    assert "PodDisruptionBudget" in blocked[0].message
    assert set(on_leaving) <= {pod.metadata.name for pod in live_pods(api, namespace)}, "the budget protected them"

    policy.patch_namespaced_pod_disruption_budget("ehr-api", namespace, {"spec": {"maxUnavailable": 1}})
    wait_until("the pods moved to the node still in eu-west-1", lambda: (
        lambda found: found if found and not set(on_leaving) & {pod.metadata.name for pod in live_pods(api, namespace)}
        and {pod.spec.node_name for pod in live_pods(api, namespace)} == {staying} else None)(
        placed(api, namespace, desired)), timeout=STEP_SECONDS * len(on_leaving) * 2 + 120)
    assert events(api, namespace, "ResidencyEvicted")


# ------------------------------------------------------------------------- the operator's metrics


def series_of(operator: Operator, namespace: str, name: str) -> list[str]:
    """The lines of the operator's /metrics (what Prometheus scrapes) that are this ClinicalSLO's."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [line for line in text.splitlines() if not line.startswith("#")
            and f'namespace="{namespace}"' in line and f'clinicalslo="{name}"' in line]


def test_a_deleted_clinicalslos_series_leave_the_operators_metrics(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    deployment(api, namespace, replicas=1)
    create(api, slo_manifest(namespace, EU))
    lines = wait_until("its plan and residency series on /metrics", lambda: (
        lambda found: found if any(line.startswith("healthscale_desired_replicas{") for line in found)
        and any(line.startswith("healthscale_residency_compliant{") for line in found) else None)(
        series_of(operator, namespace, "ed-triage")), timeout=STEP_SECONDS + 60)
    assert any(line.startswith("healthscale_decision_reason{") for line in lines)
    custom = k8s_client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the ClinicalSLO gone", lambda: not custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos")["items"], timeout=60)
    left = series_of(operator, namespace, "ed-triage")
    assert left == [], f"series of the deleted ClinicalSLO still exported: {left}"
