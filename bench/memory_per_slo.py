"""Memory that one ClinicalSLO's history, fit and forecast take, outside Kopf.

Reads 14 days of the dev cluster's backfilled ED-arrivals demand at 1 minute (20,160 points) for
N distinct queries through the Prometheus adapter, fits and forecasts each, keeps everything as
the operator would, and prints the process's resident memory as N grows. Needs `make cluster`.

    python bench/memory_per_slo.py --count 200
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

from healthscale.adapters import prometheus
from healthscale.domain import history
from healthscale.domain.forecast import base, choice
from healthscale.service import history as service_history

STATE = pathlib.Path(__file__).resolve().parents[1] / ".devcluster"


def _rss_mib() -> float:
    text = pathlib.Path("/proc/self/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200)
    arguments = parser.parse_args()
    url = os.environ.get("PROMETHEUS_URL") or next(
        line.split("=", 1)[1] for line in (STATE / "env").read_text().splitlines() if "PROMETHEUS_URL=" in line)
    client = prometheus.Client(url)
    now = int(time.time())
    settings = base.Settings(history=14 * 86400, step=60, horizon=3720, extra_level=0.9)
    kept = []
    start = _rss_mib()
    print(f"baseline {start:.0f} MiB")
    for index in range(arguments.count):
        cache = history.HistoryCache(
            f'sum(healthscale_demo_requests_per_second{{journey="ed-arrivals"}}) * {1 + index / 1000:g}', 60)
        demand = service_history.read(client, cache, now, 14 * 86400)
        outcome, state = choice.forecast(demand, now, settings, None)
        kept.append((cache, state, outcome))
    end = _rss_mib()
    print(f"{arguments.count} ClinicalSLOs: {end:.0f} MiB, {1024 * (end - start) / arguments.count:.0f} KiB each")


if __name__ == "__main__":
    main()
