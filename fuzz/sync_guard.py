"""Harness: the hardened C-compatible receiver against mutated copies of a genuine stream.

Two FT-FW cores (our sender is byte-compatible with the C one) run a fixed workload (entries
created, updated, deleted) over an in-memory link; the fuzz input decides which attacker
datagrams are injected after each genuine one: exact replays, truncations, splices and single
bit flips of genuine datagrams already sent.

Invariants (issue §5 — what the C receiver breaks):
* no phantom: every entry the receiver holds is a state the sender really had for that key;
* replication goes on: at the end, the receiver holds exactly the sender's table (so nothing
  deleted was resurrected either).
"""

from __future__ import annotations

import random

import fuzzlib  # noqa: F401  (puts the checkout on sys.path)

from ctools.model import AF_INET, Entry, Tuple
from ctools.sync import SyncParams, wire
from ctools.sync.pair import Pair

CORPUS = "sync/guard"


def _entry(i: int, timeout: int, state: int) -> Entry:
    return Entry(orig=Tuple(AF_INET, f"10.7.0.{i}", "10.8.0.1", 6, 5000 + i, 80),
                 status=0x18E, tcp_state=state, timeout=timeout)


def _workload():
    rng = random.Random(1)
    steps, table = [], {}
    for _ in range(60):
        i = rng.randrange(12)
        if i in table and rng.random() < 0.3:
            steps.append(("del", table.pop(i)))
        else:
            table[i] = _entry(i, rng.randrange(1, 10**6), rng.randrange(10))
            steps.append(("upd", table[i]))
    return steps


WORKLOAD = _workload()
EVER: dict = {}
for _kind, _e in WORKLOAD:
    EVER.setdefault(wire.obj_key(_e), set()).add(wire.encode_ct_payload(_e))


def _mutant(history: list[bytes], op: bytes) -> bytes:
    d = history[op[0] % len(history)]
    kind = op[1] % 4
    pos = int.from_bytes(op[2:4], "big")
    if kind == 0:
        return d
    if kind == 1:
        return d[:1 + pos % len(d)]
    if kind == 2:
        other = history[op[4] % len(history)]
        return d[:pos % (len(d) + 1)] + other[op[5] % (len(other) + 1):]
    bit = pos % (len(d) * 8)
    b = bytearray(d)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


class _Attacker:
    """Pair tamper hook: after each genuine a->b datagram, the next fuzz-chosen mutants."""

    def __init__(self, data: bytes) -> None:
        self.ops = [data[i:i + 6].ljust(6, b"\0") for i in range(0, min(len(data), 600), 6)]
        self.history: list[bytes] = []

    def __call__(self, direction, dgram, now):
        if direction != "ab":
            return None
        out = []
        if self.history and self.ops:
            out = [_mutant(self.history, self.ops.pop()) for _ in range(3) if self.ops]
        self.history.append(dgram)
        return out


def TestOneInput(data: bytes) -> None:
    p = Pair(SyncParams("ftfw", initial_seq=1795600000, mtu=300),
             SyncParams("ftfw", initial_seq=5), tamper=_Attacker(data))
    p.run(1.2)
    for n, (kind, e) in enumerate(WORKLOAD):
        p.a.update(kind, e, p.now)
        if n % 3 == 2:
            p.run(p.now + 0.01)
            for key, obj in p.b.external.items():
                assert wire.encode_ct_payload(obj) in EVER.get(key, ()), ("phantom", key)
    p.run(p.now + 3.0)
    assert p.converged(), "replication did not converge"


if __name__ == "__main__":
    import sys

    n = fuzzlib.smoke(TestOneInput, fuzzlib.seeds(CORPUS),
                      runs=3000, seconds=20)
    print("ok", n)
    sys.exit(0)
