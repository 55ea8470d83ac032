"""NOTRACK: best-effort replication (spec §5.2). Objects are sent once, no acknowledgements;
ALIVE every second of silence; RESYNC requests and bulk sends work as in FT-FW."""

from __future__ import annotations

from ctools.sync import guard as G
from ctools.sync import wire
from ctools.sync.core import ResyncRequested, SyncMode, SyncParams
from ctools.sync.queues import CtlItem, ObjItem, TxQueue


class NotrackSync(SyncMode):
    """Send-and-forget replication."""

    mode = "notrack"

    def __init__(self, params: SyncParams, now: float) -> None:
        super().__init__(params, now)
        self._tx = TxQueue()
        self._alive_at = now + params.alive_interval
        self.guard.fill_anywhere = True
        if params.startup_resync:
            self.request_resync(now)

    def local_update(self, kind: str, obj, now: float) -> None:
        self.now = now
        if kind == "dump":
            return
        if kind not in wire.KIND_TYPE_CT:
            raise ValueError(f"unknown update kind {kind!r}")
        self._tx.put_object(kind, obj)

    def request_resync(self, now: float) -> None:
        self.now = now
        self._tx.put_control(CtlItem(wire.F_RESYNC, 0, 0))

    def tick(self, now: float) -> None:
        self.now = now
        if now >= self._alive_at:
            self._tx.put_control(CtlItem(wire.F_ALIVE))
            self._alive_at = now + self.params.alive_interval

    def next_deadline(self) -> float | None:
        return self._alive_at

    @property
    def tx_queue_len(self) -> int:
        return len(self._tx)

    def _transmit_round(self) -> None:
        fifo = self._tx.fifo
        if not fifo:
            return
        while fifo:
            it = fifo.popleft()
            it.where = None
            seq = self._next_seq()
            if isinstance(it, ObjItem):
                self._tx.objs.pop(it.key, None)
                try:
                    msg = wire.encode_message(it.kind, it.obj, seq, 0, self._opts)
                except (ValueError, TypeError, OSError, OverflowError):
                    self.stats.send_malformed += 1
                    continue
            else:
                msg = wire.encode_control(it.flags, seq, it.frm, it.to)
            self._emit(msg)
        self._alive_at = self.now + self.params.alive_interval

    def _on_message(self, h: wire.Header, msg: bytes, now: float, events: list) -> bool:
        g = self.guard
        v = g.classify(h.seq, msg)
        if v.cls == G.REPLAY:
            self.stats.count_rejected("replayed")
            return False
        if v.cls == G.FAR:
            self.stats.count_rejected("seq_implausible")
            return self._candidate(h, msg, v, events)
        if g.strict and v.cls == G.OLD:
            g.count_c(v)
            return self._candidate(h, msg, v, events)
        return self._process(h, msg, v, events)

    def _process(self, h: wire.Header, msg: bytes, v: G.Verdict, events: list) -> bool:
        if h.is_data:
            r = "data"
        elif h.type == wire.CTL and not h.flags & (wire.F_ACK | wire.F_NACK) \
                and h.flags & (wire.F_RESYNC | wire.F_ALIVE):
            r = "ctl"
        else:
            self.stats.count_malformed(wire.BAD_HEADER)   # includes FT-FW ACK/NACK (as C)
            return False
        if r == "data" and self._stale(h, msg, v):
            return False
        self.guard.count_c(v)
        if v.cls == G.OLD:
            self.guard.set_last(h.seq)                    # C: old ones are recorded too
        else:
            self.guard.accept(v)
        if r == "data":
            self._decode_and_apply(h, msg, events, v)
        elif h.flags & wire.F_RESYNC:
            self.stats.resync_requests += 1
            events.append(ResyncRequested("peer"))
        return True

    def _candidate(self, h: wire.Header, msg: bytes, v: G.Verdict, events: list) -> bool:
        run = self.guard.candidate(h, msg, v, self.now, self.stats.pkts_recv)
        if run is None:
            return False
        ok = False
        for hh, mm in run:
            vv = self.guard.classify(hh.seq, mm)
            vv.cls = G.IN_SYNC
            ok = self._process(hh, mm, vv, events) or ok
        return ok
