"""Seeded randomness: one seed, many independent streams.

Every subsystem (each link direction, the workload, the fault schedule, each replica's core)
draws from its own stream derived from the run seed and a label, so adding a draw in one place
never shifts the numbers another place sees — a trace stays comparable across small changes.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, label: str) -> int:
    """A 64-bit seed for the stream called ``label`` of run ``seed``."""
    digest = hashlib.sha256(f"{seed}/{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def stream(seed: int, label: str) -> random.Random:
    """An independent ``random.Random`` for ``label`` (Mersenne Twister: same on every host)."""
    return random.Random(derive_seed(seed, label))
