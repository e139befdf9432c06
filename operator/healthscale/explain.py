"""What ``healthscale explain NAMESPACE/NAME`` prints: a ClinicalSLO's latest decision, read from its status.

Pure formatting over the object's JSON (no cluster here; the CLI reads the object). The status is
read through the typed model, leniently: a field an older or newer operator wrote in a shape this
version does not accept is left out and named, the rest is still shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from healthscale.api import clinicalslo, common

def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time from status (``...Z`` or with an offset); None if absent or unreadable."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def age(seconds: float) -> str:
    """A duration as ``kubectl get`` shows ages: 42s, 5m, 3h, 2d (and ``in 5m`` for the future)."""
    if seconds < 0:
        return f"in {age(-seconds)}"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= 2 * size or (unit == "m" and whole >= size):
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _when(text: str | None, now: dt.datetime) -> str:
    moment = parse_time(text)
    if text and moment is None:
        return text
    if moment is None:
        return "-"
    delta = (now - moment).total_seconds()
    return f"{text} ({age(delta)} ago)" if delta >= 0 else f"{text} ({age(delta)})"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _conditions(conditions: Sequence[common.Condition], now: dt.datetime) -> list[str]:
    if not conditions:
        return ["  (none)"]
    rows = [("TYPE", "STATUS", "REASON", "AGE", "MESSAGE")]
    for item in conditions:
        moment = parse_time(item.last_transition_time)
        rows.append((item.type, item.status, item.reason or "-",
                     age((now - moment).total_seconds()) if moment else "-", item.message or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4]
            for row in rows]


def _originals(status: clinicalslo.ClinicalSLOStatus) -> list[str]:
    lines = []
    for item in status.originals:
        scales = f" (it scales {item.scales})" if item.scales else ""
        lines.append(f"  {item.kind} {item.name}: {item.field} was {item.value}{scales}")
    if status.original is not None:  # an older operator's single record, moved to originals next cycle
        old = status.original
        value = f"replicas was {old.replicas}" if old.replicas is not None else f"minReplicas was {old.min_replicas}"
        lines.append(f"  {old.kind} {old.name}: {value} (recorded by an older operator)")
    return lines or ["  nothing: healthscale has changed no field of the target (or has put everything back)"]


def _residency(residency: clinicalslo.ResidencyStatus) -> list[str]:
    compliant = {True: "compliant", False: "NOT compliant", None: "not checked yet"}[residency.compliant]
    enforced = {True: "the pod template requires them", False: "the pod template does NOT require them",
                None: "template not checked"}[residency.enforced]
    lines = [f"  {compliant}: regions {', '.join(residency.regions) or '-'} "
             f"(node label {residency.label or '-'}); {enforced}"]
    for violation in residency.violations:
        lines.append(f"  outside: pod {violation.pod} on node {violation.node} ({violation.region})")
    if residency.shortfall is not None:
        short = residency.shortfall
        where = f" in {', '.join(short.regions)}" if short.regions else ""
        empty = f"; no nodes at all in {', '.join(short.regions_without_nodes)}" if short.regions_without_nodes else ""
        lines.append(f"  shortfall: {short.replicas} replica(s) pending for lack of room{where}{empty}")
    if residency.evicted:
        lines.append(f"  evicted last cycle: {', '.join(residency.evicted)}")
    return lines


def _objective(label: str, objective: clinicalslo.ObjectiveStatus, what: str) -> str:
    target = f"objective {objective.target:g}%{what}" if objective.target is not None else f"objective -{what}"
    compliance = f"compliance {objective.compliance * 100:.3f}%" if objective.compliance is not None else "compliance -"
    budget = (f"{objective.error_budget_remaining * 100:.1f}% of the error budget left"
              if objective.error_budget_remaining is not None else "error budget -")
    rates = ", ".join(f"{window} {rate:.3g}x" for window, rate in sorted(objective.burn_rates.items()))
    source = " (from the recording rules)" if objective.source == "RecordingRules" else ""
    return f"  {label:<15}{target}: {compliance}, {budget}" + (f"; burn rates {rates}" if rates else "") + source


def _capacity(capacity: clinicalslo.CapacityStatus, now: dt.datetime) -> list[str]:
    """The perReplica planned with and why; the learned recommendation with its band or its outcome."""
    lines = []
    if capacity.effective_per_replica is not None:
        lines.append(f"  perReplica:    {_number(capacity.effective_per_replica)} "
                     f"({capacity.reason or capacity.source or 'declared'})")
    if capacity.recommended_per_replica is not None:
        band = (f"band {_number(capacity.low)} to "
                f"{_number(capacity.high) if capacity.high is not None else 'above the heaviest load'}")
        lines.append(f"  Learned:       {_number(capacity.recommended_per_replica)} ({band}), "
                     f"learned {_when(capacity.learned_at, now)}")
    else:
        lines.append(f"  Learned:       none ({capacity.outcome}){': ' + capacity.message if capacity.message else ''}")
    if capacity.error:
        lines.append(f"  Last attempt:  failed at {_when(capacity.attempted_at, now)}: {capacity.error}")
    return lines


def _objectives(status: clinicalslo.ClinicalSLOStatus, spec: Mapping[str, Any]) -> list[str]:
    """Each objective's compliance, budget and burn rates; an older operator's top-level error
    budget when it wrote no objectives."""
    measured = status.objectives
    if measured is None:
        if status.error_budget_remaining is None and not status.burn_rates:
            return []
        budget = (f"{status.error_budget_remaining * 100:.1f}% remaining"
                  if status.error_budget_remaining is not None else "-")
        rates = ", ".join(f"{window} {rate:.3g}x" for window, rate in sorted(status.burn_rates.items()))
        return [f"  Error budget:  {budget}" + (f"; burn rates {rates}" if rates else "")]
    lines = []
    if measured.availability is not None:
        lines.append(_objective("Availability:", measured.availability, ""))
    if measured.latency is not None:
        threshold = _mapping(_mapping(spec.get("objectives")).get("latency")).get("thresholdSeconds")
        under = f" under {threshold}s" if threshold is not None else ""
        bucket = f" (bucket le={measured.latency.bucket})" if measured.latency.bucket else ""
        lines.append(_objective("Latency:", measured.latency, under + bucket))
    return lines


def describe(resource: Mapping[str, Any], now: dt.datetime) -> str:
    """The latest decision of one ClinicalSLO (its JSON as the API server returns it), for a person."""
    metadata, spec = _mapping(resource.get("metadata")), _mapping(resource.get("spec"))
    target = _mapping(spec.get("targetRef"))
    name = f"{metadata.get('namespace', '-')}/{metadata.get('name', '-')}"
    lines = [
        f"ClinicalSLO:   {name}",
        f"Journey:       {spec.get('journey') or '-'}",
        f"Target:        {target.get('kind') or 'Deployment'}/{target.get('name') or '-'}",
        f"Mode:          {spec.get('mode') or 'Active'}"
        + ("  (computes and reports, never scales)" if spec.get("mode") == "Preview" else ""),
    ]
    raw_status = resource.get("status")
    if not raw_status:
        lines += ["", "No status yet: no operator has reconciled this ClinicalSLO. Is healthscale running, and does "
                  "it watch this namespace? (kubectl -n healthscale-system logs deployment/healthscale)"]
        return "\n".join(lines) + "\n"
    status, dropped = clinicalslo.read_status(raw_status)
    generation = metadata.get("generation")
    observed = status.observed_generation
    owner = next((item for item in status.conditions if item.type == "FloorOwner"), None)
    if owner is not None:  # the HPA or KEDA ScaledObject whose floor healthscale moves (or leaves)
        lines.append(f"Floor owner:   {owner.message or '-'}")
    lines.append(f"Last cycle:    {_when(status.last_cycle_time, now)}")
    if generation is not None and observed is not None and observed != generation:
        lines.append(f"               describes generation {observed}; the spec is at generation {generation} "
                     "(the next cycle catches up)")
    surge = f" (surge {status.surge})" if status.surge else ""
    lines += [
        "",
        "Decision:",
        f"  Replicas:      desired {status.desired_replicas if status.desired_replicas is not None else '-'}, "
        f"current {status.current_replicas if status.current_replicas is not None else '-'}",
        f"  Reason:        {status.reason or '-'}{surge}   (the largest of schedule, forecast, reactive, minimum)",
        f"  Explanation:   {status.explanation or '-'}",
        f"  Demand now:    {_number(status.current_demand)}",
        f"  Forecast peak: {_number(status.forecast_peak)} at {_when(status.forecast_peak_time, now)}"
        if status.forecast_peak is not None else "  Forecast peak: - (no forecast; see the Forecasting condition)",
        f"  Model:         {status.model or '-'}"
        + (f", forecast error (MASE) {status.forecast_error:.3g}" if status.forecast_error is not None else ""),
        f"  Next surge:    {status.next_surge or '-'}",
    ]
    lines += _objectives(status, spec)
    if status.capacity is not None:
        lines += ["", "Capacity:", *_capacity(status.capacity, now)]
    if status.reservation is not None:
        held = status.reservation
        where = (f"placeholder Deployment {held.placeholders}" if held.applied and held.placeholders
                 else "not applied")
        lines += ["", "Node room:", f"  Held:          {held.replicas} replicas' worth ({where}); {held.needed} needed "
                  f"within {held.reach_seconds // 60}m", f"  Why:           {held.message or '-'}"]
    lines += ["", "Conditions:", *_conditions(status.conditions, now)]
    lines += ["", "Changed by healthscale (put back on deletion, in Preview, or when targetRef moves):",
              *_originals(status)]
    if status.residency is not None:
        lines += ["", "Residency:", *_residency(status.residency)]
    if dropped:
        lines += ["", f"Unreadable status fields, not shown: {', '.join(dropped)}"]
    return "\n".join(lines) + "\n"
