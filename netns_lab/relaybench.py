"""How fast is the sync-link relay? Blast UDP datagrams from fw1 to fw2 across it.

    python -m netns_lab.relaybench [--seconds 3] [--size 200] [--loss 30]

Prints datagrams/s sent and received and the relay's own counts: the relay must carry far
more than conntrackd's sync traffic (a few thousand messages per second in bulk sends).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from . import nsutil
from .config import Impairment, LabConfig
from .lab import Lab


def bench(seconds: float = 3.0, size: int = 200, loss: float = 0.0) -> dict:
    """Send as fast as one Python sender can for ``seconds``; count what arrives."""
    cfg = LabConfig(replicate=False, ipv6=False, impairment=Impairment(loss=loss))
    with Lab(cfg) as lab:
        rx = nsutil.socket_in(lab.topo.fw[2], socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind((cfg.sync_addr(2), 9999))
        rx.setblocking(False)
        tx = nsutil.socket_in(lab.topo.fw[1], socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect((cfg.sync_addr(2), 9999))
        payload = b"x" * size
        sent = received = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            for _ in range(50):
                try:
                    tx.send(payload)
                    sent += 1
                except BlockingIOError:
                    break
                except OSError:
                    break
            # pace a little so the sender does not just fill queues
            while True:
                try:
                    rx.recv(65536)
                    received += 1
                except BlockingIOError:
                    break
        time.sleep(0.3)
        while True:
            try:
                rx.recv(65536)
                received += 1
            except BlockingIOError:
                break
        elapsed = time.monotonic() - t0
        link = lab.link_stats()["total"]
        tx.close()
        rx.close()
    return {"seconds": round(elapsed, 2), "size": size, "loss": loss, "sent": sent,
            "received": received, "sent_per_s": round(sent / elapsed),
            "received_per_s": round(received / elapsed),
            "relay_forwarded": link.get("sent", 0), "relay_received": link.get("received", 0),
            "relay_lost": link.get("lost", 0), "relay_overruns": link.get("overruns", 0),
            "relay_send_errors": link.get("send_errors", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netns_lab.relaybench")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--loss", type=float, default=0.0, help="percent")
    args = ap.parse_args(argv)
    print(json.dumps(bench(args.seconds, args.size, args.loss / 100.0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
