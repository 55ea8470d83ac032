"""The impaired sync link: a userspace frame relay between two veths of one namespace.

Run inside the relay namespace (the lab does this)::

    python -m netns_lab.relay --ports a b --seed 7 --impairment '{"loss": 0.3}' \
        --control /run/ctlab/X/relay.ctl --stats /run/ctlab/X/relay.json

Frames read on one port (AF_PACKET) go through that direction's ``Shaper`` and are written
to the other port when due. A datagram UNIX socket takes JSON commands:
``{"cmd": "stats"}``, ``{"cmd": "set", "impairment": {...}}`` (e.g. partition/heal),
``{"cmd": "reset"}``. The counts are written to the stats file on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import fields

from .config import Impairment
from .shaper import Outgoing, Shaper

ETH_P_ALL = 0x0003
HELLO_FLAGS = 0x60          # conntrackd FT-FW HELLO / HELLO_BACK bits
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
MAX_FRAME = 65536
BATCH = 64


def impairment_from(data: dict, base: Impairment | None = None) -> Impairment:
    """Build an Impairment from a dict; unknown keys are an error (ValueError)."""
    known = {f.name for f in fields(Impairment)}
    bad = set(data) - known
    if bad:
        raise ValueError(f"unknown impairment setting(s): {', '.join(sorted(bad))}")
    values = dict(base.as_dict()) if base else {}
    values.update(data)
    imp = Impairment(**values)
    imp.validate()
    return imp


class Relay:
    """Two AF_PACKET ports, two shapers, one poll loop."""

    def __init__(self, ports: tuple[str, str], imp: Impairment, seed: int,
                 sync_port: int = 0) -> None:
        self.names = ports
        self.sync_port = sync_port
        # per direction: when the last sync message carrying HELLO/HELLO_BACK, and the last
        # sync message at all, passed (the FT-FW start-up handshake is visible on the wire)
        self.last_hello = [0.0, 0.0]
        self.last_sync = [0.0, 0.0]
        self.socks = []
        for name in ports:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((name, 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setblocking(False)
            self.socks.append(s)
        self.imp = imp
        self.shapers = [Shaper(imp, seed, f"{ports[0]}>{ports[1]}"),
                        Shaper(imp, seed, f"{ports[1]}>{ports[0]}")]
        self.queues: list[list[Outgoing]] = [[], []]     # heap per output port
        self.sent = [0, 0]
        self.send_errors = [0, 0]
        self.overruns = [0, 0]           # frames the kernel dropped before we read them
        self.started = time.monotonic()

    def set_impairment(self, imp: Impairment) -> None:
        self.imp = imp
        for sh in self.shapers:
            sh.set_impairment(imp)

    def _collect_overruns(self) -> None:
        for i, sock in enumerate(self.socks):
            with contextlib.suppress(OSError):
                # reading the statistics resets them: accumulate
                _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET,
                                                                      PACKET_STATISTICS, 8))
                self.overruns[i] += drops

    def stats(self) -> dict:
        self._collect_overruns()
        out: dict = {"impairment": self.imp.as_dict(),
                     "uptime_s": round(time.monotonic() - self.started, 3)}
        total: dict[str, int] = {}
        for i, sh in enumerate(self.shapers):
            d = dict(sh.counts)
            d["sent"] = self.sent[1 - i]
            d["send_errors"] = self.send_errors[1 - i]
            d["overruns"] = self.overruns[i]
            now = time.monotonic()
            out.setdefault("handshake", {})[f"{self.names[i]}>{self.names[1 - i]}"] = {
                "last_sync_s_ago": round(now - self.last_sync[i], 3) if self.last_sync[i]
                else None,
                "last_hello_s_ago": round(now - self.last_hello[i], 3) if self.last_hello[i]
                else None}
            out[f"{self.names[i]}>{self.names[1 - i]}"] = d
            for k, v in d.items():
                total[k] = total.get(k, 0) + v
        out["total"] = total
        return out

    def reset(self) -> None:
        for sh in self.shapers:
            sh.counts.clear()
        self.sent = [0, 0]
        self.send_errors = [0, 0]
        self._collect_overruns()
        self.overruns = [0, 0]

    def pump_in(self, port: int, now: float) -> None:
        sock = self.socks[port]
        shaper = self.shapers[port]
        queue = self.queues[1 - port]
        for _ in range(BATCH):
            try:
                frame, addr = sock.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:       # our own transmissions on this port
                continue
            if self.sync_port:
                self._watch_sync(port, frame, now)
            for out in shaper.submit(frame, now):
                heapq.heappush(queue, out)

    def _watch_sync(self, port: int, frame: bytes, now: float) -> None:
        """Note FT-FW messages (and HELLO bits) of the sync port, as they came in."""
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == 0x0800 and len(frame) >= 34 and frame[23] == 17:
            udp = 14 + (frame[14] & 0x0F) * 4
        elif ethertype == 0x86DD and len(frame) >= 62 and frame[20] == 17:
            udp = 54
        else:
            return
        if len(frame) < udp + 16:
            return
        if int.from_bytes(frame[udp + 2:udp + 4], "big") != self.sync_port:
            return
        self.last_sync[port] = now
        off = udp + 8
        while off + 8 <= len(frame):
            if frame[off + 1] & HELLO_FLAGS:
                self.last_hello[port] = now
                return
            length = int.from_bytes(frame[off + 2:off + 4], "big")
            if length < 8:
                return
            off += length

    def pump_out(self, now: float) -> float | None:
        """Send what is due; return the next due time (or None)."""
        nxt = None
        for port in (0, 1):
            queue = self.queues[port]
            for out in self.shapers[1 - port].release(now):
                heapq.heappush(queue, out)
            while queue and queue[0].due <= now:
                out = heapq.heappop(queue)
                try:
                    self.socks[port].send(out.frame)
                    self.sent[port] += 1
                except OSError:
                    self.send_errors[port] += 1
            for t in (queue[0].due if queue else None, self.shapers[1 - port].next_release):
                if t is not None and (nxt is None or t < nxt):
                    nxt = t
        return nxt


def serve(relay: Relay, control: socket.socket | None, stop: list[bool]) -> None:
    """The poll loop: runs until ``stop[0]`` is set by a signal."""
    poller = select.poll()
    fd_port = {}
    for i, s in enumerate(relay.socks):
        poller.register(s, select.POLLIN)
        fd_port[s.fileno()] = i
    if control is not None:
        poller.register(control, select.POLLIN)
    nxt: float | None = None
    while not stop[0]:
        now = time.monotonic()
        timeout = 200 if nxt is None else max(0, int((nxt - now) * 1000) + 1)
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd, _ev in events:
            if fd in fd_port:
                relay.pump_in(fd_port[fd], now)
            elif control is not None:
                handle_control(relay, control)
        nxt = relay.pump_out(time.monotonic())


def handle_control(relay: Relay, control: socket.socket) -> None:
    try:
        data, peer = control.recvfrom(65536)
    except BlockingIOError:
        return
    try:
        req = json.loads(data)
        cmd = req.get("cmd")
        if cmd == "stats":
            reply = relay.stats()
        elif cmd == "set":
            relay.set_impairment(impairment_from(req.get("impairment", {}), relay.imp))
            reply = {"ok": True, "impairment": relay.imp.as_dict()}
        elif cmd == "reset":
            relay.reset()
            reply = {"ok": True}
        else:
            reply = {"error": f"unknown command {cmd!r}"}
    except (ValueError, TypeError, AttributeError) as exc:
        reply = {"error": str(exc)}
    if peer:
        with contextlib.suppress(OSError):
            control.sendto(json.dumps(reply).encode(), peer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netns_lab.relay",
                                 description="ctools lab: impaired frame relay between two ports")
    ap.add_argument("--ports", nargs=2, required=True, metavar=("A", "B"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sync-port", type=int, default=0,
                    help="UDP port of conntrackd's sync traffic (to watch its handshake)")
    ap.add_argument("--impairment", default="{}", help="JSON object of Impairment settings")
    ap.add_argument("--control", help="UNIX datagram socket path for commands")
    ap.add_argument("--stats", help="write the counts here (JSON) on exit")
    args = ap.parse_args(argv)
    try:
        imp = impairment_from(json.loads(args.impairment))
    except ValueError as exc:
        print(f"relay: bad --impairment: {exc}", file=sys.stderr)
        return 2
    try:
        relay = Relay((args.ports[0], args.ports[1]), imp, args.seed, args.sync_port)
    except OSError as exc:
        print(f"relay: cannot open ports {args.ports}: {exc}", file=sys.stderr)
        return 1
    control = None
    if args.control:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.control)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        control.bind(args.control)
        control.setblocking(False)
    stop = [False]

    def on_signal(_sig, _frm) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("relay ready", flush=True)
    try:
        serve(relay, control, stop)
    finally:
        if args.stats:
            with open(args.stats, "w") as fh:
                json.dump(relay.stats(), fh)
        if args.control:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.control)
    return 0


def query(control_path: str, request: dict, timeout: float = 2.0) -> dict:
    """Send one command to a running relay and return its JSON reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = f"{control_path}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        s.bind(path)
        s.settimeout(timeout)
        s.sendto(json.dumps(request).encode(), control_path)
        data = s.recv(65536)
        return json.loads(data)
    finally:
        s.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
