"""Reads demand history and SLO counts from Prometheus.

The only module that speaks to Prometheus. History is fetched incrementally: the first cycle of a
ClinicalSLO reads ``forecast.history`` in chunks, later cycles only what is new since the last
sample (plus one step, because the newest point may still have been moving). An empty result is
its own outcome (``Empty``), distinct from an unreachable or failing Prometheus
(``MetricsUnavailable``): the first is "no data yet", the second must never lead to a scale-down.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import prometheus_api_client
import requests
from prometheus_api_client import exceptions as prometheus_exceptions

from healthscale.domain import series

MAX_POINTS_PER_QUERY = 10_000
"""Prometheus refuses query_range above 11,000 points; stay under it."""


class MetricsUnavailable(Exception):
    """Prometheus could not answer (unreachable, timeout, bad query, HTTP error)."""


@dataclasses.dataclass(frozen=True)
class Auth:
    """How to reach Prometheus: bearer token and TLS options."""

    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


class Client:
    """A thin, typed wrapper around prometheus-api-client."""

    def __init__(self, url: str, auth: Auth = Auth(), timeout: int = 30) -> None:
        headers = {"Authorization": f"Bearer {auth.bearer_token}"} if auth.bearer_token else None
        session = requests.Session()
        if auth.ca_file:
            session.verify = auth.ca_file
        self._connection = prometheus_api_client.PrometheusConnect(
            url=url, headers=headers, disable_ssl=auth.insecure_skip_verify, session=session, timeout=timeout,
        )
        self.url = url

    def range(self, query: str, start: int, end: int, step: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every series the query returns over ``[start, end]``: (epoch seconds, values)."""
        try:
            result: list[dict[str, Any]] = self._connection.custom_query_range(
                query, start_time=dt.datetime.fromtimestamp(start, dt.timezone.utc),
                end_time=dt.datetime.fromtimestamp(end, dt.timezone.utc), step=f"{step}s",
            )
        except (requests.RequestException, prometheus_exceptions.PrometheusApiClientException, ValueError) as error:
            raise MetricsUnavailable(f"query_range failed: {error}") from error
        found = []
        for item in result:
            pairs = np.asarray(item.get("values", []), dtype=np.float64).reshape(-1, 2)
            found.append((pairs[:, 0], pairs[:, 1]))
        return found

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The query's series now: (labels, value)."""
        try:
            result: list[dict[str, Any]] = self._connection.custom_query(query)
        except (requests.RequestException, prometheus_exceptions.PrometheusApiClientException, ValueError) as error:
            raise MetricsUnavailable(f"query failed: {error}") from error
        return [(dict(item.get("metric", {})), float(item["value"][1])) for item in result]

    def scalar(self, query: str) -> float | None:
        """A query expected to return one series; None when it returns nothing or NaN."""
        found = self.instant(query)
        if not found:
            return None
        value = found[0][1]
        return None if math.isnan(value) else value


STORED_DTYPE = np.float32
"""Kept history is single precision: half the memory (80 KiB for 14 days at 1 minute instead of
160 KiB, per ClinicalSLO) for 7 significant digits, far finer than any demand signal."""


@dataclasses.dataclass
class HistoryCache:
    """One ClinicalSLO's demand history, kept between cycles (compactly, see ``STORED_DTYPE``)."""

    query: str
    step: int
    start: int = 0
    values: npt.NDArray[np.float32] = dataclasses.field(default_factory=lambda: np.empty(0, STORED_DTYPE))

    def keep(self, history: series.Series) -> None:
        self.start, self.values = history.start, history.values.astype(STORED_DTYPE)


def read_history(client: Client, cache: HistoryCache, now: int, history_seconds: int) -> series.Series:
    """The demand series over ``[now - history, now]``, fetching only what the cache lacks.

    Raises ``MetricsUnavailable`` when Prometheus fails, and ``ValueError`` when the demand query
    returns more than one series (it must aggregate to one).
    """
    step = cache.step
    begin = (now - history_seconds) // step * step
    end = now // step * step
    kept_end = cache.start + cache.values.size * step
    if cache.values.size and kept_end > begin:
        # Refetch the last known point too: it may have been computed from an incomplete window.
        fetch_from = max(begin, kept_end - step)
    else:
        fetch_from = begin
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    chunk = MAX_POINTS_PER_QUERY * step
    for chunk_start in range(fetch_from, end + 1, chunk):
        chunk_end = min(end, chunk_start + chunk - step)
        found = client.range(cache.query, chunk_start, chunk_end, step)
        if len(found) > 1:
            raise ValueError(f"indicators.demand returned {len(found)} series; aggregate it to one (e.g. sum(...))")
        for series_times, series_values in found:
            times.append(series_times)
            values.append(series_values)
    fresh = series.from_samples(np.concatenate(times) if times else [], np.concatenate(values) if values else [], step)
    cache.keep(_merge(cache, fresh, begin, end))
    # What is returned is what is kept, so a first read and later incremental ones agree exactly.
    return series.Series(cache.start, step, cache.values.astype(np.float64))


def _merge(kept: HistoryCache, fresh: series.Series, begin: int, end: int) -> series.Series:
    """The kept history updated by ``fresh`` on the grid ``[begin, end]`` (fresh samples win, NaN never does)."""
    step = kept.step
    count = (end - begin) // step + 1
    values = np.full(count, np.nan)
    # Kept history is on the same grid: a slice copy, not per-sample indexing (it is every cycle).
    offset = (kept.start - begin) // step
    first, last = max(0, offset), min(count, offset + kept.values.size)
    if first < last:
        values[first:last] = kept.values[first - offset:last - offset]
    if len(fresh):
        offsets = (fresh.start + np.arange(len(fresh)) * fresh.step - begin) // step
        inside = (offsets >= 0) & (offsets < count) & ~np.isnan(fresh.values)
        values[offsets[inside]] = fresh.values[inside]
    return series.Series(begin, step, values)
