"""The ``ctlab sweep`` scenario replayed in the simulator, for comparison with the real lab.

The lab (netns_lab/sweep.py) starts two FT-FW replicas, lets them settle, opens 20 TCP flows
through the master and measures how long after the last flow is established the backup's
external cache holds all of them as ESTABLISHED; the sync link loses a share of frames in
both directions. Here: the same flows as kernel events on replica 0 (NEW at the SYN, then
ESTABLISHED half a millisecond later, 5 ms between flows), uniform loss both ways, and the
same measurement taken at every simulated step (the lab polls every 0.1 s).
"""

from __future__ import annotations

import csv
import os
import statistics

from ctools.model import (
    AF_INET,
    IPPROTO_TCP,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_STATE,
    Entry,
    Tuple,
)
from sim.config import SimConfig
from sim.link import LinkFaults
from sim.simulator import Simulator
from sim.workload import NEW, UPDATE, WorkloadSpec

SETTLE_S = 3.0          # the lab's daemons run for seconds before the traffic starts
SPACING_S = 0.005
TIMEOUT_S = 10.0        # the lab's sync_timeout
COLUMNS = ("loss", "seed", "synced", "convergence_s")


def _flow(k: int, state: str) -> Entry:
    orig = Tuple(AF_INET, f"10.0.1.{2 + k % 2}", "10.0.2.2", IPPROTO_TCP, 40000 + k, 7777)
    reply = Tuple(AF_INET, "10.0.2.2", orig.src, IPPROTO_TCP, 7777, 40000 + k)
    if state == "SYN_SENT":
        return Entry(orig, reply, status=IPS_CONFIRMED, tcp_state=TCP_STATE[state],
                     timeout=120)
    return Entry(orig, reply, status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
                 tcp_state=TCP_STATE[state], timeout=432000)


def lab_point(loss: float, seed: int, flows: int = 20) -> float | None:
    """Seconds from the last flow's ESTABLISHED to the backup holding every flow, or None."""
    cfg = SimConfig(seed=seed, mode="ftfw",
                    workload=WorkloadSpec(entries=0, churn_s=0.0, churn_rate=0.0),
                    faults=LinkFaults(loss=loss, delay_min_us=50, delay_mean_us=50))
    sim = Simulator(cfg)
    sim.run_until(SETTLE_S)
    t = SETTLE_S
    for k in range(flows):
        sim.inject(0, [(NEW, _flow(k, "SYN_SENT"))])
        sim.run_until(t + 0.0005)
        sim.inject(0, [(UPDATE, _flow(k, "ESTABLISHED"))])
        t += SPACING_S
        sim.run_until(t)
    t0 = sim.queue.now
    want = {_flow(k, "ESTABLISHED").key() for k in range(flows)}
    backup = sim.replicas[1].external.entries
    established = TCP_STATE["ESTABLISHED"]
    end = t0 + int(TIMEOUT_S * 1e6)
    while True:
        if all(k in backup and backup[k].tcp_state == established for k in want):
            return (sim.queue.now - t0) / 1e6
        nxt = sim.queue.peek_time()
        if nxt is None or nxt > end:
            return None
        sim.queue.step()


def compare(losses: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4), seeds: int = 20,
            out: str = "docs") -> list[dict]:
    """Run every loss ``seeds`` times; write ``<out>/data/sim_lab_compare.csv`` and a plot
    against ``<out>/data/lab_sweep.csv`` when the lab's numbers exist."""
    rows = []
    for loss in losses:
        for seed in range(1, seeds + 1):
            took = lab_point(loss, seed)
            rows.append({"loss": round(loss * 100, 1), "seed": seed, "synced": took is not None,
                         "convergence_s": None if took is None else round(took, 4)})
    path = os.path.join(out, "data", "sim_lab_compare.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    lab_csv = os.path.join(out, "data", "lab_sweep.csv")
    if os.path.exists(lab_csv):
        plot(rows, _read_lab(lab_csv), os.path.join(out, "plots", "sim_vs_lab.png"))
    return rows


def _read_lab(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def summary(rows: list[dict], lab: list[dict] | None = None) -> list[dict]:
    """Per loss: simulator mean/median/p90 and synced share, lab means per implementation."""
    out = []
    for loss in sorted({float(r["loss"]) for r in rows}):
        sims = [r for r in rows if float(r["loss"]) == loss]
        times = sorted(r["convergence_s"] for r in sims if r["synced"])
        row = {"loss": loss, "sim_synced": f"{len(times)}/{len(sims)}",
               "sim_mean_s": round(statistics.mean(times), 3) if times else None,
               "sim_median_s": round(statistics.median(times), 3) if times else None,
               "sim_p90_s": round(times[int(0.9 * (len(times) - 1))], 3) if times else None}
        for kind in ("ours", "c"):
            labs = [r for r in lab or () if r["replicas"] == kind and float(r["loss"]) == loss]
            vals = [float(r["convergence_s"]) for r in labs if r["convergence_s"]]
            row[f"lab_{kind}_mean_s"] = round(statistics.mean(vals), 3) if vals else None
            row[f"lab_{kind}_synced"] = f"{len(vals)}/{len(labs)}"
        out.append(row)
    return out


def plot(rows: list[dict], lab: list[dict], path: str) -> None:
    """Simulator points (every seed, and the mean) over the lab's runs, per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["loss"] for r in rows if r["synced"]]
    ys = [r["convergence_s"] for r in rows if r["synced"]]
    ax.scatter(xs, ys, s=10, alpha=0.35, label="ctsim, each seed")
    summ = summary(rows, lab)
    ax.plot([s["loss"] for s in summ if s["sim_mean_s"] is not None],
            [s["sim_mean_s"] for s in summ if s["sim_mean_s"] is not None],
            marker="o", label="ctsim mean")
    for kind, marker in (("ours", "s"), ("c", "^")):
        pts = [(float(r["loss"]), float(r["convergence_s"])) for r in lab
               if r["replicas"] == kind and r["convergence_s"]]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=40,
                       label=f"ctlab sweep, {kind}")
    ax.set_xlabel("sync-link loss (%)")
    ax.set_ylabel("seconds until the backup holds all 20 flows")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
