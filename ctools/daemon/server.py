"""The control socket server: read one request code, answer with text, close.

The listening socket is created synchronously (before the daemon forks, so start-up errors
reach the terminal); serving happens on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterable

from ctools.daemon.control import REQUEST, Req

Handler = Callable[[int, int | None],
                   "str | bytes | Iterable[str | bytes] | Awaitable[str | bytes] | None"]


def bind_control_socket(path: str) -> socket.socket:
    """Bind and listen at ``path`` (an existing file there is removed first)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock.bind(path)
    else:
        sock.bind("")       # autobind: an abstract name nobody knows, as the reference does
    sock.listen(100)
    sock.setblocking(False)
    return sock


CHUNK = 1 << 16


async def _write_reply(writer: asyncio.StreamWriter, reply) -> None:
    """Send a reply (text, bytes, or an iterable of text/bytes chunks) a slice at a time.

    Handing a 50 MB dump to the transport at once made it copy what the socket did not
    take into its own buffer: three copies of the text alive together (~350 MB peak for a
    100k-flow ``-i -x``), and the process kept much of that memory afterwards.
    """
    if isinstance(reply, (str, bytes, bytearray)):
        reply = (reply,)
    for part in reply:
        for i in range(0, len(part), CHUNK):
            piece = part[i:i + CHUNK]
            writer.write(piece.encode() if isinstance(piece, str) else piece)
            await writer.drain()


class ControlServer:
    """Serve requests from ``sock`` with ``handler(code, arg)``.

    The handler returns the reply text, None for "no text", an iterable of text chunks
    (sent as they come: a large dump need not exist whole), or an awaitable of text or
    None (long operations such as a commit keep the client waiting until they finish).
    """

    def __init__(self, sock: socket.socket, path: str, handler: Handler,
                 on_bad_request: Callable[[], None],
                 on_error: Callable[[int, Exception], None] | None = None) -> None:
        self.sock = sock
        self.path = path
        self.handler = handler
        self.on_bad_request = on_bad_request
        self.on_error = on_error or (lambda code, exc: None)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, sock=self.sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                raw = await asyncio.wait_for(reader.readexactly(REQUEST.size), 5)
            except (TimeoutError, asyncio.IncompleteReadError, OSError):
                self.on_bad_request()
                return
            code = REQUEST.unpack(raw)[0]
            arg = None
            if code == Req.JSON_VIEW:
                try:
                    arg = REQUEST.unpack(await asyncio.wait_for(
                        reader.readexactly(REQUEST.size), 5))[0]
                except (TimeoutError, asyncio.IncompleteReadError, OSError):
                    self.on_bad_request()
                    return
            try:
                reply = self.handler(code, arg)
                if isinstance(reply, Awaitable):     # (asyncio.iscoroutine: any generator)
                    reply = await reply
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the daemon
                self.on_error(code, exc)
                reply = None
            if reply:
                try:
                    await _write_reply(writer, reply)
                except (ConnectionError, OSError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a failing chunk generator
                    self.on_error(code, exc)
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
