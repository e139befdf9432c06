"""Workload pod selectors: a Kubernetes LabelSelector as the label-selector string of list calls.

The one place healthscale turns a workload's ``spec.selector`` (``matchLabels`` and
``matchExpressions``) into ``a=b,env in (x,y),tier notin (z),!k,k2``. It answers ``None`` whenever
the string would not select exactly the pods the workload selects: an empty selector (which a
list call would read as "every pod in the namespace"), an unknown operator, ``In``/``NotIn``
without values, ``Exists``/``DoesNotExist`` with values, or a key or value that is not valid label
syntax (and so could change the meaning of the string). Callers treat ``None`` as "no pods".

Pure: the input is the API's JSON (camelCase dicts) as read, of any shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Label syntax (k8s.io/apimachinery validation): an optional DNS-subdomain prefix and a name of
# at most 63 characters; a value of at most 63 characters, possibly empty.
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}")
_VALUE = re.compile(rf"({_NAME})?")


def _key(key: object) -> str | None:
    return key if isinstance(key, str) and _KEY.fullmatch(key) else None


def _values(values: object) -> list[str] | None:
    if not isinstance(values, list) or not all(isinstance(value, str) and _VALUE.fullmatch(value) for value in values):
        return None
    return [str(value) for value in values]


def _expression(expression: object) -> str | None:
    if not isinstance(expression, Mapping):
        return None
    key, operator = _key(expression.get("key")), expression.get("operator")
    values = _values(expression.get("values") or [])
    if key is None or values is None:
        return None
    if operator in ("In", "NotIn"):
        if not values:
            return None  # the API server rejects it; "in ()" would not parse
        return f"{key} {'in' if operator == 'In' else 'notin'} ({','.join(values)})"
    if operator in ("Exists", "DoesNotExist") and not values:
        return key if operator == "Exists" else f"!{key}"
    return None


def label_selector(selector: object) -> str | None:
    """The LabelSelector as a label-selector string, or None when it is empty or not expressible."""
    if not isinstance(selector, Mapping):
        return None
    labels, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    if not isinstance(labels, Mapping) or not isinstance(expressions, list):
        return None
    parts: list[str] = []
    for key, value in sorted(labels.items(), key=lambda item: str(item[0])):
        if _key(key) is None or not isinstance(value, str) or not _VALUE.fullmatch(value):
            return None
        parts.append(f"{key}={value}")
    for expression in expressions:
        part = _expression(expression)
        if part is None:
            return None
        parts.append(part)
    return ",".join(parts) or None
