"""Durations as users write them in manifests (``90s``, ``1h30m``, ``2w``): parsing, formatting, errors."""

from __future__ import annotations

import datetime as dt
import re

import pydantic
import pytest

from healthscale.api import durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("5m", dt.timedelta(minutes=5)),
        ("2h", dt.timedelta(hours=2)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("28d", dt.timedelta(days=28)),
        ("2w", dt.timedelta(weeks=2)),
        ("1d2h3m4s", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0s", dt.timedelta(0)),
    ],
    ids=[
        "seconds beyond a minute stay seconds",
        "minutes",
        "hours",
        "hours and minutes add up",
        "days",
        "weeks are seven days",
        "every unit at once adds up",
        "zero is allowed",
    ],
)
def test_parse_reads_the_manifest_grammar(text: str, expected: dt.timedelta) -> None:
    assert durations.parse(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(minutes=5), "5m"),
        (dt.timedelta(hours=1, minutes=30), "1h30m"),
        (dt.timedelta(days=28), "28d"),
        (dt.timedelta(seconds=90), "1m30s"),
        (dt.timedelta(weeks=2), "14d"),
        (dt.timedelta(days=1, seconds=1), "1d1s"),
        (dt.timedelta(0), "0s"),
    ],
    ids=[
        "five minutes is 5m",
        "an hour and a half is 1h30m",
        "four weeks is written in days as 28d",
        "ninety seconds is written with the largest units first",
        "two weeks is written in days",
        "units that are zero are left out",
        "zero is 0s, not an empty string",
    ],
)
def test_format_writes_largest_units_first(value: dt.timedelta, expected: str) -> None:
    assert durations.format(value) == expected


@pytest.mark.parametrize(
    "text",
    ["90s", "5m", "1h30m", "28d", "2w", "3d4h5m6s", "0s"],
    ids=[
        "90s survives a round trip",
        "5m survives a round trip",
        "1h30m survives a round trip",
        "28d survives a round trip",
        "2w survives a round trip",
        "a duration with every unit survives a round trip",
        "zero survives a round trip",
    ],
)
def test_format_then_parse_gives_the_same_length_of_time(text: str) -> None:
    value = durations.parse(text)
    written = durations.format(value)
    assert durations.parse(written) == value
    assert durations.format(durations.parse(written)) == written


@pytest.mark.parametrize(
    "text",
    ["5 minutes", "", "1.5h", "-5m", "5M", "5", "m", "5m ", "1h 30m", "5y"],
    ids=[
        "words are not units",
        "an empty string is not a duration",
        "fractions are not allowed",
        "negative durations are not allowed",
        "units are lower case",
        "a bare number has no unit",
        "a bare unit has no number",
        "trailing blanks are not allowed",
        "blanks between parts are not allowed",
        "years are not a unit",
    ],
)
def test_invalid_durations_are_rejected_with_a_message_naming_the_grammar(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        durations.parse(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "w, d, h, m or s" in message
    assert "1h30m" in message


def test_the_crd_pattern_accepts_exactly_what_parse_accepts() -> None:
    pattern = re.compile(durations.PATTERN)
    for good in ["90s", "1h30m", "2w", "0s"]:
        assert pattern.search(good), good
    for bad in ["5 minutes", "", "1.5h", "-5m", "5M"]:
        assert not pattern.search(bad), bad


class _Holder(pydantic.BaseModel):
    value: durations.Duration


@pytest.mark.parametrize(
    ("given", "expected"),
    [("1h30m", dt.timedelta(minutes=90)), (dt.timedelta(seconds=45), dt.timedelta(seconds=45))],
    ids=["a model field reads the manifest grammar", "a model field accepts a timedelta as is"],
)
def test_duration_fields_read_text_and_timedeltas(given: object, expected: dt.timedelta) -> None:
    assert _Holder(value=given).value == expected


def test_duration_fields_serialise_in_the_manifest_grammar() -> None:
    assert _Holder(value=dt.timedelta(days=14)).model_dump(mode="json") == {"value": "14d"}


def test_duration_fields_reject_other_grammars_with_the_grammar_in_the_error() -> None:
    with pytest.raises(pydantic.ValidationError, match="w, d, h, m or s"):
        _Holder(value="PT5M")
