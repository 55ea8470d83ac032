"""conntrackd.conf parser: tokens -> typed ``Config``.

A hand-written recursive-descent parser over the same grammar as the C daemon's, so the two
accept the same files (see docs/compat-config.md for the few deliberate differences). Every
refusal is a ``ConfigError`` carrying file:line:col of the offending token and what was
expected there; every remark the C daemon logs as WARNING becomes a ``ConfigWarning``.
"""

from __future__ import annotations

import difflib
import socket
from collections.abc import Callable
from typing import cast

from . import lexer as lx
from .errors import ConfigError
from .lexer import Token, c_long, tokenize
from .model import (
    DEFAULT_LOG_FILE,
    DEFAULT_STATS_LOG_FILE,
    DEFAULT_SYSLOG_FACILITY,
    FILENAME_MAX,
    HELPER_POLICY_NAME_MAX,
    HELPERS,
    MAX_CHANNELS,
    SYSLOG_FACILITIES,
    TCP_FILTER_STATES,
    UNIX_PATH_MAX,
    AddressFilter,
    Channel,
    Config,
    ConfigWarning,
    Filter,
    Helper,
    HelperPolicy,
    HelperType,
    McastChannel,
    Metrics,
    ProtocolFilter,
    Scheduler,
    StateFilter,
    Stats,
    Sync,
    TcpChannel,
    UdpChannel,
)

_MODE_PRECEDENCE = ("ftfw", "alarm", "notrack")   # C picks by flag, not by order
_MODE_CLAUSES = {
    "ftfw": ("ResendQueueSize", "CommitTimeout", "PurgeTimeout", "ACKWindowSize",
             "DisableExternalCache", "StartupResync"),
    "alarm": ("RefreshTime", "CacheTimeout", "CommitTimeout", "PurgeTimeout"),
    "notrack": ("CommitTimeout", "PurgeTimeout", "DisableInternalCache",
                "DisableExternalCache", "StartupResync"),
}
_CHANNEL_CLAUSES = {
    "Multicast": ("IPv4_address", "IPv6_address", "IPv4_interface", "IPv6_interface",
                  "Interface", "Group", "SndSocketBuffer", "RcvSocketBuffer", "Checksum"),
    "UDP": ("IPv4_address", "IPv6_address", "IPv4_Destination_Address",
            "IPv6_Destination_Address", "Interface", "Port", "SndSocketBuffer",
            "RcvSocketBuffer", "Checksum"),
    "TCP": ("IPv4_address", "IPv6_address", "IPv4_Destination_Address",
            "IPv6_Destination_Address", "Interface", "Port", "SndSocketBuffer",
            "RcvSocketBuffer", "Checksum", "ErrorQueueLength"),
}
_CHANNEL_CLASS: dict[str, type[Channel]] = {
    "Multicast": McastChannel, "UDP": UdpChannel, "TCP": TcpChannel,
}
# Deepest nesting of Helper Type blocks the C parser's stack (10000 entries) holds.
HELPER_NESTING_MAX = 1665
_STATE_KEYWORDS = {s: s for s in TCP_FILTER_STATES} | {"CLOSED": "CLOSE"}
_U32 = 0xFFFFFFFF


def c_atoi(text: str) -> int:
    """The C daemon's number conversion: ``(int)strtol()``, saturating then wrapping to 32 bits."""
    value = c_long(text) & _U32
    return value - (1 << 32) if value & 0x80000000 else value


def inet_aton(text: str) -> str | None:
    """Dotted-quad IPv4 text as the C library's inet_aton() reads it, in canonical form.

    The lexer only ever hands over four dot-separated digit groups; a group with a leading
    zero is octal (so ``010.0.0.1`` is 8.0.0.1 and ``08.0.0.1`` is invalid).
    """
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not part or not part.isdigit() or not part.isascii():
            return None
        try:
            value = int(part, 8) if len(part) > 1 and part[0] == "0" else int(part)
        except ValueError:
            return None
        if value > 255:
            return None
        octets.append(str(value))
    return ".".join(octets)


def inet6_pton(text: str) -> str | None:
    """Canonical IPv6 text, or None if the C library's inet_pton() refuses it."""
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
    except (OSError, ValueError):
        return None


def _mask_v4(addr: str, length: int) -> str:
    value = int.from_bytes(socket.inet_aton(addr), "big")
    mask = (_U32 << (32 - length)) & _U32
    return socket.inet_ntoa((value & mask).to_bytes(4, "big"))


def _mask_v6(addr: str, length: int) -> str:
    value = int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big")
    full = (1 << 128) - 1
    mask = (full << (128 - length)) & full
    return socket.inet_ntop(socket.AF_INET6, (value & mask).to_bytes(16, "big"))


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.filename = filename
        self.cfg = Config(filename=filename)
        self.modes_seen: set[str] = set()
        self.sync_token: Token | None = None
        self.stats_token: Token | None = None
        # Helper items written outside a Type block wait here for the next Type (as in C)
        self.helper_pending: list[tuple[str, object, Token]] = []
        self.link_overflow: Token | None = None   # an empty fifth link block

    # ------------------------------------------------------------------ helpers

    def error(self, tok: Token, message: str) -> ConfigError:
        return ConfigError(self.filename, tok.line, tok.col, message)

    def warn(self, tok: Token, message: str) -> None:
        self.cfg.warnings.append(ConfigWarning(self.filename, tok.line, tok.col, message))

    def next(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != lx.EOF:
            self.i += 1
        return tok

    def peek(self) -> Token:
        return self.toks[self.i]

    def unexpected(self, tok: Token, expected: str) -> ConfigError:
        return self.error(tok, f"expected {expected}, found {tok.describe()}")

    def expect_char(self, char: str, context: str) -> Token:
        tok = self.next()
        if tok.kind != lx.CHAR or tok.text != char:
            raise self.unexpected(tok, f"'{char}' {context}")
        return tok

    def block(self, name: str, opener: Token, clauses: dict[str, Callable[[Token], None]],
              extra: str = "") -> None:
        """Parse ``{ clause… }``; ``clauses`` maps a keyword to its handler."""
        self.expect_char("{", f"to open the {name} block")
        while True:
            tok = self.next()
            if tok.kind == lx.CHAR and tok.text == "}":
                return
            handler = clauses.get(tok.text) if tok.kind in (lx.KEYWORD, lx.STRING) else None
            if handler is not None and (tok.kind == lx.KEYWORD or tok.text in _EXTENSIONS):
                handler(tok)
                continue
            if tok.kind == lx.EOF:
                raise self.error(tok, f"unexpected end of file: missing '}}' to close the {name}"
                                 f" block opened at line {opener.line}, column {opener.col}")
            allowed = ", ".join(k for k in clauses) + (extra and f", {extra}")
            hint = ""
            if tok.kind in (lx.KEYWORD, lx.STRING):
                close = difflib.get_close_matches(tok.text, list(clauses), n=1, cutoff=0.75)
                if close and close[0] != tok.text:
                    hint = f" (did you mean '{close[0]}'?)"
                elif name.startswith("Mode "):
                    modes = [m.upper() for m, cs in _MODE_CLAUSES.items() if tok.text in cs]
                    if modes:
                        hint = f" (it belongs to Mode {' or '.join(modes)})"
            raise self.error(tok, f"unexpected {tok.describe()} in the {name} block{hint};"
                             f" expected '}}' or one of: {allowed}")

    def number(self, clause: Token) -> tuple[int, Token]:
        """Signed 32-bit value of the NUMBER after ``clause`` (C conversion rules)."""
        tok = self.next()
        if tok.kind != lx.NUMBER:
            raise self.unexpected(tok, f"a number after '{clause.text}'")
        value = c_atoi(tok.text)
        if c_long(tok.text) > _U32:
            self.warn(tok, f"{tok.text} does not fit in 32 bits; it is read as"
                      f" {value & _U32} (as conntrackd does)")
        return value, tok

    def unsigned(self, clause: Token) -> int:
        return self.number(clause)[0] & _U32

    def port(self, clause: Token) -> int:
        value, tok = self.number(clause)
        value &= _U32
        if value > 0xFFFF:
            self.warn(tok, f"port {value} is out of range; it is read as {value & 0xFFFF}")
            value &= 0xFFFF
        return value

    def boolean(self, clause: Token) -> bool:
        tok = self.next()
        if tok.kind not in (lx.ON, lx.OFF):
            raise self.unexpected(tok, f"on/off (or yes/no) after '{clause.text}'")
        return tok.kind == lx.ON

    def path(self, clause: Token, limit: int, what: str) -> str:
        tok = self.next()
        if tok.kind != lx.PATH:
            raise self.unexpected(tok, f"an absolute path after '{clause.text}'")
        value = tok.text
        if "\0" in value:
            # C string handling stops at the NUL byte
            value = value.split("\0", 1)[0]
            self.warn(tok, f"{what} path contains a NUL byte; truncated to '{value}'")
        if len(value.encode("utf-8", "surrogateescape")) > limit:
            raise self.error(tok, f"{what} path is longer than {limit} characters")
        # A CRLF file would otherwise leave a carriage return at the end of every path
        # (the C daemon keeps it); the limit above is still checked on the raw text.
        return value.rstrip("\r") or value

    def ip_token(self, clause: Token) -> Token:
        tok = self.next()
        if tok.kind != lx.IP:
            raise self.unexpected(tok, f"an address after '{clause.text}'")
        return tok

    def string(self, clause: Token, what: str = "a name") -> Token:
        tok = self.next()
        if tok.kind != lx.STRING:
            raise self.unexpected(tok, f"{what} after '{clause.text}'")
        return tok

    # ------------------------------------------------------------------ top level

    def parse(self) -> Config:
        sections = {"General": self.general, "Sync": self.sync, "Stats": self.stats,
                    "Helper": self.helper}
        while True:
            tok = self.next()
            if tok.kind == lx.EOF:
                break
            handler = sections.get(tok.text) if tok.kind == lx.KEYWORD else None
            if handler is None:
                exc = self.unexpected(tok, "a section: General, Sync, Stats or Helper")
                fixed = {k.lower(): k for k in sections}.get(tok.text.lower())
                if fixed:
                    exc.message += f" (section names are case sensitive: '{fixed}')"
                raise exc
            handler(tok)
        if self.link_overflow is not None:
            raise self.error(self.link_overflow, f"too many dedicated links: at most"
                             f" {MAX_CHANNELS} (this one is empty)")
        sync = self.cfg.sync
        if sync is not None:
            for mode in _MODE_PRECEDENCE:
                if mode in self.modes_seen:
                    sync.mode = mode  # type: ignore[assignment]
                    sync.mode_explicit = True
                    break
            if sync.commit_timeout and sync.disable_external_cache:
                # committing needs an external cache; conntrackd drops the clause likewise
                self.warn(self.toks[-1], "'CommitTimeout' has no effect with"
                          " 'DisableExternalCache on'; ignored")
                sync.commit_timeout = 0
        return self.cfg

    # ------------------------------------------------------------------ General

    def general(self, opener: Token) -> None:
        g = self.cfg.general

        def hash_size(t: Token) -> None:
            g.hash_size = self.unsigned(t) or 65536

        def hash_limit(t: Token) -> None:
            g.hash_limit = self.unsigned(t) or 262144

        def log_file(t: Token) -> None:
            g.log_file = self.log_target(t, DEFAULT_LOG_FILE, "LogFile")

        def syslog(t: Token) -> None:
            value, named = self.syslog_target(t, g.syslog_facility)
            g.syslog_facility = value
            stats = self.cfg.stats
            # conntrackd compares the two only when a facility is named
            if named and stats is not None and stats.syslog_facility not in (None, value):
                self.warn(t, "Syslog facilities of General and Stats differ;"
                          " the General one is used")

        def lock_file(t: Token) -> None:
            g.lock_file = self.path(t, FILENAME_MAX, "LockFile")

        def unix(t: Token) -> None:
            def path(c: Token) -> None:
                g.unix.path = self.path(c, UNIX_PATH_MAX, "UNIX socket")

            def backlog(c: Token) -> None:
                g.unix.backlog = self.unsigned(c)
                self.warn(c, "'Backlog' is deprecated and ignored")

            self.block("UNIX", t, {"Path": path, "Backlog": backlog})

        def buffer_size(t: Token) -> None:
            g.netlink_buffer_size = self.unsigned(t)

        def buffer_max(t: Token) -> None:
            g.netlink_buffer_size_max_grow = self.unsigned(t)

        def overrun(t: Token) -> None:
            tok = self.peek()
            if tok.kind in (lx.ON, lx.OFF):
                g.netlink_overrun_resync = 30 if self.boolean(t) else None
                return
            if tok.kind != lx.NUMBER:
                raise self.unexpected(self.next(), f"on, off or a number of seconds after"
                                      f" '{t.text}'")
            value = self.number(t)[0]
            g.netlink_overrun_resync = None if value < 0 else (value or 30)

        def events_reliable(t: Token) -> None:
            g.netlink_events_reliable = self.boolean(t)

        def poll_secs(t: Token) -> None:
            value, tok = self.number(t)
            if value == 0:
                raise self.error(tok, "'PollSecs' must be greater than 0")
            g.poll_secs = value & _U32

        def iterations(t: Token) -> None:
            g.event_iterations_limit = self.unsigned(t) or 100

        def nice(t: Token) -> None:
            tok = self.next()
            if tok.kind != lx.SIGNED:
                raise self.unexpected(tok, f"a signed number (like -5 or +5) after '{t.text}'")
            g.nice = c_atoi(tok.text)
            self.warn(t, "'Nice' is deprecated and ignored; use nice(1) or renice(1)")

        def scheduler(t: Token) -> None:
            sched = g.scheduler or Scheduler()
            g.scheduler = sched

            def sched_type(c: Token) -> None:
                tok = self.string(c, "RR or FIFO")
                name = tok.text.upper()
                if name not in ("RR", "FIFO"):
                    raise self.error(tok, f"unknown scheduler '{tok.text}': expected RR or FIFO")
                sched.type = name  # type: ignore[assignment]

            def priority(c: Token) -> None:
                value, tok = self.number(c)
                if not 0 <= value <= 99:
                    raise self.error(tok, f"scheduler priority {tok.text} is out of range"
                                     " [0, 99]")
                sched.priority = value

            self.block("Scheduler", t, {"Type": sched_type, "Priority": priority})

        def systemd(t: Token) -> None:
            g.systemd = self.boolean(t)

        def metrics(t: Token) -> None:
            m = g.metrics or Metrics()
            g.metrics = m

            def address(c: Token) -> None:
                tok = self.ip_token(c)
                value = inet_aton(tok.text) or inet6_pton(tok.text)
                if value is None:
                    raise self.error(tok, f"'{tok.text}' is not a valid IPv4 or IPv6 address")
                m.address = value

            def port(c: Token) -> None:
                m.port = self.port(c)

            self.block("Metrics", t, {"Address": address, "Port": port})

        clauses: dict[str, Callable[[Token], None]] = {
            "HashSize": hash_size, "HashLimit": hash_limit, "LogFile": log_file,
            "Syslog": syslog, "LockFile": lock_file, "UNIX": unix,
            "NetlinkBufferSize": buffer_size, "SocketBufferSize": buffer_size,
            "NetlinkBufferSizeMaxGrowth": buffer_max, "SocketBufferSizeMaxGrowth": buffer_max,
            "SocketBufferSizeMaxGrown": buffer_max, "EventIterationLimit": iterations,
            "PollSecs": poll_secs, "Filter": self.filter, "NetlinkOverrunResync": overrun,
            "NetlinkEventsReliable": events_reliable, "Nice": nice, "Scheduler": scheduler,
            "Systemd": systemd, "Metrics": metrics,
        }
        self.block("General", opener, clauses)

    def log_target(self, clause: Token, default: str, what: str) -> str | None:
        tok = self.peek()
        if tok.kind in (lx.ON, lx.OFF):
            return default if self.boolean(clause) else None
        if tok.kind != lx.PATH:
            raise self.unexpected(self.next(), f"on, off or an absolute path after"
                                  f" '{clause.text}'")
        return self.path(clause, FILENAME_MAX, what)

    def syslog_target(self, clause: Token, current: str | None) -> tuple[str | None, bool]:
        """The facility after ``Syslog`` and whether it was given by name."""
        tok = self.next()
        if tok.kind in (lx.ON, lx.OFF):
            return (DEFAULT_SYSLOG_FACILITY if tok.kind == lx.ON else None), False
        if tok.kind != lx.STRING:
            raise self.unexpected(tok, f"on, off or a syslog facility after '{clause.text}'")
        if tok.text not in SYSLOG_FACILITIES:
            self.warn(tok, f"'{tok.text}' is not a known syslog facility (daemon, local0 …"
                      " local7); ignored")
            return current, False
        return tok.text, True

    # ------------------------------------------------------------------ Filter

    def filter(self, opener: Token) -> None:
        g = self.cfg.general
        flt = g.filter or Filter()
        g.filter = flt
        userspace = True
        if self.peek().kind == lx.KEYWORD and self.peek().text == "From":
            self.next()
            where = self.next()
            if where.kind != lx.KEYWORD or where.text not in ("Userspace", "Kernelspace"):
                raise self.unexpected(where, "Userspace or Kernelspace after 'From'")
            userspace = where.text == "Userspace"

        def policy(c: Token) -> str:
            tok = self.next()
            if tok.kind != lx.KEYWORD or tok.text not in ("Accept", "Ignore"):
                raise self.unexpected(tok, f"Accept or Ignore after '{c.text}'")
            return tok.text.lower()

        def protocol(c: Token) -> None:
            pol = policy(c)
            self.expect_char("{", "to open the protocol list")
            items: list[int] = []
            while True:
                tok = self.next()
                if tok.kind == lx.CHAR and tok.text == "}":
                    break
                if tok.kind == lx.KEYWORD and tok.text in ("TCP", "UDP"):
                    items.append(6 if tok.text == "TCP" else 17)
                elif tok.kind == lx.STRING:
                    try:
                        items.append(socket.getprotobyname(tok.text))
                    except OSError:
                        self.warn(tok, f"unknown protocol '{tok.text}' (not in"
                                  " /etc/protocols); ignored")
                else:
                    raise self.unexpected(tok, "a protocol name or '}'")
            pf = flt.protocol or ProtocolFilter()
            pf.policy = pol  # type: ignore[assignment]
            for p in items:
                if p not in pf.protocols:
                    pf.protocols.append(p)
            flt.protocol = pf

        def address(c: Token) -> None:
            pol = policy(c)
            af = flt.address or AddressFilter()
            self.expect_char("{", "to open the address list")
            while True:
                tok = self.next()
                if tok.kind == lx.CHAR and tok.text == "}":
                    break
                if tok.kind != lx.KEYWORD or tok.text not in ("IPv4_address", "IPv6_address"):
                    raise self.unexpected(tok, "IPv4_address, IPv6_address or '}'")
                self.filter_address(af, tok, self.ip_token(tok))
            af.policy = pol  # type: ignore[assignment]
            flt.address = af

        def state(c: Token) -> None:
            pol = policy(c)
            sf = flt.state or StateFilter()
            self.expect_char("{", "to open the state list")
            pending: list[str] = []
            while True:
                tok = self.next()
                if tok.kind == lx.KEYWORD and tok.text in _STATE_KEYWORDS:
                    pending.append(_STATE_KEYWORDS[tok.text])
                    continue
                if tok.kind == lx.KEYWORD and tok.text == "for":
                    proto = self.next()
                    if proto.kind != lx.KEYWORD or proto.text != "TCP":
                        raise self.unexpected(proto, "TCP after 'for' (state filters exist"
                                              " for TCP only)")
                    for s in pending:
                        if s not in sf.states:
                            sf.states.append(s)
                    pending = []
                    continue
                if tok.kind == lx.CHAR and tok.text == "}" and not pending:
                    break
                if pending:
                    raise self.unexpected(tok, "another TCP state or 'for TCP'")
                raise self.unexpected(tok, "a TCP state name, 'for TCP' or '}'")
            sf.policy = pol  # type: ignore[assignment]
            flt.state = sf

        self.block("Filter", opener, {"Protocol": protocol, "Address": address,
                                      "State": state})
        flt.from_userspace = userspace

    def filter_address(self, af: AddressFilter, clause: Token, tok: Token) -> None:
        v6 = clause.text == "IPv6_address"
        maxlen = 128 if v6 else 32
        text, slash, cidr_text = tok.text.partition("/")
        length = maxlen
        if slash:
            length = c_atoi(cidr_text) if cidr_text.isdigit() else -1
            if not v6:
                length &= _U32
            if length > maxlen or length < 0:
                self.warn(tok, f"{text}/{cidr_text} is not a valid network; ignored")
                return
        addr = inet6_pton(text) if v6 else inet_aton(text)
        if addr is None:
            self.warn(tok, f"{text} is not a valid {'IPv6' if v6 else 'IPv4'} address; ignored")
            return
        if length < maxlen:
            item = f"{(_mask_v6 if v6 else _mask_v4)(addr, length)}/{length}"
        else:
            item = addr
        items = af.ipv6 if v6 else af.ipv4
        if item in items:
            if not v6 and length < maxlen:   # the only duplicate conntrackd remarks on
                self.warn(tok, f"{item} is listed twice in the address filter")
            return
        items.append(item)

    # ------------------------------------------------------------------ Sync

    def sync(self, opener: Token) -> None:
        if self.cfg.sync is None:
            self.cfg.sync = Sync()
        s = self.cfg.sync

        def timer(t: Token) -> None:
            self.sync_timer(s, t)

        def mode(t: Token) -> None:
            tok = self.next()
            if tok.kind != lx.MODE:
                raise self.unexpected(tok, "a synchronisation mode (FTFW, ALARM or NOTRACK)"
                                      " after 'Mode'")
            name, legacy = cast("tuple[str, bool]", tok.value)
            if legacy:
                self.warn(tok, f"'{tok.text}' is the old name of mode '{name}'; please"
                          f" write {name.upper()}")
            self.modes_seen.add(name)
            allowed = _MODE_CLAUSES[name]
            handlers = {k: v for k, v in mode_clauses.items() if k in allowed}
            self.block(f"Mode {name.upper()}", t, handlers)

        def flag(attr: str) -> Callable[[Token], None]:
            def handler(t: Token) -> None:
                setattr(s, attr, self.boolean(t))
            return handler

        def resend_queue(t: Token) -> None:
            s.resend_queue_size = self.unsigned(t) or 131072

        def window(t: Token) -> None:
            s.ack_window_size = self.unsigned(t) or 300

        mode_clauses: dict[str, Callable[[Token], None]] = {
            "ResendQueueSize": resend_queue, "RefreshTime": timer, "CacheTimeout": timer,
            "CommitTimeout": timer, "PurgeTimeout": timer, "ACKWindowSize": window,
            "DisableInternalCache": flag("disable_internal_cache"),
            "DisableExternalCache": flag("disable_external_cache"),
            "StartupResync": flag("startup_resync"),
        }

        def options(t: Token) -> None:
            o = s.options

            def window_tracking(c: Token) -> None:
                o.tcp_window_tracking = self.boolean(c)

            def expectation(c: Token) -> None:
                tok = self.peek()
                if tok.kind == lx.CHAR and tok.text == "{":
                    self.next()
                    while True:
                        item = self.next()
                        if item.kind == lx.CHAR and item.text == "}":
                            break
                        if item.kind != lx.STRING:
                            raise self.unexpected(item, "a helper name or '}'")
                        if item.text not in o.expectation_helpers:
                            o.expectation_helpers.append(item.text)
                    o.expectation_sync = True
                    return
                o.expectation_sync = self.boolean(c)
                if not o.expectation_sync:
                    o.expectation_helpers = []

            def key_file(c: Token) -> None:
                o.authentication_key_file = self.path(c, FILENAME_MAX, "AuthenticationKeyFile")

            self.block("Options", t, {"TCPWindowTracking": window_tracking,
                                      "ExpectationSync": expectation,
                                      "AuthenticationKeyFile": key_file})

        clauses: dict[str, Callable[[Token], None]] = {
            "RefreshTime": timer, "CacheTimeout": timer, "CommitTimeout": timer,
            "PurgeTimeout": timer, "Mode": mode, "Multicast": self.channel,
            "UDP": self.channel, "TCP": self.channel, "Options": options,
        }
        self.block("Sync", opener, clauses)
        if self.cfg.stats is not None:
            raise self.error(opener, "a file cannot have both a Stats and a Sync section"
                             f" (Stats at line {self.stats_token.line})"  # type: ignore[union-attr]
                             )
        self.sync_token = opener

    def sync_timer(self, s: Sync, clause: Token) -> None:
        value = self.unsigned(clause)
        if clause.text == "RefreshTime":
            s.refresh_time = value or 60
        elif clause.text == "CacheTimeout":
            s.cache_timeout = value or 180
        elif clause.text == "CommitTimeout":
            s.commit_timeout = value
        else:
            s.purge_timeout = value or 60

    def channel(self, opener: Token) -> None:
        s = self.cfg.sync
        assert s is not None
        kind = opener.text
        ch = _CHANNEL_CLASS[kind]()
        if self.peek().kind == lx.KEYWORD and self.peek().text == "Default":
            self.next()
            ch.default = True
        too_many = f"too many dedicated links: at most {MAX_CHANNELS}"

        def address(c: Token) -> None:
            tok = self.ip_token(c)
            v6 = "IPv6" in c.text
            value = inet6_pton(tok.text) if v6 else inet_aton(tok.text)
            if value is None:
                self.warn(tok, f"{tok.text} is not a valid {'IPv6' if v6 else 'IPv4'}"
                          f" address; '{c.text}' ignored")
                return
            family = "ipv6" if v6 else "ipv4"
            if c.text == "IPv6_interface":
                self.warn(c, "'IPv6_interface' is not needed (the Interface is used); ignored")
                return
            if isinstance(ch, McastChannel) and ch.family not in (None, family):
                self.warn(c, f"'{c.text}' is {family.replace('ip', 'IP')} but the link is"
                          f" already {ch.family.replace('ip', 'IP')}; ignored")
                return
            attr = {"IPv4_address": "ipv4_address", "IPv6_address": "ipv6_address",
                    "IPv4_Destination_Address": "ipv4_destination",
                    "IPv6_Destination_Address": "ipv6_destination",
                    "IPv4_interface": "ipv4_interface"}[c.text]
            setattr(ch, attr, value)
            ch.family = family  # type: ignore[assignment]

        def interface(c: Token) -> None:
            tok = self.string(c, "an interface name")
            ch.interface = tok.text
            try:
                socket.if_nametoindex(tok.text)
            except OSError:
                self.warn(tok, f"interface '{tok.text}' does not exist (yet)")

        def port(c: Token) -> None:
            value = self.port(c)
            if isinstance(ch, McastChannel):
                ch.group = value
            else:
                ch.port = value  # type: ignore[attr-defined]

        def sndbuf(c: Token) -> None:
            ch.sndbuf = self.unsigned(c)

        def rcvbuf(c: Token) -> None:
            ch.rcvbuf = self.unsigned(c)

        def checksum(c: Token) -> None:
            ch.checksum = self.boolean(c)

        def error_queue(c: Token) -> None:
            assert isinstance(ch, TcpChannel)
            ch.error_queue_length = self.unsigned(c) or None

        handlers: dict[str, Callable[[Token], None]] = {
            "IPv4_address": address, "IPv6_address": address, "IPv4_interface": address,
            "IPv6_interface": address, "IPv4_Destination_Address": address,
            "IPv6_Destination_Address": address, "Interface": interface, "Group": port,
            "Port": port, "SndSocketBuffer": sndbuf, "RcvSocketBuffer": rcvbuf,
            "Checksum": checksum, "ErrorQueueLength": error_queue,
        }
        def guarded(handler: Callable[[Token], None]) -> Callable[[Token], None]:
            # conntrackd notices a fifth link once the first clause of its block is read ...
            def check(c: Token) -> None:
                handler(c)
                if len(s.channels) >= MAX_CHANNELS:
                    raise self.error(c, too_many)
            return check

        allowed = _CHANNEL_CLAUSES[kind]
        self.block(kind, opener, {k: guarded(v) for k, v in handlers.items() if k in allowed})
        other = next((c for c in s.channels if c.kind != kind), None)
        if other is not None:
            raise self.error(opener, f"cannot mix {kind} with {other.kind} dedicated links:"
                             " all links must use the same transport")
        if len(s.channels) >= MAX_CHANNELS:
            # ... and lets an empty one through, overflowing its table. Refused once the
            # rest of the file has been read, so that other errors are reported as in C.
            if self.link_overflow is None:
                self.link_overflow = opener
            return
        s.channels.append(ch)

    # ------------------------------------------------------------------ Stats

    def stats(self, opener: Token) -> None:
        if self.cfg.stats is None:
            self.cfg.stats = Stats()
        st = self.cfg.stats

        def log_file(t: Token) -> None:
            st.log_file = self.log_target(t, DEFAULT_STATS_LOG_FILE, "Stats LogFile")

        def syslog(t: Token) -> None:
            value, named = self.syslog_target(t, st.syslog_facility)
            st.syslog_facility = value
            general = self.cfg.general.syslog_facility
            if named and general is not None and general != value:
                self.warn(t, "Syslog facilities of General and Stats differ;"
                          " the General one is used")

        self.block("Stats", opener, {"LogFile": log_file, "Syslog": syslog})
        if self.cfg.sync is not None:
            raise self.error(opener, "a file cannot have both a Stats and a Sync section"
                             f" (Sync at line {self.sync_token.line})"  # type: ignore[union-attr]
                             )
        self.stats_token = opener

    # ------------------------------------------------------------------ Helper

    def helper(self, opener: Token) -> None:
        if self.cfg.helper is None:
            self.cfg.helper = Helper()
        h = self.cfg.helper

        def setup(t: Token) -> None:
            h.setup = self.boolean(t)

        self.block("Helper", opener, {"Setup": setup, **self.helper_items(h)})

    def helper_items(self, h: Helper) -> dict[str, Callable[[Token], None]]:
        pending = self.helper_pending

        def queue_num(t: Token) -> None:
            pending.append(("queue_num", self.unsigned(t), t))

        def queue_len(t: Token) -> None:
            pending.append(("queue_len", self.unsigned(t), t))

        def policy(t: Token) -> None:
            name = self.string(t, "a policy name")
            pol = HelperPolicy(name.text)
            seen = False

            def expect_max(c: Token) -> None:
                nonlocal seen
                seen = True
                pol.expect_max = self.unsigned(c)

            def expect_timeout(c: Token) -> None:
                nonlocal seen
                seen = True
                pol.expect_timeout = self.unsigned(c)

            self.block("Policy", t, {"ExpectMax": expect_max, "ExpectTimeout": expect_timeout})
            if not seen:
                raise self.error(name, f"policy '{name.text}' is empty: give ExpectMax"
                                 " and/or ExpectTimeout")
            if len(name.text) > HELPER_POLICY_NAME_MAX:
                raise self.error(name, f"policy name '{name.text}' is longer than"
                                 f" {HELPER_POLICY_NAME_MAX} characters")
            pending.append(("policy", pol, name))

        def close_type(name: Token, l3: Token, l4: Token) -> None:
            if l3.text not in ("inet", "inet6"):
                raise self.error(l3, f"unknown layer 3 protocol '{l3.text}': expected inet"
                                 " or inet6")
            if l4.text not in ("tcp", "udp"):
                raise self.error(l4, f"unknown layer 4 protocol '{l4.text}': expected tcp"
                                 " or udp")
            if l4.text not in HELPERS.get(name.text, ()):
                known = ", ".join(f"{n} ({'/'.join(p)})" for n, p in HELPERS.items())
                raise self.error(name, f"no '{name.text}' helper for {l4.text}; known"
                                 f" helpers: {known}")
            ht = HelperType(name.text, l3.text, l4.text)  # type: ignore[arg-type]
            for what, value, tok in pending:
                if what == "policy":
                    assert isinstance(value, HelperPolicy)
                    if value.name != name.text:
                        raise self.error(tok, f"unknown policy '{value.name}' for helper"
                                         f" '{name.text}' (its policy is '{name.text}')")
                    ht.policies = [p for p in ht.policies if p.name != value.name] + [value]
                else:
                    setattr(ht, what, value)
            pending.clear()
            h.types.append(ht)

        def helper_type(t: Token) -> None:
            # Type blocks may nest (the C grammar allows it); an explicit stack instead of
            # recursion, bounded like the C parser's stack.
            stack: list[tuple[Token, Token, Token, Token]] = []

            def open_type(opener: Token) -> None:
                if len(stack) >= HELPER_NESTING_MAX:
                    raise self.error(opener, "Helper Type blocks nested too deeply (at most"
                                     f" {HELPER_NESTING_MAX} levels)")
                name = self.string(opener, "a helper name")
                l3 = self.string(name, "inet or inet6")
                l4 = self.string(l3, "tcp or udp")
                self.expect_char("{", f"to open the Type {name.text} block")
                stack.append((opener, name, l3, l4))

            open_type(t)
            while stack:
                tok = self.next()
                if tok.kind == lx.CHAR and tok.text == "}":
                    _, name, l3, l4 = stack.pop()
                    close_type(name, l3, l4)
                elif tok.kind == lx.KEYWORD and tok.text == "Type":
                    open_type(tok)
                elif tok.kind == lx.KEYWORD and tok.text in ("QueueNum", "QueueLen", "Policy"):
                    items[tok.text](tok)
                else:
                    opener, name = stack[-1][0], stack[-1][1]
                    if tok.kind == lx.EOF:
                        raise self.error(tok, "unexpected end of file: missing '}' to close the"
                                         f" Type {name.text} block opened at line"
                                         f" {opener.line}, column {opener.col}")
                    raise self.error(tok, f"unexpected {tok.describe()} in the Type"
                                     f" {name.text} block; expected '}}' or one of: Type,"
                                     " QueueNum, QueueLen, Policy")

        items: dict[str, Callable[[Token], None]] = {
            "Type": helper_type, "QueueNum": queue_num, "QueueLen": queue_len,
            "Policy": policy,
        }
        return items


# Clause names that are ours (the C lexer reads them as plain names, not keywords).
_EXTENSIONS = frozenset({"Metrics", "AuthenticationKeyFile"})


def parse_text(text: str, filename: str = "<string>") -> Config:
    """Parse configuration text; raises ``ConfigError``."""
    return _Parser(text, filename).parse()
