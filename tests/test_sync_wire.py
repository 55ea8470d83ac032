"""ctools.sync.wire against real C conntrackd datagrams, the spec's worked examples (§2.3,
§2.4, §2.6, §8) and the receiver validation tables (§1.8, §2.7)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctools._speedups import load_ctfast
from ctools.model import Entry, Expect, NatRange, Tuple
from ctools.sync import ProtocolError, StreamDecoder, SyncParams, make_sync, wire
from ctools.sync.core import serial_after, serial_before, serial_between

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus" / "sync"
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# §8.1: the 136-byte payload holding two CT_NEW messages
CAPTURE_81 = h("""
1000 0044 6b06 ca22 000c 0000 c0a8 0a02 0a00 0102 0008 0005 0000 018e 0005 0002 0600 0000
0008 0003 afc9 1f90 0005 0004 0300 0000 0008 0006 0006 9779 0008 0007 0000 0000
1000 0044 6b06 ca23 000c 0000 c0a8 0a02 0a00 0102 0008 0005 0000 018e 0005 0002 0600 0000
0008 0003 afc8 1f90 0005 0004 0700 0000 0008 0006 0000 0054 0008 0007 0000 0000""")

# §2.6: EXP_NEW for a passive FTP data channel, with NAT
EXP_26 = h("""
000c0000 c0a80a02 0a000163  00050002 06000000  00080003 b0420849
000c0004 c0a80a02 0a000163  00050006 06000000  00080007 0000c350
000c0008 ffffffff ffffffff  0005000a 06000000  0008000b 0000ffff
0008000c 0000012c  0008000d 00000000  0008000e 00000000
000c000f 00000000 00000000  00050011 06000000  00080010 c3500000  00080012 00000000
00080013 66747000  00160014 6e61742d666f6c6c6f772d6d617374657200 0000""")


def messages(buf: bytes):
    out = []
    for item in wire.split_messages(buf):
        assert not isinstance(item, ProtocolError), item
        header, off = item
        out.append((header, buf[off:off + header.length]))
    return out


# ---------------------------------------------------------------------------------------------
# Real captures
# ---------------------------------------------------------------------------------------------

def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


def test_corpus_is_present():
    files = corpus_files()
    assert len(files) > 500
    scenarios = {f.name.rsplit("-", 2)[0] for f in files}
    assert {"ftfw", "ftfw-loss", "ftfw-wt", "alarm", "notrack"} <= scenarios


def test_every_captured_message_decodes_and_reencodes_byte_identically():
    kinds: dict[str, int] = {}
    for f in corpus_files():
        opts = wire.EncodeOptions(tcp_window_tracking=f.name.startswith("ftfw-wt"))
        for header, msg in messages(f.read_bytes()):
            if header.is_data:
                kind, obj = wire.decode_data(header, msg)
                again = wire.encode_message(kind, obj, header.seq, header.flags, opts)
                assert again == msg, (f.name, header)
                kinds[wire.TYPE_NAMES[header.type]] = kinds.get(wire.TYPE_NAMES[header.type], 0) + 1
            else:
                assert header.type == wire.CTL
                again = wire.encode_control(header.flags, header.seq, header.frm, header.to)
                assert again == msg, (f.name, header)
                kinds[f"ctl{header.flags:#x}"] = kinds.get(f"ctl{header.flags:#x}", 0) + 1
    # the corpus covers data, ACK, NACK, RESYNC, ALIVE and the HELLO handshake
    assert kinds["CT_NEW"] > 100 and kinds["CT_DEL"] >= 1
    for ctl in ("ctl0x8", "ctl0x4", "ctl0x2", "ctl0x10", "ctl0x30", "ctl0x48", "ctl0x68"):
        assert ctl in kinds, ctl


def test_captured_datagrams_respect_the_mtu_packing_rule():
    sizes = [len(f.read_bytes()) for f in corpus_files()]
    assert max(sizes) <= 1500 - 28 - 1
    assert any(s > 1400 for s in sizes)          # bulk sends fill the buffer


def test_our_bulk_send_packs_like_the_c_sender():
    """Re-send the entries of one captured C bulk datagram-stream through our FT-FW sender: the
    datagram boundaries are the same (strict '<' test against MTU - 28)."""
    datagrams = [f.read_bytes() for f in corpus_files() if f.name.startswith("notrack-")
                 and f.name.endswith("-ab.bin")]
    big = [d for d in datagrams if len(d) > 1000]
    assert big
    msgs = messages(big[0])
    first_seq = msgs[0][0].seq
    core = make_sync(SyncParams("notrack", initial_seq=first_seq), 0.0)
    for header, msg in msgs:
        kind, obj = wire.decode_data(header, msg)
        core.local_update(kind, obj, 0.0)
    out = core.outgoing(0.0)
    assert out[0] == big[0][:len(out[0])]
    assert len(out[0]) == len(big[0])


# ---------------------------------------------------------------------------------------------
# Worked examples of the spec
# ---------------------------------------------------------------------------------------------

def test_worked_example_8_1_ct_new_pair():
    (h1, m1), (h2, m2) = messages(CAPTURE_81)
    assert (h1.version, h1.type, h1.flags, h1.length, h1.seq) == (1, wire.CT_NEW, 0, 68, 1795607074)
    kind, e = wire.decode_data(h1, m1)
    assert kind == "new"
    assert (e.orig.family, e.orig.src, e.orig.dst) == (AF_INET, "192.168.10.2", "10.0.1.2")
    assert (e.orig.proto, e.orig.sport, e.orig.dport) == (6, 45001, 8080)
    assert (e.status, e.tcp_state, e.timeout, e.mark) == (0x18E, 3, 431993, 0)
    _, e2 = wire.decode_data(h2, m2)
    assert (h2.seq, e2.orig.sport, e2.tcp_state, e2.timeout) == (1795607075, 45000, 7, 84)
    assert wire.encode_message("new", e, h1.seq) + wire.encode_message("new", e2, h2.seq) \
        == CAPTURE_81


def test_worked_example_8_1_window_tracking_and_commit_timeout():
    (h1, m1), _ = messages(CAPTURE_81)
    _, e = wire.decode_data(h1, m1)
    e.tcp_wscale_orig = e.tcp_wscale_reply = 10
    wt = wire.encode_ct_payload(e, wire.EncodeOptions(tcp_window_tracking=True))
    assert h("00050004 03000000 00050019 0a000000 0005001a 0a000000 00080006") in wt
    ct = wire.encode_ct_payload(e, wire.EncodeOptions(commit_timeout=180))
    assert all(spec.name != "TIMEOUT" for spec, _ in wire.iter_attrs(ct, wire.CT_ATTRS))


@pytest.mark.parametrize("raw,flags,frm,to,seq", [
    ("1a08 0010 6b06c9c7 6b06c9c7 6b06c9c7", wire.F_ACK, 1795606983, 1795606983, 1795606983),
    ("1a10 0008 6b06ca1a", wire.F_ALIVE, None, None, 1795607066),
    ("1a30 0008 6b06c9c1", wire.F_ALIVE | wire.F_HELLO, None, None, 0x6B06C9C1),
    ("1a28 0010 6b06ca1e 6b06ca1d 6b06ca1d", wire.F_ACK | wire.F_HELLO, 0x6B06CA1D, 0x6B06CA1D,
     0x6B06CA1E),
    ("1a04 0010 6b06ca77 6b06ca7d 6b06ca89", wire.F_NACK, 1795607165, 1795607177, 0x6B06CA77),
    ("1a02 0010 6b06ca21 00000000 00000000", wire.F_RESYNC, 0, 0, 0x6B06CA21),
])
def test_worked_control_messages(raw, flags, frm, to, seq):
    buf = h(raw)
    ((header, msg),) = messages(buf)
    assert (header.type, header.flags, header.seq, header.frm, header.to) == (
        wire.CTL, flags, seq, frm, to)
    assert wire.encode_control(flags, seq, frm, to) == buf


def test_worked_encodings_2_3():
    e = Entry(orig=Tuple(AF_INET, "192.168.10.2", "10.0.1.2", 6, 45001, 8080),
              status=0x18E, tcp_state=3, timeout=431993, mark=0x1234, zone=7,
              helper="ftp", labels=1 << 3)
    p = wire.encode_ct_payload(e)
    for part in ("000c0000 c0a80a02 0a000102", "00080005 0000018e", "00050002 06000000",
                 "00080003 afc91f90", "00050004 03000000", "00080006 00069779",
                 "00080007 00001234", "00060020 00070000", "0008001b 66747000",
                 "0014001c 00000008 00000000 00000000 00000000"):
        assert h(part) in p, part
    e6 = Entry(orig=Tuple(AF_INET6, "fd00:10::2", "fd00:1::2", 17, 1, 2),
               reply=Tuple(AF_INET6, "fd00:1::2", "fd00:10::99", 17, 2, 1), status=0x80)
    p6 = wire.encode_ct_payload(e6)
    assert h("00240001") + socket.inet_pton(AF_INET6, "fd00:10::2") in p6
    assert h("0014001d fd000010 00000000 00000000 00000099") in p6
    back = wire.decode_ct_payload(p6)
    assert back.nat_src == NatRange("fd00:10::99", "fd00:10::99", None, None)


def test_host_order_fields_2_4():
    icmp = Entry(orig=Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 1, icmp_type=8, icmp_code=0,
                            icmp_id=0x1234), status=0)
    assert h("00060018 34120000") in wire.encode_ct_payload(icmp)
    nat = Entry(orig=Tuple(AF_INET, "192.168.10.2", "10.0.1.2", 6, 1000, 80),
                reply=Tuple(AF_INET, "10.0.2.7", "203.0.113.1", 6, 21, 40008),
                status=0x180)
    p = wire.encode_ct_payload(nat)
    assert h("0008000c cb007101") in p        # SNAT_IPV4 = reply dst
    assert h("0008000d 0a000207") in p        # DNAT_IPV4 = reply src
    assert h("0006000e 489c0000") in p        # SPAT 40008, little-endian
    assert h("0006000f 15000000") in p        # DPAT 21, little-endian
    back = wire.decode_ct_payload(p)
    assert back.nat_src == NatRange("203.0.113.1", "203.0.113.1", 40008, 40008)
    assert back.nat_dst == NatRange("10.0.2.7", "10.0.2.7", 21, 21)
    assert wire.encode_ct_payload(back) == p


def test_icmp_nat_quirk_2_5_emits_zero_ports():
    """With both NAT_DONE bits, an ICMP flow gets SPAT/DPAT = 0 (raw-field comparison)."""
    e = Entry(orig=Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 1, icmp_type=8, icmp_code=0, icmp_id=7),
              reply=Tuple(AF_INET, "2.2.2.2", "1.1.1.1", 1, icmp_type=0, icmp_code=0,
                          icmp_id=7), status=0x18E)
    names = [s.name for s, _ in wire.iter_attrs(wire.encode_ct_payload(e), wire.CT_ATTRS)]
    assert "SPAT_PORT" in names and "DPAT_PORT" in names
    assert "SNAT_IPV4" not in names and "DNAT_IPV4" not in names


def test_expectation_example_2_6():
    x = wire.decode_exp_payload(EXP_26)
    assert (x.master.src, x.master.dst, x.master.proto, x.master.sport, x.master.dport) == (
        "192.168.10.2", "10.0.1.99", 6, 45122, 2121)
    assert (x.tuple.sport, x.tuple.dport) == (0, 50000)
    assert (x.mask.src, x.mask.sport, x.mask.dport) == ("255.255.255.255", 0, 0xFFFF)
    assert (x.timeout, x.flags, x.klass, x.nat_dir) == (300, 0, 0, 0)
    assert (x.nat_tuple.proto, x.nat_tuple.sport) == (6, 50000)
    assert (x.helper, x.fn) == ("ftp", "nat-follow-master")
    assert wire.encode_exp_payload(x) == EXP_26
    msg = wire.encode_message("new", x, 5)
    assert msg[:4] == h("13 00 00 b8")                       # EXP_NEW, 184 bytes
    kind, again = wire.decode_data(wire.Header(1, 3, 0, 184, 5), msg)
    assert kind == "new" and again == x


# ---------------------------------------------------------------------------------------------
# Receiver validation (§1.8 table, §2.7 rules)
# ---------------------------------------------------------------------------------------------

def tlv(attr: int, payload: bytes, nta_len: int | None = None) -> bytes:
    n = nta_len if nta_len is not None else 4 + len(payload)
    out = n.to_bytes(2, "big") + attr.to_bytes(2, "big") + payload
    return out + b"\0" * (-len(out) % 4)


def ct_new(*attrs: bytes, seq: int = 100, extra: bytes = b"") -> bytes:
    body = b"".join(attrs) + extra
    return bytes((0x10, 0)) + (8 + len(body)).to_bytes(2, "big") + seq.to_bytes(4, "big") + body


BASE = (tlv(0, socket.inet_aton("1.1.1.1") + socket.inet_aton("2.2.2.2")), tlv(2, b"\x11"),
        tlv(3, h("00010002")))


@pytest.mark.parametrize("datagram,counter", [
    (h("2a10 0008 00000001"), "bad_version"),
    (h("1a10 00"), "truncated"),
    (h("1a10 0000 00000001"), "bad_size"),
    (h("1a10 00c8 00000001 00000000 00000000"), "bad_size"),
    (h("1a08 0008 00000001"), "truncated"),
    (h("1a08 0008 00000001 00000001 00000001"), "bad_size"),
    (h("1700 0008 00000001"), "bad_header"),
    (ct_new(*BASE, tlv(5, b"\0\0", nta_len=6)), "bad_payload"),
    (ct_new(*BASE, tlv(40, b"\0\0\0\0")), "bad_payload"),
    (ct_new(*BASE, tlv(27, b"abcdefghijklm")), "bad_payload"),     # nta_len 17
    (ct_new(*BASE, tlv(0, b"\0" * 8, nta_len=200)), "bad_payload"),
])
@pytest.mark.parametrize("mode", ["ftfw", "notrack"])
def test_receiver_counters_match_the_c_daemon(datagram, counter, mode):
    core = make_sync(SyncParams(mode, initial_seq=1), 0.0)
    events = core.receive(datagram, 0.0)
    assert not any(type(ev).__name__ == "Apply" for ev in events)
    stats = core.stats.as_dict()
    assert stats[counter] == 1 and stats["malformed"] == 1, stats


def test_garbage_after_last_attribute_and_empty_labels_are_accepted():
    core = make_sync(SyncParams("ftfw", initial_seq=1), 0.0)
    dgram = ct_new(*BASE, tlv(28, b""), extra=b"\xde\xad\xbe\xef")
    events = core.receive(dgram, 0.0)
    applied = [ev for ev in events if type(ev).__name__ == "Apply"]
    assert len(applied) == 1 and applied[0].obj.labels is None
    assert core.stats.malformed == 0


def test_helper_of_eleven_characters_is_the_longest_accepted():
    e = wire.decode_ct_payload(b"".join(BASE) + tlv(27, b"abcdefghijk\0"))
    assert e.helper == "abcdefghijk"
    with pytest.raises(ProtocolError) as exc:
        wire.decode_ct_payload(b"".join(BASE) + tlv(27, b"abcdefghijkl\0"))
    assert exc.value.counter == "bad_payload"


def test_a_bad_payload_still_counts_for_sequence_tracking():
    core = make_sync(SyncParams("ftfw", initial_seq=1, ack_window=2), 0.0)
    core.receive(ct_new(*BASE, seq=7), 0.0)
    core.receive(ct_new(*BASE, tlv(40, b"\0\0\0\0"), seq=8), 0.0)
    assert core.stats.bad_payload == 1
    acks = [m for d in core.outgoing(0.0) for m in messages(d) if m[0].flags & wire.F_ACK]
    assert [(a.frm, a.to) for a, _ in acks] == [(7, 8)]


def test_serial_arithmetic():
    assert serial_before(0xFFFFFFFF, 0) and serial_after(0, 0xFFFFFFFF)
    assert not serial_before(5, 5)
    assert serial_between(1, 0xFFFFFFFE, 3) and not serial_between(4, 0xFFFFFFFE, 3)


# ---------------------------------------------------------------------------------------------
# Stream framing
# ---------------------------------------------------------------------------------------------

def test_stream_decoder_reassembles_any_split():
    stream = b"".join(f.read_bytes() for f in corpus_files()[:40])
    for step in (1, 3, 7, 100, 1499):
        dec = StreamDecoder()
        chunks = []
        for i in range(0, len(stream), step):
            chunks.extend(dec.feed(stream[i:i + step]))
        assert b"".join(chunks) == stream and not dec.broken
        assert all(not isinstance(x, ProtocolError) for c in chunks
                   for x in wire.split_messages(c))


def test_stream_decoder_reports_lost_framing():
    dec = StreamDecoder()
    good = h("1a10 0008 00000001")
    out = dec.feed(good + h("1a10 0000 00000002") + good)
    assert dec.broken and out[0] == good
    assert dec.feed(good) == []


# ---------------------------------------------------------------------------------------------
# Property: encode -> decode -> encode is the identity on the wire
# ---------------------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
# inet_ntop spelling (what the decoder produces), e.g. ::ffff:0.0.0.0 rather than ::ffff:0:0
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(AF_INET6, a.packed))
u8, u16, u32 = (st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))


@st.composite
def entries(draw):
    v6 = draw(st.booleans())
    fam, addr = (AF_INET6, ipv6) if v6 else (AF_INET, ipv4)
    proto = draw(st.sampled_from([6, 17, 1 if not v6 else 58, 132, 33, 47, 136]))
    o = Tuple(fam, draw(addr), draw(addr), proto)
    e = Entry(orig=o, status=draw(st.none() | u32))
    if proto in (6, 17, 132, 33):
        o.sport, o.dport = draw(u16), draw(u16)
    if proto in (1, 58) and draw(st.booleans()):
        o.icmp_type, o.icmp_code, o.icmp_id = draw(u8), draw(u8), draw(u16)
    if proto == 6 and draw(st.booleans()):
        e.tcp_state = draw(st.integers(0, 9))
    if proto == 132 and draw(st.booleans()):
        e.sctp_state, e.sctp_vtag_orig, e.sctp_vtag_reply = draw(u8), draw(u32), draw(u32)
    if proto == 33 and draw(st.booleans()):
        e.dccp_state, e.dccp_role = draw(u8), draw(u8)
    e.timeout = draw(st.none() | u32)
    e.mark = draw(st.none() | u32)
    if draw(st.booleans()):
        e.nat_src = NatRange(*(lambda a, p: (a, a, p, p))(draw(addr), draw(u16)))
    if draw(st.booleans()):
        e.nat_dst = NatRange(*(lambda a, p: (a, a, p, p))(draw(addr), draw(u16)))
    if draw(st.booleans()):
        e.seq_adj_orig = tuple(draw(u32) for _ in range(3))
        e.seq_adj_reply = tuple(draw(u32) for _ in range(3))
    e.helper = draw(st.none() | st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=11))
    e.labels = draw(st.none() | st.integers(1, (1 << 128) - 1))
    e.synproxy = draw(st.none() | st.tuples(u32, u32, u32))
    e.zone = draw(st.none() | st.integers(1, 0xFFFF))
    if draw(st.booleans()):
        e.master = Tuple(fam, draw(addr), draw(addr), 6, draw(u16), draw(u16))
    return e


@settings(max_examples=300, deadline=None)
@given(entries(), st.sampled_from(["new", "upd", "del"]), u32,
       st.sampled_from([0, wire.F_HELLO, wire.F_HELLO_BACK]))
def test_entry_round_trip(e, kind, seq, flags):
    msg = wire.encode_message(kind, e, seq, flags)
    ((header, raw),) = messages(msg)
    assert (header.seq, header.flags, header.length) == (seq, flags, len(msg))
    k2, back = wire.decode_data(header, raw)
    assert k2 == kind
    assert wire.encode_message(kind, back, seq, flags) == msg
    assert back.orig == e.orig and back.status == e.status and back.zone == e.zone


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_raises_only_protocol_error(data):
    for item in wire.split_messages(data):
        if isinstance(item, ProtocolError):
            continue
        header, off = item
        try:
            wire.decode_data(header, data[off:off + header.length])
        except ProtocolError:
            pass
    for table_decoder in (wire.decode_ct_payload, wire.decode_exp_payload):
        try:
            table_decoder(data)
        except ProtocolError:
            pass


def test_unencodable_entry_is_a_value_error():
    with pytest.raises(ValueError):
        wire.encode_ct_payload(Entry(orig=Tuple()))
    with pytest.raises(ValueError):
        wire.encode_exp_payload(Expect())


# -- the receive fast path: payloads checked and keyed without decoding (wire.scan_ct_payload)

@st.composite
def entry_pairs(draw):
    """Two entries that often share their identity (same original tuple and zone)."""
    a, b = draw(entries()), draw(entries())
    if draw(st.booleans()):
        b.orig, b.zone = a.orig, a.zone
    return a, b


@settings(max_examples=300, deadline=None)
@given(entry_pairs())
def test_scanned_key_identifies_exactly_the_decoded_flow(pair):
    pa, pb = (wire.encode_ct_payload(e) for e in pair)
    ka, kb = wire.scan_ct_payload(pa), wire.scan_ct_payload(pb)
    da, db = wire.decode_ct_payload(pa), wire.decode_ct_payload(pb)
    assert (ka == kb) == (wire.obj_key(da) == wire.obj_key(db))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120) | entries().map(wire.encode_ct_payload).flatmap(
    lambda p: st.tuples(st.integers(0, len(p)), st.binary(max_size=6)).map(
        lambda cut: p[:cut[0]] + cut[1] + p[cut[0] + len(cut[1]):])))
def test_scan_rejects_exactly_what_decode_rejects(payload):
    try:
        wire.decode_ct_payload(payload)
        decoded = None
    except ProtocolError as exc:
        decoded = exc
    try:
        wire.scan_ct_payload(payload)
        scanned = None
    except ProtocolError as exc:
        scanned = exc
    assert (decoded is None) == (scanned is None)
    if decoded is not None:
        assert (decoded.counter, str(decoded)) == (scanned.counter, str(scanned))


def _attrs(payload: bytes) -> dict:
    return {spec.id: raw for spec, raw in wire.iter_attrs(payload, wire.CT_ATTRS)}


@settings(max_examples=300, deadline=None)
@given(entry_pairs())
def test_merge_takes_each_attribute_from_the_update_else_the_cached_state(pair):
    old, new = (wire.encode_ct_payload(e) for e in pair)
    merged = wire.merge_ct_payload(old, new)
    want = _attrs(old)
    want.update(_attrs(new))
    assert _attrs(merged) == want
    wire.scan_ct_payload(merged)            # still a valid payload
    assert wire.merge_ct_payload(new, new) == new


_c_decode = getattr(load_ctfast(), "decode_sync_ct", None)


def _python_or_none(fn, payload: bytes):
    """What the Python codec returns, or None where it raises (the C paths' convention)."""
    try:
        return fn(payload)
    except ProtocolError:
        return None


def _typed(v) -> tuple:
    # the address family may be socket.AF_INET (an int enum) or the plain int
    return (int if isinstance(v, int) else type(v), v)


def _fields(e: Entry) -> dict:
    out = {n: getattr(e, n) for n in Entry.__slots__}
    for name in ("orig", "reply", "master", "nat_src", "nat_dst"):
        v = out[name]
        if v is not None:
            out[name] = {n: _typed(getattr(v, n)) for n in v.__slots__}
    return {n: _typed(v) for n, v in out.items()}


@pytest.mark.skipif(_c_decode is None, reason="C accelerator not built")
@settings(max_examples=400, deadline=None)
@given(entries() | st.binary(max_size=80))
def test_c_decoder_gives_the_python_entry_or_steps_aside(e):
    payload = e if isinstance(e, bytes) else wire.encode_ct_payload(e)
    fast = _c_decode(payload)
    slow = _python_or_none(wire.decode_ct_payload, payload)
    if slow is None:
        assert fast is None
    elif fast is not None:
        assert _fields(fast) == _fields(slow)


@pytest.mark.skipif(_c_decode is None, reason="C accelerator not built")
def test_c_decoder_takes_the_common_flows():
    nat4 = Entry(orig=Tuple(AF_INET, "10.0.0.1", "192.0.2.1", 6, 40000, 443), status=0x1BE,
                 timeout=431999, mark=7, tcp_state=3, tcp_wscale_orig=7, tcp_wscale_reply=9,
                 nat_src=NatRange("203.0.113.9", "203.0.113.9", 61000, 61000), zone=3)
    icmp6 = Entry(orig=Tuple(AF_INET6, "2001:db8::1", "2001:db8::2", 58, icmp_type=128,
                             icmp_code=0, icmp_id=77), timeout=30, synproxy=(1, 2, 3),
                  nat_dst=NatRange("2001:db8::9", "2001:db8::9", None, None))
    for e in (nat4, icmp6):
        p = wire.encode_ct_payload(e)
        fast = _c_decode(p)
        assert fast is not None and _fields(fast) == _fields(wire.decode_ct_payload(p))


_c_scan = getattr(load_ctfast(), "scan_sync_ct", None)


@pytest.mark.skipif(_c_scan is None, reason="C accelerator not built")
@settings(max_examples=400, deadline=None)
@given(entries().map(wire.encode_ct_payload) | st.binary(max_size=80) | entries().map(
    wire.encode_ct_payload).flatmap(lambda p: st.integers(0, len(p)).map(
        lambda i: p[:i] + b"\x00\x05" + p[i + 2:])))
def test_c_scan_gives_the_python_key_or_leaves_the_error_to_python(payload):
    assert _c_scan(payload) == _python_or_none(wire.scan_ct_payload_py, payload)


_c_encode = getattr(load_ctfast(), "encode_sync_ct", None)


@pytest.mark.skipif(_c_encode is None, reason="C accelerator not built")
@settings(max_examples=400, deadline=None)
@given(entries(), st.booleans(), st.sampled_from([None, 0, 120]), st.booleans())
def test_c_encoder_gives_the_python_bytes_or_steps_aside(e, window, commit_timeout, common):
    if common:      # make the ordinary flow the C path takes, keeping some of the draw
        e.orig.family, e.orig.src, e.orig.dst = AF_INET, "10.1.2.3", "192.0.2.9"
        e.orig.proto = 6 if e.status is None or e.status & 1 else 17
        e.orig.sport = e.orig.sport or 0
        for name in ("master", "nat_src", "nat_dst", "seq_adj_orig", "helper", "labels",
                     "synproxy", "zone"):
            setattr(e, name, None)
    opts = wire.EncodeOptions(window, commit_timeout)
    fast = _c_encode(e, window, bool(commit_timeout))
    slow = _python_or_none(lambda _p: wire.encode_ct_payload_py(e, opts), b"")
    if fast is not None:
        assert fast == slow
    else:
        assert not common or window or e.orig.dport is None and e.orig.sport is None


@pytest.mark.skipif(_c_encode is None, reason="C accelerator not built")
def test_c_encoder_takes_cached_internal_flows():
    from ctools.daemon.cache import InternalCache

    o = Tuple(AF_INET, "10.0.0.1", "192.0.2.1", 6, 40000, 443)
    cache = InternalCache()
    rec = cache.add(Entry(orig=o, reply=Tuple(AF_INET, "192.0.2.1", "10.0.0.1", 6, 443, 40000),
                          status=0x18E, timeout=431999, mark=0, tcp_state=3), 0.0).entry
    fast = _c_encode(rec, False, False)
    assert fast is not None and fast == wire.encode_ct_payload_py(rec)
