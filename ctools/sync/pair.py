"""Two protocol cores joined by a seeded, impaired in-memory link, on a virtual clock.

A small deterministic driver for tests, fuzzers and quick experiments (the full simulator lives
in ``sim/``). Each side owns an internal cache (what it replicates) and an external cache (what
it received); ``Apply``/``ResyncRequested`` events are handled as the daemon does.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from ctools.model import Expect
from ctools.sync import make_sync, wire
from ctools.sync.core import Apply, ResyncRequested, SyncMode, SyncParams


class Node:
    """One replica: a core plus its two caches (key -> object)."""

    def __init__(self, name: str, params: SyncParams, now: float) -> None:
        self.name = name
        self.params = params
        self.core: SyncMode = make_sync(params, now)
        self.internal: dict = {}
        self.external: dict = {}
        self.events: list = []

    def update(self, kind: str, obj, now: float) -> None:
        """A local kernel event: update the internal cache and replicate it."""
        key = wire.obj_key(obj)
        if kind == "del":
            self.internal.pop(key, None)
        else:
            self.internal[key] = obj
        self.core.local_update(kind, obj, now)

    def handle(self, events: list, now: float) -> None:
        for ev in events:
            self.events.append(ev)
            if isinstance(ev, Apply):
                key = wire.obj_key(ev.obj)
                if ev.kind == "del":
                    self.external.pop(key, None)
                else:
                    self.external[key] = ev.obj
            elif isinstance(ev, ResyncRequested):
                self.core.bulk_send(list(self.internal.values()), now)


class Pair:
    """Nodes ``a`` and ``b``; datagrams a->b suffer ``loss_ab`` (probability), b->a
    ``loss_ba``; every datagram takes ``delay`` (+ up to ``jitter``, which reorders).
    ``tamper(direction, datagram, now)`` may return extra datagrams to inject (an attacker on
    the link) — they are delivered like genuine ones; ``drop(direction, datagram, now)``
    returning True loses that datagram (scripted loss)."""

    def __init__(self, params_a: SyncParams, params_b: SyncParams, seed: int = 0,
                 loss_ab: float = 0.0, loss_ba: float = 0.0, delay: float = 0.0005,
                 jitter: float = 0.0, dup: float = 0.0,
                 tamper: Callable | None = None, drop: Callable | None = None,
                 now: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.a = Node("a", params_a, now)
        self.b = Node("b", params_b, now)
        self.loss = {"ab": loss_ab, "ba": loss_ba}
        self.delay, self.jitter, self.dup = delay, jitter, dup
        self.tamper = tamper
        self.drop = drop
        self._heap: list = []
        self._n = 0
        self.delivered = 0
        self.dropped = 0

    def _send(self, src: Node, now: float) -> None:
        d = "ab" if src is self.a else "ba"
        for dgram in src.core.outgoing(now):
            extra = self.tamper(d, dgram, now) if self.tamper else None
            copies = 2 if self.rng.random() < self.dup else 1
            if self.drop is not None and self.drop(d, dgram, now):
                copies = 0
                self.dropped += 1
            for _ in range(copies):
                if self.rng.random() < self.loss[d]:
                    self.dropped += 1
                    continue
                self._push(now + self.delay + self.rng.random() * self.jitter, d, dgram)
            for x in extra or ():
                self._push(now + self.delay + self.rng.random() * self.delay, d, x)

    def _push(self, t: float, d: str, dgram: bytes) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, d, dgram))

    def flush(self) -> None:
        """Transmit whatever both sides have queued, now."""
        self._send(self.a, self.now)
        self._send(self.b, self.now)

    def run(self, until: float) -> None:
        """Advance the virtual clock to ``until``, delivering datagrams and firing timers."""
        self.flush()
        while True:
            t_net = self._heap[0][0] if self._heap else None
            deadlines = [x for x in (self.a.core.next_deadline(), self.b.core.next_deadline())
                         if x is not None]
            t_tmr = min(deadlines) if deadlines else None
            nxt = min(x for x in (t_net, t_tmr, until) if x is not None)
            if nxt > until or (nxt == until and t_net != until and t_tmr != until):
                self.now = until
                return
            self.now = nxt
            if t_net is not None and t_net <= nxt:
                _t, _n, d, dgram = heapq.heappop(self._heap)
                dst = self.b if d == "ab" else self.a
                self.delivered += 1
                dst.handle(dst.core.receive(dgram, nxt), nxt)
                self._send(dst, nxt)
            else:
                for node in (self.a, self.b):
                    dl = node.core.next_deadline()
                    if dl is not None and dl <= nxt:
                        node.core.tick(nxt)
                        self._send(node, nxt)

    def converged(self) -> bool:
        """Does b's external cache equal a's internal cache (keys and encoded state)?"""
        return diff(self.a.internal, self.b.external) == (set(), set(), set())


def _state(obj) -> bytes:
    """Wire encoding of an object's state (what a receiver can know of it)."""
    if isinstance(obj, Expect):
        return wire.encode_exp_payload(obj)
    return wire.encode_ct_payload(obj)


def diff(internal: dict, external: dict) -> tuple[set, set, set]:
    """(missing at the receiver, extra at the receiver, different) keys."""
    missing = internal.keys() - external.keys()
    extra = external.keys() - internal.keys()
    changed = {k for k in internal.keys() & external.keys()
               if _state(internal[k]) != _state(external[k])}
    return set(missing), set(extra), changed
