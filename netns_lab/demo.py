"""``make demo``: one fail-over under traffic across a 10 % lossy, reordering sync link.

Runs ``ctlab failover`` with the demo settings and prints its report. Set CTLAB_REPLICAS
(ours, c, mixed) to choose the daemons; CTLAB_DEMO_ARGS adds ctlab options.
"""

from __future__ import annotations

import os
import shlex
import sys

from .cli import main as ctlab_main


def main() -> int:
    replicas = os.environ.get("CTLAB_REPLICAS", "ours")
    args = ["failover", "--replicas", replicas, "--loss", "10", "--reorder", "10",
            "--flows", "20", "--udp-flows", "2", "--seed", "7"]
    args += shlex.split(os.environ.get("CTLAB_DEMO_ARGS", ""))
    print(f"ctools lab demo: ctlab {' '.join(args)}", flush=True)
    return ctlab_main(args)


if __name__ == "__main__":
    sys.exit(main())
