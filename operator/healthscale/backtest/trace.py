"""Reading demand traces: CSV files with ``timestamp,value`` rows on a regular grid, gaps allowed.

Timestamps are ISO-8601 local times (naive, or with ``Z`` or an offset, which is dropped: the time
as written is kept) or epoch seconds (read as UTC). The engine works in epoch seconds, so a trace's wall
clock is read as if it were UTC: daily and weekly cycles, cron surges and the plot all line up
with the local times written in the file. Every malformed row is reported with its line number.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import pathlib
import re
from collections import Counter

import numpy as np

from healthscale.domain import series

MAX_ERRORS_SHOWN = 10


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the line and the field."""


@dataclasses.dataclass(frozen=True, eq=False)
class Trace:
    """A demand trace on a regular grid (NaN for missing intervals) and where it came from."""

    path: pathlib.Path
    series: series.Series
    rows: int

    @property
    def step(self) -> int:
        return self.series.step

    def timestamp(self, epoch: int) -> dt.datetime:
        """The trace's own (naive, local) timestamp for an instant on its grid."""
        return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).replace(tzinfo=None)


_EPOCH = re.compile(r"[0-9]+(\.[0-9]*)?")


def _parse_time(text: str) -> dt.datetime:
    """The wall-clock time of one row: ISO-8601, naive or with ``Z`` or an offset (the time as written
    is kept, the offset dropped), or epoch seconds (read as UTC)."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        try:
            return dt.datetime.fromtimestamp(float(text), dt.timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError):
            raise ValueError("is out of range as epoch seconds") from None
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)


def load(path: pathlib.Path) -> Trace:
    """Read and validate a trace; raise TraceError listing the problems found."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise TraceError(f"{path}: cannot read trace: {error.strerror}") from None
    problems: list[str] = []
    times: list[int] = []
    values: list[float] = []
    lines: list[int] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: the file is empty; expected a header line 'timestamp,value'")
        if [column.strip().lower() for column in header] != ["timestamp", "value"]:
            raise TraceError(f"{path}:1: header is {','.join(header)!r}; expected 'timestamp,value'")
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                problems.append(f"{path}:{line_number}: expected 2 fields (timestamp,value), found {len(row)}")
                continue
            try:
                moment = _parse_time(row[0])
            except ValueError as error:
                problems.append(f"{path}:{line_number}: field timestamp: {row[0]!r} is not an ISO-8601 time or epoch seconds ({error})")
                continue
            text = row[1].strip()
            if text.lower() in ("", "nan", "na"):
                value = math.nan
            else:
                try:
                    value = float(text)
                except ValueError:
                    problems.append(f"{path}:{line_number}: field value: {text!r} is not a number")
                    continue
                if not math.isfinite(value) or value < 0:
                    problems.append(f"{path}:{line_number}: field value: {text!r} must be a finite number >= 0")
                    continue
            times.append(series.to_epoch(moment.replace(tzinfo=dt.timezone.utc)))
            values.append(value)
            lines.append(line_number)
    if problems:
        shown = problems[:MAX_ERRORS_SHOWN]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise TraceError("malformed trace:\n  " + "\n  ".join(shown) + more)
    if len(times) < 3:
        raise TraceError(f"{path}: a trace needs at least 3 rows, found {len(times)}")
    time_array = np.asarray(times, dtype=np.int64)
    differences = np.diff(time_array)
    backwards = np.flatnonzero(differences <= 0)
    if backwards.size:
        index = int(backwards[0]) + 1
        kind = "repeats" if differences[backwards[0]] == 0 else "goes back before"
        raise TraceError(
            f"{path}:{lines[index]}: field timestamp: {dt.datetime.fromtimestamp(times[index], dt.timezone.utc):%Y-%m-%dT%H:%M:%S} "
            f"{kind} the previous row (line {lines[index - 1]}); rows must be in increasing time order"
        )
    step = Counter(differences.tolist()).most_common(1)[0][0]
    off_grid = np.flatnonzero(differences % step != 0)
    if off_grid.size:
        index = int(off_grid[0]) + 1
        raise TraceError(
            f"{path}:{lines[index]}: field timestamp: not on the trace's {step}s grid "
            f"({differences[off_grid[0]]}s after the previous row); one row per interval is expected"
        )
    grid = np.full(int((time_array[-1] - time_array[0]) // step) + 1, np.nan)
    grid[(time_array - time_array[0]) // step] = values
    return Trace(path, series.Series(int(time_array[0]), int(step), grid), len(times))
