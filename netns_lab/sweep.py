"""``ctlab sweep``: sync-link loss from 0 to 40 %, convergence time and surviving flows,
written as CSV and plotted as PNG."""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from .config import LabConfig
from .lab import Lab

FIELDS = ("replicas", "loss", "run", "seed", "flows_started", "flows_survived", "synced",
          "convergence_s", "tcp_resets", "stalls", "gap_ms", "commit_window_ms",
          "window_drops", "frames_lost")


def sweep_point(cfg: LabConfig, loss: float, seed: int, flows: int, udp_flows: int,
                sync_timeout: float = 10.0,
                progress: Callable[[str], None] | None = None) -> dict:
    """One fail-over at one loss rate: how long until the backup held every flow, and how
    many flows survived."""
    point = dataclasses.replace(cfg, prefix=LabConfig().prefix, seed=seed,
                                impairment=dataclasses.replace(cfg.impairment, loss=loss))
    with Lab(point, progress=progress) as lab:
        lab.start_traffic(tcp_flows=flows, udp_flows=udp_flows)
        t0 = time.monotonic()
        synced = lab.wait_synced(timeout=sync_timeout)
        conv = time.monotonic() - t0 if synced else None
        lab.failover()
        rep = lab.verdict(observe_s=2.5, synced=synced).as_dict()
    return {"replicas": cfg.replicas, "loss": round(loss * 100, 1), "seed": seed,
            "flows_started": rep["flows_started"], "flows_survived": rep["flows_survived"],
            "synced": synced, "convergence_s": None if conv is None else round(conv, 3),
            "tcp_resets": rep["tcp_resets"], "stalls": rep["stalls"], "gap_ms": rep["gap_ms"],
            "commit_window_ms": rep["commit_window_ms"], "window_drops": rep["window_drops"],
            "frames_lost": rep["link"].get("lost", 0)}


def run_sweep(cfg: LabConfig, losses: list[float], runs: int = 1, flows: int = 20,
              udp_flows: int = 0, csv_path: str | None = None, png_path: str | None = None,
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every loss rate ``runs`` times (seeds cfg.seed, cfg.seed+1, ...)."""
    rows = []
    for loss in losses:
        for run in range(runs):
            if progress:
                progress(f"sweep: loss {loss * 100:g} %, run {run + 1}/{runs}")
            row = sweep_point(cfg, loss, cfg.seed + run, flows, udp_flows)
            row["run"] = run + 1
            rows.append(row)
    if csv_path:
        write_csv(rows, csv_path)
    if png_path:
        plot(rows, png_path)
    return rows


def write_csv(rows: list[dict], csv_path: str) -> None:
    """The sweep rows as CSV (columns FIELDS)."""
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k) for k in FIELDS})


def plot(rows: list[dict], png_path: str) -> None:
    """Two panels: convergence time and surviving share against loss, per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for reps in sorted({r["replicas"] for r in rows}):
        mine = [r for r in rows if r["replicas"] == reps]
        losses = sorted({r["loss"] for r in mine})
        conv, surv = [], []
        for loss in losses:
            at = [r for r in mine if r["loss"] == loss]
            c = [r["convergence_s"] for r in at if r["convergence_s"] is not None]
            conv.append(sum(c) / len(c) if c else float("nan"))
            surv.append(100.0 * sum(r["flows_survived"] for r in at)
                        / max(1, sum(r["flows_started"] for r in at)))
        ax1.plot(losses, conv, marker="o", label=f"replicas {reps}")
        ax2.plot(losses, surv, marker="o", label=f"replicas {reps}")
    ax1.set_xlabel("sync-link loss (%)")
    ax1.set_ylabel("backup holds every flow after (s)")
    ax1.set_title("convergence")
    ax2.set_xlabel("sync-link loss (%)")
    ax2.set_ylabel("flows surviving fail-over (%)")
    ax2.set_ylim(0, 105)
    ax2.set_title("survival")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("ctools lab: fail-over across a lossy sync link")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
