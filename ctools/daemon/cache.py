"""Internal cache (our kernel's flows) and external cache (the peer's flows).

Both are dicts keyed by the original tuple (zone included, unlike the C daemon which
hashes but does not compare it).  Values are small slotted records holding the Entry and
the times the dumps and ALARM expiry need.
"""

from __future__ import annotations

from collections.abc import Iterator

from ctools.daemon.stats import CacheCounters
from ctools.model import Entry

# attributes a cache never keeps: they change on every packet and are not replicated
_VOLATILE = ("orig_packets", "orig_bytes", "reply_packets", "reply_bytes", "use", "id")
_MERGE_FIELDS = tuple(f for f in Entry.__slots__ if f not in _VOLATILE and f != "orig")


def strip_volatile(entry: Entry) -> Entry:
    """Drop counters/use/id in place (the caches do not track them)."""
    for name in _VOLATILE:
        setattr(entry, name, None)
    return entry


def merge_into(old: Entry, new: Entry) -> None:
    """Copy every attribute present in ``new`` over ``old``."""
    for name in _MERGE_FIELDS:
        value = getattr(new, name)
        if value is not None:
            setattr(old, name, value)


class CacheObject:
    """One cached flow: the entry, when it entered the cache and when it last changed."""

    __slots__ = ("entry", "since", "last")

    def __init__(self, entry: Entry, now: float) -> None:
        self.entry = entry
        self.since = now
        self.last = now


class FlowCache:
    """Common part of both caches: a bounded dict with the reference counters."""

    def __init__(self, name: str, limit: int = 262144) -> None:
        self.name = name
        self.limit = limit
        self.objects: dict[tuple, CacheObject] = {}
        self.counters = CacheCounters()

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[CacheObject]:
        return iter(list(self.objects.values()))

    def get(self, key: tuple) -> CacheObject | None:
        return self.objects.get(key)

    def _insert(self, key: tuple, entry: Entry, now: float) -> CacheObject | None:
        if len(self.objects) >= self.limit:
            self.counters.create_failed += 1
            self.counters.no_space += 1
            return None
        obj = CacheObject(entry, now)
        self.objects[key] = obj
        self.counters.created += 1
        return obj

    def add(self, entry: Entry, now: float) -> CacheObject | None:
        """Replace any entry with the same key by ``entry`` (a NEW)."""
        key = entry.key()
        old = self.objects.pop(key, None)
        if old is not None:
            self.counters.destroyed += 1
        return self._insert(key, entry, now)

    def update(self, entry: Entry, now: float) -> CacheObject | None:
        """Merge ``entry`` into the cached one, inserting it when unknown (an UPDATE)."""
        key = entry.key()
        obj = self.objects.get(key)
        if obj is None:
            return self._insert(key, entry, now)
        merge_into(obj.entry, entry)
        obj.last = now
        self.counters.updated += 1
        return obj

    def delete(self, entry_or_key: Entry | tuple) -> CacheObject | None:
        """Remove the flow; None (and a counted miss) when it was not cached."""
        key = entry_or_key.key() if isinstance(entry_or_key, Entry) else entry_or_key
        obj = self.objects.pop(key, None)
        if obj is None:
            self.counters.destroy_failed += 1
            self.counters.del_not_found += 1
            return None
        self.counters.destroyed += 1
        return obj

    def flush(self) -> None:
        n = len(self.objects)
        self.objects.clear()
        self.counters.destroyed += n


class InternalCache(FlowCache):
    """Mirror of the local kernel table (after the Filter)."""

    def __init__(self, limit: int = 262144, name: str = "internal") -> None:
        super().__init__(name, limit)


class ExternalCache(FlowCache):
    """States received from the peer; ``expire`` implements ALARM's CacheTimeout."""

    def __init__(self, limit: int = 262144, lifetime: float | None = None) -> None:
        super().__init__("external", limit)
        self.lifetime = lifetime

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
