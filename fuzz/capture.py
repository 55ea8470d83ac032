"""Capture real ctnetlink messages from this kernel into fuzz/corpus/netlink/ (seed corpus).

    .venv/bin/python fuzz/capture.py [OUTDIR]

Needs root. Works in a throw-away network namespace (prefix "ctfz"): fills its conntrack
table with the reference `conntrack -I` (every protocol, NAT, zones, marks, IPv6, counters,
timestamps), then records with a raw NETLINK_NETFILTER socket of our own: the table dump,
the events of a create/update/delete, the per-CPU and global statistics, an expectation
made by the kernel's FTP helper (dump, new and destroy events), and an error reply. Every netlink message is saved as one file named
<what>-<n>.bin, so a seed is exactly what the kernel sent.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTNL, CTNL_EXP = 1, 2
CT_GET, CT_GET_STATS_CPU, CT_GET_STATS = 1, 4, 5
EXP_GET, EXP_GET_STATS_CPU = 1, 3
NLMSG = struct.Struct("=IHHII")
NFGEN = struct.Struct("=BBH")

CONNTRACK = "/usr/sbin/conntrack"
ENTRIES = [
    "-I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1025 --dport 80 --state ESTABLISHED -u ASSURED -t 100",
    "-I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1026 --dport 443 --state SYN_SENT -t 30 -m 7",
    "-I -p tcp -s 10.0.0.3 -d 10.0.0.2 --sport 1027 --dport 22 --state TIME_WAIT -t 30 -w 5",
    "-I -p udp -s 10.0.0.1 -d 10.0.0.9 --sport 5353 --dport 53 -t 30 -u SEEN_REPLY",
    "-I -p udplite -s 10.0.0.1 -d 10.0.0.9 --sport 7 --dport 8 -t 30",
    "-I -p icmp -s 10.0.0.1 -d 10.0.0.2 --icmp-type 8 --icmp-code 0 --icmp-id 77 -t 30",
    "-I -p sctp -s 10.0.0.1 -d 10.0.0.2 --sport 9 --dport 10 --state ESTABLISHED"
    " --orig-vtag 1 --reply-vtag 2 -t 30",
    "-I -p dccp -s 10.0.0.1 -d 10.0.0.2 --sport 11 --dport 12 --state OPEN --role client -t 30",
    "-I -p gre -s 10.0.0.1 -d 10.0.0.2 --srckey 0x10 --dstkey 0x20 -t 30",
    "-I -p 2 -s 10.0.0.1 -d 224.0.0.1 -t 30",
    "-I -p tcp -s 10.0.0.5 -d 10.0.0.6 --sport 3000 --dport 80 --state ESTABLISHED -t 50"
    " --src-nat 192.0.2.1 --dst-nat 192.0.2.2",
    "-I -p tcp -s 2001:db8::1 -d 2001:db8::2 --sport 1000 --dport 80 --state ESTABLISHED -t 50",
    "-I -p icmpv6 -s 2001:db8::1 -d 2001:db8::2 --icmpv6-type 128 --icmpv6-code 0"
    " --icmpv6-id 5 -t 30",
    "-I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2 -t 30 --orig-zone 3 --reply-zone 4",
]


def request(sock: socket.socket, subsys: int, msg: int, flags: int, family: int = 0,
            payload: bytes = b"", res_id: int = 0) -> list[bytes]:
    """Send one ctnetlink request; return every message of the answer (through DONE/ERROR)."""
    seq = int(time.time()) & 0xFFFFFFFF
    body = NFGEN.pack(family, 0, socket.htons(res_id)) + payload
    sock.send(NLMSG.pack(NLMSG.size + len(body), (subsys << 8) | msg,
                         NLM_F_REQUEST | flags, seq, 0) + body)
    out: list[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        off = 0
        while off + NLMSG.size <= len(data):
            length, mtype, _fl, _seq, _pid = NLMSG.unpack_from(data, off)
            if length < NLMSG.size:
                return out
            out.append(data[off:off + length])
            off += (length + 3) & ~3
            if mtype == NLMSG_DONE or mtype == NLMSG_ERROR:
                return out
            if not flags & NLM_F_DUMP:
                return out


def conntrack(args: str) -> None:
    proc = subprocess.run([CONNTRACK, *args.split()], capture_output=True, text=True)
    if proc.returncode:  # some kernels lack a feature (e.g. directional zones): go on
        print(f"skipped: conntrack {args}: {proc.stderr.strip()}", file=sys.stderr)


HELPER_RULES = """
table inet fzhelp {
  ct helper ftp-standard { type "ftp" protocol tcp; }
  chain pre { type filter hook prerouting priority 0; tcp dport 21 ct helper set "ftp-standard"; }
  chain out { type filter hook output priority 0; tcp dport 21 ct helper set "ftp-standard"; }
}
"""


def ftp_expectation() -> None:
    """A fake FTP exchange through the kernel's FTP helper: it announces a data connection,
    so the kernel creates an expectation (and the control flow carries the helper name)."""
    subprocess.run(["nft", "-f", "-"], input=HELPER_RULES, text=True, check=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 21))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"220 ready\r\n")
        conn.recv(100)
        conn.sendall(b"227 Entering Passive Mode (127,0,0,1,200,10).\r\n")
        time.sleep(0.5)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    cli = socket.create_connection(("127.0.0.1", 21))
    cli.recv(100)
    cli.sendall(b"PASV\r\n")
    cli.recv(100)
    t.join()
    cli.close()
    srv.close()


def drain_events(ev: socket.socket, out: list[bytes]) -> None:
    """Every event message queued on ``ev`` (until 0.2 s of silence)."""
    try:
        while True:
            data = ev.recv(1 << 20)
            off = 0
            while off + NLMSG.size <= len(data):
                length = NLMSG.unpack_from(data, off)[0]
                if length < NLMSG.size:
                    break
                out.append(data[off:off + length])
                off += (length + 3) & ~3
    except TimeoutError:
        pass


def capture(outdir: Path) -> int:
    """Inside the namespace: populate, record, save. Returns the number of files written."""
    for key in ("nf_conntrack_acct", "nf_conntrack_timestamp"):
        Path(f"/proc/sys/net/netfilter/{key}").write_text("1")
    # A rule using conntrack makes the table live in this namespace.
    subprocess.run(["nft", "table inet fz { chain o { type filter hook output priority 0;"
                    " ct state new accept; }; }"], check=True)
    ev = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    ev.bind((0, 0x3F))  # conntrack and expectation NEW | UPDATE | DESTROY groups
    ev.settimeout(0.2)
    for line in ENTRIES:
        conntrack(line)
    conntrack("-U -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1025 --dport 80 -m 42")
    conntrack("-D -p udplite -s 10.0.0.1 -d 10.0.0.9")
    subprocess.run(["ping", "-c", "1", "-W", "1", "127.0.0.1"], capture_output=True)
    ftp_expectation()
    saved: dict[str, list[bytes]] = {"event": []}
    drain_events(ev, saved["event"])
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    saved["dump"] = request(sock, CTNL, CT_GET, NLM_F_DUMP)
    saved["dump-v6"] = request(sock, CTNL, CT_GET, NLM_F_DUMP, family=socket.AF_INET6)
    saved["stats-cpu"] = request(sock, CTNL, CT_GET_STATS_CPU, NLM_F_DUMP)
    saved["stats"] = request(sock, CTNL, CT_GET_STATS, 0)
    saved["exp-dump"] = request(sock, CTNL_EXP, EXP_GET, NLM_F_DUMP, family=socket.AF_INET)
    saved["exp-stats-cpu"] = request(sock, CTNL_EXP, EXP_GET_STATS_CPU, NLM_F_DUMP)
    # Flushing the expectations makes the kernel send their DESTROY events.
    subprocess.run([CONNTRACK, "-F", "expect"], capture_output=True)
    drain_events(ev, saved["event"])
    ev.close()
    # A get for a tuple that does not exist: the kernel answers with an NLMSG_ERROR.
    saved["error"] = request(sock, CTNL, CT_GET, NLM_F_ACK, family=socket.AF_INET)
    sock.close()
    outdir.mkdir(parents=True, exist_ok=True)
    count = 0
    for what, msgs in saved.items():
        for i, msg in enumerate(msgs):
            (outdir / f"{what}-{i:03d}.bin").write_bytes(msg)
            count += 1
    return count


def main() -> int:
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else
                  Path(__file__).resolve().parent / "corpus" / "netlink").resolve()
    if os.environ.get("CTFZ_IN_NETNS") == "1":
        print(f"{capture(outdir)} messages written to {outdir}")
        return 0
    ns = f"ctfz-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, CTFZ_IN_NETNS="1")
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__,
                               str(outdir)], env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    sys.exit(main())
