"""The lock files are current for pyproject.toml, checked offline.

Re-resolving with uv needs PyPI, so instead (tools/lock.py explains the choice): each lock's header
records a hash of pyproject's dependency lists when `make lock` wrote it, and every direct
dependency is pinned in the lock at a version that its specifier allows. Editing pyproject's
dependencies without `make lock` fails here, with the command to run.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
FIX = "run `make lock` (tools/lock.py) and commit locks/"


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthscale_tools_lock", REPO_ROOT / "tools" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def direct(extras: tuple[str, ...]) -> list[Requirement]:
    requirements = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in extras:
        requirements += [Requirement(text) for text in PROJECT["optional-dependencies"][extra]]
    return [requirement for requirement in requirements if canonicalize_name(requirement.name) != PROJECT["name"]]


LOCKS = [(lock.RUNTIME, ()), (lock.TEST, ("test", "plot"))]


@pytest.mark.parametrize(("path", "extras"), LOCKS, ids=["runtime", "test"])
def test_the_lock_was_generated_from_the_current_dependency_lists(path: Path, extras: tuple[str, ...]) -> None:
    assert path.is_file(), f"{path.relative_to(REPO_ROOT)} is missing: {FIX}"
    assert lock.recorded_hash(path) == lock.dependency_hash(), (
        f"pyproject.toml's dependencies changed since {path.relative_to(REPO_ROOT)} was generated: {FIX}")


@pytest.mark.parametrize(("path", "extras"), LOCKS, ids=["runtime", "test"])
def test_every_direct_dependency_is_pinned_at_an_allowed_version(path: Path, extras: tuple[str, ...]) -> None:
    pinned = pins(path)
    for requirement in direct(extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not pinned in {path.name}: {FIX}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{path.name} pins {name}=={pinned[name]}, outside {requirement}: {FIX}")


def test_the_image_runs_the_versions_the_tests_test() -> None:
    runtime, test = pins(lock.RUNTIME), pins(lock.TEST)
    differing = {name: (version, test.get(name)) for name, version in runtime.items() if test.get(name) != version}
    assert not differing, f"runtime.txt and test.txt disagree (runtime, test): {differing}; {FIX}"


def test_the_runtime_lock_is_hash_checked_and_carries_no_plotting_or_test_tools() -> None:
    text = lock.RUNTIME.read_text()
    assert "--hash=sha256:" in text, "the image installs with --require-hashes"
    assert not set(pins(lock.RUNTIME)) & {"matplotlib", "pytest", "mypy", "hypothesis", "prometheus-api-client"}
