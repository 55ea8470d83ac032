"""FT-FW: the reliable mode (spec §4) — sequence tracking, ACK windows, NACK ranges, resend
queue, RESYNC, ALIVE and the HELLO handshake, wire-compatible with the C daemon.

Deliberate differences (docs/compat-sync.md): a HELLO re-queues the unacknowledged objects
instead of discarding them; a NACK for messages that fell out of the resend queue asks the
caller for a bulk send; the strict receive guard (guard.py) in the C-compatible mode; tail-loss
probes (below).

Tail-loss probes: a receiver notices a loss only when a later message shows the gap, so when
the *last* datagrams of a transmit round are lost the C protocol waits for the next alive-timer
message (1 s), and if the NACKed re-send loses its tail again, another second (docs/simulator.md
finding 4). After a round that put objects (new states or re-sends) or a NACK on the wire we
therefore send a few plain ALIVE messages shortly after (10, 30, 70, 150, 310 ms with the
default 1 s interval) unless more traffic or an ACK covering that round makes them pointless —
only while the link is known to lose (a NACK went either way in the last 10 intervals), so a
clean link carries exactly the C traffic, and at most 10 per interval. ALIVE is an ordinary
sequenced control message to every peer (C included): one that arrives after a lost tail
reveals the gap and draws the NACK (or the re-sent NACK) at once.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, deque

from ctools.sync import guard as G
from ctools.sync import wire
from ctools.sync.core import (
    PeerRestarted,
    ResyncRequested,
    SyncMode,
    SyncParams,
    serial_after,
    serial_before,
    serial_between,
)
from ctools.sync.queues import RS, TX, CtlItem, ObjItem, TxQueue

INIT, SAY, DONE = "init", "say", "done"


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Contiguous [lo, hi] ranges of a set of sequence numbers (no wrap handling needed:
    a range split at the wrap is just two ACKs)."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [(lo, hi) for lo, hi in out]
MASK = 0xFFFFFFFF
DATA, CTL, BAD = "data", "ctl", "bad"

# Delays of the tail-loss probes after a round that needs repair if its tail is lost, as
# fractions of the alive interval (each measured from the previous probe). Spread out so that
# one loss burst does not take them all; at 30 % independent loss all five are lost 0.24 % of
# the time (then the alive timer still recovers, as in C).
PROBE_DELAYS = (0.01, 0.02, 0.04, 0.08, 0.16)
# At most this many probes of NACK rounds per alive interval (a continuously refilled budget). A
# lost probe is a gap the peer NACKs, and that NACK's round is probed in turn: unbounded, this
# fed a NACK/probe storm at 50 % loss that buried the data (simulator, labcompare seed 15:
# 6 -> 35 s).
PROBE_BUDGET = 10
# After a NACK (sent or received), the link counts as lossy for this many alive intervals.
LOSSY_FOR = 10.0


class FtfwSync(SyncMode):
    """Reliable replication with acknowledgements and retransmission."""

    mode = "ftfw"

    def __init__(self, params: SyncParams, now: float) -> None:
        super().__init__(params, now)
        self._tx = TxQueue()                # objects waiting (FIFO, coalescing)
        self._ctl: deque[CtlItem] = deque()  # control messages waiting (never held back)
        self._rs: OrderedDict[int, ObjItem | CtlItem] = OrderedDict()
        self._hello = INIT
        self._hello_back_pending = False
        self._window = params.ack_window
        self._ack_from = 0
        self._ack_pending = False
        self._alive_at = now + params.alive_interval
        self._lost_upto: int | None = None   # newest seq of an object dropped from a full rs
        self._peer_saying = False           # the peer's last message carried HELLO
        self._late: list[int] = []          # hole fillers still to acknowledge
        self._acked_upto: int | None = None  # newest number the peer acknowledged
        self._probe_at: float | None = None  # next tail-loss probe (None: none scheduled)
        self._probe_next = 0                # index into PROBE_DELAYS of the next probe
        self._probe_tokens = float(PROBE_BUDGET)
        self._probe_refill_at = now
        self._tail_seq: int | None = None   # last repair-worthy message the probes cover
        self.probes_sent = 0                # tail-loss probes sent (diagnostics)
        self._lossy_until = float("-inf")   # probe only while a NACK was seen lately
        if params.startup_resync:
            self.request_resync(now)

    # -- sender API -------------------------------------------------------------------------

    def local_update(self, kind: str, obj, now: float) -> None:
        self.now = now
        if kind == "dump":
            return
        if kind not in wire.KIND_TYPE_CT:
            raise ValueError(f"unknown update kind {kind!r}")
        tx = self._tx
        key = wire.obj_key(obj)
        it = tx.objs.get(key)
        if it is not None and it.where == RS:
            del self._rs[it.seq]
        tx.put_object(kind, obj, key)

    def request_resync(self, now: float) -> None:
        self.now = now
        self._put_ctl(CtlItem(wire.F_RESYNC, 0, 0))

    def tick(self, now: float) -> None:
        self.now = now
        if now < self._alive_at:
            if self._probe_at is not None and now >= self._probe_at:
                self._probe(True)
            return
        if self._probe_at is not None and now >= self._probe_at:
            self._probe(False)          # the alive timer's message is this probe
        # Alive timer: a delayed ACK if a range is pending, else a keep-alive (§4.5).
        if self._ack_pending and self.guard.started:
            self._put_ctl(CtlItem(wire.F_ACK, self._ack_from, self.guard.last))
            self._ack_pending = False
        elif not self._late:
            self._put_ctl(CtlItem(wire.F_ALIVE))
        if self._late:
            for lo, hi in _ranges(self._late)[:8]:
                self._put_ctl(CtlItem(wire.F_ACK, lo, hi))
            self._late.clear()
        self._resend_skipped(now)
        self._alive_at = now + self.params.alive_interval

    def next_deadline(self) -> float | None:
        probe = self._probe_at
        return self._alive_at if probe is None or probe > self._alive_at else probe

    def _probe(self, send: bool) -> None:
        """Send one tail-loss probe (unless the alive timer sends a message now anyway) and
        schedule the next one, if any."""
        if send:
            # a bounded budget (PROBE_BUDGET per alive interval, refilled continuously): on a
            # very lossy link lost probes draw NACKs whose rounds are probed in turn; and every
            # probe is an empty control message an attacker can copy with a flipped sequence
            # number into a slot of the future (unbudgeted probes after object rounds let the
            # sync_guard fuzzer lose a flow for good within a few hundred inputs)
            now, ivl = self.now, self.params.alive_interval
            tokens = min(PROBE_BUDGET, self._probe_tokens
                         + (now - self._probe_refill_at) * PROBE_BUDGET / ivl)
            self._probe_refill_at = now
            if tokens >= 1.0:
                self._put_ctl(CtlItem(wire.F_ALIVE))
                self.probes_sent += 1
                tokens -= 1.0
            self._probe_tokens = tokens
        i = self._probe_next = self._probe_next + 1
        if i < len(PROBE_DELAYS):
            self._probe_at = self.now + PROBE_DELAYS[i] * self.params.alive_interval
        else:
            self._probe_at = None

    def _arm_probes(self, tail_seq: int) -> None:
        """A round with objects or a NACK went out: probe its tail (see the module
        docstring). Not while we say HELLO: to the C receiver every HELLO message is a
        restart that discards its resend queue."""
        if self._hello != DONE or self.now >= self._lossy_until or not PROBE_DELAYS:
            return
        self._tail_seq = tail_seq
        self._probe_next = 0
        self._probe_at = self.now + PROBE_DELAYS[0] * self.params.alive_interval

    def _resend_skipped(self, now: float) -> None:
        """Objects (and RESYNC requests) older than what the peer has acknowledged since, and
        not acknowledged themselves for 2 s, were never seen by it: typically sent before the
        peer started tracking our numbers (it restarted, or loss ate everything before its
        first message), so no NACK will ever name them. The C daemon keeps them in the resend
        queue forever; we send them again."""
        upto = self._acked_upto
        if upto is None:
            return
        limit = now - 2 * self.params.alive_interval
        rs, fifo, ctl = self._rs, self._tx.fifo, self._ctl
        for seq in [s for s, it in self._rs_head_before(upto) if it.sent_at <= limit]:
            it = rs.pop(seq)
            if isinstance(it, ObjItem):
                it.where = TX
                fifo.append(it)
            elif it.flags & wire.F_RESYNC:
                it.where = TX
                ctl.append(it)
            else:
                it.where = None          # an old ACK/NACK: its news is stale

    def _rs_head_before(self, upto: int):
        for seq, it in self._rs.items():
            if not serial_before(seq, upto):
                return
            yield seq, it

    def resend_queue(self) -> list[tuple[int, str]]:
        return [(seq, it.describe()) for seq, it in self._rs.items()]

    @property
    def tx_queue_len(self) -> int:
        return len(self._tx) + len(self._ctl)

    @property
    def hello_state(self) -> str:
        """'init' | 'say' | 'done' (sender side of the HELLO handshake)."""
        return self._hello

    # -- transmit ---------------------------------------------------------------------------

    def _transmit_round(self) -> None:
        if self._late:
            # acknowledge late fills with the next transmission (the alive timer does not
            # expire while we keep sending; left waiting, such a range can outlive a restart
            # of the peer and then delete its new messages — simulator, swarm seed 49)
            for lo, hi in _ranges(self._late)[:8]:
                self._put_ctl(CtlItem(wire.F_ACK, lo, hi))
            self._late.clear()
        ctl, fifo = self._ctl, self._tx.fifo
        rs, cap = self._rs, self.params.resend_queue_size
        # Flow control (the C sender has none): objects leave only while the resend queue has
        # room, so a burst or bulk larger than it waits in the tx queue for ACKs instead of
        # pushing unacknowledged objects out of the resend queue, where loss could no longer
        # be repaired. Control messages are never held back.
        if not ctl and (not fifo or len(rs) >= cap):
            return
        nack = False
        while ctl:
            it = ctl.popleft()
            if it.flags & wire.F_NACK:
                nack = True
                self._lossy_until = self.now + LOSSY_FOR * self.params.alive_interval
            self._send_item(it)
        if fifo and len(rs) < cap:
            self._send_objects()
            self._arm_probes((self._seq - 1) & MASK)
        elif nack:
            self._arm_probes((self._seq - 1) & MASK)
        self._alive_at = self.now + self.params.alive_interval

    def _send_objects(self) -> None:
        """The objects' part of a transmit round while the resend queue has room — the hot
        path of a burst: what ``_send_item`` does for an object when no HELLO bit is due
        (otherwise it goes through ``_send_item``), with the lookups hoisted."""
        fifo, rs, cap = self._tx.fifo, self._rs, self.params.resend_queue_size
        encode, opts, emit, stats, now = wire.encode_message, self._opts, self._emit, \
            self.stats, self.now
        while fifo and len(rs) < cap:
            it = fifo.popleft()
            if self._hello != DONE or self._hello_back_pending or not isinstance(it, ObjItem):
                self._send_item(it)
                continue
            seq = self._seq
            self._seq = (seq + 1) & MASK
            try:
                msg = encode(it.kind, it.obj, seq, 0, opts)
            except (ValueError, TypeError, OSError, OverflowError):
                stats.send_malformed += 1     # an object we cannot serialise: drop it
                self._tx.objs.pop(it.key, None)
                it.where = None
                continue
            if it.sent:
                stats.retransmitted += 1
            it.sent = True
            emit(msg)
            # (no overfill check: len(rs) < cap here, objects never overfill it)
            it.seq = seq
            it.sent_at = now
            it.where = RS
            rs[seq] = it

    def _send_item(self, it: ObjItem | CtlItem) -> None:
        rs, stats = self._rs, self.stats
        flags = 0
        if self._hello != DONE:
            flags |= wire.F_HELLO
            self._hello = SAY
            stats.hello_sent += 1
        if self._hello_back_pending:
            flags |= wire.F_HELLO_BACK
            self._hello_back_pending = False
        seq = self._next_seq()
        if isinstance(it, ObjItem):
            try:
                msg = wire.encode_message(it.kind, it.obj, seq, flags, self._opts)
            except (ValueError, TypeError, OSError, OverflowError):
                stats.send_malformed += 1     # an object we cannot serialise: drop it
                self._tx.objs.pop(it.key, None)
                it.where = None
                return
            if it.sent:
                stats.retransmitted += 1
            it.sent = True
        else:
            it.flags |= flags
            msg = wire.encode_control(it.flags, seq, it.frm, it.to)
        self._emit(msg)
        if isinstance(it, CtlItem) and not (it.flags & wire.F_EXTENDED):
            it.where = None            # ALIVE is never kept
            return
        if len(rs) >= self.params.resend_queue_size + 64:
            # only control messages can overfill it (objects are flow-controlled)
            _old_seq, old = rs.popitem(last=False)
            old.where = None
            stats.rs_dropped += 1
            if isinstance(old, ObjItem):
                self._tx.objs.pop(old.key, None)
                self._lost_upto = old.seq
        it.seq = seq
        it.sent_at = self.now
        it.where = RS
        rs[seq] = it

    def _put_ctl(self, item: CtlItem) -> None:
        item.where = TX
        self._ctl.append(item)

    # -- receive ----------------------------------------------------------------------------

    def _on_message(self, h: wire.Header, msg: bytes, now: float, events: list) -> bool:
        g = self.guard
        if h.flags & wire.F_HELLO_BACK and self._hello == SAY:
            self._hello = DONE
            self.stats.hello_back_received += 1
        v = g.classify(h.seq, msg)
        if v.cls == G.REPLAY:
            self.stats.count_rejected("replayed")
            return False
        saying = self._peer_saying
        self._peer_saying = bool(h.flags & wire.F_HELLO)
        if h.flags & wire.F_HELLO:
            self._hello_back_pending = True
            if g.strict and not saying and v.cls != G.IN_SYNC:
                # Probably a restart: a pending ACK range is in the old incarnation's numbers
                # and would acknowledge the new one's messages we never accepted.
                self._ack_pending = False
                self._window = self.params.ack_window
                self._late.clear()
                self._drop_stale_controls()
                if v.cls in (G.FAR, G.OLD, G.HOLE, G.CONFLICT):
                    g.fills_suspended_until = now + 5.0
            if not g.strict:
                # The C receiver: sequence check bypassed, resend queue dropped, window reset
                # (we re-send instead of dropping, see _peer_restarted).
                if self._ack_pending and serial_before(h.seq, self._ack_from):
                    self._window = self.params.ack_window - 1
                    self._ack_from = h.seq
                if v.cls != G.IN_SYNC and not (self.params.hardening and saying):
                    self._peer_restarted(events)
                if not (self.params.hardening and saying and v.cls == G.GAP):
                    v.cls = G.IN_SYNC
                    return self._in_sync_path(h, msg, v, events)
            elif v.cls in (G.FAR, G.OLD):
                # A HELLO is no licence to jump: it may be a mutated copy. Trust a restarted
                # peer's new numbering once a run of consecutive messages confirms it.
                if v.cls == G.FAR:
                    self.stats.count_rejected("seq_implausible")
                else:
                    g.count_c(v)
                return self._candidate(h, msg, v, events)
            elif not saying and v.cls in (G.UNSET, G.GAP):
                # first HELLO of a stretch with a plausible number: the peer restarted (its
                # message goes through the normal checks below, gap included)
                self._peer_restarted(events, rebase=v.cls == G.UNSET)
        # (A peer keeps HELLO on every message until it hears our HELLO_BACK; the C receiver
        # bypasses the sequence check for all of them, so losses in that stretch are never
        # NACKed. Hardened, only the first HELLO of a stretch counts as a restart.)
        cls = v.cls
        if cls in (G.UNSET, G.IN_SYNC):
            return self._in_sync_path(h, msg, v, events)
        if cls == G.GAP:
            if self._stale(h, msg, v):
                return False
            r = self._digest(h, events)
            if r == BAD:
                self.stats.count_malformed(wire.BAD_HEADER)
                return False
            g.count_c(v)
            if self._ack_pending:
                self._queue_ctl(wire.F_ACK, self._ack_from, g.last)
            self._queue_ctl(wire.F_NACK, (g.last + 1) & MASK, (h.seq - 1) & MASK)
            self._window = self.params.ack_window - 1
            self._ack_from = h.seq
            self._ack_pending = True
            g.accept(v)
            if r == DATA:
                self._decode_and_apply(h, msg, events, v)
            return True
        if cls in (G.HOLE, G.CONFLICT):
            if self._stale(h, msg, v):
                return False
            r = self._digest(h, events)
            if r == BAD:
                self.stats.count_malformed(wire.BAD_HEADER)
                return False
            g.accept(v)
            # The peer may still hold it unacknowledged (its number was skipped): acknowledge
            # it with the next timer ACK (coalesced, so reordering cannot cause an ACK storm)
            # — unless a restart is suspected: then the number may be the new incarnation's.
            if now >= g.fills_suspended_until:
                self._late.append(h.seq)
            if r == DATA:
                self._decode_and_apply(h, msg, events, v)
            return True
        if cls == G.FAR:
            self.stats.count_rejected("seq_implausible")
            return self._candidate(h, msg, v, events)
        # OLD: dropped as in C; in strict mode it may be the start of a restarted peer's run.
        g.count_c(v)
        if g.strict:
            return self._candidate(h, msg, v, events)
        return False

    def _in_sync_path(self, h: wire.Header, msg: bytes, v: G.Verdict, events: list) -> bool:
        if self._stale(h, msg, v):
            return False
        r = self._digest(h, events)
        if r == BAD:
            self.stats.count_malformed(wire.BAD_HEADER)
            return False
        if not self._ack_pending:
            self._ack_from = h.seq
            self._ack_pending = True
        self._window = (self._window - 1) & MASK
        if self._window == 0:
            self._queue_ctl(wire.F_ACK, self._ack_from, h.seq)
            self._window = self.params.ack_window
            self._ack_pending = False
        self.guard.accept(v)
        if r == DATA:
            self._decode_and_apply(h, msg, events, v)
        return True

    def _candidate(self, h: wire.Header, msg: bytes, v: G.Verdict, events: list) -> bool:
        g = self.guard
        old_last, was_started = g.last, g.started
        run = g.candidate(h, msg, v, self.now, self.stats.pkts_recv)
        if run is None:
            return False
        # The peer's numbering really moved (restart, or more loss than max_seq_jump).
        first = run[0][0].seq
        if was_started and serial_after(first, (old_last + 1) & MASK):
            self._queue_ctl(wire.F_NACK, (old_last + 1) & MASK, (first - 1) & MASK)
        self._peer_restarted(events)
        self._ack_pending = False
        self._window = self.params.ack_window
        ok = False
        for hh, mm in run:
            vv = g.classify(hh.seq, mm)
            vv.cls = G.IN_SYNC
            ok = self._in_sync_path(hh, mm, vv, events) or ok
        return ok

    def _digest(self, h: wire.Header, events: list) -> str:
        if h.is_data:
            return DATA
        if h.type != wire.CTL:
            return BAD
        f = h.flags
        frm, to = h.frm or 0, h.to or 0          # set for every extended control message
        if f & (wire.F_ACK | wire.F_NACK) and self._hello != DONE:
            # Until the peer answers our HELLO its ranges name our previous incarnation's
            # numbers: an old ACK would delete new messages it never got (simulator, swarm
            # seed 207). Valid, but without effect.
            return CTL if not serial_before(to, frm) else BAD
        if f & wire.F_ACK:
            if serial_before(to, frm):
                return BAD
            self._on_ack(frm, to)
            return CTL
        if f & wire.F_NACK:
            if serial_before(to, frm):
                return BAD
            self._on_nack(frm, to, events)
            return CTL
        if f & wire.F_RESYNC:
            self.stats.resync_requests += 1
            events.append(ResyncRequested("peer"))
            return CTL
        if f & wire.F_ALIVE:
            return CTL
        return BAD

    def _rs_range(self, frm: int, to: int) -> list[int]:
        """Sequence numbers of rs entries in [frm, to], walking from the head as C does."""
        hits = []
        for seq in self._rs:
            if serial_before(seq, frm):
                continue
            if not serial_between(seq, frm, to):
                break
            hits.append(seq)
        return hits

    def _on_ack(self, frm: int, to: int) -> None:
        if self._acked_upto is None or serial_after(to, self._acked_upto):
            self._acked_upto = to
        tail = self._tail_seq
        if tail is not None and serial_between(tail, frm, to):
            self._probe_at = None        # the peer has the probed round's tail
        rs, objs = self._rs, self._tx.objs
        for seq in self._rs_range(frm, to):
            it = rs.pop(seq)
            it.where = None
            if isinstance(it, ObjItem):
                objs.pop(it.key, None)
        if not rs and sys.getsizeof(rs) > 1 << 16:
            # all acknowledged: give back a burst's table (a dict never shrinks as items
            # leave; 100k in flight left ~7 MB behind for good)
            self._rs = OrderedDict()

    def _on_nack(self, frm: int, to: int, events: list) -> None:
        self._lossy_until = self.now + LOSSY_FOR * self.params.alive_interval
        rs, fifo, ctl = self._rs, self._tx.fifo, self._ctl
        for seq in self._rs_range(frm, to):
            it = rs.pop(seq)
            it.where = TX
            if isinstance(it, ObjItem):
                fifo.append(it)
            else:
                ctl.append(it)
        lost = self._lost_upto
        if lost is not None and not serial_after(frm, lost):
            # Some of what the peer misses is no longer in the resend queue.
            self._lost_upto = None
            events.append(ResyncRequested("lost"))

    def _peer_restarted(self, events: list, rebase: bool = True) -> None:
        """HELLO (or a confirmed re-base): the C daemon discards its resend queue; we re-send
        the objects in it instead (the peer may never have got them) and drop old controls."""
        self.stats.peer_restarts += 1
        events.append(PeerRestarted())
        if rebase:
            self.guard.rebase_all()
        fifo = self._tx.fifo
        for it in self._rs.values():
            if isinstance(it, ObjItem):
                it.where = TX
                fifo.append(it)
            else:
                it.where = None
        self._rs.clear()

    def _drop_stale_controls(self) -> None:
        """Our ACK/NACK ranges name the peer's old numbers: re-sent to a restarted peer they
        would acknowledge (delete) or request messages of its new numbering (found by the
        simulator, swarm seed 49). Drop them from the resend and tx queues."""
        for seq in [s for s, it in self._rs.items()
                    if isinstance(it, CtlItem) and it.flags & (wire.F_ACK | wire.F_NACK)]:
            self._rs.pop(seq).where = None
        keep = deque(it for it in self._ctl if not it.flags & (wire.F_ACK | wire.F_NACK))
        self._ctl.clear()
        self._ctl.extend(keep)

    def _peer_epoch_changed(self, now: float, events: list) -> None:
        self._peer_restarted(events)
        self.guard.started = False
        self._ack_pending = False

    def _queue_ctl(self, flags: int, frm: int, to: int) -> None:
        self._put_ctl(CtlItem(flags, frm & MASK, to & MASK))
