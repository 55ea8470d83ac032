"""Statistics mode: flows that end without a DESTROY event reaching the daemon are purged
(dropped from the cache and logged) by the periodic re-read of PollSecs and by the resync
after a netlink overrun. Ours and the reference run side by side in one namespace."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from conftest import REF_CONNTRACKD
from daemon_helpers import OURS, Replica, wait_for

pytestmark = [pytest.mark.root]

ACTIVE = re.compile(r" \[active since \d+s\]")


def _udp(ns, op: str, sport: int, *extra: str) -> None:
    ns.run("conntrack", op, "-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp", "--sport", str(sport),
           "--dport", "53", *extra)


def _flow_log(path) -> list[str]:
    """The logged entries without their time stamps, in order."""
    if not path.exists():
        return []
    return [ln.split("\t", 1)[1] for ln in path.read_text().splitlines()]


def _cache(rep: Replica) -> list[str]:
    return sorted(ACTIVE.sub("", ln) for ln in rep.out("-i").splitlines())


def _counters(rep: Replica) -> str:
    return rep.out("-s")


def _pair(ns, tmp_path, general: str, which=("ref", "ours")) -> dict[str, Replica]:
    if REF_CONNTRACKD is None and "ref" in which:
        pytest.skip("reference conntrackd is not installed")
    reps = {}
    for name in which:
        body = f"{general}  HashSize 8192\n}}\nStats {{ LogFile {tmp_path / (name + '-flows.log')} }}\n"
        reps[name] = Replica(ns, [REF_CONNTRACKD] if name == "ref" else OURS, tmp_path, name, body)
    return reps


@pytest.fixture
def ns(netns_factory):
    ns = netns_factory("ctst")
    ns.enable_conntrack()
    return ns


def test_polling_purges_and_resyncs_like_reference(ns, tmp_path):
    # counters and time stamps on: a purged flow is logged without counters (the cache has
    # none) but with its age, as the reference does
    ns.run("sysctl", "-w", "net.netfilter.nf_conntrack_acct=1",
           "net.netfilter.nf_conntrack_timestamp=1")
    for sport in (1, 2):
        _udp(ns, "-I", sport, "-t", "100")
    reps = _pair(ns, tmp_path, "  PollSecs 1\n")
    ours, ref = reps["ours"], reps["ref"]
    try:
        for r in reps.values():
            r.start()
        # no events in polling mode: nothing changes until the next poll
        _udp(ns, "-I", 3, "-t", "100")
        _udp(ns, "-D", 1)
        _udp(ns, "-U", 2, "-m", "5")
        for name, r in reps.items():
            assert wait_for(lambda r=r: "sport=1 " not in r.out("-i"), 5), name
        time.sleep(1.2)        # one more poll each: counters stable and comparable
        assert _cache(ours) == _cache(ref)
        assert any("sport=2 " in ln and "mark=5" in ln for ln in _cache(ours))
        assert any("sport=3 " in ln for ln in _cache(ours))
        # created/destroyed: exact; updated grows with every poll (one per cached flow)
        o, f = _counters(ours), _counters(ref)
        for label in ("current active connections", "connections created",
                      "connections destroyed", "traffic processed"):
            assert [ln for ln in o.splitlines() if label in ln] == \
                [ln for ln in f.splitlines() if label in ln], label
        assert "destroyed:\t\t           1\t" in o
        # the purged flow is logged as it was cached (mark=0 included, no counters)
        # (the age differs by the daemons' poll phases: compare its presence)
        age = re.compile(r"delta-time=\d+$")
        logged = [age.sub("delta-time=N", x) for x in _flow_log(tmp_path / "ours-flows.log")]
        assert logged == [age.sub("delta-time=N", x)
                          for x in _flow_log(tmp_path / "ref-flows.log")]
        assert logged == [
            "udp      17 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=53 [UNREPLIED] src=2.2.2.2 "
            "dst=1.1.1.1 sport=53 dport=1 mark=0 delta-time=N"]
        # no event socket: nothing received, buffer size 0, polling is not a "resync"
        rt_o, rt_f = ours.out("-s", "runtime"), ref.out("-s", "runtime")
        assert rt_o.split("\n", 1)[1] == rt_f.split("\n", 1)[1]
        assert "events received:\t                   0" in rt_o
        assert "current buffer size (in bytes):\t           0" in rt_o
    finally:
        codes = {name: r.stop() for name, r in reps.items()}
    assert codes["ours"] == 0
    # the same daemon log, "running in polling mode" first, no event-buffer lines
    ours_log = [ln.split("] ", 2)[2] for ln in ours.log_text().splitlines()]
    ref_log = [ln.split("] ", 2)[2] for ln in ref.log_text().splitlines()]
    assert ours_log == ref_log
    assert ours_log[0] == "running in polling mode", ours_log


def _stop(rep: Replica) -> None:
    os.kill(rep.proc.pid, signal.SIGSTOP)


def _cont(rep: Replica) -> None:
    os.kill(rep.proc.pid, signal.SIGCONT)


def test_overrun_resync_purges_lost_flows_like_reference(ns, tmp_path):
    """Events are lost while the daemons are stopped: the resync NetlinkOverrunResync
    seconds after the overrun drops (and logs) the flows whose DESTROY never came."""
    general = ("  NetlinkBufferSize 4096\n  NetlinkBufferSizeMaxGrowth 16384\n"
               "  NetlinkOverrunResync 1\n")
    reps = _pair(ns, tmp_path, general)
    n = 120
    batch = tmp_path / "flows.save"
    lines = [f"-A -t 100 -u UNSET -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p udp "
             f"--sport {1000 + i} --dport 53 --reply-port-src 53 --reply-port-dst {1000 + i}"
             for i in range(n)]
    # half of them end while the daemons do not read: their DESTROY events are lost
    lines += [ln.replace("-A -t 100 -u UNSET", "-D", 1) for ln in lines[: n // 2]]
    batch.write_text("\n".join(lines) + "\n")
    ours, ref = reps["ours"], reps["ref"]
    try:
        for r in reps.values():
            r.start()
            assert os.path.realpath(f"/proc/{r.proc.pid}/exe") != "/usr/bin/ip"
        for r in reps.values():
            _stop(r)
        ns.run("conntrack", "-R", str(batch))
        for r in reps.values():
            _cont(r)
        for name, r in reps.items():
            # the resync (1 s after the overrun) brings the cache to the table's n/2 flows
            assert wait_for(lambda r=r: f"active connections:\t{n // 2:12d}" in r.out("-s"),
                            15), (name, r.out("-s"), r.out("-s", "runtime"))
        assert _cache(ours) == _cache(ref)
        assert len(_cache(ours)) == n // 2
        # a flow whose NEW event was read is logged when it ends, by its DESTROY event
        # (with counters: none here) or, when that was lost, by the purge (as cached, with
        # mark=0); a flow of which no event was read was never cached and is not logged.
        # Both buffers hold the same events, so both daemons log the same flows.
        logged_o = _flow_log(tmp_path / "ours-flows.log")
        logged_f = _flow_log(tmp_path / "ref-flows.log")
        assert sorted(logged_o) == sorted(logged_f)
        purged = [x for x in logged_o if x.endswith("mark=0")]
        assert purged, ("no cached flow lost its DESTROY event: the test did not overrun",
                        logged_o)
        ports = [int(re.search(r"sport=(\d+) ", x).group(1)) for x in logged_o]
        assert len(set(ports)) == len(ports) and all(p < 1000 + n // 2 for p in ports)
        # both buffers held the same events (the same size: NetlinkBufferSize exactly), so
        # the counters agree to the unit
        assert ours.out("-s") == ref.out("-s")
        rt = ours.out("-s", "runtime")
        assert rt.split("\n", 1)[1] == ref.out("-s", "runtime").split("\n", 1)[1]
        assert re.search(r"netlink overrun:\t\t +1\n", rt), rt
        assert re.search(r"resync with kernel table:\t +1\n", rt), rt
        assert "current buffer size (in bytes):\t        8192" in rt, rt
    finally:
        for r in reps.values():
            if r.proc is not None and r.proc.poll() is None:
                _cont(r)
        codes = {name: r.stop() for name, r in reps.items()}
    assert codes["ours"] == 0
    ours_log = [ln.split("] ", 2)[2] for ln in ours.log_text().splitlines()]
    ref_log = [ln.split("] ", 2)[2] for ln in ref.log_text().splitlines()]
    assert ours_log == ref_log
    assert "netlink event socket buffer size has been doubled to 8192 bytes" in ours_log
