"""Sans-IO link impairment: frames in, (due time, frame) out — seeded, counted, no I/O.

The relay feeds every frame it receives on one port to the ``Shaper`` of that direction
and transmits what comes out when it is due. Every random choice comes from one
``random.Random`` per direction, derived from the lab seed, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from .config import Impairment

ETH_HEADER = 14
REORDER_HOLD_S = 0.020      # a held-back frame leaves at the latest this long after it came


@dataclass(slots=True)
class Outgoing:
    due: float
    seq: int
    frame: bytes

    def __lt__(self, other: Outgoing) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Shaper:
    """Impairs one direction of a link.

    ``submit(frame, now)`` returns the frames to schedule (possibly none, one corrupted, or a
    duplicate); ``release(now)`` returns a held-back (reordered) frame whose time has come.
    ``counts`` tells what was done.
    """

    def __init__(self, imp: Impairment, seed: int, direction: str) -> None:
        self.imp = imp
        self.rng = random.Random(f"{seed}:{direction}")
        self.counts: Counter[str] = Counter()
        self._bad_state = False          # Gilbert-Elliott channel state
        self._held: Outgoing | None = None
        self._seq = 0
        self._tokens_free_at = 0.0       # rate limiter: when the queue will be empty
        self._queued = 0

    def set_impairment(self, imp: Impairment) -> None:
        """Change the settings on the fly (partition, heal, new loss...)."""
        self.imp = imp

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _burst_lost(self) -> bool:
        imp = self.imp
        if imp.burst_loss <= 0.0:
            return False
        leave = 1.0 / imp.burst_len                   # P(bad -> good)
        share = min(imp.burst_loss, 0.99)
        enter = share * leave / (1.0 - share)          # P(good -> bad), stationary share
        if self._bad_state:
            if self.rng.random() < leave:
                self._bad_state = False
        elif self.rng.random() < enter:
            self._bad_state = True
        return self._bad_state

    def submit(self, frame: bytes, now: float) -> list[Outgoing]:
        """Apply the impairments to one received frame."""
        imp = self.imp
        c = self.counts
        c["received"] += 1
        c["bytes_in"] += len(frame)
        if imp.partition:
            c["partitioned"] += 1
            return []
        if self._burst_lost():
            c["burst_lost"] += 1
            return []
        if imp.loss and self.rng.random() < imp.loss:
            c["lost"] += 1
            return []
        if imp.corrupt and len(frame) > ETH_HEADER and self.rng.random() < imp.corrupt:
            pos = self.rng.randrange(ETH_HEADER, len(frame))
            flip = 1 << self.rng.randrange(8)
            frame = frame[:pos] + bytes([frame[pos] ^ flip]) + frame[pos + 1:]
            c["corrupted"] += 1
        due = now
        if imp.delay_ms or imp.jitter_ms:
            extra = imp.delay_ms + (self.rng.uniform(-imp.jitter_ms, imp.jitter_ms)
                                    if imp.jitter_ms else 0.0)
            due += max(0.0, extra) / 1000.0
            c["delayed"] += 1
        if imp.rate_kbit:
            if self._tokens_free_at < now:
                self._tokens_free_at = now
                self._queued = 0
            backlog = (self._tokens_free_at - now) * imp.rate_kbit * 125.0
            if backlog + len(frame) > imp.queue_bytes:
                c["rate_dropped"] += 1
                return []
            self._tokens_free_at += len(frame) / (imp.rate_kbit * 125.0)
            due = max(due, self._tokens_free_at)
        out = [Outgoing(due, self._next_seq(), frame)]
        if imp.duplicate and self.rng.random() < imp.duplicate:
            out.append(Outgoing(due, self._next_seq(), frame))
            c["duplicated"] += 1
        if imp.reorder and self._held is None and self.rng.random() < imp.reorder:
            # keep the first copy back: the next frame through overtakes it
            self._held = out.pop(0)
            self._held.due = due + REORDER_HOLD_S
            c["reordered"] += 1
        elif self._held is not None:
            held, self._held = self._held, None
            held.due = max(due, 0.0)
            held.seq = self._next_seq()        # leaves right after this frame
            out.append(held)
        return out

    def release(self, now: float) -> list[Outgoing]:
        """The held-back frame, once nothing overtook it in time."""
        if self._held is not None and self._held.due <= now:
            held, self._held = self._held, None
            return [held]
        return []

    @property
    def next_release(self) -> float | None:
        return self._held.due if self._held is not None else None
