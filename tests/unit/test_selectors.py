"""The one workload selector builder: a LabelSelector as a list call's label-selector string.

Every selector the builder turns into a string must select exactly what the workload selects; any
it cannot express, and the empty one, give None (never "" which would list the whole namespace).
"""

from __future__ import annotations

from typing import Any

import pytest

from healthscale.domain import selectors


def expression(key: Any, operator: Any, *values: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        found["values"] = list(values)
    return found


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2", id="match labels are sorted by key"),
        pytest.param({"matchLabels": {"app.kubernetes.io/name": "ehr-api"}}, "app.kubernetes.io/name=ehr-api",
                     id="a prefixed key is kept whole"),
        pytest.param({"matchLabels": {"canary": ""}}, "canary=", id="an empty label value is a value"),
        pytest.param({"matchExpressions": [expression("env", "In", "x", "y")]}, "env in (x,y)",
                     id="In lists its values in the order given"),
        pytest.param({"matchExpressions": [expression("tier", "NotIn", "batch")]}, "tier notin (batch)",
                     id="NotIn becomes notin"),
        pytest.param({"matchExpressions": [expression("k2", "Exists")]}, "k2", id="Exists is the bare key"),
        pytest.param({"matchExpressions": [expression("k", "DoesNotExist")]}, "!k", id="DoesNotExist is the negated key"),
        pytest.param({"matchExpressions": [expression("k", "Exists"), expression("k", "DoesNotExist")]}, "k,!k",
                     id="contradicting expressions are kept and select nothing as in Kubernetes"),
        pytest.param({"matchLabels": {"a": "b"},
                      "matchExpressions": [expression("env", "In", "x", "y"), expression("k", "DoesNotExist"),
                                           expression("k2", "Exists")]},
                     "a=b,env in (x,y),!k,k2", id="labels come first then expressions in their order"),
        pytest.param({"matchLabels": {}, "matchExpressions": [expression("app", "In", "ehr")]}, "app in (ehr)",
                     id="only matchExpressions is a selector"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists", "values": None}]}, "a",
                     id="null values count as no values"),
    ],
)
def test_an_expressible_selector_becomes_a_label_selector_string(selector: dict[str, Any], expected: str) -> None:
    assert selectors.label_selector(selector) == expected


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param(None, id="no selector selects nothing"),
        pytest.param({}, id="an empty selector selects nothing instead of the whole namespace"),
        pytest.param({"matchLabels": {}, "matchExpressions": []}, id="empty lists select nothing"),
        pytest.param({"matchLabels": None, "matchExpressions": None}, id="null lists select nothing"),
        pytest.param({"matchExpressions": [expression("env", "In")]}, id="In without values is not expressible"),
        pytest.param({"matchExpressions": [expression("env", "NotIn")]}, id="NotIn without values is not expressible"),
        pytest.param({"matchExpressions": [expression("k", "Exists", "x")]}, id="Exists with values is not expressible"),
        pytest.param({"matchExpressions": [expression("k", "DoesNotExist", "x")]},
                     id="DoesNotExist with values is not expressible"),
        pytest.param({"matchExpressions": [expression("k", "Gt", "1")]}, id="an unknown operator is not expressible"),
        pytest.param({"matchLabels": {"a": "1"}, "matchExpressions": [expression("k", "Lt", "1")]},
                     id="one bad expression spoils the whole selector rather than widening it"),
        pytest.param({"matchLabels": {"a": "x,b=y"}}, id="a value with a comma would change the meaning"),
        pytest.param({"matchLabels": {"a b": "x"}}, id="a key with a space is not a label key"),
        pytest.param({"matchExpressions": [expression("env", "In", "x)", "y")]},
                     id="a value with a parenthesis would change the meaning"),
        pytest.param({"matchExpressions": [expression("!k", "Exists")]}, id="a key with an exclamation mark is refused"),
        pytest.param({"matchLabels": {"a": 1}}, id="a value that is not a string is refused"),
        pytest.param({"matchLabels": {"a": "x" * 64}}, id="a value longer than 63 characters is refused"),
        pytest.param({"matchLabels": ["a=b"]}, id="matchLabels that is not a map is refused"),
        pytest.param({"matchExpressions": {"key": "a"}}, id="matchExpressions that is not a list is refused"),
        pytest.param({"matchExpressions": ["a"]}, id="an expression that is not a map is refused"),
        pytest.param({"matchExpressions": [expression("env", "In", "x", 2)]}, id="a value of another type is refused"),
        pytest.param("app=ehr", id="a string is not a LabelSelector"),
    ],
)
def test_a_selector_that_is_empty_or_not_expressible_gives_none(selector: Any) -> None:
    assert selectors.label_selector(selector) is None
