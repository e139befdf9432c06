"""perReplica learned from telemetry (``domain.capacity``), on synthetic histories with a known knee.

Each replica is an M/M/1 queue with service rate MU requests per second: a request's latency is
exponential with rate MU - load, so the share under the threshold T is 1 - exp(-(MU - load) T).
With T = ln(20) / 2 the 95% objective is just met at load MU - 2: the knee is known by
construction (40 for MU = 42).
"""

from __future__ import annotations

import dataclasses
import math

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from healthscale.domain import capacity

STEP = 300
DAYS = 14
THRESHOLD = math.log(20) / 2
"""Seconds: with it, the 95% objective is met up to load MU - 2 per replica."""


def good_share(load: np.ndarray, mu: float) -> np.ndarray:
    """The M/M/1 share of requests faster than THRESHOLD (none once the queue is unstable)."""
    return np.where(load < mu, 1.0 - np.exp(-(mu - load) * THRESHOLD), 0.0)


@dataclasses.dataclass(frozen=True)
class History:
    times: np.ndarray
    load: np.ndarray
    noise: np.ndarray
    """Added to the share of each interval (then clipped to [0, 1])."""

    def share(self, mu: float) -> np.ndarray:
        return np.asarray(np.clip(good_share(self.load, mu) + self.noise, 0.0, 1.0))

    def learn(self, mu: float, percentile: float = 95.0, resamples: int = capacity.RESAMPLES) -> capacity.Estimate:
        # Requests per interval weigh each interval, as the request rate does from Prometheus.
        return capacity.learn(self.times, self.load, self.share(mu), self.load * STEP, percentile,
                              resamples=resamples)


def history(peak: float, noise: float = 0.01, seed: int = 1, days: int = DAYS) -> History:
    """A diurnal load per replica from about 5 to ``peak`` with jitter, over ``days`` at 5 minutes."""
    generator = np.random.default_rng(seed)
    count = days * 86400 // STEP
    times = 1.7e9 + np.arange(count) * STEP
    hour = (times % 86400) / 3600
    base = 5 + (peak - 5) * np.clip(np.sin(np.pi * (hour - 6) / 14), 0, None) ** 2
    load = np.clip(base * generator.normal(1.0, 0.03, count), 0.0, None)
    return History(times, load, generator.normal(0.0, noise, count))


@pytest.mark.parametrize(("peak", "noise", "seed"), [
    pytest.param(50.0, 0.0, 1, id="a noiseless history through the knee gives 40 per replica"),
    pytest.param(50.0, 0.01, 1, id="a history with 1-point noise on the SLI gives 40 per replica"),
    pytest.param(50.0, 0.03, 2, id="a history with 3-point noise on the SLI still gives 40 per replica"),
    pytest.param(44.0, 0.01, 3, id="a history that passes the knee only briefly at peaks gives 40 per replica"),
])
def test_the_recommendation_is_within_10_percent_of_the_true_knee(peak: float, noise: float, seed: int) -> None:
    estimate = history(peak, noise, seed).learn(mu=42.0)
    assert estimate.outcome == capacity.Outcome.OBSERVED, estimate.reason
    knee, low, high = estimate.recommended, estimate.low, estimate.high
    assert knee is not None and low is not None and high is not None
    assert knee == pytest.approx(40.0, rel=0.10)
    assert low <= knee <= high
    assert high - low < 0.2 * knee
    assert estimate.beyond > 0
    assert estimate.intervals == DAYS * 86400 // STEP


def test_the_evidence_counts_intervals_left_out_and_the_load_range() -> None:
    sample = history(50.0)
    load = sample.load.copy()
    load[:10] = np.nan  # a gap
    share = sample.share(42.0)
    share[10:15] = np.nan  # no request
    estimate = capacity.learn(sample.times, load, share, sample.load * STEP, 95.0, resamples=20)
    assert (estimate.intervals, estimate.dropped) == (sample.times.size - 15, 15)
    assert estimate.load_min == pytest.approx(float(np.min(sample.load[15:])))
    assert estimate.load_max == pytest.approx(float(np.max(sample.load[15:])))
    assert estimate.days == pytest.approx(DAYS, abs=0.1)
    assert estimate.resamples == 20 and estimate.crossed == 20
    assert "falls below 95% at" in estimate.reason


def test_a_history_that_never_reaches_the_knee_says_not_observed_with_a_lower_bound() -> None:
    sample = history(30.0)
    estimate = sample.learn(mu=42.0)
    assert estimate.outcome == capacity.Outcome.NOT_OBSERVED
    assert estimate.recommended is None and estimate.low is None and estimate.high is None
    assert estimate.at_least is not None
    assert estimate.at_least <= float(sample.load.max())
    assert np.count_nonzero(sample.load >= estimate.at_least) >= capacity.TOP_INTERVALS
    assert estimate.reason.startswith(f"not observed: at least {estimate.at_least:.4g} per replica")


def test_an_objective_missed_even_at_the_lightest_load_recommends_nothing() -> None:
    sample = history(30.0)
    slow = np.full(sample.load.shape, 0.80)  # a slow dependency: 80% under the threshold at any load
    estimate = capacity.learn(sample.times, sample.load, slow, None, 95.0)
    assert estimate.outcome == capacity.Outcome.NEVER_MET
    assert (estimate.recommended, estimate.at_least) == (None, None)
    assert "missed even at the lightest load" in estimate.reason


def test_too_few_intervals_recommend_nothing_and_say_how_many() -> None:
    sample = history(50.0, days=1)
    count = capacity.MIN_INTERVALS - 1
    estimate = capacity.learn(sample.times[:count], sample.load[:count], sample.share(42.0)[:count], None, 95.0)
    assert estimate.outcome == capacity.Outcome.INSUFFICIENT_DATA
    assert estimate.recommended is None
    assert estimate.reason.startswith(f"{count} usable interval(s)")


def test_a_short_history_is_bootstrapped_in_shorter_blocks() -> None:
    estimate = history(50.0, days=2).learn(mu=42.0)
    assert estimate.outcome == capacity.Outcome.OBSERVED
    assert estimate.low is not None and estimate.high is not None
    assert estimate.low <= 40.0 * 1.1 and estimate.high >= 40.0 * 0.9


def test_the_same_seed_gives_the_same_band() -> None:
    sample = history(50.0, noise=0.03)
    assert sample.learn(mu=42.0) == sample.learn(mu=42.0)


@pytest.mark.parametrize("percentile", [0.0, 100.0, -1.0])
def test_a_percentile_outside_0_to_100_is_refused(percentile: float) -> None:
    sample = history(50.0, days=1)
    with pytest.raises(ValueError, match="percentile must be between 0 and 100"):
        capacity.learn(sample.times, sample.load, sample.share(42.0), None, percentile)


def test_the_fit_is_non_increasing_in_load() -> None:
    sample = history(50.0, noise=0.05)
    estimate = sample.learn(mu=42.0, resamples=0)
    fitted = np.array([share for _, share in estimate.curve])
    loads = np.array([load for load, _ in estimate.curve])
    assert np.all(np.diff(fitted) <= 1e-12)
    assert np.all(np.diff(loads) > 0)


ORDER = {capacity.Outcome.NEVER_MET: 0, capacity.Outcome.OBSERVED: 1, capacity.Outcome.NOT_OBSERVED: 2}


def rank(estimate: capacity.Estimate) -> tuple[int, float]:
    """Never met < a knee at its load < not observed."""
    return ORDER[estimate.outcome], estimate.recommended if estimate.recommended is not None else 0.0


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(mu=st.floats(10.0, 60.0), faster=st.floats(1.0, 1.5), noise=st.floats(0.0, 0.05),
                  seed=st.integers(0, 2**16))
def test_more_capable_replicas_never_get_a_lower_knee(mu: float, faster: float, noise: float, seed: int) -> None:
    sample = history(50.0, noise, seed, days=3)
    slower, quicker = sample.learn(mu, resamples=0), sample.learn(mu * faster, resamples=0)
    assert rank(quicker) >= (rank(slower)[0], rank(slower)[1] - 1e-9)
