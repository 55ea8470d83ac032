"""Daemon logging in the reference line format: ``[CTIME] (pid=PID) [LEVEL] MESSAGE``.

Before the log is set up (and in console mode) lines go to the terminal: info/notice on
stdout, everything else on stderr.  In daemon mode only the LogFile and syslog get them.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

INFO = "info"
NOTICE = "notice"
WARNING = "warning"
ERROR = "ERROR"

_SYSLOG_PRIO = {INFO: 6, NOTICE: 5, WARNING: 4, ERROR: 3}
_FACILITIES = {"daemon": 3 << 3, **{f"local{i}": (16 + i) << 3 for i in range(8)}}


def ctime(when: float | None = None) -> str:
    """The 24-character C ctime() text (local time, no newline)."""
    return time.ctime(when)


class DaemonLog:
    """Where daemon messages go; ``log(level, text)`` writes one line to each destination."""

    def __init__(self) -> None:
        self.console = True
        self.file: TextIO | None = None
        self.syslog_facility: int | None = None

    def open_file(self, path: str) -> None:
        """Open LogFile for appending, line buffered (raises OSError)."""
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the daemon

    def open_syslog(self, facility: str) -> None:
        import syslog

        self.syslog_facility = _FACILITIES.get(facility, _FACILITIES["daemon"])
        syslog.openlog("conntrack-tools", syslog.LOG_PID, self.syslog_facility)

    def line(self, level: str, text: str) -> str:
        return f"[{ctime()}] (pid={os.getpid()}) [{level}] {text}\n"

    def log(self, level: str, text: str) -> None:
        """Write one message to every active destination."""
        line = self.line(level, text)
        if self.console:
            stream = sys.stdout if level in (INFO, NOTICE) else sys.stderr
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass
        if self.file is not None:
            try:
                self.file.write(line)
            except OSError:
                pass
        if self.syslog_facility is not None:
            import syslog

            syslog.syslog(_SYSLOG_PRIO.get(level, 6), text)

    def entry(self, text: str, level: str = ERROR) -> None:
        """Write ``CTIME\\t<entry>`` to the log file (used after commit/inject errors)."""
        if self.file is not None:
            try:
                self.file.write(f"{ctime()}\t{text}\n")
            except OSError:
                pass
        if self.syslog_facility is not None:
            import syslog

            syslog.syslog(_SYSLOG_PRIO.get(level, 3), text)

    def info(self, text: str) -> None:
        self.log(INFO, text)

    def notice(self, text: str) -> None:
        self.log(NOTICE, text)

    def warning(self, text: str) -> None:
        self.log(WARNING, text)

    def error(self, text: str) -> None:
        self.log(ERROR, text)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
