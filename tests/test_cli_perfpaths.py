"""The CLI's fast paths give exactly what the full (slow) paths give.

* ``-R`` create lines: :func:`ctools.cli._ct_fastline.fast_create` vs the full getopt
  parser + runner + codec, on generated lines (property test) and on ``-o save`` output;
  then a real ``-R`` of such lines into a namespace, with and without the fast path.
"""

from __future__ import annotations

import io
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctools._speedups import load_ctfast
from ctools.cli._ct_args import parse
from ctools.cli._ct_errors import CtError
from ctools.cli._ct_fastline import fast_create, fast_create_py
from ctools.cli.conntrack import Runner, split_line
from ctools.format.save import format_save
from ctools.model import Entry, Tuple
from ctools.netlink import codec

OURS = [sys.executable, "-m", "ctools.cli.conntrack"]


def full_create(line: str):
    """What the full parser + runner would send for ``line``, or the error it raises."""
    saved, sys.stderr = sys.stderr, io.StringIO()   # warnings of odd lines
    try:
        req = parse(["conntrack"] + split_line(line))
    except CtError as exc:
        return ("error", exc.msg)
    finally:
        sys.stderr = saved
    if req.command not in ("CT_CREATE", "CT_ADD"):
        return ("command", req.command)
    e = Runner(req, batch=True)._new_entry()
    try:
        return (req.command, e.orig.family, codec.encode_entry(e))
    except codec.CodecError as exc:
        return ("codec", str(exc))


# words close to the accepted shapes, plus near misses the fast path must refuse
def mostly(good, bad):
    """Seven good values for each near miss."""
    return st.one_of(good, good, good, good, good, good, good, bad)


IPV4 = st.integers(0, 2**32 - 1).map(lambda n: ".".join(str(b) for b in n.to_bytes(4, "big")))
ADDRS = mostly(IPV4, st.sampled_from([
    "10.0.0.01", "10.1", "256.1.1.1", "1.2.3.4/24", "::1", "0x0a.0.0.1", "-1.2.3.4",
    "1.2.3.4.", "1..2.3"]))
NUMS = mostly(st.integers(0, 65535).map(str), st.sampled_from([
    "65536", "4294967295", "4294967296", "08", "0x10", "-1", "+5", "12abc", "",
    "99999999999", "007"]))
STATUS = mostly(st.lists(st.sampled_from(["ASSURED", "SEEN_REPLY", "UNSET", "FIXED_TIMEOUT",
                                          "EXPECTED", "OFFLOAD", "HW_OFFLOAD"]),
                         min_size=1, max_size=3).map(",".join),
                st.sampled_from(["assured", "ASS", "UNREPLIED", "!ASSURED", "ASSURED,",
                                 "SRC_NAT", "BOGUS", ",", "S"]))
STATES = mostly(st.sampled_from(["ESTABLISHED", "SYN_SENT", "SYN_RECV", "TIME_WAIT", "CLOSE",
                                 "LISTEN", "SYN_SENT2", "NONE", "FIN_WAIT", "LAST_ACK"]),
                st.sampled_from(["established", "EST", "BOGUS", ""]))
PROTOS = st.sampled_from(["tcp", "udp", "TCP", "6", "icmp", "sctp", "bogus"])
COMMANDS = mostly(st.sampled_from(["-I", "-A", "--create", "--add"]),
                  st.sampled_from(["-U", "-D", "-Iexpect", "--cre", "-L", "-I conntrack"]))


@st.composite
def option(draw):
    name = draw(st.sampled_from([
        "-s", "--src", "--orig-src", "-d", "--dst", "--orig-dst", "-r", "--reply-src", "-q",
        "--reply-dst", "-p", "--protonum", "-t", "--timeout", "-u", "--status", "-m",
        "--mark", "-w", "--zone", "--sport", "--orig-port-src", "--dport",
        "--orig-port-dst", "--reply-port-src", "--reply-port-dst", "--state", "--src=1.2.3.4",
        "--sp", "-f", "-o", "-z", "conntrack"]))
    if name in ("-s", "--src", "--orig-src", "-d", "--dst", "--orig-dst", "-r",
                "--reply-src", "-q", "--reply-dst"):
        return [name, draw(ADDRS)]
    if name in ("-p", "--protonum"):
        return [name, draw(PROTOS)]
    if name in ("-u", "--status"):
        return [name, draw(STATUS)]
    if name == "--state":
        return [name, draw(STATES)]
    if name in ("-f", "-o"):
        return [name, draw(st.sampled_from(["ipv4", "ipv6", "save", "extended"]))]
    if name in ("-z", "conntrack"):
        return [name]
    return [name, draw(NUMS)]


@st.composite
def plausible_line(draw):
    """Mostly-valid create lines (so both outcomes happen), shuffled and perturbed."""
    proto = draw(st.sampled_from(["tcp", "udp"]))
    opts = [["-s", draw(ADDRS)], ["-d", draw(ADDRS)], ["-p", proto],
            ["--sport", draw(NUMS)], ["--dport", draw(NUMS)], ["-t", draw(NUMS)]]
    if proto == "tcp":
        opts.append(["--state", draw(STATES)])
    opts += draw(st.one_of(st.just([]), st.just([]), st.lists(option(), max_size=2)))
    opts = draw(st.permutations(opts))
    if draw(st.integers(0, 7)) != 7:   # protocol options exist only after -p: mostly put it first
        opts.sort(key=lambda o: o[0] != "-p")
    words = [draw(COMMANDS)]
    for o in opts:
        if draw(st.integers(0, 19)) != 19:   # now and then one is missing
            words += o
    sep = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
    return sep.join(words) + draw(st.sampled_from(["\n", "", " \n"]))


_CTFAST = load_ctfast()
C_CREATE_LINE = getattr(_CTFAST, "create_line", None)


def check_line(line: str) -> bool:
    """Python and C fast paths agree; what they accept, the full parser sends the same."""
    fast = fast_create_py(line)
    if C_CREATE_LINE is not None:
        got = C_CREATE_LINE(line)
        assert (None if got is None else (("CT_CREATE", "CT_ADD")[got[0]], 2, got[1])) == fast
    assert fast_create(line) == fast
    if fast is None:
        return False
    assert fast == full_create(line), line
    return True


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plausible_line())
def test_fast_create_matches_full_parser(line):
    check_line(line)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("-IAstdpu 1.0,\t\"\\ntcpu")), max_size=40))
def test_fast_create_on_noise(line):
    check_line(line)


def save_lines():
    out = []
    for i, (proto, state, status, mark, zone) in enumerate([
            (6, 3, 0x0E, 5, None), (6, 7, 0x0A, None, 3), (17, None, 0x08, None, None),
            (17, None, 0x0C, 0xFFFFFFFF, 65535), (6, 0, 0x408, 0, None),
            (6, 9, 0x8, None, None)]):
        o = Tuple(2, f"10.0.{i}.1", "192.168.0.2", proto, sport=1024 + i, dport=80)
        r = Tuple(2, "192.168.0.2", f"10.0.{i}.1", proto, sport=80, dport=1024 + i)
        e = Entry(orig=o, reply=r, timeout=100 + i, status=status, tcp_state=state, mark=mark,
                  zone=zone)
        out.append(format_save(e, "-A" if i % 2 else "-I"))
    return out


def test_fast_create_takes_save_output():
    lines = save_lines()
    assert all(check_line(line) for line in lines), lines
    # and things it must leave to the full parser
    for line in ("-I -p tcp -s 1.2.3.4 -d 1.2.3.5 --sport 1 --dport 2 -t 1\n",   # no --state
                 "-I --sport 1 -p tcp -s 1.2.3.4 -d 1.2.3.5 --dport 2 -t 1 --state NONE\n",
                 "-I -p udp -s 1.2.3.4 -s 1.2.3.4 -d 1.2.3.5 --sport 1 --dport 2 -t 1\n",
                 "-I -p udp -s ::1 -d ::2 --sport 1 --dport 2 -t 1\n",
                 '-I -p udp -s "1.2.3.4" -d 1.2.3.5 --sport 1 --dport 2 -t 1\n'):
        assert fast_create(line) is None, line


@pytest.mark.parametrize("fast", [True, False])
def test_load_file_creates_the_same_table(netns_factory, fast):
    """-R of save-shaped lines makes the table they describe, with the fast path on and
    off (CTOOLS_NO_FASTLINE=1); loading them again fails on the first -I, as in 1.4.7."""
    ns = netns_factory("ctcp")
    env = ["env", f"CTOOLS_NO_FASTLINE={0 if fast else 1}"]
    data = "".join(save_lines()).encode()
    r = ns.run(*env, *OURS, "-R", "-", input=data, check=False)
    assert r.returncode == 0, r.stderr
    listed = ns.run(*env, *OURS, "-L", "-o", "save").stdout.decode()

    def no_timeout(line: str) -> str:   # timeouts tick down
        words = line.split()
        return " ".join(words[:1] + words[3:])

    got = sorted(no_timeout(x) for x in listed.splitlines())
    want = sorted(no_timeout(x.replace("-I ", "-A ", 1)) for x in save_lines())
    assert got == want
    r2 = ns.run(*env, *OURS, "-R", "-", input=data, check=False)
    assert r2.returncode == 1
    assert b"Such conntrack exists" in r2.stderr, r2.stderr


# -- -L with a plain address/protocol filter: filtered in C (format_dump's match) ---------

def test_dump_match_only_for_plain_filters():
    from ctools.cli._ct_filter import dump_match

    def req(text):
        return parse(["conntrack", "-L"] + text.split())
    assert dump_match(req("-s 10.0.0.0/16")) == (2, -1, b"\x0a\0\0\0", b"\xff\xff\0\0",
                                                 b"", b"")
    assert dump_match(req("-d 10.1.2.3 -p tcp")) == (2, 6, b"", b"", b"\x0a\x01\x02\x03",
                                                     b"\xff" * 4)
    assert dump_match(req("-p udp -o extended")) == (0, 17, b"", b"", b"", b"")
    assert dump_match(req("-s ::1/64"))[0] == 10
    for other in ("-p tcp --sport 1", "-s 10.0.0.0/8 -m 1", "-u ASSURED", "-f ipv4 -p tcp",
                  "-s 1.2.3.4 -r 1.2.3.4", "--zone 1", "-p tcp --state ESTABLISHED",
                  "-s 10.0.0.0/8 -n"):
        assert dump_match(req(other)) is None, other


FILTERS = ["-s 10.0.0.0/16", "-s 10.0.0.0/8 -p tcp", "-d 192.168.1.1", "-p udp",
           "-s 2001:db8::/32", "-d 2001:db8::2 -p tcp", "-p icmp", "-s 10.0.1.0/24 -o extended",
           "-s 10.0.1.0/24 -o id", "-d 192.168.0.0/23 -p tcp -o extended"]


def load_mixed(ns) -> None:
    """IPv4/IPv6, tcp/udp/icmp entries, some in a zone."""
    lines = []
    for i in range(40):
        lines.append(f"-I -p tcp -s 10.0.{i % 3}.{i + 1} -d 192.168.{i % 2}.1 --sport {1000 + i}"
                     f" --dport 80 -t 500 --state ESTABLISHED -u ASSURED\n")
        lines.append(f"-I -p udp -s 10.{i % 2}.1.{i + 1} -d 192.168.1.1 --sport {2000 + i}"
                     " --dport 53 -t 500\n")
        lines.append(f"-I -p tcp -s 2001:db8::{i + 1} -d 2001:db8::2 --sport {3000 + i}"
                     " --dport 443 -t 500 --state SYN_SENT\n")
        lines.append(f"-I -p icmp -s 10.0.2.{i + 1} -d 192.168.1.1 --icmp-type 8 --icmp-code 0"
                     f" --icmp-id {i} -t 500\n")
        lines.append(f"-I -p udp -s 10.9.0.{i + 1} -d 10.9.9.9 --sport 5 --dport 6 -t 500"
                     f" -w {i + 1}\n")
    r = ns.run(*OURS, "-R", "-", input="".join(lines).encode(), check=False)
    assert r.returncode == 0, r.stderr


def listing(ns, argv: list[str]) -> list[str]:
    """Sorted output lines of ``argv`` in ``ns``, without the (ticking) timeout field."""
    out = ns.run(*argv, check=False).stdout.decode()
    rows = []
    for line in out.splitlines():
        words = line.split()
        at = 3 if words[0].startswith("ipv") else 1
        rows.append(" ".join(words[:at + 1] + words[at + 2:]))
    return sorted(rows)


def test_filtered_list_same_in_c_python_and_reference(netns_factory, ref_conntrack):
    """Each filter lists the same entries with the C match, the pure-Python path and the
    C tool (timeouts aside)."""
    ns = netns_factory("ctcp")
    load_mixed(ns)

    for f in FILTERS:
        fast = listing(ns, [*OURS, "-L", *f.split()])
        pure = listing(ns, ["env", "CTOOLS_NO_SPEEDUPS=1", *OURS, "-L", *f.split()])
        ref = listing(ns, [ref_conntrack, "-L", *f.split()])
        assert fast == pure == ref, f
        assert fast, f


@pytest.mark.parametrize("argv", [
    ["-D"], ["-D", "-o", "extended"], ["-D", "-p", "udp"], ["-D", "-s", "10.0.0.0/16"],
    ["-D", "-s", "2001:db8::/32", "-p", "tcp"], ["-D", "-p", "udp", "--dport", "6"]])
def test_delete_same_in_c_python_and_reference(netns_factory, ref_conntrack, argv):
    """-D without a filter or with a plain address/protocol one filters and builds its
    requests from the dumped payloads (C); it deletes and prints the same as the
    pure-Python path and the C tool."""
    ns = netns_factory("ctcp")
    runs = {}
    for who, cmd in (("fast", OURS), ("pure", ["env", "CTOOLS_NO_SPEEDUPS=1", *OURS]),
                     ("ref", [ref_conntrack])):
        load_mixed(ns)
        before = len(listing(ns, [*OURS, "-L"]))
        runs[who] = listing(ns, [*cmd, *argv])
        left = len(listing(ns, [*OURS, "-L"]))
        assert len(runs[who]) + left == before == 200, who
        assert runs[who], who
        ns.run(*OURS, "-F")
    assert runs["fast"] == runs["pure"] == runs["ref"]
