"""Dedicated links: UDP, multicast and TCP channels, and the multichannel fail-over set.

Raw non-blocking sockets registered with the asyncio loop (``add_reader``): datagram
traffic needs no transport/protocol objects and this keeps the receive path short.
Every channel hands what it reads to ``on_receive(channel, data)``; for TCP ``data`` is
always a run of complete messages (the stream is cut at message boundaries here).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from ctools.config import model as cfgm
from ctools.daemon import link
from ctools.daemon.stats import LinkCounters
from ctools.sync import StreamDecoder

SO_NO_CHECK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
RECV_MAX = 65536
IP_PKTINFO = 8
_IFINDEX4 = struct.Struct("@i")
_ANC_SPACE = socket.CMSG_SPACE(32)
# receive buffer when RcvSocketBuffer is not configured: a Python receiver drains more
# slowly than the C one, so a burst must fit in the socket instead of being dropped
DEFAULT_RCVBUF = 16 << 20

Receiver = Callable[["Channel", bytes, "tuple | None"], None]


def _set_buffers(sock: socket.socket, snd: int, rcv: int) -> None:
    for size, force, plain in ((snd, SO_SNDBUFFORCE, socket.SO_SNDBUF),
                               (rcv, SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        if size:
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, plain, size)
                except OSError as exc:
                    if exc.errno != errno.ENOPROTOOPT:
                        raise


class Channel:
    """One dedicated link. Subclasses open sockets in ``open`` and implement ``send``."""

    transport = ""          # name used by the -s views: UDP, multicast, TCP
    header_overhead = 28    # IPv4 + UDP header: the send buffer is MTU minus this

    def __init__(self, conf: cfgm.Channel, index: int) -> None:
        self.conf = conf
        self.index = index
        self.device = conf.interface or ""
        self.counters = LinkCounters()
        self.on_receive: Receiver | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_heard: float | None = None   # monotonic time of the last datagram read

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.conf.family == "ipv6" else socket.AF_INET

    def mtu_payload(self) -> int:
        """Bytes of messages one datagram may carry (strictly less than this)."""
        mtu = link.if_mtu(self.device) or 1500
        return max(mtu - self.header_overhead, 64)

    def status(self) -> str:
        return link.link_status(self.device)

    def open(self) -> None:
        """Create and bind the sockets (synchronously, so errors show at start-up)."""
        raise NotImplementedError

    def attach(self, loop: asyncio.AbstractEventLoop, on_receive: Receiver) -> None:
        """Start reading on ``loop``."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _received(self, data: bytes, src: tuple | None) -> None:
        self.counters.bytes_recv += len(data)
        self.counters.pkts_recv += 1
        self.last_heard = time.monotonic()
        if self.on_receive is not None:
            self.on_receive(self, data, src)


class _DatagramChannel(Channel):
    """Shared parts of UDP and multicast: a bound receive and an unbound send socket."""

    def __init__(self, conf: cfgm.Channel, index: int) -> None:
        super().__init__(conf, index)
        self.rx: socket.socket | None = None
        self.tx: socket.socket | None = None
        self.dest: tuple | None = None
        self.ifindex = 0

    def _want_pktinfo(self, rx: socket.socket) -> None:
        """Ask for the arrival interface of each datagram (peer check: interface too)."""
        self.ifindex = link.if_index(self.device)
        try:
            if self.family == socket.AF_INET6:
                rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                rx.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        except OSError:
            self.ifindex = 0

    def _arrival_ifindex(self, ancdata) -> int:
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 4:
                return _IFINDEX4.unpack_from(value, 0)[0]
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO \
                    and len(value) >= 20:
                return _IFINDEX4.unpack_from(value, 16)[0]
        return 0

    def _read(self) -> None:
        rx = self.rx
        for _ in range(64):     # bounded so one busy link cannot starve the loop
            try:
                data, anc, _flags, src = rx.recvmsg(RECV_MAX, _ANC_SPACE)
            except BlockingIOError:
                return
            except OSError:
                self.counters.error_recv += 1
                return
            if self.ifindex:
                arrived = self._arrival_ifindex(anc)
                if arrived and arrived != self.ifindex:
                    src = ("wrong-interface",) + tuple(src[1:])
            self._received(data, src)

    def attach(self, loop: asyncio.AbstractEventLoop, on_receive: Receiver) -> None:
        self.loop, self.on_receive = loop, on_receive
        loop.add_reader(self.rx.fileno(), self._read)

    def send(self, data: bytes) -> None:
        try:
            self.tx.sendto(data, self.dest)
        except OSError:
            self.counters.error_sent += 1
            return
        self.counters.bytes_sent += len(data)
        self.counters.pkts_sent += 1

    def close(self) -> None:
        for sock in (self.rx, self.tx):
            if sock is not None:
                if self.loop is not None and sock is self.rx:
                    try:
                        self.loop.remove_reader(sock.fileno())
                    except (ValueError, OSError):
                        pass
                sock.close()
        self.rx = self.tx = None

    def _tx_socket(self) -> socket.socket:
        tx = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        tx.setblocking(False)
        if self.family == socket.AF_INET:
            tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if self.conf.checksum else 1)
        _set_buffers(tx, self.conf.sndbuf, 0)
        return tx


class UdpChannel(_DatagramChannel):
    """Unicast UDP: receive on ``address:Port``, send to ``destination:Port``."""

    transport = "UDP"

    def open(self) -> None:
        conf = self.conf
        scope = link.if_index(self.device) if self.family == socket.AF_INET6 else 0
        rx = socket.socket(self.family, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_buffers(rx, 0, conf.rcvbuf or DEFAULT_RCVBUF)
        local = conf.address or ("::" if self.family == socket.AF_INET6 else "0.0.0.0")
        if self.family == socket.AF_INET6:
            rx.bind((local, conf.port, 0, scope))
            self.dest = (conf.destination, conf.port, 0, scope)
        else:
            rx.bind((local, conf.port))
            self.dest = (conf.destination, conf.port)
        rx.setblocking(False)
        self._want_pktinfo(rx)
        self.rx = rx
        self.tx = self._tx_socket()


class McastChannel(_DatagramChannel):
    """Multicast: join ``group`` on the interface, send with loopback off and TTL 1."""

    transport = "multicast"

    def open(self) -> None:
        conf: cfgm.McastChannel = self.conf  # type: ignore[assignment]
        rx = socket.socket(self.family, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_buffers(rx, 0, conf.rcvbuf or DEFAULT_RCVBUF)
        tx = self._tx_socket()
        if self.family == socket.AF_INET6:
            ifindex = link.if_index(self.device)
            rx.bind(("::", conf.group))
            mreq = socket.inet_pton(socket.AF_INET6, conf.address) + struct.pack("@I", ifindex)
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            self.dest = (conf.address, conf.group, 0, ifindex)
        else:
            iface = conf.ipv4_interface or "0.0.0.0"
            rx.bind(("0.0.0.0", conf.group))
            mreq = socket.inet_aton(conf.address) + socket.inet_aton(iface)
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
            self.dest = (conf.address, conf.group)
        rx.setblocking(False)
        self._want_pktinfo(rx)
        self.rx, self.tx = rx, tx


class TcpChannel(Channel):
    """Two streams per peer: we send on our outgoing connection, read what we accept.

    While the outgoing connection is down, sends go to a bounded error queue (oldest
    dropped) that is replayed in order once a (rate-limited) reconnect succeeds.
    """

    transport = "TCP"
    header_overhead = 40
    RECONNECT_INTERVAL = 1.0

    def __init__(self, conf: cfgm.Channel, index: int, error_queue_length: int = 128) -> None:
        super().__init__(conf, index)
        self.listener: socket.socket | None = None
        self.server: socket.socket | None = None     # accepted peer connection
        self.client: socket.socket | None = None     # our outgoing connection
        self.client_connected = False
        self.last_connect = 0.0
        self.errorq: deque[bytes] = deque(maxlen=error_queue_length)
        self.errorq_max = error_queue_length
        self.errorq_dropped = 0
        self.outbuf = bytearray()
        self.authenticated = False
        self.framer = StreamDecoder()
        self.dest: tuple | None = None
        self.server_peer: tuple | None = None

    def _addr(self, host: str | None, port: int) -> tuple:
        if self.family == socket.AF_INET6:
            return (host or "::", port, 0, link.if_index(self.device))
        return (host or "0.0.0.0", port)

    def open(self) -> None:
        conf: cfgm.TcpChannel = self.conf  # type: ignore[assignment]
        ls = socket.socket(self.family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        _set_buffers(ls, 0, conf.rcvbuf or DEFAULT_RCVBUF)
        ls.bind(self._addr(conf.address, conf.port))
        ls.listen(1)
        ls.setblocking(False)
        self.listener = ls
        self.dest = self._addr(conf.destination, conf.port)

    def attach(self, loop: asyncio.AbstractEventLoop, on_receive: Receiver) -> None:
        self.loop, self.on_receive = loop, on_receive
        loop.add_reader(self.listener.fileno(), self._accept)
        self._connect()

    # --- receiving side
    def _accept(self) -> None:
        try:
            conn, peer = self.listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.server_peer = peer
        if self.server is not None:       # a new connection replaces the old one
            self._drop_server()
        self.server = conn
        self.framer = StreamDecoder(self.authenticated)
        self.loop.add_reader(conn.fileno(), self._read)

    def _drop_server(self) -> None:
        if self.server is not None:
            try:
                self.loop.remove_reader(self.server.fileno())
            except (ValueError, OSError):
                pass
            self.server.close()
            self.server = None

    def _read(self) -> None:
        try:
            data = self.server.recv(RECV_MAX)
        except BlockingIOError:
            return
        except OSError:
            self.counters.error_recv += 1
            self._drop_server()
            return
        if not data:
            self._drop_server()
            return
        self.counters.bytes_recv += len(data)
        self.counters.pkts_recv += 1
        self.last_heard = time.monotonic()
        for chunk in self.framer.feed(data):
            if self.on_receive is not None:
                self.on_receive(self, chunk, self.server_peer)
        if self.framer.broken:
            # an unframeable header desynchronises the stream: start a fresh connection
            self.counters.error_recv += 1
            self._drop_server()

    # --- sending side
    def _connect(self) -> None:
        self.last_connect = time.monotonic()
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        _set_buffers(sock, self.conf.sndbuf, 0)
        rc = sock.connect_ex(self.dest)
        self.client = sock
        self.client_connected = False
        if rc == 0:
            self._connected()
        elif rc in (errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(sock.fileno(), self._connect_done)
        else:
            self.counters.error_sent += 1
            self._drop_client()

    def _connect_done(self) -> None:
        sock = self.client
        if sock is None:
            return
        self.loop.remove_writer(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.counters.error_sent += 1
            self._drop_client()
            return
        self._connected()

    def _connected(self) -> None:
        self.client_connected = True
        while self.errorq:
            self.outbuf += self.errorq.popleft()
        self._flush()

    def _drop_client(self) -> None:
        if self.client is not None:
            try:
                self.loop.remove_writer(self.client.fileno())
            except (ValueError, OSError):
                pass
            self.client.close()
        self.client = None
        self.client_connected = False
        if self.outbuf:
            self._queue_error(bytes(self.outbuf))
            self.outbuf.clear()

    def _queue_error(self, data: bytes) -> None:
        if len(self.errorq) == self.errorq.maxlen:
            self.errorq_dropped += 1
        self.errorq.append(data)

    def _flush(self) -> None:
        sock = self.client
        while self.outbuf and sock is not None:
            try:
                sent = sock.send(self.outbuf)
            except BlockingIOError:
                self.loop.add_writer(sock.fileno(), self._writable)
                return
            except OSError:
                self.counters.error_sent += 1
                self._drop_client()
                return
            self.counters.bytes_sent += sent
            del self.outbuf[:sent]

    def _writable(self) -> None:
        if self.client is not None:
            self.loop.remove_writer(self.client.fileno())
        self._flush()

    def send(self, data: bytes) -> None:
        if not self.client_connected:
            self.counters.error_sent += 1
            self._queue_error(data)
            if self.client is None and \
                    time.monotonic() - self.last_connect >= self.RECONNECT_INTERVAL:
                self._connect()
            return
        self.counters.pkts_sent += 1
        pending = bool(self.outbuf)
        self.outbuf += data
        if not pending:
            self._flush()

    def close(self) -> None:
        self._drop_server()
        self.outbuf.clear()
        self._drop_client()
        if self.listener is not None:
            try:
                self.loop.remove_reader(self.listener.fileno())
            except (ValueError, OSError):
                pass
            self.listener.close()
            self.listener = None

    @property
    def server_connected(self) -> bool:
        return self.server is not None


def make_channel(conf: cfgm.Channel, index: int, error_queue_length: int = 128) -> Channel:
    """The channel class for one configured link."""
    if isinstance(conf, cfgm.TcpChannel):
        return TcpChannel(conf, index, error_queue_length)
    if isinstance(conf, cfgm.McastChannel):
        return McastChannel(conf, index)
    return UdpChannel(conf, index)


class MultiChannel:
    """The configured links: send on the active one, receive on all, fail over on link loss.

    Receiving valid traffic on a link makes it the active one (the receiver follows the
    sender's choice); ``check_links`` moves away from a link that is not UP+RUNNING.
    """

    def __init__(self, channels: list[Channel], active: int = 0, log=None) -> None:
        self.channels = channels
        self.active = channels[active] if channels else None
        self.log = log
        self.none_logged = False

    def open(self) -> None:
        for ch in self.channels:
            ch.open()

    def attach(self, loop: asyncio.AbstractEventLoop, on_receive: Receiver) -> None:
        for ch in self.channels:
            ch.attach(loop, on_receive)

    def send(self, data: bytes) -> None:
        if self.active is not None:
            self.active.send(data)

    def follow(self, ch: Channel) -> None:
        """The peer spoke on ``ch``: answer there from now on."""
        self.active = ch

    def mtu_payload(self) -> int:
        return self.active.mtu_payload() if self.active is not None else 1472

    def check_links(self) -> None:
        """Fail over when the active link's interface is not UP and RUNNING."""
        if self.active is None or len(self.channels) < 2:
            return
        if link.link_usable(self.active.device):
            return
        for ch in self.channels:
            if ch is not self.active and link.link_candidate(ch.device):
                self.active = ch
                self.none_logged = False
                if self.log is not None:
                    self.log.notice(f"device `{ch.device}' becomes dedicated link")
                return
        if self.log is not None and not self.none_logged:
            self.none_logged = True
            self.log.error("no dedicated links available!")

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    @property
    def last_heard(self) -> float | None:
        times = [c.last_heard for c in self.channels if c.last_heard is not None]
        return max(times) if times else None
