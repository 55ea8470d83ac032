"""The sender's per-event path in one process, without the kernel or a peer: CPU per event
and resident memory per cached flow.

``python bench/mem_txpipe.py [TREE]`` imports ctools from TREE (default: this checkout), so
two trees (e.g. ``git archive`` of an older commit) compare side by side on the same
machine. Event datagrams go through a UNIX datagram socket into ``EventSocket.read`` (stash,
framing, C decoder), then ``strip_volatile``, ``InternalCache.add``, an FT-FW core's
``local_update`` and ``outgoing`` (encode). Prints the best of 5 runs. Not a test.
"""

from __future__ import annotations

import gc
import socket
import sys
import time
from pathlib import Path

TREE = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, TREE)

from ctools.daemon import kernel as K  # noqa: E402
from ctools.daemon.cache import InternalCache, strip_volatile  # noqa: E402
from ctools.daemon.kernel import inverse_tuple  # noqa: E402
from ctools.model import Entry, Tuple  # noqa: E402
from ctools.netlink import codec  # noqa: E402
from ctools.netlink import constants as C  # noqa: E402
from ctools.sync import make_sync  # noqa: E402
from ctools.sync.core import SyncParams  # noqa: E402

N = 20000
FILL = 100000


def entry(j: int) -> Entry:
    t = Tuple(family=2, src=f"172.{16 + (j >> 16 & 15)}.{j >> 8 & 255}.{j & 255}",
              dst="192.168.200.1", proto=6, sport=1024 + j % 60000, dport=443)
    return Entry(orig=t, reply=inverse_tuple(t), timeout=3600, tcp_state=3, status=14,
                 mark=0, id=10**9 + j, tcp_wscale_orig=0, tcp_wscale_reply=0,
                 tcp_flags_orig=(0, 0), tcp_flags_reply=(0, 0), synproxy=(0, 0, 0))


def event_socket(sock: socket.socket) -> K.EventSocket:
    ev = K.EventSocket.__new__(K.EventSocket)     # the reading half only, on any socket
    ev.sock = sock
    ev.unknown = ev.skipped = ev.requested = 0
    ev.overrun_pending, ev.drained = False, True
    if hasattr(K, "EventStash"):
        ev.stash = K.EventStash()
    else:                                           # trees before the block stash
        from collections import deque
        ev.stash, ev.buf = deque(), bytearray(1 << 20)
    return ev


def pipeline(msgs: list[bytes]) -> float:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    b.setblocking(False)
    ev = event_socket(b)
    cache = InternalCache()
    core = make_sync(SyncParams("ftfw", initial_seq=1, resend_queue_size=1 << 20), 0.0)
    cpu = 0.0
    for k in range(0, len(msgs), 2000):
        for m in msgs[k:k + 2000]:
            a.send(m)
        t = time.process_time()
        while True:
            for _kind, e, _pid in ev.read(100):
                obj = cache.add(strip_volatile(e), 1.0)
                core.local_update("new", obj.entry, 1.0)
            if ev.drained:
                break
        core.outgoing(1.0)
        cpu += time.process_time() - t
    a.close()
    b.close()
    return cpu / len(msgs)


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS"))


def fill() -> float:
    """Resident bytes per flow of an internal cache fed FILL decoded kernel payloads."""
    cache = InternalCache()
    before = rss_kb()
    for j in range(FILL):
        payload = b"\x02\x00\x00\x00" + codec.encode_entry(entry(j))
        cache.add(strip_volatile(codec.decode_entry(memoryview(payload))), 1.0)
    gc.collect()
    return (rss_kb() - before) * 1024 / FILL


def main() -> int:
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)      # as the daemon runs
    msgs = [codec.build_message(C.CT_NEW, C.NLM_F_CREATE, 0, 2, codec.encode_entry(entry(j)))
            for j in range(N)]
    best = min(pipeline(msgs) for _ in range(5))
    print(f"{TREE}: sender pipeline {best * 1e6:.2f} us/event (best of 5), "
          f"internal cache {fill():.0f} B/flow resident")
    return 0


if __name__ == "__main__":
    sys.exit(main())
