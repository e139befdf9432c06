"""Durations as users write them in manifests: ``90s``, ``5m``, ``2h``, ``1h30m``, ``28d``, ``2w``.

This module owns the one grammar for durations, shared by the pydantic models and the CRD
schema (the same regular expression is emitted as the OpenAPI ``pattern``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import pydantic

UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
PATTERN = r"^([0-9]+(w|d|h|m|s))+$"
_PART = re.compile(r"([0-9]+)(w|d|h|m|s)")
_WHOLE = re.compile(PATTERN)


def parse(text: str) -> dt.timedelta:
    """Parse ``1h30m`` into a timedelta; raise ValueError naming the grammar otherwise."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration: use whole numbers with units w, d, h, m or s, e.g. 90s, 5m, 2h, 1h30m, 28d"
        )
    seconds = sum(int(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    return dt.timedelta(seconds=seconds)


def format(value: dt.timedelta) -> str:  # noqa: A001 - mirrors parse()
    """Render a timedelta in the shortest form ``parse`` accepts (``0s`` for zero)."""
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, remaining = divmod(remaining, UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    return parse(value)


Duration = Annotated[
    dt.timedelta,
    pydantic.BeforeValidator(_coerce),
    pydantic.PlainSerializer(format, return_type=str),
    pydantic.WithJsonSchema({"type": "string", "pattern": PATTERN, "maxLength": 32}),
]
"""A timedelta that reads and writes the manifest duration grammar."""
