"""The impaired network between replicas: one seeded model per direction.

What a datagram can meet on its way (all decided by the direction's own random stream):

* a partition window covering its send time (asymmetric: ``a>b`` cuts one direction only);
* loss — uniform, or bursty with a two-state Gilbert–Elliott chain;
* corruption of ``corrupt_bits`` random payload bits; the receiving kernel then recomputes the
  real 16-bit ones'-complement UDP checksum and drops the datagram unless the checksum still
  matches (``Checksum off`` sends 0x0000 = "not checked", spec §1.7);
* delay: a fixed minimum plus an exponential part; delivery stays FIFO unless the datagram is
  picked for reordering, which holds it back by up to ``reorder_window_us``;
* duplication: a second copy with its own delay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from sim.clock import EventQueue
from sim.rng import stream

IP_UDP_OVERHEAD = 28  # IPv4 + UDP header bytes on the wire (spec §1.6)


@dataclass(frozen=True)
class Partition:
    """The direction ``src -> dst`` is cut during ``[start_us, end_us)`` (relative to run start)."""

    src: int
    dst: int
    start_us: int
    end_us: int

    def __str__(self) -> str:
        return f"{self.src}>{self.dst}@{self.start_us / 1e6:g}+{(self.end_us - self.start_us) / 1e6:g}"


@dataclass
class LinkFaults:
    """Impairments of one direction. Probabilities are per datagram."""

    loss: float = 0.0
    burst_loss: bool = False       # Gilbert–Elliott instead of independent loss
    burst_len: float = 4.0         # mean length of a loss burst (datagrams), GE mode
    reorder: float = 0.0
    reorder_window_us: int = 20_000
    duplicate: float = 0.0
    corrupt: float = 0.0
    corrupt_bits: int = 1
    delay_min_us: int = 200
    delay_mean_us: int = 300       # mean of the exponential part

    def describe(self) -> str:
        kind = f"ge(burst={self.burst_len:g})" if self.burst_loss else "uniform"
        return (f"loss={self.loss:g}/{kind} reorder={self.reorder:g} dup={self.duplicate:g} "
                f"corrupt={self.corrupt:g}x{self.corrupt_bits}b "
                f"delay={self.delay_min_us}+exp({self.delay_mean_us})us")


class GilbertElliott:
    """Two-state loss chain: Good loses nothing, Bad loses everything.

    Parameterised by the long-run loss rate ``p`` and the mean burst length ``L`` (datagrams):
    P(bad->good) = 1/L and P(good->bad) = p/(L(1-p)), so the stationary P(bad) is ``p``.
    """

    __slots__ = ("bad", "p_gb", "p_bg")

    def __init__(self, p: float, burst_len: float) -> None:
        self.p_bg = 1.0 / max(1.0, burst_len)
        self.p_gb = 1.0 if p >= 1.0 else p * self.p_bg / (1.0 - p)
        self.bad = False

    def lose(self, u: float) -> bool:
        """Advance one datagram with the uniform draw ``u``; True when it is lost."""
        if self.bad:
            self.bad = u >= self.p_bg
        else:
            self.bad = u < self.p_gb
        return self.bad


def internet_checksum(data: bytes) -> int:
    """16-bit ones'-complement sum (RFC 1071) of ``data`` — what the UDP checksum is built on."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@dataclass
class NetStats:
    """Network counters, by fate."""

    sent: int = 0
    delivered: int = 0
    bytes_sent: int = 0            # on the wire, IP+UDP headers included
    dropped_loss: int = 0
    dropped_partition: int = 0
    dropped_checksum: int = 0
    dropped_down: int = 0          # receiver's daemon not running
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    corrupt_delivered: int = 0     # corrupted datagrams that reached the daemon
    checksum_escapes: int = 0      # corrupted yet the UDP checksum still matched
    per_direction_drops: dict = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return (self.dropped_loss + self.dropped_partition + self.dropped_checksum
                + self.dropped_down)


# deliver(dst, src, datagram, datagram_id, corrupted)
Deliver = Callable[[int, int, bytes, int, bool], None]


class Direction:
    """The seeded fault model of one direction ``src -> dst``."""

    __slots__ = ("src", "dst", "faults", "rng", "ge", "last_arrival_us")

    def __init__(self, seed: int, src: int, dst: int, faults: LinkFaults) -> None:
        self.src = src
        self.dst = dst
        self.rng = stream(seed, f"link/{src}>{dst}")
        self.last_arrival_us = 0
        self.configure(faults)

    def configure(self, faults: LinkFaults) -> None:
        """Replace this direction's impairments (its own copy; the GE chain restarts Good)."""
        self.faults = dataclasses.replace(faults)
        self.ge = GilbertElliott(faults.loss, faults.burst_len) if faults.burst_loss else None

    def lost(self) -> bool:
        u = self.rng.random()
        if self.ge is not None:
            return self.ge.lose(u)
        return u < self.faults.loss

    def delay_us(self) -> int:
        f = self.faults
        return f.delay_min_us + int(self.rng.expovariate(1.0 / f.delay_mean_us)) \
            if f.delay_mean_us > 0 else f.delay_min_us

    def corrupt(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(self.faults.corrupt_bits):
            bit = self.rng.randrange(len(buf) * 8)
            buf[bit >> 3] ^= 0x80 >> (bit & 7)
        return bytes(buf)


class Network:
    """Carries datagrams between replicas through per-direction fault models.

    ``checksum`` is the senders' ``Checksum`` option (authentication, when on, is done by the
    protocol core itself: ``SyncParams.auth_key``).
    ``is_up(dst)`` says whether the receiving daemon runs at delivery time.
    """

    def __init__(self, seed: int, n: int, queue: EventQueue, faults: LinkFaults,
                 deliver: Deliver, is_up: Callable[[int], bool], *,
                 checksum: bool = True,
                 partitions: tuple[Partition, ...] = (), start_us: int = 0,
                 on_drop: Callable[[int, int, str, int], None] | None = None) -> None:
        self.queue = queue
        self.deliver_cb = deliver
        self.is_up = is_up
        self.checksum = checksum
        self.partitions = partitions
        self.start_us = start_us
        self.on_drop = on_drop
        self.stats = NetStats()
        self.dirs = {(a, b): Direction(seed, a, b, faults)
                     for a in range(n) for b in range(n) if a != b}
        self._next_id = 0
        self.healed = False   # partitions stop once the run heals; link noise goes on
        self.cut: set[tuple[int, int]] = set()   # directions cut right now (step API)
        self.drop_next: dict[tuple[int, int], int] = {}   # targeted losses (step API)
        self.hold_next: dict[tuple[int, int], int] = {}   # targeted reordering: extra delay

    def partitioned(self, src: int, dst: int, t_us: int) -> bool:
        """True when ``src -> dst`` is cut at absolute time ``t_us``."""
        if (src, dst) in self.cut:
            return True
        if self.healed:
            return False
        rel = t_us - self.start_us
        return any(p.src == src and p.dst == dst and p.start_us <= rel < p.end_us
                   for p in self.partitions)

    def partitions_end_us(self) -> int:
        """Relative time at which the last partition window closes."""
        return max((p.end_us for p in self.partitions), default=0)

    def _drop(self, src: int, dst: int, reason: str, dgram_id: int) -> None:
        key = f"{src}>{dst}"
        self.stats.per_direction_drops[key] = self.stats.per_direction_drops.get(key, 0) + 1
        if self.on_drop is not None:
            self.on_drop(src, dst, reason, dgram_id)

    def send(self, src: int, dst: int, payload: bytes) -> int:
        """Put one datagram on the ``src -> dst`` direction; returns its id."""
        d = self.dirs[(src, dst)]
        st = self.stats
        self._next_id += 1
        dgram_id = self._next_id
        st.sent += 1
        wire = payload
        st.bytes_sent += len(wire) + IP_UDP_OVERHEAD
        now = self.queue.now
        if self.partitioned(src, dst, now):
            st.dropped_partition += 1
            self._drop(src, dst, "partition", dgram_id)
            return dgram_id
        if self.drop_next.get((src, dst)):
            self.drop_next[(src, dst)] -= 1
            st.dropped_loss += 1
            self._drop(src, dst, "loss", dgram_id)
            return dgram_id
        if d.lost():
            st.dropped_loss += 1
            self._drop(src, dst, "loss", dgram_id)
            return dgram_id
        copies = 2 if d.faults.duplicate and d.rng.random() < d.faults.duplicate else 1
        if copies == 2:
            st.duplicated += 1
        for _ in range(copies):
            self._schedule(d, wire, payload, dgram_id, now)
        return dgram_id

    def _schedule(self, d: Direction, wire: bytes, payload: bytes, dgram_id: int,
                  now: int) -> None:
        f = d.faults
        corrupted = False
        if f.corrupt and d.rng.random() < f.corrupt:
            wire = d.corrupt(wire)
            corrupted = True
            self.stats.corrupted += 1
        arrival = now + d.delay_us()
        held = self.hold_next.pop((d.src, d.dst), 0)
        if held:
            arrival += held            # targeted reordering (step API): overtaken by later ones
            self.stats.reordered += 1
        elif f.reorder and d.rng.random() < f.reorder:
            # held back: later datagrams overtake it; FIFO order is not enforced for it
            arrival += d.rng.randrange(1, max(2, f.reorder_window_us))
            self.stats.reordered += 1
        else:
            arrival = max(arrival, d.last_arrival_us)   # the link itself keeps order
            d.last_arrival_us = arrival
        self.queue.at(arrival, self._arrive, d, wire, payload, dgram_id, corrupted)

    def _arrive(self, d: Direction, wire: bytes, original: bytes, dgram_id: int,
                corrupted: bool) -> None:
        st = self.stats
        if not self.is_up(d.dst):
            st.dropped_down += 1
            self._drop(d.src, d.dst, "down", dgram_id)
            return
        payload = wire
        if corrupted and self.checksum:
            # The kernel verifies the UDP checksum; the pseudo-header and UDP header are
            # unchanged, so the payload sums decide.
            if internet_checksum(payload) != internet_checksum(original):
                st.dropped_checksum += 1
                self._drop(d.src, d.dst, "checksum", dgram_id)
                return
            st.checksum_escapes += 1
        if corrupted:
            corrupted = payload != original
            if corrupted:
                st.corrupt_delivered += 1
        st.delivered += 1
        self.deliver_cb(d.dst, d.src, payload, dgram_id, corrupted)
