"""The conntrackd sync wire format, declared once as data (spec sync-protocol.md §1-§2).

Layout tables (:data:`CT_ATTRS`, :data:`EXP_ATTRS`) give every TLV its id, name, width and
codec; the encoder, the decoder, the fuzzers and the lab traffic generators all read them.

* Common header ``'>BBHI'`` (vt, flags, len, seq); extended control header adds ``'>II'``
  (from, to). Byte 0 is ``0x10 | type``.
* TLV: ``'>HH'`` (nta_len, nta_attr) + payload + zero pad to 4; nta_len excludes the pad.
* Everything is big-endian except ICMP_ID, SPAT_PORT and DPAT_PORT, which the C sender writes
  in its host order — little-endian on every platform conntrackd runs on (§2.4).

Decoding never raises anything but :class:`ProtocolError`, whose ``counter`` names the C
statistics counter the rejection belongs to.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

from ctools._speedups import load_ctfast
from ctools.model import (
    AF_INET,
    AF_INET6,
    IPPROTO_DCCP,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPS_DST_NAT_DONE,
    IPS_SRC_NAT_DONE,
    Entry,
    Expect,
    NatRange,
    Tuple,
)

VERSION = 1

# Message types (low nibble of byte 0)
CT_NEW, CT_UPD, CT_DEL, EXP_NEW, EXP_UPD, EXP_DEL = range(6)
CTL = 10
TYPE_NAMES = {CT_NEW: "CT_NEW", CT_UPD: "CT_UPD", CT_DEL: "CT_DEL", EXP_NEW: "EXP_NEW",
              EXP_UPD: "EXP_UPD", EXP_DEL: "EXP_DEL", CTL: "CTL"}
KIND_TYPE_CT = {"new": CT_NEW, "upd": CT_UPD, "del": CT_DEL}
KIND_TYPE_EXP = {"new": EXP_NEW, "upd": EXP_UPD, "del": EXP_DEL}
TYPE_KIND = {CT_NEW: "new", CT_UPD: "upd", CT_DEL: "del",
             EXP_NEW: "new", EXP_UPD: "upd", EXP_DEL: "del"}

# Flags (byte 1)
F_RESYNC = 0x02
F_NACK = 0x04
F_ACK = 0x08
F_ALIVE = 0x10
F_HELLO = 0x20
F_HELLO_BACK = 0x40
F_HELLO_BITS = F_HELLO | F_HELLO_BACK
F_EXTENDED = F_RESYNC | F_NACK | F_ACK

HDR = struct.Struct(">BBHI")
HDR_LEN = HDR.size                       # 8
CTL_EXT = struct.Struct(">BBHIII")
CTL_EXT_LEN = CTL_EXT.size               # 16
TLV = struct.Struct(">HH")
_FROM_TO = struct.Struct(">II")
MAX_MESSAGE = 4096                       # the C sender's static build buffer

# C receive counters a rejection belongs to (see SyncStats)
TRUNCATED, BAD_SIZE, BAD_VERSION, BAD_HEADER, BAD_PAYLOAD, BAD_TYPE = (
    "truncated", "bad_size", "bad_version", "bad_header", "bad_payload", "bad_type")


class ProtocolError(Exception):
    """A malformed message. ``counter`` is the C statistics counter it belongs to."""

    def __init__(self, counter: str, detail: str = "") -> None:
        super().__init__(f"{counter}: {detail}" if detail else counter)
        self.counter = counter
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Attribute tables
# --------------------------------------------------------------------------------------------

class AttrSpec:
    """One TLV: id, name, codec and width. ``size`` is the fixed payload width (nta_len must be
    ``size + 4``) or None for variable-size attributes bounded by ``max_len`` (nta_len)."""

    __slots__ = ("id", "name", "codec", "size", "max_len", "unpack")

    def __init__(self, id: int, name: str, codec: str, size: int | None,
                 max_len: int | None = None) -> None:
        self.id = id
        self.name = name
        self.codec = codec
        self.size = size
        self.max_len = max_len
        self.unpack = None      # raw payload -> value, bound below from the codec name

    def __repr__(self) -> str:
        return f"AttrSpec({self.id}, {self.name!r})"


def _specs(rows: list[tuple]) -> tuple[AttrSpec, ...]:
    out = tuple(AttrSpec(*row) for row in rows)
    assert [a.id for a in out] == list(range(len(out)))
    return out


# codecs: addr4x2, addr6x2, addr4, addr6, u8, be16, le16, be32, port2 (two BE16),
# be32x6, be32x3, cstr, labels
CT_ATTRS = _specs([
    (0, "IPV4", "addr4x2", 8),
    (1, "IPV6", "addr6x2", 32),
    (2, "L4PROTO", "u8", 1),
    (3, "PORT", "port2", 4),
    (4, "TCP_STATE", "u8", 1),
    (5, "STATUS", "be32", 4),
    (6, "TIMEOUT", "be32", 4),
    (7, "MARK", "be32", 4),
    (8, "MASTER_IPV4", "addr4x2", 8),
    (9, "MASTER_IPV6", "addr6x2", 32),
    (10, "MASTER_L4PROTO", "u8", 1),
    (11, "MASTER_PORT", "port2", 4),
    (12, "SNAT_IPV4", "addr4", 4),
    (13, "DNAT_IPV4", "addr4", 4),
    (14, "SPAT_PORT", "le16", 2),
    (15, "DPAT_PORT", "le16", 2),
    (16, "NAT_SEQ_ADJ", "be32x6", 24),
    (17, "SCTP_STATE", "u8", 1),
    (18, "SCTP_VTAG_ORIG", "be32", 4),
    (19, "SCTP_VTAG_REPL", "be32", 4),
    (20, "DCCP_STATE", "u8", 1),
    (21, "DCCP_ROLE", "u8", 1),
    (22, "ICMP_TYPE", "u8", 1),
    (23, "ICMP_CODE", "u8", 1),
    (24, "ICMP_ID", "le16", 2),
    (25, "TCP_WSCALE_ORIG", "u8", 1),
    (26, "TCP_WSCALE_REPL", "u8", 1),
    (27, "HELPER_NAME", "cstr", None, 16),
    (28, "LABELS", "labels", None, 1028),
    (29, "SNAT_IPV6", "addr6", 16),
    (30, "DNAT_IPV6", "addr6", 16),
    (31, "SYNPROXY", "be32x3", 12),
    (32, "ZONE", "be16", 2),
])
EXP_ATTRS = _specs([
    (0, "EXP_MASTER_IPV4", "addr4x2", 8),
    (1, "EXP_MASTER_IPV6", "addr6x2", 32),
    (2, "EXP_MASTER_L4PROTO", "u8", 1),
    (3, "EXP_MASTER_PORT", "port2", 4),
    (4, "EXP_EXPECT_IPV4", "addr4x2", 8),
    (5, "EXP_EXPECT_IPV6", "addr6x2", 32),
    (6, "EXP_EXPECT_L4PROTO", "u8", 1),
    (7, "EXP_EXPECT_PORT", "port2", 4),
    (8, "EXP_MASK_IPV4", "addr4x2", 8),
    (9, "EXP_MASK_IPV6", "addr6x2", 32),
    (10, "EXP_MASK_L4PROTO", "u8", 1),
    (11, "EXP_MASK_PORT", "port2", 4),
    (12, "EXP_TIMEOUT", "be32", 4),
    (13, "EXP_FLAGS", "be32", 4),
    (14, "EXP_CLASS", "be32", 4),
    (15, "EXP_NAT_IPV4", "addr4x2", 8),
    (16, "EXP_NAT_PORT", "port2", 4),
    (17, "EXP_NAT_L4PROTO", "u8", 1),
    (18, "EXP_NAT_DIR", "be32", 4),
    (19, "EXP_HELPER_NAME", "cstr", None, 16),
    (20, "EXP_FN", "cstr", None, 32),
])
CT = {a.name: a.id for a in CT_ATTRS}
EXP = {a.name: a.id for a in EXP_ATTRS}

# The first release that knows an attribute (§2.8): senders talking to older peers omit it.
CT_ATTR_SINCE = {28: (1, 4, 2), 29: (1, 4, 4), 30: (1, 4, 4), 31: (1, 4, 5), 32: (1, 4, 7)}

_BE16 = struct.Struct(">H")
_LE16 = struct.Struct("<H")
_BE32 = struct.Struct(">I")
_PORT2 = struct.Struct(">HH")
_BE32X3 = struct.Struct(">III")
_BE32X6 = struct.Struct(">IIIIII")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")

_ntop = socket.inet_ntop
_pton = socket.inet_pton


def _labels(p: bytes) -> int:
    value = 0
    for i in range(len(p) // 4):
        value |= _BE32.unpack_from(p, 4 * i)[0] << (32 * i)
    return value


def _cstr(p: bytes) -> str:
    # A name that fills its attribute without a NUL is cut to what a valid attribute can
    # hold (the C receiver would read past the attribute; deliberate difference).
    return p.split(b"\0", 1)[0][:len(p) - 1 if b"\0" not in p else None].decode("latin-1")


_UNPACKERS = {
    "u8": lambda p: p[0],
    "be32": lambda p: _BE32.unpack(p)[0],
    "port2": _PORT2.unpack,
    "addr4x2": lambda p: (_ntop(AF_INET, p[:4]), _ntop(AF_INET, p[4:])),
    "addr6x2": lambda p: (_ntop(AF_INET6, p[:16]), _ntop(AF_INET6, p[16:])),
    "addr4": lambda p: _ntop(AF_INET, p),
    "addr6": lambda p: _ntop(AF_INET6, p),
    "le16": lambda p: _LE16.unpack(p)[0],
    "be16": lambda p: _BE16.unpack(p)[0],
    "be32x6": _BE32X6.unpack,
    "be32x3": _BE32X3.unpack,
    "cstr": _cstr,
    "labels": _labels,
}
for _spec in CT_ATTRS + EXP_ATTRS:
    _spec.unpack = _UNPACKERS[_spec.codec]


_TLV_FROM = TLV.unpack_from
_PORT2_FROM = _PORT2.unpack_from
_BE32_FROM = _BE32.unpack_from
_CT_COUNT = len(CT_ATTRS)
_CT_NTA_LEN = tuple(a.size + 4 if a.size is not None else 0 for a in CT_ATTRS)
_CT_MAX_LEN = tuple(a.max_len or 0 for a in CT_ATTRS)


def _unpack(codec: str, p: bytes):
    """Value of a raw attribute payload for codec ``codec``."""
    return _UNPACKERS[codec](p)


def iter_attrs(payload: bytes, table: tuple[AttrSpec, ...]) -> Iterator[tuple[AttrSpec, bytes]]:
    """Walk a message payload (after the 8-byte header) as the C receiver does (§2.7).

    Yields (spec, raw payload bytes); raises ProtocolError(BAD_PAYLOAD) for the whole message
    on any violation. LABELS with an empty or non-multiple-of-4 payload are skipped silently.
    """
    remaining = len(payload)
    off = 0
    limit = len(table)
    while remaining > 4:
        nta_len, nta_attr = TLV.unpack_from(payload, off)
        if nta_len > remaining or nta_len < 4:
            raise ProtocolError(BAD_PAYLOAD, f"attribute length {nta_len} at {off}")
        if nta_attr >= limit:
            raise ProtocolError(BAD_PAYLOAD, f"unknown attribute id {nta_attr}")
        spec = table[nta_attr]
        if spec.size is not None:
            if nta_len != spec.size + 4:
                raise ProtocolError(BAD_PAYLOAD, f"{spec.name} length {nta_len}")
        elif nta_len > spec.max_len:
            raise ProtocolError(BAD_PAYLOAD, f"{spec.name} length {nta_len}")
        raw = payload[off + 4:off + nta_len]
        if not (spec.codec == "labels" and (not raw or len(raw) % 4)):
            yield spec, raw
        step = (nta_len + 3) & ~3
        off += step
        remaining -= step


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------

class Header:
    """A decoded message header. ``frm``/``to`` are set only for extended control messages."""

    __slots__ = ("version", "type", "flags", "length", "seq", "frm", "to")

    def __init__(self, version: int, type: int, flags: int, length: int, seq: int,
                 frm: int | None = None, to: int | None = None) -> None:
        self.version = version
        self.type = type
        self.flags = flags
        self.length = length
        self.seq = seq
        self.frm = frm
        self.to = to

    @property
    def is_data(self) -> bool:
        return self.type <= EXP_DEL and not (self.flags & ~F_HELLO_BITS)

    def __repr__(self) -> str:
        extra = f" [{self.frm},{self.to}]" if self.frm is not None else ""
        return (f"<{TYPE_NAMES.get(self.type, self.type)} v{self.version} "
                f"flags={self.flags:#04x} len={self.length} seq={self.seq}{extra}>")


def is_extended(vt: int, flags: int) -> bool:
    """Control message with ACK/NACK/RESYNC: carries from/to (16-byte header)."""
    return (vt & 0x0F) == CTL and bool(flags & F_EXTENDED)


def split_messages(buf: bytes, stream: bool = False) -> Iterator[tuple[Header, int] | ProtocolError | int]:
    """Walk a datagram (or a stream read) per the receiver algorithm of §1.8.

    Yields ``(header, offset)`` for each message that passed the framing checks (version
    included: a wrong version yields ``ProtocolError(BAD_VERSION)`` and the walk continues);
    yields a ``ProtocolError`` and stops on a framing error; with ``stream=True`` an incomplete
    tail yields its offset (an ``int``: keep ``buf[offset:]`` for the next read) and stops.
    """
    total = len(buf)
    off = 0
    hdr_from = HDR.unpack_from
    while off < total:
        rem = total - off
        if rem < HDR_LEN:
            yield off if stream else ProtocolError(TRUNCATED, f"{rem} bytes left")
            return
        vt, flags, length, seq = hdr_from(buf, off)
        if length == 0:
            yield ProtocolError(BAD_SIZE, "len 0")
            return
        if length > rem:
            yield off if stream else ProtocolError(BAD_SIZE, f"len {length} > {rem}")
            return
        frm = to = None
        if flags & F_EXTENDED and (vt & 0x0F) == CTL:      # is_extended(), inlined
            if rem < CTL_EXT_LEN:
                yield off if stream else ProtocolError(TRUNCATED, "control needs 16 bytes")
                return
            if length < CTL_EXT_LEN:
                yield ProtocolError(BAD_SIZE, f"control len {length}")
                return
            frm, to = _FROM_TO.unpack_from(buf, off + 8)
        elif length < HDR_LEN:
            yield ProtocolError(BAD_SIZE, f"len {length}")
            return
        version = vt >> 4
        if version != VERSION:
            yield ProtocolError(BAD_VERSION, f"version {version}")
        else:
            yield Header(version, vt & 0x0F, flags, length, seq, frm, to), off
        off += length


def encode_control(flags: int, seq: int, frm: int | None = None, to: int | None = None) -> bytes:
    """A control message: 8 bytes (ALIVE, ...) or 16 with from/to (ACK, NACK, RESYNC)."""
    if flags & F_EXTENDED:
        return CTL_EXT.pack(0x10 | CTL, flags, CTL_EXT_LEN, seq & 0xFFFFFFFF,
                            (frm or 0) & 0xFFFFFFFF, (to or 0) & 0xFFFFFFFF)
    return HDR.pack(0x10 | CTL, flags, HDR_LEN, seq & 0xFFFFFFFF)


# --------------------------------------------------------------------------------------------
# Conntrack messages
# --------------------------------------------------------------------------------------------

class EncodeOptions:
    """Sender choices that change the bytes (§2.2): TCPWindowTracking, CommitTimeout (drops
    TIMEOUT), peer version (drops attributes it does not know), ICMP/NAT port quirk."""

    __slots__ = ("tcp_window_tracking", "commit_timeout", "peer_version")

    def __init__(self, tcp_window_tracking: bool = False, commit_timeout: int | None = None,
                 peer_version: tuple[int, int, int] = (1, 4, 7)) -> None:
        self.tcp_window_tracking = tcp_window_tracking
        self.commit_timeout = commit_timeout
        self.peer_version = peer_version


DEFAULT_OPTIONS = EncodeOptions()
_PORT_PROTOS = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_DCCP))
_ICMP_PROTOS = frozenset((IPPROTO_ICMP, IPPROTO_ICMPV6))


def _tlv(out: list, attr: int, payload: bytes) -> None:
    n = 4 + len(payload)
    out.append(TLV.pack(n, attr))
    out.append(payload)
    out.append(_PAD[n & 3])


_TLV_BE32 = struct.Struct(">HHI")
_TLV_PORT2 = struct.Struct(">HHHH")
_TLV_ADDR4 = TLV.pack(12, 0)
_TLV_ADDR6 = TLV.pack(36, 1)
_TLV_PROTO = TLV.pack(5, 2)
_TLV_TCP_STATE = TLV.pack(5, 4)
_PAD3 = b"\0\0\0"


def _addr(family: int, text: str) -> bytes:
    return _pton(family, text)


def _l4_src_field(t: Tuple) -> int:
    """The raw 16-bit 'source' L4 field the C sender compares (icmp id for ICMP)."""
    if t.proto in _ICMP_PROTOS:
        return t.icmp_id or 0
    return t.sport or 0


def _l4_dst_field(t: Tuple) -> int:
    """The raw 16-bit 'destination' L4 field (type,code for ICMP; host order of the C union)."""
    if t.proto in _ICMP_PROTOS:
        # the C union stores type then code in memory; read as a native (LE) u16
        return ((t.icmp_code or 0) << 8) | (t.icmp_type or 0)
    return t.dport or 0


_c_encode = getattr(load_ctfast(), "encode_sync_ct", None)


def encode_ct_payload(e: Entry, opts: EncodeOptions = DEFAULT_OPTIONS) -> bytes:
    """The TLV payload of a CT_* message for entry ``e``, in the C emission order (§2.2)
    (the C accelerator encodes the ordinary flows: same bytes, see encode_ct_payload_py)."""
    if _c_encode is not None:
        payload = _c_encode(e, opts.tcp_window_tracking, bool(opts.commit_timeout))
        if payload is not None:
            return payload
    return encode_ct_payload_py(e, opts)


def encode_ct_payload_py(e: Entry, opts: EncodeOptions = DEFAULT_OPTIONS) -> bytes:
    """The TLV payload of a CT_* message for entry ``e``, in the C emission order (§2.2)."""
    out: list[bytes] = []
    o = e.orig
    if o is None or o.family not in (AF_INET, AF_INET6):
        raise ValueError("entry without an IPv4/IPv6 original tuple cannot be replicated")
    fam = o.family
    v6 = fam == AF_INET6
    # the common attributes are emitted with one precompiled pack (or a constant TLV head)
    # each, byte for byte what _tlv builds
    out.append(_TLV_ADDR6 if v6 else _TLV_ADDR4)
    out.append(_pton(fam, o.src))
    out.append(_pton(fam, o.dst))
    if e.status is not None:
        out.append(_TLV_BE32.pack(8, 5, e.status & 0xFFFFFFFF))
    proto = o.proto
    if proto is not None:
        out.append(_TLV_PROTO)
        out.append(bytes((proto,)))
        out.append(_PAD3)
    if proto in _PORT_PROTOS:
        if o.sport is not None or o.dport is not None:
            out.append(_TLV_PORT2.pack(8, 3, o.sport or 0, o.dport or 0))
        if proto == IPPROTO_TCP and e.tcp_state is not None:
            out.append(_TLV_TCP_STATE)
            out.append(bytes((e.tcp_state,)))
            out.append(_PAD3)
            if opts.tcp_window_tracking:
                _tlv(out, 25, bytes((e.tcp_wscale_orig or 0,)))
                _tlv(out, 26, bytes((e.tcp_wscale_reply or 0,)))
        elif proto == IPPROTO_SCTP and e.sctp_state is not None:
            _tlv(out, 17, bytes((e.sctp_state,)))
            _tlv(out, 18, _BE32.pack(e.sctp_vtag_orig or 0))
            _tlv(out, 19, _BE32.pack(e.sctp_vtag_reply or 0))
        elif proto == IPPROTO_DCCP and e.dccp_state is not None:
            _tlv(out, 20, bytes((e.dccp_state,)))
            _tlv(out, 21, bytes((e.dccp_role or 0,)))
    elif proto in _ICMP_PROTOS and o.icmp_type is not None:
        _tlv(out, 22, bytes((o.icmp_type,)))
        _tlv(out, 23, bytes((o.icmp_code or 0,)))
        _tlv(out, 24, _LE16.pack(o.icmp_id or 0))
    if e.timeout is not None and not opts.commit_timeout:
        out.append(_TLV_BE32.pack(8, 6, e.timeout & 0xFFFFFFFF))
    if e.mark is not None:
        out.append(_TLV_BE32.pack(8, 7, e.mark & 0xFFFFFFFF))
    m = e.master
    if m is not None and m.family in (AF_INET, AF_INET6) and m.src is not None:
        _tlv(out, 9 if m.family == AF_INET6 else 8, _addr(m.family, m.src) + _addr(m.family, m.dst))
        _tlv(out, 10, bytes((m.proto or 0,)))
        if m.proto in _PORT_PROTOS and (m.sport is not None or m.dport is not None):
            _tlv(out, 11, _PORT2.pack(m.sport or 0, m.dport or 0))
    if not (v6 and opts.peer_version < CT_ATTR_SINCE[29]):   # no IPv6 NAT before 1.4.4
        _encode_nat(out, e, fam, v6)
    if e.seq_adj_orig is not None and e.seq_adj_reply is not None:
        _tlv(out, 16, _BE32X6.pack(*e.seq_adj_orig, *e.seq_adj_reply))
    if e.helper:
        # at most 11 bytes + NUL: the receiver refuses nta_len > 16 (§2.7)
        name = e.helper.encode("latin-1", "replace")[:11] + b"\0"
        _tlv(out, 27, name)
    pv = opts.peer_version
    if e.labels and pv >= CT_ATTR_SINCE[28]:
        words = max(4, (e.labels.bit_length() + 31) // 32)
        words = min(words, 256)
        _tlv(out, 28, b"".join(_BE32.pack((e.labels >> (32 * i)) & 0xFFFFFFFF)
                               for i in range(words)))
    if e.synproxy is not None and pv >= CT_ATTR_SINCE[31]:
        isn, its, tsoff = e.synproxy
        _tlv(out, 31, _BE32X3.pack(its, isn, tsoff))
    if e.zone and pv >= CT_ATTR_SINCE[32]:
        _tlv(out, 32, _BE16.pack(e.zone))
    return b"".join(out)


# Where each identity attribute of a flow goes in its cache key (spec §2.4): both address
# families share a slot, so the key of an entry is the same whichever message carries it.
_KEY_SLOT = {0: 0, 1: 0, 2: 1, 3: 2, 22: 3, 23: 4, 24: 5, 32: 6}
_KEY_SLOTS = 7
_c_scan = getattr(load_ctfast(), "scan_sync_ct", None)


def _bad_ct_attr(nta_len: int, i: int, off: int, remaining: int) -> None:
    """Raise the error for a CT attribute header the walk refused (C receiver rules §2.7)."""
    if nta_len > remaining or nta_len < 4:
        raise ProtocolError(BAD_PAYLOAD, f"attribute length {nta_len} at {off}")
    if i >= _CT_COUNT:
        raise ProtocolError(BAD_PAYLOAD, f"unknown attribute id {i}")
    raise ProtocolError(BAD_PAYLOAD, f"{CT_ATTRS[i].name} length {nta_len}")


def scan_ct_payload(payload: bytes) -> bytes:
    """Check a CT_* payload as ``decode_ct_payload`` does and return the flow's identity key
    (see ``scan_ct_payload_py``; the C accelerator gives the same key, Python the errors)."""
    if _c_scan is not None:
        key = _c_scan(payload)
        if key is not None:
            return key
    return scan_ct_payload_py(payload)


def scan_ct_payload_py(payload: bytes) -> bytes:
    """Check a CT_* payload as ``decode_ct_payload`` does (same verdicts, same errors) without
    building the entry, and return the flow's identity key: the raw address, protocol, port,
    ICMP and zone attributes, in a fixed order (for the last occurrence of each).

    Two payloads have the same key exactly when their decoded entries have the same
    ``obj_key`` (each raw attribute is self-delimiting and fixed-size)."""
    slots = [b""] * _KEY_SLOTS
    remaining = len(payload)
    off = 0
    key_slot = _KEY_SLOT.get
    while remaining > 4:
        nta_len, i = _TLV_FROM(payload, off)
        if nta_len > remaining or nta_len < 4 or i >= _CT_COUNT \
                or nta_len != (_CT_NTA_LEN[i] or min(nta_len, _CT_MAX_LEN[i])):
            _bad_ct_attr(nta_len, i, off, remaining)
        k = key_slot(i)
        if k is not None:
            slots[k] = payload[off:off + nta_len]
        step = (nta_len + 3) & ~3
        off += step
        remaining -= step
    return b"".join(slots)


def _attr_chunks(payload: bytes) -> dict[int, bytes]:
    """id -> padded attribute of a payload already checked by ``scan_ct_payload`` (the last
    occurrence wins, LABELS of a bad size are left out: decoding ignores them too)."""
    chunks = {}
    remaining = len(payload)
    off = 0
    while remaining > 4:
        nta_len, i = _TLV_FROM(payload, off)
        step = (nta_len + 3) & ~3
        if not (i == 28 and (nta_len == 4 or nta_len % 4)):
            chunk = payload[off:off + step]
            chunks[i] = chunk + _PAD[len(chunk) & 3] if len(chunk) & 3 else chunk
        off += step
        remaining -= step
    return chunks


def merge_ct_payload(old: bytes, new: bytes) -> bytes:
    """``old`` updated with every attribute ``new`` carries, attribute by attribute (what the C
    daemon's external cache does with an update: it copies the attributes that are set).
    Both payloads must have passed ``scan_ct_payload``."""
    newer = _attr_chunks(new)
    older = _attr_chunks(old)
    if older.keys() <= newer.keys():
        return new
    older.update(newer)
    return b"".join(older[i] for i in sorted(older))


def _encode_nat(out: list, e: Entry, fam: int, v6: bool) -> None:
    """SNAT/DNAT address and port attributes (§2.5), from the reply tuple when known, else from
    ``nat_src``/``nat_dst`` (entries that were themselves decoded from the wire)."""
    s = e.status
    snat_ok = s is None or bool(s & IPS_SRC_NAT_DONE)
    dnat_ok = s is None or bool(s & IPS_DST_NAT_DONE)
    snat_ip = dnat_ip = snat_port = dnat_port = None
    o, r = e.orig, e.reply
    if r is not None and r.src is not None:
        if snat_ok and r.dst != o.src:
            snat_ip = r.dst
        if dnat_ok and r.src != o.dst:
            dnat_ip = r.src
        if snat_ok and _l4_dst_field(r) != _l4_src_field(o):
            snat_port = r.dport or 0
        if dnat_ok and _l4_src_field(r) != _l4_dst_field(o):
            dnat_port = r.sport or 0
    else:
        if e.nat_src is not None:
            snat_ip, snat_port = e.nat_src.min_ip, e.nat_src.min_port
        if e.nat_dst is not None:
            dnat_ip, dnat_port = e.nat_dst.min_ip, e.nat_dst.min_port
    # (the address decides the attribute: a decoded entry may mix families)
    if snat_ip is not None:
        a6 = ":" in snat_ip
        _tlv(out, 29 if a6 else 12, _addr(AF_INET6 if a6 else AF_INET, snat_ip))
    if dnat_ip is not None:
        a6 = ":" in dnat_ip
        _tlv(out, 30 if a6 else 13, _addr(AF_INET6 if a6 else AF_INET, dnat_ip))
    if snat_port is not None:
        _tlv(out, 14, _LE16.pack(snat_port))
    if dnat_port is not None:
        _tlv(out, 15, _LE16.pack(dnat_port))


def decode_ct_payload(payload: bytes) -> Entry:
    """Entry from a CT_* payload; raises ProtocolError(BAD_PAYLOAD). The reply tuple is not on
    the wire: NAT attributes become ``nat_src``/``nat_dst`` ranges (min == max)."""
    e = Entry(orig=Tuple())
    o = e.orig
    snat_ip = dnat_ip = snat_port = dnat_port = None
    # The walk of iter_attrs, inlined (same checks, same errors, same order): the common
    # attributes of a flow are read in place, without a slice and an unpacker call each.
    remaining = len(payload)
    off = 0
    try:
        while remaining > 4:
            nta_len, i = _TLV_FROM(payload, off)
            if nta_len > remaining or nta_len < 4 or i >= _CT_COUNT \
                    or nta_len != (_CT_NTA_LEN[i] or min(nta_len, _CT_MAX_LEN[i])):
                _bad_ct_attr(nta_len, i, off, remaining)
            p = off + 4
            step = (nta_len + 3) & ~3
            off += step
            remaining -= step
            if i == 0:
                o.family = AF_INET
                o.src = _ntop(AF_INET, payload[p:p + 4])
                o.dst = _ntop(AF_INET, payload[p + 4:p + 8])
                continue
            if i == 3:
                o.sport, o.dport = _PORT2_FROM(payload, p)
                continue
            if i == 2:
                o.proto = payload[p]
                continue
            if i == 4:
                e.tcp_state = payload[p]
                continue
            if 5 <= i <= 7:
                v = _BE32_FROM(payload, p)[0]
                if i == 5:
                    e.status = v
                elif i == 6:
                    e.timeout = v
                else:
                    e.mark = v
                continue
            raw = payload[p:p + nta_len - 4]
            if i == 28 and (not raw or len(raw) % 4):
                continue        # LABELS of a bad size: skipped silently, as iter_attrs does
            v = CT_ATTRS[i].unpack(raw)
            if i <= 1:
                o.family = AF_INET6 if i else AF_INET
                o.src, o.dst = v
            elif i == 2:
                o.proto = v
            elif i == 3:
                o.sport, o.dport = v
            elif i == 4:
                e.tcp_state = v
            elif i == 5:
                e.status = v
            elif i == 6:
                e.timeout = v
            elif i == 7:
                e.mark = v
            elif i in (8, 9):
                m = e.master or Tuple()
                m.family = AF_INET6 if i == 9 else AF_INET
                m.src, m.dst = v
                e.master = m
            elif i == 10:
                e.master = e.master or Tuple()
                e.master.proto = v
            elif i == 11:
                e.master = e.master or Tuple()
                e.master.sport, e.master.dport = v
            elif i in (12, 29):
                snat_ip = v
            elif i in (13, 30):
                dnat_ip = v
            elif i == 14:
                snat_port = v
            elif i == 15:
                dnat_port = v
            elif i == 16:
                e.seq_adj_orig, e.seq_adj_reply = v[:3], v[3:]
            elif i == 17:
                e.sctp_state = v
            elif i == 18:
                e.sctp_vtag_orig = v
            elif i == 19:
                e.sctp_vtag_reply = v
            elif i == 20:
                e.dccp_state = v
            elif i == 21:
                e.dccp_role = v
            elif i == 22:
                o.icmp_type = v
            elif i == 23:
                o.icmp_code = v
            elif i == 24:
                o.icmp_id = v
            elif i == 25:
                e.tcp_wscale_orig = v
            elif i == 26:
                e.tcp_wscale_reply = v
            elif i == 27:
                e.helper = v
            elif i == 28:
                e.labels = v
            elif i == 31:
                its, isn, tsoff = v
                e.synproxy = (isn, its, tsoff)
            elif i == 32:
                e.zone = v
    except (struct.error, ValueError, IndexError) as exc:  # defensive: codec on odd bytes
        raise ProtocolError(BAD_PAYLOAD, str(exc)) from None
    if snat_ip is not None or snat_port is not None:
        e.nat_src = NatRange(snat_ip, snat_ip, snat_port, snat_port)
    if dnat_ip is not None or dnat_port is not None:
        e.nat_dst = NatRange(dnat_ip, dnat_ip, dnat_port, dnat_port)
    return e


# --------------------------------------------------------------------------------------------
# Expectation messages
# --------------------------------------------------------------------------------------------

def _tuple_addrs(out: list, t: Tuple, fam: int, id4: int) -> None:
    if t.src is None or t.dst is None:      # (an expectation decoded without them)
        return
    _tlv(out, id4 + (1 if fam == AF_INET6 else 0), _addr(fam, t.src) + _addr(fam, t.dst))


def encode_exp_payload(x: Expect, opts: EncodeOptions = DEFAULT_OPTIONS) -> bytes:
    """The TLV payload of an EXP_* message (§2.6 emission order)."""
    out: list[bytes] = []
    m, t, k = x.master, x.tuple, x.mask
    if m is None or t is None or m.family not in (AF_INET, AF_INET6):
        raise ValueError("expectation without master and expected tuples cannot be replicated")
    fam = m.family
    ports = m.proto in _PORT_PROTOS

    def has_ports(t: Tuple) -> bool:
        # C: only for port protocols; an object decoded without the protocol keeps its ports
        return ports or (m.proto is None and (t.sport is not None or t.dport is not None))

    _tuple_addrs(out, m, fam, 0)
    if m.proto is not None:
        _tlv(out, 2, bytes((m.proto,)))
    if has_ports(m):
        _tlv(out, 3, _PORT2.pack(m.sport or 0, m.dport or 0))
    _tuple_addrs(out, t, t.family or fam, 4)
    if t.proto is not None:
        _tlv(out, 6, bytes((t.proto,)))
    if has_ports(t):
        _tlv(out, 7, _PORT2.pack(t.sport or 0, t.dport or 0))
    if k is not None:
        _tuple_addrs(out, k, k.family or fam, 8)
        if k.proto is not None:
            _tlv(out, 10, bytes((k.proto,)))
        if has_ports(k):
            _tlv(out, 11, _PORT2.pack(k.sport or 0, k.dport or 0))
    if x.timeout is not None and not opts.commit_timeout:
        _tlv(out, 12, _BE32.pack(x.timeout))
    _tlv(out, 13, _BE32.pack(x.flags or 0))
    if x.klass is not None:
        _tlv(out, 14, _BE32.pack(x.klass))
    n = x.nat_tuple
    if n is not None:
        if n.src is not None and (n.family or fam) == AF_INET:
            _tlv(out, 15, _addr(AF_INET, n.src) + _addr(AF_INET, n.dst))
        _tlv(out, 17, bytes((n.proto or 0,)))
        if has_ports(n):
            _tlv(out, 16, _PORT2.pack(n.sport or 0, n.dport or 0))
        _tlv(out, 18, _BE32.pack(x.nat_dir or 0))
    if x.helper:
        _tlv(out, 19, x.helper.encode("latin-1", "replace")[:11] + b"\0")
    if x.fn:
        _tlv(out, 20, x.fn.encode("latin-1", "replace")[:27] + b"\0")
    return b"".join(out)


def decode_exp_payload(payload: bytes) -> Expect:
    """Expect from an EXP_* payload; raises ProtocolError(BAD_PAYLOAD)."""
    x = Expect()
    tuples: dict[int, Tuple] = {}

    def tup(slot: int) -> Tuple:
        if slot not in tuples:
            tuples[slot] = Tuple()
        return tuples[slot]

    try:
        for spec, raw in iter_attrs(payload, EXP_ATTRS):
            i = spec.id
            v = spec.unpack(raw)
            if i <= 11:
                slot, field = divmod(i, 4)  # 0 master, 1 expected, 2 mask
                t = tup(slot)
                if field <= 1:
                    t.family = AF_INET6 if field else AF_INET
                    t.src, t.dst = v
                elif field == 2:
                    t.proto = v
                else:
                    t.sport, t.dport = v
            elif i == 12:
                x.timeout = v
            elif i == 13:
                x.flags = v
            elif i == 14:
                x.klass = v
            elif i == 15:
                t = tup(3)
                t.family = AF_INET
                t.src, t.dst = v
            elif i == 16:
                tup(3).sport, tup(3).dport = v
            elif i == 17:
                tup(3).proto = v
            elif i == 18:
                x.nat_dir = v
            elif i == 19:
                x.helper = v
            elif i == 20:
                x.fn = v
    except (struct.error, ValueError, IndexError) as exc:
        raise ProtocolError(BAD_PAYLOAD, str(exc)) from None
    x.master, x.tuple, x.mask, x.nat_tuple = (tuples.get(s) for s in range(4))
    return x


# --------------------------------------------------------------------------------------------
# Whole messages
# --------------------------------------------------------------------------------------------

def encode_message(kind: str, obj: Entry | Expect, seq: int, flags: int = 0,
                   opts: EncodeOptions = DEFAULT_OPTIONS) -> bytes:
    """One data message: kind 'new'|'upd'|'del' of an Entry (CT_*) or Expect (EXP_*)."""
    if isinstance(obj, Expect):
        mtype = KIND_TYPE_EXP[kind]
        payload = encode_exp_payload(obj, opts)
    else:
        mtype = KIND_TYPE_CT[kind]
        payload = encode_ct_payload(obj, opts)
    length = HDR_LEN + len(payload)
    if length > MAX_MESSAGE:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    return HDR.pack(0x10 | mtype, flags, length, seq & 0xFFFFFFFF) + payload


def decode_data(header: Header, msg: bytes) -> tuple[str, Entry | Expect]:
    """(kind, object) of a data message ``msg`` (header included); raises ProtocolError."""
    if header.type > EXP_DEL:
        raise ProtocolError(BAD_TYPE, f"type {header.type}")
    payload = msg[HDR_LEN:header.length]
    if header.type <= CT_DEL:
        return TYPE_KIND[header.type], decode_ct_payload(payload)
    return TYPE_KIND[header.type], decode_exp_payload(payload)


def scan_data(header: Header, msg: bytes) -> tuple[str, object, bytes | None, Expect | None]:
    """(kind, key, payload, None) of a CT data message (checked, not decoded: see
    ``scan_ct_payload``), (kind, obj_key, None, expectation) of an EXP one; raises
    ProtocolError exactly where ``decode_data`` does."""
    if header.type > EXP_DEL:
        raise ProtocolError(BAD_TYPE, f"type {header.type}")
    payload = msg[HDR_LEN:header.length]
    if header.type <= CT_DEL:
        return TYPE_KIND[header.type], scan_ct_payload(payload), payload, None
    x = decode_exp_payload(payload)
    return TYPE_KIND[header.type], obj_key(x), None, x


def obj_key(obj: Entry | Expect) -> tuple:
    """Cache key of a replicated object: ('ct', original tuple + zone) or ('exp', ...)."""
    if isinstance(obj, Expect):
        t, m = obj.tuple, obj.master
        return ("exp", t.key() if t is not None else (), m.key() if m is not None else ())
    return ("ct", obj.key(), obj.zone)
