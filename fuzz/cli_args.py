"""Harness: the conntrack argument parser on arbitrary argv (and -R batch lines).

Input: argv words separated by NUL bytes (decoded like the OS decodes argv, with
surrogateescape). Invariant: every argv is either accepted (a Request) or rejected with our
one diagnostic type ``CtError`` carrying a message and exit status 1 or 2 — never another
exception, i.e. never a traceback for the user. The same words joined by blanks are also
fed to the -R line splitter and parser. Nothing is executed: only ``parse`` runs.
"""

from __future__ import annotations

import contextlib
import io

from ctools.cli._ct_args import parse
from ctools.cli._ct_errors import CtError
from ctools.cli.conntrack import split_line

CORPUS = "cli"
_SINK = io.StringIO()


def _check(argv: list[str]) -> None:
    try:
        parse(["conntrack", *argv])
    except CtError as exc:
        assert exc.msg, "a diagnostic without text"
        assert exc.status in (1, 2), exc.status


def TestOneInput(data: bytes) -> None:
    words = data.decode("utf-8", errors="surrogateescape").split("\0")
    if words and words[-1] == "":
        words.pop()
    _SINK.seek(0)
    _SINK.truncate()
    with contextlib.redirect_stderr(_SINK), contextlib.redirect_stdout(_SINK):
        _check(words)
        try:
            line = split_line(" ".join(words))
        except CtError:
            return
        _check(line)
