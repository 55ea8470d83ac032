"""Record real sync datagrams of the C conntrackd into fuzz/corpus/sync/ (a tool, not a harness).

    sudo .venv/bin/python fuzz/sync_capture.py [--out fuzz/corpus/sync] [ftfw alarm notrack ...]

For each mode: two throw-away namespaces ``ctsy-*`` joined by a veth pair ``s0`` carry two
reference daemons (/usr/sbin/conntrackd); entries of several protocols are created, updated and
deleted with the reference ``conntrack`` in the first namespace; ``conntrackd -n``/``-B`` make
resync traffic; tcpdump records the link. Every UDP payload is written as one file
``<scenario>-<n>-<direction>.bin`` (direction ``ab`` = from the first daemon). Scenario
``ftfw-loss`` drops 30 % of the datagrams arriving at the second namespace so that NACKs and
retransmissions appear. The namespaces and processes are removed even on failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus" / "sync"
PORT = 3780
MODES = {
    "ftfw": "Mode FTFW { ResendQueueSize 131072 ACKWindowSize 20 }",
    "ftfw-loss": "Mode FTFW { ACKWindowSize 20 }",
    "ftfw-wt": "Mode FTFW { }",
    "alarm": "Mode ALARM { RefreshTime 2 CacheTimeout 10 }",
    "notrack": "Mode NOTRACK { }",
}
EXTRA_OPTIONS = {"ftfw-wt": "TCPWindowTracking on\n        ExpectationSync on"}

CONF = """General {{
    HashSize 8192
    HashLimit 65536
    LogFile {dir}/log
    Syslog off
    LockFile {dir}/lock
    UNIX {{ Path {dir}/ctl }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Address Ignore {{ IPv4_address 127.0.0.1 IPv4_address {me} IPv6_address ::1 }}
    }}
}}
Sync {{
    {mode}
    UDP {{
        IPv4_address {me}
        IPv4_Destination_Address {peer}
        Port {port}
        Interface s0
        Checksum on
    }}
    Options {{
        {options}
    }}
}}
"""

# conntrack -I argument lists (run in the first namespace).
ENTRIES = [
    "-p tcp -s 192.168.10.2 -d 10.0.1.2 --sport 45001 --dport 8080 --state ESTABLISHED -t 431999 -u SEEN_REPLY,ASSURED",
    "-p tcp -s 192.168.10.2 -d 10.0.1.2 --sport 45000 --dport 8080 --state TIME_WAIT -t 90",
    "-p tcp -s 192.168.10.3 -d 10.0.1.2 --sport 40000 --dport 22 --state SYN_SENT -t 100 -m 4660",
    "-p udp -s 192.168.10.2 -d 10.0.1.53 --sport 5353 --dport 53 -t 30",
    "-p udp -s 192.168.10.4 -d 10.0.1.9 --sport 1234 --dport 4321 -t 60 --zone 7",
    "-p icmp -s 192.168.10.2 -d 10.0.1.2 --icmp-type 8 --icmp-code 0 --icmp-id 4660 -t 30",
    "-p sctp -s 192.168.10.5 -d 10.0.1.5 --sport 3868 --dport 3868 --state ESTABLISHED --orig-vtag 1 --reply-vtag 2 -t 60",
    "-p dccp -s 192.168.10.6 -d 10.0.1.6 --sport 5000 --dport 5001 --state OPEN --role CLIENT -t 60",
    "-p tcp -s fd00:10::2 -d fd00:1::2 --sport 50000 --dport 443 --state ESTABLISHED -t 3600",
    "-p icmpv6 -s fd00:10::2 -d fd00:1::2 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 7 -t 30",
    "-p tcp -s 192.168.10.7 -d 10.0.1.7 --sport 41000 --dport 80 --state ESTABLISHED -t 300 --dst-nat 10.0.2.7 -u ASSURED",
    "-p udp -s 192.168.10.8 -d 10.0.1.8 --sport 2000 --dport 2001 -t 50 --src-nat 203.0.113.8",
    "-p gre -s 192.168.10.9 -d 10.0.1.9 -t 50 --srckey 5 --dstkey 6",
    "-p tcp -s 192.168.10.10 -d 10.0.1.10 --sport 42000 --dport 80 --state ESTABLISHED -t 300 -l 3",
]
BULK = 150  # many similar UDP flows: multi-message datagrams near the MTU


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, timeout=60)


class Ns:
    def __init__(self) -> None:
        self.name = f"ctsy-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        self.procs: list[subprocess.Popen] = []
        self.x("ip", "link", "set", "lo", "up")

    def x(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def spawn(self, *argv: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv],
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=3)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        sh("ip", "netns", "del", self.name, check=False)


def read_pcap(path: Path) -> list[tuple[str, bytes]]:
    """(source IPv4, UDP payload) of every UDP datagram in a classic pcap (Ethernet)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off = 24
    out = []
    while off + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        src = ".".join(str(b) for b in frame[26:30])
        udp = 14 + ihl
        ulen = struct.unpack_from(">H", frame, udp + 4)[0]
        out.append((src, frame[udp + 8:udp + ulen]))
    return out


def capture(mode: str, out: Path) -> int:
    a, b = Ns(), Ns()
    tmp = Path(tempfile.mkdtemp(prefix="ctsy-"))
    try:
        sh("ip", "link", "add", "s0", "netns", a.name, "type", "veth", "peer", "s0",
           "netns", b.name)
        for ns, ip in ((a, "192.168.100.1"), (b, "192.168.100.2")):
            ns.x("ip", "addr", "add", f"{ip}/24", "dev", "s0")
            ns.x("ip", "link", "set", "s0", "up")
            ns.x("nft", "table inet ctsy { chain c { type filter hook prerouting priority 0;"
                        " ct state new accept; }; }")
        if mode == "ftfw-loss":
            b.x("nft", "add chain inet ctsy lossy { type filter hook input priority -10; }")
            b.x("nft", f"add rule inet ctsy lossy udp dport {PORT} numgen random mod 100 < 30 drop")
        pcap = tmp / "sync.pcap"
        tcpdump = b.spawn("tcpdump", "-i", "s0", "-U", "-s", "0", "-w", str(pcap),
                          "udp", "port", str(PORT))
        time.sleep(1.0)
        confs = []
        for ns, me, peer in ((a, "192.168.100.1", "192.168.100.2"),
                             (b, "192.168.100.2", "192.168.100.1")):
            d = tmp / ns.name
            d.mkdir()
            conf = d / "conntrackd.conf"
            conf.write_text(CONF.format(dir=d, me=me, peer=peer, port=PORT, mode=MODES[mode],
                                        options=EXTRA_OPTIONS.get(mode, "")))
            confs.append(str(conf))
            ns.spawn("/usr/sbin/conntrackd", "-C", str(conf))
        time.sleep(2.5)
        for args in ENTRIES:
            a.x("conntrack", "-I", *args.split(), check=False)
        for i in range(BULK):
            a.x("conntrack", "-I", "-p", "udp", "-s", f"172.16.{i // 200}.{i % 200 + 1}",
                "-d", "10.9.9.9", "--sport", str(10000 + i), "--dport", "53", "-t", "120",
                check=False)
        time.sleep(1.5)
        a.x("conntrack", "-U", "-p", "tcp", "--orig-port-src", "45001", "-m", "99", check=False)
        a.x("conntrack", "-D", "-p", "tcp", "--orig-port-src", "45000", check=False)
        time.sleep(1.5)
        b.x("conntrackd", "-C", confs[1], "-n", check=False)   # RESYNC request to a
        time.sleep(1.5)
        a.x("conntrackd", "-C", confs[0], "-B", check=False)   # bulk send from a
        time.sleep(3.0 if mode != "alarm" else 4.0)
        a.x("conntrackd", "-C", confs[0], "-k", check=False)
        b.x("conntrackd", "-C", confs[1], "-k", check=False)
        time.sleep(0.5)
        tcpdump.send_signal(signal.SIGINT)
        try:
            tcpdump.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        n = 0
        out.mkdir(parents=True, exist_ok=True)
        for src, payload in read_pcap(pcap):
            d = "ab" if src == "192.168.100.1" else "ba"
            (out / f"{mode}-{n:04d}-{d}.bin").write_bytes(payload)
            n += 1
        return n
    finally:
        a.close()
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("modes", nargs="*", default=list(MODES))
    args = ap.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("conntrackd"):
        print("needs root and the reference conntrackd", file=sys.stderr)
        return 2
    for mode in args.modes:
        print(mode, capture(mode, args.out), "datagrams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
