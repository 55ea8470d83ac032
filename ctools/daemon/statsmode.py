"""Statistics mode (a ``Stats`` section): a cache of live flows and a log of ended ones.

A flow ends when its DESTROY event arrives or, when that event was never seen (polling
mode, lost events after a netlink overrun), when a resync finds it gone from the kernel
table: then it is *purged* -- dropped from the cache and logged as it was cached.
"""

from __future__ import annotations

import time

from ctools.config import model as cfgm
from ctools.daemon import views
from ctools.daemon.base import Daemon
from ctools.daemon.cache import InternalCache, full_reply, strip_volatile
from ctools.daemon.control import Req
from ctools.daemon.dumpfmt import dump_chunks, entry_text
from ctools.daemon.eventbuf import grow_event_buffer, size_event_buffer
from ctools.daemon.kernel import DESTROY, NEW, EventSocket, OverrunError, RequestSocket
from ctools.daemon.log import DaemonLog, ctime
from ctools.daemon.stats import TrafficCounters
from ctools.model import Entry

_FACILITIES = {"daemon": 3 << 3, **{f"local{i}": (16 + i) << 3 for i in range(8)}}


class StatsDaemon(Daemon):
    """Flow-statistics daemon: every ended flow is written to the Stats LogFile."""

    mode_name = "stats"

    def __init__(self, cfg: cfgm.Config, log: DaemonLog) -> None:
        super().__init__(cfg, log)
        self.cache = InternalCache(cfg.general.hash_limit, name="stats")
        self.traffic = TrafficCounters()
        self.events: EventSocket | None = None
        self.flow_log = None
        self.flow_syslog = False
        self.resync_handle = None       # pending overrun resync (asyncio.TimerHandle)
        self.warned_growth = False

    def init(self) -> None:
        st = self.cfg.stats
        if st.log_file:
            self.flow_log = open(st.log_file, "a", buffering=1)  # noqa: SIM115
        if st.syslog_facility:
            import syslog

            syslog.openlog("conntrack-tools", syslog.LOG_PID,
                           _FACILITIES.get(st.syslog_facility, _FACILITIES["daemon"]))
            self.flow_syslog = True
        g = self.cfg.general
        self.request_sock = RequestSocket()
        if g.poll_secs is not None:
            # no event subscription at all: the table is re-read every PollSecs
            self.log.notice("running in polling mode")
            self._load()
            return
        self.events = EventSocket(reliable=g.netlink_events_reliable)
        if g.filter is not None:
            self.log.notice("using kernel-space event filtering" if g.filter.from_kernelspace
                            else "using user-space event filtering")
        size_event_buffer(self)
        self._load()

    def _load(self) -> None:
        now = time.monotonic()
        for e in self.request_sock.dump():
            if self.filter.accepts(e):
                self.cache.update(strip_volatile(e), now)

    async def start(self) -> None:
        if self.events is not None:
            self.loop.add_reader(self.events.fileno(), self._on_events)
        else:
            self.loop.call_later(self.cfg.general.poll_secs, self._poll)

    def shutdown(self) -> None:
        for sock in (self.events, self.request_sock):
            if sock is not None:
                sock.close()
        if self.flow_log is not None:
            self.flow_log.close()

    def _on_events(self) -> None:
        self.events_scheduled = False
        try:
            batch = self.events.read(self.cfg.general.event_iterations_limit)
        except OverrunError:
            self._overrun()
            batch = []
        if self.events.stash and not self.events_scheduled:
            # events received into the stash but not decoded yet: the socket may stay quiet
            self.events_scheduled = True
            self.loop.call_soon(self._on_events)
        now = time.monotonic()
        for kind, e, _pid in batch:
            self.runtime.events_received += 1
            if not self.filter.accepts(e):
                self.runtime.events_filtered += 1
                continue
            if kind == DESTROY:
                self._ended(e)
            elif kind == NEW:
                self.cache.add(strip_volatile(e), now)
            else:
                self.cache.update(strip_volatile(e), now)

    def _ended(self, e: Entry) -> None:
        if self.cache.get(e.orig) is None:
            self.cache.counters.destroy_failed += 1
            return
        self.cache.delete(e)
        self.traffic.bytes += (e.orig_bytes or 0) + (e.reply_bytes or 0)
        self.traffic.packets += (e.orig_packets or 0) + (e.reply_packets or 0)
        e.use = None
        e.id = None
        self._log_flow(entry_text(e))

    def _log_flow(self, text: str) -> None:
        if self.flow_log is not None:
            try:
                self.flow_log.write(f"{ctime()}\t{text}\n")
            except OSError:
                pass
        if self.flow_syslog:
            import syslog

            syslog.syslog(syslog.LOG_INFO, text)

    # ---- periodic work: polling, and recovery from lost events
    def _poll(self) -> None:
        self.resync(purge=True)
        self.loop.call_later(self.cfg.general.poll_secs, self._poll)

    def _overrun(self) -> None:
        """ENOBUFS: events were lost. Grow the buffer, and re-read the table later."""
        grow_event_buffer(self, self._overrun_resync)

    def _overrun_resync(self) -> None:
        # events still queued predate the resync: a stale NEW read after the purge would
        # bring back a flow that is gone, so wait until the backlog is read
        if self.events is not None and (self.events.backlog() > 0 or self.events.stash):
            self.resync_handle = self.loop.call_later(0.5, self._overrun_resync)
            return
        self.resync_handle = None
        self.runtime.resync_kernel += 1
        self.resync(purge=True)

    def resync(self, purge: bool) -> int:
        """Merge the kernel table (after the Filter) into the cache; with ``purge`` also end
        every cached flow the table no longer holds. Returns how many were purged.

        One dump serves both halves (the reference asks the kernel about each cached flow
        separately), so they see the same instant of the table.
        """
        try:
            table = [e for e in self.request_sock.dump() if self.filter.accepts(e)]
        except OSError as exc:
            self.log.error(f"can't get kernel conntrack table: {exc.strerror or exc}")
            return 0
        now = time.monotonic()
        cache = self.cache
        purged = 0
        if purge:
            alive = {e.orig for e in table}
            for obj in cache:
                key = obj.entry.orig
                if key in alive:
                    continue
                cache.delete(key)
                purged += 1
                self._log_flow(_cached_text(obj.entry))
        for e in table:
            cache.update(strip_volatile(e), now)
        return purged

    def handle_mode(self, code: int):
        if code == Req.STATS:
            return (views.cache_block("stats", len(self.cache), self.cache.counters)
                    + views.traffic_block(self.traffic.bytes, self.traffic.packets))
        if code == Req.STATS_CACHE:
            n = len(self.cache)
            return views.cache_extended("stats", n, n, n, self.cache.counters)
        if code in (Req.CT_DUMP_INTERNAL, Req.CT_DUMP_INT_XML):
            return dump_chunks(self.cache, time.monotonic(), code == Req.CT_DUMP_INT_XML, False)
        if code == Req.CT_FLUSH_INT_CACHE:
            self.log.notice("flushing caches")
            self.cache.flush()
            return None
        if code in (Req.ALL_FLUSH_MASTER, Req.CT_FLUSH_MASTER):
            self.log.notice("flushing kernel conntrack table")
            self.runtime.flush_kernel += 1
            self.flush_kernel()
            return None
        if code in (Req.ALL_RESYNC_MASTER, Req.CT_RESYNC_MASTER):
            self.log.notice("resync with master conntrack table")
            self.runtime.resync_kernel += 1
            self._load()        # (no purge, as the reference's -R)
            return None
        if code in (Req.STATS_NETWORK, Req.STATS_LINK, Req.STATS_RSQUEUE, Req.STATS_QUEUE,
                    Req.EXP_STATS, Req.ALL_FLUSH_CACHE, Req.CT_FLUSH_EXT_CACHE,
                    Req.CT_DUMP_EXTERNAL, Req.CT_DUMP_EXT_XML, Req.EXP_DUMP_INTERNAL,
                    Req.EXP_DUMP_EXTERNAL, Req.ALL_COMMIT, Req.CT_COMMIT, Req.EXP_COMMIT,
                    Req.RESET_TIMERS, Req.REQUEST_DUMP, Req.SEND_BULK):
            return None
        self.runtime.local_unknown += 1
        return None


def _cached_text(e: Entry) -> str:
    """The flow-log text of a cached (purged) flow: what the cache holds, whole reply tuple,
    no kernel id -- the reference logs its cached object the same way."""
    saved = e.reply, e.id
    e.reply, e.id = full_reply(e), None
    try:
        return entry_text(e)
    finally:
        e.reply, e.id = saved
