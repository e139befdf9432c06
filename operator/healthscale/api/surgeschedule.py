"""The SurgeSchedule resource: a calendar of known surges for the ClinicalSLOs it selects.

A surge is either recurring (``cron`` + ``duration``) or a date range (``start`` + ``end``),
read on the wall clock of the schedule's ``timezone``. Defaults live here only, and so do the
bounds that keep every valid schedule cheap to expand: dates between 1970 and 8999, a duration
of at most 366d, a lead time of at most 7d, and at most MAX_OPEN_WINDOWS windows of one surge
open at once.

``spec.defer`` names non-critical workloads to shrink or suspend while a surge needs their room
(domain.deferral decides when and what); status.deferred records what they were before.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from healthscale.api import clinicalslo, common, cron, durations

KIND = "SurgeSchedule"
PLURAL = "surgeschedules"

LOCAL_TIME_PATTERN = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?)?$"
)
"""A date (local midnight) or a local date-time, without offset, in the years 1970 to 8999 (so that
every time zone's offset and every lead time stay inside the range datetime can represent)."""
_LOCAL_TIME = re.compile(LOCAL_TIME_PATTERN)

MAX_OPEN_WINDOWS = 2_000
"""Most windows of one cron surge that may be open at once (duration plus lead time over its period);
beyond it a surge costs seconds to expand on every tick."""


def parse_local_time(text: str) -> dt.datetime:
    """``2026-12-01`` or ``2026-12-12T08:00`` as a naive local datetime."""
    if not isinstance(text, str) or not _LOCAL_TIME.fullmatch(text):
        raise ValueError(
            f"{str(text)[:32]!r} is not a local date or date-time between 1970 and 8999: use YYYY-MM-DD or"
            " YYYY-MM-DDTHH:MM[:SS] without an offset, quoted in YAML"
        )
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a real date or time: {error}") from error


def _local_time(value: Any) -> str:
    parse_local_time(value)  # raises unless value is a real local time as text
    return str(value)


LocalTime = Annotated[
    str,
    pydantic.BeforeValidator(_local_time),
    pydantic.WithJsonSchema({"type": "string", "pattern": LOCAL_TIME_PATTERN, "maxLength": 19}),
]
"""A local date or date-time as written (the time zone is the schedule's)."""


def _cel_string(text: str) -> str:
    """``text`` as a single-quoted CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FIVE_FIELDS = r"^\s*(@(?i:yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})\s*$"
"""Five blank-separated fields or a macro cron.parse knows (any case, blanks around allowed)."""
_CRON_RANGES = cron.PATTERN  # the field ``cron`` shadows the module inside Surge


_PADDED_LOCAL_TIME = (
    "(size(self.{field}) == 10 ? self.{field} + 'T00:00:00'"
    " : size(self.{field}) == 16 ? self.{field} + ':00' : self.{field})"
)
"""CEL: a LOCAL_TIME_PATTERN value padded to YYYY-MM-DDTHH:MM:SS, so strings compare as instants."""


class Surge(common.Model):
    """One known surge: recurring (cron + duration) or a date range (start + end)."""

    name: str = pydantic.Field(min_length=1, max_length=63, pattern=common.DNS_LABEL)
    """Unique name of the surge within the schedule."""
    cron: str | None = pydantic.Field(default=None, min_length=1, max_length=128)
    """Five-field cron expression (minute hour day-of-month month day-of-week) in the schedule's timezone;
    it must fire on some date, and at most 2000 of its windows (duration plus leadTime) may be open at once."""
    duration: Annotated[durations.Duration, durations.Bounds(dt.timedelta(seconds=1), dt.timedelta(days=366))] | None = None
    """How long each cron window lasts, e.g. 2h; between 1s and 366d."""
    start: LocalTime | None = None
    """Start of a date range, local time: 2026-12-01 or 2026-12-12T08:00 (years 1970 to 8999)."""
    end: LocalTime | None = None
    """End of a date range (exclusive), local time (years 1970 to 8999)."""
    lead_time: Annotated[durations.Duration, durations.Bounds(dt.timedelta(0), dt.timedelta(days=7))] = dt.timedelta(0)
    """How long before the window starts the surge must already be in effect (replicas ready); at most 7d."""
    multiplier: float = pydantic.Field(default=1.0, ge=1.0, le=100.0, allow_inf_nan=False)
    """Factor applied to forecast demand during the window."""
    min_replicas: int | None = pydantic.Field(default=None, ge=0, le=10000)
    """Replica floor during the window."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "(has(self.cron) && has(self.duration) && !has(self.start) && !has(self.end))"
            " || (!has(self.cron) && !has(self.duration) && has(self.start) && has(self.end))",
            "message": "a surge has either cron and duration, or start and end",
        },
        {
            # Both sides are padded to YYYY-MM-DDTHH:MM:SS first, so that equal instants written
            # differently (2026-12-12 and 2026-12-12T00:00) compare equal, as parse_local_time does.
            "rule": "!has(self.start) || !has(self.end) || "
            + _PADDED_LOCAL_TIME.format(field="end") + " > " + _PADDED_LOCAL_TIME.format(field="start"),
            "message": "end must be after start",
        },
        {
            "rule": "self.multiplier > 1.0 || has(self.minReplicas)",
            "message": "a surge must raise demand (multiplier > 1) or set a floor (minReplicas)",
        },
        {
            "rule": f"!has(self.cron) || self.cron.matches({_cel_string(_FIVE_FIELDS)})",
            "message": "cron must have five fields (minute hour day-of-month month day-of-week) or be a macro such as @daily",
        },
        {
            # Only judged once there are five fields, so that a bad expression gets one message.
            "rule": f"!has(self.cron) || !self.cron.matches({_cel_string(_FIVE_FIELDS)})"
            f" || self.cron.matches({_cel_string(_CRON_RANGES)})",
            "message": "cron fields must be in range: minute 0-59, hour 0-23, day-of-month 1-31,"
            " month 1-12 or jan-dec, day-of-week 0-7 or sun-sat, steps 1 or more",
        },
    ]

    @pydantic.model_validator(mode="after")
    def _one_kind_of_window(self) -> Surge:
        recurring = self.cron is not None or self.duration is not None
        ranged = self.start is not None or self.end is not None
        complete = (self.cron is not None and self.duration is not None and not ranged) or (
            self.start is not None and self.end is not None and not recurring
        )
        if not complete:
            raise ValueError("a surge has either cron and duration, or start and end")
        if self.cron is not None and self.duration is not None:
            open_at_once = cron.parse(self.cron).most_starts_within(self.duration + self.lead_time)
            if open_at_once > MAX_OPEN_WINDOWS:
                raise ValueError(
                    f"cron {self.cron!r} may start up to {open_at_once} windows within one duration plus leadTime"
                    f" ({durations.format(self.duration + self.lead_time)}); at most {MAX_OPEN_WINDOWS} may be open"
                    " at once: fire less often or shorten the duration"
                )
        if self.start is not None and self.end is not None:
            if parse_local_time(self.end) <= parse_local_time(self.start):
                raise ValueError(f"end must be after start (start={self.start}, end={self.end})")
        if self.multiplier <= 1.0 and self.min_replicas is None:
            raise ValueError("a surge must raise demand (multiplier > 1) or set a floor (minReplicas)")
        return self


DeferrableKind = Literal["Deployment", "StatefulSet", "CronJob", "Job", "ScaledObject"]
"""The kinds spec.defer acts on (ScaledObject: KEDA's, keda.sh/v1alpha1)."""
DeferredField = Literal["replicas", "suspend", "pausedReplicas"]
"""What deferral writes: spec.replicas, spec.suspend, or the autoscaling.keda.sh/paused-replicas annotation."""
FIELDS: dict[str, DeferredField] = {
    "Deployment": "replicas",
    "StatefulSet": "replicas",
    "CronJob": "suspend",
    "Job": "suspend",
    "ScaledObject": "pausedReplicas",
}
"""The one field deferral writes on each kind (domain.deferral says what it writes there)."""
DEFER_SELECTOR_RULE = ("defer.selector must name what is deferrable: at least one matchLabels entry or an In or"
                       " Exists expression (a selector of only NotIn and DoesNotExist matches most of the namespace)")


class DeferPolicy(common.Model):
    """Non-critical workloads in this namespace to shrink or suspend while a surge (or a fast burn)
    needs their room, and put back exactly as they were afterwards. Workloads a ClinicalSLO targets
    are never deferred."""

    selector: common.LabelSelector
    """Selects the deferrable Deployments, StatefulSets, CronJobs, Jobs and KEDA ScaledObjects in this
    namespace by label, e.g. {matchLabels: {healthscale.io/deferrable: "true"}}."""
    replicas: int = pydantic.Field(default=0, ge=0, le=10000)
    """What deferrable Deployments and StatefulSets shrink to, and the paused-replicas of deferrable
    ScaledObjects (never raised: a workload already at or below it is left alone)."""
    during_burn: bool = False
    """Also defer while a ClinicalSLO of criticality critical in this namespace burns its error budget
    fast, and for that SLO's scale-down stabilisation after."""
    interrupt_running: bool = False
    """Also suspend Jobs that have already started (their running pods are stopped); by default only
    Jobs that have not started are suspended."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "(has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0)"
            " || (has(self.selector.matchExpressions)"
            " && self.selector.matchExpressions.exists(e, e.operator in ['In', 'Exists']))",
            "message": DEFER_SELECTOR_RULE,
        },
    ]

    @pydantic.model_validator(mode="after")
    def _selector_names_something(self) -> DeferPolicy:
        positive = bool(self.selector.match_labels) or any(
            term.operator in ("In", "Exists") for term in self.selector.match_expressions)
        if not positive:
            raise ValueError(DEFER_SELECTOR_RULE)
        return self


class SurgeScheduleSpec(common.Model):
    """A calendar of known surges and the ClinicalSLOs (in the same namespace) it applies to."""

    timezone: str = pydantic.Field(default="UTC", max_length=64, pattern=clinicalslo.TIMEZONE_PATTERN)
    """IANA time zone the cron expressions and dates are read in, e.g. America/Chicago."""
    selector: common.LabelSelector | None = None
    """Selects ClinicalSLOs in this namespace by label."""
    slo_refs: tuple[
        Annotated[str, pydantic.Field(min_length=1, max_length=253, pattern=clinicalslo.OBJECT_NAME)], ...
    ] = pydantic.Field(default=(), max_length=256)
    """Names of ClinicalSLOs in this namespace (at most 256)."""
    surges: tuple[Surge, ...] = pydantic.Field(min_length=1, max_length=64)
    """The surges."""
    defer: DeferPolicy | None = None
    """Non-critical workloads to defer from each surge's start - leadTime until its end (and, with
    duringBurn, while a critical ClinicalSLO burns fast); unset defers nothing."""

    _validate_timezone = pydantic.field_validator("timezone")(clinicalslo.validate_timezone)

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "has(self.selector) || (has(self.sloRefs) && size(self.sloRefs) > 0)",
            "message": "select ClinicalSLOs with selector, sloRefs or both",
        },
    ]

    @pydantic.model_validator(mode="after")
    def _selects_something_and_names_unique(self) -> SurgeScheduleSpec:
        if self.selector is None and not self.slo_refs:
            raise ValueError("select ClinicalSLOs with selector, sloRefs or both")
        names = [surge.name for surge in self.surges]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"surge names must be unique: {', '.join(duplicates)} repeated")
        return self

    def applies_to(self, slo_name: str, slo_labels: dict[str, str]) -> bool:
        """True when this schedule selects the named ClinicalSLO (by name or by labels)."""
        if slo_name in self.slo_refs:
            return True
        return self.selector is not None and self.selector.matches(slo_labels)


class SurgeWindowStatus(common.Model):
    """The next (or current) window of one surge."""

    name: str
    """The surge's name."""
    start: str
    """Window start (RFC 3339)."""
    end: str
    """Window end (RFC 3339)."""
    active: bool = False
    """True while the window (including its lead time) is in effect."""


class DeferredValue(common.Model):
    """The value of the one field deferral writes on an object (only that kind's field is set)."""

    replicas: int | None = pydantic.Field(default=None, ge=0)
    """Deployment, StatefulSet: spec.replicas."""
    suspend: bool | None = None
    """CronJob, Job: spec.suspend."""
    paused_replicas: str | None = pydantic.Field(default=None, max_length=64)
    """ScaledObject: the autoscaling.keda.sh/paused-replicas annotation; unset when it is absent."""


class DeferredObject(common.Model):
    """One object healthscale deferred, what it was before, and what healthscale wrote.

    Written to status before the write itself, so an operator killed between the two still knows
    what to put back. Should the object's value stop being what healthscale wrote (someone scaled it
    by hand), their change wins: the record is dropped and nothing is written back."""

    kind: DeferrableKind
    """Deployment, StatefulSet, CronJob, Job or ScaledObject."""
    name: str = pydantic.Field(min_length=1, max_length=253)
    """Its name, in the schedule's namespace."""
    uid: str = pydantic.Field(min_length=1, max_length=64)
    """Its uid: a re-created object of the same name is a different object and is never written back."""
    field: DeferredField
    """replicas (Deployment, StatefulSet), suspend (CronJob, Job) or pausedReplicas (ScaledObject)."""
    original: DeferredValue
    """The value before healthscale deferred it: restored when deferral ends."""
    written: DeferredValue
    """The value healthscale wrote; any other value found later is someone else's change."""
    since: str
    """When healthscale deferred it (RFC 3339)."""
    until: str | None = None
    """When deferral is expected to end, as known at the last cycle (RFC 3339)."""
    cause: Literal["Surge", "FastBurn"]
    """What put deferral in force: a surge window (with its lead time) or a critical ClinicalSLO's fast burn."""
    cause_name: str = pydantic.Field(min_length=1, max_length=253)
    """The surge's name, or the burning ClinicalSLO's name."""
    overridden_at: str | None = None
    """When someone else's change to the object was found (RFC 3339): their change wins, so healthscale
    leaves the object alone until deferral ends, then drops this record without writing."""

    @pydantic.model_validator(mode="after")
    def _values_are_the_kinds_field(self) -> DeferredObject:
        expected = FIELDS[self.kind]
        if self.field != expected:
            raise ValueError(f"field must be {expected} for a {self.kind} (got {self.field})")
        for name, value in (("original", self.original), ("written", self.written)):
            others = {key for key, item in value.wire().items() if key != expected and item is not None}
            if others:
                raise ValueError(f"{name} of a {self.kind} sets only {expected} (also set: {', '.join(sorted(others))})")
        if self.written.wire().get(expected) is None:
            raise ValueError(f"written must set {expected}")
        if expected != "pausedReplicas" and self.original.wire().get(expected) is None:
            raise ValueError(f"original must set {expected}")
        return self


class NotDeferred(common.Model):
    """An object spec.defer selects but leaves alone, and why."""

    kind: str = pydantic.Field(max_length=64)
    """Its kind."""
    name: str = pydantic.Field(max_length=253)
    """Its name."""
    reason: str = pydantic.Field(max_length=64)
    """A CamelCase word, e.g. ClinicalTarget, ScaledByAutoscaler or Running."""
    message: str = pydantic.Field(default="", max_length=1024)
    """The reason in one sentence."""


class FastBurnSeen(common.Model):
    """When a critical ClinicalSLO was last seen burning fast: deferral holds for its scale-down
    stabilisation after, across operator restarts."""

    slo: str = pydantic.Field(min_length=1, max_length=253)
    """The ClinicalSLO's name."""
    last_seen: str
    """When its fast burn was last seen (RFC 3339)."""


class SurgeScheduleStatus(common.Model):
    """The schedule's next windows, written by the operator."""

    model_config = pydantic.ConfigDict(extra="allow")

    observed_generation: int | None = None
    """The .metadata.generation the status describes."""
    conditions: tuple[common.Condition, ...] = ()
    """Ready and the other conditions."""
    windows: tuple[SurgeWindowStatus, ...] = ()
    """Next window of each surge."""
    next_surge: str | None = None
    """The next surge to start, with its start time."""
    deferred: tuple[DeferredObject, ...] = ()
    """Objects deferred now (spec.defer), each with its original value, since and until when, and cause
    (those with overriddenAt were changed by someone else and are left alone until deferral ends)."""
    not_deferred: tuple[NotDeferred, ...] = ()
    """Objects spec.defer selects but leaves alone (e.g. targeted by a ClinicalSLO), and why."""
    fast_burns: tuple[FastBurnSeen, ...] = ()
    """Critical ClinicalSLOs seen burning fast within their scale-down stabilisation (spec.defer.duringBurn)."""
    deferred_count: int | None = pydantic.Field(default=None, ge=0)
    """How many objects are held deferred now (the DEFERRED column; unset without spec.defer)."""
    deferral: str | None = pydantic.Field(default=None, max_length=1024)
    """Whether deferral is in force and why, in one sentence (e.g. "in force until 2026-12-01T10:00:00Z:
    surge flu-clinic"), or why not."""

    CALENDAR_PART: ClassVar[frozenset[str]] = frozenset({"observed_generation", "conditions", "windows", "next_surge"})
    """Fields the calendar writes (the ClinicalSLO cycle and the schedule handlers)."""
    DEFERRAL_PART: ClassVar[frozenset[str]] = frozenset(
        {"deferred", "not_deferred", "fast_burns", "deferred_count", "deferral"})
    """Fields the deferral loop writes: two writers, each merging only its own part."""

    def part(self, fields: frozenset[str]) -> dict[str, Any]:
        """These fields as a merge patch (camelCase; None kept, so that a field set before is cleared)."""
        return self.model_dump(mode="json", by_alias=True, include=set(fields))


_STATUS_LISTS = ("conditions", "windows", "deferred", "notDeferred", "fastBurns")
"""Status lists read item by item, so one unreadable item does not hide the others."""


def read_status(raw: object) -> tuple[SurgeScheduleStatus, tuple[str, ...]]:
    """A status as last written, leniently: the typed model, and the fields (or list items) left out
    because they do not validate (written by an older or newer operator, or by hand). The records of
    what deferral changed (``deferred``) are kept whenever they can be read."""
    return common.read_leniently(SurgeScheduleStatus, raw, _STATUS_LISTS)


class SurgeSchedule(pydantic.BaseModel):
    """A whole SurgeSchedule manifest."""

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")

    api_version: Literal["healthscale.io/v1alpha1"] = pydantic.Field(alias="apiVersion")
    kind: Literal["SurgeSchedule"]
    metadata: common.ObjectMeta
    spec: SurgeScheduleSpec
    status: SurgeScheduleStatus | None = None


PRINTER_COLUMNS = [
    {"name": "Timezone", "type": "string", "jsonPath": ".spec.timezone", "description": "Time zone of the calendar"},
    {"name": "Next surge", "type": "string", "jsonPath": ".status.nextSurge", "description": "Next surge window"},
    {"name": "Deferred", "type": "integer", "jsonPath": ".status.deferredCount",
     "description": "Objects spec.defer holds deferred now"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status', "description": "Ready condition"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
