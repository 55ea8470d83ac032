"""The run trace: one text line per simulated happening, hashed as it is written.

Two runs with the same seed must produce byte-identical traces; the SHA-256 printed at the end
is how a test (or a human) proves it without storing the trace.
"""

from __future__ import annotations

import hashlib
from typing import TextIO


class Trace:
    """Accumulates trace lines into a running SHA-256; optionally mirrors them to a stream."""

    __slots__ = ("_hash", "_out", "lines")

    def __init__(self, out: TextIO | None = None) -> None:
        self._hash = hashlib.sha256()
        self._out = out
        self.lines = 0

    def emit(self, now_us: int, what: str) -> None:
        """Record ``what`` at virtual time ``now_us`` (microseconds)."""
        line = f"{now_us // 1_000_000}.{now_us % 1_000_000:06d} {what}\n"
        self._hash.update(line.encode())
        self.lines += 1
        if self._out is not None:
            self._out.write(line)

    def sha256(self) -> str:
        """Hex digest of every line emitted so far."""
        return self._hash.hexdigest()
