"""hypothesis drives the simulator with generated fault schedules (real ctools.sync core).

Each example: a seeded FT-FW or ALARM cluster running its workload while hypothesis cuts and
mends directions, changes loss/reordering/duplication per direction, crashes and restarts
daemons and lets time pass. After every step the simulator's invariants must hold; at the end
the network heals and the caches must converge within the liveness bound (differences that
the protocol cannot repair by design — deletes lost with a crashed daemon — are "explained").
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sim.config import SimConfig
from sim.link import LinkFaults
from sim.simulator import Simulator
from sim.workload import WorkloadSpec

REPLICAS = 3


class FaultSchedule(RuleBasedStateMachine):
    sim: Simulator | None = None

    @initialize(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["ftfw", "alarm"]),
                replicas=st.integers(2, REPLICAS))
    def boot(self, seed, mode, replicas):
        cfg = SimConfig(seed=seed, mode=mode, replicas=replicas,
                        workload=WorkloadSpec(entries=15, churn_s=4.0, churn_rate=8.0),
                        refresh_time=4, cache_timeout=12, liveness_bound_s=60.0)
        self.sim = Simulator(cfg)
        self.sim.start()
        self.t = 0.0
        self.n = replicas

    def _pair(self, a, b):
        a %= self.n
        b %= self.n
        return (a, b) if a != b else (a, (a + 1) % self.n)

    @rule(dt=st.floats(0.01, 1.5))
    def advance(self, dt):
        self.t += dt
        self.sim.run_until(self.t)

    @rule(a=st.integers(0, REPLICAS - 1), b=st.integers(0, REPLICAS - 1),
          loss=st.sampled_from([0.0, 0.1, 0.3, 0.6]), burst=st.booleans(),
          reorder=st.sampled_from([0.0, 0.2]), dup=st.sampled_from([0.0, 0.2]))
    def impair(self, a, b, loss, burst, reorder, dup):
        src, dst = self._pair(a, b)
        self.sim.set_faults(src, dst, LinkFaults(loss=loss, burst_loss=burst, reorder=reorder,
                                                 duplicate=dup))

    @rule(a=st.integers(0, REPLICAS - 1), b=st.integers(0, REPLICAS - 1))
    def cut(self, a, b):
        self.sim.cut(*self._pair(a, b))

    @rule(a=st.integers(0, REPLICAS - 1), b=st.integers(0, REPLICAS - 1))
    def mend(self, a, b):
        self.sim.mend(*self._pair(a, b))

    @rule(r=st.integers(0, REPLICAS - 1))
    def crash(self, r):
        self.sim.crash(r % self.n)

    @rule(r=st.integers(0, REPLICAS - 1))
    def restart(self, r):
        self.sim.restart(r % self.n)

    @invariant()
    def safety(self):
        if self.sim is not None:
            assert self.sim.result.invariant_violations == 0, self.sim.result.violations

    def teardown(self):
        sim = self.sim
        if sim is None:
            return
        sim.run_until(max(self.t, sim.quiescence_s()))
        sim.heal()
        for a in range(self.n):
            for b in range(self.n):
                if a != b:  # keep moderate noise: convergence must survive it
                    sim.set_faults(a, b, LinkFaults(loss=0.1, reorder=0.1))
        took = sim.settle(sim.cfg.bound_s())
        unexplained, _ = sim.divergence()
        assert sim.result.invariant_violations == 0, sim.result.violations
        assert took is not None or unexplained == 0, (
            f"liveness: {unexplained} differences — reproduce: seed={sim.cfg.seed} "
            f"mode={sim.cfg.mode} replicas={self.n}")


# Derandomized: `make test` runs the same 12 schedules every time (no flaky CI). To explore,
# raise max_examples and drop derandomize, e.g. 150 examples of 20 steps take ~5 minutes; that
# is how the restart bug in tests/test_sim_bugs.py (test_restart_onto_the_old_last_*) was found.
FaultSchedule.TestCase.settings = settings(
    max_examples=12, stateful_step_count=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
TestFaultSchedules = FaultSchedule.TestCase
