"""Node warm-up in the backtest (issue 13): what reserving node room ahead of need changes when nodes
take time to add.

For each trace at a step of an hour or less, and each node provisioning time, one replay
(``replay.replay(..., node_provisioning_seconds=N)``, healthscale only) runs the engine twice on the
same capacity model: with the reservation (``domain.warmup``) and without it. A replica beyond the
nodes' room waits N seconds for a node, then its startup; room nobody holds is released at once.
The table compares unmet demand, intervals in breach and node room-hours (what the cluster pays
for, placeholders included), with the replay's own step as the resolution. Nothing is tuned: the
manifests are bench/manifests' as they are.

    .venv/bin/python bench/warm_up.py --markdown /tmp/warm-up.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import CASES, TRACES, WARM_UP_HEADER, WIDTH, in_processes  # noqa: E402

from healthscale.api import clinicalslo, manifests  # noqa: E402
from healthscale.backtest import replay, trace  # noqa: E402

PROVISIONING = (120, 300)
"""Seconds to add a node: a quick Karpenter launch and a slower one (the issue's 1 to 5 minutes)."""
STEP_AT_MOST = 3600
"""Hourly and finer: at coarser steps a node's minutes vanish inside one interval."""
COMMAND = "bench/warm_up.py"
HEADER = WARM_UP_HEADER


Row = tuple[str, int, int, replay.Score, replay.Score | None, float]


def _replay(task: tuple[str, str, int]) -> Row:
    """(journey, step, seconds, with warm-up, without (None at 0 s), share of intervals holding room)."""
    name, trace_file, seconds = task
    slo = manifests.load_one(clinicalslo.ClinicalSLO, ROOT / "bench" / "manifests" / f"{name}.slo.yaml")
    demand = trace.load(TRACES / trace_file)
    result = replay.replay(demand, slo.spec, None, slo.spec.forecast.history.total_seconds() / 86400,
                           with_references=False, node_provisioning_seconds=seconds)
    scores = {score.name: score for score in result.scores()}
    held = sum(1 for choice in result.runs[replay.ENGINE].choices if choice.reserved > 0)
    share = 100.0 * held / max(1, len(result.runs[replay.ENGINE].choices))
    return name, demand.step, seconds, scores[replay.ENGINE], scores.get(replay.NO_WARM_UP), share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--markdown", type=pathlib.Path)
    arguments = parser.parse_args()
    tasks = []
    for name, trace_file in CASES:
        if trace.load(TRACES / trace_file).step <= STEP_AT_MOST:
            tasks += [(name, trace_file, seconds) for seconds in (0, *PROVISIONING)]
    order = [name for name, _ in CASES]
    rows = sorted(in_processes(_replay, tasks, arguments.jobs), key=lambda row: (order.index(row[0]), row[2]))
    at_once = {row[0]: row[3] for row in rows if row[2] == 0}
    lines = [
        HEADER, "",
        f"Measured {dt.date.today().isoformat()} with `.venv/bin/python {COMMAND} --markdown FILE` (part of "
        "`make bench`). Each row is one replay of the whole trace after the manifest's history, healthscale "
        "only, run twice on the same capacity model: with node room reserved ahead of need and without. A "
        "replica beyond the nodes' room waits the provisioning time for a node before its own startup; room "
        "nobody holds is released at once (consolidation). Node room-hours count every replica's worth of "
        "nodes up or being provisioned, placeholders' included. Scored at each trace's own step. \"nodes at "
        "once\" is the same replay with nodes that take no time: the share of the provisioning penalty "
        "warm-up wins back is (without - with) / (without - at once).", "",
        "Releasing unheld room at once is the pessimistic end for the runs without warm-up: cluster-autoscaler "
        "keeps an unneeded node 10 minutes by default and Karpenter waits `consolidateAfter`, so short dips "
        "cost them less in a real cluster than here.", "",
        "| journey (step) | node provisioning | unmet demand %: with / without warm-up (nodes at once) | "
        "penalty won back | intervals in breach %: with / without | node room-hours: with / without | "
        "room reserved in |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, step, seconds, warm, cold, share in rows:
        if cold is None:
            continue
        ratio = warm.room_hours / cold.room_hours if cold.room_hours > 0 else float("nan")
        base = at_once[name].unmet_percent
        penalty = cold.unmet_percent - base
        won = f"{100 * (cold.unmet_percent - warm.unmet_percent) / penalty:.0f}%" if penalty > 1e-6 else "n/a (none)"
        lines.append(f"| {name} ({step // 60}m) | {seconds}s | {warm.unmet_percent:.3f} / {cold.unmet_percent:.3f} "
                     f"({base:.3f}) | {won} | {warm.breach_percent:.1f} / {cold.breach_percent:.1f} | "
                     f"{warm.room_hours:,.0f} / {cold.room_hours:,.0f} ({ratio:.3f}x) | {share:.1f}% of intervals |")
    won_back = [100 * (cold.unmet_percent - warm.unmet_percent) / (cold.unmet_percent - at_once[name].unmet_percent)
                for name, _, _, warm, cold, _ in rows
                if cold is not None and cold.unmet_percent - at_once[name].unmet_percent > 1e-6]
    extra = [warm.room_hours / cold.room_hours - 1 for _, _, _, warm, cold, _ in rows
             if cold is not None and cold.room_hours > 0]
    if won_back:
        lines += ["", f"In short: where slow nodes cost anything, warm-up wins back {min(won_back):.0f}% to "
                  f"{max(won_back):.0f}% of that cost (more the slower the nodes) for {100 * min(extra):.1f}% to "
                  f"{100 * max(extra):.1f}% more node room. What it cannot win back is demand the plan did not "
                  "foresee: a scale-up on demand above the forecast has no room reserved for it."]
    text = "\n".join(textwrap.fill(line, WIDTH) if line and not line.startswith(("|", "#")) else line
                     for line in lines) + "\n"
    print(text)
    if arguments.markdown is not None:
        arguments.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
