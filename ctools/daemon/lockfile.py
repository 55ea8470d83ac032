"""The lock file: created exclusively at start, removed at clean exit; no stale detection.

Like the reference daemon we write nothing into it and take no flock, so scripts that
delete a stale file (primary-backup.sh) keep working.
"""

from __future__ import annotations

import os

DEFAULT_LOCKFILE = "/var/lock/conntrackd.lock"


class LockExists(Exception):
    """Another daemon (or a stale file) holds the lock."""


class LockFile:
    """``acquire()`` creates the file with O_EXCL; ``release()`` removes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError as exc:
            raise LockExists(self.path) from exc
        os.close(fd)
        self.held = True

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.held = False
