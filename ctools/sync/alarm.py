"""ALARM: periodic refresh (spec §5.1). Every internal-cache object is re-sent at a random
moment within ``refresh_time`` seconds, forever; no acknowledgements, no control messages.
The receiver's caller expires external entries after ``cache_timeout`` seconds without news."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

from ctools.sync import guard as G
from ctools.sync import wire
from ctools.sync.core import SyncMode, SyncParams
from ctools.sync.queues import ObjItem, TxQueue


class AlarmSync(SyncMode):
    """Replication by periodic re-announcement."""

    mode = "alarm"

    def __init__(self, params: SyncParams, now: float) -> None:
        super().__init__(params, now)
        self._tx = TxQueue()
        self._rng = params.rng or random.Random()
        self._timers: dict[tuple, list] = {}    # key -> [deadline, kind, obj]
        self._heap: list[tuple[float, int, tuple]] = []
        self._tie = 0
        self.guard.fill_anywhere = True

    def _delay(self) -> float:
        # C: rand() % RefreshTime + 1 seconds, plus (rand() % 5 + 1) * 200000 - 1 microseconds
        r = self._rng
        return r.randrange(max(1, self.params.refresh_time)) + 1 + \
            ((r.randrange(5) + 1) * 200000 - 1) / 1e6

    def _arm(self, key: tuple, kind: str, obj, now: float) -> None:
        deadline = now + self._delay()
        self._timers[key] = [deadline, kind, obj]
        self._tie += 1
        heapq.heappush(self._heap, (deadline, self._tie, key))

    def local_update(self, kind: str, obj, now: float) -> None:
        self.now = now
        key = wire.obj_key(obj)
        if kind == "dump":
            self._arm(key, "new", obj, now)
            return
        if kind not in wire.KIND_TYPE_CT:
            raise ValueError(f"unknown update kind {kind!r}")
        self._tx.put_object(kind, obj)
        if kind == "del":
            self._timers.pop(key, None)
        else:
            self._arm(key, kind, obj, now)

    def bulk_send(self, objs: Iterable, now: float) -> None:
        """Nothing: ALARM re-announces everything by itself (as the C daemon, -B is a no-op)."""
        self.now = now

    def request_resync(self, now: float) -> None:
        """Nothing (as C): the peer's refresh timers will re-send its table."""
        self.now = now

    def tick(self, now: float) -> None:
        self.now = now
        heap, timers = self._heap, self._timers
        while heap and heap[0][0] <= now:
            deadline, _tie, key = heapq.heappop(heap)
            t = timers.get(key)
            if t is None or t[0] != deadline:
                continue                       # re-armed or deleted since
            _d, kind, obj = t
            self._tx.put_object(kind, obj)
            self._arm(key, kind, obj, now)

    def next_deadline(self) -> float | None:
        heap, timers = self._heap, self._timers
        while heap:
            deadline, _tie, key = heap[0]
            t = timers.get(key)
            if t is not None and t[0] == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    @property
    def tx_queue_len(self) -> int:
        return len(self._tx)

    def _transmit_round(self) -> None:
        fifo = self._tx.fifo
        while fifo:
            it = fifo.popleft()
            it.where = None
            if not isinstance(it, ObjItem):
                continue
            self._tx.objs.pop(it.key, None)
            try:
                msg = wire.encode_message(it.kind, it.obj, self._next_seq(), 0, self._opts)
            except (ValueError, TypeError, OSError, OverflowError):
                self.stats.send_malformed += 1
                continue
            self._emit(msg)

    def _on_message(self, h: wire.Header, msg: bytes, now: float, events: list) -> bool:
        if h.flags:
            return True                         # control: ignored, no counters (as C)
        if h.type > wire.EXP_DEL:
            self.stats.count_malformed(wire.BAD_TYPE)
            return False
        g = self.guard
        if not g.strict:                        # C: sequence numbers never recorded
            self._decode_and_apply(h, msg, events, g.classify(h.seq, msg))
            return True
        v = g.classify(h.seq, msg)
        if v.cls == G.REPLAY:
            self.stats.count_rejected("replayed")
            return False
        if v.cls in (G.FAR, G.OLD):
            if v.cls == G.FAR:
                self.stats.count_rejected("seq_implausible")
            else:
                self.stats.seq_before += 1      # (the C ALARM receiver never counts)
            run = g.candidate(h, msg, v, now, self.stats.pkts_recv)
            if run is None:
                return False
            for hh, mm in run:
                vv = g.classify(hh.seq, mm)
                vv.cls = G.IN_SYNC
                if self._stale(hh, mm, vv):
                    continue
                g.accept(vv)
                self._decode_and_apply(hh, mm, events, vv)
            return True
        if self._stale(h, msg, v):
            return False
        g.accept(v)
        self._decode_and_apply(h, msg, events, v)
        return True
