"""``Lab``: one fail-over lab — topology, impaired sync link, replicas, HA, traffic, verdict.

    from netns_lab import Lab, LabConfig, Impairment

    with Lab(LabConfig(replicas="c", impairment=Impairment(loss=0.3))) as lab:
        lab.start_traffic(tcp_flows=20)
        lab.wait_synced()
        lab.failover()
        report = lab.verdict(observe_s=3)

Everything the lab starts (namespaces, relay, daemons, keepalived, hook scripts) is
removed by ``down()``/``__exit__``, also after errors and Ctrl-C; ``cleanup()`` removes
the leftovers of a crashed run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import NetNS

from . import nsutil, ruleset
from .addrwatch import AddrWatch
from .config import Impairment, LabConfig
from .garp import announce
from .keepalived import Keepalived
from .relay import query as relay_query
from .replicas import Replica
from .topology import Topology, remove_namespace
from .traffic import TCP_PORT, Traffic

ESTABLISHED_RE = re.compile(r"ESTABLISHED src=(\S+) dst=\S+ sport=(\d+) dport=(\d+)")
COMMITTED_RE = re.compile(r"Committed (\d+) new entries")


@dataclass
class FailoverTiming:
    """Wall-clock facts of one take-over (seconds since the epoch; None = not seen)."""

    trigger: str
    new_master: int
    started: float
    done: float = 0.0
    vip_up: float | None = None
    commit_call: float | None = None
    commit_done: float | None = None
    window_drops: int | None = None
    mono_started: float = 0.0
    mono_done: float = 0.0

    @property
    def commit_window_ms(self) -> float | None:
        """Time the new master held the VIPs before its commit had finished."""
        if self.vip_up is None or self.commit_done is None:
            return None
        return max(0.0, (self.commit_done - self.vip_up) * 1000.0)


@dataclass
class Verdict:
    """The fail-over result in numbers (``as_dict`` gives the JSON report fields)."""

    data: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.data.get("ok"))

    def as_dict(self) -> dict:
        return dict(self.data)


class Lab:
    """A context-managed fail-over lab (see the module docstring)."""

    def __init__(self, cfg: LabConfig | None = None,
                 progress: Callable[[str], None] | None = None, keep_rundir: bool = False,
                 **settings) -> None:
        cfg = cfg or LabConfig()
        for key, value in settings.items():
            if not hasattr(cfg, key):
                raise TypeError(f"unknown lab setting {key!r}")
            setattr(cfg, key, value)
        cfg.validate()
        self.cfg = cfg
        self.topo = Topology(cfg)
        self.rundir = Path(cfg.rundir_base) / cfg.prefix
        self.progress = progress or (lambda _msg: None)
        self.keep_rundir = keep_rundir
        self.replicas: dict[int, Replica] = {}
        self.keepalived: dict[int, Keepalived] = {}
        self.relay_proc: subprocess.Popen | None = None
        self.traffic: Traffic | None = None
        self.watch: AddrWatch | None = None
        self.master = 1
        self.failovers: list[FailoverTiming] = []
        self.synced_after: float | None = None
        self.resync_requests = 0
        self.traffic_started = 0.0
        self.relay_control = self.rundir / "relay.ctl"
        self._is_up = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> Lab:
        """Build and start everything; on error, tear down what was started and re-raise."""
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        cfg = self.cfg
        base = Path(cfg.rundir_base)
        base.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.rundir.mkdir(mode=0o755, exist_ok=False)
        self._is_up = True
        self._write_state()
        self.progress(f"building topology {cfg.prefix}")
        self.topo.build()
        self.hold_backend = ""
        for i in (1, 2):
            self.hold_backend = ruleset.load(self.topo.fw[i], hold=cfg.hold)
        self.progress("starting the sync-link relay")
        self._start_relay()
        # hold mode keeps keepalived's order (VIPs first) and holds packets instead
        hook_vips = cfg.close_window and not cfg.hold
        for i in (1, 2):
            self.replicas[i] = Replica(cfg, self.topo, i, self.rundir, manage_vips=hook_vips,
                                       replicate=cfg.replicate, hold=cfg.hold,
                                       hold_backend=self.hold_backend)
            if cfg.hold:
                self.replicas[i].start_holder(ruleset.HOLD_QUEUE)
        if cfg.replicate:
            for i in (1, 2):
                self.progress(f"starting fw{i} conntrackd ({self.replicas[i].kind})")
                self.replicas[i].start()
            if cfg.settle:
                self.wait_handshake()
        self._write_state()
        self.watch = AddrWatch(self.topo.fw[2])
        if cfg.ha == "keepalived":
            self.progress("starting keepalived on fw1 and fw2")
            for i in (1, 2):
                self.keepalived[i] = Keepalived(cfg, self.topo, i, self.rundir,
                                                self.replicas[i].notify, manage_vips=not hook_vips)
                self.keepalived[i].start()
            self._write_state()
            self._wait_notify(1, "primary", since=0.0, timeout=15)
        else:
            self.replicas[2].run_notify("backup")
            if not hook_vips:
                self._vips(1, up=True)
            self.replicas[1].run_notify("primary")
        self.master = 1
        self.progress("lab is up")

    def down(self) -> None:
        """Stop and remove everything this lab started (safe to call more than once)."""
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        for ka in self.keepalived.values():
            with contextlib.suppress(Exception):
                ka.stop()
        for rep in self.replicas.values():
            with contextlib.suppress(Exception):
                rep.stop_holder()
            with contextlib.suppress(Exception):
                rep.stop()
        self._stop_relay()
        for name in self.topo.all_names:
            kill_namespace_processes(name)
        self.topo.destroy()
        if self._is_up and not self.keep_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        self._is_up = False

    def _write_state(self) -> None:
        state = {"prefix": self.cfg.prefix, "owner_pid": os.getpid(),
                 "namespaces": self.topo.all_names, "created": time.time(),
                 "replicas": self.cfg.replicas, "ha": self.cfg.ha,
                 "pids": self._pids()}
        (self.rundir / "state.json").write_text(json.dumps(state))

    def _pids(self) -> list[int]:
        pids = []
        if self.relay_proc is not None:
            pids.append(self.relay_proc.pid)
        for rep in self.replicas.values():
            if rep.proc is not None:
                pids.append(rep.proc.pid)
            if rep.holder is not None:
                pids.append(rep.holder.pid)
        for ka in self.keepalived.values():
            pids.extend(ka.pids())
        return pids

    def detach(self) -> None:
        """Leave the lab running after this process exits (``ctlab up``)."""
        state_path = self.rundir / "state.json"
        state = json.loads(state_path.read_text())
        state["owner_pid"] = None
        state["pids"] = self._pids()
        state_path.write_text(json.dumps(state))
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        self._is_up = False

    # -- relay ---------------------------------------------------------------------------------
    def _start_relay(self) -> None:
        out = open(self.rundir / "relay.out", "ab")
        self.relay_proc = subprocess.Popen(
            nsutil.cmd(self.topo.relay, sys.executable, "-m", "netns_lab.relay",
                       "--ports", "a", "b", "--seed", str(self.cfg.seed),
                       "--sync-port", str(self.cfg.sync_port),
                       "--impairment", json.dumps(self.cfg.impairment.as_dict()),
                       "--control", str(self.relay_control),
                       "--stats", str(self.rundir / "relay.json")),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent))
        out.close()
        deadline = time.monotonic() + 10
        while not self.relay_control.exists():
            if self.relay_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sync-link relay did not start: "
                                   + (self.rundir / "relay.out").read_text(errors="replace"))
            time.sleep(0.02)

    def _stop_relay(self) -> None:
        proc, self.relay_proc = self.relay_proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=3)

    def link_stats(self) -> dict:
        """The relay's counts (per direction and total)."""
        try:
            return relay_query(str(self.relay_control), {"cmd": "stats"})
        except (OSError, ValueError):
            path = self.rundir / "relay.json"
            return json.loads(path.read_text()) if path.exists() else {}

    def wait_handshake(self, quiet_s: float = 1.5, timeout: float = 20.0) -> float:
        """Wait until the replicas finished FT-FW's HELLO handshake: sync messages flow both
        ways and none carried HELLO/HELLO_BACK for ``quiet_s``.

        While a sender still says HELLO the receiver accepts without checking sequence
        numbers, so a loss in that phase is never repaired (C and ours alike): a lab that
        wants to test steady-state replication starts its traffic after this.
        """
        t0 = time.monotonic()
        self.progress("waiting for the replicas' HELLO handshake")
        while time.monotonic() - t0 < timeout:
            hs = self.link_stats().get("handshake", {})
            ok = len(hs) == 2
            for d in hs.values():
                last_sync, last_hello = d.get("last_sync_s_ago"), d.get("last_hello_s_ago")
                if last_sync is None or (last_hello is not None and last_hello < quiet_s):
                    ok = False
            if ok:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise TimeoutError(f"the replicas did not finish their HELLO handshake within "
                           f"{timeout:.0f}s (sync link: {self.link_stats().get('total')})")

    def set_impairment(self, **settings) -> Impairment:
        """Change the sync link's impairment while running (e.g. ``partition=True``)."""
        reply = relay_query(str(self.relay_control), {"cmd": "set", "impairment": settings})
        if "error" in reply:
            raise ValueError(reply["error"])
        self.cfg.impairment = Impairment(**reply["impairment"])
        return self.cfg.impairment

    def partition(self) -> None:
        """Cut the sync link (every frame dropped, counted as 'partitioned')."""
        self.set_impairment(partition=True)

    def heal(self) -> None:
        self.set_impairment(partition=False)

    # -- HA ------------------------------------------------------------------------------------
    def _vips(self, index: int, up: bool) -> None:
        ns = self.topo.fw[index]
        with NetNS(ns) as ipr:
            for ifname, addr, plen in self.topo.vips():
                idx = ipr.link_lookup(ifname=ifname)[0]
                with contextlib.suppress(Exception):
                    ipr.addr("add" if up else "del", index=idx, address=addr, prefixlen=plen)
        if up:
            with nsutil.inside(ns):
                announce([(i, a) for i, a, _p in self.topo.vips()])

    def _set_lan_ports(self, index: int, up: bool) -> None:
        for br_ns in (self.topo.lanc, self.topo.lans):
            with NetNS(br_ns) as ipr:
                idx = ipr.link_lookup(ifname=f"fw{index}")[0]
                ipr.link("set", index=idx, state="up" if up else "down")

    def _wait_notify(self, index: int, state: str, since: float, timeout: float) -> float:
        """Wait until replica ``index``'s hook finished ``state`` after ``since``."""
        log = self.replicas[index].notify_log
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, word, arg in _log_lines(log):
                if word == "end" and arg == state and t >= since:
                    return t
            time.sleep(0.02)
        raise TimeoutError(f"fw{index} did not become {state} within {timeout:.0f}s "
                           + (self.keepalived[index].tail() if index in self.keepalived else ""))

    def failover(self, trigger: str = "cut", timeout: float = 20.0) -> FailoverTiming:
        """Make the backup take over; return the timings.

        ``trigger``: ``cut`` takes the master's LAN links down (it vanishes from both LANs),
        ``stop`` stops keepalived on the master (keepalived mode only).
        """
        old = self.master
        new = 3 - old
        rep = self.replicas[new]
        ruleset.reset_counters(self.topo.fw[new])
        timing = FailoverTiming(trigger, new, started=time.time(), mono_started=time.monotonic())
        self.progress(f"fail-over fw{old} -> fw{new} ({trigger})")
        if self.cfg.ha == "keepalived":
            if trigger == "stop":
                self.keepalived[old].stop()
            else:
                self._set_lan_ports(old, up=False)
            self._wait_notify(new, "primary", since=timing.started, timeout=timeout)
        else:
            if trigger != "cut":
                raise ValueError("the built-in driver only knows the 'cut' trigger")
            self._set_lan_ports(old, up=False)
            if not self.cfg.close_window or self.cfg.hold:
                self._vips(new, up=True)          # keepalived's order: addresses first
            rep.run_notify("primary")
        timing.done = time.time()
        timing.mono_done = time.monotonic()
        self._fill_timing(timing, rep)
        self.failovers.append(timing)
        self.master = new
        return timing

    def failback(self, timeout: float = 20.0) -> FailoverTiming:
        """Bring the old master back and hand the VIPs back to it."""
        back = 3 - self.master
        cur = self.master
        self._set_lan_ports(back, up=True)
        timing = FailoverTiming("failback", back, started=time.time(),
                                mono_started=time.monotonic())
        ruleset.reset_counters(self.topo.fw[back])
        self.progress(f"fail-back fw{cur} -> fw{back}")
        if self.cfg.ha == "keepalived":
            if back in self.keepalived and self.keepalived[back].proc is None:
                self.keepalived[back].start()
            self._wait_notify(back, "primary", since=timing.started, timeout=timeout)
        else:
            vips_first = not self.cfg.close_window or self.cfg.hold
            if vips_first:
                self._vips(cur, up=False)
            self.replicas[cur].run_notify("backup")
            if vips_first:
                self._vips(back, up=True)
            self.replicas[back].run_notify("primary")
        timing.done = time.time()
        timing.mono_done = time.monotonic()
        self._fill_timing(timing, self.replicas[back])
        self.failovers.append(timing)
        self.master = back
        return timing

    def _fill_timing(self, timing: FailoverTiming, rep: Replica) -> None:
        vip_addrs = {a for _i, a, _p in self.topo.vips()}
        if self.cfg.close_window and not self.cfg.hold:
            for t, word, _arg in _log_lines(rep.notify_log):
                if word == "vips_up" and t >= timing.started:
                    timing.vip_up = t
                    break
        elif self.watch is not None and rep.index == 2:
            timing.vip_up = self.watch.first("new", vip_addrs, timing.started)
        for t, word, arg in _log_lines(rep.calls):
            if t is not None and t < timing.started:
                continue
            if word == "call" and arg.endswith(" -c") and timing.commit_call is None:
                timing.commit_call = t
            elif word == "done" and arg.endswith(" -c") and timing.commit_done is None:
                timing.commit_done = t
        drops = [int(t) for t, w, _a in _log_lines(rep.calls) if w == "window_drops" and t is not None]
        if drops and timing.commit_done is not None:
            timing.window_drops = drops[-1]

    def restart_replica(self, index: int, crash: bool = True,
                        timeout: float = 20.0) -> float | None:
        """Kill (or stop) a replica's daemon and start it again; it asks its peer for a
        resync (StartupResync and ``-n``). Return seconds until the (backup) replica's
        external cache holds every established flow again (None if not within
        ``timeout``).

        A resync request sent during the HELLO handshake is not repaired when lost, so if
        the first request does not bring the flows back, the request is repeated once the
        handshake is over; ``resync_requests`` tells how many were needed.
        """
        rep = self.replicas[index]
        self.progress(f"{'crashing' if crash else 'stopping'} and restarting fw{index} "
                      f"conntrackd")
        if crash:
            rep.kill()
        else:
            rep.stop()
        t0 = time.monotonic()
        rep.start()
        rep.client("-n", check=False)
        self.resync_requests = 1
        self._write_state()
        if index == self.master:
            return time.monotonic() - t0
        if self.wait_synced(timeout=min(3.0, timeout), replica=index):
            return time.monotonic() - t0
        with contextlib.suppress(TimeoutError):
            self.wait_handshake(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        rep.client("-n", check=False)
        self.resync_requests = 2
        left = timeout - (time.monotonic() - t0)
        if left > 0 and self.wait_synced(timeout=left, replica=index):
            return time.monotonic() - t0
        return None

    # -- traffic and convergence ------------------------------------------------------------
    def start_traffic(self, tcp_flows: int = 20, udp_flows: int = 0, v6: bool = False,
                      interval: float = 0.1) -> int:
        """Open long-lived flows client -> server through the master; return how many
        TCP flows are established."""
        self.traffic = tr = Traffic(interval=interval)
        for j, ns in enumerate(self.topo.servers, 1):
            tr.add_server(ns, self.topo.server_addr(j, v6))
        tr.start()
        nc, ns_ = len(self.topo.clients), len(self.topo.servers)
        for k in range(tcp_flows):
            c, s = k % nc, k % ns_
            tr.add_tcp_flow(self.topo.clients[c], self.topo.client_addr(c + 1, v6),
                            self.topo.server_addr(s + 1, v6))
        for k in range(udp_flows):
            c, s = k % nc, k % ns_
            tr.add_udp_flow(self.topo.clients[c], self.topo.client_addr(c + 1, v6),
                            self.topo.server_addr(s + 1, v6))
        self.traffic_started = time.monotonic()
        n = tr.wait_connected()
        self.progress(f"{n}/{tcp_flows} TCP flows established")
        return n

    def synced_flows(self, replica: int) -> set[tuple[str, int]]:
        """(client address, client port) of established lab flows in a replica's external
        cache."""
        out = set()
        for line in self.replicas[replica].external_cache():
            m = ESTABLISHED_RE.search(line)
            if m and int(m.group(3)) == TCP_PORT:
                out.add((m.group(1), int(m.group(2))))
        return out

    def wait_synced(self, timeout: float = 20.0, replica: int | None = None) -> bool:
        """Wait until the backup's external cache holds every established TCP flow."""
        replica = replica or 3 - self.master
        if self.traffic is None or not self.cfg.replicate:
            return False
        want = {(f.client, f.sport) for f in self.traffic.flows
                if f.kind == "tcp" and f.connected and not f.reset}
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        have: set = set()
        while time.monotonic() < deadline:
            have = self.synced_flows(replica)
            if want <= have:
                self.synced_after = time.monotonic() - self.traffic_started
                self.progress(f"fw{replica} holds all {len(want)} flows "
                              f"({time.monotonic() - t0:.2f}s)")
                return True
            time.sleep(0.1)
        self.progress(f"fw{replica} holds {len(want & have)}/{len(want)} flows after "
                      f"{timeout:.0f}s")
        return False

    def wait_flowing(self, timeout: float = 15.0) -> int:
        """Wait until every live TCP flow echoed again after the last fail-over; return
        how many did."""
        assert self.traffic is not None, "start_traffic() first"
        since = self.failovers[-1].mono_done if self.failovers else self.traffic_started
        deadline = time.monotonic() + timeout
        while True:
            live = [f for f in self.traffic.flows
                    if f.kind == "tcp" and f.connected and not f.reset]
            flowing = sum(1 for f in live if f.last_echo() > since)
            if flowing == len(live) or time.monotonic() > deadline:
                return flowing
            time.sleep(0.1)

    def verdict(self, observe_s: float = 3.0, stall_s: float = 2.0,
                synced: bool | None = None) -> Verdict:
        """Watch the flows for ``observe_s`` after the last fail-over and judge them."""
        assert self.traffic is not None, "start_traffic() first"
        fo = self.failovers[-1] if self.failovers else None
        since = fo.mono_started if fo else self.traffic_started
        end_wait = (fo.mono_done if fo else time.monotonic()) + observe_s
        while time.monotonic() < end_wait:
            time.sleep(0.05)
        now = time.monotonic()
        flows = [f for f in self.traffic.flows if f.kind == "tcp"]
        started = [f for f in flows if f.connected]
        survived, resets, stalls, gaps = 0, 0, 0, []
        srv = self.traffic.server_bytes()
        for f in started:
            f.server_received = srv.get((f.client, f.sport), 0)
            if f.reset:
                resets += 1
                continue
            alive = f.last_echo() > (fo.mono_done if fo else since) and \
                now - f.last_echo() < stall_s
            if alive:
                survived += 1
                gaps.append(f.longest_gap(since, now))
            else:
                stalls += 1
        udp = [f for f in self.traffic.flows if f.kind == "udp"]
        udp_ok = sum(1 for f in udp if f.last_echo() > since and now - f.last_echo() < stall_s)
        link = self.link_stats()
        fw_new = self.topo.fw[self.master]
        data = {
            "scenario": fo.trigger if fo else "none",
            "replicas": self.cfg.replicas,
            "implementations": {f"fw{i}": r.kind for i, r in self.replicas.items()},
            "ha": self.cfg.ha,
            "hook_script": str(self.replicas[self.master].primary_backup_script)
            if self.replicas else None,
            "close_window": self.cfg.close_window,
            "hold": self.cfg.hold,
            "hold_backend": getattr(self, "hold_backend", ""),
            "held_packets": self.replicas[self.master].holder_stats().get("released")
            if self.cfg.hold and self.replicas else None,
            "seed": self.cfg.seed,
            "impairment": self.cfg.impairment.as_dict(),
            "flows_started": len(started),
            "flows_survived": survived,
            "tcp_resets": resets,
            "stalls": stalls,
            "gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
            "gap_ms_median": round(sorted(gaps)[len(gaps) // 2] * 1000, 1) if gaps else None,
            "udp_flows": len(udp),
            "udp_survived": udp_ok,
            "sync_converged": synced,
            "convergence_s": round(self.synced_after, 3) if self.synced_after else None,
            "failover_ms": round((fo.done - fo.started) * 1000, 1) if fo else None,
            "commit_entries": self.commit_entries(self.master),
            "commit_seconds": round(fo.commit_done - fo.commit_call, 6)
            if fo and fo.commit_done and fo.commit_call else None,
            "commit_window_ms": round(fo.commit_window_ms, 2)
            if fo and fo.commit_window_ms is not None else None,
            "window_drops": fo.window_drops if fo else None,
            "invalid_drops_after": ruleset.counters(fw_new)["invalid_drops"],
            "bytes_c2s": sum(f.server_received for f in started),
            "bytes_s2c": sum(f.echoed for f in started),
            "link": link.get("total", {}),
            "link_directions": {k: v for k, v in link.items() if ">" in k},
            "reset_reasons": sorted({f.reset for f in started if f.reset}),
        }
        data["ok"] = bool(started) and survived == len(started)
        return Verdict(data)

    def commit_entries(self, index: int) -> int | None:
        """Entries committed by replica ``index`` in its last commit (from its log)."""
        rep = self.replicas.get(index)
        if rep is None or not rep.log.exists():
            return None
        found = COMMITTED_RE.findall(rep.log.read_text(errors="replace"))
        return int(found[-1]) if found else None


def _log_lines(path: Path) -> list[tuple[float | None, str, str]]:
    """(timestamp, word, rest) of the lab's timestamped hook logs."""
    out: list[tuple[float | None, str, str]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) < 2:
            continue
        word = parts[0]
        try:
            t = float(parts[1])
            rest = parts[2] if len(parts) > 2 else ""
        except ValueError:
            t, rest = None, " ".join(parts[1:])
        if word == "done" and rest.startswith("rc="):
            rest = rest.split(" ", 1)[1] if " " in rest else ""
        out.append((t, word, rest))
    return out


def kill_namespace_processes(name: str) -> int:
    """SIGKILL every process (by pid) still inside the lab namespace ``name``."""
    if not nsutil.exists(name):
        return 0
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    n = 0
    for tok in res.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(tok), signal.SIGKILL)
            n += 1
    return n


def cleanup(prefix: str | None = None, include_owned: bool = False,
            base: str = "/run/ctlab") -> list[str]:
    """Remove leftover labs: namespaces ``ctlab-*`` (or ``prefix``) with their processes and
    run folders. Labs whose owner process is alive are kept unless ``include_owned``."""
    removed = []
    prefixes: set[str] = set()
    basep = Path(base)
    if basep.exists():
        for d in basep.iterdir():
            if prefix and d.name != prefix:
                continue
            owner = None
            with contextlib.suppress(OSError, ValueError):
                owner = json.loads((d / "state.json").read_text()).get("owner_pid")
            if owner and _pid_alive(owner) and not include_owned:
                continue
            with contextlib.suppress(OSError, ValueError):
                for pid in json.loads((d / "state.json").read_text()).get("pids", []):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            prefixes.add(d.name)
            shutil.rmtree(d, ignore_errors=True)
    live_owned = set()
    if basep.exists():
        live_owned = {d.name for d in basep.iterdir()}
    for ns in nsutil.list_names(prefix or "ctlab-"):
        lab_prefix = ns.rsplit("-", 1)[0]
        if lab_prefix in live_owned and lab_prefix not in prefixes:
            continue
        if prefix and lab_prefix != prefix:
            continue
        kill_namespace_processes(ns)
        remove_namespace(ns)
        removed.append(ns)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_labs(base: str = "/run/ctlab") -> list[dict]:
    """State of every lab with a run folder (and orphan namespaces as prefix-only items)."""
    labs = []
    seen = set()
    basep = Path(base)
    if basep.exists():
        for d in sorted(basep.iterdir()):
            state: dict = {"prefix": d.name}
            with contextlib.suppress(OSError, ValueError):
                state.update(json.loads((d / "state.json").read_text()))
            state["alive_pids"] = [p for p in state.get("pids", []) if _pid_alive(p)]
            state["present_namespaces"] = nsutil.list_names(d.name + "-")
            labs.append(state)
            seen.add(d.name)
    orphans = {ns.rsplit("-", 1)[0] for ns in nsutil.list_names("ctlab-")} - seen
    for p in sorted(orphans):
        labs.append({"prefix": p, "orphan": True,
                     "present_namespaces": nsutil.list_names(p + "-")})
    return labs
