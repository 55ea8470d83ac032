"""Property tests of the pure ctnetlink codec: round trips and "decode or CodecError"."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctools.model import Entry, Expect, NatRange, Tuple
from ctools.netlink import CodecError, codec
from ctools.netlink import constants as C

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
name = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               min_size=1, max_size=20)

PORT_PROTOS = (6, 17, 136, 132, 33, 47)  # tcp udp udplite sctp dccp gre(keys)


def opt(strategy):
    return st.none() | strategy


def address(family: int):
    # text as inet_ntop writes it (what the kernel's bytes decode to, and what the C tool
    # prints), e.g. "::0.1.0.0" rather than ipaddress' "::1:0"
    size = 4 if family == 2 else 16
    return st.binary(min_size=size, max_size=size).map(lambda b: socket.inet_ntop(family, b))


@st.composite
def tuples(draw, family: int, with_zone: bool = True) -> Tuple:
    t = Tuple(family, draw(opt(address(family))), draw(opt(address(family))))
    kind = draw(st.sampled_from(("ports", "icmp", "other", "none")))
    if kind == "ports":
        t.proto = draw(st.sampled_from(PORT_PROTOS))
        t.sport = draw(opt(u16))
        t.dport = draw(opt(u16))
    elif kind == "icmp":
        t.proto = 1 if family == 2 else 58
        t.icmp_type = draw(opt(u8))
        t.icmp_code = draw(opt(u8))
        t.icmp_id = draw(opt(u16))
    elif kind == "other":
        t.proto = draw(u8)
    if with_zone:
        t.zone = draw(opt(u16))
    return t


@st.composite
def nat_ranges(draw, family: int) -> NatRange:
    return NatRange(draw(opt(address(family))), draw(opt(address(family))),
                    draw(opt(u16)), draw(opt(u16)))


def triplet():
    return st.tuples(opt(u32), opt(u32), opt(u32))


@st.composite
def entries(draw) -> tuple[int, Entry]:
    family = draw(st.sampled_from((2, 10)))
    e = Entry(draw(opt(tuples(family))), draw(opt(tuples(family))))
    e.master = draw(opt(tuples(family)))
    for field, strategy in (
        ("status", u32), ("timeout", u32), ("mark", u32), ("mark_mask", u32),
        ("secmark", u32), ("secctx", name), ("zone", u16), ("use", u32), ("id", u32),
        ("tcp_state", u8), ("tcp_wscale_orig", u8), ("tcp_wscale_reply", u8),
        ("tcp_flags_orig", st.tuples(u8, u8)), ("tcp_flags_reply", st.tuples(u8, u8)),
        ("sctp_state", u8), ("sctp_vtag_orig", u32), ("sctp_vtag_reply", u32),
        ("dccp_state", u8), ("dccp_role", u8), ("dccp_handshake_seq", u64),
        ("helper", name), ("nat_src", nat_ranges(family)), ("nat_dst", nat_ranges(family)),
        ("seq_adj_orig", triplet()), ("seq_adj_reply", triplet()),
        ("timestamp_start", u64), ("timestamp_stop", u64), ("timestamp_event", u64),
        ("labels", st.integers(0, (1 << 128) - 1)),
        ("labels_mask", st.integers(0, (1 << 128) - 1)),
        ("synproxy", triplet()), ("status_mask", u32),
    ):
        setattr(e, field, draw(opt(strategy)))
    # counters travel in pairs inside one nest; each half may be absent
    e.orig_packets, e.orig_bytes = draw(st.tuples(opt(u64), opt(u64)))
    e.reply_packets, e.reply_bytes = draw(st.tuples(opt(u64), opt(u64)))
    return family, e


def message(family: int, attrs: bytes) -> bytes:
    return codec.NFGENMSG.pack(family, 0, 0) + attrs


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(entries())
def test_entry_round_trip(fe):
    family, entry = fe
    data = codec.encode_entry(entry, readonly=True)
    decoded = codec.decode_entry(message(family, data))
    assert decoded == entry, (decoded.as_dict(), entry.as_dict())
    # and through a whole netlink message, as a socket would see it
    msg = codec.build_message(C.CT_NEW, C.NLM_F_CREATE, 7, family, data)
    [(ty, flags, seq, pid, payload)] = list(codec.iter_messages(msg))
    assert (ty, flags, seq, pid) == (C.CT_NEW, C.NLM_F_CREATE, 7, 0)
    assert codec.decode_entry(payload) == entry


@given(entries())
def test_request_encoding_omits_kernel_only_attributes(fe):
    family, entry = fe
    decoded = codec.decode_entry(message(family, codec.encode_entry(entry)))
    for field in ("use", "orig_packets", "orig_bytes", "reply_packets", "reply_bytes",
                  "timestamp_start", "timestamp_stop", "timestamp_event", "secctx",
                  "secmark"):
        assert getattr(decoded, field) is None
    update = codec.decode_entry(message(family, codec.encode_entry(entry, for_update=True)))
    assert update.reply is None and update.nat_src is None and update.master is None
    assert update.orig == entry.orig and update.mark == entry.mark


@st.composite
def expects(draw) -> tuple[int, Expect]:
    family = draw(st.sampled_from((2, 10)))
    x = Expect()
    x.master = draw(opt(tuples(family, with_zone=False)))
    x.tuple = draw(opt(tuples(family, with_zone=False)))
    x.mask = draw(opt(tuples(family, with_zone=False)))
    x.nat_tuple = draw(opt(tuples(family, with_zone=False)))
    for field, strategy in (("timeout", u32), ("id", u32), ("helper", name), ("zone", u16),
                            ("flags", u32), ("klass", u32), ("nat_dir", u32), ("fn", name)):
        setattr(x, field, draw(opt(strategy)))
    return family, x


@settings(max_examples=300)
@given(expects())
def test_expect_round_trip(fx):
    family, exp = fx
    assert codec.decode_expect(message(family, codec.encode_expect(exp))) == exp


@given(st.sampled_from(("cpu", "expect", "global")), u16,
       st.lists(st.tuples(st.integers(1, 20), u32), max_size=20))
def test_stats_round_trip(kind, cpu, values):
    values = dict(values)
    attrs = b"".join(codec.nla_be32(ty, v) for ty, v in values.items())
    out = codec.decode_stats(codec.NFGENMSG.pack(0, 0, cpu) + attrs, kind)
    names = {"cpu": C.STATS_CPU_NAMES, "expect": C.STATS_EXP_NAMES,
             "global": C.STATS_GLOBAL_NAMES}[kind]
    expected = {} if kind == "global" else {"cpu": cpu}
    for ty in sorted(values):
        key = names[ty - 1] if ty <= len(names) else f"unknown{ty - len(names)}"
        expected[key] = values[ty]
    assert out == expected
    assert list(out) == list(expected)  # id order, as `conntrack -S` prints them


def test_stats_names_match_the_c_tool():
    assert C.STATS_CPU_NAMES[0] == "searched" and C.STATS_CPU_NAMES[-1] == "chaintoolong"
    assert len(C.STATS_CPU_NAMES) == 15


@given(st.lists(st.tuples(u16, u16, u32, u32, st.binary(max_size=40)), max_size=5))
def test_message_framing_round_trip(msgs):
    buf = b""
    for ty, flags, seq, pid, body in msgs:
        m = struct.pack("=IHHII", 16 + len(body), ty, flags, seq, pid) + body
        buf += m + b"\0" * (-len(m) & 3)
    out = [(t, f, s, p, bytes(pl)) for t, f, s, p, pl in codec.iter_messages(buf)]
    assert out == list(msgs)


DECODERS = (
    codec.decode_entry,
    codec.decode_expect,
    lambda b: codec.decode_stats(b, "cpu"),
    lambda b: codec.decode_stats(b, "global"),
    lambda b: list(codec.iter_messages(b)),
    codec.decode_tuple,
)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_codec_error(data):
    for decode in DECODERS:
        try:
            decode(data)
        except CodecError:
            pass


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.data())
def test_corrupted_messages_decode_or_raise_codec_error(fe, data):
    # random damage to valid encodings reaches deeper than random bytes
    family, entry = fe
    buf = bytearray(message(family, codec.encode_entry(entry, readonly=True)))
    for _ in range(data.draw(st.integers(1, 4))):
        if not buf:
            break
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(u8)
    cut = data.draw(st.integers(0, len(buf)))
    for payload in (bytes(buf), bytes(buf[:cut])):
        for decode in (codec.decode_entry, codec.decode_expect):
            try:
                decode(payload)
            except CodecError:
                pass


def test_codec_error_is_a_value_error():
    with pytest.raises(ValueError):
        codec.decode_entry(b"\x02")


def test_bad_values_raise_codec_error_when_encoding():
    with pytest.raises(CodecError):
        codec.encode_entry(Entry(Tuple(2, "not-an-address", "1.2.3.4", 6)))
    with pytest.raises(CodecError):
        codec.encode_entry(Entry(labels=1 << 130))
    with pytest.raises(CodecError):
        codec.encode_entry(Entry(mark=-1))


def test_known_kernel_bytes():
    # an entry as kernel 6.18 sent it for `conntrack -I -p udp -s 9.9.9.9 -d 8.8.8.8
    # --sport 1 --dport 2 -t 33 -m 5`, dumped a second later (nests carry NLA_F_NESTED)
    raw = bytes.fromhex(
        "020000003400018014000180080001000909090908000200080808081c0002800500010011000000"
        "06000200000100000600030000020000340002801400018008000100080808080800020009090909"
        "1c000280050001001100000006000200000200000600030000010000080003000000000808000800"
        "0000000508000c002adc5a7408000b000000000108000700000000201c0018800800010000000000"
        "08000200000000000800030000000000")
    e = codec.decode_entry(raw)
    assert (e.orig.src, e.orig.dst, e.orig.proto, e.orig.sport, e.orig.dport) == (
        "9.9.9.9", "8.8.8.8", 17, 1, 2)
    assert (e.reply.src, e.reply.sport) == ("8.8.8.8", 2)
    assert (e.status, e.timeout, e.mark, e.use) == (8, 32, 5, 1)
    assert e.id == 0x2ADC5A74
    assert e.synproxy == (0, 0, 0)


@given(tuples(2), st.sampled_from((C.CTA_TUPLE_ORIG, C.CTA_TUPLE_REPLY, C.CTA_EXPECT_MASK)))
def test_fast_tuple_encoding_is_the_general_one(t, ty):
    assert codec.encode_tuple(t, ty) == codec._encode_tuple_general(t, ty, 2)


def test_fast_scalar_attributes_are_the_general_ones():
    assert codec._be32_attr(C.CTA_MARK, 0x01020304) == codec.nla(C.CTA_MARK, bytes([1, 2, 3, 4]))
    assert codec._U8_ATTR(codec._L5, codec._h(1), 7) == codec.nla(1, b"\x07")


@given(st.integers(0, 4095), u32, u16)
def test_error_message_round_trip(err, seq, ty):
    # NLMSG_ERROR payload: -errno, then (a capped copy of) the request's header
    payload = struct.pack("=i", -err) + struct.pack("=IHHII", 16, ty, 0, seq, 0)
    assert codec.decode_error(payload) == (err, seq)
    with pytest.raises(CodecError):
        codec.decode_error(b"\x01")
