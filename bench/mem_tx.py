"""Where the sender daemon's memory goes: our FT-FW pair, an N-flow burst, then a report.

Run as root: ``python bench/mem_tx.py [--entries 100000] [--trace 5] [--settle]``.
Prints VmRSS/VmHWM of both daemons idle and after the burst and, from the sender's
SIGUSR1 report (``CTOOLS_DAEMON_MEMDUMP``), the loaded modules and, with ``--trace N``
(``PYTHONTRACEMALLOC=N``, slow), the top allocation sites. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync as B  # noqa: E402  (bench/sync.py: namespaces, daemons, injector)


def vm(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        got = {ln.split(":")[0]: int(ln.split()[1]) for ln in fh
               if ln.startswith(("VmRSS", "VmHWM"))}
    return f"RSS {got['VmRSS'] / 1024:6.1f} MB  HWM {got['VmHWM'] / 1024:6.1f} MB"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll_rss(d: B.Daemon, stop: threading.Event, out: list) -> None:
    while not stop.wait(0.1):
        out.append(f"{d.rss_mb():.0f}")


def poll_queues(d: B.Daemon, stop: threading.Event, out: list) -> None:
    while not stop.wait(0.3):
        try:
            text = B.request(str(d.sock), B.Req.STATS_QUEUE, timeout=10).decode()
        except B.ControlError:
            continue
        cur = [int(n) for n in re.findall(r"current elements:\s*(\d+)", text)]
        if len(cur) >= 3:
            out.append((cur[0], cur[2]))


def report(d: B.Daemon, prefix: str) -> str:
    path = Path(f"{prefix}.{d.proc.pid}")
    path.unlink(missing_ok=True)
    os.kill(d.proc.pid, signal.SIGUSR1)
    for _ in range(600):
        time.sleep(0.1)
        if path.exists() and path.read_text().endswith("\n\n"):
            return path.read_text()
    return "(no report)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--trace", type=int, default=0, help="tracemalloc frames (0: off)")
    ap.add_argument("--settle", action="store_true", help="also report once the link is quiet")
    ap.add_argument("--no-report", action="store_true",
                    help="no SIGUSR1 report (a daemon without CTOOLS_DAEMON_MEMDUMP dies of it)")
    ap.add_argument("--dump", action="store_true",
                    help="then ask the sender for -i and -i -x and report its RSS after each")
    ap.add_argument("--curve", action="store_true",
                    help="print the sender's RSS every 0.1 s during the burst")
    ap.add_argument("--queues", action="store_true",
                    help="poll the sender's queue depths during the burst (perturbs it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ctdmem-"))
    prefix = str(work / "mem")
    os.environ["CTOOLS_DAEMON_MEMDUMP"] = prefix
    if args.trace:
        os.environ["PYTHONTRACEMALLOC"] = str(args.trace)
    a, b = B.Namespace(), B.Namespace()
    tx = rx = None
    try:
        B.sh("ip", "link", "add", B.DEV[0], "netns", a.name, "type", "veth", "peer", "name",
             B.DEV[1], "netns", b.name)
        for ns, dev, addr in ((a, B.DEV[0], B.LINK[0]), (b, B.DEV[1], B.LINK[1])):
            ns.run("nft", "table inet ctdb { chain c { type filter hook prerouting priority 0; "
                          "ct state new accept; }; }")
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            ns.run("ip", "link", "set", dev, "up")
            ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_max=1048576", check=False)
        tx = B.Daemon(a, B.OURS, work, "tx", 0)
        rx = B.Daemon(b, B.OURS, work, "rx", 1)
        rx.start()
        tx.start()
        time.sleep(1.5)
        print(f"idle      sender   {vm(tx.proc.pid)}")
        print(f"idle      receiver {vm(rx.proc.pid)}")
        if not args.no_report:
            print(report(tx, prefix).strip().split("\n")[-1][:3000])
        cpu0 = cpu_s(tx.proc.pid), cpu_s(rx.proc.pid)
        t0 = time.monotonic()
        stop = threading.Event()
        depths: list[tuple[int, int]] = []
        curve: list[str] = []
        if args.queues:
            threading.Thread(target=poll_queues, args=(tx, stop, depths), daemon=True).start()
        if args.curve:
            threading.Thread(target=poll_rss, args=(tx, stop, curve), daemon=True).start()
        a.run(sys.executable, "-c", B.INJECT, str(args.entries), "0")
        took = B.wait_until(lambda: B.progress(rx, t0, args.entries, False), 300)
        print(f"burst {took and round(time.monotonic() - t0, 2)} s, CPU sender "
              f"{cpu_s(tx.proc.pid) - cpu0[0]:.2f} s, receiver {cpu_s(rx.proc.pid) - cpu0[1]:.2f} s")
        stop.set()
        if curve:
            print("sender RSS MB every 0.1 s:", " ".join(curve))
        if depths:
            print(f"max txqueue {max(d[0] for d in depths)}, max rsqueue "
                  f"{max(d[1] for d in depths)} over {len(depths)} polls")
        print(f"burst     sender   {vm(tx.proc.pid)}")
        print(f"burst     receiver {vm(rx.proc.pid)}")
        if not args.no_report:
            print(report(tx, prefix).rsplit("modules", 1)[0])
        if args.dump:
            for extra in ((), ("-x",)):
                t1 = time.monotonic()
                out = tx.ask("-i", *extra).stdout
                print(f"-i {' '.join(extra)}: {len(out) / 1e6:.1f} MB of text in "
                      f"{time.monotonic() - t1:.2f} s; sender {vm(tx.proc.pid)}")
        if args.settle:
            tx.settle()
            print(f"settled   sender   {vm(tx.proc.pid)}")
    finally:
        for d in (tx, rx):
            if d is not None:
                d.stop()
        a.close()
        b.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
