"""Small helpers to act inside a named network namespace (sysctls, commands, sockets)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator

from pyroute2 import netns as _netns

NETNS_DIR = "/var/run/netns"


def exists(name: str) -> bool:
    """True when a named namespace ``name`` exists."""
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_names(prefix: str = "") -> list[str]:
    """Names of the named namespaces starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace ``name``.

    Sockets created in the body stay in that namespace after leaving it; /proc/sys/net
    files opened in the body are that namespace's sysctls.
    """
    _netns.pushns(name)
    try:
        yield
    finally:
        _netns.popns()


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created in namespace ``name`` (usable from anywhere afterwards)."""
    with inside(name):
        return socket.socket(family, kind, proto)


def sysctl(name: str, values: dict[str, str | int]) -> None:
    """Write sysctls (dotted keys) in namespace ``name``."""
    with inside(name):
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, "w") as fh:
                fh.write(str(value))


def read_sysctl(name: str, key: str) -> str:
    """Read one sysctl in namespace ``name``."""
    with inside(name):
        with open("/proc/sys/" + key.replace(".", "/")) as fh:
            return fh.read().strip()


def cmd(name: str, *argv: str) -> list[str]:
    """argv that runs ``argv`` inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]


def run(name: str, *argv: str, check: bool = True, input: bytes | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command inside namespace ``name`` and capture its output."""
    return subprocess.run(cmd(name, *argv), check=check, capture_output=True, input=input,
                          timeout=timeout)


def nft(name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Load an nft script (text) in namespace ``name``."""
    return run(name, "nft", "-f", "-", input=script.encode(), check=check)
