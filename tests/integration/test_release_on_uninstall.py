"""Level 3: `helm uninstall` with ClinicalSLOs that raised a Deployment: the chart's pre-delete hook
stops the operator, restores the replicas and removes the finalizers; the namespace can then be
deleted and finishes.

KWOK nodes run no containers, so the hook Job's pod is reported Running but never runs. The test
plays its kubelet: while `helm uninstall` waits for the hook, it runs the Job's own command
(`python -m healthscale` + the Job's args) as the hook's ServiceAccount, which Helm created as a
hook with the chart's RBAC (a bound token from the TokenRequest API), then reports the pod
Succeeded so that the Job completes and Helm goes on. That proves the command, the hook's ordering
and that its RBAC suffices. The operator itself runs out of cluster as the chart's ServiceAccount
(as in test_chart_install.py) and is stopped when the hook scales its Deployment to 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, deployment, replicas, stop_process, wait_until
from test_chart_install import CHART, Release, service_account_kubeconfig

pytestmark = pytest.mark.integration

FINALIZER = "healthscale.io/restore-scale"


@pytest.fixture(scope="module")
def api(devcluster: DevCluster) -> Iterator[k8s_client.ApiClient]:
    client = devcluster.api_client()
    yield client
    client.close()


@pytest.fixture
def release(devcluster: DevCluster, api: k8s_client.ApiClient,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    helm_binary = devcluster.bin_dir / "helm"
    if not helm_binary.exists():
        pytest.fail(f"{helm_binary} not found: run `make helm` (tools/build-helm.sh)", pytrace=False)
    suffix = uuid.uuid4().hex[:6]
    found = Release(f"hs-rel-{suffix}", f"hs-rel-{suffix}", f"hs-rel-{suffix}-ehr", helm_binary,
                    devcluster.kubeconfig, tmp_path_factory.mktemp("helm-home"))
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    core = k8s_client.CoreV1Api(api)
    for namespace in (found.namespace, found.watched):
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    try:
        yield found
    finally:
        custom = k8s_client.CustomObjectsApi(api)
        try:
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, found.watched, "clinicalslos")["items"]:
                custom.patch_namespaced_custom_object(GROUP, VERSION, found.watched, "clinicalslos",
                                                      item["metadata"]["name"], {"metadata": {"finalizers": None}})
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise
        try:
            found.helm("uninstall", found.name, "-n", found.namespace, "--ignore-not-found", "--no-hooks")
        except AssertionError as error:
            print(f"cleanup: {error}")
        for namespace in (found.namespace, found.watched):
            try:
                core.delete_namespace(namespace)
            except k8s_client.ApiException as error:
                if error.status != 404:
                    raise


def slo(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "journey": "ED triage screens", "criticality": "critical",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "mode": "Active", "indicators": {"demand": ED_DEMAND},
            "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
        },
    }


def finish_pod(core: k8s_client.CoreV1Api, namespace: str, pod: k8s_client.V1Pod) -> None:
    """Report the hook's pod Succeeded, as a kubelet would after the container exited 0 (the Ready
    condition stays as KWOK set it, so that KWOK's pod-ready stage leaves the pod alone)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    container = pod.spec.containers[0]
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Succeeded",
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": False,
                               "restartCount": 0, "started": False,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "startedAt": started, "finishedAt": started}}}],
    }})


def test_uninstall_restores_the_replicas_and_removes_the_finalizers_then_the_namespace_can_go(
        devcluster: DevCluster, api: k8s_client.ApiClient, release: Release, tmp_path: Path) -> None:
    release.helm("install", release.name, str(CHART), "-n", release.namespace,
                 "--set", f"prometheus.url={devcluster.prometheus_url}",
                 "--set", f"watchNamespaces={{{release.watched}}}", "--wait", "--timeout", "180s")
    apps, core = k8s_client.AppsV1Api(api), k8s_client.CoreV1Api(api)
    custom = k8s_client.CustomObjectsApi(api)
    namespace = release.watched
    deployment(api, namespace, "ehr-api", 1)
    operator_log = tmp_path / "operator.log"
    operator_config = service_account_kubeconfig(devcluster, release.namespace, release.fullname, tmp_path)
    with operator_log.open("w") as output:
        operator = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", devcluster.prometheus_url,
             # As the chart runs it by default (keda.enabled false: no rights on ScaledObjects).
             "--namespace", namespace, "--no-keda", "--metrics-port", "0", "--health-port", "0"],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(operator_config)})
    uninstall: subprocess.Popen[str] | None = None
    try:
        for name in ("ed-triage", "ed-triage-copy"):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo(namespace, name))
        raised = wait_until("the operator to raise the Deployment", lambda: replicas(api, namespace) > 1 or None)
        for name in ("ed-triage", "ed-triage-copy"):
            wait_until(f"{name}'s record and finalizer", lambda name=name: (lambda item: (
                item.get("status", {}).get("originals") and FINALIZER in item["metadata"].get("finalizers", [])))(
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", name)))

        # The operator's pods are KWOK's; the real one is this process: it stops when the hook
        # scales the operator's Deployment to 0, as the pods would.
        def stop_with_the_deployment() -> None:
            wait_until("the hook to scale the operator to 0", lambda: apps.read_namespaced_deployment(
                release.fullname, release.namespace).spec.replicas == 0, timeout=300, pause=0.2)
            stop_process(operator)

        stopper = threading.Thread(target=stop_with_the_deployment, daemon=True)
        stopper.start()
        env = {**os.environ, "KUBECONFIG": str(release.kubeconfig), "HELM_CONFIG_HOME": str(release.helm_home / "config"),
               "HELM_CACHE_HOME": str(release.helm_home / "cache"), "HELM_DATA_HOME": str(release.helm_home / "data")}
        uninstall = subprocess.Popen([str(release.helm_binary), "uninstall", release.name, "-n", release.namespace,
                                      "--wait", "--timeout", "300s"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        hook = f"{release.fullname}-release"
        pod = wait_until("the hook Job's pod", lambda: next(iter(core.list_namespaced_pod(
            release.namespace, label_selector="app.kubernetes.io/component=release").items), None), timeout=120)
        # The hook's RBAC exists before its Job (hook weights): the command runs with exactly it.
        job = k8s_client.BatchV1Api(api).read_namespaced_job(hook, release.namespace)
        (container,) = job.spec.template.spec.containers
        assert job.spec.template.spec.service_account_name == hook
        hook_config = service_account_kubeconfig(devcluster, release.namespace, hook, tmp_path)
        ran = subprocess.run([sys.executable, "-m", "healthscale", *container.args], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=300, env={**os.environ, "KUBECONFIG": str(hook_config)})
        print(ran.stdout, ran.stderr)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Forbidden" not in ran.stdout + ran.stderr and "403" not in ran.stdout
        assert "its pods are gone" in ran.stdout
        assert ran.stdout.count("finalizer removed") == 2, ran.stdout
        stopper.join(timeout=30)
        assert operator.poll() is not None

        # What the hook did: the replicas the operator found, no finalizer, the records cleared.
        assert replicas(api, namespace) == 1, f"was raised to {raised}"
        for name in ("ed-triage", "ed-triage-copy"):
            item = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", name)
            assert FINALIZER not in (item["metadata"].get("finalizers") or [])
            assert not item.get("status", {}).get("originals")
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.kind=ClinicalSLO").items
        assert {"Restored", "Released"} <= {event.reason for event in events}

        finish_pod(core, release.namespace, pod)
        output, _ = uninstall.communicate(timeout=300)
        assert uninstall.returncode == 0, output
        with pytest.raises(k8s_client.ApiException):
            apps.read_namespaced_deployment(release.fullname, release.namespace)
        # The hook and its RBAC are gone too (hook-succeeded).
        with pytest.raises(k8s_client.ApiException):
            core.read_namespaced_service_account(hook, release.namespace)

        # Nothing holds the namespace any more: deleting it finishes without the operator.
        core.delete_namespace(namespace)

        def namespace_gone() -> bool:
            try:
                core.read_namespace(namespace)
            except k8s_client.ApiException as error:
                return error.status == 404
            return False

        wait_until("the namespace to be deleted", namespace_gone, timeout=120)
    finally:
        stop_process(operator, operator_log)
        if uninstall is not None and uninstall.poll() is None:
            uninstall.kill()
            uninstall.wait()
