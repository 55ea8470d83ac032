"""Formatters are pure: hand-built entries against the examples of the CLI spec (§7)."""

from __future__ import annotations

import json
import time

from ctools.format.json import format_entry_json, format_expect_json
from ctools.format.save import format_save
from ctools.format.text import (
    O_EXT,
    O_ID,
    O_KTMS,
    event_timestamp,
    expect_event_timestamp,
    format_entry,
    format_expect,
)
from ctools.format.xml import format_entry_xml, format_expect_xml
from ctools.model import Entry, Expect, NatRange, Tuple

SEEN_ASSURED_CONFIRMED = 2 | 4 | 8


def tcp_entry() -> Entry:
    return Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 6, 10, 20),
                 reply=Tuple(2, "2.2.2.2", "1.1.1.1", 6, 20, 10),
                 status=SEEN_ASSURED_CONFIRMED, timeout=49, tcp_state=3, mark=0, use=1,
                 id=2416567005)


def test_default_line_of_an_established_tcp_entry():
    assert format_entry(tcp_entry()) == (
        "tcp      6 49 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=2.2.2.2 "
        "dst=1.1.1.1 sport=20 dport=10 [ASSURED] mark=0 use=1\n")


def test_extended_id_and_kernel_timestamps():
    e = tcp_entry()
    e.orig_packets = e.orig_bytes = e.reply_packets = e.reply_bytes = 0
    start = 1795606859  # some second
    e.timestamp_start = start * 1_000_000_000
    line = format_entry(e, O_EXT | O_ID | O_KTMS, now=start)
    assert line == (
        "ipv4     2 tcp      6 49 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 "
        "packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 "
        f"[ASSURED] mark=0 delta-time=0 [start={time.ctime(start)}] use=1 id=2416567005\n")


def test_unreplied_icmpv6_gre_and_unknown_protocols():
    icmp6 = Entry(orig=Tuple(10, "2001:db8::1", "2001:db8::2", 58, icmp_type=128, icmp_code=0,
                             icmp_id=5),
                  reply=Tuple(10, "2001:db8::2", "2001:db8::1", 58, icmp_type=129,
                              icmp_code=0, icmp_id=5),
                  status=8, timeout=99, mark=0, use=1)
    assert format_entry(icmp6, O_EXT) == (
        "ipv6     10 icmpv6   58 99 src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=5 "
        "[UNREPLIED] src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=5 mark=0 use=1\n")
    gre = Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 47, 16, 32),
                reply=Tuple(2, "2.2.2.2", "1.1.1.1", 47, 32, 16), status=8, timeout=99)
    assert format_entry(gre) == (
        "gre      47 99 src=1.1.1.1 dst=2.2.2.2 srckey=0x10 dstkey=0x20 [UNREPLIED] "
        "src=2.2.2.2 dst=1.1.1.1 srckey=0x20 dstkey=0x10\n")
    other = Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 200),
                  reply=Tuple(2, "2.2.2.2", "1.1.1.1", 200), status=8, timeout=99, zone=7)
    assert format_entry(other) == (
        "unknown  200 99 src=1.1.1.1 dst=2.2.2.2 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 zone=7\n")


def test_event_lines_have_the_type_column_and_no_use():
    e = tcp_entry()
    assert format_entry(e, 0, "UPDATE").startswith(" [UPDATE] tcp      6 49 ")
    assert format_entry(e, 0, "NEW").startswith("    [NEW] tcp")
    assert format_entry(e, 0, "DESTROY").endswith("mark=0\n")
    assert event_timestamp(1795606913, 801376) == "[1795606913.801376]\t"
    assert event_timestamp(1795606913, 1376) == "[1795606913.001376]\t"
    assert expect_event_timestamp(1795606913, 1376) == "[1795606913.1376  ]\t"


def test_labels_field_uses_names_in_bit_order():
    e = tcp_entry()
    e.labels = (1 << 1) | (1 << 5) | (1 << 9)
    assert format_entry(e, 0, None, {1: "one", 5: "five"}).endswith(" labels=one,five\n")
    assert format_entry(e, 0, None, {7: "seven"}).endswith(" use=1 labels\n")
    assert "labels" not in format_entry(e)


def test_save_lines_replay_the_entry():
    assert format_save(tcp_entry()) == (
        "-A -t 49 -u SEEN_REPLY,ASSURED -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p tcp "
        "--sport 10 --dport 20 --reply-port-src 20 --reply-port-dst 10 --state ESTABLISHED\n")
    natted = Entry(orig=Tuple(2, "1.1.1.4", "2.2.2.2", 6, 10, 20),
                   reply=Tuple(2, "3.3.3.3", "4.4.4.4", 6, 20, 99),
                   status=2 | 8 | (1 << 7) | (1 << 8), timeout=49, tcp_state=9)
    assert format_save(natted, "-D") == (
        "-D -t 49 -u SEEN_REPLY -s 1.1.1.4 -d 2.2.2.2 -g 3.3.3.3 -n 4.4.4.4 -p tcp --sport 10 "
        "--dport 20 --reply-port-src 20 --reply-port-dst 99 --state SYN_SENT2\n")
    zoned = Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 200),
                  reply=Tuple(2, "2.2.2.2", "1.1.1.1", 200), status=8, timeout=99, zone=5)
    assert format_save(zoned) == (
        "-A -t 99 -u UNSET -w 5 -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p 200\n")


def test_xml_flow_matches_the_reference_layout():
    assert format_entry_xml(tcp_entry()) == (
        '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>1.1.1.1'
        '</src><dst>2.2.2.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>10'
        '</sport><dport>20</dport></layer4></meta><meta direction="reply"><layer3 protonum="2"'
        ' protoname="ipv4"><src>2.2.2.2</src><dst>1.1.1.1</dst></layer3><layer4 protonum="6" '
        'protoname="tcp"><sport>20</sport><dport>10</dport></layer4></meta><meta direction='
        '"independent"><state>ESTABLISHED</state><timeout>49</timeout><mark>0</mark><use>1'
        '</use><id>2416567005</id><assured/></meta></flow>\n')
    sctp = Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 132, 1, 2),
                 reply=Tuple(2, "2.2.2.2", "1.1.1.1", 132, 2, 1), sctp_state=2, status=8)
    assert "<state>SYN_RECV</state>" in format_entry_xml(sctp)   # looked up as TCP
    assert format_entry_xml(tcp_entry(), event="NEW").startswith('<flow type="new">')


def test_expectation_text_and_xml():
    x = Expect(tuple=Tuple(2, "127.0.0.1", "127.0.0.1", 6, 0, 40000),
               mask=Tuple(2, "255.255.255.255", "255.255.255.255", 6, 0, 65535),
               master=Tuple(2, "127.0.0.1", "127.0.0.1", 6, 40031, 21),
               timeout=299, klass=0, helper="ftp", flags=0)
    assert format_expect(x) == (
        "299 proto=6 src=127.0.0.1 dst=127.0.0.1 sport=0 dport=40000 mask-src=255.255.255.255 "
        "mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 "
        "master-dst=127.0.0.1 sport=40031 dport=21 class=0 helper=ftp\n")
    x.flags = 1 | 4
    assert " PERMANENT,USERSPACE class=0 " in format_expect(x, "NEW")
    xml = format_expect_xml(x)
    assert "<helper-name>ftp</helper-name><timeout>299</timeout><class>0</class>" in xml
    assert xml.endswith("<permanent/><userspace/></meta></flow>\n")


def test_json_schema_keys():
    e = tcp_entry()
    e.nat_dst = NatRange("9.9.9.9", "9.9.9.9")
    obj = json.loads(format_entry_json(e, "NEW", None, 0, {"portid": 5}))
    assert obj == {
        "event": "new", "family": "ipv4", "proto": "tcp", "protonum": 6, "timeout": 49,
        "state": "ESTABLISHED",
        "orig": {"src": "1.1.1.1", "dst": "2.2.2.2", "sport": 10, "dport": 20},
        "reply": {"src": "2.2.2.2", "dst": "1.1.1.1", "sport": 20, "dport": 10},
        "status": ["SEEN_REPLY", "ASSURED", "CONFIRMED"], "mark": 0, "use": 1,
        "id": 2416567005, "userspace": {"portid": 5}}
    x = json.loads(format_expect_json(Expect(tuple=Tuple(2, "1.1.1.1", "2.2.2.2", 17, 1, 2),
                                             timeout=5, flags=2)))
    assert x["expected"] == {"src": "1.1.1.1", "dst": "2.2.2.2", "sport": 1, "dport": 2}
    assert x["flags"] == ["INACTIVE"] and x["proto"] == "udp"


def test_json_fast_path_equals_the_dict_encoding():
    from ctools.format.json import _dumps, entry_dict
    entries = [tcp_entry()]
    e = tcp_entry()
    e.orig_packets = e.orig_bytes = e.reply_packets = e.reply_bytes = 3
    e.timestamp_start, e.timestamp_stop, e.labels, e.zone = 10**18, 10**18 + 2 * 10**9, 0b101, 4
    entries.append(e)
    entries.append(Entry(orig=Tuple(10, "::1", "::2", 58, icmp_type=128, icmp_code=0,
                                    icmp_id=5, zone=2),
                         reply=Tuple(10, "::2", "::1", 58, icmp_type=129, icmp_code=0,
                                     icmp_id=5), status=1 << 20 | 8, timeout=3))
    entries.append(Entry(orig=Tuple(2, "1.1.1.1", "2.2.2.2", 47, 16, 32),
                         reply=Tuple(2, "2.2.2.2", "1.1.1.1", 47, 32, 16), sctp_state=3))
    for entry in entries:
        for event in (None, "DESTROY"):
            assert format_entry_json(entry, event, None, 100) == _dumps(
                entry_dict(entry, event, None, 100)) + "\n"
