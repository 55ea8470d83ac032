"""TEMPORARY stand-in for ctools.sync while the real core is being written. Remove when it lands.

Best-effort only (NOTRACK-like), JSON payloads behind an 8-byte header. Same API shape.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ctools.model import Entry, Tuple

_HDR = struct.Struct(">BBHI")


@dataclass
class SyncParams:
    mode: str = "ftfw"
    rng: object = None
    mtu: int = 1500
    transport: str = "udp"
    initial_seq: int = 0
    auth_key: bytes | None = None
    epoch: int = 0


class Apply:
    def __init__(self, kind: str, obj: Entry, seq: int) -> None:
        self.seq = seq
        self.kind = kind
        self.obj = obj


class ResyncRequested:
    pass


class PeerRestarted:
    pass


class PeerActive:
    pass


class _Stats:
    def __init__(self) -> None:
        self.malformed = 0
        self.retransmitted = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


class StandInSync:
    def __init__(self, params: SyncParams, now: float) -> None:
        self.seq = params.initial_seq
        self.out: list[bytes] = []
        self.stats = _Stats()
        self.deadline = now + 1.0

    def _send(self, kind: str, e: Entry) -> None:
        body = json.dumps([kind, e.orig.key(), e.status, e.tcp_state, e.timeout,
                           e.mark]).encode()
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.out.append(_HDR.pack(0x10, 0, 8 + len(body), self.seq) + body)

    def local_update(self, kind: str, obj: Entry, now: float) -> None:
        if kind != "dump":
            self._send(kind, obj)

    def bulk_send(self, objs, now: float) -> None:
        for e in objs:
            self._send("new", e)

    def request_resync(self, now: float) -> None:
        self.seq += 1
        self.out.append(_HDR.pack(0x1A, 0x02, 8, self.seq))

    def receive(self, datagram: bytes, now: float, peer_ok: bool = True) -> list:
        try:
            vt, flags, ln, seq = _HDR.unpack_from(datagram)
            if flags & 0x02:
                return [ResyncRequested()]
            if flags:
                return []
            kind, key, status, state, timeout, mark = json.loads(datagram[8:ln])
            e = Entry(Tuple(*key), status=status, tcp_state=state, timeout=timeout, mark=mark)
            return [Apply(kind, e, seq)]
        except Exception:
            self.stats.malformed += 1
            return []

    def tick(self, now: float) -> None:
        if now >= self.deadline:
            self.deadline = now + 1.0
            self.seq += 1
            self.out.append(_HDR.pack(0x1A, 0x10, 8, self.seq))

    def next_deadline(self) -> float | None:
        return self.deadline

    def outgoing(self, now: float | None = None) -> list[bytes]:
        out, self.out = self.out, []
        return out


def make_sync(params: SyncParams, now: float) -> StandInSync:
    return StandInSync(params, now)
