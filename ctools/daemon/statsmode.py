"""Statistics mode (a ``Stats`` section): a cache of live flows and a log of ended ones."""

from __future__ import annotations

import time

from ctools.config import model as cfgm
from ctools.daemon import views
from ctools.daemon.base import Daemon
from ctools.daemon.cache import InternalCache, strip_volatile
from ctools.daemon.control import Req
from ctools.daemon.dumpfmt import dump_cache, entry_text
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
        self.events = EventSocket(reliable=g.netlink_events_reliable)
        if g.filter is not None:
            self.log.notice("using kernel-space event filtering" if g.filter.from_kernelspace
                            else "using user-space event filtering")
        if g.netlink_buffer_size and (not g.netlink_buffer_size_max_grow or
                                      g.netlink_buffer_size <= g.netlink_buffer_size_max_grow):
            size = self.events.set_buffer_size(g.netlink_buffer_size)
        else:
            self.log.notice("NetlinkBufferSize is either not set or is greater than "
                            "NetlinkBufferSizeMaxGrowth. Using current system buffer size")
            size = self.events.buffer_size
        self.runtime.buffer_size = size
        self.log.notice(f"netlink event socket buffer size has been set to {size} bytes")
        self._load()

    def _load(self) -> None:
        now = time.monotonic()
        for e in self.request_sock.dump():
            if self.filter.accepts(e):
                self.cache.update(strip_volatile(e), now)

    async def start(self) -> None:
        self.loop.add_reader(self.events.fileno(), self._on_events)

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
            self.runtime.overrun += 1
            self.runtime.catch_failed += 1
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
        text = entry_text(e)
        if self.flow_log is not None:
            try:
                self.flow_log.write(f"{ctime()}\t{text}\n")
            except OSError:
                pass
        if self.flow_syslog:
            import syslog

            syslog.syslog(syslog.LOG_INFO, text)

    def handle_mode(self, code: int):
        if code == Req.STATS:
            return (views.cache_block("stats", len(self.cache), self.cache.counters)
                    + views.traffic_block(self.traffic.bytes, self.traffic.packets))
        if code == Req.STATS_CACHE:
            n = len(self.cache)
            return views.cache_extended("stats", n, n, n, self.cache.counters)
        if code in (Req.CT_DUMP_INTERNAL, Req.CT_DUMP_INT_XML):
            return dump_cache(self.cache, time.monotonic(), code == Req.CT_DUMP_INT_XML, False)
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
            self._load()
            return None
        if code in (Req.STATS_NETWORK, Req.STATS_LINK, Req.STATS_RSQUEUE, Req.STATS_QUEUE,
                    Req.EXP_STATS, Req.ALL_FLUSH_CACHE, Req.CT_FLUSH_EXT_CACHE,
                    Req.CT_DUMP_EXTERNAL, Req.CT_DUMP_EXT_XML, Req.EXP_DUMP_INTERNAL,
                    Req.EXP_DUMP_EXTERNAL, Req.ALL_COMMIT, Req.CT_COMMIT, Req.EXP_COMMIT,
                    Req.RESET_TIMERS, Req.REQUEST_DUMP, Req.SEND_BULK):
            return None
        self.runtime.local_unknown += 1
        return None
