"""Reading manifests (YAML or dicts) into the typed models, with errors that name the field and rule.

This is the one place where untyped input becomes a ClinicalSLO or a SurgeSchedule; the CLI,
the operator and the tests all parse through here.
"""

from __future__ import annotations

import pathlib
from typing import Any, TypeVar

import pydantic
import yaml

from healthscale.api import clinicalslo, surgeschedule

ResourceT = TypeVar("ResourceT", clinicalslo.ClinicalSLO, surgeschedule.SurgeSchedule)


class ManifestError(ValueError):
    """A manifest that does not describe a valid resource; ``problems`` lists ``field: rule`` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid manifest:\n" + "\n".join(f"  - {problem}" for problem in problems))


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(root)"


def _long_enough(item: Any) -> bool:
    """True when the input list itself had enough items (a too_short error then only echoes item errors)."""
    given = item["input"]
    return isinstance(given, (list, tuple)) and len(given) >= item.get("ctx", {}).get("min_length", 0)


def describe(error: pydantic.ValidationError) -> list[str]:
    """One ``field: message`` line per problem, with camelCase field paths as users write them."""
    lines = []
    for item in error.errors(include_url=False):
        if item["type"] == "too_short" and _long_enough(item):
            # pydantic counts only the items that validated; the items' own errors are reported
            # already, so "should have at least 1 item, not 0" for a list of one bad item is noise.
            continue
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling against `kubectl explain`)"
        lines.append(f"{_location(item['loc'])}: {message}")
    return lines


def parse(model: type[ResourceT], document: Any, source: str = "manifest") -> ResourceT:
    """Validate one manifest dict as ``model``; raise ManifestError listing every problem."""
    if not isinstance(document, dict):
        raise ManifestError(source, [f"(root): expected a mapping with apiVersion, kind, metadata and spec, got {type(document).__name__}"])
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as error:
        raise ManifestError(source, describe(error)) from None


def parse_spec(model: type[ResourceT], document: dict[str, Any], source: str = "manifest") -> ResourceT:
    """An object as the API server stores it, its spec validated strictly and its status left out:
    each resource's ``read_status`` reads status leniently, so one status item written by another
    operator version (or by hand) never makes a valid spec count as invalid."""
    return parse(model, {**document, "status": None}, source)


def load_documents(path: pathlib.Path) -> list[Any]:
    """All YAML documents in a file (empty documents dropped); errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(str(path), [f"cannot read file: {error.strerror}"]) from None
    try:
        return [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        raise ManifestError(str(path), [_yaml_problem(error)]) from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line L, column C: not valid YAML: <problem>`` (PyYAML's own text names ``<unicode string>``)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"not valid YAML: {error}"
    mark = error.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {error.problem}"
    if error.context and error.context_mark is not None:
        text += f" ({error.context} started at line {error.context_mark.line + 1}, column {error.context_mark.column + 1})"
    elif error.context:
        text += f" ({error.context})"
    return text


def load_one(model: type[ResourceT], path: pathlib.Path) -> ResourceT:
    """The single document of kind ``model`` in a file; other kinds in the file are ignored."""
    kind = model.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
    matching = [doc for doc in load_documents(path) if isinstance(doc, dict) and doc.get("kind") == kind]
    if len(matching) != 1:
        raise ManifestError(str(path), [f"(root): expected exactly one {kind} document, found {len(matching)}"])
    return parse(model, matching[0], source=str(path))
