"""``ctsim sweep``: convergence time and bandwidth against loss and reordering, per mode.

Two one-dimensional sweeps (loss with no reordering, reordering with no loss), each point run
with several seeds. Writes ``<out>/data/sim_sweep.csv`` and, unless ``--no-plot``,
``<out>/plots/sim_convergence.png`` and ``<out>/plots/sim_bandwidth.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time

from sim.config import MODES, ConfigError, SimConfig
from sim.link import LinkFaults
from sim.simulator import run
from sim.workload import WorkloadSpec

DEFAULT_LOSSES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
DEFAULT_REORDERS = (0.0, 0.05, 0.1, 0.3)
COLUMNS = ("mode", "hardening", "axis", "loss", "reorder", "seeds", "converged", "promised",
           "t_converge_mean_s", "t_converge_max_s", "bytes_mean", "bytes_per_event_mean",
           "kbit_per_s_mean",
           "messages_mean", "datagrams_mean", "retransmissions_mean", "violations")


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if not text:
        return default
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"bad list {text!r}: expected comma-separated numbers") from None
    if any(not 0 <= v < 0.95 for v in vals):
        raise ConfigError("sweep probabilities must be in [0, 0.95)")
    return vals


def point(mode: str, loss: float, reorder: float, seeds: int, entries: int,
          hardening: bool = True) -> dict:
    """Run one sweep point over ``seeds`` seeds and aggregate it."""
    results = []
    for seed in range(1, seeds + 1):
        cfg = SimConfig(seed=seed, mode=mode, hardening=hardening,
                        workload=WorkloadSpec(entries=entries, churn_s=5.0, churn_rate=20.0),
                        faults=LinkFaults(loss=loss, reorder=reorder))
        results.append(run(cfg))
    times = [r.sim_seconds_to_converge for r in results if r.converged]
    return {
        "mode": mode, "hardening": "on" if hardening else "off", "loss": loss, "reorder": reorder, "seeds": seeds,
        "converged": sum(r.converged for r in results),
        "promised": sum(r.convergence_promised for r in results),
        "t_converge_mean_s": round(statistics.mean(times), 4) if times else "",
        "t_converge_max_s": round(max(times), 4) if times else "",
        "bytes_mean": round(statistics.mean(r.bytes_sent for r in results)),
        # traffic while the workload runs, and wire bytes per kernel event until convergence
        # (or the liveness bound): the idle tail after convergence is not counted
        "kbit_per_s_mean": round(statistics.mean(
            8 * r.bytes_at_quiescence / 1000 / r.quiescence_seconds for r in results), 2),
        "bytes_per_event_mean": round(statistics.mean(
            r.bytes_sent / max(1, r.kernel_events) for r in results), 1),
        "messages_mean": round(statistics.mean(r.messages_sent for r in results)),
        "datagrams_mean": round(statistics.mean(r.datagrams_sent for r in results)),
        "retransmissions_mean": round(statistics.mean(r.retransmissions for r in results), 1),
        "violations": sum(r.invariant_violations for r in results),
    }


def sweep(modes: list[str], losses: tuple[float, ...], reorders: tuple[float, ...],
          seeds: int, entries: int, progress=None,
          hardenings: tuple[bool, ...] = (True,)) -> list[dict]:
    """All rows of a sweep (loss axis then reorder axis, for every mode and receiver)."""
    rows = []
    for hardening in hardenings:
        for mode in modes:
            for axis, values in (("loss", losses), ("reorder", reorders)):
                for value in values:
                    loss, reorder = (value, 0.0) if axis == "loss" else (0.0, value)
                    row = point(mode, loss, reorder, seeds, entries, hardening)
                    row["axis"] = axis
                    rows.append(row)
                    if progress:
                        progress(row)
    return rows


def write_csv(rows: list[dict], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in COLUMNS})


def plot(rows: list[dict], out_dir: str) -> list[str]:
    """Two PNGs: convergence time and bandwidth, each against loss and against reordering."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for metric, ylabel, name in (("t_converge_mean_s", "seconds to converge after quiescence",
                                 "sim_convergence.png"),
                                ("bytes_per_event_mean",
                                 "wire bytes per kernel event, until convergence",
                                 "sim_bandwidth.png")):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, axis in zip(axes, ("loss", "reorder"), strict=True):
            for mode, hard in dict.fromkeys((r["mode"], r["hardening"]) for r in rows):
                pts = [(r[axis], r[metric]) for r in rows
                       if r["mode"] == mode and r["hardening"] == hard and r["axis"] == axis
                       and r[metric] != ""]
                label = mode if hard == "on" else f"{mode} (C receiver rules)"
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            linestyle="-" if hard == "on" else "--", label=label)
            ax.set_xlabel(f"{axis} probability")
            ax.set_ylabel(ylabel)
            if metric == "t_converge_mean_s":
                ax.set_yscale("symlog", linthresh=0.01)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle("ctsim sweep: mean over converged seeds; a missing point means no seed "
                     "converged within the bound", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def run_sweep(a: argparse.Namespace) -> int:
    """``ctsim sweep`` entry point."""
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown mode {m!r} in --modes (ftfw, alarm or notrack)")
    if a.seeds < 1 or a.entries < 1:
        raise ConfigError("--seeds and --entries must be positive")
    losses = _floats(a.losses, DEFAULT_LOSSES)
    try:
        hardenings = tuple({"on": True, "off": False}[h.strip()]
                           for h in a.hardening.split(",") if h.strip())
    except KeyError:
        raise ConfigError("--hardening takes on, off or on,off") from None
    reorders = _floats(a.reorders, DEFAULT_REORDERS)
    t0 = time.monotonic()

    def progress(row: dict) -> None:
        if a.json:
            print(json.dumps(row, sort_keys=True), flush=True)
        else:
            print(f"{row['mode']:8} h={row['hardening']:3} {row['axis']:7} loss={row['loss']:<5g} "
                  f"reorder={row['reorder']:<5g} converged={row['converged']}/{row['seeds']} "
                  f"t={row['t_converge_mean_s']}s kbit/s={row['kbit_per_s_mean']} "
                  f"B/event={row['bytes_per_event_mean']} "
                  f"violations={row['violations']}", flush=True)

    rows = sweep(modes, losses, reorders, a.seeds, a.entries, progress, hardenings)
    csv_path = os.path.join(a.out, "data", "sim_sweep.csv")
    write_csv(rows, csv_path)
    print(f"ctsim: wrote {csv_path} ({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    if not a.no_plot:
        for path in plot(rows, os.path.join(a.out, "plots")):
            print(f"ctsim: wrote {path}", file=sys.stderr)
    return 1 if any(r["violations"] for r in rows) else 0
