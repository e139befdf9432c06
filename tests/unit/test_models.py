"""The ClinicalSLO and SurgeSchedule models: the examples parse, defaults come from the models, bad
manifests are rejected with problems that name the camelCase field path and the rule, and models are frozen.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
import yaml

from healthscale.api import clinicalslo, common, manifests, surgeschedule

Document = dict[str, Any]


def minimal_slo() -> Document:
    return {
        "apiVersion": "healthscale.io/v1alpha1",
        "kind": "ClinicalSLO",
        "metadata": {"name": "lab-results"},
        "spec": {
            "journey": "View lab results",
            "targetRef": {"name": "lab-api"},
            "indicators": {"demand": "sum(rate(http_requests_total[5m]))"},
            "capacity": {"perReplica": 25, "maxReplicas": 8},
        },
    }


def minimal_schedule() -> Document:
    return {
        "apiVersion": "healthscale.io/v1alpha1",
        "kind": "SurgeSchedule",
        "metadata": {"name": "clinics"},
        "spec": {"sloRefs": ["lab-results"], "surges": [{"name": "clinic", "cron": "0 9 * * 2", "duration": "3h",
                                                          "minReplicas": 4}]},
    }


# --- The examples ---------------------------------------------------------------------------------------


def test_the_example_clinicalslo_parses(slo_document: Document) -> None:
    slo = manifests.parse(clinicalslo.ClinicalSLO, slo_document)
    spec = slo.spec
    assert (slo.metadata.name, slo.metadata.namespace) == ("ed-triage-chart", "ehr")
    assert slo.metadata.labels == {"healthscale.io/journey-group": "emergency"}
    assert spec.criticality is clinicalslo.Criticality.CRITICAL
    assert (spec.target_ref.kind, spec.target_ref.name) == ("Deployment", "ehr-api")
    assert spec.objectives.latency is not None
    assert (spec.objectives.latency.percentile, spec.objectives.latency.threshold_seconds) == (95, 1.5)
    assert spec.objectives.window == dt.timedelta(days=28)
    assert spec.indicators.errors is not None and spec.indicators.total is not None
    assert (spec.capacity.per_replica, spec.capacity.min_replicas, spec.capacity.max_replicas) == (40, 2, 60)
    assert spec.capacity.startup_seconds == 120
    assert (spec.forecast.history, spec.forecast.step, spec.forecast.horizon) == (
        dt.timedelta(days=14), dt.timedelta(minutes=5), dt.timedelta(hours=2)
    )
    assert spec.residency is not None
    assert spec.residency.data_class is clinicalslo.DataClass.PHI
    assert spec.residency.regions == ("eu-west-1", "eu-central-1")


def test_the_example_surgeschedule_parses(schedule_document: Document) -> None:
    schedule = manifests.parse(surgeschedule.SurgeSchedule, schedule_document)
    spec = schedule.spec
    assert spec.timezone == "America/Chicago"
    assert spec.slo_refs == ("ed-triage-chart",)
    assert [surge.name for surge in spec.surges] == ["morning-rounds", "flu-season", "vaccination-drive"]
    rounds, flu, drive = spec.surges
    assert (rounds.cron, rounds.duration, rounds.lead_time) == ("0 7 * * 1-5", dt.timedelta(hours=2),
                                                                 dt.timedelta(minutes=20))
    assert (rounds.multiplier, rounds.min_replicas) == (1.5, 10)
    assert (flu.start, flu.end, flu.multiplier, flu.min_replicas) == ("2026-12-01", "2027-03-01", 1.3, None)
    assert (drive.multiplier, drive.min_replicas) == (1.0, 20)


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("ed-triage-chart", {}, True),
        ("ed-bed-board", {"healthscale.io/journey-group": "emergency"}, True),
        ("ed-bed-board", {"healthscale.io/journey-group": "outpatient"}, False),
        ("pharmacy", {}, False),
    ],
    ids=[
        "a ClinicalSLO named in sloRefs is selected whatever its labels",
        "a ClinicalSLO with the selector's labels is selected",
        "a ClinicalSLO with another value of the label is not selected",
        "a ClinicalSLO neither named nor labelled is not selected",
    ],
)
def test_the_example_schedule_applies_to(schedule_document: Document, name: str, labels: dict[str, str],
                                         expected: bool) -> None:
    schedule = manifests.parse(surgeschedule.SurgeSchedule, schedule_document)
    assert schedule.spec.applies_to(name, labels) is expected


@pytest.mark.parametrize(
    ("operator", "values", "labels", "expected"),
    [
        ("In", ["a", "b"], {"k": "b"}, True),
        ("In", ["a"], {"k": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"k": "c"}, True),
        ("NotIn", ["a"], {}, True),
        ("NotIn", ["a"], {"k": "a"}, False),
        ("Exists", [], {"k": ""}, True),
        ("Exists", [], {}, False),
        ("DoesNotExist", [], {}, True),
        ("DoesNotExist", [], {"k": "x"}, False),
    ],
    ids=[
        "In matches a listed value",
        "In does not match an unlisted value",
        "In does not match a missing label",
        "NotIn matches an unlisted value",
        "NotIn matches a missing label, as in Kubernetes",
        "NotIn does not match a listed value",
        "Exists matches a present label even if empty",
        "Exists does not match a missing label",
        "DoesNotExist matches a missing label",
        "DoesNotExist does not match a present label",
    ],
)
def test_label_selector_expressions_follow_kubernetes(operator: str, values: list[str], labels: dict[str, str],
                                                      expected: bool) -> None:
    selector = common.LabelSelector.model_validate(
        {"matchExpressions": [{"key": "k", "operator": operator, "values": values}]}
    )
    assert selector.matches(labels) is expected


def test_wire_form_round_trips_through_the_model(slo_document: Document, schedule_document: Document) -> None:
    slo = manifests.parse(clinicalslo.ClinicalSLO, slo_document)
    wire = slo.spec.wire()
    assert wire["forecast"]["history"] == "14d"
    assert wire["capacity"]["perReplica"] == 40
    assert "residency" in wire and "dataClass" in wire["residency"]
    assert clinicalslo.ClinicalSLOSpec.model_validate(wire) == slo.spec
    schedule = manifests.parse(surgeschedule.SurgeSchedule, schedule_document)
    surges = schedule.spec.wire()["surges"]
    assert surges[0]["leadTime"] == "20m"
    assert "start" not in surges[0], "unset optional fields are left out"
    assert surgeschedule.SurgeScheduleSpec.model_validate(schedule.spec.wire()) == schedule.spec


def test_load_one_picks_the_document_of_the_asked_kind(tmp_path: pathlib.Path, slo_document: Document,
                                                       schedule_document: Document) -> None:
    path = tmp_path / "ed.yaml"
    path.write_text(yaml.safe_dump_all([slo_document, schedule_document]), encoding="utf-8")
    assert manifests.load_one(clinicalslo.ClinicalSLO, path).metadata.name == "ed-triage-chart"
    assert manifests.load_one(surgeschedule.SurgeSchedule, path).metadata.name == "ed-shift-changes"


# --- Defaults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda spec: spec.criticality, "standard"),
        (lambda spec: spec.mode, "Active"),
        (lambda spec: spec.target_ref.api_version, "apps/v1"),
        (lambda spec: spec.target_ref.kind, "Deployment"),
        (lambda spec: spec.objectives.availability, 99.9),
        (lambda spec: spec.objectives.window, dt.timedelta(days=28)),
        (lambda spec: spec.objectives.latency, None),
        (lambda spec: spec.forecast.history, dt.timedelta(days=14)),
        (lambda spec: spec.forecast.step, dt.timedelta(minutes=5)),
        (lambda spec: spec.forecast.horizon, dt.timedelta(hours=2)),
        (lambda spec: spec.forecast.model, "auto"),
        (lambda spec: spec.forecast.quantile, None),
        (lambda spec: spec.forecast.timezone, "UTC"),
        (lambda spec: spec.scale_down.stabilization_seconds, 600),
        (lambda spec: spec.scale_down.max_step_percent, 25),
        (lambda spec: spec.capacity.min_replicas, 1),
        (lambda spec: spec.capacity.startup_seconds, 60),
        (lambda spec: spec.capacity.headroom_percent, 10),
        (lambda spec: spec.residency, None),
        (lambda spec: spec.indicators.errors, None),
    ],
    ids=[
        "criticality defaults to standard",
        "mode defaults to Active",
        "the target's apiVersion defaults to apps/v1",
        "the target's kind defaults to Deployment",
        "availability defaults to 99.9",
        "the SLO window defaults to 28 days",
        "there is no latency objective by default",
        "forecast history defaults to 14 days",
        "forecast step defaults to 5 minutes",
        "forecast horizon defaults to 2 hours",
        "the forecast model defaults to auto",
        "the forecast quantile is left to the criticality by default",
        "the forecast wall clock defaults to UTC",
        "scale-down stabilisation defaults to 600 seconds",
        "scale-down steps default to 25 percent",
        "minReplicas defaults to 1",
        "startupSeconds defaults to 60",
        "headroom defaults to 10 percent",
        "there is no residency rule by default",
        "no error indicator by default",
    ],
)
def test_clinicalslo_defaults(read: Callable[[clinicalslo.ClinicalSLOSpec], Any], expected: Any) -> None:
    spec = manifests.parse(clinicalslo.ClinicalSLO, minimal_slo()).spec
    assert read(spec) == expected


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda spec: spec.timezone, "UTC"),
        (lambda spec: spec.selector, None),
        (lambda spec: spec.surges[0].lead_time, dt.timedelta(0)),
        (lambda spec: spec.surges[0].multiplier, 1.0),
        (lambda spec: spec.surges[0].start, None),
    ],
    ids=[
        "the schedule's timezone defaults to UTC",
        "there is no selector by default",
        "a surge has no lead time by default",
        "a surge's multiplier defaults to 1",
        "a recurring surge has no start",
    ],
)
def test_surgeschedule_defaults(read: Callable[[surgeschedule.SurgeScheduleSpec], Any], expected: Any) -> None:
    spec = manifests.parse(surgeschedule.SurgeSchedule, minimal_schedule()).spec
    assert read(spec) == expected


def test_a_schedule_defers_nothing_by_default() -> None:
    assert manifests.parse(surgeschedule.SurgeSchedule, minimal_schedule()).spec.defer is None


def test_a_deferral_shrinks_to_zero_and_spares_burns_and_running_jobs_by_default() -> None:
    document = minimal_schedule()
    document["spec"]["defer"] = {"selector": {"matchLabels": {"healthscale.io/deferrable": "true"}}}
    defer = manifests.parse(surgeschedule.SurgeSchedule, document).spec.defer
    assert defer is not None
    assert (defer.replicas, defer.during_burn, defer.interrupt_running) == (0, False, False)
    assert defer.selector.matches({"healthscale.io/deferrable": "true"})
    assert defer.wire() == {"selector": {"matchLabels": {"healthscale.io/deferrable": "true"}, "matchExpressions": []},
                            "replicas": 0, "duringBurn": False, "interruptRunning": False}


def _deferred(**overrides: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "name": "reports", "uid": "u1", "field": "replicas", "original": {"replicas": 4},
            "written": {"replicas": 0}, "since": "2026-12-01T06:30:00Z", "until": "2026-12-01T09:00:00Z",
            "cause": "Surge", "causeName": "rounds", **overrides}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({}, None),
        ({"kind": "ScaledObject", "field": "pausedReplicas", "original": {}, "written": {"pausedReplicas": "0"}}, None),
        ({"kind": "CronJob", "field": "suspend", "original": {"suspend": False}, "written": {"suspend": True},
          "cause": "FastBurn", "causeName": "ed-triage-chart"}, None),
        ({"kind": "CronJob"}, "field must be suspend for a CronJob"),
        ({"original": {"replicas": 4, "suspend": False}}, "original of a Deployment sets only replicas"),
        ({"written": {}}, "written must set replicas"),
        ({"original": {}}, "original must set replicas"),
        ({"kind": "DaemonSet"}, "'Deployment', 'StatefulSet', 'CronJob', 'Job' or 'ScaledObject'"),
        ({"uid": ""}, "at least 1 character"),
        ({"cause": "Manual"}, "'Surge' or 'FastBurn'"),
    ],
    ids=[
        "a deferred Deployment records its replicas",
        "a ScaledObject that had no paused-replicas annotation records none",
        "a CronJob deferred for a burn records its suspend flag and the burning SLO",
        "a record's field must be its kind's",
        "a record holds only its kind's field",
        "a record must say what healthscale wrote",
        "a Deployment's record must hold its original replicas",
        "a kind deferral does not act on is refused",
        "a record without a uid is refused",
        "a cause other than a surge or a burn is refused",
    ],
)
def test_deferred_object_records(overrides: dict[str, Any], problem: str | None) -> None:
    if problem is None:
        item = surgeschedule.DeferredObject.model_validate(_deferred(**overrides))
        assert surgeschedule.DeferredObject.model_validate(item.wire()) == item
        assert surgeschedule.SurgeScheduleStatus.model_validate({"deferred": [item.wire()]}).deferred == (item,)
    else:
        with pytest.raises(pydantic.ValidationError, match=re.escape(problem)):
            surgeschedule.DeferredObject.model_validate(_deferred(**overrides))


def test_a_schedule_status_keeps_every_readable_deferral_record() -> None:
    good = _deferred()
    status, dropped = surgeschedule.read_status({"deferred": [{**good, "uid": ""}, good], "nextSurge": 7,
                                                 "fastBurns": [{"slo": "ed", "lastSeen": "2026-12-01T06:00:00Z"}]})
    assert [item.uid for item in status.deferred] == ["u1"]
    assert [item.slo for item in status.fast_burns] == ["ed"]
    assert dropped == ("deferred[0]", "nextSurge")
    assert surgeschedule.read_status(None) == (surgeschedule.SurgeScheduleStatus(), ())


def test_residency_with_data_class_none_needs_no_regions() -> None:
    document = minimal_slo()
    document["spec"]["residency"] = {"dataClass": "none"}
    residency = manifests.parse(clinicalslo.ClinicalSLO, document).spec.residency
    assert residency is not None and residency.regions == ()


def test_residency_data_class_defaults_to_phi() -> None:
    document = minimal_slo()
    document["spec"]["residency"] = {"regions": ["eu-west-1"]}
    residency = manifests.parse(clinicalslo.ClinicalSLO, document).spec.residency
    assert residency is not None and residency.data_class is clinicalslo.DataClass.PHI


# --- Bad manifests --------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Document], None]:
    """A mutation that sets ``spec.a.b`` (dots; ``[n]`` for list items) to ``value``."""

    def mutate(document: Document) -> None:
        *parents, last = _steps(path)
        node: Any = document
        for step in parents:
            node = node[step]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        *parents, last = _steps(path)
        node: Any = document
        for step in parents:
            node = node[step]
        del node[last]

    return mutate


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        steps.append(name)
        if index:
            steps.append(int(index.rstrip("]")))
    return steps


def _both(*mutations: Callable[[Document], None]) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        for mutation in mutations:
            mutation(document)

    return mutate


SLO, SCHEDULE = "ClinicalSLO", "SurgeSchedule"


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        (SLO, _set("spec.capacity.minReplicas", 61),
         [("spec.capacity", "minReplicas must be <= maxReplicas")]),
        (SLO, _both(_drop("spec.capacity.perReplica"), _set("spec.capacity.perReplicas", 40)),
         [("spec.capacity.perReplica", "required field is missing"), ("spec.capacity.perReplicas", "unknown field")]),
        (SLO, _set("spec.forecast.history", "5 minutes"), [("spec.forecast.history", "is not a duration")]),
        (SLO, _set("spec.objectives.window", "1.5h"), [("spec.objectives.window", "w, d, h, m or s")]),
        (SLO, _set("spec.forecast.timezone", "Mars/Olympus"), [("spec.forecast.timezone", "not an IANA time zone")]),
        (SLO, _set("spec.residency.regions", []),
         [("spec.residency", "regions must list at least one region unless dataClass is none")]),
        (SLO, _set("spec.residency", {"dataClass": "pii"}),
         [("spec.residency", "regions must list at least one region unless dataClass is none")]),
        (SLO, _drop("spec.indicators.total"), [("spec.indicators", "errors and total must be given together")]),
        (SLO, _drop("spec.indicators.errors"), [("spec.indicators", "errors and total must be given together")]),
        (SLO, _set("spec.indicators.latency", "histogram_quantile(0.95, x)"),
         [("spec.indicators", "latency is no longer read: replace it with latencyHistogram")]),
        (SLO, _drop("spec.indicators.latencyHistogram"),
         [("spec", "objectives.latency needs indicators.latencyHistogram or indicators.latencyGood")]),
        (SLO, _drop("spec.objectives.latency"),
         [("spec", "indicators.latencyHistogram and indicators.latencyGood need objectives.latency")]),
        (SLO, _set("spec.indicators.latencyGood", "sum(rate(fast_total[5m]))"),
         [("spec.indicators", "latencyHistogram and latencyGood are alternatives")]),
        (SLO, _set("spec.indicators.latencyHistogram", "http_request_duration_seconds_sum"),
         [("spec.indicators", "latencyHistogram must select a histogram's bucket series")]),
        (SLO, _drop("spec.journey"), [("spec.journey", "required field is missing")]),
        (SLO, _set("spec.criticality", "urgent"), [("spec.criticality", "'critical', 'high' or 'standard'")]),
        (SLO, _set("spec.targetRef.kind", "DaemonSet"), [("spec.targetRef.kind", "'Deployment' or 'StatefulSet'")]),
        (SLO, _set("spec.forecast.history", "3h"), [("spec.forecast", "at least twice the horizon")]),
        (SLO, _set("spec.forecast.horizon", "1m"), [("spec.forecast", "at least one step")]),
        (SLO, _set("spec.capacity.perReplica", 0), [("spec.capacity.perReplica", "greater than 0")]),
        (SCHEDULE, _drop("spec.surges[0].duration"),
         [("spec.surges[0]", "either cron and duration, or start and end")]),
        (SCHEDULE, _set("spec.surges[0].start", "2026-12-01"),
         [("spec.surges[0]", "either cron and duration, or start and end")]),
        (SCHEDULE, _drop("spec.surges[1].end"), [("spec.surges[1]", "either cron and duration, or start and end")]),
        (SCHEDULE, _set("spec.surges[1].end", "2026-11-01"), [("spec.surges[1]", "end must be after start")]),
        (SCHEDULE, _set("spec.surges[2].end", "2026-12-12T08:00:00"), [("spec.surges[2]", "end must be after start")]),
        (SCHEDULE, _set("spec.surges[1].end", "2026-02-30"), [("spec.surges[1].end", "not a real date")]),
        (SCHEDULE, _set("spec.surges[1].start", "2026-12-01T08:00Z"), [("spec.surges[1].start", "without an offset")]),
        (SCHEDULE, _set("spec.timezone", "Mars/Olympus"), [("spec.timezone", "not an IANA time zone")]),
        (SCHEDULE, _set("spec.surges[0].duration", "5 minutes"), [("spec.surges[0].duration", "is not a duration")]),
        (SCHEDULE, _set("spec.surges[0].leadTime", "-5m"), [("spec.surges[0].leadTime", "is not a duration")]),
        (SCHEDULE, _set("spec.surges[0].duration", "0s"), [("spec.surges[0].duration", "must be between 1s and 366d")]),
        (SCHEDULE, _set("spec.surges[0].cron", "60 7 * * 1-5"), [("spec.surges[0]", "minute field: 60 is outside 0-59")]),
        (SCHEDULE, _set("spec.surges[0].cron", "0 7 * *"), [("spec.surges[0]", "it needs five")]),
        (SCHEDULE, _set("spec.surges[1].multiplier", 1.0), [("spec.surges[1]", "must raise demand")]),
        (SCHEDULE, _set("spec.surges[1].name", "morning-rounds"),
         [("spec", "surge names must be unique: morning-rounds repeated")]),
        (SCHEDULE, _set("spec.surges[0].name", "Morning_Rounds"), [("spec.surges[0].name", "pattern")]),
        (SCHEDULE, _both(_drop("spec.selector"), _drop("spec.sloRefs")),
         [("spec", "select ClinicalSLOs with selector, sloRefs or both")]),
        (SCHEDULE, _both(_drop("spec.selector"), _set("spec.sloRefs", [])),
         [("spec", "select ClinicalSLOs with selector, sloRefs or both")]),
        (SCHEDULE, _set("spec.surges", []), [("spec.surges", "at least 1 item")]),
        (SCHEDULE, _set("spec.selector", {"matchExpressions": [{"key": "tier", "operator": "In"}]}),
         [("spec.selector.matchExpressions[0]", "values must be non-empty for In and NotIn")]),
        (SCHEDULE, _set("spec.selector", {"matchExpressions": [{"key": "tier", "operator": "Exists",
                                                                  "values": ["a"]}]}),
         [("spec.selector.matchExpressions[0]", "empty for Exists and DoesNotExist")]),
        (SCHEDULE, _set("spec.surges[0].perReplicas", 3), [("spec.surges[0].perReplicas", "unknown field")]),
        (SCHEDULE, _set("spec.defer", {"replicas": 0}), [("spec.defer.selector", "required field is missing")]),
        (SCHEDULE, _set("spec.defer", {"selector": {}}), [("spec.defer", "defer.selector must name what is deferrable")]),
        (SCHEDULE, _set("spec.defer", {"selector": {"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                           "values": ["clinical"]}]}}),
         [("spec.defer", "at least one matchLabels entry or an In or Exists expression")]),
        (SCHEDULE, _set("spec.defer", {"selector": {"matchLabels": {"d": "true"}}, "replicas": -1}),
         [("spec.defer.replicas", "greater than or equal to 0")]),
        (SCHEDULE, _set("spec.defer", {"selector": {"matchLabels": {"d": "true"}}, "interruptrunning": True}),
         [("spec.defer.interruptrunning", "unknown field")]),
    ],
    ids=[
        "minReplicas above maxReplicas is refused on capacity",
        "a typo (perReplicas) is an unknown field and the real field is missing",
        "a duration in words is refused with the grammar",
        "a fractional duration is refused with the grammar",
        "a made-up time zone is refused on the forecast",
        "phi with an empty region list is refused",
        "pii without regions is refused",
        "errors without total is refused",
        "total without errors is refused",
        "the removed latency indicator is refused, naming its replacements",
        "a latency objective without a latency indicator is refused",
        "a latency histogram without a latency objective is refused",
        "latencyHistogram and latencyGood together are refused",
        "a histogram's sum series is refused as a bucket selector",
        "a missing journey is named",
        "an unknown criticality lists the allowed ones",
        "a DaemonSet target is refused",
        "a forecast history shorter than twice the horizon is refused",
        "a forecast horizon shorter than a step is refused",
        "a perReplica of zero is refused",
        "a surge with cron but no duration is refused",
        "a surge with both cron and start is refused",
        "a surge with start but no end is refused",
        "a surge ending before it starts is refused",
        "a surge ending at its start written with seconds is refused",
        "a date that does not exist is refused",
        "a date-time with an offset is refused (the schedule's timezone applies)",
        "a made-up time zone is refused on the schedule",
        "a surge duration in words is refused",
        "a negative lead time is refused",
        "a zero-length surge is refused",
        "a cron minute of 60 is named",
        "a cron with four fields is refused",
        "a surge that neither multiplies nor sets a floor is refused",
        "duplicate surge names are refused",
        "a surge name that is not a DNS label is refused",
        "a schedule that selects nothing is refused",
        "a schedule with an empty sloRefs and no selector is refused",
        "a schedule without surges is refused",
        "an In expression without values is refused",
        "an Exists expression with values is refused",
        "an unknown field on a surge is named with its index",
        "a deferral without a selector is refused",
        "a deferral with an empty selector is refused: it would defer the whole namespace",
        "a deferral selecting only by NotIn is refused",
        "negative deferred replicas are refused",
        "a misspelt interruptRunning is an unknown field",
    ],
)
def test_bad_manifests_name_the_field_and_the_rule(
    slo_document: Document,
    schedule_document: Document,
    kind: str,
    mutate: Callable[[Document], None],
    expected: list[tuple[str, str]],
) -> None:
    model: Any = clinicalslo.ClinicalSLO if kind == SLO else surgeschedule.SurgeSchedule
    document = slo_document if kind == SLO else schedule_document
    mutate(document)
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(model, document, source="ed.yaml")
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for (path, rule), problem in zip(sorted(expected), sorted(problems)):
        assert problem.startswith(f"{path}: "), problem
        assert rule in problem, problem
    assert str(caught.value).startswith("ed.yaml: invalid manifest:")


def test_the_only_surge_being_invalid_is_reported_once() -> None:
    document = minimal_schedule()
    del document["spec"]["surges"][0]["duration"]
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(surgeschedule.SurgeSchedule, document)
    assert caught.value.problems == ["spec.surges[0]: a surge has either cron and duration, or start and end"]


def test_every_problem_is_listed_not_just_the_first(slo_document: Document) -> None:
    slo_document["spec"]["capacity"]["minReplicas"] = 61
    slo_document["spec"]["forecast"]["history"] = "5 minutes"
    slo_document["spec"]["mode"] = "Dry"
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(clinicalslo.ClinicalSLO, slo_document)
    assert sorted(problem.split(":")[0] for problem in caught.value.problems) == [
        "spec.capacity", "spec.forecast.history", "spec.mode"
    ]


@pytest.mark.parametrize(
    "document",
    [[], "kind: ClinicalSLO", None],
    ids=["a list is not a manifest", "a string is not a manifest", "nothing is not a manifest"],
)
def test_a_manifest_must_be_a_mapping(document: Any) -> None:
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(clinicalslo.ClinicalSLO, document)
    assert caught.value.problems[0].startswith("(root): expected a mapping")


def test_the_kind_must_match_the_model(schedule_document: Document) -> None:
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(clinicalslo.ClinicalSLO, schedule_document)
    assert any(problem.startswith("kind: ") for problem in caught.value.problems)


# --- Frozen models --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reach", "attribute", "value"),
    [
        (lambda slo, schedule: slo, "spec", None),
        (lambda slo, schedule: slo.spec, "criticality", "high"),
        (lambda slo, schedule: slo.spec.capacity, "max_replicas", 1000),
        (lambda slo, schedule: slo.spec.forecast, "horizon", dt.timedelta(hours=6)),
        (lambda slo, schedule: slo.metadata, "name", "other"),
        (lambda slo, schedule: schedule.spec, "timezone", "UTC"),
        (lambda slo, schedule: schedule.spec.surges[0], "multiplier", 9.0),
        (lambda slo, schedule: surgeschedule.DeferPolicy.model_validate({"selector": {"matchLabels": {"d": "t"}}}),
         "replicas", 3),
    ],
    ids=[
        "a whole ClinicalSLO is frozen",
        "a ClinicalSLO spec is frozen",
        "capacity is frozen",
        "the forecast settings are frozen",
        "metadata is frozen",
        "a SurgeSchedule spec is frozen",
        "a surge is frozen",
        "a deferral policy is frozen",
    ],
)
def test_models_are_frozen(slo_document: Document, schedule_document: Document,
                           reach: Callable[[Any, Any], pydantic.BaseModel], attribute: str, value: Any) -> None:
    slo = manifests.parse(clinicalslo.ClinicalSLO, slo_document)
    schedule = manifests.parse(surgeschedule.SurgeSchedule, schedule_document)
    target = reach(slo, schedule)
    before = getattr(target, attribute)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(target, attribute, value)
    assert getattr(target, attribute) == before


def test_collections_in_models_are_immutable_tuples(schedule_document: Document) -> None:
    schedule = manifests.parse(surgeschedule.SurgeSchedule, schedule_document)
    assert isinstance(schedule.spec.surges, tuple)
    assert isinstance(schedule.spec.slo_refs, tuple)
