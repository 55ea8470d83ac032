"""Internal cache (our kernel's flows) and external cache (the peer's flows).

Both are dicts keyed by the original Tuple object (zone included, unlike the C daemon
which hashes but does not compare it).  Values are small slotted records holding the Entry and
the times the dumps and ALARM expiry need.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from ctools.daemon.stats import CacheCounters
from ctools.model import IPS_DST_NAT, IPS_SRC_NAT, Entry, Expect, Tuple

# attributes a cache never keeps: they change on every packet and are not replicated
# (the kernel id is kept: ``-i -x`` shows it, and the sync wire format ignores it)
_VOLATILE = ("orig_packets", "orig_bytes", "reply_packets", "reply_bytes", "use")
_MERGE_FIELDS = tuple(f for f in Entry.__slots__ if f not in _VOLATILE and f != "orig")


def strip_volatile(entry: Entry) -> Entry:
    """Drop counters and use count in place (the caches do not track them)."""
    for name in _VOLATILE:
        setattr(entry, name, None)
    return entry


_SHARED: dict = {}     # one object per distinct small tuple (flags, synproxy)
_intern = sys.intern
_NAT = IPS_SRC_NAT | IPS_DST_NAT

# Large ints (timeouts above 256, status with high bits) are a fresh 32-byte object per
# decoded flow; a burst carries few distinct values, so keep one of each.  Bounded: under
# real traffic the remaining timeouts spread widely and sharing stops paying off.
_INTS: dict[int, int] = {}
_INTS_MAX = 4096


def _share_int(v: int | None) -> int | None:
    if v is None or -5 <= v <= 256:
        return v                    # CPython caches these already
    s = _INTS.get(v)
    if s is not None:
        return s
    if len(_INTS) < _INTS_MAX:
        _INTS[v] = v
    return v


def compact(e: Entry) -> Entry:
    """Shrink an entry kept for long in a cache (100k of them must fit in a few dozen MB).

    The reply tuple is dropped when it is the plain inverse of the original one (no NAT),
    the way the sync protocol itself leaves it out; ``full_reply`` puts it back for dumps.
    Destination addresses (servers: few, repeated) and the small tuples are shared.
    """
    o = e.orig
    r = e.reply
    if o is not None:
        if o.dst is not None:
            o.dst = _intern(o.dst)
        if r is not None:
            if (r.src == o.dst and r.dst == o.src and r.sport == o.dport
                    and r.dport == o.sport and r.proto == o.proto and r.zone == o.zone
                    and o.icmp_type is None and r.icmp_type is None
                    and not (e.status or 0) & _NAT):
                e.reply = None
            elif r.src is not None:
                r.src = _intern(r.src)
    flags = e.tcp_flags_orig
    if flags is not None:
        e.tcp_flags_orig = _SHARED.setdefault(flags, flags)
        flags = e.tcp_flags_reply
        if flags is not None:
            e.tcp_flags_reply = _SHARED.setdefault(flags, flags)
    if e.synproxy is not None:
        e.synproxy = _SHARED.setdefault(e.synproxy, e.synproxy)
    return e


def full_reply(e: Entry) -> Tuple | None:
    """The reply tuple of an internal-cache entry (rebuilt when ``compact`` dropped it)."""
    if e.reply is not None or e.orig is None:
        return e.reply
    o = e.orig
    return Tuple(family=o.family, src=o.dst, dst=o.src, proto=o.proto, sport=o.dport,
                 dport=o.sport, zone=o.zone)


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

    keep_reply = True     # external entries: the reply tuple is whatever the peer sent

    def __init__(self, name: str, limit: int = 262144) -> None:
        self.name = name
        self.limit = limit
        self.objects: dict[Tuple, CacheObject] = {}
        self.counters = CacheCounters()

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[CacheObject]:
        return iter(list(self.objects.values()))

    def get(self, key: Tuple) -> CacheObject | None:
        """The cached flow whose original tuple is ``key``."""
        return self.objects.get(key)

    def _insert(self, key: Tuple, entry: Entry, now: float) -> CacheObject | None:
        if len(self.objects) >= self.limit:
            self.counters.create_failed += 1
            self.counters.no_space += 1
            return None
        obj = CacheObject(self._compact(entry), now)
        self.objects[key] = obj
        self.counters.created += 1
        return obj

    def add(self, entry: Entry, now: float) -> CacheObject | None:
        """Replace any entry with the same key by ``entry`` (a NEW)."""
        key = entry.orig
        old = self.objects.pop(key, None)
        if old is not None:
            self.counters.destroyed += 1
        return self._insert(key, entry, now)

    def update(self, entry: Entry, now: float) -> CacheObject | None:
        """Merge ``entry`` into the cached one, inserting it when unknown (an UPDATE)."""
        key = entry.orig
        obj = self.objects.get(key)
        if obj is None:
            return self._insert(key, entry, now)
        merge_into(obj.entry, entry)
        self._compact(obj.entry)
        obj.last = now
        self.counters.updated += 1
        return obj

    def _compact(self, entry: Entry) -> Entry:
        entry.timeout = _share_int(entry.timeout)
        entry.status = _share_int(entry.status)
        if self.keep_reply:
            o = entry.orig
            if o is not None and o.dst is not None:
                o.dst = _intern(o.dst)
            if entry.synproxy == (0, 0, 0):
                entry.synproxy = None       # no SYN proxy: nothing to keep per entry
            return entry
        return compact(entry)

    def delete(self, entry_or_key: Entry | Tuple) -> CacheObject | None:
        """Remove the flow; None (and a counted miss) when it was not cached."""
        key = entry_or_key.orig if isinstance(entry_or_key, Entry) else entry_or_key
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


class ExpectCache(FlowCache):
    """Expectations (internal or external), keyed by the expected tuple; an update replaces
    the stored expectation's contents."""

    def __init__(self, name: str, limit: int = 262144) -> None:
        super().__init__(name, limit)

    def add(self, x: Expect, now: float) -> CacheObject | None:
        old = self.objects.pop(x.tuple, None)
        if old is not None:
            self.counters.destroyed += 1
        return self._insert(x.tuple, x, now)

    def update(self, x: Expect, now: float) -> CacheObject | None:
        obj = self.objects.get(x.tuple)
        if obj is None:
            return self._insert(x.tuple, x, now)
        obj.entry = x
        obj.last = now
        self.counters.updated += 1
        return obj

    def delete(self, x_or_key) -> CacheObject | None:
        key = x_or_key.tuple if isinstance(x_or_key, Expect) else x_or_key
        obj = self.objects.pop(key, None)
        if obj is None:
            self.counters.destroy_failed += 1
            self.counters.del_not_found += 1
            return None
        self.counters.destroyed += 1
        return obj

    def _compact(self, entry):
        return entry


class InternalCache(FlowCache):
    """Mirror of the local kernel table (after the Filter); entries are kept ``compact``."""

    keep_reply = False

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
