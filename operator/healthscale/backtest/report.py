"""Backtest output: the plan CSV, the comparison table, the forecast's calibration, what deferral held
back (spec.defer) and the PNG timeline."""

from __future__ import annotations

import csv
import datetime as dt
import pathlib
from collections.abc import Sequence

import numpy as np

from healthscale.backtest import calibration as calibration_, deferral as deferral_, replay

ENGINE = "healthscale"
HPA = "reactive HPA"

PLAN_COLUMNS = (
    "timestamp", "demand", "forecast", "forecast_upper", "desired_replicas", "ready_replicas",
    "unmet_demand", "reason", "surge", "model", "guards",
    "hpa_desired_replicas", "hpa_ready_replicas", "oracle_replicas", "reserved_replicas",
)


DEFERRED_COLUMN = "deferred_replicas"
"""Appended to PLAN_COLUMNS with a deferral report: the deferrable replicas held back during the
interval, time weighted as ready_replicas is."""


def write_plan(result: replay.Result, path: pathlib.Path, held: deferral_.Deferred | None = None) -> None:
    """One row per scored interval: the engine's plan, with the HPA and oracle beside it (and, with
    ``held``, the replicas deferral held back)."""
    engine = result.runs[ENGINE]
    hpa = result.runs.get(HPA)
    deferred = None if held is None else held.per_interval(result.times, result.trace.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PLAN_COLUMNS + ((DEFERRED_COLUMN,) if deferred is not None else ()))
        for row, epoch in enumerate(result.times):
            choice = engine.choices[row]
            served = engine.ready[row] * result.policy.per_replica
            writer.writerow([
                replay.local_time(int(epoch)).isoformat(),
                f"{result.demand[row]:g}",
                "" if np.isnan(choice.forecast) else f"{choice.forecast:.4g}",
                "" if np.isnan(choice.forecast_upper) else f"{choice.forecast_upper:.4g}",
                int(engine.desired[row]),
                f"{engine.ready[row]:.3f}",
                f"{max(0.0, result.demand[row] - served):.4g}",
                choice.reason,
                choice.surge,
                choice.model,
                choice.note,
                "" if hpa is None else int(hpa.desired[row]),
                "" if hpa is None else f"{hpa.ready[row]:.3f}",
                int(result.oracle[row]),
                choice.reserved,
                *(() if deferred is None else (f"{deferred[row]:.3f}",)),
            ])


def table(result: replay.Result) -> str:
    """The comparison table as aligned text (also valid Markdown); with node provisioning, the
    node room each policy paid for too."""
    nodes = result.policy.node_provisioning_seconds > 0
    header = ("policy", "unmet demand %", "breach %", "replica-hours", "vs oracle", *(("node room-hours",) if nodes else ()))
    rows = [
        (score.name, f"{score.unmet_percent:.2f}", f"{score.breach_percent:.1f}", f"{score.replica_hours:,.0f}",
         f"{score.relative_replica_hours:.2f}x", *((f"{score.room_hours:,.0f}",) if nodes else ()))
        for score in result.scores()
    ]
    return _aligned(header, rows, left=1)


def _aligned(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], left: int) -> str:
    """Rows as aligned text (also valid Markdown): the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(str(line[column])) for line in (header, *rows)) for column in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(
            cell.ljust(width) if column < left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths))
        ) + " |"

    separator = "|" + "|".join(("-" * (width + 1) + ":") if column >= left else ("-" * (width + 2))
                               for column, width in enumerate(widths)) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


NO_BURN = "duringBurn is not modelled: a trace has no SLI, so only surge windows (with their lead time) are counted"
NEEDS_REPLICAS = ("the deferral report (spec.defer) needs --deferrable-replicas N: the usual replicas of the "
                  "workloads spec.defer selects, summed")


def _when(moment: dt.datetime) -> str:
    return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M")


def deferral(held: deferral_.Deferred) -> str:
    """What spec.defer held back: one row per surge window (hours in force credited to it, and the
    replica-hours deferred), a total row (the union), the total per surge, and what is not modelled."""
    header = ("surge", "start", "effective start", "end", "hours deferred", "replica-hours deferred")
    rows = [(item.window.surge, _when(item.window.start), _when(item.window.effective_start), _when(item.window.end),
             f"{item.hours:.2f}", f"{item.replica_hours:,.1f}") for item in held.windows]
    rows.append(("total", "", "", "", f"{held.hours:.2f}", f"{held.replica_hours:,.1f}"))
    surges = "; ".join(f"{name} {hours:.2f} h, {replica_hours:,.1f} replica-h"
                       for name, (hours, replica_hours) in held.by_surge().items())
    return "\n".join([
        f"deferral (spec.defer) from {_when(held.begin)} to {_when(held.end)}: {held.replicas} deferrable "
        f"replicas shrink to {held.deferred_to}, {held.held_back} held back from each window's effective start "
        "(start - leadTime) to its end; overlapping windows are counted once, for the one that ends last",
        "",
        _aligned(header, rows, left=4),
        "",
        f"per surge: {surges or 'no surge window in the replayed span'}",
        NO_BURN,
    ])


def warm_up(result: replay.Result) -> str | None:
    """What reserving node room ahead of need changed, when nodes take time (else None)."""
    scores = {score.name: score for score in result.scores()}
    if result.policy.node_provisioning_seconds <= 0 or replay.NO_WARM_UP not in scores:
        return None
    warm, cold = scores[ENGINE], scores[replay.NO_WARM_UP]
    held = sum(1 for choice in result.runs[ENGINE].choices if choice.reserved > 0)
    return (f"node warm-up ({result.policy.node_provisioning_seconds}s to add a node): unmet demand "
            f"{warm.unmet_percent:.2f}% with, {cold.unmet_percent:.2f}% without; intervals in breach "
            f"{warm.breach_percent:.1f}% vs {cold.breach_percent:.1f}%; node room-hours {warm.room_hours:,.0f} vs "
            f"{cold.room_hours:,.0f} ({_ratio(warm.room_hours, cold.room_hours)}); room reserved in "
            f"{100 * held / max(1, len(result.runs[ENGINE].choices)):.1f}% of intervals")


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}x" if reference > 0 else "n/a"


def reasons(result: replay.Result) -> str:
    """How often each signal decided the engine's plan."""
    counts: dict[str, int] = {}
    for choice in result.runs[ENGINE].choices:
        counts[choice.reason] = counts.get(choice.reason, 0) + 1
    total = sum(counts.values()) or 1
    return ", ".join(f"{reason} {100 * count / total:.0f}%" for reason, count in sorted(counts.items(), key=lambda item: -item[1]))


def calibration(result: replay.Result) -> calibration_.Calibration:
    """How often demand exceeded the engine's forecast at its quantile, against the nominal share."""
    return calibration_.calibration(result.demand, result.forecast_quantile(), result.policy.quantile)


def plot(result: replay.Result, path: pathlib.Path, days: float = 7.0) -> None:
    """Demand, forecast band and ready capacity (engine vs reactive HPA) with surges shaded.

    Top panel: the last ``days`` of the replay. Bottom panel: the day on which the reactive HPA
    left the most demand unmet, where the difference shows best.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    engine = result.runs[ENGINE]
    hpa = result.runs.get(HPA)
    per = result.policy.per_replica
    times = np.array([replay.local_time(int(epoch)) for epoch in result.times])
    upper = np.array([choice.forecast_upper for choice in engine.choices])
    point = np.array([choice.forecast for choice in engine.choices])
    end = result.times[-1]
    panels = [(end - days * 86400, end + result.trace.step, f"last {days:g} days")]
    if hpa is not None:
        unmet = np.maximum(0.0, result.demand - hpa.ready * per)
        day_index = (result.times // 86400)
        totals: dict[int, float] = {}
        for day, value in zip(day_index.tolist(), unmet.tolist()):
            totals[day] = totals.get(day, 0.0) + value
        worst = max(totals, key=lambda day: totals[day])
        panels.append((worst * 86400, (worst + 1) * 86400, "the day the reactive HPA missed most"))
    figure, axes = plt.subplots(len(panels), 1, figsize=(13, 4.2 * len(panels)), squeeze=False)
    for axis, (begin, finish, title) in zip(axes[:, 0], panels):
        mask = (result.times >= begin) & (result.times < finish)
        if not mask.any():
            continue
        for window in result.windows:
            start, stop = window.effective_start.replace(tzinfo=None), window.end.replace(tzinfo=None)
            if stop > times[mask][0] and start < times[mask][-1]:
                axis.axvspan(max(start, times[mask][0]), min(stop, times[mask][-1]), color="#f4c542", alpha=0.18, lw=0)
        axis.fill_between(times[mask], point[mask], upper[mask], color="#6baed6", alpha=0.35, step="post",
                          label=f"forecast (median to p{result.policy.quantile * 100:g})")
        axis.step(times[mask], result.demand[mask], where="post", color="black", lw=1.0, label="demand")
        axis.step(times[mask], engine.ready[mask] * per, where="post", color="#2ca02c", lw=1.6,
                  label="ready capacity: healthscale")
        if hpa is not None:
            axis.step(times[mask], hpa.ready[mask] * per, where="post", color="#d62728", lw=1.2, ls="--",
                      label="ready capacity: reactive HPA")
        axis.set_title(f"{result.trace.path.name}: {title}" + (" (surge windows shaded)" if result.windows else ""))
        axis.set_ylabel("demand units")
        axis.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b\n%H:%M"))  # type: ignore[no-untyped-call]
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
