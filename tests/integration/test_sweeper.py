"""Level 3: a namespace served by a glob is deleted while its ClinicalSLO holds a raised Deployment.

Kopf stops serving a namespace it watches by pattern as soon as the namespace is being deleted, so
the ClinicalSLO's finalizer would hold the namespace in Terminating for ever; the operator's
sweeper (runtime/sweeper.py) releases it, and the namespace goes. The operator here watches its
own glob (`hs-sw-<id>-*`), never `hs-it-*`, so it and test_operator.py's operator never meet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s_client

from clusterlib import GROUP, REPO_ROOT, VERSION, DevCluster, deployment, replicas, stop_process, wait_until
from test_release_on_uninstall import slo

pytestmark = pytest.mark.integration

FINALIZER = "healthscale.io/restore-scale"


@pytest.fixture
def prefix() -> str:
    return f"hs-sw-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, prefix: str, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "operator.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", devcluster.prometheus_url,
             "--namespace", f"{prefix}-*", "--metrics-port", "0", "--health-port", "0"],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)},
        )
    try:
        time.sleep(2)
        if process.poll() is not None:
            pytest.fail(f"healthscale run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        yield log
    finally:
        stop_process(process, log)


def test_a_namespace_served_by_a_glob_is_deleted_even_though_its_clinicalslo_raised_replicas(
        api: k8s_client.ApiClient, operator: Path, prefix: str) -> None:
    namespace = f"{prefix}-ehr"
    core, custom = k8s_client.CoreV1Api(api), k8s_client.CustomObjectsApi(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    try:
        deployment(api, namespace, "ehr-api", 1)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo(namespace, "ed-triage"))
        wait_until("the operator to raise the Deployment", lambda: replicas(api, namespace) > 1 or None)
        item = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
        assert FINALIZER in item["metadata"]["finalizers"]
        started = time.monotonic()
        core.delete_namespace(namespace)

        def gone() -> bool:
            try:
                core.read_namespace(namespace)
            except k8s_client.ApiException as error:
                return error.status == 404
            return False

        wait_until("the namespace to finish deleting", gone, timeout=120, pause=2)
        print(f"namespace gone after {time.monotonic() - started:.0f}s")
        log = operator.read_text()
        print("\n".join(line for line in log.splitlines() if "sweeper" in line or "estor" in line))
    finally:
        try:
            for left in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos")["items"]:
                custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos",
                                                      left["metadata"]["name"], {"metadata": {"finalizers": None}})
            core.delete_namespace(namespace)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise
