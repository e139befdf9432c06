"""The newcomer's path: a fresh clone, no .venv, and the Makefile sets itself up.

`git clone` of this checkout into a temporary directory, made to match the working tree (its uncommitted
changes and new files, so a change to the set-up path is tested before it is committed; in CI's fresh
clone there are none),
then `make setup`, the set-up path that `make test` and `make demo` run first, with no virtualenv:
it must create .venv, install healthscale into it, and a second `make setup` must not reinstall.

What is shared with this machine, to keep the test to a few minutes:
- pip's own cache (whatever pip caches; this test's install still downloads what it does not hold);
- the Go binaries: the clone's .devcluster/bin is a symlink to this checkout's, which `make test`
  has built before pytest starts, so tools/build-binaries.sh and tools/build-helm.sh only check
  their versions (a rebuild would cost ~10 minutes and ~5 GB of Go caches);
- Debian's packages (prometheus, lua5.4), installed machine-wide.

Marked integration: `make unit` skips it, `make test` runs it. It needs git, make and the package
index (PyPI); it takes about 2-4 minutes, almost all of it pip install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_TIMEOUT_S = 900
BINARIES = REPO_ROOT / ".devcluster" / "bin"
HAVE_BINARIES = (BINARIES / "kube-apiserver").is_file() and (BINARIES / "helm").is_file()
# The whole set-up path when this checkout's Go binaries can be shared; otherwise only the Python part.
SETUP = "setup" if HAVE_BINARIES else "venv"


def _git(*args: str, cwd: Path = REPO_ROOT) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout


def _names(*args: str, cwd: Path = REPO_ROOT) -> list[str]:
    return [name for name in _git(*args, "-z", cwd=cwd).decode().split("\0") if name]


def _fresh_clone(into: Path) -> Path:
    clone = into / "main"
    _git("clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone))
    # The working tree as the next commit would hold it: tracked and new (not ignored) files.
    wanted = {name for name in _names("ls-files", "--cached", "--others", "--exclude-standard")
              if (REPO_ROOT / name).is_file() or (REPO_ROOT / name).is_symlink()}
    for name in set(_names("ls-files", cwd=clone)) - wanted:
        (clone / name).unlink()
        for parent in (clone / name).parents:  # and the directories this leaves empty
            if parent == clone or any(parent.iterdir()):
                break
            parent.rmdir()
    changed = set(_names("diff", "HEAD", "--name-only", "--no-renames")) | set(
        _names("ls-files", "--others", "--exclude-standard"))
    for name in changed & wanted:
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copy2(REPO_ROOT / name, target, follow_symlinks=False)
    # The Go binaries of this checkout, so that nothing is rebuilt (see the module docstring).
    if HAVE_BINARIES:
        (clone / ".devcluster").mkdir()
        (clone / ".devcluster" / "bin").symlink_to(BINARIES)
    return clone


def _newcomer_env() -> dict[str, str]:
    """This environment without a virtualenv or a parent make: as a new shell would be."""
    env = {name: value for name, value in os.environ.items()
           if name not in {"VIRTUAL_ENV", "PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH"}}
    ours = str(REPO_ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != ours)
    return env


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.fail("the newcomer test needs make and git", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="healthscale-newcomer-") as scratch:
        yield _fresh_clone(Path(scratch))


def _make(clone: Path, *targets: str) -> tuple[str, float]:
    start = time.monotonic()
    ran = subprocess.run(["make", "-C", str(clone), *targets], env=_newcomer_env(), capture_output=True, text=True,
                         timeout=SETUP_TIMEOUT_S, check=False)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, f"make {' '.join(targets)} failed in the fresh clone:\n{output[-6000:]}"
    return output, time.monotonic() - start


def test_a_fresh_clone_sets_itself_up_and_a_second_make_does_not_reinstall(clone: Path) -> None:
    assert not (clone / ".venv").exists()

    first, first_s = _make(clone, SETUP)
    assert "creating .venv" in first, first
    assert 'pip install -e ".[test]"' in first, first
    # Each step says what it does and how long its cold path takes.
    assert "min" in first.split("pip install", 1)[1].splitlines()[0], first

    venv = clone / ".venv"
    assert (venv / "pyvenv.cfg").is_file()
    # .venv/bin/healthscale runs (--version once the CLI has it; --help before that).
    for flag in ("--version", "--help"):
        ran = subprocess.run([str(venv / "bin" / "healthscale"), flag], capture_output=True, text=True, check=False,
                             env=_newcomer_env(), cwd=clone, timeout=120)
        if ran.returncode == 0:
            break
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # It is the clone's own, editable install.
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import healthscale; print(healthscale.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/", timeout=120).stdout
    assert Path(where.strip()).resolve().is_relative_to(clone.resolve()), where

    stamp = venv / ".healthscale-installed"
    installed_at = stamp.stat().st_mtime_ns
    second, second_s = _make(clone, SETUP)
    assert "up to date" in second, second
    assert "pip install" not in second, second
    assert stamp.stat().st_mtime_ns == installed_at
    assert second_s < 60, f"a second make {SETUP} took {second_s:.0f}s (the first {first_s:.0f}s)"

    # Make targets use the clone's .venv (no Python set up by hand): the CRD drift check imports healthscale.
    check, _ = _make(clone, "crds-check")
    assert ".venv/bin/python -m healthscale crds --check" in check, check
