"""Opt-in Prometheus endpoint (``General { Metrics { Address A  Port P } }``).

A collector reads the daemon's counters at scrape time; the HTTP side is a few lines on
the daemon's own asyncio loop (no extra thread).
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DaemonCollector:
    """Exports cache sizes, message counters, queues, commits, links and peer silence."""

    def __init__(self, daemon) -> None:
        self.d = daemon

    def collect(self):
        d = self.d
        caches = GaugeMetricFamily("conntrackd_cache_entries", "Entries in a cache",
                                   labels=["cache"])
        if d.mode_name == "stats":
            caches.add_metric(["stats"], len(d.cache))
        if d.mode_name != "sync":
            yield caches
            return
        for cache in (d.internal, d.external):
            if cache is not None:
                caches.add_metric([cache.name], len(cache))
        yield caches
        st = d.core.stats
        msgs = CounterMetricFamily("conntrackd_messages", "Sync messages by direction/outcome",
                                   labels=["what"])
        for label, value in (("sent", st.msgs_sent), ("received", st.msgs_recv),
                             ("lost", st.seq_lost), ("malformed", st.malformed),
                             ("rejected", st.rejected), ("before", st.seq_before)):
            msgs.add_metric([label], value)
        yield msgs
        yield CounterMetricFamily("conntrackd_retransmissions",
                                  "Messages sent again (FT-FW)", value=st.retransmitted)
        tx, rs = d._queue_depths()
        q = GaugeMetricFamily("conntrackd_queue_depth", "Items queued", labels=["queue"])
        q.add_metric(["tx"], tx)
        q.add_metric(["resend"], rs)
        yield q
        yield CounterMetricFamily("conntrackd_commits", "Commits run", value=d.commit_count)
        yield GaugeMetricFamily("conntrackd_last_commit_seconds", "Duration of the last commit",
                                value=d.commit_seconds)
        links = GaugeMetricFamily("conntrackd_link_up",
                                  "1 when the link's interface is up with carrier",
                                  labels=["device", "role"])
        traffic = CounterMetricFamily("conntrackd_link_bytes", "Bytes on a link",
                                      labels=["device", "direction"])
        for ch in d.channels.channels:
            role = "active" if ch is d.channels.active else "backup"
            links.add_metric([ch.device, role], 1.0 if ch.status() == "RUNNING" else 0.0)
            traffic.add_metric([ch.device, "sent"], ch.counters.bytes_sent)
            traffic.add_metric([ch.device, "received"], ch.counters.bytes_recv)
        yield links
        yield traffic
        silence = d.peer_silence()
        yield GaugeMetricFamily("conntrackd_peer_silence_seconds",
                                "Seconds since the peer was last heard (-1: never)",
                                value=-1.0 if silence is None else silence)


class MetricsServer:
    """Serve ``GET /metrics`` (any path, really) on the daemon's loop."""

    def __init__(self, daemon, address: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        self.address = address
        self.port = port
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.address, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            body = generate_latest(self.registry)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
