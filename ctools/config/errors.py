"""The one exception type of ctools.config."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration file the daemon must refuse.

    ``str(err)`` is ``"path:line:col: message"``; ``line``/``col`` are 1-based and point at the
    offending token (``col`` 0 when the error is not tied to a position, e.g. unreadable file).
    """

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        super().__init__(path, line, col, message)
        self.path = path
        self.line = line
        self.col = col
        self.message = message

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.col}: {self.message}"
