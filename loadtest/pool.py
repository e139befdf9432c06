"""A pool of replica processes (``loadtest.service``) behind one balancer, and the
``healthscale.ports.Workloads`` adapter the real reconcile scales it through.

``scale(n)`` starts or stops processes: a started one boots for ``startup_seconds`` before it
listens, and joins the balancer once it answers ``/ready``; a stopped one leaves the balancer first,
then gets SIGTERM (aiohttp finishes its in-flight requests). Each replica slot has a fixed port, so
Prometheus scrapes a fixed target list and a restarted replica continues its series (``rate``
handles the counter reset).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from healthscale import ports

NAMESPACE = "loadtest"


@dataclasses.dataclass(frozen=True)
class Config:
    slots: int
    mean_seconds: float
    startup_seconds: float
    seed: int


def _get(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _listening(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class Pool:
    """Replica processes on ``replica_ports`` (at most that many), behind the balancer on ``balancer_port``."""

    def __init__(self, name: str, replica_ports: list[int], balancer_port: int, config: Config,
                 logs: pathlib.Path) -> None:
        self.name, self.replica_ports, self.config, self.logs = name, replica_ports, config, logs
        self.balancer_url = f"http://127.0.0.1:{balancer_port}"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.ready: set[int] = set()
        self.started = 0
        self.timeline: list[tuple[float, int, int]] = []
        """(epoch, desired, ready) at every change."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.balancer = self._spawn([sys.executable, "-m", "loadtest.balancer", f"--port={balancer_port}",
                                     f"--seed={config.seed}"], logs / f"{name}-balancer.log")
        deadline = time.monotonic() + 30
        while not _listening(self.balancer_url):
            if self.balancer.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} balancer did not start: {(logs / f'{name}-balancer.log').read_text()}")
            time.sleep(0.1)
        self._watcher = threading.Thread(target=self._watch, name=f"pool-{name}", daemon=True)
        self._watcher.start()

    @staticmethod
    def _spawn(command: list[str], log: pathlib.Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=pathlib.Path(__file__).resolve().parents[1])

    @property
    def desired(self) -> int:
        return len(self.processes)

    def scale(self, replicas: int) -> None:
        replicas = max(0, min(replicas, len(self.replica_ports)))
        stopping: list[subprocess.Popen[bytes]] = []
        with self._lock:
            while len(self.processes) < replicas:
                port = next(port for port in self.replica_ports if port not in self.processes)
                self.started += 1
                self.processes[port] = self._spawn(
                    [sys.executable, "-m", "loadtest.service", f"--port={port}", f"--slots={self.config.slots}",
                     f"--mean-seconds={self.config.mean_seconds}", f"--startup-seconds={self.config.startup_seconds}",
                     f"--seed={self.config.seed * 1000 + self.started}"], self.logs / f"{self.name}-{port}.log")
            while len(self.processes) > replicas:
                port = max(self.processes)  # the newest slots go first
                self.ready.discard(port)
                stopping.append(self.processes.pop(port))
            self._publish()
        for process in stopping:
            process.terminate()

    def _publish(self) -> None:
        """Tell the balancer the Ready backends (under the lock) and record the change."""
        request = urllib.request.Request(f"{self.balancer_url}/backends", data=json.dumps(sorted(self.ready)).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass
        self.timeline.append((time.time(), len(self.processes), len(self.ready)))

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                booting = [port for port in self.processes if port not in self.ready]
            for port in booting:
                if _get(f"http://127.0.0.1:{port}/ready", timeout=0.5):
                    with self._lock:
                        if port in self.processes:
                            self.ready.add(port)
                            self._publish()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ready) < len(self.processes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pool {self.name}: {len(self.ready)} of {len(self.processes)} ready after {timeout}s")
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            everything = [*self.processes.values(), self.balancer]
            self.processes.clear()
        for process in everything:
            process.terminate()
        for process in everything:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Workloads:
    """``healthscale.ports.Workloads`` over one pool, seen as a Deployment named after it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.uid = f"uid-{pool.name}"

    def _check(self, kind: str, name: str) -> None:
        if kind != "Deployment" or name != self.pool.name:
            raise ports.NotFound(f"{kind} {name} not found (the load test has Deployment {self.pool.name})")

    def read(self, namespace: str, kind: str, name: str) -> ports.Target:
        self._check(kind, name)
        return ports.Target(kind, name, self.uid, self.pool.desired, len(self.pool.ready), None, None)

    def read_field(self, namespace: str, kind: str, name: str, field: ports.Field) -> ports.Written:
        self._check(kind, name)
        if field != "replicas":
            raise ports.NotFound(f"the load test has no HPA ({field})")
        return ports.Written(kind, name, self.uid, self.pool.desired)

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
        self._check(kind, name)
        if uid != self.uid or field != "replicas":
            raise ports.NotFound(f"{kind} {name} with uid {uid} ({field}) not found")
        self.pool.scale(value)

    def pods(self, namespace: str, selector: str) -> list[str]:
        return [f"{self.pool.name}-{port}" for port in sorted(self.pool.processes)]

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None:
        """The pool removes its newest replicas first; costs are not used."""


class Records:
    """``healthscale.ports.Records`` in memory."""

    def __init__(self) -> None:
        self.originals: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def save_originals(self, namespace: str, name: str, originals: list[dict[str, Any]]) -> None:
        self.originals[(namespace, name)] = originals
