"""Live fuzzer: mutated sync datagrams into a running conntrackd, then check it still works.

    .venv/bin/python fuzz/live.py [--seconds 30] [--mode ftfw|alarm|notrack] [--seed N]
                                  [--transport udp|tcp]
                                  [--peer ours|ref] [--target ours|ref]

Needs root. Builds two throw-away namespaces ("ctfz-*") joined by a veth, runs a peer daemon
in A and the target daemon in B (ours by default), replicating FT-FW (or ALARM/NOTRACK) over
UDP (or TCP: then the garbage goes as byte streams over connections from A's address, a new
connection every few chunks), and then:

1. creates flows in A and waits for them in B's external cache, while capturing the real
   datagrams A sends (they become the seeds, and the replay material of step 4);
2. fuzz phase: for the given time, sends datagrams from A's address and the peer's port to B:
   seeds and generated messages mutated by ``fuzzlib.mutate``, each with a correct UDP
   checksum, no checksum (0), or a wrong one — through a raw socket, so the kernel really
   checks them;
3. checks that the target is alive and answers, that its external cache holds no *phantom*
   entry (every entry is a real flow of A or was carried by a datagram that reached it with a
   valid checksum) and that its kernel table holds nothing it was not asked to commit;
4. sends odd requests to B's control socket (truncated, unknown codes, views of anything;
   never a request with an effect) and checks B is still alive;
5. deletes a flow in A, waits until B drops it, replays A's old captured datagrams that
   created it, and checks that it is not *resurrected*;
6. checks that B *still replicates*: a new flow in A reaches B's external cache.

Every datagram sent is logged (hex, checksum mode) to fuzz/out/live/<seed>.log so that a
finding can be replayed. Exit status 1 on any violated check (printed as FINDING lines).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzlib  # noqa: E402  (also puts the checkout on sys.path)

from ctools.model import IPPROTO_TCP, IPPROTO_UDP, Entry, Tuple  # noqa: E402
from ctools.sync import wire  # noqa: E402

CLONE_NEWNET = 0x40000000
ADDR = ("10.78.0.1", "10.78.0.2")
DEV = ("ctfza", "ctfzb")
PORT = 3780
REF_CONNTRACKD = "/usr/sbin/conntrackd"
REF_CONNTRACK = "/usr/sbin/conntrack"
LEGIT = [f"192.168.9.{i}" for i in range(1, 5)]
FLOW_RE = re.compile(r"^(\w+)\s+(\d+)\s.*?src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?")
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def in_netns(name: str):
    """Run the body with this thread in namespace ``name`` (sockets made there stay there)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(home)
        os.close(target)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


class Node:
    """A namespace with one conntrackd (ours or the reference) in it."""

    def __init__(self, side: int, impl: str, mode: str, workdir: Path,
                 transport: str = "UDP") -> None:
        self.ns = f"ctfz-{uuid.uuid4().hex[:8]}"
        self.side = side
        self.impl = impl
        self.dir = workdir
        self.conf = workdir / f"{self.ns}.conf"
        self.proc: subprocess.Popen | None = None
        sh("ip", "netns", "add", self.ns)
        self.run("ip", "link", "set", "lo", "up")
        self.run("nft", "table inet fz { chain o { type filter hook output priority 0;"
                 " ct state new accept; }; chain i { type filter hook input priority 0;"
                 " ct state new accept; }; }")
        timers = "RefreshTime 2\n CacheTimeout 30\n" if mode == "ALARM" else ""
        self.conf.write_text(
            "General {\n"
            f" LockFile {workdir}/{self.ns}.lock\n LogFile {workdir}/{self.ns}.log\n"
            f" UNIX {{ Path {workdir}/{self.ns}.sock }}\n Syslog off\n"
            " Filter From Userspace { Address Ignore { IPv4_address 10.78.0.0/24 } }\n}\n"
            f"Sync {{\n Mode {mode} {{\n {timers} }}\n"
            f" {transport} {{\n IPv4_address {ADDR[side]}\n"
            f" IPv4_Destination_Address {ADDR[1 - side]}\n"
            f" Port {PORT}\n Interface {DEV[side]}\n }}\n}}\n")

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(*self.cmd(*argv), check=check)

    def daemon_argv(self) -> list[str]:
        if self.impl == "ref":
            return [REF_CONNTRACKD]
        return [sys.executable, "-m", "ctools.cli.conntrackd"]

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(fuzzlib.ROOT))
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(self.cmd(*self.daemon_argv(), "-C", str(self.conf)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.ask("-s", "runtime").returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon in {self.ns} exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"daemon in {self.ns} did not start")

    def ask(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=str(fuzzlib.ROOT))
        return subprocess.run(self.cmd(*self.daemon_argv(), "-C", str(self.conf), *args),
                              capture_output=True, text=True, timeout=30, env=env)

    def alive(self) -> bool:
        return (self.proc is not None and self.proc.poll() is None
                and self.ask("-s").returncode == 0)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        sh("ip", "netns", "del", self.ns, check=False)


def flow_keys(text: str) -> set[tuple]:
    """(proto number, src, dst, sport, dport) of the first tuple of every listed flow."""
    keys = set()
    for line in text.splitlines():
        m = FLOW_RE.match(line)
        if m:
            sport = int(m.group(5)) if m.group(5) else None
            dport = int(m.group(6)) if m.group(6) else None
            keys.add((int(m.group(2)), m.group(3), m.group(4), sport, dport))
    return keys


def obj_keys(datagram: bytes) -> set[tuple]:
    """Keys of every conntrack entry that a datagram's data messages decode to."""
    keys = set()
    for item in wire.split_messages(datagram):
        if isinstance(item, wire.ProtocolError):
            continue
        header, off = item
        if not header.is_data:
            continue
        try:
            _kind, obj = wire.decode_data(header, datagram[off:off + header.length])
        except wire.ProtocolError:
            continue
        t = getattr(obj, "orig", None)
        if t is not None:
            # The text dump shows ports only for protocols that have them: keep both forms.
            keys.add((t.proto, t.src, t.dst, t.sport, t.dport))
            keys.add((t.proto, t.src, t.dst, None, None))
    return keys


def udp_checksum(src: str, dst: str, segment: bytes) -> int:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17,
                                                                          len(segment))
    data = pseudo + segment + (b"\0" if len(segment) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) or 0xFFFF


class Sender:
    """A raw UDP sender in A's namespace: our own header, so the checksum can be anything."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self.counts = {"good": 0, "zero": 0, "bad": 0}

    def send(self, payload: bytes, mode: str) -> None:
        payload = payload[:65000]
        header = struct.pack("!HHHH", PORT, PORT, 8 + len(payload), 0)
        csum = udp_checksum(ADDR[0], ADDR[1], header + payload)
        if mode == "zero":
            csum = 0
        elif mode == "bad":
            csum = (csum + 1 + random.randrange(0xFFFE)) & 0xFFFF or 1
        header = header[:6] + struct.pack("!H", csum)
        self.sock.sendto(header + payload, (ADDR[1], 0))
        self.counts[mode] += 1


class TcpSender:
    """Byte streams to B's TCP channel from A's address; a new connection every few chunks.

    ``streams`` keeps what each connection carried: messages may span chunks, so the phantom
    check decodes whole streams."""

    def __init__(self, ns: str, rng: random.Random) -> None:
        self.ns = ns
        self.rng = rng
        self.sock: socket.socket | None = None
        self.left = 0
        self.stream = b""
        self.streams: list[bytes] = []
        self.counts = {"tcp": 0, "connections": 0}

    def _reconnect(self) -> None:
        self.close()
        with in_netns(self.ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(2)
        self.sock.bind((ADDR[0], 0))
        self.sock.connect((ADDR[1], PORT))
        self.left = self.rng.randint(1, 40)
        self.counts["connections"] += 1

    def send(self, payload: bytes, _mode: str = "good") -> None:
        try:
            if self.sock is None or self.left <= 0:
                self._reconnect()
            self.sock.sendall(payload)
            self.stream += payload
            self.left -= 1
            self.counts["tcp"] += 1
        except OSError:
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.stream:
            self.streams.append(self.stream)
            self.stream = b""


class Capture:
    """Sync traffic arriving in B from A (UDP payloads, TCP segment payloads), read from an
    AF_PACKET socket on B's veth."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
            self.sock.bind((DEV[1], 0x0800))
        self.sock.setblocking(False)

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                pkt = self.sock.recv(65535)
            except BlockingIOError:
                return out
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 20 or pkt[9] not in (6, 17):
                continue
            if socket.inet_ntoa(pkt[12:16]) != ADDR[0]:
                continue
            _sport, dport = struct.unpack_from("!HH", pkt, ihl)
            if dport != PORT:
                continue
            start = ihl + 8 if pkt[9] == 17 else ihl + (pkt[ihl + 12] >> 4) * 4
            if len(pkt) > start:
                out.append(pkt[start:])


def generated(rng: random.Random) -> bytes:
    """A well-formed message of our own making: a data message or a control message."""
    seq = rng.getrandbits(32)
    if rng.random() < 0.3:
        flags = rng.choice([wire.F_ALIVE, wire.F_ACK, wire.F_NACK, wire.F_RESYNC,
                            wire.F_ALIVE | wire.F_HELLO, wire.F_ACK | wire.F_HELLO_BACK])
        return wire.encode_control(flags, seq, rng.getrandbits(32), rng.getrandbits(32))
    proto = rng.choice([IPPROTO_TCP, IPPROTO_UDP])
    src, dst = f"172.31.{rng.randrange(256)}.{rng.randrange(256)}", "172.30.0.1"
    sport, dport = rng.randrange(1, 65536), rng.choice([22, 80, 443])
    e = Entry(Tuple(family=2, src=src, dst=dst, proto=proto, sport=sport, dport=dport),
              Tuple(family=2, src=dst, dst=src, proto=proto, sport=dport, dport=sport))
    e.status, e.timeout = 0xE, rng.randrange(1, 500)
    if proto == IPPROTO_TCP:
        e.tcp_state = rng.randrange(1, 10)
    return wire.encode_message(rng.choice(["new", "upd", "del"]), e, seq)


# Request codes with an effect (kill, flushes, commits, resyncs, bulk sends) are never sent;
# everything else is fair game: unknown codes, truncated requests, statistics views.
_EFFECT_CODES = {0, 1, 18, 19, 20, 22, 23, 26, 33, 34, 38, 39, 42, 43, 44, 45, 46}
_VIEW_CODES = [16, 17, 21, 24, 25, 28, 29, 30, 31, 32, 35, 36, 37, 40, 41, 47, 48, 1001]


def control_garbage(sock_path: Path, rng: random.Random, count: int) -> int:
    """Send ``count`` odd requests to the daemon's control socket; returns how many went."""
    sent = 0
    for _ in range(count):
        kind = rng.randrange(5)
        if kind == 0:
            payload = rng.randbytes(rng.randrange(4))                 # truncated request
        elif kind == 1:
            code = rng.choice([rng.randrange(2, 16), 27, rng.randrange(49, 1000),
                               rng.randrange(1002, 1 << 32)])
            payload = struct.pack("=I", code) + rng.randbytes(rng.randrange(3))
        elif kind == 2:                                              # JSON view of anything
            arg = rng.choice(_VIEW_CODES + [rng.randrange(1 << 32)])
            while arg in _EFFECT_CODES:
                arg = rng.randrange(49, 1 << 32)
            payload = struct.pack("=I", 1000) + struct.pack("=I", arg)[:rng.randrange(5)]
        elif kind == 3:
            payload = struct.pack("=I", rng.choice(_VIEW_CODES))
        else:
            payload = rng.randbytes(rng.randrange(5, 64))
            if struct.unpack_from("=I", payload)[0] in _EFFECT_CODES:
                continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            try:
                c.connect(str(sock_path))
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                while c.recv(65536):
                    pass
            except OSError:
                pass
        sent += 1
    return sent


def add_flow(node: Node, src: str) -> None:
    node.run(REF_CONNTRACK, "-I", "-s", src, "-d", "192.168.8.1", "-p", "tcp", "--sport",
             "1000", "--dport", "80", "--state", "ESTABLISHED", "-t", "600",
             "-u", "SEEN_REPLY,ASSURED")


def legit_key(src: str) -> tuple:
    return (6, src, "192.168.8.1", 1000, 80)


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


def run(seconds: float, mode: str, seed: int, peer: str, target: str, quiet: bool = False,
        transport: str = "udp") -> dict:
    """One live-fuzzing session; returns a summary with the list of findings."""
    rng = random.Random(seed)
    random.seed(seed)
    findings: list[str] = []
    out_dir = fuzzlib.FUZZ_DIR / "out" / "live"
    out_dir.mkdir(parents=True, exist_ok=True)
    (fuzzlib.FUZZ_DIR / "out" / ".gitignore").write_text("*\n")
    log_path = out_dir / f"{seed}.log"
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="ctfz-") as tmp:
        a = b = None
        try:
            a = Node(0, peer, mode.upper(), Path(tmp), transport.upper())
            b = Node(1, target, mode.upper(), Path(tmp), transport.upper())
            sh("ip", "link", "add", DEV[0], "netns", a.ns, "type", "veth", "peer", "name",
               DEV[1], "netns", b.ns)
            for node in (a, b):
                node.run("ip", "addr", "add", f"{ADDR[node.side]}/24", "dev", DEV[node.side])
                node.run("ip", "link", "set", DEV[node.side], "up")
            capture = Capture(b.ns)
            b.start()
            a.start()
            external = lambda: flow_keys(b.ask("-e").stdout)  # noqa: E731
            for src in LEGIT:
                add_flow(a, src)
            want = {legit_key(s) for s in LEGIT}
            if not wait(lambda: want <= external(), 15):
                raise RuntimeError(f"no replication before fuzzing: {external()}")
            seeds = capture.drain()
            replay = [d for d in seeds if legit_key(LEGIT[0]) in obj_keys(d)]
            say(f"live: {len(seeds)} real datagrams captured, target {target} {mode}/{transport} "
                f"in {b.ns}, seed {seed}")
            pool = seeds + fuzzlib.seeds("sync") + [generated(rng) for _ in range(32)]
            allowed = set(want)
            tcp = transport.lower() == "tcp"
            sender = TcpSender(a.ns, rng) if tcp else Sender(a.ns)
            deadline = time.monotonic() + seconds
            sent = 0
            with open(log_path, "w") as log:
                while time.monotonic() < deadline:
                    base = rng.choice(pool) if rng.random() < 0.8 else generated(rng)
                    dgram = fuzzlib.mutate(base, rng, pool) if rng.random() < 0.85 else base
                    if not dgram:
                        continue
                    csum = "good" if tcp else rng.choices(["good", "zero", "bad"], [6, 2, 2])[0]
                    log.write(f"{csum} {dgram.hex()}\n")
                    sender.send(dgram, csum)
                    if csum != "bad" and not tcp:
                        allowed |= obj_keys(dgram)
                    sent += 1
                    if sent % 500 == 0:
                        if not b.alive():
                            findings.append(f"target died after {sent} datagrams")
                            break
                        time.sleep(0.01)  # let the 2 shared cores breathe
            if tcp:
                sender.close()
                for stream in sender.streams:
                    allowed |= obj_keys(stream)
            say(f"live: sent {sent} datagrams {sender.counts} in {seconds:.0f}s")
            time.sleep(1.0)
            if not b.alive():
                if not findings:
                    findings.append("target is not alive after the fuzz phase")
                raise StopIteration
            ctl = control_garbage(Path(tmp) / f"{b.ns}.sock", rng, 300)
            say(f"live: {ctl} odd requests sent to the control socket")
            if not b.alive():
                findings.append("target died on control-socket garbage")
                raise StopIteration
            phantom = external() - allowed
            if phantom:
                findings.append(f"phantom entries in the external cache: {sorted(phantom)[:5]}")
            kernel = flow_keys(b.run(REF_CONNTRACK, "-L", check=False).stdout)
            foreign = {k for k in kernel if not k[1].startswith("10.78.0.")}
            if foreign:
                findings.append(f"entries in the target's kernel table: {sorted(foreign)[:5]}")
            # Resurrection: delete a flow at the source, then replay its old datagrams.
            a.run(REF_CONNTRACK, "-D", "-s", LEGIT[0], check=False)
            gone = wait(lambda: legit_key(LEGIT[0]) not in external(), 10)
            if mode.lower() != "alarm" and not gone:
                findings.append("a deleted flow did not leave the external cache")
            if gone and replay:
                for dgram in replay:
                    sender.send(dgram, "good")
                if tcp:
                    sender.close()
                time.sleep(1.5)
                if legit_key(LEGIT[0]) in external():
                    findings.append(f"replayed old datagrams resurrected {LEGIT[0]}")
            # Still replicating?
            fresh = "192.168.9.200"
            add_flow(a, fresh)
            if not wait(lambda: legit_key(fresh) in external(), 15):
                for _ in range(3):   # FT-FW may need a resync after the garbage
                    b.ask("-n")
                    if wait(lambda: legit_key(fresh) in external(), 5):
                        findings.append("replication needed a manual resync (-n) "
                                        "after the fuzz phase")
                        break
                else:
                    findings.append("the target no longer replicates")
            stats = b.ask("-s", "network").stdout + b.ask("--json", "-s", "network").stdout
        except StopIteration:
            stats = ""
        finally:
            logs = {n.ns: (Path(tmp) / f"{n.ns}.log").read_text()
                    for n in (a, b) if n is not None and (Path(tmp) / f"{n.ns}.log").exists()}
            for node in (a, b):
                if node is not None:
                    node.close()
    return {"sent": locals().get("sent", 0), "findings": findings, "stats": stats,
            "replayed": len(locals().get("replay") or []),
            "log": str(log_path), "daemon_logs": logs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fuzz/live.py", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", "-t", type=float, default=30)
    ap.add_argument("--mode", choices=["ftfw", "alarm", "notrack"], default="ftfw")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--peer", choices=["ours", "ref"], default="ours")
    ap.add_argument("--target", choices=["ours", "ref"], default="ours")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("live.py: needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    seed = opts.seed if opts.seed is not None else int(time.time())
    try:
        res = run(opts.seconds, opts.mode, seed, opts.peer, opts.target,
                  transport=opts.transport)
    except RuntimeError as exc:
        print(f"live.py: set-up failed: {exc}", file=sys.stderr)
        return 2
    print(res["stats"])
    for f in res["findings"]:
        print(f"FINDING: {f}  (reproduce with --seed {seed}; datagrams in {res['log']})")
    print(f"live: {res['sent']} datagrams, {res['replayed']} old datagrams replayed, "
          f"{len(res['findings'])} findings")
    return 1 if res["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
