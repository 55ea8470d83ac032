"""Helpers for the daemon tests: start ours / the reference in a namespace, query, stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

OURS = [sys.executable, "-m", "ctools.cli.conntrackd"]
REPO = Path(__file__).resolve().parent.parent


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("NOTIFY_SOCKET", None)
    return e


class Replica:
    """One daemon (ours or the reference) with its own config, socket, lock and log."""

    def __init__(self, ns, argv0: list[str], workdir: Path, name: str, body: str) -> None:
        self.ns = ns
        self.argv0 = argv0
        self.dir = workdir
        self.name = name
        self.conf = workdir / f"{name}.conf"
        self.sock = workdir / f"{name}.sock"
        self.lock = workdir / f"{name}.lock"
        self.log = workdir / f"{name}.log"
        self.conf.write_text(
            "General {\n"
            f"  LockFile {self.lock}\n  LogFile {self.log}\n"
            f"  UNIX {{ Path {self.sock} }}\n"
            "  Syslog off\n"
            f"{body}")
        self.proc = None

    @property
    def ours(self) -> bool:
        return self.argv0 is OURS or self.argv0 == OURS

    def start(self, timeout: float = 10) -> None:
        self.proc = self.ns.spawn(*self.argv0, "-C", str(self.conf), env=env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.exists() and self.ask("-s", "runtime", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def ask(self, *args: str, check: bool = True, timeout: float = 60):
        return subprocess.run(self.ns.cmd(*self.argv0, "-C", str(self.conf), *args),
                              capture_output=True, text=True, env=env(), check=check,
                              timeout=timeout)

    def out(self, *args: str) -> str:
        return self.ask(*args).stdout

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.ask("-k", check=False)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def wait_for(pred, timeout: float = 10, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)
