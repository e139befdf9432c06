"""Every input the CRDs admit gives a model or a ManifestError naming the field, never another exception
or a hang: bounded durations, tz-database directories, cron expressions that never fire, non-finite
numbers, the history cap, dates near the ends of time, and a property over documents generated from
the CRD schemas (CEL rules evaluated with cel-python) whose accepted schedules the calendar expands.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import pathlib
import re
import typing
import warnings
import zoneinfo
from collections.abc import Callable
from typing import Any

import celpy
import celpy.adapter
import celpy.celtypes
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from healthscale.api import clinicalslo, cron, durations, manifests, surgeschedule
from healthscale.domain import calendar, planning

# See test_planning_properties.py: import the failure printer once with its DeprecationWarning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"
UTC = dt.timezone.utc
Document = dict[str, Any]


def slo_document() -> Document:
    return {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "lab-results"},
        "spec": {"journey": "View lab results", "targetRef": {"name": "lab-api"},
                 "indicators": {"demand": "sum(rate(http_requests_total[5m]))"},
                 "capacity": {"perReplica": 25, "maxReplicas": 8},
                 "objectives": {"latency": {"percentile": 95, "thresholdSeconds": 1.5}},
                 "residency": {"dataClass": "phi", "regions": ["eu-west-1"]}},
    }


def schedule_document() -> Document:
    return {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "SurgeSchedule", "metadata": {"name": "clinics"},
        "spec": {"timezone": "America/Chicago", "sloRefs": ["lab-results"],
                 "surges": [{"name": "clinic", "cron": "0 9 * * 2", "duration": "3h", "minReplicas": 4},
                            {"name": "flu", "start": "2026-12-01", "end": "2027-03-01", "multiplier": 1.3}]},
    }


def _set(path: str, value: Any) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        node: Any = document
        *parents, last = re.findall(r"[^.\[\]]+", path)
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(last) if last.isdigit() else last] = value
    return mutate


SLO, SCHEDULE = "ClinicalSLO", "SurgeSchedule"
INF, NAN = float("inf"), float("nan")

BAD_INPUTS: list[tuple[str, Callable[[Document], None], str, str]] = [
    (SCHEDULE, _set("spec.surges[0].leadTime", "100001w"), "spec.surges[0].leadTime", "must be at most 7d"),
    (SCHEDULE, _set("spec.surges[0].duration", "99999999999999999999w"), "spec.surges[0].duration",
     "too long a time to be a duration"),
    (SLO, _set("spec.forecast.history", "99999999999999999999w"), "spec.forecast.history",
     "too long a time to be a duration"),
    (SLO, _set("spec.objectives.window", "1" * 40 + "s"), "spec.objectives.window", "at most 32 characters"),
    (SLO, _set("spec.forecast.step", "30s"), "spec.forecast.step", "must be between 1m and 1d"),
    (SLO, _set("spec.forecast.horizon", "8d"), "spec.forecast.horizon", "must be at most 7d"),
    (SLO, _set("spec.forecast", {"history": "90d", "step": "1m", "horizon": "1h"}), "spec.forecast",
     "spans 129600 steps of 1m; at most 100000"),
    (SCHEDULE, _set("spec.surges[0].duration", "367d"), "spec.surges[0].duration", "must be between 1s and 366d"),
    (SCHEDULE, _set("spec.timezone", "America"), "spec.timezone", "not an IANA time zone"),
    (SCHEDULE, _set("spec.timezone", "Europe"), "spec.timezone", "not an IANA time zone"),
    (SLO, _set("spec.forecast", {"timezone": "posix"}), "spec.forecast.timezone", "not an IANA time zone"),
    (SLO, _set("spec.forecast", {"timezone": "../etc/passwd"}), "spec.forecast.timezone", "pattern"),
    (SCHEDULE, _set("spec.surges[0].cron", "0 0 30 2 *"), "spec.surges[0]",
     "never fires: February has no day 30"),
    (SCHEDULE, _set("spec.surges[0].cron", "0 0 31 4 *"), "spec.surges[0]", "never fires: April has no day 31"),
    (SCHEDULE, _set("spec.surges[0].cron", "0 0 30,31 FEB *"), "spec.surges[0]",
     "never fires: February has no day 30 or 31"),
    (SCHEDULE, _set("spec.surges[0].cron", "0 0 31 4,6,9,11 *"), "spec.surges[0]",
     "never fires: April, June, September and November have no day 31"),
    (SCHEDULE, _set("spec.surges[0].cron", "0 0 ³ * *"), "spec.surges[0]", "is not a number"),
    (SCHEDULE, _set("spec.surges[0]", {"name": "s", "cron": "* * * * *", "duration": "2d", "multiplier": 2}),
     "spec.surges[0]", "at most 2000 may be open at once"),
    (SCHEDULE, _set("spec.surges[1].multiplier", INF), "spec.surges[1].multiplier", "finite number"),
    (SCHEDULE, _set("spec.surges[1].multiplier", NAN), "spec.surges[1].multiplier", "finite number"),
    (SLO, _set("spec.capacity.perReplica", INF), "spec.capacity.perReplica", "finite number"),
    (SLO, _set("spec.capacity.perReplica", NAN), "spec.capacity.perReplica", "finite number"),
    (SLO, _set("spec.capacity.perReplica", 1e-300), "spec.capacity", "perReplica must be at least 0.000001"),
    (SLO, _set("spec.capacity.headroomPercent", NAN), "spec.capacity.headroomPercent", "finite number"),
    (SLO, _set("spec.forecast", {"quantile": NAN}), "spec.forecast.quantile", "finite number"),
    (SLO, _set("spec.objectives.latency.percentile", NAN), "spec.objectives.latency.percentile", "finite number"),
    (SLO, _set("spec.objectives.latency.thresholdSeconds", INF), "spec.objectives.latency.thresholdSeconds",
     "finite number"),
    (SLO, _set("spec.objectives.availability", NAN), "spec.objectives.availability", "finite number"),
    (SLO, _set("spec.scaleDown", {"maxStepPercent": NAN}), "spec.scaleDown.maxStepPercent", "finite number"),
    (SCHEDULE, _set("spec.surges[1].start", "0001-01-01"), "spec.surges[1].start", "between 1970 and 8999"),
    (SCHEDULE, _set("spec.surges[1].end", "9999-12-31T23:59"), "spec.surges[1].end", "between 1970 and 8999"),
    (SCHEDULE, _set("spec.surges[1].start", dt.date(2026, 12, 1)), "spec.surges[1].start", "quoted in YAML"),
    (SCHEDULE, _set("spec.sloRefs", ["a" * 254]), "spec.sloRefs[0]", "at most 253 characters"),
    (SCHEDULE, _set("spec.sloRefs", ["x"] * 257), "spec.sloRefs", "at most 256 items"),
    (SLO, _set("spec.residency.regions", [""]), "spec.residency.regions[0]", "at least 1 character"),
]
BAD_IDS = [
    "a lead time of 100001 weeks is refused as over 7d",
    "a duration past what a timedelta holds is a clear error, not an OverflowError",
    "a history past what a timedelta holds is a clear error",
    "a duration longer than 32 characters is refused",
    "a step under a minute is refused",
    "a horizon over 7 days is refused",
    "90 days of 1-minute history is over the points cap",
    "a surge over 366 days is refused",
    "America, a tz directory, is not a time zone",
    "Europe, a tz directory, is not a time zone",
    "posix, a tz directory, is not a forecast time zone",
    "a path out of the tz database fails the pattern",
    "February 30 never fires, and the error says why",
    "April 31 never fires",
    "neither February 30 nor 31 exists",
    "no 30-day month has a day 31",
    "a superscript digit is not a cron number",
    "every minute for two days is too many open windows",
    "an infinite multiplier is refused",
    "a NaN multiplier is refused",
    "an infinite perReplica is refused",
    "a NaN perReplica is refused",
    "a perReplica small enough to overflow the replica count is refused",
    "a NaN headroom is refused",
    "a NaN quantile is refused",
    "a NaN percentile is refused",
    "an infinite latency threshold is refused",
    "a NaN availability is refused",
    "a NaN scale-down step is refused",
    "a start in year 1 is refused",
    "an end in year 9999 is refused",
    "an unquoted YAML date is refused with a hint to quote it",
    "an sloRef longer than an object name is refused",
    "more than 256 sloRefs are refused",
    "an empty region is refused",
]


@pytest.mark.parametrize(("kind", "mutate", "field", "fragment"), BAD_INPUTS, ids=BAD_IDS)
def test_bad_inputs_give_a_manifest_error_naming_the_field(
    kind: str, mutate: Callable[[Document], None], field: str, fragment: str
) -> None:
    document = slo_document() if kind == SLO else schedule_document()
    mutate(document)
    model: Any = clinicalslo.ClinicalSLO if kind == SLO else surgeschedule.SurgeSchedule
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(model, document)
    assert any(problem.startswith(f"{field}: ") and fragment in problem for problem in caught.value.problems), (
        caught.value.problems)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.surges[0].cron", "0 0 29 2 *"),
        ("spec.surges[0].cron", "0 0 31 * *"),
        ("spec.surges[0].cron", "0 0 30 2 MON"),
        ("spec.surges[0].cron", "0 0 */30 2 *"),
        ("spec.surges[0].leadTime", "7d"),
        ("spec.surges[0].duration", "366d"),
        ("spec.surges[1].start", "1970-01-01"),
        ("spec.surges[1].end", "8999-12-31T23:59:59"),
        ("spec.timezone", "Factory"),
    ],
    ids=[
        "February 29 fires in leap years",
        "day 31 fires in the months that have one",
        "February 30 or any Monday fires on Mondays",
        "every 30th day from the 1st fires on the 1st",
        "a lead time of exactly 7d passes",
        "a surge of exactly 366d passes",
        "the first day of 1970 passes",
        "the last second of 8999 passes",
        "Factory, a real zone file, passes",
    ],
)
def test_edge_values_within_the_bounds_are_accepted(path: str, value: str) -> None:
    document = schedule_document()
    _set(path, value)(document)
    manifests.parse(surgeschedule.SurgeSchedule, document)


def test_the_default_history_at_one_minute_fits_the_points_cap() -> None:
    forecast = clinicalslo.Forecast.model_validate({"step": "1m"})
    assert forecast.history // forecast.step == 20160 <= clinicalslo.MAX_HISTORY_POINTS


@pytest.mark.parametrize(
    "manifest", sorted((pathlib.Path(__file__).resolve().parents[2] / "bench" / "manifests").glob("*.slo.yaml")),
    ids=lambda path: f"the benchmark's {path.name} fits the bounds",
)
def test_the_benchmark_manifests_fit_the_bounds(manifest: pathlib.Path) -> None:
    manifests.load_one(clinicalslo.ClinicalSLO, manifest)


def _tz_directories() -> list[str]:
    found = set()
    for root in zoneinfo.TZPATH:
        base = pathlib.Path(root)
        if base.is_dir():
            found |= {str(path.relative_to(base)) for path in base.rglob("*") if path.is_dir()}
    return sorted(found)


def test_every_directory_in_the_tz_database_is_refused_with_a_value_error() -> None:
    names = _tz_directories() + ["America", "Europe", "posix", "right"]
    for name in names:
        with pytest.raises(ValueError, match="not an IANA time zone"):
            clinicalslo.validate_timezone(name)


@pytest.mark.parametrize(
    ("expression", "span", "expected"),
    [
        ("0 7 * * 1-5", dt.timedelta(hours=2), 1),
        ("0,30 0 * * *", dt.timedelta(minutes=10), 2),
        ("* * * * *", dt.timedelta(minutes=1), 122),
        ("@daily", dt.timedelta(days=366), 367),
        ("*/5 * * * *", dt.timedelta(days=5), 5 * 288 + 25),
    ],
    ids=[
        "a weekday morning surge of 2h overlaps itself once",
        "two starts half an hour apart both fall in a 10-minute stretch with the 2h clock-change margin",
        "every minute for a minute counts the 2h margin's starts",
        "a daily surge of 366 days overlaps itself 367 times",
        "every five minutes for five days counts whole days and the margin",
    ],
)
def test_most_starts_within_bounds_how_many_windows_of_a_surge_are_open_at_once(
    expression: str, span: dt.timedelta, expected: int
) -> None:
    assert cron.parse(expression).most_starts_within(span) == expected


@pytest.mark.parametrize(
    ("zone", "surge"),
    [
        ("Pacific/Kiritimati", {"name": "s", "start": "1970-01-01", "end": "1970-01-02", "minReplicas": 2}),
        ("Etc/GMT+12", {"name": "s", "start": "8999-12-31", "end": "8999-12-31T23:59:59", "minReplicas": 2}),
        ("Pacific/Kiritimati", {"name": "s", "cron": "0 0 1 1 *", "duration": "366d", "leadTime": "7d",
                                "minReplicas": 2}),
        ("Etc/GMT+12", {"name": "s", "cron": "0 0 29 2 1", "duration": "1s", "leadTime": "7d", "multiplier": 2}),
        ("America/Chicago", {"name": "s", "cron": "*/2 * * * *", "duration": "1d", "multiplier": 2}),
    ],
    ids=[
        "a range on the first day of 1970 at UTC+14",
        "a range on the last day of 8999 at UTC-12",
        "a yearly surge as long as allowed, with the longest lead, at UTC+14",
        "a leap day or any Monday at UTC-12",
        "the most overlapping surge allowed",
    ],
)
def test_the_calendar_answers_at_both_ends_of_time(zone: str, surge: dict[str, Any]) -> None:
    cal = calendar.Calendar(zone, [surgeschedule.Surge.model_validate(surge)])
    for moment in (dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(9000, 1, 1, tzinfo=UTC)):
        cal.windows(moment - dt.timedelta(days=1), moment + dt.timedelta(days=9))
        cal.next_per_surge(moment)
        cal.next_window(moment)
        cal.in_effect(moment, dt.timedelta(days=1))


# --- The CRD says the bounds the models enforce --------------------------------------------------------------


def _crd(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CRDS / name).read_text(encoding="utf-8"))
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


SLO_SCHEMA = _crd("clinicalslos.healthscale.io.yaml")
SCHEDULE_SCHEMA = _crd("surgeschedules.healthscale.io.yaml")

BOUNDED = [
    (SLO_SCHEMA, "spec.objectives.window", clinicalslo.Objectives, "window"),
    (SLO_SCHEMA, "spec.forecast.history", clinicalslo.Forecast, "history"),
    (SLO_SCHEMA, "spec.forecast.step", clinicalslo.Forecast, "step"),
    (SLO_SCHEMA, "spec.forecast.horizon", clinicalslo.Forecast, "horizon"),
    (SCHEDULE_SCHEMA, "spec.surges.duration", surgeschedule.Surge, "duration"),
    (SCHEDULE_SCHEMA, "spec.surges.leadTime", surgeschedule.Surge, "lead_time"),
]
BOUNDED_IDS = ["the SLO window", "forecast history", "forecast step", "forecast horizon", "surge duration",
               "surge lead time"]


def _node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        schema = schema["properties"][part]
        if schema.get("type") == "array":
            schema = schema["items"]
    return schema


def _bounds(model: type[Any], field: str) -> durations.Bounds:
    """The Bounds in a field's annotation, also inside ``Annotated[...] | None``."""
    info = model.model_fields[field]
    found, pending = list(info.metadata), [info.annotation]
    while pending:
        annotation = pending.pop()
        found += getattr(annotation, "__metadata__", ())
        pending += typing.get_args(annotation)
    (bounds,) = {item for item in found if isinstance(item, durations.Bounds)}
    return bounds


@pytest.mark.parametrize(("schema", "path", "model", "field"), BOUNDED, ids=BOUNDED_IDS)
def test_every_bounded_duration_states_its_bound_and_the_crd_admits_it(
    schema: dict[str, Any], path: str, model: type[Any], field: str
) -> None:
    bounds = _bounds(model, field)
    node = _node(schema, path)
    assert durations.format(bounds.maximum) in node["description"]
    longest_in_seconds = f"{int(bounds.maximum.total_seconds())}s"
    for text in (durations.format(bounds.maximum), longest_in_seconds, durations.format(bounds.minimum)):
        assert re.search(node["pattern"], text), text
    # The headline overflow is refused by the API server already.
    assert not re.search(node["pattern"], "100001w")


def test_the_caps_are_in_the_crd_descriptions() -> None:
    assert f"at most {clinicalslo.MAX_HISTORY_POINTS} steps" in _node(SLO_SCHEMA, "spec.forecast.history")["description"]
    assert f"at most {surgeschedule.MAX_OPEN_WINDOWS} of its windows" in " ".join(
        _node(SCHEDULE_SCHEMA, "spec.surges.cron")["description"].split())


# --- Property: whatever the CRD admits, the models answer in words and the calendar never raises ----------------

_CEL = celpy.Environment()


@functools.lru_cache(maxsize=None)
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def _defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server stores: structural defaults filled in, numbers as doubles."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = _defaulted(value[name], child)
    elif schema.get("type") == "array" and isinstance(value, list):
        value = [_defaulted(item, schema["items"]) for item in value]
    elif schema.get("type") == "number" and isinstance(value, int):
        value = float(value)
    return value


@functools.lru_cache(maxsize=100_000)
def _holds(rule: str, value_json: str) -> bool:
    """One rule on one value; an evaluation error rejects, as in Kubernetes. Cached: cel-python is slow."""
    result = _program(rule).evaluate({"self": celpy.adapter.json_to_cel(json.loads(value_json))})
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _cel_admits(value: Any, schema: dict[str, Any]) -> bool:
    """Every x-kubernetes-validations rule holds at every node."""
    rules = schema.get("x-kubernetes-validations", [])
    if rules and not all(_holds(rule["rule"], json.dumps(value, sort_keys=True)) for rule in rules):
        return False
    if schema.get("type") == "object" and isinstance(value, dict):
        children = schema.get("properties", {})
        return all(_cel_admits(child, children[name]) for name, child in value.items() if name in children)
    if schema.get("type") == "array" and isinstance(value, list):
        return all(_cel_admits(item, schema["items"]) for item in value)
    return True


def _holds_here(value: Any, schema: dict[str, Any]) -> bool:
    """The node's own CEL rules hold for ``value`` once defaulted (children are checked where generated)."""
    stored = _defaulted(copy.deepcopy(value), schema)
    return all(_cel_admits(stored, {"x-kubernetes-validations": [rule]})
               for rule in schema.get("x-kubernetes-validations", []))


def _cron_field(low: int, high: int, names: dict[str, int]) -> st.SearchStrategy[str]:
    """One cron field inside its range (as the CRD's range rule admits): ends, steps, ranges, names, and
    the days that only some months have. Cheaper to draw than the field's regular expression."""
    tokens = ["*", f"*/{high}", "*/2", str(low), str(high), f"{low}-{high}/3", f"{high - 1}-{high}",
              *[str(day) for day in (29, 30, 31) if low <= day <= high], *[str(month) for month in (2, 4) if high == 12],
              *sorted(names)[:3]]
    return st.lists(st.sampled_from(tokens), min_size=1, max_size=2).map(",".join)


_ZONE_NAMES = sorted(zoneinfo.available_timezones())[::7] + ["America", "Europe", "posix", "right", "Etc", "Factory"]
_DURATION_TEXT = st.integers(min_value=0, max_value=400 * 86400).map(
    lambda seconds: durations.format(dt.timedelta(seconds=seconds)))
_STRINGS_BY_FIELD: dict[str, st.SearchStrategy[str]] = {
    "timezone": st.sampled_from(_ZONE_NAMES),
    "cron": st.one_of(
        st.sampled_from(["@yearly", "@monthly", "@weekly", "@daily", "@hourly", " @Midnight "]),
        st.tuples(*(_cron_field(low, high, names) for _name, low, high, names in cron.FIELDS)).map(" ".join),
    ),
    **dict.fromkeys(["history", "step", "horizon", "window", "duration", "leadTime"], _DURATION_TEXT),
}
"""Strings worth more than random text: real zones, tz directories, cron expressions in range, durations
near the bounds. They still have to pass the field's own pattern, length and CEL rules."""


def _string(schema: dict[str, Any], name: str) -> st.SearchStrategy[str]:
    least, most = schema.get("minLength", 0), schema.get("maxLength", 40)
    if "pattern" in schema:
        generated = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        generated = st.text(min_size=least, max_size=min(most, 40))
    if name in _STRINGS_BY_FIELD:
        # Without a pattern, random text (a cron of any five words) would only exercise the CEL rules.
        generated = st.one_of(_STRINGS_BY_FIELD[name], generated) if "pattern" in schema else _STRINGS_BY_FIELD[name]
    pattern = schema.get("pattern")
    return generated.filter(lambda text: least <= len(text) <= most and (pattern is None or re.search(pattern, text)))


def _number(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if integer:
        return st.integers(min_value=low, max_value=high if high is not None else 10**6)
    return st.floats(min_value=low, max_value=high, exclude_min=bool(schema.get("exclusiveMinimum")),
                     exclude_max=bool(schema.get("exclusiveMaximum")), allow_nan=False, allow_infinity=False)


def _one_kind_of_window(surge: dict[str, Any], recurring: bool) -> dict[str, Any]:
    for key in (("start", "end") if recurring else ("cron", "duration")):
        surge.pop(key, None)
    return surge


_SHAPES: dict[str, tuple[set[str], Callable[[dict[str, Any], bool], dict[str, Any]]]] = {
    "surges": ({"cron", "duration", "start", "end"}, _one_kind_of_window),
}
"""Objects whose optional fields come in sets (a surge is cron + duration or start + end): the fields are
always generated, then one set is kept, so that the kind rule does not reject nearly every surge."""


def from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values the schema admits: types, enums, patterns, lengths, bounds, list sizes and each node's CEL."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    strategy = _unchecked(schema, name)
    if "x-kubernetes-validations" in schema:
        strategy = strategy.filter(lambda value: _holds_here(value, schema))
    return strategy


def _unchecked(schema: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = from_schema(schema["items"], name)
        keys = schema.get("x-kubernetes-list-map-keys")
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 2), 2),
                        unique_by=(lambda item: tuple(item[key] for key in keys)) if keys else None)
    if "properties" not in schema:
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)
    always, shape = _SHAPES.get(name, (set(), lambda value, _choice: value))
    required = set(schema.get("required", [])) | always
    fields = {key: from_schema(child, key) for key, child in schema["properties"].items()}

    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        value = {key: draw(strategy) for key, strategy in fields.items() if key in required or draw(st.booleans())}
        return shape(value, draw(st.booleans()))

    return objects()


SLO_SPECS = from_schema(SLO_SCHEMA["properties"]["spec"])
SCHEDULE_SPECS = from_schema(SCHEDULE_SCHEMA["properties"]["spec"])
MOMENTS = st.one_of(
    st.sampled_from([dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
                     dt.datetime(8999, 12, 31, tzinfo=UTC), dt.datetime(9000, 1, 1, tzinfo=UTC)]),
    st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9000, 1, 1), timezones=st.just(UTC)),
)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.filter_too_much])


def _admitted(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    stored = _defaulted(copy.deepcopy(spec), schema)
    return stored if _cel_admits(stored, schema) else None


@PROPERTY
@given(spec=SLO_SPECS)
def test_any_clinicalslo_the_crd_admits_is_a_model_or_a_manifest_error(spec: dict[str, Any]) -> None:
    stored = _admitted(spec, SLO_SCHEMA["properties"]["spec"])
    if stored is None:
        return
    document = {"apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "s"},
                "spec": stored}
    try:
        slo = manifests.parse(clinicalslo.ClinicalSLO, document)
    except manifests.ManifestError as error:
        assert error.problems and all(": " in problem for problem in error.problems)
        return
    policy = planning.Policy.of(slo.spec)
    settings_ = planning.forecast_settings(slo.spec, policy)
    assert settings_.history // settings_.step <= clinicalslo.MAX_HISTORY_POINTS
    assert policy.replicas_for(1e9, policy.headroom) >= 0


@PROPERTY
@given(spec=SCHEDULE_SPECS, moments=st.lists(MOMENTS, min_size=1, max_size=2))
def test_any_surgeschedule_the_crd_admits_is_a_model_or_a_manifest_error_and_its_calendar_never_raises(
    spec: dict[str, Any], moments: list[dt.datetime]
) -> None:
    stored = _admitted(spec, SCHEDULE_SCHEMA["properties"]["spec"])
    if stored is None:
        return
    document = {"apiVersion": "healthscale.io/v1alpha1", "kind": "SurgeSchedule", "metadata": {"name": "s"},
                "spec": stored}
    try:
        schedule = manifests.parse(surgeschedule.SurgeSchedule, document)
    except manifests.ManifestError as error:
        assert error.problems and all(": " in problem for problem in error.problems)
        return
    surges = calendar.Calendar.of(schedule.spec)
    for moment in moments:
        found = surges.windows(moment - dt.timedelta(days=1), moment + dt.timedelta(days=9))
        assert all(window.end > window.start for window in found)
        surges.next_per_surge(moment)
        surges.in_effect(moment, dt.timedelta(hours=2))
