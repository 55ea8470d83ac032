"""Harness: the sync wire decoder and the TCP stream framing on arbitrary bytes.

Invariants:
* ``split_messages`` yields only framed headers or our one error type ``ProtocolError`` (and
  stops after a framing error); ``decode_data`` on every framed data message returns an
  object or raises ``ProtocolError`` — nothing else escapes;
* a decoded object survives a round trip: ``encode_message`` (with the options that emit
  every attribute) then ``decode_data`` gives the same kind, addresses and protocol, and a
  second round trip changes nothing;
* ``StreamDecoder`` invents nothing: fed the input in pieces, the chunks it returns are the
  input's own bytes, in order, each made of whole messages.

(The receivers built on this are fuzzed by receiver_ftfw/alarm/notrack.)
"""

from __future__ import annotations

from ctools.sync import StreamDecoder, wire

CORPUS = "sync"
# The sender options that emit every attribute (window tracking on, timeouts kept).
_FULL = wire.EncodeOptions(tcp_window_tracking=True)


def _check_datagram(data: bytes) -> None:
    for item in wire.split_messages(data):
        if isinstance(item, wire.ProtocolError):
            assert item.counter, "a protocol error without its counter"
            continue
        header, off = item
        assert 0 <= off and off + header.length <= len(data), (off, header)
        if not header.is_data:
            continue
        try:
            kind, obj = wire.decode_data(header, data[off:off + header.length])
        except wire.ProtocolError:
            continue
        once = _round_trip(kind, obj, header)
        if once is None:
            continue
        # The sender fills some absent attributes with defaults (window scale 0) and sends
        # ports only for port protocols (as the C sender): compare addresses and protocol,
        # and require the round trip to be stable after one pass.
        assert once[0] == kind and _ident(once[1]) == _ident(obj), (obj, once)
        twice = _round_trip(once[0], once[1], header)
        assert twice == once, f"round trip is not stable: {once[1]!r} -> {twice[1]!r}"


def _ident(obj) -> tuple:
    t = getattr(obj, "orig", None) or getattr(obj, "tuple", None)
    return (type(obj).__name__, t.family, t.src, t.dst, t.proto) if t is not None else ()


def _round_trip(kind: str, obj, header):
    try:
        msg = wire.encode_message(kind, obj, header.seq, header.flags & wire.F_HELLO_BITS,
                                  _FULL)
    except ValueError:
        return None  # larger than the C sender's 4096-byte buffer
    h2 = next(wire.split_messages(msg))
    assert not isinstance(h2, wire.ProtocolError), h2
    return wire.decode_data(h2[0], msg)


def _check_stream(data: bytes) -> None:
    dec = StreamDecoder()
    cuts = sorted({b % (len(data) + 1) for b in data[:8]} | {len(data)})
    got, start = b"", 0
    for cut in cuts:
        for chunk in dec.feed(data[start:cut]):
            got += chunk
        start = cut
    assert data.startswith(got), "the stream decoder returned bytes that were not sent"
    if not dec.broken:
        # Only whole messages come out: what is left is a strict prefix of one message.
        assert len(data) - len(got) < 65536


def TestOneInput(data: bytes) -> None:
    _check_datagram(data)
    _check_stream(data)
