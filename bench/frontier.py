"""Cost against unmet demand: each policy's frontier on the call-centre and ED traces (issue 15).

One operating point per policy (as in the trace tables) can put two policies at slightly different
costs, and then neither is plainly better: on the call centre Holt-Winters left less unmet demand than
healthscale while spending more. Here each policy's cost knob is swept, and every point is replayed
with the backtest's own replay and capacity model (``healthscale.backtest.replay``: the trace's own
step, the bench manifest's startup and scale-down, the warm-up = ``forecast.history``):

- healthscale: ``forecast.quantile`` (the quantile it provisions for; the manifest's criticality
  gives the default) at the manifest's ``headroomPercent``, and once more at quantile 0.5 with no
  headroom, its cheapest setting;
- Holt-Winters (Predictive HPA): its HPA's headroom (the HPA target, and so the replica history
  Holt-Winters forecasts);
- reactive HPA: headroom;
- three-line heuristic: headroom (below zero too: its max of three already over-provisions).

Each policy's frontier is its sweep points that no cheaper point of its own beats; its unmet demand
at a common cost (x the oracle's replica-hours) is interpolated linearly in replica-hours between
the two frontier points around it, and not given outside its swept range. Prints, and with
``--markdown`` writes, the "frontier" section of BENCHMARKS.md; draws docs/bench/frontier-<trace>.png.

    python bench/frontier.py [--traces call-centre ed-triage] [--jobs 2] [--markdown PATH] [--json PATH]
    python bench/frontier.py --points PATH    # redraw and rewrite from a --json run's points
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import pathlib
import sys
import textwrap
import time
from collections.abc import Callable, Sequence

from threadpoolctl import threadpool_limits

import run as bench
from healthscale.api import clinicalslo, manifests
from healthscale.backtest import policies, references, replay, trace

COMMAND = "python bench/frontier.py"
HEADER = "## Cost and unmet demand: the frontier"
HEALTHSCALE = replay.ENGINE
HOLT_WINTERS = policies.PredictiveHPA.name
HPA = policies.ReactiveHPA.name
HEURISTIC = references.HEURISTIC
POLICIES = (HEALTHSCALE, HOLT_WINTERS, HPA, HEURISTIC)
"""BENCHMARKS.md's prose width."""


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, bench.WIDTH, break_on_hyphens=False)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One trace's knob values per policy, and the costs (x the oracle) the table compares at."""

    quantiles: tuple[float, ...]
    holt_winters: tuple[int, ...]
    hpa: tuple[int, ...]
    heuristic: tuple[int, ...]
    costs: tuple[float, ...]


QUANTILES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99)
SWEEPS = {
    # Holt-Winters refits statsmodels daily on the call centre's 5-minute replica history: about 3
    # minutes a replay, so it gets four points, around where it and healthscale land as configured.
    "call-centre": Sweep((0.5, 0.8, 0.9, 0.95, 0.99), (5, 10, 15, 20), tuple(range(0, 61, 5)),
                         tuple(range(-40, 31, 5)), (1.10, 1.15, 1.20, 1.25)),
    "ed-triage": Sweep(QUANTILES, (10, 20, 35, 50, 75), tuple(range(0, 151, 10)), tuple(range(-50, 61, 5)),
                       (1.50, 1.70, 1.90, 2.10)),
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One replay: a policy at one knob setting, its replica-hours against the oracle's and its unmet demand."""

    policy: str
    knob: str
    cost: float
    unmet_percent: float
    default: bool = False


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, unmet) points that no cheaper-or-equal point beats, cheapest first.

    A setting that costs more and leaves more unmet than another of the same policy is never the
    one to pick, so it is not part of the policy's frontier.
    """
    kept: list[tuple[float, float]] = []
    for cost, unmet in sorted(points):
        if not kept or unmet < kept[-1][1]:
            kept.append((cost, unmet))
    return kept


def at_cost(points: Sequence[tuple[float, float]], cost: float) -> float | None:
    """Unmet demand at ``cost`` on the frontier of ``points``, linear in cost between the frontier
    points around it; None outside the range the frontier spans (no extrapolation)."""
    line = frontier(points)
    if not line or not line[0][0] <= cost <= line[-1][0]:
        return None
    for (left, low), (right, high) in zip(line, line[1:]):
        if left <= cost <= right:
            return low + (high - low) * (cost - left) / (right - left)
    return line[0][1]  # a single point, exactly at ``cost``


def ratio(ours: float | None, reference: float | None) -> str:
    """healthscale's unmet demand over the reference's at the same cost (below 1 is better)."""
    if ours is None or reference is None:
        return "-"
    if reference > 0:
        return f"{ours / reference:.2f}x"
    return "n/a" if ours <= 0 else "inf"


# --- replays (run in worker processes) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Outcome:
    """A worker's answer: its sweep points, and for a case's default healthscale replay, that replay."""

    case: str
    points: list[Point]
    base: replay.Result | None = None
    seconds: float = 0.0


def _spec(case: str, quantile: float | None = None, headroom_percent: int | None = None) -> clinicalslo.ClinicalSLOSpec:
    spec = manifests.load_one(clinicalslo.ClinicalSLO, bench.ROOT / "bench" / "manifests" / f"{case}.slo.yaml").spec
    if quantile is not None:
        spec = spec.model_copy(update={"forecast": spec.forecast.model_copy(update={"quantile": quantile})})
    if headroom_percent is not None:
        spec = spec.model_copy(update={"capacity": spec.capacity.model_copy(update={"headroom_percent": headroom_percent})})
    return spec


def _warmup_days(spec: clinicalslo.ClinicalSLOSpec) -> float:
    return spec.forecast.history.total_seconds() / 86400  # as `healthscale backtest` does by default


def _score(result: replay.Result, run: replay.Run, knob: str, default: bool) -> Point:
    """The backtest's own scoring of ``run`` over ``result``'s intervals."""
    row = dataclasses.replace(result, runs={run.name: run}).scores()[0]
    return Point(run.name, knob, row.relative_replica_hours, row.unmet_percent, default)


def _engine(case: str, quantile: float | None, headroom_percent: int | None) -> Outcome:
    """healthscale at ``quantile`` and headroom (None: the manifest's); the default's result is the others' base."""
    threadpool_limits(1)
    manifest = _spec(case)
    spec = _spec(case, quantile, headroom_percent)
    result = replay.replay(trace.load(bench.TRACES / dict(bench.CASES)[case]), spec, None, _warmup_days(spec),
                           with_references=False)
    knob = f"p{result.policy.quantile * 100:g}"
    if spec.capacity.headroom_percent != manifest.capacity.headroom_percent:
        knob += f", headroom {spec.capacity.headroom_percent}%"
    default = quantile is None and headroom_percent is None
    point = _score(result, result.runs[HEALTHSCALE], knob, default)
    # The workers replaying references over its intervals need none of its runs.
    return Outcome(case, [point], dataclasses.replace(result, runs={}) if default else None)


def _holt_winters(case: str, base: replay.Result, headroom_percent: int) -> Outcome:
    threadpool_limits(1)
    policy = dataclasses.replace(base.policy, headroom=headroom_percent / 100.0)
    _, settings = replay.engine_policy(_spec(case), base.trace.step)
    run = replay.rerun(base, policies.PredictiveHPA(policy, base.trace.step, settings.history))
    default = policy.headroom == base.policy.headroom
    return Outcome(case, [_score(base, run, f"headroom {headroom_percent}%", default)])


def _headroom_sweep(case: str, base: replay.Result, name: str, headrooms: tuple[int, ...]) -> Outcome:
    """The reactive HPA's or the heuristic's replays at every headroom (each takes about a second)."""
    threadpool_limits(1)
    points = []
    for percent in headrooms:
        policy = dataclasses.replace(base.policy, headroom=percent / 100.0)
        candidate: policies.Policy = (policies.ReactiveHPA(policy) if name == HPA
                                      else references.ThreeLineHeuristic(policy))
        run = replay.rerun(base, candidate)
        points.append(_score(base, run, f"headroom {percent}%", policy.headroom == base.policy.headroom))
    return Outcome(case, points)


def _timed(task: Callable[..., Outcome], *arguments: object) -> Outcome:
    started = time.perf_counter()
    return dataclasses.replace(task(*arguments), seconds=time.perf_counter() - started)


def _submit_sweeps(pool: concurrent.futures.Executor, case: str,
                   base: replay.Result) -> set[concurrent.futures.Future[Outcome]]:
    """Every sweep point of ``case`` but the default healthscale replay ``base``, longest first
    (Holt-Winters, then healthscale, then the quick headroom sweeps)."""
    sweep = SWEEPS[case]
    futures = [pool.submit(_timed, _holt_winters, case, base, percent) for percent in sweep.holt_winters]
    futures += [pool.submit(_timed, _engine, case, quantile, None) for quantile in sweep.quantiles
                if not math.isclose(quantile, base.policy.quantile)]
    if base.policy.headroom != 0:
        futures.append(pool.submit(_timed, _engine, case, min(sweep.quantiles), 0))
    futures += [pool.submit(_timed, _headroom_sweep, case, base, name, headrooms)
                for name, headrooms in ((HPA, sweep.hpa), (HEURISTIC, sweep.heuristic))]
    return set(futures)


def measure(cases: Sequence[str], jobs: int) -> dict[str, list[Point]]:
    """Every sweep point of every case. Each case's default healthscale replay goes first: the
    references are replayed over its intervals, from its starting replicas."""
    points: dict[str, list[Point]] = {case: [] for case in cases}
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, initializer=threadpool_limits,
                                                initargs=(1,)) as pool:
        pending = {pool.submit(_timed, _engine, case, None, None) for case in cases}
        while pending:
            finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                outcome = future.result()
                points[outcome.case] += outcome.points
                for point in outcome.points:
                    print(f"{outcome.case}: {point.policy} at {point.knob}: {point.unmet_percent:.3f}% unmet at "
                          f"{point.cost:.3f}x the oracle", flush=True)
                print(f"  ({outcome.seconds:.0f}s)", flush=True)
                if outcome.base is not None:
                    pending |= _submit_sweeps(pool, outcome.case, outcome.base)
    return points


# --- the table, the picture and the section ------------------------------------------------------------


def _curve(points: Sequence[Point], name: str) -> list[tuple[float, float]]:
    return [(point.cost, point.unmet_percent) for point in points if point.policy == name]


def common_costs(case: str, points: Sequence[Point]) -> list[tuple[float, str]]:
    """The table's costs: the trace's round ones, and where healthscale and Holt-Winters land as configured."""
    costs = [(cost, f"{cost:.2f}x") for cost in SWEEPS[case].costs]
    costs += [(point.cost, f"{point.cost:.3f}x ({point.policy.split(' (')[0]} as configured)") for point in points
              if point.default and point.policy in (HEALTHSCALE, HOLT_WINTERS)]
    return sorted(costs)


def table_rows(case: str, points: Sequence[Point]) -> list[list[str]]:
    """Per common cost: each policy's interpolated unmet %, and healthscale's over Holt-Winters' and the HPA's."""
    rows = []
    for cost, label in common_costs(case, points):
        unmet = {name: at_cost(_curve(points, name), cost) for name in POLICIES}
        rows.append([case, label, *("-" if unmet[name] is None else f"{unmet[name]:.3f}" for name in POLICIES),
                     ratio(unmet[HEALTHSCALE], unmet[HOLT_WINTERS]), ratio(unmet[HEALTHSCALE], unmet[HPA])])
    return rows


TIE = 0.1
"""Within this share of the reference's unmet demand at a cost the two are called level: linear
interpolation overstates unmet demand between sweep points (the curves bend down), by up to about
that much at the spacing swept here."""

SHORT_NAMES = {HOLT_WINTERS: "Holt-Winters", HEURISTIC: "the three-line heuristic", HPA: "the reactive HPA"}


def verdict(case: str, points: Sequence[Point], reference: str = HOLT_WINTERS, subject: str = "") -> str:
    """One sentence: at which of the table's costs healthscale leaves less, about as much or more
    unmet demand than ``reference``; the side found at the lowest cost is said first, in full.
    ``subject`` replaces "On <case> healthscale" (to follow an earlier sentence)."""
    name = SHORT_NAMES[reference]
    sides: dict[str, tuple[str, list[float]]] = {
        "less": (f"less unmet demand than {name}", []),
        "level": (f"about as much as {name} (within {TIE:.0%})", []),
        "more": (f"more unmet demand than {name}", []),
    }
    for cost, _ in common_costs(case, points):
        ours, theirs = at_cost(_curve(points, HEALTHSCALE), cost), at_cost(_curve(points, reference), cost)
        if ours is None or theirs is None:
            continue
        side = "less" if ours < theirs * (1 - TIE) else "more" if ours > theirs * (1 + TIE) else "level"
        sides[side][1].append(cost)
    found = sorted((costs[0], short, full, costs) for short, (full, costs) in sides.items() if costs)
    if not found:
        return f"On {case} the sweeps of healthscale and {name} share none of the table's costs."
    (_, _, full, costs), *others = found
    text = f"{subject or f'On {case} healthscale'} leaves {full} at {_costs(costs)} the oracle's replica-hours"
    return text + "".join(f"; {short} at {_costs(costs)}" for _, short, _, costs in others) + "."


def _costs(costs: Sequence[float]) -> str:
    return ", ".join(f"{cost:.2f}x" for cost in costs)


def plot(case: str, points: Sequence[Point], path: pathlib.Path) -> None:
    """Unmet demand % (log) against replica-hours / oracle's, one line per policy, defaults ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {HEALTHSCALE: "#2ca02c", HOLT_WINTERS: "#9467bd", HPA: "#d62728", HEURISTIC: "#ff7f0e"}
    figure, axis = plt.subplots(figsize=(9, 5.5))
    ours = _curve(points, HEALTHSCALE)
    # Show the costs around healthscale's sweep: the references' far ends only squash the picture.
    low, high = min(cost for cost, _ in ours) - 0.1, max(cost for cost, _ in ours) + 0.1
    for name in POLICIES:
        shown = sorted((point for point in points if point.policy == name and low <= point.cost <= high
                        and point.unmet_percent > 0), key=lambda point: point.cost)
        if not shown:
            continue
        axis.plot([point.cost for point in shown], [point.unmet_percent for point in shown], marker="o", ms=3.5,
                  lw=1.4, color=colours[name], label=name)
        for point in shown:
            if point.default:
                axis.plot(point.cost, point.unmet_percent, marker="o", ms=11, mfc="none", mec=colours[name], mew=1.8)
            if name in (HEALTHSCALE, HOLT_WINTERS):
                axis.annotate(point.knob.replace("headroom ", "h"), (point.cost, point.unmet_percent),
                              textcoords="offset points", xytext=(4, 4), fontsize=7, color=colours[name])
    axis.set_yscale("log")
    axis.set_xlim(low, high)
    axis.set_xlabel("replica-hours / oracle's")
    axis.set_ylabel("unmet demand % (log)")
    axis.set_title(f"{case}: cost against unmet demand (ringed: each policy as configured)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section(points: dict[str, list[Point]], command: str, jobs: int, elapsed: float) -> list[str]:
    """The BENCHMARKS.md section: how it was measured, the table at common costs, the pictures, the verdict."""
    lines = [
        HEADER,
        "",
        "```",
        command,
        "```",
        "",
        *_wrap(
            "One operating point per policy can put two policies at different costs, and then neither is plainly "
            "better. Here each policy's cost knob is swept on the replay above (same capacity model, manifests and "
            "warm-up): healthscale's `forecast.quantile` (0.5 to 0.99, at the manifest's headroom, and 0.5 with "
            "no headroom), the Holt-Winters (Predictive HPA) reference's and the reactive HPA's headroom, and the "
            "three-line heuristic's headroom (below zero too). Each policy's unmet demand % is interpolated "
            "linearly in replica-hours between the two points of its frontier (its sweep points that no cheaper "
            "one of its own beats) around each cost; - = outside its swept range. x = healthscale's unmet demand "
            "over the reference's at that cost (below 1 is better). The curves bend down between sweep points, so "
            "the interpolation overstates unmet demand where a policy's points are far apart; the sentences under "
            f"the table call a difference within {TIE:.0%} level."),
        "",
        "| trace | replica-hours vs oracle | healthscale unmet % | Holt-Winters unmet % | reactive HPA unmet % | "
        "heuristic unmet % | x Holt-Winters | x HPA |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, found in points.items():
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(case, found)]
    lines.append("")
    for case, found in points.items():
        defaults = ", ".join(f"{point.policy} {point.unmet_percent:.2f}% at {point.cost:.2f}x ({point.knob})"
                             for point in found if point.default)
        lines += [*_wrap(f"{verdict(case, found)} {verdict(case, found, HEURISTIC, 'It')} As configured: {defaults}."), "",
                  f"![frontier {case}](docs/bench/frontier-{case}.png)", ""]
    lines += [f"Measured in {elapsed / 60:.1f} min with {jobs} process(es).", ""]
    return lines


def main() -> int:
    threadpool_limits(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", nargs="+", choices=sorted(SWEEPS), default=list(SWEEPS))
    parser.add_argument("--jobs", type=int, default=2, help="replays run in this many processes")
    parser.add_argument("--plots", type=pathlib.Path, default=bench.ROOT / "docs" / "bench",
                        help="draw frontier-<trace>.png here")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the BENCHMARKS.md section here")
    parser.add_argument("--json", type=pathlib.Path, help="write every sweep point here")
    parser.add_argument("--points", type=pathlib.Path,
                        help="draw and write from the sweep points a --json run saved, without replaying")
    arguments = parser.parse_args()
    if arguments.points is not None:
        saved = json.loads(arguments.points.read_text())
        points = {case: [Point(**point) for point in found] for case, found in saved["points"].items()}
        elapsed, jobs = float(saved["seconds"]), int(saved["jobs"])
    elif not bench.TRACES.is_dir():
        print(f"error: {bench.TRACES} not found; the benchmark replays ../shared/traces", file=sys.stderr)
        return 2
    else:
        started = time.perf_counter()
        points = measure(arguments.traces, arguments.jobs)
        elapsed, jobs = time.perf_counter() - started, arguments.jobs
    for case, found in points.items():
        plot(case, found, arguments.plots / f"frontier-{case}.png")
    cases = list(points)
    command = " ".join([COMMAND, *(["--traces", *cases] if cases != list(SWEEPS) else [])])
    lines = section(points, command, jobs, elapsed)
    print("\n".join(lines))
    if arguments.markdown:
        arguments.markdown.write_text("\n".join(lines) + "\n")
    if arguments.json:
        arguments.json.write_text(json.dumps({
            "seconds": elapsed, "jobs": jobs,
            "points": {case: [dataclasses.asdict(point) for point in found] for case, found in points.items()},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
