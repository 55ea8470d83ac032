"""Harness: the ctnetlink decoder on arbitrary bytes (seeds: real kernel messages).

Invariants:
* any buffer is split by ``iter_messages`` and every message decodes, or ``CodecError`` is
  raised — no other exception (a malformed kernel/peer message must never be a traceback);
* a decoded entry or expectation survives a round trip: encoding it and decoding again gives
  an equal object (or the encoder refuses it with ``CodecError``);
* every output format prints whatever the decoder accepted (text with every flag, XML,
  ``-o save``, JSON): an odd kernel message must not turn ``conntrack -L`` into a traceback;
* the C text formatter of ``conntrack -L`` (``fast.format_payload``) prints exactly what
  the Python decoder + formatter print, for every flag combination it handles;
* the C accelerator (ctools/_speedups/_ctfast.c, when built) agrees with the pure-Python
  decoder: whenever it returns an entry, the Python decoder returns an equal one. (A crash
  in the C code kills the process, which libFuzzer reports as a finding.)
"""

from __future__ import annotations

import fuzzlib  # noqa: F401  (puts the checkout on sys.path when run directly)

from ctools.format import json as fjson
from ctools.format import save as fsave
from ctools.format import text as ftext
from ctools.format import xml as fxml
from ctools.netlink import codec
from ctools.netlink import constants as C
from ctools.netlink import fast as fasttext
from ctools.netlink.errors import CodecError

CORPUS = "netlink"

_ENTRY_TYPES = {C.CT_NEW, C.CT_GET, C.CT_DELETE}
_EXPECT_TYPES = {C.EXP_NEW, C.EXP_GET, C.EXP_DELETE}
_STATS = {C.CT_GET_STATS_CPU: "cpu", C.CT_GET_STATS: "global",
          C.msg_type(C.NFNL_SUBSYS_CTNETLINK_EXP, C.IPCTNL_MSG_EXP_GET_STATS_CPU): "expect"}


def _nfgen(payload, family: int) -> bytes:
    return bytes(payload[:4]) if len(payload) >= 4 else bytes([family, 0, 0, 0])


_ALL_TEXT_FLAGS = ftext.O_EXT | ftext.O_ID | ftext.O_KTMS | ftext.O_LABELS
_LABELS = {0: "zero", 1: "one", 127: "last"}


def _format_entry(e) -> None:
    for flags, event in ((0, None), (_ALL_TEXT_FLAGS, "DESTROY")):
        ftext.format_entry(e, flags=flags, event=event, labelmap=_LABELS, now=1.7e9)
    fxml.format_entry_xml(e, ktimestamp=True, event="NEW")
    fsave.format_save(e)
    fjson.format_entry_json(e, event="UPDATE", labelmap=_LABELS)


_FAST_FLAGS = (0, ftext.O_EXT, ftext.O_ID, ftext.O_EXT | ftext.O_ID | ftext.O_KTMS)


def _check_fast_text(payload) -> None:
    """The C text formatter (conntrack -L hot path) prints what the Python one prints."""
    for flags in _FAST_FLAGS:
        line = fasttext.format_payload(payload, flags, now=1_700_000_000)
        if line is None:
            continue
        try:
            slow = ftext.format_entry(codec.decode_entry_py(payload), flags, None, None,
                                      now=1_700_000_000)
        except CodecError:
            raise AssertionError(f"C formatter printed {line!r} for a malformed payload") from None
        assert line == slow, f"C and Python text differ (flags {flags}):\n{line!r}\n{slow!r}"


def _check_entry(payload) -> None:
    if fasttext.HAVE_SPEEDUPS:
        _check_fast_text(payload)
    if codec._c_decode is not None:
        fast = codec._c_decode(payload)
        if fast is not None:
            slow = codec.decode_entry_py(payload)   # must not raise when C accepted it
            assert fast == slow, f"C and Python decoders differ:\n{fast!r}\n{slow!r}"
    entry = codec.decode_entry(payload)
    _format_entry(entry)
    try:
        attrs = codec.encode_entry(entry, readonly=True)
    except CodecError:
        return
    again = codec.decode_entry(_nfgen(payload, 0) + attrs)
    assert again == entry, f"round trip changed the entry:\n{entry!r}\n{again!r}"


def _check_expect(payload) -> None:
    exp = codec.decode_expect(payload)
    for event in (None, "NEW"):
        ftext.format_expect(exp, event=event)
        fxml.format_expect_xml(exp, event=event)
        fjson.format_expect_json(exp, event=event)
    try:
        attrs = codec.encode_expect(exp)
    except CodecError:
        return
    again = codec.decode_expect(_nfgen(payload, 0) + attrs)
    assert again == exp, f"round trip changed the expectation:\n{exp!r}\n{again!r}"


def TestOneInput(data: bytes) -> None:
    # Also feed the bytes as a bare payload: the daemon and the CLI decode payloads
    # that iter_messages cut out, so both layers must hold on their own.
    for check in (_check_entry, _check_expect):
        try:
            check(data)
        except CodecError:
            pass
    try:
        for mtype, _flags, _seq, _pid, payload in codec.iter_messages(data):
            try:
                if mtype in _ENTRY_TYPES:
                    _check_entry(payload)
                elif mtype in _EXPECT_TYPES:
                    _check_expect(payload)
                elif mtype in _STATS:
                    codec.decode_stats(payload, _STATS[mtype])
                elif mtype == C.NLMSG_ERROR:
                    codec.decode_error(payload)
            except CodecError:
                pass
    except CodecError:
        pass
