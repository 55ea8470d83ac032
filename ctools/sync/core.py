"""What every sync mode shares: parameters, events, the sequence counter, MTU packing,
authenticated framing and the receive path (framing checks, counters, hardening guard).

A mode subclass implements the mode's rules in ``_on_message`` / ``_transmit_round`` /
``_on_timer``; this module never does I/O and never reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ctools.model import Entry, Expect
from ctools.sync import wire
from ctools.sync.auth import AuthFramer, AuthVerifier
from ctools.sync.guard import ReceiveGuard
from ctools.sync.stats import SyncStats

# Bytes of IP + transport header the C daemon subtracts from the MTU (§1.6).
TRANSPORT_OVERHEAD = {"udp": 28, "mcast": 28, "tcp": 40}


class SyncParams:
    """Every knob of a protocol core, with the C defaults (spec §7.7).

    ``initial_seq``: first sequence number (the C daemon uses ``time()``; pass it in — the core
    reads no clock). ``None`` → ``int(now)`` at construction.
    ``auth_key``: ``None`` = C-compatible wire; bytes = authenticated frames (docs/sync-auth.md),
    then ``epoch`` must be larger than at any previous start (the daemon persists it).
    ``hardening``: reject replays, stale content and implausible sequence numbers in the
    C-compatible mode (on by default; off = the C receiver's exact acceptance rules).
    """

    __slots__ = ("mode", "transport", "mtu", "resend_queue_size", "ack_window",
                 "alive_interval", "refresh_time", "cache_timeout", "tcp_window_tracking",
                 "commit_timeout", "peer_version", "startup_resync", "initial_seq",
                 "auth_key", "epoch", "hardening", "max_seq_jump", "rebase_run", "rng",
                 "replay_memory")

    def __init__(self, mode: str = "ftfw", *, transport: str = "udp", mtu: int = 1500,
                 resend_queue_size: int = 131072, ack_window: int = 300,
                 alive_interval: float = 1.0, refresh_time: int = 60,
                 cache_timeout: int = 180, tcp_window_tracking: bool = False,
                 commit_timeout: int | None = None,
                 peer_version: tuple[int, int, int] = (1, 4, 7),
                 startup_resync: bool = False, initial_seq: int | None = None,
                 auth_key: bytes | None = None, epoch: int = 0, hardening: bool = True,
                 max_seq_jump: int = 16384, rebase_run: int = 3,
                 rng: random.Random | None = None, replay_memory: int = 65536) -> None:
        if transport not in TRANSPORT_OVERHEAD:
            raise ValueError(f"unknown transport {transport!r} (udp, mcast or tcp)")
        if ack_window < 1 or resend_queue_size < 1:
            raise ValueError("ack_window and resend_queue_size must be positive")
        if auth_key is not None and len(auth_key) < 16:
            raise ValueError("authentication key must be at least 16 bytes")
        self.mode = mode
        self.transport = transport
        self.mtu = mtu
        self.resend_queue_size = resend_queue_size
        self.ack_window = ack_window
        self.alive_interval = alive_interval
        self.refresh_time = refresh_time
        self.cache_timeout = cache_timeout
        self.tcp_window_tracking = tcp_window_tracking
        self.commit_timeout = commit_timeout
        self.peer_version = peer_version
        self.startup_resync = startup_resync
        self.initial_seq = initial_seq
        self.auth_key = auth_key
        self.epoch = epoch
        self.hardening = hardening
        self.max_seq_jump = max_seq_jump
        self.rebase_run = rebase_run
        self.rng = rng
        self.replay_memory = replay_memory

    @property
    def buffer_size(self) -> int:
        """Send buffer of one channel: MTU minus IP/transport headers (minus auth framing)."""
        size = self.mtu - TRANSPORT_OVERHEAD[self.transport]
        if self.auth_key is not None:
            size -= AuthFramer.OVERHEAD
        return size


# --------------------------------------------------------------------------------------------
# Events (returned by receive)
# --------------------------------------------------------------------------------------------

class Event:
    """Base of everything ``receive`` returns."""

    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({fields})"


class Apply(Event):
    """Apply to the external cache: ``kind`` 'new' (replace) | 'upd' (merge or insert) |
    'del' (remove); ``seq`` is its message's number.

    ``key`` identifies the flow (bytes for a conntrack, see ``wire.scan_ct_payload``; an
    ``obj_key`` tuple for an expectation). A conntrack arrives as its checked wire ``payload``
    — a cache may keep just that — and ``obj`` decodes it on first use; an expectation has
    ``payload`` None and ``obj`` set."""

    __slots__ = ("kind", "key", "payload", "seq", "_obj")

    def __init__(self, kind: str, obj: Entry | Expect | None, seq: int, key=None,
                 payload: bytes | None = None) -> None:
        self.kind = kind
        self._obj = obj
        self.seq = seq
        self.key = key if key is not None or obj is None else wire.obj_key(obj)
        self.payload = payload

    @property
    def obj(self) -> Entry | Expect:
        """The Entry (decoded from ``payload`` on first use) or the Expect."""
        if self._obj is None:
            self._obj = wire.decode_ct_payload(self.payload)
        return self._obj


class ResyncRequested(Event):
    """The core needs the whole internal cache sent: answer with ``bulk_send(objs, now)``.

    ``reason``: 'peer' (a RESYNC request arrived) or 'lost' (the peer asked for messages that
    already fell out of the resend queue: only a bulk send can repair that)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "peer") -> None:
        self.reason = reason


class PeerRestarted(Event):
    """The peer restarted (accepted HELLO, or a new authenticated epoch): its external cache is
    probably empty; a daemon may choose to ``bulk_send``."""

    __slots__ = ()


class PeerActive(Event):
    """At least one valid message arrived in this datagram (link selection, spec §6.4)."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# The shared machinery
# --------------------------------------------------------------------------------------------

class SyncMode:
    """Interface and shared machinery of the three modes (see the package docstring)."""

    mode = "?"

    def __init__(self, params: SyncParams, now: float) -> None:
        self.params = params
        self.stats = SyncStats()
        self.now = now
        self._seq = (params.initial_seq if params.initial_seq is not None else int(now)) \
            & 0xFFFFFFFF
        self._opts = wire.EncodeOptions(params.tcp_window_tracking, params.commit_timeout,
                                        params.peer_version)
        self._size = params.buffer_size
        self._buf: list[bytes] = []
        self._buflen = 0
        self._out: list[bytes] = []
        self._framer = self._verifier = None
        if params.auth_key is not None:
            self._framer = AuthFramer(params.auth_key, params.epoch)
            self._verifier = AuthVerifier(params.auth_key)
        self.guard = ReceiveGuard(params, self.stats,
                                  strict=params.hardening and params.auth_key is None)

    # -- public API -------------------------------------------------------------------------

    def local_update(self, kind: str, obj: Entry | Expect, now: float) -> None:
        """An internal-cache change to replicate: kind 'new' | 'upd' | 'del', or 'dump' (learned
        from the start-up dump: nothing is sent, ALARM schedules its refresh)."""
        raise NotImplementedError

    def bulk_send(self, objs: Iterable, now: float) -> None:
        """Send the whole internal cache (``-B``, or the answer to ResyncRequested). Items are
        objects (sent as 'new', like never-updated C cache objects) or (kind, obj) pairs."""
        self.now = now
        for item in objs:
            if isinstance(item, tuple):
                self.local_update(item[0], item[1], now)
            else:
                self.local_update("new", item, now)

    def request_resync(self, now: float) -> None:
        """Ask the peer for its whole internal cache (``-n``); ALARM: nothing (as C)."""
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Run the timers due at ``now`` (ALIVE / delayed ACK / ALARM refresh)."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """When ``tick`` is next needed (None: no timer armed)."""
        raise NotImplementedError

    def outgoing(self, now: float | None = None) -> list[bytes]:
        """Run a transmit round if anything is queued and return the datagrams to send now
        (drains them). Each is at most ``params.buffer_size - 1`` bytes (+ auth framing)."""
        if now is not None:
            self.now = now
        self._transmit_round()
        self._flush()
        out, self._out = self._out, []
        return out

    def receive(self, datagram: bytes, now: float, peer_ok: bool = True) -> list:
        """Process one datagram (or one complete chunk of a stream) from the peer.

        ``peer_ok=False`` (wrong source address/interface, decided by the daemon) counts
        ``wrong_peer`` and drops it. Never raises on bad input: every rejection is counted.
        """
        self.now = now
        stats = self.stats
        if not peer_ok:
            stats.count_rejected("wrong_peer")
            return []
        stats.pkts_recv += 1
        stats.bytes_recv += len(datagram)
        events: list = []
        if self._verifier is not None:
            payload = self._verifier.open(bytes(datagram), stats)
            if payload is None:
                return events
            if self._verifier.restarted:
                self._verifier.restarted = False
                self._peer_epoch_changed(now, events)
        else:
            payload = bytes(datagram)
        valid = False
        guard = self.guard
        guard.now = now
        # each message is sliced once: the guard's datagram scan and its classification
        # hash the same bytes object (CPython caches a bytes object's hash)
        parsed: list = []
        for item in wire.split_messages(payload):
            if isinstance(item, wire.ProtocolError):
                parsed.append(item)
                continue  # split_messages stops by itself after fatal framing errors
            assert isinstance(item, tuple)  # (datagram mode never yields a pending offset)
            header, off = item
            parsed.append((header, payload[off:off + header.length]))
        if guard.strict:
            guard.scan_messages([m[1] for m in parsed if type(m) is tuple])
        for item in parsed:
            if type(item) is not tuple:
                stats.count_malformed(item.counter)
                continue
            header, msg = item
            stats.msgs_recv += 1
            if self._on_message(header, msg, now, events):
                valid = True
        if valid:
            events.insert(0, PeerActive())
        return events

    def resend_queue(self) -> list[tuple[int, str]]:
        """(seq, description) of the resend queue, oldest first (``conntrackd -s rsqueue``)."""
        return []

    @property
    def tx_queue_len(self) -> int:
        """Items waiting for transmission."""
        return 0

    # -- for subclasses ---------------------------------------------------------------------

    def _on_message(self, header: wire.Header, msg: bytes, now: float, events: list) -> bool:
        """Handle one framed message of version 1; return True when it was valid."""
        raise NotImplementedError

    def _transmit_round(self) -> None:
        """Serialise queued items into the send buffer."""

    def _peer_epoch_changed(self, now: float, events: list) -> None:
        """An authentic frame opened a newer epoch: the peer restarted."""
        self.stats.peer_restarts += 1
        events.append(PeerRestarted())
        self.guard.rebase_all()
        self.guard.started = False       # its new numbering starts fresh

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFFFFFF
        return seq

    def _emit(self, msg: bytes) -> None:
        """Pack one message into the send buffer (C rule: strict ``<``, never split)."""
        self.stats.msgs_sent += 1
        if self._buflen + len(msg) < self._size:
            self._buf.append(msg)
            self._buflen += len(msg)
            return
        self._flush()
        self._buf.append(msg)
        self._buflen = len(msg)

    def _flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._buflen = 0
        if self._framer is not None:
            data = self._framer.seal(data)
        self.stats.pkts_sent += 1
        self.stats.bytes_sent += len(data)
        self._out.append(data)

    def _stale(self, header: wire.Header, msg: bytes, v) -> bool:
        """Check a data message now (kept in ``v.decoded``) and, in strict mode, refuse it
        *before its number is accepted* if it replays content that is not the key's current
        state — unless it arrived exactly in sequence in an untainted datagram (a state that
        really went A -> B -> A). A refused message counts as lost: FT-FW NACKs it, and a
        genuine one comes back with a new number."""
        if not header.is_data:
            return False
        try:
            v.decoded = wire.scan_data(header, msg)
        except wire.ProtocolError as exc:
            v.decoded = exc
            return False
        g = self.guard
        if not g.strict or (v.cls == "in_sync" and not g.tainted):
            return False
        if g.is_stale(v.decoded[1], v):
            self.stats.count_rejected("stale_content")
            return True
        return False

    def _decode_and_apply(self, header: wire.Header, msg: bytes, events: list,
                          verdict) -> None:
        """Apply a data message whose number was accepted (unless per-key ordering vetoes).
        Conntrack payloads are only checked here: the cache decodes them when it needs to."""
        d = verdict.decoded
        if d is None:
            try:
                d = wire.scan_data(header, msg)
            except wire.ProtocolError as exc:
                d = exc
        if isinstance(d, wire.ProtocolError):
            self.stats.count_malformed(d.counter)
            return
        kind, key, payload, obj = d
        if self.guard.may_apply(key, header.seq, verdict, msg, kind):
            self.stats.applied += 1
            events.append(Apply(kind, obj, header.seq, key, payload))


def serial_before(a: int, b: int) -> bool:
    """32-bit serial arithmetic: a is before b (spec §3.2)."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def serial_after(a: int, b: int) -> bool:
    """a is after b."""
    return serial_before(b, a)


def serial_between(x: int, lo: int, hi: int) -> bool:
    """lo <= x <= hi in serial arithmetic."""
    return ((hi - lo) & 0xFFFFFFFF) >= ((x - lo) & 0xFFFFFFFF)
