"""The receive guard's hole pruning is a pure function of (holes, floor): whatever shortcut
ReceiveGuard._prune_holes takes (it runs for every accepted message, so under heavy loss its
cost matters — see the report of the FT-FW loss work), the guard must classify and keep holes
exactly like the plain walk over every hole. Randomised over gaps, late fills, OLD messages,
NOTRACK's backwards ``set_last`` and sequence wrap."""

from __future__ import annotations

import random

import pytest

from ctools.sync import guard as G
from ctools.sync.core import SyncParams
from ctools.sync.stats import SyncStats

MASK = G.MASK


def _reference_prune(self) -> None:
    """Keep every hole whose end is at/after the floor (clipping its start), newest 256."""
    if not self._holes:
        return
    floor = (self.last - self.max_jump) & MASK
    keep = []
    for lo, hi in self._holes:
        if ((hi - floor) & MASK) < G.HALF:
            if ((lo - floor) & MASK) >= G.HALF:
                lo = floor
            keep.append([lo, hi])
    self._holes = keep[-256:]


@pytest.mark.parametrize("jump", [50, 300, 16384])
def test_hole_pruning_matches_the_plain_walk(jump):
    for trial in range(40):
        rng = random.Random(trial * 7 + jump)
        p = SyncParams("ftfw", max_seq_jump=jump)
        fast = G.ReceiveGuard(p, SyncStats(), True)
        ref = G.ReceiveGuard(p, SyncStats(), True)
        ref._prune_holes = _reference_prune.__get__(ref)
        seq = rng.randrange(1 << 32)
        for step in range(1500):
            r = rng.random()
            if r < 0.6:
                seq = (seq + 1) & MASK
            elif r < 0.85:
                seq = (seq + rng.randrange(2, 40)) & MASK          # a gap
            elif r < 0.95:
                seq = (seq - rng.randrange(1, 60)) & MASK          # late / old
            else:
                seq = (seq + rng.randrange(1, 2 * jump)) & MASK    # far
            msg = bytes([0x10, 0, 0, 12]) + seq.to_bytes(4, "big") + rng.randbytes(4)
            va, vb = fast.classify(seq, msg), ref.classify(seq, msg)
            assert va.cls == vb.cls, (trial, step)
            if rng.random() < 0.02:
                fast.set_last(seq)          # NOTRACK records old numbers too
                ref.set_last(seq)
            elif va.cls not in (G.REPLAY, G.FAR):
                fast.accept(va)
                ref.accept(vb)
            assert fast._holes == ref._holes, (trial, step)
            assert fast.last == ref.last
