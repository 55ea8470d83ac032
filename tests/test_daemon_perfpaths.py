"""The daemon's fast paths (docs/performance.md "## conntrackd"), against the real kernel.

* the event socket moves a burst into user space before decoding it (``EventSocket.stash``),
  so a burst larger than the kernel buffer is not lost while the daemon is busy;
* the daemon's collector tuning.
"""

from __future__ import annotations

import gc
import json
import sys

from ctools.daemon import run

# Run inside the namespace: creates N flows in slices while reading only a few events
# between slices, with a receive buffer far smaller than the burst.
BURST = r"""
import json, sys
from ctools.daemon.kernel import EventSocket, OverrunError, RequestSocket, inverse_tuple
from ctools.model import Entry, Tuple, IPS_ASSURED, IPS_SEEN_REPLY, IPS_CONFIRMED
n = int(sys.argv[1])
ev = EventSocket(rcvbuf=65536)
req = RequestSocket()
got, overruns, drained_seen = [], 0, []
for k in range(0, n, 50):
    es = []
    for j in range(k, min(n, k + 50)):
        t = Tuple(family=2, src=f"10.{j >> 16 & 255}.{j >> 8 & 255}.{j & 255}",
                  dst="192.0.2.1", proto=6, sport=1024 + j % 60000, dport=443)
        es.append(Entry(orig=t, reply=inverse_tuple(t), timeout=600, tcp_state=3,
                        status=IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED))
    req.create(es)
    try:
        got += ev.read(5)              # a busy daemon: only a few events handled per turn
    except OverrunError:
        overruns += 1
    drained_seen.append(ev.drained)
while True:
    try:
        batch = ev.read(100)
    except OverrunError:
        overruns += 1
        continue
    got += batch
    if ev.drained:
        break
print(json.dumps({"overruns": overruns, "kinds": sorted({k for k, _e, _p in got}),
                  "srcs": sorted({e.orig.src for _k, e, _p in got}), "n": len(got),
                  "drained_mid": any(drained_seen), "stash": len(ev.stash)}))
"""


def test_burst_larger_than_the_kernel_buffer_is_not_lost(netns_factory):
    ns = netns_factory("ctdp")
    ns.enable_conntrack()
    n = 3000
    out = ns.run(sys.executable, "-c", BURST, str(n)).stdout
    res = json.loads(out)
    assert res["overruns"] == 0
    assert res["n"] == n
    assert res["kinds"] == ["new"]
    assert len(res["srcs"]) == n
    assert res["stash"] == 0
    assert not res["drained_mid"]      # events were still waiting after each small read


def test_gc_tuning_raises_thresholds_and_freezes():
    saved = gc.get_threshold()
    try:
        run.tune_gc()
        assert gc.get_threshold() == run.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
