"""Reads one ClinicalSLO's demand history through the ``ports.Metrics`` port.

Owns running ``domain.history``'s fetch plan against Prometheus and keeping the result in the
cache. An empty result is a series with no samples ("no data yet"), distinct from a failing
Prometheus (``ports.MetricsError``), which must never lead to a scale-down.

Samples of +Inf and -Inf are kept as Prometheus sent them: deciding what a non-finite demand means
is the caller's job (the reconcile turns it into a ``NonFiniteSample`` no-forecast). NaN samples
are gaps, as everywhere in ``domain.series``.
"""

from __future__ import annotations

import numpy as np

from healthscale import ports
from healthscale.domain import history, series


def read(metrics: ports.Metrics, cache: history.HistoryCache, now: int, history_seconds: int) -> series.Series:
    """The demand series over ``[now - history, now]``, fetching only what the cache lacks.

    Raises only ``ports.MetricsError``: whatever the port raises, and ``InvalidQuery`` when the
    demand query returns more than one series. The cache is updated only when every chunk was read,
    so a failure part-way leaves it as it was.
    """
    plan = history.plan(cache, now, history_seconds)
    times: list[series.FloatArray] = []
    values: list[series.FloatArray] = []
    for start, end in plan.chunks:
        found = metrics.range(cache.query, start, end, cache.step)
        if len(found) > 1:
            raise ports.MetricsError(
                "InvalidQuery",
                f"indicators.demand returned {len(found)} series; it must return exactly one: aggregate it, "
                f"e.g. sum(...) or sum by () (...)",
            )
        for series_times, series_values in found:
            # Only what was asked for: a sample far outside the range would stretch the grid.
            inside = (series_times >= start) & (series_times <= end)
            times.append(series_times[inside])
            values.append(series_values[inside])
    fresh = series.from_samples(np.concatenate(times) if times else [], np.concatenate(values) if values else [],
                                cache.step)
    cache.keep(history.merge(cache, fresh, plan.begin, plan.end))
    # What is returned is what is kept, so a first read and later incremental ones agree exactly.
    return cache.as_series()
