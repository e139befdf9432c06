"""The local dev cluster (real control plane + KWOK nodes + Prometheus) as a session fixture.

`devcluster` reuses a cluster that is already up (``.devcluster/env`` exists and
the API server and Prometheus answer), otherwise it runs
``tools/devcluster/up.sh`` and tears the cluster down again at the end of the
session. If a prerequisite is missing (binaries, Prometheus, the traces) the
fixture FAILS with up.sh's explanation of what is missing and how to get it.

Several pytest sessions (and pytest-xdist workers) may share one checkout: each
registers itself in ``.devcluster/users/<pid>``; a cluster a session started is
stopped by the last live session using it (one started by hand is left running). Decisions are taken under
``.devcluster/lock``, the lock up.sh and down.sh use.

Add-ons (Karpenter's KWOK provider, KEDA): tests marked ``addons`` run last in the session, and
when any is collected the session starts ``tools/build-addons.sh`` in the background at once (at
nice 10; seconds when the binaries are built, about 13 minutes cold). The ``addon`` fixture waits
for that build, then starts the add-on on the cluster (``tools/devcluster/<name>.sh up``). So a cold
machine builds them while the other integration tests mostly wait on clocks.

Environment:
  HEALTHSCALE_AUTO_INSTALL=1   let up.sh build binaries / apt-get install prometheus
  HEALTHSCALE_KEEP_DEVCLUSTER=1  do not tear down a cluster this session started
  HEALTHSCALE_ADDON_BUILD_TIMEOUT  seconds the ``addon`` fixture waits for the build (default 3600)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

REPO_ROOT = Path(__file__).resolve().parents[2]
# Same override as up.sh/down.sh (mainly for testing those scripts).
STATE_DIR = Path(os.environ.get("DEVCLUSTER_STATE_DIR", REPO_ROOT / ".devcluster"))
UP = REPO_ROOT / "tools" / "devcluster" / "up.sh"
DOWN = REPO_ROOT / "tools" / "devcluster" / "down.sh"
STARTED_BY_PYTEST = STATE_DIR / "users" / "started-by-pytest"
"""Written when a session starts the cluster; down.sh deletes users/ with the rest of the state."""
UP_TIMEOUT_S = float(os.environ.get("HEALTHSCALE_DEVCLUSTER_UP_TIMEOUT", "1800"))


ADDONS_DIR = REPO_ROOT / "tools" / "devcluster"
ADDON_BUILD = REPO_ROOT / "tools" / "build-addons.sh"
ADDON_BUILD_LOG = STATE_DIR / "build-addons.log"
ADDON_BUILD_LOCK = STATE_DIR / "build-addons.lock"
ADDON_BUILD_TIMEOUT_S = float(os.environ.get("HEALTHSCALE_ADDON_BUILD_TIMEOUT", "3600"))


def pytest_configure(config: pytest.Config) -> None:
    # Registered here as well as in pyproject.toml, so --strict-markers accepts
    # the marker whichever way pytest is started.
    config.addinivalue_line(
        "markers", "integration: needs the local dev cluster (tools/devcluster/up.sh)"
    )
    config.addinivalue_line(
        "markers", "addons: needs Karpenter or KEDA on the dev cluster (runs last; built in the background)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Add-on tests last (a stable sort keeps everyone else's order), so their build overlaps the rest.
    items.sort(key=lambda item: item.get_closest_marker("addons") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly and any(item.get_closest_marker("addons") for item in session.items):
        _start_addon_build()


def _start_addon_build() -> None:
    """tools/build-addons.sh in the background, detached from this session, at nice 10, unless a build
    runs already: it holds ADDON_BUILD_LOCK (pytest-xdist workers each collect, one build runs)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    # A shell that starts the build in a session of its own and exits at once: nothing here holds a
    # handle to a process that outlives the test session.
    build = f'nice -n 10 bash {shlex.quote(str(ADDON_BUILD))} >{shlex.quote(str(ADDON_BUILD_LOG))} 2>&1'
    subprocess.run(["bash", "-c", f"setsid flock --nonblock {shlex.quote(str(ADDON_BUILD_LOCK))} bash -c "
                    f"{shlex.quote(build)} </dev/null >/dev/null 2>&1 &"], cwd=REPO_ROOT, check=True, timeout=30)


def _wait_for_addon_build() -> None:
    """Wait for a background build, then run the build once more under its lock: seconds when the
    binaries are in place (it checks their versions), the whole build if the background one failed or
    never started, so its failure is this test's message."""
    started = time.monotonic()
    try:
        proc = subprocess.run(["flock", str(ADDON_BUILD_LOCK), "bash", str(ADDON_BUILD)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=ADDON_BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tools/build-addons.sh did not finish in {ADDON_BUILD_TIMEOUT_S:.0f}s; "
                    f"the background build's log: {ADDON_BUILD_LOG}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"tools/build-addons.sh exit {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}",
                    pytrace=False)
    waited = time.monotonic() - started
    if waited > 30:
        print(f"\naddons: waited {waited:.0f}s for tools/build-addons.sh")


def _read_env(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of .devcluster/env."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line and "$" not in line:
            name, _, value = line.removeprefix("export ").partition("=")
            env[name.strip()] = value.strip()
    return env


@dataclass(frozen=True)
class DevCluster:
    kubeconfig: Path
    prometheus_url: str
    env: dict[str, str] = field(repr=False)
    started_here: bool = False

    @property
    def state_dir(self) -> Path:
        return STATE_DIR

    @property
    def bin_dir(self) -> Path:
        return STATE_DIR / "bin"

    def api_client(self) -> k8s_client.ApiClient:
        """A fresh kubernetes ApiClient for this cluster (close it when done)."""
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def pid(self, component: str) -> int:
        """PID of a component (etcd, kube-apiserver, ..., prometheus, demand-exporter)."""
        return int((STATE_DIR / "pids" / f"{component}.pid").read_text().split()[0])

    def kubectl(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout


def _apiserver_ready(kubeconfig: Path) -> bool:
    kubectl = STATE_DIR / "bin" / "kubectl"
    if not kubectl.exists() or not kubeconfig.exists():
        return False
    try:
        out = subprocess.run(
            [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw", "/readyz",
             "--request-timeout=5s"],
            capture_output=True, text=True, timeout=15,
        )
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and out.stdout.strip() == "ok"


def _prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _running_cluster() -> DevCluster | None:
    env_file = STATE_DIR / "env"
    if not env_file.exists():
        return None
    env = _read_env(env_file)
    kubeconfig = Path(env.get("KUBECONFIG", ""))
    url = env.get("PROMETHEUS_URL", "")
    if url and _apiserver_ready(kubeconfig) and _prometheus_ready(url):
        return DevCluster(kubeconfig=kubeconfig, prometheus_url=url, env=env)
    return None


@contextlib.contextmanager
def _state_lock() -> Iterator[dict[str, str]]:
    """Hold .devcluster/lock; yields the environment for up.sh/down.sh run meanwhile."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield {**os.environ, "DEVCLUSTER_LOCK_HELD": "1"}
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_live_users() -> list[int]:
    users = STATE_DIR / "users"
    pids = [int(f.name) for f in users.glob("*") if f.name.isdigit()] if users.is_dir() else []
    return [pid for pid in pids if pid != os.getpid() and _pid_alive(pid)]


def _start_cluster(env: dict[str, str]) -> DevCluster:
    # up.sh checks every prerequisite and explains how to get what is missing;
    # its output is the failure message.
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(UP)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=UP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        subprocess.run(["bash", str(DOWN), "--keep-logs"], cwd=REPO_ROOT, env=env, check=False)
        pytest.fail(f"tools/devcluster/up.sh did not finish in {exc.timeout:.0f}s; "
                    f"logs in {STATE_DIR / 'logs'}", pytrace=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        pytest.fail(
            f"could not start the local dev cluster (tools/devcluster/up.sh exit "
            f"{proc.returncode}):\n{output[-6000:]}",
            pytrace=False,
        )
    cluster = _running_cluster()
    if cluster is None:
        pytest.fail("tools/devcluster/up.sh succeeded but the API server or Prometheus "
                    f"does not answer; see {STATE_DIR / 'logs'}", pytrace=False)
    print(f"\ndevcluster: started in {time.monotonic() - started:.0f}s")
    STARTED_BY_PYTEST.parent.mkdir(parents=True, exist_ok=True)
    STARTED_BY_PYTEST.write_text("a pytest session started this cluster: the last one using it stops it\n")
    return DevCluster(cluster.kubeconfig, cluster.prometheus_url, cluster.env, started_here=True)


@pytest.fixture(scope="session")
def devcluster() -> Iterator[DevCluster]:
    me = STATE_DIR / "users" / str(os.getpid())
    with _state_lock() as env:
        cluster = _running_cluster() or _start_cluster(env)
        me.parent.mkdir(parents=True, exist_ok=True)
        me.write_text("pytest session using the dev cluster\n")
    try:
        yield cluster
    finally:
        with _state_lock() as env:
            me.unlink(missing_ok=True)
            others = _other_live_users()
            if not STARTED_BY_PYTEST.exists() or os.environ.get("HEALTHSCALE_KEEP_DEVCLUSTER") == "1":
                pass
            elif others:
                print(f"\ndevcluster: left running, still used by pytest pid(s) {others}")
            else:
                subprocess.run(["bash", str(DOWN)], cwd=REPO_ROOT, env=env, check=False,
                               capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def addon(devcluster: DevCluster) -> Callable[[str], None]:
    """``addon("karpenter")``: the add-on's binaries built and the add-on running on the dev cluster
    (``tools/devcluster/<name>.sh up``, which does nothing when it already runs)."""
    def start(name: str) -> None:
        _wait_for_addon_build()
        with _state_lock() as env:
            proc = subprocess.run(["bash", str(ADDONS_DIR / f"{name}.sh"), "up"], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"tools/devcluster/{name}.sh up exit {proc.returncode}:\n"
                        f"{(proc.stdout + proc.stderr).strip()[-6000:]}", pytrace=False)
    return start


@pytest.fixture
def core_v1(devcluster: DevCluster) -> Iterator[k8s_client.CoreV1Api]:
    api = devcluster.api_client()
    try:
        yield k8s_client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def apps_v1(devcluster: DevCluster) -> Iterator[k8s_client.AppsV1Api]:
    api = devcluster.api_client()
    try:
        yield k8s_client.AppsV1Api(api)
    finally:
        api.close()


@pytest.fixture(scope="module")
def api(devcluster: DevCluster) -> Iterator[k8s_client.ApiClient]:
    """A client for the dev cluster, with healthscale's CRDs installed and established."""
    client = devcluster.api_client()
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for crd in ("clinicalslos.healthscale.io", "surgeschedules.healthscale.io"):
        devcluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    yield client
    client.close()
