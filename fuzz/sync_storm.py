"""Mutation-storm sweep of the hardened receiver (a tool, not a harness).

    .venv/bin/python fuzz/sync_storm.py [SEEDS] [MAX_FLIPS...]      # default: 4 seeds, flips 1 and 3

For each mode and seed: two cores on an in-memory link, 600 create/update/delete steps, and after
every genuine datagram a->b four mutated copies of earlier ones (1..MAX_FLIPS bit flips,
truncation, splice or exact replay). Prints, per run: mutants sent, phantom / resurrected keys
seen during the run, and (missing, extra, different) entries after the storm stops and 50 new
entries have been replicated. The same attacker and checks as tests/test_sync_hardening.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_sync_hardening import Attacker, entry, params, run_storm  # noqa: E402

from ctools.sync.pair import Pair, diff  # noqa: E402


def main(argv: list[str]) -> int:
    seeds = int(argv[0]) if argv else 4
    flips = [int(x) for x in argv[1:]] or [1, 3]
    for max_flips in flips:
        for mode in ("ftfw", "notrack", "alarm"):
            rows = []
            for seed in range(seeds):
                attacker = Attacker(seed=100 + seed, rate=4, max_flips=max_flips)
                p = Pair(params(mode, seq=1795607000, refresh_time=5), params(mode, seq=5),
                         seed=seed, tamper=attacker)
                p.run(1.5)
                kinds: dict = {}
                for kind, _step, key in run_storm(p, attacker, rounds=600, seed=seed):
                    kinds.setdefault(kind, set()).add(key)
                attacker.active = False
                for i in range(1000, 1050):
                    p.a.update("new", entry(i), p.now)
                p.run(p.now + (4.0 if mode != "alarm" else 12.0))
                missing, extra, changed = diff(p.a.internal, p.b.external)
                rows.append((attacker.sent, {k: len(v) for k, v in kinds.items()},
                             len(missing), len(extra), len(changed)))
            print(f"flips<={max_flips} {mode}: {rows}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
