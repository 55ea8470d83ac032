"""conntrackd benchmark: our daemon pair against the reference pair, FT-FW over UDP.

Run as root: ``python bench/sync.py [--entries 100000] [--loss-entries 20000] [--only ours]``.
Measures, for each implementation, in one run:

* burst: N flows created in the sender's kernel until all are in the peer's external cache;
* commit: ``conntrackd -c`` of the N external entries on the receiver;
* loss: a 20k burst with 10 % and 30 % of the sync datagrams dropped (nftables
  ``numgen random``), until the peer holds all of them (or a time limit);
* memory: RSS of both daemons idle and holding N entries.

Prints a Markdown table (and JSON with ``--json``). Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from ctools.daemon.control import ControlError, Req, request  # noqa: E402

DIRECT_POLL = False
OURS = [sys.executable, "-m", "ctools.cli.conntrackd"]
REF = shutil.which("conntrackd", path="/usr/sbin:/sbin:/usr/bin")
LINK = ("10.78.0.1", "10.78.0.2")
DEV = ("ctdba", "ctdbb")


def env() -> dict:
    e = dict(os.environ)
    # no empty entry: "" in PYTHONPATH puts the current directory on every Python
    # client's import path (each `conntrackd -s` poll then stats its way through it)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH")) if p)
    return e


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


class Namespace:
    def __init__(self) -> None:
        self.name = f"ctdb-{uuid.uuid4().hex[:6]}"
        sh("ip", "netns", "add", self.name)
        self.run("ip", "link", "set", "lo", "up")

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 600):
        return sh(*self.cmd(*argv), check=check, timeout=timeout, env=env())

    def close(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)


class Daemon:
    def __init__(self, ns: Namespace, argv0: list[str], workdir: Path, name: str,
                 side: int) -> None:
        self.ns, self.argv0, self.name = ns, argv0, name
        self.conf = workdir / f"{name}.conf"
        self.sock = workdir / f"{name}.sock"
        me, peer = LINK[side], LINK[1 - side]
        self.conf.write_text(
            "General {\n"
            f" LockFile {workdir}/{name}.lock\n LogFile {workdir}/{name}.log\n"
            f" UNIX {{ Path {self.sock} }}\n"
            " HashLimit 1048576\n"
            " NetlinkBufferSize 16777216\n NetlinkBufferSizeMaxGrowth 134217728\n"
            " NetlinkOverrunResync 2\n"
            " Filter From Userspace { Address Ignore { IPv4_address 10.78.0.0/24 } }\n}\n"
            "Sync {\n Mode FTFW { }\n"
            f" UDP {{\n  IPv4_address {me}\n  IPv4_Destination_Address {peer}\n"
            f"  Port 3790\n  Interface {DEV[side]}\n }}\n}}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.err = open(self.conf.with_suffix(".err"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(self.ns.cmd(*self.argv0, "-C", str(self.conf)), env=env(),
                                     stdout=subprocess.DEVNULL, stderr=self.err,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.sock.exists() and self.ask("-s", "runtime").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def ask(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.ns.run(*self.argv0, "-C", str(self.conf), *args, check=False,
                           timeout=timeout)

    def counts(self) -> tuple[int, int]:
        """(internal, external) current active connections from ``-s``.

        With ``--direct-poll`` the bench asks the control socket itself (the same code for
        both daemons, no client process competing for the 2 cores during the burst)."""
        if DIRECT_POLL:
            try:
                text = request(str(self.sock), Req.STATS, timeout=10).decode("latin-1")
            except ControlError:
                text = ""
        else:
            text = self.ask("-s").stdout
        nums = [int(n) for n in re.findall(r"current active connections:\t\s*(\d+)", text)]
        return (nums[0], nums[1]) if len(nums) >= 2 else (-1, -1)

    def packets_in(self) -> int:
        m = re.search(r"(\d+) Pckts recv", self.ask("-s").stdout)
        return int(m.group(1)) if m else -1

    def settle(self, limit: float = 60) -> None:
        """Wait until the link is quiet (only keep-alives) so the next step runs alone."""
        last = self.packets_in()
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            time.sleep(1.0)
            now = self.packets_in()
            if now - last <= 2:
                return
            last = now

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return -1.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ask("-k", timeout=30)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


INJECT = r"""
import sys, time
from ctools.daemon.kernel import RequestSocket, inverse_tuple
from ctools.model import Entry, Tuple, IPS_ASSURED, IPS_SEEN_REPLY, IPS_CONFIRMED
n, base = int(sys.argv[1]), int(sys.argv[2])
sock = RequestSocket()
es = []
for i in range(n):
    j = base + i
    t = Tuple(family=2, src=f"172.{16 + (j >> 16 & 15)}.{j >> 8 & 255}.{j & 255}",
              dst="192.168.200.1", proto=6, sport=1024 + (j % 60000), dport=443)
    es.append(Entry(orig=t, reply=inverse_tuple(t), timeout=3600, tcp_state=3,
                    status=IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED))
t0 = time.monotonic()
for k in range(0, n, 5000):
    errs = sock.create(es[k:k + 5000])
print(time.monotonic() - t0)
"""


def progress(rx: Daemon, t0: float, target: int, trace: bool) -> bool:
    """Has the receiver got ``target`` external entries? (``--trace``: print the count.)"""
    n = rx.counts()[1]
    if trace:
        print(f"  {time.monotonic() - t0:6.2f} s  external {n}", file=sys.stderr)
    return n >= target


def wait_until(pred, limit: float, interval: float = 0.2) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if pred():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


def set_loss(ns: Namespace, percent: int) -> None:
    ns.run("nft", "delete", "table", "inet", "ctdloss", check=False)
    if percent:
        ns.run("nft", f"table inet ctdloss {{ chain o {{ type filter hook output priority 0; "
                      f"udp dport 3790 numgen random mod 100 < {percent} drop; }}; }}")


def one_impl(label: str, argv0: list[str], entries: int, loss_entries: int,
             losses: list[int], trace: bool = False) -> dict:
    a, b = Namespace(), Namespace()
    work = Path(tempfile.mkdtemp(prefix="ctdbench-"))
    res: dict = {"impl": label}
    tx = rx = None
    try:
        sh("ip", "link", "add", DEV[0], "netns", a.name, "type", "veth", "peer", "name", DEV[1],
           "netns", b.name)
        for ns, dev, addr in ((a, DEV[0], LINK[0]), (b, DEV[1], LINK[1])):
            ns.run("nft", "table inet ctdb { chain c { type filter hook prerouting priority 0; "
                          "ct state new accept; }; }")
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            ns.run("ip", "link", "set", dev, "up")
            ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_max=1048576", check=False)
        tx = Daemon(a, argv0, work, "tx", 0)
        rx = Daemon(b, argv0, work, "rx", 1)
        rx.start()
        tx.start()
        time.sleep(1.5)
        res["rss_idle_mb"] = round(max(tx.rss_mb(), rx.rss_mb()), 1)
        # burst
        t0 = time.monotonic()
        a.run(sys.executable, "-c", INJECT, str(entries), "0")
        took = wait_until(lambda: progress(rx, t0, entries, trace), 300)
        res["burst_s"] = None if took is None else round(time.monotonic() - t0 - 0.0, 2)
        res["burst_external"] = rx.counts()[1]
        res["rss_sender_mb"] = round(tx.rss_mb(), 1)
        res["rss_receiver_mb"] = round(rx.rss_mb(), 1)
        rx.settle()
        tx.settle()
        # commit
        t0 = time.monotonic()
        rx.ask("-c", timeout=600)
        res["commit_s"] = round(time.monotonic() - t0, 2)
        res["committed"] = int(b.run("conntrack", "-C").stdout.strip() or 0)
        # loss runs: fresh flows each time
        base = entries
        for pct in losses:
            rx.settle()
            set_loss(a, pct)
            t0 = time.monotonic()
            a.run(sys.executable, "-c", INJECT, str(loss_entries), str(base))
            target = base + loss_entries        # every flow created so far
            took = wait_until(lambda t=target: rx.counts()[1] >= t, 120, 0.5)
            res[f"loss{pct}_s"] = None if took is None else round(time.monotonic() - t0, 2)
            res[f"loss{pct}_external"] = rx.counts()[1] - (target - loss_entries)
            base += loss_entries
            set_loss(a, 0)
    finally:
        for d in (tx, rx):
            if d is not None:
                d.stop()
        a.close()
        b.close()
        if os.environ.get("CTD_BENCH_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--loss-entries", type=int, default=20000)
    ap.add_argument("--losses", default="10,30")
    ap.add_argument("--only", choices=("ours", "ref"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--direct-poll", action="store_true",
                    help="poll the receiver's count on its control socket from the bench "
                         "instead of running the implementation's own -s client")
    ap.add_argument("--trace", action="store_true",
                    help="print the receiver's external count at each poll of the burst")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/sync.py needs root (network namespaces)", file=sys.stderr)
        return 2
    losses = [int(x) for x in args.losses.split(",") if x]
    global DIRECT_POLL
    DIRECT_POLL = args.direct_poll
    results = []
    impls = []
    if args.only != "ours":
        if REF is None:
            print("reference conntrackd not installed: measuring ours only", file=sys.stderr)
        else:
            impls.append(("C conntrackd 1.4.7", [REF]))
    if args.only != "ref":
        impls.append(("ctools conntrackd", OURS))
    for label, argv0 in impls:
        results.append(one_impl(label, argv0, args.entries, args.loss_entries, losses,
                                args.trace))
        print(json.dumps(results[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    keys = ["burst_s", "burst_external", "commit_s", "committed", "rss_idle_mb",
            "rss_sender_mb", "rss_receiver_mb"]
    for pct in losses:
        keys += [f"loss{pct}_s", f"loss{pct}_external"]
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("| measure | " + " | ".join(r["impl"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(r.get(k)) for r in results) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
