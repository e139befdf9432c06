"""The operator over several cycles: ahead of surges, ahead of a daily peak, through an outage and a restart.

These tests run their own `healthscale run` processes (one per test) because they stop Prometheus
or the operator itself. "Stopping Prometheus" closes a loopback TCP relay that the operator uses
to reach the shared Prometheus, so other tests keep theirs. Cycles are one minute (forecast.step).
"""

from __future__ import annotations

import calendar
import contextlib
import json
import math
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import running_operator as shared_running_operator
from clusterlib import (ED_DEMAND, GROUP, VERSION, DevCluster, deployment, release_and_delete, replicas,
                        status_of, wait_until)

pytestmark = pytest.mark.integration


class Relay:
    """A loopback TCP relay to Prometheus that the test can cut, like Prometheus going away."""

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlparse(target)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = True
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self.open = False
        # On Linux, close() alone leaves a listener blocked in accept() accepting; shutdown wakes it.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.close()


@contextlib.contextmanager
def running_operator(cluster: DevCluster, prometheus_url: str, namespace: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The operator on ``prometheus_url`` (this module's proxy), its restarts appending to ``log``."""
    with shared_running_operator(cluster, log, namespace, prometheus_url=prometheus_url, append=True) as process:
        yield process


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-time-{uuid.uuid4().hex[:6]}"
    core = k8s_client.CoreV1Api(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name, grace=10)  # these tests stop their operator before cleaning up


def create_slo(api: k8s_client.ApiClient, namespace: str, demand: str = ED_DEMAND,
               scale_down: dict[str, Any] | None = None, **capacity: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "journey", "namespace": namespace, "labels": {"group": "ed"}},
        "spec": {
            "journey": "ED triage screens", "criticality": "high", "mode": "Active",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "indicators": {"demand": demand},
            "capacity": {"perReplica": 5, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60, **capacity},
            "forecast": {"history": "14d", "step": "1m", "horizon": "1h"},
            "scaleDown": scale_down or {"stabilizationSeconds": 300, "maxStepPercent": 25},
        },
    }
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", body)


def create_schedule(api: k8s_client.ApiClient, namespace: str, start: float, end: float, floor: int,
                    lead_minutes: int = 0) -> None:
    surge: dict[str, Any] = {"name": "trauma-drill", "minReplicas": floor,
                             "start": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(start)),
                             "end": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(end))}
    if lead_minutes:
        surge["leadTime"] = f"{lead_minutes}m"
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
        "metadata": {"name": "drill", "namespace": namespace},
        "spec": {"timezone": "UTC", "selector": {"matchLabels": {"group": "ed"}}, "surges": [surge]},
    })


def status(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    return status_of(api, namespace, "journey")


def conditions(current: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {item["type"]: (item["status"], item["reason"]) for item in current.get("conditions", [])}


def next_whole_minute(after: float) -> float:
    return math.ceil(after / 60.0) * 60.0


def test_a_surge_floor_is_in_place_before_the_window_by_its_lead_time(
        devcluster: DevCluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create_slo(api, namespace, perReplica=50)  # demand alone needs one replica
    # Window in 6+ minutes with 2 minutes of lead time; the lookahead is startup (60 s) + one cycle (60 s).
    window_start = next_whole_minute(time.time() + 6 * 60)
    create_schedule(api, namespace, window_start, window_start + 3600, floor=8, lead_minutes=2)
    must_be_ready_at = window_start - 2 * 60
    asked_from = must_be_ready_at - 120
    with running_operator(devcluster, devcluster.prometheus_url, namespace, tmp_path / "operator.log"):
        wait_until("a first plan", lambda: status(api, namespace).get("desiredReplicas"))
        while time.time() < asked_from - 15:
            assert replicas(api, namespace) < 8, "scaled up before the lead time and lookahead asked for it"
            time.sleep(2)
        wait_until("the surge floor", lambda: replicas(api, namespace) == 8, timeout=must_be_ready_at + 20 - time.time())
        reached = time.time()
        current = status(api, namespace)
    assert reached <= must_be_ready_at + 20, f"floor reached {reached - must_be_ready_at:.0f}s after the lead time began"
    assert current["reason"] == "schedule" and current["surge"] == "trauma-drill"
    assert current["nextSurge"].startswith("trauma-drill ")


def test_with_prometheus_gone_mid_test_nothing_scales_down(
        devcluster: DevCluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    deployment(api, namespace, "ehr-api", 30)
    # Nothing holds the replicas up but the 'no forecast' rule: no stabilisation, 10% steps.
    create_slo(api, namespace, scale_down={"stabilizationSeconds": 0, "maxStepPercent": 10})
    relay = Relay(devcluster.prometheus_url)
    with running_operator(devcluster, relay.url, namespace, tmp_path / "operator.log"):
        wait_until("the first step down", lambda: replicas(api, namespace) == 27)
        relay.cut()
        first_after_cut = wait_until("a cycle without Prometheus", lambda: (
            lambda current: current if conditions(current).get("MetricsAvailable", ("", ""))[0] == "False" else None
        )(status(api, namespace)))
        held_until = time.time() + 75  # past the next cycle too
        while time.time() < held_until:
            assert replicas(api, namespace) == 27
            time.sleep(3)
        current = status(api, namespace)
    assert conditions(first_after_cut)["MetricsAvailable"] == ("False", "PrometheusUnavailable")
    assert conditions(current)["Forecasting"][0] == "False"
    assert current["desiredReplicas"] == 27
    assert "scale-down held: no forecast" in current["explanation"]


def test_an_operator_restarted_mid_surge_causes_no_dip(
        devcluster: DevCluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    deployment(api, namespace, "ehr-api", 1)
    create_slo(api, namespace, perReplica=50)
    create_schedule(api, namespace, time.time() - 600, time.time() + 3600, floor=12)
    log = tmp_path / "operator.log"
    with running_operator(devcluster, devcluster.prometheus_url, namespace, log):
        wait_until("the surge floor", lambda: replicas(api, namespace) == 12)
        # A cycle writes the scale before its status: wait for the status of the cycle that scaled.
        before = wait_until("the cycle's status", lambda: status(api, namespace).get("lastCycleTime"))
    seen: list[int] = []
    with running_operator(devcluster, devcluster.prometheus_url, namespace, log):
        deadline = time.time() + 150
        while time.time() < deadline:
            seen.append(replicas(api, namespace))
            if status(api, namespace).get("lastCycleTime", before) != before and len(seen) > 5:
                break
            time.sleep(1)
        else:
            pytest.fail(f"the restarted operator did not cycle:\n{log.read_text()[-3000:]}")
        time.sleep(5)
        seen.append(replicas(api, namespace))
    assert min(seen) == 12, f"replicas dipped during the restart: {seen}"
    assert status(api, namespace)["reason"] == "schedule"


def _call_centre_opening(cluster: DevCluster) -> float:
    """A recent weekday 35 minutes after the call centre opened (its first sample after a night's gap)."""
    now = time.time()
    query = urllib.parse.urlencode({
        "query": 'sum(healthscale_demo_requests_per_second{journey="call-centre"})',
        "start": str(now - 7 * 86400), "end": str(now), "step": "300"})
    with urllib.request.urlopen(f"{cluster.prometheus_url}/api/v1/query_range?{query}", timeout=30) as response:
        result = json.load(response)["data"]["result"]
    times = [float(point[0]) for point in result[0]["values"]]
    openings = [later for earlier, later in zip(times, times[1:]) if later - earlier > 6 * 3600]
    assert openings, "the backfilled call-centre series has no overnight gap in the last week"
    return openings[-1] + 35 * 60


def test_a_forecast_scales_up_before_the_daily_peak_arrives(
        devcluster: DevCluster, api: k8s_client.ApiClient, namespace: str, tmp_path: Path) -> None:
    # Shift the backfilled call-centre series so that "now" is 35 minutes after a weekday opening,
    # when calls climb towards the late-morning peak: only a forecast can see that coming.
    offset = int(time.time() - _call_centre_opening(devcluster))
    demand = f'sum(healthscale_demo_requests_per_second{{journey="call-centre"}} offset {offset}s)'
    deployment(api, namespace, "ehr-api", 1)
    create_slo(api, namespace, demand=demand, perReplica=1, maxReplicas=200, startupSeconds=1800)
    with running_operator(devcluster, devcluster.prometheus_url, namespace, tmp_path / "operator.log"):
        current = wait_until("a plan", lambda: (lambda found: found if found.get("desiredReplicas") else None)(
            status(api, namespace)))
        wait_until("the Deployment at the plan", lambda: replicas(api, namespace) == current["desiredReplicas"])
    assert current["reason"] == "forecast", current["explanation"]
    assert current["forecastPeak"] > 1.2 * current["currentDemand"], current["explanation"]
    assert current["desiredReplicas"] > math.ceil(current["currentDemand"] * 1.1)
    peak_time = calendar.timegm(time.strptime(current["forecastPeakTime"], "%Y-%m-%dT%H:%M:%SZ"))
    assert peak_time > time.time(), "the peak planned for is still ahead"
