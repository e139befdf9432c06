"""The webhook server in-process, with its cluster-facing parts replaced (``runtime.webhook``).

Over real HTTPS, verified against the CA bundle the webhook put in its configuration: it answers
AdmissionReviews from its caches, reloads a renewed certificate without a restart, two replicas
converge on one Secret, and its log says what was denied without the pod.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import prometheus_client
import pytest
from cryptography.hazmat.primitives import serialization

from healthscale import ports
from healthscale.adapters import certificates
from healthscale.domain import certificates as rotation
from healthscale.domain import residency as rules
from healthscale.runtime import webhook
from healthscale.service import admission, residency

T = TypeVar("T")
LIFETIME = 3600.0
EU_ONLY = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": rules.DEFAULT_REGION_LABEL, "operator": "In", "values": ["eu-west-1"]}]}]}}}}


class FakeCache(Generic[T]):
    def __init__(self, items: dict[str, T] | None = None) -> None:
        self.items = dict(items or {})
        self.synced = threading.Event()
        self.synced.set()

    def get(self, name: str) -> T | None:
        return self.items.get(name)

    def start(self) -> FakeCache[T]:
        return self

    def stop(self) -> None:
        pass


class FakeSecrets:
    """One Secret, with the API server's create-if-absent and resourceVersion rules."""

    def __init__(self) -> None:
        self.secret: dict[str, Any] | None = None
        self.writes = 0
        self.caches: list[FakeCache[dict[str, Any]]] = []

    def _store(self, secret: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        self.secret = {**secret, "metadata": {**secret["metadata"], "resourceVersion": str(self.writes)}}
        for cache in self.caches:
            cache.items = {self.secret["metadata"]["name"]: self.secret}
        return self.secret

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secret

    def create(self, namespace: str, name: str, material: certificates.Material,
               labels: dict[str, str]) -> dict[str, Any]:
        if self.secret is not None:
            raise ports.ApiError("create Secret: HTTP 409 AlreadyExists", retryable=True, status=409)
        return self._store({"metadata": {"name": name, "namespace": namespace}, "data": material.data()})

    def replace(self, secret: dict[str, Any], material: certificates.Material) -> dict[str, Any]:
        assert self.secret is not None
        if secret["metadata"]["resourceVersion"] != self.secret["metadata"]["resourceVersion"]:
            raise ports.ApiError("replace Secret: HTTP 409 Conflict", retryable=True, status=409)
        return self._store({**secret, "data": material.data()})

    def close(self) -> None:
        pass


class FakeConfigurations:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply_webhook_configuration(self, body: dict[str, Any]) -> None:
        self.applied.append(body)

    def close(self) -> None:
        pass

    @property
    def bundle(self) -> str:
        import base64

        return base64.b64decode(self.applied[-1]["webhooks"][0]["clientConfig"]["caBundle"]).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NAMESPACES = {"ehr": ({residency.OPT_IN_LABEL: residency.OPT_IN_VALUE},
                      {residency.ALLOWED_REGIONS_ANNOTATION: "eu-west-1"})}


def replica(port: int, store: FakeSecrets, source: str = "operator",
            secret_cache: FakeCache[dict[str, Any]] | None = None) -> tuple[webhook.Webhook, FakeConfigurations]:
    configurations = FakeConfigurations()
    cache = secret_cache if secret_cache is not None else FakeCache[dict[str, Any]]()
    store.caches.append(cache)
    config = webhook.Config(port=port, configuration_name="hs-test", cert_source=source,
                            cert_secret=("hs", "hs-test-cert"), cert_lifetime=LIFETIME)
    found = webhook.Webhook(config, residency.Settings(), namespaces=FakeCache(NAMESPACES),
                            nodes=FakeCache({"eu-node": {rules.DEFAULT_REGION_LABEL: "eu-west-1"}}), secret=cache,
                            secrets=store, configurations=configurations)
    return found, configurations


@pytest.fixture
def running() -> Iterator[tuple[webhook.Webhook, FakeConfigurations, FakeSecrets]]:
    store = FakeSecrets()
    server, configurations = replica(free_port(), store)
    server.start(keeper=False)
    server.keep(time.time())
    assert server.listening.wait(10)
    yield server, configurations, store
    server.stop()


def review(port: int, bundle: str, pod: dict[str, Any], operation: str = "CREATE") -> tuple[dict[str, Any], bytes]:
    """POST an AdmissionReview; the answer and the certificate the server presented."""
    context = ssl.create_default_context(cadata=bundle)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": operation, "namespace": "ehr",
                        "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": pod}}
    connection.request("POST", admission.PATH, json.dumps(body), {"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200
    presented = connection.sock.getpeercert(binary_form=True)
    result = json.loads(answer.read())
    connection.close()
    return result["response"], presented


def pod(labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"generateName": "patient-zq7731-", "labels": labels}, "spec": spec}


def test_the_webhook_answers_over_tls_the_configuration_trusts(
        running: tuple[webhook.Webhook, FakeConfigurations, FakeSecrets]) -> None:
    server, configurations, _ = running
    applied = configurations.applied[-1]
    assert applied["metadata"]["name"] == "hs-test"
    assert applied["webhooks"][0]["clientConfig"]["url"] == f"https://127.0.0.1:{server.config.port}/residency"
    before = prometheus_client.REGISTRY.get_sample_value("healthscale_admission_duration_seconds_count") or 0
    denied, _ = review(server.config.port, configurations.bundle, pod({}))
    assert denied["allowed"] is False and "phi data" in denied["status"]["message"]
    allowed, _ = review(server.config.port, configurations.bundle, pod({}, **EU_ONLY))
    assert allowed["allowed"] is True
    exempt, _ = review(server.config.port, configurations.bundle, pod({residency.DATA_CLASS_LABEL: "none"}))
    assert exempt["allowed"] is True
    after = prometheus_client.REGISTRY.get_sample_value("healthscale_admission_duration_seconds_count")
    assert after == before + 3
    assert prometheus_client.REGISTRY.get_sample_value(
        "healthscale_residency_admissions_total", {"namespace": "ehr", "result": "denied"}) >= 1
    context = ssl.create_default_context(cadata=configurations.bundle)
    probe = http.client.HTTPSConnection("127.0.0.1", server.config.port, context=context, timeout=10)
    probe.request("GET", "/readyz")
    assert probe.getresponse().status == 200
    probe.close()


def test_a_renewed_certificate_is_served_without_a_restart(
        running: tuple[webhook.Webhook, FakeConfigurations, FakeSecrets]) -> None:
    server, configurations, store = running
    _, first = review(server.config.port, configurations.bundle, pod({}))
    assert store.secret is not None
    held = certificates.material_of(store.secret)
    # Another replica renewed the serving certificate (same CA): the Secret changes under this one.
    renewal = rotation.Plan(new_ca=False, new_serving=True, keep=(), changed=True)
    renewed = certificates.execute(held, renewal, server.config.names, time.time(), LIFETIME, LIFETIME * 10)
    store.replace(store.secret, renewed)
    server.keep(time.time())
    deadline = time.monotonic() + 10
    while (presented := review(server.config.port, configurations.bundle, pod({}))[1]) == first:
        assert time.monotonic() < deadline, "the server kept the old certificate"
        time.sleep(0.05)
    assert presented == certificates.certificates_in(renewed.certificate)[0].public_bytes(serialization.Encoding.DER)
    assert len(configurations.applied) == 1, "the CA did not change, so neither did the configuration"


def test_two_replicas_converge_on_one_certificate_whoever_writes_first() -> None:
    store = FakeSecrets()
    first, first_configurations = replica(free_port(), store)
    lagging = FakeCache[dict[str, Any]]()  # the second replica has not seen the first one's Secret yet
    second, second_configurations = replica(free_port(), store, secret_cache=lagging)
    store.caches.remove(lagging)
    now = time.time()
    first.keep(now)
    second.keep(now)  # its create is refused (409): it reads the first one's Secret and uses it
    assert store.writes == 1
    assert first.serving == second.serving
    assert first_configurations.bundle == second_configurations.bundle
    for server in (first, second):
        server.stop()


def test_denials_are_logged_without_the_pod_and_allowed_pods_at_debug_only(
        running: tuple[webhook.Webhook, FakeConfigurations, FakeSecrets], caplog: pytest.LogCaptureFixture) -> None:
    server, configurations, _ = running
    caplog.set_level(logging.DEBUG)
    review(server.config.port, configurations.bundle, pod({"team": "zq7731"}))
    review(server.config.port, configurations.bundle, pod({}, **EU_ONLY))
    records = [record for record in caplog.records if "residency admission" in record.getMessage()]
    assert [record.levelno for record in records] == [logging.WARNING, logging.DEBUG]
    assert records[0].getMessage() == ("residency admission: CREATE of a pod in namespace ehr denied: phi data without "
                                       "a nodeSelector or required node affinity on topology.kubernetes.io/region")
    assert not [record for record in caplog.records if "zq7731" in record.getMessage()]
    assert not [record for record in caplog.records if record.name.startswith("aiohttp.access")]


def test_a_provided_secret_is_read_not_written_and_its_absence_is_an_error() -> None:
    store = FakeSecrets()
    provided, configurations = replica(free_port(), store, source="secret")
    with pytest.raises(ValueError, match="Secret hs/hs-test-cert has no tls.crt and tls.key"):
        provided.keep(time.time())
    issuer, _ = replica(free_port(), FakeSecrets())
    material = issuer._renewed(None, None, time.time())  # an operator-issued pair, handed over as a user's
    user = {"metadata": {"name": "hs-test-cert", "namespace": "hs", "resourceVersion": "7"},
            "data": certificates.Material(material.certificate, material.key, material.ca_bundle).data()}
    provided.secret.items["hs-test-cert"] = user  # type: ignore[attr-defined]
    provided.keep(time.time())
    assert store.writes == 0
    assert provided.serving is not None and provided.serving.certificate == material.certificate
    assert configurations.applied[-1]["webhooks"][0]["clientConfig"]["caBundle"]
    for server in (provided, issuer):
        server.stop()
