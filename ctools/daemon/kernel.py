"""The daemon's ctnetlink sockets: event subscription, dumps and batched writes.

Built directly on the pure codec (``ctools.netlink.codec``): the hot paths (event decode,
commit) pipeline many messages per system call and ask for no ACKs, so the kernel only
answers the requests that failed.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
import sys
from array import array
from collections import deque
from collections.abc import Iterable

from ctools.model import Entry, Tuple
from ctools.netlink import codec
from ctools.netlink import constants as C
from ctools.netlink.errors import CodecError

NEW, UPDATE, DESTROY = "new", "update", "destroy"
_RECV = 1 << 20
_BATCH_BYTES = 1 << 16
STASH_MAX = 1 << 18     # datagrams of events held in user space (~300 bytes each)
_RXBUF: mmap.mmap | None = None
_NLHDR = struct.Struct("=IHHII").unpack_from
_CT_NEW, _CT_DELETE = C.CT_NEW, C.CT_DELETE
_CREATE = C.NLM_F_CREATE | C.NLM_F_EXCL
_decode_entry = codec.decode_entry


def _rxbuf() -> mmap.mmap:
    """The receive buffer of the request sockets: one per process, allocated on first use.

    Each use (a dump, an error drain) runs to completion before another starts and keeps
    no view into it, so the sockets can share it (1 MB each otherwise). An anonymous
    mapping: only the pages the largest datagram reached are resident (dumps come in
    32 KB datagrams), where a zero-filled bytearray was resident whole.
    """
    global _RXBUF
    if _RXBUF is None:
        _RXBUF = mmap.mmap(-1, _RECV)
    return _RXBUF


class _Block:
    """One stash block: datagrams back to back, ``ends[i]`` the end offset of the i-th."""

    __slots__ = ("view", "ends", "off", "rd", "start")

    def __init__(self, size: int) -> None:
        # an anonymous mapping of its own: unmapped (given back) when the block is dropped,
        # and only the pages written count as resident
        self.view = memoryview(mmap.mmap(-1, size))
        self.ends = array("I")
        self.off = 0        # write offset
        self.rd = 0         # index of the next datagram to read
        self.start = 0      # its start offset


class EventStash:
    """Received, not yet decoded event datagrams (FIFO), packed into large blocks.

    A bytes object per datagram cost ~40 B of overhead each, and a burst's 100k of them,
    scattered among the caches' long-lived objects, kept their memory with the process
    after they were freed (the allocator returns an arena only once it is wholly empty).
    """

    BLOCK = 1 << 20
    ROOM = 1 << 16      # free space kept for each receive (event datagrams are < 1 KB)

    def __init__(self) -> None:
        self.blocks: deque[_Block] = deque()
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def room(self) -> memoryview:
        """Where to receive the next datagram (at least ROOM bytes)."""
        blocks = self.blocks
        if not blocks or blocks[-1].off > self.BLOCK - self.ROOM:
            blocks.append(_Block(self.BLOCK))
        b = blocks[-1]
        return b.view[b.off:]

    def commit(self, n: int) -> None:
        """The datagram received into ``room()`` is ``n`` bytes long."""
        b = self.blocks[-1]
        b.off += n
        b.ends.append(b.off)
        self.count += 1

    def take(self, limit: int) -> list[memoryview]:
        """The oldest ``limit`` datagrams (or all), valid until the next ``room()``."""
        out: list[memoryview] = []
        blocks = self.blocks
        while blocks and len(out) < limit:
            b = blocks[0]
            ends, view, start = b.ends, b.view, b.start
            stop = min(len(ends), b.rd + limit - len(out))
            for i in range(b.rd, stop):
                end = ends[i]
                out.append(view[start:end])
                start = end
            b.rd, b.start = stop, start
            if stop < len(ends):
                break
            if len(blocks) > 1:
                blocks.popleft()
            else:
                b.off = b.rd = b.start = 0
                del b.ends[:]
                break
        self.count -= len(out)
        return out

    def popleft(self) -> memoryview:
        """The oldest datagram (valid until the next ``room()``)."""
        b = self.blocks[0]
        i = b.rd
        start, end = b.start, b.ends[i]
        b.rd = i + 1
        b.start = end
        self.count -= 1
        if b.rd == len(b.ends):
            if len(self.blocks) > 1:
                self.blocks.popleft()           # unmapped once its last view is gone
            else:
                b.off = b.rd = b.start = 0      # the only block: written again from the start
                del b.ends[:]
        return b.view[start:end]


class KernelError(OSError):
    """A netlink request failed."""


def _open(groups: int = 0, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         C.NETLINK_NETFILTER)
    if rcvbuf:
        try:
            sock.setsockopt(socket.SOL_SOCKET, C.SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, groups))
    return sock


def _group_mask(*groups: int) -> int:
    mask = 0
    for g in groups:
        mask |= 1 << (g - 1)
    return mask


class EventSocket:
    """Conntrack (and optionally expectation) event subscription.

    ``read()`` returns decoded ``(kind, entry, pid)`` tuples, ``pid`` being the port id of
    the socket whose request caused the event (0 for packets); raises ``OverrunError`` on
    ENOBUFS.
    """

    def __init__(self, rcvbuf: int = 0, reliable: bool = False,
                 expectations: bool = False) -> None:
        wanted = [C.NFNLGRP_CONNTRACK_NEW, C.NFNLGRP_CONNTRACK_UPDATE,
                  C.NFNLGRP_CONNTRACK_DESTROY]
        if expectations:
            wanted += [C.NFNLGRP_CONNTRACK_EXP_NEW, C.NFNLGRP_CONNTRACK_EXP_UPDATE,
                       C.NFNLGRP_CONNTRACK_EXP_DESTROY]
        groups = _group_mask(*wanted)
        self.sock = _open(groups, rcvbuf)
        self.sock.setblocking(False)
        if reliable:
            # broadcast errors + no ENOBUFS: the kernel drops the flow rather than the event
            for opt in (3, C.NETLINK_NO_ENOBUFS):  # NETLINK_BROADCAST_ERROR = 3
                try:
                    self.sock.setsockopt(C.SOL_NETLINK, opt, 1)
                except OSError:
                    pass
        self.unknown = 0
        self.skipped = 0
        self.requested = 0
        self.overrun_pending = False
        self.drained = True         # the last read() emptied the socket and the stash
        self.stash = EventStash()   # received, not yet decoded datagrams

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def buffer_size(self) -> int:
        # what getsockopt reports (the kernel doubles the request), as the reference prints
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def ignore_port(self, portid: int) -> bool:
        """Drop, in the kernel, every event caused by netlink port ``portid``.

        A classic BPF filter on the socket compares the nlmsghdr's pid field: a 100k-entry
        commit then costs no event reads at all (and cannot overrun the event buffer).
        """
        # BPF loads words big endian; the pid is stored in host order
        want = int.from_bytes(portid.to_bytes(4, sys.byteorder), "big")
        insns = ((0x20, 0, 0, 12),          # ld [12]        nlmsg_pid
                 (0x15, 0, 1, want),        # jeq #want, drop, keep
                 (0x06, 0, 0, 0),           # drop: ret #0
                 (0x06, 0, 0, 0xFFFFFFFF))  # keep: ret #-1
        # the program's address from an array, not ctypes (half a MB for one pointer)
        self._bpf = array("B", b"".join(struct.pack("=HBBI", *i) for i in insns))
        prog = struct.pack("@HP", len(insns), self._bpf.buffer_info()[0])
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 26, prog)      # SO_ATTACH_FILTER
        except OSError:
            return False
        return True

    def backlog(self) -> int:
        """Bytes of events waiting in the socket (SO_MEMINFO rmem_alloc)."""
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, 55, 9 * 4)   # SO_MEMINFO
        except OSError:
            return 0
        return int.from_bytes(raw[:4], sys.byteorder)

    def set_buffer_size(self, size: int) -> int:
        """Ask for ``size`` bytes (as the reference does); returns what getsockopt reports."""
        self.requested = size
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, C.SO_RCVBUFFORCE, size)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return self.buffer_size

    def read(self, limit: int = 100, skip_pid: int = -1) -> list[tuple[str, Entry, int]]:
        """Decode up to ``limit`` datagrams of events; [] when nothing is pending.

        Events caused by port ``skip_pid`` are only counted (``self.skipped``), not decoded.
        Each call first moves everything the kernel holds into ``stash`` (raw bytes): during
        a burst the kernel's buffer then empties at the speed of ``recv`` rather than of
        the decoder and the daemon behind it, and does not overflow. ``drained`` tells
        whether the socket and the stash are both empty afterwards.
        """
        if self.overrun_pending:
            self.overrun_pending = False
            raise OverrunError()
        stash = self.stash
        empty = self._pull()
        if not stash and self.overrun_pending:
            self.overrun_pending = False
            raise OverrunError()
        out: list[tuple[str, Entry, int]] = []
        decode = self._decode
        for data in stash.take(limit):
            decode(data, skip_pid, out)
        self.drained = empty and not stash
        return out

    def _pull(self) -> bool:
        """Receive into the stash until the socket is empty (True) or the stash is full."""
        stash = self.stash
        recv_into = self.sock.recv_into
        blocks = stash.blocks
        b = blocks[-1] if blocks else None
        last = stash.BLOCK - stash.ROOM
        got = 0
        # (room/commit inlined: this loop runs once per event of a burst)
        try:
            for _ in range(STASH_MAX - stash.count):
                if b is None or b.off > last:
                    b = _Block(stash.BLOCK)
                    blocks.append(b)
                off = b.off
                try:
                    off += recv_into(b.view[off:])
                except BlockingIOError:
                    return True
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        self.overrun_pending = True
                        return False
                    raise
                b.off = off
                b.ends.append(off)
                got += 1
            return False
        finally:
            stash.count += got

    def _decode(self, data, skip_pid: int, out: list) -> None:
        n = len(data)
        msgs = None
        if n >= 16:
            # an event datagram holds one message: frame it here (same verdicts as
            # iter_messages, which handles everything else)
            length, ty, flags, seq, pid = _NLHDR(data)
            if 16 <= length <= n and (length + 3) & ~3 >= n:
                msgs = ((ty, flags, seq, pid, data[16:length]),)
        if msgs is None:
            msgs = codec.iter_messages(data)
        try:
            for ty, flags, _seq, pid, payload in msgs:
                if pid == skip_pid:
                    self.skipped += 1
                    continue
                if ty == _CT_NEW:
                    kind = NEW if flags & _CREATE else UPDATE
                elif ty == _CT_DELETE:
                    kind = DESTROY
                elif ty == C.EXP_NEW or ty == C.EXP_DELETE:
                    kind = DESTROY if ty == C.EXP_DELETE else (
                        NEW if flags & _CREATE else UPDATE)
                    try:
                        out.append((kind, codec.decode_expect(payload), pid))
                    except CodecError:
                        self.unknown += 1
                    continue
                else:
                    self.unknown += 1
                    continue
                try:
                    out.append((kind, _decode_entry(payload), pid))
                except CodecError:
                    self.unknown += 1
        except CodecError:
            self.unknown += 1

    def close(self) -> None:
        self.sock.close()


class OverrunError(Exception):
    """The event socket lost events (ENOBUFS)."""


class RequestSocket:
    """Dumps and writes. ``portid`` identifies our own changes in the event stream."""

    def __init__(self) -> None:
        self.sock = _open()
        self.sock.setsockopt(socket.SOL_SOCKET, C.SO_RCVBUFFORCE, 8 << 20) \
            if os.geteuid() == 0 else None
        self.portid = self.sock.getsockname()[0]
        self.seq = 0

    @property
    def buf(self) -> mmap.mmap:
        return _rxbuf()

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def dump(self, family: int = socket.AF_UNSPEC, expectations: bool = False) -> list:
        """All conntrack entries (or expectations) of the kernel table."""
        seq = self._next_seq()
        self.sock.send(codec.build_message(C.EXP_GET if expectations else C.CT_GET,
                                           C.NLM_F_REQUEST | C.NLM_F_DUMP, seq, family))
        decode = codec.decode_expect if expectations else codec.decode_entry
        out: list = []
        buf = self.buf
        while True:
            n = self.sock.recv_into(buf)
            for ty, _flags, _seq, _pid, payload in codec.iter_messages(memoryview(buf)[:n]):
                if ty == C.NLMSG_DONE:
                    return out
                if ty == C.NLMSG_ERROR:
                    err, _ = codec.decode_error(payload)
                    if err:
                        raise KernelError(err, os.strerror(err))
                    continue
                try:
                    out.append(decode(payload))
                except CodecError:
                    pass

    def create_expect(self, items: list) -> dict[int, int]:
        """Create expectations; returns {index: errno} of the failures."""
        base = self.seq
        flags = C.NLM_F_REQUEST | C.NLM_F_CREATE | C.NLM_F_EXCL
        msgs = ((i, codec.build_message(C.EXP_NEW, flags, (base + 1 + i) & 0xFFFFFFFF,
                                        (x.tuple.family if x.tuple is not None else 2),
                                        codec.encode_expect(x)))
                for i, x in enumerate(items))
        errs = self._batch(msgs)
        self.seq = (base + len(items)) & 0xFFFFFFFF
        return {(s - base - 1) & 0xFFFFFFFF: e for s, e in errs.items()}

    def _batch(self, messages: Iterable[tuple[int, bytes]]) -> dict[int, int]:
        """Send (seq, message) pairs without ACKs; return {seq: errno} of the failures."""
        errors: dict[int, int] = {}
        chunk: list[bytes] = []
        size = 0
        for _seq, msg in messages:
            chunk.append(msg)
            size += len(msg)
            if size >= _BATCH_BYTES:
                self._send(b"".join(chunk), errors)
                chunk.clear()
                size = 0
        if chunk:
            self._send(b"".join(chunk), errors)
        self._drain(errors)
        return errors

    def _send(self, data: bytes, errors: dict[int, int]) -> None:
        # the kernel handles the whole buffer inside send(); errors wait in our queue
        self.sock.send(data)
        self._drain(errors)

    def _drain(self, errors: dict[int, int]) -> None:
        while True:
            try:
                n = self.sock.recv_into(self.buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                raise
            try:
                for ty, _f, _s, _p, payload in codec.iter_messages(memoryview(self.buf)[:n]):
                    if ty == C.NLMSG_ERROR:
                        err, seq = codec.decode_error(payload)
                        if err:
                            errors[seq] = err
            except CodecError:
                pass

    def create(self, entries: list[Entry], encode=codec.encode_entry) -> dict[int, int]:
        """Create entries; returns {index in ``entries``: errno} of the failures.

        ``encode(entry) -> attributes`` may be a faster encoder of the same bytes.
        """
        base = self.seq
        flags = C.NLM_F_REQUEST | C.NLM_F_CREATE | C.NLM_F_EXCL
        msgs = ((i, codec.build_message(C.CT_NEW, flags, (base + 1 + i) & 0xFFFFFFFF,
                                        e.orig.family, encode(e)))
                for i, e in enumerate(entries))
        errs = self._batch(msgs)
        self.seq = (base + len(entries)) & 0xFFFFFFFF
        return {(s - base - 1) & 0xFFFFFFFF: e for s, e in errs.items()}

    def update(self, entries: list[Entry]) -> dict[int, int]:
        base = self.seq
        msgs = ((i, codec.build_message(C.CT_NEW, C.NLM_F_REQUEST, (base + 1 + i) & 0xFFFFFFFF,
                                        e.orig.family, codec.encode_entry(e, for_update=True)))
                for i, e in enumerate(entries))
        errs = self._batch(msgs)
        self.seq = (base + len(entries)) & 0xFFFFFFFF
        return {(s - base - 1) & 0xFFFFFFFF: e for s, e in errs.items()}

    def delete(self, entries: list[Entry]) -> dict[int, int]:
        """Delete entries by original tuple (and zone)."""
        base = self.seq
        msgs = []
        for i, e in enumerate(entries):
            attrs = codec.encode_tuple(e.orig, C.CTA_TUPLE_ORIG)
            if e.zone is not None:
                attrs += codec.encode_entry(Entry(zone=e.zone))
            msgs.append((i, codec.build_message(C.CT_DELETE, C.NLM_F_REQUEST,
                                                (base + 1 + i) & 0xFFFFFFFF,
                                                e.orig.family, attrs)))
        errs = self._batch(msgs)
        self.seq = (base + len(entries)) & 0xFFFFFFFF
        return {(s - base - 1) & 0xFFFFFFFF: e for s, e in errs.items()}

    def close(self) -> None:
        self.sock.close()


_ICMP_INVERSE = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
_ICMPV6_INVERSE = {128: 129, 129: 128, 139: 140, 140: 139}


def inverse_tuple(t: Tuple) -> Tuple:
    """The reply tuple the kernel expects for a flow without NAT (like SETUP_REPLY)."""
    r = Tuple(family=t.family, src=t.dst, dst=t.src, proto=t.proto,
              sport=t.dport, dport=t.sport, icmp_code=t.icmp_code, icmp_id=t.icmp_id)
    if t.icmp_type is not None:
        table = _ICMPV6_INVERSE if t.proto == 58 else _ICMP_INVERSE
        r.icmp_type = table.get(t.icmp_type, t.icmp_type)
    return r
