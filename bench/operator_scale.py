"""Scale benchmark: 1,000 ClinicalSLOs on the local API server, one operator process.

Creates N Deployments (0 replicas, so no pods) and N ClinicalSLOs in Preview mode with a 1-minute
step, each with its own demand query on the backfilled ED-arrivals series, then measures:

- the time from operator start until every ClinicalSLO has a plan in status;
- the steady state: the share of ClinicalSLOs re-planned within each minute, how late cycles ran
  against their due time (the operator's healthscale_cycle_delay_seconds histogram), and the
  cycle time per ClinicalSLO (its healthscale_cycle_seconds histogram);
- the operator's peak resident memory (VmHWM from /proc).

Needs the local stack (`make cluster`). Cleans up its namespace afterwards.

    python bench/operator_scale.py --count 1000 --steady-minutes 3
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATE = ROOT / ".devcluster"
NAMESPACE = "bench-scale"


def _env() -> dict[str, str]:
    values = dict(os.environ)
    for line in (STATE / "env").read_text().splitlines():
        if line.startswith("export ") and "=" in line and "$" not in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip()
    return values


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss_mib(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: the peak resident memory; VmRSS: now."""
    match = re.search(rf"{field}:\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def _indicators(index: int, burn: bool) -> dict[str, str]:
    demand = f'sum(healthscale_demo_requests_per_second{{journey="ed-arrivals"}}) * {1 + index / 1000:g}'
    if not burn:
        return {"demand": demand}
    # Error and total rates over the same real series (0.05% to 0.5% errors), so Prometheus
    # evaluates real subqueries: 16 per ClinicalSLO on its first cycle, then the reused long windows.
    return {"demand": demand, "total": demand, "errors": f"{demand} * {0.0005 * (1 + index % 10):g}"}


def _populate(api: k8s_client.ApiClient, count: int, burn: bool = False) -> None:
    core, apps, custom = k8s_client.CoreV1Api(api), k8s_client.AppsV1Api(api), k8s_client.CustomObjectsApi(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=NAMESPACE)))
    for index in range(count):
        name = f"journey-{index:04d}"
        labels = {"app": name}
        apps.create_namespaced_deployment(NAMESPACE, k8s_client.V1Deployment(
            metadata=k8s_client.V1ObjectMeta(name=name),
            spec=k8s_client.V1DeploymentSpec(
                replicas=0, selector=k8s_client.V1LabelSelector(match_labels=labels),
                template=k8s_client.V1PodTemplateSpec(
                    metadata=k8s_client.V1ObjectMeta(labels=labels),
                    spec=k8s_client.V1PodSpec(containers=[k8s_client.V1Container(name="app", image="pause")])),
            ),
        ))
        custom.create_namespaced_custom_object("healthscale.io", "v1alpha1", NAMESPACE, "clinicalslos", {
            "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "journey": f"benchmark journey {index}", "mode": "Preview",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                # A distinct query per object, as real journeys have.
                "indicators": _indicators(index, burn),
                "capacity": {"perReplica": 1 + index % 7, "minReplicas": 1, "maxReplicas": 50, "startupSeconds": 60},
                "forecast": {"history": "14d", "step": "1m", "horizon": "1h"},
            },
        })


def _statuses(api: k8s_client.ApiClient) -> list[dict[str, Any]]:
    listed = k8s_client.CustomObjectsApi(api).list_namespaced_custom_object(
        "healthscale.io", "v1alpha1", NAMESPACE, "clinicalslos")
    return [item.get("status") or {} for item in listed["items"]]


def _metrics(port: int) -> dict[str, float]:
    """The operator's cycle-time and cycle-delay histograms (cumulative since it started)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = {}
    for name in ("healthscale_cycle_seconds_sum", "healthscale_cycle_seconds_count",
                 "healthscale_cycle_delay_seconds_count", 'healthscale_cycle_delay_seconds_bucket{le="1.0"}',
                 'healthscale_cycle_delay_seconds_bucket{le="5.0"}'):
        match = re.search(rf"^{re.escape(name)} (\S+)", text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    return found


def _release(api: k8s_client.ApiClient) -> None:
    """Drop the ClinicalSLOs' finalizers once no operator runs, so the namespace can go."""
    custom = k8s_client.CustomObjectsApi(api)
    try:
        listed = custom.list_namespaced_custom_object("healthscale.io", "v1alpha1", NAMESPACE, "clinicalslos")
    except k8s_client.ApiException:
        return
    for item in listed["items"]:
        if item["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object("healthscale.io", "v1alpha1", NAMESPACE, "clinicalslos",
                                                  item["metadata"]["name"], {"metadata": {"finalizers": None}})


def run(count: int, steady_minutes: float, burn: bool = False) -> dict[str, float]:
    environment = _env()
    api = k8s_config.new_client_from_config(config_file=environment["KUBECONFIG"])
    _release(api)
    subprocess.run([str(STATE / "bin" / "kubectl"), "delete", "namespace", NAMESPACE, "--ignore-not-found",
                    "--wait=true", "--timeout=300s"], env=environment, check=True, capture_output=True)
    subprocess.run([str(STATE / "bin" / "kubectl"), "apply", "--server-side", "-f", str(ROOT / "crds")],
                   env=environment, check=True, capture_output=True)
    started = time.perf_counter()
    _populate(api, count, burn)
    print(f"created {count} Deployments and ClinicalSLOs in {time.perf_counter() - started:.0f}s", flush=True)
    port = _free_port()
    log = STATE / "logs" / "bench-operator.log"
    with log.open("w") as output:
        operator = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", environment["PROMETHEUS_URL"],
             "--namespace", NAMESPACE, "--metrics-port", str(port), "--health-port", "0"],
            env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        launched = time.perf_counter()
        while True:
            planned = sum(1 for status in _statuses(api) if status.get("desiredReplicas") is not None)
            if planned == count:
                break
            if operator.poll() is not None:
                raise SystemExit(f"operator exited ({operator.returncode}); see {log}")
            time.sleep(2)
        all_planned = time.perf_counter() - launched
        print(f"all {count} planned {all_planned:.0f}s after the operator started", flush=True)
        before = _metrics(port)
        shares = []
        for _ in range(int(steady_minutes)):
            window_start = time.time()
            time.sleep(60)
            fresh = sum(
                1 for status in _statuses(api)
                if status.get("lastCycleTime") and calendar.timegm(time.strptime(
                    status["lastCycleTime"], "%Y-%m-%dT%H:%M:%SZ")) >= window_start - 1)
            shares.append(fresh / count)
            print(f"re-planned in the last minute: {fresh}/{count}", flush=True)
        after = _metrics(port)
        delta = {name: after[name] - before[name] for name in after}
        cycles = delta["healthscale_cycle_seconds_count"]
        delayed = max(1.0, delta["healthscale_cycle_delay_seconds_count"])
        return {
            "slos": count,
            "seconds_until_all_planned": all_planned,
            "min_share_replanned_per_minute": min(shares) if shares else float("nan"),
            # Of the steady cycles, the share that ran within 1 s (5 s) of their due time, last
            # cycle + step (the operator's healthscale_cycle_delay_seconds histogram).
            "share_on_time_1s": delta['healthscale_cycle_delay_seconds_bucket{le="1.0"}'] / delayed,
            "share_on_time_5s": delta['healthscale_cycle_delay_seconds_bucket{le="5.0"}'] / delayed,
            "mean_cycle_seconds": delta["healthscale_cycle_seconds_sum"] / max(1.0, cycles),
            "cycles_per_minute": cycles / max(1e-9, steady_minutes),
            "peak_rss_mib": _rss_mib(operator.pid),
            "steady_rss_mib": _rss_mib(operator.pid, "VmRSS"),
        }
    finally:
        operator.terminate()
        operator.wait(timeout=60)
        _release(api)
        subprocess.run([str(STATE / "bin" / "kubectl"), "delete", "namespace", NAMESPACE, "--wait=false"],
                       env=environment, check=False, capture_output=True)
        api.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--steady-minutes", type=float, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--burn-indicators", action="store_true",
                        help="give every ClinicalSLO errors and total indicators, so each cycle also reads burn rates")
    arguments = parser.parse_args()
    if not (STATE / "env").exists():
        print("error: the local stack is not up; run `make cluster` first", file=sys.stderr)
        return 2
    figures = run(arguments.count, arguments.steady_minutes, arguments.burn_indicators)
    for key, value in figures.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
