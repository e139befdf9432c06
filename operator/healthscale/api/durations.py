"""Durations as users write them in manifests: ``90s``, ``5m``, ``2h``, ``1h30m``, ``28d``, ``2w``.

This module owns the one grammar for durations, shared by the pydantic models and the CRD
schema (the same regular expression is emitted as the OpenAPI ``pattern``), and the bounds a
duration field may declare (``Bounds``), checked by the model and, as far as the API server's
CEL can, by the CRD.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Annotated, Any

import pydantic
from pydantic_core import core_schema

UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
PATTERN = r"^([0-9]+(w|d|h|m|s))+$"
MAX_LENGTH = 32
"""Longest duration text; with it no duration the grammar admits can overflow a timedelta."""
_PART = re.compile(r"([0-9]+)(w|d|h|m|s)")
_WHOLE = re.compile(PATTERN)


def parse(text: str) -> dt.timedelta:
    """Parse ``1h30m`` into a timedelta; raise ValueError naming the grammar otherwise."""
    if isinstance(text, str) and len(text) > MAX_LENGTH:
        raise ValueError(f"{text[:MAX_LENGTH]!r}... is not a duration: at most {MAX_LENGTH} characters")
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration: use whole numbers with units w, d, h, m or s, e.g. 90s, 5m, 2h, 1h30m, 28d"
        )
    seconds = sum(int(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    if seconds > dt.timedelta.max.total_seconds():
        raise ValueError(f"{text!r} is too long a time to be a duration")
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
    pydantic.WithJsonSchema({"type": "string", "pattern": PATTERN, "maxLength": MAX_LENGTH}),
]
"""A timedelta that reads and writes the manifest duration grammar."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Annotated metadata for a Duration field: the shortest and longest it may be (inclusive).

    The model checks both exactly. The CRD gets what the API server can check: a pattern that caps
    each number's digits by the maximum (so ``100001w`` is refused outright), and a CEL rule that
    compares exactly whenever the text uses only h, m and s, which is all Kubernetes' ``duration()``
    reads.
    """

    minimum: dt.timedelta
    maximum: dt.timedelta

    @property
    def message(self) -> str:
        if self.minimum > dt.timedelta(0):
            return f"must be between {format(self.minimum)} and {format(self.maximum)}"
        return f"must be at most {format(self.maximum)}"

    def pattern(self) -> str:
        """PATTERN with each unit's number no longer than the maximum needs."""
        most = int(self.maximum.total_seconds())
        units = "|".join(f"[0-9]{{1,{len(str(most // seconds))}}}{unit}" for unit, seconds in UNIT_SECONDS.items())
        return f"^({units})+$"

    def cel_rule(self) -> dict[str, str]:
        least, most = int(self.minimum.total_seconds()), int(self.maximum.total_seconds())
        return {
            "rule": f"self.matches('[wd]') || (duration(self) >= duration('{least}s')"
            f" && duration(self) <= duration('{most}s'))",
            "message": self.message,
        }

    def _check(self, value: dt.timedelta) -> dt.timedelta:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{format(value)} is out of range: {self.message}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = dict(handler(schema))
        json_schema["pattern"] = self.pattern()
        json_schema["x-kubernetes-validations"] = [self.cel_rule()]
        return json_schema

