"""Kubernetes Events and conditions as the services produce them (the runtime posts and writes them)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Literal

from healthscale.api import common
from healthscale.domain import series

MESSAGE_LIMIT = 32768


@dataclasses.dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def timestamp(epoch: int) -> str:
    return series.from_epoch(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time as written by ``timestamp`` (or any ISO 8601 with an offset or Z)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(previous: Sequence[common.Condition], type_: str, ok: bool | None, reason: str, message: str,
              generation: int | None, now: int) -> common.Condition:
    """A metav1.Condition; lastTransitionTime moves only when the status changes."""
    status: Literal["True", "False", "Unknown"] = "Unknown" if ok is None else ("True" if ok else "False")
    earlier = next((item for item in previous if item.type == type_), None)
    unchanged = earlier is not None and earlier.status == status and earlier.last_transition_time
    return common.Condition(
        type=type_, status=status, reason=reason, message=message[:MESSAGE_LIMIT],
        last_transition_time=earlier.last_transition_time if unchanged and earlier else timestamp(now),
        observed_generation=generation,
    )
