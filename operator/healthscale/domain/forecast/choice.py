"""Which model forecasts a series, and the entry points the planner, the operator and the backtest call.

- ``MODELS``: the registry, model name -> fit function (the CRD's ``ForecastModel`` lists the same
  names plus ``auto``; a unit test holds the two equal).
- ``auto`` fits each of ``AUTO_CANDIDATES`` on all but the newest two days of history, forecasts
  them from rolling origins, and scores each model by the pinball loss of the quantile the planner
  provisions for (the point and the band together). The default (the first candidate) is always
  eligible; another only while its loss is at least 10% lower than the default's (``SWITCH_MARGIN``)
  and lower beyond chance (a paired t-test on non-overlapping forecasts, ``SIGNIFICANCE``), since the
  lowest of several noisy losses is partly luck. Among the eligible, the model in use keeps its place
  unless another's loss is 10% lower, so the choice does not thrash. Some candidates need more
  history than others (``MIN_AUTO_HISTORY``). The same validation widens each model's band by its
  out-of-sample over in-sample error.
- ``fit``, ``predict``, ``forecast``: one cycle's work on a ``series.Series``; ``State`` is what
  the operator keeps per ClinicalSLO between cycles. ``staleness`` says whether the newest demand
  is current.

A forecast that cannot be made is a ``NoForecast`` with a reason, never zeros.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Callable

import numpy as np
from statsmodels.stats.weightstats import DescrStatsW

from healthscale.domain import series as series_
from healthscale.domain.forecast import (base, harmonic, holidays as holidays_, holt_winters, mstl, seasonal_naive,
                                         spread as spread_)

Fitter = Callable[[base.Training, base.Settings], base.Fitted]

MODELS: dict[str, Fitter] = {
    harmonic.NAME: harmonic.fit,
    seasonal_naive.NAME: seasonal_naive.fit,
    mstl.NAME: mstl.fit,
    holt_winters.NAME: holt_winters.fit,
}
"""Every model a spec may name (besides ``auto``)."""

AUTO_CANDIDATES = (harmonic.NAME, seasonal_naive.NAME, mstl.NAME)
"""What ``auto`` chooses from; the first is the default, always eligible."""

MIN_AUTO_HISTORY = {mstl.NAME: mstl.AUTO_HISTORY}
"""Candidates ``auto`` leaves out on shorter histories (in seconds of observed span)."""

SWITCH_MARGIN = 0.9
"""A challenger's loss must be at most this share of the default's to be eligible, and of the
incumbent's to replace it."""

SIGNIFICANCE = 0.025
"""A challenger's loss must also be lower than the default's beyond chance: a paired one-sided
t-test at this level (about two standard errors)."""

CHOICE_LEVEL = 0.9
"""The quantile whose pinball loss ``auto`` compares when the settings carry none."""

FRESH_SECONDS = 600
"""Demand observed within two steps, or this many seconds, is current."""


@dataclasses.dataclass(frozen=True)
class Validation:
    """Rolling-origin result of one model on the newest history."""

    loss: float
    """Mean pinball loss of the provisioned quantile, in demand units: what ``auto`` minimises."""
    error: float
    """Mean absolute error of the point forecast, in demand units (reported, not chosen on)."""
    spread_ratio: float
    """Out-of-sample over in-sample mean absolute error (transformed units), between 1 and 3."""
    by_block: base.FloatArray = dataclasses.field(default_factory=lambda: np.empty(0))
    """Mean loss per block of origins whose forecasts do not overlap: the paired test's samples."""


FAILED = Validation(math.inf, math.inf, 1.0)
UNMEASURED = Validation(math.nan, math.nan, 1.0)


def validate(name: str, training: base.Training, values: base.FloatArray, settings: base.Settings,
             scale: base.Scale) -> Validation:
    """Fit on all but the newest stretch of history, then forecast it from rolling origins and score
    the point (absolute error) and the provisioned quantile (pinball loss)."""
    z, step = training.z, training.step
    steps = settings.horizon_steps
    holdout = min(max(steps * 2, 2 * series_.DAY // step), int(z.shape[0] * 0.3))
    split = z.shape[0] - holdout
    if holdout < 1 or np.count_nonzero(~np.isnan(z[:split])) < 2:
        return FAILED
    fitted = MODELS[name](training.head(split, training.span - holdout * step), settings)
    stride = max(1, steps // 4)
    origins = np.arange(split, z.shape[0], stride, dtype=np.int64)
    paths_z = fitted.paths_z(z, training.start, origins, steps)
    index = np.minimum(origins[:, None] + np.arange(steps)[None, :], z.shape[0] - 1)
    inside = (origins[:, None] + np.arange(steps)[None, :]) < z.shape[0]
    actual = np.where(inside, values[index], np.nan)
    errors = np.abs(actual - scale.inverse(paths_z))
    errors = errors[~np.isnan(errors)]
    if not errors.size:
        return FAILED
    errors_z = np.abs(np.where(inside, z[index], np.nan) - paths_z)
    errors_z = errors_z[~np.isnan(errors_z)]
    expected = fitted.in_sample_mae
    ratio = float(np.clip(errors_z.mean() / expected, 1.0, 3.0)) if expected > 0 else 1.0
    # The quantile the planner provisions for, with the band widened as the final fit's will be.
    level = settings.extra_level if settings.extra_level is not None else CHOICE_LEVEL
    median, offset = fitted.offsets_z(0.5, steps), fitted.offsets_z(level, steps)
    upper = scale.inverse(paths_z + (median + ratio * (offset - median))[None, :])
    loss = np.where(actual >= upper, level * (actual - upper), (1 - level) * (upper - actual))
    block = -(-steps // stride)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a block of gaps only: NaN, dropped below
        per_origin = np.nanmean(loss, axis=1)
        count = per_origin.shape[0] // block
        by_block = np.nanmean(per_origin[: count * block].reshape(count, block), axis=1)
    return Validation(float(np.nanmean(loss)), float(errors.mean()), ratio, by_block)


def choose(results: dict[str, Validation], incumbent: str | None) -> str:
    """The candidate to use, given each one's validation and the one in use (if any).

    The default (the first candidate) is always eligible; another only while its loss is at least
    10% lower than the default's and lower beyond chance: the lowest of three noisy losses is partly
    luck, and a model chosen on luck does worse than the default it replaced. Among the eligible,
    the one in use keeps its place unless another's loss is 10% lower, so the choice does not thrash.
    """
    default = AUTO_CANDIDATES[0]
    eligible = [name for name in results if name == default or (
        results[name].loss <= SWITCH_MARGIN * results[default].loss and clearly_better(results[name], results[default]))]
    chosen = min(eligible, key=lambda name: results[name].loss)
    keep = incumbent if incumbent in eligible else default
    if chosen != keep and results[chosen].loss > SWITCH_MARGIN * results[keep].loss:
        chosen = keep
    return chosen


def clearly_better(challenger: Validation, incumbent: Validation) -> bool:
    """Whether the challenger's loss is lower than the incumbent's beyond chance.

    The holdout is short (two days), so the lowest loss is partly luck: the paired one-sided t-test
    (statsmodels' ``DescrStatsW.ttest_mean``) on blocks of non-overlapping forecasts must reject
    "no better" at ``SIGNIFICANCE``. Fewer than three blocks cannot show it either way: the lower
    loss decides.
    """
    if challenger.by_block.shape != incumbent.by_block.shape:
        return challenger.loss < incumbent.loss
    difference = challenger.by_block - incumbent.by_block
    difference = difference[~np.isnan(difference)]
    if difference.shape[0] < 3:
        return challenger.loss < incumbent.loss
    if not np.any(difference != difference[0]):
        return bool(difference[0] < 0)
    _, p_value, _ = DescrStatsW(difference).ttest_mean(0.0, alternative="smaller")
    return bool(p_value < SIGNIFICANCE)


@dataclasses.dataclass(frozen=True, eq=False)
class State:
    """What a series' forecaster keeps between cycles (the operator caches it per ClinicalSLO)."""

    fitted: base.Fitted
    scale: base.Scale
    error: float | None
    settings: base.Settings
    notes: tuple[str, ...]
    spread: spread_.Spread | None = None
    """The band's width by time of day (``spread``); None keeps the pooled band."""


def _prepare(history: series_.Series) -> tuple[base.FloatArray, tuple[str, ...]]:
    values = history.values.astype(np.float64, copy=True)
    notes = []
    invalid = ~np.isfinite(values) & ~np.isnan(values)
    negative = values < 0
    if invalid.any() or negative.any():
        notes.append(f"ignored {int((invalid | negative).sum())} infinite or negative samples")
        values[invalid | negative] = np.nan
    return values, tuple(notes)


def _year(moment: int) -> int:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).year


def calendar(settings: base.Settings, start: int, until: int) -> base.Calendar:
    """The local calendar for a fit on ``[start, until)`` that predicts for up to ``history`` after it."""
    if not settings.holidays:
        return base.Calendar(settings.timezone)
    # A day either side covers any time zone's local date; a fit is used for at most ``history``
    # (after that a failed refit drops the state), plus the horizon.
    first = _year(start - series_.DAY)
    last = _year(until + settings.history + settings.horizon + series_.DAY)
    return base.Calendar(settings.timezone, holidays_.days(settings.holidays, first, last), settings.holiday_effect)


def _naive_scale(values: base.FloatArray) -> float:
    differences = np.abs(np.diff(values))
    differences = differences[~np.isnan(differences)]
    return float(differences.mean()) if differences.size else 0.0


def fit(history: series_.Series, settings: base.Settings, previous: State | None = None) -> State | base.NoForecast:
    """Fit the configured model (or choose one for ``auto``) on ``history``."""
    if settings.model != base.AUTO and settings.model not in MODELS:
        return base.NoForecast("FitFailed", f"unknown model {settings.model!r}; known: auto, {', '.join(MODELS)}")
    values, notes = _prepare(history)
    observed = np.flatnonzero(~np.isnan(values))
    if observed.size == 0:
        return base.NoForecast("NoData", "the demand query returned no samples in the history window")
    span = int(observed[-1] - observed[0] + 1) * history.step
    needed_points = max(4, (base.MIN_HISTORY // history.step) // 2)
    if span < base.MIN_HISTORY or observed.size < needed_points:
        return base.NoForecast(
            "InsufficientHistory",
            f"{_hours(span)} of demand history with {observed.size} samples; a forecast needs at least "
            f"{_hours(base.MIN_HISTORY)} with {needed_points} samples",
        )
    trimmed = values[observed[0]:]
    start = history.start + int(observed[0]) * history.step
    scale = base.Scale.of(trimmed)
    training = base.Training(scale.forward(trimmed), start, history.step, span,
                             calendar(settings, start, history.end))
    if np.nanmax(trimmed) == np.nanmin(trimmed):
        notes = (*notes, "flat series: every sample equals " + f"{float(np.nanmax(trimmed)):g}")
    if span < base.WEEKLY_HISTORY:
        notes = (*notes, f"weekly cycle not modelled: {_hours(span)} of history, needs 7d")
    naive = _naive_scale(trimmed)
    try:
        if settings.model == base.AUTO:
            results = {}
            for name in AUTO_CANDIDATES:
                if training.span < MIN_AUTO_HISTORY.get(name, 0):
                    continue
                try:
                    results[name] = validate(name, training, trimmed, settings, scale)
                except (np.linalg.LinAlgError, ValueError) as error:
                    # One candidate failing leaves the others to choose from; the note says why.
                    results[name] = FAILED
                    notes = (*notes, f"{name} left out of the choice: {error}")
            chosen = choose(results, previous.fitted.name if previous is not None else None)
            validation = results[chosen]
        else:
            chosen = settings.model
            validation = validate(chosen, training, trimmed, settings, scale) if settings.validate else UNMEASURED
        fitted = MODELS[chosen](training, settings).widened(validation.spread_ratio)
        level = settings.extra_level if settings.extra_level is not None else CHOICE_LEVEL
        spread = spread_.fit(fitted, training, settings.horizon_steps, level) if spread_.ENABLED else None
    except (np.linalg.LinAlgError, ValueError) as error:
        return base.NoForecast("FitFailed", f"{settings.model} model could not be fitted: {error}")
    error_ratio = validation.error / naive if naive > 0 and math.isfinite(validation.error) else None
    return State(fitted, scale, error_ratio, settings, notes, spread)


def predict(state: State, recent: series_.Series, origin: int) -> base.Outcome:
    """Forecast ``[origin, origin + horizon)`` using the fitted state and the newest samples."""
    settings = state.settings
    latest = recent.last_observed()
    if latest is None:
        return base.NoForecast("NoData", "no recent demand samples")
    staleness_ = origin - (latest[0] + recent.step)
    allowed = max(settings.horizon, 3600)
    if staleness_ > allowed and not _usually_quiet(recent, origin - allowed, origin):
        return base.NoForecast(
            "StaleData", f"the newest demand sample is {_hours(staleness_)} old (more than {_hours(allowed)})"
        )
    values, _ = _prepare(recent)
    steps = settings.horizon_steps
    z = state.scale.forward(values)
    z = np.where(np.isnan(values), np.nan, z)
    aligned_origin = recent.start + -(-(origin - recent.start) // recent.step) * recent.step
    if aligned_origin > recent.end:
        z = np.concatenate([z, np.full((aligned_origin - recent.end) // recent.step, np.nan)])
    point_z, quantiles_z = state.fitted.predict_z(z, recent.start, aligned_origin, steps, settings.levels)
    if state.spread is not None:
        # Upper quantiles only: the median is the point forecast, and the planner reads no lower one.
        width = state.spread.at(aligned_origin + recent.step * np.arange(steps, dtype=np.int64))
        upper = np.asarray(settings.levels) > 0.5
        quantiles_z = np.where(upper[:, None], point_z[None, :] + width[None, :] * (quantiles_z - point_z[None, :]),
                               quantiles_z)
    quantiles = {level: state.scale.inverse(quantiles_z[row]) for row, level in enumerate(settings.levels)}
    if not all(np.all(np.isfinite(q)) for q in quantiles.values()):
        return base.NoForecast("FitFailed", f"{state.fitted.name} produced non-finite values")
    return base.Forecast(
        model=state.fitted.name,
        start=aligned_origin,
        step=recent.step,
        point=state.scale.inverse(point_z),
        quantiles=quantiles,
        error=state.error,
        notes=state.notes,
    )


def staleness(history: series_.Series, now: int) -> base.NoForecast | None:
    """Why the newest demand is too old to justify removing capacity, or None when it is current.

    Old data may still forecast a rise (scaling up on it is safe), but never a scale-down: the
    planner holds replicas while this is set. Silence at an hour that is usually silent (a clinic
    at night) is the series' normal shape, not staleness.
    """
    allowed = max(2 * history.step, FRESH_SECONDS)
    latest = history.last_observed()
    if latest is None:
        return base.NoForecast("StaleData", "no demand sample has been observed")
    age = now - (latest[0] + history.step)
    if age <= allowed or _usually_quiet(history, now - allowed, now):
        return None
    return base.NoForecast("StaleData", f"the newest demand sample is {_hours(age)} old (current means within {_hours(allowed)})")


def _usually_quiet(recent: series_.Series, begin: int, end: int) -> bool:
    """True when ``[begin, end)`` had no samples on most of the previous seven days too.

    A clinic closed at night has no demand samples every night: that silence is its normal
    shape, and the forecast for the morning is exactly what is needed. Silence at an hour that
    usually has samples is a broken metrics pipeline, and the data is stale.
    """
    checked = quiet = 0
    for days_back in range(1, 8):
        first = (begin - days_back * series_.DAY - recent.start) // recent.step
        last = (end - days_back * series_.DAY - recent.start) // recent.step
        if first < 0:
            break
        span = recent.values[first:last]
        if span.size == 0:
            continue
        checked += 1
        quiet += bool(np.all(np.isnan(span)))
    return checked >= 2 and 2 * quiet >= checked


def needs_refit(state: State | None, settings: base.Settings, now: int) -> bool:
    return state is None or state.settings != settings or now - state.fitted.fitted_until >= settings.refit_every


def forecast(history: series_.Series, now: int, settings: base.Settings,
             state: State | None = None) -> tuple[base.Outcome, State | None]:
    """One cycle: refit when due (or on first use), then predict from ``now``.

    ``history`` holds the samples before ``now``; the returned state is handed back next cycle.
    """
    window = history.since(now - settings.history).before(now)
    if needs_refit(state, settings, now):
        fitted = fit(window, settings, previous=state)
        if isinstance(fitted, base.NoForecast):
            return fitted, state if state is not None and now - state.fitted.fitted_until < settings.history else None
        state = fitted
    assert state is not None
    return predict(state, window, now), state


def _hours(seconds: int) -> str:
    if seconds >= series_.DAY and seconds % series_.DAY == 0:
        return f"{seconds // series_.DAY}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h".replace(".0h", "h")
    return f"{seconds // 60}m"

