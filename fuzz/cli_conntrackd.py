"""Harness: the conntrackd argument scanner on arbitrary argv.

Input: argv words separated by NUL bytes. Invariant: the scanner returns an invocation
(daemon mode or one request) or stops with exit status 0 (-h, -v, unknown option, as 1.4.7)
or 1 (invalid combination, unknown parameter word) — never another exception. Only the
scanner runs: nothing is started and no socket is opened.
"""

from __future__ import annotations

import contextlib
import io

from ctools.cli import conntrackd
from ctools.daemon.log import DaemonLog

CORPUS = "cli_conntrackd"
_SINK = io.StringIO()


def TestOneInput(data: bytes) -> None:
    words = data.decode("utf-8", errors="surrogateescape").split("\0")
    if words and words[-1] == "":
        words.pop()
    _SINK.seek(0)
    _SINK.truncate()
    with contextlib.redirect_stderr(_SINK), contextlib.redirect_stdout(_SINK):
        try:
            inv = conntrackd.scan(words, DaemonLog())
        except conntrackd._Exit as done:
            assert done.status in (0, 1), done.status
            return
    assert not (inv.daemon and inv.request is not None), "daemon mode with a request"
