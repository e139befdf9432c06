"""Admission latency under load: pods created at a steady rate in an enforced namespace while the
operator plans ClinicalSLOs, on the local stack.

Starts one `healthscale run` with the residency webhook (its own configuration, Secret and
namespaces, `bench-admission-<id>*`) and N ClinicalSLOs in Preview with a 1-minute step on the
backfilled ED-arrivals demand, waits for their first plans, then creates pods at --rate per
minute for --minutes (open loop: a creation is started on schedule whatever the previous ones
took), half of them without a region constraint (denied) and half required into an allowed region
(admitted). Reports:

- the webhook's own server-side latency, p50/p95/p99 interpolated from its histogram
  healthscale_admission_duration_seconds (from the request's headers to its answer);
- the pod create calls as the client saw them (API server, admission chain and webhook call
  included), exact p50/p95/p99, admitted and denied separately;
- how many planning cycles ran meanwhile (healthscale_cycle_seconds_count).

    python bench/admission_latency.py --rate 300 --minutes 3 --slos 50
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

import operator_scale  # bench/ is on sys.path: the local stack's env file and a free port, as there

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATE = ROOT / ".devcluster"
DEMAND = 'sum(healthscale_demo_requests_per_second{journey="ed-arrivals"})'
REGION = "topology.kubernetes.io/region"
IN_EU = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": REGION, "operator": "In", "values": ["eu-west-1", "eu-central-1"]}]}]}}}


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _buckets(text: str, name: str) -> list[tuple[float, float]]:
    found = re.findall(rf'^{re.escape(name)}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.MULTILINE)
    return sorted((float(bound), float(count)) for bound, count in found)


def _histogram_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile over the observations between two scrapes."""
    counts = [(bound, count - dict(before).get(bound, 0.0)) for bound, count in after]
    total = counts[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = bound, cumulative
    return lower


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def _slo(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"journey": "bench", "mode": "Preview",
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "indicators": {"demand": DEMAND},
                 "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60},
                 "forecast": {"history": "14d", "step": "1m", "horizon": "1h"}},
    }


def _pod(name: str, admitted: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    if admitted:
        spec["affinity"] = IN_EU
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300, help="pod creations per minute")
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--slos", type=int, default=50, help="ClinicalSLOs planned meanwhile (1-minute step)")
    parser.add_argument("--keep", action="store_true", help="leave the namespaces and the operator's log")
    arguments = parser.parse_args()
    env = operator_scale._env()
    api = k8s_config.new_client_from_config(config_file=env["KUBECONFIG"])
    core, apps, custom = k8s_client.CoreV1Api(api), k8s_client.AppsV1Api(api), k8s_client.CustomObjectsApi(api)
    admission = k8s_client.AdmissionregistrationV1Api(api)
    run = uuid.uuid4().hex[:4]
    prefix = f"bench-admission-{run}"
    system, planned, enforced = f"{prefix}-system", f"{prefix}-slos", f"{prefix}-pods"
    configuration = prefix
    subprocess.run([str(STATE / "bin" / "kubectl"), f"--kubeconfig={env['KUBECONFIG']}", "apply", "--server-side",
                    "-f", str(ROOT / "crds")], check=True, capture_output=True)
    core.create_namespace({"metadata": {"name": system}})
    core.create_namespace({"metadata": {"name": planned}})
    core.create_namespace({"metadata": {"name": enforced, "labels": {"healthscale.io/residency": "enforced"},
                                        "annotations": {"healthscale.io/allowed-regions": "eu-west-1,eu-central-1"}}})
    for index in range(arguments.slos):
        name = f"journey-{index:03d}"
        apps.create_namespaced_deployment(planned, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}})
        custom.create_namespaced_custom_object("healthscale.io", "v1alpha1", planned, "clinicalslos",
                                               _slo(planned, name))
    metrics_port, webhook_port = operator_scale._free_port(), operator_scale._free_port()
    log = pathlib.Path(f"/tmp/{prefix}-operator.log")
    command = [sys.executable, "-m", "healthscale", "run", "--prometheus-url", env["PROMETHEUS_URL"],
               "--namespace", f"{prefix}*", "--health-port", "0", "--metrics-port", str(metrics_port),
               "--webhook-port", str(webhook_port), "--webhook-configuration", configuration,
               "--webhook-cert-secret", f"{system}/{prefix}-cert"]
    with log.open("w") as output:
        operator = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                    env={**env, "KUBECONFIG": env["KUBECONFIG"]})
    try:
        deadline = time.monotonic() + 600
        while True:
            items = custom.list_namespaced_custom_object("healthscale.io", "v1alpha1", planned, "clinicalslos")["items"]
            plans = sum(1 for item in items if (item.get("status") or {}).get("desiredReplicas") is not None)
            try:
                hook = admission.read_validating_webhook_configuration(configuration).webhooks[0]
                serving = bool(hook.client_config.ca_bundle)
            except k8s_client.ApiException:
                serving = False
            if plans == arguments.slos and serving:
                break
            if time.monotonic() > deadline or operator.poll() is not None:
                raise SystemExit(f"no plans for every ClinicalSLO ({plans}/{arguments.slos}) or no webhook; "
                                 f"see {log}")
            time.sleep(2)
        print(f"{arguments.slos} ClinicalSLOs planned; webhook serving; loading {arguments.rate:g} pods/min "
              f"for {arguments.minutes:g} min", file=sys.stderr)
        before = _metrics(metrics_port)
        total = int(arguments.rate * arguments.minutes)
        interval = 60.0 / arguments.rate
        latencies: dict[bool, list[float]] = {True: [], False: []}
        unexpected: list[str] = []
        lock = threading.Lock()
        # Each thread its own client: the kubernetes client's connection pool is shared otherwise.
        local = threading.local()

        def create(index: int) -> None:
            if not hasattr(local, "core"):
                local.core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=env["KUBECONFIG"]))
            admitted = index % 2 == 0
            started = time.perf_counter()
            try:
                local.core.create_namespaced_pod(enforced, _pod(f"load-{index:05d}", admitted))
                outcome = True
            except k8s_client.ApiException as error:
                outcome = False
                if error.status != 403:
                    with lock:
                        unexpected.append(f"{error.status} {error.reason}")
            elapsed = time.perf_counter() - started
            with lock:
                latencies[admitted].append(elapsed)
                if outcome is not admitted:
                    unexpected.append(f"pod {index}: {'admitted' if outcome else 'denied'}")

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = []
            for index in range(total):
                wait = started + index * interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                futures.append(pool.submit(create, index))
            for future in futures:
                future.result()
        elapsed = time.monotonic() - started
        after = _metrics(metrics_port)
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
        try:
            admission.delete_validating_webhook_configuration(configuration)
        except k8s_client.ApiException:
            pass
        if not arguments.keep:
            for namespace in (planned, enforced, system):
                for item in custom.list_namespaced_custom_object("healthscale.io", "v1alpha1", namespace,
                                                                 "clinicalslos")["items"]:
                    custom.patch_namespaced_custom_object("healthscale.io", "v1alpha1", namespace, "clinicalslos",
                                                          item["metadata"]["name"], {"metadata": {"finalizers": None}})
                core.delete_namespace(namespace)

    name = "healthscale_admission_duration_seconds"
    server = [_histogram_quantile(_buckets(before, name), _buckets(after, name), q) for q in (0.50, 0.95, 0.99)]
    answered = _sample(after, f"{name}_count") - _sample(before, f"{name}_count")
    cycles = _sample(after, "healthscale_cycle_seconds_count") - _sample(before, "healthscale_cycle_seconds_count")
    both = latencies[True] + latencies[False]
    print()
    print(f"admission latency, {total} pod creations in {elapsed:.0f} s ({total / elapsed * 60:.0f}/min, half "
          f"denied) while {arguments.slos} ClinicalSLOs were planned ({cycles:.0f} cycles meanwhile), "
          f"{os.cpu_count()} cores:")
    print()
    print("| measured | requests | p50 | p95 | p99 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| webhook, server side (histogram, interpolated) | {answered:.0f} | "
          + " | ".join(f"{value * 1000:.1f} ms" for value in server) + " |")
    for label, values in (("pod create call, all", both), ("pod create call, admitted", latencies[True]),
                          ("pod create call, denied", latencies[False])):
        print(f"| {label} | {len(values)} | " + " | ".join(f"{value * 1000:.1f} ms" for value in _percentiles(values))
              + " |")
    print()
    print(f"command: python bench/admission_latency.py --rate {arguments.rate:g} --minutes {arguments.minutes:g} "
          f"--slos {arguments.slos}")
    if unexpected:
        print(f"UNEXPECTED outcomes ({len(unexpected)}): {unexpected[:10]}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
