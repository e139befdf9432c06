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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import CASES, TRACES, WARM_UP_HEADER, in_processes  # noqa: E402

from healthscale.api import clinicalslo, manifests  # noqa: E402
from healthscale.backtest import replay, trace  # noqa: E402

PROVISIONING = (120, 300)
"""Seconds to add a node: a quick Karpenter launch and a slower one (the issue's 1 to 5 minutes)."""
STEP_AT_MOST = 3600
"""Hourly and finer: at coarser steps a node's minutes vanish inside one interval."""
COMMAND = "bench/warm_up.py"
HEADER = WARM_UP_HEADER


def _replay(task: tuple[str, str, int]) -> tuple[str, int, int, replay.Score, replay.Score, float]:
    name, trace_file, seconds = task
    slo = manifests.load_one(clinicalslo.ClinicalSLO, ROOT / "bench" / "manifests" / f"{name}.slo.yaml")
    demand = trace.load(TRACES / trace_file)
    result = replay.replay(demand, slo.spec, None, slo.spec.forecast.history.total_seconds() / 86400,
                           with_references=False, node_provisioning_seconds=seconds)
    scores = {score.name: score for score in result.scores()}
    held = sum(1 for choice in result.runs[replay.ENGINE].choices if choice.reserved > 0)
    share = 100.0 * held / max(1, len(result.runs[replay.ENGINE].choices))
    return name, demand.step, seconds, scores[replay.ENGINE], scores[replay.NO_WARM_UP], share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--markdown", type=pathlib.Path)
    arguments = parser.parse_args()
    tasks = []
    for name, trace_file in CASES:
        if trace.load(TRACES / trace_file).step <= STEP_AT_MOST:
            tasks += [(name, trace_file, seconds) for seconds in PROVISIONING]
    rows = sorted(in_processes(_replay, tasks, arguments.jobs), key=lambda row: (CASES.index(
        next(case for case in CASES if case[0] == row[0])), row[2]))
    lines = [
        HEADER, "",
        f"Measured {dt.date.today().isoformat()} with `.venv/bin/python {COMMAND} --markdown FILE` (part of "
        "`make bench`). Each row is one replay of the whole trace after the manifest's history, healthscale "
        "only, run twice on the same capacity model: with node room reserved ahead of need and without. A "
        "replica beyond the nodes' room waits the provisioning time for a node before its own startup; room "
        "nobody holds is released at once (consolidation). Node room-hours count every replica's worth of "
        "nodes up or being provisioned, placeholders' included. Scored at each trace's own step.", "",
        "| journey (step) | node provisioning | unmet demand %: with / without warm-up | intervals in breach %: "
        "with / without | node room-hours: with / without | room reserved in |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, step, seconds, warm, cold, share in rows:
        ratio = warm.room_hours / cold.room_hours if cold.room_hours > 0 else float("nan")
        lines.append(f"| {name} ({step // 60}m) | {seconds}s | {warm.unmet_percent:.3f} / {cold.unmet_percent:.3f} | "
                     f"{warm.breach_percent:.1f} / {cold.breach_percent:.1f} | {warm.room_hours:,.0f} / "
                     f"{cold.room_hours:,.0f} ({ratio:.3f}x) | {share:.1f}% of intervals |")
    text = "\n".join(lines) + "\n"
    print(text)
    if arguments.markdown is not None:
        arguments.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
