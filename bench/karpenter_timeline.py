"""Node warm-up on a real Karpenter (issue 13, part 2): the timelines that
tests/integration/test_karpenter_warmup.py records, as BENCHMARKS.md's section and a figure.

The test runs two identical worlds side by side on the dev cluster (Karpenter's KWOK provider, nodes
Ready a fixed time after launch), one with ``capacity.nodeProvisioningSeconds`` and one without, and
writes every pod's and node's timeline to ``out/karpenter-warmup.json``. This script reads that file:

    flock /tmp/healthscale-itest.lock env HEALTHSCALE_KEEP_DEVCLUSTER=1 HEALTHSCALE_IT_KARPENTER_NODE_SECONDS=120 \\
        .venv/bin/python -m pytest tests/integration/test_karpenter_warmup.py -q
    .venv/bin/python bench/karpenter_timeline.py --benchmarks     # or --markdown FILE

Times are seconds relative to the surge window's opening (negative: before it).
"""

from __future__ import annotations

import pathlib
import sys
import textwrap
from typing import Any

import timeline_section  # bench/: the shared command line and section placement

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "out" / "karpenter-warmup.json"
FIGURE = ROOT / "docs" / "bench" / "karpenter-warmup.png"
HEADER = "## Node warm-up on a real Karpenter (issue 13)"
TEST_COMMAND = ("flock /tmp/healthscale-itest.lock env HEALTHSCALE_KEEP_DEVCLUSTER=1 "
                "HEALTHSCALE_IT_KARPENTER_NODE_SECONDS={seconds} \\\n"
                "        .venv/bin/python -m pytest tests/integration/test_karpenter_warmup.py -q")
WIDTH = 104
TITLES = {"warm": "with warm-up", "cold": "without warm-up"}


def _new_targets(world: dict[str, Any], room: int) -> list[tuple[str, dict[str, Any]]]:
    targets = sorted(((name, pod) for name, pod in world["pods"].items() if pod["kind"] == "target"),
                     key=lambda item: item[1]["created"] or 0)
    return targets[room:]


def _rel(value: float | None, origin: float) -> str:
    return "never" if value is None else f"{value - origin:+.0f}"


def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per world: when things happened relative to the window's opening."""
    rows = []
    for name in ("warm", "cold"):
        world = data["worlds"][name]
        origin = world["windowOpen"]
        new = _new_targets(world, data["room"])
        launched = [node["created"] for node in world["nodes"].values()]
        ready_nodes = [node["ready"] for node in world["nodes"].values() if node["ready"]]
        ready = [pod["ready"] for _, pod in new]
        pending = [(pod["scheduled"] or pod["ready"] or origin) - pod["created"] for _, pod in new]
        rows.append({
            "world": TITLES[name], "provisioning": world["nodeProvisioningSeconds"],
            "reserved": _rel(world["reserved"], origin) if world["reserved"] else "none",
            "launched": _rel(min(launched), origin) if launched else "none",
            "nodesReady": _rel(max(ready_nodes), origin) if ready_nodes else "never",
            "nodes": len(world["nodes"]), "raised": _rel(world["raised"], origin),
            "lastReady": "never" if not ready or None in ready else _rel(max(ready), origin),
            "pending": f"{min(pending):.0f}-{max(pending):.0f}" if pending else "n/a",
        })
    return rows


def _shown(path: pathlib.Path) -> str:
    """``path`` as the Markdown refers to it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def markdown(data: dict[str, Any], figure: pathlib.Path) -> list[str]:
    seconds = data["nodeSeconds"]
    lines = [
        HEADER, "",
        *textwrap.wrap(f"Measured {data['measured']} with (the test writes `out/karpenter-warmup.json`, the script "
                       f"this section and `{_shown(figure)}`):", WIDTH), "",
        "    " + TEST_COMMAND.format(seconds=seconds),
        "    .venv/bin/python bench/karpenter_timeline.py --benchmarks", "",
        *textwrap.wrap(
        f"Real Karpenter (KWOK provider, `tools/devcluster/karpenter.sh`) on the dev cluster; a node it launches "
        f"is Ready {seconds} s later (kwok stage `karpenter-node-initialize`). Two worlds side by side, identical but "
        f"for `nodeProvisioningSeconds`: a region whose only node has room for {data['room']} pods of 1 CPU, the "
        f"target at {data['room']} replicas with `startupSeconds: {data['startupSeconds']}` (its pods turn Ready that "
        f"long after they start), a forecast step of {data['cycleSeconds']} s, and a SurgeSchedule whose floor of "
        f"{data['floor']} opens {seconds} + {data['startupSeconds']} + {data['cycleSeconds']} + 40 s after the "
        "worlds are made. Times are seconds from the window's opening.", WIDTH), "",
        "| | nodeProvisioningSeconds | room held from | first node launched | Karpenter nodes (all Ready at) "
        f"| replicas raised to {data['floor']} | new pods Pending (s) | all {data['floor']} Ready at |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary(data):
        lines.append(f"| {row['world']} | {row['provisioning']} | {row['reserved']} | {row['launched']} | "
                     f"{row['nodes']} ({row['nodesReady']}) | {row['raised']} | {row['pending']} | "
                     f"**{row['lastReady']}** |")
    lines += [
        "", f"![pods and nodes over time, with and without warm-up]({_shown(figure)})", "",
        *textwrap.wrap(
        "With warm-up the operator holds room for the surge's extra replicas as soon as the window is within "
        "nodeProvisioningSeconds + startupSeconds + one cycle: placeholder pods go Pending, Karpenter launches "
        "nodes for them, and when the floor enters the normal lookahead the real replicas preempt the placeholders "
        "and start on nodes that are already up. Without it the same replicas are asked for at the same moment, "
        "and then wait Pending for the nodes Karpenter launches only now: they turn Ready the node start-up plus "
        "their own startup after they were asked for, into the window.", WIDTH), "",
    ]
    return lines


def plot(data: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {"provisioning": "#bbbbbb", "node up": "#4c72b0", "pending": "#dd8452", "starting": "#f2c45a",
               "ready": "#55a868", "placeholder running": "#c8b7e8"}
    figure, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    # One time axis for both panels: until 30 s after the last pod turned Ready in either world.
    tail = max(max([pod["ready"] or 0 for pod in world["pods"].values()] + [world["windowOpen"]]) - world["windowOpen"]
               for world in data["worlds"].values()) + 30
    for axis, name in zip(axes, ("warm", "cold")):
        world = data["worlds"][name]
        origin = world["windowOpen"]
        end = origin + tail
        rows: list[tuple[str, list[tuple[float, float, str]]]] = []
        for index, node in enumerate(sorted(world["nodes"].values(), key=lambda node: node["created"])):
            ready = node["ready"] or end
            rows.append((f"node {index + 1} ({node.get('instanceType') or '?'})",
                         [(node["created"], ready, "provisioning"), (ready, end, "node up")]))
        placeholders = sorted((pod for pod in world["pods"].values() if pod["kind"] == "placeholder"),
                              key=lambda pod: pod["created"])
        for index, pod in enumerate(placeholders):
            stop = pod["gone"] or end
            started = pod["scheduled"] or stop
            rows.append((f"placeholder {index + 1}", [(pod["created"], started, "pending"),
                                                      (started, stop, "placeholder running")]))
        for index, (_, pod) in enumerate(_new_targets(world, data["room"])):
            scheduled = pod["scheduled"] or end
            ready = pod["ready"] or end
            rows.append((f"new replica {index + 1}", [(pod["created"], scheduled, "pending"),
                                                      (scheduled, ready, "starting"), (ready, end, "ready")]))
        for y, (_, spans) in enumerate(reversed(rows)):
            for start, stop, kind in spans:
                if stop > start:
                    axis.barh(y, stop - start, left=start - origin, color=colours[kind], height=0.7)
        axis.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
        axis.axvline(0, color="black", linewidth=1.5)
        if world["raised"]:
            axis.axvline(world["raised"] - origin, color="black", linestyle="--", linewidth=1)
        axis.set_title(f"{TITLES[name]} (nodeProvisioningSeconds {world['nodeProvisioningSeconds']})", fontsize=10)
    axes[-1].set_xlabel("seconds from the surge window's opening (solid line); dashed: replicas raised to "
                        f"{data['floor']}")
    figure.legend(handles=[Patch(color=colour, label=label) for label, colour in colours.items()],
                  loc="lower center", ncol=6, fontsize=8, frameon=False)
    figure.suptitle(f"Node warm-up on a real Karpenter: nodes Ready {data['nodeSeconds']} s after launch", fontsize=11)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    return timeline_section.main(__doc__ or "", DEFAULT_INPUT, FIGURE, HEADER, "## Node warm-up: nodes that take time to add", plot, markdown)


if __name__ == "__main__":
    sys.exit(main())
