"""Kernel-side workloads: the conntrack events each replica's kernel produces.

Each replica owns a disjoint address block (10.<replica>.x.y), so every flow has exactly one
owner and the expected content of a peer's external cache is the owner's internal cache.
A workload has three phases, all drawn from the replica's own random stream:

1. *burst*: ``entries`` flows appear within about a second (TCP NEW then ESTABLISHED in the
   same event batch — the C daemon then sends CT_UPD first, spec §4.2 — and some UDP flows);
2. *churn*: for ``churn_s`` seconds, Poisson-timed batches of new short-lived flows, updates
   (mark/timeout changes, TCP closing states) and deletions;
3. *teardown*: ``delete_fraction`` of the surviving flows are destroyed in one burst.

Events are generated online: a replica whose daemon is down keeps a frozen table (its traffic
is assumed to have failed over), so the workload skips it until it restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ctools.model import (
    AF_INET,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_STATE,
    Entry,
    Tuple,
)
from sim.clock import EventQueue, us
from sim.rng import stream

NEW = "new"
UPDATE = "update"
DESTROY = "destroy"

# (kind, entry) as a ctnetlink event would deliver it; entries here carry the full state.
KernelEvent = tuple[str, Entry]


def view(entry: Entry) -> tuple:
    """The replicated projection of an entry: what a peer's external cache must agree on."""
    return (entry.key(), entry.status, entry.tcp_state, entry.timeout, entry.mark)


@dataclass
class WorkloadSpec:
    """Shape of the workload run on every replica."""

    entries: int = 100
    burst_s: float = 1.0
    churn_s: float = 10.0
    churn_rate: float = 20.0        # event batches per second per replica
    batch_max: int = 8              # kernel events handled per batch (EventIterationLimit-ish)
    udp_fraction: float = 0.2
    delete_fraction: float = 0.5

    @property
    def end_s(self) -> float:
        """Relative time at which the teardown burst happens."""
        return self.burst_s + self.churn_s


def _flow(replica: int, n: int, proto: int) -> tuple[Tuple, Tuple]:
    src = f"10.{replica}.{(n >> 8) & 255}.{n & 255}"
    dst = f"198.51.{100 + (n >> 14) % 4}.{1 + n % 250}"
    sport = 1024 + (n * 7919) % 60000
    dport = 443 if proto == IPPROTO_TCP else 53
    return (Tuple(AF_INET, src, dst, proto, sport, dport),
            Tuple(AF_INET, dst, src, proto, dport, sport))


def _entry(orig: Tuple, reply: Tuple, **kw) -> Entry:
    return Entry(orig, reply, **kw)


class Workload:
    """Drives one replica's kernel table. ``emit(replica, batch)`` receives each event batch."""

    def __init__(self, seed: int, replica: int, spec: WorkloadSpec, queue: EventQueue,
                 start_us: int, emit: Callable[[int, list[KernelEvent]], None],
                 is_up: Callable[[int], bool]) -> None:
        self.replica = replica
        self.spec = spec
        self.queue = queue
        self.start_us = start_us
        self.emit = emit
        self.is_up = is_up
        self.rng = stream(seed, f"workload/{replica}")
        self.table: dict[tuple, Entry] = {}     # the kernel's conntrack table
        self._serial = 0
        self.done = False

    # -- helpers --------------------------------------------------------------------------------
    def _new_flow(self) -> list[KernelEvent]:
        self._serial += 1
        udp = self.rng.random() < self.spec.udp_fraction
        proto = IPPROTO_UDP if udp else IPPROTO_TCP
        orig, reply = _flow(self.replica, self._serial, proto)
        if udp:
            e = _entry(orig, reply, status=IPS_CONFIRMED, timeout=30, mark=0)
            self.table[e.key()] = e
            return [(NEW, e)]
        syn = _entry(orig, reply, status=IPS_CONFIRMED, tcp_state=TCP_STATE["SYN_SENT"],
                     timeout=120, mark=0)
        est = _entry(orig, reply, status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
                     tcp_state=TCP_STATE["ESTABLISHED"], timeout=432000, mark=0)
        self.table[est.key()] = est
        return [(NEW, syn), (UPDATE, est)]

    def _update(self, key: tuple) -> list[KernelEvent]:
        old = self.table[key]
        e = _entry(old.orig, old.reply, status=old.status, tcp_state=old.tcp_state,
                   timeout=old.timeout, mark=old.mark)
        r = self.rng.random()
        if old.tcp_state is not None and r < 0.3:
            e.tcp_state = TCP_STATE["FIN_WAIT"] if old.tcp_state == TCP_STATE["ESTABLISHED"] \
                else TCP_STATE["TIME_WAIT"]
            e.timeout = 120
        elif r < 0.6:
            e.mark = self.rng.randrange(1, 1 << 16)
        else:
            e.timeout = self.rng.randrange(30, 432000)
            if old.tcp_state is None:
                e.status = IPS_CONFIRMED | IPS_SEEN_REPLY
        self.table[key] = e
        return [(UPDATE, e)]

    def _destroy(self, key: tuple) -> list[KernelEvent]:
        return [(DESTROY, self.table.pop(key))]

    def _pick(self) -> tuple | None:
        if not self.table:
            return None
        # dict order is insertion order: deterministic
        keys = list(self.table)
        return keys[self.rng.randrange(len(keys))]

    # -- phases ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Schedule the burst, the churn and the teardown."""
        spec = self.spec
        batches = max(1, -(-spec.entries // spec.batch_max))
        left = spec.entries
        for i in range(batches):
            n = min(spec.batch_max, left)
            left -= n
            t = self.start_us + us(spec.burst_s * i / batches) + self.rng.randrange(1000)
            self.queue.at(t, self._burst_batch, n)
        if spec.churn_s > 0 and spec.churn_rate > 0:
            self.queue.at(self.start_us + us(spec.burst_s) + self._gap(), self._churn)
        self.queue.at(self.start_us + us(spec.end_s), self._teardown)

    def _gap(self) -> int:
        return max(1, us(self.rng.expovariate(self.spec.churn_rate)))

    def _burst_batch(self, n: int) -> None:
        if not self.is_up(self.replica):
            return
        batch: list[KernelEvent] = []
        for _ in range(n):
            batch += self._new_flow()
        self.emit(self.replica, batch)

    def _churn(self) -> None:
        if self.queue.now >= self.start_us + us(self.spec.end_s):
            return
        self.queue.after(self._gap(), self._churn)
        if not self.is_up(self.replica):
            return
        batch: list[KernelEvent] = []
        for _ in range(1 + self.rng.randrange(self.spec.batch_max)):
            r = self.rng.random()
            key = self._pick()
            if r < 0.35 or key is None:
                batch += self._new_flow()
            elif r < 0.75:
                batch += self._update(key)
            else:
                batch += self._destroy(key)
        self.emit(self.replica, batch)

    def _teardown(self) -> None:
        self.done = True
        if not self.is_up(self.replica):
            return
        keys = [k for k in self.table if self.rng.random() < self.spec.delete_fraction]
        for i in range(0, len(keys), self.spec.batch_max):
            self.emit(self.replica, [ev for k in keys[i:i + self.spec.batch_max]
                                     for ev in self._destroy(k)])
