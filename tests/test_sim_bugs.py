"""Regression tests: minimal reproducers of protocol-core bugs the simulator found.

Each test names the swarm seed (or hypothesis run) that found the bug and says what went wrong.
They were committed as ``xfail`` while the bugs were open in ctools.sync and turned into plain
tests when the fixes landed (sync commits 03483c1, d4c5e82, be43618 and 9183dbc). A new,
still-open bug goes here as ``@pytest.mark.xfail(reason=...)`` (not strict, so a fix landing in
the shared tree shows up as XPASS in ``pytest -ra`` instead of turning ``make test`` red), next
to a passing control where one makes sense.
"""

from __future__ import annotations

import pytest

from ctools.model import (
    AF_INET,
    IPPROTO_TCP,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    Entry,
    Tuple,
)
from sim.config import SimConfig
from sim.link import LinkFaults
from sim.simulator import Simulator, run
from sim.workload import NEW, UPDATE, WorkloadSpec, view

QUIET = WorkloadSpec(entries=0, churn_s=0.0, churn_rate=0.0)


def _flow(mark: int) -> Entry:
    orig = Tuple(AF_INET, "10.0.0.1", "198.51.100.1", IPPROTO_TCP, 40000, 443)
    reply = Tuple(AF_INET, "198.51.100.1", "10.0.0.1", IPPROTO_TCP, 443, 40000)
    return Entry(orig, reply, status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
                 tcp_state=3, timeout=432000, mark=mark)


@pytest.mark.parametrize("mode", ["ftfw", "notrack", "alarm"])
def test_state_that_returns_to_an_earlier_value_is_replicated(mode):
    # Bug (swarm seed 14): the guard took an A -> B -> A update for a replay with a forged
    # number (stale_content) and silently never applied it, in all three modes.
    # Perfect network. The flow's mark goes 0 -> 1 -> 2 -> 1; each change leaves in its own
    # round, so the last CT_UPD is byte for byte the second one but for its sequence number.
    sim = Simulator(SimConfig(seed=1, mode=mode, workload=QUIET, liveness_bound_s=5.0))
    sim.start()
    for i, (kind, mark) in enumerate([(NEW, 0), (UPDATE, 1), (UPDATE, 2), (UPDATE, 1)]):
        sim.run_until(0.1 * (i + 1))
        sim.inject(0, [(kind, _flow(mark))])
    sim.run_until(1.0)
    got = sim.replicas[1].external.entries.get(_flow(1).key())
    assert got is not None and view(got) == view(_flow(1)), \
        f"peer kept {view(got) if got else None}, stats {sim.replicas[1].sessions[0].core.stats}"


def test_swarm_seed_14_converges():
    # The same bug under the swarm workload (TIME_WAIT timeout 120 -> 334968 -> 120): with 1 %
    # duplication and no loss, one entry never converged.
    cfg = SimConfig(seed=14, workload=WorkloadSpec(entries=50, churn_s=5.0, churn_rate=50.0),
                    faults=LinkFaults(duplicate=0.01, delay_min_us=1000, delay_mean_us=0))
    res = run(cfg)
    assert res.ok, (res.liveness_failure, res.core_stats)


def _restart_scenario(drop_first: bool) -> tuple[float | None, Simulator]:
    work = WorkloadSpec(entries=20, churn_s=0.0, churn_rate=0.0, delete_fraction=0.0)
    sim = Simulator(SimConfig(seed=3, workload=work, restart_bulk=False, liveness_bound_s=30))
    sim.run_until(2.0)
    sim.crash(1)
    sim.run_until(40.0)          # new clock-seeded sequence base above the old numbers
    if drop_first:
        sim.drop_next(1, 0)      # the restarted daemon's first datagram: RESYNC|HELLO
    sim.restart(1)
    return sim.settle(30.0), sim


def test_startup_resync_refills_a_restarted_replica():
    took, sim = _restart_scenario(drop_first=False)
    assert took is not None and len(sim.replicas[1].external.entries) == 20


def test_lost_startup_resync_is_recovered():
    # Bug (swarm seed 55): a restarted daemon's lost first datagram (RESYNC|HELLO) was never
    # re-sent — the peer starts tracking at the next HELLO — so StartupResync silently failed.
    took, sim = _restart_scenario(drop_first=True)
    assert took is not None, f"replica 1 has {len(sim.replicas[1].external.entries)} of " \
        f"{len(sim.replicas[0].internal.entries)} entries 30 s after its restart"


def _busy_restart(hardening: bool) -> tuple[float | None, Simulator]:
    # Each replica sends ~300 messages in the first second, so the clock-seeded sequence base
    # of a daemon restarted at t=2.5 s (spec §3.1) lies ~300 *below* its previous numbers.
    work = WorkloadSpec(entries=300, churn_s=0.0, churn_rate=0.0, delete_fraction=0.0)
    sim = Simulator(SimConfig(seed=1, workload=work, hardening=hardening,
                              liveness_bound_s=20.0))
    sim.run_until(2.0)
    sim.crash(1)
    sim.run_until(2.5)
    sim.restart(1)
    return sim.settle(20.0), sim


def test_restart_with_lower_sequence_base_c_rules():
    took, sim = _busy_restart(hardening=False)
    assert took is not None, sim.divergence()


def test_restart_with_lower_sequence_base_hardened():
    # Bug (swarm seeds 18, 50, 55, 57): the hardened receiver classified a restarted peer's
    # lower numbers OLD and ignored it, its RESYNC|HELLO and its deletes included.
    took, sim = _busy_restart(hardening=True)
    assert took is not None, (sim.divergence(), sim.replicas[0].sessions[1].core.stats)


def test_swarm_seed_80_converges():
    # Bug: replica 0 first heard replica 1 at seq N+20 (bursty loss ate everything before);
    # 1's earlier CT_UPDs were never NACKed and stayed in its resend queue forever.
    # ctsim run --seed 80 --swarm (GE loss 30 %, bursts of 4, reorder 10 %, dup 5 %, a 2 s
    # partition 0>1); the missing entries were all created before 0 heard anything from 1.
    from sim.config import random_partitions

    work = WorkloadSpec(entries=100, churn_s=2.0, churn_rate=50.0)
    faults = LinkFaults(loss=0.3, burst_loss=True, burst_len=4.0, reorder=0.1, duplicate=0.05,
                        delay_min_us=1000, delay_mean_us=300)
    res = run(SimConfig(seed=80, workload=work, faults=faults,
                        partitions=random_partitions(80, 2, work.end_s)))
    assert res.ok, (res.liveness_failure, res.divergence)


def test_hypothesis_shrunk_restart():
    # The lower-sequence-base bug as hypothesis shrank it (tests/test_sim_stateful.py):
    # boot, 1 s of workload, crash replica 0, restart.
    work = WorkloadSpec(entries=15, churn_s=4.0, churn_rate=8.0)
    sim = Simulator(SimConfig(seed=0, workload=work, liveness_bound_s=60.0))
    sim.run_until(1.0)
    sim.crash(0)
    sim.run_until(sim.quiescence_s())
    sim.heal()
    assert sim.result.low_base_restarts == 1
    assert sim.settle(60.0) is not None, sim.divergence()


def _restart_onto_the_old_last(hardening: bool) -> tuple[float | None, Simulator]:
    # Shrunk by hypothesis (tests/test_sim_stateful.py, 150 examples): 60 % loss 0->1 for the
    # first 1.38 s, replica 0 crashes, restarts at quiescence (t=5 s) with the clock-seeded
    # base 1795600005 — below the 1795600024 that replica 1 last accepted from it.
    work = WorkloadSpec(entries=15, churn_s=4.0, churn_rate=8.0)
    sim = Simulator(SimConfig(seed=0, workload=work, hardening=hardening,
                              liveness_bound_s=60.0))
    sim.start()
    sim.set_faults(0, 1, LinkFaults(loss=0.6))
    sim.run_until(1.3825746046023024)
    sim.crash(0)
    sim.run_until(sim.quiescence_s())
    sim.heal()
    for a, b in ((0, 1), (1, 0)):
        sim.set_faults(a, b, LinkFaults(loss=0.1, reorder=0.1))
    return sim.settle(60.0), sim


def test_restart_onto_the_old_last_c_rules():
    took, sim = _restart_onto_the_old_last(hardening=False)
    assert took is not None, sim.divergence()


def test_restart_onto_the_old_last_hardened():
    # Bug (left after d4c5e82, fixed by be43618/9183dbc): the restarted peer's numbers
    # 1795600005..24 were all OLD against the old last 1795600024 and silently dropped (its
    # bulk CT_NEW for 10.0.0.19 included); from 25 on they looked IN_SYNC, so no re-base and
    # no NACK ever recovered them.
    took, sim = _restart_onto_the_old_last(hardening=True)
    assert took is not None, sim.divergence()




@pytest.mark.parametrize("mode", ["ftfw", "alarm", "notrack"])
def test_reordered_datagram_inside_a_hole(mode):
    # Perfect link; three deletes leave in three datagrams N+1, N+2, N+3. N+1 is 20 ms late,
    # N+2 10 ms: N+3 arrives first and opens the hole [N+1, N+2], then N+2 fills its middle.
    # Found by `ctsim sweep` (ALARM, 30 % reordering: deletes applied only 180 s later, by
    # CacheTimeout): the guard accepted only the lowest number of a hole, so a late datagram
    # from the middle of one was dropped as OLD, uncounted.
    sim = Simulator(SimConfig(seed=4, mode=mode, workload=QUIET, liveness_bound_s=5.0))
    sim.start()
    flows = []
    for k in range(3):
        e = _flow(0)
        e.orig.sport = e.reply.dport = 40000 + k
        flows.append(e)
        sim.inject(0, [(NEW, e)])
    sim.run_until(0.5)
    for e, hold in zip(flows, (0.020, 0.010, 0.0), strict=True):
        if hold:
            sim.hold_next(0, 1, hold)
        sim.inject(0, [("destroy", e)])
    sim.run_until(1.0)
    assert not sim.replicas[1].external.entries, \
        [view(e) for e in sim.replicas[1].external.entries.values()]
