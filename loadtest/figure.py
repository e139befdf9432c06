"""The load test's picture and printed figures (``loadtest.run``'s plot-data.json and results)."""

from __future__ import annotations

import pathlib
from typing import Any

COLOURS = {"operator": "#1f77b4", "hpa-60": "#ff7f0e", "hpa-70": "#d62728"}


def draw(data: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = data["replay_start"]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    demand_axis, replicas_axis, compliance_axis, knee_axis = axes.flat
    for name, found in data["pools"].items():
        colour = COLOURS.get(name, "black")
        times, values = found["demand"]
        demand_axis.plot([at - start for at in times], values, color=colour, lw=1.2, label=f"{name} pool")
        times, values = found["ready"]
        replicas_axis.plot([at - start for at in times], values, color=colour, lw=1.6, label=f"{name}: ready")
        # The desired count in effect at the replay's start, then every change during it.
        before = [value for at, value in found["desired"] if at <= start]
        desired = [(0.0, before[-1])] if before else []
        desired += [(at - start, value) for at, value in found["desired"] if start < at <= data["replay_end"]]
        if desired:
            xs, ys = zip(*desired, strict=True)
            replicas_axis.step([*xs, data["replay_end"] - start], [*ys, ys[-1]], where="post", color=colour,
                               lw=1.0, ls="--", label=f"{name}: desired")
        times, values = found["compliance"]
        compliance_axis.plot([at - start for at in times], [value * 100 for value in values], color=colour, lw=1.2,
                             label=name)
    for axis in (demand_axis, replicas_axis, compliance_axis):
        axis.axvline(data["shift_at"] - start, color="grey", ls=":", lw=1.0)
        axis.set_xlabel("seconds into the replayed morning (call centre 07:30-10:30, compressed)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    demand_axis.set_ylabel("requests/s (rate over 15 s)")
    demand_axis.set_title("demand: the same users on every pool")
    replicas_axis.set_ylabel("replica processes")
    replicas_axis.set_title("process count (dotted: 09:00 shift change)")
    compliance_axis.axhline(data["target"], color="black", ls="--", lw=1.0, label=f"objective {data['target']:g}%")
    compliance_axis.set_ylabel("% requests under 0.25 s (15 s windows)")
    lowest = min((value * 100 for found in data["pools"].values() for value in found["compliance"][1]), default=0.0)
    compliance_axis.set_ylim(max(0.0, min(90.0, lowest - 3)), 100.5)
    compliance_axis.set_title("latency SLI")
    sweep = data["sweep"]
    points = [(load, share * 100) for load, share in zip(sweep["load"], sweep["share"], strict=True)
              if load is not None and share is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        knee_axis.scatter(xs, ys, s=6, color="#6b6b6b", alpha=0.5, lw=0, label="one second of the sweep (20 s rates)")
    if sweep["curve"]:
        xs, ys = zip(*sweep["curve"], strict=True)
        knee_axis.step(xs, [value * 100 for value in ys], where="mid", color="#1f77b4", lw=1.6, label="monotone fit")
    knee_axis.axhline(data["target"], color="black", ls="--", lw=1.0)
    knee_axis.axvline(data["true_knee"], color="black", lw=1.4, label=f"true knee {data['true_knee']:.1f} (Erlang C)")
    if data["learned"] is not None:
        knee_axis.axvline(data["learned"], color="#2ca02c", lw=1.6, label=f"learned perReplica {data['learned']:.1f}")
        if data["low"] is not None and data["high"] is not None:
            knee_axis.axvspan(data["low"], data["high"], color="#2ca02c", alpha=0.15, lw=0, label="band (5-95%)")
    knee_axis.set_xlabel("load per ready replica (requests/s)")
    knee_axis.set_ylabel("% requests under 0.25 s")
    knee_axis.set_title("healthscale capacity on the sweep")
    knee_axis.grid(alpha=0.3)
    knee_axis.legend(fontsize=8, loc="lower left")
    figure.suptitle("healthscale load test: 2-slot replicas (exp. 50 ms service), objective 95% under 0.25 s")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summary(results: dict[str, Any]) -> str:
    learned = results["learned"]
    lines = [f"true knee (Erlang C, 2 slots, exp. 50 ms, 95% under 0.25 s): {results['true_knee']:.2f} req/s per replica "
             f"(simulated: {results['simulated_knee']:.2f})",
             f"learned perReplica: {learned['recommended']} ({learned['outcome']}; band {learned['low']} to "
             f"{learned['high']}; {learned['intervals']} intervals)" + (
                 f": {results['knee_error'] * 100:+.1f}% from the true knee" if results["knee_error"] is not None else ""),
             f"shift-change floor: {results['floor']} replicas from {results['shift_change']} UTC"]
    for name, value in results["compliance"].items():
        lines.append(f"{name}: {value * 100:.2f}% of requests under 0.25 s over the replay "
                     f"({results['replica_seconds'][name]:.0f} replica-seconds)")
    for label, pair in results["burn_rates"].items():
        lines.append(f"latency burn rate {label}: status {pair['status']}, from the raw histogram {pair['prometheus']}")
    return "\n".join(lines)
