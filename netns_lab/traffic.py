"""Long-lived real traffic through the firewalls: TCP streams and UDP pings, echoed.

One background thread drives every socket (created inside the client and server
namespaces) with a selector. Each TCP flow sends a small numbered message every
``interval`` seconds; the server echoes it, so bytes flow both ways. The flow records when
echoes arrive, whether it was reset, and how long the longest silence was — the facts the
fail-over verdict is made of.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from . import nsutil

TCP_PORT = 5001
UDP_PORT = 5002
MSG = 32


@dataclass
class FlowStats:
    """What one flow saw (times are time.monotonic())."""

    kind: str
    client: str
    server: str
    sport: int = 0
    connected: bool = False
    reset: str = ""                      # why the flow ended early ("" = it did not)
    sent: int = 0
    echoed: int = 0
    server_received: int = 0
    echo_times: list[float] = field(default_factory=list)

    def last_echo(self) -> float:
        return self.echo_times[-1] if self.echo_times else 0.0

    def longest_gap(self, since: float, until: float) -> float:
        """Longest time without an echo inside [since, until]."""
        prev = since
        worst = 0.0
        for t in self.echo_times:
            if t < since:
                continue
            if t > until:
                break
            worst = max(worst, t - prev)
            prev = t
        return max(worst, until - prev)


class _Conn:
    __slots__ = ("sock", "flow", "role", "outbuf", "seq", "next_send", "connecting")

    def __init__(self, sock, flow, role):
        self.sock = sock
        self.flow = flow
        self.role = role                  # "client", "server", "listen", "udp-client", ...
        self.outbuf = b""
        self.seq = 0
        self.next_send = 0.0
        self.connecting = False


class Traffic:
    """Echo servers in the server namespaces, flows from the client namespaces."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.sel = selectors.DefaultSelector()
        self.flows: list[FlowStats] = []
        self._conns: list[_Conn] = []
        self._server_by_peer: dict[tuple, FlowStats] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[_Conn] = []

    # -- setup (call before start or from the owner thread while running) ------------------
    def add_server(self, ns: str, addr: str) -> None:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        ls = nsutil.socket_in(ns, fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, TCP_PORT))
        ls.listen(512)
        ls.setblocking(False)
        us = nsutil.socket_in(ns, fam, socket.SOCK_DGRAM)
        us.bind((addr, UDP_PORT))
        us.setblocking(False)
        with self._lock:
            self._pending.append(_Conn(ls, None, "listen"))
            self._pending.append(_Conn(us, None, "udp-server"))

    def add_tcp_flow(self, ns: str, src: str, dst: str) -> FlowStats:
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        s = nsutil.socket_in(ns, fam, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((src, 0))
        s.setblocking(False)
        flow = FlowStats("tcp", src, dst, sport=s.getsockname()[1])
        err = s.connect_ex((dst, TCP_PORT))
        conn = _Conn(s, flow, "client")
        conn.connecting = err in (errno.EINPROGRESS, 0)
        if not conn.connecting:
            flow.reset = f"connect: {errno.errorcode.get(err, err)}"
        with self._lock:
            self.flows.append(flow)
            self._pending.append(conn)
        return flow

    def add_udp_flow(self, ns: str, src: str, dst: str) -> FlowStats:
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        s = nsutil.socket_in(ns, fam, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.connect((dst, UDP_PORT))
        s.setblocking(False)
        flow = FlowStats("udp", src, dst, sport=s.getsockname()[1], connected=True)
        with self._lock:
            self.flows.append(flow)
            self._pending.append(_Conn(s, flow, "udp-client"))
        return flow

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ctlab-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for conn in self._conns + self._pending:
            try:
                conn.sock.close()
            except OSError:
                pass
        self._conns.clear()
        self._pending.clear()
        self.sel.close()

    def wait_connected(self, timeout: float = 10.0) -> int:
        """Wait until every TCP flow is connected or failed; return how many connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tcp = [f for f in self.flows if f.kind == "tcp"]
            if all(f.connected or f.reset for f in tcp) and all(
                    f.echoed > 0 or f.reset for f in tcp):
                break
            time.sleep(0.05)
        return sum(1 for f in self.flows if f.kind == "tcp" and f.connected)

    def _adopt(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for conn in pending:
            self._conns.append(conn)
            ev = selectors.EVENT_READ
            if conn.connecting:
                ev |= selectors.EVENT_WRITE
            self.sel.register(conn.sock, ev, conn)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._adopt()
            now = time.monotonic()
            for key, mask in self.sel.select(timeout=0.01):
                self._event(key.data, mask, now)
            now = time.monotonic()
            for conn in self._conns:
                if conn.role in ("client", "udp-client") and conn.next_send <= now \
                        and not conn.connecting and not conn.flow.reset:
                    self._send_next(conn, now)

    def _close(self, conn: _Conn, why: str) -> None:
        if conn.flow is not None and not conn.flow.reset:
            conn.flow.reset = why
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn in self._conns:
            self._conns.remove(conn)

    def _send_next(self, conn: _Conn, now: float) -> None:
        conn.seq += 1
        conn.next_send = now + self.interval
        msg = conn.seq.to_bytes(8, "big") + b"c" * (MSG - 8)
        try:
            if conn.role == "udp-client":
                conn.sock.send(msg)
                conn.flow.sent += len(msg)
                return
            conn.outbuf += msg
            n = conn.sock.send(conn.outbuf)
            conn.flow.sent += n
            conn.outbuf = conn.outbuf[n:]
        except BlockingIOError:
            pass
        except OSError as exc:
            if conn.role == "client":
                self._close(conn, f"send: {errno.errorcode.get(exc.errno, exc)}")

    def _event(self, conn: _Conn, mask: int, now: float) -> None:
        role = conn.role
        if role == "listen":
            try:
                s, peer = conn.sock.accept()
            except OSError:
                return
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            srv = _Conn(s, None, "server")
            srv.flow = self._server_by_peer.setdefault(peer[:2], FlowStats("srv", "", ""))
            self._conns.append(srv)
            self.sel.register(s, selectors.EVENT_READ, srv)
            return
        if role == "udp-server":
            for _ in range(64):
                try:
                    data, peer = conn.sock.recvfrom(2048)
                except OSError:
                    return
                try:
                    conn.sock.sendto(data, peer)
                except OSError:
                    pass
            return
        if conn.connecting and mask & selectors.EVENT_WRITE:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(conn, f"connect: {errno.errorcode.get(err, err)}")
                return
            conn.connecting = False
            conn.flow.connected = True
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            self._send_next(conn, now)
            return
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if role == "client":
                self._close(conn, f"recv: {errno.errorcode.get(exc.errno, exc)}")
            else:
                self._close(conn, "server error")
            return
        if role == "server":
            if not data:
                self._close(conn, "")
                return
            conn.flow.server_received += len(data)
            try:
                conn.sock.send(data)
            except OSError:
                pass
            return
        if not data and role == "client":
            self._close(conn, "closed by peer")
            return
        conn.flow.echoed += len(data)
        conn.flow.echo_times.append(now)

    def server_bytes(self) -> dict[tuple, int]:
        """Bytes each echo server received, by client (address, port)."""
        return {peer: f.server_received for peer, f in self._server_by_peer.items()}
