"""Receive-side sequence tracking and hardening, shared by the three modes.

The C receiver (spec §3.3) keeps only ``last``/``started`` and trusts any sequence number it is
shown; a forged or mutated copy of an old datagram can then jump ``last`` ahead (so genuine
messages are dropped as old and acknowledged without ever being applied), or resurrect a state
that was deleted since. Without a MAC we cannot tell a forgery from the truth byte by byte, so
the guard (strict mode: C-compatible wire, ``hardening`` on) uses what a forger cannot avoid:

* exact replays: a message whose bytes we already accepted is rejected (``replayed``);
* stale content: a data message whose body (everything but seq and the HELLO bits) we have
  already seen, for a key whose current state is different, is a replay with a mutated
  sequence number — it is not applied (``stale_content``) and its sequence slot is marked
  *suspect*, so the genuine message with that number is still accepted when it arrives;
* implausible sequence numbers: more than ``max_seq_jump`` ahead of the expected one are
  rejected (``seq_implausible``). A genuine peer that really jumped (restart without HELLO,
  e.g. NOTRACK/ALARM, or a huge loss) keeps sending: a run of ``rebase_run`` consecutive
  fresh numbers over at least two datagrams and half a second makes the guard re-base on
  them (``rebases``);
* holes: numbers skipped by a gap are remembered; a late message filling one is accepted
  (reordering, or a forged gap that made genuine messages look old);
* per-key ordering: a state older (by sequence) than the last one applied for the same key is
  never applied, so a late or replayed message cannot roll an entry back or undelete it.

With ``strict`` off (authenticated mode, whose frames cannot be forged or replayed, or
``hardening=False``) the guard behaves exactly like the C receiver.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ctools.sync import wire
from ctools.sync.stats import SyncStats

MASK = 0xFFFFFFFF
HALF = 0x80000000

# hash() is a signed 64-bit value: masked to 64 bits it packs losslessly below the sequence
# number in a key's record
_BODY_MASK = (1 << 64) - 1

REBASE_SPAN = 0.5   # seconds a run of fresh numbers must span before we re-base on it

# verdict classes
UNSET, IN_SYNC, GAP, OLD, FAR, HOLE, CONFLICT, REPLAY = (
    "unset", "in_sync", "gap", "old", "far", "hole", "conflict", "replay")


class Verdict:
    """How one incoming message relates to the receive state."""

    __slots__ = ("cls", "seq", "gap", "suspect", "exact", "body", "msg", "decoded")

    def __init__(self, cls: str, seq: int, gap: int, suspect: bool, exact: int,
                 body: int) -> None:
        self.cls = cls
        self.seq = seq
        self.gap = gap          # for GAP: number of skipped sequence numbers
        self.suspect = suspect  # body already seen with another sequence number
        self.exact = exact
        self.body = body
        self.msg = b""
        self.decoded = None     # wire.scan_data() result or the ProtocolError, once checked


# A message claiming a sequence slot held by a suspect (repeated-content) message must differ
# from it in more than this many bytes: a few flipped bits make a mutated copy, not the owner.
CONFLICT_MIN_BYTES = 0


def _distance(a: bytes, b: bytes) -> int:
    """Bytes that differ (outside the sequence number); a length change counts as large."""
    if len(a) != len(b):
        return 1 << 16
    return sum(x != y for i, (x, y) in enumerate(zip(a, b, strict=True)) if not 4 <= i < 8)


def body_hash(msg: bytes) -> int:
    """Hash of a message without its sequence number and HELLO bits."""
    return hash(msg[:1] + bytes((msg[1] & 0x9F,)) + msg[2:4] + msg[8:])


class _Lru(OrderedDict):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def touch(self, k, v=None) -> None:
        self[k] = v
        self.move_to_end(k)
        if len(self) > self.cap:
            self.popitem(last=False)


class _LruSet:
    """Least-recently-touched set of hashes, bounded to ``cap`` members.

    Same eviction order as ``_Lru`` at about a third of the memory: a plain dict (member ->
    number of its touches still queued) and a deque of touches, oldest first, instead of an
    OrderedDict's linked node per member. Evicting pops touches from the left; the first
    member whose count drops to zero is the one whose last touch is the oldest."""

    __slots__ = ("cap", "_count", "_touches")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._count: dict = {}
        self._touches: deque = deque()

    def __contains__(self, k) -> bool:
        return k in self._count

    def __len__(self) -> int:
        return len(self._count)

    def touch(self, k) -> None:
        count = self._count
        count[k] = count.get(k, 0) + 1
        touches = self._touches
        touches.append(k)
        while len(count) > self.cap:
            old = touches.popleft()
            left = count[old] - 1
            if left:
                count[old] = left
            else:
                del count[old]
        if len(touches) > 2 * self.cap + 64:
            self._compact()

    def _compact(self) -> None:
        """Keep only each member's last touch (repeated touches of members already held)."""
        seen = set()
        last = []
        for k in reversed(self._touches):
            if k not in seen:
                seen.add(k)
                last.append(k)
        last.reverse()
        self._touches = deque(last)
        self._count = dict.fromkeys(last, 1)


class ReceiveGuard:
    """Sequence state of the peer as seen by this receiver."""

    def __init__(self, params, stats: SyncStats, strict: bool) -> None:
        self.strict = strict
        self.stats = stats
        self.max_jump = params.max_seq_jump
        self.rebase_run = max(1, params.rebase_run)
        self.last = 0
        self._chain = 0
        self.started = False
        self.gen = 0
        mem = params.replay_memory
        self._exact = _LruSet(mem)
        self._bodies = _LruSet(mem)
        self._suspects = _Lru(4096)
        self._holes: list[list[int]] = []     # [lo, hi] inclusive, serial order
        # False once a hole was added below a newer one (``last`` moved back: NOTRACK's
        # set_last): pruning then walks the whole list instead of only its old end
        self._holes_sorted = True
        # key -> one int packing (gen, seq, body hash): an int costs ~44 B where the 3-tuple
        # of ints cost ~130 B, for every flow the peer ever sent
        self._keys: dict = {}
        self._tombs = _Lru(mem)
        self._run: list = []
        self.tainted = False    # the current datagram repeats a message we already have
        # NOTRACK/ALARM have no NACK: a late (reordered) fresh message may fill any number
        # of a gap, not only its lowest (set by those modes)
        self.fill_anywhere = False
        self.now = 0.0          # time of the datagram being processed (set by the core)
        # After a HELLO we could not place (probably a restart, not yet confirmed) a message
        # that fits a gap of the old numbering may belong to the new one: FT-FW does not
        # acknowledge such fills for a while (the sender re-sends what stays unacknowledged).
        self.fills_suspended_until = float("-inf")

    # -- classification ---------------------------------------------------------------------

    def classify(self, seq: int, msg: bytes) -> Verdict:
        v = self._classify(seq, msg)
        v.msg = msg
        return v

    def _classify(self, seq: int, msg: bytes) -> Verdict:
        """Classify (the only state it touches: any message that does not continue the
        re-base run breaks it, so the run must arrive uninterrupted)."""
        run = self._run
        if run and seq != (run[-1][0].seq + 1) & MASK:
            run.clear()
        exact = hash(msg) if self.strict else 0
        body = body_hash(msg) if self.strict else 0
        suspect = self.strict and body in self._bodies
        if self.strict and exact in self._exact:
            return Verdict(REPLAY, seq, 0, suspect, exact, body)
        if not self.started:
            return Verdict(UNSET, seq, 0, suspect, exact, body)
        d = (seq - self.last - 1) & MASK
        if d == 0:
            return Verdict(IN_SYNC, seq, 0, suspect, exact, body)
        if d < HALF:
            if self.strict and d > self.max_jump:
                return Verdict(FAR, seq, d, suspect, exact, body)
            return Verdict(GAP, seq, d, suspect, exact, body)
        if self.strict and not self.tainted:
            # Only the in-order continuation of the genuine stream may fill a hole (at its
            # lowest missing number) or claim a slot taken by a suspect or out-of-order message
            # (right after the last in-order one): a mutated copy of an old datagram lands
            # anywhere else.
            if self._hole_start(seq) or (self.fill_anywhere and not suspect
                                         and self._in_hole(seq)):
                return Verdict(HOLE, seq, 0, suspect, exact, body)
            held = self._suspects.get(seq)
            if held is not None and not suspect and seq == (self._chain + 1) & MASK \
                    and _distance(held, msg) > CONFLICT_MIN_BYTES:
                return Verdict(CONFLICT, seq, 0, suspect, exact, body)
        return Verdict(OLD, seq, 0, suspect, exact, body)

    def scan_datagram(self, payload: bytes) -> None:
        """``scan_messages`` for the messages of a raw datagram payload."""
        self.scan_messages([payload[off:off + header.length]
                            for item in wire.split_messages(payload)
                            if isinstance(item, tuple) for header, off in (item,)])

    def scan_messages(self, msgs: list[bytes]) -> None:
        """Before a datagram's messages are classified: does it contain an exact copy of a
        message we accepted? Genuine datagrams never do (every message has a new number), a
        mutated copy of an old datagram nearly always does; such a datagram may not fill
        holes or claim slots."""
        exact = self._exact
        self.tainted = any(hash(m) in exact for m in msgs)

    def count_c(self, v: Verdict) -> None:
        """The C "Packets lost"/"Packets before" counters for this classification."""
        if v.cls == GAP:
            self.stats.seq_lost += (v.seq - self.last + 1) & MASK  # C over-count (§3.3)
        elif v.cls == OLD:
            self.stats.seq_before += 1

    # -- state changes ----------------------------------------------------------------------

    def accept(self, v: Verdict) -> None:
        """Record an accepted message: advances ``last`` unless it filled a hole/conflict."""
        seq = v.seq
        # ``chain``: newest number of the in-order stream (fresh in-sync messages and hole
        # fills; a repeated body advances it only once it proved to be the current state)
        if v.cls == UNSET or (v.cls in (IN_SYNC, HOLE, CONFLICT) and not v.suspect):
            self._chain = seq
        if v.cls in (HOLE, CONFLICT, OLD, REPLAY):
            if v.cls == HOLE:
                self._fill_hole(seq)
                self.stats.holes_filled += 1
            elif v.cls == CONFLICT:
                self._suspects.pop(seq, None)
        else:
            if v.cls == GAP and self.strict:
                holes = self._holes
                lo = (self.last + 1) & MASK
                if holes and not 0 < ((lo - holes[-1][1]) & MASK) < HALF:
                    self._holes_sorted = False      # not after the newest hole
                holes.append([lo, (seq - 1) & MASK])
            self.last = seq
            self.started = True
            if self.strict:
                self._prune_holes()
        if self.strict:
            self._exact.touch(v.exact)
            self._bodies.touch(v.body)
            if v.suspect or v.cls == GAP:
                self._suspects.touch(seq, v.msg)

    def set_last(self, seq: int) -> None:
        """Force ``last`` (HELLO bypass in FT-FW)."""
        self.last = self._chain = seq & MASK
        self.started = True

    def rebase_all(self) -> None:
        """The peer's sequence space restarted: forget holes, suspects and the run."""
        self.gen += 1
        self.fills_suspended_until = float("-inf")
        self._holes.clear()
        self._holes_sorted = True
        self._suspects.clear()
        self._run.clear()

    def candidate(self, header, msg: bytes, v: Verdict, now: float,
                  dgram: int) -> list | None:
        """Feed an implausible (FAR/OLD) but fresh message to the re-base detector.

        Returns the buffered run [(header, msg), ...] once ``rebase_run`` consecutive sequence
        numbers have arrived in at least two datagrams spread over ``REBASE_SPAN`` seconds (a
        peer that really restarted keeps talking; one late datagram, a reordered burst or a
        scatter of mutated copies does not); the guard has then re-based on the run."""
        if not self.strict or v.cls == REPLAY:
            return None
        run = self._run
        if run and header.seq == (run[-1][0].seq + 1) & MASK and len(run) < 4096:
            run.append((header, msg, now, dgram))
        else:
            run[:] = [(header, msg, now, dgram)]
        if len(run) < self.rebase_run or run[-1][3] == run[0][3] \
                or run[-1][2] - run[0][2] < REBASE_SPAN:
            return None
        out = [(h, m) for h, m, _t, _d in run]
        self.rebase_all()
        self.last = self._chain = (out[0][0].seq - 1) & MASK
        self.started = True
        self.stats.rebases += 1
        return out

    def is_stale(self, key, v: Verdict) -> bool:
        """A repeated body that is not the key's current state: a replay (or a state that
        really returned to an earlier value — the caller trusts it only in sequence)."""
        if not (self.strict and v.suspect):
            return False
        rec = self._keys.get(key)
        return rec is None or (rec & _BODY_MASK) != (v.body & _BODY_MASK)

    def may_apply(self, key, seq: int, v: Verdict, msg: bytes, kind: str) -> bool:
        """Per-key ordering for a decoded data message whose number was accepted."""
        if not self.strict:
            return True
        rec = self._keys.get(key)
        if rec is not None:
            gen, last_seq, last_body = rec >> 96, (rec >> 64) & MASK, rec & _BODY_MASK
            if gen == self.gen and ((seq - last_seq) & MASK) >= HALF:
                self.stats.superseded += 1      # a late message: a newer state is applied
                return False
            if v.suspect and last_body == (v.body & _BODY_MASK):
                # the very state we hold (an ALARM refresh, a bulk re-send, or a copy with a
                # mutated number): harmless to apply, but it must not raise the key's sequence
                # mark, or the genuine next state could be taken for an older one
                if v.cls in (IN_SYNC, HOLE) and seq == (self._chain + 1) & MASK:
                    self._chain = seq
                return True
        self._keys[key] = (self.gen << 96) | (seq << 64) | (v.body & _BODY_MASK)
        if kind == "del":
            # Remember deletions (bounded) so that old copies cannot resurrect them.
            self._tombs[key] = None
            self._tombs.move_to_end(key)
            if len(self._tombs) > self._tombs.cap:
                gone, _ = self._tombs.popitem(last=False)
                self._keys.pop(gone, None)
        else:
            self._tombs.pop(key, None)
        return True

    # -- holes ------------------------------------------------------------------------------

    def _in_hole(self, seq: int) -> bool:
        for lo, hi in self._holes:
            if ((hi - lo) & MASK) >= ((seq - lo) & MASK):
                return True
        return False

    def _hole_start(self, seq: int) -> bool:
        return any(lo == seq for lo, _hi in self._holes)

    def _fill_hole(self, seq: int) -> None:
        for i, (lo, hi) in enumerate(self._holes):
            if ((hi - lo) & MASK) >= ((seq - lo) & MASK):
                parts = []
                if seq != lo:
                    parts.append([lo, (seq - 1) & MASK])
                if seq != hi:
                    parts.append([(seq + 1) & MASK, hi])
                self._holes[i:i + 1] = parts
                return

    def _prune_holes(self) -> None:
        holes = self._holes
        if not holes:
            return
        floor = (self.last - self.max_jump) & MASK
        if self._holes_sorted:
            # Sorted: the holes ending below the floor are a prefix, and only the first kept
            # one can straddle it. Same result as the general walk below, which ran for every
            # accepted message over up to 256 holes: 2/3 of a receiver's CPU at 30 % loss.
            drop = 0
            for lo, hi in holes:
                if ((hi - floor) & MASK) < HALF:      # hi is at/after the floor
                    if ((lo - floor) & MASK) >= HALF:
                        holes[drop] = [floor, hi]
                    break
                drop += 1
            drop = max(drop, len(holes) - 256)
            if drop:
                del holes[:drop]
            return
        keep = []
        for lo, hi in self._holes:
            if ((hi - floor) & MASK) < HALF:      # hi is at/after the floor
                if ((lo - floor) & MASK) >= HALF:
                    lo = floor
                keep.append([lo, hi])
        self._holes = keep[-256:]
        self._holes_sorted = len(self._holes) <= 1
