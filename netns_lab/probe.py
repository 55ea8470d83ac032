"""Crafted traffic against the replicas' rule-set (scapy builds the packets).

Valid openers (TCP SYN, UDP, ICMP echo) must reach the server; invalid packets (a
mid-stream ACK or RST of no known flow, SYN+FIN, no flags, XMAS, an echo reply nobody
asked for) must be dropped by the master and counted by its ``invalid``/``bad_new_tcp``
counters. Sent from a raw socket in the client namespace, watched from an AF_PACKET socket
in the server namespace.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from . import nsutil, ruleset
from .config import LabConfig

ETH_P_IP = 0x0800


def probe_cases(src: str, dst: str) -> list[tuple[str, str, bytes, tuple]]:
    """(name, expectation 'pass'/'drop', packet bytes, match key) for each probe."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw, raw

    cases = []
    base = 40000
    tcp_cases = [("tcp-syn", "pass", "S"), ("tcp-ack-unknown-flow", "drop", "A"),
                 ("tcp-psh-ack-unknown-flow", "drop", "PA"), ("tcp-rst-unknown-flow", "drop", "R"),
                 ("tcp-syn-fin", "drop", "SF"), ("tcp-no-flags", "drop", ""),
                 ("tcp-xmas", "drop", "FPU"), ("tcp-syn-ack-unknown", "drop", "SA")]
    for n, (name, expect, flags) in enumerate(tcp_cases):
        sport = base + n
        pkt = IP(src=src, dst=dst, ttl=64) / TCP(sport=sport, dport=5999, flags=flags,
                                                  seq=1000 + n, ack=(5000 if "A" in flags
                                                                     else 0))
        cases.append((name, expect, raw(pkt), ("tcp", sport)))
    sport = base + 50
    cases.append(("udp-new", "pass", raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=5998)
                                         / Raw(b"ctlab probe")), ("udp", sport)))
    cases.append(("icmp-echo", "pass", raw(IP(src=src, dst=dst) / ICMP(type=8, id=4242, seq=1)),
                  ("icmp", 4242)))
    cases.append(("icmp-echo-reply-unsolicited", "drop",
                  raw(IP(src=src, dst=dst) / ICMP(type=0, id=4343, seq=1)), ("icmp", 4343)))
    return cases


def _key_of(frame: bytes) -> tuple | None:
    if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    l4 = 14 + ihl
    if proto == 6 and len(frame) >= l4 + 4:
        return ("tcp", struct.unpack_from("!H", frame, l4)[0])
    if proto == 17 and len(frame) >= l4 + 4:
        return ("udp", struct.unpack_from("!H", frame, l4)[0])
    if proto == 1 and len(frame) >= l4 + 8:
        return ("icmp", struct.unpack_from("!H", frame, l4 + 4)[0])
    return None


def probe(client_ns: str, server_ns: str, fw_ns: str, src: str, dst: str,
          wait: float = 0.5) -> dict:
    """Send every probe and report which ones reached the server."""
    cases = probe_cases(src, dst)
    sniff = nsutil.socket_in(server_ns, socket.AF_PACKET, socket.SOCK_RAW,
                             socket.htons(ETH_P_IP))
    sniff.bind(("eth0", 0))
    sniff.setblocking(False)
    tx = nsutil.socket_in(client_ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    before = ruleset.counters(fw_ns)
    try:
        for _name, _expect, pkt, _key in cases:
            tx.sendto(pkt, (dst, 0))
            time.sleep(0.01)
        seen = set()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                frame = sniff.recv(65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            key = _key_of(frame)
            if key:
                seen.add(key)
    finally:
        tx.close()
        sniff.close()
    after = ruleset.counters(fw_ns)
    results = []
    for name, expect, _pkt, key in cases:
        arrived = key in seen
        results.append({"name": name, "expect": expect, "arrived": arrived,
                        "ok": arrived == (expect == "pass")})
    return {"cases": results,
            "dropped_invalid": after["invalid_drops"] - before["invalid_drops"],
            "dropped_bad_new_tcp": after["bad_new_tcp"] - before["bad_new_tcp"],
            "ok": all(r["ok"] for r in results)}


def run_probe(cfg: LabConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Build a lab, probe the master's rule-set, tear the lab down."""
    from .lab import Lab

    with Lab(cfg, progress=progress) as lab:
        topo = lab.topo
        return probe(topo.clients[0], topo.servers[0], topo.fw[lab.master],
                     topo.client_addr(1), topo.server_addr(1))
