"""Level 3: the Helm chart installed into the local control plane, upgraded and uninstalled, and the
operator run with the chart's ServiceAccount credentials to prove that its RBAC suffices.

The operator's pod cannot run under KWOK (KWOK only pretends pods run), so the chart is installed
as is (its pod lands on a fake node and is reported Ready) and the real operator runs out of
cluster, as the chart's ServiceAccount: a token from `kubectl create token` in a kubeconfig of its
own. Everything here uses names unique to this run (`hs-chart-<id>`), never `hs-it-*`, so the
operator that tests/integration/test_operator.py runs (and other people's test runs on the same
cluster) neither see nor touch it.

Needs helm in .devcluster/bin (`make helm`).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from clusterlib import ED_DEMAND, GROUP, REPO_ROOT, VERSION, DevCluster, replicas, stop_process, wait_until
from healthscale.adapters import placement
from healthscale.service import admission as admission_service

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "healthscale"


@dataclass
class Release:
    """One chart release of this test run and where everything of it lives."""

    name: str
    namespace: str  # the release's (the operator's) namespace
    watched: str  # the one namespace the operator serves
    helm_binary: Path
    kubeconfig: Path
    helm_home: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-healthscale"

    def helm(self, *args: str, timeout: float = 300) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CONFIG_HOME": str(self.helm_home / "config"),
               "HELM_CACHE_HOME": str(self.helm_home / "cache"), "HELM_DATA_HOME": str(self.helm_home / "data")}
        result = subprocess.run([str(self.helm_binary), *args], capture_output=True, text=True, env=env,
                                timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout


@pytest.fixture(scope="module")
def api(devcluster: DevCluster) -> Iterator[k8s_client.ApiClient]:
    """Overrides conftest's `api`: here the chart itself installs the CRDs."""
    client = devcluster.api_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def release(devcluster: DevCluster, api: k8s_client.ApiClient,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    helm_binary = devcluster.bin_dir / "helm"
    if not helm_binary.exists():
        pytest.fail(f"{helm_binary} not found: run `make helm` (tools/build-helm.sh)", pytrace=False)
    suffix = uuid.uuid4().hex[:6]
    found = Release(f"hs-chart-{suffix}", f"hs-chart-{suffix}", f"hs-chart-{suffix}-ehr", helm_binary,
                    devcluster.kubeconfig, tmp_path_factory.mktemp("helm-home"))
    # The healthscale CRDs the way the other integration tests apply them (server-side, manager
    # kubectl), so that Helm finds them and skips them: a CRD Helm created would be owned by the
    # manager "helm" and make their later server-side apply conflict.
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    core = k8s_client.CoreV1Api(api)
    for namespace in (found.namespace, found.watched):
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    try:
        yield found
    finally:
        # Whatever happened: nothing of this run may stay behind, and no finalizer may hold a namespace.
        for item in k8s_client.CustomObjectsApi(api).list_namespaced_custom_object(
                GROUP, VERSION, found.watched, "clinicalslos")["items"]:
            k8s_client.CustomObjectsApi(api).patch_namespaced_custom_object(
                GROUP, VERSION, found.watched, "clinicalslos", item["metadata"]["name"],
                {"metadata": {"finalizers": None}})
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


def install_values(devcluster: DevCluster, release: Release) -> list[str]:
    return ["--set", f"prometheus.url={devcluster.prometheus_url}", "--set", f"watchNamespaces={{{release.watched}}}",
            # Two replicas: peering on, so the out-of-cluster run below exercises the peering RBAC too.
            "--set", "replicaCount=2",
            # Residency's rights (pod template patch, pod/node/namespace lists) come only with it on;
            # its webhook (on with it by default) would keep peering on at one replica.
            "--set", "residency.enabled=true", "--set", "webhook.enabled=false"]


def service_account_kubeconfig(devcluster: DevCluster, namespace: str, account: str, directory: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a bound token, 1 hour)."""
    token = devcluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(devcluster.kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    authority = cluster.pop("certificate-authority", None)
    if authority is not None:  # inline it: the new file may live elsewhere
        path = Path(authority) if Path(authority).is_absolute() else devcluster.kubeconfig.parent / authority
        cluster["certificate-authority-data"] = base64.b64encode(path.read_bytes()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "chart-sa",
        "clusters": [{"name": "devcluster", "cluster": cluster}],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": "devcluster", "user": "chart-sa"}}],
    }
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def installed(devcluster: DevCluster, release: Release) -> Release:
    release.helm("install", release.name, str(CHART), "-n", release.namespace, *install_values(devcluster, release),
                 "--wait", "--timeout", "180s")
    return release


def test_install_creates_least_privilege_rbac_and_a_hardened_operator(
        devcluster: DevCluster, api: k8s_client.ApiClient, installed: Release) -> None:
    apps, core, rbac = k8s_client.AppsV1Api(api), k8s_client.CoreV1Api(api), k8s_client.RbacAuthorizationV1Api(api)
    deployment = apps.read_namespaced_deployment(installed.fullname, installed.namespace)
    assert deployment.status.ready_replicas == 2  # KWOK reports the pods Ready
    container = deployment.spec.template.spec.containers[0]
    assert f"--namespace={installed.watched}" in container.args
    assert f"--peering={installed.fullname}" in container.args
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert deployment.spec.template.spec.security_context.run_as_non_root is True
    assert core.read_namespaced_service_account(installed.fullname, installed.namespace)
    assert rbac.read_namespaced_role(installed.fullname, installed.watched)
    assert rbac.read_cluster_role(f"{installed.fullname}-cluster")
    # Namespaced install: no ClusterRole for serving, and nothing granted outside the watched namespace.
    with pytest.raises(k8s_client.ApiException) as missing:
        rbac.read_cluster_role(installed.fullname)
    assert missing.value.status == 404
    peering = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kopf.dev", "v1", installed.watched, "kopfpeerings", installed.fullname)
    assert peering["metadata"]["name"] == installed.fullname
    account = f"system:serviceaccount:{installed.namespace}:{installed.fullname}"

    def can(verb: str, resource: str, namespace: str | None) -> bool:
        scope = ["-n", namespace] if namespace else []
        result = subprocess.run([str(devcluster.bin_dir / "kubectl"), f"--kubeconfig={devcluster.kubeconfig}", "auth",
                                 "can-i", verb, *resource.split(), f"--as={account}", *scope],
                                capture_output=True, text=True)
        return result.stdout.strip() == "yes"

    assert can("patch", "deployments --subresource=scale", installed.watched)
    assert can("list", "nodes", None)
    assert not can("patch", "deployments --subresource=scale", "default")
    assert not can("get", "secrets", installed.watched)
    assert not can("delete", "deployments", installed.watched)
    assert not can("create", "pods/eviction", installed.watched)  # residency.evict is off


@dataclass
class OperatorRun:
    log: Path
    kubeconfig: Path


def start_operator(devcluster: DevCluster, release: Release, kubeconfig: Path, log: Path,
                   peering: bool = True) -> subprocess.Popen[bytes]:
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "healthscale", "run", "--prometheus-url", devcluster.prometheus_url,
             "--namespace", release.watched, *(["--peering", release.fullname] if peering else []),
             # As the chart runs it by default (keda.enabled false: no rights on ScaledObjects).
             "--no-keda", "--metrics-port", "0", "--health-port", "0"],
            cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )


@pytest.fixture(scope="module")
def operator_as_chart_account(devcluster: DevCluster, installed: Release,
                              tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorRun]:
    """`healthscale run` as the chart's ServiceAccount, with the chart's peering object."""
    directory = tmp_path_factory.mktemp("chart-operator")
    run = OperatorRun(directory / "operator.log",
                      service_account_kubeconfig(devcluster, installed.namespace, installed.fullname, directory))
    process = start_operator(devcluster, installed, run.kubeconfig, run.log)
    try:
        time.sleep(3)
        if process.poll() is not None:
            pytest.fail(f"healthscale run exited with {process.returncode}:\n{run.log.read_text()[-4000:]}")
        yield run
    finally:
        stop_process(process)


def slo_body(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace},
        "spec": {
            "journey": "ED triage screens", "criticality": "critical",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
            "mode": "Active", "indicators": {"demand": ED_DEMAND},
            "capacity": {"perReplica": 0.5, "minReplicas": 1, "maxReplicas": 40, "startupSeconds": 60},
            "forecast": {"history": "14d", "step": "5m", "horizon": "1h"},
            # Residency too, so that its calls (pod template patch, node list) run under the account.
            "residency": {"dataClass": "phi", "regions": ["eu-west-1", "eu-central-1"]},
        },
    }


def test_the_operator_works_with_only_the_charts_service_account(
        api: k8s_client.ApiClient, installed: Release, operator_as_chart_account: OperatorRun) -> None:
    namespace = installed.watched
    labels = {"app": "ehr-api"}
    container = k8s_client.V1Container(name="app", image="registry.k8s.io/pause:3.10")
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, k8s_client.V1Deployment(
        metadata=k8s_client.V1ObjectMeta(name="ehr-api"),
        spec=k8s_client.V1DeploymentSpec(
            replicas=1, selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels=labels),
                                                  spec=k8s_client.V1PodSpec(containers=[container]))),
    ))
    custom = k8s_client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo_body(namespace))

    def planned() -> dict[str, Any] | None:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage").get("status")
        return status if status and status.get("desiredReplicas") is not None else None

    status = wait_until("a plan in the ClinicalSLO's status", planned)
    desired = int(status["desiredReplicas"])
    assert desired > 1, status
    wait_until("the Deployment scaled to the plan", lambda: replicas(api, namespace) == desired)
    conditions = {item["type"]: item for item in status["conditions"]}
    assert conditions["Ready"]["status"] == "True", status["conditions"]
    assert "ResidencyCompliant" in conditions, status["conditions"]
    # Residency wrote the region requirement into the pod template (a Deployment patch).
    template = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).spec.template
    required = template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    regions = {value for term in required.node_selector_terms for expression in term.match_expressions or []
               for value in expression.values or []}
    assert regions == {"eu-west-1", "eu-central-1"}
    # The GitOps examples ignore exactly the fields this manager owns.
    deployment = k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace)
    managers = {entry.manager for entry in deployment.metadata.managed_fields or []}
    assert "healthscale" in managers
    # Deleting the ClinicalSLO: the finalizer (a patch Kopf needs) gives the replicas back.
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the original replica count", lambda: replicas(api, namespace) == 1)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
        except k8s_client.ApiException as error:
            return error.status == 404
        return False

    wait_until("the ClinicalSLO to be released by its finalizer", gone)
    log = operator_as_chart_account.log.read_text()
    for sign in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert sign not in log, f"the operator was refused something ({sign!r}):\n{log[-4000:]}"


def test_two_peered_replicas_keep_exactly_one_active(
        devcluster: DevCluster, api: k8s_client.ApiClient, installed: Release,
        operator_as_chart_account: OperatorRun) -> None:
    """What the chart's replicaCount: 2 means: a second replica on the same peering object waits,
    and the first keeps serving."""
    second_log = operator_as_chart_account.log.with_name("second-replica.log")
    second = start_operator(devcluster, installed, operator_as_chart_account.kubeconfig, second_log)
    try:
        def both_seen() -> bool:
            peering = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
                "kopf.dev", "v1", installed.watched, "kopfpeerings", installed.fullname)
            return len(peering.get("status") or {}) >= 2

        wait_until("both replicas in the peering object", both_seen, timeout=60)
        time.sleep(3)  # Kopf re-evaluates the peers on the next peering event
        logs = operator_as_chart_account.log.read_text() + second_log.read_text()
        assert "Pausing all operators" not in logs, "both replicas paused: no operator serves the ClinicalSLOs"
    finally:
        stop_process(second)


def test_upgrade_changes_the_operator_and_drops_peering(
        devcluster: DevCluster, api: k8s_client.ApiClient, installed: Release,
        operator_as_chart_account: OperatorRun) -> None:
    installed.helm("upgrade", installed.name, str(CHART), "-n", installed.namespace, "--reuse-values",
                   "--set", "replicaCount=1", "--set", "dryRun=true", "--wait", "--timeout", "180s")
    deployment = k8s_client.AppsV1Api(api).read_namespaced_deployment(installed.fullname, installed.namespace)
    args = deployment.spec.template.spec.containers[0].args
    assert "--dry-run" in args and not any(arg.startswith("--peering") for arg in args)
    assert deployment.spec.strategy.type == "Recreate"
    peerings = k8s_client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kopf.dev", "v1", installed.watched, "kopfpeerings")["items"]
    assert [item["metadata"]["name"] for item in peerings] == []
    assert "REVISION: 2" in installed.helm("status", installed.name, "-n", installed.namespace)


def test_uninstall_removes_everything_but_the_crds(
        devcluster: DevCluster, api: k8s_client.ApiClient, installed: Release,
        operator_as_chart_account: OperatorRun) -> None:
    # --no-hooks: the pre-delete hook's Job never completes on KWOK (its pod does not run);
    # tests/integration/test_release_on_uninstall.py runs it.
    installed.helm("uninstall", installed.name, "-n", installed.namespace, "--wait", "--timeout", "120s", "--no-hooks")
    apps, core, rbac = k8s_client.AppsV1Api(api), k8s_client.CoreV1Api(api), k8s_client.RbacAuthorizationV1Api(api)
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("Deployment", lambda: apps.read_namespaced_deployment(installed.fullname, installed.namespace)),
        ("ServiceAccount", lambda: core.read_namespaced_service_account(installed.fullname, installed.namespace)),
        ("Service", lambda: core.read_namespaced_service(f"{installed.fullname}-metrics", installed.namespace)),
        ("Role", lambda: rbac.read_namespaced_role(installed.fullname, installed.watched)),
        ("RoleBinding", lambda: rbac.read_namespaced_role_binding(installed.fullname, installed.watched)),
        ("ClusterRole", lambda: rbac.read_cluster_role(f"{installed.fullname}-cluster")),
        ("ClusterRoleBinding", lambda: rbac.read_cluster_role_binding(f"{installed.fullname}-cluster")),
    ]
    left = []
    for kind, read in checks:
        try:
            read()
            left.append(kind)
        except k8s_client.ApiException as error:
            assert error.status == 404
    assert not left, f"left behind after uninstall: {left}"
    # Helm never deletes CRDs from crds/: ClinicalSLOs elsewhere in the cluster survive an uninstall.
    extensions = k8s_client.ApiextensionsV1Api(api)
    for crd in ("clinicalslos.healthscale.io", "surgeschedules.healthscale.io", "kopfpeerings.kopf.dev"):
        assert extensions.read_custom_resource_definition(crd)


def test_a_cluster_wide_install_grants_cluster_wide(
        devcluster: DevCluster, api: k8s_client.ApiClient, release: Release) -> None:
    """Cluster-wide mode is checked by asking the API server, not by running the operator: a
    cluster-wide operator would act on every other test's ClinicalSLOs on this shared cluster."""
    name = f"{release.name}-cw"
    release.helm("install", name, str(CHART), "-n", release.namespace, "--set",
                 f"prometheus.url={devcluster.prometheus_url}")
    try:
        account = f"system:serviceaccount:{release.namespace}:{name}-healthscale"
        kubectl = [str(devcluster.bin_dir / "kubectl"), f"--kubeconfig={devcluster.kubeconfig}", "auth", "can-i"]

        def can(*args: str) -> bool:
            return subprocess.run([*kubectl, *args, f"--as={account}"], capture_output=True,
                                  text=True).stdout.strip() == "yes"

        assert can("watch", "clinicalslos.healthscale.io", "--all-namespaces")
        assert can("patch", "deployments", "--subresource=scale", "-n", "default")
        assert can("patch", "clinicalslos.healthscale.io", "--subresource=status", "-n", "kube-system")
        assert can("watch", "customresourcedefinitions")
        assert not can("list", "namespaces")  # Kopf does not observe namespaces when cluster-wide
        assert not can("get", "secrets", "-n", "default")
    finally:
        release.helm("uninstall", name, "-n", release.namespace, "--wait", "--no-hooks")


def test_the_webhook_configuration_needs_only_patch_because_the_chart_creates_it(
        devcluster: DevCluster, api: k8s_client.ApiClient, release: Release,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Why templates/webhook.yaml creates the ValidatingWebhookConfiguration empty: with `patch` on
    that one name (the chart's rule), the operator's own code (Placement.apply_webhook_configuration,
    a server-side apply) fills in an existing object but could not create a missing one.

    Run with a configuration name of this run's own, selecting no namespace: it must never judge
    anyone's pods on this shared cluster."""
    name = f"{release.name}-webhook-check"
    core, rbac = k8s_client.CoreV1Api(api), k8s_client.RbacAuthorizationV1Api(api)
    admission = k8s_client.AdmissionregistrationV1Api(api)
    core.create_namespaced_service_account(release.namespace, {"metadata": {"name": name}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [{
        "apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
        "resourceNames": [name], "verbs": ["patch"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": release.namespace}]})
    try:
        kubeconfig = service_account_kubeconfig(devcluster, release.namespace, name,
                                                tmp_path_factory.mktemp("webhook-check"))
        as_account = placement.Placement(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
        body = admission_service.configuration(name, url="https://127.0.0.1:1/residency")
        # Select no namespace at all: this object must never judge anyone's pods.
        body["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"healthscale.io/never": name}}
        with pytest.raises(Exception, match="403"):
            as_account.apply_webhook_configuration(body)  # patch only: cannot create it
        admission.create_validating_webhook_configuration({"metadata": {"name": name}})  # what the chart does
        as_account.apply_webhook_configuration(body)
        (webhook,) = admission.read_validating_webhook_configuration(name).webhooks
        assert webhook.client_config.url == "https://127.0.0.1:1/residency"
    finally:
        for delete in (lambda: admission.delete_validating_webhook_configuration(name),
                       lambda: rbac.delete_cluster_role_binding(name), lambda: rbac.delete_cluster_role(name)):
            try:
                delete()
            except k8s_client.ApiException as error:
                if error.status != 404:
                    raise
