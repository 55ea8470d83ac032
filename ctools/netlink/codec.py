"""ctnetlink codec: bytes <-> :class:`~ctools.model.Entry` / :class:`~ctools.model.Expect`.

Pure: no sockets, no clock.  Decoding walks the netlink attributes with precompiled
``struct`` unpackers and fills the model objects directly (no per-attribute objects);
malformed input of any kind raises :class:`CodecError` and nothing else.

Layout reminders (all from the Linux uapi):

* ``nlmsghdr`` = len u32, type u16, flags u16, seq u32, pid u32 (host order)
* ``nfgenmsg`` = family u8, version u8, res_id be16
* ``nlattr``   = len u16, type u16 (host order), value, padding to 4 bytes
* ctnetlink values are big endian, except the labels bitmap (host words) and the
  CTA_FILTER flags (host u32).
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator

from ctools._speedups import load_ctfast
from ctools.model import Entry, Expect, NatRange, Tuple
from ctools.netlink import constants as C
from ctools.netlink.errors import CodecError

__all__ = [
    "CodecError", "decode_entry", "encode_entry", "decode_expect", "encode_expect",
    "decode_stats", "build_message", "iter_messages", "decode_tuple", "encode_tuple",
    "encode_filter", "nfgen_family", "decode_error",
]

AF_INET = int(socket.AF_INET)
AF_INET6 = int(socket.AF_INET6)
_ntop = socket.inet_ntop
_pton = socket.inet_pton

_ctfast = load_ctfast()
_c_decode = _ctfast.decode_entry if _ctfast is not None else None

# precompiled layouts
NLMSGHDR = struct.Struct("=IHHII")
NLATTR = struct.Struct("=HH")
NFGENMSG = struct.Struct(">BBH")
_NLERR = struct.Struct("=i")
_hdr = NLATTR.unpack_from
_msghdr = NLMSGHDR.unpack_from
_u8 = struct.Struct("B").unpack_from
_be16 = struct.Struct(">H").unpack_from
_be32 = struct.Struct(">I").unpack_from
_be64 = struct.Struct(">Q").unpack_from
_u32 = struct.Struct("=I").unpack_from
_tcpflags = struct.Struct("BB").unpack_from
_pack_hdr = NLATTR.pack
_pack_u8 = struct.Struct("B").pack
_pack_be16 = struct.Struct(">H").pack
_pack_be32 = struct.Struct(">I").pack
_pack_be64 = struct.Struct(">Q").pack
_pack_u32 = struct.Struct("=I").pack

_NESTED = C.NLA_F_NESTED
_TYPE_MASK = C.NLA_TYPE_MASK
_LABEL_WORDS = struct.Struct("=4I")

# errors a truncated or inconsistent buffer can provoke inside the decoders
_DECODE_ERRORS = (struct.error, IndexError, ValueError, UnicodeDecodeError, OSError,
                  TypeError, OverflowError)


# ---------------------------------------------------------------------------------------------
# generic attribute walking (for the cold nests; the hot ones are walked inline)

def _nest(buf, off: int, end: int) -> dict[int, tuple[int, int]]:
    """Map attribute type -> (value start, value end) for one nesting level."""
    out = {}
    while off + 4 <= end:
        ln, ty = _hdr(buf, off)
        nxt = off + ln
        if ln < 4 or nxt > end:
            raise CodecError(f"bad attribute length {ln} at offset {off}")
        out[ty & _TYPE_MASK] = (off + 4, nxt)
        off = (nxt + 3) & ~3
    return out


def _need(span: tuple[int, int], size: int, what: str) -> int:
    start, stop = span
    if stop - start < size:
        raise CodecError(f"{what}: {stop - start} bytes, need {size}")
    return start


def _string(buf, span: tuple[int, int]) -> str:
    raw = bytes(buf[span[0]:span[1]])
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# tuples

def _decode_tuple(buf, off: int, end: int, family: int) -> Tuple:
    t = Tuple(family)
    while off + 4 <= end:
        ln, ty = _hdr(buf, off)
        nxt = off + ln
        if ln < 4 or nxt > end:
            raise CodecError(f"bad tuple attribute length {ln}")
        ty &= _TYPE_MASK
        if ty == C.CTA_TUPLE_IP:
            p = off + 4
            while p + 4 <= nxt:
                l2, t2 = _hdr(buf, p)
                n2 = p + l2
                if l2 < 4 or n2 > nxt:
                    raise CodecError("bad address attribute length")
                t2 &= _TYPE_MASK
                if t2 <= 2:  # V4_SRC / V4_DST
                    if l2 != 8:
                        raise CodecError("IPv4 address of wrong size")
                    addr = _ntop(AF_INET, buf[p + 4:n2])
                    t.family = AF_INET
                elif t2 <= 4:
                    if l2 != 20:
                        raise CodecError("IPv6 address of wrong size")
                    addr = _ntop(AF_INET6, buf[p + 4:n2])
                    t.family = AF_INET6
                else:
                    p = (n2 + 3) & ~3
                    continue
                if t2 & 1:
                    t.src = addr
                else:
                    t.dst = addr
                p = (n2 + 3) & ~3
        elif ty == C.CTA_TUPLE_PROTO:
            p = off + 4
            while p + 4 <= nxt:
                l2, t2 = _hdr(buf, p)
                n2 = p + l2
                if l2 < 4 or n2 > nxt:
                    raise CodecError("bad protocol attribute length")
                t2 &= _TYPE_MASK
                if t2 == C.CTA_PROTO_NUM:
                    if l2 < 5:
                        raise CodecError("short protocol number")
                    t.proto = buf[p + 4]
                elif t2 == C.CTA_PROTO_SRC_PORT:
                    if l2 < 6:
                        raise CodecError("short port")
                    t.sport = _be16(buf, p + 4)[0]
                elif t2 == C.CTA_PROTO_DST_PORT:
                    if l2 < 6:
                        raise CodecError("short port")
                    t.dport = _be16(buf, p + 4)[0]
                elif t2 == C.CTA_PROTO_ICMP_ID or t2 == C.CTA_PROTO_ICMPV6_ID:
                    if l2 < 6:
                        raise CodecError("short icmp id")
                    t.icmp_id = _be16(buf, p + 4)[0]
                elif t2 == C.CTA_PROTO_ICMP_TYPE or t2 == C.CTA_PROTO_ICMPV6_TYPE:
                    if l2 < 5:
                        raise CodecError("short icmp type")
                    t.icmp_type = buf[p + 4]
                elif t2 == C.CTA_PROTO_ICMP_CODE or t2 == C.CTA_PROTO_ICMPV6_CODE:
                    if l2 < 5:
                        raise CodecError("short icmp code")
                    t.icmp_code = buf[p + 4]
                p = (n2 + 3) & ~3
        elif ty == C.CTA_TUPLE_ZONE:
            if ln < 6:
                raise CodecError("short tuple zone")
            t.zone = _be16(buf, off + 4)[0]
        off = (nxt + 3) & ~3
    return t


def decode_tuple(data, family: int = socket.AF_UNSPEC) -> Tuple:
    """Decode the contents of a CTA_TUPLE_* nest (the attributes inside it)."""
    try:
        return _decode_tuple(data, 0, len(data), family)
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise CodecError(f"malformed tuple: {exc}") from None


# Fixed-size attributes packed in one go: a ">" struct whose netlink header fields are given
# pre-swapped to host order (the header is host-endian, the value big-endian).
def _host16(v: int) -> int:
    return int.from_bytes(v.to_bytes(2, sys.byteorder), "big")


_H = {}


def _h(v: int) -> int:
    r = _H.get(v)
    if r is None:
        r = _H[v] = _host16(v)
    return r


_BE32_ATTR = struct.Struct(">HHI").pack
_BE16_ATTR = struct.Struct(">HHH2x").pack
_U8_ATTR = struct.Struct(">HHB3x").pack
_V4_PORT_TUPLE = struct.Struct(">HHHHHH4sHH4sHHHHB3xHHH2xHHH2x").pack
_L8, _L6, _L5 = _host16(8), _host16(6), _host16(5)
_V4T = (_host16(52), _host16(20), _host16(8), _host16(C.CTA_IP_V4_SRC), _host16(8),
        _host16(C.CTA_IP_V4_DST), _host16(28), _host16(C.CTA_TUPLE_PROTO | C.NLA_F_NESTED),
        _host16(5), _host16(C.CTA_PROTO_NUM), _host16(6), _host16(C.CTA_PROTO_SRC_PORT),
        _host16(6), _host16(C.CTA_PROTO_DST_PORT))
_V4_IP_NEST = _host16(C.CTA_TUPLE_IP | C.NLA_F_NESTED)


def _be32_attr(ty: int, value: int) -> bytes:
    return _BE32_ATTR(_L8, _h(ty), value)


def _attr(ty: int, value: bytes) -> bytes:
    ln = 4 + len(value)
    return _pack_hdr(ln, ty) + value + b"\0" * (-ln & 3)


def _nested(ty: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return _pack_hdr(4 + len(body), ty | _NESTED) + body


def _family_of(t: Tuple) -> int:
    if t.family:
        return t.family
    for addr in (t.src, t.dst):
        if addr is not None:
            return AF_INET6 if ":" in addr else AF_INET
    return AF_INET


def _encode_addr(ty: int, family: int, addr: str) -> bytes:
    try:
        return _attr(ty, _pton(family, addr))
    except (OSError, TypeError) as exc:
        raise CodecError(f"bad address {addr!r}: {exc}") from None


def encode_tuple(t: Tuple, ty: int = C.CTA_TUPLE_ORIG) -> bytes:
    """One CTA_TUPLE_* nest (``ty`` picks orig/reply/master, or a CTA_EXPECT_* tuple)."""
    family = _family_of(t)
    if (family == AF_INET and t.sport is not None and t.dport is not None
            and t.src is not None and t.dst is not None and t.proto is not None
            and t.zone is None and t.icmp_type is None and t.icmp_code is None
            and t.icmp_id is None):
        # the common IPv4 + ports tuple in one pack (same bytes as the general path)
        try:
            a, b, c, d, e, f, g, h, i, j, k, l_, m, n = _V4T
            return _V4_PORT_TUPLE(a, _h(ty | _NESTED), b, _V4_IP_NEST, c, d,
                                  _pton(AF_INET, t.src), e, f, _pton(AF_INET, t.dst), g, h,
                                  i, j, t.proto, k, l_, t.sport, m, n, t.dport)
        except (OSError, TypeError, struct.error) as exc:
            raise CodecError(f"cannot encode tuple {t!r}: {exc}") from None
    return _encode_tuple_general(t, ty, family)


def _encode_tuple_general(t: Tuple, ty: int, family: int) -> bytes:
    ip = []
    if family == AF_INET6:
        if t.src is not None:
            ip.append(_encode_addr(C.CTA_IP_V6_SRC, family, t.src))
        if t.dst is not None:
            ip.append(_encode_addr(C.CTA_IP_V6_DST, family, t.dst))
    else:
        if t.src is not None:
            ip.append(_encode_addr(C.CTA_IP_V4_SRC, family, t.src))
        if t.dst is not None:
            ip.append(_encode_addr(C.CTA_IP_V4_DST, family, t.dst))
    proto = []
    if t.proto is not None:
        proto.append(_attr(C.CTA_PROTO_NUM, _pack_u8(t.proto)))
    if t.sport is not None:
        proto.append(_attr(C.CTA_PROTO_SRC_PORT, _pack_be16(t.sport)))
    if t.dport is not None:
        proto.append(_attr(C.CTA_PROTO_DST_PORT, _pack_be16(t.dport)))
    v6 = family == AF_INET6
    if t.icmp_id is not None:
        proto.append(_attr(C.CTA_PROTO_ICMPV6_ID if v6 else C.CTA_PROTO_ICMP_ID,
                           _pack_be16(t.icmp_id)))
    if t.icmp_type is not None:
        proto.append(_attr(C.CTA_PROTO_ICMPV6_TYPE if v6 else C.CTA_PROTO_ICMP_TYPE,
                           _pack_u8(t.icmp_type)))
    if t.icmp_code is not None:
        proto.append(_attr(C.CTA_PROTO_ICMPV6_CODE if v6 else C.CTA_PROTO_ICMP_CODE,
                           _pack_u8(t.icmp_code)))
    parts = []
    if ip:
        parts.append(_nested(C.CTA_TUPLE_IP, *ip))
    if proto:
        parts.append(_nested(C.CTA_TUPLE_PROTO, *proto))
    if t.zone is not None:
        parts.append(_attr(C.CTA_TUPLE_ZONE, _pack_be16(t.zone)))
    return _nested(ty, *parts)


# ---------------------------------------------------------------------------------------------
# conntrack entries

def _decode_protoinfo(buf, off: int, end: int, e: Entry) -> None:
    for ty, (s, n) in _nest(buf, off, end).items():
        inner = _nest(buf, s, n)
        if ty == C.CTA_PROTOINFO_TCP:
            for t2, span in inner.items():
                if t2 == C.CTA_PROTOINFO_TCP_STATE:
                    e.tcp_state = buf[_need(span, 1, "tcp state")]
                elif t2 == C.CTA_PROTOINFO_TCP_WSCALE_ORIGINAL:
                    e.tcp_wscale_orig = buf[_need(span, 1, "tcp wscale")]
                elif t2 == C.CTA_PROTOINFO_TCP_WSCALE_REPLY:
                    e.tcp_wscale_reply = buf[_need(span, 1, "tcp wscale")]
                elif t2 == C.CTA_PROTOINFO_TCP_FLAGS_ORIGINAL:
                    e.tcp_flags_orig = _tcpflags(buf, _need(span, 2, "tcp flags"))
                elif t2 == C.CTA_PROTOINFO_TCP_FLAGS_REPLY:
                    e.tcp_flags_reply = _tcpflags(buf, _need(span, 2, "tcp flags"))
        elif ty == C.CTA_PROTOINFO_SCTP:
            for t2, span in inner.items():
                if t2 == C.CTA_PROTOINFO_SCTP_STATE:
                    e.sctp_state = buf[_need(span, 1, "sctp state")]
                elif t2 == C.CTA_PROTOINFO_SCTP_VTAG_ORIGINAL:
                    e.sctp_vtag_orig = _be32(buf, _need(span, 4, "sctp vtag"))[0]
                elif t2 == C.CTA_PROTOINFO_SCTP_VTAG_REPLY:
                    e.sctp_vtag_reply = _be32(buf, _need(span, 4, "sctp vtag"))[0]
        elif ty == C.CTA_PROTOINFO_DCCP:
            for t2, span in inner.items():
                if t2 == C.CTA_PROTOINFO_DCCP_STATE:
                    e.dccp_state = buf[_need(span, 1, "dccp state")]
                elif t2 == C.CTA_PROTOINFO_DCCP_ROLE:
                    e.dccp_role = buf[_need(span, 1, "dccp role")]
                elif t2 == C.CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ:
                    e.dccp_handshake_seq = _be64(buf, _need(span, 8, "dccp seq"))[0]


def _decode_nat(buf, off: int, end: int) -> NatRange:
    r = NatRange()
    for ty, span in _nest(buf, off, end).items():
        if ty in (C.CTA_NAT_V4_MINIP, C.CTA_NAT_V4_MAXIP):
            s = _need(span, 4, "nat address")
            addr = _ntop(AF_INET, buf[s:s + 4])
        elif ty in (C.CTA_NAT_V6_MINIP, C.CTA_NAT_V6_MAXIP):
            s = _need(span, 16, "nat address")
            addr = _ntop(AF_INET6, buf[s:s + 16])
        elif ty == C.CTA_NAT_PROTO:
            for t2, sp2 in _nest(buf, *span).items():
                if t2 == C.CTA_PROTONAT_PORT_MIN:
                    r.min_port = _be16(buf, _need(sp2, 2, "nat port"))[0]
                elif t2 == C.CTA_PROTONAT_PORT_MAX:
                    r.max_port = _be16(buf, _need(sp2, 2, "nat port"))[0]
            continue
        else:
            continue
        if ty in (C.CTA_NAT_V4_MINIP, C.CTA_NAT_V6_MINIP):
            r.min_ip = addr
        else:
            r.max_ip = addr
    return r


def _decode_counters(buf, off: int, end: int) -> tuple[int | None, int | None]:
    packets = nbytes = None
    for ty, span in _nest(buf, off, end).items():
        if ty == C.CTA_COUNTERS_PACKETS:
            packets = _be64(buf, _need(span, 8, "counter"))[0]
        elif ty == C.CTA_COUNTERS_BYTES:
            nbytes = _be64(buf, _need(span, 8, "counter"))[0]
        elif ty == C.CTA_COUNTERS32_PACKETS:
            packets = _be32(buf, _need(span, 4, "counter"))[0]
        elif ty == C.CTA_COUNTERS32_BYTES:
            nbytes = _be32(buf, _need(span, 4, "counter"))[0]
    return packets, nbytes


def _decode_u32_triplet(buf, off: int, end: int, what: str) -> tuple:
    attrs = _nest(buf, off, end)
    out = []
    for ty in (1, 2, 3):
        span = attrs.get(ty)
        out.append(None if span is None else _be32(buf, _need(span, 4, what))[0])
    return tuple(out)


def _labels(buf, s: int, n: int) -> int:
    # the kernel sends its bitmap of host-order words; label n is bit n
    raw = bytes(buf[s:n])
    if len(raw) % 4:
        raise CodecError("labels bitmap is not a whole number of words")
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    value = 0
    for i, w in enumerate(words):
        value |= w << (32 * i)
    return value


def _decode_entry(buf, family: int) -> Entry:
    e = Entry()
    end = len(buf)
    off = 4
    while off + 4 <= end:
        ln, ty = _hdr(buf, off)
        nxt = off + ln
        if ln < 4 or nxt > end:
            raise CodecError(f"bad attribute length {ln} at offset {off}")
        ty &= _TYPE_MASK
        s = off + 4
        if ty == C.CTA_TUPLE_ORIG:
            e.orig = _decode_tuple(buf, s, nxt, family)
        elif ty == C.CTA_TUPLE_REPLY:
            e.reply = _decode_tuple(buf, s, nxt, family)
        elif ty == C.CTA_STATUS:
            if ln != 8:
                raise CodecError("status of wrong size")
            e.status = _be32(buf, s)[0]
        elif ty == C.CTA_TIMEOUT:
            if ln != 8:
                raise CodecError("timeout of wrong size")
            e.timeout = _be32(buf, s)[0]
        elif ty == C.CTA_PROTOINFO:
            _decode_protoinfo(buf, s, nxt, e)
        elif ty == C.CTA_MARK:
            if ln != 8:
                raise CodecError("mark of wrong size")
            e.mark = _be32(buf, s)[0]
        elif ty == C.CTA_USE:
            if ln != 8:
                raise CodecError("use of wrong size")
            e.use = _be32(buf, s)[0]
        elif ty == C.CTA_ID:
            if ln != 8:
                raise CodecError("id of wrong size")
            e.id = _be32(buf, s)[0]
        elif ty == C.CTA_COUNTERS_ORIG:
            e.orig_packets, e.orig_bytes = _decode_counters(buf, s, nxt)
        elif ty == C.CTA_COUNTERS_REPLY:
            e.reply_packets, e.reply_bytes = _decode_counters(buf, s, nxt)
        elif ty == C.CTA_ZONE:
            if ln != 6 and ln != 8:
                raise CodecError("zone of wrong size")
            e.zone = _be16(buf, s)[0]
        elif ty == C.CTA_TUPLE_MASTER:
            e.master = _decode_tuple(buf, s, nxt, family)
        elif ty == C.CTA_HELP:
            name = _nest(buf, s, nxt).get(C.CTA_HELP_NAME)
            if name is not None:
                e.helper = _string(buf, name)
        elif ty == C.CTA_NAT_SRC:
            e.nat_src = _decode_nat(buf, s, nxt)
        elif ty == C.CTA_NAT_DST:
            e.nat_dst = _decode_nat(buf, s, nxt)
        elif ty == C.CTA_SEQ_ADJ_ORIG:
            e.seq_adj_orig = _decode_u32_triplet(buf, s, nxt, "seq adjustment")
        elif ty == C.CTA_SEQ_ADJ_REPLY:
            e.seq_adj_reply = _decode_u32_triplet(buf, s, nxt, "seq adjustment")
        elif ty == C.CTA_SECMARK:
            if ln != 8:
                raise CodecError("secmark of wrong size")
            e.secmark = _be32(buf, s)[0]
        elif ty == C.CTA_SECCTX:
            name = _nest(buf, s, nxt).get(C.CTA_SECCTX_NAME)
            if name is not None:
                e.secctx = _string(buf, name)
        elif ty == C.CTA_TIMESTAMP:
            for t2, span in _nest(buf, s, nxt).items():
                if t2 == C.CTA_TIMESTAMP_START:
                    e.timestamp_start = _be64(buf, _need(span, 8, "timestamp"))[0]
                elif t2 == C.CTA_TIMESTAMP_STOP:
                    e.timestamp_stop = _be64(buf, _need(span, 8, "timestamp"))[0]
        elif ty == C.CTA_MARK_MASK:
            if ln != 8:
                raise CodecError("mark mask of wrong size")
            e.mark_mask = _be32(buf, s)[0]
        elif ty == C.CTA_LABELS:
            e.labels = _labels(buf, s, nxt)
        elif ty == C.CTA_LABELS_MASK:
            e.labels_mask = _labels(buf, s, nxt)
        elif ty == C.CTA_SYNPROXY:
            e.synproxy = _decode_u32_triplet(buf, s, nxt, "synproxy")
        elif ty == C.CTA_STATUS_MASK:
            if ln != 8:
                raise CodecError("status mask of wrong size")
            e.status_mask = _be32(buf, s)[0]
        elif ty == C.CTA_TIMESTAMP_EVENT:
            if ln != 12:
                raise CodecError("event timestamp of wrong size")
            e.timestamp_event = _be64(buf, s)[0]
        off = (nxt + 3) & ~3
    if off != end and off - end >= 4:
        raise CodecError("trailing bytes after the attributes")
    return e


def nfgen_family(payload) -> int:
    """The address family of an nfnetlink payload (its nfgenmsg header)."""
    if len(payload) < 4:
        raise CodecError("payload shorter than nfgenmsg")
    return payload[0]


def decode_entry(payload) -> Entry:
    """Decode one conntrack message payload (starting at ``nfgenmsg``) into an :class:`Entry`.

    Raises :class:`CodecError` for any malformed input.  Uses the C accelerator when it is
    built (same result, tested); malformed input always goes through the Python decoder.
    """
    if _c_decode is not None:
        entry = _c_decode(payload)
        if entry is not None:
            return entry
    return decode_entry_py(payload)


def decode_entry_py(payload) -> Entry:
    """The pure-Python decoder behind :func:`decode_entry` (the reference)."""
    if len(payload) < 4:
        raise CodecError("payload shorter than nfgenmsg")
    try:
        return _decode_entry(payload, payload[0])
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise CodecError(f"malformed conntrack message: {exc}") from None


def _encode_nat(ty: int, r: NatRange) -> bytes:
    parts = []
    for addr, v4, v6 in ((r.min_ip, C.CTA_NAT_V4_MINIP, C.CTA_NAT_V6_MINIP),
                         (r.max_ip, C.CTA_NAT_V4_MAXIP, C.CTA_NAT_V6_MAXIP)):
        if addr is not None:
            if ":" in addr:
                parts.append(_encode_addr(v6, AF_INET6, addr))
            else:
                parts.append(_encode_addr(v4, AF_INET, addr))
    ports = []
    if r.min_port is not None:
        ports.append(_attr(C.CTA_PROTONAT_PORT_MIN, _pack_be16(r.min_port)))
    if r.max_port is not None:
        ports.append(_attr(C.CTA_PROTONAT_PORT_MAX, _pack_be16(r.max_port)))
    if ports:
        parts.append(_nested(C.CTA_NAT_PROTO, *ports))
    return _nested(ty, *parts)


def _encode_labels(ty: int, value: int) -> bytes:
    if value < 0 or value >> 128:
        raise CodecError("labels must fit in 128 bits")
    words = [(value >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
    return _attr(ty, _LABEL_WORDS.pack(*words))


def _u32_triplet(ty: int, values) -> bytes:
    return _nested(ty, *(_attr(i, _pack_be32(v)) for i, v in enumerate(values, 1)
                         if v is not None))


def _counters(ty: int, packets, nbytes) -> bytes:
    parts = []
    if packets is not None:
        parts.append(_attr(C.CTA_COUNTERS_PACKETS, _pack_be64(packets)))
    if nbytes is not None:
        parts.append(_attr(C.CTA_COUNTERS_BYTES, _pack_be64(nbytes)))
    return _nested(ty, *parts)


def encode_entry(entry: Entry, *, for_update: bool = False, readonly: bool = False) -> bytes:
    """Encode an :class:`Entry` as CTA_* attributes (no netlink/nfgenmsg headers).

    ``for_update`` leaves out what the kernel refuses to change on an existing entry (NAT,
    master tuple, reply tuple).  ``readonly`` also emits the attributes only the kernel
    reports (use, counters, timestamps, secmark/secctx) -- for round trips and tests; the
    kernel ignores or refuses them in requests.  Without ``readonly`` (i.e. for requests)
    a status always carries IPS_CONFIRMED, which the kernel insists on.
    """
    try:
        return _encode_entry(entry, for_update, readonly)
    except CodecError:
        raise
    except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise CodecError(f"cannot encode entry: {exc}") from None


def _encode_entry(e: Entry, for_update: bool, readonly: bool) -> bytes:
    out = []
    add = out.append
    if e.orig is not None:
        add(encode_tuple(e.orig, C.CTA_TUPLE_ORIG))
    if e.reply is not None and not for_update:
        add(encode_tuple(e.reply, C.CTA_TUPLE_REPLY))
    if e.status is not None:
        # a request must keep CONFIRMED set: the kernel answers EBUSY to clearing it
        # (the C library adds it the same way)
        add(_be32_attr(C.CTA_STATUS, e.status if readonly else e.status | 8))
    pinfo = _encode_protoinfo(e)
    if pinfo:
        add(pinfo)
    if e.helper is not None:
        add(_nested(C.CTA_HELP, _attr(C.CTA_HELP_NAME, e.helper.encode() + b"\0")))
    if e.nat_src is not None and not for_update:
        add(_encode_nat(C.CTA_NAT_SRC, e.nat_src))
    if e.timeout is not None:
        add(_be32_attr(C.CTA_TIMEOUT, e.timeout))
    if e.mark is not None:
        add(_be32_attr(C.CTA_MARK, e.mark))
    if readonly:
        if e.orig_packets is not None or e.orig_bytes is not None:
            add(_counters(C.CTA_COUNTERS_ORIG, e.orig_packets, e.orig_bytes))
        if e.reply_packets is not None or e.reply_bytes is not None:
            add(_counters(C.CTA_COUNTERS_REPLY, e.reply_packets, e.reply_bytes))
        if e.use is not None:
            add(_attr(C.CTA_USE, _pack_be32(e.use)))
    if e.id is not None and (readonly or not for_update):
        add(_attr(C.CTA_ID, _pack_be32(e.id)))
    if e.nat_dst is not None and not for_update:
        add(_encode_nat(C.CTA_NAT_DST, e.nat_dst))
    if e.master is not None and not for_update:
        add(encode_tuple(e.master, C.CTA_TUPLE_MASTER))
    if e.seq_adj_orig is not None:
        add(_u32_triplet(C.CTA_SEQ_ADJ_ORIG, e.seq_adj_orig))
    if e.seq_adj_reply is not None:
        add(_u32_triplet(C.CTA_SEQ_ADJ_REPLY, e.seq_adj_reply))
    if readonly and e.secmark is not None:
        add(_attr(C.CTA_SECMARK, _pack_be32(e.secmark)))
    if e.zone is not None:
        add(_attr(C.CTA_ZONE, _pack_be16(e.zone)))
    if readonly:
        if e.secctx is not None:
            add(_nested(C.CTA_SECCTX, _attr(C.CTA_SECCTX_NAME, e.secctx.encode() + b"\0")))
        if e.timestamp_start is not None or e.timestamp_stop is not None:
            ts = []
            if e.timestamp_start is not None:
                ts.append(_attr(C.CTA_TIMESTAMP_START, _pack_be64(e.timestamp_start)))
            if e.timestamp_stop is not None:
                ts.append(_attr(C.CTA_TIMESTAMP_STOP, _pack_be64(e.timestamp_stop)))
            add(_nested(C.CTA_TIMESTAMP, *ts))
    if e.mark_mask is not None:
        add(_attr(C.CTA_MARK_MASK, _pack_be32(e.mark_mask)))
    if e.labels is not None:
        add(_encode_labels(C.CTA_LABELS, e.labels))
    if e.labels_mask is not None:
        add(_encode_labels(C.CTA_LABELS_MASK, e.labels_mask))
    if e.synproxy is not None:
        add(_u32_triplet(C.CTA_SYNPROXY, e.synproxy))
    if e.status_mask is not None:
        add(_attr(C.CTA_STATUS_MASK, _pack_be32(e.status_mask)))
    if readonly and e.timestamp_event is not None:
        add(_attr(C.CTA_TIMESTAMP_EVENT, _pack_be64(e.timestamp_event)))
    return b"".join(out)


def _encode_protoinfo(e: Entry) -> bytes:
    inner = []
    tcp = []
    if e.tcp_state is not None:
        tcp.append(_U8_ATTR(_L5, _h(C.CTA_PROTOINFO_TCP_STATE), e.tcp_state))
    if e.tcp_wscale_orig is not None:
        tcp.append(_attr(C.CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, _pack_u8(e.tcp_wscale_orig)))
    if e.tcp_wscale_reply is not None:
        tcp.append(_attr(C.CTA_PROTOINFO_TCP_WSCALE_REPLY, _pack_u8(e.tcp_wscale_reply)))
    if e.tcp_flags_orig is not None:
        tcp.append(_attr(C.CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, bytes(e.tcp_flags_orig)))
    if e.tcp_flags_reply is not None:
        tcp.append(_attr(C.CTA_PROTOINFO_TCP_FLAGS_REPLY, bytes(e.tcp_flags_reply)))
    if tcp:
        inner.append(_nested(C.CTA_PROTOINFO_TCP, *tcp))
    sctp = []
    if e.sctp_state is not None:
        sctp.append(_attr(C.CTA_PROTOINFO_SCTP_STATE, _pack_u8(e.sctp_state)))
    if e.sctp_vtag_orig is not None:
        sctp.append(_attr(C.CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, _pack_be32(e.sctp_vtag_orig)))
    if e.sctp_vtag_reply is not None:
        sctp.append(_attr(C.CTA_PROTOINFO_SCTP_VTAG_REPLY, _pack_be32(e.sctp_vtag_reply)))
    if sctp:
        inner.append(_nested(C.CTA_PROTOINFO_SCTP, *sctp))
    dccp = []
    if e.dccp_state is not None:
        dccp.append(_attr(C.CTA_PROTOINFO_DCCP_STATE, _pack_u8(e.dccp_state)))
    if e.dccp_role is not None:
        dccp.append(_attr(C.CTA_PROTOINFO_DCCP_ROLE, _pack_u8(e.dccp_role)))
    if e.dccp_handshake_seq is not None:
        dccp.append(_attr(C.CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
                          _pack_be64(e.dccp_handshake_seq)))
    if dccp:
        inner.append(_nested(C.CTA_PROTOINFO_DCCP, *dccp))
    return _nested(C.CTA_PROTOINFO, *inner) if inner else b""


def encode_filter(orig_flags: int = 0, reply_flags: int = 0) -> bytes:
    """CTA_FILTER nest: which fields of the request's tuples the kernel compares in a dump."""
    return _nested(C.CTA_FILTER,
                   _attr(C.CTA_FILTER_ORIG_FLAGS, _pack_u32(orig_flags)),
                   _attr(C.CTA_FILTER_REPLY_FLAGS, _pack_u32(reply_flags)))


# ---------------------------------------------------------------------------------------------
# expectations

def _decode_expect(buf, family: int) -> Expect:
    x = Expect()
    for ty, span in _nest(buf, 4, len(buf)).items():
        s, n = span
        if ty == C.CTA_EXPECT_MASTER:
            x.master = _decode_tuple(buf, s, n, family)
        elif ty == C.CTA_EXPECT_TUPLE:
            x.tuple = _decode_tuple(buf, s, n, family)
        elif ty == C.CTA_EXPECT_MASK:
            x.mask = _decode_tuple(buf, s, n, family)
        elif ty == C.CTA_EXPECT_TIMEOUT:
            x.timeout = _be32(buf, _need(span, 4, "expect timeout"))[0]
        elif ty == C.CTA_EXPECT_ID:
            x.id = _be32(buf, _need(span, 4, "expect id"))[0]
        elif ty == C.CTA_EXPECT_HELP_NAME:
            x.helper = _string(buf, span)
        elif ty == C.CTA_EXPECT_ZONE:
            x.zone = _be16(buf, _need(span, 2, "expect zone"))[0]
        elif ty == C.CTA_EXPECT_FLAGS:
            x.flags = _be32(buf, _need(span, 4, "expect flags"))[0]
        elif ty == C.CTA_EXPECT_CLASS:
            x.klass = _be32(buf, _need(span, 4, "expect class"))[0]
        elif ty == C.CTA_EXPECT_NAT:
            for t2, sp2 in _nest(buf, s, n).items():
                if t2 == C.CTA_EXPECT_NAT_DIR:
                    x.nat_dir = _be32(buf, _need(sp2, 4, "expect nat dir"))[0]
                elif t2 == C.CTA_EXPECT_NAT_TUPLE:
                    x.nat_tuple = _decode_tuple(buf, sp2[0], sp2[1], family)
        elif ty == C.CTA_EXPECT_FN:
            x.fn = _string(buf, span)
    return x


def decode_expect(payload) -> Expect:
    """Decode one expectation message payload (starting at ``nfgenmsg``)."""
    if len(payload) < 4:
        raise CodecError("payload shorter than nfgenmsg")
    try:
        return _decode_expect(payload, payload[0])
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise CodecError(f"malformed expectation message: {exc}") from None


def encode_expect(exp: Expect) -> bytes:
    """Encode an :class:`Expect` as CTA_EXPECT_* attributes (no headers)."""
    try:
        return _encode_expect(exp)
    except CodecError:
        raise
    except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise CodecError(f"cannot encode expectation: {exc}") from None


def _encode_expect(x: Expect) -> bytes:
    out = []
    if x.master is not None:
        out.append(encode_tuple(x.master, C.CTA_EXPECT_MASTER))
    if x.tuple is not None:
        out.append(encode_tuple(x.tuple, C.CTA_EXPECT_TUPLE))
    if x.mask is not None:
        mask = x.mask
        if x.tuple is not None and not mask.family:
            # the mask's addresses are written in the expected tuple's family
            mask = Tuple(**{n: getattr(mask, n) for n in Tuple.__slots__})
            mask.family = _family_of(x.tuple)
        out.append(encode_tuple(mask, C.CTA_EXPECT_MASK))
    if x.timeout is not None:
        out.append(_attr(C.CTA_EXPECT_TIMEOUT, _pack_be32(x.timeout)))
    if x.id is not None:
        out.append(_attr(C.CTA_EXPECT_ID, _pack_be32(x.id)))
    if x.helper is not None:
        out.append(_attr(C.CTA_EXPECT_HELP_NAME, x.helper.encode() + b"\0"))
    if x.zone is not None:
        out.append(_attr(C.CTA_EXPECT_ZONE, _pack_be16(x.zone)))
    if x.flags is not None:
        out.append(_attr(C.CTA_EXPECT_FLAGS, _pack_be32(x.flags)))
    if x.klass is not None:
        out.append(_attr(C.CTA_EXPECT_CLASS, _pack_be32(x.klass)))
    if x.nat_dir is not None or x.nat_tuple is not None:
        parts = []
        if x.nat_dir is not None:
            parts.append(_attr(C.CTA_EXPECT_NAT_DIR, _pack_be32(x.nat_dir)))
        if x.nat_tuple is not None:
            parts.append(encode_tuple(x.nat_tuple, C.CTA_EXPECT_NAT_TUPLE))
        out.append(_nested(C.CTA_EXPECT_NAT, *parts))
    if x.fn is not None:
        out.append(_attr(C.CTA_EXPECT_FN, x.fn.encode() + b"\0"))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# statistics

def decode_stats(payload, kind: str = "cpu") -> dict[str, int]:
    """Decode a statistics message payload into ``{name: value}``.

    ``kind`` is ``"cpu"`` (CT_GET_STATS_CPU; adds ``"cpu"`` from res_id), ``"global"``
    (CT_GET_STATS: entries, max_entries) or ``"expect"`` (EXP_GET_STATS_CPU).  Attributes
    are returned in id order; unknown ids of per-CPU stats are named ``unknownN``.
    """
    if len(payload) < 4:
        raise CodecError("payload shorter than nfgenmsg")
    names = {"cpu": C.STATS_CPU_NAMES, "global": C.STATS_GLOBAL_NAMES,
             "expect": C.STATS_EXP_NAMES}.get(kind)
    if names is None:
        raise ValueError(f"unknown statistics kind {kind!r}")
    out: dict[str, int] = {}
    try:
        if kind != "global":
            out["cpu"] = NFGENMSG.unpack_from(payload, 0)[2]
        for ty, span in sorted(_nest(payload, 4, len(payload)).items()):
            if ty == 0:
                continue
            name = names[ty - 1] if ty <= len(names) else f"unknown{ty - len(names)}"
            out[name] = _be32(payload, _need(span, 4, "statistic"))[0]
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise CodecError(f"malformed statistics message: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# netlink framing

def build_message(msg_type: int, flags: int, seq: int, family: int, attrs: bytes = b"",
                  res_id: int = 0, pid: int = 0) -> bytes:
    """A complete netlink message: nlmsghdr + nfgenmsg + ``attrs``."""
    length = NLMSGHDR.size + NFGENMSG.size + len(attrs)
    return (NLMSGHDR.pack(length, msg_type, flags, seq, pid)
            + NFGENMSG.pack(family, C.NFNETLINK_V0, res_id) + attrs)


def iter_messages(buf) -> Iterator[tuple[int, int, int, int, memoryview]]:
    """Split a received buffer into ``(type, flags, seq, pid, payload)`` tuples.

    ``payload`` is a memoryview of the bytes after the nlmsghdr.  A truncated or
    inconsistent header raises :class:`CodecError`.
    """
    view = memoryview(buf)
    end = len(view)
    off = 0
    while off < end:
        if end - off < 16:
            raise CodecError(f"truncated netlink header at offset {off}")
        length, ty, flags, seq, pid = _msghdr(view, off)
        if length < 16 or off + length > end:
            raise CodecError(f"bad netlink message length {length} at offset {off}")
        yield ty, flags, seq, pid, view[off + 16:off + length]
        off += (length + 3) & ~3


def decode_error(payload) -> tuple[int, int]:
    """Decode an NLMSG_ERROR payload: ``(errno, seq of the request)``; errno 0 = ACK."""
    if len(payload) < 4:
        raise CodecError("truncated netlink error message")
    err = -_NLERR.unpack_from(payload, 0)[0]
    seq = _msghdr(payload, 4)[3] if len(payload) >= 20 else 0
    return err, seq





# small public builders for request attributes (used by the library and the CLI)
def nla(ty: int, value: bytes) -> bytes:
    """One netlink attribute (header, value, padding)."""
    return _attr(ty, value)


def nla_be32(ty: int, value: int) -> bytes:
    """A big-endian u32 attribute (CTA_MARK, CTA_STATUS, CTA_ID, ...)."""
    return _attr(ty, _pack_be32(value))


def nla_be16(ty: int, value: int) -> bytes:
    """A big-endian u16 attribute (CTA_ZONE, ...)."""
    return _attr(ty, _pack_be16(value))


def tuple_family(t: Tuple) -> int:
    """The address family of a tuple: its own, else guessed from its addresses (IPv4)."""
    return _family_of(t)
