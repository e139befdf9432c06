#!/usr/bin/env python3
"""Replay real demand traces into the dev cluster's Prometheus.

Two sub-commands share one mapping from wall-clock time to a trace row:

  backfill  writes the last --days of history as OpenMetrics and turns it into
            TSDB blocks with `promtool tsdb create-blocks-from openmetrics`.
            Run it BEFORE Prometheus starts, on an empty data dir.
  serve     a tiny loopback exporter whose /metrics shows the trace's value
            "now", so that fresh samples keep arriving after the backfill.

Metric (a gauge; one series per trace):

  healthscale_demo_requests_per_second{journey="...", trace="..."}
      = row value / trace step in seconds * scale

Time shift. A trace's timestamps are naive local wall-clock times. We read
them as wall-clock times in --tz and move them forward by a whole number of
weeks, so weekday and time of day are kept (a Monday 07:00 ramp in the trace
is a Monday 07:00 ramp in the cluster's --tz; DST is handled by zoneinfo).
The number of weeks is chosen so that "now" falls at least --reserve-days
before the trace's last row: the backfill ends now, and the exporter then
keeps replaying the rows that really came next. If the exporter outlives the
trace it loops over the trace's last four weeks.

Gaps in a trace (missing rows) stay gaps: no sample is written for them and
the exporter drops the series while "now" is in a gap.

The newest hours. The blocks are written before Prometheus starts, so there
is no head block to collide with; Prometheus opens the head at the last
block's max time and scraped samples continue from there. The head's first
2h block will later overlap the last backfilled block's 2h range; Prometheus
>= 2.39 merges overlapping blocks itself (vertical compaction is on by
default), so we backfill right up to "now" and do not leave a hole.

Only the standard library is used, so the system python3 is enough.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime as dt
import http.server
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

METRIC = "healthscale_demo_requests_per_second"
INFO_METRIC = "healthscale_demo_trace_info"
WEEK = dt.timedelta(weeks=1)
LOOP_WEEKS = 4  # after the trace runs out, replay its last four weeks


@dataclass
class TraceSpec:
    journey: str
    path: str
    tz: str = "UTC"
    scale: float = 1.0
    shift_weeks: int = 0  # filled in by `backfill`, read by `serve`

    @classmethod
    def parse(cls, text: str) -> TraceSpec:
        """Parse 'journey=NAME,path=FILE[,tz=ZONE][,scale=X]'."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"--trace: expected key=value, got {part!r}")
            fields[key.strip()] = value.strip()
        unknown = set(fields) - {"journey", "path", "tz", "scale"}
        if unknown or "journey" not in fields or "path" not in fields:
            raise argparse.ArgumentTypeError(
                f"--trace {text!r}: need journey= and path=, optional tz= and scale="
            )
        return cls(
            journey=fields["journey"],
            path=fields["path"],
            tz=fields.get("tz", "UTC"),
            scale=float(fields.get("scale", "1")),
        )


class Trace:
    """A CSV trace (timestamp,value) plus its time shift."""

    def __init__(self, spec: TraceSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.tz)
        self.name = Path(spec.path).stem
        times: list[dt.datetime] = []
        values: list[float] = []
        with open(spec.path, newline="") as fh:
            for row in csv.DictReader(fh):
                times.append(dt.datetime.fromisoformat(row["timestamp"]))
                values.append(float(row["value"]))
        if len(times) < 2:
            raise SystemExit(f"{spec.path}: fewer than two rows")
        order = sorted(range(len(times)), key=times.__getitem__)
        self.times = [times[i] for i in order]
        self.values = [values[i] for i in order]
        # The step is the most common spacing (gaps make the mean useless).
        diffs: dict[dt.timedelta, int] = {}
        for a, b in zip(self.times, self.times[1:]):
            diffs[b - a] = diffs.get(b - a, 0) + 1
        self.step = max(diffs, key=diffs.__getitem__)
        self.first = self.times[0]
        self.end = self.times[-1] + self.step  # exclusive

    def choose_shift(self, now: dt.datetime, days: float, reserve_days: float) -> int:
        """Fewest whole weeks to add to the trace so 'now' is >= reserve_days before its end."""
        wall = now.astimezone(self.zone).replace(tzinfo=None)
        latest_anchor = self.end - dt.timedelta(days=reserve_days)
        weeks = max(0, math.ceil((wall - latest_anchor) / WEEK))
        if wall - weeks * WEEK - dt.timedelta(days=days) < self.first:
            raise SystemExit(
                f"{self.spec.path}: trace too short for {days} days of history"
                f" plus {reserve_days} days of replay"
            )
        return weeks

    def value_at(self, t: dt.datetime) -> float | None:
        """Demand rate at aware time t, or None if t falls in a gap of the trace."""
        src = t.astimezone(self.zone).replace(tzinfo=None) - self.spec.shift_weeks * WEEK
        if src >= self.end:  # past the trace: loop over its last weeks
            src -= LOOP_WEEKS * WEEK * math.ceil((src - self.end + self.step) / (LOOP_WEEKS * WEEK))
        i = bisect.bisect_right(self.times, src) - 1
        if i < 0 or src >= self.times[i] + self.step:
            return None
        return self.values[i] / self.step.total_seconds() * self.spec.scale

    def labels(self) -> str:
        return f'journey="{self.spec.journey}",trace="{self.name}"'


def load_state(path: Path) -> list[Trace]:
    return [Trace(TraceSpec(**d)) for d in json.loads(path.read_text())["traces"]]


# ---------------------------------------------------------------- backfill
def cmd_backfill(args: argparse.Namespace) -> None:
    now = (
        dt.datetime.fromtimestamp(args.end, dt.timezone.utc)
        if args.end is not None
        else dt.datetime.now(dt.timezone.utc)
    )
    traces = []
    for spec in args.trace:
        trace = Trace(spec)
        spec.shift_weeks = trace.choose_shift(now, args.days, args.reserve_days)
        traces.append(trace)

    # A regular grid of sample times, like a scrape every --resolution seconds.
    res = args.resolution
    end_s = int(now.timestamp())
    start_s = (end_s - int(args.days * 86400)) // res * res
    grid = range(start_s, end_s + 1, res)

    workdir = Path(tempfile.mkdtemp(prefix="backfill.", dir=args.tmpdir))
    try:
        om = workdir / "demand.om"
        counts = {}
        with om.open("w") as out:
            out.write(f"# HELP {METRIC} Demand replayed from a real trace (time-shifted).\n")
            out.write(f"# TYPE {METRIC} gauge\n")
            # Series one after another, each in time order (promtool needs that).
            for trace in traces:
                # job/instance as Prometheus attaches them when it scrapes the
                # exporter (up.sh relabels instance), so history and live
                # samples end up in the same series.
                labels = f'{trace.labels()},job="{args.job}",instance="{args.job}"'
                n = 0
                for s in grid:
                    v = trace.value_at(dt.datetime.fromtimestamp(s, dt.timezone.utc))
                    if v is not None:
                        out.write(f"{METRIC}{{{labels}}} {v:.6g} {s}\n")
                        n += 1
                counts[trace.spec.journey] = n
            out.write("# EOF\n")
        # Day-sized blocks instead of the default 2h: ~16 blocks rather than
        # ~180, so Prometheus has far less to open and compact at start-up.
        # (--max-block-duration is a hidden flag in promtool 2.42; it works.)
        cmd = [args.promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
               "--max-block-duration=24h", str(om), args.out]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    state = {
        "created": now.isoformat(),
        "days": args.days,
        "resolution_seconds": res,
        "traces": [asdict(t.spec) for t in traces],
    }
    Path(args.state).write_text(json.dumps(state, indent=2) + "\n")
    for trace in traces:
        shifted_from = now.astimezone(trace.zone).replace(tzinfo=None) - trace.spec.shift_weeks * WEEK
        print(
            f"backfill: {trace.spec.journey}: {counts[trace.spec.journey]} samples over"
            f" {args.days:g} days from {trace.name} (now = trace time {shifted_from:%Y-%m-%d %a %H:%M}"
            f" {trace.spec.tz}, shifted {trace.spec.shift_weeks} weeks)"
        )


# ------------------------------------------------------------------- serve
def render_metrics(traces: list[Trace]) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    lines = [
        f"# HELP {METRIC} Demand replayed from a real trace (time-shifted).",
        f"# TYPE {METRIC} gauge",
    ]
    for trace in traces:
        v = trace.value_at(now)
        if v is not None:  # in a gap of the trace the series is absent
            lines.append(f"{METRIC}{{{trace.labels()}}} {v:.6g}")
    lines += [
        f"# HELP {INFO_METRIC} Which trace feeds each journey, and how it is shifted and scaled.",
        f"# TYPE {INFO_METRIC} gauge",
    ]
    for trace in traces:
        s = trace.spec
        lines.append(
            f'{INFO_METRIC}{{{trace.labels()},timezone="{s.tz}",scale="{s.scale:g}",'
            f'shift_weeks="{s.shift_weeks}"}} 1'
        )
    return "\n".join(lines) + "\n"


def cmd_serve(args: argparse.Namespace) -> None:
    traces = load_state(Path(args.state))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path.split("?")[0] == "/metrics":
                body = render_metrics(traces).encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            elif self.path in ("/", "/healthz"):
                body, ctype = b"ok\n", "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *a: object) -> None:  # keep the log quiet
            pass

    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serve: demand exporter on http://{args.host}:{args.port}/metrics", flush=True)
    server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("backfill", help="write TSDB blocks for the last --days")
    b.add_argument("--trace", type=TraceSpec.parse, action="append", required=True,
                   help="journey=NAME,path=CSV[,tz=ZONE][,scale=X]  (repeatable)")
    b.add_argument("--out", required=True, help="Prometheus data dir (--storage.tsdb.path)")
    b.add_argument("--state", required=True, help="JSON file recording the shift, read by `serve`")
    b.add_argument("--days", type=float, default=15, help="history to backfill (default 15)")
    b.add_argument("--resolution", type=int, default=60, help="seconds between samples (default 60)")
    b.add_argument("--reserve-days", type=float, default=28,
                   help="real trace data to keep for live replay after now (default 28)")
    b.add_argument("--end", type=float, help="unix time the history ends at (default: now)")
    b.add_argument("--job", default="demand-replay",
                   help="job and instance label of the backfilled series; must match the scrape job")
    b.add_argument("--promtool", default=os.environ.get("PROMTOOL", "promtool"))
    b.add_argument("--tmpdir", help="where to write the temporary OpenMetrics file")
    b.set_defaults(func=cmd_backfill)

    s = sub.add_parser("serve", help="serve the current value on /metrics")
    s.add_argument("--state", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(func=cmd_serve)

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
