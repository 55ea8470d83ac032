"""The conntrack argument grammar without a kernel: getopt quirks, checks, messages."""

from __future__ import annotations

import pytest

from ctools.cli import _ct_proto as P
from ctools.cli._ct_args import inet_aton, parse, parse_address
from ctools.cli._ct_errors import CtError
from ctools.cli._ct_getopt import OPTIONAL_ARG, REQUIRED_ARG, Getopt, LongOpt
from ctools.cli.conntrack import PREFIX, main, split_line


def err(argv: str) -> tuple[int, str]:
    with pytest.raises(CtError) as info:
        parse(["conntrack"] + argv.split())
    return info.value.status, info.value.msg


def test_getopt_permutes_and_abbreviates():
    longopts = [LongOpt("src", REQUIRED_ARG, "s"), LongOpt("src-nat", OPTIONAL_ARG, "n"),
                LongOpt("status", REQUIRED_ARG, "u")]
    g = Getopt(["prog", "word", "--src=1", "-u", "x", "--src-n"], ":s:u:n::", longopts)
    got = []
    while (item := g.next()) is not None:
        got.append(item)
    assert got == [("s", "1"), ("u", "x"), ("n", None)]
    assert g.argv[g.optind:] == ["word"]          # non-options end up last
    g = Getopt(["prog", "--s", "1"], ":s:u:", longopts)
    assert g.next() == ("?", None) and g.last_word() == "--s"


def test_commands_tables_and_stray_words():
    assert parse(["conntrack", "-L"]).command == P.CT_LIST
    req = parse(["conntrack", "conntrack", "-L", "e"])
    assert (req.command, req.table) == (P.EXP_LIST, "expect")
    assert parse(["conntrack", "-L", "d"]).table == "dying"
    assert parse(["conntrack", "-Lexpect"]).table == "conntrack"   # attached: ignored
    assert parse(["conntrack", "--flush=expect"]).command == P.CT_FLUSH
    assert err("-L foo") == (2, "unknown type `foo'")
    assert err("-L -G") == (2, "Invalid commands combination")
    assert err("-D unconfirmed") == (
        2, "Can't do that command with tables `dying' and `unconfirmed'")
    assert err("-U expect") == (2, "Can't do --update on expectations")


def test_option_matrix_messages_in_column_order():
    assert err("-I -s 1.1.1.1 -d 2.2.2.2") == (
        2, "You need to supply the `--protonum' option for this command")
    assert err("-L -t 5 -e NEW") == (2, "Illegal option `--timeout' with this command")
    assert err("-s 1.1.1.1") == (2, "Illegal option `--src' with this command")
    assert err("-I -r 1.1.1.1 -p udp -t 1") == (
        2, "you have to specify `--reply-src' and `--reply-dst'")
    assert err("-I -s 1.1.1.1 -d 2.2.2.2 -p udp -t 1") == (
        2, "you have to specify `--sport' and `--dport'")
    assert err("-I -s 1.1.1.1 -d 2.2.2.2 -p gre -t 1 --reply-key-src 1") == (
        2, "you have to specify `--reply-src-key' and `--reply-dst-key'")
    assert err("-L -j -n") == (2, "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
    assert err("-D -j") == (2, "Illegal option `--any-nat' with this command")


def test_values():
    assert inet_aton("1.2.3") == bytes([1, 2, 0, 3])
    assert inet_aton("0x7f.1") == bytes([127, 0, 0, 1])
    assert inet_aton("1.2.3.4 junk") == bytes([1, 2, 3, 4])
    assert inet_aton("256.1.1.1") is None
    assert parse_address("2001:DB8::1.1.1.1/64") == (10, "2001:db8::101:101", 64)
    assert parse_address("1.2.3.4/") == (2, "1.2.3.4", 0)
    assert parse_address("1.2.3.4/33")[2] == -2
    assert err("-L -p 20foo") == (2, "`20foo' unsupported protocol")
    assert err("-L -p 256") == (2, "`256' unsupported protocol")
    assert parse(["conntrack", "-L", "-p", "0x11"]).proto.name == "udp"
    assert parse(["conntrack", "-L", "-p", "igmp"]).proto.protonum == 2
    assert err("-L -s 1.1.1.1 -d ::1") == (2, "mismatched address family")
    assert err("-L -q 1.1.1.1/8") == (2, "CIDR notation unavailable for `--reply-dst'")
    req = parse(["conntrack", "-L", "-w", "99999", "-m", "2/3", "-u", "UNREPLIED"])
    assert req.tmpl.ct.zone == 34463 and req.tmpl.mark == (2, 3)
    assert req.tmpl.status == (0, 2)
    assert err("-L -u ASSURED,,x") == (2, "Bad parameter `,x'")
    assert err("-L -o save,xml") == (
        1, "cannot combine save output with any other output type, use -o save only")
    assert err("-I -s 1.1.1.1 -d 2.2.2.2 -p sctp -t 1 --sport 1 --dport 2 --state X "
               "--orig-vtag 1 --reply-vtag 2") == (2, "unknown SCTP state `X'")


@pytest.mark.parametrize("nat,msg", [
    ("1.1.1.1:", "No port specified after `:'"), ("1.1.1.1:80:80", "Invalid IP address "
                                                   "`1.1.1.1:80:80'"),
    ("[::1]::", "Invalid port `:'"), ("[]:80", "No IPv6 address specified"),
    ("[::1", "No closing ']' around IPv6 address"), (":80", "Invalid IP address `'"),
    ("1.1.1.1/4:80", "CIDR notation unavailable for `--src-nat'"),
])
def test_nat_argument_errors(nat, msg):
    assert err(f"-L -n {nat}") == (2, msg)


def test_main_reports_with_prefix_hint_and_status(capsys):
    assert main(["conntrack", "-L", "--bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"{PREFIX}unknown option `--bogus'\n"
                            "Try `conntrack -h' or 'conntrack --help' for more information.\n")
    assert main(["conntrack", "-L", "-o", "save", "-o", "id"]) == 1
    assert "Try" not in capsys.readouterr().err
    assert main(["conntrack"]) == 0 and "Usage" in capsys.readouterr().out
    assert main(["conntrack", "-V"]) == 0 and "ctools" in capsys.readouterr().out
    assert main(["conntrack", "-h", "-p", "tcp"]) == 0
    assert "--state" in capsys.readouterr().out


def test_load_file_word_splitting():
    assert split_line('-A -s "1.1.1.2" -d "a\\"b c"\n') == ["-A", "-s", "1.1.1.2", "-d",
                                                               'a"b c']
    with pytest.raises(CtError, match="too many arguments"):
        split_line("x " * 300)


WORDS = ["-L", "-I", "-D", "-U", "-G", "-E", "-F", "-C", "-S", "-A", "-h", "-V", "expect",
         "dying", "conntrack", "-s", "-d", "-r", "-q", "1.1.1.1", "::1", "1.2.3.0/24", "x",
         "-p", "tcp", "udp", "icmp", "gre", "sctp", "dccp", "200", "256", "--sport", "--dport",
         "--state", "ESTABLISHED", "-t", "10", "-u", "ASSURED,!SEEN_REPLY", "-m", "1/2", "-w",
         "-o", "xml,id", "save", "json", "-n", "-g", "-j", "[::1]:80", "1.1.1.1:80", "-f",
         "ipv6", "--mask-src", "--tuple-src", "--label", "--label-add", "--label-del", "-e",
         "NEW", "-z", "-i", "--id", "-b", "-c", "--orig-zone", "--reply-zone", "--role",
         "client", "--icmp-type", "--srckey", "--orig-vtag", "-a", "--", "-", "!x", "--zo",
         "-Lexpect", "--dump=expect", "-Xz", "--src=1.1.1.1", ""]


def test_any_word_soup_parses_or_fails_cleanly():
    """Random command lines: a Request or a CtError, never another exception."""
    import os
    import random
    rng = random.Random(1234)
    os.environ["CTOOLS_CONNLABEL_CONF"] = "/nonexistent"
    try:
        for _ in range(3000):
            argv = ["conntrack"] + [rng.choice(WORDS) for _ in range(rng.randint(0, 8))]
            try:
                parse(argv)
            except CtError:
                pass
    finally:
        del os.environ["CTOOLS_CONNLABEL_CONF"]
