"""Forecast error around public holidays: no holidays against ``holidayEffect: Sunday`` and ``Learned``.

The traces with holidays in them (ED arrivals, US-IA; the bank call centre, US; NYC taxi, US-NY) are
forecast three ways with the bench manifest's other settings: without holidays, with the region's
holidays as Sundays, and with holidays learned. The forecaster runs as the backtest's engine runs it
(``replay.engine_policy``'s settings, ``choice.forecast`` called at every observed interval after the
14-day warm-up with the state carried between calls, so it refits every 6 hours), but each forecast
is kept over its whole horizon. Every variant is scored on the same forecasts (origin, step ahead)
that all three made, split by the local date of the interval forecast: a holiday, the day after one
(not itself a holiday), or any other day. A trace's timestamps are its local wall clock read as UTC
(``backtest.trace``) and the replay's calendar is UTC, so the holiday dates line up with the trace's
local dates with no time-zone shift. Prints, and with ``--markdown`` writes, the "Holidays" section
of BENCHMARKS.md; ``--json`` keeps every figure (and each holiday's own); ``--plot`` draws one
holiday week of each of some traces, chosen by a rule (``week_of``).

Named ``holiday_effect`` and not ``holidays``: a script's folder comes first on ``sys.path``, so a
``bench/holidays.py`` would stand in for the ``holidays`` package the engine imports.

    python bench/holiday_effect.py [--traces ed-triage ...] [--stride N] [--jobs 2]
        [--json out.json] [--markdown out.md] [--plot docs/bench/holiday-week.png]
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
from healthscale.api import clinicalslo, durations, manifests
from healthscale.backtest import replay, trace
from healthscale.domain import series
from healthscale.domain.forecast import base, choice, holidays

COMMAND = "python bench/holiday_effect.py"
HEADER = "## Holidays"
PLOT = "docs/bench/holiday-week.png"
CALENDARS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "ed-triage": (("US", "IA"),),
    "call-centre": (("US", None),),
    "taxi-dispatch": (("US", "NY"),),
}
"""The holidays a user of each trace would name (country, subdivision): where the data comes from."""
VARIANTS = ("none", clinicalslo.HolidayEffect.SUNDAY.value, clinicalslo.HolidayEffect.LEARNED.value)
CLASSES = ("holiday", "day after", "other day")
HOLIDAY, AFTER, OTHER = range(3)
WARMUP_DAYS = 14
"""BENCHMARKS.md's prose width."""


@dataclasses.dataclass(frozen=True)
class Task:
    case: str
    trace_file: str
    variant: str
    stride: int
    history: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Forecasts:
    """One variant's forecasts: from each origin (a trace position), the point and provisioned quantile."""

    positions: np.ndarray
    point: np.ndarray  # (origins, horizon steps), NaN without a forecast
    upper: np.ndarray
    level: float
    seconds: float


def spec_for(case: str, variant: str, history: str | None = None) -> clinicalslo.ClinicalSLOSpec:
    """The bench manifest with the variant's holidays (none, or the trace's calendar with that effect)
    and, if given, another history."""
    spec = manifests.load_one(clinicalslo.ClinicalSLO, bench.ROOT / "bench" / "manifests" / f"{case}.slo.yaml").spec
    if variant == "none":
        update: dict[str, object] = {"holidays": ()}
    else:
        regions = tuple(clinicalslo.HolidayRegion(country=country, subdivision=subdivision)
                        for country, subdivision in CALENDARS[case])
        update = {"holidays": regions, "holiday_effect": clinicalslo.HolidayEffect(variant)}
    if history is not None:
        update["history"] = durations.parse(history)
    return spec.model_copy(update={"forecast": spec.forecast.model_copy(update=update)})


def _forecast(task: Task) -> tuple[Task, Forecasts]:
    threadpool_limits(1)  # small solves, one BLAS thread each (see healthscale/__init__.py); also in workers
    started = time.perf_counter()
    loaded = trace.load(bench.TRACES / task.trace_file)
    policy, settings = replay.engine_policy(spec_for(task.case, task.variant, task.history), loaded.step)
    values = loaded.series.values
    first = int(math.ceil(WARMUP_DAYS * series.DAY / loaded.step))
    positions = (np.flatnonzero(~np.isnan(values[first:])) + first)[::task.stride]
    steps = settings.horizon_steps
    point = np.full((positions.size, steps), np.nan)
    upper = np.full((positions.size, steps), np.nan)
    state: choice.State | None = None
    for row, position in enumerate(positions):
        now = loaded.series.start + int(position) * loaded.step
        past = series.Series(loaded.series.start, loaded.step, values[:position])
        outcome, state = choice.forecast(past, now, settings, state)
        if isinstance(outcome, base.Forecast):
            point[row] = outcome.point[:steps]
            upper[row] = outcome.quantile(policy.quantile)[:steps]
    return task, Forecasts(positions, point, upper, policy.quantile, time.perf_counter() - started)


def holiday_days(case: str, first_year: int, last_year: int) -> tuple[int, ...]:
    """Local day numbers of the trace's holidays, as the engine's calendar has them."""
    regions = tuple(holidays.Region(country, subdivision) for country, subdivision in CALENDARS[case])
    return holidays.days(regions, first_year, last_year)


def day_classes(days: np.ndarray, holiday: tuple[int, ...]) -> np.ndarray:
    """Per local day number: HOLIDAY, AFTER (the day after a holiday, not one itself) or OTHER."""
    marked = np.asarray(holiday, dtype=np.int64)
    on = np.isin(days, marked)
    after = ~on & np.isin(days - 1, marked)
    return np.where(on, HOLIDAY, np.where(after, AFTER, OTHER))


@dataclasses.dataclass(frozen=True)
class Score:
    """Errors of one variant's forecasts over one class of days."""

    forecasts: int
    days: int
    mae: float
    pinball: float
    above_percent: float


def score(actual: np.ndarray, point: np.ndarray, upper: np.ndarray, level: float, days: np.ndarray,
          classes: np.ndarray) -> dict[int, Score]:
    """Per day class, over flat (forecast, step ahead) pairs: the point forecast's mean absolute
    error, the mean pinball loss of the provisioned quantile ``level``, and the share of intervals
    whose demand was above it. Pairs with any NaN must be removed by the caller."""
    loss = np.where(actual >= upper, level * (actual - upper), (1 - level) * (upper - actual))
    result = {}
    for kind in (HOLIDAY, AFTER, OTHER):
        chosen = classes == kind
        count = int(np.count_nonzero(chosen))
        if not count:
            result[kind] = Score(0, 0, math.nan, math.nan, math.nan)
            continue
        result[kind] = Score(count, int(np.unique(days[chosen]).size), float(np.abs(actual - point)[chosen].mean()),
                             float(loss[chosen].mean()), 100.0 * float(np.count_nonzero(actual[chosen] > upper[chosen])) / count)
    return result


@dataclasses.dataclass(frozen=True, eq=False)
class Pairs:
    """The (origin, step ahead) pairs every variant forecast, flattened, with their actual demand."""

    target: np.ndarray  # trace position forecast
    ahead: np.ndarray  # steps ahead, 1 = the next interval
    actual: np.ndarray
    point: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]


def common_pairs(values: np.ndarray, forecasts: dict[str, Forecasts]) -> Pairs:
    """Only the pairs every variant forecast and whose demand was observed: the same for all."""
    first = next(iter(forecasts.values()))
    steps = first.point.shape[1]
    target = first.positions[:, None] + np.arange(steps)[None, :]
    actual = np.where(target < values.size, values[np.minimum(target, values.size - 1)], np.nan)
    valid = ~np.isnan(actual)
    for variant in forecasts.values():
        if not np.array_equal(variant.positions, first.positions):
            raise ValueError("variants forecast from different origins")
        valid &= ~np.isnan(variant.point) & ~np.isnan(variant.upper)
    ahead = np.broadcast_to(np.arange(1, steps + 1)[None, :], target.shape)
    return Pairs(target[valid], ahead[valid], actual[valid], {name: run.point[valid] for name, run in forecasts.items()},
                 {name: run.upper[valid] for name, run in forecasts.items()})


@dataclasses.dataclass(frozen=True, eq=False)
class Outcome:
    case: str
    loaded: trace.Trace
    level: float
    steps: int
    holiday: tuple[int, ...]
    pairs: Pairs
    days: np.ndarray
    classes: np.ndarray
    scores: dict[str, dict[int, Score]]
    seconds: float


def evaluate(case: str, loaded: trace.Trace, forecasts: dict[str, Forecasts]) -> Outcome:
    start, end = loaded.series.start, loaded.series.end
    holiday = holiday_days(case, series.from_epoch(start).year, series.from_epoch(end).year)
    pairs = common_pairs(loaded.series.values, forecasts)
    days = (start + pairs.target * loaded.step) // series.DAY
    classes = day_classes(days, holiday)
    level = next(iter(forecasts.values())).level
    scores = {name: score(pairs.actual, pairs.point[name], pairs.upper[name], level, days, classes) for name in forecasts}
    return Outcome(case, loaded, level, next(iter(forecasts.values())).point.shape[1], holiday, pairs, days, classes,
                   scores, sum(run.seconds for run in forecasts.values()))


def per_holiday(outcome: Outcome) -> list[dict[str, object]]:
    """Each scored holiday's own mean absolute error and pinball loss per variant (for --json)."""
    rows = []
    for day in np.unique(outcome.days[outcome.classes == HOLIDAY]):
        chosen = outcome.days == day
        actual = outcome.pairs.actual[chosen]
        row: dict[str, object] = {"date": holidays.date(int(day)).isoformat(), "forecasts": int(chosen.sum())}
        for name in VARIANTS:
            upper = outcome.pairs.upper[name][chosen]
            loss = np.where(actual >= upper, outcome.level * (actual - upper), (1 - outcome.level) * (upper - actual))
            row[f"mae_{name}"] = float(np.abs(actual - outcome.pairs.point[name][chosen]).mean())
            row[f"pinball_{name}"] = float(loss.mean())
        rows.append(row)
    return rows


def week_of(outcome: Outcome) -> int:
    """The plotted week's Monday (local day number): the week of the first holiday on a weekday in
    the trace's last 365 days that was scored; a rule, so the week is not picked for its result."""
    last = int(outcome.days.max())
    scored = np.unique(outcome.days[outcome.classes == HOLIDAY])
    weekday = scored[((scored + 3) % 7 < 5) & (scored > last - 365)]
    chosen = int(weekday[0]) if weekday.size else int(scored[0])
    return chosen - (chosen + 3) % 7  # day 0 (1970-01-01) was a Thursday


def plot(outcomes: list[Outcome], path: pathlib.Path) -> list[tuple[str, str]]:
    """One holiday week per trace (``week_of``), a panel each: demand, and the provisioned quantile
    one step ahead for each variant; returns each panel's trace and Monday."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates, pyplot

    figure, panels = pyplot.subplots(len(outcomes), 1, figsize=(11, 1.0 + 3.2 * len(outcomes)), dpi=110, squeeze=False)
    weeks = []
    for outcome, axes in zip(outcomes, panels[:, 0]):
        monday = week_of(outcome)
        weeks.append((outcome.case, holidays.date(monday).isoformat()))
        step, start = outcome.loaded.step, outcome.loaded.series.start
        begin = (monday * series.DAY - start) // step
        end = begin + 7 * series.DAY // step
        shaded = [day for day in outcome.holiday if monday <= day < monday + 7]
        for day in shaded:
            axes.axvspan(series.from_epoch(day * series.DAY), series.from_epoch((day + 1) * series.DAY),
                         color="#f2d388", alpha=0.5, lw=0, label="holiday" if day == shaded[0] else None)
        times = [series.from_epoch(start + position * step) for position in range(begin, end)]
        axes.step(times, outcome.loaded.series.values[begin:end], where="post", color="black", lw=1.2, label="demand")
        chosen = (outcome.pairs.ahead == 1) & (outcome.pairs.target >= begin) & (outcome.pairs.target < end)
        moments = [series.from_epoch(start + int(position) * step) for position in outcome.pairs.target[chosen]]
        for name, colour, style in (("none", "#7f7f7f", "--"), ("Sunday", "#1f77b4", "-"), ("Learned", "#d62728", "-")):
            label = "no holidays" if name == "none" else f"holidayEffect: {name}"
            axes.step(moments, outcome.pairs.upper[name][chosen], where="post", color=colour, ls=style, lw=1.0,
                      label=f"quantile forecast, {label}")
        names = " ".join(f"{country}-{subdivision}" if subdivision else country
                         for country, subdivision in CALENDARS[outcome.case])
        axes.set_title(f"{outcome.case}: week of Monday {holidays.date(monday):%Y-%m-%d}, {names} holidays shaded; "
                       f"the engine's p{outcome.level * 100:g} one step ahead", fontsize=10)
        axes.set_ylabel(f"demand per {step // 60} min")
        axes.xaxis.set_major_formatter(dates.DateFormatter("%a %Y-%m-%d"))  # type: ignore[no-untyped-call]  # the trace's wall clock, as UTC
        axes.grid(alpha=0.3)
    figure.legend(*panels[0, 0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=5, frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return weeks


def _number(value: float) -> str:
    """Three significant figures, without an exponent (taxi errors are in the thousands)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _change(value: float, reference: float) -> str:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return ""
    return f" ({100 * (value / reference - 1):+.0f}%)"


def section(outcomes: list[Outcome], arguments: argparse.Namespace, weeks: list[tuple[str, str]],
            elapsed: float) -> list[str]:
    options = []
    if arguments.traces != list(CALENDARS):
        options.append("--traces " + " ".join(arguments.traces))
    if arguments.stride != 1:
        options.append(f"--stride {arguments.stride}")
    if arguments.history is not None:
        options.append(f"--history {arguments.history}")
    if arguments.plot is not None:
        options.append(f"--plot {PLOT}")
    history = f"`history: {arguments.history}`" if arguments.history else "the manifests' 14-day"
    origins = "every observed interval" if arguments.stride == 1 else f"every {arguments.stride}th observed interval"
    lines = [
        HEADER,
        "",
        "```",
        " ".join([COMMAND, *options]),
        "```",
        "",
        *textwrap.wrap(
            "Forecast error around public holidays on the traces that have them, with each bench manifest's "
            f"other settings: no holidays, `holidayEffect: Sunday` and `holidayEffect: Learned` ({history} "
            "history). The engine forecasts as in the backtest (refit every 6 hours, the state carried between "
            f"cycles) from {origins} after the 14-day warm-up, over its whole horizon (1 step to the horizon); "
            "all three variants are scored on the same forecasts, by the local date of the interval forecast: "
            "a holiday, the day after one (not itself a holiday), any other day. The trace's timestamps are its "
            "local wall clock and the replay's calendar is that clock, so holidays fall on the trace's own "
            "dates. Columns: days with a scored forecast; mean absolute error of the point forecast; mean "
            "pinball loss of the quantile the criticality provisions for (lower is better); share of intervals "
            "with demand above that quantile (nominal: 100 - the quantile). Changes in brackets are against "
            "no holidays.", bench.WIDTH),
        "",
        "| trace (calendar) | days | quantile | MAE none | MAE Sunday | MAE Learned | pinball none | pinball Sunday | "
        "pinball Learned | above none | above Sunday | above Learned |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for outcome in outcomes:
        names = ", ".join(f"{country}-{subdivision}" if subdivision else country
                          for country, subdivision in CALENDARS[outcome.case])
        for kind in (HOLIDAY, AFTER, OTHER):
            scores = {name: outcome.scores[name][kind] for name in VARIANTS}
            none = scores["none"]
            if not none.forecasts:
                lines.append(f"| {outcome.case} ({names}) | {CLASSES[kind]}: 0 | p{outcome.level * 100:g} | "
                             + " | ".join(["-"] * 9) + " |")
                continue
            mae = [_number(scores[name].mae) + ("" if name == "none" else _change(scores[name].mae, none.mae))
                   for name in VARIANTS]
            pinball = [_number(scores[name].pinball) + ("" if name == "none" else _change(scores[name].pinball, none.pinball))
                       for name in VARIANTS]
            above = [f"{scores[name].above_percent:.1f}%" for name in VARIANTS]
            lines.append(f"| {outcome.case} ({names}) | {CLASSES[kind]}: {none.days} | p{outcome.level * 100:g} | "
                         + " | ".join([*mae, *pinball, *above]) + " |")
    lines += ["", *textwrap.wrap(holiday_counts(outcomes), bench.WIDTH), ""]
    if weeks:
        shown = " and ".join(f"{case}'s week from Monday {monday}" for case, monday in weeks)
        lines += [
            "![holiday week](docs/bench/holiday-week.png)",
            "",
            *textwrap.wrap(
                f"The picture is {shown}, each chosen by a rule, not for its result: the week of the "
                "first scored holiday on a weekday in the trace's last 365 days. Each panel shows the engine's "
                "forecast at the provisioned quantile one step ahead (what it scales for next) for each "
                "variant, and the demand.", bench.WIDTH),
            "",
        ]
    lines += [*textwrap.wrap(findings(outcomes), bench.WIDTH), "",
              f"Measured in {elapsed / 60:.1f} min with {arguments.jobs} process(es).", ""]
    return lines


def holiday_counts(outcomes: list[Outcome]) -> str:
    parts = []
    for outcome in outcomes:
        start, end = outcome.loaded.series.start, outcome.loaded.series.end
        in_span = [day for day in outcome.holiday if start // series.DAY <= day < -(-end // series.DAY)]
        scored = np.unique(outcome.days[outcome.classes == HOLIDAY])
        weekdays = int(np.count_nonzero((scored + 3) % 7 < 5))
        parts.append(f"{outcome.case}: {len(in_span)} holidays in the trace's span, {scored.size} scored "
                     f"({weekdays} on weekdays)")
    return ("Holiday days: " + "; ".join(parts) + ". A holiday is unscored when it is in the warm-up or "
            "missing from the trace (the call centre is closed on most of them).")


def daily_ratios(outcome: Outcome) -> tuple[float, float, float, float] | None:
    """Mean demand per day on Sundays and on weekday holidays (and the least and most of those),
    each over an ordinary weekday's; None without whole Sundays or weekday holidays."""
    values, step = outcome.loaded.series.values, outcome.loaded.step
    per_day = series.DAY // step
    first = -(-outcome.loaded.series.start // series.DAY)
    offset = (first * series.DAY - outcome.loaded.series.start) // step
    whole = (values.size - offset) // per_day
    totals = values[offset:offset + whole * per_day].reshape(whole, per_day).sum(axis=1)  # NaN unless whole
    days = first + np.arange(whole)
    weekday = (days + 3) % 7  # day 0 (1970-01-01) was a Thursday
    holiday = np.isin(days, np.asarray(outcome.holiday, dtype=np.int64))
    observed = ~np.isnan(totals)
    ordinary = totals[observed & ~holiday & (weekday < 5)]
    sundays = totals[observed & ~holiday & (weekday == 6)]
    holidays_ = totals[observed & holiday & (weekday < 5)]
    if not (ordinary.size and sundays.size and holidays_.size):
        return None
    base_level = float(ordinary.mean())
    return (float(sundays.mean()) / base_level, float(holidays_.mean()) / base_level,
            float(holidays_.min()) / base_level, float(holidays_.max()) / base_level)


def findings(outcomes: list[Outcome]) -> str:
    """What the table shows, from its own figures: the pinball loss on holidays, the day after and
    other days, Sunday and Learned against no holidays, and how holidays and Sundays compare."""
    parts = []
    for outcome in outcomes:
        cells = []
        for kind in (HOLIDAY, AFTER, OTHER):
            none = outcome.scores["none"][kind]
            if none.forecasts and none.pinball > 0:
                cells.append(CLASSES[kind] + "s " + " / ".join(
                    f"{100 * (outcome.scores[name][kind].pinball / none.pinball - 1):+.0f}%" for name in VARIANTS[1:]))
        parts.append(f"{outcome.case} {', '.join(cells)}")
    sentences = ["Pinball loss of the provisioned quantile with holidays (Sunday / Learned) against without: "
                 + "; ".join(parts) + "."]
    helped = [outcome.case for outcome in outcomes
              if min(outcome.scores[name][HOLIDAY].pinball for name in VARIANTS[1:]) < outcome.scores["none"][HOLIDAY].pinball]
    sentences.append("Holidays lower the loss on holidays on " + (", ".join(helped) if helped else "none of these traces")
                     + (" only." if helped else "."))
    ratios = [(outcome.case, daily_ratios(outcome)) for outcome in outcomes]
    shown = [f"{case} Sundays {found[0]:.2f}x, weekday holidays {found[1]:.2f}x ({found[2]:.2f}x to {found[3]:.2f}x)"
             for case, found in ratios if found is not None]
    if shown:
        sentences.append("Demand per day against an ordinary weekday's: " + "; ".join(shown) + ".")
    return " ".join(sentences)


def main() -> int:
    threadpool_limits(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", nargs="+", choices=list(CALENDARS), default=list(CALENDARS))
    parser.add_argument("--stride", type=int, default=1, help="forecast from every Nth observed interval")
    parser.add_argument("--history", help="forecast.history for every variant instead of the manifests' (e.g. 90d)")
    parser.add_argument("--jobs", type=int, default=1, help="forecasts run in this many processes")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the BENCHMARKS.md section here")
    parser.add_argument("--json", type=pathlib.Path, help="write every figure here")
    parser.add_argument("--plot", type=pathlib.Path, help=f"draw a holiday week here (e.g. {PLOT})")
    parser.add_argument("--plot-traces", nargs="+", choices=list(CALENDARS), default=["ed-triage", "taxi-dispatch"],
                        help="a panel for each of these traces (those replayed)")
    arguments = parser.parse_args()
    if arguments.stride < 1:
        parser.error("--stride must be at least 1")
    if not bench.TRACES.is_dir():
        print(f"error: {bench.TRACES} not found; the benchmark replays ../shared/traces", file=sys.stderr)
        return 2
    files = dict(bench.CASES)
    tasks = [Task(case, files[case], variant, arguments.stride, arguments.history) for case in arguments.traces for variant in VARIANTS]
    started = time.perf_counter()
    results: dict[tuple[str, str], Forecasts] = {}

    def done(task: Task, forecasts: Forecasts) -> None:
        results[(task.case, task.variant)] = forecasts
        print(f"forecast {task.case} {task.variant}: {forecasts.positions.size} origins in {forecasts.seconds:.0f}s",
              flush=True)

    for finished in bench.in_processes(_forecast, tasks, arguments.jobs):
        done(*finished)
    outcomes = [evaluate(case, trace.load(bench.TRACES / files[case]),
                         {variant: results[(case, variant)] for variant in VARIANTS}) for case in arguments.traces]
    weeks = []
    if arguments.plot is not None:
        shown = [outcome for outcome in outcomes if outcome.case in arguments.plot_traces]
        weeks = plot(shown or outcomes[:1], arguments.plot)
    lines = section(outcomes, arguments, weeks, time.perf_counter() - started)
    print("\n".join(lines))
    if arguments.markdown:
        arguments.markdown.write_text("\n".join(lines) + "\n")
    if arguments.json:
        arguments.json.write_text(json.dumps([{
            "trace": outcome.case, "quantile": outcome.level, "horizon_steps": outcome.steps,
            "scores": {name: {CLASSES[kind]: dataclasses.asdict(figures) for kind, figures in by_class.items()}
                       for name, by_class in outcome.scores.items()},
            "holidays": per_holiday(outcome),
        } for outcome in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
