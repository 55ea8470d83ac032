"""Interface facts for the dedicated links: flags (UP/RUNNING), MTU, index."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFF_RUNNING = 0x40
_IFREQ = struct.Struct("16sH14x")
_IFREQ_INT = struct.Struct("16si12x")


def _ioctl(name: str, req: int, fmt: struct.Struct) -> int | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), req, fmt.pack(name.encode()[:15], 0))
    except OSError:
        return None
    return fmt.unpack(raw)[1]


def if_flags(name: str) -> int | None:
    """Interface flags, or None if it does not exist."""
    return _ioctl(name, SIOCGIFFLAGS, _IFREQ)


def if_mtu(name: str) -> int | None:
    return _ioctl(name, SIOCGIFMTU, _IFREQ_INT)


def if_index(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def link_status(name: str) -> str:
    """RUNNING (up with carrier), NO-CARRIER (up, no carrier) or DOWN."""
    flags = if_flags(name)
    if flags is None or not flags & IFF_UP:
        return "DOWN"
    return "RUNNING" if flags & IFF_RUNNING else "NO-CARRIER"


def link_usable(name: str) -> bool:
    """Active link must be both UP and RUNNING."""
    flags = if_flags(name) or 0
    return bool(flags & IFF_UP and flags & IFF_RUNNING)


def link_candidate(name: str) -> bool:
    """A fail-over target needs UP or RUNNING (reference behaviour)."""
    flags = if_flags(name) or 0
    return bool(flags & (IFF_UP | IFF_RUNNING))
