"""`healthscale explain NAMESPACE/NAME` against the real API server, with the kubeconfig kubectl uses: it
reads a ClinicalSLO's status (written here through the status subresource, as the operator would) and
prints the decision; a ClinicalSLO that does not exist exits 1. Unit tests cover the text itself
(tests/unit/test_explain.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from kubernetes import client as k8s_client

from clusterlib import GROUP, REPO_ROOT, VERSION, DevCluster

pytestmark = pytest.mark.integration


def explain(devcluster: DevCluster, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healthscale", "explain", name], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT, env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)})


def test_explain_reads_the_status_from_the_api_server_and_a_missing_one_exits_1(
        devcluster: DevCluster, api: k8s_client.ApiClient) -> None:
    namespace = f"hs-explain-{uuid.uuid4().hex[:6]}"
    core, custom = k8s_client.CoreV1Api(api), k8s_client.CustomObjectsApi(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO", "metadata": {"name": "ed-triage"},
            "spec": {"journey": "ED triage screens", "mode": "Preview", "targetRef": {"name": "ehr-api"},
                     "indicators": {"demand": "sum(rate(http_requests_total[5m]))"},
                     "capacity": {"perReplica": 10, "maxReplicas": 20}}})
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "clinicalslos", "ed-triage", {
            "status": {"observedGeneration": 1, "desiredReplicas": 5, "currentReplicas": 2, "reason": "forecast",
                       "explanation": "5 replicas (was 2): forecast demand 45 within 3m (p80; harmonic), 10/replica",
                       "lastCycleTime": "2026-11-30T13:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Planned",
                                       "message": "Preview: computed, not applied"}]}})
        shown = explain(devcluster, f"{namespace}/ed-triage")
        assert shown.returncode == 0, shown.stderr
        assert f"ClinicalSLO:   {namespace}/ed-triage\n" in shown.stdout
        assert "Mode:          Preview  (computes and reports, never scales)\n" in shown.stdout
        assert "  Replicas:      desired 5, current 2\n" in shown.stdout
        assert "  Explanation:   5 replicas (was 2): forecast demand 45 within 3m" in shown.stdout
        assert any(line.split()[:3] == ["Ready", "True", "Planned"] for line in shown.stdout.splitlines())

        missing = explain(devcluster, f"{namespace}/absent")
        assert (missing.returncode, missing.stdout) == (1, "")
        assert missing.stderr.startswith(f"error: ClinicalSLO {namespace}/absent not found")
    finally:
        core.delete_namespace(namespace)
