"""Draw docs/architecture.png: how one ClinicalSLO's decision flows (service/cycle.py's eight steps).

Run from the repository root: python docs/architecture.py (needs matplotlib, the plot extra).
The picture is committed; rerun this after changing the steps so that the README stays true.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = pathlib.Path(__file__).with_name("architecture.png")

STEP, INPUT, WORLD, OUTPUT, LAYER = "#dbe9f6", "#fdebd0", "#e8e8e8", "#d5f0dd", "#f7f7f7"

STEPS = [
    ("1  floors", "minReplicas and the surges\nin effect within the lookahead\n(spec and calendar only)", ""),
    ("2  target", "read the workload and the HPA\n(or KEDA's) that scales it", "API server: read"),
    ("3  records", "settle status.originals: keep\nwhat this cycle writes,\nput back the rest", "API server: restore"),
    ("4  hold the floor", "Active: raise to the floor\nbefore any metric is read", "API server: write"),
    ("5  observe", "demand history, forecast\n(cached fit), burn rates", "Prometheus: query_range"),
    ("6  plan", "largest of schedule, forecast,\nreactive, minimum; no forecast:\nno scale-down", ""),
    ("7  apply", "Active: HPA minReplicas or\nreplicas; field manager\nhealthscale, uid precondition",
     "API server: write"),
    ("8  report", "status and conditions,\nEvents, metrics: the\nexplanation with numbers", "API server: status, Events"),
]


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, title: str, body: str, colour: str,
        size: float = 9.5, uses: str = "") -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=colour, edgecolor="#4a4a4a", linewidth=1.1))
    if body:
        ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=size + 1, fontweight="bold")
        ax.text(x + w / 2, y + h - 0.58, body, ha="center", va="top", fontsize=size - 1, linespacing=1.35)
    else:
        ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=size + 1, fontweight="bold")
    if uses:
        ax.text(x + w / 2, y + 0.15, uses, ha="center", va="bottom", fontsize=size - 1, color="#8a4b08",
                style="italic")


def arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], label: str = "",
          style: str = "-|>", colour: str = "#333333", dashed: bool = False, rad: float = 0.0) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, linewidth=1.3, color=colour,
                                 linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}"))
    if label:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, label, fontsize=8.5, color=colour,
                ha="left", va="center")


def main() -> None:
    fig, ax = plt.subplots(figsize=(16, 9.6), dpi=110)
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 9.6)
    ax.axis("off")
    ax.text(8, 9.35, "healthscale: how one ClinicalSLO's decision is made, every forecast.step",
            ha="center", va="center", fontsize=15, fontweight="bold")
    ax.text(8, 8.97, "runtime/ (Kopf) calls service/cycle.py once per cycle, and at once when the ClinicalSLO or a "
            "SurgeSchedule that selects it changes; the service reaches the world only through ports",
            ha="center", va="center", fontsize=9.5, color="#444444")

    # The service layer: eight steps in two rows.
    ax.add_patch(FancyBboxPatch((2.55, 3.05), 10.9, 5.55, boxstyle="round,pad=0.02,rounding_size=0.2",
                                facecolor=LAYER, edgecolor="#9a9a9a", linewidth=1, linestyle="--"))
    ax.text(2.7, 8.45, "service/cycle.py (pure over ports)", fontsize=9, color="#555555", va="center")
    w, h = 2.45, 1.95
    xs = [2.75 + i * 2.68 for i in range(4)]
    top, bottom = 6.2, 3.35
    for i, (title, body, uses) in enumerate(STEPS[:4]):
        box(ax, xs[i], top, w, h, title, body, STEP, uses=uses)
    for i, (title, body, uses) in enumerate(STEPS[4:]):
        box(ax, xs[i], bottom, w, h, title, body, STEP, uses=uses)
    for i in range(3):
        arrow(ax, (xs[i] + w, top + h / 2), (xs[i + 1], top + h / 2))
        arrow(ax, (xs[i] + w, bottom + h / 2), (xs[i + 1], bottom + h / 2))
    # 4 -> 5: down and back to the left.
    arrow(ax, (xs[3] + w / 2, top), (xs[0] + w / 2, bottom + h), rad=-0.08)

    # Inputs.
    box(ax, 0.15, 6.95, 2.05, 1.2, "ClinicalSLO", "spec: objective, demand\nPromQL, perReplica, mode", INPUT, 9)
    box(ax, 0.15, 5.45, 2.05, 1.2, "SurgeSchedules", "cron windows, date\nranges, lead, floor", INPUT, 9)
    arrow(ax, (2.2, 7.55), (xs[0], top + h * 0.72))
    arrow(ax, (2.2, 6.05), (xs[0], top + h * 0.3))

    # Outputs.
    box(ax, 13.75, 6.85, 2.1, 1.3, "status", "desired, reason,\nexplanation, conditions,\noriginals", OUTPUT, 9)
    box(ax, 13.75, 5.2, 2.1, 1.3, "Events", "ScaledUp, RaisedFloor,\nScaleRefused, ...", OUTPUT, 9)
    box(ax, 13.75, 3.55, 2.1, 1.3, "/metrics", "healthscale_* gauges,\ncycle seconds, delay", OUTPUT, 9)
    for y in (7.5, 5.85, 4.2):
        arrow(ax, (xs[3] + w, bottom + h / 2), (13.75, y), colour="#2e7d32")

    # Ports and adapters, and the world behind them.
    box(ax, 2.75, 1.75, 5.13, 0.8, "ports.Workloads / ports.Records", "", "#ffffff", 9)
    box(ax, 8.11, 1.75, 5.13, 0.8, "ports.Metrics", "", "#ffffff", 9)
    box(ax, 2.75, 0.95, 5.13, 0.6, "adapters/kube.py (timeouts, no retries)", "", "#ffffff", 8.5)
    box(ax, 8.11, 0.95, 5.13, 0.6, "adapters/prometheus.py (circuit breaker)", "", "#ffffff", 8.5)
    box(ax, 2.75, 0.1, 5.13, 0.65, "Kubernetes API server", "", WORLD, 10)
    box(ax, 8.11, 0.1, 5.13, 0.65, "Prometheus", "", WORLD, 10)
    grey = "#6a6a6a"
    arrow(ax, (5.3, 3.05), (5.3, 2.55), style="<|-|>", colour=grey)
    arrow(ax, (10.67, 3.05), (10.67, 2.55), style="<|-|>", colour=grey)
    ax.text(5.45, 2.8, "workloads, HPAs, status, Events", fontsize=8.5, color=grey, va="center")
    ax.text(10.82, 2.8, "query_range, burn windows", fontsize=8.5, color=grey, va="center")
    ax.text(0.2, 2.2, "A failure at any step\nis a condition and an\nEvent, never lost\ncapacity: the floor is\n"
            "held before metrics,\nno forecast never\nscales down.", fontsize=8.5, va="center", color="#444444")
    fig.savefig(OUT, bbox_inches="tight", facecolor="white")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
