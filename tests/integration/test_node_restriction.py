"""Why the region label must be one kubelets cannot set: NodeRestriction on the local control plane.

The local API server runs with ``--authorization-mode=Node,RBAC`` and the NodeRestriction admission
plugin (tools/devcluster/up.sh). This module acts as a kubelet: a client certificate for
``system:node:<name>`` in group ``system:nodes``, signed by the cluster's CA, for a Node of its own
(created here, so that the shared KWOK nodes keep their labels). With that credential:

- the node relabels its own ``topology.kubernetes.io/region`` at will: a compromised node could
  claim to be in an allowed region and attract patient data;
- it cannot set, change or remove ``node-restriction.kubernetes.io/region`` (403 from NodeRestriction);
- it cannot touch another Node at all;
- and healthscale's ``domain.residency.kubelet_settable`` (behind RegionLabelTrusted) agrees with the
  API server label by label.

The KWOK nodes up.sh creates carry both region labels; ``test_the_kwok_nodes_carry_the_admin_only_region_label``
checks it (and tells whoever runs an older cluster to restart it).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s_client

from clusterlib import DevCluster
from healthscale.domain import residency

pytestmark = pytest.mark.integration

REGION = "topology.kubernetes.io/region"
TRUSTED = "node-restriction.kubernetes.io/region"


def node_certificate(pki: Path, node: str, out: Path) -> tuple[Path, Path]:
    """A kubelet's client certificate for ``node``, signed by the cluster CA (PEM cert, PEM key)."""
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_file, key_file = out / f"{node}.crt", out / f"{node}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def as_node(devcluster: DevCluster, admin: k8s_client.ApiClient, node: str, out: Path) -> k8s_client.CoreV1Api:
    """A CoreV1Api that authenticates as the kubelet of ``node``."""
    pki = Path(devcluster.kubeconfig).parent / "pki"
    cert_file, key_file = node_certificate(pki, node, out)
    configuration = k8s_client.Configuration()
    configuration.host = admin.configuration.host
    configuration.ssl_ca_cert = str(pki / "ca.crt")
    configuration.cert_file, configuration.key_file = str(cert_file), str(key_file)
    return k8s_client.CoreV1Api(k8s_client.ApiClient(configuration))


@pytest.fixture
def own_nodes(api: k8s_client.ApiClient) -> Iterator[list[str]]:
    """Two Nodes of this test (not managed by KWOK), in eu-west-1 by both labels; deleted afterwards."""
    core = k8s_client.CoreV1Api(api)
    names = [f"hs-nr-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        core.create_node(k8s_client.V1Node(metadata=k8s_client.V1ObjectMeta(
            name=name, labels={REGION: "eu-west-1", TRUSTED: "eu-west-1", "kubernetes.io/hostname": name}),
            spec=k8s_client.V1NodeSpec(taints=[k8s_client.V1Taint(key="healthscale.io/test-pool", value="nr",
                                                                  effect="NoSchedule")])))
    yield names
    for name in names:
        try:
            core.delete_node(name)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def kubelet(devcluster: DevCluster, api: k8s_client.ApiClient, own_nodes: list[str]) -> Iterator[k8s_client.CoreV1Api]:
    with tempfile.TemporaryDirectory() as folder:
        node = as_node(devcluster, api, own_nodes[0], Path(folder))
        yield node
        node.api_client.close()


def label(core: k8s_client.CoreV1Api, node: str, key: str, value: str | None) -> int:
    """Set (None: remove) one label of ``node``; the HTTP status the API server answered."""
    try:
        core.patch_node(node, {"metadata": {"labels": {key: value}}})
    except k8s_client.ApiException as error:
        return int(error.status)
    return 200


def labels_of(api: k8s_client.ApiClient, node: str) -> dict[str, str]:
    return dict(k8s_client.CoreV1Api(api).read_node(node).metadata.labels or {})


def test_a_node_credential_moves_its_node_to_any_region_by_the_well_known_label(
        api: k8s_client.ApiClient, kubelet: k8s_client.CoreV1Api, own_nodes: list[str]) -> None:
    assert label(kubelet, own_nodes[0], REGION, "us-east-1") == 200
    assert labels_of(api, own_nodes[0])[REGION] == "us-east-1", "the kubelet relabelled its own node"
    assert residency.kubelet_settable(REGION) is True


def test_a_node_credential_cannot_set_change_or_remove_the_admin_only_region_label(
        api: k8s_client.ApiClient, kubelet: k8s_client.CoreV1Api, own_nodes: list[str]) -> None:
    node = own_nodes[0]
    assert label(kubelet, node, TRUSTED, "us-east-1") == 403, "change"
    assert label(kubelet, node, TRUSTED, None) == 403, "remove"
    assert label(kubelet, node, "eu.node-restriction.kubernetes.io/region", "us-east-1") == 403, "set a new one"
    assert labels_of(api, node)[TRUSTED] == "eu-west-1"
    try:
        kubelet.patch_node(node, {"metadata": {"labels": {TRUSTED: "us-east-1"}}})
    except k8s_client.ApiException as error:
        assert "NodeRestriction" in str(error.body) or "not allowed to modify labels" in str(error.body)
    assert residency.kubelet_settable(TRUSTED) is False


def test_a_node_credential_cannot_touch_another_node(api: k8s_client.ApiClient, kubelet: k8s_client.CoreV1Api,
                                                     own_nodes: list[str]) -> None:
    assert label(kubelet, own_nodes[1], REGION, "us-east-1") == 403
    assert labels_of(api, own_nodes[1])[REGION] == "eu-west-1"


@pytest.mark.parametrize("key", [
    pytest.param(REGION, id="the well-known region label"),
    pytest.param("failure-domain.beta.kubernetes.io/region", id="the deprecated beta region label"),
    pytest.param(TRUSTED, id="the node-restriction region label"),
    pytest.param("example.com/region", id="a custom-domain label"),
    pytest.param("region.kubernetes.io/name", id="another kubernetes.io label"),
    pytest.param("node.kubernetes.io/region", id="a node.kubernetes.io label"),
])
def test_healthscale_knows_which_labels_a_kubelet_can_set(kubelet: k8s_client.CoreV1Api, own_nodes: list[str],
                                                         key: str) -> None:
    status = label(kubelet, own_nodes[0], key, "ap-south-1")
    assert status in (200, 403), status
    assert residency.kubelet_settable(key) is (status == 200)


def test_the_kwok_nodes_carry_the_admin_only_region_label(api: k8s_client.ApiClient) -> None:
    nodes = k8s_client.CoreV1Api(api).list_node(label_selector="type=kwok").items
    assert len(nodes) == 6
    missing = [node.metadata.name for node in nodes if TRUSTED not in (node.metadata.labels or {})]
    assert not missing, (f"KWOK nodes without {TRUSTED}: {missing}. The cluster was started before up.sh labelled "
                         "them; restart it (tools/devcluster/down.sh, then up.sh)")
    assert all(node.metadata.labels[TRUSTED] == node.metadata.labels[REGION] for node in nodes)
