"""Scenario: one-way FT-FW replication of a large burst over a lossy link (bench/sync.py's
loss runs, in virtual time).

Replica 0's kernel gains ``entries`` flows in event batches spread over ``inject_s`` seconds
(the bench creates 20k flows in about 0.2 s); only the direction 0 -> 1 loses datagrams (the
bench drops on the sender's output), and the time measured is from the first batch until
replica 1's external cache holds every flow. Protocol time only: the daemon's CPU time,
socket buffers and the bench's polling are not modelled.

    python -m sim.burstloss --entries 20000 --loss 0.3 --seeds 1-10
"""

from __future__ import annotations

import argparse
import statistics
import sys

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
from sim.clock import US, us
from sim.config import SimConfig
from sim.link import LinkFaults
from sim.simulator import Simulator
from sim.workload import NEW, WorkloadSpec


def _flows(n: int) -> list[Entry]:
    out = []
    for j in range(n):
        t = Tuple(AF_INET, f"10.0.{j >> 8 & 255}.{j & 255}", f"198.51.{100 + (j >> 16)}.1",
                  IPPROTO_TCP, 1024 + j % 60000, 443)
        r = Tuple(AF_INET, t.dst, t.src, IPPROTO_TCP, t.dport, t.sport)
        out.append(Entry(t, r, status=IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED,
                         tcp_state=TCP_STATE["ESTABLISHED"], timeout=3600, mark=0))
    return out


def burst_convergence(seed: int, entries: int = 20000, loss: float = 0.3,
                      inject_s: float = 0.2, batch: int = 100, bound_s: float = 60.0,
                      hardening: bool = True, trace_out=None,
                      loss_back: float = 0.0) -> float | None:
    """Virtual seconds from the first event batch until the peer holds all ``entries`` flows
    (None if not within ``bound_s``). ``loss_back``: loss of the direction 1 -> 0 (ACKs,
    NACKs). Deterministic in ``seed``."""
    cfg = SimConfig(seed=seed, workload=WorkloadSpec(entries=0, burst_s=0.0, churn_s=0.0),
                    hardening=hardening, liveness_bound_s=bound_s)
    sim = Simulator(cfg, trace_out)
    sim.start()
    sim.set_faults(0, 1, LinkFaults(loss=loss))
    if loss_back:
        sim.set_faults(1, 0, LinkFaults(loss=loss_back))
    flows = _flows(entries)
    start = sim.queue.now + us(0.001)
    nb = max(1, -(-entries // batch))
    for i in range(nb):
        chunk = [(NEW, e) for e in flows[i * batch:(i + 1) * batch]]
        sim.queue.at(start + us(inject_s * i / nb), sim.inject, 0, chunk)
    ext = sim.replicas[1].external.entries
    end = start + us(bound_s)
    q = sim.queue
    while len(ext) < entries:
        t = q.peek_time()
        if t is None or t > end:
            return None
        q.step()
    if sim.divergence() != (0, 0):
        return None
    return (q.now - start) / US


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",") if s]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="FT-FW burst under one-way loss, virtual time")
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--loss", type=float, default=0.3)
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--loss-back", type=float, default=0.0,
                    help="loss of the receiver's direction (ACK/NACK), default none")
    ap.add_argument("--inject-s", type=float, default=0.2)
    ap.add_argument("--no-hardening", action="store_true")
    args = ap.parse_args(argv)
    times = []
    for seed in _seeds(args.seeds):
        t = burst_convergence(seed, args.entries, args.loss, args.inject_s,
                              hardening=not args.no_hardening, loss_back=args.loss_back)
        print(f"seed {seed}: {'not converged' if t is None else f'{t:.3f} s'}", flush=True)
        times.append(t if t is not None else float("inf"))
    print(f"mean {statistics.mean(times):.3f} s  median {statistics.median(times):.3f} s  "
          f"max {max(times):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
