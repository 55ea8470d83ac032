"""Framing for the stream transport (TCP): bytes in, complete message chunks out."""

from __future__ import annotations

from ctools.sync import wire
from ctools.sync.auth import AUTH_MAGIC, FRAME, AuthFramer


class StreamDecoder:
    """Reassemble a TCP byte stream into chunks of whole messages (sans-IO).

    ``feed(data)`` returns a list of byte chunks, each holding only complete messages (or, with
    ``authenticated=True``, exactly one complete auth frame), ready for ``receive()``.

    A header that cannot be framed (length 0 or below 8/16) desynchronises a stream for good,
    as in the C daemon; then ``broken`` becomes True, ``error`` says why, and everything after
    is discarded: the caller should close and re-open the connection.
    """

    MAX_PENDING = 1 << 20

    def __init__(self, authenticated: bool = False) -> None:
        self.authenticated = authenticated
        self._pending = b""
        self.broken = False
        self.error: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data`` and return the complete chunks now available."""
        if self.broken:
            return []
        buf = self._pending + bytes(data)
        if self.authenticated:
            return self._feed_frames(buf)
        off = 0
        total = len(buf)
        while total - off >= wire.HDR_LEN:
            vt, flags, length = buf[off], buf[off + 1], (buf[off + 2] << 8) | buf[off + 3]
            ext = wire.is_extended(vt, flags)
            if ext and total - off < wire.CTL_EXT_LEN:
                break
            if length < (wire.CTL_EXT_LEN if ext else wire.HDR_LEN):
                # Framing lost for good (the C daemon does not resynchronise either): hand the
                # bad tail to receive() so it is counted, and stop.
                self.broken = True
                self.error = f"bad message length {length} at stream offset {off}"
                self._pending = b""
                return [c for c in (buf[:off], buf[off:]) if c]
            if length > total - off:
                break
            off += length
        self._pending = buf[off:]
        if len(self._pending) > self.MAX_PENDING:
            self.broken, self.error, self._pending = True, "pending data too large", b""
        return [buf[:off]] if off else []

    def _feed_frames(self, buf: bytes) -> list[bytes]:
        out: list[bytes] = []
        off = 0
        while len(buf) - off >= FRAME.size:
            magic, _v, total, _e, _c = FRAME.unpack_from(buf, off)
            if magic != AUTH_MAGIC or total < AuthFramer.OVERHEAD:
                self.broken, self.error = True, "not an authenticated frame"
                self._pending = b""
                return out
            if len(buf) - off < total:
                break
            out.append(buf[off:off + total])
            off += total
        self._pending = buf[off:]
        return out
