"""No patient data in the operator's logs or Events: a canary identifier through every flow.

Per-patient objects carry identifiers in their names (a Job ``report-for-<patient>``, its pods, a
bare pod) and labels, and so can the series a query returns. This module puts one canary,
``zz9canary``, into all of them and runs the residency and operator flows on the local stack with
one ``healthscale run`` of its own (namespaces ``hs-canary-<run>-*``, the admission webhook, the
namespace audit every few seconds, pod-deletion-cost):

- a ClinicalSLO with residency in an enforced namespace, on a Deployment whose pods carry the
  canary in a label value and a label name, planned from the backfilled ED demand and scaled down
  with ``indicators.podLoad`` answered by series whose labels hold the canary (a scrape target of
  this module's own);
- denials at admission: a bare pod and a Job's pods named after the canary;
- a ClinicalSLO asking for a region its namespace does not allow;
- audit violations: a bare pod and a Job's pod named after the canary, running outside the
  allowed regions of a namespace that then starts enforcing residency.

Then the canary must not be in the operator's log (it runs at INFO, so every line is INFO or
above), nor in any Event healthscale posted (Kopf's and the operator's own; for an Event in which
a controller quotes the webhook's denial, in what the webhook said). Kubernetes' own Events (the
scheduler's, the Job controller's) do name the pods: the test checks that they do, so that it
knows the canary was really there.

The target Deployment's own name is not a canary: healthscale's Events must name the workload it
scales, a name the platform team chose when it wrote the ClinicalSLO.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, release_and_delete, replicas, status_of,
                        TextExporter, stop_process, wait_until)

pytestmark = pytest.mark.integration

CANARY = "zz9canary"
RUN = uuid.uuid4().hex[:4]
PREFIX = f"hs-canary-{RUN}-"
CONFIGURATION = f"healthscale-canary-{RUN}"
REGION = "topology.kubernetes.io/region"
DATA_CLASS = "healthscale.io/data-class"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
EU = ["eu-west-1", "eu-central-1"]
AUDIT_SECONDS = 5
EU_AFFINITY = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": REGION, "operator": "In", "values": EU}]}]}}}
OURS = {"kopf", "healthscale", "healthscale-release"}
"""Event sources that are healthscale: Kopf (kopf.event/kopf.warn and its handler reports) and its own."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- series with the canary in labels


class Exporter(TextExporter):
    """Serves ``healthscale_canary_pod_load{run, pod, patient}``: a load per pod of the target,
    each series labelled with the canary, for Prometheus to scrape (and podLoad to return)."""

    def __init__(self) -> None:
        self.pods: list[str] = []

        def render() -> str:
            lines = ["# TYPE healthscale_canary_pod_load gauge"]
            for number, pod in enumerate(self.pods or ["none"]):
                lines.append(f'healthscale_canary_pod_load{{run="{RUN}",pod="{pod}",'
                             f'patient="patient-{CANARY}-{number}"}} {number + 1}')
            return "\n".join(lines) + "\n"

        super().__init__(render)


def prometheus_query(devcluster: DevCluster, query: str) -> list[dict[str, Any]]:
    url = f"{devcluster.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    return list(answer["data"]["result"])


POD_LOAD = f'max by (pod, patient) (healthscale_canary_pod_load{{run="{RUN}"}})'


@pytest.fixture(scope="module")
def exporter(devcluster: DevCluster) -> Iterator[Exporter]:
    serving = Exporter()
    targets = Path(devcluster.env["DEVCLUSTER_PROMETHEUS_TARGETS_DIR"]) / f"canary-{RUN}.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{serving.port}"], "labels": {"job": f"canary-{RUN}"}}]))
    try:
        wait_until("Prometheus scraping the canary series", lambda: prometheus_query(devcluster, POD_LOAD), timeout=90)
        yield serving
    finally:
        targets.unlink(missing_ok=True)
        serving.close()


# ------------------------------------------------------------------------------------ operator


class Operator:
    def __init__(self, log: Path, metrics_port: int) -> None:
        self.log = log
        self.metrics_port = metrics_port

    def metric(self, name: str, **labels: str) -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        for line in text.splitlines():
            if line.startswith(name + "{") and all(item in line for item in wanted):
                return float(line.rsplit(" ", 1)[1])
        return None


def webhook_url(api: k8s_client.ApiClient) -> str:
    try:
        found = k8s_client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(CONFIGURATION)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return ""
        raise
    config = found.webhooks[0].client_config
    return str(config.url or "")


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, exporter: Exporter,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("canary-operator") / "operator.log"
    metrics_port, webhook_port = free_port(), free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", devcluster.prometheus_url,
             "--health-port", "0", "--namespace", f"{PREFIX}*", "--metrics-port", str(metrics_port),
             "--webhook-port", str(webhook_port), "--webhook-configuration", CONFIGURATION,
             "--default-allowed-regions", ",".join(EU), "--residency-audit-seconds", str(AUDIT_SECONDS)],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)})
    try:
        wait_until("the webhook configuration pointing at this operator",
                   lambda: f":{webhook_port}/" in webhook_url(api), timeout=60)
        yield Operator(log, metrics_port)
    finally:
        stop_process(process, log)
        try:
            k8s_client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(CONFIGURATION)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def namespaces(api: k8s_client.ApiClient) -> Iterator[Callable[..., str]]:
    core = k8s_client.CoreV1Api(api)
    created: list[str] = []

    def make(enforced: bool) -> str:
        name = f"{PREFIX}{uuid.uuid4().hex[:6]}"
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(
            name=name, labels={"healthscale.io/residency": "enforced"} if enforced else None,
            annotations={"healthscale.io/allowed-regions": ",".join(EU)})))
        created.append(name)
        return name

    yield make
    for name in created:
        release_and_delete(api, name)


# ------------------------------------------------------------------------------------ objects


def container() -> list[dict[str, Any]]:
    return [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "10m"}}}]


def pod(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": container(), **spec}}


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {"patient": f"patient-{CANARY}"}},
                "spec": {"restartPolicy": "Never", "containers": container(), **spec}}}}


def target(api: k8s_client.ApiClient, namespace: str, count: int) -> None:
    """ehr-api, kept in the EU by its own affinity; its pods carry the canary in labels."""
    labels = {"app": "ehr-api", "patient": f"patient-{CANARY}", f"{CANARY}.example.org/ward": "a"}
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ehr-api"},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "ehr-api"}},
                 "template": {"metadata": {"labels": {**labels, DATA_CLASS: "phi"}},
                              "spec": {"containers": container(), "affinity": EU_AFFINITY}}}})


def slo(namespace: str, name: str, regions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "journey": "ED triage screens",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "indicators": {"demand": ED_DEMAND, "podLoad": POD_LOAD},
            "capacity": {"perReplica": 10, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 30},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
            "scaleDown": {"stabilizationSeconds": 0, "maxStepPercent": 50},
            "residency": {"dataClass": "phi", "regions": regions},
        },
    }


def create_slo(api: k8s_client.ApiClient, body: dict[str, Any]) -> None:
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"]["namespace"], "clinicalslos", body)


def live_pods(api: k8s_client.ApiClient, namespace: str, selector: str) -> list[k8s_client.V1Pod]:
    return [item for item in k8s_client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
            if item.metadata.deletion_timestamp is None]


def all_events(api: k8s_client.ApiClient, namespace: str) -> list[k8s_client.CoreV1Event]:
    return list(k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items)


def source(event: k8s_client.CoreV1Event) -> str:
    return str((event.source.component if event.source else None) or event.reporting_component or "")


def what_healthscale_said(event: k8s_client.CoreV1Event) -> str:
    """The part of an Event's text that came from healthscale ('' when none did)."""
    text = f"{event.reason} {event.message or ''}"
    if source(event) in OURS:
        return text
    marker = "denied the request:"
    if "residency.healthscale.io" in text and marker in text:
        return text.split(marker, 1)[1]
    return ""


# ---------------------------------------------------------------------------------------- test


def test_the_canary_never_reaches_the_operators_log_or_its_events(
        devcluster: DevCluster, api: k8s_client.ApiClient, exporter: Exporter, operator: Operator,
        namespaces: Callable[..., str]) -> None:
    core, batch = k8s_client.CoreV1Api(api), k8s_client.BatchV1Api(api)
    enforced, audited = namespaces(enforced=True), namespaces(enforced=False)

    # Audit: per-patient pods outside the regions, created before the namespace enforces residency.
    core.create_namespaced_pod(audited, pod(f"patient-{CANARY}-scan", {"patient": f"patient-{CANARY}"},
                                            nodeName="kwok-us-east-1a"))
    batch.create_namespaced_job(audited, job(f"patient-{CANARY}-nightly", nodeName="kwok-us-east-1a"))

    # The operator flows: plan, enforce, scale down with deletion costs from canary-labelled series.
    target(api, enforced, 12)
    wait_until("the target's pods", lambda: (lambda found: found if len(found) == 12 else None)(
        live_pods(api, enforced, "app=ehr-api")), timeout=120)
    exporter.pods = [item.metadata.name for item in live_pods(api, enforced, "app=ehr-api")]
    wait_until("the loads of the target's pods in Prometheus", lambda: len(prometheus_query(devcluster, POD_LOAD)) >= 12,
               timeout=90)
    create_slo(api, slo(enforced, "ed-triage", EU))
    create_slo(api, slo(enforced, "not-allowed", ["us-east-1"]))

    # Admission: a per-patient pod and a per-patient Job's pods without constraints.
    with pytest.raises(k8s_client.ApiException) as denied:
        core.create_namespaced_pod(enforced, pod(f"patient-{CANARY}-intake", {DATA_CLASS: "phi"}))
    assert denied.value.status == 403
    assert CANARY not in str(denied.value.body), "the denial the API server returns names no pod"
    batch.create_namespaced_job(enforced, job(f"patient-{CANARY}-report"))

    core.patch_namespace(audited, {"metadata": {"labels": {"healthscale.io/residency": "enforced"}}})

    wait_until("the scale-down with deletion costs", lambda: replicas(api, enforced) < 12 and any(
        "controller.kubernetes.io/pod-deletion-cost" in (item.metadata.annotations or {})
        for item in live_pods(api, enforced, "app=ehr-api")), timeout=180)
    wait_until("the audit's two violations", lambda: operator.metric(
        "healthscale_residency_violations", namespace=audited, data_class="phi") == 2, timeout=AUDIT_SECONDS * 12)
    wait_until("the audit's Events on the canary pods", lambda: len(
        [event for event in all_events(api, audited) if event.reason == "ResidencyViolation"]) == 2, timeout=60)
    wait_until("RegionsNotAllowed", lambda: any(item.get("reason") == "RegionsNotAllowed" for item in (
        status_of(api, enforced, "not-allowed").get("conditions") or [])), timeout=60)
    wait_until("the Job controller's denied pod creation", lambda: [
        event for event in all_events(api, enforced) if event.reason == "FailedCreate"], timeout=60)
    time.sleep(AUDIT_SECONDS * 2)  # a few more audit passes and ticks

    # The canary was everywhere the flows went: in pod and Job names, labels, series and
    # Kubernetes' own Events.
    assert any(CANARY in str(item["metric"]) for item in prometheus_query(devcluster, POD_LOAD))
    theirs = [event for dataset in (enforced, audited) for event in all_events(api, dataset)
              if CANARY in f"{event.message} {event.involved_object.name}"]
    assert any(source(event) not in OURS for event in theirs), "Kubernetes' own Events name the pods"

    # ... and nowhere healthscale wrote.
    log = operator.log.read_text()
    assert log.strip(), "the operator logged"
    leaked_lines = [line for line in log.splitlines() if CANARY in line]
    assert not leaked_lines, "the canary is in the operator's log:\n" + "\n".join(leaked_lines[:20])
    ours = [event for dataset in (enforced, audited) for event in all_events(api, dataset) if what_healthscale_said(event)]
    assert {"ResidencyViolation", "RegionsNotAllowed"} <= {event.reason for event in ours}
    leaked = [f"{event.reason}: {what_healthscale_said(event)}" for event in ours if CANARY in what_healthscale_said(event)]
    assert not leaked, "the canary is in healthscale's Events:\n" + "\n".join(leaked[:20])
