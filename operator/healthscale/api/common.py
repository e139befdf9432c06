"""Pieces shared by both custom resources: the frozen base model, metadata, conditions, selectors."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

import pydantic

GROUP = "healthscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label: what Kubernetes accepts as a name segment."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Model(pydantic.BaseModel):
    """Base of every spec and status model: frozen, camelCase on the wire, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it appears in a manifest (camelCase, unset optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(pydantic.BaseModel):
    """The parts of Kubernetes metadata healthscale reads; everything else is kept as is."""

    model_config = pydantic.ConfigDict(frozen=True, extra="allow")

    name: str = pydantic.Field(min_length=1, max_length=253)
    namespace: str = "default"
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    """Set by the API server; what an ownerReference to the object names."""


class LabelSelectorRequirement(Model):
    """One matchExpressions term, as in Kubernetes' LabelSelector."""

    key: str = pydantic.Field(min_length=1, max_length=317)
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: tuple[str, ...] = ()
    """Label values; required for In and NotIn, empty for Exists and DoesNotExist."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            "message": "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist",
        }
    ]

    @pydantic.model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values != bool(self.values):
            raise ValueError(
                "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist"
            )
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        found = self.key in labels and labels[self.key] in self.values
        return found if self.operator == "In" else not found


class LabelSelector(Model):
    """A Kubernetes label selector; all of its terms must match."""

    match_labels: dict[str, str] = pydantic.Field(default_factory=dict)
    """Labels that must all be present with these values."""
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()
    """Set-based requirements that must all hold."""

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class Condition(Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = pydantic.Field(max_length=316)
    """The aspect this condition reports, e.g. Ready or MetricsAvailable."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = pydantic.Field(default="", max_length=1024)
    """A CamelCase word for the cause, for machines."""
    message: str = pydantic.Field(default="", max_length=32768)
    """A sentence for humans, with the numbers behind the condition."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The .metadata.generation this condition was computed for."""


StatusT = TypeVar("StatusT", bound=pydantic.BaseModel)


def read_leniently(model: type[StatusT], raw: object, lists: tuple[str, ...]) -> tuple[StatusT, tuple[str, ...]]:
    """A status as last written, leniently: the typed model, and the fields (or items of the
    ``lists``, read one by one) left out because they do not validate (written by an older or
    newer operator, or by hand). One unreadable item never hides the records beside it."""

    def valid(part: dict[str, object]) -> bool:
        try:
            model.model_validate(part)
        except pydantic.ValidationError:
            return False
        return True

    body = dict(raw) if isinstance(raw, dict) else {}
    try:
        return model.model_validate(body), ()  # the usual case: validated once
    except pydantic.ValidationError:
        pass
    kept: dict[str, object] = {}
    dropped: list[str] = []
    for key, value in body.items():
        if key in lists and isinstance(value, list):
            kept[key] = [item for item in value if valid({key: [item]})]
            dropped += [f"{key}[{index}]" for index, item in enumerate(value) if not valid({key: [item]})]
        elif valid({key: value}):
            kept[key] = value
        else:
            dropped.append(key)
    return model.model_validate(kept), tuple(dropped)
