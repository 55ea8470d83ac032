"""The one place where ctools talks to the kernel over ctnetlink.

:class:`CtnetlinkSocket` is a thin, blocking wrapper: dumps, request/acknowledge, batched
requests with one acknowledgement each, and multicast events.  Everything it hands out is
raw payload bytes (``memoryview`` starting at the ``nfgenmsg`` header): decoding is the
codec's job.  A namespace can be selected at creation; the socket then stays bound to it.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator

from ctools.netlink import constants as C
from ctools.netlink.codec import NFGENMSG, NLMSGHDR, iter_messages
from ctools.netlink.errors import CodecError, NetlinkError

__all__ = ["CtnetlinkSocket", "open_netlink_socket", "RECV_SIZE"]

CLONE_NEWNET = 0x40000000
# kernel dump skbs are at most ~32 KiB; a larger user buffer only avoids MSG_TRUNC
RECV_SIZE = 1 << 17
_NLERR = struct.Struct("=i")
_EXT_ACK_MSG = 1  # NLMSGERR_ATTR_MSG
_NLA = struct.Struct("=HH")

_libc = None


def _setns(fd: int) -> None:
    global _libc
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _netns_path(netns: str | int) -> str | int:
    if isinstance(netns, int):
        return netns
    return netns if "/" in netns else f"/run/netns/{netns}"


def open_netlink_socket(protocol: int = C.NETLINK_NETFILTER,
                        netns: str | int | None = None) -> socket.socket:
    """A raw netlink socket, created inside ``netns`` when given.

    ``netns`` is a name from ``ip netns`` (``/run/netns/NAME``), a path, or an open fd.
    The switch happens on a short-lived helper thread, so the caller's thread never leaves
    its namespace (setns() is per thread).
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    target = _netns_path(netns)
    result: dict = {}

    def create() -> None:
        try:
            fd = target if isinstance(target, int) else os.open(target, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                if not isinstance(target, int):
                    os.close(fd)
            result["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=create, name="ctools-setns")
    worker.start()
    worker.join()
    if "error" in result:
        exc = result["error"]
        raise NetlinkError(exc.errno or _errno.EINVAL,
                           f"cannot enter network namespace {netns}: {exc.strerror}")
    return result["sock"]


def _parse_error(payload, flags: int = 0) -> tuple[int, int, str | None]:
    """(errno, request seq, extended-ack text) of an NLMSG_ERROR payload."""
    if len(payload) < 4:
        raise CodecError("truncated netlink error message")
    err = -_NLERR.unpack_from(payload, 0)[0]
    seq = 0
    msg = None
    if len(payload) >= 20:
        length, _ty, _flags, seq, _pid = NLMSGHDR.unpack_from(payload, 4)
        if flags & C.NLM_F_ACK_TLVS:
            off = 4 + (16 if flags & C.NLM_F_CAPPED else ((length + 3) & ~3))
            while off + 4 <= len(payload):
                ln, ty = _NLA.unpack_from(payload, off)
                if ln < 4:
                    break
                if ty & C.NLA_TYPE_MASK == _EXT_ACK_MSG:
                    msg = bytes(payload[off + 4:off + ln]).split(b"\0")[0].decode(
                        "utf-8", "replace")
                    break
                off += (ln + 3) & ~3
    return err, seq, msg


class CtnetlinkSocket:
    """A ctnetlink socket (NETLINK_NETFILTER).

    ``groups`` is the bind() bitmask of multicast groups (see
    :mod:`ctools.netlink.constants`, ``NF_NETLINK_CONNTRACK_*``); ``rcvbuf`` sets the
    receive buffer (SO_RCVBUFFORCE, falling back to SO_RCVBUF); ``netns`` selects the
    network namespace.  Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, groups: int = 0, rcvbuf: int | None = None,
                 netns: str | int | None = None) -> None:
        try:
            self.sock = open_netlink_socket(C.NETLINK_NETFILTER, netns)
        except NetlinkError:
            raise
        except OSError as exc:
            raise NetlinkError(exc.errno or _errno.EINVAL, f"socket: {exc.strerror}") from None
        try:
            self.sock.bind((0, groups))
            # acks without a copy of our request: they are what -R waits for by the thousand
            self.sock.setsockopt(C.SOL_NETLINK, C.NETLINK_CAP_ACK, 1)
            try:
                self.sock.setsockopt(C.SOL_NETLINK, C.NETLINK_EXT_ACK, 1)
            except OSError:
                pass
        except OSError as exc:
            self.sock.close()
            raise NetlinkError(exc.errno or _errno.EINVAL, f"bind: {exc.strerror}") from None
        self.groups = groups
        self.portid = self.sock.getsockname()[0]
        self._seq = int(time.time()) & 0x7FFFFFFF
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        if rcvbuf:
            self.set_rcvbuf(rcvbuf)

    # -- plumbing ------------------------------------------------------------------------------
    def fileno(self) -> int:
        """The socket's file descriptor (for select/asyncio readers)."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> CtnetlinkSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_rcvbuf(self, size: int) -> int:
        """Set the receive buffer size; returns what the kernel reports back (it doubles)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, C.SO_RCVBUFFORCE, size)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return self.rcvbuf

    @property
    def rcvbuf(self) -> int:
        """Current receive buffer size as reported by the kernel."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def set_no_enobufs(self, on: bool = True) -> None:
        """Ask the kernel not to report ENOBUFS on overruns (events get lost silently)."""
        self.sock.setsockopt(C.SOL_NETLINK, C.NETLINK_NO_ENOBUFS, int(on))

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, (0, 0))
        except OSError as exc:
            raise NetlinkError(exc.errno or _errno.EIO, f"send: {exc.strerror}") from None

    def _recv(self, flags: int = 0) -> bytes:
        # recv(128 KiB) would malloc (mmap) and shrink a fresh buffer per call, ~35 us:
        # receive into one reused buffer and copy out only what arrived
        try:
            n = self.sock.recv_into(self._rbuf, RECV_SIZE, flags)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise NetlinkError(exc.errno or _errno.EIO) from None
        return self._rview[:n].tobytes()

    def _message(self, msg_type: int, flags: int, seq: int, family: int, attrs: bytes,
                 res_id: int) -> bytes:
        length = 20 + len(attrs)
        return (NLMSGHDR.pack(length, msg_type, flags | C.NLM_F_REQUEST, seq, 0)
                + NFGENMSG.pack(family, C.NFNETLINK_V0, res_id) + attrs)

    # -- requests ------------------------------------------------------------------------------
    def dump(self, msg_type: int, family: int = socket.AF_UNSPEC, attrs: bytes = b"",
             res_id: int = 0) -> Iterator[memoryview]:
        """Run a dump request and yield each reply payload (from ``nfgenmsg`` on).

        Payloads stay valid after the next iteration (each receive is a fresh buffer).
        Stopping early drains the rest of the dump so the socket stays usable.
        """
        seq = self.next_seq()
        self._send(self._message(msg_type, C.NLM_F_DUMP, seq, family, attrs, res_id))
        done = False
        try:
            while not done:
                data = self._recv()
                for ty, _flags, mseq, _pid, payload in iter_messages(data):
                    if mseq != seq:
                        continue  # a late answer to something earlier
                    if ty == C.NLMSG_DONE:
                        done = True
                        if len(payload) >= 4:
                            err = -_NLERR.unpack_from(payload, 0)[0]
                            if err > 0:
                                raise NetlinkError(err)
                        break
                    if ty == C.NLMSG_ERROR:
                        err = _parse_error(payload)[0]
                        if err:
                            done = True
                            raise NetlinkError(err)
                        continue
                    if ty < 16:  # NOOP, OVERRUN
                        continue
                    yield payload
        finally:
            if not done:
                self._drain(seq)

    def _drain(self, seq: int) -> None:
        # an abandoned dump keeps the kernel's dump running: read it to the end
        try:
            while True:
                for ty, _f, mseq, _p, _pl in iter_messages(self._recv()):
                    if mseq == seq and ty in (C.NLMSG_DONE, C.NLMSG_ERROR):
                        return
        except (NetlinkError, CodecError):
            return

    def request(self, msg_type: int, flags: int = 0, family: int = socket.AF_UNSPEC,
                attrs: bytes = b"", res_id: int = 0) -> list[memoryview]:
        """Send one request with NLM_F_ACK and wait for its acknowledgement.

        Returns the reply payloads received before the ACK (e.g. the entry of a CT_GET).
        A kernel error raises :class:`NetlinkError` with its errno.
        """
        seq = self.next_seq()
        self._send(self._message(msg_type, flags | C.NLM_F_ACK, seq, family, attrs, res_id))
        replies: list[memoryview] = []
        while True:
            for ty, mflags, mseq, _pid, payload in iter_messages(self._recv()):
                if mseq != seq:
                    continue
                if ty == C.NLMSG_ERROR:
                    err, _s, text = _parse_error(payload, mflags)
                    if err:
                        raise NetlinkError(err, None, text)
                    return replies
                if ty == C.NLMSG_DONE:
                    return replies
                if ty >= 16:
                    replies.append(payload)

    def batch(self, requests: Iterable[tuple], chunk: int = 256) -> list[int]:
        """Send many requests, each with NLM_F_ACK, packed into few sendmsg() calls.

        ``requests`` yields ``(msg_type, flags, family, attrs)`` tuples (an optional 5th item
        is res_id).  Returns one errno per request, in order (0 = success).  Requests are
        sent ``chunk`` at a time and every chunk's acks are collected before the next, so
        the receive buffer never overflows.
        """
        results: list[int] = []
        pending: list[bytes] = []
        seqs: list[int] = []
        if self.rcvbuf < (1 << 20):
            try:
                self.set_rcvbuf(1 << 20)
            except OSError:
                pass
        for req in requests:
            msg_type, flags, family, attrs = req[:4]
            res_id = req[4] if len(req) > 4 else 0
            seq = self.next_seq()
            seqs.append(seq)
            pending.append(self._message(msg_type, flags | C.NLM_F_ACK, seq, family, attrs,
                                         res_id))
            if len(pending) >= chunk:
                results.extend(self._flush_batch(pending, seqs))
                pending, seqs = [], []
        if pending:
            results.extend(self._flush_batch(pending, seqs))
        return results

    def _flush_batch(self, messages: list[bytes], seqs: list[int]) -> list[int]:
        # one sendto() per ~64 KiB: the kernel walks every message in the buffer in turn
        data = b"".join(messages)
        if len(data) <= 65536:
            self._send(data)
        else:
            part: list[bytes] = []
            size = 0
            for m in messages:
                if size + len(m) > 65536 and part:
                    self._send(b"".join(part))
                    part, size = [], 0
                part.append(m)
                size += len(m)
            if part:
                self._send(b"".join(part))
        first = seqs[0]
        answers: dict[int, int] = {}
        want = len(seqs)
        while len(answers) < want:
            for ty, _flags, mseq, _pid, payload in iter_messages(self._recv()):
                if ty == C.NLMSG_ERROR:
                    idx = (mseq - first) & 0xFFFFFFFF
                    if idx < want:
                        answers[idx] = _parse_error(payload)[0]
        return [answers[i] for i in range(want)]

    # -- events --------------------------------------------------------------------------------
    def subscribe(self, groups: int) -> None:
        """Join more multicast groups (bitmask as for the constructor)."""
        for g in range(1, 33):
            if groups & (1 << (g - 1)):
                self.sock.setsockopt(C.SOL_NETLINK, C.NETLINK_ADD_MEMBERSHIP, g)
        self.groups |= groups

    def recv_events(self, *, nonblock: bool = False
                    ) -> Iterator[tuple[int, int, int, memoryview]]:
        """Yield ``(type, flags, pid, payload)`` for every multicast event received.

        Blocks for more events forever unless ``nonblock`` is true, in which case it
        returns once the socket has nothing more to read (for event loops).  A receive
        buffer overrun raises :class:`NetlinkError` with ``errno == ENOBUFS``; events were
        lost, the socket stays usable and the caller may simply iterate again.
        """
        recv = self._recv
        rflags = socket.MSG_DONTWAIT if nonblock else 0
        while True:
            try:
                data = recv(rflags)
            except BlockingIOError:
                return
            for ty, flags, _seq, pid, payload in iter_messages(data):
                if ty < 16:
                    continue
                yield ty, flags, pid, payload
