"""Locust's side of the load test: one user class per pool, each user a patient-facing client that
sends a request, waits for the answer, then thinks for an exponential time (mean ``THINK_SECONDS``).

With many users each thinking much longer than a request takes, arrivals at a pool are close to a
Poisson stream of (users / think time) a second, and the balancer's random split keeps them Poisson
at each replica (``loadtest.balancer``). ``Replay`` follows the shape file the driver wrote
(``LOADTEST_SHAPE``): users per pool at epoch-relative times, linear in between, with both pools
getting the same users at the same moment.
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import FastHttpUser, LoadTestShape, task

THINK_SECONDS = 1.0
random.seed(int(os.environ.get("LOADTEST_SEED", "0")))


def _think(_: object) -> float:
    return random.expovariate(1.0 / THINK_SECONDS)


class OperatorPool(FastHttpUser):
    host = os.environ.get("LOADTEST_OPERATOR_URL", "http://127.0.0.1:1")
    wait_time = _think

    @task
    def screen(self) -> None:
        self.client.get("/", name="screen")


class ReactivePool(FastHttpUser):
    host = os.environ.get("LOADTEST_REACTIVE_URL", "http://127.0.0.1:1")
    wait_time = _think

    @task
    def screen(self) -> None:
        self.client.get("/", name="screen")


class Replay(LoadTestShape):
    """Users per pool from the driver's shape file: {"start": epoch, "points": [[seconds, users], ...]}."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        with open(os.environ["LOADTEST_SHAPE"]) as shape:
            found = json.load(shape)
        self.start = float(found["start"])
        self.points = [(float(at), float(users)) for at, users in found["points"]]

    def tick(self) -> tuple[int, float] | None:
        now = time.time() - self.start
        if now >= self.points[-1][0]:
            return None
        users = self.points[0][1]
        for (before, low), (after, high) in zip(self.points, self.points[1:]):
            if before <= now < after:
                users = low + (high - low) * (now - before) / (after - before)
                break
        return 2 * max(1, round(users)), 100.0
