"""Internal cache (our kernel's flows) and the expectation caches.

Dicts keyed by the original Tuple object (zone included, unlike the C daemon which hashes but
does not compare it).  Values are small slotted records holding the flow and the times the
dumps need.  The external cache (the peer's flows) lives in ``extcache``.
"""

from __future__ import annotations

import operator
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
        o.dport = _share_int(o.dport)       # server ports repeat (a fresh int per event)
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


def merge_into(old: Entry | FlowRecord, new: Entry) -> None:
    """Copy every attribute present in ``new`` over ``old``.

    ``old`` may be a :class:`FlowRecord`: when ``new`` carries an attribute the record has no
    slot for, the record is widened in place first (same object: whoever holds it, a sync
    core's queue or ALARM's refresh list, sees the merge), so the merge loses nothing.
    """
    if type(old) is FlowRecord:
        if fits_record(new):
            for name in _RECORD_MERGE:
                value = getattr(new, name)
                if value is not None:
                    setattr(old, name, value)
            return
        old.widen()
    for name in _MERGE_FIELDS:
        value = getattr(new, name)
        if value is not None:
            setattr(old, name, value)


# What an ordinary flow's kernel event carries, once counters and use are dropped: a
# FlowRecord holds only these (13 slots instead of Entry's 39, ~200 B less per flow).
_RECORD_FIELDS = ("orig", "reply", "status", "timeout", "mark", "zone", "id", "tcp_state",
                  "tcp_wscale_orig", "tcp_wscale_reply", "tcp_flags_orig", "tcp_flags_reply",
                  "synproxy")
_RECORD_MERGE = _RECORD_FIELDS[1:]
_RARE = tuple(f for f in Entry.__slots__ if f not in _RECORD_FIELDS)
_record_values = operator.attrgetter(*_RECORD_FIELDS)


def fits_record(e: Entry) -> bool:
    """Does ``e`` carry nothing but what a FlowRecord holds? (every name of ``_RARE``;
    spelt out: attribute loads the interpreter specialises are twice as fast as a getter)"""
    return (e.master is None and e.mark_mask is None and e.secmark is None
            and e.secctx is None and e.use is None and e.orig_packets is None
            and e.orig_bytes is None and e.reply_packets is None and e.reply_bytes is None
            and e.sctp_state is None and e.sctp_vtag_orig is None and e.sctp_vtag_reply is None
            and e.dccp_state is None and e.dccp_role is None and e.dccp_handshake_seq is None
            and e.helper is None and e.nat_src is None and e.nat_dst is None
            and e.seq_adj_orig is None and e.seq_adj_reply is None
            and e.timestamp_start is None and e.timestamp_stop is None and e.labels is None
            and e.labels_mask is None and e.status_mask is None and e.timestamp_event is None)


class FlowRecord:
    """A cached internal flow in compact form: the attributes an ordinary flow has, plus the
    cache times; it reads like an :class:`Entry` (every other attribute is absent, and
    read-only) and is its own ``entry``.

    A change that brings another attribute (helper, labels, SCTP state...) ``widen``s it in
    place into a :class:`WideFlowRecord`, which keeps those in a small dict.
    """

    __slots__ = _RECORD_FIELDS + ("since", "last", "more")

    def __init__(self, values: tuple, now: float) -> None:
        (self.orig, self.reply, self.status, self.timeout, self.mark, self.zone, self.id,
         self.tcp_state, self.tcp_wscale_orig, self.tcp_wscale_reply, self.tcp_flags_orig,
         self.tcp_flags_reply, self.synproxy) = values
        self.since = now
        self.last = now
        self.more: dict | None = None

    @property
    def entry(self) -> FlowRecord:
        """The flow's attributes: the record itself (CacheObject's ``entry`` is an Entry)."""
        return self

    def widen(self) -> None:
        """Make room for every Entry attribute, in place (the same object, another class
        of the same layout)."""
        if type(self) is FlowRecord:
            self.more = {}
            self.__class__ = WideFlowRecord

    def to_entry(self) -> Entry:
        """A new Entry with the record's attributes."""
        e = Entry()
        for name, value in zip(_RECORD_FIELDS, _record_values(self), strict=True):
            setattr(e, name, value)
        if self.more:
            for name, value in self.more.items():
                setattr(e, name, value)
        return e

    @property
    def family(self) -> int | None:
        return self.orig.family if self.orig is not None else None

    @property
    def proto(self) -> int | None:
        return self.orig.proto if self.orig is not None else None

    def key(self) -> tuple:
        """Cache key: the original tuple (as Entry.key)."""
        return self.orig.key() if self.orig is not None else ()

    def as_dict(self) -> dict:
        return self.to_entry().as_dict()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FlowRecord):
            other = other.to_entry()
        return isinstance(other, Entry) and self.to_entry() == other

    __hash__ = None     # type: ignore[assignment]  (mutable, like Entry)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_entry().as_dict()!r})"


class WideFlowRecord(FlowRecord):
    """A FlowRecord that also carries some of the other Entry attributes (in ``more``)."""

    __slots__ = ()


def _in_more(name: str) -> property:
    def get(self: FlowRecord):
        return self.more.get(name)

    def put(self: FlowRecord, value) -> None:
        if value is None:
            self.more.pop(name, None)
        else:
            self.more[name] = value
    return property(get, put)


for _name in _RARE:
    setattr(FlowRecord, _name, None)                # absent on every ordinary record
    setattr(WideFlowRecord, _name, _in_more(_name))
del _name


class CacheObject:
    """One cached flow: the entry, when it entered the cache and when it last changed."""

    __slots__ = ("entry", "since", "last")

    def __init__(self, entry: Entry, now: float) -> None:
        self.entry = entry
        self.since = now
        self.last = now


def _make_record(e: Entry, now: float) -> FlowRecord:
    """The FlowRecord of ``compact(e)`` (same values, same sharing), read straight from
    ``e`` (dropped afterwards) instead of compacting it first: once per new flow."""
    status = e.status
    if status is not None and not 0 <= status <= 256:
        status = _share_int(status)
    timeout = e.timeout
    if timeout is not None and not 0 <= timeout <= 256:
        timeout = _share_int(timeout)
    o = e.orig
    r = e.reply
    if o is not None:
        if o.dst is not None:
            o.dst = _intern(o.dst)
        port = o.dport
        if port is not None and port > 256:
            o.dport = _share_int(port)
        if r is not None:
            if (r.src == o.dst and r.dst == o.src and r.sport == o.dport
                    and r.dport == o.sport and r.proto == o.proto and r.zone == o.zone
                    and o.icmp_type is None and r.icmp_type is None
                    and not (status or 0) & _NAT):
                r = None
            elif r.src is not None:
                r.src = _intern(r.src)
    fo = e.tcp_flags_orig
    fr = e.tcp_flags_reply
    if fo is not None:
        fo = _SHARED.setdefault(fo, fo)
        if fr is not None:
            fr = _SHARED.setdefault(fr, fr)
    sp = e.synproxy
    if sp is not None:
        sp = _SHARED.setdefault(sp, sp)
    return FlowRecord((o, r, status, timeout, e.mark, e.zone, e.id, e.tcp_state,
                       e.tcp_wscale_orig, e.tcp_wscale_reply, fo, fr, sp), now)


class FlowCache:
    """Common part of both caches: a bounded dict with the reference counters."""

    keep_reply = True     # dumps show the reply tuple as cached (InternalCache rebuilds it)

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
    """Mirror of the local kernel table (after the Filter); entries are kept ``compact``.

    Ordinary flows are stored as :class:`FlowRecord` (the decoded Entry is dropped); a flow
    that arrives with other attributes keeps its Entry in a :class:`CacheObject`. Both give
    ``entry``, ``since`` and ``last``, and keep their identity for the flow's life.
    """

    keep_reply = False

    def __init__(self, limit: int = 262144, name: str = "internal") -> None:
        super().__init__(name, limit)

    def _insert(self, key: Tuple, entry: Entry, now: float) -> CacheObject | FlowRecord | None:
        if len(self.objects) >= self.limit:
            self.counters.create_failed += 1
            self.counters.no_space += 1
            return None
        if fits_record(entry):
            obj: CacheObject | FlowRecord = _make_record(entry, now)
        else:
            obj = CacheObject(self._compact(entry), now)
        self.objects[key] = obj
        self.counters.created += 1
        return obj

    def delete(self, entry_or_key) -> CacheObject | FlowRecord | None:
        """Remove the flow; None (and a counted miss) when it was not cached."""
        key = entry_or_key if isinstance(entry_or_key, Tuple) else entry_or_key.orig
        return super().delete(key)
