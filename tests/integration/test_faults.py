"""Faults injected on the real stack while a surge floor is held: healthscale never costs capacity.

Each test runs its own `healthscale run` for one namespace, holds an always-active surge floor on a
Deployment (or its HPA), injects one fault and checks, every half second while the fault lasts,
that the replicas (or the HPA's minReplicas) never drop below what must hold:

    max(surge floor, the ClinicalSLO's minReplicas, what the workload had before healthscale)

Floors are well above the other two here, so "the floor" below is that maximum. At the end each
test deletes the ClinicalSLO and checks that the workload is back at what healthscale found, that
the finalizer is gone and that the namespace deletion completes.

Faults that would break other sessions sharing the dev cluster use their own copy of the faulty
component: a private Prometheus scraping the same demand exporter, and a second kube-apiserver on
the shared etcd that only the operator under test talks to (the test itself watches through the
shared one). See RELIABILITY.md for the list of faults and how to reproduce each.

Cycles are ``STEP`` (1 minute) apart, and the operator ticks every 20 s: a changed surge floor must be
applied within one tick plus a cycle's work (``FLOOR_DEADLINE``), and what only a cycle can notice
within a step (``CYCLE_DEADLINE``).
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch

from clusterlib import (ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, active_surge_schedule, deployment,
                        release_and_delete, status_of, stop_process, wait_until)

pytestmark = pytest.mark.integration

NAME = "ehr-api"
SLO = "ed-triage"
STEP = "1m"
"""forecast.step of the ClinicalSLOs here: the shortest the CRD allows."""
TICK = 20.0
"""healthscale.runtime.handlers.TICK_SECONDS: a changed SurgeSchedule is acted on at the next tick."""
FLOOR_DEADLINE = TICK + 15.0
"""A changed surge floor must be in place within one tick and the cycle's own work, whatever fails."""
CYCLE_DEADLINE = 60 + TICK + 10.0
"""Something only a cycle notices (an HPA floor overwritten, a re-created target) is seen within one
step, give or take the tick it falls due at, plus the cycle's own work."""
PERIOD = 0.5
"""How often the invariants are sampled."""
FIGHTER = "fault-second-writer"


class Cluster(DevCluster, Protocol):  # conftest.DevCluster, as far as used here
    env: dict[str, str]

    def pid(self, component: str) -> int: ...


# ------------------------------------------------------------------------------------------ objects

def slo_body(namespace: str, min_replicas: int = 1) -> dict[str, Any]:
    """A ClinicalSLO whose demand (ED arrivals at 1000/replica) asks for one replica: the surge floor decides."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": SLO, "namespace": namespace, "labels": {"healthscale.io/journey-group": "emergency"}},
        "spec": {
            "journey": "ED triage screens", "criticality": "critical", "mode": "Active",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "indicators": {"demand": ED_DEMAND},
            "capacity": {"perReplica": 1000, "minReplicas": min_replicas, "maxReplicas": 40, "startupSeconds": 0},
            "forecast": {"history": "1h", "step": STEP, "horizon": "5m"},
        },
    }


def create_surge(api: k8s_client.ApiClient, namespace: str, floor: int) -> None:
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "surgeschedules", active_surge_schedule(namespace, "drill", "major-incident", floor))


def raise_surge(api: k8s_client.ApiClient, namespace: str, floor: int) -> None:
    """Move the active surge's floor (a whole new surges list: merge patches replace lists)."""
    surges = active_surge_schedule(namespace, "drill", "major-incident", floor)["spec"]["surges"]
    k8s_client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "surgeschedules", "drill", {"spec": {"surges": surges}})


def create_slo(api: k8s_client.ApiClient, namespace: str) -> None:
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos", slo_body(namespace))


def create_hpa(api: k8s_client.ApiClient, namespace: str, min_replicas: int) -> None:
    k8s_client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, k8s_client.V2HorizontalPodAutoscaler(
        metadata=k8s_client.V1ObjectMeta(name=NAME),
        spec=k8s_client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s_client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=NAME),
            min_replicas=min_replicas, max_replicas=30,
            metrics=[k8s_client.V2MetricSpec(type="Resource", resource=k8s_client.V2ResourceMetricSource(
                name="cpu", target=k8s_client.V2MetricTarget(type="Utilization", average_utilization=70)))],
        ),
    ))


def last_cycle(api: k8s_client.ApiClient, namespace: str) -> float:
    """When the ClinicalSLO's last cycle ran (epoch seconds; 0 before the first)."""
    stamp = status_of(api, namespace, SLO).get("lastCycleTime")
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))) if stamp else 0.0


# ------------------------------------------------------------------------------------- invariants

@dataclasses.dataclass(frozen=True)
class Sample:
    """One reading of the field healthscale moves: which object, its value, who last set it."""

    uid: str
    value: int
    writer: str | None


def _writer(item: Any, path: tuple[str, ...]) -> str | None:
    """The field manager owning ``path`` (e.g. ("spec", "replicas")): the last one that changed it."""
    for entry in item.metadata.managed_fields or []:
        fields = entry.fields_v1 or {}
        for part in path:
            fields = fields.get(f"f:{part}") if isinstance(fields, dict) else None
        if fields is not None:
            return str(entry.manager)
    return None


def read_replicas(api: k8s_client.ApiClient, namespace: str) -> Sample | None:
    try:
        found = k8s_client.AppsV1Api(api).read_namespaced_deployment(NAME, namespace, _request_timeout=5)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return Sample(found.metadata.uid, int(found.spec.replicas), _writer(found, ("spec", "replicas")))


def read_hpa_floor(api: k8s_client.ApiClient, namespace: str) -> Sample | None:
    try:
        found = k8s_client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(NAME, namespace, _request_timeout=5)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return Sample(found.metadata.uid, int(found.spec.min_replicas), _writer(found, ("spec", "minReplicas")))


class FloorWatch:
    """Samples the scaled field every ``PERIOD`` seconds in a thread; records each sample below the floor.

    The floor in force at a moment is the highest one asked for so far whose deadline has passed
    (``raise_floor`` gives healthscale time to apply a new one). A second object of the same name
    (another uid: deleted and re-created) is held to the floor ``grace`` seconds after it appears.
    Values set by the field managers in ``others`` are another writer's, not healthscale's, and
    are not violations. Readings that fail (an API server down) are counted as gaps.
    """

    def __init__(self, cluster: DevCluster, read: Callable[[k8s_client.ApiClient, str], Sample | None],
                 namespace: str, floor: int, grace: float = 0.0, others: frozenset[str] = frozenset()) -> None:
        self._cluster, self._read, self._namespace = cluster, read, namespace
        self._floors: list[tuple[float, int]] = [(time.monotonic(), floor)]
        self._grace, self._others = grace, others
        self._first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self.samples: list[tuple[float, Sample | None]] = []
        self.violations: list[str] = []
        self.gaps = 0

    def raise_floor(self, floor: int, within: float = FLOOR_DEADLINE) -> None:
        self._floors.append((time.monotonic() + within, floor))

    def floor_at(self, moment: float) -> int:
        return max(floor for since, floor in self._floors if since <= moment)

    def writers(self) -> set[str | None]:
        return {sample.writer for _, sample in self.samples if sample is not None}

    def _check(self, moment: float, sample: Sample) -> None:
        first = self._first_seen.setdefault(sample.uid, moment)
        if len(self._first_seen) > 1 and moment < first + self._grace:
            return  # a re-created object: healthscale has one cycle to find it
        floor = self.floor_at(moment)
        if sample.value < floor and sample.writer not in self._others:
            self.violations.append(f"t={moment - self._started:.1f}s: {sample.value} < floor {floor} "
                                   f"(uid {sample.uid[:8]}, last set by {sample.writer})")

    def _sample(self, api: k8s_client.ApiClient) -> None:
        moment = time.monotonic()
        try:
            sample = self._read(api, self._namespace)
        except Exception:  # noqa: BLE001 - any failure to read is a gap, not a verdict
            self.gaps += 1
        else:
            self.samples.append((moment, sample))
            if sample is not None:
                self._check(moment, sample)

    def _run(self) -> None:
        api = self._cluster.api_client()
        try:
            while not self._stop.wait(PERIOD):
                self._sample(api)
        finally:
            api.close()

    def __enter__(self) -> FloorWatch:
        api = self._cluster.api_client()
        try:
            self._sample(api)  # here, so that the object there at the start is known as the first
        finally:
            api.close()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def assert_held(self) -> None:
        seen = [sample for _, sample in self.samples if sample is not None]
        assert len(seen) >= 5, f"too few readings to judge ({len(seen)}, {self.gaps} failed)"
        assert not self.violations, (f"{len(self.violations)} of {len(self.samples)} readings below the floor:\n  "
                                     + "\n  ".join(self.violations[:15]))


def released_and_restored(api: k8s_client.ApiClient, namespace: str,
                          read: Callable[[k8s_client.ApiClient, str], Sample | None], original: int) -> None:
    """Delete the ClinicalSLO: the finalizer must go, and only after the original was put back."""
    custom = k8s_client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", SLO)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", SLO)
        except k8s_client.ApiException as error:
            return error.status == 404
        return False

    wait_until("the finalizer to release the deleted ClinicalSLO", gone, timeout=45, pause=0.5)
    after = read(api, namespace)
    assert after is not None and after.value == original, (
        f"after the ClinicalSLO was deleted the workload has {after.value if after else 'nothing'}, "
        f"not the {original} it had before healthscale (last set by {after.writer if after else None})")


def namespace_deleted(api: k8s_client.ApiClient, namespace: str) -> None:
    core = k8s_client.CoreV1Api(api)
    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except k8s_client.ApiException as error:
            return error.status == 404
        return False

    wait_until(f"namespace {namespace} to be deleted", gone, timeout=90, pause=1)


# -------------------------------------------------------------------------------------- processes

class Operator:
    """A `healthscale run` for one namespace, that a test can SIGKILL and start again."""

    def __init__(self, kubeconfig: Path, prometheus_url: str, namespace: str, log: Path) -> None:
        self.kubeconfig, self.prometheus_url, self.namespace, self.log = kubeconfig, prometheus_url, namespace, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "healthscale", "run", "--prometheus-url", self.prometheus_url,
                 "--namespace", self.namespace, "--metrics-port", "0", "--health-port", "0"],
                cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, self.log)

    def assert_running(self) -> None:
        assert self.process is not None
        assert self.process.poll() is None, (f"healthscale run exited with {self.process.returncode}:\n"
                                             f"{self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def operator_for(kubeconfig: Path, prometheus_url: str, namespace: str, log: Path) -> Iterator[Operator]:
    operator = Operator(kubeconfig, prometheus_url, namespace, log)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """A process of our own with fixed arguments: start, signal, kill, start again the same way."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as output:
            self.process = subprocess.Popen(self.argv, stdout=output, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            stop_process(self.process)


def prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def own_prometheus(devcluster: Cluster, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    """A Prometheus of this test's own (so SIGSTOP/SIGKILL harm no one else), scraping the dev
    cluster's demand exporter every 5 s; started the way up.sh starts the shared one."""
    exporter = urllib.parse.urlparse(devcluster.env["DEVCLUSTER_DEMAND_EXPORTER_URL"])
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "15s"},
        "scrape_configs": [{
            "job_name": "demand-replay", "scrape_interval": "5s",
            "static_configs": [{"targets": [exporter.netloc]}],
            "relabel_configs": [{"target_label": "instance", "replacement": "demand-replay"}],
        }],
    }))
    service = Service(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                       "--storage.tsdb.retention.time=1d", f"--web.listen-address=127.0.0.1:{port}",
                       "--web.enable-lifecycle", "--log.level=warn"], tmp_path / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    service.start()
    try:
        wait_until("our own Prometheus ready", lambda: prometheus_ready(url), timeout=60, pause=0.5)
        yield service, url
    finally:
        service.stop()


@pytest.fixture
def own_apiserver(devcluster: Cluster, tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    """A second kube-apiserver on the shared etcd, with the shared one's arguments (read from
    /proc, as up.sh gave them) but its own port. Only the operator under test uses it, so
    restarting it harms no other session; the objects are the same, being in the same etcd."""
    shared = devcluster.pid("kube-apiserver")
    argv = Path(f"/proc/{shared}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    port = free_port()
    replaced = {"--secure-port": str(port), "--cert-dir": str(tmp_path / "apiserver-generated")}
    argv = [f"{arg.split('=', 1)[0]}={replaced[arg.split('=', 1)[0]]}" if arg.split("=", 1)[0] in replaced else arg
            for arg in argv]
    argv.append("--endpoint-reconciler-type=none")  # leave the `kubernetes` Service's endpoints to the shared one
    kubeconfig = tmp_path / "kubeconfig"
    config = yaml.safe_load(devcluster.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o600)
    service = Service(argv, tmp_path / "kube-apiserver.log")
    service.start()
    try:
        wait_until_apiserver_ready(devcluster, kubeconfig, service)
        yield service, kubeconfig
    finally:
        service.stop()


def wait_until_apiserver_ready(cluster: Cluster, kubeconfig: Path, service: Service) -> None:
    def ready() -> bool:
        assert service.process is not None and service.process.poll() is None, (
            f"kube-apiserver exited:\n{service.log.read_text()[-3000:]}")
        out = subprocess.run([str(REPO_ROOT / ".devcluster" / "bin" / "kubectl"), f"--kubeconfig={kubeconfig}",
                              "get", "--raw", "/readyz", "--request-timeout=3s"],
                             capture_output=True, text=True, timeout=15, check=False)
        return out.returncode == 0 and out.stdout.strip() == "ok"

    wait_until("our own kube-apiserver ready", ready, timeout=120, pause=1)


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-fault-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    try:
        k8s_client.CoreV1Api(api).read_namespace(name)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return  # the test deleted it, as it should
        raise
    release_and_delete(api, name, grace=5)  # the test failed before its own cleanup


def floor_reached(api: k8s_client.ApiClient, namespace: str, floor: int,
                  read: Callable[[k8s_client.ApiClient, str], Sample | None] = read_replicas,
                  timeout: float = FLOOR_DEADLINE + 5) -> None:
    """Wait for ``floor`` (the FloorWatch judges whether it came in time)."""
    wait_until(f"the floor {floor}", lambda: (lambda sample: sample is not None and sample.value >= floor)(
        read(api, namespace)), timeout=timeout, pause=0.5)


def metrics_reason(api: k8s_client.ApiClient, namespace: str) -> str | None:
    """The reason of the ClinicalSLO's MetricsAvailable condition."""
    return next((item.get("reason") for item in status_of(api, namespace, SLO).get("conditions") or []
                 if item.get("type") == "MetricsAvailable"), None)


def surge_in_place(api: k8s_client.ApiClient, namespace: str, floor: int, original: int,
                   read: Callable[[k8s_client.ApiClient, str], Sample | None] = read_replicas) -> None:
    """The ClinicalSLO and an active surge at ``floor``, applied (from ``original``)."""
    create_surge(api, namespace, floor)
    create_slo(api, namespace)
    wait_until(f"the surge floor {floor} applied (from {original})",
               lambda: (lambda sample: sample is not None and sample.value == floor)(read(api, namespace)),
               timeout=90, pause=0.5)


# ------------------------------------------------------------------------------------------ tests

def test_a_prometheus_stopped_then_killed_mid_surge_delays_no_floor_and_drops_none(
        devcluster: Cluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path,
        own_prometheus: tuple[Service, str]) -> None:
    prometheus, url = own_prometheus
    deployment(api, namespace, NAME, 2)
    with operator_for(devcluster.kubeconfig, url, namespace, tmp_path / "operator.log") as operator:
        surge_in_place(api, namespace, floor=6, original=2)
        with FloorWatch(devcluster, read_replicas, namespace, floor=6) as watch:
            prometheus.signal(signal.SIGSTOP)  # silent: the kernel accepts connections, nothing answers
            raise_surge(api, namespace, 9)
            watch.raise_floor(9)
            floor_reached(api, namespace, 9)
            time.sleep(5)
            prometheus.kill()  # gone: connections refused
            raise_surge(api, namespace, 12)
            watch.raise_floor(12)
            floor_reached(api, namespace, 12)
            wait_until("the operator to see Prometheus unavailable", lambda: metrics_reason(
                api, namespace) == "PrometheusUnavailable", timeout=FLOOR_DEADLINE, pause=0.5)
            prometheus.start()  # again, exactly as before, on its data
            wait_until("our own Prometheus back", lambda: prometheus_ready(url), timeout=60, pause=0.5)
            time.sleep(2)
            operator.assert_running()
        watch.assert_held()
        released_and_restored(api, namespace, read_replicas, original=2)
    namespace_deleted(api, namespace)


def test_a_restarted_kube_apiserver_drops_no_floor_and_the_operator_follows_changes_after_it(
        devcluster: Cluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path,
        own_apiserver: tuple[Service, Path]) -> None:
    apiserver, kubeconfig = own_apiserver
    deployment(api, namespace, NAME, 2)
    with operator_for(kubeconfig, devcluster.prometheus_url, namespace, tmp_path / "operator.log") as operator:
        surge_in_place(api, namespace, floor=6, original=2)
        with FloorWatch(devcluster, read_replicas, namespace, floor=6) as watch:  # through the shared API server
            apiserver.kill()
            time.sleep(5)
            apiserver.start()  # the same arguments
            wait_until_apiserver_ready(devcluster, kubeconfig, apiserver)
            # The operator's watches must have come back: a new floor is applied as usual.
            raise_surge(api, namespace, 9)
            watch.raise_floor(9, within=FLOOR_DEADLINE + 15)  # plus Kopf's backoff before re-watching
            wait_until("the floor raised after the restart", lambda: (
                lambda sample: sample is not None and sample.value == 9)(read_replicas(api, namespace)),
                timeout=FLOOR_DEADLINE + 20, pause=0.5)
            operator.assert_running()
        watch.assert_held()
        released_and_restored(api, namespace, read_replicas, original=2)
    namespace_deleted(api, namespace)


KILL_TARGETS = [
    pytest.param(read_replicas, False, id="on a Deployment"),
    pytest.param(read_hpa_floor, True, id="on an HPA floor"),
]


@pytest.mark.parametrize(("read", "with_hpa"), KILL_TARGETS)
def test_an_operator_killed_right_after_its_scale_write_still_restores_on_delete(
        devcluster: Cluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path,
        read: Callable[[k8s_client.ApiClient, str], Sample | None], with_hpa: bool) -> None:
    deployment(api, namespace, NAME, 2)
    if with_hpa:
        create_hpa(api, namespace, 2)
    log = tmp_path / "operator.log"
    listing = (k8s_client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler if with_hpa
               else k8s_client.AppsV1Api(api).list_namespaced_deployment)
    version = listing(namespace).metadata.resource_version
    create_surge(api, namespace, 7)
    create_slo(api, namespace)
    first = Operator(devcluster.kubeconfig, devcluster.prometheus_url, namespace, log)
    killed_at = 0.0
    events = k8s_watch.Watch().stream(listing, namespace, resource_version=version, timeout_seconds=90,
                                      field_selector=f"metadata.name={NAME}")
    first.start()
    try:
        # SIGKILL the moment the write shows, so that it lands before the status write if it can.
        for event in events:
            item = event["object"]
            if event["type"] == "MODIFIED" and (item.spec.min_replicas if with_hpa else item.spec.replicas) == 7:
                first.kill()
                killed_at = time.time()
                break
    finally:
        events.close()
        first.stop()
    assert killed_at, f"healthscale wrote nothing within 90 s:\n{log.read_text()[-3000:]}"
    print(f"status when killed: {status_of(api, namespace, SLO)!r}")
    with operator_for(devcluster.kubeconfig, devcluster.prometheus_url, namespace, log):
        with FloorWatch(devcluster, read, namespace, floor=7) as watch:
            wait_until("a cycle of the restarted operator", lambda: last_cycle(api, namespace) > killed_at,
                       timeout=60, pause=0.5)
            time.sleep(2)
        watch.assert_held()
        released_and_restored(api, namespace, read, original=2)
    namespace_deleted(api, namespace)


def test_a_second_writer_fighting_over_the_hpa_floor_never_makes_healthscale_lower_it(
        devcluster: Cluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    deployment(api, namespace, NAME, 2)
    create_hpa(api, namespace, 2)
    writes, conflicts = 0, 0
    won = threading.Event()
    done = threading.Event()

    def fight(client: k8s_client.ApiClient) -> None:
        """Another controller's read-modify-write loop putting minReplicas to 4 every 0.5 s, until
        healthscale has written the raised floor back (it then leaves the field to healthscale)."""
        nonlocal writes, conflicts
        autoscaling = k8s_client.AutoscalingV2Api(client)
        while not done.is_set():
            try:
                hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(NAME, namespace, _request_timeout=5)
                if hpa.spec.min_replicas >= 9 and _writer(hpa, ("spec", "minReplicas")) != FIGHTER:
                    won.set()
                    return
                hpa.spec.min_replicas = 4
                autoscaling.replace_namespaced_horizontal_pod_autoscaler(NAME, namespace, hpa, field_manager=FIGHTER,
                                                                         _request_timeout=5)
                writes += 1
            except k8s_client.ApiException as error:
                if error.status != 409:
                    raise
                conflicts += 1
            done.wait(0.5)

    with operator_for(devcluster.kubeconfig, devcluster.prometheus_url, namespace, tmp_path / "operator.log") as operator:
        surge_in_place(api, namespace, floor=8, original=2, read=read_hpa_floor)
        with FloorWatch(devcluster, read_hpa_floor, namespace, floor=8, others=frozenset({FIGHTER})) as watch:
            fighter_client = devcluster.api_client()
            fighter = threading.Thread(target=fight, args=(fighter_client,), daemon=True)
            fighter.start()
            try:
                time.sleep(10)  # the fight alone: healthscale's next cycle may come in it, or not
                raise_surge(api, namespace, 9)  # a cycle within a tick: it must win the field back
                watch.raise_floor(9)
                won.wait(timeout=FLOOR_DEADLINE + 5)
            finally:
                done.set()
                fighter.join(timeout=30)
                fighter_client.close()
            time.sleep(3)
            operator.assert_running()
        print(f"second writer: {writes} writes, {conflicts} conflicts; writers seen: {watch.writers()}")
        assert won.is_set(), f"healthscale did not win the raised floor back in the fight ({writes} writes)"
        assert writes >= 10, "the second writer never got going"
        watch.assert_held()
        released_and_restored(api, namespace, read_hpa_floor, original=2)
    namespace_deleted(api, namespace)


def test_a_target_deleted_and_recreated_mid_surge_gets_its_own_original_back_not_the_old_one(
        devcluster: Cluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    apps = k8s_client.AppsV1Api(api)
    deployment(api, namespace, NAME, 2)
    with operator_for(devcluster.kubeconfig, devcluster.prometheus_url, namespace, tmp_path / "operator.log") as operator:
        surge_in_place(api, namespace, floor=7, original=2)
        with FloorWatch(devcluster, read_replicas, namespace, floor=7, grace=CYCLE_DEADLINE) as watch:
            old_uid = apps.read_namespaced_deployment(NAME, namespace).metadata.uid
            apps.delete_namespaced_deployment(NAME, namespace)
            wait_until("the old Deployment gone", lambda: read_replicas(api, namespace) is None, timeout=30, pause=0.2)
            deployment(api, namespace, NAME, 3)  # same name, new uid, another replica count
            wait_until("the floor on the new Deployment", lambda: (
                lambda sample: sample is not None and sample.uid != old_uid and sample.value == 7)(
                    read_replicas(api, namespace)), timeout=CYCLE_DEADLINE, pause=0.5)
            time.sleep(3)
            operator.assert_running()
        watch.assert_held()
        released_and_restored(api, namespace, read_replicas, original=3)
    namespace_deleted(api, namespace)
