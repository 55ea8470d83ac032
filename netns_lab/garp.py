"""Announce virtual IPs after taking them over: gratuitous ARP (IPv4) and unsolicited
neighbour advertisements (IPv6), sent on raw AF_PACKET sockets.

    python -m netns_lab.garp lan0=10.11.0.1 lan0=fd00:11::1 ...

Kept free of heavy imports: it runs inside the fail-over path.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import sys

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed


SIOCGIFHWADDR = 0x8927


def _mac(sock: socket.socket, ifname: str) -> bytes:
    # ask the socket's own namespace (/sys may belong to another one)
    req = struct.pack("256s", ifname.encode()[:15])
    return fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, req)[18:24]


def garp_frame(mac: bytes, addr: str) -> bytes:
    """A gratuitous ARP request (sender = target = ``addr``), broadcast."""
    ip = socket.inet_aton(addr)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
    return BCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def una_frame(mac: bytes, addr: str) -> bytes:
    """An unsolicited neighbour advertisement (override set) for ``addr`` to all nodes."""
    src = ipaddress.IPv6Address(addr).packed
    body = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, src, 2, 1, mac)
    pseudo = src + ALL_NODES + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", _csum(pseudo + body)) + body[4:]
    ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(body), 58, 255, src, ALL_NODES)
    return ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


def announce(pairs: list[tuple[str, str]], repeat: int = 2) -> int:
    """Send the announcements; return how many frames went out."""
    sent = 0
    socks: dict[str, socket.socket] = {}
    try:
        for _ in range(repeat):
            for ifname, addr in pairs:
                if ifname not in socks:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                    s.bind((ifname, 0))
                    socks[ifname] = s
                mac = _mac(socks[ifname], ifname)
                frame = una_frame(mac, addr) if ":" in addr else garp_frame(mac, addr)
                socks[ifname].send(frame)
                sent += 1
    finally:
        for s in socks.values():
            s.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pairs = []
    for arg in args:
        ifname, _, addr = arg.partition("=")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            print(f"garp: expected IFACE=ADDRESS, got {arg!r}", file=sys.stderr)
            return 2
        pairs.append((ifname, addr))
    try:
        announce(pairs)
    except OSError as exc:
        print(f"garp: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
