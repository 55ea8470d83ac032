"""Control socket protocol: one native-endian 32-bit request code in, free text out.

The request codes are those of the reference daemon so either client can talk to either
daemon.  ``request()`` is the (blocking) client; the asyncio server lives in ``server.py``.
"""

from __future__ import annotations

import socket
import struct
import sys
from enum import IntEnum

REQUEST = struct.Struct("=i")


class Req(IntEnum):
    """Request codes understood on the UNIX control socket."""

    CT_FLUSH_MASTER = 0
    CT_RESYNC_MASTER = 1
    CT_DUMP_INTERNAL = 16
    CT_DUMP_EXTERNAL = 17
    CT_COMMIT = 18
    CT_FLUSH_CACHE = 19
    KILL = 20
    STATS = 21
    SEND_BULK = 22
    REQUEST_DUMP = 23
    CT_DUMP_INT_XML = 24
    CT_DUMP_EXT_XML = 25
    RESET_TIMERS = 26
    STATS_NETWORK = 28
    STATS_CACHE = 29
    STATS_RUNTIME = 30
    STATS_LINK = 31
    STATS_RSQUEUE = 32
    CT_FLUSH_INT_CACHE = 33
    CT_FLUSH_EXT_CACHE = 34
    STATS_PROCESS = 35
    STATS_QUEUE = 36
    EXP_STATS = 37
    EXP_FLUSH_MASTER = 38
    EXP_RESYNC_MASTER = 39
    EXP_DUMP_INTERNAL = 40
    EXP_DUMP_EXTERNAL = 41
    EXP_COMMIT = 42
    ALL_FLUSH_MASTER = 43
    ALL_RESYNC_MASTER = 44
    ALL_FLUSH_CACHE = 45
    ALL_COMMIT = 46
    EXP_DUMP_INT_XML = 47
    EXP_DUMP_EXT_XML = 48
    # ctools extensions (never sent by the reference client): JSON views and health.
    # The JSON request carries the plain view code in a second integer.
    JSON_VIEW = 1000
    HEALTH = 1001


XML_OF = {
    Req.CT_DUMP_INTERNAL: Req.CT_DUMP_INT_XML,
    Req.CT_DUMP_EXTERNAL: Req.CT_DUMP_EXT_XML,
    Req.EXP_DUMP_INTERNAL: Req.EXP_DUMP_INT_XML,
    Req.EXP_DUMP_EXTERNAL: Req.EXP_DUMP_EXT_XML,
}


class ControlError(Exception):
    """The daemon could not be reached."""


def request(path: str, code: int, arg: int | None = None, timeout: float | None = None,
            out=None) -> bytes | None:
    """Send one request to the daemon at ``path``; copy (or return) the reply.

    With ``out`` (a binary stream) the reply is streamed there and None is returned.
    Raises ControlError when the daemon cannot be reached.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if timeout is not None:
            sock.settimeout(timeout)
        try:
            sock.connect(path)
            payload = REQUEST.pack(code)
            if arg is not None:
                payload += REQUEST.pack(arg)
            sock.sendall(payload)
        except OSError as exc:
            raise ControlError(str(exc)) from exc
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            if out is not None:
                out.write(data)
                out.flush()
            else:
                chunks.append(data)
        return None if out is not None else b"".join(chunks)
    finally:
        sock.close()


def stream_to_stdout(path: str, code: int, arg: int | None = None) -> None:
    """Client behaviour of the reference tool: print every reply byte to stdout."""
    request(path, code, arg, out=sys.stdout.buffer)
