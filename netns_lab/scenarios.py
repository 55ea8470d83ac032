"""Scenarios shared by ``ctlab``, ``make demo`` and the tests: each builds a fresh lab,
runs traffic through a fail-over story and returns the report as a dict."""

from __future__ import annotations

import time
from collections.abc import Callable

from .config import LabConfig
from .lab import Lab

Progress = Callable[[str], None]


# How long the flows are watched after the last fail-over when the caller does not say:
# keepalived's VRRP takes longer to settle than the lab's own HA driver.
DEFAULT_OBSERVE_S = {"driver": 3.0, "keepalived": 6.0}


def _finish(lab: Lab, synced: bool, observe_s: float | None,
            extra: dict | None = None) -> dict:
    if observe_s is None:
        observe_s = DEFAULT_OBSERVE_S[lab.cfg.ha]
    report = lab.verdict(observe_s=observe_s, synced=synced).as_dict()
    report["failovers"] = [
        {"trigger": f.trigger, "new_master": f"fw{f.new_master}",
         "ms": round((f.done - f.started) * 1000, 1),
         "commit_window_ms": None if f.commit_window_ms is None else round(f.commit_window_ms, 2),
         "window_drops": f.window_drops} for f in lab.failovers]
    if extra:
        report.update(extra)
    return report


def failover(cfg: LabConfig, flows: int = 20, udp_flows: int = 2, trigger: str = "cut",
             observe_s: float | None = None, sync_timeout: float = 15.0,
             progress: Progress | None = None, v6: bool = False) -> dict:
    """Flows through fw1, wait for fw2 to hold them, fail over, judge the flows."""
    with Lab(cfg, progress=progress) as lab:
        lab.start_traffic(tcp_flows=flows, udp_flows=udp_flows, v6=v6)
        synced = lab.wait_synced(timeout=sync_timeout) if cfg.replicate else False
        lab.failover(trigger=trigger)
        return _finish(lab, synced, observe_s, {"scenario": f"failover-{trigger}"})


def failback(cfg: LabConfig, flows: int = 20, udp_flows: int = 2,
             observe_s: float | None = None, sync_timeout: float = 15.0,
             progress: Progress | None = None, v6: bool = False) -> dict:
    """Fail over to fw2, let fw1 learn the flows back from fw2, then fail back to fw1."""
    with Lab(cfg, progress=progress) as lab:
        lab.start_traffic(tcp_flows=flows, udp_flows=udp_flows, v6=v6)
        lab.wait_synced(timeout=sync_timeout)
        lab.failover()
        lab.wait_flowing(timeout=15.0)
        first = lab.verdict(observe_s=0.5).as_dict()
        # fw1 is isolated from the LANs but still on the sync link: it must hold fw2's
        # states (fw2 sent a bulk update when it became primary)
        synced = lab.wait_synced(timeout=sync_timeout, replica=1)
        lab.failback()
        return _finish(lab, synced, observe_s, {
            "scenario": "failback",
            "after_failover": {k: first[k] for k in ("flows_survived", "stalls",
                                                     "tcp_resets")}})


def restart(cfg: LabConfig, flows: int = 20, udp_flows: int = 2,
            observe_s: float | None = None, sync_timeout: float = 15.0,
            progress: Progress | None = None, v6: bool = False) -> dict:
    """Crash the backup's daemon, restart it (it asks for a resync), then fail over."""
    with Lab(cfg, progress=progress) as lab:
        lab.start_traffic(tcp_flows=flows, udp_flows=udp_flows, v6=v6)
        lab.wait_synced(timeout=sync_timeout)
        resync_s = lab.restart_replica(2, crash=True, timeout=sync_timeout)
        synced = resync_s is not None
        lab.failover()
        return _finish(lab, synced, observe_s, {"scenario": "restart-resync",
                                                "resync_s": round(resync_s, 3) if synced else None,
                                                "resync_requests": lab.resync_requests})


def partition(cfg: LabConfig, flows: int = 20, udp_flows: int = 2, cut_s: float = 2.0,
              observe_s: float | None = None, sync_timeout: float = 15.0,
              progress: Progress | None = None, v6: bool = False) -> dict:
    """Partition the sync link, open half of the flows during the cut, heal, wait for the
    backup to catch up, then fail over."""
    with Lab(cfg, progress=progress) as lab:
        before = flows // 2
        lab.start_traffic(tcp_flows=before, udp_flows=udp_flows, v6=v6)
        lab.wait_synced(timeout=sync_timeout)
        lab.partition()
        if progress:
            progress("sync link partitioned")
        assert lab.traffic is not None
        nc, ns_ = len(lab.topo.clients), len(lab.topo.servers)
        for k in range(flows - before):
            lab.traffic.add_tcp_flow(lab.topo.clients[k % nc],
                                     lab.topo.client_addr(k % nc + 1, v6),
                                     lab.topo.server_addr(k % ns_ + 1, v6))
        lab.traffic.wait_connected()
        time.sleep(cut_s)
        lab.heal()
        t0 = time.monotonic()
        if progress:
            progress("sync link healed")
        synced = lab.wait_synced(timeout=sync_timeout)
        heal_s = time.monotonic() - t0
        lab.failover()
        return _finish(lab, synced, observe_s, {"scenario": "partition-heal",
                                                "heal_converge_s": round(heal_s, 3)
                                                if synced else None})


SCENARIOS = {"failover": failover, "failback": failback, "restart": restart,
             "partition": partition}
