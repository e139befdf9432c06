"""Learning a ClinicalSLO's perReplica from its history (``healthscale capacity``).

Owns reading, through the ``ports.Metrics`` port, the aligned per-interval samples that
``domain.capacity`` fits: demand, ready replicas and the latency SLI (good and all requests, built
by ``cycle.latency_sli``, the very queries the reconcile measures the latency objective with), and
printing and plotting the result.

**Ready replicas.** The reconcile reads them from the API server, which has no history; here they
come from Prometheus. The default is kube-state-metrics' series for the target:
``kube_deployment_status_replicas_available`` (a Deployment's replicas ready for minReadySeconds:
those that serve) or ``kube_statefulset_status_replicas_ready``, summed over the target's namespace
and name. Without kube-state-metrics, ``replicas_query`` is any PromQL returning one series, e.g.
``count(<indicators.podLoad>)``: the pods that report load.

**In the reconcile** (``refresh``, called by ``cycle.run`` each cycle of a ClinicalSLO with a
latency objective): the same ``estimate`` over ``SINCE`` at ``STEP`` (the CLI's defaults), at most
daily (``domain.capacity.due``). The recommendation lives in ``status.capacity``, so a restarted
operator does not relearn; a ClinicalSLO never learned waits a share of ``STAGGER_SECONDS`` fixed by
its name, so a thousand of them do not all learn in one cycle. Learning is skipped (and stays due)
when the cycle has spent its time budget or no ``cycle.FITS`` slot is free (it never waits for
one). A failure (Prometheus down, no data) keeps the earlier recommendation and says why in
``error``; it never fails the cycle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import pathlib
import zlib
from collections.abc import Sequence

import numpy as np

from healthscale import ports
from healthscale.api import clinicalslo, durations
from healthscale.domain import calendar, capacity, history, series
from healthscale.service import cycle
from healthscale.service import events as events_

SINCE = 14 * 86400
"""History the reconcile learns from: 14 days, as ``healthscale capacity`` reads by default."""
STEP = 300
"""One interval: 5 minutes, as ``healthscale capacity`` by default."""
STAGGER_SECONDS = 3600
"""A ClinicalSLO never learned first learns within this long of the operator first seeing it."""

log = logging.getLogger(__name__)

REPLICAS_METRIC = {"Deployment": ("kube_deployment_status_replicas_available", "deployment"),
                   "StatefulSet": ("kube_statefulset_status_replicas_ready", "statefulset")}
"""kube-state-metrics' ready replicas per target kind: the metric and the label naming the workload."""


def replicas_query(slo: clinicalslo.ClinicalSLO) -> str:
    """The default ready-replicas PromQL for the ClinicalSLO's target (kube-state-metrics)."""
    metric, label = REPLICAS_METRIC[slo.spec.target_ref.kind]
    return f'sum({metric}{{namespace="{slo.metadata.namespace}", {label}="{slo.spec.target_ref.name}"}})'


@dataclasses.dataclass(frozen=True)
class Queries:
    demand: str
    replicas: str
    good: str
    total: str
    bucket: str | None = None
    """With latencyHistogram: the bucket (le) read as the threshold."""


@dataclasses.dataclass(frozen=True)
class Observed:
    """One sample per interval, on the step grid over the history read."""

    times: series.FloatArray
    demand: series.FloatArray
    replicas: series.FloatArray
    good: series.FloatArray
    total: series.FloatArray
    queries: Queries

    @property
    def load(self) -> series.FloatArray:
        """Demand per ready replica; NaN without a ready replica."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.replicas > 0, self.demand / self.replicas, np.nan)

    @property
    def good_share(self) -> series.FloatArray:
        """The latency SLI per interval; NaN without a request."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.total > 0, self.good / self.total, np.nan)


def queries(metrics: ports.Metrics, slo: clinicalslo.ClinicalSLO, now: int, replicas: str | None) -> Queries:
    """The four queries; ValueError when the ClinicalSLO has no latency objective or its histogram
    has no bucket at the threshold (``ports.MetricsError`` when reading the buckets fails)."""
    found = cycle.latency_sli(metrics, slo.spec, cycle.Memory(), now)
    if found is None:
        raise ValueError(f"ClinicalSLO {slo.metadata.name} has no objectives.latency: perReplica is learned against "
                         "the latency objective (with indicators.latencyHistogram or latencyGood)")
    if isinstance(found, cycle.Measured):
        raise ValueError(f"the latency SLI cannot be measured ({found.reason}): {found.message}")
    return Queries(slo.spec.indicators.demand, replicas or replicas_query(slo), found.events, found.total,
                   found.bucket)


def read(metrics: ports.Metrics, slo: clinicalslo.ClinicalSLO, now: int, since: int, step: int,
         replicas: str | None = None) -> Observed:
    """Every query over ``[now - since, now]`` at ``step``, aligned on the step grid.

    Raises ``ports.MetricsError`` for Prometheus and ValueError when a query returns nothing
    (``Empty``) or more than one series."""
    wanted = queries(metrics, slo, now, replicas)
    end = now - now % step
    start = end - since
    grid = np.arange(start, end + 1, step, dtype=np.float64)
    named = {"indicators.demand": wanted.demand, "ready replicas": wanted.replicas,
             "good requests (latency SLI)": wanted.good, "all requests (latency SLI)": wanted.total}
    columns = []
    for what, query in named.items():
        try:
            columns.append(_column(metrics, what, query, start, end, step, grid))
        except Empty as error:
            if query != replicas_query(slo):
                raise
            pods = slo.spec.indicators.pod_load
            raise Empty(f"{error}; is kube-state-metrics scraped? If not, give the ready-replicas PromQL "
                        f"(healthscale capacity --replicas-query)"
                        + (f", e.g. count({pods})" if pods else "")) from None
    demand, ready, good, total = columns
    return Observed(grid, demand, ready, good, total, wanted)


class Empty(ValueError):
    """A query returned no samples over the history read."""


def _column(metrics: ports.Metrics, what: str, query: str, start: int, end: int, step: int,
            grid: series.FloatArray) -> series.FloatArray:
    values = np.full(grid.shape, np.nan)
    seen = 0
    chunk = history.MAX_POINTS_PER_QUERY * step
    for begin in range(start, end + 1, chunk):
        found = metrics.range(query, begin, min(end, begin + chunk - step), step)
        if len(found) > 1:
            raise ValueError(f"{what} ({query}) returned {len(found)} series; it must return one: aggregate it, "
                             "e.g. sum(...)")
        for times, samples in found:
            index = np.rint((times - start) / step).astype(np.int64)
            inside = (index >= 0) & (index < grid.size)
            values[index[inside]] = samples[inside]
            seen += int(np.count_nonzero(np.isfinite(samples[inside])))
    if not seen:
        raise Empty(f"{what} returned no samples over {durations.format(dt.timedelta(seconds=end - start))}: {query}")
    return values


def estimate(metrics: ports.Metrics, slo: clinicalslo.ClinicalSLO, now: int, since: int, step: int,
             replicas: str | None = None) -> tuple[Observed, capacity.Estimate]:
    """Read the history (``read``) and learn from it (``learn``): what ``healthscale capacity`` and
    the reconcile both run. Raises what ``read`` raises."""
    observed = read(metrics, slo, now, since, step, replicas)
    return observed, learn(observed, slo)


def learn(observed: Observed, slo: clinicalslo.ClinicalSLO, *, resamples: int = capacity.RESAMPLES) -> capacity.Estimate:
    objective = slo.spec.objectives.latency
    if objective is None:  # queries() refused it already
        raise ValueError("no latency objective")
    return capacity.learn(observed.times, observed.load, observed.good_share, observed.total, objective.percentile,
                          resamples=resamples)


def describe(estimate: capacity.Estimate, slo: clinicalslo.ClinicalSLO, observed: Observed) -> str:
    """What ``healthscale capacity`` prints: the recommendation and its band, the evidence, the queries."""
    objective = slo.spec.objectives.latency
    declared = slo.spec.capacity.per_replica
    lines = []
    if estimate.outcome == capacity.Outcome.OBSERVED and estimate.recommended is not None:
        band = ("no band" if estimate.low is None and estimate.high is None else
                f"band {_number(estimate.low, 'below the lightest load')} to "
                f"{_number(estimate.high, 'above the heaviest load')}")
        lines.append(f"recommended perReplica: {estimate.recommended:.4g} ({band}); declared: {declared:g}")
    elif estimate.outcome == capacity.Outcome.NOT_OBSERVED and estimate.at_least is not None:
        lines.append(f"recommended perReplica: not observed: at least {estimate.at_least:.4g}; declared: {declared:g}")
    else:
        lines.append(f"recommended perReplica: none ({estimate.outcome}); declared: {declared:g}")
    lines.append(f"why: {estimate.reason}")
    if objective is not None:
        lines.append(f"objective: {objective.percentile:g}% of requests under {objective.threshold_seconds:g}s"
                     + (f" (bucket le={observed.queries.bucket})" if observed.queries.bucket else ""))
    lines.append(f"evidence: {estimate.intervals} intervals used, {estimate.dropped} left out (gaps, no ready replica "
                 f"or no request), {estimate.days:.1f} days; load per replica "
                 f"{_number(estimate.load_min, '-')} to {_number(estimate.load_max, '-')}"
                 + (f"; {estimate.beyond} interval(s) above the recommendation"
                    if estimate.recommended is not None else ""))
    lines += [f"query {name}: {query}" for name, query in (
        ("demand", observed.queries.demand), ("ready replicas", observed.queries.replicas),
        ("good requests", observed.queries.good), ("all requests", observed.queries.total))]
    return "\n".join(lines) + "\n"


def _number(value: float | None, otherwise: str) -> str:
    return otherwise if value is None else f"{value:.4g}"


def plot(estimate: capacity.Estimate, slo: clinicalslo.ClinicalSLO, observed: Observed, path: pathlib.Path) -> None:
    """The latency SLI of each interval against its load per replica, the monotone fit, the target
    and the knee with its band (needs the plot extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load, share = observed.load, observed.good_share
    shown = np.isfinite(load) & np.isfinite(share)
    figure, axis = plt.subplots(figsize=(9, 5.5))
    axis.scatter(load[shown], share[shown] * 100, s=6, alpha=0.35, color="#6b6b6b", lw=0, label="one interval")
    if estimate.curve:
        xs, ys = zip(*estimate.curve, strict=True)
        axis.step(xs, np.asarray(ys) * 100, where="mid", color="#1f77b4", lw=1.8, label="monotone fit")
    axis.axhline(estimate.target * 100, color="#d62728", lw=1.0, ls="--", label=f"objective {estimate.target * 100:g}%")
    if estimate.recommended is not None:
        if estimate.low is not None or estimate.high is not None:
            axis.axvspan(estimate.low if estimate.low is not None else float(np.nanmin(load[shown])),
                         estimate.high if estimate.high is not None else float(np.nanmax(load[shown])),
                         color="#f4c542", alpha=0.25, lw=0, label="band (5-95%)")
        axis.axvline(estimate.recommended, color="#2ca02c", lw=1.6,
                     label=f"knee: perReplica {estimate.recommended:.4g}")
    elif estimate.at_least is not None:
        axis.axvline(estimate.at_least, color="#2ca02c", lw=1.6, ls=":",
                     label=f"knee not observed: at least {estimate.at_least:.4g}")
    axis.axvline(slo.spec.capacity.per_replica, color="black", lw=1.0, ls="-.",
                 label=f"declared perReplica {slo.spec.capacity.per_replica:g}")
    axis.set_xlabel("load per ready replica (indicators.demand / ready replicas)")
    axis.set_ylabel("requests within the latency threshold (%)")
    axis.set_title(f"{slo.metadata.namespace}/{slo.metadata.name}: latency SLI against load per replica")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------------- in the reconcile


PENDING = "Pending"
"""The outcome before the first recommendation is learned."""


def fingerprint(spec: clinicalslo.ClinicalSLOSpec) -> str:
    """A digest of what a recommendation is learned from: the target, demand, the latency indicator
    and objective. perReplica itself is not in it: the recommendation does not depend on it."""
    latency, indicators = spec.objectives.latency, spec.indicators
    parts = (spec.target_ref.kind, spec.target_ref.name, indicators.demand, indicators.latency_histogram or "",
             indicators.latency_good or "", (indicators.total or "") if indicators.latency_good else "",
             f"{latency.percentile!r}/{latency.threshold_seconds!r}" if latency is not None else "")
    return f"{zlib.crc32(chr(31).join(parts).encode()):08x}"


def stagger(namespace: str, name: str) -> int:
    """Seconds a ClinicalSLO never learned waits before its first learn: fixed by its name."""
    return zlib.crc32(f"{namespace}/{name}".encode()) % STAGGER_SECONDS


def refresh(resource: clinicalslo.ClinicalSLO, ports_: cycle.Ports, memory: cycle.Memory,
            previous: clinicalslo.CapacityStatus | None, surges: Sequence[calendar.Window], lookahead: int,
            now: int, started: float) -> clinicalslo.CapacityStatus | None:
    """This cycle's ``status.capacity``: learned again when due, else carried over from ``previous``,
    with the perReplica the planner uses (``capacity.choose``). None without a latency objective.
    Raises nothing: a failure to learn is kept in the status."""
    spec = resource.spec
    if spec.objectives.latency is None:
        return None
    digest = fingerprint(spec)
    changed = previous is not None and previous.fingerprint != digest
    kept = previous if previous is not None and not changed else None
    if memory.capacity_first is None:
        memory.capacity_first = now + stagger(resource.metadata.namespace, resource.metadata.name)
    if kept is None:
        kept = clinicalslo.CapacityStatus(outcome=PENDING, fingerprint=digest, message=(
            "the latency objective's indicators changed: relearning" if changed else
            f"first learned after {events_.timestamp(memory.capacity_first)} (staggered by name)"))
    if capacity.due(now, learned_at=_epoch(kept.learned_at), attempted_at=_epoch(kept.attempted_at),
                    failed=kept.error is not None or kept.outcome not in _LEARNED,
                    first=now if changed else memory.capacity_first):
        kept = _learn_within_budget(resource, ports_, kept, now, started)
    declared = spec.capacity.per_replica
    surge = next((window.surge for window in surges
                  if window.in_effect(series.from_epoch(now), dt.timedelta(seconds=lookahead))), None)
    chosen = capacity.choose(declared, spec.capacity.per_replica_from == clinicalslo.PerReplicaFrom.LEARNED,
                             kept.outcome, kept.recommended_per_replica, kept.at_least, surge)
    return kept.model_copy(update={
        "declared_per_replica": declared, "effective_per_replica": chosen.per_replica,
        "source": clinicalslo.PerReplicaFrom(chosen.source), "reason": chosen.reason})


_LEARNED = {str(outcome) for outcome in capacity.Outcome}
"""Outcomes of a finished estimate (anything else is Pending or why learning failed)."""


def _epoch(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return series.to_epoch(events_.parse_time(text))
    except ValueError:
        return None  # unreadable: as if never learned


def _learn_within_budget(resource: clinicalslo.ClinicalSLO, ports_: cycle.Ports,
                         kept: clinicalslo.CapacityStatus, now: int, started: float) -> clinicalslo.CapacityStatus:
    """Learn now if the cycle's budget is not spent and a FITS slot is free; else ``kept`` (still due).
    Never waits for a slot: learning is daily, and a wait here would delay this cycle's scaling."""
    if ports_.clock() - started > cycle.BUDGET_SECONDS:
        log.info("perReplica not learned this cycle: the cycle spent its %gs budget", cycle.BUDGET_SECONDS)
        return kept
    if not cycle.FITS.acquire(blocking=False):
        log.info("perReplica not learned this cycle: other cycles hold every FITS slot")
        return kept
    try:
        return _learn(resource, ports_.metrics, kept, now)
    finally:
        cycle.FITS.release()


def _learn(resource: clinicalslo.ClinicalSLO, metrics: ports.Metrics, kept: clinicalslo.CapacityStatus,
           now: int) -> clinicalslo.CapacityStatus:
    attempted = events_.timestamp(now)
    try:
        _, found = estimate(metrics, resource, now, SINCE, STEP)
    except ports.MetricsError as error:
        return _failed(kept, error.reason, str(error), attempted)
    except Empty as error:
        return _failed(kept, "EmptyResult", str(error), attempted)
    except ValueError as error:
        return _failed(kept, "InvalidQuery", str(error), attempted)
    except Exception as error:  # noqa: BLE001 - a bug in learning must cost no cycle; it is reported, not hidden
        log.exception("learning perReplica failed")
        return _failed(kept, "LearnFailed", f"{type(error).__name__}: {error}", attempted)
    return clinicalslo.CapacityStatus(
        outcome=str(found.outcome), message=found.reason[:2048], recommended_per_replica=found.recommended,
        low=found.low, high=found.high, at_least=found.at_least, learned_at=attempted, attempted_at=attempted,
        fingerprint=kept.fingerprint)


def _failed(kept: clinicalslo.CapacityStatus, reason: str, message: str, attempted: str) -> clinicalslo.CapacityStatus:
    """Learning failed: the earlier recommendation (if any) stays, and the status says why."""
    log.warning("perReplica not learned (%s): %s", reason, message)
    text = f"{reason}: {message}"[:2048]
    if kept.outcome in _LEARNED:
        return kept.model_copy(update={"error": f"{text}; keeping the recommendation learned at {kept.learned_at}"[:2048],
                                       "attempted_at": attempted})
    return kept.model_copy(update={"outcome": reason[:64], "message": message[:2048], "error": text,
                                   "attempted_at": attempted})
