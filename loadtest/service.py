"""One replica of the load test's service: a queue whose capacity is known by construction.

``--slots`` worker slots (an asyncio semaphore); a request beyond them waits, first come first
served, for a free slot; its service time is exponential with mean ``--mean-seconds`` (seeded per
replica). So a replica fed Poisson arrivals is exactly an M/M/c queue (``loadtest.knee``). The
latency histogram measures arrival at the replica to response (queueing + service), with a bucket
at the SLO threshold; the process "boots" for ``--startup-seconds`` before it listens (a replica
is Ready once it answers).

Metrics: ``loadtest_request_duration_seconds`` (histogram), ``loadtest_requests_total``,
``loadtest_busy_seconds_total`` (slot-seconds spent serving: its rate over ``--slots`` is the
utilisation an HPA would scale on). Pool and replica labels come from Prometheus' target labels.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import prometheus_client
from aiohttp import web

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
"""Includes 0.25 s, the load test's latency threshold, exactly."""


def app(slots: int, mean_seconds: float, seed: int) -> web.Application:
    registry = prometheus_client.CollectorRegistry()
    latency = prometheus_client.Histogram("loadtest_request_duration_seconds", "Arrival to response, seconds",
                                          buckets=BUCKETS, registry=registry)
    requests = prometheus_client.Counter("loadtest_requests", "Requests served", registry=registry)
    busy = prometheus_client.Counter("loadtest_busy_seconds", "Slot-seconds spent serving", registry=registry)
    semaphore = asyncio.Semaphore(slots)
    draw = random.Random(seed)

    async def serve(_: web.Request) -> web.Response:
        arrived = time.perf_counter()
        async with semaphore:
            service = draw.expovariate(1.0 / mean_seconds)
            await asyncio.sleep(service)
        busy.inc(service)
        requests.inc()
        latency.observe(time.perf_counter() - arrived)
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=prometheus_client.generate_latest(registry),
                            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/", serve)
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/ready", ready)
    return application


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--mean-seconds", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-seconds", type=float, default=0.0)
    options = parser.parse_args()
    time.sleep(options.startup_seconds)  # booting: not listening, so not Ready and not scraped as up
    web.run_app(app(options.slots, options.mean_seconds, options.seed), host="127.0.0.1", port=options.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
