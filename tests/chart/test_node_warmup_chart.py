"""The chart's node warm-up (nodeWarmup, issue 13): off by default, and when on, the operator's
placeholder pods get a PriorityClass that real pods preempt and that never preempts anything.

What the operator would run with is read through its own command line (``healthscale run``'s
parser and ``cli._node_warmup``), not from copies of its flags. Its rights are checked in
test_rbac_least_privilege.py, its values' bounds in test_values_schema.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from chartlib import Helm, by_kind
from healthscale import cli
from healthscale.service import room

pytestmark = pytest.mark.chart

URL = "prometheus.url=http://prometheus:9090"
ON = "nodeWarmup.enabled=true"


def render(helm: Helm, *settings: str, release: str = "hs") -> list[dict[str, Any]]:
    return helm.render(set_values=[URL, *settings], release=release, namespace="healthscale-system")


def operator_settings(objects: list[dict[str, Any]]) -> room.Settings | None:
    """The placeholders' settings the operator would run with, parsed by its own command line."""
    (deployment,) = by_kind(objects, "Deployment")
    arguments = cli._parser().parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    return cli._node_warmup(arguments)


def test_off_by_default_the_operator_creates_no_placeholders_and_the_chart_no_priorityclass(helm: Helm) -> None:
    objects = render(helm)
    assert operator_settings(objects) is None
    assert not by_kind(objects, "PriorityClass")


def test_on_the_placeholders_run_at_the_charts_priorityclass_which_real_pods_preempt(helm: Helm) -> None:
    objects = render(helm, ON)
    settings = operator_settings(objects)
    (priority_class,) = by_kind(objects, "PriorityClass")
    assert settings == room.Settings(image="registry.k8s.io/pause:3.10", priority_class="hs-healthscale-placeholder")
    assert priority_class["metadata"]["name"] == settings.priority_class
    assert priority_class["value"] == -10
    assert priority_class["preemptionPolicy"] == "Never", "a placeholder must never preempt a real pod"
    assert priority_class["globalDefault"] is False
    assert "placeholder" in priority_class["description"]


def test_a_release_called_healthscale_gets_the_operators_default_names(helm: Helm) -> None:
    settings = operator_settings(render(helm, ON, release="healthscale"))
    assert settings == room.Settings(image=room.DEFAULT_IMAGE, priority_class=room.DEFAULT_PRIORITY_CLASS)


@pytest.mark.parametrize(("settings", "image", "name", "created"), [
    pytest.param(["nodeWarmup.priorityClass.create=false", "nodeWarmup.priorityClass.name=low"], room.DEFAULT_IMAGE,
                 "low", False, id="a PriorityClass of yours is named to the operator and not created"),
    pytest.param(["nodeWarmup.priorityClass.name=placeholders", "nodeWarmup.priorityClass.value=-1000",
                  "nodeWarmup.image=registry.example.org/pause:3.10"], "registry.example.org/pause:3.10",
                 "placeholders", True, id="a chosen name, value and image are what the operator and the class get"),
])
def test_the_placeholders_settings_follow_the_values(helm: Helm, settings: list[str], image: str, name: str,
                                                     created: bool) -> None:
    objects = render(helm, ON, *settings)
    assert operator_settings(objects) == room.Settings(image=image, priority_class=name)
    assert [item["metadata"]["name"] for item in by_kind(objects, "PriorityClass")] == ([name] if created else [])
    if created:
        assert by_kind(objects, "PriorityClass")[0]["value"] == -1000
