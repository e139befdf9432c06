"""What bench/karpenter_timeline.py and bench/deferral_timeline.py share: turning a test's
timeline JSON into a figure and a BENCHMARKS.md section (the command line), and putting that
section in place."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"


def replace_section(benchmarks: pathlib.Path, header: str, after: str, lines: list[str]) -> None:
    """Put the section in BENCHMARKS.md: in place of the one under ``header``, else after the section
    ``after`` (or at the end)."""
    text = benchmarks.read_text()
    section = "\n".join(lines).rstrip("\n") + "\n\n"
    if header in text:
        start = text.index(header)
        following = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[following + 1:] if following >= 0 else "")
    elif after in text and (anchor := text.find("\n## ", text.index(after) + len(after))) >= 0:
        text = text[:anchor + 1] + section + text[anchor + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    benchmarks.write_text(text.rstrip("\n") + "\n")


def main(description: str, default_input: pathlib.Path, figure: pathlib.Path, header: str, after: str,
         plot: Callable[[dict[str, Any], pathlib.Path], None],
         markdown: Callable[[dict[str, Any], pathlib.Path], list[str]]) -> int:
    """The scripts' command line: read the timelines, draw the figure, print or place the section."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timelines", type=pathlib.Path, nargs="?", default=default_input)
    parser.add_argument("--figure", type=pathlib.Path, default=figure)
    parser.add_argument("--markdown", type=pathlib.Path, help="write the section here")
    parser.add_argument("--benchmarks", action="store_true", help="replace the section in BENCHMARKS.md")
    arguments = parser.parse_args()
    if not arguments.timelines.exists():
        print(f"{arguments.timelines} not found: run the test first (see --help)", file=sys.stderr)
        return 1
    data = json.loads(arguments.timelines.read_text())
    plot(data, arguments.figure)
    lines = markdown(data, arguments.figure.resolve())
    if arguments.markdown:
        arguments.markdown.write_text("\n".join(lines))
    if arguments.benchmarks:
        replace_section(BENCHMARKS, header, after, lines)
    if not arguments.markdown and not arguments.benchmarks:
        print("\n".join(lines))
    return 0
