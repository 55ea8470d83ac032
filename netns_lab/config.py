"""Lab settings: names, addresses, sizes, impairments, replicas — one plain dataclass tree."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import asdict, dataclass, field

REPLICA_KINDS = ("ours", "c", "mixed")


@dataclass
class Lan:
    """One LAN segment (a bridge) with the virtual IP both replicas can hold."""

    name: str
    v4: str                      # prefix, e.g. "10.11.0.0/24"
    v6: str                      # prefix, e.g. "fd00:11::/64"

    def host(self, index: int, v6: bool = False) -> str:
        """Address number ``index`` of the prefix (1 is the VIP, 2/3 the replicas)."""
        net = ipaddress.ip_network(self.v6 if v6 else self.v4)
        return str(net.network_address + index)

    @property
    def plen4(self) -> int:
        return ipaddress.ip_network(self.v4).prefixlen

    @property
    def plen6(self) -> int:
        return ipaddress.ip_network(self.v6).prefixlen


@dataclass
class Impairment:
    """What the sync-link relay does to frames, per direction, all derived from one seed.

    Probabilities are fractions 0..1. ``burst_loss`` is the long-run share of frames lost in
    bursts (Gilbert-Elliott, mean burst length ``burst_len``); ``reorder`` holds a frame back so
    that the next one overtakes it; ``corrupt`` flips one byte after the Ethernet header and
    leaves every checksum as it is; ``rate_kbit`` 0 means unlimited.
    """

    loss: float = 0.0
    burst_loss: float = 0.0
    burst_len: float = 4.0
    reorder: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbit: int = 0
    queue_bytes: int = 256 * 1024
    partition: bool = False

    def validate(self) -> None:
        """Raise ValueError with a readable reason for out-of-range settings."""
        for key in ("loss", "burst_loss", "reorder", "corrupt", "duplicate"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be a fraction between 0 and 1, got {value}")
        for key in ("delay_ms", "jitter_ms", "rate_kbit", "queue_bytes"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must not be negative")
        if self.burst_len < 1:
            raise ValueError("burst_len must be at least 1 frame")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabConfig:
    """Everything that shapes one lab instance."""

    prefix: str = field(default_factory=lambda: "ctlab-" + secrets.token_hex(3))
    clients: int = 1
    servers: int = 1
    client_lan: Lan = field(default_factory=lambda: Lan("lanc", "10.11.0.0/24", "fd00:11::/64"))
    server_lan: Lan = field(default_factory=lambda: Lan("lans", "10.12.0.0/24", "fd00:12::/64"))
    sync_v4: str = "10.13.0.0/30"
    sync_v6: str = "fd00:13::/64"
    ipv6: bool = True
    sync_over_v6: bool = False
    sync_port: int = 3780
    replicas: str = "c"              # "ours", "c" or "mixed" (see mixed_first)
    mixed_first: str = "ours"        # with "mixed": fw1's implementation (fw2 gets the other)
    ha: str = "driver"               # "driver" (built-in fail-over) or "keepalived"
    close_window: bool = True        # commit before the VIPs go up
    hold: bool = False               # VIPs up at once, packets held until the commit ends
    checksum: bool = True            # conntrackd's Checksum clause on the sync link
    replicate: bool = True           # False: no conntrackd at all (flows must die)
    settle: bool = True              # wait for the FT-FW HELLO handshake before traffic
    impairment: Impairment = field(default_factory=Impairment)
    seed: int = 1
    rundir_base: str = "/run/ctlab"
    vrid: int = 51
    advert_ms: int = 1000

    def validate(self) -> None:
        """Raise ValueError with a readable reason for bad settings."""
        if self.replicas not in REPLICA_KINDS:
            raise ValueError(f"replicas must be one of {', '.join(REPLICA_KINDS)}")
        if self.mixed_first not in ("ours", "c"):
            raise ValueError("mixed_first must be 'ours' or 'c'")
        if self.ha not in ("driver", "keepalived"):
            raise ValueError("ha must be 'driver' or 'keepalived'")
        if not 1 <= self.clients <= 50 or not 1 <= self.servers <= 50:
            raise ValueError("clients and servers must be between 1 and 50")
        if not self.prefix or len(self.prefix) > 40 or "/" in self.prefix:
            raise ValueError("prefix must be a short name without '/'")
        for lan in (self.client_lan, self.server_lan):
            ipaddress.ip_network(lan.v4)
            ipaddress.ip_network(lan.v6)
        ipaddress.ip_network(self.sync_v4)
        self.impairment.validate()

    def replica_kind(self, index: int) -> str:
        """Implementation of replica fw1 (index 1) or fw2 (index 2): 'ours' or 'c'."""
        if self.replicas == "mixed":
            other = "c" if self.mixed_first == "ours" else "ours"
            return self.mixed_first if index == 1 else other
        return self.replicas

    def sync_addr(self, index: int, v6: bool = False) -> str:
        net = ipaddress.ip_network(self.sync_v6 if v6 else self.sync_v4)
        return str(net.network_address + index)
