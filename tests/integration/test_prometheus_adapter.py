"""The Prometheus adapter against the local stack's real Prometheus and its backfilled demand.

What the operator relies on every cycle: 14 days of history read once in chunks, then only the
newest samples; a compact copy kept between cycles; one clear error per kind of bad answer.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from clusterlib import DevCluster, RecordingPrometheus
from healthscale.adapters import prometheus

pytestmark = pytest.mark.integration

DEMAND = 'sum(healthscale_demo_requests_per_second{journey="ed-arrivals"})'
FOURTEEN_DAYS = 14 * 86400


def test_first_read_fetches_the_whole_window_in_chunks_and_later_reads_only_the_newest(
        devcluster: DevCluster) -> None:
    client = RecordingPrometheus(devcluster.prometheus_url)
    cache = prometheus.HistoryCache(DEMAND, 60)
    now = int(time.time())

    first = prometheus.read_history(client, cache, now, FOURTEEN_DAYS)
    assert len(first) == FOURTEEN_DAYS // 60 + 1
    assert len(client.points_asked) >= 2  # 20,161 points exceed one query's limit
    assert max(client.points_asked) <= prometheus.MAX_POINTS_PER_QUERY
    assert first.observed_count() > 13 * 1440  # the backfill covers the window

    client.points_asked.clear()
    later = prometheus.read_history(client, cache, now + 180, FOURTEEN_DAYS)
    assert client.points_asked and sum(client.points_asked) <= 5  # three new minutes and the last known one
    # The window moved three steps; everything both reads cover agrees.
    shift = 3
    overlap_first, overlap_later = first.values[shift:-1], later.values[:len(first) - shift - 1]
    both = ~np.isnan(overlap_first) & ~np.isnan(overlap_later)
    assert both.sum() > 13 * 1440
    np.testing.assert_array_equal(overlap_first[both], overlap_later[both])


def test_history_is_kept_in_single_precision_and_returned_in_double(devcluster: DevCluster) -> None:
    cache = prometheus.HistoryCache(DEMAND, 60)
    history = prometheus.read_history(prometheus.Client(devcluster.prometheus_url), cache, int(time.time()),
                                      FOURTEEN_DAYS)
    assert cache.values.dtype == np.float32
    assert cache.values.nbytes == 4 * len(history)
    assert history.values.dtype == np.float64
    np.testing.assert_array_equal(history.values, cache.values.astype(np.float64))


@pytest.mark.parametrize(
    "query, expected_error, message",
    [
        pytest.param(f'{DEMAND} or label_replace({DEMAND}, "copy", "yes", "", "")', ValueError,
                     "returned 2 series; aggregate it to one",
                     id="a demand query returning two series is refused with how to fix it"),
        pytest.param('sum(rate(', prometheus.MetricsUnavailable, "query_range failed",
                     id="a query Prometheus cannot parse is metrics unavailable, not zero demand"),
    ],
)
def test_bad_answers_raise_their_own_error(devcluster: DevCluster, query: str, expected_error: type[Exception],
                                           message: str) -> None:
    cache = prometheus.HistoryCache(query, 60)
    with pytest.raises(expected_error, match=message):
        prometheus.read_history(prometheus.Client(devcluster.prometheus_url), cache, int(time.time()), 86400)


def test_an_empty_result_is_a_series_with_no_samples_not_zeros(devcluster: DevCluster) -> None:
    cache = prometheus.HistoryCache('sum(healthscale_demo_requests_per_second{journey="no-such-journey"})', 60)
    history = prometheus.read_history(prometheus.Client(devcluster.prometheus_url), cache, int(time.time()), 86400)
    assert len(history) == 86400 // 60 + 1
    assert history.observed_count() == 0


def test_an_unreachable_prometheus_is_metrics_unavailable() -> None:
    client = prometheus.Client("http://127.0.0.1:9", timeout=2)  # the discard port: nothing listens
    with pytest.raises(prometheus.MetricsUnavailable):
        prometheus.read_history(client, prometheus.HistoryCache(DEMAND, 60), int(time.time()), 3600)
