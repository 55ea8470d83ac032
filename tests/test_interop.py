"""Interop: our conntrackd and the reference replicate to each other in both directions.

One namespace pair joined by a veth for the whole module; every test starts two fresh
replicas (sender and receiver) on it. For each mode x transport x direction: flows created
in the sender's kernel reach the receiver's external cache, updates and deletions follow,
``-c`` writes them into the receiver's kernel, ``-f``/``-n``/``-B`` resync, and a restarted
receiver re-converges.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import REF_CONNTRACKD, need_root
from daemon_helpers import (
    FLOWS,
    OURS,
    Replica,
    config,
    flows_in,
    implementation,
    kernel_flows,
    veth_pair,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.reference]

@pytest.fixture(scope="module")
def link():
    need_root()
    with veth_pair() as pair:
        yield pair


_flows = flows_in
_kernel_flows = kernel_flows


class Pair:
    """Sender in namespace a, receiver in namespace b."""

    def __init__(self, link, tmp_path, sender: str, receiver: str, mode: str, transport: str,
                 v6: bool = False, mode_extra: str = "") -> None:
        self.a, self.b = link
        for ns in link:
            ns.run("conntrack", "-F", check=False)
        self.tx = Replica(self.a, implementation(sender), tmp_path, "tx",
                          config(mode, transport, 0, v6, mode_extra))
        self.rx = Replica(self.b, implementation(receiver), tmp_path, "rx",
                          config(mode, transport, 1, v6, mode_extra))
        self.mode = mode

    def start(self) -> None:
        self.rx.start()
        self.tx.start()

    def stop(self) -> None:
        for r in (self.tx, self.rx):
            r.stop()

    def add_flows(self, sources=FLOWS) -> None:
        for src in sources:
            self.a.run("conntrack", "-I", "-s", src, "-d", "192.168.8.1", "-p", "tcp",
                       "--sport", "1000", "--dport", "80", "--state", "ESTABLISHED",
                       "-t", "300", "-u", "SEEN_REPLY,ASSURED")

    def diagnose(self) -> str:
        out = []
        for r in (self.tx, self.rx):
            out.append(f"--- {r.name} log\n{r.log_text()}")
            out.append(r.ask("-s", "network", check=False).stdout)
        return "\n".join(out)

    def external(self) -> str:
        return self.rx.out("-e")

    def wait_external(self, want: set[str], timeout: float = 8) -> set[str]:
        got = wait_for(lambda: _flows(self.external()) == want, timeout, 0.2)
        return _flows(self.external()) if not got else want


def _exercise(pair: Pair) -> None:
    pair.start()
    try:
        pair.add_flows()
        assert pair.wait_external(set(FLOWS)) == set(FLOWS)
        # an update follows (new mark)
        pair.a.run("conntrack", "-U", "-s", FLOWS[1], "-p", "tcp", "-m", "42", check=False)
        assert wait_for(lambda: "mark=42" in pair.external(), 8, 0.2), pair.external()
        # a deletion follows (ALARM has no DEL: the entry expires instead — not waited for)
        pair.a.run("conntrack", "-D", "-s", FLOWS[0], check=False)
        left = set(FLOWS[1:])
        if pair.mode != "ALARM":
            assert pair.wait_external(left) == left
        # commit writes the external cache into the receiver's kernel
        pair.rx.ask("-c")
        assert wait_for(lambda: left <= _kernel_flows(pair.b), 5, 0.2), _kernel_flows(pair.b)
        if pair.mode != "ALARM":
            # the receiver asks for everything again; first let FT-FW's sender see its
            # messages acknowledged (ACKs leave about once a second), or a retransmission
            # still in flight refills the cache right after the flush
            if pair.mode == "FTFW":
                wait_for(lambda: "object ->" not in pair.tx.out("-s", "rsqueue"), 5, 0.2)
            pair.rx.ask("-f", "external")
            assert _flows(pair.external()) == set(), pair.diagnose()
            pair.rx.ask("-n")
            assert pair.wait_external(left) == left
            # the sender pushes everything
            pair.rx.ask("-f", "external")
            pair.tx.ask("-B")
            assert pair.wait_external(left) == left
        # a restarted receiver re-converges (FT-FW/NOTRACK after asking; ALARM by refresh)
        assert pair.rx.stop() == 0
        pair.rx.start()
        if pair.mode == "ALARM":
            assert pair.wait_external(left, timeout=10) == left, pair.diagnose()
        else:
            # the first messages of a restarted peer may be held back by our receive guard
            # until its new numbering is confirmed: ask again until answered
            for _ in range(5):
                pair.rx.ask("-n")
                if pair.wait_external(left, timeout=2) == left:
                    break
            assert _flows(pair.external()) == left, pair.diagnose()
    finally:
        pair.stop()


MODES = ["FTFW", "NOTRACK", "ALARM"]
TRANSPORTS = ["UDP", "TCP", "Multicast"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours")],
                         ids=["ours-to-ref", "ref-to-ours"])
def test_interop(link, tmp_path, sender, receiver, mode, transport):
    _exercise(Pair(link, tmp_path, sender, receiver, mode, transport))


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours")],
                         ids=["ours-to-ref", "ref-to-ours"])
def test_interop_ipv6_link(link, tmp_path, sender, receiver):
    _exercise(Pair(link, tmp_path, sender, receiver, "FTFW", "UDP", v6=True))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ours_to_ours(link, tmp_path, transport):
    _exercise(Pair(link, tmp_path, "ours", "ours", "FTFW", transport))


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours"),
                                             ("ours", "ours")],
                         ids=["ours-to-ref", "ref-to-ours", "ours-to-ours"])
def test_interop_ipv6_multicast(link, tmp_path, sender, receiver):
    _exercise(Pair(link, tmp_path, sender, receiver, "NOTRACK", "Multicast", v6=True))


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours"),
                                             ("ours", "ours")],
                         ids=["ours-to-ref", "ref-to-ours", "ours-to-ours"])
def test_notrack_tcp_without_caches(link, tmp_path, sender, receiver):
    """The upstream tcp_notrack scenario: no caches, the peer's flows go straight to the
    kernel."""
    pair = Pair(link, tmp_path, sender, receiver, "NOTRACK", "TCP",
                mode_extra="DisableInternalCache on\n DisableExternalCache on\n")
    pair.start()
    try:
        pair.add_flows()
        assert wait_for(lambda: set(FLOWS) <= _kernel_flows(pair.b), 8, 0.2), \
            _kernel_flows(pair.b)
        assert "external inject:" in pair.rx.out("-s")
        assert "internal bypass:" in pair.tx.out("-s")
    finally:
        pair.stop()


_MAKE_EXPECT = r"""
from ctools.daemon.kernel import RequestSocket, inverse_tuple
from ctools.model import Entry, Expect, Tuple
from ctools.netlink import codec, constants as C
r = RequestSocket()
m = Tuple(family=2, src="192.168.7.9", dst="192.168.8.1", proto=6, sport=1000, dport=21)
assert not r.create([Entry(orig=m, reply=inverse_tuple(m), timeout=300, tcp_state=3,
                           status=14, helper="ftp")])
x = Expect(master=m, tuple=Tuple(family=2, src="192.168.7.9", dst="192.168.8.1", proto=6,
                                 sport=0, dport=2021),
           mask=Tuple(family=2, src="255.255.255.255", dst="255.255.255.255", proto=6,
                      sport=0, dport=65535), timeout=300, helper="ftp")
assert not r.create_expect([x])
"""
_FTP_HELPER = ('table inet ctdftp { ct helper ftp-std { type "ftp" protocol tcp; }; '
               'chain p { type filter hook prerouting priority 0; ct state new accept; }; }')


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours"),
                                             ("ours", "ours")],
                         ids=["ours-to-ref", "ref-to-ours", "ours-to-ours"])
def test_expectation_sync(link, tmp_path, sender, receiver):
    import sys

    a, b = link
    for ns in link:
        ns.run("nft", _FTP_HELPER, check=False)
    pair = Pair(link, tmp_path, sender, receiver, "FTFW", "UDP")
    for r in (pair.tx, pair.rx):
        r.conf.write_text(r.conf.read_text().replace(
            "Sync {", "Sync {\n Options { ExpectationSync { ftp } }"))
    pair.start()
    try:
        a.run(sys.executable, "-c", _MAKE_EXPECT)
        assert wait_for(lambda: "dport=2021" in pair.rx.out("-e", "expect"), 8, 0.2), \
            pair.rx.out("-e", "expect")
        assert "dport=2021" in pair.tx.out("-i", "expect")
        assert "dport=21 " in pair.external()
        pair.rx.ask("-c")
        assert wait_for(lambda: "dport=2021" in b.run("conntrack", "-L", "expect",
                                                    check=False).stdout.decode(), 5, 0.2)
    finally:
        pair.stop()
        for ns in link:
            ns.run("conntrack", "-F", "expect", check=False)
            ns.run("nft", "delete", "table", "inet", "ctdftp", check=False)


def test_external_dumps_identical(link, tmp_path):
    """One reference sender, two receivers on the same multicast group (the reference and
    ours, side by side in one namespace): ``-e`` and ``-e -x`` print the same lines."""
    import re

    a, b = link
    for ns in link:
        ns.run("conntrack", "-F", check=False)
    tx = Replica(a, implementation("ref"), tmp_path, "tx", config("NOTRACK", "Multicast", 0))
    ref = Replica(b, implementation("ref"), tmp_path, "rxref", config("NOTRACK", "Multicast", 1))
    ours = Replica(b, OURS, tmp_path, "rxours", config("NOTRACK", "Multicast", 1))
    # and our sender next to the reference sender (on another group: it is only watched)
    ours_tx = Replica(a, OURS, tmp_path, "txours",
                      config("NOTRACK", "Multicast", 0).replace("Group 3781", "Group 3782"))
    for r in (ref, ours, tx, ours_tx):
        r.start()
    try:
        for src in FLOWS:
            a.run("conntrack", "-I", "-s", src, "-d", "192.168.8.1", "-p", "udp",
                  "--sport", "53000", "--dport", "53", "-t", "300", "-m", "3")
        a.run("conntrack", "-I", "-s", "192.168.7.9", "-d", "192.168.8.1", "-p", "icmp",
              "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77", "-t", "30")
        want = set(FLOWS) | {"192.168.7.9"}
        for r in (ref, ours):
            assert wait_for(lambda r=r: _flows(r.out("-e")) == want, 8, 0.2), r.out("-e")
        strip = re.compile(r" \[active since \d+s\]")
        for args in (["-e"], ["-e", "-x"]):
            mine = sorted(strip.sub("", ln) for ln in ours.out(*args).splitlines())
            theirs = sorted(strip.sub("", ln) for ln in ref.out(*args).splitlines())
            assert mine == theirs, args
        # the same messages received: the same cache statistics and message tracking
        # (the link's "sent" numbers depend on when each sent its last ALIVE)
        sent = re.compile(r"^ *\d+ (Bytes|Pckts) sent", re.M)
        assert sent.sub("", ours.out("-s")) == sent.sub("", ref.out("-s"))
        assert ours.out("-s", "cache") == ref.out("-s", "cache")
        # the internal caches list the same local flows (the multicast link flows included)
        for args in (["-i"], ["-i", "-x"]):
            mine = sorted(strip.sub("", ln) for ln in ours_tx.out(*args).splitlines())
            theirs = sorted(strip.sub("", ln) for ln in tx.out(*args).splitlines())
            assert [ln for ln in mine if "192.168.7." in ln] == \
                [ln for ln in theirs if "192.168.7." in ln], args
    finally:
        for r in (tx, ours_tx, ours, ref):
            r.stop()


def _two_links(side: int, mode: str = "FTFW") -> str:
    me, peer = ("10.79.0.1", "10.79.0.2")[side], ("10.79.0.1", "10.79.0.2")[1 - side]
    body = config(mode, "UDP", side)
    second = (f"UDP {{\n IPv4_address {me}\n IPv4_Destination_Address {peer}\n Port 3790\n"
              f" Interface {('ctdwa', 'ctdwb')[side]}\n}}\n")
    return body.replace("UDP {", "UDP Default {", 1).rstrip()[:-1] + second + "}\n"


@pytest.mark.parametrize("sender,receiver", [("ours", "ref"), ("ref", "ours")],
                         ids=["ours-to-ref", "ref-to-ours"])
def test_link_failover(link, tmp_path, sender, receiver):
    """Two dedicated links: when the active one goes down, both sides move to the other
    and replication goes on."""
    a, b = link
    subprocess.run(["ip", "link", "add", "ctdwa", "netns", a.name, "type", "veth", "peer",
                    "name", "ctdwb", "netns", b.name], check=True)
    try:
        for ns, dev, addr in ((a, "ctdwa", "10.79.0.1"), (b, "ctdwb", "10.79.0.2")):
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            ns.run("ip", "link", "set", dev, "up")
        pair = Pair(link, tmp_path, sender, receiver, "FTFW", "UDP")
        pair.tx.conf.write_text(pair.tx.conf.read_text().split("Sync {")[0] + "Sync"
                                + _two_links(0).split("Sync", 1)[1])
        pair.rx.conf.write_text(pair.rx.conf.read_text().split("Sync {")[0] + "Sync"
                                + _two_links(1).split("Sync", 1)[1])
        pair.start()
        try:
            pair.add_flows(FLOWS[:1])
            assert pair.wait_external(set(FLOWS[:1])) == set(FLOWS[:1])
            assert "device=ctdvb status=RUNNING role=ACTIVE" in pair.rx.out("-s", "link")
            a.run("ip", "link", "set", "ctdva", "down")      # the peer loses carrier
            assert wait_for(lambda: "role=ACTIVE" in pair.tx.out("-s", "link").split(
                "device=ctdwa")[1].split("\n")[0], 8, 0.2), pair.tx.out("-s", "link")
            pair.add_flows(FLOWS[1:])
            assert pair.wait_external(set(FLOWS), 10) == set(FLOWS)
            # carrier changes reach the interface flags through the kernel's linkwatch, which
            # may lag up to a second behind the link flap: wait for the status, not the role
            assert wait_for(lambda: "device=ctdwb status=RUNNING role=ACTIVE"
                            in pair.rx.out("-s", "link"), 5, 0.2), pair.rx.out("-s", "link")
            # (whichever side notices first moves; the other follows the traffic, so the
            # "becomes dedicated link" notice may come from either)
        finally:
            pair.stop()
    finally:
        a.run("ip", "link", "set", "ctdva", "up", check=False)
        a.run("ip", "link", "del", "ctdwa", check=False)
        wait_for(lambda: "state UP" in a.run("ip", "link", "show", "ctdva").stdout.decode(),
                 10, 0.2)
        for ns in link:     # link-local addresses go through DAD again after the flap
            wait_for(lambda ns=ns: not ns.run("ip", "-6", "addr", "show", "tentative",
                                               check=False).stdout.strip(), 10, 0.1)


def test_polling_mode(link, tmp_path):
    """``PollSecs``: no events, the table is re-read every second; new flows and vanished
    ones reach the peer (a reference receiver)."""
    pair = Pair(link, tmp_path, "ours", "ref", "FTFW", "UDP")
    pair.tx.conf.write_text(pair.tx.conf.read_text().replace(
        "  Filter From", "  PollSecs 1\n  Filter From", 1))
    pair.start()
    try:
        assert "running in polling mode" in pair.tx.log_text()
        pair.add_flows()
        assert pair.wait_external(set(FLOWS)) == set(FLOWS)
        pair.a.run("conntrack", "-D", "-s", FLOWS[0], check=False)
        assert pair.wait_external(set(FLOWS[1:])) == set(FLOWS[1:])
        assert "events received:\t                   0" in pair.tx.out("-s", "runtime")
    finally:
        pair.stop()


def test_kernel_flush_and_purge_are_local(link, tmp_path):
    """``-F`` and the ``-t`` purge empty our kernel table (filtered flows are kept) and
    internal cache, and tell the peer nothing."""
    pair = Pair(link, tmp_path, "ours", "ref", "FTFW", "UDP",
                mode_extra="PurgeTimeout 1\n")
    pair.start()
    try:
        pair.add_flows()
        assert pair.wait_external(set(FLOWS)) == set(FLOWS)
        link_flows = [ln for ln in pair.a.run("conntrack", "-L").stdout.decode().splitlines()
                      if "10.77.0." in ln]
        pair.tx.ask("-F")
        assert wait_for(lambda: not kernel_flows(pair.a), 5, 0.2)
        after = pair.a.run("conntrack", "-L").stdout.decode()
        assert bool(link_flows) == ("10.77.0." in after)            # filtered: kept
        assert "flushing kernel conntrack table" in pair.tx.log_text()
        time.sleep(1.5)
        assert flows_in(pair.external()) == set(FLOWS)              # nothing was sent
        pair.add_flows(FLOWS[:1])
        assert wait_for(lambda: FLOWS[0] in pair.tx.out("-i"), 5, 0.2)
        pair.tx.ask("-t")
        assert "flushing conntrack table in 1 secs" in pair.tx.log_text()
        assert wait_for(lambda: "flushing kernel conntrack table (scheduled)"
                        in pair.tx.log_text(), 5, 0.2)
        assert wait_for(lambda: not kernel_flows(pair.a), 5, 0.2)
        assert not flows_in(pair.tx.out("-i"))
    finally:
        pair.stop()


def test_authenticated_sync(link, tmp_path):
    """``Options { AuthenticationKeyFile }`` between two ctools replicas: replication works,
    the epoch grows across restarts, and an unauthenticated (reference) sender is refused."""
    key = tmp_path / "sync.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    pair = Pair(link, tmp_path, "ours", "ours", "FTFW", "UDP")
    for r in (pair.tx, pair.rx):
        r.conf.write_text(r.conf.read_text().replace(
            "Sync {", f"Sync {{\n Options {{ AuthenticationKeyFile {key} }}"))
    pair.start()
    try:
        pair.add_flows()
        assert pair.wait_external(set(FLOWS)) == set(FLOWS)
        epoch = int((tmp_path / "sync.key.epoch").read_text())
        assert pair.tx.stop() == 0
        pair.tx.start()
        assert int((tmp_path / "sync.key.epoch").read_text()) > epoch
        pair.tx.ask("-B")
        assert pair.wait_external(set(FLOWS)) == set(FLOWS)
        if REF_CONNTRACKD is not None:
            # the reference, without the key, on the sender's address: refused and counted
            assert pair.tx.stop() == 0
            plain = Replica(pair.a, [REF_CONNTRACKD], tmp_path, "plain",
                            config("FTFW", "UDP", 0))
            plain.start()
            try:
                pair.add_flows(["192.168.7.8"])
                time.sleep(2)
                assert "192.168.7.8" not in flows_in(pair.external())
                recv = json.loads(pair.rx.out("--json", "-s", "network"))["recv"]
                assert recv["auth_failed"] > 0, recv
            finally:
                plain.stop()
    finally:
        pair.stop()
