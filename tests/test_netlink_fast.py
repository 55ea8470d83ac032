"""The C accelerator renders exactly what the pure-Python decode+format path renders."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_netlink_codec import entries, message

from ctools._speedups import load_ctfast
from ctools.format.text import O_EXT, O_ID, O_KTMS, O_LABELS, format_entry
from ctools.model import Entry, Tuple
from ctools.netlink import CodecError, codec, fast
from ctools.netlink import constants as C
from ctools.netlink.socket import CtnetlinkSocket

_ctfast = load_ctfast()  # the package also works without it; these tests then skip

needs_ext = pytest.mark.skipif(_ctfast is None, reason="C accelerator not built "
                               "(python -m ctools._speedups)")

NOW = 1_700_000_000
TIMEOUT = re.compile(r"^((?:ipv[46]\s+\d+ )?\S+\s+\d+ )\d+ ")
LABELMAP = {0: "zero", 1: "one", 127: "top"}
FLAG_SETS = (0, O_EXT, O_ID, O_EXT | O_ID, O_LABELS, O_KTMS, O_EXT | O_ID | O_LABELS)


def python_line(payload, flags: int) -> str:
    return format_entry(codec.decode_entry(payload), flags, None,
                        LABELMAP if flags & O_LABELS else None, NOW)


def c_must_handle(e: Entry, flags: int) -> bool:
    """Entries the C formatter promises to render (everything else may fall back)."""
    if e.secctx is not None or (flags & O_LABELS and e.labels is not None):
        return False
    if flags & O_KTMS and (e.timestamp_start is not None or e.timestamp_stop is not None):
        return False
    if e.timestamp_start is not None and (e.timestamp_start >> 62 or (e.timestamp_stop or 0) >> 62):
        return False
    if e.helper is not None and not all(0x20 <= ord(c) <= 0x7E for c in e.helper):
        return False
    for t in (e.orig, e.reply):
        if t is not None and t.src is not None and t.dst is None:
            return False
    return True


@needs_ext
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(entries())
def test_c_lines_are_byte_identical(fe):
    family, entry = fe
    payload = message(family, codec.encode_entry(entry, readonly=True))
    for flags in FLAG_SETS:
        line = _ctfast.format_payload(payload, flags, NOW)
        if line is None:
            assert not c_must_handle(entry, flags), entry
            continue
        assert line == python_line(payload, flags)


@needs_ext
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.data())
def test_damaged_payloads_fall_back_or_agree(fe, data):
    family, entry = fe
    buf = bytearray(message(family, codec.encode_entry(entry, readonly=True)))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    payload = bytes(buf[:data.draw(st.integers(0, len(buf)))])
    line = _ctfast.format_payload(payload, O_EXT | O_ID, NOW)
    try:
        expected = python_line(payload, O_EXT | O_ID)
    except CodecError:
        assert line is None
        return
    except UnicodeEncodeError:
        return
    assert line is None or line == expected


@needs_ext
@given(st.binary(max_size=200))
def test_arbitrary_payloads_never_crash(data):
    line = _ctfast.format_payload(data, 0, NOW)
    if line is not None:
        assert line == python_line(data, 0)


def nlmsg(ty: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    m = struct.pack("=IHHII", 16 + len(payload), ty, flags, seq, 0) + payload
    return m + b"\0" * (-len(m) & 3)


@needs_ext
def test_format_dump_walks_a_buffer_like_the_python_loop():
    plain = Entry(Tuple(2, "10.0.0.1", "10.0.0.2", 6, sport=1, dport=2),
                  Tuple(2, "10.0.0.2", "10.0.0.1", 6, sport=2, dport=1),
                  status=0xE, timeout=5, tcp_state=3, mark=1, use=1, id=9)
    odd = Entry(Tuple(2, "10.0.0.3", "10.0.0.4", 17, sport=1, dport=2), secctx="system_u")
    p1 = message(2, codec.encode_entry(plain, readonly=True))
    p2 = message(2, codec.encode_entry(odd, readonly=True))
    buf = (nlmsg(C.CT_NEW, 7, p1) + nlmsg(C.CT_NEW, 8, p2)  # seq 8 belongs to someone else
           + nlmsg(C.CT_NEW, 7, p2) + nlmsg(C.CT_NEW, 7, p1)
           + nlmsg(C.NLMSG_DONE, 7, struct.pack("=i", 0)) + nlmsg(C.CT_NEW, 7, p1))
    seen = []

    def fallback(payload):
        seen.append(bytes(payload))
        return python_line(payload, 0)

    text, count, done, err = _ctfast.format_dump(buf, 7, 0, NOW, fallback)
    assert (count, done, err) == (3, True, 0)
    assert seen == [p2]
    assert text == python_line(p1, 0) + python_line(p2, 0) + python_line(p1, 0)
    # an error ends the dump and is reported
    err_buf = nlmsg(C.CT_NEW, 7, p1) + nlmsg(C.NLMSG_ERROR, 7, struct.pack("=i", -22) + bytes(16))
    assert _ctfast.format_dump(err_buf, 7, 0, NOW, fallback)[1:] == (1, True, 22)
    # the fallback may skip an entry (filters): it is then not counted
    assert _ctfast.format_dump(nlmsg(C.CT_NEW, 7, p2), 7, 0, NOW, lambda p: None)[:2] == ("", 0)
    with pytest.raises(ValueError):
        _ctfast.format_dump(b"\x05\0\0\0" + bytes(12), 7, 0, NOW, fallback)


@pytest.mark.root
def test_fast_and_pure_paths_agree_on_a_real_dump(netns_factory):
    ns = netns_factory("ctnl")
    ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
    ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")
    from ctools.library import Conntrack
    es = [Entry(Tuple(2, f"10.20.{i >> 8}.{i & 255}", "10.21.0.1", (6, 17, 132, 47, 1)[i % 5],
                      **({"icmp_type": 8, "icmp_code": 0, "icmp_id": i} if i % 5 == 4
                         else {"sport": i, "dport": 80})),
                timeout=100 + i, mark=i % 3, zone=i % 4 or None,
                tcp_state=3 if i % 5 == 0 else None, sctp_state=4 if i % 5 == 2 else None,
                sctp_vtag_orig=7 if i % 5 == 2 else None, sctp_vtag_reply=8 if i % 5 == 2 else None,
                status=6 if i % 2 else None)
          for i in range(1500)]
    es.append(Entry(Tuple(10, "2001:db8::1", "2001:db8::2", 6, sport=1, dport=2), timeout=50,
                    tcp_state=3, helper="ftp"))
    with Conntrack(netns=ns.name) as ct:
        assert ct.create_many(es) == [0] * len(es)
    for flags in (0, O_EXT | O_ID, O_KTMS):
        outputs = []
        for use in (True, False):
            parts: list[str] = []
            with CtnetlinkSocket(netns=ns.name) as sock:
                n = fast.dump_text(sock, C.CT_GET, 0, b"", flags,
                                   lambda p, f=flags: python_line(p, f), parts.append,
                                   now=NOW, use_speedups=use)
            assert n == len(es)
            outputs.append("".join(parts))
        # timeouts tick between the two dumps: compare everything else
        strip = [[TIMEOUT.sub(r"\1", ln) for ln in out.splitlines()] for out in outputs]
        assert sorted(strip[0]) == sorted(strip[1])
        assert "delta-time=" in outputs[0] and "packets=0 bytes=0" in outputs[0]


@needs_ext
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.sampled_from(("NEW", "UPDATE", "DESTROY")))
def test_c_event_lines_are_byte_identical(fe, kind):
    family, entry = fe
    payload = message(family, codec.encode_entry(entry, readonly=True))
    for flags in (0, O_EXT | O_ID):
        line = fast.event_line(payload, kind, flags, NOW)
        if line is None:
            assert not c_must_handle(entry, flags)
            continue
        assert line == format_entry(codec.decode_entry(payload), flags, kind, None, NOW)
        assert fast.event_line(payload, kind, flags, NOW, " [USERSPACE] portid=5") == (
            line[:-1] + " [USERSPACE] portid=5\n")


SEND_UDP = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for p in range(2000, 2300):\n"
            "    s.sendto(b'x', ('127.0.0.1', p))\n")


@pytest.mark.root
def test_event_drain_fast_and_pure_agree(netns_factory, ref_conntrack):
    import select
    import sys
    ns = netns_factory("ctnl")
    ns.run("nft", "-f", "-", input=b"table ip ctnlt {\n chain o {\n"
           b"  type filter hook output priority 0\n  ct state new accept\n }\n}\n")
    seen: dict[bool, list[str]] = {True: [], False: []}
    calls: dict[bool, list[tuple[str, int]]] = {True: [], False: []}

    def fallback_for(use):
        def fallback(kind, pid, payload):
            calls[use].append((kind, pid))
            suffix = f" [USERSPACE] portid={pid}" if pid else ""
            line = format_entry(codec.decode_entry(payload), 0, kind, None, NOW)
            return line[:-1] + suffix + "\n"
        return fallback

    with CtnetlinkSocket(C.CT_EVENT_GROUPS, netns=ns.name, rcvbuf=1 << 22) as a, \
            CtnetlinkSocket(C.CT_EVENT_GROUPS, netns=ns.name, rcvbuf=1 << 22) as b:
        ns.run(sys.executable, "-c", SEND_UDP)   # 300 kernel-made NEW events
        ns.run(ref_conntrack, "-F")               # 300 DESTROY events caused by a process
        for use, sock in ((True, a), (False, b)):
            total = 0
            while total < 600 and select.select([sock], [], [], 3)[0]:
                text, n, err = fast.events_text(sock, 0, fallback_for(use), now=NOW,
                                                use_speedups=use)
                assert err == 0
                seen[use].append(text)
                total += n
            assert total == 600
    assert "".join(seen[True]) == "".join(seen[False])
    text = "".join(seen[True])
    assert text.count("    [NEW] udp      17 ") == 300 and text.count("[DESTROY] ") == 300
    assert text.count(" [USERSPACE] portid=") == 300
    # the C path only handed the userspace-caused events to the fallback
    assert len(calls[True]) == 300 and all(k == "DESTROY" and p for k, p in calls[True])
    assert len(calls[False]) == 600


@needs_ext
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.data())
def test_c_decoder_equals_python_decoder(fe, data):
    family, entry = fe
    payload = message(family, codec.encode_entry(entry, readonly=True))
    got = _ctfast.decode_entry(payload)
    assert got == codec.decode_entry_py(payload) == entry
    assert type(got) is Entry and (got.orig is None or type(got.orig) is Tuple)
    # damaged input: C gives up (None) or agrees with Python; never a different answer
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 3))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(buf[:data.draw(st.integers(0, len(buf)))])
    c = _ctfast.decode_entry(damaged)
    try:
        py = codec.decode_entry_py(damaged)
    except CodecError:
        assert c is None
    else:
        assert c is None or c == py


@needs_ext
@given(st.binary(max_size=200))
def test_c_decoder_on_arbitrary_bytes(data):
    c = _ctfast.decode_entry(data)
    if c is not None:
        assert c == codec.decode_entry_py(data)


def test_stale_or_disabled_accelerator_is_ignored(monkeypatch):
    import sys
    import types

    import ctools._speedups as sp
    stale = types.ModuleType("ctools._speedups._ctfast")
    stale.ABI = sp.CTFAST_ABI - 1
    monkeypatch.setitem(sys.modules, "ctools._speedups._ctfast", stale)
    monkeypatch.setattr(sp, "_ctfast", stale, raising=False)
    assert sp.load_ctfast() is None
    stale.ABI = sp.CTFAST_ABI
    assert sp.load_ctfast() is stale
    monkeypatch.setenv("CTOOLS_NO_SPEEDUPS", "1")
    assert sp.load_ctfast() is None


def test_pure_python_mode_in_a_fresh_interpreter():
    import os
    import subprocess
    import sys
    env = dict(os.environ, CTOOLS_NO_SPEEDUPS="1")
    out = subprocess.run([sys.executable, "-c",
                          "from ctools.netlink import codec, fast; "
                          "print(codec._c_decode is None, fast.HAVE_SPEEDUPS)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.root
def test_fast_listing_matches_the_reference_tool(netns_factory, ref_conntrack):
    import sys
    ns = netns_factory("ctnl")
    ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
    for args in (
        ("-p", "tcp", "-s", "10.40.0.1", "-d", "10.40.0.2", "--sport", "1", "--dport", "2",
         "--state", "ESTABLISHED", "-u", "SEEN_REPLY", "-t", "500"),
        ("-p", "udp", "-s", "10.40.0.1", "-d", "10.40.0.3", "--sport", "3", "--dport", "4",
         "-t", "500", "-w", "3", "-m", "9"),
        ("-p", "icmp", "-s", "10.40.0.1", "-d", "10.40.0.4", "--icmp-type", "8",
         "--icmp-code", "0", "--icmp-id", "77", "-t", "500"),
        ("-p", "tcp", "-s", "2001:db8::1", "-d", "2001:db8::2", "--sport", "5", "--dport", "6",
         "--state", "TIME_WAIT", "-t", "500"),
        ("-p", "sctp", "-s", "10.40.0.1", "-d", "10.40.0.5", "--sport", "7", "--dport", "8",
         "--state", "ESTABLISHED", "--orig-vtag", "1", "--reply-vtag", "2", "-t", "500"),
        ("-p", "tcp", "-s", "10.40.0.1", "-d", "10.40.0.6", "--sport", "9", "--dport", "10",
         "--state", "ESTABLISHED", "-t", "500", "--dst-nat", "192.0.2.1:8080"),
    ):
        ns.run(ref_conntrack, "-I", *args)
    for extra in ((), ("-o", "extended")):
        theirs = ns.run(ref_conntrack, "-L", *extra).stdout.decode()
        ours = ns.run(sys.executable, "-m", "ctools.netlink.fast", *extra).stdout.decode()
        assert sorted(TIMEOUT.sub(r"\1", ln) for ln in ours.splitlines()) == sorted(
            TIMEOUT.sub(r"\1", ln) for ln in theirs.splitlines())
        assert len(ours.splitlines()) == 6
