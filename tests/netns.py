"""Throw-away network namespaces for tests: unique names, always removed, with their processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


class Netns:
    """A named network namespace; ``run`` executes a command inside it.

    Processes started with ``spawn`` are killed (by pid, never by name) on ``close``.
    """

    def __init__(self, prefix: str = "ctt") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.procs: list[subprocess.Popen] = []
        self.run("ip", "link", "set", "lo", "up")

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, input: bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*argv), check=check, capture_output=True,
                              input=input, timeout=timeout)

    def spawn(self, *argv: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(self.cmd(*argv), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def enable_conntrack(self) -> None:
        """Conntrack tracks in a namespace only once a rule there uses it."""
        ruleset = (
            "table inet ctt { chain c { type filter hook prerouting priority 0; ct state new accept; };"
            " chain o { type filter hook output priority 0; ct state new accept; }; }"
        )
        self.run("nft", ruleset)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
