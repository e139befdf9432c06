"""The webhook's certificates without a cluster: when they are renewed (``domain.certificates``) and
what the Secret holds after each renewal (``adapters.certificates``).

The rotation is driven through many lifetimes with short, real certificates: at every step the
serving certificate is valid and trusted by the bundle, and the bundle still trusts the
certificate the step before served (a replica that has not reloaded yet).
"""

from __future__ import annotations

import pathlib
import ssl
import time

import pytest
from cryptography import x509

from healthscale.adapters import certificates
from healthscale.domain import certificates as rotation

NAMES = ["hs-webhook.hs.svc", "hs-webhook.hs.svc.cluster.local"]
DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01


@pytest.mark.parametrize(("left", "lifetime", "due"), [
    pytest.param(60 * DAY, 90 * DAY, False, id="two thirds of the lifetime left: kept"),
    pytest.param(30 * DAY + 1, 90 * DAY, False, id="just over a third left: kept"),
    pytest.param(30 * DAY - 1, 90 * DAY, True, id="just under a third left: renewed"),
    pytest.param(-1, 90, True, id="expired: renewed"),
    pytest.param(29, 90, True, id="short lifetimes follow the same third"),
])
def test_a_certificate_is_renewed_with_a_third_of_its_lifetime_left(left: float, lifetime: float, due: bool) -> None:
    assert rotation.needs_rotation(START, START + left, lifetime) is due


def cert(id_: str, issued: float, lifetime: float) -> rotation.Cert:
    return rotation.Cert(id_, issued - rotation.BACKDATE_SECONDS, issued + lifetime)


CA = cert("ca", START, 900 * DAY)
OLD_CA = cert("old", START - 700 * DAY, 900 * DAY)
SERVING = cert("leaf", START, 90 * DAY)
OVERLAP = 300.0


@pytest.mark.parametrize(("held", "at", "expected"), [
    pytest.param(rotation.Held(), START, (True, True, ()), id="an empty Secret gets a CA and a serving certificate"),
    pytest.param(rotation.Held(CA, (), SERVING, frozenset(NAMES), "ca"), START + 10 * DAY, (False, False, ()),
                 id="a fresh pair is left alone"),
    pytest.param(rotation.Held(CA, (), SERVING, frozenset(NAMES), "ca"), START + 61 * DAY, (False, True, ()),
                 id="a serving certificate past two thirds of its life is renewed by the same CA"),
    pytest.param(rotation.Held(CA, (), SERVING, frozenset(NAMES[:1]), "ca"), START + DAY, (False, True, ()),
                 id="a serving certificate that does not name the webhook's host is replaced at once"),
    pytest.param(rotation.Held(OLD_CA, (), SERVING, frozenset(NAMES), "old"), START, (True, False, ("old",)),
                 id="a CA past two thirds of its life is replaced, and stays trusted beside the new one"),
    pytest.param(rotation.Held(CA, (OLD_CA,), SERVING, frozenset(NAMES), "old"), START + OVERLAP / 2, (False, False, ("old",)),
                 id="the serving certificate stays on the old CA until the new one had time to spread"),
    pytest.param(rotation.Held(CA, (OLD_CA,), SERVING, frozenset(NAMES), "old"), START + OVERLAP, (False, True, ("old",)),
                 id="then it moves to the new CA, the old one still trusted"),
    pytest.param(rotation.Held(CA, (OLD_CA,), cert("leaf2", START + OVERLAP, 90 * DAY), frozenset(NAMES), "ca"),
                 START + 2 * OVERLAP, (False, False, ()),
                 id="once every replica had time to serve the new certificate, the old CA leaves the bundle"),
    pytest.param(rotation.Held(CA, (cert("gone", START - 900 * DAY, 900 * DAY),), SERVING, frozenset(NAMES), "gone"),
                 START + 1, (False, True, ()), id="an expired CA leaves the bundle and nothing waits for it"),
])
def test_the_plan_renews_what_is_due_and_keeps_trusting_what_may_still_be_served(
        held: rotation.Held, at: float, expected: tuple[bool, bool, tuple[str, ...]]) -> None:
    plan = rotation.plan(held, at, NAMES, OVERLAP)
    assert (plan.new_ca, plan.new_serving, plan.keep) == expected
    assert plan.changed is (plan.new_ca or plan.new_serving or len(plan.keep) < len(held.older_cas))
    if plan.changed:
        assert plan.reasons


def trusts(bundle: bytes, certificate: bytes) -> bool:
    leaf = certificates.certificates_in(certificate)[0]
    return any(leaf.issuer == ca.subject and certificates._signed_by(leaf, ca)
               for ca in certificates.certificates_in(bundle))


@pytest.mark.parametrize("lifetime", [pytest.param(90.0, id="90 s serving certificates"),
                                      pytest.param(3600.0, id="1 h serving certificates")])
def test_rotation_through_many_lifetimes_never_serves_an_untrusted_or_expired_certificate(lifetime: float) -> None:
    overlap = min(300.0, lifetime / 12)
    step = lifetime / 30
    now, material = START, None
    serials, cas = set(), set()
    for _ in range(int(25 * lifetime / step)):  # two and a half CA lifetimes
        before = material
        plan = rotation.plan(certificates.held(material), now, NAMES, overlap)
        if plan.changed:
            material = certificates.execute(material, plan, NAMES, now, lifetime, lifetime * 10)
        assert material is not None
        leaf = certificates.certificates_in(material.certificate)[0]
        assert leaf.not_valid_before_utc.timestamp() <= now < leaf.not_valid_after_utc.timestamp()
        assert trusts(material.trusted(), material.certificate), "the served certificate is trusted"
        if before is not None:
            assert trusts(material.trusted(), before.certificate), "what a slow replica still serves is trusted"
        assert len(certificates.certificates_in(material.trusted())) <= 2
        assert certificates.names_of(leaf) == frozenset(NAMES)
        serials.add(leaf.serial_number)
        cas.add(certificates.certificates_in(material.ca_bundle)[0].serial_number)
        now += step
    assert len(serials) > 25 and len(cas) >= 3, "serving certificates (every two thirds of a lifetime) and CAs were renewed"


def test_the_secret_round_trips_and_a_provided_secret_without_ca_trusts_its_chain() -> None:
    plan = rotation.plan(rotation.Held(), START, NAMES, OVERLAP)
    material = certificates.execute(None, plan, NAMES, START, DAY, 10 * DAY)
    secret = {"data": material.data()}
    assert certificates.material_of(secret) == material
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    provided = certificates.Material(material.certificate + material.ca_bundle, material.key)
    assert provided.trusted() == material.ca_bundle
    assert certificates.held(provided).ca is None, "without ca.key the operator cannot sign with it"
    assert certificates.material_of({"data": {"ca.crt": secret["data"]["ca.crt"]}}) is None


def test_the_serving_certificate_names_its_hosts_and_loads_into_a_tls_server(tmp_path: pathlib.Path) -> None:
    names = ["127.0.0.1", "0.0.0.0", "localhost"]
    material = certificates.execute(None, rotation.plan(rotation.Held(), START, names, OVERLAP), names, time.time(),
                                    DAY, 10 * DAY)
    leaf = certificates.certificates_in(material.certificate)[0]
    alternatives = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in alternatives.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"], "0.0.0.0 is no name"
    assert alternatives.get_values_for_type(x509.DNSName) == ["localhost"]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    (tmp_path / "tls.crt").write_bytes(material.certificate)
    (tmp_path / "tls.key").write_bytes(material.key)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert trusts(material.trusted(), material.certificate)
