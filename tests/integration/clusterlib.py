"""Helpers the integration tests share: waiting, the Kubernetes objects they create, cleanup.

Imported by name from the test modules (pytest puts this folder on sys.path), like tests/chart's
chartlib. The `devcluster` and `api` fixtures live in conftest.py.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubernetes import client as k8s_client

from healthscale.adapters import prometheus

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "healthscale.io", "v1alpha1"
ED_DEMAND = 'sum(healthscale_demo_requests_per_second{journey="ed-arrivals"})'
T = TypeVar("T")


class DevCluster(Protocol):  # what the tests use of conftest.DevCluster
    kubeconfig: Path
    prometheus_url: str

    def api_client(self) -> k8s_client.ApiClient: ...

    def kubectl(self, *args: str) -> str: ...


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 180.0, pause: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def deployment(api: k8s_client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """A Deployment of pause containers (KWOK reports them Ready) labelled app=<name>."""
    labels = {"app": name}
    container = k8s_client.V1Container(name="app", image="registry.k8s.io/pause:3.10",
                                       resources=k8s_client.V1ResourceRequirements(requests={"cpu": "100m"}))
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, k8s_client.V1Deployment(
        metadata=k8s_client.V1ObjectMeta(name=name),
        spec=k8s_client.V1DeploymentSpec(
            replicas=replicas, selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels=labels),
                                                  spec=k8s_client.V1PodSpec(containers=[container])),
        ),
    ))


def replicas(api: k8s_client.ApiClient, namespace: str, name: str = "ehr-api") -> int:
    return int(k8s_client.AppsV1Api(api).read_namespaced_deployment(name, namespace).spec.replicas)


def release_and_delete(api: k8s_client.ApiClient, namespace: str, grace: float = 30.0) -> None:
    """Delete healthscale's objects first, then the namespace.

    Kopf stops serving a namespace once it is Terminating, so a ClinicalSLO left for the namespace
    deletion would keep its finalizer (and the namespace) forever. Objects an operator has not
    released within ``grace`` seconds (it may be stopped already) lose their finalizers by hand.
    """
    custom = k8s_client.CustomObjectsApi(api)
    plurals = ("clinicalslos", "surgeschedules")

    def left() -> list[tuple[str, str]]:
        return [(plural, item["metadata"]["name"]) for plural in plurals
                for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]]

    for plural, name in left():
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    deadline = time.monotonic() + grace
    while left() and time.monotonic() < deadline:
        time.sleep(1)
    for plural, name in left():
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, {"metadata": {"finalizers": None}})
    k8s_client.CoreV1Api(api).delete_namespace(namespace)


PLACEHOLDER_PRIORITY_CLASS = "healthscale-placeholder"


def placeholder_priority_class(api: k8s_client.ApiClient) -> str:
    """The negative PriorityClass the Helm chart creates for node room, made if missing (left in place:
    other runs use it too); its name."""
    try:
        k8s_client.SchedulingV1Api(api).create_priority_class(k8s_client.V1PriorityClass(
            metadata=k8s_client.V1ObjectMeta(name=PLACEHOLDER_PRIORITY_CLASS), value=-10, preemption_policy="Never",
            global_default=False, description="healthscale placeholder pods: node room real pods preempt"))
    except k8s_client.ApiException as error:
        if error.status != 409:
            raise
    return PLACEHOLDER_PRIORITY_CLASS


def status_of(api: k8s_client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """A ClinicalSLO's status ({} before the first cycle)."""
    found = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", name)
    status: dict[str, Any] = found.get("status") or {}
    return status


class RecordingPrometheus(prometheus.Client):
    """The real Prometheus client, recording what it asks: points per query_range, instant queries."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.points_asked: list[int] = []
        self.queries: list[str] = []

    def range(self, query: str, start: int, end: int, step: int) -> list[tuple[Any, Any]]:
        self.points_asked.append((end - start) // step + 1)
        return super().range(query, start, end, step)

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(query)
        return super().instant(query)


def epoch(stamp: dt.datetime | str | None) -> float | None:
    """An API timestamp (a datetime from the client, or RFC 3339 text) as epoch seconds."""
    if stamp is None:
        return None
    if isinstance(stamp, str):
        stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return float(calendar.timegm(stamp.utctimetuple()))


def turned_true(conditions: list[Any] | None, kind: str) -> float | None:
    """When condition ``kind`` of a pod or node last turned True (None while it is not True)."""
    for condition in conditions or []:
        if condition.type == kind and condition.status == "True":
            return epoch(condition.last_transition_time)
    return None


def stop_process(process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """Terminate (then kill) a started operator; print its log's tail if it did not exit cleanly."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if log is not None and process.returncode not in (0, -15):
        print(log.read_text()[-4000:])


@contextlib.contextmanager
def running_operator(devcluster: DevCluster, log: Path, namespaces: str, *extra: str, prometheus_url: str | None = None,
                     append: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """``healthscale run`` against the dev cluster's API server and Prometheus (or ``prometheus_url``),
    serving ``namespaces`` (a glob), its output in ``log`` (added to it with ``append``: a restart);
    stopped (its log's tail printed if it failed) on leaving."""
    with log.open("ab" if append else "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", prometheus_url or devcluster.prometheus_url,
             "--namespace", namespaces, "--metrics-port", "0", "--health-port", "0", *extra],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)})
    try:
        time.sleep(2)
        if process.poll() is not None:
            raise AssertionError(f"healthscale run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        yield process
    finally:
        stop_process(process, log)


def active_surge_schedule(namespace: str, name: str, surge: str, floor: int) -> dict[str, Any]:
    """A SurgeSchedule selecting the emergency journey group, with ``surge`` in effect from an hour
    ago for three more hours at ``floor`` replicas."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"timezone": "UTC", "selector": {"matchLabels": {"healthscale.io/journey-group": "emergency"}},
                 "surges": [{"name": surge,
                             "start": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600)),
                             "end": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3 * 3600)),
                             "minReplicas": floor}]},
    }


class TextExporter:
    """A Prometheus scrape target on loopback: every GET answers ``render()`` (the text format)."""

    def __init__(self, render: Callable[[], str]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HistogramExporter(TextExporter):
    """A classic Prometheus histogram ``healthscale_it_request_seconds{run=<run>}`` on loopback whose
    counts grow at fixed rates, whenever Prometheus scrapes it: ``buckets`` maps each ``le`` (ending
    with "+Inf") to requests a second at or under it; the sum grows by ``sum_per_second``."""

    def __init__(self, run: str, buckets: Sequence[tuple[str, float]], sum_per_second: float) -> None:
        started = time.monotonic()
        total = dict(buckets)["+Inf"]

        def render() -> str:
            elapsed = 1000.0 + time.monotonic() - started
            lines = ["# TYPE healthscale_it_request_seconds histogram"]
            lines += [f'healthscale_it_request_seconds_bucket{{run="{run}",le="{le}"}} {rate * elapsed:.3f}'
                      for le, rate in buckets]
            lines += [f'healthscale_it_request_seconds_count{{run="{run}"}} {total * elapsed:.3f}',
                      f'healthscale_it_request_seconds_sum{{run="{run}"}} {sum_per_second * elapsed:.3f}']
            return "\n".join(lines) + "\n"

        super().__init__(render)
