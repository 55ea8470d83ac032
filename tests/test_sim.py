"""The simulator (sim/): determinism, link model, checker, liveness — on the real sync core."""

from __future__ import annotations

import json
import statistics

import pytest

from sim import core as sync
from sim.cli import main as ctsim
from sim.config import ConfigError, Crash, SimConfig, parse_crash, parse_partition, swarm
from sim.link import GilbertElliott, LinkFaults, internet_checksum
from sim.rng import stream
from sim.simulator import Simulator, run
from sim.workload import WorkloadSpec


def small(seed: int, mode: str = "ftfw", **kw) -> SimConfig:
    """A short scenario (about 4 simulated seconds of workload)."""
    work = kw.pop("workload", WorkloadSpec(entries=40, churn_s=3.0, churn_rate=10.0))
    faults = kw.pop("faults", LinkFaults())
    return SimConfig(seed=seed, mode=mode, workload=work, faults=faults, **kw)


def test_real_core_is_simulated():
    assert sync.REAL_CORE, "sim must run ctools.sync, not the stand-in"


# -- determinism ---------------------------------------------------------------------------------

def test_same_seed_same_trace_bytes(tmp_path):
    cfg = dict(faults=LinkFaults(loss=0.2, reorder=0.1, duplicate=0.05, corrupt=0.02))
    paths = []
    for i in range(2):
        p = tmp_path / f"t{i}.txt"
        with open(p, "w") as fh:
            res = Simulator(small(7, **cfg), fh).run()
        paths.append((p.read_bytes(), res))
    (a, ra), (b, rb) = paths
    assert a == b and len(a) > 1000
    assert ra.trace_sha256 == rb.trace_sha256
    assert ra.as_json() == rb.as_json()
    other = run(small(8, **cfg))
    assert other.trace_sha256 != ra.trace_sha256


def test_rng_streams_are_independent_and_stable():
    assert stream(1, "a").random() == stream(1, "a").random()
    assert stream(1, "a").random() != stream(1, "b").random()
    assert stream(1, "a").random() != stream(2, "a").random()


# -- link model ----------------------------------------------------------------------------------

def test_gilbert_elliott_rate_and_bursts():
    rng = stream(3, "ge")
    ge = GilbertElliott(0.2, 5.0)
    lost = [ge.lose(rng.random()) for _ in range(200_000)]
    assert abs(sum(lost) / len(lost) - 0.2) < 0.01
    bursts, run_len = [], 0
    for x in lost:
        if x:
            run_len += 1
        elif run_len:
            bursts.append(run_len)
            run_len = 0
    assert 4.5 < statistics.mean(bursts) < 5.5


def test_internet_checksum_catches_single_bit_flips():
    data = bytes(range(256)) * 3
    base = internet_checksum(data)
    assert internet_checksum(b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7") == 0x2DDF0 % 0xFFFF
    for bit in range(0, len(data) * 8, 7):
        buf = bytearray(data)
        buf[bit >> 3] ^= 0x80 >> (bit & 7)
        assert internet_checksum(bytes(buf)) != base
    # two opposite flips at the same bit of different words cancel out: the UDP checksum's
    # blind spot, which is why corruption with --corrupt-bits >= 2 can reach the daemon
    buf = bytearray(b"\x00\x01\x00\x00")
    buf[1] ^= 1
    buf[3] ^= 1
    assert internet_checksum(bytes(buf)) == internet_checksum(b"\x00\x01\x00\x00")


def test_network_counts_every_fate():
    res = run(small(11, faults=LinkFaults(loss=0.1, reorder=0.2, duplicate=0.1, corrupt=0.1)))
    net = res.network
    assert net["dropped_loss"] > 0 and net["reordered"] > 0 and net["duplicated"] > 0
    assert net["dropped_checksum"] > 0          # single-bit flips never pass the checksum
    assert res.datagrams_sent == net["sent"]
    in_flight = net["sent"] + net["duplicated"] - net["delivered"] - res.datagrams_dropped
    assert 0 <= in_flight <= 2      # the run stops as soon as the caches agree


# -- convergence and invariants on the real core ------------------------------------------------

@pytest.mark.parametrize("mode", ["ftfw", "alarm", "notrack"])
def test_clean_network_converges(mode):
    res = run(small(1, mode))
    assert res.ok, res.violations
    assert res.converged and res.sim_seconds_to_converge < 1.0
    assert res.messages_sent > 0 and res.messages_dropped == 0


def test_ftfw_recovers_from_heavy_loss_by_retransmission():
    res = run(small(2, faults=LinkFaults(loss=0.3)))
    assert res.ok, (res.violations, res.liveness_failure)
    assert res.converged
    assert res.retransmissions > 0 and res.messages_dropped > 0


def test_ftfw_bursty_loss_reorder_duplicates():
    faults = LinkFaults(loss=0.2, burst_loss=True, burst_len=6, reorder=0.2, duplicate=0.2)
    res = run(small(4, faults=faults))
    assert res.ok, (res.violations, res.liveness_failure)
    assert res.converged


def test_alarm_repairs_loss_with_refreshes():
    cfg = small(5, "alarm", faults=LinkFaults(loss=0.2), refresh_time=5, cache_timeout=15)
    res = run(cfg)
    assert res.ok, (res.violations, res.liveness_failure)
    assert res.converged and res.sim_seconds_to_converge > 0


def test_notrack_under_loss_is_not_promised_to_converge():
    res = run(small(6, "notrack", faults=LinkFaults(loss=0.3)))
    assert res.invariant_violations == 0
    assert not res.convergence_promised and res.liveness_failure is None
    assert not res.converged and res.divergence > 0


def test_asymmetric_partition_and_crash_restart_ftfw():
    # (a downtime of 120 s puts the restarted daemon's clock-seeded sequence base above its
    # old numbers; a short one is tests/test_sim_bugs.py's lower-sequence-base reproducer)
    cfg = small(9, partitions=tuple(parse_partition("1>0@0.5+2")),
                crashes=(Crash(1, 1.0, 120.0),), faults=LinkFaults(loss=0.05))
    res = run(cfg)
    assert res.invariant_violations == 0, res.violations
    assert res.liveness_failure is None
    assert res.network.get("dropped_partition") and res.network.get("dropped_down")


def test_three_replicas_mesh():
    res = run(small(10, replicas=3, faults=LinkFaults(loss=0.1, reorder=0.1)))
    assert res.ok, (res.violations, res.liveness_failure)
    assert res.converged


def test_checksum_off_corruption_is_rejected_or_counted_never_raises():
    faults = LinkFaults(corrupt=0.3, corrupt_bits=3)
    res = run(small(12, checksum=False, faults=faults))
    assert res.network["corrupt_delivered"] > 0
    assert not any("raised" in v for v in res.violations), res.violations
    stats = res.core_stats
    assert stats.get("malformed", 0) + stats.get("rejected", 0) > 0


def test_authentication_stops_corruption_and_replays():
    faults = LinkFaults(corrupt=0.2, corrupt_bits=3, duplicate=0.2, loss=0.05)
    res = run(small(13, checksum=False, auth=True, faults=faults))
    assert res.ok, (res.violations, res.liveness_failure)
    assert res.converged and res.corrupt_accepted == 0
    assert res.core_stats.get("auth_failed", 0) > 0


# -- the checker can fail ------------------------------------------------------------------------

class _Forging:
    """Wraps a core and corrupts what it reports (to prove the checker notices)."""

    def __init__(self, core, how):
        self._core, self._how = core, how

    def __getattr__(self, name):
        return getattr(self._core, name)

    def receive(self, datagram, now, peer_ok=True):
        events = self._core.receive(datagram, now, peer_ok)
        for ev in events:
            if isinstance(ev, sync.Apply) and self._how == "phantom" and ev.kind != "del":
                ev.obj.mark = 0xDEAD
        if self._how == "replay":
            events += [ev for ev in events if isinstance(ev, sync.Apply)]
        return events


@pytest.mark.parametrize("how,expect", [("phantom", "phantom entry"),
                                        ("replay", "accepted message")])
def test_checker_detects_a_broken_core(monkeypatch, how, expect):
    real = sync.build_core
    monkeypatch.setattr(sync, "build_core", lambda now, **kw: _Forging(real(now, **kw), how))
    res = run(small(14))
    assert res.invariant_violations > 0
    assert any(expect in v for v in res.violations)


def test_liveness_failure_names_the_seed():
    # The teardown deletes leave at quiescence; a 100 us bound is shorter than the 200 us
    # minimum one-way delay, so nothing can converge in time.
    cfg = small(15, liveness_bound_s=0.0001)
    res = run(cfg)
    assert not res.converged and res.convergence_promised
    assert res.liveness_failure and "reproduce with --seed 15" in res.liveness_failure
    assert not res.ok


# -- configuration and CLI -----------------------------------------------------------------------

def test_swarm_derives_everything_from_the_seed():
    a = swarm(SimConfig(seed=99), set())
    b = swarm(SimConfig(seed=99), set())
    assert a.describe() == b.describe()
    assert swarm(SimConfig(seed=100), set()).describe() != a.describe()
    fixed = swarm(SimConfig(seed=99, faults=LinkFaults(loss=0.42)), {"loss"})
    assert fixed.faults.loss == 0.42 and fixed.faults.reorder == a.faults.reorder


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError):
        parse_partition("0>1")
    with pytest.raises(ConfigError):
        parse_crash("x@1+2")
    with pytest.raises(ConfigError):
        SimConfig(seed=1, mode="bogus").validate()
    with pytest.raises(ConfigError):
        SimConfig(seed=1, replicas=2, crashes=(Crash(5, 1, 1),)).validate()


def test_cli_json_last_line(capsys):
    rc = ctsim(["run", "--seed", "3", "--entries", "20", "--churn", "1", "--loss", "0.1",
                "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out
    assert out[0].startswith("ctsim: seed=3 ")
    doc = json.loads(out[-1])
    for key in ("converged", "sim_seconds_to_converge", "messages_sent", "messages_dropped",
                "retransmissions", "invariant_violations", "trace_sha256"):
        assert key in doc
    assert doc["converged"] is True and doc["invariant_violations"] == 0


@pytest.mark.parametrize("argv", [["run", "--loss", "2"], ["run", "--partition", "0>0@1+1"],
                                  ["run", "--mode", "fast"], ["run", "--delay", "x"],
                                  ["run", "--replicas", "1"], ["walk"]])
def test_cli_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(ctsim(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ctsim:" in err and "Traceback" not in err


def test_trace_identical_across_processes_and_hash_seeds():
    # str/bytes hashing is salted per process (PYTHONHASHSEED): nothing in the simulator or
    # the core may let that salt reach the trace.
    import os
    import subprocess
    import sys

    digests = set()
    for salt in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "sim.cli", "run", "--seed", "5", "--loss", "0.2", "--reorder",
             "0.1", "--duplicate", "0.1", "--entries", "50", "--churn", "3", "--json"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONHASHSEED": salt}).stdout
        digests.add(json.loads(out.strip().splitlines()[-1])["trace_sha256"])
    assert len(digests) == 1


def test_resend_queue_stays_bounded_and_the_check_can_fail(monkeypatch):
    from sim import simulator

    cfg = small(16, resend_queue=5, faults=LinkFaults(loss=0.3))
    assert run(cfg).invariant_violations == 0
    monkeypatch.setattr(simulator, "RS_CONTROL_SLACK", -5)   # a bound no queue can meet
    res = run(cfg)
    assert any("resend queue" in v for v in res.violations)


@pytest.mark.parametrize("down_s,low", [(0.5, 1), (120.0, 0)])
def test_low_base_restart_is_detected(down_s, low):
    # ~100 messages in the first second: a daemon back 0.5 s after a crash at 1 s seeds its
    # counter from the clock below its old numbers; one back after 120 s does not.
    res = run(small(17, crashes=(Crash(1, 1.0, down_s),)))
    assert res.low_base_restarts == low


def test_cli_swarm_census(capsys):
    rc = ctsim(["swarm", "--mode", "ftfw", "--first", "1000", "--count", "5", "--json"])
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and doc["count"] == 5 and doc["violations"] == 0
    assert doc["failing_seeds"] == []
