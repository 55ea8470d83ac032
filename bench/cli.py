#!/usr/bin/env python3
"""Side-by-side benchmark of `conntrack` (ours, .venv/bin/conntrack) against the C tool.

Runs in a throw-away network namespace (removed at exit, also on Ctrl-C):

* ``-L`` and ``-L -o extended`` of N entries (default 100k): wall time (median of runs)
* the same through ``python -m ctools.netlink.fast`` (the listing hot path by itself)
* ``-L -s 10.0.0.0/16`` (CIDR filter) and ``-L -p tcp`` of the same table (``Lcidr``,
  ``Lproto``)
* ``-R FILE`` with N ``-I`` lines: wall time to create them all
* ``-D`` of N entries: wall time to delete them all (``D``); ``-D -p tcp``, half of
  them (``Dproto``)
* ``-E`` while a churn generator creates and deletes entries at a fixed event rate:
  CPU seconds each listener used for the same events, and the events each one printed
* memory: our ``-L`` peak RSS at N entries vs at 1k entries (it must stream)

Every ratio is ours / C.  Needs root.  Usage::

    .venv/bin/python bench/cli.py [--entries 100000] [--runs 3] [--rate 50000]
                                  [--seconds 4] [--only L,Lext,Lfast,Lcidr,Lproto,R,D,Dproto,E,mem]
                                  [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctools.library import Conntrack  # noqa: E402
from ctools.model import Entry, Tuple  # noqa: E402

OURS = str(ROOT / ".venv" / "bin" / "conntrack")
REF = shutil.which("conntrack", path="/usr/sbin:/sbin:/usr/bin")


class Namespace:
    """A named netns that is always deleted."""

    def __init__(self) -> None:
        self.name = f"ctnl-bench-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def cmd(self, *argv: str) -> list[str]:
        # nsenter only switches the network namespace (ip netns exec also remounts /sys,
        # which can wait behind other jobs creating namespaces)
        return ["nsenter", f"--net=/run/netns/{self.name}", *argv]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def entries(n: int, offset: int = 0) -> list[Entry]:
    """A realistic mix: half established TCP (assured, marked), half UDP."""
    out = []
    for i in range(offset, offset + n):
        a, b = divmod(i, 250)
        src = f"10.{(a >> 8) & 255}.{a & 255}.{b + 1}"
        if i % 2:
            out.append(Entry(Tuple(2, src, "192.168.1.1", 6, sport=1024 + i % 60000, dport=80),
                             timeout=3600, tcp_state=3, status=6, mark=i % 7))
        else:
            out.append(Entry(Tuple(2, src, "192.168.2.1", 17, sport=1024 + i % 60000,
                                   dport=53), timeout=3600))
    return out


def populate(ns: Namespace, n: int) -> None:
    with Conntrack(netns=ns.name) as ct:
        ct.flush()
        for start in range(0, n, 20000):
            errs = ct.create_many(entries(min(20000, n - start), start))
            if any(errs):
                raise SystemExit(f"populate: {sum(1 for e in errs if e)} creates failed")
        got = ct.count()
    if got != n:
        raise SystemExit(f"populate: table holds {got} entries, wanted {n}")


TIME = shutil.which("time", path="/usr/bin:/bin")


def run_measured(argv: list[str], stdin=None) -> tuple[float, float, int, bytes]:
    """(wall seconds, cpu seconds, max RSS KiB, stderr) of one command.

    Through /usr/bin/time when present: a child forked from this (big) process would
    count our pages in its peak RSS until it execs.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        cmd = [TIME, "-o", tf.name, "-f", "%e %U %S %M", *argv] if TIME else argv
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        err = proc.stderr.read()
        _pid, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({code}): {err.decode()}")
        if TIME:
            fields = tf.read().split()[-4:]
            return (float(fields[0]), float(fields[1]) + float(fields[2]), int(fields[3]),
                    err)
        return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, err


FAST = [str(ROOT / ".venv" / "bin" / "python"), "-m", "ctools.netlink.fast"]


def bench_list(ns: Namespace, runs: int, extra: list[str], ours: list[str] | None = None
               ) -> dict:
    """Alternate C and ours so both see the same machine load; medians of wall and CPU."""
    walls: dict[str, list[float]] = {"c": [], "ours": []}
    cpus: dict[str, list[float]] = {"c": [], "ours": []}
    rss = 0
    for _ in range(runs):
        for who, cmd in (("c", [REF, "-L"]), ("ours", ours or [OURS, "-L"])):
            wall, cpu, maxrss, _err = run_measured(ns.cmd(*cmd, *extra))
            walls[who].append(wall)
            cpus[who].append(cpu)
            if who == "ours":
                rss = max(rss, maxrss)
    c, ours = statistics.median(walls["c"]), statistics.median(walls["ours"])
    c_cpu, ours_cpu = statistics.median(cpus["c"]), statistics.median(cpus["ours"])
    return {"c_s": round(c, 3), "ours_s": round(ours, 3), "ratio": round(ours / c, 2),
            "c_cpu_s": round(c_cpu, 3), "ours_cpu_s": round(ours_cpu, 3),
            "cpu_ratio": round(ours_cpu / c_cpu, 2), "ours_rss_kib": rss}


def bench_load(ns: Namespace, n: int, runs: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".ct", delete=False) as f:
        for e in entries(n):
            t = e.orig
            if t.proto == 6:
                f.write(f"-I -p tcp -s {t.src} -d {t.dst} --sport {t.sport} --dport {t.dport}"
                        f" --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 3600\n")
            else:
                f.write(f"-I -p udp -s {t.src} -d {t.dst} --sport {t.sport} --dport {t.dport}"
                        f" -t 3600\n")
        path = f.name
    try:
        walls: dict[str, list[float]] = {"c": [], "ours": []}
        for _ in range(runs):
            for who, tool in (("c", REF), ("ours", OURS)):
                with Conntrack(netns=ns.name) as ct:
                    ct.flush()
                wall, _cpu, _rss, _err = run_measured(ns.cmd(tool, "-R", path))
                with Conntrack(netns=ns.name) as ct:
                    if ct.count() != n:
                        raise SystemExit(f"-R with {who}: {ct.count()} entries, wanted {n}")
                walls[who].append(wall)
        result = {f"{who}_s": round(statistics.median(w), 3) for who, w in walls.items()}
        result["ratio"] = round(result["ours_s"] / result["c_s"], 2)
        return result
    finally:
        os.unlink(path)


def bench_delete(ns: Namespace, n: int, runs: int, extra: tuple[str, ...] = ()) -> dict:
    """-D of the whole table (n entries, refilled before each run), or of the entries
    ``extra`` selects (``-p tcp``: the half that is TCP)."""
    walls: dict[str, list[float]] = {"c": [], "ours": []}
    cpus: dict[str, list[float]] = {"c": [], "ours": []}
    for _ in range(runs):
        for who, tool in (("c", REF), ("ours", OURS)):
            populate(ns, n)
            wall, cpu, _rss, _err = run_measured(ns.cmd(tool, "-D", *extra))
            with Conntrack(netns=ns.name) as ct:
                left = ct.count()
            if left != (n // 2 if extra else 0):
                raise SystemExit(f"-D {' '.join(extra)} with {who}: {left} entries left")
            walls[who].append(wall)
            cpus[who].append(cpu)
    c, ours = statistics.median(walls["c"]), statistics.median(walls["ours"])
    c_cpu, ours_cpu = statistics.median(cpus["c"]), statistics.median(cpus["ours"])
    return {"c_s": round(c, 3), "ours_s": round(ours, 3), "ratio": round(ours / c, 2),
            "c_cpu_s": round(c_cpu, 3), "ours_cpu_s": round(ours_cpu, 3),
            "cpu_ratio": round(ours_cpu / c_cpu, 2)}


CHURN = r"""
import socket, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
burst, port, sent = max(1, rate // 200), 1024, 0
nxt = start = time.monotonic()
while time.monotonic() - start < seconds:
    for _ in range(burst):
        s.sendto(b"x", ("127.0.0.1", port))
        port = port + 1 if port < 65000 else 1024
    sent += burst
    nxt += burst / rate
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
print(sent)
"""


def bench_events(ns: Namespace, rate: int, seconds: float, fast: bool = True) -> dict:
    """Both listeners run during the same kernel-made churn: UDP flows on lo (one NEW
    event each) that expire after 1 s (one DESTROY each), ``rate`` events/s in all."""
    with Conntrack(netns=ns.name) as ct:
        ct.flush()
    subprocess.run(ns.cmd("ip", "link", "set", "lo", "up"), check=True)
    # (this nft wants the ruleset on several lines)
    subprocess.run(ns.cmd("nft", "-f", "-"), check=True, text=True, input=(
        "table ip ctnlbench {\n chain o {\n  type filter hook output priority 0\n"
        "  ct state new accept\n }\n}\n"))
    subprocess.run(ns.cmd("sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1"),
                   check=True)
    procs = {}
    listeners = [("c", [REF]), ("ours", [OURS])]
    if fast:
        listeners.append(("fast", FAST))
    for who, cmd in listeners:
        procs[who] = subprocess.Popen(ns.cmd(*cmd, "-E", "-b", "8388608"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # both subscribed (and past interpreter start-up)
    t0 = time.perf_counter()
    out = subprocess.run(ns.cmd(sys.executable, "-c", CHURN, str(rate // 2), str(seconds)),
                         check=True, capture_output=True, text=True)
    flows = int(out.stdout)
    elapsed = time.perf_counter() - t0
    time.sleep(4.0)  # the last flows expire, listeners drain
    result = {"target_rate": rate, "achieved_rate": round(2 * flows / elapsed),
              "events_expected": 2 * flows}
    for who, proc in procs.items():
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read().decode()
        _pid, _status, ru = os.wait4(proc.pid, 0)
        shown = re.search(r"(\d+) flow events have been shown", err)
        result[f"{who}_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 3)
        result[f"{who}_events"] = int(shown.group(1)) if shown else None
        result[f"{who}_enobufs"] = err.count("ENOBUFS")
    result["ratio"] = round(result["ours_cpu_s"] / max(result["c_cpu_s"], 1e-3), 2)
    # 1.4.7 applies -b to the wrong socket and loses events on overrun: per event shown
    for who in ("ours", "fast"):
        if result.get("c_events") and result.get(f"{who}_events"):
            key = "ratio_per_event" if who == "ours" else "fast_ratio_per_event"
            result[key] = round((result[f"{who}_cpu_s"] / result[f"{who}_events"])
                                / max(result["c_cpu_s"] / result["c_events"], 1e-9), 2)
    return result


def bench_memory(ns: Namespace, n: int) -> dict:
    populate(ns, 1000)
    _w, _c, small, _e = run_measured(ns.cmd(OURS, "-L"))
    populate(ns, n)
    _w, _c, big, _e = run_measured(ns.cmd(OURS, "-L"))
    return {"rss_1k_kib": small, f"rss_{n // 1000}k_kib": big, "ratio": round(big / small, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50_000, help="events/s for the -E test")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the -E churn")
    ap.add_argument("--only", default="L,Lext,Lfast,Lcidr,Lproto,R,D,Dproto,E,mem")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/cli.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if REF is None:
        print("the C conntrack tool is not installed", file=sys.stderr)
        return 2
    if not os.path.exists(OURS):
        print(f"{OURS} missing: run `make`", file=sys.stderr)
        return 2
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # without cached bytecode every run of ours recompiles its modules (~0.1 s)
        print("note: PYTHONDONTWRITEBYTECODE is set; an installed ctools has .pyc files, "
              "run with `env -u PYTHONDONTWRITEBYTECODE` to measure like one", file=sys.stderr)
    only = set(args.only.split(","))
    results: dict = {"entries": args.entries}
    ns = Namespace()
    try:
        if only & {"L", "Lext", "Lfast", "Lcidr", "Lproto"}:
            populate(ns, args.entries)
        if "L" in only:
            results["-L"] = bench_list(ns, args.runs, [])
            print("-L", results["-L"], flush=True)
        if "Lext" in only:
            results["-L -o extended"] = bench_list(ns, args.runs, ["-o", "extended"])
            print("-L -o extended", results["-L -o extended"], flush=True)
        if "Lfast" in only:
            # the listing hot path alone (ctools.netlink.fast), as the CLI can use it
            results["fast -L"] = bench_list(ns, args.runs, [], FAST)
            print("fast -L", results["fast -L"], flush=True)
            results["fast -L -o extended"] = bench_list(ns, args.runs, ["-o", "extended"],
                                                        FAST)
            print("fast -L -o extended", results["fast -L -o extended"], flush=True)
        if "Lcidr" in only:
            results["-L -s 10.0.0.0/16"] = bench_list(ns, args.runs, ["-s", "10.0.0.0/16"])
            print("-L -s 10.0.0.0/16", results["-L -s 10.0.0.0/16"], flush=True)
        if "Lproto" in only:
            results["-L -p tcp"] = bench_list(ns, args.runs, ["-p", "tcp"])
            print("-L -p tcp", results["-L -p tcp"], flush=True)
        if "R" in only:
            results["-R"] = bench_load(ns, args.entries, max(1, args.runs - 1))
            print("-R", results["-R"], flush=True)
        if "D" in only:
            results["-D"] = bench_delete(ns, args.entries, max(1, args.runs - 1))
            print("-D", results["-D"], flush=True)
        if "Dproto" in only:
            results["-D -p tcp"] = bench_delete(ns, args.entries, max(1, args.runs - 1),
                                                ("-p", "tcp"))
            print("-D -p tcp", results["-D -p tcp"], flush=True)
        if "E" in only:
            results["-E"] = bench_events(ns, args.rate, args.seconds)
            print("-E", results["-E"], flush=True)
        if "mem" in only:
            results["memory"] = bench_memory(ns, args.entries)
            print("memory", results["memory"], flush=True)
    finally:
        ns.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
