"""Locust's side of the load test: one user class per pool (``LOADTEST_POOLS``), each user a patient-facing client that
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

from locust import FastHttpUser, LoadTestShape

THINK_SECONDS = 1.0
random.seed(int(os.environ.get("LOADTEST_SEED", "0")))


def _think(_: object) -> float:
    return random.expovariate(1.0 / THINK_SECONDS)


def _pool_user(name: str, url: str) -> type[FastHttpUser]:
    """A user class sending its requests to one pool's balancer."""

    def screen(self: FastHttpUser) -> None:
        self.client.get("/", name=f"{name} pool")

    return type(f"{name.title().replace('-', '')}Pool", (FastHttpUser,),
                {"host": url, "wait_time": _think, "tasks": [screen]})


POOLS: dict[str, str] = json.loads(os.environ.get("LOADTEST_POOLS", "{}"))
"""Pool name -> balancer URL, from the driver; each pool gets one user class of equal weight."""
for _name, _url in POOLS.items():
    globals()[f"{_name}_users"] = _pool_user(_name, _url)


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
        return max(1, len(POOLS)) * max(1, round(users)), 100.0
