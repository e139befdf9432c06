"""Plan quality out of sample: rolling time splits of every visible trace, at criticality standard and critical.

Each trace is scored the way the held-back traces are judged: at its own step, with a 300 s startup
counted time-weighted (``--startup-seconds``), with the bench manifest's other settings and the
criticality set. Every candidate model (``--models``; the first is the default) is replayed once
over the whole trace; split ``k`` chooses the model on the periods before period ``k`` and scores it
on period ``k`` (``healthscale.backtest.splits`` and ``generalisation`` say how, and why one
replay per model is enough). Prints, and with ``--markdown`` writes, the "Generalisation" section
of BENCHMARKS.md; ``--json`` keeps every split's figures.

    python bench/generalise.py [--traces ed-triage ...] [--jobs 2] [--max-splits N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import textwrap
import time

import numpy as np
from threadpoolctl import threadpool_limits

import run as bench
from healthscale.api import clinicalslo, manifests
from healthscale.backtest import generalisation, policies, references, replay, splits, trace

COMMAND = "python bench/generalise.py"
HEADER = "## Generalisation: rolling time splits"
HEALTHCARE = ("ed-triage",)
"""Visible traces of healthcare demand: the goals (at most 0.3x the HPA) are stated for these."""
CRITICALITIES = (clinicalslo.Criticality.STANDARD, clinicalslo.Criticality.CRITICAL)
DEFAULT_MODELS = ("auto", "harmonic", "seasonal-naive")
STARTUP_SECONDS = 300
GOAL_VERSUS_HPA = 0.3
"""BENCHMARKS.md's prose width."""


@dataclasses.dataclass(frozen=True)
class Task:
    case: str
    trace_file: str
    criticality: clinicalslo.Criticality
    model: str
    startup: int


def _spec(task: Task) -> tuple[clinicalslo.ClinicalSLOSpec, float]:
    """The bench manifest with the criticality, model and startup set; and its warm-up in days."""
    spec = manifests.load_one(clinicalslo.ClinicalSLO, bench.ROOT / "bench" / "manifests" / f"{task.case}.slo.yaml").spec
    spec = spec.model_copy(update={
        "criticality": task.criticality,
        "capacity": spec.capacity.model_copy(update={"startup_seconds": task.startup}),
        "forecast": spec.forecast.model_copy(update={"model": clinicalslo.ForecastModel(task.model)}),
    })
    return spec, spec.forecast.history.total_seconds() / 86400


def _replay(task: Task) -> tuple[Task, replay.Result, float]:
    threadpool_limits(1)  # small solves, one BLAS thread each (see healthscale/__init__.py); also in workers
    started = time.perf_counter()
    spec, warmup = _spec(task)
    result = replay.replay(trace.load(bench.TRACES / task.trace_file), spec, None, warmup, with_references=False)
    return task, result, time.perf_counter() - started


def _reference(result: replay.Result, build: type[policies.ReactiveHPA] | type[references.ThreeLineHeuristic],
               lowest: int) -> generalisation.Reference:
    def replay_at(headroom_percent: int) -> np.ndarray:
        policy = dataclasses.replace(result.policy, headroom=headroom_percent / 100.0)
        return replay.rerun(result, build(policy)).ready

    return generalisation.Reference(replay_at, lowest)


def _x(ours: float, reference: float) -> str:
    """healthscale's unmet demand over the reference's; n/a when neither left any unmet."""
    if ours <= 0 and reference <= 0:
        return "n/a"
    value = generalisation.ratio(ours, reference)
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def main() -> int:
    threadpool_limits(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", nargs="+", choices=[name for name, _ in bench.CASES],
                        default=[name for name, _ in bench.CASES])
    parser.add_argument("--models", default=None,
                        help="candidate forecast models, comma-separated; the first is the default "
                        f"(default: {','.join(DEFAULT_MODELS)}, those of them the CRD has)")
    parser.add_argument("--startup-seconds", type=int, default=STARTUP_SECONDS)
    parser.add_argument("--max-splits", type=int, default=None, help="keep this many splits, evenly spaced")
    parser.add_argument("--jobs", type=int, default=1, help="replays run in this many processes")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the BENCHMARKS.md section here")
    parser.add_argument("--json", type=pathlib.Path, help="write every split's figures here")
    arguments = parser.parse_args()
    known = {str(model) for model in clinicalslo.ForecastModel}
    if arguments.models is None:
        models = [model for model in DEFAULT_MODELS if model in known]
        if len(models) < len(DEFAULT_MODELS):
            print(f"note: the CRD has no model {', '.join(sorted(set(DEFAULT_MODELS) - known))}; left out", flush=True)
    else:
        models = [model for model in arguments.models.split(",") if model]
    unknown = [model for model in models if model not in known]
    if unknown or not models:
        parser.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; the CRD has {', '.join(sorted(known))}")
    if not bench.TRACES.is_dir():
        print(f"error: {bench.TRACES} not found; the benchmark replays ../shared/traces", file=sys.stderr)
        return 2
    files = dict(bench.CASES)
    tasks = [Task(case, files[case], criticality, model, arguments.startup_seconds)
             for case in arguments.traces for criticality in CRITICALITIES for model in models]
    started = time.perf_counter()
    results: dict[tuple[str, clinicalslo.Criticality, str], replay.Result] = {}

    def done(task: Task, result: replay.Result, seconds: float) -> None:
        results[(task.case, task.criticality, task.model)] = result
        print(f"replayed {task.case} {task.criticality} {task.model}: {result.times.size} intervals in {seconds:.0f}s",
              flush=True)

    for finished in bench.in_processes(_replay, tasks, arguments.jobs):
        done(*finished)
    rows = []
    for case in arguments.traces:
        base = results[(case, CRITICALITIES[0], models[0])]
        hpa = _reference(base, policies.ReactiveHPA, 0)
        heuristic = _reference(base, references.ThreeLineHeuristic, references.LOWEST_HEURISTIC_HEADROOM)
        unit = splits.unit_for(base.times)
        cuts = splits.rolling(base.times, unit, max_splits=arguments.max_splits)
        for criticality in CRITICALITIES:
            level = results[(case, criticality, models[0])].policy.quantile
            candidates = [generalisation.Candidate(model, results[(case, criticality, model)].runs[replay.ENGINE].ready,
                                                   results[(case, criticality, model)].forecast_quantile())
                          for model in models]
            outcome = generalisation.evaluate(base.demand, base.oracle.astype(float), base.policy.per_replica, level,
                                              candidates, hpa, heuristic, cuts, unit)
            rows.append((case, criticality, outcome))
    elapsed = time.perf_counter() - started
    lines = section(rows, models, arguments, elapsed)
    print("\n".join(lines))
    if arguments.markdown:
        arguments.markdown.write_text("\n".join(lines) + "\n")
    if arguments.json:
        arguments.json.write_text(json.dumps([_record(case, criticality, outcome) for case, criticality, outcome in rows],
                                             indent=1))
    return 0


def _record(case: str, criticality: str, outcome: generalisation.Outcome) -> dict[str, object]:
    figures = dataclasses.asdict(outcome)
    figures.update(trace=case, criticality=str(criticality), versus_hpa=outcome.versus_hpa,
                   versus_heuristic=outcome.versus_heuristic,
                   calibration_breach_percent=outcome.calibration.breach_percent)
    return figures


def section(rows: list[tuple[str, clinicalslo.Criticality, generalisation.Outcome]], models: list[str],
            arguments: argparse.Namespace, elapsed: float) -> list[str]:
    """The BENCHMARKS.md section: how it was measured, the split table, the calibration table."""
    options = []
    if arguments.traces != [name for name, _ in bench.CASES]:
        options.append("--traces " + " ".join(arguments.traces))
    if models != list(DEFAULT_MODELS):
        options.append(f"--models {','.join(models)}")
    if arguments.startup_seconds != STARTUP_SECONDS:
        options.append(f"--startup-seconds {arguments.startup_seconds}")
    if arguments.max_splits is not None:
        options.append(f"--max-splits {arguments.max_splits}")
    sampled = ("every split is scored" if arguments.max_splits is None else
               f"at most {arguments.max_splits} splits per trace, evenly spaced, are scored")
    lines = [
        HEADER,
        "",
        "```",
        " ".join([COMMAND, *options]),
        "```",
        "",
        *textwrap.wrap(
            f"Measured the way the held-back traces are judged: each trace at its own step, with a "
            f"{arguments.startup_seconds} s startup counted time-weighted (a replica asked for at the start of an "
            f"hour serves (3600 - {arguments.startup_seconds}) / 3600 of it), with the bench manifest's other "
            "settings, at criticality standard (p80) and critical (p95). The scored part of each trace (after "
            "the 14-day warm-up) is cut into calendar months (weeks, or days, for traces too short for four "
            f"months). Split k chooses the forecast model among {', '.join(models)} (the default: {models[0]}) by "
            "the least unmet demand against the reactive HPA at equal replica-hours over the periods before "
            f"period k, and is scored on period k; {sampled}. Each model is replayed once over the whole trace: "
            "every decision sees only earlier intervals, so period k of that replay is what an operator running "
            "since the start of the trace would have done in it.", bench.WIDTH),
        "",
        *textwrap.wrap(
            "Columns, over all scored periods together: healthscale's unmet demand %; the reactive HPA's and the "
            "three-line heuristic's (max of the same slot yesterday, the same slot last week and the last "
            "interval seen, x (1 + headroom)), each given at least healthscale's replica-hours over those "
            "periods (the headroom that took in brackets, picked in hindsight, which favours them); x = "
            "healthscale's unmet demand over theirs (the goals on healthcare traces: at most 0.3x the HPA, "
            f"below 1x the heuristic; n/a when neither left any unmet); `default x HPA` keeps {models[0]} for "
            "every period (no choice); replica-hours against the oracle's; and how many splits meet each goal "
            "on their own period, with the references matched over that period (a period in which neither "
            "left demand unmet counts as met).", bench.WIDTH),
        "",
        "| trace | criticality | splits | chosen (splits) | unmet % | HPA unmet %, same replica-hours | x HPA | "
        "default x HPA | heuristic unmet %, same replica-hours | x heuristic | replica-hours vs oracle | "
        "splits <= 0.3x HPA | splits < 1x heuristic |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, criticality, outcome in rows:
        count = len(outcome.splits)
        at_goal = sum(split.versus_hpa <= GOAL_VERSUS_HPA for split in outcome.splits)
        beating = sum(split.versus_heuristic < 1.0 for split in outcome.splits)
        label = f"{case} (healthcare)" if case in HEALTHCARE else case
        default = "inf" if math.isinf(outcome.default_versus_hpa) else f"{outcome.default_versus_hpa:.2f}x"
        lines.append(
            f"| {label} | {criticality} | {count} {outcome.unit}s | {generalisation.chosen_text(outcome.chosen())} | "
            f"{outcome.unmet_percent:.2f} | {outcome.hpa_unmet_percent:.2f} ({outcome.hpa_headroom}%) | "
            f"{_x(outcome.unmet_percent, outcome.hpa_unmet_percent)} | {default} | "
            f"{outcome.heuristic_unmet_percent:.2f} ({outcome.heuristic_headroom}%) | "
            f"{_x(outcome.unmet_percent, outcome.heuristic_unmet_percent)} | "
            f"{outcome.relative_replica_hours:.2f}x | {at_goal}/{count} | {beating}/{count} |"
        )
    lines += [
        "",
        *textwrap.wrap(
            "Quantile calibration over the same scored periods and plans: the share of intervals in which demand "
            "exceeded the forecast at the criticality's quantile (the engine's forecast for that interval, made "
            "at its start, that it provisions for), against the nominal 1 - quantile.", bench.WIDTH),
        "",
        "| trace | criticality | quantile | intervals with a forecast | demand above it | nominal |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, criticality, outcome in rows:
        calibration = outcome.calibration
        lines.append(f"| {case} | {criticality} | p{calibration.level * 100:g} | {calibration.intervals:,} | "
                     f"{calibration.breach_percent:.1f}% | {calibration.nominal_percent:g}% |")
    lines += ["", f"Measured in {elapsed / 60:.1f} min with {arguments.jobs} process(es).", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
