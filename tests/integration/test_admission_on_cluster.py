"""The residency admission webhook on the local control plane (KWOK nodes in three regions, the real
controller-manager creating pods): default deny, every controller, relabelling, staying up.

One `healthscale run` process serves admission for the whole module. Its Prometheus is a TCP
listener that accepts connections and never answers, so every planning cycle hangs until its read
timeout: the webhook must answer regardless. Its serving certificate lives 90 seconds (renewed
every minute, in the Secret it shares with any other replica), so the module also runs across
renewals. Namespaces, the webhook configuration and the Secret are this run's own (`hs-adm-<run>-*`):
other people's residency tests on the same cluster use their own.

Pod names carry a canary (`zq<run>`): it must never reach the operator's log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from kubernetes import client as k8s_client

from clusterlib import GROUP, REPO_ROOT, VERSION, DevCluster, stop_process, wait_until

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:4]
PREFIX = f"hs-adm-{RUN}-"
SYSTEM = f"{PREFIX}system"
CONFIGURATION = f"hs-admission-{RUN}"
SECRET = f"{CONFIGURATION}-cert"
CANARY = f"zq{RUN}"
REGION = "topology.kubernetes.io/region"
CLASS = "healthscale.io/data-class"
EU = "eu-west-1,eu-central-1"
IN_EU = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": REGION, "operator": "In", "values": ["eu-west-1", "eu-central-1"]}]}]}}}
WORKERS = 8
"""Kopf's worker threads for sync handlers (runtime/handlers.py settings.execution.max_workers)."""
DENIED = 'admission webhook "residency.healthscale.io" denied the request'


def records(log: Path) -> list[dict[str, Any]]:
    """The operator's JSON log lines (--log-format json); other lines (a traceback) as errors."""
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            found.append({"message": line, "severity": "error"})
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SilentPrometheus:
    """Accepts every connection and never answers; counts the connections held open."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.open = 0
        self.most = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with self._lock:
            self.open += 1
            self.most = max(self.most, self.open)
        with connection:
            try:
                while connection.recv(65536):  # read the request, never answer; b"" once the client gives up
                    pass
            except OSError:
                pass
        with self._lock:
            self.open -= 1

    def close(self) -> None:
        self.server.close()


class Operator:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, metrics_port: int, webhook_port: int) -> None:
        self.process, self.log, self.metrics_port, self.webhook_port = process, log, metrics_port, webhook_port

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(item in line for item in wanted):
                total += float(line.rsplit(" ", 1)[1])
        return total


def start_operator(devcluster: DevCluster, log: Path, prometheus_url: str, webhook_port: int, configuration: str,
                   secret: str, *arguments: str) -> Operator:
    metrics_port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", prometheus_url, "--health-port", "0",
             "--metrics-port", str(metrics_port), "--webhook-port", str(webhook_port),
             "--webhook-configuration", configuration, "--webhook-cert-secret", f"{SYSTEM}/{secret}",
             "--default-allowed-regions", EU, *arguments],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)},
        )
    return Operator(process, log, metrics_port, webhook_port)


def served_serial(port: int) -> int | None:
    """The serial number of the certificate the webhook presents (unverified: which one, not whether trusted)."""
    try:
        pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    except OSError:
        return None
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def configured(api: k8s_client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        found = k8s_client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(name)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise
    body: dict[str, Any] = api.sanitize_for_serialization(found)
    return body


def wait_serving(api: k8s_client.ApiClient, operator: Operator, name: str) -> None:
    def ready() -> bool:
        found = configured(api, name)
        hook = (found or {}).get("webhooks", [{}])[0]
        return (f":{operator.webhook_port}/" in hook.get("clientConfig", {}).get("url", "")
                and bool(hook["clientConfig"].get("caBundle")) and served_serial(operator.webhook_port) is not None)

    try:
        wait_until(f"the webhook of {operator.log.name} serving", ready, timeout=90)
    except AssertionError:
        print(operator.log.read_text()[-4000:])
        raise


def delete_configuration(api: k8s_client.ApiClient, name: str) -> None:
    try:
        k8s_client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(name)
    except k8s_client.ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentPrometheus]:
    listener = SilentPrometheus()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def system(api: k8s_client.ApiClient) -> Iterator[str]:
    core = k8s_client.CoreV1Api(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=SYSTEM)))
    yield SYSTEM
    core.delete_namespace(SYSTEM)


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, silent: SilentPrometheus, system: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("admission-operator") / "operator.log"
    running = start_operator(devcluster, log, f"http://127.0.0.1:{silent.port}", free_port(), CONFIGURATION, SECRET,
                             "--namespace", f"{PREFIX}*", "--webhook-cert-lifetime", "90s", "--verbose",
                             "--log-format", "json")
    try:
        wait_serving(api, running, CONFIGURATION)
        yield running
    finally:
        stop_process(running.process, log)
        delete_configuration(api, CONFIGURATION)
        above_debug = [record for record in records(log) if record.get("severity") != "debug"]
        assert not [record for record in above_debug if CANARY in json.dumps(record)], \
            "a pod's name reached the operator's log at INFO or above"


Namespaces = Callable[..., str]


@pytest.fixture
def namespaces(api: k8s_client.ApiClient) -> Iterator[Namespaces]:
    core = k8s_client.CoreV1Api(api)
    created: list[str] = []

    def make(enforced: bool = True, regions: str | None = EU, default_class: str | None = None) -> str:
        name = f"{PREFIX}{uuid.uuid4().hex[:6]}"
        annotations = {**({"healthscale.io/allowed-regions": regions} if regions else {}),
                       **({"healthscale.io/default-data-class": default_class} if default_class else {})}
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(
            name=name, labels={"healthscale.io/residency": "enforced"} if enforced else None,
            annotations=annotations or None)))
        created.append(name)
        return name

    yield make
    custom = k8s_client.CustomObjectsApi(api)
    for name in created:
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, name, "clinicalslos")["items"]:
            custom.patch_namespaced_custom_object(GROUP, VERSION, name, "clinicalslos", item["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
        core.delete_namespace(name)


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}], **spec}}


T = TypeVar("T")


def past_other_webhooks(call: Callable[[], T]) -> T:
    """``call()``, again while another test run's webhook on this shared cluster does not answer.

    Every residency webhook configuration judges every enforced namespace; one whose operator a
    finishing test run has just stopped fails calls (500, "failed calling webhook") for the moment
    before it is deleted. That says nothing about this module's webhook, whose refusals are 403s.
    """
    deadline = time.monotonic() + 60
    while True:
        try:
            return call()
        except k8s_client.ApiException as error:
            if error.status != 500 or "failed calling webhook" not in str(error.body) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def refused(api: k8s_client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """Create the pod, expecting the webhook to refuse it; the refusal's message."""
    with pytest.raises(k8s_client.ApiException) as error:
        past_other_webhooks(lambda: k8s_client.CoreV1Api(api).create_namespaced_pod(namespace, body))
    assert error.value.status == 403, error.value.body
    message = str(json.loads(error.value.body)["message"])
    assert DENIED in message, message
    return message


def admitted(api: k8s_client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    past_other_webhooks(lambda: k8s_client.CoreV1Api(api).create_namespaced_pod(namespace, body))


# --------------------------------------------------------------------------------- default deny


def test_an_unlabelled_pod_is_the_namespace_default_class_and_only_none_is_exempt(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    before = operator.metric("healthscale_residency_admissions_total", namespace=namespace, result="denied")
    message = refused(api, namespace, pod(f"chart-{CANARY}"))
    assert (f"a pod holding phi data (no healthscale.io/data-class label, so the namespace's default phi applies; "
            f"label it healthscale.io/data-class=none if it holds no patient data) in namespace {namespace} must "
            "stay in eu-west-1, eu-central-1: it has neither a nodeSelector") in message
    assert CANARY not in message, "the refusal (which controllers turn into Events) names no pod"
    assert "is not phi, pii or none" in refused(api, namespace, pod(f"odd-{CANARY}", {CLASS: "PHI"}))
    admitted(api, namespace, pod(f"cache-{CANARY}", {CLASS: "none"}))
    admitted(api, namespace, pod(f"chart-eu-{CANARY}", affinity=IN_EU))
    pii = namespaces(default_class="pii")
    assert "default pii applies" in refused(api, pii, pod(f"form-{CANARY}"))
    outside = namespaces(enforced=False)
    admitted(api, outside, pod(f"anything-{CANARY}"))
    assert operator.metric("healthscale_residency_admissions_total", namespace=namespace, result="denied") == before + 2
    decisions = {record["message"]: record["severity"] for record in records(operator.log)
                 if f"of a pod in namespace {namespace} " in str(record.get("message"))}
    assert decisions[f"residency admission: CREATE of a pod in namespace {namespace} denied: phi data without a "
                     f"nodeSelector or required node affinity on {REGION}"] == "warn"
    assert decisions[f"residency admission: CREATE of a pod in namespace {namespace} denied: unknown data without a "
                     f"nodeSelector or required node affinity on {REGION}"] == "warn"
    allowed = [severity for message, severity in decisions.items() if " allowed " in message]
    assert allowed and set(allowed) == {"debug"}, "allowed pods are DEBUG lines only"


# --------------------------------------------------------------------------------- every controller


def template(labels: dict[str, str], affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                     **({"affinity": affinity} if affinity else {}),
                     **({"restartPolicy": "Never"} if labels.get("kind") == "batch" else {})}}


def controllers(name: str, affinity: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """One of each controller, none of them labelling its pods with a data class."""
    app = {"app": name}
    batch = {"app": name, "kind": "batch"}
    job = {"template": template(batch, affinity), "backoffLimit": 0}
    return [
        ("Deployment", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                        "spec": {"replicas": 2, "selector": {"matchLabels": app}, "template": template(app, affinity)}}),
        ("StatefulSet", {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
                         "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": app},
                                  "template": template(app, affinity)}}),
        ("DaemonSet", {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
                       "spec": {"selector": {"matchLabels": app}, "template": template(app, affinity)}}),
        ("Job", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": job}),
        ("CronJob", {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                     "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job}}}),
    ]


def create(api: k8s_client.ApiClient, namespace: str, kind: str, body: dict[str, Any]) -> None:
    apps, batch = k8s_client.AppsV1Api(api), k8s_client.BatchV1Api(api)
    {"Deployment": apps.create_namespaced_deployment, "StatefulSet": apps.create_namespaced_stateful_set,
     "DaemonSet": apps.create_namespaced_daemon_set, "Job": batch.create_namespaced_job,
     "CronJob": batch.create_namespaced_cron_job}[kind](namespace, body)


def refusals(api: k8s_client.ApiClient, namespace: str) -> dict[str, str]:
    """Controller kind -> the message of a FailedCreate event the webhook caused."""
    found = {}
    for event in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items:
        if event.reason in ("FailedCreate", "FailedCreatePod") and DENIED in (event.message or ""):
            found[event.involved_object.kind] = event.message
    return found


def test_pods_from_every_controller_are_checked(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    """Deployment (its ReplicaSet), StatefulSet, DaemonSet, Job and CronJob (its Job): the
    controller-manager creates the pods, the webhook refuses those that could leave the regions."""
    refused_ns, allowed_ns = namespaces(), namespaces()
    for kind, body in controllers(f"unbound-{CANARY}", None):
        create(api, refused_ns, kind, body)
    for kind, body in controllers(f"in-eu-{CANARY}", IN_EU):
        if kind != "CronJob":  # its Jobs are Jobs; a new one each minute would keep a pod pending
            create(api, allowed_ns, kind, body)
    expected = {"ReplicaSet", "StatefulSet", "DaemonSet", "Job"}
    found = wait_until("FailedCreate events from every controller", lambda: (
        lambda seen: seen if expected <= set(seen) else None)(refusals(api, refused_ns)), timeout=120)
    for message in found.values():
        assert "a pod holding phi data (no healthscale.io/data-class label" in message
    # The CronJob's Job: created by the CronJob controller at the next minute, then refused like any Job.
    jobs = wait_until("the CronJob's first Job", lambda: [
        job for job in k8s_client.BatchV1Api(api).list_namespaced_job(refused_ns).items
        if any(owner.kind == "CronJob" for owner in job.metadata.owner_references or [])], timeout=150)
    cron_job = jobs[0].metadata.name
    wait_until("the CronJob's Job refused", lambda: [
        event for event in k8s_client.CoreV1Api(api).list_namespaced_event(refused_ns).items
        if event.involved_object.name == cron_job and DENIED in (event.message or "")], timeout=60)
    eu_nodes = {node.metadata.name for node in k8s_client.CoreV1Api(api).list_node().items
                if (node.metadata.labels or {}).get(REGION) in EU.split(",") and not node.spec.taints}
    # A DaemonSet pod names its node (matchFields metadata.name): the ones for EU nodes cannot run
    # anywhere else and are admitted; the others are refused, naming their node. Nothing else got in.
    through = [(item.spec.node_name or "", [owner.kind for owner in item.metadata.owner_references or []])
               for item in k8s_client.CoreV1Api(api).list_namespaced_pod(refused_ns).items]
    assert all(kinds == ["DaemonSet"] and node in eu_nodes for node, kinds in through), through
    assert "names node(s) kwok-us-east-1" in found["DaemonSet"]

    def placed() -> list[tuple[str, str]] | None:
        pods = k8s_client.CoreV1Api(api).list_namespaced_pod(allowed_ns).items
        owners = {owner.kind for item in pods for owner in item.metadata.owner_references or []}
        if not {"ReplicaSet", "StatefulSet", "DaemonSet", "Job"} <= owners or not all(p.spec.node_name for p in pods):
            return None
        return [(item.metadata.name, item.spec.node_name) for item in pods]

    try:
        where = wait_until("the restricted controllers' pods scheduled", placed, timeout=120)
    except AssertionError:
        for item in k8s_client.CoreV1Api(api).list_namespaced_pod(allowed_ns).items:
            print(item.metadata.name, [owner.kind for owner in item.metadata.owner_references or []],
                  item.spec.node_name, item.status.phase)
        for event in k8s_client.CoreV1Api(api).list_namespaced_event(allowed_ns).items:
            if event.type == "Warning":
                print(event.involved_object.kind, event.reason, event.message)
        raise
    assert {node for _, node in where} <= eu_nodes
    daemons = [item for item in k8s_client.CoreV1Api(api).list_namespaced_pod(allowed_ns).items
               if any(owner.kind == "DaemonSet" for owner in item.metadata.owner_references or [])]
    assert {item.spec.node_name for item in daemons} == eu_nodes, "one daemon pod per EU node, none elsewhere"
    assert refusals(api, allowed_ns) == {}


# --------------------------------------------------------------------------------- relabelling


def test_a_running_pod_cannot_be_relabelled_into_patient_data_outside_its_regions(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces()
    core = k8s_client.CoreV1Api(api)
    admitted(api, namespace, pod(f"us-{CANARY}", {CLASS: "none"}, nodeSelector={REGION: "us-east-1"}))
    admitted(api, namespace, pod(f"eu-{CANARY}", {CLASS: "none"}, nodeSelector={REGION: "eu-west-1"}))
    for name in (f"us-{CANARY}", f"eu-{CANARY}"):
        wait_until(f"{name} scheduled", lambda name=name: core.read_namespaced_pod(name, namespace).spec.node_name)
    us_node = core.read_namespaced_pod(f"us-{CANARY}", namespace).spec.node_name

    with pytest.raises(k8s_client.ApiException) as phi:
        past_other_webhooks(lambda: core.patch_namespaced_pod(f"us-{CANARY}", namespace,
                                                              {"metadata": {"labels": {CLASS: "phi"}}}))
    assert phi.value.status == 403
    assert f"it runs on node {us_node}, which has region us-east-1" in json.loads(phi.value.body)["message"]
    with pytest.raises(k8s_client.ApiException) as unlabelled:
        past_other_webhooks(lambda: core.patch_namespaced_pod(f"us-{CANARY}", namespace,
                                                              {"metadata": {"labels": {CLASS: None}}}))
    assert unlabelled.value.status == 403, "removing none makes it the default class"
    past_other_webhooks(lambda: core.patch_namespaced_pod(f"eu-{CANARY}", namespace,
                                                          {"metadata": {"labels": {CLASS: "phi"}}}))
    assert core.read_namespaced_pod(f"eu-{CANARY}", namespace).metadata.labels[CLASS] == "phi"
    # Updates that change neither class nor constraints are not the webhook's business (the audit's).
    core.patch_namespaced_pod(f"us-{CANARY}", namespace, {"metadata": {"annotations": {"note": "x"}}})


def test_a_pod_from_before_enforcement_keeps_running_and_its_routine_updates_pass(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    namespace = namespaces(enforced=False)
    core = k8s_client.CoreV1Api(api)
    admitted(api, namespace, pod(f"legacy-{CANARY}", nodeSelector={REGION: "us-east-1"}))
    wait_until("the legacy pod scheduled", lambda: core.read_namespaced_pod(f"legacy-{CANARY}", namespace).spec.node_name)
    core.patch_namespace(namespace, {"metadata": {"labels": {"healthscale.io/residency": "enforced"}}})
    wait_until("the namespace enforced for the webhook", lambda: "must stay in" in (
        lambda error: json.loads(error.body)["message"] if error else "")(_create_error(api, namespace)), timeout=30)
    past_other_webhooks(lambda: core.patch_namespaced_pod(f"legacy-{CANARY}", namespace,
                                                          {"metadata": {"labels": {"team": "ehr"}}}))
    assert core.read_namespaced_pod(f"legacy-{CANARY}", namespace).metadata.labels["team"] == "ehr"


def _create_error(api: k8s_client.ApiClient, namespace: str) -> k8s_client.ApiException | None:
    try:
        past_other_webhooks(lambda: k8s_client.CoreV1Api(api).create_namespaced_pod(
            namespace, pod(f"probe-{uuid.uuid4().hex[:5]}"), dry_run="All"))
    except k8s_client.ApiException as error:
        return error
    return None


# --------------------------------------------------------------------------------- staying up


def slo(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"journey": "blocked", "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "indicators": {"demand": "vector(1)"},
                 "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 3, "startupSeconds": 30},
                 "forecast": {"history": "2d", "step": "1m", "horizon": "1h"}},
    }


def cycles_in_flight(log: Path) -> list[tuple[dt.datetime, int]]:
    """From the operator's log: after each tick started or ended, how many ticks were in flight.

    Kopf logs a timer as invoked when it hands the (sync) handler to its thread pool, and as
    succeeded or failed when the handler returns. With at least as many in flight as the pool has
    threads, every thread is busy with one.
    """
    steps, running = [], 0
    for record in records(log):
        message = str(record.get("message"))
        if not message.startswith("Timer 'tick' "):
            continue
        running += 1 if message == "Timer 'tick' is invoked." else -1 if (
            "succeeded" in message or "failed" in message) else 0
        steps.append((dt.datetime.fromisoformat(record["timestamp"]), running))
    return steps


def least_in_flight(log: Path, start: dt.datetime, end: dt.datetime) -> int:
    """The fewest ticks in flight at any moment between ``start`` and ``end``."""
    steps = cycles_in_flight(log)
    before = [count for at, count in steps if at <= start]
    during = [count for at, count in steps if start < at <= end]
    return min([before[-1] if before else 0, *during])


def test_admission_answers_while_every_planning_worker_waits_on_a_silent_prometheus(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces, silent: SilentPrometheus) -> None:
    planned = namespaces(enforced=False)
    apps, custom = k8s_client.AppsV1Api(api), k8s_client.CustomObjectsApi(api)
    for number in range(3 * WORKERS):
        name = f"journey-{number}"
        apps.create_namespaced_deployment(planned, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name})}})
        custom.create_namespaced_custom_object(GROUP, VERSION, planned, "clinicalslos", slo(planned, name))
    now = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
    wait_until(f"all {WORKERS} planning workers busy, waiting on the silent Prometheus", lambda: (
        silent.open >= 1 and least_in_flight(operator.log, now(), now()) >= WORKERS), timeout=120)

    namespace = namespaces()
    start = now()
    for number in range(10):
        refused(api, namespace, pod(f"loose-{number}-{CANARY}"))
        admitted(api, namespace, pod(f"pinned-{number}-{CANARY}", affinity=IN_EU))
        admitted(api, namespace, pod(f"exempt-{number}-{CANARY}", {CLASS: "none"}))
    end = now()
    assert len(k8s_client.CoreV1Api(api).list_namespaced_pod(namespace).items) == 20
    time.sleep(2)  # the log lines of that moment are written
    assert least_in_flight(operator.log, start, end) >= WORKERS, \
        "every planning worker was busy with a cycle the whole time the pods were admitted and refused"
    assert silent.most >= 1


def test_the_certificate_is_renewed_and_served_without_a_restart(
        api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces) -> None:
    first = served_serial(operator.webhook_port)
    assert first is not None
    wait_until("a renewed certificate served", lambda: served_serial(operator.webhook_port) not in (None, first),
               timeout=120, pause=2)
    assert operator.process.poll() is None, "the same process"
    namespace = namespaces()
    refused(api, namespace, pod(f"after-renewal-{CANARY}"))  # the API server trusts the renewed certificate
    admitted(api, namespace, pod(f"after-renewal-eu-{CANARY}", affinity=IN_EU))
    wait_until("the configuration trusting the Secret's CAs", lambda: (
        configured(api, CONFIGURATION) or {})["webhooks"][0]["clientConfig"]["caBundle"]
        == k8s_client.CoreV1Api(api).read_namespaced_secret(SECRET, SYSTEM).data["ca.crt"], timeout=30)
    assert "residency webhook certificate in Secret" in operator.log.read_text()


def test_two_replicas_share_one_certificate_and_either_one_answers(
        devcluster: DevCluster, api: k8s_client.ApiClient, operator: Operator, namespaces: Namespaces,
        system: str, tmp_path: Path) -> None:
    """Two more operator processes on one port (SO_REUSEPORT, like two pods behind a Service), with
    their own configuration and Secret: they converge on one certificate, and admission goes on
    while either one is stopped."""
    name, secret, port = f"{CONFIGURATION}-ha", f"{CONFIGURATION}-ha-cert", free_port()
    core = k8s_client.CoreV1Api(api)
    replicas: dict[str, Operator] = {}
    namespace = namespaces()  # both replicas serve it (each configuration judges only its operator's namespaces)

    def start(which: str) -> Operator:
        replicas[which] = start_operator(devcluster, tmp_path / f"{which}.log", devcluster.prometheus_url, port, name,
                                         secret, "--namespace", namespace)
        return replicas[which]

    try:
        first = start("first")
        wait_serving(api, first, name)
        issued = core.read_namespaced_secret(secret, SYSTEM)
        second = start("second")
        wait_until("the second replica serving", lambda: "residency webhook listening" in second.log.read_text(),
                   timeout=90)
        assert core.read_namespaced_secret(secret, SYSTEM).metadata.resource_version == \
            issued.metadata.resource_version, "the second replica took the first one's certificate"
        serial = x509.load_pem_x509_certificate(base64.b64decode(issued.data["tls.crt"])).serial_number
        for replica in (first, second):
            assert f"residency webhook serves certificate {serial:x}" in replica.log.read_text()
        for stopped, answering in (("first", "second"), ("second", "first")):
            stop_process(replicas[stopped].process, replicas[stopped].log)
            before = replicas[answering].metric("healthscale_admission_duration_seconds_count")
            refused(api, namespace, pod(f"while-{stopped}-down-{CANARY}"))
            admitted(api, namespace, pod(f"while-{stopped}-down-eu-{CANARY}", affinity=IN_EU))
            assert replicas[answering].metric("healthscale_admission_duration_seconds_count") >= before + 2
            start(stopped)
            wait_until(f"the {stopped} replica back", lambda stopped=stopped: "residency webhook listening" in
                       replicas[stopped].log.read_text(), timeout=90)
        assert core.read_namespaced_secret(secret, SYSTEM).metadata.resource_version == \
            issued.metadata.resource_version, "restarts reuse the shared certificate"
    finally:
        for replica in replicas.values():
            stop_process(replica.process, replica.log)
        delete_configuration(api, name)
