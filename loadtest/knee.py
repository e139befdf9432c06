"""The true knee of one replica, by construction: the Poisson arrival rate per replica at which an
M/M/c queue (c worker slots, exponential service of mean 1/mu, first come first served) serves
exactly the objective's share of requests within the latency threshold.

Response time T = W + S. With probability 1 - C (Erlang C) a request finds a free slot and T = S,
exponential with rate mu. Otherwise it waits W ~ Exp(c*mu - lambda) (the queue drains at c*mu
while lambda arrive), then is served: T is the sum of two exponentials (hypoexponential). So

    P(T > t) = (1 - C) e^(-mu t) + C (theta e^(-mu t) - mu e^(-theta t)) / (theta - mu),  theta = c mu - lambda

and the knee is the lambda in (0, c*mu) where P(T <= t) equals the target share; P(T <= t) falls
monotonically in lambda, so bisection finds it. ``simulated_knee`` finds it again on a
simulation of the same queue, as a check on the algebra (they agree within the simulation's noise,
about 1-2%).

With 2 slots, 50 ms mean service and 95% under 0.25 s, the knee is 26.36 requests a second per
replica: 66% of the 40 a second the slots could serve at full utilisation.
"""

from __future__ import annotations

import math


def erlang_c(slots: int, offered: float) -> float:
    """The probability that an arrival waits, for ``offered`` = lambda / mu < ``slots``."""
    head = sum(offered**k / math.factorial(k) for k in range(slots))
    tail = offered**slots / math.factorial(slots) * slots / (slots - offered)
    return tail / (head + tail)


def within(rate: float, slots: int, mean_seconds: float, threshold: float) -> float:
    """P(T <= threshold) at Poisson arrival ``rate`` (per second) into one replica."""
    mu = 1.0 / mean_seconds
    theta = slots * mu - rate
    waits = erlang_c(slots, rate / mu)
    if abs(theta - mu) < 1e-9:
        waited = (1 + mu * threshold) * math.exp(-mu * threshold)
    else:
        waited = (theta * math.exp(-mu * threshold) - mu * math.exp(-theta * threshold)) / (theta - mu)
    return 1.0 - ((1 - waits) * math.exp(-mu * threshold) + waits * waited)


def knee(slots: int, mean_seconds: float, threshold: float, percentile: float) -> float:
    """Requests per second per replica at which P(T <= threshold) = percentile / 100."""
    target = percentile / 100.0
    low, high = 1e-9, slots / mean_seconds * (1 - 1e-9)
    if within(low, slots, mean_seconds, threshold) < target:
        raise ValueError(f"even an idle replica misses {percentile}% under {threshold}s")
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if within(middle, slots, mean_seconds, threshold) >= target else (low, middle)
    return (low + high) / 2


def simulated_within(rate: float, slots: int, mean_seconds: float, threshold: float, customers: int = 100_000,
                     seed: int = 0) -> float:
    """P(T <= threshold) by simulating the same queue (FCFS, ``slots`` servers), as a check on
    ``within``: each arrival takes the slot that frees first."""
    import heapq
    import random

    draw = random.Random(seed)
    free = [0.0] * slots
    arrival, good = 0.0, 0
    for _ in range(customers):
        arrival += draw.expovariate(rate)
        service = draw.expovariate(1.0 / mean_seconds)
        begins = max(arrival, heapq.heappop(free))
        heapq.heappush(free, begins + service)
        good += begins + service - arrival <= threshold
    return good / customers


def simulated_knee(slots: int, mean_seconds: float, threshold: float, percentile: float, seed: int = 0,
                   customers: int = 300_000) -> float:
    """``knee`` found on the simulation (common random numbers across the bisection)."""
    low, high = 0.05 * slots / mean_seconds, slots / mean_seconds * 0.999
    for _ in range(18):
        middle = (low + high) / 2
        share = simulated_within(middle, slots, mean_seconds, threshold, customers, seed)
        low, high = (middle, high) if share >= percentile / 100 else (low, middle)
    return (low + high) / 2
