"""Demand history: the cache, the fetch plan and the merge (domain.history), and reading it through
the Metrics port (service.history) with an in-memory Prometheus."""

from __future__ import annotations

import math
import warnings

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies

from healthscale import ports
from healthscale.domain import history, series
from healthscale.service import history as service_history

STEP = 60
NOW = 1_780_000_230  # 2026-05-28T20:30:30Z, half a step past the grid
DAY = 86400


def demand(times: np.ndarray) -> np.ndarray:
    return 100 + times % 7919 / 100


class FakeMetrics:
    """A Prometheus with one demand series on the step grid (``series_count`` copies of it), that
    fails the ``fail_on``-th range read, and logs each (start, end, step) asked."""

    def __init__(self, series_count: int = 1, fail_on: int | None = None, values: dict[int, float] | None = None,
                 known_until: int | None = None) -> None:
        self.series_count = series_count
        self.fail_on = fail_on
        self.values = values or {}
        self.known_until = known_until
        self.asked: list[tuple[int, int, int]] = []

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        self.asked.append((start, end, step))
        if self.fail_on == len(self.asked):
            raise ports.MetricsError("PrometheusUnavailable", "query_range: fake down")
        last = end if self.known_until is None else min(end, self.known_until)
        times = np.arange(start, last + 1, step, dtype=np.float64)
        values = demand(times)
        for moment, value in self.values.items():
            values[times == moment] = value
        return [(times, values)] * self.series_count

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        raise AssertionError("history reads only ranges")


def points(chunks: tuple[tuple[int, int], ...], step: int = STEP) -> list[int]:
    return [(end - start) // step + 1 for start, end in chunks]


def test_a_first_plan_covers_the_whole_window_in_contiguous_chunks_of_at_most_the_limit() -> None:
    plan = history.plan(history.HistoryCache("demand", STEP), NOW, 14 * DAY)
    assert (plan.begin, plan.end) == ((NOW - 14 * DAY) // STEP * STEP, NOW // STEP * STEP)
    assert points(plan.chunks) == [10_000, 10_000, 161]
    assert plan.chunks[0][0] == plan.begin and plan.chunks[-1][1] == plan.end
    assert all(later[0] == earlier[1] + STEP for earlier, later in zip(plan.chunks, plan.chunks[1:]))


@pytest.mark.parametrize(
    ("kept_start", "kept_points", "fetched_from"),
    [
        pytest.param(NOW // STEP * STEP - 100 * STEP, 98, NOW // STEP * STEP - 3 * STEP,
                     id="a warm cache fetches what is new and its last point again"),
        pytest.param(NOW - 30 * DAY, 10, (NOW - DAY) // STEP * STEP,
                     id="a cache that ended before the window fetches the whole window"),
        pytest.param(NOW // STEP * STEP - 100 * STEP, 101, NOW // STEP * STEP,
                     id="a cache up to now fetches only the newest point again"),
        pytest.param((NOW - DAY) // STEP * STEP - 10 * STEP, 5, (NOW - DAY) // STEP * STEP,
                     id="the window's start bounds what is fetched"),
    ],
)
def test_a_later_plan_fetches_only_what_the_cache_lacks(kept_start: int, kept_points: int, fetched_from: int) -> None:
    cache = history.HistoryCache("demand", STEP, kept_start // STEP * STEP, np.ones(kept_points, np.float32))
    plan = history.plan(cache, NOW, DAY)
    assert plan.chunks == ((fetched_from, NOW // STEP * STEP),)


def test_merging_history_keeps_old_samples_and_lets_fresh_ones_win() -> None:
    kept = history.HistoryCache("demand", 100, start=1000, values=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    fresh = series.Series(1200, 100, np.array([30.0, 4.0]))
    merged = history.merge(kept, fresh, 1100, 1400)
    assert merged.start == 1100
    np.testing.assert_array_equal(merged.values, [2.0, 30.0, 4.0, np.nan])


@pytest.mark.parametrize(
    ("fresh", "expected"),
    [
        pytest.param([np.nan, 5.0], [1.0, 5.0, 3.0], id="a fresh NaN never replaces a kept sample"),
        pytest.param([math.inf, -math.inf], [math.inf, -math.inf, 3.0], id="fresh infinities are kept as samples"),
    ],
)
def test_merge_treats_nan_as_a_gap_and_infinity_as_a_sample(fresh: list[float], expected: list[float]) -> None:
    kept = history.HistoryCache("demand", 10, start=0, values=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    merged = history.merge(kept, series.Series(0, 10, np.array(fresh)), 0, 20)
    np.testing.assert_array_equal(merged.values, expected)


def test_the_cache_keeps_single_precision_and_values_beyond_it_become_infinite_without_a_warning() -> None:
    cache = history.HistoryCache("demand", STEP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.keep(series.Series(0, STEP, np.array([1.5, 1e39, -1e39, np.nan])))
    assert cache.values.dtype == np.float32
    np.testing.assert_array_equal(cache.as_series().values, [1.5, math.inf, -math.inf, np.nan])
    assert cache.end == 4 * STEP


def test_a_cache_needs_a_positive_step() -> None:
    with pytest.raises(ValueError, match="step must be positive"):
        history.HistoryCache("demand", 0)


def test_a_first_read_fetches_the_window_in_chunks_and_a_later_one_only_the_newest() -> None:
    metrics, cache = FakeMetrics(), history.HistoryCache("demand", STEP)
    first = service_history.read(metrics, cache, NOW, 14 * DAY)
    assert len(first) == 14 * DAY // STEP + 1
    assert points(tuple((start, end) for start, end, _ in metrics.asked)) == [10_000, 10_000, 161]
    assert first.observed_count() == len(first)
    np.testing.assert_array_equal(first.values, demand(first.times().astype(np.float64)).astype(np.float32))

    metrics.asked.clear()
    later = service_history.read(metrics, cache, NOW + 3 * STEP, 14 * DAY)
    assert metrics.asked == [(NOW // STEP * STEP, (NOW + 3 * STEP) // STEP * STEP, STEP)]
    np.testing.assert_array_equal(later.values[:-3], first.values[3:])
    assert later.values.dtype == np.float64 and cache.values.dtype == np.float32


def test_more_than_one_series_is_an_invalid_query_that_says_how_to_fix_it() -> None:
    cache = history.HistoryCache("rate(requests[5m])", STEP)
    with pytest.raises(ports.MetricsError) as raised:
        service_history.read(FakeMetrics(series_count=2), cache, NOW, DAY)
    assert raised.value.reason == "InvalidQuery"
    assert str(raised.value).startswith("indicators.demand returned 2 series; it must return exactly one")
    assert "sum(...)" in str(raised.value)
    assert cache.values.size == 0


def test_a_failure_part_way_leaves_the_cache_as_it_was() -> None:
    metrics, cache = FakeMetrics(), history.HistoryCache("demand", STEP)
    service_history.read(metrics, cache, NOW - 14 * DAY, DAY)
    kept_start, kept = cache.start, cache.values.copy()
    with pytest.raises(ports.MetricsError, match="fake down") as raised:
        service_history.read(FakeMetrics(fail_on=2), cache, NOW, 14 * DAY)
    assert raised.value.reason == "PrometheusUnavailable"
    assert cache.start == kept_start
    np.testing.assert_array_equal(cache.values, kept)


def test_an_empty_result_is_a_series_with_no_samples_not_zeros() -> None:
    found = service_history.read(FakeMetrics(series_count=0), history.HistoryCache("demand", STEP), NOW, DAY)
    assert len(found) == DAY // STEP + 1
    assert found.observed_count() == 0


def test_infinite_samples_are_kept_for_the_caller_to_judge() -> None:
    newest = NOW // STEP * STEP
    metrics = FakeMetrics(values={newest: math.inf, newest - STEP: -math.inf, newest - 2 * STEP: math.nan})
    found = service_history.read(metrics, history.HistoryCache("demand", STEP), NOW, DAY)
    assert found.values[-1] == math.inf and found.values[-2] == -math.inf and math.isnan(found.values[-3])
    assert found.last_observed() == (newest, math.inf)


class StrayMetrics(FakeMetrics):
    """Answers with one extra sample far outside the range asked."""

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        ((times, values),) = super().range(query, start, end, step)
        return [(np.append(times, [0.0, np.nan]), np.append(values, [1.0, 2.0]))]


def test_samples_outside_the_range_asked_are_ignored_not_stretched_over() -> None:
    found = service_history.read(StrayMetrics(), history.HistoryCache("demand", STEP), NOW, DAY)
    assert found.start == (NOW - DAY) // STEP * STEP
    assert len(found) == DAY // STEP + 1


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(
    moves=strategies.lists(strategies.integers(min_value=0, max_value=3 * DAY), min_size=1, max_size=4),
    window=strategies.sampled_from([STEP, 3600, DAY, 9 * DAY]),
    known_lag=strategies.integers(min_value=0, max_value=STEP - 1),
)
def test_incremental_reads_agree_with_a_fresh_read(moves: list[int], window: int, known_lag: int) -> None:
    cache, now = history.HistoryCache("demand", STEP), NOW
    for move in moves:
        now += move
        # The newest grid point may not be known yet; the next read fetches it again.
        service_history.read(FakeMetrics(known_until=now - known_lag), cache, now, window)
    fresh = service_history.read(FakeMetrics(known_until=now - known_lag), history.HistoryCache("demand", STEP),
                                 now, window)
    kept = cache.as_series()
    assert (kept.start, len(kept)) == (fresh.start, len(fresh))
    np.testing.assert_array_equal(kept.values, fresh.values)
