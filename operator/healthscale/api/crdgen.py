"""Generates the CustomResourceDefinitions from the pydantic models.

The models are the single source of names, types, bounds, descriptions and defaults; this module
turns their JSON schema into Kubernetes' structural OpenAPI v3 schema and adds the CEL rules the
models declare in ``crd_validations``. ``healthscale crds --check`` fails when crds/ has drifted.
"""

from __future__ import annotations

import copy
import datetime as dt
import pathlib
from typing import Any

import pydantic
import pydantic.json_schema
import yaml

from healthscale.api import clinicalslo, common, durations, surgeschedule

_DROPPED_KEYS = {"title"}


class _ManifestDefaults(pydantic.json_schema.GenerateJsonSchema):
    """Renders defaults the way users write them (``28d``, not ``P28D``)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, dt.timedelta):
            return durations.format(dft)
        return super().encode_default(dft)


def _validations_by_title() -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}

    def visit(model: type[pydantic.BaseModel]) -> None:
        rules = getattr(model, "crd_validations", None)
        if rules:
            found[model.__name__] = list(rules)
        for field in model.model_fields.values():
            for candidate in _models_in(field.annotation):
                visit(candidate)

    visit(clinicalslo.ClinicalSLOSpec)
    visit(surgeschedule.SurgeScheduleSpec)
    return found


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [model for argument in getattr(annotation, "__args__", ()) for model in _models_in(argument)]


def _structural(node: Any, definitions: dict[str, Any], rules: dict[str, list[dict[str, str]]]) -> Any:
    """Inline $refs, drop nulls from optional fields and convert to OpenAPI v3.0 forms."""
    if isinstance(node, list):
        return [_structural(item, definitions, rules) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        resolved = dict(definitions[name])
        extra = {key: value for key, value in node.items() if key != "$ref"}
        resolved.update(extra)
        referenced = _structural(resolved, definitions, rules)
        if name in rules:
            referenced["x-kubernetes-validations"] = copy.deepcopy(rules[name])
        return referenced
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} in a structural schema")
        merged = {key: value for key, value in node.items() if key != "anyOf"}
        merged.update(options[0])
        return _structural(merged, definitions, rules)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key == "$defs":
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            result["enum"] = [value]
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            result["minimum"] = value
            result["exclusiveMinimum"] = True
            continue
        if key == "exclusiveMaximum" and not isinstance(value, bool):
            result["maximum"] = value
            result["exclusiveMaximum"] = True
            continue
        if key == "maxItems" and "prefixItems" in node:
            continue
        if key == "properties":
            result[key] = {name: _structural(sub, definitions, rules) for name, sub in value.items()}
            continue
        result[key] = _structural(value, definitions, rules)
    if result.get("type") == "object" and result.get("additionalProperties") is False:
        del result["additionalProperties"]
    if "enum" in result and "type" not in result:
        result["type"] = "string"
    if result.get("type") == "object" and "properties" in result:
        for name, schema in result["properties"].items():
            if schema.get("type") == "object" and "properties" in schema and "default" not in schema:
                # Nested objects with defaults of their own get an empty default so that the API
                # server fills in the inner defaults even when the user leaves the object out.
                if (node.get("title"), name) in _OBJECTS_DEFAULTED_WHEN_ABSENT:
                    schema["default"] = {}
    return result


_OBJECTS_DEFAULTED_WHEN_ABSENT = {("ClinicalSLOSpec", "objectives"), ("ClinicalSLOSpec", "forecast"),
                                  ("ClinicalSLOSpec", "scaleDown")}
"""(model, field): the spec's objects with defaults of their own (status.objectives is not one)."""


def _schema_for(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_ManifestDefaults)
    definitions = raw.get("$defs", {})
    schema: dict[str, Any] = _structural(raw, definitions, _validations_by_title())
    if model.__name__ in _validations_by_title():
        schema["x-kubernetes-validations"] = copy.deepcopy(_validations_by_title()[model.__name__])
    return schema


def _surges_as_map(spec_schema: dict[str, Any]) -> None:
    surges = spec_schema["properties"]["surges"]
    surges["x-kubernetes-list-type"] = "map"
    surges["x-kubernetes-list-map-keys"] = ["name"]


def _crd(kind: str, plural: str, spec_model: type[pydantic.BaseModel], status_model: type[pydantic.BaseModel],
         columns: list[dict[str, str]], short_names: list[str], description: str) -> dict[str, Any]:
    spec_schema = _schema_for(spec_model)
    if kind == surgeschedule.KIND:
        _surges_as_map(spec_schema)
    status_schema = _schema_for(status_model)
    status_schema.pop("additionalProperties", None)
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{common.GROUP}",
            "annotations": {"healthscale.io/generated-by": "healthscale crds (do not edit by hand)"},
        },
        "spec": {
            "group": common.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["healthscale"],
            },
            "versions": [
                {
                    "name": common.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "APIVersion of the object: healthscale.io/v1alpha1."},
                                "kind": {"type": "string", "description": f"Kind of the object: {kind}."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def definitions() -> dict[str, dict[str, Any]]:
    """File name -> CRD object, for both kinds."""
    return {
        f"{clinicalslo.PLURAL}.{common.GROUP}.yaml": _crd(
            clinicalslo.KIND, clinicalslo.PLURAL, clinicalslo.ClinicalSLOSpec, clinicalslo.ClinicalSLOStatus,
            clinicalslo.PRINTER_COLUMNS, ["cslo"],
            "ClinicalSLO: a clinical journey's objective, demand signal, capacity and residency; healthscale scales its workload ahead of demand.",
        ),
        f"{surgeschedule.PLURAL}.{common.GROUP}.yaml": _crd(
            surgeschedule.KIND, surgeschedule.PLURAL, surgeschedule.SurgeScheduleSpec, surgeschedule.SurgeScheduleStatus,
            surgeschedule.PRINTER_COLUMNS, ["surge"],
            "SurgeSchedule: a calendar of known surges (shift changes, clinics, seasons, campaigns) for selected ClinicalSLOs.",
        ),
    }


def render(crd: dict[str, Any]) -> str:
    return "# Generated by `healthscale crds` from operator/healthscale/api; do not edit by hand.\n" + yaml.safe_dump(
        crd, sort_keys=False, width=120
    )


def write(directory: pathlib.Path) -> list[pathlib.Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in definitions().items():
        path = directory / name
        path.write_text(render(crd), encoding="utf-8")
        written.append(path)
    return written


def drift(directory: pathlib.Path) -> list[str]:
    """Names of CRD files in ``directory`` that differ from what the models generate."""
    return [
        name
        for name, crd in definitions().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != render(crd)
    ]
