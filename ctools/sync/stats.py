"""Counters of one protocol core: the C daemon's ``conntrackd -s`` fields plus our rejections."""

from __future__ import annotations

# C-compatible receive counters (conntrackd -s network), in its print order.
C_RECV_COUNTERS = ("malformed", "bad_version", "bad_header", "bad_payload", "bad_type",
                   "truncated", "bad_size")
# Ours: rejections the C daemon does not make (each also counted in ``rejected``).
OUR_REJECT_COUNTERS = ("wrong_peer", "auth_failed", "replayed", "stale_content",
                       "seq_implausible", "stale_epoch")


class SyncStats:
    """Plain counters; every field is an int and starts at 0.

    ``malformed`` is the C total of the six malformed-message kinds. ``rejected`` is the total
    of our extra rejections (``OUR_REJECT_COUNTERS``). ``seq_lost``/``seq_before`` are the C
    "Packets lost"/"Packets before" (lost keeps the C over-count of 2 per gap, spec §3.3).
    """

    __slots__ = (
        "malformed",
        "bad_version",
        "bad_header",
        "bad_payload",
        "bad_type",
        "truncated",
        "bad_size",
        "wrong_peer",
        "auth_failed",
        "replayed",
        "stale_content",
        "seq_implausible",
        "stale_epoch",
        "rejected",
        "send_malformed",
        "seq_lost",
        "seq_before",
        "bytes_sent",
        "bytes_recv",
        "pkts_sent",
        "pkts_recv",
        "msgs_sent",
        "msgs_recv",
        "retransmitted",
        "rs_dropped",
        "hello_sent",
        "hello_back_received",
        "peer_restarts",
        "rebases",
        "holes_filled",
        "applied",
        "resync_requests",
        "superseded",
    )

    def __init__(self) -> None:
        self.malformed = 0
        self.bad_version = 0
        self.bad_header = 0
        self.bad_payload = 0
        self.bad_type = 0
        self.truncated = 0
        self.bad_size = 0
        self.wrong_peer = 0
        self.auth_failed = 0
        self.replayed = 0
        self.stale_content = 0
        self.seq_implausible = 0
        self.stale_epoch = 0
        self.rejected = 0
        self.send_malformed = 0
        self.seq_lost = 0
        self.seq_before = 0
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.pkts_sent = 0
        self.pkts_recv = 0
        self.msgs_sent = 0
        self.msgs_recv = 0
        self.retransmitted = 0
        self.rs_dropped = 0
        self.hello_sent = 0
        self.hello_back_received = 0
        self.peer_restarts = 0
        self.rebases = 0
        self.holes_filled = 0
        self.applied = 0
        self.resync_requests = 0
        self.superseded = 0

    def count_malformed(self, kind: str) -> None:
        """Count one C-style malformed message of ``kind`` (one of C_RECV_COUNTERS[1:])."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.malformed += 1

    def count_rejected(self, kind: str) -> None:
        """Count one of our extra rejections (one of OUR_REJECT_COUNTERS)."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.rejected += 1

    def as_dict(self) -> dict[str, int]:
        """All counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "SyncStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v) + ")"
