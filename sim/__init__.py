"""ctsim — a deterministic discrete-event simulator of conntrackd state replication.

N replicas run the real :mod:`ctools.sync` cores on a virtual clock over a seeded, impaired
network; a checker runs after every step and a liveness bound ends every run.

Public API::

    from sim.config import SimConfig, Crash, swarm          # settings (one seed derives all)
    from sim.link import LinkFaults, Partition              # the network model
    from sim.workload import WorkloadSpec                   # the kernels' event workload
    from sim.simulator import Simulator, Result, run        # run(cfg) -> Result

    res = run(SimConfig(seed=42, mode="ftfw", faults=LinkFaults(loss=0.2)))
    res.converged, res.sim_seconds_to_converge, res.trace_sha256, res.violations

    sim = Simulator(cfg)                                    # step API, for tests/schedules
    sim.run_until(2.0); sim.cut(0, 1); sim.crash(1); sim.restart(1); sim.inject(0, events)
    sim.heal(); sim.settle(60.0)

See docs/simulator.md.
"""
