"""The Argo CD health check for ClinicalSLO (examples/gitops/argocd/clinicalslo-health.lua), run
with Debian's Lua 5.4 (`apt-get install -y lua5.4`) on ClinicalSLOs as the operator writes them.

Argo CD runs the script with a global `obj` (the resource) and reads the table it returns. Here a
driver sets `obj` from a Python dict, runs the script and prints the status and the message.
A missing interpreter FAILS these tests: the check must have run to count as tested.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from chartlib import REPO_ROOT

pytestmark = pytest.mark.chart

SCRIPT = REPO_ROOT / "examples" / "gitops" / "argocd" / "clinicalslo-health.lua"


@pytest.fixture(scope="module")
def lua() -> str:
    found = shutil.which("lua5.4")
    if found is None:
        pytest.fail("lua5.4 not found: install it with `apt-get install -y lua5.4` (.ci/run does)", pytrace=False)
    return found


def lua_literal(value: Any) -> str:
    """A Python value as a Lua table constructor (None leaves the key out, as JSON null is absent in Argo CD)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(key)}] = {lua_literal(item)}" for key, item in value.items()
                               if item is not None) + "}"
    raise TypeError(f"cannot express {value!r} in Lua")


def health(lua: str, resource: dict[str, Any]) -> tuple[str, str]:
    driver = (f"obj = {lua_literal(resource)}\n"
              f"local check = assert(loadfile({lua_literal(str(SCRIPT))}))\n"
              "local hs = check()\n"
              "io.write(hs.status, '\\n', hs.message or '')\n")
    result = subprocess.run([lua, "-"], input=driver, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


def slo(generation: int = 2, observed: int | None = 2, conditions: list[dict[str, Any]] | None = None,
        explanation: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
                                "metadata": {"name": "ed-triage", "namespace": "ehr", "generation": generation},
                                "spec": {"mode": "Active"}}
    if conditions is not None:
        resource["status"] = {"observedGeneration": observed, "conditions": conditions, "explanation": explanation}
    return resource


def condition(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


EXPLANATION = "14 replicas (was 11): forecast demand 1.35e+04 within 33m, 1000/replica"


@pytest.mark.parametrize(("resource", "expected"), [
    pytest.param(slo(), ("Progressing", "Waiting for healthscale to plan this ClinicalSLO"),
                 id="no status yet is Progressing"),
    pytest.param(slo(generation=3, observed=2, conditions=[condition("Ready", "True")]),
                 ("Progressing", "Waiting for healthscale to plan generation 3"),
                 id="a spec change not yet observed is Progressing, even if the old plan was Ready"),
    pytest.param(slo(conditions=[condition("MetricsAvailable", "True"),
                                 condition("Ready", "True", "Planned", "planned"),
                                 condition("DemandAnomaly", "False")], explanation=EXPLANATION),
                 ("Healthy", EXPLANATION), id="Ready True is Healthy with the decision as message"),
    pytest.param(slo(conditions=[condition("Ready", "False", "TargetNotFound",
                                           "read Deployment ehr/ehr-api: not found")]),
                 ("Degraded", "TargetNotFound: read Deployment ehr/ehr-api: not found"),
                 id="Ready False is Degraded with the reason and message"),
    pytest.param(slo(conditions=[condition("Ready", "Unknown", message="first cycle running")]),
                 ("Progressing", "first cycle running"), id="Ready Unknown is Progressing"),
    pytest.param(slo(conditions=[condition("MetricsAvailable", "False")]),
                 ("Progressing", "Waiting for the Ready condition"), id="no Ready condition is Progressing"),
    pytest.param({**slo(conditions=[condition("Ready", "True", message="planned")]), "metadata": {"name": "x"}},
                 ("Healthy", "planned"), id="without metadata.generation the Ready condition decides"),
])
def test_the_health_check_reads_the_ready_condition(lua: str, resource: dict[str, Any],
                                                    expected: tuple[str, str]) -> None:
    assert health(lua, resource) == expected


def test_the_literal_helper_escapes_strings(lua: str) -> None:
    resource = slo(conditions=[condition("Ready", "False", "InvalidQuery", 'query "sum(x)"\nreturned 2 series')])
    assert health(lua, resource) == ("Degraded", 'InvalidQuery: query "sum(x)"\nreturned 2 series')
