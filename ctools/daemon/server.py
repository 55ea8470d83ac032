"""The control socket server: read one request code, answer with text, close.

The listening socket is created synchronously (before the daemon forks, so start-up errors
reach the terminal); serving happens on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from ctools.daemon.control import REQUEST, Req

Handler = Callable[[int, int | None], "str | bytes | Awaitable[str | bytes] | None"]


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


class ControlServer:
    """Serve requests from ``sock`` with ``handler(code, arg)``.

    The handler returns the reply text, None for "no text", or an awaitable of either
    (long operations such as a commit keep the client waiting until they finish).
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
                if asyncio.iscoroutine(reply) or isinstance(reply, asyncio.Future):
                    reply = await reply
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the daemon
                self.on_error(code, exc)
                reply = None
            if reply:
                writer.write(reply.encode() if isinstance(reply, str) else reply)
                await writer.drain()
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
