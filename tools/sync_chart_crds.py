#!/usr/bin/env python3
"""Copy the generated CRDs (crds/) into the Helm chart (helm/healthscale/crds/), or check the copy.

One source: the pydantic models generate crds/ (`make crds`, checked by `make crds-check`); this
script makes the chart's crds/ byte-identical copies of them. With --check it changes nothing and
exits 1, naming the files, when the chart's copies are missing, differ, or are left over from a
CRD that crds/ no longer has.

crds/ holds the models' CRDs and Kopf's peering CRDs (written by hand); the chart gets all of them.

Usage: tools/sync_chart_crds.py [--check]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "helm" / "healthscale" / "crds"


def expected() -> dict[str, bytes]:
    """The chart's generated CRD files by name, with their exact contents."""
    return {path.name: path.read_bytes() for path in sorted(SOURCE.glob("*.yaml"))}


def drift() -> list[str]:
    """What is wrong with the chart's copies, one line per file; empty when in sync."""
    wanted = expected()
    problems = []
    for name, content in wanted.items():
        copy = CHART_CRDS / name
        if not copy.is_file():
            problems.append(f"{copy.relative_to(ROOT)}: missing")
        elif copy.read_bytes() != content:
            problems.append(f"{copy.relative_to(ROOT)}: differs from crds/{name}")
    for copy in sorted(CHART_CRDS.glob("*.yaml")):
        if copy.name not in wanted:
            problems.append(f"{copy.relative_to(ROOT)}: not in crds/ (a removed CRD?)")
    return problems


def sync() -> list[str]:
    CHART_CRDS.mkdir(parents=True, exist_ok=True)
    wanted = expected()
    changed = []
    for name, content in wanted.items():
        copy = CHART_CRDS / name
        if not copy.is_file() or copy.read_bytes() != content:
            copy.write_bytes(content)
            changed.append(f"wrote {copy.relative_to(ROOT)}")
    for copy in sorted(CHART_CRDS.glob("*.yaml")):
        if copy.name not in wanted:
            copy.unlink()
            changed.append(f"removed {copy.relative_to(ROOT)}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift instead of writing")
    arguments = parser.parse_args(argv)
    if not expected():
        print(f"no CRDs in {SOURCE}; run `make crds` first", file=sys.stderr)
        return 1
    if arguments.check:
        problems = drift()
        if problems:
            print("the chart's CRDs are out of date; run tools/sync_chart_crds.py:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print(f"{CHART_CRDS.relative_to(ROOT)} matches crds/")
        return 0
    changed = sync()
    print("\n".join(changed) if changed else f"{CHART_CRDS.relative_to(ROOT)} already matches crds/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
