"""FT-FW under heavy loss between real daemons, mixed with the C daemon: 30 % (20 % when the
C daemon sends) of the sync datagrams dropped in *both* directions (nftables on each side's output, so data, re-sends,
ACKs, NACKs and our tail-loss probes are all lost alike). A burst of flows, then deletions of
part of them, must reach the peer's external cache exactly, for ours -> C, C -> ours and
ours -> ours. (The speed of it is pinned in the simulator: tests/test_sync_ftfw_probes.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from conftest import need_root
from daemon_helpers import Replica, config, env, implementation, veth_pair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.reference]

N_FLOWS = 1500
N_DELETED = 500
# the burst's events must not overrun the event socket (that would wait for the 30 s
# overrun resync, which is not what this test is about)
GENERAL = "  NetlinkBufferSize 16777216\n  NetlinkBufferSizeMaxGrowth 134217728\n"

# flows 172.20.x.y:1024+ -> 192.168.9.1:443, created/deleted through ctnetlink in one go
KERNEL = r"""
import sys
from ctools.daemon.kernel import RequestSocket, inverse_tuple
from ctools.model import Entry, Tuple, IPS_ASSURED, IPS_SEEN_REPLY, IPS_CONFIRMED
op, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
es = []
for j in range(lo, hi):
    t = Tuple(family=2, src=f"172.20.{j >> 8 & 255}.{j & 255}", dst="192.168.9.1", proto=6,
              sport=1024 + j, dport=443)
    es.append(Entry(orig=t, reply=inverse_tuple(t), timeout=3600, tcp_state=3,
                    status=IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED))
sock = RequestSocket()
errs = (sock.create if op == "create" else sock.delete)(es)
sys.exit(1 if errs else 0)
"""


@pytest.fixture(scope="module")
def link():
    need_root()
    with veth_pair() as pair:
        yield pair


def _lossy(ns, percent: int) -> None:
    ns.run("nft", "delete", "table", "inet", "ctftwloss", check=False)
    if percent:
        ns.run("nft", f"table inet ctftwloss {{ chain o {{ type filter hook output priority 0; "
                      f"udp dport 3780 numgen random mod 100 < {percent} drop; }}; }}")


def _kernel(ns, op: str, lo: int, hi: int) -> None:
    subprocess.run(ns.cmd(sys.executable, "-c", KERNEL, op, str(lo), str(hi)), env=env(),
                   check=True, capture_output=True, timeout=60)


def _external_flows(rx: Replica) -> set[str]:
    text = rx.ask("-e", check=False, timeout=30).stdout
    return set(re.findall(r"src=(172\.20\.\d+\.\d+) ", text))


def _expected(lo: int, hi: int) -> set[str]:
    return {f"172.20.{j >> 8 & 255}.{j & 255}" for j in range(lo, hi)}


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours"),
                                             ("ours", "ours")],
                         ids=["ours-to-ref", "ref-to-ours", "ours-to-ours"])
def test_burst_and_deletions_converge_with_heavy_loss_both_ways(link, tmp_path, sender,
                                                                      receiver):
    a, b = link
    for ns in link:
        ns.run("conntrack", "-F", check=False)
    tx = Replica(a, implementation(sender), tmp_path, "tx", config("FTFW", "UDP", 0, general=GENERAL))
    rx = Replica(b, implementation(receiver), tmp_path, "rx", config("FTFW", "UDP", 1, general=GENERAL))
    try:
        rx.start()
        tx.start()
        # let the HELLO handshake finish on a clean link (a HELLO stretch is not NACKed by
        # the C rules: spec §4.6)
        time.sleep(2.5)
        # The C sender has no tail-loss probes: each lost tail (of a burst, of a re-send, of
        # a NACK) waits for its 1 s alive timer, a chain that at 30 % both ways now and then
        # outlasts any sane test timeout. It gets 20 %; our sender 30 %.
        for ns in link:
            _lossy(ns, 30 if sender == "ours" else 20)
        _kernel(a, "create", 0, N_FLOWS)
        want = _expected(0, N_FLOWS)
        got = wait_for(lambda: _external_flows(rx) == want, 60, 0.5)
        assert got, (len(_external_flows(rx)), tx.ask("-s", "network", check=False).stdout)
        _kernel(a, "delete", 0, N_DELETED)
        want = _expected(N_DELETED, N_FLOWS)
        got = wait_for(lambda: _external_flows(rx) == want, 60, 0.5)
        assert got, (len(_external_flows(rx)), rx.ask("-s", "network", check=False).stdout)
    finally:
        for ns in link:
            _lossy(ns, 0)
        tx.stop()
        rx.stop()
