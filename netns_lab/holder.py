"""Hold packets of a replica that is taking over until its commit has finished.

An alternative to raising the VIPs after the commit: the VIPs go up at once (keepalived's
own order) and, while the gate set of the rule-set is filled, forwarded TCP packets are
queued (NFQUEUE, before conntrack) to this program, which keeps them without a verdict.
``release`` accepts every held packet — they then meet conntrack, which by now knows their
flows — and lets later ones through at once; ``hold`` starts holding again.

    python -m netns_lab.holder --queue 7 --fifo /run/ctlab/X/fw2.hold --stats fw2.hold.json

Commands are lines written to the FIFO (``echo release > fifo`` from the HA hook costs no
process start); the counts are rewritten to the stats file after each command.

Speaks nfnetlink_queue directly (no library): bind, receive packet ids, send verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4

NLMSG = struct.Struct("=IHHII")
NFGEN = struct.Struct("=BBH")          # family, version, res_id (big endian value)


def _attr(atype: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, atype) + payload + b"\0" * ((4 - length % 4) % 4)


def _msg(mtype: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return NLMSG.pack(NLMSG.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | mtype, flags, seq,
                      0) + body


def config_bind(queue: int, seq: int = 1) -> bytes:
    cmd = _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 8192))
    return _msg(NFQNL_MSG_CONFIG, queue, cmd + params + maxlen, seq, NLM_F_REQUEST | NLM_F_ACK)


def verdict(queue: int, packet_id: int, seq: int) -> bytes:
    return _msg(NFQNL_MSG_VERDICT, queue,
                _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)), seq)


def packet_ids(data: bytes) -> list[int]:
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink datagram."""
    ids = []
    off = 0
    while off + NLMSG.size <= len(data):
        length, mtype, _f, _s, _p = NLMSG.unpack_from(data, off)
        if length < NLMSG.size:
            break
        if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + NLMSG.size + NFGEN.size
            end = off + length
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR and alen >= 8:
                    ids.append(struct.unpack_from("!I", data, a + 4)[0])
                    break
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids


class Holder:
    """The queue socket and the held packet ids."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.seq = 1
        self.sock.send(config_bind(queue, self.seq))
        reply = self.sock.recv(65536)
        _len, mtype, _f, _s, _p = NLMSG.unpack_from(reply, 0)
        if mtype == 2:                           # NLMSG_ERROR
            err = struct.unpack_from("=i", reply, NLMSG.size)[0]
            if err:
                raise OSError(-err, f"cannot bind NFQUEUE {queue}: {os.strerror(-err)}")
        self.sock.setblocking(False)
        self.holding = True
        self.held: list[int] = []
        self.counts = {"held": 0, "released": 0, "passed": 0, "max_held": 0,
                       "last_release_ms": 0.0}

    def on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:                      # ENOBUFS: the kernel dropped some
                self.counts["enobufs"] = self.counts.get("enobufs", 0) + 1
                continue
            for pid in packet_ids(data):
                if self.holding:
                    self.held.append(pid)
                    self.counts["held"] += 1
                    self.counts["max_held"] = max(self.counts["max_held"], len(self.held))
                else:
                    self._accept(pid)
                    self.counts["passed"] += 1

    def _accept(self, pid: int) -> None:
        self.seq += 1
        with contextlib.suppress(OSError):
            self.sock.send(verdict(self.queue, pid, self.seq))

    def release(self) -> int:
        t0 = time.monotonic()
        n = len(self.held)
        for pid in self.held:
            self._accept(pid)
        self.held.clear()
        self.holding = False
        self.counts["released"] += n
        self.counts["last_release_ms"] = round((time.monotonic() - t0) * 1000, 3)
        return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netns_lab.holder",
                                 description="ctools lab: hold queued packets until released")
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--fifo", required=True, help="named pipe for 'hold'/'release' lines")
    ap.add_argument("--stats", required=True, help="JSON counts, rewritten after commands")
    args = ap.parse_args(argv)
    try:
        holder = Holder(args.queue)
    except OSError as exc:
        print(f"holder: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.fifo)
    os.mkfifo(args.fifo, 0o600)
    # read-write, so the pipe never reports end-of-file between writers
    fifo = os.open(args.fifo, os.O_RDWR | os.O_NONBLOCK)
    stop = [False]

    def on_signal(_sig, _frm) -> None:
        stop[0] = True

    def write_stats() -> None:
        with open(args.stats + ".tmp", "w") as fh:
            json.dump(dict(holder.counts, holding=holder.holding, queued=len(holder.held),
                           at=time.time()), fh)
        os.replace(args.stats + ".tmp", args.stats)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller = select.poll()
    poller.register(holder.sock, select.POLLIN)
    poller.register(fifo, select.POLLIN)
    write_stats()
    pending = b""
    try:
        while not stop[0]:
            try:
                events = poller.poll(500)
            except InterruptedError:
                continue
            for fd, _ev in events:
                if fd == holder.sock.fileno():
                    holder.on_readable()
                    continue
                try:
                    pending += os.read(fifo, 4096)
                except BlockingIOError:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    cmd = line.decode(errors="replace").strip()
                    if cmd == "release":
                        holder.on_readable()      # take what is queued right now, too
                        holder.release()
                    elif cmd == "hold":
                        holder.holding = True
                write_stats()
    finally:
        holder.release()
        os.close(fifo)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.fifo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
