"""Operations around our daemon: -d mode, --json, --health, Prometheus metrics, peer check,
and the -s views' layout next to the reference's in the same situation."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from conftest import REF_CONNTRACKD, need_root
from daemon_helpers import FLOWS, OURS, Replica, config, env, flows_in, veth_pair, wait_for

pytestmark = [pytest.mark.root]

METRICS_PORT = 9577


@pytest.fixture(scope="module")
def link():
    need_root()
    with veth_pair() as pair:
        yield pair


def _add_flows(ns):
    for src in FLOWS:
        ns.run("conntrack", "-I", "-s", src, "-d", "192.168.8.1", "-p", "tcp", "--sport", "1000",
               "--dport", "80", "--state", "ESTABLISHED", "-t", "300", "-u", "SEEN_REPLY,ASSURED")


def test_daemon_mode_json_health_metrics(link, tmp_path):
    a, b = link
    for ns in link:
        ns.run("conntrack", "-F", check=False)
    metrics = f"  Metrics {{ Address 127.0.0.1 Port {METRICS_PORT} }}\n"
    tx = Replica(a, OURS, tmp_path, "tx", config("FTFW", "UDP", 0))
    rx = Replica(b, OURS, tmp_path, "rx", config("FTFW", "UDP", 1, general=metrics))
    # -d: the parent returns 0 once the daemon is initialised
    started = subprocess.run(b.cmd(*OURS, "-C", str(rx.conf), "-d"), env=env(), timeout=20,
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert started.stdout == "" and rx.lock.exists()
    try:
        assert "-- starting in daemon mode --" in rx.log_text()
        tx.start()
        _add_flows(a)
        assert wait_for(lambda: flows_in(rx.out("-e")) == set(FLOWS), 8, 0.2)
        data = json.loads(rx.out("--json", "-s"))
        assert data["external"]["active"] == 3 and data["sync_mode"] == "ftfw"
        assert data["link"]["device"] == "ctdvb" and data["link"]["pkts_recv"] > 0
        for view in ("network", "cache", "runtime", "link", "rsqueue", "queue", "process"):
            assert isinstance(json.loads(rx.out("--json", "-s", view)), dict), view
        healthy = rx.ask("--health", check=False)
        assert healthy.returncode == 0 and healthy.stdout.startswith("healthy"), healthy
        page = b.run("python3", "-c",
                     "import urllib.request,sys;"
                     f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/"
                     "metrics').read().decode())").stdout.decode()
        assert 'conntrackd_cache_entries{cache="external"} 3.0' in page
        assert "conntrackd_peer_silence_seconds" in page
        # the peer goes away: health fails once the silence exceeds the limit
        tx.stop()
        time.sleep(1.5)
        sick = rx.ask("--health", "--max-silence", "1", check=False)
        assert sick.returncode == 1 and sick.stdout.startswith("unhealthy"), sick
    finally:
        tx.stop()
        rx.ask("-k", check=False)
        wait_for(lambda: not rx.lock.exists(), 10)
    assert not rx.lock.exists()
    assert "---- shutdown received ----" in rx.log_text()
    gone = rx.ask("--health", check=False)
    assert gone.returncode == 1 and "not running" in gone.stdout


def test_other_sender_is_rejected_and_counted(link, tmp_path):
    a, b = link
    rx = Replica(b, OURS, tmp_path, "rx", config("NOTRACK", "UDP", 1))
    rx.start()
    try:
        # a forged CT_NEW-free ALIVE from an address that is not the configured peer
        b.run("ip", "addr", "add", "10.77.0.9/24", "dev", "ctdvb")
        forged = bytes([0x1a, 0x10, 0, 8, 0, 0, 0, 1])
        b.run("python3", "-c",
              "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
              "s.bind(('10.77.0.9',0));"
              f"s.sendto({forged!r},('10.77.0.2',3780))")
        data = wait_for(lambda: json.loads(rx.out("--json", "-s", "network"))["recv"]
                        ["wrong_peer"] >= 1, 5)
        assert data
        assert rx.ask("--health", check=False).returncode == 1   # the forger is not the peer
    finally:
        b.run("ip", "addr", "del", "10.77.0.9/24", "dev", "ctdvb", check=False)
        rx.stop()


def _shape(text: str) -> str:
    return re.sub(r" *\d+", "N", text)


def test_views_have_the_reference_layout(link, tmp_path):
    """Same configuration, one replica each side: ours and the reference print the same
    views (numbers masked: traffic differs byte for byte)."""
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd is not installed")
    a, b = link
    ours = Replica(a, OURS, tmp_path, "ours", config("FTFW", "UDP", 0))
    ref = Replica(b, [REF_CONNTRACKD], tmp_path, "ref", config("FTFW", "UDP", 1))
    ours.start()
    ref.start()
    try:
        time.sleep(1.2)
        for view in ([], ["network"], ["cache"], ["runtime"], ["link"], ["queue"],
                     ["process"], ["expect"]):
            mine = ours.out("-s", *view).replace("ctdva", "DEV")
            theirs = ref.out("-s", *view).replace("ctdvb", "DEV")
            assert _shape(mine) == _shape(theirs), view
        assert _shape(ours.out("-s", "rsqueue")).splitlines()[0] == "resent queue (len=N)"
    finally:
        ours.stop()
        ref.stop()


def test_start_failures_are_clean(tmp_path):
    need_root()
    conf = tmp_path / "c.conf"
    lock = tmp_path / "c.lock"
    conf.write_text(f"General {{ LockFile {lock}\n UNIX {{ Path {tmp_path}/c.sock }} }}\n"
                    "Sync { Mode FTFW { } }\n")
    bad = subprocess.run([*OURS, "-C", str(conf)], env=env(), capture_output=True, text=True,
                         timeout=20)
    assert bad.returncode == 1
    assert "conntrackd cannot start, please review your configuration" in bad.stderr
    assert "Traceback" not in bad.stderr and not lock.exists()
    lock.write_text("")
    held = subprocess.run([*OURS, "-C", str(conf)], env=env(), capture_output=True, text=True,
                          timeout=20)
    assert held.returncode == 1 and "perhaps conntrackd already running?" in held.stderr


_INJECT = r"""
import sys
from ctools.daemon.kernel import RequestSocket, inverse_tuple
from ctools.model import Entry, Tuple
n = int(sys.argv[1])
es = []
for j in range(n):
    t = Tuple(family=2, src=f"172.20.{j >> 8 & 255}.{j & 255}", dst="192.168.9.1", proto=6,
              sport=1024 + j % 60000, dport=443)
    es.append(Entry(orig=t, reply=inverse_tuple(t), timeout=600, tcp_state=3, status=14))
sock = RequestSocket()
for k in range(0, n, 5000):
    assert not sock.create(es[k:k + 5000])
"""


def test_event_overrun_is_recovered_by_a_resync(link, tmp_path):
    """A burst larger than the event buffer: ENOBUFS is counted and the cache converges."""
    import sys

    a, _b = link
    a.run("conntrack", "-F", check=False)
    tx = Replica(a, OURS, tmp_path, "tx",
                 config("FTFW", "UDP", 0, general="  NetlinkOverrunResync 1\n"))
    tx.start()
    try:
        a.run(sys.executable, "-c", _INJECT, "20000", timeout=120)

        def internal() -> int:
            return json.loads(tx.out("--json", "-s"))["internal"]["active"]

        assert wait_for(lambda: internal() == 20000, 60, 0.5), internal()
        runtime = json.loads(tx.out("--json", "-s", "runtime"))["runtime"]
        assert runtime["overrun"] >= 1 and runtime["resync_kernel"] >= 1, runtime
    finally:
        tx.stop()
        a.run("conntrack", "-F", check=False)


def test_peer_address_on_another_interface_is_rejected(link, tmp_path):
    """The configured peer's address is not enough: it must arrive on the link's
    interface."""
    a, b = link
    subprocess.run(["ip", "link", "add", "ctdxa", "netns", a.name, "type", "veth", "peer",
                    "name", "ctdxb", "netns", b.name], check=True)
    rx = Replica(b, OURS, tmp_path, "rx", config("NOTRACK", "UDP", 1))
    try:
        a.run("ip", "link", "set", "ctdxa", "up")
        b.run("ip", "link", "set", "ctdxb", "up")
        b.run("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", check=False)
        b.run("sysctl", "-qw", "net.ipv4.conf.ctdxb.rp_filter=0", check=False)
        rx.start()
        forged = bytes([0x1a, 0x10, 0, 8, 0, 0, 0, 1])
        # the peer's own address, but sent out of (and arriving on) the other veth
        a.run("python3", "-c",
              "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
              "s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'ctdxa');"
              "s.bind(('10.77.0.1',0));"
              f"[s.sendto({forged!r},('10.77.0.2',3780)) for _ in range(3)]")
        assert wait_for(lambda: json.loads(rx.out("--json", "-s", "network"))["recv"]
                        ["wrong_peer"] >= 1, 5), rx.out("--json", "-s", "network")
    finally:
        rx.stop()
        a.run("ip", "link", "del", "ctdxa", check=False)


@pytest.mark.skipif(not REF_CONNTRACKD, reason="reference conntrackd not installed")
def test_netlink_buffer_size_is_what_the_reference_gets(link, tmp_path):
    """NetlinkBufferSize N: the C daemon's event socket ends up with N bytes (the kernel
    doubles what is asked); ours must report (and have) the same."""
    a, b = link
    general = "  NetlinkBufferSize 100000\n  NetlinkBufferSizeMaxGrowth 400000\n"
    shown = {}
    for side, ns, argv0, name in ((0, a, [REF_CONNTRACKD], "ref"), (1, b, OURS, "ours")):
        r = Replica(ns, argv0, tmp_path, name, config("FTFW", "UDP", side, general=general))
        r.start()
        try:
            line = re.search(r"current buffer size \(in bytes\):\s*(\d+)", r.out("-s", "runtime"))
            logged = re.search(r"buffer size has been set to (\d+) bytes", r.log_text())
            shown[name] = (int(line.group(1)), int(logged.group(1)))
        finally:
            r.stop()
    assert shown["ours"] == shown["ref"] == (100000, 100000), shown


def test_commit_creates_the_peer_flows_and_replaces_clashing_ones(link, tmp_path):
    """-c writes every kind of cached flow (the C-built common ones and the general path:
    UDP, marks, a NAT binding) and a second -c replaces what it created (EEXIST path)."""
    a, b = link
    for ns in link:
        ns.run("conntrack", "-F", check=False)
    tx = Replica(a, OURS, tmp_path, "tx", config("FTFW", "UDP", 0))
    rx = Replica(b, OURS, tmp_path, "rx", config("FTFW", "UDP", 1))
    tx.start()
    rx.start()
    try:
        _add_flows(a)                                   # TCP, no mark: the C path
        a.run("conntrack", "-I", "-s", "192.168.7.9", "-d", "192.168.8.1", "-p", "udp",
              "--sport", "53", "--dport", "53", "-t", "300", "-m", "5")
        a.run("conntrack", "-I", "-s", "192.168.7.8", "-d", "192.168.8.1", "-p", "tcp",
              "--sport", "1", "--dport", "80", "--state", "ESTABLISHED", "-t", "300",
              "-u", "SEEN_REPLY,ASSURED", "--src-nat", "192.168.99.9")
        want = set(FLOWS) | {"192.168.7.8", "192.168.7.9"}
        got = wait_for(lambda: flows_in(rx.out("-e")) == want, 8, 0.2)
        assert got, rx.out("-e")
        for round_ in (1, 2):
            rx.ask("-c")
            log = rx.log_text()
            assert log.count(f"Committed {len(want)} new entries") == round_, log
            assert "can't be committed" not in rx.log_text()
            table = b.run("conntrack", "-L", check=False).stdout.decode()
            assert flows_in(table) == want, (round_, table)
        lines = {ln.split()[0] + " " + " ".join(w for w in ln.split() if w.startswith(
                 ("src=", "dst=", "sport=", "dport=", "mark="))) for ln in table.splitlines()}
        assert any("udp" in ln and "mark=5" in ln for ln in lines), table
        assert any("192.168.99.9" in ln for ln in lines), table
        assert table.count("ESTABLISHED") == len(FLOWS) + 1, table
    finally:
        tx.stop()
        rx.stop()
        for ns in link:
            ns.run("conntrack", "-F", check=False)
