"""Live interoperation of the bare protocol core with the real C conntrackd 1.4.7 (FT-FW over
UDP on the loopback of a throw-away namespace): handshake, our messages land in its external
cache, its messages decode into our events, and loss on our side of the link is repaired by
its NACKs — no malformed message counted on either side."""

from __future__ import annotations

import select
import socket
import time

import pytest
from pyroute2 import netns

from ctools.model import Entry, Tuple
from ctools.sync import Apply, ResyncRequested, SyncParams, make_sync

pytestmark = [pytest.mark.root, pytest.mark.reference]

PORT = 3791
CONF = """General {{
    LogFile {d}/log
    Syslog off
    LockFile {d}/lock
    UNIX {{ Path {d}/ctl }}
    Filter From Userspace {{
        Address Ignore {{ IPv4_address 127.0.0.0/8 }}
    }}
}}
Sync {{
    Mode FTFW {{ }}
    UDP {{
        IPv4_address 127.0.0.1
        IPv4_Destination_Address 127.0.0.2
        Port {port}
        Interface lo
    }}
}}
"""


def entry(i: int) -> Entry:
    return Entry(orig=Tuple(socket.AF_INET, f"10.55.{i // 250}.{i % 250 + 1}", "10.66.0.1", 6,
                            20000 + i, 443), status=0x18E, tcp_state=3, timeout=600, mark=0)


class Peer:
    """Our side: a bare FtfwSync core on 127.0.0.2 inside the namespace."""

    def __init__(self, ns) -> None:
        netns.pushns(ns.name)          # the socket lives in the namespace it was made in
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.2", PORT))
        finally:
            netns.popns()
        self.core = make_sync(SyncParams("ftfw", initial_seq=int(time.time()) - 100000,
                                         transport="udp", mtu=1500),
                              time.monotonic())
        self.internal: dict = {}
        self.applied: list = []
        self.drop = None
        self.sent = 0

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            for d in self.core.outgoing(now):
                self.sent += 1
                if self.drop is None or not self.drop(self.sent):
                    self.sock.sendto(d, ("127.0.0.1", PORT))
            if now >= end:
                return
            wait = max(0.0, min(self.core.next_deadline() or end, end) - now)
            ready, _, _ = select.select([self.sock], [], [], wait)
            now = time.monotonic()
            if ready:
                data, _addr = self.sock.recvfrom(65536)
                for ev in self.core.receive(data, now):
                    if isinstance(ev, Apply):
                        self.applied.append(ev)
                    elif isinstance(ev, ResyncRequested):
                        self.core.bulk_send(list(self.internal.values()), now)
            self.core.tick(now)

    def update(self, e: Entry) -> None:
        self.internal[e.key()] = e
        self.core.local_update("new", e, time.monotonic())


def c_external(ns, conntrackd, conf) -> str:
    return ns.run(conntrackd, "-C", str(conf), "-e").stdout.decode()


def c_network_stats(ns, conntrackd, conf) -> str:
    return ns.run(conntrackd, "-C", str(conf), "-s", "network").stdout.decode()


def malformed(stats_text: str) -> int:
    for line in stats_text.splitlines():
        if "Malformed messages" in line or "malformed" in line.lower():
            digits = [int(w) for w in line.replace(":", " ").split() if w.isdigit()]
            if digits:
                return digits[0]
    raise AssertionError(stats_text)


def test_our_core_and_the_c_daemon_replicate_both_ways(netns_factory, ref_conntrackd,
                                                      ref_conntrack, tmp_path):
    ns = netns_factory("ctsy")
    ns.enable_conntrack()
    conf = tmp_path / "c.conf"
    conf.write_text(CONF.format(d=tmp_path, port=PORT))
    ns.spawn(ref_conntrackd, "-C", str(conf))
    deadline = time.time() + 5
    while not (tmp_path / "ctl").exists() and time.time() < deadline:
        time.sleep(0.05)
    peer = Peer(ns)
    try:
        peer.pump(2.5)                                      # HELLO handshake
        assert peer.core.hello_state == "done"

        # ours -> C: entries appear in its external cache
        for i in range(40):
            peer.update(entry(i))
        peer.pump(1.5)
        ext = c_external(ns, ref_conntrackd, conf)
        assert sum("src=10.55." in line for line in ext.splitlines()) == 40, ext

        # C -> ours: kernel entries of the namespace arrive as Apply events
        for i in range(5):
            ns.run(ref_conntrack, "-I", "-p", "udp", "-s", f"10.77.0.{i + 1}", "-d", "10.78.0.1",
                   "--sport", str(3000 + i), "--dport", "53", "-t", "100")
        peer.pump(2.0)
        got = {ev.obj.orig.src for ev in peer.applied}
        assert {f"10.77.0.{i + 1}" for i in range(5)} <= got
        first = next(ev.obj for ev in peer.applied if ev.obj.orig.src == "10.77.0.1")
        assert (first.orig.proto, first.orig.sport, first.orig.dport) == (17, 3000, 53)

        # loss on our sending side: the C daemon NACKs and we repair it
        peer.drop = lambda n: n % 3 == 0
        for i in range(40, 640):
            peer.update(entry(i))
        peer.pump(0.3)
        peer.drop = None
        peer.pump(3.0)
        ext = c_external(ns, ref_conntrackd, conf)
        assert sum("src=10.55." in line for line in ext.splitlines()) == 640
        assert peer.core.stats.retransmitted > 0
        stats = c_network_stats(ns, ref_conntrackd, conf)
        assert malformed(stats) == 0, stats
        assert peer.core.stats.malformed == 0
    finally:
        peer.sock.close()
