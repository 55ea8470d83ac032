"""Timestamp address changes in a namespace (when did the VIPs really go up?)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time

from . import nsutil

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR = 20
RTM_DELADDR = 21
NLMSG = struct.Struct("=IHHII")
IFADDRMSG = struct.Struct("=BBBBI")
RTATTR = struct.Struct("=HH")


def parse_addr_events(data: bytes) -> list[tuple[str, str]]:
    """(``"new"``/``"del"``, address) for every address message in a netlink datagram."""
    out = []
    off = 0
    while off + NLMSG.size <= len(data):
        length, mtype, _f, _s, _p = NLMSG.unpack_from(data, off)
        if length < NLMSG.size:
            break
        if mtype in (RTM_NEWADDR, RTM_DELADDR):
            body = off + NLMSG.size
            family = data[body]
            a = body + IFADDRMSG.size
            end = off + length
            addr = None
            while a + RTATTR.size <= end:
                alen, atype = RTATTR.unpack_from(data, a)
                if alen < RTATTR.size:
                    break
                if atype in (1, 2):          # IFA_ADDRESS / IFA_LOCAL
                    raw = data[a + 4:a + alen]
                    if family == socket.AF_INET and len(raw) == 4:
                        addr = str(ipaddress.IPv4Address(raw))
                    elif family == socket.AF_INET6 and len(raw) == 16:
                        addr = str(ipaddress.IPv6Address(raw))
                a += (alen + 3) & ~3
            if addr:
                out.append(("new" if mtype == RTM_NEWADDR else "del", addr))
        off += (length + 3) & ~3
    return out


class AddrWatch:
    """Background listener: ``events`` holds (wall-clock time, kind, address)."""

    def __init__(self, ns: str) -> None:
        self.sock = nsutil.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self.sock.settimeout(0.2)
        self.events: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ctlab-addrwatch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time()
            for kind, addr in parse_addr_events(data):
                self.events.append((now, kind, addr))

    def first(self, kind: str, addrs: set[str], after: float) -> float | None:
        """Wall-clock time of the first ``kind`` event for one of ``addrs`` after ``after``."""
        for t, k, a in self.events:
            if t >= after and k == kind and a in addrs:
                return t
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.sock.close()
