"""The Prometheus adapter and the history reader against the local stack's real Prometheus and its
backfilled demand.

What the operator relies on every cycle: 14 days of history read once in chunks, then only the
newest samples; a compact copy kept between cycles; one ``ports.MetricsError`` with its reason per
kind of bad answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from clusterlib import DevCluster, RecordingPrometheus
from healthscale import ports
from healthscale.adapters import prometheus
from healthscale.domain import history
from healthscale.service import history as service_history

pytestmark = pytest.mark.integration

DEMAND = 'sum(healthscale_demo_requests_per_second{journey="ed-arrivals"})'
FOURTEEN_DAYS = 14 * 86400


@pytest.fixture
def client(devcluster: DevCluster) -> Iterator[prometheus.Client]:
    with prometheus.Client(devcluster.prometheus_url) as made:
        yield made


def test_first_read_fetches_the_whole_window_in_chunks_and_later_reads_only_the_newest(
        devcluster: DevCluster) -> None:
    client = RecordingPrometheus(devcluster.prometheus_url)
    cache = history.HistoryCache(DEMAND, 60)
    now = int(time.time())

    try:
        first = service_history.read(client, cache, now, FOURTEEN_DAYS)
        assert len(first) == FOURTEEN_DAYS // 60 + 1
        assert len(client.points_asked) >= 2  # 20,161 points exceed one query's limit
        assert max(client.points_asked) <= history.MAX_POINTS_PER_QUERY
        assert first.observed_count() > 13 * 1440  # the backfill covers the window

        client.points_asked.clear()
        later = service_history.read(client, cache, now + 180, FOURTEEN_DAYS)
    finally:
        client.close()
    assert client.points_asked and sum(client.points_asked) <= 5  # three new minutes and the last known one
    # The window moved three steps; everything both reads cover agrees.
    shift = 3
    overlap_first, overlap_later = first.values[shift:-1], later.values[:len(first) - shift - 1]
    both = ~np.isnan(overlap_first) & ~np.isnan(overlap_later)
    assert both.sum() > 13 * 1440
    np.testing.assert_array_equal(overlap_first[both], overlap_later[both])


def test_history_is_kept_in_single_precision_and_returned_in_double(client: prometheus.Client) -> None:
    cache = history.HistoryCache(DEMAND, 60)
    found = service_history.read(client, cache, int(time.time()), FOURTEEN_DAYS)
    assert cache.values.dtype == np.float32
    assert cache.values.nbytes == 4 * len(found)
    assert found.values.dtype == np.float64
    np.testing.assert_array_equal(found.values, cache.values.astype(np.float64))


@pytest.mark.parametrize(
    ("query", "reason", "message"),
    [
        pytest.param(f'{DEMAND} or label_replace({DEMAND}, "copy", "yes", "", "")', "InvalidQuery",
                     "indicators.demand returned 2 series; it must return exactly one: aggregate it",
                     id="a demand query returning two series is an invalid query with how to fix it"),
        pytest.param("sum(rate(", "InvalidQuery",
                     r"Prometheus refused the query \(query_range\): bad_data: .*parse error",
                     id="a query Prometheus cannot parse is an invalid query with its parse error, not zero demand"),
        pytest.param('"a string"', "InvalidQuery", "query_range returned a string result|bad_data",
                     id="a string expression is an invalid query"),
    ],
)
def test_bad_queries_raise_one_metrics_error_with_their_reason(client: prometheus.Client, query: str, reason: str,
                                                               message: str) -> None:
    cache = history.HistoryCache(query, 60)
    with pytest.raises(ports.MetricsError, match=message) as raised:
        service_history.read(client, cache, int(time.time()), 86400)
    assert raised.value.reason == reason


def test_an_invalid_query_does_not_stop_the_next_read(client: prometheus.Client) -> None:
    with pytest.raises(ports.MetricsError):
        client.instant("sum(rate(")
    assert client.instant(DEMAND)  # the circuit stays closed: Prometheus answered


def test_an_empty_result_is_a_series_with_no_samples_not_zeros(client: prometheus.Client) -> None:
    cache = history.HistoryCache('sum(healthscale_demo_requests_per_second{journey="no-such-journey"})', 60)
    found = service_history.read(client, cache, int(time.time()), 86400)
    assert len(found) == 86400 // 60 + 1
    assert found.observed_count() == 0


def test_infinite_samples_are_kept_as_infinities(client: prometheus.Client) -> None:
    now = int(time.time())
    found = service_history.read(client, history.HistoryCache(f"{DEMAND} / 0", 60), now, 3600)
    observed = found.values[~np.isnan(found.values)]
    assert observed.size and np.all(observed == np.inf)
    assert client.instant("vector(-1) / 0") == [({}, -np.inf)]


def test_an_unreachable_prometheus_is_unavailable_and_then_fails_fast() -> None:
    with prometheus.Client("http://127.0.0.1:9", timeout=2, connect_timeout=2) as client:  # discard port
        with pytest.raises(ports.MetricsError) as first:
            service_history.read(client, history.HistoryCache(DEMAND, 60), int(time.time()), 3600)
        with pytest.raises(ports.MetricsError, match="circuit open") as second:
            client.instant(DEMAND)
    assert first.value.reason == second.value.reason == "PrometheusUnavailable"
