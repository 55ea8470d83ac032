"""External cache: the peer's flows, kept as the sync payloads they arrived in.

A receiver holds every flow of its peer (100k and more) and reads them back only for a view, a
dump or a commit; keeping each as its checked wire payload (about a hundred bytes) instead of a
decoded Entry cuts the memory per flow several-fold. The key is the flow's identity as the
sync core computed it (``wire.scan_ct_payload``), the very object the core's receive guard
holds, so it is stored once.
"""

from __future__ import annotations

from collections.abc import Iterator

from ctools._speedups import load_ctfast
from ctools.daemon.stats import CacheCounters
from ctools.model import Entry
from ctools.sync import wire

# the C accelerator decodes the common flows ~10x faster (a commit decodes every cached flow)
_c_decode = getattr(load_ctfast(), "decode_sync_ct", None)


def decode_payload(payload: bytes) -> Entry:
    """A fresh Entry from a cached CT payload (C accelerator when built)."""
    e = _c_decode(payload) if _c_decode is not None else None
    if e is None:
        e = wire.decode_ct_payload(payload)
    if e.synproxy == (0, 0, 0):
        e.synproxy = None       # no SYN proxy: what the views expect (and the kernel too)
    return e


class ExternalRecord:
    """One cached flow of the peer: its payload, when it entered and when it last changed."""

    __slots__ = ("payload", "since", "last")

    def __init__(self, payload: bytes, now: float) -> None:
        self.payload = payload
        self.since = now
        self.last = now

    @property
    def entry(self) -> Entry:
        """A fresh Entry decoded from the payload (the caller may change it)."""
        return decode_payload(self.payload)


class ExternalCache:
    """States received from the peer; ``expire`` implements ALARM's CacheTimeout."""

    keep_reply = True       # dumps show the reply tuple the peer sent (none: NAT-less flows)

    def __init__(self, limit: int = 262144, lifetime: float | None = None) -> None:
        self.name = "external"
        self.limit = limit
        self.lifetime = lifetime
        self.objects: dict = {}
        self.counters = CacheCounters()

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[ExternalRecord]:
        return iter(list(self.objects.values()))

    def get(self, key) -> ExternalRecord | None:
        return self.objects.get(key)

    def _insert(self, key, payload: bytes, now: float) -> ExternalRecord | None:
        if len(self.objects) >= self.limit:
            self.counters.create_failed += 1
            self.counters.no_space += 1
            return None
        rec = self.objects[key] = ExternalRecord(payload, now)
        self.counters.created += 1
        return rec

    def add(self, key, payload: bytes, now: float) -> ExternalRecord | None:
        """A NEW: replace whatever the key held."""
        if self.objects.pop(key, None) is not None:
            self.counters.destroyed += 1
        return self._insert(key, payload, now)

    def update(self, key, payload: bytes, now: float) -> ExternalRecord | None:
        """An UPDATE: merge the attributes it carries, or insert when unknown."""
        rec = self.objects.get(key)
        if rec is None:
            return self._insert(key, payload, now)
        rec.payload = wire.merge_ct_payload(rec.payload, payload)
        rec.last = now
        self.counters.updated += 1
        return rec

    def delete(self, key) -> ExternalRecord | None:
        """A DESTROY: None (and a counted miss) when the flow was not cached."""
        rec = self.objects.pop(key, None)
        if rec is None:
            self.counters.destroy_failed += 1
            self.counters.del_not_found += 1
            return None
        self.counters.destroyed += 1
        return rec

    def flush(self) -> None:
        n = len(self.objects)
        self.objects.clear()
        self.counters.destroyed += n

    def expire(self, now: float) -> int:
        """Drop entries not refreshed within ``lifetime`` seconds; returns how many."""
        if self.lifetime is None:
            return 0
        limit = now - self.lifetime
        dead = [k for k, o in self.objects.items() if o.last < limit]
        for k in dead:
            del self.objects[k]
        self.counters.destroyed += len(dead)
        return len(dead)
