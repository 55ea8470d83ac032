"""ctools.sync — the conntrackd replication protocol as a pure (sans-IO) state machine.

Nothing in this package opens a socket, reads a clock or touches asyncio. The caller (the
daemon, the simulator, a fuzzer) feeds datagrams and timer ticks in and takes datagrams and
cache events out; time is always a parameter (``now``, float seconds, any monotonic origin).

Public API::

    from ctools.sync import ProtocolError   # the ONE error type raised by the wire decoder
    from ctools.sync import wire            # headers, control messages, CT/EXP TLVs <-> Entry/Expect
    from ctools.sync import SyncParams, make_sync, SyncStats, StreamDecoder
    from ctools.sync import Apply, ResyncRequested, PeerRestarted, PeerActive

    params = SyncParams(mode="ftfw", mtu=1500, transport="udp", initial_seq=int(time.time()))
    core = make_sync(params, now)           # FtfwSync | AlarmSync | NotrackSync

    core.local_update("new"|"upd"|"del"|"dump", obj, now)   # internal-cache change
    core.bulk_send(objs, now)               # -B, or the answer to ResyncRequested
    core.request_resync(now)                # -n
    events = core.receive(datagram, now, peer_ok=True)      # never raises on bad input
    core.tick(now)                          # timers: ALIVE / delayed ACK / ALARM refresh
    core.next_deadline()                    # when tick() is next needed (None = no timer)
    for dgram in core.outgoing(): sock.send(dgram)          # drains the send buffer
    core.stats                              # SyncStats counters (conntrackd -s views + ours)

Ownership: the caller owns both caches. The core keeps *references* to the objects handed to
``local_update`` while they are queued (FT-FW tx/resend queues, ALARM refresh timers) and
serialises them at transmit time, like the C daemon; it never copies or mutates them. When the
core needs the whole internal cache (peer RESYNC, or a NACK for messages that already fell out
of the resend queue) it returns a :class:`ResyncRequested` event and the caller answers with
``bulk_send(its internal cache objects, now)``.

Events returned by ``receive``: :class:`Apply` (kind 'new'|'upd'|'del', an Entry or Expect) for
the external cache, in wire order; :class:`ResyncRequested`; :class:`PeerRestarted` (an accepted
HELLO or authenticated epoch change); :class:`PeerActive` (at least one valid message in this
datagram — the daemon uses it to follow the peer's choice of link, spec §6.4).

Bad input is never an exception out of ``receive``: every malformed message is counted in
``stats`` (C-compatible counters plus ours: wrong peer, replay, stale, implausible sequence,
authentication failure).

Authenticated sync (all-ctools clusters): ``SyncParams(auth_key=b"...", epoch=N)`` wraps every
datagram in an HMAC-SHA256 frame with an (epoch, counter) replay guard; see ``auth.py`` and
docs/sync-auth.md. ``epoch`` must grow across restarts — the daemon persists it. Over TCP use
``StreamDecoder(authenticated=True)``.

Hardening of the C-compatible receiver (``guard.py``, on by default, ``hardening=False`` gives
the C rules exactly): exact replays, stale content, implausible sequence numbers
(``max_seq_jump``), re-base on a confirmed run (``rebase_run``), in-order hole filling,
per-key ordering. Deliberate differences from the C daemon: docs/compat-sync.md.

Introspection for ``conntrackd -s``: ``stats`` (SyncStats), ``resend_queue()`` (seq,
description) pairs, ``tx_queue_len``; FT-FW also ``hello_state``.

Modules: ``wire`` (codec, declared as data), ``core`` (params, events, shared machinery),
``ftfw``/``alarm``/``notrack`` (one class per mode), ``guard`` (receive-side sequence state),
``queues``, ``auth``, ``stream``, ``stats``, and ``pair`` (two cores on an in-memory seeded
lossy link with a virtual clock, for tests and experiments).
"""

from __future__ import annotations

from ctools.sync import wire
from ctools.sync.core import (
    Apply,
    Event,
    PeerActive,
    PeerRestarted,
    ResyncRequested,
    SyncMode,
    SyncParams,
)
from ctools.sync.stats import SyncStats
from ctools.sync.stream import StreamDecoder
from ctools.sync.wire import ProtocolError


def make_sync(params: SyncParams, now: float) -> SyncMode:
    """Build the protocol core for ``params.mode`` ('ftfw' | 'alarm' | 'notrack')."""
    from ctools.sync.alarm import AlarmSync
    from ctools.sync.ftfw import FtfwSync
    from ctools.sync.notrack import NotrackSync

    cls = {"ftfw": FtfwSync, "alarm": AlarmSync, "notrack": NotrackSync}.get(params.mode)
    if cls is None:
        raise ValueError(f"unknown sync mode {params.mode!r} (ftfw, alarm or notrack)")
    return cls(params, now)


__all__ = [
    "Apply", "Event", "PeerActive", "PeerRestarted", "ProtocolError", "ResyncRequested",
    "StreamDecoder", "SyncMode", "SyncParams", "SyncStats", "make_sync", "wire",
]
