"""Plain data classes shared by every layer: conntrack entries, tuples, expectations.

No I/O here. Every attribute the kernel may or may not send defaults to ``None`` ("absent"),
because the output formats print a field only when the kernel carried it.
Addresses are text (``socket.inet_ntop`` form); numbers are host ints.
"""

from __future__ import annotations

import socket

AF_INET = socket.AF_INET  # 2
AF_INET6 = socket.AF_INET6  # 10

# L4 protocol numbers with special handling
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136

# Conntrack status bits (kernel IPS_*)
IPS_EXPECTED = 1 << 0
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3
IPS_SRC_NAT = 1 << 4
IPS_DST_NAT = 1 << 5
IPS_SEQ_ADJUST = 1 << 6
IPS_SRC_NAT_DONE = 1 << 7
IPS_DST_NAT_DONE = 1 << 8
IPS_DYING = 1 << 9
IPS_FIXED_TIMEOUT = 1 << 10
IPS_TEMPLATE = 1 << 11
IPS_UNTRACKED = 1 << 12
IPS_HELPER = 1 << 13
IPS_OFFLOAD = 1 << 14
IPS_HW_OFFLOAD = 1 << 15

TCP_STATES = (
    "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
    "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
)
TCP_STATE = {name: i for i, name in enumerate(TCP_STATES)}
TCP_ESTABLISHED = 3

# Expectation flags
EXP_F_PERMANENT = 1
EXP_F_INACTIVE = 2
EXP_F_USERSPACE = 4


class Tuple:
    """One direction of a flow: addresses, L4 protocol and its identifiers.

    ``sport``/``dport`` hold ports for tcp/udp/udplite/sctp/dccp and the keys for GRE.
    """

    __slots__ = ("family", "src", "dst", "proto", "sport", "dport",
                 "icmp_type", "icmp_code", "icmp_id", "zone")

    def __init__(self, family: int | None = None, src: str | None = None,
                 dst: str | None = None, proto: int | None = None,
                 sport: int | None = None, dport: int | None = None,
                 icmp_type: int | None = None, icmp_code: int | None = None,
                 icmp_id: int | None = None, zone: int | None = None) -> None:
        self.family = family
        self.src = src
        self.dst = dst
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.icmp_id = icmp_id
        self.zone = zone

    def key(self) -> tuple:
        """Hashable identity of the tuple (used by caches)."""
        return (self.family, self.src, self.dst, self.proto, self.sport, self.dport,
                self.icmp_type, self.icmp_code, self.icmp_id, self.zone)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tuple) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__
                           if getattr(self, n) is not None)
        return f"Tuple({fields})"


class NatRange:
    """A NAT binding as sent to the kernel on create (CTA_NAT_SRC/DST)."""

    __slots__ = ("min_ip", "max_ip", "min_port", "max_port")

    def __init__(self, min_ip: str | None = None, max_ip: str | None = None,
                 min_port: int | None = None, max_port: int | None = None) -> None:
        self.min_ip = min_ip
        self.max_ip = max_ip
        self.min_port = min_port
        self.max_port = max_port

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NatRange) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return (f"NatRange({self.min_ip!r}, {self.max_ip!r}, "
                f"{self.min_port!r}, {self.max_port!r})")


_ENTRY_FIELDS = (
    "orig", "reply", "master",
    "status", "timeout", "mark", "mark_mask", "secmark", "secctx",
    "zone", "use", "id",
    "orig_packets", "orig_bytes", "reply_packets", "reply_bytes",
    "tcp_state", "tcp_wscale_orig", "tcp_wscale_reply",
    "tcp_flags_orig", "tcp_flags_reply",      # (flags, mask) pairs
    "sctp_state", "sctp_vtag_orig", "sctp_vtag_reply",
    "dccp_state", "dccp_role", "dccp_handshake_seq",
    "helper", "nat_src", "nat_dst",
    "seq_adj_orig", "seq_adj_reply",           # (correction_pos, offset_before, offset_after)
    "timestamp_start", "timestamp_stop",       # ns since the epoch
    "labels", "labels_mask",                   # int bitmaps (bit n = label n)
    "synproxy",                                # (isn, its, tsoff)
    "status_mask",
    "timestamp_event",                         # ns, CTA_TIMESTAMP_EVENT (newer kernels)
)


class Entry:
    """A conntrack entry as ctnetlink describes it. Absent attributes are ``None``."""

    __slots__ = _ENTRY_FIELDS

    def __init__(self, orig: Tuple | None = None, reply: Tuple | None = None, **kw) -> None:
        self.orig = orig
        self.reply = reply
        self.master = None
        self.status = None
        self.timeout = None
        self.mark = None
        self.mark_mask = None
        self.secmark = None
        self.secctx = None
        self.zone = None
        self.use = None
        self.id = None
        self.orig_packets = None
        self.orig_bytes = None
        self.reply_packets = None
        self.reply_bytes = None
        self.tcp_state = None
        self.tcp_wscale_orig = None
        self.tcp_wscale_reply = None
        self.tcp_flags_orig = None
        self.tcp_flags_reply = None
        self.sctp_state = None
        self.sctp_vtag_orig = None
        self.sctp_vtag_reply = None
        self.dccp_state = None
        self.dccp_role = None
        self.dccp_handshake_seq = None
        self.helper = None
        self.nat_src = None
        self.nat_dst = None
        self.seq_adj_orig = None
        self.seq_adj_reply = None
        self.timestamp_start = None
        self.timestamp_stop = None
        self.labels = None
        self.labels_mask = None
        self.synproxy = None
        self.status_mask = None
        self.timestamp_event = None
        for name, value in kw.items():
            setattr(self, name, value)

    @property
    def family(self) -> int | None:
        return self.orig.family if self.orig is not None else None

    @property
    def proto(self) -> int | None:
        return self.orig.proto if self.orig is not None else None

    def key(self) -> tuple:
        """Cache key: the original tuple (as conntrackd's caches use it)."""
        return self.orig.key() if self.orig is not None else ()

    def as_dict(self) -> dict:
        """Present attributes only; tuples as nested dicts."""
        out = {}
        for name in _ENTRY_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Tuple):
                value = {n: getattr(value, n) for n in Tuple.__slots__
                         if getattr(value, n) is not None}
            elif isinstance(value, NatRange):
                value = {n: getattr(value, n) for n in NatRange.__slots__
                         if getattr(value, n) is not None}
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and all(
            getattr(self, n) == getattr(other, n) for n in _ENTRY_FIELDS)

    def __repr__(self) -> str:
        return f"Entry({self.as_dict()!r})"


_EXPECT_FIELDS = (
    "master", "tuple", "mask", "timeout", "id", "helper", "zone",
    "flags", "klass", "nat_dir", "nat_tuple", "fn",
)


class Expect:
    """A conntrack expectation. ``klass`` is CTA_EXPECT_CLASS; ``nat_tuple`` with ``nat_dir``
    is CTA_EXPECT_NAT."""

    __slots__ = _EXPECT_FIELDS

    def __init__(self, **kw) -> None:
        for name in _EXPECT_FIELDS:
            setattr(self, name, None)
        for name, value in kw.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expect) and all(
            getattr(self, n) == getattr(other, n) for n in _EXPECT_FIELDS)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in _EXPECT_FIELDS
                           if getattr(self, n) is not None)
        return f"Expect({fields})"
