"""``healthscale`` run in-process for the CLI tests: its exit code and what it printed."""

from __future__ import annotations

import contextlib
import dataclasses
import io

from healthscale import cli


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run(*arguments: str) -> Outcome:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(arguments))
    return Outcome(code, stdout.getvalue(), stderr.getvalue())
