"""Run settings: every one of them either given or derived from the seed, and printable.

VOPR-style *swarm* runs (``swarm=True``) draw each fault setting the caller did not fix from the
seed's ``settings`` stream, so one integer names a whole scenario; ``describe()`` prints the
effective settings and ``argv()`` the exact ``ctsim run`` command that reproduces them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from sim.clock import US
from sim.link import LinkFaults, Partition
from sim.rng import stream
from sim.workload import WorkloadSpec

MODES = ("ftfw", "alarm", "notrack")


class ConfigError(ValueError):
    """A setting that cannot be used (bad syntax or out of range)."""


@dataclass(frozen=True)
class Crash:
    """Replica ``replica``'s daemon dies at ``at_s`` (run-relative) and restarts ``down_s`` later."""

    replica: int
    at_s: float
    down_s: float

    def __str__(self) -> str:
        return f"{self.replica}@{self.at_s:g}+{self.down_s:g}"


@dataclass
class SimConfig:
    """Everything that determines a run. Same config (seed included) -> same trace."""

    seed: int
    mode: str = "ftfw"
    replicas: int = 2
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    faults: LinkFaults = field(default_factory=LinkFaults)
    checksum: bool = True
    auth: bool = False
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    startup_resync: bool = True     # StartupResync on: a restarted daemon asks for the state
    restart_bulk: bool = True       # operator runs `conntrackd -B` after a restart
    ack_window: int = 300
    resend_queue: int = 131072
    refresh_time: int = 60          # ALARM RefreshTime (s)
    cache_timeout: int = 180        # ALARM CacheTimeout (s)
    mtu: int = 1500
    liveness_bound_s: float | None = None
    hardening: bool = True          # the core's receive guard; off = the C receiver's rules
    swarm: bool = False

    def validate(self) -> None:
        """Raise ConfigError for settings the simulator cannot honour."""
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r} (ftfw, alarm or notrack)")
        if not 2 <= self.replicas <= 16:
            raise ConfigError("--replicas must be between 2 and 16")
        if not 0 <= self.workload.entries <= 100_000:
            raise ConfigError("--entries must be between 0 and 100000")
        f = self.faults
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            p = getattr(f, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"--{name} must be a probability in [0, 1], not {p}")
        if f.loss >= 0.95:
            raise ConfigError("--loss must stay below 0.95 (nothing could ever converge)")
        if not 1 <= f.corrupt_bits <= 64:
            raise ConfigError("--corrupt-bits must be between 1 and 64")
        for p in self.partitions:
            if not (0 <= p.src < self.replicas and 0 <= p.dst < self.replicas) or p.src == p.dst:
                raise ConfigError(f"partition {p}: replicas must be distinct and < {self.replicas}")
        for c in self.crashes:
            if not 0 <= c.replica < self.replicas:
                raise ConfigError(f"crash {c}: replica must be < {self.replicas}")
            if c.at_s < 0 or c.down_s <= 0:
                raise ConfigError(f"crash {c}: times must be positive")

    def bound_s(self) -> float:
        """Liveness bound: simulated seconds allowed after quiescence to converge."""
        if self.liveness_bound_s is not None:
            return self.liveness_bound_s
        if self.mode == "alarm":
            # Lost deletes wait for CacheTimeout; a lost update waits for a refresh that gets
            # through: allow enough refresh periods that every entry's chance of still being
            # unrepaired is below 1/1000 in total (loss p per refresh).
            periods = 1
            p = self.faults.loss
            if p > 0:
                entries = max(1, self.workload.entries * self.replicas * 2)
                periods = max(1, math.ceil(math.log(1e-3 / entries) / math.log(p)))
            return float(self.cache_timeout + self.refresh_time * periods + 10)
        return 60.0

    def describe(self) -> str:
        """One line with every effective setting (printed at the start of every run)."""
        w = self.workload
        parts = [f"seed={self.seed}", f"mode={self.mode}", f"replicas={self.replicas}",
                 f"entries={w.entries}", f"churn={w.churn_s:g}s@{w.churn_rate:g}/s",
                 self.faults.describe(),
                 f"checksum={'on' if self.checksum else 'off'}",
                 f"auth={'on' if self.auth else 'off'}",
                 "partitions=" + (",".join(map(str, self.partitions)) or "none"),
                 "crashes=" + (",".join(map(str, self.crashes)) or "none")]
        if not self.hardening:
            parts.append("hardening=off")
        return " ".join(parts)

    def argv(self) -> list[str]:
        """Arguments of ``ctsim run`` that rebuild exactly this config."""
        f, w = self.faults, self.workload
        a = ["--seed", str(self.seed), "--mode", self.mode, "--replicas", str(self.replicas),
             "--entries", str(w.entries), "--churn", f"{w.churn_s:g}",
             "--churn-rate", f"{w.churn_rate:g}",
             "--loss", f"{f.loss:g}", "--reorder", f"{f.reorder:g}",
             "--duplicate", f"{f.duplicate:g}", "--corrupt", f"{f.corrupt:g}",
             "--corrupt-bits", str(f.corrupt_bits),
             "--delay", f"{f.delay_min_us / 1000:g}:{f.delay_mean_us / 1000:g}",
             "--checksum", "on" if self.checksum else "off"]
        if f.burst_loss:
            a += ["--burst-loss", "--burst-len", f"{f.burst_len:g}"]
        if self.auth:
            a.append("--auth")
        if not self.hardening:
            a.append("--no-hardening")
        if self.liveness_bound_s is not None:
            a += ["--bound", f"{self.liveness_bound_s:g}"]
        for p in self.partitions:
            a += ["--partition", str(p)]
        for c in self.crashes:
            a += ["--crash", str(c)]
        if self.mode == "alarm":
            a += ["--refresh-time", str(self.refresh_time),
                  "--cache-timeout", str(self.cache_timeout)]
        return a


_PART_RE = re.compile(r"^(\d+)([>-])(\d+)@([0-9.]+)\+([0-9.]+)$")
_CRASH_RE = re.compile(r"^(\d+)@([0-9.]+)\+([0-9.]+)$")


def parse_partition(text: str) -> list[Partition]:
    """``A>B@START+DURATION`` cuts A->B only; ``A-B@...`` cuts both directions (seconds)."""
    m = _PART_RE.match(text.strip())
    if not m:
        raise ConfigError(f"bad --partition {text!r}: expected A>B@START+DURATION or "
                          "A-B@START+DURATION (seconds), or 'random'")
    a, kind, b = int(m[1]), m[2], int(m[3])
    start, dur = float(m[4]), float(m[5])
    one = Partition(a, b, int(start * US), int((start + dur) * US))
    if kind == ">":
        return [one]
    return [one, Partition(b, a, one.start_us, one.end_us)]


def parse_crash(text: str) -> Crash:
    """``R@AT+DOWN``: replica R's daemon crashes at AT and restarts DOWN seconds later."""
    m = _CRASH_RE.match(text.strip())
    if not m:
        raise ConfigError(f"bad --crash {text!r}: expected REPLICA@AT+DOWN (seconds), "
                          "or 'random'")
    return Crash(int(m[1]), float(m[2]), float(m[3]))


def random_partitions(seed: int, replicas: int, horizon_s: float) -> tuple[Partition, ...]:
    """One to three partition windows inside the workload period, some asymmetric."""
    rng = stream(seed, "settings/partitions")
    out: list[Partition] = []
    for _ in range(1 + rng.randrange(3)):
        a = rng.randrange(replicas)
        b = (a + 1 + rng.randrange(replicas - 1)) % replicas
        start = rng.uniform(0, max(0.1, horizon_s))
        dur = rng.choice((0.5, 1.0, 2.0, 5.0, 8.0))
        out.append(Partition(a, b, int(start * US), int((start + dur) * US)))
        if rng.random() < 0.5:
            out.append(Partition(b, a, int(start * US), int((start + dur) * US)))
    return tuple(out)


def random_crashes(seed: int, replicas: int, horizon_s: float) -> tuple[Crash, ...]:
    """One crash of a random replica inside the workload period."""
    rng = stream(seed, "settings/crashes")
    return (Crash(rng.randrange(replicas), round(rng.uniform(0.5, max(1.0, horizon_s)), 3),
                  rng.choice((0.5, 1.0, 3.0, 6.0))),)


def swarm(cfg: SimConfig, fixed: set[str]) -> SimConfig:
    """Fill every fault/workload setting not in ``fixed`` from the seed (VOPR swarm testing)."""
    rng = stream(cfg.seed, "settings")
    f = dataclasses.replace(cfg.faults)
    w = dataclasses.replace(cfg.workload)
    # Every draw happens whether or not it is used, so fixing one flag keeps the others.
    draws = {
        "loss": rng.choice((0.0, 0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5)),
        "burst_loss": rng.random() < 0.3,
        "burst_len": rng.choice((2.0, 4.0, 10.0)),
        "reorder": rng.choice((0.0, 0.01, 0.1, 0.3)),
        "duplicate": rng.choice((0.0, 0.01, 0.05, 0.2)),
        "corrupt": rng.choice((0.0, 0.0, 0.01, 0.05)),
        "delay_min_us": rng.choice((50, 200, 1000)),
        "delay_mean_us": rng.choice((0, 300, 2000, 10000)),
        "entries": rng.choice((10, 50, 100, 300)),
        "churn_s": rng.choice((2.0, 5.0, 10.0)),
        "churn_rate": rng.choice((5.0, 20.0, 50.0)),
        "partitions": rng.random() < 0.4,
        "crashes": rng.random() < 0.3,
        "auth": rng.random() < 0.2,
        # (new draws go last, so older seeds keep their earlier settings)
        "checksum_off": rng.random() < 0.15,
        "corrupt_bits": rng.choice((1, 1, 2, 3)),
    }
    for name in ("loss", "burst_loss", "burst_len", "reorder", "duplicate", "corrupt",
                 "corrupt_bits", "delay_min_us", "delay_mean_us"):
        if name not in fixed:
            setattr(f, name, draws[name])
    for name in ("entries", "churn_s", "churn_rate"):
        if name not in fixed:
            setattr(w, name, draws[name])
    out = dataclasses.replace(cfg, faults=f, workload=w, swarm=True)
    horizon = w.end_s
    if "partitions" not in fixed and draws["partitions"]:
        out.partitions = random_partitions(cfg.seed, cfg.replicas, horizon)
    if "crashes" not in fixed and draws["crashes"]:
        out.crashes = random_crashes(cfg.seed, cfg.replicas, horizon)
    if "auth" not in fixed:
        out.auth = draws["auth"]
    if "checksum" not in fixed and draws["checksum_off"]:
        out.checksum = False
    return out
