"""One deferral cycle of every SurgeSchedule: read, decide (``domain.deferral``), record, write,
settle, report.

Owns the order that makes deferral safe to interrupt anywhere:

1. the finalizer ``healthscale.io/restore-deferred`` goes on the SurgeSchedule before its first
   deferral, so that deleting the schedule first puts everything back;
2. the records (``status.deferred``: each object's uid, original and written value) are saved
   *before* any write, so an operator killed between the two still knows what to put back;
3. each write is a test-and-set of one field on one uid (``ports.Deferrables.write``);
4. the records are settled by what each write did (``Plan.settled``) and saved again;
5. with nothing left deferred, the finalizer comes off. A schedule being deleted whose restores the
   API server refuses (403, 404, 422), or that still fail after ``GIVE_UP_CYCLES`` cycles, is let go
   with a ``RestoreFailed`` Warning naming what is left: a finalizer is never stuck.

A cycle that cannot read everything it needs plans nothing (it never mistakes a failed read for a
missing object). Events go on the SurgeSchedule and on the object; a reason that repeats every
cycle (WouldDefer, ClinicalTarget, ...) is posted once, again only when it changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from healthscale import ports
from healthscale.api import clinicalslo, manifests, surgeschedule
from healthscale.domain import deferral, planning, selectors

logger = logging.getLogger("healthscale.deferral")

FINALIZER = "healthscale.io/restore-deferred"
GIVE_UP_CYCLES = 5
"""Cycles a deleted schedule's failing restores are retried before the finalizer is let go."""
_BURN_CONDITIONS = ("AvailabilityObjectiveMet", "LatencyObjectiveMet")
_SCHEDULE_API = "healthscale.io/v1alpha1"


@dataclasses.dataclass(frozen=True)
class Posted:
    """An Event to post: on the schedule, and (when ``on_object``) on the deferred object too."""

    type: str
    reason: str
    message: str
    on: tuple[ports.Involved, ...]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one cycle did for one SurgeSchedule."""

    namespace: str
    name: str
    deferred: int | None
    """Objects held deferred after the cycle; None when the schedule defers nothing (no metric)."""
    events: tuple[Posted, ...] = ()
    problems: tuple[str, ...] = ()
    """Reads or writes that failed, for the log (the next cycle tries again)."""
    released: bool = False
    """The finalizer came off (everything restored, or given up on with a Warning)."""


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """What a schedule's namespace says about deferral: the ClinicalSLOs' targets, burns and modes."""

    targets: dict[str, str]
    """``Kind/name`` of each ClinicalSLO target -> the ClinicalSLO's name (even an invalid one's)."""
    burns: tuple[deferral.SloBurn, ...]
    modes: dict[str, tuple[dict[str, str], clinicalslo.Mode]]
    """Valid ClinicalSLOs: name -> (labels, mode), to tell which ones the schedule selects."""
    reach: dict[str, int] = dataclasses.field(default_factory=dict)
    """Valid ClinicalSLOs: name -> how many seconds ahead their planner asks for replicas
    (``planning.Policy.reach``: startup, one step, node provisioning)."""

    def lookahead(self, spec: surgeschedule.SurgeScheduleSpec, cycle_seconds: float) -> dt.timedelta:
        """How early deferral starts before a surge's ``start - leadTime``: the longest reach of the
        ClinicalSLOs the schedule selects, plus one deferral cycle; none when it selects none."""
        reaches = [self.reach[name] for name, (labels, _) in self.modes.items()
                   if name in self.reach and spec.applies_to(name, labels)]
        return dt.timedelta(seconds=max(reaches) + cycle_seconds) if reaches else dt.timedelta(0)


def neighbours(bodies: Sequence[Mapping[str, Any]]) -> Neighbours:
    """Read the namespace's ClinicalSLOs leniently: a ClinicalSLO whose spec does not parse still
    protects its target (read straight from spec.targetRef), but has no burn or mode."""
    targets: dict[str, str] = {}
    burns: list[deferral.SloBurn] = []
    modes: dict[str, tuple[dict[str, str], clinicalslo.Mode]] = {}
    reach: dict[str, int] = {}
    for body in bodies:
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name") or "")
        reference = (body.get("spec") or {}).get("targetRef") or {}
        if isinstance(reference, Mapping) and reference.get("name"):
            targets[f"{reference.get('kind') or 'Deployment'}/{reference.get('name')}"] = name
        try:
            slo = manifests.parse_spec(clinicalslo.ClinicalSLO, dict(body), source="ClinicalSLO")
        except manifests.ManifestError:
            continue
        status = clinicalslo.read_status(dict(body.get("status") or {}))[0]
        burning = any(item.type in _BURN_CONDITIONS and item.reason == "FastBurn" for item in status.conditions)
        burns.append(deferral.SloBurn(name, slo.spec.criticality == clinicalslo.Criticality.CRITICAL, burning,
                                      dt.timedelta(seconds=slo.spec.scale_down.stabilization_seconds)))
        modes[name] = (dict(slo.metadata.labels), slo.spec.mode)
        reach[name] = planning.Policy.of(slo.spec).reach
    return Neighbours(targets, tuple(burns), modes, reach)


def preview_reason(spec: surgeschedule.SurgeScheduleSpec, found: Neighbours, dry_run: bool) -> str | None:
    """Why nothing new is deferred this cycle (restores still happen), or None."""
    if dry_run:
        return "the operator runs with --dry-run"
    selected = [mode for name, (labels, mode) in found.modes.items() if spec.applies_to(name, labels)]
    if selected and all(mode == clinicalslo.Mode.PREVIEW for mode in selected):
        return "every ClinicalSLO this schedule selects is in mode Preview"
    return None


class Deferrer:
    """Runs deferral cycles; remembers, across cycles, which Events were posted and how long a
    deleted schedule's restores have been failing."""

    def __init__(self, port: ports.Deferrables, kinds: tuple[str, ...], dry_run: bool = False,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 serves: Callable[[str], bool] = lambda _namespace: True, cycle_seconds: float = 20.0) -> None:
        self.port = port
        self.cycle_seconds = cycle_seconds
        """How often the runtime runs a cycle: deferral starts one cycle ahead of the planner's reach."""
        self.serves = serves
        """Whether the operator serves a namespace (its --namespace names and patterns)."""
        self.kinds = tuple(kind for kind in kinds if kind in deferral.KINDS)
        self.dry_run = dry_run
        self.clock = clock
        self.posted: dict[tuple[str, str], str] = {}
        """(schedule uid, object key) -> the last repeating reason posted."""
        self.failing: dict[str, int] = {}
        """Schedule uid -> cycles its deletion's restores have failed."""

    def cycle(self) -> list[Outcome]:
        """One pass over every served SurgeSchedule."""
        now = self.clock()
        return [self.one(body, now) for body in self.port.schedules()
                if self.serves(str((body.get("metadata") or {}).get("namespace") or ""))]

    def release_all(self) -> list[Outcome]:
        """``healthscale release`` (the uninstall hook): put back everything every served schedule
        deferred and take the finalizer off, whatever is left (a Warning names it)."""
        now = self.clock()
        return [self.one(body, now, releasing=True) for body in self.port.schedules()
                if self.serves(str((body.get("metadata") or {}).get("namespace") or ""))
                and (FINALIZER in ((body.get("metadata") or {}).get("finalizers") or [])
                     or (body.get("status") or {}).get("deferred"))]

    def one(self, body: Mapping[str, Any], now: dt.datetime, releasing: bool = False) -> Outcome:
        """One cycle of one schedule. ``releasing``: healthscale is being uninstalled; everything is
        restored as for a deletion, and the finalizer comes off after this one try."""
        metadata = body.get("metadata") or {}
        namespace, name, uid = (str(metadata.get(key) or "") for key in ("namespace", "name", "uid"))
        holding = FINALIZER in (metadata.get("finalizers") or [])
        deleting = bool(metadata.get("deletionTimestamp")) or releasing
        status, _ = surgeschedule.read_status(body.get("status"))
        try:
            spec: surgeschedule.SurgeScheduleSpec | None = manifests.parse_spec(
                surgeschedule.SurgeSchedule, dict(body), source="SurgeSchedule").spec
        except manifests.ManifestError:
            spec = None  # an invalid schedule is skipped: what it deferred is put back
        policy = spec.defer if spec is not None else None
        if policy is None and not status.deferred and not holding:
            if status.deferred_count is not None or status.not_deferred or status.deferral:
                try:  # spec.defer was removed: clear what the deferral loop showed
                    self.port.save_status(namespace, name, _body(surgeschedule.SurgeScheduleStatus()))
                except (ports.ApiError, ports.NotFound) as error:
                    return Outcome(namespace, name, None, problems=(f"deferral status not cleared: {error}",))
            return Outcome(namespace, name, None)
        schedule = ports.Involved(_SCHEDULE_API, surgeschedule.KIND, namespace, name, uid)
        problems: list[str] = []
        try:
            found = neighbours(self.port.clinical_slos(namespace))
            workloads = self._workloads(namespace, policy if not deleting else None, status.deferred, found)
        except (ports.ApiError, ports.NotFound) as error:
            problems = [f"not planned: {error}"]
            said = f"not planned this cycle, nothing changed: {error}"[:1024]
            if status.deferral != said:  # where users look (e.g. a 403: the chart's deferral.enabled is off)
                try:
                    self.port.save_status(namespace, name, {"deferral": said})
                except (ports.ApiError, ports.NotFound) as unsaid:
                    problems.append(f"status not saved: {unsaid}")
            return Outcome(namespace, name, status.deferred_count, problems=tuple(problems))
        preview = preview_reason(spec, found, self.dry_run) if spec is not None else None
        effective = spec if spec is not None else surgeschedule.SurgeScheduleSpec.model_construct(surges=(), defer=None)
        decided = deferral.decide(effective, status, found.burns, workloads, now, preview=preview is not None,
                                  deleting=deleting or spec is None,
                                  ended="healthscale is being uninstalled (healthscale release)" if releasing else
                                  "the SurgeSchedule is being deleted" if deleting else
                                  "the SurgeSchedule's spec is invalid (see its Ready condition); what it deferred "
                                  "is put back",
                                  lookahead=found.lookahead(spec, self.cycle_seconds) if spec is not None else dt.timedelta(0))
        plan = decided.plan
        # Records without the finalizer (someone removed it) get it back too: a deletion must restore them.
        if (plan.records or any(decision.action == deferral.Action.DEFER for decision in plan.decisions)) \
                and not holding and not deleting:
            try:
                self.port.set_finalizer(namespace, name, uid, True)
                holding = True
            except (ports.ApiError, ports.NotFound) as error:
                return Outcome(namespace, name, status.deferred_count, problems=(f"not deferred: {error}",))
        summary = _summary(decided.deferral, preview)
        known = _body(status)
        try:
            known = self._save(namespace, name, known, status.model_copy(update={"fast_burns": decided.fast_burns}),
                               summary, plan.records, plan)
        except (ports.ApiError, ports.NotFound) as error:
            # Nothing written without its record first.
            return Outcome(namespace, name, status.deferred_count, problems=(f"records not saved, nothing written: {error}",))
        failed: set[str] = set()
        refused: set[str] = set()
        events: list[Posted] = []
        for decision in plan.decisions:
            involved = ports.Involved(_api_version(decision.kind), decision.kind, namespace, decision.name, decision.uid)
            if decision.write is not None:
                try:
                    self.port.write(namespace, decision.write)
                except ports.NotFound as error:
                    refused.add(decision.uid)
                    problems.append(str(error))
                    continue
                except ports.ApiError as error:
                    (failed if error.status == 0 or error.status >= 500 else refused).add(decision.uid)
                    problems.append(str(error))
                    failure = "RestoreFailed" if decision.action == deferral.Action.RESTORE else "DeferFailed"
                    if self.posted.get((uid, _key(decision))) != failure:  # once, not every cycle of an outage
                        self.posted[(uid, _key(decision))] = failure
                        events.append(Posted("Warning", failure, f"{decision.message}: {error}", (schedule,)))
                    continue
                self.posted.pop((uid, _key(decision)), None)
                events.append(Posted("Normal", decision.reason, decision.message, (schedule, involved)))
            elif decision.reason in ("ChangedByOthers", "Gone", "Recreated", "ScaledByAutoscaler") and \
                    decision.action == deferral.Action.DROP:
                events.append(Posted("Normal", decision.reason, decision.message, (schedule,)))
            elif decision.notable or decision.reason == "WouldDefer":
                if self.posted.get((uid, _key(decision))) != decision.reason:
                    self.posted[(uid, _key(decision))] = decision.reason
                    events.append(Posted("Normal", decision.reason, decision.message, (schedule,)))
        settled = plan.settled(failed, refused)
        try:
            self._save(namespace, name, known, status.model_copy(update={"fast_burns": decided.fast_burns}), summary,
                       settled, plan)
        except (ports.ApiError, ports.NotFound) as error:
            problems.append(f"settled records not saved (the next cycle settles them from the objects): {error}")
            return Outcome(namespace, name, len(plan.records), tuple(events), tuple(problems))
        count = sum(1 for record in settled if record.overridden_at is None)
        released = False
        if holding and not settled:
            released = self._release(namespace, name, uid, problems)
        elif holding and deleting:
            self.failing[uid] = self.failing.get(uid, 0) + 1
            if not failed or releasing or self.failing[uid] >= GIVE_UP_CYCLES:
                left = "; ".join(f"{record.kind} {record.name} {record.field}" for record in settled)
                why = "healthscale is uninstalled" if releasing else "the SurgeSchedule is deleted"
                events.append(Posted("Warning", "RestoreFailed",
                                     f"{why} with these not restored, left as they are: {left}", (schedule,)))
                released = self._release(namespace, name, uid, problems)
        if released:
            self.failing.pop(uid, None)
            # Forgotten with the schedule only: a refused first deferral releases every cycle, and
            # its DeferFailed Warning must stay posted once.
            for key in [key for key in self.posted if key[0] == uid and deleting]:
                del self.posted[key]
        return Outcome(namespace, name, None if policy is None and deleting else count, tuple(events),
                       tuple(problems), released)

    def _workloads(self, namespace: str, policy: surgeschedule.DeferPolicy | None,
                   records: Sequence[surgeschedule.DeferredObject], found: Neighbours) -> list[deferral.Workload]:
        listed: list[deferral.Workload] = []
        if policy is not None:
            selector = selectors.label_selector(policy.selector.wire())
            if selector:
                listed = self.port.selected(namespace, selector, self.kinds)
        seen = {item.uid for item in listed}
        for record in records:
            if record.uid not in seen:
                item = self.port.read(namespace, record.kind, record.name)
                if item is not None:
                    listed.append(item)
                    seen.add(item.uid)
        return [_protected(item, found) for item in listed]

    def _save(self, namespace: str, name: str, known: dict[str, Any], status: surgeschedule.SurgeScheduleStatus,
              summary: str | None, records: Sequence[surgeschedule.DeferredObject],
              plan: deferral.Plan) -> dict[str, Any]:
        """Save the deferral part of the status unless it is ``known`` already; what it is now."""
        body = _body(status.model_copy(update={
            "deferred": tuple(records),
            "not_deferred": plan.not_deferred,
            "deferred_count": sum(1 for record in records if record.overridden_at is None),
            "deferral": summary,
        }))
        if body != known:
            self.port.save_status(namespace, name, body)
        return body

    def _release(self, namespace: str, name: str, uid: str, problems: list[str]) -> bool:
        try:
            self.port.set_finalizer(namespace, name, uid, False)
        except ports.NotFound:
            return True  # gone already
        except ports.ApiError as error:
            problems.append(f"finalizer not removed (next cycle): {error}")
            return False
        return True


def _body(status: surgeschedule.SurgeScheduleStatus) -> dict[str, Any]:
    """The deferral part of a status as a merge patch (lists item by item as on the wire)."""
    body = status.part(status.DEFERRAL_PART)
    body["deferred"] = [item.wire() for item in status.deferred]
    body["notDeferred"] = [item.wire() for item in status.not_deferred]
    body["fastBurns"] = [item.wire() for item in status.fast_burns]
    return body


def _protected(item: deferral.Workload, found: Neighbours) -> deferral.Workload:
    """The object with ``targeted_by`` set when a ClinicalSLO targets it (or what it scales)."""
    target = found.targets.get(f"{item.kind}/{item.name}") or (found.targets.get(item.scales) if item.scales else None)
    return dataclasses.replace(item, targeted_by=target) if target else item


def _key(decision: deferral.Decision) -> str:
    return f"{decision.kind}/{decision.name}/{decision.uid}"


def _api_version(kind: str) -> str:
    rule = deferral.KINDS.get(kind)
    return rule.api_version if rule is not None else "v1"


def _summary(state: deferral.Deferral, preview: str | None) -> str:
    if not state.in_force:
        return f"not in force: {state.why_not}"[:1024]
    causes = ", ".join(reason.describe() for reason in state.causes)
    until = state.until.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if state.until else "?"
    text = f"in force until {until}: {causes}"
    return (f"{text}; preview, nothing new is deferred: {preview}" if preview else text)[:1024]
