"""The generated CustomResourceDefinitions: no drift from the models, kubectl-explain descriptions, a
structural schema, defaults and required fields that agree with the pydantic models, printer columns,
and CEL rules that accept and reject what the models accept and reject (evaluated with cel-python).
"""

from __future__ import annotations

import copy
import functools
import pathlib
import re
import typing
from collections.abc import Iterator
from typing import Any

import celpy
import celpy.adapter
import celpy.celtypes
import pydantic
import pytest
import yaml

from healthscale.api import clinicalslo, crdgen, manifests, surgeschedule

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"
SLO_FILE, SCHEDULE_FILE = "clinicalslos.healthscale.io.yaml", "surgeschedules.healthscale.io.yaml"
ABSENT = object()


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CRDS / name).read_text(encoding="utf-8"))
    return document


def root_schema(name: str) -> dict[str, Any]:
    (version,) = load(name)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a readable path: properties, array items and map values."""
    yield path or "(root)", schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def node_at(schema: dict[str, Any], manifest_path: str) -> dict[str, Any]:
    """The schema node for ``spec.surges[0]``-style paths."""
    for part in manifest_path.split("."):
        name, _, index = part.partition("[")
        schema = schema["properties"][name]
        if index:
            schema = schema["items"]
    return schema


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server stores: structural defaulting, then numbers as the schema types them."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, child in schema.get("properties", {}).items():
            if name in value:
                value[name] = apply_defaults(value[name], child)
    elif schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        value = [apply_defaults(item, schema["items"]) for item in value]
    elif schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # the API server hands CEL a double for every number field
    return value


# --- Drift ------------------------------------------------------------------------------------------------


def test_the_crds_in_the_repository_are_what_the_models_generate() -> None:
    assert crdgen.drift(CRDS) == [], "run `healthscale crds` (crdgen.write) and commit crds/"


def test_drift_is_detected(tmp_path: pathlib.Path) -> None:
    crdgen.write(tmp_path)
    assert crdgen.drift(tmp_path) == []
    stale = tmp_path / SLO_FILE
    stale.write_text(stale.read_text(encoding="utf-8").replace("default: 14d", "default: 7d"), encoding="utf-8")
    (tmp_path / SCHEDULE_FILE).unlink()
    assert sorted(crdgen.drift(tmp_path)) == [SLO_FILE, SCHEDULE_FILE]


def test_both_crds_are_named_for_their_group_and_plural() -> None:
    for name, kind in ((SLO_FILE, "ClinicalSLO"), (SCHEDULE_FILE, "SurgeSchedule")):
        crd = load(name)
        assert crd["metadata"]["name"] == name.removesuffix(".yaml")
        assert crd["spec"]["names"]["kind"] == kind
        assert crd["spec"]["scope"] == "Namespaced"
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


# --- kubectl explain ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [SLO_FILE, SCHEDULE_FILE], ids=["ClinicalSLO", "SurgeSchedule"])
def test_every_field_has_a_description_for_kubectl_explain(name: str) -> None:
    root = root_schema(name)
    missing = []
    for part in ("spec", "status"):
        for path, node in nodes(root["properties"][part], part):
            is_field = not path.endswith(("[]", "{}"))
            is_object_item = path.endswith("[]") and node.get("type") == "object"
            if (is_field or is_object_item) and not str(node.get("description", "")).strip():
                missing.append(path)
    assert missing == []


# --- Structural schema ------------------------------------------------------------------------------------

_FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "definitions", "prefixItems", "const", "title"}
_TYPE_CHECKS = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
}


@pytest.mark.parametrize("name", [SLO_FILE, SCHEDULE_FILE], ids=["ClinicalSLO", "SurgeSchedule"])
def test_the_schema_is_structural(name: str) -> None:
    problems = []
    for path, node in nodes(root_schema(name)):
        for key in _FORBIDDEN & set(node):
            problems.append(f"{path}: {key} is not allowed in a structural schema")
        if "type" not in node and not (
            node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        ):
            problems.append(f"{path}: no type")
        if node.get("type") not in _TYPE_CHECKS and "type" in node:
            problems.append(f"{path}: unknown type {node['type']!r}")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{path}: properties on a {node.get('type')}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false is not allowed")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: an array needs one items schema")
        if "items" in node and node.get("type") != "array":
            problems.append(f"{path}: items on a {node.get('type')}")
        for required in node.get("required", []):
            if required not in node.get("properties", {}):
                problems.append(f"{path}: required {required} is not a property")
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in node["items"].get("required", []):
                problems.append(f"{path}: list map key {key} must be required in the items")
        if "enum" in node and not all(_TYPE_CHECKS[node["type"]](value) for value in node["enum"]):
            problems.append(f"{path}: enum values do not match type {node['type']}")
    assert problems == []


@pytest.mark.parametrize("name", [SLO_FILE, SCHEDULE_FILE], ids=["ClinicalSLO", "SurgeSchedule"])
def test_every_default_validates_against_its_own_field(name: str) -> None:
    problems = []
    for path, node in nodes(root_schema(name)):
        if "default" not in node:
            continue
        default = node["default"]
        if not _TYPE_CHECKS[node["type"]](default):
            problems.append(f"{path}: default {default!r} is not a {node['type']}")
        if "enum" in node and default not in node["enum"]:
            problems.append(f"{path}: default {default!r} is not one of {node['enum']}")
        if "pattern" in node and not re.search(node["pattern"], default):
            problems.append(f"{path}: default {default!r} does not match {node['pattern']}")
        if "minimum" in node and default < node["minimum"]:
            problems.append(f"{path}: default {default!r} is below the minimum")
        if "maximum" in node and default > node["maximum"]:
            problems.append(f"{path}: default {default!r} is above the maximum")
    assert problems == []


def test_status_is_a_subresource_and_keeps_unknown_fields() -> None:
    for name in (SLO_FILE, SCHEDULE_FILE):
        (version,) = load(name)["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"]


def test_surges_are_a_list_map_keyed_by_name_so_the_api_server_refuses_duplicates() -> None:
    surges = node_at(root_schema(SCHEDULE_FILE), "spec.surges")
    assert surges["x-kubernetes-list-type"] == "map"
    assert surges["x-kubernetes-list-map-keys"] == ["name"]


# --- Agreement with the pydantic models ---------------------------------------------------------------------


def _models_in(annotation: Any) -> list[tuple[type[pydantic.BaseModel], bool]]:
    """Models inside an annotation, each with whether it sits in a list (tuple[Model, ...])."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [(annotation, False)]
    found = []
    for argument in typing.get_args(annotation):
        for model, in_list in _models_in(argument):
            found.append((model, in_list or typing.get_origin(annotation) is tuple))
    return found


def _walk_models(model: type[pydantic.BaseModel], schema: dict[str, Any],
                 path: str) -> Iterator[tuple[str, str, pydantic.fields.FieldInfo, dict[str, Any] | None]]:
    """(path, alias, field, CRD node or None) for every field of ``model`` and of the models inside it."""
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        node = properties.get(alias)
        yield path, alias, field, node
        if node is None:
            continue
        for inner, in_list in _models_in(field.annotation):
            yield from _walk_models(inner, node["items"] if in_list else node, f"{path}.{alias}")


SPEC_AND_STATUS = [
    (SLO_FILE, "spec", clinicalslo.ClinicalSLOSpec),
    (SLO_FILE, "status", clinicalslo.ClinicalSLOStatus),
    (SCHEDULE_FILE, "spec", surgeschedule.SurgeScheduleSpec),
    (SCHEDULE_FILE, "status", surgeschedule.SurgeScheduleStatus),
]
SPEC_AND_STATUS_IDS = ["ClinicalSLO spec", "ClinicalSLO status", "SurgeSchedule spec", "SurgeSchedule status"]


@pytest.mark.parametrize(("name", "part", "model"), SPEC_AND_STATUS, ids=SPEC_AND_STATUS_IDS)
def test_every_model_field_is_in_the_crd_and_every_crd_field_is_in_the_model(
    name: str, part: str, model: type[pydantic.BaseModel]
) -> None:
    schema = root_schema(name)["properties"][part]
    in_models: set[str] = set()
    for path, alias, _field, node in _walk_models(model, schema, part):
        in_models.add(f"{path}.{alias}")
        assert node is not None, f"{path}.{alias} is in the model but not in the CRD"
    in_crd = {path for path, _node in nodes(schema, part) if path != part and not path.endswith(("[]", "{}"))}
    in_crd = {path.replace("[]", "") for path in in_crd}
    assert in_crd == in_models


@pytest.mark.parametrize(("name", "part", "model"), SPEC_AND_STATUS, ids=SPEC_AND_STATUS_IDS)
def test_required_fields_match_the_models(name: str, part: str, model: type[pydantic.BaseModel]) -> None:
    schema = root_schema(name)["properties"][part]
    assert set(schema.get("required", [])) == {
        field.alias or key for key, field in model.model_fields.items() if field.is_required()
    }
    checked: set[str] = set()
    for path, alias, field, node in _walk_models(model, schema, part):
        for inner, in_list in _models_in(field.annotation):
            assert node is not None
            inner_node = node["items"] if in_list else node
            expected = {inner_field.alias or key for key, inner_field in inner.model_fields.items()
                        if inner_field.is_required()}
            assert set(inner_node.get("required", [])) == expected, f"{path}.{alias}"
            checked.add(inner.__name__)
    assert checked, "the walk reached no nested models"


def _pydantic_default(field: pydantic.fields.FieldInfo) -> Any:
    """The field's default as it appears in a manifest (camelCase, durations like 14d)."""
    if field.is_required():
        return ABSENT
    value = field.get_default(call_default_factory=True)
    annotated: Any = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return pydantic.TypeAdapter(annotated).dump_python(value, mode="json", by_alias=True, exclude_none=True)


def _crd_default(node: dict[str, Any]) -> Any:
    """What the API server fills in when the field is left out (nested defaults included)."""
    if "default" not in node:
        return ABSENT
    return apply_defaults(copy.deepcopy(node["default"]), node)


@pytest.mark.parametrize(("name", "part", "model"), SPEC_AND_STATUS, ids=SPEC_AND_STATUS_IDS)
def test_every_crd_default_is_the_pydantic_default(name: str, part: str, model: type[pydantic.BaseModel]) -> None:
    schema = root_schema(name)["properties"][part]
    problems, compared = [], 0
    for path, alias, field, node in _walk_models(model, schema, part):
        assert node is not None
        expected, actual = _pydantic_default(field), _crd_default(node)
        if expected is None or expected in ([], {}):
            # Absent and null/empty mean the same to the operator; a CRD default must still match.
            if actual is not ABSENT and actual != expected:
                problems.append(f"{path}.{alias}: CRD default {actual!r}, model default {expected!r}")
        elif actual != expected:
            problems.append(f"{path}.{alias}: CRD default {actual!r}, model default {expected!r}")
        compared += 1
    assert problems == []
    assert compared > 5


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("spec.criticality", "standard"),
        ("spec.mode", "Active"),
        ("spec.forecast.history", "14d"),
        ("spec.forecast.step", "5m"),
        ("spec.forecast.horizon", "2h"),
        ("spec.forecast.model", "auto"),
        ("spec.objectives.window", "28d"),
        ("spec.scaleDown.stabilizationSeconds", 600),
        ("spec.scaleDown.maxStepPercent", 25),
        ("spec.capacity.minReplicas", 1),
        ("spec.capacity.startupSeconds", 60),
        ("spec.capacity.headroomPercent", 10),
        ("spec.residency.dataClass", "phi"),
    ],
    ids=[
        "criticality defaults to standard",
        "mode defaults to Active",
        "forecast history defaults to 14d, written as users write it",
        "forecast step defaults to 5m",
        "forecast horizon defaults to 2h",
        "the forecast model defaults to auto",
        "the SLO window defaults to 28d",
        "scale-down stabilisation defaults to 600 seconds",
        "scale-down steps default to 25 percent",
        "minReplicas defaults to 1",
        "startupSeconds defaults to 60",
        "headroom defaults to 10 percent",
        "residency defaults to phi",
    ],
)
def test_documented_defaults_are_in_the_crd(path: str, expected: Any) -> None:
    assert node_at(root_schema(SLO_FILE), path)["default"] == expected


def test_left_out_sections_get_their_inner_defaults_from_the_api_server() -> None:
    spec_schema = node_at(root_schema(SLO_FILE), "spec")
    spec = apply_defaults({"journey": "j", "targetRef": {"name": "a"}, "indicators": {"demand": "d"},
                           "capacity": {"perReplica": 1, "maxReplicas": 2}}, spec_schema)
    assert spec["forecast"]["history"] == "14d"
    assert spec["scaleDown"]["stabilizationSeconds"] == 600
    assert spec["objectives"]["window"] == "28d"
    # ... and what the API server stores is what the model would have filled in.
    assert clinicalslo.ClinicalSLOSpec.model_validate(spec) == clinicalslo.ClinicalSLOSpec.model_validate(
        {"journey": "j", "targetRef": {"name": "a"}, "indicators": {"demand": "d"},
         "capacity": {"perReplica": 1, "maxReplicas": 2}}
    )


# --- Printer columns ----------------------------------------------------------------------------------------


def _column_target(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a printer column's JSONPath reads, or None (metadata is not in the schema)."""
    if json_path.startswith(".metadata."):
        return None
    node = schema
    for part in re.sub(r"\[\?\(.*?\)\]", "[]", json_path).strip(".").split("."):
        name = part.removesuffix("[]")
        node = node["properties"][name]
        if part.endswith("[]"):
            node = node["items"]
    return node


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (SLO_FILE, ["Target", "Desired", "Current", "Reason", "Next surge", "Ready"]),
        (SCHEDULE_FILE, ["Timezone", "Next surge", "Ready"]),
    ],
    ids=["kubectl get clinicalslos shows the decision", "kubectl get surgeschedules shows what comes next"],
)
def test_printer_columns(name: str, expected: list[str]) -> None:
    (version,) = load(name)["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    names = [column["name"] for column in columns]
    assert set(expected) <= set(names)
    root = version["schema"]["openAPIV3Schema"]
    for column in columns:
        node = _column_target(root, column["jsonPath"])
        if node is None:
            continue
        assert node.get("type") == {"date": "string"}.get(column["type"], column["type"]), column["name"]


def test_the_ready_column_reads_the_ready_condition() -> None:
    (version,) = load(SLO_FILE)["spec"]["versions"]
    (ready,) = [column for column in version["additionalPrinterColumns"] if column["name"] == "Ready"]
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


# --- CEL rules ------------------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@functools.lru_cache(maxsize=None)
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def evaluate(rules: list[dict[str, str]], value: Any, schema: dict[str, Any]) -> dict[str, bool]:
    """message -> whether the rule holds for ``value`` once the API server has defaulted it."""
    self = celpy.adapter.json_to_cel(apply_defaults(copy.deepcopy(value), schema))
    results = {}
    for rule in rules:
        result = _program(rule["rule"]).evaluate({"self": self})
        assert isinstance(result, celpy.celtypes.BoolType), f"{rule['rule']!r} did not evaluate: {result!r}"
        results[rule["message"]] = bool(result)
    return results


CAPACITY_RULE = "minReplicas must be <= maxReplicas"
PER_REPLICA_RULE = "perReplica must be at least 0.000001"
ERRORS_RULE = "errors and total must be given together"
RESIDENCY_RULE = "regions must list at least one region unless dataClass is none"
SURGE_KIND_RULE = "a surge has either cron and duration, or start and end"
END_RULE = "end must be after start"
RAISE_RULE = "a surge must raise demand (multiplier > 1) or set a floor (minReplicas)"
CRON_RULE = "cron must have five fields (minute hour day-of-month month day-of-week) or be a macro such as @daily"
SELECTS_RULE = "select ClinicalSLOs with selector, sloRefs or both"
VALUES_RULE = "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist"
CRON_RANGE_RULE = ("cron fields must be in range: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or jan-dec,"
                   " day-of-week 0-7 or sun-sat, steps 1 or more")
STEP_RULE, HISTORY_RULE, HORIZON_RULE = "must be between 1m and 1d", "must be at most 90d", "must be at most 7d"
WINDOW_RULE, DURATION_RULE, LEAD_RULE = "must be between 1h and 90d", "must be between 1s and 366d", "must be at most 7d"

HISTOGRAM = 'http_request_duration_seconds_bucket{service="ehr-api"}'
LATENCY_OBJECTIVE = {"latency": {"percentile": 95, "thresholdSeconds": 1.5}}
MINIMAL_SPEC = {"journey": "j", "targetRef": {"name": "ehr-api"}, "indicators": {"demand": "d"},
                "capacity": {"perReplica": 40, "maxReplicas": 60}}

ROUNDS = {"name": "rounds", "cron": "0 7 * * 1-5", "duration": "2h", "multiplier": 1.5}
RANGE = {"name": "flu", "start": "2026-12-01", "end": "2027-03-01", "multiplier": 1.3}
SCHEDULE_SPEC = {"timezone": "America/Chicago", "sloRefs": ["a"], "selector": {"matchLabels": {"g": "ed"}},
                 "surges": [ROUNDS]}

WARM_UP_REACH_RULE = "nodeProvisioningSeconds + startupSeconds must be at most 86400 (a day)"

CEL_CASES: list[tuple[str, str, Any, str | None]] = [
    # (kind, manifest path, object, rule it must break or None for a good object)
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "minReplicas": 2, "maxReplicas": 60}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "minReplicas": 60, "maxReplicas": 60}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "maxReplicas": 1}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "minReplicas": 61, "maxReplicas": 60}, CAPACITY_RULE),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "minReplicas": 2, "maxReplicas": 1}, CAPACITY_RULE),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 0.000001, "maxReplicas": 60}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 0.0000009, "maxReplicas": 60}, PER_REPLICA_RULE),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "maxReplicas": 60, "nodeProvisioningSeconds": 3600}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "maxReplicas": 60, "nodeProvisioningSeconds": 3600,
                                      "startupSeconds": 82800}, None),
    ("ClinicalSLO", "spec.capacity", {"perReplica": 40, "maxReplicas": 60, "nodeProvisioningSeconds": 3600,
                                      "startupSeconds": 82801}, WARM_UP_REACH_RULE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM}, None),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM, "errors": "e", "total": "t"},
     None),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM, "errors": "e"}, ERRORS_RULE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM, "total": "t"}, ERRORS_RULE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": "x_bucket"}, None),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyGood": "g", "errors": "e", "total": "t"}, None),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyGood": "g"}, clinicalslo.LATENCY_GOOD_TOTAL),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM, "latencyGood": "g",
                                        "errors": "e", "total": "t"}, clinicalslo.LATENCY_EXCLUSIVE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": "http_request_duration_seconds_count"},
     clinicalslo.HISTOGRAM_RULE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": "rate(x_bucket[5m])"},
     clinicalslo.HISTOGRAM_RULE),
    ("ClinicalSLO", "spec.indicators", {"demand": "d", "latencyHistogram": HISTOGRAM, "latency": "histogram_quantile("
                                        "0.95, sum by (le) (rate(x_bucket[5m])))"}, clinicalslo.LATENCY_REPLACED),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "objectives": LATENCY_OBJECTIVE,
                             "indicators": {"demand": "d", "latencyHistogram": HISTOGRAM}}, None),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "indicators": {"demand": "d"}}, None),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "objectives": LATENCY_OBJECTIVE}, clinicalslo.LATENCY_MEASURED),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "indicators": {"demand": "d", "latencyHistogram": HISTOGRAM}},
     clinicalslo.LATENCY_OBJECTIVE),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "indicators": {"demand": "d", "latencyGood": "g", "errors": "e",
                                                            "total": "t"}}, clinicalslo.LATENCY_OBJECTIVE),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "objectives": LATENCY_OBJECTIVE,
                             "indicators": {"demand": "d", "latencyHistogram": HISTOGRAM},
                             "capacity": {"perReplica": 40, "maxReplicas": 60, "perReplicaFrom": "Learned"}}, None),
    ("ClinicalSLO", "spec", {**MINIMAL_SPEC, "capacity": {"perReplica": 40, "maxReplicas": 60,
                                                          "perReplicaFrom": "Learned"}},
     clinicalslo.LEARNED_NEEDS_LATENCY),
    ("ClinicalSLO", "spec.residency", {"dataClass": "none"}, None),
    ("ClinicalSLO", "spec.residency", {"dataClass": "phi", "regions": ["eu-west-1"]}, None),
    ("ClinicalSLO", "spec.residency", {"regions": ["eu-west-1"]}, None),
    ("ClinicalSLO", "spec.residency", {"dataClass": "phi"}, RESIDENCY_RULE),
    ("ClinicalSLO", "spec.residency", {"dataClass": "pii", "regions": []}, RESIDENCY_RULE),
    ("ClinicalSLO", "spec.residency", {}, RESIDENCY_RULE),
    ("SurgeSchedule", "spec.surges[0]", ROUNDS, None),
    ("SurgeSchedule", "spec.surges[0]", RANGE, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "cron": "@daily", "duration": "1h", "minReplicas": 3}, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "cron": " @Hourly ", "duration": "5m", "multiplier": 2}, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "cron": "*/15  8-17 1,15 JAN-MAR mon-fri", "duration": "5m",
                                         "multiplier": 2}, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "start": "2026-12-12", "end": "2026-12-12T00:01",
                                         "minReplicas": 3}, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "start": "2026-12-12T08:00", "end": "2026-12-12T08:00:01",
                                         "minReplicas": 3}, None),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "cron": "0 7 * * *", "multiplier": 1.5}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "duration": "2h", "multiplier": 1.5}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "start": "2026-12-01"}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "start": "2026-12-01", "end": "2027-01-01"}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "start": "2026-12-01", "multiplier": 1.5}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "minReplicas": 2}, SURGE_KIND_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**RANGE, "end": "2026-11-01"}, END_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**RANGE, "end": "2026-12-01"}, END_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**RANGE, "start": "2026-12-12", "end": "2026-12-12T00:00"}, END_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**RANGE, "start": "2026-12-12T08:00", "end": "2026-12-12T08:00:00"},
     END_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**RANGE, "start": "2026-12-12T08:00:01", "end": "2026-12-12T08:00"},
     END_RULE),
    ("SurgeSchedule", "spec.surges[0]", {"name": "s", "cron": "0 7 * * *", "duration": "2h"}, RAISE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "multiplier": 1}, RAISE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 7 * *"}, CRON_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 7 * * 1-5 2026"}, CRON_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "@reboot"}, CRON_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "@every 5m"}, CRON_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "60 * * * *"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 24 * * *"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 0 0 * *"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 0 * 13 *"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 0 * * 8"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "*/0 * * * *"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "0 0 * * fun"}, CRON_RANGE_RULE),
    ("SurgeSchedule", "spec.surges[0]", {**ROUNDS, "cron": "59 23 31 12 7"}, None),
    ("SurgeSchedule", "spec.surges[0].duration", "1s", None),
    ("SurgeSchedule", "spec.surges[0].duration", "8784h", None),
    ("SurgeSchedule", "spec.surges[0].duration", "0s", DURATION_RULE),
    ("SurgeSchedule", "spec.surges[0].duration", "8785h", DURATION_RULE),
    ("SurgeSchedule", "spec.surges[0].leadTime", "168h", None),
    ("SurgeSchedule", "spec.surges[0].leadTime", "10081m", LEAD_RULE),
    ("ClinicalSLO", "spec.forecast.step", "1m", None),
    ("ClinicalSLO", "spec.forecast.step", "59s", STEP_RULE),
    ("ClinicalSLO", "spec.forecast.step", "1441m", STEP_RULE),
    ("ClinicalSLO", "spec.forecast.history", "2160h", None),
    ("ClinicalSLO", "spec.forecast.history", "2161h", HISTORY_RULE),
    ("ClinicalSLO", "spec.forecast.horizon", "168h", None),
    ("ClinicalSLO", "spec.forecast.horizon", "169h", HORIZON_RULE),
    ("ClinicalSLO", "spec.objectives.window", "1h", None),
    ("ClinicalSLO", "spec.objectives.window", "59m", WINDOW_RULE),
    ("ClinicalSLO", "spec.objectives.window", "2161h", WINDOW_RULE),
    ("SurgeSchedule", "spec", SCHEDULE_SPEC, None),
    ("SurgeSchedule", "spec", {**SCHEDULE_SPEC, "sloRefs": []}, None),
    ("SurgeSchedule", "spec", {key: v for key, v in SCHEDULE_SPEC.items() if key != "selector"}, None),
    ("SurgeSchedule", "spec", {key: v for key, v in SCHEDULE_SPEC.items() if key not in ("selector", "sloRefs")},
     SELECTS_RULE),
    ("SurgeSchedule", "spec", {**{key: v for key, v in SCHEDULE_SPEC.items() if key != "selector"}, "sloRefs": []},
     SELECTS_RULE),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "In", "values": ["a"]}, None),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "NotIn", "values": ["a"]}, None),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "Exists"}, None),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "DoesNotExist", "values": []},
     None),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "In"}, VALUES_RULE),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "NotIn", "values": []},
     VALUES_RULE),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "Exists", "values": ["a"]},
     VALUES_RULE),
    ("SurgeSchedule", "spec.selector.matchExpressions[0]", {"key": "k", "operator": "DoesNotExist",
                                                            "values": ["a"]}, VALUES_RULE),
    ("SurgeSchedule", "spec.defer", {"selector": {"matchLabels": {"healthscale.io/deferrable": "true"}}}, None),
    ("SurgeSchedule", "spec.defer", {"selector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]},
                                     "replicas": 1, "duringBurn": True, "interruptRunning": True}, None),
    ("SurgeSchedule", "spec.defer", {"selector": {"matchExpressions": [
        {"key": "k", "operator": "NotIn", "values": ["a"]}, {"key": "t", "operator": "In", "values": ["b"]}]}}, None),
    ("SurgeSchedule", "spec.defer", {"selector": {}}, surgeschedule.DEFER_SELECTOR_RULE),
    ("SurgeSchedule", "spec.defer", {"selector": {"matchLabels": {}, "matchExpressions": []}},
     surgeschedule.DEFER_SELECTOR_RULE),
    ("SurgeSchedule", "spec.defer", {"selector": {"matchExpressions": [
        {"key": "k", "operator": "NotIn", "values": ["a"]}, {"key": "t", "operator": "DoesNotExist"}]}},
     surgeschedule.DEFER_SELECTOR_RULE),
]
CEL_IDS = [
    "minReplicas below maxReplicas passes",
    "minReplicas equal to maxReplicas passes",
    "the defaulted minReplicas of 1 passes with maxReplicas 1",
    "minReplicas above maxReplicas fails",
    "maxReplicas below minReplicas fails",
    "the smallest perReplica passes",
    "a perReplica so small that replicas could overflow fails",
    "an hour of node provisioning with the default startup passes",
    "node provisioning and startup adding up to a day pass",
    "node provisioning and startup adding up to more than a day fail",
    "demand with a latency histogram passes",
    "errors with total passes",
    "errors without total fails",
    "total without errors fails",
    "a bucket series without matchers passes",
    "latencyGood with total passes",
    "latencyGood without total fails",
    "latencyHistogram and latencyGood together fail",
    "a histogram's count series is not its buckets and fails",
    "a rate over the buckets is not a bucket selector and fails",
    "the removed latency indicator fails naming its replacements",
    "a latency objective with its histogram passes",
    "neither latency objective nor latency indicator passes",
    "a latency objective without a latency indicator fails",
    "a latency histogram without a latency objective fails",
    "latencyGood without a latency objective fails",
    "a learned perReplica with a latency objective and its histogram passes",
    "a learned perReplica without a latency objective fails",
    "dataClass none needs no regions",
    "phi with a region passes",
    "the defaulted dataClass phi with a region passes",
    "phi without regions fails",
    "pii with an empty region list fails",
    "an empty residency defaults to phi without regions and fails",
    "a cron surge with a duration passes",
    "a date-range surge passes",
    "a macro with a floor passes",
    "a macro in any case with blanks around it passes",
    "five fields with ranges, lists, steps and names pass",
    "a date and a date-time one minute later pass",
    "a date-time and one a second later pass",
    "cron without duration fails the kind rule",
    "duration without cron fails the kind rule",
    "cron, duration and start fails the kind rule",
    "both kinds of window at once fails the kind rule",
    "start without end fails the kind rule",
    "no window at all fails the kind rule",
    "an end before the start fails",
    "an end equal to the start fails",
    "a date-time equal to a date's midnight fails",
    "the same time with and without seconds fails",
    "a start one second after the end fails",
    "a surge without multiplier or floor fails once defaulted",
    "an integer multiplier of 1 fails, compared as a double",
    "four cron fields fail",
    "six cron fields fail",
    "an unknown macro fails",
    "a non-cron @every fails",
    "minute 60 fails the range rule",
    "hour 24 fails the range rule",
    "day of month 0 fails the range rule",
    "month 13 fails the range rule",
    "day of week 8 fails the range rule",
    "a zero step fails the range rule",
    "an unknown weekday name fails the range rule",
    "the last value of every field passes",
    "a one-second surge passes",
    "a surge of 366 days in hours passes",
    "a zero-length surge fails",
    "a surge one hour longer than 366 days fails",
    "a lead time of 7 days in hours passes",
    "a lead time a minute over 7 days fails",
    "a one-minute step passes",
    "a step under a minute fails",
    "a step a minute over a day fails",
    "90 days of history in hours passes",
    "history an hour over 90 days fails",
    "a horizon of 7 days in hours passes",
    "a horizon an hour over 7 days fails",
    "a one-hour SLO window passes",
    "an SLO window under an hour fails",
    "an SLO window over 90 days fails",
    "selector and sloRefs pass",
    "a selector with an empty sloRefs passes",
    "sloRefs alone pass",
    "neither selector nor sloRefs fails",
    "an empty sloRefs without selector fails",
    "In with values passes",
    "NotIn with values passes",
    "Exists without values passes",
    "DoesNotExist with an empty list passes",
    "In without values fails",
    "NotIn with an empty list fails",
    "Exists with values fails",
    "DoesNotExist with values fails",
    "a deferral selecting by matchLabels passes",
    "a deferral selecting by an Exists expression with every option set passes",
    "a deferral with a NotIn and an In expression passes",
    "a deferral with an empty selector fails: it would select the whole namespace",
    "a deferral with empty matchLabels and matchExpressions fails",
    "a deferral selecting only by NotIn and DoesNotExist fails",
]


def _set_in(document: dict[str, Any], manifest_path: str, value: Any) -> None:
    node: Any = document
    steps: list[str | int] = []
    for part in manifest_path.split("."):
        name, _, index = part.partition("[")
        steps.append(name)
        if index:
            steps.append(int(index.rstrip("]")))
    for step in steps[:-1]:
        if isinstance(step, str) and step not in node:
            node[step] = {}
        node = node[step]
        if isinstance(node, list) and not node:
            node.append({})
    node[steps[-1]] = copy.deepcopy(value)


def _schedule_for_matchexpressions(document: dict[str, Any]) -> None:
    document["spec"]["selector"] = {"matchExpressions": [{}]}


@pytest.mark.parametrize(("kind", "manifest_path", "value", "broken"), CEL_CASES, ids=CEL_IDS)
def test_cel_rules_accept_and_reject_what_the_models_do(
    slo_document: dict[str, Any], schedule_document: dict[str, Any],
    kind: str, manifest_path: str, value: Any, broken: str | None,
) -> None:
    file_name = SLO_FILE if kind == "ClinicalSLO" else SCHEDULE_FILE
    node = node_at(root_schema(file_name), manifest_path)
    rules = node["x-kubernetes-validations"]
    assert broken is None or broken in {rule["message"] for rule in rules}
    results = evaluate(rules, value, node)
    assert results == {message: message != broken for message in results}

    # The model, given the same object inside a complete manifest, agrees.
    document = slo_document if kind == "ClinicalSLO" else schedule_document
    if "matchExpressions" in manifest_path:
        _schedule_for_matchexpressions(document)
    _set_in(document, manifest_path, value)
    model: Any = clinicalslo.ClinicalSLO if kind == "ClinicalSLO" else surgeschedule.SurgeSchedule
    if broken is None:
        manifests.parse(model, document)
    else:
        with pytest.raises(manifests.ManifestError) as caught:
            manifests.parse(model, document)
        assert [problem.split(": ", 1)[0] for problem in caught.value.problems] == [manifest_path]


def _all_rules() -> set[tuple[str, str]]:
    found = set()
    for file_name in (SLO_FILE, SCHEDULE_FILE):
        for _path, node in nodes(root_schema(file_name)):
            for rule in node.get("x-kubernetes-validations", []):
                found.add((file_name, rule["message"]))
    return found


def test_every_cel_rule_is_broken_by_some_case() -> None:
    targeted = {(SLO_FILE if kind == "ClinicalSLO" else SCHEDULE_FILE, broken)
                for kind, _path, _value, broken in CEL_CASES if broken is not None}
    assert _all_rules() == targeted


def test_every_cel_rule_compiles() -> None:
    for file_name in (SLO_FILE, SCHEDULE_FILE):
        for path, node in nodes(root_schema(file_name)):
            for rule in node.get("x-kubernetes-validations", []):
                assert _program(rule["rule"]) is not None, path


@pytest.mark.parametrize(
    "macro",
    ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"],
    ids=["@yearly is admitted", "@annually is admitted", "@monthly is admitted", "@weekly is admitted",
         "@daily is admitted", "@midnight is admitted", "@hourly is admitted"],
)
def test_the_cron_rule_admits_every_macro_the_model_knows(macro: str) -> None:
    node = node_at(root_schema(SCHEDULE_FILE), "spec.surges[0]")
    surge = {**ROUNDS, "cron": macro}
    assert all(evaluate(node["x-kubernetes-validations"], surge, node).values())
    assert surgeschedule.Surge.model_validate(surge).cron == macro
