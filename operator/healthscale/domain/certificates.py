"""When the admission webhook's own certificates are renewed, and which CAs stay trusted meanwhile.

Pure: callers describe what the shared Secret holds (validity windows, names, fingerprints) and
the time; a ``Plan`` comes back. The webhook serves a certificate signed by a CA of its own, and
the webhook configuration's CA bundle trusts the CA, not the serving certificate, so:

- the serving certificate is renewed by the same CA once less than a third of its lifetime is
  left, or at once when it is missing, expired, does not name the webhook's host or no valid CA
  in the bundle signed it. The bundle
  does not change, so nothing else has to happen first;
- the CA is renewed once less than a third of its lifetime is left. The new CA enters the bundle
  next to the old one; the serving certificate moves to the new CA only ``overlap`` later (time
  for every replica and the API server to pick the new bundle up), and the old CA leaves the
  bundle ``overlap`` after that (time for every replica to serve the new certificate). At every
  step, whatever certificate a replica may still be serving is trusted by the bundle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

BACKDATE_SECONDS = 60.0
"""Certificates are valid from this long before they are issued (clocks differ a little)."""


def needs_rotation(now: float, not_after: float, lifetime: float) -> bool:
    """Renew once less than a third of the lifetime is left (or it has run out)."""
    return not_after - now < lifetime / 3


@dataclasses.dataclass(frozen=True)
class Cert:
    """A certificate as rotation sees it."""

    id: str
    """Its fingerprint."""
    not_before: float
    not_after: float

    @property
    def issued(self) -> float:
        return self.not_before + BACKDATE_SECONDS

    @property
    def lifetime(self) -> float:
        return self.not_after - self.issued

    def valid(self, now: float) -> bool:
        return self.not_before <= now < self.not_after

    def due(self, now: float) -> bool:
        return not self.valid(now) or needs_rotation(now, self.not_after, self.lifetime)


@dataclasses.dataclass(frozen=True)
class Held:
    """What the shared Secret holds."""

    ca: Cert | None = None
    """The CA whose key the Secret keeps: it signs serving certificates."""
    older_cas: tuple[Cert, ...] = ()
    """Other CAs still in the bundle."""
    serving: Cert | None = None
    serving_names: frozenset[str] = frozenset()
    serving_issuer: str | None = None
    """The id of the CA in the bundle that signed the serving certificate; None: none of them."""

    @property
    def serving_by_ca(self) -> bool:
        """The serving certificate was signed by ``ca`` (not by one of the older CAs)."""
        return self.ca is not None and self.serving_issuer == self.ca.id

    def issuer_valid(self, now: float) -> bool:
        """A CA in the bundle that is valid now signed the serving certificate."""
        return any(item.id == self.serving_issuer and item.valid(now)
                   for item in ((self.ca,) if self.ca else ()) + self.older_cas)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to issue, and which of the held CAs the bundle keeps besides the (new or kept) current one."""

    new_ca: bool
    new_serving: bool
    keep: tuple[str, ...]
    """Ids of held CAs (the current one when replaced, older ones) to keep in the bundle."""
    changed: bool
    reasons: tuple[str, ...] = ()


def plan(held: Held, now: float, names: Collection[str], overlap: float) -> Plan:
    """What the Secret needs now so that the webhook keeps a valid, trusted certificate."""
    reasons: list[str] = []
    ca = held.ca
    new_ca = ca is None or ca.due(now)
    if ca is None:
        reasons.append("no CA yet")
    elif new_ca:
        reasons.append("the CA has less than a third of its lifetime left")
    serving = held.serving
    missing = sorted(set(names) - held.serving_names)
    urgent = serving is None or not serving.valid(now) or bool(missing) or not held.issuer_valid(now)
    if serving is None:
        reasons.append("no serving certificate yet")
    elif not serving.valid(now):
        reasons.append("the serving certificate has expired")
    elif not held.issuer_valid(now):
        reasons.append("no valid CA in the bundle signed the serving certificate")
    elif missing:
        reasons.append(f"the serving certificate does not name {', '.join(missing)}")
    if new_ca:
        # The old CA stays in the bundle; a still-usable serving certificate moves over later.
        new_serving = urgent
    else:
        assert ca is not None
        settled = ca.issued + overlap <= now
        renew = serving is not None and serving.due(now)
        moving = serving is not None and not held.serving_by_ca
        new_serving = urgent or ((renew or moving) and (held.serving_by_ca or settled))
        if not urgent and renew and new_serving:
            reasons.append("the serving certificate has less than a third of its lifetime left")
        elif not urgent and moving and new_serving:
            reasons.append("the serving certificate moves to the new CA")

    # After this plan: is the serving certificate the current CA's, and since when?
    serving_by_current = new_serving or (held.serving_by_ca and not new_ca)
    serving_since = now if new_serving else (serving.issued if serving is not None else now)
    everyone_moved = serving_by_current and serving_since + overlap <= now
    candidates = ([ca] if new_ca and ca is not None else []) + list(held.older_cas)
    keep = tuple(item.id for item in candidates if item.valid(now) and not everyone_moved)
    dropped = len(held.older_cas) - len([item for item in held.older_cas if item.id in keep])
    if dropped:
        reasons.append(f"{dropped} old CA(s) leave the bundle")
    changed = new_ca or new_serving or dropped > 0
    return Plan(new_ca, new_serving, keep, changed, tuple(reasons))
