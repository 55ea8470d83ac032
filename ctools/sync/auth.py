"""Opt-in authenticated framing for all-ctools clusters (docs/sync-auth.md).

Frame = 16-byte header ``'>BBHIQ'`` (magic 0xC7, frame version 1, total length, epoch,
counter) + the ordinary sync messages + HMAC-SHA256 tag (32 bytes) over header and messages.

* The magic byte reads as protocol version 12 to a C daemon, which counts the datagram as
  "Wrong protocol version" and ignores it: C peers cannot join an authenticated cluster.
* ``epoch`` must grow at every restart of the sender (the daemon persists it); ``counter``
  grows by one per frame within an epoch. The receiver accepts each (epoch, counter) once:
  older epochs are refused, a newer (authentic) epoch means the peer restarted, and within an
  epoch a sliding window tolerates reordering but not replays.
"""

from __future__ import annotations

import struct

AUTH_MAGIC = 0xC7
AUTH_VERSION = 1
FRAME = struct.Struct(">BBHIQ")
TAG_LEN = 32
REPLAY_WINDOW = 1024


def _sha256_mac(key: bytes):
    """HMAC-SHA256 under ``key``, and a constant-time compare. Imported on first use:
    hashlib loads libcrypto (~3.5 MB resident) that a daemon without a key never needs."""
    import hashlib
    import hmac

    def mac(data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()
    return mac, hmac.compare_digest


class AuthFramer:
    """Sender side: seals payloads into authenticated frames."""

    OVERHEAD = FRAME.size + TAG_LEN

    def __init__(self, key: bytes, epoch: int) -> None:
        self._mac, _ = _sha256_mac(bytes(key))
        self.epoch = epoch & 0xFFFFFFFF
        self.counter = 0

    def seal(self, payload: bytes) -> bytes:
        """One frame around ``payload`` (whole sync messages)."""
        self.counter += 1
        total = self.OVERHEAD + len(payload)
        if total > 0xFFFF:
            raise ValueError("authenticated frame larger than 65535 bytes")
        head = FRAME.pack(AUTH_MAGIC, AUTH_VERSION, total, self.epoch, self.counter)
        tag = self._mac(head + payload)
        return head + payload + tag


class AuthVerifier:
    """Receiver side: checks tag, epoch and counter. ``restarted`` is set when an authentic
    frame opens a newer epoch (the caller clears it)."""

    def __init__(self, key: bytes) -> None:
        self._mac, self._same = _sha256_mac(bytes(key))
        self.epoch: int | None = None
        self.top = 0               # highest counter accepted in this epoch
        self.seen: set[int] = set()  # counters accepted within the window below ``top``
        self.restarted = False

    def open(self, frame: bytes, stats) -> bytes | None:
        """The payload of an authentic, fresh frame; None (counted in ``stats``) otherwise."""
        if len(frame) < AuthFramer.OVERHEAD:
            stats.count_rejected("auth_failed")
            return None
        magic, version, total, epoch, counter = FRAME.unpack_from(frame)
        if magic != AUTH_MAGIC or version != AUTH_VERSION or total != len(frame):
            stats.count_rejected("auth_failed")
            return None
        body, tag = frame[:-TAG_LEN], frame[-TAG_LEN:]
        if not self._same(self._mac(body), tag):
            stats.count_rejected("auth_failed")
            return None
        if self.epoch is not None and epoch < self.epoch:
            stats.count_rejected("stale_epoch")
            return None
        if self.epoch is None or epoch > self.epoch:
            self.restarted = self.epoch is not None
            self.epoch = epoch
            self.top = counter
            self.seen = {counter}
            return body[FRAME.size:]
        if counter > self.top:
            self.top = counter
            self.seen.add(counter)
            if len(self.seen) > 2 * REPLAY_WINDOW:
                floor = self.top - REPLAY_WINDOW
                self.seen = {c for c in self.seen if c > floor}
        elif counter <= self.top - REPLAY_WINDOW or counter in self.seen:
            stats.count_rejected("replayed")
            return None
        else:
            self.seen.add(counter)
        return body[FRAME.size:]
