"""Print a ``Config`` back as conntrackd.conf text.

The output parses to an equal ``Config`` (``parse(dump(cfg)) == cfg``) for every ``Config``
that ``parse`` can produce. Every value is written out, defaults included, so the text also
serves as "the effective configuration".
"""

from __future__ import annotations

import functools

from . import lexer as lx
from .model import (
    Channel,
    Config,
    Filter,
    General,
    Helper,
    McastChannel,
    Stats,
    Sync,
    TcpChannel,
    UdpChannel,
)

_INDENT = "    "


def _onoff(value: bool) -> str:
    return "on" if value else "off"


@functools.lru_cache(maxsize=256)
def _protocol_name(number: int) -> str:
    """A name for IP protocol ``number`` that the lexer reads as a plain name."""
    if number == 6:
        return "TCP"
    if number == 17:
        return "UDP"
    candidates: list[str] = []
    try:
        with open("/etc/protocols", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[1] == str(number):
                    candidates += [fields[0], *fields[2:]]
    except OSError:
        pass
    for name in candidates:
        toks = lx.tokenize(name)
        if len(toks) == 2 and toks[0].kind == lx.STRING:
            return name
    raise ValueError(f"no printable name for IP protocol {number}")


def _general(g: General, out: list[str]) -> None:
    i = _INDENT
    out.append("General {")
    out.append(f"{i}HashSize {g.hash_size}")
    out.append(f"{i}HashLimit {g.hash_limit}")
    out.append(f"{i}LogFile {g.log_file or 'off'}")
    out.append(f"{i}Syslog {g.syslog_facility or 'off'}")
    out.append(f"{i}LockFile {g.lock_file}")
    out.append(f"{i}UNIX {{")
    if g.unix.path:
        out.append(f"{i * 2}Path {g.unix.path}")
    if g.unix.backlog is not None:
        out.append(f"{i * 2}Backlog {g.unix.backlog}")
    out.append(f"{i}}}")
    out.append(f"{i}NetlinkBufferSize {g.netlink_buffer_size}")
    out.append(f"{i}NetlinkBufferSizeMaxGrowth {g.netlink_buffer_size_max_grow}")
    resync = g.netlink_overrun_resync
    out.append(f"{i}NetlinkOverrunResync {'off' if resync is None else resync}")
    out.append(f"{i}NetlinkEventsReliable {_onoff(g.netlink_events_reliable)}")
    if g.poll_secs is not None:
        out.append(f"{i}PollSecs {g.poll_secs}")
    out.append(f"{i}EventIterationLimit {g.event_iterations_limit}")
    if g.nice is not None:
        out.append(f"{i}Nice {g.nice:+d}")
    if g.scheduler is not None:
        out.append(f"{i}Scheduler {{")
        if g.scheduler.type is not None:
            out.append(f"{i * 2}Type {g.scheduler.type}")
        if g.scheduler.priority is not None:
            out.append(f"{i * 2}Priority {g.scheduler.priority}")
        out.append(f"{i}}}")
    out.append(f"{i}Systemd {_onoff(g.systemd)}")
    if g.filter is not None:
        _filter(g.filter, out)
    if g.metrics is not None:
        out.append(f"{i}Metrics {{")
        out.append(f"{i * 2}Address {g.metrics.address}")
        out.append(f"{i * 2}Port {g.metrics.port}")
        out.append(f"{i}}}")
    out.append("}")


def _filter(f: Filter, out: list[str]) -> None:
    i = _INDENT
    out.append(f"{i}Filter From {'Userspace' if f.from_userspace else 'Kernelspace'} {{")
    if f.protocol is not None:
        names = " ".join(_protocol_name(p) for p in f.protocol.protocols)
        out.append(f"{i * 2}Protocol {f.protocol.policy.capitalize()} {{ {names} }}")
    if f.address is not None:
        out.append(f"{i * 2}Address {f.address.policy.capitalize()} {{")
        out.extend(f"{i * 3}IPv4_address {a}" for a in f.address.ipv4)
        out.extend(f"{i * 3}IPv6_address {a}" for a in f.address.ipv6)
        out.append(f"{i * 2}}}")
    if f.state is not None:
        states = " ".join(f.state.states)
        body = f" {states} for TCP " if states else " "
        out.append(f"{i * 2}State {f.state.policy.capitalize()} {{{body}}}")
    out.append(f"{i}}}")


def _channel(ch: Channel, out: list[str]) -> None:
    i = _INDENT * 2
    out.append(f"{_INDENT}{ch.kind}{' Default' if ch.default else ''} {{")
    v4: list[str] = []
    v6: list[str] = []
    if ch.ipv4_address is not None:
        v4.append(f"{i}IPv4_address {ch.ipv4_address}")
    if ch.ipv6_address is not None:
        v6.append(f"{i}IPv6_address {ch.ipv6_address}")
    if isinstance(ch, (UdpChannel, TcpChannel)):
        if ch.ipv4_destination is not None:
            v4.append(f"{i}IPv4_Destination_Address {ch.ipv4_destination}")
        if ch.ipv6_destination is not None:
            v6.append(f"{i}IPv6_Destination_Address {ch.ipv6_destination}")
    if isinstance(ch, McastChannel) and ch.ipv4_interface is not None:
        v4.append(f"{i}IPv4_interface {ch.ipv4_interface}")
    # the last address clause decides the family
    out.extend(v4 + v6 if ch.family == "ipv6" else v6 + v4)
    if ch.interface is not None:
        out.append(f"{i}Interface {ch.interface}")
    if isinstance(ch, McastChannel):
        out.append(f"{i}Group {ch.group}")
    else:
        out.append(f"{i}Port {ch.port}")  # type: ignore[attr-defined]
    out.append(f"{i}SndSocketBuffer {ch.sndbuf}")
    out.append(f"{i}RcvSocketBuffer {ch.rcvbuf}")
    out.append(f"{i}Checksum {_onoff(ch.checksum)}")
    if isinstance(ch, TcpChannel) and ch.error_queue_length is not None:
        out.append(f"{i}ErrorQueueLength {ch.error_queue_length}")
    out.append(f"{_INDENT}}}")


def _sync(s: Sync, out: list[str]) -> None:
    i = _INDENT
    out.append("Sync {")
    # a Config built in code may leave mode_explicit unset: still say which mode it is
    if s.mode_explicit or s.mode != "ftfw":
        body: list[str] = []
        extra: list[str] = []   # clauses only a lower-precedence NOTRACK block can carry
        if s.mode == "ftfw":
            body += [f"ResendQueueSize {s.resend_queue_size}",
                     f"ACKWindowSize {s.ack_window_size}",
                     f"DisableExternalCache {_onoff(s.disable_external_cache)}",
                     f"StartupResync {_onoff(s.startup_resync)}"]
            if s.disable_internal_cache:
                extra.append("DisableInternalCache on")
        elif s.mode == "notrack":
            body += [f"DisableInternalCache {_onoff(s.disable_internal_cache)}",
                     f"DisableExternalCache {_onoff(s.disable_external_cache)}",
                     f"StartupResync {_onoff(s.startup_resync)}"]
        else:
            if s.disable_internal_cache:
                extra.append("DisableInternalCache on")
            if s.disable_external_cache:
                extra.append("DisableExternalCache on")
            if s.startup_resync:
                extra.append("StartupResync on")
        out.append(f"{i}Mode {s.mode.upper()} {{")
        out.extend(f"{i * 2}{line}" for line in body)
        out.append(f"{i}}}")
        if extra:
            out.append(f"{i}Mode NOTRACK {{")
            out.extend(f"{i * 2}{line}" for line in extra)
            out.append(f"{i}}}")
    out.append(f"{i}RefreshTime {s.refresh_time}")
    out.append(f"{i}CacheTimeout {s.cache_timeout}")
    out.append(f"{i}CommitTimeout {s.commit_timeout}")
    out.append(f"{i}PurgeTimeout {s.purge_timeout}")
    for ch in s.channels:
        _channel(ch, out)
    o = s.options
    out.append(f"{i}Options {{")
    out.append(f"{i * 2}TCPWindowTracking {_onoff(o.tcp_window_tracking)}")
    if o.expectation_sync and o.expectation_helpers:
        out.append(f"{i * 2}ExpectationSync {{ {' '.join(o.expectation_helpers)} }}")
    else:
        out.append(f"{i * 2}ExpectationSync {_onoff(o.expectation_sync)}")
    if o.authentication_key_file is not None:
        out.append(f"{i * 2}AuthenticationKeyFile {o.authentication_key_file}")
    out.append(f"{i}}}")
    out.append("}")


def _stats(st: Stats, out: list[str]) -> None:
    out.append("Stats {")
    out.append(f"{_INDENT}LogFile {st.log_file or 'off'}")
    out.append(f"{_INDENT}Syslog {st.syslog_facility or 'off'}")
    out.append("}")


def _helper(h: Helper, out: list[str]) -> None:
    i = _INDENT
    out.append("Helper {")
    if h.setup is not None:
        out.append(f"{i}Setup {_onoff(h.setup)}")
    for t in h.types:
        out.append(f"{i}Type {t.name} {t.l3proto} {t.l4proto} {{")
        out.append(f"{i * 2}QueueNum {t.queue_num}")
        out.append(f"{i * 2}QueueLen {t.queue_len}")
        for p in t.policies:
            out.append(f"{i * 2}Policy {p.name} {{")
            out.append(f"{i * 3}ExpectMax {p.expect_max}")
            out.append(f"{i * 3}ExpectTimeout {p.expect_timeout}")
            out.append(f"{i * 2}}}")
        out.append(f"{i}}}")
    out.append("}")


def dump(cfg: Config) -> str:
    """The configuration as conntrackd.conf text (ends with a newline)."""
    out: list[str] = []
    _general(cfg.general, out)
    if cfg.sync is not None:
        _sync(cfg.sync, out)
    if cfg.stats is not None:
        _stats(cfg.stats, out)
    if cfg.helper is not None:
        _helper(cfg.helper, out)
    return "\n".join(out) + "\n"
