"""Synchronisation mode: kernel events -> internal cache -> sync core -> links -> peer,
and peer -> sync core -> external cache (or straight into the kernel) -> commit.

Time given to the sync core is the loop's monotonic clock; the core never reads a clock.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Iterator

from ctools import sync as ctsync
from ctools._speedups import load_ctfast
from ctools.config import model as cfgm
from ctools.daemon import views
from ctools.daemon.base import Daemon, StartError
from ctools.daemon.cache import ExpectCache, InternalCache, merge_into, strip_volatile
from ctools.daemon.channel import MultiChannel, TcpChannel, make_channel
from ctools.daemon.commitfast import encode_for_create
from ctools.daemon.control import Req
from ctools.daemon.dumpfmt import dump_cache, dump_chunks, entry_text
from ctools.daemon.eventbuf import grow_event_buffer, size_event_buffer
from ctools.daemon.extcache import ExternalCache, decode_payload
from ctools.daemon.kernel import (
    DESTROY,
    NEW,
    UPDATE,
    EventSocket,
    OverrunError,
    RequestSocket,
)
from ctools.daemon.log import DaemonLog
from ctools.daemon.stats import BypassCounters, InjectCounters
from ctools.model import IPPROTO_TCP, IPS_CONFIRMED, IPS_EXPECTED, Entry, Expect, Tuple

TCP_FLAG_BE_LIBERAL = 0x08
# During an event burst the kernel socket is read before anything is transmitted (the encode
# and send are half the per-event work): the kernel drops events once its buffer is full,
# after which only a whole-table resync repairs the peer. A sustained stream still flushes
# at least this often.
FLUSH_EVERY_EVENTS = 4096
COMMIT_SLICE = 8192           # entries per loop turn: the daemon keeps serving meanwhile
_EVENT_KIND = {NEW: "new", UPDATE: "upd", DESTROY: "del"}
_TRANSPORT = {"UDP": "udp", "TCP": "tcp", "Multicast": "mcast"}


class SyncDaemon(Daemon):
    """The replication daemon (FT-FW, ALARM or NOTRACK)."""

    mode_name = "sync"

    def __init__(self, cfg: cfgm.Config, log: DaemonLog) -> None:
        super().__init__(cfg, log)
        s: cfgm.Sync = cfg.sync
        self.sconf = s
        limit = cfg.general.hash_limit
        self.internal = None if s.disable_internal_cache else InternalCache(limit)
        lifetime = s.cache_timeout if s.mode == "alarm" else None
        self.external = None if s.disable_external_cache else ExternalCache(limit, lifetime)
        self.exp_internal = ExpectCache("internal", limit)
        self.exp_external = ExpectCache("external", limit)
        self.exp_helpers = [h.lower() for h in s.expectation_helpers]
        self.bypass = BypassCounters()
        self.inject = InjectCounters()
        self.channels: MultiChannel | None = None
        self.core = None
        self.events: EventSocket | None = None
        self.inject_sock: RequestSocket | None = None
        self.commit_sock: RequestSocket | None = None
        self.commit_running = False
        self.commit_count = 0
        self.commit_seconds = 0.0
        self.purge_handle: asyncio.TimerHandle | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.resync_handle: asyncio.TimerHandle | None = None
        self.peer_heard: float | None = None     # time.monotonic() of the last valid message
        self.warned_growth = False
        self.unflushed_events = 0
        self.events_scheduled = False

    # ------------------------------------------------------------------ set-up
    def init(self) -> None:
        g = self.cfg.general
        s = self.sconf
        if not s.channels:
            raise StartError("can't open channel socket: No such file or directory",
                             "initialization failed")
        if self.internal is None:
            self.log.notice("disabling internal cache")
        if self.external is None:
            self.log.notice("disabling external cache")
        try:
            self.request_sock = RequestSocket()
            self.commit_sock = RequestSocket()
        except OSError as exc:
            raise StartError(f"can't open netlink handler: {exc.strerror}",
                             "no ctnetlink kernel support?") from None
        if self.external is None:
            self.inject_sock = RequestSocket()
        chans = []
        for i, conf in enumerate(s.channels):
            chans.append(make_channel(conf, i, s.error_queue_length))
        self.channels = MultiChannel(chans, s.default_channel_index or 0, self.log)
        for ch in chans:
            if isinstance(ch, TcpChannel):
                ch.authenticated = bool(s.authentication_key_file)
        # sockets are opened now so bind errors reach the terminal; the loop comes later
        try:
            self.channels.open()
        except OSError as exc:
            raise StartError(f"can't open channel socket: {exc.strerror or exc}",
                             "initialization failed") from None
        if g.poll_secs is None:
            self.events = EventSocket(reliable=g.netlink_events_reliable,
                                      expectations=s.expectation_sync)
            if g.filter is not None:
                self.log.notice("using kernel-space event filtering"
                                if g.filter.from_kernelspace else
                                "using user-space event filtering")
            size_event_buffer(self)
            self.events.ignore_port(self.commit_sock.portid)
            if g.netlink_events_reliable:
                self.log.notice("reliable ctnetlink event delivery is ENABLED.")
        else:
            self.log.notice("running in polling mode")
        # initial kernel dump into the internal cache (sends nothing)
        if self.internal is not None:
            now = time.monotonic()
            for e in self.request_sock.dump():
                if self.filter.accepts(e):
                    self.internal.add(strip_volatile(e), now)
            if s.expectation_sync:
                for x in self.request_sock.dump(expectations=True):
                    if self.exp_accepts(x):
                        self.exp_internal.add(_strip_exp(x), now)
        self.core = ctsync.make_sync(self._params(), time.monotonic())

    def _params(self) -> ctsync.SyncParams:
        s = self.sconf
        active = self.channels.active
        key = self._auth_key()
        return ctsync.SyncParams(
            s.mode,
            transport=_TRANSPORT.get(s.transport, "udp"),
            mtu=active.mtu_payload() + active.header_overhead,
            resend_queue_size=s.resend_queue_size,
            ack_window=s.ack_window_size,
            refresh_time=s.refresh_time,
            cache_timeout=s.cache_timeout,
            tcp_window_tracking=s.tcp_window_tracking,
            commit_timeout=s.commit_timeout or None,
            startup_resync=s.startup_resync,
            initial_seq=int(time.time()) & 0xFFFFFFFF,
            auth_key=key,
            epoch=self._next_epoch() if key is not None else 0,
            # a sender cannot have more in flight than its resend queue holds: gaps up to
            # that size are real loss (a burst overflowing our socket), not forgeries
            max_seq_jump=max(16384, s.resend_queue_size),
        )

    def _auth_key(self) -> bytes | None:
        path = self.sconf.authentication_key_file
        if not path:
            return None
        with open(path, "rb") as fh:
            key = fh.read().strip()
        if not key:
            raise OSError(errno.EINVAL, f"authentication key file `{path}' is empty")
        return key

    def _next_epoch(self) -> int:
        """Epoch persisted next to the key file; it grows on every start."""
        path = self.sconf.authentication_key_file + ".epoch"
        try:
            with open(path) as fh:
                epoch = int(fh.read().strip() or 0) + 1
        except (OSError, ValueError):
            epoch = max(1, int(time.time()))
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{epoch}\n")
        os.replace(tmp, path)
        return epoch

    async def start(self) -> None:
        loop = self.loop
        self.channels.attach(loop, self._on_receive)
        if self.events is not None:
            loop.add_reader(self.events.fileno(), self._on_events)
        else:
            loop.call_later(self.cfg.general.poll_secs, self._poll)
        loop.call_later(1.0, self._link_watch)
        if self.external is not None and self.external.lifetime is not None:
            loop.call_later(1.0, self._expire)
        if self.sconf.startup_resync and self.sconf.mode != "alarm":
            self.log.notice("resync requested")
            self.core.request_resync(loop.time())
        if self.sconf.mode == "alarm" and self.internal is not None:
            now = loop.time()
            for obj in self.internal:
                self.core.local_update("dump", obj.entry, now)
        self._flush()

    def shutdown(self) -> None:
        if self.channels is not None:
            self.channels.close()
        for sock in (self.events, self.request_sock, self.commit_sock, self.inject_sock):
            if sock is not None:
                sock.close()

    # ------------------------------------------------------------------ the core's clock
    def _flush(self) -> None:
        """Send what the core produced and re-arm its timer."""
        core = self.core
        send = self.channels.send
        for dgram in core.outgoing():
            send(dgram)
        deadline = core.next_deadline()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadline is not None:
            self.timer = self.loop.call_at(max(deadline, self.loop.time()), self._tick)

    def _tick(self) -> None:
        self.timer = None
        self.core.tick(self.loop.time())
        self._flush()

    # ------------------------------------------------------------------ local events
    def _on_events(self) -> None:
        """Event socket readable (or stashed events left): handle a slice of the burst."""
        self.events_scheduled = False
        events = self.events
        if events is None:
            return
        handled = 0
        while handled < FLUSH_EVERY_EVENTS:
            n = self._event_batch(events)
            if n < 0 or events.drained:
                break
            handled += max(n, 1)
        if events.drained or self.unflushed_events >= FLUSH_EVERY_EVENTS:
            self._flush_events()
        if events.stash and not self.events_scheduled:
            # the kernel's socket may be empty while the stash is not: go on next turn
            self.events_scheduled = True
            self.loop.call_soon(self._on_events)

    def _event_batch(self, events: EventSocket) -> int:
        """Read and handle one batch; the number of events, -1 on overrun or error."""
        skipped = events.skipped
        # the commit's own NEW events are not decoded: the commit itself puts the entries
        # into the internal cache afterwards (same result, a fraction of the work)
        skip = self.commit_sock.portid
        try:
            batch = events.read(self.cfg.general.event_iterations_limit, skip)
        except OverrunError:
            self._overrun()
            self._flush_events()
            return -1
        except OSError:
            self.runtime.catch_failed += 1
            self._flush_events()
            return -1
        self.runtime.events_received += events.skipped - skipped
        if not batch:
            return 0
        now = self.loop.time()
        own = self.request_sock.portid
        injected = self.inject_sock.portid if self.inject_sock is not None else -1
        accepts = self.filter.accepts
        rt = self.runtime
        for kind, e, pid in batch:
            rt.events_received += 1
            if pid == injected:
                continue            # our direct injections are not ours to replicate
            if isinstance(e, Expect):
                if pid != own:
                    self._local_expect(kind, e, now)
                continue
            if not accepts(e):
                rt.events_filtered += 1
                continue
            if pid == own:
                self._own_event(kind, e, now)
            else:
                self._local_event(kind, e, now)
        rt.events_unknown = events.unknown
        self.unflushed_events += len(batch)
        return len(batch)

    def _flush_events(self) -> None:
        if self.unflushed_events:
            self.unflushed_events = 0
            self._flush()

    def _own_event(self, kind: str, e: Entry, now: float) -> None:
        """A change we caused (commit, flush): keep the internal cache right, send nothing."""
        if self.internal is None:
            return
        strip_volatile(e)
        if kind == NEW:
            self.internal.add(e, now)
        elif kind == UPDATE:
            self.internal.update(e, now)
        else:
            if self.internal.get(e.orig) is not None:
                self.internal.delete(e)

    def _local_event(self, kind: str, e: Entry, now: float) -> None:
        strip_volatile(e)
        internal = self.internal
        if internal is None:
            if kind == NEW:
                self.bypass.new += 1
            elif kind == UPDATE:
                self.bypass.updated += 1
            else:
                self.bypass.destroyed += 1
            self.core.local_update(_EVENT_KIND[kind], e, now)
            return
        if kind == NEW:
            obj = internal.add(e, now)
            if obj is not None:
                self.core.local_update("new", obj.entry, now)
        elif kind == UPDATE:
            obj = internal.update(e, now)
            if obj is not None:
                self.core.local_update("upd", obj.entry, now)
        else:
            obj = internal.get(e.orig)
            if obj is None:
                return          # never seen (or already gone): nothing to tell the peer
            internal.delete(e)
            merge_into(obj.entry, e)
            self.core.local_update("del", obj.entry, now)

    def exp_accepts(self, x: Expect) -> bool:
        """ExpectationSync: helper name matches a configured prefix, master is known."""
        if not self.sconf.expectation_sync:
            return False
        if self.exp_helpers:
            name = (x.helper or "").lower()
            if not name or not any(name.startswith(h) for h in self.exp_helpers):
                return False
        if self.internal is not None and x.master is not None:
            return self.internal.get(x.master) is not None
        return True

    def _local_expect(self, kind: str, x: Expect, now: float) -> None:
        cache = self.exp_internal
        _strip_exp(x)
        if kind == DESTROY:
            obj = cache.get(x.tuple)
            if obj is None:
                return
            cache.delete(x)
            self.core.local_update("del", obj.entry, now)
            return
        if not self.exp_accepts(x):
            self.runtime.events_filtered += 1
            return
        obj = cache.add(x, now) if kind == NEW else cache.update(x, now)
        if obj is not None:
            self.core.local_update("new" if kind == NEW else "upd", obj.entry, now)

    def _overrun(self) -> None:
        """ENOBUFS: events were lost. Grow the buffer, and re-read the table later."""
        grow_event_buffer(self, self._overrun_resync)

    def _overrun_resync(self) -> None:
        # while events are still queued the kernel may still be dropping some silently
        # (it reports ENOBUFS once per congestion): resync only once the backlog is gone
        if self.events is not None and self.events.backlog() > 0:
            self.resync_handle = self.loop.call_later(0.5, self._overrun_resync)
            return
        self.resync_handle = None
        self.kernel_resync(send=True)
        self._flush()

    def _poll(self) -> None:
        self.kernel_resync(send=True)
        self._flush()
        self.loop.call_later(self.cfg.general.poll_secs, self._poll)

    def kernel_resync(self, send: bool, count: bool = True) -> None:
        """Merge the kernel table into the internal cache; purge what vanished.

        With ``send`` (overrun recovery, polling) what is new or changed is enqueued, and
        what vanished is sent as deleted; ``-R`` does not send. (The reference re-sends every
        entry; after an overrun of a 100k burst that doubles the work for nothing.)
        """
        if count:
            self.runtime.resync_kernel += 1
        if self.internal is None:
            return
        now = self.loop.time()
        try:
            table = [e for e in self.request_sock.dump() if self.filter.accepts(e)]
        except OSError as exc:
            self.log.error(f"can't get kernel conntrack table: {exc}")
            return
        seen = set()
        internal = self.internal
        for e in table:
            strip_volatile(e)
            key = e.orig
            seen.add(key)
            cached = internal.get(key)
            changed = cached is None or _state(cached.entry) != _state(e)
            obj = internal.update(e, now)
            if send and changed and obj is not None:
                self.core.local_update("new" if cached is None else "upd", obj.entry, now)
        for obj in internal:
            key = obj.entry.orig
            if key not in seen:
                internal.delete(key)
                if send:
                    self.core.local_update("del", obj.entry, now)

    # ------------------------------------------------------------------ peer messages
    def _peer_ok(self, ch, src) -> bool:
        """Only the configured peer, on the configured interface (the channel marks a
        datagram that arrived elsewhere)."""
        if src is None:
            return True
        if src[0] == "wrong-interface":
            return False
        dest = getattr(ch.conf, "destination", None)
        if dest is None:
            return True         # multicast: no peer address configured
        return src[0].split("%")[0] == dest

    def _on_receive(self, ch, data: bytes, src=None) -> None:
        now = self.loop.time()
        core = self.core
        events = core.receive(data, now, peer_ok=self._peer_ok(ch, src))
        for ev in events:
            if isinstance(ev, ctsync.Apply):
                self._apply(ev, now)
            elif isinstance(ev, ctsync.PeerActive):
                self.channels.follow(ch)
                self.peer_heard = time.monotonic()
            elif isinstance(ev, ctsync.ResyncRequested):
                self.log.notice("resync requested by other node")
                self._bulk(now)
        self._flush()

    def _bulk(self, now: float) -> None:
        self.log.notice("sending bulk update")
        if self.internal is not None:
            objs = [o.entry for o in self.internal]
        else:
            try:
                objs = [strip_volatile(e) for e in self.request_sock.dump()
                        if self.filter.accepts(e)]
            except OSError:
                objs = []
        objs += [o.entry for o in self.exp_internal]
        self.core.bulk_send(objs, now)

    def _apply(self, ev: ctsync.Apply, now: float) -> None:
        kind = ev.kind
        if ev.payload is None:
            self._apply_expect(kind, ev.obj, now)
            return
        ext = self.external
        if ext is None:
            self._inject(kind, ev.obj)
            return
        if kind == "new":
            ext.add(ev.key, ev.payload, now)
        elif kind == "upd":
            ext.update(ev.key, ev.payload, now)
        elif ext.get(ev.key) is None:
            ext.counters.del_not_found += 1
        else:
            ext.delete(ev.key)

    def _apply_expect(self, kind: str, x: Expect, now: float) -> None:
        if x.tuple is None:
            return
        if kind == "new":
            self.exp_external.add(x, now)
        elif kind == "upd":
            self.exp_external.update(x, now)
        elif self.exp_external.get(x.tuple) is not None:
            self.exp_external.delete(x)

    def _inject(self, kind: str, e: Entry) -> None:
        """DisableExternalCache: write the peer's change straight into our kernel."""
        sock = self.inject_sock
        c = self.inject
        if kind == "del":
            err = sock.delete([e])
            if err and err.get(0) != errno.ENOENT:
                c.destroy_failed += 1
            else:
                c.destroyed += 1
            return
        prepared = e
        self._prepare(e, None)
        if kind == "upd":
            if not sock.update([prepared]):
                c.updated += 1
            elif self._create_replacing(sock, prepared):
                c.update_failed += 1
            else:
                c.updated += 1
            return
        if self._create_replacing(sock, prepared):
            c.create_failed += 1
        else:
            c.created += 1

    @staticmethod
    def _create_replacing(sock, prepared) -> dict:
        """Create the entry, replacing a clashing one (EEXIST); returns the errors."""
        err = sock.create([prepared], encode_for_create)
        if err.get(0) == errno.EEXIST:
            sock.delete([prepared])
            err = sock.create([prepared], encode_for_create)
        return err

    # ------------------------------------------------------------------ timers
    def _link_watch(self) -> None:
        self.channels.check_links()
        self.loop.call_later(1.0, self._link_watch)

    def _expire(self) -> None:
        self.external.expire(self.loop.time())
        self.loop.call_later(1.0, self._expire)

    # ------------------------------------------------------------------ requests
    def handle_mode(self, code: int):
        now = self.loop.time()
        if code == Req.STATS:
            return self.view_stats()
        if code == Req.EXP_STATS:
            return self.view_exp_stats() if self.sconf.expectation_sync else None
        if code == Req.STATS_NETWORK:
            return self.view_network()
        if code == Req.STATS_CACHE:
            return self.view_cache()
        if code == Req.STATS_LINK:
            return self.view_links()
        if code == Req.STATS_RSQUEUE:
            return self.view_rsqueue()
        if code == Req.STATS_QUEUE:
            return self.view_queue()
        if code in (Req.CT_DUMP_INTERNAL, Req.CT_DUMP_INT_XML):
            return self.dump_internal(xml=code == Req.CT_DUMP_INT_XML)
        if code in (Req.CT_DUMP_EXTERNAL, Req.CT_DUMP_EXT_XML):
            return self.dump_external(xml=code == Req.CT_DUMP_EXT_XML)
        if code in (Req.EXP_DUMP_INTERNAL, Req.EXP_DUMP_INT_XML):
            return self._dump_exp(self.exp_internal, now, code == Req.EXP_DUMP_INT_XML)
        if code in (Req.EXP_DUMP_EXTERNAL, Req.EXP_DUMP_EXT_XML):
            return self._dump_exp(self.exp_external, now, code == Req.EXP_DUMP_EXT_XML)
        if code in (Req.ALL_COMMIT, Req.CT_COMMIT, Req.EXP_COMMIT):
            return self.commit(code)
        if code in (Req.ALL_FLUSH_CACHE, Req.CT_FLUSH_CACHE):
            if self.commit_running:
                self.log.error("ignoring flush command, commit still in progress")
                return None
            self.log.notice("flushing caches")
            self._cancel_purge()
            for cache in (self.internal, self.external):
                if cache is not None:
                    cache.flush()
            self.exp_internal.flush()
            self.exp_external.flush()
            return None
        if code == Req.CT_FLUSH_INT_CACHE:
            self.log.notice("flushing internal cache")
            self._cancel_purge()
            if self.internal is not None:
                self.internal.flush()
            return None
        if code == Req.CT_FLUSH_EXT_CACHE:
            if self.commit_running:
                self.log.error("ignoring flush command, commit still in progress")
                return None
            self.log.notice("flushing external cache")
            self._cancel_purge()
            if self.external is not None:
                self.external.flush()
            return None
        if code in (Req.ALL_FLUSH_MASTER, Req.CT_FLUSH_MASTER):
            self.log.notice("flushing kernel conntrack table")
            self.runtime.flush_kernel += 1
            self.flush_kernel()
            return None
        if code == Req.EXP_FLUSH_MASTER:
            if self.sconf.expectation_sync:
                self.log.notice("flushing kernel expect table")
            return None
        if code in (Req.ALL_RESYNC_MASTER, Req.CT_RESYNC_MASTER):
            if self.internal is None:
                self.log.notice("resync is unsupported in this mode")
                return None
            self.log.notice("resync with master conntrack table")
            self.kernel_resync(send=False)
            return None
        if code == Req.EXP_RESYNC_MASTER:
            if self.sconf.expectation_sync:
                self.log.notice("resync with master expect table")
            return None
        if code == Req.REQUEST_DUMP:
            if self.sconf.mode == "alarm":
                return None
            self.log.notice("resync requested")
            self.core.request_resync(now)
            self._flush()
            return None
        if code == Req.SEND_BULK:
            if self.sconf.mode == "alarm":
                return None
            self._bulk(now)
            self._flush()
            return None
        if code == Req.RESET_TIMERS:
            if self.purge_handle is None:
                secs = self.sconf.purge_timeout
                self.log.notice(f"flushing conntrack table in {secs} secs")
                self.purge_handle = self.loop.call_later(secs, self._scheduled_purge)
            return None
        self.runtime.local_unknown += 1
        return None

    def _cancel_purge(self) -> None:
        if self.purge_handle is not None:
            self.purge_handle.cancel()
            self.purge_handle = None

    def _scheduled_purge(self) -> None:
        self.purge_handle = None
        self.log.notice("flushing kernel conntrack table (scheduled)")
        self.runtime.flush_kernel += 1
        self.flush_kernel()
        if self.internal is not None:
            self.internal.flush()

    # ------------------------------------------------------------------ commit
    def _commit_expectations(self) -> None:
        items = []
        saved = []
        for o in self.exp_external:
            x = o.entry
            saved.append((x, x.timeout, x.id))
            if self.sconf.commit_timeout:
                x.timeout = self.sconf.commit_timeout
            elif x.timeout is None:
                x.timeout = 60
            x.id = None
            items.append(x)
        try:
            errs = self.commit_sock.create_expect(items)
        finally:
            for x, timeout, ident in saved:
                x.timeout, x.id = timeout, ident
        self.log.notice(f"Committed {len(items) - len(errs)} new expectations")
        if errs:
            self.log.notice(f"{len(errs)} expectations can't be committed")

    async def _commit(self, code: int) -> None:
        if code == Req.EXP_COMMIT:
            self.log.notice("committing expectation cache")
            started = time.monotonic()
            self._cancel_purge()
            self._commit_expectations()
            self._log_took(time.monotonic() - started)
            return
        self.log.notice("committing all external caches" if code == Req.ALL_COMMIT
                        else "committing conntrack cache")
        self._cancel_purge()
        if self.external is None:
            return
        started = time.monotonic()
        now = self.loop.time()
        records = list(self.external)
        ok = failed = 0
        expected = []       # flows that had a master: created after every master is in
        s = self.sconf
        fast = _c_commit_attrs
        liberal = not s.tcp_window_tracking
        commit_timeout = s.commit_timeout or 0
        for i in range(0, len(records), COMMIT_SLICE):
            chunk = []
            for o in records[i:i + COMMIT_SLICE]:
                age = now - o.last
                attrs = fast(o.payload, age, commit_timeout, liberal) \
                    if fast is not None else None
                if attrs is not None:
                    chunk.append(_Prebuilt(o.payload, age, attrs))
                    continue
                e = o.entry
                self._prepare(e, age)
                (chunk if e.master is None else expected).append(e)
            failed += self._create_chunk(chunk)
            ok += len(chunk)
            await asyncio.sleep(0)
        for i in range(0, len(expected), COMMIT_SLICE):
            chunk = expected[i:i + COMMIT_SLICE]
            failed += self._create_chunk(chunk)
            ok += len(chunk)
            await asyncio.sleep(0)
        ok -= failed
        if self.internal is not None:
            # the committed flows belong in the internal cache too (their events were
            # dropped in the kernel): learn them from one dump once the client is answered
            # (a little later, so that the waiting client's connection is closed first)
            self.loop.call_later(0.2, self.kernel_resync, False, False)
        took = time.monotonic() - started
        self.commit_count += 1
        self.commit_seconds = took
        self.log.notice(f"Committed {ok} new entries")
        if failed:
            self.log.notice(f"{failed} entries can't be committed")
        if code == Req.ALL_COMMIT and self.sconf.expectation_sync:
            # masters are in the kernel now: their expectations can follow
            self._commit_expectations()
            took = time.monotonic() - started
        self._log_took(took)

    def _prepare(self, e: Entry, age: float | None) -> None:
        s = self.sconf
        _prepare_in_place(e, age, s.commit_timeout, not s.tcp_window_tracking)

    def _create_chunk(self, chunk: list) -> int:
        """Create prepared entries (or ``_Prebuilt`` ones) in the kernel, replacing clashing
        ones; the number of failures."""
        if not chunk:
            return 0
        sock = self.commit_sock
        errs = sock.create(chunk, _encode_for_commit)
        if not errs:
            return 0
        for j in errs:
            if type(chunk[j]) is _Prebuilt:      # the rare failure gets the full path
                chunk[j] = chunk[j].entry(self)
        retry = [chunk[j] for j, err in errs.items() if err == errno.EEXIST]
        failed = len(errs) - len(retry)
        if retry:
            sock.delete(retry)
            failed += len(sock.create(retry, encode_for_create))
        for j, err in errs.items():
            if err != errno.EEXIST:
                self.log.error(f"commit-create: {os.strerror(err)}")
                self.log.entry(entry_text(chunk[j]))
        return failed

    def _log_took(self, took: float) -> None:
        secs = int(took)
        self.log.notice(f"commit has taken {secs}.{int((took - secs) * 1e6):06d} seconds")

    def commit(self, code: int):
        if self.commit_running:
            self.log.notice("commit already in progress, skipping")
            return None

        async def run() -> None:
            self.commit_running = True
            try:
                await self._commit(code)
            finally:
                self.commit_running = False
        return run()

    # ------------------------------------------------------------------ views
    def _active_link(self) -> str:
        ch = self.channels.active
        if isinstance(ch, TcpChannel):
            return views.active_link_block("TCP", ch.device, ch.counters,
                                           ch.server_connected, ch.client_connected)
        return views.active_link_block(ch.transport, ch.device, ch.counters)

    def view_stats(self) -> str:
        out = []
        if self.internal is None:
            out.append(views.bypass_block(self.bypass))
        else:
            out.append(views.cache_block("internal", len(self.internal), self.internal.counters))
        if self.external is None:
            out.append(views.inject_block(self.inject))
        else:
            out.append(views.cache_block("external", len(self.external), self.external.counters))
        out.append(views.traffic_block(0, 0))
        out.append(self._active_link())
        st = self.core.stats
        out.append(views.message_tracking(st.malformed, st.seq_lost))
        return "".join(out)

    def view_network(self) -> str:
        st = self.core.stats
        return views.network_block(st.malformed, st.bad_version, st.bad_header, st.bad_payload,
                                   st.bad_type, st.truncated, st.bad_size, st.send_malformed,
                                   st.seq_lost, st.seq_before) + self._active_link()

    def view_cache(self) -> str:
        out = []
        for cache in (self.internal, self.external):
            if cache is None:
                continue
            n = len(cache)
            out.append(views.cache_extended(cache.name, n, n, n, cache.counters))
        if self.internal is None:
            out.insert(0, views.bypass_block(self.bypass))
        if self.external is None:
            out.append(views.inject_block(self.inject))
        return "".join(out)

    def view_links(self) -> str:
        return "".join(views.link_block(ch.transport, ch.device, ch.status(),
                                        ch is self.channels.active, ch.counters)
                       for ch in self.channels.channels)

    def rsqueue_items(self) -> list[tuple[int, str]]:
        return list(self.core.resend_queue())

    def view_rsqueue(self) -> str | None:
        if self.sconf.mode != "ftfw":
            return None
        items = []
        for seq, what in self.rsqueue_items():
            if what.startswith("control flags:"):
                flags = int(what.split(":", 1)[1].split()[0], 0)
                items.append(("control", seq, flags))
            else:
                items.append(("object", seq, 0))
        return views.rsqueue_block(items)

    def _queue_depths(self) -> tuple[int, int]:
        return self.core.tx_queue_len, len(self.rsqueue_items())

    def view_queue(self) -> str:
        tx, rs = self._queue_depths()
        errq = 0
        for ch in self.channels.channels:
            if isinstance(ch, TcpChannel):
                errq += len(ch.errorq)
        queues = [("txqueue", tx, 2147483647, 0),
                  ("errorq", errq, self.sconf.error_queue_length, 0)]
        if self.sconf.mode == "ftfw":
            queues.append(("rsqueue", rs, self.sconf.resend_queue_size, 0))
        return views.queue_block(tx + errq + rs, queues)

    def dump_internal(self, xml: bool) -> str | Iterator[str]:
        if self.internal is None:
            # no cache: show the live kernel table, timeout and use included
            from ctools.format.text import format_entry
            from ctools.format.xml import format_entry_xml

            fmt = format_entry_xml if xml else format_entry
            return "".join(fmt(e) for e in self.request_sock.dump() if self.filter.accepts(e))
        return self._dump(self.internal, xml, expiry=False)

    def dump_external(self, xml: bool) -> str | Iterator[str]:
        if self.external is None:
            return ""
        return self._dump(self.external, xml, expiry=self.external.lifetime is not None)

    def _dump(self, cache, xml: bool, expiry: bool) -> Iterator[str]:
        # made chunk by chunk as the control server sends them: a 100k-flow dump never
        # exists whole (docs/compat-daemon.md: a dump is not one atomic snapshot)
        return dump_chunks(cache, self.loop.time(), xml, expiry)

    def _dump_exp(self, cache: ExpectCache, now: float, xml: bool) -> str:
        if not self.sconf.expectation_sync:
            return ""
        return dump_cache(cache, now, xml, False)

    def view_exp_stats(self) -> str:
        st = self.core.stats
        return (views.cache_block("internal", len(self.exp_internal),
                                  self.exp_internal.counters)
                + views.cache_block("external", len(self.exp_external),
                                    self.exp_external.counters)
                + views.traffic_block(0, 0) + self._active_link()
                + views.message_tracking(st.malformed, st.seq_lost))

    # ------------------------------------------------------------------ health
    def peer_silence(self) -> float | None:
        """Seconds since a valid message from the peer (None: never)."""
        if self.peer_heard is None:
            return None
        return time.monotonic() - self.peer_heard

    def default_max_silence(self) -> float:
        """Three keep-alive periods (ALARM: three refresh periods)."""
        if self.sconf.mode == "alarm":
            return 3.0 * self.sconf.refresh_time
        return 3.0


_c_commit_attrs = getattr(load_ctfast(), "commit_attrs", None)
_IPV4 = Tuple(family=socket.AF_INET)


class _Prebuilt:
    """A cached flow whose create attributes the C accelerator built (commit_attrs): what
    ``RequestSocket.create`` needs of an entry (its family and encoded attributes)."""

    __slots__ = ("payload", "age", "attrs")
    orig = _IPV4            # commit_attrs only takes IPv4 flows

    def __init__(self, payload: bytes, age: float, attrs: bytes) -> None:
        self.payload = payload
        self.age = age
        self.attrs = attrs

    def entry(self, daemon: SyncDaemon) -> Entry:
        """The prepared Entry of the general path (error reports, EEXIST retries)."""
        e = decode_payload(self.payload)
        daemon._prepare(e, self.age)
        return e


def _encode_for_commit(e) -> bytes:
    return e.attrs if type(e) is _Prebuilt else encode_for_create(e)


def _strip_exp(x: Expect) -> Expect:
    """Expectations keep no kernel id in the caches (it is the sender's, not ours)."""
    x.id = None
    return x


_STATE_FIELDS = ("status", "tcp_state", "mark", "labels", "helper", "tcp_wscale_orig",
                 "tcp_wscale_reply", "sctp_state", "dccp_state", "secmark", "zone")


def _state(e: Entry) -> tuple:
    """What a peer must hear about when it changes (the timeout alone does not count)."""
    return tuple(getattr(e, name) for name in _STATE_FIELDS)


def _prepare_in_place(e: Entry, age: float | None, commit_timeout: int,
                      liberal: bool) -> None:
    """Make a peer's entry ready to create in our kernel (spec sync-protocol §7.4); ``e`` is
    a fresh copy (decoded from the cache or straight from the wire), changed in place."""
    if commit_timeout:
        e.timeout = commit_timeout
    elif age is not None:
        left = (e.timeout or 0) - int(age)
        e.timeout = left if left > 0 else 60
    elif e.timeout is None:
        e.timeout = 60
    # this kernel refuses to create an entry without CONFIRMED; EXPECTED is not ours to set
    e.status = ((e.status or 0) | IPS_CONFIRMED) & ~IPS_EXPECTED
    # a missing reply tuple is created by the encoder (inverse of the original tuple)
    if liberal and e.orig.proto == IPPROTO_TCP:
        e.tcp_flags_orig = (TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL)
        e.tcp_flags_reply = (TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL)
    e.id = None
    e.use = None
    if e.synproxy == (0, 0, 0):
        e.synproxy = None
