"""Virtual time and the event queue of the discrete-event simulator.

Time is an integer count of microseconds, so ordering and arithmetic are exact; the protocol core
sees ``now`` in float seconds (``seconds(t)``), as the daemon would from a monotonic clock.
Ties are broken by insertion order, which keeps the run deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

US = 1_000_000

# The virtual clock starts at a fixed wall-clock-like epoch: the FT-FW sequence counter is
# seeded from the clock in seconds (spec §3.1), and a realistic magnitude exercises u32 wrap.
EPOCH_US = 1_795_600_000 * US


def seconds(t_us: int) -> float:
    """Virtual time in seconds, as handed to the protocol core."""
    return t_us / US


def us(t_seconds: float) -> int:
    """Seconds to integer microseconds (rounded to the nearest microsecond)."""
    return int(round(t_seconds * US))


class EventQueue:
    """A min-heap of (time, order) -> callback; ``pop`` returns the earliest event."""

    __slots__ = ("_heap", "_order", "now")

    def __init__(self, start_us: int = EPOCH_US) -> None:
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = 0
        self.now = start_us

    def at(self, t_us: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` at absolute time ``t_us`` (never in the past)."""
        if t_us < self.now:
            t_us = self.now
        self._order += 1
        heapq.heappush(self._heap, (t_us, self._order, fn, args))

    def after(self, delay_us: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` ``delay_us`` from now."""
        self.at(self.now + max(0, delay_us), fn, *args)

    def peek_time(self) -> int | None:
        """Time of the next event, or None when the queue is empty."""
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Advance the clock to the next event and run it. False when nothing is left."""
        if not self._heap:
            return False
        t_us, _, fn, args = heapq.heappop(self._heap)
        self.now = t_us
        fn(*args)
        return True

    def __len__(self) -> int:
        return len(self._heap)
