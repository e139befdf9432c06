#!/usr/bin/env python3
"""`make demo`: healthscale scaling ahead of a surge on the local control plane, as it happens.

1. starts the local stack (tools/devcluster/up.sh: control plane, KWOK nodes, Prometheus with two
   weeks of real ED-arrivals and call-centre demand backfilled so that they end now);
2. installs the CRDs and, in namespace `demo`, an EHR API (ED-arrivals demand) and a telehealth
   media service (call-centre demand, shifted to a weekday morning) with a ClinicalSLO each, and a
   SurgeSchedule whose window opens a few minutes from now;
3. runs the operator and prints `kubectl get clinicalslos,deployments` every 20 seconds;
4. ends with out/demo-timeline.png: demand, forecast and replicas, the surge window shaded.

    python tools/demo.py [--minutes 9]

The cluster stays up afterwards (`make cluster-down` stops it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATE = ROOT / ".devcluster"
NAMESPACE = "demo"
SURGE_IN_MINUTES = 5
LEAD_MINUTES = 2
PER_REPLICA = {"ehr-api": 1.0, "telehealth-media": 5.0}


def env() -> dict[str, str]:
    values = dict(os.environ)
    for line in (STATE / "env").read_text().splitlines():
        if line.startswith("export ") and "=" in line and "$" not in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip()
    values["PATH"] = f"{STATE / 'bin'}:{values.get('PATH', '')}"
    return values


def kubectl(environment: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], env=environment, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def telehealth_offset(environment: dict[str, str]) -> int:
    """Seconds to shift the call-centre series so that now is a weekday late morning, when it is busy.

    The backfill keeps weekday and time of day, and the call centre is closed at night and at
    weekends; an `offset` in the query shows a working morning whatever the hour of the demo.
    """
    now = time.time()
    query = urllib.parse.urlencode({"query": 'sum(healthscale_demo_requests_per_second{journey="call-centre"})',
                                    "start": str(now - 7 * 86400), "end": str(now), "step": "300"})
    with urllib.request.urlopen(f"{environment['PROMETHEUS_URL']}/api/v1/query_range?{query}", timeout=30) as reply:
        result = json.load(reply)["data"]["result"]
    times = [float(point[0]) for point in result[0]["values"]] if result else []
    openings = [later for earlier, later in zip(times, times[1:]) if later - earlier > 6 * 3600]
    if not openings:
        return 0
    return int(now - (openings[-1] + 2.5 * 3600))


def demand_queries(offset: int) -> dict[str, str]:
    return {
        "ehr-api": 'sum(healthscale_demo_requests_per_second{journey="ed-arrivals"})',
        "telehealth-media": f'sum(healthscale_demo_requests_per_second{{journey="call-centre"}} offset {offset}s)',
    }


def manifests(surge_start: dt.datetime, queries: dict[str, str]) -> list[dict[str, Any]]:
    def deployment(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                                           "resources": {"requests": {"cpu": "100m"}}}]}}},
        }

    def slo(name: str, journey: str, criticality: str, demand: str, per_replica: float) -> dict[str, Any]:
        return {
            "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"healthscale.io/journey-group": "emergency"}},
            "spec": {
                "journey": journey, "criticality": criticality, "mode": "Active",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "indicators": {"demand": demand},
                "capacity": {"perReplica": per_replica, "minReplicas": 2, "maxReplicas": 40, "startupSeconds": 60},
                "forecast": {"history": "14d", "step": "1m", "horizon": "1h"},
                "scaleDown": {"stabilizationSeconds": 300, "maxStepPercent": 25},
            },
        }

    local = surge_start.strftime("%Y-%m-%dT%H:%M")
    end = (surge_start + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        deployment("ehr-api"), deployment("telehealth-media"),
        slo("ehr-api", "Open patient chart from ED triage", "critical", queries["ehr-api"], PER_REPLICA["ehr-api"]),
        slo("telehealth-media", "Join a telehealth video visit", "high", queries["telehealth-media"], PER_REPLICA["telehealth-media"]),
        {
            "apiVersion": "healthscale.io/v1alpha1", "kind": "SurgeSchedule",
            "metadata": {"name": "ed-surges", "namespace": NAMESPACE},
            "spec": {"timezone": "UTC", "selector": {"matchLabels": {"healthscale.io/journey-group": "emergency"}},
                     "surges": [{"name": "mass-casualty-drill", "start": local, "end": end,
                                 "leadTime": f"{LEAD_MINUTES}m", "multiplier": 1.5, "minReplicas": 12}]},
        },
    ]


def demand_history(environment: dict[str, str], queries: dict[str, str], hours: float) -> dict[str, Any]:
    """Each journey's demand over the last ``hours`` and the engine's forecast for the next hour."""
    from healthscale.adapters import prometheus
    from healthscale.domain import history as domain_history
    from healthscale.domain.forecast import base, choice
    from healthscale.service import history as service_history

    client = prometheus.Client(environment["PROMETHEUS_URL"])
    now = int(time.time())
    found: dict[str, Any] = {}
    for name, query in queries.items():
        history = service_history.read(client, domain_history.HistoryCache(query, 60), now, 14 * 86400)
        settings = base.Settings(history=14 * 86400, step=60, horizon=3600, extra_level=0.9)
        outcome, _ = choice.forecast(history, now, settings)
        recent = history.since(now - int(hours * 3600))
        found[name] = {
            "demand": [(float(t), float(v)) for t, v in zip(recent.times(), recent.values)],
            "forecast": outcome if isinstance(outcome, base.Forecast) else None,
        }
    return found


def plot(samples: list[dict[str, Any]], history: dict[str, Any], surge: tuple[float, float],
         lead_start: float, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(epoch: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)

    figure, axes = plt.subplots(len(history), 1, figsize=(12, 7.5), sharex=True)
    for axis, (name, found) in zip(axes, history.items()):
        per_replica = PER_REPLICA[name]
        points = [sample for sample in samples if sample["name"] == name]
        demand = found["demand"]
        axis.plot([when(t) for t, _ in demand], [v for _, v in demand], color="black", lw=1, label="demand (Prometheus)")
        forecast = found["forecast"]
        if forecast is not None:
            times = [when(t) for t in forecast.times()]
            axis.plot(times, forecast.point, color="#1f77b4", lw=1, label="forecast (median), next hour")
            axis.fill_between(times, forecast.point, forecast.quantile(0.9), color="#1f77b4", alpha=0.2,
                              label="forecast band to p90")
        for key, color, style, label in (("desiredReplicas", "#2ca02c", "-", "desired replicas x perReplica"),
                                         ("readyReplicas", "#d62728", "--", "ready replicas x perReplica")):
            series = [(sample["time"], sample[key]) for sample in points if sample.get(key) is not None]
            axis.step([when(t) for t, _ in series], [v * per_replica for _, v in series], where="post",
                      color=color, ls=style, lw=1.5, label=label)
        axis.axvspan(when(lead_start), when(surge[0]), color="#ffe08a", alpha=0.35, label="surge lead time")
        axis.axvspan(when(surge[0]), when(surge[1]), color="#f4b183", alpha=0.35, label="surge window")
        axis.set_title(f"{name} ({per_replica:g} requests/s per replica)")
        axis.set_ylabel("requests/s")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=7, ncol=3)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axes[-1].set_xlim(when(samples[0]["time"] - 3600), when(surge[0] + 3600))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def _stop_on_sigterm() -> None:
    # Turn SIGTERM into an exception so that the operator subprocess is stopped too.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    _stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=9.0, help="how long to watch (default 9)")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "out" / "demo-timeline.png")
    arguments = parser.parse_args()

    print("== starting the local stack (tools/devcluster/up.sh)", flush=True)
    subprocess.run(["bash", str(ROOT / "tools" / "devcluster" / "up.sh")], check=True)
    environment = env()
    print("== installing the CRDs", flush=True)
    kubectl(environment, "apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl(environment, "wait", "--for=condition=Established", "crd/clinicalslos.healthscale.io", "--timeout=60s")
    # A previous demo's ClinicalSLOs keep their finalizer (no operator is running to release it).
    for name in kubectl(environment, "get", "clinicalslos,surgeschedules", "-n", NAMESPACE, "-o", "name").split():
        kubectl(environment, "patch", "-n", NAMESPACE, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl(environment, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=180s")
    start = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=SURGE_IN_MINUTES + 1)
    surge = (start.timestamp(), start.timestamp() + 1800)
    lead_start = surge[0] - LEAD_MINUTES * 60
    print(f"== applying the examples: surge 'mass-casualty-drill' opens at {start:%H:%M} UTC "
          f"(lead time {LEAD_MINUTES}m, floor 12, x1.5)", flush=True)
    queries = demand_queries(telehealth_offset(environment))
    kubectl(environment, "apply", "-f", "-", stdin=yaml.safe_dump_all(manifests(start, queries)))

    log = STATE / "logs" / "demo-operator.log"
    print(f"== running the operator (log: {log})", flush=True)
    samples: list[dict[str, Any]] = []
    with log.open("w") as output:
        operator = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", environment["PROMETHEUS_URL"],
             "--namespace", NAMESPACE, "--metrics-port", "0", "--health-port", "0"],
            env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + arguments.minutes * 60
        while time.time() < deadline:
            time.sleep(20)
            if operator.poll() is not None:
                raise SystemExit(f"the operator exited ({operator.returncode}); see {log}")
            print(f"\n-- {dt.datetime.now(dt.timezone.utc):%H:%M:%S} UTC "
                  f"(surge in {max(0, surge[0] - time.time()) / 60:.1f} min)", flush=True)
            print(kubectl(environment, "get", "clinicalslos,deployments", "-n", NAMESPACE), flush=True)
            listed = json.loads(kubectl(environment, "get", "clinicalslos", "-n", NAMESPACE, "-o", "json"))
            deployments = json.loads(kubectl(environment, "get", "deployments", "-n", NAMESPACE, "-o", "json"))
            ready = {item["metadata"]["name"]: item["status"].get("readyReplicas", 0) for item in deployments["items"]}
            for item in listed["items"]:
                status = item.get("status") or {}
                samples.append({"time": time.time(), "name": item["metadata"]["name"],
                                "forecastPeak": status.get("forecastPeak"), "desiredReplicas": status.get("desiredReplicas"),
                                "readyReplicas": ready.get(item["spec"]["targetRef"]["name"])})
                if status.get("explanation"):
                    print(f"   {item['metadata']['name']}: {status['explanation']}")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
    if samples:
        plot(samples, demand_history(environment, queries, 4), surge, lead_start, arguments.output)
        print(f"\n== timeline written to {arguments.output}")
    print("The cluster is still up: `source .devcluster/env` to look around, `make cluster-down` to stop it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
