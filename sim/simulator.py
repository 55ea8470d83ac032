"""The discrete-event simulator: N replicas running the real ``ctools.sync`` core over a
seeded impaired network, with a checker after every step and a liveness bound at the end.

Topology: a full mesh of unicast UDP links. Each replica runs one protocol core per peer (one
FT-FW session per pair, as two C daemons would), all fed from the same internal cache and all
applying into the same external cache. Flows are owned by exactly one replica (disjoint address
blocks), so after quiescence every external cache must equal the union of its peers' internal
caches.

Invariants checked as the run goes (each violation is recorded, the run continues):

* the core never raises on a datagram, whatever the network did to it;
* no phantom entry: every state applied to an external cache is one some workload really
  produced — unless a corrupted datagram reached an unauthenticated core (``Checksum off``, or
  a corruption the UDP checksum missed), which is counted as ``corrupt_accepted`` instead;
* queues bounded (FT-FW resend queue <= ResendQueueSize);
* no message accepted twice: in FT-FW a duplicated datagram (same datagram id) never changes
  the external cache a second time, except through HELLO (which by design skips the sequence
  check, spec §4.6).

Liveness: once the workload is over, partitions have healed and crashed daemons have restarted
("quiescence"), the caches must agree within ``SimConfig.bound_s()`` simulated seconds where the
mode promises it; otherwise the run fails with "reproduce with --seed N".
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import TextIO

from ctools.model import Entry
from ctools.sync import wire
from sim import core as sync
from sim.caches import ExternalCache, InternalCache, copy_entry
from sim.clock import EPOCH_US, US, EventQueue, seconds, us
from sim.config import SimConfig
from sim.link import LinkFaults, Network
from sim.rng import stream
from sim.trace import Trace
from sim.workload import DESTROY, NEW, UPDATE, KernelEvent, Workload, view

_KIND = {NEW: "new", UPDATE: "upd", DESTROY: "del"}
_HDR = struct.Struct(">BBHI")
HELLO = 0x20
MAX_VIOLATIONS_KEPT = 20
RS_CONTROL_SLACK = 64   # ctools.sync: control messages may overfill the resend queue by this


AUTH_MAGIC, AUTH_HEAD, AUTH_TAG = 0xC7, 16, 32   # ctools authenticated frame (auth.py)


def sent_states(datagram: bytes) -> list[tuple]:
    """Replicated views of the data messages in one of our own datagrams (wire-decoded)."""
    if datagram[:1] == bytes([AUTH_MAGIC]) and len(datagram) >= AUTH_HEAD + AUTH_TAG:
        datagram = datagram[AUTH_HEAD:-AUTH_TAG]
    out = []
    for item in wire.split_messages(datagram):
        if isinstance(item, tuple) and item[0].is_data:
            header, off = item
            try:
                kind, obj = wire.decode_data(header, datagram[off:off + header.length])
            except wire.ProtocolError:
                continue
            if isinstance(obj, Entry):
                out.append((kind, view(obj)))
    return out


def frame_messages(datagram: bytes) -> tuple[int, bool]:
    """(number of sync messages, any carries HELLO) by walking the 8-byte headers (spec §1.8).

    Used for accounting and the duplicate check only; malformed tails just end the walk.
    """
    if datagram[:1] == bytes([AUTH_MAGIC]) and len(datagram) >= AUTH_HEAD + AUTH_TAG:
        datagram = datagram[AUTH_HEAD:-AUTH_TAG]
    off, n, hello = 0, 0, False
    while len(datagram) - off >= 8:
        _, flags, length, _ = _HDR.unpack_from(datagram, off)
        if length < 8:
            break
        n += 1
        hello = hello or bool(flags & HELLO)
        off += length
    return n, hello


@dataclass
class Result:
    """What a run produced. ``as_json()`` is the ``ctsim run --json`` object."""

    seed: int
    mode: str
    converged: bool = False
    sim_seconds_to_converge: float | None = None
    convergence_promised: bool = True
    liveness_failure: str | None = None
    messages_sent: int = 0
    messages_dropped: int = 0
    datagrams_sent: int = 0
    datagrams_dropped: int = 0
    bytes_sent: int = 0
    bytes_at_quiescence: int = 0    # wire bytes while the workload ran
    quiescence_seconds: float = 0.0
    kernel_events: int = 0          # conntrack events the replicas' kernels produced
    # data messages that put a state on the wire again (same kind and content from the same
    # core: NACK/HELLO resends, bulk answers); the core's own "retransmitted" counter, which
    # also counts fresh updates of still-queued objects, is in core_stats
    retransmissions: int = 0
    invariant_violations: int = 0
    violations: list[str] = field(default_factory=list)
    # restarts whose clock-seeded sequence base lay below the crashed incarnation's numbers
    low_base_restarts: int = 0
    corrupt_accepted: int = 0
    explained_divergence: int = 0
    divergence: int = 0
    trace_sha256: str = ""
    trace_lines: int = 0
    sim_seconds: float = 0.0
    real_core: bool = True
    network: dict = field(default_factory=dict)
    core_stats: dict = field(default_factory=dict)
    config: str = ""
    reproduce: str = ""

    @property
    def ok(self) -> bool:
        """No invariant violated and no liveness failure."""
        return self.invariant_violations == 0 and self.liveness_failure is None

    def as_json(self) -> dict:
        d = dict(self.__dict__)
        d["ok"] = self.ok
        return d


class Session:
    """One protocol core of a replica and the peer it talks to."""

    __slots__ = ("core", "peer", "gen", "armed_us", "stalls", "accepted", "sent", "base_seq",
                 "tainted")

    def __init__(self, core: object, peer: int) -> None:
        self.core = core
        self.peer = peer
        self.gen = 0
        self.armed_us: int | None = None
        self.stalls = 0
        # (sender incarnation, seq) of every data message this core let through
        self.accepted: set[tuple[int, int]] = set()
        self.sent: set[tuple] = set()             # (kind, view) states this core has sent
        self.base_seq = 0                         # its first sequence number
        # a corrupted datagram reached this core unauthenticated: what it applies from now on
        # may come from it (the core can hold messages back, e.g. while re-basing)
        self.tainted = False


class Replica:
    """One firewall: its kernel-mirror internal cache, its external cache and its cores."""

    def __init__(self, idx: int, expiry_us: int | None) -> None:
        self.idx = idx
        self.up = True
        self.incarnation = 0
        self.internal = InternalCache()
        self.external = ExternalCache(expiry_us)
        self.sessions: dict[int, Session] = {}
        self.crash_times: list[int] = []
        self.next_seq_at_crash: int | None = None


class Simulator:
    """Build with a validated :class:`SimConfig`; ``run()`` returns a :class:`Result`.

    The step API (``start``, ``run_until``, ``crash``, ``restart``, ``heal``, ``settle``) lets a
    test drive the same machinery with its own fault schedule.
    """

    def __init__(self, cfg: SimConfig, trace_out: TextIO | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.queue = EventQueue(EPOCH_US)
        self.t0 = EPOCH_US
        self.trace = Trace(trace_out)
        self.result = Result(seed=cfg.seed, mode=cfg.mode, real_core=sync.REAL_CORE,
                             config=cfg.describe(),
                             reproduce="ctsim run " + " ".join(cfg.argv()))
        expiry = cfg.cache_timeout * US if cfg.mode == "alarm" else None
        self.replicas = [Replica(i, expiry) for i in range(cfg.replicas)]
        self.net = Network(cfg.seed, cfg.replicas, self.queue, cfg.faults, self._deliver,
                           lambda r: self.replicas[r].up, checksum=cfg.checksum,
                           partitions=cfg.partitions, start_us=self.t0,
                           on_drop=self._on_drop)
        self.workloads = [Workload(cfg.seed, r, cfg.workload, self.queue, self.t0,
                                   self._kernel_batch, lambda r: self.replicas[r].up)
                          for r in range(cfg.replicas)]
        self.legit: set[tuple] = set()          # every replicated view a kernel ever had
        self.changed_us: dict[tuple, int] = {}  # key -> time of the owner's last change
        self.deleted: set[tuple] = set()
        self.owner: dict[tuple, int] = {}
        self.tainted = False                    # a corrupted datagram reached a core unchecked
        self.dropped_ids: set[int] = set()
        self.msg_count: dict[int, int] = {}     # datagram id -> messages inside
        self.sender_incarnation: dict[int, int] = {}
        self.dead_core_stats: dict[str, int] = {}
        self.dirty = True
        self.started = False

    # -- helpers --------------------------------------------------------------------------------
    @property
    def now_s(self) -> float:
        return seconds(self.queue.now)

    def _rel(self) -> float:
        return (self.queue.now - self.t0) / US

    def violation(self, what: str) -> None:
        """Record an invariant violation (kept verbatim for the first few)."""
        self.result.invariant_violations += 1
        text = f"t={self._rel():.6f} {what}"
        if len(self.result.violations) < MAX_VIOLATIONS_KEPT:
            self.result.violations.append(text)
        self.trace.emit(self.queue.now, "VIOLATION " + what)

    def _core_settings(self, replica: Replica, peer: int) -> dict:
        cfg = self.cfg
        settings = dict(mode=cfg.mode, mtu=cfg.mtu, transport="udp",
                        initial_seq=int(self.now_s) & 0xFFFFFFFF,
                        ack_window=cfg.ack_window, resend_queue_size=cfg.resend_queue,
                        refresh_time=cfg.refresh_time, cache_timeout=cfg.cache_timeout,
                        startup_resync=cfg.startup_resync, hardening=cfg.hardening,
                        rng=stream(cfg.seed, f"core/{replica.idx}>{peer}/{replica.incarnation}"))
        if cfg.auth:
            settings.update(auth_key=f"ctsim-shared-key-{cfg.seed:020d}".encode(),
                            epoch=replica.incarnation + 1)
        return settings

    def _new_sessions(self, replica: Replica) -> None:
        replica.sessions = {}
        for peer in range(self.cfg.replicas):
            if peer != replica.idx:
                settings = self._core_settings(replica, peer)
                core = sync.build_core(self.now_s, **settings)
                replica.sessions[peer] = Session(core, peer)
                replica.sessions[peer].base_seq = settings["initial_seq"]

    # -- timers and transmission ----------------------------------------------------------------
    def _flush(self, replica: Replica, s: Session) -> None:
        for dgram in s.core.outgoing(self.now_s):
            n, _ = frame_messages(dgram)
            dgram_id = self.net.send(replica.idx, s.peer, dgram)
            self.msg_count[dgram_id] = n
            self.sender_incarnation[dgram_id] = replica.incarnation
            for state in sent_states(dgram):
                if state in s.sent:
                    self.result.retransmissions += 1   # the same state on the wire again
                else:
                    s.sent.add(state)
            self.trace.emit(self.queue.now, f"tx {replica.idx}>{s.peer} #{dgram_id} "
                            f"len={len(dgram)} m={n} crc={zlib.crc32(dgram):08x}")
        self._check_queues(replica, s)
        self._arm(replica, s)

    def _arm(self, replica: Replica, s: Session) -> None:
        deadline = s.core.next_deadline()
        if deadline is None:
            s.gen += 1
            s.armed_us = None
            return
        t = math.ceil(deadline * US)
        if seconds(t) < deadline:   # float rounding: the core must see now >= its deadline
            t += 1
        t = max(t, self.queue.now)
        if t == s.armed_us:
            return
        s.gen += 1
        s.armed_us = t
        self.queue.at(t, self._timer, replica, s, s.gen, replica.incarnation)

    def _timer(self, replica: Replica, s: Session, gen: int, incarnation: int) -> None:
        if gen != s.gen or incarnation != replica.incarnation or not replica.up:
            return
        s.armed_us = None
        deadline = s.core.next_deadline()
        if deadline is not None and deadline > self.now_s:
            self._arm(replica, s)
            return
        s.core.tick(self.now_s)
        after = s.core.next_deadline()
        if after is not None and after <= self.now_s:
            s.stalls += 1
            if s.stalls == 100:
                self.violation(f"replica {replica.idx}->{s.peer}: tick() does not move "
                               f"next_deadline() past now ({after})")
            if s.stalls >= 100:
                for dgram in s.core.outgoing(self.now_s):
                    self.net.send(replica.idx, s.peer, dgram)
                return
        else:
            s.stalls = 0
        self._flush(replica, s)

    def _check_queues(self, replica: Replica, s: Session) -> None:
        """Queues bounded: the FT-FW resend queue never exceeds ResendQueueSize plus the 64
        control messages ctools.sync lets overfill it (its objects are flow-controlled)."""
        core = s.core
        rs = getattr(core, "_rs", None)       # the FT-FW resend queue (cheap length)
        if rs is None:
            if not hasattr(core, "resend_queue"):
                return
            rs = core.resend_queue()
        n = len(rs)
        if n > self.cfg.resend_queue + RS_CONTROL_SLACK:
            self.violation(f"replica {replica.idx}->{s.peer}: resend queue {n} > "
                           f"ResendQueueSize {self.cfg.resend_queue} + {RS_CONTROL_SLACK}")

    # -- kernel side ----------------------------------------------------------------------------
    def _kernel_batch(self, r: int, batch: list[KernelEvent]) -> None:
        replica = self.replicas[r]
        now = self.now_s
        objs: list[tuple[str, Entry]] = []
        for kind, ev in batch:
            key = ev.key()
            self.owner[key] = r
            self.changed_us[key] = self.queue.now
            if kind == DESTROY:
                obj = replica.internal.destroy(ev)
                self.deleted.add(key)
                if obj is None:
                    continue
            else:
                self.deleted.discard(key)
                obj = replica.internal.new(ev) if kind == NEW else replica.internal.update(ev)
                self.legit.add(view(obj))
            objs.append((_KIND[kind], obj))
        self.dirty = True
        self.result.kernel_events += len(batch)
        self.trace.emit(self.queue.now, f"kern {r} n={len(batch)}")
        for s in replica.sessions.values():
            for kind, obj in objs:
                s.core.local_update(kind, obj, now)
            self._flush(replica, s)

    # -- network side ---------------------------------------------------------------------------
    def _on_drop(self, src: int, dst: int, reason: str, dgram_id: int) -> None:
        if dgram_id not in self.dropped_ids:
            self.dropped_ids.add(dgram_id)
        self.trace.emit(self.queue.now, f"drop {src}>{dst} #{dgram_id} {reason}")

    def _deliver(self, dst: int, src: int, dgram: bytes, dgram_id: int,
                 corrupted: bool) -> None:
        replica = self.replicas[dst]
        s = replica.sessions[src]
        now = self.now_s
        if corrupted and not self.cfg.auth:
            self.tainted = True
            s.tainted = True
        try:
            events = s.core.receive(dgram, now)
        except Exception as exc:  # the invariant is precisely that this never happens
            self.violation(f"core raised {type(exc).__name__}: {exc} on datagram "
                           f"{dgram.hex()} from {src} to {dst}")
            return
        applied = 0
        src_inc = self.sender_incarnation.get(dgram_id, -1)
        for ev in events:
            if isinstance(ev, sync.Apply):
                if not s.tainted:
                    # no message accepted twice: a sender incarnation never reuses a seq
                    # (retransmissions get new ones), so a repeat is a replay let through
                    mark = (src_inc, ev.seq)
                    if mark in s.accepted:
                        self.violation(f"replica {dst} accepted message seq={ev.seq} from "
                                       f"{src} twice (datagram #{dgram_id})")
                    s.accepted.add(mark)
                if not isinstance(ev.obj, Entry):
                    continue
                applied += 1
                self._apply(replica, src, ev.kind, ev.obj, s.tainted, dgram)
            elif isinstance(ev, sync.ResyncRequested):
                s.core.bulk_send(replica.internal.objects(), now)
                self.trace.emit(self.queue.now, f"resync {dst} for {src}")
            elif isinstance(ev, sync.PeerRestarted):
                self.trace.emit(self.queue.now, f"peer-restarted {dst} sees {src}")
        self.trace.emit(self.queue.now, f"rx {dst}<{src} #{dgram_id} ev={len(events)} "
                        f"a={applied}{' corrupt' if corrupted else ''}")
        self._flush(replica, s)

    def _apply(self, replica: Replica, src: int, kind: str, obj: Entry, tainted: bool,
               dgram: bytes) -> None:
        stored = replica.external.apply(kind, obj, self.queue.now)
        self.dirty = True
        if stored is None:
            return
        if view(stored) not in self.legit:
            if tainted:
                self.result.corrupt_accepted += 1
            else:
                self.violation(f"phantom entry at replica {replica.idx} from {src}: "
                               f"{view(stored)} (datagram {dgram.hex()})")
        if replica.external.expiry_us is not None:
            key = stored.key()
            self.queue.after(replica.external.expiry_us, self._expire, replica,
                             replica.incarnation, key)

    def _expire(self, replica: Replica, incarnation: int, key: tuple) -> None:
        if incarnation == replica.incarnation and replica.external.expire(key, self.queue.now):
            self.dirty = True
            self.trace.emit(self.queue.now, f"expire {replica.idx}")

    # -- faults ---------------------------------------------------------------------------------
    def crash(self, r: int) -> None:
        """Kill replica ``r``'s daemon: cores and external cache are gone, the kernel stays."""
        replica = self.replicas[r]
        if not replica.up:
            return
        next_seq = None
        for s in replica.sessions.values():
            for k, v in _stats_dict(s.core).items():
                self.dead_core_stats[k] = self.dead_core_stats.get(k, 0) + v
            sent = _stats_dict(s.core).get("msgs_sent", 0)
            nxt = (s.base_seq + sent) & 0xFFFFFFFF
            next_seq = nxt if next_seq is None or ((nxt - next_seq) & 0xFFFFFFFF) < 1 << 31 \
                else next_seq
        replica.next_seq_at_crash = next_seq
        replica.up = False
        replica.incarnation += 1
        replica.sessions = {}
        replica.external.clear()
        replica.crash_times.append(self.queue.now)
        self.dirty = True
        self.trace.emit(self.queue.now, f"crash {r}")

    def restart(self, r: int) -> None:
        """Start replica ``r``'s daemon again: dump the kernel, StartupResync, ``-B``."""
        replica = self.replicas[r]
        if replica.up:
            return
        replica.up = True
        replica.internal = InternalCache()
        for e in self.workloads[r].table.values():
            replica.internal.new(e)
        self._new_sessions(replica)
        now = self.now_s
        base = int(now) & 0xFFFFFFFF
        old = replica.next_seq_at_crash
        if old is not None and ((base - old) & 0xFFFFFFFF) >= 1 << 31:
            # The peers last saw numbers above the new base (the C daemon seeds its counter
            # from the clock, spec §3.1): only HELLO handling can make them accept it.
            self.result.low_base_restarts += 1
            self.trace.emit(self.queue.now, f"low-base {r} base={base} old={old}")
        for s in replica.sessions.values():
            for obj in replica.internal.objects():
                s.core.local_update("dump", obj, now)
            if self.cfg.startup_resync and "startup_resync" not in sync.param_names():
                s.core.request_resync(now)   # (a core that knows the option sends it itself)
            if self.cfg.restart_bulk:
                s.core.bulk_send(replica.internal.objects(), now)
            self._flush(replica, s)
        self.dirty = True
        self.trace.emit(self.queue.now, f"restart {r} entries={len(replica.internal.entries)}")

    # -- checking -------------------------------------------------------------------------------
    def divergence(self) -> tuple[int, int]:
        """(unexplained, explained) mismatching (replica, key) pairs between external caches
        and their owners' internal caches."""
        unexplained = explained = 0
        for y in self.replicas:
            if not y.up:
                continue
            expected: dict[tuple, tuple] = {}
            for x in self.replicas:
                if x is not y:
                    for k, e in x.internal.entries.items():
                        expected[k] = view(e)
            have = {k: view(e) for k, e in y.external.entries.items()}
            for k in expected.keys() | have.keys():
                if expected.get(k) != have.get(k):
                    if self._explained(k, k in have and k not in expected):
                        explained += 1
                    else:
                        unexplained += 1
        return unexplained, explained

    def _explained(self, key: tuple, stale_delete: bool) -> bool:
        """A divergence the protocol cannot repair by design: the owner's daemon crashed after
        the last change of ``key`` (its queued message died with it). A restart bulk send
        (``-B``) re-announces live entries, but nothing ever retracts a lost delete."""
        x = self.owner.get(key)
        if x is None:
            return False
        changed = self.changed_us.get(key, 0)
        if not any(t >= changed for t in self.replicas[x].crash_times):
            return False
        return stale_delete or not self.cfg.restart_bulk

    def converged(self) -> bool:
        """Every running replica's external cache equals the union of its peers' tables."""
        if not all(r.up for r in self.replicas):
            return False
        unexplained, explained = self.divergence()
        return unexplained == 0 and explained == 0

    def promised(self) -> bool:
        """Does this mode promise convergence under the faults that actually happened?"""
        if self.tainted:
            return False
        if self.cfg.mode == "ftfw" and max(d.faults.loss for d in self.net.dirs.values()) >= 0.5:
            # A lost NACK is only re-requested when the peer NACKs the message that carried
            # it: recovery is a random walk that stops drifting home at 50 % loss (§4.4).
            return False
        if self.cfg.mode == "alarm" and not self._alarm_steady_state_ok():
            return False
        if self.cfg.mode == "notrack":
            st = self.net.stats
            return not (st.dropped or st.reordered or st.duplicated or self.cfg.crashes
                        or any(r.crash_times for r in self.replicas))
        return True

    def _alarm_steady_state_ok(self) -> bool:
        """ALARM under steady loss p: an entry whose refreshes (one per (RefreshTime+1)/2 + 0.6 s
        on average) are all lost for CacheTimeout expires until the next one arrives. With N
        entries about N * p**m are missing at any instant (m refreshes per CacheTimeout); all
        caches can only be seen equal at one instant while that expectation stays <= 1."""
        cfg = self.cfg
        p = max(d.faults.loss for d in self.net.dirs.values())
        if p <= 0:
            return True
        n = sum(len(r.internal.entries) for r in self.replicas) * (cfg.replicas - 1)
        m = cfg.cache_timeout / ((cfg.refresh_time + 1) / 2 + 0.6)
        return n * p ** m <= 1.0

    # -- running --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every daemon and workload (idempotent)."""
        if self.started:
            return
        self.started = True
        self.trace.emit(self.queue.now, "config " + self.cfg.describe())
        for replica in self.replicas:
            self._new_sessions(replica)
            for s in replica.sessions.values():
                self._flush(replica, s)
        for w in self.workloads:
            w.start()
        for c in self.cfg.crashes:
            self.queue.at(self.t0 + us(c.at_s), self.crash, c.replica)
            self.queue.at(self.t0 + us(c.at_s + c.down_s), self.restart, c.replica)

    def run_until(self, rel_s: float) -> None:
        """Process every event up to ``rel_s`` seconds after the start."""
        self.start()
        end = self.t0 + us(rel_s)
        while True:
            t = self.queue.peek_time()
            if t is None or t > end:
                break
            self.queue.step()
        self.queue.now = max(self.queue.now, end)

    def quiescence_s(self) -> float:
        """Run-relative time after which no more workload or scheduled fault happens."""
        cfg = self.cfg
        q = cfg.workload.end_s
        q = max(q, self.net.partitions_end_us() / US)
        q = max([q] + [c.at_s + c.down_s for c in cfg.crashes])
        return q

    def inject(self, r: int, batch: list[KernelEvent]) -> None:
        """Feed kernel events to replica ``r`` now, as its kernel would (tests, schedules)."""
        table = self.workloads[r].table
        for kind, ev in batch:
            if kind == DESTROY:
                table.pop(ev.key(), None)
            else:
                table[ev.key()] = copy_entry(ev)
        if self.replicas[r].up:
            self._kernel_batch(r, batch)

    def drop_next(self, src: int, dst: int, count: int = 1) -> None:
        """Lose the next ``count`` datagrams sent on ``src -> dst`` (targeted fault)."""
        self.net.drop_next[(src, dst)] = self.net.drop_next.get((src, dst), 0) + count
        self.trace.emit(self.queue.now, f"drop-next {src}>{dst} {count}")

    def hold_next(self, src: int, dst: int, extra_s: float) -> None:
        """Delay the next datagram on ``src -> dst`` by ``extra_s`` more (later ones overtake)."""
        self.net.hold_next[(src, dst)] = us(extra_s)
        self.trace.emit(self.queue.now, f"hold-next {src}>{dst} {extra_s:g}")

    def cut(self, src: int, dst: int) -> None:
        """Cut the direction ``src -> dst`` until ``mend`` (or ``heal``)."""
        self.net.cut.add((src, dst))
        self.trace.emit(self.queue.now, f"cut {src}>{dst}")

    def mend(self, src: int, dst: int) -> None:
        """Reconnect the direction ``src -> dst``."""
        self.net.cut.discard((src, dst))
        self.trace.emit(self.queue.now, f"mend {src}>{dst}")

    def set_faults(self, src: int, dst: int, faults: LinkFaults) -> None:
        """Change the impairments of one direction from now on."""
        self.net.dirs[(src, dst)].configure(faults)
        self.trace.emit(self.queue.now, f"faults {src}>{dst} {faults.describe()}")

    def heal(self) -> None:
        """End partitions and restart every crashed daemon (link noise goes on)."""
        self.net.healed = True
        self.net.cut.clear()
        for r in range(self.cfg.replicas):
            self.restart(r)
        self.trace.emit(self.queue.now, "heal")

    def settle(self, bound_s: float) -> float | None:
        """Run until converged; seconds it took, or None if ``bound_s`` passed first."""
        self.start()
        start = self.queue.now
        end = start + us(bound_s)
        while True:
            if self.dirty:
                self.dirty = False
                if self.converged():
                    return (self.queue.now - start) / US
            t = self.queue.peek_time()
            if t is None or t > end:
                self.queue.now = max(self.queue.now, min(end, t or end))
                if self.dirty and self.converged():
                    return (self.queue.now - start) / US
                return None
            self.queue.step()

    def run(self) -> Result:
        """The whole scenario: workload and faults, quiescence, liveness check, result."""
        cfg = self.cfg
        self.run_until(self.quiescence_s())
        self.result.bytes_at_quiescence = self.net.stats.bytes_sent
        self.result.quiescence_seconds = round(self.quiescence_s(), 6)
        self.heal()
        took = self.settle(cfg.bound_s())
        res = self.result
        res.converged = took is not None
        res.sim_seconds_to_converge = round(took, 6) if took is not None else None
        res.convergence_promised = self.promised()
        unexplained, explained = self.divergence()
        res.divergence, res.explained_divergence = unexplained, explained
        if took is None and res.convergence_promised and unexplained:
            res.liveness_failure = (
                f"liveness: {unexplained} (replica, entry) pairs still differ "
                f"{cfg.bound_s():g}s after quiescence — reproduce with --seed {cfg.seed}")
            self.trace.emit(self.queue.now, "LIVENESS " + res.liveness_failure)
        else:
            self.trace.emit(self.queue.now, f"end converged={res.converged} took={took}")
        self._finish()
        return res

    def _finish(self) -> None:
        res = self.result
        st = self.net.stats
        res.datagrams_sent = st.sent
        res.datagrams_dropped = st.dropped
        res.bytes_sent = st.bytes_sent
        res.messages_sent = sum(self.msg_count.values())
        res.messages_dropped = sum(self.msg_count.get(i, 0) for i in self.dropped_ids)
        totals = dict(self.dead_core_stats)
        for replica in self.replicas:
            for s in replica.sessions.values():
                for k, v in _stats_dict(s.core).items():
                    totals[k] = totals.get(k, 0) + v
        res.core_stats = {k: v for k, v in sorted(totals.items()) if v}
        res.network = {k: v for k, v in st.__dict__.items() if v}
        res.sim_seconds = round(self._rel(), 6)
        res.trace_sha256 = self.trace.sha256()
        res.trace_lines = self.trace.lines


def _stats_dict(core: object) -> dict[str, int]:
    stats = getattr(core, "stats", None)
    if stats is None:
        return {}
    if hasattr(stats, "as_dict"):
        return {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}
    return {}


def run(cfg: SimConfig, trace_out: TextIO | None = None) -> Result:
    """Run one scenario and return its result."""
    return Simulator(cfg, trace_out).run()
