"""The operator image, really built and really run: `make image` (tools/build-image.sh: buildah, no
Docker daemon), then `healthscale run` inside a container against the local control plane.

The container runs the way the chart runs the pod: as uid 10001, with a read-only root filesystem,
no capabilities, and credentials that are only the chart's ServiceAccount (helm-installed here into
namespaces of this run, `hs-image-<id>`, so no other test's operator sees them). It joins the host's
network, where the dev cluster's API server and Prometheus listen on loopback.

The build is cached: tools/build-image.sh skips it when the image's inputs are unchanged (a few
seconds); cold, with the Debian base, about 3 minutes (plus apt for the tools on a new machine). Needs root (apt, buildah, podman).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from clusterlib import ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, replicas, wait_until
from test_chart_install import CHART, Release, service_account_kubeconfig

pytestmark = pytest.mark.integration

BUILD = REPO_ROOT / "tools" / "build-image.sh"
UID = 10001
PODMAN = ["podman", "--storage-driver", "vfs", "--runtime", "runc"]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def ulimits() -> list[str]:
    """Explicit rlimits: podman's defaults (nofile 1048576, the host's nproc) are refused on machines
    like CI's (runc: "error setting rlimit type 6: operation not permitted"). Small, fixed numbers
    that fit under any hard limit and are plenty for the operator."""
    files = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        pytest.fail("building and running the image needs root here (apt for buildah/podman, rootful vfs storage)",
                    pytrace=False)
    started = time.monotonic()
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1500, cwd=REPO_ROOT)
    if result.returncode != 0:
        pytest.fail(f"tools/build-image.sh exited {result.returncode}:\n{result.stderr[-6000:]}", pytrace=False)
    print(f"tools/build-image.sh: {time.monotonic() - started:.0f}s\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def installed(devcluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The chart (its ServiceAccount and RBAC) in namespaces of this run; everything removed after."""
    helm_binary = devcluster.bin_dir / "helm"
    if not helm_binary.exists():
        pytest.fail(f"{helm_binary} not found: run `make helm` (tools/build-helm.sh)", pytrace=False)
    suffix = uuid.uuid4().hex[:6]
    release = Release(f"hs-image-{suffix}", f"hs-image-{suffix}", f"hs-image-{suffix}-ehr", helm_binary,
                      devcluster.kubeconfig, tmp_path_factory.mktemp("helm-home"))
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    api = devcluster.api_client()
    core = k8s_client.CoreV1Api(api)
    try:
        for namespace in (release.namespace, release.watched):
            core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
        release.helm("install", release.name, str(CHART), "-n", release.namespace,
                     "--set", f"prometheus.url={devcluster.prometheus_url}",
                     "--set", f"watchNamespaces={{{release.watched}}}", "--wait", "--timeout", "180s")
        yield release
    finally:
        custom = k8s_client.CustomObjectsApi(api)
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, release.watched, "clinicalslos")["items"]:
            custom.patch_namespaced_custom_object(GROUP, VERSION, release.watched, "clinicalslos",
                                                  item["metadata"]["name"], {"metadata": {"finalizers": None}})
        try:
            release.helm("uninstall", release.name, "-n", release.namespace, "--ignore-not-found", "--no-hooks")
        except AssertionError as error:
            print(f"cleanup: {error}")
        for namespace in (release.namespace, release.watched):
            try:
                core.delete_namespace(namespace)
            except k8s_client.ApiException as error:
                if error.status != 404:
                    raise
        api.close()


def container_kubeconfig(devcluster: DevCluster, release: Release, directory: Path) -> Path:
    """The chart's ServiceAccount token in a kubeconfig that only the container's user can read."""
    path = service_account_kubeconfig(devcluster, release.namespace, release.fullname, directory)
    os.chown(path, UID, UID)
    return path


@pytest.fixture(scope="module")
def container(devcluster: DevCluster, image: str, installed: Release,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`healthscale run` in the image, detached; removed at the end whatever happened."""
    kubeconfig = container_kubeconfig(devcluster, installed, tmp_path_factory.mktemp("image-kubeconfig"))
    name = installed.name
    podman("run", "--detach", "--name", name, "--network", "host", "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", *ulimits(),
           "--volume", f"{kubeconfig}:/etc/healthscale/kubeconfig:ro", "--env", "KUBECONFIG=/etc/healthscale/kubeconfig",
           image, "run", "--prometheus-url", devcluster.prometheus_url, "--namespace", installed.watched,
           # As the chart runs it by default (keda.enabled false: no rights on ScaledObjects).
           "--no-keda", "--metrics-port", "0", "--health-port", "0")
    try:
        time.sleep(3)
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()
        if not state.startswith("running"):
            pytest.fail(f"the container is {state}:\n{logs(name)}", pytrace=False)
        yield name
    finally:
        print(f"container log (last 4000 characters):\n{logs(name)[-4000:]}")
        podman("rm", "--force", "--time", "10", name, check=False)
        assert podman("container", "exists", name, check=False).returncode == 1, f"container {name} left behind"


def logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def test_the_chart_default_image_is_what_make_image_builds(image: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default = f"{values['repository']}:{values['tag'] or chart['appVersion']}"
    assert image == f"localhost/{default}"
    # ... and under the name a kubelet resolves the chart's short name to (`kind load` finds it).
    assert podman("image", "exists", f"docker.io/library/{default}", check=False).returncode == 0


def test_the_image_is_small_and_has_no_installer_or_compiler(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    # 502 MB (Debian base 129 MB; numpy, scipy, pandas and statsmodels most of the rest); 866 MB before.
    assert size < 550_000_000, f"the image is {size / 1e6:.0f} MB"
    listing = podman("run", "--rm", "--network", "none", *ulimits(), "--entrypoint", "/bin/sh", image, "-c",
                     "command -v gcc cc pip pip3 apt-get; ls /opt/healthscale/bin; "
                     "/opt/healthscale/bin/python -c 'import matplotlib' 2>&1 | tail -n 1", check=False).stdout
    assert "gcc" not in listing and "/pip" not in listing and "pip\n" not in listing, listing
    assert "No module named 'matplotlib'" in listing, listing


def test_healthscale_run_in_the_container_reconciles_a_clinicalslo(
        devcluster: DevCluster, installed: Release, container: str) -> None:
    # Non-root, read-only, as the chart runs it.
    assert podman("exec", container, "id", "-u").stdout.strip() == str(UID)
    assert podman("inspect", "--format", "{{.Config.User}}", container).stdout.strip() == f"{UID}:{UID}"
    readonly = podman("exec", container, "touch", "/opt/healthscale/probe", check=False)
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr, readonly
    api = devcluster.api_client()
    try:
        namespace = installed.watched
        labels = {"app": "ehr-api"}
        pause = k8s_client.V1Container(name="app", image="registry.k8s.io/pause:3.10")
        k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, k8s_client.V1Deployment(
            metadata=k8s_client.V1ObjectMeta(name="ehr-api"),
            spec=k8s_client.V1DeploymentSpec(
                replicas=1, selector=k8s_client.V1LabelSelector(match_labels=labels),
                template=k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels=labels),
                                                      spec=k8s_client.V1PodSpec(containers=[pause]))),
        ))
        custom = k8s_client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo(namespace))

        def planned() -> dict[str, Any] | None:
            status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos",
                                                         "ed-triage").get("status")
            return status if status and status.get("desiredReplicas") is not None else None

        status = wait_until("a plan in the ClinicalSLO's status", planned)
        desired = int(status["desiredReplicas"])
        assert desired > 1, status
        wait_until("the Deployment scaled to the plan", lambda: replicas(api, namespace) == desired)
        managers = {entry.manager for entry in k8s_client.AppsV1Api(api).read_namespaced_deployment(
            "ehr-api", namespace).metadata.managed_fields or []}
        assert "healthscale" in managers
        # The finalizer gives the replicas back while the container still runs.
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
        wait_until("the original replica count", lambda: replicas(api, namespace) == 1)
    finally:
        api.close()
    log = logs(container)
    # The decision was taken in the container: its log has the operator's own account of it.
    assert f"{desired} replicas (was 1)" in log, log[-4000:]
    assert "restored Deployment ehr-api replicas to 1" in log, log[-4000:]
    for sign in ("403", "Forbidden", "Not enough permissions", "Traceback"):
        assert sign not in log, f"{sign!r} in the container's log:\n{log[-4000:]}"


def slo(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace},
        "spec": {
            "journey": "ED triage screens", "criticality": "critical",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "mode": "Active", "indicators": {"demand": ED_DEMAND},
            "capacity": {"perReplica": 0.5, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
        },
    }
