"""The Python library: conntrack and expectation tables as objects.

    from ctools import Conntrack
    with Conntrack(netns="blue") as ct:
        for entry in ct.dump(mark=0x10):
            print(entry.orig.src, entry.tcp_state)

Every method is one ctnetlink request over a socket owned by the object; results are
typed :class:`~ctools.model.Entry` / :class:`~ctools.model.Expect` objects; kernel
refusals raise :class:`~ctools.netlink.NetlinkError` (an ``OSError`` with ``errno``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

from ctools.model import Entry, Expect, Tuple
from ctools.netlink import codec
from ctools.netlink import constants as C
from ctools.netlink.errors import CodecError, NetlinkError
from ctools.netlink.socket import CtnetlinkSocket

__all__ = ["Conntrack", "Expectations", "Event", "NEW", "UPDATE", "DESTROY",
           "NetlinkError", "CodecError"]

AF_UNSPEC = socket.AF_UNSPEC
AF_INET = int(socket.AF_INET)

# event group bits for events(groups=...)
NEW = C.NF_NETLINK_CONNTRACK_NEW
UPDATE = C.NF_NETLINK_CONNTRACK_UPDATE
DESTROY = C.NF_NETLINK_CONNTRACK_DESTROY

_TABLES = {
    "conntrack": C.CT_GET,
    "dying": C.CT_GET_DYING,
    "unconfirmed": C.CT_GET_UNCONFIRMED,
}


class Event:
    """One ctnetlink event.

    ``type`` is ``'NEW'``, ``'UPDATE'`` or ``'DESTROY'``; ``entry`` the decoded
    :class:`Entry` (or :class:`Expect` for expectation events); ``pid`` the netlink port id of
    the process whose request caused it (0 = the kernel itself); ``family`` the message's
    address family; ``flags`` the raw netlink flags.
    """

    __slots__ = ("type", "entry", "pid", "family", "flags")

    def __init__(self, type: str, entry, pid: int = 0, family: int = AF_UNSPEC,
                 flags: int = 0) -> None:
        self.type = type
        self.entry = entry
        self.pid = pid
        self.family = family
        self.flags = flags

    def __repr__(self) -> str:
        return f"Event({self.type}, {self.entry!r}, pid={self.pid})"


def event_type(msg_type: int, flags: int) -> str:
    """'NEW' / 'UPDATE' / 'DESTROY' of an event message (conntrack or expectation)."""
    msg = msg_type & 0xFF
    if msg == C.IPCTNL_MSG_CT_DELETE:  # EXP_DELETE has the same number
        return "DESTROY"
    return "NEW" if flags & (C.NLM_F_CREATE | C.NLM_F_EXCL) else "UPDATE"


def _tuple_of(obj: Entry | Tuple) -> Tuple:
    if isinstance(obj, Tuple):
        return obj
    if isinstance(obj, Entry) and obj.orig is not None:
        return obj.orig
    if isinstance(obj, Entry) and obj.reply is not None:
        return obj.reply
    raise ValueError("need a Tuple or an Entry with an original or reply tuple")


# ICMP / ICMPv6 request types and the reply type the kernel expects back
_ICMP_REPLY = {1: {8: 0, 13: 14, 15: 16, 17: 18, 0: 8, 14: 13, 16: 15, 18: 17},
               58: {128: 129, 129: 128, 130: 131, 131: 130}}


def inverse(t: Tuple) -> Tuple:
    """The tuple of the other direction: addresses and ports swapped, ICMP echo request
    answered by echo reply (and the like)."""
    icmp_type = t.icmp_type
    if icmp_type is not None and t.proto in _ICMP_REPLY:
        icmp_type = _ICMP_REPLY[t.proto].get(icmp_type, icmp_type)
    return Tuple(t.family, t.dst, t.src, t.proto, t.dport, t.sport,
                 icmp_type, t.icmp_code, t.icmp_id, t.zone)


def with_reply(entry: Entry) -> Entry:
    """The entry itself if it has a reply tuple, else a copy with the inverse of orig."""
    if entry.reply is not None or entry.orig is None:
        return entry
    copy = Entry(**{n: getattr(entry, n) for n in Entry.__slots__})
    copy.reply = inverse(entry.orig)
    return copy


def _lookup_attrs(obj: Entry | Tuple) -> tuple[int, bytes]:
    """(family, attrs) naming one entry: its tuple, zone and (for entries) id."""
    if isinstance(obj, Entry) and obj.orig is None and obj.reply is not None:
        t = obj.reply
        parts = [codec.encode_tuple(t, C.CTA_TUPLE_REPLY)]
    else:
        t = _tuple_of(obj)
        parts = [codec.encode_tuple(t, C.CTA_TUPLE_ORIG)]
    if isinstance(obj, Entry):
        if obj.zone is not None:
            parts.append(codec.nla_be16(C.CTA_ZONE, obj.zone))
        if obj.id is not None:
            parts.append(codec.nla_be32(C.CTA_ID, obj.id))
    return codec.tuple_family(t), b"".join(parts)


def _canonical(t: Tuple) -> Tuple:
    """A template with its addresses in inet_ntop form (as decoded entries have them)."""
    family = codec.tuple_family(t)
    c = Tuple(**{n: getattr(t, n) for n in Tuple.__slots__})
    for name in ("src", "dst"):
        addr = getattr(c, name)
        if addr is not None:
            try:
                setattr(c, name, socket.inet_ntop(family, socket.inet_pton(family, addr)))
            except OSError:
                raise ValueError(f"bad address {addr!r} in the tuple template") from None
    return c


def _matches(t: Tuple | None, template: Tuple) -> bool:
    if t is None:
        return False
    return all(getattr(template, n) is None or getattr(template, n) == getattr(t, n)
               for n in ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code",
                         "icmp_id", "zone"))


def tuple_filter_flags(t: Tuple) -> int:
    """CTA_FILTER flags naming the fields set in a template tuple."""
    v6 = codec.tuple_family(t) == socket.AF_INET6
    flags = 0
    for value, flag in (
            (t.src, C.CTA_FILTER_FLAG_IP_SRC), (t.dst, C.CTA_FILTER_FLAG_IP_DST),
            (t.proto, C.CTA_FILTER_FLAG_PROTO_NUM),
            (t.sport, C.CTA_FILTER_FLAG_PROTO_SRC_PORT),
            (t.dport, C.CTA_FILTER_FLAG_PROTO_DST_PORT),
            (t.zone, C.CTA_FILTER_FLAG_TUPLE_ZONE),
            (t.icmp_type, C.CTA_FILTER_FLAG_ICMPV6_TYPE if v6 else C.CTA_FILTER_FLAG_ICMP_TYPE),
            (t.icmp_code, C.CTA_FILTER_FLAG_ICMPV6_CODE if v6 else C.CTA_FILTER_FLAG_ICMP_CODE),
            (t.icmp_id, C.CTA_FILTER_FLAG_ICMPV6_ID if v6 else C.CTA_FILTER_FLAG_ICMP_ID)):
        if value is not None:
            flags |= flag
    return flags


class Conntrack:
    """The conntrack table of one network namespace (``netns``: name, path, fd or None)."""

    def __init__(self, netns: str | int | None = None, rcvbuf: int | None = None) -> None:
        self.netns = netns
        self.sock = CtnetlinkSocket(rcvbuf=rcvbuf, netns=netns)

    def close(self) -> None:
        """Close the request socket."""
        self.sock.close()

    def __enter__(self) -> Conntrack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def dump_raw(self, family: int = AF_UNSPEC, *, table: str = "conntrack",
                 zero: bool = False, mark: int | None = None, mark_mask: int | None = None,
                 status: int | None = None, status_mask: int | None = None,
                 zone: int | None = None, orig: Tuple | None = None,
                 reply: Tuple | None = None) -> Iterator[memoryview]:
        """Like :meth:`dump` but yields undecoded payloads (for fast formatters)."""
        if table not in _TABLES:
            raise ValueError(f"unknown table {table!r} (conntrack, dying, unconfirmed)")
        msg_type = _TABLES[table]
        if zero:
            if table != "conntrack":
                raise ValueError("zero=True only applies to the conntrack table")
            msg_type = C.CT_GET_CTRZERO
        attrs = []
        if mark is not None:
            attrs.append(codec.nla_be32(C.CTA_MARK, mark))
            attrs.append(codec.nla_be32(C.CTA_MARK_MASK, (
                0xFFFFFFFF if mark_mask is None else mark_mask)))
        if status is not None:
            attrs.append(codec.nla_be32(C.CTA_STATUS, status))
            attrs.append(codec.nla_be32(C.CTA_STATUS_MASK, (
                status if status_mask is None else status_mask)))
        if zone is not None:
            attrs.append(codec.nla_be16(C.CTA_ZONE, zone))
        if orig is not None or reply is not None:
            if table != "conntrack":
                raise ValueError("tuple filters only apply to the conntrack table")
            flags = []
            for ty, t in ((C.CTA_TUPLE_ORIG, orig), (C.CTA_TUPLE_REPLY, reply)):
                f = tuple_filter_flags(t) if t is not None else 0
                if t is not None and codec.tuple_family(t) == socket.AF_INET6:
                    # kernel 6.18 inverts IPv6 address matches: dump() compares them here
                    f &= ~(C.CTA_FILTER_FLAG_IP_SRC | C.CTA_FILTER_FLAG_IP_DST)
                flags.append(f)
                if t is not None:
                    attrs.append(codec.encode_tuple(t, ty))
                    family = family or codec.tuple_family(t)
            attrs.append(codec.encode_filter(*flags))
        return self.sock.dump(msg_type, family, b"".join(attrs))

    def dump(self, family: int = AF_UNSPEC, *, table: str = "conntrack", zero: bool = False,
             mark: int | None = None, mark_mask: int | None = None,
             status: int | None = None, status_mask: int | None = None,
             zone: int | None = None, orig: Tuple | None = None, reply: Tuple | None = None,
             filter: Callable[[Entry], bool] | None = None) -> Iterator[Entry]:
        """Yield the entries of a table (``conntrack``, ``dying`` or ``unconfirmed``).

        ``family``, ``mark``/``mark_mask`` (kernel keeps ``mark & mask == value``),
        ``status``/``status_mask``, ``zone`` and the tuple templates ``orig``/``reply``
        (CTA_FILTER: every field set in the template must be equal; the family defaults to
        the template's) are filtered by the kernel; ``filter`` is a predicate applied
        here.  ``zero=True`` reads and resets the counters atomically.
        """
        decode = codec.decode_entry
        templates = [(side, _canonical(t)) for side, t in (("orig", orig), ("reply", reply))
                     if t is not None]
        for payload in self.dump_raw(family, table=table, zero=zero, mark=mark,
                                     mark_mask=mark_mask, status=status,
                                     status_mask=status_mask, zone=zone, orig=orig,
                                     reply=reply):
            entry = decode(payload)
            if zone is not None and (entry.zone or 0) != zone:
                continue  # kernels without the zone dump filter
            if templates and not all(_matches(getattr(entry, side), t) for side, t in templates):
                continue  # what the kernel could not (or would not correctly) filter
            if filter is None or filter(entry):
                yield entry

    def get(self, entry_or_tuple: Entry | Tuple) -> Entry:
        """Look one entry up by its original (or reply) tuple; ENOENT if absent."""
        family, attrs = _lookup_attrs(entry_or_tuple)
        replies = self.sock.request(C.CT_GET, 0, family, attrs)
        if not replies:
            raise NetlinkError(2, "no reply to the lookup")
        return codec.decode_entry(replies[0])

    def count(self) -> int:
        """Number of entries in the table (CT_GET_STATS)."""
        replies = self.sock.request(C.CT_GET_STATS, 0, AF_UNSPEC)
        if not replies:
            raise NetlinkError(5, "no statistics in the reply")
        return codec.decode_stats(replies[0], "global").get("entries", 0)

    def global_stats(self) -> dict[str, int]:
        """``{'entries': n, 'max_entries': m}`` (max_entries only on newer kernels)."""
        replies = self.sock.request(C.CT_GET_STATS, 0, AF_UNSPEC)
        return codec.decode_stats(replies[0], "global") if replies else {}

    def stats(self) -> list[dict[str, int]]:
        """Per-CPU statistics: one dict per CPU, with its number under ``'cpu'``."""
        return [codec.decode_stats(p, "cpu") for p in self.sock.dump(C.CT_GET_STATS_CPU)]

    # -- writing -------------------------------------------------------------------------------
    def create(self, entry: Entry, *, exclusive: bool = True) -> None:
        """Create an entry (EEXIST if it exists and ``exclusive``; else it is updated).

        The kernel needs both tuples: a missing reply tuple is taken as the inverse of the
        original one.
        """
        flags = C.NLM_F_CREATE | (C.NLM_F_EXCL if exclusive else 0)
        entry = with_reply(entry)
        self.sock.request(C.CT_NEW, flags, codec.tuple_family(_tuple_of(entry)),
                          codec.encode_entry(entry))

    def update(self, entry: Entry) -> None:
        """Change an existing entry's mutable attributes (ENOENT if absent)."""
        self.sock.request(C.CT_NEW, 0, codec.tuple_family(_tuple_of(entry)),
                          codec.encode_entry(entry, for_update=True))

    def delete(self, entry_or_tuple: Entry | Tuple) -> None:
        """Delete one entry (by tuple, zone and, for an Entry, its id when known)."""
        family, attrs = _lookup_attrs(entry_or_tuple)
        self.sock.request(C.CT_DELETE, 0, family, attrs)

    def flush(self, family: int = AF_UNSPEC) -> None:
        """Empty the table (the kernel flushes every family whatever ``family`` says)."""
        self.sock.request(C.CT_DELETE, 0, family)

    def create_many(self, entries, *, exclusive: bool = True) -> list[int]:
        """Create many entries with batched requests; one errno per entry (0 = created)."""
        flags = C.NLM_F_CREATE | (C.NLM_F_EXCL if exclusive else 0)
        return self.sock.batch(
            (C.CT_NEW, flags, codec.tuple_family(_tuple_of(e)), codec.encode_entry(with_reply(e)))
            for e in entries)

    def update_many(self, entries) -> list[int]:
        """Batched updates; one errno per entry (0 = updated)."""
        return self.sock.batch(
            (C.CT_NEW, 0, codec.tuple_family(_tuple_of(e)),
             codec.encode_entry(e, for_update=True)) for e in entries)

    def delete_many(self, entries_or_tuples) -> list[int]:
        """Batched deletes (e.g. every stale entry of a dump); one errno each (0 = gone)."""
        return self.sock.batch((C.CT_DELETE, 0, *_lookup_attrs(x)) for x in entries_or_tuples)

    # -- events --------------------------------------------------------------------------------
    def events(self, groups: int = NEW | UPDATE | DESTROY, *, rcvbuf: int | None = None,
               family: int = AF_UNSPEC) -> Iterator[Event]:
        """Yield conntrack events until the iterator is closed.

        The subscription (its own socket, joined to ``groups``: NEW | UPDATE | DESTROY bits)
        is made by this call, so no event after it is missed even before the first
        ``next()``.  On a receive buffer overrun the iterator raises
        :class:`NetlinkError` (errno ENOBUFS): events were lost; call ``events()`` again.
        """
        sock = CtnetlinkSocket(groups & C.CT_EVENT_GROUPS, rcvbuf=rcvbuf, netns=self.netns)
        return _event_stream(sock, codec.decode_entry, family)


def _event_stream(sock: CtnetlinkSocket, decode, family: int) -> Iterator[Event]:
    with sock:
        for ty, flags, pid, payload in sock.recv_events():
            if family and payload[0] != family:
                continue
            yield Event(event_type(ty, flags), decode(payload), pid, payload[0], flags)


class Expectations:
    """The expectation table of one network namespace.

    (The model class of one expectation is :class:`ctools.model.Expect`, also exported as
    ``ctools.Expect``.)
    """

    def __init__(self, netns: str | int | None = None, rcvbuf: int | None = None) -> None:
        self.netns = netns
        self.sock = CtnetlinkSocket(rcvbuf=rcvbuf, netns=netns)

    def close(self) -> None:
        """Close the request socket."""
        self.sock.close()

    def __enter__(self) -> Expectations:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dump(self, family: int = AF_INET,
             filter: Callable[[Expect], bool] | None = None) -> Iterator[Expect]:
        """Yield the expectations of ``family`` (IPv4 by default, as the C tool does)."""
        for payload in self.sock.dump(C.EXP_GET, family):
            exp = codec.decode_expect(payload)
            if filter is None or filter(exp):
                yield exp

    def count(self, family: int = AF_INET) -> int:
        """Number of expectations of ``family`` (counted from a dump)."""
        return sum(1 for _ in self.sock.dump(C.EXP_GET, family))

    def get(self, tuple_or_exp: Tuple | Expect) -> Expect:
        """Look an expectation up by its expected tuple."""
        family, attrs = self._lookup(tuple_or_exp)
        replies = self.sock.request(C.EXP_GET, 0, family, attrs)
        if not replies:
            raise NetlinkError(2, "no reply to the lookup")
        return codec.decode_expect(replies[0])

    def create(self, exp: Expect) -> None:
        """Create an expectation (its master entry must exist and have a helper)."""
        family = codec.tuple_family(exp.tuple or exp.master or Tuple())
        self.sock.request(C.EXP_NEW, C.NLM_F_CREATE | C.NLM_F_EXCL, family,
                          codec.encode_expect(exp))

    def delete(self, tuple_or_exp: Tuple | Expect) -> None:
        """Delete the expectation with this expected tuple."""
        family, attrs = self._lookup(tuple_or_exp)
        self.sock.request(C.EXP_DELETE, 0, family, attrs)

    def flush(self, family: int = AF_INET) -> None:
        """Remove every expectation."""
        self.sock.request(C.EXP_DELETE, 0, family)

    def stats(self) -> list[dict[str, int]]:
        """Per-CPU expectation statistics."""
        return [codec.decode_stats(p, "expect")
                for p in self.sock.dump(C.EXP_GET_STATS_CPU)]

    def events(self, *, rcvbuf: int | None = None) -> Iterator[Event]:
        """Yield expectation events (NEW/UPDATE/DESTROY); see :meth:`Conntrack.events`."""
        sock = CtnetlinkSocket(C.EXP_EVENT_GROUPS, rcvbuf=rcvbuf, netns=self.netns)
        return _event_stream(sock, codec.decode_expect, AF_UNSPEC)

    @staticmethod
    def _lookup(obj: Tuple | Expect) -> tuple[int, bytes]:
        t = obj.tuple if isinstance(obj, Expect) else obj
        if t is None:
            raise ValueError("need an expected tuple")
        parts = [codec.encode_tuple(t, C.CTA_EXPECT_TUPLE)]
        if isinstance(obj, Expect) and obj.zone is not None:
            parts.append(codec.nla_be16(C.CTA_EXPECT_ZONE, obj.zone))
        return codec.tuple_family(t), b"".join(parts)
