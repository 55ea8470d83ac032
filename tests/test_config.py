"""ctools.config: typed values, defaults, errors with positions, warnings, dump round trip."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ctools.config import (
    ConfigError,
    McastChannel,
    TcpChannel,
    UdpChannel,
    dump,
    load,
    parse,
)
from ctools.config.lexer import tokenize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

from config_gen import generate  # noqa: E402

SHARE = ROOT / "share" / "ctools"


def err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, filename="t.conf")
    return info.value


# ----------------------------------------------------------------------------- defaults


def test_empty_file_gives_c_defaults():
    cfg = parse("")
    g = cfg.general
    assert (g.hash_size, g.hash_limit) == (65536, 262144)
    assert g.lock_file == "/var/lock/conntrackd.lock"
    assert g.log_file is None and g.syslog_facility is None
    assert g.unix.path == "" and g.unix_path == ""
    assert g.netlink_buffer_size == 0 and g.netlink_buffer_size_max_grow == 0
    assert g.netlink_overrun_resync == 30
    assert g.event_iterations_limit == 100
    assert g.poll_secs is None and g.filter is None and g.scheduler is None
    assert g.systemd is True and g.netlink_events_reliable is False
    assert cfg.sync is None and cfg.stats is None and cfg.helper is None
    assert cfg.mode == "none" and cfg.warnings == []


def test_sync_defaults_and_missing_mode_is_ftfw():
    s = parse("Sync { }").sync
    assert s is not None
    assert s.mode == "ftfw" and not s.mode_explicit
    assert (s.refresh_time, s.cache_timeout, s.commit_timeout, s.purge_timeout) == (60, 180, 0, 60)
    assert (s.resend_queue_size, s.ack_window_size) == (131072, 300)
    assert not (s.disable_internal_cache or s.disable_external_cache or s.startup_resync)
    assert s.channels == [] and s.default_channel is None and s.transport is None
    assert s.error_queue_length == 128
    assert not s.tcp_window_tracking and not s.expectation_sync
    assert s.authentication_key_file is None


def test_zero_means_default_where_c_says_so():
    cfg = parse("General { HashSize 0 HashLimit 0 EventIterationLimit 0 NetlinkOverrunResync 0 }"
                "Sync { Mode FTFW { ResendQueueSize 0 ACKWindowSize 0 PurgeTimeout 0 }"
                " RefreshTime 0 CacheTimeout 0 CommitTimeout 0 }")
    g, s = cfg.general, cfg.sync
    assert (g.hash_size, g.hash_limit, g.event_iterations_limit) == (65536, 262144, 100)
    assert g.netlink_overrun_resync == 30
    assert (s.resend_queue_size, s.ack_window_size, s.purge_timeout) == (131072, 300, 60)
    assert (s.refresh_time, s.cache_timeout, s.commit_timeout) == (60, 180, 0)


# ----------------------------------------------------------------------------- General


def test_general_clauses_typed():
    cfg = parse("""
General {
    HashSize 1024
    HashLimit 4096
    LogFile on
    Syslog local4
    LockFile /run/ct.lock
    UNIX { Path /run/ct.ctl  Backlog 20 }
    SocketBufferSize 1000
    SocketBufferSizeMaxGrown 2000
    NetlinkOverrunResync off
    NetlinkEventsReliable Yes
    PollSecs 7
    EventIterationLimit 5
    Nice -3
    Scheduler { Type fifo Priority 10 }
    Systemd no
}
""")
    g = cfg.general
    assert (g.hash_size, g.hash_limit) == (1024, 4096)
    assert g.log_file == "/var/log/conntrackd.log" and g.syslog_facility == "local4"
    assert g.lock_file == "/run/ct.lock" and g.unix.path == "/run/ct.ctl" and g.unix.backlog == 20
    assert (g.netlink_buffer_size, g.netlink_buffer_size_max_grow) == (1000, 2000)
    assert g.netlink_overrun_resync is None and g.netlink_events_reliable is True
    assert g.poll_secs == 7 and g.event_iterations_limit == 5 and g.nice == -3
    assert g.scheduler.type == "FIFO" and g.scheduler.priority == 10
    assert g.systemd is False
    # Backlog and Nice are deprecated: warned about, as the C daemon does
    messages = [w.message for w in cfg.warnings]
    assert any("Backlog" in m for m in messages) and any("Nice" in m for m in messages)


def test_logfile_and_syslog_variants():
    assert parse("General { LogFile /tmp/x.log }").general.log_file == "/tmp/x.log"
    assert parse("General { LogFile on LogFile off }").general.log_file is None
    assert parse("General { Syslog on }").general.syslog_facility == "daemon"
    cfg = parse("General { Syslog local1 Syslog kern }")
    assert cfg.general.syslog_facility == "local1"        # unknown facility: ignored
    assert "kern" in cfg.warnings[0].message
    assert parse("Stats { LogFile on Syslog ON }").stats.log_file == "/var/log/conntrackd-stats.log"


def test_scanner_quirks_kept():
    # '|' inside the C boolean character classes; hex words are addresses, not names
    assert parse("General { Systemd || }").general.systemd is True
    assert parse("General { Systemd |ff }").general.systemd is False
    e = err("Sync { UDP { Interface abc } }")
    assert "address 'abc'" in e.message
    assert [t.kind for t in tokenize("beef eth0 1234 1a 10.0.0.1/8 ::1 -5 /p")][:-1] == [
        "address", "name", "number", "address", "address", "address", "signed number", "path"]


def test_paths_swallow_braces_like_c():
    e = err("General { LogFile /tmp/x}")
    assert (e.line, e.col) == (1, 26)
    assert "end of file" in e.message and "General" in e.message


def test_crlf_paths_lose_the_carriage_return():
    cfg = parse("General {\r\n LockFile /tmp/l\r\n LogFile /tmp/g\r\n}\r\n")
    assert cfg.general.lock_file == "/tmp/l" and cfg.general.log_file == "/tmp/g"


def test_filter_typed():
    g = parse("""General { Filter From Kernelspace {
        Protocol Accept { TCP UDP ICMP IPv6-ICMP nosuch }
        Address Ignore { IPv4_address 127.0.0.1 IPv4_address 10.1.2.3/8 IPv4_address 1.2.3.4/32
                         IPv4_address 010.0.0.1 IPv6_address ::1 IPv6_address fe80::1/64
                         IPv4_address 1.2.3.4/33 IPv4_address 300.0.0.1 IPv4_address 127.0.0.1 }
        State Accept { ESTABLISHED CLOSED for TCP TIME_WAIT for TCP }
    } }""").general
    f = g.filter
    assert f.from_kernelspace and not f.from_userspace
    assert f.protocol.policy == "accept" and f.protocol.protocols == [6, 17, 1, 58]
    assert f.address.policy == "ignore"
    assert f.address.ipv4 == ["127.0.0.1", "10.0.0.0/8", "1.2.3.4", "8.0.0.1"]
    assert f.address.ipv6 == ["::1", "fe80::/64"]
    assert f.state.policy == "accept" and f.state.states == ["ESTABLISHED", "CLOSE", "TIME_WAIT"]


def test_filter_blocks_merge_and_last_policy_wins():
    f = parse("General { Filter { Protocol Accept { TCP } } Filter { Protocol Ignore { UDP } } }"
              ).general.filter
    assert f.from_userspace and f.protocol.policy == "ignore" and f.protocol.protocols == [6, 17]


# ----------------------------------------------------------------------------- Sync


def test_sync_modes_and_channels():
    cfg = parse("""
Sync {
    Mode FTFW { ResendQueueSize 100 ACKWindowSize 20 DisableExternalCache on StartupResync on
                CommitTimeout 5 PurgeTimeout 9 }
    UDP { IPv4_address 10.0.0.1 IPv4_Destination_Address 10.0.0.2 Port 3780 Interface lo
          SndSocketBuffer 1000 RcvSocketBuffer 2000 Checksum off }
    UDP Default { IPv6_address fd00::1 IPv6_Destination_Address fd00::2 Port 3781
                  Interface lo }
    Options { TCPWindowTracking on ExpectationSync { ftp sip } }
}
""")
    s = cfg.sync
    assert cfg.mode == "sync" and s.mode == "ftfw" and s.mode_explicit
    assert (s.resend_queue_size, s.ack_window_size) == (100, 20)
    assert s.disable_external_cache and s.startup_resync
    # CommitTimeout means nothing without an external cache: dropped, as conntrackd does
    assert (s.commit_timeout, s.purge_timeout) == (0, 9)
    assert any("CommitTimeout" in w.message for w in cfg.warnings)
    a, b = s.channels
    assert isinstance(a, UdpChannel) and isinstance(b, UdpChannel)
    assert (a.family, a.address, a.destination, a.port, a.interface) == (
        "ipv4", "10.0.0.1", "10.0.0.2", 3780, "lo")
    assert (a.sndbuf, a.rcvbuf, a.checksum, a.default) == (1000, 2000, False, False)
    assert (b.family, b.address, b.destination, b.default) == ("ipv6", "fd00::1", "fd00::2", True)
    assert s.default_channel is b and s.default_channel_index == 1 and s.transport == "UDP"
    assert s.tcp_window_tracking and s.expectation_sync and s.expectation_helpers == ["ftp", "sip"]


def test_mode_precedence_not_order():
    s = parse("Sync { Mode NOTRACK { DisableInternalCache on } Mode ALARM { RefreshTime 5 } }").sync
    assert s.mode == "alarm" and s.disable_internal_cache and s.refresh_time == 5
    s = parse("Sync { Mode ALARM { } Mode FTFW { } }").sync
    assert s.mode == "ftfw"
    cfg = parse("Sync { Mode nack { } }")
    assert cfg.sync.mode == "ftfw" and "old name" in cfg.warnings[0].message
    assert parse("Sync { Mode persistenT { } }").sync.mode == "alarm"


def test_multicast_and_tcp_channels():
    s = parse("Sync { Mode ALARM { } Multicast Default { IPv4_address 225.0.0.50 Group 3780"
              " IPv4_interface 192.168.0.1 Interface lo Checksum on } }").sync
    (m,) = s.channels
    assert isinstance(m, McastChannel) and m.default
    assert (m.family, m.address, m.group, m.ipv4_interface, m.checksum) == (
        "ipv4", "225.0.0.50", 3780, "192.168.0.1", True)
    s = parse("Sync { TCP { IPv4_address 1.1.1.1 IPv4_Destination_Address 1.1.1.2 Port 9"
              " ErrorQueueLength 64 } TCP { Port 10 } }").sync
    assert all(isinstance(c, TcpChannel) for c in s.channels)
    assert s.error_queue_length == 64 and s.default_channel is s.channels[0]


def test_bad_channel_addresses_are_warnings():
    cfg = parse("Sync { UDP { IPv4_address 1.2.3.400 IPv4_Destination_Address 1.2.3.4/24"
                " Port 70000 } }")
    (ch,) = cfg.sync.channels
    assert ch.ipv4_address is None and ch.ipv4_destination is None and ch.family is None
    assert ch.port == 70000 & 0xFFFF
    assert len(cfg.warnings) == 3


def test_extensions():
    cfg = parse("General { Metrics { Address ::1 Port 9100 } }"
                "Sync { Options { AuthenticationKeyFile /etc/ctools/sync.key } }")
    assert (cfg.general.metrics.address, cfg.general.metrics.port) == ("::1", 9100)
    assert cfg.sync.authentication_key_file == "/etc/ctools/sync.key"
    assert parse("General { Metrics { } }").general.metrics.port == 9477
    e = err("General { Metrics { Address localhost } }")
    assert "address after 'Address'" in e.message


def test_helper_section():
    h = parse("Helper { Setup on Type ftp inet tcp { QueueNum 3 QueueLen 10"
              " Policy ftp { ExpectMax 2 ExpectTimeout 300 } } Type tftp inet6 udp { } }").helper
    assert h.setup is True
    ftp, tftp = h.types
    assert (ftp.name, ftp.l3proto, ftp.l4proto, ftp.queue_num, ftp.queue_len) == (
        "ftp", "inet", "tcp", 3, 10)
    assert [(p.name, p.expect_max, p.expect_timeout) for p in ftp.policies] == [("ftp", 2, 300)]
    assert (tftp.l3proto, tftp.l4proto) == ("inet6", "udp")


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, line, col, words", [
    ("General { Foo 1 }", 1, 11, ["Foo", "General", "HashSize"]),
    ("\n\ngeneral {", 3, 1, ["section", "general"]),
    ("General {\n  HashSize abc\n}", 2, 12, ["number", "HashSize", "abc"]),
    ("General { HashSize -5 }", 1, 20, ["number", "-5"]),
    ("General { Nice 5 }", 1, 16, ["signed number"]),
    ("General { LogFile foo.log }", 1, 19, ["path", "foo.log"]),
    ("Stats { NetlinkEventsReliable no }", 1, 9, ["NetlinkEventsReliable", "Stats"]),
    ("Sync { Mode FTFW { RefreshTime 5 } }", 1, 20, ["RefreshTime", "Mode FTFW"]),
    ("General { Filter { State Accept { ESTABLISHED for UDP } } }", 1, 51, ["TCP", "UDP"]),
    ("General { Filter { State Accept { ESTABLISHED } } }", 1, 47, ["for TCP"]),
    ("Sync { Mode FTFW {\n", 2, 1, ["end of file", "Mode FTFW", "line 1, column 8"]),
    ("Stats { }\nSync { }", 2, 1, ["Stats", "Sync"]),
    ("Sync { UDP { } TCP { } }", 1, 16, ["TCP", "UDP"]),
    ("Sync { UDP{} UDP{} UDP{} UDP{} UDP{} }", 1, 32, ["at most 4"]),
    ("General { UNIX { Path /" + "a" * 107 + " } }", 1, 23, ["107"]),
    ("General { LogFile /" + "a" * 256 + " }", 1, 19, ["256"]),
    ("General { Scheduler { Type OTHER } }", 1, 28, ["OTHER", "RR or FIFO"]),
    ("General { Scheduler { Priority 4294967295 } }", 1, 32, ["[0, 99]"]),
    ("General { PollSecs 0 }", 1, 20, ["PollSecs"]),
    ("Helper { Type foo inet tcp { } }", 1, 15, ["foo", "ftp (tcp)"]),
    ("Helper { Type ftp inet tcp { Policy sip { ExpectMax 1 } } }", 1, 37, ["sip", "ftp"]),
    ("Helper { Type ftp inet tcp { Policy ftp { } } }", 1, 37, ["empty"]),
    ("General { }\n\xe9", 2, 1, ["non-ASCII"]),
    ("General {\x00}", 1, 10, ["'\\x00'"]),
])
def test_errors_name_position_and_expectation(text, line, col, words):
    e = err(text)
    assert (e.line, e.col) == (line, col), str(e)
    assert str(e).startswith(f"t.conf:{line}:{col}: ")
    for w in words:
        assert w in e.message, (w, e.message)


def test_load_reports_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.conf")
    assert str(info.value).startswith(str(tmp_path / "nope.conf") + ": cannot open")


def test_load_refuses_directories_and_endless_devices(tmp_path):
    with pytest.raises(ConfigError, match="Is a directory"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="larger than"):
        load("/dev/zero")


def test_load_reads_bytes_and_names_file(tmp_path):
    p = tmp_path / "c.conf"
    p.write_bytes(b"General { LockFile /tmp/\xff\xfe }\nSync { Mode FTFW { } }\n")
    cfg = load(p)
    assert cfg.filename == str(p) and cfg.sync.mode == "ftfw"
    assert cfg.general.lock_file.encode("utf-8", "surrogateescape") == b"/tmp/\xff\xfe"
    p.write_bytes(b"General {\n  Bogus 1\n}\n")
    with pytest.raises(ConfigError, match=rf"^{p}:2:3: "):
        load(p)


def test_random_bytes_never_traceback():
    rng = random.Random(5)
    for _ in range(300):
        data = rng.randbytes(rng.randint(0, 80))
        try:
            parse(data)
        except ConfigError as exc:
            assert exc.line >= 1 and exc.col >= 1


# ----------------------------------------------------------------------------- dump


def test_dump_round_trips_shipped_and_corpus_files():
    files = sorted((ROOT / "fuzz" / "corpus" / "config").rglob("*.conf"))
    files += sorted(SHARE.rglob("*.conf")) if SHARE.is_dir() else []
    assert len(files) > 50
    accepted = 0
    for f in files:
        try:
            cfg = load(f)
        except ConfigError:
            continue
        accepted += 1
        text = dump(cfg)
        assert parse(text) == cfg, f
        assert dump(parse(text)) == text, f
    assert accepted > 60


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_dump_round_trip_property(rng):
    """parse(dump(cfg)) == cfg for every Config the parser produces."""
    text = generate(rng, noise=0.0)
    try:
        cfg = parse(text)
    except ConfigError:
        assume(False)
    printed = dump(cfg)
    assert parse(printed) == cfg
    assert dump(parse(printed)) == printed


# ----------------------------------------------------------------------------- scanner limits


def test_huge_numbers_wrap_like_c_without_error():
    g = parse("General { HashSize " + "9" * 10000 + " Nice -" + "9" * 5000 + " }").general
    assert g.hash_size == 0xFFFFFFFF        # strtol saturates, the int keeps the low 32 bits
    assert g.nice == 0


def test_ipv6_lexeme_matches_the_c_scanner_definition():
    """Our direct IPv6 matcher equals the C scanner's regular expression (longest match)."""
    import re

    from ctools.config.lexer import _ipv6_len

    h = "[0-9A-Fa-f]"
    rx = re.compile(rf"(?:(?:{h}{{1,4}}:?){{0,7}}::(?:{h}{{1,4}}:?){{0,7}}"
                    rf"|(?:{h}{{1,4}}:){{0,7}}{h}{{1,4}})(?:/[0-9]+)?")
    rng = random.Random(7)
    for n in range(20000):
        word = "".join(rng.choice("a1:::" if n % 2 else "aB1:/9 ")
                       for _ in range(rng.randint(1, 16)))
        want = next((e for e in range(len(word), 0, -1) if rx.fullmatch(word, 0, e)), 0)
        assert _ipv6_len(word, 0) == want, word


@pytest.mark.parametrize("text", ["a" * 20000, "1:" * 5000, ":" * 5000, "::1:" * 2500,
                                  "1." * 5000, "{" * 5000, "General { " * 3000])
def test_pathological_input_is_fast(text):
    import time

    start = time.perf_counter()
    with pytest.raises(ConfigError):
        parse(text)
    assert time.perf_counter() - start < 2.0


# ----------------------------------------------------------------------------- checker CLI


def test_checker_cli(tmp_path, capsys):
    from ctools.config.__main__ import main

    good = tmp_path / "good.conf"
    good.write_text("Sync { Mode ALARM { } UDP Default { IPv4_address 10.0.0.1 Port 1"
                    " Interface nosuch0 } }\n")
    assert main([str(good)]) == 0
    out, err = capsys.readouterr()
    assert "OK, sync mode ALARM, 1 link(s): UDP (default) 10.0.0.1 on nosuch0" in out
    assert f"warning: {good}:1:" in err and "nosuch0" in err
    assert main([str(good), "--dump"]) == 0
    assert parse(capsys.readouterr().out) == load(good)
    bad = tmp_path / "bad.conf"
    bad.write_text("General {\n  HashSize big\n}\n")
    assert main([str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {bad}:2:12: expected a number")
    helpers = tmp_path / "helpers.conf"
    helpers.write_text("Helper {\n Type ftp inet tcp {\n QueueNum 5\n Policy ftp {\n"
                       " ExpectMax 1\n ExpectTimeout 300\n }\n }\n}\n")
    assert main([str(helpers)]) == 0       # valid grammar: the daemon is what refuses it
    out, err = capsys.readouterr()
    assert "OK" in out and "Helper Type (ftp)" in err and "refuse to start" in err


@pytest.mark.parametrize("text, hint", [
    ("Sync { UDP { Interfaces eth0 } }", "did you mean 'Interface'?"),
    ("General { Hashsize 5 }", "did you mean 'HashSize'?"),
    ("Sync { Mode FTFW { RefreshTime 5 } }", "it belongs to Mode ALARM"),
    ("Sync { Mode ALARM { DisableExternalCache on } }", "it belongs to Mode FTFW or NOTRACK"),
    ("stats { }", "case sensitive: 'Stats'"),
])
def test_error_hints(text, hint):
    assert hint in err(text).message


def test_dump_of_a_config_built_in_code():
    from ctools.config import Config, General, Sync, UdpChannel, UnixSocket

    cfg = Config(general=General(unix=UnixSocket("/run/ct.ctl"), lock_file="/run/ct.lock"),
                 sync=Sync(mode="alarm", refresh_time=5, channels=[
                     UdpChannel(interface="eth1", ipv4_address="10.0.0.1",
                                ipv4_destination="10.0.0.2", port=3780)]))
    back = parse(dump(cfg))
    assert back.sync.mode == "alarm" and back.sync.refresh_time == 5
    (ch,) = back.sync.channels
    assert (ch.family, ch.address, ch.destination, ch.port) == ("ipv4", "10.0.0.1", "10.0.0.2", 3780)
    assert back.general.unix.path == "/run/ct.ctl" and back.general.lock_file == "/run/ct.lock"


_WORDS = st.sampled_from(["General", "Sync", "Stats", "Helper", "{", "}", "Mode", "FTFW", "UDP",
                          "TCP", "Multicast", "Default", "Filter", "From", "Kernelspace",
                          "Protocol", "Address", "State", "Accept", "for", "IPv4_address",
                          "IPv6_address", "Port", "Group", "Interface", "eth0", "on", "o|",
                          "1", "-1", "/p", "/p}", "::1", "beef", "1.2.3.4/8", "#c\n", "\n",
                          "Type", "ftp", "inet", "tcp", "Policy", "ExpectMax", "\x00", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=40), st.sampled_from([" ", "", "\n", "\t"]))
def test_any_token_soup_parses_or_raises_config_error(words, sep):
    text = sep.join(words)
    try:
        cfg = parse(text)
    except ConfigError as exc:
        assert 1 <= exc.line <= text.count("\n") + 1 and exc.col >= 1
        return
    assert parse(dump(cfg)) == cfg


@pytest.mark.parametrize("text", [
    "Sync { Mode ALARM { } Mode NOTRACK { DisableInternalCache on DisableExternalCache on"
    " StartupResync on } }",
    "Sync { Mode FTFW { } Mode NOTRACK { DisableInternalCache on } }",
    "General { Filter { Protocol Accept { SCTP igmp IPv6-ICMP } } }",
])
def test_dump_round_trip_mixed_modes_and_protocol_names(text):
    cfg = parse(text)
    assert parse(dump(cfg)) == cfg
