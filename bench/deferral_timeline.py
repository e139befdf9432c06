"""Deferring non-critical work makes room for a surge (issue 16, part 4): the timelines that
tests/integration/test_deferral_room.py records, as BENCHMARKS.md's section and a figure.

The test runs two identical worlds side by side on the dev cluster, each a region whose only node
has room for a fixed number of pods, half held by a deferrable report generator; one world's
SurgeSchedule has ``spec.defer``, the other's not. It writes every pod's timeline and both
Deployments' replicas over time to ``out/deferral-room.json``. This script reads that file:

    flock /tmp/healthscale-itest.lock env HEALTHSCALE_KEEP_DEVCLUSTER=1 \\
        .venv/bin/python -m pytest tests/integration/test_deferral_room.py -q -p no:randomly
    .venv/bin/python bench/deferral_timeline.py --benchmarks     # or --markdown FILE

Times are seconds relative to the surge window's opening (negative: before it).
"""

from __future__ import annotations

import pathlib
import sys
import textwrap
from typing import Any

import timeline_section  # bench/: the shared command line and section placement

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "out" / "deferral-room.json"
FIGURE = ROOT / "docs" / "bench" / "deferral-room.png"
HEADER = "## Deferring non-critical work: room for a surge (issue 16)"
AFTER = "## Node warm-up on a real Karpenter (issue 13)"
"""A new section goes after this one (bench/run.py keeps them in this order)."""
TEST_COMMAND = ("flock /tmp/healthscale-itest.lock env HEALTHSCALE_KEEP_DEVCLUSTER=1 \\\n"
                "        .venv/bin/python -m pytest tests/integration/test_deferral_room.py -q -p no:randomly")
WIDTH = 104
TITLES = {"with": "with spec.defer", "without": "without spec.defer"}


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False)


def _rel(value: float | None, origin: float) -> str:
    return "never" if value is None else f"{value - origin:+.0f}"


def _span(values: list[float]) -> str:
    if not values:
        return "n/a"
    low, high = f"{min(values):.0f}", f"{max(values):.0f}"
    return low if low == high else f"{low}-{high}"


def _first(samples: list[list[float]], replicas: int, after: float = 0.0) -> float | None:
    """When spec.replicas was first seen at ``replicas`` (at or after ``after``)."""
    return next((at for at, spec, _ in samples if spec == replicas and at >= after), None)


def _first_ready(samples: list[list[float]], ready: int, after: float = 0.0) -> float | None:
    """When ``ready`` pods were first seen Ready (at or after ``after``)."""
    return next((at for at, _, count in samples if count >= ready and at >= after), None)


def _alive_at(world: dict[str, Any], app: str, moment: float) -> list[dict[str, Any]]:
    return [pod for pod in world["pods"].values() if pod["app"] == app
            and pod["created"] <= moment and (pod["gone"] is None or pod["gone"] > moment)]


def surge_pods(world: dict[str, Any], base: int) -> list[dict[str, Any]]:
    """The target's pods the surge added: those beyond the first ``base`` it had."""
    targets = sorted((pod for pod in world["pods"].values() if pod["app"] == "ehr-api"), key=lambda pod: pod["created"])
    return targets[base:]


def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per world: when things happened relative to the window's opening."""
    rows = []
    for name in ("with", "without"):
        world = data["worlds"][name]
        origin, end = world["windowOpen"], world["windowEnd"]
        target, batch = world["replicas"]["ehr-api"], world["replicas"]["report-generator"]
        raised = _first(target, data["floor"])
        deferred = _first(batch, 0)
        restored = _first(batch, data["share"], after=deferred) if deferred is not None else None
        new = surge_pods(world, data["base"])
        ready = [pod["ready"] for pod in new]
        # Pending: from creation until scheduled, or until deleted (or the record's end) unscheduled.
        pending = [(pod["scheduled"] or pod["gone"] or end) - pod["created"] for pod in new]
        through = [pod for pod in _alive_at(world, "ehr-api", origin)
                   if pod["scheduled"] is None or pod["scheduled"] >= end]
        rows.append({
            "world": TITLES[name], "raised": _rel(raised, origin),
            "deferred": _rel(deferred, origin) if world["defer"] else "n/a",
            "pending": _span(pending),
            "allReady": "never" if not ready or None in ready else _rel(max(ready), origin),
            "readyAtOpen": sum(1 for pod in _alive_at(world, "ehr-api", origin) if pod["ready"] and pod["ready"] < origin),
            "pendingThrough": len(through),
            "restored": _rel(restored, end) if world["defer"] else "n/a",
            "batchReady": (_rel(_first_ready(batch, data["share"], after=restored), end)
                           if world["defer"] and restored is not None else "n/a"),
        })
    return rows


def _reach(data: dict[str, Any]) -> int:
    """The ClinicalSLO's reach (startup + one step): recorded by the test, else computed as it does."""
    return int(data.get("reachSeconds", data["startupSeconds"] + data["stepSeconds"]))


def _shown(path: pathlib.Path) -> str:
    """``path`` as the Markdown refers to it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def markdown(data: dict[str, Any], figure: pathlib.Path) -> list[str]:
    floor, share, base = data["floor"], data["share"], data["base"]
    reach, cycle = _reach(data), data["deferCycleSeconds"]
    lookahead = reach + cycle
    lines = [
        HEADER, "",
        *_wrap(f"Measured {data['measured']} with (the test writes `out/deferral-room.json`, the script "
                       f"this section and `{_shown(figure)}`):"), "",
        "    " + TEST_COMMAND,
        "    .venv/bin/python bench/deferral_timeline.py --benchmarks", "",
        *_wrap(
        f"Two worlds side by side on the dev cluster under one `healthscale run`, identical but for the "
        f"SurgeSchedule's `spec.defer`: a region whose only node (static KWOK, tainted for the test) has room for "
        f"{data['room']} pods of 1 CPU; a deferrable `report-generator` Deployment holding {share} of them; the "
        f"clinical target `ehr-api` (ClinicalSLO mode Active, criticality critical, residency in the region, "
        f"minReplicas {base}, `startupSeconds: {data['startupSeconds']}`, forecast step {data['stepSeconds']} s) "
        f"at {base}; and a date-range surge with floor {floor}, leadTime {data['leadSeconds']} s and a "
        f"{data['windowSeconds']} s window. The ClinicalSLO's plan raises `ehr-api` at its first cycle within its "
        f"reach (startup + one step = {reach} s, no node provisioning) of `start - leadTime`. The SurgeSchedule "
        f"selects that ClinicalSLO, so the deferral loop (every {cycle} s) shrinks the report generator to 0 from "
        f"that reach plus one deferral cycle ({lookahead} s) before `start - leadTime`, i.e. from "
        f"{-(lookahead + data['leadSeconds'])} s, and puts it back after the window. Times are seconds from the "
        "window's opening (restore: from its end)."), "",
        f"| | replicas raised to {floor} | report generator deferred | surge pods Pending (s) "
        f"| all {floor} Ready at | Ready at the opening | Pending all through the window "
        "| report generator put back (from the end) | its pods Ready again (from the end) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary(data):
        lines.append(f"| {row['world']} | {row['raised']} | {row['deferred']} | {row['pending']} | "
                     f"**{row['allReady']}** | {row['readyAtOpen']} of {floor} | **{row['pendingThrough']}** | "
                     f"{row['restored']} | {row['batchReady']} |")
    lines += [
        "", f"![ehr-api and report generator pods over time, with and without deferral]({_shown(figure)})", "",
        *_wrap(
        "With deferral the room is free when the plan asks for the surge's pods: deferral starts a lookahead (the "
        "longest reach of the ClinicalSLOs the schedule selects) plus one deferral cycle before `start - leadTime`, "
        "so its first cycle in force comes no later than the plan's raise, and the surge's pods are scheduled at "
        "once and Ready before the window opens (when deferral started only at `start - leadTime`, they waited "
        "Pending from the raise until then: at least `startupSeconds` each, 39 s each in the first measurement). "
        "A schedule that selects no "
        "ClinicalSLO has no lookahead: its deferral starts at `start - leadTime`. Without deferral the same pods "
        "are asked for at the same moment and stay Pending through the "
        "whole window, until the floor drops after it and they are removed: the report generator holds the region's room, and the residency's node affinity keeps "
        "`ehr-api` out of the others. After the window the report generator is written back to its recorded size; its pods start once "
        "`ehr-api` drops back to minReplicas at the ClinicalSLO's next cycle (here `scaleDown.stabilizationSeconds: "
        "0`; with the default 600 s they would wait that long for the room)."), "",
    ]
    return lines


def plot(data: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {"pending": "#dd8452", "starting": "#f2c45a", "ready": "#55a868", "report generator": "#8c8c8c",
               "report generator pending": "#cccccc"}
    figure, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]})
    origins = {name: world["windowOpen"] for name, world in data["worlds"].items()}
    last = max(max([pod["ready"] or 0 for pod in world["pods"].values()] + [world["windowEnd"]]) - world["windowOpen"]
               for world in data["worlds"].values()) + 15
    first = min(min(pod["created"] for pod in world["pods"].values()) - world["windowOpen"]
                for world in data["worlds"].values()) - 5
    for axis, name in zip(axes[:2], ("with", "without")):
        world = data["worlds"][name]
        origin = origins[name]
        end = origin + last
        rows: list[tuple[str, list[tuple[float, float, str]]]] = []
        targets = sorted((pod for pod in world["pods"].values() if pod["app"] == "ehr-api"), key=lambda pod: pod["created"])
        for index, pod in enumerate(targets):
            stop = pod["gone"] or end
            scheduled = min(pod["scheduled"] or stop, stop)
            ready = min(pod["ready"] or stop, stop)
            label = f"ehr-api {index + 1}" + (" (surge)" if index >= data["base"] else "")
            rows.append((label, [(pod["created"], scheduled, "pending"), (scheduled, ready, "starting"),
                                 (ready, stop, "ready")]))
        batch = sorted((pod for pod in world["pods"].values() if pod["app"] == "report-generator"),
                       key=lambda pod: pod["created"])
        for index, pod in enumerate(batch):
            stop = pod["gone"] or end
            scheduled = min(pod["scheduled"] or stop, stop)
            rows.append((f"report gen. {index + 1}", [(pod["created"], scheduled, "report generator pending"),
                                                      (scheduled, stop, "report generator")]))
        for y, (_, spans) in enumerate(reversed(rows)):
            for start, stop, kind in spans:
                if stop > start:
                    axis.barh(y, stop - start, left=start - origin, color=colours[kind], height=0.7)
        axis.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=7)
        _window(axis, world, data)
        axis.set_title(TITLES[name], fontsize=10)
    replicas = axes[2]
    styles = {"with": "-", "without": "--"}
    for name in ("with", "without"):
        world = data["worlds"][name]
        origin = origins[name]
        for app, colour in (("ehr-api", "#4c72b0"), ("report-generator", "#8c8c8c")):
            samples = world["replicas"][app]
            times = [at - origin for at, _, _ in samples] + [last]
            values = [spec for _, spec, _ in samples] + [samples[-1][1]]
            replicas.step(times, values, where="post", color=colour, linestyle=styles[name],
                          label=f"{app} replicas, {TITLES[name]}")
    _window(replicas, data["worlds"]["with"], data)
    replicas.set_ylabel("spec.replicas", fontsize=8)
    replicas.set_ylim(-0.5, data["room"] + 4)  # the legend above the lines
    replicas.set_yticks(range(0, data["room"] + 1, 3))
    replicas.legend(fontsize=7, loc="upper left", ncol=2, frameon=False)
    replicas.set_xlim(first, last)
    replicas.set_xlabel(f"seconds from the window's opening; shaded: the window; dotted: start - leadTime "
                        f"({data['leadSeconds']} s);\ndash-dot: deferral starts (reach + one deferral cycle = "
                        f"{_reach(data) + data['deferCycleSeconds']} s before start - leadTime)", fontsize=9)
    figure.legend(handles=[Patch(color=colour, label=label) for label, colour in colours.items()],
                  loc="lower center", ncol=5, fontsize=8, frameon=False)
    figure.suptitle(f"Room for a surge: a region of {data['room']} pods, a report generator holding {data['share']}, "
                    f"a surge floor of {data['floor']}", fontsize=11)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _window(axis: Any, world: dict[str, Any], data: dict[str, Any]) -> None:
    axis.axvspan(0, world["windowEnd"] - world["windowOpen"], color="#4c72b0", alpha=0.12, linewidth=0)
    axis.axvline(0, color="black", linewidth=1.2)
    axis.axvline(-data["leadSeconds"], color="black", linestyle=":", linewidth=1)
    axis.axvline(-data["leadSeconds"] - _reach(data) - data["deferCycleSeconds"], color="black", linestyle="-.",
                 linewidth=1)


def main() -> int:
    return timeline_section.main(__doc__ or "", DEFAULT_INPUT, FIGURE, HEADER, AFTER, plot, markdown)


if __name__ == "__main__":
    sys.exit(main())
