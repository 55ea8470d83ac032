"""``ctsim``: run the deterministic simulator of the ctools sync protocol.

    ctsim run --seed 42 [--mode ftfw|alarm|notrack] [--loss 0.1] [--json] ...
    ctsim sweep [--modes ftfw,alarm,notrack] [--losses ...] [--out docs]
    ctsim swarm [--mode ftfw] [--first 1000] [--count 300]
    ctsim labcompare [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from sim.config import (
    MODES,
    ConfigError,
    SimConfig,
    parse_crash,
    parse_partition,
    random_crashes,
    random_partitions,
    swarm,
)
from sim.link import LinkFaults
from sim.workload import WorkloadSpec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# CLI flag -> SimConfig/LinkFaults/WorkloadSpec attribute that --swarm must then leave alone
_FIXES = {"loss": "loss", "burst_loss": "burst_loss", "burst_len": "burst_len",
          "reorder": "reorder", "duplicate": "duplicate", "corrupt": "corrupt",
          "entries": "entries", "churn": "churn_s", "churn_rate": "churn_rate",
          "partition": "partitions", "crash": "crashes", "auth": "auth",
          "corrupt_bits": "corrupt_bits", "checksum": "checksum"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2 with our wording
        self.print_usage(sys.stderr)
        sys.stderr.write(f"ctsim: {message}\n")
        sys.exit(EXIT_USAGE)


def _prob(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="the run's seed (default: a random one, printed)")
    p.add_argument("--mode", choices=MODES, default="ftfw", help="sync mode (default ftfw)")
    p.add_argument("--replicas", type=int, default=2, help="number of firewalls (default 2)")
    p.add_argument("--entries", type=int, default=None,
                   help="flows created per replica in the initial burst (default 100)")
    p.add_argument("--churn", type=float, default=None,
                   help="seconds of steady churn after the burst (default 10)")
    p.add_argument("--churn-rate", type=float, default=None,
                   help="event batches per second per replica during churn (default 20)")
    p.add_argument("--loss", type=_prob, default=None, help="datagram loss probability")
    p.add_argument("--burst-loss", action="store_true", default=None,
                   help="bursty Gilbert-Elliott loss instead of independent loss")
    p.add_argument("--burst-len", type=float, default=None,
                   help="mean loss-burst length in datagrams (default 4)")
    p.add_argument("--reorder", type=_prob, default=None, help="reordering probability")
    p.add_argument("--duplicate", type=_prob, default=None, help="duplication probability")
    p.add_argument("--corrupt", type=_prob, default=None, help="corruption probability")
    p.add_argument("--corrupt-bits", type=int, default=None,
                   help="bits flipped in a corrupted datagram (default 1)")
    p.add_argument("--delay", default=None, metavar="MIN:MEAN",
                   help="one-way delay in ms: minimum plus exponential mean (default 0.2:0.3)")
    p.add_argument("--checksum", choices=("on", "off"), default=None,
                   help="the senders' Checksum option (default on)")
    p.add_argument("--auth", action="store_true", default=None,
                   help="authenticated sync (the core's HMAC frames)")
    p.add_argument("--partition", action="append", default=None, metavar="SPEC",
                   help="A>B@START+DUR (one direction), A-B@START+DUR (both), or 'random'; "
                        "repeatable")
    p.add_argument("--crash", action="append", default=None, metavar="SPEC",
                   help="R@AT+DOWN: replica R's daemon dies at AT for DOWN s, or 'random'")
    p.add_argument("--no-startup-resync", action="store_true",
                   help="restarted daemons do not send RESYNC")
    p.add_argument("--no-restart-bulk", action="store_true",
                   help="restarted daemons do not bulk-send (-B) their table")
    p.add_argument("--ack-window", type=int, default=300, help="FT-FW ACKWindowSize")
    p.add_argument("--resend-queue", type=int, default=131072, help="FT-FW ResendQueueSize")
    p.add_argument("--refresh-time", type=int, default=60, help="ALARM RefreshTime (s)")
    p.add_argument("--cache-timeout", type=int, default=180, help="ALARM CacheTimeout (s)")
    p.add_argument("--no-hardening", action="store_true",
                   help="the core's receiver with the C daemon's exact acceptance rules")
    p.add_argument("--bound", type=float, default=None,
                   help="liveness bound in simulated seconds after quiescence")
    p.add_argument("--swarm", action="store_true",
                   help="derive every fault/workload setting not given from the seed")


def build_parser() -> argparse.ArgumentParser:
    """The ``ctsim`` argument grammar."""
    p = _Parser(prog="ctsim", description="ctools deterministic simulator of conntrackd "
                "state replication (runs the real ctools.sync core on a virtual clock).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    r = sub.add_parser("run", help="run one seeded scenario")
    _add_run_options(r)
    r.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on the last line")
    r.add_argument("--trace", metavar="FILE", help="write the full trace to FILE ('-' = stdout)")
    s = sub.add_parser("sweep", help="convergence time and bandwidth vs loss/reorder per mode")
    s.add_argument("--modes", default="ftfw,alarm,notrack")
    s.add_argument("--losses", default=None, help="comma-separated loss probabilities")
    s.add_argument("--reorders", default=None, help="comma-separated reorder probabilities")
    s.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    s.add_argument("--entries", type=int, default=200)
    s.add_argument("--hardening", default="on", help="on, off or on,off (receiver rules)")
    s.add_argument("--out", default="docs", help="directory for data/ and plots/ (default docs)")
    s.add_argument("--json", action="store_true", help="print the rows as JSON lines")
    s.add_argument("--no-plot", action="store_true", help="skip the PNG")
    w = sub.add_parser("swarm", help="run many --swarm seeds; report every failing seed")
    w.add_argument("--mode", choices=MODES, default="ftfw")
    w.add_argument("--first", type=int, default=1, help="first seed (default 1)")
    w.add_argument("--count", type=int, default=100, help="number of seeds (default 100)")
    w.add_argument("--refresh-time", type=int, default=10, help="ALARM RefreshTime (default 10)")
    w.add_argument("--cache-timeout", type=int, default=30,
                   help="ALARM CacheTimeout (default 30)")
    w.add_argument("--json", action="store_true", help="print the summary as JSON")
    c = sub.add_parser("labcompare", help="replay the `ctlab sweep` scenario and compare with "
                       "docs/data/lab_sweep.csv")
    c.add_argument("--losses", default="0,0.1,0.2,0.3,0.4")
    c.add_argument("--seeds", type=int, default=20, help="seeds per loss (default 20)")
    c.add_argument("--out", default="docs")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def config_from_args(a: argparse.Namespace) -> SimConfig:
    """A validated SimConfig from parsed ``run`` arguments."""
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    faults = LinkFaults()
    if a.delay is not None:
        try:
            lo, _, mean = a.delay.partition(":")
            faults.delay_min_us = int(float(lo) * 1000)
            faults.delay_mean_us = int(float(mean or 0) * 1000)
        except ValueError:
            raise ConfigError(f"bad --delay {a.delay!r}: expected MIN:MEAN in ms") from None
        if faults.delay_min_us < 0 or faults.delay_mean_us < 0:
            raise ConfigError("--delay values must not be negative")
    for name in ("loss", "reorder", "duplicate", "corrupt", "burst_len"):
        if getattr(a, name) is not None:
            setattr(faults, name, getattr(a, name))
    faults.burst_loss = bool(a.burst_loss)
    if a.corrupt_bits is not None:
        faults.corrupt_bits = a.corrupt_bits
    work = WorkloadSpec()
    if a.entries is not None:
        work.entries = a.entries
    if a.churn is not None:
        work.churn_s = a.churn
    if a.churn_rate is not None:
        work.churn_rate = a.churn_rate
    if work.churn_s < 0 or work.churn_rate < 0:
        raise ConfigError("--churn and --churn-rate must not be negative")
    cfg = SimConfig(seed=seed, mode=a.mode, replicas=a.replicas, workload=work, faults=faults,
                    checksum=a.checksum != "off", auth=bool(a.auth),
                    startup_resync=not a.no_startup_resync,
                    restart_bulk=not a.no_restart_bulk, ack_window=a.ack_window,
                    resend_queue=a.resend_queue, refresh_time=a.refresh_time,
                    cache_timeout=a.cache_timeout, liveness_bound_s=a.bound,
                    hardening=not a.no_hardening)
    if a.ack_window < 1 or a.resend_queue < 1 or a.refresh_time < 1 or a.cache_timeout < 1:
        raise ConfigError("--ack-window, --resend-queue, --refresh-time and --cache-timeout "
                          "must be positive")
    fixed = {attr for flag, attr in _FIXES.items() if getattr(a, flag) is not None}
    if a.swarm:
        cfg = swarm(cfg, fixed)
    horizon = cfg.workload.end_s
    parts, crashes = [], []
    for spec in a.partition or ():
        parts += random_partitions(seed, cfg.replicas, horizon) if spec == "random" \
            else parse_partition(spec)
    for spec in a.crash or ():
        crashes += random_crashes(seed, cfg.replicas, horizon) if spec == "random" \
            else [parse_crash(spec)]
    if a.partition:
        cfg.partitions = tuple(parts)
    if a.crash:
        cfg.crashes = tuple(crashes)
    cfg.validate()
    return cfg


def cmd_run(a: argparse.Namespace) -> int:
    from sim.simulator import Simulator

    cfg = config_from_args(a)
    out = sys.stdout
    print(f"ctsim: {cfg.describe()}", file=out, flush=True)
    trace_file = None
    if a.trace == "-":
        trace_file = sys.stdout
    elif a.trace:
        trace_file = open(a.trace, "w")  # noqa: SIM115 - closed below
    try:
        res = Simulator(cfg, trace_file).run()
    finally:
        if trace_file not in (None, sys.stdout):
            trace_file.close()
    for v in res.violations:
        print(f"ctsim: invariant violated: {v}", file=out)
    if res.invariant_violations > len(res.violations):
        print(f"ctsim: ... {res.invariant_violations - len(res.violations)} more violations",
              file=out)
    if res.liveness_failure:
        print(f"ctsim: {res.liveness_failure}", file=out)
    if res.invariant_violations or res.liveness_failure:
        print(f"ctsim: reproduce with --seed {cfg.seed}: {res.reproduce}", file=out)
    took = (f"{res.sim_seconds_to_converge:.3f}s" if res.converged else "never")
    note = "" if res.convergence_promised else " (convergence not promised under these faults)"
    if res.low_base_restarts:
        print(f"ctsim: {res.low_base_restarts} restart(s) seeded the sequence counter below "
              "the old numbers", file=out)
    print(f"ctsim: converged={res.converged} after {took}{note}; "
          f"{res.messages_sent} messages ({res.datagrams_sent} datagrams, "
          f"{res.bytes_sent} bytes), {res.messages_dropped} dropped, "
          f"{res.retransmissions} retransmitted; violations={res.invariant_violations}; "
          f"trace {res.trace_sha256}", file=out)
    if a.json:
        print(json.dumps(res.as_json(), sort_keys=True), file=out)
    return EXIT_OK if res.ok else EXIT_FAILED


def cmd_sweep(a: argparse.Namespace) -> int:
    from sim.sweep import run_sweep

    return run_sweep(a)


def cmd_swarm(a: argparse.Namespace) -> int:
    """Census over consecutive swarm seeds: safety violations and liveness failures."""
    from sim.simulator import run

    if a.count < 1:
        raise ConfigError("--count must be positive")
    summary = {"mode": a.mode, "first": a.first, "count": a.count, "violations": 0,
               "liveness_failures": 0, "not_promised": 0, "low_base_restarts": 0,
               "corrupt_delivered": 0, "corrupt_accepted": 0, "failing_seeds": []}
    for seed in range(a.first, a.first + a.count):
        cfg = swarm(SimConfig(seed=seed, mode=a.mode, refresh_time=a.refresh_time,
                              cache_timeout=a.cache_timeout), set())
        res = run(cfg)
        summary["not_promised"] += not res.convergence_promised
        summary["low_base_restarts"] += res.low_base_restarts
        summary["corrupt_delivered"] += res.network.get("corrupt_delivered", 0)
        summary["corrupt_accepted"] += res.corrupt_accepted
        if res.invariant_violations:
            summary["violations"] += 1
        if res.liveness_failure:
            summary["liveness_failures"] += 1
        if not res.ok:
            summary["failing_seeds"].append(seed)
            why = res.violations[0] if res.violations else res.liveness_failure
            print(f"ctsim: seed {seed} failed: {why}\n  {res.reproduce}", flush=True)
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"ctsim: {a.count} {a.mode} seeds from {a.first}: "
              f"{summary['violations']} with invariant violations, "
              f"{summary['liveness_failures']} liveness failures, "
              f"{summary['not_promised']} not promised to converge; "
              f"{summary['corrupt_delivered']} corrupted datagrams reached a core, "
              f"{summary['corrupt_accepted']} states accepted from them")
    return EXIT_OK if not summary["failing_seeds"] else EXIT_FAILED


def cmd_labcompare(a: argparse.Namespace) -> int:
    import os

    from sim.labcompare import _read_lab, compare, summary
    from sim.sweep import _floats

    if a.seeds < 1:
        raise ConfigError("--seeds must be positive")
    rows = compare(_floats(a.losses, ()), a.seeds, a.out)
    lab_csv = os.path.join(a.out, "data", "lab_sweep.csv")
    lab = _read_lab(lab_csv) if os.path.exists(lab_csv) else None
    summ = summary(rows, lab)
    if a.json:
        print(json.dumps(summ))
    else:
        for row in summ:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctsim`` console script."""
    a = build_parser().parse_args(argv)
    try:
        if a.command == "run":
            return cmd_run(a)
        if a.command == "labcompare":
            return cmd_labcompare(a)
        if a.command == "swarm":
            return cmd_swarm(a)
        return cmd_sweep(a)
    except ConfigError as exc:
        sys.stderr.write(f"ctsim: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK



if __name__ == "__main__":
    sys.exit(main())
