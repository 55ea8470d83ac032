"""Our runner for conformance case files in the upstream conntrack testsuite format.

Format (spec §10): lines starting with ``#`` or a space are comments; every other line is
``TEXT ; CODE [ARG]``. ``OK``/``BAD`` run ``<conntrack> TEXT`` and expect exit status 0 /
non-zero; ``|ARG`` pipes ``<conntrack> TEXT`` (through ``sed "ARG"`` if given) into the next
command; a line ending right after ``;`` is a stdin data line for the next command. Commands
go through ``/bin/sh -c`` like the C runner's ``system()``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass


class MalformedCase(ValueError):
    """A non-comment line without ``;``."""


@dataclass
class Step:
    """One executed command: where it came from, the shell text and the expectation."""

    file: str
    line: int
    command: str
    expect_ok: bool
    passed: bool | None = None
    status: int | None = None


def parse_case_file(name: str, text: str, conntrack: str) -> list[Step]:
    """Turn a case file into the shell commands the C runner would execute."""
    steps: list[Step] = []
    pipe = ""          # pending "<conntrack> X | sed ... | " prefix
    stdin: list[str] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if raw == "" and number == len(text.split("\n")):
            break      # the newline at the end of the file
        if raw.startswith(("#", " ")):
            continue
        if ";" not in raw:
            raise MalformedCase(f"malformed file {name} at line {number}")
        body, _, rest = raw.partition(";")
        rest = rest.lstrip(" \t")
        code, arg = rest[:1], rest[1:].strip(" \t")
        if code == "":
            stdin.append(body)
            continue
        if code == "|":
            pipe += f"{conntrack} {body} | " + (f'sed "{arg}" | ' if arg else "")
            continue
        prefix = ""
        if stdin:
            prefix = 'echo "' + "\n".join(stdin) + '" | '
            stdin = []
        command = prefix + pipe + f"{conntrack} {body}"
        pipe = ""
        steps.append(Step(name, number, command, code == "O"))
    return steps


def run_steps(steps: list[Step], shell: Callable[[str], int]) -> None:
    """Execute in order; ``shell`` runs one command line and returns its exit status."""
    for step in steps:
        status = shell(step.command)
        step.status = status
        step.passed = (status == 0) if step.expect_ok else (status != 0)


def netns_shell(ns_name: str, timeout: float = 60) -> Callable[[str], int]:
    """A ``shell`` for :func:`run_steps` executing inside a network namespace."""
    def shell(command: str) -> int:
        proc = subprocess.run(["ip", "netns", "exec", ns_name, "/bin/sh", "-c", command],
                              capture_output=True, timeout=timeout)
        return proc.returncode
    return shell


def report(steps: list[Step]) -> str:
    """The C runner's summary line: ``OK: n BAD: m``."""
    ok = sum(1 for s in steps if s.passed)
    return f"OK: {ok} BAD: {len(steps) - ok}"
