"""Typed conntrackd configuration with the C daemon's defaults.

Everything here is plain data: the parser (``ctools.config.parser``) fills it in, the daemon
reads it, ``ctools.config.dump`` prints it back. Addresses are text (canonical
``inet_ntop`` form, networks as ``addr/len``); absent optional values are ``None``.
Defaults are those of conntrack-tools 1.4.7 (a zero written in the file also means "default"
for the clauses where the C daemon treats it so: HashSize, HashLimit, RefreshTime,
CacheTimeout, PurgeTimeout, ResendQueueSize, ACKWindowSize, EventIterationLimit,
NetlinkOverrunResync, ErrorQueueLength).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

DEFAULT_CONFIG_FILE = "/etc/conntrackd/conntrackd.conf"
DEFAULT_LOCK_FILE = "/var/lock/conntrackd.lock"
DEFAULT_LOG_FILE = "/var/log/conntrackd.log"
DEFAULT_STATS_LOG_FILE = "/var/log/conntrackd-stats.log"
DEFAULT_SYSLOG_FACILITY = "daemon"
SYSLOG_FACILITIES = ("daemon",) + tuple(f"local{i}" for i in range(8))

DEFAULT_HASH_SIZE = 65536
DEFAULT_HASH_LIMIT = 262144
DEFAULT_EVENT_ITERATIONS_LIMIT = 100
DEFAULT_NETLINK_OVERRUN_RESYNC = 30
DEFAULT_REFRESH_TIME = 60
DEFAULT_CACHE_TIMEOUT = 180
DEFAULT_PURGE_TIMEOUT = 60
DEFAULT_RESEND_QUEUE_SIZE = 131072
DEFAULT_ACK_WINDOW_SIZE = 300
DEFAULT_ERROR_QUEUE_LENGTH = 128
COMMIT_STEPS = 8192          # buckets committed per loop turn; not configurable in C either
MAX_CHANNELS = 4             # dedicated links per Sync section
UNIX_PATH_MAX = 107          # longest accepted UNIX { Path } (sun_path minus the NUL)
FILENAME_MAX = 256           # longest accepted LogFile/LockFile path

# User-space helpers of the reference build: name -> layer-4 protocols it exists for.
# Each helper has exactly one expectation policy, named like the helper.
HELPERS = {
    "amanda": ("udp",), "dhcpv6": ("udp",), "ftp": ("tcp",), "mdns": ("udp",),
    "rpc": ("tcp", "udp"), "sane": ("tcp",), "slp": ("udp",), "ssdp": ("tcp", "udp"),
    "tftp": ("udp",), "tns": ("tcp",),
}
HELPER_POLICY_NAME_MAX = 16

DEFAULT_METRICS_ADDRESS = "127.0.0.1"
DEFAULT_METRICS_PORT = 9477

SyncMode = Literal["ftfw", "alarm", "notrack"]
FilterPolicy = Literal["accept", "ignore"]
Family = Literal["ipv4", "ipv6"]

TCP_FILTER_STATES = (
    "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
    "LAST_ACK", "TIME_WAIT", "CLOSE", "LISTEN",
)


# --------------------------------------------------------------------------- General


@dataclass(slots=True)
class UnixSocket:
    """``UNIX { Path … Backlog … }``: the control socket.

    ``path`` is empty when not configured (the C daemon then binds an unreachable socket and
    every client command fails). ``backlog`` is recorded but, as in C, ignored (the daemon
    listens with a backlog of 100).
    """

    path: str = ""
    backlog: int | None = None


@dataclass(slots=True)
class Scheduler:
    """``Scheduler { Type RR|FIFO  Priority 0..99 }``.

    ``None`` means "not written": the daemon uses SCHED_RR at the maximum priority.
    """

    type: Literal["RR", "FIFO"] | None = None
    priority: int | None = None


@dataclass(slots=True)
class ProtocolFilter:
    """``Protocol Accept|Ignore { TCP UDP name… }``; protocols as IP protocol numbers."""

    policy: FilterPolicy = "accept"
    protocols: list[int] = field(default_factory=list)


@dataclass(slots=True)
class AddressFilter:
    """``Address Accept|Ignore { IPv4_address A[/N] … IPv6_address A[/N] … }``.

    Items are canonical text: ``"10.0.0.1"`` for a host, ``"10.0.0.0/8"`` for a network
    (a full-length prefix is stored as a host, as the C daemon does).
    """

    policy: FilterPolicy = "accept"
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)


@dataclass(slots=True)
class StateFilter:
    """``State Accept|Ignore { STATE… for TCP }``; TCP state names of ``TCP_FILTER_STATES``."""

    policy: FilterPolicy = "accept"
    states: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Filter:
    """``Filter [From Userspace|From Kernelspace] { … }`` (all Filter blocks merged).

    A ``None`` sub-filter means that kind was never configured (everything passes it).
    The policy of a kind is that of its last block; items accumulate over blocks.
    """

    from_userspace: bool = True
    protocol: ProtocolFilter | None = None
    address: AddressFilter | None = None
    state: StateFilter | None = None

    @property
    def from_kernelspace(self) -> bool:
        return not self.from_userspace


@dataclass(slots=True)
class Metrics:
    """``Metrics { Address A  Port P }`` (ctools extension): Prometheus endpoint."""

    address: str = DEFAULT_METRICS_ADDRESS
    port: int = DEFAULT_METRICS_PORT


@dataclass(slots=True)
class General:
    """The ``General`` section."""

    hash_size: int = DEFAULT_HASH_SIZE
    hash_limit: int = DEFAULT_HASH_LIMIT
    log_file: str | None = None             # None = off; "LogFile on" = DEFAULT_LOG_FILE
    syslog_facility: str | None = None      # None = off; "Syslog on" = "daemon"
    lock_file: str = DEFAULT_LOCK_FILE
    unix: UnixSocket = field(default_factory=UnixSocket)
    netlink_buffer_size: int = 0            # 0 = system default (net.core.rmem_default)
    netlink_buffer_size_max_grow: int = 0
    netlink_overrun_resync: int | None = DEFAULT_NETLINK_OVERRUN_RESYNC  # seconds; None = off
    netlink_events_reliable: bool = False
    poll_secs: int | None = None            # None = event driven; N = poll every N seconds
    event_iterations_limit: int = DEFAULT_EVENT_ITERATIONS_LIMIT
    nice: int | None = None                 # deprecated and ignored, kept for dump()
    scheduler: Scheduler | None = None
    filter: Filter | None = None
    systemd: bool = True
    metrics: Metrics | None = None          # ctools extension

    @property
    def unix_path(self) -> str:
        return self.unix.path


# --------------------------------------------------------------------------- Sync channels


@dataclass(slots=True)
class Channel:
    """Fields common to every dedicated link (``Multicast``/``UDP``/``TCP`` block).

    ``family`` is the address family chosen by the address clauses (the last valid one wins,
    as in C); ``None`` when the block has no usable address.
    """

    kind: ClassVar[str] = ""
    interface: str | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    family: Family | None = None
    sndbuf: int = 0                          # 0 = system default
    rcvbuf: int = 0
    checksum: bool = True
    default: bool = False

    @property
    def address(self) -> str | None:
        """The local (or, for multicast, group) address of the channel's family."""
        return self.ipv6_address if self.family == "ipv6" else self.ipv4_address


@dataclass(slots=True)
class UdpChannel(Channel):
    """``UDP [Default] { … }``: unicast datagrams to ``ipv4/ipv6_destination:port``."""

    kind: ClassVar[str] = "UDP"
    port: int = 0
    ipv4_destination: str | None = None
    ipv6_destination: str | None = None

    @property
    def destination(self) -> str | None:
        return self.ipv6_destination if self.family == "ipv6" else self.ipv4_destination


@dataclass(slots=True)
class TcpChannel(Channel):
    """``TCP [Default] { … }``: one outgoing and one accepted stream per peer."""

    kind: ClassVar[str] = "TCP"
    port: int = 0
    ipv4_destination: str | None = None
    ipv6_destination: str | None = None
    error_queue_length: int | None = None   # as written; see Sync.error_queue_length

    @property
    def destination(self) -> str | None:
        return self.ipv6_destination if self.family == "ipv6" else self.ipv4_destination


@dataclass(slots=True)
class McastChannel(Channel):
    """``Multicast [Default] { … }``: ``ipv4/ipv6_address`` is the group, ``group`` the port."""

    kind: ClassVar[str] = "Multicast"
    group: int = 0
    ipv4_interface: str | None = None        # local address used to join/send (IPv4)


# --------------------------------------------------------------------------- Sync


@dataclass(slots=True)
class SyncOptions:
    """``Options { … }`` of the Sync section."""

    tcp_window_tracking: bool = False
    expectation_sync: bool = False
    # helper-name prefixes from ``ExpectationSync { … }``; empty with expectation_sync = all
    expectation_helpers: list[str] = field(default_factory=list)
    authentication_key_file: str | None = None   # ctools extension


@dataclass(slots=True)
class Sync:
    """The ``Sync`` section (replication mode)."""

    mode: SyncMode = "ftfw"
    mode_explicit: bool = False              # False: no Mode block (C warns, uses FTFW)
    refresh_time: int = DEFAULT_REFRESH_TIME         # ALARM
    cache_timeout: int = DEFAULT_CACHE_TIMEOUT       # ALARM
    commit_timeout: int = 0                          # 0 = estimate from cached timeouts
    purge_timeout: int = DEFAULT_PURGE_TIMEOUT
    resend_queue_size: int = DEFAULT_RESEND_QUEUE_SIZE   # FTFW
    ack_window_size: int = DEFAULT_ACK_WINDOW_SIZE       # FTFW
    disable_internal_cache: bool = False             # NOTRACK
    disable_external_cache: bool = False             # FTFW, NOTRACK
    startup_resync: bool = False                     # FTFW, NOTRACK
    channels: list[Channel] = field(default_factory=list)
    options: SyncOptions = field(default_factory=SyncOptions)

    @property
    def default_channel(self) -> Channel | None:
        """The initially active link: the last one marked Default, else the first."""
        for ch in reversed(self.channels):
            if ch.default:
                return ch
        return self.channels[0] if self.channels else None

    @property
    def default_channel_index(self) -> int | None:
        ch = self.default_channel
        return None if ch is None else self.channels.index(ch)

    @property
    def transport(self) -> str | None:
        """``"UDP"``, ``"TCP"``, ``"Multicast"`` or None without channels."""
        return self.channels[0].kind if self.channels else None

    @property
    def error_queue_length(self) -> int:
        """TCP error queue length (one global value in C: the last one written)."""
        for ch in reversed(self.channels):
            if isinstance(ch, TcpChannel) and ch.error_queue_length:
                return ch.error_queue_length
        return DEFAULT_ERROR_QUEUE_LENGTH

    # Shortcuts for the Options block.
    @property
    def tcp_window_tracking(self) -> bool:
        return self.options.tcp_window_tracking

    @property
    def expectation_sync(self) -> bool:
        return self.options.expectation_sync

    @property
    def expectation_helpers(self) -> list[str]:
        return self.options.expectation_helpers

    @property
    def authentication_key_file(self) -> str | None:
        return self.options.authentication_key_file


# --------------------------------------------------------------------------- Stats, Helper


@dataclass(slots=True)
class Stats:
    """The ``Stats`` section (flow-statistics mode)."""

    log_file: str | None = None             # "LogFile on" = DEFAULT_STATS_LOG_FILE
    syslog_facility: str | None = None


@dataclass(slots=True)
class HelperPolicy:
    """``Policy NAME { ExpectMax N  ExpectTimeout N }``."""

    name: str
    expect_max: int = 0
    expect_timeout: int = 0


@dataclass(slots=True)
class HelperType:
    """``Type NAME inet|inet6 tcp|udp { QueueNum N  QueueLen N  Policy … }``."""

    name: str
    l3proto: Literal["inet", "inet6"] = "inet"
    l4proto: Literal["tcp", "udp"] = "tcp"
    queue_num: int = 0
    queue_len: int = 0
    policies: list[HelperPolicy] = field(default_factory=list)


@dataclass(slots=True)
class Helper:
    """The ``Helper`` section (user-space conntrack helpers via NFQUEUE)."""

    setup: bool | None = None               # "Setup on|off"; None = not written
    types: list[HelperType] = field(default_factory=list)


# --------------------------------------------------------------------------- Config


@dataclass(slots=True)
class ConfigWarning:
    """A non-fatal remark (the C daemon logs these as WARNING and carries on)."""

    filename: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col}: {self.message}"


@dataclass(slots=True)
class Config:
    """A whole conntrackd.conf.

    ``sync`` and ``stats`` are None when their section is absent (they never both exist).
    ``warnings`` lists what the C daemon would log as WARNING while reading the file; they are
    not part of equality.
    """

    general: General = field(default_factory=General)
    sync: Sync | None = None
    stats: Stats | None = None
    helper: Helper | None = None
    filename: str = field(default="<string>", compare=False)
    warnings: list[ConfigWarning] = field(default_factory=list, compare=False)

    @property
    def mode(self) -> Literal["sync", "stats", "none"]:
        """Running mode the file selects: replication, flow statistics, or neither."""
        if self.sync is not None:
            return "sync"
        if self.stats is not None:
            return "stats"
        return "none"
