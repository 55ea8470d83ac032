"""Helpers for the daemon tests: start ours / the reference in a namespace, query, stop."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from netns import Netns

OURS = [sys.executable, "-m", "ctools.cli.conntrackd"]
REPO = Path(__file__).resolve().parent.parent


def implementation(name: str) -> list[str]:
    """argv[0:] of "ours" or "ref" (skips the test when the reference is not installed)."""
    import pytest
    from conftest import REF_CONNTRACKD

    if name == "ours":
        return OURS
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd (Debian package 'conntrackd') is not installed")
    return [REF_CONNTRACKD]


def env() -> dict:
    e = dict(os.environ)
    # no empty entry: "" in PYTHONPATH puts the current directory on every Python
    # client's import path (each `conntrackd -s` poll then stats its way through it)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH")) if p)
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


LINK4 = ("10.77.0.1", "10.77.0.2")
LINK6 = ("fd77::1", "fd77::2")
DEV = ("ctdva", "ctdvb")
FLOWS = [f"192.168.7.{i}" for i in (1, 2, 3)]


@contextlib.contextmanager
def veth_pair():
    """Two namespaces joined by a veth, conntrack on, addresses v4 and v6."""
    a, b = Netns("ctd"), Netns("ctd")
    try:
        subprocess.run(["ip", "link", "add", DEV[0], "netns", a.name, "type", "veth",
                        "peer", "name", DEV[1], "netns", b.name], check=True)
        for ns, dev, v4, v6 in ((a, DEV[0], LINK4[0], LINK6[0]), (b, DEV[1], LINK4[1], LINK6[1])):
            ns.enable_conntrack()
            ns.run("ip", "addr", "add", f"{v4}/24", "dev", dev)
            ns.run("ip", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ns.run("ip", "link", "set", dev, "up")
        # IPv6 link-local addresses are tentative for a moment (DAD): packets sent from
        # them meanwhile are lost, which would look like a replication failure
        for ns in (a, b):
            wait_for(lambda ns=ns: not ns.run("ip", "-6", "addr", "show", "tentative",
                                               check=False).stdout.strip(), 10, 0.1)
        yield a, b
    finally:
        a.close()
        b.close()


def channel(transport: str, side: int, v6: bool) -> str:
    me, peer = (LINK6 if v6 else LINK4)[side], (LINK6 if v6 else LINK4)[1 - side]
    fam = "IPv6" if v6 else "IPv4"
    if transport == "Multicast":
        if v6:
            return (f"Multicast {{\n IPv6_address ff02::77\n Interface {DEV[side]}\n"
                    " Group 3781\n}\n")
        return (f"Multicast {{\n IPv4_address 225.0.0.77\n IPv4_interface {me}\n"
                f" Group 3781\n Interface {DEV[side]}\n}}\n")
    return (f"{transport} {{\n {fam}_address {me}\n {fam}_Destination_Address {peer}\n"
            f" Port 3780\n Interface {DEV[side]}\n}}\n")


def config(mode: str, transport: str, side: int, v6: bool = False, mode_extra: str = "",
           general: str = "") -> str:
    """Body (after ``General {`` has started) of a replica's configuration."""
    timers = {"ALARM": "RefreshTime 2\n CacheTimeout 20\n"}.get(mode, "")
    # default HashSize: with <= 8192 the reference refuses -f after a commit (1.4.7 quirk)
    return (general + "  Filter From Userspace { Address Ignore { IPv4_address 10.77.0.0/24 "
            "IPv6_address fd77::/64 } }\n}\n"
            f"Sync {{\n Mode {mode} {{\n {timers}{mode_extra} }}\n"
            f"{channel(transport, side, v6)}}}\n")


def flows_in(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"src=(192\.168\.7\.\d+)[ <]", text)}


def kernel_flows(ns) -> set[str]:
    return flows_in(ns.run("conntrack", "-L", check=False).stdout.decode())


